//! WebSocket sessions after the upgrade: one publisher per stream, many viewers.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use vswa_protocol::control::{EndReason, Hello, Role, Viewers};
use vswa_protocol::{ControlMessage, ErrorCode, StreamName, PROTOCOL_VERSION};

use vswa_protocol::websocket::{self as ws, Opcode};

use crate::cluster::LockError;
use crate::hub::{HubError, Item, Next, OutFrame, ViewerHandle, ViewerKind};
use crate::{ConnInfo, RelayState};

const SERVER: &str = concat!("vswa-relay/", env!("CARGO_PKG_VERSION"));

fn hello(state: &RelayState, role: Role, stream: &StreamName, live: bool) -> ControlMessage {
    ControlMessage::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        role,
        stream: stream.to_string(),
        server: SERVER.into(),
        max_payload_len: max_payload_len(state),
        live,
        max_latency_ms: (!state.config.max_latency.is_zero())
            .then_some(state.config.max_latency.as_millis() as u64),
    })
}

/// The largest payload the relay takes: its own limit, and in a cluster what NATS
/// carries.
fn max_payload_len(state: &RelayState) -> u32 {
    let own = state.config.hub.max_payload_len;
    match state.cluster().and_then(|c| c.max_frame()) {
        Some(frame) => {
            let payload = frame.saturating_sub(vswa_protocol::HEADER_LEN);
            own.min(u32::try_from(payload).unwrap_or(u32::MAX))
        }
        None => own,
    }
}

fn hub_error_code(e: &HubError) -> ErrorCode {
    match e {
        HubError::StreamBusy(_) => ErrorCode::StreamBusy,
        HubError::TooManyStreams(_) | HubError::TooManyWaiting(_) => ErrorCode::TooManyStreams,
        HubError::TooManyViewers(_) => ErrorCode::TooManyViewers,
        HubError::ShuttingDown => ErrorCode::ShuttingDown,
    }
}

/// Sends an `error` control message and closes with the matching close code.
async fn refuse_publisher(socket: &mut WebSocket, code: ErrorCode, message: String) {
    tracing::info!(%code, "closing publisher: {message}");
    metrics::counter!("vswa_rejected_total", "reason" => code.as_str()).increment(1);
    let _ = socket
        .send(Message::Text(
            ControlMessage::error(code, message.clone())
                .to_json()
                .into(),
        ))
        .await;
    let reason: String = message.chars().take(100).collect();
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: code.close_code(),
            reason: reason.into(),
        })))
        .await;
}

