//! Where an object lives in a Git destination:
//! `{baseFolder}/{namespace|_cluster}/{group|core}/{resource}/{name}.yaml`.
//!
//! The depth is fixed, so any path under a base folder parses back to an
//! identity without guessing; the version is left out, so a change of an
//! API's preferred version does not move files. Every segment comes from an
//! object, so every segment is checked: a name that could leave the folder
//! (`..`, `/`, NUL, an absolute path, an over-long name) or that Git itself
//! refuses (`.git` in any disguise: `.GIT`, `git~1`, `.git.`, `.git `) is
//! refused with an error naming the object, and never written. What Git
//! refuses is asked of Git's own validation (gix's, the port of git's
//! `verify_path`), with the NTFS and HFS+ protections on whatever the OS,
//! since the repository is cloned everywhere.
//!
//! A file name holds at most 255 bytes on every common file system, and
//! `.yaml` takes five, so a name longer than 250 bytes (Kubernetes allows
//! 253) cannot be the file's name whole. Such a name is shortened, always
//! the same way: its first 233 bytes, `~`, and the first 16 hex digits of
//! the SHA-256 of the whole name (`{prefix}~{digest}.yaml`, 255 bytes).
//! The path alone cannot hold the whole name (the depth is fixed, so it
//! cannot spill into a folder), so the full name is recovered from the
//! file's own `metadata.name`, which the digest confirms
//! ([`FileKey::identity`]); names ending in `~` and 16 hex digits are
//! refused (Kubernetes names cannot hold a `~`), so that a path says on its
//! own whether its name was shortened, and parsing never guesses.

pub mod yaml;

use gix::bstr::BStr;
use gix::validate::path::component;
use sha2::{Digest as _, Sha256};

/// The folder of the cluster-scoped objects: no namespace can be named so,
/// since namespace names are DNS labels.
pub const CLUSTER: &str = "_cluster";
/// The folder of the core API group (whose name is empty).
pub const CORE: &str = "core";
/// Longest segment taken from an object: Kubernetes names are at most 253
/// characters.
const MAX_SEGMENT: usize = 253;
/// Longest path component (file or folder name) most file systems take.
pub const MAX_COMPONENT: usize = 255;
/// What follows an object's name in its file's name.
const SUFFIX: &str = ".yaml";
/// Before [`SUFFIX`], in the name of an encrypted object's file.
const SEALED: &str = ".sops";
/// Hex digits of the name's digest in a shortened file name.
const DIGEST_HEX: usize = 16;
/// Bytes of the name kept in a shortened file name.
const SHORT_PREFIX: usize = MAX_COMPONENT - SUFFIX.len() - 1 - DIGEST_HEX;

/// The protections Git applies when it checks a tree out: NTFS (`git~1`,
/// `.git.`, alternate streams) and HFS+ (ignorable code points, case) on
/// every OS, since the mirror's repository may be cloned on any. Windows'
/// reserved characters are not refused: `:` is in most RBAC objects' names
/// (`system:…`), and Git refuses those only on a Windows checkout.
const GIT_PROTECTIONS: component::Options = component::Options {
    protect_windows: false,
    protect_hfs: true,
    protect_ntfs: true,
};

pub use crate::model::ObjectKey;

/// Why one path segment is refused.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// Nothing between two slashes.
    #[error("empty path segment")]
    Empty,
    /// A path starting at the root.
    #[error("it must be relative to the repository")]
    Absolute,
    /// `.` or `..`.
    #[error("`.` and `..` could leave the folder")]
    Relative,
    /// A `/` or `\`.
    #[error("it contains a path separator")]
    Separator,
    /// A control character (NUL, a newline, …).
    #[error("it contains a control character")]
    Control,
    /// Longer than a segment may be.
    #[error("it is longer than {0} bytes")]
    TooLong(usize),
    /// Git's own validation refuses it.
    #[error("Git refuses it: {0}")]
    Git(component::Error),
    /// A name in the form reserved for shortened long names.
    #[error(
        "names ending in `~` and {DIGEST_HEX} hex digits are reserved for shortened long names"
    )]
    Reserved,
    /// A name that would read as another object's encrypted file.
    #[error(
        "names ending in `.sops` are reserved where objects are encrypted: its file would read as the encrypted file of the name without it"
    )]
    Sealed,
    /// A namespace named like the cluster-scoped folder.
    #[error("it is the cluster-scoped folder")]
    ClusterFolder,
    /// A group named like the core group's folder.
    #[error("it is the core group's folder")]
    CoreFolder,
}

