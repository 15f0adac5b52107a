//! Who may publish or watch: shared tokens (`--publish-token`, `--watch-token`) compared
//! in constant time, and scoped signed tokens (JWT, HS256, `--token-secret`) that name a
//! stream or stream prefix, a role and an expiry. Both arrive as
//! `Authorization: Bearer T` or `?token=T`.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use vswa_protocol::StreamName;

/// The token a request presents, from the `Authorization: Bearer` header or, because
/// browsers cannot set WebSocket headers, the `token` query parameter.
pub fn presented_token<'a>(
    headers: &'a HeaderMap,
    query_token: Option<&'a str>,
) -> Option<&'a str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme is case-insensitive (RFC 7235): `BEARER x` is `Bearer x`.
            let (scheme, token) = v.trim_start().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .map(str::trim)
        .or(query_token)
}

/// Whether `presented` opens a door guarded by `required` (`None`: no token needed).
pub fn allowed(required: Option<&str>, presented: Option<&str>) -> bool {
    match (required, presented) {
        (None, _) => true,
        (Some(_), None) => false,
        // ct_eq returns false at once for different lengths: only the length leaks.
        (Some(want), Some(got)) => want.as_bytes().ct_eq(got.as_bytes()).into(),
    }
}

/// What a scoped token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    /// Publish frames (`/ws/publish/{stream}`).
    Publish,
    /// Watch (`/ws/watch/{stream}`, MJPEG, snapshots).
    Watch,
}

impl std::fmt::Display for TokenRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenRole::Publish => "publish",
            TokenRole::Watch => "watch",
        })
    }
}

/// The claims of a scoped token (a JWT signed with HMAC-SHA256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopedClaims {
    /// The stream the token opens: an exact name (`cam1`), or a prefix followed by `*`
    /// (`lobby-*`; `*` alone opens every stream).
    pub sub: String,
    /// Publish or watch.
    pub role: TokenRole,
    /// Expiry, seconds since the UNIX epoch.
    pub exp: u64,
    /// Issue time, seconds since the UNIX epoch.
    #[serde(default)]
    pub iat: u64,
}

impl ScopedClaims {
    /// Whether the token's scope covers `stream`.
    pub fn covers(&self, stream: &StreamName) -> bool {
        match self.sub.strip_suffix('*') {
            Some(prefix) => stream.as_str().starts_with(prefix),
            None => self.sub == stream.as_str(),
        }
    }
}

/// Why a scoped token was refused or could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token's `exp` is in the past.
    #[error("token expired {ago} s ago (exp {exp}); ask for a new one")]
    Expired {
        /// The token's expiry, seconds since the UNIX epoch.
        exp: u64,
        /// Seconds since it expired.
        ago: u64,
    },
    /// The token is for the other role.
    #[error("token is for {token}, not {wanted}")]
    WrongRole {
        /// The role in the token.
        token: TokenRole,
        /// The role the request needs.
        wanted: TokenRole,
    },
    /// The token names another stream or prefix.
    #[error("token is for stream \"{scope}\", not \"{stream}\"")]
    WrongStream {
        /// The token's scope.
        scope: String,
        /// The stream requested.
        stream: String,
    },
    /// Bad signature, malformed token or claims.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A scope that cannot name streams (bad characters, too long).
    #[error("invalid token scope {0:?}: a stream name [A-Za-z0-9_-]{{1,64}}, or a prefix of one followed by *")]
    BadScope(String),
}

/// Checks that `scope` is a stream name or a (possibly empty) prefix followed by `*`.
pub fn check_scope(scope: &str) -> Result<(), TokenError> {
    let ok = match scope.strip_suffix('*') {
        Some(prefix) => {
            prefix.len() < vswa_protocol::STREAM_NAME_MAX_LEN
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }
        None => StreamName::new(scope).is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err(TokenError::BadScope(scope.to_string()))
    }
}

/// Mints a scoped token valid from `now_unix` (seconds) for `ttl`.
pub fn mint_token(
    secret: &[u8],
    scope: &str,
    role: TokenRole,
    now_unix: u64,
    ttl: Duration,
) -> Result<String, TokenError> {
    check_scope(scope)?;
    let claims = ScopedClaims {
        sub: scope.to_string(),
        role,
        exp: now_unix.saturating_add(ttl.as_secs()),
        iat: now_unix,
    };
    let claims = serde_json::to_vec(&claims).map_err(|e| TokenError::Invalid(e.to_string()))?;
    let signing_input = format!(
        "{}.{}",
        BASE64URL.encode(JWT_HEADER),
        BASE64URL.encode(claims)
    );
    let mut mac = hmac(secret)?;
    mac.update(signing_input.as_bytes());
    let signature = BASE64URL.encode(mac.finalize().into_bytes());
    Ok(format!("{signing_input}.{signature}"))
}

