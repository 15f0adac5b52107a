//! `vswa-bench`: parses the command line and runs [`vswa_bench::cli::run`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = vswa_bench::cli::Cli::parse();
    // Thousands of viewer sockets need more than the usual 1024 descriptors.
    match vswa_bench::raise_fd_limit() {
        Ok(limit) if limit < 4096 => {
            eprintln!("vswa-bench: warning: open-file limit is only {limit}; large runs will fail to connect");
        }
        Ok(_) => {}
        Err(e) => eprintln!("vswa-bench: warning: cannot raise the open-file limit: {e}"),
    }
    vswa_cli::run("vswa-bench", vswa_bench::cli::run(cli), |_| 1, |()| 0)
}
