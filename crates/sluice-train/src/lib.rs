//! Model training: fitting feature transforms; linear models (binary and multinomial logistic,
//! ridge, lasso and elastic net by Newton, proximal Newton or L-BFGS; online FTRL); GBDT and
//! random forests.
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
mod cv;
mod error;
mod features;
pub mod ftrl;
pub mod gbdt;
pub mod kmeans;
mod lbfgs;
mod linear;
mod multinomial;
pub mod pipeline;

pub use cv::{CvMethod, CvSpec, cv_folds};
pub use error::{Result, TrainError};
pub use features::{
    FeatureOptions, class_indices, class_labels, fit_transforms, fit_tree_transforms, label_values, model_labels,
};
pub use linear::{
    L1_MAX_WEIGHTS, LinearFit, LinearOptions, NEWTON_MAX_WEIGHTS, Objective, PassSums, Solver, accumulate, fit_linear,
    fit_newton, fit_passes,
};
pub use multinomial::{fit_multinomial, multinomial_pass};
pub use pipeline::{Accumulator, FeatureSpec, Fitted, Impute, fit_pipeline, stages};

use arrow_array::RecordBatch;
use sluice_model::{InputColumn, Lineage, LinearModel, Model, ModelArtifact, Task, TrainingSummary, design_matrix};

/// What to train: the label, the raw feature columns, and the settings.
pub struct TrainRequest<'a> {
    pub label: &'a str,
    pub features: &'a [String],
    pub objective: Objective,
    pub linear: LinearOptions,
    pub preprocessing: FeatureOptions,
}

fn input_columns(schema: &arrow_schema::Schema, features: &[String]) -> Vec<InputColumn> {
    features
        .iter()
        .map(|f| InputColumn {
            name: f.clone(),
            data_type: schema.field_with_name(f).map(|f| f.data_type().to_string()).unwrap_or_default(),
        })
        .collect()
}

/// Class weights for binary classification.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ClassWeight {
    /// Weight each class by `rows / (2 * rows_of_class)`, as scikit-learn's `"balanced"`.
    Balanced,
    /// Explicit weights for the negative and positive class.
    Explicit { negative: f64, positive: f64 },
}

/// What to train as a GBDT.
pub struct GbdtRequest<'a> {
    pub label: &'a str,
    pub features: &'a [String],
    pub options: gbdt::GbdtOptions,
    /// Most frequent categories kept per text column (at most 255).
    pub max_categories: usize,
    pub class_weight: Option<ClassWeight>,
    /// Per raw feature column: +1 / -1 monotone constraint.
    pub monotone: Vec<(String, i8)>,
}

/// Per-row weights from class weights (binary labels).
fn class_weights(y: &[f64], cw: ClassWeight) -> Vec<f64> {
    let (neg, pos) = match cw {
        ClassWeight::Explicit { negative, positive } => (negative, positive),
        ClassWeight::Balanced => {
            let n = y.len() as f64;
            let p = y.iter().filter(|v| **v == 1.0).count() as f64;
            (n / (2.0 * (n - p).max(1.0)), n / (2.0 * p.max(1.0)))
        }
    };
    y.iter().map(|v| if *v == 1.0 { pos } else { neg }).collect()
}

