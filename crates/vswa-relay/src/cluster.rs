//! Relays on many machines: every stream published on any relay of a cluster can be
//! watched on all of them. The relays share nothing but a NATS system (`--cluster`).
//!
//! - **Frames** travel over core NATS, one subject per stream
//!   (`vswa.v1.frames.NAME`), as the exact VSWA frame bytes the publisher sent. The
//!   relay that holds the publisher publishes each frame once; a relay subscribes to a
//!   stream only while it has local viewers of it (and [`LINGER`] after the last one
//!   left), so NATS carries a stream only to relays that need it. Remote frames enter
//!   the hub like a local publisher's: same ring, same latest-wins, same MJPEG and
//!   snapshots, the publisher's own sequence numbers and timestamps.
//! - **Directory**: every relay announces its streams (published here, viewers here)
//!   on `vswa.v1.relays` every [`ANNOUNCE_EVERY`] and when they change. From these each
//!   relay lists every stream of the cluster, sums the viewers a publisher is told of,
//!   and learns when a relay went silent: after [`DEAD_AFTER`] without an announce or a
//!   frame, its streams end for viewers elsewhere (`end`, `publisher_left`).
//! - **One publisher per stream**: a JetStream key-value bucket (`vswa-v1-publishers`)
//!   holds a lock per stream, taken with `create` (atomic: only one relay wins). The
//!   lock has no time to live of its own; it is as alive as its owner's announcements:
//!   a relay may take over a lock (compare-and-set on its revision) whose owner it has
//!   not heard for [`DEAD_AFTER`]. So a publisher that moves to another relay after its
//!   first relay died is accepted about 3 s later, not after a lease timer.
//!
//! Nothing here is on the path of a relay without `--cluster`. Every NATS operation is
//! bounded in time, and a relay that loses NATS keeps serving its local streams.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use async_nats::HeaderMap;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};
use vswa_protocol::{ControlMessage, StreamName};

use crate::hub::{
    lock, ClusterView, Hub, HubObserver, OutFrame, PublisherHandle, PublisherView, Stream,
    StreamInfo,
};

/// Subject prefix of stream frames: `vswa.v1.frames.NAME`.
pub const FRAMES_PREFIX: &str = "vswa.v1.frames.";
/// Subject of the relays' announcements.
pub const RELAYS_SUBJECT: &str = "vswa.v1.relays";
/// JetStream key-value bucket of the publisher locks (key: stream name).
pub const LOCK_BUCKET: &str = "vswa-v1-publishers";
/// How often a relay announces its streams.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// A relay not heard for this long (no announcement, no frame) is gone: its streams
/// end elsewhere and its locks may be taken over.
pub const DEAD_AFTER: Duration = Duration::from_secs(3);
/// A relay keeps its subscription to a remote stream this long after its last local
/// viewer left (a viewer that reloads the page should not wait for a resubscribe).
pub const LINGER: Duration = Duration::from_secs(2);
/// Frames waiting to go to NATS per published stream; more are dropped (counted).
const FORWARD_QUEUE: usize = 8;
/// Messages async-nats buffers per subscription before it drops (a slow consumer):
/// about half a second of video, beyond which frames are too old to show anyway.
const SUBSCRIPTION_CAPACITY: usize = 16;
/// Bound on any one NATS operation.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on taking a publisher lock (waiting for a full view of the cluster, a move
/// from another relay, and the key-value requests).
const CLAIM_TIMEOUT: Duration = Duration::from_secs(8);
/// How long a claim waits for another relay to free a lock or to stop announcing the
/// stream (a publisher moving between relays).
const MOVE_WAIT: Duration = Duration::from_secs(2);
/// An announcement heard this long after a claim began reflects that relay's state
/// after the claim (announcements follow a change within about 100 ms).
const SETTLE: Duration = Duration::from_millis(500);
/// How long a relay keeps trying to free the lock of a publisher that left.
const RELEASE_FOR: Duration = Duration::from_secs(30);
/// Room for the NATS headers the relay adds to a frame.
const HEADER_ROOM: usize = 512;

const H_RELAY: &str = "Vswa-Relay";
const H_INSTANCE: &str = "Vswa-Instance";
const H_CLOCK: &str = "Vswa-Clock";
const H_END: &str = "Vswa-End";

/// How to reach the cluster's NATS system.
#[derive(Clone, Default)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://HOST:PORT`, `tls://…`); the client picks one and
    /// fails over to the others.
    pub servers: Vec<String>,
    /// This relay's name in the cluster (`None`: `HOSTNAME:PORT`).
    pub relay_id: Option<String>,
    /// NATS credentials file (JWT and NKey seed, `.creds`).
    pub creds: Option<PathBuf>,
    /// NATS token.
    pub token: Option<String>,
    /// PEM root certificates to verify the NATS servers with.
    pub ca: Option<PathBuf>,
    /// PEM client certificate and key for TLS client authentication.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Connect with TLS even if the URL does not say so.
    pub require_tls: bool,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials never reach a log: URLs without their user part, no token.
        f.debug_struct("ClusterConfig")
            .field(
                "servers",
                &self.servers.iter().map(|s| redact(s)).collect::<Vec<_>>(),
            )
            .field("relay_id", &self.relay_id)
            .field("creds", &self.creds)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("ca", &self.ca)
            .field("client_cert", &self.client_cert)
            .field("require_tls", &self.require_tls)
            .finish()
    }
}

/// A NATS URL without its user and password (`nats://u:p@h:4222` → `nats://h:4222`).
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://{}", &url[..scheme], &url[at + 1..])
        }
        (None, Some(at)) => url[at + 1..].to_string(),
        _ => url.to_string(),
    }
}

/// Credentials written into a NATS URL (`nats://user:password@host`, `nats://token@host`).
#[derive(Debug, PartialEq, Eq)]
enum UrlAuth {
    UserPassword(String, String),
    Token(String),
}

