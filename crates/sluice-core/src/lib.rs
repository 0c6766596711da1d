//! Shared vocabulary of sluice: content hashes, artifact kinds and the engine version that enters
//! every cache key.
//!
//! Everything above this crate (spec, stores, engine, runner, CLI) speaks in these types, so they
//! carry no behaviour beyond hashing and formatting.
//!
//! ```
//! use sluice_core::ContentHash;
//! let h = ContentHash::of_bytes(b"hello");
//! assert_eq!(h.to_string().len(), 64);
//! assert_eq!(h.short().len(), 12);
//! ```

mod artifact;
pub mod fnv;
mod hash;
// The allocator wrapper and its thread-local: each `unsafe` block says why it holds.
#[allow(unsafe_code)]
pub mod memory;
pub mod rng;
mod units;

pub use artifact::{ArtifactKind, ArtifactMeta, ColumnMeta};
pub use hash::{ContentHash, HashError, Hasher};
pub use units::{Window, parse_duration};

/// The engine version that enters every cache key: results produced by one version of sluice are
/// never silently reused by another.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Whether a location is a URL (`s3://bucket/key`, `https://...`) rather than a local path.
pub fn is_url(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-')
    })
}
