//! The cycle cost model: how many CPU cycles each simulated event is charged.
//!
//! Every event the simulated machine performs (a memory access, a page-walk level, an `invlpg`,
//! a CR3 load, an IPI, zeroing or copying a page, a lock operation, a syscall or fault entry, a
//! context switch, ...) advances the clock of the CPU that performs it by a fixed number of
//! cycles taken from a [`CostModel`]. The numbers are deterministic, so two runs with the same
//! model and seed charge exactly the same cycles.
//!
//! Two sourced tables are built in ([`CostModel::pentium4_xeon_2002`], the default, and
//! [`CostModel::modern_core`]); any subset of fields can be overridden from a TOML file with
//! [`CostModel::from_file`] / [`CostModel::from_toml_str`]:
//!
//! ```toml
//! base = "pentium4-xeon-2002"   # or "modern-core"; optional, defaults to the 2002 table
//! invlpg = 300
//! ipi_receive = 2500
//! ```
//!
//! Deliberately not modelled: caches beyond one average access cost, out-of-order overlap of
//! independent events, bus contention. See `docs/cost-model.md` for the tables and their sources.

mod file;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use file::CostModelError;

/// Bytes in a small page: the unit of [`CostModel::page_zero`] and [`CostModel::page_copy`].
pub const PAGE_BYTES: u64 = highpte_arch::PAGE_SIZE;

/// Cycles charged per simulated event, plus the clock rate that turns cycles into time.
///
/// All fields are whole cycles except the two `*_per_byte_x100` fields, which are fixed point in
/// hundredths of a cycle per byte. Deserializing a `CostModel` directly fills missing fields from
/// [`CostModel::default`] (the 2002 table); use [`CostModel::from_toml_str`] to pick another base.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostModel {
    /// A user or kernel load/store that hits the TLB: the cache-averaged latency over L1, L2 and
    /// memory (a blend, not a cache simulation). Charged once per simulated access.
    pub mem_access: u64,
    /// Page-walk cost per paging-structure level read after a TLB miss (a 2-level walk costs
    /// twice this; PAE walks read as many levels as the MMU model actually reads).
    pub tlb_miss_per_level: u64,
    /// One `invlpg` instruction (serializing; invalidates one TLB entry, global or not).
    pub invlpg: u64,
    /// One `mov %reg, %cr3`: the instruction itself, which flushes all non-global TLB entries.
    /// The later refill is not included: it is charged as TLB misses when it happens.
    pub cr3_load: u64,
    /// A full TLB flush including global pages (the CR4.PGE off/on toggle of `__flush_tlb_all`).
    /// Refill is charged later as TLB misses.
    pub tlb_flush_full: u64,
    /// Sending one IPI, charged to the sender: writing the APIC ICR and waiting for the delivery
    /// status to go idle.
    pub ipi_send: u64,
    /// Receiving one IPI, charged to the target: interrupt entry, the handler's fixed overhead
    /// (ack, EOI) and exit (`iret`). The handler's own work (e.g. `invlpg`s) is charged apart.
    pub ipi_receive: u64,
    /// Zeroing memory, in hundredths of a cycle per byte (fixed point: 100 = 1 cycle/byte).
    pub page_zero_per_byte_x100: u64,
    /// Copying memory, in hundredths of a cycle per byte copied (read and write together).
    pub page_copy_per_byte_x100: u64,
    /// Taking an uncontended spinlock: one locked read-modify-write on a line already owned.
    pub spin_lock_uncontended: u64,
    /// One iteration of the contended spin loop: `pause` plus re-reading the lock word.
    pub spin_lock_per_spin: u64,
    /// Releasing a spinlock (a plain store on x86).
    pub spin_unlock: u64,
    /// System call entry and exit (`int 0x80`/`iret` in 2002, `syscall`/`sysret` today), with
    /// the kernel's register save/restore; the system call's own work is charged apart.
    pub syscall_entry_exit: u64,
    /// Exception entry and exit (`iret`), e.g. a page fault, with register save/restore and the
    /// CR2 read; the handler's own work is charged apart.
    pub fault_entry_exit: u64,
    /// A context switch in the kernel (`schedule()` picking a task and `switch_to`), excluding
    /// the CR3 load, which is charged as [`CostModel::cr3_load`] when the mm changes.
    pub context_switch: u64,
    /// Writing the fixmap slot pte of a `kmap_atomic` (the store and its address arithmetic);
    /// the `invlpg` on unmap or remap is charged apart.
    pub kmap_atomic_pte_write: u64,
    /// A `preempt_disable()` / `preempt_enable()` pair (increment, decrement, need_resched test).
    pub preempt_toggle: u64,
    /// One locked read-modify-write (`lock inc`, `lock cmpxchg`, `xchg` with memory).
    pub atomic_op: u64,
    /// A timer interrupt: entry, the tick's bookkeeping (`do_timer`, scheduler tick) and exit.
    pub timer_tick: u64,
    /// Cycles per second of the simulated CPU, to turn cycles into simulated time. Must be > 0.
    pub clock_hz: u64,
}

