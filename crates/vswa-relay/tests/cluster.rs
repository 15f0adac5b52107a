//! Relays clustered over NATS (issue 13), end to end: real `nats-server` processes
//! (vswa-testkit's `nats` module) and real `vswa-relay`, `vswa-send` and `vswa-recv`
//! processes, all on loopback ports chosen at run time.
//!
//! Each test starts its own NATS server (or 3-node NATS cluster) and relays `A`, `B`,
//! `C` with `--cluster URL --relay-id ID`, is bounded in time, and kills its children on
//! drop; on a failure the tails of the relays', the clients' and the NATS servers' logs
//! are printed. The tests take turns (one lock): each runs several programs that push
//! live video, and the machines have two cores.
//!
//! What the relays put on NATS: frames of stream `NAME` on `vswa.v1.frames.NAME`, the
//! exact VSWA frame bytes, published by the relay that has the publisher; a relay
//! subscribes to that subject only while it has local viewers of `NAME`.
//!
//! Without `nats-server` the tests print why and pass, unless `VSWA_REQUIRE_TOOLS=1`
//! (CI) turns that into a failure. Build first: `cargo build --workspace --all-features
//! --bins && cargo test -p vswa-relay --all-features --test cluster`.

// Some of common's re-exports serve only other test files.
#[allow(unused_imports)]
mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vswa_client::{Subscriber, SubscriberConfig, SubscriberEvent};
use vswa_protocol::control::EndReason;
use vswa_protocol::Frame;
use vswa_testkit::nats::{NatsCluster, NatsServer};
use vswa_testkit::{bin, http_get_body, wait_for, wait_with_limit, Guard, Relay, TempDir};

// ---------------------------------------------------------------------------------------
// limits and shared settings

/// Bound for a program run (a sender's 300 frames at 30 fps take 10 s).
const LIMIT: Duration = Duration::from_secs(60);
/// Relays announce themselves once a second: a remote stream shows up in a directory
/// within a few seconds.
const DIRECTORY_LIMIT: Duration = Duration::from_secs(10);
/// A relay (un)subscribes on NATS when its first viewer comes (its last one left about
/// 2 s ago): how long a test waits to see it on the server.
const SUBSCRIBE_LIMIT: Duration = Duration::from_secs(5);
/// The bound for viewers elsewhere to get `end` after the publishing relay dies (issue
/// 13: 4 s after its last frame); measured here from the SIGKILL, with 0.5 s for timer
/// noise.
const END_AFTER_RELAY_DEATH: Duration = Duration::from_millis(4500);
/// Picture size and rate of the test senders: small, ~10 s for 300 frames.
const SIZE: &str = "320x240";
const FPS: &str = "30";

/// The NATS subject carrying the frames of `stream`.
fn frames_subject(stream: &str) -> String {
    format!("vswa.v1.frames.{stream}")
}

/// One cluster test at a time (see the module docs).
static TURN: Mutex<()> = Mutex::new(());

/// The start of every test: `None` (after printing why) when nats-server is missing
/// and tools are not required; else this test's turn.
fn turn(test: &str) -> Option<MutexGuard<'static, ()>> {
    if !NatsServer::available(test) {
        return None;
    }
    Some(TURN.lock().unwrap_or_else(|e| e.into_inner()))
}

// ---------------------------------------------------------------------------------------
// relays

/// A relay in the cluster, with its id (printed above its log when a test fails).
struct Node {
    id: &'static str,
    relay: Relay,
}

impl std::ops::Deref for Node {
    type Target = Relay;
    fn deref(&self) -> &Relay {
        &self.relay
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The relay's own drop prints its log right after this.
            eprintln!("==== relay {} (port {}) ====", self.id, self.relay.port);
        }
    }
}

/// Starts `vswa-relay --cluster URL --relay-id ID` (viewer queue as in the single-relay
/// 300-frame test) plus `extra`, and waits until `nats` shows a new client connection.
fn relay_on(nats: &NatsServer, id: &'static str, extra: &[&str]) -> Node {
    let url = nats.url();
    let mut args = vec![
        "--cluster",
        url.as_str(),
        "--relay-id",
        id,
        "--viewer-queue",
        "64",
    ];
    args.extend_from_slice(extra);
    connected(nats, id, || Relay::start(&args))
}

/// Runs `start` (which starts relay `id`) and waits until `nats` shows one more client
/// connection than before.
fn connected(nats: &NatsServer, id: &'static str, start: impl FnOnce() -> Relay) -> Node {
    let before = nats.connections();
    let node = Node { id, relay: start() };
    let deadline = Instant::now() + Duration::from_secs(10);
    while nats.connections() <= before {
        assert!(
            Instant::now() < deadline,
            "relay {id} did not connect to NATS {} ({}) within 10 s: it has {} connections \
             ({:?}), {before} before",
            nats.name,
            nats.url(),
            nats.connections(),
            nats.connection_names()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    node
}

/// SIGKILL to a relay, reaped at once: no goodbye to NATS, viewers or publishers.
fn kill_relay(node: &mut Node) {
    let _ = node.relay.child.0.kill();
    let _ = node.relay.child.0.wait();
}

/// `GET path` on a relay, parsed as JSON (`None` unless 200 with JSON).
fn api(relay: &Relay, path: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&http_get_body(relay.addr, path)?).ok()
}

/// The entry of `stream` in a relay's `/api/streams`.
fn listed(relay: &Relay, stream: &str) -> Option<serde_json::Value> {
    api(relay, "/api/streams")?["streams"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == stream)
        .cloned()
}

/// Waits until the relay's directory lists `stream` as live, held by relay `holder`.
fn wait_listed(relay: &Node, stream: &str, holder: &str) -> serde_json::Value {
    wait_for(
        DIRECTORY_LIMIT,
        &format!(
            "/api/streams on relay {} to list {stream} live on relay {holder}",
            relay.id
        ),
        || listed(relay, stream).filter(|s| s["live"] == true && s["relay"] == holder),
    )
}

/// Waits until the relay has at least one local viewer of `stream`.
fn wait_local_viewer(relay: &Node, stream: &str) {
    wait_for(
        Duration::from_secs(30),
        &format!("a viewer of {stream} on relay {}", relay.id),
        || {
            let info = api(relay, &format!("/api/streams/{stream}"))?;
            (info["viewers"].as_u64()? >= 1).then_some(())
        },
    );
}

/// Waits until the frame count of `stream` on the publisher's relay stands still for
/// 1.5 s (an on-demand sender idles).
fn wait_idle(relay: &Node, stream: &str) {
    let frames = || {
        api(relay, &format!("/api/streams/{stream}"))
            .and_then(|i| i["frames"].as_u64())
            .unwrap_or(0)
    };
    wait_for(
        Duration::from_secs(30),
        &format!("the sender of {stream} to idle"),
        || {
            let before = frames();
            std::thread::sleep(Duration::from_millis(1500));
            (before > 0 && frames() == before).then_some(())
        },
    );
}

/// The value of Prometheus metric `name` on a relay (summed over its label sets), or
/// `None` when the relay does not export it.
fn metric(relay: &Relay, name: &str) -> Option<f64> {
    let text = http_get_body(relay.addr, "/metrics")?;
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value: f64 = rest.rsplit(' ').next()?.parse().ok()?;
        *found.get_or_insert(0.0) += value;
    }
    found
}

