//! `vswa-recv` stops within 2 s of SIGINT and SIGTERM in every state (issue 16, item 8):
//! connecting to a relay that is not there, waiting for a publisher that has not come,
//! receiving, reconnecting after the relay died, and blocked writing MJPEG to a stdout
//! nobody reads. Real processes; relays listen on loopback ports picked at run time.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vswa_testkit::{assert_stops_on_signal as stops_on, bin, wait_for_viewer, Relay};

const SIGNALS: [&str; 2] = ["-INT", "-TERM"];

fn receiver(url: &str, extra: &[&str], stdout: Stdio) -> Child {
    Command::new(bin("vswa-recv"))
        .args(["--url", url, "--connect-timeout", "60"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vswa-recv")
}

#[test]
fn stops_while_connecting_to_an_absent_relay() {
    for sig in SIGNALS {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = receiver(
            &format!("ws://127.0.0.1:{port}/ws/watch/x"),
            &[],
            Stdio::null(),
        );
        // Let it fail a few attempts and sit in the retry loop.
        std::thread::sleep(Duration::from_millis(800));
        stops_on(child, sig, "connecting");
    }
}

#[test]
fn stops_while_waiting_for_a_publisher() {
    let relay = Relay::start(&[]);
    for sig in SIGNALS {
        let name = format!("nobody{}", &sig[1..]);
        let child = receiver(&relay.watch_url(&name), &[], Stdio::null());
        wait_for_viewer(&relay, &name);
        stops_on(child, sig, "waiting for a publisher");
    }
}

#[test]
fn stops_while_receiving_and_while_stdout_is_blocked() {
    let relay = Relay::start(&["--demo", "--demo-size", "320x240"]);
    for sig in SIGNALS {
        let child = receiver(&relay.watch_url("demo"), &[], Stdio::null());
        wait_for_viewer(&relay, "demo");
        stops_on(child, sig, "receiving");
        // MJPEG to a pipe nobody reads: the pipe fills and the write blocks.
        let child = receiver(&relay.watch_url("demo"), &["--mjpeg", "-"], Stdio::piped());
        wait_for_viewer(&relay, "demo");
        std::thread::sleep(Duration::from_secs(2));
        stops_on(child, sig, "blocked writing to stdout");
    }
}

#[test]
fn stops_while_reconnecting_after_the_relay_died() {
    for sig in SIGNALS {
        let mut relay = Relay::start(&["--demo", "--demo-size", "64x48"]);
        let child = receiver(&relay.watch_url("demo"), &[], Stdio::null());
        wait_for_viewer(&relay, "demo");
        let _ = relay.child.0.kill();
        let _ = relay.child.0.wait();
        std::thread::sleep(Duration::from_millis(800));
        stops_on(child, sig, "reconnecting");
    }
}
