//! Monitoring a model in production, without DataFusion (the server links it):
//! - [`reference`](mod@reference): the reference profile of a registered model version — its training data
//!   and its predictions on them, profiled once and cached in the artifact store.
//! - [`logs`]: reading the server's prediction logs (Parquet files under
//!   `logs/predictions/<model>/` in the artifact store).
//! - [`performance`]: ground truth that arrives later, joined to the logs by request id and
//!   row; the model's metrics per window next to the ones recorded at evaluation time.
//! - [`alerts`]: the values rules can name, rule evaluation over windows, webhook delivery.
//! - [`report`]: a self-contained HTML report.
//!
//! Drift statistics themselves are `sluice_profile::drift`, computed from mergeable profiles.

pub mod alerts;
mod error;
pub mod logs;
pub mod performance;
pub mod reference;
pub mod report;

pub use error::{MonitorError, Result};

/// A window's label: its start as a UTC date (windows of a day or more) or time, or the rows it
/// spans (`rows` in it) for windows of rows.
pub fn window_label(start: sluice_profile::WindowStart, window: sluice_profile::Window, rows: u64) -> String {
    use sluice_profile::Window;
    let time = |format: &str| {
        chrono::DateTime::from_timestamp(start, 0).map_or_else(|| start.to_string(), |t| t.format(format).to_string())
    };
    match window {
        Window::Rows(_) => format!("rows {}–{}", start, start as u64 + rows.saturating_sub(1)),
        Window::Seconds(s) if s >= 86_400.0 => time("%Y-%m-%d"),
        Window::Seconds(_) => time("%Y-%m-%dT%H:%MZ"),
    }
}
