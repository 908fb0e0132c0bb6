//! Beyond one machine and what users expect: `--shard I/N` + `highpte merge` give exactly
//! the unsharded result; `--csv`; shell completions and the man page.

mod cli_common;

use cli_common::{bad_input, highpte, json_of, stdout_of, tmp_dir};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Run `args` as shards 1..=n, each into a file of `dir`; the files.
fn shards(dir: &Path, args: &[&str], n: usize) -> Vec<PathBuf> {
    (1..=n)
        .map(|i| {
            let out = highpte()
                .args(args)
                .args(["--shard", &format!("{i}/{n}")])
                .output()
                .expect("run a shard");
            assert_eq!(
                out.status.code(),
                Some(0),
                "shard {i}/{n}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let doc: Value = serde_json::from_slice(&out.stdout).expect("a shard prints JSON");
            assert_eq!(doc["shard"]["index"], i);
            let p = dir.join(format!("shard-{i}.json"));
            std::fs::write(&p, &out.stdout).expect("write the shard");
            p
        })
        .collect()
}

fn merge(files: &[PathBuf], extra: &[&str]) -> String {
    let mut args: Vec<String> = vec!["merge".into()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    stdout_of(&refs)
}

/// `v` without its host times (the only values that differ between two runs of a cell).
fn without_host_time(mut v: Value) -> Value {
    match &mut v {
        Value::Object(o) => {
            o.remove("host_seconds");
            for (_, x) in o.iter_mut() {
                *x = without_host_time(x.take());
            }
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                *x = without_host_time(x.take());
            }
        }
        _ => {}
    }
    v
}

/// A table without the host-time column or line (the last cell of each row of a runs table,
/// the matrix's "host time" line).
fn without_host_column(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with("host time:"))
        .map(|l| match l.rfind('┆') {
            Some(i) if l.starts_with('│') => l[..i].to_string(),
            _ => l.to_string(),
        })
        .collect()
}

#[test]
fn matrix_shards_merge_to_the_unsharded_run_cell_for_cell() {
    let dir = tmp_dir("cluster-matrix");
    let args = ["matrix", "--ops", "30", "--processes", "2", "--seeds", "2"];
    let files = shards(&dir, &args, 3);
    let mut j = args.to_vec();
    j.push("--json");
    let whole = json_of(&j);
    let merged: Value = serde_json::from_str(&merge(&files, &["--json"])).expect("JSON");
    assert_eq!(merged["cells"].as_array().map(Vec::len), Some(40));
    assert_eq!(
        without_host_time(merged.clone()),
        without_host_time(whole.clone())
    );
    // event hashes included, cell for cell
    for (a, b) in merged["cells"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(whole["cells"].as_array().into_iter().flatten())
    {
        assert_eq!(a["event_hash"], b["event_hash"]);
    }
    assert_eq!(
        without_host_column(&merge(&files, &[])),
        without_host_column(&stdout_of(&args))
    );
    // in any order, but every shard once
    let rev: Vec<PathBuf> = files.iter().rev().cloned().collect();
    assert_eq!(
        without_host_time(serde_json::from_str(&merge(&rev, &["--json"])).expect("JSON")),
        without_host_time(whole)
    );
    let (f1, f3) = (
        files[0].display().to_string(),
        files[2].display().to_string(),
    );
    bad_input(&["merge", &f1, &f3], &["shard(s) 2/3 missing"]);
    bad_input(&["merge", &f1, &f1, &f3], &["shard 1/3 is given twice"]);
}

#[test]
fn sweep_and_compare_shards_merge_to_the_unsharded_run() {
    let dir = tmp_dir("cluster-sweep");
    let args = [
        "sweep",
        "sga",
        "--vary",
        "processes=10..50/10",
        "--configs",
        "64g,64g-highpte",
        "--quiet",
    ];
    let files = shards(&dir, &args, 3);
    let mut j = args.to_vec();
    j.push("--json");
    let whole = json_of(&j);
    let merged: Value = serde_json::from_str(&merge(&files, &["--json"])).expect("JSON");
    assert_eq!(merged.as_array().map(Vec::len), Some(10));
    assert_eq!(without_host_time(merged), without_host_time(whole));
    assert_eq!(
        without_host_column(&merge(&files, &[])),
        without_host_column(&stdout_of(&args))
    );
    // the merged plot is the unsharded plot
    let (p1, p2) = (dir.join("merged.svg"), dir.join("whole.svg"));
    merge(&files, &["--plot", &p1.display().to_string()]);
    let mut w = args.to_vec();
    let p2s = p2.display().to_string();
    w.extend(["--plot", &p2s]);
    stdout_of(&w);
    assert_eq!(std::fs::read(&p1).ok(), std::fs::read(&p2).ok());

    let dir = tmp_dir("cluster-compare");
    let args = [
        "compare",
        "sga",
        "--configs",
        "all",
        "--processes",
        "20",
        "--ram",
        "2G",
        "--quiet",
    ];
    let files = shards(&dir, &args, 2);
    let mut j = args.to_vec();
    j.push("--json");
    let merged: Value = serde_json::from_str(&merge(&files, &["--json"])).expect("JSON");
    assert_eq!(without_host_time(merged), without_host_time(json_of(&j)));
    let text = merge(&files, &[]);
    assert_eq!(
        without_host_column(&text),
        without_host_column(&stdout_of(&args))
    );
    assert!(
        text.contains("note: a nohighmem kernel addresses at most 896M"),
        "{text}"
    );
    // shards of different commands do not mix
    let other = shards(
        &tmp_dir("cluster-other"),
        &["matrix", "--ops", "5", "--processes", "1"],
        2,
    );
    bad_input(
        &[
            "merge",
            &files[0].display().to_string(),
            &other[1].display().to_string(),
        ],
        &["differs", "cannot be merged"],
    );
}

#[test]
fn csv_has_a_row_per_step_run_or_cell() {
    let text = stdout_of(&["run", "sga", "--processes", "300", "--csv"]);
    let v = json_of(&["run", "sga", "--processes", "300", "--json"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 3, "{text}");
    assert!(lines[0].starts_with("step,processes,processes_ok,failures,"));
    let last: Vec<&str> = lines[3].split(',').collect();
    assert_eq!(last[0], "3");
    assert_eq!(last[1], v["steps"][2]["processes"].to_string());
    assert_eq!(last[7], v["steps"][2]["meminfo"]["LowFree"].to_string());
    let text = stdout_of(&[
        "compare",
        "sga",
        "--configs",
        "64g,64g-highpte",
        "--processes",
        "20",
        "--csv",
    ]);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1][..3], ["64g", "lowmem", "pool"]);
    assert_eq!(rows[2][..3], ["64g-highpte", "atomic", "pool"]);
    let text = stdout_of(&["matrix", "--ops", "5", "--processes", "1", "--csv"]);
    assert_eq!(text.lines().count(), 21);
    let text = stdout_of(&["sweep", "sga", "--vary", "processes=10..30/10", "--csv"]);
    assert_eq!(
        text.lines()
            .next()
            .map(|l| l.starts_with("processes,config,")),
        Some(true)
    );
    assert_eq!(text.lines().count(), 4);
}

