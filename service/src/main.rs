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
    /// Copy HighGoPress's counters (`counter:{resource_id}:{counter_type}`) into highpress's
    /// key layout; resumable, idempotent, safe while both services run (docs/migrating-from-highgopress.md).
    MigrateKeys(MigrateArgs),
}

#[derive(clap::Args)]
struct MigrateArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Keys asked for per SCAN page.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    page_size: u32,
    /// Report what would change, write nothing.
    #[arg(long)]
    dry_run: bool,
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
        Command::MigrateKeys(args) => return migrate_keys(args),
    };
    let config = match load_config(config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match build_runtime(&mut tokio::runtime::Builder::new_multi_thread()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let telemetry = match highpress::telemetry::init(&config, mode.as_str()) {
            Ok(t) => t,
            Err(e) => return Err(anyhow::anyhow!(e)),
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(highpress::server::cancel_on_signal(shutdown.clone()));
        let result = match highpress::server::Listeners::bind(mode, &config).await {
            Ok(listeners) => highpress::server::run(mode, config, listeners, shutdown).await,
            Err(e) => Err(e),
        };
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

/// `highpress migrate-keys`: exit 0 when every counter was copied, 1 when some were not (they
/// are named in the log; a rerun retries them), 2 for a bad configuration.
fn migrate_keys(args: MigrateArgs) -> ExitCode {
    let config = match load_config(args.config.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let options = highpress::migrate::Options {
        page_size: args.page_size as usize,
        dry_run: args.dry_run,
    };
    let runtime = match build_runtime(&mut tokio::runtime::Builder::new_current_thread()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let telemetry = highpress::telemetry::init(&config, "migrate-keys")?;
        let report = highpress::migrate::run(&config, options).await;
        telemetry.shutdown().await;
        report
    });
    match result {
        Ok(report) => {
            let verb = if args.dry_run { "would copy" } else { "done" };
            println!("migrate-keys: {verb}: {report}");
            if report.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("highpress: migrate-keys: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration, or exit code 2 after saying which key is wrong.
fn load_config(file: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    Config::load(file).map_err(|e| {
        eprintln!("highpress: {e}");
        ExitCode::from(2)
    })
}

/// The runtime `builder` makes (with IO and timers), or a failure exit code.
fn build_runtime(
    builder: &mut tokio::runtime::Builder,
) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|e| {
        eprintln!("highpress: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}
