//! The `test` source: colour bars with a bouncing box, the frame counter and the UTC
//! wall-clock time burned in, so a viewer can see motion, count drops and read latency
//! off the screen. Also the "NO SIGNAL" placeholder picture.

use std::time::Duration;

use vswa_codec::{Image, PixelFormat};

use crate::font::{draw_text, fill_rect, text_width, GLYPH_H};
use crate::pacing::{interval, Pacer};
use crate::{now_us, CaptureError, CapturedFrame, FrameContent, Source};

/// 75% colour bars, left to right: white, yellow, cyan, green, magenta, red, blue.
const BARS: [[u8; 3]; 7] = [
    [191, 191, 191],
    [191, 191, 0],
    [0, 191, 191],
    [0, 191, 0],
    [191, 0, 191],
    [191, 0, 0],
    [0, 0, 191],
];

/// A moving test pattern at any size, paced to a frame rate.
#[derive(Debug)]
pub struct TestPattern {
    width: usize,
    height: usize,
    fps: f64,
    frame_interval: Duration,
    /// The bars and gradient, drawn once; each frame starts as a copy of this.
    background: Vec<u8>,
    frame: u64,
    pacer: Pacer,
}

impl TestPattern {
    /// A `width` x `height` pattern delivering `fps` frames per second.
    pub fn new(width: u32, height: u32, fps: f64) -> Result<TestPattern, CaptureError> {
        check_size(width, height)?;
        check_fps(fps)?;
        let (width, height) = (width as usize, height as usize);
        Ok(TestPattern {
            width,
            height,
            fps,
            frame_interval: interval(fps),
            background: background(width, height),
            frame: 0,
            pacer: Pacer::new(),
        })
    }

    /// Renders frame number `frame` stamped with `timestamp_us`, without pacing.
    pub fn render(&self, frame: u64, timestamp_us: u64) -> Image {
        let (w, h) = (self.width, self.height);
        let mut rgb = self.background.clone();

        // A box bouncing across the bars: its position depends only on the frame
        // number, so dropped frames show up as jumps.
        let side = (h / 6).max(2).min(w);
        let (span_x, span_y) = (
            (w - side).max(1) as u64,
            ((h * 2 / 3).saturating_sub(side)).max(1) as u64,
        );
        let bx = bounce(frame * 7, span_x);
        let by = bounce(frame * 5, span_y);
        fill_rect(&mut rgb, w, h, bx, by, side, side, [255, 255, 255]);
        fill_rect(
            &mut rgb,
            w,
            h,
            bx + side / 4,
            by + side / 4,
            side / 2,
            side / 2,
            [16, 16, 16],
        );

        // Text block at the bottom: frame counter and time, on black for legibility.
        let scale = (h / 160).max(1);
        let line_h = (GLYPH_H + 3) * scale;
        let margin = 2 * scale;
        let lines = [format!("#{frame:06}"), format_utc(timestamp_us)];
        let block_h = lines.len() * line_h + margin;
        let y0 = h.saturating_sub(block_h + margin);
        let block_w = lines
            .iter()
            .map(|l| text_width(l, scale))
            .max()
            .unwrap_or(0)
            + 2 * margin;
        fill_rect(&mut rgb, w, h, margin, y0, block_w, block_h, [0, 0, 0]);
        for (i, line) in lines.iter().enumerate() {
            draw_text(
                &mut rgb,
                w,
                h,
                2 * margin,
                y0 + margin + i * line_h,
                scale,
                line,
                [255, 255, 255],
            );
        }
        Image {
            format: PixelFormat::Rgb8,
            width: w as u32,
            height: h as u32,
            data: rgb,
        }
    }
}

impl Source for TestPattern {
    fn describe(&self) -> String {
        format!(
            "test pattern {}x{} @ {} fps",
            self.width, self.height, self.fps
        )
    }

