//! Where received frames go: a directory of JPEG files, a recording file, a
//! concatenated-JPEG (MJPEG) stream and an H.264 Annex B byte stream on a file or
//! stdout. Any combination at once.
//!
//! Placeholder ("no signal") frames are written like any other frame: they are what the
//! publisher sent, and keeping them keeps file names and recordings gap-free in time.
//!
//! Codecs: the recording takes any codec as it is. `--mjpeg` takes JPEG and `--h264`
//! H.264 only; the other codec is refused with [`SinkError::Codec`] at its first frame.
//! H.264 frames reach `--h264`, `--out-dir` and `--display` only where a decoder can use
//! them (see [`crate::gate`]); `--out-dir` saves the keyframes of an H.264 stream,
//! decoded and re-encoded as JPEG (needs the `h264` feature, as `--display` of H.264
//! does).

pub use crate::output_error::SinkError;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use vswa_protocol::recording::RecordingWriter;
#[cfg(feature = "h264")]
use vswa_protocol::Flags;
use vswa_protocol::{Codec, Frame};

/// JPEG quality of the pictures `--out-dir` saves from an H.264 stream.
pub const H264_SNAPSHOT_QUALITY: u8 = 90;

/// Which outputs to open.
#[derive(Debug, Clone, Default)]
pub struct SinkConfig {
    /// One JPEG file per frame in this directory (created if missing).
    pub out_dir: Option<PathBuf>,
    /// A recording file (replaced if it exists).
    pub record: Option<PathBuf>,
    /// Concatenated JPEGs to this file, or to stdout for `-`.
    pub mjpeg: Option<PathBuf>,
    /// H.264 access units back to back (an Annex B byte stream) to this file, or to
    /// stdout for `-`.
    pub h264: Option<PathBuf>,
    /// A live window (needs the `display` feature).
    pub display: bool,
}

impl SinkConfig {
    /// True if `--mjpeg -` sends video to stdout.
    pub fn mjpeg_to_stdout(&self) -> bool {
        self.mjpeg.as_deref() == Some(Path::new("-"))
    }

    /// True if `--h264 -` sends video to stdout.
    pub fn h264_to_stdout(&self) -> bool {
        self.h264.as_deref() == Some(Path::new("-"))
    }
}

/// The name of the file for a frame: `frame-<sequence, 12 digits>-<UTC capture time>.jpg`,
/// e.g. `frame-000000001234-20261121T101500.123456Z.jpg`. Names sort in sequence order
/// (sequences below 10^12, which at 60 fps lasts five centuries).
pub fn frame_file_name(sequence: u64, timestamp_us: u64) -> String {
    format!("frame-{sequence:012}-{}.jpg", utc_timestamp(timestamp_us))
}

