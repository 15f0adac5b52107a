//! Encode/decode round trips for every pixel format, option validation, the encoder
//! pool's ordering, and decoder robustness.

use std::time::Duration;

use proptest::prelude::*;
use vswa_codec::{
    decode, encode, jpeg_dimensions, psnr, rgb_to_yuv601, CodecError, EncodeOptions,
    EncoderBackend, EncoderPool, Image, PixelFormat, RecvTimeoutError, Subsampling, TrySubmitError,
};

/// A smooth RGB gradient: JPEG's easy case, so quality bounds are meaningful.
fn smooth_rgb(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let r = (x * 255 / width.max(2).saturating_sub(1).max(1)) as u8;
            let g = (y * 255 / height.max(2).saturating_sub(1).max(1)) as u8;
            let b = ((x + y) * 127 / (width + height)) as u8 + 64;
            out.extend_from_slice(&[r, g, b]);
        }
    }
    out
}

/// Converts RGB to the given format, returning the image and the RGB it stands for
/// (grey for Gray8; chroma averaged where the format subsamples it).
fn image_in(format: PixelFormat, width: u32, height: u32) -> (Image, Vec<u8>) {
    let rgb = smooth_rgb(width, height);
    let (w, h) = (width as usize, height as usize);
    let data = match format {
        PixelFormat::Rgb8 => rgb.clone(),
        PixelFormat::Rgba8 => rgb
            .chunks(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        PixelFormat::Gray8 => rgb.chunks(3).map(|p| p[1]).collect(),
        PixelFormat::Yuyv => {
            let yuv: Vec<[u8; 3]> = rgb
                .chunks(3)
                .map(|p| rgb_to_yuv601(p[0], p[1], p[2]))
                .collect();
            yuv.chunks(2)
                .flat_map(|pair| [pair[0][0], pair[0][1], pair[1][0], pair[1][2]])
                .collect()
        }
        PixelFormat::Nv12 => {
            let yuv: Vec<[u8; 3]> = rgb
                .chunks(3)
                .map(|p| rgb_to_yuv601(p[0], p[1], p[2]))
                .collect();
            let mut data: Vec<u8> = yuv.iter().map(|p| p[0]).collect();
            for cy in 0..h.div_ceil(2) {
                for cx in 0..w.div_ceil(2) {
                    let p = yuv[(cy * 2) * w + cx * 2];
                    data.extend_from_slice(&[p[1], p[2]]);
                }
            }
            data
        }
    };
    let expected_rgb = match format {
        PixelFormat::Gray8 => data.iter().flat_map(|&g| [g, g, g]).collect(),
        _ => rgb,
    };
    (
        Image::new(format, width, height, data).unwrap(),
        expected_rgb,
    )
}

const FORMATS: [PixelFormat; 5] = [
    PixelFormat::Rgb8,
    PixelFormat::Rgba8,
    PixelFormat::Gray8,
    PixelFormat::Yuyv,
    PixelFormat::Nv12,
];

#[test]
fn round_trip_every_format_at_quality_90() {
    // Odd heights and non-multiple-of-16 sizes exercise the encoder's edge padding.
    for (width, height) in [(320, 240), (98, 51)] {
        for format in FORMATS {
            let (image, expected) = image_in(format, width, height);
            let jpeg = encode(&image, &EncodeOptions::new(90).unwrap()).unwrap();
            assert_eq!(jpeg_dimensions(&jpeg), Some((width as u16, height as u16)));
            let decoded = decode(&jpeg).unwrap();
            assert_eq!((decoded.width, decoded.height), (width, height));
            let db = psnr(&decoded.rgb, &expected);
            assert!(
                db > 30.0,
                "{format:?} {width}x{height}: PSNR {db:.1} dB <= 30"
            );
        }
    }
}

#[test]
fn every_subsampling_round_trips() {
    let (image, expected) = image_in(PixelFormat::Rgb8, 128, 96);
    for subsampling in [Subsampling::S444, Subsampling::S422, Subsampling::S420] {
        let opts = EncodeOptions {
            subsampling,
            ..EncodeOptions::new(90).unwrap()
        };
        let decoded = decode(&encode(&image, &opts).unwrap()).unwrap();
        let db = psnr(&decoded.rgb, &expected);
        assert!(db > 30.0, "{subsampling:?}: PSNR {db:.1} dB");
    }
}

#[test]
fn lower_quality_gives_smaller_files() {
    let (image, _) = image_in(PixelFormat::Rgb8, 320, 240);
    let small = encode(&image, &EncodeOptions::new(20).unwrap()).unwrap();
    let large = encode(&image, &EncodeOptions::new(95).unwrap()).unwrap();
    assert!(small.len() < large.len());
}

#[test]
fn quality_out_of_range_is_rejected() {
    for q in [0, 101, 255] {
        let err = EncodeOptions::new(q).unwrap_err();
        assert_eq!(err, CodecError::InvalidQuality { quality: q });
        assert!(err.to_string().contains("1 (smallest) to 100"), "{err}");
    }
    // Options built by hand are checked by encode as well.
    let (image, _) = image_in(PixelFormat::Gray8, 8, 8);
    let opts = EncodeOptions {
        quality: 0,
        ..EncodeOptions::default()
    };
    assert!(matches!(
        encode(&image, &opts),
        Err(CodecError::InvalidQuality { .. })
    ));
    assert_eq!(EncodeOptions::default().quality, 80);
    assert_eq!(EncodeOptions::default().subsampling, Subsampling::S420);
}

#[test]
fn encode_rejects_inconsistent_image() {
    let image = Image {
        format: PixelFormat::Rgb8,
        width: 4,
        height: 4,
        data: vec![0; 10],
    };
    assert!(matches!(
        encode(&image, &EncodeOptions::default()),
        Err(CodecError::DataLength { .. })
    ));
}

#[test]
fn turbojpeg_backend_matches_availability() {
    let (image, expected) = image_in(PixelFormat::Yuyv, 64, 48);
    let opts = EncodeOptions {
        backend: EncoderBackend::TurboJpeg,
        ..EncodeOptions::new(90).unwrap()
    };
    match encode(&image, &opts) {
        Ok(jpeg) => {
            assert!(EncoderBackend::TurboJpeg.is_available());
            let decoded = decode(&jpeg).unwrap();
            assert!(psnr(&decoded.rgb, &expected) > 30.0);
        }
        Err(e) => {
            assert!(!EncoderBackend::TurboJpeg.is_available());
            assert!(matches!(e, CodecError::BackendUnavailable(_)), "{e}");
        }
    }
}

#[test]
fn dimensions_skip_segments_and_reject_non_jpeg() {
    let (image, _) = image_in(PixelFormat::Rgb8, 33, 17);
    let jpeg = encode(&image, &EncodeOptions::default()).unwrap();
    // Splice an APP1 segment that contains bytes looking like a SOF0 marker.
    let mut with_app = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x0B];
    with_app.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x01, 0x00, 0x01]);
    with_app.extend_from_slice(&jpeg[2..]);
    assert_eq!(jpeg_dimensions(&with_app), Some((33, 17)));
    assert_eq!(jpeg_dimensions(b""), None);
    assert_eq!(jpeg_dimensions(b"\x89PNG\r\n"), None);
    assert_eq!(jpeg_dimensions(&jpeg[..20]), None);
    assert_eq!(jpeg_dimensions(&[0xFF, 0xD8, 0xFF, 0xD9]), None);
}

