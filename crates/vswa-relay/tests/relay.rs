//! End-to-end tests of the relay binary with vswa-send and plain WebSocket/HTTP clients,
//! all on loopback ports chosen at run time.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    bin, close_code, http_get, next_control, next_error, run_with_timeout, wait_for_async, Relay,
};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use vswa_client::{Subscriber, SubscriberConfig, SubscriberEvent};
use vswa_protocol::{Frame, FrameHeader};

const LIMIT: Duration = Duration::from_secs(60);

fn tiny_jpeg() -> Bytes {
    let image =
        vswa_codec::Image::new(vswa_codec::PixelFormat::Gray8, 16, 8, vec![128; 128]).unwrap();
    vswa_codec::encode(&image, &vswa_codec::EncodeOptions::default()).unwrap()
}

/// Tests that push many frames through real processes take turns, so they do not
/// starve each other of the machine's two cores (which would make live sources drop
/// frames, as they should under overload).
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits (bounded) until the relay has a snapshot for `stream_and_query`.
async fn wait_for_frame(relay: &Relay, stream_and_query: &str) {
    let path = match stream_and_query.split_once('?') {
        Some((name, query)) => format!("/snapshot/{name}.jpg?{query}"),
        None => format!("/snapshot/{stream_and_query}.jpg"),
    };
    wait_for_async(
        Duration::from_secs(10),
        &format!("a frame on {path}"),
        async || (http_get(relay.port, &path, &[]).await.0 == 200).then_some(()),
    )
    .await;
}

