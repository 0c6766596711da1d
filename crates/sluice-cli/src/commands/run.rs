use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use sluice_runner::{Reporter, RunOptions};

use super::{SpecArgs, open_workspace, runtime};
use crate::progress::{JsonReporter, LiveReporter, PlainReporter};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Steps to run at once [default: number of cores].
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Re-run this step even if its outputs are cached (repeatable).
    #[arg(long, value_name = "STEP")]
    pub force: Vec<String>,
    /// Emit machine-readable events (one JSON object per line) on stdout.
    #[arg(long)]
    pub json: bool,
    /// Where data steps run, over the spec's `engine:`: `local` or `ballista://HOST:PORT`.
    #[arg(long, value_name = "URL", value_parser = parse_engine)]
    pub engine: Option<sluice_spec::EngineUrl>,
}

fn parse_engine(text: &str) -> Result<sluice_spec::EngineUrl, String> {
    sluice_spec::EngineUrl::parse(text)
}

pub fn run(home: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let pipeline = match args.spec.load() {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let ws = Arc::new(open_workspace(home)?);
    let mut options = RunOptions {
        force: args.force,
        overrides: args.spec.overrides.clone(),
        engine: args.engine,
        ..RunOptions::default()
    };
    if let Some(j) = args.jobs {
        options.jobs = j;
    }
    let reporter: Arc<dyn Reporter> = if args.json {
        Arc::new(JsonReporter)
    } else if std::io::stderr().is_terminal() {
        Arc::new(LiveReporter::new())
    } else {
        Arc::new(PlainReporter::new())
    };
    let summary = runtime()?.block_on(sluice_runner::run(ws, &pipeline, &options, reporter))?;
    if summary.failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for (step, error) in &summary.failed {
        eprintln!("error: step `{step}` failed: {error}");
    }
    let done = summary.ran.len() + summary.cached.len();
    let mut sets: String = args.spec.overrides.iter().map(|s| format!(" --set {s}")).collect();
    if home != Path::new(".sluice") {
        sets = format!(" --home {}{sets}", home.display());
    }
    eprintln!(
        "hint: fix the problem and run `sluice run {}{sets}` again; the {done} completed step(s) are cached and will be skipped",
        args.spec.spec.display()
    );
    Ok(ExitCode::from(1))
}
