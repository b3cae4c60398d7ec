//! The rules that say what the API server adds and Git should not hold.
//!
//! Every rule is a deny rule: it names a field (for some kinds, or all) and
//! when to drop it. Anything no rule names is kept, so a field the plugin has
//! never heard of (a new API field, a custom resource's spec) always reaches
//! Git. The built-in rules live in code, not in JSON, so a fresh instance pays
//! nothing to read them; an operator adds rules through the settings.

use serde_json::Value;
use std::borrow::Cow;

/// When a rule drops the field it names.
#[derive(Debug, Clone, PartialEq)]
pub enum When<'a> {
    /// Always: the field is server state.
    Always,
    /// When it equals the API server's default, so it carries no intent.
    Equals(Lit<'a>),
    /// Unless it equals this value (a Service's `clusterIP` unless `None`).
    Unless(Lit<'a>),
    /// When it equals a sibling field (`targetPort` defaults to `port`).
    SameAs(&'a str),
    /// For arrays of objects or strings: items whose name starts with one of
    /// these prefixes (the service-account token volumes).
    NamePrefix(Cow<'a, [&'a str]>),
    /// A container's `imagePullPolicy` when it is the default for its image.
    DefaultPullPolicy,
}

/// A value a rule compares against.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
    EmptyObject,
    /// An array of exactly these strings.
    StrList(Cow<'a, [&'a str]>),
    Json(&'a Value),
}

impl Lit<'_> {
    /// Whether `value` is this literal.
    pub fn matches(&self, value: &Value) -> bool {
        match self {
            Lit::Str(s) => value.as_str() == Some(s),
            Lit::Int(i) => value.as_i64() == Some(*i),
            Lit::Bool(b) => value.as_bool() == Some(*b),
            Lit::EmptyObject => value.as_object().is_some_and(|m| m.is_empty()),
            Lit::StrList(items) => value.as_array().is_some_and(|array| {
                array.len() == items.len()
                    && array
                        .iter()
                        .zip(items.iter())
                        .all(|(v, s)| v.as_str() == Some(s))
            }),
            Lit::Json(v) => *v == value,
        }
    }
}

/// One rule: the kinds it applies to (none means every kind), the field, and
/// when to drop it. A path starting with `@podSpec` is resolved to wherever
/// the kind keeps its pod spec (`spec`, `spec.template.spec`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule<'a> {
    pub kinds: Cow<'a, [&'a str]>,
    pub path: &'a str,
    pub when: When<'a>,
}