/// Fit a GBDT on `batch`, early-stopping on `valid` when given. With `init`, continue boosting
/// that model (warm start): its transforms are reused so new trees see the same features.
pub fn train_gbdt(
    batch: &RecordBatch,
    valid: Option<&RecordBatch>,
    request: &GbdtRequest,
    init: Option<&ModelArtifact>,
    on_round: &mut (dyn FnMut(&gbdt::RoundReport) -> std::ops::ControlFlow<()> + Send),
) -> Result<ModelArtifact> {
    let task = match request.options.loss {
        gbdt::Loss::Binary => Task::BinaryClassification,
        gbdt::Loss::Multiclass { .. } => Task::MulticlassClassification,
        _ => Task::Regression,
    };
    let (transforms, init_model) = match init {
        Some(a) => match &a.model {
            Model::Gbdt(m) if a.task == task => (a.transforms.clone(), Some(m)),
            _ => {
                return Err(TrainError::Invalid(format!(
                    "warm start needs a GBDT model for the same task ({task:?}); got a {:?} {} model",
                    a.task,
                    a.model.kind()
                )));
            }
        },
        None => (fit_tree_transforms(batch, request.features, request.max_categories)?, None),
    };
    let features: Vec<String> = transforms.iter().map(|t| t.column().to_string()).collect();
    let mut options = request.options.clone();
    // Multiclass: the classes come from the warm-start model or from the training labels.
    let (classes, y) = match (task, init) {
        (Task::MulticlassClassification, Some(a)) => {
            (a.classes.clone(), class_indices(batch, request.label, &a.classes)?)
        }
        (Task::MulticlassClassification, None) => class_labels(batch, request.label)?,
        _ => (Vec::new(), label_values(batch, request.label, task)?),
    };
    if task == Task::MulticlassClassification {
        options.loss = gbdt::Loss::Multiclass { classes: classes.len() };
    }
    if matches!(request.options.loss, gbdt::Loss::Poisson { .. })
        && let Some(bad) = y.iter().find(|v| **v < 0.0)
    {
        return Err(TrainError::Invalid(format!("poisson loss needs labels >= 0; `{}` has {bad}", request.label)));
    }
    let x = design_matrix(&transforms, batch)?;
    let categorical: Vec<usize> = transforms
        .iter()
        .map(|t| match t {
            sluice_model::Transform::Categorical { categories, .. } => categories.len().max(1),
            _ => 0,
        })
        .collect();
    if !request.monotone.is_empty() {
        options.monotone = vec![0; features.len()];
        for (column, m) in &request.monotone {
            let j = features.iter().position(|f| f == column).ok_or_else(|| {
                TrainError::Invalid(format!("monotone constraint on `{column}`, which is not a feature"))
            })?;
            if categorical[j] > 0 {
                return Err(TrainError::Invalid(format!(
                    "monotone constraint on `{column}`, a text (categorical) column; constraints need a numeric column"
                )));
            }
            options.monotone[j] = *m;
        }
    }
    let weight = match request.class_weight {
        Some(cw) if task == Task::BinaryClassification => Some(class_weights(&y, cw)),
        Some(_) => return Err(TrainError::Invalid("class weights apply to binary classification only".into())),
        None => None,
    };
    let valid_parts = match valid {
        Some(v) => {
            let vy = match task {
                Task::MulticlassClassification => class_indices(v, request.label, &classes)?,
                _ => label_values(v, request.label, task)?,
            };
            let vx = design_matrix(&transforms, v)?;
            let vw = request.class_weight.map(|cw| class_weights(&vy, cw));
            Some((vx, vy, vw))
        }
        None => None,
    };
    let train = gbdt::GbdtData { x: &x, y: &y, weight: weight.as_deref() };
    let valid = valid_parts.as_ref().map(|(x, y, w)| gbdt::GbdtData { x, y, weight: w.as_deref() });
    let fit = gbdt::fit_gbdt(&train, &categorical, valid.as_ref(), &options, init_model, on_round)?;
    let inputs = match init {
        Some(a) => a.inputs.clone(),
        None => input_columns(&batch.schema(), &features),
    };
    let training = TrainingSummary {
        rows: batch.num_rows() as u64,
        iterations: fit.model.best_rounds as u32,
        converged: true,
        objective: fit.train_loss,
    };
    artifact(task, request.label, classes, inputs, transforms, Model::Gbdt(fit.model), training)
}

