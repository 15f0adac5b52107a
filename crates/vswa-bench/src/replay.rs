//! Real frames for the publisher (`--replay FILE`): the access units of an H.264 Annex B
//! file, the pictures of an MJPEG file (concatenated JPEGs, as `ffmpeg -f mjpeg` or the
//! codec quality tool write) or the frames of a VSWA recording (`vswa-recv --record`),
//! published in a loop with their own sizes, codec and keyframe flags, so the relay
//! treats them as it would a camera's stream (an H.264 viewer that falls behind skips to
//! the next keyframe, for one).

use std::path::Path;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use vswa_codec::{annexb, jpeg_dimensions, AccessUnitSplitter};
use vswa_protocol::recording::{self, RECORDING_MAGIC};
use vswa_protocol::Codec;

/// One frame to publish.
#[derive(Debug, Clone)]
pub struct ReplayFrame {
    /// What the payload is.
    pub codec: Codec,
    /// Whether a decoder can start here (every JPEG; H.264 IDR access units).
    pub keyframe: bool,
    /// The payload, as it goes after the VSWA header.
    pub payload: Bytes,
}

/// The frames of one file, in order.
#[derive(Debug, Clone)]
pub struct Replay {
    /// Frames, at least one.
    pub frames: Vec<ReplayFrame>,
    /// Picture width for the frame headers (0 if unknown).
    pub width: u16,
    /// Picture height for the frame headers (0 if unknown).
    pub height: u16,
    /// What the file was, for reports: `h264`, `mjpeg` or `recording`.
    pub kind: &'static str,
}

impl Replay {
    /// Reads `path`, telling the format by its first bytes.
    pub fn open(path: &Path) -> anyhow::Result<Replay> {
        let data =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let replay = Replay::parse(&data).with_context(|| format!("{}", path.display()))?;
        Ok(replay)
    }

    /// Splits a file's bytes into frames.
    pub fn parse(data: &[u8]) -> anyhow::Result<Replay> {
        let replay = if data.starts_with(&RECORDING_MAGIC) {
            from_recording(data)?
        } else if data.starts_with(&[0xFF, 0xD8]) {
            from_mjpeg(data)?
        } else if annexb::starts_with_start_code(data) {
            from_annexb(data)?
        } else {
            bail!(
                "not a VSWA recording, an MJPEG stream (FF D8 ...) or H.264 Annex B (00 00 01 ...)"
            );
        };
        if replay.frames.is_empty() {
            bail!("no frames in the file");
        }
        Ok(replay)
    }

    /// Mean payload bytes per frame.
    pub fn mean_payload(&self) -> f64 {
        let total: usize = self.frames.iter().map(|f| f.payload.len()).sum();
        total as f64 / self.frames.len() as f64
    }

    /// Frames that are keyframes.
    pub fn keyframes(&self) -> usize {
        self.frames.iter().filter(|f| f.keyframe).count()
    }
}

fn size16(w: u32, h: u32) -> (u16, u16) {
    (u16::try_from(w).unwrap_or(0), u16::try_from(h).unwrap_or(0))
}

fn from_annexb(data: &[u8]) -> anyhow::Result<Replay> {
    let mut splitter = AccessUnitSplitter::with_max_size(data.len().max(1));
    splitter.push(data);
    let mut frames = Vec::new();
    let push = |unit: vswa_codec::EncodedAccessUnit| ReplayFrame {
        codec: Codec::H264,
        keyframe: unit.keyframe,
        payload: unit.data,
    };
    while let Some(unit) = splitter.next_access_unit()? {
        frames.push(push(unit));
    }
    if let Some(unit) = splitter.finish()? {
        frames.push(push(unit));
    }
    if !frames.first().is_some_and(|f| f.keyframe) {
        bail!("the H.264 stream does not start with a keyframe (IDR access unit)");
    }
    let (width, height) = annexb::sps_dimensions(&frames[0].payload)
        .map(|(w, h)| size16(w, h))
        .unwrap_or((0, 0));
    Ok(Replay {
        frames,
        width,
        height,
        kind: "h264",
    })
}

/// Cuts concatenated JPEGs at each end-of-image marker. Entropy-coded data never holds
/// `FF D9` (an `FF` byte there is stuffed as `FF 00`), so this is exact for JPEGs without
/// embedded thumbnails, which is what encoders of live video write.
fn from_mjpeg(data: &[u8]) -> anyhow::Result<Replay> {
    let mut frames = Vec::new();
    let mut start = 0;
    while start + 4 <= data.len() {
        if data[start..start + 2] != [0xFF, 0xD8] {
            bail!("byte {start}: expected the next JPEG's FF D8");
        }
        let Some(end) = data[start + 2..]
            .windows(2)
            .position(|w| w == [0xFF, 0xD9])
            .map(|i| start + 2 + i + 2)
        else {
            bail!("byte {start}: a JPEG without its FF D9 end marker");
        };
        frames.push(ReplayFrame {
            codec: Codec::Jpeg,
            keyframe: true,
            payload: Bytes::copy_from_slice(&data[start..end]),
        });
        start = end;
    }
    let (width, height) =
        jpeg_dimensions(&frames.first().context("no JPEG")?.payload).unwrap_or((0, 0));
    Ok(Replay {
        frames,
        width,
        height,
        kind: "mjpeg",
    })
}

