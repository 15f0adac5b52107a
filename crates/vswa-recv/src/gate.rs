//! Which H.264 frames a decoder can use: [`KeyframeGate`] lets an H.264 stream through
//! from a keyframe on and, once a frame a decoder needs is missing, holds it back again
//! up to the next keyframe (docs/PROTOCOL.md, "Codec 2: H.264", "Starting and resuming"
//! and "Dropping").
//!
//! A gap in the sequence numbers alone does not mean lost pictures: a sender drops frames
//! *before* encoding when its camera outruns it (or its rate control skips one), and the
//! encoded stream then has no hole. So after a gap the gate looks at the H.264 itself:
//! each slice header carries `frame_num`, which goes up by one per reference picture
//! (H.264 7.4.3). When it goes on from the last reference picture, nothing the decoder
//! needs was lost and the frame passes; when it jumps, or when it cannot be read (no
//! SPS/PPS seen, an SPS that allows `frame_num` gaps, unreadable bytes), the gate waits
//! for the next keyframe. A `frame_num` jump without a sequence gap (a source whose own
//! stream has a hole) holds frames back too: the outputs must always decode.
//!
//! ```
//! use vswa_protocol::FrameHeader;
//! use vswa_recv::gate::KeyframeGate;
//!
//! // The test vectors h264-keyframe and h264-delta-frame of docs/PROTOCOL.md: SPS, PPS
//! // and an IDR slice (frame_num 0); then a P slice (frame_num 1).
//! let key = [
//!     &[0, 0, 0, 1, 0x67, 0x42, 0xC0, 0x1E, 0xDA, 0x79][..],
//!     &[0, 0, 0, 1, 0x68, 0xCE, 0x38, 0x80],
//!     &[0, 0, 1, 0x65, 0x88, 0x84, 0x93, 0xC0],
//! ]
//! .concat();
//! let delta = [0, 0, 1, 0x41, 0x9A, 0x22, 0xA0];
//! let mut gate = KeyframeGate::new();
//! // A delta frame before any keyframe cannot be decoded.
//! assert!(!gate.admit(&FrameHeader::h264(1, 0, 16, 16, false), &delta, 0));
//! assert!(gate.admit(&FrameHeader::h264(2, 0, 16, 16, true), &key, 0));
//! // Frames 3 and 4 were dropped before encoding: frame_num goes on from the keyframe.
//! assert!(gate.admit(&FrameHeader::h264(5, 0, 16, 16, false), &delta, 2));
//! // The same picture again after another gap: frame_num 1 does not follow 1 + 1.
//! assert!(!gate.admit(&FrameHeader::h264(7, 0, 16, 16, false), &delta, 1));
//! assert_eq!(gate.skipped(), 2);
//! ```

use vswa_codec::annexb::{nal_units, NAL_IDR_SLICE, NAL_PPS, NAL_SLICE, NAL_SPS};
use vswa_protocol::{Codec, Flags, FrameHeader};

/// What a slice header says about where its picture sits in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SliceInfo {
    /// `frame_num` of the picture.
    frame_num: u32,
    /// `MaxFrameNum` (2^(log2_max_frame_num_minus4 + 4)): `frame_num` counts modulo it.
    max_frame_num: u32,
    /// Whether the SPS allows gaps in `frame_num` (then a jump says nothing).
    gaps_allowed: bool,
    /// Whether other pictures refer to this one (`nal_ref_idc` != 0).
    reference: bool,
}

/// The parts of a sequence parameter set needed to read `frame_num`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SpsInfo {
    log2_max_frame_num: u8,
    separate_colour_plane: bool,
    gaps_allowed: bool,
}

/// Parameter sets seen so far, by id (SPS 0..=31, PPS 0..=255).
#[derive(Debug, Clone)]
struct ParameterSets {
    sps: [Option<SpsInfo>; 32],
    /// For each PPS id, the SPS id it refers to.
    pps: Vec<Option<u8>>,
}

impl Default for ParameterSets {
    fn default() -> Self {
        ParameterSets {
            sps: [None; 32],
            pps: vec![None; 256],
        }
    }
}

