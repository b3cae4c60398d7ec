//! Secrets encrypted for Git with SOPS and age: the sanitize step
//! `- sops: {age: [age1…]}`, where `redact-secrets` would stand. The
//! values under `data` and `stringData` (or the fields the step names)
//! become SOPS `ENC[AES256_GCM,…]` values, with SOPS's metadata and MAC, so
//! that `sops -d` (or any SOPS implementation) decrypts the file with an
//! age identity of the recipients.
//!
//! Host code, not a plugin: every plugin call is a fresh sandbox, and an
//! unchanged Secret must keep its old ciphertext (fresh IVs and a fresh
//! data key on every write would make every seed a commit). That takes a
//! key that outlives one call: the [`digest`] of the plaintext, keyed by a
//! secret of the process (set by the daemon from its state, so that it
//! holds across restarts and replicas), goes in the file as
//! `sops.plumbline_digest`, and the sink leaves a file whose digest did
//! not change as it is. Keyed, the digest says nothing of a low-entropy
//! value to a reader of the repository.
//!
//! The format is SOPS 3's (`sops.go`, `Tree.Encrypt`; `aes/cipher.go`):
//! - a random 32-byte data key, encrypted for each age recipient alone
//!   (an armored age file per recipient, under `sops.age`);
//! - each value under an encrypted field: AES-256-GCM with a 32-byte
//!   random IV, the value's path (its keys joined by `:`, and a trailing
//!   `:`) as additional data; empty strings stay empty;
//! - the MAC: SHA-512 over every value of the document (not the keys, not
//!   nulls), in the order written, as SOPS turns each into bytes; its
//!   upper-case hex is encrypted with the data key, `lastmodified` as
//!   additional data.
//!
//! The step fails closed whatever its chain's `failure`: an object that
//! cannot be encrypted is not written, never written in clear.

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{AesGcm, aes::Aes256};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256, Sha512};
use std::io::Write as _;
use std::str::FromStr as _;
use std::sync::OnceLock;

/// SOPS's AES-GCM: 32-byte IVs.
type Cipher = AesGcm<Aes256, U32>;

/// The fields encrypted when the step names none: a Secret's.
const SECRET_FIELDS: [&str; 2] = ["data", "stringData"];
/// The SOPS version the metadata says wrote the file: the format is 3.x's.
const VERSION: &str = "3.9.0";
/// Where the keyed digest of the plaintext goes in the `sops` block.
pub const DIGEST_FIELD: &str = "plumbline_digest";

/// The step as written in a configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSops {
    /// The age recipients (`age1…` public keys) who can decrypt.
    #[serde(default)]
    pub age: Vec<String>,
    /// The top-level fields whose values are encrypted (default `data`,
    /// `stringData`); a key of that name at any depth is, as SOPS's
    /// `encrypted_regex` does.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
}

/// Why an object could not be encrypted (it is not written then).
#[derive(Debug, thiserror::Error)]
pub enum SopsError {
    /// The object is not a JSON object.
    #[error("not a JSON object: {0}")]
    Object(String),
    /// It has a `sops` key of its own, which the metadata would replace.
    #[error("it has a top-level `sops` field already")]
    Taken,
    /// The system gave no randomness.
    #[error("no randomness for a data key: {0}")]
    Random(String),
    /// age or AES-GCM failed.
    #[error("encrypting: {0}")]
    Encrypt(String),
}

/// An age recipient as SOPS knows them: X25519 (`age1…`). age 0.13 calls
/// these legacy in favour of post-quantum ones, which neither SOPS nor
/// the age versions that decrypt for it read yet.
#[allow(deprecated)]
type Recipient = age::x25519::Recipient;

/// The step, loaded: its recipients checked.
#[derive(Clone)]
pub struct Sops {
    recipients: Vec<(String, Recipient)>,
    fields: Vec<String>,
}

impl std::fmt::Debug for Sops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let recipients: Vec<&str> = self.recipients.iter().map(|(r, _)| r.as_str()).collect();
        f.debug_struct("Sops")
            .field("recipients", &recipients)
            .field("fields", &self.fields)
            .finish()
    }
}

