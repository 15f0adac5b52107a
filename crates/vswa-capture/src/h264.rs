//! The `h264:` source: an H.264 Annex B byte stream from a pipe or file (what
//! `ffmpeg ... -c:v libx264 -f h264 -` writes), cut into access units by
//! `vswa-codec`'s [`AccessUnitSplitter`] and passed through without re-encoding.
//!
//! Each access unit becomes one frame; keyframes are the access units with an IDR slice,
//! and the picture size comes from the stream's sequence parameter set. The stream must
//! be one a live viewer can decode in arrival order: no B-frames (`-bf 0`, or libx264's
//! `-tune zerolatency`), and parameter sets in front of every IDR picture (libx264 and
//! OpenH264 both do that by default in Annex B output).

use std::io::Read;
use std::time::Duration;

use vswa_codec::annexb::{sps_dimensions, AccessUnitSplitter};

use crate::pacing::{interval, Pacer};
use crate::{now_us, CaptureError, CapturedFrame, FrameContent, Source};

/// An H.264 Annex B stream from a reader, one access unit per frame.
pub struct H264Source {
    reader: Box<dyn Read + Send>,
    what: String,
    splitter: AccessUnitSplitter,
    frame_interval: Option<Duration>,
    pacer: Pacer,
    chunk: Vec<u8>,
    bytes_read: u64,
    units: u64,
    /// The size in the latest SPS (0x0 until one came: "unknown" on the wire).
    size: (u16, u16),
    eof: bool,
    /// `finish` handed over the last access unit.
    finished: bool,
}

impl std::fmt::Debug for H264Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Source")
            .field("what", &self.what)
            .field("units", &self.units)
            .field("frame_interval", &self.frame_interval)
            .finish_non_exhaustive()
    }
}

impl H264Source {
    /// Splits access units from `reader`, described as `what` (`stdin` or a path) in
    /// messages. `fps` paces delivery; `None` delivers on arrival.
    pub fn new(
        reader: Box<dyn Read + Send>,
        what: impl Into<String>,
        fps: Option<f64>,
    ) -> Result<H264Source, CaptureError> {
        if let Some(fps) = fps {
            crate::test_pattern::check_fps(fps)?;
        }
        Ok(H264Source {
            reader,
            what: what.into(),
            splitter: AccessUnitSplitter::new(),
            frame_interval: fps.map(interval),
            pacer: Pacer::new(),
            chunk: vec![0; 64 * 1024],
            bytes_read: 0,
            units: 0,
            size: (0, 0),
            eof: false,
            finished: false,
        })
    }

    fn frame(&mut self, data: bytes::Bytes, keyframe: bool) -> CapturedFrame {
        if let Some(interval) = self.frame_interval {
            self.pacer.wait(interval);
        }
        if let Some((w, h)) = sps_dimensions(&data) {
            self.size = (u16::try_from(w).unwrap_or(0), u16::try_from(h).unwrap_or(0));
        }
        self.units += 1;
        CapturedFrame {
            timestamp_us: now_us(),
            content: FrameContent::H264 {
                data,
                keyframe,
                width: self.size.0,
                height: self.size.1,
            },
            placeholder: false,
        }
    }
}

impl Source for H264Source {
    fn describe(&self) -> String {
        match self.frame_interval {
            Some(i) => format!(
                "H.264 from {} @ {:.3} fps",
                self.what,
                1.0 / i.as_secs_f64()
            ),
            None => format!("H.264 from {} (unpaced)", self.what),
        }
    }

    fn is_live(&self) -> bool {
        false
    }

    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, CaptureError> {
        loop {
            let next = if self.eof {
                if self.finished {
                    Ok(None)
                } else {
                    self.splitter.finish()
                }
            } else {
                self.splitter.next_access_unit()
            };
            match next {
                Ok(Some(unit)) => return Ok(Some(self.frame(unit.data, unit.keyframe))),
                Ok(None) if self.eof => {
                    self.finished = true;
                    if self.units == 0 {
                        return Err(CaptureError::NoH264 {
                            what: self.what.clone(),
                            bytes: self.bytes_read,
                        });
                    }
                    return Ok(None);
                }
                Ok(None) => {
                    let n = loop {
                        match self.reader.read(&mut self.chunk) {
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            other => break other,
                        }
                    }
                    .map_err(|error| CaptureError::Io {
                        what: self.what.clone(),
                        error,
                    })?;
                    if n == 0 {
                        self.eof = true;
                    } else {
                        self.bytes_read += n as u64;
                        self.splitter.push(&self.chunk[..n]);
                    }
                }
                // An oversized access unit is dropped, not fatal: the stream goes on at
                // the next access unit.
                Err(e) => tracing::warn!(source = %self.what, "{e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(bytes: &'static [u8]) -> H264Source {
        H264Source::new(Box::new(bytes), "stdin", None).unwrap()
    }

    #[test]
    fn access_units_come_out_one_per_frame_with_their_keyframe_flag() {
        // SPS (640x480 Baseline), IDR slice, then a P slice.
        const STREAM: &[u8] = &[
            0, 0, 0, 1, 0x67, 0x42, 0xC0, 0x1E, 0xDA, 0x02, 0x80, 0xF6, 0x40, // SPS
            0, 0, 0, 1, 0x65, 0x88, 0x84, // IDR, first_mb 0
            0, 0, 0, 1, 0x41, 0x9A, 0x02, // non-IDR, first_mb 0
        ];
        let mut s = source(STREAM);
        let first = s.next_frame().unwrap().unwrap();
        let FrameContent::H264 {
            data,
            keyframe,
            width,
            height,
        } = first.content
        else {
            panic!("not H.264: {first:?}");
        };
        assert!(keyframe);
        assert_eq!((width, height), (640, 480));
        assert_eq!(&data[..5], &[0, 0, 0, 1, 0x67]);
        let second = s.next_frame().unwrap().unwrap();
        assert!(matches!(
            second.content,
            FrameContent::H264 {
                keyframe: false,
                width: 640,
                height: 480,
                ..
            }
        ));
        assert!(s.next_frame().unwrap().is_none());
        assert!(s.next_frame().unwrap().is_none(), "stays ended");
    }

    #[test]
    fn input_without_an_access_unit_is_an_error_naming_the_format() {
        let err = source(b"GET / HTTP/1.1\r\n\r\n").next_frame().unwrap_err();
        assert!(
            matches!(err, CaptureError::NoH264 { bytes: 18, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("Annex B"), "{err}");
    }
}
