//! The bare-metal side of the differential MMU test (`cargo xtask mmu-diff`).
//!
//! Runs before any kernel boots, from the temporary 2-level tables. It builds its own page
//! tables (2-level with PSE, or PAE; `mode=2level|pae`) for a seeded random set of user
//! mappings, switches to them, probes a seeded random set of user virtual addresses with real
//! 8-byte loads and stores, half at CPL 0 (CR0.WP set, so R/W matters, U/S does not) and half
//! at CPL 3 (ring 3 through a user code segment, a TSS for the way back and an `iret`; U/S and
//! R/W both matter; the kernel half's large pages are made user-accessible so the ring-3 probe
//! code can run from the image), with EFER.NXE clear (the `qemu32` CPU has no NX, so bit 63
//! of a PAE entry is a reserved bit), and prints everything on serial as `@mmu` lines:
//!
//! - `@mmu cfg mode=.. seed=.. cr3=.. wp=1 pse=1 nxe=0`: the control registers;
//! - `@mmu pg <pa> <index>=<entry> ...`: the nonzero entries of every page-table page as built
//!   (before any probe; several lines may share a page);
//! - `@mmu p <n> <va> <l|s|x> <cpl> <result> <ad>`: probe `n`, a load or store of 8 bytes or
//!   an instruction fetch at `va`, at CPL 0 or 3;
//!   `result` is `f<error code>` for a page fault (with `@<cr2>` if CR2 is not `va`), the
//!   physical address the access reached, or `?<value>` if that could not be established;
//!   `ad` is a hex nibble: bit 0/1 the A/D flags of the PDE on the path after the access,
//!   bit 2/3 those of the PTE (0 where the path has no such entry);
//! - `@mmu fin <pa> <hash>`: an FNV-1a hash of each table page after all probes (user entries
//!   only: the kernel half's A flags are set by this code running), and `@mmu pdpt-fin` with
//!   the four PDPTEs (QEMU sets bit 5 of PAE PDPTEs it walks through, a reserved bit);
//! - `@mmu end probes=<n>`.
//!
//! The path of a probe is found by following the tables' pointers as raw bits (PDPTE if PAE,
//! PDE, and the PTE if the PDE is present without PS), no access rights involved; before each
//! probe the A and D flags of those entries are cleared and the address is flushed with
//! `invlpg`, so every probe walks afresh from the same state (the replay does the same).
//!
//! How the physical address is established without trusting any model of the walk: the
//! entries' raw bits name where a successful access would land (the "intended" address); that
//! 8-byte location is stamped beforehand, through a kernel window, with the value
//! `STAMP | pa`, which names its own physical address. A load that succeeds reports the
//! address its value names (so it is where the CPU really read). A fetch probe jumps to `va`,
//! where the intended location holds the code `mov eax, lo; mov edx, hi; ud2` loading the
//! same stamp (the #UD ends the probe). A store writes a token
//! unique to the probe; the intended location is then read back: if it holds the token the
//! store landed there, otherwise the result is unknown (`?`), a mismatch for the replay.
//!
//! Physical memory (QEMU's PC with 8 GB: RAM at 0..3 GB and 4..9 GB): table pages come from
//! 256..512 MB and, for half the PAE pte pages, from 4..4.5 GB; mapped frames lie in
//! 1..2.98 GB and, with PAE, 4.5..9 GB. None of these overlaps the image (16 MB), and the
//! probes' stores touch only mapped frames.

use crate::multiboot::Info;
use crate::{boot, cpu, println};
use alloc::vec::Vec;
use core::arch::global_asm;
use core::cell::Cell;

const LOW_POOL: (u64, u64) = (0x1000_0000, 0x2000_0000);
const HIGH_POOL: (u64, u64) = (0x1_0000_0000, 0x1_2000_0000);
const LOW_TARGET: (u64, u64) = (0x4000_0000, 0xbf00_0000);
const HIGH_TARGET: (u64, u64) = (0x1_2000_0000, 0x2_4000_0000);
/// The top bits of a stamp: the rest is the physical address of the stamp itself.
const STAMP: u64 = 0x5ea7 << 48;
/// The top bits of a store's token: the rest is the probe number.
const TOKEN: u64 = 0x570e << 48;
/// A, D.
const AD: u64 = 0x60;
const PS: u64 = 0x80;
const ADDR_PAE: u64 = 0x0000_000f_ffff_f000;

