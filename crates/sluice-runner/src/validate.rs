//! The `validate` step: expectations checked in one streaming pass that also splits off the
//! quarantined rows and profiles the rows that flow on; `infer` proposes expectations from data.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringBuilder};
use arrow::compute::{filter_record_batch, not, or};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::DataFrame;
use serde::Serialize;
use serde_json::{Map, Value};
use sluice_core::ArtifactKind;
use sluice_engine::{DatasetWriter, Engine, for_each_batch};
use sluice_profile::{ColumnKind, Profile, Profiler};
use sluice_spec::Suggestion;
use sluice_spec::kinds::{ColumnExpectation, ColumnType, DatasetChecks, Expectations, Policy, RowCount, ValidateStep};

use crate::error::StepError;
use crate::steps::{Executed, StepCtx};

/// Column added to quarantined rows: the checks each row failed, comma-separated.
pub const FAILED_CHECKS: &str = "_failed_checks";
const CHECK_PREFIX: &str = "__sluice_check_";

/// What happened to one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Failed,
    Warned,
    Quarantined,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    /// `column.kind` (`age.min`) or the row check's name or `dataset.row_count`.
    pub check: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// `row` (counted per row) or `dataset`.
    pub level: &'static str,
    /// The expectation in words (or SQL).
    pub expectation: String,
    pub policy: Policy,
    pub status: Status,
    /// Rows failing a row-level check; values failing `unique`.
    pub failing: u64,
    /// What was measured, for dataset-level checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
    /// Offending rows (column → value as text) or duplicated values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Value>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub input: String,
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_quarantined: u64,
    pub passed: bool,
    pub checks: Vec<CheckResult>,
}

impl Report {
    /// For the terminal: the counts, then one line per check that did not pass (with a sample
    /// row); passing checks are only counted.
    pub fn summary(&self) -> String {
        let passed = self.checks.iter().filter(|c| c.status == Status::Passed).count();
        let mut out = format!(
            "validation of `{}`: {} rows in, {} flow on, {} quarantined; {passed} of {} checks passed{}\n",
            self.input,
            self.rows_in,
            self.rows_out,
            self.rows_quarantined,
            self.checks.len(),
            if self.passed { "" } else { "; FAILED" }
        );
        let shown: Vec<&CheckResult> = self.checks.iter().filter(|c| c.status != Status::Passed).collect();
        let width = shown.iter().map(|c| c.check.len()).max().unwrap_or(0);
        for c in shown {
            let (mark, what) = match c.status {
                Status::Passed => ("✔", "ok"),
                Status::Failed => ("✘", "FAILED"),
                Status::Warned => ("!", "warning"),
                Status::Quarantined => ("⇢", "quarantined"),
            };
            let count = match c.level {
                "row" => format!("{} rows", c.failing),
                _ => c.observed.clone().unwrap_or_default(),
            };
            out.push_str(&format!("  {mark} {:<width$}  {what:<11} {count:<12} expected {}\n", c.check, c.expectation));
            if let Some(first) = c.samples.first() {
                out.push_str(&format!("      e.g. {first}\n"));
            }
        }
        out
    }
}

/// A check evaluated per row by DataFusion: `sql` is true when the row *violates* it.
struct RowRule {
    check: String,
    column: Option<String>,
    expectation: String,
    policy: Policy,
    sql: String,
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn type_matches(expected: ColumnType, t: &DataType) -> bool {
    match expected {
        ColumnType::Integer => t.is_integer(),
        ColumnType::Number => t.is_numeric(),
        ColumnType::String => is_text(t) || matches!(t, DataType::Dictionary(_, v) if is_text(v)),
        ColumnType::Boolean => matches!(t, DataType::Boolean),
        ColumnType::Date => matches!(t, DataType::Date32 | DataType::Date64),
        ColumnType::Timestamp => matches!(t, DataType::Timestamp(_, _)),
    }
}

pub(crate) fn column_type(t: &DataType) -> Option<ColumnType> {
    [
        ColumnType::Integer,
        ColumnType::Number,
        ColumnType::String,
        ColumnType::Boolean,
        ColumnType::Date,
        ColumnType::Timestamp,
    ]
    .into_iter()
    .find(|c| type_matches(*c, t))
}

fn type_name(t: ColumnType) -> &'static str {
    match t {
        ColumnType::Integer => "integer",
        ColumnType::Number => "number",
        ColumnType::String => "string",
        ColumnType::Boolean => "boolean",
        ColumnType::Date => "date",
        ColumnType::Timestamp => "timestamp",
    }
}

