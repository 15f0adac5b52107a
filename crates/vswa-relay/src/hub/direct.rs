//! Write-through fan-out: the task that publishes a frame writes it straight into every
//! caught-up viewer's socket that can take it at once, and hands only the others (a full
//! socket, a partial write, a viewer busy with something else) to their own tasks.
//!
//! Each direct viewer has an ownership flag that says who may write to its socket:
//!
//! - [`PARKED`]: its task waits with nothing to do; the publisher may take the socket.
//! - [`PUBLISHING`]: the publisher is in one non-blocking write to it.
//! - [`OWNED`]: its task has the socket (writing, catching up, or waiting for a frame it
//!   may not get by write-through); the publisher only wakes it.
//!
//! The publisher takes the flag with a compare-and-swap and never waits for it, so a
//! viewer can never hold it up; a task that wants its socket back while the publisher
//! is in the middle of one `try_write` yields until it is done. No lock is held across
//! a write: the list of direct viewers is a copy-on-write snapshot.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::viewer::ViewerStats;
use super::{lock, OutFrame};

/// The task waits; the publisher may write to the socket.
pub(super) const PARKED: u8 = 0;
/// The publisher is writing to the socket.
pub(super) const PUBLISHING: u8 = 1;
/// The viewer's task has the socket.
pub(super) const OWNED: u8 = 2;

/// A viewer's socket that the publishing task may write to without waiting.
pub trait DirectSink: Send + Sync + 'static {
    /// Writes as much of `buf` as the socket takes now; `WouldBlock` when it takes
    /// nothing. Must never wait.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
}

impl DirectSink for tokio::net::TcpStream {
    /// One non-blocking `send` on the socket, without tokio's readiness bookkeeping:
    /// that costs a cache miss per viewer per frame (the readiness word lives in its
    /// own allocation), and it is only a hint. When this `send` finds the socket full,
    /// the kernel marks it so and reports it writable again once it drains; the task's
    /// own writes, which do go through tokio, then find out on their first try.
    #[cfg(target_os = "linux")]
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        // MSG_NOSIGNAL: a closed peer is an EPIPE error, never a SIGPIPE, also in a
        // program that embeds the relay without ignoring SIGPIPE.
        socket2::SockRef::from(self).send_with_flags(buf, libc::MSG_NOSIGNAL)
    }

    #[cfg(not(target_os = "linux"))]
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        tokio::net::TcpStream::try_write(self, buf)
    }
}

/// What a direct viewer asks of write-through.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectOptions {
    /// Frames older than this are never written (the latency ceiling; zero: none).
    pub max_latency: Duration,
}

