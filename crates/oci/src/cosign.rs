//! Cosign's key-based signatures (`cosign sign --key`), made and checked:
//! the signature of the manifest `sha256:<hex>` of `registry/repo` lives
//! in the same repository at the tag `sha256-<hex>.sig`, an image whose
//! layers are each a simple-signing payload (which names the digest) with
//! the signature (ECDSA P-256 over SHA-256, DER, base64) in its annotation
//! `dev.cosignproject.cosign/signature`. Keys are PEM: public keys as
//! `cosign public-key` prints them (SubjectPublicKeyInfo), private keys as
//! PKCS#8 or SEC1 (`openssl ecparam -genkey`); cosign's own encrypted key
//! files are not read.
//!
//! A signature is trusted when it verifies with one of the keys the
//! operator names and its payload names the very digest: a payload signed
//! for another digest proves nothing about this one.

use super::{Artifact, Blob, OciClient, OciError, parse};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation that holds the signature.
pub const SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// What a payload says it is.
const SIGNATURE_TYPE: &str = "cosign container image signature";
/// A payload larger than this is not read (cosign's are a few hundred bytes).
const MAX_PAYLOAD: u64 = 64 * 1024;
/// Signatures checked at most: each is a download, and whoever can push a
/// signature image could otherwise make a verification take for ever.
const MAX_SIGNATURES: usize = 32;

/// Why a signature could not be made or trusted.
#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    /// There is no signature at all.
    #[error("{reference} is not signed: there is no cosign signature at {signatures}")]
    Unsigned {
        /// The signed reference, at its digest.
        reference: String,
        /// Where its signature would be.
        signatures: String,
    },
    /// There are signatures, and none verifies with a trusted key.
    #[error(
        "{reference}: none of its {count} cosign signature(s) verifies with a trusted key ({why})"
    )]
    Untrusted {
        /// The signed reference, at its digest.
        reference: String,
        /// How many signatures there are.
        count: usize,
        /// What was wrong with each.
        why: String,
    },
    /// A key could not be read.
    #[error("key {origin}: {message}")]
    Key {
        /// The file (or where the text came from).
        origin: String,
        /// Why.
        message: String,
    },
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] OciError),
}

/// A PEM key file is far smaller than this.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The text of the key file `path`: a regular file of at most
/// [`MAX_KEY_FILE`] bytes (a FIFO or `/dev/zero` named by mistake is
/// refused, not read for ever).
fn read_key(path: &Path) -> Result<String, CosignError> {
    use std::io::Read as _;
    let failed = |message: String| CosignError::Key {
        origin: path.display().to_string(),
        message,
    };
    let metadata = std::fs::metadata(path).map_err(|e| failed(e.to_string()))?;
    if !metadata.is_file() {
        return Err(failed("not a regular file".into()));
    }
    if metadata.len() > MAX_KEY_FILE {
        return Err(failed(format!("{} bytes: not a PEM key", metadata.len())));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_KEY_FILE).read_to_string(&mut text))
        .map_err(|e| failed(e.to_string()))?;
    Ok(text)
}

/// The public keys whose signatures are trusted.
#[derive(Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<(String, VerifyingKey)>,
}

impl std::fmt::Debug for TrustedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let origins: Vec<&str> = self.keys.iter().map(|(o, _)| o.as_str()).collect();
        f.debug_tuple("TrustedKeys").field(&origins).finish()
    }
}

impl TrustedKeys {
    /// The keys in `paths`, each a PEM public key.
    pub fn read(paths: &[PathBuf]) -> Result<TrustedKeys, CosignError> {
        let mut keys = TrustedKeys::default();
        for path in paths {
            let text = read_key(path)?;
            keys.add(&text, &path.display().to_string())?;
        }
        Ok(keys)
    }

