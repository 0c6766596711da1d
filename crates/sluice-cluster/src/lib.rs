//! Apache DataFusion Ballista's scheduler and executor, embedded so the one `sluice` binary runs
//! every role of a cluster (`sluice cluster scheduler`, `sluice cluster executor`).
//!
//! A pipeline reaches the cluster through `sluice_engine::Engine::cluster`: the client plans
//! each query and the scheduler splits it into stages that executors run. The scheduler and the
//! executors are configured here, in one place, so that whatever sluice adds to DataFusion
//! (functions, codecs, object stores) is registered on every role alike: sluice's aggregate
//! functions (`sluice_engine::functions`, e.g. the Newton pass of distributed linear training),
//! and Ballista's S3 support, configured per query from the client's `AWS_*` environment (or
//! from the executor's own).
//!
//! ```no_run
//! # async fn demo() -> Result<(), sluice_cluster::ClusterError> {
//! // Two processes (or hosts); the client then uses `engine: ballista://127.0.0.1:50050`.
//! sluice_cluster::run_scheduler(&sluice_cluster::SchedulerOptions::default()).await?;
//! sluice_cluster::run_executor(&sluice_cluster::ExecutorOptions::default()).await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::object_store::{
    runtime_env_with_s3_support, session_config_with_s3_support, session_state_with_s3_support,
};
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;

/// Defaults shared by [`SchedulerOptions`], [`ExecutorOptions`] and the command line.
pub mod defaults {
    pub const HOST: &str = "127.0.0.1";
    pub const SCHEDULER_PORT: u16 = 50050;
    pub const FLIGHT_PORT: u16 = 50051;
    pub const GRPC_PORT: u16 = 50052;
    pub const EXECUTOR_TIMEOUT_SECS: u64 = 60;
    pub const HEARTBEAT_SECS: u64 = 10;
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{role}: {source}")]
    Ballista {
        role: &'static str,
        #[source]
        source: ballista_core::error::BallistaError,
    },
    #[error("{0}")]
    Invalid(String),
}

/// `sluice cluster scheduler`.
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// Address to listen on (`0.0.0.0` to accept executors and clients from other hosts).
    pub bind_host: String,
    /// The gRPC port clients (`ballista://host:PORT`) and executors connect to.
    pub port: u16,
    /// The host name executors and clients reach this scheduler by.
    pub external_host: String,
    /// Seconds without a heartbeat after which an executor is considered lost and its tasks
    /// are run elsewhere.
    pub executor_timeout_secs: u64,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            bind_host: defaults::HOST.into(),
            port: defaults::SCHEDULER_PORT,
            external_host: defaults::HOST.into(),
            executor_timeout_secs: defaults::EXECUTOR_TIMEOUT_SECS,
        }
    }
}

/// `sluice cluster executor`.
#[derive(Clone, Debug)]
pub struct ExecutorOptions {
    pub bind_host: String,
    /// The host name the scheduler and other executors reach this executor by (defaults to
    /// what the scheduler sees the executor connect from).
    pub external_host: Option<String>,
    /// Arrow Flight port: shuffle data and results are fetched from it.
    pub flight_port: u16,
    /// gRPC port the scheduler pushes tasks to.
    pub grpc_port: u16,
    pub scheduler_host: String,
    pub scheduler_port: u16,
    /// Tasks run at once (defaults to the core count).
    pub slots: usize,
    /// Where shuffle files are written (a temporary directory by default).
    pub work_dir: Option<PathBuf>,
    /// Seconds between heartbeats to the scheduler.
    pub heartbeat_secs: u64,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        Self {
            bind_host: defaults::HOST.into(),
            external_host: None,
            flight_port: defaults::FLIGHT_PORT,
            grpc_port: defaults::GRPC_PORT,
            scheduler_host: defaults::HOST.into(),
            scheduler_port: defaults::SCHEDULER_PORT,
            slots: std::thread::available_parallelism().map_or(2, |n| n.get()),
            work_dir: None,
            heartbeat_secs: defaults::HEARTBEAT_SECS,
        }
    }
}