/// A direct viewer's shared side.
///
/// The fields the fan-out loop reads for every viewer and frame come first and share
/// one cache line (`repr(C)` keeps the order, `align(64)` starts it on a line), so a
/// thousand viewers cost a thousand line fetches, not several thousand.
#[repr(C, align(64))]
pub(super) struct Direct {
    pub(super) sink: Arc<dyn DirectSink>,
    pub(super) stats: Arc<ViewerStats>,
    /// Ring index the viewer takes next, while parked (the publisher advances it).
    pub(super) next: AtomicU64,
    pub(super) options: DirectOptions,
    pub(super) state: AtomicU8,
    /// While parked: the viewer may only start again at a frame a decoder can start
    /// at (it joined, or skipped into the middle of a GOP).
    pub(super) need_key: std::sync::atomic::AtomicBool,
    /// A frame the publisher wrote only part of, and how many bytes it wrote: the task
    /// writes the rest before anything else.
    pub(super) partial: Mutex<Option<(Arc<OutFrame>, usize)>>,
    pub(super) wake: Notify,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("id", &self.stats.id)
            .field("state", &self.state.load(Ordering::Relaxed))
            .field("next", &self.next.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Direct {
    /// Writes frame `idx` through if the viewer is parked, caught up to it and the
    /// socket takes all of it at once; otherwise hands it to the viewer's task. Returns
    /// whether the whole frame was written.
    pub(super) fn write_through(&self, idx: u64, out: &Arc<OutFrame>, late: bool) -> bool {
        if self
            .state
            .compare_exchange(PARKED, PUBLISHING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // The task has the socket; it looks at the ring before it parks again.
            self.wake.notify_one();
            return false;
        }
        let key = {
            let header = out.frame.header();
            header.codec == vswa_protocol::Codec::Jpeg
                || header.flags.contains(vswa_protocol::Flags::KEYFRAME)
        };
        if late || self.next.load(Ordering::Relaxed) != idx {
            self.hand_over();
            return false;
        }
        if !key && self.need_key.load(Ordering::Relaxed) {
            // Waiting for a keyframe: the task would only drop this delta frame and
            // park again, so drop it here and leave the task asleep.
            self.next.store(idx + 1, Ordering::Relaxed);
            self.stats.position.store(idx + 1, Ordering::Relaxed);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("vswa_frames_dropped_total").increment(1);
            self.state.store(PARKED, Ordering::Release);
            return false;
        }
        self.need_key.store(false, Ordering::Relaxed);
        let len = out.ws.len();
        match self.sink.try_write(&out.ws) {
            Ok(n) if n == len => {
                self.next.store(idx + 1, Ordering::Relaxed);
                self.stats.position.store(idx + 1, Ordering::Relaxed);
                self.stats.record_sent(len);
                self.state.store(PARKED, Ordering::Release);
                true
            }
            Ok(n) if n > 0 => {
                // The rest waits for the socket in the viewer's task, which counts the
                // frame once it is all written.
                *lock(&self.partial) = Some((out.clone(), n));
                self.next.store(idx + 1, Ordering::Relaxed);
                self.stats.position.store(idx + 1, Ordering::Relaxed);
                self.hand_over();
                false
            }
            // Full (or broken): the task writes it when the socket can take it, or
            // meets the error itself.
            _ => {
                self.hand_over();
                false
            }
        }
    }

    fn hand_over(&self) {
        self.state.store(OWNED, Ordering::Release);
        self.wake.notify_one();
    }
}

/// A stream's direct viewers, as a copy-on-write list so the fan-out loop runs without
/// a lock (adding or removing a viewer copies the list).
pub(super) struct DirectSet {
    list: Mutex<Arc<[Arc<Direct>]>>,
    /// The newest ring index fanned out (for fan-out threads that fall behind).
    pub(super) newest: Arc<AtomicU64>,
    /// Where the next fan-out starts, so no viewer is always last.
    rotate: AtomicUsize,
}

impl Default for DirectSet {
    fn default() -> Self {
        DirectSet {
            list: Mutex::new(Arc::from(Vec::new())),
            newest: Arc::new(AtomicU64::new(0)),
            rotate: AtomicUsize::new(0),
        }
    }
}

impl std::fmt::Debug for DirectSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectSet")
            .field("viewers", &lock(&self.list).len())
            .finish_non_exhaustive()
    }
}

impl DirectSet {
    pub(super) fn add(&self, direct: Arc<Direct>) {
        let mut list = lock(&self.list);
        let mut copy = Vec::with_capacity(list.len() + 1);
        copy.extend(list.iter().cloned());
        copy.push(direct);
        *list = Arc::from(copy);
    }

    pub(super) fn remove(&self, direct: &Arc<Direct>) {
        let mut list = lock(&self.list);
        let copy: Vec<Arc<Direct>> = list
            .iter()
            .filter(|d| !Arc::ptr_eq(d, direct))
            .cloned()
            .collect();
        *list = Arc::from(copy);
    }

    pub(super) fn snapshot(&self) -> Arc<[Arc<Direct>]> {
        lock(&self.list).clone()
    }

    /// The index the next fan-out starts at, for `len` viewers.
    pub(super) fn start(&self, len: usize) -> usize {
        self.rotate.fetch_add(1, Ordering::Relaxed) % len.max(1)
    }
}

