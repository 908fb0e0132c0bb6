//! End-to-end tests of page-trace replay through the binary (docs/traces.md): `highpte replay`
//! of the checked-in trace with its exact figures, `trace convert` of the checked-in lackey
//! sample, a workload file with a `replay` op run by `run` and `compare`, and every kind of
//! bad trace refused with exit status 2, the record or byte it is at, and no panic.

mod cli_common;
use cli_common::*;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;

/// The checked-in trace: the first 60,000 lackey lines of the SQLite run, converted.
fn small_trace() -> String {
    data("sqlite-first60k.pgt.zst")
}

fn data(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .display()
        .to_string()
}

/// The figures `trace info --json` gives for `trace`: records, total accesses, distinct pages.
fn info_counts(trace: &str) -> (u64, [u64; 4], u64) {
    let v = json_of(&["trace", "info", trace, "--json"]);
    let a = &v["accesses"];
    let k = |n: &str| a[n].as_u64().unwrap_or(u64::MAX);
    (
        v["records"].as_u64().unwrap_or(0),
        [k("fetch"), k("read"), k("write"), k("modify")],
        v["distinct_pages"].as_u64().unwrap_or(0),
    )
}

#[test]
fn trace_info_of_the_small_trace() {
    let v = json_of(&["trace", "info", &small_trace(), "--json"]);
    assert_eq!(v["records"], 3850);
    assert_eq!(v["distinct_pages"], 58);
    assert_eq!(v["pages"]["fetch"], 39);
    assert_eq!(v["pages"]["data"], 19);
    assert_eq!(v["pages"]["written"], 11);
    assert_eq!(v["syscalls"]["brk"], 5);
    assert_eq!(v["syscalls"]["mprotect"], 1);
    assert_eq!(v["regions"].as_array().map(Vec::len), Some(28));
    // the valgrind i386 stack moves below 0xc0000000; nothing else moves
    assert_eq!(v["fold"]["ok"], true);
    assert_eq!(v["fold"]["moves"][0]["from"], "0xfeb17000");
    assert_eq!(v["fold"]["moves"][0]["to"], "0xbfffe000");
    assert_eq!(v["fold"]["moves"].as_array().map(Vec::len), Some(1));
}

#[test]
fn replay_of_the_small_trace_gives_exact_figures() {
    let t = small_trace();
    let (records, kinds, distinct) = info_counts(&t);
    let v = json_of(&["replay", &t, "--json", "--ram", "1G", "-q"]);
    assert_run_object(&v);
    assert_eq!(v["processes_failed"], 0);
    assert!(v["first_failure"].is_null(), "{}", v["first_failure"]);
    assert_eq!(v["instances"], 1);
    assert_eq!(v["instances_completed"], 1);
    assert_eq!(v["records"].as_u64(), Some(records));
    assert_eq!(records, 3850);
    let a = &v["accesses"];
    assert_eq!(
        [&a["fetch"], &a["read"], &a["write"], &a["modify"]].map(|x| x.as_u64().unwrap_or(0)),
        kinds
    );
    assert_eq!(kinds, [902, 2048, 849, 17]);
    assert_eq!(a["total"], 3816);
    assert_eq!(v["distinct_pages"].as_u64(), Some(distinct));
    assert_eq!(distinct, 58);
    assert_eq!(v["pages"]["fetch"], 39);
    assert_eq!(v["pages"]["written"], 11);
    // one demand-zero fault per distinct page, and a copy-on-write fault for each of the 4
    // pages first read (the zero page mapped) and then written; never a SIGSEGV
    let f = &v["faults"];
    assert_eq!(f["demand_zero"], 58);
    assert_eq!(f["cow"], 4);
    assert_eq!(f["total"], 62);
    assert_eq!(f["sigsegv"], 0);
    assert_eq!(f["sigbus"], 0);
    // 28 initial regions, 5 brk and 1 mprotect
    assert_eq!(v["syscalls_replayed"], 34);
    assert!(v["cycles_per_access"].as_f64().unwrap_or(0.0) > 1.0);
}

