//! Capture -> encode -> frames, pipelined: the source runs on its own thread, JPEG
//! encoding on a pool of threads, and frames come out in capture order through a small
//! bounded channel. Live sources may get [`PipelineConfig::backlog`] frames ahead, then
//! drop frames (before encoding, so no work is wasted) while downstream is slower;
//! file and pipe sources wait instead. JPEGs a source already delivers (MJPEG pipes,
//! cameras, replays) pass through the encoder pool's in-order path without re-encoding.
//!
//! With [`VideoCodec::H264`] (cargo feature `h264`) pictures are encoded as H.264 instead,
//! on one encoder thread (H.264 is sequential), still pipelined behind the capture thread;
//! JPEGs from the source are decoded and re-encoded, and H.264 a source delivers (an
//! `h264:` pipe, a replay) passes through under either codec.
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
use vswa_protocol::{Codec, Flags, Frame, FrameHeader};

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
    /// What pictures are encoded as (sources that deliver encoded frames pass them
    /// through whatever this says).
    pub codec: VideoCodec,
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
            codec: VideoCodec::Jpeg,
            encode: EncodeOptions::default(),
            encode_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            count: None,
            duration: None,
            backlog: frames_for(DEFAULT_BACKLOG, None),
        }
    }
}

/// What a pipeline encodes pictures as.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum VideoCodec {
    /// JPEG, on the encoder pool ([`PipelineConfig::encode`] has quality and subsampling).
    #[default]
    Jpeg,
    /// H.264 with OpenH264 (cargo feature `h264`): constant bitrate, no B-frames, SPS and
    /// PPS before every keyframe. To hold the bitrate the rate control may skip a
    /// picture after a burst of motion (counted in [`PipelineStats::skipped`]; viewers see
    /// a gap in the sequence numbers, as for a dropped frame).
    H264 {
        /// Target bitrate in kbit/s.
        bitrate_kbps: u32,
        /// Time between keyframes.
        keyframe_interval: Duration,
    },
}

/// Default H.264 bitrate, kbit/s: sharp 720p camera video.
pub const DEFAULT_H264_BITRATE_KBPS: u32 = 2000;

/// Default time between H.264 keyframes: how long a viewer that fell behind waits to
/// resume (new viewers start at once, from the relay's copy of the current GOP).
pub const DEFAULT_KEYFRAME_INTERVAL: Duration = Duration::from_secs(2);

impl VideoCodec {
    /// H.264 at [`DEFAULT_H264_BITRATE_KBPS`] and [`DEFAULT_KEYFRAME_INTERVAL`].
    pub const H264_DEFAULT: VideoCodec = VideoCodec::H264 {
        bitrate_kbps: DEFAULT_H264_BITRATE_KBPS,
        keyframe_interval: DEFAULT_KEYFRAME_INTERVAL,
    };

    /// Checks the settings, and that this build can encode them, for pictures of the
    /// configured size at the configured rate.
    pub fn check(&self, source: &SourceConfig) -> Result<(), CaptureError> {
        match *self {
            VideoCodec::Jpeg => Ok(()),
            #[cfg(not(feature = "h264"))]
            VideoCodec::H264 { .. } => {
                let _ = source;
                Err(CaptureError::H264Unsupported)
            }
            #[cfg(feature = "h264")]
            VideoCodec::H264 { .. } => {
                h264_options(*self, source.fps)
                    .validate()
                    .map_err(|e| CaptureError::InvalidConfig(e.to_string()))?;
                if source.width % 2 == 1 || source.height % 2 == 1 {
                    return Err(CaptureError::InvalidConfig(format!(
                        "H.264 needs an even width and height, not {}x{}",
                        source.width, source.height
                    )));
                }
                Ok(())
            }
        }
    }
}

