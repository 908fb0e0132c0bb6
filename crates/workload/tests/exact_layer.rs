//! The exact layer of workload files: which tables are exact, what they parse to, round trips,
//! positions of exact ops, and bad input with its exact position and kind.

use highpte_workload::exact::{Bits, Call, ExactOp, Expect, Expr};
use highpte_workload::*;

fn wl(ops: &str) -> String {
    format!("name = \"t\"\n[[phases]]\nname = \"main\"\nops = [\n{ops}\n]\n")
}

fn exact(spec: &WorkloadSpec, i: usize) -> &ExactOp {
    match &spec.phases[0].ops[i] {
        Op::Exact(e) => e,
        other => panic!("op {i} is not exact: {other:?}"),
    }
}

#[test]
fn tables_with_exact_keys_or_ops_are_exact_and_others_convenient() {
    let spec = parse_workload(
        &wl(r#"  { op = "mmap", name = "heap", size = "1M" },
  { op = "mmap", len = "1M", prot = "PROT_READ|PROT_WRITE", flags = ["MAP_SHARED", "MAP_ANONYMOUS"], as = "buf" },
  { op = "load", addr = "buf+4K", as = "v", expect = { value = 0 } },
  { op = "wait" },
  { op = "wait", expect = "ECHILD" },
  { op = "shmctl", shmid = 3, cmd = "IPC_RMID", expect = "EINVAL" },
  { op = "store", addr = "heap-0x10", value = -1, expect = "SIGSEGV" },"#),
        "t.toml",
    )
    .unwrap();
    assert!(matches!(spec.phases[0].ops[0], Op::Mmap { .. }));
    assert!(matches!(spec.phases[0].ops[3], Op::Wait {}));
    let m = exact(&spec, 1);
    assert_eq!(
        m.call,
        Call::Mmap {
            addr: Expr::num(0),
            len: Expr::num(1 << 20),
            prot: Bits::new(3),
            flags: Bits::new(0x21),
            fd: Expr::num(-1),
            offset: Expr::num(0),
        }
    );
    assert_eq!(m.bind.as_deref(), Some("buf"));
    assert_eq!(m.expect, None);
    assert_eq!(m.at, "t.toml:6:3");
    let l = exact(&spec, 2);
    assert_eq!(l.expect, Some(Expect::Value(Expr::num(0))));
    assert_eq!(l.call.exprs()[0].1.word(0x4000_0000), 0x4000_1000);
    assert_eq!(exact(&spec, 4).expect, Some(Expect::Errno(10)));
    assert_eq!(exact(&spec, 5).expect, Some(Expect::Errno(22)));
    let s = exact(&spec, 6);
    assert_eq!(s.expect, Some(Expect::Signal("SIGSEGV")));
    assert_eq!(s.call.exprs()[0].1.word(0x5000_0000), 0x4fff_fff0);
    assert_eq!(s.call.exprs()[1].1.word(0), 0xffff_ffff);
    assert!(spec.uses_exact_layer());
}

#[test]
fn exact_ops_round_trip_through_serialize() {
    let text = wl(
        r#"  { op = "mmap", addr = 0x50000001, len = 0, prot = 0x9, flags = "MAP_PRIVATE|MAP_ANONYMOUS|0x40000", fd = 3, offset = "4K", as = "a", expect = "EINVAL" },
  { op = "mremap", addr = "a", old_len = "4K", new_len = "8K", flags = "MREMAP_MAYMOVE|MREMAP_FIXED", new_addr = "a+1M", expect = { value = "a+1M" } },
  { op = "shmget", key = -1, size = "1M", flags = "IPC_CREAT|0o600", as = "id" },
  { op = "shmat", shmid = "id", flags = ["SHM_RDONLY", "SHM_RND"] },
  { op = "touch", addr = "brk-8K", len = "8K", write = true, pattern = "random", count = 3 },
  { op = "proc", what = "status" },
  { op = "open", path = "f", flags = "O_RDONLY", as = "fd" },
  { op = "lseek", fd = "fd", offset = -4096, whence = "SEEK_END" },"#,
    );
    let spec = parse_workload(&text, "t.toml").unwrap();
    let back = toml::to_string(&spec).unwrap();
    let again = parse_workload(&back, "back.toml").unwrap_or_else(|e| panic!("{e}\n{back}"));
    assert_eq!(again, spec);
    assert!(
        back.contains("flags = \"MAP_PRIVATE|MAP_ANONYMOUS|0x40000\""),
        "{back}"
    );
}

fn bad(ops: &str) -> WorkloadError {
    match parse_workload(&wl(ops), "bad.toml") {
        Ok(s) => panic!("expected an error, got {s:?}"),
        Err(e) => {
            assert_eq!(e.exit_code(), 2);
            assert!(!e.hint.is_empty());
            e
        }
    }
}

#[test]
fn bad_exact_ops_say_what_and_where() {
    let e = bad(
        r#"  { op = "mmap", len = "1M", prot = "PROT_READ", flags = "MAP_PRIVATE|MAP_ANONYMOS" },"#,
    );
    assert_eq!((e.line, e.kind), (5, ErrorKind::Shape));
    assert!(e.message.contains("unknown variant `MAP_ANONYMOS`"), "{e}");
    assert_eq!(e.hint, "did you mean \"MAP_ANONYMOUS\"?");
    let e = bad(r#"  { op = "load", addr = true },"#);
    assert_eq!((e.line, e.kind), (5, ErrorKind::Shape));
    assert!(e.message.contains("invalid type: boolean `true`"), "{e}");
    assert!(e.hint.contains("an argument is an integer"), "{e}");
    let e = bad(r#"  { op = "load", addr = 0x100000000 },"#);
    assert!(
        e.message.contains("does not fit an i386 argument word"),
        "{e}"
    );
    let e = bad(r#"  { op = "load", addr = 0, expect = "SIGSEV" },"#);
    assert_eq!(e.hint, "did you mean \"SIGSEGV\"?");
    let e = bad(r#"  { op = "load", addr = 0, as = "9x" },"#);
    assert!(e.message.contains("expected a name"), "{e}");
    // expect alone no longer makes a table exact (a convenient op may carry it: see
    // convenient_expect.rs); as or another exact key beside a region name still does
    let e = bad(r#"  { op = "touch", region = "heap", len = "4K", expect = "SIGSEGV" },"#);
    assert!(
        e.message.contains(
            "unknown field `region`: with as or another exact key this op is in the exact layer"
        ),
        "{e}"
    );
    let e = bad(r#"  { op = "store", addr = "nothere", value = 1 },"#);
    assert_eq!((e.line, e.column, e.kind), (5, 19, ErrorKind::Invalid));
    assert!(
        e.message
            .contains("phases[0].ops[0].addr: name \"nothere\" is used before any op binds it"),
        "{e}"
    );
    // a name bound by as, a region name and the built-in names are all defined
    parse_workload(
        &wl(r#"  { op = "mmap", name = "r", size = "4K" },
  { op = "brk", addr = "heap_start+4K", as = "b" },
  { op = "munmap", addr = "r", len = "PAGE_SIZE" },
  { op = "load", addr = "b-4", expect = { value = "TASK_SIZE" } },
  { op = "load", addr = "stack_top-4", expect = "SIGSEGV" },"#),
        "ok.toml",
    )
    .unwrap();
}

#[test]
fn a_child_phase_sees_the_names_bound_before_the_fork() {
    let text = "name = \"t\"\n[[phases]]\nname = \"main\"\nops = [\n  { op = \"mmap\", len = \"4K\", prot = 3, flags = 0x22, as = \"buf\" },\n  { op = \"fork\", child_phase = \"kid\", as = \"pid\" },\n]\n[[phases]]\nname = \"kid\"\nrun_by = \"children\"\nops = [ { op = \"load\", addr = \"buf\" }, { op = \"load\", addr = \"pid\" } ]\n";
    let e = parse_workload(text, "bad.toml").unwrap_err();
    // buf is bound before the fork; pid only after it, in the parent
    assert!(e.message.contains("ops[1].addr: name \"pid\""), "{e}");
    parse_workload(
        &text.replace(", { op = \"load\", addr = \"pid\" }", ""),
        "ok.toml",
    )
    .unwrap();
}
