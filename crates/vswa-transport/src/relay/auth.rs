//! Shared-secret tokens: `Authorization: Bearer T` or `?token=T`, compared in constant time.

use http::HeaderMap;
use subtle::ConstantTimeEq;

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
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
