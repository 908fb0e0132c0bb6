//! Workload files: the built-ins, round trips, every class of bad input with its exact
//! position, and fuzzing that nothing panics.
//!
//! The fuzzing blocks run `HIGHPTE_WORKLOAD_FUZZ_CASES` cases each (default 800) from a fixed
//! seed, `HIGHPTE_WORKLOAD_FUZZ_SEED` (a number, or a word hashed into one; default "workload"
//! in ASCII); other values are refused (see `fuzz_env`). A long run:
//! `HIGHPTE_WORKLOAD_FUZZ_CASES=20000 cargo test --release -p highpte-workload --test
//! workload_files -- fuzz_ --nocapture`.

#[path = "../../machine/tests/fuzz_env/mod.rs"]
mod fuzz_env;

use highpte_workload::builtin::builtin_text;
use highpte_workload::*;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use std::path::PathBuf;

const GB: u64 = 1 << 30;
const MB: u64 = 1 << 20;

fn workloads_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../workloads")
}

/// A small valid workload; the bad-input tests change one line of it.
const BASE: &str = r#"name = "t"

[machine]
config = "4g-highpte"
ram = "1G"
cpus = 2

[processes]
count = 3

[[phases]]
name = "main"
ops = [
    { op = "mmap", name = "heap", size = "16M" },
    { op = "touch", region = "heap", write = true },
]
"#;

fn err(text: &str) -> WorkloadError {
    match parse_workload(text, "bad.toml") {
        Ok(spec) => panic!("expected an error, got {spec:?}"),
        Err(e) => e,
    }
}

fn assert_err(
    text: &str,
    line: usize,
    column: usize,
    kind: ErrorKind,
    needle: &str,
) -> WorkloadError {
    let e = err(text);
    assert_eq!(e.file, "bad.toml");
    assert_eq!((e.line, e.column), (line, column), "position of: {e}");
    assert_eq!(e.kind, kind, "kind of: {e}");
    assert!(
        e.message.contains(needle),
        "message {:?} lacks {needle:?}",
        e.message
    );
    assert!(!e.hint.is_empty());
    assert!(
        e.to_string()
            .starts_with(&format!("bad.toml:{line}:{column}: error: ")),
        "display: {e}"
    );
    assert!(e.to_string().contains("\n  hint: "), "display: {e}");
    assert_eq!(e.exit_code(), 2);
    e
}

