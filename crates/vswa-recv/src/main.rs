//! `vswa-recv`: parses the command line into a [`vswa_recv::RecvConfig`] and runs
//! [`vswa_recv::run`].

use std::io::Write;
use std::process::ExitCode;

use vswa_cli as cli;
use vswa_recv::args::Args;
use vswa_recv::{exit, RecvError};

/// After a signal, how long the receive loop gets to stop by itself before the process
/// ends anyway.
const BLOCKED_OUTPUT_GRACE: std::time::Duration = std::time::Duration::from_millis(1500);

fn main() -> ExitCode {
    let args: Args = cli::parse_args("vswa-recv");
    // Warnings include each failed connection attempt while retrying.
    cli::init_tracing("warn");
    let work = async {
        // Outputs are written in the receive loop; one blocked for good (a full pipe
        // nobody reads) would keep it from seeing a signal. This watchdog, on another
        // thread, ends the process shortly after a signal whatever the loop is doing.
        tokio::spawn(async {
            cli::shutdown_signal().await;
            tokio::time::sleep(BLOCKED_OUTPUT_GRACE).await;
            cli::say!("vswa-recv: stopped while an output was blocked; it may end mid-frame");
            std::process::exit(i32::from(exit::OK));
        });
        let summary = vswa_recv::run(args.config()?, cli::shutdown_signal()).await?;
        cli::say!("vswa-recv: {}", summary.line());
        if args.stats_json {
            let json = serde_json::to_string(&summary)
                .map_err(|e| RecvError::Internal(format!("cannot format the summary: {e}")))?;
            // A closed stdout is the reader's business, not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{json}");
        }
        Ok::<_, RecvError>(())
    };
    cli::run("vswa-recv", work, RecvError::exit_code, |()| exit::OK)
}
