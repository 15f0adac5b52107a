//! The error of the outputs, shared by the file sinks and the display window (kept apart
//! from both so neither module depends on the other for it).

use std::io;
use std::path::PathBuf;

/// Problems with an output.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The `--out-dir` directory cannot be created or written.
    #[error("cannot write to output directory {}: {error}", path.display())]
    OutDir {
        /// The file or directory that failed.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The `--out-dir` path exists and is not a directory (a regular file, say).
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The `--record` file cannot be created or written.
    #[error("cannot write recording {}: {error}", path.display())]
    Record {
        /// The recording path.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The `--mjpeg` output cannot be created or written.
    #[error("cannot write MJPEG output {target}: {error}")]
    Mjpeg {
        /// The path, or `stdout`.
        target: String,
        /// Why.
        error: io::Error,
    },
    /// The `--h264` output cannot be created or written.
    #[error("cannot write H.264 output {target}: {error}")]
    H264 {
        /// The path, or `stdout`.
        target: String,
        /// Why.
        error: io::Error,
    },
    /// The reader of the `--mjpeg` or `--h264` pipe went away; not a failure, just the
    /// end.
    #[error("the reader of the output closed the pipe")]
    PipeClosed,
    /// An output cannot take the stream's codec (`--mjpeg` of H.264, `--h264` of
    /// JPEG), or this build cannot decode it (`--out-dir` or `--display` of H.264
    /// without the `h264` feature). The message says which and what to use instead.
    #[error("{0}")]
    Codec(String),
    /// The `--display` window could not be opened or failed.
    #[error("display: {0}")]
    Display(String),
}
