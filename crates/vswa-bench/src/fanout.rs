//! One load run: N viewers and one publisher against a running relay.
//!
//! The viewers may be spread over several relays (round-robin over `urls`) and the
//! publisher may connect to yet another one (`publish_url`): with relays in a cluster
//! this measures the hop between them, since latency is always publisher send time to
//! viewer receipt on this machine's clock. The report then breaks delivery and latency
//! down per viewer URL ([`UrlReport`]).
//!
//! Viewers connect first (a bounded number of handshakes at a time); the publisher then
//! sends one second of warm-up frames that are not counted, then paced frames for the
//! run's duration. Each viewer is one task with one reused read buffer; it decodes the
//! VSWA header of each binary message and records latency into its own histogram.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};
use vswa_protocol::websocket as ws;
use vswa_protocol::{FrameHeader, HEADER_LEN};

use crate::client::{self, Event, FrameScanner, Target};
use crate::hist::Histogram;
use crate::procstat::{status_kib, CpuClock};
use crate::replay::Replay;

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    /// Relay base URLs the viewers connect to, `ws://HOST:PORT`; viewer `i` uses
    /// `urls[i % urls.len()]` (so a URL listed k times gets k shares of the viewers).
    pub urls: Vec<String>,
    /// Relay base URL the publisher connects to.
    pub publish_url: String,
    /// Stream name.
    pub stream: String,
    /// Viewers to open.
    pub viewers: usize,
    /// Payload bytes per frame (at least 4: FF D8 ... FF D9); unused with `replay`.
    pub frame_bytes: usize,
    /// Publish these frames in a loop instead of synthetic JPEG payloads.
    pub replay: Option<Arc<Replay>>,
    /// Frames per second.
    pub fps: f64,
    /// Measured publishing time.
    pub duration: Duration,
    /// Relay process to read CPU and memory of.
    pub relay_pid: Option<u32>,
    /// More processes (another relay, a NATS server) to read CPU of, same window.
    pub cpu_pids: Vec<u32>,
    /// Per-viewer socket read buffer.
    pub read_buf: usize,
    /// Handshakes in flight at once.
    pub connect_concurrency: usize,
}

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    /// Relay URL(s) of the viewers, comma-separated.
    pub url: String,
    /// Relay URL of the publisher.
    pub publish_url: String,
    /// Viewers asked for.
    pub viewers_requested: usize,
    /// Viewers whose upgrade succeeded.
    pub viewers_connected: usize,
    /// Payload bytes per frame (the mean over the file's frames with `--replay`).
    pub frame_bytes: usize,
    /// With `--replay`: what the file held (`h264`, `mjpeg`, `recording`), its frame
    /// count and keyframe count, e.g. `h264: 300 frames, 5 keyframes`.
    pub replay: Option<String>,
    /// Target frame rate.
    pub fps: f64,
    /// Frames published in the measured window.
    pub frames_published: u64,
    /// Measured publishing time in seconds.
    pub publish_seconds: f64,
    /// Frames received by viewers in the window, summed over viewers.
    pub frames_delivered: u64,
    /// `frames_delivered / (frames_published * viewers_requested)`.
    pub delivered_fraction: f64,
    /// Delivered frame bytes (VSWA header + payload) per second, all viewers (counted
    /// frames only).
    pub delivered_bytes_per_s: f64,
    /// Latency percentiles in milliseconds (capture timestamp to viewer read).
    pub latency_p50_ms: f64,
    /// 90th percentile.
    pub latency_p90_ms: f64,
    /// 99th percentile.
    pub latency_p99_ms: f64,
    /// Largest latency.
    pub latency_max_ms: f64,
    /// Frames missing between consecutive received sequence numbers, summed over viewers.
    pub sequence_gaps: u64,
    /// Viewers that lost their connection during the run.
    pub viewers_disconnected: usize,
    /// Relay CPU seconds (user + system) over the measured publishing window, with
    /// `--relay-pid`.
    pub relay_cpu_s: Option<f64>,
    /// Relay CPU seconds per second of the window (1.0 = one core busy).
    pub relay_cpu_cores: Option<f64>,
    /// Relay resident memory once all viewers were connected, before publishing, KiB.
    pub relay_rss_connected_kib: Option<u64>,
    /// Largest sampled relay resident memory during the run, KiB.
    pub relay_rss_peak_kib: Option<u64>,
    /// This tool's own CPU seconds over the window (it shares the machine).
    pub bench_cpu_s: f64,
    /// Delivery and latency per distinct viewer URL, in the order of `urls`.
    pub by_url: Vec<UrlReport>,
    /// CPU of the `cpu_pids` processes over the measured window.
    pub cpu: Vec<ProcessCpu>,
}

