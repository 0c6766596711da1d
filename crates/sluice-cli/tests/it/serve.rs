//! `sluice serve` end to end: every endpoint, both protocols agreeing with `sluice predict`, the
//! binary tensor extension, and malformed requests answered 4xx with `{"error"}` bodies.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};

use serde_json::{Value, json};

use crate::support::{Sandbox, adult_example};

/// A running server, stopped when dropped.
pub(crate) struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start(sb: &Sandbox, models: &[&str]) -> Server {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(models);
    let mut cmd = sb.command(&args);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "server exited before listening");
        if let Some(a) = line.trim().strip_prefix("listening on http://") {
            break a.to_string();
        }
    };
    Server { child, addr }
}

/// One HTTP/1.1 request; returns (status, content-type, body).
fn http(server: &Server, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, String, Vec<u8>) {
    let (status, head, body) = http_head(server, method, path, headers, body);
    let content_type = header_of(&head, "content-type").unwrap_or_default();
    (status, content_type, body)
}

/// A response header's value (`name` in lower case) from a response head.
fn header_of(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
    })
}

/// One HTTP/1.1 request; returns (status, the response head, body).
fn http_head(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        server.addr,
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = response[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 2 + size + 2..];
    }
}

pub(crate) fn post_json(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    post_json_with(server, path, &[], body)
}

pub(crate) fn post_json_with(server: &Server, path: &str, headers: &[(&str, String)], body: &Value) -> (u16, Value) {
    let mut headers = headers.to_vec();
    headers.push(("Content-Type", "application/json".into()));
    let (status, _, bytes) = http(server, "POST", path, &headers, body.to_string().as_bytes());
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

pub(crate) fn get_text(server: &Server, path: &str) -> String {
    String::from_utf8(http(server, "GET", path, &[], b"").2).unwrap()
}

const ROWS: &str = "age,workclass,education,education_num,marital_status,occupation,relationship,race,sex,capital_gain,capital_loss,hours_per_week,native_country
39,State-gov,Bachelors,13,Never-married,Adm-clerical,Not-in-family,White,Male,2174,0,40,United-States
50,Self-emp-not-inc,Bachelors,13,Married-civ-spouse,Exec-managerial,Husband,White,Male,0,0,13,United-States
28,,Masters,14,Married-civ-spouse,Prof-specialty,Wife,Black,Female,15024,0,45,Atlantis
";

fn rows() -> (Vec<String>, Vec<Vec<Value>>) {
    let mut lines = ROWS.lines();
    let names: Vec<String> = lines.next().unwrap().split(',').map(str::to_string).collect();
    let rows = lines
        .map(|l| {
            l.split(',')
                .map(
                    |c| if c.is_empty() { Value::Null } else { c.parse::<f64>().map(|n| json!(n)).unwrap_or(json!(c)) },
                )
                .collect()
        })
        .collect();
    (names, rows)
}

/// The quickstart model's probabilities for `rows` (CSV with a header), from `sluice predict`.
fn predicted(sb: &Sandbox, rows: &str) -> Vec<f64> {
    let input = sb.path().join("rows.csv");
    std::fs::write(&input, rows).unwrap();
    sb.predict_csv("adult-income@champion", &input, &sb.path().join("scored.csv"))
        .lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            cells[cells.len() - 2].parse().unwrap()
        })
        .collect()
}

