//! Hyperparameter studies through `sluice run`: the study survives SIGKILL and continues without
//! losing or repeating finished trials, and two processes share one study without duplicates —
//! on one home, or on two homes (two machines) sharing a PostgreSQL metadata store.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use crate::support::{Events, Sandbox, adult_example};

/// `examples/adult/tune.yaml` next to a copy of the Adult data, with a smaller budget.
fn tune_spec(sb: &Sandbox, study: &str, trials: u32, pruner: &str) -> PathBuf {
    let pipeline = sb.copy_adult();
    let text = std::fs::read_to_string(adult_example().join("tune.yaml")).unwrap();
    let replaced = text
        .replace("study: adult-income-tuned", &format!("study: {study}"))
        .replace("trials: 30", &format!("trials: {trials}\n      parallel: 2"))
        .replace("num_rounds: 300", "num_rounds: 80")
        .replace("pruner: {kind: asha, min_resource: 10, reduction_factor: 3}", &format!("pruner: {pruner}"));
    assert_ne!(text, replaced);
    let path = pipeline.with_file_name("tune.yaml");
    std::fs::write(&path, replaced).unwrap();
    path
}

fn show(sb: &Sandbox, study: &str) -> Value {
    sb.sluice(&["tune", "show", study, "--json"]).ok().json()
}

fn trials(shown: &Value) -> Vec<Value> {
    shown["trials"].as_array().unwrap().clone()
}