/// The `vswa_cluster_*` lines of a relay's metrics.
fn cluster_metrics(relay: &Relay) -> Vec<String> {
    http_get_body(relay.addr, "/metrics")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("vswa_cluster"))
        .map(str::to_string)
        .collect()
}

/// The cluster subscription gauge of a relay; panics with the metric list if missing.
fn cluster_subscriptions(relay: &Node) -> f64 {
    metric(relay, "vswa_cluster_subscriptions").unwrap_or_else(|| {
        panic!(
            "relay {} exports no vswa_cluster_subscriptions; its cluster metrics: {:?}",
            relay.id,
            cluster_metrics(relay)
        )
    })
}

// ---------------------------------------------------------------------------------------
// vswa-send and vswa-recv processes

/// A client program whose stderr goes to a file; killed on drop, and the tail of its
/// stderr is printed when a test fails.
struct Proc {
    what: String,
    child: Guard,
    log: PathBuf,
}

impl Proc {
    fn spawn(what: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let file = File::create(&log).expect("create a log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Proc {
            what: what.to_string(),
            child: Guard(child),
            log,
        }
    }

    /// What it has written to stderr so far.
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Still running?
    fn running(&mut self) -> bool {
        matches!(self.child.0.try_wait(), Ok(None))
    }

    /// Waits (at most `limit`) for it to exit.
    fn finish(&mut self, limit: Duration) -> ExitStatus {
        wait_with_limit(&mut self.child.0, limit).unwrap_or_else(|| {
            panic!(
                "{} did not finish within {limit:?}; stderr:\n{}",
                self.what,
                self.stderr()
            )
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.stderr();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- last lines of {}'s stderr ----\n{}",
                self.what,
                lines[lines.len().saturating_sub(20)..].join("\n")
            );
        }
    }
}

/// `vswa-send` of the test pattern ([`SIZE`], [`FPS`]) to `stream` on `relay`, plus
/// `extra` (`--count N` or `--duration S`).
fn send(relay: &Node, stream: &str, extra: &[&str], dir: &TempDir) -> Proc {
    let mut cmd = Command::new(bin("vswa-send"));
    cmd.args(["--url", &relay.publish_url(stream)])
        .args(["--source", "test", "--size", SIZE, "--fps", FPS, "--quiet"])
        .args(extra);
    let what = format!("vswa-send {stream} to relay {}", relay.id);
    Proc::spawn(
        &what,
        cmd,
        dir.join(format!("send-{stream}-{}-{}.log", relay.id, unique())),
    )
}

/// `vswa-recv --count N --record FILE` of `stream` on `relay`. It gives up if the
/// relay goes away for 10 s (so it never outlives a failed test by much).
fn recv(relay: &Node, stream: &str, count: u32, record: &Path, dir: &TempDir) -> Proc {
    let mut cmd = Command::new(bin("vswa-recv"));
    cmd.args(["--url", &relay.watch_url(stream)])
        .args(["--count", &count.to_string()])
        .arg("--record")
        .arg(record)
        .args(["--connect-timeout", "10", "--reconnect-timeout", "10"]);
    let what = format!("vswa-recv {stream} on relay {}", relay.id);
    Proc::spawn(
        &what,
        cmd,
        dir.join(format!("recv-{stream}-{}-{}.log", relay.id, unique())),
    )
}

/// A number for distinct log file names.
fn unique() -> u32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Runs a second `vswa-send` of `stream` to `relay` and asserts it is refused because
/// the stream already has a publisher (exit 3, "stream_busy" or "already has a
/// publisher" on stderr), quickly.
fn assert_busy(relay: &Node, stream: &str) {
    let mut cmd = Command::new(bin("vswa-send"));
    cmd.args(["--url", &relay.publish_url(stream)])
        .args(["--size", "64x48", "--count", "30", "--quiet"])
        .stdin(Stdio::null());
    let started = Instant::now();
    let done = vswa_testkit::run_with_limit(&mut cmd, LIMIT);
    let took = started.elapsed();
    assert_eq!(
        done.status.code(),
        Some(i32::from(vswa_client::exit::REFUSED)),
        "a second publisher of {stream} on relay {} was not refused; its stderr:\n{}",
        relay.id,
        done.stderr
    );
    assert!(
        done.stderr.contains("stream_busy") || done.stderr.contains("already has a publisher"),
        "refused, but not as busy: {}",
        done.stderr
    );
    assert!(took < Duration::from_secs(10), "refusal took {took:?}");
    vswa_testkit::assert_no_panic(&done.stderr);
}

