//! Relay behaviour tests with the relay running in this process: each test binds
//! `127.0.0.1:0`, calls [`Relay::serve`] with a [`Shutdown`], and talks to it over real
//! loopback sockets. Timing rules (idle, stall, ping, end grace, shutdown grace) run on
//! paused tokio time, so a 5 s timeout costs milliseconds and fires at an exact instant.

// Some of common's re-exports serve only the subprocess tests.
#[allow(unused_imports)]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{http_get, jpeg_frame_message, next_control, next_error, raw_ws, RawWs};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use vswa_client::{ClientError, Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use vswa_protocol::{ErrorCode, Frame, StreamName, HEADER_LEN};
use vswa_relay::hub::{Hub, HubConfig, StreamInfo, ViewerView};
use vswa_relay::{Relay, RelayConfig, RelayError, Shutdown};

/// Bound on any single wait in these tests (virtual time when the clock is paused).
const LIMIT: Duration = Duration::from_secs(30);

/// Timers a test does not exercise are set this far out, so they never fire.
const NEVER: Duration = Duration::from_secs(3600);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A relay serving on a loopback port of this process.
struct Running {
    addr: SocketAddr,
    hub: Hub,
    shutdown: Shutdown,
    served: JoinHandle<Result<(), RelayError>>,
}

/// Starts `config` on `127.0.0.1:0`.
///
/// It also starts a task that sleeps 1 ms at a time. With paused time tokio jumps the
/// clock straight to the next timer whenever every task waits; if loopback IO is a
/// moment late (the kernel hands it to ksoftirqd on a busy machine), that jump would
/// fire a relay timeout that real time never reaches. With the 1 ms sleeper the clock
/// can only creep forward in 1 ms steps, each one polling the sockets again, so late IO
/// costs a few virtual milliseconds instead of a whole timeout. On a real clock the
/// task is a harmless 1 kHz wake-up.
async fn start(config: RelayConfig) -> Running {
    tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let relay = Relay::new(config).unwrap();
    let hub = relay.hub().clone();
    let shutdown = Shutdown::new();
    let served = tokio::spawn(relay.serve(listener, shutdown.wait()));
    Running {
        addr,
        hub,
        shutdown,
        served,
    }
}

impl Running {
    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// A WebSocket to `path`, past the relay's `hello`, which is returned.
    async fn connect(&self, path: &str) -> (Ws, serde_json::Value) {
        let (mut ws, _) = ws_connect(self.ws(path))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let hello = next_control(&mut ws).await.expect("a hello");
        assert_eq!(hello["type"], "hello", "{path}: {hello}");
        (ws, hello)
    }

    async fn publisher(&self, stream: &str) -> Ws {
        self.connect(&format!("/ws/publish/{stream}")).await.0
    }

    async fn viewer(&self, stream: &str) -> Ws {
        self.connect(&format!("/ws/watch/{stream}")).await.0
    }

    fn info(&self, stream: &str) -> Option<StreamInfo> {
        self.hub
            .stream(&StreamName::new(stream).unwrap())
            .map(|s| s.info())
    }

