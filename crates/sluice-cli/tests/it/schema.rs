//! `sluice schema`: the JSON Schema of spec files.

use crate::support::Sandbox;

#[test]
fn schema_is_json_and_lists_the_step_kinds() {
    let sb = Sandbox::new();
    let schema = sb.sluice(&["schema"]).ok().json();
    assert_eq!(schema["title"], "sluice pipeline");
    assert!(schema["$schema"].as_str().unwrap().contains("json-schema.org"), "{}", schema["$schema"]);
    let top: Vec<&str> = schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(top, ["name", "description", "sources", "steps"]);
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
