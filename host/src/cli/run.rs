//! `plumbline run`: mirror a source into Git.
//!
//! Parses the flags into the daemon's [`Setup`] and runs it on the folder
//! source, or on the cluster a kubeconfig names ([`crate::daemon`] does the
//! work). With `--once` it seeds, waits
//! for every worker to push everything, prints what it wrote where, and
//! exits.

use super::{GlobalArgs, Policies, load_policies};
use super::{config_file, progress};
use crate::bundle::Serving;
use crate::daemon::{Bundles, Daemon, Export, Outcome, Setup};
use crate::ingest::attribution::{
    self, Admissions, AdmittedConfig, Attribution, Facts, FactsConfig,
};
use crate::ingest::cluster::{self, ClusterOptions, ClusterSource};
use crate::ingest::directory::{self, DirectorySource, SourceOptions, walk};
use crate::ingest::source::{SeedReport, Source};
use crate::layout::BaseFolder;
use crate::mirror::{Destination, MirrorConfig, Prune};
use crate::model::RepoUrl;
use crate::queue::Partition;
use crate::sink::worker::{self, BatchLimits, SinkOptions, SyncReport};
use crate::telemetry::notices::Stderr;
use anyhow::Context as _;
use clap::Args;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `plumbline run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Mirror once (seed, commit, push) and exit, instead of following the
    /// source.
    #[arg(long)]
    once: bool,
    /// Destinations and rules as GitRepoConfig, GitDestination, WatchRule and
    /// ClusterWatchRule resources (YAML, multi-document). Replaces --repo,
    /// --branch, --base-folder and --prune. Following, the file is looked
    /// at every --interval: a change takes effect without a restart.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The folder of manifests to mirror.
    #[arg(long, value_name = "DIR", default_value = "examples/cluster")]
    source_dir: PathBuf,
    /// Mirror the cluster this kubeconfig's current context names instead
    /// of a folder: the resources the watch rules select are listed, then
    /// watched.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "source_dir",
        group = "cluster"
    )]
    kubeconfig: Option<PathBuf>,
    /// Mirror the cluster this daemon runs in, as a pod reaches it (its
    /// service account), instead of a folder.
    #[arg(long, conflicts_with_all = ["source_dir", "kubeconfig"], group = "cluster")]
    in_cluster: bool,
    /// With --kubeconfig or --in-cluster: serve the API server's audit webhook at
    /// /audit-webhook, and author each change by the user its audit event
    /// names (watch events wait up to --attribution-grace for it).
    #[arg(long, requires = "cluster")]
    audit_webhook: bool,
    /// With --kubeconfig or --in-cluster: serve a validating admission
    /// webhook at /process-validating-webhook (always allowing), and
    /// author each change by the user its AdmissionReview names, for
    /// clusters whose audit flags cannot be set. With --audit-webhook too,
    /// the audit event wins.
    #[arg(long, requires = "cluster")]
    admission_webhook: bool,
    /// With --audit-webhook and --tls-cert: the audit webhook takes only
    /// requests that present a client certificate this CA (PEM) signed,
    /// as the API server's audit kubeconfig can. Other routes (the
    /// probes, the admission webhooks) ask for none.
    #[arg(long, value_name = "FILE", requires_all = ["audit_webhook", "tls_cert"])]
    audit_client_ca: Option<PathBuf>,
    /// With --tls-cert: every webhook the API server calls (audit,
    /// admission, /gate-webhook, /remediationworkflow-webhook) takes only
    /// requests that present a client certificate this CA (PEM) signed,
    /// as the API server's audit and admission kubeconfigs can (401
    /// otherwise). The probes, /metrics and the catalog's API ask for none.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_cert",
        conflicts_with = "audit_client_ca"
    )]
    webhook_client_ca: Option<PathBuf>,
    /// Most admission facts kept waiting for the watch event of their
    /// change; beyond it, the least recent go (each counted in
    /// plumbline_attribution_evictions_total).
    #[arg(long, value_name = "COUNT", default_value_t = NonZeroUsize::new(10_000).unwrap())]
    admission_capacity: NonZeroUsize,
    /// Seconds an admission fact waits for the watch event of its change
    /// (a write rejected after admission makes none).
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = super::at_least_one)]
    admission_ttl: u64,
    /// Seconds a watch event waits for the audit event that names who
    /// made it; one that does not come in time is the visible sentinel's.
    /// The API server sends a batch every --audit-webhook-batch-max-wait
    /// (30 s by default): set that to 1s, or raise this (at most 60).
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0, value_parser = grace_seconds)]
    attribution_grace: f64,
    /// Following a cluster, seconds between two discoveries of the cluster's
    /// resources: a CRD installed since is followed, one removed is not.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = super::at_least_one)]
    discovery_interval: u64,
    /// The repository to mirror into: a local path or any URL git takes. A
    /// local path that does not exist becomes a new bare repository.
    #[arg(long, value_name = "URL", default_value = "plumbline-demo.git")]
    repo: String,
    /// The branch to commit to.
    #[arg(long, default_value = "main", value_parser = branch_name)]
    branch: String,
    /// The folder inside the repository that Plumbline owns.
    #[arg(long, value_name = "PATH", default_value = "")]
    base_folder: String,
    /// What to do with files no object produces any more.
    #[arg(long, value_enum, default_value_t = Prune::Always)]
    prune: Prune,
    /// Who made the changes in the folder; without it, commits are authored
    /// by the visible sentinel "Unknown actor".
    #[arg(long, value_name = "NAME")]
    actor: Option<String>,
    /// Policy configuration; without one the built-in default policies run.
    #[arg(long, value_name = "CONFIG")]
    policy: Option<PathBuf>,
    /// A policy bundle (registry/repository:tag or …@sha256:…) whose steps
    /// are appended to every chain they answer; its tag is followed. Its
    /// plugins are granted nothing; grant capabilities in a --policy file.
    #[arg(long, value_name = "REF")]
    bundle: Option<String>,
    /// Where Plumbline keeps its queue and its repositories. Default: next to
    /// the component cache.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Seconds between looks at the source folder when following it (1 or
    /// more: 0 would look without pause and spin a core).
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = super::at_least_one)]
    interval: u64,
    /// Where a namespaced object without a namespace goes, as with
    /// `kubectl apply`. Whether a kind is namespaced comes from the
    /// built-in kinds and the CRDs in the folder.
    #[arg(long, value_name = "NAMESPACE", default_value = "default", value_parser = namespace_name)]
    default_namespace: String,
    /// Manifest files larger than this are refused unread (and reported).
    #[arg(long, value_name = "BYTES", default_value_t = walk::DEFAULT_MAX_FILE_BYTES)]
    max_file_bytes: u64,
    /// With --once, seconds a remote may keep failing before Plumbline gives
    /// up. Following, it retries for ever, with backoff.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    retry_for: u64,
    /// Most files one commit of followed changes changes.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = at_least_one_size)]
    batch_files: usize,
    /// Most bytes of file content one commit of followed changes writes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = at_least_one_size)]
    batch_bytes: usize,
    /// Most files one commit of a seed (a full listing) changes. Larger
    /// than --batch-files: Git rewrites every folder a commit touches, and
    /// a seed touches them all.
    #[arg(long, value_name = "N", default_value_t = BatchLimits::seed().files, value_parser = at_least_one_size)]
    seed_batch_files: usize,
    /// Most bytes of file content one commit of a seed writes.
    #[arg(long, value_name = "BYTES", default_value_t = BatchLimits::seed().bytes, value_parser = at_least_one_size)]
    seed_batch_bytes: usize,
    /// Longest a change waits (seconds) for its batch to fill.
    #[arg(long, value_name = "SECONDS", default_value_t = 20.0)]
    batch_wait: f64,
    /// The commit subject; {operation}, {count}, {resources} and
    /// {destination} are replaced.
    #[arg(long, value_name = "TEMPLATE", default_value = worker::DEFAULT_MESSAGE, value_parser = subject)]
    message: String,
    /// Most entries waiting in the queue per repository and branch; when
    /// full, reading the source waits (nothing is dropped).
    #[arg(long, value_name = "N", default_value_t = 50_000)]
    queue_capacity: u64,
    /// Where to serve /healthz, /readyz and /metrics. Following, the default
    /// is 127.0.0.1:9478; with --once, only if given.
    #[arg(long, value_name = "ADDRESS")]
    listen: Option<SocketAddr>,
    #[command(flatten)]
    http: super::HttpArgs,
    #[command(flatten)]
    catalog: super::catalog::ServeArgs,
    #[command(flatten)]
    nats: super::NatsArgs,
    /// Signs every commit with this OpenSSH private key (ed25519 or ECDSA,
    /// without a passphrase), as git verifies with gpg.format=ssh. A
    /// key that cannot be read stops the run: commits are never written
    /// unsigned instead. `plumbline git signing-key` prints its public key.
    #[arg(long, value_name = "FILE", env = "PLUMBLINE_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
}

/// A grace window in seconds: not negative, and no longer than a fact is
/// kept (60 s), or the fact would be gone before its event gave up.
fn grace_seconds(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if (0.0..=60.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not between 0 and 60 seconds"))
    }
}

/// A count that must be at least one.
fn at_least_one_size(text: &str) -> Result<usize, String> {
    let n = super::at_least_one(text)?;
    usize::try_from(n).map_err(|_| format!("{n} is too large"))
}

/// A namespace name as Kubernetes takes it: a DNS label (RFC 1123).
fn namespace_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{}` is not a namespace name (lower-case letters, digits and `-`, at most 63, starting and ending with a letter or digit)",
            text.escape_debug()
        ))
    }
}