    /// Waits (bounded) until `done` holds for the hub; the relay's tasks run meanwhile.
    async fn wait_until(&self, what: &str, done: impl Fn(&Hub) -> bool) {
        let deadline = Instant::now() + LIMIT;
        while !done(&self.hub) {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The viewer `info` lists as connected from local port `port`.
fn viewer_at(info: &StreamInfo, port: u16) -> Option<&ViewerView> {
    let suffix = format!(":{port}");
    info.viewer_details
        .iter()
        .find(|v| v.addr.as_deref().is_some_and(|a| a.ends_with(&suffix)))
}

/// Tells when a viewer's session is blocked in a socket write: frames it will skip
/// pile up while its sent count stands still. (Skipped frames alone do not prove it:
/// a session that falls behind a burst skips some and carries on.)
#[derive(Default)]
struct StuckWatch {
    sent: u64,
    unchanged: u32,
}

impl StuckWatch {
    /// Takes one look (after each published frame); true once the viewer has skipped
    /// frames and sent none over the last ten looks.
    fn stuck(&mut self, viewer: &ViewerView) -> bool {
        if viewer.frames_sent == self.sent {
            self.unchanged += 1;
        } else {
            self.sent = viewer.frames_sent;
            self.unchanged = 0;
        }
        viewer.dropped > 0 && self.unchanged >= 10
    }
}

/// The next frame's sequence number, skipping control messages and pings; `None` once
/// the connection closes.
async fn next_seq(ws: &mut Ws) -> Option<u64> {
    loop {
        match tokio::time::timeout(LIMIT, ws.next())
            .await
            .expect("a message in time")?
            .ok()?
        {
            Message::Binary(b) => return Some(Frame::decode(&b).unwrap().header().sequence),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

/// Reads until the close frame; returns its code and reason (`common::close_code` gives
/// only the code, and end grace and shutdown both close with 1000).
async fn next_close(ws: &mut Ws) -> Option<(u16, String)> {
    loop {
        match tokio::time::timeout(LIMIT, ws.next())
            .await
            .expect("a message in time")?
        {
            Ok(Message::Close(frame)) => {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()))
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// Reads a raw socket until EOF (or a reset), discarding the data; panics after `LIMIT`.
async fn read_to_eof(tcp: &mut tokio::net::TcpStream) -> usize {
    let mut total = 0;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(LIMIT, tcp.read(&mut chunk))
            .await
            .expect("the relay closed the socket in time")
        {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += n,
        }
    }
}

/// Opens a WebSocket with Nagle's algorithm off. With it on, a small message written
/// right after another waits for the peer's delayed ACK, 40 ms of *real* time, while
/// the paused clock races through whole timeouts: the relay would see a publisher that
/// is sending as idle. (`vswa-client` turns it off too.)
async fn ws_connect(
    request: impl tungstenite::client::IntoClientRequest + Unpin,
) -> Result<(Ws, tungstenite::handshake::client::Response), tungstenite::Error> {
    tokio_tungstenite::connect_async_with_config(request, None, true).await
}

/// HTTP status of an upgrade attempt (101 on success).
async fn upgrade_status(request: tungstenite::handshake::client::Request) -> u16 {
    match ws_connect(request).await {
        Ok((_, resp)) => resp.status().as_u16(),
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("upgrade failed without an HTTP status: {e}"),
    }
}

/// The request headers a WebSocket upgrade needs, for `http_get`.
const UPGRADE: &[(&str, &str)] = &[
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

/// 256 KiB frames fill a non-reading viewer's socket buffers (a few MiB) in a few dozen.
const BIG: usize = 256 * 1024;

#[tokio::test(start_paused = true)]
async fn publisher_that_sends_nothing_gets_idle_timeout_and_a_busy_one_stays() {
    let relay = start(RelayConfig {
        idle_timeout: secs(3.0),
        // A ping would make the client answer with a pong, which counts as traffic.
        ping_interval: NEVER,
        ..Default::default()
    })
    .await;
    let mut silent = relay.publisher("quiet").await;
    let since = Instant::now();
    // Another publisher sends a frame every second, well within the idle timeout.
    let mut busy = relay.publisher("busy").await;
    let feeder = tokio::spawn(async move {
        for seq in 0..6 {
            busy.send(Message::Binary(jpeg_frame_message(seq, 100)))
                .await
                .unwrap();
            tokio::time::sleep(secs(1.0)).await;
        }
        busy
    });
    let err = next_error(&mut silent)
        .await
        .expect("an idle_timeout error");
    let after = since.elapsed();
    assert_eq!(err["code"], "idle_timeout", "{err}");
    assert!(err["message"].as_str().unwrap().contains("3 s"), "{err}");
    assert!(
        after >= secs(3.0) && after < secs(3.1),
        "closed after {after:?}"
    );
    assert_eq!(next_close(&mut silent).await.map(|c| c.0), Some(4408));
    relay
        .wait_until("the silent publisher's stream is gone", |hub| {
            hub.stream(&StreamName::new("quiet").unwrap()).is_none()
        })
        .await;
    // Six seconds, twice the idle timeout, and the busy publisher is still there.
    let mut busy = feeder.await.unwrap();
    let info = relay.info("busy").unwrap();
    assert!(info.live);
    assert_eq!(info.frames, 6);
    busy.send(Message::Binary(jpeg_frame_message(6, 100)))
        .await
        .unwrap();
    relay
        .wait_until("the seventh frame arrives", |hub| {
            hub.stream(&StreamName::new("busy").unwrap())
                .is_some_and(|s| s.info().frames == 7)
        })
        .await;
}

#[tokio::test(start_paused = true)]
async fn viewer_that_never_reads_is_disconnected_after_stall_timeout() {
    let relay = start(RelayConfig {
        stall_timeout: secs(2.0),
        ping_interval: NEVER,
        ..Default::default()
    })
    .await;
    // Completes the handshake, then never reads again.
    let mut stalled = raw_ws(relay.port(), "/ws/watch/st").await;
    let stalled_port = stalled.tcp.local_addr().unwrap().port();
    let mut prompt = relay.viewer("st").await;
    let prompt_port = match prompt.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.local_addr().unwrap().port(),
        _ => unreachable!("plain ws://"),
    };
    let reader = tokio::spawn(async move {
        let mut got = 0u64;
        while next_seq(&mut prompt).await.is_some() {
            got += 1;
        }
        got
    });
    let mut publisher = relay.publisher("st").await;
    let since = Instant::now();
    // Frames flow at 20 fps until the relay lets go of the stalled viewer.
    let mut gone_after = None;
    for seq in 0..600 {
        publisher
            .send(Message::Binary(jpeg_frame_message(seq, BIG)))
            .await
            .unwrap();
        tokio::time::sleep(secs(0.05)).await;
        if viewer_at(&relay.info("st").unwrap(), stalled_port).is_none() {
            gone_after = Some(since.elapsed());
            break;
        }
    }
    let gone_after = gone_after.expect("the stalled viewer was never disconnected");
    // Its writes block only once its buffers are full, so the stall clock starts late.
    assert!(
        gone_after >= secs(2.0) && gone_after < secs(10.0),
        "disconnected after {gone_after:?}"
    );
    // The JSON stats agree: only the prompt viewer is left.
    let (status, _, body) = http_get(relay.port(), "/api/streams/st", &[]).await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["viewers"], 1, "{json}");
    let addr = json["viewer_details"][0]["addr"].as_str().unwrap();
    assert!(addr.ends_with(&format!(":{prompt_port}")), "{json}");
    // The relay closed the stalled socket: what it had queued, then EOF.
    read_to_eof(&mut stalled.tcp).await;
    // The prompt viewer kept receiving all along.
    publisher.close(None).await.unwrap();
    drop(publisher);
    relay.shutdown.trigger();
    let got = reader.await.unwrap();
    assert!(got >= 40, "the prompt viewer got only {got} frames");
}

#[tokio::test(start_paused = true)]
async fn viewer_waits_end_grace_for_its_publisher_then_is_closed() {
    let relay = start(RelayConfig {
        end_grace: secs(5.0),
        ping_interval: NEVER,
        ..Default::default()
    })
    .await;
    let mut viewer = relay.viewer("eg").await;
    let mut first = relay.publisher("eg").await;
    first
        .send(Message::Binary(jpeg_frame_message(0, 100)))
        .await
        .unwrap();
    assert_eq!(next_seq(&mut viewer).await, Some(0));
    first.close(None).await.unwrap();
    let end = next_control(&mut viewer).await.expect("an end message");
    let ended = Instant::now();
    assert_eq!(end["type"], "end", "{end}");
    assert_eq!(end["reason"], "publisher_left", "{end}");
    assert_eq!(end["stream"], "eg", "{end}");
    let info = relay.info("eg").expect("the stream stays for its viewer");
    assert!(!info.live);
    assert_eq!(info.viewers, 1);

    // A publisher back within the grace period reaches the same viewer.
    tokio::time::sleep_until(ended + secs(3.0)).await;
    let mut second = relay.publisher("eg").await;
    second
        .send(Message::Binary(jpeg_frame_message(100, 100)))
        .await
        .unwrap();
    assert_eq!(next_seq(&mut viewer).await, Some(100));
    // Past the first grace deadline: its frames cancelled it.
    tokio::time::sleep_until(ended + secs(6.5)).await;
    second
        .send(Message::Binary(jpeg_frame_message(101, 100)))
        .await
        .unwrap();
    assert_eq!(next_seq(&mut viewer).await, Some(101));

    // It leaves for good: the viewer gets `end`, then a close once the grace is over.
    second.close(None).await.unwrap();
    let end = next_control(&mut viewer).await.expect("a second end");
    let ended = Instant::now();
    assert_eq!(end["reason"], "publisher_left", "{end}");
    let close = next_close(&mut viewer).await;
    let waited = ended.elapsed();
    assert_eq!(
        close,
        Some((1000, "the publisher did not return".to_string()))
    );
    assert!(
        waited >= secs(5.0) && waited < secs(5.1),
        "closed after {waited:?}"
    );
    relay
        .wait_until("the empty stream is removed", |hub| {
            hub.streams().is_empty()
        })
        .await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_viewers_refuses_publishers_and_serve_returns() {
    let grace = secs(3.0);
    let relay = start(RelayConfig {
        shutdown_grace: grace,
        ping_interval: NEVER,
        ..Default::default()
    })
    .await;
    let mut publisher = relay.publisher("sd").await;
    let mut viewer = relay.viewer("sd").await;
    // A viewer still waiting for a publisher is told too.
    let mut waiting = relay.viewer("nobody").await;
    publisher
        .send(Message::Binary(jpeg_frame_message(0, 100)))
        .await
        .unwrap();
    assert_eq!(next_seq(&mut viewer).await, Some(0));

    let since = Instant::now();
    relay.shutdown.trigger();
    for (stream, ws) in [("sd", &mut viewer), ("nobody", &mut waiting)] {
        let end = next_control(ws).await.expect("an end message");
        assert_eq!(end["type"], "end", "{stream}: {end}");
        assert_eq!(end["reason"], "shutdown", "{stream}: {end}");
        assert_eq!(end["stream"], stream, "{end}");
        assert_eq!(
            next_close(ws).await,
            Some((1001, "relay shutting down".to_string())),
            "{stream}"
        );
    }
    let err = next_error(&mut publisher)
        .await
        .expect("a shutting_down error");
    assert_eq!(err["code"], "shutting_down", "{err}");
    assert_eq!(next_close(&mut publisher).await.map(|c| c.0), Some(1001));
    let served = tokio::time::timeout(grace, relay.served)
        .await
        .expect("serve returned within shutdown_grace")
        .unwrap();
    assert!(served.is_ok(), "{served:?}");
    assert!(since.elapsed() < grace);
    // The listener is gone with `serve`.
    assert!(tokio::net::TcpStream::connect(relay.addr).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn shutdown_grace_bounds_serve_when_a_viewer_is_stuck_in_a_write() {
    let grace = secs(2.0);
    let relay = start(RelayConfig {
        shutdown_grace: grace,
        stall_timeout: NEVER,
        ping_interval: NEVER,
        ..Default::default()
    })
    .await;
    let stuck = raw_ws(relay.port(), "/ws/watch/stuck").await;
    let mut publisher = relay.publisher("stuck").await;
    let mut watch = StuckWatch::default();
    let mut seq = 0;
    while !watch.stuck(&relay.info("stuck").unwrap().viewer_details[0]) {
        assert!(seq < 400, "the viewer's socket never filled");
        publisher
            .send(Message::Binary(jpeg_frame_message(seq, BIG)))
            .await
            .unwrap();
        tokio::time::sleep(secs(0.01)).await;
        seq += 1;
    }
    let since = Instant::now();
    relay.shutdown.trigger();
    let served = tokio::time::timeout(LIMIT, relay.served)
        .await
        .expect("serve returned")
        .unwrap();
    let took = since.elapsed();
    assert!(served.is_ok(), "{served:?}");
    assert!(took >= grace && took < grace + secs(0.1), "took {took:?}");
    drop(stuck);
}

#[tokio::test(start_paused = true)]
async fn viewers_and_publishers_are_pinged_every_ping_interval() {
    let every = secs(2.0);
    let relay = start(RelayConfig {
        ping_interval: every,
        idle_timeout: NEVER,
        ..Default::default()
    })
    .await;
    let viewer = relay.viewer("pg").await;
    let publisher = relay.publisher("pg").await;
    let since = Instant::now();
    // Collects when the first three pings arrive; tungstenite answers each with a pong.
    let pings = |mut ws: Ws| {
        tokio::spawn(async move {
            let mut at = Vec::new();
            while at.len() < 3 {
                match tokio::time::timeout(LIMIT, ws.next()).await {
                    Ok(Some(Ok(Message::Ping(_)))) => at.push(since.elapsed()),
                    Ok(Some(Ok(_))) => {}
                    other => panic!("connection ended before three pings: {other:?}"),
                }
            }
            at
        })
    };
    let (viewer, publisher) = (pings(viewer), pings(publisher));
    for (who, at) in [
        ("viewer", viewer.await.unwrap()),
        ("publisher", publisher.await.unwrap()),
    ] {
        for (i, t) in at.iter().enumerate() {
            let want = every * (i as u32 + 1);
            assert!(
                *t >= want - secs(0.02) && *t < want + secs(0.05),
                "{who}: ping {i} at {t:?}, want about {want:?} ({at:?})"
            );
        }
    }
    let info = relay.info("pg").unwrap();
    assert!(info.live);
    assert_eq!(info.viewers, 1);
}

/// Real time: the relay measures how long a viewer has been silent with
/// `std::time::Instant`, not tokio's clock, so on paused time a silent viewer is never
/// found silent. Intervals of 100 ms keep the test short.
#[tokio::test]
async fn viewer_that_never_answers_pings_is_closed_after_three_intervals() {
    let relay = start(RelayConfig {
        ping_interval: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    // tungstenite answers pings with pongs; this viewer must stay.
    let mut answering = relay.viewer("sl").await;
    let answering_pings = tokio::spawn(async move {
        let mut pings = 0;
        while pings < 8 {
            match tokio::time::timeout(Duration::from_secs(10), answering.next()).await {
                Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
                Ok(Some(Ok(_))) => {}
                other => panic!("the answering viewer was dropped: {other:?}"),
            }
        }
        answering
    });
    // Reads everything, writes nothing: no pong ever comes back.
    let mut silent = raw_ws(relay.port(), "/ws/watch/sl").await;
    let silent_port = silent.tcp.local_addr().unwrap().port();
    let pings = tokio::time::timeout(Duration::from_secs(10), async {
        let mut pings = 0;
        // The inner limit outlasts the outer one, so `None` here means the socket ended.
        while let Some((opcode, _)) = silent.next_message(Duration::from_secs(20)).await {
            if opcode == 9 {
                pings += 1;
            }
        }
        pings
    })
    .await
    .expect("the silent viewer was closed");
    assert!(
        (2..=4).contains(&pings),
        "closed after {pings} unanswered pings"
    );
    // Eight pings, more than twice the silence limit, and the answering viewer remains.
    let _answering = tokio::time::timeout(Duration::from_secs(10), answering_pings)
        .await
        .expect("eight pings in time")
        .unwrap();
    let info = relay.info("sl").unwrap();
    assert_eq!(info.viewers, 1);
    assert!(viewer_at(&info, silent_port).is_none());
}

#[tokio::test(start_paused = true)]
async fn late_viewer_gets_the_latest_frame_at_once() {
    let relay = start(RelayConfig::default()).await;
    let mut publisher = relay.publisher("late").await;
    let frames: Vec<Bytes> = (10..15).map(|seq| jpeg_frame_message(seq, 300)).collect();
    for frame in &frames {
        publisher
            .send(Message::Binary(frame.clone()))
            .await
            .unwrap();
    }
    relay
        .wait_until("the relay has frame 14", |hub| {
            hub.stream(&StreamName::new("late").unwrap())
                .is_some_and(|s| s.info().last_sequence == Some(14))
        })
        .await;
    // Nothing more is published: the viewer can only get the stored frame.
    let (mut viewer, hello) = relay.connect("/ws/watch/late").await;
    assert_eq!(hello["live"], true, "{hello}");
    assert_eq!(hello["stream"], "late", "{hello}");
    let first = tokio::time::timeout(secs(0.1), viewer.next())
        .await
        .expect("the latest frame at once")
        .unwrap()
        .unwrap();
    assert_eq!(first, Message::Binary(frames[4].clone()));
    // The publisher hears about its audience.
    loop {
        let msg = next_control(&mut publisher)
            .await
            .expect("a viewers message");
        if msg["type"] == "viewers" && msg["count"] == 1 {
            break;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn viewer_before_publisher_waits_and_then_receives() {
    let relay = start(RelayConfig::default()).await;
    let mut sub = Subscriber::connect(SubscriberConfig::new(relay.ws("/ws/watch/early")))
        .await
        .unwrap();
    match sub.next().await.unwrap() {
        vswa_client::SubscriberEvent::Hello(hello) => {
            assert!(!hello.live, "{hello:?}");
            assert_eq!(hello.stream, "early");
        }
        other => panic!("expected hello, got {other:?}"),
    }
    let info = relay
        .info("early")
        .expect("the stream exists for its viewer");
    assert!(!info.live);
    assert_eq!(info.viewers, 1);
    let publisher = Publisher::connect(PublisherConfig::new(relay.ws("/ws/publish/early")))
        .await
        .unwrap();
    for seq in 0..3 {
        let frame = Frame::decode_bytes(jpeg_frame_message(seq, 200), u32::MAX).unwrap();
        publisher.send(frame).await.unwrap();
    }
    for want in 0..3 {
        match tokio::time::timeout(LIMIT, sub.next())
            .await
            .unwrap()
            .unwrap()
        {
            vswa_client::SubscriberEvent::Frame { frame, gap, .. } => {
                assert_eq!(frame.header().sequence, want);
                assert_eq!(gap, 0);
            }
            other => panic!("expected frame {want}, got {other:?}"),
        }
    }
    let stats = publisher.finish().await.unwrap();
    assert_eq!(stats.sent, 3);
    match tokio::time::timeout(LIMIT, sub.next())
        .await
        .unwrap()
        .unwrap()
    {
        vswa_client::SubscriberEvent::End(end) => {
            assert_eq!(end.reason, vswa_protocol::control::EndReason::PublisherLeft)
        }
        other => panic!("expected end, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn second_publisher_on_a_stream_gets_stream_busy() {
    let relay = start(RelayConfig::default()).await;
    let mut first = relay.publisher("busy").await;
    let mut viewer = relay.viewer("busy").await;
    first
        .send(Message::Binary(jpeg_frame_message(0, 100)))
        .await
        .unwrap();
    assert_eq!(next_seq(&mut viewer).await, Some(0));
    // The client library reports the refusal as fatal...
    let refused = Publisher::connect(PublisherConfig::new(relay.ws("/ws/publish/busy"))).await;
    match refused {
        Err(e @ ClientError::Server { .. }) => {
            assert!(e.is_fatal());
            assert!(
                matches!(&e, ClientError::Server { code, .. } if *code == ErrorCode::StreamBusy),
                "{e}"
            );
        }
        other => panic!("expected stream_busy, got {other:?}"),
    }
    // ...and on the wire it is an `error` and close 4409, without a hello.
    let (mut second, _) = ws_connect(relay.ws("/ws/publish/busy")).await.unwrap();
    let err = next_control(&mut second).await.expect("an error message");
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["code"], "stream_busy", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("\"busy\""),
        "{err}"
    );
    assert_eq!(next_close(&mut second).await.map(|c| c.0), Some(4409));
    // The first publisher keeps its stream.
    first
        .send(Message::Binary(jpeg_frame_message(1, 100)))
        .await
        .unwrap();
    assert_eq!(next_seq(&mut viewer).await, Some(1));
    assert_eq!(relay.info("busy").unwrap().frames, 2);
}

#[tokio::test(start_paused = true)]
async fn invalid_stream_names_are_400() {
    let relay = start(RelayConfig::default()).await;
    let long = "x".repeat(65);
    let cases = [
        ("/ws/watch/bad.name".to_string(), "outside A-Z"),
        ("/ws/publish/has%20space".to_string(), "outside A-Z"),
        (format!("/ws/watch/{long}"), "longer than 64"),
        ("/api/streams/no!pe".to_string(), "outside A-Z"),
        ("/stream/b@d.mjpg".to_string(), "outside A-Z"),
        ("/snapshot/b@d.jpg".to_string(), "outside A-Z"),
        ("/view/b@d".to_string(), "outside A-Z"),
    ];
    for (path, reason) in &cases {
        let (status, _, body) = http_get(relay.port(), path, UPGRADE).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body.contains("invalid stream name") && body.contains(reason),
            "{path}: {body}"
        );
        assert_eq!(body.matches('\n').count(), 1, "{path}: one line: {body}");
    }
    // The client library turns the 400 into a fatal refusal.
    let opts = vswa_client::ConnectOptions::new(relay.ws("/ws/watch/bad.name"));
    match vswa_client::connect(&opts).await {
        Err(e @ ClientError::Refused { status: 400, .. }) => assert!(e.is_fatal()),
        other => panic!("expected a 400 refusal, got {other:?}"),
    }
    // The longest valid name, same request: upgraded.
    let ok = format!("/ws/watch/{}", &long[..64]);
    assert_eq!(relay.connect(&ok).await.1["stream"], &long[..64]);
    assert!(relay.hub.streams().len() == 1);
}

#[tokio::test(start_paused = true)]
async fn publish_token_is_required_to_publish_but_not_to_watch() {
    let relay = start(RelayConfig {
        publish_token: Some("pub-secret".into()),
        ..Default::default()
    })
    .await;
    let request = |path: &str| {
        use tungstenite::client::IntoClientRequest;
        relay.ws(path).into_client_request().unwrap()
    };
    // Without a token, or with the wrong one: 401 with a Bearer challenge.
    let (status, head, body) = http_get(relay.port(), "/ws/publish/t", UPGRADE).await;
    assert_eq!(status, 401);
    assert!(
        head.to_lowercase().contains("www-authenticate: bearer"),
        "{head}"
    );
    assert!(String::from_utf8_lossy(&body).starts_with("unauthorized"));
    assert_eq!(
        upgrade_status(request("/ws/publish/t?token=wrong")).await,
        401
    );
    let mut wrong_header = request("/ws/publish/t");
    wrong_header
        .headers_mut()
        .insert("Authorization", "Bearer pub-secre".parse().unwrap());
    assert_eq!(upgrade_status(wrong_header).await, 401);
    let mut opts = vswa_client::ConnectOptions::new(relay.ws("/ws/publish/t"));
    opts.token = Some("wrong".into());
    assert!(matches!(
        vswa_client::connect(&opts).await,
        Err(ClientError::Unauthorized(_))
    ));
    assert!(relay.hub.streams().is_empty(), "refused before the hub");
    // With it, in the query or in the header: 101 and a hello.
    assert_eq!(
        upgrade_status(request("/ws/publish/t?token=pub-secret")).await,
        101
    );
    for (stream, scheme) in [("t2", "Bearer"), ("t3", "BEARER"), ("t4", "bearer")] {
        // The auth scheme is case-insensitive.
        let mut header = request(&format!("/ws/publish/{stream}"));
        header.headers_mut().insert(
            "Authorization",
            format!("{scheme} pub-secret").parse().unwrap(),
        );
        let (mut ws, resp) = ws_connect(header).await.unwrap();
        assert_eq!(resp.status().as_u16(), 101, "{scheme}");
        assert_eq!(next_control(&mut ws).await.unwrap()["role"], "publisher");
    }
    // Watching needs no token when only the publish token is set.
    assert_eq!(upgrade_status(request("/ws/watch/t")).await, 101);
}

#[tokio::test(start_paused = true)]
async fn bad_magic_closes_only_that_publisher() {
    let relay = start(RelayConfig {
        ping_interval: NEVER,
        ..Default::default()
    })
    .await;
    let mut viewer_a = relay.viewer("a").await;
    let mut viewer_b = relay.viewer("b").await;
    let mut publisher_a = relay.publisher("a").await;
    let mut publisher_b = relay.publisher("b").await;
    publisher_b
        .send(Message::Binary(jpeg_frame_message(0, 100)))
        .await
        .unwrap();
    assert_eq!(next_seq(&mut viewer_b).await, Some(0));
    // A whole, well-sized frame whose magic says it is something else.
    let mut bad = jpeg_frame_message(0, 100).to_vec();
    bad[..4].copy_from_slice(b"RIFF");
    publisher_a
        .send(Message::Binary(Bytes::from(bad)))
        .await
        .unwrap();
    let err = next_error(&mut publisher_a)
        .await
        .expect("an error message");
    assert_eq!(err["code"], "invalid_frame", "{err}");
    assert!(err["message"].as_str().unwrap().contains("magic"), "{err}");
    assert_eq!(next_close(&mut publisher_a).await.map(|c| c.0), Some(4422));
    let end = next_control(&mut viewer_a).await.expect("an end message");
    assert_eq!(end["reason"], "publisher_left", "{end}");
    // Stream b never noticed.
    for seq in 1..4 {
        publisher_b
            .send(Message::Binary(jpeg_frame_message(seq, 100)))
            .await
            .unwrap();
        assert_eq!(next_seq(&mut viewer_b).await, Some(seq));
    }
    let (a, b) = (relay.info("a").unwrap(), relay.info("b").unwrap());
    assert!(!a.live);
    assert_eq!(a.frames, 0, "the bad frame was not counted");
    assert!(b.live);
    assert_eq!(b.frames, 4);
}

#[tokio::test(start_paused = true)]
async fn max_streams_limit_refuses_with_too_many_streams() {
    let relay = start(RelayConfig {
        hub: HubConfig {
            max_streams: 2,
            max_waiting_streams: 1,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut first = relay.publisher("s1").await;
    let _second = relay.publisher("s2").await;
    // A third publisher is refused; a viewer waiting on a new name is counted apart
    // (max_waiting_streams), so it is let in, and only a second waiting name is refused.
    let (mut waiting, _) = ws_connect(relay.ws("/ws/watch/s4")).await.unwrap();
    let hello = next_control(&mut waiting).await.expect("hello");
    assert_eq!(
        (hello["type"].as_str(), hello["live"].as_bool()),
        (Some("hello"), Some(false))
    );
    for (path, limit) in [("/ws/publish/s3", '2'), ("/ws/watch/s5", '1')] {
        let (mut ws, _) = ws_connect(relay.ws(path)).await.unwrap();
        let err = next_control(&mut ws).await.expect("an error message");
        assert_eq!(err["type"], "error", "{path}: {err}");
        assert_eq!(err["code"], "too_many_streams", "{path}: {err}");
        assert!(err["message"].as_str().unwrap().contains(limit), "{err}");
        assert_eq!(next_close(&mut ws).await.map(|c| c.0), Some(4429), "{path}");
    }
    let mut names: Vec<String> = relay.hub.streams().into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, ["s1", "s2", "s4"], "refusals leave no stream behind");
    // A stream that ends frees its slot.
    first.close(None).await.unwrap();
    relay
        .wait_until("s1 is removed", |hub| hub.streams().len() == 2)
        .await;
    let _third = relay.publisher("s3").await;
    assert!(relay.info("s3").unwrap().live);
}

#[tokio::test(start_paused = true)]
async fn slow_viewer_drops_frames_while_a_prompt_one_gets_them_all() {
    let relay = start(RelayConfig {
        stall_timeout: NEVER,
        ping_interval: NEVER,
        ..Default::default()
    })
    .await;
    let slow: RawWs = raw_ws(relay.port(), "/ws/watch/sv").await;
    let slow_port = slow.tcp.local_addr().unwrap().port();
    let mut prompt = relay.viewer("sv").await;
    let mut publisher = relay.publisher("sv").await;
    // Each frame waits for the prompt viewer, which must see every sequence number.
    let mut watch = StuckWatch::default();
    let mut seq = 0;
    loop {
        assert!(seq < 400, "the slow viewer never fell behind");
        publisher
            .send(Message::Binary(jpeg_frame_message(seq, BIG)))
            .await
            .unwrap();
        assert_eq!(next_seq(&mut prompt).await, Some(seq));
        seq += 1;
        let info = relay.info("sv").unwrap();
        if watch.stuck(viewer_at(&info, slow_port).expect("the slow viewer is listed")) {
            break;
        }
    }
    let info = relay.info("sv").unwrap();
    assert_eq!(info.viewers, 2, "the slow viewer stays connected");
    let slow_stats = viewer_at(&info, slow_port).unwrap();
    // Stuck for ten frames, it will skip all but the newest beyond its queue of 4.
    assert!(slow_stats.dropped >= 5, "{slow_stats:?}");
    assert!(
        slow_stats.frames_sent + slow_stats.dropped <= seq,
        "{slow_stats:?}"
    );
    let prompt_stats = info
        .viewer_details
        .iter()
        .find(|v| v.id != slow_stats.id)
        .unwrap();
    assert_eq!(prompt_stats.dropped, 0);
    assert_eq!(prompt_stats.frames_sent, seq);
    assert_eq!(info.frames, seq);
    drop(slow);
}

#[tokio::test(start_paused = true)]
async fn healthz_and_api_streams_json_shape() {
    let relay = start(RelayConfig::default()).await;
    let (status, head, body) = http_get(relay.port(), "/healthz", &[]).await;
    assert_eq!(status, 200);
    assert!(head.to_lowercase().contains("content-type: text/plain"));
    assert_eq!(body, b"ok\n");
    let (_, _, body) = http_get(relay.port(), "/api/streams", &[]).await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({ "streams": [] })
    );

    let mut publisher = relay.publisher("cam").await;
    let publisher_port = match publisher.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.local_addr().unwrap().port(),
        _ => unreachable!("plain ws://"),
    };
    let mut viewer = relay.viewer("cam").await;
    // jpeg_frame_message makes 16x8 frames.
    publisher
        .send(Message::Binary(jpeg_frame_message(7, 500)))
        .await
        .unwrap();
    assert_eq!(next_seq(&mut viewer).await, Some(7));
    relay
        .wait_until("the frame is counted as sent", |hub| {
            hub.streams()[0].viewer_details[0].frames_sent == 1
        })
        .await;

    let (status, head, body) = http_get(relay.port(), "/api/streams", &[]).await;
    assert_eq!(status, 200);
    assert!(head
        .to_lowercase()
        .contains("content-type: application/json"));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let streams = json["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{json}");
    let cam = &streams[0];
    assert_eq!(cam["name"], "cam");
    assert_eq!(cam["live"], true);
    assert_eq!(
        cam["publisher"]["addr"],
        format!("127.0.0.1:{publisher_port}")
    );
    assert!(cam["publisher"]["connected_unix_ms"].as_u64().unwrap() > 0);
    assert_eq!(
        (cam["width"].as_u64(), cam["height"].as_u64()),
        (Some(16), Some(8))
    );
    assert_eq!(cam["frames"], 1);
    assert_eq!(cam["bytes"], 500);
    assert_eq!(cam["last_sequence"], 7);
    assert!(cam["fps"].is_number() && cam["bitrate_kbps"].is_number());
    assert!(cam["created_unix_ms"].as_u64().unwrap() > 0);
    assert_eq!(cam["viewers"], 1);
    let v = &cam["viewer_details"][0];
    assert_eq!(v["kind"], "ws");
    assert!(v["id"].is_u64());
    assert!(v["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(v["frames_sent"], 1);
    assert_eq!(v["bytes_sent"], (500 + HEADER_LEN + 4) as u64, "{v}");
    assert_eq!(v["dropped"], 0);

    let (status, _, body) = http_get(relay.port(), "/api/streams/cam", &[]).await;
    assert_eq!(status, 200);
    let one: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(one["name"], "cam");
    assert_eq!(one["viewers"], 1);
    let (status, _, body) = http_get(relay.port(), "/api/streams/nothing", &[]).await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("no stream \"nothing\""));
    let (status, _, _) = http_get(relay.port(), "/no/such/page", &[]).await;
    assert_eq!(status, 404);
}

/// Reads from `tcp` into `buf` until it holds `parts` complete MJPEG parts; returns
/// the JPEG bodies (`buf` starts with the HTTP head).
async fn mjpeg_parts(
    tcp: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
    parts: usize,
) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let found = common::multipart_jpegs(buf, "vswaframe");
        if found.len() >= parts {
            return found;
        }
        let mut chunk = [0u8; 65536];
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut chunk))
            .await
            .expect("MJPEG parts in time")
            .unwrap();
        assert!(n > 0, "the relay ended the MJPEG response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(start_paused = true)]
async fn mjpeg_first_part_is_the_latest_frame_and_snapshot_matches() {
    let relay = start(RelayConfig::default()).await;
    let mut publisher = relay.publisher("mj").await;
    let first = jpeg_frame_message(3, 2000);
    publisher
        .send(Message::Binary(first.clone()))
        .await
        .unwrap();
    relay
        .wait_until("the relay has frame 3", |hub| {
            hub.stream(&StreamName::new("mj").unwrap())
                .is_some_and(|s| s.info().last_sequence == Some(3))
        })
        .await;
    let mut tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    // HTTP/1.0 keeps the body free of chunked framing.
    tcp.write_all(b"GET /stream/mj.mjpg HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let parts = mjpeg_parts(&mut tcp, &mut buf, 1).await;
    let head = String::from_utf8_lossy(&buf[..buf.len().min(300)]).to_lowercase();
    assert!(
        head.starts_with("http/1.") && head.contains(" 200 "),
        "{head}"
    );
    assert!(
        head.contains("content-type: multipart/x-mixed-replace; boundary=vswaframe"),
        "{head}"
    );
    assert_eq!(parts[0], first[HEADER_LEN..], "the stored frame, at once");
    let info = relay.info("mj").unwrap();
    assert_eq!(
        info.viewer_details[0].kind,
        vswa_relay::hub::ViewerKind::Mjpeg
    );
    // The next frame becomes the next part, and the snapshot.
    let mut second = jpeg_frame_message(4, 3000).to_vec();
    second[HEADER_LEN + 100] = 0x42;
    publisher
        .send(Message::Binary(Bytes::from(second.clone())))
        .await
        .unwrap();
    let parts = mjpeg_parts(&mut tcp, &mut buf, 2).await;
    assert_eq!(parts[1], second[HEADER_LEN..]);
    let (status, head, body) = http_get(relay.port(), "/snapshot/mj.jpg", &[]).await;
    assert_eq!(status, 200);
    assert!(head.to_lowercase().contains("content-type: image/jpeg"));
    assert_eq!(body, second[HEADER_LEN..]);
}

#[tokio::test(start_paused = true)]
async fn mjpeg_viewer_that_never_reads_is_disconnected_after_stall_timeout() {
    let relay = start(RelayConfig {
        stall_timeout: secs(2.0),
        ..Default::default()
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    tcp.write_all(b"GET /stream/ms.mjpg HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut publisher = relay.publisher("ms").await;
    relay
        .wait_until("the MJPEG viewer is registered", |hub| {
            hub.stream(&StreamName::new("ms").unwrap())
                .is_some_and(|s| s.info().viewers == 1)
        })
        .await;
    let mut gone = false;
    for seq in 0..600 {
        publisher
            .send(Message::Binary(jpeg_frame_message(seq, BIG)))
            .await
            .unwrap();
        tokio::time::sleep(secs(0.05)).await;
        if relay.info("ms").unwrap().viewers == 0 {
            gone = true;
            break;
        }
    }
    let dropped = relay
        .info("ms")
        .map_or(0, |i| i.viewer_details.first().map_or(0, |v| v.dropped));
    assert!(
        gone,
        "the stalled MJPEG viewer was still connected after 30 s ({dropped} frames skipped)"
    );
}

/// Opens a TCP connection to `addr` with a tiny receive buffer, so a client that never
/// reads stops the relay's writes after a few kilobytes.
async fn tiny_window(addr: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Issue 16: with `max_streams` 10, 50 anonymous idle sockets watching made-up names
/// (WebSocket and MJPEG) do not stop a token-holding publisher from publishing on a new
/// stream; waiting viewers count against `max_waiting_streams`, not `max_streams`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_name_viewers_do_not_lock_out_a_publisher() {
    let relay = start(RelayConfig {
        publish_token: Some("pub-secret".into()),
        hub: HubConfig {
            max_streams: 10,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut idle = Vec::new();
    for i in 0..50 {
        if i % 2 == 0 {
            idle.push(relay.viewer(&format!("junk{i}")).await);
        } else {
            let mut tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
            tcp.write_all(format!("GET /stream/junk{i}.mjpg HTTP/1.0\r\n\r\n").as_bytes())
                .await
                .unwrap();
            idle_tcp_hold(tcp);
        }
    }
    relay
        .wait_until("50 waiting streams", |hub| hub.streams().len() == 50)
        .await;
    let (mut ws, _) = ws_connect(relay.ws("/ws/publish/real?token=pub-secret"))
        .await
        .unwrap();
    let hello = next_control(&mut ws).await.expect("a reply");
    assert_eq!(hello["type"], "hello", "the publisher was refused: {hello}");
    assert!(relay.info("real").unwrap().live);
    drop(idle);
}

/// Keeps an idle socket open until the test's runtime ends.
fn idle_tcp_hold(tcp: tokio::net::TcpStream) {
    tokio::spawn(async move {
        let _tcp = tcp;
        std::future::pending::<()>().await;
    });
}

/// Issue 16: an MJPEG client and a ping-flooding WebSocket viewer that never read are
/// both disconnected within `stall_timeout` + 2 s (every write to a peer has that
/// deadline, pongs included). Real time: the deadline under test is wall-clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_reading_mjpeg_and_ping_flooding_viewers_are_disconnected_in_time() {
    let stall = secs(2.0);
    let relay = start(RelayConfig {
        stall_timeout: stall,
        ping_interval: NEVER,
        ..Default::default()
    })
    .await;
    let mut publisher = relay.publisher("live").await;
    let mut mjpeg = tiny_window(relay.addr).await;
    mjpeg
        .write_all(b"GET /stream/live.mjpg HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    // The flooder watches a stream with no publisher, so no frame write catches it.
    let mut flood = tiny_window(relay.addr).await;
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    flood
        .write_all(
            format!(
                "GET /ws/watch/quiet HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    relay
        .wait_until("both viewers are registered", |hub| {
            let count = |n: &str| {
                hub.stream(&StreamName::new(n).unwrap())
                    .map_or(0, |s| s.info().viewers)
            };
            count("live") == 1 && count("quiet") == 1
        })
        .await;
    let started = Instant::now();
    let mut ping = bytes::BytesMut::new();
    vswa_protocol::websocket::put_client_header(&mut ping, 0x9, 125);
    ping.extend_from_slice(&[b'p'; 125]);
    let mut seq = 0;
    let gone = |relay: &Running, n: &str| {
        relay
            .hub
            .stream(&StreamName::new(n).unwrap())
            .is_none_or(|s| s.info().viewers == 0)
    };
    while !(gone(&relay, "live") && gone(&relay, "quiet")) {
        assert!(
            started.elapsed() < stall + secs(2.0),
            "still connected after {:?}: mjpeg {}, flooder {}",
            started.elapsed(),
            !gone(&relay, "live"),
            !gone(&relay, "quiet")
        );
        publisher
            .send(Message::Binary(jpeg_frame_message(seq, BIG)))
            .await
            .unwrap();
        seq += 1;
        // Pings as fast as the relay takes them (loopback send buffers autotune to
        // megabytes, so it takes many pongs to fill the relay's); a full socket just
        // ends the round.
        for _ in 0..10_000 {
            if flood.try_write(&ping).is_err() {
                break;
            }
        }
        tokio::time::sleep(secs(0.02)).await;
    }
}

/// Issue 16: a viewer of a stream that never gets a publisher is closed after
/// `end_grace`, with a close reason saying so.
#[tokio::test(start_paused = true)]
async fn viewer_of_a_stream_that_never_gets_a_publisher_is_closed_after_end_grace() {
    let relay = start(RelayConfig {
        end_grace: secs(5.0),
        ping_interval: NEVER,
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    let (mut ws, hello) = relay.connect("/ws/watch/nobody").await;
    assert_eq!(hello["live"], false);
    let close = next_close(&mut ws).await.expect("a close frame");
    assert_eq!(close, (1000, "no publisher came".to_string()));
    let waited = started.elapsed();
    assert!(waited >= secs(5.0) && waited < secs(5.5), "{waited:?}");
    relay
        .wait_until("the waiting stream is removed", |hub| {
            hub.streams().is_empty()
        })
        .await;
}

/// Clock sync (PROTOCOL.md, "Clock synchronisation"): the relay answers `time`
/// requests from publishers and viewers with `t0` echoed and its own `t1 <= t2`, and
/// forwards the publisher's `clock` to viewers: right after `hello` to one that joins
/// later, and to everyone when it moves by more than 1 ms (not for smaller changes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_answers_time_and_forwards_the_publishers_clock() {
    let relay = start(RelayConfig {
        ping_interval: NEVER,
        ..Default::default()
    })
    .await;
    let now = || vswa_protocol::timestamp_us(std::time::SystemTime::now());
    let mut publisher = relay.publisher("clk").await;
    let mut early = relay.viewer("clk").await;
    for ws in [&mut publisher, &mut early] {
        let t0 = now();
        ws.send(Message::Text(
            format!("{{\"type\":\"time\",\"t0\":{t0}}}").into(),
        ))
        .await
        .unwrap();
        let answer = loop {
            let msg = next_control(ws).await.expect("a time answer");
            if msg["type"] == "time" {
                break msg;
            }
        };
        assert_eq!(answer["t0"].as_u64(), Some(t0), "{answer}");
        let (t1, t2) = (
            answer["t1"].as_u64().unwrap(),
            answer["t2"].as_u64().unwrap(),
        );
        assert!(t1 <= t2 && t1 >= t0 && t2 <= now(), "{answer}");
    }
    let clock = |offset: i64| {
        Message::Text(
            format!("{{\"type\":\"clock\",\"publisher_offset_us\":{offset},\"rtt_us\":400}}")
                .into(),
        )
    };
    publisher.send(clock(2_000_000)).await.unwrap();
    assert_eq!(next_clock(&mut early).await, Some(2_000_000));
    // A late viewer gets the current clock right after hello.
    let mut late = relay.viewer("clk").await;
    assert_eq!(next_clock(&mut late).await, Some(2_000_000));
    // 0.5 ms of change is not forwarded; 5 ms is.
    publisher.send(clock(2_000_500)).await.unwrap();
    publisher.send(clock(2_005_000)).await.unwrap();
    assert_eq!(next_clock(&mut early).await, Some(2_005_000));
    assert_eq!(next_clock(&mut late).await, Some(2_005_000));
}

/// The next `clock` message's offset, skipping other control messages.
async fn next_clock(ws: &mut Ws) -> Option<i64> {
    loop {
        let msg = next_control(ws).await?;
        if msg["type"] == "clock" {
            return msg["publisher_offset_us"].as_i64();
        }
    }
}

/// Issue 16: browsers ask for `/favicon.ico`; it is an icon, not a 404 in every log.
#[tokio::test]
async fn favicon_is_served() {
    let relay = start(RelayConfig::default()).await;
    let (status, head, body) = http_get(relay.port(), "/favicon.ico", &[]).await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_lowercase().contains("content-type: image/x-icon"),
        "{head}"
    );
    assert_eq!(&body[..4], &[0, 0, 1, 0], "an ICO header");
}

/// Issue 16: a request head over 64 KiB gets 431 even when it arrives in one burst
/// (below hyper's read buffer, so only the relay's own check can catch it).
#[tokio::test]
async fn request_head_over_64_kib_is_431_however_it_arrives() {
    let relay = start(RelayConfig::default()).await;
    for (label, headers) in [
        (
            "one 100 KB header",
            vec![format!("X-Big: {}", "a".repeat(100 * 1024))],
        ),
        (
            "many small headers",
            (0..90)
                .map(|i| format!("X-H{i}: {}", "b".repeat(1000)))
                .collect(),
        ),
    ] {
        let mut req = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for h in &headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        let mut tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(LIMIT, tcp.read_to_end(&mut buf)).await;
        let head = String::from_utf8_lossy(&buf);
        assert!(
            head.starts_with("HTTP/1.1 431"),
            "{label}: expected 431, got {}",
            head.lines().next().unwrap_or("nothing")
        );
    }
    assert_eq!(http_get(relay.port(), "/healthz", &[]).await.0, 200);
}

/// An H.264 frame message with a synthetic Annex B payload: a keyframe every `gop`.
fn h264_message(seq: u64, gop: u64) -> Bytes {
    let key = seq % gop == 0;
    let nal = if key { 0x65 } else { 0x41 };
    let header = vswa_protocol::FrameHeader::h264(seq, 1_000 + seq, 16, 16, key);
    Frame::new(header, Bytes::from(vec![0, 0, 0, 1, nal, seq as u8])).to_bytes()
}

/// Issue 14: a viewer joining an H.264 stream mid-GOP receives the keyframe first (then
/// the rest of the GOP in order); MJPEG of an H.264 stream is a clear 415; a payload
/// without an Annex B start code is refused.
#[tokio::test]
async fn h264_late_joiner_gets_a_keyframe_first_and_mjpeg_is_415() {
    let relay = start(RelayConfig {
        ping_interval: NEVER,
        ..Default::default()
    })
    .await;
    let mut publisher = relay.publisher("h").await;
    for seq in 0..15 {
        publisher
            .send(Message::Binary(h264_message(seq, 10)))
            .await
            .unwrap();
    }
    relay
        .wait_until("15 frames are in", |hub| {
            hub.stream(&StreamName::new("h").unwrap())
                .is_some_and(|s| s.info().last_sequence == Some(14))
        })
        .await;
    let mut late = relay.viewer("h").await;
    let mut seqs = Vec::new();
    for _ in 0..5 {
        let seq = next_seq(&mut late).await.expect("a frame");
        seqs.push(seq);
    }
    assert_eq!(
        seqs,
        [10, 11, 12, 13, 14],
        "starts at the keyframe, in order"
    );
    let info = relay.info("h").unwrap();
    assert_eq!(info.codec, "h264");
    let (status, _, body) = http_get(relay.port(), "/stream/h.mjpg", &[]).await;
    assert_eq!(status, 415);
    assert!(String::from_utf8_lossy(&body).contains("H.264"), "{body:?}");
    // Codec 2 needs an Annex B start code.
    let mut bad = relay.publisher("bad").await;
    let header = vswa_protocol::FrameHeader::h264(0, 1, 16, 16, true);
    bad.send(Message::Binary(
        Frame::new(header, Bytes::from_static(b"\xff\xd8no")).to_bytes(),
    ))
    .await
    .unwrap();
    let err = next_error(&mut bad).await.expect("an error");
    assert_eq!(err["code"], "invalid_frame", "{err}");
}

/// Issue 14: a publisher that must drop an H.264 frame (its queue is full) drops the
/// delta frames after it too, asks for a keyframe, and resumes at the next keyframe, so
/// what reaches the relay always decodes.
#[tokio::test]
async fn publisher_drops_h264_to_the_next_keyframe_and_asks_for_one() {
    let relay = start(RelayConfig {
        ping_interval: NEVER,
        ..Default::default()
    })
    .await;
    let mut sub = Subscriber::connect(SubscriberConfig::new(relay.ws("/ws/watch/gop")))
        .await
        .unwrap();
    let publisher = Publisher::connect(PublisherConfig {
        queue: 1,
        ..PublisherConfig::new(relay.ws("/ws/publish/gop"))
    })
    .await
    .unwrap();
    // Stamped now: the relay's latency ceiling drops frames captured long ago.
    let h264 = |seq: u64| {
        let mut header = *Frame::decode_bytes(h264_message(seq, 10), u32::MAX)
            .unwrap()
            .header();
        header.timestamp_us = vswa_protocol::timestamp_us(std::time::SystemTime::now());
        let nal = if seq % 10 == 0 { 0x65 } else { 0x41 };
        Frame::new(header, Bytes::from(vec![0, 0, 0, 1, nal, seq as u8]))
    };
    // This test runs on one thread: the send task cannot take anything from the queue
    // of one until this loop yields, so frame 0 is queued and 1..=15 are dropped (1
    // for room, the deltas after it as undecodable, 10 for room again).
    for seq in 0..16 {
        assert_eq!(publisher.try_send(h264(seq)), seq == 0, "frame {seq}");
    }
    assert!(publisher.take_keyframe_request(), "a keyframe is asked for");
    assert!(!publisher.take_keyframe_request(), "once");
    relay
        .wait_until("frame 0 is in", |hub| {
            hub.stream(&StreamName::new("gop").unwrap())
                .is_some_and(|s| s.info().last_sequence == Some(0))
        })
        .await;
    // The queue has room again, but delta frames stay useless until a keyframe.
    assert!(!publisher.try_send(h264(16)));
    for seq in 20..23 {
        assert!(publisher.try_send(h264(seq)), "frame {seq}");
        tokio::task::yield_now().await;
        relay
            .wait_until("the frame is in", |hub| {
                hub.stream(&StreamName::new("gop").unwrap())
                    .is_some_and(|s| s.info().last_sequence == Some(seq))
            })
            .await;
    }
    let mut seqs = Vec::new();
    while seqs.len() < 4 {
        let event = tokio::time::timeout(secs(5.0), sub.next()).await;
        let event = event.unwrap_or_else(|_| panic!("only {seqs:?}")).unwrap();
        match event {
            vswa_client::SubscriberEvent::Frame { frame, .. } => seqs.push(frame.header().sequence),
            vswa_client::SubscriberEvent::Hello(_) => {}
            other => panic!("expected a frame, got {other:?}"),
        }
    }
    assert_eq!(
        seqs,
        [0, 20, 21, 22],
        "from frame 0 straight to keyframe 20"
    );
    let stats = publisher.finish().await.unwrap();
    assert_eq!((stats.sent, stats.dropped), (4, 16));
}

/// Issue 14: `/snapshot` of an H.264 stream decodes its latest keyframe to JPEG (feature
/// `h264`), or says 415 in a relay built without it.
#[tokio::test]
async fn h264_snapshot_is_the_latest_keyframe_as_jpeg_or_415() {
    let relay = start(RelayConfig::default()).await;
    let mut publisher = relay.publisher("hs").await;
    #[cfg(feature = "h264")]
    {
        use vswa_codec::{H264Encoder, H264Options, Image, PixelFormat};
        let (w, h) = (64u32, 48u32);
        let mut encoder = H264Encoder::new(w, h, &H264Options::default()).unwrap();
        let picture =
            Image::new(PixelFormat::Rgb8, w, h, vec![120u8; (w * h * 3) as usize]).unwrap();
        let mut seq = 0;
        while seq < 3 {
            let Some(au) = encoder.encode(&picture).unwrap() else {
                continue;
            };
            let header = vswa_protocol::FrameHeader::h264(seq, 1_000, 64, 48, au.keyframe);
            publisher
                .send(Message::Binary(Frame::new(header, au.data).to_bytes()))
                .await
                .unwrap();
            seq += 1;
        }
        relay
            .wait_until("3 frames are in", |hub| {
                hub.stream(&StreamName::new("hs").unwrap())
                    .is_some_and(|s| s.info().last_sequence == Some(2))
            })
            .await;
        let (status, head, body) = http_get(relay.port(), "/snapshot/hs.jpg", &[]).await;
        assert_eq!(status, 200, "{head}");
        let decoded = vswa_codec::decode(&body).expect("a JPEG");
        assert_eq!((decoded.width, decoded.height), (64, 48));
    }
    #[cfg(not(feature = "h264"))]
    {
        publisher
            .send(Message::Binary(h264_message(0, 10)))
            .await
            .unwrap();
        relay
            .wait_until("a frame is in", |hub| {
                hub.stream(&StreamName::new("hs").unwrap())
                    .is_some_and(|s| s.info().last_sequence == Some(0))
            })
            .await;
        let (status, _, body) = http_get(relay.port(), "/snapshot/hs.jpg", &[]).await;
        assert_eq!(status, 415);
        assert!(String::from_utf8_lossy(&body).contains("h264"), "{body:?}");
    }
}

/// Issue 12: the latency ceiling. Once the publisher has reported its clock, a frame
/// captured longer than `max_latency` ago (on the relay's clock) is never written to a
/// viewer: it counts as dropped and `late`, and fresh frames still flow; written frames
/// land in the viewer's lag buckets.
#[tokio::test]
async fn frames_older_than_max_latency_are_never_written() {
    let relay = start(RelayConfig {
        max_latency: secs(0.5),
        ping_interval: NEVER,
        ..Default::default()
    })
    .await;
    let mut publisher = relay.publisher("lat").await;
    let mut viewer = relay.viewer("lat").await;
    // An MJPEG viewer too: the ceiling holds for every kind of viewer.
    let mut mjpeg = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    mjpeg
        .write_all(b"GET /stream/lat.mjpg HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    relay
        .wait_until("two viewers", |hub| {
            hub.stream(&StreamName::new("lat").unwrap())
                .is_some_and(|s| s.info().viewers == 2)
        })
        .await;
    // The publisher's clock runs 10 s behind the relay's and says so.
    let offset: i64 = 10_000_000;
    publisher
        .send(Message::Text(
            format!("{{\"type\":\"clock\",\"publisher_offset_us\":{offset},\"rtt_us\":100}}")
                .into(),
        ))
        .await
        .unwrap();
    let now_pub = || vswa_protocol::timestamp_us(std::time::SystemTime::now()) - offset as u64;
    // Each payload carries its sequence number, to tell MJPEG parts apart.
    let frame = |seq: u64, ts: u64| {
        let header = vswa_protocol::FrameHeader::jpeg(seq, ts, 4, 4);
        Frame::new(header, Bytes::from(vec![0xff, 0xd8, seq as u8, 0xff, 0xd9])).to_bytes()
    };
    // 0: fresh. 1: captured 2 s ago. 2: fresh again.
    for (seq, ts) in [(0, now_pub()), (1, now_pub() - 2_000_000), (2, now_pub())] {
        publisher
            .send(Message::Binary(frame(seq, ts)))
            .await
            .unwrap();
        // Let each arrive on its own, so "late" is about age, not about queueing.
        relay
            .wait_until("the frame is in", |hub| {
                hub.stream(&StreamName::new("lat").unwrap())
                    .is_some_and(|s| s.info().last_sequence == Some(seq))
            })
            .await;
    }
    assert_eq!(next_seq(&mut viewer).await, Some(0));
    assert_eq!(
        next_seq(&mut viewer).await,
        Some(2),
        "the 2 s old frame is skipped"
    );
    let mut buf = Vec::new();
    let parts = mjpeg_parts(&mut mjpeg, &mut buf, 2).await;
    let seqs: Vec<u8> = parts.iter().map(|p| p[2]).collect();
    assert_eq!(seqs, [0, 2], "MJPEG: the 2 s old frame is skipped too");
    let info = relay.info("lat").unwrap();
    for v in &info.viewer_details {
        assert_eq!((v.late, v.frames_sent), (1, 2), "{v:?}");
        assert_eq!(v.lag.lt_50ms + v.lag.lt_100ms + v.lag.lt_250ms, 2, "{v:?}");
    }
}

/// Issue 16: WebSocket protocol violations (RFC 6455) close with 1002, on both routes,
/// not with 1000 "bye"; a frame over the viewer's read limit closes with 1009.
#[tokio::test]
async fn protocol_violations_close_with_1002_on_both_routes() {
    use common::{client_frame, client_frame_header};
    let relay = start(RelayConfig {
        ping_interval: NEVER,
        ..Default::default()
    })
    .await;
    let unmasked = vec![0x81, 0x02, b'h', b'i'];
    let mut rsv = client_frame(0x1, b"{}");
    rsv[0] |= 0x40;
    let mut fragmented_ping = client_frame(0x9, b"x");
    fragmented_ping[0] &= 0x7f;
    let mut long_ping = client_frame_header(0x9, 126);
    long_ping.extend_from_slice(&[0u8; 126]);
    let mut text_inside_fragment = client_frame(0x2, b"a");
    text_inside_fragment[0] &= 0x7f;
    text_inside_fragment.extend_from_slice(&client_frame(0x1, b"{}"));
    let cases: &[(&str, Vec<u8>)] = &[
        ("unmasked frame", unmasked),
        ("RSV1 set", rsv),
        ("reserved data opcode 0x3", client_frame(0x3, b"x")),
        ("reserved control opcode 0xB", client_frame(0xB, b"")),
        ("fragmented ping", fragmented_ping),
        ("126-byte ping", long_ping),
        ("close code 1005", client_frame(0x8, &1005u16.to_be_bytes())),
        ("close code 999", client_frame(0x8, &999u16.to_be_bytes())),
        ("one-byte close", client_frame(0x8, &[3])),
        ("continuation without a message", client_frame(0x0, b"x")),
        ("new message inside a fragmented one", text_inside_fragment),
    ];
    for route in ["/ws/watch/pv", "/ws/publish/pv"] {
        for (what, bytes) in cases {
            let mut ws = raw_ws(relay.port(), route).await;
            assert!(ws.next_control("hello", LIMIT).await.is_some(), "{route}");
            ws.tcp.write_all(bytes).await.unwrap();
            assert_eq!(
                ws.close_code(LIMIT).await,
                Some(1002),
                "{route}: {what} should close with 1002"
            );
        }
    }
    // A well-formed close still gets a normal close back.
    let mut ws = raw_ws(relay.port(), "/ws/watch/pv").await;
    ws.tcp
        .write_all(&client_frame(0x8, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    assert_eq!(ws.close_code(LIMIT).await, Some(1000));
    // A viewer frame over the relay's 64 KiB read limit is "too big", 1009.
    let mut ws = raw_ws(relay.port(), "/ws/watch/pv").await;
    ws.tcp
        .write_all(&client_frame_header(0x1, 1 << 20))
        .await
        .unwrap();
    assert_eq!(ws.close_code(LIMIT).await, Some(1009));
}

/// Issue 16: `/ws/watch` refuses what `/ws/publish` refuses: no `Connection: Upgrade`,
/// `HEAD`, a key that is not 16 bytes of base64, a wrong version; each a 400 that says
/// what is wrong.
#[tokio::test]
async fn both_websocket_routes_refuse_a_bad_handshake_with_400() {
    let relay = start(RelayConfig::default()).await;
    let good: Vec<(&str, &str)> = UPGRADE.to_vec();
    let without = |name: &str| -> Vec<(&str, &str)> {
        good.iter().copied().filter(|(n, _)| *n != name).collect()
    };
    let with = |name: &'static str, value: &'static str| -> Vec<(&str, &str)> {
        let mut h = without(name);
        h.push((name, value));
        h
    };
    type Headers<'a> = Vec<(&'a str, &'a str)>;
    // (method, what is wrong, headers, what the answer says)
    let cases: Vec<(&str, &str, Headers<'_>, &str)> = vec![
        (
            "GET",
            "no Connection header",
            without("Connection"),
            "Connection: Upgrade",
        ),
        (
            "GET",
            "Connection: keep-alive",
            with("Connection", "keep-alive"),
            "Connection: Upgrade",
        ),
        (
            "GET",
            "short key",
            with("Sec-WebSocket-Key", "c2hvcnQ="),
            "16 bytes",
        ),
        (
            "GET",
            "key not base64",
            with("Sec-WebSocket-Key", "!!!!!!!!!!!!!!!!!!!!!!=="),
            "16 bytes",
        ),
        ("GET", "no key", without("Sec-WebSocket-Key"), "16 bytes"),
        (
            "GET",
            "version 8",
            with("Sec-WebSocket-Version", "8"),
            "version 13",
        ),
        (
            "GET",
            "no Upgrade header",
            without("Upgrade"),
            "Upgrade: websocket",
        ),
        ("HEAD", "HEAD", good.clone(), ""),
    ];
    for path in ["/ws/watch/hs", "/ws/publish/hs"] {
        for (method, what, headers, says) in &cases {
            let mut tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
            let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n");
            for (n, v) in headers {
                req.push_str(&format!("{n}: {v}\r\n"));
            }
            req.push_str("\r\n");
            tcp.write_all(req.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(secs(5.0), async {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = tcp.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    answer.extend_from_slice(&chunk[..n]);
                    if String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
                        // Head and (for GET) the one-line body.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if let Ok(Ok(n)) =
                            tokio::time::timeout(Duration::from_millis(50), tcp.read(&mut chunk))
                                .await
                        {
                            answer.extend_from_slice(&chunk[..n]);
                        }
                        break;
                    }
                }
            })
            .await;
            let answer = String::from_utf8_lossy(&answer).into_owned();
            assert!(
                answer.starts_with("HTTP/1.1 400"),
                "{method} {path} with {what}: {answer}"
            );
            assert!(
                answer.contains(says),
                "{method} {path} with {what}: {answer}"
            );
        }
    }
    // The good handshake still upgrades on both.
    for path in ["/ws/watch/hs", "/ws/publish/hs"] {
        let mut ws = raw_ws(relay.port(), path).await;
        assert!(ws.next_control("hello", LIMIT).await.is_some(), "{path}");
    }
}

/// Issue 16: a viewer whose socket takes nothing for `stall_timeout` gets the rest of
/// the frame it was cut off in, `error` `stalled` and close 4408, when its socket
/// takes them within a second; the relay drops it otherwise (the test above).
#[tokio::test(start_paused = true)]
async fn stalled_viewer_that_reads_again_gets_stalled_and_4408() {
    let stall = secs(2.0);
    let relay = start(RelayConfig {
        stall_timeout: stall,
        ping_interval: NEVER,
        max_latency: Duration::ZERO,
        ..Default::default()
    })
    .await;
    // A normal receive window: when the viewer reads again, what the kernels buffered
    // comes in large reads, well inside the relay's last second.
    let mut tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let mut req = String::from("GET /ws/watch/sv HTTP/1.1\r\nHost: x\r\n");
    for (n, v) in UPGRADE {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    // The response head, a byte at a time, so nothing after it is consumed here.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(tcp.read(&mut b).await.unwrap(), 1);
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let mut viewer = tokio_tungstenite::WebSocketStream::from_raw_socket(
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
        tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    let mut publisher = relay.publisher("sv").await;
    relay
        .wait_until("the viewer is registered", |_| {
            relay
                .info("sv")
                .is_some_and(|i| viewer_at(&i, port).is_some())
        })
        .await;
    // Frames at 20 fps until the viewer's write is seen stuck, 0.5–0.55 s after it
    // blocked; then 1.7 s more: past the stall (2 s after blocking) and early in the
    // 1 s the relay then gives the socket.
    let mut watch = StuckWatch::default();
    for seq in 0.. {
        assert!(seq < 600, "the viewer never got stuck");
        publisher
            .send(Message::Binary(jpeg_frame_message(seq, BIG)))
            .await
            .unwrap();
        tokio::time::sleep(secs(0.05)).await;
        let info = relay.info("sv").unwrap();
        if watch.stuck(viewer_at(&info, port).expect("viewer still there")) {
            break;
        }
    }
    tokio::time::sleep(secs(1.7)).await;
    let mut error = None;
    let close = loop {
        match tokio::time::timeout(LIMIT, viewer.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "error" {
                    error = Some(v);
                }
            }
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    };
    let error = error.expect("an error message before the close");
    assert_eq!(error["code"], "stalled", "{error}");
    assert_eq!(close, Some(4408));
}

/// Issue 16: `end` once when a publisher sends END_OF_STREAM and then leaves.
#[tokio::test(start_paused = true)]
async fn end_of_stream_then_close_sends_end_once() {
    let relay = start(RelayConfig {
        ping_interval: NEVER,
        end_grace: secs(5.0),
        ..Default::default()
    })
    .await;
    let mut viewer = relay.viewer("eos").await;
    let mut publisher = relay.publisher("eos").await;
    publisher
        .send(Message::Binary(jpeg_frame_message(0, 100)))
        .await
        .unwrap();
    let mut eos = vswa_protocol::FrameHeader::jpeg(1, 2, 16, 8);
    eos.flags.set(vswa_protocol::Flags::END_OF_STREAM, true);
    publisher
        .send(Message::Binary(Frame::new(eos, Bytes::new()).to_bytes()))
        .await
        .unwrap();
    publisher.close(None).await.unwrap();
    drop(publisher);
    let mut ends = 0;
    loop {
        match tokio::time::timeout(LIMIT, viewer.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Text(t))) if t.as_str().contains("\"end\"") => ends += 1,
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("{e}"),
        }
    }
    assert_eq!(ends, 1, "end was sent {ends} times");
}
