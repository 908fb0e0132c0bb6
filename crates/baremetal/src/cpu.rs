//! The CPU's tables and traps: a flat GDT, an IDT whose exception stubs call [`trap`], and
//! the probes through which scenarios make user-address accesses that may fault.
//!
//! Interrupts stay off for the whole run (one CPU, no timer: the kernel is built without
//! preemption here); only exceptions arrive. A page fault raised by one of the probe
//! instructions is a fault of the program the scenario runs: it goes to the kernel's
//! `do_page_fault` through the hook the scenario installs, and returns to retry the access or,
//! when the kernel delivers a signal, to the probe's end with the fault flag set. Any other
//! exception is a kernel oops.

use core::arch::global_asm;
use core::cell::Cell;

/// What the CPU pushed and the stub saved, lowest address first (`pushad` order, then the
/// vector, the error code and the hardware frame).
#[repr(C)]
pub struct Frame {
    /// EDI.
    pub edi: u32,
    /// ESI.
    pub esi: u32,
    /// EBP.
    pub ebp: u32,
    /// ESP at the `pushad` (unused).
    pub esp: u32,
    /// EBX.
    pub ebx: u32,
    /// EDX.
    pub edx: u32,
    /// ECX.
    pub ecx: u32,
    /// EAX.
    pub eax: u32,
    /// The exception vector.
    pub vector: u32,
    /// The error code (0 for exceptions without one).
    pub error: u32,
    /// EIP of the faulting instruction.
    pub eip: u32,
    /// CS.
    pub cs: u32,
    /// EFLAGS.
    pub eflags: u32,
}

global_asm!(
    r#"
    .section .text.traps, "ax"
    .macro TRAP_NOERR n
    .global trap_stub_\n
trap_stub_\n:
    push 0
    push \n
    jmp trap_common
    .endm
    .macro TRAP_ERR n
    .global trap_stub_\n
trap_stub_\n:
    push \n
    jmp trap_common
    .endm
    TRAP_NOERR 0
    TRAP_NOERR 1
    TRAP_NOERR 2
    TRAP_NOERR 3
    TRAP_NOERR 4
    TRAP_NOERR 5
    TRAP_NOERR 6
    TRAP_NOERR 7
    TRAP_ERR 8
    TRAP_NOERR 9
    TRAP_ERR 10
    TRAP_ERR 11
    TRAP_ERR 12
    TRAP_ERR 13
    TRAP_ERR 14
    TRAP_NOERR 15
    TRAP_NOERR 16
    TRAP_ERR 17
    TRAP_NOERR 18
    TRAP_NOERR 19
trap_common:
    pushad
    push esp
    call trap
    add esp, 4
    popad
    add esp, 8
    iretd

    /* user_load(addr) -> u64: EAX = the value, EDX = 1 if the access faulted for good */
    .global user_load
user_load:
    mov ecx, [esp + 4]
    xor edx, edx
    .global user_load_insn
user_load_insn:
    mov eax, [ecx]
    .global user_load_done
user_load_done:
    ret

    /* user_store(addr, value) -> u32: 1 if the access faulted for good */
    .global user_store
user_store:
    mov ecx, [esp + 4]
    mov edx, [esp + 8]
    xor eax, eax
    .global user_store_insn
user_store_insn:
    mov [ecx], edx
    .global user_store_done
user_store_done:
    ret
"#
);

extern "C" {
    fn user_load(addr: u32) -> u64;
    fn user_store(addr: u32, value: u32) -> u32;
    fn user_load_insn();
    fn user_load_done();
    fn user_store_insn();
    fn user_store_done();
    fn trap_stub_0();
    fn trap_stub_1();
    fn trap_stub_2();
    fn trap_stub_3();
    fn trap_stub_4();
    fn trap_stub_5();
    fn trap_stub_6();
    fn trap_stub_7();
    fn trap_stub_8();
    fn trap_stub_9();
    fn trap_stub_10();
    fn trap_stub_11();
    fn trap_stub_12();
    fn trap_stub_13();
    fn trap_stub_14();
    fn trap_stub_15();
    fn trap_stub_16();
    fn trap_stub_17();
    fn trap_stub_18();
    fn trap_stub_19();
}

/// Flat segments: null, ring-0 code (0x08), ring-0 data (0x10).
static GDT: [u64; 3] = [0, 0x00cf_9a00_0000_ffff, 0x00cf_9200_0000_ffff];

#[repr(C, packed)]
struct TablePtr {
    limit: u16,
    base: u32,
}

/// One interrupt gate per vector.
static mut IDT: [u64; 32] = [0; 32];

fn gate(handler: unsafe extern "C" fn()) -> u64 {
    let h = handler as usize as u64;
    // present, DPL 0, 32-bit interrupt gate, selector 0x08
    (h & 0xffff) | (0x08 << 16) | (0x8e00u64 << 32) | ((h >> 16) << 48)
}

