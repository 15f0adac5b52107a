//! Checks the hex test vectors of docs/PROTOCOL.md byte for byte.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use vswa_protocol::recording::{self, RecordingWriter};
use vswa_protocol::{
    check_payload, Codec, ControlMessage, DecodeError, Flags, Frame, FrameDecoder, FrameHeader,
    DEFAULT_MAX_PAYLOAD_LEN,
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
        DecodeError::InvalidPayload { .. } => "invalid_payload",
    }
}

/// Vectors and the error each must fail with (`None`: must be valid).
const EXPECTED: &[(&str, Option<&str>)] = &[
    ("minimal-frame", None),
    ("all-flags-frame", None),
    ("h264-keyframe", None),
    ("h264-delta-frame", None),
    ("recording-two-frames", None),
    ("bad-magic", Some("bad_magic")),
    ("unsupported-version", Some("unsupported_version")),
    ("unknown-codec", Some("unknown_codec")),
    ("reserved-flags", Some("reserved_flags")),
    ("payload-too-large", Some("payload_too_large")),
    ("truncated-payload", Some("truncated")),
    ("trailing-bytes", Some("trailing_bytes")),
    ("jpeg-payload-not-jpeg", Some("invalid_payload")),
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

/// Each `error=` vector, as one WebSocket message, fails with its error: decoding
/// fails, or for `invalid_payload` decoding succeeds and the payload check fails. A
/// streaming decoder fails the same way, except that truncated input there means "read
/// more".
#[test]
fn error_vectors_fail_with_their_error() {
    for (name, v) in vectors() {
        let Some(expected) = v.error else { continue };
        let err = Frame::decode(&v.bytes)
            .and_then(|f| check_payload(f.header(), f.payload()))
            .expect_err(&format!("vector {name} is valid"));
        assert_eq!(error_id(&err), expected, "vector {name}: {err}");
        let streamed = FrameDecoder::default().decode(&mut BytesMut::from(&v.bytes[..]));
        match streamed {
            Ok(None) => assert_eq!(expected, "truncated", "vector {name}"),
            // A stream is not one message: bytes after the frame are the next frame.
            Ok(Some(_)) if expected == "trailing_bytes" => {}
            Ok(Some(f)) => {
                let e = check_payload(f.header(), f.payload())
                    .expect_err(&format!("vector {name} is a valid stream"));
                assert_eq!(error_id(&e), expected, "vector {name}: {e}");
            }
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

/// The keyframe of the H.264 vectors: SPS, PPS and IDR slice of a 16x16 grey picture.
const H264_KEYFRAME: &[u8] = &[
    0x00, 0x00, 0x00, 0x01, 0x67, 0x42, 0xc0, 0x1e, 0xda, 0x79, // SPS
    0x00, 0x00, 0x00, 0x01, 0x68, 0xce, 0x38, 0x80, // PPS
    0x00, 0x00, 0x01, 0x65, 0x88, 0x84, 0x93, 0xc0, // IDR slice
];
/// The following delta frame: a P slice that skips the one macroblock.
const H264_DELTA: &[u8] = &[0x00, 0x00, 0x01, 0x41, 0x9a, 0x22, 0xa0];

#[test]
fn h264_frames() {
    let key = Frame::new(
        FrameHeader::h264(0, 1_763_720_100_000_000, 16, 16, true),
        Bytes::from_static(H264_KEYFRAME),
    );
    let delta = Frame::new(
        FrameHeader::h264(1, 1_763_720_100_033_333, 16, 16, false),
        Bytes::from_static(H264_DELTA),
    );
    for (name, frame) in [("h264-keyframe", &key), ("h264-delta-frame", &delta)] {
        let hex = vector(name);
        assert_eq!(frame.to_bytes(), hex, "{name}");
        let decoded = Frame::decode(&hex).unwrap();
        assert_eq!(&decoded, frame, "{name}");
        assert_eq!(decoded.header().codec, Codec::H264);
        check_payload(decoded.header(), decoded.payload()).unwrap();
    }
    assert_eq!(key.header().flags, Flags::KEYFRAME);
    assert_eq!(delta.header().flags, Flags::empty());
    // The codec string, derived as PROTOCOL.md tells a WebCodecs user to.
    assert_eq!(
        avc1_codec_string(key.payload()).as_deref(),
        Some("avc1.42C01E")
    );
    assert!(PROTOCOL_MD.contains("`avc1.42C01E`"));
    assert_eq!(avc1_codec_string(delta.payload()), None);
}

/// PROTOCOL.md's recipe: the three bytes after the header byte of the first NAL unit of
/// type 7 (SPS), as hex, after `avc1.`.
fn avc1_codec_string(annex_b: &[u8]) -> Option<String> {
    let mut i = 0;
    while i + 3 <= annex_b.len() {
        if annex_b[i..i + 3] == [0, 0, 1] {
            let nal = &annex_b[i + 3..];
            if nal.first().is_some_and(|b| b & 0x1f == 7) && nal.len() >= 4 {
                return Some(format!("avc1.{:02X}{:02X}{:02X}", nal[1], nal[2], nal[3]));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    None
}

#[test]
fn positive_frame_vectors_and_the_payload_check() {
    // Decoding does not look inside payloads: the minimal frame is a valid frame, but
    // its empty JPEG payload (without END_OF_STREAM) fails the payload check.
    let minimal = Frame::decode(&vector("minimal-frame")).unwrap();
    assert!(matches!(
        check_payload(minimal.header(), minimal.payload()),
        Err(DecodeError::InvalidPayload { codec: Codec::Jpeg, ref found }) if found.is_empty()
    ));
    let all = Frame::decode(&vector("all-flags-frame")).unwrap();
    check_payload(all.header(), all.payload()).unwrap();
    let bad = Frame::decode(&vector("jpeg-payload-not-jpeg")).unwrap();
    assert_eq!(
        check_payload(bad.header(), bad.payload()),
        Err(DecodeError::InvalidPayload {
            codec: Codec::Jpeg,
            found: vec![0x89, 0x50, 0x4e, 0x47]
        })
    );
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

/// Every line of the document's ```` ```json ```` blocks is a control message that
/// parses and serialises back to the same text.
#[test]
fn control_message_examples() {
    let mut lines = PROTOCOL_MD.lines();
    let mut seen = 0;
    while let Some(line) = lines.next() {
        if line.trim() != "```json" {
            continue;
        }
        for body in lines.by_ref() {
            if body.trim() == "```" {
                break;
            }
            let msg = ControlMessage::from_json(body).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(msg.to_json(), body);
            seen += 1;
        }
    }
    assert!(seen >= 7, "only {seen} examples");
}
