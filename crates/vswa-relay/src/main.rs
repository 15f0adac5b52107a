//! `vswa-relay`: parses the command line into a [`vswa_relay::RelayConfig`] and runs
//! [`vswa_relay::run`] until SIGINT or SIGTERM (or mints a token).

use std::process::ExitCode;

use vswa_cli as cli;
use vswa_relay::args::{Args, Command};

fn main() -> ExitCode {
    let args: Args = cli::parse_args("vswa-relay");
    if let Some(Command::Token(token)) = &args.command {
        return match token.mint() {
            Ok(jwt) => {
                use std::io::Write;
                // A closed stdout loses the token; say so instead of panicking.
                match writeln!(std::io::stdout(), "{jwt}") {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        cli::say!("vswa-relay: error: cannot write the token: {e}");
                        ExitCode::from(5)
                    }
                }
            }
            Err(e) => {
                cli::say!("vswa-relay: error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    cli::init_tracing("info");
    let work = async {
        let config = args.config()?;
        vswa_relay::run(config, cli::shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    };
    cli::run_with_workers("vswa-relay", Some(args.workers()), work, |_| 1, |()| 0)
}
