//! A second pipeline shape: NDJSON and gzip CSV sources joined in SQL, a time-ordered split, and
//! a linear regression evaluated with RMSE/MAE/R² and registered without an alias.

use std::io::Write;

use crate::support::Sandbox;

const SPEC: &str = r#"
name: regression
sources:
  readings:
    path: readings.ndjson
  sites:
    path: sites.csv.gz
steps:
  joined:
    kind: sql
    inputs: [readings, sites]
    query: |
      SELECT r.day, r.x, s.altitude, s.kind, r.y
      FROM readings r JOIN sites s ON r.site = s.site
      ORDER BY r.day, r.site
  split:
    kind: split
    input: joined
    method: time
    by: day
    fractions: {train: 0.75, test: 0.25}
  fit:
    kind: train
    input: split.train
    model: linear_regression
    label: y
    exclude: [day]
    params: {l2: 0.0}
  score:
    kind: evaluate
    model: fit
    input: split.test
  keep:
    kind: register
    model: fit
    metrics: score.metrics
    name: yield-model
"#;

#[test]
fn ndjson_gzip_time_split_linear_regression() {
    let sb = Sandbox::new();
    let dir = sb.path().join("r");
    std::fs::create_dir_all(&dir).unwrap();
    // y = 3x + 0.01 altitude + (2 if kind == "b") + 1, exactly: a least-squares fit recovers it.
    let sites = [("s1", 100.0, "a"), ("s2", 250.0, "b"), ("s3", 40.0, "a")];
    let mut ndjson = String::new();
    for day in 0..40 {
        for (i, (site, altitude, kind)) in sites.iter().enumerate() {
            let x = ((day * 7 + i * 3) % 11) as f64 / 2.0;
            let y = 3.0 * x + 0.01 * altitude + if *kind == "b" { 2.0 } else { 0.0 } + 1.0;
            ndjson.push_str(&format!("{{\"day\": {day}, \"site\": \"{site}\", \"x\": {x}, \"y\": {y}}}\n"));
        }
    }
    std::fs::write(dir.join("readings.ndjson"), ndjson).unwrap();
    let mut gz = Vec::new();
    {
        // A gzip member with stored (uncompressed) deflate blocks: valid gzip, no extra crate.
        let csv = b"site,altitude,kind\ns1,100,a\ns2,250,b\ns3,40,a\n";
        gz.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        gz.push(1); // final stored block
        gz.extend_from_slice(&(csv.len() as u16).to_le_bytes());
        gz.extend_from_slice(&(!(csv.len() as u16)).to_le_bytes());
        gz.extend_from_slice(csv);
        gz.extend_from_slice(&crc32(csv).to_le_bytes());
        gz.extend_from_slice(&(csv.len() as u32).to_le_bytes());
    }
    std::fs::File::create(dir.join("sites.csv.gz")).unwrap().write_all(&gz).unwrap();
    let spec = dir.join("pipeline.yaml");
    std::fs::write(&spec, SPEC).unwrap();

    let events = sb.run_json(&spec, &[]);
    assert_eq!(events.finished()["status"], "succeeded", "{:#?}", events.0);
    let id = events.run_id();
    let run = sb.sluice(&["runs", "show", &id, "--json"]).ok().json();
    let metric = |k: &str| {
        run["metrics"].as_array().unwrap().iter().find(|m| m["key"] == k).map(|m| m["value"].as_f64().unwrap())
    };
    assert!(metric("rmse").unwrap() < 1e-6, "{run:#}");
    assert!(metric("mae").unwrap() < 1e-6);
    assert!((metric("r2").unwrap() - 1.0).abs() < 1e-9);
    // The time split trains on days 0-29 and tests on 30-39: 90 and 30 rows.
    let steps = run["steps"].as_array().unwrap();
    let split = steps.iter().find(|s| s["step"]["step"] == "split").unwrap();
    let rows: Vec<(String, u64)> = split["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["name"].as_str().unwrap().to_string(), o["artifact"]["rows"].as_u64().unwrap()))
        .collect();
    assert_eq!(rows, [("train".to_string(), 90), ("test".to_string(), 30)]);
    let models = sb.sluice(&["models", "list", "--json"]).ok().json();
    assert_eq!(models[0]["name"], "yield-model");
    assert_eq!(models[0]["aliases"], serde_json::json!([]));
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}
