//! The hub: named streams, each with one publisher, a short ring of recent frames, and
//! any number of viewers that read from the ring at their own pace.
//!
//! A published frame is stored once, already encoded as a WebSocket binary message, and
//! every viewer writes those same bytes (`Bytes` clones share the buffer). A viewer more
//! than its queue depth behind skips to the newest frame and counts the skipped ones as
//! dropped, so a slow viewer never holds back the publisher or anyone else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;
use vswa_protocol::control::EndReason;
use vswa_protocol::{Codec, DecodeError, Flags, Frame, FrameHeader, StreamName, HEADER_LEN};

use vswa_protocol::websocket as ws;

mod direct;
mod stream;
mod viewer;
mod views;

pub use direct::{DirectOptions, DirectSink};
use stream::PublisherInfo;
pub use stream::Stream;
pub use viewer::{Next, ViewerHandle, ViewerKind, ViewerStats};
pub use views::{ClusterView, LagBuckets, PublisherView, StreamInfo, ViewerView};

/// Limits the hub enforces.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Most streams with a publisher at once.
    pub max_streams: usize,
    /// Most streams that have viewers waiting but no publisher. Counted apart from
    /// `max_streams`, so viewers of made-up names cannot lock publishers out.
    pub max_waiting_streams: usize,
    /// Most viewers (WebSocket plus MJPEG) on one stream.
    pub max_viewers_per_stream: usize,
    /// Most viewers on the whole relay.
    pub max_viewers_total: usize,
    /// Frames a viewer may be behind before it skips to the newest one.
    pub viewer_queue: usize,
    /// Largest accepted payload in bytes.
    pub max_payload_len: u32,
    /// Most bytes a stream keeps of its current GOP (frames since the last keyframe of
    /// a codec with delta frames, H.264), so a new viewer starts at a keyframe. A GOP
    /// larger than this is cut from the front; new viewers then wait for the next
    /// keyframe.
    pub max_gop_bytes: usize,
    /// Threads besides the publishing task that write shares of a large fan-out (64
    /// viewers or more) into the viewers' sockets; 0: the publishing task writes all.
    pub fanout_threads: usize,
}

/// One fewer than the cores (the publishing task is the other writer).
pub fn default_fanout_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) - 1
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_streams: 256,
            max_waiting_streams: 256,
            max_viewers_per_stream: 4096,
            max_viewers_total: 8192,
            viewer_queue: 4,
            max_payload_len: 8 * 1024 * 1024,
            max_gop_bytes: 16 * 1024 * 1024,
            fanout_threads: default_fanout_threads(),
        }
    }
}

/// Why the hub refused something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// The stream already has a publisher.
    #[error("stream \"{0}\" already has a publisher")]
    StreamBusy(String),
    /// The relay has `max_streams` streams with a publisher.
    #[error("the relay already carries its limit of {0} streams")]
    TooManyStreams(usize),
    /// `max_waiting_streams` streams already have viewers waiting for a publisher.
    #[error("the relay already has {0} streams waiting for a publisher")]
    TooManyWaiting(usize),
    /// A viewer limit is reached.
    #[error("viewer limit reached: {0}")]
    TooManyViewers(String),
    /// The relay is shutting down.
    #[error("the relay is shutting down")]
    ShuttingDown,
}

/// Why a published message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameRejected {
    /// Not a valid VSWA frame. (The decode error is part of the message, not a
    /// `source`, so an error chain prints it once.)
    #[error("invalid frame: {0}")]
    Invalid(DecodeError),
    /// A JPEG frame whose payload is empty or does not start with the SOI marker.
    #[error("invalid frame: payload is not a JPEG picture (must start with FF D8)")]
    NotJpeg,
}

impl From<DecodeError> for FrameRejected {
    fn from(e: DecodeError) -> Self {
        FrameRejected::Invalid(e)
    }
}

impl FrameRejected {
    /// The control-message error code for this rejection.
    pub fn code(&self) -> vswa_protocol::ErrorCode {
        match self {
            FrameRejected::Invalid(DecodeError::PayloadTooLarge { .. }) => {
                vswa_protocol::ErrorCode::FrameTooLarge
            }
            _ => vswa_protocol::ErrorCode::InvalidFrame,
        }
    }
}

/// A frame as the hub stores it: the WebSocket message bytes, ready to write to every
/// viewer, and the decoded frame whose payload is a slice of the same buffer.
#[derive(Debug)]
pub struct OutFrame {
    /// The complete WebSocket binary message (header + VSWA frame).
    pub ws: Bytes,
    /// The frame; its payload shares `ws`'s buffer.
    pub frame: Frame,
    /// When the relay received it.
    pub arrived: tokio::time::Instant,
    /// Its capture time on the relay's clock (µs since the epoch), when the publisher
    /// reported its clock offset (`clock` message); `None` otherwise.
    pub capture_relay_us: Option<u64>,
}

impl OutFrame {
    /// How old the frame is: the larger of the time since it arrived and, when the
    /// publisher's clock is known, the time since it was captured (`now_us` on the
    /// relay's clock).
    pub fn age(&self, now: tokio::time::Instant, now_us: u64) -> std::time::Duration {
        let queued = now.saturating_duration_since(self.arrived);
        let captured = self
            .capture_relay_us
            .map(|c| std::time::Duration::from_micros(now_us.saturating_sub(c)));
        captured.map_or(queued, |c| c.max(queued))
    }
}

/// One entry of a stream's ring.
#[derive(Debug, Clone)]
pub enum Item {
    /// A frame.
    Frame(Arc<OutFrame>),
    /// The publisher left or the relay is shutting down.
    End(EndReason),
}

