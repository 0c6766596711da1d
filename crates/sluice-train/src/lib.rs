//! Model training: fitting feature transforms, and linear models (logistic regression by Newton's
//! method, ridge regression by an exact solve).
//!
//! Training builds its design matrix with `sluice_model::design_matrix`, the same code that
//! scores at inference time. The result is a [`sluice_model::ModelArtifact`] without lineage; the
//! runner fills that in.
//!
//! ```
//! use sluice_train::{Objective, LinearOptions, fit_linear};
//! use sluice_model::DesignMatrix;
//! let x = DesignMatrix { data: vec![0.0, 1.0, 2.0, 3.0], rows: 4, cols: 1 };
//! let fit = fit_linear(&x, &[1.0, 3.0, 5.0, 7.0], Objective::SquaredError, &LinearOptions { l2: 0.0, ..Default::default() }).unwrap();
//! assert!((fit.model.weights[0] - 2.0).abs() < 1e-9 && (fit.model.intercept - 1.0).abs() < 1e-9);
//! ```

mod cholesky;
mod error;
mod features;
mod linear;

pub use error::{Result, TrainError};
pub use features::{FeatureOptions, fit_transforms, label_values};
pub use linear::{LinearFit, LinearOptions, Objective, fit_linear};

use arrow_array::RecordBatch;
use sluice_model::{InputColumn, Lineage, Model, ModelArtifact, Task, TrainingSummary, design_matrix};

/// What to train: the label, the raw feature columns, and the settings.
pub struct TrainRequest<'a> {
    pub label: &'a str,
    pub features: &'a [String],
    pub objective: Objective,
    pub linear: LinearOptions,
    pub preprocessing: FeatureOptions,
}

/// Fit transforms and a linear model on one batch of training data.
pub fn train_linear(batch: &RecordBatch, request: &TrainRequest) -> Result<ModelArtifact> {
    let task = match request.objective {
        Objective::Logistic => Task::BinaryClassification,
        Objective::SquaredError => Task::Regression,
    };
    let y = label_values(batch, request.label, task)?;
    let transforms = fit_transforms(batch, request.features, &request.preprocessing)?;
    let x = design_matrix(&transforms, batch)?;
    let fit = fit_linear(&x, &y, request.objective, &request.linear)?;
    let schema = batch.schema();
    let inputs = request
        .features
        .iter()
        .map(|f| InputColumn {
            name: f.clone(),
            data_type: schema.field_with_name(f).map(|f| f.data_type().to_string()).unwrap_or_default(),
        })
        .collect();
    let artifact = ModelArtifact {
        format_version: sluice_model::FORMAT_VERSION,
        task,
        label: request.label.to_string(),
        inputs,
        feature_names: transforms.iter().flat_map(|t| t.feature_names()).collect(),
        transforms,
        model: Model::Linear(fit.model),
        training: TrainingSummary {
            rows: batch.num_rows() as u64,
            iterations: fit.iterations,
            converged: fit.converged,
            objective: fit.objective,
        },
        lineage: Lineage::default(),
    };
    artifact.check()?;
    Ok(artifact)
}