impl ParameterSets {
    /// Learns the SPS and PPS in `access_unit` and reads its first slice's header.
    fn read(&mut self, access_unit: &[u8]) -> Option<SliceInfo> {
        for nal in nal_units(access_unit) {
            let rbsp = || unescape(nal.data.get(1..).unwrap_or_default(), 2048);
            match nal.nal_type {
                NAL_SPS => {
                    if let Some((id, info)) = parse_sps(&rbsp()) {
                        self.sps[usize::from(id)] = Some(info);
                    }
                }
                NAL_PPS => {
                    if let Some((pps_id, sps_id)) = parse_pps(&rbsp()) {
                        self.pps[usize::from(pps_id)] = Some(sps_id);
                    }
                }
                NAL_SLICE | NAL_IDR_SLICE => {
                    let header = unescape(nal.data.get(1..).unwrap_or_default(), 64);
                    return self.parse_slice(&header, nal.nal_ref_idc != 0);
                }
                _ => {}
            }
        }
        None
    }

    /// `slice_header()` (H.264 7.3.3) up to `frame_num`.
    fn parse_slice(&self, rbsp: &[u8], reference: bool) -> Option<SliceInfo> {
        let mut bits = Bits::new(rbsp);
        bits.ue()?; // first_mb_in_slice
        bits.ue()?; // slice_type
        let pps_id = bits.ue()?;
        let sps_id = (*self.pps.get(usize::try_from(pps_id).ok()?)?)?;
        let sps = self.sps[usize::from(sps_id)]?;
        if sps.separate_colour_plane {
            bits.bits(2)?; // colour_plane_id
        }
        let frame_num = bits.bits(sps.log2_max_frame_num)?;
        Some(SliceInfo {
            frame_num,
            max_frame_num: 1 << sps.log2_max_frame_num,
            gaps_allowed: sps.gaps_allowed,
            reference,
        })
    }
}

/// `seq_parameter_set_data()` (H.264 7.3.2.1.1) up to
/// `gaps_in_frame_num_value_allowed_flag`: the SPS id and what reading `frame_num` needs.
fn parse_sps(rbsp: &[u8]) -> Option<(u8, SpsInfo)> {
    let mut bits = Bits::new(rbsp);
    let profile_idc = bits.bits(8)?;
    bits.bits(16)?; // constraint flags, reserved bits, level_idc
    let id = u8::try_from(bits.ue()?).ok().filter(|&id| id < 32)?;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        let chroma_format_idc = bits.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = bits.bits(1)? == 1;
        }
        bits.ue()?; // bit_depth_luma_minus8
        bits.ue()?; // bit_depth_chroma_minus8
        bits.bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if bits.bits(1)? == 1 {
            // seq_scaling_matrix_present_flag: skip the scaling lists (7.3.2.1.1.1).
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if bits.bits(1)? == 1 {
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
    let log2_max_frame_num = u8::try_from(bits.ue()?).ok().filter(|&v| v <= 12)? + 4;
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
                return None;
            }
            for _ in 0..cycle {
                bits.se()?; // offset_for_ref_frame
            }
        }
        2 => {}
        _ => return None,
    }
    bits.ue()?; // max_num_ref_frames
    let gaps_allowed = bits.bits(1)? == 1;
    Some((
        id,
        SpsInfo {
            log2_max_frame_num,
            separate_colour_plane,
            gaps_allowed,
        },
    ))
}

/// `pic_parameter_set_rbsp()` (H.264 7.3.2.2): the PPS id and the SPS id it uses.
fn parse_pps(rbsp: &[u8]) -> Option<(u8, u8)> {
    let mut bits = Bits::new(rbsp);
    let pps_id = u8::try_from(bits.ue()?).ok()?;
    let sps_id = u8::try_from(bits.ue()?).ok().filter(|&id| id < 32)?;
    Some((pps_id, sps_id))
}

/// The first `limit` bytes of a NAL unit's payload with the emulation-prevention bytes
/// (the `03` of `00 00 03`) taken out.
fn unescape(data: &[u8], limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len().min(limit));
    let mut zeros = 0;
    for &b in data {
        if out.len() >= limit {
            break;
        }
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// A big-endian bit reader over an RBSP; every read is `None` past the end.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Bits<'a> {
        Bits { data, pos: 0 }
    }

    /// `u(n)` for n <= 32.
    fn bits(&mut self, n: u8) -> Option<u32> {
        let mut v: u32 = 0;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            let bit = (byte >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        Some(v)
    }

    /// `ue(v)`, Exp-Golomb; `None` for codes longer than 32 bits (not valid H.264).
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0u8;
        while self.bits(1)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        Some(((1u64 << zeros) - 1 + u64::from(rest)) as u32)
    }

    /// `se(v)`.
    fn se(&mut self) -> Option<i32> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        i32::try_from(v).ok()
    }
}

