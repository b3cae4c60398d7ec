//! `plumbline catalog …`: `lint FILE…` runs every check a workflow schema
//! must pass before the catalog takes it, locally (a pre-commit hook, a CI
//! step), with every violation and its path; `register`, `list`, `show`
//! and the lifecycle changes work on a daemon's catalog or a store on
//! disk ([`super::catalog_client`]); and how `plumbline run` serves the
//! catalog ([`ServeArgs`], [`routes`]).

use super::{GlobalArgs, load_policies};
use crate::catalog::read;
use crate::catalog::register::problems;
use crate::policy::Decision;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// `plumbline catalog …`.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Checks workflow schemas as registration would: files (any format
    /// the catalog reads) or images (registry/repo:tag: the schema is
    /// extracted as registration extracts it): their shape, what every
    /// schema must be, and the policies' schema rules.
    Lint(LintArgs),
    /// Registers workflow versions: images that carry their schema
    /// (registry/repo:tag), or schema files.
    Register(RegisterArgs),
    /// Lists the versions a search finds (those that may run, unless
    /// --lifecycle says otherwise).
    List(ListArgs),
    /// Shows one version (JSON), or every version of a workflow.
    Show(ShowArgs),
    /// Deprecates a version: it still runs (unless the gate's policies
    /// say otherwise); a newer one should be picked.
    Deprecate(ChangeArgs),
    /// Disables a version: the gate denies its executions.
    Disable(ChangeArgs),
    /// Enables (activates) a version again.
    Enable(ChangeArgs),
    /// Archives a version: kept for the record only.
    Archive(ChangeArgs),
}

/// Arguments of `plumbline catalog register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Images (registry/repo:tag) or schema files (YAML or JSON); a path
    /// that exists is a file.
    #[arg(required = true, value_name = "IMAGE|FILE")]
    what: Vec<String>,
    #[command(flatten)]
    target: super::catalog_client::Target,
}

/// Arguments of `plumbline catalog list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Words that must all appear in the id, action type or description.
    #[arg(long, short)]
    q: Option<String>,
    /// A severity label.
    #[arg(long)]
    severity: Option<String>,
    /// An environment label.
    #[arg(long)]
    environment: Option<String>,
    /// A component label.
    #[arg(long)]
    component: Option<String>,
    /// Only versions in this lifecycle (default: those that may run).
    #[arg(long, value_enum)]
    lifecycle: Option<LifecycleArg>,
    #[command(flatten)]
    target: super::catalog_client::Target,
}

/// Arguments of `plumbline catalog show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The workflow's id.
    id: String,
    /// Its version; without one, every version.
    version: Option<String>,
    #[command(flatten)]
    target: super::catalog_client::Target,
}

/// Arguments of a lifecycle change.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// The workflow's id.
    id: String,
    /// The version.
    version: String,
    /// Why (recorded with who and when).
    #[arg(long, required = true)]
    reason: String,
    #[command(flatten)]
    target: super::catalog_client::Target,
}

/// A lifecycle, as the command line names it.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LifecycleArg {
    /// Picked and executed.
    Active,
    /// Refused by the gate.
    Disabled,
    /// Still executable; a newer version should be picked.
    Deprecated,
    /// Kept for the record only.
    Archived,
}

impl From<LifecycleArg> for crate::catalog::store::Lifecycle {
    fn from(arg: LifecycleArg) -> Self {
        use crate::catalog::store::Lifecycle;
        match arg {
            LifecycleArg::Active => Lifecycle::Active,
            LifecycleArg::Disabled => Lifecycle::Disabled,
            LifecycleArg::Deprecated => Lifecycle::Deprecated,
            LifecycleArg::Archived => Lifecycle::Archived,
        }
    }
}

/// Arguments of `plumbline catalog lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// Workflow schema files (YAML or JSON), or images; a path that exists
    /// is a file.
    #[arg(required = true, value_name = "FILE|IMAGE")]
    files: Vec<PathBuf>,
    /// Policy configuration whose schema chain runs; without one the
    /// built-in one (schema-lint).
    #[arg(long, value_name = "CONFIG")]
    policy: Option<PathBuf>,
}

