//! The rules that say what the API server adds and Git should not hold.
//!
//! Every rule is a deny rule: it names a field (for some kinds, or all) and
//! when to drop it. Anything no rule names is kept, so a field the plugin has
//! never heard of (a new API field, a custom resource's spec) always reaches
//! Git. The built-in rules live in code, not in JSON, so a fresh instance pays
//! nothing to read them; an operator adds rules through the settings.
//!
//! What the rules drop, by class (the classes kubectl-neat drops, plus the
//! bookkeeping Kubernetes' own controllers write into objects people own):
//!
//! - server state: `status`, `metadata.managedFields`, `uid`, … on every
//!   kind, and the `status` and `creationTimestamp: null` the API server
//!   serializes into embedded templates;
//! - annotations and labels controllers and the API server write (a Job's
//!   generated selector and labels, the PV binder's
//!   `pv.kubernetes.io/*`, the provisioner's and scheduler's `volume.*`, the
//!   Deployment and DaemonSet controllers' revisions, the HPA's status
//!   annotations, leader-election records, the Namespace name label);
//! - fields the server assigns (a Service's cluster IPs, the volume the
//!   binder picked for a claim) and finalizers only the system removes;
//! - fields equal to the default the API server fills in when a person
//!   leaves them out: a written default goes too, since Git cannot tell the
//!   two apart and the server puts it back either way (as kubectl-neat does).

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
    /// For arrays of objects or strings, and for the keys of a map: items
    /// whose name starts with one of these prefixes (the service-account
    /// token volumes).
    NamePrefix(Cow<'a, [&'a str]>),
    /// For arrays of objects or strings, and for the keys of a map: items
    /// named exactly one of these (the annotations controllers write).
    Named(Cow<'a, [&'a str]>),
    /// A container's `imagePullPolicy` when it is the default for its image.
    DefaultPullPolicy,
    /// When the object carries this annotation with this value: the field
    /// was set by the controller that wrote the annotation
    /// (`pv.kubernetes.io/bound-by-controller: "yes"` on a bound claim).
    /// Looked at before any rule runs, so the annotation's own rule may drop
    /// it.
    Annotated(&'a str, &'a str),
    /// When it equals the object's own `metadata.name` (the Namespace label
    /// the API server adds).
    SameAsName,
}

/// A value a rule compares against.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
    EmptyObject,
    /// `null`, which Go serializes for a zero time in embedded metadata.
    Null,
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
            Lit::Null => value.is_null(),
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

impl Rule<'_> {
    /// Whether the rule's condition reads the annotation `key`.
    pub fn asks_about(&self, key: &str) -> bool {
        matches!(self.when, When::Annotated(k, _) if k == key)
    }
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
/// The labels carrying a Job's uid that the API server generates.
const JOB_UID_LABELS: &[&str] = &["controller-uid", "batch.kubernetes.io/controller-uid"];
const TOKEN_VOLUMES: &[&str] = &["default-token-", "kube-api-access-"];
const SYSTEM_FINALIZERS: &[&str] = &[
    "kubernetes.io/pv-protection",
    "kubernetes.io/pvc-protection",
    "foregroundDeletion",
    "orphan",
];

use Lit::*;
use When::*;

/// The annotation the PV binder writes on a claim or volume whose binding it
/// made (rather than a person pre-binding it).
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";

