//! Request rows straight from JSON into typed Arrow columns, for the MLflow layouts clients send
//! most (`dataframe_records`, `dataframe_split`, and `instances`/`inputs` as records or rows).
//!
//! The general path (`mlflow::columns_from_json` then `convert::batch_from_columns`) parses the
//! body into a tree of JSON values, regroups them by column and copies them into arrays. On
//! one-row requests that was most of the server's own work, so this path deserializes each
//! value directly into its column's buffer, with the model's input schema built once per loaded
//! model. It only ever answers for bodies it fully understands: anything else — an unknown or
//! missing feature, a wrong type, an escaped key, another layout — returns `None` and the caller
//! takes the general path, which accepts the same bodies and names the problem. So both paths
//! give the same batch whenever this one gives any (a property test feeds both valid and broken
//! bodies to both; values this path does not use, such as a split's `index`, are still parsed,
//! so that what the general path refuses — a number out of range, a lone surrogate — fails here
//! too).

use std::fmt;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_buffer::{Buffer, NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use sluice_model::ModelArtifact;

/// A model's inputs as every request batch carries them, whichever path built it (this one, the
/// general JSON path, CSV): in the model's order, text or numbers, one shared schema.
pub(crate) struct Inputs {
    pub schema: SchemaRef,
    text: Vec<bool>,
}

impl Inputs {
    pub(crate) fn of(model: &ModelArtifact) -> Self {
        let text: Vec<bool> = model.inputs.iter().map(|i| model.reads_text(&i.name)).collect();
        let fields: Vec<Field> = model
            .inputs
            .iter()
            .zip(&text)
            .map(|(i, t)| Field::new(&i.name, if *t { DataType::Utf8 } else { DataType::Float64 }, true))
            .collect();
        Self { schema: Arc::new(Schema::new(fields)), text }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.schema.fields().iter().position(|f| f.name() == name)
    }

    fn builders(&self) -> Vec<Builder> {
        self.text.iter().map(|t| if *t { Builder::texts() } else { Builder::numbers() }).collect()
    }

    fn finish(&self, builders: Vec<Builder>) -> Option<RecordBatch> {
        let columns: Vec<ArrayRef> = builders.into_iter().map(Builder::finish).collect::<Option<_>>()?;
        RecordBatch::try_new(self.schema.clone(), columns).ok()
    }
}

/// One column's values as they arrive (from JSON here, from scored batches in live drift).
pub(crate) enum Builder {
    Number { values: Vec<f64>, nulls: NullBufferBuilder },
    Text { offsets: Vec<i32>, bytes: Vec<u8>, nulls: NullBufferBuilder },
}

impl Builder {
    fn numbers() -> Self {
        Builder::Number { values: Vec::new(), nulls: NullBufferBuilder::new(0) }
    }

    fn texts() -> Self {
        Builder::Text { offsets: vec![0], bytes: Vec::new(), nulls: NullBufferBuilder::new(0) }
    }

    /// A builder for a column of this type: numbers (`Float64`) or text (`Utf8`), the types
    /// request batches have.
    pub(crate) fn for_type(data_type: &DataType) -> Option<Self> {
        match data_type {
            DataType::Float64 => Some(Self::numbers()),
            DataType::Utf8 => Some(Self::texts()),
            _ => None,
        }
    }

    /// An empty builder of the same kind, with room for as many values as this one holds.
    pub(crate) fn empty_like(&self) -> Self {
        match self {
            Builder::Number { values, .. } => {
                Builder::Number { values: Vec::with_capacity(values.len()), nulls: NullBufferBuilder::new(0) }
            }
            Builder::Text { offsets, bytes, .. } => {
                let mut fresh = Vec::with_capacity(offsets.len());
                fresh.push(0);
                Builder::Text {
                    offsets: fresh,
                    bytes: Vec::with_capacity(bytes.len()),
                    nulls: NullBufferBuilder::new(0),
                }
            }
        }
    }

    /// Whether [`extend`](Self::extend) would take `array`: the builder's type, and offsets
    /// that stay within `i32`.
    pub(crate) fn fits(&self, array: &ArrayRef) -> bool {
        use arrow_array::cast::AsArray;
        match self {
            Builder::Number { .. } => array.data_type() == &DataType::Float64,
            Builder::Text { bytes, .. } => {
                array.data_type() == &DataType::Utf8 && {
                    let a = array.as_string::<i32>();
                    let used = a.value_offsets().last().copied().unwrap_or(0) - a.value_offsets()[0];
                    bytes.len() + used as usize <= i32::MAX as usize
                }
            }
        }
    }

    /// Append an array's values (which must [`fit`](Self::fits)).
    pub(crate) fn extend(&mut self, array: &ArrayRef) {
        use arrow_array::cast::AsArray;
        match self {
            Builder::Number { values, nulls } => {
                let a = array.as_primitive::<arrow_array::types::Float64Type>();
                values.extend_from_slice(a.values());
                match a.nulls() {
                    Some(n) => nulls.append_buffer(n),
                    None => nulls.append_n_non_nulls(a.len()),
                }
            }
            Builder::Text { offsets, bytes, nulls } => {
                let a = array.as_string::<i32>();
                let (first, last) = (a.value_offsets()[0], a.value_offsets()[a.len()]);
                let base = bytes.len() as i32 - first;
                bytes.extend_from_slice(&a.value_data()[first as usize..last as usize]);
                offsets.extend(a.value_offsets()[1..].iter().map(|o| o + base));
                match a.nulls() {
                    Some(n) => nulls.append_buffer(n),
                    None => nulls.append_n_non_nulls(a.len()),
                }
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Builder::Number { values, .. } => values.len(),
            Builder::Text { offsets, .. } => offsets.len() - 1,
        }
    }

    fn null(&mut self) {
        match self {
            Builder::Number { values, nulls } => {
                values.push(0.0);
                nulls.append_null();
            }
            Builder::Text { offsets, bytes, nulls } => {
                offsets.push(bytes.len() as i32);
                nulls.append_null();
            }
        }
    }

    fn number(&mut self, v: f64) {
        if let Builder::Number { values, nulls } = self {
            values.push(v);
            nulls.append_non_null();
        }
    }

    fn str(&mut self, s: &str) -> bool {
        let Builder::Text { offsets, bytes, nulls } = self else { return false };
        bytes.extend_from_slice(s.as_bytes());
        let Ok(end) = i32::try_from(bytes.len()) else { return false };
        offsets.push(end);
        nulls.append_non_null();
        true
    }

    fn is_text(&self) -> bool {
        matches!(self, Builder::Text { .. })
    }

    pub(crate) fn finish(self) -> Option<ArrayRef> {
        Some(match self {
            Builder::Number { values, mut nulls } => {
                Arc::new(Float64Array::new(ScalarBuffer::from(values), nulls.finish())) as ArrayRef
            }
            Builder::Text { offsets, bytes, mut nulls } => Arc::new(
                StringArray::try_new(
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    Buffer::from_vec(bytes),
                    nulls.finish(),
                )
                .ok()?,
            ),
        })
    }
}

/// The batch of an MLflow JSON body, or `None` when the general path must decide (see the module
/// documentation).
pub(crate) fn mlflow_batch(inputs: &Inputs, body: &[u8]) -> Option<RecordBatch> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let builders = Top(inputs).deserialize(&mut de).ok()?;
    de.end().ok()?;
    inputs.finish(builders)
}

fn give_up<E: de::Error>() -> E {
    E::custom("not a body for the typed path")
}

/// `{"<layout>": ...}` with exactly one key.
struct Top<'a>(&'a Inputs);

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = Vec<Builder>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = Vec<Builder>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an MLflow scoring request")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let inputs = self.0;
        let k = inputs.text.len();
        let mut rows =
            Rows { inputs, builders: inputs.builders(), seen: vec![false; k], mode: None, order: (0..k).collect() };
        match map.next_key::<&str>()?.ok_or_else(give_up)? {
            "dataframe_records" => {
                rows.mode = Some(Mode::Records);
                map.next_value_seed(&mut rows)?;
            }
            "instances" | "inputs" => map.next_value_seed(&mut rows)?,
            "dataframe_split" => map.next_value_seed(Split(&mut rows))?,
            _ => return Err(give_up()),
        }
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(give_up());
        }
        rows.done()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Objects of feature values.
    Records,
    /// Lists of values, by position ([`Rows::order`]).
    Lists,
}