fn row_rules(v: &ValidateStep, schema: &Schema) -> Vec<RowRule> {
    let mut rules = Vec::new();
    for (column, e) in &v.columns {
        let policy = e.policy.unwrap_or(v.policy);
        let c = ident(column);
        let text = match schema.field_with_name(column) {
            Ok(f) if is_text(f.data_type()) => c.clone(),
            _ => format!("CAST({c} AS VARCHAR)"),
        };
        let mut push = |kind: &str, expectation: String, sql: String| {
            rules.push(RowRule {
                check: format!("{column}.{kind}"),
                column: Some(column.clone()),
                expectation,
                policy,
                sql,
            })
        };
        if e.nullable == Some(false) {
            let nan = match schema.field_with_name(column).map(|f| f.data_type().clone()) {
                Ok(DataType::Float16 | DataType::Float32 | DataType::Float64) => format!(" OR isnan({c})"),
                _ => String::new(),
            };
            push("nullable", format!("{column} is never missing"), format!("{c} IS NULL{nan}"));
        }
        if let Some(min) = e.min {
            push("min", format!("{column} >= {min}"), format!("{c} < {min:?}"));
        }
        if let Some(max) = e.max {
            push("max", format!("{column} <= {max}"), format!("{c} > {max:?}"));
        }
        if let Some(allowed) = &e.allowed {
            let list = allowed.iter().map(|a| literal(a)).collect::<Vec<_>>().join(", ");
            let shown = if allowed.len() <= 4 { allowed.join(", ") } else { format!("{} values", allowed.len()) };
            push("allowed", format!("{column} in {{{shown}}}"), format!("{text} NOT IN ({list})"));
        }
        if let Some(re) = &e.regex {
            push("regex", format!("{column} matches {re}"), format!("NOT regexp_like({text}, {})", literal(re)));
        }
    }
    for r in &v.rows {
        rules.push(RowRule {
            check: r.name.clone(),
            column: None,
            expectation: r.check.clone(),
            policy: r.policy.unwrap_or(v.policy),
            sql: format!("NOT ({})", r.check),
        });
    }
    rules
}

/// Columns the expectations name that the data lacks, as one clear error.
fn check_columns(step: &str, v: &ValidateStep, schema: &Schema) -> Result<(), StepError> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut named: Vec<(&str, &str)> = v.columns.keys().map(|c| (c.as_str(), "columns")).collect();
    if let Some(f) = &v.dataset.freshness {
        named.push((f.column.as_str(), "dataset.freshness.column"));
    }
    for (column, field) in named {
        if !names.contains(&column) {
            return Err(StepError::Invalid(format!(
                "step `{step}`: `{field}` names column `{column}`, which `{}` does not have{}; its columns are {}",
                v.input.as_str(),
                Suggestion::closest(column, names.iter().copied()),
                names.join(", ")
            )));
        }
    }
    if let Some(f) = &v.dataset.freshness
        && let Ok(field) = schema.field_with_name(&f.column)
        && ColumnKind::of(field.data_type()) != ColumnKind::Temporal
    {
        return Err(StepError::Invalid(format!(
            "step `{step}`: freshness column `{}` is {}, not a date or timestamp",
            f.column,
            field.data_type()
        )));
    }
    Ok(())
}

fn row_as_json(columns: &[ArrayRef], names: &[String], row: usize) -> Value {
    let options = FormatOptions::default();
    let mut map = Map::new();
    for (name, array) in names.iter().zip(columns) {
        let value = if array.is_null(row) {
            Value::Null
        } else {
            match ArrayFormatter::try_new(array.as_ref(), &options) {
                Ok(f) => Value::String(f.value(row).to_string()),
                Err(_) => Value::Null,
            }
        };
        map.insert(name.clone(), value);
    }
    Value::Object(map)
}

/// The state of the one pass over the input.
struct Pass {
    width: usize,
    names: Vec<String>,
    quarantine_checks: Vec<usize>,
    check_names: Vec<String>,
    counts: Vec<u64>,
    samples: Vec<Vec<Value>>,
    max_samples: usize,
    good: DatasetWriter,
    bad: DatasetWriter,
    bad_schema: SchemaRef,
    rows_in: u64,
}

