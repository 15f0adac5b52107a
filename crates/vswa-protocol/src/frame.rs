//! A frame: header plus payload, and its encoding.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{DecodeError, FrameHeader, DEFAULT_MAX_PAYLOAD_LEN, HEADER_LEN};

/// One encoded picture with its header.
///
/// The payload is a [`Bytes`], so cloning a frame or slicing it out of a received
/// message never copies picture data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    header: FrameHeader,
    payload: Bytes,
}

impl Frame {
    /// Builds a frame; `header.payload_len` is set from `payload`.
    ///
    /// # Panics
    ///
    /// If the payload is longer than `u32::MAX` bytes, which the wire format cannot carry.
    pub fn new(mut header: FrameHeader, payload: Bytes) -> Frame {
        header.payload_len =
            u32::try_from(payload.len()).expect("VSWA payloads are limited to u32::MAX bytes");
        Frame { header, payload }
    }

    /// The header (its `payload_len` always matches the payload).
    pub fn header(&self) -> &FrameHeader {
        &self.header
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Splits the frame into header and payload.
    pub fn into_parts(self) -> (FrameHeader, Bytes) {
        (self.header, self.payload)
    }

    /// Encoded size: header plus payload.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Appends the encoded frame to `dst` (the payload is copied once).
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        dst.put_slice(&self.header.to_bytes());
        dst.put_slice(&self.payload);
    }

    /// The encoded frame as one contiguous buffer: one WebSocket message.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        buf.freeze()
    }

    /// Decodes exactly one frame from `buf` with the default payload limit. The input
    /// must hold the whole frame and nothing else (one WebSocket message).
    pub fn decode(buf: &[u8]) -> Result<Frame, DecodeError> {
        Self::decode_bytes(Bytes::copy_from_slice(buf), DEFAULT_MAX_PAYLOAD_LEN)
    }

    /// Decodes exactly one frame from a received message without copying: the payload
    /// is a slice of `msg`.
    pub fn decode_bytes(msg: Bytes, max_payload_len: u32) -> Result<Frame, DecodeError> {
        let header = FrameHeader::decode(&msg, max_payload_len)?;
        let total = header.frame_len();
        if msg.len() < total {
            return Err(DecodeError::Truncated {
                needed: total,
                available: msg.len(),
            });
        }
        if msg.len() > total {
            return Err(DecodeError::TrailingBytes {
                extra: msg.len() - total,
            });
        }
        let payload = msg.slice(HEADER_LEN..);
        Ok(Frame { header, payload })
    }
}
