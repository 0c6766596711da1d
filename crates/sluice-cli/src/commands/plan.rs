use std::path::Path;
use std::process::ExitCode;

use sluice_runner::Decision;

use super::{SpecArgs, open_workspace, runtime};
use crate::output::{json, short, table};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Plan as if these steps were forced.
    #[arg(long, value_name = "STEP")]
    pub force: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(home: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let pipeline = match args.spec.load() {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let ws = open_workspace(home)?;
    let entries = runtime()?.block_on(sluice_runner::plan(&ws, &pipeline, &args.force))?;
    if args.json {
        json(&entries)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&["step", "kind", "cache key", "decision"]);
    for e in &entries {
        let decision = match &e.decision {
            Decision::Cached => "cached (skip)".to_string(),
            Decision::Run(why) => format!("run: {why}"),
        };
        t.add_row(vec![
            e.step.clone(),
            e.kind.clone(),
            e.key.as_deref().map(short).unwrap_or("-").to_string(),
            decision,
        ]);
    }
    println!("{t}");
    let runs = entries.iter().filter(|e| e.decision != Decision::Cached).count();
    println!("{runs} of {} steps would run", entries.len());
    Ok(ExitCode::SUCCESS)
}
