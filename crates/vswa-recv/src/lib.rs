//! `vswa-recv` as a library: watch one VSWA stream (JPEG or H.264) and save, record,
//! pipe or display it while measuring fps, capture-to-receive latency, drops and bitrate.
//!
//! [`run`] is the whole program minus argument parsing; the binary is a thin CLI over it.
//! The WebSocket client with reconnect and backoff is
//! [`vswa_client::Subscriber`]; the wire and recording formats are in
//! `vswa-protocol`. This crate adds the outputs ([`sink`]), the statistics ([`stats`]),
//! which H.264 frames a decoder can use ([`gate`]) and the `--display` window (`display`
//! feature). The `h264` feature decodes H.264 for `--out-dir` and `--display`.
#![warn(missing_docs)]

pub mod args;
#[cfg(feature = "display")]
pub mod display;
pub mod gate;
mod output_error;
pub mod sink;
pub mod stats;

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use vswa_client::connect::{stream_route, Role};
use vswa_client::{ClientError, ConnectOptions, Subscriber, SubscriberConfig, SubscriberEvent};
use vswa_protocol::control::EndReason;
use vswa_protocol::Flags;

pub use sink::{SinkConfig, SinkError, Sinks};
pub use stats::{Stats, StopReason, Summary};

/// Process exit codes of `vswa-recv`: one table shared with `vswa-send` (`OUTPUT`: an
/// output cannot be used).
pub use vswa_client::exit;

/// Why `vswa-recv` failed.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// The command line or URL is unusable.
    #[error("{0}")]
    Usage(String),
    /// The relay refused the viewer (token, stream name, limits).
    #[error("{0}")]
    Refused(ClientError),
    /// No connection to the relay within the connect or reconnect timeout.
    #[error("{error} (gave up after {:.1} s)", waited.as_secs_f64())]
    Unreachable {
        /// The last failure.
        error: ClientError,
        /// How long it kept trying.
        waited: Duration,
    },
    /// An output failed.
    #[error(transparent)]
    Output(#[from] SinkError),
    /// The receiving task stopped unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RecvError {
    /// The process exit code for this error (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            RecvError::Usage(_) => exit::USAGE,
            RecvError::Refused(_) => exit::REFUSED,
            RecvError::Unreachable { .. } => exit::UNREACHABLE,
            RecvError::Output(_) => exit::OUTPUT,
            RecvError::Internal(_) => exit::FAILURE,
        }
    }
}

impl RecvError {
    /// Classifies a final client error; `waited` is how long retrying went on.
    fn client(e: ClientError, waited: Duration) -> Self {
        match e {
            ClientError::BadUrl { .. } => RecvError::Usage(e.to_string()),
            ClientError::Unreachable { .. } | ClientError::Lost(_) => {
                RecvError::Unreachable { error: e, waited }
            }
            ClientError::Unauthorized(_)
            | ClientError::Certificate { .. }
            | ClientError::Refused { .. }
            | ClientError::Server { .. } => RecvError::Refused(e),
        }
    }
}

/// Everything `vswa-recv` needs to run.
#[derive(Debug, Clone)]
pub struct RecvConfig {
    /// `ws://HOST:PORT/ws/watch/NAME` (or `wss://`).
    pub url: String,
    /// Viewer token, if the relay wants one.
    pub token: Option<String>,
    /// Extra trusted CA certificate (PEM) for `wss://`.
    pub ca_cert: Option<PathBuf>,
    /// How long to keep trying to make the first connection.
    pub connect_timeout: Duration,
    /// How long to keep trying after losing a connection (`None`: forever).
    pub reconnect_timeout: Option<Duration>,
    /// Outputs.
    pub sinks: SinkConfig,
    /// Stop after this many frames (H.264 frames skipped to the next keyframe, which no
    /// output but the recording gets, do not count).
    pub count: Option<u64>,
    /// Stop after this long (counted from start, connecting included).
    pub duration: Option<Duration>,
    /// Keep waiting when the publisher leaves instead of exiting.
    pub wait_on_end: bool,
    /// Redraw a one-line status on stderr every second (for terminals).
    pub status_line: bool,
}