/// Fit (or, with `init`, continue fitting) an online FTRL linear model on `batch`. A fresh model
/// fits its transforms (standardization, one-hot) on this first batch; a continued one keeps
/// the transforms and state of `init`, so fitting batch after batch equals one pass over all.
pub fn train_ftrl(
    batch: &RecordBatch,
    request: &TrainRequest,
    options: &ftrl::FtrlOptions,
    init: Option<&ModelArtifact>,
) -> Result<ModelArtifact> {
    let task = match request.objective {
        Objective::Logistic => Task::BinaryClassification,
        Objective::SquaredError => Task::Regression,
    };
    let (transforms, inputs, state, rows_before) = match init {
        Some(a) => match &a.model {
            Model::Linear(LinearModel { online: Some(s), .. }) if a.task == task => {
                (a.transforms.clone(), a.inputs.clone(), Some(s.clone()), a.training.rows)
            }
            _ => {
                return Err(TrainError::Invalid(
                    "the model to continue (`init_model` or `warm_start`) must be an online (ftrl) model of the same task".into(),
                ));
            }
        },
        None => {
            let t = fit_transforms(batch, request.features, &request.preprocessing)?;
            (t, input_columns(&batch.schema(), request.features), None, 0)
        }
    };
    let y = label_values(batch, request.label, task)?;
    let x = design_matrix(&transforms, batch)?;
    let model = ftrl::partial_fit(&x, &y, request.objective, options, state);
    let margins = model.margins(&x);
    let objective = match task {
        Task::BinaryClassification => margins.iter().zip(&y).map(|(m, y)| linear::softplus(*m) - y * m).sum::<f64>(),
        _ => margins.iter().zip(&y).map(|(m, y)| 0.5 * (m - y).powi(2)).sum::<f64>(),
    } / y.len().max(1) as f64;
    let training = TrainingSummary {
        rows: rows_before + batch.num_rows() as u64,
        iterations: options.epochs,
        converged: true,
        objective,
    };
    artifact(task, request.label, Vec::new(), inputs, transforms, Model::Linear(model), training)
}

/// Fit transforms (standardization, one-hot) and k-means clusters on `batch`'s `features`.
/// The model's classes name the clusters `0`, `1`, ...; the training objective is the mean
/// squared distance of a row to its centroid.
pub fn train_kmeans(
    batch: &RecordBatch,
    features: &[String],
    preprocessing: &FeatureOptions,
    options: &kmeans::KmeansOptions,
) -> Result<ModelArtifact> {
    let transforms = fit_transforms(batch, features, preprocessing)?;
    let x = design_matrix(&transforms, batch)?;
    let fit = kmeans::fit_kmeans(&x, options)?;
    let training = TrainingSummary {
        rows: batch.num_rows() as u64,
        iterations: fit.iterations,
        converged: fit.converged,
        objective: fit.inertia / batch.num_rows().max(1) as f64,
    };
    let classes = (0..options.clusters).map(|c| c.to_string()).collect();
    let inputs = input_columns(&batch.schema(), features);
    artifact(Task::Clustering, "", classes, inputs, transforms, Model::Kmeans(fit.model), training)
}

/// Run `f` on a pool of `threads` threads (0: as many as rayon's global pool) whose threads
/// charge the calling thread's memory meter, if it has one (a tuning trial's budget,
/// `sluice_core::memory`); with neither, on the calling thread and the pool it is in.
pub fn on_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> Result<T> {
    let meter = sluice_core::memory::current();
    if threads == 0 && meter.is_none() {
        return Ok(f());
    }
    let threads = if threads > 0 { threads } else { rayon::current_num_threads() };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .start_handler(move |_| sluice_core::memory::attach_thread(meter.clone()))
        .exit_handler(|_| sluice_core::memory::detach_thread())
        .build()
        .map_err(|e| TrainError::Invalid(format!("cannot start {threads} threads: {e}")))?;
    Ok(pool.install(f))
}

