//! The `random` op: Cerberus-style VM stress. A seeded mix of mmap, munmap, mprotect, mremap,
//! brk, shm, fork, exit and stamped reads and writes on the process's own regions, plus
//! accesses that must fault: to unmapped pages, to PROT_NONE or read-only pages, and to kernel
//! addresses.

use super::{
    access, check_fail, fail, forget_stamps, is_resource_error, region_remapped, shm_obj_key, Ctl,
    PCtx, PhaseEnd, Region,
};
mod file_ops;

use crate::spec::{Mix, WorkloadSpec};
use file_ops::random_file_op;
use highpte_arch::PagingMode;
use highpte_kernel::mm::shm::IPC_CREAT;
use highpte_kernel::mm::{
    MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, MREMAP_MAYMOVE, PROT_NONE, PROT_READ, PROT_WRITE,
};
use highpte_kernel::platform::prelude::*;
use highpte_kernel::{Errno, Signal};
use highpte_machine::User;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::rc::Rc;

fn pick_region(pc: &mut PCtx) -> Option<(String, Region)> {
    if pc.regions.is_empty() {
        return None;
    }
    let i = pc.rng.random_range(0..pc.regions.len());
    pc.regions
        .iter()
        .nth(i)
        .map(|(k, v)| (k.clone(), v.clone()))
}

/// Run `ops` random operations. `allow_fork` is false in forked children (they never fork).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_random<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    spec: &Rc<WorkloadSpec>,
    ctl: &Rc<RefCell<Ctl>>,
    ops: u64,
    mix: &Mix,
    max_size: u64,
    allow_fork: bool,
) -> PhaseEnd {
    let weights = mix.weights();
    let total = mix.total().max(1);
    let max_pages = (max_size / 4096).max(1) as u32;
    let mut n = 0u32;
    for done in 0..ops {
        super::count_operation(ctl);
        if u.killed().is_some() {
            return PhaseEnd::Done;
        }
        let mut pick = pc.rng.random_range(0..total);
        let mut kind = "read";
        for (name, w) in weights {
            if pick < u64::from(w) {
                kind = name;
                break;
            }
            pick -= u64::from(w);
        }
        let end = match kind {
            "mmap" => random_mmap(u, pc, ctl, max_pages, &mut n),
            "munmap" => random_munmap(u, pc, ctl),
            "mprotect" => random_mprotect(u, pc, ctl),
            "mremap" => random_mremap(u, pc, ctl, max_pages),
            "brk" => random_brk(u, pc, max_pages),
            "shm" => random_shm(u, pc, ctl, max_pages, &mut n),
            "fork" if allow_fork => random_fork(u, pc, spec, ctl, mix, max_size),
            "exit" if allow_fork => random_exit(
                u,
                pc,
                spec,
                ctl,
                mix,
                max_size,
                ops.saturating_sub(done + 1),
            ),
            "file" => random_file_op(u, pc, ctl, max_pages, &mut n),
            "write" | "read" | "fork" | "exit" => random_access(u, pc, ctl, kind),
            _ => None,
        };
        if let Some(end) = end {
            return end;
        }
    }
    PhaseEnd::Done
}

/// Map a new anonymous region, private or shared, of up to `max_pages`.
fn random_mmap<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    ctl: &Rc<RefCell<Ctl>>,
    max_pages: u32,
    n: &mut u32,
) -> Option<PhaseEnd> {
    let pages = pc.rng.random_range(1..=max_pages);
    let shared = pc.rng.random_bool(0.25);
    let flags = MAP_ANONYMOUS | if shared { MAP_SHARED } else { MAP_PRIVATE };
    match u.mmap(0, u64::from(pages) * 4096, PROT_READ | PROT_WRITE, flags) {
        Ok(a) => {
            *n += 1;
            let obj = shared.then(|| {
                let mut c = ctl.borrow_mut();
                c.next_obj += 1;
                c.next_obj
            });
            pc.regions.insert(
                format!("rnd{}-{n}", pc.index),
                Region {
                    addr: a,
                    len: pages * 4096,
                    prot: PROT_READ | PROT_WRITE,
                    obj,
                    pgoff: 0,
                    shm: false,
                    file: false,
                    cow: false,
                },
            );
        }
        Err(e) if is_resource_error(e) => {}
        Err(e) => return Some(bad_errno(u, pc, ctl, "mmap", e)),
    }
    None
}

