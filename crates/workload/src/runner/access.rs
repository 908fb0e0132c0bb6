//! User accesses and their data stamps: which page a pattern visits, the stamp a write
//! leaves and the check a read makes, and the stamp bookkeeping of calls that move pages.

use super::process::check_fail;
use super::{Ctl, PCtx, Region};
use crate::spec::Pattern;
use highpte_arch::PagingMode;
use highpte_kernel::Signal;
use highpte_machine::User;
use rand::Rng;
use std::cell::RefCell;
use std::rc::Rc;

pub(crate) fn stamp_value(seed: u64, writer: u32, page: u32, generation: u32) -> u32 {
    let mut x =
        seed ^ (u64::from(writer) << 40) ^ (u64::from(page) << 8) ^ (u64::from(generation) << 52);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x as u32) | 1
}

/// The `i`th page (of `pages`) a pattern visits; `next` carries a strided walk's position.
pub(crate) fn pick_page(
    pc: &mut PCtx,
    pattern: Pattern,
    i: u64,
    pages: u32,
    next: &mut u32,
) -> u32 {
    match pattern {
        Pattern::Sequential => (i % u64::from(pages)) as u32,
        Pattern::Random => pc.rng.random_range(0..pages),
        Pattern::Strided { stride } => {
            let s = (stride.0 / 4096).max(1) as u32;
            let p = *next % pages;
            *next = next.wrapping_add(s);
            if *next >= pages {
                *next = (*next % pages + 1) % pages.max(1);
            }
            p
        }
        Pattern::HotCold {
            hot_fraction,
            hot_weight,
        } => {
            let hot = ((f64::from(pages) * hot_fraction).ceil() as u32).clamp(1, pages);
            if pc.rng.random_bool(hot_weight.clamp(0.0, 1.0)) || hot == pages {
                pc.rng.random_range(0..hot)
            } else {
                pc.rng.random_range(hot..pages)
            }
        }
    }
}

/// One user access to `va` of region `r`: a write leaves a stamp, a read checks it.
pub(crate) fn access<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    ctl: &Rc<RefCell<Ctl>>,
    r: &Region,
    va: u32,
    write: bool,
    stamp: bool,
) -> Result<(), Signal> {
    let page = va & !0xfff;
    // a private file mapping reads the file until this process writes the page (COW)
    let private_copy = r.cow && (write || pc.stamps.contains_key(&page));
    let shared_key = r
        .obj
        .filter(|_| !private_copy)
        .map(|o| (o, r.pgoff + ((page - r.addr) >> 12)));
    if write {
        pc.generation = pc.generation.wrapping_add(1);
        let v = if stamp {
            stamp_value(pc.seed, u.pid().0, page, pc.generation)
        } else {
            0x5a5a_5a5a
        };
        match (stamp, shared_key) {
            (true, Some(k)) => {
                // recorded before the store: a racing reader may see it at once
                record_shared(ctl, k, v);
                if let Err(s) = u.store_u32(page, v) {
                    unrecord_shared(ctl, k, v);
                    return Err(s);
                }
            }
            (true, None) => {
                u.store_u32(page, v)?;
                pc.stamps.insert(page, v);
            }
            (false, _) => u.store_u32(page, v)?,
        }
    } else {
        let v = u.load_u32(page)?;
        if stamp {
            let ok = match shared_key {
                Some(k) => shared_ok(ctl, k, v),
                None => v == pc.stamps.get(&page).copied().unwrap_or(0),
            };
            if !ok {
                let expected = match shared_key {
                    Some(k) => format!("{:?}", ctl.borrow().shared_stamps.get(&k)),
                    None => format!("{:#010x}", pc.stamps.get(&page).copied().unwrap_or(0)),
                };
                let pte = u.kernel().mm_of(u.pid()).and_then(|mm| {
                    u.handle()
                        .enter_kernel("follow_page", |cx| u.kernel().follow_page(cx, &mm, page))
                });
                check_fail(
                    ctl,
                    format!(
                        "data stamp mismatch: process {} (pid {}) read {:#010x} at {:#010x}, expected {} (seed {}); region {:#010x}+{:#x}{}, pte {:?}",
                        pc.index,
                        u.pid(),
                        v,
                        page,
                        expected,
                        pc.seed,
                        r.addr,
                        r.len,
                        region_kind(r),
                        pte
                    ),
                );
            }
        }
    }
    Ok(())
}

