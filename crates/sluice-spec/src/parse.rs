//! Raw YAML (with positions) → validated [`Pipeline`].
//!
//! Order of work: parse the YAML tree, apply `--set` overrides to the tree, read each source and
//! step into its kind's struct, then check names, references, types, cycles and files. Problems
//! are collected rather than returned one by one, so a user fixes a spec in one pass.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoaderOptions, Marker, Node, Span};

use crate::error::{Location, Result, SpecError, SpecErrors, Suggestion};
use crate::kinds::{
    Expectations, FileFormat, ForestParams, FtrlParams, GbdtMetric, GbdtObjective, GbdtParams, KmeansParams,
    LinearParams, LinearSolver, ModelKind, Policy, SourceStep, SplitMethod, TrainParams, TrainStep, ValidateStep,
};
use crate::pipeline::{Input, KINDS, OutputRef, OutputType, Pipeline, SOURCE_KINDS, Step, StepConfig};

const TOP_LEVEL_KEYS: &[&str] = &["name", "description", "engine", "sources", "steps"];

/// Where positions point: the spec file (source id 0) or the i-th `--set` (source id i + 1).
struct Origin<'a> {
    file: &'a str,
    overrides: &'a [String],
}

impl Origin<'_> {
    fn at(&self, marker: Option<&Marker>) -> Location {
        match marker {
            Some(m) if m.source() == 0 => {
                Location::File { file: self.file.to_string(), line: m.line(), column: m.column() }
            }
            Some(m) => {
                Location::Override { assignment: self.overrides.get(m.source() - 1).cloned().unwrap_or_default() }
            }
            None => Location::Whole { file: self.file.to_string() },
        }
    }

    fn span(&self, span: &Span) -> Location {
        self.at(span.start())
    }
}

/// Read and validate a spec file, applying `--set step.key=value` overrides.
pub fn load(path: &Path, overrides: &[String]) -> Result<Pipeline> {
    let text =
        std::fs::read_to_string(path).map_err(|source| SpecError::Read { path: path.display().to_string(), source })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
    let base = std::fs::canonicalize(&base).unwrap_or(base);
    parse(&text, &path.display().to_string(), &base, overrides).map(|mut p| {
        p.spec_path = path.to_path_buf();
        p
    })
}

/// Validate spec text; `file` names it in messages and `base_dir` anchors relative paths.
pub fn parse(text: &str, file: &str, base_dir: &Path, overrides: &[String]) -> Result<Pipeline> {
    let origin = Origin { file, overrides };
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    let mut root = marked_yaml::parse_yaml_with_options(0, text, options).map_err(|e| load_error(&origin, e))?;
    apply_overrides(&mut root, overrides)?;

    let Some(top) = root.as_mapping() else {
        return Err(SpecError::Yaml {
            location: origin.span(root.span()),
            message: "the spec must be a mapping with `name` and `steps`".into(),
        }
        .into());
    };

    let mut errors = Vec::new();
    for key in top.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            errors.push(unknown_key(&origin, key, "pipeline", TOP_LEVEL_KEYS));
        }
    }
    let name = match top.get_scalar("name") {
        Some(s) if !s.as_str().trim().is_empty() => s.as_str().to_string(),
        _ => {
            errors.push(SpecError::Invalid {
                location: origin.span(top.span()),
                context: "pipeline".into(),
                message: "missing `name` (a non-empty string)".into(),
            });
            String::new()
        }
    };
    let description = top.get_scalar("description").map(|s| s.as_str().to_string());
    let engine = top.get_node("engine").and_then(|node| {
        let parsed = node
            .as_scalar()
            .ok_or_else(|| "must be `local` or `ballista://HOST:PORT`".to_string())
            .and_then(|s| crate::pipeline::EngineUrl::parse(s.as_str()));
        parsed
            .map_err(|message| {
                errors.push(SpecError::Invalid {
                    location: origin.span(node.span()),
                    context: "`engine`".into(),
                    message,
                })
            })
            .ok()
    });

    let mut raw: Vec<(String, Location, StepConfig, &Node)> = Vec::new();
    let mut seen: HashMap<String, Location> = HashMap::new();
    // Names whose definitions could not be read: already reported, so references to them are not.
    let mut unreadable: HashSet<String> = HashSet::new();
    for (section, implied_kind) in [("sources", Some("source")), ("steps", None)] {
        let Some(node) = top.get_node(section) else { continue };
        let Some(map) = node.as_mapping() else {
            errors.push(SpecError::Invalid {
                location: origin.span(node.span()),
                context: format!("`{section}`"),
                message: "must be a mapping of names to definitions".into(),
            });
            continue;
        };
        for (key, def) in map.iter() {
            let name = key.as_str().to_string();
            let location = origin.span(key.span());
            if let Some(first) = seen.get(&name) {
                errors.push(SpecError::Duplicate { location, name, first: first.clone() });
                continue;
            }
            seen.insert(name.clone(), location.clone());
            if !valid_name(&name) {
                errors.push(SpecError::Invalid {
                    location,
                    context: format!("`{name}`"),
                    message: "names must be letters, digits, `_` or `-` (a `.` would read as `step.output`)".into(),
                });
                unreadable.insert(name);
                continue;
            }
            match read_step(&origin, &name, def, implied_kind) {
                Ok(config) => raw.push((name, location, config, def)),
                Err(e) => {
                    errors.push(e);
                    unreadable.insert(name);
                }
            }
        }
    }
    if top.get_node("steps").is_none() && top.get_node("sources").is_none() {
        errors.push(SpecError::Invalid {
            location: origin.span(top.span()),
            context: "pipeline".into(),
            message: "no `sources` or `steps`: nothing to run".into(),
        });
    }

    let outputs: HashMap<&str, Vec<(String, OutputType)>> =
        raw.iter().map(|(n, _, c, _)| (n.as_str(), c.outputs())).collect();
    let mut steps = Vec::new();
    for (name, location, config, def) in &raw {
        let mut config = config.clone();
        if let StepConfig::Validate(v) = &mut config
            && let Err(e) = merge_expectations_file(&origin, name, v, base_dir)
        {
            errors.push(e);
        }
        let config = &config;
        let mut inputs = Vec::new();
        for (role, reference, expected) in config.references() {
            match resolve(&origin, name, reference, &outputs) {
                Ok((_, ty)) if ty != expected => errors.push(SpecError::Invalid {
                    location: origin.span(reference.span()),
                    context: format!("step `{name}`"),
                    message: format!(
                        "`{role}` must be a {}, but `{}` is a {}",
                        expected.as_str(),
                        reference.as_str(),
                        ty.as_str()
                    ),
                }),
                Ok((target, _)) => inputs.push(Input { role, written: reference.to_string(), source: target }),
                Err(SpecError::UnknownInput { .. })
                    if unreadable.contains(reference.split_once('.').map_or(reference.as_str(), |(t, _)| t)) => {}
                Err(e) => errors.push(e),
            }
        }
        if let Err(e) = check_semantics(&origin, name, config, def) {
            errors.push(e);
        }
        let files = match config {
            StepConfig::Source(s) => match resolve_files(&origin, name, s, base_dir) {
                Ok(f) => f,
                Err(e) => {
                    errors.push(e);
                    Vec::new()
                }
            },
            _ => Vec::new(),
        };
        steps.push(Step { name: name.clone(), config: config.clone(), inputs, files, location: location.clone() });
    }
    if !errors.is_empty() {
        return Err(SpecErrors(errors));
    }
    let steps = topological_order(steps)?;
    Ok(Pipeline { name, description, engine, spec_path: PathBuf::from(file), base_dir: base_dir.to_path_buf(), steps })
}

