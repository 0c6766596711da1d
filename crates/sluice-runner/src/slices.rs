//! Evaluation by slice: metrics per value of a column, and group-fairness gaps for binary models.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use serde_json::{Value, json};
use sluice_model::{Predictions, Task};

use crate::error::StepError;

/// Per slice column: each group's row count and metrics. Returns the report and the scalar gap
/// metrics (`demographic_parity_difference_<column>`, `equal_opportunity_difference_<column>`).
pub(crate) fn evaluate_slices(
    batch: &RecordBatch,
    columns: &[String],
    task: Task,
    y: &[f64],
    predictions: &Predictions,
    threshold: f64,
) -> Result<(Value, BTreeMap<String, f64>), StepError> {
    let mut report = serde_json::Map::new();
    let mut gaps = BTreeMap::new();
    for column in columns {
        let array = batch
            .column_by_name(column)
            .ok_or_else(|| StepError::Invalid(format!("slice column `{column}` is not in the evaluation data")))?;
        let text = cast(array, &DataType::Utf8)
            .map_err(|e| StepError::Invalid(format!("slice column `{column}` cannot be read as text: {e}")))?;
        let text = text.as_string::<i32>();
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for i in 0..text.len() {
            let key = if text.is_valid(i) { text.value(i).to_string() } else { "null".to_string() };
            groups.entry(key).or_default().push(i);
        }
        let mut out = serde_json::Map::new();
        let (mut rates, mut recalls) = (Vec::new(), Vec::new());
        for (value, rows) in &groups {
            // Clustering has no labels (`y` is empty): its metrics need none.
            let gy: Vec<f64> = if y.is_empty() { Vec::new() } else { rows.iter().map(|&i| y[i]).collect() };
            let group = predictions.take(rows);
            // AUC needs both classes: a group with one class gets no metrics.
            let metrics = crate::gates::task_metrics(task, &gy, &group, threshold).ok();
            let mut entry = json!({"rows": rows.len(), "metrics": metrics});
            if task == Task::BinaryClassification {
                let c = sluice_metrics::confusion(&gy, &group.scores, threshold);
                let positives = c.true_positives + c.false_negatives;
                let rate = (c.true_positives + c.false_positives) as f64 / rows.len() as f64;
                let recall = (positives > 0).then(|| c.true_positives as f64 / positives as f64);
                rates.push(rate);
                recalls.extend(recall);
                if let Some(e) = entry.as_object_mut() {
                    e.insert("positives".into(), json!(positives));
                    e.insert("predicted_positive_rate".into(), json!(rate));
                    e.insert("recall".into(), json!(recall));
                }
            }
            out.insert(value.clone(), entry);
        }
        let spread = |v: &[f64]| {
            v.iter().copied().fold(f64::NEG_INFINITY, f64::max) - v.iter().copied().fold(f64::INFINITY, f64::min)
        };
        if task == Task::BinaryClassification && groups.len() > 1 {
            gaps.insert(format!("demographic_parity_difference_{column}"), spread(&rates));
            if recalls.len() > 1 {
                gaps.insert(format!("equal_opportunity_difference_{column}"), spread(&recalls));
            }
        }
        report.insert(column.clone(), Value::Object(out));
    }
    Ok((Value::Object(report), gaps))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, StringArray};

    use super::*;

    #[test]
    fn fairness_gaps_by_hand() {
        let batch = RecordBatch::try_from_iter([(
            "group",
            Arc::new(StringArray::from(vec![
                Some("a"),
                Some("a"),
                Some("a"),
                Some("a"),
                Some("b"),
                Some("b"),
                None,
                None,
            ])) as ArrayRef,
        )])
        .unwrap();
        let y = [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let p = Predictions::new(Task::BinaryClassification, vec![0.9, 0.2, 0.7, 0.1, 0.9, 0.8, 0.1, 0.1]);
        let (report, gaps) =
            evaluate_slices(&batch, &["group".into()], Task::BinaryClassification, &y, &p, 0.5).unwrap();
        // Positive-prediction rates: a 2/4, b 2/2, null 0/2 -> gap 1. Recalls: a 1/2, b 1, null 0.
        assert_eq!(gaps["demographic_parity_difference_group"], 1.0);
        assert_eq!(gaps["equal_opportunity_difference_group"], 1.0);
        assert_eq!(report["group"]["a"]["rows"], 4);
        assert_eq!(report["group"]["a"]["recall"], 0.5);
        assert!(report["group"]["null"]["metrics"].is_object());
        let e = evaluate_slices(&batch, &["nope".into()], Task::BinaryClassification, &y, &p, 0.5).unwrap_err();
        assert!(e.to_string().contains("`nope`"), "{e}");
    }
}