/// What kind of mapping a region is, for messages.
pub(crate) fn region_kind(r: &Region) -> &'static str {
    match (r.shm, r.file, r.cow, r.obj.is_some()) {
        (true, ..) => " shm",
        (_, true, true, _) => " private file",
        (_, true, false, _) => " shared file",
        (_, _, _, true) => " shared anonymous",
        _ => " private",
    }
}

/// Record `v` as written to shared page `k` (before the store: a racing reader may see it at
/// once). The history keeps the last four values.
pub(crate) fn record_shared(ctl: &Rc<RefCell<Ctl>>, k: (u64, u32), v: u32) {
    let mut c = ctl.borrow_mut();
    let h = c.shared_stamps.entry(k).or_default();
    h.push(v);
    if h.len() > 4 {
        h.remove(0);
    }
}

/// Take back a value whose store failed.
pub(crate) fn unrecord_shared(ctl: &Rc<RefCell<Ctl>>, k: (u64, u32), v: u32) {
    if let Some(h) = ctl.borrow_mut().shared_stamps.get_mut(&k) {
        h.retain(|x| *x != v);
    }
}

/// True if `v` may be read from shared page `k`: one of its recent stamps, or zero if it was
/// never written.
pub(crate) fn shared_ok(ctl: &Rc<RefCell<Ctl>>, k: (u64, u32), v: u32) -> bool {
    match ctl.borrow().shared_stamps.get(&k) {
        Some(h) if !h.is_empty() => h.contains(&v),
        _ => v == 0,
    }
}

pub(crate) fn forget_stamps(pc: &mut PCtx, addr: u32, len: u32) {
    let end = addr as u64 + len as u64;
    let keys: Vec<u32> = pc
        .stamps
        .range(addr..)
        .take_while(|(k, _)| (**k as u64) < end)
        .map(|(k, _)| *k)
        .collect();
    for k in keys {
        pc.stamps.remove(&k);
    }
}

/// After `mremap` moved region `name` from `old` (address, length) to `new`: its stamps move
/// with the pages that stayed, those of a cut tail are forgotten, and the region follows.
pub(crate) fn region_remapped(pc: &mut PCtx, name: &str, old: (u32, u32), new: (u32, u32)) {
    let ((oa, ol), (na, nl)) = (old, new);
    move_stamps(pc, oa, na, ol.min(nl));
    if nl < ol {
        forget_stamps(pc, oa + nl, ol - nl);
    }
    if let Some(e) = pc.regions.get_mut(name) {
        e.addr = na;
        e.len = nl;
    }
}

pub(crate) fn move_stamps(pc: &mut PCtx, from: u32, to: u32, len: u32) {
    if from == to {
        return;
    }
    let end = from as u64 + len as u64;
    let moved: Vec<(u32, u32)> = pc
        .stamps
        .range(from..)
        .take_while(|(k, _)| (**k as u64) < end)
        .map(|(k, v)| (*k, *v))
        .collect();
    for (k, _) in &moved {
        pc.stamps.remove(k);
    }
    for (k, v) in moved {
        pc.stamps.insert(k - from + to, v);
    }
}

/// The identity of a SysV segment for stamp bookkeeping: its id and key (bit 63 clear; shared
/// anonymous objects have bit 63 set).
pub(crate) fn shm_obj_key(id: u32, key: i32) -> u64 {
    (u64::from(id) << 32) | u64::from(key as u32)
}
