//! End-to-end tests of `highpte sweep` through the binary: a JSON list of run objects with the
//! swept value, a series per configuration in the plot, the table, and the checked
//! `--vary NAME=FROM..TO/STEP` syntax (what is wrong, where, how to fix; exit 2).

mod cli_common;
use cli_common::*;

/// A small shared-memory workload: processes attach a 16M segment and read it.
const SMALL_SHM: &str = r#"name = "tinyshm"
[machine]
config = "64g"
ram = "512M"
cpus = 2
[processes]
count = 4
[[phases]]
name = "create"
run_by = "first"
ops = [ { op = "shmget", key = 3, size = "16M" } ]
[[phases]]
name = "attach"
ops = [
    { op = "shmat", key = 3, name = "seg" },
    { op = "touch", region = "seg", write = false, populate = true },
    { op = "pause" },
]
"#;

#[test]
fn sweep_processes_json_and_plot() {
    let dir = tmp_dir("sweep-json");
    let plot = dir.join("sweep.svg");
    let plot_s = plot.display().to_string();
    let v = json_of(&[
        "sweep",
        "sga",
        "--vary",
        "processes=4..12/4",
        "--ramp",
        "none",
        "--ram",
        "1G",
        "--configs",
        "64g,64g-highpte",
        "--json",
        "--plot",
        &plot_s,
    ]);
    let runs = v.as_array().expect("sweep --json prints a list");
    assert_eq!(runs.len(), 6, "3 values x 2 configs");
    for (i, r) in runs.iter().enumerate() {
        assert_run_object(r);
        let want = [4, 8, 12][i % 3];
        assert_eq!(r["vary"]["name"], "processes");
        assert_eq!(r["vary"]["value"].as_u64(), Some(want));
        assert_eq!(r["processes_started"].as_u64(), Some(want));
        assert_eq!(r["config"], if i < 3 { "64g" } else { "64g-highpte" });
    }
    // More processes, more page tables, less LowFree on 64g.
    let low = |i: usize| runs[i]["meminfo"]["LowFree"].as_u64().unwrap();
    assert!(low(0) > low(1) && low(1) > low(2));
    assert_svg(
        &plot,
        "sga: LowFree and failed processes against processes (target)",
    );
    let text = std::fs::read_to_string(&plot).unwrap();
    for s in [
        "LowFree at the last step (MB)",
        "processes failed",
        "64g-highpte",
    ] {
        assert!(text.contains(s), "the plot should show {s:?}");
    }
}

#[test]
fn sweep_ram_table_and_seed() {
    let dir = tmp_dir("sweep-ram");
    let f = write_file(&dir, "tinyshm.toml", SMALL_SHM);
    let plot = dir.join("ram.svg");
    let plot_s = plot.display().to_string();
    let out = stdout_of(&[
        "sweep",
        &f,
        "--vary",
        "ram=512M..1536M/512M",
        "--configs",
        "nohighmem,64g",
        "--plot",
        &plot_s,
    ]);
    assert!(
        out.contains("tinyshm: ram = 512M to 1536M (3 values) on nohighmem, 64g"),
        "{out}"
    );
    for s in [
        "RAM",
        "┆ 512M ",
        "┆ 1G ",
        "┆ 1536M ",
        "addresses at most 896M of RAM",
    ] {
        assert!(out.contains(s), "{s:?} in:\n{out}");
    }
    assert_svg(&plot, "RAM (GB)");
    // Without --configs the workload's own configuration; seeds give a series of runs.
    let v = json_of(&["sweep", &f, "--vary", "seed=1..2/1", "--json"]);
    let runs = v.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["config"], "64g");
    assert_eq!(runs[1]["seed"].as_u64(), Some(2));
    let v = json_of(&["sweep", &f, "--vary", "cpus=1..3/2", "--json"]);
    assert_eq!(v[1]["cpus"].as_u64(), Some(3));
}

