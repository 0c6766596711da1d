//! Sources and the artifact store on S3, against a real S3-compatible server (moto's
//! `moto_server`, installed by scripts/setup.sh) started on 127.0.0.1 for the test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::support::{Output, Sandbox};

pub(crate) struct S3 {
    child: Child,
    port: u16,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3 {
    pub(crate) fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server (pip install 'moto[server]'; scripts/setup.sh does)");
        let s3 = S3 { child, port };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        s3
    }

    /// A plain HTTP request; returns status and body. moto does not check signatures, but it
    /// treats requests without credentials as anonymous (no overwrites), hence the header.
    pub(crate) fn http(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let auth =
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
    }

    pub(crate) fn put(&self, key: &str, body: &str) {
        let (status, text) = self.http("PUT", &format!("/sluice-test/{key}"), body.as_bytes());
        assert_eq!(status, 200, "PUT {key}: {text}");
    }

    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}

pub(crate) fn run_with(sb: &Sandbox, env: &[(&str, String)], args: &[&str]) -> Output {
    let out = sb.command(args).envs(env.iter().map(|(k, v)| (*k, v.as_str()))).output().unwrap();
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const SPEC: &str = "name: s3\nsources:\n  flights: {path: 's3://sluice-test/data/*.csv'}\nsteps:\n  total:\n    kind: sql\n    inputs: [flights]\n    query: SELECT count(*) AS n, sum(delay) AS delay FROM flights\n";

#[test]
fn s3_sources_and_artifact_store() {
    let s3 = S3::start();
    assert_eq!(s3.http("PUT", "/sluice-test", b"").0, 200);
    s3.put("data/part-0.csv", "origin,delay\nJFK,5\nLGA,-3\n");
    s3.put("data/part-1.csv", "origin,delay\nEWR,10\n");
    s3.put("data/notes.txt", "not data");
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("s3.yaml"), SPEC).unwrap();
    let env = s3.env();

    let first = run_with(&sb, &env, &["run", "s3.yaml", "--json"]).ok().events();
    assert_eq!(first.finished()["status"], "succeeded");
    assert_eq!(first.of_type("step_finished").find(|e| e["step"] == "flights").unwrap()["rows"], 3);
    let again = run_with(&sb, &env, &["run", "s3.yaml", "--json"]).ok().events();
    assert!(again.ran().is_empty(), "unchanged objects: everything cached, ran {:?}", again.ran());

    // One plain Parquet object (written here with Snappy, which sluice's own writer does not
    // use) is stored as it is: its artifact is its bytes, under their hash.
    let bytes = snappy_parquet();
    assert_eq!(s3.http("PUT", "/sluice-test/one/flights.parquet", &bytes).0, 200);
    let one = "name: one\nsources:\n  flights: {path: 's3://sluice-test/one/flights.parquet'}\n";
    std::fs::write(sb.path().join("one.yaml"), one).unwrap();
    let copied = run_with(&sb, &env, &["run", "one.yaml", "--json"]).ok().events();
    let hash = &copied.outputs("flights")[0].1;
    assert_eq!(*hash, blake3::hash(&bytes).to_hex().to_string());
    let stored = sb.home().join(format!("artifacts/objects/{}/{hash}.parquet", &hash[..2]));
    assert_eq!(std::fs::read(stored).unwrap(), bytes);
    assert_eq!(copied.of_type("step_finished").find(|e| e["step"] == "flights").unwrap()["rows"], 3);

    // A changed object (new ETag and size) makes the source run again.
    s3.put("data/part-1.csv", "origin,delay\nEWR,10\nJFK,1\n");
    let changed = run_with(&sb, &env, &["run", "s3.yaml", "--json"]).ok().events();
    assert!(changed.ran().contains("flights"));
    assert_eq!(changed.of_type("step_finished").find(|e| e["step"] == "flights").unwrap()["rows"], 4);

    // Artifacts in the bucket: a second home whose artifact store is a URL.
    let mut remote_env = env.clone();
    remote_env.push(("SLUICE_ARTIFACT_STORE", "s3://sluice-test/artifacts".into()));
    let other = Sandbox::new();
    std::fs::write(other.path().join("s3.yaml"), SPEC).unwrap();
    let events = run_with(&other, &remote_env, &["run", "s3.yaml", "--json"]).ok().events();
    let total = &events.outputs("total")[0].1;
    let (_, listing) = s3.http("GET", "/sluice-test?list-type=2&prefix=artifacts/objects/", b"");
    assert!(listing.contains(&format!("artifacts/objects/{}/{total}.parquet", &total[..2])), "{listing}");
    assert!(!other.home().join("artifacts/objects").exists(), "nothing stored locally");
    let cached = run_with(&other, &remote_env, &["run", "s3.yaml", "--json"]).ok().events();
    assert!(cached.ran().is_empty(), "cache hits checked against the bucket: {:?}", cached.ran());

    // Errors name the source and the URL.
    std::fs::write(sb.path().join("none.yaml"), SPEC.replace("data/*.csv", "nothing/*.csv")).unwrap();
    let out = run_with(&sb, &env, &["run", "none.yaml"]).expect_code(1);
    assert!(out.stderr.contains("source `flights`") && out.stderr.contains("no objects match"), "{}", out.stderr);
    let mut down = env.clone();
    down[0].1 = "http://127.0.0.1:9".into();
    let out = run_with(&sb, &down, &["run", "s3.yaml", "--force", "flights"]).expect_code(1);
    assert!(
        out.stderr.contains("source `flights`") && out.stderr.contains("s3://sluice-test/data/*.csv"),
        "{}",
        out.stderr
    );
}

/// Three rows of (origin, delay) in two Snappy row groups.
fn snappy_parquet() -> Vec<u8> {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::basic::Compression;
    use parquet::file::properties::WriterProperties;

    let schema = Arc::new(Schema::new(vec![
        Field::new("origin", DataType::Utf8, true),
        Field::new("delay", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(vec!["JFK", "LGA", "EWR"])), Arc::new(Int64Array::from(vec![5, -3, 10]))],
    )
    .unwrap();
    let props =
        WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(2)).build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, schema, Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    bytes
}