/// A path that cannot be built, or written, safely.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A segment taken from an object could escape its folder, or Git
    /// refuses it.
    #[error("object {object}: refusing {what} `{value}`: {why}")]
    UnsafeSegment {
        /// The object whose field is at fault.
        object: String,
        /// Which field (`name`, `namespace`, …).
        what: &'static str,
        /// The value, escaped for printing.
        value: String,
        /// Why it is refused.
        why: SegmentError,
    },
    /// The destination's base folder is not a plain relative path.
    #[error("base folder `{value}`: {why}")]
    UnsafeBaseFolder {
        /// The base folder, escaped for printing.
        value: String,
        /// Why it is refused.
        why: SegmentError,
    },
    /// A path (from the queue) that Git cannot hold.
    #[error("path `{path}`: refusing `{segment}`: {why}")]
    UnsafePath {
        /// The path, escaped for printing.
        path: String,
        /// The segment at fault, escaped for printing.
        segment: String,
        /// Why it is refused.
        why: SegmentError,
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
            return Err(refuse(SegmentError::Absolute));
        }
        for segment in trimmed.split('/') {
            check_component(segment, MAX_COMPONENT).map_err(refuse)?;
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

/// Checks one component of a path, as Plumbline and Git both require.
fn check_component(segment: &str, max: usize) -> Result<(), SegmentError> {
    if segment.is_empty() {
        Err(SegmentError::Empty)
    } else if segment == "." || segment == ".." {
        Err(SegmentError::Relative)
    } else if segment.contains(['/', '\\']) {
        Err(SegmentError::Separator)
    } else if segment.chars().any(char::is_control) {
        Err(SegmentError::Control)
    } else if segment.len() > max {
        Err(SegmentError::TooLong(max))
    } else {
        component(BStr::new(segment), None, GIT_PROTECTIONS)
            .map(drop)
            .map_err(SegmentError::Git)
    }
}

/// Checks every component of `path` (a path in the repository, as the
/// queue holds it): whether Git can hold it and every OS check it out.
pub fn check_path(path: &str) -> Result<(), LayoutError> {
    for segment in path.split('/') {
        check_component(segment, MAX_COMPONENT).map_err(|why| LayoutError::UnsafePath {
            path: path.escape_debug().to_string(),
            segment: segment.escape_debug().to_string(),
            why,
        })?;
    }
    Ok(())
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
        check_component(namespace, MAX_SEGMENT)
            .map_err(|why| refuse("namespace", namespace, why))?;
        if namespace == CLUSTER {
            return Err(refuse("namespace", namespace, SegmentError::ClusterFolder));
        }
    }
    let group = if key.group.is_empty() {
        CORE
    } else {
        &key.group
    };
    check_component(group, MAX_SEGMENT).map_err(|why| refuse("group", group, why))?;
    if key.group == CORE {
        return Err(refuse("group", group, SegmentError::CoreFolder));
    }
    check_component(&key.resource, MAX_SEGMENT)
        .map_err(|why| refuse("resource", &key.resource, why))?;
    // The name as Git would see it were it a folder, and the file's name
    // as it will be written: both must pass.
    let name = &key.name;
    check_component(name, MAX_SEGMENT).map_err(|why| refuse("name", name, why))?;
    if shortened_parts(name).is_some() {
        return Err(refuse("name", name, SegmentError::Reserved));
    }
    let file = file_name(name);
    check_component(&file, MAX_COMPONENT).map_err(|why| refuse("name", name, why))?;
    let relative = format!("{namespace}/{group}/{}/{file}", key.resource);
    Ok(if base.0.is_empty() {
        relative
    } else {
        format!("{}/{relative}", base.0)
    })
}

/// The file of `key` under `base` when encrypted (the `sops` step):
/// `{name}.sops.yaml` beside where its file would be, as SOPS's own tools
/// name what they encrypt.
pub fn sealed_path_of(base: &BaseFolder, key: &ObjectKey) -> Result<String, LayoutError> {
    let plain = path_of(base, key)?;
    if key.name.ends_with(SEALED) {
        return Err(LayoutError::UnsafeSegment {
            object: key.to_string().escape_debug().to_string(),
            what: "name",
            value: key.name.escape_debug().to_string(),
            why: SegmentError::Sealed,
        });
    }
    let stem = plain.strip_suffix(SUFFIX).unwrap_or(&plain);
    let sealed = format!("{stem}{SEALED}{SUFFIX}");
    check_path(&sealed)?;
    Ok(sealed)
}

/// The file name of an object named `name`: `{name}.yaml`, or its
/// shortened form when that would pass [`MAX_COMPONENT`] bytes.
fn file_name(name: &str) -> String {
    if name.len() + SUFFIX.len() <= MAX_COMPONENT {
        return format!("{name}{SUFFIX}");
    }
    let mut cut = SHORT_PREFIX;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{}{SUFFIX}", &name[..cut], digest(name))
}

fn digest(name: &str) -> String {
    let mut hex = hex::encode(Sha256::digest(name.as_bytes()));
    hex.truncate(DIGEST_HEX);
    hex
}

