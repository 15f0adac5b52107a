//! VSWA WebSocket clients: a [`Publisher`] that sends frames to a relay's
//! `/ws/publish/{stream}` and a [`Subscriber`] that receives them from
//! `/ws/watch/{stream}`, both with connect, retry and backoff ([`connect()`]).
//!
//! This crate speaks the wire format of `vswa-protocol` over tokio-tungstenite (rustls
//! for `wss://`) and nothing else: capture, encoding and the relay live in other crates,
//! so a program that only publishes or only watches pulls in no server code.
#![warn(missing_docs)]

pub mod backoff;
pub mod connect;
pub mod exit;
pub mod publisher;
pub mod subscriber;

pub use backoff::Backoff;
pub use connect::{connect, connect_with_retry, ClientError, ClientSocket, ConnectOptions};
pub use publisher::{Publisher, PublisherConfig, PublisherStats};
pub use subscriber::{Subscriber, SubscriberConfig, SubscriberEvent};
