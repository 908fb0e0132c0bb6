//! A simple simulated file system on the disk ([`BlockDev::Disk`]), with Linux's file system
//! calls: `open`, `close`, `read`, `write`, `lseek`, `ftruncate`, `fsync`, `unlink`.
//!
//! One flat namespace of regular files. Each file is an [`Inode`]: a size, a block map (page
//! index → disk block; a missing entry is a hole and reads as zeros) and its page cache
//! ([`pagecache`]). Disk blocks are 4 KB, allocated when a page is first written back, and
//! discarded when the file is truncated or deleted. The in-core inode, its dentry and every
//! open file description are charged to low memory through the kernel-object accounting
//! ([`KObj::Inode`], [`KObj::Dentry`], [`KObj::File`]); the block map is the on-disk
//! indirect blocks of a real file system and is not charged.
//!
//! # Lifetimes
//!
//! An inode is referenced by the inode table (always), by its name while linked, by every open
//! file description and by every VMA mapping it (`Backing::File`). `unlink` removes the name;
//! the inode, its pages and its blocks go when the last other reference does (`Kernel::iput`
//! checks on every release, and the page-cache shrinker prunes any it finds).
//!
//! # Descriptor tables
//!
//! One per process, created on its first `open`. `fork` gives the child a copy that shares
//! the open file descriptions (and so the file offsets) with the parent, as Linux does; exit
//! closes every descriptor.

pub mod file;
pub mod pagecache;

use crate::ctx::{Ctx, SleepCtx};
use crate::errno::Errno;
use crate::kernel::Kernel;
use crate::kobj::KObj;
use crate::mm::reclaim::ZoneMask;
use crate::platform::{BlockDev, Platform, TaskId};
use crate::sync::{Mutex, SpinLock};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use highpte_arch::{PagingMode, Pfn, PAGE_SIZE};

/// `O_RDONLY`.
pub const O_RDONLY: u32 = 0;
/// `O_WRONLY`.
pub const O_WRONLY: u32 = 1;
/// `O_RDWR`.
pub const O_RDWR: u32 = 2;
/// `O_ACCMODE`: the access-mode bits.
pub const O_ACCMODE: u32 = 3;
/// `O_CREAT`.
pub const O_CREAT: u32 = 0o100;
/// `O_EXCL`.
pub const O_EXCL: u32 = 0o200;
/// `O_TRUNC`.
pub const O_TRUNC: u32 = 0o1000;
/// `O_APPEND`.
pub const O_APPEND: u32 = 0o2000;
/// `SEEK_SET`.
pub const SEEK_SET: u32 = 0;
/// `SEEK_CUR`.
pub const SEEK_CUR: u32 = 1;
/// `SEEK_END`.
pub const SEEK_END: u32 = 2;
/// `NAME_MAX`: longest file name.
pub const NAME_MAX: usize = 255;
/// `NR_OPEN`-like limit: descriptors per process (`open` fails with EMFILE beyond it).
pub const NR_OPEN: usize = 1024;
/// Largest file size: page indexes are 32 bits (`write`/`ftruncate` beyond: EFBIG).
pub const MAX_FILE_BYTES: u64 = 1 << 40;

/// A file (`struct inode` with its `address_space`).
pub struct Inode {
    /// Inode number.
    pub ino: u32,
    size: Cell<u64>,
    /// 1 while the name exists, 0 once unlinked.
    nlink: Cell<u32>,
    /// The page cache: page index → page (`mapping->page_tree` under `mapping->page_lock`).
    pub(crate) pages: SpinLock<BTreeMap<u32, Pfn>>,
    /// The block map: page index → disk block. Changed only with the page locked (writeback
    /// allocates) or under `i_sem` after the pages went (truncate frees).
    blocks: RefCell<BTreeMap<u32, u32>>,
    /// `i_sem`: serialises `write` and `truncate` of this file.
    pub(crate) sem: Mutex<()>,
}

