//! H.264 Annex B byte streams: start codes, NAL units, keyframes, and a streaming
//! splitter that cuts a byte stream (say `ffmpeg -c:v libx264 -f h264 -` on stdin) into
//! the access units VSWA sends as frames, one picture each.
//!
//! Pure Rust and always compiled: the relay and the protocol tools need to find keyframes
//! without linking an H.264 codec.
//!
//! ```
//! use vswa_codec::annexb::{is_keyframe, nal_units, AccessUnitSplitter, NAL_IDR_SLICE};
//!
//! // SPS, PPS, an IDR slice, then a non-IDR slice: two access units.
//! let stream = [
//!     &[0, 0, 0, 1, 0x67, 0x42, 0xC0, 0x1E][..],
//!     &[0, 0, 0, 1, 0x68, 0xCE, 0x3C, 0x80],
//!     &[0, 0, 0, 1, 0x65, 0x88, 0x84],
//!     &[0, 0, 0, 1, 0x41, 0x9A, 0x02],
//! ]
//! .concat();
//! let types: Vec<u8> = nal_units(&stream).map(|nal| nal.nal_type).collect();
//! assert_eq!(types, [7, 8, NAL_IDR_SLICE, 1]);
//!
//! let mut splitter = AccessUnitSplitter::new();
//! splitter.push(&stream);
//! let first = splitter.next_access_unit()?.expect("the second slice ends the first AU");
//! assert!(first.keyframe && is_keyframe(&first.data));
//! assert_eq!(splitter.next_access_unit()?, None); // the second AU could still grow
//! let last = splitter.finish()?.expect("end of input ends the second AU");
//! assert!(!last.keyframe);
//! # Ok::<(), vswa_codec::CodecError>(())
//! ```

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::CodecError;

/// NAL unit type of a slice of a non-IDR picture.
pub const NAL_SLICE: u8 = 1;
/// NAL unit type of slice data partition A (Extended profile), which carries the slice
/// header.
pub const NAL_SLICE_PARTITION_A: u8 = 2;
/// NAL unit type of a slice of an IDR picture: a point where decoding can start.
pub const NAL_IDR_SLICE: u8 = 5;
/// NAL unit type of supplemental enhancement information.
pub const NAL_SEI: u8 = 6;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 9;

/// Largest access unit [`AccessUnitSplitter::new`] accepts: 8 MiB, several times a 4K
/// intra picture at a high bitrate.
pub const DEFAULT_MAX_ACCESS_UNIT: usize = 8 << 20;

/// One H.264 access unit (one picture) in Annex B form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedAccessUnit {
    /// The NAL units, each after a start code; the first start code is at offset 0.
    pub data: Bytes,
    /// Whether the access unit holds an IDR slice, so a decoder can start here.
    pub keyframe: bool,
}

/// Whether `data` begins with an Annex B start code, `00 00 01` or `00 00 00 01`.
pub fn starts_with_start_code(data: &[u8]) -> bool {
    data.starts_with(&[0, 0, 1]) || data.starts_with(&[0, 0, 0, 1])
}

/// Whether the access unit holds an IDR slice (NAL type 5).
pub fn is_keyframe(access_unit: &[u8]) -> bool {
    nal_units(access_unit).any(|nal| nal.nal_type == NAL_IDR_SLICE)
}

/// Picture size, in pixels after the SPS's cropping, of the first sequence parameter set
/// (NAL type 7) in `access_unit`; `None` without one, or when it cannot be read.
///
/// This is what a publisher that passes an H.264 stream through puts in the frame
/// header's width and height (docs/PROTOCOL.md, "Codec 2: H.264").
///
/// ```
/// use vswa_codec::annexb::sps_dimensions;
///
/// // Baseline, level 3.0, 640x480 (40x30 macroblocks), no cropping.
/// let sps = [0, 0, 0, 1, 0x67, 0x42, 0xC0, 0x1E, 0xDA, 0x02, 0x80, 0xF6, 0x40];
/// assert_eq!(sps_dimensions(&sps), Some((640, 480)));
/// ```
pub fn sps_dimensions(access_unit: &[u8]) -> Option<(u32, u32)> {
    let sps = nal_units(access_unit).find(|nal| nal.nal_type == NAL_SPS)?;
    parse_sps_dimensions(sps.data.get(1..)?).ok()
}

