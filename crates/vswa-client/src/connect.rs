//! Opening a client WebSocket to a relay: URL, token, optional TLS, and turning HTTP
//! refusals into errors a person can act on.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;
use vswa_protocol::{ErrorCode, InvalidStreamName, StreamName};

use crate::backoff::Backoff;

/// Errors of the publisher and subscriber clients.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The URL is not a usable `ws://` or `wss://` URL.
    #[error("invalid relay URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The relay refused the token (HTTP 401).
    #[error("relay refused the token: {0}")]
    Unauthorized(String),
    /// The relay refused the request with another HTTP status (e.g. 400 for an invalid
    /// stream name).
    #[error("relay refused the request (HTTP {status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The relay's one-line explanation.
        message: String,
    },
    /// The relay sent an `error` control message and closed.
    #[error("relay closed the connection: {code}: {message}")]
    Server {
        /// Machine-readable code.
        code: ErrorCode,
        /// The relay's message.
        message: String,
    },
    /// The relay's TLS certificate is not trusted (or not valid for its name); retrying
    /// will not change that.
    #[error("relay at {url} has a certificate this client does not trust: {reason} (give its CA, or the certificate itself, with --ca-cert)")]
    Certificate {
        /// The relay URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection could be made.
    #[error("cannot reach relay at {url}: {reason}")]
    Unreachable {
        /// The relay URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// An established connection failed.
    #[error("connection lost: {0}")]
    Lost(String),
}

impl ClientError {
    /// True for refusals that retrying will not fix (bad URL, token, name, busy stream).
    pub fn is_fatal(&self) -> bool {
        match self {
            ClientError::BadUrl { .. }
            | ClientError::Unauthorized(_)
            | ClientError::Certificate { .. } => true,
            ClientError::Refused { status, .. } => {
                (400..500).contains(status) && *status != 429 && *status != 408
            }
            ClientError::Server { code, .. } => matches!(
                code,
                ErrorCode::Unauthorized
                    | ErrorCode::InvalidStreamName
                    | ErrorCode::StreamBusy
                    | ErrorCode::InvalidFrame
                    | ErrorCode::FrameTooLarge
                    | ErrorCode::BadRequest
            ),
            ClientError::Unreachable { .. } | ClientError::Lost(_) => false,
        }
    }
}

/// How a client connects.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `ws://HOST:PORT/ws/publish/NAME` or `/ws/watch/NAME`, or `wss://`.
    pub url: String,
    /// Token sent as `Authorization: Bearer`.
    pub token: Option<String>,
    /// Extra trusted CA certificate (PEM) for `wss://`, e.g. a self-signed relay.
    pub ca_cert: Option<std::path::PathBuf>,
    /// Time allowed for TCP, TLS and WebSocket handshakes together.
    pub timeout: Duration,
    /// Largest message accepted from the relay.
    pub max_message_size: usize,
}

impl ConnectOptions {
    /// Options for `url` with defaults: no token, 10 s timeout, 64 MiB messages.
    pub fn new(url: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            url: url.into(),
            token: None,
            ca_cert: None,
            timeout: Duration::from_secs(10),
            max_message_size: 64 << 20,
        }
    }

    /// The URL as logs and error messages show it: a `?token=` value is `***`.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Checks the URL without connecting.
    pub fn validate(&self) -> Result<url::Url, ClientError> {
        let bad = |reason: &str| ClientError::BadUrl {
            url: self.display_url(),
            reason: reason.into(),
        };
        let url = url::Url::parse(&self.url).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "ws" && url.scheme() != "wss" {
            return Err(bad("scheme must be ws:// or wss://"));
        }
        if url.host_str().is_none() {
            return Err(bad("no host"));
        }
        Ok(url)
    }
}

