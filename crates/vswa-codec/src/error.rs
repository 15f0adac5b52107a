//! The error type of this crate.

use crate::PixelFormat;

/// Why an image could not be built, encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The JPEG quality is outside 1..=100.
    #[error("JPEG quality {quality} is out of range: use a value from 1 (smallest) to 100 (best)")]
    InvalidQuality {
        /// The rejected quality.
        quality: u8,
    },
    /// The image size is unusable for this pixel format (zero, over JPEG's 65535 limit,
    /// or an odd width for packed YUYV).
    #[error("invalid {format:?} image size {width}x{height}: {reason}")]
    InvalidDimensions {
        /// The pixel format.
        format: PixelFormat,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The pixel buffer does not have the length the format and size call for.
    #[error("{format:?} image {width}x{height} needs {expected} bytes, got {actual}")]
    DataLength {
        /// The pixel format.
        format: PixelFormat,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Bytes the format and size need.
        expected: usize,
        /// Bytes supplied.
        actual: usize,
    },
    /// The encoder library failed.
    #[error("JPEG encoding failed: {0}")]
    Encode(String),
    /// The input is not a JPEG this crate can decode.
    #[error("JPEG decoding failed: {0}")]
    Decode(String),
    /// The requested encoder backend was not compiled in.
    #[error(
        "encoder backend {0} is not available in this build (enable the cargo feature `turbojpeg`)"
    )]
    BackendUnavailable(&'static str),
    /// An encoder worker panicked on this frame; the pool keeps running.
    #[error("encoder panicked on this frame")]
    Panicked,
    /// An H.264 access unit in an Annex B stream grew past the splitter's limit; its
    /// bytes were dropped.
    #[error(
        "H.264 access unit at stream offset {offset} is larger than the {max}-byte limit \
         (at least {size} bytes without an access-unit boundary)"
    )]
    AccessUnitTooLarge {
        /// Stream offset of the access unit's first byte.
        offset: u64,
        /// Bytes of it seen when the limit was hit.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// An H.264 encoder option is out of range.
    #[error("invalid H.264 option {option}: {reason}")]
    InvalidH264Option {
        /// The option's field name in `H264Options`.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The picture size cannot be encoded as H.264 here (odd, zero, or beyond what
    /// OpenH264 supports).
    #[error("cannot encode {width}x{height} as H.264: {reason}")]
    UnsupportedH264Size {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A picture handed to an H.264 encoder differs in size from the one it was made for.
    #[error(
        "H.264 encoder was created for {expected_width}x{expected_height} but got a \
         {width}x{height} picture; make a new encoder for a new size"
    )]
    FrameSizeMismatch {
        /// Width the encoder was created with.
        expected_width: u32,
        /// Height the encoder was created with.
        expected_height: u32,
        /// Width of the picture.
        width: u32,
        /// Height of the picture.
        height: u32,
    },
    /// OpenH264 failed to encode.
    #[error("H.264 encoding failed: {0}")]
    H264Encode(String),
    /// OpenH264 could not decode the input.
    #[error("H.264 decoding failed: {0}")]
    H264Decode(String),
}
