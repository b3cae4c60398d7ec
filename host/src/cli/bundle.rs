//! `plumbline bundle push|pull|inspect`: policy bundles in OCI registries.

use super::GlobalArgs;
use crate::bundle::format::{self, BUNDLE_FILE, TITLE};
use crate::bundle::{BundleConfig, CEL_MEDIA_TYPE};
use crate::oci::{Artifact, OciClient, cosign};
use crate::policy::bundled::{BundleContent, BundleStepKind};
use crate::policy::capability::{Grants, Preopen};
use crate::policy::config::PolicyConfig;
use crate::policy::{Runtime, RuntimeConfig};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `plumbline bundle …`.
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Builds a bundle from a folder (its bundle.yaml and the files it
    /// names), checks it, pushes it, and prints its digest.
    Push(PushArgs),
    /// Pulls a bundle into a folder that `bundle push` can push again.
    Pull(PullArgs),
    /// Shows what a bundle holds: its steps, settings, asks, sizes, digests.
    Inspect(InspectArgs),
    /// Signs a pushed bundle as `cosign sign --key` does (the signature at
    /// the tag `sha256-<digest>.sig`, beside any others), and prints the
    /// digest signed.
    Sign(SignArgs),
    /// Checks that a bundle carries a cosign signature made by one of the
    /// given public keys, as a daemon whose bundle says `verify` does.
    Verify(VerifyArgs),
}

/// Arguments of `plumbline bundle sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The bundle: registry/repository:tag or …@sha256:….
    #[arg(value_name = "REF")]
    reference: String,
    /// The private key: PEM, ECDSA P-256, PKCS#8 or SEC1, unencrypted
    /// (`openssl ecparam -name prime256v1 -genkey -noout -out key.pem`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
}

/// Arguments of `plumbline bundle verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle: registry/repository:tag or …@sha256:….
    #[arg(value_name = "REF")]
    reference: String,
    /// A trusted public key (PEM, as `cosign public-key` or `openssl ec
    /// -pubout` prints it); give it again for more keys.
    #[arg(long = "key", value_name = "FILE", required = true)]
    keys: Vec<PathBuf>,
}

/// Arguments of `plumbline bundle push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The folder holding bundle.yaml.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Where to push: registry/repository:tag.
    #[arg(value_name = "REF")]
    reference: String,
}

