//! The `plumbline` command: flags parsed by clap into plain values, then
//! turned into working objects once, in each subcommand.

mod bundle;
mod catalog;
mod catalog_client;
mod config_file;
mod crds;
mod git;
mod plugin_new;
mod plugin_test;
mod policy_check;
mod progress;
mod run;
mod sanitize;

use crate::bundle::{BundleSource, BundleStore, PolicyLoader};
use crate::oci::{Credentials, OciClient, OciConfig};
use crate::policy::config::PolicyConfig;
use crate::policy::{PolicySet, Runtime};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Keeps Git and a workflow catalog true to what runs in Kubernetes; every
/// decision is a sandboxed WebAssembly or CEL policy.
#[derive(Debug, Parser)]
#[command(name = "plumbline", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: GlobalArgs,
}

/// Flags every subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Folder where compiled components are cached, so the next start
    /// loads them instead of compiling; pulled policy bundles are kept
    /// beside it, in `bundles`. Default: $XDG_CACHE_HOME/plumbline/components
    /// or ~/.cache/plumbline/components.
    #[arg(long, global = true, env = "PLUMBLINE_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Keep compiled components in memory only.
    #[arg(long, global = true)]
    no_cache: bool,
    /// A registry (`host:port`) to reach over plain HTTP instead of HTTPS;
    /// repeat for several. Only for registries on a trusted network.
    #[arg(
        long,
        global = true,
        value_name = "HOST:PORT",
        env = "PLUMBLINE_INSECURE_REGISTRY",
        value_delimiter = ','
    )]
    insecure_registry: Vec<String>,
    /// Registry credentials: a Docker config.json (as `docker login`,
    /// `oras login` and `podman login` write). Default: $DOCKER_CONFIG/config.json
    /// or ~/.docker/config.json, if present.
    #[arg(long, global = true, value_name = "FILE")]
    registry_config: Option<PathBuf>,
    /// Log filter, as in RUST_LOG (`info`, `plumbline=debug`, …);
    /// `warn,plumbline::change=debug` follows each change from its event to
    /// its push, by its trace.
    #[arg(
        long,
        global = true,
        env = "PLUMBLINE_LOG",
        default_value = "warn",
        value_name = "FILTER"
    )]
    log: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mirrors a folder of manifests into a Git repository, through the
    /// match and sanitize policies.
    Run(Box<run::RunArgs>),
    /// Runs the sanitize chain over manifests and prints the result as YAML.
    Sanitize(sanitize::SanitizeArgs),
    /// Tools for plugin authors.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Tools for policy configurations.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Policy bundles in OCI registries: push, pull, inspect.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Prints Plumbline's custom resource definitions as YAML, for
    /// `kubectl apply -f -`.
    Crds(crds::CrdsArgs),
    /// The workflow catalog: lint schemas before they are pushed;
    /// register, list, show, and change the lifecycle of versions.
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
    /// The execution gate.
    #[command(subcommand)]
    Gate(GateCommand),
    /// Git: the public key that verifies Plumbline's signed commits.
    #[command(subcommand)]
    Git(git::GitCommand),
}

#[derive(Debug, Subcommand)]
enum GateCommand {
    /// Asks the gate about each execution (PipelineRun, TaskRun, Job) in
    /// YAML files, as the admission webhook would; nothing is recorded
    /// with --state-dir. Exit 1 if any is denied.
    Check(GateCheckArgs),
}

/// Arguments of `plumbline gate check`.
#[derive(Debug, clap::Args)]
struct GateCheckArgs {
    /// Manifests (YAML, multi-document).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    target: catalog_client::Target,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Creates a ready-to-build Rust plugin crate for one decision, with
    /// fixtures and a bundle.yaml.
    New(plugin_new::PluginNewArgs),
    /// Runs a plugin against input/expected fixture pairs and reports each.
    Test(plugin_test::PluginTestArgs),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Loads a policy configuration and reports every error in it.
    Check(policy_check::PolicyCheckArgs),
}

/// Runs the command line; the exit status says whether everything worked.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.global.log);
    // The CEL sandbox's component is compiled once and cached beside the
    // plugins, so only the first start pays for it.
    crate::policy::cel_sandbox::use_cache_dir(cli.global.cache_dir());
    let result = match cli.command {
        Command::Run(args) => run::run(&cli.global, *args),
        Command::Sanitize(args) => sanitize::run(&cli.global, args),
        Command::Plugin(PluginCommand::Test(args)) => plugin_test::run(&cli.global, args),
        Command::Plugin(PluginCommand::New(args)) => plugin_new::run(args),
        Command::Policy(PolicyCommand::Check(args)) => policy_check::run(&cli.global, args),
        Command::Bundle(command) => bundle::run(&cli.global, command),
        Command::Crds(args) => crds::run(args),
        Command::Git(command) => git::run(command),
        Command::Catalog(command) => catalog::run(&cli.global, command),
        Command::Gate(GateCommand::Check(args)) => {
            catalog_client::gate_check(&cli.global, &args.target, &args.files)
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", causes(&error));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, each said once: a library whose message
/// already quotes its cause (kube's, git's) does not print it twice.
fn causes(error: &anyhow::Error) -> String {
    let mut text = String::new();
    let mut last = String::new();
    for cause in error.chain() {
        let said = cause.to_string();
        if !last.contains(&said) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&said);
        }
        last = said;
    }
    text
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .init();
}