impl Pass {
    fn batch(&mut self, batch: RecordBatch) -> Result<(), StepError> {
        let rows = batch.num_rows();
        self.rows_in += rows as u64;
        let data = batch.project(&(0..self.width).collect::<Vec<_>>())?;
        let flags: Vec<BooleanArray> =
            (self.width..batch.num_columns()).map(|i| batch.column(i).as_boolean().clone()).collect();
        for (i, f) in flags.iter().enumerate() {
            let n = f.true_count();
            self.counts[i] += n as u64;
            if n > 0 && self.samples[i].len() < self.max_samples {
                for row in (0..rows).filter(|&r| f.value(r)).take(self.max_samples - self.samples[i].len()) {
                    self.samples[i].push(row_as_json(data.columns(), &self.names, row));
                }
            }
        }
        let mut quarantined: Option<BooleanArray> = None;
        for &i in &self.quarantine_checks {
            quarantined = Some(match quarantined {
                None => flags[i].clone(),
                Some(q) => or(&q, &flags[i])?,
            });
        }
        let Some(q) = quarantined.filter(|q| q.true_count() > 0) else {
            self.good.write(data)?;
            return Ok(());
        };
        self.good.write(filter_record_batch(&data, &not(&q)?)?)?;
        let moved = filter_record_batch(&data, &q)?;
        let mut reasons = StringBuilder::new();
        for row in (0..rows).filter(|&r| q.value(r)) {
            let failed: Vec<&str> = self
                .quarantine_checks
                .iter()
                .filter(|&&i| flags[i].value(row))
                .map(|&i| self.check_names[i].as_str())
                .collect();
            reasons.append_value(failed.join(", "));
        }
        let mut columns = moved.columns().to_vec();
        columns.push(Arc::new(reasons.finish()));
        self.bad.write(RecordBatch::try_new(self.bad_schema.clone(), columns)?)?;
        Ok(())
    }
}

/// Build the checking query; if it does not plan, find the rule whose SQL is at fault.
async fn checking_frame(ctx: &StepCtx, input: &std::path::Path, rules: &[RowRule]) -> Result<DataFrame, StepError> {
    let tables = [("input".to_string(), input.to_path_buf())];
    let mut select = vec!["*".to_string()];
    select.extend(rules.iter().enumerate().map(|(i, r)| format!("COALESCE(({}), false) AS {CHECK_PREFIX}{i}", r.sql)));
    let query = format!("SELECT {} FROM input", select.join(", "));
    match ctx.engine.sql(&tables, &query).await {
        Ok(df) => Ok(df),
        Err(whole) => {
            for r in rules {
                let one = format!("SELECT COALESCE(({}), false) FROM input", r.sql);
                if let Err(e) = ctx.engine.sql(&tables, &one).await {
                    return Err(StepError::Invalid(format!(
                        "step `{}`: check `{}` ({}) cannot run: {e}",
                        ctx.step.name, r.check, r.expectation
                    )));
                }
            }
            Err(whole.into())
        }
    }
}

