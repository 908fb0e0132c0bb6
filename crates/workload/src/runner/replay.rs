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
    ctl.borrow_mut().replay.started += 1;
    let mut rp = Replayer {
        fold: &fold,
        skip_regions: part == ReplayPart::AfterExec,
        // the first instance: top-level process 0, or the first child forked from it
        track: pc.label == "p0" || pc.label == "p0c0",
        sets: Default::default(),
        accesses: [0; 4],
        syscalls: 0,
        madvise_skipped: 0,
        brk: None,
        next_kill_check: KILL_CHECK_RECORDS,
    };
    let t0 = std::time::Instant::now();
    let ended = loop {
        let rec = match r.next_record() {
            Ok(Some(rec)) => rec,
            Ok(None) => break Ok(()),
            Err(e) => break Err(GiveUp::new(format!("replay: {e}"), "bad trace", true)),
        };
        let done = match rec {
            Record::Access { kind, page } => rp.access(u, kind, page, r.records()),
            rec => rp.syscall(u, rec, r.records()),
        };
        if let Err(g) = done {
            break Err(g);
        }
    };
    rp.flush(ctl, r.records(), t0);
    if let Err(g) = ended {
        fail(u, pc, ctl, &g.call, g.what);
        if g.check {
            check_fail(
                ctl,
                format!("replay of {trace}: process {}: {}", pc.label, g.call),
            );
        }
        return PhaseEnd::Failed;
    }
    let mut c = ctl.borrow_mut();
    c.replay.completed += 1;
    if rp.track && c.replay.distinct.is_none() {
        let sets = &rp.sets;
        c.replay.distinct = Some([sets[0].len(), sets[1].len(), sets[2].len(), sets[3].len()]);
    }
    PhaseEnd::Done
}

/// Why a replay stops: the call (with its record number), the errno or signal, and whether it
/// is a failed check (the replay diverged from the traced run) rather than running out of
/// memory or being killed.
struct GiveUp {
    call: String,
    what: String,
    check: bool,
}

impl GiveUp {
    fn new(call: String, what: &str, check: bool) -> Self {
        GiveUp {
            call,
            what: what.to_string(),
            check,
        }
    }
}

/// The state of one replay after the exec: the fold, the counts, the pages seen (by the
/// first instance only) and the break.
struct Replayer<'a> {
    fold: &'a Fold,
    /// The initial regions are inherited: their records are skipped.
    skip_regions: bool,
    /// Count distinct pages (all, fetched, data, written).
    track: bool,
    sets: [PageSet; 4],
    accesses: [u64; 4],
    syscalls: u64,
    madvise_skipped: u64,
    /// The folded break, after the first `brk` record.
    brk: Option<u64>,
    next_kill_check: u64,
}