global_asm!(
    r#"
    .section .text.mmu_diff, "ax"
    /* mmu_diff_load(addr) -> u64: two 4-byte loads of one 8-byte aligned location */
    .global mmu_diff_load
mmu_diff_load:
    mov ecx, [esp + 4]
    xor eax, eax
    xor edx, edx
    .global mmu_diff_load_a
mmu_diff_load_a:
    mov eax, [ecx]
    .global mmu_diff_load_b
mmu_diff_load_b:
    mov edx, [ecx + 4]
    .global mmu_diff_load_done
mmu_diff_load_done:
    ret

    /* mmu_diff_store(addr, lo, hi) */
    .global mmu_diff_store
mmu_diff_store:
    mov ecx, [esp + 4]
    mov eax, [esp + 8]
    mov edx, [esp + 12]
    .global mmu_diff_store_a
mmu_diff_store_a:
    mov [ecx], eax
    .global mmu_diff_store_b
mmu_diff_store_b:
    mov [ecx + 4], edx
    .global mmu_diff_store_done
mmu_diff_store_done:
    ret

    /* mmu_diff_fetch(addr) -> u64: jump to addr at CPL 0; the code stamped there loads
       EDX:EAX and ends with ud2, whose #UD (or a #PF of the fetch) the hook turns into a
       jump to mmu_diff_fetch_done */
    .global mmu_diff_fetch
mmu_diff_fetch:
    mov ecx, [esp + 4]
    xor eax, eax
    xor edx, edx
    jmp ecx
    .global mmu_diff_fetch_done
mmu_diff_fetch_done:
    ret

    /* mmu_diff_user(addr, kind, lo, hi) -> u64: the same accesses at CPL 3 (kind 0 load,
       1 store, 2 fetch). Saves the
       callee-saved registers and ESP, enters ring 3 by iret (DS/ES user data); the user code
       ends with hlt, whose #GP the hook turns into a return to mmu_diff_user_resume at CPL 0
       (as it does with a #PF of the access). */
    .global mmu_diff_user
mmu_diff_user:
    push ebp
    push ebx
    push esi
    push edi
    mov [mmu_diff_kernel_esp], esp
    mov ecx, [esp + 20]
    mov ebx, [esp + 24]
    mov eax, [esp + 28]
    mov edx, [esp + 32]
    mov si, 0x23
    mov ds, si
    mov es, si
    push 0x23
    push 0
    pushfd
    push 0x1b
    mov esi, offset mmu_diff_user_code
    push esi
    iretd
mmu_diff_user_code:
    cmp ebx, 2
    je 4f
    test ebx, ebx
    jnz 2f
    .global mmu_diff_user_load_a
mmu_diff_user_load_a:
    mov eax, [ecx]
    .global mmu_diff_user_load_b
mmu_diff_user_load_b:
    mov edx, [ecx + 4]
    jmp 3f
2:
    .global mmu_diff_user_store_a
mmu_diff_user_store_a:
    mov [ecx], eax
    .global mmu_diff_user_store_b
mmu_diff_user_store_b:
    mov [ecx + 4], edx
3:
    .global mmu_diff_user_exit
mmu_diff_user_exit:
    hlt
4:
    jmp ecx
    .global mmu_diff_user_resume
mmu_diff_user_resume:
    mov cx, 0x10
    mov ds, cx
    mov es, cx
    mov esp, [mmu_diff_kernel_esp]
    pop edi
    pop esi
    pop ebx
    pop ebp
    ret

    .section .bss.mmu_diff, "aw", @nobits
    .balign 4
mmu_diff_kernel_esp:
    .skip 4
"#
);

/// Flat segments: the kernel's (the same selectors as `cpu::init`), ring 3 code (0x1b) and
/// data (0x23), and the TSS (0x28) that gives ring 0's stack for faults at CPL 3.
static mut GDT: [u64; 6] = [
    0,
    0x00cf_9a00_0000_ffff,
    0x00cf_9200_0000_ffff,
    0x00cf_fa00_0000_ffff,
    0x00cf_f200_0000_ffff,
    0,
];