/// Parses the server URLs and takes the credentials out of them: async-nats uses only
/// the credentials given to its options (and would log URLs with them at debug level).
fn server_addrs(urls: &[String]) -> Result<(Vec<async_nats::ServerAddr>, Option<UrlAuth>), String> {
    let mut auth = None;
    let mut out = Vec::with_capacity(urls.len());
    for raw in urls {
        let addr: async_nats::ServerAddr = raw
            .parse()
            .map_err(|e| format!("--cluster {}: {e}", redact(raw)))?;
        let user = addr
            .username()
            .map(percent_decode)
            .filter(|u| !u.is_empty());
        let password = addr.password().map(percent_decode);
        let found = match (user, password) {
            (Some(u), Some(p)) => Some(UrlAuth::UserPassword(u, p)),
            (Some(t), None) => Some(UrlAuth::Token(t)),
            _ => None,
        };
        let mut url = addr.into_inner();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let addr = async_nats::ServerAddr::from_url(url)
            .map_err(|e| format!("--cluster {}: {e}", redact(raw)))?;
        if let Some(found) = found {
            if auth.as_ref().is_some_and(|a| *a != found) {
                return Err("--cluster: the URLs carry different credentials".into());
            }
            auth = Some(found);
        }
        out.push(addr);
    }
    Ok((out, auth))
}

/// `%XX` escapes of a URL's user or password part, decoded.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a relay tells the others, on [`RELAYS_SUBJECT`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Announce {
    relay: String,
    /// Random per process: a relay restarted under the same id is another instance.
    instance: String,
    streams: Vec<Announced>,
}

/// One stream in an announcement.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Announced {
    name: String,
    /// The publisher is connected to the announcing relay.
    publisher: bool,
    /// Viewers on the announcing relay.
    viewers: usize,
    #[serde(default)]
    codec: String,
    #[serde(default)]
    width: u16,
    #[serde(default)]
    height: u16,
    #[serde(default)]
    fps: f64,
    #[serde(default)]
    bitrate_kbps: f64,
    #[serde(default)]
    gop_frames: Option<u64>,
    #[serde(default)]
    last_sequence: Option<u64>,
    #[serde(default)]
    connected_unix_ms: u64,
}

/// The value of a publisher lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LockOwner {
    relay: String,
    instance: String,
    /// Which publisher of that relay (a publisher that left must not free the lock
    /// of the one that came after it).
    #[serde(default)]
    publisher: u64,
}

#[derive(Debug)]
struct Peer {
    heard: Instant,
    announce: Announce,
}

#[derive(Debug)]
struct Feed {
    stream: Arc<Stream>,
    generation: u64,
}

/// Why a publisher may not publish a stream.
#[derive(Debug)]
pub(crate) enum LockError {
    /// Another relay holds the stream's lock.
    Busy(String),
    /// NATS or JetStream did not answer; the relay publishes without the lock.
    Unavailable(String),
}

/// The relay's membership in a cluster.
pub(crate) struct Cluster {
    /// Frames.
    client: async_nats::Client,
    /// Announcements and the locks, on a connection of their own so that a backlog
    /// of frames never delays a relay's sign of life.
    control: async_nats::Client,
    js: async_nats::jetstream::Context,
    /// Streams whose frames this relay forwards (its publishers, not `--demo`).
    forwarding: Mutex<std::collections::HashSet<StreamName>>,
    next_publisher: AtomicU64,
    locks: tokio::sync::Mutex<Option<kv::Store>>,
    relay_id: String,
    instance: String,
    hub: Hub,
    peers: Mutex<HashMap<String, Peer>>,
    feeds: Mutex<HashMap<StreamName, Feed>>,
    next_generation: AtomicU64,
    announce: Notify,
    state: Arc<ConnState>,
    max_payload: AtomicUsize,
}

/// Connection state, shared with the NATS event callback.
#[derive(Debug, Default)]
struct ConnState {
    /// Since when the client is connected (None: it is not).
    connected_since: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("relay_id", &self.relay_id)
            .finish_non_exhaustive()
    }
}

/// The hub's observer: starts feeds for streams that get local viewers and asks for
/// an announcement when something changed.
struct Observer(Weak<Cluster>);

impl HubObserver for Observer {
    fn stream_changed(&self, stream: &Arc<Stream>, local: usize) {
        if let Some(cluster) = self.0.upgrade() {
            if local > 0 {
                cluster.ensure_feed(stream);
            }
            cluster.announce.notify_one();
        }
    }
}

fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        "vswa_cluster_subscriptions",
        "Streams this relay is subscribed to over NATS (those with local viewers)"
    );
    describe_counter!(
        "vswa_cluster_frames_in_total",
        "Frames received from other relays over NATS"
    );
    describe_counter!(
        "vswa_cluster_frames_out_total",
        "Frames published to NATS for other relays"
    );
    describe_counter!(
        "vswa_cluster_dropped_total",
        "Frames the cluster path dropped, by reason (backbone_full: NATS could not take them in time; nats_unavailable: not connected to NATS; slow_consumer: NATS dropped messages for this relay, counted per event; local_publisher: a stream published here too)"
    );
    describe_counter!(
        "vswa_cluster_announcements_dropped_total",
        "Times NATS dropped other relays' announcements for this relay (a slow consumer on the control connection)"
    );
    describe_gauge!(
        "vswa_cluster_connected",
        "1 while the relay is connected to NATS"
    );
    describe_gauge!(
        "vswa_cluster_relays",
        "Other relays heard within the last 3 s"
    );
}

/// An id for this relay process, different on every start (process id and the
/// clock in nanoseconds; relays are told apart by id and instance together).
fn new_instance_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{nanos:x}", std::process::id())
}

/// The default relay id: `HOSTNAME:PORT`.
pub fn default_relay_id(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "relay".into());
    format!("{host}:{port}")
}