impl Sops {
    /// The step `raw` says, or why it cannot be: no recipients (nothing
    /// could decrypt what it writes), a recipient that is not an age key.
    pub fn new(raw: &RawSops) -> Result<Sops, String> {
        if raw.age.is_empty() {
            return Err(
                "`sops.age` names no recipient: with none, no one could decrypt what is written (give age1… public keys, from `age-keygen -y`)".into(),
            );
        }
        let mut recipients = Vec::new();
        for given in &raw.age {
            let text = given.trim();
            let recipient = Recipient::from_str(text)
                .map_err(|e| format!("`sops.age`: `{text}` is not an age recipient: {e}"))?;
            // Named twice, encrypted for once.
            if !recipients.iter().any(|(known, _)| known == text) {
                recipients.push((text.to_owned(), recipient));
            }
        }
        let fields: Vec<String> = match &raw.fields {
            Some(fields) => fields.iter().map(|f| f.trim().to_owned()).collect(),
            None => SECRET_FIELDS.iter().map(|f| (*f).to_owned()).collect(),
        };
        if fields.is_empty() || fields.iter().any(String::is_empty) {
            return Err("`sops.fields` needs at least one field, none of them empty".into());
        }
        Ok(Sops { recipients, fields })
    }

    /// The step's name in messages.
    pub fn name(&self) -> &str {
        "sops"
    }

    /// The age recipients, as given.
    pub fn recipients(&self) -> Vec<&str> {
        self.recipients.iter().map(|(r, _)| r.as_str()).collect()
    }

    /// `object` (JSON text) as a SOPS document (JSON text), its fields
    /// encrypted for the recipients.
    pub fn seal(&self, object: &str) -> Result<String, SopsError> {
        let mut value: Value =
            serde_json::from_str(object).map_err(|e| SopsError::Object(e.to_string()))?;
        let digest = self.digest(&value);
        let Value::Object(map) = &mut value else {
            return Err(SopsError::Object(
                "a JSON value that is not an object".into(),
            ));
        };
        if map.contains_key("sops") {
            return Err(SopsError::Taken);
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| SopsError::Random(e.to_string()))?;
        let mut sealing = Sealing {
            cipher: Cipher::new(&key.into()),
            fields: &self.fields,
            mac: Sha512::new(),
        };
        sealing.branch(map, &mut Vec::new())?;
        let modified = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let mac = hex::encode_upper(std::mem::take(&mut sealing.mac).finalize());
        let mac = sealing.encrypt_bytes(mac.as_bytes(), "str", &modified)?;
        let mut metadata = Map::new();
        metadata.insert("age".into(), Value::Array(self.wrap(&key)?));
        metadata.insert("encrypted_regex".into(), self.regex().into());
        metadata.insert("lastmodified".into(), modified.into());
        metadata.insert("mac".into(), mac.into());
        metadata.insert(DIGEST_FIELD.into(), digest.into());
        metadata.insert("version".into(), VERSION.into());
        map.insert("sops".into(), Value::Object(metadata));
        Ok(value.to_string())
    }

    /// The data key encrypted for each recipient alone, as SOPS keeps it.
    fn wrap(&self, key: &[u8; 32]) -> Result<Vec<Value>, SopsError> {
        let failed = |e: &dyn std::fmt::Display| SopsError::Encrypt(format!("age: {e}"));
        let mut entries = Vec::new();
        for (text, recipient) in &self.recipients {
            let encryptor =
                age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
                    .map_err(|e| failed(&e))?;
            let mut armored = Vec::new();
            let writer = age::armor::ArmoredWriter::wrap_output(
                &mut armored,
                age::armor::Format::AsciiArmor,
            )
            .map_err(|e| failed(&e))?;
            let mut writer = encryptor.wrap_output(writer).map_err(|e| failed(&e))?;
            writer.write_all(key).map_err(|e| failed(&e))?;
            writer
                .finish()
                .and_then(|armor| armor.finish())
                .map_err(|e| failed(&e))?;
            let enc = String::from_utf8(armored).map_err(|e| failed(&e))?;
            let mut entry = Map::new();
            entry.insert("enc".into(), enc.into());
            entry.insert("recipient".into(), text.clone().into());
            entries.push(Value::Object(entry));
        }
        Ok(entries)
    }

    /// SOPS's `encrypted_regex` for the fields: a path is encrypted when
    /// one of its keys is one of them.
    fn regex(&self) -> String {
        let escaped: Vec<String> = self.fields.iter().map(|f| regex::escape(f)).collect();
        format!("^({})$", escaped.join("|"))
    }