/// Lets H.264 frames through only where a decoder can use them: from a keyframe on, and
/// after a lost frame again from the next keyframe. Frames of other codecs always pass
/// (every JPEG frame stands alone), but they end an H.264 run, so H.264 that follows
/// must start at a keyframe again.
#[derive(Debug, Clone)]
pub struct KeyframeGate {
    /// Waiting for a keyframe.
    waiting: bool,
    last_sequence: Option<u64>,
    params: ParameterSets,
    /// `frame_num` of the last reference picture let through (`PrevRefFrameNum`).
    prev_ref_frame_num: Option<u32>,
    skipped: u64,
}

impl Default for KeyframeGate {
    fn default() -> Self {
        KeyframeGate::new()
    }
}

impl KeyframeGate {
    /// A gate waiting for its first keyframe.
    pub fn new() -> KeyframeGate {
        KeyframeGate {
            waiting: true,
            last_sequence: None,
            params: ParameterSets::default(),
            prev_ref_frame_num: None,
            skipped: 0,
        }
    }

    /// The stream broke off (the connection was lost, the publisher left): wait for a
    /// keyframe again.
    pub fn restart(&mut self) {
        self.waiting = true;
        self.last_sequence = None;
        self.prev_ref_frame_num = None;
    }

    /// Whether a decoder can use this frame; `gap` is the number of frames missing
    /// before it according to the sequence numbers. A frame held back is counted in
    /// [`skipped`](KeyframeGate::skipped).
    pub fn admit(&mut self, header: &FrameHeader, payload: &[u8], gap: u64) -> bool {
        let backwards = self
            .last_sequence
            .is_some_and(|last| header.sequence <= last);
        self.last_sequence = Some(header.sequence);
        if header.codec != Codec::H264 {
            self.waiting = true;
            self.prev_ref_frame_num = None;
            return true;
        }
        let slice = self.params.read(payload);
        if header.flags.contains(Flags::KEYFRAME) {
            self.waiting = false;
            self.prev_ref_frame_num = slice.filter(|s| s.reference).map(|s| s.frame_num);
            return true;
        }
        // A sequence that goes back is a new publisher: its stream starts over.
        let mut broken = self.waiting || backwards;
        if !broken {
            let follows = match (slice, self.prev_ref_frame_num) {
                (Some(s), Some(prev)) if !s.gaps_allowed => {
                    // Progressive frames only (the protocol's rule): the same
                    // frame_num twice would be the two fields of one frame.
                    Some(s.frame_num == (prev + 1) % s.max_frame_num)
                }
                _ => None,
            };
            broken = match follows {
                Some(follows) => !follows,
                None => gap > 0,
            };
        }
        if broken {
            self.waiting = true;
            self.skipped = self.skipped.saturating_add(1);
            return false;
        }
        if let Some(s) = slice.filter(|s| s.reference) {
            self.prev_ref_frame_num = Some(s.frame_num);
        }
        true
    }

