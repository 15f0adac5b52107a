//! The bad-input matrix (docs/RELIABILITY.md): each input gets a clear error to that one
//! peer, the relay keeps serving everyone else, and memory stays bounded. Every test
//! starts the real relay on a loopback port chosen at run time.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use vswa_client::{Subscriber, SubscriberConfig, SubscriberEvent};
use vswa_protocol::{Flags, Frame, FrameHeader, HEADER_LEN};

const LIMIT: Duration = Duration::from_secs(60);

/// Receives frames from `sub` until `n` arrived or `limit` passed; returns the count.
async fn count_frames(sub: &mut Subscriber, n: usize, limit: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = 0;
    while got < n {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Ok(SubscriberEvent::Frame { .. })) => got += 1,
            Ok(Ok(_)) => {}
            _ => break,
        }
    }
    got
}

/// Deterministic pseudo-random bytes (xorshift), so a failure reproduces.
fn random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

fn header_bytes() -> [u8; HEADER_LEN] {
    let mut h = FrameHeader::jpeg(0, 1, 16, 8);
    h.payload_len = 50;
    h.to_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_publish_messages_close_only_that_publisher() {
    let relay = Relay::start(&[
        "--demo",
        "--demo-size",
        "64x48",
        "--max-frame-bytes",
        "100000",
    ]);
    let mut demo = Subscriber::connect(SubscriberConfig::new(relay.ws("/ws/watch/demo")))
        .await
        .unwrap();
    let wrong_magic = {
        let mut m = jpeg_frame_message(0, 100).to_vec();
        m[..4].copy_from_slice(b"JPEG");
        m
    };
    let unknown_version = {
        let mut m = jpeg_frame_message(0, 100).to_vec();
        m[4] = 99;
        m
    };
    let length_beyond_message = {
        // The header says 100 payload bytes; only 10 follow.
        let mut m = jpeg_frame_message(0, 100).to_vec();
        m.truncate(HEADER_LEN + 10);
        m
    };
    let length_over_limit = {
        let mut m = jpeg_frame_message(0, 100).to_vec();
        m[8..12].copy_from_slice(&200_000u32.to_be_bytes());
        m
    };
    let zero_length = Frame::new(FrameHeader::jpeg(0, 1, 16, 8), Bytes::new()).to_bytes();
    let cases: Vec<(&str, Message, &str, u16)> = vec![
        (
            "random",
            Message::Binary(random_bytes(4096, 0x5eed).into()),
            "invalid_frame",
            4422,
        ),
        (
            "magic",
            Message::Binary(wrong_magic.into()),
            "invalid_frame",
            4422,
        ),
        (
            "version",
            Message::Binary(unknown_version.into()),
            "invalid_frame",
            4422,
        ),
        (
            "short",
            Message::Binary(length_beyond_message.into()),
            "invalid_frame",
            4422,
        ),
        (
            "over",
            Message::Binary(length_over_limit.into()),
            "frame_too_large",
            1009,
        ),
        (
            "header",
            Message::Binary(header_bytes().to_vec().into()),
            "invalid_frame",
            4422,
        ),
        ("empty", Message::Binary(zero_length), "invalid_frame", 4422),
        (
            "text",
            Message::Text("{not json".into()),
            "bad_request",
            4400,
        ),
    ];
    for (name, msg, code, close) in cases {
        common::assert_publish_refused(&relay, name, msg, code, close).await;
    }
    // Everyone else kept going.
    assert_eq!(
        count_frames(&mut demo, 10, Duration::from_secs(20)).await,
        10
    );
    assert_eq!(http_get(relay.port, "/healthz", &[]).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_end_of_stream_frame_is_accepted_and_viewers_get_end() {
    let relay = Relay::start(&[]);
    let (mut viewer, _) = tokio_tungstenite::connect_async(relay.ws("/ws/watch/eos"))
        .await
        .unwrap();
    assert_eq!(next_control(&mut viewer).await.unwrap()["type"], "hello");
    let (mut publisher, _) = tokio_tungstenite::connect_async(relay.ws("/ws/publish/eos"))
        .await
        .unwrap();
    assert_eq!(next_control(&mut publisher).await.unwrap()["type"], "hello");
    publisher
        .send(Message::Binary(jpeg_frame_message(0, 64)))
        .await
        .unwrap();
    let mut eos = FrameHeader::jpeg(1, 2, 16, 8);
    eos.flags.set(Flags::END_OF_STREAM, true);
    publisher
        .send(Message::Binary(Frame::new(eos, Bytes::new()).to_bytes()))
        .await
        .unwrap();
    let end = next_control(&mut viewer).await.expect("end");
    assert_eq!(end["type"], "end");
    assert_eq!(end["reason"], "publisher_left");
    // The publisher was not refused: it may go on (a new segment) and viewers get it.
    publisher
        .send(Message::Binary(jpeg_frame_message(2, 64)))
        .await
        .unwrap();
    let got = loop {
        match tokio::time::timeout(Duration::from_secs(10), viewer.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => {
                let f = Frame::decode(&b).unwrap();
                if f.header().sequence == 2 {
                    break f;
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("viewer ended: {other:?}"),
        }
    };
    assert_eq!(got.payload().len(), 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabyte_message_is_refused_without_buffering_it() {
    let relay = Relay::start(&["--demo", "--demo-size", "64x48"]);
    let pid = relay.pid();
    let mut ws = raw_ws(relay.port, "/ws/publish/huge").await;
    assert!(ws
        .next_control("hello", Duration::from_secs(10))
        .await
        .is_some());
    let before = rss_kib(pid);
    // A binary frame header announcing 100 MB, then as much of it as the relay takes.
    ws.tcp
        .write_all(&client_frame_header(2, 100 * 1024 * 1024))
        .await
        .unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut sent = 0usize;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sent < 100 << 20 && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), ws.tcp.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            _ => break,
        }
    }
    let err = ws
        .next_control("error", Duration::from_secs(10))
        .await
        .expect("an error before the close");
    assert_eq!(err["code"], "frame_too_large", "{err}");
    assert_eq!(ws.close_code(Duration::from_secs(10)).await, Some(1009));
    let after = rss_kib(pid);
    assert!(
        after < before + 40 * 1024,
        "relay RSS grew from {before} KiB to {after} KiB (sent {} MB)",
        sent >> 20
    );
    assert!(sent < 100 << 20, "the relay read all 100 MB");
    let mut demo = Subscriber::connect(SubscriberConfig::new(relay.ws("/ws/watch/demo")))
        .await
        .unwrap();
    assert_eq!(count_frames(&mut demo, 3, Duration::from_secs(20)).await, 3);
}

/// Decision: no per-publisher rate limit. The relay validates and stores each frame
/// (cheap), TCP back-pressure bounds a publisher to what the relay reads, and viewers
/// that cannot keep up skip to the newest frame (counted as dropped). Memory stays
/// bounded by the ring (queue + 1 frames per stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_far_faster_than_a_camera_are_relayed_and_others_keep_flowing() {
    let relay = Relay::start(&["--demo", "--demo-size", "64x48"]);
    let pid = relay.pid();
    let mut demo = Subscriber::connect(SubscriberConfig::new(relay.ws("/ws/watch/demo")))
        .await
        .unwrap();
    let mut prompt = Subscriber::connect(SubscriberConfig::new(relay.ws("/ws/watch/flood")))
        .await
        .unwrap();
    // A viewer that never reads: it must skip, not make the relay queue.
    let mut lazy = raw_ws(relay.port, "/ws/watch/flood").await;
    let lazy_port = lazy.tcp.local_addr().unwrap().port();
    let (mut publisher, _) = tokio_tungstenite::connect_async(relay.ws("/ws/publish/flood"))
        .await
        .unwrap();
    let before = rss_kib(pid);
    let started = Instant::now();
    const N: u64 = 2000;
    let flood = tokio::spawn(async move {
        for seq in 0..N {
            publisher
                .send(Message::Binary(jpeg_frame_message(seq, 8 * 1024)))
                .await
                .unwrap();
        }
        publisher
    });
    // The prompt viewer ends up with the newest frame; frames may be skipped on the way.
    let mut last = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while last != N - 1 {
        match tokio::time::timeout_at(deadline, prompt.next()).await {
            Ok(Ok(SubscriberEvent::Frame { frame, .. })) => last = frame.header().sequence,
            Ok(Ok(_)) => {}
            other => panic!("prompt viewer: {other:?} (last {last})"),
        }
    }
    let _publisher = flood.await.unwrap();
    eprintln!(
        "{N} frames of 8 KiB through the relay in {:?}",
        started.elapsed()
    );
    let streams = streams_json(relay.port).await;
    let flood = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "flood")
        .unwrap()
        .clone();
    assert_eq!(flood["frames"], N, "every frame was accepted");
    let lazy_stats = flood["viewer_details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| {
            v["addr"]
                .as_str()
                .unwrap()
                .ends_with(&format!(":{lazy_port}"))
        })
        .expect("the lazy viewer is still connected")
        .clone();
    assert!(
        lazy_stats["dropped"].as_u64().unwrap() > 0,
        "the lazy viewer skipped frames: {lazy_stats}"
    );
    let after = rss_kib(pid);
    assert!(
        after < before + 64 * 1024,
        "relay RSS grew from {before} KiB to {after} KiB"
    );
    assert_eq!(count_frames(&mut demo, 5, Duration::from_secs(20)).await, 5);
    // The lazy viewer, reading at last, gets a hello and then frames (no stale backlog
    // beyond what the kernel buffered).
    assert!(lazy.next_message(Duration::from_secs(5)).await.is_some());
}

async fn status_of(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, _, body) = http_get(port, path, headers).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wrong_and_misplaced_tokens_are_401() {
    let relay = Relay::start(&[
        "--publish-token",
        "pub-secret",
        "--view-token",
        "view-secret",
    ]);
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("/ws/publish/a", vec![], "requires a token"),
        ("/ws/publish/a?token=wrong", vec![], "wrong token"),
        ("/ws/publish/a?token=view-secret", vec![], "wrong token"),
        (
            "/ws/watch/a",
            vec![("Cookie", "token=view-secret")],
            "requires a token",
        ),
        (
            "/ws/watch/a",
            // "x:view-secret" in Basic encoding.
            vec![("Authorization", "Basic eDp2aWV3LXNlY3JldA==")],
            "requires a token",
        ),
        (
            "/ws/watch/a",
            vec![("Authorization", "view-secret")],
            "requires a token",
        ),
        (
            "/ws/watch/a",
            vec![("X-Token", "view-secret")],
            "requires a token",
        ),
        (
            "/ws/watch/a?access_token=view-secret",
            vec![],
            "requires a token",
        ),
        ("/ws/watch/a#token=view-secret", vec![], "requires a token"),
        ("/snapshot/a.jpg?token=pub-secret", vec![], "wrong token"),
    ];
    for (path, extra, expect) in cases {
        let mut h = upgrade.to_vec();
        h.extend(extra.iter().copied());
        let (status, body) = status_of(relay.port, path, &h).await;
        assert_eq!(status, 401, "{path} {extra:?}");
        assert!(body.contains(expect), "{path} {extra:?}: {body}");
    }
    // The right token in the right place is accepted (404: no frame yet, not 401).
    let (status, _) = status_of(relay.port, "/snapshot/a.jpg?token=view-secret", &[]).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_stream_name_and_upgrade_on_plain_routes() {
    let relay = Relay::start(&[]);
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    for path in ["/ws/watch/", "/ws/publish/", "/snapshot/.jpg"] {
        let (status, _) = status_of(relay.port, path, &upgrade).await;
        assert!(status == 404 || status == 400, "{path}: {status}");
    }
    for (path, want) in [
        ("/healthz", 200),
        ("/api/streams", 200),
        ("/metrics", 200),
        ("/", 200),
        ("/view/x", 200),
        ("/nope", 404),
    ] {
        let (status, _) = status_of(relay.port, path, &upgrade).await;
        assert_eq!(
            status, want,
            "{path}: an upgrade request gets the plain response"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_and_the_relay_keeps_serving() {
    let relay = Relay::start(&[]);
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", relay.port))
        .await
        .unwrap();
    let big = "a".repeat(200 * 1024);
    let req = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    // The relay may answer and close before it has read everything.
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.write_all(req.as_bytes())).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    let head = String::from_utf8_lossy(&buf);
    assert!(
        head.is_empty() || head.starts_with("HTTP/1.1 431"),
        "expected 431 or a closed connection: {head}"
    );
    // Many headers (each small) are refused too.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", relay.port))
        .await
        .unwrap();
    let mut req = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for i in 0..500 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let _ = tcp.write_all(req.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    let head = String::from_utf8_lossy(&buf);
    assert!(
        head.is_empty() || head.starts_with("HTTP/1.1 431"),
        "expected 431 or a closed connection: {head}"
    );
    assert_eq!(http_get(relay.port, "/healthz", &[]).await.0, 200);
}

/// Time from `started` until the relay closes `tcp` (EOF or reset), bounded by `limit`.
async fn time_to_close(
    tcp: &mut tokio::net::TcpStream,
    started: Instant,
    limit: Duration,
) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), tcp.read(&mut buf))
            .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_shed_after_the_handshake_timeout() {
    let relay = Relay::start(&["--handshake-timeout", "2"]);
    let started = Instant::now();
    // Half a request line, then nothing.
    let mut half = tokio::net::TcpStream::connect(("127.0.0.1", relay.port))
        .await
        .unwrap();
    half.write_all(b"GET /ws/watch/x HT").await.unwrap();
    // Nothing at all.
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", relay.port))
        .await
        .unwrap();
    // A byte every 300 ms: trickling does not extend the deadline.
    let mut trickle = tokio::net::TcpStream::connect(("127.0.0.1", relay.port))
        .await
        .unwrap();
    let trickler = tokio::spawn(async move {
        let started = Instant::now();
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa" {
            if trickle.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let _ = trickle.shutdown().await;
        (started, trickle)
    });
    let half_t = time_to_close(&mut half, started, Duration::from_secs(10)).await;
    let silent_t = time_to_close(&mut silent, started, Duration::from_secs(10)).await;
    for (what, t) in [("half request line", half_t), ("silent", silent_t)] {
        let t = t.unwrap_or_else(|| panic!("{what}: not closed within 10 s"));
        assert!(
            t >= Duration::from_millis(1900) && t < Duration::from_secs(6),
            "{what}: closed after {t:?}"
        );
    }
    let (started, mut trickle) = trickler.await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), trickle.read_to_end(&mut buf)).await;
    assert!(
        !String::from_utf8_lossy(&buf).contains("200 OK"),
        "a trickled request must not be served"
    );
    assert!(started.elapsed() < Duration::from_secs(25));
    assert_eq!(http_get(relay.port, "/healthz", &[]).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_hold_the_limit_and_healthz_recovers() {
    const LIMIT_CONNS: usize = 1000;
    let relay = Relay::start(&[
        "--max-connections",
        &LIMIT_CONNS.to_string(),
        "--handshake-timeout",
        "2",
    ]);
    let pid = relay.pid();
    let fds_before = open_fds(pid);
    // A monitor that connected before the flood asks /healthz on its keep-alive
    // connection every 300 ms throughout (well inside the handshake timeout).
    let monitor_tcp = tokio::net::TcpStream::connect(("127.0.0.1", relay.port))
        .await
        .unwrap();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let monitor = tokio::spawn(async move {
        let mut tcp = monitor_tcp;
        let (mut answered, mut slowest) = (0u32, Duration::ZERO);
        for _ in 0..200 {
            let started = Instant::now();
            tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 512];
            let n = tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut buf))
                .await
                .expect("healthz on the monitor connection within 1 s")
                .unwrap();
            assert!(
                String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
                "monitor got {:?}",
                String::from_utf8_lossy(&buf[..n])
            );
            answered += 1;
            slowest = slowest.max(started.elapsed());
            tokio::select! {
                _ = &mut stop_rx => break,
                () = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
        }
        (answered, slowest)
    });
    let mut idle = Vec::new();
    for _ in 0..3000 {
        match tokio::net::TcpStream::connect(("127.0.0.1", relay.port)).await {
            Ok(tcp) => idle.push(tcp),
            Err(e) => panic!("connect failed after {}: {e}", idle.len()),
        }
    }
    let flood_end = Instant::now();
    // The limit holds: the relay never has more than the limit open (plus its own fds).
    let fds = open_fds(pid);
    assert!(
        fds <= fds_before + LIMIT_CONNS + 5,
        "relay holds {fds} fds (limit {LIMIT_CONNS}, {fds_before} before)"
    );
    // Over-limit connections were closed at once; the rest are shed after the handshake
    // timeout, so a fresh /healthz works again within about that time.
    let started = Instant::now();
    wait_for_async(
        Duration::from_secs(8),
        "/healthz to answer on a fresh connection",
        async || {
            tokio::time::timeout(Duration::from_secs(1), async {
                let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", relay.port))
                    .await
                    .ok()?;
                tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await
                    .ok()?;
                let mut buf = Vec::new();
                tcp.read_to_end(&mut buf).await.ok()?;
                String::from_utf8_lossy(&buf)
                    .starts_with("HTTP/1.1 200")
                    .then_some(())
            })
            .await
            .ok()
            .flatten()
        },
    )
    .await;
    eprintln!(
        "fresh /healthz answered {:?} after the flood",
        started.elapsed()
    );
    // Connections accepted late (as permits freed) get their own handshake timeout; after
    // that, every idle connection is closed. Each pass reads every still-open socket at
    // once and keeps the ones that are not closed yet.
    let total = idle.len();
    let closed = wait_for_async(
        Duration::from_secs(10),
        "at least 2990 of the 3000 idle connections to be closed",
        async || {
            let open = futures_util::future::join_all(idle.drain(..).map(|mut tcp| async move {
                let mut b = [0u8; 1];
                let read = tokio::time::timeout(Duration::from_millis(50), tcp.read(&mut b)).await;
                (!matches!(read, Ok(Ok(0) | Err(_)))).then_some(tcp)
            }))
            .await;
            idle.extend(open.into_iter().flatten());
            let closed = total - idle.len();
            (closed >= 2990).then_some(closed)
        },
    )
    .await;
    eprintln!(
        "{closed} of {total} idle connections closed {:?} after the flood",
        flood_end.elapsed()
    );
    let _ = stop_tx.send(());
    let (answered, slowest) = monitor.await.unwrap();
    eprintln!("monitor: {answered} answers, slowest {slowest:?}");
    assert!(answered >= 3);
}