/// Delivery and latency of the viewers of one relay URL.
#[derive(Debug, Clone, Serialize)]
pub struct UrlReport {
    /// Relay URL.
    pub url: String,
    /// Viewers asked for on this URL.
    pub viewers_requested: usize,
    /// Viewers whose upgrade succeeded.
    pub viewers_connected: usize,
    /// Frames received in the window, summed over these viewers.
    pub frames_delivered: u64,
    /// `frames_delivered / (frames_published * viewers_requested)`.
    pub delivered_fraction: f64,
    /// Latency percentiles and maximum in milliseconds.
    pub latency_p50_ms: f64,
    /// 90th percentile.
    pub latency_p90_ms: f64,
    /// 99th percentile.
    pub latency_p99_ms: f64,
    /// Largest latency.
    pub latency_max_ms: f64,
    /// Frames missing between consecutive received sequence numbers.
    pub sequence_gaps: u64,
    /// Viewers that lost their connection during the run.
    pub viewers_disconnected: usize,
}

/// CPU seconds (user + system) of one process over the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessCpu {
    /// Process id.
    pub pid: u32,
    /// CPU seconds (`None`: the process was gone).
    pub cpu_s: Option<f64>,
    /// CPU seconds per second of the window.
    pub cores: Option<f64>,
}

/// Shared between the publisher, the viewers and the run.
#[derive(Debug)]
struct Window {
    /// First counted sequence (u64::MAX until warm-up is over).
    from: AtomicU64,
    /// Last counted sequence (u64::MAX while publishing).
    to: AtomicU64,
}

/// Viewer results summed up (over all viewers, or those of one URL).
#[derive(Debug, Default)]
struct Tally {
    requested: usize,
    connected: usize,
    disconnected: usize,
    frames: u64,
    bytes: u64,
    gaps: u64,
    hist: Histogram,
}

impl Tally {
    fn add(&mut self, r: &ViewerResult) {
        self.requested += 1;
        self.connected += usize::from(r.connected);
        self.disconnected += usize::from(r.disconnected);
        self.frames += r.frames;
        self.bytes += r.bytes;
        self.gaps += r.gaps;
        self.hist.merge(&r.hist);
    }
}

#[derive(Debug, Default)]
struct ViewerResult {
    connected: bool,
    disconnected: bool,
    frames: u64,
    /// VSWA header + payload bytes of the counted frames.
    bytes: u64,
    gaps: u64,
    hist: Histogram,
}

