//! A minimal WebSocket client for load generation: the HTTP upgrade, a streaming scanner
//! that reads server frames from a reused buffer and decodes only the 32-byte VSWA
//! header of each binary message, and masked client frames for the publisher.

use std::net::SocketAddr;
use vswa_protocol::websocket as ws;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vswa_protocol::{HEADER_LEN, MAGIC};

/// Where a relay listens, from a `ws://HOST:PORT` URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// Resolved socket address.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
}

impl Target {
    /// Parses and resolves `ws://HOST:PORT` (a trailing `/` is allowed; TLS is not).
    pub async fn resolve(url: &str) -> anyhow::Result<Target> {
        let rest = url
            .strip_prefix("ws://")
            .with_context(|| format!("{url:?}: only ws:// URLs are supported"))?;
        let host = rest.trim_end_matches('/').to_string();
        if host.contains('/') {
            bail!("{url:?}: give the relay's base URL, ws://HOST:PORT, without a path");
        }
        let with_port = if host.contains(':') {
            host.clone()
        } else {
            format!("{host}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await
            .with_context(|| format!("cannot resolve {with_port}"))?
            .next()
            .with_context(|| format!("{with_port} resolves to no address"))?;
        Ok(Target { addr, host })
    }
}

/// Opens a TCP connection and performs the WebSocket upgrade on `path`. Returns the
/// stream and any bytes the server sent right after its response (WebSocket data).
pub async fn connect(
    target: &Target,
    path: &str,
    key_seed: u64,
) -> anyhow::Result<(TcpStream, Vec<u8>)> {
    let mut stream = TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("connect to {}", target.addr))?;
    stream.set_nodelay(true)?;
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&key_seed.to_be_bytes());
    nonce[8..].copy_from_slice(&(key_seed ^ 0x5653_5741_6265_6e63).to_le_bytes());
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.host
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 16 * 1024 {
            bail!("upgrade response headers too long");
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed during the WebSocket upgrade");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 101") {
        bail!("upgrade refused: {status}");
    }
    let want = ws::accept_key(key.as_bytes());
    let accepted = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == want
        })
    });
    if !accepted {
        bail!("upgrade response has a wrong or missing Sec-WebSocket-Accept");
    }
    Ok((stream, buf[end..].to_vec()))
}

/// What the scanner found in the server's byte stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A binary message that starts with a VSWA frame header.
    Frame {
        /// The frame's sequence number.
        sequence: u64,
        /// The frame's capture timestamp in microseconds since the UNIX epoch.
        timestamp_us: u64,
        /// Length of the WebSocket payload.
        len: u64,
    },
    /// A ping with its payload (answer with a pong).
    Ping(&'a [u8]),
    /// The server closed the WebSocket.
    Close,
    /// Text messages, pongs, binary messages that are not VSWA frames.
    Other,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Header,
    Payload {
        opcode: u8,
        len: u64,
        remaining: u64,
        want: usize,
    },
}

/// Incremental parser of server-to-client WebSocket frames. It keeps at most the first
/// 125 bytes of a message (enough for a VSWA header or a ping payload) and skips the rest.
#[derive(Debug)]
pub struct FrameScanner {
    hdr: [u8; 14],
    hdr_len: usize,
    state: State,
    scratch: [u8; 125],
    scratch_len: usize,
}

impl Default for FrameScanner {
    fn default() -> Self {
        FrameScanner {
            hdr: [0; 14],
            hdr_len: 0,
            state: State::Header,
            scratch: [0; 125],
            scratch_len: 0,
        }
    }
}