/// Annotations that Kubernetes' controllers, scheduler and kubectl write and
/// no person does, on any kind. Their domains belong to Kubernetes, so no
/// other tool writes these keys with another meaning. Left out on purpose:
/// `pv.kubernetes.io/provisioned-by` (a person writes it on a statically
/// provisioned volume so its driver deletes it; kubectl-neat keeps it too),
/// `autoscaling.alpha.kubernetes.io/metrics` and `…/behavior` (the
/// `autoscaling/v1` form of an HPA's spec, written by its author),
/// `kubectl.kubernetes.io/restartedAt` (a person's `rollout restart`).
pub const SERVER_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    // The Deployment controller's bookkeeping (on Deployments and their ReplicaSets).
    "deployment.kubernetes.io/revision",
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    // The DaemonSet controller's.
    "deprecated.daemonset.template.generation",
    // The PV binder's and the provisioners' (on claims and volumes).
    "pv.kubernetes.io/bind-completed",
    BOUND_BY_CONTROLLER,
    "pv.kubernetes.io/migrated-to",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
    // The scheduler's, on a WaitForFirstConsumer claim.
    "volume.kubernetes.io/selected-node",
    // The HPA controller's status, stored as annotations in autoscaling/v1.
    "autoscaling.alpha.kubernetes.io/conditions",
    "autoscaling.alpha.kubernetes.io/current-metrics",
    // Leader election records (on Endpoints and ConfigMaps).
    "control-plane.alpha.kubernetes.io/leader",
    // The endpoints controller's.
    "endpoints.kubernetes.io/last-change-trigger-time",
    // The Job controller's (1.23–1.26).
    "batch.kubernetes.io/job-tracking",
    // The token controller's, on a service-account token Secret.
    "kubernetes.io/service-account.uid",
];