pub(crate) async fn execute(ctx: &StepCtx, v: &ValidateStep) -> Result<Executed, StepError> {
    let record = &ctx.inputs.first().ok_or_else(|| StepError::Internal("validate has no input".into()))?.1;
    let input = ctx.ws.artifacts.local_path(&record.artifact.hash, record.artifact.kind).await?;
    let schema: SchemaRef = Arc::new(
        ctx.engine.sql(&[("input".into(), input.clone())], "SELECT * FROM input").await?.schema().as_arrow().clone(),
    );
    check_columns(&ctx.step.name, v, &schema)?;
    let rules = row_rules(v, &schema);
    let df = checking_frame(ctx, &input, &rules).await?;

    let good_path = ctx.ws.artifacts.scratch_path("parquet");
    let bad_path = ctx.ws.artifacts.scratch_path("parquet");
    let mut bad_fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    bad_fields.push(Field::new(FAILED_CHECKS, DataType::Utf8, false));
    let bad_schema = Arc::new(Schema::new(bad_fields));
    let cleanup = || {
        let _ = std::fs::remove_file(&good_path);
        let _ = std::fs::remove_file(&bad_path);
    };
    let mut pass = Pass {
        width: schema.fields().len(),
        names: schema.fields().iter().map(|f| f.name().clone()).collect(),
        quarantine_checks: rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.policy == Policy::Quarantine)
            .map(|(i, _)| i)
            .collect(),
        check_names: rules.iter().map(|r| r.check.clone()).collect(),
        counts: vec![0; rules.len()],
        samples: vec![Vec::new(); rules.len()],
        max_samples: v.samples,
        good: DatasetWriter::create(&good_path, schema.clone())?,
        bad: DatasetWriter::create(&bad_path, bad_schema.clone())?,
        bad_schema,
        rows_in: 0,
    };
    let progress = ctx.progress();
    let mut error = None;
    let streamed = for_each_batch(df, |batch| {
        if let Err(e) = pass.batch(batch) {
            error = Some(e);
            return Err(sluice_engine::EngineError::Invalid("validation stopped".into()));
        }
        progress(pass.rows_in);
        Ok(())
    })
    .await;
    if let Some(e) = error {
        cleanup();
        return Err(e);
    }
    if let Err(e) = streamed {
        cleanup();
        return Err(e.into());
    }
    let Pass { counts, samples, good, bad, rows_in, .. } = pass;
    let (good, bad) = match (good.finish(), bad.finish()) {
        (Ok(good), Ok(bad)) => (good, bad),
        (Err(e), _) | (_, Err(e)) => {
            cleanup();
            return Err(e.into());
        }
    };
    // The profile of the rows that pass, read back from their file where the data is (each
    // executor profiles its row groups on a cluster), so it is the same on any engine.
    let profile = match sluice_engine::profile(&ctx.engine, &good_path).await {
        Ok(p) => p,
        Err(e) => {
            cleanup();
            return Err(StepError::Invalid(format!("step `{}`: profiling the validated rows: {e}", ctx.step.name)));
        }
    };

    let mut checks: Vec<CheckResult> = rules
        .iter()
        .zip(counts)
        .zip(samples)
        .map(|((r, failing), samples)| CheckResult {
            check: r.check.clone(),
            column: r.column.clone(),
            level: "row",
            expectation: r.expectation.clone(),
            policy: r.policy,
            status: status(failing > 0, r.policy, true),
            failing,
            observed: None,
            samples,
        })
        .collect();
    let dataset = match dataset_checks(ctx, v, &schema, &input, &profile).await {
        Ok(d) => d,
        Err(e) => {
            cleanup();
            return Err(e);
        }
    };
    checks.extend(dataset);
    let quarantined = bad.rows;
    let report = Report {
        input: v.input.to_string(),
        rows_in,
        rows_out: good.rows,
        rows_quarantined: quarantined,
        passed: !checks.iter().any(|c| c.status == Status::Failed),
        checks,
    };
    if !report.passed {
        cleanup();
        return Err(StepError::Invalid(format!("step `{}` failed validation\n{}", ctx.step.name, report.summary())));
    }
    let data = ctx.store_dataset("data", &good_path, Ok::<_, StepError>(good)).await?;
    let quarantine = ctx.store_dataset("quarantine", &bad_path, Ok::<_, StepError>(bad)).await?;
    let warned = report.checks.iter().filter(|c| c.status == Status::Warned).count();
    ctx.report(&report.summary());
    let report_bytes = serde_json::to_vec_pretty(&report).unwrap_or_default();
    let report_out = ctx.store_json("report", report_bytes, ArtifactKind::Metrics).await?;
    let profile_out = ctx.store_json("profile", profile.to_json(), ArtifactKind::Profile).await?;
    Ok(Executed {
        after_commit: None,
        rows: data.artifact.rows,
        outputs: vec![data, quarantine, report_out, profile_out],
        metrics: vec![("rows_quarantined".into(), quarantined as f64), ("checks_warned".into(), warned as f64)],
    })
}

fn status(violated: bool, policy: Policy, row_level: bool) -> Status {
    match (violated, policy) {
        (false, _) => Status::Passed,
        (true, Policy::Warn) => Status::Warned,
        (true, Policy::Quarantine) if row_level => Status::Quarantined,
        (true, _) => Status::Failed,
    }
}

