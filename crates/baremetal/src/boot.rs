//! From the multiboot loader to Rust: the multiboot header, temporary page tables, the jump to
//! the higher half, and the switch to PAE paging.
//!
//! QEMU's multiboot loader enters `_start` in 32-bit protected mode with paging off, EAX the
//! multiboot magic and EBX the physical address of the multiboot information. `_start` runs at
//! its physical address (16 MB). It builds a temporary 2-level page directory with 4 MB pages
//! that maps the first 64 MB at themselves (so the code keeps running when paging comes on)
//! and the first 1 GB at 0xC0000000 (where everything else is linked: the same place as the
//! kernel's direct map), turns paging on with CR0.WP, and jumps to `start_high`, which sets
//! the stack and calls `kmain`.
//!
//! `pae_switch` is how a PAE configuration leaves the temporary 2-level tables: paging can only
//! change mode while it is off, so the switch runs from the identity-mapped low copy of the
//! image, with a temporary PDPT that maps the same identity range and the kernel's top
//! gigabyte (the caller then loads the kernel's own CR3).

use core::arch::global_asm;

/// Virtual address of physical 0 (`PAGE_OFFSET`).
pub const KERNEL_VMA: u32 = 0xC000_0000;

global_asm!(
    r#"
    .section .multiboot, "a"
    .balign 4
    .long 0x1BADB002
    .long 0x00000003
    .long -(0x1BADB002 + 0x00000003)

    .section .boot.text, "ax"
    .code32
    .global _start
_start:
    cli
    cld
    mov esi, eax
    /* the temporary page directory: 4 MB pages (PS), present, writable */
    mov edi, offset boot_pd
    xor eax, eax
    mov ecx, 1024
    rep stosd
    mov edi, offset boot_pd
    mov eax, 0x83
    mov ecx, 16
2:
    mov [edi], eax
    add eax, 0x400000
    add edi, 4
    dec ecx
    jnz 2b
    mov edi, offset boot_pd + 3072
    mov eax, 0x83
    mov ecx, 256
3:
    mov [edi], eax
    add eax, 0x400000
    add edi, 4
    dec ecx
    jnz 3b
    mov eax, cr4
    or eax, 0x10
    mov cr4, eax
    mov eax, offset boot_pd
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80010000
    mov cr0, eax
    mov eax, offset start_high
    jmp eax

    /* pae_switch(pdpt_phys, cr4_bits): paging off, CR3 = pdpt, CR4 |= bits, paging on.
       Runs at its physical address and touches no memory while paging is off. */
    .global pae_switch
pae_switch:
    mov ecx, [esp + 4]
    mov edx, [esp + 8]
    mov eax, cr0
    and eax, 0x7fffffff
    mov cr0, eax
    mov cr3, ecx
    mov eax, cr4
    or eax, edx
    mov cr4, eax
    mov eax, cr0
    or eax, 0x80010000
    mov cr0, eax
    ret

    .section .boot.bss, "aw", @nobits
    .balign 4096
    .global boot_pd
boot_pd:
    .skip 4096
    .global boot_pae_pd
boot_pae_pd:
    .skip 4096
    .global boot_pdpt
boot_pdpt:
    .skip 32

    .section .text.start_high, "ax"
    .global start_high
start_high:
    mov esp, offset boot_stack_top
    xor ebp, ebp
    push ebx
    push esi
    call kmain
4:
    cli
    hlt
    jmp 4b

    .section .bss.stack, "aw", @nobits
    .balign 16
boot_stack:
    .skip 1048576
    .global boot_stack_top
boot_stack_top:
"#
);

extern "C" {
    static mut boot_pae_pd: [u64; 512];
    static mut boot_pdpt: [u64; 4];
    fn pae_switch(pdpt_phys: u32, cr4_bits: u32);
}

/// CR4.PSE.
pub const CR4_PSE: u32 = 1 << 4;
/// CR4.PAE.
pub const CR4_PAE: u32 = 1 << 5;
/// CR4.PGE.
pub const CR4_PGE: u32 = 1 << 7;

/// Turn on the paging the kernel asked for: CR4.PAE per `pae`, PSE and PGE on, CR3 = `cr3`.
///
/// # Safety
/// Once, from the temporary 2-level tables; `cr3` holds the kernel's complete page tables,
/// mapping low memory (this image, its stack and heap) at `KERNEL_VMA` as the temporary
/// tables do.
pub unsafe fn enable_paging(pae: bool, cr3: u32) {
    if pae {
        // SAFETY: the temporary PDPT and its page directory are this image's, unused by
        // anything else, and linked at their physical addresses (identity-mapped); the
        // kernel's PDPT is in low memory, reached through the temporary map at KERNEL_VMA.
        unsafe {
            let pd = &raw mut boot_pae_pd;
            for i in 0..32u64 {
                (*pd)[i as usize] = (i << 21) | 0x83;
            }
            let pdpt = &raw mut boot_pdpt;
            (*pdpt)[0] = pd as u32 as u64 | 1;
            (*pdpt)[1] = 0;
            (*pdpt)[2] = 0;
            (*pdpt)[3] = core::ptr::read_volatile((KERNEL_VMA + cr3 + 24) as *const u64);
            pae_switch(pdpt as u32, CR4_PAE | CR4_PSE | CR4_PGE);
            core::arch::asm!("mov cr3, {}", in(reg) cr3, options(nostack));
        }
    } else {
        // SAFETY: both tables map the higher half the same way.
        unsafe {
            core::arch::asm!(
                "mov eax, cr4",
                "or eax, {bits}",
                "mov cr4, eax",
                "mov cr3, {cr3}",
                bits = in(reg) CR4_PSE | CR4_PGE,
                cr3 = in(reg) cr3,
                out("eax") _,
                options(nostack)
            );
        }
    }
}
