//! The ops of the convenient layer: each op family as a function of the process's regions.

use super::access::*;
use super::process::*;
use super::{churn, files, replay};
use super::{Ctl, PCtx, Region};
use crate::spec::{Op, Prot, WorkloadSpec};
use highpte_arch::PagingMode;
use highpte_kernel::mm::filemap::MS_SYNC;
use highpte_kernel::mm::shm::{IPC_CREAT, SHM_RDONLY};
use highpte_kernel::mm::{
    MAP_ANONYMOUS, MAP_FIXED, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, MREMAP_MAYMOVE, PROT_EXEC,
    PROT_READ, PROT_WRITE,
};
use highpte_machine::User;
use std::cell::RefCell;
use std::rc::Rc;

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

pub(super) fn run_op<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    spec: &Rc<WorkloadSpec>,
    op: &Op,
    ctl: &Rc<RefCell<Ctl>>,
) -> PhaseEnd {
    macro_rules! region {
        ($name:expr) => {
            match pc.regions.get($name) {
                Some(r) => r.clone(),
                None => {
                    fail(
                        u,
                        pc,
                        ctl,
                        op.kind(),
                        format!("no region named '{}'", $name),
                    );
                    return PhaseEnd::Failed;
                }
            }
        };
    }
    macro_rules! range {
        ($r:expr, $region:expr, $offset:expr, $size:expr) => {
            match range_of(&$r, $offset.0, $size.map(|s| s.0)) {
                Some(x) => x,
                None => {
                    fail(
                        u,
                        pc,
                        ctl,
                        op.kind(),
                        format!(
                            "offset {:#x} is past the end of region '{}' ({:#x} bytes now)",
                            $offset.0, $region, $r.len
                        ),
                    );
                    return PhaseEnd::Failed;
                }
            }
        };
    }
    macro_rules! sys {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => {
                    fail(u, pc, ctl, op.kind(), e.name().to_string());
                    return PhaseEnd::Failed;
                }
            }
        };
    }
    match op {
        Op::Replay { trace, part } => return replay::run(u, pc, ctl, trace, *part),
        Op::Mmap {
            name,
            size,
            prot,
            shared,
            fixed_at,
            populate,
        } => {
            let mut flags = MAP_ANONYMOUS | if *shared { MAP_SHARED } else { MAP_PRIVATE };
            if fixed_at.is_some() {
                flags |= MAP_FIXED;
            }
            if *populate {
                flags |= MAP_POPULATE;
            }
            let addr = sys!(u.mmap(fixed_at.unwrap_or(0), size.0, prot_bits(*prot), flags));
            // the new mapping holds zero pages, whatever the range held before (MAP_FIXED)
            forget_stamps(pc, addr, (size.0.div_ceil(4096) * 4096) as u32);
            let obj = if *shared {
                let mut c = ctl.borrow_mut();
                c.next_obj += 1;
                Some(c.next_obj)
            } else {
                None
            };
            pc.regions.insert(
                name.clone(),
                Region {
                    addr,
                    len: (size.0.div_ceil(4096) * 4096) as u32,
                    prot: prot_bits(*prot),
                    obj,
                    pgoff: 0,
                    shm: false,
                    file: false,
                    cow: false,
                },
            );
        }
        Op::Munmap {
            region,
            offset,
            size,
        } => {
            let r = region!(region);
            let (a, l) = range!(r, region, offset, size);
            sys!(u.munmap(a, u64::from(l)));
            forget_stamps(pc, a, l);
            if a == r.addr && l >= r.len {
                pc.regions.remove(region);
            } else if a == r.addr {
                let e = pc.regions.get_mut(region).expect("region present");
                e.addr += l;
                e.len -= l;
                e.pgoff += l >> 12;
            } else if u64::from(a) + u64::from(l) >= u64::from(r.addr) + u64::from(r.len) {
                let e = pc.regions.get_mut(region).expect("region present");
                e.len = a - r.addr;
            } else {
                // a hole in the middle: the name keeps naming the whole range, so the tail
                // keeps its offsets; an access to the hole faults as it should
                let e = pc.regions.get_mut(region).expect("region present");
                e.len = r.len;
            }
        }
        Op::Mprotect {
            region,
            prot,
            offset,
            size,
        } => {
            let r = region!(region);
            let (a, l) = range!(r, region, offset, size);
            sys!(u.mprotect(a, u64::from(l), prot_bits(*prot)));
            if a == r.addr && l >= r.len {
                pc.regions.get_mut(region).expect("region present").prot = prot_bits(*prot);
            }
        }
        Op::Mremap {
            region,
            size,
            may_move,
        } => {
            let r = region!(region);
            let new_len = (size.0.div_ceil(4096) * 4096) as u32;
            let na = sys!(u.mremap(
                r.addr,
                u64::from(r.len),
                u64::from(new_len),
                if *may_move { MREMAP_MAYMOVE } else { 0 },
                0
            ));
            move_stamps(pc, r.addr, na, r.len.min(new_len));
            if new_len < r.len {
                forget_stamps(pc, r.addr + new_len, r.len - new_len);
            }
            let e = pc.regions.get_mut(region).expect("region present");
            e.addr = na;
            e.len = new_len;
        }
        Op::Brk { grow } => {
            let cur = u.brk(0);
            let want = (i64::from(cur) + grow.0).clamp(0, i64::from(u32::MAX)) as u32;
            let got = u.brk(want);
            if got != want {
                fail(u, pc, ctl, "brk", "ENOMEM".into());
                return PhaseEnd::Failed;
            }
            if grow.0 < 0 {
                forget_stamps(
                    pc,
                    want.div_ceil(4096) * 4096,
                    cur.div_ceil(4096) * 4096 - want.div_ceil(4096) * 4096,
                );
            }
        }
        Op::Shmget { key, size, create } => {
            sys!(u.shmget(*key, size.0, if *create { IPC_CREAT | 0o600 } else { 0 }));
        }
        Op::Shmat {
            key,
            name,
            readonly,
        } => {
            let id = sys!(u.shmget(*key, 0, 0));
            let addr = sys!(u.shmat(id, 0, if *readonly { SHM_RDONLY } else { 0 }));
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
        Op::Shmdt { region } => {
            let r = region!(region);
            sys!(u.shmdt(r.addr));
            pc.regions.remove(region);
        }
        Op::ShmRmid { key } => {
            let id = sys!(u.shmget(*key, 0, 0));
            sys!(u.shm_rmid(id));
        }
        Op::Touch {
            region,
            pattern,
            write,
            count,
            stamp,
            offset,
            size,
            populate,
        } => {
            let r = region!(region);
            let (a, l) = range!(r, region, offset, size);
            if *populate {
                let res = u.populate_range(a, u64::from(l), *write);
                if let Err(e) = res {
                    let what = match u.killed() {
                        Some(s) => s.name().to_string(),
                        None => e.name().to_string(),
                    };
                    fail(u, pc, ctl, "touch", what);
                    return PhaseEnd::Failed;
                }
                // one user access per pte page: the MMU must see what populate filled
                let step = M::PTE_PAGE_SPAN;
                let mut x = a;
                while x < a + l {
                    if let Err(s) = access(u, pc, ctl, &r, x, *write, *stamp) {
                        fail(u, pc, ctl, "touch", s.name().to_string());
                        return PhaseEnd::Failed;
                    }
                    x = x.saturating_add(step - (x - a) % step);
                    if x == u32::MAX {
                        break;
                    }
                }
                return PhaseEnd::Done;
            }
            let pages = (l / 4096).max(1);
            let n = count.unwrap_or(u64::from(pages));
            let mut next = 0u32;
            for i in 0..n {
                let page = pick_page(pc, *pattern, i, pages, &mut next);
                if let Err(s) = access(u, pc, ctl, &r, a + page * 4096, *write, *stamp) {
                    fail(u, pc, ctl, "touch", s.name().to_string());
                    return PhaseEnd::Failed;
                }
            }
        }
        Op::Fork {
            children,
            child_phase,
        } => {
            let Some(phase) = spec.phases.iter().find(|p| &p.name == child_phase).cloned() else {
                fail(u, pc, ctl, "fork", format!("no phase '{child_phase}'"));
                return PhaseEnd::Failed;
            };
            for _ in 0..*children {
                sys!(fork_child(u, pc, spec, ctl, phase.clone()));
            }
        }
        Op::Wait {} => loop {
            match u.wait() {
                Ok(_) => {}
                Err(e) if e.0 == 10 => break,
                Err(e) => {
                    fail(u, pc, ctl, "wait", e.name().to_string());
                    return PhaseEnd::Failed;
                }
            }
        },
        Op::Pause {} => return PhaseEnd::Pause,
        Op::Exit {} => return PhaseEnd::Exit,
        Op::FileWrite {
            file,
            size,
            offset,
            pattern,
            count,
        } => {
            let file = &file_name(file, pc);
            let f = sys!(files::open_file(u, pc, ctl, file, true));
            let first = (offset.0 / 4096) as u32;
            let pages = size.pages().max(1) as u32;
            let n = count.unwrap_or(u64::from(pages));
            let mut next = 0u32;
            for i in 0..n {
                let idx = first + pick_page(pc, *pattern, i, pages, &mut next);
                sys!(files::write_page(u, pc, ctl, &f, idx, true));
            }
        }
        Op::FileRead {
            file,
            offset,
            size,
            pattern,
            count,
        } => {
            let file = &file_name(file, pc);
            let f = sys!(files::open_file(u, pc, ctl, file, false));
            let end = sys!(files::file_size(u, &f)).div_ceil(4096);
            let first = offset.0 / 4096;
            let pages = match size {
                Some(s) => s.pages(),
                None => end.saturating_sub(first),
            };
            if pages == 0 || first + pages > end {
                fail(
                    u,
                    pc,
                    ctl,
                    "file_read",
                    format!(
                        "pages {first}..{} of file '{file}' are past its end ({end} pages)",
                        first + pages.max(1)
                    ),
                );
                return PhaseEnd::Failed;
            }
            let pages = pages as u32;
            let n = count.unwrap_or(u64::from(pages));
            let mut next = 0u32;
            for i in 0..n {
                let idx = first as u32 + pick_page(pc, *pattern, i, pages, &mut next);
                if !sys!(files::read_page(u, pc, ctl, &f, file, idx, true)) {
                    fail(
                        u,
                        pc,
                        ctl,
                        "file_read",
                        format!("page {idx} of file '{file}' is past its end"),
                    );
                    return PhaseEnd::Failed;
                }
            }
        }
        Op::MmapFile {
            name,
            file,
            offset,
            size,
            prot,
            shared,
            populate,
        } => {
            let file = &file_name(file, pc);
            let f = sys!(files::open_file(u, pc, ctl, file, false));
            let len = match size {
                Some(s) => s.0,
                None => sys!(files::file_size(u, &f)).saturating_sub(offset.0),
            };
            if len == 0 {
                fail(
                    u,
                    pc,
                    ctl,
                    "mmap_file",
                    format!("file '{file}' has no pages from offset {offset}"),
                );
                return PhaseEnd::Failed;
            }
            let mut flags = if *shared { MAP_SHARED } else { MAP_PRIVATE };
            if *populate {
                flags |= MAP_POPULATE;
            }
            let addr = sys!(u.mmap_file(0, len, prot_bits(*prot), flags, f.fd, offset.0));
            let pages = len.div_ceil(4096) as u32;
            pc.regions.insert(
                name.clone(),
                files::file_region(
                    &f,
                    addr,
                    pages,
                    (offset.0 / 4096) as u32,
                    prot_bits(*prot),
                    *shared,
                ),
            );
        }
        Op::Msync { region } => {
            let r = region!(region);
            sys!(u.msync(r.addr, u64::from(r.len), MS_SYNC));
        }
        Op::Fsync { file } => {
            let file = &file_name(file, pc);
            let f = sys!(files::open_file(u, pc, ctl, file, false));
            sys!(u.fsync(f.fd));
        }
        Op::Unlink { file } => {
            let file = &file_name(file, pc);
            sys!(files::unlink_file(u, pc, ctl, file));
        }
        Op::Random { ops, mix, max_size } => {
            return churn::run_random(u, pc, spec, ctl, *ops, mix, max_size.0, true)
        }
        Op::Exact(e) => return crate::exact::run::run_exact(u, pc, spec, e, ctl),
    }
    PhaseEnd::Done
}

/// A file name of the workload with `{p}` replaced by the process's index (a forked child
/// shares its parent's).
pub(super) fn file_name(file: &str, pc: &PCtx) -> String {
    file.replace("{p}", &pc.index.to_string())
}
