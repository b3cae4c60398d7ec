//! A workflow image's schema, extracted from a real registry (Debian's
//! `docker-registry`), from images the tests build: the top layer that
//! holds it wins, a whiteout hides it, and the layers below are never
//! downloaded.

use crate::support::{Registry, python_in};
use plumbline::catalog::extract::{
    ExtractError, SCHEMA_ARTIFACT_TYPE, SCHEMA_PATH_LABEL, schema_of,
};
use plumbline::oci::{Artifact, Blob, OciClient, OciConfig};
use plumbline_catalog::layers::{Caps, DEFAULT_PATHS};

pub(crate) fn client(registry: &Registry) -> OciClient {
    OciClient::new(OciConfig {
        insecure: vec![registry.host()],
        ..OciConfig::default()
    })
    .unwrap()
}

pub(crate) use crate::registry::layer;

/// An image of `layers`, bottom first.
pub(crate) fn image(layers: Vec<Blob>) -> Artifact {
    labelled(layers, r#"{"io.kubernaut.workflow":"true"}"#)
}

/// An image of `layers` whose config has `labels` (JSON).
fn labelled(layers: Vec<Blob>, labels: &str) -> Artifact {
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{labels}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    );
    Artifact {
        digest: None,
        config: Blob {
            media_type: "application/vnd.oci.image.config.v1+json".into(),
            data: config.into_bytes(),
            annotations: Default::default(),
        },
        layers,
    }
}

pub(crate) const SCHEMA: &[u8] = b"metadata: {workflowId: restart-pod, version: 1.0.0, description: {what: x}}\nexecution: {engine: job}\n";

#[test]
fn the_schema_comes_from_the_top_layer_holding_it_and_lower_layers_are_not_fetched() {
    let registry = Registry::start();
    let client = client(&registry);
    // A base far larger than the schema, an old schema, the new one, and
    // a layer above that holds neither.
    let noise: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let base = layer(&[("usr/lib/big.bin", &noise)]);
    let base_digest = format!("sha256:{}", sha256(&base.data));
    let layers = vec![
        base,
        layer(&[("workflow-schema.yaml", b"old")]),
        layer(&[("workflow-schema.yaml", SCHEMA)]),
        layer(&[("app/run.sh", b"#!/bin/sh\n")]),
    ];
    let reference = format!("{}/workflows/restart:1.0.0", registry.host());
    let pushed = client.push(&reference, &image(layers)).unwrap();
    std::fs::remove_file(registry.blob_path(&base_digest)).unwrap();
    // The base's blob is gone from the registry: fetching it would fail.
    let found = schema_of(&client, &reference, DEFAULT_PATHS, Caps::default()).unwrap();
    assert_eq!(found.digest, pushed);
    assert_eq!(
        (found.path.as_str(), found.bytes.as_slice()),
        ("/workflow-schema.yaml", SCHEMA)
    );
    assert_eq!(
        found.layers_read, 2,
        "the top two, not the old schema's or the base"
    );
    let workflow = plumbline::catalog::read(std::str::from_utf8(&found.bytes).unwrap()).unwrap();
    assert_eq!(workflow.workflow_id, "restart-pod");
}

