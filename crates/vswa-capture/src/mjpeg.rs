//! The `mjpeg:` source: concatenated JPEGs from a pipe or file (what `ffmpeg -f mjpeg -`
//! writes), split by walking the JPEG marker structure rather than searching for byte
//! pairs, so embedded thumbnails and stuffed entropy data never cut a picture short.

use std::io::Read;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::pacing::{interval, Pacer};
use crate::{now_us, CaptureError, CapturedFrame, FrameContent, Source};

/// Default limit on one JPEG in an MJPEG stream.
pub const DEFAULT_MAX_JPEG_LEN: usize = 16 * 1024 * 1024;

/// Where the splitter is in the current picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for a start-of-image marker; `buf` holds no picture bytes yet.
    Seek,
    /// Between marker segments, at offset `pos` of the picture (a marker is expected).
    Segments { pos: usize },
    /// Inside entropy-coded data after SOS, scanned up to `pos`.
    Entropy { pos: usize },
}

/// Splits a byte stream of concatenated JPEGs into whole JPEGs, sans IO.
///
/// Feed bytes with [`push`](MjpegSplitter::push) in any pieces and take pictures with
/// [`next_jpeg`](MjpegSplitter::next_jpeg). Scanning resumes where it stopped, so each
/// byte is looked at about once however the stream is chunked. Marker segments (APPn,
/// including EXIF blocks that embed a thumbnail JPEG) are skipped by their length; after
/// SOS the entropy-coded data is scanned for the next marker, stepping over `FF00`
/// stuffing, fill bytes and RST0-7, until EOI. Bytes outside any picture, and pictures
/// broken off by a new SOI, are discarded and counted in
/// [`garbage_bytes`](MjpegSplitter::garbage_bytes).
///
/// ```
/// use vswa_capture::MjpegSplitter;
///
/// let jpeg: &[u8] = &[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD9];
/// let mut splitter = MjpegSplitter::new();
/// splitter.push(b"junk");
/// splitter.push(&jpeg[..5]);
/// assert_eq!(splitter.next_jpeg()?, None); // incomplete: push more
/// splitter.push(&jpeg[5..]);
/// assert_eq!(splitter.next_jpeg()?.as_deref(), Some(jpeg));
/// assert_eq!(splitter.garbage_bytes(), 4);
/// # Ok::<(), vswa_capture::CaptureError>(())
/// ```
#[derive(Debug)]
pub struct MjpegSplitter {
    buf: BytesMut,
    state: State,
    max_len: usize,
    /// Stream offset of `buf[0]`.
    offset: u64,
    jpegs: u64,
    garbage: u64,
}

impl Default for MjpegSplitter {
    fn default() -> Self {
        MjpegSplitter::new()
    }
}

impl MjpegSplitter {
    /// A splitter with the default limit of [`DEFAULT_MAX_JPEG_LEN`] bytes per picture.
    pub fn new() -> MjpegSplitter {
        MjpegSplitter::with_max_len(DEFAULT_MAX_JPEG_LEN)
    }

    /// A splitter that rejects pictures longer than `max_len` bytes.
    pub fn with_max_len(max_len: usize) -> MjpegSplitter {
        MjpegSplitter {
            buf: BytesMut::with_capacity(64 * 1024),
            state: State::Seek,
            max_len: max_len.max(4),
            offset: 0,
            jpegs: 0,
            garbage: 0,
        }
    }

    /// Appends stream bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete JPEG, SOI to EOI inclusive; `Ok(None)` when more bytes are
    /// needed. [`CaptureError::FrameTooLarge`] reports a picture that passed the limit;
    /// its bytes are dropped and the next call carries on with the rest of the stream.
    pub fn next_jpeg(&mut self) -> Result<Option<Bytes>, CaptureError> {
        loop {
            match self.state {
                State::Seek => {
                    if !self.seek_soi() {
                        return Ok(None);
                    }
                    self.state = State::Segments { pos: 2 };
                }
                State::Segments { pos } => match self.step_segments(pos) {
                    Step::Continue(state) => self.state = state,
                    Step::NeedMore => return self.check_limit(pos),
                    Step::Restart(at) => self.discard(at),
                    Step::Done(_) => unreachable!("segments end in entropy data"),
                },
                State::Entropy { pos } => match self.step_entropy(pos) {
                    Step::Continue(state) => self.state = state,
                    Step::NeedMore => {
                        // Remember how far we got so the next push resumes there.
                        let pos = self.buf.len().saturating_sub(1).max(pos);
                        self.state = State::Entropy { pos };
                        return self.check_limit(pos);
                    }
                    Step::Restart(at) => self.discard(at),
                    Step::Done(end) => {
                        let jpeg = self.buf.split_to(end).freeze();
                        self.offset += end as u64;
                        self.jpegs += 1;
                        self.state = State::Seek;
                        return Ok(Some(jpeg));
                    }
                },
            }
        }
    }