#[test]
fn replay_text_report_names_the_figures() {
    let out = stdout_of(&["replay", &small_trace(), "--ram", "1G", "-q"]);
    assert!(
        out.contains("replay: 1 instance(s) started, 1 completed; 3850 records, 3816 accesses (fetch 902, read 2048, write 849, modify 17)"),
        "{out}"
    );
    assert!(
        out.contains("distinct pages (instance 0): 58 (fetch 39, data 19, written 11)"),
        "{out}"
    );
}

#[test]
fn instances_multiply_the_work_and_the_page_tables() {
    let t = small_trace();
    let one = json_of(&["replay", &t, "--json", "--ram", "1G", "-q"]);
    let v = json_of(&[
        "replay",
        &t,
        "--instances",
        "5",
        "--ramp",
        "2,3",
        "--json",
        "--ram",
        "1G",
        "--config",
        "64g",
        "-q",
    ]);
    assert_eq!(v["instances"], 5);
    assert_eq!(v["instances_completed"], 5);
    assert_eq!(v["records"], 5 * 3850);
    assert_eq!(v["faults"]["total"], 5 * 62);
    assert_eq!(v["distinct_pages"], 58, "distinct pages are instance 0's");
    assert_eq!(v["steps"].as_array().map(Vec::len), Some(2));
    // 64g keeps the page tables low; 64g-highpte puts the pte pages high
    assert_eq!(v["pagetables"]["high_pages"], 0);
    assert!(one["pagetables"]["high_pages"].as_u64().unwrap_or(0) > 0);
}

#[test]
fn convert_of_the_lackey_sample_matches_the_checked_in_trace() {
    let dir = tmp_dir("replay-convert");
    let out = dir.join("conv.pgt.zst").display().to_string();
    let said = stdout_of(&[
        "trace",
        "convert",
        &data("lackey-sqlite-i386-first60k.txt.zst"),
        "-o",
        &out,
    ]);
    assert!(
        said.contains(
            "60000 lines (59981 accesses) -> 3850 records (28 initial regions, 6 system calls)"
        ),
        "{said}"
    );
    assert_eq!(info_counts(&out), (3850, [902, 2048, 849, 17], 58));
    assert_eq!(info_counts(&out), info_counts(&small_trace()));
    // plain PGT1 when the name ends in .pgt: the same records
    let plain = dir.join("conv.pgt").display().to_string();
    stdout_of(&[
        "trace",
        "convert",
        &data("lackey-sqlite-i386-first60k.txt.zst"),
        "-o",
        &plain,
    ]);
    let bytes = std::fs::read(&plain).expect("read the plain trace");
    assert_eq!(&bytes[..5], b"PGT1\x40");
    assert_eq!(info_counts(&plain), (3850, [902, 2048, 849, 17], 58));
}

#[test]
fn convert_reads_standard_input() {
    let dir = tmp_dir("replay-convert-stdin");
    let out = dir.join("s.pgt").display().to_string();
    let lackey = "I  08048000,3\n S 0804a010,4\nI  08049000,2\n L 0804a014,4\n";
    let o = highpte()
        .args(["trace", "convert", "-", "-o", &out])
        .write_stdin(lackey)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    // fetch, write, fetch (another page), and the read of the same data page is dropped
    // one initial region (pages 0x8048-0x804a) and three accesses
    assert_eq!(info_counts(&out), (4, [2, 0, 1, 0], 3));
}

/// A workload file with a `replay` op: two instances, run and compared.
fn replay_workload(dir: &std::path::Path) -> String {
    let f = dir.join("two.toml");
    std::fs::write(
        &f,
        format!(
            "name = \"two sqlites\"\n[machine]\nram = \"1G\"\n[processes]\ncount = 2\n[[phases]]\nname = \"main\"\nops = [ {{ op = \"replay\", trace = {:?} }}, {{ op = \"pause\" }} ]\n",
            small_trace()
        ),
    )
    .expect("write the workload");
    f.display().to_string()
}