impl Default for CostModel {
    /// The seed's era: [`CostModel::pentium4_xeon_2002`].
    fn default() -> Self {
        Self::pentium4_xeon_2002()
    }
}

impl CostModel {
    /// The names accepted by [`CostModel::named`] and by `base = "..."` in a cost file.
    pub const NAMES: &'static [&'static str] = &["pentium4-xeon-2002", "modern-core"];

    /// The field names a cost file may set (besides `base`), in declaration order.
    pub const FIELDS: &'static [&'static str] = &[
        "mem_access",
        "tlb_miss_per_level",
        "invlpg",
        "cr3_load",
        "tlb_flush_full",
        "ipi_send",
        "ipi_receive",
        "page_zero_per_byte_x100",
        "page_copy_per_byte_x100",
        "spin_lock_uncontended",
        "spin_lock_per_spin",
        "spin_unlock",
        "syscall_entry_exit",
        "fault_entry_exit",
        "context_switch",
        "kmap_atomic_pte_write",
        "preempt_toggle",
        "atomic_op",
        "timer_tick",
        "clock_hz",
    ];

    /// A 2.0 GHz NetBurst (Pentium 4) Xeon of 2002, the machine of the HIGHPTE discussions.
    ///
    /// NetBurst has a ~20-stage pipeline with over a hundred µops in flight, so serializing
    /// instructions (`mov cr3`, `mov cr4`, `invlpg`), locked operations and interrupt/`iret`
    /// transitions are all very expensive, while memory is ~100-150 ns away behind a 512 KB L2.
    /// Most numbers are estimates consistent with the published figures cited on each line;
    /// where no published figure is cited, the comment says "estimate".
    pub fn pentium4_xeon_2002() -> Self {
        CostModel {
            // Estimate: ~95% L1 hits at 2 cycles, ~4% L2 at ~18, ~1% DRAM at ~250 (≈125 ns).
            mem_access: 5,
            // Estimate: walker reads of PDE/PTE mostly hit L2 (~18 cycles) plus walker overhead.
            tlb_miss_per_level: 25,
            // Estimate: INVLPG is serializing (Intel SDM vol. 3, "Serializing Instructions"),
            // so it drains NetBurst's deep pipeline; hundreds of cycles.
            invlpg: 400,
            // Estimate: MOV to CR3 is serializing and flushes the non-global TLB entries;
            // "hundreds of cycles" before any refill (refill charged as TLB misses).
            cr3_load: 500,
            // Estimate: __flush_tlb_all with PGE is two serializing CR4 writes plus a CR4 read,
            // and flushes global entries too; about twice a CR3 load.
            tlb_flush_full: 1000,
            // Estimate: ICR write to the xAPIC (messages over the front-side bus) and polling
            // the delivery-status bit; ~0.5 µs, so a round trip lands in the 1-2 µs range.
            ipi_send: 1000,
            // Estimate: interrupt gate entry + SAVE_ALL + ack/EOI + iret on NetBurst, ~1 µs;
            // with ipi_send a round trip ≈ 1.5 µs, in the 1-2 µs range measured on LKML.
            ipi_receive: 2000,
            // Estimate: 400 MT/s FSB = 3.2 GB/s peak, ~2 GB/s sustained `rep stosl`
            // (STREAM-class figures of the time) = 1 byte/cycle at 2 GHz.
            page_zero_per_byte_x100: 100,
            // Estimate: copy moves twice the bytes over the same bus, ~1.3 GB/s of payload.
            page_copy_per_byte_x100: 150,
            // 2.4/2.5 i386 spin_lock is one `lock; decb` (include/asm-i386/spinlock.h), so the
            // same as atomic_op.
            spin_lock_uncontended: 120,
            // Estimate: `rep; nop` (pause) plus the `cmpb` re-read of the lock word in L1.
            spin_lock_per_spin: 40,
            // i386 spin_unlock is a plain `movb $1` store, no lock prefix (asm-i386/spinlock.h).
            spin_unlock: 4,
            // Estimate: int 0x80 + iret was so slow on P4 that a 2 GHz P4 lost to an 850 MHz
            // PIII on syscalls (LKML, "Intel P6 vs P7 system call performance", Dec 2002),
            // which led to sysenter in 2.5.53; PIII ≈ 300 cycles, so P4 ≈ 1000 cycles.
            syscall_entry_exit: 1000,
            // Estimate: like int 0x80 plus the error code and CR2 read.
            fault_entry_exit: 1100,
            // Estimate: schedule() + switch_to in 2.4/2.5 without the CR3 load; lmbench lat_ctx
            // on P4-era machines reported a few µs including cache and TLB refill.
            context_switch: 2500,
            // Estimate: one (PAE: two) 32-bit pte store plus the slot address arithmetic.
            kmap_atomic_pte_write: 10,
            // Estimate: incl/decl of thread_info->preempt_count and a need_resched test in L1.
            preempt_toggle: 6,
            // Locked RMW on NetBurst: ~100+ cycles (Agner Fog's instruction tables; the Intel
            // optimization manual notes a locked op waits for the store buffer to drain).
            atomic_op: 120,
            // Estimate: interrupt entry/exit (~1000) + do_timer/update_process_times/
            // scheduler_tick (~3000); ~2 µs at HZ=100/1000.
            timer_tick: 4000,
            // 2.0 GHz: Xeon DP "Prestonia" (Feb 2002) and Xeon MP "Gallatin" (Nov 2002).
            clock_hz: 2_000_000_000,
        }
    }

    /// A current x86-64 core at 3 GHz with the usual speculation mitigations enabled.
    ///
    /// Shorter pipelines, paging-structure caches and fast locked operations make the
    /// kernel-entry and TLB events far cheaper in cycles; memory latency in cycles is about the
    /// same as in 2002 (~100 ns), but caches are much larger. Most numbers are estimates
    /// consistent with the published figures cited on each line.
    pub fn modern_core() -> Self {
        CostModel {
            // Estimate: ~97% L1 at 4-5 cycles, ~2.5% L2/L3 at ~20, ~0.5% DRAM at ~300 (100 ns).
            mem_access: 6,
            // Estimate: paging-structure caches skip upper levels; PTE reads hit L1/L2 (5-14).
            tlb_miss_per_level: 10,
            // ~100-200 cycles per invlpg (figures behind the kernel's
            // tlb_single_page_flush_ceiling, Documentation/arch/x86/tlb.rst); estimate.
            invlpg: 150,
            // Estimate: CR3 write without PCID (the simulated i386 has none) flushes the
            // non-global TLB; a few hundred cycles before refill.
            cr3_load: 250,
            // Estimate: two serializing CR4 writes; global flushes have "become more
            // expensive relative to single-page flushes" (Documentation/arch/x86/tlb.rst).
            tlb_flush_full: 600,
            // Estimate: x2APIC ICR write (wrmsr) on bare metal, ~200 ns.
            ipi_send: 600,
            // Estimate: entry with mitigations + handler overhead + exit, ~0.8 µs; round trip
            // with ipi_send ≈ 1 µs, in the 1-2 µs range of LKML TLB-shootdown measurements.
            ipi_receive: 2400,
            // Estimate: `rep stosb` (ERMS) clear_page ~20 GB/s = 6.7 bytes/cycle at 3 GHz.
            page_zero_per_byte_x100: 15,
            // memcpy 13-14 GB/s measured on this project's Zen 4 host (REFERENCE.md) =
            // ~4.5 bytes/cycle at 3 GHz.
            page_copy_per_byte_x100: 22,
            // Queued spinlock fast path is one `lock cmpxchg`: same as atomic_op.
            spin_lock_uncontended: 20,
            // PAUSE takes up to ~140 cycles on Skylake and later Intel cores (Intel 64 and
            // IA-32 Optimization Reference Manual); AMD's is much shorter, override for it.
            spin_lock_per_spin: 150,
            // Queued spinlock unlock is a plain release store.
            spin_unlock: 2,
            // ~100 ns with KPTI/retpoline-era mitigations (LWN coverage of KPTI costs); estimate.
            syscall_entry_exit: 300,
            // Estimate: exception entry/exit with mitigations, ~150 ns.
            fault_entry_exit: 450,
            // Estimate: schedule() + __switch_to without the CR3 load, ~0.5 µs.
            context_switch: 1500,
            // Estimate: one pte store plus address arithmetic.
            kmap_atomic_pte_write: 5,
            // Per-CPU preempt_count: one `incl %gs:` and one `decl %gs:` + jump.
            preempt_toggle: 2,
            // Locked RMW ~18-20 cycles on Skylake/Zen (Agner Fog's instruction tables).
            atomic_op: 20,
            // Estimate: interrupt entry/exit + tick bookkeeping, ~1 µs.
            timer_tick: 3000,
            // A ~3 GHz core.
            clock_hz: 3_000_000_000,
        }
    }

    /// The built-in table called `name` (one of [`CostModel::NAMES`]), if any.
    pub fn named(name: &str) -> Option<CostModel> {
        match name {
            "pentium4-xeon-2002" => Some(Self::pentium4_xeon_2002()),
            "modern-core" => Some(Self::modern_core()),
            _ => None,
        }
    }

    /// Cycles to zero `bytes` bytes, rounded to the nearest cycle.
    pub fn zero_cycles(&self, bytes: u64) -> u64 {
        per_byte(self.page_zero_per_byte_x100, bytes)
    }

    /// Cycles to copy `bytes` bytes, rounded to the nearest cycle.
    pub fn copy_cycles(&self, bytes: u64) -> u64 {
        per_byte(self.page_copy_per_byte_x100, bytes)
    }

    /// Cycles to clear one 4096-byte page.
    pub fn page_zero(&self) -> u64 {
        self.zero_cycles(PAGE_BYTES)
    }

    /// Cycles to copy one 4096-byte page.
    pub fn page_copy(&self) -> u64 {
        self.copy_cycles(PAGE_BYTES)
    }

    /// Simulated seconds that `c` cycles take at [`CostModel::clock_hz`].
    pub fn cycles_to_seconds(&self, c: u64) -> f64 {
        c as f64 / self.clock_hz as f64
    }

    /// Cycles charged for one `event`. [`CostEvent::PageZero`] and [`CostEvent::PageCopy`] are
    /// per 4096-byte page ([`CostModel::page_zero`], [`CostModel::page_copy`]);
    /// [`CostEvent::TlbMissLevel`] is per paging-structure level read.
    pub fn cycles(&self, event: CostEvent) -> u64 {
        match event {
            CostEvent::MemAccess => self.mem_access,
            CostEvent::TlbMissLevel => self.tlb_miss_per_level,
            CostEvent::Invlpg => self.invlpg,
            CostEvent::Cr3Load => self.cr3_load,
            CostEvent::TlbFlushFull => self.tlb_flush_full,
            CostEvent::IpiSend => self.ipi_send,
            CostEvent::IpiReceive => self.ipi_receive,
            CostEvent::PageZero => self.page_zero(),
            CostEvent::PageCopy => self.page_copy(),
            CostEvent::SpinLockUncontended => self.spin_lock_uncontended,
            CostEvent::SpinLockSpin => self.spin_lock_per_spin,
            CostEvent::SpinUnlock => self.spin_unlock,
            CostEvent::SyscallEntryExit => self.syscall_entry_exit,
            CostEvent::FaultEntryExit => self.fault_entry_exit,
            CostEvent::ContextSwitch => self.context_switch,
            CostEvent::KmapAtomicPteWrite => self.kmap_atomic_pte_write,
            CostEvent::PreemptToggle => self.preempt_toggle,
            CostEvent::AtomicOp => self.atomic_op,
            CostEvent::TimerTick => self.timer_tick,
        }
    }
}

