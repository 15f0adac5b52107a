//! The `vswa-relay` command line: clap arguments whose defaults come from
//! [`RelayConfig::default`], turned into a [`RelayConfig`] (or a token to mint).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use vswa_cli::{parse_size, positive_seconds, Size};

use crate::demo::DemoConfig;
use crate::hub::HubConfig;
use crate::{mint_token, unix_now, RelayConfig, TlsFiles, TokenRole};

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn defaults() -> RelayConfig {
    RelayConfig::default()
}

fn default_demo() -> DemoConfig {
    DemoConfig::default()
}

fn default_demo_size() -> Size {
    let demo = default_demo();
    Size {
        width: demo.width,
        height: demo.height,
    }
}

/// Relay live video: publishers send frames over WebSocket, viewers watch over
/// WebSocket, in a browser, or as MJPEG over HTTP. One port serves everything.
#[derive(Debug, Parser)]
#[command(name = "vswa-relay", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Without a subcommand the relay serves.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to listen on (port 0 picks a free port).
    /// HOST:PORT, or only a port (then 127.0.0.1); a host name such as `localhost`
    /// is resolved.
    #[arg(long, default_value_t = defaults().listen, value_parser = parse_listen)]
    listen: SocketAddr,

    /// Also publish a built-in moving test pattern as stream "demo".
    #[arg(long)]
    demo: bool,

    /// Size of the demo stream, WxH.
    #[arg(long, requires = "demo", default_value_t = default_demo_size(), value_parser = parse_size)]
    demo_size: Size,

    /// Frame rate of the demo stream.
    #[arg(long, requires = "demo", default_value_t = default_demo().fps)]
    demo_fps: f64,

    /// Token publishers must present (Authorization: Bearer or ?token=).
    #[arg(long, env = "VSWA_PUBLISH_TOKEN", hide_env_values = true)]
    publish_token: Option<String>,

    /// Token viewers must present (WebSocket, MJPEG and snapshots): the shared token of
    /// the `watch` role, as `--publish-token` is of `publish`. `--view-token` and
    /// VSWA_VIEW_TOKEN, its older names, still work.
    #[arg(
        long,
        visible_alias = "view-token",
        env = "VSWA_WATCH_TOKEN",
        hide_env_values = true
    )]
    watch_token: Option<String>,

    /// Secret that verifies scoped tokens (see `vswa-relay token`). When set, publishing
    /// and watching both need a token: the role's shared token or a scoped one.
    #[arg(long, env = "VSWA_TOKEN_SECRET", hide_env_values = true)]
    token_secret: Option<String>,

    /// TLS certificate chain (PEM); with --tls-key serves https:// and wss://.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Largest accepted frame payload in bytes.
    #[arg(long, default_value_t = defaults().hub.max_payload_len)]
    max_frame_bytes: u32,

    /// Most streams with a publisher at once.
    #[arg(long, default_value_t = defaults().hub.max_streams)]
    max_streams: usize,

    /// Most streams whose viewers wait for a publisher that has not come (counted apart
    /// from --max-streams, so viewers cannot lock publishers out).
    #[arg(long, value_name = "N", default_value_t = defaults().hub.max_waiting_streams)]
    max_waiting_streams: usize,

    /// Most viewers per stream.
    #[arg(long, default_value_t = defaults().hub.max_viewers_per_stream)]
    max_viewers: usize,

    /// Most viewers on the whole relay.
    #[arg(long, default_value_t = defaults().hub.max_viewers_total)]
    max_viewers_total: usize,

    /// Most open TCP connections.
    #[arg(long, default_value_t = defaults().max_connections)]
    max_connections: usize,

    /// Most open TCP connections from one client address (0: no limit; IPv6 clients
    /// count per /64 network). Set this on a relay that faces the internet, so one
    /// client cannot use up --max-connections.
    #[arg(long, value_name = "N", default_value_t = defaults().max_connections_per_ip)]
    max_connections_per_ip: usize,

    /// Frames a viewer may fall behind before it skips to the newest.
    #[arg(long, default_value_t = defaults().hub.viewer_queue)]
    viewer_queue: usize,

    /// Threads that share the writing of a frame to 64 or more viewers with the
    /// publisher's task [default: the cores not given to --workers, at least 1 on a
    /// machine with 2 or more cores; 0: the publisher's task writes to every viewer
    /// itself].
    #[arg(long, value_name = "N")]
    fanout_threads: Option<usize>,

    /// Worker threads of the async runtime (sessions, HTTP, TLS) [default: half the
    /// cores, at least 1]. Plain-TCP WebSocket frames are written by the publisher's
    /// task and the fan-out threads, so few workers suffice; raise it for a relay whose
    /// viewers are mostly TLS or MJPEG, whose writes each run on a worker.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,

    /// Seconds a client has for the TLS handshake and request headers.
    #[arg(long, default_value_t = defaults().handshake_timeout.as_secs_f64())]
    handshake_timeout: f64,

    /// Seconds a publisher may send nothing before it is closed.
    #[arg(long, default_value_t = defaults().idle_timeout.as_secs_f64())]
    idle_timeout: f64,

    /// Seconds between WebSocket pings.
    #[arg(long, default_value_t = defaults().ping_interval.as_secs_f64())]
    ping_interval: f64,

    /// Seconds a viewer may accept no data before it is disconnected.
    #[arg(long, default_value_t = defaults().stall_timeout.as_secs_f64())]
    stall_timeout: f64,

    /// Latency ceiling in milliseconds: a frame older than this is never written to a
    /// viewer, which skips to the next decodable frame (counted as dropped); 0 turns it
    /// off.
    #[arg(long, value_name = "MS", default_value_t = defaults().max_latency.as_millis() as u64)]
    max_latency: u64,

    /// TCP_NOTSENT_LOWAT in bytes on every connection: the kernel holds at most about
    /// this much not yet sent to a peer, so a viewer on a slow link is seen to fall
    /// behind and skips frames instead of queueing seconds of video in its socket
    /// buffer. 0 leaves the kernel's default (megabytes).
    #[arg(long, value_name = "BYTES", default_value_t = defaults().send_lowat)]
    send_lowat: u32,

    /// Most bytes of the current GOP (H.264: frames since the last keyframe) a stream
    /// keeps so that a new viewer starts at a keyframe.
    #[arg(long, value_name = "BYTES", default_value_t = defaults().hub.max_gop_bytes)]
    max_gop_bytes: usize,

    /// Seconds viewers wait for a publisher that left to return.
    #[arg(long, default_value_t = defaults().end_grace.as_secs_f64())]
    end_grace: f64,

    /// Join a cluster of relays through NATS: streams published on any relay of the
    /// cluster can be watched on all of them. Comma-separated NATS URLs
    /// (nats://HOST:PORT, tls://HOST:PORT; user:password@ in a URL works and is never
    /// logged). The relay needs JetStream for its publisher lock (nats-server -js;
    /// docs/nats.conf).
    #[arg(
        long,
        value_name = "URLS",
        env = "VSWA_CLUSTER",
        hide_env_values = true,
        value_delimiter = ','
    )]
    cluster: Vec<String>,

    /// This relay's name in the cluster [default: HOSTNAME:PORT].
    #[arg(long, value_name = "ID", env = "VSWA_RELAY_ID", requires = "cluster")]
    relay_id: Option<String>,

    /// NATS credentials file (.creds: user JWT and NKey seed).
    #[arg(
        long,
        value_name = "FILE",
        env = "VSWA_CLUSTER_CREDS",
        requires = "cluster"
    )]
    cluster_creds: Option<PathBuf>,

    /// NATS authentication token.
    #[arg(
        long,
        env = "VSWA_CLUSTER_TOKEN",
        hide_env_values = true,
        requires = "cluster"
    )]
    cluster_token: Option<String>,

    /// PEM root certificates that verify the NATS servers (implies TLS).
    #[arg(long, value_name = "FILE", requires = "cluster")]
    cluster_ca: Option<PathBuf>,

    /// PEM client certificate for NATS (TLS client authentication), with --cluster-key.
    #[arg(long, value_name = "FILE", requires_all = ["cluster", "cluster_key"])]
    cluster_cert: Option<PathBuf>,

    /// PEM private key of --cluster-cert.
    #[arg(long, value_name = "FILE", requires = "cluster_cert")]
    cluster_key: Option<PathBuf>,

    /// Connect to NATS with TLS even when the URL says nats://.
    #[arg(long, requires = "cluster")]
    cluster_tls: bool,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Mint a scoped token (JWT, HS256) for one stream or a stream prefix, one role and
    /// a limited time; prints it on stdout.
    Token(TokenArgs),
}

