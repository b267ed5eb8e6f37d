//! Credentials set through `tale serve`'s API are kept in the database
//! sealed with XChaCha20-Poly1305 under a key from the environment
//! (`TALE_SECRET_KEY`): the database file alone, its backups and its WAL
//! never hold a credential value. The credential's name and allowed hosts
//! are bound to the ciphertext as associated data, so a row edited to send
//! a credential to another host, or copied under another name, no longer
//! opens.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use secrecy::zeroize::Zeroizing;
use sha2::{Digest, Sha256};

/// `N` bytes from the operating system's random source (keys of a
/// process: the web UI's when no API token is set).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use chacha20poly1305::aead::rand_core::RngCore;
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// The environment variable that holds the key.
pub const KEY_VARIABLE: &str = "TALE_SECRET_KEY";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SealError {
    #[error(
        "{KEY_VARIABLE} must be 32 random bytes in base64 (44 characters) or hex (64 characters): {0} (make one with `head -c 32 /dev/urandom | base64`)"
    )]
    BadKey(String),
    #[error(
        "credential `{name}` was sealed with the key {sealed_with}, but {KEY_VARIABLE} is the key {current}: start with the key it was set with"
    )]
    WrongKey {
        name: String,
        sealed_with: String,
        current: String,
    },
    #[error("credential `{0}` does not open: its row was altered (name or allowed hosts changed) or damaged")]
    Tampered(String),
    #[error("cannot seal credential `{0}`")]
    Seal(String),
}

/// The key credentials are sealed with.
pub struct SealKey {
    cipher: XChaCha20Poly1305,
    /// A short fingerprint stored beside each sealed row, so a wrong key is
    /// named as such instead of looking like damage.
    id: String,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// A sealed credential as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl SealKey {
    /// 32 bytes written as base64 (standard or URL-safe, padded or not) or hex.
    pub fn parse(text: &str) -> Result<Self, SealError> {
        use base64::Engine as _;
        let text = text.trim();
        let bytes = Zeroizing::new(if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| SealError::BadKey("not hex".into()))?
        } else {
            let engines = [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::STANDARD_NO_PAD,
                &base64::engine::general_purpose::URL_SAFE,
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ];
            engines
                .iter()
                .find_map(|e| e.decode(text).ok())
                .ok_or_else(|| SealError::BadKey("neither base64 nor hex".into()))?
        });
        if bytes.len() != 32 {
            return Err(SealError::BadKey(format!("it holds {} bytes", bytes.len())));
        }
        let digest = Sha256::new_with_prefix(b"tale key id\0")
            .chain_update(&*bytes)
            .finalize();
        let id = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            cipher: XChaCha20Poly1305::new(Key::from_slice(&bytes)),
            id,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plain` for the credential `name` sent only to `hosts`.
    pub fn seal(&self, name: &str, hosts: Option<&[String]>, plain: &[u8]) -> Result<Sealed, SealError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated(name, hosts);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, Payload { msg: plain, aad: &aad })
            .map_err(|_| SealError::Seal(name.to_owned()))?;
        Ok(Sealed {
            key_id: self.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Opens what [`SealKey::seal`] sealed for the same name and hosts.
    pub fn open(&self, name: &str, hosts: Option<&[String]>, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.key_id != self.id {
            return Err(SealError::WrongKey {
                name: name.to_owned(),
                sealed_with: sealed.key_id.clone(),
                current: self.id.clone(),
            });
        }
        if sealed.nonce.len() != 24 {
            return Err(SealError::Tampered(name.to_owned()));
        }
        let aad = associated(name, hosts);
        self.cipher
            .decrypt(
                XNonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Tampered(name.to_owned()))
    }
}

/// The name and hosts, unambiguously: a NUL cannot occur in either.
fn associated(name: &str, hosts: Option<&[String]>) -> Vec<u8> {
    let mut out = format!("tale credential v1\0{}\0", name.to_ascii_lowercase()).into_bytes();
    match hosts {
        None => out.extend_from_slice(b"*anywhere*"),
        Some(hosts) => {
            for h in hosts {
                out.extend_from_slice(h.as_bytes());
                out.push(0);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn seals_and_opens_and_refuses_what_was_changed() {
        let key = SealKey::parse(KEY).expect("key");
        let hosts = vec!["graph.microsoft.com".to_owned()];
        let sealed = key
            .seal("graph", Some(&hosts), b"{\"value\":\"s3cr3t\"}")
            .expect("seal");
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"s3cr3t"));
        let open = key.open("GRAPH", Some(&hosts), &sealed).expect("open");
        assert_eq!(&open[..], b"{\"value\":\"s3cr3t\"}");
        // Another host, no hosts, another name: refused.
        let other = vec!["evil.example".to_owned()];
        assert_eq!(
            key.open("graph", Some(&other), &sealed),
            Err(SealError::Tampered("graph".into()))
        );
        assert!(key.open("graph", None, &sealed).is_err());
        assert!(key.open("jira", Some(&hosts), &sealed).is_err());
        // Two seals of one value differ (random nonces).
        let again = key
            .seal("graph", Some(&hosts), b"{\"value\":\"s3cr3t\"}")
            .expect("seal");
        assert_ne!(again.ciphertext, sealed.ciphertext);
    }

    #[test]
    fn a_wrong_key_is_named_and_bad_keys_are_refused() {
        let key = SealKey::parse(KEY).expect("key");
        let hex = "00".repeat(31) + "01";
        let other = SealKey::parse(&hex).expect("hex key");
        let sealed = key.seal("graph", None, b"x").expect("seal");
        assert!(matches!(
            other.open("graph", None, &sealed),
            Err(SealError::WrongKey { .. })
        ));
        assert!(SealKey::parse("c2hvcnQ=").is_err());
        assert!(SealKey::parse("not a key at all!").is_err());
        assert_eq!(SealKey::parse(&hex.to_uppercase()).expect("upper hex").id(), other.id());
    }
}
