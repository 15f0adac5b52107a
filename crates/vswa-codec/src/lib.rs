//! JPEG encoding and decoding for VSWA.
//!
//! [`encode`] turns the pixel formats cameras deliver ([`PixelFormat`]: RGB, RGBA, grey,
//! packed YUYV 4:2:2 and NV12) into baseline JPEG with the pure-Rust, SIMD-accelerated
//! `jpeg-encoder`; YUV input goes to the encoder as YCbCr without a detour through RGB.
//! [`EncoderPool`] spreads consecutive frames over worker threads and hands the results
//! back in submission order, so a sender can encode 1080p at camera rate on several
//! cores. [`decode`] (via `zune-jpeg`) exists for display, tests and benchmarks, and
//! [`jpeg_dimensions`] reads a JPEG's size from its markers without decoding.
//!
//! With the cargo feature `turbojpeg`, [`EncoderBackend::TurboJpeg`] encodes with the
//! system libjpeg-turbo instead; the default build is pure Rust.
//!
//! For H.264, [`annexb`] (always built, pure Rust) finds NAL units and keyframes in Annex B
//! byte streams and cuts a stream into access units with [`AccessUnitSplitter`]. The cargo
//! feature `h264` adds `H264Encoder` and `H264Decoder`, built on OpenH264 (BSD-2, compiled
//! from its bundled C++ source, so no system library is needed).
//!
//! This crate knows nothing of capture, the wire format or sockets; those live in
//! `vswa-capture`, `vswa-protocol` and `vswa-transport`.
//!
//! ```
//! use vswa_codec::{decode, encode, EncodeOptions, Image, PixelFormat};
//!
//! let image = Image::new(PixelFormat::Gray8, 64, 48, vec![128; 64 * 48])?;
//! let jpeg = encode(&image, &EncodeOptions::new(90)?)?;
//! assert_eq!(vswa_codec::jpeg_dimensions(&jpeg), Some((64, 48)));
//! let decoded = decode(&jpeg)?;
//! assert_eq!((decoded.width, decoded.height), (64, 48));
//! # Ok::<(), vswa_codec::CodecError>(())
//! ```
#![warn(missing_docs)]

pub mod annexb;
mod decode;
mod encode;
mod error;
#[cfg(feature = "h264")]
mod h264;
mod image;
pub mod pool;

pub use annexb::{AccessUnitSplitter, EncodedAccessUnit};
pub use decode::{decode, jpeg_dimensions, psnr, DecodedImage};
pub use encode::{encode, EncodeOptions, EncoderBackend, Subsampling};
pub use error::CodecError;
#[cfg(feature = "h264")]
pub use h264::{H264Decoder, H264Encoder, H264Options};
pub use image::{rgb_to_yuv601, Image, PixelFormat};
pub use pool::{Encoded, EncoderPool, PoolClosed, RecvTimeoutError, TrySubmitError};
