//! `vswa-send` as a library: capture (test pattern, camera, MJPEG pipe, recording),
//! encode and publish to a relay, with the program's exact behaviour.
//!
//! [`SendConfig`] holds every option with its default; [`run`] opens the source, connects
//! and sends until the source ends, a count or duration is reached, or `shutdown`
//! completes. Capture and encoding come from `vswa-capture`, the connection from
//! `vswa-client`; this crate only joins them.
#![warn(missing_docs)]

pub mod args;

use std::future::Future;
use std::time::{Duration, Instant};

use vswa_capture::{frames_for, CaptureError, OpenedSource, PipelineConfig, PipelineStats};
use vswa_client::connect::{stream_route, Role};
use vswa_client::{ClientError, Publisher, PublisherConfig, PublisherStats};
use vswa_codec::EncoderBackend;

/// Everything `vswa-send` can be told; `SendConfig::new(url)` has the defaults.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// Relay URL, token, TLS and connect timeout (its queue is sized from `backlog`).
    pub publisher: PublisherConfig,
    /// Source, size, rate, encoding, count and duration (its backlog is sized from
    /// `backlog`).
    pub pipeline: PipelineConfig,
    /// Video a live source may queue before encoding and again before the network.
    pub backlog: Duration,
}

impl SendConfig {
    /// The defaults, publishing to `url`.
    pub fn new(url: impl Into<String>) -> SendConfig {
        SendConfig {
            publisher: PublisherConfig::new(url),
            pipeline: PipelineConfig::default(),
            backlog: vswa_capture::DEFAULT_BACKLOG,
        }
    }

    /// Checks what can be checked without connecting: the URL (`ws://` or `wss://`,
    /// path `/ws/publish/NAME` with a valid stream name) and the encoder backend.
    pub fn validate(&self) -> Result<(), SendError> {
        let given = &self.publisher.connect.url;
        let url = self.publisher.connect.validate()?;
        match stream_route(&url) {
            Some((Role::Publish, Ok(_))) => {}
            Some((Role::Publish, Err(e))) => {
                return Err(SendError::Config(format!("--url {given:?}: {e}")))
            }
            Some((Role::Watch, _)) => {
                return Err(SendError::Config(format!(
                    "--url {given:?}: this is a viewer URL; vswa-send publishes to {PUBLISH_URL}"
                )))
            }
            None => {
                return Err(SendError::Config(format!(
                    "--url {given:?} is not a publish URL: expected {PUBLISH_URL}"
                )))
            }
        }
        if self.pipeline.encode.backend == EncoderBackend::TurboJpeg
            && !EncoderBackend::TurboJpeg.is_available()
        {
            return Err(SendError::Config(
                "--turbojpeg needs a build with the `turbojpeg` feature".into(),
            ));
        }
        Ok(())
    }
}

/// The form of a publish URL, for messages.
const PUBLISH_URL: &str = "ws://HOST:PORT/ws/publish/NAME";

/// Process exit codes of `vswa-send`: one table shared with `vswa-recv`, so a script
/// reads both programs' failures alike (`IO`: the source cannot be read or holds
/// nothing to send).
pub use vswa_client::exit;

/// Why sending stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The command line or URL is unusable, or the options do not fit together (e.g.
    /// a backend this build lacks).
    #[error("{0}")]
    Config(String),
    /// The source could not be opened or failed.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The relay refused, or a connection failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// No first connection within `--connect-timeout`.
    #[error("{error} (gave up after {:.1} s)", waited.as_secs_f64())]
    Unreachable {
        /// The last failure.
        error: ClientError,
        /// How long it kept trying.
        waited: Duration,
    },
}

impl SendError {
    /// The process exit code for this error (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            SendError::Config(_) => exit::USAGE,
            SendError::Capture(e) => match e {
                CaptureError::InvalidSpec { .. }
                | CaptureError::InvalidConfig(_)
                | CaptureError::CameraUnsupported => exit::USAGE,
                CaptureError::Camera { .. }
                | CaptureError::DeviceMissing(_)
                | CaptureError::Io { .. }
                | CaptureError::Recording { .. }
                | CaptureError::NoJpeg { .. }
                | CaptureError::EmptyRecording { .. } => exit::IO,
                // A panic is a bug; an oversized picture is skipped by the MJPEG source and
                // so never ends a run. Neither is the input's fault.
                CaptureError::Panicked { .. } | CaptureError::FrameTooLarge { .. } => exit::FAILURE,
            },
            SendError::Client(e) => match e {
                ClientError::BadUrl { .. } => exit::USAGE,
                ClientError::Unauthorized(_)
                | ClientError::Certificate { .. }
                | ClientError::Refused { .. }
                | ClientError::Server { .. } => exit::REFUSED,
                ClientError::Unreachable { .. } | ClientError::Lost(_) => exit::UNREACHABLE,
            },
            SendError::Unreachable { .. } => exit::UNREACHABLE,
        }
    }
}

