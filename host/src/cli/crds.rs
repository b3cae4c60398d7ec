//! `plumbline crds`: the custom resource definitions, generated from the
//! Rust types the daemon reads, as YAML for `kubectl apply -f -` (or a
//! Helm chart's `crds/`).

use crate::layout::yaml::canonical;
use clap::Args;
use std::io::Write as _;
use std::process::ExitCode;

/// Flags of `plumbline crds`.
#[derive(Debug, Args)]
pub struct CrdsArgs {}

/// Prints every CRD, one YAML document each.
pub fn run(_args: CrdsArgs) -> anyhow::Result<ExitCode> {
    let text = render()?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The CRDs as one multi-document YAML text.
fn render() -> anyhow::Result<String> {
    let mut text = String::new();
    for crd in plumbline_crd::crds() {
        let value = serde_json::to_value(&crd)?;
        text.push_str("---\n");
        text.push_str(&canonical(&value).map_err(anyhow::Error::msg)?);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crd_reads_back_as_one_document() {
        let text = render().unwrap();
        let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
        let kinds: Vec<_> = documents
            .iter()
            .map(|d| d["spec"]["names"]["kind"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            kinds,
            [
                "GitRepoConfig",
                "GitDestination",
                "WatchRule",
                "ClusterWatchRule"
            ]
        );
        assert!(
            documents
                .iter()
                .all(|d| d["kind"] == "CustomResourceDefinition")
        );
    }
}