    /// Pictures returned so far.
    pub fn jpegs(&self) -> u64 {
        self.jpegs
    }

    /// Bytes skipped so far: data between pictures, broken and oversized pictures.
    pub fn garbage_bytes(&self) -> u64 {
        self.garbage
    }

    /// Bytes held that are not yet part of a returned picture (at the end of input:
    /// an incomplete last picture).
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Drops everything before the next SOI candidate. Returns whether `buf` now starts
    /// with SOI.
    fn seek_soi(&mut self) -> bool {
        let mut from = 0;
        let found = loop {
            match self.buf[from..].iter().position(|&b| b == 0xFF) {
                None => break None,
                Some(i) => {
                    let at = from + i;
                    match self.buf.get(at + 1) {
                        Some(0xD8) => break Some(at),
                        Some(_) => from = at + 1,
                        // A trailing 0xFF may start an SOI split across pushes.
                        None => break None,
                    }
                }
            }
        };
        let skip = match found {
            Some(at) => at,
            None if self.buf.last() == Some(&0xFF) => self.buf.len() - 1,
            None => self.buf.len(),
        };
        self.discard(skip);
        found.is_some()
    }

    /// Drops `n` bytes from the front as garbage and starts seeking again.
    fn discard(&mut self, n: usize) {
        let _ = self.buf.split_to(n);
        self.offset += n as u64;
        self.garbage += n as u64;
        self.state = State::Seek;
    }

    fn check_limit(&mut self, pos: usize) -> Result<Option<Bytes>, CaptureError> {
        if pos.max(self.buf.len()) <= self.max_len {
            return Ok(None);
        }
        let offset = self.offset;
        // Everything held belongs to the oversized picture (or was scanned as such); the
        // next SOI after it starts afresh. Keep one byte in case it is the 0xFF of an SOI.
        let keep_from = self.buf.len().saturating_sub(1).max(1);
        self.discard(keep_from);
        Err(CaptureError::FrameTooLarge {
            offset,
            max: self.max_len,
        })
    }

    /// One marker in the header part of the picture at `pos`.
    fn step_segments(&self, mut pos: usize) -> Step {
        let buf = &self.buf[..];
        let Some(&first) = buf.get(pos) else {
            return Step::NeedMore;
        };
        if first != 0xFF {
            // Not a marker where one must be: the picture is broken. Resync after its SOI.
            return Step::Restart(1);
        }
        // Fill bytes: any number of 0xFF before the marker code.
        while buf.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&marker) = buf.get(pos + 1) else {
            return Step::NeedMore;
        };
        match marker {
            0x01 | 0xD0..=0xD7 => Step::Continue(State::Segments { pos: pos + 2 }),
            // A new picture starts before this one had image data; this one is garbage.
            0xD8 => Step::Restart(pos),
            // End of image without any scan (e.g. a tables-only JPEG): nothing to show.
            0xD9 => Step::Restart(pos + 2),
            0x00 => Step::Restart(1),
            _ => {
                let (Some(&hi), Some(&lo)) = (buf.get(pos + 2), buf.get(pos + 3)) else {
                    return Step::NeedMore;
                };
                let len = usize::from(u16::from_be_bytes([hi, lo]));
                if len < 2 {
                    return Step::Restart(1);
                }
                let next = pos + 2 + len;
                if marker == 0xDA {
                    Step::Continue(State::Entropy { pos: next })
                } else {
                    // The segment body (e.g. an EXIF thumbnail) is skipped unread; the
                    // picture is only complete once the rest arrives, so wait for it.
                    Step::Continue(State::Segments { pos: next })
                }
            }
        }
    }

    /// Scans entropy-coded data from `pos` for the next marker.
    fn step_entropy(&self, mut pos: usize) -> Step {
        let buf = &self.buf[..];
        loop {
            let Some(i) = buf
                .get(pos..)
                .and_then(|rest| rest.iter().position(|&b| b == 0xFF))
            else {
                return Step::NeedMore;
            };
            pos += i;
            let Some(&next) = buf.get(pos + 1) else {
                return Step::NeedMore;
            };
            match next {
                // Stuffed zero and restart markers belong to the entropy data; a second
                // 0xFF is a fill byte before the real marker.
                0x00 | 0xD0..=0xD7 => pos += 2,
                0xFF => pos += 1,
                0xD9 => return Step::Done(pos + 2),
                // A new picture before EOI: the current one was cut off.
                0xD8 => return Step::Restart(pos),
                // Another segment: progressive JPEGs have DHT and further SOS between scans.
                _ => return Step::Continue(State::Segments { pos }),
            }
        }
    }
}

