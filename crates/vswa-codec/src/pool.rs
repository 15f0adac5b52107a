//! A parallel encoder that keeps frame order.
//!
//! Consecutive frames go to whichever worker thread is free; each result carries its
//! submission number, and the receiving side holds early finishers back until every
//! earlier frame is out. All queues are bounded, so a consumer that stops receiving
//! stalls the producer (or makes [`EncoderPool::try_submit`] report `Full`) instead of
//! letting memory grow.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::encode::encode_with_scratch;
use crate::{CodecError, EncodeOptions, Image};

/// How often a blocked [`EncoderPool::submit`] looks whether the pool was closed.
const CLOSE_POLL: Duration = Duration::from_millis(20);

/// One encoded frame, handed back in submission order.
#[derive(Debug)]
pub struct Encoded<T> {
    /// The JPEG, or why this frame could not be encoded.
    pub result: Result<Bytes, CodecError>,
    /// Width of the source image.
    pub width: u32,
    /// Height of the source image.
    pub height: u32,
    /// The caller's tag, as submitted (typically a sequence number and timestamp).
    pub tag: T,
    /// Time the worker spent encoding this frame (zero for a pass-through).
    pub encode_time: Duration,
    /// The frame came in already encoded ([`EncoderPool::submit_encoded`]).
    pub passthrough: bool,
}

/// [`EncoderPool::submit`] after [`EncoderPool::close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("encoder pool is closed")]
pub struct PoolClosed;

/// Why [`EncoderPool::try_submit`] did not take a frame; the frame and tag come back.
#[derive(Debug, thiserror::Error)]
pub enum TrySubmitError<T> {
    /// Every queue slot is taken: the encoder is behind. A live sender drops the frame.
    #[error("encoder pool is full")]
    Full(Image, T),
    /// The pool was closed.
    #[error("encoder pool is closed")]
    Closed(Image, T),
}

/// Why [`EncoderPool::recv_timeout`] returned no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvTimeoutError {
    /// No result was ready in time; the pool is still open.
    #[error("timed out waiting for an encoded frame")]
    Timeout,
    /// The pool was closed and every result has been received.
    #[error("encoder pool is closed and drained")]
    Closed,
}

struct Job<T> {
    seq: u64,
    input: Input,
    tag: T,
}

/// What a job carries: pixels to encode, or a finished JPEG that only keeps its place.
enum Input {
    Image(Image),
    Encoded {
        jpeg: Bytes,
        width: u32,
        height: u32,
    },
}

struct Done<T> {
    seq: u64,
    encoded: Encoded<T>,
}

/// State of the receiving side: results that finished ahead of their turn.
struct Reorder<T> {
    results: Option<Receiver<Done<T>>>,
    next: u64,
    waiting: BTreeMap<u64, Encoded<T>>,
}

/// Parallel in-order JPEG encoder: `threads` workers encode consecutive frames, and
/// [`recv`](EncoderPool::recv) returns results in the order they were submitted.
///
/// ```
/// use vswa_codec::{EncodeOptions, EncoderPool, Image, PixelFormat};
///
/// let pool = EncoderPool::new(2, EncodeOptions::default());
/// for i in 0..4u32 {
///     pool.submit(Image::new(PixelFormat::Gray8, 16, 16, vec![i as u8 * 60; 256])?, i)?;
/// }
/// pool.close();
/// let tags: Vec<u32> = std::iter::from_fn(|| pool.recv()).map(|e| e.tag).collect();
/// assert_eq!(tags, [0, 1, 2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct EncoderPool<T> {
    /// The job sender and the next sequence number, locked together so numbers are
    /// handed out in queue order and a refused frame leaves no gap.
    submit: Mutex<Option<(Sender<Job<T>>, u64)>>,
    closed: AtomicBool,
    reorder: Mutex<Reorder<T>>,
    workers: Vec<JoinHandle<()>>,
}