/// Every frame of a recording (a cut-off tail is an error here: the writer finished).
fn read_recording(path: &Path) -> Vec<Frame> {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = vswa_protocol::recording::RecordingReader::new(file).expect("a recording");
    reader
        .collect::<Result<Vec<Frame>, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sequences(frames: &[Frame]) -> Vec<u64> {
    frames.iter().map(|f| f.header().sequence).collect()
}

/// Asserts that `got` (recorded on relay `on`) is `reference` frame for frame: the same
/// sequence numbers, timestamps, header fields and payload bytes.
fn assert_identical(on: &str, got: &[Frame], reference: &[Frame]) {
    let by_seq: BTreeMap<u64, &Frame> =
        reference.iter().map(|f| (f.header().sequence, f)).collect();
    for frame in got {
        let h = frame.header();
        let Some(want) = by_seq.get(&h.sequence) else {
            continue;
        };
        assert_eq!(
            h.timestamp_us,
            want.header().timestamp_us,
            "relay {on}: frame {} has another timestamp than the publisher's",
            h.sequence
        );
        assert_eq!(
            h,
            want.header(),
            "relay {on}: frame {} has another header",
            h.sequence
        );
        assert!(
            frame.payload() == want.payload(),
            "relay {on}: frame {} payload differs ({} vs {} bytes)",
            h.sequence,
            frame.payload().len(),
            want.payload().len()
        );
    }
}

// ---------------------------------------------------------------------------------------
// an in-process viewer that keeps a log of what it saw

/// What a [`Watch`] saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Hello,
    Frame {
        seq: u64,
        gap: u64,
        timestamp_us: u64,
    },
    End(EndReason),
    Reconnecting(String),
    Failed(String),
}

/// A `vswa_client::Subscriber` on its own thread and runtime, recording every event
/// with the instant it arrived, so a synchronous test can wait on conditions while the
/// viewer keeps reading. The same connection throughout: a reconnect shows as
/// [`Seen::Reconnecting`].
struct Watch {
    what: String,
    events: Arc<Mutex<Vec<(Instant, Seen)>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    /// Connects to `stream` on `relay` (waits for the connection).
    fn start(relay: &Node, stream: &str) -> Watch {
        let what = format!("viewer of {stream} on relay {}", relay.id);
        let url = relay.watch_url(stream);
        let events = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let log = events.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            rt.block_on(async move {
                let mut sub = match Subscriber::connect(SubscriberConfig::new(url)).await {
                    Ok(sub) => sub,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let push = |seen: Seen| log.lock().unwrap().push((Instant::now(), seen));
                loop {
                    let event = tokio::select! {
                        _ = &mut stopped => break,
                        event = sub.next() => event,
                    };
                    match event {
                        Ok(SubscriberEvent::Hello(_)) => push(Seen::Hello),
                        Ok(SubscriberEvent::Frame { frame, gap, .. }) => push(Seen::Frame {
                            seq: frame.header().sequence,
                            gap,
                            timestamp_us: frame.header().timestamp_us,
                        }),
                        Ok(SubscriberEvent::End(end)) => push(Seen::End(end.reason)),
                        Ok(SubscriberEvent::Reconnecting { error, .. }) => {
                            push(Seen::Reconnecting(error.to_string()));
                        }
                        Err(e) => {
                            push(Seen::Failed(e.to_string()));
                            return;
                        }
                    }
                }
                sub.close().await;
            });
        });
        match ready.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{what}: cannot connect: {e}"),
            Err(_) => panic!("{what}: no connection within 20 s"),
        }
        Watch {
            what,
            events,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Everything seen so far.
    fn seen(&self) -> Vec<(Instant, Seen)> {
        self.events.lock().unwrap().clone()
    }

    /// Frames seen after `since`.
    fn frames_after(&self, since: Instant) -> Vec<(Instant, u64)> {
        self.seen()
            .into_iter()
            .filter_map(|(at, s)| match s {
                Seen::Frame { seq, .. } if at > since => Some((at, seq)),
                _ => None,
            })
            .collect()
    }

    /// The first `end` after `since`.
    fn end_after(&self, since: Instant) -> Option<(Instant, EndReason)> {
        self.seen().into_iter().find_map(|(at, s)| match s {
            Seen::End(reason) if at > since => Some((at, reason)),
            _ => None,
        })
    }

    /// Reconnects and failures: a viewer that should have kept its connection has none.
    fn troubles(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .map(|(_, s)| s)
            .filter(|s| matches!(s, Seen::Reconnecting(_) | Seen::Failed(_)))
            .collect()
    }

    /// A short account of what was seen, for failure messages.
    fn summary(&self) -> String {
        let seen = self.seen();
        let frames: Vec<u64> = seen
            .iter()
            .filter_map(|(_, s)| match s {
                Seen::Frame { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        let others: Vec<String> = seen
            .iter()
            .filter(|(_, s)| !matches!(s, Seen::Frame { .. }))
            .map(|(at, s)| format!("{:?} at -{:.2} s", s, at.elapsed().as_secs_f64()))
            .collect();
        format!(
            "{}: {} frames (first {:?}, last {:?}), gaps {}, events {others:?}",
            self.what,
            frames.len(),
            frames.first(),
            frames.last(),
            seen.iter()
                .map(|(_, s)| match s {
                    Seen::Frame { gap, .. } => *gap,
                    _ => 0,
                })
                .sum::<u64>()
        )
    }

    /// Polls `f` until it returns `Some`, or panics after `limit` with `what` and
    /// what this viewer saw.
    fn wait<T>(&self, limit: Duration, what: &str, mut f: impl FnMut(&Watch) -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}; {}",
                self.summary()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for `n` frames after `since`.
    fn wait_frames(&self, n: usize, since: Instant, limit: Duration) -> Vec<(Instant, u64)> {
        self.wait(limit, &format!("{n} frames"), |w| {
            let frames = w.frames_after(since);
            (frames.len() >= n).then_some(frames)
        })
    }

    /// Closes the connection politely and waits for the thread.
    fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- {} ----", self.summary());
        }
        self.shut();
    }
}

// ---------------------------------------------------------------------------------------
// plain HTTP, blocking

/// A blocking HTTP/1.0 GET: (status, head, body), 10 s limits.
fn http_get_raw(addr: std::net::SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let mut tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .expect("connect to the relay");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    tcp.read_to_end(&mut buf).expect("read the response");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the end of the response head");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, buf[split + 4..].to_vec())
}

/// Reads a streaming HTTP/1.0 response until `enough` says so or `limit` passes;
/// returns what arrived (head included).
fn read_until(
    addr: std::net::SocketAddr,
    path: &str,
    limit: Duration,
    enough: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let mut tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .expect("connect to the relay");
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    while !enough(&buf) && Instant::now() < deadline {
        let mut chunk = [0u8; 65536];
        match tcp.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!(
                "reading {path}: {e} after {} bytes: {}",
                buf.len(),
                String::from_utf8_lossy(&buf[..buf.len().min(300)])
            ),
        }
    }
    buf
}

