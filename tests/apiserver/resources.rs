//! The resources the test API server serves: a table of built-in kinds (with
//! the verbs and scope a real v1.35 server gives them) to which every
//! `CustomResourceDefinition` created adds its own, as a real server does.

use serde_json::{Value, json};

/// One resource of one group-version.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// `""` for the core group.
    pub group: String,
    /// The version served.
    pub version: String,
    /// The kind of its objects.
    pub kind: String,
    /// The plural name in paths.
    pub plural: String,
    /// The singular name.
    pub singular: String,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
    /// Short names kubectl accepts.
    pub short_names: Vec<String>,
    /// Subresources: `status`, `scale`.
    pub subresources: Vec<String>,
    /// A built-in kind: list items carry no `apiVersion`/`kind`, as the
    /// real server's typed lists do not.
    pub builtin: bool,
}

impl Resource {
    fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Resource {
        Resource {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: Vec::new(),
            subresources: Vec::new(),
            builtin: true,
        }
    }

    fn short(mut self, names: &[&str]) -> Resource {
        self.short_names = names.iter().map(|n| n.to_string()).collect();
        self
    }

    fn with(mut self, subresources: &[&str]) -> Resource {
        self.subresources = subresources.iter().map(|n| n.to_string()).collect();
        self
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether `status` is a subresource, so the main endpoint leaves it be.
    pub fn has_status(&self) -> bool {
        self.subresources.iter().any(|s| s == "status")
    }

    /// The entries of an `APIResourceList` for this resource.
    pub fn discovery(&self) -> Vec<Value> {
        let mut verbs = vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        if self.kind == "Event" {
            verbs.retain(|v| *v != "deletecollection");
        }
        let mut entries = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
            "shortNames": self.short_names,
            "storageVersionHash": "test",
        })];
        for sub in &self.subresources {
            entries.push(json!({
                "name": format!("{}/{sub}", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": if sub == "scale" { "Scale" } else { self.kind.as_str() },
                "group": if sub == "scale" { "autoscaling" } else { self.group.as_str() },
                "version": if sub == "scale" { "v1" } else { self.version.as_str() },
                "verbs": ["get", "patch", "update"],
            }));
        }
        entries
    }

    /// The resources a CRD object defines: one per served version.
    pub fn of_crd(crd: &Value) -> Vec<Resource> {
        let spec = &crd["spec"];
        let names = &spec["names"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let versions = spec["versions"].as_array().cloned().unwrap_or_default();
        versions
            .iter()
            .filter(|v| v["served"].as_bool().unwrap_or(true))
            .map(|v| Resource {
                group: text(&spec["group"]),
                version: text(&v["name"]),
                kind: text(&names["kind"]),
                plural: text(&names["plural"]),
                singular: names["singular"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| text(&names["kind"]).to_lowercase()),
                namespaced: spec["scope"] == "Namespaced",
                short_names: names["shortNames"]
                    .as_array()
                    .map(|a| a.iter().map(text).collect())
                    .unwrap_or_default(),
                subresources: v["subresources"]
                    .as_object()
                    .map(|s| s.keys().cloned().collect())
                    .unwrap_or_default(),
                builtin: false,
            })
            .collect()
    }
}

/// What a real server serves that the tests and Plumbline use.
pub fn builtins() -> Vec<Resource> {
    vec![
        Resource::builtin("", "v1", "Namespace", "namespaces", false)
            .short(&["ns"])
            .with(&["status"]),
        Resource::builtin("", "v1", "ConfigMap", "configmaps", true).short(&["cm"]),
        Resource::builtin("", "v1", "Secret", "secrets", true),
        Resource::builtin("", "v1", "Service", "services", true)
            .short(&["svc"])
            .with(&["status"]),
        Resource::builtin("", "v1", "ServiceAccount", "serviceaccounts", true).short(&["sa"]),
        Resource::builtin("", "v1", "Pod", "pods", true)
            .short(&["po"])
            .with(&["status"]),
        Resource::builtin("", "v1", "Event", "events", true).short(&["ev"]),
        Resource::builtin("apps", "v1", "Deployment", "deployments", true)
            .short(&["deploy"])
            .with(&["status", "scale"]),
        Resource::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
        ),
        Resource::builtin("coordination.k8s.io", "v1", "Lease", "leases", true),
        Resource::builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        )
        .short(&["crd", "crds"])
        .with(&["status"]),
    ]
}
