//! H.264 with OpenH264 (cargo feature `h264`): camera pictures in any [`PixelFormat`] to
//! Annex B access units for live streaming, and access units back to RGB for snapshots
//! and display windows.
//!
//! The encoder is set up for a camera watched live: constant bitrate, Constrained Baseline
//! (no B-frames, so no reordering delay, and what browsers' WebCodecs decode as
//! `avc1.42C0xx`), one slice per picture, and SPS and PPS in front of every IDR picture
//! so a viewer can start at any keyframe.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use bytes::Bytes;
use openh264::decoder::Decoder;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile,
    RateControlMode, SpsPpsStrategy, UsageType, VuiConfig,
};
use openh264::formats::{RgbSliceU8, RgbaSliceU8, YUVBuffer, YUVSlices, YUVSource};
use openh264::{OpenH264API, Timestamp};

use crate::{encode, CodecError, EncodeOptions, EncodedAccessUnit, Image, PixelFormat};

/// Largest picture side OpenH264 encodes (its level 5.2 limit: 3840x2160 either way up).
const MAX_LONG_SIDE: u32 = 3840;
const MAX_SHORT_SIDE: u32 = 2160;

/// How to encode H.264.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct H264Options {
    /// Target bitrate in kbit/s, held constant by the rate control (1..=240000).
    pub bitrate_kbps: u32,
    /// Frame rate the camera delivers; rate control spends `bitrate / fps` per picture.
    /// OpenH264 supports 1 to 60.
    pub fps: f64,
    /// Time between IDR pictures (keyframes), which is also the longest a new viewer
    /// waits for its first picture. Rounded to whole frames, at least one.
    pub keyframe_interval: Duration,
    /// Let the rate control drop a picture rather than overshoot the bitrate (after a
    /// burst of motion, say); [`H264Encoder::encode`] then returns `Ok(None)`. Without it
    /// every picture is kept and the bitrate may overshoot for a while (OpenH264 says so
    /// once on stderr); tests turn it off so frame numbers stay put.
    pub allow_frame_skip: bool,
}

impl Default for H264Options {
    /// 2000 kbit/s at 30 fps with a keyframe every 2 s, frame skipping allowed: sharp
    /// 720p camera video that a new viewer joins within two seconds.
    fn default() -> Self {
        H264Options {
            bitrate_kbps: 2000,
            fps: 30.0,
            keyframe_interval: Duration::from_secs(2),
            allow_frame_skip: true,
        }
    }
}

impl H264Options {
    /// Checks every field against what OpenH264 supports.
    pub fn validate(&self) -> Result<(), CodecError> {
        let bad = |option, reason: &str| {
            Err(CodecError::InvalidH264Option {
                option,
                reason: reason.to_owned(),
            })
        };
        if !(1..=240_000).contains(&self.bitrate_kbps) {
            return bad(
                "bitrate_kbps",
                &format!(
                    "{} is out of range: use 1 to 240000 kbit/s (H.264 level 5.2)",
                    self.bitrate_kbps
                ),
            );
        }
        // OpenH264 clamps the rate to this range silently, which would skew the bitrate.
        if !(1.0..=60.0).contains(&self.fps) {
            return bad(
                "fps",
                &format!(
                    "{} is out of range: OpenH264 supports 1 to 60 frames per second",
                    self.fps
                ),
            );
        }
        if self.keyframe_interval.is_zero() {
            return bad(
                "keyframe_interval",
                "must be positive; anything up to one frame makes every picture a keyframe",
            );
        }
        Ok(())
    }

    /// The keyframe interval in frames at this frame rate.
    pub fn keyframe_interval_frames(&self) -> u32 {
        let frames = (self.keyframe_interval.as_secs_f64() * self.fps).round();
        // The float-to-int cast saturates, so a huge interval stays a huge interval.
        (frames as u32).max(1)
    }
}

