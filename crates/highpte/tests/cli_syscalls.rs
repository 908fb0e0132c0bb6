//! End-to-end tests of the exact layer of workload files (issue 15): the semantics suite in
//! `tests/syscalls/` (every `expect` met, and each one, changed to a wrong outcome, makes the
//! run exit 1 naming its line), the issue's example, `/proc` views, children that pause,
//! bad input (exit 2 with a position), and the three runner defects the exercise found.

mod cli_common;
use cli_common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/syscalls")
}

fn suite_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(suite_dir())
        .expect("tests/syscalls exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

/// Lines of `text` (1-based numbers) that hold an `expect`.
fn expect_lines(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains("expect = "))
        .map(|(i, _)| i + 1)
        .collect()
}

/// `text` with the `expect` of line `n` changed to an outcome no call of the suite has.
fn wrong_expect(text: &str, n: usize) -> String {
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 != n {
                return l.to_string();
            }
            let at = l.find("expect = ").expect("an expect") + "expect = ".len();
            let rest = &l[at..];
            let end = if rest.starts_with('{') {
                rest.find('}').expect("closing brace") + 1
            } else {
                1 + rest[1..].find('"').expect("closing quote") + 1
            };
            let wrong = if rest.starts_with("\"ENOSYS\"") {
                "\"EIO\""
            } else if rest.starts_with('{') {
                "{ value = 0x13579 }"
            } else {
                "\"ENOSYS\""
            };
            format!("{}{}{}", &l[..at], wrong, &rest[end..])
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_file(path: &Path) -> (Option<i32>, String) {
    let out = highpte()
        .args(["run", &path.display().to_string()])
        .output()
        .expect("run highpte");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn semantics_suite_meets_every_expectation() {
    let mut total = 0;
    for f in suite_files() {
        let text = std::fs::read_to_string(&f).expect("read");
        let want = expect_lines(&text).len() as u64;
        let v = json_of(&["run", &f.display().to_string(), "--json", "--check"]);
        assert_eq!(v["check_failures"], Value::Array(vec![]), "{}", f.display());
        assert_eq!(v["first_failure"], Value::Null, "{}", f.display());
        assert_eq!(v["processes_failed"], 0, "{}", f.display());
        assert_eq!(
            v["expectations_met"],
            want,
            "{}: every expect runs",
            f.display()
        );
        // leaks (free memory not back at its boot value) would be a check failure, above
        total += want;
    }
    assert!(
        total >= 60,
        "the suite has {total} expectations; at least 60"
    );
}

#[test]
fn every_wrong_expectation_fails_the_run_naming_its_line() {
    let dir = tmp_dir("syscalls-wrong");
    for f in suite_files() {
        let text = std::fs::read_to_string(&f).expect("read");
        let name = f.file_name().expect("name").to_string_lossy().into_owned();
        for n in expect_lines(&text) {
            let p = dir.join(&name);
            std::fs::write(&p, wrong_expect(&text, n)).expect("write");
            let (code, out) = run_file(&p);
            assert_eq!(
                code,
                Some(1),
                "{name} line {n} changed: exit 1 expected\n{out}"
            );
            let at = format!("{name}:{n}:");
            assert!(
                out.contains(&at),
                "{name} line {n}: the failure names {at}\n{out}"
            );
            assert!(
                out.contains("expected ENOSYS")
                    || out.contains("expected EIO")
                    || out.contains("expected value 0x13579"),
                "{out}"
            );
        }
    }
}

const ISSUE_EXAMPLE: &str = r#"name = "exact"
[machine]
config = "4g-highpte"
ram = "1G"
[[phases]]
name = "main"
ops = [
  { op = "mmap", addr = 0, len = 0, prot = "PROT_READ|PROT_WRITE", flags = ["MAP_PRIVATE", "MAP_ANONYMOUS"], expect = "EINVAL" },
  { op = "mmap", addr = 0, len = "1M", prot = "PROT_READ", flags = ["MAP_PRIVATE", "MAP_ANONYMOUS"], as = "buf" },
  { op = "load", addr = "buf+4K", expect = "ok" },
  { op = "store", addr = "buf", value = 7, expect = "SIGSEGV" },
  { op = "munmap", addr = "buf+1", len = 4096, expect = "EINVAL" },
  { op = "load", addr = 0xC0000000, expect = "SIGSEGV" },
]
"#;

#[test]
fn the_issue_example_passes_and_each_wrong_expect_exits_1() {
    let dir = tmp_dir("syscalls-issue");
    let p = dir.join("exact.toml");
    std::fs::write(&p, ISSUE_EXAMPLE).expect("write");
    let (code, out) = run_file(&p);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("5 expectations met"), "{out}");
    for (from, to) in [
        (
            "expect = \"EINVAL\" },\n  { op = \"mmap\"",
            "expect = \"ENOMEM\" },\n  { op = \"mmap\"",
        ),
        ("expect = \"ok\"", "expect = \"SIGSEGV\""),
        (
            "value = 7, expect = \"SIGSEGV\"",
            "value = 7, expect = \"ok\"",
        ),
        (
            "len = 4096, expect = \"EINVAL\"",
            "len = 4096, expect = \"EFAULT\"",
        ),
        (
            "0xC0000000, expect = \"SIGSEGV\"",
            "0xC0000000, expect = \"SIGBUS\"",
        ),
    ] {
        assert_eq!(ISSUE_EXAMPLE.matches(from).count(), 1, "{from}");
        std::fs::write(&p, ISSUE_EXAMPLE.replacen(from, to, 1)).expect("write");
        let (code, out) = run_file(&p);
        assert_eq!(code, Some(1), "{to}: {out}");
        assert!(out.contains("CHECKS FAILED"), "{out}");
    }
    // the message names the op's place, the call with its arguments, observed and expected
    std::fs::write(
        &p,
        ISSUE_EXAMPLE.replacen(
            "expect = \"EINVAL\" },\n  { op = \"mmap\"",
            "expect = \"ENOMEM\" },\n  { op = \"mmap\"",
            1,
        ),
    )
    .expect("write");
    let (_, out) = run_file(&p);
    assert!(
        out.contains("exact.toml:8:3: process p0 (pid 4): mmap(addr=0x0, len=0x0, prot=PROT_READ|PROT_WRITE, flags=MAP_PRIVATE|MAP_ANONYMOUS, fd=-1, offset=0x0) = EINVAL; expected ENOMEM"),
        "{out}"
    );
}

#[test]
fn munmap_in_the_middle_shows_two_vmas_in_maps() {
    let v = json_of(&[
        "run",
        &suite_dir()
            .join("munmap_mprotect.toml")
            .display()
            .to_string(),
        "--json",
    ]);
    let recs = v["proc_records"].as_array().expect("records");
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["what"], "maps");
    let maps = recs[0]["view"]["maps"].as_array().expect("maps");
    let spans: Vec<(String, String, String)> = maps
        .iter()
        .map(|m| {
            (
                m["start"].as_str().unwrap_or("").to_string(),
                m["end"].as_str().unwrap_or("").to_string(),
                m["perms"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        spans,
        vec![
            (
                "0x50000000".to_string(),
                "0x50001000".to_string(),
                "rw-p".to_string()
            ),
            (
                "0x50002000".to_string(),
                "0x50004000".to_string(),
                "rw-p".to_string()
            ),
        ]
    );
    // status at the end: 12K mapped (two VMAs), two pages resident (buf and buf+12K)
    let st = &recs[1]["view"]["status"];
    assert_eq!(st["VmSize"], 12);
    assert_eq!(st["VmData"], 12);
    assert_eq!(st["VmRSS"], 8);
}

#[test]
fn ptmeasure_children_pause_and_each_shows_its_vmpte() {
    let v = json_of(&["run", "../../workloads/ptmeasure.toml", "--json", "--check"]);
    assert_eq!(v["check_failures"], Value::Array(vec![]));
    assert_eq!(v["processes_failed"], 0);
    let procs = v["steps"][0]["procs"].as_array().expect("procs");
    let labels: Vec<&str> = procs
        .iter()
        .map(|p| p["process"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        labels,
        ["p0", "p0c0", "p0c1", "p0c2", "p0c3", "p0c4", "p0c5", "p0c6", "p0c7"]
    );
    for p in procs {
        // 32M of 4K pages: 8192 ptes, 8 pte pages of 1024 (2-level paging): 32 kB
        assert_eq!(p["status"]["VmPTE"], 32, "{p}");
        assert_eq!(p["status"]["VmRSS"], 32 * 1024, "{p}");
        assert_eq!(p["status"]["VmSize"], 32 * 1024, "{p}");
        assert_eq!(p["maps"][0]["perms"], "rw-s", "{p}");
    }
}

fn bad(text: &str) -> String {
    let dir = tmp_dir("syscalls-bad");
    let p = dir.join("bad.toml");
    std::fs::write(&p, text).expect("write");
    let (code, out) = run_file(&p);
    assert_eq!(code, Some(2), "{out}");
    assert!(!out.contains("panicked"), "{out}");
    out
}

const HEAD: &str = "name = \"bad\"\n[[phases]]\nname = \"main\"\nops = [\n";

#[test]
fn bad_exact_ops_are_clear_errors_with_their_position() {
    let out = bad(&format!("{HEAD}  {{ op = \"mmap\", len = \"4K\", prot = \"PROT_READ|PROT_WRTE\", flags = \"MAP_PRIVATE|MAP_ANONYMOUS\" }},\n]\n"));
    assert!(out.contains("bad.toml:5:"), "{out}");
    assert!(out.contains("unknown variant `PROT_WRTE`"), "{out}");
    assert!(out.contains("did you mean \"PROT_WRITE\"?"), "{out}");
    let out = bad(&format!(
        "{HEAD}  {{ op = \"load\", addr = \"bufx+4K\" }},\n]\n"
    ));
    assert!(out.contains("bad.toml:5:18: error: phases[0].ops[0].addr: name \"bufx\" is used before any op binds it"), "{out}");
    let out = bad(&format!("{HEAD}  {{ op = \"load\", addr = \"4G\" }},\n]\n"));
    assert!(
        out.contains("bad.toml:5:") && out.contains("does not fit an i386 argument word"),
        "{out}"
    );
    let out = bad(&format!(
        "{HEAD}  {{ op = \"load\", addr = 0, expect = \"EINVALID\" }},\n]\n"
    ));
    assert!(out.contains("did you mean \"EINVAL\"?"), "{out}");
    let out = bad(&format!(
        "{HEAD}  {{ op = \"brk\", addr = 0, as = \"brk\" }},\n]\n"
    ));
    assert!(out.contains("not a built-in name"), "{out}");
    let out = bad(&format!(
        "{HEAD}  {{ op = \"munmap\", addr = 0, len = 4096, prot = 1 }},\n]\n"
    ));
    assert!(
        out.contains("bad.toml:5:") && out.contains("unknown field `prot`"),
        "{out}"
    );
}

#[test]
fn map_fixed_over_stamped_private_memory_reads_zeros_not_old_stamps() {
    let dir = tmp_dir("syscalls-fixed");
    let p = dir.join("fixed.toml");
    std::fs::write(
        &p,
        format!(
            "{HEAD}  {{ op = \"mmap\", name = \"a\", size = \"64K\", fixed_at = 0x50000000 }},\n  {{ op = \"touch\", region = \"a\", write = true }},\n  {{ op = \"mmap\", name = \"b\", size = \"64K\", fixed_at = 0x50000000 }},\n  {{ op = \"touch\", region = \"b\" }},\n  {{ op = \"touch\", region = \"a\" }},\n]\n"
        ),
    )
    .expect("write");
    let (code, out) = run_file(&p);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn an_offset_past_a_region_shrunk_by_munmap_is_a_file_error() {
    let out = bad(&format!(
        "{HEAD}  {{ op = \"mmap\", name = \"a\", size = \"64K\" }},\n  {{ op = \"munmap\", region = \"a\", size = \"16K\" }},\n  {{ op = \"touch\", region = \"a\", offset = \"48K\" }},\n]\n"
    ));
    assert!(
        out.contains("bad.toml:7:") && out.contains("offset"),
        "{out}"
    );
    let out = bad(&format!(
        "{HEAD}  {{ op = \"mmap\", name = \"a\", size = \"64K\" }},\n  {{ op = \"munmap\", region = \"a\", offset = \"32K\" }},\n  {{ op = \"mprotect\", region = \"a\", prot = \"r\", offset = \"32K\" }},\n]\n"
    ));
    assert!(
        out.contains("bad.toml:7:")
            && out.contains("offset 32K is past the end of the region (32K)"),
        "{out}"
    );
}

#[test]
fn after_a_munmap_in_the_middle_the_tail_keeps_its_name_and_offsets() {
    let dir = tmp_dir("syscalls-hole");
    let p = dir.join("hole.toml");
    let ops = [
        "{ op = \"mmap\", name = \"a\", size = \"64K\", fixed_at = 0x50000000 }",
        "{ op = \"touch\", region = \"a\", write = true }",
        "{ op = \"munmap\", region = \"a\", offset = \"16K\", size = \"16K\" }",
        "{ op = \"touch\", region = \"a\", offset = \"32K\" }",
        "{ op = \"touch\", region = \"a\", size = \"16K\" }",
        "{ op = \"load\", addr = \"a+16K\", expect = \"SIGSEGV\" }",
        "{ op = \"load\", addr = \"a+32K\", expect = \"ok\" }",
        "{ op = \"touch\", region = \"a\" }",
    ];
    std::fs::write(&p, format!("{HEAD}  {},\n]\n", ops.join(",\n  "))).expect("write");
    let v = json_of(&["run", &p.display().to_string(), "--json"]);
    // the tail's stamps read back at their offsets: no data-stamp mismatch
    assert_eq!(v["check_failures"], Value::Array(vec![]));
    assert_eq!(v["expectations_met"], 2);
    // the last touch covers the hole: the process gets SIGSEGV there, as it should
    assert_eq!(v["first_failure"]["call"], "touch");
    assert_eq!(v["first_failure"]["errno_or_signal"], "SIGSEGV");
}

#[test]
fn an_oom_kill_of_a_paused_process_is_a_failure_and_stops_the_ramp() {
    let dir = tmp_dir("syscalls-oom");
    let p = dir.join("oom.toml");
    std::fs::write(
        &p,
        "name = \"oompause\"\n[machine]\nconfig = \"4g\"\nram = \"64M\"\ncpus = 1\n[processes]\ncount = 4\nramp = { start = 1, step = 1 }\n[[phases]]\nname = \"grab\"\nrun_by = \"each_new\"\nops = [\n  { op = \"mmap\", name = \"m\", size = \"24M\" },\n  { op = \"touch\", region = \"m\", write = true },\n  { op = \"pause\" },\n]\n",
    )
    .expect("write");
    let v = json_of(&["run", &p.display().to_string(), "--json"]);
    assert_eq!(v["processes_failed"], 1);
    assert_eq!(v["first_failure"]["call"], "pause");
    assert_eq!(v["first_failure"]["errno_or_signal"], "SIGKILL");
    assert_eq!(
        v["steps"].as_array().map(Vec::len),
        Some(3),
        "the ramp stops at the kill"
    );
}

#[test]
fn the_readme_examples_of_the_exact_layer_run_as_documented() {
    let readme = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workloads/README.md"),
    )
    .expect("read workloads/README.md");
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.contains("expect = "))
        .collect();
    assert_eq!(
        blocks.len(),
        3,
        "the exact example, the hole example and the convenient one"
    );
    let dir = tmp_dir("syscalls-readme");
    for (i, b) in blocks.iter().enumerate() {
        let name = if b.contains("name = \"hole\"") {
            "hole.toml"
        } else if b.contains("name = \"convenient\"") {
            "convenient.toml"
        } else {
            "exact.toml"
        };
        let p = dir.join(name);
        std::fs::write(&p, b).expect("write");
        let (code, out) = run_file(&p);
        assert_eq!(code, Some(0), "README example {i}: {out}");
        // what the README says the run prints
        let printed: Vec<&str> = readme
            .split("```text\n")
            .skip(1)
            .filter_map(|t| t.split("```").next())
            .filter(|t| t.contains(name))
            .collect();
        if name == "hole.toml" {
            assert_eq!(printed.len(), 1);
            for line in printed[0].lines() {
                assert!(
                    out.contains(line),
                    "README says {line:?}; the run printed:\n{out}"
                );
            }
        } else if name == "convenient.toml" {
            assert!(out.contains("3 expectations met"), "{out}");
            // the failure the README shows for the write expected to succeed
            assert_eq!(printed.len(), 1);
            std::fs::write(
                &p,
                b.replacen(
                    "write = true, expect = \"SIGSEGV\"",
                    "write = true, expect = \"ok\"",
                    1,
                ),
            )
            .expect("write");
            let (code, out) = run_file(&p);
            assert_eq!(code, Some(1), "{out}");
            for line in printed[0].lines() {
                let line = line.replace("convenient.toml:", &format!("{}:", p.display()));
                assert!(
                    out.contains(&line),
                    "README says {line:?}; the run printed:\n{out}"
                );
            }
        } else {
            assert!(out.contains("5 expectations met"), "{out}");
        }
    }
}

const CONVENIENT_EXPECT: &str = r#"name = "convenient"
[machine]
config = "4g-highpte"
ram = "256M"
[[phases]]
name = "main"
ops = [
  { op = "mmap", name = "ro", size = "64K", prot = "r" },
  { op = "touch", region = "ro", write = true, expect = "SIGSEGV" },
  { op = "touch", region = "ro", expect = "ok" },
  { op = "mmap", name = "huge", size = "3G", expect = "ENOMEM" },
  { op = "shmget", key = 9, size = "64K", create = true },
  { op = "shmget", key = 9, size = "128K", create = true, expect = "EINVAL" },
]
"#;

#[test]
fn expect_on_convenient_ops_is_judged_like_the_exact_layer() {
    let dir = tmp_dir("syscalls-convenient");
    let p = dir.join("conv.toml");
    std::fs::write(&p, CONVENIENT_EXPECT).expect("write");
    // the SIGSEGV is met and the process goes on: the ops after it run and meet theirs
    let v = json_of(&["run", &p.display().to_string(), "--json", "--check"]);
    assert_eq!(v["check_failures"], Value::Array(vec![]));
    assert_eq!(v["first_failure"], Value::Null);
    assert_eq!(v["processes_failed"], 0);
    assert_eq!(v["expectations_met"], 4);
    // the same touch expected to succeed: exit 1 naming the place, the op, observed, expected
    let from = "write = true, expect = \"SIGSEGV\"";
    assert_eq!(CONVENIENT_EXPECT.matches(from).count(), 1);
    std::fs::write(
        &p,
        CONVENIENT_EXPECT.replacen(from, "write = true, expect = \"ok\"", 1),
    )
    .expect("write");
    let (code, out) = run_file(&p);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("CHECKS FAILED"), "{out}");
    assert!(
        out.contains("conv.toml:9:3: process p0 (pid 4): touch(offset=\"0\", pattern=\"sequential\", region=\"ro\", stamp=true, write=true) = SIGSEGV; expected ok"),
        "{out}"
    );
    assert!(
        out.contains("/conv.toml:9:3 failed with SIGSEGV (expected ok)"),
        "{out}"
    );
    // an mmap and a shmget that succeed where a failure is expected
    for (from, to, line) in [
        (
            "size = \"3G\", expect = \"ENOMEM\"",
            "size = \"1M\", expect = \"ENOMEM\"",
            11,
        ),
        (
            "size = \"128K\", create = true, expect",
            "size = \"64K\", create = true, expect",
            13,
        ),
    ] {
        std::fs::write(&p, CONVENIENT_EXPECT.replacen(from, to, 1)).expect("write");
        let (code, out) = run_file(&p);
        assert_eq!(code, Some(1), "{to}: {out}");
        assert!(
            out.contains(&format!("conv.toml:{line}:3: process p0 (pid 4): ")),
            "{out}"
        );
        assert!(out.contains(" = 0 (ok); expected E"), "{out}");
    }
    // a value expected of an op that returns none: a file error with its position (exit 2)
    std::fs::write(
        &p,
        CONVENIENT_EXPECT.replacen(
            "region = \"ro\", expect = \"ok\"",
            "region = \"ro\", expect = { value = 0 }",
            1,
        ),
    )
    .expect("write");
    let (code, out) = run_file(&p);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("conv.toml:10:34: error: phases[0].ops[2].expect: expect = { value = ... } on a touch op, which returns no value"),
        "{out}"
    );
}
