//! Capture -> encode -> frames, pipelined: the source runs on its own thread, JPEG
//! encoding on a pool of threads, and frames come out in capture order through a small
//! bounded channel. Live sources may get [`PipelineConfig::backlog`] frames ahead, then
//! drop frames (before encoding, so no work is wasted) while downstream is slower;
//! file and pipe sources wait instead. JPEGs a source already delivers (MJPEG pipes,
//! cameras, replays) pass through the encoder pool's in-order path without re-encoding.
//!
//! `vswa-send` runs a pipeline into a publisher; the relay's `--demo` stream runs one
//! straight into its hub. Frames come out through a tokio channel, so async code can
//! await them, but the pipeline itself needs no runtime.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use vswa_codec::{EncodeOptions, EncoderPool};
use vswa_protocol::{Flags, Frame, FrameHeader};

use crate::{
    CaptureEnd, CaptureError, CaptureThread, FrameContent, RecvTimeoutError, Source, SourceConfig,
    SourceSpec,
};

/// What to capture and how to encode it.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The source.
    pub spec: SourceSpec,
    /// Size, rate and looping for the source.
    pub source: SourceConfig,
    /// JPEG quality and subsampling for sources that deliver pixels.
    pub encode: EncodeOptions,
    /// Encoder threads (at least 1).
    pub encode_threads: usize,
    /// Stop after this many captured frames.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Frames a live source may get ahead of the encoder and of the consumer before
    /// frames are dropped (at least 2); see [`frames_for`] to size it from a time.
    pub backlog: usize,
}

impl Default for PipelineConfig {
    /// The test pattern at 640x480, JPEG quality 80, one encoder thread per core, no
    /// end, a [`DEFAULT_BACKLOG`] of 30 fps video.
    fn default() -> Self {
        PipelineConfig {
            spec: SourceSpec::Test,
            source: SourceConfig::default(),
            encode: EncodeOptions::default(),
            encode_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            count: None,
            duration: None,
            backlog: frames_for(DEFAULT_BACKLOG, None),
        }
    }
}

/// The default time budget for each queue between a live source and the network (the
/// capture channel and the publisher's queue; the encoder pool holds a few frames per
/// thread on top): enough to ride out a scheduling hiccup of a loaded machine without
/// losing frames, small enough that sustained congestion does not build up noticeable
/// latency.
pub const DEFAULT_BACKLOG: Duration = Duration::from_millis(200);

/// How many frames at `fps` fit in `budget`, clamped to 2..=30 (a source without a
/// rate counts as 30 fps).
pub fn frames_for(budget: Duration, fps: Option<f64>) -> usize {
    let fps = fps.filter(|f| f.is_finite() && *f > 0.0).unwrap_or(30.0);
    ((budget.as_secs_f64() * fps).ceil() as usize).clamp(2, 30)
}

/// Counters of a pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PipelineStats {
    /// Frames the source produced (including ones dropped later).
    pub captured: u64,
    /// Frames dropped before encoding because the encoder or the consumer was behind.
    pub dropped: u64,
    /// Frames encoded.
    pub encoded: u64,
    /// JPEG frames passed through without re-encoding.
    pub passthrough: u64,
    /// Frames that failed to encode.
    pub encode_errors: u64,
    /// Mean encode time of recent frames, milliseconds.
    pub encode_ms: f64,
}

#[derive(Debug, Default)]
struct Shared {
    captured: AtomicU64,
    dropped: AtomicU64,
    encoded: AtomicU64,
    passthrough: AtomicU64,
    encode_errors: AtomicU64,
    /// Exponential moving average of encode time, microseconds.
    encode_us_avg: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Tag {
    sequence: u64,
    timestamp_us: u64,
    placeholder: bool,
}

/// A running capture -> encode pipeline.
#[derive(Debug)]
pub struct Pipeline {
    rx: mpsc::Receiver<Frame>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    live: bool,
    description: String,
    feeder: Option<JoinHandle<Result<(), CaptureError>>>,
    collector: Option<JoinHandle<()>>,
}

/// A source opened but not yet started, so errors surface before connecting anywhere.
pub struct OpenedSource {
    source: Box<dyn Source>,
    config: PipelineConfig,
}

impl std::fmt::Debug for OpenedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedSource")
            .field("source", &self.source.describe())
            .finish()
    }
}

impl OpenedSource {
    /// Opens the configured source.
    pub fn open(config: PipelineConfig) -> Result<OpenedSource, CaptureError> {
        let source = crate::open(&config.spec, &config.source)?;
        Ok(OpenedSource { source, config })
    }