#[test]
fn a_workload_file_replays_through_run_and_compare() {
    let dir = tmp_dir("replay-workload");
    let w = replay_workload(&dir);
    let v = json_of(&["run", &w, "--json"]);
    assert_run_object(&v);
    assert_eq!(v["processes_failed"], 0);
    assert_eq!(v["instances"], 2);
    assert_eq!(v["records"], 2 * 3850);
    assert_eq!(v["accesses"]["total"], 2 * 3816);
    assert_eq!(v["distinct_pages"], 58);
    assert_eq!(v["faults"]["total"], 2 * 62);

    let c = json_of(&["compare", &w, "--configs", "64g,64g-highpte", "--json"]);
    let runs = c.as_array().expect("compare --json prints an array");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["config"], "64g");
    assert_eq!(runs[1]["config"], "64g-highpte");
    for r in runs {
        assert_run_object(r);
        assert_eq!(r["records"], 2 * 3850);
        assert_eq!(r["distinct_pages"], 58);
        assert_eq!(r["faults"]["total"], 2 * 62);
        assert_eq!(r["instances"], 2);
    }
    // the same program: the page tables are low on 64g, the pte pages high on 64g-highpte,
    // where reaching them costs kmap_atomic maps and cycles
    assert_eq!(runs[0]["pagetables"]["high_pages"], 0);
    assert!(runs[1]["pagetables"]["high_pages"].as_u64().unwrap_or(0) > 0);
    assert!(runs[1]["kmap_atomic"].as_u64() > runs[0]["kmap_atomic"].as_u64());
    assert!(
        runs[1]["cycles_per_access"].as_f64().unwrap_or(0.0)
            > runs[0]["cycles_per_access"].as_f64().unwrap_or(f64::MAX)
    );
}

/// Write `bytes` to `name` in `dir`; its path.
fn file(dir: &std::path::Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write a test trace");
    p.display().to_string()
}

/// `replay` and `trace info` both refuse `path` with exit 2 and every one of `needles`.
fn refused(path: &str, needles: &[&str]) {
    bad_input(&["replay", path, "-q"], needles);
    bad_input(&["trace", "info", path], needles);
}

#[test]
fn bad_traces_exit_2_naming_the_record_or_byte() {
    let dir = tmp_dir("replay-bad");
    refused(
        &file(&dir, "magic.pgt", b"PGT2\x40\x00"),
        &[
            "byte 0",
            "not a PGT1 trace",
            "50 47 54 32",
            "highpte trace convert",
        ],
    );
    refused(
        &file(&dir, "trunc.pgt", b"PGT1\x40\x10\x80"),
        &["record 2 (byte 6)", "truncated varint"],
    );
    refused(
        &file(&dir, "unknown.pgt", b"PGT1\x40\x2f"),
        &[
            "record 1 (byte 5)",
            "unknown record type 7/5",
            "4 initial region",
        ],
    );
    // a 32-bit trace with a fetch of page 0x100000: one page past 4 GB
    let mut past = b"PGT1\x20".to_vec();
    past.extend([0x80, 0x80, 0x80, 0x08]); // (zigzag(0x100000) << 3) | 0
    refused(
        &file(&dir, "past.pgt", &past),
        &[
            "record 1 (byte 5)",
            "page 0x100000 is past the end of the address space (0x100000 pages)",
        ],
    );
    // an mmap range that runs past the end
    let mut mm = b"PGT1\x20".to_vec();
    mm.extend([0x04, 0xff, 0xff, 0x3f, 0x02, 0x03, 0x22, 0x00]);
    refused(
        &file(&dir, "mmap-past.pgt", &mm),
        &["record 1 (byte 5)", "past the end of the address space"],
    );
    // the checked-in trace cut in the middle of a zstd block
    let z = std::fs::read(small_trace()).expect("read the trace");
    refused(
        &file(&dir, "cut.pgt.zst", &z[..1000]),
        &[
            "record 27",
            "of the decompressed stream",
            "zstd error",
            "complete .zst",
        ],
    );
    // a zstd frame header followed by garbage
    let mut g = vec![0x28, 0xb5, 0x2f, 0xfd];
    g.extend([0xff; 64]);
    refused(&file(&dir, "garbage.pgt.zst", &g), &["zstd error"]);
    // not a trace at all
    bad_input(
        &["replay", &file(&dir, "t.toml", b"x")],
        &["not a trace", ".pgt or .pgt.zst"],
    );
    bad_input(
        &["replay", &dir.join("missing.pgt").display().to_string()],
        &["missing.pgt", "cannot read it"],
    );
}

