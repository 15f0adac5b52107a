//! `vswa-send` fails with one line and the exit status its `--help` documents, the same
//! table as `vswa-recv`'s: 2 for a bad command line or URL (before connecting), 3 for a
//! refusal, 4 for an unreachable relay, 5 for a source that cannot be read or holds no
//! frames. Real processes; relays and fake servers listen on loopback ports picked at run
//! time.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use vswa_testkit::{
    assert_no_panic, bin, http_get_body, run_with_limit, wait_for, Finished, Guard, Relay, TempDir,
};

const LIMIT: Duration = Duration::from_secs(30);

/// `vswa-send ARGS`, small and quiet, with a clean environment and stdin from `stdin`
/// (or nothing).
fn send(args: &[&str], stdin: Option<&Path>) -> Command {
    let mut cmd = Command::new(bin("vswa-send"));
    cmd.args(["--size", "64x48", "--quiet"])
        .args(args)
        .env_remove("VSWA_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(match stdin {
            Some(path) => Stdio::from(std::fs::File::open(path).unwrap()),
            None => Stdio::null(),
        });
    cmd
}

/// Runs `cmd` and checks it exits `code` with one error line, its last, that
/// contains `needle` (retry warnings may come before it).
fn fails(mut cmd: Command, limit: Duration, code: i32, needle: &str) -> Finished {
    let done = run_with_limit(&mut cmd, limit);
    assert_no_panic(&done.stderr);
    assert_eq!(done.code(), code, "{cmd:?}: {}", done.stderr);
    let last = done.last_line();
    assert!(
        last.starts_with("vswa-send: error: "),
        "{cmd:?}: {}",
        done.stderr
    );
    assert!(last.contains(needle), "expected {needle:?} in {last:?}");
    let errors = done
        .stderr
        .lines()
        .filter(|l| l.starts_with("vswa-send: error"))
        .count();
    assert_eq!(errors, 1, "{cmd:?}: {}", done.stderr);
    done
}

/// A loopback address where nothing listens.
fn dead_addr() -> std::net::SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn urls_that_are_not_publish_urls_are_refused_before_connecting() {
    // Nothing listens and --connect-timeout is long: a URL that got as far as
    // connecting would take 30 s, the limit is 10.
    let addr = dead_addr();
    let limit = Duration::from_secs(10);
    let name65 = "x".repeat(65);
    for (path, needle) in [
        (
            "/ws/watch/cam".to_string(),
            "this is a viewer URL; vswa-send publishes to ws://HOST:PORT/ws/publish/NAME",
        ),
        ("/ws/publish/".into(), "invalid stream name"),
        ("/ws/publish/bad%20name".into(), "invalid stream name"),
        ("/ws/publish/a/b".into(), "invalid stream name"),
        (format!("/ws/publish/{name65}"), "invalid stream name"),
        ("/stream/cam.mjpg".into(), "ws://HOST:PORT/ws/publish/NAME"),
        ("/".into(), "ws://HOST:PORT/ws/publish/NAME"),
    ] {
        let url = format!("ws://{addr}{path}");
        let done = fails(
            send(&["--url", &url, "--connect-timeout", "30"], None),
            limit,
            2,
            needle,
        );
        assert_eq!(done.stderr.lines().count(), 1, "{url}: {}", done.stderr);
    }
    let url = format!("http://{addr}/ws/publish/cam");
    fails(send(&["--url", &url], None), limit, 2, "ws://");
}