/// Microseconds since the UNIX epoch as basic ISO 8601 UTC: `20261121T101500.123456Z`.
pub fn utc_timestamp(us: u64) -> String {
    let secs = us / 1_000_000;
    let micros = us % 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}.{micros:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Writes each frame as its own JPEG file, atomically: a reader of the directory sees
/// whole files or none (temp file in the same directory, then rename).
///
/// Of an H.264 stream it saves the keyframes, decoded and re-encoded as JPEG
/// ([`H264_SNAPSHOT_QUALITY`]); delta frames are not saved (decoding and re-encoding
/// every picture would cost the receiver more than it can spare at camera rates, and
/// `--h264` keeps every frame).
#[derive(Debug)]
pub struct OutDir {
    dir: PathBuf,
    #[cfg(feature = "h264")]
    decoder: Option<vswa_codec::H264Decoder>,
}

impl OutDir {
    /// Creates `dir` if missing and checks that it is a directory files can be created
    /// in.
    pub fn open(dir: &Path) -> Result<OutDir, SinkError> {
        let err = |path: &Path, error| SinkError::OutDir {
            path: path.to_path_buf(),
            error,
        };
        // Else create_dir_all's "File exists" would leave the user guessing.
        if fs::metadata(dir).is_ok_and(|m| !m.is_dir()) {
            return Err(SinkError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
        // Fail now rather than at the first frame, minutes later.
        let probe = dir.join(format!(".vswa-recv-probe-{}", std::process::id()));
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&probe)
            .map_err(|e| err(dir, e))?;
        fs::remove_file(&probe).map_err(|e| err(&probe, e))?;
        Ok(OutDir {
            dir: dir.to_path_buf(),
            #[cfg(feature = "h264")]
            decoder: None,
        })
    }

    /// Writes one JPEG frame; returns the final path.
    pub fn write(&mut self, frame: &Frame) -> Result<PathBuf, SinkError> {
        let h = frame.header();
        self.write_file(h.sequence, h.timestamp_us, frame.payload())
    }

    /// Decodes an H.264 keyframe and saves its picture as a JPEG; returns the path, or
    /// `None` for a delta frame (not saved) or a keyframe that does not decode (a
    /// warning says so).
    #[cfg(feature = "h264")]
    pub fn write_h264(&mut self, frame: &Frame) -> Result<Option<PathBuf>, SinkError> {
        let h = frame.header();
        if !h.flags.contains(Flags::KEYFRAME) || frame.payload().is_empty() {
            return Ok(None);
        }
        let decoder = match &mut self.decoder {
            Some(d) => d,
            None => self.decoder.insert(
                vswa_codec::H264Decoder::new().map_err(|e| SinkError::Codec(e.to_string()))?,
            ),
        };
        match decoder.decode_to_jpeg(frame.payload(), H264_SNAPSHOT_QUALITY) {
            Ok(Some(jpeg)) => self.write_file(h.sequence, h.timestamp_us, &jpeg).map(Some),
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::warn!(
                    "--out-dir: keyframe {} does not decode, not saved: {e}",
                    h.sequence
                );
                Ok(None)
            }
        }
    }

    fn write_file(
        &mut self,
        sequence: u64,
        timestamp_us: u64,
        jpeg: &[u8],
    ) -> Result<PathBuf, SinkError> {
        let name = frame_file_name(sequence, timestamp_us);
        let path = self.dir.join(&name);
        // The dot prefix hides the partial file from `*.jpg` globs.
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let result = File::create(&tmp)
            .and_then(|mut f| f.write_all(jpeg))
            .and_then(|()| fs::rename(&tmp, &path));
        if let Err(source) = result {
            let _ = fs::remove_file(&tmp);
            return Err(SinkError::OutDir {
                path,
                error: source,
            });
        }
        Ok(path)
    }
}

/// Appends frames to a recording file, flushed per frame, so `kill -9` loses at most the
/// frame being written.
#[derive(Debug)]
pub struct Record {
    path: PathBuf,
    writer: RecordingWriter<File>,
}

impl Record {
    /// Creates (or replaces) the file and writes the recording header.
    pub fn open(path: &Path) -> Result<Record, SinkError> {
        let err = |source| SinkError::Record {
            path: path.to_path_buf(),
            error: source,
        };
        // A plain File, not a BufWriter: each frame reaches the OS as soon as it is written.
        let file = File::create(path).map_err(err)?;
        let writer = RecordingWriter::new(file).map_err(err)?;
        Ok(Record {
            path: path.to_path_buf(),
            writer,
        })
    }

    /// Appends one frame.
    pub fn write(&mut self, frame: &Frame) -> Result<(), SinkError> {
        self.writer
            .write_frame(frame)
            .map_err(|source| SinkError::Record {
                path: self.path.clone(),
                error: source,
            })
    }
}

/// A byte stream on a file or stdout that a player reads as it grows: each frame is
/// flushed at once.
struct PipeOut {
    target: String,
    out: Box<dyn Write + Send>,
}

/// Why a [`PipeOut`] write failed.
enum PipeFailure {
    /// The reader went away.
    Closed,
    Io(io::Error),
}

impl PipeOut {
    /// Opens `path`, or stdout for `-`.
    fn open(path: &Path) -> Result<PipeOut, (String, io::Error)> {
        if path == Path::new("-") {
            return Ok(PipeOut {
                target: "stdout".into(),
                out: stdout_writer(),
            });
        }
        let target = path.display().to_string();
        match File::create(path) {
            Ok(file) => Ok(PipeOut {
                target,
                out: Box::new(file),
            }),
            Err(error) => Err((target, error)),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), PipeFailure> {
        match self.out.write_all(bytes).and_then(|()| self.out.flush()) {
            Ok(()) => Ok(()),
            // Rust ignores SIGPIPE, so a reader that quit shows up as this error.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(PipeFailure::Closed),
            Err(e) => Err(PipeFailure::Io(e)),
        }
    }
}

/// Concatenated JPEGs, the format `ffplay -f mjpeg -` and `ffmpeg -f mjpeg -i -` read.
pub struct Mjpeg {
    pipe: PipeOut,
}

impl std::fmt::Debug for Mjpeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mjpeg")
            .field("target", &self.pipe.target)
            .finish_non_exhaustive()
    }
}

