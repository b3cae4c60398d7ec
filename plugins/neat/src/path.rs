//! Paths into a JSON object, written the way people read Kubernetes fields:
//! `spec.ports[*].targetPort`, `metadata.annotations['kubectl.kubernetes.io/last-applied-configuration']`,
//! and `**.metadata.creationTimestamp` for a field at any depth (every
//! embedded template, whatever kind or custom resource holds it).
//!
//! A path is walked straight from its text, without building a list of
//! segments first: the neat plugin runs in a fresh instance for every object,
//! so anything it would allocate per rule it pays for on every call.

/// One step of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// A key of an object.
    Key(&'a str),
    /// Every element of an array (`[*]`).
    Each,
    /// This value and every value under it, at any depth (`**`).
    Deep,
}

/// Splits the next segment off `path`; `None` when the path is exhausted.
///
/// Returns an error message naming the path when it cannot be read, so a
/// mistyped rule in the settings is refused at load.
pub fn next(path: &str) -> Result<Option<(Segment<'_>, &str)>, String> {
    let path = path.strip_prefix('.').unwrap_or(path);
    if path.is_empty() {
        return Ok(None);
    }
    if let Some(rest) = path.strip_prefix("[*]") {
        return Ok(Some((Segment::Each, rest)));
    }
    if let Some(rest) = path.strip_prefix("**") {
        if !(rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')) {
            return Err(format!("`**` must be a whole segment in path `{path}`"));
        }
        return Ok(Some((Segment::Deep, rest)));
    }
    if let Some(quoted) = path.strip_prefix("['") {
        let end = quoted
            .find("']")
            .ok_or_else(|| format!("unterminated ['…'] in path `{path}`"))?;
        return Ok(Some((Segment::Key(&quoted[..end]), &quoted[end + 2..])));
    }
    let end = path.find(['.', '[']).unwrap_or(path.len());
    if end == 0 {
        return Err(format!("empty key in path `{path}`"));
    }
    Ok(Some((Segment::Key(&path[..end]), &path[end..])))
}

/// Checks that the whole path reads, for settings validation.
pub fn validate(path: &str) -> Result<(), String> {
    let mut rest = path;
    if rest.is_empty() {
        return Err("empty path".to_owned());
    }
    while let Some((_, tail)) = next(rest)? {
        rest = tail;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(path: &str) -> Vec<Segment<'_>> {
        let mut out = Vec::new();
        let mut rest = path;
        while let Some((seg, tail)) = next(rest).unwrap() {
            out.push(seg);
            rest = tail;
        }
        out
    }

    #[test]
    fn reads_keys_wildcards_and_quoted_keys() {
        use Segment::*;
        assert_eq!(
            all("spec.ports[*].targetPort"),
            [Key("spec"), Key("ports"), Each, Key("targetPort")]
        );
        assert_eq!(
            all("metadata.annotations['kubectl.kubernetes.io/last-applied-configuration']"),
            [
                Key("metadata"),
                Key("annotations"),
                Key("kubectl.kubernetes.io/last-applied-configuration")
            ]
        );
        assert_eq!(all("finalizers[*]"), [Key("finalizers"), Each]);
        assert_eq!(
            all("**.metadata.creationTimestamp"),
            [Deep, Key("metadata"), Key("creationTimestamp")]
        );
    }

    #[test]
    fn refuses_broken_paths() {
        assert!(validate("metadata.annotations['oops").is_err());
        assert!(validate("a..b").is_err());
        assert!(validate("").is_err());
        assert!(validate("**x.y").is_err());
    }
}
