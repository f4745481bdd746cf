//! The `highpress` binary: parses the command line, loads config, sets up logging and tracing,
//! runs a mode.
//!
//! The allocator is jemalloc, built with heap profiling compiled in but not sampling until
//! `pprof.enabled` switches it on (see docs/ARCHITECTURE.md, "Allocator and heap profiles").

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use highpress::config::Config;
use highpress::server::Mode;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "highpress",
    version,
    about = "High-throughput counting service"
)]
struct Cli {
    #[command(subcommand)]
    mode: Command,
}

#[derive(Subcommand)]
enum Command {
    /// REST API and counter engine in one process (embedded memory store unless configured).
    Standalone(ConfigArg),
    /// REST API routing each key to its counter process over gRPC.
    Gateway(ConfigArg),
    /// The counter engine behind gRPC, over the configured store.
    Counter(ConfigArg),
}

#[derive(clap::Args)]
struct ConfigArg {
    /// YAML config file; `HIGHPRESS_<SECTION>__<KEY>` variables override it.
    #[arg(long, env = "HIGHPRESS_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (mode, ConfigArg { config }) = match cli.mode {
        Command::Standalone(c) => (Mode::Standalone, c),
        Command::Gateway(c) => (Mode::Gateway, c),
        Command::Counter(c) => (Mode::Counter, c),
    };
    let config = match Config::load(config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("highpress: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("highpress: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let telemetry = match highpress::telemetry::init(&config, mode.as_str()) {
            Ok(t) => t,
            Err(e) => return Err(anyhow::anyhow!(e)),
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(highpress::server::cancel_on_signal(shutdown.clone()));
        let result = highpress::server::run(mode, config, shutdown).await;
        telemetry.shutdown().await;
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("highpress: {e:#}");
            ExitCode::FAILURE
        }
    }
}
