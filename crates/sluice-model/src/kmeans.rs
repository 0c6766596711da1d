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
    /// Per row, its cluster (the nearest centroid) and the Euclidean distance to every centroid
    /// (`rows x clusters`, row-major).
    pub fn assign(&self, x: &DesignMatrix) -> (Vec<usize>, Vec<f64>) {
        let d = x.cols;
        let mut clusters = Vec::with_capacity(x.rows);
        let mut distances = Vec::with_capacity(x.rows * self.clusters);
        for i in 0..x.rows {
            let row = x.row(i);
            let start = distances.len();
            distances.extend((0..self.clusters).map(|c| squared_distance(row, &self.centroids[c * d..(c + 1) * d])));
            clusters.push(smallest(&distances[start..]));
            distances[start..].iter_mut().for_each(|v| *v = v.sqrt());
        }
        (clusters, distances)
    }
}

pub fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The index of the smallest value (the first on ties).
fn smallest(values: &[f64]) -> usize {
    values.iter().enumerate().fold(0, |best, (i, v)| if *v < values[best] { i } else { best })
}

/// The centroid (of `k`, `clusters x row.len()` values) nearest to `row` — the first on ties,
/// compared in squared distance as [`KmeansModel::assign`] does — and the squared distance.
pub fn nearest_centroid(row: &[f64], centroids: &[f64], k: usize) -> (usize, f64) {
    let d = row.len();
    let mut best = (0, f64::INFINITY);
    for c in 0..k {
        let dist = squared_distance(row, &centroids[c * d..(c + 1) * d]);
        if dist < best.1 {
            best = (c, dist);
        }
    }
    best
}
