//! Every source through the `Source` trait (the camera only through `Resilient` with a
//! fake device), the capture thread, and the MJPEG splitter against real ffmpeg output,
//! EXIF thumbnails, arbitrary chunking and garbage.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use vswa_capture::{
    open, placeholder_image, CaptureEnd, CaptureError, CaptureThread, CapturedFrame, FrameContent,
    MjpegSource, MjpegSplitter, Resilient, Source, SourceConfig, SourceSpec,
};
use vswa_codec::{encode, EncodeOptions, Image, PixelFormat};
use vswa_protocol::recording::RecordingWriter;
use vswa_protocol::{Frame, FrameHeader};

fn fast(width: u32, height: u32) -> SourceConfig {
    SourceConfig {
        width,
        height,
        fps: Some(1000.0),
        ..SourceConfig::default()
    }
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vswa-capture-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A small real JPEG whose content depends on `seed`.
fn jpeg(width: u32, height: u32, seed: u8) -> Bytes {
    let data = (0..width * height * 3)
        .map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed))
        .collect();
    let image = Image::new(PixelFormat::Rgb8, width, height, data).unwrap();
    encode(&image, &EncodeOptions::default()).unwrap()
}

fn jpeg_of(frame: &CapturedFrame) -> (&Bytes, u16, u16) {
    match &frame.content {
        FrameContent::Jpeg {
            data,
            width,
            height,
        } => (data, *width, *height),
        other => panic!("expected a JPEG frame, got {other:?}"),
    }
}

// ---------------------------------------------------------------- specs

#[test]
fn specs_parse_and_print() {
    for (text, spec) in [
        ("test", SourceSpec::Test),
        ("camera", SourceSpec::Camera { index: 0 }),
        ("camera:2", SourceSpec::Camera { index: 2 }),
        ("mjpeg:-", SourceSpec::Mjpeg { path: None }),
        (
            "mjpeg:/tmp/a.mjpeg",
            SourceSpec::Mjpeg {
                path: Some("/tmp/a.mjpeg".into()),
            },
        ),
        (
            "replay:rec.vswa",
            SourceSpec::Replay {
                path: "rec.vswa".into(),
            },
        ),
    ] {
        assert_eq!(text.parse::<SourceSpec>().unwrap(), spec, "{text}");
    }
    assert_eq!(SourceSpec::Camera { index: 0 }.to_string(), "camera:0");
    assert_eq!(
        "mjpeg:-".parse::<SourceSpec>().unwrap().to_string(),
        "mjpeg:-"
    );
    for bad in [
        "",
        "webcam",
        "camera:x",
        "camera:-1",
        "mjpeg",
        "mjpeg:",
        "replay",
        "test:1",
    ] {
        let err = bad.parse::<SourceSpec>().unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        for form in [
            "test",
            "camera:INDEX",
            "mjpeg:-",
            "mjpeg:PATH",
            "replay:FILE",
        ] {
            assert!(msg.contains(form), "{bad:?}: {msg}");
        }
    }
}

#[cfg(not(feature = "camera"))]
#[test]
fn camera_without_feature_is_a_clear_error() {
    let err = open(&SourceSpec::Camera { index: 0 }, &SourceConfig::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "built without camera support; rebuild with --features camera"
    );
}

#[test]
fn bad_config_is_rejected() {
    assert!(open(&SourceSpec::Test, &fast(0, 10)).is_err());
    let cfg = SourceConfig {
        fps: Some(0.0),
        ..fast(10, 10)
    };
    assert!(matches!(
        open(&SourceSpec::Test, &cfg),
        Err(CaptureError::InvalidConfig(_))
    ));
}

// ---------------------------------------------------------------- test pattern

