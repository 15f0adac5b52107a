//! WebSocket publisher client: sends frames to `/ws/publish/{stream}`, one binary
//! message each, through a small bounded queue, and reconnects with backoff.
//!
//! Live sources use [`Publisher::try_send`], which drops (and counts) a frame when the
//! queue is full or the relay is unreachable; file sources use [`Publisher::send`],
//! which waits. Nothing is ever queued without bound, and with
//! [`PublisherConfig::max_latency`] nothing is sent late: a frame that waited in the
//! queue longer than that is dropped instead.
//!
//! While connected, the publisher keeps its clock in step with the relay's
//! ([`ClockSync`], the `time` exchange of docs/PROTOCOL.md) and reports its offset with
//! `clock`, so the relay and every viewer can put capture timestamps on their own clock.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use vswa_protocol::{ClockSync, Codec, ControlMessage, Flags, Frame};

use crate::backoff::Backoff;
use crate::connect::{connect_with_retry, ClientError, ClientSocket, ConnectOptions};

/// How a publisher connects and behaves.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// URL, token, TLS and timeouts.
    pub connect: ConnectOptions,
    /// Delays between reconnect attempts.
    pub backoff: Backoff,
    /// How long to keep trying to make the *first* connection before giving up.
    pub initial_timeout: Duration,
    /// Frames that may wait for the socket.
    pub queue: usize,
    /// A frame that waited in the queue longer than this is dropped (counted in
    /// `dropped` and `late`) instead of sent late; zero never drops for age.
    pub max_latency: Duration,
    /// Run the `time` exchange with the relay and report the offset with `clock`.
    pub clock_sync: bool,
}

impl PublisherConfig {
    /// Frames that may wait for the socket by default: 200 ms at 30 fps (`vswa-send`
    /// sizes the queue from its `--backlog` and frame rate instead).
    pub const DEFAULT_QUEUE: usize = 6;

    /// Defaults for `url`: 10 s to connect the first time, a queue of
    /// [`DEFAULT_QUEUE`](PublisherConfig::DEFAULT_QUEUE) frames.
    pub fn new(url: impl Into<String>) -> PublisherConfig {
        PublisherConfig {
            connect: ConnectOptions::new(url),
            backoff: Backoff::default(),
            initial_timeout: Duration::from_secs(10),
            queue: PublisherConfig::DEFAULT_QUEUE,
            max_latency: Duration::ZERO,
            clock_sync: true,
        }
    }
}

/// Counters of a publisher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Frames written to the socket.
    pub sent: u64,
    /// Frames dropped because the queue was full or the relay unreachable, and H.264
    /// delta frames dropped because a frame before them was (a decoder could not use
    /// them; sending resumes at the next keyframe).
    pub dropped: u64,
    /// Bytes written (whole frames, headers included).
    pub bytes: u64,
    /// Viewers the relay last reported.
    pub viewers: u32,
    /// Successful reconnections after the first connection.
    pub reconnects: u64,
    /// Whether a connection is up now.
    pub connected: bool,
    /// Of `dropped`, frames that waited in the queue longer than `max_latency`.
    pub late: u64,
    /// Relay clock minus this machine's clock, in microseconds, from the best recent
    /// `time` exchange (`None` before the first one, or with clock sync off).
    pub clock_offset_us: Option<i64>,
    /// Round-trip time of that exchange, in microseconds.
    pub clock_rtt_us: Option<u64>,
}

#[derive(Debug, Default)]
struct Shared {
    sent: AtomicU64,
    dropped: AtomicU64,
    bytes: AtomicU64,
    viewers: AtomicU32,
    reconnects: AtomicU64,
    connected: AtomicBool,
    late: AtomicU64,
    /// `i64::MIN` until synchronised.
    offset_us: AtomicI64,
    rtt_us: AtomicU64,
    /// An H.264 frame was dropped for want of room in the queue: delta frames are not
    /// queued until the next keyframe is. (Losses after the queue are the send task's
    /// [`Link::gop_broken`]: each side drops in its own order.)
    gop_broken: AtomicBool,
    /// A keyframe would let viewers go on sooner (see [`Publisher::take_keyframe_request`]).
    keyframe_wanted: AtomicBool,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            offset_us: AtomicI64::new(i64::MIN),
            ..Shared::default()
        }
    }
}

