//! `highpress-operator`: reconciles CounterClusters (`run`, the default), prints the CRD
//! (`crd`), or renders CounterCluster files into the objects they become (`render`).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Kubernetes operator for highpress CounterClusters.
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
    /// Reconcile CounterClusters (the default). Uses the in-cluster service account, or
    /// KUBECONFIG outside a cluster.
    Run(RunArgs),
}

/// The flags of `run`. Each default is written once, here: `highpress-operator` without a
/// subcommand parses as `highpress-operator run`.
#[derive(Debug, Args)]
struct RunArgs {
    /// Address of the /livez, /readyz and /metrics server.
    #[arg(
        long,
        env = "HIGHPRESS_OPERATOR_HTTP_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    http_addr: SocketAddr,
    /// Namespaces to watch, comma-separated; empty watches all namespaces.
    #[arg(
        long,
        env = "HIGHPRESS_OPERATOR_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    watch_namespaces: Vec<String>,
    /// Elect a leader through a Lease, so several replicas are safe.
    #[arg(long, env = "HIGHPRESS_OPERATOR_LEADER_ELECTION", default_value = "true", action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "HIGHPRESS_OPERATOR_LEASE_NAME",
        default_value = "highpress-operator"
    )]
    lease_name: String,
    /// Namespace of the Lease [default: POD_NAMESPACE, else the client's namespace].
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// This replica's identity [default: POD_NAME, else the host name].
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Log format.
    #[arg(
        long,
        env = "HIGHPRESS_OPERATOR_LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    log_format: LogFormat,
    /// Log level or tracing filter, such as `info` or `highpress_operator=debug,kube=info`.
    #[arg(long, env = "HIGHPRESS_OPERATOR_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = match cli.command {
        Some(command) => command,
        // `highpress-operator` alone runs with the same defaults and environment as `run`.
        None => Cli::parse_from(["highpress-operator", "run"])
            .command
            .expect("`run` parses"),
    };
    match command {
        Command::Crd => {
            let yaml = highpress_operator::crd_yaml()?;
            write_stdout(&yaml, "the CRD")
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
            let ctx = highpress_operator::reconcile::build::BuildContext::default();
            let yaml = highpress_operator::render::render(&input, &ctx)
                .with_context(|| format!("rendering {}", file.display()))?;
            write_stdout(&yaml, "the objects")
        }
        Command::Run(args) => run(args),
    }
}

fn write_stdout(text: &str, what: &str) -> anyhow::Result<()> {
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .with_context(|| format!("writing {what} to stdout"))
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logs(args.log_format, &args.log_level)?;
    let identity = match args.identity.filter(|s| !s.is_empty()) {
        Some(identity) => identity,
        None => hostname()?,
    };
    let settings = highpress_operator::run::Settings {
        http_addr: args.http_addr,
        watch_namespaces: args
            .watch_namespaces
            .into_iter()
            .map(|ns| ns.trim().to_owned())
            .filter(|ns| !ns.is_empty())
            .collect(),
        leader_election: args.leader_election,
        lease_name: args.lease_name,
        lease_namespace: args.lease_namespace.filter(|s| !s.is_empty()),
        identity,
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        ?settings,
        "starting highpress-operator"
    );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(highpress_operator::run::run(settings))
}

fn init_logs(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid log level {filter:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    Ok(())
}

fn hostname() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("reading the host name for the Lease identity (set POD_NAME)")?;
    Ok(name.trim().to_owned())
}
