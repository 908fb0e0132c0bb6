//! The platform's raw memory primitives are `unsafe fn`s with written promises (issue 14,
//! "Platform split into small traits; raw physical/virtual memory primitives are `unsafe fn`").
//! Safe kernel code cannot store to a kernel virtual address, load CR3 or start DMA into a
//! page: it goes through the guards (`PteMap`, `KmapAtomic`, the cursor) that keep the
//! mapping live and the lock held, and only they touch memory, inside `unsafe` blocks that say
//! why the promise holds.
//!
//! Linux mistake it stops: a store through a pointer kept after `pte_unmap`/`kunmap_atomic`
//! (the slot may already map another CPU's page), written with no guard in sight. With the old
//! `Platform` these calls were safe methods and compiled anywhere.

use highpte_arch::{PhysAddr, VirtAddr};
use highpte_kernel::{BlockDev, Platform};

fn store<P: Platform>(p: &P, va: VirtAddr) {
    p.write_u32(va, 0);
}

fn switch_to<P: Platform>(p: &P, cr3: PhysAddr) {
    p.load_cr3(cr3);
}

fn read_into<P: Platform>(p: &P, pfn: highpte_arch::Pfn) {
    p.block_io(BlockDev::Disk, 0, pfn, false);
}

fn main() {}
