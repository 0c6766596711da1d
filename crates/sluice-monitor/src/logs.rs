//! The server's prediction logs: Parquet files under `logs/predictions/<model>/` in the artifact
//! store, each row a scored input with the prediction columns, `model_version`, `request_id`,
//! `row` (its index in the request) and `time` (when it was scored, UTC).

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use sluice_store::ArtifactStore;

use crate::error::{MonitorError, Result};
use crate::reference::parquet_batches;

pub fn prefix(model: &str) -> String {
    format!("logs/predictions/{model}")
}

/// The log files of a model, oldest first (their names start with the time they were written).
pub async fn files(artifacts: &ArtifactStore, model: &str) -> Result<Vec<String>> {
    let files: Vec<String> =
        artifacts.list_at(&prefix(model)).await?.into_iter().filter(|p| p.ends_with(".parquet")).collect();
    if files.is_empty() {
        return Err(MonitorError::Invalid(format!(
            "no prediction logs for model `{model}` under {}/{}: serve it with `--log-sample-rate` above 0 \
             (and let the server flush, every 10 s by default)",
            artifacts.url(),
            prefix(model)
        )));
    }
    Ok(files)
}

/// The rows the model answered: a shadow model's rows (arm `shadow`, scored alongside the
/// answer for offline comparison) are not what the endpoint served.
fn without_shadow_rows(batch: RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    let Some(arm) = batch.column_by_name("arm") else { return Ok(batch) };
    let served = arrow::compute::kernels::cmp::neq(arm, &arrow::array::StringArray::new_scalar("shadow"))?;
    if served.true_count() == batch.num_rows() {
        return Ok(batch);
    }
    arrow::compute::filter_record_batch(&batch, &served)
}

/// Every logged batch of a model (the rows it answered), oldest first, with the schema of the first file: later files
/// (e.g. from a model version with other inputs) are read by column name, and a missing
/// column is an error naming the file.
pub async fn for_each_batch<E: From<MonitorError>>(
    artifacts: &ArtifactStore,
    model: &str,
    mut f: impl FnMut(&SchemaRef, RecordBatch) -> Result<(), E>,
) -> Result<u64, E> {
    let mut schema: Option<SchemaRef> = None;
    let mut rows = 0u64;
    for path in files(artifacts, model).await? {
        let Some(bytes) = artifacts.get_at(&path).await.map_err(MonitorError::from)? else { continue };
        parquet_batches(bytes, &format!("prediction log `{path}`"), |batch| {
            let batch = without_shadow_rows(batch).map_err(MonitorError::from)?;
            // Every column nullable: a request without nulls in a column types it non-nullable.
            let schema = schema
                .get_or_insert_with(|| {
                    let fields: Vec<_> =
                        batch.schema().fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
                    std::sync::Arc::new(arrow::datatypes::Schema::new(fields))
                })
                .clone();
            let batch = if batch.schema() == schema {
                batch
            } else {
                let mut columns = Vec::with_capacity(schema.fields().len());
                for field in schema.fields() {
                    let c = batch.column_by_name(field.name()).ok_or_else(|| {
                        MonitorError::Invalid(format!(
                            "prediction log `{path}` has no column `{}` (earlier logs of `{model}` do)",
                            field.name()
                        ))
                    })?;
                    columns.push(arrow::compute::cast(c, field.data_type()).map_err(MonitorError::from)?);
                }
                RecordBatch::try_new(schema.clone(), columns).map_err(MonitorError::from)?
            };
            rows += batch.num_rows() as u64;
            f(&schema, batch)
        })?;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};

    use super::without_shadow_rows;

    /// Monitoring reads what the endpoint answered: rows a shadow model scored alongside are
    /// dropped; logs written before arms were recorded are read whole.
    #[test]
    fn shadow_rows_are_not_what_was_served() {
        let p: ArrayRef = Arc::new(Float64Array::from(vec![0.1, 0.2, 0.3, 0.4]));
        let arm: ArrayRef = Arc::new(StringArray::from(vec!["primary", "shadow", "canary", "shadow"]));
        let batch = RecordBatch::try_from_iter([("probability", p.clone()), ("arm", arm)]).unwrap();
        let served = without_shadow_rows(batch).unwrap();
        assert_eq!(served.num_rows(), 2);
        let kept = served.column(0).as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(kept.values().to_vec(), vec![0.1, 0.3]);
        let old = RecordBatch::try_from_iter([("probability", p)]).unwrap();
        assert_eq!(without_shadow_rows(old).unwrap().num_rows(), 4);
    }
}
