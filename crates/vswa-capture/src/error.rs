//! The error type of this crate.

use std::path::PathBuf;

use vswa_protocol::recording::RecordingError;

/// Why a source could not be opened or stopped delivering frames.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A source spec string is not one of the known forms.
    #[error(
        "unknown source {spec:?}: use test, camera, camera:INDEX, mjpeg:- (stdin), mjpeg:PATH, h264:- (stdin), h264:PATH or replay:FILE"
    )]
    InvalidSpec {
        /// The rejected spec.
        spec: String,
    },
    /// The source configuration is unusable (zero size, non-positive frame rate).
    #[error("invalid source configuration: {0}")]
    InvalidConfig(String),
    /// A device stayed missing longer than it was allowed to (`--camera-wait`).
    #[error("{0}")]
    DeviceMissing(String),
    /// The camera source was requested but this build has no camera backend.
    #[error("built without camera support; rebuild with --features camera")]
    CameraUnsupported,
    /// The camera could not be opened or stopped delivering frames.
    #[error("camera {index}: {message}")]
    Camera {
        /// The camera index.
        index: u32,
        /// What the camera backend reported.
        message: String,
    },
    /// Opening or reading a file or stdin failed.
    #[error("{what}: {error}")]
    Io {
        /// What was being read (`stdin` or a path).
        what: String,
        /// The underlying error (part of the message, so not also a `source`).
        error: std::io::Error,
    },
    /// A recording file is not usable.
    #[error("replay of {path}: {error}")]
    Recording {
        /// The recording's path.
        path: PathBuf,
        /// What is wrong with it (part of the message).
        error: RecordingError,
    },
    /// An MJPEG input ended without a single whole JPEG in it (text, garbage, nothing,
    /// or a picture cut off): there was nothing to send.
    #[error("no JPEG found in {} ({bytes} bytes read)", input_name(what))]
    NoJpeg {
        /// What was read (`stdin` or a path).
        what: String,
        /// Bytes read before the input ended.
        bytes: u64,
    },
    /// An H.264 input ended without a single whole access unit in it: there was
    /// nothing to send.
    #[error("no H.264 access unit found in {} ({bytes} bytes read; expected an Annex B byte stream, e.g. from `ffmpeg ... -f h264 -`)", input_name(what))]
    NoH264 {
        /// What was read (`stdin` or a path).
        what: String,
        /// Bytes read before the input ended.
        bytes: u64,
    },
    /// H.264 encoding was asked for, but this build has no H.264 encoder.
    #[error("H.264 encoding needs a build with the `h264` feature (cargo build --release -p vswa-send --features h264); H.264 input (h264:-, replays) passes through without it")]
    H264Unsupported,
    /// The H.264 encoder could not be set up or failed for good.
    #[error("H.264 encoder: {0}")]
    Encoder(String),
    /// A recording holds no frame to replay.
    #[error("replay of {}: {reason}", path.display())]
    EmptyRecording {
        /// The recording's path.
        path: PathBuf,
        /// What it holds instead: nothing at all, only a file header, other codecs.
        reason: &'static str,
    },
    /// A thread of the capture pipeline panicked (a bug; the message names the thread).
    #[error("the {thread} thread panicked")]
    Panicked {
        /// Which thread.
        thread: String,
    },
    /// A JPEG in an MJPEG stream grew past the size limit without ending; its bytes
    /// were discarded and splitting resumes at the next start-of-image marker.
    #[error("JPEG at stream offset {offset} exceeds the {max}-byte frame limit; skipped")]
    FrameTooLarge {
        /// Stream offset of the JPEG's start-of-image marker.
        offset: u64,
        /// The configured limit.
        max: usize,
    },
}

/// How a message names an input: a path as it is; stdin, which a user piped into the
/// program rather than named, as "input".
fn input_name(what: &str) -> &str {
    if what == "stdin" {
        "input"
    } else {
        what
    }
}
