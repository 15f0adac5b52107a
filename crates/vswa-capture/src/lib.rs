//! Video sources for VSWA.
//!
//! A [`Source`] delivers [`CapturedFrame`]s: raw pictures for the encoder, or JPEGs that
//! can be sent as they are. [`open`] builds one from a [`SourceSpec`] (the `--source`
//! strings of `vswa-send`):
//!
//! | spec | source |
//! |---|---|
//! | `test` | [`TestPattern`]: colour bars, a bouncing box, frame counter and UTC clock |
//! | `camera`, `camera:INDEX` | a webcam through nokhwa (cargo feature `camera`), wrapped in [`Resilient`] so unplugging yields "NO SIGNAL" frames until it returns |
//! | `mjpeg:-`, `mjpeg:PATH` | [`MjpegSource`]: concatenated JPEGs from stdin or a file, split by [`MjpegSplitter`] |
//! | `h264:-`, `h264:PATH` | [`H264Source`]: an H.264 Annex B byte stream, passed through one access unit per frame |
//! | `replay:FILE` | [`ReplaySource`]: the frames of a VSWA recording (any codec), at their recorded pace |
//!
//! Sources block until their next frame is due; [`CaptureThread`] runs one on its own
//! thread behind a bounded channel. The [`pipeline`] puts capture and `vswa-codec`'s
//! encoder pool together (capture -> encode -> frames in order), for `vswa-send` and the
//! relay's demo stream alike; sending is left to `vswa-client`.
//!
//! ```
//! use vswa_capture::{open, FrameContent, SourceConfig, SourceSpec};
//!
//! let spec: SourceSpec = "test".parse()?;
//! let cfg = SourceConfig { width: 160, height: 120, fps: Some(1000.0), ..SourceConfig::default() };
//! let mut source = open(&spec, &cfg)?;
//! let frame = source.next_frame()?.expect("the test pattern never ends");
//! assert!(matches!(frame.content, FrameContent::Image(ref image) if image.width == 160));
//! # Ok::<(), vswa_capture::CaptureError>(())
//! ```
#![warn(missing_docs)]

#[cfg(feature = "camera")]
mod camera;
mod error;
mod font;
mod h264;
mod mjpeg;
mod pacing;
pub mod pipeline;
mod replay;
mod resilient;
mod test_pattern;
mod thread;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use bytes::Bytes;

#[cfg(feature = "camera")]
pub use camera::CameraSource;
pub use error::CaptureError;
pub use h264::H264Source;
pub use mjpeg::{MjpegSource, MjpegSplitter, DEFAULT_MAX_JPEG_LEN};
pub use pipeline::{
    frames_for, OpenedSource, Pipeline, PipelineConfig, PipelineStats, VideoCodec, DEFAULT_BACKLOG,
    DEFAULT_H264_BITRATE_KBPS, DEFAULT_KEYFRAME_INTERVAL,
};
pub use replay::ReplaySource;
pub use resilient::Resilient;
pub use test_pattern::{placeholder_image, TestPattern};
pub use thread::{CaptureEnd, CaptureThread, RecvTimeoutError};

/// Wall-clock time in microseconds since the UNIX epoch (0 if the clock is before 1970).
pub fn now_us() -> u64 {
    vswa_protocol::timestamp_us(std::time::SystemTime::now())
}

/// What a source captured.
#[derive(Debug, Clone)]
pub enum FrameContent {
    /// Raw pixels, to be encoded.
    Image(vswa_codec::Image),
    /// An already encoded JPEG, to be sent as it is.
    Jpeg {
        /// The JPEG, SOI to EOI.
        data: Bytes,
        /// Width in pixels (0 if unknown).
        width: u16,
        /// Height in pixels (0 if unknown).
        height: u16,
    },
    /// An already encoded H.264 access unit (Annex B), to be sent as it is.
    H264 {
        /// The access unit, from its first start code.
        data: Bytes,
        /// Whether it holds an IDR picture (a decoder can start here).
        keyframe: bool,
        /// Width in pixels from the stream's SPS (0 if unknown).
        width: u16,
        /// Height in pixels (0 if unknown).
        height: u16,
    },
}

/// One frame from a source.
#[derive(Debug, Clone)]
pub struct CapturedFrame {
    /// Capture time, microseconds since the UNIX epoch.
    pub timestamp_us: u64,
    /// The picture.
    pub content: FrameContent,
    /// A stand-in picture ("NO SIGNAL") rather than real video.
    pub placeholder: bool,
}

/// A producer of frames.
pub trait Source: Send {
    /// A one-line description for logs, e.g. `test pattern 640x480 @ 30 fps`.
    fn describe(&self) -> String;

    /// Whether frames are happening in real time. Live sources have their frames
    /// dropped when downstream is slow; others (files, pipes, replays) are made to wait.
    fn is_live(&self) -> bool;

    /// Blocks until the next frame is due and returns it; `Ok(None)` at the end of the
    /// input.
    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, CaptureError>;
}

impl fmt::Debug for dyn Source {
    // Lets `Box<dyn Source>` appear in `Debug` output and `Result::unwrap_err`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Source({:?})", self.describe())
    }
}

/// Which source to open, as written on a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `test`: the moving test pattern.
    Test,
    /// `camera` or `camera:INDEX`.
    Camera {
        /// Camera index (0 for the first).
        index: u32,
    },
    /// `mjpeg:-` or `mjpeg:PATH`.
    Mjpeg {
        /// The file to read; `None` is stdin.
        path: Option<PathBuf>,
    },
    /// `h264:-` or `h264:PATH`.
    H264 {
        /// The file to read; `None` is stdin.
        path: Option<PathBuf>,
    },
    /// `replay:FILE`.
    Replay {
        /// The recording.
        path: PathBuf,
    },
}

