//! `tokio_util::codec` adapter (feature `tokio-codec`): frames over any `AsyncRead` /
//! `AsyncWrite`, e.g. with `FramedRead::new(tcp, FrameCodec::default())`.

use bytes::BytesMut;

use crate::{DecodeError, Frame, FrameDecoder};

/// Encoder and decoder of [`Frame`]s for `tokio_util::codec::Framed*`.
#[derive(Debug, Clone, Default)]
pub struct FrameCodec {
    decoder: FrameDecoder,
}

impl FrameCodec {
    /// A codec that rejects payloads longer than `max_payload_len` bytes.
    pub fn new(max_payload_len: u32) -> FrameCodec {
        FrameCodec {
            decoder: FrameDecoder::new(max_payload_len),
        }
    }
}

/// Errors of the codec: IO from the underlying stream or invalid bytes.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The stream failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl tokio_util::codec::Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        Ok(self.decoder.decode(src)?)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(DecodeError::Truncated {
                needed: crate::HEADER_LEN.max(src.len() + 1),
                available: src.len(),
            }
            .into()),
        }
    }
}

impl tokio_util::codec::Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        frame.encode(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio_util::codec::{Decoder, Encoder};

    use crate::FrameHeader;

    #[test]
    fn round_trip_and_eof() {
        let mut codec = FrameCodec::new(1024);
        let frame = Frame::new(FrameHeader::jpeg(5, 6, 7, 8), Bytes::from_static(b"abc"));
        let mut buf = BytesMut::new();
        codec.encode(frame.clone(), &mut buf).unwrap();
        buf.extend_from_slice(b"VSW");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(frame));
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(CodecError::Decode(DecodeError::Truncated { .. }))
        ));
    }
}