impl Mjpeg {
    /// Opens `path`, or stdout for `-`.
    pub fn open(path: &Path) -> Result<Mjpeg, SinkError> {
        PipeOut::open(path)
            .map(|pipe| Mjpeg { pipe })
            .map_err(|(target, error)| SinkError::Mjpeg { target, error })
    }

    /// Writes one frame's JPEG and flushes it to the reader.
    pub fn write(&mut self, frame: &Frame) -> Result<(), SinkError> {
        self.pipe.write(frame.payload()).map_err(|e| match e {
            PipeFailure::Closed => SinkError::PipeClosed,
            PipeFailure::Io(error) => SinkError::Mjpeg {
                target: self.pipe.target.clone(),
                error,
            },
        })
    }
}

/// H.264 access units back to back: an Annex B byte stream, the format
/// `ffplay -f h264 -` and `ffmpeg -f h264 -i -` read. It is given only frames a decoder
/// can use (see [`crate::gate`]), so it starts at a keyframe and has no holes.
pub struct AnnexB {
    pipe: PipeOut,
}

impl std::fmt::Debug for AnnexB {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnnexB")
            .field("target", &self.pipe.target)
            .finish_non_exhaustive()
    }
}

impl AnnexB {
    /// Opens `path`, or stdout for `-`.
    pub fn open(path: &Path) -> Result<AnnexB, SinkError> {
        PipeOut::open(path)
            .map(|pipe| AnnexB { pipe })
            .map_err(|(target, error)| SinkError::H264 { target, error })
    }

    /// Writes one frame's access unit and flushes it to the reader.
    pub fn write(&mut self, frame: &Frame) -> Result<(), SinkError> {
        self.pipe.write(frame.payload()).map_err(|e| match e {
            PipeFailure::Closed => SinkError::PipeClosed,
            PipeFailure::Io(error) => SinkError::H264 {
                target: self.pipe.target.clone(),
                error,
            },
        })
    }
}

/// Stdout without std's line buffering, which would split binary JPEG data at every
/// newline byte.
fn stdout_writer() -> Box<dyn Write + Send> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        if let Ok(fd) = io::stdout().as_fd().try_clone_to_owned() {
            return Box::new(File::from(fd));
        }
    }
    Box::new(io::stdout())
}

/// All outputs of one run.
#[derive(Debug, Default)]
pub struct Sinks {
    out_dir: Option<OutDir>,
    record: Option<Record>,
    mjpeg: Option<Mjpeg>,
    h264: Option<AnnexB>,
    #[cfg(feature = "display")]
    display: Option<crate::display::Display>,
}

impl Sinks {
    /// Opens every configured output, failing on the first that cannot be used.
    pub fn open(config: &SinkConfig) -> Result<Sinks, SinkError> {
        #[cfg(not(feature = "display"))]
        if config.display {
            return Err(SinkError::Display(
                "this vswa-recv was built without the `display` feature".into(),
            ));
        }
        Ok(Sinks {
            out_dir: config.out_dir.as_deref().map(OutDir::open).transpose()?,
            record: config.record.as_deref().map(Record::open).transpose()?,
            mjpeg: config.mjpeg.as_deref().map(Mjpeg::open).transpose()?,
            h264: config.h264.as_deref().map(AnnexB::open).transpose()?,
            #[cfg(feature = "display")]
            display: if config.display {
                Some(crate::display::Display::open()?)
            } else {
                None
            },
        })
    }

