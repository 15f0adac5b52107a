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

use super::direct::{DirectSet, FanoutPool, Job, SPLIT_MIN};
use super::viewer::ViewerStats;
use super::views::{PublisherView, StreamInfo, ViewerView};
use super::{lock, unix_ms, Item, OutFrame};

#[derive(Debug)]
pub(super) struct PublisherInfo {
    pub(super) id: u64,
    pub(super) addr: Option<SocketAddr>,
    pub(super) since: SystemTime,
    /// The relay that holds the publisher, when frames come from another relay of
    /// the cluster (`None`: the publisher is connected here).
    pub(super) origin: Option<String>,
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
    /// Index of the newest item a decoder can start at (a keyframe; every JPEG frame;
    /// an `end`). The ring keeps everything from it on (bounded by bytes), so a new
    /// viewer of an H.264 stream starts at its keyframe.
    pub(super) last_key: Option<u64>,
    /// Bytes of the frames in `items`.
    pub(super) bytes: usize,
    /// Frames from `last_key` to the newest, for `/api/streams` (the GOP so far).
    pub(super) since_key: u64,
    /// Frames between the last two keyframes (the stream's GOP length), once known.
    pub(super) gop: Option<u64>,
}

/// Whether a decoder can start at `item`: a keyframe, any JPEG frame (each one is a
/// whole picture), or an `end`.
pub(super) fn is_key(item: &Item) -> bool {
    match item {
        Item::Frame(f) => {
            let header = f.frame.header();
            header.codec == vswa_protocol::Codec::Jpeg
                || header.flags.contains(vswa_protocol::Flags::KEYFRAME)
        }
        Item::End(_) => true,
    }
}

fn item_bytes(item: &Item) -> usize {
    match item {
        Item::Frame(f) => f.ws.len(),
        Item::End(_) => 0,
    }
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
    /// The last snapshot decoded from a keyframe (H.264), by ring index.
    pub(super) snapshot: Mutex<Option<(u64, bytes::Bytes)>>,
    /// The publisher's last `clock` report as forwarded to viewers (None: no publisher,
    /// or one that sends none).
    pub(super) clock: watch::Sender<Option<Clock>>,
    pub(super) name: StreamName,
    pub(super) ring: Mutex<Ring>,
    pub(super) newest: watch::Sender<u64>,
    /// Viewers here plus `remote_viewers`: what the publisher is told.
    pub(super) viewer_count: watch::Sender<u32>,
    /// Viewers of this stream on the other relays of a cluster.
    pub(super) remote_viewers: std::sync::atomic::AtomicU32,
    pub(super) viewers: Mutex<HashMap<u64, Arc<ViewerStats>>>,
    pub(super) frames_in: AtomicU64,
    pub(super) bytes_in: AtomicU64,
    pub(super) created: SystemTime,
    /// Viewers the publishing task writes to directly (write-through).
    pub(super) direct: DirectSet,
    /// `vswa_viewer_lag_seconds` for this stream, for write-through.
    lag_seconds: std::sync::OnceLock<metrics::Histogram>,
}

pub(super) const RATE_WINDOW: Duration = Duration::from_secs(2);

