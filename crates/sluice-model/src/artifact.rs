//! The self-describing model artifact: format version, input schema, fitted transforms, model
//! parameters and training lineage, stored as JSON.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::features::FeaturePipeline;
use crate::gbdt::GbdtModel;
use crate::kmeans::KmeansModel;
use crate::linear::LinearModel;
use crate::transform::Transform;

/// Bumped whenever a reader of an older version could misread the new layout.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Scores are probabilities of the positive class.
    BinaryClassification,
    /// Scores are predicted values.
    Regression,
    /// One probability per class (`ModelArtifact::classes`); the prediction is the likeliest.
    MulticlassClassification,
    /// No label: each row's cluster (`ModelArtifact::classes` names them `0`, `1`, ...) and its
    /// distance to the cluster's centroid.
    Clustering,
}

/// A raw column the model reads, as it was typed in the training data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputColumn {
    pub name: String,
    /// The Arrow type seen at training time, as Arrow prints it (`Utf8`, `Float64`, ...). Readers
    /// of untyped input (CSV) must parse the column as this type: a text column such as a zip
    /// code `01` read as a number would become `1` and score differently.
    pub data_type: String,
}

impl InputColumn {
    /// The recorded type, if this version of Arrow can parse it.
    pub fn arrow_type(&self) -> Option<arrow_schema::DataType> {
        self.data_type.parse().ok()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Model {
    Linear(LinearModel),
    Gbdt(GbdtModel),
    Kmeans(KmeansModel),
}

impl Model {
    /// The model family, as errors name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Model::Linear(_) => "linear",
            Model::Gbdt(_) => "GBDT",
            Model::Kmeans(_) => "k-means",
        }
    }
}

/// Where the model came from: exactly what its cache key covers (training data and resolved
/// config), so the same data and config give the same bytes and the same content hash. Run ids
/// and pipeline/step names are deliberately absent; the metadata store links the artifact to
/// every run and step that produced it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// Content hash of the training dataset artifact.
    pub training_data: String,
    /// The train step's resolved configuration.
    pub config: serde_json::Value,
    pub sluice_version: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    pub rows: u64,
    pub iterations: u32,
    pub converged: bool,
    /// Final value of the regularized objective.
    pub objective: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelArtifact {
    pub format_version: u32,
    pub task: Task,
    pub label: String,
    /// Multiclass models: the label values, in the order of the model's outputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    pub inputs: Vec<InputColumn>,
    /// Feature engineering applied to the inputs before `transforms` (empty: none).
    #[serde(default, skip_serializing_if = "FeaturePipeline::is_empty")]
    pub features: FeaturePipeline,
    pub transforms: Vec<Transform>,
    /// Names of the design-matrix columns the transforms produce, in order.
    pub feature_names: Vec<String>,
    pub model: Model,
    pub training: TrainingSummary,
    pub lineage: Lineage,
}

impl ModelArtifact {
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of plain data always serializes.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        struct Version {
            format_version: u32,
        }
        let v: Version = serde_json::from_slice(bytes)?;
        if v.format_version > FORMAT_VERSION {
            return Err(ModelError::UnsupportedFormat { found: v.format_version, supported: FORMAT_VERSION });
        }
        let artifact: Self = serde_json::from_slice(bytes)?;
        artifact.check()?;
        Ok(artifact)
    }

    /// Whether the model reads `column` as text (it one-hot encodes it) rather than as a number.
    /// This — not the type the training data happened to have — is what request parsers follow.
    pub fn reads_text(&self, column: &str) -> bool {
        if self.transforms.iter().any(|t| t.column() == column && t.reads_text()) {
            return true;
        }
        // Inputs that feature engineering reads first are what they were in training.
        !self.features.is_empty()
            && self.inputs.iter().any(|i| {
                i.name == column
                    && matches!(i.data_type.as_str(), "Utf8" | "Utf8View" | "LargeUtf8" | "Dictionary(Int32, Utf8)")
            })
    }

    /// Structural checks that a hand-edited or truncated artifact would fail.
    pub fn check(&self) -> Result<()> {
        let width: usize = self.transforms.iter().map(Transform::width).sum();
        if width != self.feature_names.len() {
            return Err(ModelError::Inconsistent(format!(
                "transforms produce {width} features but {} feature names are listed",
                self.feature_names.len()
            )));
        }
        if (self.task == Task::Clustering) != matches!(self.model, Model::Kmeans(_)) {
            return Err(ModelError::Inconsistent(format!("a {:?} task with a {} model", self.task, self.model.kind())));
        }
        let multiclass = matches!(self.task, Task::MulticlassClassification | Task::Clustering);
        let outputs = match &self.model {
            Model::Gbdt(m) => m.num_class,
            Model::Linear(m) => m.outputs(),
            Model::Kmeans(m) => m.clusters,
        };
        if multiclass && (self.classes.len() < 2 || self.classes.len() != outputs) {
            return Err(ModelError::Inconsistent(format!(
                "multiclass model lists {} classes for {outputs} outputs",
                self.classes.len()
            )));
        }
        if !multiclass && outputs != 1 {
            return Err(ModelError::Inconsistent(format!("{:?} model with {outputs} outputs", self.task)));
        }
        match &self.model {
            Model::Linear(m) if m.weights.len() != width * outputs => Err(ModelError::Inconsistent(format!(
                "linear model has {} weights for {width} features and {outputs} output(s)",
                m.weights.len()
            ))),
            Model::Linear(_) => Ok(()),
            Model::Gbdt(m) => m.check(width),
            Model::Kmeans(m) if m.centroids.len() != width * m.clusters => Err(ModelError::Inconsistent(format!(
                "k-means model has {} centroid values for {} clusters of {width} features",
                m.centroids.len(),
                m.clusters
            ))),
            Model::Kmeans(_) => Ok(()),
        }
    }
}