/// Runs the command.
pub fn run(global: &GlobalArgs, command: CatalogCommand) -> anyhow::Result<ExitCode> {
    use super::catalog_client as client;
    use crate::catalog::store::Lifecycle;
    match command {
        CatalogCommand::Lint(args) => lint_files(global, &args),
        CatalogCommand::Register(args) => client::register(global, &args.target, &args.what),
        CatalogCommand::List(args) => {
            let query = crate::catalog::search::Query {
                q: args.q,
                severity: args.severity,
                environment: args.environment,
                component: args.component,
                lifecycle: args.lifecycle.map(Into::into),
                limit: Some(crate::catalog::search::MAX_LIMIT),
                ..Default::default()
            };
            client::list(global, &args.target, query)
        }
        CatalogCommand::Show(args) => {
            client::show(global, &args.target, &args.id, args.version.as_deref())
        }
        CatalogCommand::Deprecate(args) => change(global, args, Lifecycle::Deprecated),
        CatalogCommand::Disable(args) => change(global, args, Lifecycle::Disabled),
        CatalogCommand::Enable(args) => change(global, args, Lifecycle::Active),
        CatalogCommand::Archive(args) => change(global, args, Lifecycle::Archived),
    }
}

fn change(
    global: &GlobalArgs,
    args: ChangeArgs,
    lifecycle: crate::catalog::store::Lifecycle,
) -> anyhow::Result<ExitCode> {
    let ChangeArgs {
        id,
        version,
        reason,
        target,
    } = args;
    super::catalog_client::change(global, &target, (&id, &version), lifecycle, &reason)
}

/// Whether a command-line argument names a file (else an image): one that
/// exists, or that is written as one (a `.yaml`, `.yml` or `.json` name, or
/// a path from `.` or `/`), so a mistyped file name is said missing instead
/// of being looked up on Docker Hub.
pub(super) fn names_a_file(argument: &str) -> Result<bool, String> {
    let path = std::path::Path::new(argument);
    if path.exists() {
        return Ok(true);
    }
    let file_like = [".yaml", ".yml", ".json"]
        .iter()
        .any(|end| argument.ends_with(end))
        || argument.starts_with("./")
        || argument.starts_with('/');
    if file_like {
        return Err("no such file".into());
    }
    Ok(false)
}