#[test]
fn test_pattern_frames_move_and_have_the_requested_size() {
    for (w, h) in [(320, 240), (1920, 1080), (97, 31)] {
        let mut source = open(&SourceSpec::Test, &fast(w, h)).unwrap();
        assert!(source.is_live());
        assert_eq!(
            source.describe(),
            format!("test pattern {w}x{h} @ 1000 fps")
        );
        let mut frames = Vec::new();
        for _ in 0..3 {
            frames.push(source.next_frame().unwrap().unwrap());
        }
        let images: Vec<&Image> = frames
            .iter()
            .map(|f| match &f.content {
                FrameContent::Image(image) => image,
                other => panic!("test pattern gives images, not {other:?}"),
            })
            .collect();
        for image in &images {
            assert_eq!(
                (image.format, image.width, image.height),
                (PixelFormat::Rgb8, w, h)
            );
            image.validate().unwrap();
        }
        assert_ne!(images[0].data, images[1].data);
        assert_ne!(images[1].data, images[2].data);
        assert!(frames
            .windows(2)
            .all(|p| p[0].timestamp_us <= p[1].timestamp_us));
        assert!(frames.iter().all(|f| !f.placeholder));
    }
}

#[test]
fn test_pattern_encodes() {
    let mut source = open(&SourceSpec::Test, &fast(640, 480)).unwrap();
    let frame = source.next_frame().unwrap().unwrap();
    let FrameContent::Image(image) = frame.content else {
        panic!()
    };
    let jpeg = encode(&image, &EncodeOptions::default()).unwrap();
    assert_eq!(vswa_codec::jpeg_dimensions(&jpeg), Some((640, 480)));
}

#[test]
fn placeholder_has_the_requested_size_and_text() {
    let image = placeholder_image(320, 240, "NO SIGNAL");
    assert_eq!((image.width, image.height), (320, 240));
    image.validate().unwrap();
    let background = &image.data[..3];
    assert!(
        image.data.chunks(3).any(|p| p != background),
        "text was drawn"
    );
}

// ---------------------------------------------------------------- resilient

/// Yields `frames` JPEG frames, then fails like an unplugged camera.
struct FlakyDevice {
    frames: usize,
}

impl Source for FlakyDevice {
    fn describe(&self) -> String {
        "flaky device".into()
    }
    fn is_live(&self) -> bool {
        true
    }
    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, CaptureError> {
        if self.frames == 0 {
            return Err(CaptureError::Camera {
                index: 0,
                message: "device unplugged".into(),
            });
        }
        self.frames -= 1;
        Ok(Some(CapturedFrame {
            timestamp_us: vswa_capture::now_us(),
            content: FrameContent::Jpeg {
                data: Bytes::from_static(b"\xff\xd8\xff\xd9"),
                width: 1,
                height: 1,
            },
            placeholder: false,
        }))
    }
}

#[test]
fn resilient_yields_placeholders_and_reopens() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    // Opening fails twice, then works; each device dies after two frames.
    let open = move || -> Result<Box<dyn Source>, CaptureError> {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        if n % 3 < 2 {
            Err(CaptureError::Camera {
                index: 0,
                message: "no such device".into(),
            })
        } else {
            Ok(Box::new(FlakyDevice { frames: 2 }))
        }
    };
    let mut source =
        Resilient::new("camera 0", 64, 48, open).with_retry_interval(Duration::from_millis(2));
    assert!(source.is_live());
    let kinds: Vec<bool> = (0..9)
        .map(|_| {
            let frame = source.next_frame().unwrap().unwrap();
            if frame.placeholder {
                let FrameContent::Image(image) = &frame.content else {
                    panic!()
                };
                assert_eq!((image.width, image.height), (64, 48));
            }
            frame.placeholder
        })
        .collect();
    // open fails, fails, works: 2 frames; then the device dies: placeholder at once,
    // and the reopen cycle repeats.
    assert_eq!(
        kinds,
        [true, true, false, false, true, true, true, false, false]
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 6);
    assert!(source.is_connected());
}

// ---------------------------------------------------------------- capture thread

/// A non-live source of `n` numbered frames.
struct Counter {
    n: u64,
    next: u64,
    live: bool,
    fail_at_end: bool,
}