/// `(prefix, digest)` if `stem` is in the shortened form.
fn shortened_parts(stem: &str) -> Option<(&str, &str)> {
    let (prefix, digest) = stem.rsplit_once('~')?;
    let hex = digest.len() == DIGEST_HEX
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (hex && !prefix.is_empty()).then_some((prefix, digest))
}

/// An object's name as its file's name holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FileName {
    /// The whole name.
    Full(String),
    /// A name too long for a file name: its first bytes and the digest of
    /// the whole name.
    Shortened {
        /// The name's first bytes.
        prefix: String,
        /// The first hex digits of the SHA-256 of the whole name.
        digest: String,
    },
}

impl FileName {
    /// Whether an object named `name` has this file name.
    pub fn is(&self, name: &str) -> bool {
        match self {
            FileName::Full(full) => full == name,
            FileName::Shortened { prefix, digest: d } => {
                name.starts_with(prefix.as_str())
                    && file_name(name) == format!("{prefix}~{d}{SUFFIX}")
            }
        }
    }
}

/// What a path under a base folder says of the object it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// Namespace; none for a cluster-scoped object.
    pub namespace: Option<String>,
    /// API group; empty for the core group.
    pub group: String,
    /// Plural resource.
    pub resource: String,
    /// The name, whole or shortened.
    pub name: FileName,
}

impl FileKey {
    /// The identity of the object in the file, given the file's own
    /// `metadata.name`: needed for a shortened name (and checked against
    /// its digest), checked against the path for a whole one. `None` when
    /// the two disagree, or a shortened name has no `metadata.name`.
    pub fn identity(&self, metadata_name: Option<&str>) -> Option<ObjectKey> {
        let name = match (&self.name, metadata_name) {
            (FileName::Full(full), None) => full.clone(),
            (name, Some(given)) if name.is(given) => given.to_owned(),
            _ => return None,
        };
        Some(ObjectKey {
            namespace: self.namespace.clone(),
            group: self.group.clone(),
            resource: self.resource.clone(),
            name,
        })
    }
}