    /// Refuses a codec an output cannot take (or this build cannot decode), before
    /// anything of the frame is written anywhere.
    fn check_codec(&self, codec: Codec) -> Result<(), SinkError> {
        let h264 = codec == Codec::H264;
        let refuse = |line: String| Err(SinkError::Codec(line));
        if self.mjpeg.is_some() && codec != Codec::Jpeg {
            return refuse(format!(
                "--mjpeg takes JPEG streams, and this stream is {codec}{}",
                if h264 {
                    ": use --h264 to write it as it is (e.g. --h264 - | ffplay -f h264 -)"
                } else {
                    ""
                }
            ));
        }
        if self.h264.is_some() && !h264 {
            return refuse(format!(
                "--h264 takes H.264 streams, and this stream is {codec}{}",
                if codec == Codec::Jpeg {
                    ": use --mjpeg to write it as it is (e.g. --mjpeg - | ffplay -f mjpeg -)"
                } else {
                    ""
                }
            ));
        }
        if !h264 && codec != Codec::Jpeg && (self.out_dir.is_some() || self.has_display()) {
            return refuse(format!(
                "this stream is {codec}, which --out-dir and --display cannot show"
            ));
        }
        if h264 && !cfg!(feature = "h264") {
            let output = match (self.out_dir.is_some(), self.has_display()) {
                (true, true) => "--out-dir and --display",
                (true, false) => "--out-dir",
                (false, true) => "--display",
                (false, false) => return Ok(()),
            };
            return refuse(format!(
                "{output} of an H.264 stream needs a vswa-recv built with the `h264` feature \
                 (cargo build -p vswa-recv --features h264); --h264 and --record save the \
                 stream without it"
            ));
        }
        Ok(())
    }

    fn has_display(&self) -> bool {
        #[cfg(feature = "display")]
        if self.display.is_some() {
            return true;
        }
        false
    }

    /// Hands a frame to every output. `decodable` says whether a decoder can use it (an
    /// H.264 frame from a keyframe on, see [`crate::gate::KeyframeGate`]); H.264 frames
    /// that are not go only to the recording.
    pub fn write(&mut self, frame: &Frame, decodable: bool) -> Result<(), SinkError> {
        let codec = frame.header().codec;
        self.check_codec(codec)?;
        let h264 = codec == Codec::H264;
        if let Some(record) = &mut self.record {
            record.write(frame)?;
        }
        if let Some(dir) = &mut self.out_dir {
            if !h264 {
                dir.write(frame)?;
            } else if decodable {
                #[cfg(feature = "h264")]
                dir.write_h264(frame)?;
            }
        }
        #[cfg(feature = "display")]
        if let Some(display) = &mut self.display {
            if !h264 || decodable {
                display.show(frame)?;
            }
        }
        if let Some(mjpeg) = &mut self.mjpeg {
            mjpeg.write(frame)?;
        }
        if let Some(out) = &mut self.h264 {
            if decodable {
                out.write(frame)?;
            }
        }
        Ok(())
    }

    /// Shows `status` where the outputs can (the window title).
    pub fn status(&self, _status: &str) {
        #[cfg(feature = "display")]
        if let Some(display) = &self.display {
            display.set_title(_status);
        }
    }

    /// True once the user closed the `--display` window.
    pub fn window_closed(&self) -> bool {
        #[cfg(feature = "display")]
        if let Some(display) = &self.display {
            return display.closed();
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_basic_iso8601() {
        assert_eq!(utc_timestamp(0), "19700101T000000.000000Z");
        // 2026-11-21 10:15:00.123456 UTC
        assert_eq!(
            utc_timestamp(1_795_256_100_123_456),
            "20261121T101500.123456Z"
        );
        // Leap day.
        assert_eq!(
            utc_timestamp(951_782_400_000_001),
            "20000229T000000.000001Z"
        );
    }

    #[test]
    fn file_names_sort_in_sequence_order() {
        assert_eq!(
            frame_file_name(1234, 1_795_256_100_123_456),
            "frame-000000001234-20261121T101500.123456Z.jpg"
        );
        let mut names: Vec<String> = [5u64, 100, 9, 1_000_000, 0]
            .iter()
            .map(|&s| frame_file_name(s, 1_000_000 * s))
            .collect();
        names.sort();
        let seqs: Vec<u64> = names.iter().map(|n| n[6..18].parse().unwrap()).collect();
        assert_eq!(seqs, [0, 5, 9, 100, 1_000_000]);
    }
}