impl FromStr for SourceSpec {
    type Err = CaptureError;

    fn from_str(s: &str) -> Result<SourceSpec, CaptureError> {
        let invalid = || CaptureError::InvalidSpec { spec: s.to_owned() };
        let (kind, arg) = match s.split_once(':') {
            Some((kind, arg)) => (kind, Some(arg)),
            None => (s, None),
        };
        match (kind, arg) {
            ("test", None) => Ok(SourceSpec::Test),
            ("camera", None) => Ok(SourceSpec::Camera { index: 0 }),
            ("camera", Some(index)) => index
                .parse()
                .map(|index| SourceSpec::Camera { index })
                .map_err(|_| invalid()),
            ("mjpeg", Some("-")) => Ok(SourceSpec::Mjpeg { path: None }),
            ("mjpeg", Some(path)) if !path.is_empty() => Ok(SourceSpec::Mjpeg {
                path: Some(path.into()),
            }),
            ("h264", Some("-")) => Ok(SourceSpec::H264 { path: None }),
            ("h264", Some(path)) if !path.is_empty() => Ok(SourceSpec::H264 {
                path: Some(path.into()),
            }),
            ("replay", Some(path)) if !path.is_empty() => {
                Ok(SourceSpec::Replay { path: path.into() })
            }
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for SourceSpec {
    /// The spec string [`FromStr`] parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Test => f.write_str("test"),
            SourceSpec::Camera { index } => write!(f, "camera:{index}"),
            SourceSpec::Mjpeg { path: None } => f.write_str("mjpeg:-"),
            SourceSpec::Mjpeg { path: Some(path) } => write!(f, "mjpeg:{}", path.display()),
            SourceSpec::H264 { path: None } => f.write_str("h264:-"),
            SourceSpec::H264 { path: Some(path) } => write!(f, "h264:{}", path.display()),
            SourceSpec::Replay { path } => write!(f, "replay:{}", path.display()),
        }
    }
}

/// Settings shared by all sources.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// Picture width for sources that choose it (test pattern, camera request,
    /// placeholders).
    pub width: u32,
    /// Picture height, likewise.
    pub height: u32,
    /// Frames per second; `None` is the source's default: 30 for the test pattern,
    /// cameras, MJPEG and H.264 files, arrival time for MJPEG and H.264 on stdin, the recorded pace for
    /// replays.
    pub fps: Option<f64>,
    /// Start a replay over when it reaches the end.
    pub loop_replay: bool,
    /// How long a camera may be missing (not there at start, or unplugged) before the
    /// source fails; `None` waits for it forever, sending "NO SIGNAL" frames.
    pub camera_wait: Option<std::time::Duration>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            width: 640,
            height: 480,
            fps: None,
            loop_replay: false,
            camera_wait: None,
        }
    }
}

/// Frame rate of sources that need one when none is configured.
const DEFAULT_FPS: f64 = 30.0;

/// Opens the source `spec` names.
pub fn open(spec: &SourceSpec, cfg: &SourceConfig) -> Result<Box<dyn Source>, CaptureError> {
    match spec {
        SourceSpec::Test => Ok(Box::new(TestPattern::new(
            cfg.width,
            cfg.height,
            cfg.fps.unwrap_or(DEFAULT_FPS),
        )?)),
        SourceSpec::Camera { index } => open_camera(*index, cfg),
        SourceSpec::Mjpeg { path: None } => Ok(Box::new(MjpegSource::new(
            Box::new(std::io::stdin()),
            "stdin",
            cfg.fps,
        )?)),
        SourceSpec::Mjpeg { path: Some(path) } => {
            let file = std::fs::File::open(path).map_err(|source| CaptureError::Io {
                what: path.display().to_string(),
                error: source,
            })?;
            Ok(Box::new(MjpegSource::new(
                Box::new(std::io::BufReader::new(file)),
                path.display().to_string(),
                Some(cfg.fps.unwrap_or(DEFAULT_FPS)),
            )?))
        }
        SourceSpec::H264 { path: None } => Ok(Box::new(H264Source::new(
            Box::new(std::io::stdin()),
            "stdin",
            cfg.fps,
        )?)),
        SourceSpec::H264 { path: Some(path) } => {
            let file = std::fs::File::open(path).map_err(|source| CaptureError::Io {
                what: path.display().to_string(),
                error: source,
            })?;
            Ok(Box::new(H264Source::new(
                Box::new(std::io::BufReader::new(file)),
                path.display().to_string(),
                Some(cfg.fps.unwrap_or(DEFAULT_FPS)),
            )?))
        }
        SourceSpec::Replay { path } => Ok(Box::new(ReplaySource::open(
            path,
            cfg.fps,
            cfg.loop_replay,
        )?)),
    }
}

#[cfg(feature = "camera")]
fn open_camera(index: u32, cfg: &SourceConfig) -> Result<Box<dyn Source>, CaptureError> {
    test_pattern::check_size(cfg.width, cfg.height)?;
    let fps = cfg.fps.unwrap_or(DEFAULT_FPS);
    test_pattern::check_fps(fps)?;
    let (width, height) = (cfg.width, cfg.height);
    let open = move || -> Result<Box<dyn Source>, CaptureError> {
        Ok(Box::new(CameraSource::open(
            index,
            width,
            height,
            fps.round() as u32,
        )?))
    };
    Ok(Box::new(
        Resilient::new(format!("camera {index}"), width, height, open)
            .with_give_up(cfg.camera_wait),
    ))
}

#[cfg(not(feature = "camera"))]
fn open_camera(_index: u32, _cfg: &SourceConfig) -> Result<Box<dyn Source>, CaptureError> {
    Err(CaptureError::CameraUnsupported)
}
