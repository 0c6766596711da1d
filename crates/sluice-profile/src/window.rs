//! Profiles per window: by a time column (hour, day, week, any number of seconds) or by every
//! `n` rows, in the same one pass. Each window's profile is an ordinary, mergeable profile, so a
//! day's windows add up to the day's profile and drift can be read per window to see when it
//! started.

use std::collections::BTreeMap;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;

use crate::profile::{ColumnKind, Profile, ProfileError, Profiler, to_f64};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Window {
    /// Windows of this many seconds of the time column, aligned to the Unix epoch (UTC).
    Seconds(f64),
    /// Every `n` rows, in order.
    Rows(u64),
}

impl Window {
    /// `hour`, `day`, `week`, `30m`, `6h`, `2d`, or `10000rows`.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        if let Some(n) = t.strip_suffix("rows") {
            return n.trim().parse().ok().filter(|n| *n > 0).map(Window::Rows);
        }
        let seconds = match t {
            "hour" => 3600.0,
            "day" => 86_400.0,
            "week" => 604_800.0,
            _ => {
                let unit = match t.chars().last()? {
                    's' => 1.0,
                    'm' => 60.0,
                    'h' => 3600.0,
                    'd' => 86_400.0,
                    'w' => 604_800.0,
                    _ => return None,
                };
                t[..t.len() - 1].trim().parse::<f64>().ok().filter(|n| *n > 0.0)? * unit
            }
        };
        Some(Window::Seconds(seconds))
    }
}

/// A window's key: its start (seconds since the epoch, or the first row's index).
pub type WindowStart = i64;

pub struct WindowedProfiler {
    schema: SchemaRef,
    time: Option<usize>,
    window: Window,
    rows_seen: u64,
    windows: BTreeMap<WindowStart, Profiler>,
    /// Rows whose time was missing (not in any window).
    pub untimed: u64,
}

impl WindowedProfiler {
    /// `time`: the column windows by seconds are cut on (a date, a timestamp or a number of
    /// seconds); not needed for windows of rows.
    pub fn new(schema: SchemaRef, time: Option<&str>, window: Window) -> Result<Self, ProfileError> {
        let time = match (time, window) {
            (Some(name), _) => {
                let i = schema.index_of(name).map_err(|_| {
                    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                    ProfileError::Column {
                        column: name.into(),
                        message: format!("no such column (columns: {})", names.join(", ")),
                    }
                })?;
                let kind = ColumnKind::of(schema.field(i).data_type());
                if !matches!(kind, ColumnKind::Temporal | ColumnKind::Numeric) {
                    return Err(ProfileError::Column {
                        column: name.into(),
                        message: format!(
                            "windows need a date, timestamp or number, not {}",
                            schema.field(i).data_type()
                        ),
                    });
                }
                Some(i)
            }
            (None, Window::Seconds(_)) => {
                return Err(ProfileError::Mismatch("windows of time need a time column".into()));
            }
            (None, Window::Rows(_)) => None,
        };
        Ok(Self { schema, time, window, rows_seen: 0, windows: BTreeMap::new(), untimed: 0 })
    }

    pub fn update(&mut self, batch: &RecordBatch) -> Result<(), ProfileError> {
        let n = batch.num_rows();
        let keys: Vec<Option<WindowStart>> = match (self.window, self.time) {
            (Window::Rows(size), _) => {
                (0..n as u64).map(|i| Some((((self.rows_seen + i) / size) * size) as WindowStart)).collect()
            }
            (Window::Seconds(width), Some(t)) => {
                let column = batch.column(t);
                let kind = ColumnKind::of(column.data_type());
                let seconds = to_f64(column, kind)
                    .map_err(|message| ProfileError::Column { column: self.schema.field(t).name().clone(), message })?;
                seconds
                    .iter()
                    .map(|s| s.filter(|s| s.is_finite()).map(|s| ((s / width).floor() * width) as WindowStart))
                    .collect()
            }
            (Window::Seconds(_), None) => unreachable!("checked in new"),
        };
        self.rows_seen += n as u64;
        let mut rows: BTreeMap<WindowStart, Vec<u32>> = BTreeMap::new();
        for (i, k) in keys.into_iter().enumerate() {
            match k {
                Some(k) => rows.entry(k).or_default().push(i as u32),
                None => self.untimed += 1,
            }
        }
        for (key, indices) in rows {
            let part = if indices.len() == n {
                batch.clone()
            } else {
                take_record_batch(batch, &UInt32Array::from(indices))
                    .map_err(|e| ProfileError::Mismatch(format!("cannot split a batch into windows: {e}")))?
            };
            self.windows.entry(key).or_insert_with(|| Profiler::new(self.schema.clone())).update(&part)?;
        }
        Ok(())
    }

    /// Each window's start and profile, in time (or row) order.
    pub fn finish(self) -> Vec<(WindowStart, Profile)> {
        self.windows.into_iter().map(|(k, p)| (k, p.finish())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse() {
        assert_eq!(Window::parse("day"), Some(Window::Seconds(86_400.0)));
        assert_eq!(Window::parse("6h"), Some(Window::Seconds(21_600.0)));
        assert_eq!(Window::parse("5000rows"), Some(Window::Rows(5000)));
        assert_eq!(Window::parse("0rows"), None);
        assert_eq!(Window::parse("fortnight"), None);
    }
}
