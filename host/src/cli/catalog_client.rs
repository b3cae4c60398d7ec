//! The catalog from the command line: `plumbline catalog
//! register|list|show|deprecate|disable|enable|archive` and `plumbline gate
//! check`, through a running daemon's API (`--api`, the default) or, with
//! `--state-dir`, the store on disk while no daemon holds it.
//!
//! Both ways answer the same: what the API answers (a record, a page, a
//! decision) or the RFC 7807 problem it would give, printed with every
//! violation.

use super::GlobalArgs;
use crate::catalog::Catalog;
use crate::catalog::api::Problem;
use crate::catalog::gate::Gate;
use crate::catalog::register::Offer;
use crate::catalog::search::Query;
use crate::catalog::store::{Lifecycle, Registered};
use clap::Args;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Where the catalog is.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The daemon serving the catalog (`plumbline run --catalog`); else
    /// $PLUMBLINE_API, else http://127.0.0.1:9478. --state-dir wins over
    /// the variable, so a shell that sets it can still use a store on disk.
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// A file holding the bearer token the daemon's writes need
    /// (its --catalog-token-file).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Use the catalog in this state folder directly instead of a daemon
    /// (no daemon may hold it open).
    #[arg(long, value_name = "DIR", conflicts_with = "api")]
    state_dir: Option<PathBuf>,
}

/// What answers.
pub enum Backend {
    /// A daemon's API.
    Api {
        /// The client.
        client: reqwest::blocking::Client,
        /// `http://host:port`.
        base: String,
        /// The bearer token, if any.
        token: Option<String>,
    },
    /// The store on disk.
    Disk {
        /// The catalog.
        catalog: Arc<Catalog>,
        /// Its gate.
        gate: Gate,
    },
}

impl Target {
    /// The daemon's URL: the flag's, the environment's, or the default.
    fn api(&self) -> String {
        self.api
            .clone()
            .or_else(|| {
                std::env::var("PLUMBLINE_API")
                    .ok()
                    .filter(|a| !a.is_empty())
            })
            .unwrap_or_else(|| "http://127.0.0.1:9478".to_owned())
    }
}

