//! The `tidewatch` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use tidewatch::web;
use tidewatch::Faults;
use tidewatch::LiveSink;
use tidewatch::Notifier;
use tidewatch::ProduceOptions;
use tidewatch::Report;
use tidewatch::Shutdown;
use tidewatch::Store;
use tidewatch::Workload;
use tidewatch::{Config, DEFAULT_PIPELINE};
use tidewatch::{Mode, Outputs, Pipeline};
use tracing_subscriber::EnvFilter;

/// jemalloc rather than glibc's malloc: measured with `scripts/measure-live-memory.sh`
/// (100,000 series), glibc held 1,810 MiB at 267 points a series, jemalloc 1,600 MiB at 320
/// (the `mimalloc` crate's 2.2 held 1.7 GiB within 30 s; docs/operations.md, "Memory").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "tidewatch",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Without a command: `serve` (the built-in demo pipeline, demo source → ./tidewatch.db,
    /// with the dashboard on http://127.0.0.1:8080, until Ctrl-C).
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Pipeline config (TOML); without it, the built-in demo pipeline.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address of the dashboard.
    #[arg(long, env = "TIDEWATCH_LISTEN", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Token that acknowledging alerts requires (Authorization: Bearer).
    #[arg(long, env = "TIDEWATCH_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// Reading the dashboard needs the token too (pages, API, WebSocket, metrics).
    #[arg(long, env = "TIDEWATCH_AUTH_READ")]
    auth_read: bool,
    /// Allow a non-loopback address without an auth token.
    #[arg(long)]
    insecure: bool,
    /// A host name the dashboard answers to besides localhost and IP addresses (repeat, or
    /// separate by commas); adds to web.allowed_hosts.
    #[arg(
        long = "allowed-host",
        env = "TIDEWATCH_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,
    /// Mark the session cookie Secure (a TLS proxy serves the dashboard); as
    /// web.secure_cookies.
    #[arg(long, env = "TIDEWATCH_SECURE_COOKIES")]
    secure_cookies: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipelines and serve the dashboard (the default command).
    Serve(ServeArgs),
    /// Run the pipelines of a config file.
    Run {
        /// Pipeline config (TOML); see config/example.toml.
        #[arg(long, short)]
        config: PathBuf,
        /// Read every source to its end, close all windows, write everything and exit.
        /// Without it, follow the sources until SIGINT/SIGTERM.
        #[arg(long)]
        once: bool,
    },
    /// Start streams afresh in the stored checkpoint (watermark, dedup, open windows,
    /// analytics), keeping where they read: the way out of a watermark a bad event moved on.
    /// Stop the pipeline first; its next checkpoint would write the old state back.
    Reset {
        /// Pipeline config (TOML) whose checkpoint to change.
        #[arg(long, short)]
        config: PathBuf,
        /// A stream to reset (repeat for several).
        #[arg(long = "stream", required = true)]
        streams: Vec<String>,
    },
    /// Validate a config file: prints what is wrong and where, or a summary.
    CheckConfig {
        /// Pipeline config (TOML).
        file: PathBuf,
    },
    /// Write generated events (with anomalies, duplicates and late data) to a Kafka topic.
    Produce(ProduceArgs),
    /// Measure engine throughput on a generated in-memory workload (one shard, then `engine.threads`).
    Bench {
        #[arg(long, default_value_t = 2_000_000)]
        events: usize,
        #[arg(long, default_value_t = 1_000)]
        series: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[derive(Debug, clap::Args)]
struct ProduceArgs {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long, default_value = "events")]
    topic: String,
    /// Events per second; 0 sends as fast as the broker takes them.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    #[arg(long, default_value_t = 10)]
    series: usize,
    /// Stop after this many events.
    #[arg(long, required_unless_present = "duration")]
    events: Option<u64>,
    /// Stop after this long, e.g. "60s" or "5m".
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<std::time::Duration>,
    /// Share of events whose value jumps by 8 noise deviations.
    #[arg(long, default_value_t = 0.0005)]
    anomaly_rate: f64,
    /// Share of events stamped a minute or more in the past.
    #[arg(long, default_value_t = 0.001)]
    late_rate: f64,
    /// Share of events sent twice.
    #[arg(long, default_value_t = 0.01)]
    dup_rate: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Create the topic with this many partitions if it does not exist.
    #[arg(long)]
    partitions: Option<i32>,
    /// Stamp the events over this much event time ending now (a backfill, e.g. "2h"), however
    /// fast they are sent; needs --events. Without it, events carry the time they are sent.
    #[arg(long, value_parser = humantime::parse_duration, requires = "events")]
    span: Option<std::time::Duration>,
}

