//! WebSocket viewer client: reads frames from `/ws/watch/{stream}`, reports sequence
//! gaps, and reconnects with backoff when the connection drops.
//!
//! While it is polled, a subscriber keeps its clock in step with the relay's
//! ([`ClockSync`]) and keeps the publisher's `clock`, so each frame's capture time can
//! be put on this machine's clock ([`SubscriberEvent::Frame`]'s `capture_us`): the
//! latency from capture to arrival then holds whatever the three clocks say.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use vswa_protocol::control::{Clock, End, EndReason, Hello};
use vswa_protocol::{ClockSync, ControlMessage, Frame, DEFAULT_MAX_PAYLOAD_LEN};

use crate::backoff::Backoff;
use crate::connect::{connect_with_retry, ClientError, ClientSocket, ConnectOptions};

/// How a subscriber connects and behaves.
#[derive(Debug, Clone)]
pub struct SubscriberConfig {
    /// URL, token, TLS and timeouts.
    pub connect: ConnectOptions,
    /// Delays between reconnect attempts.
    pub backoff: Backoff,
    /// How long to keep trying to make the first connection.
    pub initial_timeout: Duration,
    /// How long to keep trying after losing an established connection (`None`: forever).
    pub reconnect_timeout: Option<Duration>,
    /// Largest payload accepted.
    pub max_payload_len: u32,
    /// Run the `time` exchange with the relay (for `capture_us`).
    pub clock_sync: bool,
}

impl SubscriberConfig {
    /// Defaults for `url`: 10 s to connect the first time, reconnect forever.
    pub fn new(url: impl Into<String>) -> SubscriberConfig {
        SubscriberConfig {
            connect: ConnectOptions::new(url),
            backoff: Backoff::default(),
            initial_timeout: Duration::from_secs(10),
            reconnect_timeout: None,
            max_payload_len: DEFAULT_MAX_PAYLOAD_LEN,
            clock_sync: true,
        }
    }
}

/// What a subscriber yields.
#[derive(Debug, Clone)]
pub enum SubscriberEvent {
    /// The relay's greeting (after each connection).
    Hello(Hello),
    /// A frame.
    Frame {
        /// The frame, as the publisher sent it.
        frame: Frame,
        /// When it arrived, microseconds since the UNIX epoch.
        received_us: u64,
        /// When it was captured, on this machine's clock: its `timestamp_us` moved by
        /// the publisher's offset to the relay and this subscriber's own (`None` until
        /// both are known). `received_us - capture_us` is the capture-to-arrival
        /// latency, right however far apart the clocks are.
        capture_us: Option<u64>,
        /// Frames missing before this one according to the sequence numbers.
        gap: u64,
    },
    /// The publisher left (it may come back) or the relay is shutting down.
    End(End),
    /// The connection was lost; the subscriber will reconnect after `delay`.
    Reconnecting {
        /// Why the connection ended.
        error: ClientError,
        /// Delay before the next attempt.
        delay: Duration,
    },
}

/// A viewer connection that reconnects by itself.
#[derive(Debug)]
pub struct Subscriber {
    config: SubscriberConfig,
    backoff: Backoff,
    socket: Option<ClientSocket>,
    last_sequence: Option<u64>,
    lost_since: Option<Instant>,
    pending_delay: Duration,
    sync: ClockSync,
    publisher_clock: Option<Clock>,
}

impl Subscriber {
    /// Connects, retrying for up to `initial_timeout`; refusals fail at once.
    pub async fn connect(config: SubscriberConfig) -> Result<Subscriber, ClientError> {
        config.connect.validate()?;
        let mut backoff = config.backoff.clone();
        let deadline = Instant::now() + config.initial_timeout;
        let socket =
            connect_with_retry(&config.connect, &mut backoff, Some(deadline), "connecting").await?;
        Ok(Subscriber {
            config,
            backoff,
            socket: Some(socket),
            last_sequence: None,
            lost_since: None,
            pending_delay: Duration::ZERO,
            sync: ClockSync::new(),
            publisher_clock: None,
        })
    }

