//! The `replay` op: a page trace of a real program run by one simulated process.
//!
//! - Initial regions become private anonymous read-write-execute mappings (`MAP_FIXED`): the
//!   trace does not record the loader's protections or files, and the first-touch faults of
//!   an anonymous mapping (demand zero on the first read or write, write-after-read) are those
//!   of the executable's private pages.
//! - `mmap` records map anonymous memory at the recorded (folded) address with the recorded
//!   protection and sharing, file mappings included: the trace has no file contents, and a
//!   private file page faults like an anonymous one until written.
//! - `munmap`, `mprotect` and `mremap` go to the kernel with the recorded ranges; an
//!   `mprotect` over a hole between initial regions (which hold only touched pages) is
//!   applied page by page to the mapped pages.
//! - `brk` is replayed as `MAP_FIXED` anonymous `mmap` of the heap's growth (`munmap` of a
//!   shrink): the first `brk` record gives the initial break, because the simulated process's
//!   own break does not start where the traced program's did.
//! - `madvise` records are counted and skipped (the kernel has no `madvise`).
//! - Fetches go through the MMU as instruction fetches, reads as loads, writes and modifies
//!   as stores (a read-modify-write instruction takes one write fault).
//!
//! - Instances forked from one parent (`part = "exec"` in the parent, `"after_exec"` in the
//!   children): the parent maps the initial regions and writes every page of them the trace
//!   fetches from (the loader reading the text in); the children inherit those pages
//!   copy-on-write, skip the region records, and replay the rest. Fetches never write, so the
//!   text stays shared.
//!
//! A system call the kernel refuses, or an access that gets SIGSEGV or SIGBUS, means the
//! replay went wrong: the process fails with the record number, and the run's checks fail.

use super::{check_fail, fail, Ctl, PCtx, PhaseEnd};
use crate::spec::ReplayPart;
use crate::trace::{open_trace, AccessKind, Fold, PageSet, Record};
use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::mm::{
    MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, MREMAP_FIXED, MREMAP_MAYMOVE, PROT_EXEC,
    PROT_READ, PROT_WRITE,
};
use highpte_kernel::{FaultOutcome, Signal};
use highpte_machine::mmu::Access;
use highpte_machine::User;
use std::cell::RefCell;
use std::rc::Rc;

/// What the replays of a run did, over every instance.
#[derive(Clone, Debug, Default)]
pub struct ReplayTotals {
    /// Replays started.
    pub started: u32,
    /// Replays that reached the end of their trace.
    pub completed: u32,
    /// Records replayed.
    pub records: u64,
    /// Accesses replayed by kind (fetch, read, write, modify).
    pub accesses: [u64; 4],
    /// Distinct pages of the first replay to complete in top-level process 0: all, fetch,
    /// data, written.
    pub distinct: Option<[u64; 4]>,
    /// System-call and region records replayed.
    pub syscalls: u64,
    /// `madvise` records skipped.
    pub madvise_skipped: u64,
    /// Pages of text a parent loaded for forked instances (`part = "exec"`).
    pub text_pages_loaded: u64,
    /// Host seconds spent inside replay loops, summed over instances (for `highpte bench`'s
    /// records per second; overlapping instances count their time each). Never read by the
    /// simulation.
    pub loop_host_seconds: f64,
}

impl ReplayTotals {
    /// Accesses of every kind.
    pub fn total_accesses(&self) -> u64 {
        self.accesses.iter().sum()
    }
}

/// How often (in records) a replay checks whether it was killed.
const KILL_CHECK_RECORDS: u64 = 1 << 16;

/// An instruction fetch at `va`, through the MMU and the page-fault path.
fn fetch<M: PagingMode>(u: &mut User<'_, M>, va: u32) -> Result<(), Signal> {
    let h = u.handle();
    let k = u.kernel();
    let pid = u.pid();
    for _ in 0..16 {
        match h.user_translate(VirtAddr::new(va), Access::Fetch) {
            Ok(_) => return Ok(()),
            Err(pf) => {
                let out = h.enter_kernel("do_page_fault", |cx| {
                    k.do_page_fault(cx, pid, pf.addr, pf.code)
                });
                h.return_to_user();
                match out {
                    FaultOutcome::Handled => {
                        if let Some(s) = u.killed() {
                            return Err(s);
                        }
                    }
                    FaultOutcome::Signal(s) => return Err(s),
                }
            }
        }
    }
    Err(Signal::Sigsegv)
}

