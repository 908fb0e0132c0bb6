//! The ops of the convenient layer: [`run_op`] hands each op family to its function, which
//! works on the process's named regions and says how the op failed, if it did.

use super::access::{access, forget_stamps, pick_page, region_remapped, shm_obj_key};
use super::process::{fail, fork_child, PhaseEnd};
use super::{churn, files, replay, Ctl, PCtx, Region};
use crate::exact::expect::{judge, Judged, Outcome};
use crate::exact::{Expect, OpExpect};
use crate::spec::{Op, Prot, Size, WorkloadSpec};
use highpte_arch::PagingMode;
use highpte_kernel::mm::shm::{IPC_CREAT, SHM_RDONLY};
use highpte_kernel::mm::{
    MAP_ANONYMOUS, MAP_FIXED, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, MREMAP_MAYMOVE, PROT_EXEC,
    PROT_READ, PROT_WRITE,
};
use highpte_kernel::{Errno, Signal};
use highpte_machine::User;
use std::cell::RefCell;
use std::rc::Rc;

/// How a convenient op failed: the error of a call, the signal of an access, or a mistake of
/// the workload found while running it (a region that is gone, a file too short).
#[derive(Debug)]
pub(crate) enum OpFailure {
    Errno(Errno),
    Signal(Signal),
    Other(String),
}

impl OpFailure {
    /// As a report writes it (`ENOMEM`, `SIGSEGV`, or the message).
    pub(crate) fn show(&self) -> String {
        match self {
            OpFailure::Errno(e) => e.name().to_string(),
            OpFailure::Signal(s) => s.name().to_string(),
            OpFailure::Other(m) => m.clone(),
        }
    }
}

impl From<Errno> for OpFailure {
    fn from(e: Errno) -> Self {
        OpFailure::Errno(e)
    }
}

impl From<Signal> for OpFailure {
    fn from(s: Signal) -> Self {
        OpFailure::Signal(s)
    }
}

/// What a convenient op did: how the phase goes on, or how the op failed.
pub(crate) type OpResult = Result<PhaseEnd, OpFailure>;

pub(super) fn prot_bits(p: Prot) -> u32 {
    (if p.read { PROT_READ } else { 0 })
        | (if p.write { PROT_WRITE } else { 0 })
        | (if p.exec { PROT_EXEC } else { 0 })
}

/// The page range `offset .. offset + size` of region `r` (to its end without a size),
/// clamped to the region; `None` if `offset` is at or past its end (an earlier munmap or
/// mremap shrank it), so that no zero-length call reaches the kernel.
pub(super) fn range_of(r: &Region, offset: u64, size: Option<u64>) -> Option<(u32, u32)> {
    if offset >= u64::from(r.len) {
        return None;
    }
    Some(range_within(r, offset, size))
}

pub(super) fn range_within(r: &Region, offset: u64, size: Option<u64>) -> (u32, u32) {
    let off = (offset.min(u64::from(r.len)) as u32) & !0xfff;
    let len = size
        .map(|s| s.min(u64::from(r.len - off)))
        .unwrap_or(u64::from(r.len - off)) as u32;
    (r.addr + off, len.div_ceil(4096) * 4096)
}

/// The region named `name`, or the failure of an op that names a region the process has not.
pub(super) fn region(pc: &PCtx, name: &str) -> Result<Region, OpFailure> {
    pc.regions
        .get(name)
        .cloned()
        .ok_or_else(|| OpFailure::Other(format!("no region named '{name}'")))
}

/// The page range `offset .. offset + size` of region `r` named `name` (see [`range_of`]).
fn range(
    r: &Region,
    name: &str,
    offset: Size,
    size: Option<Size>,
) -> Result<(u32, u32), OpFailure> {
    range_of(r, offset.0, size.map(|s| s.0)).ok_or_else(|| {
        OpFailure::Other(format!(
            "offset {:#x} is past the end of region '{name}' ({:#x} bytes now)",
            offset.0, r.len
        ))
    })
}

