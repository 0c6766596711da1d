//! Dense Cholesky factorization and solve for the small symmetric systems of Newton steps.
//! The systems are (features + 1) square, so a straightforward O(d³) routine is enough.

/// Solve `a x = b` for symmetric positive definite `a` (row-major, `n`x`n`). Returns `None` if
/// `a` is not positive definite.
pub fn solve(a: &[f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut sum = a[i * n + j];
            for k in 0..j {
                sum -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if sum <= 0.0 || !sum.is_finite() {
                    return None;
                }
                l[i * n + i] = sum.sqrt();
            } else {
                l[i * n + j] = sum / l[j * n + j];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[i * n + k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[k * n + i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i * n + i];
    }
    Some(x)
}

/// Like [`solve`], adding a growing multiple of the identity until the matrix factors (guards
/// against exact collinearity, e.g. a full one-hot block next to an intercept with `l2 = 0`).
pub fn solve_regularized(a: &[f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    if let Some(x) = solve(a, b, n) {
        return Some(x);
    }
    let trace: f64 = (0..n).map(|i| a[i * n + i].abs()).sum::<f64>().max(1.0);
    let mut jitter = 1e-12 * trace / n as f64;
    for _ in 0..8 {
        let mut m = a.to_vec();
        for i in 0..n {
            m[i * n + i] += jitter;
        }
        if let Some(x) = solve(&m, b, n) {
            return Some(x);
        }
        jitter *= 100.0;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_spd_system() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let x = solve(&a, &[2.0, 1.0], 2).unwrap();
        assert!((4.0 * x[0] + 2.0 * x[1] - 2.0).abs() < 1e-12);
        assert!((2.0 * x[0] + 3.0 * x[1] - 1.0).abs() < 1e-12);
        assert!(solve(&[1.0, 2.0, 2.0, 1.0], &[1.0, 1.0], 2).is_none());
    }
}
