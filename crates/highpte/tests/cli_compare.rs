//! End-to-end tests of `highpte compare` through the binary: a JSON list of run objects, one
//! per configuration x strategy x allocator, in a stable order; the table with its notes; the
//! plot; bad input (exit 2).

mod cli_common;
use cli_common::*;

/// A small shared-memory workload: 6 processes attach a 32M segment and read it.
const SMALL_SHM: &str = r#"name = "smallshm"
[machine]
config = "64g-highpte"
ram = "1G"
cpus = 2
[processes]
count = 6
[[phases]]
name = "create"
run_by = "first"
ops = [ { op = "shmget", key = 3, size = "32M" } ]
[[phases]]
name = "attach"
ops = [
    { op = "shmat", key = 3, name = "seg" },
    { op = "touch", region = "seg", write = false, populate = true },
    { op = "pause" },
]
"#;

#[test]
fn compare_json_is_a_list_of_run_objects_per_combination() {
    let v = json_of(&[
        "compare",
        "sga",
        "--configs",
        "64g,nohighmem",
        "--strategies",
        "lowmem,atomic",
        "--pt-allocs",
        "pool,buddy",
        "--processes",
        "10",
        "--ramp",
        "none",
        "--ram",
        "1G",
        "--json",
        "--jobs",
        "2",
    ]);
    let runs = v.as_array().expect("compare --json prints a list");
    assert_eq!(runs.len(), 8, "2 configs x 2 strategies x 2 allocators");
    let mut seen = Vec::new();
    for r in runs {
        assert_run_object(r);
        assert_eq!(r["processes_started"].as_u64(), Some(10));
        seen.push(format!(
            "{} {} {}",
            r["config"].as_str().unwrap(),
            r["strategy"].as_str().unwrap(),
            r["pt_alloc"].as_str().unwrap()
        ));
    }
    assert_eq!(
        seen,
        [
            "64g lowmem pool",
            "64g lowmem buddy",
            "64g atomic pool",
            "64g atomic buddy",
            "nohighmem lowmem pool",
            "nohighmem lowmem buddy",
            "nohighmem atomic pool",
            "nohighmem atomic buddy",
        ],
        "rows in configs x strategies x allocators order"
    );
    // nohighmem has no high memory: atomic falls back to low pages; 64g atomic uses high ones.
    assert_eq!(runs[6]["pagetables"]["high_pages"].as_u64(), Some(0));
    assert_eq!(runs[6]["meminfo"]["HighTotal"].as_u64(), Some(0));
    assert!(runs[2]["pagetables"]["high_pages"].as_u64().unwrap() > 0);
    assert_eq!(runs[0]["pagetables"]["high_pages"].as_u64(), Some(0));
    // The RAM beyond 896M is ignored by nohighmem (the runs use 896M, said in a note).
    assert_eq!(runs[4]["ram_bytes"].as_u64(), Some(896 << 20));
    assert_eq!(runs[0]["ram_bytes"].as_u64(), Some(1 << 30));
}

#[test]
fn compare_table_notes_and_plot() {
    let dir = tmp_dir("compare-table");
    let f = write_file(&dir, "smallshm.toml", SMALL_SHM);
    let plot = dir.join("compare.svg");
    let plot_s = plot.display().to_string();
    let out = stdout_of(&[
        "compare",
        &f,
        "--configs",
        "all",
        "--strategies",
        "persistent",
        "--plot",
        &plot_s,
        "-j",
        "2",
    ]);
    for c in ["nohighmem", "4g", "4g-highpte", "64g", "64g-highpte"] {
        assert!(out.contains(&format!("│ {c} ")), "a row for {c}:\n{out}");
    }
    for h in [
        "config",
        "strategy",
        "pt_alloc",
        "started / failed",
        "first failure",
        "LowFree",
        "PageTables",
        "kmap_atomic",
        "kmap",
        "invlpg",
        "shootdowns",
        "cycles",
        "host s",
    ] {
        assert!(out.contains(h), "column {h:?}:\n{out}");
    }
    assert!(
        out.contains("note: nohighmem with strategy persistent: there is no high memory"),
        "fallback note:\n{out}"
    );
    assert!(
        out.contains("addresses at most 896M of RAM"),
        "RAM note:\n{out}"
    );
    assert_svg(&plot, "smallshm: LowFree per step");
    // Without --configs: all five. With --config: that one.
    let v = json_of(&["compare", &f, "--config", "4g", "--json"]);
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    assert_eq!(v[0]["config"], "4g");
}

#[test]
fn compare_bad_input_exits_2() {
    bad_input(
        &["compare", "sga", "--configs", "64g,foo"],
        &["unknown configuration 'foo'", "or all"],
    );
    bad_input(
        &["compare", "sga", "--configs", "64g,,4g"],
        &["empty configuration name"],
    );
    bad_input(&["compare", "sga", "--configs", "4g,4g"], &["listed twice"]);
    bad_input(
        &["compare", "sga", "--strategies", "lowmem,magic"],
        &["unknown pte strategy 'magic'"],
    );
    bad_input(
        &["compare", "sga", "--pt-allocs", "slab"],
        &["unknown page-table allocator 'slab'"],
    );
    bad_input(&["compare", "sga", "--jobs", "0"], &["--jobs"]);
    bad_input(
        &["compare", "sga", "--configs", "4g", "--config", "64g"],
        &["not both"],
    );
    bad_input(
        &[
            "compare",
            "sga",
            "--strategies",
            "atomic",
            "--strategy",
            "lowmem",
        ],
        &["not both"],
    );
    bad_input(&["compare", "nosuch"], &["unknown workload 'nosuch'"]);
    bad_input(&["compare", "sga", "--ram", "1X"], &["not a size"]);
    bad_input(&["compare", "sga", "--cpus", "33"], &["out of range"]);
    bad_input(
        &["compare", "sga", "--processes", "0"],
        &["0 processes is out of range: accepted 1 to 32767"],
    );
    let dir = tmp_dir("compare-bad");
    let phases = "[[phases]]\nname = \"p\"\nops = [ { op = \"pause\" } ]\n";
    let f = write_file(
        &dir,
        "typo.toml",
        &format!("name = \"x\"\n[processes]\ncuont = 3\n{phases}"),
    );
    bad_input(
        &["compare", &f, "--configs", "all"],
        &["typo.toml:3:1", "cuont"],
    );
    let f = write_file(
        &dir,
        "zero.toml",
        &format!("name = \"x\"\n[processes]\ncount = 0\n{phases}"),
    );
    bad_input(&["compare", &f], &["zero.toml:3:1"]);
    let f = write_file(
        &dir,
        "big.toml",
        &format!("name = \"x\"\n[machine]\nram = \"128G\"\n{phases}"),
    );
    bad_input(&["compare", &f], &["big.toml:3:1", "128G"]);
    let f = write_file(
        &dir,
        "type.toml",
        &format!("name = \"x\"\n[machine]\npreempt = \"yes\"\n{phases}"),
    );
    bad_input(&["compare", &f], &["type.toml:3:", "invalid type"]);
}
