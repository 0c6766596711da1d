//! The Adult quickstart, end to end, as a user runs it (plain log output, no `--json`).

use crate::support::{ADULT_STEPS, Sandbox, adult_example, check_objects_match_their_names};

#[test]
fn adult_quickstart_trains_and_registers_a_good_model() {
    let sb = Sandbox::new();
    let spec = adult_example().join("pipeline.yaml");
    let out = sb.sluice(&["run", spec.to_str().unwrap()]).ok();
    assert!(out.stderr.contains("run succeeded"), "stderr:\n{}", out.stderr);
    assert!(out.stderr.contains("6 ran, 0 cached, 0 failed"), "stderr:\n{}", out.stderr);

    let runs = sb.sluice(&["runs", "list", "--json"]).ok().json();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["pipeline"], "adult-income");
    let id = runs[0]["id"].as_str().unwrap();

    // Every step ran, in pipeline order, and the datasets have the expected sizes.
    let show = sb.sluice(&["runs", "show", id, "--json"]).ok().json();
    assert_eq!(show["run"]["id"], id);
    let steps = show["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["step"]["step"].as_str().unwrap()).collect();
    assert_eq!(names, ADULT_STEPS);
    for s in steps {
        assert_eq!(s["step"]["status"], "ran", "{s:#?}");
    }
    let rows = |step: &str| steps.iter().find(|s| s["step"]["step"] == step).unwrap()["step"]["rows"].as_u64();
    // UCI Adult: 32,561 training + 16,281 test rows; an 80/20 split of them.
    assert_eq!(rows("adult"), Some(48_842));
    assert_eq!(rows("clean"), Some(48_842));
    assert_eq!(rows("evaluate"), Some(9_768));

    // Metrics of the held-out split.
    let metric = |step: &str, key: &str| {
        show["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["step"] == step && m["key"] == key)
            .unwrap_or_else(|| panic!("no metric {step}.{key} in {:#}", show["metrics"]))["value"]
            .as_f64()
            .unwrap()
    };
    let auc = metric("evaluate", "roc_auc");
    assert!(auc > 0.85 && auc < 1.0, "roc_auc {auc}");
    let accuracy = metric("evaluate", "accuracy");
    assert!(accuracy > 0.8 && accuracy < 1.0, "accuracy {accuracy}");
    assert_eq!(metric("train", "train_rows"), 39_074.0);
    assert_eq!(metric("register", "version"), 1.0);

    // The registry: adult-income v1, aliased champion.
    let models = sb.sluice(&["models", "list", "--json"]).ok().json();
    let models = models.as_array().unwrap();
    assert_eq!(models.len(), 1, "{models:#?}");
    assert_eq!(models[0]["name"], "adult-income");
    assert_eq!(models[0]["latest_version"], 1);
    assert_eq!(models[0]["aliases"], serde_json::json!([["champion", 1]]));

    // The registered version carries evaluate's metrics and points at train's model artifact.
    let versions = sb.sluice(&["models", "show", "adult-income", "--json"]).ok().json();
    assert_eq!(versions[0]["aliases"], serde_json::json!(["champion"]));
    let model_hash = versions[0]["artifact"].as_str().unwrap();
    let train = steps.iter().find(|s| s["step"]["step"] == "train").unwrap();
    assert_eq!(train["outputs"][0]["artifact"]["hash"], model_hash);
    let registered_auc =
        versions[0]["metrics"].as_array().unwrap().iter().find(|m| m[0] == "roc_auc").unwrap()[1].as_f64();
    assert_eq!(registered_auc, Some(auc));

    // Lineage walks from the model back to the source files.
    let lineage = sb.sluice(&["lineage", "adult-income@champion"]).ok().stdout;
    assert!(lineage.starts_with("model adult-income:1 (aliases: champion)"), "{lineage}");
    for needle in [
        "produced by step `train`",
        "produced by step `split`",
        "produced by step `clean`",
        "produced by step `adult`",
        "input file:data/adult.data.gz",
        "input file:data/adult.test.gz",
    ] {
        assert!(lineage.contains(needle), "lineage lacks `{needle}`:\n{lineage}");
    }

    // 5 datasets (adult, clean, train, test, predictions) + model + metrics.
    assert_eq!(check_objects_match_their_names(&sb.home()), 7);
}
