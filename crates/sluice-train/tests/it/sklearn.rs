//! Linear models against scikit-learn on its bundled data sets (`tests/fixtures/linear_models.json`,
//! written by `scripts/reference/linear_models.py`).
//!
//! sluice's objective `mean(loss) + l2/2 ||w||² + l1 ||w||₁` is scikit-learn's
//! `LogisticRegression` with `C = 1 / ((l1 + l2) n)` and `l1_ratio = l1 / (l1 + l2)` (binary and
//! multinomial), `Ridge` with `alpha = l2 n` and `ElasticNet` with `alpha = l1 + l2`, all on the
//! standardized matrix. The training here starts from the RAW CSV, so `fit_transforms` and
//! `design_matrix` are under test too.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use sluice_model::{Model, ModelArtifact, Predictor, Task, Transform, design_matrix, sigmoid};
use sluice_train::{FeatureOptions, LinearOptions, Objective, TrainRequest, train_linear};

use crate::support::{check, max_abs_diff, max_rel_diff, read_csv, read_json};

/// Coefficients and intercept: relative to `max(|sklearn|, COEF_FLOOR)`.
const COEF_TOL: f64 = 1e-3;
const COEF_FLOOR: f64 = 1e-3;
/// Probabilities / predicted values, absolute.
const PREDICTION_TOL: f64 = 1e-6;
/// sluice-metrics on our predictions vs scikit-learn's metrics on its own, absolute.
const METRIC_TOL: f64 = 1e-4;
/// sluice-metrics vs scikit-learn on the same (scikit-learn's) predictions, absolute.
const SAME_INPUT_METRIC_TOL: f64 = 1e-9;
/// Standardization mean and scale, relative (Welford vs numpy's pairwise sums).
const STANDARDIZE_TOL: f64 = 1e-12;

#[derive(Deserialize)]
struct Fixture {
    threshold: f64,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    csv: String,
    label: String,
    features: Vec<String>,
    objective: String,
    l2: f64,
    #[serde(default)]
    l1: f64,
    rows: usize,
    solver: String,
    max_abs_gradient: f64,
    standardize: Standardization,
    coef: Vec<f64>,
    /// Binary and regression models.
    #[serde(default)]
    intercept: f64,
    #[serde(default)]
    predictions: Vec<f64>,
    /// Multinomial models: class names, per-class intercepts (centred) and `rows x classes`
    /// probabilities.
    #[serde(default)]
    classes: Vec<String>,
    #[serde(default)]
    intercepts: Vec<f64>,
    #[serde(default)]
    probabilities: Vec<f64>,
    /// L1 models: how many coefficients are exactly zero.
    #[serde(default)]
    zero_coefficients: Option<usize>,
    metrics: BTreeMap<String, f64>,
}

#[derive(Deserialize)]
struct Standardization {
    mean: Vec<f64>,
    scale: Vec<f64>,
}

const CASES: [&str; 9] = [
    "logistic_breast_cancer_l2_0.01",
    "logistic_breast_cancer_l2_0.0001",
    "ridge_diabetes_l2_0.001",
    "elastic_net_diabetes_l1_1_l2_0",
    "elastic_net_diabetes_l1_0.5_l2_0.5",
    "logistic_breast_cancer_l1_0.02_l2_0",
    "logistic_breast_cancer_l1_0.01_l2_0.01",
    "multinomial_wine_l2_0.01",
    "multinomial_wine_l2_0.001",
];

fn fixture() -> Fixture {
    read_json("linear_models.json")
}

fn metric_map(task: Task, y: &[f64], scores: &[f64], threshold: f64) -> BTreeMap<String, f64> {
    match task {
        Task::BinaryClassification => sluice_metrics::binary(y, scores, threshold).expect("binary metrics").to_map(),
        Task::Regression => sluice_metrics::regression(y, scores).expect("regression metrics").to_map(),
        Task::MulticlassClassification => {
            let p: Vec<f64> = scores.to_vec();
            let m = sluice_metrics::multiclass(y, &p, p.len() / y.len().max(1)).expect("multiclass metrics");
            BTreeMap::from([("accuracy".to_string(), m.accuracy), ("log_loss".to_string(), m.log_loss)])
        }
        Task::Clustering => panic!("no clustering cases here (see kmeans.rs)"),
    }
}