/// Runs one op of process `pc`. A failure ends the process's phases, unless the op's
/// `expect` asks for it ([`judge`], shared with the exact layer).
pub(super) fn run_op<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    spec: &Rc<WorkloadSpec>,
    op: &Op,
    expect: Option<&OpExpect>,
    ctl: &Rc<RefCell<Ctl>>,
) -> PhaseEnd {
    let r = convenient_op(u, pc, spec, op, ctl);
    let Some(x) = expect else {
        return match r {
            Ok(end) => end,
            Err(f) => {
                fail(u, pc, ctl, op.kind(), f.show());
                PhaseEnd::Failed
            }
        };
    };
    let outcome = match r {
        Ok(PhaseEnd::Done) => Outcome::Value(match x.expect {
            Expect::Value(_) => returned_value(u, pc, op),
            _ => None,
        }),
        Ok(end) => return end,
        Err(OpFailure::Errno(e)) => Outcome::Errno(e.0),
        Err(OpFailure::Signal(s)) => Outcome::Signal(s),
        Err(OpFailure::Other(m)) => Outcome::Broken(m),
    };
    let desc = describe(op);
    let judged = Judged {
        at: &x.at,
        desc: &desc,
        kind: op.kind(),
    };
    judge(u, pc, ctl, &judged, &outcome, Some(&x.expect))
}

/// What a convenient op that succeeded returns (see [`Op::returns_value`]): the address of
/// the region it mapped, moved or attached, or the new break.
fn returned_value<M: PagingMode>(u: &User<'_, M>, pc: &PCtx, op: &Op) -> Option<u32> {
    match op {
        Op::Mmap { name, .. } | Op::MmapFile { name, .. } | Op::Shmat { name, .. } => {
            pc.regions.get(name).map(|r| r.addr)
        }
        Op::Mremap { region, .. } => pc.regions.get(region).map(|r| r.addr),
        Op::Brk { .. } => u
            .handle()
            .enter_kernel("brk_of", |cx| u.kernel().brk_of(cx, u.pid())),
        _ => None,
    }
}

/// The op as written, for the message of an unmet expectation: `touch(region="r",
/// write=true)`.
fn describe(op: &Op) -> String {
    let args = match toml::Value::try_from(op) {
        Ok(toml::Value::Table(t)) => t
            .iter()
            .filter(|(k, _)| k.as_str() != "op")
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    };
    format!("{}({args})", op.kind())
}

/// Runs one op, by family.
fn convenient_op<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    spec: &Rc<WorkloadSpec>,
    op: &Op,
    ctl: &Rc<RefCell<Ctl>>,
) -> OpResult {
    match op {
        Op::Replay { trace, part } => Ok(replay::run(u, pc, ctl, trace, *part)),
        Op::Mmap { .. } | Op::Munmap { .. } | Op::Mprotect { .. } | Op::Mremap { .. } => {
            vm_op(u, pc, op, ctl)
        }
        Op::Brk { grow } => brk(u, pc, grow.0),
        Op::Shmget { .. } | Op::Shmat { .. } | Op::Shmdt { .. } | Op::ShmRmid { .. } => {
            shm_op(u, pc, op)
        }
        Op::Touch { .. } => touch(u, pc, op, ctl),
        Op::Fork {
            children,
            child_phase,
            wait_done,
        } => fork(u, pc, spec, ctl, *children, child_phase, *wait_done),
        Op::Wait {} => wait(u),
        Op::Pause {} => Ok(PhaseEnd::Pause),
        Op::Exit {} => Ok(PhaseEnd::Exit),
        Op::FileWrite { .. }
        | Op::FileRead { .. }
        | Op::MmapFile { .. }
        | Op::Msync { .. }
        | Op::Fsync { .. }
        | Op::Unlink { .. } => files::file_op(u, pc, op, ctl),
        Op::Random { ops, mix, max_size } => Ok(churn::run_random(
            u, pc, spec, ctl, *ops, mix, max_size.0, true,
        )),
        Op::Exact(e) => Ok(crate::exact::run::run_exact(u, pc, spec, e, ctl)),
    }
}