impl Backend {
    /// The backend `target` names.
    pub fn of(global: &GlobalArgs, target: &Target) -> anyhow::Result<Backend> {
        if let Some(state) = &target.state_dir {
            return disk(global, state);
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let token = match &target.token_file {
            Some(path) => Some(super::catalog::read_token(path)?.to_string()),
            None => None,
        };
        let client = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()?;
        Ok(Backend::Api {
            client,
            base: target.api().trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// Registers `offer`: `created` or `unchanged`, and the record.
    pub fn register(&self, offer: Offer) -> Result<Value, Problem> {
        match self {
            Backend::Api { .. } => {
                let body = match offer {
                    Offer::Image(image) => json!({"schemaImage": image}),
                    Offer::Inline(text) => json!({"schema": text}),
                };
                self.call(reqwest::Method::POST, "/api/v1/workflows", Some(body))
            }
            Backend::Disk { catalog, .. } => {
                let actor = format!("cli ({})", whoami());
                let (outcome, record) = match catalog.register(&offer, &actor)? {
                    Registered::Created(r) => ("created", r),
                    Registered::Unchanged(r) => ("unchanged", r),
                };
                Ok(json!({"outcome": outcome, "record": record}))
            }
        }
    }

    /// A page of search results.
    pub fn search(&self, query: &Query, raw: &[(&str, String)]) -> Result<Value, Problem> {
        match self {
            Backend::Api { .. } => {
                let pairs: Vec<String> = raw
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{k}={}",
                            url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                        )
                    })
                    .collect();
                self.call(
                    reqwest::Method::GET,
                    &format!("/api/v1/workflows?{}", pairs.join("&")),
                    None,
                )
            }
            Backend::Disk { catalog, .. } => {
                let page = catalog
                    .search(query)
                    .map_err(|e| Problem::bad_request(e.to_string()))?;
                Ok(serde_json::to_value(page).expect("a page serializes"))
            }
        }
    }

    /// One version, or every version of `id`.
    pub fn show(&self, id: &str, version: Option<&str>) -> Result<Value, Problem> {
        match (self, version) {
            (Backend::Api { .. }, Some(v)) => {
                let path = path(&["api", "v1", "workflows", id, "versions", v]);
                self.call(reqwest::Method::GET, &path, None)
            }
            (Backend::Api { .. }, None) => {
                let path = path(&["api", "v1", "workflows", id]);
                self.call(reqwest::Method::GET, &path, None)
            }
            (Backend::Disk { catalog, .. }, Some(v)) => Ok(json!(catalog.get(id, v)?)),
            (Backend::Disk { catalog, .. }, None) => Ok(json!(catalog.versions(id)?)),
        }
    }

    /// Sets a version's lifecycle.
    pub fn lifecycle(
        &self,
        id: &str,
        version: &str,
        lifecycle: Lifecycle,
        reason: &str,
    ) -> Result<Value, Problem> {
        match self {
            Backend::Api { .. } => {
                let path = path(&[
                    "api",
                    "v1",
                    "workflows",
                    id,
                    "versions",
                    version,
                    "lifecycle",
                ]);
                let body = json!({"lifecycle": lifecycle, "reason": reason});
                self.call(reqwest::Method::POST, &path, Some(body))
            }
            Backend::Disk { catalog, .. } => {
                let actor = format!("cli ({})", whoami());
                Ok(json!(
                    catalog.set_lifecycle(id, version, lifecycle, reason, &actor)?
                ))
            }
        }
    }

    /// The gate's decision on an execution object.
    pub fn gate(&self, object: Value) -> Result<Value, Problem> {
        match self {
            Backend::Api { .. } => self.call(
                reqwest::Method::POST,
                "/gate",
                Some(json!({"object": object})),
            ),
            Backend::Disk { gate, .. } => {
                let execution = plumbline_catalog::executions::read(&object)
                    .map_err(|e| Problem::bad_request(e.to_string()))?;
                // A check from the command line runs nothing: not recorded.
                Ok(json!(gate.decide(&execution, &whoami(), "cli", true)))
            }
        }
    }

    /// One request to the daemon: its JSON answer, or its problem.
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Problem> {
        let Backend::Api {
            client,
            base,
            token,
        } = self
        else {
            unreachable!("only the API is called")
        };
        let mut request = client.request(method, format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let unreachable = |e: reqwest::Error| {
            Problem::unreachable(format!(
                "the daemon at {base} cannot be reached ({}): is `plumbline run --catalog` running there? (--api, or --state-dir for a store on disk)",
                e.without_url()
            ))
        };
        let response = request.send().map_err(unreachable)?;
        let status = response.status();
        let text = response.text().map_err(unreachable)?;
        if status.is_success() {
            return serde_json::from_str(&text)
                .map_err(|e| Problem::unreachable(format!("{base} answered no JSON: {e}")));
        }
        Err(serde_json::from_str(&text).unwrap_or_else(|_| {
            Problem::unreachable(format!("{base} answered {status}: {}", text.trim()))
        }))
    }
}

/// A URL path of `segments`, each percent-encoded: an id or a version can
/// never reach another route (nor take the token there).
fn path(segments: &[&str]) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    segments
        .iter()
        // `.` and `..` would be resolved away by the URL; `%2E` too.
        .map(|s| match *s {
            "." | ".." => "/%2F".to_owned(),
            s => format!("/{}", percent_encoding::utf8_percent_encode(s, SEGMENT)),
        })
        .collect()
}

/// The catalog in `state`, opened directly.
fn disk(global: &GlobalArgs, state: &Path) -> anyhow::Result<Backend> {
    let loaded = super::load_policies(global, None, None, None)?;
    let policies = crate::bundle::Serving::new(Arc::new(loaded.set), Default::default());
    let registry = Arc::new(crate::oci::OciClient::new(global.oci_config()?)?);
    let store = crate::catalog::store::DiskCatalog::open(&state.join("catalog.redb"))?;
    // Registered from the command line, by its operator: no signature
    // is asked for (the daemon's --catalog-trusted-key is not read here).
    let catalog = super::catalog::open(Arc::new(store), registry, policies.clone(), None)?;
    let gate = Gate::new(catalog.clone(), Arc::new(move || policies.set()))?;
    Ok(Backend::Disk { catalog, gate })
}

/// Who runs the command, as records name it.
fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
}

/// Prints `problem` (about `what`) with every violation.
pub fn say(what: &str, problem: &Problem) {
    eprintln!("{what}: {}: {}", problem.title, problem.detail);
    for violation in &problem.violations {
        eprintln!("  {}: {}", violation.path, violation.message);
    }
}

/// `plumbline catalog register IMAGE|FILE…`: exit 1 if any is refused.
pub fn register(global: &GlobalArgs, target: &Target, what: &[String]) -> anyhow::Result<ExitCode> {
    let backend = Backend::of(global, target)?;
    let mut refused = 0;
    for item in what {
        let is_file =
            super::catalog::names_a_file(item).map_err(|e| anyhow::anyhow!("{item}: {e}"))?;
        let offer = if is_file {
            let text = crate::ingest::directory::walk::read_file(Path::new(item), 4 << 20)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Offer::Inline(text)
        } else {
            Offer::Image(item.clone())
        };
        match backend.register(offer) {
            Ok(answer) => {
                let record = &answer["record"];
                println!(
                    "{item}: {} {} {} ({})",
                    answer["outcome"].as_str().unwrap_or_default(),
                    record["workflow"]["workflowId"]
                        .as_str()
                        .unwrap_or_default(),
                    record["workflow"]["version"].as_str().unwrap_or_default(),
                    record["contentHash"].as_str().unwrap_or_default()
                );
            }
            Err(problem) => {
                say(item, &problem);
                refused += 1;
            }
        }
    }
    Ok(exit(refused))
}

