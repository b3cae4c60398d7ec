//! `plumbline run`: mirror a source into Git.
//!
//! The source (for now a folder of manifests) is seeded, then followed;
//! its events are routed through the match and sanitize chains into the
//! durable queue, and one worker per (repository, branch) commits and
//! pushes from there. With `--once` it seeds, waits for every worker to
//! push everything, prints what it wrote where, and exits.

use super::policy_reload::Reload;
use super::progress;
use super::{GlobalArgs, load_policies};
use crate::ingest::directory::{Changes, Follower, SourceOptions, walk};
use crate::layout::BaseFolder;
use crate::mirror::{Destination, MirrorConfig, MirrorError, Pipeline, Prune, Router, resources};
use crate::policy::cel::CelLimits;
use crate::queue::{Partition, Queue, disk::DiskQueue};
use crate::sink::Folder;
use crate::sink::worker::{self, SinkOptions, SyncReport, Worker};
use crate::telemetry::health::{PassOutcome, Status};
use crate::telemetry::{Health, Metrics};
use anyhow::Context as _;
use clap::Args;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
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
    /// --branch, --base-folder and --prune.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The folder of manifests to mirror.
    #[arg(long, value_name = "DIR", default_value = "examples/cluster")]
    source_dir: PathBuf,
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
    /// Most files one commit changes.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = at_least_one_size)]
    batch_files: usize,
    /// Most bytes of file content one commit writes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = at_least_one_size)]
    batch_bytes: usize,
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
    let policies = load_policies(global, args.policy.as_deref(), args.bundle.as_deref())?;
    let config = mirror_config(&args, policies.cel_limits)?;
    let pipeline = Arc::new(Pipeline::new(policies.set, config.clone()));
    pipeline.check_rules()?;
    let state = args
        .state_dir
        .clone()
        .or_else(|| global.cache_dir().map(|c| c.with_file_name("state")))
        .unwrap_or_else(|| std::env::temp_dir().join("plumbline-state"));
    let (metrics, registry) = Metrics::new();
    let health = Arc::new(Health::default());
    health.set("policies", Status::Ready);
    let listen = match args.listen {
        Some(address) => Some(address),
        None if args.once => None,
        None => Some(DEFAULT_LISTEN.parse().expect("a valid address")),
    };
    if let Some(address) = listen {
        let bound = crate::api::serve(address, args.http.limits(), registry, health.clone())
            .with_context(|| format!("serving HTTP on {address}"))?;
        eprintln!("serving /healthz, /readyz and /metrics on http://{bound}");
    }
    let queue_path = state.join("queue.redb");
    let queue: Arc<dyn Queue> = Arc::new(
        DiskQueue::open(
            &queue_path,
            args.queue_capacity.max(2 * args.batch_files as u64),
        )
        .with_context(|| format!("opening the queue in {}", state.display()))?,
    );
    let source = format!("directory {}", args.source_dir.display());
    let router = Arc::new(Router::new(
        pipeline.clone(),
        queue.clone(),
        metrics.clone(),
        &source,
    ));
    if let Some(loader) = policies.loader.filter(|_| !args.once) {
        Reload {
            offline: policies.offline,
            failure: None,
            loader,
            serving: policies.digests,
            router: router.clone(),
            config,
            health: health.clone(),
            metrics: metrics.clone(),
        }
        .spawn();
    }
    let finished = Arc::new(AtomicBool::new(false));
    let index = source_index(&state, &args.source_dir);
    let context = WorkerContext {
        queue,
        options: sink_options(&args, &source),
        metrics: metrics.clone(),
        health: health.clone(),
        state,
        finished: finished.clone(),
        follow: !args.once,
    };
    let workers = spawn_workers(pipeline.config(), &context)?;
    let partitions: Vec<Partition> = workers.iter().map(|(p, _)| p.clone()).collect();
    let progress = progress::Progress::start(metrics, &source, &partitions);
    let mut follower = Follower::with_options(
        &args.source_dir,
        SourceOptions {
            actor: args.actor.clone(),
            default_namespace: args.default_namespace.clone(),
            max_file_bytes: args.max_file_bytes,
            index: Some(index),
        },
    );
    let seed_id = router.begin_seed()?;
    let mut reported = BTreeSet::new();
    let (seed, routed) = look(&mut follower, &router, &health, &mut reported)?;
    // What could not be read or routed holds back the pruning of only its
    // own files.
    router.keep(&seed.held_back)?;
    router.end_seed(seed_id, seed.is_complete(), args.actor.as_deref())?;
    if args.once {
        finished.store(true, Ordering::Release);
        return finish(workers, &seed, routed, progress);
    }
    tracing::info!(
        objects = seed.events,
        "seeded; following {}",
        args.source_dir.display()
    );
    loop {
        std::thread::sleep(Duration::from_secs(args.interval));
        let (changes, _) = look(&mut follower, &router, &health, &mut reported)?;
        if changes.events > 0 {
            tracing::info!(events = changes.events, "the folder changed");
        }
    }
}

