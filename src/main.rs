//! The `tidewatch` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use tidewatch::bench::{self, Workload};
use tidewatch::config::Config;
use tidewatch::pipeline;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "tidewatch", version, about, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipelines of a config file.
    Run {
        /// Pipeline config (TOML); see config/example.toml.
        #[arg(long, short)]
        config: PathBuf,
        /// Read every source to its end, close all windows, write everything and exit.
        #[arg(long)]
        once: bool,
    },
    /// Validate a config file: prints what is wrong and where, or a summary.
    CheckConfig {
        /// Pipeline config (TOML).
        file: PathBuf,
    },
    /// Measure engine throughput on a generated in-memory workload (one thread).
    Bench {
        #[arg(long, default_value_t = 2_000_000)]
        events: usize,
        #[arg(long, default_value_t = 1_000)]
        series: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("warn,tidewatch=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { config, once } => {
            let parsed = Config::from_file(&config)?;
            if !once {
                bail!(
                    "continuous mode (following sources, serving the dashboard) is not available yet; \
                     pass --once to read the sources to their end"
                );
            }
            let summary = pipeline::run_once(&parsed)
                .with_context(|| format!("running {}", config.display()))?;
            println!("{summary}");
        }
        Command::CheckConfig { file } => {
            let parsed = Config::from_file(&file)?;
            println!(
                "{}: OK ({} stream(s), {} join(s), {} sink(s))",
                file.display(),
                parsed.streams.len(),
                parsed.joins.len(),
                parsed.sinks.len()
            );
        }
        Command::Bench {
            events,
            series,
            seed,
        } => {
            if events == 0 || series == 0 {
                bail!("--events and --series must be at least 1");
            }
            println!("generating {events} events over {series} series (seed {seed}) ...");
            let report = bench::run(Workload {
                events,
                series,
                seed,
            });
            println!("{report}");
        }
    }
    Ok(())
}
