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
    TRAP_NOERR 128
trap_common:
    pushad
    push esp
    call trap
    add esp, 4
    popad
    add esp, 8
    iretd

    /* enter_user(regs) -> u64: run the program in ring 3 until it leaves through int 0x80,
       a signal or an exception (leave_user); EAX = how it left, EDX = its value */
    .global enter_user
enter_user:
    push ebp
    push ebx
    push esi
    push edi
    mov [user_saved_esp], esp
    mov eax, [esp + 20]
    push 0x23
    push dword ptr [eax + 16]
    push 0x2
    push 0x1b
    push dword ptr [eax]
    mov ecx, [eax + 4]
    mov edx, [eax + 8]
    mov ebx, [eax + 12]
    mov esi, [eax + 20]
    mov edi, [eax + 24]
    xor eax, eax
    xor ebp, ebp
    iretd

    /* leave_user(how, value): back out of enter_user (from a trap on the ring-0 stack) */
    .global leave_user
leave_user:
    mov eax, [esp + 4]
    mov edx, [esp + 8]
    mov esp, [user_saved_esp]
    pop edi
    pop esi
    pop ebx
    pop ebp
    ret

    /* The user program, copied into a page of the process: ECX = first address, EDX = end,
       EBX = stride, ESI = 0 to read (EAX = the XOR of the words read) or 1 to write each
       word's own address; then int 0x80. Position-independent. */
    .global user_prog_start
user_prog_start:
    xor eax, eax
5:
    test esi, esi
    jnz 6f
    xor eax, [ecx]
    jmp 7f
6:
    mov [ecx], ecx
7:
    add ecx, ebx
    cmp ecx, edx
    jb 5b
    int 0x80
    .global user_prog_end
user_prog_end:

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
    fn enter_user(regs: *const UserRegs) -> u64;
    fn leave_user(how: u32, value: u32) -> !;
    fn user_prog_start();
    fn user_prog_end();
    fn trap_stub_128();
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

/// Flat segments: null, ring-0 code (0x08), ring-0 data (0x10), ring-3 code (0x1b), ring-3
/// data (0x23), and the TSS (0x28, filled in by `init`).
static mut GDT: [u64; 6] = [
    0,
    0x00cf_9a00_0000_ffff,
    0x00cf_9200_0000_ffff,
    0x00cf_fa00_0000_ffff,
    0x00cf_f200_0000_ffff,
    0,
];

/// The 32-bit TSS: only SS0:ESP0 (the stack a trap from ring 3 switches to) is used.
#[repr(C, align(16))]
struct Tss([u32; 26]);

static mut TSS: Tss = Tss([0; 26]);

/// The ring-0 stack for traps from ring 3.
#[repr(C, align(16))]
struct TrapStack([u8; 64 << 10]);

static mut TRAP_STACK: TrapStack = TrapStack([0; 64 << 10]);

/// The kernel stack pointer `enter_user` saved (`leave_user` returns there).
#[no_mangle]
#[allow(non_upper_case_globals)]
static mut user_saved_esp: u32 = 0;

#[repr(C, packed)]
struct TablePtr {
    limit: u16,
    base: u32,
}

/// One interrupt gate per vector.
static mut IDT: [u64; 129] = [0; 129];

fn gate(handler: unsafe extern "C" fn(), dpl: u64) -> u64 {
    let h = handler as usize as u64;
    // present, DPL, 32-bit interrupt gate, selector 0x08
    (h & 0xffff) | (0x08 << 16) | ((0x8e00u64 | dpl << 13) << 32) | ((h >> 16) << 48)
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
            (*idt)[i] = gate(*s, 0);
        }
        // int 0x80 from ring 3: the user program's way back
        (*idt)[0x80] = gate(trap_stub_128, 3);
        let tss = &raw mut TSS;
        (*tss).0[1] = (&raw mut TRAP_STACK) as u32 + (64 << 10); // ESP0
        (*tss).0[2] = 0x10; // SS0
        (*tss).0[25] = 104 << 16; // no I/O bitmap
        let (base, limit) = (tss as u64, 103u64);
        let gdt = &raw mut GDT;
        (*gdt)[5] = (limit & 0xffff) | (base & 0xff_ffff) << 16 | 0x89 << 40 | (base >> 24) << 56;
        let gdtp = TablePtr {
            limit: (core::mem::size_of::<[u64; 6]>() - 1) as u16,
            base: gdt as u32,
        };
        let idtp = TablePtr {
            limit: (core::mem::size_of::<[u64; 129]>() - 1) as u16,
            base: idt as u32,
        };
        core::arch::asm!(
            "lgdt [{g}]",
            "lidt [{i}]",
            // the data segments ring 3 can use too (a DPL-3 flat segment serves ring 0 as
            // well, and survives the iret to ring 3); SS must match the CPL
            "mov ax, 0x23",
            "mov ds, ax",
            "mov es, ax",
            "mov fs, ax",
            "mov gs, ax",
            "mov ax, 0x10",
            "mov ss, ax",
            "push 0x08",
            "lea eax, [2f]",
            "push eax",
            "retf",
            "2:",
            "mov ax, 0x28",
            "ltr ax",
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
    /// The address of the ring-3 program's last fault.
    last_fault: Cell<u32>,
}