    /// Adds the PEM public key `text` (from `origin`, for messages).
    pub fn add(&mut self, text: &str, origin: &str) -> Result<(), CosignError> {
        let key = VerifyingKey::from_public_key_pem(text.trim()).map_err(|e| CosignError::Key {
            origin: origin.to_owned(),
            message: format!(
                "not a PEM ECDSA P-256 public key (as `cosign public-key` prints it): {e}"
            ),
        })?;
        self.keys.push((origin.to_owned(), key));
        Ok(())
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key `signature` of `payload` verifies with, if any.
    fn verifying(&self, payload: &[u8], signature: &DerSignature) -> Option<&str> {
        self.keys
            .iter()
            .find(|(_, key)| key.verify(payload, signature).is_ok())
            .map(|(origin, _)| origin.as_str())
    }
}

/// A private key to sign with.
pub struct SignerKey {
    key: SigningKey,
}

impl SignerKey {
    /// The PEM private key in `path`: PKCS#8 (`PRIVATE KEY`) or SEC1
    /// (`EC PRIVATE KEY`), P-256, not encrypted.
    pub fn read(path: &Path) -> Result<SignerKey, CosignError> {
        let origin = path.display().to_string();
        let failed = |message: String| CosignError::Key {
            origin: origin.clone(),
            message,
        };
        let text = read_key(path)?;
        if text.contains("ENCRYPTED") {
            return Err(failed(
                "an encrypted key is not read: give an unencrypted PKCS#8 or SEC1 P-256 key (`openssl ecparam -name prime256v1 -genkey -noout`)".into(),
            ));
        }
        let secret = if text.contains("BEGIN EC PRIVATE KEY") {
            p256::SecretKey::from_sec1_pem(text.trim()).ok()
        } else {
            p256::SecretKey::from_pkcs8_pem(text.trim()).ok()
        };
        let secret = secret
            .ok_or_else(|| failed("not a PEM ECDSA P-256 private key (PKCS#8 or SEC1)".into()))?;
        Ok(SignerKey {
            key: SigningKey::from(secret),
        })
    }

    /// The public key, as PEM: what verifiers are given.
    pub fn public_pem(&self) -> String {
        use p256::pkcs8::EncodePublicKey as _;
        self.key
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap_or_default()
    }
}

/// Where the signatures of `reference` (any tag or digest of it) at
/// `digest` live: `registry/repo:sha256-<hex>.sig`.
pub fn signatures_of(reference: &str, digest: &str) -> Result<String, OciError> {
    let parsed = parse(reference)?;
    let tag = digest.replacen(':', "-", 1);
    Ok(format!(
        "{}/{}:{tag}.sig",
        parsed.registry(),
        parsed.repository()
    ))
}

/// The simple-signing payload for `digest` of `reference`'s repository.
pub fn payload(reference: &str, digest: &str) -> Result<Vec<u8>, OciError> {
    let parsed = parse(reference)?;
    let identity = format!("{}/{}", parsed.registry(), parsed.repository());
    let payload = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest},
            "type": SIGNATURE_TYPE,
        },
        "optional": null,
    });
    Ok(payload.to_string().into_bytes())
}

/// Signs what `reference` names now with `key`, beside the signatures it
/// has already (another signer's stay): the digest signed and where the
/// signature went.
pub fn sign(
    client: &OciClient,
    reference: &str,
    key: &SignerKey,
) -> Result<(String, String), CosignError> {
    let digest = client.resolve(reference)?;
    let at = signatures_of(reference, &digest)?;
    let payload = payload(reference, &digest)?;
    let signature: DerSignature = key.key.sign(&payload);
    let mut layers = match client.pull(&at) {
        Ok(existing) => existing.layers,
        Err(error) if error.is_not_found() => Vec::new(),
        Err(error) => return Err(error.into()),
    };
    layers.retain(|l| l.data != payload || l.media_type != SIMPLE_SIGNING);
    layers.push(Blob {
        media_type: SIMPLE_SIGNING.into(),
        data: payload,
        annotations: BTreeMap::from([(
            SIGNATURE.to_owned(),
            STANDARD.encode(signature.as_bytes()),
        )]),
    });
    let artifact = Artifact {
        digest: None,
        config: Blob {
            media_type: "application/vnd.oci.image.config.v1+json".into(),
            data: b"{}".to_vec(),
            annotations: BTreeMap::new(),
        },
        layers,
    };
    client.push(&at, &artifact)?;
    Ok((digest, at))
}

/// Checks that `reference` at `digest` carries a signature that verifies
/// with one of `keys` and names `digest`; the key's origin.
pub fn verify(
    client: &OciClient,
    reference: &str,
    digest: &str,
    keys: &TrustedKeys,
) -> Result<String, CosignError> {
    let signed = super::at_digest(reference, digest)?;
    let at = signatures_of(reference, digest)?;
    let manifest = match client.manifest(&at) {
        Ok(manifest) => manifest,
        Err(error) if error.is_not_found() => {
            return Err(CosignError::Unsigned {
                reference: signed,
                signatures: at,
            });
        }
        Err(error) => return Err(error.into()),
    };
    let mut why = Vec::new();
    let layers = manifest
        .layers
        .iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING)
        .take(MAX_SIGNATURES);
    let mut count = 0;
    for layer in layers {
        count += 1;
        match check(client, &at, layer, digest, keys) {
            Ok(origin) => return Ok(origin),
            Err(reason) => why.push(reason),
        }
    }
    if count == 0 {
        return Err(CosignError::Unsigned {
            reference: signed,
            signatures: at,
        });
    }
    Err(CosignError::Untrusted {
        reference: signed,
        count,
        why: why.join("; "),
    })
}

