//! Plumbing shared by the VSWA command-line programs, so each `main` stays a few lines:
//! argument errors as one line, logging to stderr, and the shutdown signal.

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
            eprintln!("{program}: error: {message} (see --help)");
            std::process::exit(2);
        }
    }
}

/// Parses a picture size `WIDTHxHEIGHT` (each 1-65535), for clap's `value_parser`.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
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
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err(format!(
            "{s:?}: width and height must be whole numbers from 1 to 65535"
        )),
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
        assert_eq!(super::parse_size("640x480"), Ok((640, 480)));
        assert_eq!(super::parse_size("1X2"), Ok((1, 2)));
        for bad in ["0x0", "640", "x480", "70000x1", "-1x5", "axb"] {
            assert!(super::parse_size(bad).is_err(), "{bad}");
        }
    }
}