/// `seq_parameter_set_data()` (H.264 7.3.2.1.1) up to the cropping rectangle.
fn parse_sps_dimensions(rbsp: &[u8]) -> Result<(u32, u32), BitsEnd> {
    let mut bits = RbspBits::new(rbsp);
    let profile_idc = bits.bits(8)?;
    bits.bits(16)?; // constraint flags, reserved bits, level_idc
    bits.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = bits.ue()?;
        if chroma_format_idc == 3 {
            bits.bits(1)?; // separate_colour_plane_flag
        }
        bits.ue()?; // bit_depth_luma_minus8
        bits.ue()?; // bit_depth_chroma_minus8
        bits.bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if bits.bit()? {
            // seq_scaling_matrix_present_flag: skip the scaling lists (7.3.2.1.1.1).
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if bits.bit()? {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + i64::from(bits.se()?) + 256) % 256;
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    bits.ue()?; // log2_max_frame_num_minus4
    match bits.ue()? {
        // pic_order_cnt_type
        0 => {
            bits.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            bits.bits(1)?; // delta_pic_order_always_zero_flag
            bits.se()?; // offset_for_non_ref_pic
            bits.se()?; // offset_for_top_to_bottom_field
            let cycle = bits.ue()?;
            if cycle > 255 {
                return Err(BitsEnd::Invalid);
            }
            for _ in 0..cycle {
                bits.se()?;
            }
        }
        2 => {}
        _ => return Err(BitsEnd::Invalid),
    }
    bits.ue()?; // max_num_ref_frames
    bits.bits(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(bits.ue()?) + 1;
    let height_map_units = u64::from(bits.ue()?) + 1;
    let frame_mbs_only = bits.bit()?;
    if !frame_mbs_only {
        bits.bits(1)?; // mb_adaptive_frame_field_flag
    }
    bits.bits(1)?; // direct_8x8_inference_flag
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let mut width = width_mbs * 16;
    let mut height = height_map_units * 16 * field_factor;
    if bits.bit()? {
        // frame_cropping_flag: offsets in chroma sample units (7.4.2.1.1).
        let (crop_x, crop_y) = match chroma_format_idc {
            0 | 3 => (1, field_factor),
            2 => (2, field_factor),
            _ => (2, 2 * field_factor),
        };
        let (left, right) = (u64::from(bits.ue()?), u64::from(bits.ue()?));
        let (top, bottom) = (u64::from(bits.ue()?), u64::from(bits.ue()?));
        width = width
            .checked_sub((left + right) * crop_x)
            .ok_or(BitsEnd::Invalid)?;
        height = height
            .checked_sub((top + bottom) * crop_y)
            .ok_or(BitsEnd::Invalid)?;
    }
    match (u32::try_from(width), u32::try_from(height)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => Ok((w, h)),
        _ => Err(BitsEnd::Invalid),
    }
}

/// One NAL unit found in a buffer by [`nal_units`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NalUnit<'a> {
    /// `nal_unit_type`, the low 5 bits of the header byte (see the `NAL_*` constants).
    pub nal_type: u8,
    /// `nal_ref_idc`, 0 when no other picture refers to this one.
    pub nal_ref_idc: u8,
    /// Where the NAL unit sits in the buffer: from its header byte, without the start
    /// code, to its last byte, without the zero bytes that may pad the stream before the
    /// next start code.
    pub range: Range<usize>,
    /// The NAL unit's bytes (`&buffer[range]`), still with emulation-prevention bytes.
    pub data: &'a [u8],
}

impl NalUnit<'_> {
    /// `first_mb_in_slice` of a slice NAL unit (types 1, 2 and 5): 0 for the first slice
    /// of a picture. `None` for other types, or when the NAL unit ends before the field
    /// does.
    pub fn first_mb_in_slice(&self) -> Option<u32> {
        if !starts_slice(self.nal_type) {
            return None;
        }
        read_ue(self.data.get(1..)?).ok()
    }
}

/// The NAL units in `buffer`, in order. Bytes before the first start code are skipped,
/// and so are empty NAL units (two start codes in a row).
pub fn nal_units(buffer: &[u8]) -> NalUnits<'_> {
    NalUnits {
        buffer,
        next: find_start_code(buffer, 0),
    }
}

/// Iterator returned by [`nal_units`].
#[derive(Debug, Clone)]
pub struct NalUnits<'a> {
    buffer: &'a [u8],
    /// Position of the next `00 00 01`.
    next: Option<usize>,
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = NalUnit<'a>;

    fn next(&mut self) -> Option<NalUnit<'a>> {
        loop {
            let start = self.next? + 3;
            self.next = find_start_code(self.buffer, start);
            let mut end = self.next.unwrap_or(self.buffer.len());
            // A NAL unit never ends in a zero byte; zeros here are the next start code's
            // zero_byte or trailing_zero_8bits of the stream.
            while end > start && self.buffer[end - 1] == 0 {
                end -= 1;
            }
            if end == start {
                continue;
            }
            let header = self.buffer[start];
            return Some(NalUnit {
                nal_type: header & 0x1F,
                nal_ref_idc: (header >> 5) & 0x03,
                range: start..end,
                data: &self.buffer[start..end],
            });
        }
    }
}

/// Position of the first `00 00 01` at or after `from`.
fn find_start_code(data: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 2 < data.len() {
        // A third byte above 1 rules out a start code at i, i + 1 and i + 2 at once,
        // which makes the scan skip most of a slice three bytes at a time.
        match data[i + 2] {
            0 => i += 1,
            1 if data[i] == 0 && data[i + 1] == 0 => return Some(i),
            1 => i += 3,
            _ => i += 3,
        }
    }
    None
}

/// Slice NAL units begin with a slice header whose first field is `first_mb_in_slice`.
fn starts_slice(nal_type: u8) -> bool {
    matches!(nal_type, NAL_SLICE | NAL_SLICE_PARTITION_A | NAL_IDR_SLICE)
}

