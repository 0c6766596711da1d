//! What the stores record about an artifact, independent of where its bytes live.

use serde::{Deserialize, Serialize};

use crate::ContentHash;

/// What an artifact holds; decides its file extension and who can read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// A table, stored as Parquet.
    Dataset,
    /// A model artifact (see `sluice-model`), stored as JSON.
    Model,
    /// A metrics document (or a validation report), stored as JSON.
    Metrics,
    /// A dataset profile (see `sluice-profile`), stored as JSON.
    Profile,
}

impl ArtifactKind {
    pub fn extension(self) -> &'static str {
        match self {
            ArtifactKind::Dataset => "parquet",
            ArtifactKind::Model | ArtifactKind::Metrics | ArtifactKind::Profile => "json",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::Dataset => "dataset",
            ArtifactKind::Model => "model",
            ArtifactKind::Metrics => "metrics",
            ArtifactKind::Profile => "profile",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dataset" => Some(Self::Dataset),
            "model" => Some(Self::Model),
            "metrics" => Some(Self::Metrics),
            "profile" => Some(Self::Profile),
            _ => None,
        }
    }
}

/// One column of a dataset artifact's schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnMeta {
    pub name: String,
    pub data_type: String,
    pub nullable: bool,
}

/// The description of an artifact that the metadata store keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArtifactMeta {
    pub hash: ContentHash,
    pub kind: ArtifactKind,
    pub size: u64,
    /// Rows, for datasets.
    pub rows: Option<u64>,
    /// Columns, for datasets.
    pub schema: Option<Vec<ColumnMeta>>,
}
