//! `sluice serve`: the HTTP model server.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

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
        let models = sluice_serve::ModelSet::load(home, &args.models).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        for m in models.models.values() {
            eprintln!("serving {}:{}", m.name, m.version);
        }
        eprintln!("listening on http://{addr}");
        sluice_serve::serve(listener, models, shutdown_signal()).await?;
        eprintln!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}