/// GET `path` from the relay on 127.0.0.1 over a connection from `source` (any loopback
/// address); the whole response, or `None` if the relay closed or did not answer in 2 s.
async fn get_from(source: &str, port: u16, path: &str) -> Option<String> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket
        .bind(format!("{source}:0").parse().unwrap())
        .unwrap_or_else(|e| panic!("bind {source}: {e}"));
    tokio::time::timeout(Duration::from_secs(2), async {
        let mut tcp = socket.connect(([127, 0, 0, 1], port).into()).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        tcp.read_to_end(&mut buf).await.ok()?;
        (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned())
    })
    .await
    .ok()?
}

/// With `--max-connections-per-ip`, one address that floods idle sockets is capped at
/// its share (the rest are closed at once) and a client from another address is served
/// right away, not after the handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_limit_keeps_room_for_other_clients() {
    const PER_IP: usize = 50;
    const FLOOD: usize = 500;
    let relay = Relay::start(&[
        "--max-connections",
        "200",
        "--max-connections-per-ip",
        &PER_IP.to_string(),
        "--handshake-timeout",
        "30",
    ]);
    let mut idle = Vec::new();
    for _ in 0..FLOOD {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", relay.port))
                .await
                .unwrap(),
        );
    }
    // All but the address's share are closed at once (not after the 30 s timeout).
    let mut open = vec![true; FLOOD];
    let still = wait_for_async(
        Duration::from_secs(10),
        &format!("all but {PER_IP} of {FLOOD} idle connections to be closed (limit per address)"),
        async || {
            for (tcp, open) in idle.iter_mut().zip(open.iter_mut()).filter(|(_, o)| **o) {
                let mut b = [0u8; 1];
                if let Ok(Ok(0) | Err(_)) =
                    tokio::time::timeout(Duration::from_millis(1), tcp.read(&mut b)).await
                {
                    *open = false;
                }
            }
            let still = open.iter().filter(|o| **o).count();
            (still <= PER_IP).then_some(still)
        },
    )
    .await;
    assert_eq!(still, PER_IP, "the address's own share stays open");
    // The flooding address gets no more; another address is served at once.
    assert_eq!(get_from("127.0.0.1", relay.port, "/healthz").await, None);
    let other = get_from("127.0.0.2", relay.port, "/healthz").await;
    assert!(
        other
            .as_deref()
            .is_some_and(|r| r.starts_with("HTTP/1.1 200")),
        "{other:?}"
    );
    let metrics = get_from("127.0.0.2", relay.port, "/metrics").await.unwrap();
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("vswa_rejected_total{reason=\"max_connections_per_ip\"} "))
        .expect("refusals counted in /metrics")
        .trim()
        .parse()
        .unwrap();
    assert!(refused >= (FLOOD - PER_IP) as f64, "{refused}");
    // Closing the idle sockets frees the address's share.
    drop(idle);
    wait_for_async(
        Duration::from_secs(10),
        "127.0.0.1 to be served again",
        async || {
            get_from("127.0.0.1", relay.port, "/healthz")
                .await
                .map(drop)
        },
    )
    .await;
}