/// `mmap`, `munmap`, `mprotect` and `mremap` of named regions.
fn vm_op<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    op: &Op,
    ctl: &Rc<RefCell<Ctl>>,
) -> OpResult {
    match op {
        Op::Mmap {
            name,
            size,
            prot,
            shared,
            fixed_at,
            populate,
        } => mmap(
            u, pc, ctl, name, *size, *prot, *shared, *fixed_at, *populate,
        )?,
        Op::Munmap {
            region: name,
            offset,
            size,
        } => munmap(u, pc, name, *offset, *size)?,
        Op::Mprotect {
            region: name,
            prot,
            offset,
            size,
        } => {
            let r = region(pc, name)?;
            let (a, l) = range(&r, name, *offset, *size)?;
            u.mprotect(a, u64::from(l), prot_bits(*prot))?;
            if a == r.addr && l >= r.len {
                pc.regions.get_mut(name).expect("region present").prot = prot_bits(*prot);
            }
        }
        Op::Mremap {
            region: name,
            size,
            may_move,
        } => {
            let r = region(pc, name)?;
            let new_len = (size.0.div_ceil(4096) * 4096) as u32;
            let na = u.mremap(
                r.addr,
                u64::from(r.len),
                u64::from(new_len),
                if *may_move { MREMAP_MAYMOVE } else { 0 },
                0,
            )?;
            region_remapped(pc, name, (r.addr, r.len), (na, new_len));
        }
        _ => unreachable!("vm_op is given vm ops only"),
    }
    Ok(PhaseEnd::Done)
}

/// `mmap` an anonymous region and name it.
#[allow(clippy::too_many_arguments)]
fn mmap<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    ctl: &Rc<RefCell<Ctl>>,
    name: &str,
    size: Size,
    prot: Prot,
    shared: bool,
    fixed_at: Option<u32>,
    populate: bool,
) -> Result<(), OpFailure> {
    let mut flags = MAP_ANONYMOUS | if shared { MAP_SHARED } else { MAP_PRIVATE };
    if fixed_at.is_some() {
        flags |= MAP_FIXED;
    }
    if populate {
        flags |= MAP_POPULATE;
    }
    let addr = u.mmap(fixed_at.unwrap_or(0), size.0, prot_bits(prot), flags)?;
    // the new mapping holds zero pages, whatever the range held before (MAP_FIXED)
    forget_stamps(pc, addr, (size.0.div_ceil(4096) * 4096) as u32);
    let obj = if shared {
        let mut c = ctl.borrow_mut();
        c.next_obj += 1;
        Some(c.next_obj)
    } else {
        None
    };
    pc.regions.insert(
        name.to_string(),
        Region {
            addr,
            len: (size.0.div_ceil(4096) * 4096) as u32,
            prot: prot_bits(prot),
            obj,
            pgoff: 0,
            shm: false,
            file: false,
            cow: false,
        },
    );
    Ok(())
}

/// `munmap` all or part of a region; the name keeps naming what is left.
fn munmap<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    name: &str,
    offset: Size,
    size: Option<Size>,
) -> Result<(), OpFailure> {
    let r = region(pc, name)?;
    let (a, l) = range(&r, name, offset, size)?;
    u.munmap(a, u64::from(l))?;
    forget_stamps(pc, a, l);
    if a == r.addr && l >= r.len {
        pc.regions.remove(name);
    } else if a == r.addr {
        let e = pc.regions.get_mut(name).expect("region present");
        e.addr += l;
        e.len -= l;
        e.pgoff += l >> 12;
    } else if u64::from(a) + u64::from(l) >= u64::from(r.addr) + u64::from(r.len) {
        let e = pc.regions.get_mut(name).expect("region present");
        e.len = a - r.addr;
    } else {
        // a hole in the middle: the name keeps naming the whole range, so the tail
        // keeps its offsets; an access to the hole faults as it should
        let e = pc.regions.get_mut(name).expect("region present");
        e.len = r.len;
    }
    Ok(())
}

/// Grow or shrink the heap by `grow` bytes; a refused `brk` is `ENOMEM`.
fn brk<M: PagingMode>(u: &mut User<'_, M>, pc: &mut PCtx, grow: i64) -> OpResult {
    let cur = u.brk(0);
    let want = (i64::from(cur) + grow).clamp(0, i64::from(u32::MAX)) as u32;
    let got = u.brk(want);
    if got != want {
        return Err(OpFailure::Errno(Errno::ENOMEM));
    }
    if grow < 0 {
        forget_stamps(
            pc,
            want.div_ceil(4096) * 4096,
            cur.div_ceil(4096) * 4096 - want.div_ceil(4096) * 4096,
        );
    }
    Ok(PhaseEnd::Done)
}

