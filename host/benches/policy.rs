//! Benchmarks of the policy runtime, each against a baseline measured in the
//! same run, so the figures travel as ratios:
//!
//! - `neat`: the neat component on a ~5 KiB Deployment, a fresh instance per
//!   call, against the same Rust code compiled natively;
//! - `instantiate`: a bare instance from `InstancePre` with the pooling
//!   allocator, against a native call of neat for scale;
//! - `cel`: a compiled CEL predicate against the same check in Rust; and an
//!   expression with a comprehension, which runs in the CEL sandbox (a
//!   fresh Wasm instance per evaluation), against the same expression
//!   evaluated natively;
//! - `chain`: the default sanitize chain (neat, then redact-secrets) through
//!   Wasm against the same two steps natively; its throughput is the
//!   decisions per second per core.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use plumbline::policy::cel::{CelLimits, CelPolicy, CelSource};
use plumbline::policy::config::PolicyConfig;
use plumbline::policy::{Decision, Runtime};
use std::hint::black_box;

const DEPLOYMENT: &str = include_str!("deployment-5k.json");

fn compact(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .unwrap()
        .to_string()
}

fn setup() -> (Runtime, plumbline::policy::PolicySet) {
    let config = PolicyConfig::builtin();
    let runtime = Runtime::new(&config.runtime_config(None)).expect("runtime");
    let set = config.load(&runtime).expect("the default policy set loads");
    (runtime, set)
}

fn neat(c: &mut Criterion) {
    let object = compact(DEPLOYMENT);
    let (_runtime, set) = setup();
    let chain = set.chain(Decision::Sanitize);
    let plumbline::policy::chain::Step::Plugin(neat) = &chain.steps()[0] else {
        unreachable!("neat is the first sanitize step")
    };
    let mut group = c.benchmark_group("neat");
    group.bench_function(BenchmarkId::new("native", object.len()), |b| {
        b.iter(|| neat::sanitize_json(black_box(&object), "{}").unwrap())
    });
    group.bench_function(BenchmarkId::new("wasm-fresh-instance", object.len()), |b| {
        b.iter(|| neat.sanitize(black_box(&object)).unwrap())
    });
    group.bench_function("wasm-bare-instantiate", |b| {
        b.iter(|| neat.instantiate_only().unwrap())
    });
    group.finish();
}

fn cel(c: &mut Criterion) {
    let source = CelSource {
        name: "team".into(),
        expression: "object.metadata.labels.team == \"payments\"".into(),
        message: None,
        path: None,
        file: None,
    };
    let policy = CelPolicy::compile(source, Decision::Sanitize, CelLimits::default()).unwrap();
    let object: serde_json::Value = serde_json::from_str(DEPLOYMENT).unwrap();
    let context = CelPolicy::prepare(&[("object", &object)]).unwrap();
    let mut group = c.benchmark_group("cel");
    group.bench_function("native", |b| {
        b.iter(|| black_box(&object)["metadata"]["labels"]["team"] == "payments")
    });
    group.bench_function("predicate", |b| {
        b.iter(|| policy.evaluate_prepared(black_box(&context)).unwrap())
    });
    let source = CelSource {
        name: "containers-pinned".into(),
        expression: "object.spec.template.spec.containers.all(c, c.image.contains('@sha256:') || c.image.contains(':'))".into(),
        message: None,
        path: None,
        file: None,
    };
    let loops = CelPolicy::compile(source, Decision::Sanitize, CelLimits::default()).unwrap();
    assert!(loops.is_sandboxed());
    let text = compact(DEPLOYMENT);
    // The first evaluation waits for the sandbox to compile.
    let expected = loops.evaluate_prepared(&context).unwrap();
    assert_eq!(loops.test(&[("object", &text)]).unwrap(), expected);
    group.bench_function("comprehension-native", |b| {
        b.iter(|| loops.evaluate_prepared(black_box(&context)).unwrap())
    });
    group.bench_function("comprehension-sandboxed", |b| {
        b.iter(|| loops.test(&[("object", black_box(&text))]).unwrap())
    });
    group.finish();
}

fn chain(c: &mut Criterion) {
    let object = compact(DEPLOYMENT);
    let (_runtime, set) = setup();
    let chain = set.chain(Decision::Sanitize);
    let mut group = c.benchmark_group("default-sanitize-chain");
    group.throughput(Throughput::Elements(1));
    group.bench_function("native", |b| {
        b.iter(|| {
            let clean = neat::sanitize_json(black_box(&object), "{}").unwrap();
            redact_secrets::sanitize_json(&clean, "{}").unwrap()
        })
    });
    group.bench_function("wasm", |b| {
        b.iter(|| chain.sanitize(black_box(&object)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, neat, cel, chain);
criterion_main!(benches);
