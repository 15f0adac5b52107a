//! End to end with H.264 streams: the real relay (or, where the relay would hide what is
//! tested, a stand-in WebSocket server) on loopback ports chosen at run time, H.264
//! published from this test (OpenH264 encoding a moving test pattern), and the real
//! `vswa-recv` binary; ffprobe judges what `--h264` writes.

mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use vswa_client::{Publisher, PublisherConfig};
use vswa_codec::annexb::{AccessUnitSplitter, EncodedAccessUnit};
use vswa_codec::{H264Encoder, H264Options};
use vswa_protocol::{recording, Codec, Flags, Frame, FrameHeader};

const LIMIT: Duration = Duration::from_secs(60);
const SIZE: (u32, u32) = (320, 240);
const FPS: f64 = 30.0;

/// OpenH264 settings with a keyframe every `gop` frames and no frames skipped by the
/// rate control (so frame numbers are predictable).
fn options(gop: u32) -> H264Options {
    H264Options {
        fps: FPS,
        keyframe_interval: Duration::from_secs_f64(f64::from(gop) / FPS),
        allow_frame_skip: false,
        ..H264Options::default()
    }
}

/// `n` access units of the moving test pattern at `size`, a keyframe every `gop`.
fn encode(n: u64, gop: u32, size: (u32, u32)) -> Vec<EncodedAccessUnit> {
    let pattern = vswa_capture::TestPattern::new(size.0, size.1, FPS).unwrap();
    let mut encoder = H264Encoder::new(size.0, size.1, &options(gop)).unwrap();
    (0..n)
        .map(|i| {
            let unit = encoder
                .encode(&pattern.render(i, i * 33_333))
                .unwrap()
                .expect("no frame skipping");
            assert_eq!(unit.keyframe, i % u64::from(gop) == 0, "frame {i}");
            unit
        })
        .collect()
}

fn frame(sequence: u64, timestamp_us: u64, unit: &EncodedAccessUnit, size: (u32, u32)) -> Frame {
    let header = FrameHeader::h264(
        sequence,
        timestamp_us,
        size.0 as u16,
        size.1 as u16,
        unit.keyframe,
    );
    Frame::new(header, unit.data.clone())
}

