//! Content digests, the way OCI names content: one spelling for the
//! policy cache, the bundle store and the registry client.

use sha2::{Digest as _, Sha256};

/// The SHA-256 of `bytes` as `sha256:<hex>`.
pub fn content_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn digests_are_spelt_as_oci_spells_them() {
        assert_eq!(
            super::content_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