/// A recording of `n` small frames, 33 ms apart.
fn recording(n: u64) -> Vec<u8> {
    let mut w = vswa_protocol::recording::RecordingWriter::new(Vec::new()).unwrap();
    let jpeg = {
        let image =
            vswa_codec::Image::new(vswa_codec::PixelFormat::Gray8, 16, 8, vec![128; 128]).unwrap();
        vswa_codec::encode(&image, &vswa_codec::EncodeOptions::default()).unwrap()
    };
    for seq in 0..n {
        let f = Frame::new(
            FrameHeader::jpeg(seq, 1_000_000 + seq * 33_000, 16, 8),
            jpeg.clone(),
        );
        w.write_frame(&f).unwrap();
    }
    w.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_truncated_corrupt_or_foreign_files_never_panics() {
    let relay = Relay::start(&[]);
    let dir = std::env::temp_dir().join(format!("vswa-badreplay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = recording(6);
    let frame_len = (good.len() - vswa_protocol::recording::RECORDING_HEADER_LEN) / 6;
    let mut corrupt = good.clone();
    // The magic of the fourth frame.
    corrupt[vswa_protocol::recording::RECORDING_HEADER_LEN + 3 * frame_len] ^= 0xff;
    // (name, contents, frames played, exit status): 0 when the complete frames were
    // played and the cut tail is only a warning; 5 (the source holds nothing usable, or
    // is damaged) otherwise.
    let files: Vec<(&str, Vec<u8>, Option<u64>, i32)> = vec![
        ("truncated", good[..good.len() - 10].to_vec(), Some(5), 0),
        ("corrupt", corrupt, Some(3), 5),
        (
            "foreign",
            b"#!/bin/sh\necho this is not a recording\n".to_vec(),
            None,
            5,
        ),
        ("empty", Vec::new(), None, 5),
        (
            "header-only",
            good[..vswa_protocol::recording::RECORDING_HEADER_LEN].to_vec(),
            None,
            5,
        ),
    ];
    for (name, bytes, frames, exit) in files {
        let path = dir.join(format!("{name}.vswa"));
        std::fs::write(&path, &bytes).unwrap();
        let mut viewer = Subscriber::connect(SubscriberConfig::new(
            relay.ws(&format!("/ws/watch/{name}")),
        ))
        .await
        .unwrap();
        let url = relay.ws(&format!("/ws/publish/{name}"));
        let source = format!("replay:{}", path.display());
        let (code, _, stderr) = tokio::task::spawn_blocking(move || {
            run_with_timeout(
                Command::new(bin("vswa-send")).args(["--url", &url, "--source", &source]),
                LIMIT,
            )
        })
        .await
        .unwrap();
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(code, Some(exit), "{name}: {stderr}");
        match frames {
            Some(n) => {
                // Complete frames are played; a bad tail is reported in at most one line.
                assert!(errors.len() <= 1, "{name}: {stderr}");
                let got = count_frames(&mut viewer, n as usize, Duration::from_secs(10)).await;
                assert_eq!(got as u64, n, "{name}: {stderr}");
            }
            None => {
                // Nothing to play is one line naming the file.
                assert_eq!(errors.len(), 1, "{name}: {stderr}");
                assert!(
                    errors[0].contains(&format!("{name}.vswa")),
                    "{name}: {stderr}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Mounts a tmpfs at `dir` with `opts`; false (with the reason printed) if impossible.
fn mount_tmpfs(dir: &std::path::Path, opts: &str) -> bool {
    match Command::new("mount")
        .args(["-t", "tmpfs", "-o", opts, "tmpfs", dir.to_str().unwrap()])
        .output()
    {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "skipping: cannot mount a tmpfs ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("skipping: cannot run mount: {e}");
            false
        }
    }
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".jpg") || n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_out_dir_read_only_or_full_is_a_clear_error_without_partial_files() {
    let relay = Relay::start(&["--demo", "--demo-size", "320x240"]);
    // Read-only: a read-only tmpfs (root ignores permission bits), else mode 0555.
    let ro = std::env::temp_dir().join(format!("vswa-ro-{}", std::process::id()));
    std::fs::create_dir_all(&ro).unwrap();
    let _ro_guard = Unmount(ro.clone());
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let ro_ready = if is_root {
        mount_tmpfs(&ro, "ro,size=64k")
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        true
    };
    if ro_ready {
        let (code, stderr) = tokio::task::spawn_blocking({
            let ro = ro.clone();
            let relay_port = relay.port;
            move || RelayRef(relay_port).recv(&ro, "5")
        })
        .await
        .unwrap();
        assert!(code.is_some_and(|c| c != 0), "{code:?} {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("cannot write to output directory"),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(leftovers(&ro).is_empty(), "{:?}", leftovers(&ro));
    }
    // Full: a 64 KiB tmpfs holds a few frames, then every write fails.
    if !is_root {
        eprintln!("skipping the full-filesystem case: mounting a tmpfs needs root");
        return;
    }
    let full = std::env::temp_dir().join(format!("vswa-full-{}", std::process::id()));
    std::fs::create_dir_all(&full).unwrap();
    let _full_guard = Unmount(full.clone());
    if !mount_tmpfs(&full, "size=64k") {
        return;
    }
    let (code, stderr) = tokio::task::spawn_blocking({
        let full = full.clone();
        let relay_port = relay.port;
        move || RelayRef(relay_port).recv(&full, "200")
    })
    .await
    .unwrap();
    assert!(code.is_some_and(|c| c != 0), "{code:?} {stderr}");
    assert!(stderr.contains("No space left"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        leftovers(&full).is_empty(),
        "partial files: {:?}",
        leftovers(&full)
    );
    // What is there is whole.
    for e in std::fs::read_dir(&full).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        assert!(vswa_codec::decode(&bytes).is_ok());
    }
}

/// A relay known only by port, usable from blocking threads.
struct RelayRef(u16);

impl RelayRef {
    fn recv(&self, dir: &std::path::Path, count: &str) -> (Option<i32>, String) {
        let url = format!("ws://127.0.0.1:{}/ws/watch/demo", self.0);
        let (code, _, stderr) = run_with_timeout(
            Command::new(bin("vswa-recv")).args([
                "--url",
                &url,
                "--count",
                count,
                "--out-dir",
                dir.to_str().unwrap(),
            ]),
            LIMIT,
        );
        (code, stderr)
    }
}
