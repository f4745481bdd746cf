//! `highpress-operator`: prints the CounterCluster CRD and renders CounterCluster files into
//! the objects they become. Reconciling is not built yet.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Kubernetes operator for highpress CounterClusters.
///
/// This build prints the CRD (`crd`) and renders CounterCluster files offline (`render`).
/// The reconciler is not implemented yet:
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
    /// Print every object the CounterCluster(s) in FILE would become, as multi-document YAML.
    /// Needs no cluster. Owner references are left out: a file's objects have no uid.
    Render {
        /// YAML file with one or more CounterCluster documents; `-` reads standard input.
        file: PathBuf,
    },
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
        Command::Render { file } => {
            let input = if file.as_os_str() == "-" {
                let mut input = String::new();
                std::io::stdin()
                    .read_to_string(&mut input)
                    .context("reading CounterClusters from standard input")?;
                input
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let ctx = highpress_operator::build::BuildContext::default();
            let yaml = highpress_operator::render::render(&input, &ctx)
                .with_context(|| format!("rendering {}", file.display()))?;
            std::io::stdout()
                .lock()
                .write_all(yaml.as_bytes())
                .context("writing the objects to stdout")?;
            Ok(())
        }
        Command::Run => anyhow::bail!(
            "`run` is not implemented in this build: the reconciler does not exist yet. \
             Only `highpress-operator crd` and `highpress-operator render FILE` work."
        ),
    }
}