/// Live counters of a [`run`], for a status line.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendStatus {
    /// Pipeline counters.
    pub pipeline: PipelineStats,
    /// Publisher counters.
    pub publisher: PublisherStats,
    /// Time since sending started.
    pub elapsed: Duration,
}

impl SendStatus {
    /// Frames dropped anywhere (before encoding or at the network).
    pub fn dropped(&self) -> u64 {
        self.pipeline.dropped + self.publisher.dropped
    }

    /// One status line: time, frames sent, fps, encode time, bitrate, drops, viewers.
    pub fn line(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(0.001);
        let p = &self.publisher;
        let disconnected = !(p.connected || p.sent == 0 && self.elapsed.is_zero());
        format!(
            "{:>6.1}s  sent {:>6}  {:>5.1} fps  encode {:>5.1} ms  {:>7.0} kbit/s  dropped {}  viewers {}{}",
            secs,
            p.sent,
            p.sent as f64 / secs,
            self.pipeline.encode_ms,
            p.bytes as f64 * 8.0 / 1000.0 / secs,
            self.dropped(),
            p.viewers,
            if disconnected { "  (disconnected)" } else { "" }
        )
    }
}

/// Checks `config` ([`SendConfig::validate`]) and opens the source it describes (so a
/// bad URL or source fails before any connection), then connects and sends; see
/// [`send`].
pub async fn run(
    mut config: SendConfig,
    shutdown: impl Future<Output = ()>,
    on_open: impl FnOnce(&OpenedSource),
    status: impl FnMut(&SendStatus),
) -> Result<SendStatus, SendError> {
    config.validate()?;
    let frames = frames_for(config.backlog, config.pipeline.source.fps);
    config.pipeline.backlog = frames;
    config.publisher.queue = frames;
    let source = OpenedSource::open(config.pipeline)?;
    on_open(&source);
    send(source, config.publisher, shutdown, status).await
}

/// Connects `publisher`, then captures, encodes and sends until the source ends, the
/// count or duration is reached, or `shutdown` completes. `status` is called about
/// once a second.
///
/// `shutdown` is honoured in every state: while connecting, while waiting for the
/// source (a camera, stdin), while a file source waits for room in the queue, and while
/// the publisher reconnects; then queued frames are dropped (counted) instead of
/// waiting for a relay that is away.
pub async fn send(
    source: OpenedSource,
    publisher: PublisherConfig,
    shutdown: impl Future<Output = ()>,
    mut status: impl FnMut(&SendStatus),
) -> Result<SendStatus, SendError> {
    let started = Instant::now();
    tokio::pin!(shutdown);
    let publisher = tokio::select! {
        publisher = Publisher::connect(publisher) => match publisher {
            Ok(p) => p,
            Err(error @ (ClientError::Unreachable { .. } | ClientError::Lost(_))) => {
                return Err(SendError::Unreachable { error, waited: started.elapsed() })
            }
            Err(e) => return Err(e.into()),
        },
        () = &mut shutdown => return Ok(SendStatus { elapsed: started.elapsed(), ..SendStatus::default() }),
    };
    let live = source.is_live();
    let mut pipeline = source.start();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut stopped = false;
    loop {
        tokio::select! {
            frame = pipeline.next() => {
                let Some(frame) = frame else { break };
                if live {
                    publisher.try_send(frame);
                } else {
                    // A file source waits for room in the queue; a signal must not.
                    tokio::select! {
                        sent = publisher.send(frame) => if sent.is_err() { break },
                        () = &mut shutdown => { stopped = true; break },
                    }
                }
            }
            _ = tick.tick() => {
                if publisher.is_finished() {
                    break;
                }
                status(&SendStatus {
                    pipeline: pipeline.stats(),
                    publisher: publisher.stats(),
                    elapsed: started.elapsed(),
                });
            }
            () = &mut shutdown => { stopped = true; break },
        }
    }
    let pipeline_result = if stopped {
        // A source blocked in a read (stdin, a camera) cannot be interrupted; leave its
        // thread behind rather than keep a user who pressed Ctrl-C waiting.
        let so_far = pipeline.stats();
        tokio::time::timeout(STOP_LINGER, pipeline.finish())
            .await
            .unwrap_or(Ok(so_far))
    } else {
        pipeline.finish().await
    };
    let publisher_stats = if stopped {
        // Already asked to stop: give the queue a moment to drain, no more.
        publisher
            .finish_until(tokio::time::sleep(STOP_LINGER))
            .await?
    } else {
        // The source ended: deliver what is queued, unless a signal comes first.
        publisher.finish_until(&mut shutdown).await?
    };
    let pipeline_stats = pipeline_result?;
    Ok(SendStatus {
        pipeline: pipeline_stats,
        publisher: publisher_stats,
        elapsed: started.elapsed(),
    })
}

/// After a signal, how long queued frames may still take to reach a connected relay.
const STOP_LINGER: Duration = Duration::from_millis(500);
