//! The `vswa-recv` command line: clap arguments turned into a [`RecvConfig`].

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::{RecvConfig, RecvError, SinkConfig};

/// Watch a live VSWA stream (JPEG or H.264) without a browser: save frames as JPEGs,
/// record the stream, pipe it as MJPEG or H.264 to ffplay/ffmpeg, or show it in a
/// window, while reporting fps, capture-to-receive latency, drops and bitrate. Outputs
/// can be combined; with none it only measures.
#[derive(Debug, Parser)]
#[command(
    name = "vswa-recv",
    version,
    about,
    after_help = "Placeholder (\"no signal\") frames are written to every output like other frames.\n\
                  \n\
                  H.264 streams: --h264 and --record take them as they are; --out-dir and --display \
                  decode them (build feature `h264`). --h264, --out-dir and --display start at a \
                  keyframe and, after a lost frame, skip to the next one (counted as \"skipped to \
                  the next keyframe\"); the recording keeps every frame. An output that cannot \
                  take the stream's codec (--mjpeg of H.264, --h264 of JPEG, or --out-dir and \
                  --display of H.264 without the feature) stops vswa-recv at the first frame with \
                  one line saying what to use instead (exit status 5).\n\
                  \n\
                  Examples:\n\
                  \x20 vswa-recv --url ws://127.0.0.1:8080/ws/watch/demo --mjpeg - | ffplay -f mjpeg -\n\
                  \x20 vswa-recv --url ws://127.0.0.1:8080/ws/watch/cam --h264 - | ffplay -f h264 -\n\
                  \x20 vswa-recv --url ws://127.0.0.1:8080/ws/watch/cam --h264 - | ffmpeg -f h264 -i - -c copy cam.mp4\n\
                  \n\
                  Exit status:\n\
                  \x20 0  --count or --duration reached, the stream ended, the reader of --mjpeg or \
                  --h264 closed the pipe, or Ctrl-C\n\
                  \x20 1  other failure\n\
                  \x20 2  bad arguments or URL (e.g. an invalid stream name)\n\
                  \x20 3  refused by the relay (token, stream busy, limits)\n\
                  \x20 4  relay unreachable\n\
                  \x20 5  I/O: an output cannot be written"
)]
pub struct Args {
    /// Stream to watch: ws://HOST:PORT/ws/watch/NAME (wss:// for TLS).
    #[arg(long)]
    url: String,

    /// Viewer token, if the relay requires one (sent as Authorization: Bearer).
    #[arg(long, env = "VSWA_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// Save every frame as DIR/frame-SEQUENCE-UTCTIME.jpg (names sort in sequence order;
    /// files appear whole, via temp file and rename). DIR is created if missing. Of an
    /// H.264 stream only the keyframes are saved, decoded and re-encoded as JPEG quality
    /// 90 (needs the `h264` build feature; use --h264 to keep every frame).
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,

    /// Record the stream to FILE in the VSWA recording format (replayable with
    /// `vswa-send --source replay:FILE`); flushed per frame, so a crash loses at most one.
    /// Any codec, every frame as received.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,

    /// Write the JPEGs back to back (MJPEG) to PATH, or to stdout with `-`, e.g.
    /// `--mjpeg - | ffplay -f mjpeg -`. A reader that closes the pipe ends vswa-recv quietly.
    /// JPEG streams only.
    #[arg(long, value_name = "PATH|-")]
    mjpeg: Option<PathBuf>,

    /// Write the H.264 access units back to back (an Annex B byte stream) to PATH, or to
    /// stdout with `-`, e.g. `--h264 - | ffplay -f h264 -`, or `| ffmpeg -f h264 -i - -c
    /// copy out.mp4`. Starts at a keyframe and skips to the next one after a lost frame,
    /// so it always decodes. A reader that closes the pipe ends vswa-recv quietly. H.264
    /// streams only; needs no build feature.
    #[arg(long, value_name = "PATH|-")]
    h264: Option<PathBuf>,

