//! Shared memory objects and SysV shm (`shmget`, `shmat`, `shmdt`, `shmctl(IPC_RMID)`).
//!
//! A [`ShmObject`] holds the pages of a SysV segment or of a shared anonymous mapping (as
//! shmem does in Linux): page `i` of the object is allocated on first touch and shared by every
//! VMA that maps it. The object is freed when its id is removed and the last VMA using it is
//! gone.

use crate::ctx::{Ctx, SleepCtx};
use crate::errno::Errno;
use crate::kernel::Kernel;
use crate::mm::vma::{Backing, Vma};
use crate::mm::{PROT_READ, PROT_WRITE, TASK_SIZE, TASK_UNMAPPED_BASE};
use crate::platform::{Platform, TaskId};
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::Cell;
use highpte_arch::{PagingMode, Pfn, SwapEntry, PAGE_SIZE};

/// `IPC_PRIVATE`.
pub const IPC_PRIVATE: i32 = 0;
/// `IPC_CREAT`.
pub const IPC_CREAT: u32 = 0o1000;
/// `IPC_EXCL`.
pub const IPC_EXCL: u32 = 0o2000;
/// `IPC_RMID`.
pub const IPC_RMID: u32 = 0;
/// `SHM_RDONLY`.
pub const SHM_RDONLY: u32 = 0o10000;
/// `SHM_RND`.
pub const SHM_RND: u32 = 0o20000;
/// `SHMMIN`.
pub const SHMMIN: u64 = 1;
/// `SHMMNI`: most segments.
pub const SHMMNI: usize = 4096;
/// `SHMMAX` as a database host sets it (2.5's default was 32 MB; Oracle installs raise it):
/// here the whole user address space.
pub const SHMMAX: u64 = TASK_SIZE as u64;

/// A page slot of a shared object whose page is on swap: the offset, with this bit (pfns
/// stay below 2^24 even at 64 GB).
const SLOT_SWAPPED: u32 = 1 << 31;

/// What a shared object holds at one page index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjSlot {
    /// Never touched: reads as zeros, allocated on the first fault.
    Empty,
    /// In memory.
    Page(Pfn),
    /// Written to swap (`shmem`'s swap entry in its index).
    Swapped(SwapEntry),
}

/// The pages of a shared object.
pub struct ShmObject {
    /// Identity for reports.
    pub id: u32,
    /// Size in bytes (page aligned).
    pub size: u64,
    /// Frame of each page (0 = not yet allocated: pfn 0 is never given out).
    pages: Vec<Cell<u32>>,
    /// Pages allocated.
    resident: Cell<u64>,
}

impl ShmObject {
    pub(crate) fn new(id: u32, size: u64) -> Self {
        let n = size.div_ceil(PAGE_SIZE) as usize;
        Self {
            id,
            size,
            pages: (0..n).map(|_| Cell::new(0)).collect(),
            resident: Cell::new(0),
        }
    }
    /// Number of pages.
    pub fn nr_pages(&self) -> u32 {
        self.pages.len() as u32
    }
    /// The page at `idx`, if allocated and in memory.
    pub fn page(&self, idx: u32) -> Option<Pfn> {
        match self.slot(idx) {
            ObjSlot::Page(pfn) => Some(pfn),
            _ => None,
        }
    }
    /// What page `idx` is: not yet allocated, in memory, or swapped out.
    pub fn slot(&self, idx: u32) -> ObjSlot {
        match self.pages.get(idx as usize).map(|c| c.get()) {
            None | Some(0) => ObjSlot::Empty,
            Some(v) if v & SLOT_SWAPPED != 0 => match SwapEntry::new(0, v & !SLOT_SWAPPED) {
                Some(e) => ObjSlot::Swapped(e),
                None => ObjSlot::Empty,
            },
            Some(f) => ObjSlot::Page(Pfn(f as u64)),
        }
    }
    pub(crate) fn set_page(&self, idx: u32, pfn: Pfn) {
        self.pages[idx as usize].set(pfn.0 as u32);
        self.resident.set(self.resident.get() + 1);
    }
    /// The page at `idx` was written to swap slot `e` (the slot's reference is the object's).
    pub(crate) fn set_swapped(&self, idx: u32, e: SwapEntry) {
        self.pages[idx as usize].set(SLOT_SWAPPED | e.offset);
        self.resident.set(self.resident.get() - 1);
    }
    /// Pages allocated.
    pub fn resident(&self) -> u64 {
        self.resident.get()
    }
    /// Bytes of kernel memory the object's page index costs (shmem's page vector).
    pub(crate) fn index_bytes(&self) -> u64 {
        self.pages.len() as u64 * 8
    }
}

