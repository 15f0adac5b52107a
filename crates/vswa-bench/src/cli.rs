//! The `vswa-bench` command line: subcommands `fanout`, `sweep`, `plot` and `floor`, and
//! [`run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::fanout::{self, FanoutConfig, FanoutReport};
use crate::replay::Replay;
use crate::{floor, sweep};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

/// Load tool for VSWA relays: many viewers, one publisher, latency and delivery figures.
#[derive(Debug, Parser)]
#[command(name = "vswa-bench", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One run: N viewers and one publisher; prints a table, or JSON with --json.
    Fanout {
        #[allow(missing_docs)] // flattened: its fields carry the help text
        #[command(flatten)]
        load: Load,
        /// Viewers to open.
        #[arg(long, default_value_t = 100)]
        viewers: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Runs a list of viewer counts and writes CSV and SVG plots to --out.
    Sweep {
        #[allow(missing_docs)] // flattened: its fields carry the help text
        #[command(flatten)]
        load: Load,
        /// Comma-separated viewer counts.
        #[arg(long, value_delimiter = ',', default_value = "100,500,1000,2000")]
        viewers: Vec<usize>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Series name in the CSV and plots (also the file name).
        #[arg(long, default_value = "relay")]
        label: String,
        /// Add rows to an existing {out}/{label}.csv instead of starting a new one.
        #[arg(long)]
        append: bool,
    },
    /// Plots and tabulates sweep CSV files together (one line per label).
    Plot {
        /// Sweep CSV files.
        #[arg(required = true)]
        csv: Vec<PathBuf>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// File name prefix for the SVGs.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Chart title suffix.
        #[arg(long, default_value = "")]
        title: String,
        /// Also write a markdown table here.
        #[arg(long)]
        table: Option<PathBuf>,
    },
    /// Serves the kernel floor: a minimal fan-out writer to compare relays against.
    Floor {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
    },
}

/// Load options shared by `fanout` and `sweep`.
#[derive(Debug, Args)]
pub struct Load {
    /// Relay base URL the viewers connect to. Several, comma-separated, spread the
    /// viewers over them in turn (viewer i on URL i mod count; a URL listed k times gets
    /// k shares), and `fanout` then reports delivery and latency per URL too.
    #[arg(
        long,
        value_name = "URL[,URL...]",
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8080"
    )]
    url: Vec<String>,
    /// Relay base URL the publisher connects to [default: the first --url]. With relays
    /// in a cluster, publish on one and watch on another to measure the hop between them
    /// (latency is publisher send time to viewer receipt, both on this machine's clock).
    #[arg(long, value_name = "URL")]
    publish_url: Option<String>,
    /// Stream name.
    #[arg(long, default_value = "bench")]
    stream: String,
    /// Payload bytes per frame (synthetic JPEG payloads).
    #[arg(long, default_value_t = 25_000)]
    frame_bytes: usize,
    /// Publish the real frames of this file in a loop instead of synthetic payloads: an
    /// H.264 Annex B file, an MJPEG file (concatenated JPEGs) or a VSWA recording. Each
    /// frame keeps its size, codec and keyframe flag; --frame-bytes is ignored.
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
    /// Frames per second.
    #[arg(long, default_value_t = 30.0)]
    fps: f64,
    /// Seconds of measured publishing (after 1 s of warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Relay process id, for CPU seconds and RSS from /proc.
    #[arg(long)]
    relay_pid: Option<u32>,
    /// More process ids (another relay, a NATS server; comma-separated or repeated)
    /// whose CPU seconds to read over the same measured window.
    #[arg(long, value_name = "PID[,PID...]", value_delimiter = ',')]
    cpu_pid: Vec<u32>,
    /// Per-viewer read buffer in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    read_buf: usize,
    /// WebSocket handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
}

impl Load {
    fn config(&self, viewers: usize) -> anyhow::Result<FanoutConfig> {
        if !(self.duration.is_finite() && self.duration > 0.0 && self.duration <= 3600.0) {
            anyhow::bail!("--duration must be between 0 and 3600 seconds");
        }
        let replay = match &self.replay {
            Some(path) => Some(Arc::new(Replay::open(path)?)),
            None => None,
        };
        let Some(first) = self.url.first() else {
            anyhow::bail!("--url needs at least one relay URL");
        };
        Ok(FanoutConfig {
            replay,
            publish_url: self.publish_url.clone().unwrap_or_else(|| first.clone()),
            urls: self.url.clone(),
            cpu_pids: self.cpu_pid.clone(),
            stream: self.stream.clone(),
            viewers,
            frame_bytes: self.frame_bytes,
            fps: self.fps,
            duration: Duration::from_secs_f64(self.duration),
            relay_pid: self.relay_pid,
            read_buf: self.read_buf,
            connect_concurrency: self.connect_concurrency,
        })
    }
}