impl ProduceArgs {
    /// The options, checked: shares between 0 and 1, a rate of 0 or more, some series.
    fn into_options(self) -> anyhow::Result<ProduceOptions> {
        for (flag, value) in [
            ("--anomaly-rate", self.anomaly_rate),
            ("--late-rate", self.late_rate),
            ("--dup-rate", self.dup_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                bail!("{flag} must be between 0 and 1, got {value}");
            }
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) || self.series == 0 {
            bail!("--rate must be 0 or more and --series at least 1");
        }
        Ok(ProduceOptions {
            brokers: self.brokers,
            topic: self.topic,
            rate: self.rate,
            series: self.series,
            events: self.events,
            duration: self.duration,
            seed: self.seed,
            faults: Faults {
                duplicate: self.dup_rate,
                late: self.late_rate,
                anomaly: self.anomaly_rate,
                ..Faults::default()
            },
            partitions: self.partitions,
            span: self.span,
        })
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("warn,tidewatch=info")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: logs in files and journald stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Test builds only (see tests/it/faults.rs): faults to inject, from `FAILPOINTS`.
    let _failpoints = fail::has_failpoints().then(fail::FailScenario::setup);
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(command) => run(command),
        None => serve(cli.serve),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", Report(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// Runs the pipeline on its own thread and the dashboard on the async runtime, until a signal
/// (or the pipeline ending) stops both.
fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => load(path)?,
        None => {
            eprintln!(
                "Running the built-in demo pipeline (generated events -> ./tidewatch.db). \
                 Your own pipeline: tidewatch serve --config FILE (see config/example.toml)."
            );
            Config::from_toml_str(DEFAULT_PIPELINE).context("the built-in pipeline")?
        }
    };
    let token = args
        .auth_token
        .filter(|t| !t.is_empty())
        .or_else(|| config.auth.token.clone());
    let protect_reads = args.auth_read || config.auth.read;
    if protect_reads && token.is_none() {
        anyhow::bail!(
            "auth.read: protecting reads needs a token: set auth.token or TIDEWATCH_AUTH_TOKEN"
        );
    }
    web::check_listen(args.listen, token.is_some(), args.insecure)?;
    let mut web_config = config.web.clone();
    web_config.secure_cookies |= args.secure_cookies;
    for host in args.allowed_hosts.iter().filter(|h| !h.trim().is_empty()) {
        web::check_allowed_host(host.trim())
            .map_err(|e| anyhow::anyhow!("--allowed-host {host:?}: {}", e.message))?;
        web_config.allowed_hosts.push(host.trim().to_owned());
    }
    let runtime = tidewatch::runtime().context("starting the async runtime")?;
    let stop = Shutdown::on_signals().context("installing the signal handler")?;
    let live = config.live_view();
    let mut outputs = Outputs::build(&config)?;
    outputs.sinks.push(Box::new(LiveSink::new(live.clone())));
    outputs.status = Some(live.status_sender());
    // The pipeline's database (one pool) answers the dashboard and holds the outbox.
    let store = outputs
        .database
        .clone()
        .map(|db| Store::new(db).notifying(config.notify_targets()));
    let notifier = match outputs.database.clone() {
        Some(db) => Notifier::spawn(&config.notify, db)?,
        None => None,
    };
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(args.listen))
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    eprintln!("Dashboard on http://{address}/ (Ctrl-C stops)");

    let pipeline_stop = stop.clone();
    let pipeline = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            let mode = Mode::Continuous {
                stop: pipeline_stop.clone(),
            };
            // Whatever ends the pipeline, a panic included, ends the server too: a dashboard
            // whose pipeline is gone must not go on answering /healthz with "ok".
            let _stop_server = StopOnDrop(pipeline_stop.clone());
            Pipeline::open(&config, outputs, mode).and_then(Pipeline::run)
        })
        .context("starting the pipeline thread")?;
    if !args.listen.ip().is_loopback() && web_config.allowed_hosts.is_empty() {
        tracing::warn!(
            listen = %args.listen,
            "Browsers that reach the dashboard by a host name (not an IP address) are refused \
             until it is listed in web.allowed_hosts (or --allowed-host)."
        );
    }
    let auth = web::auth::Auth::new(token.as_deref(), protect_reads)
        .with_secure_cookies(web_config.secure_cookies);
    let state = web::AppState::new(live, store, auth).with_web(web_config);
    runtime.block_on(web::serve(listener, state, async move {
        stop.triggered().await
    }))?;
    let summary = pipeline
        .join()
        .map_err(|_| anyhow::anyhow!("the pipeline thread panicked"));
    if let Some(notifier) = notifier {
        notifier.finish();
    }
    println!("{}", summary??);
    Ok(())
}