fn from_recording(data: &[u8]) -> anyhow::Result<Replay> {
    let (read, error) = recording::parse(data);
    if read.is_empty() {
        if let Some(e) = error {
            return Err(anyhow::Error::from(e).context("cannot read the recording"));
        }
    }
    let (width, height) = read
        .first()
        .map_or((0, 0), |f| (f.header().width, f.header().height));
    let frames = read
        .into_iter()
        .filter(|f| {
            let flags = f.header().flags;
            !flags.contains(vswa_protocol::Flags::END_OF_STREAM) && !f.payload().is_empty()
        })
        .map(|f| {
            let keyframe = f.header().codec == Codec::Jpeg
                || f.header().flags.contains(vswa_protocol::Flags::KEYFRAME);
            let (header, payload) = f.into_parts();
            ReplayFrame {
                codec: header.codec,
                keyframe,
                payload,
            }
        })
        .collect();
    Ok(Replay {
        frames,
        width,
        height,
        kind: "recording",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mjpeg_is_cut_at_each_end_marker() {
        let a = [0xFF, 0xD8, 1, 2, 0xFF, 0x00, 0xFF, 0xD9];
        let b = [0xFF, 0xD8, 3, 0xFF, 0xD9];
        let r = Replay::parse(&[&a[..], &b[..]].concat()).unwrap();
        assert_eq!(r.kind, "mjpeg");
        let payloads: Vec<&[u8]> = r.frames.iter().map(|f| &f.payload[..]).collect();
        assert_eq!(payloads, [&a[..], &b[..]]);
        assert!(r
            .frames
            .iter()
            .all(|f| f.keyframe && f.codec == Codec::Jpeg));
        assert!(Replay::parse(&[0xFF, 0xD8, 1, 2, 3]).is_err());
    }

    #[test]
    fn annexb_is_split_into_access_units_with_keyframes() {
        let stream = [
            &[
                0, 0, 0, 1, 0x67, 0x42, 0xC0, 0x1E, 0xDA, 0x02, 0x80, 0xF6, 0x40,
            ][..],
            &[0, 0, 0, 1, 0x68, 0xCE, 0x3C, 0x80],
            &[0, 0, 0, 1, 0x65, 0x88, 0x84],
            &[0, 0, 0, 1, 0x41, 0x9A, 0x02],
            &[0, 0, 0, 1, 0x41, 0x9A, 0x03],
        ]
        .concat();
        let r = Replay::parse(&stream).unwrap();
        assert_eq!(r.kind, "h264");
        assert_eq!((r.width, r.height), (640, 480));
        let keys: Vec<bool> = r.frames.iter().map(|f| f.keyframe).collect();
        assert_eq!(keys, [true, false, false]);
        assert_eq!(r.keyframes(), 1);
        // A stream that starts with a delta frame cannot be joined.
        assert!(Replay::parse(&[0, 0, 0, 1, 0x41, 0x9A, 0x02]).is_err());
    }

    #[test]
    fn recordings_keep_codec_keyframes_and_size() {
        use vswa_protocol::recording::RecordingWriter;
        use vswa_protocol::{Frame, FrameHeader};
        let mut w = RecordingWriter::new(Vec::new()).unwrap();
        let idr = Bytes::from_static(&[0, 0, 0, 1, 0x65, 0x88]);
        let delta = Bytes::from_static(&[0, 0, 0, 1, 0x41, 0x9A]);
        w.write_frame(&Frame::new(FrameHeader::h264(0, 1, 320, 240, true), idr))
            .unwrap();
        w.write_frame(&Frame::new(FrameHeader::h264(1, 2, 320, 240, false), delta))
            .unwrap();
        let r = Replay::parse(&w.into_inner()).unwrap();
        assert_eq!((r.kind, r.width, r.height), ("recording", 320, 240));
        let flags: Vec<(Codec, bool)> = r.frames.iter().map(|f| (f.codec, f.keyframe)).collect();
        assert_eq!(flags, [(Codec::H264, true), (Codec::H264, false)]);
    }

    #[test]
    fn unknown_bytes_are_refused() {
        assert!(Replay::parse(b"hello").is_err());
        assert!(Replay::parse(b"").is_err());
    }
}
