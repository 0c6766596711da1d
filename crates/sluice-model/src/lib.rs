//! The inference path: the model artifact format, fitted feature transforms and prediction on
//! Arrow record batches.
//!
//! This crate depends on Arrow and serde only — never DataFusion, tokio or a database — so the
//! exact code that builds the training matrix also runs in batch scoring and in the server:
//! train/serve skew cannot happen by construction.
//!
//! ```no_run
//! # fn demo(json: &[u8], batch: &arrow_array::RecordBatch) -> sluice_model::Result<()> {
//! let artifact = sluice_model::ModelArtifact::from_json(json)?;
//! let predictor = sluice_model::Predictor::new(artifact)?;
//! let predictions = predictor.predict(batch)?;
//! println!("{} rows scored", predictions.scores.len());
//! # Ok(()) }
//! ```

mod artifact;
mod error;
mod explain;
pub mod features;
mod gbdt;
mod kmeans;
mod linear;
mod predict;
mod transform;

pub use artifact::{FORMAT_VERSION, InputColumn, Lineage, Model, ModelArtifact, Task, TrainingSummary};
pub use error::{ModelError, Result};
pub use features::{DatePart, Feature, FeaturePipeline, Fill, Unseen};
pub use gbdt::{GbdtModel, Link, Tree, softmax};
pub use kmeans::{KmeansModel, nearest_centroid, squared_distance};
pub use linear::{FtrlState, LinearModel, sigmoid};
pub use predict::{Explanation, Predictions, Predictor};
pub use transform::{DesignMatrix, Transform, design_matrix};
