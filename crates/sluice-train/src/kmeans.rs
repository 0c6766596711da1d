//! k-means clustering: greedy k-means++ seeding and Lloyd's iterations, as scikit-learn's
//! `KMeans(algorithm="lloyd")`.
//!
//! - Seeding: the first centroid is a uniformly drawn row; each next one is the best (lowest
//!   total squared distance) of `2 + ln k` candidates drawn with probability proportional to the
//!   squared distance to the nearest centroid so far.
//! - Iterations: assign every row to its nearest centroid and move each centroid to its rows'
//!   mean, until the centroids move less than `tol` times the mean feature variance (summed
//!   squared shift, scikit-learn's rule) or the assignment stops changing. A cluster left empty
//!   takes the row farthest from its own centroid.
//! - `n_init` seedings; the lowest inertia wins.
//!
//! Sums over rows run in parallel in a fixed tree (see `linear::tree_sum`), so a seed gives the
//! same clusters at any thread count.

use sluice_core::rng::SplitMix64;
use sluice_model::{DesignMatrix, KmeansModel, nearest_centroid, squared_distance};

use crate::error::{Result, TrainError};
use crate::linear::tree_sum;

#[derive(Clone, Debug)]
pub struct KmeansOptions {
    pub clusters: usize,
    pub max_iter: u32,
    /// Relative to the mean feature variance, as scikit-learn's `tol`.
    pub tol: f64,
    pub n_init: u32,
    pub seed: u64,
}

impl Default for KmeansOptions {
    fn default() -> Self {
        Self { clusters: 8, max_iter: 300, tol: 1e-4, n_init: 1, seed: 0 }
    }
}

#[derive(Clone, Debug)]
pub struct KmeansFit {
    pub model: KmeansModel,
    /// Sum of squared distances from each row to its centroid.
    pub inertia: f64,
    pub iterations: u32,
    pub converged: bool,
}

/// Per row: its nearest centroid and the squared distance to it (the inference path's rule).
fn assign(x: &DesignMatrix, centroids: &[f64], k: usize) -> Vec<(u32, f64)> {
    tree_sum(
        x.rows,
        true,
        &|start, end| {
            (start..end)
                .map(|i| {
                    let (c, dist) = nearest_centroid(x.row(i), centroids, k);
                    (c as u32, dist)
                })
                .collect::<Vec<_>>()
        },
        &|mut a, b| {
            a.extend(b);
            a
        },
    )
}

/// Greedy k-means++ seeding.
fn seed_centroids(x: &DesignMatrix, k: usize, rng: &mut SplitMix64) -> Vec<f64> {
    let (n, d) = (x.rows, x.cols);
    let trials = 2 + (k as f64).ln() as usize;
    let mut centroids = Vec::with_capacity(k * d);
    centroids.extend_from_slice(x.row(rng.below(n)));
    let mut closest: Vec<f64> = (0..n).map(|i| squared_distance(x.row(i), &centroids[..d])).collect();
    for _ in 1..k {
        let total: f64 = closest.iter().sum();
        // Candidates drawn with probability proportional to `closest` (uniformly when every row
        // sits on a centroid already).
        let candidates: Vec<usize> = (0..trials)
            .map(|_| {
                if total <= 0.0 {
                    return rng.below(n);
                }
                let mut target = rng.next_f64() * total;
                for (i, c) in closest.iter().enumerate() {
                    target -= c;
                    if target < 0.0 {
                        return i;
                    }
                }
                n - 1
            })
            .collect();
        let mut best: Option<(f64, usize, Vec<f64>)> = None;
        for candidate in candidates {
            let row = x.row(candidate);
            let updated: Vec<f64> = tree_sum(
                n,
                true,
                &|start, end| (start..end).map(|i| closest[i].min(squared_distance(x.row(i), row))).collect::<Vec<_>>(),
                &|mut a, b| {
                    a.extend(b);
                    a
                },
            );
            let potential: f64 = updated.iter().sum();
            if best.as_ref().is_none_or(|(p, _, _)| potential < *p) {
                best = Some((potential, candidate, updated));
            }
        }
        let (_, chosen, updated) = best.expect("at least two candidates");
        centroids.extend_from_slice(x.row(chosen));
        closest = updated;
    }
    centroids
}

/// Lloyd's iterations from `centroids`: the final centroids, inertia, iterations and whether
/// they converged.
fn lloyd(
    x: &DesignMatrix,
    mut centroids: Vec<f64>,
    k: usize,
    o: &KmeansOptions,
    tol: f64,
) -> (Vec<f64>, f64, u32, bool) {
    let d = x.cols;
    let mut labels = assign(x, &centroids, k);
    let mut iterations = 0;
    let mut converged = false;
    while iterations < o.max_iter {
        iterations += 1;
        // Per cluster: the sum of its rows and their count, summed in a fixed tree.
        let (mut sums, mut counts) = tree_sum(
            x.rows,
            true,
            &|start, end| {
                let mut sums = vec![0.0; k * d];
                let mut counts = vec![0u64; k];
                for (i, (c, _)) in labels.iter().enumerate().take(end).skip(start) {
                    let c = *c as usize;
                    counts[c] += 1;
                    sums[c * d..(c + 1) * d].iter_mut().zip(x.row(i)).for_each(|(s, v)| *s += v);
                }
                (sums, counts)
            },
            &|(mut s1, mut c1), (s2, c2)| {
                s1.iter_mut().zip(&s2).for_each(|(a, b)| *a += b);
                c1.iter_mut().zip(&c2).for_each(|(a, b)| *a += b);
                (s1, c1)
            },
        );
        // Empty clusters take the rows farthest from their centroids, farthest first; each row
        // leaves the cluster it was in (as scikit-learn's relocation does).
        let empty: Vec<usize> = (0..k).filter(|c| counts[*c] == 0).collect();
        if !empty.is_empty() {
            let mut far: Vec<usize> = (0..x.rows).collect();
            far.sort_by(|a, b| labels[*b].1.total_cmp(&labels[*a].1).then(a.cmp(b)));
            for (c, row) in empty.iter().zip(far) {
                let old = labels[row].0 as usize;
                sums[old * d..(old + 1) * d].iter_mut().zip(x.row(row)).for_each(|(s, v)| *s -= v);
                counts[old] -= 1;
                sums[c * d..(c + 1) * d].copy_from_slice(x.row(row));
                counts[*c] = 1;
            }
        }
        let mut shift = 0.0;
        for c in 0..k {
            let count = counts[c].max(1) as f64;
            for j in 0..d {
                let next = sums[c * d + j] / count;
                shift += (next - centroids[c * d + j]).powi(2);
                centroids[c * d + j] = next;
            }
        }
        let next = assign(x, &centroids, k);
        let unchanged = next.iter().zip(&labels).all(|(a, b)| a.0 == b.0);
        labels = next;
        if unchanged || shift <= tol {
            converged = true;
            break;
        }
    }
    let inertia = labels.iter().map(|(_, dist)| dist).sum();
    (centroids, inertia, iterations, converged)
}