/// A 3-frame MJPEG file with junk after it.
fn mjpeg_file(dir: &TempDir) -> std::path::PathBuf {
    let image =
        vswa_codec::Image::new(vswa_codec::PixelFormat::Gray8, 16, 8, vec![128; 128]).unwrap();
    let jpeg = vswa_codec::encode(&image, &vswa_codec::EncodeOptions::default()).unwrap();
    let mut bytes = Vec::new();
    for _ in 0..3 {
        bytes.extend_from_slice(&jpeg);
    }
    bytes.extend_from_slice(b"trailing junk");
    let path = dir.join("three.mjpeg");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn each_cause_has_its_documented_exit_code() {
    let relay = Relay::start(&["--publish-token", "pub-secret"]);
    let tmp = TempDir::new("send-exit");
    let url = |name: &str| relay.publish_url(name);
    let with_token = |args: &[&str], stdin: Option<&Path>| {
        let mut cmd = send(args, stdin);
        cmd.env("VSWA_TOKEN", "pub-secret");
        cmd
    };

    // 3: refused by the relay: a wrong token, a stream that already has a publisher.
    let cam = url("cam");
    fails(
        send(&["--url", &cam, "--count", "3", "--token", "wrong"], None),
        LIMIT,
        3,
        "refused the token",
    );
    let mut first = Guard(
        with_token(&["--url", &cam, "--duration", "60"], None)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(LIMIT, "the first publisher to be live", || {
        let body = http_get_body(relay.addr, "/api/streams/cam")?;
        let info: serde_json::Value = serde_json::from_str(&body).ok()?;
        info["live"].as_bool()?.then_some(())
    });
    fails(
        with_token(&["--url", &cam, "--count", "3"], None),
        LIMIT,
        3,
        "stream_busy",
    );
    let _ = first.0.kill();

    // 4: unreachable.
    let gone = format!("ws://{}/ws/publish/cam", dead_addr());
    fails(
        send(&["--url", &gone, "--connect-timeout", "1"], None),
        LIMIT,
        4,
        "cannot reach relay",
    );

    // 5: the source cannot be read (before connecting anywhere) or holds no frames.
    let missing = tmp.join("missing.mjpeg");
    fails(
        send(
            &[
                "--url",
                &gone,
                "--source",
                &format!("mjpeg:{}", missing.display()),
            ],
            None,
        ),
        LIMIT,
        5,
        "No such file",
    );
    let hello = tmp.join("hello.txt");
    std::fs::write(&hello, b"hello\n").unwrap();
    fails(
        with_token(
            &["--url", &url("stdin"), "--source", "mjpeg:-"],
            Some(&hello),
        ),
        LIMIT,
        5,
        "no JPEG found in input (6 bytes read)",
    );
    let header_only = tmp.join("header-only.vswa");
    std::fs::write(
        &header_only,
        vswa_protocol::recording::RecordingWriter::new(Vec::new())
            .unwrap()
            .into_inner(),
    )
    .unwrap();
    let zero = tmp.join("zero.vswa");
    std::fs::write(&zero, b"").unwrap();
    for (file, needle) in [
        (&header_only, "holds no frames"),
        (&zero, "the file is empty"),
    ] {
        let source = format!("replay:{}", file.display());
        fails(
            with_token(&["--url", &url("replay"), "--source", &source], None),
            LIMIT,
            5,
            needle,
        );
    }

    // 2: a bad flag.
    fails(
        send(&["--url", &cam, "--fps", "0"], None),
        LIMIT,
        2,
        "frame rate",
    );

    // 0: input that had pictures, junk after them or not.
    let source = format!("mjpeg:{}", mjpeg_file(&tmp).display());
    let done = run_with_limit(
        &mut with_token(&["--url", &url("file"), "--source", &source], None),
        LIMIT,
    );
    done.assert_ok();
    assert!(done.stderr.contains("sent      3"), "{}", done.stderr);
}

/// A server at the publish URL that is not a relay: an MJPEG camera that answers every
/// request with `200` and a JPEG stream. vswa-send keeps retrying until
/// `--connect-timeout`, then fails with 3; no line it prints carries the binary data.
#[test]
fn a_server_that_is_not_a_relay_is_one_short_line() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            std::thread::spawn(move || {
                let mut request = [0; 4096];
                let _ = socket.read(&mut request);
                let mut answer = b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=f\r\n\r\n--f\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0\x00\x10JFIF\x00".to_vec();
                answer.extend((0..4000u32).map(|i| (i * 13 % 256) as u8));
                let _ = socket.write_all(&answer);
                std::thread::sleep(Duration::from_secs(2));
            });
        }
    });
    let url = format!("ws://{addr}/ws/publish/cam");
    let done = fails(
        send(&["--url", &url, "--connect-timeout", "1"], None),
        LIMIT,
        3,
        "200 OK with multipart/x-mixed-replace instead of a WebSocket upgrade",
    );
    for line in done.stderr.lines() {
        assert!(line.chars().count() < 400, "{line:?}");
        assert!(
            !line.contains('\u{fffd}') && !line.contains("JFIF"),
            "{line:?}"
        );
    }
}

/// `--help` ends with the exit-status table; its codes are the shared
/// [`vswa_client::exit`] table, and the causes both programs share (1-4) read exactly as
/// in `vswa-recv --help`.
#[test]
fn help_ends_with_the_exit_status_table_vswa_recv_shares() {
    use clap::CommandFactory;
    use vswa_send::exit;
    let done = run_with_limit(Command::new(bin("vswa-send")).arg("--help"), LIMIT);
    done.assert_ok();
    let help = done.stdout_text();
    let table = |help: &str| -> Vec<String> {
        let (_, table) = help
            .rsplit_once("Exit status:\n")
            .unwrap_or_else(|| panic!("no exit-status table in:\n{help}"));
        table.lines().map(|l| l.trim().to_string()).collect()
    };
    let send_table = table(&help);
    let codes: Vec<u8> = send_table
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            exit::OK,
            exit::FAILURE,
            exit::USAGE,
            exit::REFUSED,
            exit::UNREACHABLE,
            exit::IO
        ]
    );
    let recv_help = vswa_recv::args::Args::command().render_help().to_string();
    let recv_table = table(&recv_help);
    assert_eq!(send_table[1..5], recv_table[1..5], "{help}\n{recv_help}");
    assert!(help
        .trim_end()
        .ends_with(send_table.last().unwrap().as_str()));
}