impl Stream {
    pub(super) fn new(name: StreamName) -> Stream {
        Stream {
            snapshot: Mutex::new(None),
            clock: watch::Sender::new(None),
            name,
            ring: Mutex::new(Ring {
                items: VecDeque::new(),
                next_idx: 1,
                latest_frame: None,
                publisher: None,
                recent: VecDeque::new(),
                last_key: None,
                bytes: 0,
                since_key: 0,
                gop: None,
            }),
            newest: watch::Sender::new(0),
            viewer_count: watch::Sender::new(0),
            remote_viewers: std::sync::atomic::AtomicU32::new(0),
            viewers: Mutex::new(HashMap::new()),
            frames_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            created: SystemTime::now(),
            direct: DirectSet::default(),
            lag_seconds: std::sync::OnceLock::new(),
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

    /// The newest keyframe the ring holds, with its ring index (None when the GOP was
    /// cut or the stream has no frame).
    pub fn latest_keyframe(&self) -> Option<(u64, Arc<OutFrame>)> {
        let ring = lock(&self.ring);
        let key = ring.last_key?;
        let oldest = ring.items.front()?.0;
        match ring
            .items
            .get(usize::try_from(key.checked_sub(oldest)?).ok()?)
        {
            Some((_, Item::Frame(f))) => Some((key, f.clone())),
            _ => None,
        }
    }

    /// A snapshot made from the keyframe at ring index `key`, if one was cached.
    pub fn cached_snapshot(&self, key: u64) -> Option<bytes::Bytes> {
        lock(&self.snapshot)
            .as_ref()
            .filter(|(k, _)| *k == key)
            .map(|(_, jpeg)| jpeg.clone())
    }

    /// Caches the snapshot made from the keyframe at ring index `key`.
    pub fn cache_snapshot(&self, key: u64, jpeg: bytes::Bytes) {
        *lock(&self.snapshot) = Some((key, jpeg));
    }

    /// Tells the publisher's watch the viewer count: `local` viewers here plus those
    /// on other relays.
    pub(super) fn send_viewer_count(&self, local: usize) {
        let remote = self.remote_viewers.load(Ordering::Relaxed);
        let total = u32::try_from(local)
            .unwrap_or(u32::MAX)
            .saturating_add(remote);
        self.viewer_count.send_if_modified(|n| {
            let changed = *n != total;
            *n = total;
            changed
        });
    }

    /// Sets the number of viewers this stream has on the other relays of a cluster;
    /// the publisher's `viewers` messages count them too.
    pub fn set_remote_viewers(&self, count: u32) {
        if self.remote_viewers.swap(count, Ordering::Relaxed) != count {
            self.send_viewer_count(self.viewer_total());
        }
    }

    /// Viewers connected to this relay.
    pub fn local_viewers(&self) -> usize {
        self.viewer_total()
    }

    /// The relay of the cluster that holds this stream's publisher, when it is not
    /// this one (frames come over the cluster).
    pub fn origin(&self) -> Option<String> {
        lock(&self.ring)
            .publisher
            .as_ref()
            .and_then(|p| p.origin.clone())
    }

    /// Whether a publisher is connected to this relay (not one on another relay).
    pub fn has_local_publisher(&self) -> bool {
        lock(&self.ring)
            .publisher
            .as_ref()
            .is_some_and(|p| p.origin.is_none())
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

    /// Appends `item`. The ring keeps the newest `keep` items, and beyond that every
    /// item from the latest keyframe on while they hold at most `gop_bytes` (so a new
    /// viewer of a codec with delta frames can start at a keyframe).
    pub(super) fn push(&self, item: Item, hub: &super::Hub) -> u64 {
        let (keep, gop_bytes) = (hub.ring_len(), hub.gop_bytes());
        let frame = match &item {
            Item::Frame(f) => Some(f.clone()),
            Item::End(_) => None,
        };
        let idx = {
            let mut ring = lock(&self.ring);
            let idx = ring.next_idx;
            ring.next_idx += 1;
            match &item {
                Item::Frame(f) => ring.latest_frame = Some(f.clone()),
                Item::End(_) => ring.latest_frame = None,
            }
            if is_key(&item) {
                if matches!(item, Item::Frame(_)) && ring.last_key.is_some() {
                    ring.gop = Some(ring.since_key.max(1));
                }
                ring.last_key = Some(idx);
                ring.since_key = u64::from(matches!(item, Item::Frame(_)));
            } else {
                ring.since_key += 1;
            }
            ring.bytes += item_bytes(&item);
            ring.items.push_back((idx, item));
            let last_key = ring.last_key.unwrap_or(idx);
            while ring.items.len() > keep {
                let front = ring.items.front().map_or(idx, |(i, _)| *i);
                if front >= last_key && ring.bytes <= gop_bytes {
                    break;
                }
                if let Some((_, old)) = ring.items.pop_front() {
                    ring.bytes -= item_bytes(&old);
                }
            }
            idx
        };
        self.newest.send_replace(idx);
        self.fan_out(idx, frame, hub);
        idx
    }

    /// Write-through: frame `idx` goes straight into the socket of every parked
    /// direct viewer that takes it whole at once, starting at a different viewer each
    /// time; every other direct viewer's task is woken to write it (or whatever it is
    /// behind on) at its own pace. An `end` (`frame` None) wakes them all.
    fn fan_out(&self, idx: u64, frame: Option<Arc<OutFrame>>, hub: &super::Hub) {
        let list = self.direct.snapshot();
        if list.is_empty() {
            return;
        }
        let Some(out) = frame else {
            for direct in list.iter() {
                direct.wake.notify_one();
            }
            return;
        };
        let age = out.age(
            tokio::time::Instant::now(),
            vswa_protocol::timestamp_us(SystemTime::now()),
        );
        let lag_seconds = self
            .lag_seconds
            .get_or_init(|| {
                metrics::histogram!("vswa_viewer_lag_seconds", "stream" => self.name.to_string())
            })
            .clone();
        let n = list.len();
        let rotate = self.direct.start(n);
        self.direct
            .newest
            .store(idx, std::sync::atomic::Ordering::Release);
        let queue = hub.config().viewer_queue.max(1) as u64;
        let job = |from: usize, to: usize| Job {
            list: list.clone(),
            from,
            to,
            rotate,
            idx,
            out: out.clone(),
            age,
            lag_seconds: lag_seconds.clone(),
            newest: self.direct.newest.clone(),
            queue,
        };
        // A large fan-out is cut into fixed shares (the same viewers in each while
        // nobody joins or leaves, so each viewer has one writer and frames stay in
        // order): the fan-out threads take shares 1.., this task writes share 0.
        // Inside each share the start rotates, so no viewer is always last.
        let pool: Option<&FanoutPool> = if n >= SPLIT_MIN {
            Some(hub.pool())
        } else {
            None
        };
        let shares = pool.map_or(1, |p| p.threads() + 1);
        let share = n.div_ceil(shares);
        if let Some(pool) = pool {
            let mut from = share;
            let mut k = 1;
            while from < n {
                let to = (from + share).min(n);
                if let Err(job) = pool.submit(k, job(from, to)) {
                    // Its fan-out thread is far behind: write the share here.
                    job.run();
                }
                from = to;
                k += 1;
            }
        }
        job(0, share.min(n)).run();
    }

    pub(super) fn viewer_total(&self) -> usize {
        lock(&self.viewers).len()
    }

    /// A snapshot of the stream's statistics.
    pub fn info(&self) -> StreamInfo {
        let (publisher, width, height, last_sequence, fps, kbps, newest, codec, gop) = {
            let mut ring = lock(&self.ring);
            let now = Instant::now();
            ring.prune_rate_window(now);
            let (fps, kbps) = rate(&ring.recent, now);
            let header = ring.latest_frame.as_ref().map(|f| *f.frame.header());
            let codec = match header.map(|h| h.codec) {
                Some(vswa_protocol::Codec::Jpeg) => "jpeg",
                Some(vswa_protocol::Codec::H264) => "h264",
                Some(_) => "other",
                None => "",
            };
            let gop = ring.gop;
            (
                ring.publisher.as_ref().map(|p| PublisherView {
                    addr: p.addr.map(|a| a.to_string()),
                    connected_unix_ms: unix_ms(p.since),
                    relay: p.origin.clone(),
                }),
                header.map_or(0, |h| h.width),
                header.map_or(0, |h| h.height),
                header.map(|h| h.sequence),
                fps,
                kbps,
                ring.next_idx - 1,
                codec,
                gop,
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
                late: v.late.load(Ordering::Relaxed),
                lag: {
                    let n = |i: usize| v.lag[i].load(Ordering::Relaxed);
                    super::views::LagBuckets {
                        lt_50ms: n(0),
                        lt_100ms: n(1),
                        lt_250ms: n(2),
                        lt_500ms: n(3),
                        lt_1s: n(4),
                        more: n(5),
                    }
                },
            })
            .collect();
        viewers.sort_by_key(|v| v.id);
        StreamInfo {
            name: self.name.to_string(),
            codec: codec.to_string(),
            gop_frames: gop,
            live: publisher.is_some(),
            // Connected, but nothing arrived over the rate window while nobody
            // watches: an on-demand sender idling (`vswa-send --on-demand`).
            standby: publisher.is_some()
                && viewers.is_empty()
                && fps == 0.0
                && last_sequence.is_some(),
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
            cluster: None,
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
