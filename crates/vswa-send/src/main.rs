//! `vswa-send`: parses the command line into a [`vswa_send::SendConfig`] and runs
//! [`vswa_send::run`].

use std::io::IsTerminal;
use std::process::ExitCode;

use vswa_capture::OpenedSource;
use vswa_cli as cli;
use vswa_send::args::Args;
use vswa_send::{exit, SendError, SendStatus};

const DEFAULT_LOG: &str = "warn,vswa_client=info,vswa_send=info";

fn main() -> ExitCode {
    let args: Args = cli::parse_args("vswa-send");
    cli::init_tracing(DEFAULT_LOG);
    let show = !args.quiet && std::io::stderr().is_terminal();
    let work = async {
        let config = args.config().map_err(SendError::Config)?;
        let url = config.publisher.connect.display_url();
        let on_open = |s: &OpenedSource| cli::say!("vswa-send: {} -> {url}", s.describe());
        let status = |s: &SendStatus| {
            if show {
                use std::io::Write;
                // A closed stderr loses the status line, nothing else.
                let _ = write!(std::io::stderr(), "\r{}\x1b[K", s.line());
            }
        };
        let summary = vswa_send::run(config, cli::shutdown_signal(), on_open, status).await;
        if show {
            cli::say!("");
        }
        summary
    };
    let done = |mut summary: SendStatus| {
        summary.publisher.connected = true;
        cli::say!("vswa-send: done: {}", summary.line().trim_start());
        if summary.dropped() > 0 {
            cli::say!(
                "vswa-send: dropped {} before encoding (capture outran the encoder), {} at the network queue",
                summary.pipeline.dropped, summary.publisher.dropped
            );
        }
        exit::OK
    };
    cli::run("vswa-send", work, SendError::exit_code, done)
}
