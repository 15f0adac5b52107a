//! Helpers for the relay's end-to-end tests: plain HTTP and WebSocket clients (some
//! deliberately misbehaving) for a relay started with [`vswa_testkit::Relay`].
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
// Not every test file uses every re-export.
#[allow(unused_imports)]
pub use vswa_testkit::{bin, run_with_limit, wait_for_async, wait_with_limit, Relay};

/// Runs `cmd` (stdin closed) within `limit`; returns (exit code, stdout, stderr).
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> (Option<i32>, String, String) {
    let done = run_with_limit(cmd.stdin(Stdio::null()), limit);
    (done.status.code(), done.stdout_text(), done.stderr)
}

/// A plain HTTP/1.1 GET over TCP; returns (status, headers, body).
pub async fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf))
        .await
        .expect("HTTP response in time")
        .unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, buf[split + 4..].to_vec())
}

/// Reads WebSocket messages until a text control message arrives; returns it parsed.
pub async fn next_control<S>(ws: &mut S) -> Option<serde_json::Value>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .ok()??;
        match msg {
            Ok(Message::Text(t)) => return serde_json::from_str(t.as_str()).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Reads until a close frame; returns its code.
pub async fn close_code<S>(ws: &mut S) -> Option<u16>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .ok()??;
        match msg {
            Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// Resident memory of a process in KiB, from `/proc/PID/status` (0 if unreadable).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Open file descriptors of a process (sockets included).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// `GET /api/streams` parsed.
pub async fn streams_json(port: u16) -> serde_json::Value {
    let (status, _, body) = http_get(port, "/api/streams", &[]).await;
    assert_eq!(status, 200);
    serde_json::from_slice(&body).unwrap()
}

/// A WebSocket client on a raw TCP socket, for misbehaviour no WebSocket library will
/// produce: half frames, 100 MB length fields, never reading.
pub struct RawWs {
    pub tcp: tokio::net::TcpStream,
    /// Bytes read but not yet parsed into messages.
    pub buf: Vec<u8>,
}

/// Upgrades `path` on the relay to a WebSocket over a raw TCP socket.
pub async fn raw_ws(port: u16, path: &str) -> RawWs {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk))
            .await
            .expect("handshake in time")
            .unwrap();
        assert!(n > 0, "relay closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    RawWs {
        tcp,
        buf: buf[end..].to_vec(),
    }
}

/// A masked client frame header (FIN set) for a payload of `len` bytes; the mask is
/// all zeros, so the payload bytes go on the wire unchanged.
pub fn client_frame_header(opcode: u8, len: u64) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

/// A complete masked client frame.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = client_frame_header(opcode, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

impl RawWs {
    /// The next server message as (opcode, payload), or `None` on EOF, error or timeout.
    pub async fn next_message(&mut self, limit: Duration) -> Option<(u8, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some((opcode, payload, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some((opcode, payload));
            }
            let mut chunk = vec![0u8; 65536];
            let n = tokio::time::timeout_at(deadline, self.tcp.read(&mut chunk))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until a text message with `"type": ty` arrives; returns it parsed.
    pub async fn next_control(&mut self, ty: &str, limit: Duration) -> Option<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (opcode, payload) = self.next_message(left).await?;
            if opcode == 1 {
                let v: serde_json::Value = serde_json::from_slice(&payload).ok()?;
                if v["type"] == ty {
                    return Some(v);
                }
            }
        }
    }

    /// Reads until a close frame; returns its code.
    pub async fn close_code(&mut self, limit: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (opcode, payload) = self.next_message(left).await?;
            if opcode == 8 {
                return payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            }
        }
    }
}

/// Parses one unmasked server frame from the front of `buf`.
fn parse_server_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (len, at) = match buf[1] & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    Some((opcode, payload, at + len))
}

/// A small valid JPEG frame message (SOI, filler, EOI) of about `size` bytes.
pub fn jpeg_frame_message(sequence: u64, size: usize) -> bytes::Bytes {
    let mut payload = vec![0u8; size.max(4)];
    payload[0] = 0xff;
    payload[1] = 0xd8;
    let n = payload.len();
    payload[n - 2] = 0xff;
    payload[n - 1] = 0xd9;
    vswa_protocol::Frame::new(
        vswa_protocol::FrameHeader::jpeg(sequence, sequence * 33_000 + 1, 16, 8),
        bytes::Bytes::from(payload),
    )
    .to_bytes()
}

/// The next `error` control message, skipping others (`hello`, `viewers`).
pub async fn next_error<S>(ws: &mut S) -> Option<serde_json::Value>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = next_control(ws).await?;
        if msg["type"] == "error" {
            return Some(msg);
        }
    }
}

/// Publishes `msg` as a new publisher on `stream` and asserts the relay answers with an
/// `error` of `code` (one non-empty line) and then closes with `close`.
pub async fn assert_publish_refused(
    relay: &Relay,
    stream: &str,
    msg: Message,
    code: &str,
    close: u16,
) {
    use futures_util::SinkExt;
    let (mut ws, _) = tokio_tungstenite::connect_async(relay.ws(&format!("/ws/publish/{stream}")))
        .await
        .unwrap();
    assert_eq!(
        next_control(&mut ws).await.unwrap()["type"],
        "hello",
        "{stream}"
    );
    ws.send(msg).await.unwrap();
    let err = next_error(&mut ws).await.expect("an error message");
    assert_eq!(err["code"], code, "{stream}: {err}");
    let text = err["message"].as_str().unwrap();
    assert!(!text.is_empty() && !text.contains('\n'), "{stream}: {text}");
    assert_eq!(close_code(&mut ws).await, Some(close), "{stream}");
}

/// Splits a multipart/x-mixed-replace body into its complete JPEG parts.
pub fn multipart_jpegs(buf: &[u8], boundary: &str) -> Vec<Vec<u8>> {
    let marker = format!("--{boundary}\r\n");
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(pos) = find(&buf[at..], marker.as_bytes()) {
        let start = at + pos + marker.len();
        let Some(head_end) = find(&buf[start..], b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&buf[start..start + head_end]).to_lowercase();
        assert!(head.contains("content-type: image/jpeg"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .expect("content-length")
            .trim()
            .parse()
            .unwrap();
        let body = start + head_end + 4;
        if body + len > buf.len() {
            break;
        }
        out.push(buf[body..body + len].to_vec());
        at = body + len;
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
