//! CEL policies: compile errors, run-time errors and the deadline, each
//! reported with the policy's name and expression.

use plumbline::policy::cel::{CelLimits, CelPolicy, CelSource};
use plumbline::policy::chain::{Chain, FailureMode, Step};
use plumbline::policy::{Decision, PolicyError};
use std::time::{Duration, Instant};

fn policy(
    name: &str,
    expression: &str,
    decision: Decision,
    limits: CelLimits,
) -> Result<CelPolicy, PolicyError> {
    CelPolicy::compile(
        CelSource {
            name: name.into(),
            expression: expression.into(),
            message: Some(format!("{name} says no")),
            path: Some("/properties".into()),
            file: Some("policies/x.yaml".into()),
        },
        decision,
        limits,
    )
}

#[test]
fn compile_error_names_the_policy_the_file_and_the_expression() {
    let error = policy(
        "broken",
        "object.metadata.name ==",
        Decision::Sanitize,
        CelLimits::default(),
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, PolicyError::CelCompile { .. }), "{message}");
    assert!(
        message.starts_with("CEL policy `broken` (policies/x.yaml): expression `object.metadata.name ==` does not compile"),
        "{message}"
    );
}

#[test]
fn unknown_names_are_found_at_load_not_at_run_time() {
    let error = policy(
        "typo",
        "objetc.kind == 'Secret'",
        Decision::Sanitize,
        CelLimits::default(),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("unknown variable `objetc`; a sanitize policy can use `object`"),
        "{error}"
    );
    let error = policy(
        "fn",
        "object.kind.lowerAsci() == 'x'",
        Decision::Sanitize,
        CelLimits::default(),
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("unknown function `lowerAsci`"),
        "{error}"
    );
    assert!(
        policy(
            "ok",
            "object.kind.lowerAscii() == 'secret'",
            Decision::Sanitize,
            CelLimits::default()
        )
        .is_ok()
    );
}

#[test]
fn runtime_error_names_the_policy_and_the_expression() {
    let p = policy(
        "missing-field",
        "object.spec.replicas > 1",
        Decision::Sanitize,
        CelLimits::default(),
    )
    .unwrap();
    let error = p
        .test(&[("object", r#"{"kind":"ConfigMap"}"#)])
        .unwrap_err();
    assert!(matches!(error, PolicyError::CelRuntime { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "CEL policy `missing-field`: expression `object.spec.replicas > 1` failed: No such key: spec"
    );
    let p = policy(
        "not-bool",
        "object.kind",
        Decision::Sanitize,
        CelLimits::default(),
    )
    .unwrap();
    assert!(
        p.test(&[("object", r#"{"kind":"A"}"#)])
            .unwrap_err()
            .to_string()
            .contains("not a bool")
    );
}

#[test]
fn a_runaway_comprehension_is_abandoned_at_the_deadline() {
    let limits = CelLimits {
        deadline: Duration::from_millis(50),
        max_input: 1 << 20,
    };
    let expression = "object.items.all(a, object.items.all(b, object.items.all(c, object.items.all(d, a + b + c + d >= 0))))";
    let p = policy("quartic", expression, Decision::Sanitize, limits).unwrap();
    let items: Vec<u32> = (0..200).collect();
    let object = serde_json::json!({ "items": items }).to_string();
    let started = Instant::now();
    let error = p.test(&[("object", &object)]).unwrap_err();
    assert!(matches!(error, PolicyError::CelDeadline { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("CEL policy `quartic`: expression `object.items.all("),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_millis(500));
    // The host keeps serving other policies.
    let quick = policy(
        "quick",
        "object.items.size() > 1",
        Decision::Sanitize,
        limits,
    )
    .unwrap();
    assert!(quick.test(&[("object", &object)]).unwrap());
}

#[test]
fn input_over_the_limit_is_refused() {
    let limits = CelLimits {
        deadline: Duration::from_millis(50),
        max_input: 64,
    };
    let p = policy("small", "object.kind == 'A'", Decision::Sanitize, limits).unwrap();
    let big = format!(r#"{{"kind":"A","pad":"{}"}}"#, "x".repeat(100));
    assert!(matches!(
        p.test(&[("object", &big)]),
        Err(PolicyError::CelInputTooLarge { .. })
    ));
}

#[test]
fn cel_stands_in_every_chain() {
    let limits = CelLimits::default();
    let keep = policy(
        "keep-team",
        "object.metadata.labels.team == 'payments'",
        Decision::Sanitize,
        limits,
    )
    .unwrap();
    let chain = Chain::new(
        Decision::Sanitize,
        FailureMode::Closed,
        vec![Step::Cel(keep)],
    );
    let payments = r#"{"metadata":{"labels":{"team":"payments"}}}"#;
    assert_eq!(chain.sanitize(payments).unwrap().as_deref(), Some(payments));
    assert_eq!(
        chain
            .sanitize(r#"{"metadata":{"labels":{"team":"search"}}}"#)
            .unwrap(),
        None
    );

    let gate = policy(
        "active",
        "request.catalog.lifecycle == 'active'",
        Decision::Gate,
        limits,
    )
    .unwrap();
    let chain = Chain::new(Decision::Gate, FailureMode::Closed, vec![Step::Cel(gate)]);
    let verdict = chain.decide(r#"{"catalog":{"lifecycle":"disabled"}}"#);
    assert!(
        matches!(verdict, plumbline::policy::bindings::Verdict::Deny(ref r) if r == &["active says no"]),
        "{verdict:?}"
    );

    let rule = policy(
        "has-params",
        "has(schema.properties)",
        Decision::Schema,
        limits,
    )
    .unwrap();
    let chain = Chain::new(Decision::Schema, FailureMode::Closed, vec![Step::Cel(rule)]);
    let violations = chain.check(r#"{"type":"object"}"#, "{}");
    assert_eq!(
        (violations[0].path.as_str(), violations[0].message.as_str()),
        ("/properties", "has-params says no")
    );

    let condition = policy(
        "prod-only",
        "event.namespace == 'prod' && object.kind == 'ConfigMap'",
        Decision::Match,
        limits,
    )
    .unwrap();
    let chain = Chain::new(
        Decision::Match,
        FailureMode::Closed,
        vec![Step::Cel(condition)],
    );
    let mut event = crate::default_plugins::event("configmaps", Some("prod"));
    assert_eq!(
        chain.matches(&event, &["{}".into(), "{}".into()]).unwrap(),
        [0, 1]
    );
    event.target.namespace = Some("dev".into());
    assert!(chain.matches(&event, &["{}".into()]).unwrap().is_empty());
}
