//! VSWA: live video over WebSockets.
//!
//! This facade re-exports the VSWA library crates so an application can depend on one
//! crate: [`protocol`] (wire format), [`capture`] (video sources), [`codec`] (JPEG) and
//! [`transport`] (WebSocket clients and the relay). It also owns the workspace's
//! `examples/` and `benches/`.
#![warn(missing_docs)]

pub use vswa_capture as capture;
pub use vswa_codec as codec;
pub use vswa_protocol as protocol;
pub use vswa_transport as transport;