/// Unmap (or detach) a whole region or its tail; the unmapped start must then fault.
fn random_munmap<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    ctl: &Rc<RefCell<Ctl>>,
) -> Option<PhaseEnd> {
    let (name, r) = pick_mapping(pc)?;
    let pages = r.len / 4096;
    let first = pc.rng.random_range(0..pages);
    let count = pc.rng.random_range(1..=pages - first);
    // only whole-region or edge cuts keep the region bookkeeping simple
    let (a, l) = if pc.rng.random_bool(0.5) {
        (r.addr, r.len)
    } else {
        (r.addr + first * 4096, (pages - first) * 4096)
    };
    let _ = count;
    match if r.shm {
        u.shmdt(r.addr)
    } else {
        u.munmap(a, u64::from(l))
    } {
        Ok(()) => {}
        // splitting a VMA needs a new one: Linux's munmap may fail with ENOMEM
        // (nothing changed)
        Err(e) if is_resource_error(e) => return None,
        Err(e) => return Some(bad_errno(u, pc, ctl, "munmap", e)),
    }
    if r.shm || a == r.addr {
        forget_stamps(pc, r.addr, r.len);
        pc.regions.remove(&name);
        // the page must now fault
        match u.load_u32(r.addr) {
            Err(Signal::Sigsegv) => {}
            Err(s) => return Some(signal_fail(u, pc, ctl, "read after munmap", s)),
            Ok(v) => check_fail(
                ctl,
                format!(
                    "process {} read {v:#x} at {:#010x} after unmapping it (pid {})",
                    pc.index,
                    r.addr,
                    u.pid()
                ),
            ),
        }
    } else {
        forget_stamps(pc, a, l);
        if let Some(e) = pc.regions.get_mut(&name) {
            e.len = a - r.addr;
        }
    }
    None
}

/// Change the protection of a whole region.
fn random_mprotect<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    ctl: &Rc<RefCell<Ctl>>,
) -> Option<PhaseEnd> {
    let (name, r) = pick_mapping(pc)?;
    let prot = match pc.rng.random_range(0..3) {
        0 => PROT_NONE,
        1 => PROT_READ,
        _ => PROT_READ | PROT_WRITE,
    };
    let prot = if r.shm && prot & PROT_WRITE != 0 && r.prot & PROT_WRITE == 0 {
        PROT_READ
    } else {
        prot
    };
    match u.mprotect(r.addr, u64::from(r.len), prot) {
        Ok(()) => {
            if let Some(e) = pc.regions.get_mut(&name) {
                e.prot = prot;
            }
        }
        Err(e) if is_resource_error(e) => {}
        Err(e) => return Some(bad_errno(u, pc, ctl, "mprotect", e)),
    }
    None
}

/// Resize a private anonymous region (it may move).
fn random_mremap<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    ctl: &Rc<RefCell<Ctl>>,
    max_pages: u32,
) -> Option<PhaseEnd> {
    let (name, r) = pick_mapping(pc)?;
    if r.shm || r.obj.is_some() {
        return None;
    }
    let pages = pc.rng.random_range(1..=max_pages);
    let nl = pages * 4096;
    match u.mremap(r.addr, u64::from(r.len), u64::from(nl), MREMAP_MAYMOVE, 0) {
        Ok(na) => region_remapped(pc, &name, (r.addr, r.len), (na, nl)),
        Err(e) if is_resource_error(e) => {}
        Err(e) => return Some(bad_errno(u, pc, ctl, "mremap", e)),
    }
    None
}

/// Grow or shrink the heap; the region named `heap` follows the break.
fn random_brk<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    max_pages: u32,
) -> Option<PhaseEnd> {
    let cur = u.brk(0);
    let start = highpte_kernel::mm::START_BRK;
    let grow = pc.rng.random_bool(0.6);
    let delta = pc.rng.random_range(1..=max_pages) * 4096;
    let want = if grow {
        cur.saturating_add(delta)
    } else {
        cur.saturating_sub(delta).max(start)
    };
    let got = u.brk(want);
    if got == want && !grow {
        forget_stamps(
            pc,
            want.div_ceil(4096) * 4096,
            cur.div_ceil(4096) * 4096 - want.div_ceil(4096) * 4096,
        );
    }
    let top = u.brk(0);
    pc.regions.remove("heap");
    if top > start {
        pc.regions.insert(
            "heap".into(),
            Region {
                addr: start,
                len: (top - start).div_ceil(4096) * 4096,
                prot: PROT_READ | PROT_WRITE,
                obj: None,
                pgoff: 0,
                shm: false,
                file: false,
                cow: false,
            },
        );
    }
    None
}