impl Inode {
    /// Size in bytes (`i_size`).
    pub fn size(&self) -> u64 {
        self.size.get()
    }
    /// Pages the size covers.
    pub fn size_pages(&self) -> u64 {
        self.size.get().div_ceil(PAGE_SIZE)
    }
    /// True while the file has a name.
    pub fn linked(&self) -> bool {
        self.nlink.get() > 0
    }
    /// The disk block holding page `idx`, if any.
    pub fn block(&self, idx: u32) -> Option<u32> {
        self.blocks.borrow().get(&idx).copied()
    }
    /// Disk blocks the file holds.
    pub fn nr_blocks(&self) -> usize {
        self.blocks.borrow().len()
    }
}

/// An open file description (`struct file`): shared by the descriptors `fork` copies.
pub struct OpenFile {
    /// The file.
    pub inode: Rc<Inode>,
    /// Opened for reading (`FMODE_READ`).
    pub readable: bool,
    /// Opened for writing (`FMODE_WRITE`).
    pub writable: bool,
    /// `O_APPEND`: every write goes to the end.
    pub append: bool,
    /// The file offset (`f_pos`).
    pos: Cell<u64>,
}

/// The free-block map of the disk.
struct DiskAlloc {
    /// Next never-used block (block 0 is the superblock: never a data block).
    next: u32,
    /// Blocks given back.
    free: Vec<u32>,
}

/// The file system's state.
pub struct FsState {
    /// Names → inodes (each holds one reference, the link).
    names: RefCell<BTreeMap<String, Rc<Inode>>>,
    /// Every live inode, by number (one reference each, for reclaim and the checker).
    inodes: RefCell<BTreeMap<u32, Rc<Inode>>>,
    next_ino: Cell<u32>,
    /// Descriptor tables by process.
    fds: RefCell<BTreeMap<TaskId, Vec<Option<Rc<OpenFile>>>>>,
    disk: SpinLock<DiskAlloc>,
    /// Page-cache pages of each zone (indexed by [`crate::page_alloc::ZoneType`]) in the
    /// order they were added (the zone's inactive list, as 2.5's per-zone LRUs): (ino,
    /// index, page). Entries are checked when taken; stale ones (the page left) are dropped.
    pub(crate) lru: [RefCell<VecDeque<(u32, u32, Pfn)>>; 3],
    /// Pages in the page cache.
    pub(crate) nr_cached: Cell<u64>,
    /// Pages in the page cache, per zone.
    pub(crate) nr_cached_zone: [Cell<u64>; 3],
    /// Page-cache pages with PG_dirty.
    pub(crate) nr_dirty: Cell<u64>,
}

impl FsState {
    /// An empty file system.
    pub(crate) fn new() -> Self {
        Self {
            names: RefCell::new(BTreeMap::new()),
            inodes: RefCell::new(BTreeMap::new()),
            next_ino: Cell::new(1),
            fds: RefCell::new(BTreeMap::new()),
            disk: SpinLock::new(
                "disk_alloc_lock",
                DiskAlloc {
                    next: 1,
                    free: Vec::new(),
                },
            ),
            lru: Default::default(),
            nr_cached: Cell::new(0),
            nr_cached_zone: Default::default(),
            nr_dirty: Cell::new(0),
        }
    }
}

impl<M: PagingMode> Kernel<M> {
    /// The open file description of descriptor `fd` of task `pid` (a new reference: give it
    /// back with [`Kernel::fput`]).
    pub(crate) fn fget(&self, pid: TaskId, fd: i32) -> Result<Rc<OpenFile>, Errno> {
        if fd < 0 {
            return Err(Errno::EBADF);
        }
        self.fs
            .fds
            .borrow()
            .get(&pid)
            .and_then(|t| t.get(fd as usize))
            .and_then(|f| f.clone())
            .ok_or(Errno::EBADF)
    }

    /// Drop a reference to an open file description; the last one releases the file.
    pub(crate) fn fput<P: Platform>(&self, cx: &Ctx<'_, P>, f: Rc<OpenFile>) {
        if let Ok(of) = Rc::try_unwrap(f) {
            self.kobj_uncharge(cx, KObj::File, 0);
            self.iput(cx, of.inode);
        }
    }

    /// Drop a reference to an inode (`iput`). If it was the last besides the inode table
    /// and the file has no name, the file goes: its pages, its blocks, its inode.
    pub(crate) fn iput<P: Platform>(&self, cx: &Ctx<'_, P>, inode: Rc<Inode>) {
        let dead = !inode.linked() && Rc::strong_count(&inode) == 2;
        let ino = inode.ino;
        drop(inode);
        if dead {
            self.destroy_inode(cx, ino, ZoneMask::ALL);
        }
    }

