//! Profiles per window: by a time column (hour, day, week, any number of seconds) or by every
//! `n` rows, in the same one pass. Each window's profile is an ordinary, mergeable profile, so a
//! day's windows add up to the day's profile and drift can be read per window to see when it
//! started.

use std::collections::BTreeMap;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;

pub use sluice_core::Window;

use crate::profile::{ColumnKind, Profile, ProfileError, Profiler, to_f64};

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
    /// Their profile, so that the whole data's profile can be had by merging.
    untimed_profile: Option<Profiler>,
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
        Ok(Self { schema, time, window, rows_seen: 0, windows: BTreeMap::new(), untimed: 0, untimed_profile: None })
    }

    pub fn update(&mut self, batch: &RecordBatch) -> Result<(), ProfileError> {
        let n = batch.num_rows();
        let keys =
            window_starts(self.window, self.rows_seen, n, self.time.map(|t| batch.column(t))).map_err(|message| {
                ProfileError::Column {
                    column: self.time.map(|t| self.schema.field(t).name().clone()).unwrap_or_default(),
                    message,
                }
            })?;
        self.rows_seen += n as u64;
        let mut rows: BTreeMap<Option<WindowStart>, Vec<u32>> = BTreeMap::new();
        for (i, k) in keys.into_iter().enumerate() {
            rows.entry(k).or_default().push(i as u32);
        }
        for (key, indices) in rows {
            let part = if indices.len() == n {
                batch.clone()
            } else {
                take_record_batch(batch, &UInt32Array::from(indices))
                    .map_err(|e| ProfileError::Mismatch(format!("cannot split a batch into windows: {e}")))?
            };
            let profiler = match key {
                Some(k) => self.windows.entry(k).or_insert_with(|| Profiler::new(self.schema.clone())),
                None => {
                    self.untimed += part.num_rows() as u64;
                    self.untimed_profile.get_or_insert_with(|| Profiler::new(self.schema.clone()))
                }
            };
            profiler.update(&part)?;
        }
        Ok(())
    }

    /// Each window's start and profile, in time (or row) order.
    pub fn finish(self) -> Vec<(WindowStart, Profile)> {
        self.finish_with_whole().0
    }

    /// The windows' profiles and the whole data's (the windows and the rows without a time,
    /// merged: no second pass).
    pub fn finish_with_whole(self) -> (Vec<(WindowStart, Profile)>, Profile) {
        let mut whole = Profiler::new(self.schema.clone()).finish();
        let windows: Vec<(WindowStart, Profile)> = self.windows.into_iter().map(|(k, p)| (k, p.finish())).collect();
        let parts = windows.iter().map(|(_, p)| p.clone()).chain(self.untimed_profile.map(Profiler::finish));
        for p in parts {
            // Same schema on both sides: merging cannot fail.
            let _ = whole.merge(&p);
        }
        (windows, whole)
    }
}

/// The window each of `rows` rows falls in: by position after `rows_seen` earlier rows, or by the
/// time column (seconds since the epoch, floored to the window's width; `None` where the time
/// is missing). Profiles and the monitor's ground-truth join use the same windows.
pub fn window_starts(
    window: Window,
    rows_seen: u64,
    rows: usize,
    time: Option<&arrow::array::ArrayRef>,
) -> Result<Vec<Option<WindowStart>>, String> {
    match (window, time) {
        (Window::Rows(size), _) => {
            Ok((0..rows as u64).map(|i| Some((((rows_seen + i) / size) * size) as WindowStart)).collect())
        }
        (Window::Seconds(width), Some(column)) => {
            let seconds = to_f64(column, ColumnKind::of(column.data_type()))?;
            Ok(seconds
                .iter()
                .map(|s| s.filter(|s| s.is_finite()).map(|s| ((s / width).floor() * width) as WindowStart))
                .collect())
        }
        (Window::Seconds(_), None) => Err("windows of time need a time column".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn windows_and_their_merge_cover_every_row() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Int64, true),
            Field::new("x", DataType::Float64, false),
        ]));
        // 10 rows over two hours; one row has no time.
        let ts: Vec<Option<i64>> = (0..10).map(|i| if i == 4 { None } else { Some(i * 720) }).collect();
        let x: Vec<f64> = (0..10).map(f64::from).collect();
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(ts)), Arc::new(Float64Array::from(x))])
                .unwrap();
        let mut p = WindowedProfiler::new(schema.clone(), Some("ts"), Window::Seconds(3600.0)).unwrap();
        p.update(&batch).unwrap();
        assert_eq!(p.untimed, 1);
        let (windows, whole) = p.finish_with_whole();
        assert_eq!(windows.iter().map(|(s, w)| (*s, w.rows)).collect::<Vec<_>>(), vec![(0, 4), (3600, 5)]);
        let direct = crate::profile_batches(schema, &[batch]).unwrap();
        assert_eq!(whole.rows, 10);
        let (a, b) = (whole.column("x").unwrap(), direct.column("x").unwrap());
        assert_eq!((a.count, a.numeric.as_ref().map(|n| n.mean)), (b.count, b.numeric.as_ref().map(|n| n.mean)));
    }
}
