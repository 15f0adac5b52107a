//! Streaming decoder: frames out of a byte stream that arrives in arbitrary pieces.

use bytes::BytesMut;

use crate::{DecodeError, Frame, FrameHeader, DEFAULT_MAX_PAYLOAD_LEN, HEADER_LEN};

/// Pulls frames out of a growing [`BytesMut`] (a TCP stream, a pipe, a recording file).
///
/// `Ok(None)` means "incomplete: read more bytes and call again"; an `Err` means the
/// stream is corrupt and should be abandoned (the format has no resynchronisation).
/// The header, including the payload length limit, is validated as soon as its bytes
/// are present, before the payload is buffered.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_payload_len: u32,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PAYLOAD_LEN)
    }
}

impl FrameDecoder {
    /// A decoder that rejects payloads longer than `max_payload_len` bytes.
    pub fn new(max_payload_len: u32) -> FrameDecoder {
        FrameDecoder { max_payload_len }
    }

    /// The payload limit in force.
    pub fn max_payload_len(&self) -> u32 {
        self.max_payload_len
    }

    /// Takes the next complete frame off the front of `buf`, if there is one.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        let header = match FrameHeader::decode(buf, self.max_payload_len) {
            Ok(header) => header,
            Err(e) if e.is_truncated() => return Ok(None),
            Err(e) => return Err(e),
        };
        let total = header.frame_len();
        if buf.len() < total {
            // Validated and within the limit: make room for the rest in one allocation.
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mut bytes = buf.split_to(total);
        let payload = bytes.split_off(HEADER_LEN).freeze();
        Ok(Some(Frame::new(header, payload)))
    }
}
