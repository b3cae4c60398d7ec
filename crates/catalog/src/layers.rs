//! Finding a workflow's schema in its image's layers without unpacking the
//! image: each layer is read as a stream (tar, gzip or zstd), from the top
//! layer down, and the search stops at the first layer that holds one of
//! the configured paths. Whiteouts are respected: a `.wh.<name>` entry
//! hides `<name>` in the layers below it, and a `.wh..wh..opq` entry hides
//! everything its folder held below it.
//!
//! Every cap is an error that names itself: the schema file's size, the
//! layers read, and the bytes read in all.

use std::collections::BTreeSet;
use std::io::Read;

/// The paths a schema is looked for at, in order of preference.
pub const DEFAULT_PATHS: &[&str] = &[
    "/workflow-schema.yaml",
    "/playbook-schema.json",
    "/action-contract.yaml",
];

/// What reading may cost.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// The largest schema file taken.
    pub max_file_bytes: u64,
    /// Most layers read before giving up.
    pub max_layers: usize,
    /// Most bytes read from all layers (as the registry sends them).
    pub max_read_bytes: u64,
}

impl Default for Caps {
    fn default() -> Caps {
        Caps {
            max_file_bytes: 1 << 20,
            max_layers: 64,
            max_read_bytes: 512 << 20,
        }
    }
}

/// How a layer is compressed, by its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tarball.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// The compression of a layer of `media_type`; `None` for a media
    /// type that is no filesystem layer.
    pub fn of(media_type: &str) -> Option<Compression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(Compression::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// The schema file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Which of the paths it was at.
    pub path: String,
    /// Its content.
    pub bytes: Vec<u8>,
    /// The layer it is in, counted from the top (0).
    pub layer: usize,
}

/// Why the layers could not be searched.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A cap was reached.
    #[error("{0}")]
    Cap(String),
    /// A layer's media type is no filesystem layer.
    #[error("layer {layer} has media type `{media_type}`, which is no filesystem layer")]
    MediaType {
        /// The layer, from the top.
        layer: usize,
        /// Its media type.
        media_type: String,
    },
    /// A layer could not be read (a broken tarball, a failed download).
    #[error("reading layer {layer}: {source}")]
    Read {
        /// The layer, from the top.
        layer: usize,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// One layer to read: its media type and its bytes as they come.
pub struct Layer<'a> {
    /// The layer's media type.
    pub media_type: String,
    /// Its (compressed) content.
    pub content: Box<dyn Read + 'a>,
}

/// What upper layers hide from lower ones.
#[derive(Default)]
struct Hidden {
    /// Paths whited out.
    paths: BTreeSet<String>,
    /// Folders made opaque.
    folders: BTreeSet<String>,
}

impl Hidden {
    fn hides(&self, path: &str) -> bool {
        if self.paths.contains(path) {
            return true;
        }
        let mut at = path;
        while let Some((parent, _)) = at.rsplit_once('/') {
            let folder = if parent.is_empty() { "/" } else { parent };
            if self.paths.contains(folder) || self.folders.contains(folder) {
                return true;
            }
            at = parent;
        }
        false
    }
}

