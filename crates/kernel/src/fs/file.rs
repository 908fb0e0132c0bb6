//! `read` and `write`: copies between the caller's buffer and page-cache pages through a
//! persistent kmap (`kmap`/`kunmap`) of each page — the "clear, high-level case such as
//! read()" where the seed wants persistent kmaps: the copy may sleep (a page fault on the
//! user buffer in a real kernel, the disk here), which a `kmap_atomic` slot would not allow.
//!
//! `copy_to_user` / `copy_from_user` are modelled as a copy out of (into) the simulated
//! address space: the user buffer is a host slice the caller passes, so the system calls
//! never fault on it (no EFAULT). The copy itself goes through the MMU at the kmap address
//! (`read_block`/`write_block`), charged like any kernel access.

use super::{Inode, MAX_FILE_BYTES};
use crate::ctx::SleepCtx;
use crate::errno::Errno;
use crate::kernel::Kernel;
use crate::page_alloc::PageFlags;
use crate::platform::{Platform, TaskId};
use highpte_arch::{PagingMode, VirtAddr, PAGE_SIZE};

impl<M: PagingMode> Kernel<M> {
    /// `read(fd, buf)`: bytes read (0 at the end of the file).
    pub fn sys_read<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        fd: i32,
        buf: &mut [u8],
    ) -> Result<usize, Errno> {
        let p = cx.p();
        self.syscall_enter(p, "sys_read");
        let f = self.fget(pid, fd)?;
        let r = if f.readable {
            let pos = f.pos.get();
            let r = self.file_read(cx, &f.inode, pos, buf);
            if let Ok(n) = r {
                f.pos.set(pos + n as u64);
            }
            r
        } else {
            Err(Errno::EBADF)
        };
        self.fput(cx, f);
        r
    }

    /// `write(fd, buf)`: bytes written.
    pub fn sys_write<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        fd: i32,
        buf: &[u8],
    ) -> Result<usize, Errno> {
        let p = cx.p();
        self.syscall_enter(p, "sys_write");
        let f = self.fget(pid, fd)?;
        let r = if f.writable {
            let sem = f.inode.sem.lock(cx, "sys_write");
            let pos = if f.append {
                f.inode.size()
            } else {
                f.pos.get()
            };
            let r = self.file_write(cx, &f.inode, pos, buf);
            drop(sem);
            if let Ok(n) = r {
                f.pos.set(pos + n as u64);
            }
            r
        } else {
            Err(Errno::EBADF)
        };
        self.fput(cx, f);
        r
    }

    /// `generic_file_read`: copy from `pos` into `buf`, page by page through a persistent
    /// kmap. Returns the bytes copied (short at the end of the file); ENOMEM only if nothing
    /// could be read.
    pub(crate) fn file_read<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        inode: &Inode,
        pos: u64,
        buf: &mut [u8],
    ) -> Result<usize, Errno> {
        let size = inode.size();
        if pos >= size {
            return Ok(0);
        }
        let end = size.min(pos + buf.len() as u64);
        let mut done = 0usize;
        while pos + (done as u64) < end {
            let off = pos + done as u64;
            let idx = (off / PAGE_SIZE) as u32;
            let in_page = (off % PAGE_SIZE) as u32;
            let n = (PAGE_SIZE - in_page as u64).min(end - off) as usize;
            let pfn = match self.read_cache_page(cx, inode, idx) {
                Ok(pfn) => pfn,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            };
            let va = self.kmap(cx, pfn, "file_read_actor");
            // SAFETY: `va` is our kmap of the cache page, which we hold a reference to.
            unsafe {
                cx.p().read_block(
                    VirtAddr::new(va.as_u32() + in_page),
                    &mut buf[done..done + n],
                )
            };
            self.kunmap(cx, pfn, "file_read_actor");
            self.page_cache_release(cx, pfn);
            done += n;
        }
        Ok(done)
    }

    /// `generic_file_write` under `i_sem`: copy `buf` to `pos`, page by page through a
    /// persistent kmap of the locked page (a partly written page is read in first), mark the
    /// pages dirty and grow the file. Returns the bytes written; ENOMEM only if nothing could
    /// be written, EFBIG past the largest file size.
    pub(crate) fn file_write<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        inode: &Inode,
        pos: u64,
        buf: &[u8],
    ) -> Result<usize, Errno> {
        if buf.is_empty() {
            return Ok(0);
        }
        if pos >= MAX_FILE_BYTES {
            return Err(Errno::EFBIG);
        }
        let len = (buf.len() as u64).min(MAX_FILE_BYTES - pos) as usize;
        let p = cx.p();
        let mut done = 0usize;
        while done < len {
            let off = pos + done as u64;
            let idx = (off / PAGE_SIZE) as u32;
            let in_page = (off % PAGE_SIZE) as u32;
            let n = (PAGE_SIZE as usize - in_page as usize).min(len - done);
            let (pfn, fresh) = match self.grab_cache_page(cx, inode, idx) {
                Ok(x) => x,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            };
            let d = self.mem_map.desc(pfn);
            if n < PAGE_SIZE as usize && (fresh || !d.test_flag(PageFlags::UPTODATE)) {
                // prepare_write: the rest of the page keeps what the file holds
                self.readpage(cx, inode, idx, pfn);
            }
            let va = self.kmap(cx, pfn, "file_write_actor");
            // SAFETY: `va` is our kmap of the locked cache page.
            unsafe { p.write_block(VirtAddr::new(va.as_u32() + in_page), &buf[done..done + n]) };
            self.kunmap(cx, pfn, "file_write_actor");
            d.set_flag(PageFlags::UPTODATE);
            if !fresh {
                d.set_flag(PageFlags::REFERENCED);
            }
            self.set_page_dirty(pfn);
            self.unlock_page(p, pfn);
            self.page_cache_release(cx, pfn);
            done += n;
            if off + n as u64 > inode.size() {
                inode.size.set(off + n as u64);
            }
        }
        Ok(done)
    }
}
