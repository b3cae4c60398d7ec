//! The Helm chart (`charts/plumbline`), with the real helm 4 that
//! `scripts/test` unpacks: lint, every shape rendered and validated with
//! `kubernetes-validate --strict` against Kubernetes' own schemas, bad
//! values refused with the key named, the CRDs current, and the rendered
//! daemon's arguments read by the real binary.

use crate::support::{binary, root};
use std::process::{Command, Output};

fn chart() -> String {
    root()
        .join("charts/plumbline")
        .to_string_lossy()
        .into_owned()
}

fn helm(args: &[&str]) -> Output {
    Command::new(root().join("target/test-tools/helm/helm"))
        .args(args)
        .output()
        .expect("helm (scripts/test unpacks it)")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The chart rendered with `sets` (`key=value`).
fn render(sets: &[&str]) -> String {
    let chart = chart();
    let mut args = vec![
        "template",
        "plumbline",
        chart.as_str(),
        "--namespace",
        "mirror",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = helm(&args);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The shapes the chart installs: the default, the NATS one with the gate,
/// and certificates from cert-manager with signed commits.
const SHAPES: [&[&str]; 3] = [
    &[],
    &[
        "nats.enabled=true",
        "nats.install=true",
        "webhooks.gate=true",
        "replicas=3",
    ],
    &[
        "certificates.certManager=true",
        "rbac.gitSecrets={git-token}",
        "signing.secret=plumbline-signing",
    ],
];

#[test]
fn the_chart_lints_strictly_and_every_shape_passes_kubernetes_validation() {
    let chart = chart();
    for sets in SHAPES {
        let mut args = vec!["lint", "--strict", chart.as_str()];
        for set in sets {
            args.extend(["--set", set]);
        }
        let out = helm(&args);
        assert!(out.status.success(), "{sets:?}: {}", text(&out));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rendered.yaml");
        std::fs::write(&file, render(sets)).unwrap();
        let out = Command::new(root().join("target/test-tools/bin/kubernetes-validate"))
            .args(["--strict", "--quiet"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{sets:?}: {}", text(&out));
        let said = text(&out);
        assert!(!said.contains("ERROR"), "{sets:?}: {said}");
    }
    // The NATS shape points the daemon at the cluster it installs.
    let nats = render(SHAPES[1]);
    assert!(nats.contains("kind: StatefulSet"), "{nats}");
    assert!(
        nats.contains("--nats=nats://plumbline-nats-0.plumbline-nats.mirror.svc:4222,"),
        "{nats}"
    );
    assert!(nats.contains("name: gate.plumbline.dev"));
    // Three pods share the queue there; none keeps a volume of its own.
    assert!(nats.contains("replicas: 3"), "{nats}");
    assert!(!nats.contains("PersistentVolumeClaim"), "{nats}");
    assert!(!nats.contains("Recreate"), "{nats}");
    let alone = render(&[]);
    assert!(alone.contains("claimName: plumbline-state"), "{alone}");
    // Least privilege: no Secret is readable but the ones named.
    let default = render(&[]);
    assert!(!default.contains("secrets"), "{default}");
    let named = render(SHAPES[2]);
    assert!(named.contains(r#"resourceNames: ["git-token"]"#), "{named}");
    // The signing key is mounted from its Secret, readable by the pod's group only.
    assert!(
        named.contains("--signing-key=/etc/plumbline/signing/key"),
        "{named}"
    );
    assert!(named.contains("secretName: plumbline-signing"), "{named}");
    assert!(!default.contains("--signing-key"), "{default}");
}

#[test]
fn bad_values_are_refused_naming_the_key() {
    let chart = chart();
    for (set, named) in [
        ("cataloq.enabled=true", "cataloq"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("replicas=2", "replicas"),
        ("nats.enabled=true", "/nats"),
        ("webhooks.timeoutSeconds=60", "timeoutSeconds"),
        ("signing.keyFile=/k", "keyFile"),
    ] {
        let out = helm(&["template", "plumbline", chart.as_str(), "--set", set]);
        let said = text(&out);
        assert!(!out.status.success(), "{set} was taken");
        assert!(said.contains(named), "{set}: {said}");
    }
}

#[test]
fn the_charts_crds_are_what_plumbline_crds_prints() {
    let out = Command::new(binary()).arg("crds").output().unwrap();
    assert!(out.status.success());
    let chart = std::fs::read(root().join("charts/plumbline/crds/plumbline.yaml")).unwrap();
    assert!(
        chart == out.stdout,
        "charts/plumbline/crds/plumbline.yaml is stale: plumbline crds > charts/plumbline/crds/plumbline.yaml"
    );
}

/// The arguments the chart gives the daemon, in every shape, are ones the
/// real binary reads: it gets as far as its TLS files or signing key
/// (absent here), not a usage error.
#[test]
fn the_rendered_daemon_arguments_are_read_by_the_binary() {
    for sets in SHAPES {
        let rendered = render(sets);
        let deployment = rendered
            .split("\n---")
            .find(|doc| doc.contains("kind: Deployment"))
            .unwrap();
        let args: Vec<String> = deployment
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("args:"))
            .skip(1)
            .take_while(|l| l.trim_start().starts_with("- "))
            .map(|l| l.trim_start()[2..].trim_matches('"').to_owned())
            .collect();
        assert_eq!(args[0], "run", "{deployment}");
        let out = Command::new(binary())
            .args(&args)
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", "1")
            .output()
            .unwrap();
        let said = text(&out);
        assert_ne!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(
            said.contains("/etc/plumbline/tls/tls.crt")
                || said.contains("/etc/plumbline/signing/key"),
            "{args:?}: {said}"
        );
    }
}