/// A 32-bit TSS: only SS0:ESP0 matter (and the I/O map base, past the limit: no I/O map).
#[repr(C, align(16))]
struct Tss([u32; 26]);

static mut TSS: Tss = Tss([0; 26]);

#[repr(C, align(16))]
struct Stack([u8; 65536]);

/// Ring 0's stack for exceptions taken at CPL 3.
static mut RING0_STACK: Stack = Stack([0; 65536]);

#[repr(C, packed)]
struct TablePtr {
    limit: u16,
    base: u32,
}

/// Load a GDT with ring-3 segments and a TSS, keeping the kernel's selectors.
fn enable_ring3() {
    // SAFETY: one CPU, interrupts off; the GDT keeps the selectors in use (0x08, 0x10) with
    // the same flat descriptors, so the segment registers stay valid; the TSS is this
    // module's.
    unsafe {
        let tss = &raw mut TSS;
        let stack = &raw mut RING0_STACK;
        (*tss).0[1] = stack as u32 + 65536; // ESP0
        (*tss).0[2] = 0x10; // SS0
        (*tss).0[25] = 104 << 16; // I/O map base: none
        let base = tss as u32 as u64;
        let limit = 103u64;
        let gdt = &raw mut GDT;
        (*gdt)[5] = limit | (base & 0xff_ffff) << 16 | 0x89 << 40 | (base >> 24) << 56;
        let p = TablePtr {
            limit: 6 * 8 - 1,
            base: gdt as u32,
        };
        core::arch::asm!("lgdt [{}]", "mov ax, 0x28", "ltr ax", in(reg) &p, out("eax") _);
    }
}

extern "C" {
    fn mmu_diff_load(addr: u32) -> u64;
    fn mmu_diff_store(addr: u32, lo: u32, hi: u32);
    fn mmu_diff_load_a();
    fn mmu_diff_load_b();
    fn mmu_diff_load_done();
    fn mmu_diff_store_a();
    fn mmu_diff_store_b();
    fn mmu_diff_store_done();
    fn mmu_diff_fetch(addr: u32) -> u64;
    fn mmu_diff_fetch_done();
    fn mmu_diff_user(addr: u32, kind: u32, lo: u32, hi: u32) -> u64;
    fn mmu_diff_user_load_a();
    fn mmu_diff_user_load_b();
    fn mmu_diff_user_store_a();
    fn mmu_diff_user_store_b();
    fn mmu_diff_user_exit();
    fn mmu_diff_user_resume();
}

/// The last probe fault: (CR2, error code).
struct FaultCell(Cell<Option<(u32, u32)>>);
// SAFETY: one CPU; written by the trap hook, read by the probe loop between probes.
unsafe impl Sync for FaultCell {}
static FAULT: FaultCell = FaultCell(Cell::new(None));
/// The address a fetch probe jumps to, while it runs.
static FETCH: FetchCell = FetchCell(Cell::new(None));

/// The stamped code a fetch probe runs: `mov eax, lo; mov edx, hi; ud2`.
const FETCH_CODE_LEN: u32 = 10;

struct FetchCell(Cell<Option<u32>>);
// SAFETY: as `FaultCell`.
unsafe impl Sync for FetchCell {}

