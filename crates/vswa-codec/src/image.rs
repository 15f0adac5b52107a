//! Uncompressed pictures in the pixel formats cameras deliver, and the conversions the
//! encoders need (YUV to interleaved full-range YCbCr, and to RGB for libjpeg-turbo).

use crate::CodecError;

/// Layout of the bytes in an [`Image`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// 3 bytes per pixel: R, G, B.
    Rgb8,
    /// 4 bytes per pixel: R, G, B, A (alpha is ignored when encoding).
    Rgba8,
    /// 1 byte per pixel: luma.
    Gray8,
    /// Packed 4:2:2, 2 bytes per pixel as Y0 U Y1 V; the width must be even. Samples
    /// are BT.601 limited range (16..235), as cameras deliver them.
    Yuyv,
    /// A full-resolution Y plane, then one plane of interleaved U V samples at half
    /// width and half height (rounded up). BT.601 limited range.
    Nv12,
}

impl PixelFormat {
    /// Bytes a `width` x `height` picture takes in this format.
    pub fn buffer_len(self, width: u32, height: u32) -> usize {
        let (w, h) = (width as usize, height as usize);
        match self {
            PixelFormat::Rgb8 => w * h * 3,
            PixelFormat::Rgba8 => w * h * 4,
            PixelFormat::Gray8 => w * h,
            PixelFormat::Yuyv => w * h * 2,
            PixelFormat::Nv12 => w * h + 2 * w.div_ceil(2) * h.div_ceil(2),
        }
    }
}

/// An uncompressed picture.
///
/// Fields are public for cheap construction and reuse of buffers; [`Image::new`] checks
/// that they agree, and [`crate::encode`] checks again.
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    /// How `data` is laid out.
    pub format: PixelFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The pixels, rows top to bottom without padding.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Image {
    // The pixel data would flood logs and test output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("format", &self.format)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("data_len", &self.data.len())
            .finish()
    }
}

impl Image {
    /// Wraps `data` as a picture, checking its size against the format.
    pub fn new(
        format: PixelFormat,
        width: u32,
        height: u32,
        data: Vec<u8>,
    ) -> Result<Image, CodecError> {
        let image = Image {
            format,
            width,
            height,
            data,
        };
        image.validate()?;
        Ok(image)
    }

    /// Checks that the size is encodable as JPEG and `data` has the right length.
    pub fn validate(&self) -> Result<(), CodecError> {
        let bad = |reason| CodecError::InvalidDimensions {
            format: self.format,
            width: self.width,
            height: self.height,
            reason,
        };
        if self.width == 0 || self.height == 0 {
            return Err(bad("width and height must be at least 1"));
        }
        if self.width > u32::from(u16::MAX) || self.height > u32::from(u16::MAX) {
            return Err(bad("JPEG allows at most 65535 pixels per side"));
        }
        if self.format == PixelFormat::Yuyv && self.width % 2 != 0 {
            return Err(bad("packed YUYV needs an even width"));
        }
        let expected = self.format.buffer_len(self.width, self.height);
        if self.data.len() != expected {
            return Err(CodecError::DataLength {
                format: self.format,
                width: self.width,
                height: self.height,
                expected,
                actual: self.data.len(),
            });
        }
        Ok(())
    }

    /// The picture as RGB8 (a copy unless it already is RGB8).
    pub fn to_rgb(&self) -> Vec<u8> {
        match self.format {
            PixelFormat::Rgb8 => self.data.clone(),
            PixelFormat::Rgba8 => self
                .data
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect(),
            PixelFormat::Gray8 => self.data.iter().flat_map(|&y| [y, y, y]).collect(),
            PixelFormat::Yuyv | PixelFormat::Nv12 => {
                let mut ycbcr = Vec::new();
                self.to_ycbcr(&mut ycbcr);
                ycbcr
                    .chunks_exact(3)
                    .flat_map(|p| ycbcr_to_rgb(p[0], p[1], p[2]))
                    .collect()
            }
        }
    }

