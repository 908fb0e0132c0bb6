//! The name-flow checks: walking the phases in the order processes run them, every region
//! name, shm key and `as` name must be defined before it is used.

use super::validate::{op_path, Scope};
use super::{with, Checker, Op, PathSeg, RegionKind, RunBy, WorkloadSpec};
use std::collections::BTreeMap;

/// What a walk of phases carries from op to op: the phases being walked (a fork into a phase
/// already on the stack is not followed again) and the phases by name.
pub(super) struct Walk<'a> {
    pub(super) stack: Vec<usize>,
    pub(super) index: &'a BTreeMap<&'a str, usize>,
}

/// The region `region` names at this point, reporting it if nothing defines it.
fn use_region(scope: &Scope, c: &mut Checker, p: &[PathSeg], region: &str) -> Option<RegionKind> {
    let r = scope.regions.get(region).copied();
    if r.is_none() {
        let known: Vec<String> = scope.regions.keys().map(|k| format!("\"{k}\"")).collect();
        c.push(
            with(p, "region"),
            format!("region \"{region}\" is used before it is defined"),
            if known.is_empty() {
                format!("define it first with {{ op = \"mmap\", name = \"{region}\", size = ... }} or {{ op = \"shmat\", key = ..., name = \"{region}\" }}")
            } else {
                format!(
                    "regions defined at this point: {}; or define \"{region}\" first with an mmap or shmat op",
                    known.join(", ")
                )
            },
        );
    }
    r
}

/// The length of a region, if validation knows it.
fn region_len(r: Option<RegionKind>) -> Option<u64> {
    match r {
        Some(RegionKind::Mmap(n))
        | Some(RegionKind::Shm(Some(n)))
        | Some(RegionKind::File(Some(n))) => Some(n),
        _ => None,
    }
}

impl WorkloadSpec {
    /// Walks phase `i` in order, defining and using region names and shm keys.
    pub(super) fn flow_phase(
        &self,
        i: usize,
        scope: &mut Scope,
        walk: &mut Walk<'_>,
        c: &mut Checker,
    ) {
        if walk.stack.contains(&i) || walk.stack.len() > 16 {
            return;
        }
        walk.stack.push(i);
        for (j, op) in self.phases[i].ops.iter().enumerate() {
            let p = op_path(i, j);
            if let Some(x) = self.phases[i].expect_of(j) {
                let defined = |n: &str| scope.regions.contains_key(n) || scope.names.contains(n);
                crate::exact::check::expect_names(x, &p, &defined, c);
            }
            if !flow_region_op(op, &p, scope, c) && !flow_shm_op(op, &p, scope, c) {
                self.flow_fork(op, &p, scope, walk, c);
            }
        }
        walk.stack.pop();
    }

    /// Fork ops (convenient and exact) walk their child phase with a copy of the scope; an
    /// exact op's names are checked, then its `as` name defined.
    fn flow_fork(
        &self,
        op: &Op,
        p: &[PathSeg],
        scope: &mut Scope,
        walk: &mut Walk<'_>,
        c: &mut Checker,
    ) {
        if let Op::Exact(e) = op {
            let defined = |n: &str| scope.regions.contains_key(n) || scope.names.contains(n);
            crate::exact::check::names(e, p, &defined, c);
        }
        // the child is a copy from before fork returns: it has not the pid bound
        if let Some(&k) = op.child_phase().and_then(|cp| walk.index.get(cp)) {
            if self.phases[k].run_by == RunBy::Children {
                let mut child = scope.clone();
                self.flow_phase(k, &mut child, walk, c);
            }
        }
        if let Op::Exact(e) = op {
            if let Some(b) = &e.bind {
                scope.names.insert(b.clone());
            }
        }
    }
}

/// The ops that define or use region names; false for any other op.
fn flow_region_op(op: &Op, p: &[PathSeg], scope: &mut Scope, c: &mut Checker) -> bool {
    match op {
        Op::Mmap { name, size, .. } => {
            scope.regions.insert(name.clone(), RegionKind::Mmap(size.0));
        }
        Op::Munmap {
            region,
            offset,
            size,
        } => {
            let r = use_region(scope, c, p, region);
            super::check_op::check_range(region_len(r), *offset, *size, p, c);
            crate::exact::check::after_munmap(&mut scope.regions, region, offset.0, size.map(|s| s.0));
        }
        Op::Mprotect {
            region,
            offset,
            size,
            ..
        }
        | Op::Touch {
            region,
            offset,
            size,
            ..
        } => {
            let r = use_region(scope, c, p, region);
            super::check_op::check_range(region_len(r), *offset, *size, p, c);
        }
        Op::Mremap { region, size, .. } => {
            if let Some(RegionKind::Mmap(_)) = use_region(scope, c, p, region) {
                scope
                    .regions
                    .insert(region.clone(), RegionKind::Mmap(size.0));
            }
        }
        Op::MmapFile { name, size, .. } => {
            scope
                .regions
                .insert(name.clone(), RegionKind::File(size.map(|s| s.0)));
        }
        Op::Msync { region } => match use_region(scope, c, p, region) {
            Some(RegionKind::File(_)) | None => {}
            Some(_) => c.push(
                with(p, "region"),
                format!("region \"{region}\" is not a file mapping; msync writes back the pages of a file mapped by mmap_file"),
                "name a region made by { op = \"mmap_file\", ... }",
            ),
        },
        Op::Shmdt { region } => {
            if let Some(RegionKind::Mmap(_)) = use_region(scope, c, p, region) {
                c.push(
                    with(p, "region"),
                    format!("region \"{region}\" was made by mmap; shmdt detaches shmat regions"),
                    "use { op = \"munmap\", region = ... } for mmap regions",
                );
            }
        }
        _ => return false,
    }
    true
}

/// The ops that create, attach and remove shm keys; false for any other op.
fn flow_shm_op(op: &Op, p: &[PathSeg], scope: &mut Scope, c: &mut Checker) -> bool {
    match op {
        Op::Shmget {
            key: k,
            size,
            create,
        } => {
            if *create || !scope.keys.contains_key(k) {
                scope.keys.insert(*k, Some(size.0));
            }
        }
        Op::Shmat { key: k, name, .. } => {
            if !scope.keys.contains_key(k) {
                c.push(
                    with(p, "key"),
                    format!("shm key {k} is attached before any shmget creates it"),
                    format!("add {{ op = \"shmget\", key = {k}, size = ... }} in this or an earlier phase"),
                );
            }
            let len = scope.keys.get(k).copied().flatten();
            scope.regions.insert(name.clone(), RegionKind::Shm(len));
        }
        Op::ShmRmid { key: k } => {
            if !scope.keys.contains_key(k) {
                c.push(
                    with(p, "key"),
                    format!("shm key {k} is removed before any shmget creates it"),
                    format!("add {{ op = \"shmget\", key = {k}, size = ... }} earlier"),
                );
            }
        }
        _ => return false,
    }
    true
}