fn load_error(origin: &Origin, e: marked_yaml::LoadError) -> SpecErrors {
    use marked_yaml::LoadError::*;
    let (marker, message) = match &e {
        TopLevelMustBeMapping(m) => (*m, "the spec must be a mapping with `name` and `steps`".into()),
        TopLevelMustBeSequence(m) => (*m, "expected a sequence".into()),
        UnexpectedAnchor(m) => (*m, "YAML anchors and aliases are not supported".into()),
        MappingKeyMustBeScalar(m) => (*m, "mapping keys must be plain strings".into()),
        UnexpectedTag(m) => (*m, "YAML tags are not supported".into()),
        ScanError(m, err) => (*m, err.to_string()),
        DuplicateKey(inner) => {
            return SpecError::Duplicate {
                location: origin.span(inner.key.span()),
                name: inner.key.as_str().to_string(),
                first: origin.span(inner.prev_key.span()),
            }
            .into();
        }
    };
    SpecError::Yaml { location: origin.at(Some(&marker)), message }.into()
}

fn unknown_key(origin: &Origin, key: &MarkedScalarNode, context: &str, expected: &[&str]) -> SpecError {
    SpecError::UnknownKey {
        location: origin.span(key.span()),
        context: context.to_string(),
        key: key.as_str().to_string(),
        suggestion: Suggestion::closest(key.as_str(), expected.iter().copied()),
        expected: expected.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
    }
}

fn read_step(origin: &Origin, name: &str, def: &Node, implied_kind: Option<&str>) -> Result<StepConfig, SpecError> {
    let context = match implied_kind {
        Some(_) => format!("source `{name}`"),
        None => format!("step `{name}`"),
    };
    let Some(map) = def.as_mapping() else {
        return Err(SpecError::Invalid {
            location: origin.span(def.span()),
            context,
            message: "must be a mapping of settings".into(),
        });
    };
    let mut body = map.clone();
    let kind_node = body.remove("kind");
    let kind = match (&kind_node, implied_kind) {
        (Some(Node::Scalar(k)), Some(_)) if !SOURCE_KINDS.contains(&k.as_str()) => {
            return Err(SpecError::Invalid {
                location: origin.span(k.span()),
                context,
                message: format!(
                    "entries under `sources` are of kind {}; move a `{}` step to `steps`",
                    SOURCE_KINDS.join(", "),
                    k.as_str()
                ),
            });
        }
        (Some(Node::Scalar(k)), _) => k.as_str().to_string(),
        (Some(other), _) => {
            return Err(SpecError::Invalid {
                location: origin.span(other.span()),
                context,
                message: "`kind` must be a string".into(),
            });
        }
        (None, Some(k)) => k.to_string(),
        (None, None) => {
            return Err(SpecError::Invalid {
                location: origin.span(map.span()),
                context,
                message: format!("missing `kind` (one of {})", KINDS.join(", ")),
            });
        }
    };
    let body = Node::Mapping(body);
    let parsed = match kind.as_str() {
        "source" => marked_yaml::from_node(&body).map(StepConfig::Source),
        "database" => marked_yaml::from_node(&body).map(StepConfig::Database),
        "stream" => marked_yaml::from_node(&body).map(StepConfig::Stream),
        "sql" => marked_yaml::from_node(&body).map(StepConfig::Sql),
        "split" => marked_yaml::from_node(&body).map(StepConfig::Split),
        "fit_transform" => marked_yaml::from_node(&body).map(StepConfig::FitTransform),
        "monitor" => marked_yaml::from_node(&body).map(StepConfig::Monitor),
        "validate" => marked_yaml::from_node(&body).map(StepConfig::Validate),
        "train" => read_train(&body).map(StepConfig::Train),
        "evaluate" => marked_yaml::from_node(&body).map(StepConfig::Evaluate),
        "register" => marked_yaml::from_node(&body).map(StepConfig::Register),
        other => {
            return Err(SpecError::Invalid {
                location: origin.span(kind_node.as_ref().map_or(def.span(), |k| k.span())),
                context,
                message: format!(
                    "unknown kind `{other}`{}; kinds are {}",
                    Suggestion::closest(other, KINDS.iter().copied()),
                    KINDS.join(", ")
                ),
            });
        }
    };
    parsed.map_err(|e| from_node_error(origin, &context, def, e))
}

/// A train step: everything but `params` first, then `params` in the shape `model` calls for.
fn read_train(body: &Node) -> Result<TrainStep, marked_yaml::FromNodeError> {
    #[derive(serde::Deserialize)]
    struct Only<T> {
        #[serde(default)]
        params: T,
    }
    let mut step: TrainStep = marked_yaml::from_node(body)?;
    // Only `params` (with its position), so error paths read `params.<field>`.
    let mut params = MarkedMappingNode::new_empty(*body.span());
    if let Some((k, v)) = body.as_mapping().and_then(|m| m.iter().find(|(k, _)| k.as_str() == "params")) {
        params.insert(k.clone(), v.clone());
    }
    let params = Node::Mapping(params);
    step.params = match step.model {
        ModelKind::Gbdt => TrainParams::Gbdt(Box::new(marked_yaml::from_node::<Only<GbdtParams>>(&params)?.params)),
        ModelKind::RandomForest => TrainParams::Forest(marked_yaml::from_node::<Only<ForestParams>>(&params)?.params),
        ModelKind::Ftrl => TrainParams::Ftrl(marked_yaml::from_node::<Only<FtrlParams>>(&params)?.params),
        ModelKind::LogisticRegression | ModelKind::LinearRegression => {
            TrainParams::Linear(marked_yaml::from_node::<Only<LinearParams>>(&params)?.params)
        }
        ModelKind::Kmeans => TrainParams::Kmeans(marked_yaml::from_node::<Only<KmeansParams>>(&params)?.params),
    };
    if let Some(tune) = &mut step.tune {
        // YAML scalars arrive as text where the type is open (choices, settings): type them.
        typed(&mut tune.sampler);
        typed(&mut tune.pruner);
        for p in tune.space.values_mut() {
            p.choice.iter_mut().chain(p.grid.iter_mut()).flatten().for_each(typed);
            p.when.iter_mut().flat_map(|w| w.values_mut()).for_each(typed);
        }
    }
    Ok(step)
}