    /// The next event. Errors are final: a refusal, or no connection within the
    /// reconnect timeout.
    pub async fn next(&mut self) -> Result<SubscriberEvent, ClientError> {
        loop {
            let Some(socket) = self.socket.as_mut() else {
                self.reconnect().await?;
                continue;
            };
            let next = if self.config.clock_sync {
                let now = now_us();
                let due = self.sync.next_request_at();
                if now >= due {
                    let request = self.sync.request(now).to_json();
                    // A failed send shows up as a failed read next.
                    let _ = socket.send(Message::Text(request.into())).await;
                    continue;
                }
                let wait = Duration::from_micros(due - now);
                match tokio::time::timeout(wait, socket.next()).await {
                    Ok(next) => next,
                    Err(_) => continue,
                }
            } else {
                socket.next().await
            };
            let lost = match next {
                Some(Ok(Message::Binary(bytes))) => {
                    let received_us = vswa_protocol::timestamp_us(std::time::SystemTime::now());
                    match Frame::decode_bytes(bytes, self.config.max_payload_len) {
                        Ok(frame) => {
                            let seq = frame.header().sequence;
                            let gap = match self.last_sequence {
                                Some(last) if seq > last => seq - last - 1,
                                _ => 0,
                            };
                            self.last_sequence = Some(seq);
                            let capture_us = self.publisher_clock.and_then(|clock| {
                                self.sync
                                    .capture_to_local(frame.header().timestamp_us, &clock)
                            });
                            return Ok(SubscriberEvent::Frame {
                                frame,
                                received_us,
                                capture_us,
                                gap,
                            });
                        }
                        Err(e) => ClientError::Lost(format!("relay sent an invalid frame: {e}")),
                    }
                }
                Some(Ok(Message::Text(text))) => match ControlMessage::from_json(text.as_str()) {
                    Ok(ControlMessage::Hello(hello)) => {
                        self.lost_since = None;
                        return Ok(SubscriberEvent::Hello(hello));
                    }
                    Ok(ControlMessage::Time(t)) if !t.is_request() => {
                        self.sync.on_response(&t, now_us());
                        continue;
                    }
                    Ok(ControlMessage::Clock(clock)) => {
                        self.publisher_clock = Some(clock);
                        continue;
                    }
                    Ok(ControlMessage::End(end)) => {
                        if end.reason == EndReason::PublisherLeft {
                            // A returning publisher starts its sequence again, and
                            // may run on another clock.
                            self.last_sequence = None;
                            self.publisher_clock = None;
                        }
                        return Ok(SubscriberEvent::End(end));
                    }
                    Ok(ControlMessage::Error(e)) => {
                        let err = ClientError::Server {
                            code: e.code,
                            message: e.message,
                        };
                        if err.is_fatal() || e.code == vswa_protocol::ErrorCode::TooManyViewers {
                            return Err(err);
                        }
                        err
                    }
                    _ => continue,
                },
                Some(Ok(Message::Close(frame))) => ClientError::Lost(format!(
                    "relay closed the connection{}",
                    frame
                        .map(|f| format!(" ({} {})", u16::from(f.code), f.reason))
                        .unwrap_or_default()
                )),
                Some(Ok(_)) => continue,
                Some(Err(e)) => ClientError::Lost(e.to_string()),
                None => ClientError::Lost("relay closed the connection".into()),
            };
            self.socket = None;
            // The next connection may be to another relay.
            self.sync.reset();
            self.publisher_clock = None;
            let since = *self.lost_since.get_or_insert_with(Instant::now);
            if let Some(limit) = self.config.reconnect_timeout {
                if since.elapsed() > limit {
                    return Err(lost);
                }
            }
            let delay = self.backoff.next_delay();
            self.pending_delay = delay;
            return Ok(SubscriberEvent::Reconnecting { error: lost, delay });
        }
    }

    async fn reconnect(&mut self) -> Result<(), ClientError> {
        let deadline = self
            .config
            .reconnect_timeout
            .map(|limit| self.lost_since.unwrap_or_else(Instant::now) + limit);
        // Wait out the delay announced with `Reconnecting` before the first attempt.
        tokio::time::sleep(std::mem::take(&mut self.pending_delay)).await;
        let socket = connect_with_retry(
            &self.config.connect,
            &mut self.backoff,
            deadline,
            "reconnecting",
        )
        .await?;
        self.socket = Some(socket);
        Ok(())
    }

    /// Relay clock minus this machine's clock, in microseconds, and the round-trip
    /// time of the exchange it comes from (`None` before the first exchange).
    pub fn clock(&self) -> Option<(i64, u64)> {
        Some((self.sync.offset_us()?, self.sync.rtt_us()?))
    }

    /// The publisher's `clock` as the relay last forwarded it.
    pub fn publisher_clock(&self) -> Option<Clock> {
        self.publisher_clock
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        if let Some(mut socket) = self.socket.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(None)).await;
        }
    }
}

/// This machine's clock as a wire timestamp.
fn now_us() -> u64 {
    vswa_protocol::timestamp_us(std::time::SystemTime::now())
}