    /// A one-line description of the source.
    pub fn describe(&self) -> String {
        self.source.describe()
    }

    /// Whether the source is live (drops frames when behind).
    pub fn is_live(&self) -> bool {
        self.source.is_live()
    }

    /// Starts capturing and encoding.
    pub fn start(self) -> Pipeline {
        Pipeline::start(self.source, self.config)
    }
}

impl Pipeline {
    fn start(source: Box<dyn Source>, config: PipelineConfig) -> Pipeline {
        let live = source.is_live();
        let description = source.describe();
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let backlog = config.backlog.max(2);
        let (tx, rx) = mpsc::channel(backlog);
        let pool = Arc::new(EncoderPool::<Tag>::new(
            config.encode_threads.max(1),
            config.encode,
        ));
        let capture = CaptureThread::spawn(source, backlog);
        let feeder = {
            let (shared, stop, pool) = (shared.clone(), stop.clone(), pool.clone());
            std::thread::Builder::new()
                .name("vswa-feed".into())
                .spawn(move || feed(capture, pool, shared, stop, config.count, config.duration))
                .expect("spawning the feeder thread")
        };
        let collector = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("vswa-collect".into())
                .spawn(move || collect(pool, tx, shared))
                .expect("spawning the collector thread")
        };
        Pipeline {
            rx,
            shared,
            stop,
            live,
            description,
            feeder: Some(feeder),
            collector: Some(collector),
        }
    }

    /// The next frame in capture order; `None` when the pipeline has finished.
    pub async fn next(&mut self) -> Option<Frame> {
        self.rx.recv().await
    }

    /// Whether the source is live.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The source's description.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// The counters now.
    pub fn stats(&self) -> PipelineStats {
        let s = &self.shared;
        PipelineStats {
            captured: s.captured.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            encoded: s.encoded.load(Ordering::Relaxed),
            passthrough: s.passthrough.load(Ordering::Relaxed),
            encode_errors: s.encode_errors.load(Ordering::Relaxed),
            encode_ms: s.encode_us_avg.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }

    /// Stops capturing, waits for the threads, and reports a source failure if there
    /// was one.
    pub async fn finish(mut self) -> Result<PipelineStats, CaptureError> {
        self.stop.store(true, Ordering::Relaxed);
        self.rx.close();
        // Let blocked senders see the closed channel.
        while self.rx.recv().await.is_some() {}
        let feeder = self.feeder.take();
        let collector = self.collector.take();
        // Join on a plain thread, so an async caller's runtime is never blocked and no
        // particular runtime is needed.
        let (done_tx, done_rx) = oneshot::channel();
        let joiner = std::thread::Builder::new()
            .name("vswa-join".into())
            .spawn(move || {
                let fed = feeder.map_or(Ok(Ok(())), |h| h.join());
                let collected = collector.map_or(Ok(()), |h| h.join());
                let _ = done_tx.send(match (fed, collected) {
                    (Ok(result), Ok(())) => result,
                    _ => Err(CaptureError::Panicked {
                        thread: "capture pipeline".into(),
                    }),
                });
            });
        if joiner.is_err() {
            return Err(CaptureError::Panicked {
                thread: "capture pipeline join".into(),
            });
        }
        let result = done_rx.await.unwrap_or(Err(CaptureError::Panicked {
            thread: "capture pipeline join".into(),
        }));
        result.map(|()| self.stats())
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn dims(w: u32) -> u16 {
    u16::try_from(w).unwrap_or(0)
}

fn flags(placeholder: bool) -> Flags {
    let mut flags = Flags::KEYFRAME;
    flags.set(Flags::PLACEHOLDER, placeholder);
    flags
}

#[allow(clippy::too_many_arguments)]
fn feed(
    capture: CaptureThread,
    pool: Arc<EncoderPool<Tag>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    count: Option<u64>,
    duration: Option<Duration>,
) -> Result<(), CaptureError> {
    let started = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) || duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        let (sequence, captured) = match capture.recv_indexed_timeout(Duration::from_millis(100)) {
            Ok(f) => f,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Ended) => break,
        };
        // Frames the capture thread dropped still took sequence numbers, so viewers see
        // the gap.
        if count.is_some_and(|c| sequence >= c) {
            break;
        }
        shared.captured.store(sequence + 1, Ordering::Relaxed);
        shared.dropped.store(capture.dropped(), Ordering::Relaxed);
        let tag = Tag {
            sequence,
            timestamp_us: captured.timestamp_us,
            placeholder: captured.placeholder,
        };
        // Wait for the encoder: a live source's backlog builds up in the capture
        // channel, where the capture thread drops (and counts) what does not fit.
        // Ready JPEGs take the same queue, so they keep their place in capture order.
        let submitted = match captured.content {
            FrameContent::Image(image) => pool.submit(image, tag),
            FrameContent::Jpeg {
                data,
                width,
                height,
            } => {
                shared.passthrough.fetch_add(1, Ordering::Relaxed);
                pool.submit_encoded(data, u32::from(width), u32::from(height), tag)
            }
        };
        if submitted.is_err() {
            break;
        }
    }
    pool.close();
    capture.stop();
    match capture.take_end() {
        Some(CaptureEnd::Failed(e)) => Err(e),
        _ => Ok(()),
    }
}