/// Create a SysV segment and attach it, or remove it.
fn random_shm<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    ctl: &Rc<RefCell<Ctl>>,
    max_pages: u32,
    n: &mut u32,
) -> Option<PhaseEnd> {
    let key = 100_000 + (pc.index as i32) * 8 + pc.rng.random_range(0..4);
    let pages = pc.rng.random_range(1..=max_pages);
    match u.shmget(key, u64::from(pages) * 4096, IPC_CREAT | 0o600) {
        Ok(id) => {
            if pc.rng.random_bool(0.3) {
                // remove it: attachments keep it alive
                let _ = u.shm_rmid(id);
                return None;
            }
            let size = u
                .handle()
                .enter_kernel("shm report", |cx| u.kernel().shm_segments(cx))
                .into_iter()
                .find(|s| s.0 == id)
                .map(|s| s.1)
                .unwrap_or(0);
            match u.shmat(id, 0, 0) {
                Ok(a) => {
                    *n += 1;
                    pc.regions.insert(
                        format!("shm{}-{n}", pc.index),
                        Region {
                            addr: a,
                            len: size as u32,
                            prot: PROT_READ | PROT_WRITE,
                            obj: Some(shm_obj_key(id, key)),
                            pgoff: 0,
                            shm: true,
                            file: false,
                            cow: false,
                        },
                    );
                }
                Err(e) if is_resource_error(e) => {}
                Err(e) => return Some(bad_errno(u, pc, ctl, "shmat", e)),
            }
        }
        Err(e) if is_resource_error(e) || e == Errno::EINVAL => {}
        Err(e) => return Some(bad_errno(u, pc, ctl, "shmget", e)),
    }
    None
}

/// Fork a child that runs up to 16 random ops of its own (never forking); wait for it.
fn random_fork<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    spec: &Rc<WorkloadSpec>,
    ctl: &Rc<RefCell<Ctl>>,
    mix: &Mix,
    max_size: u64,
) -> Option<PhaseEnd> {
    let mut child = pc.clone();
    child.rng = ChaCha8Rng::seed_from_u64(pc.rng.random());
    // the child shares the descriptors; removing the files stays with the parent
    for f in child.files.values_mut() {
        f.owned = false;
    }
    let spec2 = spec.clone();
    let ctl2 = ctl.clone();
    let mix2 = *mix;
    let k = pc.rng.random_range(1..=16);
    match u.fork(format!("p{}f", pc.index), false, move |cu| {
        let end = run_random(cu, &mut child, &spec2, &ctl2, k, &mix2, max_size, false);
        if end == PhaseEnd::Failed {
            ctl2.borrow_mut().children_failed += 1;
            1
        } else {
            0
        }
    }) {
        Ok(_) => while u.wait().is_ok() {},
        Err(e) if is_resource_error(e) => {}
        Err(e) => return Some(bad_errno(u, pc, ctl, "fork", e)),
    }
    None
}

/// End this process's program: a fresh process runs the `remaining` ops, and this one waits
/// for it, then exits.
#[allow(clippy::too_many_arguments)]
fn random_exit<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    spec: &Rc<WorkloadSpec>,
    ctl: &Rc<RefCell<Ctl>>,
    mix: &Mix,
    max_size: u64,
    remaining: u64,
) -> Option<PhaseEnd> {
    // this process's program ends here; a fresh process (a new address space,
    // as after fork + exec) runs the rest of the ops, and this one waits for it
    // and then exits, tearing its whole address space down
    let finished = Rc::new(std::cell::Cell::new(false));
    // the queue a kill (the OOM killer) wakes, as it interrupts a sleeping wait():
    // a victim waiting here must get up and exit, or whoever waits for its memory
    // waits forever
    let key = highpte_kernel::WaitQueueKey(
        highpte_kernel::mm::process::WAIT_KEY_BASE + u64::from(u.pid().0),
    );
    let (f2, spec2, ctl2, mix2) = (finished.clone(), spec.clone(), ctl.clone(), *mix);
    let (index, seed, rng_seed) = (pc.index, pc.seed, pc.rng.random::<u64>());
    let r = u.spawn_process(format!("p{}x", pc.index), move |nu| {
        let mut npc = PCtx {
            index,
            regions: Default::default(),
            stamps: Default::default(),
            generation: 0,
            rng: ChaCha8Rng::seed_from_u64(rng_seed),
            seed,
            files: Default::default(),
            names: Default::default(),
            label: format!("p{index}x"),
            forks: 0,
        };
        let end = run_random(
            nu, &mut npc, &spec2, &ctl2, remaining, &mix2, max_size, true,
        );
        f2.set(true);
        nu.handle().wake_up_all(key);
        i32::from(end == PhaseEnd::Failed)
    });
    match r {
        Ok(_) => {
            let h = u.handle();
            loop {
                let token = h.prepare_to_wait(key);
                if finished.get() || u.killed().is_some() {
                    break;
                }
                h.sleep(key, token, "churn: replacement process", "run_random");
            }
            return Some(PhaseEnd::Done);
        }
        Err(e) if is_resource_error(e) => {}
        Err(e) => return Some(bad_errno(u, pc, ctl, "exit+exec", e)),
    }
    None
}