/// The built-in rules, applied in order.
pub const DEFAULT_RULES: &[Rule<'static>] = &[
    // Fields set by the controller that says so in an annotation. The
    // annotation is read before any rule runs, so its own rule below may
    // drop it; a claim or volume a person bound by hand keeps its binding.
    rule(
        &["PersistentVolumeClaim"],
        "spec.volumeName",
        Annotated(BOUND_BY_CONTROLLER, "yes"),
    ),
    rule(
        &["PersistentVolume"],
        "spec.claimRef",
        Annotated(BOUND_BY_CONTROLLER, "yes"),
    ),
    // The selector and labels the API server generates for a Job (unless
    // its author chose `manualSelector`, whose labels have other names):
    // the Job's own uid and name. Before the rules that drop emptied maps.
    rule(
        &["Job"],
        "spec.selector.matchLabels[*]",
        Named(Cow::Borrowed(JOB_UID_LABELS)),
    ),
    rule(&["Job"], "spec.selector.matchLabels", Equals(EmptyObject)),
    rule(&["Job"], "spec.selector", Equals(EmptyObject)),
    rule(
        &["Job"],
        "metadata.labels[*]",
        Named(Cow::Borrowed(JOB_UID_LABELS)),
    ),
    rule(
        &["Job"],
        "spec.template.metadata.labels[*]",
        Named(Cow::Borrowed(JOB_UID_LABELS)),
    ),
    rule(&["Job"], "metadata.labels['job-name']", SameAsName),
    rule(
        &["Job"],
        "metadata.labels['batch.kubernetes.io/job-name']",
        SameAsName,
    ),
    rule(
        &["Job"],
        "spec.template.metadata.labels['job-name']",
        SameAsName,
    ),
    rule(
        &["Job"],
        "spec.template.metadata.labels['batch.kubernetes.io/job-name']",
        SameAsName,
    ),
    rule(
        &["Job"],
        "spec.template.metadata.labels",
        Equals(EmptyObject),
    ),
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
    // The zero time Go serializes into every embedded ObjectMeta (pod
    // templates, claim templates, job templates, custom resources' own
    // templates): at any depth, so no kind that embeds one is forgotten.
    rule(ALL, "**.metadata.creationTimestamp", Equals(Null)),
    // And the embedded metadata that held nothing else.
    rule(ALL, "**.metadata", Equals(EmptyObject)),
    rule(
        ALL,
        "metadata.annotations[*]",
        Named(Cow::Borrowed(SERVER_ANNOTATIONS)),
    ),
    rule(ALL, "metadata.annotations", Equals(EmptyObject)),
    // The label the API server puts on every Namespace (1.21+).
    rule(
        &["Namespace"],
        "metadata.labels['kubernetes.io/metadata.name']",
        SameAsName,
    ),
    // The token controller's marks on legacy service-account token Secrets.
    rule(
        &["Secret"],
        "metadata.labels[*]",
        Named(Cow::Borrowed(&[
            "kubernetes.io/legacy-token-last-used",
            "kubernetes.io/legacy-token-invalid-since",
        ])),
    ),
    rule(ALL, "metadata.labels", Equals(EmptyObject)),
    rule(
        ALL,
        "metadata.finalizers[*]",
        NamePrefix(Cow::Borrowed(SYSTEM_FINALIZERS)),
    ),
    // A Namespace's finalizer list, which the server always fills in and
    // only the namespace controller acts on.
    rule(
        &["Namespace"],
        "spec.finalizers",
        Equals(StrList(Cow::Borrowed(&["kubernetes"]))),
    ),
    rule(&["Namespace"], "spec", Equals(EmptyObject)),
    // Pod specs, wherever a kind keeps one.
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
        &["DaemonSet"],
        "spec.updateStrategy.rollingUpdate.maxUnavailable",
        Equals(Int(1)),
    ),
    rule(
        &["DaemonSet"],
        "spec.updateStrategy.rollingUpdate.maxSurge",
        Equals(Int(0)),
    ),
    rule(
        &["StatefulSet"],
        "spec.updateStrategy.rollingUpdate.partition",
        Equals(Int(0)),
    ),
    rule(
        &["DaemonSet", "StatefulSet"],
        "spec.updateStrategy.rollingUpdate",
        Equals(EmptyObject),
    ),
    rule(
        &["DaemonSet", "StatefulSet"],
        "spec.updateStrategy.type",
        Equals(Str("RollingUpdate")),
    ),
    rule(
        &["DaemonSet", "StatefulSet"],
        "spec.updateStrategy",
        Equals(EmptyObject),
    ),
    rule(
        &["StatefulSet"],
        "spec.podManagementPolicy",
        Equals(Str("OrderedReady")),
    ),
    rule(
        &["StatefulSet"],
        "spec.persistentVolumeClaimRetentionPolicy.whenDeleted",
        Equals(Str("Retain")),
    ),
    rule(
        &["StatefulSet"],
        "spec.persistentVolumeClaimRetentionPolicy.whenScaled",
        Equals(Str("Retain")),
    ),
    rule(
        &["StatefulSet"],
        "spec.persistentVolumeClaimRetentionPolicy",
        Equals(EmptyObject),
    ),
    // What the server writes into a StatefulSet's claim templates: their
    // status, their type (the field's own type says it), their defaults.
    rule(
        &["StatefulSet"],
        "spec.volumeClaimTemplates[*].status",
        Always,
    ),
    rule(
        &["StatefulSet"],
        "spec.volumeClaimTemplates[*].apiVersion",
        Equals(Str("v1")),
    ),
    rule(
        &["StatefulSet"],
        "spec.volumeClaimTemplates[*].kind",
        Equals(Str("PersistentVolumeClaim")),
    ),
    rule(
        &["StatefulSet"],
        "spec.volumeClaimTemplates[*].spec.volumeMode",
        Equals(Str("Filesystem")),
    ),
    rule(&["CronJob"], "spec.concurrencyPolicy", Equals(Str("Allow"))),
    rule(&["CronJob"], "spec.failedJobsHistoryLimit", Equals(Int(1))),
    rule(
        &["CronJob"],
        "spec.successfulJobsHistoryLimit",
        Equals(Int(3)),
    ),
    rule(&["CronJob", "Job"], "spec.suspend", Equals(Bool(false))),
    rule(&["Job"], "spec.backoffLimit", Equals(Int(6))),
    rule(
        &["CronJob"],
        "spec.jobTemplate.spec.backoffLimit",
        Equals(Int(6)),
    ),
    rule(&["Job"], "spec.completionMode", Equals(Str("NonIndexed"))),
    rule(
        &["CronJob"],
        "spec.jobTemplate.spec.completionMode",
        Equals(Str("NonIndexed")),
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
    rule(
        &["Service"],
        "spec.externalTrafficPolicy",
        Equals(Str("Cluster")),
    ),
    rule(
        &["Service"],
        "spec.allocateLoadBalancerNodePorts",
        Equals(Bool(true)),
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