/// A train step's feature columns: the ones it names, else every column of `schema` but the
/// label and the excluded ones.
pub fn feature_columns(
    schema: &arrow_schema::Schema,
    named: Option<&[String]>,
    label: &str,
    exclude: &[String],
) -> Vec<String> {
    match named {
        Some(f) => f.to_vec(),
        None => {
            schema.fields().iter().map(|f| f.name().clone()).filter(|n| n != label && !exclude.contains(n)).collect()
        }
    }
}

/// The most classes multinomial logistic regression takes (a label with more is an id or a
/// number, not a class).
pub const MAX_CLASSES: usize = 1000;

/// The task logistic regression takes on for `label`: binary for a boolean or 0/1 label,
/// multinomial for text or whole numbers with 3 to [`MAX_CLASSES`] values. Two other values
/// (text, or numbers such as 1/2) are refused rather than guessed at: which one is positive is
/// the user's to say.
pub fn logistic_task(batch: &RecordBatch, label: &str) -> Result<Task> {
    Ok(logistic_labels(batch, label)?.0)
}

/// [`logistic_task`] with what it read: the classes (multinomial) and every row's label as the
/// model reads it (0/1, or the class index).
fn logistic_labels(batch: &RecordBatch, label: &str) -> Result<(Task, Vec<String>, Vec<f64>)> {
    let column = batch.column_by_name(label).ok_or_else(|| TrainError::MissingColumn(label.to_string()))?;
    let dt = column.data_type();
    if *dt == arrow_schema::DataType::Boolean || batch.num_rows() == 0 {
        let y = label_values(batch, label, Task::BinaryClassification)?;
        return Ok((Task::BinaryClassification, Vec::new(), y));
    }
    if dt.is_numeric() {
        let values = label_values(batch, label, Task::Regression)?;
        if values.iter().all(|v| *v == 0.0 || *v == 1.0) {
            return Ok((Task::BinaryClassification, Vec::new(), values));
        }
        if let Some(v) = values.iter().find(|v| v.fract() != 0.0) {
            return Err(TrainError::Invalid(format!(
                "label `{label}` has value {v}: logistic regression predicts classes (boolean or 0/1, or whole \
                 numbers or text for several classes); for a numeric target use `linear_regression`"
            )));
        }
    }
    let (classes, y) = class_labels(batch, label)?;
    match classes.len() {
        2 => Err(TrainError::Invalid(format!(
            "label `{label}` has two values (`{}`, `{}`): binary logistic regression reads a boolean or 0/1 \
             label, e.g. `{label} = '{}' AS label` in SQL",
            classes[0], classes[1], classes[1]
        ))),
        n if n > MAX_CLASSES => Err(TrainError::Invalid(format!(
            "label `{label}` has {n} distinct values; multinomial logistic regression takes at most {MAX_CLASSES} classes"
        ))),
        _ => Ok((Task::MulticlassClassification, classes, y)),
    }
}

/// Fit transforms and a linear model on one batch of training data. Logistic regression on a
/// label with more than two classes (or text classes) is multinomial.
pub fn train_linear(batch: &RecordBatch, request: &TrainRequest) -> Result<ModelArtifact> {
    let (task, classes, y) = match request.objective {
        Objective::Logistic => logistic_labels(batch, request.label)?,
        Objective::SquaredError => {
            (Task::Regression, Vec::new(), label_values(batch, request.label, Task::Regression)?)
        }
    };
    let transforms = fit_transforms(batch, request.features, &request.preprocessing)?;
    let x = design_matrix(&transforms, batch)?;
    let fit = match task {
        Task::MulticlassClassification => fit_multinomial(&x, &y, classes.len(), &request.linear)?,
        _ => fit_linear(&x, &y, request.objective, &request.linear)?,
    };
    let inputs = input_columns(&batch.schema(), request.features);
    let training = TrainingSummary {
        rows: batch.num_rows() as u64,
        iterations: fit.iterations,
        converged: fit.converged,
        objective: fit.objective,
    };
    artifact(task, request.label, classes, inputs, transforms, Model::Linear(fit.model), training)
}