/// Load the GDT and the IDT and reload the segment registers.
pub fn init() {
    let stubs: [unsafe extern "C" fn(); 20] = [
        trap_stub_0,
        trap_stub_1,
        trap_stub_2,
        trap_stub_3,
        trap_stub_4,
        trap_stub_5,
        trap_stub_6,
        trap_stub_7,
        trap_stub_8,
        trap_stub_9,
        trap_stub_10,
        trap_stub_11,
        trap_stub_12,
        trap_stub_13,
        trap_stub_14,
        trap_stub_15,
        trap_stub_16,
        trap_stub_17,
        trap_stub_18,
        trap_stub_19,
    ];
    // SAFETY: boot, one CPU, interrupts off: nothing else uses the IDT yet.
    unsafe {
        let idt = &raw mut IDT;
        for (i, s) in stubs.iter().enumerate() {
            (*idt)[i] = gate(*s);
        }
        let gdtp = TablePtr {
            limit: (core::mem::size_of_val(&GDT) - 1) as u16,
            base: GDT.as_ptr() as u32,
        };
        let idtp = TablePtr {
            limit: (core::mem::size_of::<[u64; 32]>() - 1) as u16,
            base: idt as u32,
        };
        core::arch::asm!(
            "lgdt [{g}]",
            "lidt [{i}]",
            "mov ax, 0x10",
            "mov ds, ax",
            "mov es, ax",
            "mov ss, ax",
            "mov fs, ax",
            "mov gs, ax",
            "push 0x08",
            "lea eax, [2f]",
            "push eax",
            "retf",
            "2:",
            g = in(reg) &gdtp,
            i = in(reg) &idtp,
            out("eax") _,
        );
    }
}

/// What a user page fault's hook decided.
pub enum UserFault {
    /// The kernel handled it: retry the access.
    Retry,
    /// The kernel delivered a signal: the access fails.
    Signal,
}

/// The handler of page faults raised by the user-access probes: (address, error code).
pub type UserFaultHook = fn(u32, u32) -> UserFault;
/// The handler of any other exception (a kernel oops); never returns.
pub type OopsHook = fn(&Frame, u32) -> !;

struct Hooks {
    raw: Cell<Option<RawTrapHook>>,
    user_fault: Cell<Option<UserFaultHook>>,
    oops: Cell<Option<OopsHook>>,
    /// Faults of the current probe access, to stop a fault loop.
    tries: Cell<u32>,
}

// SAFETY: one CPU, and the hooks change only outside trap handling.
unsafe impl Sync for Hooks {}

static HOOKS: Hooks = Hooks {
    raw: Cell::new(None),
    user_fault: Cell::new(None),
    oops: Cell::new(None),
    tries: Cell::new(0),
};

/// A handler that sees every exception first and returns true if it dealt with it (it may
/// change the frame, e.g. to resume after a probe that faulted).
pub type RawTrapHook = fn(&mut Frame) -> bool;

/// Install (or remove) the handler that sees every exception first.
pub fn set_raw_hook(hook: Option<RawTrapHook>) {
    HOOKS.raw.set(hook);
}

/// Install the user page-fault handler and the oops handler.
pub fn set_hooks(user_fault: UserFaultHook, oops: OopsHook) {
    HOOKS.user_fault.set(Some(user_fault));
    HOOKS.oops.set(Some(oops));
}

/// Faults of one access before it is declared a fault loop (the simulator's bound).
const MAX_FAULT_RETRIES: u32 = 16;

/// CR2: the linear address of the last page fault.
pub fn cr2() -> u32 {
    let v: u32;
    // SAFETY: reading CR2 has no side effect.
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) v, options(nomem, nostack)) };
    v
}

#[no_mangle]
extern "C" fn trap(frame: &mut Frame) {
    if let Some(raw) = HOOKS.raw.get() {
        if raw(frame) {
            return;
        }
    }
    let probe =
        frame.eip == user_load_insn as usize as u32 || frame.eip == user_store_insn as usize as u32;
    if frame.vector == 14 && probe {
        let addr = cr2();
        let tries = HOOKS.tries.get() + 1;
        HOOKS.tries.set(tries);
        if tries > MAX_FAULT_RETRIES {
            crate::println!(
                "BUG: fault loop: {tries} faults at {addr:#010x} (error code {:#x}) without progress",
                frame.error
            );
            crate::serial::exit(crate::serial::EXIT_FAIL);
        }
        let hook = HOOKS
            .user_fault
            .get()
            .expect("a user fault before the hooks");
        match hook(addr, frame.error) {
            UserFault::Retry => {}
            UserFault::Signal => {
                if frame.eip == user_load_insn as usize as u32 {
                    frame.eip = user_load_done as usize as u32;
                    frame.edx = 1;
                } else {
                    frame.eip = user_store_done as usize as u32;
                    frame.eax = 1;
                }
            }
        }
        return;
    }
    let addr = if frame.vector == 14 { cr2() } else { 0 };
    match HOOKS.oops.get() {
        Some(oops) => oops(frame, addr),
        None => {
            crate::println!(
                "BUG: exception {} (error code {:#x}) at eip {:#010x}, cr2 {addr:#010x}, before the kernel booted",
                frame.vector,
                frame.error,
                frame.eip
            );
            crate::serial::exit(crate::serial::EXIT_FAIL);
        }
    }
}

/// Load 4 bytes from a user address with the current CR3, as the program would: a page fault
/// goes to the kernel; `None` if the kernel delivered a signal.
pub fn load_u32(addr: u32) -> Option<u32> {
    HOOKS.tries.set(0);
    // SAFETY: the probe's faults are caught by `trap`; it reads at a user address, which the
    // kernel maps or refuses through its fault handler.
    let r = unsafe { user_load(addr) };
    ((r >> 32) == 0).then_some(r as u32)
}

/// Store 4 bytes at a user address (see [`load_u32`]); `false` if the kernel delivered a
/// signal.
pub fn store_u32(addr: u32, value: u32) -> bool {
    HOOKS.tries.set(0);
    // SAFETY: as `load_u32`; with CR0.WP the store honours read-only ptes (copy on write).
    unsafe { user_store(addr, value) == 0 }
}

/// Read the time-stamp counter.
pub fn rdtsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: rdtsc has no side effect.
    unsafe { core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    ((hi as u64) << 32) | lo as u64
}