/// `x100` hundredths of a cycle per byte times `bytes`, rounded half up; saturates.
fn per_byte(x100: u64, bytes: u64) -> u64 {
    x100.saturating_mul(bytes).saturating_add(50) / 100
}

/// A kind of charged event, for counting events in reports. [`CostModel::cycles`] gives its
/// cost; [`CostEvent::name`] its report name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CostEvent {
    /// A load or store that hits the TLB ([`CostModel::mem_access`]).
    MemAccess,
    /// One paging-structure level read by a page walk ([`CostModel::tlb_miss_per_level`]).
    TlbMissLevel,
    /// One `invlpg` ([`CostModel::invlpg`]).
    Invlpg,
    /// One CR3 load ([`CostModel::cr3_load`]).
    Cr3Load,
    /// A full TLB flush including global pages ([`CostModel::tlb_flush_full`]).
    TlbFlushFull,
    /// An IPI sent ([`CostModel::ipi_send`]).
    IpiSend,
    /// An IPI received and handled ([`CostModel::ipi_receive`]).
    IpiReceive,
    /// One 4096-byte page zeroed ([`CostModel::page_zero`]).
    PageZero,
    /// One 4096-byte page copied ([`CostModel::page_copy`]).
    PageCopy,
    /// An uncontended spinlock acquisition ([`CostModel::spin_lock_uncontended`]).
    SpinLockUncontended,
    /// One iteration of a contended spin loop ([`CostModel::spin_lock_per_spin`]).
    SpinLockSpin,
    /// A spinlock release ([`CostModel::spin_unlock`]).
    SpinUnlock,
    /// A system call entry and exit ([`CostModel::syscall_entry_exit`]).
    SyscallEntryExit,
    /// An exception entry and exit ([`CostModel::fault_entry_exit`]).
    FaultEntryExit,
    /// A context switch, CR3 load excluded ([`CostModel::context_switch`]).
    ContextSwitch,
    /// A `kmap_atomic` fixmap pte write ([`CostModel::kmap_atomic_pte_write`]).
    KmapAtomicPteWrite,
    /// A preempt_disable/enable pair ([`CostModel::preempt_toggle`]).
    PreemptToggle,
    /// A locked read-modify-write ([`CostModel::atomic_op`]).
    AtomicOp,
    /// A timer interrupt ([`CostModel::timer_tick`]).
    TimerTick,
}

