//! `vswa-relay`: parses the command line and runs [`vswa_transport::relay::Relay`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

const DEFAULT_LOG: &str = "info";
use vswa_capture::{SourceConfig, SourceSpec};
use vswa_codec::EncodeOptions;
use vswa_protocol::StreamName;
use vswa_transport::hub::HubConfig;
use vswa_transport::pipeline::{
    feed_hub, frames_for, OpenedSource, PipelineConfig, DEFAULT_BACKLOG,
};
use vswa_transport::relay::{mint_token, unix_now, Relay, RelayConfig, TlsFiles, TokenRole};

/// Relay live video: publishers send frames over WebSocket, viewers watch over
/// WebSocket, in a browser, or as MJPEG over HTTP. One port serves everything.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Args {
    /// Without a subcommand the relay serves.
    #[command(subcommand)]
    command: Option<Command>,

    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Also publish a built-in moving test pattern as stream "demo".
    #[arg(long)]
    demo: bool,

    /// Size of the demo stream, WxH.
    #[arg(long, default_value = "640x480", value_parser = vswa_transport::cli::parse_size)]
    demo_size: (u32, u32),

    /// Frame rate of the demo stream.
    #[arg(long, default_value_t = 30.0)]
    demo_fps: f64,

    /// Token publishers must present (Authorization: Bearer or ?token=).
    #[arg(long, env = "VSWA_PUBLISH_TOKEN", hide_env_values = true)]
    publish_token: Option<String>,

    /// Token viewers must present (WebSocket, MJPEG and snapshots).
    #[arg(long, env = "VSWA_VIEW_TOKEN", hide_env_values = true)]
    view_token: Option<String>,

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
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    max_frame_bytes: u32,

    /// Most streams at once.
    #[arg(long, default_value_t = 256)]
    max_streams: usize,

    /// Most viewers per stream.
    #[arg(long, default_value_t = 4096)]
    max_viewers: usize,

    /// Most viewers on the whole relay.
    #[arg(long, default_value_t = 8192)]
    max_viewers_total: usize,

    /// Most open TCP connections.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,

    /// Most open TCP connections from one client address (0: no limit; IPv6 clients
    /// count per /64 network). Set this on a relay that faces the internet, so one
    /// client cannot use up --max-connections.
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_connections_per_ip: usize,

    /// Frames a viewer may fall behind before it skips to the newest.
    #[arg(long, default_value_t = 4)]
    viewer_queue: usize,

    /// Seconds a client has for the TLS handshake and request headers.
    #[arg(long, default_value_t = 10.0)]
    handshake_timeout: f64,

    /// Seconds a publisher may send nothing before it is closed.
    #[arg(long, default_value_t = 30.0)]
    idle_timeout: f64,

    /// Seconds between WebSocket pings.
    #[arg(long, default_value_t = 15.0)]
    ping_interval: f64,

    /// Seconds a viewer may accept no data before it is disconnected.
    #[arg(long, default_value_t = 10.0)]
    stall_timeout: f64,

    /// Seconds viewers wait for a publisher that left to return.
    #[arg(long, default_value_t = 60.0)]
    end_grace: f64,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Mint a scoped token (JWT, HS256) for one stream or a stream prefix, one role and
    /// a limited time; prints it on stdout.
    Token(TokenArgs),
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
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

fn mint(args: &TokenArgs) -> anyhow::Result<String> {
    if args.secret.is_empty() {
        anyhow::bail!("the secret is empty");
    }
    let scope = if args.prefix {
        format!("{}*", args.stream)
    } else {
        args.stream.clone()
    };
    Ok(mint_token(
        args.secret.as_bytes(),
        &scope,
        args.role,
        unix_now(),
        args.ttl,
    )?)
}

fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    if !(v.is_finite() && v > 0.0) {
        anyhow::bail!("--{name} must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(v))
}

fn config(args: &Args) -> anyhow::Result<RelayConfig> {
    Ok(RelayConfig {
        hub: HubConfig {
            max_streams: args.max_streams,
            max_viewers_per_stream: args.max_viewers,
            max_viewers_total: args.max_viewers_total,
            viewer_queue: args.viewer_queue.max(1),
            max_payload_len: args.max_frame_bytes,
        },
        publish_token: args.publish_token.clone().filter(|t| !t.is_empty()),
        view_token: args.view_token.clone().filter(|t| !t.is_empty()),
        token_secret: args.token_secret.clone().filter(|t| !t.is_empty()),
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        handshake_timeout: seconds("handshake-timeout", args.handshake_timeout)?,
        idle_timeout: seconds("idle-timeout", args.idle_timeout)?,
        ping_interval: seconds("ping-interval", args.ping_interval)?,
        stall_timeout: seconds("stall-timeout", args.stall_timeout)?,
        end_grace: seconds("end-grace", args.end_grace)?,
        max_connections: args.max_connections,
        max_connections_per_ip: args.max_connections_per_ip,
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = config(&args)?;
    let tls = config.tls.is_some();
    let relay = Relay::new(config)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls { "https" } else { "http" };
    eprintln!("vswa-relay: listening on {scheme}://{addr}");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let demo = if args.demo {
        let source = OpenedSource::open(PipelineConfig {
            spec: SourceSpec::Test,
            source: SourceConfig {
                width: args.demo_size.0,
                height: args.demo_size.1,
                fps: Some(args.demo_fps),
                loop_replay: false,
            },
            encode: EncodeOptions::default(),
            encode_threads: 1,
            count: None,
            duration: None,
            backlog: frames_for(DEFAULT_BACKLOG, Some(args.demo_fps)),
        })?;
        eprintln!("vswa-relay: demo stream at {scheme}://{addr}/view/demo");
        let hub = relay.hub().clone();
        let mut stop = stop_rx.clone();
        let name = StreamName::new("demo").expect("valid name");
        Some(tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = feed_hub(hub, name, source, stopped).await {
                tracing::error!("demo stream stopped: {e}");
            }
        }))
    } else {
        None
    };
    relay
        .serve(listener, vswa_transport::cli::shutdown_signal())
        .await?;
    // Stop the demo only now, so its viewers were told "shutdown", not "publisher left".
    let _ = stop_tx.send(true);
    if let Some(demo) = demo {
        let _ = tokio::time::timeout(Duration::from_secs(2), demo).await;
    }
    eprintln!("vswa-relay: stopped");
    Ok(())
}

fn main() -> ExitCode {
    let args: Args = vswa_transport::cli::parse_args("vswa-relay");
    if let Some(Command::Token(token)) = &args.command {
        return match mint(token) {
            Ok(jwt) => {
                println!("{jwt}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vswa-relay: error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    vswa_transport::cli::init_tracing(DEFAULT_LOG);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vswa-relay: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vswa-relay: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