    /// Show the video in a window (newest frame only; stats in the title). Needs the
    /// `display` build feature and an X11 display, and for H.264 streams the `h264`
    /// feature too; Escape or closing the window stops.
    #[arg(long)]
    display: bool,

    /// Stop after N frames (of an H.264 stream, N frames from the first keyframe on:
    /// frames skipped to a keyframe do not count).
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    count: Option<u64>,

    /// Stop after S seconds (fractions allowed), counted from start.
    #[arg(long, value_name = "S")]
    duration: Option<f64>,

    /// Print the final summary as one JSON object on stdout (not with `--mjpeg -` or
    /// `--h264 -`).
    #[arg(long)]
    pub stats_json: bool,

    /// Seconds to keep trying to reach the relay at start before giving up.
    #[arg(long, value_name = "S", default_value_t = RecvConfig::new("").connect_timeout.as_secs_f64())]
    connect_timeout: f64,

    /// Seconds to keep trying after the connection is lost before giving up
    /// (default: retry forever).
    #[arg(long, value_name = "S")]
    reconnect_timeout: Option<f64>,

    /// Extra trusted CA certificate (PEM) for wss://, e.g. a relay's self-signed one.
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,

    /// Keep waiting when the publisher leaves (default: exit 0 when the stream ends).
    #[arg(long)]
    wait_on_end: bool,
}

fn seconds(name: &str, v: f64) -> Result<Duration, RecvError> {
    vswa_cli::positive_seconds(name, v).map_err(RecvError::Usage)
}

impl Args {
    /// The configuration these arguments describe.
    pub fn config(&self) -> Result<RecvConfig, RecvError> {
        config(self)
    }
}

fn config(args: &Args) -> Result<RecvConfig, RecvError> {
    let sinks = SinkConfig {
        out_dir: args.out_dir.clone(),
        record: args.record.clone(),
        mjpeg: args.mjpeg.clone(),
        h264: args.h264.clone(),
        display: args.display,
    };
    if args.stats_json && sinks.mjpeg_to_stdout() {
        return Err(RecvError::Usage(
            "--stats-json and --mjpeg - both want stdout; write the MJPEG to a file or drop --stats-json".into(),
        ));
    }
    if args.stats_json && sinks.h264_to_stdout() {
        return Err(RecvError::Usage(
            "--stats-json and --h264 - both want stdout; write the H.264 to a file or drop --stats-json".into(),
        ));
    }
    if sinks.mjpeg.is_some() && sinks.h264.is_some() {
        // Either one would refuse the stream's first frame.
        return Err(RecvError::Usage(
            "--mjpeg and --h264 cannot be combined: a stream is JPEG or H.264, so give the \
             one that fits it"
                .into(),
        ));
    }
    Ok(RecvConfig {
        url: args.url.clone(),
        token: args.token.clone().filter(|t| !t.is_empty()),
        ca_cert: args.ca_cert.clone(),
        connect_timeout: seconds("connect-timeout", args.connect_timeout)?,
        reconnect_timeout: args
            .reconnect_timeout
            .map(|s| seconds("reconnect-timeout", s))
            .transpose()?,
        sinks,
        count: args.count,
        duration: args.duration.map(|s| seconds("duration", s)).transpose()?,
        wait_on_end: args.wait_on_end,
        status_line: std::io::stderr().is_terminal(),
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `--help` ends with the exit-status table, whose codes are [`crate::exit`]'s
    /// (`vswa-send`'s tests check that its table shares rows 1-4 with this one).
    #[test]
    fn help_ends_with_the_exit_status_table() {
        use crate::exit;
        let help = super::Args::command().render_help().to_string();
        let (_, table) = help
            .rsplit_once("Exit status:\n")
            .expect("an exit-status table");
        let codes: Vec<u8> = table
            .lines()
            .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            codes,
            [
                exit::OK,
                exit::FAILURE,
                exit::USAGE,
                exit::REFUSED,
                exit::UNREACHABLE,
                exit::OUTPUT
            ]
        );
    }
}
