//! Spec errors: every one names where in the YAML (or which `--set`) it comes from.

use std::fmt;

/// A position in the spec file, or in one `--set` assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    File {
        file: String,
        line: usize,
        column: usize,
    },
    Override {
        assignment: String,
    },
    /// The whole file (e.g. a missing top-level key).
    Whole {
        file: String,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File { file, line, column } => write!(f, "{file}:{line}:{column}"),
            Location::Override { assignment } => write!(f, "--set {assignment}"),
            Location::Whole { file } => write!(f, "{file}"),
        }
    }
}

/// " (did you mean `x`?)" when a close candidate exists, else nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Suggestion(pub Option<String>);

impl Suggestion {
    /// The closest candidate by edit distance, if it is close enough to be a likely typo.
    pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        let best = candidates
            .into_iter()
            .map(|c| (strsim::damerau_levenshtein(word, c), c))
            .filter(|(d, c)| *d <= 2.max(c.len() / 3))
            .min_by_key(|(d, _)| *d);
        Suggestion(best.map(|(_, c)| c.to_string()))
    }
}

impl fmt::Display for Suggestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(s) => write!(f, " (did you mean `{s}`?)"),
            None => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read pipeline spec `{path}`")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{location}: invalid YAML: {message}")]
    Yaml { location: Location, message: String },
    #[error("{location}: {context}: unknown key `{key}`{suggestion}; expected one of {expected}")]
    UnknownKey { location: Location, context: String, key: String, suggestion: Suggestion, expected: String },
    #[error("{location}: {context}: {message}")]
    Invalid { location: Location, context: String, message: String },
    #[error("{location}: step `{step}` reads `{reference}`, which is not a source or step{suggestion}")]
    UnknownInput { location: Location, step: String, reference: String, suggestion: Suggestion },
    #[error(
        "{location}: step `{step}` reads `{reference}`, but `{target}` has no output `{output}` (its outputs: {outputs})"
    )]
    UnknownOutput {
        location: Location,
        step: String,
        reference: String,
        target: String,
        output: String,
        outputs: String,
    },
    #[error("{location}: duplicate name `{name}` (first defined at {first})")]
    Duplicate { location: Location, name: String, first: Location },
    #[error("{location}: steps form a cycle: {cycle}")]
    Cycle { location: Location, cycle: String },
    #[error("{location}: source `{step}`: no file matches `{pattern}` (looked in `{base}`)")]
    MissingFile { location: Location, step: String, pattern: String, base: String },
    #[error("--set {assignment}: {message}")]
    Override { assignment: String, message: String },
}

impl SpecError {
    /// Whether the problem comes from a `--set` assignment rather than the spec file.
    pub fn from_command_line(&self) -> bool {
        let location = match self {
            SpecError::Override { .. } => return true,
            SpecError::Read { .. } => return false,
            SpecError::Yaml { location, .. }
            | SpecError::UnknownKey { location, .. }
            | SpecError::Invalid { location, .. }
            | SpecError::UnknownInput { location, .. }
            | SpecError::UnknownOutput { location, .. }
            | SpecError::Duplicate { location, .. }
            | SpecError::Cycle { location, .. }
            | SpecError::MissingFile { location, .. } => location,
        };
        matches!(location, Location::Override { .. })
    }
}

/// All the problems found in one spec, reported together so the user fixes them in one pass.
#[derive(Debug)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        if n == 1 {
            return write!(f, "invalid pipeline spec: {}", self.0[0]);
        }
        write!(f, "invalid pipeline spec ({n} problems):")?;
        for e in &self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl From<SpecError> for SpecErrors {
    fn from(e: SpecError) -> Self {
        SpecErrors(vec![e])
    }
}

pub type Result<T, E = SpecErrors> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(Suggestion::closest("qeury", ["query", "inputs"]).0.as_deref(), Some("query"));
        assert_eq!(Suggestion::closest("zzzzzz", ["query", "inputs"]).0, None);
    }
}
