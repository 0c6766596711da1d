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
    assert_eq!(windows[0]["label"], "2023-11-15");
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

/// The UCI Adult test file's first `n` rows as the server's input columns (nulls for `?`),
/// with their labels.
fn adult_test_rows(n: usize) -> (Vec<&'static str>, Vec<Vec<serde_json::Value>>, Vec<bool>) {
    use std::io::Read;
    let columns = vec![
        "age",
        "workclass",
        "education",
        "education_num",
        "marital_status",
        "occupation",
        "relationship",
        "race",
        "sex",
        "capital_gain",
        "capital_loss",
        "hours_per_week",
        "native_country",
    ];
    let file = std::fs::File::open(crate::support::adult_example().join("data/adult.test.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(file).read_to_string(&mut text).unwrap();
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for line in text.lines().filter(|l| !l.starts_with('|') && !l.trim().is_empty()).take(n) {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let text = |s: &str| if s == "?" { serde_json::Value::Null } else { s.into() };
        let num = |s: &str| serde_json::json!(s.parse::<f64>().unwrap());
        rows.push(vec![
            num(f[0]),
            text(f[1]),
            text(f[3]),
            num(f[4]),
            text(f[5]),
            text(f[6]),
            text(f[7]),
            text(f[8]),
            text(f[9]),
            num(f[10]),
            num(f[11]),
            num(f[12]),
            text(f[13]),
        ]);
        labels.push(f[14].starts_with(">50K"));
    }
    (columns, rows, labels)
}

/// AUC by the Mann–Whitney rank sum (ties averaged): an independent check of the join.
fn auc(scored: &[(f64, bool)]) -> f64 {
    let mut v = scored.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        let avg = (i + j + 1) as f64 / 2.0;
        rank_sum += avg * v[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let pos = v.iter().filter(|x| x.1).count() as f64;
    let neg = v.len() as f64 - pos;
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// A one-shot HTTP server that records the body of each POST it receives.
fn webhook_receiver() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            out.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, got)
}

/// Production monitoring of a served model, end to end: traffic whose `age` shifts halfway is
/// logged and sketched by the server (live drift gauges that promtool accepts), ground truth
/// arriving later is joined to the logs (AUC equal to one computed here from the server's
/// answers), drift per window finds the shift, the HTML report renders in headless Chromium,
/// and a monitor step's alerts fire after two drifted windows: logged, POSTed to a webhook,
/// a retraining pipeline run with parameters, and recorded in the metadata store.
#[test]
fn served_model_drift_performance_report_and_alerts() {
    use serde_json::{Value, json};

    let sb = Sandbox::new();
    let adult = crate::support::adult_example().join("pipeline.yaml");
    sb.run_json(&adult, &[]);
    let server = crate::serve::start(
        &sb,
        &[
            "--log-predictions",
            "1",
            "--log-flush-every",
            "0.1",
            "--drift-every",
            "0.3",
            "--drift-min-rows",
            "50",
            "adult-income@champion",
        ],
    );
    // 2,000 rows in 40 requests of 50; from request 20 on, everyone is 15 years older.
    let (columns, rows, labels) = adult_test_rows(2000);
    let mut truth = String::from("request_id,row,label\n");
    let mut scored = Vec::new();
    for r in 0..40 {
        let data: Vec<Value> = rows[r * 50..(r + 1) * 50]
            .iter()
            .map(|row| {
                let mut row = row.clone();
                if r >= 20 {
                    row[0] = json!(row[0].as_f64().unwrap() + 15.0);
                }
                Value::Array(row)
            })
            .collect();
        let body = json!({"dataframe_split": {"columns": columns, "data": data}});
        let (status, answer) =
            crate::serve::post_json_with(&server, "/invocations", &[("x-request-id", format!("req{r}"))], &body);
        assert_eq!(status, 200, "{answer}");
        for (i, p) in answer["predictions"].as_array().unwrap().iter().enumerate() {
            let label = labels[r * 50 + i];
            scored.push((p["probability"].as_f64().unwrap(), label));
            truth.push_str(&format!("req{r},{i},{label}\n"));
        }
    }
    std::fs::write(sb.path().join("truth.csv"), &truth).unwrap();

    // Live gauges: `age` drifted, `sex` did not; the exposition passes promtool.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let metrics = loop {
        let text = crate::serve::get_text(&server, "/metrics");
        if text.contains("sluice_drift_detected{model=\"adult-income\",column=\"age\"} 1")
            && text.contains("sluice_prediction_log_rows_total 2000")
        {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "no age drift gauge / full log:\n{text}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(metrics.contains("sluice_drift_detected{model=\"adult-income\",column=\"sex\"} 0"), "{metrics}");
    assert!(metrics.contains("sluice_drift_psi{model=\"adult-income\",column=\"probability\"}"), "{metrics}");
    crate::serve::promtool_check(&metrics);
    check_dashboard(&metrics);

    // Drift of the logs against the model's reference, and per window of 500 rows.
    let out = sb
        .sluice(&[
            "monitor",
            "drift",
            "--reference",
            "model:adult-income@champion",
            "--current",
            "logs:adult-income",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(out["current_rows"], 2000);
    let column = |name: &str| out["columns"].as_array().unwrap().iter().find(|c| c["column"] == name).unwrap().clone();
    assert_eq!(column("age")["drifted"], true, "{out:#}");
    assert_eq!(column("sex")["drifted"], false, "{out:#}");
    assert!(column("prediction")["psi"].as_f64().is_some(), "the prediction is monitored too: {out:#}");
    let out = sb
        .sluice(&[
            "monitor",
            "drift",
            "--reference",
            "model:adult-income@champion",
            "--current",
            "logs:adult-income",
            "--window",
            "500rows",
            "--json",
        ])
        .ok()
        .json();
    let drifted: Vec<bool> = out["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["drifted_columns"].as_array().unwrap().iter().any(|c| c == "age"))
        .collect();
    assert_eq!(drifted, [false, false, true, true], "{out:#}");

    // Performance once the labels arrive: the join is exact.
    let out = sb
        .sluice(&[
            "monitor",
            "performance",
            "--model",
            "adult-income@champion",
            "--truth",
            "truth.csv",
            "--window",
            "1000rows",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!((out["matched"].as_u64(), out["unlabeled"].as_u64()), (Some(2000), Some(0)), "{out:#}");
    let expected = auc(&scored);
    assert!((out["overall"]["roc_auc"].as_f64().unwrap() - expected).abs() < 1e-9, "{out:#} vs {expected}");
    assert!((out["windows"][1]["metrics"]["roc_auc"].as_f64().unwrap() - auc(&scored[1000..])).abs() < 1e-9);
    assert!(out["evaluation"]["roc_auc"].as_f64().unwrap() > 0.85, "{out:#}");

    // The report: self-contained, and Chromium renders it.
    sb.sluice(&[
        "monitor",
        "report",
        "--reference",
        "model:adult-income@champion",
        "--current",
        "logs:adult-income",
        "--window",
        "250rows",
        "--truth",
        "truth.csv",
        "--out",
        "report.html",
    ])
    .ok();
    let html = std::fs::read_to_string(sb.path().join("report.html")).unwrap();
    for needle in ["Drift by column", "Drift over time", "Model performance over time", "Distributions", "<svg"] {
        assert!(html.contains(needle), "no `{needle}` in the report");
    }
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"), "not self-contained");
    let png = sb.path().join("report.png");
    let status = std::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1100,2400"])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", sb.path().join("report.html").display()))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("chromium (scripts/setup.sh installs it)");
    assert!(status.success());
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000, "a blank screenshot? {} bytes", bytes.len());

    // A monitor step over the logs with alerts: two drifted windows in a row fire `older`.
    let (port, hooks) = webhook_receiver();
    let spec = sb.path().join("monitor.yaml");
    std::fs::write(
        &spec,
        format!(
            r#"name: adult-monitoring
sources:
  logs: {{path: {logs}, format: parquet}}
  truth: {{path: truth.csv}}
steps:
  watch:
    kind: monitor
    model: adult-income@champion
    current: logs
    truth: truth
    window: 500rows
    alerts:
      - name: older
        when: psi(age) > 0.2 for 2 windows
        actions:
          - log
          - webhook: http://127.0.0.1:{port}/hook
          - run: {{pipeline: {adult}, set: {{register.alias: challenger}}}}
      - name: auc-floor
        when: roc_auc < 0.5
      - name: sex
        when: psi(sex) > 0.2
"#,
            logs = sb.home().join("artifacts/logs/predictions/adult-income").display(),
            adult = adult.display(),
        ),
    )
    .unwrap();
    let events = sb.run_json(&spec, &[]);
    let reports: Vec<String> = events.of_type("step_report").map(|e| e["text"].as_str().unwrap().to_string()).collect();
    assert!(reports.iter().any(|r| r.contains("alert `older` fired")), "{reports:?}");
    assert!(reports.iter().any(|r| r.contains("alert triggered run") && r.contains("succeeded")), "{reports:?}");
    let hooks = hooks.lock().unwrap().clone();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!((hooks[0]["alert"].as_str(), hooks[0]["windows"].as_u64()), (Some("older"), Some(2)));
    assert_eq!(hooks[0]["since"], "rows 1000–1499");
    let alerts = sb.sluice(&["monitor", "alerts", "--json"]).ok().json();
    let alerts = alerts.as_array().unwrap();
    assert_eq!(alerts.len(), 1, "only `older` fires: {alerts:?}");
    let actions = alerts[0]["actions"].as_array().unwrap();
    assert!(actions.iter().all(|a| a["ok"] == true), "{actions:?}");
    assert_eq!(actions.iter().map(|a| a["action"].as_str().unwrap()).collect::<Vec<_>>(), ["log", "webhook", "run"]);
    // The retraining run's parameters reached it: the challenger alias now exists.
    let models = sb.sluice(&["models", "list", "--json"]).ok().json();
    assert!(models.to_string().contains("challenger"), "{models}");
    drop(server);
}

/// The Grafana dashboard in `monitoring/grafana/` parses, and every metric its queries name is
/// one the server exports (histograms by their `_bucket` series).
fn check_dashboard(metrics: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../monitoring/grafana/sluice-server.json");
    let dashboard: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let exported: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            queries += 1;
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("sluice_"))
                .collect();
            assert!(!names.is_empty(), "a query on no sluice metric: {expr}");
            for name in names {
                assert!(exported.contains(name), "the dashboard queries `{name}`, which /metrics lacks: {expr}");
            }
        }
    }
    assert!(queries >= 15, "{queries} queries");
}

/// examples/nycflights/monitor.sh, the README's monitoring example, end to end in a sandbox:
/// train on January–April, serve with logging, replay May–September, and the monitor
/// pipeline's `summer` alert retrains on January–September; the server swaps to version 2.
#[test]
fn nycflights_monitoring_example_retrains_on_drift() {
    let example = crate::support::adult_example().parent().unwrap().join("nycflights");
    assert!(example.join("data/flights.csv").exists(), "run scripts/fetch-nycflights.sh (scripts/setup.sh does)");
    let sb = Sandbox::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = std::process::Command::new(example.join("monitor.sh"))
        .env("SLUICE", env!("CARGO_BIN_EXE_sluice"))
        .env("SLUICE_HOME_DIR", sb.home())
        .env("PORT", port.to_string())
        .env("REPORT", sb.path().join("report.html"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    for needle in [
        "alert `summer` fired",
        "alert triggered run",
        "reloaded nyc-delays: version 1 -> 2",
        "nyc-delays version ['2']",
    ] {
        assert!(text.contains(needle), "no `{needle}` in:\n{text}");
    }
    assert!(!text.contains("alert `auc-drop` fired"), "{text}");
    let alerts = sb.sluice(&["monitor", "alerts", "--json"]).ok().json();
    assert_eq!(alerts[0]["name"], "summer");
    assert_eq!(alerts[0]["actions"][1]["ok"], true, "{alerts:#}");
    assert!(std::fs::metadata(sb.path().join("report.html")).unwrap().len() > 50_000);
}