/// Issue 16 item 9: `--connect-timeout N` keeps trying for N seconds: a relay that
/// starts 7 s after `vswa-send` with `--connect-timeout 10` is caught; with nothing
/// listening, `--connect-timeout 3` tries for 3 s and says so.
#[test]
fn connect_timeout_keeps_trying_until_its_deadline() {
    let addr = dead_addr();
    let url = format!("ws://{addr}/ws/publish/late");
    let started = std::time::Instant::now();
    let mut sender = Guard(
        send(
            &["--url", &url, "--connect-timeout", "10", "--count", "3"],
            None,
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(7));
    let _relay = Relay::start_on(&addr.to_string(), &[]);
    let status = vswa_testkit::wait_with_limit(&mut sender.0, LIMIT).expect("vswa-send exited");
    let mut stderr = String::new();
    sender
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_no_panic(&stderr);
    assert!(
        status.success(),
        "{status:?} after {:?}: {stderr}",
        started.elapsed()
    );

    let gone = format!("ws://{}/ws/publish/cam", dead_addr());
    let started = std::time::Instant::now();
    let done = fails(
        send(&["--url", &gone, "--connect-timeout", "3"], None),
        LIMIT,
        4,
        "cannot reach relay",
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(3), "gave up after {took:?}");
    assert!(
        done.last_line().contains("gave up after 3."),
        "{}",
        done.last_line()
    );
}

/// Issue 16: a token given in the URL's `?token=` never shows in what `vswa-send`
/// prints (the source line, retry warnings, the final error).
#[test]
fn tokens_in_the_url_are_redacted_in_every_line() {
    let url = format!("ws://{}/ws/publish/cam?token=s3cret", dead_addr());
    let mut cmd = send(&["--url", &url, "--connect-timeout", "2"], None);
    cmd.env("RUST_LOG", "debug");
    let done = run_with_limit(&mut cmd, LIMIT);
    assert_eq!(done.code(), 4, "{}", done.stderr);
    assert!(!done.stderr.contains("s3cret"), "{}", done.stderr);
    assert!(done.stderr.contains("token=***"), "{}", done.stderr);
}

/// Issue 16: `--camera-wait SECS` makes a camera that never appears fatal: exit 5 with
/// one line, after about SECS (a build without the camera feature says so, exit 2).
#[test]
fn camera_wait_makes_a_missing_camera_fatal() {
    let relay = Relay::start(&[]);
    let url = relay.publish_url("cam");
    let started = std::time::Instant::now();
    if cfg!(feature = "camera") {
        fails(
            send(
                &["--url", &url, "--source", "camera:57", "--camera-wait", "1"],
                None,
            ),
            LIMIT,
            5,
            "camera 57 did not appear within 1 s",
        );
        assert!(started.elapsed() >= Duration::from_secs(1));
    } else {
        fails(
            send(
                &["--url", &url, "--source", "camera:57", "--camera-wait", "1"],
                None,
            ),
            LIMIT,
            2,
            "--features camera",
        );
    }
}

/// H.264 settings are checked before any connection: each bad one is exit 2 and one
/// line saying what is wrong (nothing listens at the URL, so a connect attempt would
/// show as exit 4). H.264 input without an access unit is exit 5 (found once connected,
/// when the source is read).
#[test]
fn h264_options_are_checked_before_connecting() {
    let url = format!("ws://{}/ws/publish/cam", dead_addr());
    let bad_size = {
        let mut cmd = Command::new(bin("vswa-send"));
        cmd.args([
            "--url", &url, "--quiet", "--codec", "h264", "--size", "641x480",
        ])
        .env_remove("VSWA_TOKEN")
        .stdin(Stdio::null());
        cmd
    };
    #[cfg(feature = "h264")]
    fails(bad_size, LIMIT, 2, "H.264 needs an even width and height");
    #[cfg(not(feature = "h264"))]
    fails(bad_size, LIMIT, 2, "`h264` feature");
    #[cfg(feature = "h264")]
    for (args, needle) in [
        (&["--fps", "120"][..], "OpenH264 supports 1 to 60"),
        (&["--bitrate", "0"], "--bitrate"),
        (&["--keyframe-interval", "0"], "--keyframe-interval 0"),
    ] {
        let mut all = vec!["--url", url.as_str(), "--codec", "h264"];
        all.extend_from_slice(args);
        fails(send(&all, None), LIMIT, 2, needle);
    }
    fails(
        send(&["--url", &url, "--bitrate", "500"], None),
        LIMIT,
        2,
        "are for --codec h264",
    );
    let relay = Relay::start(&[]);
    let tmp = TempDir::new("send-h264");
    let text = tmp.join("hello.txt");
    std::fs::write(&text, b"hello\n").unwrap();
    fails(
        send(
            &["--url", &relay.publish_url("h"), "--source", "h264:-"],
            Some(&text),
        ),
        LIMIT,
        5,
        "no H.264 access unit found in input (6 bytes read",
    );
}