/// The encoder settings for `codec` (H.264) at `fps` (the source's rate; 30 if it has
/// none, as OpenH264's rate control needs one).
#[cfg(feature = "h264")]
fn h264_options(codec: VideoCodec, fps: Option<f64>) -> vswa_codec::H264Options {
    let mut options = vswa_codec::H264Options {
        fps: fps.unwrap_or(30.0),
        ..vswa_codec::H264Options::default()
    };
    if let VideoCodec::H264 {
        bitrate_kbps,
        keyframe_interval,
    } = codec
    {
        options.bitrate_kbps = bitrate_kbps;
        options.keyframe_interval = keyframe_interval;
    }
    options
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
    /// Encoded frames (JPEG or H.264) passed through without re-encoding.
    pub passthrough: u64,
    /// Frames that failed to encode.
    pub encode_errors: u64,
    /// Pictures the H.264 rate control skipped to hold the bitrate.
    pub skipped: u64,
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
    skipped: AtomicU64,
    /// Exponential moving average of encode time, microseconds.
    encode_us_avg: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Tag {
    sequence: u64,
    timestamp_us: u64,
    placeholder: bool,
    /// The codec of an encoded frame passed through (JPEG for pictures the pool encodes).
    codec: Codec,
    keyframe: bool,
}

/// A running capture -> encode pipeline.
#[derive(Debug)]
pub struct Pipeline {
    rx: mpsc::Receiver<Frame>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    keyframe_wanted: Arc<AtomicBool>,
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
    /// Opens the configured source, after checking the codec settings
    /// ([`VideoCodec::check`]).
    pub fn open(config: PipelineConfig) -> Result<OpenedSource, CaptureError> {
        config.codec.check(&config.source)?;
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
        let keyframe_wanted = Arc::new(AtomicBool::new(false));
        let backlog = config.backlog.max(2);
        let (tx, rx) = mpsc::channel(backlog);
        let capture = CaptureThread::spawn(source, backlog);
        let limits = Limits {
            count: config.count,
            duration: config.duration,
        };
        let (feeder, collector) = match config.codec {
            VideoCodec::Jpeg => {
                let pool = Arc::new(EncoderPool::<Tag>::new(
                    config.encode_threads.max(1),
                    config.encode,
                ));
                let feeder = {
                    let (shared, stop, pool) = (shared.clone(), stop.clone(), pool.clone());
                    std::thread::Builder::new()
                        .name("vswa-feed".into())
                        .spawn(move || feed(capture, pool, shared, stop, limits))
                        .expect("spawning the feeder thread")
                };
                let collector = {
                    let shared = shared.clone();
                    std::thread::Builder::new()
                        .name("vswa-collect".into())
                        .spawn(move || collect(pool, tx, shared))
                        .expect("spawning the collector thread")
                };
                (feeder, Some(collector))
            }
            VideoCodec::H264 { .. } => {
                let (shared, stop, wanted) =
                    (shared.clone(), stop.clone(), keyframe_wanted.clone());
                let options = H264Feed {
                    codec: config.codec,
                    fps: config.source.fps,
                };
                let feeder = std::thread::Builder::new()
                    .name("vswa-h264".into())
                    .spawn(move || feed_h264(capture, tx, shared, stop, wanted, limits, options))
                    .expect("spawning the H.264 encoder thread");
                (feeder, None)
            }
        };
        Pipeline {
            rx,
            shared,
            stop,
            keyframe_wanted,
            live,
            description,
            feeder: Some(feeder),
            collector,
        }
    }

    /// Asks for the next encoded picture to be a keyframe (H.264; JPEG frames always
    /// are), e.g. because frames were dropped on the way to the relay and viewers cannot
    /// decode on until the next one. Frames passed through are not changed.
    pub fn request_keyframe(&self) {
        self.keyframe_wanted.store(true, Ordering::Relaxed);
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
            skipped: s.skipped.load(Ordering::Relaxed),
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

/// When the feeder stops by itself.
#[derive(Debug, Clone, Copy)]
struct Limits {
    count: Option<u64>,
    duration: Option<Duration>,
}

/// The next captured frame with its sequence number, or `None` when the feeder is to
/// stop (asked to, a limit reached, or the source ended). Counts what was captured and
/// dropped.
fn next_captured(
    capture: &CaptureThread,
    shared: &Shared,
    stop: &AtomicBool,
    limits: Limits,
    started: Instant,
) -> Option<(u64, crate::CapturedFrame)> {
    loop {
        if stop.load(Ordering::Relaxed) || limits.duration.is_some_and(|d| started.elapsed() >= d) {
            return None;
        }
        let (sequence, captured) = match capture.recv_indexed_timeout(Duration::from_millis(100)) {
            Ok(f) => f,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Ended) => return None,
        };
        // Frames the capture thread dropped still took sequence numbers, so viewers see
        // the gap.
        if limits.count.is_some_and(|c| sequence >= c) {
            return None;
        }
        shared.captured.store(sequence + 1, Ordering::Relaxed);
        shared.dropped.store(capture.dropped(), Ordering::Relaxed);
        return Some((sequence, captured));
    }
}

/// The end of a feeder: stops the capture thread and reports how the source ended.
fn capture_end(capture: CaptureThread) -> Result<(), CaptureError> {
    capture.stop();
    match capture.take_end() {
        Some(CaptureEnd::Failed(e)) => Err(e),
        _ => Ok(()),
    }
}

fn feed(
    capture: CaptureThread,
    pool: Arc<EncoderPool<Tag>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    limits: Limits,
) -> Result<(), CaptureError> {
    let started = Instant::now();
    while let Some((sequence, captured)) = next_captured(&capture, &shared, &stop, limits, started)
    {
        let tag = Tag {
            sequence,
            timestamp_us: captured.timestamp_us,
            placeholder: captured.placeholder,
            codec: Codec::Jpeg,
            keyframe: true,
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
            FrameContent::H264 {
                data,
                keyframe,
                width,
                height,
            } => {
                shared.passthrough.fetch_add(1, Ordering::Relaxed);
                let tag = Tag {
                    codec: Codec::H264,
                    keyframe,
                    ..tag
                };
                pool.submit_encoded(data, u32::from(width), u32::from(height), tag)
            }
        };
        if submitted.is_err() {
            break;
        }
    }
    pool.close();
    capture_end(capture)
}

fn frame(tag: Tag, width: u16, height: u16, payload: Bytes) -> Frame {
    let mut header = match tag.codec {
        Codec::H264 => {
            FrameHeader::h264(tag.sequence, tag.timestamp_us, width, height, tag.keyframe)
        }
        _ => FrameHeader::jpeg(tag.sequence, tag.timestamp_us, width, height),
    };
    header.flags.set(Flags::PLACEHOLDER, tag.placeholder);
    Frame::new(header, payload)
}

/// How the H.264 feeder encodes.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "h264"), allow(dead_code))]
struct H264Feed {
    codec: VideoCodec,
    fps: Option<f64>,
}

#[cfg(not(feature = "h264"))]
fn feed_h264(
    capture: CaptureThread,
    _tx: mpsc::Sender<Frame>,
    _shared: Arc<Shared>,
    _stop: Arc<AtomicBool>,
    _wanted: Arc<AtomicBool>,
    _limits: Limits,
    _options: H264Feed,
) -> Result<(), CaptureError> {
    // `OpenedSource::open` refuses H.264 without the feature; this is only reached by a
    // pipeline built some other way.
    capture.stop();
    Err(CaptureError::H264Unsupported)
}

/// Encodes pictures as H.264 on this thread and sends each access unit on, in order;
/// H.264 from the source passes through. A new encoder starts (with a keyframe) when
/// the picture size changes, and a keyframe is forced when asked for and when the
/// source switches between video and placeholder pictures.
#[cfg(feature = "h264")]
fn feed_h264(
    capture: CaptureThread,
    tx: mpsc::Sender<Frame>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    wanted: Arc<AtomicBool>,
    limits: Limits,
    options: H264Feed,
) -> Result<(), CaptureError> {
    use vswa_codec::{H264Encoder, Image, PixelFormat};

    let h264 = h264_options(options.codec, options.fps);
    let started = Instant::now();
    let mut encoder: Option<H264Encoder> = None;
    let mut last_placeholder = false;
    let mut failure = None;
    while let Some((sequence, captured)) = next_captured(&capture, &shared, &stop, limits, started)
    {
        let mut tag = Tag {
            sequence,
            timestamp_us: captured.timestamp_us,
            placeholder: captured.placeholder,
            codec: Codec::H264,
            keyframe: false,
        };
        let image = match captured.content {
            FrameContent::Image(image) => image,
            FrameContent::Jpeg { data, .. } => match vswa_codec::decode(&data)
                .and_then(|d| Image::new(PixelFormat::Rgb8, d.width, d.height, d.rgb))
            {
                Ok(image) => image,
                Err(e) => {
                    shared.encode_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(sequence, "a JPEG from the source does not decode: {e}");
                    continue;
                }
            },
            FrameContent::H264 {
                data,
                keyframe,
                width,
                height,
            } => {
                shared.passthrough.fetch_add(1, Ordering::Relaxed);
                tag.keyframe = keyframe;
                if tx.blocking_send(frame(tag, width, height, data)).is_err() {
                    break;
                }
                continue;
            }
        };
        let size = (image.width, image.height);
        if encoder.as_ref().map(|e| (e.width(), e.height())) != Some(size) {
            match H264Encoder::new(size.0, size.1, &h264) {
                Ok(e) => encoder = Some(e),
                Err(e) => {
                    failure = Some(CaptureError::Encoder(e.to_string()));
                    break;
                }
            }
        }
        let encoder = encoder.as_mut().expect("created above");
        if wanted.swap(false, Ordering::Relaxed) || captured.placeholder != last_placeholder {
            encoder.force_keyframe();
        }
        last_placeholder = captured.placeholder;
        let began = Instant::now();
        let result = encoder.encode(&image);
        record_encode_time(&shared, began.elapsed());
        match result {
            Ok(Some(unit)) => {
                shared.encoded.fetch_add(1, Ordering::Relaxed);
                tag.keyframe = unit.keyframe;
                if tx
                    .blocking_send(frame(tag, dims(size.0), dims(size.1), unit.data))
                    .is_err()
                {
                    break;
                }
            }
            Ok(None) => {
                shared.skipped.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                shared.encode_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sequence, "H.264 encoding failed: {e}");
                // What follows may refer to the lost picture: start over at a keyframe.
                encoder.force_keyframe();
            }
        }
    }
    let end = capture_end(capture);
    match failure {
        Some(e) => Err(e),
        None => end,
    }
}

/// Folds one encode time into the moving average.
fn record_encode_time(shared: &Shared, took: Duration) {
    let us = took.as_micros() as u64;
    let avg = shared.encode_us_avg.load(Ordering::Relaxed);
    let avg = if avg == 0 { us } else { (avg * 7 + us) / 8 };
    shared.encode_us_avg.store(avg, Ordering::Relaxed);
}

fn collect(pool: Arc<EncoderPool<Tag>>, tx: mpsc::Sender<Frame>, shared: Arc<Shared>) {
    while let Some(encoded) = pool.recv() {
        if !encoded.passthrough {
            record_encode_time(&shared, encoded.encode_time);
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
            codec: VideoCodec::Jpeg,
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

    fn h264_config(spec: SourceSpec, codec: VideoCodec) -> PipelineConfig {
        PipelineConfig {
            spec,
            source: SourceConfig {
                width: 64,
                height: 48,
                fps: Some(60.0),
                ..SourceConfig::default()
            },
            codec,
            encode: EncodeOptions::default(),
            encode_threads: 1,
            count: Some(40),
            duration: None,
            backlog: 30,
        }
    }

    async fn all_frames(mut pipeline: Pipeline) -> (Vec<Frame>, PipelineStats) {
        let mut frames = Vec::new();
        while let Some(frame) = tokio::time::timeout(Duration::from_secs(20), pipeline.next())
            .await
            .expect("a frame within 20 s")
        {
            frames.push(frame);
        }
        let stats = pipeline.finish().await.unwrap();
        (frames, stats)
    }

    #[cfg(not(feature = "h264"))]
    #[test]
    fn h264_encoding_without_the_feature_is_refused_before_anything_starts() {
        let err = OpenedSource::open(h264_config(SourceSpec::Test, VideoCodec::H264_DEFAULT))
            .unwrap_err();
        assert!(matches!(err, CaptureError::H264Unsupported), "{err:?}");
        assert!(err.to_string().contains("`h264` feature"), "{err}");
    }

    /// The test pattern encoded as H.264: every frame is codec 2 with an Annex B
    /// payload that decodes in order, keyframes come at the interval and when asked for,
    /// and sequence numbers are the capture order.
    #[cfg(feature = "h264")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn test_pattern_as_h264_decodes_in_order_with_keyframes_where_due() {
        let codec = VideoCodec::H264 {
            bitrate_kbps: 500,
            keyframe_interval: Duration::from_millis(250), // 15 frames at 60 fps
        };
        let source = OpenedSource::open(h264_config(SourceSpec::Test, codec)).unwrap();
        let pipeline = source.start();
        pipeline.request_keyframe(); // before the first picture: it is one anyway
        let (frames, stats) = all_frames(pipeline).await;
        assert_eq!(frames.len(), 40);
        assert_eq!((stats.encoded, stats.skipped), (40, 0), "{stats:?}");
        let mut decoder = vswa_codec::H264Decoder::new().unwrap();
        let mut keyframes = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            let h = frame.header();
            assert_eq!((h.codec, h.sequence), (Codec::H264, i as u64));
            assert_eq!((h.width, h.height), (64, 48));
            let key = h.flags.contains(Flags::KEYFRAME);
            assert_eq!(key, vswa_codec::annexb::is_keyframe(frame.payload()), "{i}");
            if key {
                keyframes.push(i);
            }
            let picture = decoder.decode(frame.payload()).unwrap();
            assert!(picture.is_some(), "frame {i} decodes");
        }
        assert_eq!(keyframes, [0, 15, 30]);
    }

    #[cfg(feature = "h264")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_keyframe_request_makes_the_next_picture_a_keyframe() {
        let codec = VideoCodec::H264 {
            bitrate_kbps: 500,
            keyframe_interval: Duration::from_secs(3600),
        };
        let mut config = h264_config(SourceSpec::Test, codec);
        config.count = None;
        let mut pipeline = OpenedSource::open(config).unwrap().start();
        async fn key(pipeline: &mut Pipeline) -> bool {
            tokio::time::timeout(Duration::from_secs(20), pipeline.next())
                .await
                .unwrap()
                .unwrap()
                .header()
                .flags
                .contains(Flags::KEYFRAME)
        }
        assert!(key(&mut pipeline).await);
        for _ in 0..5 {
            assert!(!key(&mut pipeline).await);
        }
        pipeline.request_keyframe();
        // Frames already encoded come first; a keyframe within the backlog's worth.
        let mut waited = 0;
        loop {
            if key(&mut pipeline).await {
                break;
            }
            waited += 1;
            assert!(waited <= 32, "no keyframe after the request");
        }
        pipeline.finish().await.unwrap();
    }

    /// H.264 from an `h264:` source passes through a JPEG pipeline as codec 2, with the
    /// source's keyframe flags and size.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn h264_input_passes_through_as_h264() {
        let stream: Vec<u8> = [
            &[
                0u8, 0, 0, 1, 0x67, 0x42, 0xC0, 0x1E, 0xDA, 0x02, 0x80, 0xF6, 0x40,
            ][..],
            &[0, 0, 0, 1, 0x65, 0x88, 0x84],
            &[0, 0, 0, 1, 0x41, 0x9A, 0x02],
            &[0, 0, 0, 1, 0x41, 0x9A, 0x03],
        ]
        .concat();
        let path = std::env::temp_dir().join(format!("vswa-pass-{}.h264", std::process::id()));
        std::fs::write(&path, &stream).unwrap();
        let config = h264_config(
            SourceSpec::H264 {
                path: Some(path.clone()),
            },
            VideoCodec::Jpeg,
        );
        let (frames, stats) = all_frames(OpenedSource::open(config).unwrap().start()).await;
        std::fs::remove_file(&path).ok();
        let heads: Vec<_> = frames
            .iter()
            .map(|f| {
                let h = f.header();
                (
                    h.codec,
                    h.flags.contains(Flags::KEYFRAME),
                    h.width,
                    h.height,
                )
            })
            .collect();
        assert_eq!(
            heads,
            [
                (Codec::H264, true, 640, 480),
                (Codec::H264, false, 640, 480),
                (Codec::H264, false, 640, 480),
            ]
        );
        assert_eq!(stats.passthrough, 3);
        let payloads: Vec<u8> = frames.iter().flat_map(|f| f.payload().to_vec()).collect();
        assert_eq!(payloads, stream, "byte for byte");
    }
}