/// The raw trap hook: a #PF at one of the probe instructions (or of a fetch probe's target)
/// is recorded and the probe ends, as it does at the #UD that ends a fetch probe's code; at
/// CPL 3 the probe ends by a return to ring 0, also at the #GP of the final `hlt`.
fn hook(f: &mut cpu::Frame) -> bool {
    let at = |s: unsafe extern "C" fn()| s as usize as u32;
    let fetch = FETCH.0.get();
    let fetch_fault = f.vector == 14 && fetch == Some(f.eip);
    let fetch_end = f.vector == 6 && fetch == Some(f.eip.wrapping_sub(FETCH_CODE_LEN));
    if fetch_fault {
        FAULT.0.set(Some((cpu::cr2(), f.error)));
    }
    if fetch_fault || fetch_end {
        if f.cs & 3 == 3 {
            f.cs = 0x08;
            f.eip = at(mmu_diff_user_resume);
        } else {
            f.eip = at(mmu_diff_fetch_done);
        }
        return true;
    }
    if f.cs & 3 == 3 {
        let access = [
            mmu_diff_user_load_a as unsafe extern "C" fn(),
            mmu_diff_user_load_b,
            mmu_diff_user_store_a,
            mmu_diff_user_store_b,
        ]
        .into_iter()
        .any(|s| at(s) == f.eip);
        if f.vector == 14 && access {
            FAULT.0.set(Some((cpu::cr2(), f.error)));
        } else if !(f.vector == 13 && f.eip == at(mmu_diff_user_exit)) {
            return false;
        }
        f.cs = 0x08;
        f.eip = at(mmu_diff_user_resume);
        return true;
    }
    if f.vector != 14 {
        return false;
    }
    let done = if f.eip == at(mmu_diff_load_a) || f.eip == at(mmu_diff_load_b) {
        at(mmu_diff_load_done)
    } else if f.eip == at(mmu_diff_store_a) || f.eip == at(mmu_diff_store_b) {
        at(mmu_diff_store_done)
    } else {
        return false;
    };
    FAULT.0.set(Some((cpu::cr2(), f.error)));
    f.eip = done;
    true
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `pct` percent.
    fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    /// A random `align`-aligned address in `[lo, hi)`.
    fn addr(&mut self, (lo, hi): (u64, u64), align: u64) -> u64 {
        lo + self.below((hi - lo) / align) * align
    }
}

/// Physical memory access: the kernel's direct map for low memory, a large-page window (the
/// last kernel PDE) for the rest.
struct Phys {
    pae: bool,
    /// Kernel virtual address of the window PDE.
    window_pde: u32,
    window_base: Cell<u64>,
}

impl Phys {
    fn large(&self) -> u64 {
        if self.pae {
            2 << 20
        } else {
            4 << 20
        }
    }
    fn window_va(&self) -> u32 {
        (0x1_0000_0000 - self.large()) as u32
    }
    fn ptr(&self, pa: u64) -> *mut u64 {
        let direct_end = 0x4000_0000 - self.large();
        if pa + 8 <= direct_end {
            return (boot::KERNEL_VMA as u64 + pa) as u32 as *mut u64;
        }
        let base = pa & !(self.large() - 1);
        if base != self.window_base.get() {
            // SAFETY: the window PDE is this module's (the last kernel PDE of its tables),
            // pointing at RAM this module owns; flushed before use.
            unsafe {
                if self.pae {
                    core::ptr::write_volatile(self.window_pde as *mut u64, base | 0x83);
                } else {
                    core::ptr::write_volatile(self.window_pde as *mut u32, base as u32 | 0x83);
                }
                core::arch::asm!("invlpg [{}]", in(reg) self.window_va(), options(nostack));
            }
            self.window_base.set(base);
        }
        (self.window_va() as u64 + (pa - base)) as u32 as *mut u64
    }
    fn rd64(&self, pa: u64) -> u64 {
        // SAFETY: `ptr` maps `pa`, RAM owned by this module (8-byte aligned).
        unsafe { core::ptr::read_volatile(self.ptr(pa)) }
    }
    fn wr64(&self, pa: u64, v: u64) {
        // SAFETY: as `rd64`.
        unsafe { core::ptr::write_volatile(self.ptr(pa), v) }
    }
    fn rd32(&self, pa: u64) -> u32 {
        // SAFETY: as `rd64`.
        unsafe { core::ptr::read_volatile(self.ptr(pa) as *const u32) }
    }
    fn wr32(&self, pa: u64, v: u32) {
        // SAFETY: as `rd64`.
        unsafe { core::ptr::write_volatile(self.ptr(pa) as *mut u32, v) }
    }
    /// A paging-structure entry of this mode (zero-extended in 2-level mode).
    fn entry(&self, pa: u64) -> u64 {
        if self.pae {
            self.rd64(pa)
        } else {
            u64::from(self.rd32(pa))
        }
    }
    fn set_entry(&self, pa: u64, v: u64) {
        if self.pae {
            self.wr64(pa, v);
        } else {
            self.wr32(pa, v as u32);
        }
    }
}

/// What a page-table page is, for the final hash.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PageKind {
    Pdpt,
    /// The 2-level page directory: user entries 0..768 only are hashed.
    Pd2,
    /// The PAE kernel page directory: not hashed.
    KernelPd,
    Table,
}

