//! Registry access against a real registry: what is pushed is pulled back
//! byte for byte, a blob that does not match its digest is refused, and a
//! registry that is down is a clear error.

use crate::support::{Registry, registry_with_token_server, registry_with_user};
use plumbline::oci::{Artifact, Blob, Credentials, OciClient, OciConfig};
use std::collections::BTreeMap;

fn client(registry: &Registry) -> OciClient {
    OciClient::new(OciConfig {
        insecure: vec![registry.host()],
        ..OciConfig::default()
    })
    .unwrap()
}

fn blob(media_type: &str, data: &[u8], title: Option<&str>) -> Blob {
    let mut annotations = BTreeMap::new();
    if let Some(title) = title {
        annotations.insert("org.opencontainers.image.title".into(), title.into());
    }
    Blob {
        media_type: media_type.into(),
        data: data.to_vec(),
        annotations,
    }
}

fn artifact() -> Artifact {
    Artifact {
        digest: None,
        config: blob(
            "application/vnd.plumbline.test.config.v1+json",
            br#"{"plugins":[]}"#,
            None,
        ),
        layers: vec![
            blob(
                "application/wasm",
                b"\0asm\x0d\0\x01\0component bytes",
                Some("neat.wasm"),
            ),
            blob(
                "text/plain",
                b"object.metadata.name != ''\n",
                Some("named.cel"),
            ),
        ],
    }
}

#[test]
fn an_artifact_pushed_is_pulled_back_byte_for_byte_and_tags_resolve() {
    let registry = Registry::start();
    let client = client(&registry);
    let reference = format!("{}/plumbline/bundles:v1", registry.host());
    let digest = client.push(&reference, &artifact()).unwrap();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(client.resolve(&reference).unwrap(), digest);

    let pulled = client.pull(&reference).unwrap();
    assert_eq!(pulled.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(
        Artifact {
            digest: None,
            ..pulled
        },
        artifact()
    );

    // By digest, the same; a new push to the tag moves it.
    let by_digest = format!("{}/plumbline/bundles@{digest}", registry.host());
    assert_eq!(client.pull(&by_digest).unwrap().layers, artifact().layers);
    let mut changed = artifact();
    changed.layers[1].data = b"true\n".to_vec();
    let moved = client.push(&reference, &changed).unwrap();
    assert_ne!(moved, digest);
    assert_eq!(client.resolve(&reference).unwrap(), moved);
    assert_eq!(client.pull(&by_digest).unwrap().layers, artifact().layers);
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() {
    let registry = Registry::start();
    let client = client(&registry);
    let reference = format!("{}/plumbline/bundles:tampered", registry.host());
    let pushed = artifact();
    client.push(&reference, &pushed).unwrap();
    // Change the stored bytes of the first layer behind the registry's back.
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            &pushed.layers[0].data
        ))
    );
    std::fs::write(
        registry.blob_path(&digest),
        b"\0asm\x0d\0\x01\0evil bytes!!!!!",
    )
    .unwrap();
    let error = client.pull(&reference).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("pulling {reference} blob {digest}: ")),
        "{error}"
    );
    assert!(error.to_lowercase().contains("digest"), "{error}");
}

#[test]
fn basic_auth_uses_the_docker_config_credentials_and_never_shows_them() {
    let (registry, _htpasswd) = registry_with_user("alice", "s3cret-pw");
    let reference = format!("{}/plumbline/private:v1", registry.host());
    let with = |config: &str| {
        OciClient::new(OciConfig {
            insecure: vec![registry.host()],
            credentials: Credentials::from_docker_config_text(config).unwrap(),
        })
        .unwrap()
    };
    let auth = |user_password: &str| {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_password);
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{encoded}"}}}}}}"#,
            registry.host()
        )
    };

    let anonymous = client(&registry).push(&reference, &artifact());
    let error = anonymous.unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("pushing {reference}: ")),
        "{error}"
    );
    assert!(error.to_lowercase().contains("unauthorized"), "{error}");

    let wrong = with(&auth("alice:not-the-pw")).push(&reference, &artifact());
    let error = wrong.unwrap_err().to_string();
    assert!(error.to_lowercase().contains("unauthorized"), "{error}");
    assert!(!error.contains("not-the-pw"), "{error}");

    let alice = with(&auth("alice:s3cret-pw"));
    let digest = alice.push(&reference, &artifact()).unwrap();
    assert_eq!(alice.resolve(&reference).unwrap(), digest);
    assert_eq!(alice.pull(&reference).unwrap().layers, artifact().layers);
    let split = format!(
        r#"{{"auths": {{"http://{}": {{"username": "alice", "password": "s3cret-pw"}}}}}}"#,
        registry.host()
    );
    assert_eq!(with(&split).resolve(&reference).unwrap(), digest);
    assert!(
        !format!(
            "{:?}",
            Credentials::from_docker_config_text(&split).unwrap()
        )
        .contains("s3cret")
    );
}

#[test]
fn a_registry_that_is_down_is_a_clear_error() {
    let mut registry = Registry::start();
    let client = client(&registry);
    registry.stop();
    let reference = format!("{}/plumbline/bundles:v1", registry.host());
    let error = client.resolve(&reference).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("resolving {reference}: ")),
        "{error}"
    );
    let error = client.pull("not a reference").unwrap_err().to_string();
    assert!(
        error.contains("`not a reference` is not a valid image reference"),
        "{error}"
    );
}

#[test]
fn a_large_blob_streams_in_chunks_and_is_verified() {
    let registry = Registry::start();
    let client = client(&registry);
    let reference = format!("{}/plumbline/large:v1", registry.host());
    let mut large = artifact();
    // 24 MiB that do not compress: a blob an image layer could be.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    large.layers[0].data = (0..24 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    client.push(&reference, &large).unwrap();
    let manifest = client.manifest(&reference).unwrap();
    let layer = &manifest.layers[0];
    assert_eq!(layer.size, 24 << 20);

    // Into a file, never whole in memory: many chunks, the right bytes.
    let file = tempfile::NamedTempFile::new().unwrap();
    let (mut chunks, mut bytes) = (0u64, 0u64);
    client
        .pull_blob(&reference, layer, &mut file.as_file(), &mut |n| {
            chunks += 1;
            bytes += n;
        })
        .unwrap();
    assert_eq!(bytes, 24 << 20);
    assert!(chunks > 16, "streamed in {chunks} chunk(s)");
    assert_eq!(std::fs::read(file.path()).unwrap(), large.layers[0].data);
}

#[test]
fn bearer_tokens_come_from_the_registrys_token_server() {
    let (registry, _tokens) = registry_with_token_server("alice", "s3cret-pw");
    let reference = format!("{}/plumbline/private:v1", registry.host());
    let with = |user_password: Option<&str>| {
        let mut credentials = Credentials::default();
        if let Some((user, password)) = user_password.and_then(|p| p.split_once(':')) {
            credentials.insert(&registry.host(), user, password);
        }
        OciClient::new(OciConfig {
            insecure: vec![registry.host()],
            credentials,
        })
        .unwrap()
    };
    let error = with(None)
        .push(&reference, &artifact())
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(&format!("pushing {reference}: ")),
        "{error}"
    );
    let error = with(Some("alice:wrong"))
        .resolve(&reference)
        .unwrap_err()
        .to_string();
    assert!(!error.contains("wrong"), "{error}");

    let alice = with(Some("alice:s3cret-pw"));
    let digest = alice.push(&reference, &artifact()).unwrap();
    assert_eq!(alice.resolve(&reference).unwrap(), digest);
    assert_eq!(alice.pull(&reference).unwrap().layers, artifact().layers);
}
