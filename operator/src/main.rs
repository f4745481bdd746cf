//! `highpress-operator`: prints the CounterCluster CRD. Reconciling is not built yet.

use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Kubernetes operator for highpress CounterClusters.
///
/// This build only prints the CRD (`crd`). The reconciler is not implemented yet:
/// `run`, the default, exits with an error.
#[derive(Debug, Parser)]
#[command(name = "highpress-operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the CounterCluster CustomResourceDefinition as YAML.
    Crd,
    /// Reconcile CounterClusters (the default). NOT IMPLEMENTED in this build: exits non-zero.
    Run,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Crd => {
            let yaml = highpress_operator::crd_yaml()?;
            std::io::stdout()
                .lock()
                .write_all(yaml.as_bytes())
                .context("writing the CRD to stdout")?;
            Ok(())
        }
        Command::Run => anyhow::bail!(
            "`run` is not implemented in this build: the reconciler does not exist yet. \
             Only `highpress-operator crd` works."
        ),
    }
}