    /// Free every unlinked inode nobody references any more (a reference dropped without
    /// [`Kernel::iput`], e.g. a transient copy of a VMA, cannot keep a file alive).
    pub(crate) fn prune_inodes<P: Platform>(&self, cx: &Ctx<'_, P>, zones: ZoneMask) -> u64 {
        let dead: Vec<u32> = self
            .fs
            .inodes
            .borrow()
            .values()
            .filter(|i| !i.linked() && Rc::strong_count(i) == 1)
            .map(|i| i.ino)
            .collect();
        let mut freed = 0;
        for ino in dead {
            freed += self.destroy_inode(cx, ino, zones);
        }
        freed
    }

    /// Free an unreferenced, unlinked inode: its cached pages, its disk blocks, its kernel
    /// objects. Returns the pages freed in `zones`. Nobody can be doing I/O on its pages:
    /// every I/O holds a reference to the inode.
    fn destroy_inode<P: Platform>(&self, cx: &Ctx<'_, P>, ino: u32, zones: ZoneMask) -> u64 {
        let Some(inode) = self.fs.inodes.borrow_mut().remove(&ino) else {
            return 0;
        };
        let p = cx.p();
        let pages = core::mem::take(&mut *inode.pages.lock(p));
        let mut freed = 0;
        for (_, pfn) in pages {
            let d = self.mem_map.desc(pfn);
            self.clear_page_dirty(pfn);
            self.cache_count_sub(pfn);
            if d.put_page() == 0 {
                freed += u64::from(zones.contains(self.page_zone(pfn)));
                self.free_pages(cx, pfn, 0);
            }
        }
        let blocks = core::mem::take(&mut *inode.blocks.borrow_mut());
        for (_, b) in blocks {
            self.disk_free(p, b);
        }
        self.kobj_uncharge(cx, KObj::Dentry, 0);
        self.kobj_uncharge(cx, KObj::Inode, 0);
        self.lru_compact();
        freed
    }

    /// A free disk block.
    pub(crate) fn disk_alloc<P: Platform>(&self, p: &P) -> u32 {
        let mut d = self.fs.disk.lock(p);
        match d.free.pop() {
            Some(b) => b,
            None => {
                let b = d.next;
                d.next += 1;
                b
            }
        }
    }

    /// Give a disk block back (its contents are forgotten).
    pub(crate) fn disk_free<P: Platform>(&self, p: &P, block: u32) {
        p.block_discard(BlockDev::Disk, block as u64);
        self.fs.disk.lock(p).free.push(block);
    }