/// Runs one fan-out measurement.
pub async fn run(cfg: &FanoutConfig) -> anyhow::Result<FanoutReport> {
    if cfg.replay.is_none() && cfg.frame_bytes < 4 {
        bail!("--frame-bytes must be at least 4 (FF D8 ... FF D9)");
    }
    if !(cfg.fps.is_finite() && cfg.fps > 0.0 && cfg.fps <= 1000.0) {
        bail!("--fps must be between 0 and 1000");
    }
    if cfg.urls.is_empty() {
        bail!("no relay URL for the viewers");
    }
    let mut targets = Vec::with_capacity(cfg.urls.len());
    for url in &cfg.urls {
        targets.push(Target::resolve(url).await?);
    }
    let publish_target = Target::resolve(&cfg.publish_url).await?;
    let n = cfg.viewers;
    let window = Arc::new(Window {
        from: AtomicU64::new(u64::MAX),
        to: AtomicU64::new(u64::MAX),
    });
    let last_seen: Arc<[AtomicU64]> = (0..n).map(|_| AtomicU64::new(0)).collect();
    let ready = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(cfg.connect_concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let path = format!("/ws/watch/{}", cfg.stream);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let v = ViewerTask {
            target: targets[i % targets.len()].clone(),
            path: path.clone(),
            seed: i as u64,
            window: window.clone(),
            last_seen: last_seen.clone(),
            index: i,
            ready: ready.clone(),
            gate: gate.clone(),
            stop: stop_rx.clone(),
            read_buf: cfg.read_buf,
        };
        tasks.push(tokio::spawn(v.run()));
    }
    // Wait for every handshake to finish (or fail), bounded.
    let connect_limit = Duration::from_secs(10 + (n / 100) as u64);
    let t0 = Instant::now();
    while ready.load(Ordering::Relaxed) < n && t0.elapsed() < connect_limit {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the relay register the last viewers (the 101 can precede registration).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_connected = cfg.relay_pid.and_then(|p| status_kib(p, "VmRSS"));

    let clocks = Clocks {
        relay: cfg.relay_pid.map(|p| CpuClock::new(Some(p))),
        this: CpuClock::new(None),
        others: cfg
            .cpu_pids
            .iter()
            .map(|&p| CpuClock::new(Some(p)))
            .collect(),
    };
    let rss_peak = Arc::new(AtomicU64::new(rss_connected.unwrap_or(0)));
    let sampler = cfg.relay_pid.map(|pid| {
        let peak = rss_peak.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                if let Some(kib) = status_kib(pid, "VmRSS") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::select! {
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        })
    });

    let publish = publish(&publish_target, cfg, &window, &clocks).await;
    // CPU is read at the end of publishing, so the drain wait below does not dilute it.
    let cpu_end = clocks.read();
    // Drain: wait until every connected viewer saw the last frame, at most 3 s.
    let to = window.to.load(Ordering::Relaxed);
    let drain_start = Instant::now();
    while drain_start.elapsed() < Duration::from_secs(3) {
        let behind = last_seen
            .iter()
            .filter(|s| {
                let s = s.load(Ordering::Relaxed);
                s != u64::MAX && s < to.wrapping_add(1)
            })
            .count();
        if behind == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    let (published, seconds, cpu_start) = publish?;
    let relay_cpu_s = cpu_start.relay.zip(cpu_end.relay).map(|(s, e)| e - s);
    let bench_cpu_s = cpu_end.this - cpu_start.this;

    // Totals over all viewers, and per distinct viewer URL (viewer i used
    // urls[i % len]; a URL listed twice has two shares of the viewers, one entry).
    let mut distinct: Vec<&String> = Vec::new();
    let slot: Vec<usize> = cfg
        .urls
        .iter()
        .map(|u| match distinct.iter().position(|d| *d == u) {
            Some(k) => k,
            None => {
                distinct.push(u);
                distinct.len() - 1
            }
        })
        .collect();
    let mut all = Tally::default();
    let mut per_url: Vec<Tally> = distinct.iter().map(|_| Tally::default()).collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let r = tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .context("a viewer task did not stop")?
            .context("a viewer task panicked")?;
        per_url[slot[i % slot.len()]].add(&r);
        all.add(&r);
    }
    if let Some(s) = sampler {
        let _ = s.await;
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let fraction = |frames: u64, viewers: usize| {
        let expected = published as f64 * viewers as f64;
        if expected > 0.0 {
            frames as f64 / expected
        } else {
            0.0
        }
    };
    let by_url = distinct
        .iter()
        .zip(&per_url)
        .map(|(url, t)| UrlReport {
            url: (*url).clone(),
            viewers_requested: t.requested,
            viewers_connected: t.connected,
            frames_delivered: t.frames,
            delivered_fraction: fraction(t.frames, t.requested),
            latency_p50_ms: ms(t.hist.quantile(0.50)),
            latency_p90_ms: ms(t.hist.quantile(0.90)),
            latency_p99_ms: ms(t.hist.quantile(0.99)),
            latency_max_ms: ms(t.hist.max()),
            sequence_gaps: t.gaps,
            viewers_disconnected: t.disconnected,
        })
        .collect();
    let cpu = cfg
        .cpu_pids
        .iter()
        .zip(cpu_start.others.iter().zip(&cpu_end.others))
        .map(|(&pid, (start, end))| {
            let cpu_s = start.zip(*end).map(|(s, e)| e - s);
            ProcessCpu {
                pid,
                cpu_s,
                cores: cpu_s.map(|c| c / seconds.max(1e-9)),
            }
        })
        .collect();
    let Tally {
        connected,
        disconnected,
        frames,
        bytes,
        gaps,
        ref hist,
        ..
    } = all;
    Ok(FanoutReport {
        url: distinct
            .iter()
            .map(|u| u.as_str())
            .collect::<Vec<_>>()
            .join(","),
        publish_url: cfg.publish_url.clone(),
        viewers_requested: n,
        viewers_connected: connected,
        frame_bytes: match &cfg.replay {
            Some(r) => r.mean_payload().round() as usize,
            None => cfg.frame_bytes,
        },
        replay: cfg.replay.as_ref().map(|r| {
            format!(
                "{}: {} frames, {} keyframes",
                r.kind,
                r.frames.len(),
                r.keyframes()
            )
        }),
        fps: cfg.fps,
        frames_published: published,
        publish_seconds: seconds,
        frames_delivered: frames,
        delivered_fraction: fraction(frames, n),
        delivered_bytes_per_s: bytes as f64 / seconds.max(1e-9),
        latency_p50_ms: ms(hist.quantile(0.50)),
        latency_p90_ms: ms(hist.quantile(0.90)),
        latency_p99_ms: ms(hist.quantile(0.99)),
        latency_max_ms: ms(hist.max()),
        sequence_gaps: gaps,
        viewers_disconnected: disconnected,
        relay_cpu_cores: relay_cpu_s.map(|c| c / seconds.max(1e-9)),
        relay_cpu_s,
        relay_rss_connected_kib: rss_connected,
        relay_rss_peak_kib: cfg.relay_pid.map(|_| rss_peak.load(Ordering::Relaxed)),
        bench_cpu_s,
        by_url,
        cpu,
    })
}

/// The CPU clocks a run reads at the start and the end of its measured window.
struct Clocks {
    relay: Option<CpuClock>,
    this: CpuClock,
    others: Vec<CpuClock>,
}

/// CPU seconds read from [`Clocks`] at one time.
struct CpuReading {
    relay: Option<f64>,
    this: f64,
    others: Vec<Option<f64>>,
}

impl Clocks {
    fn read(&self) -> CpuReading {
        CpuReading {
            relay: self.relay.as_ref().and_then(CpuClock::seconds),
            this: self.this.seconds().unwrap_or(0.0),
            others: self.others.iter().map(CpuClock::seconds).collect(),
        }
    }
}

type PublishResult = (u64, f64, CpuReading);

/// Publishes warm-up then measured frames. Returns frames published in the window, the
/// window's length, and the CPU clocks read at its start.
async fn publish(
    target: &Target,
    cfg: &FanoutConfig,
    window: &Window,
    clocks: &Clocks,
) -> anyhow::Result<PublishResult> {
    let (stream, _early) =
        client::connect(target, &format!("/ws/publish/{}", cfg.stream), u64::MAX)
            .await
            .context("publisher")?;
    let (mut rd, mut wr) = stream.into_split();
    // Drain what the relay sends the publisher (hello, viewer counts, pings); answer pings.
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let mut scanner = FrameScanner::default();
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(k) => {
                    let mut pong = None;
                    scanner.feed(&buf[..k], |e| {
                        if let Event::Ping(p) = e {
                            let mut f = Vec::with_capacity(p.len() + 6);
                            ws::put_client_header(&mut f, 0xA, p.len() as u64);
                            f.extend_from_slice(p);
                            pong = Some(f);
                        }
                    });
                    if let Some(f) = pong {
                        let _ = pong_tx.try_send(f);
                    }
                }
            }
        }
    });
    let mut messages = match &cfg.replay {
        Some(replay) => replay
            .frames
            .iter()
            .map(|f| {
                let header = FrameHeader::h264(0, 0, replay.width, replay.height, f.keyframe);
                Message::new(
                    FrameHeader {
                        codec: f.codec,
                        ..header
                    },
                    &f.payload,
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => {
            let b = cfg.frame_bytes;
            let mut payload = vec![0x55; b];
            payload[..2].copy_from_slice(&[0xff, 0xd8]);
            payload[b - 2..].copy_from_slice(&[0xff, 0xd9]);
            vec![Message::new(FrameHeader::jpeg(0, 0, 640, 480), &payload)?]
        }
    };

    let period = Duration::from_secs_f64(1.0 / cfg.fps);
    let warmup = (cfg.fps.ceil() as u64).max(5);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let write_limit = Duration::from_secs(5);
    let mut seq = 0u64;
    let mut started: Option<(Instant, CpuReading)> = None;
    let result = loop {
        tick.tick().await;
        if seq == warmup {
            window.from.store(seq, Ordering::Relaxed);
            started = Some((Instant::now(), clocks.read()));
        }
        if let Some((t, ..)) = started {
            if t.elapsed() >= cfg.duration {
                break Ok(());
            }
        }
        while let Ok(pong) = pong_rx.try_recv() {
            wr.write_all(&pong).await?;
        }
        let n = messages.len();
        let msg = &mut messages[(seq % n as u64) as usize];
        let timestamp_us = vswa_protocol::timestamp_us(std::time::SystemTime::now());
        msg.stamp(seq, timestamp_us);
        match tokio::time::timeout(write_limit, wr.write_all(&msg.bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => break Err(anyhow::Error::from(e).context("publisher write failed")),
            Err(_) => break Err(anyhow::anyhow!("publisher write blocked for 5 s")),
        }
        seq += 1;
    };
    let Some((t, cpu)) = started else {
        reader.abort();
        result?;
        bail!("publisher stopped during warm-up");
    };
    let seconds = t.elapsed().as_secs_f64();
    window.to.store(seq.saturating_sub(1), Ordering::Relaxed);
    reader.abort();
    result?;
    // Keep the publisher connected until the viewers drained; dropping `wr` closes it.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let _ = wr.shutdown().await;
    });
    Ok((seq - warmup, seconds, cpu))
}

/// One publisher message: a client WebSocket frame holding a VSWA frame, whose sequence
/// and timestamp are rewritten before each send.
struct Message {
    bytes: Vec<u8>,
    /// Where the VSWA header starts.
    at: usize,
    header: FrameHeader,
}

impl Message {
    fn new(mut header: FrameHeader, payload: &[u8]) -> anyhow::Result<Message> {
        header.payload_len = u32::try_from(payload.len()).context("frame too large")?;
        let mut bytes = Vec::with_capacity(payload.len() + HEADER_LEN + 14);
        ws::put_client_header(&mut bytes, 0x2, (HEADER_LEN + payload.len()) as u64);
        let at = bytes.len();
        bytes.extend_from_slice(&header.to_bytes());
        bytes.extend_from_slice(payload);
        Ok(Message { bytes, at, header })
    }

    fn stamp(&mut self, sequence: u64, timestamp_us: u64) {
        self.header.sequence = sequence;
        self.header.timestamp_us = timestamp_us;
        self.bytes[self.at..self.at + HEADER_LEN].copy_from_slice(&self.header.to_bytes());
    }
}

struct ViewerTask {
    target: Target,
    path: String,
    seed: u64,
    window: Arc<Window>,
    last_seen: Arc<[AtomicU64]>,
    index: usize,
    ready: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    read_buf: usize,
}

impl ViewerTask {
    async fn run(mut self) -> ViewerResult {
        let mut out = ViewerResult::default();
        let conn = {
            let _permit = self.gate.acquire().await;
            tokio::time::timeout(
                Duration::from_secs(10),
                client::connect(&self.target, &self.path, self.seed),
            )
            .await
        };
        self.ready.fetch_add(1, Ordering::Relaxed);
        let seen = &self.last_seen[self.index];
        let (mut stream, early) = match conn {
            Ok(Ok(c)) => c,
            _ => {
                seen.store(u64::MAX, Ordering::Relaxed);
                return out;
            }
        };
        out.connected = true;
        let mut buf = vec![0u8; self.read_buf.max(1024).max(early.len())];
        let mut scanner = FrameScanner::default();
        let mut last: Option<u64> = None;
        let mut pong: Vec<u8> = Vec::with_capacity(131);
        let mut pending = early.len();
        buf[..pending].copy_from_slice(&early);
        loop {
            if pending > 0 {
                let window = &self.window;
                let (from, to) = (
                    window.from.load(Ordering::Relaxed),
                    window.to.load(Ordering::Relaxed),
                );
                let mut closed = false;
                scanner.feed(&buf[..pending], |e| match e {
                    Event::Frame {
                        sequence,
                        timestamp_us,
                        len,
                    } => {
                        if sequence >= from && sequence <= to {
                            out.frames += 1;
                            out.bytes += len;
                            out.hist.record(
                                vswa_protocol::timestamp_us(std::time::SystemTime::now())
                                    .saturating_sub(timestamp_us),
                            );
                            if let Some(l) = last.filter(|l| *l >= from) {
                                if sequence > l + 1 {
                                    out.gaps += sequence - l - 1;
                                }
                            }
                        }
                        last = Some(sequence);
                        seen.store(sequence, Ordering::Relaxed);
                    }
                    Event::Ping(p) => {
                        pong.clear();
                        ws::put_client_header(&mut pong, 0xA, p.len() as u64);
                        pong.extend_from_slice(p);
                    }
                    Event::Close => closed = true,
                    Event::Other => {}
                });
                if closed {
                    out.disconnected = !*self.stop.borrow();
                    return out;
                }
                if !pong.is_empty() {
                    if stream.write_all(&pong).await.is_err() {
                        out.disconnected = true;
                        return out;
                    }
                    pong.clear();
                }
            }
            tokio::select! {
                r = stream.read(&mut buf) => match r {
                    Ok(0) | Err(_) => {
                        out.disconnected = !*self.stop.borrow();
                        return out;
                    }
                    Ok(k) => pending = k,
                },
                _ = self.stop.changed() => return out,
            }
        }
    }
}
