//! Test support shared by the workspace's end-to-end tests (a dev-dependency only).
//!
//! Tests start the real binaries: [`Relay`] runs `vswa-relay` on a loopback port the
//! kernel picks and reads the address from its "listening on" line; [`run_with_limit`]
//! runs any program with a time limit; [`wait_for`] (and [`wait_for_async`]) wait for a
//! condition with a deadline instead of sleeping "long enough"; every child is killed
//! and reaped on drop, so a failing test never leaves processes behind. When a test panics, the relay's last
//! log lines are printed to help find out why.

pub mod nats;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The path of workspace binary `name`. Binaries live next to the test executable's
/// `deps/` directory (`target/debug/`); `VSWA_<NAME>_BIN` (e.g. `VSWA_RELAY_BIN`)
/// overrides the location. Panics with a clear message when it is missing: a nested
/// `cargo build` from inside `cargo test` would wait for cargo's build lock forever, and
/// `cargo test --workspace` builds every binary first anyway.
pub fn bin(name: &str) -> PathBuf {
    let var = format!(
        "VSWA_{}_BIN",
        name.trim_start_matches("vswa-")
            .to_uppercase()
            .replace('-', "_")
    );
    if let Some(path) = std::env::var_os(&var).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/debug/deps/TEST-HASH -> target/debug
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable is in a target directory");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: build it first (`cargo build --workspace`, or run the tests with \
         `cargo test --workspace`, which builds every binary), or set {var}",
        path.display()
    );
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

/// Arguments for a relay with a small, fast demo stream.
pub const DEMO_ARGS: &[&str] = &["--demo", "--demo-size", "320x240", "--demo-fps", "60"];
/// Size of the demo stream in [`DEMO_ARGS`].
pub const DEMO_SIZE: (u32, u32) = (320, 240);

/// A running `vswa-relay` on loopback, killed on drop.
#[derive(Debug)]
pub struct Relay {
    /// The relay process.
    pub child: Guard,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `addr`'s port.
    pub port: u16,
    log: Arc<Mutex<String>>,
}

impl Relay {
    /// Starts `vswa-relay --listen 127.0.0.1:0 ARGS` and waits for its address.
    pub fn start(args: &[&str]) -> Relay {
        Relay::start_on("127.0.0.1:0", args)
    }

    /// Starts a relay with the small demo stream of [`DEMO_ARGS`].
    pub fn demo() -> Relay {
        Relay::start(DEMO_ARGS)
    }

    /// Starts a relay on `listen` (e.g. the address of a relay that was stopped), with
    /// the token variables removed from its environment and `RUST_LOG=info`.
    pub fn start_on(listen: &str, args: &[&str]) -> Relay {
        let mut cmd = Command::new(bin("vswa-relay"));
        cmd.args(["--listen", listen])
            .args(args)
            .env_remove("VSWA_VIEW_TOKEN")
            .env_remove("VSWA_WATCH_TOKEN")
            .env_remove("VSWA_PUBLISH_TOKEN")
            .env_remove("VSWA_TOKEN_SECRET")
            .env("RUST_LOG", "info");
        Relay::spawn(cmd)
    }

    /// Starts `cmd` (a `vswa-relay` command line that listens on a free port) and waits
    /// up to 30 s for its "listening on" line.
    pub fn spawn(mut cmd: Command) -> Relay {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vswa-relay");
        let stderr = child.stderr.take().expect("piped stderr");
        // The guard exists before anything can fail, so the child is always reaped.
        let child = Guard(child);
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let thread_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // "listening on http://ADDR" (or https://).
                if let Some((_, rest)) = line.split_once("listening on ") {
                    let url = rest.split_whitespace().next().unwrap_or("");
                    if let Some((_, addr)) = url.split_once("://") {
                        let _ = tx.send(addr.to_string());
                    }
                }
                let mut log = thread_log.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr: SocketAddr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr.parse().expect("relay prints a socket address"),
            Err(_) => panic!(
                "relay did not start listening within 30 s; stderr:\n{}",
                log.lock().unwrap_or_else(|e| e.into_inner())
            ),
        };
        Relay {
            child,
            port: addr.port(),
            addr,
            log,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// `ws://ADDR` + `path`.
    pub fn ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// `http://ADDR` + `path`.
    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The viewer URL of stream `name`.
    pub fn watch_url(&self, name: &str) -> String {
        self.ws(&format!("/ws/watch/{name}"))
    }

    /// The publisher URL of stream `name`.
    pub fn publish_url(&self, name: &str) -> String {
        self.ws(&format!("/ws/publish/{name}"))
    }

    /// What the relay has written to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends SIGTERM and waits (at most 10 s) for the process to exit.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- last lines of the relay's log ----\n{}",
                lines[lines.len().saturating_sub(30)..].join("\n")
            );
        }
    }
}

/// What a finished program left.
#[derive(Debug)]
pub struct Finished {
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output (empty when it was not piped here).
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: String,
}

impl Finished {
    /// The exit code (panics if the program was killed by a signal).
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal; stderr:\n{}", self.stderr))
    }

    /// Standard output as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The last non-empty stderr line.
    pub fn last_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
    }

    /// Asserts exit 0 and no panic.
    pub fn assert_ok(&self) {
        assert_eq!(
            self.code(),
            0,
            "the program failed; stderr:\n{}",
            self.stderr
        );
        assert_no_panic(&self.stderr);
    }
}

/// Asserts a program's stderr shows no panic or backtrace.
pub fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "the program panicked:\n{stderr}"
    );
}