/// Why an RBSP field could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BitsEnd {
    /// The bytes so far end before the field does; more may follow.
    OutOfData,
    /// The NAL unit ends (a start code or `00 00 00` follows) or the field is invalid.
    Invalid,
}

/// Reads one unsigned exp-Golomb value, `ue(v)` in H.264 7.2, from the start of a NAL
/// unit's payload (after its header byte).
///
/// Emulation-prevention bytes (`00 00 03`) are dropped on the fly, so only the few bytes
/// the field needs are looked at, never the whole NAL unit.
fn read_ue(payload: &[u8]) -> Result<u32, BitsEnd> {
    RbspBits::new(payload).ue()
}

/// A bit reader over the raw byte sequence payload inside a NAL unit.
struct RbspBits<'a> {
    data: &'a [u8],
    pos: usize,
    /// Zero bytes in a row just read, to spot `00 00 03`.
    zeros: usize,
    byte: u8,
    bits_left: u8,
}

impl<'a> RbspBits<'a> {
    fn new(data: &'a [u8]) -> RbspBits<'a> {
        RbspBits {
            data,
            pos: 0,
            zeros: 0,
            byte: 0,
            bits_left: 0,
        }
    }

    fn bit(&mut self) -> Result<bool, BitsEnd> {
        if self.bits_left == 0 {
            self.byte = self.next_byte()?;
            self.bits_left = 8;
        }
        self.bits_left -= 1;
        Ok((self.byte >> self.bits_left) & 1 == 1)
    }

    /// The next `n` bits (at most 32), most significant first.
    fn bits(&mut self, n: u32) -> Result<u32, BitsEnd> {
        let mut value = 0u32;
        for _ in 0..n {
            value = (value << 1) | u32::from(self.bit()?);
        }
        Ok(value)
    }

    /// `ue(v)`: an unsigned exp-Golomb value.
    fn ue(&mut self) -> Result<u32, BitsEnd> {
        let mut leading_zeros = 0;
        while !self.bit()? {
            leading_zeros += 1;
            if leading_zeros > 32 {
                return Err(BitsEnd::Invalid);
            }
        }
        let mut suffix: u64 = 0;
        for _ in 0..leading_zeros {
            suffix = (suffix << 1) | u64::from(self.bit()?);
        }
        u32::try_from((1u64 << leading_zeros) - 1 + suffix).map_err(|_| BitsEnd::Invalid)
    }

    /// `se(v)`: a signed exp-Golomb value.
    fn se(&mut self) -> Result<i32, BitsEnd> {
        let k = i64::from(self.ue()?);
        let value = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        i32::try_from(value).map_err(|_| BitsEnd::Invalid)
    }

    fn next_byte(&mut self) -> Result<u8, BitsEnd> {
        loop {
            let byte = *self.data.get(self.pos).ok_or(BitsEnd::OutOfData)?;
            self.pos += 1;
            if self.zeros >= 2 {
                match byte {
                    3 => {
                        self.zeros = 0;
                        continue;
                    }
                    0..=2 => return Err(BitsEnd::Invalid),
                    _ => {}
                }
            }
            self.zeros = if byte == 0 { self.zeros + 1 } else { 0 };
            return Ok(byte);
        }
    }
}

/// Cuts an Annex B byte stream, fed in chunks of any size, into access units.
///
/// Boundaries follow H.264 7.4.1.2.3: a new access unit starts with an access unit
/// delimiter (type 9); with an SEI, SPS or PPS (6, 7, 8) or a type 14..=18 NAL unit after
/// a slice; or with a slice (1, 2, 5) whose `first_mb_in_slice` is 0, or whose IDR-ness
/// differs from the slices before it, after a slice of the current access unit. That is
/// exact for the streams encoders write; it does not undo arbitrary slice order or
/// redundant pictures (Baseline options no common encoder uses).
///
/// Without delimiters the end of a picture shows only when the next one starts, so an
/// access unit comes out once the first NAL unit of the next has arrived: a live stream
/// runs one picture behind, and [`finish`](AccessUnitSplitter::finish) hands over the last.
///
/// Memory is bounded: an access unit longer than the configured maximum is reported once
/// as [`CodecError::AccessUnitTooLarge`] (as soon as it outgrows the limit, even before it
/// ends), its bytes are dropped, and the splitter then skips to the next NAL unit that
/// starts an access unit on its own (a delimiter, SEI, SPS, PPS, or a slice with
/// `first_mb_in_slice` 0). The start of a stream is skipped the same way, so a stream
/// joined midway starts clean. How the input is chunked never changes the result.
///
/// ```
/// use vswa_codec::annexb::AccessUnitSplitter;
///
/// let mut splitter = AccessUnitSplitter::new();
/// let mut units = Vec::new();
/// // Two pictures of one slice each, fed one byte at a time.
/// for byte in [0, 0, 1, 0x65, 0x88, 0, 0, 1, 0x41, 0x9A] {
///     splitter.push(&[byte]);
///     while let Some(unit) = splitter.next_access_unit()? {
///         units.push(unit);
///     }
/// }
/// units.extend(splitter.finish()?);
/// assert_eq!(units.len(), 2);
/// assert_eq!(&units[1].data[..], [0, 0, 1, 0x41, 0x9A]);
/// # Ok::<(), vswa_codec::CodecError>(())
/// ```
#[derive(Debug)]
pub struct AccessUnitSplitter {
    /// The current access unit from its first start code on, then whatever has arrived
    /// after it. While syncing or discarding, only the bytes still to be looked at.
    buf: BytesMut,
    max_size: usize,
    /// Stream offset of `buf[0]`, for error messages.
    offset: u64,
    /// Where to look for the next start code.
    scan: usize,
    /// A NAL unit whose start code has been found but which is not judged yet: does it
    /// start an access unit?
    pending: Option<Pending>,
    /// Header position of the last NAL unit taken into the current access unit, so a cut
    /// never takes its bytes.
    last_header: Option<usize>,
    mode: Mode,
    /// Whether the current access unit has a slice yet, and of which kind (IDR or not).
    slice_idr: Option<bool>,
    keyframe: bool,
    /// `finish` was called: the end of the buffer ends the last NAL unit.
    end_of_input: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No access unit is open: NAL units are dropped until one starts an access unit by
    /// itself. The state at the start of a stream and after an oversized access unit.
    Syncing,
    /// Collecting the current access unit.
    Collecting,
    /// The current access unit outgrew the limit and was reported: its NAL units are
    /// still followed, to find where it ends, but their bytes are dropped.
    Discarding,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Where an access unit starting with this NAL unit begins: its start code, with one
    /// leading zero byte if there is one, so the unit starts `00 00 00 01` as B.1.2 asks.
    cut: usize,
    /// Position of the NAL header byte.
    header: usize,
}

/// What a NAL unit does to the access unit being collected.
enum Verdict {
    /// It belongs to the current access unit.
    Continue,
    /// It starts a new access unit.
    Start,
    /// It is dropped (only while syncing).
    Drop,
    /// Its header or `first_mb_in_slice` has not arrived yet.
    NeedMore,
}

/// Bytes kept at the end of the buffer when skipping: a start code and its zero byte.
const START_CODE_TAIL: usize = 3;

impl Default for AccessUnitSplitter {
    fn default() -> Self {
        AccessUnitSplitter::new()
    }
}

impl AccessUnitSplitter {
    /// A splitter accepting access units up to [`DEFAULT_MAX_ACCESS_UNIT`] bytes.
    pub fn new() -> AccessUnitSplitter {
        AccessUnitSplitter::with_max_size(DEFAULT_MAX_ACCESS_UNIT)
    }