/// A sparse file of 10 GB of zeros: refused at once, without reading it (the reader stops at
/// the first bad record, with its fixed buffer).
#[test]
fn ten_gigabytes_of_zeros_are_refused_at_once() {
    let dir = tmp_dir("replay-zeros");
    let sparse = |name: &str, head: &[u8]| {
        let p = dir.join(name);
        let mut f = std::fs::File::create(&p).expect("create");
        f.write_all(head).expect("write");
        f.set_len(10 << 30).expect("a sparse 10 GB file");
        p.display().to_string()
    };
    let t0 = std::time::Instant::now();
    refused(
        &sparse("zeros.pgt", b""),
        &["byte 0", "not a PGT1 trace", "00 00 00 00"],
    );
    // after a valid header, zero bytes decode as fetches of page 0: the second repeats the
    // first, which no writer does
    refused(
        &sparse("header-then-zeros.pgt", b"PGT1\x40"),
        &["record 2 (byte 6)", "repeats the previous fetch record"],
    );
    // 4 runs of the binary; reading 10 GB would take far longer
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        t0.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--instances-from fork`: one parent maps the program and loads its 39 text pages; the 4
/// instances it forks share them copy-on-write and never fault on text, where 4 independent
/// instances fault on every text page each.
#[test]
fn forked_instances_share_the_text() {
    let t = small_trace();
    let run = |from: &str| {
        json_of(&[
            "replay",
            &t,
            "--instances",
            "4",
            "--instances-from",
            from,
            "--ram",
            "1G",
            "--json",
            "-q",
        ])
    };
    let exec = run("exec");
    let fork = run("fork");
    for v in [&exec, &fork] {
        assert_eq!(v["processes_failed"], 0);
        assert_eq!(v["instances"], 4);
        assert_eq!(v["instances_completed"], 4);
        assert_eq!(v["records"], 4 * 3850);
        assert_eq!(v["distinct_pages"], 58);
        assert_eq!(v["faults"]["sigsegv"], 0);
        // the 4 pages read before written copy the zero page in every instance
        assert_eq!(v["faults"]["cow"], 4 * 4);
    }
    assert_eq!(exec["text_pages_loaded"], 0);
    assert_eq!(fork["text_pages_loaded"], 39);
    // exec: each instance demand-faults its 58 pages, text (39) included
    assert_eq!(exec["faults"]["demand_zero"], 4 * 58);
    // fork: the parent faults the 39 text pages once; each instance only its 19 data pages
    assert_eq!(fork["faults"]["demand_zero"], 39 + 4 * 19);
    assert_eq!(fork["faults"]["total"], 39 + 4 * (19 + 4));
    assert!(fork["replay"]
        .as_str()
        .is_some_and(|c| c.ends_with("--processes 4 --ramp none --instances-from fork")));
    bad_input(
        &["replay", &t, "--instances-from", "fork", "--ramp", "2,2"],
        &["--ramp needs --instances-from exec"],
    );
    bad_input(
        &["run", "sga", "--instances-from", "fork"],
        &["--instances-from applies to a page trace"],
    );
}

/// The amd64 trace the project recorded itself (tests/data/tiny.c, static, under valgrind
/// lackey): its stack at 0x1ffeffd000 folds to just below 0xc0000000, and it replays with no
/// SIGSEGV.
#[test]
fn the_amd64_trace_folds_and_replays() {
    let t = data("tiny-amd64.pgt.zst");
    let info = json_of(&["trace", "info", &t, "--json"]);
    assert_eq!(info["records"], 3078);
    assert_eq!(info["distinct_pages"], 95);
    assert_eq!(info["syscalls"]["mmap"], 1);
    assert_eq!(info["syscalls"]["munmap"], 1);
    assert_eq!(info["syscalls"]["mprotect"], 2);
    assert_eq!(info["fold"]["ok"], true);
    assert_eq!(info["fold"]["moves"][0]["from"], "0x1ffeffd000");
    assert_eq!(info["fold"]["moves"][0]["to"], "0xbfffc000");
    assert_eq!(info["fold"]["moves"][0]["pages"], 4);
    assert_replays(&t, 3078, 95);
    // forked instances of it too
    let v = json_of(&[
        "replay",
        &t,
        "--instances",
        "3",
        "--instances-from",
        "fork",
        "--ram",
        "1G",
        "--json",
        "-q",
    ]);
    assert_eq!(v["instances_completed"], 3);
    assert_eq!(v["faults"]["sigsegv"], 0);
    assert_eq!(v["processes_failed"], 0);
}

/// `trace` replays whole, once: `records` records, `distinct` pages, no failure.
fn assert_replays(trace: &str, records: u64, distinct: u64) {
    let v = json_of(&["replay", trace, "--ram", "1G", "--json", "-q"]);
    assert!(v["first_failure"].is_null(), "{}", v["first_failure"]);
    assert_eq!(v["check_failures"].as_array().map(Vec::len), Some(0));
    assert_eq!(v["instances_completed"], 1);
    assert_eq!(v["records"].as_u64(), Some(records));
    assert_eq!(v["distinct_pages"].as_u64(), Some(distinct));
    assert_eq!(v["faults"]["sigsegv"], 0);
    assert_eq!(v["faults"]["sigbus"], 0);
}

fn have(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Record tests/data/tiny.c under valgrind lackey when valgrind and gcc are installed, convert
/// and replay it; otherwise convert the checked-in lackey output of it.
#[test]
fn record_convert_and_replay_a_tiny_program() {
    let dir = tmp_dir("replay-record");
    let out = dir.join("tiny.pgt.zst").display().to_string();
    if have("valgrind") && have("gcc") {
        let exe = dir.join("tiny");
        let cc = std::process::Command::new("gcc")
            .args(["-O1", "-static", "-o"])
            .arg(&exe)
            .arg(data("tiny.c"))
            .status()
            .expect("run gcc");
        assert!(cc.success(), "gcc -static tiny.c failed");
        let lackey = dir.join("lackey.txt");
        let rec = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "valgrind --tool=lackey --trace-mem=yes --trace-syscalls=yes --log-fd=9 {} 9>{}",
                exe.display(),
                lackey.display()
            ))
            .output()
            .expect("run valgrind");
        assert!(rec.status.success(), "valgrind: {rec:?}");
        stdout_of(&[
            "trace",
            "convert",
            &lackey.display().to_string(),
            "-o",
            &out,
        ]);
    } else {
        eprintln!("valgrind or gcc is not installed: converting the checked-in lackey output of tiny.c instead of recording it");
        let said = stdout_of(&[
            "trace",
            "convert",
            &data("lackey-tiny-amd64.txt.zst"),
            "-o",
            &out,
        ]);
        assert!(
            said.contains("113069 lines (113024 accesses) -> 3078 records (28 initial regions, 9 system calls)"),
            "{said}"
        );
        assert_eq!(info_counts(&out), info_counts(&data("tiny-amd64.pgt.zst")));
    }
    // what the program does, whatever the compiler and C library: one mmap, written, made
    // read-only and unmapped, and a stack above 4 GB that folds
    let info = json_of(&["trace", "info", &out, "--json"]);
    assert_eq!(info["syscalls"]["mmap"], 1, "{info}");
    assert_eq!(info["syscalls"]["munmap"], 1, "{info}");
    assert!(
        info["syscalls"]["mprotect"].as_u64().unwrap_or(0) >= 1,
        "{info}"
    );
    assert_eq!(info["fold"]["ok"], true, "{info}");
    assert!(
        info["pages"]["written"].as_u64().unwrap_or(0) >= 16 + 8,
        "{info}"
    );
    let (records, _, distinct) = info_counts(&out);
    assert_replays(&out, records, distinct);
}

/// `compare` takes a trace where it takes a workload, with `--processes` instances, and prints
/// what the program cost on each configuration under its table.
#[test]
fn compare_takes_a_trace() {
    let t = small_trace();
    let args = [
        "compare",
        &t,
        "--configs",
        "64g,64g-highpte",
        "--processes",
        "3",
        "--ram",
        "1G",
        "-q",
    ];
    let mut j = args.to_vec();
    j.push("--json");
    let v = json_of(&j);
    let runs = v.as_array().expect("an array of runs");
    assert_eq!(runs.len(), 2);
    for r in runs {
        assert_eq!(r["instances"], 3);
        assert_eq!(r["records"], 3 * 3850);
        assert_eq!(r["distinct_pages"], 58);
    }
    let out = stdout_of(&args);
    assert!(out.contains("replay: per run, every instance"), "{out}");
    assert!(
        out.lines().any(|l| l
            .trim_start()
            .starts_with("64g-highpte  atomic     3 instances, 11550 records, 186 faults")),
        "{out}"
    );
}

/// A ramp of instances reports the replay per step, counted from the start of the run: the
/// checked-in trace is 3,850 records and 62 faults per instance (58 demand-zero + 4
/// copy-on-write), so step k of a 5-per-step ramp has 5k instances, 19,250k records and 310k
/// faults, and the last step's records are the run's.
#[test]
fn a_ramped_replay_reports_each_step() {
    let t = small_trace();
    let v = json_of(&["replay", &t, "--instances", "20", "--ramp", "5,5", "--json"]);
    let steps = v["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 4);
    for (i, s) in steps.iter().enumerate() {
        let k = i as u64 + 1;
        assert_eq!(s["instances"], 5 * k, "step {k}");
        assert_eq!(s["instances_completed"], 5 * k, "step {k}");
        assert_eq!(s["records"], 19_250 * k, "step {k}");
        assert_eq!(s["accesses"]["total"], 3_816 * 5 * k, "step {k}");
        assert_eq!(s["faults"]["total"], 310 * k, "step {k}");
        assert_eq!(s["faults"]["demand_zero"], 290 * k, "step {k}");
        assert_eq!(s["faults"]["cow"], 20 * k, "step {k}");
        assert_eq!(s["distinct_pages"], 58, "step {k}");
        assert!(s["tlb_misses_per_1000"].as_f64().unwrap() > 0.0);
        assert!(s["cycles_per_access"].as_f64().unwrap() > 0.0);
        // each step's instances add their page tables
        let pt = |s: &Value| {
            s["meminfo"]["PageTablesLow"].as_u64().unwrap()
                + s["meminfo"]["PageTablesHigh"].as_u64().unwrap()
        };
        if i > 0 {
            assert!(pt(s) > pt(&steps[i - 1]), "step {k}");
        }
    }
    assert_eq!(steps[3]["records"], v["records"]);
    assert_eq!(steps[3]["faults"]["total"], v["faults"]["total"]);
    // the run's own count goes on after the last step: the instances' exits map their pte
    // pages (in high memory on this configuration) to tear them down
    assert_eq!(steps[3]["kmap_atomic"], 1_896);
    assert_eq!(v["kmap_atomic"], 1_956);
    // the text report has the per-step table
    let text = stdout_of(&["replay", &t, "--instances", "20", "--ramp", "5,5"]);
    assert!(
        text.contains("per step (counted from the start of the run)"),
        "{text}"
    );
    assert!(text.contains("77000"), "{text}");
}