/// `shmget`, `shmat`, `shmdt` and `shmctl(IPC_RMID)` by key and region name.
fn shm_op<M: PagingMode>(u: &mut User<'_, M>, pc: &mut PCtx, op: &Op) -> OpResult {
    match op {
        Op::Shmget { key, size, create } => {
            u.shmget(*key, size.0, if *create { IPC_CREAT | 0o600 } else { 0 })?;
        }
        Op::Shmat {
            key,
            name,
            readonly,
        } => {
            let id = u.shmget(*key, 0, 0)?;
            let addr = u.shmat(id, 0, if *readonly { SHM_RDONLY } else { 0 })?;
            let size = u
                .handle()
                .enter_kernel("shm report", |cx| u.kernel().shm_segments(cx))
                .into_iter()
                .find(|(i, _, _)| *i == id)
                .map(|s| s.1)
                .unwrap_or(0);
            pc.regions.insert(
                name.clone(),
                Region {
                    addr,
                    len: size as u32,
                    prot: PROT_READ | if *readonly { 0 } else { PROT_WRITE },
                    obj: Some(shm_obj_key(id, *key)),
                    pgoff: 0,
                    shm: true,
                    file: false,
                    cow: false,
                },
            );
        }
        Op::Shmdt { region: name } => {
            let r = region(pc, name)?;
            u.shmdt(r.addr)?;
            pc.regions.remove(name);
        }
        Op::ShmRmid { key } => {
            let id = u.shmget(*key, 0, 0)?;
            u.shm_rmid(id)?;
        }
        _ => unreachable!("shm_op is given shm ops only"),
    }
    Ok(PhaseEnd::Done)
}

/// User accesses to a region: every page of the range (or `count` of them, in `pattern`
/// order), or, with `populate`, the range faulted in by the kernel and one access per pte page.
fn touch<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    op: &Op,
    ctl: &Rc<RefCell<Ctl>>,
) -> OpResult {
    let Op::Touch {
        region: name,
        pattern,
        write,
        count,
        stamp,
        offset,
        size,
        populate,
    } = op
    else {
        unreachable!("touch is given touch ops only")
    };
    let r = region(pc, name)?;
    let (a, l) = range(&r, name, *offset, *size)?;
    if *populate {
        if let Err(e) = u.populate_range(a, u64::from(l), *write) {
            return Err(match u.killed() {
                Some(s) => OpFailure::Signal(s),
                None => OpFailure::Errno(e),
            });
        }
        // one user access per pte page: the MMU must see what populate filled
        let step = M::PTE_PAGE_SPAN;
        let mut x = a;
        while x < a + l {
            access(u, pc, ctl, &r, x, *write, *stamp)?;
            x = x.saturating_add(step - (x - a) % step);
            if x == u32::MAX {
                break;
            }
        }
        return Ok(PhaseEnd::Done);
    }
    let pages = (l / 4096).max(1);
    let n = count.unwrap_or(u64::from(pages));
    let mut next = 0u32;
    for i in 0..n {
        let page = pick_page(pc, *pattern, i, pages, &mut next);
        access(u, pc, ctl, &r, a + page * 4096, *write, *stamp)?;
    }
    Ok(PhaseEnd::Done)
}

/// `fork` `children` children, one after another, each running `child_phase`.
fn fork<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    spec: &Rc<WorkloadSpec>,
    ctl: &Rc<RefCell<Ctl>>,
    children: u32,
    child_phase: &str,
    wait_done: bool,
) -> OpResult {
    let Some(phase) = spec.phases.iter().find(|p| p.name == child_phase).cloned() else {
        return Err(OpFailure::Other(format!("no phase '{child_phase}'")));
    };
    for _ in 0..children {
        let pid = fork_child(u, pc, spec, ctl, phase.clone())?;
        if wait_done {
            super::process::wait_child_done(u, ctl, pid);
            if u.killed().is_some() {
                break;
            }
        }
    }
    Ok(PhaseEnd::Done)
}

/// `wait` until no child is left (`ECHILD`).
fn wait<M: PagingMode>(u: &mut User<'_, M>) -> OpResult {
    loop {
        match u.wait() {
            Ok(_) => {}
            Err(e) if e.0 == 10 => return Ok(PhaseEnd::Done),
            Err(e) => return Err(e.into()),
        }
    }
}

/// A file name of the workload with `{p}` replaced by the process's index (a forked child
/// shares its parent's).
pub(super) fn file_name(file: &str, pc: &PCtx) -> String {
    file.replace("{p}", &pc.index.to_string())
}