/// `url` with the value of every `token` query parameter replaced by `***`, for logs
/// and error messages (browsers and tools put tokens there; they must not end up in a
/// terminal's scroll-back or a log file). Works on text that is not a valid URL too.
pub fn redact_url(url: &str) -> String {
    let Some((base, rest)) = url.split_once('?') else {
        return url.to_string();
    };
    let (query, fragment) = match rest.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (rest, None),
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("token") => format!("{key}=***"),
            _ => pair.to_string(),
        })
        .collect();
    let mut out = format!("{base}?{}", query.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// Which side of a stream a relay URL is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `/ws/publish/NAME`: sends the stream.
    Publish,
    /// `/ws/watch/NAME`: receives it.
    Watch,
}

/// The role and stream name in a relay URL's path, `/ws/publish/NAME` or
/// `/ws/watch/NAME`, with the name checked as the relay checks it
/// (`[A-Za-z0-9_-]{1,64}`; such a name needs no percent-encoding, so an encoded one is
/// refused here); `None` for any other path. Lets a program refuse a URL it cannot use
/// before connecting, in its own words.
pub fn stream_route(url: &url::Url) -> Option<(Role, Result<StreamName, InvalidStreamName>)> {
    let path = url.path();
    let (role, name) = if let Some(name) = path.strip_prefix("/ws/publish/") {
        (Role::Publish, name)
    } else {
        (Role::Watch, path.strip_prefix("/ws/watch/")?)
    };
    Some((role, StreamName::new(name)))
}

/// A TCP or TLS client stream.
#[derive(Debug)]
pub enum ClientStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connected client WebSocket.
pub type ClientSocket = WebSocketStream<ClientStream>;

/// Connects, sends the token, and maps refusals to [`ClientError`]s.
pub async fn connect(opts: &ConnectOptions) -> Result<ClientSocket, ClientError> {
    let url = opts.validate()?;
    match tokio::time::timeout(opts.timeout, connect_inner(opts, &url)).await {
        Ok(res) => res,
        Err(_) => Err(ClientError::Unreachable {
            url: opts.display_url(),
            reason: format!("no answer within {} s", opts.timeout.as_secs()),
        }),
    }
}

async fn connect_inner(opts: &ConnectOptions, url: &url::Url) -> Result<ClientSocket, ClientError> {
    let unreachable = |reason: String| ClientError::Unreachable {
        url: opts.display_url(),
        reason,
    };
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    // Keep the kernel from hiding a backlog: with at most this much unsent in the
    // socket, a congested uplink shows up as a slow send, and the publisher's queue
    // drops frames past `max_latency` instead of the kernel sending them late.
    let _ = socket2::SockRef::from(&tcp).set_tcp_notsent_lowat(UNSENT_LIMIT);
    let stream = if url.scheme() == "wss" {
        let config = tls_config(opts.ca_cert.as_deref())?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| unreachable(format!("bad TLS server name: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| {
                if is_certificate_error(&e) {
                    ClientError::Certificate {
                        url: opts.display_url(),
                        reason: e.to_string(),
                    }
                } else {
                    unreachable(format!("TLS: {e}"))
                }
            })?;
        ClientStream::Tls(Box::new(tls))
    } else {
        ClientStream::Plain(tcp)
    };
    let mut request = opts
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::BadUrl {
            url: opts.display_url(),
            reason: e.to_string(),
        })?;
    if let Some(token) = &opts.token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::BadUrl {
                url: opts.display_url(),
                reason: "token contains characters not allowed in an HTTP header".into(),
            })?;
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::header::AUTHORIZATION,
            value,
        );
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(opts.max_message_size))
        .max_frame_size(Some(opts.max_message_size));
    match tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get(tokio_tungstenite::tungstenite::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            let body = resp.body().as_deref().unwrap_or_default();
            let message = refusal_message(resp.status(), content_type, body);
            if status == 401 {
                Err(ClientError::Unauthorized(message))
            } else {
                Err(ClientError::Refused { status, message })
            }
        }
        Err(e) => Err(unreachable(e.to_string())),
    }
}

/// Longest excerpt of a refusal's body kept in its message, in characters.
pub const MAX_REFUSAL_CHARS: usize = 200;

