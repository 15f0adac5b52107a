//! Writes frames of the project's test pattern (`vswa_capture::TestPattern`, what
//! `vswa-send --source test` shows) as raw RGB24 to stdout, for tools that take raw video:
//! ffmpeg (`-f rawvideo -pix_fmt rgb24`) and the codec quality tool
//! (`crates/vswa-codec/examples/quality.rs`), as `bench/h264_quality.sh` does.
//!
//! ```text
//! cargo run --release -p vswa-bench --example test_pattern_frames -- 1280x720 300 [fps] |
//!   ffmpeg -f rawvideo -pix_fmt rgb24 -s 1280x720 -framerate 30 -i - ...
//! ```
//!
//! The burned-in clock starts at 12:00:00.000 UTC and advances by one frame interval per
//! frame, so the output is the same on every run.

use std::io::Write;

use vswa_capture::TestPattern;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: test_pattern_frames WxH FRAMES [FPS]";
    let size = args.next().ok_or(usage)?;
    let (w, h) = size.split_once('x').ok_or(usage)?;
    let (width, height): (u32, u32) = (w.parse()?, h.parse()?);
    let frames: u64 = args.next().ok_or(usage)?.parse()?;
    let fps: f64 = match args.next() {
        Some(f) => f.parse()?,
        None => 30.0,
    };
    let pattern = TestPattern::new(width, height, fps)?;
    // 2026-01-01 12:00:00 UTC.
    let start_us: u64 = 1_767_268_800_000_000;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for frame in 0..frames {
        let timestamp_us = start_us + (frame as f64 * 1e6 / fps) as u64;
        let image = pattern.render(frame, timestamp_us);
        match out.write_all(&image.data) {
            // A reader that stops early (ffmpeg -frames) is not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other?,
        }
    }
    out.flush()?;
    Ok(())
}
