//! `sluice serve`: the HTTP model server.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::runtime;

#[derive(clap::Args)]
pub struct Args {
    /// Models to serve: `NAME@ALIAS`, `NAME:VERSION` or `NAME` (latest).
    #[arg(required = true, value_name = "MODEL")]
    pub models: Vec<String>,
    /// Address to listen on; port 0 picks a free port (printed on stderr).
    #[arg(long, default_value = "127.0.0.1:8080", env = "SLUICE_LISTEN")]
    pub listen: SocketAddr,
    /// Largest request body, in bytes (413 above).
    #[arg(long, default_value_t = 16 << 20)]
    pub max_body_bytes: usize,
    /// Most rows one request may score (413 above).
    #[arg(long, default_value_t = 100_000)]
    pub max_rows: usize,
    /// Longest a request may take, in seconds (503 after).
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// Requests handled at once; beyond that, 503 with `Retry-After`.
    #[arg(long, default_value_t = 256)]
    pub max_concurrency: usize,
    /// Require `Authorization: Bearer TOKEN` on every route but the health checks.
    #[arg(long, env = "SLUICE_SERVE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Seconds between registry checks for moved aliases (hot reload); 0 disables.
    #[arg(long, default_value_t = 2.0)]
    pub reload_every: f64,
    /// Canary: send this share of a model's requests to a challenger, `NAME@ALIAS=PERCENT`
    /// (e.g. `adult-income@challenger=10`).
    #[arg(long, value_name = "NAME@ALIAS=PERCENT")]
    pub canary: Vec<String>,
    /// Shadow: also score every request with a challenger, `NAME@ALIAS`, answering with the
    /// primary model (the challenger's scores are counted in /metrics).
    #[arg(long, value_name = "NAME@ALIAS")]
    pub shadow: Vec<String>,
    /// Log this share (0 to 1) of scored requests — features, predictions, model version, request
    /// id, time — as Parquet under `<home>/artifacts/logs/predictions/<model>/`.
    #[arg(long, default_value_t = 0.0)]
    pub log_predictions: f64,
    /// Write the prediction log at least this often, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub log_flush_every: f64,
    /// Recompute the live drift gauges on `/metrics` (each model's recent traffic vs its
    /// training data) this often, in seconds; 0 turns them off.
    #[arg(long, default_value_t = 30.0)]
    pub drift_every: f64,
    /// Fewest recent rows before drift gauges are published.
    #[arg(long, default_value_t = 100)]
    pub drift_min_rows: u64,
    /// Micro-batching: most rows scored in one call across concurrent requests.
    #[arg(long, default_value_t = 1024)]
    pub max_batch_rows: usize,
    /// Micro-batching: how long a request may wait for others to join its batch (0: no
    /// batching; each request is scored in its own task as it arrives).
    #[arg(long, default_value_t = 0.0)]
    pub max_batch_wait_ms: f64,
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

pub fn run(home: &Path, args: Args) -> anyhow::Result<ExitCode> {
    super::existing_workspace(home)?;
    runtime()?.block_on(async {
        let options = sluice_serve::ServeOptions {
            max_body_bytes: args.max_body_bytes,
            max_rows: args.max_rows,
            timeout: Duration::from_secs_f64(args.timeout.max(0.001)),
            max_concurrency: args.max_concurrency,
            token: args.token.clone(),
            reload_every: (args.reload_every > 0.0).then(|| Duration::from_secs_f64(args.reload_every)),
            logging: sluice_serve::LogOptions {
                sample_rate: args.log_predictions.clamp(0.0, 1.0),
                flush_every: Duration::from_secs_f64(args.log_flush_every.max(0.05)),
                ..sluice_serve::LogOptions::default()
            },
            drift: sluice_serve::DriftOptions {
                every: (args.drift_every > 0.0).then(|| Duration::from_secs_f64(args.drift_every)),
                min_rows: args.drift_min_rows,
            },
            batching: sluice_serve::BatchOptions {
                max_rows: args.max_batch_rows.max(1),
                max_wait: Duration::from_secs_f64(args.max_batch_wait_ms.max(0.0) / 1000.0),
            },
        };
        let mut policies: Vec<sluice_serve::PolicySpec> = Vec::new();
        for c in &args.canary {
            let (reference, percent) = c.rsplit_once('=').context("`--canary` takes `NAME@ALIAS=PERCENT`")?;
            let percent: f64 = percent
                .parse()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .with_context(|| format!("`--canary {c}`: the share must be a percentage between 0 and 100"))?;
            policies.push(sluice_serve::PolicySpec {
                challenger: reference.to_string(),
                canary_percent: percent,
                shadow: false,
            });
        }
        for s in &args.shadow {
            match policies.iter_mut().find(|p| p.challenger == *s) {
                Some(p) => p.shadow = true,
                None => {
                    policies.push(sluice_serve::PolicySpec { challenger: s.clone(), canary_percent: 0.0, shadow: true })
                }
            }
        }
        let server = sluice_serve::Server::load(home, &args.models, &policies, options).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        for (name, version, reference) in server.served() {
            eprintln!("serving {name}:{version} as `{reference}`");
        }
        eprintln!("listening on http://{addr}");
        server.run(listener, shutdown_signal()).await?;
        eprintln!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}