// ---------------------------------------------------------------------------------------
// the tests

/// Done-when 1: `vswa-send` on relay A and `vswa-recv --count 300` on A (the local
/// reference), B and C: B and C receive all 300 frames with the publisher's sequence
/// numbers 0..299, its timestamps, and byte-identical payloads; NATS carries the stream
/// to exactly the two relays that need it.
#[test]
fn three_relays_deliver_every_frame_byte_identical() {
    let Some(_turn) = turn("three_relays_deliver_every_frame_byte_identical") else {
        return;
    };
    let dir = TempDir::new("cluster-300");
    let nats = NatsServer::start();
    let a = relay_on(&nats, "A", &[]);
    let b = relay_on(&nats, "B", &[]);
    let c = relay_on(&nats, "C", &[]);
    let relays = [&a, &b, &c];
    let mut receivers: Vec<(&str, PathBuf, Proc)> = relays
        .iter()
        .map(|r| {
            let file = dir.join(format!("{}.vswa", r.id));
            let p = recv(r, "cam", 300, &file, &dir);
            (r.id, file, p)
        })
        .collect();
    for r in relays {
        wait_local_viewer(r, "cam");
    }
    // A relay pulls a stream as soon as it has a viewer (all three here: nobody knows
    // yet where the publisher will connect): the first frame must not be published
    // before NATS knows who wants it.
    let subject = frames_subject("cam");
    wait_for(
        SUBSCRIBE_LIMIT,
        "each relay with a viewer to subscribe to the stream on NATS",
        || (nats.subscriptions(&subject) == 3).then_some(()),
    );
    let mut sender = send(&a, "cam", &["--count", "300"], &dir);
    let mut recorded = BTreeMap::new();
    for (id, file, p) in &mut receivers {
        let status = p.finish(LIMIT);
        assert!(
            status.success(),
            "vswa-recv on relay {id}: {status:?}\n{}",
            p.stderr()
        );
        recorded.insert(*id, read_recording(file));
    }
    let status = sender.finish(LIMIT);
    assert!(
        status.success(),
        "vswa-send: {status:?}\n{}",
        sender.stderr()
    );
    let want: Vec<u64> = (0..300).collect();
    let reference = &recorded["A"];
    for id in ["B", "C"] {
        assert_identical(id, &recorded[id], reference);
        assert_eq!(
            sequences(&recorded[id]),
            want,
            "relay {id} did not deliver every frame in order"
        );
    }
    // Checked last: a gap here means the publisher or the local path dropped frames,
    // not the cluster.
    assert_eq!(
        sequences(reference),
        want,
        "relay A's own viewer missed frames (machine overloaded?); vswa-send said:\n{}",
        sender.stderr()
    );
    for r in relays {
        eprintln!("relay {} metrics: {:?}", r.id, cluster_metrics(r));
    }
    for r in [&b, &c] {
        assert!(
            metric(r, "vswa_cluster_dropped_total").unwrap_or(0.0) == 0.0,
            "relay {} counted cluster drops: {:?}",
            r.id,
            cluster_metrics(r)
        );
    }
    let out = metric(&a, "vswa_cluster_frames_out_total");
    let into_b = metric(&b, "vswa_cluster_frames_in_total");
    eprintln!("cluster frames: out of A {out:?}, into B {into_b:?}");
    assert!(out.is_some_and(|n| n >= 300.0), "A published {out:?}");
    assert!(into_b.is_some_and(|n| n >= 300.0), "B took in {into_b:?}");
}

/// Done-when 2 and the directory: a stream published on A is listed live on B and C
/// with relay "A" and the viewers of all relays (also in A's own listing), and a second
/// publisher of the same name on C is refused with `stream_busy` while the first keeps
/// publishing.
#[test]
fn directory_lists_remote_streams_and_busy_is_cluster_wide() {
    let Some(_turn) = turn("directory_lists_remote_streams_and_busy_is_cluster_wide") else {
        return;
    };
    let dir = TempDir::new("cluster-dir");
    let nats = NatsServer::start();
    let a = relay_on(&nats, "A", &[]);
    let b = relay_on(&nats, "B", &[]);
    let c = relay_on(&nats, "C", &[]);
    let mut sender = send(&a, "cam", &["--duration", "60"], &dir);
    wait_listed(&a, "cam", "A");
    for r in [&b, &c] {
        let entry = wait_listed(r, "cam", "A");
        eprintln!("relay {} lists {entry}", r.id);
        let one = api(r, "/api/streams/cam")
            .unwrap_or_else(|| panic!("/api/streams/cam on relay {} is not 200", r.id));
        assert_eq!(one["relay"], "A", "relay {}: {one}", r.id);
        assert_eq!(one["live"], true, "relay {}: {one}", r.id);
    }
    // Viewers on B and C are counted on every relay.
    let vb = Watch::start(&b, "cam");
    let vc = Watch::start(&c, "cam");
    let now = Instant::now();
    vb.wait_frames(3, now, Duration::from_secs(15));
    vc.wait_frames(3, now, Duration::from_secs(15));
    for r in [&a, &b, &c] {
        wait_for(
            DIRECTORY_LIMIT,
            &format!("relay {} to count the viewers on B and C", r.id),
            || {
                let s = listed(r, "cam")?;
                let ok = s["viewers_total"] == 2
                    && s["viewers_by_relay"]["B"] == 1
                    && s["viewers_by_relay"]["C"] == 1;
                ok.then_some(())
            },
        );
    }
    // One publisher per stream, cluster-wide.
    assert_busy(&c, "cam");
    assert!(
        sender.running(),
        "the first publisher stopped: {}",
        sender.stderr()
    );
    let entry = listed(&c, "cam").expect("still listed on C");
    assert_eq!(entry["relay"], "A", "after the refusal C lists {entry}");
    let before = vc.frames_after(now).len();
    vc.wait_frames(before + 10, now, Duration::from_secs(10));
    assert!(vb.troubles().is_empty(), "{}", vb.summary());
    assert!(vc.troubles().is_empty(), "{}", vc.summary());
}

