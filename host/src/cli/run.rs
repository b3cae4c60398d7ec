//! `plumbline run`: mirror a source into Git.
//!
//! For now the source is a folder of manifests; each pass reads it whole (a
//! snapshot), routes every object through the match and sanitize chains,
//! and brings each destination to the files that snapshot implies, in
//! batched commits, pruning orphans only after a complete snapshot.

use super::{GlobalArgs, load_policies};
use crate::ingest::directory;
use crate::mirror::{Destination, MirrorConfig, Pipeline, Prune, desired_state, resources};
use crate::sink::layout::BaseFolder;
use crate::sink::worker::{self, SyncOptions, SyncReport};
use anyhow::Context as _;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
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
    #[arg(long, default_value = "main")]
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
    /// Where Plumbline keeps its clone. Default: next to the component cache.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Seconds between passes when following the source.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    interval: u64,
    /// Seconds to keep retrying a remote that does not answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    retry_for: u64,
    /// Most files one commit changes.
    #[arg(long, value_name = "N", default_value_t = 200)]
    batch_files: usize,
}

/// Runs the mirror once or for ever.
pub fn run(global: &GlobalArgs, args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = mirror_config(&args)?;
    let (_runtime, policies) = load_policies(global, args.policy.as_deref())?;
    let pipeline = Pipeline::new(policies, config);
    pipeline.check_rules()?;
    let state = args
        .state_dir
        .clone()
        .or_else(|| global.cache_dir().map(|c| c.with_file_name("state")))
        .unwrap_or_else(|| std::env::temp_dir().join("plumbline-state"));
    loop {
        let ok = match pass(&pipeline, &args, &state) {
            Ok(ok) => ok,
            // Following, a pass that fails (a remote down past the retry
            // budget) is reported and the next pass tries again: the
            // folder is the truth, so nothing is lost by waiting.
            Err(error) if !args.once => {
                eprintln!("error: {error:#}; trying again in {} s", args.interval);
                false
            }
            Err(error) => return Err(error),
        };
        if args.once {
            if ok {
                for d in &pipeline.config().destinations {
                    println!(
                        "look at it: git --git-dir {} log --stat {}",
                        d.repo_url, d.branch
                    );
                }
            }
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        std::thread::sleep(Duration::from_secs(args.interval));
    }
}

/// The destinations and rules: from `--config`, or one destination from
/// the flags that takes every kind but the noisy ones.
fn mirror_config(args: &RunArgs) -> anyhow::Result<MirrorConfig> {
    if let Some(path) = &args.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config = resources::read(&text, &path.display().to_string()).map_err(|errors| {
            anyhow::anyhow!(
                "{} error(s) in the mirror configuration:\n  - {}",
                errors.len(),
                errors.join("\n  - ")
            )
        })?;
        for destination in &mut config.destinations {
            destination.repo_url = prepare_repo(&destination.repo_url)?;
        }
        return Ok(config);
    }
    Ok(MirrorConfig::everything_to(Destination {
        name: "default".into(),
        repo_url: prepare_repo(&args.repo)?,
        branch: args.branch.clone(),
        base_folder: BaseFolder::new(&args.base_folder)?,
        prune: args.prune,
    }))
}

/// One snapshot, routed and synced to every destination; `false` if
/// anything could not be mirrored.
fn pass(pipeline: &Pipeline, args: &RunArgs, state: &Path) -> anyhow::Result<bool> {
    let started = std::time::Instant::now();
    let snapshot = directory::scan(&args.source_dir, args.actor.as_deref());
    for error in &snapshot.errors {
        eprintln!("error: {error}");
    }
    let desired = desired_state(pipeline, &snapshot);
    for error in &desired.errors {
        eprintln!("error: {error}");
    }
    tracing::info!(objects = snapshot.events.len(), elapsed = ?started.elapsed(), "snapshot read and routed");
    let mut options = SyncOptions::new(format!("directory {}", args.source_dir.display()));
    options.complete = desired.complete;
    options.deleted_by = args.actor.clone();
    options.retry_for = Duration::from_secs(args.retry_for);
    options.batch.files = args.batch_files.max(1);
    for (index, destination) in pipeline.config().destinations.iter().enumerate() {
        let files = &desired.files[&index];
        let workdir = state.join(clone_folder(destination));
        let synced = std::time::Instant::now();
        let report = worker::sync(destination, files, &workdir, &options)?;
        tracing::info!(destination = %destination.name, elapsed = ?synced.elapsed(), "synced");
        summarize(&snapshot, files.len(), destination, &report);
    }
    Ok(desired.complete)
}

fn summarize(
    snapshot: &directory::Snapshot,
    files: usize,
    destination: &Destination,
    report: &SyncReport,
) {
    eprintln!(
        "{} object(s) from {} file(s) → {files} file(s) in {} ({}): {} written, {} deleted, {} commit(s), {} push retries{}",
        snapshot.events.len(),
        snapshot.files,
        crate::sink::git::redact(&destination.repo_url),
        destination.branch,
        report.written,
        report.deleted,
        report.commits,
        report.push_retries,
        if report.orphans_kept > 0 {
            format!(
                "; {} orphan(s) kept: the snapshot was incomplete",
                report.orphans_kept
            )
        } else {
            String::new()
        }
    );
}

/// A folder name for a destination's clone, unique per repository and branch.
fn clone_folder(destination: &Destination) -> String {
    let digest = crate::policy::cache::content_digest(
        format!("{}\n{}", destination.repo_url, destination.branch).as_bytes(),
    );
    format!("clone-{}", &digest["sha256:".len().."sha256:".len() + 16])
}

/// A local path that does not exist yet becomes a bare repository, so the
/// main command needs no Git server; anything else is used as given.
fn prepare_repo(repo: &str) -> anyhow::Result<String> {
    if repo.contains("://") || repo.contains('@') {
        return Ok(repo.to_owned());
    }
    let path = Path::new(repo);
    if !path.exists() {
        let status = std::process::Command::new("git")
            .args(["init", "--quiet", "--bare"])
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