/// A branch name Git takes (`git check-ref-format --branch`), asked of
/// gix's own validation: a bad one would otherwise fail every push.
fn branch_name(text: &str) -> Result<String, String> {
    let full = format!("refs/heads/{text}");
    gix::validate::reference::branch_name(full.as_bytes().into())
        .map(|_| text.to_owned())
        .map_err(|e| {
            format!(
                "`{}` is not a branch name Git takes: {e}",
                text.escape_debug()
            )
        })
}

/// A commit subject template: one non-empty line.
fn subject(text: &str) -> Result<String, String> {
    if text.trim().is_empty() || text.contains('\n') {
        Err("the commit subject must be one line that is not empty".into())
    } else {
        Ok(text.to_owned())
    }
}

/// The default address of the HTTP server.
const DEFAULT_LISTEN: &str = "127.0.0.1:9478";

/// Runs the mirror once or for ever.
pub fn run(global: &GlobalArgs, args: RunArgs) -> anyhow::Result<ExitCode> {
    let runtime = crate::daemon::runtime().context("starting the async runtime")?;
    let Policies {
        runtime: _runtime,
        set,
        loader,
        digests,
        offline,
        cel_limits,
        _bundles,
    } = load_policies(
        global,
        args.policy.as_deref(),
        args.bundle.as_deref(),
        Some(runtime.handle()),
    )?;
    let reading = config_file::Reading {
        cel: cel_limits,
        max_bytes: args.max_file_bytes,
    };
    let stamp = args.config.as_deref().and_then(config_file::Stamp::of);
    // The certificate and the kubeconfig first: a run that cannot serve
    // or reach its source creates no repository.
    let client_ca = args
        .webhook_client_ca
        .as_ref()
        .or(args.audit_client_ca.as_ref());
    let tls = args.http.tls(client_ca.map(PathBuf::as_path))?;
    let webhooks_certified = args.webhook_client_ca.is_some();
    let reach = match (&args.kubeconfig, args.in_cluster) {
        (Some(path), _) => Some(cluster::Reach::Kubeconfig(path)),
        (None, true) => Some(cluster::Reach::InCluster),
        (None, false) => None,
    };
    let cluster = match reach {
        Some(reach) => Some(
            runtime
                .block_on(cluster::connect(reach))
                .context("reaching the cluster")?,
        ),
        None => None,
    };
    // Without --config, a cluster's rules are its own custom resources.
    let from_cluster = match (&cluster, &args.config) {
        (Some((client, _)), None) => Some(client.clone()),
        _ => None,
    };
    let config = match &from_cluster {
        Some(client) => cluster_rules(client, &runtime, reading)?,
        None => mirror_config(&args, reading)?,
    };
    let state = args
        .state_dir
        .clone()
        .or_else(|| global.cache_dir().map(|c| c.with_file_name("state")))
        .unwrap_or_else(|| std::env::temp_dir().join("plumbline-state"));
    let listen = match args.listen {
        Some(address) => Some(address),
        None if args.once => None,
        None => Some(DEFAULT_LISTEN.parse().expect("a valid address")),
    };
    let index = directory::index_path(&state, &args.source_dir);
    let directory = || {
        DirectorySource::new(
            &args.source_dir,
            SourceOptions {
                actor: args.actor.clone(),
                default_namespace: args.default_namespace.clone(),
                max_file_bytes: args.max_file_bytes,
                index: Some(index.clone()),
            },
            Duration::from_secs(args.interval),
        )
    };
    let name = match &cluster {
        Some((_, server)) => format!("cluster {server}"),
        None => directory().name(),
    };
    let handle = runtime.handle().clone();
    // The webhooks say who made each change.
    let facts = args.audit_webhook.then(|| {
        Arc::new(Facts::new(FactsConfig {
            grace: Duration::from_secs_f64(args.attribution_grace),
            ..FactsConfig::default()
        }))
    });
    let admissions = args.admission_webhook.then(|| {
        Arc::new(Admissions::new(AdmittedConfig {
            ttl: Duration::from_secs(args.admission_ttl),
            capacity: args.admission_capacity,
        }))
    });
    let mut routes = attribution::routes(
        facts.clone().map(|f| (f, client_ca.is_some())),
        admissions.clone().map(|a| (a, webhooks_certified)),
    );
    let nats = args.nats.settings();
    if let Some(nats) = nats
        .as_ref()
        .filter(|_| facts.is_some() || admissions.is_some())
    {
        // Whichever replica reads the cluster needs what every one's
        // webhooks were told.
        let keep = FactsConfig::default()
            .ttl
            .max(Duration::from_secs(args.admission_ttl));
        let stores = attribution::shared::Stores {
            audit: facts.clone(),
            admission: admissions.clone(),
        };
        attribution::shared::share(&handle, nats, stores, keep).map_err(|e| {
            let url = crate::nats::shown(&nats.url);
            anyhow::anyhow!("sharing attribution facts on NATS {url}: {e}")
        })?;
    }
    let policies = Serving::new(Arc::new(set), digests);
    let registry = crate::oci::OciClient::on(handle.clone(), global.oci_config()?)?;
    let mut export: Vec<Export> = Vec::new();
    if let Some((catalog, metrics)) = super::catalog::routes(
        &args.catalog,
        || super::catalog::store(nats.as_ref(), &handle, &state),
        webhooks_certified,
        registry,
        policies.clone(),
        {
            let client = cluster.as_ref().map(|(client, _)| client.clone());
            client.map(|c| (c, handle.clone(), args.interval))
        },
    )? {
        routes = routes.merge(catalog);
        export.push(metrics);
    }
    let attribution = (facts.is_some() || admissions.is_some())
        .then(|| Arc::new(Attribution::new(facts, admissions)));
    if let Some(attribution) = attribution.clone() {
        export.push(Box::new(move |registry| attribution.register(registry)));
    }
    let setup = Setup {
        runtime,
        routes,
        policies,
        bundles: loader.map(|loader| Bundles { loader, offline }),
        config,
        state,
        queue_capacity: args.queue_capacity,
        nats,
        sink: sink_options(&args, &name)?,
        listen: listen.map(|address| (address, args.http.limits())),
        tls,
        once: args.once,
        export,
    };
    let daemon = Daemon::start(setup, &name)?;
    if let Some(bound) = daemon.address() {
        let scheme = if args.http.serves_tls() {
            "https"
        } else {
            "http"
        };
        eprintln!("serving /healthz, /readyz and /metrics on {scheme}://{bound}");
    }
    // What the source cannot read, for the statuses of the rules.
    let unreadable = cluster::Unreadable::default();
    if !args.once {
        stop_on_signals(&daemon)?;
        if let Some(client) = from_cluster {
            let handle = daemon.handle();
            let apply = move |config: MirrorConfig| -> Result<(), String> {
                let config = prepared(config).map_err(|e| format!("{e:#}"))?;
                handle.set_config(config).map_err(|e| e.to_string())
            };
            let policies = daemon.policies();
            cluster::rules::follow(cluster::rules::Following {
                client,
                runtime: daemon.runtime().clone(),
                limits: reading.cel,
                interval: Duration::from_secs(args.interval),
                applied: daemon.handle().config().fingerprint(),
                apply: Box::new(apply),
                health: daemon.health(),
                unreadable: unreadable.clone(),
                skip: Box::new(move || skip_of(&policies.set())),
            })
            .context("starting the thread that follows the cluster's rules")?;
        }
        if let Some(path) = &args.config {
            config_file::follow(
                path.clone(),
                reading,
                &daemon,
                Duration::from_secs(args.interval),
                stamp,
            )?;
        }
    }
    let mut source: Box<dyn Source> = match cluster {
        Some((client, _)) => {
            let routes = daemon.handle();
            let current = routes.clone();
            let rules = move || routes.config().rules.into_iter().map(|r| r.rule).collect();
            let config = move || current.config().fingerprint();
            let policies = daemon.policies();
            let skip = move || skip_of(&policies.set());
            let options = ClusterOptions {
                name: name.clone(),
                rules: Box::new(rules),
                config: Box::new(config),
                skip: Box::new(skip),
                resume: !args.once,
                rediscover: Duration::from_secs(args.discovery_interval),
                attribution,
                health: Some(daemon.health()),
                unreadable,
            };
            Box::new(ClusterSource::new(client, handle, options))
        }
        None => Box::new(directory()),
    };
    let progress = progress::Progress::start(daemon.metrics(), &name, &daemon.partitions());
    let outcome = daemon.run(source.as_mut(), &Stderr)?;
    finish(outcome, progress)
}

