//! What Plumbline knows of Kubernetes kinds without asking a cluster.
//!
//! A folder of manifests has no discovery API to ask, yet the mirror must
//! know which kinds are namespaced (a Deployment without a namespace goes
//! to `default`, as `kubectl apply` puts it, not to the cluster-scoped
//! folder), which plural names their files, and, above all, what a Secret
//! is. That last answer must be the same for the host, which files objects,
//! and for the `redact-secrets` plugin, which blanks their values: if the
//! two disagreed on `kind: secret` or `apiVersion: V1`, a Secret could be
//! filed as one and passed through as something else. So both use this
//! crate, which has no dependencies and builds for `wasm32-wasip2` too.

pub mod scope;

/// A built-in kind, as the API server's discovery lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltIn {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// Kind, in its canonical spelling.
    pub kind: &'static str,
    /// Plural resource.
    pub resource: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
}

const fn ns(group: &'static str, kind: &'static str, resource: &'static str) -> BuiltIn {
    BuiltIn {
        group,
        kind,
        resource,
        namespaced: true,
    }
}

const fn cluster(group: &'static str, kind: &'static str, resource: &'static str) -> BuiltIn {
    BuiltIn {
        group,
        kind,
        resource,
        namespaced: false,
    }
}

/// The kinds Kubernetes 1.35 serves (`kubectl api-resources`), plus the
/// removed ones old manifests still carry (`extensions`, PodSecurityPolicy)
/// and the metrics API's.
pub const BUILT_IN: &[BuiltIn] = &[
    ns("", "Binding", "bindings"),
    cluster("", "ComponentStatus", "componentstatuses"),
    ns("", "ConfigMap", "configmaps"),
    ns("", "Endpoints", "endpoints"),
    ns("", "Event", "events"),
    ns("", "LimitRange", "limitranges"),
    cluster("", "Namespace", "namespaces"),
    cluster("", "Node", "nodes"),
    ns("", "PersistentVolumeClaim", "persistentvolumeclaims"),
    cluster("", "PersistentVolume", "persistentvolumes"),
    ns("", "Pod", "pods"),
    ns("", "PodTemplate", "podtemplates"),
    ns("", "ReplicationController", "replicationcontrollers"),
    ns("", "ResourceQuota", "resourcequotas"),
    ns("", "Secret", "secrets"),
    ns("", "ServiceAccount", "serviceaccounts"),
    ns("", "Service", "services"),
    cluster(
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
    ),
    cluster(
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
    ),
    cluster(
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
    ),
    cluster(
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
    ),
    cluster(
        "admissionregistration.k8s.io",
        "MutatingAdmissionPolicy",
        "mutatingadmissionpolicies",
    ),
    cluster(
        "admissionregistration.k8s.io",
        "MutatingAdmissionPolicyBinding",
        "mutatingadmissionpolicybindings",
    ),
    cluster(
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    ),
    cluster("apiregistration.k8s.io", "APIService", "apiservices"),
    ns("apps", "ControllerRevision", "controllerrevisions"),
    ns("apps", "DaemonSet", "daemonsets"),
    ns("apps", "Deployment", "deployments"),
    ns("apps", "ReplicaSet", "replicasets"),
    ns("apps", "StatefulSet", "statefulsets"),
    cluster(
        "authentication.k8s.io",
        "SelfSubjectReview",
        "selfsubjectreviews",
    ),
    cluster("authentication.k8s.io", "TokenReview", "tokenreviews"),
    ns(
        "authorization.k8s.io",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
    ),
    cluster(
        "authorization.k8s.io",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
    ),
    cluster(
        "authorization.k8s.io",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
    ),
    cluster(
        "authorization.k8s.io",
        "SubjectAccessReview",
        "subjectaccessreviews",
    ),
    ns(
        "autoscaling",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    ),
    ns("batch", "CronJob", "cronjobs"),
    ns("batch", "Job", "jobs"),
    cluster(
        "certificates.k8s.io",
        "CertificateSigningRequest",
        "certificatesigningrequests",
    ),
    cluster(
        "certificates.k8s.io",
        "ClusterTrustBundle",
        "clustertrustbundles",
    ),
    ns("coordination.k8s.io", "Lease", "leases"),
    ns("coordination.k8s.io", "LeaseCandidate", "leasecandidates"),
    ns("discovery.k8s.io", "EndpointSlice", "endpointslices"),
    ns("events.k8s.io", "Event", "events"),
    ns("extensions", "DaemonSet", "daemonsets"),
    ns("extensions", "Deployment", "deployments"),
    ns("extensions", "Ingress", "ingresses"),
    ns("extensions", "NetworkPolicy", "networkpolicies"),
    ns("extensions", "ReplicaSet", "replicasets"),
    cluster("flowcontrol.apiserver.k8s.io", "FlowSchema", "flowschemas"),
    cluster(
        "flowcontrol.apiserver.k8s.io",
        "PriorityLevelConfiguration",
        "prioritylevelconfigurations",
    ),
    cluster(
        "internal.apiserver.k8s.io",
        "StorageVersion",
        "storageversions",
    ),
    cluster("metrics.k8s.io", "NodeMetrics", "nodes"),
    ns("metrics.k8s.io", "PodMetrics", "pods"),
    cluster("networking.k8s.io", "IngressClass", "ingressclasses"),
    ns("networking.k8s.io", "Ingress", "ingresses"),
    cluster("networking.k8s.io", "IPAddress", "ipaddresses"),
    ns("networking.k8s.io", "NetworkPolicy", "networkpolicies"),
    cluster("networking.k8s.io", "ServiceCIDR", "servicecidrs"),
    cluster("node.k8s.io", "RuntimeClass", "runtimeclasses"),
    ns("policy", "PodDisruptionBudget", "poddisruptionbudgets"),
    cluster("policy", "PodSecurityPolicy", "podsecuritypolicies"),
    cluster(
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        "clusterrolebindings",
    ),
    cluster("rbac.authorization.k8s.io", "ClusterRole", "clusterroles"),
    ns("rbac.authorization.k8s.io", "RoleBinding", "rolebindings"),
    ns("rbac.authorization.k8s.io", "Role", "roles"),
    cluster("resource.k8s.io", "DeviceClass", "deviceclasses"),
    ns("resource.k8s.io", "ResourceClaim", "resourceclaims"),
    ns(
        "resource.k8s.io",
        "ResourceClaimTemplate",
        "resourceclaimtemplates",
    ),
    cluster("resource.k8s.io", "ResourceSlice", "resourceslices"),
    cluster("scheduling.k8s.io", "PriorityClass", "priorityclasses"),
    cluster("storage.k8s.io", "CSIDriver", "csidrivers"),
    cluster("storage.k8s.io", "CSINode", "csinodes"),
    ns(
        "storage.k8s.io",
        "CSIStorageCapacity",
        "csistoragecapacities",
    ),
    cluster("storage.k8s.io", "StorageClass", "storageclasses"),
    cluster("storage.k8s.io", "VolumeAttachment", "volumeattachments"),
    cluster(
        "storage.k8s.io",
        "VolumeAttributesClass",
        "volumeattributesclasses",
    ),
    cluster(
        "storagemigration.k8s.io",
        "StorageVersionMigration",
        "storageversionmigrations",
    ),
];

