//! Recording files: a 16-byte file header, then frames in wire encoding, back to back.
//!
//! A recorder that crashes leaves a file cut somewhere in the last frame; the reader
//! returns every complete frame before the cut and then reports the cut as
//! [`RecordingError::Truncated`] instead of failing the whole file.

use std::io::{self, Read, Write};

use bytes::BytesMut;

use crate::{DecodeError, Frame, FrameDecoder, DEFAULT_MAX_PAYLOAD_LEN};

/// The eight bytes a recording starts with: ASCII `VSWA-REC`.
pub const RECORDING_MAGIC: [u8; 8] = *b"VSWA-REC";
/// The recording format version this crate writes and accepts.
pub const RECORDING_VERSION: u8 = 1;
/// Size of the file header: magic (8), version (1), reserved zero bytes (7).
pub const RECORDING_HEADER_LEN: usize = 16;

/// Problems reading a recording.
///
/// A variant that wraps another error exposes it as [`std::error::Error::source`] and
/// leaves it out of its own message, so `{:#}` (anyhow) prints each cause once.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// The underlying reader failed (the IO error is the source).
    #[error("reading the recording failed")]
    Io(#[from] io::Error),
    /// The file does not start with `VSWA-REC`.
    #[error("not a VSWA recording (file starts with {found:02x?}, expected \"VSWA-REC\")")]
    NotARecording {
        /// Up to eight bytes found at the start of the file.
        found: Vec<u8>,
    },
    /// The file header names a version this crate cannot read.
    #[error("unsupported recording version {version} (this implementation reads version 1)")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// Reserved bytes of the file header are not zero.
    #[error("recording header has non-zero reserved bytes")]
    ReservedBytes,
    /// The file ends in the middle of the file header or of a frame (for example
    /// because the recorder crashed). Every frame before `offset` was returned.
    ///
    /// The message says "cut off at byte N" with N = `offset + partial_bytes`: the
    /// length of the file, i.e. the offset of the first missing byte.
    #[error("{}", describe_cut(*.offset, *.frames, *.partial_bytes))]
    Truncated {
        /// File offset where the incomplete part starts: 0 when the file header itself
        /// is incomplete, otherwise the offset of the incomplete frame's first byte.
        offset: u64,
        /// Complete frames read before the cut.
        frames: u64,
        /// Bytes of the incomplete header or frame (present in the file).
        partial_bytes: usize,
    },
    /// A frame in the file is invalid (the [`DecodeError`] is the source).
    #[error("corrupt frame {frame_index} at byte {offset}")]
    Corrupt {
        /// File offset of the bad frame.
        offset: u64,
        /// Index of the bad frame (0 for the first).
        frame_index: u64,
        /// What is wrong with it.
        source: DecodeError,
    },
}

/// The message of [`RecordingError::Truncated`].
fn describe_cut(offset: u64, frames: u64, partial_bytes: usize) -> String {
    let end = offset.saturating_add(partial_bytes as u64);
    if offset < RECORDING_HEADER_LEN as u64 {
        format!(
            "recording is cut off at byte {end}: the file ends inside its \
             {RECORDING_HEADER_LEN}-byte file header"
        )
    } else {
        format!(
            "recording is cut off at byte {end}: {frames} complete frames, then \
             {partial_bytes} bytes of an incomplete frame that starts at byte {offset}"
        )
    }
}

/// The 16-byte file header.
pub fn file_header() -> [u8; RECORDING_HEADER_LEN] {
    let mut out = [0u8; RECORDING_HEADER_LEN];
    out[..8].copy_from_slice(&RECORDING_MAGIC);
    out[8] = RECORDING_VERSION;
    out
}

/// Validates the file header at the start of `buf`. A short `buf` that is a correct
/// prefix gives [`RecordingError::Truncated`].
pub fn check_file_header(buf: &[u8]) -> Result<(), RecordingError> {
    let seen = buf.len().min(8);
    if buf[..seen] != RECORDING_MAGIC[..seen] {
        return Err(RecordingError::NotARecording {
            found: buf[..seen].to_vec(),
        });
    }
    if buf.len() < RECORDING_HEADER_LEN {
        return Err(RecordingError::Truncated {
            offset: 0,
            frames: 0,
            partial_bytes: buf.len(),
        });
    }
    if buf[8] != RECORDING_VERSION {
        return Err(RecordingError::UnsupportedVersion { version: buf[8] });
    }
    if buf[9..RECORDING_HEADER_LEN].iter().any(|&b| b != 0) {
        return Err(RecordingError::ReservedBytes);
    }
    Ok(())
}

/// Appends frames to a recording.
///
/// Each frame is handed to the underlying writer whole and then flushed, so a process
/// killed at any moment loses at most the frame being written. Wrap a [`std::fs::File`]
/// directly (not a `BufWriter`) to get that guarantee.
#[derive(Debug)]
pub struct RecordingWriter<W: Write> {
    inner: W,
    frames: u64,
    bytes: u64,
    scratch: Vec<u8>,
}

impl<W: Write> RecordingWriter<W> {
    /// Writes the file header and returns a writer for frames.
    pub fn new(mut inner: W) -> io::Result<RecordingWriter<W>> {
        inner.write_all(&file_header())?;
        inner.flush()?;
        Ok(RecordingWriter {
            inner,
            frames: 0,
            bytes: RECORDING_HEADER_LEN as u64,
            scratch: Vec::new(),
        })
    }

