//! Issue 12: the latency ceiling holds on a slow link, not only on loopback. A viewer in
//! a network namespace behind a 5 Mbit/s `tbf` link watches a 20 Mbit/s stream: it
//! drops frames, nine in ten of those it gets arrive under `--max-latency`, and after
//! its connection's first second none later than the ceiling + 100 ms; a prompt viewer
//! of the same stream on the host gets at least 99% of the frames.
//!
//! Needs root and iproute2 (`ip netns`, `tc`); skips with the reason otherwise (a
//! failure under `VSWA_REQUIRE_TOOLS=1`, as in CI). All traffic stays on this machine:
//! loopback and a veth pair into a namespace the test makes and removes.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{wait_with_limit, Relay};
use futures_util::SinkExt;
use vswa_client::{Subscriber, SubscriberConfig, SubscriberEvent};
use vswa_protocol::{Frame, FrameHeader};
use vswa_testkit::{tools_required, wait_for_viewer, Guard};

/// A network namespace joined to the host by a veth pair whose host end sends at most
/// `rate` (tbf); removed on drop.
struct SlowNamespace {
    name: String,
    /// The host end's address, where the relay listens.
    host_ip: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl SlowNamespace {
    fn create(rate: &str) -> Result<SlowNamespace, String> {
        let id = std::process::id() % 10_000;
        let name = format!("vswa-slow-{id}");
        let (host, peer) = (format!("vsh{id}"), format!("vsn{id}"));
        // A /30 from 10.200.0.0/16 picked by the process id, so parallel runs differ.
        let net = format!("10.200.{}.{}", (id / 64) % 256, (id % 64) * 4);
        let base: Vec<u8> = net.split('.').map(|p| p.parse().unwrap()).collect();
        let host_ip = format!("10.200.{}.{}", base[2], base[3] + 1);
        let ns_ip = format!("10.200.{}.{}", base[2], base[3] + 2);
        let ns = SlowNamespace {
            name: name.clone(),
            host_ip: host_ip.clone(),
        };
        ip(&["netns", "add", &name])?;
        ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer])?;
        ip(&["link", "set", &peer, "netns", &name])?;
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host])?;
        ip(&["link", "set", &host, "up"])?;
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            &peer,
        ])?;
        ip(&["-n", &name, "link", "set", &peer, "up"])?;
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        // Relay -> viewer direction: the host end's egress.
        let tc = Command::new("tc")
            .args(["qdisc", "add", "dev", &host, "root", "tbf", "rate", rate])
            .args(["burst", "32kbit", "latency", "50ms"])
            .output()
            .map_err(|e| format!("tc: {e}"))?;
        if !tc.status.success() {
            return Err(format!(
                "tc tbf: {}",
                String::from_utf8_lossy(&tc.stderr).trim()
            ));
        }
        Ok(ns)
    }
}

