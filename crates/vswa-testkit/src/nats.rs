//! Real `nats-server` processes for the cluster tests (issue 13).
//!
//! [`NatsServer::start`] runs one server with JetStream on loopback ports chosen at run
//! time, its store and log in a fresh temp dir; [`NatsCluster::start`] runs several joined
//! by routes. Both wait (bounded) until the servers are ready, kill them on drop, and
//! print the tail of the server log when a test panics. The monitoring endpoint answers
//! what a test wants to know about the relays' use of NATS: client connections, which
//! subjects they subscribe to ([`NatsServer::subscriptions`]), what interest crossed the
//! routes ([`NatsServer::route_interest`]).
//!
//! Tests call [`NatsServer::available`] first: it prints why a test is skipped when
//! `nats-server` is missing, or panics when [`crate::tools_required`] (CI).
//! `VSWA_NATS_SERVER` overrides the program's location.

use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{http_get_body, Guard, TempDir};

/// How long a server gets to become ready (client port open, monitoring answering,
/// JetStream up).
const READY_LIMIT: Duration = Duration::from_secs(10);
/// How long a cluster gets to join its routes and elect a JetStream meta leader.
const CLUSTER_LIMIT: Duration = Duration::from_secs(20);

/// The `nats-server` program: `VSWA_NATS_SERVER`, else `nats-server` on `PATH`.
pub fn program() -> PathBuf {
    std::env::var_os("VSWA_NATS_SERVER")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("nats-server"), PathBuf::from)
}

/// A subscription a client connection holds on a server (`/connz?subs=detail`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSubscription {
    /// The connection's name (what the client sent in `CONNECT`; empty if none).
    pub connection: String,
    /// The client's port on loopback.
    pub port: u16,
    /// The subscribed subject (possibly with wildcards).
    pub subject: String,
}

/// One running (or killed, see [`NatsServer::kill`]) `nats-server` with JetStream on
/// loopback, killed on drop. Its config, log and JetStream store live in a temp dir that
/// [`NatsServer::restart`] reuses.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Guard>,
    /// The server's name (`server_name`).
    pub name: String,
    /// Client port.
    pub port: u16,
    /// Monitoring (HTTP) port.
    pub monitor_port: u16,
    /// Route port, when the server is part of a [`NatsCluster`].
    pub cluster_port: Option<u16>,
    conf: PathBuf,
    log_path: PathBuf,
    dir: TempDir,
}

/// Ports picked for one server.
#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    monitor: u16,
    cluster: u16,
}