impl Cluster {
    /// Connects to NATS (in the background: the relay starts even while NATS is down)
    /// and starts the announcer and the directory.
    pub(crate) async fn start(
        config: &ClusterConfig,
        relay_id: String,
        hub: Hub,
    ) -> Result<Arc<Cluster>, String> {
        describe_metrics();
        let (servers, url_auth) = server_addrs(&config.servers)?;
        if servers.is_empty() {
            return Err("--cluster: no NATS server URL".into());
        }
        let state = Arc::new(ConnState::default());
        let client = connect(
            config,
            &servers,
            url_auth.as_ref(),
            format!("vswa-relay {relay_id}"),
            Conn::Frames,
        )
        .await?;
        let control = connect(
            config,
            &servers,
            url_auth.as_ref(),
            format!("vswa-relay {relay_id} control"),
            Conn::Control,
        )
        .await?;
        let shown: Vec<String> = config.servers.iter().map(|s| redact(s)).collect();
        tracing::info!(relay = %relay_id, servers = %shown.join(","), "cluster: joining over NATS");
        let js = async_nats::jetstream::new(control.clone());
        let cluster = Arc::new(Cluster {
            client,
            control,
            js,
            forwarding: Mutex::new(Default::default()),
            next_publisher: AtomicU64::new(1),
            locks: tokio::sync::Mutex::new(None),
            relay_id,
            instance: new_instance_id(),
            hub: hub.clone(),
            peers: Mutex::new(HashMap::new()),
            feeds: Mutex::new(HashMap::new()),
            next_generation: AtomicU64::new(1),
            announce: Notify::new(),
            state,
            max_payload: AtomicUsize::new(0),
        });
        metrics::gauge!("vswa_cluster_subscriptions").set(0.0);
        metrics::gauge!("vswa_cluster_connected").set(0.0);
        hub.set_observer(Arc::new(Observer(Arc::downgrade(&cluster))));
        tokio::spawn(cluster.clone().announcer());
        tokio::spawn(cluster.clone().directory());
        Ok(cluster)
    }

