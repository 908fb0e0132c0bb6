//! The probes: the access code (CPL 0, and CPL 3 through a user code segment, a TSS and
//! `iret`), the trap hook that ends a faulting probe, and the probe loop.

use super::tables::{is_target, path, Build, Phys};
use super::{AD, STAMP, TOKEN};
use crate::{cpu, println};
use core::arch::global_asm;
use core::cell::Cell;

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
pub(super) fn hook(f: &mut cpu::Frame) -> bool {
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

/// One probe: a load or store of 8 bytes or an instruction fetch at `va`.
struct Probe {
    n: u64,
    va: u32,
    store: bool,
    fetch: bool,
    /// At CPL 3, else at CPL 0.
    user: bool,
}

impl Probe {
    /// Choose probe `n` at random: mostly in the range of a leaf entry or the span of a pte
    /// page, otherwise anywhere in the user half.
    fn choose(b: &mut Build, n: u64) -> Self {
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
        Probe {
            n,
            va,
            store,
            fetch,
            user,
        }
    }
}

/// Probe the tables at `cr3` `nprobes` times, each from the same state (see the module
/// docs), and print every probe's `@mmu p` line; returns how many faulted.
pub(super) fn probe_all(b: &mut Build, cr3: u64, nprobes: u64) -> u32 {
    let mut faults = 0u32;
    for n in 0..nprobes {
        let p = Probe::choose(b, n);
        let (pde, pte, target) = path(&b.phys, cr3, p.va);
        for e in [pde, pte].into_iter().flatten() {
            b.phys.set_entry(e, b.phys.entry(e) & !AD);
        }
        let target = target.filter(|&pa| is_target(pa));
        if let Some(pa) = target {
            stamp(&b.phys, pa, p.fetch);
        }
        FAULT.0.set(None);
        FETCH.0.set(p.fetch.then_some(p.va));
        let token = TOKEN | n;
        let value = access(&p, token);
        let ad = ad_flags(&b.phys, pde, pte);
        FETCH.0.set(None);
        if report(&b.phys, &p, target, token, value, ad) {
            faults += 1;
        }
    }
    faults
}

/// Stamp the intended location `pa` of a probe: with `STAMP | pa`, or for a fetch with the
/// code that loads that stamp (`mov eax, lo; mov edx, hi; ud2`, then `nop`s to 16 bytes).
fn stamp(phys: &Phys, pa: u64, fetch: bool) {
    let stamp = STAMP | pa;
    if fetch {
        let mut code = [0x90u8; 16];
        code[0] = 0xb8;
        code[1..5].copy_from_slice(&(stamp as u32).to_le_bytes());
        code[5] = 0xba;
        code[6..10].copy_from_slice(&((stamp >> 32) as u32).to_le_bytes());
        code[10..12].copy_from_slice(&[0x0f, 0x0b]);
        let word = |i: usize| u64::from_le_bytes(code[i..i + 8].try_into().unwrap());
        phys.wr64(pa, word(0));
        phys.wr64(pa + 8, word(8));
    } else {
        phys.wr64(pa, stamp);
    }
}

/// Flush the probe's address from the TLB and make its access (a store writes `token`);
/// returns EDX:EAX as the access left them (0 for a store at CPL 0).
fn access(p: &Probe, token: u64) -> u64 {
    let (va, store, fetch) = (p.va, p.store, p.fetch);
    // SAFETY: `va` is a user address of this module's tables; the probe's page faults are
    // caught by `hook`; a successful store writes a frame this module mapped (RAM).
    unsafe {
        core::arch::asm!("invlpg [{}]", in(reg) va, options(nostack));
        if p.user {
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
    }
}

/// The `ad` nibble of a probe line: the A/D flags of the PDE (bits 0/1) and the PTE (bits
/// 2/3) on the probe's path.
fn ad_flags(phys: &Phys, pde: Option<u64>, pte: Option<u64>) -> u64 {
    let mut ad = 0u64;
    if let Some(e) = pde {
        ad |= (phys.entry(e) & AD) >> 5;
    }
    if let Some(e) = pte {
        ad |= (phys.entry(e) & AD) >> 3;
    }
    ad
}

/// Print the `@mmu p` line of probe `p`, given the intended location `target`, the store's
/// `token` and the `value` the access returned; true if the probe faulted.
fn report(phys: &Phys, p: &Probe, target: Option<u64>, token: u64, value: u64, ad: u64) -> bool {
    let (n, va, store) = (p.n, p.va, p.store);
    let kind = if p.fetch {
        'x'
    } else if store {
        's'
    } else {
        'l'
    };
    let cpl = if p.user { 3 } else { 0 };
    match FAULT.0.get() {
        Some((cr2, code)) => {
            if cr2 == va {
                println!("@mmu p {n} {va:x} {kind} {cpl} f{code:x} {ad:x}");
            } else {
                println!("@mmu p {n} {va:x} {kind} {cpl} f{code:x}@{cr2:x} {ad:x}");
            }
            true
        }
        None => {
            let got = if store {
                target.filter(|&pa| phys.rd64(pa) == token)
            } else {
                (value >> 48 == STAMP >> 48 && (value >> 36) & 0xfff == 0)
                    .then_some(value & 0xf_ffff_ffff)
            };
            match got {
                Some(pa) => println!("@mmu p {n} {va:x} {kind} {cpl} {pa:x} {ad:x}"),
                None => println!("@mmu p {n} {va:x} {kind} {cpl} ?{value:x} {ad:x}"),
            }
            false
        }
    }
}