/// One share of a frame's write-through, for a fan-out thread.
pub(super) struct Job {
    pub(super) list: Arc<[Arc<Direct>]>,
    /// The share: positions `from..to` of `list`, written starting at `from + rotate`
    /// and wrapping around inside the share.
    pub(super) from: usize,
    pub(super) to: usize,
    pub(super) rotate: usize,
    pub(super) idx: u64,
    pub(super) out: Arc<OutFrame>,
    pub(super) age: Duration,
    pub(super) lag_seconds: metrics::Histogram,
    /// The stream's newest ring index, and how far behind it a frame may be written:
    /// a fan-out thread that fell that far behind hands its viewers to their tasks,
    /// which skip latest-wins, instead of writing stale frames.
    pub(super) newest: Arc<AtomicU64>,
    pub(super) queue: u64,
}

impl Job {
    /// Writes this share; returns how many viewers got the whole frame.
    pub(super) fn run(&self) -> u64 {
        let len = self.to.saturating_sub(self.from);
        let stale = self.newest.load(Ordering::Acquire).saturating_sub(self.idx) >= self.queue;
        let mut written = 0u64;
        for j in 0..len {
            let Some(direct) = self.list.get(self.from + (self.rotate + j) % len) else {
                break;
            };
            let ceiling = direct.options.max_latency;
            let late = stale || (!ceiling.is_zero() && self.age > ceiling);
            if direct.write_through(self.idx, &self.out, late) {
                direct.stats.record_lag(self.age);
                written += 1;
            }
        }
        if written > 0 {
            metrics::counter!("vswa_frames_out_total").increment(written);
            metrics::counter!("vswa_bytes_out_total").increment(written * self.out.ws.len() as u64);
            // One sample for the viewers written at once (they share the age): a
            // sample per viewer would cost the summary's sample buffer an allocation
            // every 64 viewers.
            self.lag_seconds.record(self.age.as_secs_f64());
        }
        written
    }
}

/// Threads that take shares of large fan-outs, so the copies into a thousand sockets
/// run on more than one core while the publishing task writes its own share. (Tokio
/// tasks would not do: a task spawned or woken from a worker waits in that worker's
/// unstealable next-task slot until the publishing task yields.) Started on first use;
/// the threads end when the hub is dropped.
pub(super) struct FanoutPool {
    senders: Vec<std::sync::mpsc::SyncSender<Job>>,
}

impl std::fmt::Debug for FanoutPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutPool")
            .field("threads", &self.senders.len())
            .finish_non_exhaustive()
    }
}

/// Fan-outs to fewer viewers than this are written by the publishing task alone.
pub(super) const SPLIT_MIN: usize = 64;

/// Jobs a fan-out thread may have queued; past that the publisher writes the share.
const POOL_QUEUE: usize = 8;

impl FanoutPool {
    /// `threads` fan-out threads (none: the publishing task writes everything).
    pub(super) fn new(threads: usize) -> FanoutPool {
        let mut senders = Vec::with_capacity(threads);
        for n in 0..threads {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(POOL_QUEUE);
            let spawned = std::thread::Builder::new()
                .name(format!("vswa-fanout-{n}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job.run();
                    }
                });
            match spawned {
                Ok(_) => senders.push(tx),
                Err(e) => {
                    tracing::warn!("cannot start a fan-out thread ({e}); writing on fewer");
                    break;
                }
            }
        }
        FanoutPool { senders }
    }

    /// Fan-out threads running.
    pub(super) fn threads(&self) -> usize {
        self.senders.len()
    }

    /// Hands share `share` (1..) to its fan-out thread, always the same one for the
    /// same share, so a viewer's frames have one writer; gives the job back when that
    /// thread's queue is full.
    pub(super) fn submit(&self, share: usize, job: Job) -> Result<(), Job> {
        let n = self.senders.len();
        if n == 0 {
            return Err(job);
        }
        match self.senders[(share - 1) % n].try_send(job) {
            Ok(()) => Ok(()),
            Err(std::sync::mpsc::TrySendError::Full(job))
            | Err(std::sync::mpsc::TrySendError::Disconnected(job)) => Err(job),
        }
    }
}
