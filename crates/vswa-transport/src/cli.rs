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

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` or else `default`.
pub fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
