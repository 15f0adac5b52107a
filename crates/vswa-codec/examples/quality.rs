//! Bytes per viewer and picture quality, JPEG against H.264: reads raw frames (from a
//! file or stdin, e.g. piped from ffmpeg), encodes every frame with the JPEG encoder at
//! the given qualities and with `H264Encoder` at the given bitrates, writes each result
//! as a file ffmpeg reads (`.mjpeg`: concatenated JPEGs; `.h264`: Annex B) and prints one
//! JSON line per encoding with its size figures and encode time. SSIM and PSNR against the
//! source are left to ffmpeg (`bench/h264_quality.sh` runs the whole comparison).
//!
//! ```text
//! ffmpeg -f lavfi -i testsrc2=size=1280x720:rate=30 -t 10 -pix_fmt nv12 -f rawvideo - |
//!   cargo run --release -p vswa-codec --features h264 --example quality -- \
//!     --size 1280x720 --format nv12 --jpeg 80 --h264 500,1000,2000 --out /tmp/q
//! ```
//!
//! Options:
//!
//! - `--size WxH` (required) and `--format nv12|yuyv|rgb24|gray` of the raw input
//!   (default nv12, what cameras deliver; YUV is BT.601 limited range);
//! - `--input PATH` (default `-`, stdin); `--frames N` stops after N frames;
//! - `--fps F` (default 30): the frame rate the bitrates are computed at and the H.264
//!   rate control paces itself by;
//! - `--jpeg Q[,Q...]` (default 80) and `--h264 KBPS[,KBPS...]` (default none): what to
//!   encode; `--keyframe-interval S` (default 2 s, as `H264Options`);
//! - `--frame-skip`: let the H.264 rate control skip pictures (off by default, so every
//!   source frame has an encoded frame and ffmpeg compares frame for frame);
//! - `--out DIR` (required): where `jpeg-q{Q}.mjpeg` and `h264-{KBPS}k.h264` go.
//!
//! The JSON fields: `frames`, `bytes`, `mbit_s` (at `--fps`), `mean_frame_bytes`,
//! `keyframes`, `mean_keyframe_bytes`, `mean_delta_bytes` (H.264 only: frames that are
//! not keyframes), `max_frame_bytes`, `skipped`, and `cpu_ms_per_frame` (mean on-CPU
//! encode time of this thread from `/proc/thread-self/schedstat`, or wall-clock time
//! where that file does not exist).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use vswa_codec::{encode, EncodeOptions, H264Encoder, H264Options, Image, PixelFormat};

type Error = Box<dyn std::error::Error>;

const USAGE: &str = "usage: quality --size WxH --out DIR [--format nv12|yuyv|rgb24|gray] \
[--input PATH|-] [--frames N] [--fps F] [--jpeg Q,...] [--h264 KBPS,...] \
[--keyframe-interval S] [--frame-skip]";

#[derive(Debug)]
struct Args {
    width: u32,
    height: u32,
    format: PixelFormat,
    input: String,
    frames: Option<usize>,
    fps: f64,
    jpeg: Vec<u8>,
    h264: Vec<u32>,
    keyframe_interval: f64,
    frame_skip: bool,
    out: PathBuf,
}

fn list<T: std::str::FromStr>(value: &str, what: &str) -> Result<Vec<T>, Error> {
    value
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .map_err(|_| format!("{what}: bad value {s:?}").into())
        })
        .collect()
}

fn parse_args() -> Result<Args, Error> {
    let mut args = Args {
        width: 0,
        height: 0,
        format: PixelFormat::Nv12,
        input: "-".into(),
        frames: None,
        fps: 30.0,
        jpeg: vec![80],
        h264: Vec::new(),
        keyframe_interval: 2.0,
        frame_skip: false,
        out: PathBuf::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--frame-skip" {
            args.frame_skip = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--size" => {
                let (w, h) = value
                    .split_once('x')
                    .ok_or_else(|| format!("--size {value:?}: expected WxH"))?;
                args.width = w.parse()?;
                args.height = h.parse()?;
            }
            "--format" => {
                args.format = match value.as_str() {
                    "nv12" => PixelFormat::Nv12,
                    "yuyv" | "yuyv422" => PixelFormat::Yuyv,
                    "rgb24" | "rgb" => PixelFormat::Rgb8,
                    "gray" => PixelFormat::Gray8,
                    other => return Err(format!("--format {other:?}: unknown").into()),
                }
            }
            "--input" => args.input = value,
            "--frames" => args.frames = Some(value.parse()?),
            "--fps" => args.fps = value.parse()?,
            "--jpeg" => args.jpeg = list(&value, "--jpeg")?,
            "--h264" => args.h264 = list(&value, "--h264")?,
            "--keyframe-interval" => args.keyframe_interval = value.parse()?,
            "--out" => args.out = PathBuf::from(value),
            other => return Err(format!("unknown option {other}\n{USAGE}").into()),
        }
    }
    if args.width == 0 || args.height == 0 || args.out.as_os_str().is_empty() {
        return Err(format!("--size and --out are required\n{USAGE}").into());
    }
    if !(args.keyframe_interval.is_finite() && args.keyframe_interval > 0.0) {
        return Err("--keyframe-interval must be positive".into());
    }
    Ok(args)
}

