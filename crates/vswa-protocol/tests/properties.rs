//! Property tests: round trips, arbitrary chunking, truncation, and garbage input.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use vswa_protocol::control::{Clock, Time};
use vswa_protocol::recording::{self, RecordingError, RecordingWriter, RECORDING_HEADER_LEN};
use vswa_protocol::{
    check_payload, ClockSample, ClockSync, Codec, DecodeError, Flags, Frame, FrameDecoder,
    FrameHeader, HEADER_LEN,
};

fn arb_frame() -> impl Strategy<Value = Frame> {
    (
        prop_oneof![Just(Codec::Jpeg), Just(Codec::H264)],
        0u16..=7,
        any::<u16>(),
        any::<u16>(),
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(
            |(codec, flags, width, height, sequence, timestamp_us, payload)| {
                Frame::new(
                    FrameHeader {
                        codec,
                        flags: Flags::from_bits(flags).unwrap(),
                        payload_len: 0,
                        width,
                        height,
                        sequence,
                        timestamp_us,
                    },
                    Bytes::from(payload),
                )
            },
        )
}

/// Feeds `wire` to a streaming decoder in the given chunk sizes.
fn decode_chunked(wire: &[u8], chunks: &[usize]) -> Result<Vec<Frame>, DecodeError> {
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = wire;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        while let Some(frame) = decoder.decode(&mut buf)? {
            out.push(frame);
        }
    }
    assert!(buf.is_empty(), "bytes left over");
    Ok(out)
}

proptest! {
    #[test]
    fn frame_round_trip(frame in arb_frame()) {
        let wire = frame.to_bytes();
        prop_assert_eq!(wire.len(), HEADER_LEN + frame.payload().len());
        prop_assert_eq!(&Frame::decode(&wire).unwrap(), &frame);
        prop_assert_eq!(Frame::decode_bytes(wire, u32::MAX).unwrap(), frame);
    }

    #[test]
    fn stream_any_chunking(
        frames in proptest::collection::vec(arb_frame(), 0..8),
        chunks in proptest::collection::vec(1usize..200, 1..20),
    ) {
        let mut wire = BytesMut::new();
        for frame in &frames {
            frame.encode(&mut wire);
        }
        prop_assert_eq!(decode_chunked(&wire, &chunks).unwrap(), frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(frame) = Frame::decode(&bytes) {
            let _ = check_payload(frame.header(), frame.payload());
        }
        let _ = FrameHeader::decode(&bytes, 1024);
        let mut decoder = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decoder.decode(&mut buf) {}
        let _ = recording::parse(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_valid_prefix_never_panic(
        frame in arb_frame(),
        tail in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&recording::file_header());
        frame.encode(&mut wire);
        wire.extend_from_slice(&tail);
        let (frames, _) = recording::parse(&wire);
        prop_assert_eq!(frames.first(), Some(&frame));
    }

    #[test]
    fn recording_cut_anywhere(
        frames in proptest::collection::vec(arb_frame(), 1..6),
        cut_seed in any::<usize>(),
    ) {
        let mut writer = RecordingWriter::new(Vec::new()).unwrap();
        for frame in &frames {
            writer.write_frame(frame).unwrap();
        }
        let file = writer.into_inner();
        let cut = cut_seed % (file.len() + 1);
        check_cut(&file, &frames, cut);
    }

    #[test]
    fn clock_sync_never_panics(
        exchanges in proptest::collection::vec(
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<bool>()),
            1..12,
        ),
        x in any::<u64>(),
        publisher_offset_us in any::<i64>(),
        rtt_us in any::<u64>(),
    ) {
        let mut sync = ClockSync::new();
        let publisher = Clock { publisher_offset_us, rtt_us };
        for (t0, t1, t2, t3, ours) in exchanges {
            let _ = ClockSample::from_exchange(t0, t1, t2, t3);
            let _ = sync.request(t0);
            let _ = sync.next_request_at();
            let response = Time { t0: if ours { t0 } else { x }, t1: Some(t1), t2: Some(t2) };
            if let Some(sample) = sync.on_response(&response, t3) {
                prop_assert!(t3 >= t0 && t2 >= t1);
                prop_assert!(sample.rtt_us <= t3 - t0);
            }
            let _ = (sync.offset_us(), sync.rtt_us(), sync.best(), sync.clock_report());
            let _ = (sync.to_local(x), sync.to_remote(x), sync.capture_to_local(x, &publisher));
            let _ = publisher.differs_from(&Clock { publisher_offset_us: x as i64, rtt_us });
        }
    }

    #[test]
    fn clock_estimate_is_within_half_the_rtt(
        t0 in (1u64 << 40)..(1u64 << 52),
        offset in -10_000_000_000i64..10_000_000_000,
        up in 0u64..10_000_000,
        down in 0u64..10_000_000,
        processing in 0u64..1_000_000,
    ) {
        let t1 = t0.checked_add_signed(offset).unwrap() + up;
        let t2 = t1 + processing;
        let t3 = t0 + up + processing + down;
        let s = ClockSample::from_exchange(t0, t1, t2, t3).unwrap();
        prop_assert_eq!(s.rtt_us, up + down);
        // Exact when the delays are equal; otherwise off by (up - down) / 2, rounded down.
        prop_assert!(s.offset_us.abs_diff(offset) <= s.rtt_us / 2 + 1);
        prop_assert_eq!(s.offset_us, offset + ((up as i64 - down as i64).div_euclid(2)));
    }

    #[test]
    fn oversize_length_rejected_before_payload(len in 1025u32..) {
        let mut header = FrameHeader::jpeg(0, 0, 1, 1);
        header.payload_len = len;
        let mut decoder = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&header.to_bytes()[..12]);
        prop_assert_eq!(
            decoder.decode(&mut buf),
            Err(DecodeError::PayloadTooLarge { len, max: 1024 })
        );
    }
}