impl CostEvent {
    /// Every event, in a fixed order (for report tables).
    pub const ALL: [CostEvent; 19] = [
        CostEvent::MemAccess,
        CostEvent::TlbMissLevel,
        CostEvent::Invlpg,
        CostEvent::Cr3Load,
        CostEvent::TlbFlushFull,
        CostEvent::IpiSend,
        CostEvent::IpiReceive,
        CostEvent::PageZero,
        CostEvent::PageCopy,
        CostEvent::SpinLockUncontended,
        CostEvent::SpinLockSpin,
        CostEvent::SpinUnlock,
        CostEvent::SyscallEntryExit,
        CostEvent::FaultEntryExit,
        CostEvent::ContextSwitch,
        CostEvent::KmapAtomicPteWrite,
        CostEvent::PreemptToggle,
        CostEvent::AtomicOp,
        CostEvent::TimerTick,
    ];

    /// The event's stable report name: its [`CostModel`] field name, except `page_zero` and
    /// `page_copy`, which count whole pages.
    pub fn name(self) -> &'static str {
        match self {
            CostEvent::MemAccess => "mem_access",
            CostEvent::TlbMissLevel => "tlb_miss_per_level",
            CostEvent::Invlpg => "invlpg",
            CostEvent::Cr3Load => "cr3_load",
            CostEvent::TlbFlushFull => "tlb_flush_full",
            CostEvent::IpiSend => "ipi_send",
            CostEvent::IpiReceive => "ipi_receive",
            CostEvent::PageZero => "page_zero",
            CostEvent::PageCopy => "page_copy",
            CostEvent::SpinLockUncontended => "spin_lock_uncontended",
            CostEvent::SpinLockSpin => "spin_lock_per_spin",
            CostEvent::SpinUnlock => "spin_unlock",
            CostEvent::SyscallEntryExit => "syscall_entry_exit",
            CostEvent::FaultEntryExit => "fault_entry_exit",
            CostEvent::ContextSwitch => "context_switch",
            CostEvent::KmapAtomicPteWrite => "kmap_atomic_pte_write",
            CostEvent::PreemptToggle => "preempt_toggle",
            CostEvent::AtomicOp => "atomic_op",
            CostEvent::TimerTick => "timer_tick",
        }
    }
}