/// Time this thread has spent on a CPU, if the kernel says.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Runs `f` and returns its result with the CPU time it took (wall-clock time if the
/// thread's CPU time is not available).
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let (cpu, wall) = (thread_cpu_time(), Instant::now());
    let out = f();
    let took = match (cpu, thread_cpu_time()) {
        (Some(before), Some(after)) => after.saturating_sub(before),
        _ => wall.elapsed(),
    };
    (out, took)
}

/// One encoding's output file and running figures.
struct Output {
    label: String,
    path: PathBuf,
    file: BufWriter<File>,
    frames: u64,
    bytes: u64,
    keyframes: u64,
    keyframe_bytes: u64,
    max_frame: u64,
    skipped: u64,
    cpu: Duration,
}

impl Output {
    fn create(label: String, path: PathBuf) -> Result<Output, Error> {
        let file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Output {
            label,
            path,
            file: BufWriter::new(file),
            frames: 0,
            bytes: 0,
            keyframes: 0,
            keyframe_bytes: 0,
            max_frame: 0,
            skipped: 0,
            cpu: Duration::ZERO,
        })
    }

    fn add(&mut self, data: Option<&[u8]>, keyframe: bool, cpu: Duration) -> Result<(), Error> {
        self.cpu += cpu;
        let Some(data) = data else {
            self.skipped += 1;
            return Ok(());
        };
        self.file.write_all(data)?;
        let n = data.len() as u64;
        self.frames += 1;
        self.bytes += n;
        self.max_frame = self.max_frame.max(n);
        if keyframe {
            self.keyframes += 1;
            self.keyframe_bytes += n;
        }
        Ok(())
    }

    /// Flushes the file and prints the JSON line.
    fn finish(mut self, codec: &str, fps: f64, input_frames: u64) -> Result<(), Error> {
        self.file.flush()?;
        let per = |total: u64, n: u64| if n == 0 { 0.0 } else { total as f64 / n as f64 };
        let deltas = self.frames - self.keyframes;
        let delta_bytes = self.bytes - self.keyframe_bytes;
        println!(
            "{{\"codec\":\"{codec}\",\"label\":\"{}\",\"file\":\"{}\",\"frames\":{},\
             \"bytes\":{},\"mbit_s\":{:.4},\"mean_frame_bytes\":{:.1},\"keyframes\":{},\
             \"mean_keyframe_bytes\":{:.1},\"mean_delta_bytes\":{:.1},\"max_frame_bytes\":{},\
             \"skipped\":{},\"cpu_ms_per_frame\":{:.3}}}",
            self.label,
            self.path.display(),
            self.frames,
            self.bytes,
            // Bits over the input's duration, so skipped frames count as time passing.
            self.bytes as f64 * 8.0 * fps / input_frames.max(1) as f64 / 1e6,
            per(self.bytes, self.frames),
            self.keyframes,
            per(self.keyframe_bytes, self.keyframes),
            per(delta_bytes, deltas),
            self.max_frame,
            self.skipped,
            self.cpu.as_secs_f64() * 1000.0 / input_frames.max(1) as f64,
        );
        Ok(())
    }
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` at a clean end of input.
fn read_frame(input: &mut dyn Read, buf: &mut [u8]) -> Result<bool, Error> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => {
                return Err(format!(
                    "input ended inside a frame ({filled} of {} bytes): wrong --size or --format?",
                    buf.len()
                )
                .into())
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

fn main() -> Result<(), Error> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.out)?;
    let mut input: Box<dyn Read> = if args.input == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(&args.input).map_err(|e| format!("{}: {e}", args.input))?)
    };

    let mut jpegs = Vec::new();
    for &q in &args.jpeg {
        let opts = EncodeOptions::new(q)?;
        let out = Output::create(format!("q{q}"), args.out.join(format!("jpeg-q{q}.mjpeg")))?;
        jpegs.push((opts, out));
    }
    let mut h264s = Vec::new();
    for &kbps in &args.h264 {
        let opts = H264Options {
            bitrate_kbps: kbps,
            fps: args.fps,
            keyframe_interval: Duration::from_secs_f64(args.keyframe_interval),
            allow_frame_skip: args.frame_skip,
        };
        let encoder = H264Encoder::new(args.width, args.height, &opts)?;
        let out = Output::create(
            format!("{kbps}k"),
            args.out.join(format!("h264-{kbps}k.h264")),
        )?;
        h264s.push((encoder, out));
    }

    let len = args.format.buffer_len(args.width, args.height);
    let mut image = Image::new(args.format, args.width, args.height, vec![0; len])?;
    let mut frames = 0u64;
    while args.frames.is_none_or(|n| frames < n as u64) {
        if !read_frame(&mut input, &mut image.data)? {
            break;
        }
        frames += 1;
        for (opts, out) in &mut jpegs {
            let (jpeg, cpu) = timed(|| encode(&image, opts));
            out.add(Some(&jpeg?), true, cpu)?;
        }
        for (encoder, out) in &mut h264s {
            let (unit, cpu) = timed(|| encoder.encode(&image));
            let unit = unit?;
            out.add(
                unit.as_ref().map(|u| &u.data[..]),
                unit.as_ref().is_some_and(|u| u.keyframe),
                cpu,
            )?;
        }
    }
    if frames == 0 {
        return Err("no frames on the input".into());
    }
    eprintln!(
        "quality: {frames} frames of {}x{} {:?}",
        args.width, args.height, args.format
    );
    for (_, out) in jpegs {
        out.finish("jpeg", args.fps, frames)?;
    }
    for (_, out) in h264s {
        out.finish("h264", args.fps, frames)?;
    }
    Ok(())
}
