//! Plumbing shared by the VSWA command-line programs, so each `main` stays a few lines:
//! argument errors as one line, value parsers, logging to stderr, the shutdown signal,
//! and the runtime + exit-status boilerplate ([`run`]). Internal: used by the binaries
//! only, never by a library crate.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

/// Writes one line to stderr, like `eprintln!`, but never panics: a closed stderr (a
/// pipe whose reader is gone) is not worth a backtrace, and the program goes on to exit
/// with its documented status.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::write_stderr(format_args!($($arg)*))
    };
}

/// The function behind [`say!`].
pub fn write_stderr(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Parses the command line. `--help` and `--version` print as usual; a bad argument
/// prints one line, `PROGRAM: error: ...`, and exits with status 2.
pub fn parse_args<A: clap::Parser>(program: &str) -> A {
    match A::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // Clap's message is "error: ..." plus indented detail lines (e.g. the
            // missing arguments), then usage; keep the message and details on one line.
            let rendered = e.render().to_string();
            let message: Vec<&str> = rendered
                .lines()
                .skip_while(|l| l.trim().is_empty())
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let message = message.join(" ");
            let message = message.trim_start_matches("error: ");
            say!("{program}: error: {message} (see --help)");
            std::process::exit(2);
        }
    }
}

/// A picture size on the command line, `WIDTHxHEIGHT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// Parses a picture size `WIDTHxHEIGHT` (each 1-65535), for clap's `value_parser`.
pub fn parse_size(s: &str) -> Result<Size, String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT, e.g. 640x480"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=65535).contains(n))
    };
    match (parse(w), parse(h)) {
        (Some(width), Some(height)) => Ok(Size { width, height }),
        _ => Err(format!(
            "{s:?}: width and height must be whole numbers from 1 to 65535"
        )),
    }
}

/// `v` seconds as a [`Duration`], or `--NAME must be a positive number of seconds`.
pub fn positive_seconds(name: &str, v: f64) -> Result<Duration, String> {
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("--{name} must be a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Starts a multi-threaded tokio runtime, runs `work` on it and turns the outcome into
/// the process exit status: `Ok(code)` exits with `code`; an error prints one line,
/// `PROGRAM: error: {error:#}`, and exits with `exit_code(&error)`. The runtime is not
/// waited for beyond 100 ms after `work` ends (a socket being closed must not hold up
/// the exit).
pub fn run<T, E, F>(
    program: &str,
    work: F,
    exit_code: impl FnOnce(&E) -> u8,
    on_success: impl FnOnce(T) -> u8,
) -> ExitCode
where
    F: Future<Output = Result<T, E>>,
    E: Display,
{
    run_with_workers(program, None, work, exit_code, on_success)
}

/// [`run`] on a runtime of `workers` worker threads (`None`: tokio's default, one per
/// core unless `TOKIO_WORKER_THREADS` says otherwise).
pub fn run_with_workers<T, E, F>(
    program: &str,
    workers: Option<usize>,
    work: F,
    exit_code: impl FnOnce(&E) -> u8,
    on_success: impl FnOnce(T) -> u8,
) -> ExitCode
where
    F: Future<Output = Result<T, E>>,
    E: Display,
{
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = workers {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            say!("{program}: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(work);
    runtime.shutdown_timeout(Duration::from_millis(100));
    match outcome {
        Ok(value) => ExitCode::from(on_success(value)),
        Err(e) => {
            say!("{program}: error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` or else `default`; colours
/// only when stderr is a terminal (so log files and pipes get plain text).
pub fn init_tracing(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        // Its own report of a failed write is an `eprint!`, which panics when stderr is
        // closed; a lost log line is not worth a crash.
        .log_internal_errors(false)
        .try_init();
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        let size = |width, height| super::Size { width, height };
        assert_eq!(super::parse_size("640x480"), Ok(size(640, 480)));
        assert_eq!(super::parse_size("1X2"), Ok(size(1, 2)));
        assert_eq!(size(640, 480).to_string(), "640x480");
        for bad in ["0x0", "640", "x480", "70000x1", "-1x5", "axb"] {
            assert!(super::parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn seconds() {
        assert_eq!(
            super::positive_seconds("x", 1.5),
            Ok(std::time::Duration::from_millis(1500))
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = super::positive_seconds("idle-timeout", bad).unwrap_err();
            assert_eq!(err, "--idle-timeout must be a positive number of seconds");
        }
    }
}
