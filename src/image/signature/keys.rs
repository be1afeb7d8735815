//! Trusted public keys: PEM `PUBLIC KEY` files (SubjectPublicKeyInfo) of
//! ECDSA P-256 keys, what `cosign generate-key-pair` writes and
//! `openssl pkey -pubout` prints. Other key types are refused when the key
//! is loaded, so a policy never silently verifies nothing.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;

use super::SignatureError;

/// A PEM public key is a few hundred bytes; this only keeps a wrong path
/// (a disk image, /dev/zero) from being read whole.
const KEY_FILE_MAX: u64 = 64 << 10;

/// A key a policy trusts, with the file it came from for messages.
#[derive(Clone)]
pub(crate) struct TrustedKey {
    pub path: PathBuf,
    key: VerifyingKey,
}

impl fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedKey")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TrustedKey {
    #[cfg(test)]
    pub(crate) fn for_tests(path: &str, key: VerifyingKey) -> Self {
        TrustedKey {
            path: PathBuf::from(path),
            key,
        }
    }

    /// Whether `signature` is this key's over exactly `payload` (SHA-256).
    pub(crate) fn verifies(&self, payload: &[u8], signature: &Signature) -> bool {
        self.key.verify(payload, signature).is_ok()
    }
}

/// Reads and parses the key file at `path`.
pub(crate) fn load(path: &Path) -> Result<TrustedKey, SignatureError> {
    let unreadable = |source| SignatureError::KeyUnreadable {
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(unreadable)?
        .take(KEY_FILE_MAX + 1)
        .read_to_string(&mut text)
        .map_err(unreadable)?;
    if text.len() as u64 > KEY_FILE_MAX {
        return Err(SignatureError::KeyInvalid {
            path: path.to_owned(),
            reason: format!("larger than {KEY_FILE_MAX} bytes"),
        });
    }
    parse(&text)
        .map(|key| TrustedKey {
            path: path.to_owned(),
            key,
        })
        .map_err(|reason| SignatureError::KeyInvalid {
            path: path.to_owned(),
            reason,
        })
}

fn parse(text: &str) -> Result<VerifyingKey, String> {
    if !text.contains("-----BEGIN PUBLIC KEY-----") {
        return Err(if text.contains("PRIVATE KEY-----") {
            "holds a private key; give the public half (`openssl pkey -pubout`, or cosign.pub)"
                .to_owned()
        } else {
            "not a PEM `PUBLIC KEY` block".to_owned()
        });
    }
    VerifyingKey::from_public_key_pem(text.trim()).map_err(|e| {
        format!("not an ECDSA P-256 public key (the only kind cosign key pairs use): {e}")
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A P-256 public key made with `openssl ecparam -name prime256v1
    /// -genkey | openssl pkey -pubout`, for tests.
    pub(crate) const P256_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEaL+iRZreK9CARNoiKpK3G3APBQ2f
gHLNMraNAxsSsoFF43WS3VD+BMSq51U5ToiknXCrDVXuIQqO1vDByrbEEQ==
-----END PUBLIC KEY-----
";

    /// A P-384 key, well-formed but not what cosign signs with.
    const P384_PEM: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEltnetPDGQHKL/Zu6RDx9YHT0RhH+xPbr
zjsO6UGViPeW8faUWrUbdgwM57kk7DJLR4inNHG9uTPhJeZE2H+aFWUUyJydr+4W
8tu5UrKDcXrOlQJVftr9ustg2BeqRTEL
-----END PUBLIC KEY-----
";

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_p256_public_key_loads() {
        let dir = tempfile::tempdir().unwrap();
        let key = load(&write(dir.path(), "cosign.pub", P256_PEM)).unwrap();
        assert!(format!("{key:?}").contains("cosign.pub"));
    }

    #[test]
    fn other_keys_and_files_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let private = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n";
        let mangled = P256_PEM.replace("MFkw", "MFkx");
        let truncated = &P256_PEM[..120];
        let huge = "A".repeat(KEY_FILE_MAX as usize + 1);
        for (name, text, wanted) in [
            ("p384.pub", P384_PEM, "not an ECDSA P-256 public key"),
            ("private.key", private, "holds a private key"),
            ("empty.pub", "", "not a PEM"),
            ("mangled.pub", mangled.as_str(), "not an ECDSA P-256"),
            ("truncated.pub", truncated, "not an ECDSA P-256"),
            ("huge.pub", huge.as_str(), "larger than"),
        ] {
            let path = write(dir.path(), name, text);
            let err = load(&path).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(wanted), "{name}: {err}");
        }
        let err = load(&dir.path().join("absent.pub")).unwrap_err();
        assert!(matches!(err, SignatureError::KeyUnreadable { .. }), "{err}");
    }
}
