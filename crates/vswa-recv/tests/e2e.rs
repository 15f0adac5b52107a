//! End to end: the real relay (its `--demo` stream as publisher) and the real
//! `vswa-recv` binary on loopback ports chosen at run time.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rand::Rng;
use vswa_protocol::recording;

const LIMIT: Duration = Duration::from_secs(60);

fn sorted_jpegs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    files
}

fn sequence_of(path: &std::path::Path) -> u64 {
    let name = path.file_name().unwrap().to_str().unwrap();
    name.strip_prefix("frame-").unwrap()[..12].parse().unwrap()
}

/// `--out-dir`, `--record` and `--mjpeg FILE` at once, plus `--stats-json`: every output
/// holds the same N frames, in sequence order, as decodable JPEGs of the published size.
#[test]
fn outputs_hold_the_same_frames_in_sequence_order() {
    let relay = Relay::demo();
    let tmp = TempDir::new("outputs");
    let (dir, rec, mjpeg) = (
        tmp.join("frames"),
        tmp.join("rec.vswa"),
        tmp.join("out.mjpeg"),
    );
    let url = relay.watch_url("demo");
    let done = run_recv(
        &[
            "--url",
            &url,
            "--count",
            "40",
            "--out-dir",
            dir.to_str().unwrap(),
            "--record",
            rec.to_str().unwrap(),
            "--mjpeg",
            mjpeg.to_str().unwrap(),
            "--stats-json",
        ],
        LIMIT,
    );
    done.assert_ok();

    let summary: serde_json::Value =
        serde_json::from_slice(&done.stdout).expect("stdout is one JSON object");
    assert_eq!(summary["frames"], 40);
    assert_eq!(summary["stopped"], "count");
    assert!(summary["latency_ms"]["p50"].as_f64().unwrap() >= 0.0);
    assert!(
        done.last_line().contains("40 frames"),
        "summary line: {}",
        done.last_line()
    );

    // Directory: 40 whole files, no temp files, names sorted == sequence order.
    let all: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(all.len(), 40, "unexpected files: {all:?}");
    let files = sorted_jpegs(&dir);
    let seqs: Vec<u64> = files.iter().map(|p| sequence_of(p)).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "sequences not increasing: {seqs:?}"
    );
    for f in &files {
        let img = vswa_codec::decode(&fs::read(f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!((img.width, img.height), DEMO_SIZE);
    }

    // Recording: the same frames, same payloads, no cut.
    let (frames, err) = recording::parse(&fs::read(&rec).unwrap());
    assert!(err.is_none(), "{err:?}");
    assert_eq!(frames.len(), 40);
    for (frame, file) in frames.iter().zip(&files) {
        assert_eq!(frame.header().sequence, sequence_of(file));
        assert_eq!(&frame.payload()[..], &fs::read(file).unwrap()[..]);
        assert_eq!(
            (frame.header().width as u32, frame.header().height as u32),
            DEMO_SIZE
        );
    }

    // MJPEG: the payloads back to back.
    let concat: Vec<u8> = frames.iter().flat_map(|f| f.payload().to_vec()).collect();
    assert!(
        fs::read(&mjpeg).unwrap() == concat,
        "MJPEG file differs from the payloads"
    );

    // A recording cut anywhere (a crash mid-write) still yields every complete frame.
    let bytes = fs::read(&rec).unwrap();
    let mut ends = vec![recording::RECORDING_HEADER_LEN];
    for f in &frames {
        ends.push(ends.last().unwrap() + f.encoded_len());
    }
    assert_eq!(*ends.last().unwrap(), bytes.len());
    let mut rng = rand::rng();
    for _ in 0..200 {
        let cut = rng.random_range(recording::RECORDING_HEADER_LEN..bytes.len());
        let (got, err) = recording::parse(&bytes[..cut]);
        let complete = ends.iter().filter(|&&e| e <= cut).count() - 1;
        assert_eq!(got.len(), complete, "cut at {cut}");
        assert!(got.iter().zip(&frames).all(|(a, b)| a == b), "cut at {cut}");
        let on_boundary = ends.contains(&cut);
        assert_eq!(err.is_none(), on_boundary, "cut at {cut}: {err:?}");
    }
}

/// Without outputs it still receives and reports.
#[test]
fn no_outputs_still_reports_stats() {
    let relay = Relay::demo();
    let url = relay.watch_url("demo");
    let done = run_recv(&["--url", &url, "--count", "10", "--stats-json"], LIMIT);
    done.assert_ok();
    let summary: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(summary["frames"], 10);
    assert!(summary["kbit_per_s"].as_f64().unwrap() > 0.0);
}

/// SIGKILL while recording leaves a file with every complete frame.
#[test]
fn sigkill_while_recording_leaves_a_readable_file() {
    let relay = Relay::demo();
    let tmp = TempDir::new("sigkill");
    let rec = tmp.join("rec.vswa");
    let url = relay.watch_url("demo");
    let mut child = Guard(
        recv(&["--url", &url, "--record", rec.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(Duration::from_secs(30), "20 recorded frames", || {
        let (frames, _) = recording::parse(&fs::read(&rec).ok()?);
        (frames.len() >= 20).then_some(())
    });
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    let (frames, err) = recording::parse(&fs::read(&rec).unwrap());
    assert!(frames.len() >= 20);
    assert!(
        matches!(
            err,
            None | Some(recording::RecordingError::Truncated { .. })
        ),
        "{err:?}"
    );
    for f in &frames {
        assert_eq!(vswa_codec::jpeg_dimensions(f.payload()), Some((320, 240)));
    }
}

/// `vswa-recv --mjpeg - --count 60 | ffprobe -f mjpeg -` counts 60 frames.
#[test]
fn mjpeg_on_stdout_is_read_by_ffprobe() {
    if !have_tool("ffprobe", "-version") {
        return;
    }
    let relay = Relay::demo();
    let url = relay.watch_url("demo");
    let mut recv_child = Guard(
        recv(&["--url", &url, "--mjpeg", "-", "--count", "60"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let recv_err = read_in_thread(recv_child.0.stderr.take().unwrap());
    let mut probe = Guard(
        std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-count_frames",
                "-show_entries",
                "stream=nb_read_frames",
                "-of",
                "csv=p=0",
                "-f",
                "mjpeg",
                "-",
            ])
            .stdin(Stdio::from(recv_child.0.stdout.take().unwrap()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let probe_out = read_in_thread(probe.0.stdout.take().unwrap());
    let probe_err = read_in_thread(probe.0.stderr.take().unwrap());
    let recv_status = wait_with_limit(&mut recv_child.0, LIMIT).expect("vswa-recv finishes");
    let probe_status = wait_with_limit(&mut probe.0, LIMIT).expect("ffprobe finishes");
    let recv_err = String::from_utf8_lossy(&recv_err.join().unwrap()).into_owned();
    assert!(recv_status.success(), "{recv_err}");
    let out = String::from_utf8_lossy(&probe_out.join().unwrap()).into_owned();
    let err = String::from_utf8_lossy(&probe_err.join().unwrap()).into_owned();
    assert!(probe_status.success(), "ffprobe: {err}");
    assert_eq!(out.trim(), "60", "ffprobe stdout {out:?}, stderr {err:?}");
}

/// A reader that closes the pipe ends vswa-recv with exit 0 and no error.
#[test]
fn closed_pipe_ends_quietly() {
    let relay = Relay::demo();
    let url = relay.watch_url("demo");
    let mut child = Guard(
        recv(&["--url", &url, "--mjpeg", "-"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let err = read_in_thread(child.0.stderr.take().unwrap());
    {
        use std::io::Read;
        let mut out = child.0.stdout.take().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < 64 * 1024 {
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
}

/// The relay is stopped (SIGTERM: an `end`/shutdown, then SIGKILL: a dropped
/// connection) and restarted on the same port; vswa-recv reconnects both times.
#[test]
fn reconnects_after_the_relay_restarts() {
    let mut relay = Relay::demo();
    let listen = relay.addr.to_string();
    let url = relay.watch_url("demo");
    let tmp = TempDir::new("reconnect");
    let rec = tmp.join("rec.vswa");
    let mut child = Guard(
        recv(&["--url", &url, "--record", rec.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // stderr collected as it arrives, so the test sees when vswa-recv notices each stop.
    let log = Arc::new(Mutex::new(String::new()));
    let log_reader = {
        let (log, pipe) = (log.clone(), child.0.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        })
    };
    let reconnects = || log.lock().unwrap().matches("reconnecting in").count();
    let frames = || {
        recording::parse(&fs::read(&rec).unwrap_or_default())
            .0
            .len()
    };

    let mut seen = wait_for(LIMIT, "first frames", || (frames() >= 10).then(frames));
    for (stops, signal) in (1..).zip(["TERM", "KILL"]) {
        let pid = relay.pid().to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
        wait_with_limit(&mut relay.child.0, Duration::from_secs(10)).expect("relay stops");
        // It has noticed the stop once it says it is reconnecting (or once it has exited).
        wait_for(LIMIT, "vswa-recv to notice the relay stopped", || {
            (reconnects() >= stops || child.0.try_wait().unwrap().is_some()).then_some(())
        });
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "vswa-recv exited when the relay stopped"
        );
        relay = Relay::start_on(&listen, DEMO_ARGS);
        let before = seen;
        seen = wait_for(LIMIT, "frames after the restart", || {
            let n = frames();
            (n >= before + 10).then_some(n)
        });
    }
    drop(child);
    log_reader.join().unwrap();
    let err = log.lock().unwrap().clone();
    assert!(err.contains("reconnecting in"), "{err}");
    assert!(err.contains("reconnected"), "{err}");
    assert_no_panic(&err);
}

/// Each refusal: its own exit code and one clear line, no panic.
#[test]
fn refusals_exit_non_zero_with_one_clear_line() {
    let relay = Relay::start(&["--demo", "--demo-size", "64x48", "--watch-token", "sesame"]);
    let url = relay.watch_url("demo");
    let check = |args: &[&str], code: i32, needle: &str| {
        let done = run_recv(args, Duration::from_secs(30));
        assert_eq!(done.code(), code, "{args:?}: {}", done.stderr);
        assert_no_panic(&done.stderr);
        let last = done.last_line();
        assert!(
            last.starts_with("vswa-recv: error: "),
            "{args:?}: {}",
            done.stderr
        );
        assert!(
            last.contains(needle),
            "{args:?}: expected {needle:?} in {last:?}"
        );
        done
    };

    // Wrong token, and none at all.
    check(&["--url", &url, "--token", "wrong"], 3, "token");
    check(&["--url", &url], 3, "token");
    // The right one, from the environment.
    let mut ok = recv(&["--url", &url, "--count", "3"]);
    ok.env("VSWA_TOKEN", "sesame");
    run_with_limit(&mut ok, LIMIT).assert_ok();

    // Invalid stream name: a usage error found before connecting, as in vswa-send.
    let bad = format!("ws://{}/ws/watch/bad%20name", relay.addr);
    check(
        &["--url", &bad, "--token", "sesame"],
        2,
        "invalid stream name",
    );

    // Unreachable: a port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gone = format!("ws://{closed}/ws/watch/demo");
    let started = std::time::Instant::now();
    check(
        &["--url", &gone, "--connect-timeout", "2"],
        4,
        "cannot reach relay",
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    // Unwritable outputs: a directory under a regular file.
    let tmp = TempDir::new("refusals");
    let file = tmp.join("plain-file");
    fs::write(&file, b"x").unwrap();
    let under = file.join("frames");
    check(
        &["--url", &url, "--out-dir", under.to_str().unwrap()],
        5,
        "cannot write to output directory",
    );
    check(
        &["--url", &url, "--record", under.to_str().unwrap()],
        5,
        "cannot write recording",
    );

    // Usage errors.
    check(
        &["--url", &url, "--mjpeg", "-", "--stats-json"],
        2,
        "stdout",
    );
    let publish = format!("ws://{}/ws/publish/demo", relay.addr);
    check(&["--url", &publish], 2, "not a viewer URL");
    check(&["--url", "http://example.invalid/ws/watch/x"], 2, "ws://");
}

/// `--out-dir` naming an existing regular file: one line saying so and exit 5, before
/// any connection (nothing listens at the URL and `--connect-timeout` is 30 s, the
/// limit 10 s). The file is left as it was.
#[test]
fn out_dir_that_is_a_file_is_refused_before_connecting() {
    let tmp = TempDir::new("out-dir-file");
    let file = tmp.join("frames");
    fs::write(&file, b"keep me").unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("ws://{closed}/ws/watch/demo");
    let done = run_recv(
        &[
            "--url",
            &url,
            "--connect-timeout",
            "30",
            "--out-dir",
            file.to_str().unwrap(),
        ],
        Duration::from_secs(10),
    );
    assert_no_panic(&done.stderr);
    assert_eq!(done.code(), 5, "{}", done.stderr);
    assert_eq!(
        done.stderr.trim_end(),
        format!("vswa-recv: error: {} is not a directory", file.display())
    );
    assert_eq!(fs::read(&file).unwrap(), b"keep me");
}

/// A publisher with hostile sequence numbers and timestamps (u64::MAX, 0, 2^63, hours
/// ahead and behind, jumping back and forth): vswa-recv neither panics nor overflows
/// (tests run a debug build, where overflow panics), reports the far-off frames as
/// clock skew, measures the honest ones, and exits 0 when the stream ends.
#[test]
fn hostile_sequence_numbers_and_timestamps_are_survived() {
    use vswa_client::{Publisher, PublisherConfig};
    use vswa_protocol::{Frame, FrameHeader};

    // No latency ceiling: frames stamped hours off must reach vswa-recv, not be skipped
    // by the relay as late (the publisher's clock sync puts their age at hours).
    let relay = Relay::start(&["--max-latency", "0"]);
    let jpeg = {
        let image =
            vswa_codec::Image::new(vswa_codec::PixelFormat::Gray8, 16, 8, vec![128; 128]).unwrap();
        vswa_codec::encode(&image, &vswa_codec::EncodeOptions::default()).unwrap()
    };
    let url = relay.watch_url("hostile");
    let mut child = Guard(
        recv(&["--url", &url, "--stats-json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = read_in_thread(child.0.stdout.take().unwrap());
    let err = read_in_thread(child.0.stderr.take().unwrap());
    wait_for_viewer(&relay, "hostile");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let publisher = rt
        .block_on(Publisher::connect(PublisherConfig::new(
            relay.publish_url("hostile"),
        )))
        .expect("publisher connects");
    let now = vswa_capture::now_us;
    let hours = |n: u64| n * 3_600_000_000;
    let frames: Vec<(u64, u64)> = vec![
        (u64::MAX, u64::MAX),
        (0, 0),
        (u64::MAX, now()),
        (1, 1 << 63),
        (u64::MAX - 1, now() + hours(2)),
        (2, now() - hours(2)),
        (u64::MAX, i64::MAX as u64),
        (3, now()),
    ];
    for &(sequence, timestamp) in &frames {
        let header = FrameHeader::jpeg(sequence, timestamp, 16, 8);
        rt.block_on(publisher.send(Frame::new(header, jpeg.clone())))
            .unwrap();
        // Far apart enough that the relay never makes the viewer skip a frame.
        std::thread::sleep(Duration::from_millis(50));
    }
    rt.block_on(publisher.finish()).unwrap();
    let status = wait_with_limit(&mut child.0, LIMIT).expect("vswa-recv exits at the end");
    let err = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    assert_no_panic(&err);
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("clock skew on 6 frames"), "{err}");
    let summary: serde_json::Value = serde_json::from_slice(&out.join().unwrap()).unwrap();
    assert_eq!(summary["frames"], frames.len(), "{err}");
    assert_eq!(summary["clock_skew_frames"], 6, "{summary}");
    assert_eq!(summary["stopped"], "stream_ended");
    // The two frames stamped now give a real latency: small and not negative by hours.
    let p99 = summary["latency_ms"]["p99"].as_f64().unwrap();
    assert!(p99.abs() < 60_000.0, "{summary}");
}

/// When the publisher leaves, vswa-recv exits 0 after the frames it got.
#[test]
fn stream_end_exits_zero() {
    use vswa_client::{Publisher, PublisherConfig};
    use vswa_protocol::{Frame, FrameHeader};

    let relay = Relay::start(&[]);
    let tmp = TempDir::new("end");
    let dir = tmp.join("frames");
    let jpeg = {
        let image =
            vswa_codec::Image::new(vswa_codec::PixelFormat::Gray8, 64, 48, vec![128; 64 * 48])
                .unwrap();
        vswa_codec::encode(&image, &vswa_codec::EncodeOptions::new(80).unwrap()).unwrap()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let publisher = rt
        .block_on(Publisher::connect(PublisherConfig::new(
            relay.publish_url("cam"),
        )))
        .expect("publisher connects");
    let url = relay.watch_url("cam");
    let mut child = Guard(
        recv(&[
            "--url",
            &url,
            "--out-dir",
            dir.to_str().unwrap(),
            "--stats-json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let out = read_in_thread(child.0.stdout.take().unwrap());
    let err = read_in_thread(child.0.stderr.take().unwrap());
    let mut seq = 0;
    wait_for(LIMIT, "frames in the directory", || {
        let header = FrameHeader::jpeg(seq, vswa_capture::now_us(), 64, 48);
        seq += 1;
        rt.block_on(publisher.send(Frame::new(header, jpeg.clone())))
            .unwrap();
        (fs::read_dir(&dir).ok()?.count() >= 5).then_some(())
    });
    rt.block_on(publisher.finish()).unwrap();
    let status = wait_with_limit(&mut child.0, Duration::from_secs(20))
        .expect("vswa-recv exits when the stream ends");
    let err = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    assert_eq!(status.code(), Some(0), "{err}");
    let summary: serde_json::Value = serde_json::from_slice(&out.join().unwrap()).unwrap();
    assert_eq!(summary["stopped"], "stream_ended");
    assert!(summary["frames"].as_u64().unwrap() >= 5);
}

/// `--display` under Xvfb: the window shows the video (a screenshot is not one colour).
#[cfg(feature = "display")]
#[test]
fn display_shows_video_under_xvfb() {
    if !have_tool("Xvfb", "-help") || !have_tool("import", "-version") {
        return;
    }
    // A display number unlikely to clash with other test runs.
    let display = format!(":{}", 90 + std::process::id() % 400);
    let _xvfb = Guard(
        std::process::Command::new("Xvfb")
            .args([
                display.as_str(),
                "-screen",
                "0",
                "640x480x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let socket = format!("/tmp/.X11-unix/X{}", &display[1..]);
    wait_for(Duration::from_secs(10), "Xvfb socket", || {
        std::path::Path::new(&socket).exists().then_some(())
    });
    let relay = Relay::demo();
    let url = relay.watch_url("demo");
    let mut cmd = recv(&["--url", &url, "--display", "--duration", "4"]);
    cmd.env("DISPLAY", &display);
    let mut child = Guard(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let err = read_in_thread(child.0.stderr.take().unwrap());
    // Screenshots until one shows more than one colour (the window is up and has drawn
    // a frame), or until vswa-recv's 4 s are over; the assertions below judge the last.
    let colours = |shot: &std::process::Output| -> Option<u32> {
        String::from_utf8_lossy(&shot.stdout).trim().parse().ok()
    };
    let shot = wait_for(LIMIT, "a screenshot of the display", || {
        let shot = std::process::Command::new("import")
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
    assert!(
        shot.status.success(),
        "import: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let colours = colours(&shot).unwrap();
    assert!(colours > 1, "the screen is one colour");
}

/// The acceptance run: `vswa-send --source test --count 120` into a relay and
/// `vswa-recv --count 100 --out-dir d` from it leave 100 valid JPEGs in sequence order;
/// the recording made alongside, replayed with `vswa-send --source replay:FILE`,
/// arrives with identical payloads.
#[test]
fn send_to_recv_and_replay_round_trip() {
    let relay = Relay::start(&[]);
    let tmp = TempDir::new("send");
    let (dir, rec, rec2) = (tmp.join("d"), tmp.join("a.vswa"), tmp.join("b.vswa"));

    let url = relay.watch_url("src");
    let mut a = Guard(
        recv(&[
            "--url",
            &url,
            "--count",
            "100",
            "--out-dir",
            dir.to_str().unwrap(),
        ])
        .args(["--record", rec.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let a_err = read_in_thread(a.0.stderr.take().unwrap());
    wait_for_viewer(&relay, "src");
    let publish = relay.publish_url("src");
    run_send(
        &[
            "--url", &publish, "--source", "test", "--size", "320x240", "--fps", "60", "--count",
            "120",
        ],
        LIMIT,
    );
    let status = wait_with_limit(&mut a.0, LIMIT).expect("vswa-recv finishes");
    let a_err = String::from_utf8_lossy(&a_err.join().unwrap()).into_owned();
    assert!(status.success(), "{a_err}");
    let files = sorted_jpegs(&dir);
    assert_eq!(files.len(), 100, "{a_err}");
    let seqs: Vec<u64> = files.iter().map(|p| sequence_of(p)).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for f in &files {
        let img = vswa_codec::decode(&fs::read(f).unwrap()).unwrap();
        assert_eq!((img.width, img.height), (320, 240));
    }

    let url = relay.watch_url("replay");
    let mut b = Guard(
        recv(&[
            "--url",
            &url,
            "--count",
            "100",
            "--record",
            rec2.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let b_err = read_in_thread(b.0.stderr.take().unwrap());
    wait_for_viewer(&relay, "replay");
    let source = format!("replay:{}", rec.display());
    run_send(
        &["--url", &relay.publish_url("replay"), "--source", &source],
        LIMIT,
    );
    let status = wait_with_limit(&mut b.0, LIMIT).expect("vswa-recv finishes");
    let b_err = String::from_utf8_lossy(&b_err.join().unwrap()).into_owned();
    assert!(status.success(), "{b_err}");
    let (original, e1) = recording::parse(&fs::read(&rec).unwrap());
    let (replayed, e2) = recording::parse(&fs::read(&rec2).unwrap());
    assert!(e1.is_none() && e2.is_none(), "{e1:?} {e2:?}");
    assert_eq!(replayed.len(), 100);
    let payloads =
        |v: &[vswa_protocol::Frame]| v.iter().map(|f| f.payload().clone()).collect::<Vec<_>>();
    assert_eq!(payloads(&replayed), payloads(&original));
}
