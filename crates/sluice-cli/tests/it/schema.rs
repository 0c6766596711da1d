//! `sluice schema`: the JSON Schema of spec files.

use crate::support::Sandbox;

#[test]
fn schema_is_json_and_lists_the_step_kinds() {
    let sb = Sandbox::new();
    let schema = sb.sluice(&["schema"]).ok().json();
    assert_eq!(schema["title"], "sluice pipeline");
    assert!(schema["$schema"].as_str().unwrap().contains("json-schema.org"), "{}", schema["$schema"]);
    let top: Vec<&str> = schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(top, ["name", "description", "engine", "sources", "steps"]);
    assert!(schema["required"].as_array().unwrap().contains(&"name".into()));

    // Steps are one of the kinds, told apart by `kind`.
    let step = schema["properties"]["steps"]["additionalProperties"]["$ref"].as_str().unwrap();
    let step = step.strip_prefix("#/$defs/").unwrap();
    let kinds: Vec<&str> = schema["$defs"][step]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["properties"]["kind"]["const"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["source", "sql", "split", "train", "evaluate", "register"]);
    // Sources need no `kind`.
    let source = schema["properties"]["sources"]["additionalProperties"]["$ref"].as_str().unwrap();
    assert_eq!(source, "#/$defs/SourceStep");
    assert_eq!(schema["$defs"]["SourceStep"]["required"], serde_json::json!(["path"]));
    // Nothing is written for `schema`.
    assert!(!sb.home().exists());
}

/// A reader that stops early (`sluice schema | head -1`) ends sluice quietly, not with a panic.
#[test]
fn closed_stdout_is_not_a_panic() {
    let mut child = std::process::Command::new(crate::support::SLUICE)
        .arg("schema")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