impl Drop for SlowNamespace {
    fn drop(&mut self) {
        // Removing the namespace removes the veth pair with it.
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// 80 000-byte frames at 30 fps: 19.2 Mbit/s, four times the slow link.
const FRAME_BYTES: usize = 80_000;
const FPS: u64 = 30;
const SECONDS: u64 = 20;

fn jpeg_like(sequence: u64) -> Frame {
    let mut payload = vec![0x55u8; FRAME_BYTES];
    payload[..2].copy_from_slice(&[0xff, 0xd8]);
    payload[FRAME_BYTES - 2..].copy_from_slice(&[0xff, 0xd9]);
    let now = vswa_protocol::timestamp_us(std::time::SystemTime::now());
    Frame::new(
        FrameHeader::jpeg(sequence, now, 1280, 720),
        bytes::Bytes::from(payload),
    )
}

#[test]
fn slow_viewer_stays_under_the_ceiling_and_prompt_viewers_are_unaffected() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let ns = if is_root {
        SlowNamespace::create("5mbit")
    } else {
        Err("not root".into())
    };
    let ns = match ns {
        Ok(ns) => ns,
        Err(why) => {
            assert!(
                !tools_required(),
                "slow-link test needs root and iproute2: {why}"
            );
            eprintln!("skipping: a network namespace with tbf is not available: {why}");
            return;
        }
    };
    let ceiling_ms = 500.0;
    // Benchmark mode (bench/slow_link.sh): the same run against the Node peer relay,
    // reported, not checked.
    let peer = std::env::var("VSWA_SLOW_LINK_RELAY")
        .ok()
        .filter(|r| r == "node-ws");
    let (relay, _node, addr) = if peer.is_some() {
        let port = std::net::TcpListener::bind((ns.host_ip.as_str(), 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../bench/peers/node-ws/relay.js"
        );
        let node = Guard(
            Command::new("node")
                .arg(script)
                .arg(port.to_string())
                .env("HOST", &ns.host_ip)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("node (bench/slow_link.sh installs the peer)"),
        );
        let addr: std::net::SocketAddr = format!("{}:{port}", ns.host_ip).parse().unwrap();
        vswa_testkit::wait_for(Duration::from_secs(10), "the node relay", || {
            std::net::TcpStream::connect(addr).ok()
        });
        (None, Some(node), addr)
    } else {
        let relay = Relay::start_on(&format!("{}:0", ns.host_ip), &["--max-latency", "500"]);
        let addr = relay.addr;
        (Some(relay), None, addr)
    };
    let url = format!("ws://{addr}/ws/watch/slow");
    // The slow viewer, inside the namespace, behind the 5 Mbit/s link: this test
    // binary again, running `slow_viewer` below, which prints each frame's latency.
    let mut slow = Guard(
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "slow_viewer", "--nocapture"])
            .env(VIEWER_URL, &url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let slow_out = vswa_testkit::read_in_thread(slow.0.stdout.take().unwrap());
    let slow_err = vswa_testkit::read_in_thread(slow.0.stderr.take().unwrap());
    match &relay {
        Some(relay) => wait_for_viewer(relay, "slow"),
        // The peer has no stats API: give the viewer time to connect.
        None => std::thread::sleep(Duration::from_secs(3)),
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (sent, prompt_got) = rt.block_on(async {
        // The prompt viewer, on the host.
        let mut prompt = Subscriber::connect(SubscriberConfig::new(url.clone()))
            .await
            .unwrap();
        let counter = tokio::spawn(async move {
            let mut got = 0u64;
            loop {
                match tokio::time::timeout(Duration::from_secs(5), prompt.next()).await {
                    Ok(Ok(SubscriberEvent::Frame { .. })) => got += 1,
                    Ok(Ok(SubscriberEvent::End(_))) | Err(_) | Ok(Err(_)) => return got,
                    Ok(Ok(_)) => {}
                }
            }
        });
        // A plain WebSocket publisher (the peer relay sends no hello for `Publisher`).
        let (mut publisher, _) =
            tokio_tungstenite::connect_async(format!("ws://{addr}/ws/publish/slow"))
                .await
                .unwrap();
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / FPS));
        let total = FPS * SECONDS;
        for seq in 0..total {
            tick.tick().await;
            publisher
                .send(tokio_tungstenite::tungstenite::Message::Binary(
                    jpeg_like(seq).to_bytes(),
                ))
                .await
                .unwrap();
        }
        let _ = publisher.close(None).await;
        (total, counter.await.unwrap())
    });
    let status =
        wait_with_limit(&mut slow.0, Duration::from_secs(60)).expect("the slow viewer exits");
    let out = String::from_utf8_lossy(&slow_out.join().unwrap()).into_owned();
    let err = String::from_utf8_lossy(&slow_err.join().unwrap()).into_owned();
    assert!(status.success(), "{out}\n{err}");
    // "frame SECONDS_SINCE_FIRST LATENCY_MS" per frame.
    let frames: Vec<(f64, f64)> = out
        .lines()
        .filter_map(|l| {
            let mut parts = l.strip_prefix("frame ")?.split(' ');
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        })
        .collect();
    let mut latencies: Vec<f64> = frames.iter().map(|f| f.1).collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    eprintln!(
        "published {sent}; prompt viewer got {prompt_got}; slow viewer got {}: p50 {:.0} ms, p90 {:.0}, p99 {:.0}, max {:.0}; over the ceiling at (first 10) {:?}",
        frames.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
        frames.iter().filter(|f| f.1 > ceiling_ms).take(10).collect::<Vec<_>>()
    );
    if let Some(peer) = peer {
        eprintln!("benchmark mode against {peer}: reported above, not checked");
        return;
    }
    // The prompt viewer is unaffected by the slow one.
    assert!(
        prompt_got as f64 >= 0.99 * sent as f64,
        "prompt viewer got {prompt_got} of {sent}"
    );
    // The slow one drops (it cannot take a quarter of the stream) ...
    assert!(
        !frames.is_empty() && (frames.len() as u64) < sent * 2 / 3,
        "slow viewer got {} of {sent}",
        frames.len()
    );
    // ... and what it gets is not older than the ceiling: nine frames in ten under the
    // ceiling over the 20 s, and every one within ceiling + 100 ms once the connection
    // is past its first second (TCP slow start on the new connection can overshoot the
    // link's 50 ms queue; the relay cannot undo a retransmission). Not p99 over the
    // whole run: the slow viewer gets only ~150 frames, so two late ones in the first
    // second (seen in CI: 838 and 671 ms at 0.78 s) are already more than 1%.
    assert!(pct(0.9) <= ceiling_ms, "p90 {} ms", pct(0.9));
    let settled_max = frames
        .iter()
        .filter(|f| f.0 >= 1.0)
        .map(|f| f.1)
        .fold(0.0, f64::max);
    assert!(
        settled_max <= ceiling_ms + 100.0,
        "a frame {settled_max} ms old after the first second"
    );
}

/// Env var that makes `slow_viewer` run (it is the namespace side of the test above).
const VIEWER_URL: &str = "VSWA_SLOW_VIEWER_URL";

/// The slow viewer: watches the URL in `VSWA_SLOW_VIEWER_URL` for `SECONDS` and prints
/// `frame T LATENCY_MS` per frame (T: seconds since its first frame; latency corrected
/// by clock sync). Run by the test above inside its namespace; a no-op otherwise.
#[test]
#[ignore = "the namespace side of slow_viewer_stays_under_the_ceiling_and_prompt_viewers_are_unaffected"]
fn slow_viewer() {
    let Ok(url) = std::env::var(VIEWER_URL) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut config = SubscriberConfig::new(url);
        config.initial_timeout = Duration::from_secs(20);
        let mut sub = Subscriber::connect(config).await.unwrap();
        let mut first: Option<std::time::Instant> = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(SECONDS + 10);
        while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, sub.next()).await {
            if let SubscriberEvent::Frame {
                frame,
                received_us,
                capture_us,
                ..
            } = event
            {
                let start = *first.get_or_insert_with(std::time::Instant::now);
                let captured = capture_us.unwrap_or(frame.header().timestamp_us);
                let latency_ms = (received_us as f64 - captured as f64) / 1000.0;
                println!("frame {:.3} {latency_ms:.1}", start.elapsed().as_secs_f64());
                if start.elapsed() >= Duration::from_secs(SECONDS - 1) {
                    break;
                }
            }
        }
    });
}
