//! The operator's policy configuration: YAML, read raw (serde, unknown
//! fields refused, no I/O), then loaded in one step that reads components,
//! compiles them and every CEL expression, and reports every error at once.
//!
//! ```yaml
//! limits:
//!   deadlineMs: 100        # per plugin call
//!   memoryMiB: 64          # per plugin instance
//!   celDeadlineMs: 50      # per CEL expression with comprehensions
//!   celMaxInputBytes: 1048576
//! decisions:
//!   sanitize:
//!     failure: closed      # or open
//!     steps:
//!       - plugin: neat                     # a built-in plugin …
//!       - plugin: ./plugins/my.wasm        # … or a component file
//!         name: my-sanitizer
//!         settings: { mode: strict }
//!         grants: { environment: [HOME] }
//!       - cel:
//!           name: skip-ignored
//!           expression: "!has(object.metadata.annotations) || object.metadata.annotations['plumbline.io/ignore'] != 'true'"
//!       - celFile: policies/examples/sanitize-skip-ignored.yaml
//!       - bundle: team                     # the bundle's sanitize steps, here
//! bundles:
//!   team:
//!     reference: registry.example.com/policies/team:v1   # a tag or a digest
//!     grants: { my-plugin: { network: true } }           # per bundled plugin
//! bundleRefreshSeconds: 30  # how often tags are resolved again
//! ```
//!
//! A decision the file does not mention keeps its default chain.

use super::Decision;
use super::builtin;
use super::bundled::{BundleContent, BundleStepKind};
use super::capability::Grants;
use super::cel::{CelLimits, CelPolicy, CelSource, RawCel};
use super::chain::{Chain, KindSet, PolicySet, Step};
use super::error::PolicyError;
pub use super::raw::{RawBundle, RawChain, RawConfig, RawLimits, RawStep, RawVerify};
use super::runtime::{PluginSource, Runtime, RuntimeConfig};
use super::store::Limits;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration read and checked for shape, ready to load.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    raw: RawConfig,
    /// Where the configuration came from; relative paths are resolved from its folder.
    origin: PathBuf,
    base: PathBuf,
}

impl PolicyConfig {
    /// The built-in default configuration.
    pub fn builtin() -> PolicyConfig {
        PolicyConfig::from_yaml(
            builtin::DEFAULT_CONFIG,
            Path::new("(built-in default policy)"),
        )
        .expect("the built-in policy configuration is valid")
    }