impl Shared {
    /// `frame` was lost on its way. Returns whether it was H.264, whose following
    /// delta frames a decoder cannot use: then a keyframe is asked for.
    fn lost(&self, frame: &Frame) -> bool {
        let h264 = frame.header().codec == Codec::H264;
        if h264 {
            self.keyframe_wanted.store(true, Ordering::Relaxed);
        }
        h264
    }

    fn snapshot(&self) -> PublisherStats {
        PublisherStats {
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            viewers: self.viewers.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
            clock_offset_us: match self.offset_us.load(Ordering::Relaxed) {
                i64::MIN => None,
                offset => Some(offset),
            },
            clock_rtt_us: match self.offset_us.load(Ordering::Relaxed) {
                i64::MIN => None,
                _ => Some(self.rtt_us.load(Ordering::Relaxed)),
            },
        }
    }
}

/// A connected publisher. Dropping it stops the background task.
#[derive(Debug)]
pub struct Publisher {
    tx: mpsc::Sender<Queued>,
    shared: Arc<Shared>,
    viewers: watch::Receiver<Option<u32>>,
    task: JoinHandle<Result<(), ClientError>>,
}

/// A frame in the send queue, with when it entered it.
#[derive(Debug)]
struct Queued {
    frame: Frame,
    at: Instant,
}

impl Publisher {
    /// Connects (retrying for up to `initial_timeout`) and starts sending in the
    /// background. A refusal (token, stream name, busy stream) fails at once.
    pub async fn connect(config: PublisherConfig) -> Result<Publisher, ClientError> {
        config.connect.validate()?;
        let mut backoff = config.backoff.clone();
        let deadline = Instant::now() + config.initial_timeout;
        let mut socket =
            connect_with_retry(&config.connect, &mut backoff, Some(deadline), "connecting").await?;
        // The relay answers a refused publisher (busy stream, limits) right after the
        // upgrade; read its first message so such refusals fail here.
        match tokio::time::timeout(config.connect.timeout, first_message(&mut socket)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(ClientError::Lost("relay sent no hello".into()));
            }
        }
        let shared = Arc::new(Shared::new());
        shared.connected.store(true, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let (viewers_tx, viewers) = watch::channel(None);
        let link = Link {
            rx,
            shared: shared.clone(),
            viewers: viewers_tx,
            gop_broken: false,
        };
        let task = tokio::spawn(run(config, backoff, socket, link));
        Ok(Publisher {
            tx,
            shared,
            viewers,
            task,
        })
    }

