//! Database sources: a query's result from PostgreSQL (`tokio-postgres`), MySQL/MariaDB
//! (`mysql_async`) or SQLite (`rusqlite`), streamed into Arrow record batches of `batch_rows`.
//!
//! Why our own Arrow builders rather than `datafusion-table-providers`: that crate (0.15, for
//! DataFusion 55) turns on features of shared dependencies (arrow `ffi`, chrono defaults) that
//! rebuild arrow and DataFusion, and its SQLite provider pins a `rusqlite` whose
//! `libsqlite3-sys` cannot coexist with the metadata store's. A source step runs one SQL query
//! the database executes itself, so the pushdown the table providers offer is the query.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use futures::StreamExt;
use sluice_spec::kinds::DatabaseStep;

use crate::error::{EngineError, Result};

/// What a database source hands over: first the schema, then batches.
pub enum Chunk {
    Schema(SchemaRef),
    Batch(RecordBatch),
}

/// Replace `${VAR}` with the environment's value.
pub fn interpolate_env(text: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| EngineError::Invalid(format!("unclosed `${{` in `{text}`")))?;
        let name = &after[..end];
        let value = std::env::var(name).map_err(|_| {
            EngineError::Invalid(format!("environment variable `{name}` (used in `{text}`) is not set"))
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A URL with its password masked, for messages.
fn masked(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn db_error(url: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Invalid(format!("database `{}`: {e}", masked(url)))
}

/// PostgreSQL errors say only "db error" until their source (the server's message) is shown.
fn pg_error(url: &str, e: tokio_postgres::Error) -> EngineError {
    match e.as_db_error() {
        Some(db) => db_error(url, db),
        None => match std::error::Error::source(&e) {
            Some(cause) => db_error(url, format!("{e}: {cause}")),
            None => db_error(url, e),
        },
    }
}

/// Run the step's query and hand its schema and batches to `sink`.
pub async fn read_database(
    step: &DatabaseStep,
    base_dir: &Path,
    sink: &mut (dyn FnMut(Chunk) -> Result<()> + Send),
) -> Result<()> {
    let url = interpolate_env(&step.url)?;
    let sql = step.sql();
    let (scheme, rest) = url.split_once("://").unwrap_or(("", ""));
    match scheme {
        "postgres" | "postgresql" => postgres(&url, &sql, &step.params, step.batch_rows, sink).await,
        "mysql" | "mariadb" => mysql(&format!("mysql://{rest}"), &sql, &step.params, step.batch_rows, sink).await,
        "sqlite" => {
            let path = if Path::new(rest).is_absolute() { Path::new(rest).to_path_buf() } else { base_dir.join(rest) };
            sqlite(&path, &sql, &step.params, step.batch_rows, sink).await
        }
        other => Err(EngineError::Invalid(format!("unsupported database scheme `{other}`"))),
    }
}

/// One column being built, typed by what the database reported.
enum Column {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Text(StringBuilder),
    Bytes(BinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder, Option<Arc<str>>),
}

impl Column {
    fn new(t: &DataType) -> Self {
        match t {
            DataType::Boolean => Column::Bool(BooleanBuilder::new()),
            DataType::Int16 => Column::I16(Int16Builder::new()),
            DataType::Int32 => Column::I32(Int32Builder::new()),
            DataType::Int64 => Column::I64(Int64Builder::new()),
            DataType::Float32 => Column::F32(Float32Builder::new()),
            DataType::Float64 => Column::F64(Float64Builder::new()),
            DataType::Binary => Column::Bytes(BinaryBuilder::new()),
            DataType::Date32 => Column::Date(Date32Builder::new()),
            DataType::Timestamp(_, tz) => Column::Timestamp(TimestampMicrosecondBuilder::new(), tz.clone()),
            _ => Column::Text(StringBuilder::new()),
        }
    }

    fn null(&mut self) {
        match self {
            Column::Bool(b) => b.append_null(),
            Column::I16(b) => b.append_null(),
            Column::I32(b) => b.append_null(),
            Column::I64(b) => b.append_null(),
            Column::F32(b) => b.append_null(),
            Column::F64(b) => b.append_null(),
            Column::Text(b) => b.append_null(),
            Column::Bytes(b) => b.append_null(),
            Column::Date(b) => b.append_null(),
            Column::Timestamp(b, _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Bool(b) => Arc::new(b.finish()),
            Column::I16(b) => Arc::new(b.finish()),
            Column::I32(b) => Arc::new(b.finish()),
            Column::I64(b) => Arc::new(b.finish()),
            Column::F32(b) => Arc::new(b.finish()),
            Column::F64(b) => Arc::new(b.finish()),
            Column::Text(b) => Arc::new(b.finish()),
            Column::Bytes(b) => Arc::new(b.finish()),
            Column::Date(b) => Arc::new(b.finish()),
            Column::Timestamp(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
        }
    }
}

/// Rows being gathered into a batch of at most `limit` rows.
struct Batcher {
    schema: SchemaRef,
    columns: Vec<Column>,
    rows: usize,
    limit: usize,
}

impl Batcher {
    fn new(schema: SchemaRef, limit: usize) -> Self {
        let columns = schema.fields().iter().map(|f| Column::new(f.data_type())).collect();
        Self { schema, columns, rows: 0, limit: limit.max(1) }
    }

    /// A row's values are appended: hand the batch over when it is full.
    fn row_done(&mut self, sink: &mut (dyn FnMut(Chunk) -> Result<()> + Send)) -> Result<()> {
        self.rows += 1;
        if self.rows == self.limit { self.flush(sink) } else { Ok(()) }
    }

    fn flush(&mut self, sink: &mut (dyn FnMut(Chunk) -> Result<()> + Send)) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let arrays = self.columns.iter_mut().map(Column::finish).collect();
        self.rows = 0;
        sink(Chunk::Batch(RecordBatch::try_new(self.schema.clone(), arrays)?))
    }
}

const UNIX_EPOCH_DAYS_FROM_2000: i32 = 10_957;
const UNIX_EPOCH_MICROS_FROM_2000: i64 = 946_684_800_000_000;

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) as i32
}

/// `YYYY-MM-DD[ HH:MM:SS[.ffffff]]` → (days since the epoch, microseconds into the day).
fn parse_datetime(text: &str) -> Option<(i32, i64)> {
    let (date, time) = text.split_once([' ', 'T']).unwrap_or((text, ""));
    let mut parts = date.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    let mut micros = 0i64;
    if !time.is_empty() {
        let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
        let mut t = hms.splitn(3, ':');
        let h: i64 = t.next()?.parse().ok()?;
        let mi: i64 = t.next()?.parse().ok()?;
        let s: i64 = t.next().unwrap_or("0").parse().ok()?;
        let frac_us: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<6}")[..6].parse().ok()? };
        micros = ((h * 60 + mi) * 60 + s) * 1_000_000 + frac_us;
    }
    Some((days_from_civil(y, m, d), micros))
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// Any value, as the raw bytes of PostgreSQL's binary format.
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> tokio_postgres::types::FromSql<'a> for Raw<'a> {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(
        _: &tokio_postgres::types::Type,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}

fn pg_arrow_type(t: &tokio_postgres::types::Type) -> Option<DataType> {
    use tokio_postgres::types::Type as T;
    Some(match *t {
        T::BOOL => DataType::Boolean,
        T::INT2 => DataType::Int16,
        T::INT4 => DataType::Int32,
        T::INT8 | T::OID => DataType::Int64,
        T::FLOAT4 => DataType::Float32,
        T::FLOAT8 | T::NUMERIC => DataType::Float64,
        T::TEXT | T::VARCHAR | T::BPCHAR | T::NAME | T::UNKNOWN | T::JSON | T::JSONB | T::UUID => DataType::Utf8,
        T::BYTEA => DataType::Binary,
        T::DATE => DataType::Date32,
        T::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        T::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        _ if t.name() == "citext" => DataType::Utf8,
        _ => return None,
    })
}

/// PostgreSQL's binary NUMERIC: base-10000 digits with a weight and a sign.
fn pg_numeric(raw: &[u8]) -> Option<f64> {
    let word = |i: usize| raw.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let ndigits = word(0)? as usize;
    let weight = word(2)? as i16 as i32;
    let sign = word(4)?;
    if sign == 0xC000 {
        return Some(f64::NAN);
    }
    let mut value = 0.0;
    for i in 0..ndigits {
        let digit = word(8 + 2 * i)? as f64;
        value += digit * 10_000f64.powi(weight - i as i32);
    }
    Some(if sign == 0x4000 { -value } else { value })
}

fn pg_append(col: &mut Column, ty: &tokio_postgres::types::Type, raw: Option<&[u8]>) -> Option<()> {
    use tokio_postgres::types::Type as T;
    let Some(b) = raw else {
        col.null();
        return Some(());
    };
    match col {
        Column::Bool(c) => c.append_value(*b.first()? != 0),
        Column::I16(c) => c.append_value(i16::from_be_bytes(b.try_into().ok()?)),
        Column::I32(c) => c.append_value(i32::from_be_bytes(b.try_into().ok()?)),
        Column::I64(c) if *ty == T::OID => c.append_value(u32::from_be_bytes(b.try_into().ok()?) as i64),
        Column::I64(c) => c.append_value(i64::from_be_bytes(b.try_into().ok()?)),
        Column::F32(c) => c.append_value(f32::from_be_bytes(b.try_into().ok()?)),
        Column::F64(c) if *ty == T::NUMERIC => c.append_value(pg_numeric(b)?),
        Column::F64(c) => c.append_value(f64::from_be_bytes(b.try_into().ok()?)),
        Column::Text(c) if *ty == T::UUID => {
            let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
            c.append_value(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]));
        }
        Column::Text(c) if *ty == T::JSONB => c.append_value(std::str::from_utf8(b.get(1..)?).ok()?),
        Column::Text(c) => c.append_value(std::str::from_utf8(b).ok()?),
        Column::Bytes(c) => c.append_value(b),
        Column::Date(c) => c.append_value(i32::from_be_bytes(b.try_into().ok()?) + UNIX_EPOCH_DAYS_FROM_2000),
        Column::Timestamp(c, _) => c.append_value(i64::from_be_bytes(b.try_into().ok()?) + UNIX_EPOCH_MICROS_FROM_2000),
    }
    Some(())
}

fn pg_param(
    ty: &tokio_postgres::types::Type,
    value: &str,
    index: usize,
) -> Result<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> {
    use tokio_postgres::types::Type as T;
    let bad = |what: &str| {
        EngineError::Invalid(format!("`params[{index}]` = `{value}`: parameter ${} needs {what}", index + 1))
    };
    Ok(match *ty {
        T::BOOL => Box::new(value.parse::<bool>().map_err(|_| bad("true or false"))?),
        T::INT2 => Box::new(value.parse::<i16>().map_err(|_| bad("a 16-bit integer"))?),
        T::INT4 => Box::new(value.parse::<i32>().map_err(|_| bad("a 32-bit integer"))?),
        T::INT8 => Box::new(value.parse::<i64>().map_err(|_| bad("an integer"))?),
        T::FLOAT4 => Box::new(value.parse::<f32>().map_err(|_| bad("a number"))?),
        T::FLOAT8 => Box::new(value.parse::<f64>().map_err(|_| bad("a number"))?),
        T::TEXT | T::VARCHAR | T::BPCHAR | T::NAME | T::UNKNOWN => Box::new(value.to_string()),
        _ => {
            return Err(EngineError::Invalid(format!(
                "parameter ${} has type `{ty}`; pass it as text and cast it in the query (`${}::text::{ty}`)",
                index + 1,
                index + 1
            )));
        }
    })
}

async fn postgres(
    url: &str,
    sql: &str,
    params: &[String],
    batch_rows: usize,
    sink: &mut (dyn FnMut(Chunk) -> Result<()> + Send),
) -> Result<()> {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.map_err(|e| pg_error(url, e))?;
    let driver = tokio::spawn(connection);
    let statement = client.prepare(sql).await.map_err(|e| pg_error(url, e))?;
    if statement.params().len() != params.len() {
        return Err(db_error(
            url,
            format!("the query has {} placeholders but `params` gives {}", statement.params().len(), params.len()),
        ));
    }
    let values: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = statement
        .params()
        .iter()
        .zip(params)
        .enumerate()
        .map(|(i, (t, v))| pg_param(t, v, i))
        .collect::<Result<_>>()?;
    let mut fields = Vec::new();
    for c in statement.columns() {
        let t = pg_arrow_type(c.type_()).ok_or_else(|| {
            db_error(
                url,
                format!(
                    "column `{}` has type `{}`, which sluice cannot read; cast it in the query (`{}::text`)",
                    c.name(),
                    c.type_(),
                    c.name()
                ),
            )
        })?;
        fields.push(Field::new(c.name(), t, true));
    }
    let schema = Arc::new(Schema::new(fields));
    sink(Chunk::Schema(schema.clone()))?;
    let types: Vec<tokio_postgres::types::Type> = statement.columns().iter().map(|c| c.type_().clone()).collect();
    let rows = client
        .query_raw(&statement, values.iter().map(|v| v.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync)))
        .await
        .map_err(|e| pg_error(url, e))?;
    let mut rows = std::pin::pin!(rows);
    let mut batch = Batcher::new(schema, batch_rows);
    while let Some(row) = rows.next().await {
        let row = row.map_err(|e| pg_error(url, e))?;
        for (i, (col, ty)) in batch.columns.iter_mut().zip(&types).enumerate() {
            let raw: Raw = row.try_get(i).map_err(|e| pg_error(url, e))?;
            pg_append(col, ty, raw.0).ok_or_else(|| db_error(url, format!("cannot decode a `{ty}` value")))?;
        }
        batch.row_done(sink)?;
    }
    batch.flush(sink)?;
    drop(client);
    let _ = driver.await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// MySQL / MariaDB

fn mysql_arrow_type(c: &mysql_async::Column) -> DataType {
    use mysql_async::consts::ColumnType as T;
    match c.column_type() {
        T::MYSQL_TYPE_TINY
        | T::MYSQL_TYPE_SHORT
        | T::MYSQL_TYPE_LONG
        | T::MYSQL_TYPE_INT24
        | T::MYSQL_TYPE_LONGLONG
        | T::MYSQL_TYPE_YEAR
        | T::MYSQL_TYPE_BIT => DataType::Int64,
        T::MYSQL_TYPE_FLOAT | T::MYSQL_TYPE_DOUBLE | T::MYSQL_TYPE_DECIMAL | T::MYSQL_TYPE_NEWDECIMAL => {
            DataType::Float64
        }
        T::MYSQL_TYPE_DATE | T::MYSQL_TYPE_NEWDATE => DataType::Date32,
        T::MYSQL_TYPE_DATETIME | T::MYSQL_TYPE_TIMESTAMP | T::MYSQL_TYPE_DATETIME2 | T::MYSQL_TYPE_TIMESTAMP2 => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
        // 63 is the `binary` character set: bytes, not text.
        T::MYSQL_TYPE_BLOB
        | T::MYSQL_TYPE_TINY_BLOB
        | T::MYSQL_TYPE_MEDIUM_BLOB
        | T::MYSQL_TYPE_LONG_BLOB
        | T::MYSQL_TYPE_VAR_STRING
        | T::MYSQL_TYPE_STRING
        | T::MYSQL_TYPE_VARCHAR
            if c.character_set() == 63 =>
        {
            DataType::Binary
        }
        _ => DataType::Utf8,
    }
}

fn mysql_append(col: &mut Column, value: &mysql_async::Value) -> Option<()> {
    use mysql_async::Value as V;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match (col, value) {
        (c, V::NULL) => c.null(),
        (Column::I64(c), V::Int(x)) => c.append_value(*x),
        (Column::I64(c), V::UInt(x)) => c.append_value(i64::try_from(*x).ok()?),
        (Column::I64(c), V::Bytes(b)) => {
            let s = text(b);
            // BIT(n) arrives as big-endian bytes in the text protocol.
            c.append_value(match s.parse::<i64>() {
                Ok(v) => v,
                Err(_) => b.iter().fold(0i64, |acc, x| (acc << 8) | *x as i64),
            })
        }
        (Column::F64(c), V::Double(x)) => c.append_value(*x),
        (Column::F64(c), V::Float(x)) => c.append_value(*x as f64),
        (Column::F64(c), V::Int(x)) => c.append_value(*x as f64),
        (Column::F64(c), V::UInt(x)) => c.append_value(*x as f64),
        (Column::F64(c), V::Bytes(b)) => c.append_value(text(b).parse().ok()?),
        (Column::Date(c), V::Date(y, m, d, ..)) => c.append_value(days_from_civil(*y as i64, *m as u32, *d as u32)),
        (Column::Date(c), V::Bytes(b)) => c.append_value(parse_datetime(&text(b))?.0),
        (Column::Timestamp(c, _), V::Date(y, m, d, h, mi, s, us)) => {
            let days = days_from_civil(*y as i64, *m as u32, *d as u32) as i64;
            c.append_value(
                days * 86_400_000_000 + ((*h as i64 * 60 + *mi as i64) * 60 + *s as i64) * 1_000_000 + *us as i64,
            )
        }
        (Column::Timestamp(c, _), V::Bytes(b)) => {
            let (days, micros) = parse_datetime(&text(b))?;
            c.append_value(days as i64 * 86_400_000_000 + micros)
        }
        (Column::Bytes(c), V::Bytes(b)) => c.append_value(b),
        (Column::Text(c), V::Bytes(b)) => c.append_value(text(b)),
        (Column::Text(c), other) => c.append_value(other.as_sql(true).trim_matches('\'')),
        _ => return None,
    }
    Some(())
}

async fn mysql_rows<P: mysql_async::prelude::Protocol>(
    mut result: mysql_async::QueryResult<'_, '_, P>,
    url: &str,
    batch_rows: usize,
    sink: &mut (dyn FnMut(Chunk) -> Result<()> + Send),
) -> Result<()> {
    let columns = result.columns().unwrap_or_else(|| Arc::from(Vec::new()));
    let schema = Arc::new(Schema::new(
        columns.iter().map(|c| Field::new(c.name_str(), mysql_arrow_type(c), true)).collect::<Vec<_>>(),
    ));
    sink(Chunk::Schema(schema.clone()))?;
    let mut batch = Batcher::new(schema.clone(), batch_rows);
    while let Some(row) = result.next().await.map_err(|e| db_error(url, e))? {
        for (i, col) in batch.columns.iter_mut().enumerate() {
            let value = row.as_ref(i).unwrap_or(&mysql_async::Value::NULL);
            mysql_append(col, value).ok_or_else(|| {
                let f = schema.field(i);
                db_error(url, format!("column `{}`: cannot read {value:?} as {}", f.name(), f.data_type()))
            })?;
        }
        batch.row_done(sink)?;
    }
    batch.flush(sink)
}

async fn mysql(
    url: &str,
    sql: &str,
    params: &[String],
    batch_rows: usize,
    sink: &mut (dyn FnMut(Chunk) -> Result<()> + Send),
) -> Result<()> {
    use mysql_async::prelude::Queryable;
    let opts = mysql_async::Opts::from_url(url).map_err(|e| db_error(url, e))?;
    let mut conn = mysql_async::Conn::new(opts).await.map_err(|e| db_error(url, e))?;
    // The binary protocol needs a prepared statement; without parameters the text protocol is
    // one round trip.
    let result = if params.is_empty() {
        match conn.query_iter(sql).await {
            Ok(rows) => mysql_rows(rows, url, batch_rows, sink).await,
            Err(e) => Err(db_error(url, e)),
        }
    } else {
        let values: Vec<mysql_async::Value> = params.iter().map(|p| mysql_async::Value::from(p.as_str())).collect();
        match conn.exec_iter(sql, mysql_async::Params::Positional(values)).await {
            Ok(rows) => mysql_rows(rows, url, batch_rows, sink).await,
            Err(e) => Err(db_error(url, e)),
        }
    };
    let _ = conn.disconnect().await;
    result
}

// ---------------------------------------------------------------------------------------------
// SQLite

/// The Arrow type for a declared SQLite column type, by SQLite's affinity rules.
fn sqlite_declared(decl: &str) -> DataType {
    let d = decl.to_ascii_uppercase();
    if d.contains("INT") {
        DataType::Int64
    } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
        DataType::Utf8
    } else if d.contains("BLOB") {
        DataType::Binary
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        DataType::Float64
    } else if d.contains("BOOL") {
        DataType::Boolean
    } else if d.contains("DATETIME") || d.contains("TIMESTAMP") {
        DataType::Timestamp(TimeUnit::Microsecond, None)
    } else if d.contains("DATE") {
        DataType::Date32
    } else {
        DataType::Float64
    }
}

