//! Kernel objects charged to low memory at documented sizes.
//!
//! The simulator keeps kernel objects (mm, VMAs, task structs, shm index vectors) as host Rust
//! values, but a real kernel would keep them in slab pages of low memory. Each object type has
//! a documented size; the bytes in use are packed into low pages allocated from the buddy
//! (owner "kernel objects"), so low memory runs out when it would on the real machine. Kernel
//! stacks are real order-1 page allocations (8 KB, `THREAD_SIZE` on i386).

use crate::ctx::{Ctx, SleepCtx};
use crate::kernel::Kernel;
use crate::page_alloc::{PageOwner, GFP_KERNEL};
use crate::pgtable::OutOfMemory;
use crate::platform::Platform;
use highpte_arch::{KernelProfile, PagingMode, Pfn, PAGE_SIZE};

/// A kind of kernel object and its simulated size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KObj {
    /// `task_struct` (about 1.6 KB on 2.5 i386), plus `bytes`.
    TaskStruct,
    /// `mm_struct` (about 400 bytes).
    MmStruct,
    /// `vm_area_struct` (about 88 bytes).
    Vma,
    /// A shm segment: `shmid_kernel` plus its page index of `bytes`.
    ShmSeg,
    /// An in-core inode of the simulated file system (`struct inode` with its
    /// `address_space`, about 480 bytes on 2.5 i386).
    Inode,
    /// A directory entry (`struct dentry` with a short inline name, about 144 bytes).
    Dentry,
    /// An open file description (`struct file`, about 128 bytes).
    File,
}

impl KObj {
    /// Bytes per object in the kernel of `profile`.
    pub const fn size_in(self, profile: KernelProfile) -> u64 {
        match profile {
            KernelProfile::Linux25 => self.size(),
            KernelProfile::Linux61 => self.size_linux61(),
        }
    }

    /// Bytes per object in Linux 6.1 686-pae, from the object sizes of its /proc/slabinfo
    /// and the objects each forked child added there (tools/realkernel, 64 children):
    /// - a task: `task_struct` 3,008, `signal_struct` 768, `sighand_struct` 1,344,
    ///   `files_struct` 256, `cred` 128, two `pid` of 64, one kmalloc-64;
    /// - an mm: `mm_struct` 576, a maple-tree node 256, two 32-byte `pgd_cache` objects (the
    ///   PAE pgd);
    /// - a VMA: `vm_area_struct` 80 plus its share of `anon_vma` (56) and `anon_vma_chain`
    ///   (32) objects, 52 bytes on average per VMA there;
    /// - the rest as in 2.5 (they appear in neither measurement).
    pub const fn size_linux61(self) -> u64 {
        match self {
            KObj::TaskStruct => 3008 + 768 + 1344 + 256 + 128 + 2 * 64 + 64,
            KObj::MmStruct => 576 + 256 + 2 * 32,
            KObj::Vma => 80 + 52,
            other => other.size(),
        }
    }

    /// Bytes per object in 2.5.
    pub const fn size(self) -> u64 {
        match self {
            KObj::TaskStruct => 1664,
            KObj::MmStruct => 416,
            KObj::Vma => 88,
            KObj::ShmSeg => 192,
            KObj::Inode => 480,
            KObj::Dentry => 144,
            KObj::File => 128,
        }
    }
}

/// Bytes of kernel objects in use and the low pages holding them.
#[derive(Default)]
pub struct KobjState {
    pub(crate) bytes: core::cell::Cell<u64>,
    pub(crate) pages: core::cell::RefCell<alloc::vec::Vec<Pfn>>,
}

impl<M: PagingMode> Kernel<M> {
    /// Charge one object of `kind` (plus `extra` bytes) to low memory. May sleep.
    pub(crate) fn kobj_charge<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        kind: KObj,
        extra: u64,
    ) -> Result<(), OutOfMemory> {
        let add = kind.size_in(self.cfg.kernel) + extra;
        // Re-read the bytes in use on every round: allocating a page may let other tasks run
        // and charge or uncharge meanwhile (a value read before the allocation would be stale
        // and lose their update).
        while (self.kobj.pages.borrow().len() as u64) * PAGE_SIZE < self.kobj.bytes.get() + add {
            let pfn = self
                .alloc_pages(
                    cx,
                    GFP_KERNEL,
                    0,
                    PageOwner::KernelObject,
                    "kmem_cache_alloc",
                )
                .ok_or(OutOfMemory)?;
            self.kobj.pages.borrow_mut().push(pfn);
        }
        self.kobj.bytes.set(self.kobj.bytes.get() + add);
        Ok(())
    }

    /// Return one object of `kind` (plus `extra` bytes); frees pages no longer needed.
    pub(crate) fn kobj_uncharge<P: Platform>(&self, cx: &Ctx<'_, P>, kind: KObj, extra: u64) {
        let left = self
            .kobj
            .bytes
            .get()
            .saturating_sub(kind.size_in(self.cfg.kernel) + extra);
        self.kobj.bytes.set(left);
        loop {
            let spare = {
                let mut pages = self.kobj.pages.borrow_mut();
                // keep what the bytes need plus one page of slack while anything is in use,
                // as slab keeps a partially used page; nothing once the last object is gone
                let needed = left.div_ceil(PAGE_SIZE) + u64::from(left > 0);
                if pages.len() as u64 > needed {
                    pages.pop()
                } else {
                    None
                }
            };
            match spare {
                Some(pfn) => self.free_pages(cx, pfn, 0),
                None => break,
            }
        }
    }

    /// Bytes of kernel objects in use.
    pub fn kobj_bytes(&self) -> u64 {
        self.kobj.bytes.get()
    }
}