/// Encodes pictures of one size into H.264 access units.
///
/// ```
/// use vswa_codec::{annexb, H264Encoder, H264Options, Image, PixelFormat};
///
/// let mut encoder = H264Encoder::new(64, 48, &H264Options::default())?;
/// let picture = Image::new(PixelFormat::Gray8, 64, 48, vec![128; 64 * 48])?;
/// let unit = encoder.encode(&picture)?.expect("the first picture is never skipped");
/// assert!(unit.keyframe && annexb::is_keyframe(&unit.data));
/// # Ok::<(), vswa_codec::CodecError>(())
/// ```
pub struct H264Encoder {
    encoder: Encoder,
    width: u32,
    height: u32,
    fps: f64,
    /// Pictures handed in so far, for the timestamps the rate control paces itself by.
    frames: u64,
    /// I420 planes for the formats this module converts itself.
    i420: Vec<u8>,
    /// Where OpenH264's SIMD converter puts RGB and RGBA input.
    rgb_i420: Option<YUVBuffer>,
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Encoder")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("fps", &self.fps)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl H264Encoder {
    /// An encoder for `width` x `height` pictures.
    ///
    /// Both sides must be even: 4:2:0 chroma covers 2x2 pixels, and H.264 can crop a
    /// picture only by whole chroma samples, so an odd size cannot come back out of a
    /// decoder. Crop or pad such pictures by a pixel first.
    pub fn new(width: u32, height: u32, opts: &H264Options) -> Result<H264Encoder, CodecError> {
        opts.validate()?;
        let unsupported = |reason| CodecError::UnsupportedH264Size {
            width,
            height,
            reason,
        };
        if width == 0 || height == 0 {
            return Err(unsupported("width and height must be at least 2"));
        }
        if width % 2 != 0 || height % 2 != 0 {
            return Err(unsupported(
                "4:2:0 H.264 needs an even width and height; crop or pad the picture by one pixel",
            ));
        }
        if width.max(height) > MAX_LONG_SIDE || width.min(height) > MAX_SHORT_SIDE {
            return Err(unsupported(
                "OpenH264 encodes at most 3840x2160 (or 2160x3840)",
            ));
        }
        let config = EncoderConfig::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .profile(Profile::Baseline)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(opts.bitrate_kbps * 1000))
            .max_frame_rate(FrameRate::from_hz(opts.fps as f32))
            .skip_frames(opts.allow_frame_skip)
            .intra_frame_period(IntraFramePeriod::from_num_frames(
                opts.keyframe_interval_frames(),
            ))
            // One SPS/PPS id for the whole stream: a viewer that starts at any IDR has
            // everything it needs right there.
            .sps_pps_strategy(SpsPpsStrategy::ConstantId)
            // Say in the stream what the conversions here produce (BT.601, limited
            // range), so browsers do not guess BT.709 for HD sizes.
            .vui(VuiConfig::bt601())
            // One thread: a single-slice picture gains nothing from more, and the
            // sender has other work for the cores.
            .num_threads(1);
        let encoder =
            Encoder::with_api_config(OpenH264API::from_source(), config).map_err(|e| {
                CodecError::H264Encode(format!("creating the encoder: {}", encode_error(&e)))
            })?;
        Ok(H264Encoder {
            encoder,
            width,
            height,
            fps: opts.fps,
            frames: 0,
            i420: Vec::new(),
            rgb_i420: None,
        })
    }

    /// Width of the pictures this encoder takes.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height of the pictures this encoder takes.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Encodes the next picture into one access unit, or `Ok(None)` if the rate
    /// control skipped it (see [`H264Options::allow_frame_skip`]).
    ///
    /// Pictures must have the size the encoder was created with. YUYV and NV12 go to the
    /// encoder without a detour through RGB; RGB, RGBA and grey are converted to BT.601
    /// limited-range I420.
    pub fn encode(&mut self, image: &Image) -> Result<Option<EncodedAccessUnit>, CodecError> {
        image.validate()?;
        if (image.width, image.height) != (self.width, self.height) {
            return Err(CodecError::FrameSizeMismatch {
                expected_width: self.width,
                expected_height: self.height,
                width: image.width,
                height: image.height,
            });
        }
        let frame = self.frames;
        self.frames += 1;
        // The rate control paces itself by timestamps: pretend pictures come at `fps`.
        let timestamp = Timestamp::from_millis((frame as f64 * 1000.0 / self.fps) as u64);
        let dims = (self.width as usize, self.height as usize);
        let encoded = match image.format {
            PixelFormat::Rgb8 | PixelFormat::Rgba8 => {
                let yuv = self
                    .rgb_i420
                    .get_or_insert_with(|| YUVBuffer::new(dims.0, dims.1));
                if image.format == PixelFormat::Rgb8 {
                    yuv.read_rgb8(RgbSliceU8::new(&image.data, dims));
                } else {
                    yuv.read_rgba8(RgbaSliceU8::new(&image.data, dims));
                }
                self.encoder.encode_at(&*yuv, timestamp)
            }
            PixelFormat::Gray8 | PixelFormat::Yuyv | PixelFormat::Nv12 => {
                to_i420(image, &mut self.i420);
                let (w, h) = dims;
                let (y, chroma) = self.i420.split_at(w * h);
                let (u, v) = chroma.split_at(w * h / 4);
                let planes = YUVSlices::new((y, u, v), dims, (w, w / 2, w / 2));
                self.encoder.encode_at(&planes, timestamp)
            }
        };
        let bitstream = encoded
            .map_err(|e| CodecError::H264Encode(format!("frame {frame}: {}", encode_error(&e))))?;
        let keyframe = match bitstream.frame_type() {
            FrameType::Skip => return Ok(None),
            FrameType::IDR => true,
            FrameType::I | FrameType::P | FrameType::IPMixed => false,
            FrameType::Invalid => {
                return Err(CodecError::H264Encode(format!(
                    "frame {frame}: the encoder reported an invalid frame type"
                )))
            }
        };
        let mut data = Vec::new();
        bitstream.write_vec(&mut data);
        if data.is_empty() {
            return Ok(None);
        }
        Ok(Some(EncodedAccessUnit {
            data: Bytes::from(data),
            keyframe,
        }))
    }

    /// Makes the next encoded picture an IDR picture (with SPS and PPS), for a viewer
    /// that just joined or lost data. The periodic keyframes continue from there.
    pub fn force_keyframe(&mut self) {
        // Before the first picture there is nothing to force: the first one is an IDR
        // anyway, and OpenH264 sets itself up only on that first picture.
        if self.frames > 0 {
            self.encoder.force_intra_frame();
        }
    }
}