/// The message for a non-101 answer, always one short line of printable text: the
/// first line of a text body (the relay's refusals are one line), the title of an HTML
/// page, or for anything else (an MJPEG stream, an image) the status and content type,
/// never the body itself. Excerpts are cut at [`MAX_REFUSAL_CHARS`] characters.
///
/// `body` is whatever arrived with the response head (tungstenite reads no further),
/// so it is bounded by the read buffer, but may end mid-line or mid-character.
fn refusal_message(
    status: tokio_tungstenite::tungstenite::http::StatusCode,
    content_type: Option<&str>,
    body: &[u8],
) -> String {
    let kind = content_type
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let looks_html = kind.contains("html")
        || (kind.is_empty() && body.trim_ascii_start().first() == Some(&b'<'));
    let excerpt = if looks_html {
        html_title(body)
    } else if kind.is_empty() || kind.starts_with("text/") || kind.ends_with("json") {
        first_line(body)
    } else {
        // An MJPEG stream, an image: say what came, never show it.
        let kind = one_line(&kind, MAX_REFUSAL_CHARS / 2);
        return format!("{status} with {kind} instead of a WebSocket upgrade");
    };
    excerpt.unwrap_or_else(|| status.to_string())
}

/// The first non-empty line of a text body, if it is text (no NUL, valid UTF-8 apart
/// from a character cut at the end).
fn first_line(body: &[u8]) -> Option<String> {
    let line = body
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .find(|l| !l.is_empty())?;
    let text = match std::str::from_utf8(line) {
        Ok(text) => text,
        // A multi-byte character split by the end of what was read.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&line[..e.valid_up_to()]).ok()?,
        Err(_) => return None,
    };
    // NUL means a binary body; other control characters become spaces.
    if text.contains('\0') {
        return None;
    }
    Some(one_line(text, MAX_REFUSAL_CHARS)).filter(|l| !l.is_empty())
}

