//! Control messages: JSON objects sent as WebSocket text messages, `{"type": ...}`.
//!
//! JSON keeps browsers and generic tools (websocat, wscat) able to speak the protocol.
//! Receivers ignore fields they do not know; an unknown `type` fails to parse and should
//! be ignored by clients, so servers can add message types without a version bump.
//!
//! [`Time`] and [`Clock`] carry clock synchronisation; [`crate::clock`] does the
//! arithmetic.

use serde::{Deserialize, Serialize};

/// A control message, tagged by its `type` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMessage {
    /// Sent by the relay right after a WebSocket connects.
    Hello(Hello),
    /// Sent before the sender closes the connection because of a problem.
    Error(ErrorMessage),
    /// Sent to viewers when the stream's publisher leaves (or the relay shuts down).
    End(End),
    /// Sent to a publisher whenever its number of viewers changes.
    Viewers(Viewers),
    /// Clock synchronisation, NTP-style: a client's request (`t0` only) or the relay's
    /// response (`t0` echoed, `t1`, `t2`).
    Time(Time),
    /// The publisher's clock offset to the relay: publisher → relay, and relay →
    /// viewers, so viewers can put capture timestamps on their own clock.
    Clock(Clock),
}

impl ControlMessage {
    /// Parses one text message.
    pub fn from_json(text: &str) -> Result<ControlMessage, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The JSON text of this message.
    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"type\":\"error\"}"))
    }

    /// An `error` message.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> ControlMessage {
        ControlMessage::Error(ErrorMessage {
            code,
            message: message.into(),
        })
    }

    /// A client's `time` request, sent at `t0` (µs since the UNIX epoch, client clock).
    /// [`ClockSync::request`](crate::ClockSync::request) makes these and remembers them.
    pub fn time_request(t0: u64) -> ControlMessage {
        ControlMessage::Time(Time {
            t0,
            t1: None,
            t2: None,
        })
    }

    /// The relay's answer to a `time` request: `request_t0` echoed, `t1` when the
    /// request arrived and `t2` when this answer is sent (µs since the UNIX epoch, relay
    /// clock). Read `t1` as early and `t2` as late as possible; `t2 >= t1`.
    pub fn time_response(request_t0: u64, t1: u64, t2: u64) -> ControlMessage {
        ControlMessage::Time(Time {
            t0: request_t0,
            t1: Some(t1),
            t2: Some(t2),
        })
    }
}

/// Which side of a stream a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sends frames.
    Publisher,
    /// Receives frames.
    Viewer,
}

/// The relay's greeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version the relay speaks (1).
    pub protocol: u8,
    /// The role the relay assigned to this connection.
    pub role: Role,
    /// The stream this connection belongs to.
    pub stream: String,
    /// Server software and version, e.g. `vswa-relay/0.1.0`.
    pub server: String,
    /// Largest payload the relay accepts, in bytes.
    pub max_payload_len: u32,
    /// Whether the stream has a publisher right now (for viewers).
    #[serde(default)]
    pub live: bool,
    /// The relay's latency ceiling in milliseconds, if it has one: it never writes a
    /// frame older than this, and a viewer should not show one either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<u64>,
}

/// An error report; the sender closes the connection after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// One human-readable line.
    pub message: String,
}

/// Machine-readable error codes, each with a WebSocket close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request or a message was malformed (e.g. a text message that is not JSON).
    BadRequest,
    /// Missing, wrong or expired token.
    Unauthorized,
    /// The stream name is not `[A-Za-z0-9_-]{1,64}`.
    InvalidStreamName,
    /// The stream already has a publisher.
    StreamBusy,
    /// A binary message is not a valid frame.
    InvalidFrame,
    /// A frame is over the relay's size limit.
    FrameTooLarge,
    /// The relay has as many streams as it allows.
    TooManyStreams,
    /// The stream or the relay has as many viewers as it allows.
    TooManyViewers,
    /// A publisher sent nothing for too long.
    IdleTimeout,
    /// A viewer stopped reading for too long.
    Stalled,
    /// The relay is shutting down.
    ShuttingDown,
    /// Anything else.
    Internal,
    /// A code this implementation does not know (from a newer peer).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The WebSocket close code that accompanies this error (4000 + a similar HTTP
    /// status, or a standard RFC 6455 code).
    pub fn close_code(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::InvalidStreamName => 4400,
            ErrorCode::Unauthorized => 4401,
            ErrorCode::IdleTimeout | ErrorCode::Stalled => 4408,
            ErrorCode::StreamBusy => 4409,
            ErrorCode::FrameTooLarge => 1009,
            ErrorCode::InvalidFrame => 4422,
            ErrorCode::TooManyStreams | ErrorCode::TooManyViewers => 4429,
            ErrorCode::ShuttingDown => 1001,
            ErrorCode::Internal | ErrorCode::Unknown => 1011,
        }
    }

    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::InvalidStreamName => "invalid_stream_name",
            ErrorCode::StreamBusy => "stream_busy",
            ErrorCode::InvalidFrame => "invalid_frame",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::TooManyStreams => "too_many_streams",
            ErrorCode::TooManyViewers => "too_many_viewers",
            ErrorCode::IdleTimeout => "idle_timeout",
            ErrorCode::Stalled => "stalled",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The publisher of a stream left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// The stream that ended.
    pub stream: String,
    /// Why: `publisher_left`, `shutdown`, or another reason from a newer relay.
    pub reason: EndReason,
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The publisher disconnected or sent end-of-stream; it may come back.
    PublisherLeft,
    /// The relay is shutting down.
    Shutdown,
    /// A reason this implementation does not know.
    #[serde(other)]
    Other,
}

/// The publisher's current audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewers {
    /// Connected viewers (WebSocket and MJPEG-over-HTTP).
    pub count: u32,
}