impl fmt::Display for CostEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn default_is_the_2002_table() {
        assert_eq!(CostModel::default(), CostModel::pentium4_xeon_2002());
    }

    #[test]
    fn key_numbers_of_the_2002_table() {
        let m = CostModel::pentium4_xeon_2002();
        assert_eq!(m.clock_hz, 2_000_000_000);
        assert_eq!(m.mem_access, 5);
        assert_eq!(m.tlb_miss_per_level, 25);
        assert_eq!(m.invlpg, 400);
        assert_eq!(m.cr3_load, 500);
        assert_eq!(m.tlb_flush_full, 1000);
        assert_eq!(m.ipi_send + m.ipi_receive, 3000); // 1.5 µs
        assert_eq!(m.atomic_op, 120);
        assert_eq!(m.spin_lock_uncontended, m.atomic_op);
        assert_eq!(m.syscall_entry_exit, 1000);
        assert_eq!(m.fault_entry_exit, 1100);
        assert_eq!(m.page_zero(), 4096);
        assert_eq!(m.page_copy(), 6144);
    }

    #[test]
    fn key_numbers_of_the_modern_table() {
        let m = CostModel::modern_core();
        assert_eq!(m.clock_hz, 3_000_000_000);
        assert_eq!(m.invlpg, 150);
        assert_eq!(m.atomic_op, 20);
        assert_eq!(m.syscall_entry_exit, 300); // 100 ns
        assert_eq!(m.ipi_send + m.ipi_receive, 3000); // 1 µs
        assert_eq!(m.spin_lock_per_spin, 150);
        assert_eq!(m.page_zero(), 614); // 4096 * 0.15 = 614.4
        assert_eq!(m.page_copy(), 901); // 4096 * 0.22 = 901.12
    }

    #[test]
    fn ranges_the_tables_promise() {
        let p4 = CostModel::pentium4_xeon_2002();
        let now = CostModel::modern_core();
        for m in [&p4, &now] {
            let rtt = m.cycles_to_seconds(m.ipi_send + m.ipi_receive);
            assert!((1e-6..=2e-6).contains(&rtt), "IPI round trip {rtt}");
        }
        let syscall_ns = now.cycles_to_seconds(now.syscall_entry_exit) * 1e9;
        assert!((syscall_ns - 100.0).abs() < 1e-9);
        // memcpy >= 10 GB/s on the modern core.
        let copy_gbs = 4096.0 / now.cycles_to_seconds(now.page_copy()) / 1e9;
        assert!(copy_gbs >= 10.0, "{copy_gbs}");
    }

    #[test]
    fn names_and_named() {
        assert_eq!(CostModel::NAMES, ["pentium4-xeon-2002", "modern-core"]);
        assert_eq!(
            CostModel::named("pentium4-xeon-2002"),
            Some(CostModel::pentium4_xeon_2002())
        );
        assert_eq!(
            CostModel::named("modern-core"),
            Some(CostModel::modern_core())
        );
        assert_eq!(CostModel::named("486"), None);
    }

    #[test]
    fn fields_lists_every_serialized_field() {
        let text = toml::to_string(&CostModel::default()).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let keys: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut fields = CostModel::FIELDS.to_vec();
        fields.sort_unstable();
        let mut keys = keys.clone();
        keys.sort_unstable();
        assert_eq!(keys, fields);
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(CostModel::from_toml_str("").unwrap(), CostModel::default());
    }

    #[test]
    fn override_changes_only_named_fields() {
        let m = CostModel::from_toml_str("# comment\ninvlpg = 321\nclock_hz = 2_400_000_000\n")
            .unwrap();
        let expected = CostModel {
            invlpg: 321,
            clock_hz: 2_400_000_000,
            ..CostModel::pentium4_xeon_2002()
        };
        assert_eq!(m, expected);
    }

    #[test]
    fn override_on_the_modern_base() {
        let m = CostModel::from_toml_str("atomic_op = 25\nbase = \"modern-core\"\n").unwrap();
        assert_eq!(
            m,
            CostModel {
                atomic_op: 25,
                ..CostModel::modern_core()
            }
        );
    }

    #[test]
    fn serialized_model_round_trips() {
        let m = CostModel::modern_core();
        let text = toml::to_string(&m).unwrap();
        assert_eq!(CostModel::from_toml_str(&text).unwrap(), m);
        let direct: CostModel = toml::from_str(&text).unwrap();
        assert_eq!(direct, m);
    }

    fn invalid_at(err: CostModelError) -> (usize, usize, String) {
        let text = err.to_string();
        match err {
            CostModelError::Invalid {
                line: Some(l),
                column: Some(c),
                ..
            } => (l, c, text),
            other => panic!("expected a positioned error, got {other:?}"),
        }
    }

    #[test]
    fn unknown_key_is_an_error_naming_key_and_position() {
        let err = CostModel::from_toml_str("base = \"modern-core\"\ninvlpg = 1\ninvlgp = 2\n")
            .unwrap_err();
        let (line, column, text) = invalid_at(err);
        assert_eq!((line, column), (3, 1));
        assert!(text.contains("`invlgp`"), "{text}");
        assert!(text.contains("line 3, column 1"), "{text}");
        assert!(text.contains("to fix:"), "{text}");
    }

    #[test]
    fn wrong_type_is_an_error() {
        let err = CostModel::from_toml_str("mem_access = 5\n  cr3_load = \"slow\"\n").unwrap_err();
        let (line, column, text) = invalid_at(err);
        assert_eq!((line, column), (2, 14));
        assert!(text.contains("invalid type"), "{text}");
        assert!(text.contains("non-negative integer"), "{text}");
    }

    #[test]
    fn negative_value_is_an_error() {
        let err = CostModel::from_toml_str("invlpg = -1\n").unwrap_err();
        let (line, column, _) = invalid_at(err);
        assert_eq!((line, column), (1, 10));
    }

    #[test]
    fn unknown_base_is_an_error() {
        let err = CostModel::from_toml_str("\nbase = \"pentium3\"\n").unwrap_err();
        let (line, column, text) = invalid_at(err);
        assert_eq!((line, column), (2, 8));
        assert!(text.contains("`pentium3`"), "{text}");
        assert!(text.contains("\"modern-core\""), "{text}");
    }

    #[test]
    fn zero_clock_is_an_error() {
        let err = CostModel::from_toml_str("clock_hz = 0").unwrap_err();
        let (line, column, text) = invalid_at(err);
        assert_eq!((line, column), (1, 12));
        assert!(text.contains("clock_hz"), "{text}");
    }

    #[test]
    fn syntax_error_has_a_position() {
        let err = CostModel::from_toml_str("invlpg = 1\ninvlpg = 2\n").unwrap_err();
        let (line, _, _) = invalid_at(err);
        assert_eq!(line, 2);
    }

    #[test]
    fn from_file_names_the_file() {
        let dir = std::env::temp_dir().join(format!("highpte-cost-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "base = \"modern-core\"\ninvlpg = 99\n").unwrap();
        assert_eq!(CostModel::from_file(&good).unwrap().invlpg, 99);

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "invlpg = 1\nbogus = 2\n").unwrap();
        let text = CostModel::from_file(&bad).unwrap_err().to_string();
        assert!(text.contains("bad.toml"), "{text}");
        assert!(text.contains("line 2, column 1"), "{text}");

        let missing = dir.join("missing.toml");
        let err = CostModel::from_file(&missing).unwrap_err();
        assert!(matches!(err, CostModelError::Io { .. }));
        assert!(err.to_string().contains("missing.toml"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn example_cost_file_parses() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workloads/cost/p4-xeon-2002.toml");
        let m = CostModel::from_file(&path).unwrap();
        assert_eq!(
            m,
            CostModel {
                clock_hz: 2_400_000_000,
                mem_access: 6,
                page_copy_per_byte_x100: 140,
                syscall_entry_exit: 400,
                ..CostModel::pentium4_xeon_2002()
            }
        );
    }

    #[test]
    fn page_zero_and_copy_arithmetic() {
        let mut m = CostModel {
            page_zero_per_byte_x100: 1,
            page_copy_per_byte_x100: 3,
            ..CostModel::default()
        };
        assert_eq!(m.page_zero(), 41); // 40.96 rounds to 41
        assert_eq!(m.page_copy(), 123); // 122.88 rounds to 123
        assert_eq!(m.zero_cycles(150), 2); // 1.5 rounds half up
        assert_eq!(m.copy_cycles(0), 0);
        m.page_zero_per_byte_x100 = u64::MAX;
        assert_eq!(m.page_zero(), u64::MAX / 100);
    }

    #[test]
    fn cycles_to_seconds_uses_the_clock() {
        let m = CostModel::pentium4_xeon_2002();
        assert_eq!(m.cycles_to_seconds(2_000_000_000), 1.0);
        assert_eq!(m.cycles_to_seconds(3000), 1.5e-6);
    }

    #[test]
    fn events_map_to_fields() {
        let m = CostModel::pentium4_xeon_2002();
        assert_eq!(m.cycles(CostEvent::Invlpg), 400);
        assert_eq!(m.cycles(CostEvent::PageZero), m.page_zero());
        assert_eq!(m.cycles(CostEvent::PageCopy), m.page_copy());
        assert_eq!(m.cycles(CostEvent::TlbMissLevel), m.tlb_miss_per_level);
        let mut names: Vec<&str> = CostEvent::ALL.iter().map(|e| e.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CostEvent::ALL.len());
        // Every event except the per-page ones is named after its field.
        for e in CostEvent::ALL {
            match e {
                CostEvent::PageZero | CostEvent::PageCopy => {}
                _ => assert!(CostModel::FIELDS.contains(&e.name()), "{e}"),
            }
        }
        assert_eq!(CostEvent::SpinLockSpin.to_string(), "spin_lock_per_spin");
    }
}
