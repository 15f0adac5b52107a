//! H.264 round trips through OpenH264: keyframe placement and parameter sets checked with
//! `annexb`, picture quality, every pixel format, the access-unit splitter on real encoder
//! output, and (where installed) ffprobe's view of the stream.
#![cfg(feature = "h264")]

use std::time::Duration;

use vswa_codec::annexb::{self, nal_units, AccessUnitSplitter, NAL_IDR_SLICE, NAL_PPS, NAL_SPS};
use vswa_codec::{
    jpeg_dimensions, psnr, rgb_to_yuv601, CodecError, EncodedAccessUnit, H264Decoder, H264Encoder,
    H264Options, Image, PixelFormat,
};

const FRAMES: usize = 31;

/// Options for the stream tests: a keyframe every 15 frames, so 31 frames hold three, and
/// no frame skipping, so frame numbers stay put.
fn test_options() -> H264Options {
    H264Options {
        keyframe_interval: Duration::from_millis(500),
        allow_frame_skip: false,
        ..H264Options::default()
    }
}

/// Frame `t` of a moving test picture: smooth gradients drifting sideways, a bright square
/// crossing the picture, and fine stripes that move, so motion search has work to do.
fn pattern(width: u32, height: u32, t: usize) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let square = (w / 6).max(4);
    let (sx, sy) = ((t * 7) % (w - square), (t * 3) % (h - square));
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let shifted = x + t * 4;
            let mut px = [
                (shifted * 255 / (w * 2)) as u8,
                (y * 255 / h) as u8,
                (((shifted + y) / 3) % 256) as u8 / 2 + 64,
            ];
            if (x / 4 + y / 4 + t) % 8 == 0 {
                px = [px[0] / 2, px[1] / 2, px[2] / 2];
            }
            if (sx..sx + square).contains(&x) && (sy..sy + square).contains(&y) {
                px = [240, 230, 40];
            }
            rgb.extend_from_slice(&px);
        }
    }
    rgb
}

/// Encodes `FRAMES` pattern frames, returning each source picture with its access unit.
fn encode_stream(width: u32, height: u32) -> Vec<(Vec<u8>, EncodedAccessUnit)> {
    let mut encoder = H264Encoder::new(width, height, &test_options()).unwrap();
    (0..FRAMES)
        .map(|t| {
            let rgb = pattern(width, height, t);
            let image = Image::new(PixelFormat::Rgb8, width, height, rgb.clone()).unwrap();
            let unit = encoder
                .encode(&image)
                .unwrap()
                .unwrap_or_else(|| panic!("frame {t} skipped with skipping off"));
            (rgb, unit)
        })
        .collect()
}

fn nal_types(unit: &EncodedAccessUnit) -> Vec<u8> {
    nal_units(&unit.data).map(|nal| nal.nal_type).collect()
}

/// A small xorshift, so chunk sizes vary but every run is the same.
fn chunk_sizes(seed: u64) -> impl Iterator<Item = usize> {
    let mut state = seed | 1;
    std::iter::from_fn(move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Mostly small chunks (headers split every which way), now and then a big one.
        Some(if state % 8 == 0 {
            (state >> 8) as usize % 20_000 + 1
        } else {
            (state >> 8) as usize % 300 + 1
        })
    })
}

fn split_in_chunks(stream: &[u8], seed: u64) -> Vec<EncodedAccessUnit> {
    let mut splitter = AccessUnitSplitter::new();
    let mut units = Vec::new();
    let mut rest = stream;
    let mut sizes = chunk_sizes(seed);
    while !rest.is_empty() {
        let n = sizes.next().unwrap().min(rest.len());
        splitter.push(&rest[..n]);
        rest = &rest[n..];
        while let Some(unit) = splitter.next_access_unit().unwrap() {
            units.push(unit);
        }
    }
    while let Some(unit) = splitter.finish().unwrap() {
        units.push(unit);
    }
    units
}

