//! Shared helpers: a temporary sluice home per test, running the binary, reading its JSON.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// The six steps of the Adult quickstart, in pipeline order.
pub const ADULT_STEPS: [&str; 6] = ["adult", "clean", "split", "train", "evaluate", "register"];

/// The repository's `examples/adult` folder (read only: tests that edit it work on a copy).
pub fn adult_example() -> PathBuf {
    // Read at run time: a test binary reused from another checkout must not point back at it.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .join("../../examples/adult")
}

/// A finished `sluice` invocation.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics with both streams unless the command exited with `code`.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        self.expect_code(0)
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\n--- stderr\n{}", self.stdout, self.stderr))
    }

    /// The events of `run --json`, one JSON object per line.
    #[track_caller]
    pub fn events(&self) -> Events {
        Events(
            self.stdout
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("event line is not JSON ({e}): {l}")))
                .collect(),
        )
    }
}

/// The events of one `run --json`.
#[derive(Debug)]
pub struct Events(pub Vec<Value>);

pub const EVENT_TYPES: [&str; 9] = [
    "run_started",
    "step_started",
    "step_progress",
    "step_cached",
    "step_finished",
    "step_failed",
    "step_report",
    "step_skipped",
    "run_finished",
];

impl Events {
    pub fn of_type<'a>(&'a self, event: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.0.iter().filter(move |e| e["event"] == event)
    }

    /// Names of the steps with an event of this type.
    pub fn steps(&self, event: &str) -> BTreeSet<String> {
        self.of_type(event).map(|e| e["step"].as_str().expect("event without a step").to_string()).collect()
    }

    pub fn ran(&self) -> BTreeSet<String> {
        self.steps("step_finished")
    }

    pub fn cached(&self) -> BTreeSet<String> {
        self.steps("step_cached")
    }

    pub fn run_id(&self) -> String {
        self.of_type("run_started").next().expect("no run_started event")["run_id"]
            .as_str()
            .expect("run_id is a string")
            .to_string()
    }

    pub fn finished(&self) -> &Value {
        self.of_type("run_finished").next().expect("no run_finished event")
    }

    /// `name=hash` of each output a step wrote in this run.
    pub fn outputs(&self, step: &str) -> Vec<(String, String)> {
        let e =
            self.of_type("step_finished").find(|e| e["step"] == step).unwrap_or_else(|| panic!("`{step}` did not run"));
        e["outputs"]
            .as_array()
            .expect("outputs is an array")
            .iter()
            .map(|pair| (pair[0].as_str().unwrap().to_string(), pair[1].as_str().unwrap().to_string()))
            .collect()
    }

    /// Checks the stream is well formed: known event types, one run_started first, and every
    /// step started/cached/failed/skipped exactly once.
    #[track_caller]
    pub fn check_complete(&self, steps: &[&str]) {
        for e in &self.0 {
            let t = e["event"].as_str().expect("event has a type");
            assert!(EVENT_TYPES.contains(&t), "unknown event type `{t}`");
        }
        assert_eq!(self.0.first().map(|e| &e["event"]), Some(&Value::from("run_started")));
        assert_eq!(self.0.last().map(|e| &e["event"]), Some(&Value::from("run_finished")));
        for s in steps {
            let decided = ["step_cached", "step_finished", "step_failed", "step_skipped"]
                .iter()
                .map(|t| self.of_type(t).filter(|e| e["step"] == *s).count())
                .sum::<usize>();
            assert_eq!(decided, 1, "step `{s}` should end exactly once in {:#?}", self.0);
        }
    }
}

