//! The VSWA relay as a library: one listening port for publishers, viewers, web pages,
//! MJPEG, snapshots, JSON stats and Prometheus metrics.
//!
//! [`Relay::serve`] takes a bound listener and a shutdown future, so the `vswa-relay`
//! program, the tests and embedders run the same code (tests bind `127.0.0.1:0`):
//!
//! ```no_run
//! # async fn run() -> Result<(), vswa_relay::RelayError> {
//! use vswa_relay::{Relay, RelayConfig, Shutdown};
//!
//! let relay = Relay::new(RelayConfig::default())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let shutdown = Shutdown::new();
//! let stop = shutdown.wait();
//! tokio::spawn(async move { tokio::time::sleep(std::time::Duration::from_secs(5)).await; shutdown.trigger() });
//! relay.serve(listener, stop).await
//! # }
//! ```
//!
//! - [`hub`]: the in-memory core (named streams, rings, viewers), usable without sockets.
//! - `routes`, `session`: the HTTP routes and the per-connection WebSocket loops.
//! - `auth`, `limits`: tokens ([`mint_token`], [`verify_token`]) and connection limits.
//! - [`demo`]: an in-process test-pattern publisher (`vswa-relay --demo`).
//!
//! Capture and encoding come from `vswa-capture`; the wire format from `vswa-protocol`.
//! The clients that talk to a relay are in `vswa-client`.
#![warn(missing_docs)]

pub mod args;
mod auth;
pub mod cluster;
mod deadline;
pub mod demo;
pub mod hub;
mod limits;
mod routes;
mod session;
mod shared_tcp;
pub mod shutdown;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::demo::DemoConfig;
use crate::hub::{Hub, HubConfig};

pub use auth::{
    allowed as token_allowed, check_scope, mint_token, unix_now, verify_token, ScopedClaims,
    TokenError, TokenRole,
};
pub use shutdown::{Shutdown, ShutdownWatcher};

/// Everything the relay can be told; `Default` holds every default the program uses.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Address [`run`] listens on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Also publish a moving test pattern as stream `demo` ([`run`] only).
    pub demo: Option<DemoConfig>,
    /// Stream and viewer limits.
    pub hub: HubConfig,
    /// Token publishers must present (`None`: anyone may publish).
    pub publish_token: Option<String>,
    /// Token viewers must present (`None`: anyone may watch, unless `token_secret` is set).
    pub watch_token: Option<String>,
    /// Secret that verifies scoped tokens (JWT HS256 naming stream, role and expiry).
    /// When set, both roles need a token: the role's shared token or a scoped one.
    pub token_secret: Option<String>,
    /// PEM certificate chain and private key for TLS (`wss://`, `https://`).
    pub tls: Option<TlsFiles>,
    /// Time a client has to finish the TLS handshake and send its request headers.
    pub handshake_timeout: Duration,
    /// A publisher that sends nothing (no frame, no ping) for this long is closed.
    pub idle_timeout: Duration,
    /// How often the relay pings WebSocket peers; a viewer silent for three intervals
    /// is closed.
    pub ping_interval: Duration,
    /// A viewer whose socket accepts no data for this long is disconnected.
    pub stall_timeout: Duration,
    /// How long viewers stay connected after their publisher leaves, waiting for it.
    pub end_grace: Duration,
    /// Most TCP connections at once (pages, WebSockets and MJPEG together).
    pub max_connections: usize,
    /// Most TCP connections at once from one client address, IPv6 clients counted per
    /// /64 network (0: no such limit). Set it on a relay that faces the internet, so one
    /// client cannot fill `max_connections`.
    pub max_connections_per_ip: usize,
    /// The latency ceiling: a frame older than this (since capture on the relay's clock
    /// when the publisher reports its clock, else since it reached the relay) is never
    /// written to a viewer; the viewer skips to the next decodable frame and the frame
    /// counts as dropped (`late`). Zero turns it off.
    pub max_latency: Duration,
    /// `TCP_NOTSENT_LOWAT` on every connection, in bytes (0: the kernel's default): the
    /// kernel then holds at most about this much that it has not yet sent to a peer, so
    /// a viewer on a slow link is seen to be behind (and skips frames by latest-wins
    /// and the latency ceiling) instead of its backlog hiding in megabytes of socket
    /// buffer, where no ceiling can reach it.
    pub send_lowat: u32,
    /// After shutdown begins, how long sessions get to say goodbye (viewers get `end`
    /// and a close) before `serve` returns anyway.
    pub shutdown_grace: Duration,
    /// Join a cluster of relays over NATS (`None`: a relay on its own; no NATS code
    /// runs).
    pub cluster: Option<cluster::ClusterConfig>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            demo: None,
            hub: HubConfig::default(),
            publish_token: None,
            watch_token: None,
            token_secret: None,
            tls: None,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(15),
            stall_timeout: Duration::from_secs(10),
            end_grace: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_ip: 0,
            shutdown_grace: Duration::from_secs(5),
            max_latency: Duration::from_millis(500),
            send_lowat: 64 * 1024,
            cluster: None,
        }
    }
}