/// Done-when 3: SIGKILL of relay A (the publisher's): a viewer on B gets `end`
/// (`publisher_left`) within the documented bound, keeps its connection, and when a
/// new `vswa-send` publishes the stream to B it receives frames again without
/// reconnecting.
#[test]
fn publisher_relay_killed_viewers_elsewhere_get_end_and_resume() {
    let Some(_turn) = turn("publisher_relay_killed_viewers_elsewhere_get_end_and_resume") else {
        return;
    };
    let dir = TempDir::new("cluster-kill");
    let nats = NatsServer::start();
    let mut a = relay_on(&nats, "A", &[]);
    let b = relay_on(&nats, "B", &[]);
    let first = send(&a, "cam", &["--duration", "120"], &dir);
    let viewer = Watch::start(&b, "cam");
    let start = Instant::now();
    viewer.wait_frames(30, start, Duration::from_secs(20));
    kill_relay(&mut a);
    let killed = Instant::now();
    drop(first); // it would only retry the dead relay
    let (end_at, reason) = viewer.wait(Duration::from_secs(15), "end after the kill", |w| {
        w.end_after(start)
    });
    let last_frame = viewer
        .frames_after(start)
        .last()
        .map(|(at, _)| *at)
        .expect("frames before the kill");
    eprintln!(
        "end {:.2} s after the SIGKILL, {:.2} s after the last frame",
        end_at.duration_since(killed).as_secs_f64(),
        end_at.duration_since(last_frame).as_secs_f64()
    );
    assert_eq!(reason, EndReason::PublisherLeft, "{}", viewer.summary());
    assert!(
        end_at.duration_since(killed) <= END_AFTER_RELAY_DEATH,
        "end came {:?} after the SIGKILL (bound {END_AFTER_RELAY_DEATH:?})",
        end_at.duration_since(killed)
    );
    // The publisher comes back on B (after the end, so A's lock has expired).
    let respawned = Instant::now();
    let mut second = send(&b, "cam", &["--duration", "60"], &dir);
    let resumed = viewer.wait(
        Duration::from_secs(15),
        "frames from the new publisher on B",
        |w| {
            let frames = w.frames_after(end_at);
            (frames.len() >= 10).then_some(frames)
        },
    );
    assert!(
        second.running(),
        "the new publisher on B stopped: {}",
        second.stderr()
    );
    eprintln!(
        "frames again {:.3} s after the end ({:.3} s after the new vswa-send started), \
         from sequence {}",
        resumed[0].0.duration_since(end_at).as_secs_f64(),
        resumed[0]
            .0
            .checked_duration_since(respawned)
            .map_or(-1.0, |d| d.as_secs_f64()),
        resumed[0].1
    );
    assert!(
        resumed[0].0 > respawned,
        "frames after the end came before the new publisher started: {}",
        viewer.summary()
    );
    assert!(
        viewer.troubles().is_empty(),
        "the viewer lost its connection: {}",
        viewer.summary()
    );
    wait_listed(&b, "cam", "B");
}

/// A publisher that leaves cleanly (vswa-send finished its count): viewers on other
/// relays get `end` at once, not after the dead-relay timeout, and the stream name is
/// free at once: the publisher moving to relay B right away is accepted, and the same
/// viewer on C receives it, without reconnecting; every directory follows.
#[test]
fn clean_leave_ends_everywhere_at_once_and_the_name_moves_to_another_relay() {
    let Some(_turn) =
        turn("clean_leave_ends_everywhere_at_once_and_the_name_moves_to_another_relay")
    else {
        return;
    };
    let dir = TempDir::new("cluster-move");
    let nats = NatsServer::start();
    let a = relay_on(&nats, "A", &[]);
    let b = relay_on(&nats, "B", &[]);
    let c = relay_on(&nats, "C", &[]);
    let viewer = Watch::start(&c, "cam");
    let mut first = send(&a, "cam", &["--count", "60"], &dir);
    let status = first.finish(LIMIT);
    assert!(
        status.success(),
        "vswa-send on A: {status:?}\n{}",
        first.stderr()
    );
    let done = Instant::now();
    let (end_at, reason) = viewer.wait(Duration::from_secs(10), "end after the clean leave", |w| {
        w.end_after(done - Duration::from_secs(5))
    });
    let last = viewer
        .frames_after(done - Duration::from_secs(60))
        .iter()
        .map(|(at, _)| *at)
        .rev()
        .find(|at| *at < end_at)
        .expect("frames from A");
    eprintln!(
        "end on C {:.3} s after A's publisher's last frame arrived",
        end_at.duration_since(last).as_secs_f64()
    );
    assert_eq!(reason, EndReason::PublisherLeft);
    assert!(
        end_at.duration_since(last) < Duration::from_millis(1500),
        "a clean leave took {:?} to reach C (the dead-relay timeout?)",
        end_at.duration_since(last)
    );
    // The name is free at once: the publisher moves to B.
    let mut second = send(&b, "cam", &["--duration", "60"], &dir);
    let frames = viewer.wait(Duration::from_secs(10), "frames from B on C", |w| {
        let frames = w.frames_after(end_at);
        (frames.len() >= 10).then_some(frames)
    });
    assert!(second.running(), "vswa-send on B: {}", second.stderr());
    eprintln!(
        "C has frames from B {:.2} s after the end",
        frames[0].0.duration_since(end_at).as_secs_f64()
    );
    for r in [&a, &b, &c] {
        wait_listed(r, "cam", "B");
    }
    assert!(viewer.troubles().is_empty(), "{}", viewer.summary());
}

