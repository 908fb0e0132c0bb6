//! `--cost FILE` (docs/cost-model.md): a cost table from a file on boot, run, replay,
//! compare and sweep, checked before anything is simulated, and in the replay command.

mod cli_common;

use cli_common::{bad_input, highpte, json_of, tmp_dir};
use serde_json::Value;

const SGA: [&str; 9] = [
    "run",
    "sga",
    "--config",
    "64g-highpte",
    "--ram",
    "8G",
    "--processes",
    "50",
    "--json",
];

fn run_with(extra: &[&str]) -> Value {
    let mut args: Vec<&str> = SGA.to_vec();
    args.extend_from_slice(extra);
    json_of(&args)
}

#[test]
fn a_cost_file_changes_cycles_and_nothing_else() {
    let dir = tmp_dir("cost-file");
    let p4 = dir.join("p4.toml");
    std::fs::write(&p4, "base = \"pentium4-xeon-2002\"\n").unwrap();
    let modern = dir.join("modern.toml");
    std::fs::write(&modern, "base = \"modern-core\"\n").unwrap();

    let default = run_with(&[]);
    let same = run_with(&["--cost", p4.to_str().unwrap()]);
    let fast = run_with(&["--cost", modern.to_str().unwrap()]);
    // The default table named in a file is the default: the same run, cycle for cycle.
    assert_eq!(default["cycles"], 906_412_391u64);
    assert_eq!(same["cycles"], default["cycles"]);
    assert_eq!(same["event_hash"], default["event_hash"]);
    // The modern core charges less for the same work...
    assert_eq!(fast["cycles"], 242_042_211u64);
    // ...and the memory the run uses does not depend on the table.
    assert_eq!(fast["pagetables"], default["pagetables"]);
    assert_eq!(fast["meminfo"], default["meminfo"]);
    assert_eq!(fast["operations"], default["operations"]);
    // The replay command names the file by its absolute path.
    let replay = fast["replay"].as_str().unwrap();
    let abs = std::fs::canonicalize(&modern).unwrap();
    assert!(
        replay.ends_with(&format!("--cost {}", abs.display())),
        "{replay}"
    );
}

#[test]
fn the_replay_command_of_a_costed_run_replays_it_from_another_directory() {
    let dir = tmp_dir("cost-replay");
    let modern = dir.join("m.toml");
    std::fs::write(&modern, "base = \"modern-core\"\ninvlpg = 300\n").unwrap();
    let first = run_with(&["--cost", modern.to_str().unwrap()]);
    let replay = first["replay"].as_str().unwrap().to_string();
    let args: Vec<&str> = replay.split_whitespace().skip(1).collect();
    let elsewhere = tmp_dir("cost-replay-elsewhere");
    let out = highpte()
        .args(&args)
        .arg("--json")
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{replay}");
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["event_hash"], first["event_hash"]);
    assert_eq!(again["cycles"], first["cycles"]);
}

#[test]
fn compare_sweep_and_boot_take_the_cost_file() {
    let dir = tmp_dir("cost-compare");
    let modern = dir.join("modern.toml");
    std::fs::write(&modern, "base = \"modern-core\"\n").unwrap();
    let m = modern.to_str().unwrap();
    let common = [
        "sga",
        "--configs",
        "64g-highpte",
        "--ram",
        "8G",
        "--processes",
        "50",
        "--json",
    ];
    let cycles = |v: &Value| v[0]["cycles"].clone();
    let mut args = vec!["compare"];
    args.extend_from_slice(&common);
    let plain = json_of(&args);
    args.extend_from_slice(&["--cost", m]);
    let costed = json_of(&args);
    assert_eq!(cycles(&plain), 906_412_391u64);
    assert_eq!(cycles(&costed), 242_042_211u64);
    let boot_plain = json_of(&["boot", "--config", "64g-highpte", "--ram", "8G", "--json"]);
    let boot_fast = json_of(&[
        "boot",
        "--config",
        "64g-highpte",
        "--ram",
        "8G",
        "--json",
        "--cost",
        m,
    ]);
    assert!(
        boot_fast["boot_cycles"].as_u64() < boot_plain["boot_cycles"].as_u64(),
        "{} vs {}",
        boot_fast["boot_cycles"],
        boot_plain["boot_cycles"]
    );
    assert_eq!(boot_fast["meminfo"], boot_plain["meminfo"]);
}

#[test]
fn a_bad_cost_file_is_refused_before_the_run_with_its_line() {
    let dir = tmp_dir("cost-bad");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "base = \"modern-core\"\ninvlgp = 3\n").unwrap();
    let b = bad.to_str().unwrap();
    for cmd in ["run", "compare", "sweep"] {
        let mut args = vec![cmd, "sga", "--cost", b];
        if cmd == "sweep" {
            args.extend_from_slice(&["--vary", "processes=10..20/10"]);
        }
        bad_input(&args, &["--cost", "line 2, column 1", "invlgp", "to fix"]);
    }
    bad_input(
        &["boot", "--cost", dir.join("missing.toml").to_str().unwrap()],
        &["--cost", "cannot read cost model file", "missing.toml"],
    );
}