fn check_stream(width: u32, height: u32) {
    let stream = encode_stream(width, height);
    let interval = test_options().keyframe_interval_frames() as usize;
    assert_eq!(interval, 15);

    let keyframes: Vec<usize> = stream
        .iter()
        .enumerate()
        .filter(|(_, (_, unit))| unit.keyframe)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(keyframes, [0, interval, 2 * interval], "{width}x{height}");

    for (i, (_, unit)) in stream.iter().enumerate() {
        assert!(annexb::starts_with_start_code(&unit.data), "frame {i}");
        assert_eq!(unit.keyframe, annexb::is_keyframe(&unit.data), "frame {i}");
        let types = nal_types(unit);
        if unit.keyframe {
            // Every IDR repeats SPS and PPS ahead of its slice, so a viewer can start there.
            assert_eq!(types, [NAL_SPS, NAL_PPS, NAL_IDR_SLICE], "frame {i}");
        } else {
            assert_eq!(types, [annexb::NAL_SLICE], "frame {i}");
        }
    }

    // Constrained Baseline: profile_idc 66 with constraint_set0 and constraint_set1, what
    // WebCodecs decodes as avc1.42C0xx (or 42E0xx).
    let sps = nal_units(&stream[0].1.data).next().unwrap();
    assert_eq!(sps.data[1], 66, "profile_idc");
    assert_eq!(sps.data[2] & 0xC0, 0xC0, "constraint_set0/1 flags");
    println!(
        "{width}x{height}: codec string avc1.{:02X}{:02X}{:02X}",
        sps.data[1], sps.data[2], sps.data[3]
    );

    let mut decoder = H264Decoder::new().unwrap();
    let mut worst = f64::INFINITY;
    for (i, (rgb, unit)) in stream.iter().enumerate() {
        let picture = decoder
            .decode(&unit.data)
            .unwrap_or_else(|e| panic!("frame {i}: {e}"))
            .unwrap_or_else(|| panic!("frame {i} gave no picture"));
        assert_eq!(picture.format, PixelFormat::Rgb8);
        assert_eq!((picture.width, picture.height), (width, height));
        let quality = psnr(rgb, &picture.data);
        worst = worst.min(quality);
        assert!(
            quality > 30.0,
            "frame {i} of {width}x{height}: {quality:.1} dB"
        );
    }
    let bytes: usize = stream.iter().map(|(_, unit)| unit.data.len()).sum();
    println!(
        "{width}x{height}: {FRAMES} frames, {bytes} bytes, worst PSNR {worst:.1} dB, \
         keyframe {} bytes",
        stream[0].1.data.len()
    );

    let units: Vec<EncodedAccessUnit> = stream.into_iter().map(|(_, unit)| unit).collect();
    let concatenated: Vec<u8> = units.iter().flat_map(|u| u.data.to_vec()).collect();
    for seed in [1, 2, 3, 0xDEAD_BEEF] {
        assert_eq!(split_in_chunks(&concatenated, seed), units, "seed {seed}");
    }
}

#[test]
fn stream_320x240() {
    check_stream(320, 240);
}

#[test]
fn stream_640x480() {
    check_stream(640, 480);
}

#[test]
fn force_keyframe_makes_the_next_picture_an_idr_with_parameter_sets() {
    let (w, h) = (160, 120);
    let mut encoder = H264Encoder::new(w, h, &test_options()).unwrap();
    // Before the first picture it is a no-op: that one is a keyframe anyway.
    encoder.force_keyframe();
    let mut keyframes = Vec::new();
    for t in 0..10 {
        if t == 4 {
            encoder.force_keyframe();
        }
        let image = Image::new(PixelFormat::Rgb8, w, h, pattern(w, h, t)).unwrap();
        let unit = encoder.encode(&image).unwrap().unwrap();
        if unit.keyframe {
            assert_eq!(nal_types(&unit), [NAL_SPS, NAL_PPS, NAL_IDR_SLICE]);
            keyframes.push(t);
        }
    }
    assert_eq!(keyframes, [0, 4]);
}

/// The pattern converted to `format`, plus the RGB it stands for after that conversion.
fn picture_in(format: PixelFormat, w: u32, h: u32, t: usize) -> (Image, Vec<u8>) {
    let rgb = pattern(w, h, t);
    let data = match format {
        PixelFormat::Rgb8 => rgb.clone(),
        PixelFormat::Rgba8 => rgb.chunks(3).flat_map(|p| [p[0], p[1], p[2], 9]).collect(),
        PixelFormat::Gray8 => rgb.chunks(3).map(|p| p[1]).collect(),
        PixelFormat::Yuyv => {
            let yuv: Vec<[u8; 3]> = rgb
                .chunks(3)
                .map(|p| rgb_to_yuv601(p[0], p[1], p[2]))
                .collect();
            yuv.chunks(2)
                .flat_map(|pair| [pair[0][0], pair[0][1], pair[1][0], pair[0][2]])
                .collect()
        }
        PixelFormat::Nv12 => {
            let (wu, hu) = (w as usize, h as usize);
            let yuv: Vec<[u8; 3]> = rgb
                .chunks(3)
                .map(|p| rgb_to_yuv601(p[0], p[1], p[2]))
                .collect();
            let mut data: Vec<u8> = yuv.iter().map(|p| p[0]).collect();
            for cy in 0..hu / 2 {
                for cx in 0..wu / 2 {
                    let p = yuv[cy * 2 * wu + cx * 2];
                    data.extend_from_slice(&[p[1], p[2]]);
                }
            }
            data
        }
    };
    let image = Image::new(format, w, h, data).unwrap();
    let reference = image.to_rgb();
    (image, reference)
}

