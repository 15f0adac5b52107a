//! One stream: its ring of recent frames (each stored once, ready to write), the
//! publisher slot, the viewer registry and the arrival-rate window.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use vswa_protocol::control::Clock;
use vswa_protocol::StreamName;

use super::viewer::ViewerStats;
use super::views::{PublisherView, StreamInfo, ViewerView};
use super::{lock, unix_ms, Item, OutFrame};

#[derive(Debug)]
pub(super) struct PublisherInfo {
    pub(super) id: u64,
    pub(super) addr: Option<SocketAddr>,
    pub(super) since: SystemTime,
}

#[derive(Debug)]
pub(super) struct Ring {
    pub(super) items: VecDeque<(u64, Item)>,
    /// Index the next pushed item gets; items are numbered from 1.
    pub(super) next_idx: u64,
    pub(super) latest_frame: Option<Arc<OutFrame>>,
    pub(super) publisher: Option<PublisherInfo>,
    /// Arrival times and sizes of recent frames, for fps and bitrate.
    pub(super) recent: VecDeque<(Instant, usize)>,
}

impl Ring {
    /// Records a frame of `len` bytes arriving at `now` in the rate window.
    pub(super) fn note_arrival(&mut self, now: Instant, len: usize) {
        self.recent.push_back((now, len));
        self.prune_rate_window(now);
    }

    /// Forgets arrivals older than [`RATE_WINDOW`].
    pub(super) fn prune_rate_window(&mut self, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.recent.pop_front();
        }
    }
}

/// Shared state of one stream.
#[derive(Debug)]
pub struct Stream {
    /// The publisher's last `clock` report as forwarded to viewers (None: no publisher,
    /// or one that sends none).
    pub(super) clock: watch::Sender<Option<Clock>>,
    pub(super) name: StreamName,
    pub(super) ring: Mutex<Ring>,
    pub(super) newest: watch::Sender<u64>,
    pub(super) viewer_count: watch::Sender<u32>,
    pub(super) viewers: Mutex<HashMap<u64, Arc<ViewerStats>>>,
    pub(super) frames_in: AtomicU64,
    pub(super) bytes_in: AtomicU64,
    pub(super) created: SystemTime,
}

pub(super) const RATE_WINDOW: Duration = Duration::from_secs(2);

impl Stream {
    pub(super) fn new(name: StreamName) -> Stream {
        Stream {
            clock: watch::Sender::new(None),
            name,
            ring: Mutex::new(Ring {
                items: VecDeque::new(),
                next_idx: 1,
                latest_frame: None,
                publisher: None,
                recent: VecDeque::new(),
            }),
            newest: watch::Sender::new(0),
            viewer_count: watch::Sender::new(0),
            viewers: Mutex::new(HashMap::new()),
            frames_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            created: SystemTime::now(),
        }
    }

    /// Records the publisher's `clock` report; viewers are told when it moved by more
    /// than [`Clock::THRESHOLD_US`] from the last one they were sent.
    pub fn set_publisher_clock(&self, clock: Clock) {
        self.clock.send_if_modified(|last| match last {
            Some(prev) if !clock.differs_from(prev) => false,
            _ => {
                *last = Some(clock);
                true
            }
        });
    }

    /// The publisher's clock report as forwarded to viewers, to watch for changes.
    pub fn publisher_clock(&self) -> watch::Receiver<Option<Clock>> {
        self.clock.subscribe()
    }

    /// The stream's name.
    pub fn name(&self) -> &StreamName {
        &self.name
    }

    /// The newest frame, if the stream has a publisher and it has sent one.
    pub fn latest_frame(&self) -> Option<Arc<OutFrame>> {
        lock(&self.ring).latest_frame.clone()
    }

    /// Whether a publisher is connected.
    pub fn is_live(&self) -> bool {
        lock(&self.ring).publisher.is_some()
    }

    pub(super) fn push(&self, item: Item, keep: usize) -> u64 {
        let idx = {
            let mut ring = lock(&self.ring);
            let idx = ring.next_idx;
            ring.next_idx += 1;
            match &item {
                Item::Frame(f) => ring.latest_frame = Some(f.clone()),
                Item::End(_) => ring.latest_frame = None,
            }
            ring.items.push_back((idx, item));
            while ring.items.len() > keep {
                ring.items.pop_front();
            }
            idx
        };
        self.newest.send_replace(idx);
        idx
    }

    pub(super) fn viewer_total(&self) -> usize {
        lock(&self.viewers).len()
    }

    /// A snapshot of the stream's statistics.
    pub fn info(&self) -> StreamInfo {
        let (publisher, width, height, last_sequence, fps, kbps, newest) = {
            let mut ring = lock(&self.ring);
            let now = Instant::now();
            ring.prune_rate_window(now);
            let (fps, kbps) = rate(&ring.recent, now);
            let header = ring.latest_frame.as_ref().map(|f| *f.frame.header());
            (
                ring.publisher.as_ref().map(|p| PublisherView {
                    addr: p.addr.map(|a| a.to_string()),
                    connected_unix_ms: unix_ms(p.since),
                }),
                header.map_or(0, |h| h.width),
                header.map_or(0, |h| h.height),
                header.map(|h| h.sequence),
                fps,
                kbps,
                ring.next_idx - 1,
            )
        };
        let mut viewers: Vec<ViewerView> = lock(&self.viewers)
            .values()
            .map(|v| ViewerView {
                id: v.id,
                kind: v.kind,
                addr: v.addr.map(|a| a.to_string()),
                connected_unix_ms: unix_ms(v.since),
                frames_sent: v.sent.load(Ordering::Relaxed),
                bytes_sent: v.bytes.load(Ordering::Relaxed),
                dropped: v.dropped.load(Ordering::Relaxed) + v.pending_skip(newest),
            })
            .collect();
        viewers.sort_by_key(|v| v.id);
        StreamInfo {
            name: self.name.to_string(),
            live: publisher.is_some(),
            publisher,
            width,
            height,
            fps,
            bitrate_kbps: kbps,
            frames: self.frames_in.load(Ordering::Relaxed),
            bytes: self.bytes_in.load(Ordering::Relaxed),
            last_sequence,
            viewers: viewers.len(),
            created_unix_ms: unix_ms(self.created),
            viewer_details: viewers,
        }
    }
}

/// Frames per second and kbit/s over the arrival window.
pub(super) fn rate(recent: &VecDeque<(Instant, usize)>, now: Instant) -> (f64, f64) {
    let Some((first, _)) = recent.front() else {
        return (0.0, 0.0);
    };
    let span = now.duration_since(*first).as_secs_f64().max(0.25);
    let n = recent.len() as f64;
    let bytes: usize = recent.iter().map(|(_, b)| b).sum();
    let round = |x: f64| (x * 10.0).round() / 10.0;
    (round(n / span), round(bytes as f64 * 8.0 / 1000.0 / span))
}