/// The `replay` op in process `pc`.
pub(crate) fn run<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    ctl: &Rc<RefCell<Ctl>>,
    trace: &str,
    part: ReplayPart,
) -> PhaseEnd {
    let known = ctl.borrow().trace_folds.get(trace).cloned();
    let fold: Rc<Fold> = match known {
        Some(f) => f,
        None => {
            check_fail(
                ctl,
                format!("replay: trace '{trace}' was not scanned before the run"),
            );
            return PhaseEnd::Failed;
        }
    };
    let spool = ctl.borrow().trace_spools.get(trace).cloned();
    let opened = match spool {
        Some(s) => s.reader(),
        None => open_trace(std::path::Path::new(trace)),
    };
    let mut r = match opened {
        Ok(r) => r,
        Err(e) => {
            fail(u, pc, ctl, "replay", e.to_string());
            check_fail(ctl, e.to_string());
            return PhaseEnd::Failed;
        }
    };
    if part == ReplayPart::Exec {
        return run_exec(u, pc, ctl, trace, &fold, r);
    }
    let skip_regions = part == ReplayPart::AfterExec;
    ctl.borrow_mut().replay.started += 1;
    // the first instance: top-level process 0, or the first child forked from it
    let track = pc.label == "p0" || pc.label == "p0c0";
    let mut sets: [PageSet; 4] = Default::default();
    let mut accesses = [0u64; 4];
    let mut syscalls = 0u64;
    let mut madvise_skipped = 0u64;
    let mut brk: Option<u64> = None;
    let mut next_kill_check = KILL_CHECK_RECORDS;
    let t0 = std::time::Instant::now();
    let flush = |ctl: &Rc<RefCell<Ctl>>, accesses: &[u64; 4], records, syscalls, madv| {
        let mut c = ctl.borrow_mut();
        c.replay.loop_host_seconds += t0.elapsed().as_secs_f64();
        for (t, a) in c.replay.accesses.iter_mut().zip(accesses) {
            *t += a;
        }
        c.replay.records += records;
        c.replay.syscalls += syscalls;
        c.replay.madvise_skipped += madv;
    };
    macro_rules! give_up {
        ($call:expr, $what:expr, $check:expr) => {{
            let records = r.records();
            flush(ctl, &accesses, records, syscalls, madvise_skipped);
            fail(u, pc, ctl, &$call, $what);
            if $check {
                check_fail(
                    ctl,
                    format!("replay of {trace}: process {}: {}", pc.label, $call),
                );
            }
            return PhaseEnd::Failed;
        }};
    }
    macro_rules! addr {
        ($page:expr, $kind:expr) => {
            match fold.addr($page) {
                Some(a) => a,
                None => give_up!(
                    format!(
                        "record {}: {} page {:#x} is above the user space after folding",
                        r.records(),
                        $kind,
                        $page
                    ),
                    "EFAULT".to_string(),
                    true
                ),
            }
        };
    }
    macro_rules! sys {
        ($name:expr, $e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => {
                    // running out of memory is what a capacity run looks for; anything else
                    // means the replay diverged from the traced run
                    let oom = e == highpte_kernel::Errno::ENOMEM || u.killed().is_some();
                    give_up!(
                        format!("record {}: {}", r.records(), $name),
                        e.name().to_string(),
                        !oom
                    )
                }
            }
        };
    }
    loop {
        let rec = match r.next_record() {
            Ok(Some(rec)) => rec,
            Ok(None) => break,
            Err(e) => give_up!(format!("replay: {e}"), "bad trace".to_string(), true),
        };
        match rec {
            Record::Access { kind, page } => {
                let va = addr!(page, kind.name());
                let res = match kind {
                    AccessKind::Fetch => fetch(u, va),
                    AccessKind::Read => u.load_u32(va).map(drop),
                    AccessKind::Write | AccessKind::Modify => u.store_u32(va, va),
                };
                if let Err(sig) = res {
                    let bad = sig != Signal::Sigkill;
                    give_up!(
                        format!("record {}: {} at {va:#x}", r.records(), kind.name()),
                        sig.name().to_string(),
                        bad
                    );
                }
                accesses[kind as usize] += 1;
                if track {
                    let q = u64::from(va >> 12);
                    sets[0].insert(q);
                    if kind == AccessKind::Fetch {
                        sets[1].insert(q);
                    } else {
                        sets[2].insert(q);
                        if kind.writes() {
                            sets[3].insert(q);
                        }
                    }
                }
                if r.records() >= next_kill_check {
                    next_kill_check += KILL_CHECK_RECORDS;
                    if let Some(s) = u.killed() {
                        give_up!(
                            format!("record {}: {}", r.records(), kind.name()),
                            s.name().to_string(),
                            false
                        );
                    }
                }
            }
            Record::Region { .. } if skip_regions => {}
            Record::Region { start, npages } => {
                syscalls += 1;
                let a = addr!(start, "region");
                let prot = PROT_READ | PROT_WRITE | PROT_EXEC;
                sys!(
                    "region",
                    u.mmap(
                        a,
                        npages << 12,
                        prot,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
                    )
                );
            }
            Record::Mmap {
                start,
                npages,
                prot,
                flags,
                ..
            } => {
                syscalls += 1;
                let a = addr!(start, "mmap");
                let share = if flags & MAP_SHARED != 0 {
                    MAP_SHARED
                } else {
                    MAP_PRIVATE
                };
                sys!(
                    "mmap",
                    u.mmap(a, npages << 12, prot & 7, share | MAP_ANONYMOUS | MAP_FIXED)
                );
            }
            Record::Munmap { start, npages } => {
                syscalls += 1;
                let a = addr!(start, "munmap");
                sys!("munmap", u.munmap(a, npages << 12));
            }
            Record::Mprotect {
                start,
                npages,
                prot,
            } => {
                syscalls += 1;
                let a = addr!(start, "mprotect");
                // the initial regions hold only touched pages: a range over a hole gets
                // ENOMEM, so then each page of it that is mapped is changed on its own
                if u.mprotect(a, npages << 12, prot & 7) == Err(highpte_kernel::Errno::ENOMEM)
                    && u.killed().is_none()
                {
                    for i in 0..npages as u32 {
                        match u.mprotect(a + (i << 12), 4096, prot & 7) {
                            Ok(()) | Err(highpte_kernel::Errno::ENOMEM) => {}
                            Err(e) => sys!("mprotect", Err::<(), _>(e)),
                        }
                    }
                }
            }
            Record::Mremap {
                old,
                old_npages,
                new,
                new_npages,
            } => {
                syscalls += 1;
                let a = addr!(old, "mremap");
                let b = addr!(new, "mremap");
                let (flags, to) = if a == b {
                    (MREMAP_MAYMOVE, 0)
                } else {
                    (MREMAP_MAYMOVE | MREMAP_FIXED, b)
                };
                sys!(
                    "mremap",
                    u.mremap(a, old_npages << 12, new_npages << 12, flags, to)
                );
            }
            Record::Brk { new_break } => {
                syscalls += 1;
                let nb = fold.page(new_break);
                match brk {
                    Some(cur) if nb > cur => {
                        let a = addr!(cur, "brk");
                        sys!(
                            "brk",
                            u.mmap(
                                a,
                                (nb - cur) << 12,
                                PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
                            )
                        );
                    }
                    Some(cur) if nb < cur => {
                        let a = addr!(nb, "brk");
                        sys!("brk", u.munmap(a, (cur - nb) << 12));
                    }
                    _ => {}
                }
                brk = Some(nb);
            }
            Record::Madvise { .. } => madvise_skipped += 1,
        }
    }
    let records = r.records();
    flush(ctl, &accesses, records, syscalls, madvise_skipped);
    let mut c = ctl.borrow_mut();
    c.replay.completed += 1;
    if track && c.replay.distinct.is_none() {
        c.replay.distinct = Some([sets[0].len(), sets[1].len(), sets[2].len(), sets[3].len()]);
    }
    PhaseEnd::Done
}

