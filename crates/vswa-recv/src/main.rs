//! `vswa-recv`: parses the command line into a [`vswa_recv::RecvConfig`] and runs
//! [`vswa_recv::run`].

use std::io::Write;
use std::process::ExitCode;

use vswa_cli as cli;
use vswa_recv::args::Args;
use vswa_recv::{exit, RecvError};

fn main() -> ExitCode {
    let args: Args = cli::parse_args("vswa-recv");
    // Warnings include each failed connection attempt while retrying.
    cli::init_tracing("warn");
    let work = async {
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