/// The JOSE header of every token minted here (RFC 7519; the same bytes as the JWT
/// library the relay used before, so tokens minted by older relays still verify).
const JWT_HEADER: &str = r#"{"typ":"JWT","alg":"HS256"}"#;

type HmacSha256 = Hmac<Sha256>;

fn hmac(secret: &[u8]) -> Result<HmacSha256, TokenError> {
    // HMAC takes keys of any length; the error case cannot happen.
    HmacSha256::new_from_slice(secret).map_err(|e| TokenError::Invalid(e.to_string()))
}

/// Checks a compact JWT's form, that its header says HS256 (never `none` or another
/// algorithm, whatever the token claims) and its HMAC-SHA256 signature under `secret`
/// (compared in constant time); returns the claims' JSON bytes.
fn verified_claims(secret: &[u8], token: &str) -> Result<Vec<u8>, TokenError> {
    let invalid = |why: &str| TokenError::Invalid(why.to_string());
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("not a JWT (header.claims.signature)"));
    };
    let header_json: serde_json::Value = BASE64URL
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or_else(|| invalid("the header is not base64url JSON"))?;
    match header_json.get("alg").and_then(|a| a.as_str()) {
        Some("HS256") => {}
        other => {
            return Err(TokenError::Invalid(format!(
                "algorithm {} is not HS256",
                other.unwrap_or("(none)")
            )))
        }
    }
    let signature = BASE64URL
        .decode(signature)
        .map_err(|_| invalid("the signature is not base64url"))?;
    let mut mac = hmac(secret)?;
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(claims.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| invalid("InvalidSignature"))?;
    BASE64URL
        .decode(claims)
        .map_err(|_| invalid("the claims are not base64url"))
}

/// Verifies a scoped token's signature and expiry (at `now_unix`, seconds) and that it
/// opens `stream` for `role`.
pub fn verify_token(
    secret: &[u8],
    token: &str,
    role: TokenRole,
    stream: &StreamName,
    now_unix: u64,
) -> Result<ScopedClaims, TokenError> {
    // `exp`, `sub` and `role` are required fields; expiry is checked below against the
    // caller's clock, to give a precise message.
    let claims: ScopedClaims = serde_json::from_slice(&verified_claims(secret, token)?)
        .map_err(|e| TokenError::Invalid(format!("claims: {e}")))?;
    if claims.exp <= now_unix {
        return Err(TokenError::Expired {
            exp: claims.exp,
            ago: now_unix - claims.exp,
        });
    }
    if claims.role != role {
        return Err(TokenError::WrongRole {
            token: claims.role,
            wanted: role,
        });
    }
    if !claims.covers(stream) {
        return Err(TokenError::WrongStream {
            scope: claims.sub,
            stream: stream.to_string(),
        });
    }
    Ok(claims)
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No token was presented.
    Missing,
    /// A token that is neither the shared token nor a valid scoped token.
    Wrong,
    /// A well-formed scoped token that does not open this door.
    Scoped(TokenError),
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::Missing => f.write_str(
                "this relay requires a token (Authorization: Bearer TOKEN or ?token=TOKEN)",
            ),
            Denied::Wrong => f.write_str("wrong token"),
            Denied::Scoped(e) => e.fmt(f),
        }
    }
}

/// Decides whether `presented` opens `role` on `stream`: the role's shared token, or,
/// with a secret configured, a scoped token. With neither configured the door is open.
pub fn check(
    shared: Option<&str>,
    secret: Option<&str>,
    role: TokenRole,
    stream: &StreamName,
    presented: Option<&str>,
    now_unix: u64,
) -> Result<(), Denied> {
    if shared.is_none() && secret.is_none() {
        return Ok(());
    }
    let Some(got) = presented else {
        return Err(Denied::Missing);
    };
    if shared.is_some() && allowed(shared, Some(got)) {
        return Ok(());
    }
    match secret {
        // A JWT is three base64url parts; anything else is just a wrong shared token.
        Some(secret) if got.split('.').count() == 3 => {
            verify_token(secret.as_bytes(), got, role, stream, now_unix)
                .map(|_| ())
                .map_err(|e| match e {
                    TokenError::Invalid(_) => Denied::Wrong,
                    other => Denied::Scoped(other),
                })
        }
        _ => Err(Denied::Wrong),
    }
}

