//! Running a pipeline: scheduling, cache decisions and recording.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use sluice_core::{ArtifactKind, ContentHash};
use sluice_engine::Engine;
use sluice_spec::{Pipeline, Step, Suggestion};
use sluice_store::{KeyInput, OutputRecord, RunRecord, RunStatus, StepCompletion, StepRecord, StepStatus, now};
use tokio::task::JoinSet;

use crate::cache_key::cache_key;
use crate::error::{Result, RunnerError, StepError};
use crate::event::{Event, Reporter};
use crate::steps::{StepCtx, execute};
use crate::workspace::Workspace;

#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Steps to run at once.
    pub jobs: usize,
    /// Steps to re-run even if cached.
    pub force: Vec<String>,
    /// The `--set` assignments the pipeline was loaded with (recorded as run parameters).
    pub overrides: Vec<String>,
    /// `--engine`: where data steps run, over the spec's `engine:`.
    pub engine: Option<sluice_spec::EngineUrl>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            jobs: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            force: vec![],
            overrides: vec![],
            engine: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RunSummary {
    pub run_id: String,
    pub status: RunStatus,
    pub ran: Vec<String>,
    pub cached: Vec<String>,
    /// Failed steps with their error chains.
    pub failed: Vec<(String, String)>,
    /// Steps not run because something upstream failed.
    pub skipped: Vec<String>,
}

/// The full error chain of a step failure, on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

/// What must be unchanged for a remembered file hash to be reused. The change time and inode
/// catch edits that preserve the modification time (`cp -p`, `rsync -a`, `touch -r`): only the
/// kernel sets them.
fn fingerprint(meta: &std::fs::Metadata) -> String {
    let nanos = |t: std::io::Result<std::time::SystemTime>| {
        t.ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0)
    };
    #[cfg(unix)]
    let extra = {
        use std::os::unix::fs::MetadataExt;
        format!(":{}.{}:{}:{}", meta.ctime(), meta.ctime_nsec(), meta.ino(), meta.dev())
    };
    #[cfg(not(unix))]
    let extra = String::new();
    format!("{}:{}{extra}", meta.len(), nanos(meta.modified()))
}

/// Hash a source file, reusing the remembered hash while its fingerprint is unchanged.
pub(crate) fn file_hash(ws: &Workspace, path: &std::path::Path) -> std::result::Result<ContentHash, StepError> {
    let meta =
        std::fs::metadata(path).map_err(|e| StepError::Invalid(format!("cannot read `{}`: {e}", path.display())))?;
    let key = path.display().to_string();
    let print = fingerprint(&meta);
    if let Some(h) = ws.meta.file_hash(&key, &print)? {
        return Ok(h);
    }
    let h = ContentHash::of_file(path).map_err(|e| StepError::Invalid(chain(&e)))?;
    // A file modified within the filesystem's timestamp resolution of now could change again
    // without its times moving: only remember hashes of files that have been still for a while.
    let settled = meta.modified().ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age.as_secs() >= 2);
    if settled {
        ws.meta.remember_file_hash(&key, &print, &h)?;
    }
    Ok(h)
}

