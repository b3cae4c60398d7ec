//! The `plumbline` command: flags parsed by clap into plain values, then
//! turned into working objects once, in each subcommand.

mod plugin_test;
mod policy_check;
mod progress;
mod run;
mod sanitize;

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
    /// loads them instead of compiling. Default: $XDG_CACHE_HOME/plumbline
    /// or ~/.cache/plumbline.
    #[arg(long, global = true, env = "PLUMBLINE_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Keep compiled components in memory only.
    #[arg(long, global = true)]
    no_cache: bool,
    /// Log filter, as in RUST_LOG (`info`, `plumbline=debug`, …).
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
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
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
    let result = match cli.command {
        Command::Run(args) => run::run(&cli.global, *args),
        Command::Sanitize(args) => sanitize::run(&cli.global, args),
        Command::Plugin(PluginCommand::Test(args)) => plugin_test::run(&cli.global, args),
        Command::Policy(PolicyCommand::Check(args)) => policy_check::run(&cli.global, args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
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
}

/// Reads a configuration (or the built-in one) and loads it.
pub fn load_policies(
    global: &GlobalArgs,
    config: Option<&std::path::Path>,
) -> anyhow::Result<(Runtime, PolicySet)> {
    let config = match config {
        Some(path) => PolicyConfig::from_file(path)?,
        None => PolicyConfig::builtin(),
    };
    let runtime = Runtime::new(&config.runtime_config(global.cache_dir()))
        .context("starting the policy runtime")?;
    let set = config.load(&runtime)?;
    Ok((runtime, set))
}