/// Asserts the reader returns exactly the frames that end at or before `cut` and
/// reports a cut file as truncated.
fn check_cut(file: &[u8], frames: &[Frame], cut: usize) {
    let (read, err) = recording::parse(&file[..cut]);
    let mut end = RECORDING_HEADER_LEN;
    let mut complete = 0;
    for frame in frames {
        if end + frame.encoded_len() <= cut {
            end += frame.encoded_len();
            complete += 1;
        } else {
            break;
        }
    }
    assert_eq!(read, &frames[..complete], "cut at {cut}");
    if cut == file.len() {
        assert!(err.is_none(), "{err:?}");
    } else if cut >= RECORDING_HEADER_LEN && cut == end {
        // Cut exactly between frames: a shorter but valid recording.
        assert!(err.is_none(), "cut at {cut}: {err:?}");
    } else {
        match err {
            Some(RecordingError::Truncated {
                offset,
                frames,
                partial_bytes,
            }) => {
                assert_eq!(frames as usize, complete);
                assert_eq!(offset as usize + partial_bytes, cut);
            }
            other => panic!("cut at {cut}: expected Truncated, got {other:?}"),
        }
    }
}

#[test]
fn truncation_at_every_offset() {
    let frames: Vec<Frame> = (0..3)
        .map(|i| {
            Frame::new(
                FrameHeader::jpeg(i, 1_700_000_000_000_000 + i * 33_333, 64, 48),
                Bytes::from(vec![i as u8; 40 + i as usize]),
            )
        })
        .collect();
    let mut writer = RecordingWriter::new(Vec::new()).unwrap();
    for frame in &frames {
        writer.write_frame(frame).unwrap();
    }
    let file = writer.into_inner();
    for cut in 0..=file.len() {
        check_cut(&file, &frames, cut);
    }
    // Each single frame message cut at every offset is reported as truncated.
    let wire = frames[2].to_bytes();
    for cut in 0..wire.len() {
        assert!(
            matches!(
                Frame::decode(&wire[..cut]),
                Err(DecodeError::Truncated { .. })
            ),
            "cut at {cut}"
        );
    }
}

#[test]
fn errors_name_the_problem() {
    let mut wire = Frame::new(FrameHeader::jpeg(1, 2, 3, 4), Bytes::from_static(b"ab"))
        .to_bytes()
        .to_vec();
    wire.push(0);
    assert_eq!(
        Frame::decode(&wire),
        Err(DecodeError::TrailingBytes { extra: 1 })
    );
    wire[5] = 9;
    assert_eq!(
        Frame::decode(&wire),
        Err(DecodeError::UnknownCodec { codec: 9 })
    );
    // Garbage is rejected from its first bytes, before a whole header arrives.
    let mut decoder = FrameDecoder::default();
    assert!(matches!(
        decoder.decode(&mut BytesMut::from(&b"GET / HTTP/1.1"[..])),
        Err(DecodeError::BadMagic { .. })
    ));
    assert!(matches!(
        recording::parse(b"hello world, not a recording").1,
        Some(RecordingError::NotARecording { .. })
    ));
    let mut bad = recording::file_header().to_vec();
    bad[8] = 2;
    assert!(matches!(
        recording::parse(&bad).1,
        Some(RecordingError::UnsupportedVersion { version: 2 })
    ));
    bad[8] = 1;
    bad[15] = 1;
    assert!(matches!(
        recording::parse(&bad).1,
        Some(RecordingError::ReservedBytes)
    ));
    let msg = DecodeError::PayloadTooLarge { len: 9, max: 8 }.to_string();
    assert_eq!(msg, "payload length 9 exceeds the maximum of 8 bytes");
}

#[test]
fn corrupt_frame_in_recording_names_offset() {
    let frame = Frame::new(FrameHeader::jpeg(0, 0, 1, 1), Bytes::from_static(b"xy"));
    let mut writer = RecordingWriter::new(Vec::new()).unwrap();
    writer.write_frame(&frame).unwrap();
    writer.write_frame(&frame).unwrap();
    let mut file = writer.into_inner();
    let second = RECORDING_HEADER_LEN + frame.encoded_len();
    file[second] = b'X';
    let (frames, err) = recording::parse(&file);
    assert_eq!(frames.len(), 1);
    match err {
        Some(RecordingError::Corrupt {
            offset,
            frame_index: 1,
            source: DecodeError::BadMagic { .. },
        }) => {
            assert_eq!(offset as usize, second)
        }
        other => panic!("{other:?}"),
    }
}
