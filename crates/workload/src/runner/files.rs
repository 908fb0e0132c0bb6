//! File I/O for workloads: `read()` and `write()` of stamped pages, file mappings, `msync`,
//! `fsync` and `unlink`.
//!
//! A file's content is checked the way shared memory is: every written page starts with a data
//! stamp recorded (before the write) in the shared-stamp history under the file's object and
//! page index, and every page read, through `read()` or through any mapping of the file, must
//! show one of that page's recent stamps, or zeros if it was never written. A file's object is
//! chosen when its name is first opened and dropped by `unlink`, so a name reused after an
//! unlink is a new, empty file while descriptors and mappings of the old one keep checking
//! against the old content.

use super::ops::{file_name, prot_bits, region, OpFailure, OpResult};
use super::{
    check_fail, pick_page, record_shared, shared_ok, stamp_value, unrecord_shared, Ctl, PCtx,
    PhaseEnd, Region,
};
use crate::spec::{Op, Pattern, Size};
use highpte_arch::PagingMode;
use highpte_kernel::fs::{O_CREAT, O_RDWR, SEEK_END, SEEK_SET};
use highpte_kernel::mm::filemap::MS_SYNC;
use highpte_kernel::mm::{MAP_POPULATE, MAP_PRIVATE, MAP_SHARED};
use highpte_kernel::Errno;
use highpte_machine::User;
use std::cell::RefCell;
use std::rc::Rc;

/// A file a process has open.
#[derive(Clone, Debug)]
pub(crate) struct FileRec {
    /// Its descriptor.
    pub(crate) fd: i32,
    /// Its stamp-history object.
    pub(crate) obj: u64,
    /// Its size in pages, where the process keeps track (the churn's files, sized once).
    pub(crate) pages: u32,
    /// This process created it (a forked child inherits the descriptor but leaves the file's
    /// removal to its owner).
    pub(crate) owned: bool,
}

/// The process's descriptor for `name`, opening it (`O_RDWR`, `O_CREAT` if `create`) on first
/// use.
pub(crate) fn open_file<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    ctl: &Rc<RefCell<Ctl>>,
    name: &str,
    create: bool,
) -> Result<FileRec, Errno> {
    if let Some(f) = pc.files.get(name) {
        return Ok(f.clone());
    }
    let fd = u.open(name, O_RDWR | if create { O_CREAT } else { 0 })?;
    let obj = {
        let mut c = ctl.borrow_mut();
        match c.files.get(name) {
            Some(&o) => o,
            None => {
                c.next_obj += 1;
                let o = c.next_obj;
                c.files.insert(name.to_string(), o);
                o
            }
        }
    };
    let rec = FileRec {
        fd,
        obj,
        pages: 0,
        owned: true,
    };
    pc.files.insert(name.to_string(), rec.clone());
    Ok(rec)
}

/// The size of an open file in bytes (`lseek(fd, 0, SEEK_END)`).
pub(crate) fn file_size<M: PagingMode>(u: &mut User<'_, M>, f: &FileRec) -> Result<u64, Errno> {
    u.lseek(f.fd, 0, SEEK_END)
}

/// `write()` a stamp at the start of page `idx` of the file: the whole page (the stamp, then
/// zeros) if `whole`, else only the stamp's four bytes (a partial write: the kernel reads the
/// page in first if it is on disk).
pub(crate) fn write_page<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    ctl: &Rc<RefCell<Ctl>>,
    f: &FileRec,
    idx: u32,
    whole: bool,
) -> Result<(), Errno> {
    pc.generation = pc.generation.wrapping_add(1);
    let v = stamp_value(pc.seed, u.pid().0, idx, pc.generation);
    let k = (f.obj, idx);
    record_shared(ctl, k, v);
    let r = (|| {
        u.lseek(f.fd, i64::from(idx) * 4096, SEEK_SET)?;
        let mut buf = [0u8; 4096];
        buf[..4].copy_from_slice(&v.to_le_bytes());
        let n = if whole { 4096 } else { 4 };
        let done = u.write(f.fd, &buf[..n])?;
        if done != n {
            return Err(Errno::ENOSPC);
        }
        Ok(())
    })();
    if r.is_err() {
        unrecord_shared(ctl, k, v);
    }
    r
}

/// `read()` page `idx` of the file (the whole page if `whole`, else its first four bytes) and
/// check its stamp. `Ok(false)`: the page is past the end of the file.
#[allow(clippy::too_many_arguments)]
pub(crate) fn read_page<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &PCtx,
    ctl: &Rc<RefCell<Ctl>>,
    f: &FileRec,
    name: &str,
    idx: u32,
    whole: bool,
) -> Result<bool, Errno> {
    u.lseek(f.fd, i64::from(idx) * 4096, SEEK_SET)?;
    let mut buf = [0u8; 4096];
    let n = if whole { 4096 } else { 4 };
    let got = u.read(f.fd, &mut buf[..n])?;
    ctl.borrow_mut().file_reads += 1;
    if got < 4 {
        return Ok(false);
    }
    let v = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let k = (f.obj, idx);
    if !shared_ok(ctl, k, v) {
        let expected = format!("{:?}", ctl.borrow().shared_stamps.get(&k));
        check_fail(
            ctl,
            format!(
                "file data stamp mismatch: process {} (pid {}) read {v:#010x} from page {idx} of file '{name}' with read(), expected {expected} (seed {})",
                pc.index,
                u.pid(),
                pc.seed
            ),
        );
    }
    if whole && buf[4..got].iter().any(|&b| b != 0) {
        check_fail(
            ctl,
            format!(
                "file data corrupt: process {} (pid {}) read non-zero bytes after the stamp of page {idx} of file '{name}' (seed {})",
                pc.index,
                u.pid(),
                pc.seed
            ),
        );
    }
    Ok(true)
}