fn sqlite_append(col: &mut Column, value: rusqlite::types::ValueRef<'_>) -> Option<()> {
    use rusqlite::types::ValueRef as V;
    match (col, value) {
        (c, V::Null) => c.null(),
        (Column::I64(c), V::Integer(x)) => c.append_value(x),
        (Column::F64(c), V::Real(x)) => c.append_value(x),
        (Column::F64(c), V::Integer(x)) => c.append_value(x as f64),
        (Column::Bool(c), V::Integer(x)) => c.append_value(x != 0),
        (Column::Text(c), V::Text(t)) => c.append_value(String::from_utf8_lossy(t)),
        (Column::Text(c), V::Integer(x)) => c.append_value(x.to_string()),
        (Column::Text(c), V::Real(x)) => c.append_value(x.to_string()),
        (Column::Bytes(c), V::Blob(b)) => c.append_value(b),
        (Column::Bytes(c), V::Text(t)) => c.append_value(t),
        (Column::Date(c), V::Text(t)) => c.append_value(parse_datetime(std::str::from_utf8(t).ok()?)?.0),
        (Column::Timestamp(c, _), V::Text(t)) => {
            let (days, micros) = parse_datetime(std::str::from_utf8(t).ok()?)?;
            c.append_value(days as i64 * 86_400_000_000 + micros)
        }
        (Column::Timestamp(c, _), V::Integer(secs)) => c.append_value(secs * 1_000_000),
        _ => return None,
    }
    Some(())
}