/// A YAML scalar read as text, as the value YAML means: `true`, `3`, `0.1`, `null` or text.
fn typed(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            *v = match s.as_str() {
                "true" | "True" => Value::Bool(true),
                "false" | "False" => Value::Bool(false),
                "null" | "~" => Value::Null,
                t => match (t.parse::<i64>(), t.parse::<f64>()) {
                    (Ok(i), _) => Value::from(i),
                    (_, Ok(f)) if f.is_finite() => Value::from(f),
                    _ => return,
                },
            }
        }
        Value::Array(items) => items.iter_mut().for_each(typed),
        Value::Object(map) => map.values_mut().for_each(typed),
        _ => {}
    }
}

fn from_node_error(origin: &Origin, context: &str, def: &Node, e: marked_yaml::FromNodeError) -> SpecError {
    let fallback = origin.span(def.span());
    let start = e.start_mark();
    let location = match start {
        Some(m) => origin.at(Some(&m)),
        None => fallback,
    };
    let path = e.path().filter(|p| !p.is_empty() && *p != ".").map(str::to_string);
    match e.into_inner() {
        marked_yaml::Error::UnknownFieldError(key, expected, _) => SpecError::UnknownKey {
            location,
            context: match path.as_deref().and_then(|p| p.rsplit_once('.').map(|(head, _)| head)) {
                Some(head) if !head.is_empty() => format!("{context}, in `{head}`"),
                _ => context.to_string(),
            },
            suggestion: Suggestion::closest(&key, expected.iter().copied()),
            expected: expected.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
            key,
        },
        other => {
            // Say what was expected and quote what was found, rather than Rust's parse error.
            use marked_yaml::Error::*;
            let field = path.as_deref().map(|p| format!("`{p}`")).unwrap_or_else(|| "the value".into());
            let found = start.and_then(|m| scalar_at(def, &m)).unwrap_or_default();
            let message = match &other {
                IntegerParseFailure(..) if found.parse::<i128>().is_ok() => {
                    format!("{field} is out of range, got `{found}`")
                }
                IntegerParseFailure(..) => format!("{field} must be a whole number, got `{found}`"),
                FloatParseFailure(..) => format!("{field} must be a number, got `{found}`"),
                NotBoolean(..) => format!("{field} must be true or false, got `{found}`"),
                _ => match path {
                    Some(p) => format!("`{p}`: {other}"),
                    None => other.to_string(),
                },
            };
            SpecError::Invalid { location, context: context.to_string(), message }
        }
    }
}

/// The text of the scalar that starts at `marker`, to quote it in a message.
fn scalar_at(node: &Node, marker: &Marker) -> Option<String> {
    match node {
        Node::Scalar(s) => (s.span().start() == Some(marker)).then(|| s.as_str().to_string()),
        Node::Mapping(m) => m.values().find_map(|v| scalar_at(v, marker)),
        Node::Sequence(s) => s.iter().find_map(|v| scalar_at(v, marker)),
    }
}

fn resolve(
    origin: &Origin,
    step: &str,
    reference: &marked_yaml::Spanned<String>,
    outputs: &HashMap<&str, Vec<(String, OutputType)>>,
) -> Result<(OutputRef, OutputType), SpecError> {
    let location = origin.span(reference.span());
    let (target, output) = match reference.split_once('.') {
        Some((t, o)) => (t, Some(o)),
        None => (reference.as_str(), None),
    };
    let Some(outs) = outputs.get(target) else {
        return Err(SpecError::UnknownInput {
            location,
            step: step.to_string(),
            reference: reference.to_string(),
            suggestion: Suggestion::closest(target, outputs.keys().copied()),
        });
    };
    let found = match output {
        None => outs.first(),
        Some(o) => outs.iter().find(|(name, _)| name == o),
    };
    match found {
        Some((name, ty)) => Ok((OutputRef { step: target.to_string(), output: name.clone() }, *ty)),
        None => Err(SpecError::UnknownOutput {
            location,
            step: step.to_string(),
            reference: reference.to_string(),
            target: target.to_string(),
            output: output.unwrap_or("").to_string(),
            outputs: if outs.is_empty() {
                "none".into()
            } else {
                outs.iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().join(", ")
            },
        }),
    }
}

/// The span of a (possibly nested, dotted) field's value in a step's YAML, to point errors at
/// the field that is wrong; `--set` values carry their own origin.
fn field_span<'a>(def: &'a Node, path: &str) -> Option<&'a Span> {
    let mut node = def;
    for key in path.split('.') {
        node = match (node, key.parse::<usize>()) {
            (Node::Sequence(items), Ok(i)) => items.get_node(i)?,
            _ => node.as_mapping()?.get_node(key)?,
        };
    }
    Some(node.span())
}

