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
    /// Capture only while the relay reports viewers (see [`run`]).
    pub on_demand: bool,
    /// With `on_demand`: how long without viewers before the source is closed.
    pub on_demand_hold: Duration,
}

impl SendConfig {
    /// The defaults, publishing to `url`.
    pub fn new(url: impl Into<String>) -> SendConfig {
        SendConfig {
            publisher: PublisherConfig {
                max_latency: DEFAULT_MAX_LATENCY,
                ..PublisherConfig::new(url)
            },
            pipeline: PipelineConfig::default(),
            backlog: vswa_capture::DEFAULT_BACKLOG,
            on_demand: false,
            on_demand_hold: DEFAULT_ON_DEMAND_HOLD,
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

/// `vswa-send`'s default send-queue age limit, the relay's default `--max-latency`.
pub const DEFAULT_MAX_LATENCY: Duration = Duration::from_millis(500);

/// How long an on-demand sender keeps capturing after the last viewer left: long enough
/// that a page reload or a viewer hopping between streams does not restart the camera.
pub const DEFAULT_ON_DEMAND_HOLD: Duration = Duration::from_secs(10);

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
                | CaptureError::CameraUnsupported
                | CaptureError::H264Unsupported => exit::USAGE,
                CaptureError::Camera { .. }
                | CaptureError::DeviceMissing(_)
                | CaptureError::Io { .. }
                | CaptureError::Recording { .. }
                | CaptureError::NoJpeg { .. }
                | CaptureError::NoH264 { .. }
                | CaptureError::EmptyRecording { .. } => exit::IO,
                // The encoder refused the pictures the source delivers (e.g. a camera
                // of odd width): the input's fault, like a file that cannot be used.
                CaptureError::Encoder(_) => exit::IO,
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
    /// Frames dropped anywhere (before encoding, skipped by the H.264 rate control, or
    /// at the network).
    pub fn dropped(&self) -> u64 {
        self.pipeline.dropped + self.pipeline.skipped + self.publisher.dropped
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
    if config.on_demand {
        let pipeline = config.pipeline.clone();
        let source = OpenedSource::open(config.pipeline)?;
        if !source.is_live() {
            return Err(SendError::Config(
                "--on-demand is for live sources (test pattern, camera), not files or pipes".into(),
            ));
        }
        on_open(&source);
        return send_on_demand(
            source,
            pipeline,
            config.publisher,
            config.on_demand_hold,
            shutdown,
            status,
        )
        .await;
    }
    let source = OpenedSource::open(config.pipeline)?;
    on_open(&source);
    send(source, config.publisher, shutdown, status).await
}

/// Connects `publisher` and sends from a live source only while somebody watches: the
/// relay's `viewers` count at 0 for `hold` closes the source (a camera's device is
/// released, nothing is captured or encoded) while the connection stays open; the next
/// viewer reopens it from `config`. Otherwise like [`send`].
pub async fn send_on_demand(
    source: OpenedSource,
    config: PipelineConfig,
    publisher: PublisherConfig,
    hold: Duration,
    shutdown: impl Future<Output = ()>,
    mut status: impl FnMut(&SendStatus),
) -> Result<SendStatus, SendError> {
    let started = Instant::now();
    tokio::pin!(shutdown);
    let Some(publisher) = connect_unless(publisher, started, shutdown.as_mut()).await? else {
        return Ok(SendStatus {
            elapsed: started.elapsed(),
            ..SendStatus::default()
        });
    };
    let mut viewers = publisher.viewers();
    // Counters of pipelines already closed, and the one running (if any).
    let mut done = PipelineStats::default();
    let mut pipeline = Some(source.start());
    // Since when the relay has reported no viewers (while capturing).
    let mut unwatched_since: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut report = Instant::now();
    loop {
        let count = *viewers.borrow_and_update();
        match (&pipeline, count) {
            (Some(_), Some(0)) => {
                let since = *unwatched_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= hold {
                    tracing::info!(
                        "no viewers for {:.0} s: source closed until one comes",
                        hold.as_secs_f64()
                    );
                    let running = pipeline.take().expect("checked above");
                    let stats = stop_pipeline(running).await?;
                    done = add_stats(done, stats);
                    unwatched_since = None;
                }
            }
            (Some(_), _) => unwatched_since = None,
            (None, Some(n)) if n > 0 => {
                tracing::info!("{n} viewer(s): capturing again");
                pipeline = Some(OpenedSource::open(config.clone())?.start());
            }
            (None, _) => {}
        }
        if report.elapsed() >= Duration::from_secs(1) {
            report = Instant::now();
            let current = pipeline.as_ref().map(|p| p.stats()).unwrap_or_default();
            status(&SendStatus {
                pipeline: add_stats(done, current),
                publisher: publisher.stats(),
                elapsed: started.elapsed(),
            });
        }
        if publisher.is_finished() {
            break;
        }
        tokio::select! {
            frame = async {
                match pipeline.as_mut() {
                    Some(p) => p.next().await,
                    None => std::future::pending().await,
                }
            } => {
                match frame {
                    Some(frame) => {
                        // Each reopened pipeline counts from 0; viewers see one
                        // sequence across standby periods.
                        let frame = if done.captured == 0 {
                            frame
                        } else {
                            let mut header = *frame.header();
                            header.sequence = header.sequence.saturating_add(done.captured);
                            vswa_protocol::Frame::new(header, frame.payload().clone())
                        };
                        if publisher.take_keyframe_request() {
                            if let Some(p) = pipeline.as_ref() {
                                p.request_keyframe();
                            }
                        }
                        publisher.try_send(frame);
                    }
                    // A live source that ends (it should not) ends the run.
                    None => break,
                }
            }
            _ = viewers.changed() => {}
            _ = tick.tick() => {}
            () = &mut shutdown => break,
        }
    }
    if let Some(running) = pipeline.take() {
        done = add_stats(done, stop_pipeline(running).await?);
    }
    let publisher_stats = publisher
        .finish_until(tokio::time::sleep(STOP_LINGER))
        .await?;
    Ok(SendStatus {
        pipeline: done,
        publisher: publisher_stats,
        elapsed: started.elapsed(),
    })
}

/// Connects, or `None` if `shutdown` completes first. A relay that could not be reached
/// within the connect timeout is reported with how long it was tried.
async fn connect_unless(
    config: PublisherConfig,
    started: Instant,
    shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<Option<Publisher>, SendError> {
    tokio::select! {
        publisher = Publisher::connect(config) => match publisher {
            Ok(p) => Ok(Some(p)),
            Err(error @ (ClientError::Unreachable { .. } | ClientError::Lost(_))) => {
                Err(SendError::Unreachable { error, waited: started.elapsed() })
            }
            Err(e) => Err(e.into()),
        },
        () = shutdown => Ok(None),
    }
}

/// Stops a live pipeline, bounded like a stop on a signal.
async fn stop_pipeline(pipeline: vswa_capture::Pipeline) -> Result<PipelineStats, SendError> {
    let so_far = pipeline.stats();
    Ok(tokio::time::timeout(STOP_LINGER, pipeline.finish())
        .await
        .unwrap_or(Ok(so_far))?)
}

/// Counters of two pipelines run one after the other.
fn add_stats(a: PipelineStats, b: PipelineStats) -> PipelineStats {
    PipelineStats {
        captured: a.captured + b.captured,
        dropped: a.dropped + b.dropped,
        encoded: a.encoded + b.encoded,
        passthrough: a.passthrough + b.passthrough,
        encode_errors: a.encode_errors + b.encode_errors,
        skipped: a.skipped + b.skipped,
        encode_ms: if b.encoded > 0 {
            b.encode_ms
        } else {
            a.encode_ms
        },
    }
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
    let Some(publisher) = connect_unless(publisher, started, shutdown.as_mut()).await? else {
        return Ok(SendStatus {
            elapsed: started.elapsed(),
            ..SendStatus::default()
        });
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
                if publisher.take_keyframe_request() {
                    pipeline.request_keyframe();
                }
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