impl Source for Counter {
    fn describe(&self) -> String {
        "counter".into()
    }
    fn is_live(&self) -> bool {
        self.live
    }
    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, CaptureError> {
        if self.next == self.n {
            if self.fail_at_end {
                return Err(CaptureError::InvalidConfig("boom".into()));
            }
            return Ok(None);
        }
        self.next += 1;
        if self.live {
            // Paced like a camera, so a slow consumer makes it drop frames.
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(Some(CapturedFrame {
            timestamp_us: self.next,
            content: FrameContent::Jpeg {
                data: Bytes::new(),
                width: 0,
                height: 0,
            },
            placeholder: false,
        }))
    }
}

#[test]
fn capture_thread_blocks_for_non_live_sources() {
    let thread = CaptureThread::spawn(
        Box::new(Counter {
            n: 50,
            next: 0,
            live: false,
            fail_at_end: false,
        }),
        2,
    );
    assert!(!thread.is_live());
    let mut seen = Vec::new();
    while let Some(frame) = thread.recv() {
        seen.push(frame.timestamp_us);
        // A consumer slower than the source: a non-live source must wait, not drop.
        std::thread::sleep(Duration::from_micros(100));
    }
    assert_eq!(seen, (1..=50).collect::<Vec<_>>());
    assert_eq!(thread.dropped(), 0);
    assert!(matches!(thread.take_end(), Some(CaptureEnd::Finished)));
}

#[test]
fn capture_thread_drops_for_live_sources_and_reports_failure() {
    let thread = CaptureThread::spawn(
        Box::new(Counter {
            n: 200,
            next: 0,
            live: true,
            fail_at_end: true,
        }),
        1,
    );
    // After the first frame, wait for the source to finish before receiving more: of
    // the other 199 frames, one fills the channel and the rest are dropped.
    let mut indices = Vec::new();
    while let Ok((index, _)) = thread.recv_indexed_timeout(Duration::from_secs(10)) {
        indices.push(index);
        if indices.len() == 1 {
            vswa_testkit::wait_for(Duration::from_secs(10), "the source to finish", || {
                (thread.dropped() >= 198).then_some(())
            });
        }
    }
    assert!(thread.dropped() > 0);
    assert_eq!(indices.len() as u64 + thread.dropped(), 200);
    // Each frame keeps its place in the source's numbering; drops are gaps.
    assert_eq!(indices[0], 0);
    assert!(indices.windows(2).all(|w| w[0] < w[1]), "{indices:?}");
    let gaps: u64 = indices.windows(2).map(|w| w[1] - w[0] - 1).sum();
    assert_eq!(gaps + (199 - indices.last().unwrap()), thread.dropped());
    match thread.take_end() {
        Some(CaptureEnd::Failed(e)) => assert!(e.to_string().contains("boom")),
        other => panic!("expected a failure report, got {other:?}"),
    }
}

#[test]
fn dropping_the_capture_thread_stops_an_endless_source() {
    let thread = CaptureThread::spawn(open(&SourceSpec::Test, &fast(64, 48)).unwrap(), 1);
    assert!(thread.recv_timeout(Duration::from_secs(10)).is_ok());
    drop(thread);
    let thread = CaptureThread::spawn(
        Box::new(Counter {
            n: u64::MAX,
            next: 0,
            live: false,
            fail_at_end: false,
        }),
        1,
    );
    assert!(thread.recv().is_some());
    drop(thread); // the source is blocked on a full channel; this must not hang
}

// ---------------------------------------------------------------- MJPEG

fn split_all(stream: &[u8], chunk: usize) -> (Vec<Bytes>, MjpegSplitter) {
    let mut splitter = MjpegSplitter::new();
    let mut out = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        splitter.push(piece);
        while let Some(jpeg) = splitter.next_jpeg().unwrap() {
            out.push(jpeg);
        }
    }
    (out, splitter)
}

fn ffmpeg_mjpeg() -> Option<Vec<u8>> {
    let output = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .args([
            "testsrc=size=320x240:rate=30",
            "-t",
            "1",
            "-f",
            "mjpeg",
            "-",
        ])
        .output();
    match output {
        Ok(out) if out.status.success() => Some(out.stdout),
        other => {
            if vswa_testkit::tools_required() {
                panic!("ffmpeg is required (VSWA_REQUIRE_TOOLS=1) but failed: {other:?}");
            }
            println!("skipping: ffmpeg not available ({other:?})");
            None
        }
    }
}