    /// A splitter accepting access units up to `max_size` bytes, start codes included.
    pub fn with_max_size(max_size: usize) -> AccessUnitSplitter {
        AccessUnitSplitter {
            buf: BytesMut::new(),
            max_size,
            offset: 0,
            scan: 0,
            pending: None,
            last_header: None,
            mode: Mode::Syncing,
            slice_idr: None,
            keyframe: false,
            end_of_input: false,
        }
    }

    /// The largest access unit this splitter accepts.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Appends the next bytes of the stream. Call
    /// [`next_access_unit`](AccessUnitSplitter::next_access_unit) until it returns
    /// `Ok(None)` before pushing more, so the buffer holds at most one access unit and a
    /// chunk.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete access unit, or `Ok(None)` if more input is needed.
    ///
    /// An error reports an access unit over the size limit; the splitter has dropped it
    /// and can be called again.
    pub fn next_access_unit(&mut self) -> Result<Option<EncodedAccessUnit>, CodecError> {
        loop {
            if let Some(pending) = self.pending {
                match self.judge(pending) {
                    Verdict::NeedMore => return self.wait(pending.cut),
                    Verdict::Continue => self.take(),
                    Verdict::Drop => self.pending = None,
                    Verdict::Start => match self.mode {
                        Mode::Collecting => return self.emit(pending.cut),
                        // The oversized unit ends here: judge this NAL unit afresh.
                        Mode::Discarding => self.resync(pending.cut),
                        Mode::Syncing => {
                            // Whatever came before was not part of any deliverable unit.
                            self.consume(pending.cut);
                            self.mode = Mode::Collecting;
                            self.take();
                        }
                    },
                }
                continue;
            }
            let Some(at) = find_start_code(&self.buf, self.scan) else {
                // The last two bytes may begin a start code.
                self.scan = self.scan.max(self.buf.len().saturating_sub(2));
                if self.end_of_input {
                    return self.end();
                }
                // Nothing the next start code needs can be before this.
                let tail = self.buf.len().saturating_sub(START_CODE_TAIL);
                let zeros = self.buf[tail..]
                    .iter()
                    .rev()
                    .take_while(|&&b| b == 0)
                    .count();
                return self.wait(self.buf.len() - zeros);
            };
            let cut = match self.last_header {
                Some(header) if at > header + 1 && self.buf[at - 1] == 0 => at - 1,
                None if at > 0 && self.buf[at - 1] == 0 => at - 1,
                _ => at,
            };
            self.pending = Some(Pending {
                cut,
                header: at + 3,
            });
            self.scan = at + 3;
        }
    }

