//! Signing commits with an SSH key, as `git` verifies them with
//! `gpg.format=ssh`: an `sshsig` signature (namespace `git`, SHA-512) of
//! the commit object without its signature, in the commit's `gpgsig`
//! header. The key is read once, when the sink starts; a key that cannot
//! be read stops the sink, which never writes an unsigned commit instead.

use ssh_key::{HashAlg, LineEnding, PrivateKey};
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The namespace git signs commits in (`ssh-keygen -Y sign -n git`).
const NAMESPACE: &str = "git";

/// The largest key file read: an OpenSSH RSA key of 16,384 bits is about
/// 12 KiB. Anything larger is not a key, and is not read into memory.
const MAX_KEY_BYTES: u64 = 64 * 1024;

/// Why commits cannot be signed.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The key file could not be read.
    #[error("reading the signing key {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The path is not a regular file of a key's size (a device, a pipe,
    /// a folder, something huge), so it is not read.
    #[error("the signing key {} is {what}, not a key file", path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// What it is.
        what: String,
    },
    /// The file is not an OpenSSH private key.
    #[error(
        "the signing key {from} is not an OpenSSH private key (one begins `-----BEGIN OPENSSH PRIVATE KEY-----`; ssh-keygen -t ed25519 makes one, ssh-keygen -p -f FILE rewrites an older PEM key so)"
    )]
    Parse {
        /// Where the key was read from.
        from: String,
        /// Why.
        #[source]
        source: ssh_key::Error,
    },
    /// A key of a type this build cannot sign with.
    #[error(
        "the signing key {from} is {algorithm}, which Plumbline cannot sign with: use an ed25519 or ECDSA key"
    )]
    Unsupported {
        /// Where the key was read from.
        from: String,
        /// Its algorithm.
        algorithm: String,
    },
    /// The key is protected by a passphrase, which a daemon cannot type.
    #[error(
        "the signing key {from} is encrypted with a passphrase: give a key without one (keep it in a Secret)"
    )]
    Encrypted {
        /// Where the key was read from.
        from: String,
    },
    /// Signing failed.
    #[error("signing a commit with the key {fingerprint}")]
    Sign {
        /// The key's fingerprint.
        fingerprint: String,
        /// Why.
        #[source]
        source: ssh_key::Error,
    },
}

/// A private key that signs commits. Its `Debug` names the key by its
/// fingerprint only.
pub struct Signer {
    key: PrivateKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key", &self.fingerprint())
            .finish()
    }
}

/// Two signers are one if their keys are: a repository's worker starts
/// over when its key changes, not when the same key is read again.
impl PartialEq for Signer {
    fn eq(&self, other: &Signer) -> bool {
        self.key.public_key().key_data() == other.key.public_key().key_data()
    }
}

impl Eq for Signer {}

impl Signer {
    /// The OpenSSH private key in `path`.
    pub fn from_file(path: &Path) -> Result<Signer, SigningError> {
        let unread = |source| SigningError::Read {
            path: path.to_owned(),
            source,
        };
        // Looked at before it is opened: opening a pipe would wait for a
        // writer, and a device could be read for ever.
        let metadata = std::fs::metadata(path).map_err(unread)?;
        let what = if !metadata.is_file() {
            Some("not a regular file".to_owned())
        } else if metadata.len() > MAX_KEY_BYTES {
            Some(format!("{} bytes", metadata.len()))
        } else {
            None
        };
        if let Some(what) = what {
            return Err(SigningError::NotAFile {
                path: path.to_owned(),
                what,
            });
        }
        let mut text = Vec::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_KEY_BYTES).read_to_end(&mut text))
            .map_err(unread)?;
        Signer::from_openssh(&text, &path.display().to_string())
    }

    /// The OpenSSH private key `text`, read from where `from` says (which
    /// errors name).
    pub fn from_openssh(text: &[u8], from: &str) -> Result<Signer, SigningError> {
        let key = PrivateKey::from_openssh(text).map_err(|source| SigningError::Parse {
            from: from.to_owned(),
            source,
        })?;
        if key.is_encrypted() {
            return Err(SigningError::Encrypted {
                from: from.to_owned(),
            });
        }
        // Tried once now, so that a key that cannot sign is refused before
        // anything runs, not at the first commit: RSA, whose signing in
        // ssh-key 0.6 builds the private key from p twice instead of p and
        // q, and fails.
        let signer = Signer { key };
        if signer.sign(b"plumbline").is_err() {
            return Err(SigningError::Unsupported {
                from: from.to_owned(),
                algorithm: signer.key.algorithm().to_string(),
            });
        }
        Ok(signer)
    }

    /// The public key, as a line of `authorized_keys` or of git's allowed
    /// signers: what an operator adds to the forge.
    pub fn public_key(&self) -> String {
        self.key
            .public_key()
            .to_openssh()
            .unwrap_or_else(|_| self.fingerprint())
    }

    /// The key's SHA-256 fingerprint, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// The armored signature of `payload` (a commit object without its
    /// signature), without its last line break: git's header holds it.
    pub fn sign(&self, payload: &[u8]) -> Result<String, SigningError> {
        let failed = |source| SigningError::Sign {
            fingerprint: self.fingerprint(),
            source,
        };
        let signature = self
            .key
            .sign(NAMESPACE, HashAlg::Sha512, payload)
            .map_err(failed)?;
        let armored = signature.to_pem(LineEnding::LF).map_err(failed)?;
        Ok(armored.trim_end().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_a_key_is_named_and_no_secret_is_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_ed25519");
        std::fs::write(&path, "-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n").unwrap();
        let error = Signer::from_file(&path).unwrap_err();
        let told = crate::telemetry::chain(&error);
        assert!(told.contains(&path.display().to_string()), "{told}");
        assert!(!told.contains("not a key"), "{told}");
        let missing = Signer::from_file(&dir.path().join("absent")).unwrap_err();
        assert!(matches!(missing, SigningError::Read { .. }), "{missing}");
        // Not opened, so not read for ever nor waited on.
        let pipe = dir.path().join("pipe");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&pipe)
                .status()
                .unwrap()
                .success()
        );
        for special in [Path::new("/dev/zero"), dir.path(), &pipe] {
            let refused = Signer::from_file(special).unwrap_err();
            assert!(
                matches!(refused, SigningError::NotAFile { .. }),
                "{refused}"
            );
        }
        let huge = dir.path().join("huge");
        std::fs::File::create(&huge)
            .and_then(|f| f.set_len(MAX_KEY_BYTES + 1))
            .unwrap();
        let refused = Signer::from_file(&huge).unwrap_err();
        assert!(refused.to_string().contains("bytes"), "{refused}");
    }
}
