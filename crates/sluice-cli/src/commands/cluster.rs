//! `sluice cluster scheduler|executor`: the roles of a Ballista cluster, from this binary.

use std::path::PathBuf;
use std::process::ExitCode;

use sluice_cluster::defaults::{EXECUTOR_TIMEOUT_SECS, FLIGHT_PORT, GRPC_PORT, HEARTBEAT_SECS, HOST, SCHEDULER_PORT};
use sluice_cluster::{ExecutorOptions, SchedulerOptions};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Run a Ballista scheduler; pipelines use it with `engine: ballista://HOST:PORT`.
    Scheduler {
        /// Address to listen on (0.0.0.0 for executors and clients on other hosts).
        #[arg(long, default_value = HOST)]
        bind: String,
        #[arg(long, default_value_t = SCHEDULER_PORT)]
        port: u16,
        /// Host name executors and clients reach this scheduler by.
        #[arg(long, default_value = HOST)]
        external_host: String,
        /// Seconds without a heartbeat before an executor's tasks are run elsewhere.
        #[arg(long, default_value_t = EXECUTOR_TIMEOUT_SECS)]
        executor_timeout: u64,
    },
    /// Run a Ballista executor that takes tasks from a scheduler.
    Executor {
        /// The scheduler, HOST:PORT.
        #[arg(long, default_value_t = format!("{HOST}:{SCHEDULER_PORT}"))]
        scheduler: String,
        #[arg(long, default_value = HOST)]
        bind: String,
        /// Host name the scheduler and other executors reach this one by.
        #[arg(long)]
        external_host: Option<String>,
        /// Arrow Flight port (shuffle data and results are fetched from it).
        #[arg(long, default_value_t = FLIGHT_PORT)]
        flight_port: u16,
        /// gRPC port the scheduler sends tasks to.
        #[arg(long, default_value_t = GRPC_PORT)]
        grpc_port: u16,
        /// Tasks run at once [default: number of cores].
        #[arg(long)]
        slots: Option<usize>,
        /// Directory for shuffle files [default: a temporary directory].
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Seconds between heartbeats to the scheduler.
        #[arg(long, default_value_t = HEARTBEAT_SECS)]
        heartbeat: u64,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    sluice_cluster::init_logging();
    let runtime = super::runtime()?;
    match cmd {
        Command::Scheduler { bind, port, external_host, executor_timeout } => {
            let options =
                SchedulerOptions { bind_host: bind, port, external_host, executor_timeout_secs: executor_timeout };
            runtime.block_on(sluice_cluster::run_scheduler(&options))?;
        }
        Command::Executor { scheduler, bind, external_host, flight_port, grpc_port, slots, work_dir, heartbeat } => {
            let (host, port) = scheduler
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
                .ok_or_else(|| anyhow::anyhow!("--scheduler `{scheduler}`: expected HOST:PORT"))?;
            let defaults = ExecutorOptions::default();
            let options = ExecutorOptions {
                bind_host: bind,
                external_host,
                flight_port,
                grpc_port,
                scheduler_host: host,
                scheduler_port: port,
                slots: slots.unwrap_or(defaults.slots),
                work_dir,
                heartbeat_secs: heartbeat,
            };
            runtime.block_on(sluice_cluster::run_executor(&options))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