#[test]
fn serves_both_protocols_like_predict() {
    let sb = Sandbox::new();
    sb.run_json(&adult_example().join("pipeline.yaml"), &[]);
    let expected = predicted(&sb, ROWS);
    assert_eq!(expected.len(), 3);

    let server = start(&sb, &["adult-income@champion"]);
    // Health and metadata.
    assert_eq!(http(&server, "GET", "/v2/health/live", &[], b"").0, 200);
    assert_eq!(http(&server, "GET", "/v2/health/ready", &[], b"").0, 200);
    assert_eq!(http(&server, "GET", "/v2/models/adult-income/ready", &[], b"").0, 200);
    assert_eq!(http(&server, "GET", "/v2/models/adult-income/versions/1/ready", &[], b"").0, 200);
    assert_eq!(http(&server, "GET", "/v2/models/adult-income/versions/7/ready", &[], b"").0, 404);
    assert_eq!(http(&server, "GET", "/ping", &[], b"").0, 200);
    let (_, _, version) = http(&server, "GET", "/version", &[], b"");
    assert!(!version.is_empty());
    let (status, content_type, body) = http(&server, "GET", "/v2", &[], b"");
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["name"], "sluice");
    let (_, _, body) = http(&server, "GET", "/v2/models/adult-income", &[], b"");
    let meta: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(meta["versions"], json!(["1"]));
    let datatypes: Vec<(&str, &str)> = meta["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["datatype"].as_str().unwrap()))
        .collect();
    assert!(datatypes.contains(&("age", "FP64")) && datatypes.contains(&("workclass", "BYTES")), "{datatypes:?}");
    assert_eq!(http(&server, "GET", "/v2/models/adult-income/versions/1", &[], b"").0, 200);
    let (status, content_type, doc) = http(&server, "GET", "/openapi.json", &[], b"");
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let doc: Value = serde_json::from_slice(&doc).unwrap();
    assert!(doc["paths"]["/v2/models/{model}/infer"]["post"].is_object(), "{doc}");

    // KServe V2, one tensor per feature.
    let (names, rows) = rows();
    let inputs = v2_request()["inputs"].clone();
    let (status, v2) =
        post_json(&server, "/v2/models/adult-income/versions/1/infer", &json!({ "id": "q1", "inputs": inputs }));
    assert_eq!(status, 200, "{v2}");
    assert_eq!((v2["id"].as_str(), v2["model_version"].as_str()), (Some("q1"), Some("1")));
    let probability = v2["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "probability").unwrap();
    assert_eq!(probability["shape"], json!([3]));
    let got: Vec<f64> = probability["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(got, expected, "KServe V2 must score exactly like `sluice predict`");
    // Only the requested output.
    let (_, only) = post_json(
        &server,
        "/v2/models/adult-income/infer",
        &json!({ "inputs": inputs, "outputs": [{ "name": "prediction" }] }),
    );
    assert_eq!(only["outputs"].as_array().unwrap().len(), 1);

    // MLflow scoring, every layout and CSV.
    let records: Vec<Value> =
        rows.iter().map(|r| Value::Object(names.iter().cloned().zip(r.iter().cloned()).collect())).collect();
    let columns: serde_json::Map<String, Value> = names
        .iter()
        .enumerate()
        .map(|(j, n)| (n.clone(), Value::Array(rows.iter().map(|r| r[j].clone()).collect())))
        .collect();
    for body in [
        json!({ "dataframe_split": { "columns": names, "data": rows } }),
        json!({ "dataframe_records": records }),
        json!({ "instances": records }),
        json!({ "instances": rows }),
        json!({ "inputs": columns }),
    ] {
        let (status, answer) = post_json(&server, "/invocations", &body);
        assert_eq!(status, 200, "{body} -> {answer}");
        let got: Vec<f64> =
            answer["predictions"].as_array().unwrap().iter().map(|p| p["probability"].as_f64().unwrap()).collect();
        assert_eq!(got, expected, "MLflow layout {body} must score like `sluice predict`");
    }
    let (status, _, bytes) =
        http(&server, "POST", "/invocations", &[("Content-Type", "text/csv".into())], ROWS.as_bytes());
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    let got: Vec<f64> =
        answer["predictions"].as_array().unwrap().iter().map(|p| p["probability"].as_f64().unwrap()).collect();
    assert_eq!(got, expected);

    // Malformed requests: 4xx with a JSON `error` naming the problem.
    let mut errors = Vec::new();
    let mut check = |path: &str, content_type: &str, body: &[u8], want: u16| {
        let (status, ctype, bytes) = http(&server, "POST", path, &[("Content-Type", content_type.into())], body);
        assert_eq!(status, want, "{path} {}", String::from_utf8_lossy(body));
        assert_eq!(ctype, "application/json");
        let error: Value = serde_json::from_slice(&bytes).unwrap();
        errors.push(format!("{status} {}", error["error"].as_str().unwrap()));
    };
    let json_ct = "application/json";
    check("/v2/models/adult-income/infer", json_ct, b"{\"inputs\": [", 400);
    check("/v2/models/nope/infer", json_ct, b"{\"inputs\": []}", 404);
    check(
        "/v2/models/adult-income/infer",
        json_ct,
        br#"{"inputs":[{"name":"age","shape":[2],"datatype":"FP64","data":[1]}]}"#,
        400,
    );
    check(
        "/v2/models/adult-income/infer",
        json_ct,
        br#"{"inputs":[{"name":"age","shape":[1],"datatype":"FP99","data":[1]}]}"#,
        400,
    );
    check(
        "/v2/models/adult-income/infer",
        json_ct,
        br#"{"inputs":[{"name":"age","shape":[1],"datatype":"FP64","data":[1]}]}"#,
        400,
    );
    check("/invocations", json_ct, br#"{"dataframe_records":[{"age":"old"}]}"#, 400);
    check("/invocations", json_ct, br#"{"dataframe_records":[{"agee":30}]}"#, 400);
    check("/invocations", json_ct, br#"{"records":[]}"#, 400);
    check("/invocations", "text/plain", b"age\n1\n", 415);
    check("/v2/nowhere", json_ct, b"", 404);
    insta::assert_snapshot!(errors.join("\n"));
}

/// An all-numeric model: one 2-D tensor holding every feature, and the binary tensor extension.
#[test]
fn two_d_tensors_and_binary_extension() {
    let sb = Sandbox::new();
    let dir = sb.path().join("n");
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("a,b,y\n");
    for i in 0..60 {
        csv.push_str(&format!("{},{},{}\n", i % 7, (i * 3) % 5, (2 * (i % 7) + (i * 3) % 5) as f64 * 0.5));
    }
    std::fs::write(dir.join("d.csv"), csv).unwrap();
    std::fs::write(
        dir.join("pipeline.yaml"),
        "name: n\nsources:\n  d: {path: d.csv}\nsteps:\n  m: {kind: train, input: d, model: linear_regression, label: y, params: {l2: 0.0}}\n  r: {kind: register, model: m, name: lin}\n",
    )
    .unwrap();
    sb.run_json(&dir.join("pipeline.yaml"), &[]);
    let server = start(&sb, &["lin"]);
    // y = a + 0.5 b, fitted exactly.
    let (status, answer) = post_json(
        &server,
        "/v2/models/lin/infer",
        &json!({ "inputs": [{ "name": "input-0", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]] }] }),
    );
    assert_eq!(status, 200, "{answer}");
    let got: Vec<f64> = answer["outputs"][0]["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!((got[0] - 2.0).abs() < 1e-9 && (got[1] - 5.0).abs() < 1e-9, "{got:?}");

    // Binary tensor extension: JSON header, then little-endian FP64 values per input.
    let header = json!({ "inputs": [
        { "name": "a", "shape": [2], "datatype": "FP64", "parameters": { "binary_data_size": 16 } },
        { "name": "b", "shape": [2], "datatype": "FP64", "parameters": { "binary_data_size": 16 } },
    ]})
    .to_string();
    let mut body = header.clone().into_bytes();
    for v in [1.0f64, 3.0, 2.0, 4.0] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    let (status, _, bytes) = http(
        &server,
        "POST",
        "/v2/models/lin/infer",
        &[
            ("Content-Type", "application/octet-stream".into()),
            ("Inference-Header-Content-Length", header.len().to_string()),
        ],
        &body,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    let got: Vec<f64> = answer["outputs"][0]["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!((got[0] - 2.0).abs() < 1e-9 && (got[1] - 5.0).abs() < 1e-9, "{got:?}");

    // Binary outputs: the JSON header says each output's byte size, the raw values follow it.
    let asked = json!({
        "parameters": { "binary_data_output": true },
        "inputs": [{ "name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4] }],
    });
    let (status, head, bytes) = http_head(
        &server,
        "POST",
        "/v2/models/lin/infer",
        &[("Content-Type", "application/json".into())],
        asked.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(header_of(&head, "content-type").as_deref(), Some("application/octet-stream"), "{head}");
    let json_length: usize = header_of(&head, "inference-header-content-length").expect(&head).parse().unwrap();
    let answer: Value = serde_json::from_slice(&bytes[..json_length]).unwrap();
    assert_eq!(
        answer["outputs"],
        json!([{ "name": "prediction", "datatype": "FP64", "shape": [2], "parameters": { "binary_data_size": 16 } }])
    );
    let raw = &bytes[json_length..];
    assert_eq!(raw.len(), 16);
    let got: Vec<f64> = raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
    assert!((got[0] - 2.0).abs() < 1e-9 && (got[1] - 5.0).abs() < 1e-9, "{got:?}");
    // An output's own `binary_data: false` wins over the request's default; a non-boolean is a 400.
    let mut json_out = asked.clone();
    json_out["outputs"] = json!([{ "name": "prediction", "parameters": { "binary_data": false } }]);
    let (status, head, bytes) = http_head(
        &server,
        "POST",
        "/v2/models/lin/infer",
        &[("Content-Type", "application/json".into())],
        json_out.to_string().as_bytes(),
    );
    assert_eq!((status, header_of(&head, "inference-header-content-length")), (200, None));
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(answer["outputs"][0]["data"].as_array().map(Vec::len), Some(2), "{answer}");
    let mut bad = asked;
    bad["parameters"]["binary_data_output"] = json!("yes");
    let (status, answer) = post_json(&server, "/v2/models/lin/infer", &bad);
    assert_eq!(status, 400);
    assert_eq!(answer["error"], "request: parameter `binary_data_output` must be true or false, got \"yes\"");
}

/// The standard KServe V2 client, `tritonclient.http`, unmodified: it sends numbers and text as
/// binary tensors and, asked for no particular output, wants every output back as binary data.
#[test]
fn tritonclient_scores_like_predict() {
    let sb = Sandbox::new();
    sb.run_json(&adult_example().join("pipeline.yaml"), &[]);
    let two_rows: String = ROWS.lines().take(3).map(|l| format!("{l}\n")).collect();
    let expected = predicted(&sb, &two_rows);
    let input = sb.path().join("rows.csv");
    let server = start(&sb, &["adult-income@champion"]);
    let script = r#"
import csv, json, sys
import numpy as np
import tritonclient.http as httpclient

rows = list(csv.DictReader(open(sys.argv[2])))
client = httpclient.InferenceServerClient(url=sys.argv[1])
inputs = []
for name in rows[0]:
    values = [r[name] for r in rows]
    try:
        array = np.array([float(v) for v in values], dtype=np.float64)
        tensor = httpclient.InferInput(name, [len(rows)], "FP64")
    except ValueError:
        array = np.array([v.encode() for v in values], dtype=np.object_)
        tensor = httpclient.InferInput(name, [len(rows)], "BYTES")
    tensor.set_data_from_numpy(array)  # binary_data=True by default
    inputs.append(tensor)
binary = client.infer("adult-income", inputs)  # no outputs named: all come back binary
as_json = client.infer("adult-income", inputs, outputs=[httpclient.InferRequestedOutput("probability", binary_data=False)])
print(json.dumps({
    "binary_outputs": [o["name"] for o in binary.get_response()["outputs"] if "binary_data_size" in o.get("parameters", {})],
    "probability": binary.as_numpy("probability").tolist(),
    "prediction": binary.as_numpy("prediction").tolist(),
    "json_probability": as_json.as_numpy("probability").tolist(),
}))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &server.addr, input.to_str().unwrap()])
        .output()
        .expect("python3 with tritonclient (scripts/setup.sh installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["binary_outputs"], json!(["probability", "prediction"]), "{got}");
    assert_eq!(got["probability"], json!(expected), "binary FP64 must be `sluice predict`'s scores exactly");
    assert_eq!(got["json_probability"], json!(expected));
    let labels: Vec<bool> = expected.iter().map(|p| *p >= 0.5).collect();
    assert_eq!(got["prediction"], json!(labels));
}

fn v2_request() -> Value {
    let (names, rows) = rows();
    let inputs: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(j, n)| {
            let data: Vec<Value> = rows.iter().map(|r| r[j].clone()).collect();
            let datatype = if data.iter().any(Value::is_string) { "BYTES" } else { "FP64" };
            json!({ "name": n, "shape": [rows.len()], "datatype": datatype, "data": data })
        })
        .collect();
    json!({ "inputs": inputs })
}

/// While clients keep scoring, the alias moves: the server swaps versions without one failure.
#[test]
fn hot_reload_under_load_fails_no_request() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let sb = Sandbox::new();
    let spec = adult_example().join("pipeline.yaml");
    sb.run_json(&spec, &[]);
    let server = Arc::new(start(&sb, &["--reload-every", "0.1", "adult-income@champion"]));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<(u16, String)>::new()));
    let body = v2_request();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (server, stop, seen, body) = (server.clone(), stop.clone(), seen.clone(), body.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (status, answer) = post_json(&server, "/v2/models/adult-income/infer", &body);
                    let version = answer["model_version"].as_str().unwrap_or("").to_string();
                    seen.lock().unwrap().push((status, version));
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // A new model takes the alias.
    sb.run_json(&spec, &["--set", "train.params.l2=0.01"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, _, meta) = http(&server, "GET", "/v2/models/adult-income", &[], b"");
        if serde_json::from_slice::<Value>(&meta).unwrap()["versions"] == json!(["2"]) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the server never picked up version 2");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    let failures: Vec<_> = seen.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        seen.len(),
        &failures[..failures.len().min(5)]
    );
    let versions: std::collections::BTreeSet<&str> = seen.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(versions, ["1", "2"].into_iter().collect(), "requests were answered by both versions");
}

#[test]
fn limits_auth_and_load_shedding() {
    let sb = Sandbox::new();
    sb.run_json(&adult_example().join("pipeline.yaml"), &[]);
    let server = start(
        &sb,
        &[
            "--token",
            "s3cret",
            "--max-rows",
            "2",
            "--max-body-bytes",
            "20000",
            "--max-concurrency",
            "1",
            "adult-income@champion",
        ],
    );
    let auth = [("Authorization", "Bearer s3cret".to_string()), ("Content-Type", "application/json".to_string())];
    // Probes are open; everything else needs the token.
    assert_eq!(http(&server, "GET", "/v2/health/ready", &[], b"").0, 200);
    let (status, _, body) = http(&server, "GET", "/v2/models/adult-income", &[], b"");
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("bearer token"));
    let wrong = [("Authorization", "Bearer nope".to_string())];
    assert_eq!(http(&server, "GET", "/v2/models/adult-income", &wrong, b"").0, 401);
    assert_eq!(http(&server, "GET", "/v2/models/adult-income", &auth, b"").0, 200);
    // Three rows against a limit of two.
    let body = v2_request().to_string();
    let (status, _, answer) = http(&server, "POST", "/v2/models/adult-income/infer", &auth, body.as_bytes());
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&answer));
    assert!(String::from_utf8_lossy(&answer).contains("at most 2"));
    // A body over the byte limit: 413 with a JSON error.
    let big = format!("{{\"dataframe_records\": [{}]}}", vec!["{\"age\": 1}"; 3000].join(","));
    let (status, content_type, _) = http(&server, "POST", "/invocations", &auth, big.as_bytes());
    assert_eq!((status, content_type.as_str()), (413, "application/json"));
}

#[test]
fn a_full_server_sheds_load_with_retry_after() {
    let sb = Sandbox::new();
    sb.run_json(&adult_example().join("pipeline.yaml"), &[]);
    let server = std::sync::Arc::new(start(&sb, &["--max-concurrency", "1", "adult-income@champion"]));
    // Large requests keep the only slot busy while others arrive.
    let (names, rows) = rows();
    let many: Vec<Vec<Value>> = rows.iter().cycle().take(20_000).cloned().collect();
    let body = json!({ "dataframe_split": { "columns": names, "data": many } }).to_string();
    // Each result: Some((status, has Retry-After)), or None when the server refused the request
    // before reading its body and closed the connection under the still-uploading client (a
    // reset can swallow the 503 it sent).
    let results: Vec<Option<(u16, bool)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (server, body) = (server.clone(), body.clone());
                s.spawn(move || {
                    let mut stream = TcpStream::connect(&server.addr).unwrap();
                    let head = format!(
                        "POST /invocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body.as_bytes()));
                    let mut response = Vec::new();
                    let _ = stream.read_to_end(&mut response);
                    let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
                    let status = text.split_whitespace().nth(1)?.parse().ok()?;
                    Some((status, text.contains("retry-after: 1")))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let answered: Vec<(u16, bool)> = results.iter().flatten().copied().collect();
    assert!(answered.iter().all(|(s, _)| *s == 200 || *s == 503), "{results:?}");
    assert!(answered.iter().any(|(s, _)| *s == 200), "{results:?}");
    let shed: Vec<_> = answered.iter().filter(|(s, _)| *s == 503).collect();
    let refused = results.iter().filter(|r| r.is_none()).count();
    assert!(
        shed.len() + refused > 0,
        "with one slot and eight concurrent large requests, some must be shed: {results:?}"
    );
    assert!(shed.iter().all(|(_, retry)| *retry), "every 503 carries Retry-After");
}

/// `/metrics` counts what happened and passes `promtool check metrics` (installed by
/// `scripts/setup.sh`; the test fails rather than skips without it).
#[test]
fn metrics_count_requests_and_pass_promtool() {
    let sb = Sandbox::new();
    sb.run_json(&adult_example().join("pipeline.yaml"), &[]);
    let server = start(&sb, &["adult-income@champion"]);
    for _ in 0..3 {
        assert_eq!(post_json(&server, "/v2/models/adult-income/infer", &v2_request()).0, 200);
    }
    assert_eq!(post_json(&server, "/invocations", &json!({ "dataframe_records": [{ "age": "old" }] })).0, 400);
    let (status, content_type, body) = http(&server, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("sluice_requests_total{route=\"/v2/models/{model}/infer\",code=\"200\"} 3"), "{text}");
    assert!(text.contains("sluice_requests_total{route=\"/invocations\",code=\"400\"} 1"), "{text}");
    assert!(text.contains("sluice_rows_scored_total{model=\"adult-income\"} 9"), "{text}");
    assert!(text.contains("sluice_batch_rows_count{model=\"adult-income\"} 3"), "{text}");
    assert!(text.contains("sluice_model_info{model=\"adult-income\",version=\"1\"} 1"), "{text}");

    promtool_check(&text);
}

/// `promtool check metrics` accepts this exposition text.
pub(crate) fn promtool_check(text: &str) {
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is needed for this test: run scripts/setup.sh");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Concurrent requests are coalesced into fewer scoring calls, and each still gets exactly its
/// own rows' scores.
#[test]
fn micro_batching_coalesces_concurrent_requests() {
    let sb = Sandbox::new();
    sb.run_json(&adult_example().join("pipeline.yaml"), &[]);
    let server = std::sync::Arc::new(start(&sb, &["--max-batch-wait-ms", "200", "adult-income@champion"]));
    let (names, rows) = rows();
    // Each client sends one (different) row; the expected score is the row scored on its own.
    let single = |row: &Vec<Value>| json!({ "dataframe_split": { "columns": names, "data": [row] } });
    let expected: Vec<f64> = {
        let (_, all) =
            post_json(&server, "/invocations", &json!({ "dataframe_split": { "columns": names, "data": rows } }));
        all["predictions"].as_array().unwrap().iter().map(|p| p["probability"].as_f64().unwrap()).collect()
    };
    let answers: Vec<(usize, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (server, body) = (server.clone(), single(&rows[i % rows.len()]));
                s.spawn(move || {
                    let (status, answer) = post_json(&server, "/invocations", &body);
                    assert_eq!(status, 200, "{answer}");
                    (i, answer["predictions"][0]["probability"].as_f64().unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, p) in answers {
        assert_eq!(p, expected[i % rows.len()], "request {i} must get its own row's score");
    }
    let (_, _, metrics) = http(&server, "GET", "/metrics", &[], b"");
    let text = String::from_utf8(metrics).unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).unwrap().parse().unwrap()
    };
    assert_eq!(value("sluice_rows_scored_total{model=\"adult-income\"}"), 3.0 + 8.0);
    let calls = value("sluice_batch_rows_count{model=\"adult-income\"}") - 1.0;
    assert!(calls < 8.0, "8 concurrent requests within the wait budget took {calls} scoring calls");
}

/// Canary sends its share of requests to the challenger (recorded per request in headers and
/// metrics); shadow scores every request with the challenger but answers with the champion.
#[test]
fn canary_and_shadow_traffic_policies() {
    let sb = Sandbox::new();
    let spec = adult_example().join("pipeline.yaml");
    sb.run_json(&spec, &[]);
    sb.run_json(&spec, &["--set", "train.params.l2=0.01", "--set", "register.alias=challenger"]);
    let body = v2_request();

    let canary = start(
        &sb,
        &[
            "--canary",
            "adult-income@challenger=30",
            "--log-predictions",
            "1",
            "--log-flush-every",
            "0.1",
            "adult-income@champion",
        ],
    );
    let mut by_version = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..400 {
        let (status, _, bytes) = http(
            &canary,
            "POST",
            "/v2/models/adult-income/infer",
            &[("Content-Type", "application/json".into())],
            body.to_string().as_bytes(),
        );
        assert_eq!(status, 200);
        let answer: Value = serde_json::from_slice(&bytes).unwrap();
        *by_version.entry(answer["model_version"].as_str().unwrap().to_string()).or_default() += 1;
    }
    let share = *by_version.get("2").unwrap_or(&0) as f64 / 400.0;
    assert!((0.23..=0.37).contains(&share), "challenger share {share} for a 30% canary: {by_version:?}");
    // Every request logged (3 rows each): each row says which arm answered it, with which version.
    wait_logged(&canary, 1200);
    let logged = logged_arms(&sb.home());
    assert_eq!(logged.len(), 1200);
    assert!(logged.iter().all(|r| (r.0 == "canary") == (r.1 == 2) && r.0 != "shadow"), "{logged:?}");
    assert_eq!(logged.iter().filter(|r| r.0 == "canary").count(), 3 * by_version.get("2").copied().unwrap_or(0));
    let (_, _, metrics) = http(&canary, "GET", "/metrics", &[], b"");
    let text = String::from_utf8(metrics).unwrap();
    assert!(
        text.contains("sluice_policy_requests_total{model=\"adult-income\",arm=\"canary\",version=\"2\"}"),
        "{text}"
    );
    // The challenger's version is addressable like the primary's: metadata, readiness, inference.
    assert_eq!(http(&canary, "GET", "/v2/models/adult-income/versions/2", &[], b"").0, 200);
    assert_eq!(http(&canary, "GET", "/v2/models/adult-income/versions/2/ready", &[], b"").0, 200);
    let (status, pinned) = post_json(&canary, "/v2/models/adult-income/versions/2/infer", &body);
    assert_eq!((status, pinned["model_version"].as_str()), (200, Some("2")));
    // Each response says which arm answered.
    let mut stream = TcpStream::connect(&canary.addr).unwrap();
    let payload = body.to_string();
    write!(stream, "POST /v2/models/adult-income/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}", payload.len()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let raw = raw.to_ascii_lowercase();
    assert!(raw.contains("x-sluice-arm: primary") || raw.contains("x-sluice-arm: canary"), "{raw}");
    assert!(raw.contains("x-sluice-model-version: "), "{raw}");
    drop(canary);
    std::fs::remove_dir_all(sb.home().join("artifacts/logs")).unwrap();

    let shadow = start(
        &sb,
        &[
            "--shadow",
            "adult-income@challenger",
            "--log-predictions",
            "1",
            "--log-flush-every",
            "0.1",
            "adult-income@champion",
        ],
    );
    let mut body = body;
    for i in 0..20 {
        body["id"] = json!(format!("s{i}"));
        let (status, answer) = post_json(&shadow, "/v2/models/adult-income/infer", &body);
        assert_eq!((status, answer["model_version"].as_str()), (200, Some("1")), "the champion answers");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, _, metrics) = http(&shadow, "GET", "/metrics", &[], b"");
        let text = String::from_utf8(metrics).unwrap();
        if text.contains("sluice_policy_requests_total{model=\"adult-income\",arm=\"shadow\",version=\"2\"} 20") {
            assert!(
                text.contains("sluice_policy_requests_total{model=\"adult-income\",arm=\"primary\",version=\"1\"} 20")
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "shadow requests not all scored:\n{text}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The shadow's predictions are logged beside the champion's, under the same request ids.
    wait_logged(&shadow, 120);
    let logged = logged_arms(&sb.home());
    let ids = |arm: &str, version: u32| -> std::collections::BTreeSet<String> {
        logged.iter().filter(|r| r.0 == arm && r.1 == version).map(|r| r.2.clone()).collect()
    };
    assert_eq!(logged.len(), 120, "20 requests x 3 rows, answered and shadowed: {logged:?}");
    assert_eq!(ids("primary", 1).len(), 20);
    assert_eq!(ids("shadow", 2), ids("primary", 1));
    // A challenger of a model that is not served is an error at start-up.
    let bad = sb
        .sluice(&["serve", "--listen", "127.0.0.1:0", "--canary", "other@x=5", "adult-income@champion"])
        .expect_code(1);
    assert!(bad.stderr.contains("other@x"), "{}", bad.stderr);
}

/// Wait until the server has written `rows` prediction-log rows (its files are complete then).
fn wait_logged(server: &Server, rows: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = String::from_utf8(http(server, "GET", "/metrics", &[], b"").2).unwrap();
        if text.contains(&format!("sluice_prediction_log_rows_total {rows}\n")) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the log never reached {rows} rows:\n{text}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Every prediction-log row of the adult model: (arm, model version, request id).
fn logged_arms(home: &std::path::Path) -> Vec<(String, u32, String)> {
    use arrow::array::AsArray;
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(home.join("artifacts/logs/predictions/adult-income")) else { return out };
    for entry in dir {
        let path = entry.unwrap().path();
        // Only finished files (the store writes a temporary name, then renames it).
        if path.extension().and_then(|e| e.to_str()) != Some("parquet") {
            continue;
        }
        for batch in crate::support::read_parquet(&path) {
            let arm = batch.column_by_name("arm").expect("an `arm` column");
            let version = batch.column_by_name("model_version").unwrap();
            let id = batch.column_by_name("request_id").unwrap();
            let (arm, id) = (arm.as_string::<i32>(), id.as_string::<i32>());
            let version = version.as_primitive::<arrow::datatypes::UInt32Type>();
            out.extend(
                (0..batch.num_rows()).map(|i| (arm.value(i).to_string(), version.value(i), id.value(i).to_string())),
            );
        }
    }
    out
}

/// A sample of scored requests lands as Parquet in the artifact store, with features,
/// predictions, model version, request id and time; the request path never waits for it.
#[test]
fn prediction_log_writes_sampled_requests_as_parquet() {
    use arrow::array::{Array, AsArray};

    let sb = Sandbox::new();
    sb.run_json(&adult_example().join("pipeline.yaml"), &[]);
    let server = start(&sb, &["--log-predictions", "0.5", "--log-flush-every", "0.1", "adult-income@champion"]);
    let mut body = v2_request();
    for i in 0..10 {
        body["id"] = json!(format!("r{i}"));
        assert_eq!(post_json(&server, "/v2/models/adult-income/infer", &body).0, 200);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, _, metrics) = http(&server, "GET", "/metrics", &[], b"");
        let text = String::from_utf8(metrics).unwrap();
        if text.contains("sluice_prediction_log_rows_total 15") {
            assert!(text.contains("sluice_prediction_log_dropped_total 0"), "{text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "log never reached 15 rows (5 of 10 requests x 3 rows):\n{text}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let dir = sb.home().join("artifacts/logs/predictions/adult-income");
    let mut rows = 0;
    let mut ids = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(path.extension().and_then(|e| e.to_str()), Some("parquet"), "{}", path.display());
        let file = std::fs::File::open(&path).unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            for column in
                ["age", "workclass", "probability", "prediction", "model_version", "arm", "request_id", "time"]
            {
                assert!(batch.column_by_name(column).is_some(), "no `{column}` in {}", path.display());
            }
            let id = batch.column_by_name("request_id").unwrap();
            let id = id.as_string::<i32>();
            ids.extend((0..id.len()).map(|i| id.value(i).to_string()));
            rows += batch.num_rows();
        }
    }
    assert_eq!(rows, 15);
    assert_eq!(ids.len(), 5, "every other request is kept: {ids:?}");
}