/// Runs `cmd` to completion within `limit`, capturing stdout and stderr (stdin is left
/// as the command set it: inherited unless the caller chose otherwise); kills it and
/// panics on timeout.
pub fn run_with_limit(cmd: &mut Command, limit: Duration) -> Finished {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let out = child.stdout.take().map(read_in_thread);
    let err = read_in_thread(child.stderr.take().expect("piped stderr"));
    let mut child = Guard(child);
    let status = wait_with_limit(&mut child.0, limit);
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    let Some(status) = status else {
        panic!("{cmd:?} did not finish within {limit:?}; stderr:\n{stderr}");
    };
    Finished {
        status,
        stdout: out
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default(),
        stderr,
    }
}

/// How soon a program must exit after SIGINT or SIGTERM, in every state (issue 16).
pub const SIGNAL_EXIT_LIMIT: Duration = Duration::from_secs(2);

/// Sends `sig` (`"-INT"`, `"-TERM"`) to `child` and checks that it exits within
/// [`SIGNAL_EXIT_LIMIT`] with an exit status (not killed by the signal) and without a
/// panic; `state` names what it was doing, for the failure message. Reads its stderr if
/// that was piped.
pub fn assert_stops_on_signal(mut child: Child, sig: &str, state: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill {sig} failed");
    let status = wait_with_limit(&mut child, SIGNAL_EXIT_LIMIT);
    let stderr = child
        .stderr
        .take()
        .map(|mut e| {
            let mut s = String::new();
            let _ = e.read_to_string(&mut s);
            s
        })
        .unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("{state}: still running {SIGNAL_EXIT_LIMIT:?} after {sig}; stderr:\n{stderr}")
    });
    assert_no_panic(&stderr);
    assert!(
        status.code().is_some(),
        "{state}: killed by a signal instead of exiting: {status:?}\n{stderr}"
    );
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

/// How often [`wait_for`] and [`wait_for_async`] ask again.
const POLL: Duration = Duration::from_millis(50);

/// Polls `f` every 50 ms until it returns `Some`, or panics with `what` after `limit`.
/// Tests wait on the condition they need rather than sleeping "long enough".
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
        std::thread::sleep(POLL);
    }
}

/// [`wait_for`] for async tests (on tokio's clock, without blocking a worker thread):
/// polls `f` every 50 ms until it returns `Some`, or panics with `what` after `limit`.
/// An attempt still running at the deadline is abandoned, so the wait stays bounded.
pub async fn wait_for_async<T>(
    limit: Duration,
    what: &str,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(Some(v)) = tokio::time::timeout_at(deadline, f()).await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A fresh empty directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `vswa-test-PID-LABEL-N` in the temp dir.
    pub fn new(label: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("vswa-test-{}-{label}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The one switch for "missing tools fail instead of skipping": `VSWA_REQUIRE_TOOLS`
/// set to anything but empty or `0` (CI sets it). It covers ffmpeg, ffprobe, the
/// browsers and their WebDriver servers alike.
pub fn tools_required() -> bool {
    std::env::var_os("VSWA_REQUIRE_TOOLS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// True if `tool` can be run; otherwise prints why the test is skipped, or panics when
/// [`tools_required`] (CI sets it, so a missing tool fails instead of skipping).
pub fn have_tool(tool: &str, probe_arg: &str) -> bool {
    let ok = Command::new(tool)
        .arg(probe_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        assert!(
            !tools_required(),
            "{tool} is required (VSWA_REQUIRE_TOOLS is set) but cannot be run"
        );
        eprintln!("SKIPPED: {tool} is not installed");
    }
    ok
}

/// GET `path` over plain HTTP/1.0 (blocking, 5 s limits); the body on a 200, else `None`.
pub fn http_get_body(addr: SocketAddr, path: &str) -> Option<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200")).then(|| body.to_string())
}

/// Waits (at most 30 s) until stream `name` on `relay` has at least one viewer.
pub fn wait_for_viewer(relay: &Relay, name: &str) {
    wait_for(Duration::from_secs(30), "a viewer on the relay", || {
        let body = http_get_body(relay.addr, &format!("/api/streams/{name}"))?;
        let info: serde_json::Value = serde_json::from_str(&body).ok()?;
        (info["viewers"].as_u64()? >= 1).then_some(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_with_limit_captures_output_and_exit_code() {
        let done = run_with_limit(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        );
        assert_eq!(done.code(), 3);
        assert_eq!(done.stdout_text(), "out\n");
        assert_eq!(done.last_line(), "err");
    }

    #[test]
    #[should_panic(expected = "did not finish within")]
    fn run_with_limit_kills_a_program_that_overruns() {
        run_with_limit(Command::new("sleep").arg("30"), Duration::from_millis(200));
    }

    #[tokio::test]
    async fn wait_for_async_returns_once_the_condition_holds() {
        let mut polls = 0;
        let got = wait_for_async(Duration::from_secs(10), "three polls", async || {
            polls += 1;
            (polls == 3).then_some(polls)
        })
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 200ms waiting for never")]
    async fn wait_for_async_panics_at_the_deadline_even_mid_attempt() {
        wait_for_async(Duration::from_millis(200), "never", async || {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Some(())
        })
        .await;
    }

    #[test]
    fn temp_dir_is_removed_on_drop() {
        let dir = TempDir::new("self-test");
        std::fs::write(dir.join("f"), b"x").unwrap();
        let path = dir.path().to_path_buf();
        assert!(path.join("f").is_file());
        drop(dir);
        assert!(!path.exists());
    }
}
