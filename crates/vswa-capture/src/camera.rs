//! The `camera` source through nokhwa (V4L2 on Linux). MJPEG is preferred and passed
//! through untouched; raw formats are handed on as an [`Image`] for the encoder. The
//! camera delivers the supported mode closest to the request; nothing is rescaled here.

use bytes::Bytes;
use nokhwa::utils::{
    CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType, Resolution,
};
use nokhwa::Camera;
use vswa_codec::{Image, PixelFormat};

use crate::{now_us, CaptureError, CapturedFrame, FrameContent, Source};

/// Formats accepted from the camera, best first.
const FORMATS: [FrameFormat; 5] = [
    FrameFormat::MJPEG,
    FrameFormat::YUYV,
    FrameFormat::NV12,
    FrameFormat::RAWRGB,
    FrameFormat::GRAY,
];

/// An open, streaming camera. Dropping it stops the stream and releases the device.
pub struct CameraSource {
    index: u32,
    camera: Camera,
}

impl std::fmt::Debug for CameraSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraSource")
            .field("index", &self.index)
            .field("format", &self.camera.camera_format())
            .finish_non_exhaustive()
    }
}

impl CameraSource {
    /// Opens camera `index` in the mode closest to `width` x `height` at `fps`.
    pub fn open(
        index: u32,
        width: u32,
        height: u32,
        fps: u32,
    ) -> Result<CameraSource, CaptureError> {
        let err = |e: nokhwa::NokhwaError| CaptureError::Camera {
            index,
            message: e.to_string(),
        };
        let wanted = CameraFormat::new(
            Resolution::new(width, height),
            FrameFormat::MJPEG,
            fps.max(1),
        );
        let request = RequestedFormat::with_formats(RequestedFormatType::Closest(wanted), &FORMATS);
        let mut camera = Camera::new(CameraIndex::Index(index), request).map_err(err)?;
        camera.open_stream().map_err(err)?;
        Ok(CameraSource { index, camera })
    }
}

impl Source for CameraSource {
    fn describe(&self) -> String {
        let format = self.camera.camera_format();
        format!(
            "camera {} ({}) {}x{} {} @ {} fps",
            self.index,
            self.camera.info().human_name(),
            format.width(),
            format.height(),
            format.format(),
            format.frame_rate()
        )
    }

    fn is_live(&self) -> bool {
        true
    }

    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, CaptureError> {
        let buffer = self.camera.frame().map_err(|e| CaptureError::Camera {
            index: self.index,
            message: e.to_string(),
        })?;
        let timestamp_us = now_us();
        let resolution = buffer.resolution();
        let (width, height) = (resolution.width(), resolution.height());
        let data = buffer.buffer();
        let image = |format, data: Vec<u8>| {
            Image::new(format, width, height, data).map_err(|e| CaptureError::Camera {
                index: self.index,
                message: format!("unexpected frame from camera: {e}"),
            })
        };
        let content = match buffer.source_frame_format() {
            FrameFormat::MJPEG => {
                let jpeg = Bytes::copy_from_slice(data);
                let (w, h) =
                    vswa_codec::jpeg_dimensions(&jpeg).unwrap_or((width as u16, height as u16));
                FrameContent::Jpeg {
                    data: jpeg,
                    width: w,
                    height: h,
                }
            }
            FrameFormat::YUYV => FrameContent::Image(image(PixelFormat::Yuyv, data.to_vec())?),
            FrameFormat::NV12 => FrameContent::Image(image(PixelFormat::Nv12, data.to_vec())?),
            FrameFormat::GRAY => FrameContent::Image(image(PixelFormat::Gray8, data.to_vec())?),
            FrameFormat::RAWRGB => FrameContent::Image(image(PixelFormat::Rgb8, data.to_vec())?),
            FrameFormat::RAWBGR => {
                let rgb = data
                    .chunks_exact(3)
                    .flat_map(|p| [p[2], p[1], p[0]])
                    .collect();
                FrameContent::Image(image(PixelFormat::Rgb8, rgb)?)
            }
        };
        Ok(Some(CapturedFrame {
            timestamp_us,
            content,
            placeholder: false,
        }))
    }
}

impl Drop for CameraSource {
    fn drop(&mut self) {
        // Release the device promptly so a reopen (or another program) can have it.
        let _ = self.camera.stop_stream();
    }
}