#[test]
fn splits_real_ffmpeg_output() {
    let Some(stream) = ffmpeg_mjpeg() else { return };
    for chunk in [1, 7, 4096, stream.len()] {
        let (jpegs, splitter) = split_all(&stream, chunk);
        assert_eq!(jpegs.len(), 30, "chunk {chunk}");
        assert_eq!(splitter.garbage_bytes(), 0);
        assert_eq!(splitter.pending_bytes(), 0);
        assert_eq!(jpegs.iter().map(Bytes::len).sum::<usize>(), stream.len());
        for jpeg in &jpegs {
            assert_eq!(vswa_codec::jpeg_dimensions(jpeg), Some((320, 240)));
            let decoded = vswa_codec::decode(jpeg).unwrap();
            assert_eq!((decoded.width, decoded.height), (320, 240));
        }
    }
    // The same through the source, from a file paced at 1000 fps.
    let path = temp_path("ffmpeg.mjpeg");
    std::fs::write(&path, &stream).unwrap();
    let spec: SourceSpec = format!("mjpeg:{}", path.display()).parse().unwrap();
    let mut source = open(&spec, &fast(0, 0)).unwrap();
    assert!(!source.is_live());
    let mut count = 0;
    let mut last_ts = 0;
    while let Some(frame) = source.next_frame().unwrap() {
        let (_, w, h) = jpeg_of(&frame);
        assert_eq!((w, h), (320, 240));
        assert!(frame.timestamp_us >= last_ts);
        last_ts = frame.timestamp_us;
        count += 1;
    }
    assert_eq!(count, 30);
}

/// Wraps `thumbnail` in an EXIF APP1 segment inserted after the SOI of `main`.
fn with_exif_thumbnail(main: &[u8], thumbnail: &[u8]) -> Vec<u8> {
    let mut body = b"Exif\0\0".to_vec();
    // A minimal TIFF header; readers that do not look inside only need the length right.
    body.extend_from_slice(b"MM\0\x2a\0\0\0\x08");
    body.extend_from_slice(thumbnail);
    let len = u16::try_from(body.len() + 2).unwrap();
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&main[2..]);
    out
}

#[test]
fn exif_thumbnail_does_not_split_the_picture() {
    let thumbnail = jpeg(16, 8, 3);
    let main = with_exif_thumbnail(&jpeg(64, 48, 5), &thumbnail);
    vswa_codec::decode(&main).unwrap();
    let mut stream = main.clone();
    stream.extend_from_slice(&jpeg(32, 32, 9));
    stream.extend_from_slice(&main);
    for chunk in [1, 3, 100, stream.len()] {
        let (jpegs, splitter) = split_all(&stream, chunk);
        assert_eq!(jpegs.len(), 3, "chunk {chunk}");
        assert_eq!(jpegs[0], main);
        assert_eq!(jpegs[2], main);
        assert_eq!(vswa_codec::jpeg_dimensions(&jpegs[0]), Some((64, 48)));
        assert_eq!(splitter.garbage_bytes(), 0);
    }
}

#[test]
fn garbage_between_pictures_is_skipped_and_counted() {
    let a = jpeg(16, 16, 1);
    let b = jpeg(24, 16, 2);
    let mut stream = b"HTTP/1.0 200 OK\r\n\r\n--boundary\r\n\xff\xff\x00".to_vec();
    let lead = stream.len();
    stream.extend_from_slice(&a);
    let separator = b"\r\n--boundary\r\n";
    stream.extend_from_slice(separator);
    stream.extend_from_slice(&b);
    // A picture cut off by the start of the next one is dropped as garbage.
    stream.extend_from_slice(&a[..a.len() / 2]);
    stream.extend_from_slice(&b);
    let (jpegs, splitter) = split_all(&stream, 5);
    assert_eq!(jpegs, vec![a.clone(), b.clone(), b.clone()]);
    assert_eq!(
        splitter.garbage_bytes(),
        (lead + separator.len() + a.len() / 2) as u64
    );
}

