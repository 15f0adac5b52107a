//! JPEG encoding of an [`Image`] with the options a sender exposes (quality, chroma
//! subsampling, backend).

use bytes::Bytes;
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

use crate::{CodecError, Image, PixelFormat};

/// Chroma subsampling of the JPEG (ignored for grey input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Subsampling {
    /// Full-resolution chroma: largest files, sharpest colour edges.
    S444,
    /// Chroma at half width.
    S422,
    /// Chroma at half width and half height: what cameras and browsers expect.
    #[default]
    S420,
}

/// Which JPEG encoder implementation does the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EncoderBackend {
    /// The pure-Rust `jpeg-encoder` crate (SIMD where the CPU has it). Always available.
    #[default]
    JpegEncoder,
    /// The system libjpeg-turbo through the `turbojpeg` crate; needs the cargo feature
    /// `turbojpeg`, otherwise encoding returns [`CodecError::BackendUnavailable`]. YUV
    /// input is converted to RGB first, since the binding takes only packed pixels.
    TurboJpeg,
}

impl EncoderBackend {
    /// Whether this backend was compiled in.
    pub fn is_available(self) -> bool {
        match self {
            EncoderBackend::JpegEncoder => true,
            EncoderBackend::TurboJpeg => cfg!(feature = "turbojpeg"),
        }
    }

    /// Short lowercase name, as used on command lines and in logs.
    pub fn name(self) -> &'static str {
        match self {
            EncoderBackend::JpegEncoder => "jpeg-encoder",
            EncoderBackend::TurboJpeg => "turbojpeg",
        }
    }
}

/// How to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EncodeOptions {
    /// JPEG quality, 1 (smallest) to 100 (best).
    pub quality: u8,
    /// Chroma subsampling.
    pub subsampling: Subsampling,
    /// Encoder implementation.
    pub backend: EncoderBackend,
}

impl Default for EncodeOptions {
    /// Quality 80, 4:2:0, pure-Rust encoder: a sensible live-video trade-off.
    fn default() -> Self {
        EncodeOptions {
            quality: 80,
            subsampling: Subsampling::S420,
            backend: EncoderBackend::JpegEncoder,
        }
    }
}

impl EncodeOptions {
    /// Default options with the given quality, which must be 1..=100.
    pub fn new(quality: u8) -> Result<EncodeOptions, CodecError> {
        check_quality(quality)?;
        Ok(EncodeOptions {
            quality,
            ..EncodeOptions::default()
        })
    }
}

fn check_quality(quality: u8) -> Result<(), CodecError> {
    if (1..=100).contains(&quality) {
        Ok(())
    } else {
        Err(CodecError::InvalidQuality { quality })
    }
}

/// Encodes `image` as a baseline JPEG.
pub fn encode(image: &Image, opts: &EncodeOptions) -> Result<Bytes, CodecError> {
    encode_with_scratch(image, opts, &mut Vec::new())
}

/// [`encode`] with a caller-owned conversion buffer, so a pool worker reuses one
/// allocation for every frame's YCbCr copy.
pub(crate) fn encode_with_scratch(
    image: &Image,
    opts: &EncodeOptions,
    scratch: &mut Vec<u8>,
) -> Result<Bytes, CodecError> {
    check_quality(opts.quality)?;
    image.validate()?;
    match opts.backend {
        EncoderBackend::JpegEncoder => encode_jpeg_encoder(image, opts, scratch),
        EncoderBackend::TurboJpeg => encode_turbojpeg(image, opts),
    }
}

fn encode_jpeg_encoder(
    image: &Image,
    opts: &EncodeOptions,
    scratch: &mut Vec<u8>,
) -> Result<Bytes, CodecError> {
    let (data, color) = match image.format {
        PixelFormat::Rgb8 => (&image.data[..], ColorType::Rgb),
        PixelFormat::Rgba8 => (&image.data[..], ColorType::Rgba),
        PixelFormat::Gray8 => (&image.data[..], ColorType::Luma),
        PixelFormat::Yuyv | PixelFormat::Nv12 => {
            image.to_ycbcr(scratch);
            (&scratch[..], ColorType::Ycbcr)
        }
    };
    // A typical frame compresses to well under a tenth of its RGB size.
    let mut out = Vec::with_capacity(image.width as usize * image.height as usize / 4 + 1024);
    let mut encoder = Encoder::new(&mut out, opts.quality);
    // Always set: jpeg-encoder otherwise switches to 4:4:4 by itself at quality >= 90.
    encoder.set_sampling_factor(match opts.subsampling {
        Subsampling::S444 => SamplingFactor::R_4_4_4,
        Subsampling::S422 => SamplingFactor::R_4_2_2,
        Subsampling::S420 => SamplingFactor::R_4_2_0,
    });
    // validate() bounded both sides to u16.
    encoder
        .encode(data, image.width as u16, image.height as u16, color)
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(Bytes::from(out))
}

#[cfg(feature = "turbojpeg")]
fn encode_turbojpeg(image: &Image, opts: &EncodeOptions) -> Result<Bytes, CodecError> {
    use turbojpeg::{PixelFormat as Tj, Subsamp};

    let rgb;
    let (pixels, format, bytes_per_pixel) = match image.format {
        PixelFormat::Rgb8 => (&image.data[..], Tj::RGB, 3),
        PixelFormat::Rgba8 => (&image.data[..], Tj::RGBX, 4),
        PixelFormat::Gray8 => (&image.data[..], Tj::GRAY, 1),
        PixelFormat::Yuyv | PixelFormat::Nv12 => {
            rgb = image.to_rgb();
            (&rgb[..], Tj::RGB, 3)
        }
    };
    let width = image.width as usize;
    let tj_image = turbojpeg::Image {
        pixels,
        width,
        pitch: width * bytes_per_pixel,
        height: image.height as usize,
        format,
    };
    let subsamp = if image.format == PixelFormat::Gray8 {
        Subsamp::Gray
    } else {
        match opts.subsampling {
            Subsampling::S444 => Subsamp::None,
            Subsampling::S422 => Subsamp::Sub2x1,
            Subsampling::S420 => Subsamp::Sub2x2,
        }
    };
    let mut compressor =
        turbojpeg::Compressor::new().map_err(|e| CodecError::Encode(e.to_string()))?;
    compressor.set_quality(i32::from(opts.quality));
    compressor.set_subsamp(subsamp);
    let out = compressor
        .compress_to_vec(tj_image)
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(Bytes::from(out))
}

#[cfg(not(feature = "turbojpeg"))]
fn encode_turbojpeg(_image: &Image, _opts: &EncodeOptions) -> Result<Bytes, CodecError> {
    Err(CodecError::BackendUnavailable(
        EncoderBackend::TurboJpeg.name(),
    ))
}