/// Writes an even-sized Gray8, YUYV or NV12 picture as I420 planes (BT.601 limited
/// range, the range camera YUV is in already).
fn to_i420(image: &Image, out: &mut Vec<u8>) {
    let (w, h) = (image.width as usize, image.height as usize);
    let (cw, ch) = (w / 2, h / 2);
    // Every byte is overwritten below, so a buffer of the right size is reused as is.
    out.resize(w * h + 2 * cw * ch, 0);
    let (y_plane, chroma) = out.split_at_mut(w * h);
    let (u_plane, v_plane) = chroma.split_at_mut(cw * ch);
    match image.format {
        PixelFormat::Gray8 => {
            let luma = gray_to_luma();
            for (y, &g) in y_plane.iter_mut().zip(&image.data) {
                *y = luma[usize::from(g)];
            }
            u_plane.fill(128);
            v_plane.fill(128);
        }
        PixelFormat::Yuyv => {
            // One pass over each pair of rows. 4:2:2 has chroma on every row; 4:2:0 takes
            // the mean of the two.
            let src_rows = image.data.chunks_exact(4 * w);
            let y_rows = y_plane.chunks_exact_mut(2 * w);
            let uv_rows = u_plane
                .chunks_exact_mut(cw)
                .zip(v_plane.chunks_exact_mut(cw));
            for ((src, dst), (u_row, v_row)) in src_rows.zip(y_rows).zip(uv_rows) {
                let (top, bottom) = src.split_at(2 * w);
                let (y_top, y_bottom) = dst.split_at_mut(w);
                let pixels = top.chunks_exact(4).zip(bottom.chunks_exact(4));
                let lumas = y_top.chunks_exact_mut(2).zip(y_bottom.chunks_exact_mut(2));
                let chromas = u_row.iter_mut().zip(v_row.iter_mut());
                for (((a, b), (ya, yb)), (u, v)) in pixels.zip(lumas).zip(chromas) {
                    ya.copy_from_slice(&[a[0], a[2]]);
                    yb.copy_from_slice(&[b[0], b[2]]);
                    *u = avg(a[1], b[1]);
                    *v = avg(a[3], b[3]);
                }
            }
        }
        PixelFormat::Nv12 => {
            let (y_src, uv_src) = image.data.split_at(w * h);
            y_plane.copy_from_slice(y_src);
            // Even sizes, so the interleaved plane is exactly cw x ch pairs.
            for ((uv, u), v) in uv_src.chunks_exact(2).zip(u_plane).zip(v_plane) {
                *u = uv[0];
                *v = uv[1];
            }
        }
        PixelFormat::Rgb8 | PixelFormat::Rgba8 => {
            unreachable!("RGB input goes through OpenH264's converter")
        }
    }
}

