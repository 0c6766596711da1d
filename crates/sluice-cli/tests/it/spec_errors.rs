//! Invalid specs: exit code 2 and one message per problem, naming the step and where it is.

use crate::support::Sandbox;

/// Copy the Adult example, apply `edits` (each must match once) to its spec, and check that both
/// `run` and `plan` refuse it with exit code 2 and the same message; returns that message with the
/// temporary directory written as `[TMP]`.
#[track_caller]
fn spec_error(edits: &[(&str, &str)], extra: &[&str]) -> String {
    let sb = Sandbox::new();
    let spec = sb.copy_adult();
    let mut text = std::fs::read_to_string(&spec).unwrap();
    for (from, to) in edits {
        assert_eq!(text.matches(from).count(), 1, "`{from}` should occur once in the spec");
        text = text.replacen(from, to, 1);
    }
    std::fs::write(&spec, text).unwrap();

    let tmp = sb.path().to_str().unwrap().to_string();
    let canonical = std::fs::canonicalize(sb.path()).unwrap().to_str().unwrap().to_string();
    let clean = |s: String| s.replace(&canonical, "[TMP]").replace(&tmp, "[TMP]");
    let mut messages = Vec::new();
    for verb in ["run", "plan"] {
        let mut args = vec![verb, spec.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = sb.sluice(&args).expect_code(2);
        assert_eq!(out.stdout, "", "nothing on stdout for a bad spec");
        messages.push(clean(out.stderr));
    }
    assert_eq!(messages[0], messages[1], "`run` and `plan` should report the same problems");
    assert!(!sb.home().join("metadata.db").exists(), "a bad spec must not start a run");
    messages.remove(0)
}

#[track_caller]
fn assert_mentions(message: &str, needles: &[&str]) {
    for n in needles {
        assert!(message.contains(n), "message lacks `{n}`:\n{message}");
    }
}

#[test]
fn unknown_input_reference() {
    let message = spec_error(&[("    input: split.test\n", "    input: splt.test\n")], &[]);
    assert_mentions(
        &message,
        &["[TMP]/adult/pipeline.yaml:60:12", "step `evaluate`", "`splt.test`", "did you mean `split`?"],
    );
    insta::assert_snapshot!(message);
}

#[test]
fn cycle() {
    let message = spec_error(&[("    inputs: [adult]\n", "    inputs: [adult, split.train]\n")], &[]);
    assert_mentions(&message, &["[TMP]/adult/pipeline.yaml:41:3", "split -> clean -> split"]);
    insta::assert_snapshot!(message);
}

#[test]
fn duplicate_step_name() {
    let message = spec_error(
        &[("  register:\n", "  clean:\n    kind: sql\n    inputs: [adult]\n    query: SELECT 1\n\n  register:\n")],
        &[],
    );
    assert_mentions(
        &message,
        &["[TMP]/adult/pipeline.yaml:62:3", "`clean`", "first defined at [TMP]/adult/pipeline.yaml:18:3"],
    );
    insta::assert_snapshot!(message);
}

#[test]
fn step_named_like_a_source() {
    let message = spec_error(
        &[("  register:\n", "  adult:\n    kind: sql\n    inputs: [clean]\n    query: SELECT 1\n\n  register:\n")],
        &[],
    );
    assert_mentions(
        &message,
        &["[TMP]/adult/pipeline.yaml:62:3", "`adult`", "first defined at [TMP]/adult/pipeline.yaml:7:3"],
    );
    insta::assert_snapshot!(message);
}

#[test]
fn unknown_key_with_suggestion() {
    let message = spec_error(&[("    query: |\n", "    qeury: |\n")], &[]);
    assert_mentions(&message, &["[TMP]/adult/pipeline.yaml:22:5", "step `clean`", "`qeury`", "did you mean `query`?"]);
    assert!(!message.contains("not a source or step"), "`split` reads `clean`, which exists: {message}");
    insta::assert_snapshot!(message);
}

#[test]
fn wrong_type() {
    let message = spec_error(&[("    seed: 42\n", "    seed: abc\n")], &[]);
    assert_mentions(
        &message,
        &["[TMP]/adult/pipeline.yaml:47:11", "step `split`", "`seed` must be a whole number, got `abc`"],
    );
    // `train` and `evaluate` read `split`, which exists even though it is invalid.
    assert!(!message.contains("not a source or step"), "{message}");
    insta::assert_snapshot!(message);
}

#[test]
fn source_matches_no_file() {
    let message = spec_error(&[("    path: data/adult.*.gz\n", "    path: data/census-*.csv.gz\n")], &[]);
    assert_mentions(&message, &["[TMP]/adult/pipeline.yaml:9:11", "`adult`", "`data/census-*.csv.gz`", "[TMP]/adult"]);
    insta::assert_snapshot!(message);
}

#[test]
fn set_unknown_step() {
    let message = spec_error(&[], &["--set", "nosuchstep.x=1"]);
    assert_mentions(&message, &["--set nosuchstep.x=1", "`nosuchstep`"]);
    insta::assert_snapshot!(message);
}

#[test]
fn set_misspelled_step() {
    let message = spec_error(&[], &["--set", "splt.seed=7"]);
    assert_mentions(&message, &["--set splt.seed=7", "`splt`", "did you mean `split`?"]);
    insta::assert_snapshot!(message);
}

#[test]
fn set_wrong_type_points_at_the_assignment() {
    let message = spec_error(&[], &["--set", "split.seed=abc"]);
    assert_mentions(&message, &["--set split.seed=abc", "step `split`", "`seed` must be a whole number, got `abc`"]);
    insta::assert_snapshot!(message);
}

#[test]
fn several_problems_are_reported_together() {
    let message = spec_error(
        &[
            ("    query: |\n", "    qeury: |\n"),
            ("    input: split.test\n", "    input: splt.test\n"),
            ("    seed: 42\n", "    seed: -1\n"),
        ],
        &[],
    );
    assert_mentions(
        &message,
        &[
            "(3 problems)",
            "[TMP]/adult/pipeline.yaml:22:5: step `clean`: unknown key `qeury`",
            "[TMP]/adult/pipeline.yaml:47:11: step `split`: `seed` is out of range, got `-1`",
            "[TMP]/adult/pipeline.yaml:60:12: step `evaluate` reads `splt.test`",
        ],
    );
    insta::assert_snapshot!(message);
}

#[test]
fn step_name_with_a_dot() {
    let message = spec_error(&[("  evaluate:\n", "  eval.uate:\n")], &[]);
    assert_mentions(&message, &["`eval.uate`", "letters, digits"]);
    insta::assert_snapshot!(message);
}

#[test]
fn sql_inputs_that_would_share_a_table_name() {
    let message = spec_error(&[("    inputs: [adult]\n", "    inputs: [adult, adult]\n")], &[]);
    assert_mentions(&message, &["step `clean`", "`adult` is listed twice"]);
    insta::assert_snapshot!(message);
}

#[test]
fn semantic_errors_point_at_the_field() {
    // The bad value is `threshold`'s, on its own line — not the step's `model:` line.
    let message = spec_error(&[("    input: split.test\n", "    input: split.test\n    threshold: 1.5\n")], &[]);
    assert_mentions(&message, &["pipeline.yaml:61:16", "`threshold` must be between 0 and 1"]);
    insta::assert_snapshot!(message);
}

#[test]
fn semantic_error_from_set_points_at_the_assignment() {
    let message = spec_error(&[], &["--set", "register.alias=7"]);
    assert_mentions(&message, &["--set register.alias=7", "`alias` must be a name", "check the `--set"]);
    insta::assert_snapshot!(message);
}

#[test]
fn malformed_gate() {
    let message = spec_error(&[("    alias: champion\n", "    alias: champion\n    gates: ['roc_auc => 0.8']\n")], &[]);
    assert_mentions(
        &message,
        &["pipeline.yaml:68:13", "step `register`", "gate `roc_auc => 0.8`", "did you mean `>=`?"],
    );
    insta::assert_snapshot!(message);
}

#[test]
fn tune_problems_name_the_field() {
    // A parameter that is not a setting of the model.
    let message = spec_error(
        &[(
            "    params:\n      l2: 0.0001\n",
            "    params:\n      l2: 0.0001\n    cv: {folds: 3}\n    tune:\n      trials: 5\n      space:\n        l3: {log_uniform: [0.0001, 1]}\n",
        )],
        &[],
    );
    assert_mentions(&message, &["step `train`", "`params`: unknown field `l3`", "expected one of", "`l2`"]);
    // Trials need something to be scored on.
    let message = spec_error(
        &[(
            "    params:\n      l2: 0.0001\n",
            "    params:\n      l2: 0.0001\n    tune:\n      space:\n        l2: {log_uniform: [0.0001, 1]}\n",
        )],
        &[],
    );
    assert_mentions(&message, &["step `train`", "`tune` scores each trial on `validation`", "or by `cv`"]);
    // One distribution per parameter.
    let message = spec_error(
        &[(
            "    params:\n      l2: 0.0001\n",
            "    params:\n      l2: 0.0001\n    cv: {folds: 3}\n    tune:\n      space:\n        l2: {uniform: [0, 1], int: [0, 1]}\n",
        )],
        &[],
    );
    assert_mentions(&message, &["`l2` needs exactly one of `uniform`, `log_uniform`, `int` or `choice`"]);
    // Extreme values of the space are checked like the spec's own settings, and durations parse.
    let message = spec_error(
        &[(
            "    params:\n      l2: 0.0001\n",
            "    params:\n      l2: 0.0001\n    cv: {folds: 3}\n    tune:\n      timeout: soon\n      space:\n        l2: {uniform: [-1, 1]}\n",
        )],
        &[],
    );
    assert_mentions(&message, &["`params.l2` must be >= 0, got -1"]);
}

#[test]
fn monitor_problems_name_the_field() {
    let monitor = |body: &str| {
        let step = format!("    alias: champion\n\n  watch:\n    kind: monitor\n    current: clean\n{body}");
        spec_error(&[("    alias: champion\n", &step)], &[])
    };
    // A reference is needed: a profile or a registered model.
    let message = monitor("");
    assert_mentions(&message, &["step `watch`", "give `reference` (a profile) or `model`"]);
    // Rules are parsed before anything runs, naming the alert and the field.
    let message =
        monitor("    model: adult-income@champion\n    alerts:\n      - {name: old, when: 'psi(age) > high'}\n");
    assert_mentions(&message, &["step `watch`", "alert `old`", "`high` is not a number"]);
    let message = monitor(
        "    model: adult-income@champion\n    alerts:\n      - {name: old, when: 'psi(age) > 0.2 for two windows'}\n",
    );
    assert_mentions(&message, &["`for two windows` must be `for N windows`"]);
    let message = monitor(
        "    model: adult-income@champion\n    alerts:\n      - {name: old, when: 'psi(age) > 0.2', actions: [{webhook: 'ftp://x'}]}\n",
    );
    assert_mentions(&message, &["webhook `ftp://x` must be an http:// or https:// URL"]);
    // Ground truth checks a model's predictions.
    let message = monitor("    reference: clean\n    truth: clean\n");
    assert_mentions(&message, &["`truth` needs `model`"]);
}

/// `engine:` names the in-process engine or a Ballista scheduler; anything else is a spec error
/// at its line, and a good one is accepted.
#[test]
fn engine_url() {
    let message = spec_error(&[("\nname: adult-income\n", "\nname: adult-income\nengine: spark://master:7077\n")], &[]);
    assert_mentions(
        &message,
        &["[TMP]/adult/pipeline.yaml:4:9", "`engine`", "unknown engine", "`ballista://HOST:PORT`"],
    );
    let message = spec_error(&[("\nname: adult-income\n", "\nname: adult-income\nengine: ballista://sched\n")], &[]);
    assert_mentions(&message, &["the port is missing"]);

    let sb = Sandbox::new();
    let spec = sb.copy_adult();
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("\nname: adult-income\n", "\nname: adult-income\nengine: local\n");
    std::fs::write(&spec, text).unwrap();
    sb.sluice(&["plan", spec.to_str().unwrap()]).ok();
}

#[test]
fn distributed_training_is_for_plain_linear_models() {
    let message = spec_error(
        &[(
            "    label: label\n    params:",
            "    label: label\n    distributed: true\n    cv: {folds: 3}\n    params:",
        )],
        &[],
    );
    assert_mentions(&message, &["step `train`", "`distributed: true`", "`cv`"]);
}