    /// H.264 frames held back so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Whether the gate waits for a keyframe (nothing let through yet, or since a loss).
    pub fn waiting(&self) -> bool {
        self.waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vswa_codec::{H264Encoder, H264Options};

    /// `n` access units of a moving test pattern, a keyframe every `gop` frames.
    fn encode(n: u64, gop: u64) -> Vec<vswa_codec::annexb::EncodedAccessUnit> {
        let fps = 30.0;
        let opts = H264Options {
            fps,
            keyframe_interval: std::time::Duration::from_secs_f64(gop as f64 / fps),
            allow_frame_skip: false,
            ..H264Options::default()
        };
        let pattern = vswa_capture::TestPattern::new(64, 48, fps).unwrap();
        let mut encoder = H264Encoder::new(64, 48, &opts).unwrap();
        (0..n)
            .map(|i| {
                encoder
                    .encode(&pattern.render(i, i * 33_333))
                    .unwrap()
                    .unwrap()
            })
            .collect()
    }

    fn header(sequence: u64, keyframe: bool) -> FrameHeader {
        FrameHeader::h264(sequence, 0, 64, 48, keyframe)
    }

    /// Feeds `(sequence, index into units)` pairs with the gaps the subscriber would
    /// compute; returns the indices let through.
    fn run(
        gate: &mut KeyframeGate,
        units: &[vswa_codec::annexb::EncodedAccessUnit],
        feed: &[(u64, usize)],
    ) -> Vec<usize> {
        let mut last: Option<u64> = None;
        let mut passed = Vec::new();
        for &(seq, i) in feed {
            let gap = match last {
                Some(l) if seq > l => seq - l - 1,
                _ => 0,
            };
            last = Some(seq);
            if gate.admit(&header(seq, units[i].keyframe), &units[i].data, gap) {
                passed.push(i);
            }
        }
        passed
    }

    #[test]
    fn encoder_output_is_what_the_tests_assume() {
        let units = encode(20, 10);
        let keys: Vec<usize> = (0..20).filter(|&i| units[i].keyframe).collect();
        assert_eq!(keys, [0, 10]);
        // Every picture is a reference picture with frame_num counting up from the IDR.
        let mut params = ParameterSets::default();
        for (i, u) in units.iter().enumerate() {
            let s = params.read(&u.data).expect("a readable slice header");
            assert!(s.reference && !s.gaps_allowed, "{i}: {s:?}");
            assert_eq!(s.frame_num, (i as u32 % 10) % s.max_frame_num, "{i}");
        }
    }

    #[test]
    fn starts_at_the_first_keyframe() {
        let units = encode(20, 10);
        let mut gate = KeyframeGate::new();
        // Joined mid-GOP: frames 4..=9 are delta frames.
        let feed: Vec<(u64, usize)> = (4..20).map(|i| (i as u64, i)).collect();
        assert_eq!(run(&mut gate, &units, &feed), (10..20).collect::<Vec<_>>());
        assert_eq!(gate.skipped(), 6);
        assert!(!gate.waiting());
    }

    /// Frames dropped before encoding (camera faster than the encoder, rate control):
    /// sequence gaps, but `frame_num` goes on, so nothing is held back.
    #[test]
    fn a_sequence_gap_over_frames_never_encoded_passes() {
        let units = encode(20, 10);
        let mut gate = KeyframeGate::new();
        // Encoded frames 0..20 went out with sequences that jump (2 and 5 taken by
        // frames the sender dropped before its encoder).
        let feed: Vec<(u64, usize)> = (0..20)
            .map(|i| {
                (
                    i as u64 + if i >= 2 { 1 } else { 0 } + if i >= 4 { 1 } else { 0 },
                    i,
                )
            })
            .collect();
        assert_eq!(run(&mut gate, &units, &feed), (0..20).collect::<Vec<_>>());
        assert_eq!(gate.skipped(), 0);
    }

    /// An encoded delta frame lost on the way: a sequence gap and a `frame_num` jump;
    /// everything up to the next keyframe is held back and counted.
    #[test]
    fn a_lost_encoded_frame_skips_to_the_next_keyframe() {
        let units = encode(25, 10);
        let mut gate = KeyframeGate::new();
        let feed: Vec<(u64, usize)> = (0..25).filter(|&i| i != 4).map(|i| (i as u64, i)).collect();
        let expected: Vec<usize> = (0..4).chain(10..25).collect();
        assert_eq!(run(&mut gate, &units, &feed), expected);
        assert_eq!(gate.skipped(), 5);
        // The lost frame was the last of a GOP: the keyframe after it just goes on.
        let mut gate = KeyframeGate::new();
        let feed: Vec<(u64, usize)> = (0..25).filter(|&i| i != 9).map(|i| (i as u64, i)).collect();
        assert_eq!(run(&mut gate, &units, &feed).len(), 24);
        assert_eq!(gate.skipped(), 0);
    }

    /// A frame missing from the stream without a sequence gap (a source whose own
    /// stream has a hole) is caught by `frame_num` alone.
    #[test]
    fn a_frame_num_jump_without_a_sequence_gap_is_a_loss() {
        let units = encode(20, 10);
        let mut gate = KeyframeGate::new();
        let feed: Vec<(u64, usize)> = (0..20)
            .filter(|&i| i != 3)
            .enumerate()
            .map(|(seq, i)| (seq as u64, i))
            .collect();
        let expected: Vec<usize> = (0..3).chain(10..20).collect();
        assert_eq!(run(&mut gate, &units, &feed), expected);
        assert_eq!(gate.skipped(), 6);
    }

    /// Without readable slice headers (no parameter sets seen, damaged bytes), a
    /// sequence gap alone sends the gate back to waiting for a keyframe.
    #[test]
    fn unreadable_h264_falls_back_to_sequence_gaps() {
        let mut gate = KeyframeGate::new();
        let key = [0, 0, 0, 1, 0x65, 0xFF];
        let delta = [0, 0, 0, 1, 0x41, 0xFF];
        assert!(gate.admit(&header(0, true), &key, 0));
        assert!(gate.admit(&header(1, false), &delta, 0));
        assert!(!gate.admit(&header(3, false), &delta, 1), "gap");
        assert!(!gate.admit(&header(4, false), &delta, 0), "still waiting");
        assert!(gate.admit(&header(5, true), &key, 0));
        assert!(
            gate.admit(&header(6, false), &[0, 0, 1], 0),
            "no NAL at all"
        );
        assert_eq!(gate.skipped(), 2);
    }

    #[test]
    fn restarts_and_new_publishers_wait_for_a_keyframe() {
        let units = encode(12, 10);
        let mut gate = KeyframeGate::new();
        assert_eq!(run(&mut gate, &units, &[(0, 0), (1, 1), (2, 2)]), [0, 1, 2]);
        // A reconnect: the next frame is a delta frame, with no gap.
        gate.restart();
        assert!(!gate.admit(&header(3, false), &units[3].data, 0));
        assert!(gate.admit(&header(10, true), &units[10].data, 6));
        assert!(gate.admit(&header(11, false), &units[11].data, 0));
        // The sequence goes back (a new publisher) on a delta frame: held back.
        assert!(!gate.admit(&header(0, false), &units[1].data, 0));
        assert!(gate.waiting());
        assert!(gate.admit(&header(1, true), &units[0].data, 0));
        assert_eq!(gate.skipped(), 2);
    }

    #[test]
    fn jpeg_frames_pass_and_end_an_h264_run() {
        let units = encode(3, 10);
        let mut gate = KeyframeGate::new();
        let jpeg = FrameHeader::jpeg(0, 0, 64, 48);
        assert!(gate.admit(&jpeg, &[0xFF, 0xD8], 0));
        assert!(gate.admit(&FrameHeader::jpeg(5, 0, 64, 48), &[0xFF, 0xD8], 4));
        assert!(gate.admit(&header(6, true), &units[0].data, 0));
        assert!(gate.admit(&FrameHeader::jpeg(7, 0, 64, 48), &[0xFF, 0xD8], 0));
        assert!(!gate.admit(&header(8, false), &units[1].data, 0));
        assert_eq!(gate.skipped(), 1);
    }

    /// x264's High profile (the SPS branch with chroma format and scaling lists) as
    /// `vswa-send --source h264:-` would pass it through from ffmpeg.
    #[test]
    fn x264_high_profile_is_read_too() {
        if !vswa_testkit::have_tool("ffmpeg", "-version") {
            return;
        }
        let out = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
            .args(["testsrc=size=64x48:rate=30", "-frames:v", "30", "-pix_fmt"])
            .args([
                "yuv420p",
                "-c:v",
                "libx264",
                "-profile:v",
                "high",
                "-bf",
                "0",
            ])
            .args(["-g", "10", "-f", "h264", "-"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut splitter = vswa_codec::annexb::AccessUnitSplitter::new();
        splitter.push(&out.stdout);
        let mut units = Vec::new();
        while let Some(unit) = splitter.next_access_unit().unwrap() {
            units.push(unit);
        }
        units.extend(splitter.finish().unwrap());
        assert_eq!(units.len(), 30);
        assert_eq!(units[0].data[4], 0x67, "an SPS first");
        assert_eq!(units[0].data[5], 100, "High profile");
        let mut params = ParameterSets::default();
        for (i, u) in units.iter().enumerate() {
            assert!(params.read(&u.data).is_some(), "{i}");
        }
        // Sequence gaps over frames never encoded: all pass.
        let mut gate = KeyframeGate::new();
        let feed: Vec<(u64, usize)> = (0..30).map(|i| (3 * i as u64, i)).collect();
        assert_eq!(run(&mut gate, &units, &feed).len(), 30);
        // An encoded frame lost: up to the next keyframe is held back.
        let mut gate = KeyframeGate::new();
        let feed: Vec<(u64, usize)> = (0..30)
            .filter(|&i| i != 12)
            .map(|i| (i as u64, i))
            .collect();
        let expected: Vec<usize> = (0..12).chain(20..30).collect();
        assert_eq!(run(&mut gate, &units, &feed), expected);
    }

    #[test]
    fn bit_reader_and_unescaping() {
        // 1, 010, 011, 00100 -> ue 0, 1, 2, 3; then se from 00101 (ue 4) -> -2.
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut bits = Bits::new(&data);
        assert_eq!(
            (bits.ue(), bits.ue(), bits.ue(), bits.ue()),
            (Some(0), Some(1), Some(2), Some(3))
        );
        assert_eq!(bits.se(), Some(-2));
        assert_eq!(Bits::new(&[0, 0, 0, 0, 0]).ue(), None);
        assert_eq!(Bits::new(&[]).bits(1), None);
        assert_eq!(unescape(&[0, 0, 3, 1, 0, 0, 3], 64), [0, 0, 1, 0, 0]);
        assert_eq!(unescape(&[1, 2, 3, 4], 2), [1, 2]);
    }
}
