//! Content digests, the way OCI names content: one spelling for the
//! policy cache, the bundle store and the registry client; and short
//! digests, for state held per object that only needs to tell two texts
//! apart.

use sha2::{Digest as _, Sha256};

/// The SHA-256 of `bytes` as `sha256:<hex>`.
pub fn content_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A digest that tells texts apart: SHA-256 cut to 128 bits, as sure as
/// the whole for anything short of a deliberate 2^64-step search, in half
/// the room. For state held per object (a folder of 100,000 objects holds
/// 100,000 of them), never for naming content.
pub type ShortDigest = [u8; 16];

/// The [`ShortDigest`] of `bytes`.
pub fn short_digest(bytes: &[u8]) -> ShortDigest {
    let whole = Sha256::digest(bytes);
    let mut digest = ShortDigest::default();
    digest.copy_from_slice(&whole[..16]);
    digest
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_digests_tell_texts_apart() {
        assert_eq!(super::short_digest(b"{}"), super::short_digest(b"{}"));
        assert_ne!(super::short_digest(b"a"), super::short_digest(b"b"));
    }

    #[test]
    fn digests_are_spelt_as_oci_spells_them() {
        assert_eq!(
            super::content_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
