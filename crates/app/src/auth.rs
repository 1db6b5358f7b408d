//! API keys: who may call the service.
//!
//! Keys are kept only as SHA-256 hashes and a presented key is compared with every one of them in
//! constant time, so neither memory nor timing gives a key away. A key never appears in logs,
//! metrics or errors; its [`KeyId`] (the first four bytes of its hash) may.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A short, non-secret name for a key: the first 8 hex digits of its SHA-256 hash. Enough to
/// tell keys apart in logs and to find which line of the key file is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 4]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// A caller the service let in: which key (its index, for per-key state such as rate limits) and
/// its id. Without keys configured every caller is the same anonymous one, index 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caller {
    pub(crate) index: usize,
    pub(crate) key: Option<KeyId>,
}

impl Caller {
    /// The one caller there is when no keys are configured.
    pub(crate) const ANONYMOUS: Caller = Caller {
        index: 0,
        key: None,
    };
}

/// The configured keys, hashed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiKeys {
    hashes: Vec<[u8; 32]>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The ids only: they identify keys without revealing them.
        f.debug_list()
            .entries(self.hashes.iter().map(|hash| id_of(hash).to_string()))
            .finish()
    }
}

/// Why a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A key with characters a Bearer token cannot carry (RFC 6750 `b64token`).
    #[error("key {index} has characters other than letters, digits and -._~+/=")]
    Characters {
        /// 1-based position of the key in its source.
        index: usize,
    },
}

impl ApiKeys {
    /// Hashes `keys`, which come from a file or the environment. Each must be usable as a Bearer
    /// token; duplicates count once.
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<ApiKeys, KeyError> {
        let mut hashes: Vec<[u8; 32]> = Vec::new();
        for (position, key) in keys.into_iter().enumerate() {
            let token_char = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
            if key.is_empty() || !key.chars().all(token_char) {
                return Err(KeyError::Characters {
                    index: position + 1,
                });
            }
            let hash = hash(key.as_bytes());
            if !hashes.contains(&hash) {
                hashes.push(hash);
            }
        }
        Ok(ApiKeys { hashes })
    }

    /// Reads keys from a key file's text: one key per line; `#` starts a comment, on a line of
    /// its own or after a key (a key cannot contain `#`); blank lines are skipped; spaces around
    /// a key are trimmed.
    pub fn parse_file(text: &str) -> Result<ApiKeys, KeyError> {
        ApiKeys::new(
            text.lines()
                .map(|line| line.split('#').next().unwrap_or_default().trim())
                .filter(|key| !key.is_empty()),
        )
    }

    /// Reads keys from a comma-separated list (`ANTIFRAUD_API_KEYS`); spaces around each are
    /// trimmed, empty entries skipped.
    pub fn parse_list(text: &str) -> Result<ApiKeys, KeyError> {
        ApiKeys::new(text.split(',').map(str::trim).filter(|key| !key.is_empty()))
    }

    /// Both sets of keys.
    pub fn merge(mut self, other: ApiKeys) -> ApiKeys {
        for hash in other.hashes {
            if !self.hashes.contains(&hash) {
                self.hashes.push(hash);
            }
        }
        self
    }

    /// No keys: the service runs open.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// How many distinct keys.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// The ids of the keys, in order.
    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.hashes.iter().map(id_of)
    }

    /// Which key `presented` is, if any. Every stored hash is compared, each in constant time,
    /// so the answer takes as long for a near miss as for a wild guess.
    pub(crate) fn verify(&self, presented: &[u8]) -> Option<Caller> {
        let presented = hash(presented);
        let mut found = None;
        for (index, stored) in self.hashes.iter().enumerate() {
            if bool::from(stored.ct_eq(&presented)) {
                found = Some(Caller {
                    index,
                    key: Some(id_of(stored)),
                });
            }
        }
        found
    }
}

fn hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn id_of(hash: &[u8; 32]) -> KeyId {
    KeyId([hash[0], hash[1], hash[2], hash[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_key_is_recognised_and_others_are_not() {
        let keys = ApiKeys::parse_list("alpha-key-0001, beta-key-0002,,").expect("valid keys");
        assert_eq!(keys.len(), 2);
        let alpha = keys.verify(b"alpha-key-0001").expect("alpha is a key");
        let beta = keys.verify(b"beta-key-0002").expect("beta is a key");
        assert_eq!((alpha.index, beta.index), (0, 1));
        assert_ne!(alpha.key, beta.key);
        for wrong in [
            &b"alpha-key-0002"[..],
            b"alpha-key-000",
            b"alpha-key-00011",
            b"",
            b"ALPHA-KEY-0001",
        ] {
            assert_eq!(keys.verify(wrong), None, "{wrong:?}");
        }
    }

    #[test]
    fn a_key_file_skips_comments_and_blank_lines() {
        let keys = ApiKeys::parse_file(
            "# payments team\n  team-a-key-123  \n\n# retired: old-key\nteam-b-key-456 # since 2026-11\nteam-a-key-123\n",
        )
        .expect("valid file");
        assert_eq!(keys.len(), 2, "the duplicate counts once");
        assert!(keys.verify(b"team-a-key-123").is_some());
        assert!(keys.verify(b"team-b-key-456").is_some());
        assert!(keys.verify(b"old-key").is_none());
        assert!(keys.verify(b"# payments team").is_none());
    }

    #[test]
    fn keys_a_bearer_header_cannot_carry_are_refused_by_position_without_echoing_them() {
        let error = ApiKeys::parse_list("good-key-1,bad key with spaces").expect_err("invalid");
        assert_eq!(error, KeyError::Characters { index: 2 });
        assert!(!error.to_string().contains("spaces"), "{error}");
        assert!(ApiKeys::parse_file("ключ\n").is_err());
    }

    #[test]
    fn debug_output_and_ids_never_show_a_key() {
        let keys = ApiKeys::parse_list("super-secret-value").expect("valid");
        let debug = format!("{keys:?}");
        assert!(!debug.contains("secret"), "{debug}");
        let id = keys.ids().next().expect("one key").to_string();
        assert_eq!(id.len(), 8);
        assert!(debug.contains(&id), "{debug}");
        assert_eq!(
            keys.verify(b"super-secret-value").and_then(|c| c.key),
            keys.ids().next()
        );
    }
}
