//! SOPS files whose plaintext did not change keep their ciphertext.
//!
//! Every encryption draws a fresh data key and fresh IVs, so the same
//! Secret never encrypts to the same bytes twice: written as it comes,
//! every seed would commit every encrypted Secret again. The `sops` step
//! puts a keyed digest of the plaintext in the file
//! (`sops.plumbline_digest`); a file whose digest is the one the branch
//! holds already is left as it is.

use crate::policy::sops::DIGEST_FIELD;

/// Whether `new` encrypts what the branch's file at the same path (read
/// by `old`, only for a file that carries a digest: every other write
/// skips the read) does: both carry the same plaintext digest.
pub fn unchanged(old: impl FnOnce() -> Option<Vec<u8>>, new: &str) -> bool {
    let Some(digest) = digest(new) else {
        return false;
    };
    let Some(old) = old() else {
        return false;
    };
    let marker = format!("{DIGEST_FIELD}: {digest}");
    old.windows(marker.len()).any(|w| w == marker.as_bytes())
}

/// The plaintext digest `text` carries, if it is a SOPS file of the
/// `sops` step: 64 hex digits after the field's name.
fn digest(text: &str) -> Option<&str> {
    let at = text.find(&format!("{DIGEST_FIELD}: "))? + DIGEST_FIELD.len() + 2;
    let digest = text.get(at..at + 64)?;
    digest
        .bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then_some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

    fn file(digest: &str, ciphertext: &str) -> String {
        format!("data:\n  a: ENC[{ciphertext}]\nsops:\n  plumbline_digest: {digest}\n")
    }

    #[test]
    fn the_same_digest_keeps_the_old_file_and_another_does_not() {
        let old = file(A, "one").into_bytes();
        assert!(unchanged(|| Some(old.clone()), &file(A, "two")));
        assert!(!unchanged(|| Some(old), &file(B, "two")));
        assert!(!unchanged(|| None, &file(A, "two")), "no file yet");
    }

    #[test]
    fn a_file_without_a_digest_is_written_as_it_comes() {
        let plain = "data:\n  a: b\n".to_owned();
        assert!(!unchanged(
            || panic!("read for a file without a digest"),
            &plain
        ));
        let short = format!("{DIGEST_FIELD}: abc\n");
        assert!(!unchanged(|| Some(short.clone().into_bytes()), &short));
    }
}
