//! Encode time per frame: OpenH264 (default `H264Options`, 2000 kbit/s) against the JPEG
//! encoder at quality 80, at 1280x720 and 1920x1080, from RGB and from YUYV input, for a
//! fixed and a panning camera.
//!
//! ```text
//! cargo run --release -p vswa-codec --features h264 --example h264_bench [frames]
//! ```
//!
//! Whether OpenH264's x86 assembly is in depends on how openh264-sys2 was built: with
//! `nasm` on PATH it is, with `OPENH264_NO_ASM=1` set (or no nasm) it is not. The build
//! script does not rerun when either changes, so compare the two after
//! `cargo clean --release -p openh264-sys2`.
//!
//! Frame skipping is off, so every frame is encoded and timed. Besides wall-clock time
//! the thread's on-CPU time is shown (from `/proc/thread-self/schedstat`, Linux), which
//! other processes on a busy machine disturb much less.

use std::time::{Duration, Instant};

use vswa_codec::{
    encode, rgb_to_yuv601, EncodeOptions, H264Encoder, H264Options, Image, PixelFormat,
};

/// What the camera sees.
#[derive(Debug, Clone, Copy)]
enum Scene {
    /// A fixed camera: a textured background that stays put and a square crossing it.
    Fixed,
    /// A panning camera: the whole textured picture moves 6 pixels a frame, the hard
    /// case for a bitrate budget.
    Pan,
}

fn pattern(scene: Scene, format: PixelFormat, width: u32, height: u32, t: usize) -> Image {
    let (w, h) = (width as usize, height as usize);
    let square = w / 6;
    let (sx, sy) = ((t * 11) % (w - square), (t * 5) % (h - square));
    let pan = match scene {
        Scene::Fixed => 0,
        Scene::Pan => t * 6,
    };
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let shifted = x + pan;
            let mut px = [
                (shifted * 255 / (w * 2)) as u8,
                (y * 255 / h) as u8,
                (((shifted + y) / 3) % 256) as u8 / 2 + 64,
            ];
            if (shifted / 4 + y / 4) % 8 == 0 {
                px = [px[0] / 2, px[1] / 2, px[2] / 2];
            }
            if (sx..sx + square).contains(&x) && (sy..sy + square).contains(&y) {
                px = [240, 230, 40];
            }
            rgb.extend_from_slice(&px);
        }
    }
    let data = match format {
        PixelFormat::Rgb8 => rgb,
        PixelFormat::Yuyv => rgb
            .chunks_exact(6)
            .flat_map(|pair| {
                let a = rgb_to_yuv601(pair[0], pair[1], pair[2]);
                let b = rgb_to_yuv601(pair[3], pair[4], pair[5]);
                [a[0], a[1], b[0], a[2]]
            })
            .collect(),
        other => panic!("{other:?} is not benchmarked"),
    };
    Image::new(format, width, height, data).expect("pattern has the right size")
}

/// Time this thread has spent on a CPU, if the kernel says.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

#[derive(Default)]
struct Stats {
    wall: Vec<Duration>,
    cpu: Duration,
    bytes: usize,
    skipped: usize,
}

impl Stats {
    /// Runs `f`, recording its wall-clock and CPU time and the bytes it returns.
    fn time<E>(&mut self, f: impl FnOnce() -> Result<Option<usize>, E>) -> Result<(), E> {
        let cpu_start = thread_cpu_time();
        let start = Instant::now();
        let bytes = f()?;
        self.wall.push(start.elapsed());
        if let (Some(before), Some(after)) = (cpu_start, thread_cpu_time()) {
            self.cpu += after.saturating_sub(before);
        }
        match bytes {
            Some(n) => self.bytes += n,
            None => self.skipped += 1,
        }
        Ok(())
    }

    fn report(mut self, label: &str, fps: f64) {
        self.wall.sort_unstable();
        let n = self.wall.len();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let kbps = self.bytes as f64 * 8.0 * fps / n as f64 / 1000.0;
        println!(
            "{label:<26} cpu mean {:6.2} ms | wall p50 {:6.2} p95 {:6.2} max {:6.2} ms | \
             {:6.0} kbit/s at {fps} fps, {} skipped",
            ms(self.cpu / n as u32),
            ms(self.wall[n / 2]),
            ms(self.wall[n * 95 / 100]),
            ms(self.wall[n - 1]),
            kbps,
            self.skipped,
        );
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let frames: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 90,
    };
    let opts = H264Options {
        allow_frame_skip: false,
        ..H264Options::default()
    };
    let jpeg = EncodeOptions::new(80)?;
    println!(
        "{frames} frames each; H.264 {} kbit/s, keyframe every {} frames; JPEG q{}",
        opts.bitrate_kbps,
        opts.keyframe_interval_frames(),
        jpeg.quality
    );
    for scene in [Scene::Fixed, Scene::Pan] {
        for (width, height) in [(1280, 720), (1920, 1080)] {
            for format in [PixelFormat::Rgb8, PixelFormat::Yuyv] {
                let mut encoder = H264Encoder::new(width, height, &opts)?;
                let (mut h264, mut jpg) = (Stats::default(), Stats::default());
                for t in 0..frames {
                    let image = pattern(scene, format, width, height, t);
                    h264.time(|| {
                        let unit = encoder.encode(&image)?;
                        Ok::<_, vswa_codec::CodecError>(unit.map(|u| u.data.len()))
                    })?;
                    jpg.time(|| encode(&image, &jpeg).map(|out| Some(out.len())))?;
                }
                let label = format!("{scene:?} {width}x{height} {format:?}");
                h264.report(&format!("H.264 {label}"), opts.fps);
                jpg.report(&format!("JPEG  {label}"), opts.fps);
            }
        }
    }
    Ok(())
}
