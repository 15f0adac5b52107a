//! Runs a [`Source`] on its own thread and hands frames over a bounded channel, so slow
//! device reads never stall encoding and a slow consumer never grows a queue: live
//! sources drop (and count) frames when the channel is full, others wait.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError as ChannelTimeout, TrySendError};

use crate::{CaptureError, CapturedFrame, Source};

/// How long dropping a [`CaptureThread`] waits for the source to notice. A source
/// blocked in a read that never returns (an idle stdin) is left behind after this.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Why a capture thread stopped.
#[derive(Debug)]
pub enum CaptureEnd {
    /// The source reached the end of its input.
    Finished,
    /// The source failed.
    Failed(CaptureError),
    /// The consumer went away or asked it to stop.
    Stopped,
}

/// Why [`CaptureThread::recv_timeout`] returned no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvTimeoutError {
    /// No frame arrived in time; the source is still running.
    #[error("timed out waiting for a frame")]
    Timeout,
    /// The source has stopped and every frame has been received; see
    /// [`CaptureThread::take_end`].
    #[error("capture has ended")]
    Ended,
}

/// A source running on a dedicated thread. Dropping it stops the thread, which drops
/// the source (releasing a camera).
pub struct CaptureThread {
    /// Frames with their index among all the source produced (dropped ones included).
    frames: Option<Receiver<(u64, CapturedFrame)>>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    end: Arc<Mutex<Option<CaptureEnd>>>,
    exited: Receiver<()>,
    handle: Option<JoinHandle<()>>,
    description: String,
    live: bool,
}

impl std::fmt::Debug for CaptureThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureThread")
            .field("source", &self.description)
            .field("live", &self.live)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl CaptureThread {
    /// Starts `source` on a new thread with a channel of `capacity` frames (at least 1).
    pub fn spawn(mut source: Box<dyn Source>, capacity: usize) -> CaptureThread {
        let (tx, rx) = bounded(capacity.max(1));
        let (exited_tx, exited) = bounded::<()>(0);
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let end = Arc::new(Mutex::new(None));
        let description = source.describe();
        let live = source.is_live();
        let handle = {
            let (stop, dropped, end) = (stop.clone(), dropped.clone(), end.clone());
            std::thread::Builder::new()
                .name("vswa-capture".into())
                .spawn(move || {
                    // Dropped when this closure returns, which wakes the Drop impl.
                    let _exited = exited_tx;
                    let mut produced = 0u64;
                    let reason = loop {
                        if stop.load(Ordering::Acquire) {
                            break CaptureEnd::Stopped;
                        }
                        let frame = match source.next_frame() {
                            Ok(Some(frame)) => frame,
                            Ok(None) => break CaptureEnd::Finished,
                            Err(e) => break CaptureEnd::Failed(e),
                        };
                        let frame = (produced, frame);
                        produced += 1;
                        let sent = if live {
                            match tx.try_send(frame) {
                                Err(TrySendError::Full(_)) => {
                                    dropped.fetch_add(1, Ordering::Relaxed);
                                    Ok(())
                                }
                                Err(TrySendError::Disconnected(_)) => Err(()),
                                Ok(()) => Ok(()),
                            }
                        } else {
                            tx.send(frame).map_err(|_| ())
                        };
                        if sent.is_err() {
                            break CaptureEnd::Stopped;
                        }
                    };
                    // Release the device before reporting, so a reopen can succeed.
                    drop(source);
                    *end.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                })
                .expect("spawning the capture thread")
        };
        CaptureThread {
            frames: Some(rx),
            stop,
            dropped,
            end,
            exited,
            handle: Some(handle),
            description,
            live,
        }
    }

    /// The next frame, waiting for it; `None` once the source has stopped and every
    /// frame has been received.
    pub fn recv(&self) -> Option<CapturedFrame> {
        self.frames.as_ref()?.recv().ok().map(|(_, frame)| frame)
    }

    /// The next frame, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<CapturedFrame, RecvTimeoutError> {
        self.recv_indexed_timeout(timeout).map(|(_, frame)| frame)
    }

    /// The next frame and its index among all the frames the source produced, counting
    /// the ones dropped before it (so the first is 0 and a drop leaves a gap), waiting
    /// at most `timeout`.
    pub fn recv_indexed_timeout(
        &self,
        timeout: Duration,
    ) -> Result<(u64, CapturedFrame), RecvTimeoutError> {
        let frames = self.frames.as_ref().ok_or(RecvTimeoutError::Ended)?;
        frames.recv_timeout(timeout).map_err(|e| match e {
            ChannelTimeout::Timeout => RecvTimeoutError::Timeout,
            ChannelTimeout::Disconnected => RecvTimeoutError::Ended,
        })
    }

    /// Frames a live source dropped because the channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The source's description, taken when the thread started.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Whether the source is live (drops frames rather than waiting).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Why the thread stopped, once it has (the report can be taken once). Typically
    /// called after [`recv`](CaptureThread::recv) returned `None`.
    pub fn take_end(&self) -> Option<CaptureEnd> {
        self.end.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Asks the thread to stop after the frame it is capturing.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl Drop for CaptureThread {
    fn drop(&mut self) {
        self.stop();
        // Without a receiver, a non-live source blocked on a full channel wakes up.
        self.frames.take();
        match self.exited.recv_timeout(STOP_GRACE) {
            Err(ChannelTimeout::Timeout) => {
                tracing::warn!(source = %self.description, "capture thread did not stop in time; leaving it behind");
            }
            _ => {
                if let Some(handle) = self.handle.take() {
                    let _ = handle.join();
                }
            }
        }
    }
}