/// `plumbline catalog lint`.
fn lint_files(global: &GlobalArgs, args: &LintArgs) -> anyhow::Result<ExitCode> {
    let loaded = load_policies(global, args.policy.as_deref(), None, None)?;
    let mut failed = 0;
    let rules = |schema: &str, context: &str| schema_rules(&loaded.set, schema, context);
    let mut registry = None;
    for file in &args.files {
        let text = match names_a_file(&file.to_string_lossy()) {
            Err(missing) => Err(missing),
            Ok(true) => {
                crate::ingest::directory::walk::read_file(file, 4 << 20).map_err(|e| e.to_string())
            }
            Ok(false) => {
                let client = match &mut registry {
                    Some(client) => client,
                    None => registry.insert(crate::oci::OciClient::new(global.oci_config()?)?),
                };
                extracted(client, &file.to_string_lossy())
            }
        };
        let found = match text {
            Ok(text) => lint(&text, &rules),
            Err(error) => vec![error],
        };
        for line in &found {
            println!("{}: {line}", file.display());
        }
        if found.is_empty() {
            println!("{}: ok", file.display());
        } else {
            failed += 1;
        }
    }
    eprintln!(
        "{} schema(s) linted, {failed} with violations",
        args.files.len()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The schema in the image `reference`, extracted as registration does.
fn extracted(client: &crate::oci::OciClient, reference: &str) -> Result<String, String> {
    let paths = plumbline_catalog::layers::DEFAULT_PATHS;
    let found = crate::catalog::extract::schema_of(client, reference, paths, Default::default())
        .map_err(|e| e.to_string())?;
    eprintln!(
        "{reference}: the schema is {} ({})",
        found.path, found.digest
    );
    String::from_utf8(found.bytes).map_err(|_| format!("{reference}: the schema is not UTF-8"))
}

/// Every problem of the schema `text`, each `path: message`, as
/// registration finds them with `rules` as the schema chain.
fn lint(
    text: &str,
    rules: &dyn Fn(&str, &str) -> Vec<plumbline_catalog::Violation>,
) -> Vec<String> {
    let workflow = match read(text) {
        Ok(workflow) => workflow,
        Err(error) => return vec![error.to_string()],
    };
    problems(&workflow, rules)
        .into_iter()
        .map(|v| format!("{}: {}", v.path, v.message))
        .collect()
}

/// The violations the schema chain of `policies` finds in `schema`.
fn schema_rules(
    policies: &crate::policy::chain::PolicySet,
    schema: &str,
    context: &str,
) -> Vec<plumbline_catalog::Violation> {
    policies
        .chain(Decision::Schema)
        .check(schema, context)
        .into_iter()
        .map(|v| plumbline_catalog::Violation {
            path: v.path,
            message: v.message,
        })
        .collect()
}

/// How `plumbline run` serves the catalog.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Serve the workflow catalog on the HTTP server: the REST API at
    /// /api/v1/workflows (its OpenAPI document at /api/v1/openapi.json)
    /// and the MCP tools at /mcp. Versions are kept in catalog.redb in
    /// the state folder.
    #[arg(long)]
    pub catalog: bool,
    /// A file holding the bearer token catalog writes (registering,
    /// lifecycle changes) need. Without one, writes are taken from
    /// loopback clients only.
    #[arg(long, value_name = "FILE", requires = "catalog")]
    pub catalog_token_file: Option<PathBuf>,
    /// A `Host` (name, or name:port) the MCP endpoint answers; given
    /// again for more. Default: localhost, 127.0.0.1 and ::1, so a web
    /// page cannot reach a local daemon by DNS rebinding. Give the
    /// Service's names when agents call it in a cluster.
    #[arg(long, value_name = "HOST", requires = "catalog")]
    pub mcp_allowed_host: Vec<String>,
    /// Seconds the gate (POST /gate, /gate-webhook) has to decide; a
    /// decision not made by then is a denial (fail-closed). Keep it below
    /// the webhook's timeoutSeconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, value_parser = deadline_seconds, requires = "catalog")]
    pub gate_deadline: f64,
    /// A repository whose pushed tags are registered (`registry/repo`, or
    /// `registry/prefix/*` for every repository under a prefix): as the
    /// registry's notification to /registry-webhook arrives, and at each
    /// --catalog-resync for tags a notification missed (exact
    /// repositories). Given again for more.
    #[arg(long, value_name = "REPO", requires = "catalog")]
    pub catalog_watch: Vec<String>,
    /// Seconds between two looks at the registry: every registered tag is
    /// resolved again (one that moved is drift, recorded and never
    /// adopted), and every watched repository's tags are listed.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = super::at_least_one, requires = "catalog")]
    pub catalog_resync: u64,
    /// A public key (PEM, ECDSA P-256, as `cosign public-key` prints it)
    /// whose cosign signatures are trusted; given again for more. With
    /// one, a workflow image is registered only if a signature of the
    /// digest its reference names verifies with one of them (the record
    /// says which, `signedBy`), and gate policies see
    /// `request.catalog.signed`.
    #[arg(long, value_name = "FILE", requires = "catalog")]
    pub catalog_trusted_key: Vec<PathBuf>,
}

/// The catalog's store: on NATS JetStream with `nats`, else in `state`.
pub fn store(
    nats: Option<&crate::nats::Settings>,
    runtime: &tokio::runtime::Handle,
    state: &std::path::Path,
) -> anyhow::Result<Arc<dyn crate::catalog::store::CatalogStore>> {
    Ok(match nats {
        Some(nats) => Arc::new(
            crate::catalog::store::jetstream::JetStreamCatalog::connect(
                runtime.clone(),
                &nats.url,
                nats.replicas,
            )
            .map_err(|e| anyhow::anyhow!("opening the catalog on NATS: {e}"))?,
        ),
        None => Arc::new(crate::catalog::store::DiskCatalog::open(
            &state.join("catalog.redb"),
        )?),
    })
}

/// A deadline: more than 0, at most 30 s (the API server's own cap on a
/// webhook).
fn deadline_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 30.0 => Ok(s),
        _ => Err(format!(
            "`{text}` is not a number of seconds above 0 and at most 30"
        )),
    }
}