fn sqlite_blocking(
    path: &Path,
    sql: &str,
    params: &[String],
    batch_rows: usize,
    tx: &tokio::sync::mpsc::Sender<Result<Chunk>>,
) -> Result<()> {
    let name = path.display().to_string();
    if !path.exists() {
        return Err(EngineError::Invalid(format!("database `sqlite://{name}`: no such file")));
    }
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(path, flags).map_err(|e| db_error(&name, e))?;
    let mut stmt = conn.prepare(sql).map_err(|e| db_error(&name, e))?;
    let declared: Vec<Option<DataType>> = stmt.columns().map(|c| c.decl_type().map(sqlite_declared)).collect();
    let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
    let mut rows = stmt.query(rusqlite::params_from_iter(params.iter())).map_err(|e| db_error(&name, e))?;
    // Expressions have no declared type: the first row's values decide (text when null).
    let first = rows.next().map_err(|e| db_error(&name, e))?;
    let types: Vec<DataType> = declared
        .iter()
        .enumerate()
        .map(|(i, d)| match (d, first) {
            (Some(t), _) => t.clone(),
            (None, Some(row)) => match row.get_ref(i) {
                Ok(rusqlite::types::ValueRef::Integer(_)) => DataType::Int64,
                Ok(rusqlite::types::ValueRef::Real(_)) => DataType::Float64,
                Ok(rusqlite::types::ValueRef::Blob(_)) => DataType::Binary,
                _ => DataType::Utf8,
            },
            (None, None) => DataType::Utf8,
        })
        .collect();
    let schema = Arc::new(Schema::new(
        names.iter().zip(&types).map(|(n, t)| Field::new(n, t.clone(), true)).collect::<Vec<_>>(),
    ));
    let send = |chunk: Chunk| -> Result<()> {
        tx.blocking_send(Ok(chunk)).map_err(|_| EngineError::Invalid("the reader stopped".into()))
    };
    send(Chunk::Schema(schema.clone()))?;
    let mut batch = Batcher::new(schema.clone(), batch_rows);
    let mut sink = |chunk: Chunk| send(chunk);
    let append = |batch: &mut Batcher, row: &rusqlite::Row<'_>, number: usize| -> Result<()> {
        for (i, col) in batch.columns.iter_mut().enumerate() {
            let value = row.get_ref(i).map_err(|e| db_error(&name, e))?;
            sqlite_append(col, value).ok_or_else(|| {
                db_error(
                    &name,
                    format!(
                        "row {number}, column `{}`: a {:?} value in a {} column; cast it in the query",
                        names[i],
                        value.data_type(),
                        types[i]
                    ),
                )
            })?;
        }
        Ok(())
    };
    if let Some(row) = first {
        append(&mut batch, row, 1)?;
        batch.row_done(&mut sink)?;
    }
    let mut number = 1;
    while let Some(row) = rows.next().map_err(|e| db_error(&name, e))? {
        number += 1;
        append(&mut batch, row, number)?;
        batch.row_done(&mut sink)?;
    }
    batch.flush(&mut sink)?;
    Ok(())
}