/// The first of `paths` found in `layers`, given from the top layer down;
/// `None` when no layer holds any.
pub fn find<'a>(
    layers: impl IntoIterator<Item = Layer<'a>>,
    paths: &[&str],
    caps: Caps,
) -> Result<Option<Found>, LayerError> {
    let mut hidden = Hidden::default();
    let budget = std::rc::Rc::new(std::cell::Cell::new(caps.max_read_bytes));
    for (index, layer) in layers.into_iter().enumerate() {
        if index >= caps.max_layers {
            return Err(LayerError::Cap(format!(
                "none of {} in the top {} layers (the cap on layers read)",
                paths.join(", "),
                caps.max_layers
            )));
        }
        let compression =
            Compression::of(&layer.media_type).ok_or_else(|| LayerError::MediaType {
                layer: index,
                media_type: layer.media_type.clone(),
            })?;
        let counted = Counted {
            inner: layer.content,
            left: budget.clone(),
            cap: caps.max_read_bytes,
        };
        let stream: Box<dyn Read + 'a> = match compression {
            Compression::None => Box::new(counted),
            Compression::Gzip => Box::new(flate2::read::GzDecoder::new(counted)),
            Compression::Zstd => Box::new(
                ruzstd::decoding::StreamingDecoder::new(counted)
                    .map_err(|e| read_error(index, std::io::Error::other(e.to_string())))?,
            ),
        };
        let (found, lower) = search(stream, paths, &hidden, caps, index)?;
        if let Some(found) = found {
            return Ok(Some(found));
        }
        hidden.paths.extend(lower.paths);
        hidden.folders.extend(lower.folders);
    }
    Ok(None)
}

fn read_error(layer: usize, source: std::io::Error) -> LayerError {
    LayerError::Read { layer, source }
}

/// Reads one layer: the best of `paths` it holds that upper layers do not
/// hide, and what it hides from the layers below.
fn search(
    stream: impl Read,
    paths: &[&str],
    hidden: &Hidden,
    caps: Caps,
    layer: usize,
) -> Result<(Option<Found>, Hidden), LayerError> {
    let mut archive = tar::Archive::new(stream);
    let mut lower = Hidden::default();
    let mut best: Option<(usize, Found)> = None;
    let entries = archive.entries().map_err(|e| read_error(layer, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| read_error(layer, e))?;
        let raw = entry.path().map_err(|e| read_error(layer, e))?;
        let path = absolute(&raw.to_string_lossy());
        let (folder, name) = path.rsplit_once('/').unwrap_or(("", &path));
        let folder = if folder.is_empty() { "/" } else { folder };
        // Only what could hide one of `paths` is kept: a layer of a million
        // whiteouts costs no memory.
        if name == ".wh..wh..opq" {
            if covers(folder, paths) {
                lower.folders.insert(folder.to_owned());
            }
            continue;
        }
        if let Some(gone) = name.strip_prefix(".wh.") {
            let gone = if folder == "/" {
                format!("/{gone}")
            } else {
                format!("{folder}/{gone}")
            };
            if covers(&gone, paths) {
                lower.paths.insert(gone);
            }
            continue;
        }
        let Some(rank) = paths.iter().position(|p| *p == path) else {
            continue;
        };
        if hidden.hides(&path) || !entry.header().entry_type().is_file() {
            continue;
        }
        if best.as_ref().is_some_and(|(r, _)| *r <= rank) {
            continue;
        }
        let size = entry.header().size().map_err(|e| read_error(layer, e))?;
        if size > caps.max_file_bytes {
            return Err(LayerError::Cap(format!(
                "{path} in layer {layer} is {size} bytes; the cap on a schema file is {}",
                caps.max_file_bytes
            )));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| read_error(layer, e))?;
        best = Some((rank, Found { path, bytes, layer }));
    }
    Ok((best.map(|(_, found)| found), lower))
}

/// Whether `path` is one of `paths` or a folder above one.
fn covers(path: &str, paths: &[&str]) -> bool {
    path == "/"
        || paths.iter().any(|wanted| {
            *wanted == path
                || wanted
                    .strip_prefix(path)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
}

/// A tar entry's path as an absolute path without `.` parts.
fn absolute(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// A reader that fails once more than its share of the shared budget is
/// read.
struct Counted<'a> {
    inner: Box<dyn Read + 'a>,
    left: std::rc::Rc<std::cell::Cell<u64>>,
    cap: u64,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let left = self.left.get();
        if n as u64 > left {
            return Err(std::io::Error::other(format!(
                "more than {} bytes read from the layers (the cap on bytes read)",
                self.cap
            )));
        }
        self.left.set(left - n as u64);
        Ok(n)
    }
}
