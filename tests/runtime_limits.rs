//! The runtime's limits, tested against real misbehaving components.

use crate::support::{load, runtime, try_load};
use plumbline::policy::capability::{Grants, Preopen};
use plumbline::policy::chain::{Chain, FailureMode, Step};
use plumbline::policy::{Decision, PolicyError, Runtime, RuntimeConfig};
use std::time::Instant;

const OBJECT: &str =
    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","uid":"x"},"data":{"k":"v"}}"#;

#[test]
fn looping_guest_is_stopped_at_its_deadline_while_others_are_served() {
    let runtime = runtime();
    let looping = load(&runtime, "misbehave", Decision::Sanitize, r#""loop""#);
    let neat = load(&runtime, "neat", Decision::Sanitize, "{}");
    let deadline = runtime.limits().deadline;
    let handle = std::thread::spawn(move || {
        let started = Instant::now();
        (looping.sanitize(OBJECT), started.elapsed())
    });
    let mut served = 0;
    while !handle.is_finished() {
        let out = neat.sanitize(OBJECT).expect("neat keeps serving");
        assert!(!out.unwrap().contains("uid"));
        served += 1;
    }
    let (result, elapsed) = handle.join().unwrap();
    let error = result.unwrap_err();
    assert!(matches!(error, PolicyError::Deadline { .. }), "{error}");
    assert!(
        error.to_string().contains("plugin `misbehave` (sanitize)")
            && error.to_string().contains("deadline (of CPU time"),
        "{error}"
    );
    // A lower bound only: a loaded machine makes every call slower, never
    // faster, so this cannot fail for want of CPU. That the call was
    // stopped at all is the Deadline error above.
    assert!(elapsed >= deadline, "stopped early: {elapsed:?}");
    assert!(
        served > 0,
        "no other call was served while the guest looped"
    );
}

#[test]
fn allocating_guest_is_refused_at_the_memory_cap() {
    let runtime = runtime();
    let hog = load(&runtime, "misbehave", Decision::Sanitize, r#""alloc""#);
    let error = hog.sanitize(OBJECT).unwrap_err();
    assert!(
        matches!(error, PolicyError::MemoryCap { cap, .. } if cap == 32 << 20),
        "{error}"
    );
    assert!(
        error.to_string().contains("plugin `misbehave` (sanitize)"),
        "{error}"
    );
    // The pool slot is reusable afterwards.
    let ok = load(&runtime, "misbehave", Decision::Sanitize, r#""echo""#);
    assert_eq!(ok.sanitize(OBJECT).unwrap().unwrap(), OBJECT);
}

#[test]
fn trapping_guest_yields_an_error_naming_it_and_its_panic() {
    let runtime = runtime();
    let trap = load(&runtime, "misbehave", Decision::Sanitize, r#""trap""#);
    let error = trap.sanitize(OBJECT).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, PolicyError::Trap { .. }), "{message}");
    assert!(
        message.starts_with("plugin `misbehave` (sanitize): trapped"),
        "{message}"
    );
    assert!(message.contains("misbehave was told to trap"), "{message}");
}

#[test]
fn garbage_output_yields_an_error_naming_the_plugin() {
    let runtime = runtime();
    let garbage = load(&runtime, "misbehave", Decision::Sanitize, r#""garbage""#);
    let error = garbage.sanitize(OBJECT).unwrap_err();
    assert!(matches!(error, PolicyError::BadOutput { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("plugin `misbehave` (sanitize): returned malformed output"),
        "{error}"
    );
}

#[test]
fn every_call_gets_a_fresh_instance() {
    let runtime = runtime();
    let counter = load(&runtime, "misbehave", Decision::Sanitize, r#""counter""#);
    for _ in 0..5 {
        let out = counter.sanitize(OBJECT).unwrap().unwrap();
        assert!(
            out.contains(r#""calls":"1""#),
            "state leaked between calls: {out}"
        );
    }
}

#[test]
fn fail_closed_stops_and_fail_open_skips() {
    let runtime = runtime();
    let failing = load(&runtime, "misbehave", Decision::Sanitize, r#""error""#);
    let neat = load(&runtime, "neat", Decision::Sanitize, "{}");
    let steps = vec![Step::Plugin(failing), Step::Plugin(neat)];
    let closed = Chain::new(Decision::Sanitize, FailureMode::Closed, steps.clone());
    let error = closed.sanitize(OBJECT).unwrap_err();
    assert!(
        error.to_string().contains("misbehave was told to fail"),
        "{error}"
    );
    let open = Chain::new(Decision::Sanitize, FailureMode::Open, steps);
    let out = open.sanitize(OBJECT).unwrap().unwrap();
    assert!(!out.contains("uid"), "neat still ran: {out}");
    assert_eq!(open.skipped(), 1);
}

#[test]
fn fail_closed_gate_denies_and_fail_open_gate_allows() {
    let runtime = runtime();
    // A sanitizer is not a gate: loading it as one must fail, so use the
    // digest gate with a request it cannot read.
    let gate = load(&runtime, "digest-gate", Decision::Gate, "{}");
    let closed = Chain::new(
        Decision::Gate,
        FailureMode::Closed,
        vec![Step::Plugin(gate.clone())],
    );
    let verdict = closed.decide("not json");
    let plumbline::policy::bindings::Verdict::Deny(reasons) = verdict else {
        panic!("a failing gate must deny when closed")
    };
    assert!(
        reasons[0].contains("plugin `digest-gate` (gate): failed: request is not JSON"),
        "{reasons:?}"
    );
    let open = Chain::new(Decision::Gate, FailureMode::Open, vec![Step::Plugin(gate)]);
    assert!(matches!(
        open.decide("not json"),
        plumbline::policy::bindings::Verdict::Allow
    ));
}

#[test]
fn plugin_asking_for_a_capability_not_granted_is_refused_at_load() {
    let runtime = runtime();
    let error = try_load(
        &runtime,
        "fs-reader",
        Decision::Sanitize,
        "{}",
        Grants::default(),
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(
            error,
            PolicyError::NotGranted {
                capability: "filesystem",
                ..
            }
        ),
        "{message}"
    );
    assert!(
        message.contains("plugin `fs-reader` (sanitize): imports `wasi:filesystem/preopens"),
        "{message}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("value.txt"), "granted\n").unwrap();
    let grants = Grants {
        filesystem: vec![Preopen {
            host: dir.path().to_owned(),
            guest: "/data".into(),
        }],
        ..Grants::default()
    };
    let reader = try_load(&runtime, "fs-reader", Decision::Sanitize, "{}", grants).unwrap();
    assert!(
        reader
            .sanitize(OBJECT)
            .unwrap()
            .unwrap()
            .contains(r#""value":"granted""#)
    );
}

#[test]
fn guests_see_no_environment_and_a_fixed_clock_unless_granted() {
    let path = std::env::var("PATH").expect("PATH is set");
    let runtime = runtime();
    let plain = load(&runtime, "misbehave", Decision::Sanitize, r#""env""#);
    let out = plain.sanitize(OBJECT).unwrap().unwrap();
    assert!(out.contains(r#""value":"","now":"0""#), "{out}");
    let grants = Grants {
        environment: vec!["PATH".into()],
        real_clock: true,
        ..Grants::default()
    };
    let granted = try_load(
        &runtime,
        "misbehave",
        Decision::Sanitize,
        r#""env""#,
        grants,
    )
    .unwrap();
    let out = granted.sanitize(OBJECT).unwrap().unwrap();
    assert!(out.contains(&format!(r#""value":"{path}""#)), "{out}");
    assert!(!out.contains(r#""now":"0""#), "{out}");
}

#[test]
fn bad_settings_are_refused_at_load() {
    let runtime = runtime();
    let error = try_load(
        &runtime,
        "misbehave",
        Decision::Sanitize,
        r#""refuse""#,
        Grants::default(),
    )
    .unwrap_err();
    assert!(matches!(error, PolicyError::Settings { .. }), "{error}");
    let error = try_load(
        &runtime,
        "neat",
        Decision::Sanitize,
        r#"{"rules": [{"path": "a['b"}]}"#,
        Grants::default(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "plugin `neat` (sanitize): settings refused: rules[0]: unterminated ['…'] in path `['b`"
    );
}

#[test]
fn a_component_of_another_world_is_refused() {
    let runtime = runtime();
    let error = try_load(&runtime, "neat", Decision::Gate, "{}", Grants::default()).unwrap_err();
    assert!(matches!(error, PolicyError::WrongWorld { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("plugin `neat` (gate): does not fit the `drift-gate` world"),
        "{error}"
    );
    let error = runtime
        .load(plumbline::policy::PluginSource {
            name: "junk",
            decision: Decision::Gate,
            bytes: b"\0asm junk",
            settings: "{}".into(),
            grants: Grants::default(),
        })
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("plugin `junk` (gate): not a loadable component"),
        "{error}"
    );
}

#[test]
fn second_start_loads_components_from_the_disk_cache() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(dir.path().to_owned()),
        max_instances: 4,
        ..RuntimeConfig::default()
    };
    let names = ["neat", "redact-secrets"];
    let first = Runtime::new(&config).unwrap();
    for name in names {
        load(&first, name, Decision::Sanitize, "{}");
    }
    assert_eq!(
        (first.cache_stats().compiled, first.cache_stats().from_disk),
        (2, 0)
    );
    drop(first);
    let second = Runtime::new(&config).unwrap();
    for name in names {
        let plugin = load(&second, name, Decision::Sanitize, "{}");
        assert!(plugin.sanitize(OBJECT).unwrap().is_some());
    }
    assert_eq!(
        (
            second.cache_stats().compiled,
            second.cache_stats().from_disk
        ),
        (0, 2)
    );
}

#[test]
fn a_corrupt_cache_file_is_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(dir.path().to_owned()),
        max_instances: 4,
        ..RuntimeConfig::default()
    };
    load(
        &Runtime::new(&config).unwrap(),
        "neat",
        Decision::Sanitize,
        "{}",
    );
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cwasm") {
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
        }
    }
    let again = Runtime::new(&config).unwrap();
    let plugin = load(&again, "neat", Decision::Sanitize, "{}");
    assert_eq!(again.cache_stats().compiled, 1);
    assert!(plugin.sanitize(OBJECT).unwrap().is_some());
}

#[test]
fn a_plugin_asked_a_decision_it_does_not_answer_is_an_error_not_a_panic() {
    let runtime = runtime();
    let neat = load(&runtime, "neat", Decision::Sanitize, "{}");
    let event: plumbline::model::Event = plumbline::ingest::directory::event_of(
        &serde_json::from_str(OBJECT).unwrap(),
        plumbline::model::Operation::Create,
        None,
    );
    let error = neat.matches(&event, &["{}".into()]).unwrap_err();
    assert!(
        matches!(
            error,
            PolicyError::NotThisDecision {
                asked: Decision::Match,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "plugin `neat` (sanitize): cannot answer a match decision"
    );
    let error = neat.decide("{}").unwrap_err();
    assert!(
        error.to_string().contains("cannot answer a gate decision"),
        "{error}"
    );
}