struct Build {
    rng: Rng,
    phys: Phys,
    low_next: u64,
    high_next: u64,
    pages: Vec<(u64, PageKind)>,
    /// Probe targets: (va, bytes) of every leaf entry written and every pte page's span.
    leaves: Vec<(u32, u32)>,
    spans: Vec<(u32, u32)>,
}

impl Build {
    fn alloc(&mut self, high: bool, kind: PageKind) -> u64 {
        let (next, end) = if high {
            (&mut self.high_next, HIGH_POOL.1)
        } else {
            (&mut self.low_next, LOW_POOL.1)
        };
        let pa = *next;
        assert!(pa < end, "mmu-diff: page-table pool exhausted");
        *next += 4096;
        for off in (0..4096).step_by(8) {
            self.phys.wr64(pa + off, 0);
        }
        self.pages.push((pa, kind));
        pa
    }

    /// Random flags of an entry: R/W and U/S (each 3 in 4), PWT, PCD, A, D, G, the available
    /// bits (no P, no PS).
    fn flags(&mut self) -> u64 {
        let r = self.rng.next();
        let rw = if r >> 32 & 3 != 0 { 2 } else { 0 };
        let us = if r >> 34 & 3 != 0 { 4 } else { 0 };
        (r & 0x78) | (r & 0xf00) | rw | us
    }

    /// A reserved bit of a PAE entry (EFER.NXE clear): bit 63 or one of 62:36 (above MAXPHYADDR).
    fn pae_reserved(&mut self) -> u64 {
        if self.rng.pct(40) {
            1 << 63
        } else {
            1 << (36 + self.rng.below(27))
        }
    }

    /// A PTE (or a non-present entry) for a 4 KB page.
    fn pte(&mut self) -> u64 {
        if self.rng.pct(15) {
            // not present: the other bits are the OS's
            return if self.rng.pct(50) {
                0
            } else {
                self.rng.next() & !1 & self.mask()
            };
        }
        let high = self.phys.pae && self.rng.pct(50);
        let frame = self
            .rng
            .addr(if high { HIGH_TARGET } else { LOW_TARGET }, 4096);
        let mut e = frame | 1 | self.flags();
        if self.rng.pct(5) {
            e |= PS; // the PAT bit of a PTE
        }
        if self.phys.pae && self.rng.pct(5) {
            e |= self.pae_reserved();
        }
        e
    }

    fn mask(&self) -> u64 {
        if self.phys.pae {
            u64::MAX
        } else {
            0xffff_ffff
        }
    }

    /// Fill the page-directory slot at `pde_pa` that maps `va` (4 or 2 MB).
    fn pd_slot(&mut self, pde_pa: u64, va: u32) {
        let pae = self.phys.pae;
        let large = self.phys.large();
        let roll = self.rng.below(100);
        if roll < 10 {
            let e = if self.rng.pct(50) {
                0
            } else {
                self.rng.next() & !1 & self.mask()
            };
            self.phys.set_entry(pde_pa, e);
            self.leaves.push((va, large as u32));
        } else if roll < 40 {
            let high = pae && self.rng.pct(50);
            let frame = self
                .rng
                .addr(if high { HIGH_TARGET } else { LOW_TARGET }, large);
            let mut e = frame | 1 | PS | self.flags();
            if self.rng.pct(20) {
                e |= 1 << 12; // PAT
            }
            if self.rng.pct(8) {
                e |= if !pae {
                    1 << 21
                } else if self.rng.pct(50) {
                    1 << (13 + self.rng.below(8))
                } else {
                    self.pae_reserved()
                };
            }
            self.phys.set_entry(pde_pa, e);
            self.leaves.push((va, large as u32));
        } else {
            let high = pae && self.rng.pct(50);
            let pt = self.alloc(high, PageKind::Table);
            let mut e = pt | 1 | (self.flags() & !0x80);
            if pae && self.rng.pct(4) {
                e |= self.pae_reserved();
            }
            self.phys.set_entry(pde_pa, e);
            self.spans.push((va, large as u32));
            let (esz, n) = if pae { (8, 512) } else { (4, 1024) };
            for _ in 0..1 + self.rng.below(4) {
                let start = self.rng.below(n);
                let len = (1 + self.rng.below(16)).min(n - start);
                for i in start..start + len {
                    let v = self.pte();
                    self.phys.set_entry(pt + i * esz, v);
                    self.leaves.push((va + (i as u32) * 4096, 4096));
                }
            }
        }
    }
}