pub(super) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these short locks leaves consistent data; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Told when a stream's viewers or publisher on this hub change (the cluster
/// subscribes to remote streams while they have local viewers, and tells the other
/// relays).
pub trait HubObserver: Send + Sync {
    /// A viewer or publisher of `stream` came or left; it now has `local` viewers.
    fn stream_changed(&self, stream: &Arc<Stream>, local: usize);
}

struct HubInner {
    config: HubConfig,
    streams: Mutex<HashMap<StreamName, Arc<Stream>>>,
    total_viewers: AtomicUsize,
    /// Streams whose publisher slot is taken (what `max_streams` limits).
    live_streams: AtomicUsize,
    next_id: AtomicU64,
    shutting_down: AtomicBool,
    observer: std::sync::OnceLock<Arc<dyn HubObserver>>,
    /// Started at the first fan-out large enough to share.
    pool: std::sync::OnceLock<direct::FanoutPool>,
}

impl std::fmt::Debug for HubInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubInner")
            .field("config", &self.config)
            .field("streams", &self.streams)
            .field("observer", &self.observer.get().is_some())
            .finish_non_exhaustive()
    }
}

/// The set of named streams. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl Hub {
    /// An empty hub.
    pub fn new(config: HubConfig) -> Hub {
        Hub {
            inner: Arc::new(HubInner {
                config,
                streams: Mutex::new(HashMap::new()),
                total_viewers: AtomicUsize::new(0),
                live_streams: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                shutting_down: AtomicBool::new(false),
                observer: std::sync::OnceLock::new(),
                pool: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Sets the observer told about viewer counts (once; later calls are ignored).
    pub fn set_observer(&self, observer: Arc<dyn HubObserver>) {
        let _ = self.inner.observer.set(observer);
    }

    fn notify_viewers(&self, stream: &Arc<Stream>, local: usize) {
        if let Some(observer) = self.inner.observer.get() {
            observer.stream_changed(stream, local);
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// A stream, if it exists.
    pub fn stream(&self, name: &StreamName) -> Option<Arc<Stream>> {
        lock(&self.inner.streams).get(name).cloned()
    }

    /// Every stream (unsorted).
    pub fn all(&self) -> Vec<Arc<Stream>> {
        lock(&self.inner.streams).values().cloned().collect()
    }

    /// Statistics of every stream, sorted by name.
    pub fn streams(&self) -> Vec<StreamInfo> {
        let streams: Vec<Arc<Stream>> = lock(&self.inner.streams).values().cloned().collect();
        let mut out: Vec<StreamInfo> = streams.iter().map(|s| s.info()).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Viewers connected to the whole hub.
    pub fn total_viewers(&self) -> usize {
        self.inner.total_viewers.load(Ordering::Relaxed)
    }

    /// The stream `name`, created if missing. A viewer may create one only while fewer
    /// than `max_waiting_streams` streams wait for a publisher; a publisher's limit is
    /// checked when it claims the slot ([`Hub::publish`]).
    fn get_or_create(&self, name: &StreamName, viewer: bool) -> Result<Arc<Stream>, HubError> {
        if self.inner.shutting_down.load(Ordering::Relaxed) {
            return Err(HubError::ShuttingDown);
        }
        let mut streams = lock(&self.inner.streams);
        if let Some(s) = streams.get(name) {
            return Ok(s.clone());
        }
        let live = self.inner.live_streams.load(Ordering::Relaxed);
        let config = &self.inner.config;
        if viewer && streams.len().saturating_sub(live) >= config.max_waiting_streams {
            return Err(HubError::TooManyWaiting(config.max_waiting_streams));
        }
        if !viewer && live >= config.max_streams {
            return Err(HubError::TooManyStreams(config.max_streams));
        }
        let stream = Arc::new(Stream::new(name.clone()));
        streams.insert(name.clone(), stream.clone());
        metrics::gauge!("vswa_streams").set(streams.len() as f64);
        Ok(stream)
    }

    /// Removes a stream that has neither publisher nor viewers.
    fn release(&self, stream: &Arc<Stream>) {
        let mut streams = lock(&self.inner.streams);
        if stream.viewer_total() == 0 && !stream.is_live() {
            if let Some(existing) = streams.get(&stream.name) {
                if Arc::ptr_eq(existing, stream) {
                    streams.remove(&stream.name);
                    metrics::gauge!("vswa_streams").set(streams.len() as f64);
                }
            }
        }
    }

    /// Claims the publisher slot of `name`.
    pub fn publish(
        &self,
        name: &StreamName,
        addr: Option<SocketAddr>,
    ) -> Result<PublisherHandle, HubError> {
        self.claim(name, addr, None)
    }

    /// Claims the publisher slot of `name` for frames of a publisher on the cluster's
    /// relay `origin`. Only an existing stream (one with viewers here) is fed.
    pub fn publish_remote(
        &self,
        stream: &Arc<Stream>,
        origin: String,
    ) -> Result<PublisherHandle, HubError> {
        match self.stream(&stream.name) {
            Some(current) if Arc::ptr_eq(&current, stream) => {}
            _ => return Err(HubError::StreamBusy(stream.name.to_string())),
        }
        self.claim(&stream.name, None, Some(origin))
    }

    fn claim(
        &self,
        name: &StreamName,
        addr: Option<SocketAddr>,
        origin: Option<String>,
    ) -> Result<PublisherHandle, HubError> {
        let stream = self.get_or_create(name, false)?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut ring = lock(&stream.ring);
            if ring.publisher.is_some() {
                drop(ring);
                self.release(&stream);
                return Err(HubError::StreamBusy(name.to_string()));
            }
            let max = self.inner.config.max_streams;
            if self.inner.live_streams.fetch_add(1, Ordering::AcqRel) >= max {
                self.inner.live_streams.fetch_sub(1, Ordering::AcqRel);
                drop(ring);
                self.release(&stream);
                return Err(HubError::TooManyStreams(max));
            }
            ring.publisher = Some(PublisherInfo {
                id,
                addr,
                since: SystemTime::now(),
                origin: origin.clone(),
            });
        }
        metrics::gauge!("vswa_publishers").increment(1.0);
        match &origin {
            None => tracing::info!(stream = %name, ?addr, "publisher connected"),
            Some(relay) => tracing::info!(stream = %name, %relay, "frames from the cluster"),
        }
        self.notify_viewers(&stream, stream.viewer_total());
        Ok(PublisherHandle {
            hub: self.clone(),
            stream,
            id,
            ended: AtomicBool::new(false),
        })
    }

    /// Adds a viewer to `name` (creating the stream if a publisher has not come yet).
    pub fn watch(
        &self,
        name: &StreamName,
        kind: ViewerKind,
        addr: Option<SocketAddr>,
    ) -> Result<ViewerHandle, HubError> {
        let config = &self.inner.config;
        let stream = self.get_or_create(name, true)?;
        let total = self.inner.total_viewers.fetch_add(1, Ordering::Relaxed) + 1;
        let refuse = |msg: String| {
            self.inner.total_viewers.fetch_sub(1, Ordering::Relaxed);
            self.release(&stream);
            Err(HubError::TooManyViewers(msg))
        };
        if total > config.max_viewers_total {
            return refuse(format!(
                "the relay allows {} viewers in all",
                config.max_viewers_total
            ));
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(ViewerStats {
            id,
            kind,
            addr,
            since: SystemTime::now(),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            position: AtomicU64::new(u64::MAX),
            queue: config.viewer_queue.max(1) as u64,
            late: AtomicU64::new(0),
            lag: Default::default(),
        });
        let count = {
            // Under the streams lock, so `release` cannot drop the stream from the map
            // between our lookup and this insert (a viewer of a stream nobody can
            // publish to any more).
            let mut streams = lock(&self.inner.streams);
            match streams.get(name) {
                Some(current) if Arc::ptr_eq(current, &stream) => {}
                None => {
                    streams.insert(name.clone(), stream.clone());
                    metrics::gauge!("vswa_streams").set(streams.len() as f64);
                }
                Some(_) => {
                    // Released and made anew meanwhile: join the new one.
                    drop(streams);
                    self.inner.total_viewers.fetch_sub(1, Ordering::Relaxed);
                    return self.watch(name, kind, addr);
                }
            }
            let mut viewers = lock(&stream.viewers);
            if viewers.len() >= config.max_viewers_per_stream {
                drop(viewers);
                drop(streams);
                return refuse(format!(
                    "stream \"{name}\" allows {} viewers",
                    config.max_viewers_per_stream
                ));
            }
            viewers.insert(id, stats.clone());
            viewers.len()
        };
        stream.send_viewer_count(count);
        self.notify_viewers(&stream, count);
        metrics::gauge!("vswa_viewers").increment(1.0);
        // Start at the newest point a decoder can start (the newest JPEG frame, the
        // latest H.264 keyframe), so a new viewer gets a picture at once; the frames
        // from there to the newest come as one burst.
        let (next, burst_until) = {
            let ring = lock(&stream.ring);
            let oldest = ring.items.front().map_or(ring.next_idx, |(i, _)| *i);
            let start = match (ring.items.back(), ring.last_key) {
                (Some((_, Item::Frame(_))), Some(key)) if key >= oldest => {
                    match ring.items.get((key - oldest) as usize) {
                        Some((_, Item::Frame(_))) => key,
                        // The stream ended and restarted without a keyframe yet.
                        _ => ring.next_idx,
                    }
                }
                // No keyframe kept (a GOP over max_gop_bytes): wait for the next one.
                (Some((_, Item::Frame(_))), _) => ring.next_idx,
                _ => ring.next_idx,
            };
            (start, ring.next_idx - 1)
        };
        stats.position.store(next, Ordering::Relaxed);
        let newest = stream.newest.subscribe();
        Ok(ViewerHandle {
            hub: self.clone(),
            stream,
            stats,
            next,
            burst_until,
            // Whatever comes first, a viewer starts at a point a decoder can start.
            need_key: true,
            newest,
            queue: config.viewer_queue.max(1),
            direct: None,
            parked: false,
        })
    }

    /// Adds a viewer like [`Hub::watch`] whose socket the publishing task writes
    /// frames to directly while the viewer is caught up (write-through); the viewer's
    /// task takes over whatever the socket cannot take at once. The task must read
    /// with [`ViewerHandle::next_direct`] and call [`ViewerHandle::claim`] before any
    /// write of its own.
    pub fn watch_direct(
        &self,
        name: &StreamName,
        kind: ViewerKind,
        addr: Option<SocketAddr>,
        sink: Arc<dyn DirectSink>,
        options: DirectOptions,
    ) -> Result<ViewerHandle, HubError> {
        let mut handle = self.watch(name, kind, addr)?;
        let direct = Arc::new(direct::Direct {
            sink,
            state: std::sync::atomic::AtomicU8::new(direct::OWNED),
            next: AtomicU64::new(handle.next),
            need_key: AtomicBool::new(handle.need_key),
            partial: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            stats: handle.stats.clone(),
            options,
        });
        handle.stream.direct.add(direct.clone());
        handle.direct = Some(direct);
        Ok(handle)
    }

    /// Ends every stream (viewers get `end` with reason `shutdown`) and refuses new ones.
    pub fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
        let streams: Vec<Arc<Stream>> = lock(&self.inner.streams).values().cloned().collect();
        for stream in streams {
            self.push(&stream, Item::End(EndReason::Shutdown));
        }
    }

    /// Whether [`Hub::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Relaxed)
    }

    /// Appends `item` to `stream`'s ring and fans it out.
    fn push(&self, stream: &Stream, item: Item) -> u64 {
        stream.push(item, self)
    }

    /// The fan-out threads, started at first use.
    fn pool(&self) -> &direct::FanoutPool {
        self.inner
            .pool
            .get_or_init(|| direct::FanoutPool::new(self.inner.config.fanout_threads))
    }

    fn ring_len(&self) -> usize {
        self.inner.config.viewer_queue.max(1) + 1
    }

    /// Most bytes the ring keeps to hold the current GOP.
    fn gop_bytes(&self) -> usize {
        self.inner.config.max_gop_bytes
    }
}

/// The publisher slot of a stream; dropping it ends the stream for its viewers.
#[derive(Debug)]
pub struct PublisherHandle {
    hub: Hub,
    stream: Arc<Stream>,
    id: u64,
    /// The last frame carried END_OF_STREAM, so viewers already got `end`; leaving
    /// now does not send it twice.
    ended: AtomicBool,
}

impl PublisherHandle {
    /// The stream.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Gives the slot up without telling viewers the publisher left (it never
    /// published: a publisher refused after claiming the slot).
    pub fn leave_quietly(self) {
        self.ended.store(true, Ordering::Relaxed);
    }

    /// Watches the number of viewers (on every relay of a cluster).
    pub fn viewer_count(&self) -> watch::Receiver<u32> {
        self.stream.viewer_count.subscribe()
    }

    /// Validates one received WebSocket message as a frame and hands it to every viewer.
    pub fn publish(&self, msg: Bytes) -> Result<Arc<OutFrame>, FrameRejected> {
        let out = self.prepare(msg)?;
        self.commit(out.clone());
        Ok(out)
    }

    /// Validates one received WebSocket message as a frame, ready for [`Self::commit`]
    /// (a relay in a cluster hands it to NATS first, before waking its viewers).
    pub fn prepare(&self, msg: Bytes) -> Result<Arc<OutFrame>, FrameRejected> {
        let mut out = prepare(&msg, self.hub.inner.config.max_payload_len)?;
        // Capture time on the relay's clock, once the publisher has said its offset.
        let clock = *self.stream.clock.borrow();
        out.capture_relay_us = clock.map(|c| {
            let at =
                i128::from(out.frame.header().timestamp_us) + i128::from(c.publisher_offset_us);
            u64::try_from(at.max(0)).unwrap_or(u64::MAX)
        });
        Ok(Arc::new(out))
    }

    /// Hands a frame from [`Self::prepare`] to every viewer.
    pub fn commit(&self, out: Arc<OutFrame>) {
        self.publish_prepared(out);
    }

    /// Hands an already validated frame to every viewer.
    pub fn publish_frame(&self, frame: &Frame) -> Arc<OutFrame> {
        let out = Arc::new(prepare_frame(frame));
        self.publish_prepared(out.clone());
        out
    }

    fn publish_prepared(&self, out: Arc<OutFrame>) {
        let len = out.frame.payload().len();
        self.stream.frames_in.fetch_add(1, Ordering::Relaxed);
        self.stream
            .bytes_in
            .fetch_add(len as u64, Ordering::Relaxed);
        {
            lock(&self.stream.ring).note_arrival(Instant::now(), len);
        }
        let end = out.frame.header().flags.contains(Flags::END_OF_STREAM);
        metrics::counter!("vswa_frames_in_total").increment(1);
        metrics::counter!("vswa_bytes_in_total").increment(len as u64);
        self.hub.push(&self.stream, Item::Frame(out));
        self.ended.store(end, Ordering::Relaxed);
        if end {
            self.hub
                .push(&self.stream, Item::End(EndReason::PublisherLeft));
        }
    }
}

impl Drop for PublisherHandle {
    fn drop(&mut self) {
        {
            let mut ring = lock(&self.stream.ring);
            if ring.publisher.as_ref().is_some_and(|p| p.id == self.id) {
                ring.publisher = None;
                ring.recent.clear();
                self.hub.inner.live_streams.fetch_sub(1, Ordering::AcqRel);
                // The next publisher may have another clock.
                self.stream.clock.send_replace(None);
            }
        }
        if !self.hub.is_shutting_down() && !self.ended.load(Ordering::Relaxed) {
            self.hub
                .push(&self.stream, Item::End(EndReason::PublisherLeft));
        }
        metrics::gauge!("vswa_publishers").decrement(1.0);
        tracing::info!(stream = %self.stream.name, "publisher left");
        let local = self.stream.viewer_total();
        self.hub.notify_viewers(&self.stream, local);
        self.hub.release(&self.stream);
    }
}

/// Validates a message and wraps it as a WebSocket binary message for viewers.
fn prepare(msg: &[u8], max_payload_len: u32) -> Result<OutFrame, FrameRejected> {
    let header = FrameHeader::decode(msg, max_payload_len)?;
    let total = header.frame_len();
    if msg.len() < total {
        return Err(DecodeError::Truncated {
            needed: total,
            available: msg.len(),
        }
        .into());
    }
    if msg.len() > total {
        return Err(DecodeError::TrailingBytes {
            extra: msg.len() - total,
        }
        .into());
    }
    let payload = &msg[HEADER_LEN..];
    // The codec's payload rule (docs/PROTOCOL.md): JPEG starts with SOI, H.264 with an
    // Annex B start code; only an END_OF_STREAM frame may be empty.
    match vswa_protocol::check_payload(&header, payload) {
        Ok(()) => {}
        Err(DecodeError::InvalidPayload {
            codec: Codec::Jpeg, ..
        }) => return Err(FrameRejected::NotJpeg),
        Err(e) => return Err(e.into()),
    }
    let mut buf = BytesMut::with_capacity(msg.len() + 10);
    ws::put_header(&mut buf, ws::Opcode::Binary, msg.len());
    let ws_header_len = buf.len();
    buf.extend_from_slice(msg);
    let ws = buf.freeze();
    let frame = Frame::new(header, ws.slice(ws_header_len + HEADER_LEN..));
    Ok(OutFrame {
        ws,
        frame,
        arrived: tokio::time::Instant::now(),
        capture_relay_us: None,
    })
}

fn prepare_frame(frame: &Frame) -> OutFrame {
    let mut buf = BytesMut::with_capacity(frame.encoded_len() + 10);
    ws::put_header(&mut buf, ws::Opcode::Binary, frame.encoded_len());
    let start = buf.len();
    frame.encode(&mut buf);
    let ws = buf.freeze();
    let frame = Frame::new(*frame.header(), ws.slice(start + HEADER_LEN..));
    OutFrame {
        ws,
        frame,
        arrived: tokio::time::Instant::now(),
        capture_relay_us: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg_frame(seq: u64) -> Bytes {
        Frame::new(
            FrameHeader::jpeg(seq, 1000 + seq, 4, 4),
            Bytes::from(vec![0xff, 0xd8, seq as u8, 0xff, 0xd9]),
        )
        .to_bytes()
    }

    fn name(s: &str) -> StreamName {
        StreamName::new(s).unwrap()
    }

    fn seq(item: Item) -> u64 {
        match item {
            Item::Frame(f) => f.frame.header().sequence,
            Item::End(r) => panic!("unexpected end {r:?}"),
        }
    }

    /// An H.264 frame: a keyframe every `gop` frames, Annex B payload.
    fn h264_frame(seq: u64, gop: u64) -> Bytes {
        let key = seq % gop == 0;
        let nal = if key { 0x65 } else { 0x41 };
        Frame::new(
            FrameHeader::h264(seq, 1000 + seq, 16, 16, key),
            Bytes::from(vec![0, 0, 0, 1, nal, seq as u8]),
        )
        .to_bytes()
    }

    fn drain(viewer: &mut ViewerHandle) -> Vec<u64> {
        std::iter::from_fn(|| viewer.try_next()).map(seq).collect()
    }

    #[test]
    fn h264_late_joiner_starts_at_the_latest_keyframe() {
        let hub = Hub::new(HubConfig::default());
        let publisher = hub.publish(&name("h"), None).unwrap();
        for i in 0..25 {
            publisher.publish(h264_frame(i, 10)).unwrap();
        }
        // Mid-GOP (keyframes at 0, 10, 20): the newcomer gets 20..=24 as one burst,
        // starting with the keyframe, although that is more than its queue.
        let mut late = hub.watch(&name("h"), ViewerKind::Ws, None).unwrap();
        assert_eq!(drain(&mut late), [20, 21, 22, 23, 24]);
        assert_eq!(late.stats().dropped(), 0);
        // It then follows the stream frame by frame.
        publisher.publish(h264_frame(25, 10)).unwrap();
        assert_eq!(drain(&mut late), [25]);
        let info = hub.stream(&name("h")).unwrap().info();
        assert_eq!((info.codec.as_str(), info.gop_frames), ("h264", Some(10)));
    }

    #[test]
    fn h264_slow_viewer_skips_to_the_next_keyframe_never_to_a_delta_frame() {
        let hub = Hub::new(HubConfig::default()); // viewer_queue 4
        let publisher = hub.publish(&name("h"), None).unwrap();
        publisher.publish(h264_frame(0, 10)).unwrap();
        let mut slow = hub.watch(&name("h"), ViewerKind::Ws, None).unwrap();
        assert_eq!(drain(&mut slow), [0]);
        // It falls 7 frames behind inside the GOP: no keyframe ahead, so it drops them
        // and waits.
        for i in 1..8 {
            publisher.publish(h264_frame(i, 10)).unwrap();
        }
        assert_eq!(drain(&mut slow), Vec::<u64>::new());
        assert_eq!(slow.stats().dropped(), 7);
        publisher.publish(h264_frame(8, 10)).unwrap();
        publisher.publish(h264_frame(9, 10)).unwrap();
        assert_eq!(drain(&mut slow), Vec::<u64>::new(), "still no keyframe");
        // The next keyframe arrives: it resumes there.
        publisher.publish(h264_frame(10, 10)).unwrap();
        publisher.publish(h264_frame(11, 10)).unwrap();
        assert_eq!(drain(&mut slow), [10, 11]);
        // Far behind with a keyframe ahead: it jumps to that keyframe.
        for i in 12..27 {
            publisher.publish(h264_frame(i, 10)).unwrap();
        }
        assert_eq!(drain(&mut slow), [20, 21, 22, 23, 24, 25, 26]);
    }

    #[test]
    fn a_gop_over_max_gop_bytes_is_cut_and_newcomers_wait_for_a_keyframe() {
        let hub = Hub::new(HubConfig {
            max_gop_bytes: 100,
            ..HubConfig::default()
        });
        let publisher = hub.publish(&name("h"), None).unwrap();
        for i in 0..30 {
            publisher.publish(h264_frame(i, 100)).unwrap();
        }
        let mut late = hub.watch(&name("h"), ViewerKind::Ws, None).unwrap();
        assert_eq!(drain(&mut late), Vec::<u64>::new(), "no keyframe kept");
        publisher.publish(h264_frame(30, 100)).unwrap();
        assert_eq!(
            drain(&mut late),
            Vec::<u64>::new(),
            "a delta frame is not a start"
        );
        publisher.publish(h264_frame(100, 100)).unwrap();
        assert_eq!(drain(&mut late), [100]);
    }

    #[tokio::test]
    async fn viewer_gets_every_frame_when_prompt_and_latest_on_join() {
        let hub = Hub::new(HubConfig::default());
        let mut early = hub.watch(&name("s"), ViewerKind::Ws, None).unwrap();
        let publisher = hub.publish(&name("s"), None).unwrap();
        for i in 0..3 {
            publisher.publish(jpeg_frame(i)).unwrap();
            assert_eq!(seq(early.next().await), i);
        }
        let mut late = hub.watch(&name("s"), ViewerKind::Ws, None).unwrap();
        assert_eq!(
            seq(late.try_next().unwrap()),
            2,
            "late joiner gets the latest frame at once"
        );
        assert!(late.try_next().is_none());
        assert_eq!(*publisher.viewer_count().borrow(), 2);
    }

    #[tokio::test]
    async fn slow_viewer_skips_to_newest_and_counts() {
        let hub = Hub::new(HubConfig {
            viewer_queue: 2,
            ..HubConfig::default()
        });
        let publisher = hub.publish(&name("s"), None).unwrap();
        let mut v = hub.watch(&name("s"), ViewerKind::Ws, None).unwrap();
        for i in 0..10 {
            publisher.publish(jpeg_frame(i)).unwrap();
        }
        assert_eq!(seq(v.next().await), 9);
        assert_eq!(v.stats().dropped(), 9);
        // Within the queue depth nothing is skipped.
        publisher.publish(jpeg_frame(10)).unwrap();
        publisher.publish(jpeg_frame(11)).unwrap();
        assert_eq!(seq(v.next().await), 10);
        assert_eq!(seq(v.next().await), 11);
        assert_eq!(v.stats().dropped(), 9);
    }

    #[tokio::test]
    async fn stats_show_frames_a_stuck_viewer_will_skip() {
        let hub = Hub::new(HubConfig {
            viewer_queue: 2,
            ..HubConfig::default()
        });
        let publisher = hub.publish(&name("s"), None).unwrap();
        let mut v = hub.watch(&name("s"), ViewerKind::Ws, None).unwrap();
        let dropped = |hub: &Hub| hub.streams()[0].viewer_details[0].dropped;
        publisher.publish(jpeg_frame(0)).unwrap();
        publisher.publish(jpeg_frame(1)).unwrap();
        assert_eq!(dropped(&hub), 0, "within the queue nothing is lost");
        for i in 2..10 {
            publisher.publish(jpeg_frame(i)).unwrap();
        }
        assert_eq!(dropped(&hub), 9, "visible before the viewer reads");
        assert_eq!(seq(v.next().await), 9);
        assert_eq!(dropped(&hub), 9, "and not counted twice after");
    }

    #[tokio::test]
    async fn publisher_leaving_sends_end_and_frees_slot() {
        let hub = Hub::new(HubConfig::default());
        let publisher = hub.publish(&name("s"), None).unwrap();
        assert_eq!(
            hub.publish(&name("s"), None).unwrap_err(),
            HubError::StreamBusy("s".into())
        );
        let mut v = hub.watch(&name("s"), ViewerKind::Ws, None).unwrap();
        drop(publisher);
        assert!(matches!(
            v.next().await,
            Item::End(EndReason::PublisherLeft)
        ));
        let again = hub.publish(&name("s"), None).unwrap();
        again.publish(jpeg_frame(0)).unwrap();
        assert_eq!(seq(v.next().await), 0);
        drop(again);
        drop(v);
        assert!(hub.streams().is_empty(), "empty streams are removed");
    }

    #[test]
    fn rejects_bad_frames_and_limits() {
        let hub = Hub::new(HubConfig {
            max_streams: 1,
            max_viewers_per_stream: 1,
            max_payload_len: 100,
            ..HubConfig::default()
        });
        let p = hub.publish(&name("a"), None).unwrap();
        assert!(matches!(
            p.publish(Bytes::from_static(b"garbage")),
            Err(FrameRejected::Invalid(_))
        ));
        let not_jpeg =
            Frame::new(FrameHeader::jpeg(0, 0, 1, 1), Bytes::from_static(b"abc")).to_bytes();
        assert_eq!(p.publish(not_jpeg).unwrap_err(), FrameRejected::NotJpeg);
        let big =
            Frame::new(FrameHeader::jpeg(0, 0, 1, 1), Bytes::from(vec![0xff; 101])).to_bytes();
        assert_eq!(
            p.publish(big).unwrap_err().code(),
            vswa_protocol::ErrorCode::FrameTooLarge
        );
        assert_eq!(
            hub.publish(&name("b"), None).unwrap_err(),
            HubError::TooManyStreams(1)
        );
        let _v = hub.watch(&name("a"), ViewerKind::Mjpeg, None).unwrap();
        assert!(matches!(
            hub.watch(&name("a"), ViewerKind::Ws, None),
            Err(HubError::TooManyViewers(_))
        ));
    }

    /// A socket for write-through tests: takes up to `room` bytes (then `WouldBlock`),
    /// keeps what it took, and logs the order viewers were written in.
    struct Sink {
        id: usize,
        room: AtomicUsize,
        got: Mutex<Vec<u8>>,
        order: Option<Arc<Mutex<Vec<usize>>>>,
    }

    impl Sink {
        fn new(room: usize) -> Arc<Sink> {
            Arc::new(Sink {
                id: 0,
                room: AtomicUsize::new(room),
                got: Mutex::new(Vec::new()),
                order: None,
            })
        }

        fn got(&self) -> Vec<u8> {
            lock(&self.got).clone()
        }
    }

    impl DirectSink for Sink {
        fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
            let room = self.room.load(Ordering::SeqCst);
            if room == 0 {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(room);
            self.room.fetch_sub(n, Ordering::SeqCst);
            lock(&self.got).extend_from_slice(&buf[..n]);
            if let Some(order) = &self.order {
                lock(order).push(self.id);
            }
            Ok(n)
        }
    }

    fn direct_hub(fanout_threads: usize) -> Hub {
        Hub::new(HubConfig {
            fanout_threads,
            ..HubConfig::default()
        })
    }

    fn watch_direct(hub: &Hub, sink: &Arc<Sink>) -> ViewerHandle {
        hub.watch_direct(
            &name("s"),
            ViewerKind::Ws,
            None,
            sink.clone(),
            DirectOptions::default(),
        )
        .unwrap()
    }

    /// Lets the viewer's task park (nothing for it to do), as it does between frames.
    async fn park(viewer: &mut ViewerHandle) {
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            viewer.next_direct(true),
        )
        .await;
        assert!(waited.is_err(), "the task had work: {waited:?}");
    }

    fn take(next: Next) -> Arc<OutFrame> {
        match next {
            Next::Item(Item::Frame(f)) => f,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_caught_up_viewer_gets_each_frame_written_through_not_from_its_task() {
        let hub = direct_hub(0);
        let publisher = hub.publish(&name("s"), None).unwrap();
        let sink = Sink::new(usize::MAX);
        let mut viewer = watch_direct(&hub, &sink);
        park(&mut viewer).await;
        let mut expected = Vec::new();
        for i in 0..5 {
            expected.extend_from_slice(&publisher.publish(jpeg_frame(i)).unwrap().ws);
        }
        assert_eq!(sink.got(), expected, "every frame, whole and in order");
        assert_eq!(viewer.stats().sent.load(Ordering::Relaxed), 5);
        park(&mut viewer).await; // and nothing left over for the task
        assert_eq!(hub.streams()[0].viewer_details[0].frames_sent, 5);
    }

    #[tokio::test]
    async fn a_full_socket_hands_the_frame_to_the_task_which_skips_to_the_newest() {
        let hub = Hub::new(HubConfig {
            viewer_queue: 2,
            fanout_threads: 0,
            ..HubConfig::default()
        });
        let publisher = hub.publish(&name("s"), None).unwrap();
        let sink = Sink::new(0);
        let mut viewer = watch_direct(&hub, &sink);
        park(&mut viewer).await;
        for i in 0..10 {
            publisher.publish(jpeg_frame(i)).unwrap();
        }
        assert!(sink.got().is_empty());
        // Its task got them, latest-wins: the newest, the rest counted as dropped.
        let next = viewer.next_direct(true).await;
        assert_eq!(take(next).frame.header().sequence, 9);
        assert_eq!(viewer.stats().dropped(), 9);
        // Once its socket drains and it parks again, write-through resumes.
        sink.room.store(usize::MAX, Ordering::SeqCst);
        park(&mut viewer).await;
        let out = publisher.publish(jpeg_frame(10)).unwrap();
        assert_eq!(sink.got(), out.ws);
    }

    #[tokio::test]
    async fn a_viewer_waiting_for_a_keyframe_sleeps_through_delta_frames() {
        let hub = Hub::new(HubConfig {
            viewer_queue: 2,
            fanout_threads: 0,
            ..HubConfig::default()
        });
        let publisher = hub.publish(&name("s"), None).unwrap();
        publisher.publish(h264_frame(0, 10)).unwrap();
        let sink = Sink::new(0);
        let mut viewer = watch_direct(&hub, &sink);
        assert_eq!(
            take(viewer.next_direct(true).await).frame.header().sequence,
            0
        );
        // It falls behind inside the GOP (its socket is full): its task drops what is
        // there and parks, waiting for a keyframe.
        for i in 1..6 {
            publisher.publish(h264_frame(i, 10)).unwrap();
        }
        park(&mut viewer).await;
        assert_eq!(viewer.stats().dropped(), 5);
        // The socket drains. The publisher drops the delta frames itself, without
        // waking the task or writing anything.
        sink.room.store(usize::MAX, Ordering::SeqCst);
        let direct = viewer.direct.clone().unwrap();
        for i in 6..10 {
            publisher.publish(h264_frame(i, 10)).unwrap();
            let state = direct.state.load(Ordering::Acquire);
            assert_eq!(state, direct::PARKED, "frame {i} woke the task");
        }
        assert!(sink.got().is_empty());
        assert_eq!(viewer.stats().dropped(), 9);
        // The keyframe is written through, and what follows it.
        let key = publisher.publish(h264_frame(10, 10)).unwrap();
        let next = publisher.publish(h264_frame(11, 10)).unwrap();
        assert_eq!(sink.got(), [&key.ws[..], &next.ws[..]].concat());
        park(&mut viewer).await;
        assert_eq!(viewer.stats().dropped(), 9);
        // (Frame 0 went to the task, which counts what it writes itself.)
        assert_eq!(viewer.stats().sent.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn the_rest_of_a_partial_write_comes_first_and_the_byte_stream_stays_whole() {
        let hub = direct_hub(0);
        let publisher = hub.publish(&name("s"), None).unwrap();
        let sink = Sink::new(10);
        let mut viewer = watch_direct(&hub, &sink);
        park(&mut viewer).await;
        let first = publisher.publish(jpeg_frame(0)).unwrap();
        let second = publisher.publish(jpeg_frame(1)).unwrap();
        assert_eq!(sink.got(), first.ws[..10], "the socket took 10 bytes");
        // The task writes the rest of the first frame, then the second.
        match viewer.next_direct(true).await {
            Next::Rest(frame, done) => {
                assert_eq!((frame.frame.header().sequence, done), (0, 10));
                lock(&sink.got).extend_from_slice(&frame.ws[done..]);
            }
            other => panic!("expected the rest of frame 0, got {other:?}"),
        }
        let next = take(viewer.next_direct(true).await);
        assert_eq!(next.frame.header().sequence, 1);
        lock(&sink.got).extend_from_slice(&next.ws);
        sink.room.store(usize::MAX, Ordering::SeqCst);
        park(&mut viewer).await;
        let third = publisher.publish(jpeg_frame(2)).unwrap();
        let expected: Vec<u8> = [&first.ws[..], &second.ws[..], &third.ws[..]].concat();
        assert_eq!(sink.got(), expected);
        assert_eq!(viewer.stats().dropped(), 0);
    }

    #[tokio::test]
    async fn write_through_starts_at_a_different_viewer_each_frame() {
        let hub = direct_hub(0);
        let publisher = hub.publish(&name("s"), None).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut viewers = Vec::new();
        for id in 0..3 {
            let sink = Arc::new(Sink {
                id,
                room: AtomicUsize::new(usize::MAX),
                got: Mutex::new(Vec::new()),
                order: Some(order.clone()),
            });
            viewers.push(watch_direct(&hub, &sink));
        }
        for viewer in &mut viewers {
            park(viewer).await;
        }
        for i in 0..3 {
            publisher.publish(jpeg_frame(i)).unwrap();
        }
        let order = lock(&order).clone();
        assert_eq!(order.len(), 9);
        let firsts: std::collections::HashSet<usize> =
            order.chunks(3).map(|frame| frame[0]).collect();
        assert_eq!(firsts.len(), 3, "each viewer was first once: {order:?}");
    }

    #[tokio::test]
    async fn a_large_fan_out_is_shared_with_the_fan_out_thread_and_loses_nothing() {
        let hub = direct_hub(1);
        let publisher = hub.publish(&name("s"), None).unwrap();
        let sinks: Vec<Arc<Sink>> = (0..200).map(|_| Sink::new(usize::MAX)).collect();
        let mut viewers: Vec<ViewerHandle> = sinks.iter().map(|s| watch_direct(&hub, s)).collect();
        for viewer in &mut viewers {
            park(viewer).await;
        }
        // Paced like a camera: each frame is out before the next (a fan-out thread
        // that falls --viewer-queue frames behind hands its viewers to their tasks).
        let mut expected = Vec::new();
        for i in 0..20 {
            expected.extend_from_slice(&publisher.publish(jpeg_frame(i)).unwrap().ws);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while sinks.iter().any(|s| s.got().len() < expected.len()) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the fan-out thread fell silent"
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        for (i, sink) in sinks.iter().enumerate() {
            assert_eq!(sink.got(), expected, "viewer {i}");
        }
    }

    #[tokio::test]
    async fn end_wakes_a_parked_direct_viewer() {
        let hub = direct_hub(0);
        let publisher = hub.publish(&name("s"), None).unwrap();
        let sink = Sink::new(usize::MAX);
        let mut viewer = watch_direct(&hub, &sink);
        park(&mut viewer).await;
        drop(publisher);
        assert!(matches!(
            viewer.next_direct(true).await,
            Next::Item(Item::End(EndReason::PublisherLeft))
        ));
    }

    #[tokio::test]
    async fn claiming_the_socket_hands_back_a_half_written_frame_to_finish_first() {
        let hub = direct_hub(0);
        let publisher = hub.publish(&name("s"), None).unwrap();
        let sink = Sink::new(10);
        let mut viewer = watch_direct(&hub, &sink);
        park(&mut viewer).await;
        let first = publisher.publish(jpeg_frame(0)).unwrap();
        // The task wants to write a pong: it must finish frame 0 before that.
        let (frame, done) = viewer.claim().await.expect("the half-written frame");
        assert_eq!((frame.frame.header().sequence, done), (0, 10));
        assert!(Arc::ptr_eq(&frame, &first));
        assert!(viewer.claim().await.is_none(), "handed back once");
    }

    #[tokio::test]
    async fn a_task_that_claimed_its_socket_is_never_written_through() {
        let hub = direct_hub(0);
        let publisher = hub.publish(&name("s"), None).unwrap();
        let sink = Sink::new(usize::MAX);
        let mut viewer = watch_direct(&hub, &sink);
        park(&mut viewer).await;
        assert!(viewer.claim().await.is_none()); // about to write a ping, say
        publisher.publish(jpeg_frame(0)).unwrap();
        assert!(sink.got().is_empty());
        let next = take(viewer.next_direct(true).await);
        assert_eq!(next.frame.header().sequence, 0);
    }

    #[test]
    fn out_frame_shares_one_buffer() {
        let hub = Hub::new(HubConfig::default());
        let p = hub.publish(&name("a"), None).unwrap();
        let msg = jpeg_frame(3);
        let out = p.publish(msg.clone()).unwrap();
        assert_eq!(&out.ws[2..], &msg[..]);
        let ws_range = out.ws.as_ptr() as usize..out.ws.as_ptr() as usize + out.ws.len();
        assert!(ws_range.contains(&(out.frame.payload().as_ptr() as usize)));
    }
}