fn sink_options(args: &RunArgs, source: &str) -> anyhow::Result<SinkOptions> {
    let mut options = SinkOptions::new(source);
    options.batch.files = args.batch_files;
    options.batch.bytes = args.batch_bytes;
    options.batch.wait = Duration::from_secs_f64(args.batch_wait.max(0.0));
    options.seed_batch.files = args.seed_batch_files;
    options.seed_batch.bytes = args.seed_batch_bytes;
    options.seed_batch.wait = options.batch.wait;
    options.message_template = args.message.clone();
    options.retry_for = args.once.then(|| Duration::from_secs(args.retry_for));
    if let Some(path) = &args.signing_key {
        let signer = crate::signing::Signer::from_file(path)?;
        tracing::info!(key = signer.fingerprint(), "signing every commit");
        options.signing = Some(std::sync::Arc::new(signer));
    }
    Ok(options)
}

/// Prints what each worker did, says where to look, and whether the run
/// did everything.
fn finish(outcome: Outcome, progress: progress::Progress) -> anyhow::Result<ExitCode> {
    let Some(seed) = &outcome.seed else {
        // A follower when it stopped: it handed its partitions over.
        progress.finish();
        eprintln!(
            "this replica was not reading the source when it stopped: the partitions it held are handed over to the others"
        );
        return match outcome.sinks.into_iter().find_map(|(_, ended)| ended.err()) {
            Some(error) => Err(error.into()),
            None => Ok(ExitCode::SUCCESS),
        };
    };
    let mut failure = None;
    let mut reports = Vec::new();
    for (partition, ended) in outcome.sinks {
        match ended {
            Ok(report) => reports.push((partition, report)),
            Err(error) => failure = Some(error),
        }
    }
    progress.finish();
    for (partition, report) in &reports {
        summarize(seed, partition, report);
    }
    if let Some(error) = failure {
        return Err(error.into());
    }
    // What was set aside is not in Git: like a file that did not parse, it
    // fails the run (everything else was pushed).
    let set_aside: usize = reports.iter().map(|(_, r)| r.set_aside).sum();
    for (partition, _) in &reports {
        if Path::new(partition.repo.as_str()).is_dir() {
            let (repo, branch) = (&partition.repo, &partition.branch);
            println!("look at it: git --git-dir {repo} log --stat {branch}");
            println!("the tree:   git --git-dir {repo} ls-tree -r --name-only {branch}");
        } else {
            println!("pushed to {partition}");
        }
    }
    // Say why the run fails: its exit status alone does not.
    if seed.unread > 0 {
        eprintln!(
            "failed: {} file(s), document(s) or resource(s) could not be read (above); {}",
            seed.unread,
            if seed.complete {
                "what they held before was kept, the rest pruned"
            } else {
                "what they held is not known, so nothing was pruned"
            }
        );
    }
    if set_aside > 0 {
        eprintln!("failed: {set_aside} change(s) set aside (above) are not in Git");
    }
    if !seed.routed {
        eprintln!(
            "failed: some objects could not be routed through the policies (above); their files were kept as they are"
        );
    }
    let complete = seed.unread == 0 && seed.routed && set_aside == 0;
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn summarize(seed: &SeedReport, partition: &Partition, report: &SyncReport) {
    eprintln!(
        "{} object(s) from {} → {} file(s) in {partition}: {} written, {} deleted, {} commit(s), {} push retries{}{}",
        seed.objects,
        seed.from,
        report.files,
        report.written,
        report.deleted,
        report.commits,
        report.push_retries,
        if report.orphans_kept > 0 {
            format!(
                "; {} orphan(s) kept: the seed was incomplete",
                report.orphans_kept
            )
        } else {
            String::new()
        },
        if report.set_aside > 0 {
            format!(
                "; {} change(s) set aside: the sink cannot write them (see the errors above)",
                report.set_aside
            )
        } else {
            String::new()
        }
    );
}

/// What `*` leaves out under `policies`: the settings of the match
/// chain's `rule-match` step (the default's when there is none, or they
/// do not read: the plugin refused them when it loaded).
fn skip_of(policies: &crate::policy::chain::PolicySet) -> plumbline_kinds::scope::Skip {
    use crate::policy::chain::Step;
    policies
        .chain(crate::policy::Decision::Match)
        .steps()
        .iter()
        .find_map(|step| match step {
            Step::Plugin(p) if p.name() == "rule-match" => {
                plumbline_kinds::scope::Skip::from_settings(p.settings()).ok()
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// The rules of the cluster's custom resources, their statuses written.
fn cluster_rules(
    client: &kube::Client,
    runtime: &tokio::runtime::Runtime,
    reading: config_file::Reading,
) -> anyhow::Result<MirrorConfig> {
    let rules = runtime.block_on(cluster::rules::read(client, reading.cel))?;
    // Nothing was listed yet: no resource is known to be unreadable.
    let skip = plumbline_kinds::scope::Skip::default();
    runtime.block_on(rules.report(client, &Default::default(), &skip));
    let (read, refused) = rules.counts();
    eprintln!(
        "rules: {read} {} resource(s) read from the cluster, {refused} not ready (their status says why)",
        cluster::rules::API_VERSION
    );
    prepared(rules.config)
}

/// `config` with each local repository made ready.
fn prepared(mut config: MirrorConfig) -> anyhow::Result<MirrorConfig> {
    for destination in &mut config.destinations {
        destination.repo_url = prepare_repo(destination.repo_url.as_str(), &destination.branch)?;
    }
    Ok(config)
}

/// The destinations and rules: from `--config`, or one destination from
/// the flags that takes every kind but the noisy ones.
fn mirror_config(args: &RunArgs, reading: config_file::Reading) -> anyhow::Result<MirrorConfig> {
    if let Some(path) = &args.config {
        return config_file::read(path, reading);
    }
    Ok(MirrorConfig::everything_to(Destination {
        name: "default".into(),
        repo_url: prepare_repo(&args.repo, &args.branch)?,
        branch: args.branch.clone(),
        base_folder: BaseFolder::new(&args.base_folder)?,
        prune: args.prune,
        commit: Default::default(),
        credentials: None,
        signing: None,
    }))
}

/// The form [`prepare_repo`] gives `repo`, without creating anything: a
/// local path made absolute (and canonical, if it exists).
pub(super) fn local_form(repo: &str) -> RepoUrl {
    if !is_local(repo) {
        return repo.into();
    }
    let path = Path::new(repo);
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .map_or_else(|_| repo.into(), |p| p.display().to_string().into())
}

/// Whether `repo` is a local path, not a URL (`scheme://…`, `user@host:…`).
fn is_local(repo: &str) -> bool {
    !(repo.contains("://") || repo.contains('@'))
}

/// SIGTERM (what Kubernetes sends a pod it stops) or SIGINT stops
/// following: what was read is routed and pushed, and the run ends as a
/// stop does. A second signal ends the process at once (128 + its number);
/// nothing is lost then either, as the queue is on disk, but the push waits
/// for a restart. With `--once` the signals keep their default: the run
/// ends at once, and the next run pushes what was queued.
fn stop_on_signals(daemon: &Daemon) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handle = daemon.handle();
    let _entered = daemon.runtime().enter();
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    daemon.runtime().spawn(async move {
        let mut first = true;
        loop {
            let (name, number) = tokio::select! {
                _ = terminate.recv() => ("SIGTERM", libc::SIGTERM),
                _ = interrupt.recv() => ("SIGINT", libc::SIGINT),
            };
            if !first {
                eprintln!("{name} again: exiting now; what is queued is pushed after a restart");
                // As a shell reports a process the signal ended.
                std::process::exit(128 + number);
            }
            first = false;
            eprintln!("{name}: stopping; pushing what is queued (a second signal exits at once)");
            handle.stop();
        }
    });
    Ok(())
}

/// A local path that does not exist yet becomes a bare repository whose
/// `HEAD` is `branch` (so that `git clone` checks out what the mirror
/// writes), and the main command needs no Git server; anything else is
/// used as given.
pub(super) fn prepare_repo(repo: &str, branch: &str) -> anyhow::Result<RepoUrl> {
    if !is_local(repo) {
        return Ok(repo.into());
    }
    let path = Path::new(repo);
    if !path.exists() {
        let status = std::process::Command::new("git")
            .args(["init", "--quiet", "--bare"])
            .arg(format!("--initial-branch={branch}"))
            .arg(path)
            .status()
            .context("running git")?;
        anyhow::ensure!(status.success(), "git init --bare {repo} failed");
        // Said, so that a mistyped path is not a silent new repository.
        eprintln!("{repo} did not exist: created a bare repository there");
    }
    Ok(std::fs::canonicalize(path)
        .with_context(|| repo.to_owned())?
        .display()
        .to_string()
        .into())
}