    /// Queues a frame if there is room; otherwise drops it, counts it and returns false.
    ///
    /// H.264 frames are dropped whole GOPs at a time: after a dropped frame, delta
    /// frames are dropped too until the next keyframe, which is asked for (see
    /// [`take_keyframe_request`](Publisher::take_keyframe_request)).
    pub fn try_send(&self, frame: Frame) -> bool {
        let shared = &self.shared;
        let keyframe = frame.header().flags.contains(Flags::KEYFRAME);
        if !keyframe && shared.gop_broken.load(Ordering::Relaxed) {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let at = Instant::now();
        match self.tx.try_send(Queued { frame, at }) {
            Ok(()) => {
                if keyframe {
                    shared.gop_broken.store(false, Ordering::Relaxed);
                }
                true
            }
            Err(e) => {
                if shared.lost(&e.into_inner().frame) {
                    shared.gop_broken.store(true, Ordering::Relaxed);
                }
                shared.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Whether a keyframe was asked for since the last call: an H.264 frame was lost
    /// on the way (dropped, or in a reconnect), and viewers can decode again only from
    /// a keyframe. A sender that encodes forces one (`Pipeline::request_keyframe` in
    /// `vswa-capture`) instead of waiting for the next periodic one.
    pub fn take_keyframe_request(&self) -> bool {
        self.shared.keyframe_wanted.swap(false, Ordering::Relaxed)
    }

    /// Queues a frame, waiting for room (and through reconnects).
    pub async fn send(&self, frame: Frame) -> Result<(), ClientError> {
        let at = Instant::now();
        if self.tx.send(Queued { frame, at }).await.is_err() {
            return Err(ClientError::Lost("publisher stopped".into()));
        }
        Ok(())
    }

    /// The viewer count the relay last reported (`None` before its first report; the
    /// relay sends one right after `hello` and on every change). `changed()` on the
    /// receiver wakes on each report.
    pub fn viewers(&self) -> watch::Receiver<Option<u32>> {
        self.viewers.clone()
    }

    /// The counters now.
    pub fn stats(&self) -> PublisherStats {
        self.shared.snapshot()
    }

    /// True once the background task has stopped (a fatal error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Like [`finish`](Publisher::finish), but gives up when `stop` completes first
    /// (Ctrl-C while the relay is away): the background task is ended at once, frames
    /// still queued are counted as dropped, and the counters so far are returned.
    pub async fn finish_until(
        self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<PublisherStats, ClientError> {
        let shared = self.shared.clone();
        let abort = self.task.abort_handle();
        let queued = self.tx.max_capacity() - self.tx.capacity();
        tokio::select! {
            result = self.finish() => result,
            () = stop => {
                abort.abort();
                shared.dropped.fetch_add(queued as u64, Ordering::Relaxed);
                Ok(PublisherStats { connected: false, ..shared.snapshot() })
            }
        }
    }

    /// Sends what is queued, closes the connection and returns the final counters, or
    /// the fatal error that stopped the publisher.
    pub async fn finish(self) -> Result<PublisherStats, ClientError> {
        let Publisher {
            tx, shared, task, ..
        } = self;
        drop(tx);
        let result = task
            .await
            .map_err(|e| ClientError::Lost(format!("publisher task failed: {e}")))?;
        let publisher_stats = PublisherStats {
            connected: false,
            ..shared.snapshot()
        };
        result.map(|()| publisher_stats)
    }
}

/// Reads until the relay's `hello` (or its refusal).
async fn first_message(socket: &mut ClientSocket) -> Result<(), ClientError> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => match ControlMessage::from_json(text.as_str()) {
                Ok(ControlMessage::Hello(_)) => return Ok(()),
                Ok(ControlMessage::Error(e)) => {
                    return Err(ClientError::Server {
                        code: e.code,
                        message: e.message,
                    })
                }
                _ => {}
            },
            Some(Ok(Message::Close(frame))) => {
                return Err(ClientError::Lost(format!(
                    "relay closed the connection: {}",
                    frame.map(|f| f.reason.to_string()).unwrap_or_default()
                )))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(ClientError::Lost(e.to_string())),
            None => return Err(ClientError::Lost("relay closed the connection".into())),
        }
    }
}

enum Outcome {
    Done,
    Lost(ClientError),
}

/// What the background task shares with the [`Publisher`].
struct Link {
    rx: mpsc::Receiver<Queued>,
    shared: Arc<Shared>,
    viewers: watch::Sender<Option<u32>>,
    /// An H.264 frame taken from the queue was not delivered (too late, a failed
    /// write, a new connection): delta frames are dropped until a keyframe is sent.
    gop_broken: bool,
}

async fn run(
    config: PublisherConfig,
    mut backoff: Backoff,
    mut socket: ClientSocket,
    mut link: Link,
) -> Result<(), ClientError> {
    loop {
        match pump(&mut socket, &mut link, &config).await? {
            Outcome::Done => {
                let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(None)).await;
                return Ok(());
            }
            Outcome::Lost(e) => {
                link.shared.connected.store(false, Ordering::Relaxed);
                link.viewers.send_replace(None);
                tracing::warn!("connection to relay lost: {e}; reconnecting");
                socket = tokio::select! {
                    res = connect_with_retry(&config.connect, &mut backoff, None, "reconnecting") => res?,
                    // Nothing left to send: no point in reconnecting.
                    () = wait_closed(&mut link.rx) => return Ok(()),
                };
                if let Err(e) = first_message(&mut socket).await {
                    if e.is_fatal() {
                        return Err(e);
                    }
                    continue;
                }
                link.shared.connected.store(true, Ordering::Relaxed);
                link.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                // The relay may have ended the stream meanwhile: an H.264 stream starts
                // over at a keyframe.
                link.gop_broken = true;
                link.shared.keyframe_wanted.store(true, Ordering::Relaxed);
                tracing::info!("reconnected to relay");
            }
        }
    }
}

/// Completes when the sending side is gone and the queue is empty. Frames that arrive
/// meanwhile stay queued (the channel is bounded) for after the reconnect.
async fn wait_closed(rx: &mut mpsc::Receiver<Queued>) {
    while !rx.is_closed() || !rx.is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// This machine's clock as a wire timestamp.
fn now_us() -> u64 {
    vswa_protocol::timestamp_us(std::time::SystemTime::now())
}

/// How often the publisher looks whether a `time` request is due.
const CLOCK_POLL: Duration = Duration::from_millis(50);

/// Sends queued frames on one connection and answers what the relay says, until the
/// queue closes (`Done`) or the connection fails (`Lost`; a fatal refusal is `Err`).
async fn pump(
    socket: &mut ClientSocket,
    link: &mut Link,
    config: &PublisherConfig,
) -> Result<Outcome, ClientError> {
    let shared = link.shared.clone();
    // A new connection may be to another relay: synchronise afresh.
    let mut sync = ClockSync::new();
    let mut clock_poll = tokio::time::interval(CLOCK_POLL);
    clock_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lost = |e: String| Ok(Outcome::Lost(ClientError::Lost(e)));
    loop {
        tokio::select! {
            queued = link.rx.recv() => {
                let Some(Queued { frame, at }) = queued else { return Ok(Outcome::Done) };
                if !config.max_latency.is_zero() && at.elapsed() > config.max_latency {
                    // Late for live viewing: never send it.
                    link.gop_broken |= shared.lost(&frame);
                    shared.dropped.fetch_add(1, Ordering::Relaxed);
                    shared.late.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if frame.header().flags.contains(Flags::KEYFRAME) {
                    link.gop_broken = false;
                } else if link.gop_broken {
                    shared.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let bytes = frame.to_bytes();
                let len = bytes.len();
                if let Err(e) = socket.send(Message::Binary(bytes)).await {
                    link.gop_broken |= shared.lost(&frame);
                    shared.dropped.fetch_add(1, Ordering::Relaxed);
                    return lost(e.to_string());
                }
                shared.sent.fetch_add(1, Ordering::Relaxed);
                shared.bytes.fetch_add(len as u64, Ordering::Relaxed);
            }
            _ = clock_poll.tick(), if config.clock_sync => {
                let now = now_us();
                if now >= sync.next_request_at() {
                    let request = sync.request(now).to_json();
                    if let Err(e) = socket.send(Message::Text(request.into())).await {
                        return lost(e.to_string());
                    }
                }
            }
            msg = socket.next() => match msg {
                Some(Ok(Message::Text(text))) => match ControlMessage::from_json(text.as_str()) {
                    Ok(ControlMessage::Viewers(v)) => {
                        shared.viewers.store(v.count, Ordering::Relaxed);
                        link.viewers.send_replace(Some(v.count));
                    }
                    Ok(ControlMessage::Time(t)) if !t.is_request() => {
                        let now = now_us();
                        if sync.on_response(&t, now).is_some() {
                            if let (Some(offset), Some(rtt)) = (sync.offset_us(), sync.rtt_us()) {
                                shared.rtt_us.store(rtt, Ordering::Relaxed);
                                shared.offset_us.store(offset, Ordering::Relaxed);
                            }
                            if let Some(clock) = sync.clock_report() {
                                let msg = ControlMessage::Clock(clock).to_json();
                                if let Err(e) = socket.send(Message::Text(msg.into())).await {
                                    return lost(e.to_string());
                                }
                            }
                            // The burst goes on as soon as an answer is in.
                            if now >= sync.next_request_at() {
                                let request = sync.request(now).to_json();
                                if let Err(e) = socket.send(Message::Text(request.into())).await {
                                    return lost(e.to_string());
                                }
                            }
                        }
                    }
                    Ok(ControlMessage::Error(e)) => {
                        let err = ClientError::Server { code: e.code, message: e.message };
                        if err.is_fatal() {
                            return Err(err);
                        }
                        return Ok(Outcome::Lost(err));
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(frame))) => {
                    let why = frame.map(|f| format!("{} {}", u16::from(f.code), f.reason)).unwrap_or_default();
                    return lost(format!("relay closed the connection {why}"));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return lost(e.to_string()),
                None => return lost("relay closed the connection".into()),
            }
        }
    }
}
