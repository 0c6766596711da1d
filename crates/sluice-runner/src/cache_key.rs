//! Cache keys: what decides whether a step's previous outputs can be reused.

use sluice_core::{ContentHash, ENGINE_VERSION, Hasher};
use sluice_spec::Step;
use sluice_store::KeyInput;

/// Bump a kind's number when its outputs change for the same config and inputs (a bug fix, a
/// new default behaviour): every cached result of that kind is then recomputed, and no other.
pub fn semantics_version(kind: &str) -> u32 {
    match kind {
        "source" | "sql" | "split" | "train" | "evaluate" | "register" => 1,
        _ => 0,
    }
}

/// `hash(engine version, kind, kind's semantics version, resolved config, inputs' hashes)`.
pub fn cache_key(step: &Step, inputs: &[KeyInput]) -> ContentHash {
    let mut h = Hasher::new();
    h.field("sluice cache key v1").field(ENGINE_VERSION).field(step.kind());
    h.field(semantics_version(step.kind()).to_le_bytes());
    h.field(step.config.to_json().to_string());
    for i in inputs {
        h.field(&i.name).field(i.hash.as_bytes());
    }
    h.finish()
}
