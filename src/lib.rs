//! VSWA: live video over WebSockets.
//!
//! This facade re-exports the VSWA library crates so an application can depend on one
//! crate: [`protocol`] (wire format), [`capture`] (video sources and the capture ->
//! encode stage), [`codec`] (JPEG), [`client`] (WebSocket publisher and subscriber),
//! [`relay`] (the embeddable relay), [`send`] and [`recv`] (the programs `vswa-send` and
//! `vswa-recv` as library calls). It also owns the workspace's `examples/` and
//! `benches/`.
#![warn(missing_docs)]

pub use vswa_capture as capture;
pub use vswa_client as client;
pub use vswa_codec as codec;
pub use vswa_protocol as protocol;
pub use vswa_recv as recv;
pub use vswa_relay as relay;
pub use vswa_send as send;
