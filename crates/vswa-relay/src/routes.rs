//! HTTP routes: pages, static assets, WebSocket upgrades, MJPEG, snapshots, stats.

// Helpers return `Result<_, Response>` so a handler can hand a refusal straight back to
// axum; boxing the error response would only add an allocation on the refusal path.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use vswa_protocol::{StreamName, HEADER_LEN};

use crate::hub::{HubError, Item, ViewerKind};
use crate::{auth, session, ConnInfo, RelayState};

static ASSETS: &[(&str, &str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

pub(crate) fn router(state: Arc<RelayState>) -> Router {
    Router::new()
        .route("/", get(|| async { page("index.html") }))
        .route("/view/{stream}", get(view_page))
        .route("/broadcast/{stream}", get(broadcast_page))
        .route("/static/{file}", get(static_file))
        .route("/ws/publish/{stream}", get(ws_publish))
        .route("/ws/watch/{stream}", get(ws_watch))
        .route("/stream/{file}", get(mjpeg))
        .route("/snapshot/{file}", get(snapshot))
        .route("/api/streams", get(api_streams))
        .route("/api/streams/{stream}", get(api_stream))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/favicon.ico", get(|| async { page("favicon.ico") }))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "not found") })
        .layer(axum::middleware::from_fn(limit_request_head))
        .with_state(state)
}

/// Largest request head (request line and headers) the relay reads: 64 KiB.
pub(crate) const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// Refuses a request whose head is over [`MAX_REQUEST_HEAD`] with 431, however its
/// bytes arrived (hyper's read buffer limit only catches a head that arrives in pieces
/// larger than the buffer; one burst can get through it).
async fn limit_request_head(req: Request, next: axum::middleware::Next) -> Response {
    let head = req.uri().to_string().len()
        + req
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if head > MAX_REQUEST_HEAD {
        metrics::counter!("vswa_rejected_total", "reason" => "request_head_too_large").increment(1);
        return text(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request head of {head} bytes is over the limit of {MAX_REQUEST_HEAD}"),
        );
    }
    next.run(req).await
}

/// A plain-text response with one line.
fn text(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

fn asset(name: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, mime, body)| (*mime, *body))
}

fn page(name: &str) -> Response {
    match asset(name) {
        Some((mime, body)) => (
            [
                (header::CONTENT_TYPE, mime),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        None => text(
            StatusCode::NOT_FOUND,
            format!("page {name} is not built in"),
        ),
    }
}

fn stream_name(raw: &str) -> Result<StreamName, Response> {
    StreamName::new(raw).map_err(|e| {
        metrics::counter!("vswa_rejected_total", "reason" => "invalid_stream_name").increment(1);
        text(StatusCode::BAD_REQUEST, e)
    })
}

async fn view_page(Path(stream): Path<String>) -> Response {
    match stream_name(&stream) {
        Ok(_) => page("view.html"),
        Err(resp) => resp,
    }
}

async fn broadcast_page(Path(stream): Path<String>) -> Response {
    match stream_name(&stream) {
        Ok(_) => page("broadcast.html"),
        Err(resp) => resp,
    }
}

async fn static_file(Path(file): Path<String>) -> Response {
    if file.ends_with(".html") {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    page(&file)
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Checks the token for a role on a stream; `Err` is the 401 response.
fn authorize(
    state: &RelayState,
    role: auth::TokenRole,
    stream: &StreamName,
    headers: &HeaderMap,
    query: &TokenQuery,
) -> Result<(), Response> {
    let shared = match role {
        auth::TokenRole::Publish => state.config.publish_token.as_deref(),
        auth::TokenRole::Watch => state.config.watch_token.as_deref(),
    };
    let presented = auth::presented_token(headers, query.token.as_deref());
    let denied = match auth::check(
        shared,
        state.config.token_secret.as_deref(),
        role,
        stream,
        presented,
        auth::unix_now(),
    ) {
        Ok(()) => return Ok(()),
        Err(denied) => denied,
    };
    let reason = match denied {
        auth::Denied::Scoped(auth::TokenError::Expired { .. }) => "token_expired",
        _ => "unauthorized",
    };
    metrics::counter!("vswa_rejected_total", "reason" => reason).increment(1);
    let mut resp = text(StatusCode::UNAUTHORIZED, format!("unauthorized: {denied}"));
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Err(resp)
}

/// Checks a WebSocket opening handshake (RFC 6455 section 4.2.1) the same way for both
/// routes: `GET`, `Upgrade: websocket`, `Connection: Upgrade`, `Sec-WebSocket-Version:
/// 13` and a key of 16 bytes in base64. `Err` is the 400 response saying what is wrong.
fn check_upgrade(method: &http::Method, headers: &HeaderMap) -> Result<HeaderValue, Response> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let problem = if method != http::Method::GET {
        format!("a WebSocket upgrade is a GET request, not {method}")
    } else if !has_token(header::UPGRADE, "websocket") {
        "this route needs a WebSocket upgrade (Upgrade: websocket)".to_string()
    } else if !has_token(header::CONNECTION, "upgrade") {
        "a WebSocket upgrade needs Connection: Upgrade".to_string()
    } else if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        "this relay speaks WebSocket version 13 (Sec-WebSocket-Version: 13)".to_string()
    } else {
        match headers.get(header::SEC_WEBSOCKET_KEY) {
            Some(key) if vswa_protocol::websocket::key_is_valid(key.as_bytes()) => {
                return Ok(key.clone())
            }
            _ => "Sec-WebSocket-Key must be 16 bytes in base64".to_string(),
        }
    };
    metrics::counter!("vswa_rejected_total", "reason" => "bad_upgrade").increment(1);
    Err(text(StatusCode::BAD_REQUEST, problem))
}

fn conn_info(req_ext: &http::Extensions) -> Option<ConnInfo> {
    req_ext.get::<ConnInfo>().cloned()
}

async fn ws_publish(
    State(state): State<Arc<RelayState>>,
    Path(stream): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let name = match stream_name(&stream) {
        Ok(n) => n,
        Err(resp) => return resp,
    };
    if let Err(resp) = authorize(&state, auth::TokenRole::Publish, &name, &headers, &query) {
        return resp;
    }
    if let Err(resp) = check_upgrade(req.method(), &headers) {
        return resp;
    }
    let info = conn_info(req.extensions());
    let (mut parts, _body) = req.into_parts();
    let upgrade =
        match <WebSocketUpgrade as axum::extract::FromRequestParts<_>>::from_request_parts(
            &mut parts, &state,
        )
        .await
        {
            Ok(u) => u,
            Err(rejection) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "this route needs a WebSocket upgrade: {}",
                        rejection.body_text()
                    ),
                )
            }
        };
    // Room for the header and a little slack above the payload limit, so an oversized
    // frame is refused with a clear error by the frame check rather than by tungstenite.
    let max_msg = state.config.hub.max_payload_len as usize + HEADER_LEN + 1024;
    upgrade
        .max_message_size(max_msg)
        .max_frame_size(max_msg)
        .on_upgrade(move |socket| async move {
            let tracker = state.sessions.clone();
            tracker
                .track_future(session::publisher(socket, state, name, info))
                .await
        })
}

