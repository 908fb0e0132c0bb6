//! Fault injection at every named allocation site: every site in
//! [`ALLOC_SITES`](highpte_kernel::ALLOC_SITES) is reached by a scenario (a process that
//! mmaps, touches, makes many VMAs, splits them, uses shared anonymous memory and SysV shm,
//! forks a child that writes copy-on-write, mremaps, populates a range, writes, reads and maps
//! an unlinked file, grows its heap and exits; plus a kernel task that allocates a kernel pte page), and then failed in turn: every
//! allocation at the site, and the 1st, 2nd, 3rd... one alone. Each run must complete (no
//! kernel bug, no deadlock, no fault loop), the failure must show as ENOMEM from a system
//! call or an OOM kill (never another errno or signal), the invariants must hold, and once
//! the processes are gone MemFree, LowFree, HighFree, the page tables and the kernel-object
//! bytes are back at their boot values. A rate-based run over several seeds with three
//! concurrent processes on two CPUs checks the same under random failures.

mod vm_common;
use highpte_arch::{Config, MemoryVariant, PagingMode, VirtAddr};
use highpte_kernel::fault_inject::SiteStats;
use highpte_kernel::fs::{O_CREAT, O_RDWR};
use highpte_kernel::mm::shm::IPC_CREAT;
use highpte_kernel::mm::{
    MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, MREMAP_FIXED, MREMAP_MAYMOVE, PROT_READ,
    PROT_WRITE,
};
use highpte_kernel::pgtable::pte_alloc_kernel;
use highpte_kernel::{Errno, FailAlloc, KernelOptions, PtAllocKind, Signal, ALLOC_SITES};
use highpte_machine::{MachineOptions, RunOutcome, System, TaskHandle, User};
use vm_common::{quiesce, Quiet, MB, PAGE};

const RW: u32 = PROT_READ | PROT_WRITE;
const PA: u32 = MAP_PRIVATE | MAP_ANONYMOUS;
const SA: u32 = MAP_SHARED | MAP_ANONYMOUS;

/// Exit code of a scenario process that was OOM-killed.
const KILLED: i32 = 9;

fn stamp(i: u32, salt: u32) -> u32 {
    (i.wrapping_mul(0x9e37_79b9) ^ salt.wrapping_mul(0x85eb_ca6b)) | 1
}

/// A system call under injection: ENOMEM is an answer (`None`) that changed nothing (with
/// `strict`: the same VMAs, RSS and kernel-object bytes, and the invariants hold); a kill ends
/// the process; anything else is a bug.
macro_rules! sys {
    ($u:expr, $strict:expr, $e:expr) => {{
        let before = $strict.then(|| snapshot($u));
        match $e {
            Ok(v) => Some(v),
            Err(e) if e == Errno::ENOMEM => {
                if let Some(b) = before {
                    assert_eq!(
                        snapshot($u),
                        b,
                        "{} changed state on ENOMEM",
                        stringify!($e)
                    );
                    let bad = $u
                        .handle()
                        .enter_kernel("check_invariants", |cx| $u.kernel().check_invariants(cx));
                    assert!(bad.is_empty(), "after {}: {bad:#?}", stringify!($e));
                }
                None
            }
            Err(e) if $u.killed().is_some() => {
                let _ = e;
                return KILLED;
            }
            Err(e) => panic!("{} failed with {e:?} under injection", stringify!($e)),
        }
    }};
}

/// What a failed system call must leave unchanged: VMAs, RSS, page tables, kernel objects.
fn snapshot<M: PagingMode>(u: &User<'_, M>) -> (Vec<(u32, u32, u32)>, u64, u64, u64) {
    let k = u.kernel();
    let mm = k.mm_of(u.pid()).unwrap();
    (
        u.handle()
            .enter_kernel("vma_list", |cx| k.vma_list(cx, u.pid())),
        mm.rss(),
        mm.nr_ptes(),
        k.kobj_bytes(),
    )
}

/// A memory access under injection: it works, or the process was OOM-killed.
macro_rules! acc {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(Signal::Sigkill) => return KILLED,
            Err(s) => panic!("{} got {s:?} under injection", stringify!($e)),
        }
    };
}