/// The catalog's routes, if `args` ask for them, and its series for
/// `/metrics`: its store opened by `store`, images read with `registry`, schemas
/// checked by the schema chain that `policies` serve at the time. The
/// reconciler starts on a thread of its own. With `certified`, the webhooks
/// the API server calls take only clients the server's client CA signed.
pub fn routes(
    args: &ServeArgs,
    store: impl FnOnce() -> anyhow::Result<Arc<dyn crate::catalog::store::CatalogStore>>,
    certified: bool,
    registry: crate::oci::OciClient,
    policies: crate::bundle::Serving,
    cluster: Option<(kube::Client, tokio::runtime::Handle, u64)>,
) -> anyhow::Result<Option<(axum::Router, crate::daemon::Export)>> {
    use crate::catalog::reconcile::{Metrics, Reconciler, Watched};
    use crate::catalog::{api, gate, gate_api, mcp, notify};
    if !args.catalog {
        return Ok(None);
    }
    let token = match &args.catalog_token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    let watched = args
        .catalog_watch
        .iter()
        .map(|w| Watched::parse(w).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let registry = Arc::new(registry);
    let store = store()?;
    let trusted = match args.catalog_trusted_key.as_slice() {
        [] => None,
        keys => Some(Arc::new(crate::oci::cosign::TrustedKeys::read(keys)?)),
    };
    let catalog = open(store, registry.clone(), policies.clone(), trusted)?;
    eprintln!(
        "catalog: {} version(s) registered; serving /api/v1/workflows, /mcp, /gate and /registry-webhook",
        catalog.len()
    );
    let access = api::Access { token };
    let gate = gate::Gate::new(catalog.clone(), Arc::new(move || policies.set()))
        .map_err(|e| anyhow::anyhow!("starting the gate's recorder: {e}"))?;
    let deadline = std::time::Duration::from_secs_f64(args.gate_deadline);
    let metrics = Metrics::default();
    let reconciler = Arc::new(Reconciler::new(
        catalog.clone(),
        registry,
        watched,
        metrics.clone(),
    ));
    reconcile(reconciler.clone(), args.catalog_resync)?;
    let mut router = api::routes(catalog.clone(), access.clone());
    if let Some((client, runtime, interval)) = cluster {
        // The cluster's RemediationWorkflows are registered too.
        let controller = crate::catalog::controller::Controller {
            client,
            runtime,
            catalog: catalog.clone(),
        };
        controller
            .follow(std::time::Duration::from_secs(interval))
            .map_err(|e| anyhow::anyhow!("starting the RemediationWorkflow controller: {e}"))?;
        router = router.merge(crate::catalog::controller::routes(
            catalog.clone(),
            certified,
        ));
    }
    let router = router
        .merge(mcp::routes(catalog.clone(), mcp_hosts(args)))
        .merge(gate_api::routes(
            Arc::new(gate),
            catalog.clone(),
            access.clone(),
            deadline,
            certified,
        ))
        .merge(notify::routes(reconciler, access));
    let counted = catalog.clone();
    let export: crate::daemon::Export = Box::new(move |registry| {
        metrics.register(registry);
        counted.register_metrics(registry);
    });
    Ok(Some((router, export)))
}

/// The catalog in `store`, its schemas checked by the schema chain
/// `policies` serve at the time.
pub(super) fn open(
    store: Arc<dyn crate::catalog::store::CatalogStore>,
    registry: Arc<crate::oci::OciClient>,
    policies: crate::bundle::Serving,
    trusted: Option<Arc<crate::oci::cosign::TrustedKeys>>,
) -> anyhow::Result<Arc<crate::catalog::Catalog>> {
    use crate::catalog::{Catalog, register::Registrar};
    use anyhow::Context as _;
    let rules = move |schema: &str, context: &str| schema_rules(&policies.set(), schema, context);
    let registrar = Registrar {
        store,
        registry,
        paths: plumbline_catalog::layers::DEFAULT_PATHS
            .iter()
            .map(|p| p.to_string())
            .collect(),
        caps: Default::default(),
        rules: Arc::new(rules),
        reading: Default::default(),
        trusted,
    };
    Ok(Arc::new(
        Catalog::open(registrar).context("opening the catalog")?,
    ))
}

/// The `Host`s the MCP endpoint answers.
fn mcp_hosts(args: &ServeArgs) -> Vec<String> {
    match args.mcp_allowed_host.as_slice() {
        [] => vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        given => given.to_vec(),
    }
}

/// Runs `reconciler` every `seconds` on a thread of its own, saying what
/// each pass found (a failure once until it changes).
fn reconcile(
    reconciler: Arc<crate::catalog::reconcile::Reconciler>,
    seconds: u64,
) -> anyhow::Result<()> {
    let mut said: Vec<String> = Vec::new();
    std::thread::Builder::new()
        .name("catalog-reconcile".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(seconds));
                let report = reconciler.once();
                if report.drifted + report.registered > 0 {
                    eprintln!(
                        "catalog: {} tag(s) checked, {} drifted, {} new version(s) registered",
                        report.checked, report.drifted, report.registered
                    );
                }
                for failure in report.failed.iter().filter(|f| !said.contains(f)) {
                    tracing::warn!("catalog reconciliation: {failure}");
                }
                said = report.failed;
            }
        })
        .map(drop)
        .map_err(|e| anyhow::anyhow!("starting the catalog's reconciler: {e}"))
}

/// The token in `path`: its first line, which must not be empty.
pub(super) fn read_token(path: &std::path::Path) -> anyhow::Result<Arc<str>> {
    let text = crate::ingest::directory::walk::read_file(path, 64 << 10)
        .map_err(|e| anyhow::anyhow!("reading the catalog token: {e}"))?;
    let token = text.lines().next().unwrap_or_default().trim();
    anyhow::ensure!(
        !token.is_empty(),
        "the catalog token file {} is empty",
        path.display()
    );
    Ok(Arc::from(token))
}