async fn ws_watch(
    State(state): State<Arc<RelayState>>,
    Path(stream): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    mut req: Request,
) -> Response {
    let name = match stream_name(&stream) {
        Ok(n) => n,
        Err(resp) => return resp,
    };
    if let Err(resp) = authorize(&state, auth::TokenRole::Watch, &name, &headers, &query) {
        return resp;
    }
    let key = match check_upgrade(req.method(), &headers) {
        Ok(key) => key,
        Err(resp) => return resp,
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return text(StatusCode::BAD_REQUEST, "connection cannot be upgraded");
    };
    let info = conn_info(req.extensions());
    let accept = vswa_protocol::websocket::accept_key(key.as_bytes());
    let tracker = state.sessions.clone();
    tracker.spawn(async move {
        match on_upgrade.await {
            // A plain TCP connection gets write-through (the publishing task writes
            // into the socket); any other (TLS) is written by its own task.
            Ok(upgraded) => match upgraded.downcast::<hyper_util::rt::TokioIo<
                crate::deadline::WriteDeadline<tokio::net::TcpStream>,
            >>() {
                Ok(parts) => {
                    let tcp = parts.io.into_inner().into_inner();
                    session::viewer_tcp(tcp, parts.read_buf, state, name, info).await;
                }
                Err(upgraded) => {
                    let io = hyper_util::rt::TokioIo::new(upgraded);
                    session::viewer(io, state, name, info).await;
                }
            },
            Err(e) => tracing::debug!("viewer upgrade failed: {e}"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(axum::body::Body::empty())
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response build failed"))
}

/// Parses `NAME.ext` from a path segment.
fn name_with_ext(file: &str, ext: &str) -> Result<StreamName, Response> {
    let Some(raw) = file.strip_suffix(ext) else {
        return Err(text(
            StatusCode::NOT_FOUND,
            format!("expected a path ending in {ext}"),
        ));
    };
    stream_name(raw)
}

const BOUNDARY: &str = "vswaframe";

async fn mjpeg(
    State(state): State<Arc<RelayState>>,
    Path(file): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let name = match name_with_ext(&file, ".mjpg") {
        Ok(n) => n,
        Err(resp) => return resp,
    };
    if let Err(resp) = authorize(&state, auth::TokenRole::Watch, &name, &headers, &query) {
        return resp;
    }
    let codec = state
        .hub
        .stream(&name)
        .and_then(|s| s.latest_frame())
        .map(|f| f.frame.header().codec);
    // A stream published on another relay: its codec as that relay announces it.
    let remote_h264 = codec.is_none()
        && state
            .cluster()
            .and_then(|c| c.announced_codec(name.as_str()))
            .is_some_and(|c| c != "jpeg");
    if remote_h264 || codec.is_some_and(|c| c != vswa_protocol::Codec::Jpeg) {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "stream \"{name}\" is H.264; MJPEG over HTTP carries JPEG only (watch it at /view/{name} or with vswa-recv)"
            ),
        );
    }
    let peer = conn_info(req.extensions()).map(|i| i.peer);
    let viewer = match state.hub.watch(&name, ViewerKind::Mjpeg, peer) {
        Ok(v) => v,
        Err(e) => return hub_error_response(e),
    };
    let grace = state.config.end_grace;
    let max_latency = state.config.max_latency;
    let lag_seconds = metrics::histogram!("vswa_viewer_lag_seconds", "stream" => name.to_string());
    let shutdown = state.shutdown.clone();
    // Like a WebSocket viewer, wait `end_grace` for a publisher that has not come yet.
    let waiting = !viewer.stream().is_live();
    let parts = futures_util::stream::unfold(
        (viewer, shutdown, waiting),
        move |(mut viewer, shutdown, ended)| {
            let lag_seconds = lag_seconds.clone();
            async move {
            loop {
                if shutdown.is_triggered() {
                    return None;
                }
                let next = if ended {
                    match tokio::time::timeout(grace, viewer.next()).await {
                        Ok(item) => item,
                        Err(_) => return None,
                    }
                } else {
                    tokio::select! {
                        item = viewer.next() => item,
                        () = shutdown.wait() => return None,
                    }
                };
                match next {
                    Item::Frame(out) => {
                        if out.frame.header().codec != vswa_protocol::Codec::Jpeg {
                            // MJPEG carries JPEG only; no silent transcoding. The
                            // response ends (a request now gets the 415 that says why).
                            return None;
                        }
                        let jpeg = out.frame.payload();
                        if jpeg.is_empty() {
                            continue;
                        }
                        // The latency ceiling, as for WebSocket viewers (without the
                        // link-pace prediction: hyper owns this socket's writes).
                        let age = out.age(
                            tokio::time::Instant::now(),
                            vswa_protocol::timestamp_us(std::time::SystemTime::now()),
                        );
                        if !max_latency.is_zero() && age > max_latency {
                            viewer.skip_late();
                            continue;
                        }
                        viewer.stats().record_lag(age);
                        lag_seconds.record(age.as_secs_f64());
                        let head = format!(
                            "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                            jpeg.len()
                        );
                        viewer.stats().record_sent(jpeg.len());
                        metrics::counter!("vswa_frames_out_total").increment(1);
                        let chunks = vec![
                            Ok::<_, std::convert::Infallible>(Bytes::from(head)),
                            Ok(jpeg.clone()),
                            Ok(Bytes::from_static(b"\r\n")),
                        ];
                        return Some((futures_util::stream::iter(chunks), (viewer, shutdown, false)));
                    }
                    Item::End(vswa_protocol::control::EndReason::PublisherLeft) => {
                        return Some((futures_util::stream::iter(Vec::new()), (viewer, shutdown, true)));
                    }
                    Item::End(_) => return None,
                }
            }
            }
        },
    )
    .flatten();
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            format!("multipart/x-mixed-replace; boundary={BOUNDARY}"),
        )
        .header(header::CACHE_CONTROL, "no-cache, no-store")
        .header(header::CONNECTION, "close")
        .body(axum::body::Body::from_stream(parts))
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response build failed"))
}

fn hub_error_response(e: HubError) -> Response {
    let status = match e {
        HubError::StreamBusy(_) => StatusCode::CONFLICT,
        HubError::TooManyStreams(_) | HubError::TooManyWaiting(_) | HubError::TooManyViewers(_) => {
            StatusCode::TOO_MANY_REQUESTS
        }
        HubError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
    };
    text(status, e)
}

/// How long a snapshot of a stream published on another relay waits for its first
/// frame over the cluster.
const REMOTE_SNAPSHOT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

fn conn_info_peer(ext: &http::Extensions) -> Option<std::net::SocketAddr> {
    conn_info(ext).map(|i| i.peer)
}

async fn snapshot(
    State(state): State<Arc<RelayState>>,
    Path(file): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    ext: http::Extensions,
) -> Response {
    let name = match name_with_ext(&file, ".jpg") {
        Ok(n) => n,
        Err(resp) => return resp,
    };
    if let Err(resp) = authorize(&state, auth::TokenRole::Watch, &name, &headers, &query) {
        return resp;
    }
    // A stream published on another relay of the cluster, with nobody watching it
    // here: watch it for a moment (the relay subscribes), take the first picture.
    let _remote_viewer = match state.cluster() {
        Some(cluster)
            if state
                .hub
                .stream(&name)
                .is_none_or(|s| s.latest_frame().is_none())
                && cluster.published_elsewhere(name.as_str()) =>
        {
            match state
                .hub
                .watch(&name, ViewerKind::Mjpeg, conn_info_peer(&ext))
            {
                Ok(mut viewer) => {
                    let _ = tokio::time::timeout(REMOTE_SNAPSHOT_WAIT, viewer.next()).await;
                    Some(viewer)
                }
                Err(e) => return hub_error_response(e),
            }
        }
        _ => None,
    };
    let Some(stream) = state.hub.stream(&name) else {
        return no_frame_yet(&name);
    };
    let Some(frame) = stream.latest_frame() else {
        return no_frame_yet(&name);
    };
    if frame.frame.header().codec != vswa_protocol::Codec::Jpeg {
        return h264_snapshot(&stream, &name).await;
    }
    (
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-cache, no-store"),
        ],
        frame.frame.payload().clone(),
    )
        .into_response()
}