    /// `open(name, flags)`: a new descriptor (the lowest free one).
    pub fn sys_open<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        name: &str,
        flags: u32,
    ) -> Result<i32, Errno> {
        let p = cx.p();
        self.syscall_enter(p, "sys_open");
        if name.is_empty() || name.contains('/') {
            // a flat namespace: no directories to look a path up in
            return Err(Errno::ENOENT);
        }
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let acc = flags & O_ACCMODE;
        // O_ACCMODE itself means "neither read nor write" (ioctl only), as in Linux
        let readable = acc == O_RDONLY || acc == O_RDWR;
        let writable = acc == O_WRONLY || acc == O_RDWR;
        if self.fd_table_full(pid) {
            return Err(Errno::EMFILE);
        }
        self.kobj_charge(cx, KObj::File, 0)
            .map_err(|_| Errno::ENOMEM)?;
        let inode = match self.lookup_or_create(cx, name, flags) {
            Ok(i) => i,
            Err(e) => {
                self.kobj_uncharge(cx, KObj::File, 0);
                return Err(e);
            }
        };
        if flags & O_TRUNC != 0 && inode.size() > 0 {
            let sem = inode.sem.lock(cx, "sys_open");
            self.do_truncate(cx, &inode, 0);
            drop(sem);
        }
        let f = Rc::new(OpenFile {
            inode,
            readable,
            writable,
            append: flags & O_APPEND != 0,
            pos: Cell::new(0),
        });
        // the table may have filled while we slept
        match self.fd_install(pid, f.clone()) {
            Some(fd) => {
                drop(f);
                Ok(fd)
            }
            None => {
                self.fput(cx, f);
                Err(Errno::EMFILE)
            }
        }
    }

    fn fd_table_full(&self, pid: TaskId) -> bool {
        self.fs
            .fds
            .borrow()
            .get(&pid)
            .is_some_and(|t| t.len() >= NR_OPEN && t.iter().all(|f| f.is_some()))
    }

    /// Put `f` in the lowest free descriptor of `pid`.
    fn fd_install(&self, pid: TaskId, f: Rc<OpenFile>) -> Option<i32> {
        let mut fds = self.fs.fds.borrow_mut();
        let t = fds.entry(pid).or_default();
        if let Some(i) = t.iter().position(|x| x.is_none()) {
            t[i] = Some(f);
            return Some(i as i32);
        }
        if t.len() >= NR_OPEN {
            return None;
        }
        t.push(Some(f));
        Some(t.len() as i32 - 1)
    }

    /// Find `name`, creating it with `O_CREAT` (EEXIST with `O_EXCL`, ENOENT without
    /// `O_CREAT`). Takes a reference.
    fn lookup_or_create<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        name: &str,
        flags: u32,
    ) -> Result<Rc<Inode>, Errno> {
        let found = self.fs.names.borrow().get(name).cloned();
        if let Some(i) = found {
            if flags & O_CREAT != 0 && flags & O_EXCL != 0 {
                return Err(Errno::EEXIST);
            }
            return Ok(i);
        }
        if flags & O_CREAT == 0 {
            return Err(Errno::ENOENT);
        }
        // charge first (may sleep), then look again and insert without sleeping in between
        self.kobj_charge(cx, KObj::Inode, 0)
            .map_err(|_| Errno::ENOMEM)?;
        if self.kobj_charge(cx, KObj::Dentry, 0).is_err() {
            self.kobj_uncharge(cx, KObj::Inode, 0);
            return Err(Errno::ENOMEM);
        }
        let raced = self.fs.names.borrow().get(name).cloned();
        if let Some(i) = raced {
            self.kobj_uncharge(cx, KObj::Dentry, 0);
            self.kobj_uncharge(cx, KObj::Inode, 0);
            if flags & O_EXCL != 0 {
                return Err(Errno::EEXIST);
            }
            return Ok(i);
        }
        let ino = self.fs.next_ino.get();
        self.fs.next_ino.set(ino + 1);
        let inode = Rc::new(Inode {
            ino,
            size: Cell::new(0),
            nlink: Cell::new(1),
            pages: SpinLock::new("page_lock", BTreeMap::new()),
            blocks: RefCell::new(BTreeMap::new()),
            sem: Mutex::new("i_sem", ()),
        });
        self.fs.inodes.borrow_mut().insert(ino, inode.clone());
        self.fs
            .names
            .borrow_mut()
            .insert(String::from(name), inode.clone());
        Ok(inode)
    }

    /// `close(fd)`.
    pub fn sys_close<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        fd: i32,
    ) -> Result<(), Errno> {
        let p = cx.p();
        self.syscall_enter(p, "sys_close");
        if fd < 0 {
            return Err(Errno::EBADF);
        }
        let f = self
            .fs
            .fds
            .borrow_mut()
            .get_mut(&pid)
            .and_then(|t| t.get_mut(fd as usize))
            .and_then(|x| x.take())
            .ok_or(Errno::EBADF)?;
        self.fput(cx, f);
        Ok(())
    }

    /// `unlink(name)`: the name goes now, the file when its last user does.
    pub fn sys_unlink<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        name: &str,
    ) -> Result<(), Errno> {
        let p = cx.p();
        self.syscall_enter(p, "sys_unlink");
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let inode = self
            .fs
            .names
            .borrow_mut()
            .remove(name)
            .ok_or(Errno::ENOENT)?;
        inode.nlink.set(0);
        self.iput(cx, inode);
        Ok(())
    }

    /// `lseek(fd, offset, whence)`: the new offset.
    pub fn sys_lseek<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        fd: i32,
        offset: i64,
        whence: u32,
    ) -> Result<u64, Errno> {
        let p = cx.p();
        self.syscall_enter(p, "sys_lseek");
        let f = self.fget(pid, fd)?;
        let base = match whence {
            SEEK_SET => Some(0i128),
            SEEK_CUR => Some(f.pos.get() as i128),
            SEEK_END => Some(f.inode.size() as i128),
            _ => None,
        };
        let r = match base.map(|b| b + offset as i128) {
            Some(n) if (0..=MAX_FILE_BYTES as i128).contains(&n) => {
                f.pos.set(n as u64);
                Ok(n as u64)
            }
            _ => Err(Errno::EINVAL),
        };
        self.fput(cx, f);
        r
    }

    /// `ftruncate(fd, length)`.
    pub fn sys_ftruncate<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        fd: i32,
        length: i64,
    ) -> Result<(), Errno> {
        let p = cx.p();
        self.syscall_enter(p, "sys_ftruncate");
        if length < 0 {
            return Err(Errno::EINVAL);
        }
        let f = self.fget(pid, fd)?;
        let r = if !f.writable {
            Err(Errno::EINVAL)
        } else if length as u64 > MAX_FILE_BYTES {
            Err(Errno::EFBIG)
        } else {
            let sem = f.inode.sem.lock(cx, "sys_ftruncate");
            self.do_truncate(cx, &f.inode, length as u64);
            drop(sem);
            Ok(())
        };
        self.fput(cx, f);
        r
    }

    /// `fsync(fd)`: write every dirty page of the file to the disk.
    pub fn sys_fsync<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        fd: i32,
    ) -> Result<(), Errno> {
        let p = cx.p();
        self.syscall_enter(p, "sys_fsync");
        let f = self.fget(pid, fd)?;
        self.filemap_fdatawrite(cx, &f.inode, 0, u32::MAX);
        self.fput(cx, f);
        Ok(())
    }

    /// Copy the descriptor table of `parent` to `child` (fork): the copies share the open
    /// file descriptions.
    pub(crate) fn files_fork(&self, parent: TaskId, child: TaskId) {
        let copy = self.fs.fds.borrow().get(&parent).cloned();
        if let Some(t) = copy {
            self.fs.fds.borrow_mut().insert(child, t);
        }
    }

    /// Close every descriptor of an exiting task.
    pub(crate) fn files_exit<P: Platform>(&self, cx: &Ctx<'_, P>, pid: TaskId) {
        let t = self.fs.fds.borrow_mut().remove(&pid);
        for f in t.into_iter().flatten().flatten() {
            self.fput(cx, f);
        }
    }

    /// Open descriptors of a task.
    pub fn open_fds(&self, pid: TaskId) -> usize {
        self.fs
            .fds
            .borrow()
            .get(&pid)
            .map_or(0, |t| t.iter().filter(|f| f.is_some()).count())
    }

    /// Every file with a name: (name, size, pages cached, disk blocks).
    pub fn fs_files<P: Platform>(&self, p: &P) -> Vec<(String, u64, usize, usize)> {
        let v: Vec<(String, Rc<Inode>)> = self
            .fs
            .names
            .borrow()
            .iter()
            .map(|(n, i)| (n.clone(), i.clone()))
            .collect();
        v.into_iter()
            .map(|(n, i)| {
                let cached = i.pages.lock(p).len();
                (n, i.size(), cached, i.nr_blocks())
            })
            .collect()
    }

    /// Live inodes (named or still in use after unlink).
    pub fn fs_inodes(&self) -> usize {
        self.fs.inodes.borrow().len()
    }

    /// The disk block holding page `idx` of the file called `name` (for tests that look at
    /// the disk itself).
    pub fn fs_block_of(&self, name: &str, idx: u32) -> Option<u64> {
        let i = self.fs.names.borrow().get(name).cloned()?;
        i.block(idx).map(u64::from)
    }

    /// Every live inode (for the checker and reclaim).
    pub(crate) fn all_inodes(&self) -> Vec<Rc<Inode>> {
        self.fs.inodes.borrow().values().cloned().collect()
    }

    /// The inode with number `ino`, if it lives.
    pub(crate) fn inode_by_ino(&self, ino: u32) -> Option<Rc<Inode>> {
        self.fs.inodes.borrow().get(&ino).cloned()
    }
}
