//! `vswa-bench floor`: the kernel floor, a reference "relay" that does the least work any
//! relay must do to deliver the same bytes, so the comparison can say how far each real
//! relay is above it.
//!
//! What it does: it accepts WebSocket connections on `/ws/publish/NAME` and
//! `/ws/watch/NAME` (the plain RFC 6455 server handshake, nothing more), and for every
//! binary message the newest publisher sends it encodes one unmasked server frame and
//! writes those same bytes to every viewer socket with a non-blocking `try_write`. Everything
//! runs on one thread (a current-thread tokio runtime) in one task; short-lived tasks exist
//! only for handshakes.
//!
//! A viewer whose socket cannot take a frame misses it (counted). A write the kernel
//! takes only in part is finished when the socket becomes writable again (otherwise the
//! viewer's byte stream would break); until then that viewer misses new frames.
//!
//! What it deliberately leaves out: stream names (every viewer gets every publisher's
//! frames), any validation of VSWA frames or of the HTTP request beyond the route and
//! `Sec-WebSocket-Key`, JSON control messages and hellos, pings, reading from viewers
//! (a closed viewer is dropped when a write to it fails), per-viewer queues, tasks or
//! latency budgets, metrics, authentication and TLS.

use std::future::poll_fn;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::task::Poll;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use vswa_protocol::websocket as ws;

/// Largest publisher message accepted (as the Node and Python peers: 16 MiB).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Publish,
    Watch,
}

#[derive(Debug)]
struct Viewer {
    stream: TcpStream,
    /// A frame the kernel took only in part, and how many bytes of it went out.
    pending: Option<(Bytes, usize)>,
    dead: bool,
}

impl Viewer {
    /// Writes what is left of the pending frame; `true` once nothing is left.
    fn flush(&mut self) -> bool {
        let Some((frame, done)) = &mut self.pending else {
            return true;
        };
        match self.stream.try_write(&frame[*done..]) {
            Ok(n) => *done += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => self.dead = true,
        }
        if *done == frame.len() {
            self.pending = None;
        }
        self.pending.is_none() && !self.dead
    }
}

/// Counters printed to stderr when a publisher leaves.
#[derive(Debug, Default)]
struct Counters {
    frames: u64,
    writes: u64,
    missed: u64,
    partial: u64,
}

/// Binds `listen` and serves until the process is killed, on a current-thread runtime of
/// its own (call it from a thread that is not running async code).
pub fn run(listen: SocketAddr) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the current-thread runtime")?
        .block_on(serve(listen))
}

/// The floor's event loop on the current runtime (see the module docs).
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!(
        "vswa-bench floor listening on ws://{}",
        listener.local_addr()?
    );
    let (tx, mut upgraded) = mpsc::unbounded_channel::<(Role, TcpStream, BytesMut)>();
    let mut viewers: Vec<Viewer> = Vec::new();
    let mut publisher: Option<(TcpStream, BytesMut)> = None;
    let mut count = Counters::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let shake = tokio::time::timeout(Duration::from_secs(10), handshake(stream));
                    if let Ok(Ok(conn)) = shake.await {
                        let _ = tx.send(conn);
                    }
                });
            }
            Some((role, stream, rest)) = upgraded.recv() => match role {
                Role::Watch => viewers.push(Viewer { stream, pending: None, dead: false }),
                Role::Publish => {
                    if publisher.is_some() {
                        report(&count, viewers.len());
                    }
                    count = Counters::default();
                    publisher = Some((stream, rest));
                }
            },
            read = async {
                match publisher.as_mut() {
                    Some((stream, buf)) => {
                        buf.reserve(64 * 1024);
                        stream.read_buf(buf).await
                    }
                    None => std::future::pending().await,
                }
            } => {
                let open = matches!(read, Ok(n) if n > 0)
                    && publisher.as_mut().is_some_and(|(_, buf)| {
                        forward(buf, &mut viewers, &mut count)
                    });
                if !open {
                    publisher = None;
                    report(&count, viewers.len());
                }
                viewers.retain(|v| !v.dead);
            }
            () = poll_fn(|cx| {
                // Finish partial writes as sockets become writable; wake when one died.
                let mut died = false;
                for v in viewers.iter_mut().filter(|v| v.pending.is_some()) {
                    while let Poll::Ready(ready) = v.stream.poll_write_ready(cx) {
                        if ready.is_err() {
                            v.dead = true;
                        }
                        if v.dead || v.flush() {
                            break;
                        }
                    }
                    died |= v.dead;
                }
                if died { Poll::Ready(()) } else { Poll::Pending }
            }) => viewers.retain(|v| !v.dead),
        }
    }
}

