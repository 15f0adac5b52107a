//! The `vswa-send` command line: clap arguments whose defaults come from
//! [`SendConfig::new`], turned into a [`SendConfig`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use vswa_capture::{SourceSpec, VideoCodec};
use vswa_cli as cli;
use vswa_codec::{EncoderBackend, Subsampling};

use crate::SendConfig;

/// Capture video, encode it as JPEG or H.264 and publish it to a VSWA relay.
#[derive(Debug, Parser)]
#[command(
    name = "vswa-send",
    version,
    about,
    after_help = "Example: vswa-send --url ws://127.0.0.1:8080/ws/publish/cam1 --source test --fps 30\n\
                  H.264:   vswa-send --url ws://127.0.0.1:8080/ws/publish/cam1 --codec h264 --bitrate 2000\n\
                  \x20        ffmpeg -i in.mp4 -c:v libx264 -bf 0 -f h264 - | vswa-send --url ... --source h264:-\n\
                  \n\
                  Exit status:\n\
                  \x20 0  the source ended, --count or --duration was reached, or Ctrl-C\n\
                  \x20 1  other failure\n\
                  \x20 2  bad arguments or URL (e.g. an invalid stream name)\n\
                  \x20 3  refused by the relay (token, stream busy, limits)\n\
                  \x20 4  relay unreachable\n\
                  \x20 5  I/O: the source cannot be read or holds no frames"
)]
pub struct Args {
    /// Relay publish URL: ws://HOST:PORT/ws/publish/NAME (or wss://).
    #[arg(long)]
    url: String,

    /// Publish token, sent as `Authorization: Bearer`.
    #[arg(long, env = "VSWA_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// What to send: test (moving test pattern), camera or camera:INDEX (webcam,
    /// needs the `camera` build feature), mjpeg:- (concatenated JPEGs on stdin, e.g.
    /// from `ffmpeg ... -f mjpeg -`), mjpeg:PATH, h264:- (an H.264 Annex B stream on
    /// stdin, e.g. from `ffmpeg ... -c:v libx264 -bf 0 -f h264 -`, sent as it is),
    /// h264:PATH, or replay:FILE (a vswa-recv recording, any codec).
    #[arg(long, default_value_t = defaults().pipeline.spec, value_parser = parse_source)]
    source: SourceSpec,

    /// Picture size WIDTHxHEIGHT for the test pattern and the camera request.
    #[arg(long, default_value_t = default_size(), value_parser = cli::parse_size)]
    size: cli::Size,

    /// Frames per second (test pattern and camera: capture rate; files and replays:
    /// playback rate; default 30, replays keep their recorded pace).
    #[arg(long, value_parser = parse_fps)]
    fps: Option<f64>,

    /// What to encode pictures as: jpeg, or h264 (about 10x fewer bytes; needs the
    /// `h264` build feature). Encoded input (mjpeg:, h264:, replay:) is sent as it
    /// is, except JPEGs with --codec h264, which are re-encoded.
    #[arg(long, default_value = "jpeg", value_parser = ["jpeg", "h264"])]
    codec: String,

    /// H.264 bitrate in kbit/s, held constant (default 2000: sharp 720p).
    #[arg(long, value_name = "KBPS", value_parser = clap::value_parser!(u32).range(1..=240_000))]
    bitrate: Option<u32>,

    /// Seconds between H.264 keyframes (default 2). Viewers joining start at the
    /// latest one; a viewer that falls behind resumes at the next.
    #[arg(long, value_name = "SECS")]
    keyframe_interval: Option<f64>,

    /// JPEG quality, 1 (smallest) to 100 (best).
    #[arg(long, default_value_t = defaults().pipeline.encode.quality, value_parser = clap::value_parser!(u8).range(1..=100))]
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
    #[arg(long, value_name = "MS", default_value_t = defaults().backlog.as_millis() as u64, value_parser = clap::value_parser!(u64).range(0..=5000))]
    backlog: u64,

    /// Never send a frame that waited longer than this in the send queue (a congested
    /// uplink drops old frames instead of sending them late); 0 = off.
    #[arg(long, value_name = "MS", default_value_t = defaults().publisher.max_latency.as_millis() as u64)]
    max_latency: u64,

    /// Capture only while someone watches: when the relay reports no viewers for
    /// --on-demand-hold seconds, close the source (the camera) and idle with the
    /// connection open; the first viewer restarts it (video within about a second).
    /// Live sources only (test pattern, camera).
    #[arg(long, conflicts_with_all = ["count", "duration"])]
    on_demand: bool,

