//! The kernel's heap: a bootstrap arena in the image's bss, then the low memory boot set aside
//! for the page descriptors (mem_map).
//!
//! The kernel core keeps its page descriptors, VMA trees and process tables in ordinary Rust
//! collections. The simulator holds them in host memory and charges their simulated size to
//! low memory (the `mem_map` reservation and the kernel-object accounting). Here they must live
//! in the machine's own RAM: boot names the mem_map range through
//! `BootMemory::boot_mem_map_reserved`, and the allocator takes it as its second arena, so the
//! memory the kernel's model charges is the memory the kernel uses and its meminfo stays
//! comparable with the simulator's.

use talc::{ErrOnOom, Span, Talc, Talck};

/// Bytes of the bootstrap arena: what boot allocates before the mem_map range is known.
const BOOT_HEAP_BYTES: usize = 2 << 20;

#[repr(align(4096))]
struct Arena {
    bytes: [u8; BOOT_HEAP_BYTES],
}

static mut BOOT_ARENA: Arena = Arena {
    bytes: [0; BOOT_HEAP_BYTES],
};

#[global_allocator]
static ALLOCATOR: Talck<spin::Mutex<()>, ErrOnOom> = Talc::new(ErrOnOom).lock();

/// Hand the bootstrap arena to the allocator.
pub fn init() {
    // SAFETY: the arena is this module's and used for nothing else; claimed once, at boot.
    unsafe {
        let base = (&raw mut BOOT_ARENA.bytes).cast::<u8>();
        ALLOCATOR
            .lock()
            .claim(Span::from_base_size(base, BOOT_HEAP_BYTES))
            .expect("the bootstrap arena");
    }
}

/// Add `[va, va + bytes)` (kernel virtual addresses of reserved low memory) to the heap.
///
/// # Safety
/// The range is mapped, writable and used by nothing else for the rest of the run.
pub unsafe fn add_arena(va: u32, bytes: u32) {
    // SAFETY: forwarded to the caller.
    unsafe {
        ALLOCATOR
            .lock()
            .claim(Span::from_base_size(va as *mut u8, bytes as usize))
            .expect("the mem_map arena");
    }
}