pub fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// One test's private directory with its own sluice home.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        Self { dir: tempfile::Builder::new().prefix("sluice-it-").tempdir().expect("create a temp dir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.path().join("home")
    }

    /// Copy `examples/adult` (spec, expectations and data) to `<tmp>/adult` and return the
    /// spec's path.
    pub fn copy_adult(&self) -> PathBuf {
        let from = adult_example();
        let to = self.path().join("adult");
        std::fs::create_dir_all(to.join("data")).unwrap();
        std::fs::copy(from.join("pipeline.yaml"), to.join("pipeline.yaml")).unwrap();
        std::fs::copy(from.join("expectations.yaml"), to.join("expectations.yaml")).unwrap();
        for entry in std::fs::read_dir(from.join("data")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join("data").join(entry.file_name())).unwrap();
        }
        to.join("pipeline.yaml")
    }

    /// `sluice predict --model MODEL --input INPUT --output OUTPUT` (a CSV), read back as text.
    pub fn predict_csv(&self, model: &str, input: &Path, output: &Path) -> String {
        self.sluice(&[
            "predict",
            "--model",
            model,
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ])
        .ok();
        std::fs::read_to_string(output).unwrap()
    }

    /// The model artifact (JSON) of a registered model, `NAME@ALIAS`, read from the store.
    pub fn model_artifact(&self, reference: &str) -> serde_json::Value {
        let (name, alias) = reference.split_once('@').expect("NAME@ALIAS");
        let versions = self.sluice(&["models", "show", name, "--json"]).ok().json();
        let version = versions
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["aliases"].as_array().is_some_and(|a| a.iter().any(|x| x == alias)))
            .unwrap_or_else(|| panic!("no version of {name} is `{alias}`: {versions}"));
        let file = format!("{}.json", version["artifact"].as_str().unwrap());
        let path = object_files(&self.home())
            .into_iter()
            .find(|f| f.file_name().unwrap().to_str().unwrap() == file)
            .expect("the model artifact");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// A `sluice --home <tmp>/home` command, not yet run.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(SLUICE);
        cmd.arg("--home")
            .arg(self.home())
            .args(args)
            .current_dir(self.path())
            .env_remove("SLUICE_HOME")
            .env_remove("SLUICE_METADATA");
        cmd
    }

    pub fn sluice<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Output {
        let out = self.command(args).output().expect("spawn sluice");
        Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `sluice run SPEC --json ARGS...`, which must succeed; returns its events.
    #[track_caller]
    pub fn run_json(&self, spec: &Path, extra: &[&str]) -> Events {
        let mut args = vec!["run".to_string(), spec.display().to_string(), "--json".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let events = self.sluice(&args).ok().events();
        assert_eq!(events.finished()["status"], "succeeded");
        events
    }
}

/// The path of an artifact in a home's store.
pub fn object_path(home: &Path, hash: &str, ext: &str) -> PathBuf {
    home.join("artifacts/objects").join(&hash[..2]).join(format!("{hash}.{ext}"))
}

/// Every file under `home/artifacts/objects`.
pub fn object_files(home: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() { walk(&p, out) } else { out.push(p) }
        }
    }
    let mut out = Vec::new();
    walk(&home.join("artifacts/objects"), &mut out);
    out.sort();
    out
}

/// Checks that every stored object's BLAKE3 hash is its file name, in the folder named after
/// its first two hex digits; returns how many objects there are.
#[track_caller]
pub fn check_objects_match_their_names(home: &Path) -> usize {
    let files = object_files(home);
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        let (stem, ext) = name.split_once('.').unwrap_or_else(|| panic!("object without extension: {}", f.display()));
        assert!(["parquet", "json"].contains(&ext), "unexpected object {}", f.display());
        let bytes = std::fs::read(f).unwrap();
        assert_eq!(blake3::hash(&bytes).to_hex().as_str(), stem, "object {} does not hash to its name", f.display());
        let folder = f.parent().unwrap().file_name().unwrap().to_str().unwrap();
        assert_eq!(folder, &stem[..2], "object {} is in the wrong folder", f.display());
    }
    files.len()
}

/// Read a Parquet file's numeric `column` as f64 values, in row order.
pub fn parquet_f64_column(path: &Path, column: &str) -> Vec<f64> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Float64Type;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let mut values = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = batch.column_by_name(column).unwrap_or_else(|| panic!("no column `{column}` in {}", path.display()));
        let col = arrow::compute::cast(col, &arrow::datatypes::DataType::Float64).unwrap();
        let col = col.as_primitive_opt::<Float64Type>().unwrap_or_else(|| panic!("`{column}` is {}", col.data_type()));
        assert_eq!(col.null_count(), 0, "`{column}` has nulls");
        values.extend(col.values().iter().copied());
    }
    values
}

/// Every batch of a Parquet file.
pub fn read_parquet(path: &Path) -> Vec<arrow::array::RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}