/// `close` and `unlink` a file: its name now refers to nothing (a later create makes a new,
/// empty file); mappings of it keep the old one alive.
pub(crate) fn unlink_file<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    ctl: &Rc<RefCell<Ctl>>,
    name: &str,
) -> Result<(), Errno> {
    if let Some(f) = pc.files.remove(name) {
        u.close(f.fd)?;
    }
    u.unlink(name)?;
    ctl.borrow_mut().files.remove(name);
    Ok(())
}

/// The region an `mmap` of pages `pgoff..pgoff + pages` of file `f` at `addr` makes.
pub(crate) fn file_region(
    f: &FileRec,
    addr: u32,
    pages: u32,
    pgoff: u32,
    prot: u32,
    shared: bool,
) -> Region {
    Region {
        addr,
        len: pages * 4096,
        prot,
        obj: Some(f.obj),
        pgoff,
        shm: false,
        file: true,
        cow: !shared,
    }
}

/// The file ops of the convenient layer: `file_write`, `file_read`, `mmap_file`, `msync`,
/// `fsync` and `unlink`.
pub(super) fn file_op<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    op: &Op,
    ctl: &Rc<RefCell<Ctl>>,
) -> OpResult {
    match op {
        Op::FileWrite {
            file,
            size,
            offset,
            pattern,
            count,
        } => {
            let file = &file_name(file, pc);
            let f = open_file(u, pc, ctl, file, true)?;
            let first = (offset.0 / 4096) as u32;
            let pages = size.pages().max(1) as u32;
            let n = count.unwrap_or(u64::from(pages));
            let mut next = 0u32;
            for i in 0..n {
                let idx = first + pick_page(pc, *pattern, i, pages, &mut next);
                write_page(u, pc, ctl, &f, idx, true)?;
            }
        }
        Op::FileRead {
            file,
            offset,
            size,
            pattern,
            count,
        } => file_read(u, pc, ctl, file, *offset, *size, *pattern, *count)?,
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
            let f = open_file(u, pc, ctl, file, false)?;
            let len = match size {
                Some(s) => s.0,
                None => file_size(u, &f)?.saturating_sub(offset.0),
            };
            if len == 0 {
                return Err(OpFailure::Other(format!(
                    "file '{file}' has no pages from offset {offset}"
                )));
            }
            let mut flags = if *shared { MAP_SHARED } else { MAP_PRIVATE };
            if *populate {
                flags |= MAP_POPULATE;
            }
            let addr = u.mmap_file(0, len, prot_bits(*prot), flags, f.fd, offset.0)?;
            let pages = len.div_ceil(4096) as u32;
            pc.regions.insert(
                name.clone(),
                file_region(
                    &f,
                    addr,
                    pages,
                    (offset.0 / 4096) as u32,
                    prot_bits(*prot),
                    *shared,
                ),
            );
        }
        Op::Msync { region: name } => {
            let r = region(pc, name)?;
            u.msync(r.addr, u64::from(r.len), MS_SYNC)?;
        }
        Op::Fsync { file } => {
            let file = &file_name(file, pc);
            let f = open_file(u, pc, ctl, file, false)?;
            u.fsync(f.fd)?;
        }
        Op::Unlink { file } => {
            let file = &file_name(file, pc);
            unlink_file(u, pc, ctl, file)?;
        }
        _ => unreachable!("file_op is given file ops only"),
    }
    Ok(PhaseEnd::Done)
}

/// `read()` pages `offset .. offset + size` of a file (to its end without a size), checking
/// each page's stamp.
#[allow(clippy::too_many_arguments)]
fn file_read<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    ctl: &Rc<RefCell<Ctl>>,
    file: &str,
    offset: Size,
    size: Option<Size>,
    pattern: Pattern,
    count: Option<u64>,
) -> Result<(), OpFailure> {
    let file = &file_name(file, pc);
    let f = open_file(u, pc, ctl, file, false)?;
    let end = file_size(u, &f)?.div_ceil(4096);
    let first = offset.0 / 4096;
    let pages = match size {
        Some(s) => s.pages(),
        None => end.saturating_sub(first),
    };
    if pages == 0 || first + pages > end {
        return Err(OpFailure::Other(format!(
            "pages {first}..{} of file '{file}' are past its end ({end} pages)",
            first + pages.max(1)
        )));
    }
    let pages = pages as u32;
    let n = count.unwrap_or(u64::from(pages));
    let mut next = 0u32;
    for i in 0..n {
        let idx = first as u32 + pick_page(pc, pattern, i, pages, &mut next);
        if !read_page(u, pc, ctl, &f, file, idx, true)? {
            return Err(OpFailure::Other(format!(
                "page {idx} of file '{file}' is past its end"
            )));
        }
    }
    Ok(())
}