    /// Reads a configuration file.
    pub fn from_file(path: &Path) -> Result<PolicyConfig, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.to_owned(),
            source,
        })?;
        PolicyConfig::from_yaml(&text, path)
    }

    /// Reads a configuration from YAML text; `origin` names it in messages and
    /// anchors relative paths.
    pub fn from_yaml(text: &str, origin: &Path) -> Result<PolicyConfig, PolicyError> {
        let base = origin
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned();
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| PolicyError::Config {
            path: origin.to_owned(),
            // serde stops at the first error; list them all.
            errors: super::shape::every_error(text, &base, e.to_string()),
        })?;
        let mut config = PolicyConfig {
            raw,
            origin: origin.to_owned(),
            base,
        };
        config.fill_defaults();
        Ok(config)
    }

    /// Decisions the file leaves out keep the built-in chain.
    fn fill_defaults(&mut self) {
        if self.origin == Path::new("(built-in default policy)") {
            return;
        }
        let defaults = PolicyConfig::builtin();
        for (decision, chain) in defaults.raw.decisions {
            self.raw.decisions.entry(decision).or_insert(chain);
        }
    }

    /// The runtime settings this configuration asks for.
    pub fn runtime_config(&self, cache_dir: Option<PathBuf>) -> RuntimeConfig {
        let defaults = Limits::default();
        let limits = &self.raw.limits;
        RuntimeConfig {
            limits: Limits {
                deadline: limits
                    .deadline_ms
                    .map_or(defaults.deadline, Duration::from_millis),
                memory: limits
                    .memory_mib
                    .map_or(defaults.memory, |m| (m as usize) << 20),
            },
            cache_dir,
            ..RuntimeConfig::default()
        }
    }

    /// The CEL limits this configuration sets (the defaults where it is
    /// silent).
    pub fn cel_limits(&self) -> CelLimits {
        let defaults = CelLimits::default();
        CelLimits {
            deadline: self
                .raw
                .limits
                .cel_deadline_ms
                .map_or(defaults.deadline, Duration::from_millis),
            max_input: self
                .raw
                .limits
                .cel_max_input_bytes
                .unwrap_or(defaults.max_input),
        }
    }

    /// The bundles this configuration references, by name.
    pub fn bundles(&self) -> &BTreeMap<String, RawBundle> {
        &self.raw.bundles
    }

    /// How often bundle tags are resolved again.
    pub fn bundle_refresh(&self) -> Duration {
        Duration::from_secs(self.raw.bundle_refresh_seconds.unwrap_or(30).max(1))
    }

    /// Where the configuration came from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// Adds a bundle whose steps are appended to every chain they answer,
    /// its plugins granted `grants` (by name).
    pub fn append_bundle(&mut self, name: &str, reference: &str, grants: BTreeMap<String, Grants>) {
        self.raw.bundles.insert(
            name.to_owned(),
            RawBundle {
                reference: reference.to_owned(),
                grants,
                append: true,
                verify: None,
            },
        );
    }

    /// The folder relative paths of this configuration are read from.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Loads every plugin and CEL policy into a policy set, or lists every
    /// error found. A configuration that references bundles needs
    /// [`PolicyConfig::load_with_bundles`].
    pub fn load(&self, runtime: &Runtime) -> Result<PolicySet, PolicyError> {
        self.load_with_bundles(runtime, &BTreeMap::new())
    }

    /// Loads the configuration with the content of its bundles, by name.
    pub fn load_with_bundles(
        &self,
        runtime: &Runtime,
        bundles: &BTreeMap<String, BundleContent>,
    ) -> Result<PolicySet, PolicyError> {
        let mut errors = Vec::new();
        let mut chains = Vec::new();
        let mut used = std::collections::BTreeSet::new();
        for decision in Decision::ALL {
            let Some(raw) = self.raw.decisions.get(&decision) else {
                continue;
            };
            let mut steps = Vec::new();
            let appended = self.raw.bundles.iter().filter(|(_, b)| b.append);
            let appended = appended.map(|(name, _)| RawStep {
                bundle: Some(name.clone()),
                ..RawStep::default()
            });
            let all: Vec<RawStep> = raw.steps.iter().cloned().chain(appended).collect();
            for (i, step) in all.iter().enumerate() {
                if let Some(name) = &step.bundle {
                    used.insert(name.clone());
                }
                let loaded = kinds_of(decision, step)
                    .and_then(|only| Ok((self.load_step(runtime, decision, step, bundles)?, only)));
                match loaded {
                    Ok((loaded, only)) => {
                        steps.extend(loaded.into_iter().map(|s| (s, only.clone())));
                    }
                    Err(e) => errors.push(format!("decisions.{decision}.steps[{i}]: {e}")),
                }
            }
            chains.push(Chain::with_kinds(decision, raw.failure, steps));
        }
        for name in self.raw.bundles.keys().filter(|n| !used.contains(*n)) {
            errors.push(format!("bundles.{name}: no `bundle: {name}` step uses it"));
        }
        if errors.is_empty() {
            Ok(PolicySet::new(chains))
        } else {
            Err(PolicyError::Config {
                path: self.origin.clone(),
                errors,
            })
        }
    }

    fn load_step(
        &self,
        runtime: &Runtime,
        decision: Decision,
        step: &RawStep,
        bundles: &BTreeMap<String, BundleContent>,
    ) -> Result<Vec<Step>, String> {
        if let Some(sops) = &step.sops {
            let alone = step.plugin.is_none()
                && step.cel.is_none()
                && step.cel_file.is_none()
                && step.bundle.is_none();
            if !alone {
                return Err(
                    "a step needs exactly one of `plugin`, `cel`, `celFile`, `bundle`, `sops`"
                        .into(),
                );
            }
            if decision != Decision::Sanitize {
                return Err(format!("`sops` is a sanitize step, not a {decision} one"));
            }
            if step.name.is_some() || step.settings.is_some() || step.grants.is_some() {
                return Err("`name`, `settings` and `grants` belong to plugin steps".into());
            }
            return crate::sops::Sops::new(sops).map(|s| vec![Step::Sops(s)]);
        }
        match (&step.plugin, &step.cel, &step.cel_file, &step.bundle) {
            (Some(plugin), None, None, None) => self
                .load_plugin(runtime, decision, plugin, step)
                .map(|s| vec![s]),
            (None, Some(cel), None, None) => {
                if step.name.is_some() || step.settings.is_some() || step.grants.is_some() {
                    return Err("`name`, `settings` and `grants` belong to plugin steps".into());
                }
                self.load_cel(decision, cel, None).map(|s| vec![s])
            }
            (None, None, Some(file), None) => {
                let path = self.base.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let cel: RawCel = serde_saphyr::from_str(&text)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                self.load_cel(decision, &cel, Some(path)).map(|s| vec![s])
            }
            (None, None, None, Some(name)) => {
                if step.name.is_some() || step.settings.is_some() || step.grants.is_some() {
                    return Err("a bundle's plugins are named, set and granted in `bundles`".into());
                }
                self.load_bundle(runtime, decision, name, bundles)
            }
            _ => Err(
                "a step needs exactly one of `plugin`, `cel`, `celFile`, `bundle`, `sops`".into(),
            ),
        }
    }

    /// The steps of `decision` from bundle `name`, each checked as a step
    /// of the file would be, and each plugin's asks against the grants.
    fn load_bundle(
        &self,
        runtime: &Runtime,
        decision: Decision,
        name: &str,
        bundles: &BTreeMap<String, BundleContent>,
    ) -> Result<Vec<Step>, String> {
        let raw = self.raw.bundles.get(name).ok_or_else(|| {
            format!(
                "no bundle `{name}` in `bundles` (there: {})",
                self.bundle_names()
            )
        })?;
        let content = bundles
            .get(name)
            .ok_or_else(|| format!("bundle `{name}` ({}) is not loaded", raw.reference))?;
        let at = |e: String| {
            format!(
                "bundle `{name}` ({}@{}): {e}",
                raw.reference, content.digest
            )
        };
        let mut steps = Vec::new();
        for step in content.steps.iter().filter(|s| s.decision == decision) {
            let loaded = match &step.kind {
                BundleStepKind::Plugin {
                    name: plugin,
                    component,
                    settings,
                    asks,
                } => {
                    let grants = raw.grants.get(plugin).cloned().unwrap_or_default();
                    let missing = asks.not_granted(&grants);
                    if !missing.is_empty() {
                        return Err(at(format!(
                            "plugin `{plugin}` asks for {} which `bundles.{name}.grants.{plugin}` does not grant",
                            missing.join(", ")
                        )));
                    }
                    runtime
                        .load(PluginSource {
                            name: &format!("{name}/{plugin}"),
                            decision,
                            bytes: component,
                            settings: settings.to_string(),
                            grants,
                        })
                        .map(Step::Plugin)
                        .map_err(|e| e.to_string())
                }
                BundleStepKind::Cel(cel) => self.load_cel(decision, cel, None),
            };
            steps.push(loaded.map_err(at)?);
        }
        if steps.is_empty() && !raw.append {
            return Err(at(format!("it has no {decision} steps")));
        }
        Ok(steps)
    }

    fn bundle_names(&self) -> String {
        let names: Vec<&str> = self.raw.bundles.keys().map(String::as_str).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    fn load_plugin(
        &self,
        runtime: &Runtime,
        decision: Decision,
        plugin: &str,
        step: &RawStep,
    ) -> Result<Step, String> {
        let is_path = plugin.contains('/') || plugin.ends_with(".wasm");
        let (bytes, default_name) = if is_path {
            let path = self.base.join(plugin);
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| plugin.to_owned());
            (std::borrow::Cow::Owned(bytes), stem)
        } else {
            let bytes = builtin::component(plugin).ok_or_else(|| {
                format!(
                    "no built-in plugin `{plugin}` (built-in: {}; a component file needs a path such as ./{plugin}.wasm)",
                    builtin::names().collect::<Vec<_>>().join(", ")
                )
            })?;
            (std::borrow::Cow::Borrowed(bytes), plugin.to_owned())
        };
        let grants = step.grants.clone().unwrap_or_default();
        for preopen in &grants.filesystem {
            if !self.base.join(&preopen.host).is_dir() {
                return Err(format!(
                    "granted folder {} does not exist",
                    preopen.host.display()
                ));
            }
        }
        let settings = step
            .settings
            .as_ref()
            .map_or_else(|| "{}".to_owned(), |s| s.to_string());
        let name = step.name.clone().unwrap_or(default_name);
        runtime
            .load(PluginSource {
                name: &name,
                decision,
                bytes: &bytes,
                settings,
                grants,
            })
            .map(Step::Plugin)
            .map_err(|e| e.to_string())
    }

    fn load_cel(
        &self,
        decision: Decision,
        cel: &RawCel,
        file: Option<PathBuf>,
    ) -> Result<Step, String> {
        if let Some(written_for) = cel.decision
            && written_for != decision
        {
            return Err(format!(
                "CEL policy `{}` is written for the {written_for} decision, not {decision}",
                cel.name
            ));
        }
        let source = CelSource {
            name: cel.name.clone(),
            expression: cel.expression.clone(),
            message: cel.message.clone(),
            path: cel.path.clone(),
            file,
        };
        CelPolicy::compile(source, decision, self.cel_limits())
            .map(Step::Cel)
            .map_err(|e| e.to_string())
    }
}

/// A step's `kinds:`, checked: only match and sanitize steps see objects,
/// and a step for no kind at all would be a step for nothing.
fn kinds_of(decision: Decision, step: &RawStep) -> Result<Option<KindSet>, String> {
    let Some(kinds) = &step.kinds else {
        // A `sops` step is for Secrets unless it says otherwise.
        return Ok(step
            .sops
            .is_some()
            .then(|| KindSet::new(["Secret".to_owned()])));
    };
    if !matches!(decision, Decision::Match | Decision::Sanitize) {
        return Err(format!(
            "`kinds` belongs to match and sanitize steps; a {decision} step sees no object"
        ));
    }
    if kinds.is_empty() || kinds.iter().any(|k| k.trim().is_empty()) {
        return Err("`kinds` needs at least one kind, none of them empty".into());
    }
    Ok(Some(KindSet::new(kinds.iter().cloned())))
}