const fn rule<'a>(kinds: &'a [&'a str], path: &'a str, when: When<'a>) -> Rule<'a> {
    Rule {
        kinds: Cow::Borrowed(kinds),
        path,
        when,
    }
}

const ALL: &[&str] = &[];
const POD_OWNERS: &[&str] = &[
    "Pod",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "ReplicationController",
    "PodTemplate",
];
const TEMPLATED: &[&str] = &[
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "ReplicationController",
];
const TOKEN_VOLUMES: &[&str] = &["default-token-", "kube-api-access-"];
const SYSTEM_FINALIZERS: &[&str] = &[
    "kubernetes.io/pv-protection",
    "kubernetes.io/pvc-protection",
    "foregroundDeletion",
    "orphan",
];

use Lit::*;
use When::*;

/// The built-in rules, applied in order.
pub const DEFAULT_RULES: &[Rule<'static>] = &[
    // Server state and bookkeeping, on every kind.
    rule(ALL, "status", Always),
    rule(ALL, "metadata.managedFields", Always),
    rule(ALL, "metadata.uid", Always),
    rule(ALL, "metadata.resourceVersion", Always),
    rule(ALL, "metadata.generation", Always),
    rule(ALL, "metadata.creationTimestamp", Always),
    rule(ALL, "metadata.selfLink", Always),
    rule(ALL, "metadata.deletionTimestamp", Always),
    rule(ALL, "metadata.deletionGracePeriodSeconds", Always),
    rule(
        ALL,
        "metadata.annotations['kubectl.kubernetes.io/last-applied-configuration']",
        Always,
    ),
    rule(
        ALL,
        "metadata.annotations['deployment.kubernetes.io/revision']",
        Always,
    ),
    rule(ALL, "metadata.annotations", Equals(EmptyObject)),
    rule(
        ALL,
        "metadata.finalizers[*]",
        NamePrefix(Cow::Borrowed(SYSTEM_FINALIZERS)),
    ),
    // Pod specs, wherever a kind keeps one.
    rule(
        TEMPLATED,
        "spec.template.metadata.creationTimestamp",
        Always,
    ),
    rule(
        &["CronJob"],
        "spec.jobTemplate.metadata.creationTimestamp",
        Always,
    ),
    rule(
        &["CronJob"],
        "spec.jobTemplate.spec.template.metadata.creationTimestamp",
        Always,
    ),
    rule(POD_OWNERS, "@podSpec.nodeName", Always),
    rule(
        POD_OWNERS,
        "@podSpec.serviceAccount",
        SameAs("serviceAccountName"),
    ),
    rule(
        POD_OWNERS,
        "@podSpec.dnsPolicy",
        Equals(Str("ClusterFirst")),
    ),
    rule(
        POD_OWNERS,
        "@podSpec.enableServiceLinks",
        Equals(Bool(true)),
    ),
    rule(POD_OWNERS, "@podSpec.restartPolicy", Equals(Str("Always"))),
    rule(
        POD_OWNERS,
        "@podSpec.schedulerName",
        Equals(Str("default-scheduler")),
    ),
    rule(POD_OWNERS, "@podSpec.securityContext", Equals(EmptyObject)),
    rule(
        POD_OWNERS,
        "@podSpec.terminationGracePeriodSeconds",
        Equals(Int(30)),
    ),
    rule(
        POD_OWNERS,
        "@podSpec.volumes[*]",
        NamePrefix(Cow::Borrowed(TOKEN_VOLUMES)),
    ),
    rule(
        POD_OWNERS,
        "@podSpec.containers[*].volumeMounts[*]",
        NamePrefix(Cow::Borrowed(TOKEN_VOLUMES)),
    ),
    rule(
        POD_OWNERS,
        "@podSpec.initContainers[*].volumeMounts[*]",
        NamePrefix(Cow::Borrowed(TOKEN_VOLUMES)),
    ),
    rule(
        POD_OWNERS,
        "@podSpec.containers[*].imagePullPolicy",
        DefaultPullPolicy,
    ),
    rule(
        POD_OWNERS,
        "@podSpec.containers[*].terminationMessagePath",
        Equals(Str("/dev/termination-log")),
    ),
    rule(
        POD_OWNERS,
        "@podSpec.containers[*].terminationMessagePolicy",
        Equals(Str("File")),
    ),
    rule(
        POD_OWNERS,
        "@podSpec.containers[*].resources",
        Equals(EmptyObject),
    ),
    rule(
        POD_OWNERS,
        "@podSpec.containers[*].ports[*].protocol",
        Equals(Str("TCP")),
    ),
    rule(
        POD_OWNERS,
        "@podSpec.initContainers[*].imagePullPolicy",
        DefaultPullPolicy,
    ),
    rule(
        POD_OWNERS,
        "@podSpec.initContainers[*].terminationMessagePath",
        Equals(Str("/dev/termination-log")),
    ),
    rule(
        POD_OWNERS,
        "@podSpec.initContainers[*].terminationMessagePolicy",
        Equals(Str("File")),
    ),
    rule(
        POD_OWNERS,
        "@podSpec.initContainers[*].resources",
        Equals(EmptyObject),
    ),
    // Workload controllers' defaults.
    rule(
        &["Deployment"],
        "spec.progressDeadlineSeconds",
        Equals(Int(600)),
    ),
    rule(
        &["Deployment", "StatefulSet", "DaemonSet"],
        "spec.revisionHistoryLimit",
        Equals(Int(10)),
    ),
    rule(
        &["Deployment"],
        "spec.strategy.rollingUpdate.maxSurge",
        Equals(Str("25%")),
    ),
    rule(
        &["Deployment"],
        "spec.strategy.rollingUpdate.maxUnavailable",
        Equals(Str("25%")),
    ),
    rule(
        &["Deployment"],
        "spec.strategy.rollingUpdate",
        Equals(EmptyObject),
    ),
    rule(
        &["Deployment"],
        "spec.strategy.type",
        Equals(Str("RollingUpdate")),
    ),
    rule(&["Deployment"], "spec.strategy", Equals(EmptyObject)),
    rule(
        &["StatefulSet"],
        "spec.podManagementPolicy",
        Equals(Str("OrderedReady")),
    ),
    // Services: addresses the server assigns, and the defaults it fills in.
    rule(&["Service"], "spec.clusterIP", Unless(Str("None"))),
    rule(
        &["Service"],
        "spec.clusterIPs",
        Unless(StrList(Cow::Borrowed(&["None"]))),
    ),
    rule(&["Service"], "spec.ipFamilies", Always),
    rule(
        &["Service"],
        "spec.ipFamilyPolicy",
        Equals(Str("SingleStack")),
    ),
    rule(
        &["Service"],
        "spec.internalTrafficPolicy",
        Equals(Str("Cluster")),
    ),
    rule(&["Service"], "spec.sessionAffinity", Equals(Str("None"))),
    rule(&["Service"], "spec.type", Equals(Str("ClusterIP"))),
    rule(&["Service"], "spec.ports[*].protocol", Equals(Str("TCP"))),
    rule(&["Service"], "spec.ports[*].targetPort", SameAs("port")),
    // Volumes.
    rule(
        &["PersistentVolume", "PersistentVolumeClaim"],
        "spec.volumeMode",
        Equals(Str("Filesystem")),
    ),
    rule(&["PersistentVolume"], "spec.hostPath.type", Equals(Str(""))),
];

/// The prefix under which `kind` keeps its pod spec, for `@podSpec` paths.
pub fn pod_spec_prefix(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("spec"),
        "PodTemplate" => Some("template.spec"),
        "CronJob" => Some("spec.jobTemplate.spec.template.spec"),
        k if TEMPLATED.contains(&k) => Some("spec.template.spec"),
        _ => None,
    }
}