    /// Writes a YUV picture as interleaved full-range (JFIF) YCbCr, 3 bytes per pixel,
    /// into `out`. Other formats leave `out` empty.
    pub(crate) fn to_ycbcr(&self, out: &mut Vec<u8>) {
        out.clear();
        let (w, h) = (self.width as usize, self.height as usize);
        let (luma, chroma) = range_tables();
        match self.format {
            PixelFormat::Yuyv => {
                out.reserve(w * h * 3);
                for px in self.data.chunks_exact(4) {
                    let (y0, u, y1, v) = (px[0], px[1], px[2], px[3]);
                    let (cb, cr) = (chroma[usize::from(u)], chroma[usize::from(v)]);
                    out.extend_from_slice(&[luma[usize::from(y0)], cb, cr]);
                    out.extend_from_slice(&[luma[usize::from(y1)], cb, cr]);
                }
            }
            PixelFormat::Nv12 => {
                out.reserve(w * h * 3);
                let (y_plane, uv_plane) = self.data.split_at(w * h);
                let uv_stride = 2 * w.div_ceil(2);
                for (row, ys) in y_plane.chunks_exact(w).enumerate() {
                    let uv_row = &uv_plane[(row / 2) * uv_stride..][..uv_stride];
                    for (x, &y) in ys.iter().enumerate() {
                        let uv = &uv_row[(x / 2) * 2..];
                        out.extend_from_slice(&[
                            luma[usize::from(y)],
                            chroma[usize::from(uv[0])],
                            chroma[usize::from(uv[1])],
                        ]);
                    }
                }
            }
            PixelFormat::Rgb8 | PixelFormat::Rgba8 | PixelFormat::Gray8 => {}
        }
    }
}

/// Lookup tables from BT.601 limited range (Y 16..235, C 16..240) to the full range
/// JFIF expects; without the expansion camera video comes out washed out.
fn range_tables() -> &'static ([u8; 256], [u8; 256]) {
    static TABLES: std::sync::OnceLock<([u8; 256], [u8; 256])> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let mut luma = [0u8; 256];
        let mut chroma = [0u8; 256];
        for i in 0..256 {
            let v = i as f32;
            luma[i] = ((v - 16.0) * 255.0 / 219.0).round().clamp(0.0, 255.0) as u8;
            chroma[i] = ((v - 128.0) * 255.0 / 224.0 + 128.0)
                .round()
                .clamp(0.0, 255.0) as u8;
        }
        (luma, chroma)
    })
}

/// Full-range (JFIF) YCbCr to RGB.
fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (f32::from(y), f32::from(cb) - 128.0, f32::from(cr) - 128.0);
    let clamp = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    [
        clamp(y + 1.402 * cr),
        clamp(y - 0.344_136 * cb - 0.714_136 * cr),
        clamp(y + 1.772 * cb),
    ]
}

/// RGB to BT.601 limited-range Y, U, V: the inverse of what a camera's YUV means. Used by
/// tests and by sources that synthesise YUV.
pub fn rgb_to_yuv601(r: u8, g: u8, b: u8) -> [u8; 3] {
    let (r, g, b) = (f32::from(r), f32::from(g), f32::from(b));
    let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
    let u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
    let v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
    [y.round() as u8, u.round() as u8, v.round() as u8]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_lengths() {
        assert_eq!(PixelFormat::Nv12.buffer_len(4, 2), 8 + 4);
        assert_eq!(PixelFormat::Nv12.buffer_len(3, 3), 9 + 8);
        assert_eq!(PixelFormat::Yuyv.buffer_len(4, 2), 16);
    }

    #[test]
    fn new_checks_length_and_size() {
        assert!(Image::new(PixelFormat::Rgb8, 2, 2, vec![0; 12]).is_ok());
        let err = Image::new(PixelFormat::Rgb8, 2, 2, vec![0; 11]).unwrap_err();
        assert!(matches!(
            err,
            CodecError::DataLength {
                expected: 12,
                actual: 11,
                ..
            }
        ));
        assert!(Image::new(PixelFormat::Yuyv, 3, 2, vec![0; 12]).is_err());
        assert!(Image::new(PixelFormat::Gray8, 0, 2, vec![]).is_err());
        assert!(Image::new(PixelFormat::Gray8, 70_000, 1, vec![0; 70_000]).is_err());
    }

    #[test]
    fn yuv_grey_maps_to_grey() {
        let [y, u, v] = rgb_to_yuv601(200, 200, 200);
        let img = Image::new(PixelFormat::Yuyv, 2, 1, vec![y, u, y, v]).unwrap();
        for c in img.to_rgb() {
            assert!(c.abs_diff(200) <= 2, "{c}");
        }
    }
}
