//! `vswa-send --on-demand`: with no viewers it closes its source and sends nothing
//! (using next to no CPU) while staying connected, the relay lists the stream as
//! standby, the first viewer gets fresh frames within 1.5 s, and the sender idles again
//! `--on-demand-hold` after the last viewer left. Real processes on loopback.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vswa_client::{Subscriber, SubscriberConfig, SubscriberEvent};
use vswa_testkit::{bin, http_get_body, wait_for, Guard, Relay};

const LIMIT: Duration = Duration::from_secs(30);

/// `/api/streams/NAME` as JSON.
fn info(relay: &Relay, name: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&http_get_body(relay.addr, &format!("/api/streams/{name}"))?).ok()
}

/// Frames the relay has received on `name`.
fn frames_in(relay: &Relay, name: &str) -> u64 {
    info(relay, name)
        .and_then(|i| i["frames"].as_u64())
        .unwrap_or(0)
}

/// User plus system CPU time of process `pid`, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): utime is the 12th,
    // stime the 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// Waits until the relay's frame count stands still for `quiet` (the sender idles).
fn wait_idle(relay: &Relay, name: &str, quiet: Duration) {
    wait_for(LIMIT, "the sender to idle", || {
        let before = frames_in(relay, name);
        std::thread::sleep(quiet);
        (before > 0 && frames_in(relay, name) == before).then_some(())
    });
}

#[test]
fn on_demand_sender_idles_unwatched_and_wakes_for_a_viewer() {
    let relay = Relay::start(&[]);
    let mut sender = Guard(
        Command::new(bin("vswa-send"))
            .args([
                "--url",
                &relay.publish_url("od"),
                "--size",
                "320x240",
                "--fps",
                "30",
            ])
            .args(["--on-demand", "--on-demand-hold", "1", "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = sender.0.id();
    // Connected: it captures for the hold time, then idles.
    wait_for(LIMIT, "the publisher", || {
        info(&relay, "od").and_then(|i| i["live"].as_bool()?.then_some(()))
    });
    wait_idle(&relay, "od", Duration::from_millis(1500));

    // Unwatched for 5 s: no frames, next to no CPU, still connected, listed as standby.
    let frames = frames_in(&relay, "od");
    let cpu = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        frames_in(&relay, "od"),
        frames,
        "frames sent while nobody watched"
    );
    let used = cpu_time(pid) - cpu;
    assert!(
        used < Duration::from_millis(250),
        "{used:?} of CPU in 5 s idle"
    );
    let now = info(&relay, "od").unwrap();
    assert_eq!(now["live"], true, "{now}");
    assert_eq!(now["standby"], true, "{now}");

    // The first viewer: fresh frames within 1.5 s.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let watch = relay.watch_url("od");
    let first_fresh = rt.block_on(async {
        let mut sub = Subscriber::connect(SubscriberConfig::new(watch))
            .await
            .unwrap();
        let joined = Instant::now();
        let joined_us = vswa_protocol::timestamp_us(std::time::SystemTime::now());
        let mut fresh = 0;
        let mut first = None;
        while fresh < 10 {
            let event = tokio::time::timeout(LIMIT, sub.next())
                .await
                .expect("frames in time")
                .unwrap();
            if let SubscriberEvent::Frame { frame, .. } = event {
                // Captured after the viewer came (not the last frame before standby).
                if frame.header().timestamp_us >= joined_us {
                    first.get_or_insert_with(|| joined.elapsed());
                    fresh += 1;
                }
            }
        }
        sub.close().await;
        first.unwrap()
    });
    assert!(
        first_fresh < Duration::from_millis(1500),
        "first fresh frame after {first_fresh:?}"
    );
    // The last viewer left: idle again after the hold time.
    wait_idle(&relay, "od", Duration::from_millis(1500));
    assert_eq!(info(&relay, "od").unwrap()["standby"], true);
    assert!(
        sender.0.try_wait().unwrap().is_none(),
        "the sender stayed up"
    );
}