async fn dataset_checks(
    ctx: &StepCtx,
    v: &ValidateStep,
    schema: &Schema,
    input: &std::path::Path,
    profile: &Profile,
) -> Result<Vec<CheckResult>, StepError> {
    let mut out = Vec::new();
    let result =
        |check: String, column: Option<String>, expectation: String, policy: Policy, ok: bool, observed: String| {
            CheckResult {
                check,
                column,
                level: "dataset",
                expectation,
                policy,
                status: status(!ok, policy, false),
                failing: u64::from(!ok),
                observed: Some(observed),
                samples: Vec::new(),
            }
        };
    for (column, e) in &v.columns {
        let policy = e.policy.unwrap_or(v.policy);
        if let (Some(t), Ok(field)) = (e.data_type, schema.field_with_name(column)) {
            let ok = type_matches(t, field.data_type());
            let observed = field.data_type().to_string();
            out.push(result(
                format!("{column}.type"),
                Some(column.clone()),
                format!("{column} is {}", type_name(t)),
                policy,
                ok,
                observed,
            ));
        }
        if let Some(max) = e.max_null_fraction
            && let Some(p) = profile.column(column)
        {
            let f = p.null_fraction();
            out.push(result(
                format!("{column}.max_null_fraction"),
                Some(column.clone()),
                format!("{column} missing in <= {:.2}% of rows", max * 100.0),
                policy,
                f <= max,
                format!("{:.2}% missing", f * 100.0),
            ));
        }
        if e.unique {
            let c = ident(column);
            let tables = [("input".to_string(), input.to_path_buf())];
            let dup_query = format!(
                "SELECT CAST({c} AS VARCHAR) AS value, count(*) AS n FROM input WHERE {c} IS NOT NULL \
                 GROUP BY {c} HAVING count(*) > 1 ORDER BY n DESC, value"
            );
            let batches = ctx.engine.sql(&tables, &dup_query).await?.collect().await?;
            let duplicated: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
            let mut samples = Vec::new();
            for b in &batches {
                let values = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
                let counts = arrow::compute::cast(b.column(1), &DataType::Int64)?;
                let (values, counts) =
                    (values.as_string::<i32>(), counts.as_primitive::<arrow::datatypes::Int64Type>());
                for i in 0..b.num_rows() {
                    if samples.len() < v.samples {
                        samples.push(serde_json::json!({"value": values.value(i), "count": counts.value(i)}));
                    }
                }
            }
            let mut r = result(
                format!("{column}.unique"),
                Some(column.clone()),
                format!("{column} values are distinct"),
                policy,
                duplicated == 0,
                format!("{duplicated} values repeat"),
            );
            r.failing = duplicated;
            r.samples = samples;
            out.push(r);
        }
    }
    let DatasetChecks { row_count, freshness } = &v.dataset;
    if let Some(RowCount { min, max, policy }) = row_count {
        let rows = profile.rows;
        let ok = min.is_none_or(|m| rows >= m) && max.is_none_or(|m| rows <= m);
        let bounds = match (min, max) {
            (Some(a), Some(b)) => format!("{a} <= rows <= {b}"),
            (Some(a), None) => format!("rows >= {a}"),
            (None, Some(b)) => format!("rows <= {b}"),
            (None, None) => "any number of rows".into(),
        };
        out.push(result(
            "dataset.row_count".into(),
            None,
            bounds,
            policy.unwrap_or(v.policy),
            ok,
            format!("{rows} rows"),
        ));
    }
    if let Some(f) = freshness {
        let max_age = f.max_age_seconds().unwrap_or(f64::INFINITY);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let newest = profile.column(&f.column).and_then(|c| c.numeric.as_ref()).map(|n| n.max);
        let (ok, observed) = match newest {
            Some(t) => (now - t <= max_age, format!("newest is {} old", human_age(now - t))),
            None => (false, "no values".into()),
        };
        out.push(result(
            "dataset.freshness".into(),
            Some(f.column.clone()),
            format!("newest {} at most {} old", f.column, f.max_age),
            f.policy.unwrap_or(v.policy),
            ok,
            observed,
        ));
    }
    Ok(out)
}

fn human_age(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 3600.0 {
        format!("{:.0}m", s / 60.0)
    } else if s < 2.0 * 86_400.0 {
        format!("{:.1}h", s / 3600.0)
    } else {
        format!("{:.1}d", s / 86_400.0)
    }
}