fn table(r: &FanoutReport) -> String {
    let opt = |v: Option<f64>, unit: &str| v.map_or("-".into(), |v| format!("{v:.2}{unit}"));
    let mib = |v: Option<u64>| v.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    let mut rows = vec![
        ("relay", r.url.clone()),
        (
            "viewers connected",
            format!("{} / {}", r.viewers_connected, r.viewers_requested),
        ),
        (
            "frame",
            match &r.replay {
                Some(what) => format!("{} B mean at {} fps ({what})", r.frame_bytes, r.fps),
                None => format!("{} B at {} fps", r.frame_bytes, r.fps),
            },
        ),
        (
            "frames published",
            format!("{} in {:.2} s", r.frames_published, r.publish_seconds),
        ),
        (
            "delivered",
            format!(
                "{:.3}% ({} frames)",
                r.delivered_fraction * 100.0,
                r.frames_delivered
            ),
        ),
        (
            "delivered rate",
            format!("{:.1} MB/s", r.delivered_bytes_per_s / 1e6),
        ),
        ("latency p50", format!("{:.2} ms", r.latency_p50_ms)),
        ("latency p90", format!("{:.2} ms", r.latency_p90_ms)),
        ("latency p99", format!("{:.2} ms", r.latency_p99_ms)),
        ("latency max", format!("{:.2} ms", r.latency_max_ms)),
        ("sequence gaps", r.sequence_gaps.to_string()),
        ("viewers disconnected", r.viewers_disconnected.to_string()),
        (
            "relay CPU",
            format!(
                "{} ({})",
                opt(r.relay_cpu_s, " s"),
                opt(r.relay_cpu_cores, " cores")
            ),
        ),
        ("relay RSS connected", mib(r.relay_rss_connected_kib)),
        ("relay RSS peak", mib(r.relay_rss_peak_kib)),
        ("vswa-bench CPU", format!("{:.2} s", r.bench_cpu_s)),
    ];
    if r.publish_url != r.url {
        rows.insert(1, ("publisher's relay", r.publish_url.clone()));
    }
    let mut out: String = rows.iter().map(|(k, v)| format!("{k:<22} {v}\n")).collect();
    if r.by_url.len() > 1 {
        out.push_str("per viewer URL\n");
        for u in &r.by_url {
            out.push_str(&format!(
                "  {}: {}/{} viewers, delivered {:.3}%, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, gaps {}\n",
                u.url,
                u.viewers_connected,
                u.viewers_requested,
                u.delivered_fraction * 100.0,
                u.latency_p50_ms,
                u.latency_p99_ms,
                u.latency_max_ms,
                u.sequence_gaps,
            ));
        }
    }
    for p in &r.cpu {
        out.push_str(&format!(
            "{:<22} {} ({})\n",
            format!("CPU of pid {}", p.pid),
            opt(p.cpu_s, " s"),
            opt(p.cores, " cores")
        ));
    }
    out
}

/// Runs one subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Fanout {
            load,
            viewers,
            json,
        } => {
            let r = fanout::run(&load.config(viewers)?).await?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                print!("{}", table(&r));
            }
        }
        Command::Sweep {
            load,
            viewers,
            out,
            label,
            append,
        } => {
            if viewers.is_empty() || viewers.contains(&0) {
                anyhow::bail!("--viewers needs one or more positive counts");
            }
            let base = load.config(viewers[0])?;
            sweep::run(&base, &viewers, &label, &out, append).await?;
            eprintln!("wrote {}/{label}.csv and {label}-*.svg", out.display());
        }
        Command::Plot {
            csv,
            out,
            prefix,
            title,
            table,
        } => {
            let mut rows = Vec::new();
            for path in &csv {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
                rows.extend(sweep::read_csv(&text)?);
            }
            std::fs::create_dir_all(&out)?;
            sweep::plot(&rows, &out, &prefix, &title)?;
            if let Some(t) = table {
                std::fs::write(&t, sweep::markdown_table(&rows))?;
            }
        }
        // One thread of its own: a current-thread runtime, off this multi-thread one.
        Command::Floor { listen } => tokio::task::spawn_blocking(move || floor::run(listen))
            .await
            .context("the floor thread panicked")??,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str]) -> FanoutConfig {
        let cli = Cli::try_parse_from(["vswa-bench", "fanout"].iter().chain(args)).unwrap();
        let Command::Fanout { load, viewers, .. } = cli.command else {
            panic!("not fanout");
        };
        load.config(viewers).unwrap()
    }

    #[test]
    fn viewers_over_several_relays_and_the_publisher_on_another() {
        let one = load(&[]);
        assert_eq!(one.urls, ["ws://127.0.0.1:8080"]);
        assert_eq!(one.publish_url, "ws://127.0.0.1:8080");
        let two = load(&["--url", "ws://a:1,ws://b:2", "--cpu-pid", "3,4"]);
        assert_eq!(two.urls, ["ws://a:1", "ws://b:2"]);
        assert_eq!(two.publish_url, "ws://a:1", "defaults to the first --url");
        assert_eq!(two.cpu_pids, [3, 4]);
        let apart = load(&["--url", "ws://b:2", "--publish-url", "ws://a:1"]);
        assert_eq!(
            (apart.urls[0].as_str(), apart.publish_url.as_str()),
            ("ws://b:2", "ws://a:1")
        );
    }
}