fn frame(tag: Tag, width: u16, height: u16, jpeg: Bytes) -> Frame {
    let mut header = FrameHeader::jpeg(tag.sequence, tag.timestamp_us, width, height);
    header.flags = flags(tag.placeholder);
    Frame::new(header, jpeg)
}

fn collect(pool: Arc<EncoderPool<Tag>>, tx: mpsc::Sender<Frame>, shared: Arc<Shared>) {
    while let Some(encoded) = pool.recv() {
        if !encoded.passthrough {
            let us = encoded.encode_time.as_micros() as u64;
            let avg = shared.encode_us_avg.load(Ordering::Relaxed);
            let avg = if avg == 0 { us } else { (avg * 7 + us) / 8 };
            shared.encode_us_avg.store(avg, Ordering::Relaxed);
        }
        let result = match encoded.result {
            Ok(jpeg) => {
                if !encoded.passthrough {
                    shared.encoded.fetch_add(1, Ordering::Relaxed);
                }
                tx.blocking_send(frame(
                    encoded.tag,
                    dims(encoded.width),
                    dims(encoded.height),
                    jpeg,
                ))
                .map_err(|_| ())
            }
            Err(e) => {
                shared.encode_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sequence = encoded.tag.sequence, "encoding failed: {e}");
                Ok(())
            }
        };
        if result.is_err() {
            pool.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_is_sized_in_time_and_clamped() {
        let ms = Duration::from_millis;
        assert_eq!(frames_for(ms(200), Some(30.0)), 6);
        assert_eq!(frames_for(ms(200), None), 6, "no rate counts as 30 fps");
        assert_eq!(frames_for(ms(200), Some(60.0)), 12);
        assert_eq!(frames_for(ms(0), Some(30.0)), 2, "never fewer than 2");
        assert_eq!(frames_for(ms(200), Some(1.0)), 2);
        assert_eq!(frames_for(ms(5000), Some(120.0)), 30, "never more than 30");
        assert_eq!(frames_for(ms(200), Some(f64::NAN)), 6);
    }

    /// A live source whose consumer stalls drops frames at capture (gaps in the sequence,
    /// counted), keeps the order, and `finish` returns promptly although the feeder is
    /// then blocked on a full encoder pool.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_consumer_makes_a_live_source_drop_in_order() {
        let source = OpenedSource::open(PipelineConfig {
            spec: SourceSpec::Test,
            source: SourceConfig {
                width: 64,
                height: 48,
                fps: Some(200.0),
                ..SourceConfig::default()
            },
            encode: EncodeOptions::default(),
            encode_threads: 1,
            count: None,
            duration: None,
            backlog: 2,
        })
        .unwrap();
        assert!(source.is_live());
        let mut pipeline = source.start();
        async fn next(pipeline: &mut Pipeline) -> u64 {
            tokio::time::timeout(Duration::from_secs(10), pipeline.next())
                .await
                .expect("a frame within 10 s")
                .expect("the pipeline is running")
                .header()
                .sequence
        }
        let mut seqs = Vec::new();
        for _ in 0..5 {
            seqs.push(next(&mut pipeline).await);
        }
        // The consumer stalls for 100 frame intervals; the queues hold about 8.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for _ in 0..20 {
            seqs.push(next(&mut pipeline).await);
        }
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        let gaps: u64 = seqs.windows(2).map(|w| w[1] - w[0] - 1).sum();
        assert!(gaps > 0, "nothing dropped during the stall: {seqs:?}");
        assert!(pipeline.stats().dropped >= gaps);
        tokio::time::timeout(Duration::from_secs(5), pipeline.finish())
            .await
            .expect("finish within 5 s")
            .unwrap();
    }
}