fn no_frame_yet(name: &StreamName) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!("stream \"{name}\" has no frame yet (no publisher, or it has not sent a picture)"),
    )
}

/// The snapshot of an H.264 stream: its latest keyframe decoded to JPEG, once per
/// keyframe (the result is cached, so many requests cost one decode).
#[cfg(feature = "h264")]
async fn h264_snapshot(stream: &Arc<crate::hub::Stream>, name: &StreamName) -> Response {
    let Some((idx, key)) = stream.latest_keyframe() else {
        return no_frame_yet(name);
    };
    if let Some(jpeg) = stream.cached_snapshot(idx) {
        return jpeg_response(jpeg);
    }
    let payload = key.frame.payload().clone();
    let decoded = tokio::task::spawn_blocking(move || {
        vswa_codec::H264Decoder::new().and_then(|mut d| d.decode_to_jpeg(&payload, 85))
    })
    .await;
    match decoded {
        Ok(Ok(Some(jpeg))) => {
            stream.cache_snapshot(idx, jpeg.clone());
            jpeg_response(jpeg)
        }
        Ok(Ok(None)) => no_frame_yet(name),
        Ok(Err(e)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot decode the latest H.264 keyframe of \"{name}\": {e}"),
        ),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "the decoder failed"),
    }
}