    fn is_live(&self) -> bool {
        true
    }

    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, CaptureError> {
        self.pacer.wait(self.frame_interval);
        let timestamp_us = now_us();
        let image = self.render(self.frame, timestamp_us);
        self.frame += 1;
        Ok(Some(CapturedFrame {
            timestamp_us,
            content: FrameContent::Image(image),
            placeholder: false,
        }))
    }
}

/// A calm dark picture with `text` centred in large letters, for "NO SIGNAL" frames.
/// Sizes below 1 pixel are raised to 1.
pub fn placeholder_image(width: u32, height: u32, text: &str) -> Image {
    let (w, h) = (width.max(1) as usize, height.max(1) as usize);
    let mut rgb = vec![0u8; w * h * 3];
    fill_rect(&mut rgb, w, h, 0, 0, w, h, [24, 24, 40]);
    // As large as fits in 80% of the width, and no taller than a fifth of the height.
    let unscaled = text_width(text, 1).max(1);
    let scale = (w * 4 / 5 / unscaled).min(h / 5 / GLYPH_H).max(1);
    let x = w.saturating_sub(text_width(text, scale)) / 2;
    let y = h.saturating_sub(GLYPH_H * scale) / 2;
    draw_text(&mut rgb, w, h, x, y, scale, text, [230, 230, 230]);
    Image {
        format: PixelFormat::Rgb8,
        width: w as u32,
        height: h as u32,
        data: rgb,
    }
}

/// Bars over the top two thirds, a grey ramp below.
fn background(w: usize, h: usize) -> Vec<u8> {
    let mut rgb = vec![0u8; w * h * 3];
    let bars_h = h * 2 / 3;
    let mut row = Vec::with_capacity(w * 3);
    for x in 0..w {
        row.extend_from_slice(&BARS[x * BARS.len() / w]);
    }
    for y in 0..bars_h {
        rgb[y * w * 3..(y + 1) * w * 3].copy_from_slice(&row);
    }
    row.clear();
    for x in 0..w {
        let v = (x * 255 / w.max(2).saturating_sub(1).max(1)) as u8;
        row.extend_from_slice(&[v, v, v]);
    }
    for y in bars_h..h {
        rgb[y * w * 3..(y + 1) * w * 3].copy_from_slice(&row);
    }
    rgb
}

/// Position moving back and forth over `0..=span`.
fn bounce(t: u64, span: u64) -> usize {
    let phase = t % (2 * span);
    (if phase <= span {
        phase
    } else {
        2 * span - phase
    }) as usize
}

/// `HH:MM:SS.mmm UTC` of a UNIX timestamp in microseconds.
pub(crate) fn format_utc(timestamp_us: u64) -> String {
    let ms = timestamp_us / 1000;
    let secs = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03} UTC",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        ms % 1000
    )
}

pub(crate) fn check_size(width: u32, height: u32) -> Result<(), CaptureError> {
    if width == 0 || height == 0 || width > 65535 || height > 65535 {
        return Err(CaptureError::InvalidConfig(format!(
            "size {width}x{height}: each side must be 1 to 65535 pixels"
        )));
    }
    Ok(())
}

pub(crate) fn check_fps(fps: f64) -> Result<(), CaptureError> {
    if !(fps.is_finite() && fps > 0.0 && fps <= 10_000.0) {
        return Err(CaptureError::InvalidConfig(format!(
            "frame rate {fps}: must be above 0 and at most 10000"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_format() {
        // 2023-11-14 22:13:20.123 UTC
        assert_eq!(format_utc(1_700_000_000_123_456), "22:13:20.123 UTC");
    }

    #[test]
    fn bounce_stays_in_range() {
        for t in 0..100 {
            assert!(bounce(t, 10) <= 10);
        }
        assert_eq!(bounce(12, 10), 8);
    }

    #[test]
    fn tiny_sizes_render() {
        for (w, h) in [(1, 1), (2, 3), (7, 5), (33, 1)] {
            let p = TestPattern::new(w, h, 30.0).unwrap();
            let img = p.render(123, 0);
            assert!(img.validate().is_ok());
            assert!(placeholder_image(w, h, "NO SIGNAL").validate().is_ok());
        }
    }
}