/// One signature layer: the trusted key it verifies with, or why not.
fn check(
    client: &OciClient,
    at: &str,
    layer: &super::Descriptor,
    digest: &str,
    keys: &TrustedKeys,
) -> Result<String, String> {
    let encoded = layer
        .annotations
        .get(SIGNATURE)
        .ok_or("a payload without a signature annotation")?;
    let signature = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| DerSignature::from_bytes(&bytes).ok())
        .ok_or("a signature that is not base64 DER ECDSA")?;
    if layer.size > MAX_PAYLOAD {
        return Err(format!("a payload of {} bytes", layer.size));
    }
    let mut payload = Vec::new();
    client
        .pull_blob(at, layer, &mut payload, &mut |_| {})
        .map_err(|e| e.to_string())?;
    let origin = keys
        .verifying(&payload, &signature)
        .ok_or("a signature no trusted key made")?;
    let claims: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|e| format!("a payload that is not JSON: {e}"))?;
    let critical = &claims["critical"];
    if critical["type"] != SIGNATURE_TYPE {
        return Err(format!("a payload of type {}", critical["type"]));
    }
    if critical["image"]["docker-manifest-digest"] != digest {
        return Err(format!(
            "a signature for {}, not this digest",
            critical["image"]["docker-manifest-digest"]
        ));
    }
    Ok(origin.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:2cd6b3fece26b93040a0e9166c61eb80f522e84401f992d8220a462489f4e2f3";

    #[test]
    fn signatures_live_at_the_digests_tag_in_the_same_repository() {
        let at = signatures_of("registry.example:5000/policies/team:stable", DIGEST).unwrap();
        assert_eq!(
            at,
            "registry.example:5000/policies/team:sha256-2cd6b3fece26b93040a0e9166c61eb80f522e84401f992d8220a462489f4e2f3.sig"
        );
        let payload: serde_json::Value = serde_json::from_slice(
            &payload(
                &format!("registry.example:5000/policies/team@{DIGEST}"),
                DIGEST,
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            payload["critical"]["image"]["docker-manifest-digest"],
            DIGEST
        );
        assert_eq!(
            payload["critical"]["identity"]["docker-reference"],
            "registry.example:5000/policies/team"
        );
        assert_eq!(payload["critical"]["type"], SIGNATURE_TYPE);
    }

    #[test]
    fn a_signature_verifies_with_its_key_only() {
        let dir = tempfile::tempdir().unwrap();
        // Fixed scalars: any in range is a key.
        let key = |byte: u8| SigningKey::from(p256::SecretKey::from_slice(&[byte; 32]).unwrap());
        let (signer, other) = (key(7), key(9));
        let mut keys = TrustedKeys::default();
        use p256::pkcs8::EncodePublicKey as _;
        let pem = |k: &SigningKey| {
            k.verifying_key()
                .to_public_key_pem(p256::pkcs8::LineEnding::LF)
                .unwrap()
        };
        keys.add(&pem(&signer), "signer.pub").unwrap();
        let signature: DerSignature = signer.sign(b"payload");
        assert_eq!(keys.verifying(b"payload", &signature), Some("signer.pub"));
        assert_eq!(keys.verifying(b"payloaD", &signature), None);
        let theirs: DerSignature = other.sign(b"payload");
        assert_eq!(keys.verifying(b"payload", &theirs), None);
        let garbage = dir.path().join("garbage.pub");
        std::fs::write(
            &garbage,
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        let refused = TrustedKeys::read(&[garbage]).unwrap_err().to_string();
        assert!(
            refused.contains("garbage.pub") && refused.contains("P-256"),
            "{refused}"
        );
    }

    #[test]
    fn an_encrypted_or_foreign_private_key_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let encrypted = dir.path().join("cosign.key");
        std::fs::write(&encrypted, "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n").unwrap();
        let said = SignerKey::read(&encrypted).err().unwrap().to_string();
        assert!(
            said.contains("cosign.key") && said.contains("encrypted"),
            "{said}"
        );
        let foreign = dir.path().join("id_ed25519");
        std::fs::write(
            &foreign,
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAA\n-----END OPENSSH PRIVATE KEY-----\n",
        )
        .unwrap();
        let said = SignerKey::read(&foreign).err().unwrap().to_string();
        assert!(
            said.contains("id_ed25519") && said.contains("P-256"),
            "{said}"
        );
        for special in [Path::new("/dev/zero"), dir.path()] {
            let said = SignerKey::read(special).err().unwrap().to_string();
            assert!(said.contains("not a regular file"), "{said}");
            let said = TrustedKeys::read(&[special.to_owned()])
                .unwrap_err()
                .to_string();
            assert!(said.contains("not a regular file"), "{said}");
        }
    }
}