#[test]
fn every_pixel_format_round_trips() {
    // 200x100 is not a whole number of 16x16 macroblocks: the SPS must crop.
    let (w, h) = (200, 100);
    for format in [
        PixelFormat::Rgb8,
        PixelFormat::Rgba8,
        PixelFormat::Gray8,
        PixelFormat::Yuyv,
        PixelFormat::Nv12,
    ] {
        let mut encoder = H264Encoder::new(w, h, &test_options()).unwrap();
        let mut decoder = H264Decoder::new().unwrap();
        for t in 0..5 {
            let (image, reference) = picture_in(format, w, h, t);
            let unit = encoder.encode(&image).unwrap().unwrap();
            let picture = decoder.decode(&unit.data).unwrap().unwrap();
            assert_eq!((picture.width, picture.height), (w, h), "{format:?}");
            let quality = psnr(&reference, &picture.data);
            assert!(quality > 30.0, "{format:?} frame {t}: {quality:.1} dB");
        }
    }
}

#[test]
fn decode_to_jpeg_gives_a_jpeg_of_the_picture() {
    let (w, h) = (320, 240);
    let mut encoder = H264Encoder::new(w, h, &test_options()).unwrap();
    let mut decoder = H264Decoder::new().unwrap();
    let image = Image::new(PixelFormat::Rgb8, w, h, pattern(w, h, 0)).unwrap();
    let unit = encoder.encode(&image).unwrap().unwrap();
    let jpeg = decoder.decode_to_jpeg(&unit.data, 80).unwrap().unwrap();
    assert_eq!(jpeg_dimensions(&jpeg), Some((320, 240)));
    let back = vswa_codec::decode(&jpeg).unwrap();
    assert!(psnr(&image.data, &back.rgb) > 28.0);
}

#[test]
fn decoding_from_a_later_keyframe_works_and_parameter_sets_alone_give_no_picture() {
    let (w, h) = (160, 120);
    let mut encoder = H264Encoder::new(w, h, &test_options()).unwrap();
    let units: Vec<EncodedAccessUnit> = (0..20)
        .map(|t| {
            let image = Image::new(PixelFormat::Rgb8, w, h, pattern(w, h, t)).unwrap();
            encoder.encode(&image).unwrap().unwrap()
        })
        .collect();
    // A viewer joining at the second keyframe (frame 15) needs nothing before it, and one
    // that got delta pictures first recovers there.
    assert!(units[15].keyframe);
    let mut decoder = H264Decoder::new().unwrap();
    for unit in &units[3..6] {
        match decoder.decode(&unit.data) {
            Err(e @ CodecError::H264Decode(_)) => {
                assert!(e.to_string().contains("keyframe"), "{e}")
            }
            other => panic!("delta picture before any keyframe gave {other:?}"),
        }
    }
    for unit in &units[15..] {
        assert!(decoder.decode(&unit.data).unwrap().is_some());
    }
    // SPS and PPS without the slice: accepted, nothing to show yet.
    let idr = &units[0].data;
    let slice_at = nal_units(idr).nth(2).unwrap().range.start - 4;
    let mut fresh = H264Decoder::new().unwrap();
    assert_eq!(fresh.decode(&idr[..slice_at]), Ok(None));
    assert!(fresh.decode(&idr[slice_at..]).unwrap().is_some());
}

#[test]
fn encoder_and_decoder_can_move_to_a_worker_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<H264Encoder>();
    assert_send::<H264Decoder>();
}

#[test]
fn odd_sizes_are_refused_with_a_reason() {
    let err = H264Encoder::new(321, 240, &H264Options::default()).unwrap_err();
    assert!(matches!(
        err,
        CodecError::UnsupportedH264Size { width: 321, .. }
    ));
    assert!(err.to_string().contains("even"), "{err}");
}

/// Whether an external tool is installed; without it the test is skipped, unless
/// `VSWA_REQUIRE_TOOLS=1` makes a missing tool a failure (for CI that has them).
fn tool_available(name: &str) -> bool {
    let found = std::process::Command::new(name)
        .arg("-version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        assert!(
            !vswa_testkit::tools_required(),
            "{name} is required (VSWA_REQUIRE_TOOLS is set) but not installed"
        );
        println!("skipped: {name} is not installed (Debian package ffmpeg)");
    }
    found
}

