//! Checks the hex test vectors of docs/PROTOCOL.md byte for byte.

use std::collections::HashMap;

use bytes::Bytes;
use vswa_protocol::recording::{self, RecordingWriter};
use vswa_protocol::{Codec, DecodeError, Flags, Frame, FrameHeader, DEFAULT_MAX_PAYLOAD_LEN};

const PROTOCOL_MD: &str = include_str!("../../../docs/PROTOCOL.md");

/// Every ```` ```hex vector=NAME ```` block in the document, decoded.
fn vectors() -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    let mut lines = PROTOCOL_MD.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.trim().strip_prefix("```hex vector=") else {
            continue;
        };
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
            out.insert(name.to_owned(), bytes).is_none(),
            "duplicate vector {name}"
        );
    }
    out
}

fn vector(name: &str) -> Vec<u8> {
    vectors()
        .remove(name)
        .unwrap_or_else(|| panic!("docs/PROTOCOL.md has no vector {name}"))
}

#[test]
fn document_has_all_vectors() {
    let names = vectors();
    for name in [
        "minimal-frame",
        "all-flags-frame",
        "recording-two-frames",
        "bad-magic",
        "unsupported-version",
        "reserved-flags",
        "truncated-payload",
    ] {
        assert!(names.contains_key(name), "missing vector {name}");
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
        DEFAULT_MAX_PAYLOAD_LEN,
        16 * 1024 * 1024,
        "docs state 16 MiB"
    );
}
