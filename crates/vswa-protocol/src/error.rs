//! Errors from decoding wire bytes.

use crate::Codec;

/// Why bytes could not be decoded as a frame.
///
/// [`DecodeError::Truncated`] means the input ended early; the other variants mean the
/// bytes are not a valid frame and the stream they came from cannot be trusted further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the frame did.
    #[error("truncated frame: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the frame needs in total (header, or header plus payload).
        needed: usize,
        /// Bytes that were available.
        available: usize,
    },
    /// The first four bytes are not `VSWA`.
    #[error("bad magic {found:02x?}: not a VSWA frame (expected \"VSWA\")")]
    BadMagic {
        /// The four bytes found where the magic belongs.
        found: [u8; 4],
    },
    /// The version byte names a protocol version this implementation does not speak.
    #[error("unsupported protocol version {version} (this implementation speaks version 1)")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// The codec byte names no known codec.
    #[error("unknown codec id {codec}")]
    UnknownCodec {
        /// The codec byte found.
        codec: u8,
    },
    /// Flag bits that this version reserves are set.
    #[error("reserved flag bits set: {flags:#06x}")]
    ReservedFlags {
        /// The whole flags field.
        flags: u16,
    },
    /// The payload length exceeds the configured maximum.
    #[error("payload length {len} exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// The length field.
        len: u32,
        /// The configured maximum.
        max: u32,
    },
    /// A message held more bytes than the one frame its header announces.
    #[error("{extra} bytes after the end of the frame")]
    TrailingBytes {
        /// How many bytes followed the frame.
        extra: usize,
    },
    /// The payload does not start the way its codec requires (JPEG: the SOI marker
    /// `FF D8`; H.264: an Annex B start code), or is empty without `END_OF_STREAM`.
    /// Only [`check_payload`](crate::check_payload) reports this; decoding a frame does
    /// not look inside the payload.
    #[error("invalid {codec} payload: {}", payload_problem(*.codec, .found))]
    InvalidPayload {
        /// The codec the header names.
        codec: Codec,
        /// The first bytes of the payload (up to 4; empty for an empty payload).
        found: Vec<u8>,
    },
}

/// The second half of [`DecodeError::InvalidPayload`]'s message.
fn payload_problem(codec: Codec, found: &[u8]) -> String {
    if found.is_empty() {
        return "the payload is empty (only an END_OF_STREAM frame may be empty)".into();
    }
    let expected = match codec {
        Codec::Jpeg => "the JPEG SOI marker FF D8",
        Codec::H264 => "an Annex B start code (00 00 01 or 00 00 00 01)",
    };
    format!("it starts with {found:02x?}, not {expected}")
}

impl DecodeError {
    /// True when the input merely ended early, so more bytes may complete it.
    pub fn is_truncated(&self) -> bool {
        matches!(self, DecodeError::Truncated { .. })
    }
}