/// A list of rows; the first decides whether they are records or lists (as the general path).
struct Rows<'a> {
    inputs: &'a Inputs,
    builders: Vec<Builder>,
    /// Records: which features some row has named (the others are missing: the general path's
    /// error).
    seen: Vec<bool>,
    mode: Option<Mode>,
    /// Lists: the input each position holds (the model's order, or a split's `columns`).
    order: Vec<usize>,
}

impl Rows<'_> {
    fn done<E: de::Error>(self) -> Result<Vec<Builder>, E> {
        let rows = self.builders.first().map_or(0, Builder::len);
        // No rows: the general path says what is wrong with that (or scores nothing).
        if rows == 0 || self.seen.contains(&false) || self.builders.iter().any(|b| b.len() != rows) {
            return Err(give_up());
        }
        Ok(self.builders)
    }
}

impl<'de> DeserializeSeed<'de> for &mut Rows<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for &mut Rows<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of rows")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut row = 0;
        while seq.next_element_seed(Row { rows: &mut *self, row })?.is_some() {
            row += 1;
        }
        Ok(())
    }
}

/// One row: an object (records) or a list (by position).
struct Row<'r, 'a> {
    rows: &'r mut Rows<'a>,
    row: usize,
}

impl<'de> DeserializeSeed<'de> for Row<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Row<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record or a list of values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let rows = self.rows;
        if *rows.mode.get_or_insert(Mode::Records) != Mode::Records {
            return Err(give_up());
        }
        while let Some(name) = map.next_key::<&str>()? {
            let j = rows.inputs.position(name).ok_or_else(give_up)?;
            let builder = &mut rows.builders[j];
            // Every column has a value for each earlier row (missing ones are nulls, below); one
            // more means the feature is named twice in this record.
            if builder.len() > self.row {
                return Err(give_up());
            }
            rows.seen[j] = true;
            map.next_value_seed(Cell(builder))?;
        }
        for builder in &mut rows.builders {
            if builder.len() == self.row {
                builder.null();
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Rows { builders, seen, mode, order, .. } = self.rows;
        if *mode.get_or_insert(Mode::Lists) != Mode::Lists {
            return Err(give_up());
        }
        for &j in order.iter() {
            seq.next_element_seed(Cell(&mut builders[j]))?.ok_or_else(give_up)?;
        }
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(give_up());
        }
        seen.iter_mut().for_each(|s| *s = true);
        Ok(())
    }
}

