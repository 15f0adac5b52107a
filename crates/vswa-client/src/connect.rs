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
use vswa_protocol::ErrorCode;

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
            ClientError::BadUrl { .. } | ClientError::Unauthorized(_) => true,
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

    /// Checks the URL without connecting.
    pub fn validate(&self) -> Result<url::Url, ClientError> {
        let bad = |reason: &str| ClientError::BadUrl {
            url: self.url.clone(),
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
            url: opts.url.clone(),
            reason: format!("no answer within {} s", opts.timeout.as_secs()),
        }),
    }
}

async fn connect_inner(opts: &ConnectOptions, url: &url::Url) -> Result<ClientSocket, ClientError> {
    let unreachable = |reason: String| ClientError::Unreachable {
        url: opts.url.clone(),
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
    let stream = if url.scheme() == "wss" {
        let config = tls_config(opts.ca_cert.as_deref())?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| unreachable(format!("bad TLS server name: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| unreachable(format!("TLS: {e}")))?;
        ClientStream::Tls(Box::new(tls))
    } else {
        ClientStream::Plain(tcp)
    };
    let mut request = opts
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::BadUrl {
            url: opts.url.clone(),
            reason: e.to_string(),
        })?;
    if let Some(token) = &opts.token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::BadUrl {
                url: opts.url.clone(),
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
            let message = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| resp.status().to_string());
            if status == 401 {
                Err(ClientError::Unauthorized(message))
            } else {
                Err(ClientError::Refused { status, message })
            }
        }
        Err(e) => Err(unreachable(e.to_string())),
    }
}

fn tls_config(ca: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca {
        let bad = |reason: String| ClientError::BadUrl {
            url: path.display().to_string(),
            reason,
        };
        let pem =
            std::fs::read(path).map_err(|e| bad(format!("cannot read CA certificate: {e}")))?;
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Lost(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

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