#[test]
fn base_is_valid() {
    let spec = parse_workload(BASE, "base.toml").unwrap();
    assert_eq!(spec.machine.ram, Size(GB));
    assert_eq!(spec.machine.cpus, 2);
    assert_eq!(spec.machine.seed, 1);
    assert!(spec.machine.preempt);
    assert!(!spec.machine.debug);
    assert_eq!(spec.processes.count, 3);
    assert_eq!(spec.phases[0].run_by, RunBy::All);
    assert_eq!(spec.phases[0].repeat, 1);
    assert_eq!(
        spec.phases[0].ops[1],
        Op::Touch {
            region: "heap".into(),
            pattern: Pattern::Sequential,
            write: true,
            count: None,
            stamp: true,
            offset: Size(0),
            size: None,
            populate: false,
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Built-ins
// ---------------------------------------------------------------------------------------------

#[test]
fn every_builtin_parses_validates_and_is_its_file() {
    assert_eq!(
        BUILTINS,
        &[
            "sga",
            "wli",
            "forkstorm",
            "churn",
            "pagecache",
            "kmap-deadlock"
        ]
    );
    assert_eq!(builtin_names().collect::<Vec<_>>(), BUILTINS);
    for name in BUILTINS {
        let spec = builtin(name).unwrap_or_else(|| panic!("builtin {name}"));
        assert_eq!(spec.name, *name);
        assert!(spec.description.is_some());
        spec.validate().unwrap();
        let path = workloads_dir().join(format!("{name}.toml"));
        let from_file = load_workload(&path).unwrap();
        assert_eq!(from_file, spec, "{name}: the built-in is the file");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            builtin_text(name).unwrap()
        );
    }
    assert_eq!(builtin("nope"), None);
}

#[test]
fn builtin_defaults() {
    let sga = builtin("sga").unwrap();
    assert_eq!(sga.machine.config.name(), "64g-highpte");
    assert_eq!(sga.machine.ram, Size(32 * GB));
    assert_eq!(sga.machine.cpus, 4);
    assert_eq!(sga.processes.count, 2000);
    assert_eq!(
        sga.processes.ramp,
        Some(Ramp {
            start: 100,
            step: 100
        })
    );
    assert_eq!(sga.processes.steps().len(), 20);
    assert!(sga.phases[0].ops.contains(&Op::Shmget {
        key: 1,
        size: Size(512 * MB),
        create: true
    }));
    assert_eq!(sga.phases[1].run_by, RunBy::EachNew);
    assert_eq!(sga.phases[1].ops.last(), Some(&Op::Pause {}));

    let wli = builtin("wli").unwrap();
    assert_eq!(
        (wli.machine.config.name(), wli.machine.ram, wli.machine.cpus),
        ("64g-highpte", Size(12 * GB), 8)
    );
    assert_eq!(wli.processes.count, 1024);
    assert_eq!(wli.processes.ramp, None);
    assert!(wli.phases[0].ops.contains(&Op::Shmget {
        key: 7,
        size: Size(512 * MB),
        create: true
    }));

    let fs = builtin("forkstorm").unwrap();
    assert_eq!(
        (fs.machine.config.name(), fs.machine.ram, fs.machine.cpus),
        ("64g-highpte", Size(8 * GB), 4)
    );
    assert_eq!(fs.processes.count, 1);
    assert_eq!(fs.phases[1].repeat, 20);
    assert_eq!(
        fs.phases[1].ops[0],
        Op::Fork {
            children: 8,
            child_phase: "child".into(),
            wait_done: false,
        }
    );
    assert_eq!(fs.phases[2].run_by, RunBy::Children);
    assert!(matches!(&fs.phases[0].ops[0], Op::Mmap { size, .. } if *size == Size(256 * MB)));

    let churn = builtin("churn").unwrap();
    assert_eq!(
        (
            churn.machine.config.name(),
            churn.machine.ram,
            churn.machine.cpus
        ),
        ("4g-highpte", Size(4 * GB), 4)
    );
    assert_eq!(churn.processes.count, 16);
    assert_eq!(
        churn.phases[0].ops,
        vec![Op::Random {
            ops: 2000,
            mix: Mix::default(),
            max_size: Size(MB)
        }]
    );
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

/// A workload with every op, every pattern and every optional key.
const EVERYTHING: &str = r#"
name = "everything"
description = "all ops"
[machine]
config = "64g"
ram = "2G"
cpus = 1
preempt = false
strategy = "persistent"
pt_alloc = "buddy"
seed = 99
debug = true
[processes]
count = 10
ramp = { start = 2, step = 3 }
[[phases]]
name = "p0"
run_by = "first"
repeat = 2
ops = [
  { op = "mmap", name = "a", size = "8M", prot = "rx", shared = true, fixed_at = 0x40000000, populate = true },
  { op = "munmap", region = "a", offset = "4K", size = "4K" },
  { op = "mprotect", region = "a", prot = "none", offset = 8192, size = "1M" },
  { op = "mremap", region = "a", size = "16M", may_move = false },
  { op = "brk", grow = "-512K" },
  { op = "brk", grow = 4096 },
  { op = "shmget", key = -3, size = 123456, create = false },
  { op = "shmat", key = -3, name = "s", readonly = true },
  { op = "touch", region = "s", pattern = "random", count = 7, stamp = false },
  { op = "touch", region = "a", pattern = { kind = "strided", stride = "8K" }, offset = "1M", size = "2M" },
  { op = "touch", region = "a", pattern = { kind = "hot_cold", hot_fraction = 0.25, hot_weight = 0.75 }, write = true },
  { op = "touch", region = "a", pattern = { kind = "random" } },
  { op = "shmdt", region = "s" },
  { op = "shm_rmid", key = -3 },
  { op = "fork", children = 3, child_phase = "kid" },
  { op = "wait" },
  { op = "random", ops = 5, mix = { mmap = 1, write = 0 }, max_size = "64K" },
  { op = "file_write", file = "f{p}", size = "64K", offset = "8K", pattern = "random", count = 4 },
  { op = "file_read", file = "f{p}", offset = "4K", size = "8K", pattern = "sequential", count = 3 },
  { op = "mmap_file", name = "m", file = "f{p}", offset = "4K", size = "8K", prot = "r", shared = false, populate = true },
  { op = "msync", region = "m" },
  { op = "fsync", file = "f{p}" },
  { op = "unlink", file = "f{p}" },
  { op = "exit" },
]
[[phases]]
name = "kid"
run_by = "children"
ops = [ { op = "touch", region = "a" }, { op = "pause" } ]
[[phases]]
name = "p2"
run_by = "each_new"
ops = [ { op = "pause" } ]
"#;

#[test]
fn round_trip_serialize_then_parse() {
    let mut specs: Vec<WorkloadSpec> = BUILTINS.iter().map(|n| builtin(n).unwrap()).collect();
    let all = parse_workload(EVERYTHING, "everything.toml").unwrap();
    assert_eq!(all.phases[0].ops.len(), 24);
    assert_eq!(
        all.phases[0].ops[19],
        Op::MmapFile {
            name: "m".into(),
            file: "f{p}".into(),
            offset: Size(4096),
            size: Some(Size(8192)),
            prot: Prot::R,
            shared: false,
            populate: true,
        }
    );
    assert_eq!(
        all.phases[0].ops[3 + 1],
        Op::Brk {
            grow: SignedSize(-512 * 1024)
        }
    );
    assert_eq!(
        all.phases[0].ops[10],
        Op::Touch {
            region: "a".into(),
            pattern: Pattern::HotCold {
                hot_fraction: 0.25,
                hot_weight: 0.75
            },
            write: true,
            count: None,
            stamp: true,
            offset: Size(0),
            size: None,
            populate: false,
        }
    );
    assert_eq!(
        all.phases[0].ops[11],
        Op::Touch {
            region: "a".into(),
            pattern: Pattern::Random,
            write: false,
            count: None,
            stamp: true,
            offset: Size(0),
            size: None,
            populate: false,
        }
    );
    specs.push(all);
    for spec in specs {
        let text = toml::to_string(&spec).unwrap();
        let back = parse_workload(&text, "roundtrip.toml")
            .unwrap_or_else(|e| panic!("{e}\n--- serialized:\n{text}"));
        assert_eq!(back, spec);
    }
}

#[test]
fn file_op_problems() {
    let base = "name = \"t\"\n[[phases]]\nname = \"a\"\nops = [\n  { op = \"mmap\", name = \"anon\", size = \"1M\" },\n  { op = \"file_write\", file = \"data\", size = \"1M\" },\n  OP,\n]\n";
    let with = |op: &str| base.replace("OP", op);
    // the error points at the key on line 7, where the op starts at column 3
    let check = |op: &str, key: &str, needle: &str| -> WorkloadError {
        let col = 3 + op.rfind(&format!("{key} =")).expect("key in op");
        assert_err(&with(op), 7, col, ErrorKind::Invalid, needle)
    };
    parse_workload(&with("{ op = \"file_read\", file = \"data\" }"), "ok.toml").unwrap();
    let e = check(
        "{ op = \"file_read\", file = \"dta\" }",
        "file",
        "file \"dta\" is never written: no file_write op of the workload names it",
    );
    assert!(e.hint.contains("\"data\""), "{e}");
    check(
        "{ op = \"file_write\", file = \"a/b\", size = \"4K\" }",
        "file",
        "contains '/'",
    );
    check(
        "{ op = \"file_read\", file = \"data\", offset = 100 }",
        "offset",
        "offset = 100 is not page-aligned",
    );
    check(
        "{ op = \"file_write\", file = \"data\", size = 0 }",
        "size",
        "size = 0",
    );
    check(
        "{ op = \"file_write\", file = \"data\", size = \"2T\" }",
        "size",
        "past the largest file (1T)",
    );
    check(
        "{ op = \"msync\", region = \"anon\" }",
        "region",
        "region \"anon\" is not a file mapping",
    );
    check(
        "{ op = \"mmap_file\", name = \"m\", file = \"data\", size = \"4G\" }",
        "size",
        "larger than the 3G user address space",
    );
    check(
        "{ op = \"file_read\", file = \"data\", count = 0 }",
        "count",
        "count = 0",
    );
    // a touch past the end of a mapped file range is caught like any region
    check(
        "{ op = \"mmap_file\", name = \"m\", file = \"data\", size = \"8K\" }, { op = \"touch\", region = \"m\", offset = \"8K\" }",
        "offset",
        "past the end of the region",
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input: exact positions and messages
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_top_level_key() {
    // A misspelled table header: the key inside `[procesess]`, line 8 column 2.
    let text = BASE.replace("[processes]", "[procesess]");
    let e = assert_err(&text, 8, 2, ErrorKind::Shape, "unknown field `procesess`");
    assert!(e.message.contains("expected one of"), "{e}");
    assert!(e.hint.contains("did you mean `processes`"), "{e}");
}

#[test]
fn unknown_key_in_a_table() {
    let text = BASE.replace("cpus = 2", "cpus = 2\nprocesess = 3");
    let e = assert_err(
        &text,
        7,
        1,
        ErrorKind::Shape,
        "machine.procesess: unknown field `procesess`",
    );
    assert!(e.message.contains("`cpus`"));
}

#[test]
fn unknown_key_in_an_op() {
    let text = BASE.replace("write = true }", "write = true, strde = 4 }");
    let e = assert_err(
        &text,
        15,
        52,
        ErrorKind::Shape,
        "phases[0].ops[1].strde: unknown field `strde`",
    );
    assert!(
        e.message.contains("`stride`") || e.message.contains("`stamp`"),
        "{e}"
    );
}

#[test]
fn wrong_type() {
    let text = BASE.replace("cpus = 2", "cpus = \"four\"");
    let e = assert_err(
        &text,
        6,
        8,
        ErrorKind::Shape,
        "machine.cpus: invalid type: string \"four\", expected a whole number",
    );
    assert_eq!(e.hint, "cpus is a whole number from 1 to 32, e.g. cpus = 4");
    assert_eq!(
        e.to_string(),
        "bad.toml:6:8: error: machine.cpus: invalid type: string \"four\", expected a whole number from 1 (UP) to 32\n  hint: cpus is a whole number from 1 to 32, e.g. cpus = 4"
    );
}

#[test]
fn wrong_type_inside_an_op() {
    let text = BASE.replace("size = \"16M\"", "size = true");
    assert_err(
        &text,
        14,
        42,
        ErrorKind::Shape,
        "phases[0].ops[0].size: invalid type: boolean `true`, expected a size",
    );
    let text = BASE.replace("size = \"16M\"", "size = \"lots\"");
    assert_err(
        &text,
        14,
        42,
        ErrorKind::Shape,
        "invalid value: string \"lots\", expected a size",
    );
}

#[test]
fn missing_key_in_an_op() {
    let text = BASE.replace("region = \"heap\", ", "");
    assert_err(
        &text,
        15,
        5,
        ErrorKind::Shape,
        "phases[0].ops[1]: missing field `region`",
    );
}

#[test]
fn unknown_op() {
    let text = BASE.replace("op = \"touch\"", "op = \"tuoch\"");
    let e = assert_err(&text, 15, 12, ErrorKind::Shape, "unknown variant `tuoch`");
    assert_eq!(e.hint, "did you mean \"touch\"?");
}

#[test]
fn zero_processes() {
    let text = BASE.replace("count = 3", "count = 0");
    assert_err(
        &text,
        9,
        1,
        ErrorKind::Invalid,
        "processes.count: count = 0; expected at least 1 process",
    );
}

#[test]
fn ram_beyond_any_config() {
    let text = BASE.replace("ram = \"1G\"", "ram = \"128G\"");
    let e = assert_err(
        &text,
        5,
        1,
        ErrorKind::Invalid,
        "ram = \"128G\" is out of range; expected 16M to 64G",
    );
    assert!(e.hint.contains("64G"));
}

#[test]
fn ram_beyond_the_config() {
    let text = BASE.replace("ram = \"1G\"", "ram = \"8G\"");
    let e = assert_err(
        &text,
        5,
        1,
        ErrorKind::Invalid,
        "ram = \"8G\" is more than config \"4g-highpte\" can address (4G at most)",
    );
    assert_eq!(
        e.hint,
        "config \"64g\" or \"64g-highpte\" can address 8G; or lower ram"
    );
    let text = BASE.replace("4g-highpte", "nohighmem");
    let e = assert_err(
        &text,
        5,
        1,
        ErrorKind::Invalid,
        "more than config \"nohighmem\" can address (896M at most)",
    );
    assert!(e.hint.contains("\"4g\""));
}

#[test]
fn unknown_config() {
    let text = BASE.replace("config = \"4g-highpte\"", "config = \"8g\"");
    assert_err(&text, 4, 1, ErrorKind::Invalid, "unknown memory configuration \"8g\"; expected one of: nohighmem, 4g, 4g-highpte, 64g, 64g-highpte");
}

#[test]
fn unknown_kernel_profile() {
    let text = BASE.replace("cpus = 2", "cpus = 2\nkernel = \"linux-5.10\"");
    let e = assert_err(
        &text,
        7,
        1,
        ErrorKind::Invalid,
        "machine.kernel: unknown kernel profile \"linux-5.10\"; expected one of: 2.5, linux-6.1",
    );
    assert!(e.hint.contains("linux-6.1"), "{e}");
    // a number is a shape error with the key's hint
    let text = BASE.replace("cpus = 2", "cpus = 2\nkernel = 6.1");
    let e = err(&text);
    assert_eq!(e.line, 7, "{e}");
    assert!(e.to_string().contains("\"linux-6.1\""), "{e}");
}

#[test]
fn kernel_profile_round_trips_and_defaults_to_2_5() {
    let spec = parse_workload(BASE, "t.toml").unwrap();
    assert_eq!(spec.machine.kernel, highpte_arch::KernelProfile::Linux25);
    // the default is not written out, so files without the key print as before
    assert!(!toml::to_string(&spec).unwrap().contains("kernel"));
    let text = BASE.replace("cpus = 2", "cpus = 2\nkernel = \"linux-6.1\"");
    let spec = parse_workload(&text, "t.toml").unwrap();
    assert_eq!(spec.machine.kernel, highpte_arch::KernelProfile::Linux61);
    let out = toml::to_string(&spec).unwrap();
    assert!(out.contains("kernel = \"linux-6.1\"\n"), "{out}");
    assert_eq!(parse_workload(&out, "t.toml").unwrap(), spec);
    // "6.1" is accepted and written back as the canonical name
    let text = BASE.replace("cpus = 2", "cpus = 2\nkernel = \"6.1\"");
    let spec = parse_workload(&text, "t.toml").unwrap();
    assert!(toml::to_string(&spec)
        .unwrap()
        .contains("kernel = \"linux-6.1\"\n"));
}

#[test]
fn mapping_larger_than_user_space() {
    let text = BASE.replace("size = \"16M\"", "size = \"4G\"");
    let e = assert_err(
        &text,
        14,
        35,
        ErrorKind::Invalid,
        "phases[0].ops[0].size: mmap size = \"4G\" is larger than the 3G user address space",
    );
    assert!(e.hint.contains("3G"));
    let text = BASE.replace("size = \"16M\"", "size = 0");
    assert_err(
        &text,
        14,
        35,
        ErrorKind::Invalid,
        "mmap size = 0; expected 1 byte to 3G",
    );
}

#[test]
fn unknown_region() {
    let text = BASE.replace("region = \"heap\"", "region = \"haep\"");
    let e = assert_err(
        &text,
        15,
        21,
        ErrorKind::Invalid,
        "phases[0].ops[1].region: region \"haep\" is used before it is defined",
    );
    assert!(e.hint.contains("\"heap\""), "{e}");
}

#[test]
fn region_defined_only_later() {
    let text = BASE.replace(
        "ops = [\n",
        "ops = [\n    { op = \"munmap\", region = \"heap\" },\n",
    );
    assert_err(
        &text,
        14,
        22,
        ErrorKind::Invalid,
        "region \"heap\" is used before it is defined",
    );
}

#[test]
fn other_impossible_values() {
    let cases: &[(&str, &str, usize, usize, &str)] = &[
        (
            "cpus = 2",
            "cpus = 0",
            6,
            1,
            "cpus = 0 is out of range; expected 1 (UP) to 32",
        ),
        ("cpus = 2", "cpus = 33", 6, 1, "cpus = 33 is out of range"),
        ("cpus = 2", "cpus = -1", 6, 8, "invalid value: integer `-1`"),
        (
            "ram = \"1G\"",
            "ram = \"8M\"",
            5,
            1,
            "ram = \"8M\" is out of range",
        ),
        (
            "ram = \"1G\"",
            "ram = \"lots\"",
            5,
            7,
            "invalid value: string \"lots\", expected a size",
        ),
        ("ram = \"1G\"", "ram = 1000", 5, 1, "out of range"),
        (
            "cpus = 2",
            "cpus = 2\nstrategy = \"fast\"",
            7,
            1,
            "unknown strategy \"fast\"",
        ),
        (
            "cpus = 2",
            "cpus = 2\npt_alloc = \"slab\"",
            7,
            1,
            "unknown page-table allocator \"slab\"",
        ),
        (
            "count = 3",
            "count = 3\nramp = { start = 0, step = 1 }",
            10,
            10,
            "start = 0",
        ),
        (
            "count = 3",
            "count = 3\nramp = { start = 4, step = 1 }",
            10,
            10,
            "start = 4 is more than processes.count = 3",
        ),
        (
            "count = 3",
            "count = 3\nramp = { start = 1, step = 0 }",
            10,
            21,
            "step = 0",
        ),
        (
            "count = 3",
            "count = 40000",
            9,
            1,
            "more than the 32767 pids",
        ),
        (
            "name = \"main\"",
            "name = \"main\"\nrepeat = 0",
            13,
            1,
            "repeat = 0",
        ),
        (
            "write = true }",
            "write = true, count = 0 }",
            15,
            52,
            "count = 0",
        ),
        (
            "write = true }",
            "pattern = { kind = \"hot_cold\", hot_fraction = 0.0, hot_weight = 0.5 } }",
            15,
            38,
            "hot_fraction = 0 is out of range",
        ),
        (
            "write = true }",
            "pattern = { kind = \"hot_cold\", hot_fraction = 0.5, hot_weight = 1.5 } }",
            15,
            38,
            "hot_weight = 1.5 is out of range",
        ),
        (
            "write = true }",
            "pattern = { kind = \"strided\", stride = 0 } }",
            15,
            38,
            "stride = 0",
        ),
        (
            "write = true }",
            "offset = \"32M\" }",
            15,
            38,
            "offset 32M is past the end of the region (16M)",
        ),
        (
            "write = true }",
            "offset = \"1K\" }",
            15,
            38,
            "is not page-aligned",
        ),
        (
            "write = true }",
            "size = \"17M\" }",
            15,
            38,
            "runs past the end of the region",
        ),
        (
            "size = \"16M\" }",
            "size = \"16M\", fixed_at = 0xBFFFF000 }",
            14,
            49,
            "does not fit in user space",
        ),
        (
            "size = \"16M\" }",
            "size = \"16M\", fixed_at = 123 }",
            14,
            49,
            "not page-aligned",
        ),
        (
            "size = \"16M\" }",
            "size = \"16M\", prot = \"rwq\" }",
            14,
            56,
            "invalid value: string \"rwq\", expected a protection",
        ),
    ];
    for &(from, to, line, col, needle) in cases {
        assert!(BASE.contains(from), "{from}");
        let text = BASE.replacen(from, to, 1);
        let kind = if needle.starts_with("invalid") {
            ErrorKind::Shape
        } else {
            ErrorKind::Invalid
        };
        assert_err(&text, line, col, kind, needle);
    }
}

#[test]
fn phase_and_fork_problems() {
    let fork = BASE.replace(
        "write = true },",
        "write = true },\n    { op = \"fork\", child_phase = \"kid\" },",
    );
    let e = assert_err(
        &fork,
        16,
        20,
        ErrorKind::Invalid,
        "fork names child_phase \"kid\", but no phase has that name",
    );
    assert!(e.hint.contains("\"main\""));
    let not_children =
        format!("{fork}\n[[phases]]\nname = \"kid\"\nops = [ {{ op = \"exit\" }} ]\n");
    let e = assert_err(
        &not_children,
        16,
        20,
        ErrorKind::Invalid,
        "a child phase must be run_by = \"children\"",
    );
    assert!(e.hint.contains("run_by = \"children\""));
    let ok = format!("{fork}\n[[phases]]\nname = \"kid\"\nrun_by = \"children\"\nops = [ {{ op = \"touch\", region = \"heap\" }}, {{ op = \"exit\" }} ]\n");
    parse_workload(&ok, "ok.toml").unwrap();
    // The child inherits only what the parent defined before the fork.
    let late = ok.replace("{ op = \"mmap\", name = \"heap\", size = \"16M\" },\n", "")
        .replace("{ op = \"touch\", region = \"heap\", write = true },", "{ op = \"touch\", region = \"heap\", write = true },\n    { op = \"mmap\", name = \"heap\", size = \"16M\" },");
    let e = err(&late);
    assert!(
        e.message
            .contains("region \"heap\" is used before it is defined"),
        "{e}"
    );
    let dup = format!("{BASE}\n[[phases]]\nname = \"main\"\nops = [ {{ op = \"pause\" }} ]\n");
    assert_err(
        &dup,
        19,
        1,
        ErrorKind::Invalid,
        "a phase named \"main\" already exists",
    );
    let none = "name = \"t\"\nphases = []\n";
    assert_err(
        none,
        2,
        1,
        ErrorKind::Invalid,
        "phases: the workload has no phases",
    );
    let missing = "name = \"t\"\n";
    assert_err(missing, 1, 1, ErrorKind::Shape, "missing field `phases`");
    let no_ops = "name = \"t\"\n[[phases]]\nname = \"a\"\nops = []\n";
    assert_err(
        no_ops,
        4,
        1,
        ErrorKind::Invalid,
        "phases[0].ops: the phase has no ops",
    );
    let shm = "name = \"t\"\n[[phases]]\nname = \"a\"\nops = [ { op = \"shmat\", key = 5, name = \"s\" } ]\n";
    assert_err(
        shm,
        4,
        25,
        ErrorKind::Invalid,
        "shm key 5 is attached before any shmget creates it",
    );
    let shmdt = BASE.replace(
        "write = true },",
        "write = true },\n    { op = \"shmdt\", region = \"heap\" },",
    );
    assert_err(
        &shmdt,
        16,
        21,
        ErrorKind::Invalid,
        "was made by mmap; shmdt detaches shmat regions",
    );
    // Only process 0 runs `first` phases: the others never defined "init".
    let others = "name = \"t\"\n[processes]\ncount = 2\n[[phases]]\nname = \"a\"\nrun_by = \"first\"\nops = [ { op = \"mmap\", name = \"init\", size = \"4K\" } ]\n[[phases]]\nname = \"b\"\nops = [ { op = \"touch\", region = \"init\" } ]\n";
    let e = assert_err(
        others,
        10,
        25,
        ErrorKind::Invalid,
        "region \"init\" is used before it is defined (in processes other than process 0",
    );
    assert!(e.hint.contains("name = \"init\""), "{e}");
    parse_workload(&others.replace("count = 2", "count = 1"), "one.toml").unwrap();
    let mix = "name = \"t\"\n[[phases]]\nname = \"a\"\nops = [ { op = \"random\", ops = 10, mix = { mmap = 0, munmap = 0, mprotect = 0, mremap = 0, brk = 0, shm = 0, fork = 0, exit = 0, read = 0, write = 0, file = 0 } } ]\n";
    assert_err(
        mix,
        4,
        36,
        ErrorKind::Invalid,
        "every weight of the mix is 0",
    );
}

#[test]
fn syntax_errors() {
    let e = assert_err("name = \"t\n", 1, 10, ErrorKind::Syntax, "invalid TOML");
    assert!(e.hint.contains("syntax"));
    let text = BASE.replace("cpus = 2", "cpus = 2\ncpus = 3");
    assert_err(&text, 7, 1, ErrorKind::Syntax, "duplicate key");
    assert_err("", 1, 1, ErrorKind::Shape, "missing field `name`");
    // Deep nesting must be an error, not a stack overflow.
    let deep = format!("name = {}", "[".repeat(100_000));
    assert!(parse_workload(&deep, "deep.toml").is_err());
    let deep = format!("name = {}1{}", "[".repeat(5_000), "]".repeat(5_000));
    assert!(parse_workload(&deep, "deep.toml").is_err());
    // A date-time (valid TOML, wrong type everywhere in a workload).
    let e = err("name = 1979-05-27T07:32:00Z\n");
    assert_eq!((e.line, e.column), (1, 8), "{e}");
}

#[test]
fn io_errors() {
    let missing = workloads_dir().join("no-such-workload.toml");
    let e = load_workload(&missing).unwrap_err();
    assert_eq!((e.kind, e.line, e.column), (ErrorKind::Io, 0, 0));
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!(
            "{}: error: cannot read the workload file",
            missing.display()
        )),
        "{shown}"
    );
    assert_eq!(e.exit_code(), 2);

    let dir = std::env::temp_dir().join(format!("highpte-workload-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("latin1.toml");
    std::fs::write(&bin, b"name = \"t\"\n# caf\xe9\n").unwrap();
    let e = load_workload(&bin).unwrap_err();
    assert_eq!((e.kind, e.line, e.column), (ErrorKind::Syntax, 2, 6));
    assert!(e.message.contains("not UTF-8"));
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Fuzzing: never a panic
// ---------------------------------------------------------------------------------------------

/// Parsing either succeeds with a valid spec that round-trips, or fails with a positioned error
/// inside the text.
fn check_total(text: &str) {
    match parse_workload(text, "fuzz.toml") {
        Ok(spec) => {
            assert_eq!(spec.validate(), Ok(()));
            let again = toml::to_string(&spec).unwrap();
            assert_eq!(parse_workload(&again, "again.toml").unwrap(), spec);
        }
        Err(e) => {
            assert!(e.line >= 1, "{e}");
            assert!(e.line <= text.lines().count().max(1) + 1, "{e}");
            assert!(e.column >= 1, "{e}");
            let shown = e.to_string();
            assert!(shown.starts_with("fuzz.toml:"), "{shown}");
            assert_eq!(shown.matches('\n').count(), 1, "{shown}");
        }
    }
}

const TOKENS: &[&str] = &[
    "name",
    "machine",
    "processes",
    "phases",
    "ops",
    "op",
    "=",
    "\"",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    ",",
    "\n",
    " ",
    "mmap",
    "touch",
    "\"4G\"",
    "-1",
    "0",
    "1e400",
    "nan",
    "true",
    "\"x\"",
    "region",
    "size",
    "count",
    "ramp",
    "start",
    "step",
    "pattern",
    "kind",
    "hot_cold",
    "#",
    "'",
    "\"\"\"",
    "1979-05-27",
    "0x7fffffff",
    "99999999999999999999",
    "shm_rmid",
    "fork",
    "child_phase",
    "run_by",
    "children",
    "random",
    "mix",
    ".",
    "é",
    "\\u0000",
];

fn mutate_lines(text: &str, dels: &[usize]) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    for &d in dels {
        if !lines.is_empty() {
            lines.remove(d % lines.len());
        }
    }
    lines.join("\n")
}

fn swap_values(text: &str, a: usize, b: usize) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let with_value: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains(" = "))
        .collect();
    if with_value.len() < 2 {
        return text.to_string();
    }
    let (i, j) = (
        with_value[a % with_value.len()],
        with_value[b % with_value.len()],
    );
    let split = |l: &str| {
        let p = l.find(" = ").unwrap_or(0);
        (l[..p].to_string(), l[p..].to_string())
    };
    let (ki, vi) = split(&lines[i]);
    let (kj, vj) = split(&lines[j]);
    lines[i] = format!("{ki}{vj}");
    lines[j] = format!("{kj}{vi}");
    lines.join("\n")
}

/// The default seed of the fuzzing blocks: "workload" in ASCII.
const WORKLOAD_FUZZ_SEED: u64 = 0x776f_726b_6c6f_6164;

/// The configuration of each fuzzing block: the cases and seed from the environment (printed,
/// so a long run names what it ran).
fn fuzz_config() -> ProptestConfig {
    let cases = fuzz_env::cases("HIGHPTE_WORKLOAD_FUZZ_CASES", 800);
    let seed = fuzz_env::seed("HIGHPTE_WORKLOAD_FUZZ_SEED", WORKLOAD_FUZZ_SEED);
    println!(
        "workload-file fuzz: {cases} cases, seed {:#x} ({})",
        seed.value, seed.from
    );
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed.value),
        ..ProptestConfig::default()
    }
}

/// The environment variables of the fuzzing blocks are parsed strictly (issue 21).
#[test]
fn fuzz_env_parsing() {
    fuzz_env::self_test();
    let n = "HIGHPTE_WORKLOAD_FUZZ_CASES";
    assert_eq!(fuzz_env::parse_cases(n, Some("20000"), 800), Ok(20000));
    assert_eq!(
        fuzz_env::parse_cases(n, Some("many"), 800),
        Err(format!(
            "{n}=\"many\": not a number of cases; give a whole number, e.g. {n}=6000"
        ))
    );
}

proptest! {
    #![proptest_config(fuzz_config())]

    /// 800 cases by default: arbitrary Unicode strings.
    #[test]
    fn fuzz_arbitrary_strings(s in ".{0,400}") {
        check_total(&s);
    }

    /// 800 cases by default: a soup of TOML and workload tokens.
    #[test]
    fn fuzz_token_soup(toks in prop::collection::vec(prop::sample::select(TOKENS), 0..80)) {
        check_total(&toks.concat());
    }

    /// 800 cases by default: a built-in file with bytes overwritten (lossily back to UTF-8).
    #[test]
    fn fuzz_byte_flips(which in 0usize..4, flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let mut bytes = builtin_text(BUILTINS[which]).unwrap().as_bytes().to_vec();
        for (pos, b) in flips {
            let n = bytes.len();
            bytes[pos % n] = b;
        }
        check_total(&String::from_utf8_lossy(&bytes));
    }

    /// 800 cases by default: a built-in file with lines deleted.
    #[test]
    fn fuzz_deleted_lines(which in 0usize..4, dels in prop::collection::vec(any::<usize>(), 1..8)) {
        check_total(&mutate_lines(builtin_text(BUILTINS[which]).unwrap(), &dels));
    }

    /// 800 cases by default: a built-in file with the values of two `key = value` lines swapped, applied
    /// up to three times.
    #[test]
    fn fuzz_swapped_values(which in 0usize..4, swaps in prop::collection::vec((any::<usize>(), any::<usize>()), 1..4)) {
        let mut text = builtin_text(BUILTINS[which]).unwrap().to_string();
        for (a, b) in swaps {
            text = swap_values(&text, a, b);
        }
        check_total(&text);
    }

    /// 800 cases by default: the all-ops workload with one value replaced by a token.
    #[test]
    fn fuzz_everything_values(pos in any::<usize>(), tok in prop::sample::select(TOKENS)) {
        let spots: Vec<usize> = EVERYTHING.match_indices("= ").map(|(i, _)| i + 2).collect();
        let at = spots[pos % spots.len()];
        let end = EVERYTHING[at..].find([',', '\n', '}']).map_or(EVERYTHING.len(), |e| at + e);
        let text = format!("{}{}{}", &EVERYTHING[..at], tok, &EVERYTHING[end..]);
        check_total(&text);
    }
}
