//! The pipeline spec: YAML in, a validated [`Pipeline`] out.
//!
//! Only this crate sees the raw YAML shape. It reads the file with positions, applies
//! `--set step.key=value` overrides, and checks everything that can be checked before a run:
//! unknown keys (with "did you mean"), wrong types, unknown or mistyped references, duplicate
//! names, cycles and missing files. Every error names the step and the line and column.
//! [`json_schema`] describes the same types for editors.
//!
//! ```
//! let yaml = "name: demo\nsources:\n  raw: {path: lib.rs, format: csv, header: true}\n";
//! let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
//! let p = sluice_spec::parse(yaml, "demo.yaml", &dir, &[]).unwrap();
//! assert_eq!(p.steps[0].name, "raw");
//! ```

// Spec errors carry positions and suggestions; they are built once per bad spec, never on a hot
// path, so their size does not matter.
#![allow(clippy::result_large_err)]

pub mod alert;
mod error;
pub mod gate;
pub mod kinds;
mod parse;
mod pipeline;
mod schema;

pub use error::{Location, Result, SpecError, SpecErrors, Suggestion};
pub use parse::{infer_format, load, parse, parse_expectations};
pub use pipeline::{EngineUrl, Input, KINDS, OutputRef, OutputType, Pipeline, SOURCE_KINDS, Step, StepConfig};
pub use schema::json_schema;
