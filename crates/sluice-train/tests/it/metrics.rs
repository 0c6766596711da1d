//! sluice-metrics against scikit-learn on random labels and scores with ties
//! (`tests/fixtures/metrics.json`, written by `scripts/reference/linear_models.py`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::support::{check, max_abs_diff, read_json};

const TOL: f64 = 1e-9;

#[derive(Deserialize)]
struct Fixture {
    threshold: f64,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    kind: String,
    #[serde(default)]
    classes: usize,
    y: Vec<f64>,
    scores: Vec<f64>,
    metrics: BTreeMap<String, f64>,
}

#[test]
fn metrics_match_sklearn() {
    let fixture: Fixture = read_json("metrics.json");
    assert!(!fixture.cases.is_empty());
    let mut overall: f64 = 0.0;
    for case in &fixture.cases {
        let ours = match case.kind.as_str() {
            "binary" => {
                let m = sluice_metrics::binary(&case.y, &case.scores, fixture.threshold).expect("binary metrics");
                assert_eq!(m.rows, case.y.len() as u64);
                assert_eq!(m.positives, case.y.iter().filter(|v| **v == 1.0).count() as u64);
                let auc = sluice_metrics::roc_auc(&case.y, &case.scores).expect("roc auc");
                assert_eq!(auc, m.roc_auc);
                m.to_map()
            }
            "regression" => sluice_metrics::regression(&case.y, &case.scores).expect("regression metrics").to_map(),
            "multiclass" => {
                sluice_metrics::multiclass(&case.y, &case.scores, case.classes).expect("multiclass metrics").to_map()
            }
            other => panic!("{}: unknown kind {other}", case.name),
        };
        assert_eq!(ours.keys().collect::<Vec<_>>(), case.metrics.keys().collect::<Vec<_>>(), "{}", case.name);
        let names: Vec<&String> = ours.keys().collect();
        let ours: Vec<f64> = ours.values().copied().collect();
        let reference: Vec<f64> = case.metrics.values().copied().collect();
        let diff = max_abs_diff(&ours, &reference);
        check(&format!("{} ({})", case.name, names[diff.index]), diff, TOL, &ours, &reference);
        overall = overall.max(diff.value);
    }
    println!("metrics fixture: max diff over all cases {overall:.3e}");
}