/// `plumbline catalog list`: one line per version, every page.
pub fn list(global: &GlobalArgs, target: &Target, mut query: Query) -> anyhow::Result<ExitCode> {
    let backend = Backend::of(global, target)?;
    let mut count = 0;
    loop {
        let raw = query_pairs(&query);
        let page = match backend.search(&query, &raw) {
            Ok(page) => page,
            Err(problem) => {
                say("list", &problem);
                return Ok(ExitCode::FAILURE);
            }
        };
        for item in page["items"].as_array().into_iter().flatten() {
            count += 1;
            println!(
                "{}\t{}\t{}\t{}",
                item["workflowId"].as_str().unwrap_or_default(),
                item["version"].as_str().unwrap_or_default(),
                item["lifecycle"].as_str().unwrap_or_default(),
                item["what"].as_str().unwrap_or_default()
            );
        }
        match page["next"].as_str() {
            Some(next) => query.cursor = Some(next.to_owned()),
            None => break,
        }
    }
    eprintln!("{count} version(s)");
    Ok(ExitCode::SUCCESS)
}

/// The query's fields as the API's query string takes them.
fn query_pairs(query: &Query) -> Vec<(&'static str, String)> {
    let lifecycle = query.lifecycle.map(|l| {
        serde_json::to_value(l)
            .expect("serializes")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    });
    [
        ("q", query.q.clone()),
        ("severity", query.severity.clone()),
        ("environment", query.environment.clone()),
        ("component", query.component.clone()),
        ("lifecycle", lifecycle),
        ("limit", query.limit.map(|l| l.to_string())),
        ("cursor", query.cursor.clone()),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v?)))
    .collect()
}

/// `plumbline catalog show ID [VERSION]`: the JSON.
pub fn show(
    global: &GlobalArgs,
    target: &Target,
    id: &str,
    version: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let backend = Backend::of(global, target)?;
    match backend.show(id, version) {
        Ok(value) => {
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(problem) => {
            say(id, &problem);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `plumbline catalog deprecate|disable|enable|archive ID VERSION --reason`.
pub fn change(
    global: &GlobalArgs,
    target: &Target,
    (id, version): (&str, &str),
    lifecycle: Lifecycle,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let backend = Backend::of(global, target)?;
    match backend.lifecycle(id, version, lifecycle, reason) {
        Ok(record) => {
            println!(
                "{id} {version}: {}",
                record["lifecycle"].as_str().unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problem) => {
            say(&format!("{id} {version}"), &problem);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `plumbline gate check FILE…`: the gate's decision on each execution in
/// the files (PipelineRun, TaskRun, Job; other documents are passed by);
/// exit 1 if any is denied.
pub fn gate_check(
    global: &GlobalArgs,
    target: &Target,
    files: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let backend = Backend::of(global, target)?;
    let mut denied = 0;
    let mut checked = 0;
    for file in files {
        let text = crate::ingest::directory::walk::read_file(file, 4 << 20)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text)
            .map_err(|e| anyhow::anyhow!("{}: not YAML: {e}", file.display()))?;
        // `kubectl get -o yaml` wraps what it prints in a List.
        let objects = documents
            .into_iter()
            .flat_map(|d| match d["kind"].as_str() {
                Some("List") => d["items"].as_array().cloned().unwrap_or_default(),
                _ => vec![d],
            });
        for object in objects {
            if plumbline_catalog::executions::read(&object).is_err_and(|e| {
                matches!(
                    e,
                    plumbline_catalog::executions::ExecutionError::NotAnExecution { .. }
                )
            }) {
                continue;
            }
            let name = format!(
                "{}: {} {}",
                file.display(),
                object["kind"].as_str().unwrap_or_default(),
                object["metadata"]["name"]
                    .as_str()
                    .or_else(|| object["metadata"]["generateName"].as_str())
                    .unwrap_or_default()
            );
            checked += 1;
            match backend.gate(object) {
                Ok(decided) if decided["allowed"] == true => println!("{name}: allowed"),
                Ok(decided) => {
                    denied += 1;
                    println!("{name}: denied");
                    for reason in decided["reasons"].as_array().into_iter().flatten() {
                        println!("  {}", reason.as_str().unwrap_or_default());
                    }
                }
                Err(problem) => {
                    denied += 1;
                    say(&name, &problem);
                }
            }
        }
    }
    if checked == 0 {
        eprintln!(
            "no PipelineRun, TaskRun or Job (tekton.dev/v1 or v1beta1, batch/v1) in the files: nothing was checked"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(exit(denied))
}

fn exit(failures: usize) -> ExitCode {
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