/// Receives frames until `n` arrived or `limit` passed; returns them.
async fn receive(sub: &mut Subscriber, n: usize, limit: Duration) -> Vec<Frame> {
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while frames.len() < n {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Ok(SubscriberEvent::Frame { frame, .. })) => frames.push(frame),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("subscriber failed: {e}"),
            Err(_) => break,
        }
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_300_test_frames_through_relay() {
    let _turn = HEAVY.lock().await;
    let relay = Relay::start(&["--viewer-queue", "64"]);
    let mut sub = Subscriber::connect(SubscriberConfig::new(relay.ws("/ws/watch/cam")))
        .await
        .unwrap();
    let url = relay.ws("/ws/publish/cam");
    let sender = tokio::task::spawn_blocking(move || {
        run_with_timeout(
            Command::new(bin("vswa-send")).args([
                "--url", &url, "--source", "test", "--size", "320x240", "--fps", "30", "--count",
                "300",
            ]),
            LIMIT,
        )
    });
    let frames = receive(&mut sub, 300, LIMIT).await;
    let (code, _, stderr) = sender.await.unwrap();
    assert_eq!(code, Some(0), "vswa-send failed: {stderr}");
    let seqs: Vec<u64> = frames.iter().map(|f| f.header().sequence).collect();
    assert_eq!(
        seqs,
        (0..300).collect::<Vec<_>>(),
        "received {} frames; vswa-send said: {stderr}",
        frames.len()
    );
    for frame in &frames {
        assert_eq!((frame.header().width, frame.header().height), (320, 240));
    }
    // Every payload is a JPEG of the requested size (decode a spread of them).
    for frame in frames.iter().step_by(30) {
        let img = vswa_codec::decode(frame.payload()).expect("valid JPEG");
        assert_eq!((img.width, img.height), (320, 240));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_mjpeg_pipe_publishes_all_frames() {
    let _turn = HEAVY.lock().await;
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        assert!(!vswa_testkit::tools_required(), "ffmpeg is required");
        eprintln!("skipping: ffmpeg not installed");
        return;
    }
    let relay = Relay::start(&["--viewer-queue", "200"]);
    let mut sub = Subscriber::connect(SubscriberConfig::new(relay.ws("/ws/watch/pipe")))
        .await
        .unwrap();
    let url = relay.ws("/ws/publish/pipe");
    let sender = tokio::task::spawn_blocking(move || {
        let script = format!(
            "ffmpeg -v error -f lavfi -i testsrc=size=640x480:rate=30 -t 5 -f mjpeg - | {} --source mjpeg:- --url {url}",
            bin("vswa-send").display()
        );
        run_with_timeout(Command::new("sh").args(["-c", &script]), LIMIT)
    });
    let frames = receive(&mut sub, 150, LIMIT).await;
    let (code, _, stderr) = sender.await.unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(frames.len(), 150);
    let seqs: Vec<u64> = frames.iter().map(|f| f.header().sequence).collect();
    assert_eq!(seqs, (0..150).collect::<Vec<_>>());
    assert_eq!(
        (frames[0].header().width, frames[0].header().height),
        (640, 480)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_prompt_viewers_get_99_percent_despite_a_stalled_one() {
    let _turn = HEAVY.lock().await;
    let relay = Relay::start(&["--demo", "--demo-size", "160x120"]);
    // A viewer that completes the handshake and then never reads.
    let (stalled, _) = tokio_tungstenite::connect_async(relay.ws("/ws/watch/demo"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let url = relay.ws("/ws/watch/demo");
        tasks.push(tokio::spawn(async move {
            let mut sub = Subscriber::connect(SubscriberConfig::new(url))
                .await
                .unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
            let (mut first, mut last, mut count) = (None, 0u64, 0u64);
            while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, sub.next()).await {
                if let SubscriberEvent::Frame { frame, .. } = event {
                    let seq = frame.header().sequence;
                    first.get_or_insert(seq);
                    last = seq;
                    count += 1;
                }
            }
            (count, last - first.unwrap_or(last) + 1)
        }));
    }
    let mut worst = 1.0f64;
    for task in tasks {
        let (got, published) = task.await.unwrap();
        assert!(published > 60, "demo published only {published} frames");
        worst = worst.min(got as f64 / published as f64);
    }
    drop(stalled);
    assert!(
        worst >= 0.99,
        "a prompt viewer got only {:.1}% of frames",
        worst * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_viewer_gets_latest_frame_at_once_and_viewer_waits_for_publisher() {
    let relay = Relay::start(&[]);
    // A viewer that arrives before the publisher.
    let (mut early, _) = tokio_tungstenite::connect_async(relay.ws("/ws/watch/s"))
        .await
        .unwrap();
    let hello = next_control(&mut early).await.unwrap();
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["live"], false);
    let (mut publisher, _) = tokio_tungstenite::connect_async(relay.ws("/ws/publish/s"))
        .await
        .unwrap();
    assert_eq!(next_control(&mut publisher).await.unwrap()["type"], "hello");
    let frame = Frame::new(FrameHeader::jpeg(42, 7, 16, 8), tiny_jpeg()).to_bytes();
    publisher
        .send(Message::Binary(frame.clone()))
        .await
        .unwrap();
    let got = loop {
        match tokio::time::timeout(Duration::from_secs(10), early.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Binary(b) => break b,
            _ => continue,
        }
    };
    assert_eq!(got, frame);
    // No more frames are published: a late viewer can only get the stored one.
    let (mut late, _) = tokio_tungstenite::connect_async(relay.ws("/ws/watch/s"))
        .await
        .unwrap();
    let hello = next_control(&mut late).await.unwrap();
    assert_eq!(hello["live"], true);
    let first = tokio::time::timeout(Duration::from_secs(5), late.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first, Message::Binary(frame));
    // The publisher hears about its viewers, and viewers hear when it leaves.
    let viewers = next_control(&mut publisher).await.unwrap();
    assert_eq!(viewers["type"], "viewers");
    publisher.close(None).await.unwrap();
    let end = next_control(&mut late).await.unwrap();
    assert_eq!(end["type"], "end");
    assert_eq!(end["reason"], "publisher_left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_before_upgrade() {
    let relay = Relay::start(&[
        "--demo",
        "--publish-token",
        "pub-secret",
        "--watch-token",
        "view-secret",
    ]);
    wait_for_frame(&relay, "demo?token=view-secret").await;
    for (path, headers) in [
        ("/ws/watch/demo", vec![]),
        ("/ws/watch/demo?token=wrong", vec![]),
        ("/ws/watch/demo?token=pub-secret", vec![]),
        ("/snapshot/demo.jpg", vec![("Authorization", "Bearer nope")]),
        ("/stream/demo.mjpg", vec![]),
    ] {
        let mut h = vec![
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        h.extend(headers);
        let (status, _, body) = http_get(relay.port, path, &h).await;
        assert_eq!(status, 401, "{path}");
        assert!(
            String::from_utf8_lossy(&body).contains("unauthorized"),
            "{path}"
        );
    }
    let (status, head, body) =
        http_get(relay.port, "/snapshot/demo.jpg?token=view-secret", &[]).await;
    assert_eq!(status, 200, "{head}");
    assert!(vswa_codec::decode(&body).is_ok());
    let (status, _, _) = http_get(
        relay.port,
        "/snapshot/demo.jpg",
        &[("Authorization", "Bearer view-secret")],
    )
    .await;
    assert_eq!(status, 200);
    // vswa-send: a wrong token is one clear line and exit 3 (refused by the relay); the
    // right one works.
    let url = relay.ws("/ws/publish/cam");
    let (code, _, stderr) = run_with_timeout(
        Command::new(bin("vswa-send")).args(["--url", &url, "--count", "3", "--token", "bad"]),
        LIMIT,
    );
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("refused the token"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let (code, _, stderr) = run_with_timeout(
        Command::new(bin("vswa-send"))
            .args(["--url", &url, "--count", "3", "--size", "64x48"])
            .env("VSWA_TOKEN", "pub-secret"),
        LIMIT,
    );
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_stream_names_are_400() {
    let relay = Relay::start(&[]);
    let name65 = "x".repeat(65);
    for path in [
        "/ws/watch/..%2fx".to_string(),
        "/ws/publish/%2e%2e".to_string(),
        format!("/ws/watch/{name65}"),
        "/view/caf%C3%A9".to_string(),
        "/snapshot/a%20b.jpg".to_string(),
        "/stream/.mjpg".to_string(),
        "/api/streams/bad%21".to_string(),
    ] {
        let (status, _, body) = http_get(relay.port, &path, &[]).await;
        assert_eq!(status, 400, "{path}");
        assert!(
            String::from_utf8_lossy(&body).contains("invalid stream name"),
            "{path}"
        );
    }
    let (status, _, _) = http_get(relay.port, "/healthz", &[]).await;
    assert_eq!(status, 200);
    // A WebSocket upgrade on a non-WebSocket route is just a normal response.
    let (status, _, _) = http_get(
        relay.port,
        "/healthz",
        &[("Upgrade", "websocket"), ("Connection", "Upgrade")],
    )
    .await;
    assert_eq!(status, 200);
    // A plain GET on a WebSocket route explains itself.
    let (status, _, body) = http_get(relay.port, "/ws/watch/ok", &[]).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("WebSocket"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_that_publisher() {
    let relay = Relay::start(&[
        "--demo",
        "--demo-size",
        "64x48",
        "--max-frame-bytes",
        "1000",
    ]);
    let mut demo = Subscriber::connect(SubscriberConfig::new(relay.ws("/ws/watch/demo")))
        .await
        .unwrap();
    let cases: Vec<(&str, Message, &str, u16)> = vec![
        (
            "garbage",
            Message::Binary(Bytes::from_static(b"\x00garbage bytes here")),
            "invalid_frame",
            4422,
        ),
        (
            "oversize",
            Message::Binary(
                Frame::new(FrameHeader::jpeg(0, 0, 1, 1), Bytes::from(vec![0xff; 2000])).to_bytes(),
            ),
            "frame_too_large",
            1009,
        ),
        (
            "notjpeg",
            Message::Binary(
                Frame::new(FrameHeader::jpeg(0, 0, 1, 1), Bytes::from_static(b"PNG")).to_bytes(),
            ),
            "invalid_frame",
            4422,
        ),
        (
            "text",
            Message::Text("not json".into()),
            "bad_request",
            4400,
        ),
    ];
    for (name, msg, code, close) in cases {
        common::assert_publish_refused(&relay, name, msg, code, close).await;
    }
    // A second publisher on a busy stream is refused; the first keeps going.
    let (mut ws, _) = tokio_tungstenite::connect_async(relay.ws("/ws/publish/demo"))
        .await
        .unwrap();
    let err = next_error(&mut ws).await.unwrap();
    assert_eq!(err["code"], "stream_busy");
    assert_eq!(close_code(&mut ws).await, Some(4409));
    // The demo stream kept flowing all along.
    let frames = receive(&mut demo, 10, Duration::from_secs(20)).await;
    assert_eq!(frames.len(), 10);
    let (status, _, _) = http_get(relay.port, "/healthz", &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mjpeg_snapshot_and_stats() {
    let relay = Relay::start(&["--demo", "--demo-size", "320x240"]);
    wait_for_frame(&relay, "demo").await;
    // Read a few parts of the multipart stream by hand.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", relay.port))
        .await
        .unwrap();
    // HTTP/1.0 keeps the body free of chunked framing, so the parts can be read directly
    // (HTTP/1.1 clients get it chunked; ffprobe below covers that path).
    tcp.write_all(b"GET /stream/demo.mjpg HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while buf.windows(11).filter(|w| *w == b"--vswaframe").count() < 4 && Instant::now() < deadline
    {
        let mut chunk = [0u8; 65536];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.contains("multipart/x-mixed-replace; boundary=vswaframe"),
        "{}",
        &text[..200.min(text.len())]
    );
    let parts = common::multipart_jpegs(&buf, "vswaframe");
    assert!(parts.len() >= 2, "got {} parts", parts.len());
    for part in &parts {
        let img = vswa_codec::decode(part).unwrap();
        assert_eq!((img.width, img.height), (320, 240));
    }
    drop(tcp);
    let (status, head, body) = http_get(relay.port, "/snapshot/demo.jpg", &[]).await;
    assert_eq!(status, 200);
    assert!(head.to_lowercase().contains("content-type: image/jpeg"));
    assert_eq!(vswa_codec::jpeg_dimensions(&body), Some((320, 240)));
    let (status, _, body) = http_get(relay.port, "/snapshot/nothing.jpg", &[]).await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("no frame"));
    let (_, _, body) = http_get(relay.port, "/api/streams", &[]).await;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let demo = &json["streams"][0];
    assert_eq!(demo["name"], "demo");
    assert_eq!(demo["live"], true);
    assert!(demo["fps"].as_f64().unwrap() > 0.0);
    let (status, _, body) = http_get(relay.port, "/api/streams/demo", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["width"],
        320
    );
    let (_, head, body) = http_get(relay.port, "/metrics", &[]).await;
    assert!(head.contains("text/plain"));
    assert!(String::from_utf8_lossy(&body).contains("vswa_frames_in_total"));
    // ffprobe identifies the MJPEG stream.
    if Command::new("ffprobe").arg("-version").output().is_ok() {
        let url = relay.http("/stream/demo.mjpg");
        let (code, out, err) = tokio::task::spawn_blocking(move || {
            run_with_timeout(
                Command::new("ffprobe").args([
                    "-v",
                    "error",
                    "-show_entries",
                    "stream=codec_name,width,height",
                    &url,
                ]),
                LIMIT,
            )
        })
        .await
        .unwrap();
        assert_eq!(code, Some(0), "{err}");
        assert!(
            out.contains("codec_name=mjpeg") && out.contains("width=320"),
            "{out}"
        );
    } else {
        assert!(!vswa_testkit::tools_required(), "ffprobe is required");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_viewers_with_end_and_going_away_close() {
    let mut relay = Relay::start(&["--demo", "--demo-size", "64x48"]);
    let (mut ws, _) = tokio_tungstenite::connect_async(relay.ws("/ws/watch/demo"))
        .await
        .unwrap();
    assert_eq!(next_control(&mut ws).await.unwrap()["type"], "hello");
    let status = tokio::task::spawn_blocking(move || {
        let s = relay.terminate();
        (s, relay)
    });
    let end = next_control(&mut ws).await.expect("end message");
    assert_eq!(end["type"], "end");
    assert_eq!(end["reason"], "shutdown");
    assert_eq!(close_code(&mut ws).await, Some(1001));
    let (status, _relay) = status.await.unwrap();
    assert!(status.expect("relay exited").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_and_wss() {
    let dir = std::env::temp_dir().join(format!("vswa-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let relay = Relay::start(&[
        "--demo",
        "--demo-size",
        "64x48",
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    let mut config = SubscriberConfig::new(format!("wss://localhost:{}/ws/watch/demo", relay.port));
    config.connect.ca_cert = Some(cert_path.clone());
    let mut sub = Subscriber::connect(config).await.unwrap();
    let frames = receive(&mut sub, 3, Duration::from_secs(20)).await;
    assert_eq!(frames.len(), 3);
    // Without trusting the certificate the connection is refused.
    let plain = SubscriberConfig {
        initial_timeout: Duration::from_millis(500),
        ..SubscriberConfig::new(format!("wss://localhost:{}/ws/watch/demo", relay.port))
    };
    assert!(Subscriber::connect(plain).await.is_err());
    // vswa-send publishes over wss:// with --ca-cert.
    let url = format!("wss://localhost:{}/ws/publish/secure", relay.port);
    let (code, _, stderr) = run_with_timeout(
        Command::new(bin("vswa-send")).args([
            "--url",
            &url,
            "--count",
            "5",
            "--size",
            "64x48",
            "--ca-cert",
            cert_path.to_str().unwrap(),
        ]),
        LIMIT,
    );
    assert_eq!(code, Some(0), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A port that was free a moment ago (for restarting a relay on the same address).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_reconnects_after_relay_restart() {
    let _turn = HEAVY.lock().await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let relay = Relay::start_on(&listen, &[]);
    let url = relay.ws("/ws/publish/again");
    let mut sender = Command::new(bin("vswa-send"))
        .args([
            "--url",
            &url,
            "--size",
            "64x48",
            "--fps",
            "20",
            "--duration",
            "40",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let watch = relay.ws("/ws/watch/again");
    let mut sub = Subscriber::connect(SubscriberConfig::new(watch.clone()))
        .await
        .unwrap();
    assert_eq!(receive(&mut sub, 5, Duration::from_secs(20)).await.len(), 5);
    drop(sub);
    drop(relay); // SIGKILL: no goodbye to anyone.
    wait_for_async(
        Duration::from_secs(10),
        "the killed relay's port to be free",
        async || std::net::TcpListener::bind(&listen).ok().map(drop),
    )
    .await;
    let relay = Relay::start_on(&listen, &[]);
    let mut sub = Subscriber::connect(SubscriberConfig::new(watch))
        .await
        .unwrap();
    let frames = receive(&mut sub, 5, Duration::from_secs(30)).await;
    let _ = sender.kill();
    let out = sender.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        frames.len(),
        5,
        "sender did not come back; its stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("reconnect"),
        "sender should say it reconnects: {stderr}"
    );
    drop(relay);
}

#[test]
fn vswa_send_bad_options_are_one_clear_line() {
    let closed = format!("ws://127.0.0.1:{}/ws/publish/x", free_port());
    let cases: [(&[&str], &str); 5] = [
        (&["--source", "nope"], "unknown source"),
        (&["--size", "0x0"], "width and height"),
        (&["--quality", "0"], "--quality"),
        (&["--fps", "0"], "frame rate"),
        (&["--connect-timeout", "1"], "cannot reach relay"),
    ];
    for (args, expect) in cases {
        let (code, _, stderr) = run_with_timeout(
            Command::new(bin("vswa-send"))
                .arg("--url")
                .arg(&closed)
                .args(args),
            LIMIT,
        );
        assert!(matches!(code, Some(c) if c != 0), "{args:?}: exit {code:?}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
        // Retry notices may come first; the last line is the one error.
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("vswa-send: error: "), "{args:?}: {stderr}");
        assert!(last.contains(expect), "{args:?}: {last}");
        assert_eq!(last.matches(expect).count(), 1, "said once: {last}");
    }
}

/// Issue 16: `--ca-cert` accepts a self-signed certificate with `CA:TRUE` (what
/// `openssl req -x509` makes), and a certificate the client does not trust is reported
/// at once as permanent (exit 3), not retried until `--connect-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_cert_takes_a_self_signed_ca_and_untrusted_certificates_fail_at_once() {
    let dir = std::env::temp_dir().join(format!("vswa-tls-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let relay = Relay::start(&[
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    let url = format!("wss://localhost:{}/ws/publish/ca", relay.port);
    let send = |extra: &[&str]| {
        let mut cmd = Command::new(bin("vswa-send"));
        cmd.args(["--url", &url, "--count", "3", "--size", "64x48", "--quiet"])
            .args(extra);
        cmd
    };
    let (code, _, stderr) = run_with_timeout(
        &mut send(&["--ca-cert", cert_path.to_str().unwrap()]),
        LIMIT,
    );
    assert_eq!(code, Some(0), "{stderr}");
    // Not trusted: one line, exit 3, long before the 30 s connect timeout.
    let started = std::time::Instant::now();
    let (code, _, stderr) = run_with_timeout(&mut send(&["--connect-timeout", "30"]), LIMIT);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "retried: {stderr}"
    );
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(!stderr.contains("retrying"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
