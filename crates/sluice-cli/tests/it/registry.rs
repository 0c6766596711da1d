//! Registry gates, aliases, promotion and tags, on the quickstart pipeline.

use crate::support::Sandbox;

const GATES: &str =
    "    alias: champion\n    gates:\n      - roc_auc >= 0.85\n      - roc_auc >= champion.roc_auc - 0.002\n";

fn champion(sb: &Sandbox) -> u64 {
    let models = sb.sluice(&["models", "list", "--json"]).ok().json();
    let aliases = models[0]["aliases"].as_array().unwrap();
    aliases.iter().find(|a| a[0] == "champion").map(|a| a[1].as_u64().unwrap()).expect("a champion")
}

#[test]
fn gates_guard_the_alias_and_promote_runs_them() {
    let sb = Sandbox::new();
    let spec = sb.copy_adult();
    let text = std::fs::read_to_string(&spec).unwrap().replace("    alias: champion\n", GATES);
    std::fs::write(&spec, text).unwrap();
    let spec = spec.to_str().unwrap();
    let weak = ["--set", "train.params.l2=0.5"];

    // A heavily regularized model first: no champion yet, so only the absolute gate applies.
    sb.sluice(&["run", spec, weak[0], weak[1]]).ok();
    assert_eq!(champion(&sb), 1);

    // The default model beats it on the same test data: the alias moves.
    sb.sluice(&["run", spec]).ok();
    assert_eq!(champion(&sb), 2);

    // The weak model again: rejected against the champion, which stays; both numbers are shown.
    let rejected = sb.sluice(&["run", spec, weak[0], weak[1]]).expect_code(1);
    let err = &rejected.stderr;
    assert!(err.contains("step `register` failed") && err.contains("rejected by its gates"), "{err}");
    assert!(err.contains("`roc_auc >= champion.roc_auc - 0.002` FAILED"), "{err}");
    assert!(err.contains("champion = adult-income:2") && err.contains("on the same data"), "{err}");
    assert!(!err.contains("`roc_auc >= 0.85` FAILED"), "the absolute gate passes: {err}");
    assert_eq!(champion(&sb), 2, "a failing gate leaves the alias untouched");

    // promote runs the version's recorded gates against the current holder.
    let refused = sb.sluice(&["models", "promote", "adult-income:1", "--json"]).expect_code(1);
    let verdict = refused.json();
    assert_eq!(verdict["promoted"], false);
    let failed = verdict["gates"].as_array().unwrap().iter().find(|g| g["passed"] == false).unwrap();
    assert!(failed["candidate"].as_f64().unwrap() < failed["bound"].as_f64().unwrap());
    assert_eq!(champion(&sb), 2);

    // `models alias` moves an alias without checks; promote then brings v2 back through its gates.
    sb.sluice(&["models", "alias", "adult-income@champion", "1"]).ok();
    assert_eq!(champion(&sb), 1);
    let promoted = sb.sluice(&["models", "promote", "adult-income:2", "--json"]).ok().json();
    assert_eq!(promoted["promoted"], true);
    assert_eq!(champion(&sb), 2);

    sb.sluice(&["models", "tag", "adult-income:1", "reason=too-regularized"]).ok();
    let versions = sb.sluice(&["models", "show", "adult-income", "--json"]).ok().json();
    assert_eq!(versions[0]["tags"], serde_json::json!([["reason", "too-regularized"]]));
    assert_eq!(versions[1]["gates"].as_array().unwrap().len(), 2);
    assert!(versions[1]["evaluation"]["data"].is_string(), "the evaluation data is recorded: {versions}");
    // `models list` shows the latest version's tags.
    let latest = sb.sluice(&["models", "list", "--json"]).ok().json()[0]["latest_version"].as_u64().unwrap();
    sb.sluice(&["models", "tag", &format!("adult-income:{latest}"), "stage=candidate"]).ok();
    let listed = sb.sluice(&["models", "list", "--json"]).ok().json();
    assert_eq!(listed[0]["latest_tags"], serde_json::json!({"stage": "candidate"}), "{listed}");
    assert!(sb.sluice(&["models", "list"]).ok().stdout.contains("stage=candidate"));

    // Bad references are errors that say what was expected.
    let bad = sb.sluice(&["models", "promote", "adult-income"]).expect_code(1);
    assert!(bad.stderr.contains("expected `NAME:VERSION`"), "{}", bad.stderr);
    let missing = sb.sluice(&["models", "alias", "adult-income@champion", "9"]).expect_code(1);
    assert!(missing.stderr.contains("adult-income:9"), "{}", missing.stderr);
}
