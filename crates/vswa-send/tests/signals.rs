//! `vswa-send` stops promptly on SIGINT and SIGTERM in every state: connecting to a
//! relay that is not there, sending, reconnecting after the relay died, and waiting for
//! input on stdin. Real processes; the relay listens on a loopback port picked at run
//! time.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vswa_testkit::{assert_stops_on_signal as stops_on, bin, http_get_body, wait_for, Relay};

fn sender(url: &str, extra: &[&str], stdin: Stdio) -> Child {
    Command::new(bin("vswa-send"))
        .args(["--url", url, "--size", "64x48", "--connect-timeout", "60"])
        .args(extra)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vswa-send")
}

/// Waits until the relay lists `name` as live (the sender is connected and sending).
fn wait_live(relay: &Relay, name: &str) {
    wait_for(
        Duration::from_secs(30),
        "the publisher on the relay",
        || {
            let body = http_get_body(relay.addr, &format!("/api/streams/{name}"))?;
            let info: serde_json::Value = serde_json::from_str(&body).ok()?;
            (info["live"].as_bool()? && info["frames"].as_u64()? > 0).then_some(())
        },
    );
}

/// A loopback URL where nothing listens.
fn dead_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("ws://127.0.0.1:{port}/ws/publish/cam")
}

#[test]
fn stops_while_connecting_to_an_absent_relay() {
    for sig in ["-INT", "-TERM"] {
        let child = sender(&dead_url(), &[], Stdio::null());
        // Let it fail a few attempts and sit in the retry loop.
        std::thread::sleep(Duration::from_millis(800));
        stops_on(child, sig, "connecting");
    }
}

#[test]
fn stops_while_sending() {
    let relay = Relay::start(&[]);
    for sig in ["-INT", "-TERM"] {
        let name = format!("send{}", &sig[1..]);
        let child = sender(&relay.publish_url(&name), &[], Stdio::null());
        wait_live(&relay, &name);
        stops_on(child, sig, "sending");
    }
}

#[test]
fn stops_while_reconnecting_after_the_relay_died() {
    for sig in ["-INT", "-TERM"] {
        let mut relay = Relay::start(&[]);
        let child = sender(&relay.publish_url("cam"), &[], Stdio::null());
        wait_live(&relay, "cam");
        let _ = relay.child.0.kill();
        let _ = relay.child.0.wait();
        // The sender notices and starts reconnecting (it keeps capturing meanwhile).
        std::thread::sleep(Duration::from_millis(800));
        stops_on(child, sig, "reconnecting");
    }
}

#[test]
fn stops_while_waiting_for_stdin() {
    let relay = Relay::start(&[]);
    for sig in ["-INT", "-TERM"] {
        // stdin is a pipe nobody writes to: the source blocks in read.
        let child = sender(
            &relay.publish_url("pipe"),
            &["--source", "mjpeg:-"],
            Stdio::piped(),
        );
        wait_for(Duration::from_secs(30), "the publisher to connect", || {
            let body = http_get_body(relay.addr, "/api/streams/pipe")?;
            let info: serde_json::Value = serde_json::from_str(&body).ok()?;
            info["live"].as_bool()?.then_some(())
        });
        stops_on(child, sig, "waiting for stdin");
    }
}
