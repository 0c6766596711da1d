//! The `sluice` command line.

mod commands;
mod output;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// mimalloc rather than the system allocator (as datafusion-cli and Polars ship): on one-row
// serving requests glibc malloc took a third of the server's CPU, much of it consolidating
// chunks that other threads had freed (ARCHITECTURE.md, "mimalloc"). Counted, so that a tuning
// trial's memory budget is measured on the threads the trial runs on.
#[global_allocator]
static ALLOCATOR: sluice_core::memory::Counting<mimalloc::MiMalloc> = sluice_core::memory::Counting(mimalloc::MiMalloc);

/// sluice: scalable ML pipelines — from raw data to a registered, served model.
#[derive(Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
struct Cli {
    /// Where runs, artifacts and the model registry live.
    #[arg(long, global = true, env = "SLUICE_HOME", default_value = ".sluice")]
    home: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline; unchanged steps are skipped.
    Run(commands::run::Args),
    /// Show every step's cache key and whether it would run, without running anything.
    Plan(commands::plan::Args),
    /// Print the JSON Schema of pipeline spec files (for editors).
    Schema,
    /// Score a CSV or Parquet file with a registered model.
    Predict(commands::predict::Args),
    /// Score a file and write each input column's contribution to every row's raw score
    /// (exact TreeSHAP for GBDT models; bias + contributions = raw score).
    Explain(commands::predict::Args),
    /// Inspect runs.
    #[command(subcommand)]
    Runs(commands::runs::Command),
    /// Inspect the model registry.
    #[command(subcommand)]
    Models(commands::models::Command),
    /// Show where an artifact or model came from: the step, its config and its inputs.
    Lineage(commands::lineage::Args),
    /// Serve registered models over HTTP (KServe V2 and MLflow scoring protocols).
    Serve(commands::serve::Args),
    /// Look at a data file: its statistics profile, or expectations proposed from it.
    #[command(subcommand)]
    Data(commands::data::Command),
    /// Inspect hyperparameter studies (train steps with `tune:`).
    #[command(subcommand)]
    Tune(commands::tune::Command),
    /// Watch data and served models: drift, performance with delayed ground truth, reports, alerts.
    #[command(subcommand)]
    Monitor(commands::monitor::Command),
    /// Run a role of a Ballista cluster (scheduler or executor) for `engine: ballista://...`.
    #[command(subcommand)]
    Cluster(commands::cluster::Command),
}

/// Output piped into a reader that stopped early (`sluice ... | head`) ends the program quietly,
/// as other command-line tools do, instead of panicking on the broken pipe.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => commands::run::run(&cli.home, args),
        Command::Plan(args) => commands::plan::run(&cli.home, args),
        Command::Schema => commands::schema::run(),
        Command::Predict(args) => commands::predict::run(&cli.home, args, false),
        Command::Explain(args) => commands::predict::run(&cli.home, args, true),
        Command::Runs(cmd) => commands::runs::run(&cli.home, cmd),
        Command::Models(cmd) => commands::models::run(&cli.home, cmd),
        Command::Lineage(args) => commands::lineage::run(&cli.home, args),
        Command::Serve(args) => commands::serve::run(&cli.home, args),
        Command::Data(cmd) => commands::data::run(cmd),
        Command::Tune(cmd) => commands::tune::run(&cli.home, cmd),
        Command::Monitor(cmd) => commands::monitor::run(&cli.home, cmd),
        Command::Cluster(cmd) => commands::cluster::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            output::print_error(&e);
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks argument definitions (unique names, valid defaults) only when a command is
    /// built: build every subcommand here rather than at a user's first invocation.
    #[test]
    fn cli_definition_is_valid() {
        super::Cli::command().debug_assert();
    }
}