#[test]
fn psnr_edge_cases() {
    assert_eq!(psnr(&[1, 2, 3], &[1, 2, 3]), f64::INFINITY);
    assert_eq!(psnr(&[1, 2, 3], &[1, 2]), 0.0);
    assert!((psnr(&[0; 4], &[255; 4])).abs() < 1e-9);
}

#[test]
fn decode_garbage_is_an_error() {
    assert!(decode(b"").is_err());
    assert!(decode(b"not a jpeg at all").is_err());
    assert!(decode(&[0xFF, 0xD8, 0xFF, 0xD9]).is_err());
    let (image, _) = image_in(PixelFormat::Rgb8, 64, 64);
    let jpeg = encode(&image, &EncodeOptions::default()).unwrap();
    // A truncated picture may decode partially (zune-jpeg pads missing data) or fail;
    // either is fine as long as it does not panic.
    let _ = decode(&jpeg[..jpeg.len() / 3]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode(&bytes);
        let _ = jpeg_dimensions(&bytes);
    }

    #[test]
    fn decode_of_corrupted_jpeg_never_panics(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        cut in any::<prop::sample::Index>(),
    ) {
        let (image, _) = image_in(PixelFormat::Rgb8, 40, 24);
        let mut jpeg = encode(&image, &EncodeOptions::default()).unwrap().to_vec();
        for (at, byte) in flips {
            let i = at.index(jpeg.len());
            jpeg[i] = byte;
        }
        let len = cut.index(jpeg.len() + 1);
        let _ = decode(&jpeg[..len]);
        let _ = jpeg_dimensions(&jpeg[..len]);
    }
}