/// Propose expectations from data (one pass to profile, then an exact distinct count for each
/// column that looks unique): types, nullability (and for columns with missing values the observed
/// fraction plus 5 points as `max_null_fraction`), numeric ranges, the allowed values of text
/// and boolean columns with at most `max_categories` values, uniqueness, and for other text
/// columns a regex of the characters and lengths seen.
pub async fn infer(
    engine: &Engine,
    df: DataFrame,
    max_categories: usize,
) -> Result<(Expectations, Profile), StepError> {
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let mut profiler = Profiler::new(schema.clone());
    let mut shapes: Vec<Option<TextShape>> =
        schema.fields().iter().map(|f| is_text(f.data_type()).then(TextShape::default)).collect();
    let mut failed = None;
    for_each_batch(df.clone(), |batch| {
        if let Err(e) = profiler.update(&batch) {
            failed = Some(e.to_string());
        }
        for (shape, column) in shapes.iter_mut().zip(batch.columns()) {
            if let Some(s) = shape {
                s.update(column);
            }
        }
        Ok(())
    })
    .await?;
    if let Some(e) = failed {
        return Err(StepError::Invalid(e));
    }
    let profile = profiler.finish();
    let mut columns = indexmap::IndexMap::new();
    for ((field, p), shape) in schema.fields().iter().zip(&profile.columns).zip(shapes) {
        let mut e = ColumnExpectation { data_type: column_type(field.data_type()), ..Default::default() };
        if p.nulls == 0 {
            e.nullable = Some(false);
        } else {
            e.max_null_fraction = Some(((p.null_fraction() + 0.05) * 100.0).ceil().min(100.0) / 100.0);
        }
        if let Some(n) = &p.numeric {
            e.min = Some(n.min);
            e.max = Some(n.max);
        }
        let few = p.distinct_exact && p.distinct as usize <= max_categories && p.count > 0;
        if let (true, Some(freq)) = (few, &p.state.freq) {
            let mut values: Vec<String> = freq.top(usize::MAX).into_iter().map(|(v, _)| v).collect();
            values.sort();
            e.allowed = Some(values);
        }
        // Unique: cheap guess from the sketch, then an exact check.
        if p.count > 1 && p.distinct as f64 >= 0.97 * p.count as f64 && p.kind != ColumnKind::Other {
            e.unique = exactly_unique(engine, &df, field.name()).await?;
        }
        if e.allowed.is_none()
            && !e.unique
            && let Some(s) = shape
        {
            e.regex = s.regex();
        }
        columns.insert(field.name().clone(), e);
    }
    let dataset =
        DatasetChecks { row_count: Some(RowCount { min: Some(1), max: None, policy: None }), freshness: None };
    Ok((Expectations { columns, rows: Vec::new(), dataset }, profile))
}

/// One more pass over the data for one column: are its non-null values all distinct?
async fn exactly_unique(engine: &Engine, df: &DataFrame, column: &str) -> Result<bool, StepError> {
    let ctx = engine.context()?;
    ctx.register_table("input", df.clone().into_view())?;
    let c = ident(column);
    let df = ctx.sql(&format!("SELECT count({c}) = count(DISTINCT {c}) FROM input")).await?;
    let out = df.collect().await?;
    Ok(out.first().is_some_and(|b| b.num_rows() == 1 && b.column(0).as_boolean().value(0)))
}

/// Which kinds of characters a text column uses and how long its values are.
#[derive(Default)]
struct TextShape {
    digits: bool,
    lower: bool,
    upper: bool,
    space: bool,
    /// Other characters seen (up to 16 distinct; more means "anything").
    other: std::collections::BTreeSet<char>,
    min_len: Option<usize>,
    max_len: usize,
}

impl TextShape {
    fn update(&mut self, array: &ArrayRef) {
        let mut visit = |s: &str| {
            let n = s.chars().count();
            self.min_len = Some(self.min_len.map_or(n, |m| m.min(n)));
            self.max_len = self.max_len.max(n);
            for ch in s.chars() {
                match ch {
                    '0'..='9' => self.digits = true,
                    'a'..='z' => self.lower = true,
                    'A'..='Z' => self.upper = true,
                    ' ' => self.space = true,
                    c if self.other.len() <= 16 => {
                        self.other.insert(c);
                    }
                    _ => {}
                }
            }
        };
        match array.data_type() {
            DataType::Utf8 => array.as_string::<i32>().iter().flatten().for_each(&mut visit),
            DataType::LargeUtf8 => array.as_string::<i64>().iter().flatten().for_each(&mut visit),
            DataType::Utf8View => array.as_string_view().iter().flatten().for_each(&mut visit),
            _ => {}
        }
    }

    fn regex(&self) -> Option<String> {
        let min = self.min_len?;
        if self.other.len() > 16 {
            return (min > 0).then(|| format!("^.{{{min},{}}}$", self.max_len));
        }
        let mut class = String::new();
        if self.lower {
            class.push_str("a-z");
        }
        if self.upper {
            class.push_str("A-Z");
        }
        if self.digits {
            class.push_str("0-9");
        }
        if self.space {
            class.push(' ');
        }
        for c in &self.other {
            if c.is_alphanumeric() || c.is_whitespace() {
                class.push(*c);
            } else {
                class.push_str(&format!("\\x{{{:X}}}", *c as u32));
            }
        }
        if class.is_empty() {
            return None;
        }
        Some(format!("^[{class}]{{{min},{}}}$", self.max_len))
    }
}
