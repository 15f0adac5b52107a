//! The `--display` window: shows the newest frame, never a backlog.
//!
//! The window lives on its own thread (minifb windows stay on the thread that made them).
//! Frames are handed over through a one-frame slot that the receiver overwrites, so a
//! slow decoder or window skips stale frames instead of falling behind the stream.
//!
//! JPEG frames are decoded on the window thread. H.264 frames cannot be skipped that way
//! (each delta frame needs the one before), so with the `h264` feature they are decoded
//! as they arrive, by one decoder for the stream, and the pictures go through the slot;
//! after a picture that does not decode, decoding waits for the next keyframe.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use minifb::{Window, WindowOptions};
use vswa_codec::DecodedImage;
use vswa_protocol::Frame;

use crate::output_error::SinkError;

const TITLE: &str = "vswa-recv";

/// What the window shows next.
#[derive(Debug)]
enum Slot {
    /// A JPEG frame, decoded by the window thread.
    Jpeg(Frame),
    /// A picture decoded already (from H.264).
    #[cfg_attr(not(feature = "h264"), allow(dead_code))]
    Picture(DecodedImage),
}

#[derive(Debug, Default)]
struct Shared {
    newest: Mutex<Option<Slot>>,
    wake: Condvar,
    title: Mutex<Option<String>>,
    closed: AtomicBool,
    stop: AtomicBool,
    error: Mutex<Option<String>>,
    /// Frames replaced in the slot before the window got to them.
    skipped: AtomicU64,
}

/// A live window showing the stream.
#[derive(Debug)]
pub struct Display {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    #[cfg(feature = "h264")]
    h264: H264State,
}

/// The stream's H.264 decoder, made at the first H.264 frame.
#[cfg(feature = "h264")]
#[derive(Debug, Default)]
struct H264State {
    decoder: Option<vswa_codec::H264Decoder>,
    /// A picture failed to decode: wait for a keyframe.
    need_key: bool,
}