/// The inputs of a step's cache key: source files' hashes, or upstream artifacts' hashes.
pub(crate) async fn key_inputs(
    ws: &Workspace,
    base_dir: &std::path::Path,
    step: &Step,
    resolved: &[(sluice_spec::Input, OutputRecord)],
    seen: Option<&crate::steps::Seen>,
) -> std::result::Result<Vec<KeyInput>, StepError> {
    // A database or a stream can change without sluice seeing it: such sources run every time
    // (steps after them are still cached by the content of what they read).
    if step.config.always_runs() {
        let nonce = format!("{}:{}", uuid::Uuid::new_v4(), now());
        return Ok(vec![KeyInput { name: "read-at".into(), hash: ContentHash::of_bytes(nonce.as_bytes()) }]);
    }
    // Objects in a store are known by their listing: URL, size, ETag and modification time.
    if let sluice_spec::StepConfig::Source(source) = &step.config
        && sluice_core::is_url(source.path.as_str())
    {
        let (_, _, objects) = sluice_store::remote::list(source.path.as_str())
            .await
            .map_err(|e| StepError::Invalid(format!("source `{}`: {}", step.name, chain(&e))))?;
        let inputs = objects
            .iter()
            .map(|o| KeyInput {
                name: format!("object:{}", o.url),
                hash: ContentHash::of_bytes(o.fingerprint().as_bytes()),
            })
            .collect();
        // The step reads exactly the objects its key covers.
        if let Some(seen) = seen {
            let _ = seen.objects.set(objects);
        }
        return Ok(inputs);
    }
    if !step.files.is_empty() {
        return step
            .files
            .iter()
            .map(|f| {
                let name = f.strip_prefix(base_dir).unwrap_or(f).display().to_string();
                Ok(KeyInput { name: format!("file:{name}"), hash: file_hash(ws, f)? })
            })
            .collect();
    }
    let mut inputs: Vec<KeyInput> = resolved
        .iter()
        .map(|(i, o)| KeyInput { name: format!("{}={}", i.role, i.source), hash: o.artifact.hash })
        .collect();
    // A registered model to continue from: the version it resolves to now.
    if let sluice_spec::StepConfig::Train(t) = &step.config
        && let Some(reference) = &t.warm_start
    {
        let (name, selector) = sluice_store::ModelSelector::parse(reference);
        let version = match ws.meta.resolve_model(&name, &selector) {
            Ok(v) => Some(v),
            Err(sluice_store::StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let hash = version.as_ref().map_or_else(|| ContentHash::of_bytes(b"nothing registered"), |v| v.artifact);
        inputs.push(KeyInput { name: format!("warm_start={reference}"), hash });
        // The step continues exactly the version its key covers.
        if let Some(seen) = seen {
            let _ = seen.warm_start.set(version);
        }
    }
    Ok(inputs)
}

/// Reuse cached outputs if every artifact is still present in the store and, for steps whose
/// effect lives outside the artifact store (`register`), the effect still holds: a cached
/// `register` whose alias has since moved to another version runs again to move it back.
pub(crate) async fn cache_hit(
    ws: &Workspace,
    step: &Step,
    resolved: &[(sluice_spec::Input, OutputRecord)],
    key: &ContentHash,
) -> std::result::Result<Option<Vec<OutputRecord>>, StepError> {
    let Some(outputs) = ws.meta.lookup_cache(key)? else { return Ok(None) };
    for o in &outputs {
        if !ws.artifacts.exists(&o.artifact.hash, o.artifact.kind).await? {
            return Ok(None);
        }
    }
    if let sluice_spec::StepConfig::Register(reg) = &step.config {
        let Some((_, model)) = resolved.iter().find(|(i, _)| i.role == "model") else { return Ok(None) };
        let selector = match &reg.alias {
            Some(alias) => sluice_store::ModelSelector::Alias(alias.clone()),
            None => sluice_store::ModelSelector::Latest,
        };
        let holds = match ws.meta.resolve_model(&reg.name, &selector) {
            Ok(v) if reg.alias.is_some() => v.artifact == model.artifact.hash,
            // Without an alias, the model only needs to be some version of the name.
            Ok(_) => ws.meta.model_versions(&reg.name)?.iter().any(|v| v.artifact == model.artifact.hash),
            Err(_) => false,
        };
        if !holds {
            return Ok(None);
        }
    }
    Ok(Some(outputs))
}

enum Outcome {
    Cached {
        key: ContentHash,
        outputs: Vec<OutputRecord>,
        inputs: Vec<KeyInput>,
    },
    Ran {
        key: ContentHash,
        outputs: Vec<OutputRecord>,
        rows: Option<u64>,
        metrics: Vec<(String, f64)>,
        inputs: Vec<KeyInput>,
        after_commit: Option<crate::steps::AfterCommit>,
    },
}

/// [`run`] as a boxed future, for steps that start a run themselves (an alert's retraining): a
/// concrete type breaks the cycle of `run`'s future containing its own.
pub(crate) fn run_boxed(
    ws: Arc<Workspace>,
    pipeline: Pipeline,
    options: RunOptions,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<RunSummary>> + Send>> {
    Box::pin(async move { run(ws, &pipeline, &options, Arc::new(crate::NoReporter)).await })
}

pub async fn run(
    ws: Arc<Workspace>,
    pipeline: &Pipeline,
    options: &RunOptions,
    reporter: Arc<dyn Reporter>,
) -> Result<RunSummary> {
    for f in &options.force {
        if pipeline.step(f).is_none() {
            return Err(RunnerError::UnknownForce {
                step: f.clone(),
                suggestion: Suggestion::closest(f, pipeline.steps.iter().map(|s| s.name.as_str())),
            });
        }
    }
    crate::tune::check_pipeline(pipeline)?;
    // The engine answers before the run is recorded: a mistyped scheduler address is an error,
    // not a failed run in the history. DataFusion partitions follow the cores, not `jobs`
    // (artifacts depend on neither).
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let url = options.engine.as_ref().or(pipeline.engine.as_ref()).unwrap_or(&sluice_spec::EngineUrl::Local);
    let engine_error = |source| RunnerError::Engine { engine: url.to_string(), source };
    let engine = Engine::from_url(url, cores).map_err(engine_error)?;
    engine.reachable().await.map_err(engine_error)?;
    let started = Instant::now();
    ws.meta.reap_dead_runs()?;
    ws.artifacts.clean_scratch();
    let run_id = uuid::Uuid::now_v7().to_string();
    ws.meta.begin_run(&RunRecord {
        id: run_id.clone(),
        pipeline: pipeline.name.clone(),
        spec_path: pipeline.spec_path.display().to_string(),
        status: RunStatus::Running,
        started_at: now(),
        finished_at: None,
        params: options
            .overrides
            .iter()
            .map(|o| {
                o.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).unwrap_or((o.clone(), String::new()))
            })
            .collect(),
        error: None,
        pid: std::process::id(),
    })?;
    let jobs = options.jobs.max(1);
    reporter.event(&Event::RunStarted {
        run_id: run_id.clone(),
        pipeline: pipeline.name.clone(),
        steps: pipeline.steps.iter().map(|s| s.name.clone()).collect(),
        jobs,
    });

    let mut summary = RunSummary {
        run_id: run_id.clone(),
        status: RunStatus::Running,
        ran: vec![],
        cached: vec![],
        failed: vec![],
        skipped: vec![],
    };
    // Whatever happens below, the run record is closed: a runner error must not leave the run
    // looking `running` until a later run reaps it.
    if let Err(e) = schedule(&ws, pipeline, options, &engine, jobs, &reporter, &mut summary).await {
        let _ = ws.meta.finish_run(&run_id, RunStatus::Failed, Some(&chain(&e)));
        return Err(e);
    }
    summary.status = if summary.failed.is_empty() { RunStatus::Succeeded } else { RunStatus::Failed };
    let error = summary.failed.first().map(|(s, e)| format!("step `{s}` failed: {e}"));
    ws.meta.finish_run(&run_id, summary.status, error.as_deref())?;
    reporter.event(&Event::RunFinished {
        run_id,
        status: summary.status.as_str().into(),
        elapsed_ms: started.elapsed().as_millis() as u64,
        ran: summary.ran.len(),
        cached: summary.cached.len(),
        failed: summary.failed.len(),
    });
    Ok(summary)
}

/// A step's cache key and the inputs it was computed from, once known.
type Keyed = Option<(ContentHash, Vec<KeyInput>)>;

/// What a step task reports back: its name, timing, and outcome. A failure carries the cache key
/// and inputs when they were computed before the step failed.
struct Finished {
    name: String,
    t0: Instant,
    started_at: String,
    outcome: std::result::Result<Outcome, (Keyed, StepError)>,
}

async fn step_task(ctx: StepCtx, base_dir: std::path::PathBuf, force: bool) -> Finished {
    let started_at = now();
    let t0 = Instant::now();
    let name = ctx.step.name.clone();
    let mut keyed = None;
    let outcome = async {
        let inputs = key_inputs(&ctx.ws, &base_dir, &ctx.step, &ctx.inputs, Some(&ctx.seen)).await?;
        let key = cache_key(&ctx.step, &inputs);
        keyed = Some((key, inputs.clone()));
        if !force && let Some(outputs) = cache_hit(&ctx.ws, &ctx.step, &ctx.inputs, &key).await? {
            return Ok(Outcome::Cached { key, outputs, inputs });
        }
        ctx.reporter.event(&Event::StepStarted { step: name.clone(), kind: ctx.step.kind().into(), key: key.short() });
        let executed = execute(&ctx).await?;
        Ok(Outcome::Ran {
            key,
            outputs: executed.outputs,
            rows: executed.rows,
            metrics: executed.metrics,
            inputs,
            after_commit: executed.after_commit,
        })
    }
    .await;
    Finished { name, t0, started_at, outcome: outcome.map_err(|e: StepError| (keyed, e)) }
}

/// Launch ready steps (pipeline order, at most `jobs` at once) until every step has finished,
/// failed, or been skipped because something it reads failed.
async fn schedule(
    ws: &Arc<Workspace>,
    pipeline: &Pipeline,
    options: &RunOptions,
    engine: &Engine,
    jobs: usize,
    reporter: &Arc<dyn Reporter>,
    summary: &mut RunSummary,
) -> Result<()> {
    let run_id = summary.run_id.clone();
    let forced: HashSet<&str> = options.force.iter().map(String::as_str).collect();
    let mut outputs: HashMap<String, Vec<OutputRecord>> = HashMap::new();
    let mut done: HashSet<String> = HashSet::new();
    let mut blocked: HashSet<String> = HashSet::new();
    let mut launched: HashSet<String> = HashSet::new();
    let mut tasks: JoinSet<Finished> = JoinSet::new();
    let mut task_names: HashMap<tokio::task::Id, String> = HashMap::new();
    let record = |step: &Step,
                  status,
                  started_at: String,
                  elapsed_ms,
                  keyed: Option<(ContentHash, Vec<KeyInput>)>,
                  rows,
                  error| {
        let (key, inputs) = keyed.unwrap_or_else(|| (ContentHash::of_bytes(b""), Vec::new()));
        StepRecord {
            run_id: run_id.clone(),
            step: step.name.clone(),
            kind: step.kind().to_string(),
            cache_key: key,
            status,
            started_at,
            duration_ms: elapsed_ms,
            rows,
            config: step.config.to_json(),
            inputs,
            error,
        }
    };

    loop {
        for step in &pipeline.steps {
            if tasks.len() >= jobs {
                break;
            }
            if launched.contains(&step.name) {
                continue;
            }
            let upstream = step.upstream();
            if let Some(failed) = upstream.iter().find(|u| blocked.contains(**u)) {
                launched.insert(step.name.clone());
                blocked.insert(step.name.clone());
                let reason = format!("upstream `{failed}` failed or was skipped");
                ws.meta.record_incomplete(&record(
                    step,
                    StepStatus::Skipped,
                    now(),
                    0,
                    None,
                    None,
                    Some(reason.clone()),
                ))?;
                reporter.event(&Event::StepSkipped { step: step.name.clone(), reason });
                summary.skipped.push(step.name.clone());
                continue;
            }
            if !upstream.iter().all(|u| done.contains(*u)) {
                continue;
            }
            launched.insert(step.name.clone());
            let mut resolved = Vec::new();
            for input in &step.inputs {
                let found = outputs
                    .get(&input.source.step)
                    .and_then(|outs| outs.iter().find(|o| o.name == input.source.output))
                    .cloned()
                    .ok_or_else(|| {
                        RunnerError::Internal(format!("output `{}` missing after its step finished", input.source))
                    })?;
                resolved.push((input.clone(), found));
            }
            let ctx = StepCtx {
                ws: ws.clone(),
                engine: engine.clone(),
                run_id: run_id.clone(),
                pipeline: pipeline.name.clone(),
                step: step.clone(),
                inputs: resolved,
                reporter: reporter.clone(),
                base_dir: pipeline.base_dir.clone(),
                seen: Default::default(),
            };
            let handle = tasks.spawn(step_task(ctx, pipeline.base_dir.clone(), forced.contains(step.name.as_str())));
            task_names.insert(handle.id(), step.name.clone());
        }
        let Some(joined) = tasks.join_next_with_id().await else { break };
        let finished = match joined {
            Ok((_, f)) => f,
            Err(e) => {
                // A panic in a step is that step's failure, not the run's end.
                let name = task_names.get(&e.id()).cloned().unwrap_or_default();
                let message = format!("internal error: the step panicked ({e}); this is a bug");
                Finished {
                    name,
                    t0: Instant::now(),
                    started_at: now(),
                    outcome: Err((None, StepError::Internal(message))),
                }
            }
        };
        let Finished { name, t0, started_at, outcome } = finished;
        let step = pipeline.step(&name).ok_or_else(|| RunnerError::Internal(format!("unknown step `{name}`")))?;
        let elapsed_ms = t0.elapsed().as_millis() as u64;
        match outcome {
            Ok(Outcome::Cached { key, outputs: outs, inputs }) => {
                let rows = outs
                    .iter()
                    .filter(|o| o.artifact.kind == ArtifactKind::Dataset)
                    .filter_map(|o| o.artifact.rows)
                    .reduce(|a, b| a + b);
                ws.meta.record_step(&StepCompletion {
                    step: record(step, StepStatus::Cached, started_at, elapsed_ms, Some((key, inputs)), rows, None),
                    outputs: outs.clone(),
                    metrics: vec![],
                })?;
                reporter.event(&Event::StepCached {
                    step: name.clone(),
                    kind: step.kind().into(),
                    key: key.short(),
                    rows,
                });
                summary.cached.push(name.clone());
                outputs.insert(name.clone(), outs);
                done.insert(name);
            }
            Ok(Outcome::Ran { key, outputs: outs, rows, metrics, inputs, after_commit }) => {
                ws.meta.record_step(&StepCompletion {
                    step: record(step, StepStatus::Ran, started_at, elapsed_ms, Some((key, inputs)), rows, None),
                    outputs: outs.clone(),
                    metrics,
                })?;
                if let Some(commit) = after_commit
                    && let Err(e) = commit.await
                {
                    reporter.event(&Event::StepReport {
                        step: name.clone(),
                        text: format!(
                            "{name}: stored, but acknowledging its messages failed ({e}); they will be delivered again"
                        ),
                    });
                }
                reporter.event(&Event::StepFinished {
                    step: name.clone(),
                    rows,
                    elapsed_ms,
                    outputs: outs.iter().map(|o| (o.name.clone(), o.artifact.hash.to_string())).collect(),
                });
                summary.ran.push(name.clone());
                outputs.insert(name.clone(), outs);
                done.insert(name);
            }
            Err((keyed, e)) => {
                let message = chain(&e);
                ws.meta.record_incomplete(&record(
                    step,
                    StepStatus::Failed,
                    started_at,
                    elapsed_ms,
                    keyed,
                    None,
                    Some(message.clone()),
                ))?;
                reporter.event(&Event::StepFailed { step: name.clone(), error: message.clone(), elapsed_ms });
                summary.failed.push((name.clone(), message));
                blocked.insert(name);
            }
        }
    }
    Ok(())
}