/// Without the `h264` feature the relay forwards H.264 but cannot make pictures of it.
#[cfg(not(feature = "h264"))]
async fn h264_snapshot(_stream: &Arc<crate::hub::Stream>, name: &StreamName) -> Response {
    text(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "stream \"{name}\" is H.264; snapshots of it need a relay built with the `h264` feature"
        ),
    )
}

#[cfg(feature = "h264")]
fn jpeg_response(jpeg: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-cache, no-store"),
        ],
        jpeg,
    )
        .into_response()
}

/// Every stream: this relay's, and in a cluster those of every relay.
fn all_streams(state: &RelayState) -> Vec<crate::hub::StreamInfo> {
    let local = state.hub.streams();
    match state.cluster() {
        Some(cluster) => cluster.directory_view(local),
        None => local,
    }
}

async fn api_streams(State(state): State<Arc<RelayState>>) -> Response {
    Json(serde_json::json!({ "streams": all_streams(&state) })).into_response()
}

async fn api_stream(State(state): State<Arc<RelayState>>, Path(stream): Path<String>) -> Response {
    let name = match stream_name(&stream) {
        Ok(n) => n,
        Err(resp) => return resp,
    };
    let info = match (state.cluster(), state.hub.stream(&name)) {
        (None, Some(s)) => Some(s.info()),
        (None, None) => None,
        (Some(_), _) => all_streams(&state)
            .into_iter()
            .find(|s| s.name == name.as_str()),
    };
    match info {
        Some(info) => Json(info).into_response(),
        None => text(StatusCode::NOT_FOUND, format!("no stream \"{name}\"")),
    }
}

async fn metrics_text(State(state): State<Arc<RelayState>>) -> Response {
    match state.metrics {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics unavailable: another metrics recorder is installed in this process",
        ),
    }
}