/// Takes the publisher's complete messages off `buf` and writes each binary one to every
/// viewer. Returns `false` when the publisher closed or sent bytes that are not WebSocket.
fn forward(buf: &mut BytesMut, viewers: &mut [Viewer], count: &mut Counters) -> bool {
    loop {
        match ws::decode_client(buf, MAX_MESSAGE) {
            Ok(None) => return true,
            Ok(Some(f)) if f.opcode == ws::Opcode::Close => return false,
            Ok(Some(f)) if f.opcode == ws::Opcode::Binary && f.fin => {
                let mut frame = BytesMut::with_capacity(f.payload.len() + 10);
                ws::put_header(&mut frame, ws::Opcode::Binary, f.payload.len());
                frame.extend_from_slice(&f.payload);
                fan_out(&frame.freeze(), viewers, count);
            }
            Ok(Some(_)) => {} // text, ping, pong, fragments: not forwarded
            Err(_) => return false,
        }
    }
}

/// One non-blocking write of the same bytes to each viewer.
fn fan_out(frame: &Bytes, viewers: &mut [Viewer], count: &mut Counters) {
    count.frames += 1;
    for v in viewers.iter_mut().filter(|v| !v.dead) {
        if !v.flush() {
            count.missed += u64::from(!v.dead);
            continue;
        }
        count.writes += 1;
        match v.stream.try_write(frame) {
            Ok(n) if n == frame.len() => {}
            Ok(n) => {
                count.partial += 1;
                v.pending = Some((frame.clone(), n));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => count.missed += 1,
            Err(_) => v.dead = true,
        }
    }
}

fn report(c: &Counters, viewers: usize) {
    eprintln!(
        "vswa-bench floor: publisher gone after {} frames; {} writes ({} partial), {} \
         viewer-frames missed; {viewers} viewers",
        c.frames, c.writes, c.partial, c.missed
    );
}

/// The server side of the RFC 6455 opening handshake, routed by path prefix only.
/// Returns the role, the stream and any bytes that followed the request.
async fn handshake(mut stream: TcpStream) -> anyhow::Result<(Role, TcpStream, BytesMut)> {
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(2048);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 16 * 1024 || stream.read_buf(&mut buf).await? == 0 {
            bail!("no complete HTTP request");
        }
    };
    let head = std::str::from_utf8(&buf[..end])?;
    let path = head.split_whitespace().nth(1).unwrap_or_default();
    let role = if path.starts_with("/ws/publish/") {
        Role::Publish
    } else if path.starts_with("/ws/watch/") {
        Role::Watch
    } else {
        stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            .await?;
        bail!("unknown route {path}");
    };
    let key = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim())
        })
        .context("no Sec-WebSocket-Key")?;
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        ws::accept_key(key.as_bytes())
    );
    stream.write_all(response.as_bytes()).await?;
    let rest = buf.split_off(end);
    Ok((role, stream, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{self, Event, FrameScanner, Target};

    #[tokio::test]
    async fn forwards_a_binary_message_to_viewers() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        std::thread::spawn(move || run(addr));
        let url = format!("ws://{addr}");
        let target = loop {
            if TcpStream::connect(addr).await.is_ok() {
                break Target::resolve(&url).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let (mut viewer, _) = client::connect(&target, "/ws/watch/x", 1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (mut publisher, _) = client::connect(&target, "/ws/publish/x", 2).await.unwrap();
        let payload = vec![7u8; 70_000];
        let mut msg = Vec::new();
        ws::put_client_header(&mut msg, 0x2, payload.len() as u64);
        msg.extend_from_slice(&payload);
        publisher.write_all(&msg).await.unwrap();
        let mut got = Vec::new();
        let mut scanner = FrameScanner::default();
        let mut buf = vec![0u8; 8192];
        while got.is_empty() {
            let n = viewer.read(&mut buf).await.unwrap();
            assert!(n > 0, "floor closed the viewer");
            scanner.feed(&buf[..n], |e| {
                if e == Event::Other {
                    got.push(());
                }
            });
        }
    }
}