pub(crate) async fn publisher(
    mut socket: WebSocket,
    state: Arc<RelayState>,
    name: StreamName,
    info: Option<ConnInfo>,
) {
    let _permit = info.as_ref().map(|i| i.permit.clone());
    let handle = match state.hub.publish(&name, info.as_ref().map(|i| i.peer)) {
        Ok(h) => h,
        Err(e) => return refuse_publisher(&mut socket, hub_error_code(&e), e.to_string()).await,
    };
    // In a cluster the stream's lock too: one publisher on all relays.
    let cluster = match state.cluster() {
        Some(cluster) => match cluster.claim(handle.stream()).await {
            Ok(publisher) => Some(publisher),
            Err(e) => {
                // Nobody published here: viewers waiting here get no `end`.
                handle.leave_quietly();
                let msg = match e {
                    LockError::Busy(relay) => {
                        format!("stream \"{name}\" already has a publisher (on relay {relay})")
                    }
                    LockError::Unavailable(e) => format!("cluster lock unavailable: {e}"),
                };
                return refuse_publisher(&mut socket, ErrorCode::StreamBusy, msg).await;
            }
        },
        None => None,
    };
    let lost = match &cluster {
        Some(c) => futures_util::future::Either::Left(c.lost()),
        None => futures_util::future::Either::Right(std::future::pending()),
    };
    tokio::pin!(lost);
    let hello = hello(&state, Role::Publisher, &name, true);
    if socket
        .send(Message::Text(hello.to_json().into()))
        .await
        .is_err()
    {
        return;
    }
    let mut viewers = handle.viewer_count();
    viewers.mark_changed();
    let shutdown = state.shutdown.wait();
    tokio::pin!(shutdown);
    let mut time_budget = TimeBudget::default();
    let mut ping = tokio::time::interval(state.config.ping_interval);
    ping.tick().await;
    let idle = state.config.idle_timeout;
    let mut deadline = tokio::time::Instant::now() + idle;
    loop {
        tokio::select! {
            msg = socket.recv() => {
                let received_us = now_us();
                deadline = tokio::time::Instant::now() + idle;
                match msg {
                    None => break,
                    Some(Ok(Message::Close(_))) => {
                        // tungstenite queued the answering close (1002 for a code a
                        // peer may not send); write it before dropping the socket.
                        let _ = tokio::time::timeout(Duration::from_secs(2), futures_util::SinkExt::flush(&mut socket)).await;
                        break;
                    }
                    Some(Err(e)) => {
                        match SocketFailure::of(e) {
                            SocketFailure::TooLong => {
                                let msg = format!(
                                    "message exceeds the relay's limit of {} payload bytes",
                                    state.config.hub.max_payload_len
                                );
                                refuse_publisher(&mut socket, ErrorCode::FrameTooLarge, msg).await;
                            }
                            SocketFailure::Violation(code, text) => {
                                tracing::debug!(stream = %name, "publisher broke the WebSocket protocol: {text}");
                                let reason: String = text.chars().take(100).collect();
                                let _ = socket
                                    .send(Message::Close(Some(CloseFrame { code, reason: reason.into() })))
                                    .await;
                            }
                            SocketFailure::Other(text) => {
                                tracing::debug!(stream = %name, "publisher socket error: {text}");
                            }
                        }
                        break;
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        match handle.prepare(bytes) {
                            Ok(out) => {
                                // To NATS first (a queue push), then the local viewers:
                                // other relays' viewers do not wait for this relay's.
                                if let Some(Err(msg)) = cluster.as_ref().map(|c| c.forward(&out)) {
                                    tracing::warn!(stream = %name, "{msg}");
                                    refuse_publisher(&mut socket, ErrorCode::FrameTooLarge, msg).await;
                                    break;
                                }
                                handle.commit(out);
                            }
                            Err(e) => {
                                refuse_publisher(&mut socket, e.code(), e.to_string()).await;
                                break;
                            }
                        }
                    }
                    Some(Ok(Message::Text(text))) => {
                        let parsed = ControlMessage::from_json(text.as_str());
                        match parsed {
                            Ok(ControlMessage::Time(t))
                                if t.is_request() && time_budget.allow(tokio::time::Instant::now()) =>
                            {
                                let answer = time_answer(t.t0, received_us);
                                if socket.send(Message::Text(answer.into())).await.is_err() {
                                    break;
                                }
                            }
                            Ok(ControlMessage::Clock(clock)) => handle.stream().set_publisher_clock(clock),
                            _ => {}
                        }
                        if parsed.is_err()
                            && serde_json::from_str::<serde_json::Value>(text.as_str()).is_err()
                        {
                            refuse_publisher(
                                &mut socket,
                                ErrorCode::BadRequest,
                                "text message is not a JSON control message".into(),
                            )
                            .await;
                            break;
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                let msg = format!("publisher sent nothing for {} s", idle.as_secs());
                refuse_publisher(&mut socket, ErrorCode::IdleTimeout, msg).await;
                break;
            }
            changed = viewers.changed() => {
                if changed.is_ok() {
                    let count = *viewers.borrow_and_update();
                    let msg = ControlMessage::Viewers(Viewers { count });
                    if socket.send(Message::Text(msg.to_json().into())).await.is_err() {
                        break;
                    }
                }
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            () = &mut shutdown => {
                refuse_publisher(&mut socket, ErrorCode::ShuttingDown, "the relay is shutting down".into()).await;
                break;
            }
            relay = &mut lost => {
                let msg = format!("stream \"{name}\" is now published on relay {relay} (this relay was cut off from the cluster)");
                refuse_publisher(&mut socket, ErrorCode::StreamBusy, msg).await;
                break;
            }
        }
    }
}

/// Why a publisher's socket failed, decided from the error's type (axum wraps
/// tungstenite's error), not its text.
enum SocketFailure {
    /// A message over the size limit.
    TooLong,
    /// The peer broke RFC 6455: close with this code (1002, or 1007 for text that is
    /// not UTF-8) and reason.
    Violation(u16, String),
    /// The connection failed (reset, timed out, ...): nothing more to send.
    Other(String),
}

impl SocketFailure {
    fn of(e: axum::Error) -> SocketFailure {
        use tokio_tungstenite::tungstenite::error::{CapacityError, Error};
        let text = e.to_string();
        match e.into_inner().downcast_ref::<Error>() {
            Some(Error::Capacity(CapacityError::MessageTooLong { .. })) => SocketFailure::TooLong,
            // The peer hung up without a close frame: nobody to tell.
            Some(Error::Protocol(
                tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => SocketFailure::Other(text),
            Some(Error::Protocol(p)) => SocketFailure::Violation(1002, p.to_string()),
            Some(Error::Utf8(_)) => {
                SocketFailure::Violation(1007, "text message is not UTF-8".into())
            }
            _ => SocketFailure::Other(text),
        }
    }
}

/// Events the viewer's reader half passes to its writer half.
enum Inbound {
    Ping(bytes::Bytes),
    /// A `time` request: the client's `t0` and the relay clock when it arrived.
    Time {
        t0: u64,
        received_us: u64,
    },
    Close,
    /// The viewer broke the WebSocket protocol (RFC 6455): close with 1002 (or 1009).
    Violation(ws::FrameError),
}

/// How a viewer session ends: with a close frame (code and reason), or by dropping the
/// connection when the socket is beyond writing to.
type CloseWith = Option<(u16, Cow<'static, str>)>;

/// The relay's clock as a wire timestamp.
fn now_us() -> u64 {
    vswa_protocol::timestamp_us(std::time::SystemTime::now())
}

/// The answer to a `time` request that arrived at `received_us` (`t2` read now, just
/// before it is written).
fn time_answer(t0: u64, received_us: u64) -> String {
    ControlMessage::time_response(t0, received_us, now_us().max(received_us)).to_json()
}

/// At most 10 `time` answers per second on one connection (PROTOCOL.md); more
/// requests are ignored.
#[derive(Debug, Default)]
struct TimeBudget {
    window: Option<tokio::time::Instant>,
    used: u32,
}

impl TimeBudget {
    fn allow(&mut self, now: tokio::time::Instant) -> bool {
        match self.window {
            Some(start) if now.duration_since(start) < Duration::from_secs(1) => {
                self.used += 1;
                self.used <= 10
            }
            _ => {
                self.window = Some(now);
                self.used = 1;
                true
            }
        }
    }
}

/// A WebSocket viewer on any connection (TLS, say): its task writes every frame.
pub(crate) async fn viewer<S>(
    io: S,
    state: Arc<RelayState>,
    name: StreamName,
    info: Option<ConnInfo>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    viewer_session(rd, wr, None, state, name, info).await;
}

/// A WebSocket viewer on a plain TCP connection: the publishing task writes frames
/// into its socket directly while it keeps up (write-through, `hub::direct`), and this
/// task writes the rest, the control messages and the close. `read_buf` holds what
/// the HTTP layer read past the upgrade request.
pub(crate) async fn viewer_tcp(
    tcp: tokio::net::TcpStream,
    read_buf: bytes::Bytes,
    state: Arc<RelayState>,
    name: StreamName,
    info: Option<ConnInfo>,
) {
    let tcp = Arc::new(tcp);
    let rd = std::io::Cursor::new(read_buf).chain(crate::shared_tcp::SharedTcp(tcp.clone()));
    let wr = crate::deadline::WriteDeadline::new(
        crate::shared_tcp::SharedTcp(tcp.clone()),
        state.config.stall_timeout,
    );
    viewer_session(rd, wr, Some(tcp), state, name, info).await;
}

async fn viewer_session<R, W>(
    rd: R,
    mut wr: W,
    sink: Option<Arc<dyn crate::hub::DirectSink>>,
    state: Arc<RelayState>,
    name: StreamName,
    info: Option<ConnInfo>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send,
{
    let _permit = info.as_ref().map(|i| i.permit.clone());
    let peer = info.as_ref().map(|i| i.peer);
    let max_latency = state.config.max_latency;
    let watched = match sink {
        Some(sink) => state.hub.watch_direct(
            &name,
            ViewerKind::Ws,
            peer,
            sink,
            crate::hub::DirectOptions { max_latency },
        ),
        None => state.hub.watch(&name, ViewerKind::Ws, peer),
    };
    let mut handle = match watched {
        Ok(h) => h,
        Err(e) => {
            let code = hub_error_code(&e);
            metrics::counter!("vswa_rejected_total", "reason" => code.as_str()).increment(1);
            let msg = ControlMessage::error(code, e.to_string()).to_json();
            let _ = wr
                .write_all(&ws::encode(Opcode::Text, msg.as_bytes()))
                .await;
            let _ = wr
                .write_all(&ws::close(code.close_code(), &e.to_string()))
                .await;
            let _ = wr.shutdown().await;
            return;
        }
    };
    let live = handle.stream().is_live();
    let hello = hello(&state, Role::Viewer, &name, live).to_json();
    if wr
        .write_all(&ws::encode(Opcode::Text, hello.as_bytes()))
        .await
        .is_err()
    {
        return;
    }
    let mut clock = handle.stream().publisher_clock();
    let current = *clock.borrow_and_update();
    if let Some(c) = current {
        if wr
            .write_all(&ws::encode(
                Opcode::Text,
                ControlMessage::Clock(c).to_json().as_bytes(),
            ))
            .await
            .is_err()
        {
            return;
        }
    }
    let mut time_budget = TimeBudget::default();
    let started = Instant::now();
    let last_seen = Arc::new(AtomicU64::new(0));
    let (tx, mut inbound) = mpsc::channel(8);
    let reader = tokio::spawn(read_viewer(rd, tx, last_seen.clone(), started));
    let ping_every = state.config.ping_interval;
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    let stall = state.config.stall_timeout;
    // A viewer waits `end_grace` for a publisher: one that left, or one that never came
    // (so sockets asking for made-up names do not stay forever).
    let mut grace: Option<tokio::time::Instant> =
        (!live).then(|| tokio::time::Instant::now() + state.config.end_grace);
    let mut had_publisher = live;
    let frames_out = metrics::counter!("vswa_frames_out_total");
    // What the kernel may still hold unsent when a write returns (--send-lowat).
    let unsent = state.config.send_lowat as usize;
    let mut pace = Pace::default();
    let lag_seconds = metrics::histogram!("vswa_viewer_lag_seconds", "stream" => name.to_string());
    let bytes_out = metrics::counter!("vswa_bytes_out_total");
    let close: CloseWith = loop {
        let grace_sleep = async {
            match grace {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            event = inbound.recv() => match event {
                Some(Inbound::Ping(payload)) => {
                    if !take_socket(&mut wr, &mut handle, stall, &name, &lag_seconds).await {
                        break None;
                    }
                    if wr.write_all(&ws::encode(Opcode::Pong, &payload)).await.is_err() {
                        break None;
                    }
                }
                Some(Inbound::Time { t0, received_us }) => {
                    if time_budget.allow(Instant::now()) {
                        if !take_socket(&mut wr, &mut handle, stall, &name, &lag_seconds).await {
                            break None;
                        }
                        let answer = time_answer(t0, received_us);
                        if wr.write_all(&ws::encode(Opcode::Text, answer.as_bytes())).await.is_err() {
                            break None;
                        }
                    }
                }
                Some(Inbound::Close) => break Some((1000, "bye".into())),
                Some(Inbound::Violation(e)) => break Some((e.close_code(), e.to_string().into())),
                None => break None,
            },
            // Write-through, except while waiting for a publisher (the first frame
            // ends the grace here) and, with the latency ceiling on, while this
            // viewer's writes have had to wait (the ceiling needs their measure of the
            // link).
            next = handle.next_direct(
                grace.is_none() && (max_latency.is_zero() || !pace.is_fresh(Instant::now()))
            ) => match next {
                Next::Rest(out, done) => {
                    // A frame write-through started: finish it before anything else.
                    match finish_rest(&mut wr, &handle, &out, done, stall, &name, &lag_seconds).await {
                        Some(took) => pace.record(out.ws.len() - done, took, Instant::now()),
                        None => break None,
                    }
                }
                Next::Item(Item::Frame(out)) => {
                    grace = None;
                    had_publisher = true;
                    let age = out.age(Instant::now(), now_us());
                    // When it would arrive: its age now plus the time this viewer's
                    // link takes for it and what may wait in the kernel before it.
                    let arrives_at = age + pace.predict(out.ws.len() + unsent, Instant::now());
                    if !max_latency.is_zero() && (age > max_latency || arrives_at > max_latency) {
                        // Never deliver late: skip to the next decodable frame.
                        handle.skip_late();
                        continue;
                    }
                    handle.stats().record_lag(age);
                    lag_seconds.record(age.as_secs_f64());
                    let mut written = 0;
                    let write_started = Instant::now();
                    match tokio::time::timeout(stall, write_counted(&mut wr, &out.ws, &mut written)).await {
                        Ok(Ok(())) => {
                            pace.record(out.ws.len(), write_started.elapsed(), Instant::now());
                            handle.stats().record_sent(out.ws.len());
                            frames_out.increment(1);
                            bytes_out.increment(out.ws.len() as u64);
                        }
                        Ok(Err(e)) if e.kind() != std::io::ErrorKind::TimedOut => break None,
                        // Over the stall timeout, by this timer or by the connection's
                        // write deadline.
                        Ok(Err(_)) | Err(_) => {
                            tracing::info!(stream = %name, "viewer stalled for {} s; disconnecting", stall.as_secs_f64());
                            metrics::counter!("vswa_rejected_total", "reason" => "stalled").increment(1);
                            close_stalled(&mut wr, &out.ws[written..], stall).await;
                            break None;
                        }
                    }
                }
                Next::Item(Item::End(reason)) => {
                    let end = ControlMessage::End(vswa_protocol::control::End {
                        stream: name.to_string(),
                        reason,
                    })
                    .to_json();
                    if wr.write_all(&ws::encode(Opcode::Text, end.as_bytes())).await.is_err() {
                        break None;
                    }
                    match reason {
                        EndReason::PublisherLeft => {
                            grace = Some(tokio::time::Instant::now() + state.config.end_grace);
                        }
                        // `end` with `shutdown` is the shutting-down notice; the
                        // close code is `shutting_down`'s.
                        _ => break Some((ErrorCode::ShuttingDown.close_code(), "relay shutting down".into())),
                    }
                }
            },
            changed = clock.changed() => {
                let current = *clock.borrow_and_update();
                match (changed, current) {
                    (Ok(()), Some(c)) => {
                        if !take_socket(&mut wr, &mut handle, stall, &name, &lag_seconds).await {
                            break None;
                        }
                        let msg = ControlMessage::Clock(c).to_json();
                        if wr.write_all(&ws::encode(Opcode::Text, msg.as_bytes())).await.is_err() {
                            break None;
                        }
                    }
                    (Ok(()), None) => {}
                    // The stream is gone; `end` comes through the ring.
                    (Err(_), _) => clock = tokio::sync::watch::channel(None).1,
                }
            }
            () = grace_sleep => break Some((1000, if had_publisher {
                "the publisher did not return"
            } else {
                "no publisher came"
            }.into())),
            _ = ping.tick() => {
                let silent = started.elapsed().as_millis() as u64 - last_seen.load(Ordering::Relaxed);
                if silent > 3 * ping_every.as_millis() as u64 {
                    tracing::debug!(stream = %name, "viewer silent; closing");
                    break None;
                }
                if !take_socket(&mut wr, &mut handle, stall, &name, &lag_seconds).await {
                    break None;
                }
                if wr.write_all(&ws::encode(Opcode::Ping, b"")).await.is_err() {
                    break None;
                }
            }
        }
    };
    // Whatever ended the session, write-through stops here (and a frame it left half
    // written is finished, so the close frame lands on a message boundary).
    let whole = take_socket(&mut wr, &mut handle, stall, &name, &lag_seconds).await;
    if let Some((code, reason)) = close.filter(|_| whole) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = wr.write_all(&ws::close(code, &reason)).await;
            let _ = wr.shutdown().await;
        })
        .await;
    }
    reader.abort();
}

/// A viewer's link speed as the relay sees it: seconds per byte of recent frame writes
/// that had to wait for the socket (a write that did not wait says nothing about the
/// link). With the kernel's unsent bytes bounded (`--send-lowat`), a waiting write
/// lasts as long as the link takes to carry it, so this predicts when a frame written
/// now would arrive, which the latency ceiling needs: a frame that would arrive too
/// late is not written.
#[derive(Debug, Default)]
struct Pace {
    secs_per_byte: f64,
    /// When the last measurement was taken.
    measured: Option<Instant>,
}

impl Pace {
    /// Writes shorter than this did not wait for the link.
    const MIN_WAIT: Duration = Duration::from_millis(2);
    /// A measurement older than this is forgotten, so a viewer whose writes stopped
    /// waiting (its link got faster), or whose every frame was predicted late, is
    /// measured again.
    const MAX_AGE: Duration = Duration::from_secs(1);

    /// Whether a recent measurement says this link is slow enough to count.
    fn is_fresh(&self, now: Instant) -> bool {
        self.measured
            .is_some_and(|at| now.duration_since(at) <= Self::MAX_AGE && self.secs_per_byte > 0.0)
    }

    fn record(&mut self, bytes: usize, took: Duration, now: Instant) {
        if bytes == 0 {
            return;
        }
        if took < Self::MIN_WAIT {
            // The bytes fit in the socket's free space: that says nothing about the
            // link (after a pause it is simply empty). A link that got faster shows in
            // shorter waits, or the measurement ages out.
            return;
        }
        let sample = took.as_secs_f64() / bytes as f64;
        self.secs_per_byte = match self.measured {
            Some(_) if self.secs_per_byte > 0.0 => 0.7 * self.secs_per_byte + 0.3 * sample,
            _ => sample,
        };
        self.measured = Some(now);
    }

    /// How long `bytes` take on this link (zero until measured, or once stale).
    fn predict(&self, bytes: usize, now: Instant) -> Duration {
        match self.measured {
            Some(at) if now.duration_since(at) <= Self::MAX_AGE => {
                Duration::from_secs_f64((self.secs_per_byte * bytes as f64).min(3600.0))
            }
            _ => Duration::ZERO,
        }
    }
}

/// Takes a direct viewer's socket back from write-through before the session writes
/// something of its own, first finishing a frame write-through left half written.
/// False when the socket failed or stalled meanwhile (the session ends).
async fn take_socket<W: AsyncWrite + Unpin>(
    wr: &mut W,
    handle: &mut ViewerHandle,
    stall: Duration,
    name: &StreamName,
    lag_seconds: &metrics::Histogram,
) -> bool {
    match handle.claim().await {
        Some((out, done)) => finish_rest(wr, handle, &out, done, stall, name, lag_seconds)
            .await
            .is_some(),
        None => true,
    }
}

/// Writes the rest of a frame write-through left half written (`done` bytes are in the
/// socket) and counts the frame. Returns how long the rest took, or None when the
/// socket failed or stalled (then it was told `stalled` as documented, if it could be).
async fn finish_rest<W: AsyncWrite + Unpin>(
    wr: &mut W,
    handle: &ViewerHandle,
    out: &OutFrame,
    done: usize,
    stall: Duration,
    name: &StreamName,
    lag_seconds: &metrics::Histogram,
) -> Option<Duration> {
    let mut written = done;
    let started = Instant::now();
    match tokio::time::timeout(stall, write_counted(wr, &out.ws, &mut written)).await {
        Ok(Ok(())) => {
            let age = out.age(Instant::now(), now_us());
            handle.stats().record_lag(age);
            lag_seconds.record(age.as_secs_f64());
            handle.stats().record_sent(out.ws.len());
            metrics::counter!("vswa_frames_out_total").increment(1);
            metrics::counter!("vswa_bytes_out_total").increment(out.ws.len() as u64);
            Some(started.elapsed())
        }
        Ok(Err(e)) if e.kind() != std::io::ErrorKind::TimedOut => None,
        Ok(Err(_)) | Err(_) => {
            tracing::info!(stream = %name, "viewer stalled for {} s; disconnecting", stall.as_secs_f64());
            metrics::counter!("vswa_rejected_total", "reason" => "stalled").increment(1);
            close_stalled(wr, &out.ws[written..], stall).await;
            None
        }
    }
}

/// Writes `buf`, counting in `written` the bytes the socket took (so a write cut off by
/// a timeout knows where the frame stopped).
async fn write_counted<W: AsyncWrite + Unpin>(
    wr: &mut W,
    buf: &[u8],
    written: &mut usize,
) -> std::io::Result<()> {
    while *written < buf.len() {
        match wr.write(&buf[*written..]).await? {
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            n => *written += n,
        }
    }
    Ok(())
}

/// How long a stalled viewer's socket gets to take the rest of its current frame, the
/// `stalled` error and the close frame before the relay drops the connection.
const STALLED_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Ends a stalled viewer the documented way when its socket still takes data: the rest
/// of the frame it was cut off in (`rest`), `error` `stalled`, close 4408. Bounded by
/// [`STALLED_CLOSE_WAIT`]; past it the caller drops the connection.
async fn close_stalled<W: AsyncWrite + Unpin>(wr: &mut W, rest: &[u8], stall: Duration) {
    let code = ErrorCode::Stalled;
    let message = format!("viewer read nothing for {} s", stall.as_secs_f64());
    let error = ControlMessage::error(code, message.clone()).to_json();
    let _ = tokio::time::timeout(STALLED_CLOSE_WAIT, async {
        wr.write_all(rest).await?;
        wr.write_all(&ws::encode(Opcode::Text, error.as_bytes()))
            .await?;
        wr.write_all(&ws::close(code.close_code(), &message))
            .await?;
        wr.shutdown().await
    })
    .await;
}

/// Reads what a viewer sends: answers pings, notices close, ignores the rest.
async fn read_viewer<R>(
    mut rd: R,
    tx: mpsc::Sender<Inbound>,
    last_seen: Arc<AtomicU64>,
    started: Instant,
) where
    R: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(4096);
    // Inside a fragmented text or binary message (its fragments are ignored).
    let mut in_message = false;
    loop {
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = tx.send(Inbound::Close).await;
                return;
            }
            Ok(_) => {}
        }
        last_seen.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        loop {
            match ws::decode_client(&mut buf, 64 * 1024) {
                Ok(Some(frame)) => match frame.opcode {
                    Opcode::Continuation | Opcode::Text | Opcode::Binary
                        if (frame.opcode == Opcode::Continuation) != in_message =>
                    {
                        let _ = tx
                            .send(Inbound::Violation(ws::FrameError::BadFragment))
                            .await;
                        return;
                    }
                    Opcode::Continuation | Opcode::Binary => in_message = !frame.fin,
                    Opcode::Text if !frame.fin => in_message = true,
                    Opcode::Ping => {
                        let _ = tx.send(Inbound::Ping(frame.payload)).await;
                    }
                    Opcode::Close => {
                        let _ = tx.send(Inbound::Close).await;
                        return;
                    }
                    Opcode::Text => {
                        let received_us = now_us();
                        if let Ok(ControlMessage::Time(t)) = std::str::from_utf8(&frame.payload)
                            .map_or(Err(()), |text| {
                                ControlMessage::from_json(text).map_err(|_| ())
                            })
                        {
                            if t.is_request() {
                                let _ = tx
                                    .send(Inbound::Time {
                                        t0: t.t0,
                                        received_us,
                                    })
                                    .await;
                            }
                        }
                    }
                    Opcode::Pong => {}
                },
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!("viewer sent invalid WebSocket data: {e}");
                    let _ = tx.send(Inbound::Violation(e)).await;
                    return;
                }
            }
        }
    }
}