/// Triggers its shutdown when dropped, on return and on unwinding alike.
struct StopOnDrop(Shutdown);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.trigger();
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(args),
        Command::Run { config, once } => run_pipeline(&config, once),
        Command::Reset { config, streams } => {
            let parsed = Config::from_file(&config)?;
            for outcome in tidewatch::reset_streams(&parsed, &streams)? {
                println!("{outcome}");
            }
            Ok(())
        }
        Command::CheckConfig { file } => {
            let parsed = Config::from_file(&file)?;
            for warning in parsed.warnings() {
                println!("warning: {warning}");
            }
            println!(
                "{}: OK ({} stream(s), {} join(s), {} sink(s))",
                file.display(),
                parsed.streams.len(),
                parsed.joins.len(),
                parsed.sinks.len()
            );
            Ok(())
        }
        Command::Produce(args) => {
            let options = args.into_options()?;
            let report = tidewatch::produce(&options)?;
            println!(
                "produced {} events to {:?} in {:.2} s: {:.0} events/s acknowledged",
                report.delivered,
                options.topic,
                report.elapsed.as_secs_f64(),
                report.rate()
            );
            Ok(())
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
            let report = tidewatch::run_bench(Workload {
                events,
                series,
                seed,
            });
            println!("{report}");
            Ok(())
        }
    }
}

/// Reads a pipeline file for running it, logging what `check-config` would warn about.
fn load(path: &Path) -> anyhow::Result<Config> {
    let config = Config::from_file(path)?;
    for warning in config.warnings() {
        tracing::warn!(config = %path.display(), "{warning}");
    }
    Ok(config)
}

/// `tidewatch run`: the pipeline of a config file, to the end of its input or until a signal.
fn run_pipeline(config: &Path, once: bool) -> anyhow::Result<()> {
    let parsed = load(config)?;
    let mode = if once {
        Mode::Once
    } else {
        Mode::Continuous {
            stop: Shutdown::on_signals().context("installing the signal handler")?,
        }
    };
    let outputs =
        Outputs::build(&parsed).with_context(|| format!("running {}", config.display()))?;
    let notifier = match outputs.database.clone() {
        Some(db) => Notifier::spawn(&parsed.notify, db)?,
        None => None,
    };
    let summary = Pipeline::open(&parsed, outputs, mode)
        .and_then(Pipeline::run)
        .with_context(|| format!("running {}", config.display()));
    // Pending notifications get a few seconds; what is left stays in the outbox.
    if let Some(notifier) = notifier {
        notifier.finish();
    }
    println!("{}", summary?);
    Ok(())
}