/// One SysV segment.
pub struct ShmSeg {
    /// The key it was created with.
    pub key: i32,
    /// Its pages.
    pub obj: Rc<ShmObject>,
    /// The size asked for at creation (`shm_segsz`, not rounded to pages): a later
    /// `shmget` of the key asking for more is EINVAL.
    pub segsz: u64,
    /// Creator.
    pub creator: TaskId,
}

/// The SysV shm id table (`shm_ids`).
#[derive(Default)]
pub struct ShmIds {
    segs: BTreeMap<u32, ShmSeg>,
    next_seq: u32,
}

impl ShmIds {
    /// Segments that exist.
    pub fn len(&self) -> usize {
        self.segs.len()
    }
    /// True if none.
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }
    /// Every segment's object and id.
    pub(crate) fn objects(&self) -> Vec<(Rc<ShmObject>, u32)> {
        self.segs
            .iter()
            .map(|(id, s)| (s.obj.clone(), *id))
            .collect()
    }
    /// Attachments of a segment (`shm_nattch`): VMAs referencing its object.
    pub fn nattch(&self, id: u32) -> Option<usize> {
        self.segs.get(&id).map(|s| Rc::strong_count(&s.obj) - 1)
    }
}

/// The shared-memory subsystem's state: the SysV id table behind its semaphore, and every
/// shared-memory object (SysV segments and shared anonymous mappings) for reclaim
/// (`shmem_inodes`). Dead objects are pruned as reclaim walks the list.
pub(crate) struct ShmState {
    ids: crate::sync::Mutex<ShmIds>,
    objects: core::cell::RefCell<Vec<alloc::rc::Weak<ShmObject>>>,
}

impl ShmState {
    /// Empty: no segment, no object.
    pub(crate) fn new() -> Self {
        Self {
            ids: crate::sync::Mutex::new("shm_ids.sem", ShmIds::default()),
            objects: core::cell::RefCell::new(Vec::new()),
        }
    }
    /// `down(&shm_ids.sem)`: the id table, for as long as the guard lives (may sleep).
    pub(crate) fn lock_ids<'a, 'p: 'a, P: Platform>(
        &'a self,
        cx: &mut SleepCtx<'p, P>,
        place: &'static str,
    ) -> crate::sync::MutexGuard<'a, ShmIds, P> {
        self.ids.lock(cx, place)
    }
    /// Remember a new shared-memory object for reclaim.
    pub(crate) fn register(&self, obj: &Rc<ShmObject>) {
        self.objects.borrow_mut().push(Rc::downgrade(obj));
    }
    /// Drop the entries of objects that are gone; the number left.
    pub(crate) fn prune(&self) -> usize {
        let mut v = self.objects.borrow_mut();
        v.retain(|w| w.strong_count() > 0);
        v.len()
    }
    /// The `i`-th object entry (it may have died since).
    pub(crate) fn object(&self, i: usize) -> Option<alloc::rc::Weak<ShmObject>> {
        self.objects.borrow().get(i).cloned()
    }
    /// Every object entry (some may have died since).
    pub(crate) fn objects(&self) -> Vec<alloc::rc::Weak<ShmObject>> {
        self.objects.borrow().clone()
    }
}

