//! `plumbline git`: what an operator needs to trust the commits Plumbline
//! writes (the public key that verifies them).

use crate::signing::Signer;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// `plumbline git …`.
#[derive(Debug, Subcommand)]
pub enum GitCommand {
    /// Prints the public key of a signing key (as `run --signing-key`
    /// uses it), for the forge's signing keys or git's allowed signers
    /// file, and its fingerprint on stderr.
    SigningKey(SigningKeyArgs),
}

/// Flags of `plumbline git signing-key`.
#[derive(Debug, Args)]
pub struct SigningKeyArgs {
    /// The OpenSSH private key.
    #[arg(long, value_name = "FILE", env = "PLUMBLINE_SIGNING_KEY")]
    signing_key: PathBuf,
    /// Print a line of git's allowed signers file for this principal
    /// (the committer's email) instead of the bare public key.
    #[arg(long, value_name = "EMAIL")]
    allowed_signer: Option<String>,
}

/// Runs `command`.
pub fn run(command: GitCommand) -> anyhow::Result<ExitCode> {
    match command {
        GitCommand::SigningKey(args) => {
            let signer = Signer::from_file(&args.signing_key)?;
            let public = signer.public_key();
            match args.allowed_signer {
                Some(email) => println!("{email} namespaces=\"git\" {public}"),
                None => println!("{public}"),
            }
            eprintln!("fingerprint: {}", signer.fingerprint());
            Ok(ExitCode::SUCCESS)
        }
    }
}