/// Letters, digits, `_` and `-`: usable as a SQL table name (quoted if it has `-`), and never
/// ambiguous with `step.output` references.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn check_semantics(origin: &Origin, name: &str, config: &StepConfig, def: &Node) -> Result<(), SpecError> {
    let invalid = |field: &str, message: String| SpecError::Invalid {
        location: origin.span(field_span(def, field).unwrap_or(def.span())),
        context: format!("step `{name}`"),
        message,
    };
    let one_char = |v: &str| v.chars().count() == 1 && v.is_ascii();
    match config {
        StepConfig::Source(s) => {
            if let Some(d) = &s.delimiter
                && !one_char(d)
            {
                return Err(invalid("delimiter", format!("`delimiter` must be one ASCII character, got `{d}`")));
            }
            if let Some(c) = &s.comment
                && !one_char(c)
            {
                return Err(invalid("comment", format!("`comment` must be one ASCII character, got `{c}`")));
            }
            let Some(format) = s.format.or_else(|| infer_format(&s.path)) else {
                return Err(invalid(
                    "path",
                    format!(
                        "cannot tell the format of `{}` from its extension; set `format` (csv, parquet, ndjson or arrow)",
                        *s.path
                    ),
                ));
            };
            if format == FileFormat::Csv && !s.header && s.columns.is_none() {
                return Err(invalid("header", "a CSV file without a header needs `columns`".into()));
            }
        }
        StepConfig::Sql(s) => {
            if s.query.trim().is_empty() {
                return Err(invalid("query", "`query` is empty".into()));
            }
            let mut tables: HashMap<String, &str> = HashMap::new();
            for r in &s.inputs {
                let table = r.replace('.', "_");
                if let Some(other) = tables.insert(table.clone(), r.as_str()) {
                    return Err(SpecError::Invalid {
                        location: origin.span(r.span()),
                        context: format!("step `{name}`"),
                        message: if other == r.as_str() {
                            format!("`{other}` is listed twice in `inputs`")
                        } else {
                            format!("inputs `{other}` and `{}` would both be table `{table}`", r.as_str())
                        },
                    });
                }
            }
        }
        StepConfig::Database(d) => {
            let scheme = d.url.split_once("://").map(|(s, _)| s).unwrap_or("");
            if !["postgres", "postgresql", "mysql", "mariadb", "sqlite"].contains(&scheme) {
                return Err(invalid(
                    "url",
                    format!("`url` must start with postgres://, mysql://, mariadb:// or sqlite://, got `{}`", d.url),
                ));
            }
            match (&d.query, &d.table) {
                (Some(_), Some(_)) => return Err(invalid("table", "give `query` or `table`, not both".into())),
                (None, None) => return Err(invalid("url", "give `query` (SQL) or `table`".into())),
                (Some(q), None) if q.trim().is_empty() => return Err(invalid("query", "`query` is empty".into())),
                _ => {}
            }
            if d.batch_rows == 0 {
                return Err(invalid("batch_rows", "`batch_rows` must be at least 1".into()));
            }
        }
        StepConfig::Stream(st) => {
            if !st.nats.starts_with("nats://") && !st.nats.starts_with("${") {
                return Err(invalid("nats", format!("`nats` must be a nats://host:port URL, got `{}`", st.nats)));
            }
            if crate::kinds::parse_duration(&st.max_wait).is_none() {
                return Err(invalid(
                    "max_wait",
                    format!("`max_wait` must be a number and a unit (ms, s, m), like `2s`; got `{}`", st.max_wait),
                ));
            }
            if st.max_messages == 0 {
                return Err(invalid("max_messages", "`max_messages` must be at least 1".into()));
            }
        }
        StepConfig::Validate(v) => {
            for (column, e) in &v.columns {
                let at = |key: &str| format!("columns.{column}.{key}");
                if let (Some(lo), Some(hi)) = (e.min, e.max)
                    && lo > hi
                {
                    return Err(invalid(&at("min"), format!("column `{column}`: `min` {lo} is above `max` {hi}")));
                }
                if let Some(f) = e.max_null_fraction
                    && !(0.0..=1.0).contains(&f)
                {
                    return Err(invalid(
                        &at("max_null_fraction"),
                        format!("column `{column}`: `max_null_fraction` must be between 0 and 1, got {f}"),
                    ));
                }
                if e.allowed.as_ref().is_some_and(Vec::is_empty) {
                    return Err(invalid(&at("allowed"), format!("column `{column}`: `allowed` is empty")));
                }
            }
            let mut names = HashSet::new();
            for r in &v.rows {
                if !names.insert(r.name.as_str()) {
                    return Err(invalid("rows", format!("two row checks are named `{}`", r.name)));
                }
                if r.check.trim().is_empty() {
                    return Err(invalid("rows", format!("row check `{}` has an empty `check`", r.name)));
                }
            }
            if let Some(rc) = &v.dataset.row_count {
                if let (Some(lo), Some(hi)) = (rc.min, rc.max)
                    && lo > hi
                {
                    return Err(invalid("dataset.row_count", format!("`row_count.min` {lo} is above `max` {hi}")));
                }
                if rc.policy == Some(Policy::Quarantine) {
                    return Err(invalid(
                        "dataset.row_count",
                        "`quarantine` applies to row-level checks; `row_count` can `fail` or `warn`".into(),
                    ));
                }
            }
            if let Some(f) = &v.dataset.freshness {
                if f.max_age_seconds().is_none() {
                    return Err(invalid(
                        "dataset.freshness.max_age",
                        format!(
                            "`max_age` must be a number and a unit (s, m, h, d, w), like `36h`; got `{}`",
                            f.max_age
                        ),
                    ));
                }
                if f.policy == Some(Policy::Quarantine) {
                    return Err(invalid(
                        "dataset.freshness",
                        "`quarantine` applies to row-level checks; `freshness` can `fail` or `warn`".into(),
                    ));
                }
            }
            if v.samples > 1000 {
                return Err(invalid("samples", format!("`samples` must be at most 1000, got {}", v.samples)));
            }
        }
        StepConfig::FitTransform(f) => {
            if f.transforms.is_empty() {
                return Err(invalid("transforms", "`transforms` is empty".into()));
            }
            check_transforms(&f.transforms).map_err(|(field, message)| invalid(&field, message))?;
            let target = f.transforms.iter().any(|t| t.op == crate::kinds::TransformOp::Target);
            if target && f.label.is_none() {
                return Err(invalid("label", "`target` encoding needs `label`".into()));
            }
        }
        StepConfig::Split(s) => {
            if s.fractions.len() < 2 {
                return Err(invalid("fractions", "`fractions` needs at least two parts".into()));
            }
            if let Some((part, f)) = s.fractions.iter().find(|(_, f)| !(**f > 0.0 && **f < 1.0)) {
                return Err(invalid(
                    &format!("fractions.{part}"),
                    format!("fraction of `{part}` must be between 0 and 1, got {f}"),
                ));
            }
            let sum: f64 = s.fractions.values().sum();
            if (sum - 1.0).abs() > 1e-9 {
                return Err(invalid("fractions", format!("`fractions` must sum to 1, they sum to {sum}")));
            }
            if let Some(part) = s.fractions.keys().find(|p| !valid_name(p)) {
                return Err(invalid("fractions", format!("part name `{part}` must be letters, digits, `_` or `-`")));
            }
            if s.method != SplitMethod::Random && s.by.is_none() {
                let method = format!("{:?}", s.method).to_lowercase();
                return Err(invalid("method", format!("method `{method}` needs `by` (a column name)")));
            }
        }
        StepConfig::Train(t) => {
            check_label(t).map_err(|(field, message)| invalid(field, message))?;
            check_transforms(&t.transforms).map_err(|(field, message)| invalid(&field, message))?;
            check_param_values(&t.params, t.validation.is_some()).map_err(|(f, m)| invalid(&f, m))?;
            let gbdt = matches!(t.params, TrainParams::Gbdt(_));
            if t.validation.is_some() && t.tune.is_none() && !gbdt {
                return Err(invalid("validation", "`validation` is used by `model: gbdt` (and by `tune`) only".into()));
            }
            check_start(t).map_err(|(field, message)| invalid(field, message))?;
            if let Some(cv) = &t.cv {
                if cv.folds < 2 {
                    return Err(invalid("cv.folds", format!("`cv.folds` must be at least 2, got {}", cv.folds)));
                }
                let needs_by = matches!(cv.method, crate::kinds::CvMethod::Group | crate::kinds::CvMethod::Time);
                if needs_by && cv.by.is_none() {
                    return Err(invalid("cv.method", "`cv.method` group and time need `cv.by` (a column name)".into()));
                }
            }
            if t.features.as_ref().is_some_and(|f| f.contains(&t.label)) {
                return Err(invalid("features", format!("the label `{}` cannot also be a feature", t.label)));
            }
            if let Some(tune) = &t.tune {
                check_tune(t, tune).map_err(|(field, message)| invalid(&field, message))?;
            }
            if t.distributed {
                check_distributed(t).map_err(|message| invalid("distributed", message))?;
            }
        }
        StepConfig::Evaluate(e) => {
            if !(e.threshold > 0.0 && e.threshold < 1.0) {
                return Err(invalid("threshold", format!("`threshold` must be between 0 and 1, got {}", e.threshold)));
            }
        }
        StepConfig::Monitor(m) => {
            if let Some(w) = &m.window {
                let parsed = sluice_core::Window::parse(w);
                let time = matches!(parsed, Some(sluice_core::Window::Seconds(_)));
                if parsed.is_none() {
                    return Err(invalid(
                        "window",
                        format!(
                            "`window` must be hour, day, week, a duration like `6h`, or rows like `5000rows`; got `{w}`"
                        ),
                    ));
                }
                if time && m.time.is_none() {
                    return Err(invalid("window", format!("a window of time (`{w}`) needs `time` (a column)")));
                }
            } else if m.time.is_some() {
                return Err(invalid("time", "`time` goes with `window` (e.g. `window: day`)".into()));
            }
            match (&m.reference, &m.model) {
                (None, None) => {
                    return Err(invalid(
                        "reference",
                        "give `reference` (a profile) or `model` (a registered model, `NAME@ALIAS`)".into(),
                    ));
                }
                (Some(_), Some(_)) => {
                    return Err(invalid("model", "give `reference` or `model`, not both".into()));
                }
                _ => {}
            }
            if m.truth.is_some() && m.model.is_none() {
                return Err(invalid("truth", "`truth` needs `model` (the model whose predictions it checks)".into()));
            }
            if m.key.is_empty() {
                return Err(invalid("key", "`key` needs at least one column".into()));
            }
            let mut names = std::collections::HashSet::new();
            for (i, a) in m.alerts.iter().enumerate() {
                if !names.insert(a.name.as_str()) {
                    return Err(invalid(&format!("alerts.{i}.name"), format!("two alerts are named `{}`", a.name)));
                }
                crate::alert::Rule::parse(&a.when)
                    .map_err(|e| invalid(&format!("alerts.{i}.when"), format!("alert `{}`: {e}", a.name)))?;
                for action in &a.actions {
                    if let crate::alert::AlertAction::Webhook(url) = action
                        && !(url.starts_with("http://") || url.starts_with("https://"))
                    {
                        return Err(invalid(
                            &format!("alerts.{i}.actions"),
                            format!("webhook `{url}` must be an http:// or https:// URL"),
                        ));
                    }
                }
            }
        }
        StepConfig::Register(r) => {
            let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok(&r.name) {
                return Err(invalid(
                    "name",
                    format!("`name` must be letters, digits, `-`, `_` or `.`, got `{}`", r.name),
                ));
            }
            if let Some(a) = &r.alias
                && (!ok(a) || a.chars().all(|c| c.is_ascii_digit()))
            {
                return Err(invalid("alias", format!("`alias` must be a name (not a number), got `{a}`")));
            }
            for (i, g) in r.gates.iter().enumerate() {
                let gate = crate::gate::Gate::parse(g)
                    .map_err(|e| invalid(&format!("gates.{i}"), format!("gate `{g}`: {e}")))?;
                if r.metrics.is_none() {
                    return Err(invalid(
                        "gates",
                        format!("gate `{gate}` needs `metrics` (an evaluate step's metrics)"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Range checks of a model's settings: the field and the message.
fn check_param_values(params: &TrainParams, has_validation: bool) -> Result<(), (String, String)> {
    let fail = |f: &str, m: String| Err((f.to_string(), m));
    match params {
        TrainParams::Linear(p) => {
            if !(p.l2 >= 0.0 && p.l2.is_finite()) {
                return fail("params.l2", format!("`params.l2` must be >= 0, got {}", p.l2));
            }
            if p.tol.is_nan() || p.tol <= 0.0 {
                return fail("params.tol", format!("`params.tol` must be > 0, got {}", p.tol));
            }
            if !(p.l1 >= 0.0 && p.l1.is_finite()) {
                return fail("params.l1", format!("`params.l1` must be >= 0, got {}", p.l1));
            }
            if p.max_iter == Some(0) {
                return fail("params.max_iter", "`params.max_iter` must be at least 1".into());
            }
            if p.l1 > 0.0 && p.solver == LinearSolver::Lbfgs {
                return fail(
                    "params.solver",
                    "`params.solver: lbfgs` fits l2 penalties only; `params.l1` needs `newton` or `auto` (proximal Newton)"
                        .into(),
                );
            }
        }
        TrainParams::Gbdt(p) => check_gbdt(p, has_validation).map_err(|(f, m)| (f.to_string(), m))?,
        TrainParams::Ftrl(p) => {
            let ok = |v: f64| v >= 0.0 && v.is_finite();
            if !(p.alpha > 0.0 && p.alpha.is_finite() && ok(p.beta) && ok(p.l1) && ok(p.l2) && p.epochs != 0) {
                return fail("params", "`alpha` must be > 0, `beta`, `l1`, `l2` >= 0 and `epochs` at least 1".into());
            }
        }
        TrainParams::Kmeans(p) => {
            if p.clusters < 2 {
                return fail("params.clusters", format!("`params.clusters` must be at least 2, got {}", p.clusters));
            }
            if p.max_iter == 0 || p.n_init == 0 || !(p.tol >= 0.0 && p.tol.is_finite()) {
                return fail("params", "`max_iter` and `n_init` must be at least 1 and `tol` >= 0".into());
            }
        }
        TrainParams::Forest(p) => {
            if p.num_trees == 0 {
                return fail("params.num_trees", "`params.num_trees` must be at least 1".into());
            }
            if p.max_features.is_some_and(|f| !(f > 0.0 && f <= 1.0)) {
                return fail("params.max_features", "`params.max_features` must be in (0, 1]".into());
            }
            if !(2..=255).contains(&p.max_bin) || p.max_depth == Some(0) || p.min_data_in_leaf == 0 {
                return fail(
                    "params",
                    "`max_bin` must be 2 to 255, `max_depth` and `min_data_in_leaf` at least 1".into(),
                );
            }
        }
    }
    Ok(())
}

/// Where a continued model comes from — `init_model` (a step's model) or `warm_start` (a
/// registered one) — and what may be combined with continuing one.
fn check_start(t: &crate::kinds::TrainStep) -> Result<(), (&'static str, String)> {
    let field = match (&t.init_model, &t.warm_start) {
        (None, None) => return Ok(()),
        (Some(_), Some(_)) => {
            return Err((
                "warm_start",
                "`warm_start` (a registered model) and `init_model` (a step's model) both say where to start; give one"
                    .into(),
            ));
        }
        (Some(_), None) => "init_model",
        (None, Some(_)) => "warm_start",
    };
    let what = if matches!(t.params, TrainParams::Forest(_)) {
        "random forests have no warm start".to_string()
    } else if !matches!(t.params, TrainParams::Gbdt(_) | TrainParams::Ftrl(_)) {
        format!("`{field}` (warm start) is for `model: gbdt` and `ftrl` only")
    } else if !t.transforms.is_empty() {
        format!("`{field}` cannot be combined with `transforms` (the model continued keeps its own features)")
    } else if t.tune.is_some() {
        format!("`tune` cannot be combined with `{field}`")
    } else if t.cv.is_some() {
        format!("`cv` cannot be combined with `{field}`: the continued model may have seen the folds' rows")
    } else if t.warm_start.as_ref().is_some_and(|w| w.trim().is_empty() || w.starts_with(['@', ':'])) {
        "`warm_start` names a registered model: `NAME@ALIAS`, `NAME:VERSION` or `NAME`".to_string()
    } else {
        return Ok(());
    };
    Err((field, what))
}

/// Supervised models need a label; k-means takes none, and nothing that scores against one.
fn check_label(t: &crate::kinds::TrainStep) -> Result<(), (&'static str, String)> {
    if t.model != ModelKind::Kmeans {
        if t.label.is_empty() {
            return Err(("label", "`label` (the column to predict) is required; only `model: kmeans` has none".into()));
        }
        return Ok(());
    }
    let unsupervised =
        |field: &'static str, what: &str| Err((field, format!("`model: kmeans` has no label, so no {what}")));
    if !t.label.is_empty() {
        return Err(("label", "`model: kmeans` is unsupervised: remove `label` (`exclude` leaves columns out)".into()));
    }
    if t.cv.is_some() {
        return unsupervised("cv", "`cv`");
    }
    if t.tune.is_some() {
        return unsupervised("tune", "`tune` (trials are scored against the label)");
    }
    if t.validation.is_some() {
        return unsupervised("validation", "`validation`");
    }
    if t.init_model.is_some() {
        return unsupervised("init_model", "warm start (`init_model`)");
    }
    if t.transforms.iter().any(|x| x.op == crate::kinds::TransformOp::Target) {
        return unsupervised("transforms", "target encoding");
    }
    Ok(())
}

/// What `distributed: true` supports: one linear model fitted by Newton steps over the whole
/// training set, with the built-in preprocessing.
fn check_distributed(t: &crate::kinds::TrainStep) -> Result<(), String> {
    let what = if !matches!(t.params, TrainParams::Linear(_)) {
        "models other than `logistic_regression` and `linear_regression`"
    } else if !t.transforms.is_empty() {
        "`transforms`"
    } else if t.tune.is_some() {
        "`tune`"
    } else if t.cv.is_some() {
        "`cv`"
    } else {
        return Ok(());
    };
    Err(format!("`distributed: true` trains linear models only; it cannot be combined with {what}"))
}

/// Checks of a `tune` block that need no knowledge of samplers: where trials are scored, one
/// distribution per parameter, parameter names that are fields of `params` and whose extreme
/// values are valid settings, durations and sizes.
fn check_tune(t: &crate::kinds::TrainStep, tune: &crate::kinds::TuneSpec) -> Result<(), (String, String)> {
    use serde_json::{Map, Value};
    if t.validation.is_none() && t.cv.is_none() {
        return Err((
            "tune".into(),
            "`tune` scores each trial on `validation` (a dataset with the label) or by `cv`; give one".into(),
        ));
    }
    if tune.space.is_empty() {
        return Err(("tune.space".into(), "`tune.space` needs at least one parameter".into()));
    }
    let (mut low, mut high) = (Map::new(), Map::new());
    for (name, p) in &tune.space {
        let at = format!("tune.space.{name}");
        let given = [p.uniform.is_some(), p.log_uniform.is_some(), p.int.is_some(), p.choice.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err((at, format!("`{name}` needs exactly one of `uniform`, `log_uniform`, `int` or `choice`")));
        }
        let (lo, hi): (Value, Value) = if let Some([a, b]) = p.uniform.or(p.log_uniform) {
            (a.into(), b.into())
        } else if let Some([a, b]) = p.int {
            (a.into(), b.into())
        } else {
            let c = p.choice.as_deref().unwrap_or_default();
            match (c.first(), c.last()) {
                (Some(a), Some(b)) => (a.clone(), b.clone()),
                _ => return Err((at, format!("`{name}`: `choice` needs at least one value"))),
            }
        };
        low.insert(name.clone(), lo);
        high.insert(name.clone(), hi);
    }
    for values in [&low, &high] {
        let params = t.params_with(values).map_err(|e| ("tune.space".to_string(), e))?;
        check_param_values(&params, true).map_err(|(field, message)| {
            let name = field.trim_start_matches("params.");
            let f = if tune.space.contains_key(name) { format!("tune.space.{name}") } else { field };
            (f, format!("with the search space's extreme values: {message}"))
        })?;
    }
    for (field, value) in [("tune.timeout", &tune.timeout), ("tune.trial_timeout", &tune.trial_timeout)] {
        if let Some(v) = value
            && crate::kinds::parse_duration(v).is_none()
        {
            return Err((field.into(), format!("`{field}` must be a duration like `90s`, `30m` or `2h`, got `{v}`")));
        }
    }
    if let Some(m) = &tune.trial_memory
        && crate::kinds::parse_bytes(m).is_none()
    {
        return Err((
            "tune.trial_memory".into(),
            format!("`tune.trial_memory` must be a size like `512MB` or `2GiB`, got `{m}`"),
        ));
    }
    if tune.parallel == Some(0) || tune.trials == Some(0) {
        return Err(("tune".into(), "`tune.parallel` and `tune.trials` must be at least 1".into()));
    }
    Ok(())
}

/// Range checks of GBDT settings: the field (under `params`) and the message.
/// Checks of feature-engineering steps: columns given, options that fit the operation.
fn check_transforms(transforms: &[crate::kinds::TransformSpec]) -> Result<(), (String, String)> {
    for (i, tr) in transforms.iter().enumerate() {
        let at = format!("transforms.{i}");
        let op = serde_json::to_value(tr.op).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        if tr.columns.is_empty() {
            return Err((at, format!("`{op}` needs `columns`")));
        }
        let allowed = tr.allowed_options();
        if let Some(extra) = tr.given_options().into_iter().find(|o| !allowed.contains(o)) {
            let takes = if allowed.is_empty() { "no options".to_string() } else { allowed.join(", ") };
            return Err((at, format!("`{op}` does not take `{extra}` (it takes {takes})")));
        }
        use crate::kinds::{ImputeStrategy, TransformOp};
        let problem = match tr.op {
            TransformOp::Impute if tr.strategy.is_none() => {
                Some("`impute` needs `strategy` (mean, median, most_frequent or constant)")
            }
            TransformOp::Impute if (tr.strategy == Some(ImputeStrategy::Constant)) != tr.value.is_some() => {
                Some("`value` goes with `strategy: constant` (and only with it)")
            }
            TransformOp::Clip if tr.min.is_none() && tr.max.is_none() => Some("`clip` needs `min` or `max`"),
            TransformOp::Bucketize if tr.quantiles.is_some() == tr.bins.is_some() => {
                Some("`bucketize` needs either `quantiles` or `bins`")
            }
            TransformOp::Bucketize if tr.quantiles.is_some_and(|q| q < 2) => Some("`quantiles` must be at least 2"),
            TransformOp::Bucketize
                if tr.bins.as_ref().is_some_and(|b| b.is_empty() || b.windows(2).any(|w| w[0] >= w[1])) =>
            {
                Some("`bins` must be increasing edges")
            }
            TransformOp::Cross if tr.columns.len() < 2 => Some("`cross` needs at least two `columns`"),
            TransformOp::Target if tr.folds.is_some_and(|f| f < 2) => Some("`folds` must be at least 2"),
            TransformOp::Hash if tr.buckets == Some(0) => Some("`buckets` must be at least 1"),
            _ => None,
        };
        if let Some(p) = problem {
            return Err((at, p.to_string()));
        }
    }
    Ok(())
}

fn check_gbdt(p: &GbdtParams, has_validation: bool) -> Result<(), (&'static str, String)> {
    let positive = |v: f64| v > 0.0 && v.is_finite();
    let fraction = |v: f64| v > 0.0 && v <= 1.0;
    let checks: [(bool, &'static str, String); 13] = [
        (p.num_rounds >= 1, "params.num_rounds", "must be at least 1".into()),
        (positive(p.learning_rate), "params.learning_rate", format!("must be > 0, got {}", p.learning_rate)),
        (p.num_leaves >= 2, "params.num_leaves", format!("must be at least 2, got {}", p.num_leaves)),
        ((2..=255).contains(&p.max_bin), "params.max_bin", format!("must be between 2 and 255, got {}", p.max_bin)),
        (
            fraction(p.feature_fraction),
            "params.feature_fraction",
            format!("must be in (0, 1], got {}", p.feature_fraction),
        ),
        (
            fraction(p.bagging_fraction),
            "params.bagging_fraction",
            format!("must be in (0, 1], got {}", p.bagging_fraction),
        ),
        (
            [p.lambda_l1, p.lambda_l2, p.min_gain_to_split, p.min_sum_hessian_in_leaf, p.cat_smooth, p.cat_l2]
                .iter()
                .all(|v| *v >= 0.0 && v.is_finite()),
            "params",
            "lambda_l1, lambda_l2, min_gain_to_split, min_sum_hessian_in_leaf, cat_smooth and cat_l2 must be >= 0"
                .into(),
        ),
        (p.max_depth != Some(0), "params.max_depth", "must be at least 1 (omit it for no limit)".into()),
        (
            match p.objective {
                GbdtObjective::Quantile => p.alpha > 0.0 && p.alpha < 1.0,
                _ => positive(p.alpha),
            },
            "params.alpha",
            format!("must be in (0, 1) for quantile and > 0 for huber, got {}", p.alpha),
        ),
        (
            p.monotone.values().all(|m| [-1, 0, 1].contains(m)),
            "params.monotone",
            "values must be 1 (increasing), -1 (decreasing) or 0".into(),
        ),
        (
            p.early_stopping_rounds.is_none() || has_validation,
            "params.early_stopping_rounds",
            "needs `validation` (a dataset scored after every round)".into(),
        ),
        (
            p.objective == GbdtObjective::Binary
                || p.class_weight.is_none()
                    && match p.objective {
                        GbdtObjective::Multiclass => {
                            matches!(p.metric, None | Some(GbdtMetric::Logloss | GbdtMetric::Loss))
                        }
                        _ => !matches!(p.metric, Some(GbdtMetric::Auc | GbdtMetric::Logloss)),
                    },
            "params",
            "`metric: auc` and `class_weight` need `objective: binary`; multiclass early-stops on `logloss`".into(),
        ),
        (
            p.objective != GbdtObjective::Multiclass || p.monotone.values().all(|m| *m == 0),
            "params.monotone",
            "is not supported with `objective: multiclass`".into(),
        ),
    ];
    if let Some((_, field, message)) = checks.into_iter().find(|c| !c.0) {
        let message = if field == "params" { message } else { format!("`{field}` {message}") };
        return Err((field, message));
    }
    if let Some(crate::kinds::ClassWeightSpec::Named(n)) = &p.class_weight
        && n != "balanced"
    {
        return Err((
            "params.class_weight",
            format!("`params.class_weight` must be `balanced` or `{{negative: W, positive: W}}`, got `{n}`"),
        ));
    }
    Ok(())
}

/// Read a validate step's `expectations` file and merge it under the inline expectations:
/// inline `columns` replace the file's entry for the same column, `rows` are appended, and
/// inline `dataset` checks replace the file's.
fn merge_expectations_file(origin: &Origin, name: &str, v: &mut ValidateStep, base: &Path) -> Result<(), SpecError> {
    let Some(path) = &v.expectations else { return Ok(()) };
    let full = base.join(path.as_str());
    let invalid = |message: String| SpecError::Invalid {
        location: origin.span(path.span()),
        context: format!("step `{name}`"),
        message,
    };
    let text = std::fs::read_to_string(&full)
        .map_err(|e| invalid(format!("cannot read expectations file `{}`: {e}", full.display())))?;
    let mut file = parse_expectations(&text, &full.display().to_string())
        .map_err(|errors| invalid(format!("in expectations file `{}`: {}", path.as_str(), errors)))?;
    for (column, e) in std::mem::take(&mut v.columns) {
        file.columns.insert(column, e);
    }
    file.rows.append(&mut v.rows);
    let inline = std::mem::take(&mut v.dataset);
    if inline.row_count.is_some() {
        file.dataset.row_count = inline.row_count;
    }
    if inline.freshness.is_some() {
        file.dataset.freshness = inline.freshness;
    }
    v.columns = file.columns;
    v.rows = file.rows;
    v.dataset = file.dataset;
    Ok(())
}

/// Parse an expectations document (YAML); errors name the file, line and column.
pub fn parse_expectations(text: &str, file: &str) -> Result<Expectations> {
    let origin = Origin { file, overrides: &[] };
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    let root = marked_yaml::parse_yaml_with_options(0, text, options).map_err(|e| load_error(&origin, e))?;
    marked_yaml::from_node(&root).map_err(|e| SpecErrors(vec![from_node_error(&origin, "expectations", &root, e)]))
}

/// The format implied by a path's extension, looking through a compression suffix.
pub fn infer_format(path: &str) -> Option<FileFormat> {
    let lower = path.to_ascii_lowercase();
    let stem = ["gz", "zst", "bz2", "xz"].iter().find_map(|c| lower.strip_suffix(&format!(".{c}"))).unwrap_or(&lower);
    if stem.ends_with(".csv") || stem.ends_with(".tsv") {
        Some(FileFormat::Csv)
    } else if stem.ends_with(".parquet") || stem.ends_with(".pq") {
        Some(FileFormat::Parquet)
    } else if stem.ends_with(".ndjson") || stem.ends_with(".jsonl") || stem.ends_with(".json") {
        Some(FileFormat::Ndjson)
    } else if stem.ends_with(".arrow") || stem.ends_with(".feather") || stem.ends_with(".ipc") {
        Some(FileFormat::Arrow)
    } else {
        None
    }
}

fn resolve_files(origin: &Origin, name: &str, s: &SourceStep, base: &Path) -> Result<Vec<PathBuf>, SpecError> {
    // Object store URLs are listed when the step runs (and when its cache key is computed).
    if sluice_core::is_url(s.path.as_str()) {
        return Ok(Vec::new());
    }
    let pattern = if Path::new(s.path.as_str()).is_absolute() {
        s.path.to_string()
    } else {
        base.join(s.path.as_str()).display().to_string()
    };
    let invalid = |message: String| SpecError::Invalid {
        location: origin.span(s.path.span()),
        context: format!("source `{name}`"),
        message,
    };
    // A directory means every file below it (hive-partitioned layouts).
    let directory = Path::new(&pattern).is_dir();
    let pattern = if directory { format!("{}/**/*", pattern.trim_end_matches('/')) } else { pattern };
    let paths = glob::glob(&pattern).map_err(|e| invalid(format!("bad glob `{}`: {e}", *s.path)))?;
    let mut files = Vec::new();
    for p in paths {
        let p = p.map_err(|e| invalid(format!("cannot read `{}`: {e}", e.path().display())))?;
        let marker = p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.') || n.starts_with('_'));
        if p.is_file() && !(directory && marker) {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(SpecError::MissingFile {
            location: origin.span(s.path.span()),
            step: name.to_string(),
            pattern: s.path.to_string(),
            base: base.display().to_string(),
        });
    }
    Ok(files)
}

/// Kahn's algorithm, taking ready steps in declaration order so the order is stable.
fn topological_order(steps: Vec<Step>) -> Result<Vec<Step>> {
    let index: HashMap<&str, usize> = steps.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    let mut indegree = vec![0usize; steps.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
    for (i, s) in steps.iter().enumerate() {
        for up in s.upstream() {
            indegree[i] += 1;
            dependents[index[up]].push(i);
        }
    }
    let mut order = Vec::with_capacity(steps.len());
    let mut done = vec![false; steps.len()];
    while let Some(next) = (0..steps.len()).find(|&i| !done[i] && indegree[i] == 0) {
        done[next] = true;
        order.push(next);
        for &d in &dependents[next] {
            indegree[d] -= 1;
        }
    }
    if order.len() < steps.len() {
        let cycle = find_cycle(&steps, &index, &done);
        let first = &steps[index[cycle[0].as_str()]];
        return Err(SpecError::Cycle { location: first.location.clone(), cycle: cycle.join(" -> ") }.into());
    }
    let mut slots: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

/// Walk upstream from an unfinished step until a name repeats: that loop is the cycle.
fn find_cycle(steps: &[Step], index: &HashMap<&str, usize>, done: &[bool]) -> Vec<String> {
    let Some(start) = (0..steps.len()).find(|&i| !done[i]) else { return vec![] };
    let mut path = vec![start];
    loop {
        let current = path[path.len() - 1];
        let Some(&up) = steps[current].upstream().iter().map(|u| &index[*u]).find(|&&u| !done[u]) else {
            break;
        };
        if let Some(pos) = path.iter().position(|&p| p == up) {
            // Report in the direction data flows: a -> b means b reads a.
            let mut cycle: Vec<String> = path[pos..].iter().rev().map(|&i| steps[i].name.clone()).collect();
            cycle.push(cycle[0].clone());
            return cycle;
        }
        path.push(up);
    }
    path.iter().map(|&i| steps[i].name.clone()).collect()
}

/// Apply `step.key[.key...]=value` assignments to the YAML tree before it is read.
fn apply_overrides(root: &mut Node, overrides: &[String]) -> Result<()> {
    for (i, assignment) in overrides.iter().enumerate() {
        let fail = |message: String| SpecError::Override { assignment: assignment.clone(), message };
        let Some((lhs, value)) = assignment.split_once('=') else {
            return Err(fail("expected `step.key=value`".into()).into());
        };
        let path: Vec<&str> = lhs.trim().split('.').collect();
        if path.len() < 2 || path.iter().any(|p| p.is_empty()) {
            return Err(fail("expected `step.key=value`".into()).into());
        }
        // Parse the value as YAML so numbers, booleans and lists keep their types; positions in it
        // point back to this assignment (source id i + 1).
        let wrapped = format!("v: {value}");
        let parsed = marked_yaml::parse_yaml(i + 1, wrapped.as_str())
            .map_err(|e| fail(format!("value is not valid YAML: {e}")))?;
        let value = parsed
            .as_mapping()
            .and_then(|m| m.get_node("v"))
            .cloned()
            .unwrap_or_else(|| Node::Scalar(MarkedScalarNode::new(Span::new_blank(), "")));

        let Some(top) = root.as_mapping_mut() else {
            return Err(fail("the spec is not a mapping".into()).into());
        };
        let mut names: Vec<String> = Vec::new();
        let mut section_of_step = None;
        for section in ["sources", "steps"] {
            if let Some(Node::Mapping(m)) = top.get(section) {
                names.extend(m.keys().map(|k| k.as_str().to_string()));
                if section_of_step.is_none() && m.get_node(path[0]).is_some() {
                    section_of_step = Some(section);
                }
            }
        }
        let target = section_of_step.and_then(|section| match top.get_mut(section) {
            Some(Node::Mapping(m)) => match m.get_mut(path[0]) {
                Some(Node::Mapping(step)) => Some(step),
                _ => None,
            },
            _ => None,
        });
        let Some(mut node) = target else {
            let suggestion = Suggestion::closest(path[0], names.iter().map(String::as_str));
            let known = if suggestion.0.is_some() || names.is_empty() {
                String::new()
            } else {
                format!("; names are: {}", names.join(", "))
            };
            return Err(fail(format!("no source or step named `{}`{suggestion}{known}", path[0])).into());
        };
        for (depth, key) in path[1..].iter().enumerate() {
            if depth == path.len() - 2 {
                node.insert(MarkedScalarNode::new(Span::new_blank(), *key), value);
                break;
            }
            let entry = node
                .entry(MarkedScalarNode::new(Span::new_blank(), *key))
                .or_insert_with(|| Node::Mapping(MarkedMappingNode::new_empty(Span::new_blank())));
            match entry {
                Node::Mapping(m) => node = m,
                _ => return Err(fail(format!("`{key}` is not a mapping, so it has no keys to set")).into()),
            }
        }
    }
    Ok(())
}