impl Replayer<'_> {
    /// Adds what this replay did to the run's totals.
    fn flush(&self, ctl: &Rc<RefCell<Ctl>>, records: u64, t0: std::time::Instant) {
        let mut c = ctl.borrow_mut();
        c.replay.loop_host_seconds += t0.elapsed().as_secs_f64();
        for (t, a) in c.replay.accesses.iter_mut().zip(&self.accesses) {
            *t += a;
        }
        c.replay.records += records;
        c.replay.syscalls += self.syscalls;
        c.replay.madvise_skipped += self.madvise_skipped;
    }

    /// The folded address of `page`, or the failure of a trace whose page folds above user
    /// space.
    fn addr(&self, page: u64, kind: &str, records: u64) -> Result<u32, GiveUp> {
        self.fold.addr(page).ok_or_else(|| {
            GiveUp::new(
                format!(
                    "record {records}: {kind} page {page:#x} is above the user space after folding"
                ),
                "EFAULT",
                true,
            )
        })
    }

    /// One access through the MMU; every [`KILL_CHECK_RECORDS`] records, whether the process
    /// was killed.
    #[inline]
    fn access<M: PagingMode>(
        &mut self,
        u: &mut User<'_, M>,
        kind: AccessKind,
        page: u64,
        records: u64,
    ) -> Result<(), GiveUp> {
        let va = self.addr(page, kind.name(), records)?;
        let res = match kind {
            AccessKind::Fetch => fetch(u, va),
            AccessKind::Read => u.load_u32(va).map(drop),
            AccessKind::Write | AccessKind::Modify => u.store_u32(va, va),
        };
        if let Err(sig) = res {
            return Err(GiveUp::new(
                format!("record {records}: {} at {va:#x}", kind.name()),
                sig.name(),
                sig != Signal::Sigkill,
            ));
        }
        self.accesses[kind as usize] += 1;
        if self.track {
            let q = u64::from(va >> 12);
            self.sets[0].insert(q);
            if kind == AccessKind::Fetch {
                self.sets[1].insert(q);
            } else {
                self.sets[2].insert(q);
                if kind.writes() {
                    self.sets[3].insert(q);
                }
            }
        }
        if records >= self.next_kill_check {
            self.next_kill_check += KILL_CHECK_RECORDS;
            if let Some(s) = u.killed() {
                return Err(GiveUp::new(
                    format!("record {records}: {}", kind.name()),
                    s.name(),
                    false,
                ));
            }
        }
        Ok(())
    }

    /// One system-call record, at its folded addresses.
    fn syscall<M: PagingMode>(
        &mut self,
        u: &mut User<'_, M>,
        rec: Record,
        records: u64,
    ) -> Result<(), GiveUp> {
        // running out of memory is what a capacity run looks for; anything else means the
        // replay diverged from the traced run
        let sys = |u: &User<'_, M>, name: &str, e: highpte_kernel::Errno| {
            let oom = e == highpte_kernel::Errno::ENOMEM || u.killed().is_some();
            GiveUp::new(format!("record {records}: {name}"), e.name(), !oom)
        };
        match rec {
            Record::Access { .. } => unreachable!("accesses are not system calls"),
            Record::Region { .. } if self.skip_regions => {}
            Record::Region { start, npages } => {
                self.syscalls += 1;
                let a = self.addr(start, "region", records)?;
                let prot = PROT_READ | PROT_WRITE | PROT_EXEC;
                u.mmap(
                    a,
                    npages << 12,
                    prot,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                )
                .map_err(|e| sys(u, "region", e))?;
            }
            Record::Mmap {
                start,
                npages,
                prot,
                flags,
                ..
            } => {
                self.syscalls += 1;
                let a = self.addr(start, "mmap", records)?;
                let share = if flags & MAP_SHARED != 0 {
                    MAP_SHARED
                } else {
                    MAP_PRIVATE
                };
                u.mmap(a, npages << 12, prot & 7, share | MAP_ANONYMOUS | MAP_FIXED)
                    .map_err(|e| sys(u, "mmap", e))?;
            }
            Record::Munmap { start, npages } => {
                self.syscalls += 1;
                let a = self.addr(start, "munmap", records)?;
                u.munmap(a, npages << 12).map_err(|e| sys(u, "munmap", e))?;
            }
            Record::Mprotect {
                start,
                npages,
                prot,
            } => {
                self.syscalls += 1;
                let a = self.addr(start, "mprotect", records)?;
                // the initial regions hold only touched pages: a range over a hole gets
                // ENOMEM, so then each page of it that is mapped is changed on its own
                if u.mprotect(a, npages << 12, prot & 7) == Err(highpte_kernel::Errno::ENOMEM)
                    && u.killed().is_none()
                {
                    for i in 0..npages as u32 {
                        match u.mprotect(a + (i << 12), 4096, prot & 7) {
                            Ok(()) | Err(highpte_kernel::Errno::ENOMEM) => {}
                            Err(e) => return Err(sys(u, "mprotect", e)),
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
                self.syscalls += 1;
                let a = self.addr(old, "mremap", records)?;
                let b = self.addr(new, "mremap", records)?;
                let (flags, to) = if a == b {
                    (MREMAP_MAYMOVE, 0)
                } else {
                    (MREMAP_MAYMOVE | MREMAP_FIXED, b)
                };
                u.mremap(a, old_npages << 12, new_npages << 12, flags, to)
                    .map_err(|e| sys(u, "mremap", e))?;
            }
            Record::Brk { new_break } => {
                self.syscalls += 1;
                self.brk(u, new_break, records, &sys)?;
            }
            Record::Madvise { .. } => self.madvise_skipped += 1,
        }
        Ok(())
    }

    /// A `brk` record: the heap grows by an anonymous mapping or shrinks by an unmapping at
    /// the folded break (the first record only sets the break).
    fn brk<M: PagingMode>(
        &mut self,
        u: &mut User<'_, M>,
        new_break: u64,
        records: u64,
        sys: &dyn Fn(&User<'_, M>, &str, highpte_kernel::Errno) -> GiveUp,
    ) -> Result<(), GiveUp> {
        let nb = self.fold.page(new_break);
        match self.brk {
            Some(cur) if nb > cur => {
                let a = self.addr(cur, "brk", records)?;
                u.mmap(
                    a,
                    (nb - cur) << 12,
                    PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                )
                .map_err(|e| sys(u, "brk", e))?;
            }
            Some(cur) if nb < cur => {
                let a = self.addr(nb, "brk", records)?;
                u.munmap(a, (cur - nb) << 12)
                    .map_err(|e| sys(u, "brk", e))?;
            }
            _ => {}
        }
        self.brk = Some(nb);
        Ok(())
    }
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