/// The scenario: reaches every user-side allocation site. `key` is the SysV key (several
/// copies may run at once); `strict` checks after every failed call that nothing changed
/// (only when it runs alone: the invariant checker needs a quiescent system).
fn scenario<M: PagingMode>(u: &mut User<'_, M>, key: i32, strict: bool) -> i32 {
    let a: u32 = 0x2000_0000; // private, 8 MB: several pte pages
    let v: u32 = 0x3000_0000; // many single-page VMAs
    let s: u32 = 0x3800_0000; // shared anonymous, 64 pages
    let d: u32 = 0x4000_0000; // mremap destination
    let p: u32 = 0x4800_0000; // populated range
    let mut stamps: Vec<(u32, u32)> = Vec::new();
    // private anonymous memory over several pte pages
    if sys!(u, strict, u.mmap(a, 8 * MB, RW, PA | MAP_FIXED)).is_some() {
        for i in (0..(8 * MB as u32 / PAGE)).step_by(37) {
            let va = a + i * PAGE;
            acc!(u.store_u32(va, stamp(i, 1)));
            stamps.push((va, stamp(i, 1)));
        }
        // a read of a never-written page maps the zero page
        assert_eq!(acc!(u.load_u32(a + PAGE)), 0);
        // splits: mprotect and munmap in the middle of the region
        sys!(u, strict, u.mprotect(a + 2 * PAGE, 4096, PROT_READ));
        if sys!(u, strict, u.munmap(a + 5 * PAGE, 4096)).is_some() {
            stamps.retain(|&(x, _)| x != a + 5 * PAGE);
        }
    }
    // many VMAs: more than a slab page of vm_area_structs
    for i in 0..48u32 {
        let prot = if i % 2 == 0 { RW } else { PROT_READ };
        if sys!(
            u,
            strict,
            u.mmap(v + i * 2 * PAGE, 4096, prot, PA | MAP_FIXED)
        )
        .is_some()
            && prot == RW
        {
            acc!(u.store_u32(v + i * 2 * PAGE, i));
        }
    }
    // punch holes: every munmap in the middle of a region splits a VMA
    let holes: u32 = 0x5000_0000;
    if sys!(u, strict, u.mmap(holes, 96 * 4096, RW, PA | MAP_FIXED)).is_some() {
        for i in (1..95).step_by(2) {
            sys!(u, strict, u.munmap(holes + i * PAGE, 4096));
        }
    }
    // shared anonymous memory
    let shared = sys!(u, strict, u.mmap(s, 64 * 4096, RW, SA | MAP_FIXED)).is_some();
    if shared {
        for i in (0..64).step_by(5) {
            acc!(u.store_u32(s + i * PAGE, i));
        }
    }
    // SysV shm: create, attach, touch, detach, remove
    if let Some(id) = sys!(u, strict, u.shmget(key, MB, IPC_CREAT | 0o600)) {
        if let Some(at) = sys!(u, strict, u.shmat(id, 0, 0)) {
            for i in (0..(MB as u32 / PAGE)).step_by(16) {
                acc!(u.store_u32(at + i * PAGE, i));
            }
            sys!(u, strict, u.shmdt(at)).expect("shmdt allocates nothing");
        }
        sys!(u, strict, u.shm_rmid(id)).expect("IPC_RMID allocates nothing");
    }
    // fork: the child checks the private stamps, writes copy-on-write and shared pages
    let child_stamps = stamps.clone();
    let forked = sys!(
        u,
        strict,
        u.fork("child", false, move |c| {
            for &(va, x) in child_stamps.iter().take(40) {
                assert_eq!(acc!(c.load_u32(va)), x, "child read {va:#x}");
            }
            for &(va, _) in child_stamps.iter().take(24) {
                acc!(c.store_u32(va, 0xc0c0_c0c0));
            }
            if shared {
                acc!(c.store_u32(s, 0x5eed));
            }
            0
        })
    );
    if forked.is_some() {
        match u.wait() {
            Ok(_) => {}
            Err(_) if u.killed().is_some() => return KILLED,
            Err(e) => panic!("wait: {e:?}"),
        }
    }
    // the parent's private pages are its own again
    for &(va, x) in stamps.iter().take(40) {
        assert_eq!(acc!(u.load_u32(va)), x, "parent read {va:#x}");
    }
    // mremap: move 2 MB of the private region (new pte pages at the destination)
    let (from, len) = (a + 4 * MB as u32, 2 * MB as u32);
    if sys!(
        u,
        strict,
        u.mremap(
            from,
            len.into(),
            len.into(),
            MREMAP_MAYMOVE | MREMAP_FIXED,
            d
        )
    )
    .is_some()
    {
        for st in stamps.iter_mut() {
            if (from..from + len).contains(&st.0) {
                st.0 = st.0 - from + d;
            }
        }
    }
    // populate_range on a fresh region, write and read
    if sys!(u, strict, u.mmap(p, MB, RW, PA | MAP_FIXED)).is_some() {
        let r = u.handle().enter_kernel("populate_range", |cx| {
            u.kernel().populate_range(cx, u.pid(), p, MB, true)
        });
        u.handle().return_to_user();
        match r {
            Ok(n) => assert_eq!(n, MB / 4096),
            Err(Errno::ENOMEM) => {}
            Err(e) => panic!("populate_range: {e:?}"),
        }
        acc!(u.store_u32(p + 17 * PAGE, 5));
    }
    if shared {
        let r = u.handle().enter_kernel("populate_range", |cx| {
            u.kernel().populate_range(cx, u.pid(), s, 64 * 4096, false)
        });
        u.handle().return_to_user();
        assert!(matches!(r, Ok(_) | Err(Errno::ENOMEM)), "{r:?}");
    }
    // a file, unlinked at once (the descriptor keeps it; exit closes it): written (page-cache
    // pages), read back, mapped shared and private (a copy-on-write copy)
    let name = format!("file{key}");
    if let Some(fd) = sys!(u, strict, u.open(&name, O_CREAT | O_RDWR)) {
        u.unlink(&name).expect("unlink allocates nothing");
        let data: Vec<u8> = (0..3 * 4096 + 100u32).map(|i| (i % 251) as u8).collect();
        let n = sys!(u, strict, u.write(fd, &data)).unwrap_or(0);
        assert_eq!(u.lseek(fd, 0, 0), Ok(0));
        let mut back = vec![0u8; n];
        if let Some(r) = sys!(u, strict, u.read(fd, &mut back)) {
            assert_eq!(&back[..r], &data[..r], "file read back");
        }
        let pages = (n / 4096) as u32;
        if let Some(m) = sys!(u, strict, u.mmap_file(0, 4 * 4096, RW, MAP_SHARED, fd, 0)) {
            for i in 0..pages {
                let off = (i * 4096) as usize;
                let w = u32::from_le_bytes(data[off..off + 4].try_into().unwrap());
                assert_eq!(acc!(u.load_u32(m + i * PAGE)), w, "shared file page {i}");
            }
            sys!(u, strict, u.munmap(m, 4 * 4096));
        }
        if let Some(m) = sys!(u, strict, u.mmap_file(0, 4 * 4096, RW, MAP_PRIVATE, fd, 0)) {
            if pages > 0 {
                acc!(u.store_u32(m, 0x1234));
                assert_eq!(acc!(u.load_u32(m)), 0x1234);
            }
        }
    }
    // the heap
    let cur = u.brk(0);
    if u.brk(cur + 16 * PAGE) == cur + 16 * PAGE {
        acc!(u.store_u32(cur.div_ceil(PAGE) * PAGE, 3));
    }
    // every stamp survived
    for &(va, x) in &stamps {
        assert_eq!(acc!(u.load_u32(va)), x, "final read {va:#x}");
    }
    if u.killed().is_some() {
        KILLED
    } else {
        0
    }
}