impl RecvConfig {
    /// Defaults for `url`: 10 s to connect, reconnect forever, no outputs, no limits.
    pub fn new(url: impl Into<String>) -> RecvConfig {
        RecvConfig {
            url: url.into(),
            token: None,
            ca_cert: None,
            connect_timeout: Duration::from_secs(10),
            reconnect_timeout: None,
            sinks: SinkConfig::default(),
            count: None,
            duration: None,
            wait_on_end: false,
            status_line: false,
        }
    }

    /// Checks the URL: `ws://` or `wss://`, with a `/ws/watch/NAME` path and a valid
    /// stream name.
    pub fn validate(&self) -> Result<(), RecvError> {
        let url = ConnectOptions::new(self.url.clone())
            .validate()
            .map_err(|e| RecvError::Usage(e.to_string()))?;
        match stream_route(&url) {
            Some((Role::Watch, Ok(_))) => {}
            Some((Role::Watch, Err(e))) => {
                return Err(RecvError::Usage(format!(
                    "--url {:?}: {e}",
                    vswa_client::connect::redact_url(&self.url)
                )))
            }
            Some((Role::Publish, _)) => {
                return Err(RecvError::Usage(format!(
                    "--url {:?} is a publish URL, not a viewer URL: vswa-recv watches \
                     ws://HOST:PORT/ws/watch/NAME",
                    self.url
                )))
            }
            None => {
                return Err(RecvError::Usage(format!(
                    "--url {:?} is not a viewer URL: expected ws://HOST:PORT/ws/watch/NAME",
                    self.url
                )))
            }
        }
        if self.sinks.display && !cfg!(feature = "display") {
            return Err(RecvError::Usage(
                "--display needs a vswa-recv built with the `display` feature".into(),
            ));
        }
        if self.count == Some(0) {
            return Err(RecvError::Usage("--count must be at least 1".into()));
        }
        Ok(())
    }

    fn subscriber_config(&self) -> SubscriberConfig {
        let mut config = SubscriberConfig::new(self.url.clone());
        config.connect.token = self.token.clone();
        config.connect.ca_cert = self.ca_cert.clone();
        // One handshake may take the whole connect budget, but no more.
        config.connect.timeout = self.connect_timeout.min(config.connect.timeout);
        config.initial_timeout = self.connect_timeout;
        config.reconnect_timeout = self.reconnect_timeout;
        config
    }
}

/// Messages on stderr; keeps the live status line from mixing with other lines.
#[derive(Debug)]
struct Console {
    status_line: bool,
    status_shown: bool,
}

impl Console {
    fn status(&mut self, line: &str) {
        if self.status_line {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
            self.status_shown = true;
        }
    }