enum Step {
    Continue(State),
    NeedMore,
    /// Discard this many bytes from the front and seek again.
    Restart(usize),
    /// The picture is complete: its length.
    Done(usize),
}

/// Reads an MJPEG byte stream and yields each JPEG as a frame.
///
/// Timestamps are taken when a picture has been read (arrival time). A file is paced
/// to a frame rate; a pipe is delivered as fast as it arrives, since its writer (often a
/// live ffmpeg) already sets the pace. Not live: a slow consumer makes it read slower
/// rather than drop pictures. Input that ends without a single whole JPEG is
/// [`CaptureError::NoJpeg`].
pub struct MjpegSource {
    reader: Box<dyn Read + Send>,
    what: String,
    splitter: MjpegSplitter,
    frame_interval: Option<Duration>,
    pacer: Pacer,
    chunk: Vec<u8>,
    bytes_read: u64,
    eof: bool,
}

impl std::fmt::Debug for MjpegSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MjpegSource")
            .field("what", &self.what)
            .field("splitter", &self.splitter)
            .field("frame_interval", &self.frame_interval)
            .finish_non_exhaustive()
    }
}

impl MjpegSource {
    /// Splits JPEGs from `reader`, described as `what` (`stdin` or a path) in messages.
    /// `fps` paces delivery; `None` delivers on arrival.
    pub fn new(
        reader: Box<dyn Read + Send>,
        what: impl Into<String>,
        fps: Option<f64>,
    ) -> Result<MjpegSource, CaptureError> {
        if let Some(fps) = fps {
            crate::test_pattern::check_fps(fps)?;
        }
        Ok(MjpegSource {
            reader,
            what: what.into(),
            splitter: MjpegSplitter::new(),
            frame_interval: fps.map(interval),
            pacer: Pacer::new(),
            chunk: vec![0; 64 * 1024],
            bytes_read: 0,
            eof: false,
        })
    }

    /// The splitter, for its counters.
    pub fn splitter(&self) -> &MjpegSplitter {
        &self.splitter
    }
}

impl Source for MjpegSource {
    fn describe(&self) -> String {
        match self.frame_interval {
            Some(i) => format!(
                "MJPEG from {} @ {:.3} fps",
                self.what,
                1.0 / i.as_secs_f64()
            ),
            None => format!("MJPEG from {} (unpaced)", self.what),
        }
    }

    fn is_live(&self) -> bool {
        false
    }

    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, CaptureError> {
        loop {
            match self.splitter.next_jpeg() {
                Ok(Some(jpeg)) => {
                    if let Some(interval) = self.frame_interval {
                        self.pacer.wait(interval);
                    }
                    // 0x0 tells viewers "size unknown", as the wire format allows.
                    let (width, height) = vswa_codec::jpeg_dimensions(&jpeg).unwrap_or((0, 0));
                    return Ok(Some(CapturedFrame {
                        timestamp_us: now_us(),
                        content: FrameContent::Jpeg {
                            data: jpeg,
                            width,
                            height,
                        },
                        placeholder: false,
                    }));
                }
                Ok(None) if self.eof => {
                    if self.splitter.jpegs() == 0 {
                        // Nothing to send is a failure, not a stream that happened to end.
                        return Err(CaptureError::NoJpeg {
                            what: self.what.clone(),
                            bytes: self.bytes_read,
                        });
                    }
                    let pending = self.splitter.pending_bytes();
                    if pending > 0 {
                        tracing::warn!(
                            source = %self.what,
                            bytes = pending,
                            "MJPEG input ended inside a picture; the incomplete picture is dropped"
                        );
                    }
                    let garbage = self.splitter.garbage_bytes();
                    if garbage > 0 {
                        tracing::info!(source = %self.what, bytes = garbage, "skipped non-JPEG bytes in MJPEG input");
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
                    .map_err(|source| CaptureError::Io {
                        what: self.what.clone(),
                        error: source,
                    })?;
                    if n == 0 {
                        self.eof = true;
                    } else {
                        self.bytes_read += n as u64;
                        self.splitter.push(&self.chunk[..n]);
                    }
                }
                // An oversized picture is skipped, not fatal: the stream goes on.
                Err(e) => tracing::warn!(source = %self.what, "{e}"),
            }
        }
    }
}
