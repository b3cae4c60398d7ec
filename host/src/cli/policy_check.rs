//! `plumbline policy check`: load a configuration and report on it.

use super::{GlobalArgs, load_policies};
use crate::policy::chain::Step;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `plumbline policy check`.
#[derive(Debug, Args)]
pub struct PolicyCheckArgs {
    /// The policy configuration (YAML). Every error in it is reported.
    #[arg(value_name = "CONFIG")]
    config: PathBuf,
}

/// Loads the configuration; prints each chain, or every error.
pub fn run(global: &GlobalArgs, args: PolicyCheckArgs) -> anyhow::Result<ExitCode> {
    let loaded = load_policies(global, Some(&args.config), None, None)?;
    let (runtime, policies) = (loaded.runtime, loaded.set);
    for chain in policies.chains() {
        println!("{} (fail-{:?}):", chain.decision(), chain.failure_mode());
        for (index, step) in chain.steps().iter().enumerate() {
            let only = chain
                .kinds_of(index)
                .map(|k| format!(" (only {})", k.kinds().join(", ")))
                .unwrap_or_default();
            match step {
                Step::Plugin(p) => println!("  - plugin {} {}{only}", p.name(), p.digest()),
                Step::Cel(c) => println!("  - cel {}: {}{only}", c.name(), c.expression()),
                Step::Sops(s) => println!("  - sops for {}{only}", s.recipients().join(", ")),
            }
        }
    }
    let stats = runtime.cache_stats();
    println!(
        "components: {} compiled, {} from the disk cache, {} already loaded",
        stats.compiled, stats.from_disk, stats.from_memory
    );
    println!("{}: ok", args.config.display());
    Ok(ExitCode::SUCCESS)
}