#[test]
fn a_study_survives_sigkill_and_continues_without_repeating_trials() {
    let sb = Sandbox::new();
    let spec = tune_spec(&sb, "kill-me", 16, "median");
    let mut child = sb
        .command(&["run", spec.to_str().unwrap(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sluice");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut reported = 0;
    for line in stdout.lines() {
        let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
        assert_ne!(event["event"], "run_finished", "the study finished before it could be killed");
        if event["event"] == "step_report" && event["text"].as_str().unwrap().starts_with("trial ") {
            reported += 1;
            if reported == 5 {
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let before = show(&sb, "kill-me");
    let finished_before: BTreeMap<u64, Value> = trials(&before)
        .into_iter()
        .filter(|t| t["state"] != "running")
        .map(|t| (t["number"].as_u64().unwrap(), t))
        .collect();
    // Five trials had reported their result; a trial is recorded just after it reports.
    assert!(finished_before.len() >= 3, "{} finished: {before:#}", finished_before.len());
    assert!(trials(&before).len() < 16, "the kill came before the budget was spent");

    let resumed = sb.run_json(&spec, &[]);
    let after = show(&sb, "kill-me");
    let all = trials(&after);
    let numbers: Vec<u64> = all.iter().map(|t| t["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (0..16).collect::<Vec<_>>(), "every number once, none lost");
    assert!(all.iter().all(|t| t["state"] == "complete" || t["state"] == "pruned"), "{after:#}");
    // Trials that finished before the kill were kept as they were, not run again.
    for (n, t) in &finished_before {
        assert_eq!(&all[*n as usize], t, "trial {n} changed after the resume");
    }
    let second_run = resumed.run_id();
    // Trials the kill interrupted were handed out again, with the parameters they had.
    for t in trials(&before).iter().filter(|t| t["state"] == "running") {
        let again = &all[t["number"].as_u64().unwrap() as usize];
        assert_eq!((&again["attempt"], &again["run_id"]), (&Value::from(1), &Value::from(second_run.as_str())));
        if !t["params"].as_object().unwrap().is_empty() {
            assert_eq!(again["params"], t["params"]);
        }
    }
    let rerun = all.iter().filter(|t| t["run_id"] == second_run.as_str()).count();
    assert_eq!(rerun, 16 - finished_before.len(), "the resumed run ran exactly the unfinished trials");
    let trained = resumed.of_type("step_finished").find(|e| e["step"] == "train").unwrap().clone();
    let run = sb.sluice(&["runs", "show", &second_run, "--json"]).ok().json();
    let metric = |key: &str| {
        run["metrics"].as_array().unwrap().iter().find(|m| m["key"] == key && m["step"] == "train").unwrap()["value"]
            .as_f64()
            .unwrap()
    };
    let best = sluice_best(&after);
    assert_eq!(metric("tune_best_trial") as u64, best.0, "{trained:#}");
    assert!((metric("tune_best_roc_auc") - best.1).abs() < 1e-12);
    assert!(best.1 > 0.92, "best validation AUC {}", best.1);
    // The run lists the trials it ran (its child runs), each with its values, and only those.
    let listed = run["trials"].as_array().unwrap();
    let mine: Vec<u64> =
        all.iter().filter(|t| t["run_id"] == second_run.as_str()).map(|t| t["number"].as_u64().unwrap()).collect();
    assert_eq!(listed.iter().map(|t| t["trial"]["number"].as_u64().unwrap()).collect::<Vec<_>>(), mine);
    for t in listed {
        assert_eq!(t["study"], "kill-me");
        let number = t["trial"]["number"].as_u64().unwrap() as usize;
        assert_eq!(t["trial"]["value"], all[number]["value"], "trial {number}");
        assert!(!t["trial"]["intermediate"].as_array().unwrap().is_empty(), "a GBDT trial reports every round");
    }
    let text = sb.sluice(&["runs", "show", &second_run]).ok().stdout;
    assert!(text.contains("kill-me") && text.contains("reported"), "{text}");
}

/// The best complete trial's number and value in `tune show --json`.
fn sluice_best(shown: &Value) -> (u64, f64) {
    (shown["best"]["number"].as_u64().unwrap(), shown["best"]["value"].as_f64().unwrap())
}

fn run_in_background(sb: &Sandbox, spec: &Path) -> std::process::Child {
    sb.command(&["run", spec.to_str().unwrap(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice")
}

#[test]
fn two_processes_share_one_study_without_duplicate_trials() {
    let sb = Sandbox::new();
    let spec = tune_spec(&sb, "shared", 24, "none");
    // A first run with a budget of 2 trials leaves the data steps cached, so both processes
    // below reach the study at about the same time.
    sb.run_json(&spec, &["--set", "train.tune.trials=2"]);
    let a = run_in_background(&sb, &spec);
    let b = run_in_background(&sb, &spec);
    let mut run_ids = BTreeSet::new();
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let events = Events(stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect());
        assert_eq!(events.finished()["status"], "succeeded");
        run_ids.insert(events.run_id());
    }
    let shown = show(&sb, "shared");
    let all = trials(&shown);
    let numbers: Vec<u64> = all.iter().map(|t| t["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (0..24).collect::<Vec<_>>(), "24 trials, each number once");
    assert!(all.iter().all(|t| t["state"] == "complete"));
    for id in &run_ids {
        let n = all.iter().filter(|t| t["run_id"] == id.as_str()).count();
        assert!(n >= 2, "run {id} ran {n} of the 22 new trials: the processes did not share the work");
    }
    // Parameters are unique per trial: no two workers drew the same trial.
    let distinct: BTreeSet<String> = all.iter().map(|t| t["params"].to_string()).collect();
    assert_eq!(distinct.len(), 24);
}

#[test]
fn two_homes_sharing_postgres_metadata_split_one_study_and_see_each_others_runs() {
    let scratch = sluice_store::testing::PgScratch::new();
    // Two homes stand for two machines: separate directories and artifact stores, one database.
    let homes = [Sandbox::new(), Sandbox::new()];
    let specs: Vec<PathBuf> = homes.iter().map(|sb| tune_spec(sb, "team", 16, "none")).collect();
    let children: Vec<_> = homes
        .iter()
        .zip(&specs)
        .map(|(sb, spec)| {
            sb.command(&["run", spec.to_str().unwrap(), "--json"])
                .env("SLUICE_METADATA", &scratch.url)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn sluice")
        })
        .collect();
    let mut run_ids = BTreeSet::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let events = Events(stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect());
        run_ids.insert(events.run_id());
    }
    let on_postgres = |sb: &Sandbox, args: &[&str]| {
        let out = sb.command(args).env("SLUICE_METADATA", &scratch.url).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let shown = on_postgres(&homes[1], &["tune", "show", "team", "--json"]);
    let all = trials(&shown);
    let numbers: Vec<u64> = all.iter().map(|t| t["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (0..16).collect::<Vec<_>>(), "16 trials, each number once");
    assert!(all.iter().all(|t| t["state"] == "complete"));
    for id in &run_ids {
        let n = all.iter().filter(|t| t["run_id"] == id.as_str()).count();
        // At least one each: how the 16 split depends on which home finishes its data steps first.
        assert!(n >= 1, "run {id} ran none of the 16 trials: the homes did not share the work");
    }
    // Each home lists both runs and both registrations; neither home has a metadata.db.
    let runs = on_postgres(&homes[0], &["runs", "list", "--json"]);
    let listed: BTreeSet<String> =
        runs.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(listed, run_ids);
    let versions = on_postgres(&homes[0], &["models", "show", "adult-income-tuned", "--json"]);
    let versions = versions.as_array().unwrap();
    assert!(!versions.is_empty(), "the best model was registered");
    assert!(versions.iter().all(|v| run_ids.contains(v["run_id"].as_str().unwrap())), "{versions:?}");
    assert!(homes.iter().all(|sb| !sb.home().join("metadata.db").exists()));
    // Without the variable, a home is its own SQLite store again and knows nothing of the study.
    let alone = homes[0].sluice(&["tune", "show", "team", "--json"]);
    assert_ne!(alone.code, Some(0), "{}", alone.stdout);
}

#[test]
fn a_grid_search_with_cross_validation_tries_every_point() {
    let sb = Sandbox::new();
    let spec = sb.copy_adult();
    let text = std::fs::read_to_string(&spec).unwrap();
    let tuned = text.replace(
        "    params:\n      l2: 0.0001\n",
        "    params:\n      l2: 0.0001\n    cv: {folds: 3, method: stratified}\n    tune:\n      sampler: grid\n      metric: log_loss\n      space:\n        l2: {log_uniform: [0.0001, 100], grid: [0.0001, 1, 100]}\n        fit_intercept: {choice: [true, false]}\n",
    );
    assert_ne!(text, tuned);
    std::fs::write(&spec, tuned).unwrap();
    let events = sb.run_json(&spec, &[]);
    let list = sb.sluice(&["tune", "list", "--json"]).ok().json();
    let name = list[0]["study"].as_str().unwrap().to_string();
    assert!(name.starts_with("adult-income.train."), "default study name: {name}");
    let shown = show(&sb, &name);
    let all = trials(&shown);
    // 3 values of l2 x 2 of fit_intercept, each once, scored by the 3-fold mean log loss.
    assert_eq!(all.len(), 6);
    let points: BTreeSet<String> = all.iter().map(|t| t["params"].to_string()).collect();
    assert_eq!(points.len(), 6);
    for t in &all {
        assert_eq!(t["state"], "complete");
        assert_eq!(t["value"], t["metrics"]["cv_log_loss_mean"], "{t:#}");
    }
    assert_eq!(shown["study"]["direction"], "minimize");
    let best = &shown["best"];
    let min = all.iter().map(|t| t["value"].as_f64().unwrap()).fold(f64::INFINITY, f64::min);
    assert_eq!(best["value"].as_f64().unwrap(), min);
    // Heavy L2 (100) is the worst choice here; the best model is downstream of the step.
    assert_ne!(best["params"]["l2"], 100.0);
    assert!(events.ran().contains("evaluate") && events.ran().contains("register"));
    // A second run reuses the step (cache) without touching the study.
    let again = sb.run_json(&spec, &[]);
    assert!(again.cached().contains("train"));
    assert_eq!(trials(&show(&sb, &name)).len(), 6);
}

#[test]
fn trials_over_their_memory_budget_fail_and_a_larger_budget_continues_the_study() {
    let sb = Sandbox::new();
    let spec = tune_spec(&sb, "mem", 4, "none");
    let text = std::fs::read_to_string(&spec).unwrap();
    // 6 MB is above the up-front estimate of the smaller trials but below what training Adult
    // allocates: the metered allocations stop them (one trial at a time here, so training runs
    // on the trial's own metered pool rather than on per-trial threads; two at a time below).
    std::fs::write(&spec, text.replace("parallel: 2", "parallel: 1\n      trial_memory: 6MB")).unwrap();
    let out = sb.sluice(&["run", spec.to_str().unwrap()]);
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("step `train` failed") && out.stderr.contains("no trial completed"), "{}", out.stderr);
    let failed = trials(&show(&sb, "mem"));
    assert!(failed.iter().all(|t| t["state"] == "failed"), "{failed:#?}");
    let measured: Vec<f64> = failed
        .iter()
        .filter_map(|t| t["error"].as_str()?.strip_prefix("used ")?.split(' ').next()?.parse().ok())
        .collect();
    assert!(!measured.is_empty(), "no trial was stopped by what it allocated: {failed:#?}");
    assert!(measured.iter().all(|m| *m >= 6.0), "{measured:?}");
    // With room to train, the same study goes on from trial 4; each trial's peak is recorded.
    let roomy = text.replace("parallel: 2", "parallel: 2\n      trial_memory: 256MB").replace("trials: 4", "trials: 8");
    std::fs::write(&spec, roomy).unwrap();
    sb.run_json(&spec, &[]);
    let all = trials(&show(&sb, "mem"));
    assert_eq!(all.len(), 8);
    for t in &all[4..] {
        assert_eq!(t["state"], "complete", "{t:#}");
        let peak = t["metrics"]["peak_memory_mib"].as_f64().unwrap();
        assert!((1.0..256.0).contains(&peak), "{t:#}");
    }
    // The leaderboard shows each trial's peak.
    let text = sb.sluice(&["tune", "show", "mem"]).ok().stdout;
    let best = show(&sb, "mem")["best"]["metrics"]["peak_memory_mib"].as_f64().unwrap();
    assert!(text.contains("peak MiB") && text.contains(&format!("{best:.1}")), "{text}");
}

#[test]
fn a_bad_sampler_or_space_fails_before_anything_runs() {
    let sb = Sandbox::new();
    let spec = tune_spec(&sb, "bad", 4, "none");
    let text = std::fs::read_to_string(&spec).unwrap();
    for (from, to, says) in [
        ("sampler: tpe", "sampler: tpx", "`tune.sampler`: unknown variant `tpx`"),
        ("learning_rate: {log_uniform: [0.02, 0.3]}", "learning_rate: {log_uniform: [0.3, 0.02]}", "needs low < high"),
        ("pruner: none", "pruner: {kind: asha, reduction: 3}", "`tune.pruner`: unknown field `reduction`"),
    ] {
        std::fs::write(&spec, text.replace(from, to)).unwrap();
        for verb in ["run", "plan"] {
            let out = sb.sluice(&[verb, spec.to_str().unwrap()]);
            assert_ne!(out.code, Some(0), "{verb} {to}");
            assert!(out.stderr.contains("step `train`") && out.stderr.contains(says), "{verb} {to}: {}", out.stderr);
        }
    }
    // Nothing ran: no run was recorded.
    let runs = sb.sluice(&["runs", "list", "--json"]);
    if runs.code == Some(0) {
        assert_eq!(runs.json().as_array().map(|a| a.len()), Some(0), "{}", runs.stdout);
    }
}
