//! The invariant checker: run on demand, and after every step in tests.
//!
//! - every frame's map count equals the ptes that point to it, and its reference count is
//!   what its mappings and owner explain;
//! - no frame is both free and mapped;
//! - each zone's free lists are consistent, and per zone: pages by owner + free = present;
//! - page-table pages per zone match the tables that exist, and each mm's VmPTE and RSS match
//!   its page tables;
//! - page-cache pages: owned by the page cache, cached once, count = map count + the cache's
//!   reference; a file pte maps the file's cached page at its index (or, in a private
//!   mapping, an anonymous copy); `Cached` and `Dirty` match the pages.
//!
//! (That no TLB maps a freed frame is checked by the machine, which owns the TLBs, with
//! [`Kernel::page_is_free`].)
//!
//! The check runs in two phases: a census walks every live mm's page tables and every holder
//! of page references (shared objects, the swap cache, the page cache) and counts what it
//! finds (`Census`); then one check per subsystem compares its own books with the census.
//! `user_tables` walks the page tables, `pages` checks the holders of pages, `pools`
//! the allocator pools and zones.

mod pages;
mod pools;
mod user_tables;

use crate::ctx::SleepCtx;
use crate::kernel::Kernel;
use crate::mm::Mm;
use crate::platform::Platform;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use highpte_arch::{PagingMode, Pfn};

/// What the walks found, to compare with the books of the subsystems that own pages.
#[derive(Default)]
struct Census {
    /// pfn → number of ptes that map it.
    maps: BTreeMap<u64, u32>,
    /// swap slot → number of swap ptes and shared-object slots that hold it.
    swap_refs: BTreeMap<u32, u32>,
    /// Page-table pages per zone found in live page tables.
    pt_pages: [u64; 3],
    /// pfn → references shared objects hold on it.
    obj_refs: BTreeMap<u64, u32>,
    /// The swap cache: pfn → its swap slot.
    swap_cache: BTreeMap<u64, u32>,
    /// The page cache: pfn → (inode, index).
    page_cache: BTreeMap<u64, (u32, u32)>,
}

impl<M: PagingMode> Kernel<M> {
    /// True if `pfn` is on a free list of its zone.
    pub fn page_is_free<P: Platform>(&self, p: &P, pfn: Pfn) -> bool {
        let z = self.page_zone(pfn);
        self.page_alloc
            .with_zone(p, z, |g| g.free_area().is_free(&self.mem_map, pfn))
    }

    /// Every distinct live mm.
    pub fn live_mms(&self) -> Vec<Rc<Mm>> {
        let mut out: Vec<Rc<Mm>> = Vec::new();
        self.tasks.for_each(|pr| {
            if !out.iter().any(|m| Rc::ptr_eq(m, &pr.mm)) {
                out.push(pr.mm.clone());
            }
        });
        out
    }

    /// Check every invariant; returns the violations found (empty when all hold).
    ///
    /// The check is not atomic: it takes and drops locks (and may yield at each) as it walks.
    /// Call it when no other task is changing address spaces or allocating (between the steps
    /// of a scenario, with the other processes waiting or spinning in user mode); a check that
    /// races with an exit or a fault elsewhere can report the transient state it saw.
    pub fn check_invariants<P: Platform>(&self, cx: &mut SleepCtx<'_, P>) -> Vec<String> {
        let p = cx.p();
        // background reclaim changes everything it touches: let it finish first
        self.wait_kswapd_idle(cx);
        let mut bad: Vec<String> = Vec::new();
        let mut census = Census::default();
        // an mm whose owner is exiting may already have freed its tables
        let mms: Vec<Rc<Mm>> = self
            .live_mms()
            .into_iter()
            .filter(|m| !m.dead.get())
            .collect();
        for mm in &mms {
            self.check_user_tables(cx, mm, &mut census, &mut bad);
        }
        self.count_object_pages(cx, &mms, &mut census);
        self.check_swap(p, &mut census, &mut bad);
        self.check_page_cache(cx, &mut census, &mut bad);
        self.check_mapped_pages(p, &census, &mut bad);
        self.check_object_pages(p, &census, &mut bad);
        self.check_user_page_owners(&census, &mut bad);
        self.check_rmap_pool(&census, &mut bad);
        self.check_kernel_objects(&mut bad);
        self.count_kernel_pte_pages(p, &mut census.pt_pages);
        self.check_zones(p, &census.pt_pages, &mut bad);
        bad
    }

    /// Every SysV segment's object with its id.
    pub(crate) fn shm_objects<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
    ) -> Vec<(Rc<crate::mm::shm::ShmObject>, u32)> {
        let ids = self.shm.lock_ids(cx, "shm_objects");
        ids.objects()
    }
}
