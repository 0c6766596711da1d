use serde::{Deserialize, Serialize};

use crate::transform::DesignMatrix;

/// k-means clusters: each row belongs to the centroid nearest to it (Euclidean distance in the
/// design matrix's space, after the model's transforms).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KmeansModel {
    /// `clusters x features`, cluster by cluster.
    pub centroids: Vec<f64>,
    pub clusters: usize,
}

impl KmeansModel {
    /// Per row, the Euclidean distance to every centroid (`rows x clusters`, row-major).
    pub fn distances(&self, x: &DesignMatrix) -> Vec<f64> {
        let d = x.cols;
        let mut out = Vec::with_capacity(x.rows * self.clusters);
        for i in 0..x.rows {
            let row = x.row(i);
            for c in self.centroids.chunks(d.max(1)).take(self.clusters) {
                out.push(row.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt());
            }
        }
        out
    }
}

/// The index of the smallest value (the first on ties).
pub fn nearest(distances: &[f64]) -> usize {
    distances.iter().enumerate().fold(0, |best, (i, v)| if *v < distances[best] { i } else { best })
}
