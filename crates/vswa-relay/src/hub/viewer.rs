//! A viewer's side of a stream: its counters and its handle, which reads the ring at
//! the viewer's own pace and skips to the newest frame when too far behind.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::watch;

use super::direct::{Direct, OWNED, PARKED};
use super::stream::is_key;
use super::{lock, Hub, Item, OutFrame, Stream};

/// What kind of viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewerKind {
    /// A WebSocket viewer.
    Ws,
    /// An MJPEG-over-HTTP client.
    Mjpeg,
}

/// Counters of one viewer.
///
/// The counters every written frame updates come first and share one cache line
/// (`repr(C)` keeps the order, `align(64)` starts it on a line): the write-through
/// loop touches them for every viewer and frame.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct ViewerStats {
    pub(super) sent: AtomicU64,
    pub(super) bytes: AtomicU64,
    /// Ring index the viewer reads next, so stats can show the frames a viewer that is
    /// stuck in a write will skip, before it gets to skip them.
    pub(super) position: AtomicU64,
    /// Frames written, by their age when written: < 50 ms, < 100, < 250, < 500,
    /// < 1000, more ([`LAG_BUCKETS_MS`]).
    pub(super) lag: [AtomicU64; 6],
    pub(super) dropped: AtomicU64,
    /// Frames dropped for being older than the latency ceiling (also in `dropped`).
    pub(super) late: AtomicU64,
    pub(super) id: u64,
    pub(super) queue: u64,
    pub(super) kind: ViewerKind,
    pub(super) addr: Option<SocketAddr>,
    pub(super) since: SystemTime,
}

/// Upper bounds (ms) of the per-viewer lag buckets; the last bucket is "more".
pub const LAG_BUCKETS_MS: [u64; 5] = [50, 100, 250, 500, 1000];