/// `n` sets of ports that were free a moment ago (all bound at once, so distinct).
fn free_ports(n: usize) -> Vec<Ports> {
    let listeners: Vec<TcpListener> = (0..3 * n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect();
    ports
        .chunks(3)
        .map(|p| Ports {
            client: p[0],
            monitor: p[1],
            cluster: p[2],
        })
        .collect()
}

/// Why a start attempt failed.
enum StartError {
    /// A port was taken between picking and binding it: try other ports.
    PortTaken,
    /// Anything else (the message says what, with the log).
    Other(String),
}

impl NatsServer {
    /// True if `nats-server` can be run. Otherwise prints why `test` is skipped, or
    /// panics when [`crate::tools_required`] (CI sets it, so a missing server fails).
    pub fn available(test: &str) -> bool {
        let ok = Command::new(program())
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                !crate::tools_required(),
                "{test}: VSWA_REQUIRE_TOOLS is set but {} cannot be run \
                 (Debian: apt-get install nats-server)",
                program().display()
            );
            eprintln!(
                "skipping {test}: nats-server is not installed (Debian: apt-get install nats-server)"
            );
        }
        ok
    }

    /// Starts a server with JetStream and default settings.
    pub fn start() -> NatsServer {
        NatsServer::start_with("")
    }

    /// Starts a server with `conf_extra` appended to its config file (NATS config
    /// syntax, e.g. `"max_payload: 65536"`; later keys override earlier ones).
    pub fn start_with(conf_extra: &str) -> NatsServer {
        let mut last = String::new();
        for _ in 0..3 {
            let ports = free_ports(1)[0];
            let mut server = NatsServer::configure("vswa-nats", ports, None, conf_extra);
            match server.spawn_and_wait(READY_LIMIT) {
                Ok(()) => return server,
                Err(StartError::PortTaken) => last = server.log(),
                Err(StartError::Other(e)) => panic!("{e}"),
            }
        }
        panic!("nats-server found its ports taken three times; last log:\n{last}");
    }

    /// Writes the config file (in a new temp dir) for a server; does not start it.
    fn configure(
        name: &str,
        ports: Ports,
        cluster: Option<(&str, &[u16])>,
        conf_extra: &str,
    ) -> NatsServer {
        let dir = TempDir::new(name);
        let store = dir.join("jetstream");
        let mut conf = format!(
            "# written by vswa-testkit\n\
             server_name: {name}\n\
             listen: 127.0.0.1:{}\n\
             http: 127.0.0.1:{}\n\
             jetstream {{\n  store_dir: \"{}\"\n}}\n",
            ports.client,
            ports.monitor,
            store.display()
        );
        if let Some((cluster_name, routes)) = cluster {
            let routes: Vec<String> = routes
                .iter()
                .map(|p| format!("nats-route://127.0.0.1:{p}"))
                .collect();
            conf.push_str(&format!(
                "cluster {{\n  name: {cluster_name}\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                ports.cluster,
                routes.join(", ")
            ));
        }
        conf.push_str(conf_extra);
        conf.push('\n');
        let conf_path = dir.join("nats.conf");
        std::fs::write(&conf_path, conf).expect("write nats.conf");
        NatsServer {
            child: None,
            name: name.to_string(),
            port: ports.client,
            monitor_port: ports.monitor,
            cluster_port: cluster.map(|_| ports.cluster),
            conf: conf_path,
            log_path: dir.join("nats.log"),
            dir,
        }
    }

    /// Spawns the server (log appended to `nats.log`).
    fn spawn(&mut self) -> Result<(), StartError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open nats.log");
        let err = log.try_clone().expect("clone the log file handle");
        let child = Command::new(program())
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| StartError::Other(format!("cannot start {}: {e}", program().display())))?;
        self.child = Some(Guard(child));
        Ok(())
    }

    /// Whether the process is still running (false after [`NatsServer::kill`] or a crash).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.0.try_wait().ok().flatten().is_none())
    }

    /// Checks that the process has not exited; says why it did.
    fn check_alive(&mut self) -> Result<(), StartError> {
        if self.is_running() {
            return Ok(());
        }
        let log = self.log();
        if log.contains("address already in use") {
            Err(StartError::PortTaken)
        } else {
            Err(StartError::Other(format!(
                "nats-server {} exited during start-up; log:\n{log}",
                self.name
            )))
        }
    }

    /// True once the client port accepts, `/varz` answers and `/healthz` says ok
    /// (JetStream included).
    fn ready(&self) -> bool {
        TcpStream::connect_timeout(&self.addr(), Duration::from_millis(500)).is_ok()
            && self.monitor("/varz").is_some()
            && self
                .monitor("/healthz")
                .is_some_and(|h| h["status"] == "ok")
    }

    fn spawn_and_wait(&mut self, limit: Duration) -> Result<(), StartError> {
        self.spawn()?;
        let deadline = Instant::now() + limit;
        loop {
            self.check_alive()?;
            if self.ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(StartError::Other(format!(
                    "nats-server {} was not ready within {limit:?}; log:\n{}",
                    self.name,
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The client address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The monitoring address.
    pub fn monitor_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.monitor_port))
    }

    /// The process id (`None` after [`NatsServer::kill`]).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.0.id())
    }

    /// Everything the server has logged (all runs: a restart appends).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log_path.display()))
    }

    /// The config file the server runs with.
    pub fn conf_path(&self) -> &std::path::Path {
        &self.conf
    }

    /// SIGKILL: no goodbye to anyone, like a crashed machine. Waits until it is reaped.
    pub fn kill(&mut self) {
        // Dropping the guard kills and reaps.
        self.child = None;
    }

    /// Starts the server again on the same ports with the same store (after
    /// [`NatsServer::kill`]; kills it first if it still runs) and waits until it is
    /// ready.
    pub fn restart(&mut self) {
        self.kill();
        // The old listening sockets close with the process; a port still held (by a
        // lingering connection in a state the kernel will not reuse) clears quickly.
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            match self.spawn_and_wait(READY_LIMIT) {
                Ok(()) => return,
                Err(StartError::PortTaken) if Instant::now() < deadline => {
                    self.child = None;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(StartError::PortTaken) => panic!(
                    "nats-server {} could not get its ports back within {READY_LIMIT:?}; log:\n{}",
                    self.name,
                    self.log()
                ),
                Err(StartError::Other(e)) => panic!("restart: {e}"),
            }
        }
    }

    /// GET `path` on the monitoring port, parsed as JSON (`None` if it does not answer
    /// 200 with JSON).
    pub fn monitor(&self, path: &str) -> Option<serde_json::Value> {
        let body = http_get_body(self.monitor_addr(), path)?;
        serde_json::from_str(&body).ok()
    }

    /// Client connections (relays, in these tests) connected now.
    pub fn connections(&self) -> usize {
        self.monitor("/connz")
            .and_then(|c| c["num_connections"].as_u64())
            .unwrap_or(0) as usize
    }

    /// The names of the client connections connected now.
    pub fn connection_names(&self) -> Vec<String> {
        let Some(connz) = self.monitor("/connz") else {
            return Vec::new();
        };
        connz["connections"]
            .as_array()
            .map(|conns| {
                conns
                    .iter()
                    .map(|c| c["name"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every subscription held by a client connection of this server now (routes and
    /// the server's internal subscriptions excluded).
    pub fn client_subscriptions(&self) -> Vec<ClientSubscription> {
        let Some(connz) = self.monitor("/connz?subs=detail&limit=4096") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for conn in connz["connections"].as_array().into_iter().flatten() {
            for sub in conn["subscriptions_list_detail"]
                .as_array()
                .into_iter()
                .flatten()
            {
                out.push(ClientSubscription {
                    connection: conn["name"].as_str().unwrap_or("").to_string(),
                    port: conn["port"].as_u64().unwrap_or(0) as u16,
                    subject: sub["subject"].as_str().unwrap_or("").to_string(),
                });
            }
        }
        out
    }

    /// How many client subscriptions on this server are for exactly `subject` (a
    /// wildcard subscription that would match it does not count; see
    /// [`NatsServer::client_subscriptions`] for everything).
    pub fn subscriptions(&self, subject: &str) -> usize {
        self.client_subscriptions()
            .iter()
            .filter(|s| s.subject == subject)
            .count()
    }

    /// Routes connected now.
    pub fn routes(&self) -> usize {
        self.monitor("/routez")
            .and_then(|r| r["num_routes"].as_u64())
            .unwrap_or(0) as usize
    }

    /// How many routes have told this server they have interest in exactly `subject`
    /// (a subscription on another node of the cluster).
    pub fn route_interest(&self, subject: &str) -> usize {
        let Some(routez) = self.monitor("/routez?subs=1") else {
            return 0;
        };
        routez["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                r["subscriptions_list"]
                    .as_array()
                    .is_some_and(|subs| subs.iter().any(|s| s.as_str() == Some(subject)))
            })
            .count()
    }

    /// The JetStream meta leader's name, as this server sees it (clusters only).
    pub fn meta_leader(&self) -> Option<String> {
        let jsz = self.monitor("/jsz")?;
        let leader = jsz["meta_cluster"]["leader"].as_str()?;
        (!leader.is_empty()).then(|| leader.to_string())
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The temp dir holding the config, log and store.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- last lines of nats-server {}'s log ----\n{}",
                self.name,
                self.log_tail(30)
            );
        }
    }
}

/// Several `nats-server` processes joined by routes into one cluster (each with its own
/// client, monitoring and route port and its own JetStream store), killed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    /// The servers, in the order of their names (`vswa-nats-1`, `-2`, ...).
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` servers with default settings; see [`NatsCluster::start_with`].
    pub fn start(n: usize) -> NatsCluster {
        NatsCluster::start_with(n, "")
    }

    /// Starts `n` servers (each with `conf_extra` in its config) with routes to all
    /// the others and waits until every one has a route to each other and JetStream
    /// has a meta leader that all of them know.
    pub fn start_with(n: usize, conf_extra: &str) -> NatsCluster {
        assert!(n >= 2, "a cluster needs at least two servers");
        let mut last = String::new();
        'attempt: for _ in 0..3 {
            let ports = free_ports(n);
            let route_ports: Vec<u16> = ports.iter().map(|p| p.cluster).collect();
            let mut nodes: Vec<NatsServer> = ports
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let others: Vec<u16> = route_ports
                        .iter()
                        .copied()
                        .filter(|&r| r != p.cluster)
                        .collect();
                    NatsServer::configure(
                        &format!("vswa-nats-{}", i + 1),
                        *p,
                        Some(("vswa-test", &others)),
                        conf_extra,
                    )
                })
                .collect();
            for node in &mut nodes {
                if let Err(StartError::Other(e)) = node.spawn() {
                    panic!("{e}");
                }
            }
            let deadline = Instant::now() + CLUSTER_LIMIT;
            loop {
                for node in &mut nodes {
                    match node.check_alive() {
                        Ok(()) => {}
                        Err(StartError::PortTaken) => {
                            last = node.log();
                            continue 'attempt;
                        }
                        Err(StartError::Other(e)) => panic!("{e}"),
                    }
                }
                let cluster = NatsCluster { nodes };
                if cluster.joined() {
                    return cluster;
                }
                nodes = cluster.nodes;
                if Instant::now() > deadline {
                    let logs: Vec<String> = nodes
                        .iter()
                        .map(|s| {
                            format!(
                                "---- {}: {} routes, meta leader {:?} ----\n{}",
                                s.name,
                                s.routes(),
                                s.meta_leader(),
                                s.log_tail(20)
                            )
                        })
                        .collect();
                    panic!(
                        "the NATS cluster did not form within {CLUSTER_LIMIT:?}:\n{}",
                        logs.join("\n")
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("nats-server found its ports taken three times; last log:\n{last}");
    }

    /// Every node ready, with a route to each other node, and one meta leader they all
    /// agree on.
    fn joined(&self) -> bool {
        let n = self.nodes.len();
        let mut leaders = Vec::new();
        for node in &self.nodes {
            if !node.ready() || node.routes() < n - 1 {
                return false;
            }
            match node.meta_leader() {
                Some(leader) => leaders.push(leader),
                None => return false,
            }
        }
        leaders.windows(2).all(|w| w[0] == w[1])
    }

    /// The client URLs of all nodes, comma-separated (what `--cluster` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Client subscriptions for exactly `subject`, summed over all nodes.
    pub fn subscriptions(&self, subject: &str) -> usize {
        self.nodes.iter().map(|n| n.subscriptions(subject)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    /// A minimal NATS client on a raw socket: CONNECT with `name`, then `SUB`s.
    fn client(server: &NatsServer, name: &str, subjects: &[&str]) -> TcpStream {
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut info = String::new();
        r.read_line(&mut info).unwrap();
        assert!(info.starts_with("INFO "), "{info}");
        write!(s, "CONNECT {{\"verbose\":false,\"name\":\"{name}\"}}\r\n").unwrap();
        for (i, subject) in subjects.iter().enumerate() {
            write!(s, "SUB {subject} {}\r\n", i + 1).unwrap();
        }
        s.write_all(b"PING\r\n").unwrap();
        let mut pong = String::new();
        r.read_line(&mut pong).unwrap();
        assert_eq!(pong, "PONG\r\n");
        s
    }

    #[test]
    fn server_starts_counts_subscriptions_and_restarts_on_its_ports() {
        if !NatsServer::available("nats self-test") {
            return;
        }
        let mut server = NatsServer::start_with("max_payload: 65536");
        let varz = server.monitor("/varz").unwrap();
        assert_eq!(varz["max_payload"], 65536);
        assert_eq!(server.subscriptions("vswa.v1.frames.cam"), 0);
        let conn = client(&server, "t", &["vswa.v1.frames.cam", "vswa.v1.frames.*"]);
        assert_eq!(server.connections(), 1);
        assert_eq!(server.connection_names(), vec!["t".to_string()]);
        assert_eq!(server.subscriptions("vswa.v1.frames.cam"), 1);
        assert_eq!(server.subscriptions("vswa.v1.frames.other"), 0);
        drop(conn);
        crate::wait_for(Duration::from_secs(5), "the client to be gone", || {
            (server.connections() == 0).then_some(())
        });
        let port = server.port;
        server.kill();
        assert!(!server.is_running());
        assert!(TcpStream::connect_timeout(&server.addr(), Duration::from_millis(200)).is_err());
        server.restart();
        assert_eq!(server.port, port);
        assert!(server.is_running());
        let _conn = client(&server, "again", &[]);
        assert_eq!(server.connections(), 1);
    }

    #[test]
    fn cluster_joins_and_shares_interest_over_routes() {
        if !NatsServer::available("nats cluster self-test") {
            return;
        }
        let cluster = NatsCluster::start(3);
        assert_eq!(cluster.urls().split(',').count(), 3);
        let _conn = client(&cluster.nodes[1], "b", &["vswa.v1.frames.cam"]);
        assert_eq!(cluster.subscriptions("vswa.v1.frames.cam"), 1);
        crate::wait_for(Duration::from_secs(5), "interest on node 1", || {
            (cluster.nodes[0].route_interest("vswa.v1.frames.cam") == 1).then_some(())
        });
    }
}
