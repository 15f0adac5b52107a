//! WebSocket publisher client: sends frames to `/ws/publish/{stream}`, one binary
//! message each, through a small bounded queue, and reconnects with backoff.
//!
//! Live sources use [`Publisher::try_send`], which drops (and counts) a frame when the
//! queue is full or the relay is unreachable; file sources use [`Publisher::send`],
//! which waits. Nothing is ever queued without bound.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use vswa_protocol::{ControlMessage, Frame};

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
        }
    }
}

/// Counters of a publisher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Frames written to the socket.
    pub sent: u64,
    /// Frames dropped because the queue was full or the relay unreachable.
    pub dropped: u64,
    /// Bytes written (whole frames, headers included).
    pub bytes: u64,
    /// Viewers the relay last reported.
    pub viewers: u32,
    /// Successful reconnections after the first connection.
    pub reconnects: u64,
    /// Whether a connection is up now.
    pub connected: bool,
}

#[derive(Debug, Default)]
struct Shared {
    sent: AtomicU64,
    dropped: AtomicU64,
    bytes: AtomicU64,
    viewers: AtomicU32,
    reconnects: AtomicU64,
    connected: AtomicBool,
}

impl Shared {
    fn snapshot(&self) -> PublisherStats {
        PublisherStats {
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            viewers: self.viewers.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }
}

/// A connected publisher. Dropping it stops the background task.
#[derive(Debug)]
pub struct Publisher {
    tx: mpsc::Sender<Frame>,
    shared: Arc<Shared>,
    task: JoinHandle<Result<(), ClientError>>,
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
        let shared = Arc::new(Shared::default());
        shared.connected.store(true, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let task = tokio::spawn(run(config, backoff, socket, rx, shared.clone()));
        Ok(Publisher { tx, shared, task })
    }

    /// Queues a frame if there is room; otherwise drops it, counts it and returns false.
    pub fn try_send(&self, frame: Frame) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(_) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues a frame, waiting for room (and through reconnects).
    pub async fn send(&self, frame: Frame) -> Result<(), ClientError> {
        if self.tx.send(frame).await.is_err() {
            return Err(ClientError::Lost("publisher stopped".into()));
        }
        Ok(())
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
        let Publisher { tx, shared, task } = self;
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

async fn run(
    config: PublisherConfig,
    mut backoff: Backoff,
    mut socket: ClientSocket,
    mut rx: mpsc::Receiver<Frame>,
    shared: Arc<Shared>,
) -> Result<(), ClientError> {
    loop {
        match pump(&mut socket, &mut rx, &shared).await? {
            Outcome::Done => {
                let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(None)).await;
                return Ok(());
            }
            Outcome::Lost(e) => {
                shared.connected.store(false, Ordering::Relaxed);
                tracing::warn!("connection to relay lost: {e}; reconnecting");
                socket = tokio::select! {
                    res = connect_with_retry(&config.connect, &mut backoff, None, "reconnecting") => res?,
                    // Nothing left to send: no point in reconnecting.
                    () = wait_closed(&mut rx, &shared) => return Ok(()),
                };
                if let Err(e) = first_message(&mut socket).await {
                    if e.is_fatal() {
                        return Err(e);
                    }
                    continue;
                }
                shared.connected.store(true, Ordering::Relaxed);
                shared.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::info!("reconnected to relay");
            }
        }
    }
}

/// Completes when the sending side is gone and the queue is empty. Frames that arrive
/// meanwhile stay queued (the channel is bounded) for after the reconnect.
async fn wait_closed(rx: &mut mpsc::Receiver<Frame>, _shared: &Shared) {
    while !rx.is_closed() || !rx.is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn pump(
    socket: &mut ClientSocket,
    rx: &mut mpsc::Receiver<Frame>,
    shared: &Shared,
) -> Result<Outcome, ClientError> {
    loop {
        tokio::select! {
            frame = rx.recv() => {
                let Some(frame) = frame else { return Ok(Outcome::Done) };
                let bytes = frame.to_bytes();
                let len = bytes.len();
                if let Err(e) = socket.send(Message::Binary(bytes)).await {
                    shared.dropped.fetch_add(1, Ordering::Relaxed);
                    return Ok(Outcome::Lost(ClientError::Lost(e.to_string())));
                }
                shared.sent.fetch_add(1, Ordering::Relaxed);
                shared.bytes.fetch_add(len as u64, Ordering::Relaxed);
            }
            msg = socket.next() => match msg {
                Some(Ok(Message::Text(text))) => match ControlMessage::from_json(text.as_str()) {
                    Ok(ControlMessage::Viewers(v)) => shared.viewers.store(v.count, Ordering::Relaxed),
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
                    return Ok(Outcome::Lost(ClientError::Lost(format!("relay closed the connection {why}"))));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Ok(Outcome::Lost(ClientError::Lost(e.to_string()))),
                None => return Ok(Outcome::Lost(ClientError::Lost("relay closed the connection".into()))),
            }
        }
    }
}
