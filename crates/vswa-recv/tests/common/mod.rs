//! Harness for end-to-end tests: the real `vswa-relay` on a loopback port chosen at run
//! time, `vswa-recv` runs with time limits, and children killed on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The `vswa-recv` binary under test.
pub fn recv_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vswa-recv"))
}

/// A workspace binary next to `vswa-recv` (cargo puts all of them in one directory),
/// built once with `cargo build -p NAME` if it is missing.
pub fn sibling_bin(name: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let dir = recv_bin()
        .parent()
        .expect("binary has a directory")
        .to_path_buf();
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", name, "--bin", name])
            .status();
        assert!(
            matches!(status, Ok(s) if s.success()) && path.exists(),
            "{name} is missing at {} and `cargo build -p {name}` failed; build it first \
             (`cargo test --workspace` builds every binary)",
            path.display()
        );
    }
    path
}

/// A child process killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    pub child: Guard,
    pub addr: SocketAddr,
    pub stderr: Arc<Mutex<String>>,
}

impl Relay {
    /// Starts `vswa-relay --listen 127.0.0.1:0 ARGS` and waits for its address.
    pub fn start(args: &[&str]) -> Relay {
        Relay::start_on("127.0.0.1:0", args)
    }

    /// Starts a relay on `listen` (e.g. the port of a relay that was stopped).
    pub fn start_on(listen: &str, args: &[&str]) -> Relay {
        let mut child = Command::new(sibling_bin("vswa-relay"))
            .args(["--listen", listen])
            .args(args)
            .env_remove("VSWA_VIEW_TOKEN")
            .env_remove("VSWA_PUBLISH_TOKEN")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vswa-relay");
        let stderr = child.stderr.take().expect("piped stderr");
        let child = Guard(child);
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let thread_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("vswa-relay: listening on http://") {
                    let _ = tx.send(addr.trim().to_string());
                }
                let mut log = thread_log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr.parse().expect("relay prints a socket address"),
            Err(_) => panic!(
                "relay did not start listening; stderr:\n{}",
                log.lock().unwrap()
            ),
        };
        Relay {
            child,
            addr,
            stderr: log,
        }
    }

    /// Starts a relay publishing its cheap 320x240 demo pattern at 60 fps.
    pub fn demo() -> Relay {
        Relay::start(DEMO_ARGS)
    }

    /// The viewer URL of stream `name`.
    pub fn watch_url(&self, name: &str) -> String {
        format!("ws://{}/ws/watch/{name}", self.addr)
    }

    /// The publisher URL of stream `name`.
    pub fn publish_url(&self, name: &str) -> String {
        format!("ws://{}/ws/publish/{name}", self.addr)
    }
}

/// Arguments for a relay with a small, fast demo stream.
pub const DEMO_ARGS: &[&str] = &["--demo", "--demo-size", "320x240", "--demo-fps", "60"];
/// Size of the demo stream in [`DEMO_ARGS`].
pub const DEMO_SIZE: (u32, u32) = (320, 240);

/// What a finished `vswa-recv` left.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Finished {
    /// The exit code (panics if killed by a signal).
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("vswa-recv died by a signal; stderr:\n{}", self.stderr))
    }

    /// The last non-empty stderr line.
    pub fn last_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
    }

    /// Asserts exit 0.
    pub fn assert_ok(&self) {
        assert_eq!(self.code(), 0, "vswa-recv failed; stderr:\n{}", self.stderr);
        assert_no_panic(&self.stderr);
    }
}

/// Asserts the program did not panic.
pub fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "vswa-recv panicked:\n{stderr}"
    );
}

/// A `vswa-recv` command with a clean environment.
pub fn recv(args: &[&str]) -> Command {
    let mut cmd = Command::new(recv_bin());
    cmd.args(args)
        .env_remove("VSWA_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to completion within `limit`, capturing stdout (unless redirected
/// already) and stderr; kills it and panics on timeout.
pub fn run_with_limit(mut cmd: Command, limit: Duration) -> Finished {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vswa-recv");
    let out = child.stdout.take().map(read_in_thread);
    let err = read_in_thread(child.stderr.take().expect("piped stderr"));
    let mut child = Guard(child);
    let status = wait_with_limit(&mut child.0, limit);
    let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    let Some(status) = status else {
        panic!("vswa-recv did not finish within {limit:?}; stderr:\n{stderr}");
    };
    Finished {
        status,
        stdout: out.map(|h| h.join().unwrap()).unwrap_or_default(),
        stderr,
    }
}

/// Runs `vswa-recv ARGS` within `limit`.
pub fn run_recv(args: &[&str], limit: Duration) -> Finished {
    run_with_limit(recv(args), limit)
}

/// Waits for `child` up to `limit`; kills it and returns `None` on timeout.
pub fn wait_with_limit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads a pipe to its end on a thread.
pub fn read_in_thread(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Polls `f` every 50 ms until it returns `Some`, or panics with `what` after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh empty directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("vswa-recv-test-{}-{label}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// True if `tool` can be run; otherwise prints why the test is skipped, or panics when
/// `VSWA_REQUIRE_TOOLS=1`.
pub fn have_tool(tool: &str, probe_arg: &str) -> bool {
    let ok = Command::new(tool)
        .arg(probe_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        assert!(
            std::env::var("VSWA_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "{tool} is required (VSWA_REQUIRE_TOOLS=1) but cannot be run"
        );
        eprintln!("SKIPPED: {tool} is not installed");
    }
    ok
}

/// GET `path` from the relay over plain HTTP/1.0; the body on 200, else `None`.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}

/// Waits until stream `name` on `relay` has at least one viewer.
pub fn wait_for_viewer(relay: &Relay, name: &str) {
    wait_for(Duration::from_secs(30), "a viewer on the relay", || {
        let body = http_get(relay.addr, &format!("/api/streams/{name}"))?;
        let info: serde_json::Value = serde_json::from_str(&body).ok()?;
        (info["viewers"].as_u64()? >= 1).then_some(())
    });
}

/// Runs `vswa-send ARGS` to completion within `limit` and asserts success.
pub fn run_send(args: &[&str], limit: Duration) {
    let mut cmd = Command::new(sibling_bin("vswa-send"));
    cmd.args(args)
        .arg("--quiet")
        .env_remove("VSWA_TOKEN")
        .stdin(Stdio::null());
    let done = run_with_limit(cmd, limit);
    assert!(done.status.success(), "vswa-send failed:\n{}", done.stderr);
}