/// Run a scheduler until the process is stopped.
pub async fn run_scheduler(options: &SchedulerOptions) -> Result<(), ClusterError> {
    let addr: SocketAddr = format!("{}:{}", options.bind_host, options.port).parse().map_err(|e| {
        ClusterError::Invalid(format!("scheduler address `{}:{}`: {e}", options.bind_host, options.port))
    })?;
    let config = SchedulerConfig {
        bind_host: options.bind_host.clone(),
        bind_port: options.port,
        external_host: options.external_host.clone(),
        scheduling_policy: TaskSchedulingPolicy::PushStaged,
        executor_timeout_seconds: options.executor_timeout_secs,
        no_executors_grace_period_seconds: options.executor_timeout_secs,
        ..SchedulerConfig::default()
    }
    .with_override_config_producer(Arc::new(session_config_with_s3_support))
    .with_override_session_builder(Arc::new(|config| {
        let mut state = session_state_with_s3_support(config)?;
        sluice_engine::functions::register_in(&mut state)?;
        Ok(state)
    }));
    let err = |source| ClusterError::Ballista { role: "scheduler", source };
    config.validate().map_err(err)?;
    let cluster = BallistaCluster::new_from_config(&config).await.map_err(err)?;
    eprintln!(
        "sluice cluster scheduler listening on {addr} (clients use engine: ballista://{}:{})",
        options.external_host, options.port
    );
    start_server(cluster, addr, Arc::new(config)).await.map_err(err)
}

/// Run an executor until the process is stopped (SIGINT/SIGTERM end it after its tasks).
pub async fn run_executor(options: &ExecutorOptions) -> Result<(), ClusterError> {
    if options.slots == 0 {
        return Err(ClusterError::Invalid("executor slots must be at least 1".into()));
    }
    let work_dir = match &options.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| ClusterError::Invalid(format!("executor work dir `{}`: {e}", dir.display())))?;
            Some(dir.to_str().ok_or_else(|| ClusterError::Invalid("work dir is not UTF-8".into()))?.to_string())
        }
        None => None,
    };
    let config = ExecutorProcessConfig {
        bind_host: options.bind_host.clone(),
        external_host: options.external_host.clone(),
        port: options.flight_port,
        grpc_port: options.grpc_port,
        scheduler_host: options.scheduler_host.clone(),
        scheduler_port: options.scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        vcores: options.slots,
        task_scheduling_policy: TaskSchedulingPolicy::PushStaged,
        work_dir,
        executor_heartbeat_interval_seconds: options.heartbeat_secs,
        print_thread_info: false,
        override_config_producer: Some(Arc::new(session_config_with_s3_support)),
        override_runtime_producer: Some(Arc::new(runtime_env_with_s3_support)),
        override_function_registry: Some(Arc::new(function_registry())),
        ..ExecutorProcessConfig::default()
    };
    eprintln!(
        "sluice cluster executor: {} slots, flight port {}, grpc port {}, scheduler {}:{}",
        options.slots, options.flight_port, options.grpc_port, options.scheduler_host, options.scheduler_port
    );
    start_executor_process(Arc::new(config)).await.map_err(|source| ClusterError::Ballista { role: "executor", source })
}

/// DataFusion's and Ballista's functions plus sluice's, for executors to decode and run plans.
fn function_registry() -> BallistaFunctionRegistry {
    let mut registry = BallistaFunctionRegistry::default();
    for f in sluice_engine::functions::aggregate_functions() {
        registry.aggregate_functions.insert(f.name().to_string(), f);
    }
    registry
}

/// Ballista logs through the `log` crate: print its warnings and errors (or, with
/// `SLUICE_LOG=info|debug`, more) on stderr.
pub fn init_logging() {
    let level = match std::env::var("SLUICE_LOG").unwrap_or_default().to_ascii_lowercase().as_str() {
        "error" => log::LevelFilter::Error,
        "info" => log::LevelFilter::Info,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        "off" => log::LevelFilter::Off,
        _ => log::LevelFilter::Warn,
    };
    static LOGGER: Stderr = Stderr;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            eprintln!(
                "{}.{:03} {:5} {}: {}",
                now.as_secs(),
                now.subsec_millis(),
                record.level(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}
