//! Scoped signed tokens end to end: `vswa-relay token` mints them, the relay started
//! with `--token-secret` honours exactly their stream (or prefix), role and expiry, and
//! the shared `--publish-token`/`--watch-token` keep working beside them.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{bin, http_get, next_control, run_with_timeout, Relay};
use vswa_relay::{mint_token, unix_now, TokenRole};

const LIMIT: Duration = Duration::from_secs(60);
const SECRET: &str = "s3cret-for-tests";

fn mint(args: &[&str]) -> String {
    let (code, out, err) = run_with_timeout(
        Command::new(bin("vswa-relay"))
            .arg("token")
            .args(args)
            .env("VSWA_TOKEN_SECRET", SECRET),
        LIMIT,
    );
    assert_eq!(code, Some(0), "{err}");
    let token = out.trim().to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");
    token
}

/// Status and body of a WebSocket upgrade request on `path` with `headers`.
async fn upgrade(relay: &Relay, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut h = vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    h.extend_from_slice(headers);
    // A 101 keeps the connection open; read only the head in that case.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", relay.port))
        .await
        .unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in &h {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap_or(0);
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if n == 0 || text.starts_with("HTTP/1.1 101") && text.contains("\r\n\r\n") {
            let status = text.split(' ').nth(1).unwrap().parse().unwrap();
            return (status, text);
        }
        // Error responses carry a small body after the head.
        if let Some(head_end) = text.find("\r\n\r\n") {
            if text[..head_end].contains("content-length") {
                let len: usize = text[..head_end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                if buf.len() >= head_end + 4 + len {
                    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
                    return (status, text[head_end + 4..].to_string());
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_tokens_open_only_their_stream_and_role() {
    let relay = Relay::start(&["--token-secret", SECRET, "--publish-token", "shared-pub"]);
    let publish_cam = mint(&["--stream", "cam", "--role", "publish", "--ttl", "1h"]);
    let watch_lobby = mint(&["--stream", "lobby-", "--prefix", "--role", "watch"]);
    let bearer_pub = format!("Bearer {publish_cam}");
    let bearer_watch = format!("Bearer {watch_lobby}");

    // The publish token opens its stream for publishing, by header or query.
    let (status, _) = upgrade(&relay, "/ws/publish/cam", &[("Authorization", &bearer_pub)]).await;
    assert_eq!(status, 101);
    let (status, _) = upgrade(&relay, &format!("/ws/publish/cam?token={publish_cam}"), &[]).await;
    assert_eq!(status, 101);
    // ...and nothing else.
    for (path, token, expect) in [
        ("/ws/publish/cam2", &bearer_pub, "not \"cam2\""),
        ("/ws/publish/ca", &bearer_pub, "not \"ca\""),
        ("/ws/watch/cam", &bearer_pub, "for publish, not watch"),
        ("/snapshot/cam.jpg", &bearer_pub, "for publish, not watch"),
        (
            "/ws/publish/lobby-1",
            &bearer_watch,
            "for watch, not publish",
        ),
        ("/ws/watch/cam", &bearer_watch, "not \"cam\""),
        ("/ws/watch/lobby", &bearer_watch, "not \"lobby\""),
    ] {
        let (status, body) = upgrade(&relay, path, &[("Authorization", token)]).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains(expect), "{path}: {body}");
    }
    // The prefix token opens every stream under its prefix for watching.
    for path in ["/ws/watch/lobby-1", "/ws/watch/lobby-main"] {
        let (status, body) = upgrade(&relay, path, &[("Authorization", &bearer_watch)]).await;
        assert_eq!(status, 101, "{path}: {body}");
    }
    let (status, _, body) = http_get(
        relay.port,
        "/snapshot/lobby-1.jpg",
        &[("Authorization", &bearer_watch)],
    )
    .await;
    assert_eq!(status, 404, "authorized, but no frame yet: {body:?}");
    // With a secret, watching needs a token too.
    let (status, body) = upgrade(&relay, "/ws/watch/lobby-1", &[]).await;
    assert_eq!(status, 401);
    assert!(body.contains("requires a token"), "{body}");
    // A token signed with another secret, or mangled, is just wrong.
    let forged = mint_token(
        b"not-the-secret",
        "cam",
        TokenRole::Publish,
        unix_now(),
        Duration::from_secs(600),
    )
    .unwrap();
    let mut mangled = publish_cam.clone();
    mangled.pop();
    for bad in [forged, mangled] {
        let (status, body) = upgrade(&relay, &format!("/ws/publish/cam?token={bad}"), &[]).await;
        assert_eq!(status, 401);
        assert!(body.contains("wrong token"), "{body}");
    }
    // The shared publish token keeps working beside the secret.
    let (status, _) = upgrade(
        &relay,
        "/ws/publish/any",
        &[("Authorization", "Bearer shared-pub")],
    )
    .await;
    assert_eq!(status, 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_refused_with_a_message_that_says_so() {
    let relay = Relay::start(&["--token-secret", SECRET]);
    let now = unix_now();
    let expired = mint_token(
        SECRET.as_bytes(),
        "cam",
        TokenRole::Watch,
        now - 7200,
        Duration::from_secs(3600),
    )
    .unwrap();
    let (status, body) = upgrade(&relay, &format!("/ws/watch/cam?token={expired}"), &[]).await;
    assert_eq!(status, 401);
    assert!(body.contains("token expired"), "{body}");
    let (status, _, body) = http_get(
        relay.port,
        "/stream/cam.mjpg",
        &[("Authorization", &format!("Bearer {expired}"))],
    )
    .await;
    assert_eq!(status, 401);
    assert!(String::from_utf8_lossy(&body).contains("expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vswa_send_and_a_viewer_work_with_minted_tokens() {
    let relay = Relay::start(&["--token-secret", SECRET]);
    let publish = mint(&["--stream", "cam", "--role", "publish", "--ttl", "10m"]);
    let watch = mint(&["--stream", "cam", "--role", "watch", "--ttl", "600"]);
    let (mut viewer, _) =
        tokio_tungstenite::connect_async(relay.ws(&format!("/ws/watch/cam?token={watch}")))
            .await
            .unwrap();
    assert_eq!(next_control(&mut viewer).await.unwrap()["type"], "hello");
    let url = relay.ws("/ws/publish/cam");
    let (code, _, stderr) = tokio::task::spawn_blocking(move || {
        run_with_timeout(
            Command::new(bin("vswa-send")).args([
                "--url", &url, "--count", "3", "--size", "64x48", "--token", &publish,
            ]),
            LIMIT,
        )
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    use futures_util::StreamExt;
    let mut frames = 0;
    while frames < 3 {
        match tokio::time::timeout(Duration::from_secs(10), viewer.next()).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(_)))) => frames += 1,
            Ok(Some(Ok(_))) => {}
            other => panic!("viewer ended early: {other:?}"),
        }
    }
    // The watch token cannot publish: vswa-send reports the refusal in one line and
    // exits 3 (refused by the relay).
    let url = relay.ws("/ws/publish/cam");
    let (code, _, stderr) = run_with_timeout(
        Command::new(bin("vswa-send")).args(["--url", &url, "--count", "1", "--token", &watch]),
        LIMIT,
    );
    assert_eq!(code, Some(3), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn token_subcommand_refuses_bad_input_in_one_line() {
    let relay = env!("CARGO_BIN_EXE_vswa-relay");
    for (args, code, expect) in [
        (
            vec![
                "token", "--stream", "../x", "--role", "watch", "--secret", "s",
            ],
            1,
            "invalid token scope",
        ),
        (
            vec!["token", "--stream", "a", "--role", "admin", "--secret", "s"],
            2,
            "publish or watch",
        ),
        (
            vec![
                "token", "--stream", "a", "--role", "watch", "--ttl", "soon", "--secret", "s",
            ],
            2,
            "duration",
        ),
        (
            vec!["token", "--stream", "a", "--role", "watch"],
            2,
            "--secret",
        ),
    ] {
        let (got, out, err) = run_with_timeout(
            Command::new(relay)
                .args(&args)
                .env_remove("VSWA_TOKEN_SECRET"),
            LIMIT,
        );
        assert_eq!(got, Some(code), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}