    /// Whether the client is connected to NATS now.
    fn connected(&self) -> bool {
        matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        )
    }

    /// The largest frame (VSWA header + payload) NATS takes, once known.
    pub(crate) fn max_frame(&self) -> Option<usize> {
        match self.max_payload.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n.saturating_sub(HEADER_ROOM)),
        }
    }

    /// Whether the control connection (announcements, locks) is up.
    fn control_connected(&self) -> bool {
        matches!(
            self.control.connection_state(),
            async_nats::connection::State::Connected
        )
    }

    /// The control connection has been up for at least [`DEAD_AFTER`]: silence from a
    /// relay then means it is gone.
    fn warm(&self) -> bool {
        self.track_connection();
        lock(&self.state.connected_since).is_some_and(|t| t.elapsed() >= DEAD_AFTER)
    }

    /// Follows the control connection's state (polled: events can be lost).
    fn track_connection(&self) {
        let up = self.control_connected();
        let mut since = lock(&self.state.connected_since);
        match (up, since.is_some()) {
            (true, false) => *since = Some(Instant::now()),
            (false, true) => *since = None,
            _ => {}
        }
    }

    /// Whether the relay instance `instance` is known to be gone.
    fn is_dead(&self, instance: &str) -> bool {
        if instance == self.instance {
            return false;
        }
        self.warm()
            && lock(&self.peers)
                .get(instance)
                .is_none_or(|p| p.heard.elapsed() >= DEAD_AFTER)
    }

    /// When the relay instance `instance` last announced `name` as published there.
    fn heard_publishing(&self, instance: &str, name: &str) -> Option<Instant> {
        let peers = lock(&self.peers);
        let peer = peers.get(instance)?;
        peer.announce
            .streams
            .iter()
            .any(|s| s.name == name && s.publisher)
            .then_some(peer.heard)
    }

    // ---- the publishing side ----------------------------------------------------

    /// Takes the cluster-wide lock of `stream` for a publisher connected here and
    /// starts forwarding its frames. Without NATS the publisher is accepted anyway
    /// (logged): local viewers keep working, and the lock is taken once NATS is back
    /// (or the publisher is closed with `stream_busy` if another relay has it by then).
    pub(crate) async fn claim(
        self: &Arc<Self>,
        stream: &Arc<Stream>,
    ) -> Result<ClusterPublisher, LockError> {
        let name = stream.name().clone();
        let max_payload = self.client.server_info().max_payload;
        self.max_payload.store(max_payload, Ordering::Relaxed);
        let nonce = self.next_publisher.fetch_add(1, Ordering::Relaxed);
        let revision = if self.control_connected() {
            match tokio::time::timeout(CLAIM_TIMEOUT, self.take_lock(&name, nonce)).await {
                Ok(Ok(rev)) => Some(rev),
                Ok(Err(LockError::Busy(relay))) => return Err(LockError::Busy(relay)),
                Ok(Err(LockError::Unavailable(e))) => {
                    tracing::warn!(stream = %name, "cluster: publisher lock unavailable ({e}); publishing without it for now");
                    None
                }
                Err(_) => {
                    tracing::warn!(stream = %name, "cluster: publisher lock timed out; publishing without it for now");
                    None
                }
            }
        } else {
            tracing::warn!(stream = %name, "cluster: NATS not connected; the stream stays local until it is");
            None
        };
        lock(&self.forwarding).insert(name.clone());
        let held = Arc::new(Mutex::new(revision));
        let (lost_tx, lost) = tokio::sync::watch::channel(None);
        let done = tokio_util::sync::CancellationToken::new();
        tokio::spawn(self.clone().keep_lock(
            name.clone(),
            nonce,
            held.clone(),
            lost_tx,
            done.clone(),
        ));
        let (tx, rx) = mpsc::channel(FORWARD_QUEUE);
        tokio::spawn(self.clone().forward(stream.clone(), rx, nonce, done));
        self.announce.notify_one();
        Ok(ClusterPublisher {
            tx,
            cluster: self.clone(),
            lost,
        })
    }

    async fn lock_store(&self) -> Result<kv::Store, String> {
        let mut cached = self.locks.lock().await;
        if let Some(store) = &*cached {
            return Ok(store.clone());
        }
        let store = match self.js.get_key_value(LOCK_BUCKET).await {
            Ok(store) => store,
            Err(_) => {
                // The bucket's stream, made as `create_key_value` would make it. (That
                // call first reads the account info, whose 2.9 form this async-nats
                // version cannot parse.)
                use async_nats::jetstream::stream;
                self.js
                    .get_or_create_stream(stream::Config {
                        name: format!("KV_{LOCK_BUCKET}"),
                        description: Some(
                            "vswa-relay: which relay holds each stream's publisher".into(),
                        ),
                        subjects: vec![format!("$KV.{LOCK_BUCKET}.>")],
                        max_messages_per_subject: 1,
                        // Locks live as long as their owners' announcements; none need
                        // to outlive a NATS restart (publishers take theirs again).
                        storage: stream::StorageType::Memory,
                        allow_rollup: true,
                        deny_delete: true,
                        allow_direct: true,
                        discard: stream::DiscardPolicy::New,
                        num_replicas: 1,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| format!("JetStream (is nats-server running with -js?): {e}"))?;
                self.js
                    .get_key_value(LOCK_BUCKET)
                    .await
                    .map_err(|e| format!("JetStream key-value bucket {LOCK_BUCKET}: {e}"))?
            }
        };
        *cached = Some(store.clone());
        Ok(store)
    }

    async fn forget_store(&self) {
        *self.locks.lock().await = None;
    }

    fn lock_value(&self, publisher: u64) -> bytes::Bytes {
        serde_json::to_vec(&LockOwner {
            relay: self.relay_id.clone(),
            instance: self.instance.clone(),
            publisher,
        })
        .unwrap_or_default()
        .into()
    }

    /// Whether relay instance `instance` announced, at least [`SETTLE`] after `since`,
    /// a list of streams without `name` as published: its lock of `name` is stale (a
    /// release that failed) or about to be released (a clean leave).
    fn announced_without(&self, instance: &str, name: &str, since: Instant) -> bool {
        lock(&self.peers).get(instance).is_some_and(|p| {
            p.heard >= since + SETTLE
                && !p
                    .announce
                    .streams
                    .iter()
                    .any(|s| s.name == name && s.publisher)
        })
    }

    /// The relay (other than this one) that announces `name` as published there.
    fn publisher_elsewhere(&self, name: &str) -> Option<String> {
        lock(&self.peers)
            .values()
            .find(|p| {
                p.heard.elapsed() < DEAD_AFTER
                    && p.announce
                        .streams
                        .iter()
                        .any(|s| s.name == name && s.publisher)
            })
            .map(|p| p.announce.relay.clone())
    }

    async fn take_lock(&self, name: &StreamName, publisher: u64) -> Result<u64, LockError> {
        // Decide only with a full view of the other relays (a relay that has just
        // connected has heard nobody yet).
        let warm_by = Instant::now() + DEAD_AFTER + Duration::from_secs(1);
        while !self.warm() && Instant::now() < warm_by {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let store = self.lock_store().await.map_err(LockError::Unavailable)?;
        let value = self.lock_value(publisher);
        let started = Instant::now();
        loop {
            match store.create(name.as_str(), value.clone()).await {
                Ok(rev) => {
                    // A free lock while another relay still announces the stream: NATS
                    // lost it (a restart), or that relay's publisher just left and its
                    // next announcement will say so. Wait for that announcement.
                    let Some(relay) = self.publisher_elsewhere(name.as_str()) else {
                        return Ok(rev);
                    };
                    while started.elapsed() < MOVE_WAIT {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        if self.publisher_elsewhere(name.as_str()).is_none() {
                            return Ok(rev);
                        }
                    }
                    let _ = store.delete_expect_revision(name.as_str(), Some(rev)).await;
                    return Err(LockError::Busy(relay));
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => {
                    self.forget_store().await;
                    return Err(LockError::Unavailable(e.to_string()));
                }
            }
            let entry = match store.entry(name.as_str()).await {
                Ok(Some(entry)) if entry.operation == kv::Operation::Put => Some(entry),
                Ok(_) => None,
                Err(e) => return Err(LockError::Unavailable(e.to_string())),
            };
            if let Some(entry) = entry {
                let owner: Option<LockOwner> = serde_json::from_slice(&entry.value).ok();
                let (relay, instance) = owner
                    .map(|o| (o.relay, o.instance))
                    .unwrap_or_else(|| ("?".into(), String::new()));
                // Ours (a publisher of this relay that left), or its owner is gone, or
                // its owner no longer announces the stream: take it over, atomically.
                let stale = instance == self.instance
                    || self.is_dead(&instance)
                    || self.announced_without(&instance, name.as_str(), started);
                if stale {
                    if let Ok(rev) = store
                        .update(name.as_str(), value.clone(), entry.revision)
                        .await
                    {
                        if instance != self.instance {
                            tracing::info!(stream = %name, from = %relay, "cluster: took over the publisher lock of a relay that is gone or no longer publishes it");
                        }
                        return Ok(rev);
                    }
                    continue;
                }
                if started.elapsed() >= MOVE_WAIT {
                    return Err(LockError::Busy(relay));
                }
            }
            // A publisher moving here from another relay: its old relay frees the lock
            // within moments of the leave.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Keeps the lock of `name` for publisher `publisher` while it is connected: takes
    /// it again when it vanished (NATS restarted) or was never taken (NATS was down),
    /// and reports (through `lost`) another relay that holds it.
    async fn keep_lock(
        self: Arc<Self>,
        name: StreamName,
        publisher: u64,
        held: Arc<Mutex<Option<u64>>>,
        lost: tokio::sync::watch::Sender<Option<String>>,
        done: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = done.cancelled() => return,
                _ = tick.tick() => {}
            }
            let kept =
                tokio::time::timeout(CLAIM_TIMEOUT, self.reassert_lock(&name, publisher, &held))
                    .await;
            if let Ok(Err(relay)) = kept {
                tracing::warn!(stream = %name, %relay, "cluster: another relay holds this stream's lock; closing the publisher here");
                let _ = lost.send(Some(relay));
                return;
            }
        }
    }

    /// One check of the lock of `name`; `Err(relay)` when another live relay has it.
    async fn reassert_lock(
        &self,
        name: &StreamName,
        publisher: u64,
        held: &Mutex<Option<u64>>,
    ) -> Result<(), String> {
        if !self.control_connected() {
            return Ok(());
        }
        let Ok(store) = self.lock_store().await else {
            return Ok(());
        };
        match store.entry(name.as_str()).await {
            Ok(Some(entry)) if entry.operation == kv::Operation::Put => {
                let owner: Option<LockOwner> = serde_json::from_slice(&entry.value).ok();
                match owner {
                    Some(o) if o.instance == self.instance && o.publisher == publisher => {
                        *lock(held) = Some(entry.revision);
                        Ok(())
                    }
                    // Another publisher of this relay took it: this one is leaving.
                    Some(o) if o.instance == self.instance => Err(o.relay),
                    Some(o) if !self.is_dead(&o.instance) => Err(o.relay),
                    _ => {
                        if let Ok(rev) = store
                            .update(name.as_str(), self.lock_value(publisher), entry.revision)
                            .await
                        {
                            *lock(held) = Some(rev);
                        }
                        Ok(())
                    }
                }
            }
            Ok(_) => {
                match self.take_lock(name, publisher).await {
                    Ok(rev) => *lock(held) = Some(rev),
                    Err(LockError::Busy(relay)) => return Err(relay),
                    Err(LockError::Unavailable(_)) => {}
                }
                Ok(())
            }
            Err(_) => {
                // The bucket is gone (NATS restarted): make it again next time.
                self.forget_store().await;
                Ok(())
            }
        }
    }

    /// Frees the lock of `name` if publisher `publisher` of this relay still holds it;
    /// tries for [`RELEASE_FOR`] while NATS is unreachable.
    async fn release_lock(&self, name: &StreamName, publisher: u64) {
        let until = Instant::now() + RELEASE_FOR;
        while Instant::now() < until {
            if self.control_connected() {
                let attempt = tokio::time::timeout(CLAIM_TIMEOUT, async {
                    let store = self.lock_store().await?;
                    match store.entry(name.as_str()).await {
                        Ok(Some(entry)) if entry.operation == kv::Operation::Put => {
                            let ours =
                                serde_json::from_slice::<LockOwner>(&entry.value).is_ok_and(|o| {
                                    o.instance == self.instance && o.publisher == publisher
                                });
                            if ours {
                                store
                                    .delete_expect_revision(name.as_str(), Some(entry.revision))
                                    .await
                                    .map_err(|e| e.to_string())?;
                            }
                            Ok(())
                        }
                        Ok(_) => Ok(()),
                        Err(e) => {
                            self.forget_store().await;
                            Err(e.to_string())
                        }
                    }
                })
                .await;
                if let Ok(Ok(())) = attempt {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tracing::warn!(stream = %name, "cluster: could not free the publisher lock; other relays take it over once this relay announces the stream no more");
    }

    fn frame_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(H_RELAY, self.relay_id.as_str());
        headers.insert(H_INSTANCE, self.instance.as_str());
        headers
    }

    /// Publishes the frames of a stream published here, and its end.
    async fn forward(
        self: Arc<Self>,
        stream: Arc<Stream>,
        mut frames: mpsc::Receiver<Arc<OutFrame>>,
        publisher: u64,
        done: tokio_util::sync::CancellationToken,
    ) {
        let name = stream.name().clone();
        let subject = format!("{FRAMES_PREFIX}{name}");
        let out = metrics::counter!("vswa_cluster_frames_out_total");
        let dropped = metrics::counter!("vswa_cluster_dropped_total", "reason" => "backbone_full");
        while let Some(frame) = frames.recv().await {
            if !self.connected() {
                // Queued in the client, it would reach viewers late after a reconnect;
                // drop it now.
                metrics::counter!("vswa_cluster_dropped_total", "reason" => "nats_unavailable")
                    .increment(1);
                continue;
            }
            let mut headers = self.frame_headers();
            if let Some(clock) = *stream.publisher_clock().borrow() {
                headers.insert(H_CLOCK, ControlMessage::Clock(clock).to_json().as_str());
            }
            let bytes = frame.ws.slice(frame.ws.len() - frame.frame.encoded_len()..);
            let sent = tokio::time::timeout(
                OP_TIMEOUT,
                self.client
                    .publish_with_headers(subject.clone(), headers, bytes),
            )
            .await;
            match sent {
                Ok(Ok(())) => out.increment(1),
                _ => dropped.increment(1),
            }
        }
        // The publisher left: stop keeping the lock, tell the relays that watch, say
        // so in the next announcement, then free the lock.
        done.cancel();
        lock(&self.forwarding).remove(&name);
        self.announce.notify_one();
        let mut headers = self.frame_headers();
        headers.insert(H_END, "publisher_left");
        let _ = tokio::time::timeout(
            OP_TIMEOUT,
            self.client
                .publish_with_headers(subject, headers, bytes::Bytes::new()),
        )
        .await;
        self.release_lock(&name, publisher).await;
    }

    // ---- the viewing side -------------------------------------------------------

    /// Starts the feed of `stream` (a subscription to its frames) unless it runs.
    fn ensure_feed(self: &Arc<Self>, stream: &Arc<Stream>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let generation = {
            let mut feeds = lock(&self.feeds);
            if feeds
                .get(stream.name())
                .is_some_and(|f| Arc::ptr_eq(&f.stream, stream))
            {
                return;
            }
            let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
            feeds.insert(
                stream.name().clone(),
                Feed {
                    stream: stream.clone(),
                    generation,
                },
            );
            generation
        };
        runtime.spawn(self.clone().feed(stream.clone(), generation));
    }

    /// Ends the feed `generation` of `stream` if nobody here watches (true), or says
    /// it was replaced (true); false while it is still needed.
    fn retire_feed(&self, stream: &Arc<Stream>, generation: u64) -> bool {
        let mut feeds = lock(&self.feeds);
        match feeds.get(stream.name()) {
            Some(f) if f.generation == generation => {
                if stream.local_viewers() > 0 {
                    return false;
                }
                feeds.remove(stream.name());
                true
            }
            _ => true,
        }
    }

    fn is_current(&self, stream: &Arc<Stream>, generation: u64) -> bool {
        lock(&self.feeds)
            .get(stream.name())
            .is_some_and(|f| f.generation == generation)
    }

    /// Subscribes to a stream while it has local viewers and feeds its frames into
    /// the hub.
    async fn feed(self: Arc<Self>, stream: Arc<Stream>, generation: u64) {
        let subject = format!("{FRAMES_PREFIX}{}", stream.name());
        let gauge = metrics::gauge!("vswa_cluster_subscriptions");
        let mut sub: Option<async_nats::Subscriber> = None;
        let mut remote: Option<Remote> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut idle_since: Option<Instant> = None;
        loop {
            if sub.is_none() {
                if let Ok(Ok(s)) =
                    tokio::time::timeout(OP_TIMEOUT, self.client.subscribe(subject.clone())).await
                {
                    // Once NATS answered a ping after the SUB, frames published from
                    // now on reach us: only then does the gauge count it.
                    match tokio::time::timeout(OP_TIMEOUT, self.client.flush()).await {
                        Ok(Ok(())) => {
                            gauge.increment(1.0);
                            tracing::debug!(stream = %stream.name(), "cluster: subscribed");
                            sub = Some(s);
                        }
                        // Not confirmed: drop it (unsubscribes) and try again.
                        _ => tokio::time::sleep(Duration::from_millis(250)).await,
                    }
                }
            }
            tokio::select! {
                msg = next_message(&mut sub) => match msg {
                    Some(msg) => self.on_message(&stream, &mut remote, msg),
                    None => {
                        if sub.take().is_some() {
                            gauge.decrement(1.0);
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                },
                _ = tick.tick() => {
                    if let Some(r) = &mut remote {
                        if let Some(heard) = self.heard_publishing(&r.instance, stream.name().as_str()) {
                            r.last = r.last.max(heard);
                        }
                        if r.last.elapsed() > DEAD_AFTER {
                            tracing::info!(stream = %stream.name(), relay = %r.relay, "cluster: no frame or announcement from the publishing relay for {} s; ending the stream here", DEAD_AFTER.as_secs());
                            remote = None;
                        }
                    }
                    if !self.is_current(&stream, generation) {
                        break;
                    }
                    if stream.local_viewers() == 0 {
                        let since = *idle_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= LINGER && self.retire_feed(&stream, generation) {
                            break;
                        }
                    } else {
                        idle_since = None;
                    }
                }
            }
        }
        // Nobody watches here any more (or a newer feed took over): leave without an
        // `end`, which a viewer joining this very moment must not get.
        if let Some(r) = remote {
            r.handle.leave_quietly();
        }
        if let Some(sub) = sub {
            gauge.decrement(1.0);
            let mut sub = sub;
            let _ = tokio::time::timeout(OP_TIMEOUT, sub.unsubscribe()).await;
            tracing::debug!(stream = %stream.name(), "cluster: unsubscribed");
        }
    }

    /// One message on a stream's subject: a frame, or the publisher's end.
    fn on_message(
        &self,
        stream: &Arc<Stream>,
        remote: &mut Option<Remote>,
        msg: async_nats::Message,
    ) {
        let header = |name: &str| {
            msg.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_string())
        };
        let instance = header(H_INSTANCE).unwrap_or_default();
        if header(H_END).is_some() {
            if remote.as_ref().is_some_and(|r| r.instance == instance) {
                *remote = None;
            }
            return;
        }
        if stream.has_local_publisher() {
            metrics::counter!("vswa_cluster_dropped_total", "reason" => "local_publisher")
                .increment(1);
            return;
        }
        if remote.as_ref().is_some_and(|r| r.instance != instance) {
            // The publisher is now on another relay: end, then follow it.
            *remote = None;
        }
        if remote.is_none() {
            let relay = header(H_RELAY).unwrap_or_else(|| "?".into());
            match self.hub.publish_remote(stream, relay.clone()) {
                Ok(handle) => {
                    *remote = Some(Remote {
                        handle,
                        relay,
                        instance,
                        last: Instant::now(),
                    })
                }
                Err(_) => return,
            }
        }
        let Some(r) = remote.as_mut() else { return };
        if let Some(clock) = header(H_CLOCK) {
            if let Ok(ControlMessage::Clock(clock)) = ControlMessage::from_json(&clock) {
                stream.set_publisher_clock(clock);
            }
        }
        match r.handle.publish(msg.payload) {
            Ok(_) => {
                r.last = Instant::now();
                metrics::counter!("vswa_cluster_frames_in_total").increment(1);
            }
            Err(e) => {
                tracing::debug!(stream = %stream.name(), relay = %r.relay, "cluster: invalid frame from another relay: {e}");
            }
        }
    }

    // ---- the directory ----------------------------------------------------------

    /// Announces this relay's streams every [`ANNOUNCE_EVERY`] and soon after a change.
    async fn announcer(self: Arc<Self>) {
        let mut every = tokio::time::interval(ANNOUNCE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = self.announce.notified() => {
                    // Let a burst of changes (many viewers joining) become one message.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            if self.hub.is_shutting_down() {
                return;
            }
            self.track_connection();
            let info = self.client.server_info();
            self.max_payload.store(info.max_payload, Ordering::Relaxed);
            metrics::gauge!("vswa_cluster_connected").set(if self.control_connected() {
                1.0
            } else {
                0.0
            });
            self.prune_peers();
            self.apply_remote_viewers();
            if !self.control_connected() {
                continue;
            }
            let announce = self.own_announce();
            if let Ok(json) = serde_json::to_vec(&announce) {
                let _ = tokio::time::timeout(
                    OP_TIMEOUT,
                    self.control.publish(RELAYS_SUBJECT, json.into()),
                )
                .await;
            }
        }
    }

    fn own_announce(&self) -> Announce {
        let streams = self
            .hub
            .streams()
            .into_iter()
            .filter_map(|info| {
                let name = StreamName::new(&info.name).ok()?;
                let publisher = lock(&self.forwarding).contains(&name);
                (publisher || info.viewers > 0).then(|| Announced {
                    name: info.name,
                    publisher,
                    viewers: info.viewers,
                    codec: info.codec,
                    width: info.width,
                    height: info.height,
                    fps: info.fps,
                    bitrate_kbps: info.bitrate_kbps,
                    gop_frames: info.gop_frames,
                    last_sequence: info.last_sequence,
                    connected_unix_ms: info.publisher.map_or(0, |p| p.connected_unix_ms),
                })
            })
            .collect();
        Announce {
            relay: self.relay_id.clone(),
            instance: self.instance.clone(),
            streams,
        }
    }

    /// Listens to the other relays' announcements.
    async fn directory(self: Arc<Self>) {
        loop {
            let subscribed =
                tokio::time::timeout(OP_TIMEOUT, self.control.subscribe(RELAYS_SUBJECT)).await;
            let mut sub = match subscribed {
                Ok(Ok(sub)) => sub,
                _ => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            while let Some(msg) = sub.next().await {
                let Ok(announce) = serde_json::from_slice::<Announce>(&msg.payload) else {
                    continue;
                };
                if announce.instance == self.instance {
                    continue;
                }
                lock(&self.peers).insert(
                    announce.instance.clone(),
                    Peer {
                        heard: Instant::now(),
                        announce,
                    },
                );
                self.apply_remote_viewers();
            }
            if self.hub.is_shutting_down() {
                return;
            }
        }
    }

    fn prune_peers(&self) {
        let mut peers = lock(&self.peers);
        peers.retain(|_, p| p.heard.elapsed() < DEAD_AFTER * 10);
        let live = peers
            .values()
            .filter(|p| p.heard.elapsed() < DEAD_AFTER)
            .count();
        metrics::gauge!("vswa_cluster_relays").set(live as f64);
    }

    /// Tells each stream published here how many viewers it has on the other relays.
    fn apply_remote_viewers(&self) {
        let mut remote: HashMap<String, usize> = HashMap::new();
        for peer in lock(&self.peers).values() {
            if peer.heard.elapsed() >= DEAD_AFTER {
                continue;
            }
            for s in &peer.announce.streams {
                *remote.entry(s.name.clone()).or_default() += s.viewers;
            }
        }
        for stream in self.hub.all() {
            if stream.has_local_publisher() {
                let n = remote.get(stream.name().as_str()).copied().unwrap_or(0);
                stream.set_remote_viewers(u32::try_from(n).unwrap_or(u32::MAX));
            }
        }
    }

    /// The codec another live relay announces for `name` (`jpeg`, `h264`), if any.
    pub(crate) fn announced_codec(&self, name: &str) -> Option<String> {
        lock(&self.peers)
            .values()
            .filter(|p| p.heard.elapsed() < DEAD_AFTER)
            .flat_map(|p| p.announce.streams.iter())
            .find(|s| s.name == name && s.publisher && !s.codec.is_empty())
            .map(|s| s.codec.clone())
    }

    /// Whether another live relay announces `name` as published there.
    pub(crate) fn published_elsewhere(&self, name: &str) -> bool {
        self.publisher_elsewhere(name).is_some()
    }

    /// The streams of the whole cluster: this relay's `local` ones with their
    /// cluster-wide view, plus the streams published on other relays.
    pub(crate) fn directory_view(&self, local: Vec<StreamInfo>) -> Vec<StreamInfo> {
        // name -> (publishing relay, connected_ms, viewers per relay, announced stream)
        let mut cluster: BTreeMap<String, Gathered> = BTreeMap::new();
        for peer in lock(&self.peers).values() {
            if peer.heard.elapsed() >= DEAD_AFTER {
                continue;
            }
            for s in &peer.announce.streams {
                let entry = cluster.entry(s.name.clone()).or_default();
                if s.viewers > 0 {
                    *entry.1.entry(peer.announce.relay.clone()).or_default() += s.viewers;
                }
                if s.publisher {
                    entry.0 = Some(peer.announce.relay.clone());
                    entry.2 = Some(s.clone());
                }
            }
        }
        let mut out = Vec::with_capacity(local.len());
        for mut info in local {
            let (elsewhere, mut by_relay, _) = cluster.remove(&info.name).unwrap_or_default();
            if info.viewers > 0 {
                by_relay.insert(self.relay_id.clone(), info.viewers);
            }
            let here = info.publisher.as_ref().is_some_and(|p| p.relay.is_none());
            let relay = if here {
                Some(self.relay_id.clone())
            } else {
                info.publisher
                    .as_ref()
                    .and_then(|p| p.relay.clone())
                    .or(elsewhere)
            };
            info.live |= relay.is_some();
            info.cluster = Some(ClusterView {
                relay,
                viewers_total: by_relay.values().sum(),
                viewers_by_relay: by_relay,
            });
            out.push(info);
        }
        for (name, (relay, by_relay, announced)) in cluster {
            let Some(s) = announced else { continue };
            out.push(StreamInfo {
                name,
                live: true,
                standby: false,
                publisher: Some(PublisherView {
                    addr: None,
                    connected_unix_ms: s.connected_unix_ms,
                    relay: relay.clone(),
                }),
                codec: s.codec,
                gop_frames: s.gop_frames,
                width: s.width,
                height: s.height,
                fps: s.fps,
                bitrate_kbps: s.bitrate_kbps,
                frames: 0,
                bytes: 0,
                last_sequence: s.last_sequence,
                viewers: 0,
                created_unix_ms: s.connected_unix_ms,
                viewer_details: Vec::new(),
                cluster: Some(ClusterView {
                    relay,
                    viewers_total: by_relay.values().sum(),
                    viewers_by_relay: by_relay,
                }),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// A stream as the other relays announce it: the relay publishing it, viewers per
/// relay, and the publishing relay's view of it.
type Gathered = (Option<String>, BTreeMap<String, usize>, Option<Announced>);

/// Frames from a publisher on another relay, entering the hub through `handle`.
struct Remote {
    handle: PublisherHandle,
    relay: String,
    instance: String,
    /// Last sign of life: a frame, or an announcement listing the stream.
    last: Instant,
}

/// One NATS connection with the relay's options.
async fn connect(
    config: &ClusterConfig,
    servers: &[async_nats::ServerAddr],
    url_auth: Option<&UrlAuth>,
    name: String,
    conn: Conn,
) -> Result<async_nats::Client, String> {
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        // A relay never wants its own frames back.
        .no_echo()
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .client_capacity(64)
        .connection_timeout(OP_TIMEOUT)
        .request_timeout(Some(OP_TIMEOUT))
        .ping_interval(Duration::from_secs(5))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempt| {
            Duration::from_millis((100u64 << attempt.min(5)).min(2000))
        });
    options = options.event_callback(move |event| async move { on_event(conn, event) });
    match url_auth {
        Some(UrlAuth::UserPassword(user, password)) => {
            options = options.user_and_password(user.clone(), password.clone());
        }
        Some(UrlAuth::Token(token)) => options = options.token(token.clone()),
        None => {}
    }
    if let Some(path) = &config.creds {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| format!("--cluster-creds {}: {e}", path.display()))?;
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if let Some(ca) = &config.ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &config.client_cert {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if config.require_tls {
        options = options.require_tls(true);
    }
    let shown: Vec<String> = config.servers.iter().map(|s| redact(s)).collect();
    options
        .connect(servers.to_vec())
        .await
        .map_err(|e| format!("cannot connect to NATS ({}): {e}", shown.join(", ")))
}

async fn next_message(sub: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match sub {
        Some(sub) => sub.next().await,
        None => None,
    }
}

/// Which of a relay's two NATS connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    /// Frames.
    Frames,
    /// Announcements and locks.
    Control,
}

fn on_event(conn: Conn, event: async_nats::Event) {
    match (event, conn) {
        (async_nats::Event::SlowConsumer(_), Conn::Frames) => {
            metrics::counter!("vswa_cluster_dropped_total", "reason" => "slow_consumer")
                .increment(1);
        }
        (async_nats::Event::SlowConsumer(_), Conn::Control) => {
            metrics::counter!("vswa_cluster_announcements_dropped_total").increment(1);
        }
        // One connection's story is enough for the log.
        (_, Conn::Control) => {}
        (async_nats::Event::Connected, _) => tracing::info!("cluster: connected to NATS"),
        (async_nats::Event::Disconnected, _) => tracing::warn!(
            "cluster: lost the NATS connection; local streams keep working, reconnecting"
        ),
        (other, _) => tracing::info!("cluster: NATS {other}"),
    }
}

/// A publisher connected here, as the cluster sees it: its frames go to NATS.
/// Dropping it ends the stream on the other relays and frees the lock.
pub(crate) struct ClusterPublisher {
    tx: mpsc::Sender<Arc<OutFrame>>,
    cluster: Arc<Cluster>,
    /// Set to the relay that holds the stream's lock when this relay lost it.
    lost: tokio::sync::watch::Receiver<Option<String>>,
}

impl ClusterPublisher {
    /// Completes when another relay holds the stream's lock (taken while this relay
    /// was cut off from NATS): the publisher here must go. Yields that relay.
    pub(crate) fn lost(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut lost = self.lost.clone();
        async move {
            loop {
                if let Some(relay) = lost.borrow_and_update().clone() {
                    return relay;
                }
                if lost.changed().await.is_err() {
                    // The lock keeper ended without a loss: never.
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    /// Queues a frame for NATS without waiting (dropped and counted when NATS is
    /// behind). A frame NATS cannot carry is an error naming the setting.
    pub(crate) fn forward(&self, frame: &Arc<OutFrame>) -> Result<(), String> {
        let len = frame.frame.encoded_len();
        if let Some(max) = self.cluster.max_frame() {
            if len > max {
                return Err(format!(
                    "frame of {len} bytes is over what the cluster carries ({max} bytes: NATS max_payload {} less {HEADER_ROOM} for headers; raise max_payload in nats-server's configuration)",
                    max + HEADER_ROOM
                ));
            }
        }
        if self.tx.try_send(frame.clone()).is_err() {
            metrics::counter!("vswa_cluster_dropped_total", "reason" => "backbone_full")
                .increment(1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_out_of_the_urls() {
        let (addrs, auth) = server_addrs(&[
            "nats://vswa:p%40ss@127.0.0.1:4222".into(),
            "nats://127.0.0.1:4223".into(),
        ])
        .unwrap();
        assert_eq!(
            auth,
            Some(UrlAuth::UserPassword("vswa".into(), "p@ss".into()))
        );
        assert!(addrs.iter().all(|a| !a.has_user_pass()), "{addrs:?}");
        let (_, auth) = server_addrs(&["nats://s3cret@h:4222".into()]).unwrap();
        assert_eq!(auth, Some(UrlAuth::Token("s3cret".into())));
        assert!(server_addrs(&["nats://a:b@h:1".into(), "nats://c:d@h:2".into()]).is_err());
        assert!(server_addrs(&["nats://h:99999".into()]).is_err());
    }

    #[test]
    fn urls_lose_their_credentials_in_logs() {
        assert_eq!(redact("nats://u:secret@h:4222"), "nats://h:4222");
        assert_eq!(redact("nats://h:4222"), "nats://h:4222");
        assert_eq!(redact("tok@h:4222"), "h:4222");
        let config = ClusterConfig {
            servers: vec!["nats://u:pw@h:4222".into()],
            token: Some("t0ken".into()),
            ..ClusterConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("pw") && !shown.contains("t0ken"), "{shown}");
    }
}
