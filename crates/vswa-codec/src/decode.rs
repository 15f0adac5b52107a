//! JPEG decoding to RGB (for display and tests), size probing from markers, and PSNR.

use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::CodecError;

/// A decoded picture, always RGB8.
#[derive(Clone, PartialEq, Eq)]
pub struct DecodedImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixels as R, G, B, rows top to bottom.
    pub rgb: Vec<u8>,
}

impl std::fmt::Debug for DecodedImage {
    // The pixel data would flood logs and test output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedImage")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("rgb_len", &self.rgb.len())
            .finish()
    }
}

/// Decodes a JPEG (baseline or progressive, colour or grey) to RGB8.
///
/// Invalid input gives [`CodecError::Decode`], never a panic.
pub fn decode(jpeg: &[u8]) -> Result<DecodedImage, CodecError> {
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX));
    // zune-jpeg is fuzzed, but a viewer must survive any bytes a network hands it, so a
    // panic inside the decoder is turned into an error too.
    let result = std::panic::catch_unwind(|| {
        let mut decoder = JpegDecoder::new_with_options(jpeg, options);
        let pixels = decoder.decode()?;
        let info = decoder.info();
        let components = decoder
            .get_output_colorspace()
            .map_or(0, |c| c.num_components());
        Ok::<_, zune_jpeg::errors::DecodeErrors>((pixels, info, components))
    });
    let (pixels, info, components) = match result {
        Ok(Ok(decoded)) => decoded,
        Ok(Err(e)) => return Err(CodecError::Decode(format!("{e:?}"))),
        Err(_) => return Err(CodecError::Decode("decoder panicked".into())),
    };
    let info = info.ok_or_else(|| CodecError::Decode("no image header".into()))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    // zune-jpeg keeps grey pictures as one channel whatever output it was asked for.
    let rgb = match components {
        1 => pixels.iter().flat_map(|&g| [g, g, g]).collect(),
        _ => pixels,
    };
    if rgb.len() != width as usize * height as usize * 3 {
        return Err(CodecError::Decode(format!(
            "decoder returned {} bytes for {width}x{height} RGB",
            rgb.len()
        )));
    }
    Ok(DecodedImage { width, height, rgb })
}

/// Width and height from a JPEG's start-of-frame marker, without decoding.
///
/// Walks the marker segments from SOI to the first SOFn (SOF0..SOF15, excluding DHT,
/// JPG and DAC, which share that code range). `None` if the bytes are not a JPEG or end
/// before the SOF.
pub fn jpeg_dimensions(jpeg: &[u8]) -> Option<(u16, u16)> {
    if jpeg.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut pos = 2;
    loop {
        if *jpeg.get(pos)? != 0xFF {
            return None;
        }
        // Any number of 0xFF fill bytes may precede a marker code.
        while *jpeg.get(pos + 1)? == 0xFF {
            pos += 1;
        }
        let marker = jpeg[pos + 1];
        pos += 2;
        match marker {
            // Standalone markers carry no length.
            0x01 | 0xD0..=0xD7 => continue,
            // Image data or end of image before any frame header.
            0xD8..=0xDA => return None,
            _ => {}
        }
        let len = usize::from(u16::from_be_bytes([*jpeg.get(pos)?, *jpeg.get(pos + 1)?]));
        if len < 2 {
            return None;
        }
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            // Length (2), precision (1), height (2), width (2).
            let seg = jpeg.get(pos..pos + 7)?;
            let height = u16::from_be_bytes([seg[3], seg[4]]);
            let width = u16::from_be_bytes([seg[5], seg[6]]);
            return Some((width, height));
        }
        pos += len;
    }
}

/// Peak signal-to-noise ratio in dB between two 8-bit buffers of the same layout
/// (typically RGB8). Identical buffers give infinity; buffers of different lengths, or
/// empty ones, give 0 dB so a size mismatch fails any quality bound.
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let sum_sq: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| u64::from(x.abs_diff(y)).pow(2))
        .sum();
    if sum_sq == 0 {
        return f64::INFINITY;
    }
    let mse = sum_sq as f64 / a.len() as f64;
    10.0 * (255.0 * 255.0 / mse).log10()
}