/// Whether log lines are coloured: only on a terminal (escape codes in a
/// file or a log collector are noise), and never when `NO_COLOR` is set to
/// anything but the empty string (<https://no-color.org>).
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

impl GlobalArgs {
    /// The component cache folder, unless caching on disk is off.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        self.cache_dir.clone().or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(base.join("plumbline").join("components"))
        })
    }

    /// A registry client with the flags' insecure registries and
    /// credentials, on a runtime of its own.
    pub fn oci_client(&self) -> anyhow::Result<OciClient> {
        Ok(OciClient::new(self.oci_config()?)?)
    }

    /// How to reach registries, from the flags and the Docker config.
    pub fn oci_config(&self) -> anyhow::Result<OciConfig> {
        let path = self.registry_config.clone().or_else(|| {
            let dir = std::env::var_os("DOCKER_CONFIG")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))?;
            Some(dir.join("config.json")).filter(|p| p.is_file())
        });
        let credentials = match path {
            Some(path) => Credentials::from_docker_config(&path).map_err(anyhow::Error::msg)?,
            None => Credentials::default(),
        };
        Ok(OciConfig {
            insecure: self.insecure_registry.clone(),
            credentials,
        })
    }

    /// Where pulled bundles are kept: beside the component cache, or in a
    /// folder that lives as long as the process with --no-cache.
    pub fn bundle_store(&self) -> anyhow::Result<(BundleStore, Option<tempfile::TempDir>)> {
        match self.cache_dir() {
            Some(dir) => Ok((BundleStore::new(dir.with_file_name("bundles")), None)),
            None => {
                let dir = tempfile::tempdir().context("creating a bundle folder")?;
                Ok((BundleStore::new(dir.path()), Some(dir)))
            }
        }
    }
}

/// Where several replicas keep what they share: NATS JetStream.
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// Keep the mirror's queue, the partition claims and the source's lead
    /// (stream `PLUMBLINE_QUEUE`, buckets `plumbline-queue` and
    /// `plumbline-claims`), the webhooks' attribution facts (stream
    /// `PLUMBLINE_FACTS`) and the catalog (bucket `plumbline-catalog`,
    /// stream `PLUMBLINE_EXECUTIONS`) on this NATS server's JetStream,
    /// created if missing, instead of the state folder, so that several
    /// replicas share them: `nats://host:4222`, or several URLs
    /// comma-separated.
    #[arg(long = "nats", value_name = "URL", id = "nats")]
    pub url: Option<String>,
    /// Copies JetStream keeps of the streams and buckets it creates (3 on
    /// a three-node cluster; at most the cluster's size).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5), requires = "nats")]
    pub nats_replicas: u8,
    /// Seconds a partition claim (or the lead of the source) lasts
    /// unrenewed: a replica that dies lets its repositories go to another
    /// within it. Renewed every third; one not renewed for two thirds is
    /// no longer acted on. It sets the age limit of the bucket
    /// `plumbline-claims` when this replica creates it; a replica that
    /// finds the bucket made uses the bucket's (and says so).
    /// From 3 s (renewals come every third) to an hour.
    #[arg(long, value_name = "SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=3600), requires = "nats")]
    pub nats_lease: u64,
}

impl NatsArgs {
    /// The settings, when NATS is asked for.
    pub fn settings(&self) -> Option<crate::nats::Settings> {
        Some(crate::nats::Settings {
            url: self.url.clone()?,
            replicas: usize::from(self.nats_replicas),
            lease: std::time::Duration::from_secs(self.nats_lease),
        })
    }
}

/// Limits of the HTTP server (/healthz, /readyz, /metrics), so that no
/// client that can reach the port takes the probes down.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Seconds a client may take to send a request's headers, counted from
    /// when it connects or its previous response was sent (a slow or idle
    /// connection is closed then), and as long again for its body (or it
    /// gets a 408).
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = read_timeout)]
    http_read_timeout: u64,
    /// Most HTTP connections served at once; the next wait to be accepted,
    /// and each has the oldest served close once its request is answered
    /// (at once if idle). Keep it well below the open-file limit
    /// (`ulimit -n`).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = at_least_one)]
    http_max_connections: u64,
    /// Serve HTTPS with this certificate chain (PEM, the server's own
    /// first); read again when the file changes. An API server calls an
    /// admission webhook over HTTPS only.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

impl HttpArgs {
    /// The server's limits.
    pub fn limits(&self) -> crate::api::ServerLimits {
        crate::api::ServerLimits {
            read_timeout: std::time::Duration::from_secs(self.http_read_timeout),
            max_connections: usize::try_from(self.http_max_connections).unwrap_or(usize::MAX),
        }
    }

