//! The examples in `examples/` run and do what their docs say, against a real relay on a
//! loopback port picked at run time. `cargo test` builds the examples before it runs
//! tests (they land in `target/debug/examples/`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use vswa_testkit::{run_with_limit, Guard, Relay};

const LIMIT: Duration = Duration::from_secs(60);

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory")
        .join("examples");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: `cargo test` builds the examples (or `cargo build --examples`)",
        path.display()
    );
    path
}

#[test]
fn publish_example_reaches_watch_example() {
    let relay = Relay::start(&[]);
    let watch_url = relay.watch_url("gradient");
    // The viewer waits for the publisher.
    let watcher = std::thread::spawn(move || {
        run_with_limit(
            Command::new(example("watch"))
                .args([&watch_url, "5"])
                .stdin(Stdio::null()),
            LIMIT,
        )
    });
    vswa_testkit::wait_for_viewer(&relay, "gradient");
    let published = run_with_limit(
        Command::new(example("publish"))
            .args([&relay.publish_url("gradient"), "40"])
            .stdin(Stdio::null()),
        LIMIT,
    );
    published.assert_ok();
    assert!(
        published.stdout_text().contains("sent 40 frames"),
        "{}",
        published.stdout_text()
    );
    let watched = watcher.join().unwrap();
    watched.assert_ok();
    let out = watched.stdout_text();
    let frames: Vec<&str> = out.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(frames.len(), 5, "{out}");
    for line in frames {
        assert!(
            line.contains("320x240") && line.contains("(decoded 320x240)"),
            "{line}"
        );
    }
}

#[test]
fn embedded_relay_example_serves_its_demo_stream() {
    let mut child = Command::new(example("embedded_relay"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start embedded_relay");
    let stdout = child.stdout.take().expect("piped stdout");
    let _child = Guard(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("embedded_relay printed its URL");
    let addr: std::net::SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let snapshot = vswa_testkit::wait_for(Duration::from_secs(30), "a demo snapshot", || {
        let body = http_get_bytes(addr, "/snapshot/demo.jpg")?;
        vswa::codec::decode(&body).ok()
    });
    assert_eq!((snapshot.width, snapshot.height), (320, 240));
}

/// GET over HTTP/1.0; the body of a 200.
fn http_get_bytes(addr: std::net::SocketAddr, path: &str) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    (resp.starts_with(b"HTTP/1.1 200") || resp.starts_with(b"HTTP/1.0 200"))
        .then(|| resp[split + 4..].to_vec())
}
