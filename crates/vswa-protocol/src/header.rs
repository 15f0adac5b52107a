//! The fixed 32-byte frame header: layout, flags and codec ids.

use crate::DecodeError;

/// The four bytes every frame starts with: ASCII `VSWA`.
pub const MAGIC: [u8; 4] = *b"VSWA";
/// The protocol version this crate writes and accepts.
pub const PROTOCOL_VERSION: u8 = 1;
/// Size of the encoded header in bytes.
pub const HEADER_LEN: usize = 32;
/// Default upper bound on a frame's payload length (16 MiB), checked before any payload
/// byte is buffered. A 4K JPEG at high quality is a few MiB.
///
/// This is the decoder's default. A relay has its own limit (vswa-relay: 8 MiB) and
/// announces it in [`Hello::max_payload_len`](crate::control::Hello::max_payload_len).
pub const DEFAULT_MAX_PAYLOAD_LEN: u32 = 16 * 1024 * 1024;

/// What the payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum Codec {
    /// One baseline or progressive JPEG (JFIF/EXIF) picture, SOI to EOI. Every JPEG
    /// frame is a keyframe.
    Jpeg = 1,
    /// One H.264 access unit in Annex B byte-stream format (each NAL unit after a 3- or
    /// 4-byte start code). Keyframes are IDR access units that carry SPS and PPS.
    H264 = 2,
}

impl Codec {
    /// The codec for a wire id, if known.
    pub fn from_id(id: u8) -> Option<Codec> {
        match id {
            1 => Some(Codec::Jpeg),
            2 => Some(Codec::H264),
            _ => None,
        }
    }

    /// The wire id.
    pub fn id(self) -> u8 {
        self as u8
    }
}

impl std::fmt::Display for Codec {
    /// The codec's usual name: `JPEG`, `H.264`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Codec::Jpeg => "JPEG",
            Codec::H264 => "H.264",
        })
    }
}

/// Frame flags (16 bits on the wire). Bits this version does not define must be zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u16);

impl Flags {
    /// The frame decodes on its own: every JPEG frame (receivers treat JPEG frames as
    /// keyframes even without the flag); for H.264, an IDR access unit with SPS and PPS.
    pub const KEYFRAME: Flags = Flags(1 << 0);
    /// The publisher ends the stream after this frame (the payload may be empty).
    pub const END_OF_STREAM: Flags = Flags(1 << 1);
    /// A "no signal" picture made by the sender while its camera is unavailable.
    pub const PLACEHOLDER: Flags = Flags(1 << 2);
    /// Every flag this version defines.
    pub const ALL: Flags = Flags(0b111);

    /// No flags.
    pub const fn empty() -> Flags {
        Flags(0)
    }

    /// The flags for `bits`, or `None` if a reserved bit is set.
    pub const fn from_bits(bits: u16) -> Option<Flags> {
        if bits & !Self::ALL.0 == 0 {
            Some(Flags(bits))
        } else {
            None
        }
    }

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// True if every flag in `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets or clears the flags in `other`.
    pub fn set(&mut self, other: Flags, on: bool) {
        if on {
            self.0 |= other.0;
        } else {
            self.0 &= !other.0;
        }
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names = Vec::new();
        for (flag, name) in [
            (Flags::KEYFRAME, "KEYFRAME"),
            (Flags::END_OF_STREAM, "END_OF_STREAM"),
            (Flags::PLACEHOLDER, "PLACEHOLDER"),
        ] {
            if self.contains(flag) {
                names.push(name);
            }
        }
        write!(f, "Flags({})", names.join(" | "))
    }
}

/// The fixed-size header in front of every payload.
///
/// Layout (big-endian, 32 bytes): magic `VSWA` (4), version (1), codec (1), flags (2),
/// payload length (4), width (2), height (2), sequence (8), timestamp in microseconds
/// since the UNIX epoch (8). See `docs/PROTOCOL.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// What the payload is.
    pub codec: Codec,
    /// Frame flags.
    pub flags: Flags,
    /// Length of the payload that follows the header, in bytes.
    pub payload_len: u32,
    /// Picture width in pixels (0 if unknown).
    pub width: u16,
    /// Picture height in pixels (0 if unknown).
    pub height: u16,
    /// Per-stream sequence number: 0 for the first frame a publisher captures, +1 for
    /// each captured frame; a gap means frames were dropped.
    pub sequence: u64,
    /// Capture time in microseconds since the UNIX epoch (UTC, sender's clock).
    pub timestamp_us: u64,
}