/// Publishes the moving test pattern as H.264 (a keyframe every `gop` frames) to stream
/// `name`, one frame every 20 ms, from its own thread until dropped. Keeps what it sent.
struct H264Publisher {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<Frame>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl H264Publisher {
    fn start(relay: &Relay, name: &str, gop: u32) -> H264Publisher {
        let url = relay.publish_url(name);
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (stop2, sent2) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let publisher = rt
                .block_on(Publisher::connect(PublisherConfig::new(url)))
                .expect("publisher connects");
            let pattern = vswa_capture::TestPattern::new(SIZE.0, SIZE.1, FPS).unwrap();
            let mut encoder = H264Encoder::new(SIZE.0, SIZE.1, &options(gop)).unwrap();
            // At most about 3 minutes, whatever the test does.
            for seq in 0..10_000u64 {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                // The pattern burns the time in: the header says which picture it is.
                let now = vswa_capture::now_us();
                let unit = encoder.encode(&pattern.render(seq, now)).unwrap().unwrap();
                let f = frame(seq, now, &unit, SIZE);
                if rt.block_on(publisher.send(f.clone())).is_err() {
                    break;
                }
                sent2.lock().unwrap().push(f);
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = rt.block_on(publisher.finish());
        });
        H264Publisher {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    fn sent(&self) -> Vec<Frame> {
        self.sent.lock().unwrap().clone()
    }
}

impl Drop for H264Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What ffprobe finds in an H.264 byte stream.
#[derive(Debug)]
struct Probe {
    codec: String,
    size: (u64, u64),
    frames: u64,
    /// ffprobe's complaints (decode errors); empty for a clean stream.
    errors: String,
}

/// `ffprobe -f h264 -count_frames -show_streams` on `input` (a file, or `-` with `stdin`).
fn ffprobe(input: &str, stdin: Stdio) -> Probe {
    let mut child = Guard(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-f",
                "h264",
                "-count_frames",
                "-show_streams",
            ])
            .args(["-of", "json", input])
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ffprobe"),
    );
    let out = read_in_thread(child.0.stdout.take().unwrap());
    let err = read_in_thread(child.0.stderr.take().unwrap());
    let status = wait_with_limit(&mut child.0, LIMIT).expect("ffprobe finishes");
    let out = String::from_utf8_lossy(&out.join().unwrap()).into_owned();
    let errors = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    assert!(status.success(), "ffprobe: {errors}");
    let json: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let stream = &json["streams"][0];
    Probe {
        codec: stream["codec_name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        size: (
            stream["width"].as_u64().unwrap_or(0),
            stream["height"].as_u64().unwrap_or(0),
        ),
        frames: stream["nb_read_frames"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        errors,
    }
}

/// The access units of an Annex B byte stream.
fn access_units(stream: &[u8]) -> Vec<EncodedAccessUnit> {
    let mut splitter = AccessUnitSplitter::new();
    splitter.push(stream);
    let mut units = Vec::new();
    while let Some(unit) = splitter.next_access_unit().unwrap() {
        units.push(unit);
    }
    units.extend(splitter.finish().unwrap());
    units
}

/// `vswa-recv --h264 - --count 45 | ffprobe -f h264 -`: H.264 of the published size,
/// 45 frames, no decode errors.
#[test]
fn h264_on_stdout_is_read_by_ffprobe() {
    if !have_tool("ffprobe", "-version") {
        return;
    }
    let relay = Relay::start(&[]);
    let url = relay.watch_url("cam");
    let mut recv_child = Guard(
        recv(&["--url", &url, "--h264", "-", "--count", "45"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let recv_err = read_in_thread(recv_child.0.stderr.take().unwrap());
    let stdout = Stdio::from(recv_child.0.stdout.take().unwrap());
    wait_for_viewer(&relay, "cam");
    let publisher = H264Publisher::start(&relay, "cam", 15);
    let probe = ffprobe("-", stdout);
    let status = wait_with_limit(&mut recv_child.0, LIMIT).expect("vswa-recv finishes");
    drop(publisher);
    let recv_err = String::from_utf8_lossy(&recv_err.join().unwrap()).into_owned();
    assert!(status.success(), "{recv_err}");
    assert_no_panic(&recv_err);
    assert_eq!(probe.codec, "h264", "{probe:?}");
    assert_eq!(
        probe.size,
        (u64::from(SIZE.0), u64::from(SIZE.1)),
        "{probe:?}"
    );
    assert_eq!(probe.frames, 45, "{probe:?}\n{recv_err}");
    assert_eq!(probe.errors.trim(), "", "{probe:?}");
}

/// A viewer that joins in the middle of a GOP: the relay hands it the GOP from its
/// keyframe, so the file starts with that keyframe (SPS, PPS, IDR), holds the frames
/// the publisher sent in order, and decodes without an error.
#[test]
fn joining_mid_gop_starts_the_file_at_a_keyframe() {
    if !have_tool("ffprobe", "-version") {
        return;
    }
    let relay = Relay::start(&[]);
    let tmp = TempDir::new("h264-join");
    let out = tmp.join("cam.h264");
    // A keyframe every 2 s, and 7 frames of the first GOP sent before the viewer comes.
    let publisher = H264Publisher::start(&relay, "cam", 60);
    wait_for(LIMIT, "7 frames published", || {
        (publisher.sent().len() >= 7).then_some(())
    });
    let done = run_recv(
        &[
            "--url",
            &relay.watch_url("cam"),
            "--h264",
            out.to_str().unwrap(),
            "--count",
            "20",
        ],
        LIMIT,
    );
    let sent = publisher.sent();
    drop(publisher);
    done.assert_ok();
    let bytes = fs::read(&out).unwrap();
    let units = access_units(&bytes);
    assert_eq!(units.len(), 20);
    assert!(units[0].keyframe, "the file starts with a delta frame");
    assert_eq!(units[0].data, sent[0].payload(), "not the GOP's keyframe");
    // In the order sent, none twice, none but the relay's own drops missing.
    let mut at = 0;
    for (i, unit) in units.iter().enumerate() {
        let found = sent[at..]
            .iter()
            .position(|f| f.payload() == &unit.data)
            .unwrap_or_else(|| panic!("access unit {i} was not sent after the one before"));
        at += found + 1;
    }
    let probe = ffprobe(out.to_str().unwrap(), Stdio::null());
    assert_eq!(probe.codec, "h264");
    assert_eq!(probe.frames, 20, "{probe:?}");
    assert_eq!(probe.errors.trim(), "", "{probe:?}");
}

/// A stand-in relay on a loopback port: greets one viewer, sends `frames`, then `end`
/// (publisher left), and waits for the viewer to close. Returns the watch URL.
fn stand_in_relay(frames: Vec<Frame>) -> (String, std::thread::JoinHandle<()>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use vswa_protocol::control::{ControlMessage, End, EndReason, Hello, Role};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("ws://{}/ws/watch/cam", listener.local_addr().unwrap());
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (tcp, _) = tokio::time::timeout(LIMIT, listener.accept())
                .await
                .expect("a viewer connects")
                .unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let hello = ControlMessage::Hello(Hello {
                protocol: 1,
                role: Role::Viewer,
                stream: "cam".into(),
                server: "stand-in".into(),
                max_payload_len: vswa_protocol::DEFAULT_MAX_PAYLOAD_LEN,
                live: true,
                max_latency_ms: None,
            });
            ws.send(Message::Text(hello.to_json().into()))
                .await
                .unwrap();
            for f in frames {
                ws.send(Message::Binary(f.to_bytes())).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let end = ControlMessage::End(End {
                stream: "cam".into(),
                reason: EndReason::PublisherLeft,
            });
            ws.send(Message::Text(end.to_json().into())).await.unwrap();
            let _ = tokio::time::timeout(Duration::from_secs(20), async {
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        });
    });
    (url, thread)
}

/// What vswa-recv does itself, with a server that (unlike the relay) hands it delta
/// frames first and then loses an encoded frame: `--h264` starts at the first keyframe,
/// skips from the loss to the next keyframe, and lets through a sequence gap over
/// frames that were never encoded; the summary counts what was skipped; `--record`
/// keeps every frame with codec 2; `--out-dir` (feature `h264`) saves the keyframes.
#[test]
fn skips_to_keyframes_where_the_server_does_not() {
    let size = (64, 48);
    let units = encode(30, 10, size);
    // Units 4..30 (the viewer came mid-GOP) without 14 (lost), with sequence numbers
    // that jump by 3 before unit 22 (frames the sender dropped before encoding).
    let sequence = |i: usize| i as u64 + if i >= 22 { 3 } else { 0 };
    let frames: Vec<Frame> = (4..30)
        .filter(|&i| i != 14)
        .map(|i| frame(sequence(i), vswa_capture::now_us(), &units[i], size))
        .collect();
    let (url, server) = stand_in_relay(frames.clone());
    let tmp = TempDir::new("h264-skip");
    let (out, rec, dir) = (tmp.join("out.h264"), tmp.join("rec.vswa"), tmp.join("d"));
    let mut args = vec![
        "--url",
        &url,
        "--h264",
        out.to_str().unwrap(),
        "--record",
        rec.to_str().unwrap(),
        "--stats-json",
    ];
    if cfg!(feature = "h264") {
        args.extend(["--out-dir", dir.to_str().unwrap()]);
    }
    let done = run_recv(&args, LIMIT);
    server.join().unwrap();
    done.assert_ok();
    assert_no_panic(&done.stderr);

    let summary: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(summary["stopped"], "stream_ended", "{summary}");
    assert_eq!(summary["frames"], 25, "{summary}");
    // 4..=9 before the first keyframe, 15..=19 after the loss.
    assert_eq!(summary["skipped_to_keyframe"], 11, "{summary}");
    // The sequence gaps: 1 (the lost frame) and 3.
    assert_eq!(summary["drops"], 4, "{summary}");
    assert!(
        done.last_line().contains("11 skipped to the next keyframe"),
        "{}",
        done.stderr
    );

    let expected: Vec<u8> = (10..14)
        .chain(20..30)
        .flat_map(|i| units[i].data.to_vec())
        .collect();
    assert!(
        fs::read(&out).unwrap() == expected,
        "--h264 wrote other than units 10..14 and 20..30"
    );
    if have_tool("ffprobe", "-version") {
        let probe = ffprobe(out.to_str().unwrap(), Stdio::null());
        assert_eq!((probe.frames, probe.size), (14, (64, 48)), "{probe:?}");
        assert_eq!(probe.errors.trim(), "", "{probe:?}");
    }

    let (recorded, err) = recording::parse(&fs::read(&rec).unwrap());
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        recorded, frames,
        "the recording is not every frame as received"
    );
    assert!(recorded.iter().all(|f| f.header().codec == Codec::H264));

    #[cfg(feature = "h264")]
    {
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        let seqs: Vec<&str> = files.iter().map(|n| &n[6..18]).collect();
        assert_eq!(seqs, ["000000000010", "000000000020"], "{files:?}");
        for name in &files {
            let img = vswa_codec::decode(&fs::read(dir.join(name)).unwrap()).unwrap();
            assert_eq!((img.width, img.height), size);
        }
    }
}

/// `--out-dir` of an H.264 stream saves its keyframes as JPEGs: decodable, the
/// published size, named by the keyframes' sequence numbers, and the published
/// pictures (PSNR against the test pattern they were encoded from).
#[cfg(feature = "h264")]
#[test]
fn out_dir_saves_h264_keyframes_as_jpegs() {
    let relay = Relay::start(&[]);
    let tmp = TempDir::new("h264-out-dir");
    let dir = tmp.join("d");
    let url = relay.watch_url("cam");
    let mut child = Guard(
        recv(&["--url", &url, "--out-dir", dir.to_str().unwrap()])
            .args(["--count", "25"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let err = read_in_thread(child.0.stderr.take().unwrap());
    wait_for_viewer(&relay, "cam");
    let publisher = H264Publisher::start(&relay, "cam", 10);
    let status = wait_with_limit(&mut child.0, LIMIT).expect("vswa-recv finishes");
    let sent = publisher.sent();
    drop(publisher);
    let err = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    assert!(status.success(), "{err}");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    // 25 frames from the first keyframe on hold three keyframes (a GOP of 10).
    assert_eq!(files.len(), 3, "{files:?}\n{err}");
    let pattern = vswa_capture::TestPattern::new(SIZE.0, SIZE.1, FPS).unwrap();
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let seq: u64 = name[6..18].parse().unwrap();
        let sent_frame = sent.iter().find(|f| f.header().sequence == seq).unwrap();
        assert!(
            sent_frame.header().flags.contains(Flags::KEYFRAME),
            "{name}"
        );
        let img = vswa_codec::decode(&fs::read(path).unwrap()).unwrap();
        assert_eq!((img.width, img.height), SIZE);
        // The pattern's pictures depend on the frame number only through the moving
        // parts and the burned-in counter, so this picture is close to frame `seq`.
        let original = pattern
            .render(seq, sent_frame.header().timestamp_us)
            .to_rgb();
        let psnr = vswa_codec::psnr(&img.rgb, &original);
        assert!(psnr > 25.0, "{name}: PSNR {psnr:.1} dB");
    }
}

/// Without the `h264` feature, `--out-dir` of an H.264 stream stops at the first frame
/// with one line naming the feature (exit 5).
#[cfg(not(feature = "h264"))]
#[test]
fn out_dir_of_h264_without_the_feature_is_refused() {
    let relay = Relay::start(&[]);
    let tmp = TempDir::new("h264-no-feature");
    let url = relay.watch_url("cam");
    let dir = tmp.join("d");
    let mut child = Guard(
        recv(&["--url", &url, "--out-dir", dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let err = read_in_thread(child.0.stderr.take().unwrap());
    wait_for_viewer(&relay, "cam");
    let publisher = H264Publisher::start(&relay, "cam", 10);
    let status = wait_with_limit(&mut child.0, LIMIT).expect("vswa-recv exits");
    drop(publisher);
    let err = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    assert_no_panic(&err);
    assert_eq!(status.code(), Some(5), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("vswa-recv: error: --out-dir of an H.264 stream needs")
            && last.contains("`h264` feature"),
        "{err}"
    );
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
}

/// `--record` of an H.264 stream keeps codec 2, the keyframe flags and the payloads.
#[test]
fn record_keeps_h264() {
    let relay = Relay::start(&[]);
    let tmp = TempDir::new("h264-record");
    let rec = tmp.join("rec.vswa");
    let url = relay.watch_url("cam");
    let mut child = Guard(
        recv(&["--url", &url, "--record", rec.to_str().unwrap()])
            .args(["--count", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let err = read_in_thread(child.0.stderr.take().unwrap());
    wait_for_viewer(&relay, "cam");
    let publisher = H264Publisher::start(&relay, "cam", 10);
    let status = wait_with_limit(&mut child.0, LIMIT).expect("vswa-recv finishes");
    let sent = publisher.sent();
    drop(publisher);
    let err = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    assert!(status.success(), "{err}");
    let (frames, e) = recording::parse(&fs::read(&rec).unwrap());
    assert!(e.is_none(), "{e:?}");
    assert_eq!(frames.len(), 30);
    assert!(frames[0].header().flags.contains(Flags::KEYFRAME));
    for f in &frames {
        let h = f.header();
        assert_eq!(h.codec, Codec::H264);
        assert_eq!(h.codec.id(), 2);
        let original = sent
            .iter()
            .find(|s| s.header().sequence == h.sequence)
            .unwrap();
        assert_eq!(f, original, "frame {}", h.sequence);
    }
}

/// Outputs that do not fit the stream's codec, and arguments that cannot work: one
/// line, the documented exit code, no panic.
#[test]
fn codec_mismatches_and_conflicting_outputs_are_refused() {
    let check = |args: &[&str], code: i32, needle: &str| {
        let done = run_recv(args, LIMIT);
        assert_no_panic(&done.stderr);
        assert_eq!(done.code(), code, "{args:?}: {}", done.stderr);
        let last = done.last_line();
        assert!(last.starts_with("vswa-recv: error: "), "{}", done.stderr);
        assert!(
            last.contains(needle),
            "{args:?}: {needle:?} not in {last:?}"
        );
        done
    };
    // --h264 of a JPEG stream.
    let jpeg = Relay::demo();
    let done = check(
        &["--url", &jpeg.watch_url("demo"), "--h264", "-"],
        5,
        "--h264 takes H.264 streams, and this stream is JPEG: use --mjpeg",
    );
    assert!(done.stdout.is_empty(), "JPEG bytes written to --h264");

    // --mjpeg of an H.264 stream.
    let relay = Relay::start(&[]);
    let publisher = H264Publisher::start(&relay, "cam", 10);
    let done = check(
        &["--url", &relay.watch_url("cam"), "--mjpeg", "-"],
        5,
        "--mjpeg takes JPEG streams, and this stream is H.264: use --h264",
    );
    assert!(done.stdout.is_empty(), "H.264 bytes written to --mjpeg");
    drop(publisher);

    // Both want stdout, or both video outputs at once.
    let url = relay.watch_url("cam");
    check(
        &["--url", &url, "--h264", "-", "--stats-json"],
        2,
        "--stats-json and --h264 - both want stdout",
    );
    check(
        &["--url", &url, "--h264", "a", "--mjpeg", "b"],
        2,
        "--mjpeg and --h264 cannot be combined",
    );
}

/// A reader that closes the `--h264` pipe ends vswa-recv with exit 0 and no error; one
/// that stops reading does not keep it from stopping on SIGTERM.
#[test]
fn h264_pipe_closed_or_blocked() {
    use std::io::Read;
    let relay = Relay::start(&[]);
    let _publisher = H264Publisher::start(&relay, "cam", 10);
    let url = relay.watch_url("cam");

    let mut child = Guard(
        recv(&["--url", &url, "--h264", "-"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let err = read_in_thread(child.0.stderr.take().unwrap());
    {
        let mut out = child.0.stdout.take().unwrap();
        let mut first = vec![0u8; 5];
        out.read_exact(&mut first).unwrap();
        assert!(
            first.starts_with(&[0, 0, 0, 1, 0x67]) || first.starts_with(&[0, 0, 1, 0x67]),
            "the stream does not start with an SPS: {first:02x?}"
        );
        let mut buf = vec![0u8; 16 * 1024];
        let mut got = 0;
        while got < 32 * 1024 {
            let n = out.read(&mut buf).unwrap();
            assert!(n > 0, "stdout ended early");
            got += n;
        }
    } // the read end is closed here
    let status = wait_with_limit(&mut child.0, Duration::from_secs(20)).expect("vswa-recv exits");
    let err = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("error"), "{err}");
    assert_no_panic(&err);
    assert!(err.contains("output pipe closed"), "{err}");

    // Nobody reads: the pipe fills (64 KiB; the pattern's frames are a few KiB each)
    // and the write blocks; SIGTERM still ends it within the limit.
    let child = recv(&["--url", &url, "--h264", "-", "--connect-timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_viewer(&relay, "cam");
    std::thread::sleep(Duration::from_secs(4));
    assert_stops_on_signal(child, "-TERM", "blocked writing H.264 to stdout");
}

/// `vswa-send --codec h264 --size 1280x720 --count 300` into the relay, `vswa-recv
/// --h264 - --count 300 --record` from it: ffprobe reads the piped stream as 300 frames
/// of 1280x720 H.264, the recording holds sequences 0..299 as codec 2 from a keyframe on, and
/// `vswa-send --source replay:FILE` of that recording arrives as the same H.264 frames.
/// Needs the `vswa-send` binary built with its `h264` feature, as
/// `cargo build --workspace --all-features --bins` does.
#[cfg(feature = "h264")]
#[test]
fn send_h264_to_recv_and_replay_the_recording() {
    if !have_tool("ffprobe", "-version") {
        return;
    }
    // Issue 14's first "done when", as written: 300 frames of 1280x720 H.264 from
    // vswa-send, through the relay, out of `vswa-recv --h264 -` into ffprobe.
    let relay = Relay::start(&[]);
    let tmp = TempDir::new("h264-send");
    let (rec, rec2) = (tmp.join("a.vswa"), tmp.join("b.vswa"));
    let mut a = Guard(
        recv(&["--url", &relay.watch_url("src"), "--count", "300"])
            .args(["--h264", "-"])
            .args(["--record", rec.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let a_err = read_in_thread(a.0.stderr.take().unwrap());
    let a_out = Stdio::from(a.0.stdout.take().unwrap());
    wait_for_viewer(&relay, "src");
    let sender = std::thread::spawn({
        let url = relay.publish_url("src");
        move || {
            run_send(
                &[
                    "--url", &url, "--codec", "h264", "--size", "1280x720", "--count", "300",
                ],
                LIMIT,
            )
        }
    });
    let probe = ffprobe("-", a_out);
    let status = wait_with_limit(&mut a.0, LIMIT).expect("vswa-recv finishes");
    sender.join().unwrap();
    let a_err = String::from_utf8_lossy(&a_err.join().unwrap()).into_owned();
    assert!(status.success(), "{a_err}");
    assert_eq!(probe.codec, "h264", "{probe:?}");
    assert_eq!(probe.size, (1280, 720), "{probe:?}");
    assert_eq!(probe.frames, 300, "{probe:?}\n{a_err}");
    assert_eq!(probe.errors.trim(), "", "{probe:?}");
    let (original, e) = recording::parse(&fs::read(&rec).unwrap());
    assert!(e.is_none(), "{e:?}");
    let seqs: Vec<u64> = original.iter().map(|f| f.header().sequence).collect();
    assert_eq!(seqs, (0..300).collect::<Vec<_>>(), "{a_err}");
    assert!(original[0].header().flags.contains(Flags::KEYFRAME));
    assert!(original.iter().all(|f| f.header().codec == Codec::H264));

    let mut b = Guard(
        recv(&["--url", &relay.watch_url("replay"), "--count"])
            .arg(original.len().to_string())
            .args(["--record", rec2.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let b_err = read_in_thread(b.0.stderr.take().unwrap());
    wait_for_viewer(&relay, "replay");
    let source = format!("replay:{}", rec.display());
    run_send(
        &[
            "--url",
            &relay.publish_url("replay"),
            "--source",
            &source,
            "--fps",
            "100",
        ],
        LIMIT,
    );
    let status = wait_with_limit(&mut b.0, LIMIT).expect("vswa-recv finishes");
    let b_err = String::from_utf8_lossy(&b_err.join().unwrap()).into_owned();
    assert!(status.success(), "{b_err}");
    let (replayed, e) = recording::parse(&fs::read(&rec2).unwrap());
    assert!(e.is_none(), "{e:?}");
    let parts = |v: &[Frame]| {
        v.iter()
            .map(|f| (f.header().codec, f.header().flags, f.payload().clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(parts(&replayed), parts(&original));
}

/// `--display` of an H.264 stream under Xvfb: the window shows the video (a screenshot
/// is not one colour).
#[cfg(all(feature = "display", feature = "h264"))]
#[test]
fn display_shows_h264_under_xvfb() {
    if !have_tool("Xvfb", "-help") || !have_tool("import", "-version") {
        return;
    }
    // A display number unlikely to clash with other test runs (e2e.rs uses 90..490).
    let display = format!(":{}", 500 + std::process::id() % 400);
    let _xvfb = Guard(
        Command::new("Xvfb")
            .args([display.as_str(), "-screen", "0", "640x480x24"])
            .args(["-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let socket = format!("/tmp/.X11-unix/X{}", &display[1..]);
    wait_for(Duration::from_secs(10), "Xvfb socket", || {
        std::path::Path::new(&socket).exists().then_some(())
    });
    let relay = Relay::start(&[]);
    let _publisher = H264Publisher::start(&relay, "cam", 10);
    let mut cmd = recv(&["--url", &relay.watch_url("cam"), "--display"]);
    cmd.args(["--duration", "4"]).env("DISPLAY", &display);
    let mut child = Guard(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let err = read_in_thread(child.0.stderr.take().unwrap());
    let colours = |shot: &std::process::Output| -> Option<u32> {
        String::from_utf8_lossy(&shot.stdout).trim().parse().ok()
    };
    // Screenshots until one shows more than one colour, or until vswa-recv's 4 s are
    // over; the assertions below judge the last.
    let shot = wait_for(LIMIT, "a screenshot of the display", || {
        let shot = Command::new("import")
            .args(["-window", "root", "-colors", "16", "-format", "%k", "info:"])
            .env("DISPLAY", &display)
            .output()
            .unwrap();
        let drawn = shot.status.success() && colours(&shot).is_some_and(|n| n > 1);
        (drawn || child.0.try_wait().unwrap().is_some()).then_some(shot)
    });
    let status = wait_with_limit(&mut child.0, Duration::from_secs(20)).expect("vswa-recv exits");
    let err = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    assert!(status.success(), "{err}");
    assert!(!err.contains("does not decode"), "{err}");
    assert!(
        shot.status.success(),
        "import: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    assert!(colours(&shot).unwrap() > 1, "the screen is one colour");
}
