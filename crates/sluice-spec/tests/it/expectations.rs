//! Expectations files: what `to_yaml` writes reads back as the same document.

use indexmap::IndexMap;
use sluice_spec::kinds::{
    ColumnExpectation, ColumnType, DatasetChecks, Expectations, Freshness, Policy, RowCheck, RowCount,
};

#[test]
fn yaml_round_trips_including_awkward_strings() {
    let mut columns = IndexMap::new();
    columns.insert(
        "city name".to_string(),
        ColumnExpectation {
            data_type: Some(ColumnType::String),
            nullable: Some(false),
            allowed: Some(vec!["a, b".into(), "it's \"quoted\"".into(), "#not a comment".into(), ": colon".into()]),
            regex: Some(r"^[a-z\x{2D}]{1,9}$".into()),
            max_null_fraction: Some(0.25),
            policy: Some(Policy::Quarantine),
            ..Default::default()
        },
    );
    columns.insert(
        "age".to_string(),
        ColumnExpectation {
            data_type: Some(ColumnType::Integer),
            min: Some(-1.5),
            max: Some(1e9),
            unique: true,
            ..Default::default()
        },
    );
    let doc = Expectations {
        columns,
        rows: vec![RowCheck {
            name: "sane".into(),
            check: "age < 120 AND \"city name\" <> ''".into(),
            policy: Some(Policy::Warn),
        }],
        dataset: DatasetChecks {
            row_count: Some(RowCount { min: Some(1), max: Some(10), policy: None }),
            freshness: Some(Freshness { column: "ts".into(), max_age: "36h".into(), policy: Some(Policy::Fail) }),
        },
    };
    let yaml = doc.to_yaml();
    let back = sluice_spec::parse_expectations(&yaml, "e.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(back, doc, "{yaml}");
}

#[test]
fn errors_name_the_file_and_line() {
    let err = sluice_spec::parse_expectations("columns:\n  age:\n    minn: 3\n", "exp.yaml").unwrap_err().to_string();
    assert!(err.contains("exp.yaml:3") && err.contains("minn") && err.contains("did you mean `min`"), "{err}");
}