async fn sqlite(
    path: &Path,
    sql: &str,
    params: &[String],
    batch_rows: usize,
    sink: &mut (dyn FnMut(Chunk) -> Result<()> + Send),
) -> Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Chunk>>(4);
    let (path, sql, params) = (path.to_path_buf(), sql.to_string(), params.to_vec());
    let reader = tokio::task::spawn_blocking(move || {
        if let Err(e) = sqlite_blocking(&path, &sql, &params, batch_rows, &tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    while let Some(chunk) = rx.recv().await {
        sink(chunk?)?;
    }
    reader.await.map_err(|e| EngineError::Invalid(format!("SQLite reader failed: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_numerics_and_env() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 1, 1), UNIX_EPOCH_DAYS_FROM_2000);
        assert_eq!(days_from_civil(2013, 3, 1), 15_765);
        assert_eq!(
            parse_datetime("2013-01-01 05:17:30.5"),
            Some((15_706, (5 * 3600 + 17 * 60 + 30) * 1_000_000 + 500_000))
        );
        // 12345.678 = digits [1, 2345, 6780], weight 1, dscale 3.
        let raw: Vec<u8> = [3u16, 1, 0, 3, 1, 2345, 6780].iter().flat_map(|w| w.to_be_bytes()).collect();
        assert!((pg_numeric(&raw).unwrap() - 12345.678).abs() < 1e-9);
        let neg: Vec<u8> = [1u16, 0xFFFF, 0x4000, 2, 5000].iter().flat_map(|w| w.to_be_bytes()).collect();
        assert!((pg_numeric(&neg).unwrap() + 0.5).abs() < 1e-12);
        assert_eq!(masked("postgres://ana:secret@db:5432/x"), "postgres://ana:***@db:5432/x");
        assert!(
            interpolate_env("x${SLUICE_SURELY_UNSET_VAR}").unwrap_err().to_string().contains("SLUICE_SURELY_UNSET_VAR")
        );
    }
}