impl<T> std::fmt::Debug for EncoderPool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncoderPool")
            .field("threads", &self.workers.len())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> EncoderPool<T> {
    /// Starts `threads` workers (at least one) encoding with `opts`. The job and result
    /// queues each hold `2 * threads` frames.
    pub fn new(threads: usize, opts: EncodeOptions) -> EncoderPool<T> {
        let threads = threads.max(1);
        let (job_tx, job_rx) = bounded::<Job<T>>(2 * threads);
        let (done_tx, done_rx) = bounded::<Done<T>>(2 * threads);
        let workers = (0..threads)
            .map(|i| {
                let jobs = job_rx.clone();
                let done = done_tx.clone();
                std::thread::Builder::new()
                    .name(format!("vswa-encode-{i}"))
                    .spawn(move || worker(jobs, done, opts))
                    .expect("spawning an encoder thread")
            })
            .collect();
        EncoderPool {
            submit: Mutex::new(Some((job_tx, 0))),
            closed: AtomicBool::new(false),
            reorder: Mutex::new(Reorder {
                results: Some(done_rx),
                next: 0,
                waiting: BTreeMap::new(),
            }),
            workers,
        }
    }

    /// Queues a frame, blocking while the queue is full.
    ///
    /// The queues are bounded, so a thread that only submits and never receives blocks
    /// after about `5 * threads` frames: receive on another thread, or use
    /// [`try_submit`](EncoderPool::try_submit).
    pub fn submit(&self, image: Image, tag: T) -> Result<(), PoolClosed> {
        self.submit_input(Input::Image(image), tag)
    }

    /// Queues an already encoded JPEG, blocking while the queue is full. It comes out of
    /// [`recv`](EncoderPool::recv) unchanged, in its submission place, so a source
    /// that mixes ready JPEGs with raw pictures keeps its order without waiting for
    /// the pool to drain.
    pub fn submit_encoded(
        &self,
        jpeg: Bytes,
        width: u32,
        height: u32,
        tag: T,
    ) -> Result<(), PoolClosed> {
        self.submit_input(
            Input::Encoded {
                jpeg,
                width,
                height,
            },
            tag,
        )
    }

    fn submit_input(&self, input: Input, tag: T) -> Result<(), PoolClosed> {
        let mut job = Job { seq: 0, input, tag };
        loop {
            let mut guard = lock(&self.submit);
            let Some((tx, next)) = guard.as_mut() else {
                return Err(PoolClosed);
            };
            job.seq = *next;
            match tx.send_timeout(job, CLOSE_POLL) {
                Ok(()) => {
                    *next += 1;
                    return Ok(());
                }
                // Let go of the lock now and then so close() is never stuck behind us.
                Err(e) if e.is_timeout() => job = e.into_inner(),
                Err(_) => return Err(PoolClosed),
            }
            drop(guard);
            if self.closed.load(Ordering::Acquire) {
                return Err(PoolClosed);
            }
        }
    }

    /// Queues a frame if there is room right now; otherwise hands it back.
    pub fn try_submit(&self, image: Image, tag: T) -> Result<(), TrySubmitError<T>> {
        let mut guard = lock(&self.submit);
        let Some((tx, next)) = guard.as_mut() else {
            return Err(TrySubmitError::Closed(image, tag));
        };
        let job = Job {
            seq: *next,
            input: Input::Image(image),
            tag,
        };
        let give_back = |job: Job<T>| match job.input {
            Input::Image(image) => (image, job.tag),
            // try_submit only ever queues images.
            Input::Encoded { .. } => unreachable!("try_submit queued a pass-through"),
        };
        match tx.try_send(job) {
            Ok(()) => {
                *next += 1;
                Ok(())
            }
            Err(TrySendError::Full(job)) => {
                let (image, tag) = give_back(job);
                Err(TrySubmitError::Full(image, tag))
            }
            Err(TrySendError::Disconnected(job)) => {
                let (image, tag) = give_back(job);
                Err(TrySubmitError::Closed(image, tag))
            }
        }
    }

    /// The next result in submission order, waiting for it. `None` once the pool is
    /// closed and every submitted frame has been returned.
    pub fn recv(&self) -> Option<Encoded<T>> {
        self.recv_until(None).ok()
    }

    /// Like [`recv`](EncoderPool::recv), giving up after `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Encoded<T>, RecvTimeoutError> {
        self.recv_until(Some(Instant::now() + timeout))
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<Encoded<T>, RecvTimeoutError> {
        let mut state = lock(&self.reorder);
        let state = &mut *state;
        loop {
            if let Some(encoded) = state.waiting.remove(&state.next) {
                state.next += 1;
                return Ok(encoded);
            }
            let Some(results) = &state.results else {
                return Err(RecvTimeoutError::Closed);
            };
            let received = match deadline {
                None => results.recv().map_err(|_| RecvTimeoutError::Closed),
                Some(deadline) => results.recv_deadline(deadline).map_err(|e| {
                    if e.is_timeout() {
                        RecvTimeoutError::Timeout
                    } else {
                        RecvTimeoutError::Closed
                    }
                }),
            };
            match received {
                Ok(done) => {
                    state.waiting.insert(done.seq, done.encoded);
                }
                Err(RecvTimeoutError::Closed) => {
                    // Every worker is gone. Workers never skip a job, so anything still
                    // waiting is in order; hand it out rather than lose it.
                    let (seq, encoded) =
                        state.waiting.pop_first().ok_or(RecvTimeoutError::Closed)?;
                    state.next = seq + 1;
                    return Ok(encoded);
                }
                Err(timeout) => return Err(timeout),
            }
        }
    }

    /// Stops accepting frames. Queued frames are still encoded and can be received;
    /// after the last, [`recv`](EncoderPool::recv) returns `None`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        lock(&self.submit).take();
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }
}

impl<T> Drop for EncoderPool<T> {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
        lock(&self.submit).take();
        // Without a receiver, workers stop at their next result instead of blocking on a
        // full result queue forever, so the joins below finish.
        lock(&self.reorder).results.take();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn worker<T>(jobs: Receiver<Job<T>>, done: Sender<Done<T>>, opts: EncodeOptions) {
    let mut scratch = Vec::new();
    for Job { seq, input, tag } in jobs {
        let encoded = match input {
            Input::Image(image) => {
                let start = Instant::now();
                // A panic must not lose the frame's slot, or every later frame would
                // wait on it.
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    encode_with_scratch(&image, &opts, &mut scratch)
                }))
                .unwrap_or(Err(CodecError::Panicked));
                Encoded {
                    result,
                    width: image.width,
                    height: image.height,
                    tag,
                    encode_time: start.elapsed(),
                    passthrough: false,
                }
            }
            Input::Encoded {
                jpeg,
                width,
                height,
            } => Encoded {
                result: Ok(jpeg),
                width,
                height,
                tag,
                encode_time: Duration::ZERO,
                passthrough: true,
            },
        };
        if done.send(Done { seq, encoded }).is_err() {
            return;
        }
    }
}

/// Locks a mutex, ignoring poisoning: the guarded state stays consistent across every
/// early return above, so a panicking caller leaves nothing half-done.
fn lock<S>(mutex: &Mutex<S>) -> std::sync::MutexGuard<'_, S> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