#[test]
fn a_whited_out_schema_is_not_found_and_a_registry_that_is_down_is_said() {
    let mut registry = Registry::start();
    let client = client(&registry);
    let layers = vec![
        layer(&[("workflow-schema.yaml", SCHEMA)]),
        layer(&[(".wh.workflow-schema.yaml", b"")]),
    ];
    let reference = format!("{}/workflows/gone:1.0.0", registry.host());
    client.push(&reference, &image(layers)).unwrap();
    let error = schema_of(&client, &reference, DEFAULT_PATHS, Caps::default()).unwrap_err();
    assert!(matches!(error, ExtractError::NotFound { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("holds none of /workflow-schema.yaml"),
        "{error}"
    );
    registry.stop();
    let error = schema_of(&client, &reference, DEFAULT_PATHS, Caps::default()).unwrap_err();
    assert!(matches!(error, ExtractError::Registry { .. }), "{error}");
    assert!(error.to_string().starts_with(&reference), "{error}");
}

#[test]
fn a_schema_attached_as_an_artifact_wins_over_the_layers_and_a_label_names_a_path() {
    let registry = Registry::start();
    let client = client(&registry);
    let reference = format!("{}/workflows/attached:1.0.0", registry.host());
    let layers = vec![layer(&[("workflow-schema.yaml", SCHEMA)])];
    let pushed = client.push(&reference, &image(layers)).unwrap();
    let attached_schema = String::from_utf8_lossy(SCHEMA).replace("1.0.0", "1.0.1");
    // Attached by ORAS as `oras attach` does on a registry without the
    // referrers API (distribution 2.x): the artifact names the image as
    // its subject, and the `sha256-<hex>` tag lists it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("workflow-schema.yaml"), &attached_schema).unwrap();
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    python_in(
        dir.path(),
        &format!(
            r#"import json, requests, oras.client, oras.oci
host, repo, subject, kind = '{host}', 'workflows/attached', '{pushed}', '{SCHEMA_ARTIFACT_TYPE}'
manifest = 'application/vnd.oci.image.manifest.v1+json'
base = f'http://{{host}}/v2/{{repo}}/manifests/'
image = requests.get(base + subject, headers={{'Accept': manifest}})
c = oras.client.OrasClient(hostname=host, insecure=True)
c.push(target=f'{{host}}/{{repo}}:schema', files=['workflow-schema.yaml:application/yaml'],
       manifest_config=f'config.json:{{kind}}', quiet=True,
       subject=oras.oci.Subject(mediaType=manifest, digest=subject, size=len(image.content)))
art = requests.get(base + 'schema', headers={{'Accept': manifest}})
index = {{'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.index.v1+json',
  'manifests': [{{'mediaType': manifest, 'digest': art.headers['Docker-Content-Digest'],
                 'size': len(art.content), 'artifactType': kind}}]}}
put = requests.put(base + subject.replace(':', '-'), data=json.dumps(index),
                   headers={{'Content-Type': 'application/vnd.oci.image.index.v1+json'}})
assert put.status_code == 201, put.text
"#,
            host = registry.host()
        ),
    );
    let found = schema_of(&client, &reference, DEFAULT_PATHS, Caps::default()).unwrap();
    assert_eq!(found.bytes, attached_schema.as_bytes());
    assert!(found.path.starts_with("artifact sha256:"), "{}", found.path);
    assert_eq!((found.digest, found.layers_read), (pushed, 0));

    // The image's label names where its schema is.
    let reference = format!("{}/workflows/labelled:1.0.0", registry.host());
    let layers = vec![layer(&[("opt/wf/schema.yaml", SCHEMA)])];
    let label = format!(r#"{{"{SCHEMA_PATH_LABEL}":"/opt/wf/schema.yaml"}}"#);
    client.push(&reference, &labelled(layers, &label)).unwrap();
    let found = schema_of(&client, &reference, DEFAULT_PATHS, Caps::default()).unwrap();
    assert_eq!(found.path, "/opt/wf/schema.yaml");
    assert_eq!(found.labels[SCHEMA_PATH_LABEL], "/opt/wf/schema.yaml");
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn a_layer_whose_declared_size_passes_the_read_cap_is_not_downloaded() {
    let registry = Registry::start();
    let client = client(&registry);
    let mut x = 88_172_645_463_325_252u64;
    let noise: Vec<u8> = (0..64 << 10)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let reference = format!("{}/workflows/big:1.0.0", registry.host());
    let layers = vec![
        layer(&[("workflow-schema.yaml", SCHEMA)]),
        layer(&[("app/big.bin", &noise)]),
    ];
    client.push(&reference, &image(layers)).unwrap();
    let caps = Caps {
        max_read_bytes: 32 << 10,
        ..Caps::default()
    };
    let error = schema_of(&client, &reference, DEFAULT_PATHS, caps).unwrap_err();
    let said = error.to_string();
    assert!(
        matches!(
            &error,
            ExtractError::Layers {
                source: plumbline_catalog::layers::LayerError::Cap(_),
                ..
            }
        ),
        "{said}"
    );
    assert!(said.contains("it was not downloaded"), "{said}");
}