/// The `<title>` of an HTML page, if the part read holds one.
fn html_title(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    let start = lower.find("<title")?;
    let start = start + lower[start..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    Some(one_line(&text[start..end], MAX_REFUSAL_CHARS)).filter(|t| !t.is_empty())
}

/// `text` with every run of whitespace or control characters made one space, cut to
/// `max` characters (marked with an ellipsis).
fn one_line(text: &str, max: usize) -> String {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect();
    let line = words.join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn tls_config(ca: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut pinned = Vec::new();
    if let Some(path) = ca {
        let bad = |reason: String| ClientError::BadUrl {
            url: path.display().to_string(),
            reason,
        };
        let pem =
            std::fs::read(path).map_err(|e| bad(format!("cannot read CA certificate: {e}")))?;
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            roots.add(cert.clone()).map_err(|e| bad(e.to_string()))?;
            pinned.push(cert);
        }
        if pinned.is_empty() {
            return Err(bad("no PEM certificate in the file".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| ClientError::Lost(format!("TLS set-up: {e}")))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Lost(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedOrWebPki { pinned, webpki }))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Trusts a server whose certificate is exactly one given with `--ca-cert`, and
/// otherwise verifies it against the roots (the public ones and `--ca-cert`'s) as usual.
///
/// A self-signed certificate made by `openssl req -x509` carries `CA:TRUE`; the WebPKI
/// rules refuse a CA certificate as a server's own (`CaUsedAsEndEntity`), so without
/// this a user who hands over the very certificate the relay serves would be refused.
/// The handshake signature is still checked against the certificate's key, so the
/// server must hold its private key.
#[derive(Debug)]
struct PinnedOrWebPki {
    pinned: Vec<rustls::pki_types::CertificateDer<'static>>,
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedOrWebPki {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Whether a failed TLS handshake failed on the server's certificate: retrying will
/// not fix that, so it is reported at once.
fn is_certificate_error(e: &std::io::Error) -> bool {
    matches!(
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::UnsupportedNameType)
    )
}

/// `TCP_NOTSENT_LOWAT` of client sockets: 128 KiB, a few frames of 720p JPEG.
const UNSENT_LIMIT: u32 = 128 * 1024;

/// Connects with retries (delays from `backoff`) until `deadline`, returning fatal
/// refusals (token, stream name, TLS) at once; `what` names the attempt in log lines.
pub async fn connect_with_retry(
    opts: &ConnectOptions,
    backoff: &mut Backoff,
    deadline: Option<Instant>,
    what: &str,
) -> Result<ClientSocket, ClientError> {
    loop {
        match connect(opts).await {
            Ok(socket) => {
                backoff.reset();
                return Ok(socket);
            }
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => {
                let mut delay = backoff.next_delay();
                if let Some(deadline) = deadline {
                    // Keep trying until the deadline itself: the last wait is cut short
                    // so one more attempt lands just before it, not a backoff step early.
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(e);
                    }
                    delay = delay.min(left);
                }
                tracing::warn!(
                    "{what}: {e}; retrying in {:.1} s (attempt {})",
                    delay.as_secs_f64(),
                    backoff.attempts()
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn tokens_in_urls_are_redacted() {
        assert_eq!(
            redact_url("ws://h:1/ws/watch/a?token=s3cret"),
            "ws://h:1/ws/watch/a?token=***"
        );
        assert_eq!(
            redact_url("ws://h/ws/watch/a?x=1&TOKEN=abc&y=2#f"),
            "ws://h/ws/watch/a?x=1&TOKEN=***&y=2#f"
        );
        assert_eq!(redact_url("ws://h/ws/watch/a"), "ws://h/ws/watch/a");
        assert_eq!(redact_url("not a url?token=x"), "not a url?token=***");
        // Every error that names the URL shows it redacted.
        let opts = ConnectOptions::new("http://h/ws/watch/a?token=s3cret");
        let err = opts.validate().unwrap_err().to_string();
        assert!(
            !err.contains("s3cret") && err.contains("token=***"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn unreachable_error_does_not_show_the_token() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = ConnectOptions::new(format!("ws://127.0.0.1:{port}/ws/watch/a?token=s3cret"));
        let err = connect(&opts).await.unwrap_err().to_string();
        assert!(
            !err.contains("s3cret") && err.contains("token=***"),
            "{err}"
        );
    }

    #[test]
    fn stream_routes() {
        let route = |url: &str| {
            let url = ConnectOptions::new(url).validate().unwrap();
            stream_route(&url).map(|(role, name)| (role, name.map(|n| n.to_string())))
        };
        assert_eq!(
            route("ws://h:1/ws/publish/cam-1_B?token=x"),
            Some((Role::Publish, Ok("cam-1_B".into())))
        );
        assert_eq!(
            route("wss://h/ws/watch/demo"),
            Some((Role::Watch, Ok("demo".into())))
        );
        for bad in [
            "ws://h/ws/publish/",
            "ws://h/ws/publish/a/b",
            "ws://h/ws/publish/bad%20name",
            "ws://h/ws/publish/caf\u{e9}",
            &format!("ws://h/ws/publish/{}", "x".repeat(65)),
        ] {
            assert!(matches!(route(bad), Some((Role::Publish, Err(_)))), "{bad}");
        }
        for other in ["ws://h/", "ws://h/ws/publish", "ws://h/stream/cam.mjpg"] {
            assert_eq!(route(other), None, "{other}");
        }
    }

    #[test]
    fn refusal_message_is_one_short_printable_line() {
        use tokio_tungstenite::tungstenite::http::StatusCode;
        let msg = |status: u16, kind: Option<&str>, body: &[u8]| {
            let m = refusal_message(StatusCode::from_u16(status).unwrap(), kind, body);
            assert!(m.chars().count() <= MAX_REFUSAL_CHARS, "{m:?}");
            assert!(!m.chars().any(char::is_control), "{m:?}");
            m
        };
        let plain = Some("text/plain; charset=utf-8");
        // The relay's own refusals are one line and come through as they are.
        let relay = "invalid stream name \"a b\": contains a character outside A-Z a-z 0-9 _ -";
        assert_eq!(msg(400, plain, relay.as_bytes()), relay);
        assert_eq!(msg(401, plain, b"wrong token\n"), "wrong token");
        assert_eq!(msg(400, None, b"\n\n  first\nsecond\n"), "first");
        // Long lines are cut, with a mark.
        let long = msg(400, plain, "y".repeat(5000).as_bytes());
        assert_eq!(long.chars().count(), MAX_REFUSAL_CHARS);
        assert!(long.ends_with('…'), "{long}");
        // Terminal escapes and tabs become spaces; a character cut by the read is dropped.
        assert_eq!(
            msg(400, plain, b"bad\x1b[31m red\tname"),
            "bad [31m red name"
        );
        assert_eq!(
            msg(400, plain, "caf\u{e9}".as_bytes().split_last().unwrap().1),
            "caf"
        );
        // Binary data in a text body, or no body: the status.
        assert_eq!(
            msg(400, plain, b"\xff\xd8\xff\xe0\x00\x10JFIF"),
            "400 Bad Request"
        );
        assert_eq!(msg(400, plain, b"nul\x00inside"), "400 Bad Request");
        assert_eq!(msg(503, None, b""), "503 Service Unavailable");
        // HTML: the title, or the status.
        let page =
            b"<!DOCTYPE html>\n<html><head><TITLE>\n 502 Bad\n Gateway </TITLE></head><body>...";
        assert_eq!(msg(502, Some("text/html"), page), "502 Bad Gateway");
        assert_eq!(msg(502, None, page), "502 Bad Gateway");
        assert_eq!(
            msg(404, Some("text/html"), b"<html><body>gone"),
            "404 Not Found"
        );
        // Anything else is named, not shown.
        assert_eq!(
            msg(
                200,
                Some("multipart/x-mixed-replace; boundary=frame"),
                b"--frame\r\n\xff\xd8"
            ),
            "200 OK with multipart/x-mixed-replace instead of a WebSocket upgrade"
        );
    }

    /// A server on a loopback port that answers one request with `response`.
    async fn answering(response: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0; 4096];
            let _ = socket.read(&mut request).await;
            let _ = socket.write_all(&response).await;
            let _ = socket.flush().await;
            // Hold the socket open, like a server streaming MJPEG would.
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        format!("ws://{addr}/ws/publish/cam")
    }

    fn assert_one_short_printable_line(message: &str, max: usize) {
        let chars = message.chars().count();
        assert!(chars <= max, "{chars} chars: {message:?}");
        assert!(!message.chars().any(char::is_control), "{message:?}");
    }

    /// Something that is not a relay answering the WebSocket request: an MJPEG camera
    /// server (200 and binary JPEG data), a web server's HTML error page, a plain-text
    /// body of many lines. The error holds the status and at most one short printable
    /// line, never the binary stream or the whole page.
    #[tokio::test]
    async fn a_non_websocket_answer_becomes_one_short_line() {
        let mut mjpeg = b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n--frame\r\nContent-Type: image/jpeg\r\n\r\n".to_vec();
        mjpeg.extend_from_slice(&[
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00,
        ]);
        mjpeg.extend((0..3000u32).map(|i| (i * 7 % 256) as u8));
        let page = format!(
            "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n<body>{}</body></html>\n",
            "<p>nothing here</p>\n".repeat(300)
        );
        let html = format!(
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{page}",
            page.len()
        )
        .into_bytes();
        let text = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n{}\nsecond line\n",
            "x".repeat(1000)
        )
        .into_bytes();
        for (what, response, status) in [
            ("mjpeg", mjpeg, 200),
            ("html", html, 404),
            ("text", text, 400),
        ] {
            let url = answering(response).await;
            let err = connect(&ConnectOptions::new(url)).await.unwrap_err();
            let ClientError::Refused {
                status: got,
                message,
            } = &err
            else {
                panic!("{what}: {err:?}");
            };
            assert_eq!(*got, status, "{what}");
            assert_one_short_printable_line(message, MAX_REFUSAL_CHARS);
            // The message plus "relay refused the request (HTTP 400): ".
            assert_one_short_printable_line(&err.to_string(), MAX_REFUSAL_CHARS + 40);
            if what == "html" {
                assert!(message.contains("404 Not Found"), "{message}");
                assert!(!message.contains('<'), "{message}");
            }
            if what == "text" {
                assert!(!message.contains("second line"), "{message}");
            }
        }
    }
}