/// What a path under `base` stands for, or `None` for a file that is not
/// one of ours (a README, a file at another depth).
pub fn key_of(base: &BaseFolder, path: &str) -> Option<FileKey> {
    let relative = if base.0.is_empty() {
        path
    } else {
        path.strip_prefix(&base.0)?.strip_prefix('/')?
    };
    let parts: Vec<&str> = relative.split('/').collect();
    let [namespace, group, resource, file] = parts[..] else {
        return None;
    };
    let stem = file.strip_suffix(SUFFIX)?;
    let name = match shortened_parts(stem) {
        Some((prefix, digest)) => FileName::Shortened {
            prefix: prefix.to_owned(),
            digest: digest.to_owned(),
        },
        None => FileName::Full(stem.to_owned()),
    };
    Some(FileKey {
        namespace: (namespace != CLUSTER).then(|| namespace.to_owned()),
        group: if group == CORE {
            String::new()
        } else {
            group.to_owned()
        },
        resource: resource.to_owned(),
        name,
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
    fn an_encrypted_objects_file_is_beside_its_plain_one_and_as_safe() {
        let base = BaseFolder::new("live").unwrap();
        let secret = key(Some("shop"), "", "secrets", "db");
        assert_eq!(
            sealed_path_of(&base, &secret).unwrap(),
            "live/shop/core/secrets/db.sops.yaml"
        );
        // A name whose file name is just short enough for `.yaml` is too
        // long for `.sops.yaml`: refused, not cut.
        let long = "a".repeat(MAX_COMPONENT - SUFFIX.len());
        assert!(path_of(&base, &key(Some("shop"), "", "secrets", &long)).is_ok());
        assert!(sealed_path_of(&base, &key(Some("shop"), "", "secrets", &long)).is_err());
        // `x.sops.yaml` is `x` encrypted: no object named `x.sops` has it.
        let said = sealed_path_of(&base, &key(Some("shop"), "", "secrets", "x.sops"))
            .unwrap_err()
            .to_string();
        assert!(said.contains("reserved"), "{said}");
    }

    #[test]
    fn paths_round_trip() {
        let base = BaseFolder::new("clusters/prod/").unwrap();
        for k in [
            key(Some("shop"), "apps", "deployments", "web"),
            key(None, "", "namespaces", "shop"),
            key(
                None,
                "rbac.authorization.k8s.io",
                "clusterroles",
                "system:aggregate-to-admin",
            ),
        ] {
            let path = path_of(&base, &k).unwrap();
            assert_eq!(key_of(&base, &path).unwrap().identity(None), Some(k));
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
        for bad in [
            "/abs", "a/../b", "a//b", "..", "x/.git", "x/.GIT", "git~1/x",
        ] {
            assert!(BaseFolder::new(bad).is_err(), "{bad}");
        }
    }

    /// gix refused the tree of a namespace or group Git will not check
    /// out, after the name check had let it through, and the worker
    /// retried it for ever.
    #[test]
    fn names_git_refuses_are_refused_per_object_with_a_message() {
        let base = BaseFolder::default();
        let disguises = [
            ".GIT",
            ".Git",
            "git~1",
            "GIT~1",
            ".git.",
            ".git ",
            ".git...",
            ".git::$INDEX_ALLOCATION",
            // HFS+ ignores zero-width code points when comparing names.
            ".g\u{200c}it",
        ];
        for bad in disguises {
            let as_namespace = path_of(&base, &key(Some(bad), "", "configmaps", "a")).unwrap_err();
            let text = as_namespace.to_string();
            assert!(
                text.starts_with(&format!(
                    "object configmaps.core {}/a: refusing namespace",
                    bad.escape_debug()
                )) && text.contains("Git refuses it"),
                "{text}"
            );
            let as_group = path_of(&base, &key(None, bad, "widgets", "a")).unwrap_err();
            assert!(
                as_group.to_string().contains("refusing group"),
                "{as_group}"
            );
            let as_resource = path_of(&base, &key(None, "example.com", bad, "a")).unwrap_err();
            assert!(
                as_resource.to_string().contains("refusing resource"),
                "{as_resource}"
            );
            let as_name = path_of(&base, &key(Some("ns"), "", "configmaps", bad)).unwrap_err();
            assert!(as_name.to_string().contains("refusing name"), "{as_name}");
            assert!(
                check_path(&format!("{bad}/core/configmaps/a.yaml")).is_err(),
                "{bad}"
            );
        }
        // What merely resembles them is fine.
        for fine in [".github", "gitops", "git-1", "my.git.repo"] {
            path_of(&base, &key(Some(fine), fine, "configmaps", fine)).unwrap();
            check_path(&format!("{fine}/core/configmaps/{fine}.yaml")).unwrap();
        }
        assert!(check_path("ns/core/configmaps/a.yaml").is_ok());
        assert!(check_path(&format!("ns/core/configmaps/{}", "x".repeat(256))).is_err());
    }

    /// Names of 251–253 characters made the file name pass 255 bytes, and
    /// the repository could not be checked out.
    #[test]
    fn long_names_are_shortened_within_255_bytes_and_parse_back() {
        let base = BaseFolder::new("clusters/prod").unwrap();
        let mut files = std::collections::HashSet::new();
        for length in [250, 251, 252, 253] {
            for fill in ['a', 'b'] {
                // Names that share their first 233 bytes still differ.
                let name = format!(
                    "{}{}",
                    "n".repeat(240),
                    fill.to_string().repeat(length - 240)
                );
                let k = key(Some("ns"), "apps", "deployments", &name);
                let path = path_of(&base, &k).unwrap();
                let file = path.rsplit('/').next().unwrap();
                assert!(
                    file.len() <= MAX_COMPONENT,
                    "{length}: {} bytes",
                    file.len()
                );
                check_path(&path).unwrap();
                assert!(files.insert(file.to_owned()), "{file} twice");
                let parsed = key_of(&base, &path).unwrap();
                if length <= 250 {
                    assert_eq!(parsed.name, FileName::Full(name.clone()));
                    assert_eq!(parsed.identity(None), Some(k.clone()));
                } else {
                    assert!(
                        matches!(parsed.name, FileName::Shortened { .. }),
                        "{length}"
                    );
                    assert_eq!(file.len(), MAX_COMPONENT);
                    // The file's own metadata.name completes it, and only the
                    // right name does.
                    assert_eq!(parsed.identity(None), None);
                    assert_eq!(parsed.identity(Some(&name)), Some(k.clone()));
                    let other = format!("{}x", &name[..name.len() - 1]);
                    assert_eq!(parsed.identity(Some(&other)), None);
                }
                // Deterministic.
                assert_eq!(path_of(&base, &k).unwrap(), path);
            }
        }
        // A multi-byte character is never cut in half.
        let name = format!("{}é{}", "n".repeat(232), "x".repeat(19));
        let path = path_of(&base, &key(Some("ns"), "", "configmaps", &name)).unwrap();
        assert!(path.rsplit('/').next().unwrap().len() <= MAX_COMPONENT);
        // The shortened form is reserved.
        let reserved = format!("web~{}", "0123456789abcdef");
        let error = path_of(&base, &key(Some("ns"), "", "configmaps", &reserved)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("reserved for shortened long names"),
            "{error}"
        );
        // Folders near the limit need no shortening.
        let group = format!("{}.example.com", "g".repeat(253 - 12));
        let path = path_of(&base, &key(Some(&"s".repeat(63)), &group, "widgets", "w")).unwrap();
        check_path(&path).unwrap();
    }
}
