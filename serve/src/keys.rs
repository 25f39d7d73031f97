//! Secret keys: which org a key belongs to, found by the key's SHA-256
//! (the raw key is never stored or logged), and which environment its
//! prefix names (`am_sk_test_…`: sandbox; any other `am_sk_…`: live).

use std::collections::BTreeMap;

use cusim::model::{Env, Scope};
use sha2::{Digest, Sha256};

use crate::errors::HttpError;

/// The keys table: SHA-256 (hex) of each key → its org.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    by_hash: BTreeMap<String, String>,
}

/// A `--key` argument that is not `KEY=ORG` with a well-formed key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--key {shown}: {reason}")]
pub struct KeyError {
    /// The argument with the key itself hidden.
    pub shown: String,
    pub reason: String,
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The first characters of a key, as error messages show it.
fn prefix_of(key: &str) -> String {
    key.chars().take(15).collect()
}

impl Keys {
    /// Registers `KEY=ORG`.
    pub fn add(&mut self, argument: &str) -> Result<(), KeyError> {
        let error = |reason: &str| KeyError {
            shown: match argument.split_once('=') {
                Some((key, org)) => format!("{}***={org}", prefix_of(key)),
                None => format!("{}***", prefix_of(argument)),
            },
            reason: reason.to_owned(),
        };
        let Some((key, org)) = argument.split_once('=') else {
            return Err(error("expected KEY=ORG"));
        };
        if !key.starts_with("am_sk_") || key.len() <= "am_sk_".len() {
            return Err(error("a secret key starts with am_sk_ (am_sk_test_ for sandbox)"));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(error("a secret key is printable ASCII without spaces"));
        }
        if org.is_empty() || !org.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(error("an org is letters, digits, underscores and hyphens"));
        }
        self.by_hash.insert(sha256_hex(key), org.to_owned());
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The tenant an `Authorization` header's key stands for.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Scope, HttpError> {
        let missing =
            || HttpError::unauthenticated("no_secret_key", "Secret key not found in Authorization header");
        let header = header.ok_or_else(missing)?;
        let header = std::str::from_utf8(header).map_err(|_| missing())?.trim();
        let token = match header.get(..6) {
            Some(scheme) if scheme.eq_ignore_ascii_case("bearer") => header[6..].trim(),
            _ => header,
        };
        if token.is_empty() {
            return Err(missing());
        }
        if !token.starts_with("am_sk_") {
            return Err(HttpError::unauthenticated("invalid_request", "Invalid authorization token prefix"));
        }
        let Some(org) = self.by_hash.get(&sha256_hex(token)) else {
            return Err(HttpError::unauthenticated(
                "invalid_secret_key",
                format!("Invalid secret key: {}***", prefix_of(token)),
            ));
        };
        let env = if token.starts_with("am_sk_test_") { Env::Sandbox } else { Env::Live };
        Ok(Scope::new(org.clone(), env))
    }
}

/// A sandbox key nobody else knows, for a server started without `--key`.
pub fn made_up_key() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy source: the clock and the process id, still unique.
        let seed = crate::engine::wall_ms() ^ ((std::process::id() as u64) << 32);
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("am_sk_test_{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_authenticate_by_hash_and_name_their_environment() {
        let mut keys = Keys::default();
        keys.add("am_sk_test_abc=org_a").unwrap();
        keys.add("am_sk_live_xyz=org_b").unwrap();
        assert!(!format!("{keys:?}").contains("am_sk_test_abc"), "only hashes are kept");
        assert_eq!(
            keys.authenticate(Some(b"Bearer am_sk_test_abc")).unwrap(),
            Scope::new("org_a", Env::Sandbox)
        );
        assert_eq!(
            keys.authenticate(Some(b"Bearer am_sk_live_xyz")).unwrap(),
            Scope::new("org_b", Env::Live)
        );
        let code = |header: Option<&[u8]>| keys.authenticate(header).unwrap_err().code;
        assert_eq!(code(None), "no_secret_key");
        assert_eq!(code(Some(b"Bearer ")), "no_secret_key");
        assert_eq!(code(Some(b"Bearer sk_nope")), "invalid_request");
        let unknown = keys.authenticate(Some(b"Bearer am_sk_test_0123456789abcdef")).unwrap_err();
        assert_eq!(unknown.code, "invalid_secret_key");
        assert_eq!(unknown.message, "Invalid secret key: am_sk_test_0123***");
        assert_eq!(unknown.status, 401);
    }

    #[test]
    fn bad_key_arguments_are_refused_without_showing_the_key() {
        let mut keys = Keys::default();
        let bad_arguments = [
            "am_sk_test_0123456789secret",
            "sk_test_0123456789secret=org",
            "am_sk_test_0123456789secret=",
            "am_sk_test_0123456789secret=a b",
        ];
        for bad in bad_arguments {
            let error = keys.add(bad).unwrap_err();
            assert!(!error.to_string().contains("789secret"), "{error}");
        }
        assert!(keys.is_empty());
        assert!(made_up_key().starts_with("am_sk_test_"));
        assert_ne!(made_up_key(), made_up_key());
    }
}
