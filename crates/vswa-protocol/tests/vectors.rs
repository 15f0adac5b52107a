//! Checks the hex test vectors of docs/PROTOCOL.md byte for byte.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use vswa_protocol::recording::{self, RecordingWriter};
use vswa_protocol::{
    Codec, DecodeError, Flags, Frame, FrameDecoder, FrameHeader, DEFAULT_MAX_PAYLOAD_LEN,
};

const PROTOCOL_MD: &str = include_str!("../../../docs/PROTOCOL.md");

/// One ```` ```hex vector=NAME [error=ERROR] ```` block of the document.
struct Vector {
    bytes: Vec<u8>,
    /// For invalid inputs: the error (section 1's identifiers) they must be rejected with.
    error: Option<String>,
}

/// Every hex vector block in the document, by name.
fn vectors() -> HashMap<String, Vector> {
    let mut out = HashMap::new();
    let mut lines = PROTOCOL_MD.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.trim().strip_prefix("```hex ") else {
            continue;
        };
        let mut name = None;
        let mut error = None;
        for attr in info.split_whitespace() {
            match attr.split_once('=') {
                Some(("vector", v)) => name = Some(v.to_owned()),
                Some(("error", e)) => error = Some(e.to_owned()),
                _ => panic!("unknown attribute {attr:?} in {line:?}"),
            }
        }
        let name = name.unwrap_or_else(|| panic!("hex block without vector=NAME: {line:?}"));
        let mut hex = String::new();
        for body in lines.by_ref() {
            if body.trim() == "```" {
                break;
            }
            hex.extend(body.chars().filter(|c| !c.is_whitespace()));
        }
        assert!(hex.len() % 2 == 0, "odd hex digit count in vector {name}");
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
            .collect();
        assert!(
            out.insert(name.clone(), Vector { bytes, error }).is_none(),
            "duplicate vector {name}"
        );
    }
    out
}

fn vector(name: &str) -> Vec<u8> {
    vectors()
        .remove(name)
        .unwrap_or_else(|| panic!("docs/PROTOCOL.md has no vector {name}"))
        .bytes
}

/// The identifier PROTOCOL.md uses for each decode error (section 1, "Decoding rules").
fn error_id(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::Truncated { .. } => "truncated",
        DecodeError::BadMagic { .. } => "bad_magic",
        DecodeError::UnsupportedVersion { .. } => "unsupported_version",
        DecodeError::UnknownCodec { .. } => "unknown_codec",
        DecodeError::ReservedFlags { .. } => "reserved_flags",
        DecodeError::PayloadTooLarge { .. } => "payload_too_large",
        DecodeError::TrailingBytes { .. } => "trailing_bytes",
    }
}

/// Vectors and the error each must fail with (`None`: must be valid).
const EXPECTED: &[(&str, Option<&str>)] = &[
    ("minimal-frame", None),
    ("all-flags-frame", None),
    ("recording-two-frames", None),
    ("bad-magic", Some("bad_magic")),
    ("unsupported-version", Some("unsupported_version")),
    ("unknown-codec", Some("unknown_codec")),
    ("reserved-flags", Some("reserved_flags")),
    ("payload-too-large", Some("payload_too_large")),
    ("truncated-payload", Some("truncated")),
    ("trailing-bytes", Some("trailing_bytes")),
];

#[test]
fn document_has_all_vectors() {
    let all = vectors();
    for (name, error) in EXPECTED {
        let v = all
            .get(*name)
            .unwrap_or_else(|| panic!("missing vector {name}"));
        assert_eq!(v.error.as_deref(), *error, "error= of vector {name}");
    }
    for name in all.keys() {
        assert!(
            EXPECTED.iter().any(|(n, _)| n == name),
            "vector {name} is not checked by this test"
        );
    }
    // Every error identifier a vector uses is defined in the decoding rules table.
    for (_, error) in EXPECTED {
        if let Some(id) = error {
            assert!(
                PROTOCOL_MD.contains(&format!("| `{id}` |")),
                "PROTOCOL.md does not define error {id}"
            );
        }
    }
}