/// One look at the folder, its events routed into the queue as they come;
/// whether every event was routed. What the policies made of it goes to
/// readiness.
fn look(
    follower: &mut Follower,
    router: &Router,
    health: &Health,
    reported: &mut BTreeSet<String>,
) -> anyhow::Result<(Changes, bool)> {
    let mut failure = None;
    let mut routed = true;
    let mut pass = PassOutcome::default();
    let changes = follower.poll(&mut |events| {
        if failure.is_some() {
            return;
        }
        match router.submit(&events) {
            Ok(routing) => {
                pass.objects += routing.events;
                for error in &routing.errors {
                    eprintln!("error: {error}");
                    if let MirrorError::Policy { .. } = error {
                        pass.refused += 1;
                        pass.first_refusal.get_or_insert_with(|| error.to_string());
                    }
                }
                routed &= routing.errors.is_empty();
            }
            Err(error) => failure = Some(error),
        }
    });
    if let Some(error) = failure {
        return Err(error.into());
    }
    health.record_pass(&pass);
    report_errors(&changes, reported);
    Ok((changes, routed))
}

fn report_errors(changes: &Changes, reported: &mut BTreeSet<String>) {
    // A FIFO or a link out of the folder is met on every look: said once
    // while it lasts, again if it goes and comes back.
    let now: BTreeSet<String> = changes.errors.iter().map(|e| e.to_string()).collect();
    for error in now.difference(reported) {
        eprintln!("error: {error}");
    }
    *reported = now;
    for warning in &changes.warnings {
        eprintln!("warning: {warning}");
    }
    for note in &changes.skipped {
        tracing::info!("{note}; skipped");
    }
    if !changes.skipped.is_empty() {
        eprintln!(
            "note: {} document(s) that are not cluster objects were skipped (--log info names them)",
            changes.skipped.len()
        );
    }
}

/// Where the directory source keeps what each file held: one index per
/// folder followed, named by its path's digest.
fn source_index(state: &Path, dir: &Path) -> std::path::PathBuf {
    use sha2::Digest as _;
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    state.join("sources").join(format!("{name}.json"))
}

fn sink_options(args: &RunArgs, source: &str) -> SinkOptions {
    let mut options = SinkOptions::new(source);
    options.batch.files = args.batch_files;
    options.batch.bytes = args.batch_bytes;
    options.batch.wait = Duration::from_secs_f64(args.batch_wait.max(0.0));
    options.message_template = args.message.clone();
    options.retry_for = args.once.then(|| Duration::from_secs(args.retry_for));
    options
}

/// What every worker shares.
struct WorkerContext {
    queue: Arc<dyn Queue>,
    options: SinkOptions,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    state: PathBuf,
    finished: Arc<AtomicBool>,
    follow: bool,
}

type Workers = Vec<(Partition, JoinHandle<anyhow::Result<SyncReport>>)>;