impl FrameHeader {
    /// A header for a JPEG keyframe; `payload_len` is set when the frame is built.
    pub fn jpeg(sequence: u64, timestamp_us: u64, width: u16, height: u16) -> FrameHeader {
        FrameHeader {
            codec: Codec::Jpeg,
            flags: Flags::KEYFRAME,
            payload_len: 0,
            width,
            height,
            sequence,
            timestamp_us,
        }
    }

    /// A header for an H.264 access unit: a keyframe (an IDR access unit that carries
    /// SPS and PPS) or a delta frame. `payload_len` is set when the frame is built.
    pub fn h264(
        sequence: u64,
        timestamp_us: u64,
        width: u16,
        height: u16,
        keyframe: bool,
    ) -> FrameHeader {
        FrameHeader {
            codec: Codec::H264,
            flags: if keyframe {
                Flags::KEYFRAME
            } else {
                Flags::empty()
            },
            payload_len: 0,
            width,
            height,
            sequence,
            timestamp_us,
        }
    }

    /// Total encoded size of the frame this header announces.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.payload_len as usize
    }

    /// The 32 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = PROTOCOL_VERSION;
        out[5] = self.codec.id();
        out[6..8].copy_from_slice(&self.flags.bits().to_be_bytes());
        out[8..12].copy_from_slice(&self.payload_len.to_be_bytes());
        out[12..14].copy_from_slice(&self.width.to_be_bytes());
        out[14..16].copy_from_slice(&self.height.to_be_bytes());
        out[16..24].copy_from_slice(&self.sequence.to_be_bytes());
        out[24..32].copy_from_slice(&self.timestamp_us.to_be_bytes());
        out
    }

    /// Decodes and validates a header from the start of `buf`, checking the payload
    /// length against `max_payload_len`. Bytes after the header are ignored.
    ///
    /// Fields are checked in wire order, so a short buffer that already shows bad magic
    /// reports [`DecodeError::BadMagic`] rather than [`DecodeError::Truncated`].
    pub fn decode(buf: &[u8], max_payload_len: u32) -> Result<FrameHeader, DecodeError> {
        let truncated = || DecodeError::Truncated {
            needed: HEADER_LEN,
            available: buf.len(),
        };
        // Validate whatever prefix is present so garbage is rejected early.
        let magic_seen = buf.len().min(4);
        if buf[..magic_seen] != MAGIC[..magic_seen] {
            let mut found = [0u8; 4];
            found[..magic_seen].copy_from_slice(&buf[..magic_seen]);
            return Err(DecodeError::BadMagic { found });
        }
        let version = *buf.get(4).ok_or_else(truncated)?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion { version });
        }
        let codec_id = *buf.get(5).ok_or_else(truncated)?;
        let codec =
            Codec::from_id(codec_id).ok_or(DecodeError::UnknownCodec { codec: codec_id })?;
        let flag_bits = u16::from_be_bytes(be(buf, 6).ok_or_else(truncated)?);
        let flags =
            Flags::from_bits(flag_bits).ok_or(DecodeError::ReservedFlags { flags: flag_bits })?;
        let payload_len = u32::from_be_bytes(be(buf, 8).ok_or_else(truncated)?);
        if payload_len > max_payload_len {
            return Err(DecodeError::PayloadTooLarge {
                len: payload_len,
                max: max_payload_len,
            });
        }
        if buf.len() < HEADER_LEN {
            return Err(truncated());
        }
        Ok(FrameHeader {
            codec,
            flags,
            payload_len,
            width: u16::from_be_bytes(be(buf, 12).ok_or_else(truncated)?),
            height: u16::from_be_bytes(be(buf, 14).ok_or_else(truncated)?),
            sequence: u64::from_be_bytes(be(buf, 16).ok_or_else(truncated)?),
            timestamp_us: u64::from_be_bytes(be(buf, 24).ok_or_else(truncated)?),
        })
    }
}

/// `N` bytes of `buf` starting at `at`, if present.
fn be<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}
/// The wire timestamp of a system time: microseconds since the UNIX epoch (0 for a time
/// before it). The crate never reads the clock; callers pass `SystemTime::now()`.
pub fn timestamp_us(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