/// Seconds since the UNIX epoch, from the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> StreamName {
        StreamName::new(s).unwrap()
    }

    #[test]
    fn bearer_then_query() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_token(&h, Some("q")), Some("q"));
        h.insert(http::header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(presented_token(&h, Some("q")), Some("abc"));
        assert!(allowed(None, None));
        assert!(allowed(Some("abc"), Some("abc")));
        assert!(!allowed(Some("abc"), Some("abd")));
        assert!(!allowed(Some("abc"), Some("ab")));
        assert!(!allowed(Some("abc"), None));
    }

    #[test]
    fn basic_auth_is_not_a_bearer_token() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            "Basic dXNlcjpzZWNyZXQ=".parse().unwrap(),
        );
        assert_eq!(presented_token(&h, None), None);
    }

    #[test]
    fn scoped_token_opens_only_its_stream_and_role() {
        let now = 1_800_000_000;
        let ttl = Duration::from_secs(3600);
        let s = b"secret";
        let t = mint_token(s, "cam1", TokenRole::Publish, now, ttl).unwrap();
        assert!(verify_token(s, &t, TokenRole::Publish, &name("cam1"), now).is_ok());
        assert!(matches!(
            verify_token(s, &t, TokenRole::Watch, &name("cam1"), now),
            Err(TokenError::WrongRole { .. })
        ));
        assert!(matches!(
            verify_token(s, &t, TokenRole::Publish, &name("cam10"), now),
            Err(TokenError::WrongStream { .. })
        ));
        assert!(matches!(
            verify_token(b"other", &t, TokenRole::Publish, &name("cam1"), now),
            Err(TokenError::Invalid(_))
        ));
        let err = verify_token(s, &t, TokenRole::Publish, &name("cam1"), now + 3700).unwrap_err();
        assert_eq!(
            err,
            TokenError::Expired {
                exp: now + 3600,
                ago: 100
            }
        );
        assert!(err.to_string().contains("expired"));
        let p = mint_token(s, "lobby-*", TokenRole::Watch, now, ttl).unwrap();
        assert!(verify_token(s, &p, TokenRole::Watch, &name("lobby-1"), now).is_ok());
        assert!(verify_token(s, &p, TokenRole::Watch, &name("lobby"), now).is_err());
        assert!(mint_token(s, "../x", TokenRole::Watch, now, ttl).is_err());
        assert!(mint_token(s, "a*b", TokenRole::Watch, now, ttl).is_err());
        assert!(mint_token(s, "*", TokenRole::Watch, now, ttl).is_ok());
    }

    #[test]
    fn hs256_signatures_match_the_rfc_example_and_other_algorithms_are_refused() {
        // The well-known HS256 example token (jwt.io's), secret "your-256-bit-secret".
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        let claims = verified_claims(b"your-256-bit-secret", token).unwrap();
        assert!(String::from_utf8(claims).unwrap().contains("John Doe"));
        assert!(verified_claims(b"other", token).is_err());
        // alg "none" with an empty signature, and HS512, are refused.
        let none = format!(
            "{}.{}.",
            BASE64URL.encode(r#"{"alg":"none","typ":"JWT"}"#),
            token.split('.').nth(1).unwrap()
        );
        let err = verified_claims(b"your-256-bit-secret", &none).unwrap_err();
        assert!(err.to_string().contains("not HS256"), "{err}");
        let hs512 = format!(
            "{}.{}",
            BASE64URL.encode(r#"{"alg":"HS512"}"#),
            token.split_once('.').unwrap().1
        );
        assert!(verified_claims(b"your-256-bit-secret", &hs512).is_err());
        for junk in ["", "a.b", "a.b.c.d", "!!.??.##"] {
            assert!(verified_claims(b"s", junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn check_combines_shared_and_scoped() {
        let now = 1_800_000_000;
        let s = "secret";
        let t = mint_token(
            s.as_bytes(),
            "a",
            TokenRole::Watch,
            now,
            Duration::from_secs(60),
        )
        .unwrap();
        let a = name("a");
        assert_eq!(check(None, None, TokenRole::Watch, &a, None, now), Ok(()));
        assert_eq!(
            check(None, Some(s), TokenRole::Watch, &a, None, now),
            Err(Denied::Missing)
        );
        assert_eq!(
            check(None, Some(s), TokenRole::Watch, &a, Some(&t), now),
            Ok(())
        );
        assert_eq!(
            check(Some("v"), Some(s), TokenRole::Watch, &a, Some("v"), now),
            Ok(())
        );
        assert_eq!(
            check(Some("v"), None, TokenRole::Watch, &a, Some(&t), now),
            Err(Denied::Wrong),
            "without a secret, signed tokens open nothing"
        );
        assert_eq!(
            check(None, Some(s), TokenRole::Watch, &a, Some("x.y.z"), now),
            Err(Denied::Wrong)
        );
    }
}