/// One worker thread per (repository, branch).
fn spawn_workers(config: &MirrorConfig, context: &WorkerContext) -> anyhow::Result<Workers> {
    let mut partitions: BTreeMap<Partition, Vec<Folder>> = BTreeMap::new();
    for destination in &config.destinations {
        partitions
            .entry(destination.partition())
            .or_default()
            .push(Folder {
                name: destination.name.clone(),
                base_folder: destination.base_folder.clone(),
                prune: destination.prune,
            });
    }
    let mut workers = Vec::new();
    for (partition, destinations) in partitions {
        let gitdir = context.state.join(repo_folder(&partition));
        let (queue, options) = (context.queue.clone(), context.options.clone());
        let (metrics, health) = (context.metrics.clone(), context.health.clone());
        let (finished, follow) = (context.finished.clone(), context.follow);
        let p = partition.clone();
        let handle = std::thread::Builder::new()
            .name(format!("sink {}", partition.branch))
            .spawn(move || -> anyhow::Result<SyncReport> {
                loop {
                    let result = Worker::new(
                        p.clone(),
                        destinations.clone(),
                        queue.clone(),
                        &gitdir,
                        options.clone(),
                        metrics.clone(),
                        health.clone(),
                    )
                    .and_then(|mut worker| worker.run(&finished));
                    match result {
                        Ok(report) => return Ok(report),
                        // Following, a worker that fails starts over: what
                        // it had not pushed is still in the queue.
                        Err(error) if follow => {
                            let error = anyhow::Error::new(error);
                            eprintln!("error: {error:#}; starting over in 5 s");
                            std::thread::sleep(Duration::from_secs(5));
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
            })?;
        workers.push((partition, handle));
    }
    Ok(workers)
}

/// Waits for every worker, prints what each did, and says where to look.
fn finish(
    workers: Workers,
    seed: &Changes,
    routed: bool,
    progress: progress::Progress,
) -> anyhow::Result<ExitCode> {
    let mut failure = None;
    let mut reports = Vec::new();
    for (partition, handle) in workers {
        match handle.join() {
            Ok(Ok(report)) => reports.push((partition, report)),
            Ok(Err(error)) => failure = Some(error),
            Err(panic) => {
                let message = crate::mirror::pipeline::panic_message(&*panic);
                failure = Some(anyhow::anyhow!(
                    "the sink worker of {partition} panicked: {message}"
                ));
            }
        }
    }
    progress.finish();
    for (partition, report) in &reports {
        summarize(seed, partition, report);
    }
    if let Some(error) = failure {
        return Err(error);
    }
    // What was set aside is not in Git: like a file that did not parse, it
    // fails the run (everything else was pushed).
    let set_aside: usize = reports.iter().map(|(_, r)| r.set_aside).sum();
    for (partition, _) in &reports {
        if Path::new(&partition.repo).is_dir() {
            let (repo, branch) = (&partition.repo, &partition.branch);
            println!("look at it: git --git-dir {repo} log --stat {branch}");
            println!("the tree:   git --git-dir {repo} ls-tree -r --name-only {branch}");
        } else {
            println!("pushed to {partition}");
        }
    }
    // Say why the run fails: its exit status alone does not.
    if !seed.errors.is_empty() {
        eprintln!(
            "failed: {} file(s) or document(s) could not be read (above); {}",
            seed.errors.len(),
            if seed.is_complete() {
                "what they held before was kept, the rest pruned"
            } else {
                "what they held is not known yet (no index of an earlier run), so nothing was pruned"
            }
        );
    }
    if set_aside > 0 {
        eprintln!("failed: {set_aside} change(s) set aside (above) are not in Git");
    }
    if !routed {
        eprintln!(
            "failed: some objects could not be routed through the policies (above); their files were kept as they are"
        );
    }
    let complete = seed.errors.is_empty() && routed && set_aside == 0;
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn summarize(seed: &Changes, partition: &Partition, report: &SyncReport) {
    eprintln!(
        "{} object(s) from {} file(s) → {} file(s) in {partition}: {} written, {} deleted, {} commit(s), {} push retries{}{}",
        seed.events,
        seed.files,
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

/// The destinations and rules: from `--config`, or one destination from
/// the flags that takes every kind but the noisy ones.
fn mirror_config(args: &RunArgs, limits: CelLimits) -> anyhow::Result<MirrorConfig> {
    if let Some(path) = &args.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config =
            resources::read(&text, &path.display().to_string(), limits).map_err(|errors| {
                anyhow::anyhow!(
                    "{} error(s) in the mirror configuration:\n  - {}",
                    errors.len(),
                    errors.join("\n  - ")
                )
            })?;
        for destination in &mut config.destinations {
            destination.repo_url = prepare_repo(&destination.repo_url, &destination.branch)?;
        }
        return Ok(config);
    }
    Ok(MirrorConfig::everything_to(Destination {
        name: "default".into(),
        repo_url: prepare_repo(&args.repo, &args.branch)?,
        branch: args.branch.clone(),
        base_folder: BaseFolder::new(&args.base_folder)?,
        prune: args.prune,
    }))
}

/// A folder name for a partition's repository.
fn repo_folder(partition: &Partition) -> String {
    let digest = crate::model::digest::content_digest(partition.key().as_bytes());
    format!("repo-{}", &digest["sha256:".len().."sha256:".len() + 16])
}

/// A local path that does not exist yet becomes a bare repository whose
/// `HEAD` is `branch` (so that `git clone` checks out what the mirror
/// writes), and the main command needs no Git server; anything else is
/// used as given.
fn prepare_repo(repo: &str, branch: &str) -> anyhow::Result<String> {
    if repo.contains("://") || repo.contains('@') {
        return Ok(repo.to_owned());
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
    }
    Ok(std::fs::canonicalize(path)
        .with_context(|| repo.to_owned())?
        .display()
        .to_string())
}
