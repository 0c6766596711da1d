//! One module per verb.

pub mod cluster;
pub mod data;
pub mod lineage;
pub mod models;
pub mod monitor;
pub mod plan;
pub mod predict;
pub mod run;
pub mod runs;
pub mod schema;
pub mod serve;
pub mod tune;

use std::path::Path;

use anyhow::Context;
use sluice_runner::Workspace;
use sluice_spec::Pipeline;

use crate::output::Hint;

/// The pipeline a command works on.
#[derive(clap::Args)]
pub struct SpecArgs {
    /// The pipeline spec (YAML).
    pub spec: std::path::PathBuf,
    /// Override a step setting: `--set split.seed=7` (repeatable).
    #[arg(long = "set", value_name = "STEP.KEY=VALUE")]
    pub overrides: Vec<String>,
}

impl SpecArgs {
    /// The validated pipeline, or — after printing every problem — exit code 2.
    pub fn load(&self) -> Result<Pipeline, std::process::ExitCode> {
        load_pipeline(&self.spec, &self.overrides).map_err(|e| {
            crate::output::print_error(&e);
            std::process::ExitCode::from(2)
        })
    }
}

/// Load and validate a spec; errors list every problem with its position.
pub fn load_pipeline(spec: &Path, overrides: &[String]) -> anyhow::Result<Pipeline> {
    sluice_spec::load(spec, overrides).map_err(|e| {
        let only_overrides = e.0.iter().all(sluice_spec::SpecError::from_command_line);
        let hint = if only_overrides {
            "check the `--set STEP.KEY=VALUE` arguments".to_string()
        } else {
            format!("check `{}`; `sluice schema` prints the spec's JSON Schema", spec.display())
        };
        anyhow::Error::new(Hint(hint)).context(e.to_string())
    })
}

pub fn open_workspace(home: &Path) -> anyhow::Result<Workspace> {
    Workspace::open(home).with_context(|| format!("cannot open the sluice home `{}`", home.display()))
}

/// The store of an existing home, with a hint when there is none yet.
pub fn existing_workspace(home: &Path) -> anyhow::Result<Workspace> {
    let location = sluice_store::MetadataLocation::for_home(home)?;
    if !location.exists() {
        return Err(anyhow::Error::new(Hint(
            "run a pipeline first (`sluice run PIPELINE.yaml`), or point `--home`/`SLUICE_HOME` at an existing one"
                .into(),
        ))
        .context(format!("no sluice home at `{}`", home.display())));
    }
    open_workspace(home)
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
