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