#[test]
fn pool_returns_results_in_submission_order_under_load() {
    for threads in [2, 3, 4] {
        let pool = std::sync::Arc::new(EncoderPool::new(threads, EncodeOptions::default()));
        assert_eq!(pool.threads(), threads);
        let producer = {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for i in 0..60u32 {
                    // Sizes vary a lot so later frames often finish before earlier ones.
                    let side = if i % 5 == 0 { 480 } else { 16 + (i % 7) * 8 };
                    let format = FORMATS[(i % 5) as usize];
                    let (image, _) = image_in(format, side, side);
                    pool.submit(image, i).unwrap();
                }
                pool.close();
            })
        };
        let mut tags = Vec::new();
        while let Some(encoded) = pool.recv() {
            let jpeg = encoded.result.unwrap();
            assert_eq!(
                jpeg_dimensions(&jpeg),
                Some((encoded.width as u16, encoded.height as u16))
            );
            tags.push(encoded.tag);
        }
        producer.join().unwrap();
        assert_eq!(tags, (0..60).collect::<Vec<_>>(), "{threads} threads");
    }
}

#[test]
fn pool_try_submit_reports_full_and_keeps_order() {
    let pool = EncoderPool::new(2, EncodeOptions::default());
    let mut accepted = Vec::new();
    let mut refused = 0;
    // Nobody receives yet, so the bounded queues must fill up.
    for i in 0..200u32 {
        let (image, _) = image_in(PixelFormat::Rgb8, 64, 64);
        match pool.try_submit(image, i) {
            Ok(()) => accepted.push(i),
            Err(TrySubmitError::Full(image, tag)) => {
                assert_eq!(tag, i);
                assert_eq!(image.width, 64);
                refused += 1;
            }
            Err(TrySubmitError::Closed(..)) => panic!("pool closed unexpectedly"),
        }
    }
    assert!(refused > 0, "bounded queues never filled");
    assert!(
        accepted.len() <= 2 * 2 + 2 + 2 * 2 + 2,
        "accepted {}",
        accepted.len()
    );
    pool.close();
    let (image, _) = image_in(PixelFormat::Rgb8, 8, 8);
    assert!(matches!(
        pool.try_submit(image.clone(), 999),
        Err(TrySubmitError::Closed(..))
    ));
    assert!(pool.submit(image, 999).is_err());
    let tags: Vec<u32> = std::iter::from_fn(|| pool.recv()).map(|e| e.tag).collect();
    assert_eq!(tags, accepted);
    assert_eq!(
        pool.recv_timeout(Duration::from_millis(10)).unwrap_err(),
        RecvTimeoutError::Closed
    );
}

#[test]
fn pool_recv_timeout_and_errors_in_order() {
    let pool: EncoderPool<u8> = EncoderPool::new(2, EncodeOptions::default());
    assert_eq!(
        pool.recv_timeout(Duration::from_millis(20)).unwrap_err(),
        RecvTimeoutError::Timeout
    );
    // A frame that fails to encode still takes its place in the order.
    let bad = Image {
        format: PixelFormat::Rgb8,
        width: 4,
        height: 4,
        data: vec![0; 3],
    };
    let (good, _) = image_in(PixelFormat::Rgb8, 32, 32);
    pool.submit(bad, 0).unwrap();
    pool.submit(good, 1).unwrap();
    let first = pool.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(first.tag, 0);
    assert!(first.result.is_err());
    let second = pool.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(second.tag, 1);
    assert!(second.result.is_ok());
}

#[test]
fn dropping_a_full_pool_does_not_hang() {
    // The drop runs on its own thread, so a hang fails the test instead of stalling it.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let pool = EncoderPool::new(2, EncodeOptions::default());
        for i in 0..50u32 {
            let (image, _) = image_in(PixelFormat::Rgb8, 32, 32);
            let _ = pool.try_submit(image, i);
        }
        drop(pool);
        let _ = done_tx.send(());
    });
    assert!(
        done_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .is_ok(),
        "dropping a full encoder pool did not finish within 30 s"
    );
}