    /// The keyed digest of `object` as this step would encrypt it: the
    /// same plaintext, recipients and fields give the same digest, in
    /// this process and in any that shares its [`digest_key`].
    fn digest(&self, object: &Value) -> String {
        let mut mac = <Hmac<Sha256>>::new_from_slice(digest_key()).expect("any key length");
        mac.update(object.to_string().as_bytes());
        for (recipient, _) in &self.recipients {
            mac.update(b"\0");
            mac.update(recipient.as_bytes());
        }
        mac.update(b"\0\0");
        mac.update(self.fields.join("\0").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// One document's encryption under way: its cipher, and the MAC so far.
struct Sealing<'a> {
    cipher: Cipher,
    fields: &'a [String],
    mac: Sha512,
}

impl Sealing<'_> {
    fn branch(
        &mut self,
        map: &mut Map<String, Value>,
        path: &mut Vec<String>,
    ) -> Result<(), SopsError> {
        for (key, value) in map.iter_mut() {
            path.push(key.clone());
            self.value(value, path)?;
            path.pop();
        }
        Ok(())
    }

    /// A value at `path`: a list's items keep the list's path, as SOPS's
    /// walk does.
    fn value(&mut self, value: &mut Value, path: &mut Vec<String>) -> Result<(), SopsError> {
        let (plain, kind) = match value {
            Value::Object(map) => return self.branch(map, path),
            Value::Array(items) => {
                for item in items {
                    self.value(item, path)?;
                }
                return Ok(());
            }
            // SOPS's walk leaves nulls out, of the MAC too.
            Value::Null => return Ok(()),
            Value::String(text) => (text.clone(), "str"),
            Value::Bool(true) => ("True".to_owned(), "bool"),
            Value::Bool(false) => ("False".to_owned(), "bool"),
            Value::Number(n) if n.is_f64() => {
                (format!("{}", n.as_f64().unwrap_or_default()), "float")
            }
            Value::Number(n) => (n.to_string(), "int"),
        };
        self.mac.update(plain.as_bytes());
        let encrypted = path.iter().any(|key| self.fields.contains(key));
        if encrypted && !plain.is_empty() {
            let aad = format!("{}:", path.join(":"));
            *value = self.encrypt_bytes(plain.as_bytes(), kind, &aad)?.into();
        } else if encrypted {
            *value = Value::String(String::new());
        }
        Ok(())
    }

    /// `plain` as SOPS writes an encrypted value of type `kind`.
    fn encrypt_bytes(&self, plain: &[u8], kind: &str, aad: &str) -> Result<String, SopsError> {
        let mut iv = [0u8; 32];
        getrandom::fill(&mut iv).map_err(|e| SopsError::Random(e.to_string()))?;
        let sealed = self
            .cipher
            .encrypt(
                &iv.into(),
                Payload {
                    msg: plain,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|e| SopsError::Encrypt(format!("AES-GCM: {e}")))?;
        let (data, tag) = sealed.split_at(sealed.len() - 16);
        Ok(format!(
            "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
            STANDARD.encode(data),
            STANDARD.encode(iv),
            STANDARD.encode(tag)
        ))
    }
}

static DIGEST_KEY: OnceLock<[u8; 32]> = OnceLock::new();

/// Sets the key the plaintext digests are made with, once, before the
/// first object: the same key in every process that writes a repository
/// (the daemon keeps one in its state) lets an unchanged object keep its
/// file. Whether it was set by this call.
pub fn set_digest_key(key: [u8; 32]) -> bool {
    DIGEST_KEY.set(key).is_ok()
}

/// The digest key: as set, or else a random one for this process (its
/// files are then rewritten once by the next process).
fn digest_key() -> &'static [u8; 32] {
    DIGEST_KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        // Without randomness, seal() fails anyway on its data key.
        let _ = getrandom::fill(&mut key);
        key
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recipient whose identity no test needs: the real tools decrypt
    /// in the end-to-end tests.
    const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    fn step(fields: Option<Vec<String>>) -> Sops {
        Sops::new(&RawSops {
            age: vec![RECIPIENT.into()],
            fields,
        })
        .unwrap()
    }

    fn sealed(step: &Sops, object: &Value) -> Value {
        serde_json::from_str(&step.seal(&object.to_string()).unwrap()).unwrap()
    }

    fn secret() -> Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "shop", "labels": {"data": "x"}},
            "data": {"password": "aHVudGVyMg==", "empty": ""},
            "stringData": {"user": "admin"},
            "immutable": true,
        })
    }

    #[test]
    fn only_the_fields_values_are_encrypted_and_empty_ones_stay_empty() {
        let doc = sealed(&step(None), &secret());
        let enc = |v: &Value| {
            v.as_str()
                .is_some_and(|s| s.starts_with("ENC[AES256_GCM,data:"))
        };
        assert!(enc(&doc["data"]["password"]), "{doc}");
        assert!(enc(&doc["stringData"]["user"]), "{doc}");
        assert!(
            doc["data"]["password"]
                .as_str()
                .unwrap()
                .ends_with(",type:str]")
        );
        assert_eq!(doc["data"]["empty"], "");
        assert_eq!(doc["metadata"]["name"], "db");
        assert_eq!(doc["immutable"], true);
        // A key named like a field, at any depth, is encrypted: SOPS's
        // `encrypted_regex` reads every key of a value's path.
        assert!(enc(&doc["metadata"]["labels"]["data"]), "{doc}");
        let sops = &doc["sops"];
        assert_eq!(sops["encrypted_regex"], "^(data|stringData)$");
        assert_eq!(sops["age"][0]["recipient"], RECIPIENT);
        assert!(
            sops["age"][0]["enc"]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN AGE ENCRYPTED FILE-----")
        );
        assert!(enc(&sops["mac"]));
        assert!(!doc.to_string().contains("hunter2") && !doc.to_string().contains("aHVudGVyMg"));
    }

    #[test]
    fn the_same_plaintext_has_the_same_digest_and_new_ciphertext() {
        let sops = step(None);
        let (a, b) = (sealed(&sops, &secret()), sealed(&sops, &secret()));
        assert_eq!(a["sops"][DIGEST_FIELD], b["sops"][DIGEST_FIELD]);
        assert_ne!(a["data"]["password"], b["data"]["password"]);
        let mut changed = secret();
        changed["data"]["password"] = "b3RoZXI=".into();
        let c = sealed(&sops, &changed);
        assert_ne!(a["sops"][DIGEST_FIELD], c["sops"][DIGEST_FIELD]);
        let other_fields = sealed(&step(Some(vec!["data".into()])), &secret());
        assert_ne!(a["sops"][DIGEST_FIELD], other_fields["sops"][DIGEST_FIELD]);
    }

    #[test]
    fn no_recipient_or_a_wrong_one_is_refused_naming_it() {
        let none = Sops::new(&RawSops::default()).unwrap_err();
        assert!(none.contains("no recipient"), "{none}");
        let wrong = Sops::new(&RawSops {
            age: vec!["ssh-ed25519 AAAA".into()],
            fields: None,
        })
        .unwrap_err();
        assert!(
            wrong.contains("`ssh-ed25519 AAAA` is not an age recipient"),
            "{wrong}"
        );
        let empty = Sops::new(&RawSops {
            age: vec![RECIPIENT.into()],
            fields: Some(vec![" ".into()]),
        })
        .unwrap_err();
        assert!(empty.contains("sops.fields"), "{empty}");
        let twice = Sops::new(&RawSops {
            age: vec![RECIPIENT.into(), format!(" {RECIPIENT} ")],
            fields: None,
        })
        .unwrap();
        assert_eq!(
            twice.recipients(),
            [RECIPIENT],
            "named twice, encrypted for once"
        );
    }

    #[test]
    fn an_object_with_a_sops_field_or_not_an_object_is_refused() {
        let sops = step(None);
        assert!(matches!(sops.seal(r#"{"sops": 1}"#), Err(SopsError::Taken)));
        assert!(matches!(sops.seal("[1]"), Err(SopsError::Object(_))));
        assert!(matches!(sops.seal("{"), Err(SopsError::Object(_))));
    }

    #[test]
    fn values_of_other_types_say_their_type() {
        let object =
            serde_json::json!({"spec": {"port": 5432, "ratio": 0.5, "on": false, "gone": null}});
        let doc = sealed(&step(Some(vec!["spec".into()])), &object);
        let spec = &doc["spec"];
        assert!(spec["port"].as_str().unwrap().ends_with(",type:int]"));
        assert!(spec["ratio"].as_str().unwrap().ends_with(",type:float]"));
        assert!(spec["on"].as_str().unwrap().ends_with(",type:bool]"));
        assert!(spec["gone"].is_null(), "SOPS leaves nulls as they are");
    }
}