    /// Appends one frame and flushes.
    pub fn write_frame(&mut self, frame: &Frame) -> io::Result<()> {
        // One write call per frame keeps the window for a torn frame as small as the OS allows.
        self.scratch.clear();
        self.scratch.extend_from_slice(&frame.header().to_bytes());
        self.scratch.extend_from_slice(frame.payload());
        self.inner.write_all(&self.scratch)?;
        self.inner.flush()?;
        self.frames += 1;
        self.bytes += frame.encoded_len() as u64;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Bytes in the file so far, header included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// A reference to the underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Returns the underlying writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Reads frames from a recording, tolerating a cut at the end.
#[derive(Debug)]
pub struct RecordingReader<R: Read> {
    inner: R,
    decoder: FrameDecoder,
    buf: BytesMut,
    /// File offset of `buf[0]`.
    offset: u64,
    frames: u64,
    eof: bool,
    finished: bool,
}

impl<R: Read> RecordingReader<R> {
    /// Reads and checks the file header, with the default payload limit.
    pub fn new(inner: R) -> Result<RecordingReader<R>, RecordingError> {
        Self::with_max_payload_len(inner, DEFAULT_MAX_PAYLOAD_LEN)
    }

    /// Reads and checks the file header; frames over `max_payload_len` are corrupt.
    pub fn with_max_payload_len(
        mut inner: R,
        max_payload_len: u32,
    ) -> Result<RecordingReader<R>, RecordingError> {
        let mut header = Vec::with_capacity(RECORDING_HEADER_LEN);
        (&mut inner)
            .take(RECORDING_HEADER_LEN as u64)
            .read_to_end(&mut header)?;
        check_file_header(&header)?;
        Ok(RecordingReader {
            inner,
            decoder: FrameDecoder::new(max_payload_len),
            buf: BytesMut::with_capacity(64 * 1024),
            offset: RECORDING_HEADER_LEN as u64,
            frames: 0,
            eof: false,
            finished: false,
        })
    }

    /// Complete frames returned so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The next frame; `Ok(None)` at a clean end of file. After an error (a cut or a
    /// corrupt frame) every later call returns `Ok(None)`.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, RecordingError> {
        if self.finished {
            return Ok(None);
        }
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => {
                    self.offset += frame.encoded_len() as u64;
                    self.frames += 1;
                    return Ok(Some(frame));
                }
                Ok(None) if self.eof => {
                    self.finished = true;
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    return Err(RecordingError::Truncated {
                        offset: self.offset,
                        frames: self.frames,
                        partial_bytes: self.buf.len(),
                    });
                }
                Ok(None) => self.fill()?,
                Err(source) => {
                    self.finished = true;
                    return Err(RecordingError::Corrupt {
                        offset: self.offset,
                        frame_index: self.frames,
                        source,
                    });
                }
            }
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        let start = self.buf.len();
        // The decoder has already reserved room for a whole frame once its header is in.
        let want = self.buf.capacity().saturating_sub(start).max(64 * 1024);
        self.buf.resize(start + want, 0);
        let n = loop {
            match self.inner.read(&mut self.buf[start..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match n {
            Ok(n) => {
                self.buf.truncate(start + n);
                self.eof = n == 0;
                Ok(())
            }
            Err(e) => {
                self.buf.truncate(start);
                self.finished = true;
                Err(e)
            }
        }
    }
}

impl<R: Read> Iterator for RecordingReader<R> {
    type Item = Result<Frame, RecordingError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

/// Parses a whole recording held in memory: every complete frame, plus the error that
/// stopped reading early, if any (typically [`RecordingError::Truncated`]).
pub fn parse(bytes: &[u8]) -> (Vec<Frame>, Option<RecordingError>) {
    let mut reader = match RecordingReader::new(bytes) {
        Ok(reader) => reader,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut frames = Vec::new();
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use bytes::Bytes;

    use super::*;
    use crate::FrameHeader;

    fn two_frames() -> Vec<u8> {
        let mut writer = RecordingWriter::new(Vec::new()).unwrap();
        for seq in 0..2 {
            let frame = Frame::new(FrameHeader::jpeg(seq, 0, 1, 1), Bytes::from_static(b"ab"));
            writer.write_frame(&frame).unwrap();
        }
        writer.into_inner()
    }

    #[test]
    fn cut_message_names_the_file_length() {
        let file = two_frames();
        // 16-byte header, two 34-byte frames; cut 10 bytes into the second frame.
        let (frames, err) = parse(&file[..16 + 34 + 10]);
        assert_eq!(frames.len(), 1);
        assert_eq!(
            err.unwrap().to_string(),
            "recording is cut off at byte 60: 1 complete frames, then 10 bytes of an \
             incomplete frame that starts at byte 50"
        );
        let (_, err) = parse(&file[..9]);
        assert_eq!(
            err.unwrap().to_string(),
            "recording is cut off at byte 9: the file ends inside its 16-byte file header"
        );
    }

    #[test]
    fn causes_are_sources_not_repeated_in_the_message() {
        let mut file = two_frames();
        file[16 + 34] = b'X';
        let err = parse(&file).1.unwrap();
        assert_eq!(err.to_string(), "corrupt frame 1 at byte 50");
        let source = err.source().expect("the decode error is the source");
        assert!(source.to_string().starts_with("bad magic"), "{source}");

        assert_eq!(
            format!("{err}: {source}"),
            "corrupt frame 1 at byte 50: bad magic [58, 53, 57, 41]: not a VSWA frame \
             (expected \"VSWA\")"
        );
        assert_eq!(
            parse(b"hello world, not a recording")
                .1
                .unwrap()
                .to_string(),
            "not a VSWA recording (file starts with [68, 65, 6c, 6c, 6f, 20, 77, 6f], \
             expected \"VSWA-REC\")"
        );

        let err = RecordingError::from(io::Error::other("disk on fire"));
        assert_eq!(err.to_string(), "reading the recording failed");
        assert_eq!(err.source().unwrap().to_string(), "disk on fire");
    }
}