    /// Ends the stream: the bytes after the last boundary form the final access unit.
    ///
    /// Returns one access unit per call (normally just the last one, if
    /// [`next_access_unit`](AccessUnitSplitter::next_access_unit) was drained first), then
    /// `Ok(None)`, after which the splitter is reset and [`push`](AccessUnitSplitter::push)
    /// starts a new stream.
    pub fn finish(&mut self) -> Result<Option<EncodedAccessUnit>, CodecError> {
        self.end_of_input = true;
        self.next_access_unit()
    }

    /// Decides what the pending NAL unit does.
    fn judge(&self, pending: Pending) -> Verdict {
        let Some(&header) = self.buf.get(pending.header) else {
            // A start code with nothing after it: at the end of input, trailing junk.
            return match (self.end_of_input, self.mode) {
                (false, _) => Verdict::NeedMore,
                (true, Mode::Syncing) => Verdict::Drop,
                (true, _) => Verdict::Continue,
            };
        };
        let nal_type = header & 0x1F;
        let first_slice = starts_slice(nal_type)
            && match read_ue(&self.buf[pending.header + 1..]) {
                Ok(first_mb) => first_mb == 0,
                Err(BitsEnd::OutOfData) if !self.end_of_input => return Verdict::NeedMore,
                // A slice too short to hold its header: keep it with its neighbours and
                // let the decoder complain.
                Err(_) => false,
            };
        let opens_unit =
            matches!(nal_type, NAL_AUD | NAL_SEI | NAL_SPS | NAL_PPS | 14..=18) || first_slice;
        let starts = match self.mode {
            Mode::Syncing if opens_unit => return Verdict::Start,
            Mode::Syncing => return Verdict::Drop,
            _ if nal_type == NAL_AUD => true,
            _ => match self.slice_idr {
                None => false,
                Some(idr) if starts_slice(nal_type) => {
                    first_slice || idr != (nal_type == NAL_IDR_SLICE)
                }
                Some(_) => opens_unit,
            },
        };
        if starts {
            Verdict::Start
        } else {
            Verdict::Continue
        }
    }

    /// Takes the pending NAL unit into the current access unit.
    fn take(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        self.last_header = Some(pending.header);
        let nal_type = self.buf.get(pending.header).map_or(0, |h| h & 0x1F);
        if starts_slice(nal_type) {
            self.slice_idr = Some(nal_type == NAL_IDR_SLICE);
        }
        self.keyframe |= nal_type == NAL_IDR_SLICE;
    }

    /// Hands out `buf[..cut]`; the pending NAL unit starts the next access unit.
    fn emit(&mut self, cut: usize) -> Result<Option<EncodedAccessUnit>, CodecError> {
        let offset = self.offset;
        let data = self.consume(cut).freeze();
        let keyframe = std::mem::take(&mut self.keyframe);
        self.slice_idr = None;
        self.last_header = None;
        if data.len() > self.max_size {
            // The pending NAL unit is judged again, as at the start of a stream.
            self.mode = Mode::Syncing;
            return Err(self.too_large(offset, data.len()));
        }
        self.take();
        Ok(Some(EncodedAccessUnit { data, keyframe }))
    }

    /// Drops the discarded unit's last bytes and looks for a fresh start at `cut`.
    fn resync(&mut self, cut: usize) {
        self.consume(cut);
        self.keyframe = false;
        self.slice_idr = None;
        self.last_header = None;
        self.mode = Mode::Syncing;
    }

    /// More input is needed. `au_len` is how long the current access unit is known to
    /// be; past the limit that is an error now, so a stream without boundaries cannot
    /// grow the buffer without bound.
    fn wait(&mut self, au_len: usize) -> Result<Option<EncodedAccessUnit>, CodecError> {
        let report = self.mode == Mode::Collecting && au_len > self.max_size;
        let offset = self.offset;
        if report || self.mode != Mode::Collecting {
            // Keep only what may begin the next access unit: the pending NAL unit, or a
            // start code being split between chunks.
            let keep_from = match self.pending {
                Some(pending) => pending.cut,
                None => self.buf.len().saturating_sub(START_CODE_TAIL),
            };
            self.consume(keep_from);
        }
        if report {
            self.mode = Mode::Discarding;
            return Err(self.too_large(offset, au_len));
        }
        Ok(None)
    }

    /// End of input with no start code left to find.
    fn end(&mut self) -> Result<Option<EncodedAccessUnit>, CodecError> {
        let result = match self.mode {
            Mode::Collecting if !self.buf.is_empty() => {
                let len = self.buf.len();
                self.emit_last(len)
            }
            _ => Ok(None),
        };
        if !matches!(result, Ok(Some(_))) {
            // Nothing more to hand out: start over for a new stream.
            *self = AccessUnitSplitter::with_max_size(self.max_size);
        }
        result
    }