/// The `exec` part of a trace in process `pc`: map the initial regions, then write each page
/// of them that the trace fetches from (once, in trace order), as the loader reads the text
/// in; children forked afterwards share those pages copy-on-write.
fn run_exec<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    ctl: &Rc<RefCell<Ctl>>,
    trace: &str,
    fold: &Fold,
    mut r: crate::trace::TraceReader,
) -> PhaseEnd {
    // the initial regions, in folded pages, lowest first
    let mut regions: Vec<(u64, u64)> = Vec::new();
    let mut seen = PageSet::default();
    let mut loaded = 0u64;
    let end = |u: &mut User<'_, M>, pc: &mut PCtx, call: String, what: String| {
        fail(u, pc, ctl, &call, what);
        check_fail(
            ctl,
            format!("replay of {trace}: process {}: {call}", pc.label),
        );
        PhaseEnd::Failed
    };
    loop {
        let rec = match r.next_record() {
            Ok(Some(rec)) => rec,
            Ok(None) => break,
            Err(e) => return end(u, pc, format!("replay: {e}"), "bad trace".to_string()),
        };
        match rec {
            Record::Region { start, npages } => {
                let (Some(a), Some(_)) = (fold.addr(start), fold.addr(start + npages - 1)) else {
                    return end(
                        u,
                        pc,
                        format!("record {}: region above the user space", r.records()),
                        "EFAULT".to_string(),
                    );
                };
                let prot = PROT_READ | PROT_WRITE | PROT_EXEC;
                let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
                if let Err(e) = u.mmap(a, npages << 12, prot, flags) {
                    return end(
                        u,
                        pc,
                        format!("record {}: region", r.records()),
                        e.name().to_string(),
                    );
                }
                let s = fold.page(start);
                regions.push((s, s + npages));
                regions.sort_unstable();
            }
            Record::Access {
                kind: AccessKind::Fetch,
                page,
            } => {
                let q = fold.page(page);
                if !seen.insert(q) {
                    continue;
                }
                let i = regions.partition_point(|&(_, e)| e <= q);
                if regions.get(i).is_some_and(|&(s, _)| s <= q) {
                    let va = (q << 12) as u32;
                    if let Err(sig) = u.store_u32(va, va) {
                        return end(
                            u,
                            pc,
                            format!("record {}: loading text at {va:#x}", r.records()),
                            sig.name().to_string(),
                        );
                    }
                    loaded += 1;
                }
            }
            _ => {}
        }
    }
    ctl.borrow_mut().replay.text_pages_loaded += loaded;
    PhaseEnd::Done
}
