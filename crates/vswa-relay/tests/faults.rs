//! Fault tests (docs/RELIABILITY.md): a publisher that dies mid-frame, a viewer that
//! stops reading, SIGTERM to a recording receiver. Relay restarts with vswa-send and
//! vswa-recv reconnecting are covered in tests/relay.rs and vswa-recv's tests/e2e.rs.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use vswa_protocol::Frame;

/// The next binary frame's sequence, skipping control messages; `None` on close.
async fn next_seq<S>(ws: &mut S, limit: Duration) -> Option<u64>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(limit, ws.next()).await.ok()??.ok()? {
            Message::Binary(b) => return Some(Frame::decode(&b).ok()?.header().sequence),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_killed_mid_frame_ends_the_stream_and_a_new_one_resumes_it() {
    let relay = Relay::start(&[]);
    let (mut viewer, _) = tokio_tungstenite::connect_async(relay.ws("/ws/watch/k"))
        .await
        .unwrap();
    assert_eq!(next_control(&mut viewer).await.unwrap()["type"], "hello");
    let mut dying = raw_ws(relay.port, "/ws/publish/k").await;
    assert!(dying
        .next_control("hello", Duration::from_secs(10))
        .await
        .is_some());
    let whole = jpeg_frame_message(0, 3000);
    dying.tcp.write_all(&client_frame(2, &whole)).await.unwrap();
    assert_eq!(
        next_seq(&mut viewer, Duration::from_secs(10)).await,
        Some(0)
    );
    // Half of the next frame, then the process "dies": the kernel closes its socket.
    let next = client_frame(2, &jpeg_frame_message(1, 3000));
    dying.tcp.write_all(&next[..next.len() / 2]).await.unwrap();
    dying.tcp.flush().await.unwrap();
    // A moment for the relay to read the half frame, so the close finds it mid-frame.
    // The relay shows no partial frame to wait for, and the assertions below hold
    // either way (half a frame followed at once by the close is also "died mid-frame").
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(dying);
    let end = next_control(&mut viewer)
        .await
        .expect("end after the publisher died");
    assert_eq!(end["type"], "end");
    assert_eq!(end["reason"], "publisher_left");
    // A new publisher on the same stream is accepted and the viewer gets its frames.
    let (mut publisher, _) = tokio_tungstenite::connect_async(relay.ws("/ws/publish/k"))
        .await
        .unwrap();
    assert_eq!(next_control(&mut publisher).await.unwrap()["type"], "hello");
    for seq in 100..103 {
        publisher
            .send(Message::Binary(jpeg_frame_message(seq, 500)))
            .await
            .unwrap();
    }
    for want in 100..103 {
        assert_eq!(
            next_seq(&mut viewer, Duration::from_secs(10)).await,
            Some(want)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_that_stops_reading_is_counted_bounded_and_disconnected() {
    let relay = Relay::start(&["--stall-timeout", "5"]);
    let pid = relay.pid();
    // A viewer that completes the handshake and then never reads nor writes again.
    let stalled = raw_ws(relay.port, "/ws/watch/st").await;
    let stalled_port = stalled.tcp.local_addr().unwrap().port();
    let mut prompt = tokio_tungstenite::connect_async(relay.ws("/ws/watch/st"))
        .await
        .unwrap()
        .0;
    let (mut publisher, _) = tokio_tungstenite::connect_async(relay.ws("/ws/publish/st"))
        .await
        .unwrap();
    let base_rss = rss_kib(pid);
    // 64 KiB frames at about 40 fps (2.5 MB/s) fill the stalled socket's buffers fast.
    let feed = tokio::spawn(async move {
        let mut seq = 0;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if publisher
                .send(Message::Binary(jpeg_frame_message(seq, 64 * 1024)))
                .await
                .is_err()
            {
                break;
            }
            seq += 1;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        seq
    });
    let reader = tokio::spawn(async move {
        let mut got = 0u64;
        while let Some(_seq) = next_seq(&mut prompt, Duration::from_secs(5)).await {
            got += 1;
            if got >= 300 {
                break;
            }
        }
        got
    });
    let started = Instant::now();
    let (mut max_dropped, mut max_rss, mut gone_after) = (0u64, 0u64, None);
    while started.elapsed() < Duration::from_secs(30) {
        // The sampling interval for RSS and drop counts while the stall runs its course.
        tokio::time::sleep(Duration::from_millis(500)).await;
        max_rss = max_rss.max(rss_kib(pid));
        let streams = streams_json(relay.port).await;
        let viewers = streams["streams"][0]["viewer_details"]
            .as_array()
            .unwrap()
            .clone();
        match viewers.iter().find(|v| {
            v["addr"]
                .as_str()
                .unwrap()
                .ends_with(&format!(":{stalled_port}"))
        }) {
            Some(v) => max_dropped = max_dropped.max(v["dropped"].as_u64().unwrap()),
            None => {
                gone_after = Some(started.elapsed());
                break;
            }
        }
    }
    let gone_after = gone_after.expect("the stalled viewer was not disconnected within 30 s");
    eprintln!(
        "stalled viewer: {max_dropped} dropped, disconnected after {gone_after:?}; relay RSS {base_rss} -> max {max_rss} KiB"
    );
    assert!(max_dropped > 0, "dropped frames were never counted");
    assert!(
        max_rss < base_rss + 48 * 1024,
        "relay RSS grew from {base_rss} to {max_rss} KiB"
    );
    let got = reader.await.unwrap();
    assert!(
        got >= 100,
        "the prompt viewer got only {got} frames meanwhile"
    );
    feed.abort();
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_recv_while_recording_leaves_a_complete_file() {
    let relay = Relay::start(&["--demo", "--demo-size", "160x120"]);
    let dir = std::env::temp_dir().join(format!("vswa-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rec = dir.join("rec.vswa");
    let mut recv = Command::new(bin("vswa-recv"))
        .args([
            "--url",
            &relay.ws("/ws/watch/demo"),
            "--record",
            rec.to_str().unwrap(),
            "--duration",
            "60",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let it record a while.
    wait_for_async(
        Duration::from_secs(20),
        "the recording to grow to 50 kB",
        async || (std::fs::metadata(&rec).map_or(0, |m| m.len()) >= 50_000).then_some(()),
    )
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &recv.id().to_string()])
        .status();
    let status = wait_with_limit(&mut recv, Duration::from_secs(10))
        .expect("vswa-recv did not exit within 10 s of SIGTERM");
    let out = recv.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let file = std::fs::File::open(&rec).unwrap();
    let mut reader = vswa_protocol::recording::RecordingReader::new(file).unwrap();
    let mut frames = 0;
    while let Some(frame) = reader.next_frame().expect("no truncated or corrupt tail") {
        assert!(vswa_codec::decode(frame.payload()).is_ok());
        frames += 1;
    }
    assert!(frames > 5, "only {frames} frames recorded");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 16: a closed stderr (a pipe whose reader went away) is not a panic: the relay
/// keeps serving and exits 0 on SIGTERM, not 101.
#[test]
fn relay_with_a_closed_stderr_serves_and_exits_cleanly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(vswa_testkit::bin("vswa-relay"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--demo"])
        .env("RUST_LOG", "debug")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start vswa-relay");
    // Close the reading end at once: every line the relay writes now gets EPIPE.
    drop(child.stderr.take());
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    vswa_testkit::wait_for(Duration::from_secs(30), "the relay to serve", || {
        vswa_testkit::http_get_body(addr, "/healthz")
    });
    // The demo publishes and logs meanwhile; the snapshot shows it is alive.
    vswa_testkit::wait_for(Duration::from_secs(30), "a demo frame", || {
        vswa_testkit::http_get_body(addr, "/api/streams/demo")
            .filter(|b| b.contains("\"live\":true"))
    });
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = vswa_testkit::wait_with_limit(&mut child, Duration::from_secs(15))
        .expect("the relay exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// Issue 16: vswa-send and vswa-recv with a closed stderr exit with their documented
/// code (4: relay unreachable), not 101 from a panic while printing the error.
#[test]
fn clients_with_a_closed_stderr_exit_with_their_documented_code() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (program, path) in [("vswa-send", "publish"), ("vswa-recv", "watch")] {
        let mut child = std::process::Command::new(vswa_testkit::bin(program))
            .args([
                "--url",
                &format!("ws://127.0.0.1:{port}/ws/{path}/x"),
                "--connect-timeout",
                "1",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the client");
        drop(child.stderr.take());
        let status = vswa_testkit::wait_with_limit(&mut child, Duration::from_secs(20))
            .expect("the client gives up");
        assert_eq!(status.code(), Some(4), "{program}: {status:?}");
    }
}