#[test]
fn completions_and_man_pages_come_from_the_definitions() {
    let bash = stdout_of(&["completions", "bash"]);
    assert!(bash.contains("_highpte()") && bash.contains("explain-deadlock"));
    assert!(bash.contains("--swap-file-overwrite"));
    let fish = stdout_of(&["completions", "fish"]);
    assert!(fish.contains("complete -c highpte"));
    let zsh = stdout_of(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef highpte"));
    bad_input(&["completions", "tcsh"], &["tcsh"]);
    let man = stdout_of(&["man"]);
    assert!(man.contains(".TH highpte 1"));
    assert!(man.contains("merge"));
    let run = stdout_of(&["man", "run"]);
    assert!(
        run.contains(".TH highpte-run 1") && run.contains("fail\\-alloc"),
        "{run}"
    );
    bad_input(&["man", "nosuch"], &["no command 'nosuch'"]);
    // the committed page is what the binary generates: it cannot go stale
    let committed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/highpte.1"))
            .expect("docs/highpte.1");
    assert_eq!(
        committed, man,
        "regenerate it: highpte man > docs/highpte.1"
    );
}

/// The `bash` blocks of docs/cluster.md, in order.
fn cluster_page_scripts() -> Vec<String> {
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cluster.md"),
    )
    .expect("read docs/cluster.md");
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in page.lines() {
        match (&mut cur, line.trim_end()) {
            (None, "```bash") => cur = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                cur = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Run `script` with bash in `dir`, the test's `highpte` first on the path, and `env`.
fn bash_in(dir: &Path, script: &str, env: &[(&str, String)]) {
    let bin = assert_cmd::cargo::cargo_bin("highpte");
    let path = format!(
        "{}:{}",
        bin.parent().expect("the binary's directory").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "the script failed ({:?}):\n{script}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// docs/cluster.md's Slurm job array, run as Slurm runs it (bash reads the `#SBATCH` lines as
/// comments; Slurm's part is the environment of each array task), with 2 seeds instead of
/// 100 to keep CI short, then its `--wrap` merge: the merged JSON is the unsharded run's.
#[test]
fn the_slurm_array_script_of_the_cluster_page_merges_to_the_unsharded_run() {
    let blocks = cluster_page_scripts();
    let array = blocks
        .iter()
        .find(|b| b.contains("#SBATCH --array=1-10"))
        .expect("docs/cluster.md has the Slurm array script");
    let submit = blocks
        .iter()
        .find(|b| b.starts_with("sbatch --dependency"))
        .expect("docs/cluster.md has the sbatch submission");
    assert!(array.contains("--seeds 100"), "{array}");
    let array = array.replace("--seeds 100", "--seeds 2");
    let dir = tmp_dir("slurm-array");
    for task in 1..=10 {
        bash_in(
            &dir,
            &array,
            &[
                ("SLURM_ARRAY_TASK_ID", task.to_string()),
                ("SLURM_CPUS_PER_TASK", "1".to_string()),
            ],
        );
    }
    // The merge Slurm runs after the array: the `--wrap` command.
    let wrap = submit
        .split("--wrap '")
        .nth(1)
        .and_then(|w| w.split('\'').next())
        .expect("the submission has a --wrap '...' command");
    bash_in(&dir, wrap, &[]);
    let merged: Value =
        serde_json::from_slice(&std::fs::read(dir.join("matrix.json")).expect("matrix.json"))
            .expect("the merge wrote JSON");
    let whole = json_of(&["matrix", "--seeds", "2", "--quiet", "--json"]);
    assert_eq!(without_host_time(merged), without_host_time(whole));
    let text = std::fs::read_to_string(dir.join("matrix.txt")).expect("matrix.txt");
    assert!(text.contains("20 cells x 2 seeds"), "{text}");
    assert!(text.contains("all pass"), "{text}");
}