#[test]
fn ffprobe_counts_the_frames_and_sees_h264_of_the_right_size() {
    if !tool_available("ffprobe") {
        return;
    }
    let (w, h) = (640, 480);
    let units = encode_stream(w, h);
    let path = std::env::temp_dir().join(format!("vswa-h264-{}.h264", std::process::id()));
    let stream: Vec<u8> = units.iter().flat_map(|(_, u)| u.data.to_vec()).collect();
    std::fs::write(&path, stream).unwrap();
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,profile,width,height,nb_read_frames",
        ])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).ok();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ffprobe failed: {report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    let field = |name: &str| {
        report
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {report}"))
            .to_owned()
    };
    assert_eq!(field("codec_name"), "h264");
    assert_eq!(field("width"), w.to_string());
    assert_eq!(field("height"), h.to_string());
    assert_eq!(field("nb_read_frames"), FRAMES.to_string());
    assert!(field("profile").contains("Baseline"), "{report}");
}

#[test]
fn splitter_cuts_an_ffmpeg_libx264_stream_into_its_pictures() {
    if !tool_available("ffmpeg") {
        return;
    }
    // Four slices per picture, so boundaries must come from first_mb_in_slice, and
    // access unit delimiters off (libx264's default), as `ffmpeg -f h264 -` writes.
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
        ])
        .args(["-frames:v", "45", "-pix_fmt", "yuv420p", "-c:v", "libx264"])
        .args(["-preset", "ultrafast"])
        .args([
            "-profile:v",
            "baseline",
            "-g",
            "15",
            "-x264-params",
            "slices=4",
        ])
        .args(["-f", "h264", "-"])
        .output()
        .unwrap();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!vswa_testkit::tools_required(), "ffmpeg failed: {stderr}");
        println!("skipped: this ffmpeg cannot encode with libx264: {stderr}");
        return;
    }
    let units = split_in_chunks(&out.stdout, 7);
    assert_eq!(units.len(), 45);
    let keyframes: Vec<usize> = (0..45).filter(|&i| units[i].keyframe).collect();
    assert_eq!(keyframes, [0, 15, 30]);
    let mut decoder = H264Decoder::new().unwrap();
    for (i, unit) in units.iter().enumerate() {
        let slices = nal_units(&unit.data)
            .filter(|nal| matches!(nal.nal_type, 1 | 5))
            .count();
        assert_eq!(slices, 4, "picture {i}");
        let picture = decoder.decode(&unit.data).unwrap().unwrap();
        assert_eq!((picture.width, picture.height), (320, 240));
    }

    // libx264's defaults (High profile, B-frames) with access unit delimiters: still one
    // unit per picture, each opening with its delimiter.
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
        ])
        .args(["-frames:v", "45", "-pix_fmt", "yuv420p", "-c:v", "libx264"])
        .args(["-x264-params", "aud=1", "-f", "h264", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let units = split_in_chunks(&out.stdout, 11);
    assert_eq!(units.len(), 45);
    for (i, unit) in units.iter().enumerate() {
        assert_eq!(nal_types(unit)[0], annexb::NAL_AUD, "picture {i}");
    }
}

#[test]
fn sps_dimensions_read_the_picture_size_after_cropping() {
    // 360 and 1080 are not multiples of 16: the SPS codes 368 / 1088 and crops.
    for (w, h) in [(64, 48), (640, 480), (640, 360), (1920, 1080), (176, 144)] {
        let mut encoder = H264Encoder::new(w, h, &test_options()).unwrap();
        let picture = Image::new(PixelFormat::Gray8, w, h, vec![100; (w * h) as usize]).unwrap();
        let unit = encoder.encode(&picture).unwrap().unwrap();
        assert_eq!(annexb::sps_dimensions(&unit.data), Some((w, h)), "{w}x{h}");
    }
    assert_eq!(
        annexb::sps_dimensions(&[0, 0, 1, 0x41, 0x9A]),
        None,
        "no SPS"
    );
    assert_eq!(
        annexb::sps_dimensions(&[0, 0, 1, 0x67, 0x42]),
        None,
        "cut SPS"
    );
}

#[test]
fn sps_dimensions_of_libx264_high_profile_with_cropping() {
    if !tool_available("ffmpeg") {
        return;
    }
    // High profile (chroma_format_idc and friends in the SPS) at 4:2:0 and 4:4:4.
    for (pix_fmt, size) in [("yuv420p", (854, 480)), ("yuv444p", (320, 180))] {
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-f", "lavfi", "-i"])
            .arg(format!("testsrc=size={}x{}:rate=30", size.0, size.1))
            .args(["-frames:v", "1", "-pix_fmt", pix_fmt, "-c:v", "libx264"])
            .args(["-f", "h264", "-"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(annexb::sps_dimensions(&out.stdout), Some(size), "{pix_fmt}");
    }
}