fn check_metrics(what: &str, ours: &BTreeMap<String, f64>, reference: &BTreeMap<String, f64>, tol: f64) {
    assert_eq!(ours.keys().collect::<Vec<_>>(), reference.keys().collect::<Vec<_>>(), "{what}: metric names");
    let names: Vec<&String> = ours.keys().collect();
    let ours: Vec<f64> = ours.values().copied().collect();
    let reference: Vec<f64> = reference.values().copied().collect();
    let diff = max_abs_diff(&ours, &reference);
    check(&format!("{what} ({})", names[diff.index]), diff, tol, &ours, &reference);
}

fn run_case(name: &str) {
    let fixture = fixture();
    let case = fixture.cases.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no case {name} in the fixture"));
    println!("== {name} (scikit-learn solver {}, |gradient| {:.1e})", case.solver, case.max_abs_gradient);
    let (objective, task) = match case.objective.as_str() {
        "logistic" => (Objective::Logistic, Task::BinaryClassification),
        "multinomial" => (Objective::Logistic, Task::MulticlassClassification),
        "squared_error" => (Objective::SquaredError, Task::Regression),
        other => panic!("unknown objective {other}"),
    };
    let batch = read_csv(&case.csv);
    assert_eq!(batch.num_rows(), case.rows);

    let request = TrainRequest {
        label: &case.label,
        features: &case.features,
        objective,
        linear: LinearOptions { l2: case.l2, l1: case.l1, ..Default::default() },
        preprocessing: FeatureOptions::default(),
    };
    let artifact = train_linear(&batch, &request).expect("training");
    assert!(artifact.training.converged, "did not converge: {:?}", artifact.training);
    println!("solver iterations: {}", artifact.training.iterations);
    assert_eq!(artifact.task, task);
    assert_eq!(artifact.feature_names, case.features);

    // Standardization: the same means and population standard deviations.
    let (mut mean, mut scale) = (Vec::new(), Vec::new());
    for (t, feature) in artifact.transforms.iter().zip(&case.features) {
        match t {
            Transform::Standardize { column, mean: m, scale: s } => {
                assert_eq!(column, feature);
                mean.push(*m);
                scale.push(*s);
            }
            other => panic!("{feature}: expected standardization, got {other:?}"),
        }
    }
    check(
        "standardize mean",
        max_rel_diff(&mean, &case.standardize.mean, 1e-300),
        STANDARDIZE_TOL,
        &mean,
        &case.standardize.mean,
    );
    check(
        "standardize scale",
        max_rel_diff(&scale, &case.standardize.scale, 1e-300),
        STANDARDIZE_TOL,
        &scale,
        &case.standardize.scale,
    );

    // Parameters.
    let Model::Linear(model) = &artifact.model else { panic!("not a linear model") };
    check("coefficients", max_rel_diff(&model.weights, &case.coef, COEF_FLOOR), COEF_TOL, &model.weights, &case.coef);
    let (intercepts, reference_intercepts) = match task {
        Task::MulticlassClassification => {
            assert_eq!(artifact.classes, case.classes);
            (model.intercepts.clone(), case.intercepts.clone())
        }
        _ => (vec![model.intercept], vec![case.intercept]),
    };
    check(
        "intercept",
        max_rel_diff(&intercepts, &reference_intercepts, COEF_FLOOR),
        COEF_TOL,
        &intercepts,
        &reference_intercepts,
    );
    if let Some(zeros) = case.zero_coefficients {
        // Exact zeros are what L1 is for: the same coefficients dropped.
        let ours: Vec<usize> = (0..model.weights.len()).filter(|j| model.weights[*j] == 0.0).collect();
        let theirs: Vec<usize> = (0..case.coef.len()).filter(|j| case.coef[*j] == 0.0).collect();
        assert_eq!(theirs.len(), zeros);
        assert_eq!(ours, theirs, "coefficients at exactly zero");
    }

    // Predictions, through the inference path (multinomial: every class's probability).
    let predictor = Predictor::new(artifact.clone()).expect("predictor");
    let predictions = predictor.predict(&batch).expect("predict");
    let (scores, reference) = match task {
        Task::MulticlassClassification => (predictions.probabilities.clone(), &case.probabilities),
        _ => (predictions.scores.clone(), &case.predictions),
    };
    check("predictions", max_abs_diff(&scores, reference), PREDICTION_TOL, &scores, reference);

    // The predictor's scores are exactly the training-time margins through the link.
    let x = design_matrix(&artifact.transforms, &batch).expect("design matrix");
    let mut margins = model.margins(&x);
    let linked: Vec<f64> = match task {
        Task::BinaryClassification => margins.iter().copied().map(sigmoid).collect(),
        Task::MulticlassClassification => {
            margins.chunks_mut(model.outputs()).for_each(sluice_model::softmax);
            margins.clone()
        }
        Task::Regression => margins.clone(),
        Task::Clustering => panic!("not a linear model's task"),
    };
    assert_eq!(scores, linked, "Predictor scores differ from link(training margins)");
    // ... and survive the artifact's JSON round trip, to within a few ulps: serde_json is built
    // without its `float_roundtrip` feature, so parsing an f64 can be off by one ulp.
    let reloaded = ModelArtifact::from_json(&artifact.to_json()).expect("artifact JSON round trip");
    let reloaded = Predictor::new(reloaded).expect("predictor").predict(&batch).expect("predict");
    let reloaded_scores = match task {
        Task::MulticlassClassification => reloaded.probabilities,
        _ => reloaded.scores,
    };
    check(
        "predictions after JSON round trip",
        max_abs_diff(&reloaded_scores, &scores),
        1e-12,
        &reloaded_scores,
        &scores,
    );

    // Metrics: sluice-metrics on our predictions vs scikit-learn's on its own; and, to tell a
    // metric discrepancy from a model one, sluice-metrics on scikit-learn's predictions.
    let y = sluice_train::model_labels(&artifact, &batch).expect("labels");
    let ours = metric_map(task, &y, &scores, fixture.threshold);
    check_metrics("metrics (our model)", &ours, &case.metrics, METRIC_TOL);
    let on_reference = metric_map(task, &y, reference, fixture.threshold);
    check_metrics("metrics (scikit-learn's predictions)", &on_reference, &case.metrics, SAME_INPUT_METRIC_TOL);
}

#[test]
fn logistic_breast_cancer_strong_l2() {
    run_case(CASES[0]);
}

#[test]
fn logistic_breast_cancer_weak_l2() {
    run_case(CASES[1]);
}

#[test]
fn ridge_diabetes() {
    run_case(CASES[2]);
}

#[test]
fn lasso_diabetes() {
    run_case(CASES[3]);
}

#[test]
fn elastic_net_diabetes() {
    run_case(CASES[4]);
}

#[test]
fn logistic_breast_cancer_lasso() {
    run_case(CASES[5]);
}

#[test]
fn logistic_breast_cancer_elastic_net() {
    run_case(CASES[6]);
}

#[test]
fn multinomial_wine_strong_l2() {
    run_case(CASES[7]);
}

#[test]
fn multinomial_wine_weak_l2() {
    run_case(CASES[8]);
}

/// A case added to the script must get a test here.
#[test]
fn every_fixture_case_is_tested() {
    let in_fixture: BTreeSet<String> = fixture().cases.into_iter().map(|c| c.name).collect();
    let tested: BTreeSet<String> = CASES.iter().map(|c| c.to_string()).collect();
    assert_eq!(in_fixture, tested);
}
