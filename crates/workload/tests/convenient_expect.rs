//! `expect` on convenient ops (issue 15, item 3): which layer a table with `expect` reads as,
//! where the expectation is kept, round trips, and the value expectations a file may not ask.

use highpte_workload::exact::{Expect, Expr};
use highpte_workload::*;

fn wl(ops: &str) -> String {
    format!("name = \"t\"\n[[phases]]\nname = \"main\"\nops = [\n{ops}\n]\n")
}

fn bad(ops: &str) -> WorkloadError {
    match parse_workload(&wl(ops), "bad.toml") {
        Ok(s) => panic!("expected an error, got {s:?}"),
        Err(e) => {
            assert_eq!(e.exit_code(), 2);
            e
        }
    }
}

#[test]
fn a_convenient_op_keeps_its_expect_beside_it() {
    let spec = parse_workload(
        &wl(r#"  { op = "mmap", name = "r", size = "64K", prot = "r", expect = { value = 0x60000000 }, fixed_at = 0x60000000 },
  { op = "touch", region = "r", write = true, expect = "SIGSEGV" },
  { op = "touch", region = "r" },
  { op = "shmget", key = 9, size = "64K", create = true, expect = "EINVAL" },
  { op = "wait", expect = "ECHILD" },"#),
        "t.toml",
    )
    .unwrap();
    let ph = &spec.phases[0];
    assert!(matches!(ph.ops[0], Op::Mmap { .. }));
    assert!(matches!(ph.ops[1], Op::Touch { write: true, .. }));
    assert!(matches!(ph.ops[3], Op::Shmget { key: 9, .. }));
    let x = ph.expect_of(0).expect("mmap has an expect");
    assert_eq!(x.expect, Expect::Value(Expr::num(0x6000_0000)));
    assert_eq!(x.at, "t.toml:5:3");
    let x = ph.expect_of(1).expect("touch has an expect");
    assert_eq!(x.expect, Expect::Signal("SIGSEGV"));
    assert_eq!(x.at, "t.toml:6:3");
    assert!(ph.expect_of(2).is_none());
    assert_eq!(ph.expect_of(3).map(|x| &x.expect), Some(&Expect::Errno(22)));
    // valid in both layers: stays the exact wait(2), which keeps its own expect
    match &ph.ops[4] {
        Op::Exact(e) => assert_eq!(e.expect, Some(Expect::Errno(10))),
        other => panic!("wait with expect must stay exact: {other:?}"),
    }
    assert!(ph.expect_of(4).is_none());
    assert_eq!(ph.expects.len(), ph.ops.len());
}

#[test]
fn convenient_expectations_round_trip_through_serialize() {
    let text = wl(
        r#"  { op = "mmap", name = "r", size = "64K", prot = "r", expect = "ok" },
  { op = "touch", region = "r", write = true, expect = "SIGSEGV" },
  { op = "brk", grow = "8K", expect = { value = "heap_start+8K" } },
  { op = "touch", region = "r" },"#,
    );
    let spec = parse_workload(&text, "t.toml").unwrap();
    let back = toml::to_string(&spec).unwrap();
    let again = parse_workload(&back, "back.toml").unwrap_or_else(|e| panic!("{e}\n{back}"));
    assert_eq!(again, spec);
    assert_eq!(
        again.phases[0].expect_of(1).map(|x| &x.expect),
        Some(&Expect::Signal("SIGSEGV"))
    );
    assert!(again.phases[0].expect_of(3).is_none());
}

#[test]
fn a_value_expectation_needs_an_op_that_returns_one() {
    let e = bad(r#"  { op = "mmap", name = "r", size = "64K" },
  { op = "touch", region = "r", expect = { value = 0 } },"#);
    assert_eq!((e.line, e.column, e.kind), (6, 33, ErrorKind::Invalid));
    assert_eq!(
        e.message,
        "phases[0].ops[1].expect: expect = { value = ... } on a touch op, which returns no value"
    );
    assert!(
        e.hint
            .contains("values come from mmap, mmap_file, mremap and shmat"),
        "{e}"
    );
    let e = bad(r#"  { op = "random", ops = 10, expect = "ok" },"#);
    assert_eq!(
        e.message,
        "phases[0].ops[0].expect: a random op takes no expect: it runs many calls and reports their failures itself"
    );
    let e = bad(r#"  { op = "brk", grow = "4K", expect = { value = "nothere" } },"#);
    assert!(
        e.message
            .contains("phases[0].ops[0].expect: name \"nothere\" is used before any op binds it"),
        "{e}"
    );
    let e = bad(r#"  { op = "touch", region = "r", expect = "SIGSEV" },"#);
    assert_eq!(e.hint, "did you mean \"SIGSEGV\"?", "{e}");
    // a convenient key mistyped beside expect is reported as the convenient op's
    let e = bad(r#"  { op = "mmap", name = "r", size = "64K", sise = 1, expect = "ok" },"#);
    assert!(e.message.contains("unknown field `sise`"), "{e}");
}