impl<M: PagingMode> Kernel<M> {
    /// `shmget(key, size, flags)`.
    pub fn sys_shmget<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        key: i32,
        size: u64,
        flags: u32,
    ) -> Result<u32, Errno> {
        let p = cx.p();
        let mut ids = self.shm.lock_ids(cx, "shmget");
        if key != IPC_PRIVATE {
            if let Some((&id, seg)) = ids.segs.iter().find(|(_, s)| s.key == key) {
                if flags & IPC_CREAT != 0 && flags & IPC_EXCL != 0 {
                    return Err(Errno::EEXIST);
                }
                if size > seg.segsz {
                    return Err(Errno::EINVAL);
                }
                return Ok(id);
            }
            if flags & IPC_CREAT == 0 {
                return Err(Errno::ENOENT);
            }
        }
        if !(SHMMIN..=SHMMAX).contains(&size) {
            return Err(Errno::EINVAL);
        }
        if ids.segs.len() >= self.opts.shmmni.min(SHMMNI) {
            return Err(Errno::ENOSPC);
        }
        let segsz = size;
        let size = size.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        // the id encodes a sequence number and the slot, as ipc ids do
        let mut used = alloc::vec![false; SHMMNI];
        for k in ids.segs.keys() {
            used[(k % SHMMNI as u32) as usize] = true;
        }
        let slot = used.iter().position(|u| !u).unwrap_or(0) as u32;
        ids.next_seq += 1;
        let id = ids.next_seq * SHMMNI as u32 + slot;
        let obj = ShmObject::new(id, size);
        self.kobj_charge(cx, crate::kobj::KObj::ShmSeg, obj.index_bytes())
            .map_err(|_| Errno::ENOMEM)?;
        let obj = Rc::new(obj);
        self.register_shared_object(&obj);
        ids.segs.insert(
            id,
            ShmSeg {
                key,
                obj,
                segsz,
                creator: p.task(),
            },
        );
        Ok(id)
    }

    /// `shmat(shmid, addr, flags)`: returns the attach address.
    pub fn sys_shmat<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        shmid: u32,
        addr: u32,
        flags: u32,
    ) -> Result<u32, Errno> {
        let (obj, segsz) = {
            let ids = self.shm.lock_ids(cx, "shmat");
            ids.segs
                .get(&shmid)
                .map(|s| (s.obj.clone(), s.segsz))
                .ok_or(Errno::EINVAL)?
        };
        let r = self.shmat_obj(cx, pid, shmid, obj.clone(), segsz, addr, flags);
        if r.is_err() {
            // give back our reference (the id may have been removed meanwhile) and the VMA
            // charge taken in advance
            self.shm_release(cx, obj);
            self.vma_resettle(cx, pid);
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn shmat_obj<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        shmid: u32,
        obj: Rc<ShmObject>,
        segsz: u64,
        addr: u32,
        flags: u32,
    ) -> Result<u32, Errno> {
        let mut addr = addr;
        if addr & 0xfff != 0 {
            if flags & SHM_RND != 0 {
                addr &= !0xfff;
            } else {
                return Err(Errno::EINVAL);
            }
        }
        let prot = if flags & SHM_RDONLY != 0 {
            PROT_READ
        } else {
            PROT_READ | PROT_WRITE
        };
        let len = obj.size;
        if len > TASK_SIZE as u64 {
            return Err(Errno::EINVAL);
        }
        let mm = self.mm_of(pid).ok_or(Errno::EINVAL)?;
        self.vma_precharge(cx, &mm)?;
        let mut vmas = mm.mmap_sem.write(cx, "shmat");
        let at = if addr != 0 {
            // Linux's order: the range wrapping around 4 GB (`addr + size < addr`, size being
            // shm_segsz) and a mapping in the way are EINVAL; then do_mmap's MAP_FIXED range
            // check makes a range past TASK_SIZE ENOMEM
            if addr as u64 + segsz >= 1 << 32 || vmas.any_overlap(addr, addr as u64 + len) {
                return Err(Errno::EINVAL);
            }
            if addr as u64 + len > TASK_SIZE as u64 {
                return Err(Errno::ENOMEM);
            }
            addr
        } else {
            vmas.free_area(TASK_UNMAPPED_BASE, len as u32, TASK_SIZE)
                .ok_or(Errno::ENOMEM)?
        };
        if vmas.len() >= self.opts.max_map_count {
            return Err(Errno::ENOMEM);
        }
        vmas.insert(Vma {
            start: at,
            end: at + len as u32,
            prot,
            backing: Backing::Shared {
                obj,
                pgoff: 0,
                shmid: Some(shmid),
            },
            heap: false,
            may_write: prot & PROT_WRITE != 0,
        });
        let n = vmas.len();
        drop(vmas);
        self.vma_settle(cx, &mm, n);
        Ok(at)
    }

    /// `shmdt(addr)`: detach the segment attached at `addr`.
    pub fn sys_shmdt<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        addr: u32,
    ) -> Result<(), Errno> {
        let mm = self.mm_of(pid).ok_or(Errno::EINVAL)?;
        let ranges: Vec<(u32, u32)> = {
            let vmas = mm.mmap_sem.read(cx, "shmdt");
            let v = vmas
                .containing(addr)
                .filter(|v| v.start == addr)
                .ok_or(Errno::EINVAL)?;
            let Backing::Shared {
                obj,
                pgoff: 0,
                shmid: Some(id),
            } = &v.backing
            else {
                return Err(Errno::EINVAL);
            };
            // the whole attachment: every VMA of this segment that maps it at its place
            // relative to addr (pieces split off by mprotect or partial munmap); other
            // mappings in between are left alone, as Linux's shmdt does
            let id = *id;
            let end = addr as u64 + obj.size;
            vmas.overlapping(addr, end)
                .filter(|w| {
                    matches!(&w.backing, Backing::Shared { shmid: Some(i), pgoff, .. }
                        if *i == id && *pgoff == (w.start - addr) >> 12)
                })
                .map(|w| (w.start, w.end))
                .collect()
        };
        for (s, e) in ranges {
            self.do_munmap(cx, &mm, s, e);
        }
        Ok(())
    }

    /// `shmctl(shmid, IPC_RMID)`: remove the id; the pages go when the last attachment does.
    pub fn sys_shmctl_rmid<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        shmid: u32,
    ) -> Result<(), Errno> {
        let seg = {
            let mut ids = self.shm.lock_ids(cx, "shmctl");
            ids.segs.remove(&shmid).ok_or(Errno::EINVAL)?
        };
        self.shm_release(cx, seg.obj);
        Ok(())
    }

    /// Drop one reference to a shared object; free its pages if it was the last.
    pub(crate) fn shm_release<P: Platform>(&self, cx: &Ctx<'_, P>, obj: Rc<ShmObject>) {
        if Rc::strong_count(&obj) != 1 {
            return;
        }
        for i in 0..obj.nr_pages() {
            match obj.slot(i) {
                ObjSlot::Page(pfn) => {
                    let d = self.mem_map.desc(pfn);
                    if d.put_page() == 0 {
                        self.free_pages(cx, pfn, 0);
                    }
                }
                ObjSlot::Swapped(e) => {
                    self.swap_free(cx.p(), e);
                }
                ObjSlot::Empty => {}
            }
        }
        self.kobj_uncharge(cx, crate::kobj::KObj::ShmSeg, obj.index_bytes());
    }

    /// `ipcrm` every SysV segment (workload teardown): each goes when its last attachment
    /// does. Returns how many were removed.
    pub fn shm_remove_all<P: Platform>(&self, cx: &mut SleepCtx<'_, P>) -> usize {
        let ids: Vec<u32> = self.shm_segments(cx).into_iter().map(|s| s.0).collect();
        for id in &ids {
            let _ = self.sys_shmctl_rmid(cx, *id);
        }
        ids.len()
    }

    /// Number of SysV segments and their attachments (for reports).
    pub fn shm_segments<P: Platform>(&self, cx: &mut SleepCtx<'_, P>) -> Vec<(u32, u64, usize)> {
        let ids = self.shm.lock_ids(cx, "shm report");
        ids.segs
            .iter()
            .map(|(id, s)| (*id, s.obj.size, Rc::strong_count(&s.obj) - 1))
            .collect()
    }
}
