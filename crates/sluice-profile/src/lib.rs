//! Dataset profiles: per-column statistics computed in one streaming pass over Arrow record
//! batches and **mergeable** — profiles of partitions (or of hourly windows) add up to the
//! profile of the whole, so drift monitoring and distributed execution never need a second pass.
//!
//! Each column keeps small sketches whose state is stored in the profile artifact next to the
//! human-readable summary computed from them:
//! - [`Moments`]: count, mean and sum of squared deviations (Chan et al.'s parallel update),
//!   min and max — exact.
//! - [`Hll`]: HyperLogLog distinct-count estimate (4,096 registers, ~1.6% standard error).
//! - [`Kll`]: KLL quantile sketch (exact up to a few hundred values, then ~1% rank error);
//!   quantiles and the numeric histogram come from it.
//! - [`FrequentItems`]: exact value counts for up to 2,048 distinct values, then Misra–Gries
//!   (every value more frequent than 1/1,024 of the rows is kept, counts are lower bounds).
//!
//! No DataFusion, no I/O: the server (live drift sketches) and executors use the same code.

pub mod drift;
mod freq;
mod hll;
mod kll;
mod moments;
mod profile;
mod window;

pub use freq::FrequentItems;
pub use hll::Hll;
pub use kll::Kll;
pub use moments::Moments;
pub use profile::{
    ColumnKind, ColumnProfile, ColumnState, Frequency, Histogram, NumericSummary, Profile, ProfileError, Profiler,
    QUANTILES, Quantile, profile_batches,
};
pub use window::{Window, WindowStart, WindowedProfiler, window_starts};