/// Paths of a PEM certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1), PEM.
    pub key: PathBuf,
}

/// Errors that stop the relay from starting.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The TLS certificate or key could not be used.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// Binding or reading the listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The demo stream's source could not be opened.
    #[error("demo stream: {0}")]
    Demo(String),
    /// The cluster options are unusable (a bad NATS URL or credentials file).
    #[error("cluster: {0}")]
    Cluster(String),
}

/// Runs the relay the way the `vswa-relay` program does: binds `config.listen`, prints
/// `vswa-relay: listening on URL` to stderr, starts the demo stream if configured,
/// serves until `shutdown` completes, then stops the demo.
pub async fn run(
    config: RelayConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RelayError> {
    let demo = config.demo;
    let listen = config.listen;
    let tls = config.tls.is_some();
    let relay = Relay::new(config)?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|error| RelayError::Bind {
            addr: listen,
            error,
        })?;
    let addr = listener.local_addr()?;
    let scheme = if tls { "https" } else { "http" };
    vswa_cli::say!("vswa-relay: listening on {scheme}://{addr}");
    let stop_demo = Shutdown::new();
    let demo = match demo {
        Some(demo) => {
            let source = demo.open().map_err(|e| RelayError::Demo(e.to_string()))?;
            vswa_cli::say!("vswa-relay: demo stream at {scheme}://{addr}/view/demo");
            let hub = relay.hub().clone();
            let name = vswa_protocol::StreamName::new("demo").expect("a valid stream name");
            let stopped = stop_demo.wait();
            Some(tokio::spawn(async move {
                if let Err(e) = demo::feed_hub(hub, name, source, stopped).await {
                    tracing::error!("demo stream stopped: {e}");
                }
            }))
        }
        None => None,
    };
    relay.serve(listener, shutdown).await?;
    // Stop the demo only now, so its viewers were told "shutdown", not "publisher left".
    stop_demo.trigger();
    if let Some(demo) = demo {
        let _ = tokio::time::timeout(Duration::from_secs(2), demo).await;
    }
    vswa_cli::say!("vswa-relay: stopped");
    Ok(())
}

pub(crate) struct RelayState {
    pub(crate) config: RelayConfig,
    pub(crate) hub: Hub,
    pub(crate) shutdown: ShutdownWatcher,
    pub(crate) sessions: TaskTracker,
    pub(crate) metrics: Option<&'static PrometheusHandle>,
    /// Set by `serve` when the relay joins a cluster.
    pub(crate) cluster: OnceLock<Arc<cluster::Cluster>>,
}

impl RelayState {
    /// The cluster this relay belongs to, if any.
    pub(crate) fn cluster(&self) -> Option<&Arc<cluster::Cluster>> {
        self.cluster.get()
    }
}

/// A relay, ready to serve.
pub struct Relay {
    state: Arc<RelayState>,
    shutdown: Shutdown,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("config", &self.state.config)
            .finish()
    }
}

/// The process-wide Prometheus recorder (the `metrics` facade has one global recorder).
fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new().install_recorder().ok()?;
            describe_metrics();
            Some(handle)
        })
        .as_ref()
}

fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!("vswa_frames_in_total", "Frames received from publishers");
    describe_counter!(
        "vswa_bytes_in_total",
        "Payload bytes received from publishers"
    );
    describe_counter!("vswa_frames_out_total", "Frames written to viewers");
    describe_counter!("vswa_bytes_out_total", "Bytes written to viewers");
    describe_counter!(
        "vswa_frames_dropped_total",
        "Frames skipped for slow viewers"
    );
    describe_counter!(
        "vswa_frames_late_total",
        "Frames not written to a viewer because they were older than --max-latency"
    );
    metrics::describe_histogram!(
        "vswa_viewer_lag_seconds",
        "Age of frames when the relay wrote them to viewers, by stream: one sample per write, where the viewers one write-through pass reaches at once share one sample"
    );
    describe_counter!(
        "vswa_rejected_total",
        "Connections or frames refused, by reason"
    );
    describe_gauge!("vswa_streams", "Streams with a publisher or viewers");
    describe_gauge!("vswa_publishers", "Connected publishers");
    describe_gauge!("vswa_viewers", "Connected viewers (WebSocket and MJPEG)");
    describe_gauge!("vswa_connections", "Open TCP connections");
}