impl FrameScanner {
    /// Feeds bytes read from the socket; `on` sees every complete message.
    pub fn feed(&mut self, mut data: &[u8], mut on: impl FnMut(Event<'_>)) {
        while !data.is_empty() {
            match self.state {
                State::Header => {
                    let need = if self.hdr_len < 2 {
                        2
                    } else {
                        ws::header_len(self.hdr[1])
                    };
                    let take = (need - self.hdr_len).min(data.len());
                    self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&data[..take]);
                    self.hdr_len += take;
                    data = &data[take..];
                    if self.hdr_len < 2 || self.hdr_len < ws::header_len(self.hdr[1]) {
                        continue;
                    }
                    let opcode = self.hdr[0] & 0x0f;
                    let len = match self.hdr[1] & 0x7f {
                        126 => u64::from(u16::from_be_bytes([self.hdr[2], self.hdr[3]])),
                        127 => {
                            let mut b = [0u8; 8];
                            b.copy_from_slice(&self.hdr[2..10]);
                            u64::from_be_bytes(b)
                        }
                        n => u64::from(n),
                    };
                    let want = match opcode {
                        0x2 => HEADER_LEN,
                        0x9 => 125,
                        _ => 0,
                    }
                    .min(len.min(125) as usize);
                    self.state = State::Payload {
                        opcode,
                        len,
                        remaining: len,
                        want,
                    };
                    self.scratch_len = 0;
                    self.hdr_len = 0;
                }
                State::Payload {
                    ref mut remaining,
                    want,
                    ..
                } => {
                    let take = if self.scratch_len < want {
                        let take = (want - self.scratch_len).min(data.len());
                        self.scratch[self.scratch_len..self.scratch_len + take]
                            .copy_from_slice(&data[..take]);
                        self.scratch_len += take;
                        take
                    } else {
                        (*remaining).min(data.len() as u64) as usize
                    };
                    *remaining -= take as u64;
                    data = &data[take..];
                }
            }
            self.finish_if_done(&mut on);
        }
        self.finish_if_done(&mut on);
    }

    fn finish_if_done(&mut self, on: &mut impl FnMut(Event<'_>)) {
        let State::Payload {
            opcode,
            len,
            remaining: 0,
            ..
        } = self.state
        else {
            return;
        };
        self.state = State::Header;
        let s = &self.scratch[..self.scratch_len];
        on(match opcode {
            0x2 if s.len() == HEADER_LEN && s[..4] == MAGIC => Event::Frame {
                sequence: u64::from_be_bytes(s[16..24].try_into().expect("8 bytes")),
                timestamp_us: u64::from_be_bytes(s[24..32].try_into().expect("8 bytes")),
                len,
            },
            0x9 => Event::Ping(s),
            0x8 => Event::Close,
            _ => Event::Other,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use vswa_protocol::{Frame, FrameHeader};

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = bytes::BytesMut::new();
        let op = match opcode {
            0x1 => ws::Opcode::Text,
            0x2 => ws::Opcode::Binary,
            0x8 => ws::Opcode::Close,
            _ => ws::Opcode::Ping,
        };
        ws::put_header(&mut b, op, payload.len());
        b.extend_from_slice(payload);
        b.to_vec()
    }

    #[test]
    fn scans_frames_across_every_split() {
        let mut payload = vec![0u8; 70_000];
        payload[0] = 0xff;
        payload[1] = 0xd8;
        let frame =
            Frame::new(FrameHeader::jpeg(7, 123_456, 64, 48), Bytes::from(payload)).to_bytes();
        let mut wire = server_frame(0x1, br#"{"type":"hello"}"#);
        wire.extend(server_frame(0x2, &frame));
        wire.extend(server_frame(0x9, b"hi"));
        wire.extend(server_frame(0x2, &frame[..20])); // binary, too short for a VSWA header
        wire.extend(server_frame(0x8, &[0x03, 0xe8]));
        for chunk in [1usize, 3, 13, 4096, wire.len()] {
            let mut s = FrameScanner::default();
            let mut seen = Vec::new();
            for part in wire.chunks(chunk) {
                s.feed(part, |e| {
                    seen.push(match e {
                        Event::Frame {
                            sequence,
                            timestamp_us,
                            len,
                        } => format!("f{sequence}/{timestamp_us}/{len}"),
                        Event::Ping(p) => format!("p{}", String::from_utf8_lossy(p)),
                        Event::Close => "c".into(),
                        Event::Other => "o".into(),
                    })
                });
            }
            assert_eq!(
                seen,
                ["o", "f7/123456/70032", "phi", "o", "c"],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn client_header_is_masked_with_zero_key() {
        let mut h = Vec::new();
        ws::put_client_header(&mut h, 0x2, 70_000);
        assert_eq!(h[..2], [0x82, 0xff]);
        assert_eq!(h.len(), 14);
        assert_eq!(h[10..], [0, 0, 0, 0]);
    }
}