/// Done-when 4 (pull on demand): with a stream published on A, relay B holds no NATS
/// subscription for it until a viewer watches it on B, holds one while it does, and
/// none again a few seconds after the viewer left; B's `vswa_cluster_subscriptions`
/// gauge says the same, and A (the publisher's relay) never subscribes.
#[test]
fn no_subscription_without_local_viewers() {
    let Some(_turn) = turn("no_subscription_without_local_viewers") else {
        return;
    };
    let dir = TempDir::new("cluster-pull");
    let nats = NatsServer::start();
    let a = relay_on(&nats, "A", &[]);
    let b = relay_on(&nats, "B", &[]);
    let _sender = send(&a, "cam", &["--duration", "60"], &dir);
    let subject = frames_subject("cam");
    // B knows the stream (its directory lists it) but nobody watches it there.
    wait_listed(&b, "cam", "A");
    for _ in 0..5 {
        assert_eq!(
            nats.subscriptions(&subject),
            0,
            "a subscription without viewers: {:?}",
            nats.client_subscriptions()
        );
        // A gauge never set yet may be missing from the export: that is 0 too.
        let gauge = metric(&b, "vswa_cluster_subscriptions");
        assert_eq!(gauge.unwrap_or(0.0), 0.0, "B's gauge without viewers");
        std::thread::sleep(Duration::from_millis(200));
    }
    let viewer = Watch::start(&b, "cam");
    viewer.wait_frames(5, Instant::now(), Duration::from_secs(15));
    wait_for(
        SUBSCRIBE_LIMIT,
        "one subscription while B has a viewer",
        || (nats.subscriptions(&subject) == 1).then_some(()),
    );
    assert_eq!(cluster_subscriptions(&b), 1.0, "B's gauge with a viewer");
    assert_eq!(
        metric(&a, "vswa_cluster_subscriptions").unwrap_or(0.0),
        0.0,
        "A's gauge (it publishes)"
    );
    let subs: Vec<_> = nats
        .client_subscriptions()
        .into_iter()
        .filter(|s| s.subject.starts_with("vswa.v1.frames."))
        .collect();
    eprintln!("frame subscriptions with a viewer on B: {subs:?}");
    assert_eq!(
        subs.len(),
        1,
        "no wildcard or extra frame subscriptions: {subs:?}"
    );
    viewer.close();
    let left = Instant::now();
    wait_for(
        Duration::from_secs(8),
        "B to unsubscribe after its viewer left",
        || (nats.subscriptions(&subject) == 0).then_some(()),
    );
    eprintln!(
        "B unsubscribed {:.2} s after its last viewer left",
        left.elapsed().as_secs_f64()
    );
    wait_for(Duration::from_secs(2), "B's gauge back to 0", || {
        (cluster_subscriptions(&b) == 0.0).then_some(())
    });
}

/// MJPEG over HTTP and snapshots of a remote stream: with a stream published on A, a
/// snapshot from B is a JPEG even though nobody watches on B, and `/stream/cam.mjpg` on
/// B is a live multipart stream of the publisher's JPEGs.
#[test]
fn mjpeg_and_snapshot_on_another_relay() {
    let Some(_turn) = turn("mjpeg_and_snapshot_on_another_relay") else {
        return;
    };
    let dir = TempDir::new("cluster-mjpeg");
    let nats = NatsServer::start();
    let a = relay_on(&nats, "A", &[]);
    let b = relay_on(&nats, "B", &[]);
    let _sender = send(&a, "cam", &["--duration", "60"], &dir);
    wait_listed(&b, "cam", "A");
    // No viewer on B: the snapshot makes B fetch a frame. The first request must work.
    let started = Instant::now();
    let (status, head, jpeg) = http_get_raw(b.addr, "/snapshot/cam.jpg");
    eprintln!(
        "snapshot from B: {status} after {:.2} s, {} bytes",
        started.elapsed().as_secs_f64(),
        jpeg.len()
    );
    assert_eq!(status, 200, "{head}\n{}", String::from_utf8_lossy(&jpeg));
    assert!(
        head.to_lowercase().contains("content-type: image/jpeg"),
        "{head}"
    );
    assert_eq!(jpeg.get(..2), Some(&[0xff, 0xd8][..]), "not a JPEG");
    assert_eq!(vswa_codec::jpeg_dimensions(&jpeg), Some((320, 240)));
    // MJPEG: HTTP/1.0, so the body is the multipart stream itself (no chunking).
    let buf = read_until(b.addr, "/stream/cam.mjpg", Duration::from_secs(20), |buf| {
        buf.windows(11).filter(|w| *w == b"--vswaframe").count() >= 6
    });
    let parts = common::multipart_jpegs(&buf, "vswaframe");
    assert!(parts.len() >= 5, "got {} MJPEG parts from B", parts.len());
    for part in &parts {
        let img = vswa_codec::decode(part).expect("each part is a JPEG");
        assert_eq!((img.width, img.height), (320, 240));
    }
    assert!(
        parts.first() != parts.last(),
        "the MJPEG stream from B does not move"
    );
}

