//! Where an object lives in a Git destination:
//! `{baseFolder}/{namespace|_cluster}/{group|core}/{resource}/{name}.yaml`.
//!
//! The depth is fixed, so any path under a base folder parses back to an
//! identity without guessing; the version is left out, so a change of an
//! API's preferred version does not move files. Every segment comes from an
//! object, so every segment is checked: a name that could leave the folder
//! (`..`, `/`, NUL, an absolute path, an over-long name) is refused with an
//! error naming the object, and never written.

use std::fmt;

/// The folder of the cluster-scoped objects: no namespace can be named so,
/// since namespace names are DNS labels.
pub const CLUSTER: &str = "_cluster";
/// The folder of the core API group (whose name is empty).
pub const CORE: &str = "core";
/// Longest segment accepted: Kubernetes names are at most 253 characters.
const MAX_SEGMENT: usize = 253;

/// What identifies an object's file, versionless.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Namespace; none for a cluster-scoped object.
    pub namespace: Option<String>,
    /// API group; empty for the core group.
    pub group: String,
    /// Plural resource.
    pub resource: String,
    /// Object name.
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = if self.group.is_empty() {
            CORE
        } else {
            &self.group
        };
        match &self.namespace {
            Some(ns) => write!(f, "{}.{group} {ns}/{}", self.resource, self.name),
            None => write!(f, "{}.{group} {}", self.resource, self.name),
        }
    }
}

/// A path that cannot be built safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// A segment taken from an object could escape its folder.
    #[error("object {object}: refusing {what} `{value}`: {why}")]
    UnsafeSegment {
        /// The object whose field is at fault.
        object: String,
        /// Which field (`name`, `namespace`, …).
        what: &'static str,
        /// The value, escaped for printing.
        value: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// The destination's base folder is not a plain relative path.
    #[error("base folder `{value}`: {why}")]
    UnsafeBaseFolder {
        /// The base folder, escaped for printing.
        value: String,
        /// Why it is refused.
        why: &'static str,
    },
}

/// A validated base folder: relative, without `.` or `..` segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct BaseFolder(String);

impl BaseFolder {
    /// Checks a base folder; the empty string is the repository's root.
    pub fn new(value: &str) -> Result<BaseFolder, LayoutError> {
        let trimmed = value.trim_end_matches('/');
        if trimmed.is_empty() {
            return Ok(BaseFolder(String::new()));
        }
        let refuse = |why| LayoutError::UnsafeBaseFolder {
            value: value.escape_debug().to_string(),
            why,
        };
        if trimmed.starts_with('/') {
            return Err(refuse("it must be relative to the repository"));
        }
        for segment in trimmed.split('/') {
            check_segment(segment).map_err(refuse)?;
        }
        Ok(BaseFolder(trimmed.to_owned()))
    }

    /// The folder, without a trailing slash; empty for the root.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `path` lies under this folder.
    pub fn contains(&self, path: &str) -> bool {
        self.0.is_empty()
            || path
                .strip_prefix(&self.0)
                .is_some_and(|r| r.starts_with('/'))
    }
}

fn check_segment(segment: &str) -> Result<(), &'static str> {
    if segment.is_empty() {
        Err("empty path segment")
    } else if segment == "." || segment == ".." {
        Err("`.` and `..` could leave the folder")
    } else if segment.contains(['/', '\\']) {
        Err("it contains a path separator")
    } else if segment.chars().any(char::is_control) {
        Err("it contains a control character")
    } else if segment.len() > MAX_SEGMENT {
        Err("it is longer than 253 bytes")
    } else if segment == ".git" {
        Err("`.git` is Git's own folder")
    } else {
        Ok(())
    }
}

/// The file of `key` under `base`.
pub fn path_of(base: &BaseFolder, key: &ObjectKey) -> Result<String, LayoutError> {
    let refuse = |what, value: &str, why| LayoutError::UnsafeSegment {
        object: key.to_string().escape_debug().to_string(),
        what,
        value: value.escape_debug().to_string(),
        why,
    };
    let namespace = key.namespace.as_deref().unwrap_or(CLUSTER);
    if key.namespace.is_some() {
        check_segment(namespace).map_err(|why| refuse("namespace", namespace, why))?;
        if namespace == CLUSTER {
            return Err(refuse(
                "namespace",
                namespace,
                "it is the cluster-scoped folder",
            ));
        }
    }
    let group = if key.group.is_empty() {
        CORE
    } else {
        &key.group
    };
    check_segment(group).map_err(|why| refuse("group", group, why))?;
    if key.group == CORE {
        return Err(refuse("group", group, "it is the core group's folder"));
    }
    check_segment(&key.resource).map_err(|why| refuse("resource", &key.resource, why))?;
    check_segment(&key.name).map_err(|why| refuse("name", &key.name, why))?;
    let relative = format!("{namespace}/{group}/{}/{}.yaml", key.resource, key.name);
    Ok(if base.0.is_empty() {
        relative
    } else {
        format!("{}/{relative}", base.0)
    })
}

/// The identity a path under `base` stands for, or `None` for a file that
/// is not one of ours (a README, a file at another depth).
pub fn key_of(base: &BaseFolder, path: &str) -> Option<ObjectKey> {
    let relative = if base.0.is_empty() {
        path
    } else {
        path.strip_prefix(&base.0)?.strip_prefix('/')?
    };
    let parts: Vec<&str> = relative.split('/').collect();
    let [namespace, group, resource, file] = parts[..] else {
        return None;
    };
    let name = file.strip_suffix(".yaml")?;
    Some(ObjectKey {
        namespace: (namespace != CLUSTER).then(|| namespace.to_owned()),
        group: if group == CORE {
            String::new()
        } else {
            group.to_owned()
        },
        resource: resource.to_owned(),
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: Option<&str>, group: &str, resource: &str, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: ns.map(str::to_owned),
            group: group.into(),
            resource: resource.into(),
            name: name.into(),
        }
    }

    #[test]
    fn paths_round_trip() {
        let base = BaseFolder::new("clusters/prod/").unwrap();
        for k in [
            key(Some("shop"), "apps", "deployments", "web"),
            key(None, "", "namespaces", "shop"),
        ] {
            let path = path_of(&base, &k).unwrap();
            assert_eq!(key_of(&base, &path), Some(k));
        }
        assert_eq!(
            path_of(&base, &key(None, "", "namespaces", "shop")).unwrap(),
            "clusters/prod/_cluster/core/namespaces/shop.yaml"
        );
        assert_eq!(key_of(&base, "clusters/prod/README.md"), None);
        assert_eq!(
            key_of(&base, "elsewhere/_cluster/core/namespaces/a.yaml"),
            None
        );
    }

    #[test]
    fn traversal_is_refused() {
        let base = BaseFolder::default();
        for name in [
            "..",
            "../../etc/passwd",
            "a/b",
            "nul\0byte",
            ".git",
            &"x".repeat(254),
        ] {
            let error = path_of(&base, &key(Some("ns"), "", "configmaps", name)).unwrap_err();
            assert!(
                error.to_string().starts_with("object configmaps.core ns/"),
                "{error}"
            );
        }
        assert!(path_of(&base, &key(Some(".."), "", "configmaps", "a")).is_err());
        assert!(path_of(&base, &key(Some("_cluster"), "", "configmaps", "a")).is_err());
        for bad in ["/abs", "a/../b", "a//b", "..", "x/.git"] {
            assert!(BaseFolder::new(bad).is_err(), "{bad}");
        }
    }
}
