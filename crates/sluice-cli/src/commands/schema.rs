use std::process::ExitCode;

pub fn run() -> anyhow::Result<ExitCode> {
    crate::output::json(&sluice_spec::json_schema())?;
    Ok(ExitCode::SUCCESS)
}
