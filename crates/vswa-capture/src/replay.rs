//! The `replay:` source: plays a VSWA recording's JPEG frames again with fresh
//! timestamps, at the pace they were recorded (or a fixed rate), optionally looping.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vswa_protocol::recording::{RecordingError, RecordingReader};
use vswa_protocol::{Codec, Flags};

use crate::pacing::{interval, Pacer};
use crate::{now_us, CaptureError, CapturedFrame, FrameContent, Source};

/// Longest pause replayed between two frames. A recording that spans a publisher
/// outage would otherwise freeze the replay for as long as the outage lasted.
const MAX_GAP: Duration = Duration::from_secs(5);

/// Replays a recording file. A recording with no JPEG frame to play is
/// [`CaptureError::EmptyRecording`] (or, when it is cut before its first frame,
/// [`CaptureError::Recording`]), not a quiet end.
#[derive(Debug)]
pub struct ReplaySource {
    path: PathBuf,
    reader: RecordingReader<BufReader<File>>,
    fixed_interval: Option<Duration>,
    looping: bool,
    pacer: Pacer,
    /// Recorded timestamp of the previous frame, for the original pace.
    last_recorded_us: Option<u64>,
    /// Frames delivered in the current pass, to stop looping over a file without any.
    pass_frames: u64,
    /// Frames delivered in all passes, so a recording with none is an error.
    played: u64,
    /// Frames skipped because their codec is unknown to this build.
    skipped: u64,
}

impl ReplaySource {
    /// Opens `path` and checks its file header. `fps` replaces the recorded pace;
    /// `looping` starts over at the end.
    pub fn open(
        path: &Path,
        fps: Option<f64>,
        looping: bool,
    ) -> Result<ReplaySource, CaptureError> {
        if let Some(fps) = fps {
            crate::test_pattern::check_fps(fps)?;
        }
        Ok(ReplaySource {
            path: path.to_owned(),
            reader: open_reader(path)?,
            fixed_interval: fps.map(interval),
            looping,
            pacer: Pacer::new(),
            last_recorded_us: None,
            pass_frames: 0,
            played: 0,
            skipped: 0,
        })
    }

    /// Starts the file over. Returns false when looping makes no sense (no frames).
    fn restart(&mut self) -> Result<bool, CaptureError> {
        if !self.looping || self.pass_frames == 0 {
            return Ok(false);
        }
        self.reader = open_reader(&self.path)?;
        self.pass_frames = 0;
        // Keep the pacer's schedule: the first frame of the new pass is due one frame
        // period after the last of the old pass.
        self.last_recorded_us = None;
        Ok(true)
    }

    /// The end of the input: a plain end after some frames; an error if there were none.
    fn end(&self) -> Result<Option<CapturedFrame>, CaptureError> {
        if self.played > 0 {
            return Ok(None);
        }
        Err(CaptureError::EmptyRecording {
            path: self.path.clone(),
            reason: if self.skipped > 0 {
                "the recording holds no frames of a codec this build knows (JPEG, H.264)"
            } else {
                "the recording holds no frames, only its file header"
            },
        })
    }

    fn delay_before(&mut self, recorded_us: u64) -> Duration {
        if let Some(fixed) = self.fixed_interval {
            return fixed;
        }
        let delay = match self.last_recorded_us {
            Some(prev) => Duration::from_micros(recorded_us.saturating_sub(prev)).min(MAX_GAP),
            // Start of a pass: reuse a typical frame period.
            None => Duration::from_millis(33),
        };
        self.last_recorded_us = Some(recorded_us);
        delay
    }
}

fn open_reader(path: &Path) -> Result<RecordingReader<BufReader<File>>, CaptureError> {
    let file = File::open(path).map_err(|source| CaptureError::Io {
        what: path.display().to_string(),
        error: source,
    })?;
    RecordingReader::new(BufReader::new(file)).map_err(|error| match error {
        // Not "cut off at byte 0 inside the file header": say what it is.
        RecordingError::Truncated {
            offset: 0,
            partial_bytes: 0,
            ..
        } => CaptureError::EmptyRecording {
            path: path.to_owned(),
            reason: "the file is empty (0 bytes)",
        },
        error => CaptureError::Recording {
            path: path.to_owned(),
            error,
        },
    })
}

impl Source for ReplaySource {
    fn describe(&self) -> String {
        let pace = match self.fixed_interval {
            Some(i) => format!("@ {:.3} fps", 1.0 / i.as_secs_f64()),
            None => "at recorded pace".to_owned(),
        };
        let looping = if self.looping { ", looping" } else { "" };
        format!("replay of {} {pace}{looping}", self.path.display())
    }

    fn is_live(&self) -> bool {
        false
    }

    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, CaptureError> {
        loop {
            let frame = match self.reader.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    if self.restart()? {
                        continue;
                    }
                    return self.end();
                }
                // With nothing played, the cut is all there is to say.
                Err(error @ RecordingError::Truncated { .. }) if self.played == 0 => {
                    return Err(CaptureError::Recording {
                        path: self.path.clone(),
                        error,
                    })
                }
                // A recorder that crashed leaves a cut last frame: play what is complete.
                Err(e @ RecordingError::Truncated { .. }) => {
                    tracing::warn!(path = %self.path.display(), "{e}");
                    if self.restart()? {
                        continue;
                    }
                    return Ok(None);
                }
                Err(source) => {
                    return Err(CaptureError::Recording {
                        path: self.path.clone(),
                        error: source,
                    })
                }
            };
            let (header, payload) = frame.into_parts();
            let content = match header.codec {
                Codec::Jpeg => FrameContent::Jpeg {
                    data: payload,
                    width: header.width,
                    height: header.height,
                },
                Codec::H264 => FrameContent::H264 {
                    data: payload,
                    keyframe: header.flags.contains(Flags::KEYFRAME),
                    width: header.width,
                    height: header.height,
                },
                // A codec added after this build: nothing here can send it.
                _ => {
                    self.skipped += 1;
                    continue;
                }
            };
            let delay = self.delay_before(header.timestamp_us);
            self.pacer.wait(delay);
            self.pass_frames += 1;
            self.played += 1;
            return Ok(Some(CapturedFrame {
                timestamp_us: now_us(),
                content,
                placeholder: header.flags.contains(Flags::PLACEHOLDER),
            }));
        }
    }
}