    /// With --on-demand: seconds without viewers before the source is closed.
    #[arg(long, value_name = "SECS", requires = "on_demand", default_value_t = defaults().on_demand_hold.as_secs_f64())]
    on_demand_hold: f64,

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

    /// Give up (exit 5) when the camera has been missing this many seconds, at start or
    /// after it was unplugged. Without it, vswa-send waits for the camera forever and
    /// sends "NO SIGNAL" frames meanwhile.
    #[arg(long, value_name = "SECS")]
    camera_wait: Option<f64>,

    /// Seconds to keep trying to reach the relay at startup.
    #[arg(long, default_value_t = defaults().publisher.initial_timeout.as_secs_f64())]
    connect_timeout: f64,

    /// Extra CA certificate (PEM) to trust for wss:// (e.g. a self-signed relay).
    #[arg(long)]
    ca_cert: Option<PathBuf>,

    /// No live status line.
    #[arg(long, short)]
    pub quiet: bool,
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

impl Args {
    /// The codec settings: `--bitrate` and `--keyframe-interval` are for H.264 only.
    fn codec(&self) -> Result<VideoCodec, String> {
        if self.codec == "jpeg" {
            if self.bitrate.is_some() || self.keyframe_interval.is_some() {
                return Err(
                    "--bitrate and --keyframe-interval are for --codec h264 (JPEG has --quality)"
                        .into(),
                );
            }
            return Ok(VideoCodec::Jpeg);
        }
        let keyframe_interval = match self.keyframe_interval {
            None => vswa_capture::DEFAULT_KEYFRAME_INTERVAL,
            Some(s) if s.is_finite() && s > 0.0 && s <= 3600.0 => Duration::from_secs_f64(s),
            Some(s) => {
                return Err(format!(
                    "--keyframe-interval {s}: give a number of seconds above 0 and at most 3600"
                ))
            }
        };
        Ok(VideoCodec::H264 {
            bitrate_kbps: self
                .bitrate
                .unwrap_or(vswa_capture::DEFAULT_H264_BITRATE_KBPS),
            keyframe_interval,
        })
    }
}

fn defaults() -> SendConfig {
    SendConfig::new("")
}

fn default_size() -> cli::Size {
    let source = defaults().pipeline.source;
    cli::Size {
        width: source.width,
        height: source.height,
    }
}

impl Args {
    /// The configuration these arguments describe.
    pub fn config(&self) -> Result<SendConfig, String> {
        let mut c = SendConfig::new(self.url.clone());
        let p = &mut c.pipeline;
        p.spec = self.source.clone();
        (p.source.width, p.source.height) = (self.size.width, self.size.height);
        p.source.fps = self.fps;
        p.source.loop_replay = self.loop_replay;
        p.source.camera_wait = self
            .camera_wait
            .map(|s| {
                if s.is_finite() && s >= 0.0 {
                    Ok(std::time::Duration::from_secs_f64(s))
                } else {
                    Err(format!(
                        "--camera-wait {s}: give a number of seconds, 0 or more"
                    ))
                }
            })
            .transpose()?;
        p.codec = self.codec()?;
        p.encode.quality = self.quality;
        p.encode.subsampling = self.subsampling;
        if self.turbojpeg {
            p.encode.backend = EncoderBackend::TurboJpeg;
        }
        p.encode_threads = self.encode_threads.unwrap_or(p.encode_threads).max(1);
        p.count = self.count;
        p.duration = self
            .duration
            .map(|d| cli::positive_seconds("duration", d))
            .transpose()?;
        let publisher = &mut c.publisher;
        publisher.connect.token = self.token.clone().filter(|t| !t.is_empty());
        publisher.connect.ca_cert = self.ca_cert.clone();
        publisher.initial_timeout = cli::positive_seconds("connect-timeout", self.connect_timeout)?;
        publisher.max_latency = Duration::from_millis(self.max_latency);
        c.backlog = Duration::from_millis(self.backlog);
        c.on_demand = self.on_demand;
        if !(self.on_demand_hold.is_finite() && self.on_demand_hold >= 0.0) {
            return Err(format!(
                "--on-demand-hold {}: give a number of seconds, 0 or more",
                self.on_demand_hold
            ));
        }
        c.on_demand_hold = Duration::from_secs_f64(self.on_demand_hold);
        Ok(c)
    }
}
