//! The debug checks of a [`FreeArea`]: the free lists against the counters and the mem_map.

use super::{block_pages, FreeArea, MAX_ORDER};
use crate::page_alloc::mem_map::{MemMap, NO_PFN};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use highpte_arch::Pfn;

impl FreeArea {
    /// Debug check of the free lists: every listed block is a free head of the right order,
    /// aligned, inside the zone, doubly linked consistently; the counters add up; no two free
    /// blocks overlap; no free block's buddy is free at the same order (fully merged).
    ///
    /// Costs O(free blocks). See [`FreeArea::check_descriptors`] for the O(zone) check.
    pub fn check(&self, mm: &MemMap) -> Result<(), String> {
        let mut blocks: Vec<(u64, u32)> = Vec::new();
        let mut pages = 0u64;
        for order in 0..MAX_ORDER as u32 {
            let mut n = 0u64;
            let mut prev = NO_PFN;
            let mut cur = self.lists[order as usize].first;
            while cur != NO_PFN {
                if n >= self.nr_free[order as usize] {
                    return Err(format!(
                        "order {order}: list longer than nr_free {} (cycle or bad counter)",
                        self.nr_free[order as usize]
                    ));
                }
                let pfn = u64::from(cur);
                let d = mm
                    .get(Pfn(pfn))
                    .ok_or_else(|| format!("order {order}: pfn {pfn:#x} beyond mem_map"))?;
                if !d.is_free_head() || d.is_allocated_head() {
                    return Err(format!(
                        "order {order}: pfn {pfn:#x} listed with flags {:?}",
                        d.flags()
                    ));
                }
                if d.order() != order {
                    return Err(format!(
                        "order {order}: pfn {pfn:#x} has order {}",
                        d.order()
                    ));
                }
                if !pfn.is_multiple_of(block_pages(order)) {
                    return Err(format!("order {order}: pfn {pfn:#x} misaligned"));
                }
                if pfn < self.start || pfn + block_pages(order) > self.end {
                    return Err(format!(
                        "order {order}: block {pfn:#x} outside zone [{:#x}, {:#x})",
                        self.start, self.end
                    ));
                }
                if d.prev_free() != prev {
                    return Err(format!(
                        "order {order}: pfn {pfn:#x} prev link {:#x}, expected {prev:#x}",
                        d.prev_free()
                    ));
                }
                if self.buddy_free_at(mm, pfn, order) {
                    return Err(format!(
                        "order {order}: block {pfn:#x} and its buddy are both free (not merged)"
                    ));
                }
                blocks.push((pfn, order));
                pages += block_pages(order);
                n += 1;
                prev = cur;
                cur = d.next_free();
            }
            if n != self.nr_free[order as usize] {
                return Err(format!(
                    "order {order}: {n} blocks listed, nr_free says {}",
                    self.nr_free[order as usize]
                ));
            }
        }
        if pages != self.free_pages {
            return Err(format!(
                "{pages} pages listed, free_pages says {}",
                self.free_pages
            ));
        }
        if self.free_pages > self.managed_pages {
            return Err(format!(
                "free_pages {} above managed_pages {}",
                self.free_pages, self.managed_pages
            ));
        }
        blocks.sort_unstable();
        for w in blocks.windows(2) {
            let (a, ao) = w[0];
            if a + block_pages(ao) > w[1].0 {
                return Err(format!(
                    "free blocks {a:#x} (order {ao}) and {:#x} overlap",
                    w[1].0
                ));
            }
        }
        Ok(())
    }

    /// Full debug check: [`FreeArea::check`], then a scan of every descriptor of the zone:
    /// exactly the listed heads carry BUDDY, allocated heads lie outside free blocks and do not
    /// overlap each other or the zone edge, and free plus allocated pages cover at most the
    /// managed pages. Costs O(zone size) time and touches the whole zone's `mem_map`.
    pub fn check_descriptors(&self, mm: &MemMap) -> Result<(), String> {
        self.check(mm)?;
        let len = (self.end - self.start) as usize;
        let end = self.end.min(mm.len() as u64);
        // 0 = not free, 1 = free, 2 = allocated.
        let mut state = alloc::vec![0u8; len];
        for order in 0..MAX_ORDER as u32 {
            let mut cur = self.lists[order as usize].first;
            while cur != NO_PFN {
                let p = u64::from(cur);
                for s in &mut state
                    [(p - self.start) as usize..(p - self.start + block_pages(order)) as usize]
                {
                    *s = 1;
                }
                cur = mm.desc(Pfn(p)).next_free();
            }
        }
        let mut heads = 0u64;
        let mut allocated = 0u64;
        for pfn in self.start..end {
            let d = mm.desc(Pfn(pfn));
            let i = (pfn - self.start) as usize;
            if d.is_free_head() {
                heads += 1;
                if state[i] != 1 {
                    return Err(format!("pfn {pfn:#x} is a free head but on no free list"));
                }
            }
            if d.is_allocated_head() {
                let o = d.order();
                if pfn + block_pages(o) > self.end {
                    return Err(format!(
                        "allocated block {pfn:#x} (order {o}) runs past the zone end"
                    ));
                }
                for (k, s) in state[i..i + block_pages(o) as usize].iter_mut().enumerate() {
                    match *s {
                        1 => {
                            return Err(format!(
                                "allocated block {pfn:#x} (order {o}) overlaps free page +{k}"
                            ))
                        }
                        2 => {
                            return Err(format!(
                                "allocated block {pfn:#x} (order {o}) overlaps another at +{k}"
                            ))
                        }
                        _ => *s = 2,
                    }
                }
                allocated += block_pages(o);
            }
        }
        let listed: u64 = self.nr_free.iter().sum();
        if heads != listed {
            return Err(format!(
                "{heads} free heads in mem_map, {listed} on the lists"
            ));
        }
        if allocated + self.free_pages > self.managed_pages {
            return Err(format!(
                "{allocated} allocated + {} free pages exceed {} managed",
                self.free_pages, self.managed_pages
            ));
        }
        Ok(())
    }
}
