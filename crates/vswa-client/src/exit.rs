//! Process exit statuses of the programs built on these clients (`vswa-send`,
//! `vswa-recv`): one table, so the same cause gives the same status in both. The
//! libraries' error types map themselves onto it (`exit_code()`).

/// Stopped as asked: the source or stream ended, a count or duration was reached, a
/// pipe was closed by its reader, Ctrl-C.
pub const OK: u8 = 0;
/// An unexpected internal failure.
pub const FAILURE: u8 = 1;
/// Bad command line or URL (an invalid stream name included), found before connecting.
pub const USAGE: u8 = 2;
/// The relay refused: wrong token, busy stream, limits, a frame it would not take.
pub const REFUSED: u8 = 3;
/// The relay could not be reached within the connect or reconnect timeout.
pub const UNREACHABLE: u8 = 4;
/// A file, pipe or device could not be used: a source that cannot be read or holds
/// nothing to send, an output that cannot be written.
pub const IO: u8 = 5;
/// `vswa-recv`'s name for [`IO`]: an output (`--out-dir`, `--record`, `--mjpeg`,
/// `--display`) cannot be used.
pub const OUTPUT: u8 = IO;