/// Cluster the rows of `x` into `o.clusters` groups.
pub fn fit_kmeans(x: &DesignMatrix, o: &KmeansOptions) -> Result<KmeansFit> {
    let k = o.clusters;
    if k < 2 {
        return Err(TrainError::Invalid(format!("k-means needs at least 2 clusters; got {k}")));
    }
    if x.rows < k {
        return Err(TrainError::Invalid(format!("k-means with {k} clusters needs at least {k} rows; got {}", x.rows)));
    }
    if x.cols == 0 {
        return Err(TrainError::Invalid("k-means needs at least one feature".into()));
    }
    if let Some(bad) = x.data.iter().find(|v| !v.is_finite()) {
        return Err(TrainError::Invalid(format!("k-means got a non-finite feature value ({bad})")));
    }
    // scikit-learn's tolerance: `tol` times the mean per-feature variance.
    let n = x.rows as f64;
    let mean_variance = (0..x.cols)
        .map(|j| {
            let mean = (0..x.rows).map(|i| x.row(i)[j]).sum::<f64>() / n;
            (0..x.rows).map(|i| (x.row(i)[j] - mean).powi(2)).sum::<f64>() / n
        })
        .sum::<f64>()
        / x.cols as f64;
    let tol = o.tol * mean_variance;
    let mut rng = SplitMix64::new(o.seed);
    let mut best: Option<KmeansFit> = None;
    for _ in 0..o.n_init.max(1) {
        let start = seed_centroids(x, k, &mut rng);
        let (centroids, inertia, iterations, converged) = lloyd(x, start, k, o, tol);
        if best.as_ref().is_none_or(|b| inertia < b.inertia) {
            best = Some(KmeansFit { model: KmeansModel { centroids, clusters: k }, inertia, iterations, converged });
        }
    }
    Ok(best.expect("at least one initialization"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated blobs: every row lands with its blob, whatever the seed.
    #[test]
    fn finds_separated_blobs() {
        let mut rng = SplitMix64::new(7);
        let centres = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)];
        let mut data = Vec::new();
        let mut truth = Vec::new();
        for i in 0..3000 {
            let (cx, cy) = centres[i % 3];
            data.push(cx + rng.next_f64() - 0.5);
            data.push(cy + rng.next_f64() - 0.5);
            truth.push(i % 3);
        }
        let x = DesignMatrix { data, rows: 3000, cols: 2 };
        for seed in 0..5 {
            let fit = fit_kmeans(&x, &KmeansOptions { clusters: 3, seed, ..Default::default() }).expect("fits");
            assert!(fit.converged);
            let labels = assign(&x, &fit.model.centroids, 3);
            // Same partition as the truth, up to the clusters' numbering.
            let mut map = [usize::MAX; 3];
            for (t, (c, _)) in truth.iter().zip(&labels) {
                let c = *c as usize;
                if map[c] == usize::MAX {
                    map[c] = *t;
                }
                assert_eq!(map[c], *t, "seed {seed}");
            }
            // Each blob's points are uniform on a unit square: variance 1/12 per coordinate.
            assert!((fit.inertia / 3000.0 - 2.0 / 12.0).abs() < 0.01, "seed {seed}: inertia {}", fit.inertia);
        }
    }

    #[test]
    fn an_empty_cluster_takes_the_farthest_row() {
        // Two distinct points, three clusters: seeding has to repeat a point, and the duplicate
        // centroid's cluster is empty after the first assignment.
        let x = DesignMatrix { data: vec![0.0, 0.0, 0.0, 5.0, 5.0, 5.0], rows: 6, cols: 1 };
        let fit = fit_kmeans(&x, &KmeansOptions { clusters: 3, ..Default::default() }).expect("fits");
        assert_eq!(fit.inertia, 0.0);
        assert!(fit.model.centroids.contains(&0.0) && fit.model.centroids.contains(&5.0));
    }

    #[test]
    fn refuses_too_few_rows_and_non_finite_values() {
        let x = DesignMatrix { data: vec![1.0, 2.0], rows: 2, cols: 1 };
        let e = fit_kmeans(&x, &KmeansOptions { clusters: 3, ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("at least 3 rows"), "{e}");
        let x = DesignMatrix { data: vec![1.0, f64::NAN, 3.0], rows: 3, cols: 1 };
        let e = fit_kmeans(&x, &KmeansOptions { clusters: 2, ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("non-finite"), "{e}");
    }
}