#[test]
fn sweep_bad_vary_says_what_where_and_how() {
    let fix = "NAME=FROM..TO/STEP";
    bad_input(
        &["sweep", "sga", "--vary", "ram=4G..32X/4G"],
        &["TO '32X'", "not a size", "character 9", fix],
    );
    bad_input(
        &["sweep", "sga", "--vary", "ram=4G..32G"],
        &["missing '/STEP'", fix],
    );
    bad_input(
        &["sweep", "sga", "--vary", "ram=4G-32G/4G"],
        &["missing '..'", fix],
    );
    bad_input(
        &["sweep", "sga", "--vary", "disk=1..2/1"],
        &["unknown parameter 'disk'", "processes, ram, cpus, seed"],
    );
    bad_input(&["sweep", "sga", "--vary", "processes"], &["missing '='"]);
    bad_input(
        &["sweep", "sga", "--vary", "processes=..10/1"],
        &["FROM is empty"],
    );
    bad_input(
        &["sweep", "sga", "--vary", "processes=a..10/1"],
        &["FROM 'a' is not a whole number"],
    );
    bad_input(
        &["sweep", "sga", "--vary", "processes=10..1/1"],
        &["FROM (10) is larger than TO (1)"],
    );
    bad_input(
        &["sweep", "sga", "--vary", "processes=1..10/0"],
        &["STEP is 0"],
    );
    bad_input(
        &["sweep", "sga", "--vary", "processes=1..100000/1"],
        &["at most 200", "larger STEP"],
    );
    bad_input(
        &["sweep", "sga", "--vary", "processes=0..10/5"],
        &["0 processes is out of range"],
    );
    bad_input(
        &["sweep", "sga", "--vary", "cpus=0..4/1"],
        &["0 CPUs is out of range"],
    );
    bad_input(
        &["sweep", "sga", "--vary", "cpus=30..33/1"],
        &["33 CPUs is out of range"],
    );
    bad_input(
        &["sweep", "sga", "--vary", "ram=8M..16M/8M"],
        &["16M to 64G"],
    );
    bad_input(
        &["sweep", "sga", "--vary", "ram=32G..128G/32G"],
        &["16M to 64G"],
    );
    bad_input(&["sweep", "sga"], &["required"]);
    bad_input(
        &[
            "sweep",
            "sga",
            "--vary",
            "processes=1..2/1",
            "--processes",
            "5",
        ],
        &["drop one"],
    );
    bad_input(
        &["sweep", "sga", "--vary", "seed=1..2/1", "--configs", "huge"],
        &["unknown configuration 'huge'"],
    );
    bad_input(
        &["sweep", "nosuch", "--vary", "seed=1..2/1"],
        &["unknown workload 'nosuch'"],
    );
    let dir = tmp_dir("sweep-bad");
    let phases = "[[phases]]\nname = \"p\"\nops = [ { op = \"pause\" } ]\n";
    let f = write_file(
        &dir,
        "typo.toml",
        &format!("name = \"x\"\n[machine]\nrma = \"1G\"\n{phases}"),
    );
    bad_input(
        &["sweep", &f, "--vary", "seed=1..2/1"],
        &["typo.toml:3:1", "rma"],
    );
    let f = write_file(
        &dir,
        "zero.toml",
        &format!("name = \"x\"\n[processes]\ncount = 0\n{phases}"),
    );
    bad_input(&["sweep", &f, "--vary", "seed=1..2/1"], &["zero.toml:3:1"]);
    let f = write_file(
        &dir,
        "big.toml",
        &format!("name = \"x\"\n[machine]\nram = \"128G\"\n{phases}"),
    );
    bad_input(&["sweep", &f, "--vary", "seed=1..2/1"], &["big.toml:3:1"]);
    let f = write_file(
        &dir,
        "type.toml",
        &format!("name = \"x\"\n[processes]\ncount = \"many\"\n{phases}"),
    );
    bad_input(
        &["sweep", &f, "--vary", "seed=1..2/1"],
        &["type.toml:3:", "invalid type"],
    );
}