    fn say(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        if std::mem::take(&mut self.status_shown) {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(err, "vswa-recv: {line}");
    }

    /// Clears the status line so what follows starts on a clean line.
    fn clear(&mut self) {
        if std::mem::take(&mut self.status_shown) {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

/// Receives until `--count`, `--duration`, the end of the stream, a closed output pipe
/// or window, or `shutdown` resolves; prints reconnects (and the live status line if
/// asked) on stderr and returns the summary. The caller prints the summary.
pub async fn run(
    config: RecvConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, RecvError> {
    config.validate()?;
    // Outputs first: an unwritable path should fail before any network wait.
    let mut sinks = Sinks::open(&config.sinks)?;
    let deadline = config.duration.map(|d| tokio::time::Instant::now() + d);
    let mut console = Console {
        status_line: config.status_line,
        status_shown: false,
    };

    // The subscriber runs in its own task so that waiting for a frame is never cancelled
    // halfway through a reconnect by the status timer.
    let (tx, mut rx) = mpsc::channel::<Result<SubscriberEvent, ClientError>>(8);
    let subscriber_config = config.subscriber_config();
    let task = tokio::spawn(async move {
        let mut subscriber = tokio::select! {
            _ = tx.closed() => return,
            connected = Subscriber::connect(subscriber_config) => match connected {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            },
        };
        loop {
            tokio::select! {
                _ = tx.closed() => break,
                event = subscriber.next() => {
                    let fatal = event.is_err();
                    if tx.send(event).await.is_err() || fatal {
                        break;
                    }
                }
            }
        }
        subscriber.close().await;
    });

    let mut stats = Stats::new(Instant::now());
    let mut gate = gate::KeyframeGate::new();
    let mut connected_once = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    tokio::pin!(shutdown);
    let sleep_until_deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep_until_deadline);

    let mut trying_since = Instant::now();
    let mut connected_now = false;
    let result: Result<StopReason, RecvError> = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(StopReason::Signal),
            _ = &mut sleep_until_deadline => break Ok(StopReason::Duration),
            _ = tick.tick() => {
                if sinks.window_closed() {
                    break Ok(StopReason::WindowClosed);
                }
                let line = stats.status_line(Instant::now());
                sinks.status(&line);
                console.status(&line);
            }
            event = rx.recv() => match event {
                None => break Err(RecvError::Internal("the connection task stopped".into())),
                Some(Err(e)) => {
                    // How long it really tried: since the start, or since the connection
                    // was lost.
                    break Err(RecvError::client(e, trying_since.elapsed()));
                }
                Some(Ok(SubscriberEvent::Hello(_))) => {
                    connected_now = true;
                    if connected_once {
                        console.say("reconnected");
                    } else {
                        stats.start(Instant::now());
                    }
                    connected_once = true;
                }
                Some(Ok(SubscriberEvent::Frame { frame, received_us, capture_us, gap })) => {
                    let h = frame.header();
                    // Capture time on this clock once synchronised, else as stamped.
                    let latency_us = stats::latency_us(received_us, capture_us.unwrap_or(h.timestamp_us));
                    if capture_us.is_some() {
                        stats.clock_synced();
                    }
                    let placeholder = h.flags.contains(Flags::PLACEHOLDER);
                    let len = frame.payload().len();
                    stats.frame(Instant::now(), h.sequence, len, latency_us, gap, placeholder);
                    let decodable = gate.admit(h, frame.payload(), gap);
                    if !decodable {
                        stats.skipped_to_keyframe();
                    }
                    match sinks.write(&frame, decodable) {
                        Ok(()) => {}
                        Err(SinkError::PipeClosed) => break Ok(StopReason::PipeClosed),
                        Err(e) => break Err(e.into()),
                    }
                    if sinks.window_closed() {
                        break Ok(StopReason::WindowClosed);
                    }
                    if config.count.is_some_and(|n| stats.usable_frames() >= n) {
                        break Ok(StopReason::Count);
                    }
                }
                Some(Ok(SubscriberEvent::End(end))) => {
                    // Whatever comes next (a returning publisher) starts over.
                    gate.restart();
                    match end.reason {
                        EndReason::PublisherLeft if !config.wait_on_end => break Ok(StopReason::StreamEnded),
                        EndReason::PublisherLeft => console.say("the publisher left; waiting for it to return"),
                        EndReason::Shutdown | EndReason::Other => {
                            console.say("the relay is shutting down; will reconnect");
                        }
                    }
                }
                Some(Ok(SubscriberEvent::Reconnecting { error, delay })) => {
                    if connected_now {
                        trying_since = Instant::now();
                        connected_now = false;
                    }
                    stats.reconnect();
                    gate.restart();
                    console.say(&format!("{error}; reconnecting in {:.1} s", delay.as_secs_f64()));
                }
            },
        }
    };
    console.clear();
    // Closing the channel stops the task, which then closes the socket politely.
    drop(rx);
    let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    drop(sinks);
    result.map(|stopped| stats.summary(Instant::now(), stopped))
}