    fn emit_last(&mut self, len: usize) -> Result<Option<EncodedAccessUnit>, CodecError> {
        let result = self.emit(len);
        // Nothing follows the last unit: the next call resets.
        self.mode = Mode::Syncing;
        result
    }

    fn too_large(&self, offset: u64, size: usize) -> CodecError {
        CodecError::AccessUnitTooLarge {
            offset,
            size,
            max: self.max_size,
        }
    }

    /// Removes `buf[..len]` and shifts every stored position.
    fn consume(&mut self, len: usize) -> BytesMut {
        let head = self.buf.split_to(len);
        self.offset += len as u64;
        self.scan = self.scan.saturating_sub(len);
        self.last_header = self.last_header.and_then(|h| h.checked_sub(len));
        if let Some(pending) = self.pending.as_mut() {
            pending.cut -= len;
            pending.header -= len;
        }
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `bits` (most significant first) after the header byte, adding
    /// emulation-prevention bytes the way an encoder does.
    fn nal_with_bits(header: u8, bits: &str) -> Vec<u8> {
        let mut rbsp = Vec::new();
        let padded = format!("{bits}1{}", "0".repeat((8 - (bits.len() + 1) % 8) % 8));
        for byte in padded.as_bytes().chunks(8) {
            rbsp.push(u8::from_str_radix(std::str::from_utf8(byte).unwrap(), 2).unwrap());
        }
        let mut nal = vec![header];
        let mut zeros = 0;
        for b in rbsp {
            if zeros >= 2 && b <= 3 {
                nal.push(3);
                zeros = 0;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            nal.push(b);
        }
        nal
    }

    fn ue_bits(value: u32) -> String {
        let v = u64::from(value) + 1;
        let len = 64 - v.leading_zeros();
        format!("{}{:b}", "0".repeat(len as usize - 1), v)
    }

    #[test]
    fn start_codes() {
        assert!(starts_with_start_code(&[0, 0, 1, 0x65]));
        assert!(starts_with_start_code(&[0, 0, 0, 1, 0x65]));
        assert!(!starts_with_start_code(&[0, 0, 0, 0, 1]));
        assert!(!starts_with_start_code(&[0, 1, 0x65]));
        assert!(!starts_with_start_code(&[]));
    }

    #[test]
    fn find_start_code_skips_fast_and_finds_straddling_codes() {
        assert_eq!(find_start_code(&[9, 9, 9, 0, 0, 1], 0), Some(3));
        assert_eq!(find_start_code(&[0, 0, 0, 0, 1], 0), Some(2));
        assert_eq!(find_start_code(&[0, 0, 2, 0, 0, 1], 0), Some(3));
        assert_eq!(find_start_code(&[0, 1, 0, 0, 1], 0), Some(2));
        assert_eq!(find_start_code(&[0, 0, 1], 1), None);
        assert_eq!(find_start_code(&[0, 0], 0), None);
    }

    #[test]
    fn nal_iterator_reports_type_ref_idc_and_range() {
        let buf = [
            9, 9, // junk before the first start code
            0, 0, 0, 1, 0x67, 0x42, // SPS, ref_idc 3
            0, 0, 1, 0x68, 0xCE, 0, 0, // PPS followed by trailing zeros
            0, 0, 1, 0, 0, 1, 0x06, 0x05, // an empty NAL unit, then SEI (ref_idc 0)
        ];
        let nals: Vec<_> = nal_units(&buf).collect();
        assert_eq!(nals.len(), 3, "{nals:?}");
        assert_eq!((nals[0].nal_type, nals[0].nal_ref_idc), (7, 3));
        assert_eq!(nals[0].range, 6..8);
        assert_eq!(nals[0].data, [0x67, 0x42]);
        assert_eq!((nals[1].nal_type, nals[1].range.clone()), (8, 11..13));
        assert_eq!((nals[2].nal_type, nals[2].nal_ref_idc), (6, 0));
        assert_eq!(nals[2].data, [0x06, 0x05]);
        assert_eq!(nal_units(&[1, 2, 3]).count(), 0);
    }

    #[test]
    fn keyframe_needs_an_idr_slice() {
        assert!(is_keyframe(&[0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x65, 0x88]));
        assert!(!is_keyframe(&[0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x41, 0x9A]));
        assert!(!is_keyframe(&[0x65, 0x88]), "no start code, no NAL unit");
    }

    #[test]
    fn exp_golomb_values_and_emulation_prevention() {
        for value in [
            0,
            1,
            2,
            3,
            7,
            255,
            8159,
            65_535,
            1 << 20,
            4_194_303,
            u32::MAX,
        ] {
            let nal = nal_with_bits(0x41, &ue_bits(value));
            assert_eq!(read_ue(&nal[1..]), Ok(value), "{value}: {nal:02x?}");
            let unit = NalUnit {
                nal_type: 1,
                nal_ref_idc: 2,
                range: 0..nal.len(),
                data: &nal,
            };
            assert_eq!(unit.first_mb_in_slice(), Some(value));
        }
        // 4194303 is 22 zero bits, a one, 22 zeros: the third byte is 0x02, so an
        // encoder inserts 00 00 03 that the reader must skip.
        assert!(nal_with_bits(0x41, &ue_bits(4_194_303))
            .windows(3)
            .any(|w| w == [0, 0, 3]));
        assert_eq!(read_ue(&[0x00]), Err(BitsEnd::OutOfData));
        assert_eq!(read_ue(&[0x00, 0x00, 0x01]), Err(BitsEnd::Invalid));
        assert_eq!(read_ue(&[0, 0, 0, 0, 0x80]), Err(BitsEnd::Invalid));
        let sps = NalUnit {
            nal_type: 7,
            nal_ref_idc: 3,
            range: 0..2,
            data: &[0x67, 0x80],
        };
        assert_eq!(sps.first_mb_in_slice(), None);
    }

    /// Drains a splitter fed `chunks`, collecting units and errors in order.
    fn split_all(chunks: &[&[u8]], max: usize) -> Vec<Result<EncodedAccessUnit, CodecError>> {
        let mut splitter = AccessUnitSplitter::with_max_size(max);
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.push(chunk);
            loop {
                match splitter.next_access_unit() {
                    Ok(Some(unit)) => out.push(Ok(unit)),
                    Ok(None) => break,
                    Err(e) => out.push(Err(e)),
                }
            }
        }
        loop {
            match splitter.finish() {
                Ok(Some(unit)) => out.push(Ok(unit)),
                Ok(None) => break,
                Err(e) => out.push(Err(e)),
            }
        }
        out
    }

    fn units(results: Vec<Result<EncodedAccessUnit, CodecError>>) -> Vec<(Vec<u8>, bool)> {
        results
            .into_iter()
            .map(|r| {
                let unit = r.expect("no error expected");
                (unit.data.to_vec(), unit.keyframe)
            })
            .collect()
    }

    const SPS: &[u8] = &[0, 0, 0, 1, 0x67, 0x42, 0xC0, 0x1E];
    const PPS: &[u8] = &[0, 0, 0, 1, 0x68, 0xCE, 0x3C, 0x80];
    const SEI: &[u8] = &[0, 0, 0, 1, 0x06, 0x05, 0x01, 0x80];
    const AUD: &[u8] = &[0, 0, 0, 1, 0x09, 0xF0];
    /// IDR slice with first_mb_in_slice 0 (first payload bit set).
    const IDR: &[u8] = &[0, 0, 0, 1, 0x65, 0x88, 0x84, 0x21];
    /// Second slice of the same IDR picture (first_mb_in_slice 1: bits 010).
    const IDR_2: &[u8] = &[0, 0, 0, 1, 0x65, 0x48, 0x84];
    const P: &[u8] = &[0, 0, 0, 1, 0x41, 0x9A, 0x02, 0x03];
    const P_2: &[u8] = &[0, 0, 1, 0x41, 0x40, 0x11];

    #[test]
    fn splits_at_slices_with_first_mb_zero() {
        let stream = [SPS, PPS, IDR, IDR_2, P, P_2, P].concat();
        assert_eq!(
            units(split_all(&[&stream], 1 << 20)),
            [
                ([SPS, PPS, IDR, IDR_2].concat(), true),
                ([P, P_2].concat(), false),
                (P.to_vec(), false),
            ]
        );
    }

    #[test]
    fn parameter_sets_sei_and_delimiters_start_units() {
        let stream = [AUD, SPS, PPS, IDR, AUD, P, SEI, P, SPS, PPS, SEI, IDR].concat();
        assert_eq!(
            units(split_all(&[&stream], 1 << 20)),
            [
                ([AUD, SPS, PPS, IDR].concat(), true),
                ([AUD, P].concat(), false),
                ([SEI, P].concat(), false),
                ([SPS, PPS, SEI, IDR].concat(), true),
            ]
        );
    }

    #[test]
    fn idr_after_non_idr_starts_a_unit_even_without_first_mb_zero() {
        let stream = [P, IDR_2].concat();
        assert_eq!(
            units(split_all(&[&stream], 1 << 20)),
            [(P.to_vec(), false), (IDR_2.to_vec(), true)]
        );
    }

    #[test]
    fn three_byte_start_codes_and_zero_padding_are_kept() {
        // A 3-byte start code opens the unit; trailing zeros stay with the unit before.
        let first = [&[0, 0, 1][..], &IDR[4..], &[0, 0]].concat();
        let stream = [&first[..], &[0, 0, 0, 1], &P[4..]].concat();
        assert_eq!(
            units(split_all(&[&stream], 1 << 20)),
            [(first, true), (P.to_vec(), false)]
        );
    }

    #[test]
    fn leading_junk_and_orphan_slices_are_skipped() {
        let stream = [&[7, 7, 0, 0][..], P_2, IDR_2, SPS, PPS, IDR].concat();
        assert_eq!(
            units(split_all(&[&stream], 1 << 20)),
            [([SPS, PPS, IDR].concat(), true)]
        );
    }

    #[test]
    fn slice_header_split_across_chunks_waits_for_more() {
        let stream = [IDR, P].concat();
        let mut splitter = AccessUnitSplitter::new();
        // Everything up to and including the P slice's header byte, not its payload.
        splitter.push(&stream[..IDR.len() + 5]);
        assert_eq!(splitter.next_access_unit(), Ok(None));
        splitter.push(&stream[IDR.len() + 5..]);
        let unit = splitter.next_access_unit().unwrap().unwrap();
        assert_eq!(&unit.data[..], IDR);
    }

    #[test]
    fn oversized_unit_is_an_error_and_the_splitter_recovers() {
        let big = [IDR, &[0x55; 100][..]].concat();
        let stream = [P, &big, P, P].concat();
        let results = split_all(&[&stream], 50);
        assert_eq!(results.len(), 4, "{results:?}");
        assert_eq!(results[0].as_ref().unwrap().data, P);
        match &results[1] {
            Err(CodecError::AccessUnitTooLarge { offset, size, max }) => {
                assert_eq!(*offset, P.len() as u64);
                assert!(*size > 50);
                assert_eq!(*max, 50);
            }
            other => panic!("expected AccessUnitTooLarge, got {other:?}"),
        }
        assert_eq!(results[2].as_ref().unwrap().data, P);
        assert_eq!(results[3].as_ref().unwrap().data, P);
    }

    #[test]
    fn stream_without_boundaries_stays_bounded() {
        let mut splitter = AccessUnitSplitter::with_max_size(1000);
        splitter.push(IDR);
        let mut errors = 0;
        for _ in 0..1000 {
            splitter.push(&[0x55; 100]);
            while let Err(e) = splitter.next_access_unit() {
                assert!(matches!(e, CodecError::AccessUnitTooLarge { .. }));
                errors += 1;
            }
            assert!(splitter.buf.len() <= 1100, "{}", splitter.buf.len());
        }
        assert_eq!(errors, 1, "one error per oversized unit");
        assert_eq!(splitter.finish(), Ok(None));
    }

    #[test]
    fn finish_resets_for_a_new_stream() {
        let mut splitter = AccessUnitSplitter::new();
        splitter.push(IDR);
        assert_eq!(splitter.next_access_unit(), Ok(None));
        assert_eq!(splitter.finish().unwrap().unwrap().data, IDR);
        assert_eq!(splitter.finish(), Ok(None));
        splitter.push(P);
        assert_eq!(splitter.finish().unwrap().unwrap().data, P);
        assert_eq!(splitter.finish(), Ok(None));
    }

    mod chunking {
        use super::*;
        use proptest::prelude::*;

        fn nal() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                Just(SPS.to_vec()),
                Just(PPS.to_vec()),
                Just(SEI.to_vec()),
                Just(AUD.to_vec()),
                Just(IDR.to_vec()),
                Just(IDR_2.to_vec()),
                Just(P.to_vec()),
                Just(P_2.to_vec()),
                // Slices with long bodies, larger first_mb values, and 00 00 03 inside.
                (
                    any::<bool>(),
                    0u32..200_000,
                    proptest::collection::vec(any::<u8>(), 0..64)
                )
                    .prop_map(|(idr, first_mb, body)| {
                        let bits: String = body.iter().map(|b| format!("{b:08b}")).collect();
                        let nal = nal_with_bits(
                            if idr { 0x65 } else { 0x41 },
                            &(ue_bits(first_mb) + &bits),
                        );
                        [&[0, 0, 0, 1][..], &nal].concat()
                    }),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            #[test]
            fn arbitrary_chunking_gives_the_same_units(
                nals in proptest::collection::vec(nal(), 1..40),
                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
                max in prop_oneof![Just(1usize << 20), 20usize..200],
            ) {
                let stream = nals.concat();
                let whole = split_all(&[&stream], max);
                let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
                points.sort_unstable();
                let mut chunks = Vec::new();
                let mut prev = 0;
                for p in points.into_iter().chain([stream.len()]) {
                    chunks.push(&stream[prev..p]);
                    prev = p;
                }
                let chunked = split_all(&chunks, max);
                // Errors may report a smaller size when they fire before the unit ends.
                let shape = |r: &Result<EncodedAccessUnit, CodecError>| match r {
                    Ok(unit) => Ok(unit.clone()),
                    Err(CodecError::AccessUnitTooLarge { offset, .. }) => Err(*offset),
                    Err(e) => panic!("unexpected error {e}"),
                };
                prop_assert_eq!(
                    whole.iter().map(shape).collect::<Vec<_>>(),
                    chunked.iter().map(shape).collect::<Vec<_>>()
                );
                // Without a limit, every byte from the first unit on is delivered.
                if max == 1 << 20 {
                    let delivered: Vec<u8> = whole.iter().flat_map(|r| r.as_ref().unwrap().data.to_vec()).collect();
                    prop_assert!(stream.ends_with(&delivered));
                    for unit in &whole {
                        let unit = unit.as_ref().unwrap();
                        prop_assert!(starts_with_start_code(&unit.data));
                        prop_assert_eq!(unit.keyframe, is_keyframe(&unit.data));
                    }
                }
            }
        }
    }
}