impl Relay {
    /// Builds a relay; loads the TLS files if configured.
    pub fn new(config: RelayConfig) -> Result<Relay, RelayError> {
        let tls = config.tls.as_ref().map(load_tls).transpose()?;
        let shutdown = Shutdown::new();
        let state = Arc::new(RelayState {
            hub: Hub::new(config.hub.clone()),
            config,
            shutdown: shutdown.watcher(),
            sessions: TaskTracker::new(),
            metrics: prometheus(),
            cluster: OnceLock::new(),
        });
        Ok(Relay {
            state,
            shutdown,
            tls,
        })
    }

    /// The hub, for in-process publishers (the `--demo` feed) and inspection.
    pub fn hub(&self) -> &Hub {
        &self.state.hub
    }

    /// Serves connections from `listener` until `shutdown` completes, then ends every
    /// stream (viewers get `end` and a normal close) and waits briefly for sessions.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RelayError> {
        let router = routes::router(self.state.clone());
        let limits = limits::ConnectionLimits::new(
            self.state.config.max_connections,
            self.state.config.max_connections_per_ip,
        );
        let connections = TaskTracker::new();
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let local = listener.local_addr()?;
        tracing::info!("vswa-relay listening on {scheme}://{local}");
        if let Some(config) = &self.state.config.cluster {
            let id = config
                .relay_id
                .clone()
                .unwrap_or_else(|| cluster::default_relay_id(local.port()));
            let joined = cluster::Cluster::start(config, id, self.state.hub.clone())
                .await
                .map_err(RelayError::Cluster)?;
            let _ = self.state.cluster.set(joined);
        }
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                res = listener.accept() => match res {
                    Ok(conn) => conn,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let permit = match limits.try_acquire(peer.ip()) {
                Ok(permit) => permit,
                Err(refused) => {
                    metrics::counter!("vswa_rejected_total", "reason" => refused.reason())
                        .increment(1);
                    tracing::debug!(%peer, "{} reached; closing", refused.reason());
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let lowat = self.state.config.send_lowat;
            if lowat > 0 {
                let _ = socket2::SockRef::from(&tcp).set_tcp_notsent_lowat(lowat);
            }
            let router = router.clone();
            let tls = self.tls.clone();
            let timeout = self.state.config.handshake_timeout;
            let write_limit = self.state.config.stall_timeout;
            let stop = self.state.shutdown.clone();
            connections.spawn(async move {
                let permit = Arc::new(permit);
                metrics::gauge!("vswa_connections").increment(1.0);
                match tls {
                    None => {
                        serve_connection(tcp, peer, permit, router, timeout, write_limit, stop)
                            .await
                    }
                    Some(acceptor) => {
                        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => {
                                serve_connection(
                                    stream,
                                    peer,
                                    permit,
                                    router,
                                    timeout,
                                    write_limit,
                                    stop,
                                )
                                .await
                            }
                            Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
                metrics::gauge!("vswa_connections").decrement(1.0);
            });
        }
        tracing::info!("shutting down");
        self.state.hub.shutdown();
        self.shutdown.trigger();
        self.state.sessions.close();
        connections.close();
        let grace = self.state.config.shutdown_grace;
        let _ = tokio::time::timeout(grace, async {
            tokio::join!(connections.wait(), self.state.sessions.wait());
        })
        .await;
        Ok(())
    }
}

/// Extension carrying a connection's peer address and its share of the connection limit.
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo {
    pub(crate) peer: SocketAddr,
    /// Held by upgraded WebSocket sessions so they keep counting against the limit.
    pub(crate) permit: Arc<limits::ConnPermit>,
}

async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    permit: Arc<limits::ConnPermit>,
    router: axum::Router,
    handshake_timeout: Duration,
    write_limit: Duration,
    stop: ShutdownWatcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = ConnInfo { peer, permit };
    let io = deadline::WriteDeadline::new(io, write_limit);
    let service = router.map_request(move |mut req: http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(info.clone());
        req
    });
    let service = hyper_util::service::TowerToHyperService::new(service);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout)
        // Room for a whole head of MAX_REQUEST_HEAD (checked exactly in routes) plus the
        // start of a body.
        .max_buf_size(2 * routes::MAX_REQUEST_HEAD)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        res = conn.as_mut() => res,
        () = stop.wait() => {
            // Finish the request in flight, then close; upgraded sessions end on their own.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}

fn load_tls(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, RelayError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &PathBuf| {
        std::fs::read(path)
            .map_err(|e| RelayError::Tls(format!("cannot read {}: {e}", path.display())))
    };
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| RelayError::Tls(format!("{}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(RelayError::Tls(format!(
            "{} holds no PEM certificate",
            files.cert.display()
        )));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| RelayError::Tls(format!("{}: {e}", files.key.display())))?
        .ok_or_else(|| {
            RelayError::Tls(format!("{} holds no PEM private key", files.key.display()))
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RelayError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| RelayError::Tls(format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