impl Display {
    /// Opens the window (fails at once without an X display).
    pub fn open() -> Result<Display, SinkError> {
        if std::env::var_os("DISPLAY").is_none_or(|d| d.is_empty()) {
            return Err(SinkError::Display(
                "no X display: DISPLAY is not set".into(),
            ));
        }
        let shared = Arc::new(Shared::default());
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("vswa-display".into())
            .spawn(move || window_thread(thread_shared, ready_tx))
            .map_err(|e| SinkError::Display(format!("cannot start the window thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Display {
                shared,
                thread: Some(thread),
                #[cfg(feature = "h264")]
                h264: H264State::default(),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(SinkError::Display(e))
            }
            Err(_) => Err(SinkError::Display("the window thread stopped".into())),
        }
    }

    /// Offers a frame; it (or, for H.264, its picture) replaces any the window has not
    /// shown yet. H.264 frames must come in stream order from a keyframe on; they need
    /// the `h264` feature, and are ignored without it.
    pub fn show(&mut self, frame: &Frame) -> Result<(), SinkError> {
        if let Some(e) = self
            .shared
            .error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Err(SinkError::Display(e));
        }
        let slot = match frame.header().codec {
            vswa_protocol::Codec::H264 => match self.decode_h264(frame)? {
                Some(picture) => Slot::Picture(picture),
                None => return Ok(()),
            },
            _ => Slot::Jpeg(frame.clone()),
        };
        let old = self
            .shared
            .newest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(slot);
        if old.is_some() {
            self.shared.skipped.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Decodes one H.264 frame; `None` when it holds no picture or does not decode.
    #[cfg(feature = "h264")]
    fn decode_h264(&mut self, frame: &Frame) -> Result<Option<DecodedImage>, SinkError> {
        let h = frame.header();
        let state = &mut self.h264;
        if frame.payload().is_empty()
            || (state.need_key && !h.flags.contains(vswa_protocol::Flags::KEYFRAME))
        {
            return Ok(None);
        }
        let decoder = match &mut state.decoder {
            Some(d) => d,
            None => state.decoder.insert(
                vswa_codec::H264Decoder::new().map_err(|e| SinkError::Display(e.to_string()))?,
            ),
        };
        match decoder.decode(frame.payload()) {
            Ok(Some(image)) => {
                state.need_key = false;
                Ok(Some(DecodedImage {
                    width: image.width,
                    height: image.height,
                    rgb: image.data,
                }))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::warn!(
                    "display: frame {} does not decode; waiting for the next keyframe: {e}",
                    h.sequence
                );
                state.need_key = true;
                Ok(None)
            }
        }
    }

    /// Without the `h264` feature H.264 is refused before it gets here.
    #[cfg(not(feature = "h264"))]
    fn decode_h264(&mut self, _frame: &Frame) -> Result<Option<DecodedImage>, SinkError> {
        Ok(None)
    }

    /// Sets the stats shown in the title bar.
    pub fn set_title(&self, status: &str) {
        *self
            .shared
            .title
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(format!("{TITLE}: {status}"));
    }

    /// True once the user closed the window (or pressed Escape).
    pub fn closed(&self) -> bool {
        self.shared.closed.load(Ordering::Relaxed)
    }

    /// Frames that arrived faster than the window could show them and were skipped.
    pub fn skipped(&self) -> u64 {
        self.shared.skipped.load(Ordering::Relaxed)
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn new_window(width: usize, height: usize) -> Result<Window, String> {
    let options = WindowOptions {
        resize: true,
        scale_mode: minifb::ScaleMode::AspectRatioStretch,
        ..WindowOptions::default()
    };
    let mut window = Window::new(TITLE, width, height, options)
        .map_err(|e| format!("cannot open a window: {e}"))?;
    // update() then also waits for the next refresh slot instead of spinning.
    window.set_target_fps(60);
    Ok(window)
}

fn window_thread(shared: Arc<Shared>, ready: mpsc::Sender<Result<(), String>>) {
    let mut window = match new_window(640, 480) {
        Ok(w) => {
            let _ = ready.send(Ok(()));
            w
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut sized = false;
    let mut pixels: Vec<u32> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        if !window.is_open() || window.is_key_down(minifb::Key::Escape) {
            shared.closed.store(true, Ordering::Relaxed);
            return;
        }
        if let Some(title) = shared
            .title
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            window.set_title(&title);
        }
        let slot = {
            let slot = shared.newest.lock().unwrap_or_else(PoisonError::into_inner);
            // Wait briefly for a frame, but keep pumping window events.
            let (mut slot, _) = shared
                .wake
                .wait_timeout_while(slot, Duration::from_millis(15), |f| {
                    f.is_none() && !shared.stop.load(Ordering::Relaxed)
                })
                .unwrap_or_else(PoisonError::into_inner);
            slot.take()
        };
        let image = match slot {
            None => {
                window.update();
                continue;
            }
            Some(Slot::Picture(image)) => image,
            Some(Slot::Jpeg(frame)) => match vswa_codec::decode(frame.payload()) {
                Ok(image) => image,
                Err(e) => {
                    tracing::warn!(
                        "display: frame {} is not a decodable JPEG: {e}",
                        frame.header().sequence
                    );
                    continue;
                }
            },
        };
        let (w, h) = (image.width as usize, image.height as usize);
        if !sized {
            // The first window only proved a display exists; now match the video size.
            sized = true;
            if (w, h) != window.get_size() {
                match new_window(w, h) {
                    Ok(new) => window = new,
                    Err(e) => {
                        *shared.error.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                        return;
                    }
                }
            }
        }
        pixels.clear();
        pixels.extend(
            image
                .rgb
                .chunks_exact(3)
                .map(|p| (u32::from(p[0]) << 16) | (u32::from(p[1]) << 8) | u32::from(p[2])),
        );
        if let Err(e) = window.update_with_buffer(&pixels, w, h) {
            *shared.error.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(format!("cannot draw the frame: {e}"));
            return;
        }
    }
}
