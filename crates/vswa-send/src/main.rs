//! `vswa-send`: parses the command line and runs [`vswa_transport::pipeline::send`].

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

const DEFAULT_LOG: &str = "warn,vswa_transport=info";
use vswa_capture::{SourceConfig, SourceSpec};
use vswa_codec::{EncodeOptions, EncoderBackend, Subsampling};
use vswa_transport::pipeline::{
    frames_for, send, OpenedSource, PipelineConfig, SendStatus, DEFAULT_BACKLOG,
};
use vswa_transport::publisher::PublisherConfig;

/// Capture video, encode it as JPEG and publish it to a VSWA relay.
///
/// Example: vswa-send --url ws://127.0.0.1:8080/ws/publish/cam1 --source test --fps 30
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Relay publish URL: ws://HOST:PORT/ws/publish/NAME (or wss://).
    #[arg(long)]
    url: String,

    /// Publish token, sent as `Authorization: Bearer`.
    #[arg(long, env = "VSWA_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// What to send: test (moving test pattern), camera or camera:INDEX (webcam,
    /// needs the `camera` build feature), mjpeg:- (concatenated JPEGs on stdin, e.g.
    /// from `ffmpeg ... -f mjpeg -`), mjpeg:PATH, or replay:FILE (a vswa-recv recording).
    #[arg(long, default_value = "test", value_parser = parse_source)]
    source: SourceSpec,

    /// Picture size WIDTHxHEIGHT for the test pattern and the camera request.
    #[arg(long, default_value = "640x480", value_parser = vswa_transport::cli::parse_size)]
    size: (u32, u32),

    /// Frames per second (test pattern and camera: capture rate; files and replays:
    /// playback rate; default 30, replays keep their recorded pace).
    #[arg(long, value_parser = parse_fps)]
    fps: Option<f64>,

    /// JPEG quality, 1 (smallest) to 100 (best).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,

    /// Chroma subsampling: 420, 422 or 444.
    #[arg(long, default_value = "420", value_parser = parse_subsampling)]
    subsampling: Subsampling,

    /// Encoder threads (default: one per CPU core).
    #[arg(long)]
    encode_threads: Option<usize>,

    /// Use libjpeg-turbo to encode (needs the `turbojpeg` build feature).
    #[arg(long)]
    turbojpeg: bool,

    /// Milliseconds of video a live source (test pattern, camera) may queue, before
    /// encoding and again before the network, when the machine or the network briefly
    /// falls behind; beyond that frames are dropped and counted. More rides out longer
    /// hiccups; less keeps latency lower when the network stays too slow. Each queue
    /// holds at least 2 and at most 30 frames, whatever the rate.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_BACKLOG.as_millis() as u64, value_parser = clap::value_parser!(u64).range(0..=5000))]
    backlog: u64,

    /// Stop after this many frames (frames a live source dropped count too, so
    /// sequence numbers end at N-1).
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,

    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,

    /// Start a replay over when it ends.
    #[arg(long = "loop")]
    loop_replay: bool,

    /// Seconds to keep trying to reach the relay at startup.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,

    /// Extra CA certificate (PEM) to trust for wss:// (e.g. a self-signed relay).
    #[arg(long)]
    ca_cert: Option<PathBuf>,

    /// No live status line.
    #[arg(long, short)]
    quiet: bool,
}

fn parse_source(s: &str) -> Result<SourceSpec, String> {
    s.parse()
        .map_err(|e: vswa_capture::CaptureError| e.to_string())
}

fn parse_fps(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 && f <= 1000.0 => Ok(f),
        _ => Err(format!(
            "{s:?}: frame rate must be a number above 0 and at most 1000"
        )),
    }
}

fn parse_subsampling(s: &str) -> Result<Subsampling, String> {
    match s {
        "420" | "4:2:0" => Ok(Subsampling::S420),
        "422" | "4:2:2" => Ok(Subsampling::S422),
        "444" | "4:4:4" => Ok(Subsampling::S444),
        _ => Err(format!("{s:?}: use 420, 422 or 444")),
    }
}

fn positive_secs(name: &str, v: f64) -> anyhow::Result<Duration> {
    if !(v.is_finite() && v > 0.0) {
        anyhow::bail!("--{name} must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(v))
}

fn status_line(s: &SendStatus) -> String {
    let secs = s.elapsed.as_secs_f64().max(0.001);
    format!(
        "{:>6.1}s  sent {:>6}  {:>5.1} fps  encode {:>5.1} ms  {:>7.0} kbit/s  dropped {}  viewers {}{}",
        secs,
        s.publisher.sent,
        s.publisher.sent as f64 / secs,
        s.pipeline.encode_ms,
        s.publisher.bytes as f64 * 8.0 / 1000.0 / secs,
        s.dropped(),
        s.publisher.viewers,
        if s.publisher.connected || s.publisher.sent == 0 && s.elapsed.is_zero() { "" } else { "  (disconnected)" }
    )
}

async fn run(args: Args) -> anyhow::Result<SendStatus> {
    let mut encode = EncodeOptions::new(args.quality)?;
    encode.subsampling = args.subsampling;
    if args.turbojpeg {
        if !EncoderBackend::TurboJpeg.is_available() {
            anyhow::bail!("--turbojpeg needs a build with the `turbojpeg` feature");
        }
        encode.backend = EncoderBackend::TurboJpeg;
    }
    let threads = args
        .encode_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let duration = args
        .duration
        .map(|d| positive_secs("duration", d))
        .transpose()?;
    let mut publisher = PublisherConfig::new(args.url.clone());
    publisher.connect.token = args.token.clone().filter(|t| !t.is_empty());
    publisher.connect.ca_cert = args.ca_cert.clone();
    publisher.initial_timeout = positive_secs("connect-timeout", args.connect_timeout)?;
    let backlog = frames_for(Duration::from_millis(args.backlog), args.fps);
    publisher.queue = backlog;
    publisher.connect.validate()?;
    let source = OpenedSource::open(PipelineConfig {
        spec: args.source.clone(),
        source: SourceConfig {
            width: args.size.0,
            height: args.size.1,
            fps: args.fps,
            loop_replay: args.loop_replay,
        },
        encode,
        encode_threads: threads,
        count: args.count,
        duration,
        backlog,
    })?;
    eprintln!("vswa-send: {} -> {}", source.describe(), args.url);
    let show = !args.quiet && std::io::stderr().is_terminal();
    let summary = send(
        source,
        publisher,
        vswa_transport::cli::shutdown_signal(),
        |s| {
            if show {
                eprint!("\r{}\x1b[K", status_line(s));
            }
        },
    )
    .await?;
    if show {
        eprintln!();
    }
    Ok(summary)
}

fn main() -> ExitCode {
    let args: Args = vswa_transport::cli::parse_args("vswa-send");
    vswa_transport::cli::init_tracing(DEFAULT_LOG);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vswa-send: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(summary) => {
            let mut summary = summary;
            summary.publisher.connected = true;
            eprintln!("vswa-send: done: {}", status_line(&summary).trim_start());
            if summary.dropped() > 0 {
                eprintln!(
                    "vswa-send: dropped {} before encoding (capture outran the encoder), {} at the network queue",
                    summary.pipeline.dropped, summary.publisher.dropped
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vswa-send: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
