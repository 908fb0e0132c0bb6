//! Every command's `--json` output (and a shard document) is valid against its schema in
//! docs/schemas/highpte.schema.json: the schema cannot drift from what the binary prints.

mod cli_common;

use cli_common::{highpte, json_of, tmp_dir};
use serde_json::{json, Value};

fn schema_for(def: &str) -> jsonschema::Validator {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/schemas/highpte.schema.json");
    let text = std::fs::read_to_string(&path).expect("read the schema");
    let full: Value = serde_json::from_str(&text).expect("the schema is JSON");
    assert!(
        full["$defs"][def].is_object(),
        "the schema has no $defs/{def}"
    );
    let s = json!({"$defs": full["$defs"], "$ref": format!("#/$defs/{def}")});
    jsonschema::validator_for(&s).expect("a valid JSON Schema")
}

/// Validate `v` against `$defs/def`, listing every error.
fn check(def: &str, v: &Value) {
    let validator = schema_for(def);
    let errors: Vec<String> = validator
        .iter_errors(v)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .take(10)
        .collect();
    assert!(errors.is_empty(), "{def}: {}", errors.join("\n"));
}

#[test]
fn run_compare_sweep_stress_matrix() {
    check(
        "cmd_run",
        &json_of(&[
            "run",
            "sga",
            "--processes",
            "300",
            "--config",
            "64g",
            "--json",
        ]),
    );
    check(
        "cmd_compare",
        &json_of(&[
            "compare",
            "sga",
            "--configs",
            "nohighmem,64g-highpte",
            "--processes",
            "20",
            "--json",
        ]),
    );
    check(
        "cmd_sweep",
        &json_of(&["sweep", "sga", "--vary", "processes=10..20/10", "--json"]),
    );
    check("cmd_stress", &json_of(&["stress", "--ops", "30", "--json"]));
    check(
        "cmd_matrix",
        &json_of(&["matrix", "--ops", "5", "--processes", "1", "--json"]),
    );
    // a deadlocked run is a run object too
    let out = highpte()
        .args([
            "run",
            "kmap-deadlock",
            "--pkmap-entries",
            "2",
            "--stress",
            "--seed",
            "2",
            "--json",
        ])
        .output()
        .expect("run");
    check(
        "cmd_run",
        &serde_json::from_slice(&out.stdout).expect("JSON"),
    );
}

#[test]
fn replay_and_trace_info() {
    let t = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/sqlite-first60k.pgt.zst")
        .display()
        .to_string();
    check(
        "cmd_replay",
        &json_of(&[
            "replay",
            &t,
            "--instances",
            "2",
            "--ram",
            "1G",
            "-q",
            "--json",
        ]),
    );
    check("cmd_trace_info", &json_of(&["trace", "info", &t, "--json"]));
}

#[test]
fn boot_demo_deadlock_sites_bench_shard() {
    check("cmd_boot", &json_of(&["boot", "--json"]));
    check(
        "cmd_explain_deadlock",
        &json_of(&["explain-deadlock", "--json"]),
    );
    check("cmd_sites", &json_of(&["sites", "--json"]));
    check(
        "cmd_bench",
        &json_of(&["bench", "--quick", "--only", "tlb", "--json"]),
    );
    check(
        "cmd_shard",
        &json_of(&["matrix", "--ops", "5", "--processes", "1", "--shard", "2/3"]),
    );
    let dir = tmp_dir("schema-demo");
    let out = highpte()
        .current_dir(&dir)
        .args(["demo", "--quick", "--json"])
        .output()
        .expect("run");
    check(
        "cmd_demo",
        &serde_json::from_slice(&out.stdout).expect("JSON"),
    );
}

#[test]
fn the_schema_rejects_what_it_should() {
    let mut v = json_of(&["sites", "--json"]);
    v[0]["name"] = json!(7);
    assert!(!schema_for("cmd_sites").is_valid(&v));
    let mut r = json_of(&["run", "sga", "--processes", "5", "--json"]);
    r["event_hash"] = json!("0x12");
    assert!(!schema_for("cmd_run").is_valid(&r));
}