/// A relay that loses its NATS connection: NATS is killed and started again on the
/// same port. A viewer on B of the stream published on A gets `end`, and frames again
/// once NATS is back, without reconnecting, while the publisher stays connected to A;
/// a stream published and watched on B keeps flowing throughout; B subscribes again.
#[test]
fn nats_restart_relays_recover() {
    let Some(_turn) = turn("nats_restart_relays_recover") else {
        return;
    };
    let dir = TempDir::new("cluster-nats-restart");
    let mut nats = NatsServer::start();
    let a = relay_on(&nats, "A", &[]);
    let b = relay_on(&nats, "B", &[]);
    let mut remote_sender = send(&a, "cam", &["--duration", "120"], &dir);
    let mut local_sender = send(&b, "loc", &["--duration", "120"], &dir);
    let remote = Watch::start(&b, "cam");
    let local = Watch::start(&b, "loc");
    let start = Instant::now();
    remote.wait_frames(10, start, Duration::from_secs(20));
    local.wait_frames(10, start, Duration::from_secs(20));
    nats.kill();
    let killed = Instant::now();
    let (end_at, reason) = remote.wait(
        Duration::from_secs(15),
        "end on the remote stream after NATS died",
        |w| w.end_after(start),
    );
    eprintln!(
        "remote viewer: end ({reason:?}) {:.2} s after NATS was killed",
        end_at.duration_since(killed).as_secs_f64()
    );
    assert_eq!(reason, EndReason::PublisherLeft, "{}", remote.summary());
    // The local stream flows on without NATS: 2 s of it (60 frames at 30 fps) with NATS
    // down, then NATS comes back.
    local.wait_frames(60, killed, Duration::from_secs(10));
    nats.restart();
    let restarted = Instant::now();
    let back = remote.wait(
        Duration::from_secs(15),
        "remote frames again after NATS restarted",
        |w| {
            let frames = w.frames_after(end_at);
            (frames.len() >= 10).then_some(frames)
        },
    );
    eprintln!(
        "remote viewer: frames again {:.2} s after NATS restarted",
        back[0].0.duration_since(restarted).as_secs_f64()
    );
    wait_for(SUBSCRIBE_LIMIT, "B to subscribe again", || {
        (nats.subscriptions(&frames_subject("cam")) == 1).then_some(())
    });
    wait_listed(&b, "cam", "A");
    assert!(
        remote.troubles().is_empty(),
        "remote viewer: {}",
        remote.summary()
    );
    assert!(
        local.troubles().is_empty() && local.end_after(start).is_none(),
        "the local stream was disturbed: {}",
        local.summary()
    );
    for (what, sender) in [("on A", &mut remote_sender), ("on B", &mut local_sender)] {
        assert!(
            sender.running(),
            "publisher {what} stopped: {}",
            sender.stderr()
        );
        let stderr = sender.stderr();
        assert!(
            !stderr.contains("reconnect"),
            "publisher {what} lost its relay connection: {stderr}"
        );
    }
}