/// A page-table allocator and, for the pool, its batch size (default if `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Alloc(PtAllocKind, Option<u32>);

impl std::fmt::Display for Alloc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            Some(b) => write!(f, "{} (batch {b})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

const BUDDY: Alloc = Alloc(PtAllocKind::Buddy, None);

/// A booted machine: `cpus` CPUs, the given allocator and seed, debug helpers on.
fn boot<M: PagingMode>(
    v: MemoryVariant,
    ram: u64,
    cpus: u32,
    al: Alloc,
    seed: u64,
    stress: bool,
) -> System<M> {
    let cfg = Config::new(v, ram, cpus, true).unwrap();
    let mut ko = KernelOptions::defaults_for(&cfg);
    ko.debug = true;
    ko.pt_alloc = al.0;
    if let Some(b) = al.1 {
        ko.pool_batch = b;
    }
    System::<M>::boot(
        cfg,
        ko,
        MachineOptions {
            tick_period: 100_000,
            quantum: 2_000,
            seed,
            stress,
            ..Default::default()
        },
    )
    .unwrap()
}

/// What one run did.
struct Run {
    /// Exit codes of the scenario processes.
    exits: Vec<i32>,
    /// Allocations and injected failures per site.
    stats: Vec<(&'static str, SiteStats)>,
    /// Failures injected in all.
    injected: u64,
    /// OOM kills logged.
    oom_kills: usize,
}

impl Run {
    fn site(&self, name: &str) -> SiteStats {
        self.stats.iter().find(|(n, _)| *n == name).unwrap().1
    }
}

/// Boot, set `policy`, allocate a kernel pte page from a kernel task, take the baseline, run
/// `procs` scenario processes to completion and check invariants and leaks.
fn run<M: PagingMode>(
    v: MemoryVariant,
    ram: u64,
    cpus: u32,
    al: Alloc,
    policy: FailAlloc,
    seed: u64,
    procs: u32,
) -> Run {
    let what = format!("{v} {al} {policy} seed {seed}");
    let mut sys = boot::<M>(v, ram, cpus, al, seed, seed != 0);
    sys.kernel().set_fail_alloc(policy);
    // pte_alloc_one_kernel: a kernel pte page for vmalloc space (it stays: kernel page tables
    // are never freed, so it is part of the baseline)
    let kc = sys.kernel_cell();
    sys.machine
        .spawn("vmalloc", Some(0), move |h: &TaskHandle<M>| {
            let k = kc.get(h).unwrap();
            h.enter_kernel("test", |cx| {
                let va = VirtAddr::new(k.layout().vmalloc_start().as_u32() + (16 << 20));
                let _ = pte_alloc_kernel(k, cx, va);
                0
            })
        })
        .unwrap();
    assert!(matches!(sys.run(), RunOutcome::Completed), "{what}");
    let base = quiesce(&mut sys);
    let mut pids = Vec::new();
    for i in 0..procs {
        let key = 0x4649_0000 + i as i32;
        let pid = sys
            .spawn_process(format!("scenario{i}"), Some(i % cpus), move |u| {
                scenario(u, key, procs == 1)
            })
            .unwrap();
        pids.push(pid);
    }
    let out = sys.run();
    assert!(matches!(out, RunOutcome::Completed), "{what}: {out}");
    let exits: Vec<i32> = pids
        .iter()
        .map(|p| sys.machine.exit_code(*p).unwrap())
        .collect();
    for e in &exits {
        // 0: done; KILLED: OOM-killed; 127: the process could not be created
        assert!([0, KILLED, 127].contains(e), "{what}: exit {e}");
    }
    let k = sys.kernel();
    let injected = k.fail_alloc_injected();
    let stats = k.alloc_site_stats();
    let unknown = k.unknown_alloc_sites();
    assert!(
        unknown.is_empty(),
        "{what}: sites not in ALLOC_SITES: {unknown:?}"
    );
    k.set_fail_alloc(FailAlloc::Off);
    // like ipcrm: a SysV segment outlives a process killed before its IPC_RMID
    let kc = sys.kernel_cell();
    sys.machine
        .spawn("ipcrm", Some(0), move |h: &TaskHandle<M>| {
            h.enter_kernel("shm_remove_all", |cx| kc.get(h).unwrap().shm_remove_all(cx));
            0
        })
        .unwrap();
    assert!(matches!(sys.run(), RunOutcome::Completed), "{what}");
    let oom_kills = sys
        .machine
        .kernel_log()
        .iter()
        .filter(|l| l.contains("Out of Memory: Killed process"))
        .count();
    assert_no_leak(&mut sys, &base, &what);
    Run {
        exits,
        stats,
        injected,
        oom_kills,
    }
}

/// Everything back at its value after boot (the kernel pte page included in both).
fn assert_no_leak<M: PagingMode>(sys: &mut System<M>, base: &Quiet, what: &str) {
    let q = quiesce(sys);
    assert!(q.bad.is_empty(), "{what}: invariants: {:#?}", q.bad);
    assert_eq!(q.procs, 0, "{what}: processes left");
    assert_eq!(q.mi.pt_pools, 0, "{what}: pool pages left after drain");
    assert_eq!(q.mi.page_tables, base.mi.page_tables, "{what}: page tables");
    assert_eq!(q.kobj_bytes, base.kobj_bytes, "{what}: kernel-object bytes");
    assert_eq!(q.kobj_bytes, 0, "{what}: kernel-object bytes");
    assert_eq!(q.mi.mem_free, base.mi.mem_free, "{what}: MemFree");
    assert_eq!(q.mi.low_free, base.mi.low_free, "{what}: LowFree");
    assert_eq!(q.mi.high_free, base.mi.high_free, "{what}: HighFree");
    vm_common::assert_tlbs_clean(sys, what);
}

/// Failures injected per site, over a whole test.
type Tally = std::collections::BTreeMap<&'static str, (u64, u64)>;

/// Every site, failed always and then the n-th time alone (every n up to 12, then a few
/// more), on one configuration. Adds (runs, injected failures) per site to `tally`.
fn every_site<M: PagingMode>(v: MemoryVariant, ram: u64, al: Alloc, tally: &mut Tally) {
    let clean = run::<M>(v, ram, 1, al, FailAlloc::Off, 0, 1);
    assert_eq!(clean.exits, vec![0], "{v}: the scenario without injection");
    assert_eq!(clean.injected, 0);
    for &site in ALLOC_SITES {
        let calls = clean.site(site).calls;
        if calls == 0 && al != BUDDY {
            // served from the pool or quicklist without a page allocation
            continue;
        }
        if site == "pmd_alloc" && !M::PAE {
            assert_eq!(calls, 0);
            continue;
        }
        assert!(calls > 0, "{v}: the scenario never reaches {site}");
        let t = tally.entry(site).or_default();
        let r = run::<M>(v, ram, 1, al, FailAlloc::Site(site), 0, 1);
        assert!(r.site(site).injected > 0, "{v} {al}: {site} not hit");
        assert_eq!(r.injected, r.site(site).injected, "{v}: {site}");
        *t = (t.0 + 1, t.1 + r.injected);
        let nths = (1..=12u64).chain([16, 24, 32, 64, 150, 300]);
        for n in nths.take_while(|n| *n <= calls) {
            let r = run::<M>(v, ram, 1, al, FailAlloc::SiteNth(site, n), 0, 1);
            assert_eq!(r.site(site).injected, 1, "{v} {al}: {site}:{n} not hit");
            assert_eq!(r.injected, 1, "{v}: {site}:{n}");
            *t = (t.0 + 1, t.1 + 1);
        }
    }
}

#[test]
fn every_allocation_site_fails_cleanly() {
    use highpte_arch::{Pae, TwoLevel};
    let mut tally = Tally::new();
    let configs = [
        (MemoryVariant::Highmem64gHighpte, 1536 * MB),
        (MemoryVariant::Highmem64g, 1536 * MB),
        (MemoryVariant::Highmem4gHighpte, 1536 * MB),
        (MemoryVariant::Highmem4g, 1536 * MB),
        (MemoryVariant::NoHighmem, 512 * MB),
    ];
    // with the buddy allocator every page-table page is an allocation; with the pool and
    // quicklists freed page-table pages are handed out again without clearing
    let allocs = [
        BUDDY,
        Alloc(PtAllocKind::Pool, None),
        Alloc(PtAllocKind::Pool, Some(2)),
        Alloc(PtAllocKind::Quicklist, None),
    ];
    for al in allocs {
        for (v, ram) in configs {
            if v.pae() {
                every_site::<Pae>(v, ram, al, &mut tally);
            } else {
                every_site::<TwoLevel>(v, ram, al, &mut tally);
            }
        }
    }
    assert_eq!(tally.len(), ALLOC_SITES.len());
    let (mut runs, mut injected) = (0, 0);
    for (site, (r, i)) in &tally {
        println!("  {site:<22} {r:>4} runs {i:>5} failures injected");
        runs += r;
        injected += i;
    }
    println!(
        "every site: {} sites, 5 configurations x 4 page-table allocator setups, {runs} runs, {injected} failures injected, 0 leaks",
        ALLOC_SITES.len()
    );
}

#[test]
fn random_failures_over_seeds() {
    use highpte_arch::{Pae, TwoLevel};
    let (mut injected, mut kills, mut runs) = (0, 0, 0);
    for seed in 1..=30u64 {
        let al = Alloc(PtAllocKind::ALL[(seed % 3) as usize], None);
        let per_million = [10_000, 50_000, 200_000][(seed / 3 % 3) as usize];
        let policy = FailAlloc::Rate { per_million };
        let r = if seed % 2 == 0 {
            run::<Pae>(
                MemoryVariant::Highmem64gHighpte,
                1536 * MB,
                2,
                al,
                policy,
                seed,
                3,
            )
        } else {
            run::<TwoLevel>(
                MemoryVariant::Highmem4gHighpte,
                1536 * MB,
                2,
                al,
                policy,
                seed,
                3,
            )
        };
        injected += r.injected;
        kills += r.oom_kills;
        runs += 1;
    }
    assert!(injected > 0, "no failure injected");
    println!(
        "rates 1%, 5%, 20%: {runs} runs, {injected} failures injected, {kills} OOM kills, 0 leaks"
    );
}

#[test]
fn the_nth_allocation_and_replay() {
    use highpte_arch::{Pae, TwoLevel};
    // the n-th allocation anywhere, for every n over the scenario's allocations, with each
    // page-table allocator, on 2-level with HIGHPTE and on PAE without
    let mut total = 0;
    for al in [PtAllocKind::Pool, PtAllocKind::Buddy].map(|a| Alloc(a, None)) {
        for pae in [false, true] {
            let mut n = 1;
            loop {
                let p = FailAlloc::Nth(n);
                let r = if pae {
                    run::<Pae>(MemoryVariant::Highmem64g, 1536 * MB, 1, al, p, 0, 1)
                } else {
                    run::<TwoLevel>(MemoryVariant::Highmem4gHighpte, 1536 * MB, 1, al, p, 0, 1)
                };
                assert!(r.injected <= 1);
                if r.injected == 0 {
                    break;
                }
                total += 1;
                n += 1;
            }
        }
    }
    assert!(total > 400, "{total}");
    println!("nth: each allocation of the scenario failed in turn, {total} runs, 0 leaks");
    let v = MemoryVariant::Highmem4gHighpte;
    // same seed, same policy: the same failures
    let p = FailAlloc::Rate {
        per_million: 30_000,
    };
    let a = run::<TwoLevel>(v, 1536 * MB, 2, Alloc(PtAllocKind::Pool, None), p, 7, 2);
    let b = run::<TwoLevel>(v, 1536 * MB, 2, Alloc(PtAllocKind::Pool, None), p, 7, 2);
    assert_eq!(a.stats, b.stats);
    assert_eq!(a.exits, b.exits);
}

/// Every call that may split or add VMAs, with every slab page allocation failing, at every
/// alignment of the kernel-object bytes: a call that fails must change nothing, not even the
/// VMA charge taken in advance.
#[test]
fn failed_vma_changes_change_nothing() {
    use highpte_arch::TwoLevel;
    let v = MemoryVariant::Highmem4gHighpte;
    let mut sys = boot::<TwoLevel>(v, 1536 * MB, 1, BUDDY, 0, false);
    let base = quiesce(&mut sys);
    let fails = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let f2 = fails.clone();
    sys.spawn_process("splits", Some(0), move |u| {
        let site = FailAlloc::Site("kmem_cache_alloc");
        let r: u32 = 0x2000_0000;
        u.mmap(r, 64 * 4096, RW, PA | MAP_FIXED).unwrap();
        let id = u.shmget(99, 64 * 4096, IPC_CREAT | 0o600).unwrap();
        let mut spacers = Vec::new();
        for round in 0..300u32 {
            // one more shm segment each round (no VMA charged in advance) moves the
            // kernel-object bytes by 200 a round and never leaves a spare slab page, so the
            // calls below meet every alignment of a full slab page
            spacers.push(
                u.shmget(1000 + round as i32, 4096, IPC_CREAT | 0o600)
                    .unwrap(),
            );
            // each call returns what to undo: (address, length, shm attach)
            type Undo = Option<(u32, u64, bool)>;
            type Call<M> = fn(&mut User<'_, M>, u32, u32) -> Result<Undo, Errno>;
            let calls: [(&str, Call<TwoLevel>); 6] = [
                ("munmap", |u, r, _| {
                    u.munmap(r + 8 * PAGE, 4096).map(|_| None)
                }),
                ("mprotect", |u, r, _| {
                    u.mprotect(r + 20 * PAGE, 4096, PROT_READ).map(|_| None)
                }),
                ("mremap", |u, r, _| {
                    let to = 0x4800_0000;
                    u.mremap(r + 30 * PAGE, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, to)
                        .map(|a| Some((a, 4096, false)))
                }),
                ("mmap", |u, _, _| {
                    u.mmap(0, 4096, RW, PA).map(|a| Some((a, 4096, false)))
                }),
                ("mmap shared", |u, _, _| {
                    u.mmap(0, 8 * 4096, RW, SA)
                        .map(|a| Some((a, 8 * 4096, false)))
                }),
                ("shmat", |u, _, id| {
                    u.shmat(id, 0, 0).map(|a| Some((a, 0, true)))
                }),
            ];
            let mut undo = Vec::new();
            for (name, call) in calls {
                let before = snapshot(u);
                u.kernel().set_fail_alloc(site);
                let res = call(u, r, id);
                u.kernel().set_fail_alloc(FailAlloc::Off);
                match res {
                    Ok(x) => undo.extend(x),
                    Err(Errno::ENOMEM) => {
                        f2.set(f2.get() + 1);
                        assert_eq!(snapshot(u), before, "{name} round {round}");
                    }
                    Err(e) => panic!("{name}: {e:?}"),
                }
                let bad = u
                    .handle()
                    .enter_kernel("check_invariants", |cx| u.kernel().check_invariants(cx));
                assert!(bad.is_empty(), "{name} round {round}: {bad:#?}");
            }
            for (a, len, shm) in undo {
                if shm {
                    u.shmdt(a).unwrap();
                } else {
                    u.munmap(a, len).unwrap();
                }
            }
            // the next round starts from the same region layout
            u.munmap(r, 64 * 4096).unwrap();
            u.mmap(r, 64 * 4096, RW, PA | MAP_FIXED).unwrap();
        }
        u.shm_rmid(id).unwrap();
        for id in spacers {
            u.shm_rmid(id).unwrap();
        }
        0
    })
    .unwrap();
    assert!(matches!(sys.run(), RunOutcome::Completed));
    assert!(fails.get() > 0, "{} failures", fails.get());
    println!(
        "VMA changes: {} failed with ENOMEM, none changed anything",
        fails.get()
    );
    assert_no_leak(&mut sys, &base, "splits");
}

/// munmap splitting a VMA with the slab full to every possible point: no spare slab page is
/// ever left (only a shm segment growing by one page each round moves the kernel-object
/// bytes, and every munmap runs with slab allocations failing), so the VMA charge taken in
/// advance fails at the first and at the second VMA; either way nothing may change.
#[test]
fn failed_munmap_changes_nothing() {
    use highpte_arch::TwoLevel;
    let v = MemoryVariant::Highmem4gHighpte;
    let mut sys = boot::<TwoLevel>(v, 1536 * MB, 1, BUDDY, 0, false);
    let base = quiesce(&mut sys);
    let fails = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let f2 = fails.clone();
    sys.spawn_process("holes", Some(0), move |u| {
        let r: u32 = 0x2000_0000;
        u.mmap(r, 1100 * 4096, RW, PA | MAP_FIXED).unwrap();
        let mut spacer = None;
        for round in 0..540u32 {
            if let Some(id) = spacer.take() {
                u.shm_rmid(id).unwrap();
            }
            let size = u64::from(round + 1) * 4096;
            spacer = Some(
                u.shmget(2000 + round as i32, size, IPC_CREAT | 0o600)
                    .unwrap(),
            );
            u.kernel()
                .set_fail_alloc(FailAlloc::Site("kmem_cache_alloc"));
            // whether it works or fails, mprotect leaves exactly the VMAs charged
            let _ = u.mprotect(r, 4096, RW);
            let before = snapshot(u);
            let res = u.munmap(r + (2 * round + 1) * PAGE, 4096);
            u.kernel().set_fail_alloc(FailAlloc::Off);
            match res {
                Ok(()) => {}
                Err(Errno::ENOMEM) => {
                    f2.set(f2.get() + 1);
                    assert_eq!(snapshot(u), before, "munmap round {round}");
                }
                Err(e) => panic!("munmap: {e:?}"),
            }
            let bad = u
                .handle()
                .enter_kernel("check_invariants", |cx| u.kernel().check_invariants(cx));
            assert!(bad.is_empty(), "round {round}: {bad:#?}");
        }
        if let Some(id) = spacer {
            u.shm_rmid(id).unwrap();
        }
        0
    })
    .unwrap();
    assert!(matches!(sys.run(), RunOutcome::Completed));
    assert!(fails.get() > 5, "{} failures", fails.get());
    println!(
        "munmap splits: {} failed with ENOMEM, none changed anything",
        fails.get()
    );
    assert_no_leak(&mut sys, &base, "holes");
}

/// A fork whose second pmd allocation fails (PAE, the seed's pool refilling two pages at a
/// time, so the first pmd comes from the pool and the second needs a refill that fails): the
/// half-built root goes back to the pool, and the pool hands out page-table pages without
/// clearing them, so the root must be empty again when it is freed. The pages handed out next
/// must map nothing.
#[test]
fn failed_pgd_alloc_leaves_clean_pages() {
    use highpte_arch::Pae;
    for batch in [2, 3] {
        let v = MemoryVariant::Highmem64g;
        let al = Alloc(PtAllocKind::Pool, Some(batch));
        let mut sys = boot::<Pae>(v, 1536 * MB, 1, al, 0, false);
        let base = quiesce(&mut sys);
        let failed = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let f2 = failed.clone();
        sys.spawn_process("p", Some(0), move |u| {
            let a: u32 = 0x2000_0000;
            u.mmap(a, 64 * MB, RW, PA | MAP_FIXED).unwrap();
            for round in 0..8u32 {
                u.kernel().set_fail_alloc(FailAlloc::Site("pmd_alloc"));
                let r = u.fork("child", false, |_| 0);
                u.kernel().set_fail_alloc(FailAlloc::Off);
                match r {
                    Ok(_) => {
                        u.wait().unwrap();
                    }
                    Err(Errno::ENOMEM) => f2.set(f2.get() + 1),
                    Err(e) => panic!("fork: {e:?}"),
                }
                // new pte pages (from the pool): every entry must start empty
                let r = round * 8 * MB as u32;
                let n = u
                    .handle()
                    .enter_kernel("populate_range", |cx| {
                        u.kernel().populate_range(cx, u.pid(), a + r, 8 * MB, true)
                    })
                    .unwrap();
                u.handle().return_to_user();
                assert_eq!(n, 8 * MB / 4096, "batch {batch} round {round}");
                for i in (0..8 * MB as u32).step_by(2 << 20) {
                    assert_eq!(u.load_u32(a + r + i), Ok(0));
                }
                let bad = u
                    .handle()
                    .enter_kernel("check_invariants", |cx| u.kernel().check_invariants(cx));
                assert!(bad.is_empty(), "batch {batch} round {round}: {bad:#?}");
            }
            0
        })
        .unwrap();
        assert!(matches!(sys.run(), RunOutcome::Completed));
        assert!(failed.get() > 0, "batch {batch}: no fork failed");
        assert_no_leak(&mut sys, &base, &format!("batch {batch}"));
    }
}