/// Splits an `apiVersion` into its group and version, normalised as the
/// mirror compares them: trimmed, lower case, and `/v1`, `v1` or `V1` all
/// the core group.
pub fn split_api_version(api_version: &str) -> (String, String) {
    let normal = api_version.trim().to_ascii_lowercase();
    match normal.rsplit_once('/') {
        Some((group, version)) => {
            let group = group.trim_matches('/');
            let group = if group == "core" { "" } else { group };
            (group.to_owned(), version.to_owned())
        }
        None => (String::new(), normal),
    }
}

/// The built-in kind of `group` (as [`split_api_version`] gives it) and
/// `kind`, whatever case `kind` is spelled in.
pub fn built_in(group: &str, kind: &str) -> Option<&'static BuiltIn> {
    BUILT_IN
        .iter()
        .find(|b| b.group == group && b.kind.eq_ignore_ascii_case(kind.trim()))
}

/// Whether an object with this `apiVersion` and `kind` is a Secret, however
/// either is spelled: the one test both filing and redaction use.
pub fn is_secret(api_version: &str, kind: &str) -> bool {
    split_api_version(api_version).0.is_empty() && kind.trim().eq_ignore_ascii_case("Secret")
}

/// Why a document with this `apiVersion` and `kind` is not a cluster
/// object at all, but a file a client reads (a kustomization, a kubeconfig,
/// a tool's configuration), which no API server serves and the mirror
/// skips.
pub fn client_side(api_version: &str, kind: &str) -> Option<&'static str> {
    let (group, _) = split_api_version(api_version);
    let kind = kind.trim();
    const TOOLS: &[(&str, &str)] = &[
        ("kustomize.config.k8s.io", "a kustomize file"),
        ("kpt.dev", "a kpt file"),
        ("config.kubernetes.io", "a KRM function's configuration"),
        ("skaffold", "a skaffold file"),
        ("kind.x-k8s.io", "a kind cluster's configuration"),
        ("k3d.io", "a k3d cluster's configuration"),
        ("kubeadm.k8s.io", "a kubeadm configuration"),
        ("kubelet.config.k8s.io", "a kubelet configuration"),
        ("kubeproxy.config.k8s.io", "a kube-proxy configuration"),
        ("apiserver.config.k8s.io", "an API server configuration"),
        ("audit.k8s.io", "an audit policy file"),
        ("client.authentication.k8s.io", "a credential plugin's file"),
    ];
    if let Some((_, what)) = TOOLS.iter().find(|(g, _)| *g == group) {
        return Some(what);
    }
    // A kubeconfig is `apiVersion: v1, kind: Config`; it holds credentials.
    if group.is_empty() && kind.eq_ignore_ascii_case("Config") {
        return Some("a kubeconfig");
    }
    None
}