/// A `time` message. All times are integers, microseconds since the UNIX epoch.
///
/// A request has only `t0`; a response has all three. A message with only one of `t1`
/// and `t2` is neither and is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Time {
    /// When the client sent the request, on the client's clock (echoed in the response).
    pub t0: u64,
    /// When the relay received the request, on the relay's clock (responses only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t1: Option<u64>,
    /// When the relay sent the response, on the relay's clock (responses only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t2: Option<u64>,
}

impl Time {
    /// True for a client's request (neither `t1` nor `t2`), which a relay answers with
    /// [`ControlMessage::time_response`].
    pub fn is_request(&self) -> bool {
        self.t1.is_none() && self.t2.is_none()
    }
}

/// A `clock` message: the publisher's clock offset to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Clock {
    /// Relay clock minus publisher clock, in microseconds (signed): a publisher
    /// timestamp plus this is the same instant on the relay's clock.
    pub publisher_offset_us: i64,
    /// The round-trip time of the exchange the offset comes from, in microseconds; the
    /// offset is off by at most half of it.
    pub rtt_us: u64,
}

impl Clock {
    /// Changes of the offset up to this many microseconds are not worth a new `clock`
    /// message (1 ms).
    pub const THRESHOLD_US: u64 = 1_000;

    /// True if this offset differs from `earlier`'s by more than
    /// [`Clock::THRESHOLD_US`]: a publisher sends a new `clock`, and a relay forwards
    /// one to its viewers, only then.
    pub fn differs_from(&self, earlier: &Clock) -> bool {
        self.publisher_offset_us
            .abs_diff(earlier.publisher_offset_us)
            > Clock::THRESHOLD_US
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes() {
        let msg = ControlMessage::error(
            ErrorCode::StreamBusy,
            "stream \"a\" already has a publisher",
        );
        assert_eq!(
            msg.to_json(),
            r#"{"type":"error","code":"stream_busy","message":"stream \"a\" already has a publisher"}"#
        );
        assert_eq!(ControlMessage::from_json(&msg.to_json()).unwrap(), msg);
        let end =
            ControlMessage::from_json(r#"{"type":"end","stream":"s","reason":"weird","extra":1}"#)
                .unwrap();
        assert_eq!(
            end,
            ControlMessage::End(End {
                stream: "s".into(),
                reason: EndReason::Other
            })
        );
        assert!(ControlMessage::from_json(r#"{"type":"nope"}"#).is_err());
        assert!(
            ControlMessage::from_json(r#"{"count":1}"#).is_err(),
            "no type"
        );
        assert!(ControlMessage::from_json("not json").is_err());
        let code: ErrorCode = serde_json::from_str("\"from_the_future\"").unwrap();
        assert_eq!(code, ErrorCode::Unknown);
    }

    #[test]
    fn code_names_match_serde() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::Unauthorized,
            ErrorCode::InvalidStreamName,
            ErrorCode::StreamBusy,
            ErrorCode::InvalidFrame,
            ErrorCode::FrameTooLarge,
            ErrorCode::TooManyStreams,
            ErrorCode::TooManyViewers,
            ErrorCode::IdleTimeout,
            ErrorCode::Stalled,
            ErrorCode::ShuttingDown,
            ErrorCode::Internal,
        ] {
            assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{code}\""));
        }
    }

    #[test]
    fn time_and_clock_shapes() {
        let req = ControlMessage::time_request(1_763_720_100_000_000);
        assert_eq!(req.to_json(), r#"{"type":"time","t0":1763720100000000}"#);
        let resp = ControlMessage::time_response(1, 2, 3);
        assert_eq!(resp.to_json(), r#"{"type":"time","t0":1,"t1":2,"t2":3}"#);
        for msg in [&req, &resp] {
            assert_eq!(&ControlMessage::from_json(&msg.to_json()).unwrap(), msg);
        }
        let ControlMessage::Time(t) = req else {
            unreachable!()
        };
        assert!(t.is_request());
        let ControlMessage::Time(t) = resp else {
            unreachable!()
        };
        assert!(!t.is_request());
        // Only one of t1/t2: neither a request nor a complete response.
        let ControlMessage::Time(half) =
            ControlMessage::from_json(r#"{"type":"time","t0":1,"t1":2}"#).unwrap()
        else {
            unreachable!()
        };
        assert!(!half.is_request());
        // Unknown fields are ignored; fractions, negatives and strings are not times.
        assert_eq!(
            ControlMessage::from_json(r#"{"type":"time","t0":5,"from":"the future"}"#).unwrap(),
            ControlMessage::time_request(5)
        );
        for bad in [
            r#"{"type":"time","t0":1.5}"#,
            r#"{"type":"time","t0":-1}"#,
            r#"{"type":"time","t0":"1"}"#,
            r#"{"type":"time"}"#,
        ] {
            assert!(ControlMessage::from_json(bad).is_err(), "{bad}");
        }

        let clock = ControlMessage::Clock(Clock {
            publisher_offset_us: -1_500_000,
            rtt_us: 4_000,
        });
        assert_eq!(
            clock.to_json(),
            r#"{"type":"clock","publisher_offset_us":-1500000,"rtt_us":4000}"#
        );
        assert_eq!(ControlMessage::from_json(&clock.to_json()).unwrap(), clock);
    }

    #[test]
    fn clock_threshold() {
        let at = |publisher_offset_us| Clock {
            publisher_offset_us,
            rtt_us: 0,
        };
        assert!(!at(1_000).differs_from(&at(0)));
        assert!(at(1_001).differs_from(&at(0)));
        assert!(at(-1_001).differs_from(&at(0)));
        assert!(at(i64::MIN).differs_from(&at(i64::MAX)));
    }
}
