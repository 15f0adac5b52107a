//! `vswa-bench`: load generation against a running VSWA relay (or any relay with the
//! same `/ws/publish/NAME` and `/ws/watch/NAME` routes that forwards binary messages
//! unchanged).
//!
//! - [`fanout`]: one run, N viewers and one publisher, delivered fraction, latency from
//!   the frames' capture timestamps, relay CPU and memory from /proc.
//! - [`sweep`]: a list of viewer counts, CSV, SVG plots (plotters) and markdown tables.
//! - [`client`]: the minimal WebSocket client the viewers use (one reused read buffer,
//!   only the 32-byte VSWA header is decoded).
//! - [`hist`]: the fixed-bucket latency histogram.
//! - [`replay`]: real frames for the publisher (`--replay`: H.264 Annex B, MJPEG or a
//!   VSWA recording), published in a loop with their own sizes and keyframe flags.
//! - [`floor`]: the kernel floor, a minimal fan-out writer (`vswa-bench floor`) that
//!   `bench/compare.sh` runs as a fourth relay to give every relay's cost a lower bound.
//!
//! It leaves starting relays and the comparison to `bench/compare.sh`.
#![warn(missing_docs)]

pub mod cli;
pub mod client;
pub mod fanout;
pub mod floor;
pub mod hist;
pub mod procstat;
pub mod replay;
pub mod sweep;

/// Raises the soft open-file limit to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}
