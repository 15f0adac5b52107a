//! VSWA transport: WebSocket publisher and viewer clients, and the relay library.
//!
//! - [`relay`]: the relay server (hub of named streams, zero-copy fan-out, HTTP routes,
//!   MJPEG, snapshots, stats, metrics, auth, TLS). The `vswa-relay` binary is a thin
//!   CLI over [`relay::Relay`].
//! - [`hub`]: the in-memory core of the relay, usable without sockets.
//! - [`publisher`] and [`subscriber`]: clients with reconnect and backoff, used by
//!   `vswa-send` and `vswa-recv`.
//! - [`pipeline`]: capture -> encode -> frames, shared by `vswa-send` and the relay's
//!   `--demo` feed.
//!
//! Capture and JPEG coding live in `vswa-capture` and `vswa-codec`; the wire format in
//! `vswa-protocol`.
#![warn(missing_docs)]

pub mod backoff;
pub mod cli;
pub mod connect;
pub mod hub;
pub mod pipeline;
pub mod publisher;
pub mod relay;
pub mod subscriber;
pub mod ws;

pub use connect::{ClientError, ConnectOptions};

/// Microseconds since the UNIX epoch, from the system clock.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
