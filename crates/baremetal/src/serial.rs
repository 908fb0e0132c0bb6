//! The first serial port (COM1, 0x3f8) for output and QEMU's `isa-debug-exit` for the exit code.

use core::fmt;

const COM1: u16 = 0x3f8;
const DEBUG_EXIT: u16 = 0xf4;

/// Write a byte to an I/O port.
///
/// # Safety
/// The port must be one whose write has no effect beyond what the caller intends.
pub unsafe fn outb(port: u16, v: u8) {
    // SAFETY: forwarded to the caller.
    unsafe { core::arch::asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack)) };
}

/// Read a byte from an I/O port.
///
/// # Safety
/// As [`outb`].
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: forwarded to the caller.
    unsafe { core::arch::asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack)) };
    v
}

/// Set COM1 to 115200 8N1 with FIFOs.
pub fn init() {
    // SAFETY: the 16550 UART's registers at COM1.
    unsafe {
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x80);
        outb(COM1, 0x01);
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x03);
        outb(COM1 + 2, 0xc7);
        outb(COM1 + 4, 0x03);
    }
}

fn put(b: u8) {
    // SAFETY: COM1's line status and data registers.
    unsafe {
        while inb(COM1 + 5) & 0x20 == 0 {}
        outb(COM1, b);
    }
}

/// The serial port as a `fmt::Write`.
pub struct Serial;

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                put(b'\r');
            }
            put(b);
        }
        Ok(())
    }
}

/// Print to the serial port.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = write!($crate::serial::Serial, $($arg)*);
    }};
}

/// Print a line to the serial port.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::serial::Serial, $($arg)*);
    }};
}

/// The exit code `cargo xtask qemu` reads as success: QEMU exits with `(code << 1) | 1` = 33.
pub const EXIT_PASS: u32 = 0x10;
/// The exit code for a failed scenario (QEMU exits 35).
pub const EXIT_FAIL: u32 = 0x11;

/// Leave QEMU through `isa-debug-exit` with `code`.
pub fn exit(code: u32) -> ! {
    // SAFETY: the isa-debug-exit device's port; writing it ends the machine.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") DEBUG_EXIT, in("eax") code, options(nomem, nostack));
    }
    loop {
        // SAFETY: without the device, stop here.
        unsafe { core::arch::asm!("cli; hlt", options(nomem, nostack)) };
    }
}
