//! CEL policies: compile errors, run-time errors and the deadline, each
//! reported with the policy's name and expression.

use plumbline::policy::cel::{CelLimits, CelPolicy, CelSource};
use plumbline::policy::chain::{Chain, FailureMode, Step};
use plumbline::policy::{Decision, PolicyError};
use std::time::Duration;

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
fn a_runaway_comprehension_is_stopped_at_the_deadline() {
    let limits = CelLimits {
        deadline: Duration::from_millis(50),
        max_input: 1 << 20,
    };
    let expression = "object.items.all(a, object.items.all(b, object.items.all(c, object.items.all(d, a + b + c + d >= 0))))";
    let p = policy("quartic", expression, Decision::Sanitize, limits).unwrap();
    let items: Vec<u32> = (0..200).collect();
    let object = serde_json::json!({ "items": items }).to_string();
    let error = p.test(&[("object", &object)]).unwrap_err();
    assert!(matches!(error, PolicyError::CelDeadline { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("CEL policy `quartic`: expression `object.items.all("),
        "{error}"
    );
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

/// Eight nested `map`s over ten items: 10^8 values, which natively grew to
/// 2.3 GB in under a minute and never stopped.
fn eight_nested_maps() -> String {
    let vars = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let mut expression = vars.join(" + ");
    for var in vars.iter().rev() {
        expression = format!("object.items.map({var}, {expression})");
    }
    format!("{expression}.size() > 0")
}

fn ten_items() -> String {
    serde_json::json!({ "items": (0..10).collect::<Vec<u32>>() }).to_string()
}

/// The resident memory of this process, from /proc/self/status.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB");
    kib << 10
}

fn is_stopped_runaway(error: &PolicyError) -> bool {
    match error {
        PolicyError::CelDeadline { policy, .. } => policy == "runaway",
        PolicyError::CelRuntime {
            policy, message, ..
        } => policy == "runaway" && message.starts_with("stopped"),
        _ => false,
    }
}

#[test]
fn a_runaway_cel_expression_is_stopped_and_its_memory_returned() {
    let limits = CelLimits {
        deadline: Duration::from_millis(200),
        max_input: 1 << 20,
    };
    let runaway = policy("runaway", &eight_nested_maps(), Decision::Sanitize, limits).unwrap();
    assert!(runaway.is_sandboxed());
    let object = ten_items();
    // The first evaluation builds the sandbox; measure from there.
    let error = runaway.test(&[("object", &object)]).unwrap_err();
    assert!(is_stopped_runaway(&error), "{error}");
    let before = resident_bytes();
    let mut highest = before;
    for _ in 0..12 {
        let error = runaway.test(&[("object", &object)]).unwrap_err();
        assert!(is_stopped_runaway(&error), "{error}");
        highest = highest.max(resident_bytes());
    }
    // Each evaluation may hold its 64 MiB cap while it runs; none keeps it,
    // and nothing keeps running once it has been stopped.
    let grown = highest.saturating_sub(before);
    assert!(
        grown < 256 << 20,
        "resident memory grew by {} MiB over 12 stopped runaways",
        grown >> 20
    );
}

#[test]
fn runaway_cel_evaluations_leave_other_policies_unaffected() {
    let limits = CelLimits {
        deadline: Duration::from_millis(50),
        max_input: 1 << 20,
    };
    let runaway = policy("runaway", &eight_nested_maps(), Decision::Sanitize, limits).unwrap();
    let other = policy(
        "all-small",
        "object.items.all(x, x < 10) && object.items.exists(x, x == 9)",
        Decision::Sanitize,
        limits,
    )
    .unwrap();
    let object = ten_items();
    // Natively, after four abandoned runaways every expression with a
    // comprehension failed at once with a false "ran past its deadline".
    for _ in 0..10 {
        let error = runaway.test(&[("object", &object)]).unwrap_err();
        assert!(is_stopped_runaway(&error), "{error}");
        assert!(other.test(&[("object", &object)]).unwrap());
    }
    let chain = Chain::new(
        Decision::Sanitize,
        FailureMode::Closed,
        vec![Step::Cel(other)],
    );
    assert!(chain.sanitize(&object).unwrap().is_some());
}

#[test]
fn a_non_boolean_cel_condition_is_refused_at_load() {
    let error = policy("sum", "1 + 1", Decision::Match, CelLimits::default()).unwrap_err();
    assert!(matches!(error, PolicyError::CelCheck { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "CEL policy `sum` (policies/x.yaml): expression `1 + 1`: its result is of type int, \
         not bool; a match policy must evaluate to a bool"
    );
}
