//! Control messages: JSON objects sent as WebSocket text messages, `{"type": ...}`.
//!
//! JSON keeps browsers and generic tools (websocat, wscat) able to speak the protocol.
//! Receivers ignore fields they do not know; an unknown `type` fails to parse and should
//! be ignored by clients, so servers can add message types without a version bump.

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
}