// SAFETY: one CPU, and the hooks change only outside trap handling.
unsafe impl Sync for Hooks {}

static HOOKS: Hooks = Hooks {
    raw: Cell::new(None),
    user_fault: Cell::new(None),
    oops: Cell::new(None),
    tries: Cell::new(0),
    last_fault: Cell::new(u32::MAX),
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
    if frame.cs & 3 == 3 {
        user_trap(frame);
        return;
    }
    let probe =
        frame.eip == user_load_insn as usize as u32 || frame.eip == user_store_insn as usize as u32;
    if frame.vector == 14 && probe {
        match program_fault(frame, cr2()) {
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

/// A page fault of the program's access at `addr`: counted against a fault loop (which ends
/// the run), then given to the kernel through the user-fault hook.
fn program_fault(frame: &Frame, addr: u32) -> UserFault {
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
    hook(addr, frame.error)
}

/// A trap from the ring-3 program: a page fault goes to the kernel (and back to the program,
/// or out with the signal); int 0x80 ends the program; anything else ends it too.
fn user_trap(frame: &mut Frame) {
    // SAFETY (for every leave_user below): a trap from ring 3 runs on the TSS's stack, above
    // nothing the kernel needs: leaving abandons only this trap's frames.
    match frame.vector {
        14 => {
            let addr = cr2();
            match program_fault(frame, addr) {
                UserFault::Retry => {
                    // the next access starts a new count once this one succeeds; a program
                    // that faults on a new address each time is progress
                    if HOOKS.last_fault.get() != addr {
                        HOOKS.last_fault.set(addr);
                        HOOKS.tries.set(1);
                    }
                }
                UserFault::Signal => unsafe { leave_user(LEFT_SIGNAL, addr) },
            }
        }
        0x80 => unsafe { leave_user(LEFT_DONE, frame.eax) },
        v => unsafe { leave_user(LEFT_EXCEPTION, v) },
    }
}

const LEFT_DONE: u32 = 0;
const LEFT_SIGNAL: u32 = 1;
const LEFT_EXCEPTION: u32 = 2;

/// The registers a ring-3 program starts with (`enter_user` reads them at these offsets).
#[repr(C)]
pub struct UserRegs {
    /// Where it starts (a user address of the program's code).
    pub eip: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
    /// EBX.
    pub ebx: u32,
    /// ESP (the program above uses no stack).
    pub esp: u32,
    /// ESI.
    pub esi: u32,
    /// EDI.
    pub edi: u32,
}

/// How a ring-3 program ended.
#[derive(Debug, PartialEq, Eq)]
pub enum UserExit {
    /// It called int 0x80 with this EAX.
    Done(u32),
    /// The kernel delivered a signal for its fault at this address.
    Signal(u32),
    /// It raised this exception.
    Exception(u32),
}

/// Run a program in ring 3 with the current CR3 until it ends (its faults go to the kernel).
pub fn run_user(regs: &UserRegs) -> UserExit {
    HOOKS.tries.set(0);
    HOOKS.last_fault.set(u32::MAX);
    // SAFETY: the program runs at CPL 3 with the process's page tables: it can touch only
    // what they map for user mode, and every way out comes back here through leave_user.
    let r = unsafe { enter_user(regs) };
    let (how, value) = (r as u32, (r >> 32) as u32);
    match how {
        LEFT_DONE => UserExit::Done(value),
        LEFT_SIGNAL => UserExit::Signal(value),
        _ => UserExit::Exception(value),
    }
}

/// The machine code of the user program (see the assembly above).
pub fn user_program() -> &'static [u8] {
    let start = user_prog_start as usize;
    let end = user_prog_end as usize;
    // SAFETY: the bytes between the two labels are the program's, in the image's text.
    unsafe { core::slice::from_raw_parts(start as *const u8, end - start) }
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