/// The artifact of a linear model fitted elsewhere — on an engine's executors, by
/// [`fit_newton`] — over rows with `schema`, through `transforms` fitted on the same rows.
pub fn linear_artifact(
    schema: &arrow_schema::Schema,
    request: &TrainRequest,
    transforms: Vec<sluice_model::Transform>,
    fit: LinearFit,
    rows: u64,
) -> Result<ModelArtifact> {
    let task = match request.objective {
        Objective::Logistic => Task::BinaryClassification,
        Objective::SquaredError => Task::Regression,
    };
    let training =
        TrainingSummary { rows, iterations: fit.iterations, converged: fit.converged, objective: fit.objective };
    let inputs = input_columns(schema, request.features);
    artifact(task, request.label, Vec::new(), inputs, transforms, Model::Linear(fit.model), training)
}

/// A checked artifact without lineage (the runner fills that in); feature names come from the
/// transforms.
fn artifact(
    task: Task,
    label: &str,
    classes: Vec<String>,
    inputs: Vec<InputColumn>,
    transforms: Vec<sluice_model::Transform>,
    model: Model,
    training: TrainingSummary,
) -> Result<ModelArtifact> {
    let artifact = ModelArtifact {
        format_version: sluice_model::FORMAT_VERSION,
        task,
        label: label.to_string(),
        classes,
        inputs,
        features: Default::default(),
        feature_names: transforms.iter().flat_map(|t| t.feature_names()).collect(),
        transforms,
        model,
        training,
        lineage: Lineage::default(),
    };
    artifact.check()?;
    Ok(artifact)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, BooleanArray, Float64Array, StringArray};
    use sluice_model::DesignMatrix;

    use super::*;

    fn batch(label: ArrayRef) -> RecordBatch {
        RecordBatch::try_from_iter([("y", label)]).expect("batch")
    }

    #[test]
    fn logistic_labels_pick_binary_or_multinomial_or_are_refused() {
        let task = |a: ArrayRef| logistic_task(&batch(a), "y");
        assert_eq!(task(Arc::new(BooleanArray::from(vec![true, false]))).unwrap(), Task::BinaryClassification);
        assert_eq!(task(Arc::new(Float64Array::from(vec![0.0, 1.0, 1.0]))).unwrap(), Task::BinaryClassification);
        assert_eq!(task(Arc::new(Float64Array::from(vec![0.0, 1.0, 2.0]))).unwrap(), Task::MulticlassClassification);
        assert_eq!(task(Arc::new(StringArray::from(vec!["a", "b", "c"]))).unwrap(), Task::MulticlassClassification);
        let e = task(Arc::new(Float64Array::from(vec![0.0, 2.5, 1.0]))).unwrap_err().to_string();
        assert!(e.contains("2.5") && e.contains("linear_regression"), "{e}");
        let e = task(Arc::new(StringArray::from(vec!["no", "yes", "no"]))).unwrap_err().to_string();
        assert!(e.contains("two values (`no`, `yes`)") && e.contains("y = 'yes' AS label"), "{e}");
        let many: Vec<String> = (0..=MAX_CLASSES).map(|i| format!("id{i}")).collect();
        let e = task(Arc::new(StringArray::from(many))).unwrap_err().to_string();
        assert!(e.contains("1001 distinct values"), "{e}");
    }

    #[test]
    fn l1_refuses_more_weights_than_a_dense_hessian_suits() {
        let cols = L1_MAX_WEIGHTS + 1;
        let x = DesignMatrix { data: vec![0.5; 2 * cols], rows: 2, cols };
        let o = LinearOptions { l1: 0.1, fit_intercept: false, ..Default::default() };
        let e = fit_linear(&x, &[0.0, 1.0], Objective::Logistic, &o).unwrap_err().to_string();
        assert!(e.contains("`l1` with 2049 weights") && e.contains("ftrl"), "{e}");
    }
}
