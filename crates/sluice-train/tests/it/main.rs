//! Integration tests of sluice-train — the crate's one test binary: add a module here rather
//! than a new file directly under `tests/`.
//!
//! The scikit-learn reference fixtures under `tests/fixtures/` are written by
//! `scripts/reference/linear_models.py` (see its header for versions and commands).

mod gbdt;
mod kmeans;
mod metrics;
mod newton;
mod sklearn;
mod support;
mod transforms;
