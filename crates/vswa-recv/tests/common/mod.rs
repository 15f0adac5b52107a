//! Harness for vswa-recv's end-to-end tests: [`vswa_testkit`] (the real relay on a
//! loopback port chosen at run time, time-limited runs, children killed on drop) plus
//! shortcuts for running `vswa-recv` and `vswa-send`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

pub use vswa_testkit::*;

/// The `vswa-recv` binary under test.
pub fn recv_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vswa-recv"))
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

/// Runs `vswa-recv ARGS` within `limit`.
pub fn run_recv(args: &[&str], limit: Duration) -> Finished {
    run_with_limit(&mut recv(args), limit)
}

/// Runs `vswa-send ARGS` to completion within `limit` and asserts success.
pub fn run_send(args: &[&str], limit: Duration) {
    let done = run_with_limit(
        Command::new(bin("vswa-send"))
            .args(args)
            .arg("--quiet")
            .env_remove("VSWA_TOKEN")
            .stdin(Stdio::null()),
        limit,
    );
    assert!(done.status.success(), "vswa-send failed:\n{}", done.stderr);
}
