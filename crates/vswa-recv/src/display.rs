//! The `--display` window: shows the newest frame, never a backlog.
//!
//! The window lives on its own thread (minifb windows stay on the thread that made them).
//! Frames are handed over through a one-frame slot that the receiver overwrites, so a
//! slow decoder or window skips stale frames instead of falling behind the stream.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use minifb::{Window, WindowOptions};
use vswa_protocol::Frame;

use crate::output_error::SinkError;

const TITLE: &str = "vswa-recv";

#[derive(Debug, Default)]
struct Shared {
    newest: Mutex<Option<Frame>>,
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
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(SinkError::Display(e))
            }
            Err(_) => Err(SinkError::Display("the window thread stopped".into())),
        }
    }

    /// Offers a frame; it replaces any frame the window has not shown yet.
    pub fn show(&self, frame: &Frame) -> Result<(), SinkError> {
        if let Some(e) = self
            .shared
            .error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Err(SinkError::Display(e));
        }
        let old = self
            .shared
            .newest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(frame.clone());
        if old.is_some() {
            self.shared.skipped.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.wake.notify_one();
        Ok(())
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
        let frame = {
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
        let Some(frame) = frame else {
            window.update();
            continue;
        };
        let image = match vswa_codec::decode(frame.payload()) {
            Ok(image) => image,
            Err(e) => {
                tracing::warn!(
                    "display: frame {} is not a decodable JPEG: {e}",
                    frame.header().sequence
                );
                continue;
            }
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
