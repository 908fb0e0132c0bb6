//! The `file` kind of the `random` op: files created, written, read, mapped, synced and
//! unlinked at random, their pages stamped and checked.

use super::bad_errno;
use crate::runner::{check_fail, files, is_resource_error, Ctl, PCtx, PhaseEnd, Region};

use highpte_arch::PagingMode;
use highpte_kernel::mm::filemap::MS_SYNC;
use highpte_kernel::mm::{MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE};
use highpte_machine::User;
use rand::Rng;
use std::cell::RefCell;
use std::rc::Rc;

/// One random file operation: create a file (of up to `max_pages`, sized with `ftruncate`,
/// holes read as zeros), `write()` or `read()` one of its pages (whole, or just the stamp: a
/// partial write reads the page in first), map it shared or private, `msync` a shared file
/// mapping or `fsync` the file, or close and unlink it. `Some` ends the process's ops.
pub(super) fn random_file_op<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    ctl: &Rc<RefCell<Ctl>>,
    max_pages: u32,
    n: &mut u32,
) -> Option<PhaseEnd> {
    macro_rules! call {
        ($call:expr, $e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) if is_resource_error(e) => return None,
                Err(e) => return Some(bad_errno(u, pc, ctl, $call, e)),
            }
        };
    }
    let choice = pc.rng.random_range(0..100u32);
    let owned = pc.files.values().filter(|f| f.owned).count();
    if pc.files.is_empty() || (choice < 12 && owned < 4) {
        let name = {
            let c = ctl.borrow();
            format!("churn-{}-{}", pc.index, c.next_obj - (1 << 63) + 1)
        };
        let f = call!("open", files::open_file(u, pc, ctl, &name, true));
        let pages = pc.rng.random_range(1..=max_pages);
        call!("ftruncate", u.ftruncate(f.fd, i64::from(pages) * 4096));
        if let Some(r) = pc.files.get_mut(&name) {
            r.pages = pages;
        }
        return None;
    }
    let i = pc.rng.random_range(0..pc.files.len());
    let (name, f) = pc
        .files
        .iter()
        .nth(i)
        .map(|(k, v)| (k.clone(), v.clone()))
        .expect("a file");
    if f.pages == 0 {
        return None;
    }
    let idx = pc.rng.random_range(0..f.pages);
    let whole = pc.rng.random_bool(0.5);
    match choice {
        0..40 => call!("write", files::write_page(u, pc, ctl, &f, idx, whole)),
        40..75 => {
            if !call!("read", files::read_page(u, pc, ctl, &f, &name, idx, whole)) {
                check_fail(
                    ctl,
                    format!(
                        "process {} (pid {}): read() of page {idx} of '{name}' ({} pages) found the end of the file",
                        pc.index,
                        u.pid(),
                        f.pages
                    ),
                );
            }
        }
        75..87 => {
            let shared = pc.rng.random_bool(0.6);
            let flags = if shared { MAP_SHARED } else { MAP_PRIVATE };
            let prot = PROT_READ | PROT_WRITE;
            let a = call!(
                "mmap",
                u.mmap_file(0, u64::from(f.pages) * 4096, prot, flags, f.fd, 0)
            );
            *n += 1;
            pc.regions.insert(
                format!("file{}-{n}", pc.index),
                files::file_region(&f, a, f.pages, 0, prot, shared),
            );
        }
        87..93 => {
            let maps: Vec<Region> = pc
                .regions
                .values()
                .filter(|r| r.file && !r.cow)
                .cloned()
                .collect();
            if maps.is_empty() {
                call!("fsync", u.fsync(f.fd));
            } else {
                let r = &maps[pc.rng.random_range(0..maps.len())];
                call!("msync", u.msync(r.addr, u64::from(r.len), MS_SYNC));
            }
        }
        _ => {
            if f.owned {
                call!("unlink", files::unlink_file(u, pc, ctl, &name));
            } else {
                pc.files.remove(&name);
                call!("close", u.close(f.fd));
            }
        }
    }
    None
}