    /// Whether the server speaks TLS.
    pub fn serves_tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// The server's TLS, if asked for, checking client certificates
    /// against `client_ca`; a file that does not load is the error.
    pub fn tls(
        &self,
        client_ca: Option<&std::path::Path>,
    ) -> anyhow::Result<Option<crate::api::tls::ServerTls>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let files = crate::api::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: client_ca.map(ToOwned::to_owned),
        };
        Ok(Some(crate::api::tls::server_config(&files)?))
    }
}

/// A read timeout: 1 s to an hour (beyond, hyper's deadline arithmetic
/// overflows, and no client needs longer).
fn read_timeout(text: &str) -> Result<u64, String> {
    let seconds = at_least_one(text)?;
    if seconds > 3600 {
        return Err(format!("{seconds} s is more than an hour"));
    }
    Ok(seconds)
}

/// A whole number of 1 or more, for flags where 0 means no pause or no
/// room at all (`--interval 0` spun a core looking at the folder).
pub fn at_least_one(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("0 is not allowed here; give 1 or more".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a whole number: {e}")),
    }
}

/// A loaded policy set, and what can renew it.
pub struct Policies {
    /// The runtime the set runs on.
    pub runtime: Runtime,
    /// The set.
    pub set: PolicySet,
    /// With bundles: what resolves their tags again and builds new sets.
    pub loader: Option<PolicyLoader>,
    /// The digest each bundle loaded at.
    pub digests: crate::bundle::reload::Digests,
    /// Bundles loaded from the store because the registry did not answer.
    pub offline: Vec<String>,
    /// The operator's CEL limits, for CEL met outside the policies (a
    /// watch rule's condition).
    pub cel_limits: crate::policy::cel::CelLimits,
    /// Where pulled bundles live when there is no cache folder.
    _bundles: Option<tempfile::TempDir>,
}

/// Reads a configuration (or the built-in one), adds `bundle` (appended to
/// every chain it has steps for) and loads it, pulling what it references:
/// on the daemon's runtime `on` when there is one (the loader goes on
/// pulling there while the daemon runs), else on the client's own.
pub fn load_policies(
    global: &GlobalArgs,
    config: Option<&std::path::Path>,
    bundle: Option<&str>,
    on: Option<&tokio::runtime::Handle>,
) -> anyhow::Result<Policies> {
    let mut config = match config {
        Some(path) => PolicyConfig::from_file(path)?,
        None => PolicyConfig::builtin(),
    };
    if let Some(reference) = bundle {
        config.append_bundle("cli", reference, Default::default());
    }
    let runtime = Runtime::new(&config.runtime_config(global.cache_dir()))
        .context("starting the policy runtime")?;
    let cel_limits = config.cel_limits();
    if config.bundles().is_empty() {
        let set = config.load(&runtime)?;
        return Ok(Policies {
            runtime,
            set,
            loader: None,
            digests: Default::default(),
            offline: Vec::new(),
            cel_limits,
            _bundles: None,
        });
    }
    let (store, temporary) = global.bundle_store()?;
    let client = match on {
        Some(handle) => OciClient::on(handle.clone(), global.oci_config()?)?,
        None => global.oci_client()?,
    };
    let source = BundleSource::new(client, store);
    let mut loader = PolicyLoader::new(config, runtime.clone(), source);
    let loaded = loader.load()?;
    for note in &loaded.offline {
        eprintln!("warning: {note}");
    }
    Ok(Policies {
        runtime,
        set: loaded.set,
        loader: Some(loader),
        digests: loaded.digests,
        offline: loaded.offline,
        cel_limits,
        _bundles: temporary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".as_ref())));
        assert!(!colour(true, Some("1".as_ref())));
        assert!(!colour(false, None));
    }

    #[test]
    fn zero_is_refused_where_it_would_spin() {
        assert_eq!(at_least_one("5"), Ok(5));
        assert!(at_least_one("0").unwrap_err().contains("0 is not allowed"));
        assert!(at_least_one("x").is_err());
    }

    /// A lease in nanoseconds must fit: 18446744074 s wrapped to 0.29 s in
    /// the bucket every replica then inherits.
    #[test]
    fn a_lease_outside_three_seconds_to_an_hour_is_refused() {
        let parse = |lease: &str| {
            Cli::try_parse_from([
                "plumbline",
                "run",
                "--nats",
                "nats://n:4222",
                "--nats-lease",
                lease,
            ])
        };
        assert!(parse("15").is_ok());
        for refused in ["2", "3601", "18446744074"] {
            let error = parse(refused).unwrap_err().to_string();
            assert!(error.contains("3..=3600"), "{refused}: {error}");
        }
    }

    #[test]
    fn a_cause_a_message_already_quotes_is_said_once() {
        let io = std::io::Error::other("No such file");
        let quoting = anyhow::Error::new(io).context("failed to read kubeconfig: No such file");
        let error = quoting.context("reaching the cluster");
        assert_eq!(
            causes(&error),
            "reaching the cluster: failed to read kubeconfig: No such file"
        );
        let plain = anyhow::anyhow!("refused").context("pushing");
        assert_eq!(causes(&plain), "pushing: refused");
    }
}
