//! `sluice monitor drift`: a shifted column is found, a stable one is not, from data files or a
//! stored profile.

use crate::support::Sandbox;

/// Uniform numbers in [0, 1) from a seed (a 64-bit LCG: enough for test data).
fn uniform(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed;
    move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn write_csv(path: &std::path::Path, rows: usize, shift: f64, seed: u64) {
    use std::fmt::Write;
    let mut text = String::from("stable,shifted,city\n");
    let mut next = uniform(seed);
    for _ in 0..rows {
        let (a, b, c) = (next(), next(), next());
        let city = if c < 0.5 - shift / 4.0 {
            "paris"
        } else if c < 0.8 {
            "lyon"
        } else {
            "nice"
        };
        writeln!(text, "{:.3},{:.3},{city}", a * 10.0, b * 10.0 + shift * 10.0).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn drift_finds_the_shifted_columns() {
    let sb = Sandbox::new();
    let (reference, current) = (sb.path().join("reference.csv"), sb.path().join("current.csv"));
    write_csv(&reference, 5000, 0.0, 1);
    write_csv(&current, 4000, 0.5, 2);
    let out = sb
        .sluice(&[
            "monitor",
            "drift",
            "--reference",
            reference.to_str().unwrap(),
            "--current",
            current.to_str().unwrap(),
            "--json",
        ])
        .ok()
        .json();
    let column = |name: &str| out["columns"].as_array().unwrap().iter().find(|c| c["column"] == name).unwrap().clone();
    assert_eq!(out["reference_rows"], 5000);
    assert_eq!(column("shifted")["drifted"], true, "{out:#}");
    assert_eq!(column("shifted")["method"], "wasserstein");
    assert!(column("shifted")["psi"].as_f64().unwrap() > 0.2);
    assert_eq!(column("stable")["drifted"], false, "{out:#}");
    assert!(column("stable")["psi"].as_f64().unwrap() < 0.02);
    assert_eq!(column("city")["drifted"], true);
    assert_eq!(column("city")["method"], "jensen_shannon");
    // Most severe first.
    assert_eq!(out["columns"][2]["column"], "stable");

    // A stored profile as the reference gives the same answer; --fail-on-drift exits 1.
    let profile = sb.sluice(&["data", "profile", reference.to_str().unwrap(), "--json"]).ok();
    let profile_path = sb.path().join("reference.json");
    std::fs::write(&profile_path, profile.stdout).unwrap();
    let again = sb
        .sluice(&[
            "monitor",
            "drift",
            "--reference",
            profile_path.to_str().unwrap(),
            "--current",
            current.to_str().unwrap(),
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(again["columns"], out["columns"]);
    sb.sluice(&[
        "monitor",
        "drift",
        "--reference",
        profile_path.to_str().unwrap(),
        "--current",
        current.to_str().unwrap(),
        "--fail-on-drift",
    ])
    .expect_code(1);
    sb.sluice(&[
        "monitor",
        "drift",
        "--reference",
        reference.to_str().unwrap(),
        "--current",
        reference.to_str().unwrap(),
        "--fail-on-drift",
    ])
    .expect_code(0);
    // A JSON file that is not a profile is named.
    let bad = sb.path().join("bad.json");
    std::fs::write(&bad, "{}").unwrap();
    let err = sb
        .sluice(&["monitor", "drift", "--reference", bad.to_str().unwrap(), "--current", current.to_str().unwrap()])
        .expect_code(1);
    assert!(err.stderr.contains("bad.json` is not a sluice profile"), "{}", err.stderr);
}

/// Windows of the current data show when drift started: days 0 and 1 look like the reference,
/// days 2 and 3 are shifted.
#[test]
fn drift_per_window_shows_when_it_started() {
    use std::fmt::Write;
    let sb = Sandbox::new();
    let reference = sb.path().join("reference.csv");
    write_csv(&reference, 3000, 0.0, 7);
    let mut text = String::from("ts,stable,shifted,city\n");
    let mut next = uniform(11);
    let day0 = 1_700_006_400i64; // a midnight, UTC
    for i in 0..8000 {
        let day = i / 2000;
        let shift = if day >= 2 { 0.5 } else { 0.0 };
        let ts = day0 + day * 86_400 + (i % 2000) * 40;
        writeln!(text, "{ts},{:.3},{:.3},lyon", next() * 10.0, next() * 10.0 + shift * 10.0).unwrap();
    }
    let current = sb.path().join("current.csv");
    std::fs::write(&current, text).unwrap();
    // The reference has no `ts`; windows by day of the current data's `ts`.
    let out = sb
        .sluice(&[
            "monitor",
            "drift",
            "--reference",
            reference.to_str().unwrap(),
            "--current",
            current.to_str().unwrap(),
            "--time",
            "ts",
            "--window",
            "day",
            "--json",
        ])
        .ok()
        .json();
    let windows = out["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 4, "{out:#}");
    let drifted = |w: &serde_json::Value| -> Vec<String> {
        w["drifted_columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect()
    };
    assert_eq!(windows[0]["label"], "2023-11-15T00:00:00Z");
    for w in &windows[..2] {
        assert_eq!(w["rows"], 2000);
        assert!(!drifted(w).contains(&"shifted".to_string()), "{w:#}");
    }
    for w in &windows[2..] {
        assert!(drifted(w).contains(&"shifted".to_string()), "{w:#}");
        assert!(!drifted(w).contains(&"stable".to_string()), "{w:#}");
    }
    // Windows of rows need no time column; a bad window is named.
    let rows = sb
        .sluice(&[
            "monitor",
            "drift",
            "--reference",
            reference.to_str().unwrap(),
            "--current",
            current.to_str().unwrap(),
            "--window",
            "4000rows",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(rows["windows"].as_array().unwrap().len(), 2);
    let err = sb
        .sluice(&[
            "monitor",
            "drift",
            "--reference",
            reference.to_str().unwrap(),
            "--current",
            current.to_str().unwrap(),
            "--window",
            "fortnight",
        ])
        .expect_code(1);
    assert!(err.stderr.contains("--window must be"), "{}", err.stderr);
}

/// A `monitor` step in a pipeline: a validate step's profile is the reference; a shifted slice
/// of the data drifts, the other split does not; `fail_on_drift` fails the run naming columns.
#[test]
fn a_monitor_step_compares_data_with_a_validated_profile() {
    let sb = Sandbox::new();
    let spec = sb.copy_adult();
    let text = std::fs::read_to_string(&spec).unwrap();
    let steps = "  check:\n    kind: validate\n    input: split.train\n    columns:\n      age: {min: 0}\n\
                 \n  older:\n    kind: sql\n    inputs: [split.test]\n    query: SELECT * FROM split_test WHERE age > 45\
                 \n\n  same:\n    kind: monitor\n    reference: check.profile\n    current: split.test\
                 \n\n  shifted:\n    kind: monitor\n    reference: check.profile\n    current: older\n\n";
    let with = text.replacen("  train:\n", &format!("{steps}  train:\n"), 1);
    assert_ne!(text, with);
    std::fs::write(&spec, &with).unwrap();
    let events = sb.run_json(&spec, &[]);
    let run = sb.sluice(&["runs", "show", &events.run_id(), "--json"]).ok().json();
    let metric = |step: &str, key: &str| {
        run["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["step"] == step && m["key"] == key)
            .map(|m| m["value"].as_f64().unwrap())
    };
    assert_eq!(metric("same", "drifted_columns"), Some(0.0), "{run:#}");
    assert!(metric("shifted", "drifted_columns").unwrap() >= 1.0);
    assert!(metric("shifted", "psi_age").unwrap() > 0.2, "{:?}", metric("shifted", "psi_age"));
    assert!(metric("same", "psi_age").unwrap() < 0.01);
    let reports: Vec<&serde_json::Value> = events.of_type("step_report").filter(|e| e["step"] == "shifted").collect();
    assert!(reports[0]["text"].as_str().unwrap().contains("age (PSI"), "{reports:?}");

    // fail_on_drift: the run fails and names the drifted columns.
    std::fs::write(&spec, with.replace("    current: older\n", "    current: older\n    fail_on_drift: true\n"))
        .unwrap();
    let out = sb.sluice(&["run", spec.to_str().unwrap()]).expect_code(1);
    assert!(out.stderr.contains("drift against the reference") && out.stderr.contains("age (PSI"), "{}", out.stderr);
}