/// A stamped read or write of a random page of a random region (checked against its
/// protection), or now and then an access that must fault.
fn random_access<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    ctl: &Rc<RefCell<Ctl>>,
    kind: &str,
) -> Option<PhaseEnd> {
    // now and then, an access that must fault: a kernel address or a hole
    if pc.rng.random_bool(0.03) {
        let va = if pc.rng.random_bool(0.5) {
            0xc000_0000 + pc.rng.random_range(0..0x3fff_f000u32)
        } else {
            0x1000
        };
        let r = if pc.rng.random_bool(0.5) {
            u.load_u32(va).map(|_| ())
        } else {
            u.store_u32(va, 0xdead_beef)
        };
        match r {
            Err(Signal::Sigsegv) => {}
            Err(s) => return Some(signal_fail(u, pc, ctl, "hostile access", s)),
            Ok(()) => check_fail(
                ctl,
                format!(
                    "process {} reached {va:#010x} from user mode (pid {})",
                    pc.index,
                    u.pid()
                ),
            ),
        }
        return None;
    }
    let (_, r) = pick_region(pc)?;
    let page = r.addr + pc.rng.random_range(0..(r.len / 4096).max(1)) * 4096;
    let write = kind == "write";
    let allowed = if write {
        r.prot & PROT_WRITE != 0
    } else {
        r.prot & (PROT_READ | PROT_WRITE) != 0
    };
    match access(u, pc, ctl, &r, page, write, true) {
        Ok(()) if allowed => {}
        Ok(()) => check_fail(
            ctl,
            format!(
                "process {} accessed {page:#010x} against protection {:#x} (pid {})",
                pc.index,
                r.prot,
                u.pid()
            ),
        ),
        Err(Signal::Sigsegv) if !allowed => {}
        Err(s) => {
            let what = format!(
                "{} of {page:#010x} in region {:#010x}+{:#x} prot {:#x}{}",
                if write { "write" } else { "read" },
                r.addr,
                r.len,
                r.prot,
                if r.shm {
                    " (shm)"
                } else if r.obj.is_some() {
                    " (shared)"
                } else {
                    ""
                }
            );
            return Some(signal_fail(u, pc, ctl, &what, s));
        }
    }
    None
}

pub(super) fn bad_errno<M: PagingMode>(
    u: &User<'_, M>,
    pc: &PCtx,
    ctl: &Rc<RefCell<Ctl>>,
    call: &str,
    e: Errno,
) -> PhaseEnd {
    if e.0 == 4 {
        // EINTR: killed (OOM)
        fail(u, pc, ctl, call, "SIGKILL".into());
        return PhaseEnd::Failed;
    }
    check_fail(
        ctl,
        format!(
            "process {} (pid {}): {call} failed with {} on a valid request",
            pc.index,
            u.pid(),
            e.name()
        ),
    );
    fail(u, pc, ctl, call, e.name().to_string());
    PhaseEnd::Failed
}

pub(super) fn signal_fail<M: PagingMode>(
    u: &User<'_, M>,
    pc: &PCtx,
    ctl: &Rc<RefCell<Ctl>>,
    call: &str,
    s: Signal,
) -> PhaseEnd {
    if s != Signal::Sigkill {
        check_fail(
            ctl,
            format!(
                "process {} (pid {}): unexpected {} in {call}",
                pc.index,
                u.pid(),
                s.name()
            ),
        );
    }
    fail(u, pc, ctl, call, s.name().to_string());
    PhaseEnd::Failed
}

/// A region to unmap, remap or protect: never the brk heap, which only `brk` changes (the
/// kernel's break and the heap VMA must stay in step, as a C library keeps them).
pub(super) fn pick_mapping(pc: &mut PCtx) -> Option<(String, Region)> {
    let n = pc.regions.keys().filter(|k| *k != "heap").count();
    if n == 0 {
        return None;
    }
    let i = pc.rng.random_range(0..n);
    pc.regions
        .iter()
        .filter(|(k, _)| *k != "heap")
        .nth(i)
        .map(|(k, v)| (k.clone(), v.clone()))
}
