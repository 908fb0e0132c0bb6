//! The highpte kernel core on a real (QEMU-emulated) i686 PC.
//!
//! The same `no_std` kernel crate the simulator runs, built into a multiboot image: its page
//! tables are real page tables in real physical memory (above 4 GB with PAE), its kmap_atomic
//! slots are real fixmap ptes flushed with `invlpg`, and every fault of the scenarios' programs
//! is a real #PF taken by the CPU. `cargo xtask qemu` builds and boots it; the scenario and
//! configuration come on the multiboot command line (`scenario=sga config=64g-highpte ...`),
//! the report goes to the serial port, and the run ends through `isa-debug-exit`.

#![no_std]
#![no_main]

extern crate alloc;

mod boot;
mod cpu;
mod heap;
mod mmu_diff;
mod multiboot;
mod platform;
mod scenario;
mod serial;

use highpte_kernel::platform::BugReport;
use platform::PLATFORM;

/// Print a kernel bug report and end the run: a pass if the scenario expected a bug of this
/// kind (the debug helpers catching what they exist to catch), a failure otherwise.
pub fn report_bug(report: &BugReport) -> ! {
    println!("BUG [{}]: {}", report.kind, report.message);
    if PLATFORM.expect_bug.get() == Some(report.kind) {
        println!("@expected-bug {}", report.kind);
        println!("@result pass");
        serial::exit(serial::EXIT_PASS);
    }
    println!("@result fail");
    serial::exit(serial::EXIT_FAIL)
}

/// Where `start_high` lands: the multiboot magic and the information's physical address.
#[no_mangle]
extern "C" fn kmain(magic: u32, mbi: u32) -> ! {
    serial::init();
    cpu::init();
    heap::init();
    if magic != multiboot::BOOTLOADER_MAGIC {
        println!("not started by a multiboot loader (EAX {magic:#x})");
        serial::exit(serial::EXIT_FAIL);
    }
    // SAFETY: the loader's information, in low memory the temporary tables map.
    let info = unsafe { multiboot::Info::read(mbi) };
    let pass = scenario::run(&info);
    println!("@result {}", if pass { "pass" } else { "fail" });
    serial::exit(if pass {
        serial::EXIT_PASS
    } else {
        serial::EXIT_FAIL
    })
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("kernel panic: {info}");
    println!("@result fail");
    serial::exit(serial::EXIT_FAIL)
}