fn avg(a: u8, b: u8) -> u8 {
    (u16::from(a) + u16::from(b)).div_ceil(2) as u8
}

/// Full-range grey (as in JPEG) to limited-range luma.
fn gray_to_luma() -> &'static [u8; 256] {
    static TABLE: std::sync::OnceLock<[u8; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = [0u8; 256];
        for (i, v) in table.iter_mut().enumerate() {
            *v = (16.0 + i as f32 * 219.0 / 255.0).round() as u8;
        }
        table
    })
}

/// Decodes H.264 access units to RGB pictures.
///
/// Feed access units in stream order, starting at a keyframe; decoding keeps state from
/// one picture to the next.
pub struct H264Decoder {
    decoder: Decoder,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Decoder").finish_non_exhaustive()
    }
}

impl H264Decoder {
    /// A decoder waiting for its first keyframe.
    pub fn new() -> Result<H264Decoder, CodecError> {
        let decoder = Decoder::new().map_err(|e| {
            CodecError::H264Decode(format!("creating the decoder: {}", decode_error(&e)))
        })?;
        Ok(H264Decoder { decoder })
    }

    /// Decodes one access unit (Annex B) to an RGB8 [`Image`], or `Ok(None)` if it held
    /// no picture (only parameter sets, say).
    ///
    /// Damaged input, or a delta picture before any keyframe, gives
    /// [`CodecError::H264Decode`]; the decoder recovers at the next keyframe.
    pub fn decode(&mut self, access_unit: &[u8]) -> Result<Option<Image>, CodecError> {
        let len = access_unit.len();
        let fail =
            |reason: String| CodecError::H264Decode(format!("{len}-byte access unit: {reason}"));
        // A viewer must survive any bytes the network hands it, so a panic in the
        // binding's conversion code becomes an error too.
        let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let Some(yuv) = self.decoder.decode(access_unit)? else {
                return Ok(None);
            };
            let (width, height) = yuv.dimensions();
            let mut rgb = vec![0; width * height * 3];
            yuv.write_rgb8(&mut rgb);
            Ok::<_, openh264::Error>(Some((width, height, rgb)))
        }));
        let (width, height, rgb) = match decoded {
            Ok(Ok(Some(picture))) => picture,
            Ok(Ok(None)) => return Ok(None),
            Ok(Err(e)) => return Err(fail(decode_error(&e))),
            Err(_) => return Err(fail("decoder panicked".into())),
        };
        let (Ok(width), Ok(height)) = (u32::try_from(width), u32::try_from(height)) else {
            return Err(fail(format!("implausible picture size {width}x{height}")));
        };
        Image::new(PixelFormat::Rgb8, width, height, rgb)
            .map(Some)
            .map_err(|e| fail(e.to_string()))
    }

    /// Decodes one access unit and encodes the picture as a JPEG of the given quality
    /// (1..=100), for snapshots and MJPEG-style output. `Ok(None)` as for
    /// [`decode`](H264Decoder::decode).
    pub fn decode_to_jpeg(
        &mut self,
        access_unit: &[u8],
        quality: u8,
    ) -> Result<Option<Bytes>, CodecError> {
        // Checked first, so a bad quality does not cost the decoder a picture.
        let opts = EncodeOptions::new(quality)?;
        match self.decode(access_unit)? {
            Some(picture) => encode(&picture, &opts).map(Some),
            None => Ok(None),
        }
    }
}

/// What an encoder error code (`CM_RETURN` in OpenH264's `codec_def.h`) means. The
/// binding's own text is a debug dump ("Native:1. Decoding State:0. ...").
fn encode_error(e: &openh264::Error) -> String {
    match e.native_code() {
        1 => "OpenH264 rejected the parameters".into(),
        3 => "OpenH264 is out of memory".into(),
        4 => "OpenH264 was not initialised".into(),
        5 => "OpenH264 does not support this input".into(),
        code if code != 0 => format!("OpenH264 error {code}"),
        _ => e.to_string(),
    }
}