/// Arguments of `plumbline bundle pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The bundle: registry/repository:tag or …@sha256:….
    #[arg(value_name = "REF")]
    reference: String,
    /// The folder to write; default: the repository's last name.
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Arguments of `plumbline bundle inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The bundle: registry/repository:tag or …@sha256:….
    #[arg(value_name = "REF")]
    reference: String,
}

/// Runs a bundle subcommand.
pub fn run(global: &GlobalArgs, command: BundleCommand) -> anyhow::Result<ExitCode> {
    let client = global.oci_client()?;
    match command {
        BundleCommand::Push(args) => push(global, &client, &args),
        BundleCommand::Pull(args) => pull(&client, &args),
        BundleCommand::Inspect(args) => inspect(&client, &args),
        BundleCommand::Sign(args) => sign(&client, &args),
        BundleCommand::Verify(args) => verify(&client, &args),
    }
}

fn sign(client: &OciClient, args: &SignArgs) -> anyhow::Result<ExitCode> {
    let key = cosign::SignerKey::read(&args.key)?;
    let (digest, at) = cosign::sign(client, &args.reference, &key)?;
    eprintln!(
        "signed {}@{digest}: the signature is at {at}",
        args.reference
    );
    println!("{digest}");
    Ok(ExitCode::SUCCESS)
}

fn verify(client: &OciClient, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let keys = cosign::TrustedKeys::read(&args.keys)?;
    let digest = client.resolve(&args.reference)?;
    let key = cosign::verify(client, &args.reference, &digest, &keys)?;
    eprintln!("{}@{digest}: signed with the key {key}", args.reference);
    println!("{digest}");
    Ok(ExitCode::SUCCESS)
}

fn push(global: &GlobalArgs, client: &OciClient, args: &PushArgs) -> anyhow::Result<ExitCode> {
    let artifact = format::build(&args.dir)?;
    check(global, &args.reference, &artifact)?;
    let bar = bytes_bar(total_size(&artifact), "pushing");
    let digest = client.push_with_progress(&args.reference, &artifact, &mut |n| bar.inc(n))?;
    bar.finish_and_clear();
    eprintln!(
        "pushed {} ({} layer(s), {} bytes)",
        args.reference,
        artifact.layers.len(),
        total_size(&artifact)
    );
    println!("{digest}");
    Ok(ExitCode::SUCCESS)
}

/// Loads the bundle as a daemon would, granting what it asks: every
/// component must implement its decision's world and accept its settings,
/// every CEL policy must compile.
fn check(global: &GlobalArgs, reference: &str, artifact: &Artifact) -> anyhow::Result<()> {
    let content = format::read_artifact(reference, artifact)?;
    // Granted folders are checked for existence and opened for the settings
    // check; an empty folder stands in for the operator's.
    let empty = tempfile::tempdir()?;
    let mut grants = BTreeMap::new();
    for step in &content.steps {
        if let BundleStepKind::Plugin { name, asks, .. } = &step.kind {
            let filesystem = asks.filesystem.iter().map(|guest| Preopen {
                host: empty.path().to_owned(),
                guest: guest.clone(),
            });
            grants.insert(
                name.clone(),
                Grants {
                    environment: asks.environment.clone(),
                    filesystem: filesystem.collect(),
                    network: asks.network,
                    real_clock: asks.real_clock,
                    real_random: asks.real_random,
                },
            );
        }
    }
    let mut config = PolicyConfig::builtin();
    config.append_bundle("bundle", reference, grants);
    let runtime = Runtime::new(&RuntimeConfig {
        cache_dir: global.cache_dir(),
        ..RuntimeConfig::default()
    })?;
    let contents = BTreeMap::from([("bundle".to_owned(), content)]);
    config
        .load_with_bundles(&runtime, &contents)
        .with_context(|| format!("the bundle for {reference} does not load"))?;
    Ok(())
}

fn pull(client: &OciClient, args: &PullArgs) -> anyhow::Result<ExitCode> {
    let manifest = client.manifest(&args.reference)?;
    let total = manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>();
    let bar = bytes_bar(total, "pulling");
    let artifact = client.pull_with_progress(&args.reference, &mut |n| bar.inc(n))?;
    bar.finish_and_clear();
    let content = format::read_artifact(&args.reference, &artifact)?;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => PathBuf::from(repository_name(&args.reference)),
    };
    write_folder(&dir, &artifact)?;
    eprintln!(
        "pulled {} ({} step(s)) into {}",
        args.reference,
        content.steps.len(),
        dir.display()
    );
    println!("{}", content.digest);
    Ok(ExitCode::SUCCESS)
}

/// Writes each layer under its title and a bundle.yaml naming them.
fn write_folder(dir: &Path, artifact: &Artifact) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut titles = BTreeMap::new();
    for layer in &artifact.layers {
        let digest = crate::model::digest::content_digest(&layer.data);
        let title = layer
            .annotations
            .get(TITLE)
            .map(String::as_str)
            .filter(|t| is_plain_file_name(t))
            .map_or_else(|| digest.replace(':', "-"), str::to_owned);
        let path = dir.join(&title);
        std::fs::write(&path, &layer.data)
            .with_context(|| format!("writing {}", path.display()))?;
        titles.insert(digest, title);
    }
    let config: BundleConfig = serde_json::from_slice(&artifact.config.data)?;
    let mut yaml = String::from(
        "# Pulled by `plumbline bundle pull`; `plumbline bundle push` takes it back.\nsteps:\n",
    );
    for step in &config.steps {
        yaml.push_str(&format!("  - decision: {}\n", step.decision));
        if let Some(plugin) = &step.plugin {
            yaml.push_str(&format!(
                "    plugin: {}\n",
                yaml_string(&titles[&plugin.component])
            ));
            yaml.push_str(&format!("    name: {}\n", yaml_string(&plugin.name)));
            yaml.push_str(&format!("    settings: {}\n", plugin.settings));
            yaml.push_str(&format!(
                "    capabilities: {}\n",
                serde_json::to_string(&plugin.capabilities)?
            ));
        }
        if let Some(policy) = &step.policy {
            yaml.push_str(&format!(
                "    celFile: {}\n",
                yaml_string(&titles[&policy.file])
            ));
        }
    }
    let path = dir.join(BUNDLE_FILE);
    std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A title used as a file name must stay in the folder.
fn is_plain_file_name(title: &str) -> bool {
    !title.is_empty()
        && title != "."
        && title != ".."
        && title != BUNDLE_FILE
        && !title.contains(['/', '\\', '\0'])
}

/// JSON strings are YAML strings, quoted and escaped.
fn yaml_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn inspect(client: &OciClient, args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let artifact = client.pull(&args.reference)?;
    let content = format::read_artifact(&args.reference, &artifact)?;
    print!("{}", describe(&content, &artifact));
    Ok(ExitCode::SUCCESS)
}

/// What a bundle holds, as text.
fn describe(content: &BundleContent, artifact: &Artifact) -> String {
    let sizes: BTreeMap<String, usize> = artifact
        .layers
        .iter()
        .map(|l| (crate::model::digest::content_digest(&l.data), l.data.len()))
        .collect();
    let config: BundleConfig =
        serde_json::from_slice(&artifact.config.data).expect("read_artifact parsed it");
    let mut out = format!(
        "bundle   {}\ndigest   {}\nconfig   {} ({} bytes)\nlayers   {} ({} bytes)\n",
        content.reference,
        content.digest,
        artifact.config.media_type,
        artifact.config.data.len(),
        artifact.layers.len(),
        artifact.layers.iter().map(|l| l.data.len()).sum::<usize>(),
    );
    for (i, step) in config.steps.iter().enumerate() {
        if let Some(plugin) = &step.plugin {
            out.push_str(&format!(
                "step {i}   {:<8} plugin {}  {} ({} bytes)\n         settings {}\n         asks {}\n",
                step.decision,
                plugin.name,
                plugin.component,
                sizes.get(&plugin.component).copied().unwrap_or(0),
                plugin.settings,
                serde_json::to_string(&plugin.capabilities).expect("asks serialize"),
            ));
        }
        if let Some(policy) = &step.policy {
            out.push_str(&format!(
                "step {i}   {:<8} cel    {}  {} ({} bytes, {CEL_MEDIA_TYPE})\n",
                step.decision,
                policy.name,
                policy.file,
                sizes.get(&policy.file).copied().unwrap_or(0),
            ));
        }
    }
    out
}

fn total_size(artifact: &Artifact) -> u64 {
    (artifact.config.data.len() + artifact.layers.iter().map(|l| l.data.len()).sum::<usize>())
        as u64
}

/// A byte-counting bar on a terminal; nothing elsewhere.
fn bytes_bar(total: u64, verb: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(verb.to_owned());
    bar
}

/// `registry/a/b:tag` → `b`.
fn repository_name(reference: &str) -> String {
    let path = reference.split(['@']).next().unwrap_or(reference);
    let last = path.rsplit('/').next().unwrap_or(path);
    let name = last.split(':').next().unwrap_or(last);
    if is_plain_file_name(name) {
        name.to_owned()
    } else {
        "bundle".to_owned()
    }
}