#[test]
fn oversized_picture_is_reported_then_skipped() {
    let big = jpeg(128, 128, 7);
    let small = jpeg(8, 8, 1);
    let mut splitter = MjpegSplitter::with_max_len(small.len() + 10);
    let mut stream = big.to_vec();
    stream.extend_from_slice(&small);
    let mut got = Vec::new();
    let mut errors = 0;
    for piece in stream.chunks(64) {
        splitter.push(piece);
        loop {
            match splitter.next_jpeg() {
                Ok(Some(jpeg)) => got.push(jpeg),
                Ok(None) => break,
                Err(CaptureError::FrameTooLarge { offset, .. }) => {
                    assert_eq!(offset, 0);
                    errors += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert_eq!(errors, 1);
    assert_eq!(got, vec![small]);
}

#[test]
fn mjpeg_input_cut_mid_picture_ends_cleanly() {
    let a = jpeg(16, 16, 1);
    let mut stream = a.to_vec();
    stream.extend_from_slice(&a[..a.len() - 3]);
    let path = temp_path("cut.mjpeg");
    std::fs::write(&path, &stream).unwrap();
    let mut source = open(&SourceSpec::Mjpeg { path: Some(path) }, &fast(0, 0)).unwrap();
    assert!(source.next_frame().unwrap().is_some());
    assert!(source.next_frame().unwrap().is_none());
}

/// Input that ends without a single whole JPEG is an error that says so, not a
/// quiet end: text on stdin, garbage in a file, an empty file, a picture cut off.
#[test]
fn mjpeg_input_without_a_jpeg_is_an_error() {
    let a = jpeg(16, 16, 1);
    let stdin = |bytes: Vec<u8>| {
        let mut source =
            MjpegSource::new(Box::new(std::io::Cursor::new(bytes)), "stdin", None).unwrap();
        source.next_frame().map(|f| f.is_some())
    };
    for (input, bytes) in [
        (b"hello\n".to_vec(), 6),
        (Vec::new(), 0),
        (a[..a.len() - 3].to_vec(), a.len() - 3),
    ] {
        let err = stdin(input).unwrap_err();
        assert!(matches!(err, CaptureError::NoJpeg { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("no JPEG found in input ({bytes} bytes read)")
        );
    }
    let path = temp_path("garbage.mjpeg");
    std::fs::write(&path, b"not a picture").unwrap();
    let mut source = open(
        &SourceSpec::Mjpeg {
            path: Some(path.clone()),
        },
        &fast(0, 0),
    )
    .unwrap();
    let err = source.next_frame().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no JPEG found in {} (13 bytes read)", path.display())
    );
    // With a picture, the end of input is the end, however much garbage followed.
    let mut stream = a.to_vec();
    stream.extend_from_slice(b"trailing garbage");
    assert!(stdin(stream.clone()).unwrap());
    let mut source =
        MjpegSource::new(Box::new(std::io::Cursor::new(stream)), "stdin", None).unwrap();
    assert!(source.next_frame().unwrap().is_some());
    assert!(source.next_frame().unwrap().is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_chunking_gives_the_same_pictures(
        cuts in proptest::collection::vec(1usize..300, 1..64),
        garbage in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let pictures = [
            jpeg(16, 16, 1),
            Bytes::from(with_exif_thumbnail(&jpeg(24, 16, 2), &jpeg(8, 8, 3))),
            jpeg(40, 8, 4),
        ];
        let mut stream = Vec::new();
        for picture in &pictures {
            // Garbage without 0xFF cannot contain or complete a marker.
            stream.extend(garbage.iter().map(|&b| b & 0x7F));
            stream.extend_from_slice(picture);
        }
        let mut splitter = MjpegSplitter::new();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = cuts[i % cuts.len()].min(rest.len());
            splitter.push(&rest[..n]);
            rest = &rest[n..];
            i += 1;
            while let Some(jpeg) = splitter.next_jpeg().unwrap() {
                got.push(jpeg);
            }
        }
        prop_assert_eq!(&got[..], &pictures[..]);
        prop_assert_eq!(splitter.garbage_bytes(), 3 * garbage.len() as u64);
    }

    #[test]
    fn garbage_never_panics(
        data in proptest::collection::vec(
            prop_oneof![Just(0xFFu8), Just(0xD8), Just(0xD9), Just(0xDA), Just(0x00), any::<u8>()],
            0..2000,
        ),
        chunk in 1usize..64,
    ) {
        let mut splitter = MjpegSplitter::with_max_len(512);
        for piece in data.chunks(chunk) {
            splitter.push(piece);
            while let Ok(Some(jpeg)) = splitter.next_jpeg() {
                prop_assert!(jpeg.starts_with(&[0xFF, 0xD8]));
                prop_assert!(jpeg.ends_with(&[0xFF, 0xD9]));
            }
        }
        prop_assert!(splitter.pending_bytes() <= data.len());
    }
}

// ---------------------------------------------------------------- replay

fn write_recording(name: &str, frames: &[(u64, Bytes)]) -> (PathBuf, Vec<u8>) {
    let mut writer = RecordingWriter::new(Vec::new()).unwrap();
    for (seq, (ts, payload)) in frames.iter().enumerate() {
        let header = FrameHeader::jpeg(seq as u64, *ts, 16, 16);
        writer
            .write_frame(&Frame::new(header, payload.clone()))
            .unwrap();
    }
    let bytes = writer.into_inner();
    let path = temp_path(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

fn recorded(n: u64) -> Vec<(u64, Bytes)> {
    (0..n)
        .map(|i| (1_700_000_000_000_000 + i * 1000, jpeg(16, 16, i as u8 + 1)))
        .collect()
}

#[test]
fn replay_yields_payloads_with_fresh_timestamps() {
    let frames = recorded(5);
    let (path, _) = write_recording("five.vswa", &frames);
    // Recorded 1 ms apart, so the original pace is quick enough for a test.
    let cfg = SourceConfig {
        fps: None,
        ..SourceConfig::default()
    };
    let mut source = open(&SourceSpec::Replay { path }, &cfg).unwrap();
    assert!(!source.is_live());
    let mut last = 0;
    for (_, payload) in &frames {
        let frame = source.next_frame().unwrap().unwrap();
        let (data, w, h) = jpeg_of(&frame);
        assert_eq!(data, payload);
        assert_eq!((w, h), (16, 16));
        assert!(frame.timestamp_us > 1_700_000_000_000_000 + 10_000_000);
        assert!(frame.timestamp_us >= last);
        last = frame.timestamp_us;
    }
    assert!(source.next_frame().unwrap().is_none());
}

#[test]
fn replay_of_a_cut_recording_plays_every_complete_frame() {
    let frames = recorded(4);
    let (_, bytes) = write_recording("whole.vswa", &frames);
    let cut_path = temp_path("cut.vswa");
    // Cut in the middle of the last frame's payload.
    std::fs::write(&cut_path, &bytes[..bytes.len() - frames[3].1.len() / 2]).unwrap();
    let mut source = open(&SourceSpec::Replay { path: cut_path }, &fast(0, 0)).unwrap();
    for (_, payload) in &frames[..3] {
        let frame = source.next_frame().unwrap().unwrap();
        assert_eq!(jpeg_of(&frame).0, payload);
    }
    assert!(source.next_frame().unwrap().is_none());
}

#[test]
fn replay_loops() {
    let frames = recorded(3);
    let (path, _) = write_recording("loop.vswa", &frames);
    let cfg = SourceConfig {
        loop_replay: true,
        ..fast(0, 0)
    };
    let mut source = open(&SourceSpec::Replay { path }, &cfg).unwrap();
    for round in 0..3 {
        for (_, payload) in &frames {
            let frame = source.next_frame().unwrap().unwrap();
            assert_eq!(jpeg_of(&frame).0, payload, "round {round}");
        }
    }
}

#[test]
fn replay_of_an_empty_recording_with_loop_ends() {
    let (path, _) = write_recording("empty.vswa", &[]);
    let cfg = SourceConfig {
        loop_replay: true,
        ..fast(0, 0)
    };
    let mut source = open(&SourceSpec::Replay { path }, &cfg).unwrap();
    // It ends (rather than looping over nothing forever), with an error saying why.
    assert!(source.next_frame().is_err());
}

/// A recording with nothing to play is an error that says so: a file header and no
/// frames, a 0-byte file, a header and a cut first frame.
#[test]
fn replay_of_a_recording_without_frames_is_an_error() {
    let (header_only, _) = write_recording("header-only.vswa", &[]);
    let empty = temp_path("zero-bytes.vswa");
    std::fs::write(&empty, b"").unwrap();
    let (_, whole) = write_recording("one.vswa", &recorded(1));
    let cut = temp_path("cut-first.vswa");
    std::fs::write(&cut, &whole[..whole.len() - 5]).unwrap();
    let first = |path: &PathBuf| {
        open(&SourceSpec::Replay { path: path.clone() }, &fast(0, 0))
            .and_then(|mut source| source.next_frame())
            .map(|f| f.is_some())
    };
    for (path, says) in [
        (&header_only, "holds no frames"),
        (&empty, "the file is empty"),
        (&cut, "0 complete frames"),
    ] {
        let err = first(path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("replay of {}: ", path.display())),
            "{err}"
        );
        assert!(err.contains(says), "{}: {err}", path.display());
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn replay_rejects_non_recordings_and_corrupt_files() {
    let path = temp_path("not-a-recording.txt");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(b"hello world, not a recording")
        .unwrap();
    let err = open(&SourceSpec::Replay { path }, &fast(0, 0)).unwrap_err();
    assert!(err.to_string().contains("not a VSWA recording"), "{err}");

    let missing = open(
        &SourceSpec::Replay {
            path: temp_path("missing.vswa"),
        },
        &fast(0, 0),
    );
    assert!(matches!(missing, Err(CaptureError::Io { .. })));

    // A valid file header followed by a frame with bad magic.
    let (_, mut bytes) = write_recording("corrupt-src.vswa", &recorded(2));
    bytes[16] = b'X';
    let path = temp_path("corrupt.vswa");
    std::fs::write(&path, &bytes).unwrap();
    let mut source = open(&SourceSpec::Replay { path }, &fast(0, 0)).unwrap();
    let err = source.next_frame().unwrap_err();
    assert!(err.to_string().contains("corrupt frame 0"), "{err}");
}

/// Issue 16: with a give-up time (`vswa-send --camera-wait`), a device that never
/// appears ends the source with an error saying so, after "NO SIGNAL" frames meanwhile.
#[test]
fn resilient_source_gives_up_on_a_device_that_never_appears() {
    let mut source = Resilient::new("camera 9", 32, 24, || -> Result<Box<dyn Source>, _> {
        Err(CaptureError::Camera {
            index: 9,
            message: "no such device".into(),
        })
    })
    .with_retry_interval(Duration::from_millis(20))
    .with_give_up(Some(Duration::from_millis(150)));
    let started = std::time::Instant::now();
    let mut placeholders = 0;
    let error = loop {
        match source.next_frame() {
            Ok(Some(frame)) => {
                assert!(frame.placeholder);
                placeholders += 1;
            }
            Ok(None) => panic!("a live source does not end"),
            Err(e) => break e,
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never gave up");
    };
    assert!(placeholders >= 1);
    assert!(started.elapsed() >= Duration::from_millis(150));
    let text = error.to_string();
    assert!(
        text.contains("did not appear within 0.15 s") && text.contains("no such device"),
        "{text}"
    );
}

/// An H.264 recording replays as H.264: each access unit as it was, keyframes flagged.
#[test]
fn replay_of_an_h264_recording_passes_its_access_units_through() {
    let mut writer = RecordingWriter::new(Vec::new()).unwrap();
    let units: [&[u8]; 3] = [
        b"\0\0\0\x01\x67\x42\0\0\0\x01\x65\x88",
        b"\0\0\0\x01\x41\x9A",
        b"\0\0\x01\x41\x9B",
    ];
    for (i, unit) in units.iter().enumerate() {
        let header = FrameHeader::h264(i as u64, 1000 + i as u64 * 33_000, 320, 240, i == 0);
        writer
            .write_frame(&Frame::new(header, Bytes::copy_from_slice(unit)))
            .unwrap();
    }
    let path = temp_path("h264.vswa");
    std::fs::write(&path, writer.into_inner()).unwrap();
    let mut source = open(&SourceSpec::Replay { path }, &fast(0, 0)).unwrap();
    for (i, unit) in units.iter().enumerate() {
        let frame = source.next_frame().unwrap().expect("a frame");
        match frame.content {
            vswa_capture::FrameContent::H264 {
                data,
                keyframe,
                width,
                height,
            } => {
                assert_eq!(&data[..], *unit, "frame {i}");
                assert_eq!(keyframe, i == 0, "frame {i}");
                assert_eq!((width, height), (320, 240));
            }
            other => panic!("frame {i} is not H.264: {other:?}"),
        }
    }
    assert!(source.next_frame().unwrap().is_none());
}