impl ViewerStats {
    /// Records how old a frame was when it was written to this viewer (its lag).
    pub fn record_lag(&self, age: std::time::Duration) {
        let ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        let bucket = LAG_BUCKETS_MS
            .iter()
            .position(|&limit| ms < limit)
            .unwrap_or(LAG_BUCKETS_MS.len());
        self.lag[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Records a frame written to this viewer.
    pub fn record_sent(&self, bytes: usize) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Frames this viewer skipped.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Frames the viewer will skip when it next reads, if it is more than its queue
    /// behind `newest` (the same count `ViewerHandle::try_next` adds then).
    pub(super) fn pending_skip(&self, newest: u64) -> u64 {
        let next = self.position.load(Ordering::Relaxed);
        let behind = (newest + 1).saturating_sub(next);
        if behind > self.queue {
            newest - next
        } else {
            0
        }
    }
}

/// A viewer's place in a stream; dropping it removes the viewer.
#[derive(Debug)]
pub struct ViewerHandle {
    pub(super) hub: Hub,
    pub(super) stream: Arc<Stream>,
    pub(super) stats: Arc<ViewerStats>,
    pub(super) next: u64,
    /// A new viewer gets the frames from its starting keyframe up to this index without
    /// skipping (the GOP burst).
    pub(super) burst_until: u64,
    /// Skipped into the middle of a GOP: skip delta frames until the next keyframe.
    pub(super) need_key: bool,
    pub(super) newest: watch::Receiver<u64>,
    pub(super) queue: usize,
    /// The write-through side of a viewer added with [`Hub::watch_direct`].
    pub(super) direct: Option<Arc<Direct>>,
    /// The task gave the socket to write-through and has not taken it back yet.
    pub(super) parked: bool,
}

/// What a direct viewer's task writes next ([`ViewerHandle::next_direct`]).
#[derive(Debug)]
pub enum Next {
    /// An item from the ring.
    Item(Item),
    /// The rest of a frame write-through wrote only part of: the frame, and how many
    /// of its bytes are already in the socket. Nothing else may be written first.
    Rest(Arc<OutFrame>, usize),
}

impl ViewerHandle {
    /// The stream.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// This viewer's counters.
    pub fn stats(&self) -> &Arc<ViewerStats> {
        &self.stats
    }

    /// The next item for this viewer, waiting for one if needed. When the viewer is
    /// more than its queue depth behind, older frames are skipped and counted.
    pub async fn next(&mut self) -> Item {
        loop {
            // Mark the current version seen before looking, so a push after the look
            // still wakes us.
            self.newest.borrow_and_update();
            if let Some(item) = self.try_next() {
                return item;
            }
            if self.newest.changed().await.is_err() {
                // The sender lives in the stream we hold; this cannot happen.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Takes the socket back from write-through; a direct viewer's task calls it before
    /// it writes anything of its own (a ping, a pong, a close). Waits only while the
    /// publisher is inside one non-blocking write to this viewer. Returns the frame
    /// write-through left half written, with the bytes already in the socket: the task
    /// must write its rest before anything else.
    #[must_use = "the rest of a half-written frame must be written first"]
    pub async fn claim(&mut self) -> Option<(Arc<OutFrame>, usize)> {
        let direct = self.direct.as_ref()?;
        if !self.parked {
            return None;
        }
        loop {
            match direct
                .state
                .compare_exchange(PARKED, OWNED, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) | Err(OWNED) => break,
                // PUBLISHING: the publisher is in a `try_write`; it never waits.
                Err(_) => tokio::task::yield_now().await,
            }
        }
        self.parked = false;
        // Write-through may have taken frames meanwhile.
        self.next = direct.next.load(Ordering::Acquire);
        self.need_key = direct.need_key.load(Ordering::Relaxed);
        lock(&direct.partial).take()
    }

    /// The next thing a direct viewer's task writes: the rest of a frame write-through
    /// wrote only part of, or the next ring item (skipping like [`Self::next`]). While
    /// there is none, the task parks: with `write_through` the publisher then writes
    /// new frames to the socket itself and wakes the task only for what the socket
    /// cannot take at once; without it (the latency ceiling needs the task's measure of
    /// the link, say) the publisher only wakes the task. A viewer added with
    /// [`Hub::watch`] just gets [`Self::next`].
    pub async fn next_direct(&mut self, write_through: bool) -> Next {
        let Some(direct) = self.direct.clone() else {
            return Next::Item(self.next().await);
        };
        loop {
            if let Some((frame, written)) = self.claim().await {
                return Next::Rest(frame, written);
            }
            if let Some(item) = self.try_next() {
                return Next::Item(item);
            }
            // Caught up: park. A wake-up between here and the wait is kept by the
            // `Notify` (a stored permit), so nothing pushed meanwhile is missed.
            direct.next.store(self.next, Ordering::Relaxed);
            direct.need_key.store(self.need_key, Ordering::Relaxed);
            self.parked = true;
            let state = if write_through { PARKED } else { OWNED };
            direct.state.store(state, Ordering::Release);
            direct.wake.notified().await;
        }
    }

    /// Drops the frame just taken as too late (the latency ceiling): counted, and the
    /// viewer resumes at the next point a decoder can start (for JPEG the next frame,
    /// for H.264 the next keyframe).
    pub fn skip_late(&mut self) {
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        self.stats.late.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("vswa_frames_dropped_total").increment(1);
        metrics::counter!("vswa_frames_late_total").increment(1);
        self.need_key = true;
    }

    /// The next item if one is ready.
    ///
    /// A viewer more than its queue behind skips to the newest item a decoder can start
    /// at: the newest frame for JPEG, the newest keyframe for H.264. When the only
    /// items ahead are delta frames of the GOP it is in, it skips them all and waits
    /// for the next keyframe, never handing out a delta frame it cannot decode.
    pub fn try_next(&mut self) -> Option<Item> {
        let ring = lock(&self.stream.ring);
        let newest = ring.next_idx - 1;
        if self.next > newest {
            return None;
        }
        let oldest = ring.items.front().map_or(newest + 1, |(i, _)| *i);
        let behind = newest - self.next + 1;
        let mut want = self.next.max(oldest);
        if want > self.next && !self.need_key {
            // Items we never saw fell out of the ring: resume only at a keyframe.
            self.need_key = true;
        }
        let too_far = behind as usize > self.queue && self.next > self.burst_until;
        if too_far {
            self.need_key = true;
        }
        if self.need_key {
            // Too far behind: the newest keyframe. Otherwise the first one from here, so
            // nothing decodable is skipped.
            let mut ahead = ring.items.iter().filter(|(i, _)| *i >= want);
            let key = if too_far {
                ahead.rfind(|(_, item)| is_key(item))
            } else {
                ahead.find(|(_, item)| is_key(item))
            }
            .map(|(i, _)| *i);
            match key {
                Some(key) => {
                    // From the keyframe on, the frames already here come as one burst.
                    want = key;
                    self.need_key = false;
                    self.burst_until = newest;
                }
                None => {
                    // Nothing decodable yet: drop what is there and wait.
                    let skipped = newest + 1 - self.next;
                    self.stats.dropped.fetch_add(skipped, Ordering::Relaxed);
                    metrics::counter!("vswa_frames_dropped_total").increment(skipped);
                    self.next = newest + 1;
                    self.stats.position.store(self.next, Ordering::Relaxed);
                    return None;
                }
            }
        }
        let skipped = want - self.next;
        if skipped > 0 {
            self.stats.dropped.fetch_add(skipped, Ordering::Relaxed);
            metrics::counter!("vswa_frames_dropped_total").increment(skipped);
        }
        let pos = (want - oldest) as usize;
        let item = ring.items.get(pos).map(|(_, item)| item.clone());
        self.next = want + 1;
        self.stats.position.store(self.next, Ordering::Relaxed);
        item
    }
}

impl Drop for ViewerHandle {
    fn drop(&mut self) {
        if let Some(direct) = &self.direct {
            self.stream.direct.remove(direct);
            // A fan-out thread may still hold this viewer in a share: make sure it
            // never writes to a socket whose session is gone (waiting out one
            // `try_write` at most).
            while direct
                .state
                .compare_exchange(PARKED, OWNED, Ordering::AcqRel, Ordering::Acquire)
                == Err(super::direct::PUBLISHING)
            {
                std::thread::yield_now();
            }
        }
        let count = {
            let mut viewers = lock(&self.stream.viewers);
            viewers.remove(&self.stats.id);
            viewers.len()
        };
        self.stream.send_viewer_count(count);
        self.hub.inner.total_viewers.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("vswa_viewers").decrement(1.0);
        self.hub.release(&self.stream);
        self.hub.notify_viewers(&self.stream, count);
    }
}