/// A frame larger than the NATS server's `max_payload` (64 KiB here) cannot travel the
/// cluster: its publisher gets `frame_too_large` at once (not a silent loss on the other
/// relays), and the relay's log names the NATS setting.
#[test]
fn frame_over_nats_max_payload_is_refused_at_once() {
    let Some(_turn) = turn("frame_over_nats_max_payload_is_refused_at_once") else {
        return;
    };
    let nats = NatsServer::start_with("max_payload: 65536");
    let a = relay_on(&nats, "A", &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (took, err, close) = rt.block_on(async {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        let (mut ws, _) = tokio_tungstenite::connect_async(a.publish_url("big"))
            .await
            .expect("connect the publisher");
        let hello = common::next_control(&mut ws).await.expect("hello");
        assert_eq!(hello["type"], "hello", "{hello}");
        eprintln!("hello to the publisher: {hello}");
        // A frame that fits goes through ...
        ws.send(Message::Binary(common::jpeg_frame_message(0, 1000)))
            .await
            .unwrap();
        // ... one of 100 kB does not.
        let started = Instant::now();
        ws.send(Message::Binary(common::jpeg_frame_message(1, 100_000)))
            .await
            .unwrap();
        let err = common::next_error(&mut ws).await;
        let took = started.elapsed();
        let close = common::close_code(&mut ws).await;
        (took, err, close)
    });
    let err = err.expect("an error message after the 100 kB frame");
    eprintln!("after {took:?}: {err}, close {close:?}");
    assert_eq!(err["code"], "frame_too_large", "{err}");
    assert!(took < Duration::from_secs(2), "the error took {took:?}");
    let line = wait_for(
        Duration::from_secs(5),
        "a relay log line naming max_payload",
        || {
            a.log()
                .lines()
                .find(|l| l.contains("max_payload"))
                .map(str::to_string)
        },
    );
    eprintln!("relay A: {line}");
}

/// A 3-node NATS cluster (routes between three nats-server processes) with relay A on
/// node 1, B on node 2 and C on node 3: `vswa-recv --count 100` on B and C get every
/// frame published on A, with the interest carried over the routes, and a second
/// publisher on C is refused with `stream_busy`.
#[test]
fn three_node_nats_cluster_with_relays_on_different_nodes() {
    let Some(_turn) = turn("three_node_nats_cluster_with_relays_on_different_nodes") else {
        return;
    };
    let dir = TempDir::new("cluster-3nodes");
    let cluster = NatsCluster::start(3);
    let [n1, n2, n3] = &cluster.nodes[..] else {
        unreachable!("three nodes")
    };
    let a = relay_on(n1, "A", &[]);
    let b = relay_on(n2, "B", &[]);
    let c = relay_on(n3, "C", &[]);
    let subject = frames_subject("cam");
    let files = [dir.join("B.vswa"), dir.join("C.vswa")];
    let mut receivers = [
        recv(&b, "cam", 100, &files[0], &dir),
        recv(&c, "cam", 100, &files[1], &dir),
    ];
    wait_local_viewer(&b, "cam");
    wait_local_viewer(&c, "cam");
    wait_for(
        SUBSCRIBE_LIMIT,
        "B and C to subscribe on their own NATS nodes",
        || (n2.subscriptions(&subject) == 1 && n3.subscriptions(&subject) == 1).then_some(()),
    );
    wait_for(
        SUBSCRIBE_LIMIT,
        "node 1 to learn of both over its routes",
        || (n1.route_interest(&subject) == 2).then_some(()),
    );
    let mut sender = send(&a, "cam", &["--duration", "60"], &dir);
    let mut recorded = Vec::new();
    for (p, file) in receivers.iter_mut().zip(&files) {
        let status = p.finish(LIMIT);
        assert!(status.success(), "{}: {status:?}\n{}", p.what, p.stderr());
        recorded.push(read_recording(file));
    }
    let want: Vec<u64> = (0..100).collect();
    assert_eq!(sequences(&recorded[0]), want, "relay B");
    assert_eq!(sequences(&recorded[1]), want, "relay C");
    assert_identical("C", &recorded[1], &recorded[0]);
    wait_listed(&c, "cam", "A");
    assert_busy(&c, "cam");
    assert!(
        sender.running(),
        "the publisher on A stopped: {}",
        sender.stderr()
    );
}

/// Issue 13, item 5: the publisher's `viewers` count and `vswa-send --on-demand` see
/// the whole cluster. An on-demand sender on A idles while nobody watches anywhere,
/// wakes when a viewer comes to B (fresh frames there within 3 s), and idles again
/// after that viewer left.
#[test]
fn on_demand_sender_wakes_for_a_viewer_on_another_relay() {
    let Some(_turn) = turn("on_demand_sender_wakes_for_a_viewer_on_another_relay") else {
        return;
    };
    let dir = TempDir::new("cluster-on-demand");
    let nats = NatsServer::start();
    let a = relay_on(&nats, "A", &[]);
    let b = relay_on(&nats, "B", &[]);
    let mut sender = send(&a, "od", &["--on-demand", "--on-demand-hold", "1"], &dir);
    wait_listed(&a, "od", "A");
    wait_idle(&a, "od");
    wait_listed(&b, "od", "A");
    let viewer = Watch::start(&b, "od");
    let joined = Instant::now();
    let joined_us = vswa_protocol::timestamp_us(std::time::SystemTime::now());
    // Fresh: captured after the viewer came, not the last frame from before standby.
    let fresh = viewer.wait(
        Duration::from_secs(10),
        "fresh frames on B from the on-demand sender",
        |w| {
            w.seen().into_iter().find_map(|(at, s)| match s {
                Seen::Frame { timestamp_us, .. } if timestamp_us >= joined_us => Some(at),
                _ => None,
            })
        },
    );
    eprintln!(
        "first frame on B {:.2} s after the viewer came",
        fresh.duration_since(joined).as_secs_f64()
    );
    assert!(
        fresh.duration_since(joined) < Duration::from_secs(3),
        "the on-demand sender took {:?} to wake for a viewer on B",
        fresh.duration_since(joined)
    );
    viewer.close();
    wait_idle(&a, "od");
    assert!(sender.running(), "the sender stopped: {}", sender.stderr());
}

/// Issue 13, item 7: NATS credentials never appear in a relay's log (at debug level),
/// whether given in `--cluster` or `VSWA_CLUSTER`, nor in its pages; a relay with a
/// wrong NATS password says so without printing it; and viewer tokens are checked by
/// the relay the viewer connects to, also for a stream published on another relay.
#[test]
fn nats_credentials_stay_secret_and_tokens_are_checked_per_relay() {
    let Some(_turn) = turn("nats_credentials_stay_secret_and_tokens_are_checked_per_relay") else {
        return;
    };
    const PASSWORD: &str = "nats-pass-9f2e";
    const WRONG: &str = "wrong-pass-77c1";
    let dir = TempDir::new("cluster-secrets");
    let nats = NatsServer::start_with(&format!(
        "authorization {{\n  user: vswa\n  password: \"{PASSWORD}\"\n}}"
    ));
    let url = |password: &str| format!("nats://vswa:{password}@127.0.0.1:{}", nats.port);
    let tokens = ["--publish-token", "pub-tok", "--watch-token", "view-tok"];
    let relay_cmd = |id: &str| {
        let mut cmd = Command::new(bin("vswa-relay"));
        cmd.args(["--listen", "127.0.0.1:0", "--relay-id", id])
            .args(tokens)
            .env("RUST_LOG", "debug");
        cmd
    };
    let leaks = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains(PASSWORD) || l.contains(WRONG))
            .map(str::to_string)
            .collect()
    };
    let a = Node {
        id: "A",
        relay: {
            let mut cmd = relay_cmd("A");
            cmd.args(["--cluster", &url(PASSWORD)]);
            Relay::spawn(cmd)
        },
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while nats.connections() == 0 {
        assert!(
            Instant::now() < deadline,
            "relay A did not log in to NATS with the user and password of its --cluster URL \
             within 10 s (nats-server logged {} authentication errors); lines of its log \
             that show the password: {:#?}",
            nats.log().matches("authentication error").count(),
            leaks(&a.log())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let b = connected(&nats, "B", || {
        let mut cmd = relay_cmd("B");
        cmd.env("VSWA_CLUSTER", url(PASSWORD));
        Relay::spawn(cmd)
    });
    let _sender = send(&a, "cam", &["--duration", "60", "--token", "pub-tok"], &dir);
    wait_listed(&b, "cam", "A");
    // B checks its viewers' tokens itself.
    let (status, _, _) = http_get_raw(b.addr, "/snapshot/cam.jpg");
    assert_eq!(status, 401, "a snapshot from B without a token");
    let (status, _, _) = http_get_raw(b.addr, "/snapshot/cam.jpg?token=pub-tok");
    assert_eq!(status, 401, "a snapshot from B with the publish token");
    let (status, head, jpeg) = http_get_raw(b.addr, "/snapshot/cam.jpg?token=view-tok");
    assert_eq!(status, 200, "{head}");
    assert_eq!(jpeg.get(..2), Some(&[0xff, 0xd8][..]), "not a JPEG");
    // A relay that cannot log in.
    let mut wrong = Proc::spawn(
        "relay C with a wrong NATS password",
        {
            let mut cmd = relay_cmd("C");
            cmd.args(["--cluster", &url(WRONG)]);
            cmd
        },
        dir.join("relay-c.log"),
    );
    wait_for(
        Duration::from_secs(10),
        "relay C to exit or to say that NATS refused it",
        || {
            let log = wrong.stderr().to_lowercase();
            (!wrong.running() || log.contains("authoriz") || log.contains("auth")).then_some(())
        },
    );
    let c_log = wrong.stderr();
    eprintln!(
        "relay C (wrong password): running {}, says: {}",
        wrong.running(),
        c_log
            .lines()
            .filter(|l| l.to_lowercase().contains("auth"))
            .take(3)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    for (what, text) in [
        ("relay A's log", a.log()),
        ("relay B's log", b.log()),
        ("relay C's log", c_log),
        (
            "B's /api/streams",
            http_get_body(b.addr, "/api/streams?token=view-tok").unwrap_or_default(),
        ),
        (
            "B's /metrics",
            http_get_body(b.addr, "/metrics").unwrap_or_default(),
        ),
        (
            "B's /",
            http_get_body(b.addr, "/?token=view-tok").unwrap_or_default(),
        ),
    ] {
        let shown = leaks(&text);
        assert!(
            shown.is_empty(),
            "{what} shows the NATS password: {shown:#?}"
        );
    }
}
