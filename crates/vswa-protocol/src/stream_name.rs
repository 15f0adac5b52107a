//! Validated stream names: `[A-Za-z0-9_-]{1,64}`.

use std::fmt;

/// Longest allowed stream name, in bytes.
pub const STREAM_NAME_MAX_LEN: usize = 64;

/// A stream name known to match `[A-Za-z0-9_-]{1,64}`, so it is safe in URLs, file
/// names and log lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName(String);

/// Why a string is not a valid stream name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid stream name {name:?}: {reason} (allowed: 1-64 of A-Z a-z 0-9 _ -)")]
pub struct InvalidStreamName {
    /// The rejected name (cut to 80 characters).
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl StreamName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<StreamName, InvalidStreamName> {
        let reject = |reason| InvalidStreamName {
            name: name.chars().take(80).collect(),
            reason,
        };
        if name.is_empty() {
            return Err(reject("empty"));
        }
        if name.len() > STREAM_NAME_MAX_LEN {
            return Err(reject("longer than 64 bytes"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(reject("contains a character outside A-Z a-z 0-9 _ -"));
        }
        Ok(StreamName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for StreamName {
    type Err = InvalidStreamName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StreamName::new(s)
    }
}

impl AsRef<str> for StreamName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        for ok in ["a", "demo", "cam-1_B", &"x".repeat(64)] {
            assert!(StreamName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../x",
            "%2e%2e",
            "a b",
            "caméra",
            "a/b",
            &"x".repeat(65),
        ] {
            assert!(StreamName::new(bad).is_err(), "{bad}");
        }
    }
}