/// `{"columns": [...], "data": [[...], ...]}`, columns first; other keys (pandas' `index`) are
/// parsed and ignored.
struct Split<'r, 'a>(&'r mut Rows<'a>);

impl<'de> DeserializeSeed<'de> for Split<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Split<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a split data frame")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let rows = self.0;
        let (mut columns, mut data) = (false, false);
        while let Some(key) = map.next_key::<&str>()? {
            match key {
                "columns" if !columns => {
                    let names: Vec<&str> = map.next_value()?;
                    let mut positions = Vec::with_capacity(names.len());
                    for name in names {
                        let j = rows.inputs.position(name).ok_or_else(give_up)?;
                        if positions.contains(&j) {
                            return Err(give_up());
                        }
                        positions.push(j);
                    }
                    if positions.len() != rows.builders.len() {
                        return Err(give_up());
                    }
                    rows.order = positions;
                    columns = true;
                }
                "data" if columns && !data => {
                    rows.mode = Some(Mode::Lists);
                    map.next_value_seed(&mut *rows)?;
                    data = true;
                }
                "columns" | "data" => return Err(give_up()),
                _ => {
                    // Parsed, not skipped: the general path parses the whole body, so a number
                    // out of range or a lone surrogate here must fail this path too.
                    map.next_value::<serde_json::Value>()?;
                }
            }
        }
        // Each row of `data` marked every feature seen; none means none.
        if !data {
            return Err(give_up());
        }
        Ok(())
    }
}