/// The plural resource of a kind no table knows: the API machinery's own
/// guess (`Gateway` → `gateways`, `Policy` → `policies`).
pub fn guess_resource(kind: &str) -> String {
    let lower = kind.trim().to_ascii_lowercase();
    if lower.ends_with('s')
        || lower.ends_with("sh")
        || lower.ends_with("ch")
        || lower.ends_with('x')
    {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_a_secret_however_spelled() {
        for (api_version, kind) in [
            ("v1", "Secret"),
            ("V1", "Secret"),
            ("/v1", "secret"),
            (" v1 ", "SECRET"),
            ("core/v1", "Secret"),
        ] {
            assert!(is_secret(api_version, kind), "{api_version} {kind}");
        }
        assert!(!is_secret("bitnami.com/v1alpha1", "SealedSecret"));
        assert!(!is_secret("v1", "ConfigMap"));
    }

    #[test]
    fn scopes_and_resources_of_built_in_kinds() {
        let (group, version) = split_api_version("Apps/v1");
        assert_eq!((group.as_str(), version.as_str()), ("apps", "v1"));
        let deployment = built_in(&group, "deployment").unwrap();
        assert!(deployment.namespaced);
        assert_eq!(deployment.kind, "Deployment");
        assert!(
            !built_in("rbac.authorization.k8s.io", "ClusterRole")
                .unwrap()
                .namespaced
        );
        assert_eq!(built_in("", "Endpoints").unwrap().resource, "endpoints");
        assert!(built_in("example.com", "Widget").is_none());
    }

    #[test]
    fn client_side_files_are_told_apart() {
        assert!(client_side("kustomize.config.k8s.io/v1beta1", "Kustomization").is_some());
        assert!(client_side("kustomize.config.k8s.io/v1alpha1", "Component").is_some());
        assert!(client_side("v1", "Config").is_some());
        assert!(client_side("v1", "ConfigMap").is_none());
    }

    #[test]
    fn guessed_plurals() {
        for (kind, resource) in [
            ("Gateway", "gateways"),
            ("Policy", "policies"),
            ("Ingress", "ingresses"),
            ("Mesh", "meshes"),
        ] {
            assert_eq!(guess_resource(kind), resource);
        }
    }
}