/// Arguments of `vswa-relay token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The stream the token opens (with --prefix: every stream whose name starts so).
    #[arg(long)]
    stream: String,

    /// Treat --stream as a prefix.
    #[arg(long)]
    prefix: bool,

    /// What the token allows.
    #[arg(long, value_parser = parse_role)]
    role: TokenRole,

    /// How long the token is valid: a number with s, m, h or d (e.g. 90s, 15m, 1h, 7d).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,

    /// The relay's --token-secret.
    #[arg(
        long,
        alias = "token-secret",
        env = "VSWA_TOKEN_SECRET",
        hide_env_values = true
    )]
    secret: String,
}

/// `--listen`: `HOST:PORT`, `[IPv6]:PORT`, a bare port, or `NAME:PORT` resolved now.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let s = s.trim();
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let usage = "use HOST:PORT (e.g. 127.0.0.1:8080, 0.0.0.0:8080, [::]:8080) or a port";
    if !s.contains(':') {
        return Err(format!("{s:?} has no port: {usage}"));
    }
    match s.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{s:?} resolves to no address: {usage}")),
        Err(e) => Err(format!("{s:?}: {e}; {usage}")),
    }
}

fn parse_role(s: &str) -> Result<TokenRole, String> {
    match s {
        "publish" => Ok(TokenRole::Publish),
        "watch" => Ok(TokenRole::Watch),
        _ => Err(format!("{s:?}: the role is publish or watch")),
    }
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: a duration is a number with s, m, h or d")),
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_secs(n.saturating_mul(scale))),
        _ => Err(format!(
            "{s:?}: a duration is a positive number with s, m, h or d"
        )),
    }
}

