//! The VSWA wire format, sans IO.
//!
//! One encoded frame is a fixed 32-byte big-endian [`FrameHeader`] followed by the
//! payload: a JPEG picture ([`Codec::Jpeg`]) or one H.264 access unit in Annex B format
//! ([`Codec::H264`]). Decoding validates the header and the framing;
//! [`check_payload`] additionally checks that a payload starts the way its codec
//! requires, for relays and picture decoders. The same bytes are one WebSocket binary message and, because
//! the header carries the payload length, a self-delimiting record in a byte stream or a
//! [recording file](recording). Control messages travel as JSON text ([`control`]);
//! [`ClockSync`] turns their `time` exchanges into clock offsets, so capture timestamps
//! can be read on any participant's clock.
//!
//! This crate does no IO and never reads the clock: callers pass bytes and timestamps in.
//! Sockets, capture and encoding live in the other VSWA crates. `docs/PROTOCOL.md` in the
//! repository is the normative description, with hex test vectors this crate is tested
//! against.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use vswa_protocol::{Frame, FrameDecoder, FrameHeader};
//!
//! let frame = Frame::new(
//!     FrameHeader::jpeg(7, 1_700_000_000_000_000, 640, 480),
//!     Bytes::from_static(b"\xff\xd8...\xff\xd9"),
//! );
//! let wire = frame.to_bytes();
//! assert_eq!(Frame::decode(&wire)?, frame);
//!
//! // A byte stream may arrive in any pieces.
//! let mut decoder = FrameDecoder::default();
//! let mut buf = BytesMut::from(&wire[..10]);
//! assert!(decoder.decode(&mut buf)?.is_none()); // incomplete: read more
//! buf.extend_from_slice(&wire[10..]);
//! assert_eq!(decoder.decode(&mut buf)?, Some(frame));
//! # Ok::<(), vswa_protocol::DecodeError>(())
//! ```
#![warn(missing_docs)]

pub mod clock;
pub mod control;
mod decoder;
mod error;
mod frame;
mod header;
mod payload;
pub mod recording;
mod stream_name;
#[cfg(feature = "tokio-codec")]
pub mod tokio_codec;
#[cfg(feature = "websocket")]
pub mod websocket;

pub use clock::{ClockSample, ClockSync};
pub use control::{ControlMessage, ErrorCode};
pub use decoder::FrameDecoder;
pub use error::DecodeError;
pub use frame::Frame;
pub use header::{
    timestamp_us, Codec, Flags, FrameHeader, DEFAULT_MAX_PAYLOAD_LEN, HEADER_LEN, MAGIC,
    PROTOCOL_VERSION,
};
pub use payload::check_payload;
pub use stream_name::{InvalidStreamName, StreamName, STREAM_NAME_MAX_LEN};