/// The path of `va` by the tables' raw bits: (PDE address, PTE address, intended physical
/// address of a successful access).
fn path(phys: &Phys, cr3: u64, va: u32) -> (Option<u64>, Option<u64>, Option<u64>) {
    let va64 = u64::from(va);
    let (pde_pa, pde) = if phys.pae {
        let pdpte = phys.rd64(cr3 + 8 * (va64 >> 30));
        if pdpte & 1 == 0 {
            return (None, None, None);
        }
        let pa = (pdpte & ADDR_PAE) + 8 * ((va64 >> 21) & 511);
        (pa, phys.rd64(pa))
    } else {
        let pa = cr3 + 4 * (va64 >> 22);
        (pa, u64::from(phys.rd32(pa)))
    };
    if pde & 1 == 0 {
        return (Some(pde_pa), None, None);
    }
    if pde & PS != 0 {
        let target = if phys.pae {
            (pde & 0x0000_000f_ffe0_0000) | (va64 & 0x1f_ffff)
        } else {
            (pde & 0xffc0_0000) | (va64 & 0x3f_ffff)
        };
        return (Some(pde_pa), None, Some(target));
    }
    let pte_pa = if phys.pae {
        (pde & ADDR_PAE) + 8 * ((va64 >> 12) & 511)
    } else {
        (pde & 0xffff_f000) + 4 * ((va64 >> 12) & 1023)
    };
    let pte = phys.entry(pte_pa);
    let target = (pte & 1 != 0).then_some((pte & ADDR_PAE) | (va64 & 0xfff));
    (Some(pde_pa), Some(pte_pa), target)
}

fn is_target(pa: u64) -> bool {
    let inr = |(lo, hi): (u64, u64)| lo <= pa && pa + 8 <= hi;
    inr(LOW_TARGET) || inr(HIGH_TARGET)
}

fn arg_u64(info: &Info, key: &str, default: u64) -> Option<u64> {
    match info.arg(key) {
        None => Some(default),
        Some(v) => v.parse().ok(),
    }
}