impl TokenArgs {
    /// The token these arguments describe.
    pub fn mint(&self) -> Result<String, String> {
        mint(self)
    }
}

fn mint(args: &TokenArgs) -> Result<String, String> {
    if args.secret.is_empty() {
        return Err("the secret is empty".into());
    }
    let scope = if args.prefix {
        format!("{}*", args.stream)
    } else {
        args.stream.clone()
    };
    mint_token(
        args.secret.as_bytes(),
        &scope,
        args.role,
        unix_now(),
        args.ttl,
    )
    .map_err(|e| e.to_string())
}

impl Args {
    fn cluster_config(&self) -> Result<Option<crate::cluster::ClusterConfig>, String> {
        let servers: Vec<String> = self
            .cluster
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if servers.is_empty() {
            return Ok(None);
        }
        for s in &servers {
            s.parse::<async_nats::ServerAddr>().map_err(|e| {
                format!(
                    "--cluster {}: {e} (expected nats://HOST:PORT)",
                    crate::cluster::redact(s)
                )
            })?;
        }
        if let Some(id) = &self.relay_id {
            if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control()) {
                return Err("--relay-id: 1 to 128 printable characters".into());
            }
        }
        Ok(Some(crate::cluster::ClusterConfig {
            servers,
            relay_id: self.relay_id.clone(),
            creds: self.cluster_creds.clone(),
            token: self.cluster_token.clone().filter(|t| !t.is_empty()),
            ca: self.cluster_ca.clone(),
            client_cert: self.cluster_cert.clone().zip(self.cluster_key.clone()),
            require_tls: self.cluster_tls || self.cluster_ca.is_some(),
        }))
    }

    /// Worker threads for the async runtime: `--workers`, or half the cores (at
    /// least 1). Measured on 2 cores (docs/BENCHMARKS.md, "Write-through fan-out"):
    /// one worker plus one fan-out thread beat two workers plus one.
    pub fn workers(&self) -> usize {
        self.workers
            .map_or_else(|| (cores() / 2).max(1), usize::from)
    }

    /// Fan-out threads: `--fanout-threads`, or the cores the workers leave (at least
    /// 1 with 2 or more cores).
    fn fanout_threads(&self) -> usize {
        let auto = || {
            let cores = cores();
            if cores < 2 {
                0
            } else {
                cores.saturating_sub(self.workers()).max(1)
            }
        };
        self.fanout_threads.unwrap_or_else(auto).min(64)
    }

    /// The relay configuration these arguments describe.
    pub fn config(&self) -> Result<RelayConfig, String> {
        let d = defaults();
        Ok(RelayConfig {
            listen: self.listen,
            hub: HubConfig {
                max_streams: self.max_streams,
                max_waiting_streams: self.max_waiting_streams,
                max_viewers_per_stream: self.max_viewers,
                max_viewers_total: self.max_viewers_total,
                viewer_queue: self.viewer_queue.max(1),
                max_payload_len: self.max_frame_bytes,
                max_gop_bytes: self.max_gop_bytes,
                fanout_threads: self.fanout_threads(),
            },
            publish_token: self.publish_token.clone().filter(|t| !t.is_empty()),
            watch_token: self
                .watch_token
                .clone()
                .or_else(|| std::env::var("VSWA_VIEW_TOKEN").ok())
                .filter(|t| !t.is_empty()),
            token_secret: self.token_secret.clone().filter(|t| !t.is_empty()),
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
            handshake_timeout: positive_seconds("handshake-timeout", self.handshake_timeout)?,
            idle_timeout: positive_seconds("idle-timeout", self.idle_timeout)?,
            ping_interval: positive_seconds("ping-interval", self.ping_interval)?,
            stall_timeout: positive_seconds("stall-timeout", self.stall_timeout)?,
            end_grace: positive_seconds("end-grace", self.end_grace)?,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            max_latency: Duration::from_millis(self.max_latency),
            send_lowat: self.send_lowat,
            cluster: self.cluster_config()?,
            demo: self.demo.then_some(DemoConfig {
                width: self.demo_size.width,
                height: self.demo_size.height,
                fps: self.demo_fps,
            }),
            ..d
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
        assert_eq!(parse_listen("8080"), Ok(local(8080)));
        assert_eq!(parse_listen("127.0.0.1:9"), Ok(local(9)));
        assert_eq!(parse_listen("[::1]:9").unwrap().port(), 9);
        assert!(parse_listen("localhost:8080").unwrap().ip().is_loopback());
        for bad in ["localhost", "x:y", "", "1.2.3.4:99999"] {
            let err = parse_listen(bad).unwrap_err();
            assert!(err.contains("HOST:PORT"), "{bad}: {err}");
        }
    }

    #[test]
    fn demo_options_need_demo() {
        let err = Args::try_parse_from(["vswa-relay", "--demo-fps", "10"]).unwrap_err();
        assert!(err.to_string().contains("--demo"), "{err}");
        assert!(Args::try_parse_from(["vswa-relay", "--demo", "--demo-fps", "10"]).is_ok());
    }

    #[test]
    fn watch_token_has_the_role_name_and_the_old_one_still_works() {
        for flag in ["--watch-token", "--view-token"] {
            let args = Args::try_parse_from(["vswa-relay", flag, "w1"]).unwrap();
            assert_eq!(args.watch_token.as_deref(), Some("w1"), "{flag}");
        }
    }
}