/// One value into its column, converted as the general path converts it: numbers and booleans
/// are text in a text column, booleans are 0/1 in a numeric one, `null` is missing, text in a
/// numeric column is an error.
struct Cell<'b>(&'b mut Builder);

impl<'de> DeserializeSeed<'de> for Cell<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Cell<'_> {
    fn shown<E: de::Error>(self, text: impl FnOnce() -> Option<String>, number: f64) -> Result<(), E> {
        if self.0.is_text() {
            let s = text().ok_or_else(give_up)?;
            self.0.str(&s).then_some(()).ok_or_else(give_up)
        } else {
            self.0.number(number);
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for Cell<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a feature value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.null();
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.shown(|| Some(v.to_string()), f64::from(u8::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.shown(|| Some(serde_json::Number::from(v).to_string()), v as f64)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.shown(|| Some(serde_json::Number::from(v).to_string()), v as f64)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.shown(|| serde_json::Number::from_f64(v).map(|n| n.to_string()), v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.str(v).then_some(()).ok_or_else(give_up)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};
    use sluice_model::{FORMAT_VERSION, InputColumn, LinearModel, Model, ModelArtifact, Task, Transform};

    use super::*;

    /// A model reading `age` and `hours` as numbers and `job` as text.
    fn model() -> ModelArtifact {
        let input = |name: &str, t: &str| InputColumn { name: name.into(), data_type: t.into() };
        ModelArtifact {
            format_version: FORMAT_VERSION,
            task: Task::Regression,
            label: "y".into(),
            classes: Vec::new(),
            inputs: vec![input("age", "Float64"), input("job", "Utf8"), input("hours", "Int64")],
            features: Default::default(),
            transforms: vec![
                Transform::Standardize { column: "age".into(), mean: 0.0, scale: 1.0 },
                Transform::OneHot { column: "job".into(), categories: vec!["a".into()] },
                Transform::Standardize { column: "hours".into(), mean: 0.0, scale: 1.0 },
            ],
            feature_names: vec!["age".into(), "job=a".into(), "hours".into()],
            model: Model::Linear(LinearModel {
                weights: vec![1.0; 3],
                intercept: 0.0,
                intercepts: Vec::new(),
                online: None,
            }),
            training: Default::default(),
            lineage: Default::default(),
        }
    }

    /// The typed path answers only what the general path answers, with the same batch.
    fn agree(model: &ModelArtifact, body: &[u8]) -> Option<RecordBatch> {
        let typed = mlflow_batch(&Inputs::of(model), body);
        let general = crate::mlflow::general_batch(&Inputs::of(model), body);
        if let Some(batch) = &typed {
            match &general {
                Ok(g) => assert_eq!(g, batch, "{}", String::from_utf8_lossy(body)),
                Err(e) => panic!(
                    "typed path took a body the general path refuses ({}): {}",
                    e.message,
                    String::from_utf8_lossy(body)
                ),
            }
            assert!(
                Arc::ptr_eq(&batch.schema(), &Inputs::of(model).schema) || batch.schema() == Inputs::of(model).schema
            );
        }
        typed
    }

    #[test]
    fn common_layouts_take_the_typed_path() {
        let m = model();
        let records = json!([
            {"age": 39, "job": "a", "hours": 40},
            {"hours": 1.5, "job": null, "age": -2},
            {"age": null, "job": "b\u{e9}\"x"},
            {"job": 7, "age": true, "hours": 2.0},
        ]);
        let rows = json!([[39, "a", 40], [null, "b", 2.5]]);
        for body in [
            json!({ "dataframe_records": records }),
            json!({ "instances": records }),
            json!({ "inputs": records }),
            json!({ "instances": rows }),
            json!({ "inputs": rows }),
            json!({ "dataframe_split": { "columns": ["hours", "age", "job"], "data": [[1, 2, "x"], [null, 3.25, false]] } }),
            json!({ "dataframe_split": { "index": [0, 1], "columns": ["age", "job", "hours"], "data": [[1, "x", 2], [3, "y", 4]] } }),
        ] {
            let batch = agree(&m, body.to_string().as_bytes());
            assert!(batch.is_some(), "typed path declined {body}");
        }
        // The values as the general path converts them: missing keys and null are missing,
        // numbers and booleans are text in a text column, booleans 0/1 in a numeric one.
        let batch = agree(&m, json!({ "dataframe_records": records }).to_string().as_bytes()).unwrap();
        let age = batch.column(0).as_any().downcast_ref::<Float64Array>().unwrap();
        let job = batch.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let hours = batch.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(age.iter().collect::<Vec<_>>(), vec![Some(39.0), Some(-2.0), None, Some(1.0)]);
        assert_eq!(job.iter().collect::<Vec<_>>(), vec![Some("a"), None, Some("b\u{e9}\"x"), Some("7")]);
        assert_eq!(hours.iter().collect::<Vec<_>>(), vec![Some(40.0), Some(1.5), None, Some(2.0)]);
    }

    #[test]
    fn anything_off_goes_the_general_way() {
        let m = model();
        for body in [
            r#"{"dataframe_records": [{"age": 1, "job": "a", "hours": 2, "extra": 1}]}"#,
            r#"{"dataframe_records": [{"age": 1, "job": "a"}]}"#,
            r#"{"dataframe_records": [{"age": "old", "job": "a", "hours": 2}]}"#,
            r#"{"dataframe_records": [{"age": 1, "age": 2, "job": "a", "hours": 2}]}"#,
            r#"{"dataframe_records": [{"age": [1], "job": "a", "hours": 2}]}"#,
            r#"{"dataframe_records": [{"a\u0067e": 1, "job": "a", "hours": 2}]}"#,
            r#"{"dataframe_records": []}"#,
            r#"{"dataframe_records": [1]}"#,
            r#"{"instances": [[1, "a"]]}"#,
            r#"{"instances": [[1, "a", 2, 3]]}"#,
            r#"{"instances": [[1, "a", 2], {"age": 1, "job": "a", "hours": 2}]}"#,
            r#"{"dataframe_split": {"data": [[1, "a", 2]], "columns": ["age", "job", "hours"]}}"#,
            r#"{"dataframe_split": {"columns": ["age", "job"], "data": [[1, "a"]]}}"#,
            r#"{"dataframe_split": {"columns": ["age", "age", "job"], "data": [[1, 1, "a"]]}}"#,
            r#"{"dataframe_split": {"columns": ["age", "job", "hours"]}}"#,
            r#"{"inputs": {"age": [1], "job": ["a"], "hours": [2]}}"#,
            r#"{"dataframe_records": [{"age": 1, "job": "a", "hours": 2}], "instances": []}"#,
            r#"{"records": []}"#,
            r#"{"dataframe_records": [{"age": 1, "job": "a", "hours": 2}]} x"#,
            r#"[1, 2]"#,
            r#"{"dataframe_records": [{"age": 1, "job": "a", "hours": 2}"#,
            // What skipping a value without parsing it would let through.
            r#"{"dataframe_split": {"index": [1e400], "columns": ["age", "job", "hours"], "data": [[1, "a", 2]]}}"#,
            r#"{"dataframe_split": {"index": ["\ud800"], "columns": ["age", "job", "hours"], "data": [[1, "a", 2]]}}"#,
            r#"{"dataframe_split": {"index": [-1e999], "columns": ["age", "job", "hours"], "data": [[1, "a", 2]]}}"#,
        ] {
            assert!(agree(&m, body.as_bytes()).is_none(), "typed path took {body}");
        }
        let deep = format!(
            r#"{{"dataframe_split": {{"index": {}1{}, "columns": ["age", "job", "hours"], "data": [[1, "a", 2]]}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let mut invalid_utf8 = br#"{"dataframe_split": {"index": [""#.to_vec();
        invalid_utf8.extend_from_slice(&[0xff, 0xfe]);
        invalid_utf8.extend_from_slice(br#""], "columns": ["age", "job", "hours"], "data": [[1, "a", 2]]}}"#);
        for body in [deep.into_bytes(), invalid_utf8] {
            assert!(agree(&m, &body).is_none(), "typed path took {}", String::from_utf8_lossy(&body));
        }
    }

    /// A value, mostly one a numeric column takes.
    /// Live drift buffers scored batches with these builders: appending arrays (sliced, with
    /// and without nulls) gives their concatenation.
    #[test]
    fn builders_append_arrays_as_concatenation() {
        let numbers: Vec<ArrayRef> = vec![
            Arc::new(Float64Array::from(vec![Some(1.0), None, Some(3.0)])),
            (Arc::new(Float64Array::from(vec![4.0, 5.0, 6.0, 7.0])) as ArrayRef).slice(1, 2),
            (Arc::new(Float64Array::from(vec![None, Some(8.0)])) as ArrayRef).slice(1, 1),
        ];
        let texts: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("a"), None, Some("bc")])),
            (Arc::new(StringArray::from(vec!["x", "yy", "zzz", "w"])) as ArrayRef).slice(1, 2),
            (Arc::new(StringArray::from(vec![Some("q"), None])) as ArrayRef).slice(1, 1),
        ];
        for arrays in [numbers, texts] {
            let mut builder = Builder::for_type(arrays[0].data_type()).unwrap();
            for a in &arrays {
                assert!(builder.fits(a));
                builder.extend(a);
            }
            let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
            let expected = arrow_select::concat::concat(&refs).unwrap();
            assert_eq!(builder.finish().unwrap().to_data(), expected.to_data());
        }
        assert!(Builder::for_type(&DataType::Int64).is_none());
        assert!(!Builder::texts().fits(&(Arc::new(Float64Array::from(vec![1.0])) as ArrayRef)));
    }

    fn cell() -> impl Strategy<Value = Value> {
        prop_oneof![
            1 => Just(Value::Null),
            3 => any::<i32>().prop_map(Value::from),
            1 => any::<u64>().prop_map(Value::from),
            3 => (-1e9f64..1e9).prop_map(Value::from),
            1 => any::<bool>().prop_map(Value::from),
            1 => "[a-c\u{e9}\"\\\\]{0,3}".prop_map(Value::from),
            1 => Just(json!([1])),
        ]
    }

    /// Mostly the model's three features (each sometimes missing), sometimes another.
    fn record() -> impl Strategy<Value = Value> {
        let field = |name: &'static str| prop::option::weighted(0.9, cell()).prop_map(move |v| (name, v));
        (field("age"), field("job"), field("hours"), prop::option::weighted(0.05, cell()), any::<bool>()).prop_map(
            |(a, j, h, other, reversed)| {
                let mut fields: Vec<(&str, Option<Value>)> = vec![a, j, h, ("other", other)];
                if reversed {
                    fields.reverse();
                }
                Value::Object(fields.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))).collect())
            },
        )
    }

    fn list() -> impl Strategy<Value = Value> {
        prop_oneof![
            6 => prop::collection::vec(cell(), 3).prop_map(Value::Array),
            1 => prop::collection::vec(cell(), 2..5).prop_map(Value::Array),
        ]
    }

    fn body() -> impl Strategy<Value = Value> {
        prop_oneof![
            prop::collection::vec(record(), 0..4).prop_map(|r| json!({ "dataframe_records": r })),
            prop::collection::vec(record(), 0..4).prop_map(|r| json!({ "instances": r })),
            prop::collection::vec(list(), 0..4).prop_map(|r| json!({ "inputs": r })),
            (
                prop::sample::subsequence(vec!["age", "job", "hours", "other"], 2..=4).prop_shuffle(),
                prop::collection::vec(list(), 0..4),
                prop::option::of(prop::collection::vec(cell(), 0..3)),
            )
                .prop_map(|(c, d, index)| match index {
                    Some(i) => json!({ "dataframe_split": { "index": i, "columns": c, "data": d } }),
                    None => json!({ "dataframe_split": { "columns": c, "data": d } }),
                }),
        ]
    }

    proptest! {
        /// Whatever the body, the typed path agrees with the general one when it answers.
        #[test]
        fn typed_path_agrees_with_the_general_one(body in body()) {
            agree(&model(), body.to_string().as_bytes());
        }
    }
}