/// Build the seeded page tables, probe them with real accesses, dump the results.
pub fn run(info: &Info) -> bool {
    let pae = match info.arg("mode").unwrap_or("pae") {
        "pae" => true,
        "2level" => false,
        m => {
            println!("mmu-diff: unknown mode {m} (2level or pae)");
            return false;
        }
    };
    let (Some(seed), Some(nprobes), Some(nslots)) = (
        arg_u64(info, "seed", 1),
        arg_u64(info, "probes", 4000),
        arg_u64(info, "mappings", 96),
    ) else {
        println!("mmu-diff: seed, probes and mappings take decimal numbers");
        return false;
    };
    for (lo, hi) in [LOW_POOL, LOW_TARGET].into_iter().chain(
        pae.then_some([HIGH_POOL, HIGH_TARGET])
            .into_iter()
            .flatten(),
    ) {
        if !info.is_ram(lo, hi) {
            println!("mmu-diff: {lo:#x}..{hi:#x} is not RAM (boot with -m 8G)");
            return false;
        }
    }
    let phys = Phys {
        pae,
        window_pde: 0,
        window_base: Cell::new(u64::MAX),
    };
    let mut b = Build {
        rng: Rng(seed ^ 0x6d6d_752d_6469_6666),
        phys,
        low_next: LOW_POOL.0,
        high_next: HIGH_POOL.0,
        pages: Vec::new(),
        leaves: Vec::new(),
        spans: Vec::new(),
    };

    // The kernel half first (mapping phys 0..1 GB at 0xC0000000 as the temporary tables do,
    // the last large page being the window), then the switch, then the user half through
    // the window.
    let cr3;
    let mut pds: Vec<u64> = Vec::new();
    if pae {
        let pdpt = b.alloc(false, PageKind::Pdpt);
        let kpd = b.alloc(false, PageKind::KernelPd);
        for i in 0..512u64 {
            // U/S: the ring-3 probe code runs from the image
            b.phys.wr64(kpd + 8 * i, (i << 21) | 0x87);
        }
        b.phys.wr64(pdpt + 24, kpd | 1);
        b.phys.window_pde = boot::KERNEL_VMA + (kpd + 8 * 511) as u32;
        cr3 = pdpt;
        // SAFETY: the new tables map the kernel half as the temporary ones do.
        unsafe { boot::enable_paging(true, cr3 as u32) };
        b.phys.window_base.set(511 << 21);
        for i in 0..3u64 {
            let v = if b.rng.pct(90) {
                let pd = b.alloc(false, PageKind::Table);
                pds.push(i);
                pd | 1 | (b.rng.next() & 0x18)
            } else if b.rng.pct(50) {
                0
            } else {
                b.rng.next() & !1 & !(1 << 63)
            };
            b.phys.wr64(pdpt + 8 * i, v);
        }
    } else {
        let pd = b.alloc(false, PageKind::Pd2);
        for i in 768..1024u64 {
            // U/S: the ring-3 probe code runs from the image
            b.phys.wr32(pd + 4 * i, (((i - 768) << 22) | 0x87) as u32);
        }
        b.phys.window_pde = boot::KERNEL_VMA + (pd + 4 * 1023) as u32;
        cr3 = pd;
        // SAFETY: as above.
        unsafe { boot::enable_paging(false, cr3 as u32) };
        b.phys.window_base.set(255 << 22);
    }
    cpu::set_raw_hook(Some(hook));
    enable_ring3();

    // The user half: `nslots` distinct random page-directory slots.
    let mut used: Vec<u32> = Vec::new();
    // at most 9 in 10 of the user half's slots (768 in 2-level mode, 512 per present PDPTE)
    let nslots = nslots.min(if pae { pds.len() as u64 * 512 } else { 768 } * 9 / 10);
    while (used.len() as u64) < nslots {
        let slot = if pae {
            if pds.is_empty() {
                break;
            }
            let p = pds[b.rng.below(pds.len() as u64) as usize];
            (p as u32) * 512 + b.rng.below(512) as u32
        } else {
            b.rng.below(768) as u32
        };
        if used.contains(&slot) {
            continue;
        }
        used.push(slot);
        let (pde_pa, va) = if pae {
            let pd = b.phys.rd64(cr3 + 8 * u64::from(slot / 512)) & ADDR_PAE;
            (pd + 8 * u64::from(slot % 512), slot << 21)
        } else {
            (cr3 + 4 * u64::from(slot), slot << 22)
        };
        b.pd_slot(pde_pa, va);
    }
    if pae {
        // reload the PDPTE registers
        // SAFETY: the same tables, now complete.
        unsafe { core::arch::asm!("mov cr3, {}", in(reg) cr3 as u32, options(nostack)) };
    }

    println!(
        "@mmu cfg mode={} seed={seed} cr3={cr3:x} wp=1 pse=1 nxe=0 slots={} leaves={} pages={}",
        if pae { "pae" } else { "2level" },
        used.len(),
        b.leaves.len(),
        b.pages.len()
    );
    let esz = if pae { 8 } else { 4 };
    for &(pa, _) in &b.pages {
        let mut line = alloc::string::String::new();
        let mut n = 0;
        for i in 0..4096 / esz {
            let v = b.phys.entry(pa + i * esz);
            if v != 0 {
                use core::fmt::Write as _;
                let _ = write!(line, " {i:x}={v:x}");
                n += 1;
                if n == 64 {
                    println!("@mmu pg {pa:x}{line}");
                    line.clear();
                    n = 0;
                }
            }
        }
        if n > 0 || line.is_empty() {
            println!("@mmu pg {pa:x}{line}");
        }
    }

    let t0 = cpu::rdtsc();
    let mut faults = 0u32;
    for n in 0..nprobes {
        let roll = b.rng.below(100);
        let va = (if roll < 75 && !b.leaves.is_empty() {
            let (base, size) = b.leaves[b.rng.below(b.leaves.len() as u64) as usize];
            base + b.rng.below(u64::from(size)) as u32
        } else if roll < 90 && !b.spans.is_empty() {
            let (base, size) = b.spans[b.rng.below(b.spans.len() as u64) as usize];
            base + b.rng.below(u64::from(size)) as u32
        } else {
            b.rng.below(0xc000_0000) as u32
        }) & !7;
        // 2 in 5 loads, 2 in 5 stores, 1 in 5 instruction fetches (16-byte aligned)
        let kind = b.rng.below(5);
        let (store, fetch) = (kind == 2 || kind == 3, kind == 4);
        let va = if fetch { va & !15 } else { va };
        let user = b.rng.pct(50);
        let (pde, pte, target) = path(&b.phys, cr3, va);
        for e in [pde, pte].into_iter().flatten() {
            b.phys.set_entry(e, b.phys.entry(e) & !AD);
        }
        let target = target.filter(|&pa| is_target(pa));
        if let Some(pa) = target {
            let stamp = STAMP | pa;
            if fetch {
                let mut code = [0x90u8; 16];
                code[0] = 0xb8;
                code[1..5].copy_from_slice(&(stamp as u32).to_le_bytes());
                code[5] = 0xba;
                code[6..10].copy_from_slice(&((stamp >> 32) as u32).to_le_bytes());
                code[10..12].copy_from_slice(&[0x0f, 0x0b]);
                let word = |i: usize| u64::from_le_bytes(code[i..i + 8].try_into().unwrap());
                b.phys.wr64(pa, word(0));
                b.phys.wr64(pa + 8, word(8));
            } else {
                b.phys.wr64(pa, stamp);
            }
        }
        FAULT.0.set(None);
        FETCH.0.set(fetch.then_some(va));
        let token = TOKEN | n;
        // SAFETY: `va` is a user address of this module's tables; the probe's page faults are
        // caught by `hook`; a successful store writes a frame this module mapped (RAM).
        let value = unsafe {
            core::arch::asm!("invlpg [{}]", in(reg) va, options(nostack));
            if user {
                let kind = if fetch { 2 } else { store as u32 };
                mmu_diff_user(va, kind, token as u32, (token >> 32) as u32)
            } else if fetch {
                mmu_diff_fetch(va)
            } else if store {
                mmu_diff_store(va, token as u32, (token >> 32) as u32);
                0
            } else {
                mmu_diff_load(va)
            }
        };
        let mut ad = 0u64;
        if let Some(e) = pde {
            ad |= (b.phys.entry(e) & AD) >> 5;
        }
        if let Some(e) = pte {
            ad |= (b.phys.entry(e) & AD) >> 3;
        }
        FETCH.0.set(None);
        let kind = if fetch {
            'x'
        } else if store {
            's'
        } else {
            'l'
        };
        let cpl = if user { 3 } else { 0 };
        match FAULT.0.get() {
            Some((cr2, code)) => {
                faults += 1;
                if cr2 == va {
                    println!("@mmu p {n} {va:x} {kind} {cpl} f{code:x} {ad:x}");
                } else {
                    println!("@mmu p {n} {va:x} {kind} {cpl} f{code:x}@{cr2:x} {ad:x}");
                }
            }
            None => {
                let got = if store {
                    target.filter(|&pa| b.phys.rd64(pa) == token)
                } else {
                    (value >> 48 == STAMP >> 48 && (value >> 36) & 0xfff == 0)
                        .then_some(value & 0xf_ffff_ffff)
                };
                match got {
                    Some(pa) => println!("@mmu p {n} {va:x} {kind} {cpl} {pa:x} {ad:x}"),
                    None => println!("@mmu p {n} {va:x} {kind} {cpl} ?{value:x} {ad:x}"),
                }
            }
        }
    }
    let cycles = cpu::rdtsc() - t0;
    cpu::set_raw_hook(None);

    for &(pa, kind) in &b.pages {
        let entries = match kind {
            PageKind::KernelPd => continue,
            PageKind::Pd2 => 768,
            PageKind::Pdpt => {
                let e: [u64; 4] = core::array::from_fn(|i| b.phys.rd64(pa + 8 * i as u64));
                println!("@mmu pdpt-fin {:x} {:x} {:x} {:x}", e[0], e[1], e[2], e[3]);
                continue;
            }
            PageKind::Table => 4096 / esz,
        };
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for i in 0..entries {
            h = (h ^ b.phys.entry(pa + i * esz)).wrapping_mul(0x0100_0000_01b3);
        }
        println!("@mmu fin {pa:x} {h:x}");
    }
    println!("@mmu end probes={nprobes} faults={faults} cycles={cycles}");
    true
}