/// Each `error=` vector, as one WebSocket message, fails with its error; a streaming
/// decoder fails the same way, except that truncated input there means "read more".
#[test]
fn error_vectors_fail_with_their_error() {
    for (name, v) in vectors() {
        let Some(expected) = v.error else { continue };
        let err = Frame::decode(&v.bytes)
            .map(|_| ())
            .expect_err(&format!("vector {name} decodes"));
        assert_eq!(error_id(&err), expected, "vector {name}: {err}");
        let streamed = FrameDecoder::default().decode(&mut BytesMut::from(&v.bytes[..]));
        match streamed {
            Ok(None) => assert_eq!(expected, "truncated", "vector {name}"),
            // A stream is not one message: bytes after the frame are the next frame.
            Ok(Some(_)) => assert_eq!(expected, "trailing_bytes", "vector {name}"),
            Err(e) => assert_eq!(error_id(&e), expected, "vector {name}: {e}"),
        }
    }
}

#[test]
fn minimal_frame() {
    let frame = Frame::new(
        FrameHeader {
            codec: Codec::Jpeg,
            flags: Flags::empty(),
            payload_len: 0,
            width: 0,
            height: 0,
            sequence: 0,
            timestamp_us: 0,
        },
        Bytes::new(),
    );
    let hex = vector("minimal-frame");
    assert_eq!(frame.to_bytes(), hex);
    assert_eq!(Frame::decode(&hex).unwrap(), frame);
}

#[test]
fn all_flags_frame() {
    let frame = Frame::new(
        FrameHeader {
            codec: Codec::Jpeg,
            flags: Flags::KEYFRAME | Flags::END_OF_STREAM | Flags::PLACEHOLDER,
            payload_len: 0,
            width: 640,
            height: 480,
            sequence: 0x0102_0304_0506_0708,
            timestamp_us: 1_763_720_100_123_456,
        },
        Bytes::from_static(&[0xff, 0xd8, 0xff, 0xd9]),
    );
    assert_eq!(frame.header().flags, Flags::ALL);
    let hex = vector("all-flags-frame");
    assert_eq!(frame.to_bytes(), hex);
    let decoded = Frame::decode(&hex).unwrap();
    assert_eq!(decoded, frame);
    assert_eq!(decoded.header().payload_len, 4);
}

#[test]
fn recording_two_frames() {
    let frames = [
        Frame::new(
            FrameHeader::jpeg(0, 1_763_720_100_000_000, 320, 240),
            Bytes::from_static(&[0xff, 0xd8, 0xff, 0xd9]),
        ),
        Frame::new(
            FrameHeader::jpeg(1, 1_763_720_100_033_333, 320, 240),
            Bytes::from_static(&[0xff, 0xd8, 0xff, 0xe0, 0xff, 0xd9]),
        ),
    ];
    let mut writer = RecordingWriter::new(Vec::new()).unwrap();
    for frame in &frames {
        writer.write_frame(frame).unwrap();
    }
    let hex = vector("recording-two-frames");
    assert_eq!(writer.into_inner(), hex);
    let (read, err) = recording::parse(&hex);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(read, frames);
}

#[test]
fn invalid_vectors_are_rejected() {
    assert_eq!(
        Frame::decode(&vector("bad-magic")),
        Err(DecodeError::BadMagic { found: *b"VSWB" })
    );
    assert_eq!(
        Frame::decode(&vector("unsupported-version")),
        Err(DecodeError::UnsupportedVersion { version: 2 })
    );
    assert_eq!(
        Frame::decode(&vector("unknown-codec")),
        Err(DecodeError::UnknownCodec { codec: 0 })
    );
    assert_eq!(
        Frame::decode(&vector("reserved-flags")),
        Err(DecodeError::ReservedFlags { flags: 8 })
    );
    assert_eq!(
        Frame::decode(&vector("truncated-payload")),
        Err(DecodeError::Truncated {
            needed: 36,
            available: 34
        })
    );
    assert_eq!(
        Frame::decode(&vector("payload-too-large")),
        Err(DecodeError::PayloadTooLarge {
            len: DEFAULT_MAX_PAYLOAD_LEN + 1,
            max: DEFAULT_MAX_PAYLOAD_LEN
        })
    );
    // The length field alone (the first 12 bytes) is enough to refuse it.
    assert!(matches!(
        FrameDecoder::default().decode(&mut BytesMut::from(&vector("payload-too-large")[..12])),
        Err(DecodeError::PayloadTooLarge { .. })
    ));
    assert_eq!(
        Frame::decode(&vector("trailing-bytes")),
        Err(DecodeError::TrailingBytes { extra: 1 })
    );
    assert_eq!(
        DEFAULT_MAX_PAYLOAD_LEN,
        16 * 1024 * 1024,
        "docs state 16 MiB"
    );
}
