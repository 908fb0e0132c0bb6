//! Validation of exact ops: the file is checked for types only (the kernel judges the
//! values), and for names: every name an argument uses must be bound before it, by `as`, by a
//! region name, or be built in.

use super::{ExactOp, Expect, OpExpect, BUILTIN_NAMES};
use crate::spec::{with, Checker, Op, PathSeg, RegionKind};

/// Reports every name `e` uses that is neither built in nor `defined` at this point.
pub(crate) fn names(e: &ExactOp, p: &[PathSeg], defined: &dyn Fn(&str) -> bool, c: &mut Checker) {
    let mut uses: Vec<(&str, &super::Expr)> = e.call.exprs();
    if let Some(Expect::Value(x)) = &e.expect {
        uses.push(("expect", x));
    }
    names_used(uses, p, defined, c);
}

/// Reports a name the `expect = { value = ... }` of a convenient op uses that is neither
/// built in nor `defined` at this point.
pub(crate) fn expect_names(
    x: &OpExpect,
    p: &[PathSeg],
    defined: &dyn Fn(&str) -> bool,
    c: &mut Checker,
) {
    if let Expect::Value(v) = &x.expect {
        names_used(vec![("expect", v)], p, defined, c);
    }
}

/// The expectation of convenient op `op`: `random` and `replay` report their own failures
/// and take none; a value only where the op returns one ([`Op::returns_value`]).
pub(crate) fn convenient_expect(op: &Op, x: &OpExpect, p: &[PathSeg], c: &mut Checker) {
    if matches!(op, Op::Random { .. } | Op::Replay { .. }) {
        c.push(
            with(p, "expect"),
            format!(
                "a {} op takes no expect: it runs many calls and reports their failures itself",
                op.kind()
            ),
            "remove expect, or write the calls as single ops, each with its expect",
        );
    } else if matches!(x.expect, Expect::Value(_)) && !op.returns_value() {
        c.push(
            with(p, "expect"),
            format!(
                "expect = {{ value = ... }} on a {} op, which returns no value",
                op.kind()
            ),
            "expect \"ok\", an errno (\"ENOMEM\") or a signal (\"SIGSEGV\"); values come from mmap, mmap_file, mremap and shmat (the address) and brk (the new break)",
        );
    }
}

fn names_used(
    uses: Vec<(&str, &super::Expr)>,
    p: &[PathSeg],
    defined: &dyn Fn(&str) -> bool,
    c: &mut Checker,
) {
    for (key, x) in uses {
        let Some(name) = &x.name else { continue };
        if BUILTIN_NAMES.contains(&name.as_str()) || defined(name) {
            continue;
        }
        c.push(
            with(p, key),
            format!("name \"{name}\" is used before any op binds it"),
            format!(
                "bind it first with as = \"{name}\" on an earlier op (e.g. an mmap), name a region, or use a built-in name ({})",
                BUILTIN_NAMES.join(", ")
            ),
        );
    }
}

/// What a `munmap` of `offset .. offset + size` leaves of region `name` (as the runner does):
/// unmapping the head moves the region's start, unmapping the tail keeps the head, a hole
/// in the middle keeps the whole range (the tail keeps its offsets), unmapping all of it
/// removes the name. Later offsets are checked against that.
pub(crate) fn after_munmap(
    regions: &mut std::collections::BTreeMap<String, RegionKind>,
    name: &str,
    offset: u64,
    size: Option<u64>,
) {
    let Some(kind) = regions.get(name).copied() else {
        return;
    };
    let len = match kind {
        RegionKind::Mmap(n) => n,
        RegionKind::Shm(Some(n)) | RegionKind::File(Some(n)) => n,
        RegionKind::Shm(None) | RegionKind::File(None) => return,
    };
    let len = len.div_ceil(4096) * 4096;
    if offset >= len {
        return;
    }
    let cut = size
        .map_or(len - offset, |s| s.div_ceil(4096) * 4096)
        .min(len - offset);
    let left = if offset == 0 {
        len - cut
    } else if offset + cut >= len {
        offset
    } else {
        len
    };
    if left == 0 {
        regions.remove(name);
        return;
    }
    let kind = match kind {
        RegionKind::Mmap(_) => RegionKind::Mmap(left),
        RegionKind::Shm(_) => RegionKind::Shm(Some(left)),
        RegionKind::File(_) => RegionKind::File(Some(left)),
    };
    regions.insert(name.to_string(), kind);
}