/// What a decoder error means: the code is a set of `DECODING_STATE` flags from
/// OpenH264's `codec_def.h`.
fn decode_error(e: &openh264::Error) -> String {
    const STATES: [(i64, &str); 7] = [
        (0x01, "picture incomplete"),
        (0x02, "reference picture lost"),
        (0x04, "bitstream error"),
        (0x08, "dependency layer lost"),
        (0x10, "no SPS/PPS yet (decoding starts at a keyframe)"),
        (0x20, "damaged data concealed"),
        (0x40, "reference list missing"),
    ];
    let code = e.native_code();
    let states: Vec<&str> = STATES
        .iter()
        .filter(|(bit, _)| code & bit != 0)
        .map(|(_, what)| *what)
        .collect();
    if states.is_empty() {
        e.to_string()
    } else {
        format!("{} (OpenH264 state {code:#x})", states.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        assert!(H264Options::default().validate().is_ok());
        let bad = |opts: H264Options| match opts.validate() {
            Err(CodecError::InvalidH264Option { option, .. }) => option,
            other => panic!("expected InvalidH264Option, got {other:?}"),
        };
        let base = H264Options::default();
        assert_eq!(
            bad(H264Options {
                bitrate_kbps: 0,
                ..base
            }),
            "bitrate_kbps"
        );
        assert_eq!(bad(H264Options { fps: 0.5, ..base }), "fps");
        assert_eq!(bad(H264Options { fps: 120.0, ..base }), "fps");
        assert_eq!(
            bad(H264Options {
                fps: f64::NAN,
                ..base
            }),
            "fps"
        );
        assert_eq!(
            bad(H264Options {
                keyframe_interval: Duration::ZERO,
                ..base
            }),
            "keyframe_interval"
        );
    }

    #[test]
    fn keyframe_interval_in_frames() {
        assert_eq!(H264Options::default().keyframe_interval_frames(), 60);
        let short = H264Options {
            keyframe_interval: Duration::from_millis(1),
            ..H264Options::default()
        };
        assert_eq!(short.keyframe_interval_frames(), 1);
        let ntsc = H264Options {
            fps: 29.97,
            ..H264Options::default()
        };
        assert_eq!(ntsc.keyframe_interval_frames(), 60);
    }

    #[test]
    fn sizes_are_checked() {
        let opts = H264Options::default();
        for (w, h) in [(0, 2), (3, 2), (2, 3), (3840, 2162), (4096, 2160)] {
            assert!(
                matches!(
                    H264Encoder::new(w, h, &opts),
                    Err(CodecError::UnsupportedH264Size { .. })
                ),
                "{w}x{h}"
            );
        }
        assert!(H264Encoder::new(2160, 3840, &opts).is_ok());
    }

    #[test]
    fn yuyv_and_nv12_become_i420_without_colour_shift() {
        // 4x2: Y ramps, chroma differs between the two rows of YUYV.
        let yuyv = Image::new(
            PixelFormat::Yuyv,
            4,
            2,
            vec![
                10, 100, 20, 200, 30, 110, 40, 210, //
                50, 102, 60, 202, 70, 112, 80, 212,
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        to_i420(&yuyv, &mut out);
        assert_eq!(out, [10, 20, 30, 40, 50, 60, 70, 80, 101, 111, 201, 211]);

        let nv12 = Image::new(
            PixelFormat::Nv12,
            4,
            2,
            vec![1, 2, 3, 4, 5, 6, 7, 8, 100, 200, 110, 210],
        )
        .unwrap();
        to_i420(&nv12, &mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7, 8, 100, 110, 200, 210]);

        let grey = Image::new(PixelFormat::Gray8, 2, 2, vec![0, 255, 128, 64]).unwrap();
        to_i420(&grey, &mut out);
        assert_eq!(out, [16, 235, 126, 71, 128, 128]);
    }

    #[test]
    fn wrong_size_picture_is_refused() {
        let mut encoder = H264Encoder::new(32, 32, &H264Options::default()).unwrap();
        let picture = Image::new(PixelFormat::Gray8, 16, 16, vec![0; 256]).unwrap();
        assert!(matches!(
            encoder.encode(&picture),
            Err(CodecError::FrameSizeMismatch {
                expected_width: 32,
                width: 16,
                ..
            })
        ));
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        let mut decoder = H264Decoder::new().unwrap();
        for input in [
            &[][..],
            &[0, 0, 0, 1],
            &[0, 0, 0, 1, 0x65, 0xFF, 0xFF, 0xFF],
            &[1, 2, 3, 4, 5, 6, 7, 8, 9],
        ] {
            match decoder.decode(input) {
                Ok(None) | Err(CodecError::H264Decode(_)) => {}
                other => panic!("{input:?}: {other:?}"),
            }
        }
        assert!(matches!(
            decoder.decode_to_jpeg(&[0, 0, 0, 1], 0),
            Err(CodecError::InvalidQuality { quality: 0 })
        ));
    }
}
