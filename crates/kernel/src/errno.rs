//! Linux error numbers (i386 values, `asm-generic/errno-base.h`) and signals.

use core::fmt;

/// A Linux error number returned by a system call (as a positive value).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Errno(pub i32);

impl Errno {
    /// Operation not permitted.
    pub const EPERM: Errno = Errno(1);
    /// No such file or directory (no such IPC key).
    pub const ENOENT: Errno = Errno(2);
    /// No such process.
    pub const ESRCH: Errno = Errno(3);
    /// Bad file descriptor.
    pub const EBADF: Errno = Errno(9);
    /// Try again (too many processes).
    pub const EAGAIN: Errno = Errno(11);
    /// Out of memory.
    pub const ENOMEM: Errno = Errno(12);
    /// Permission denied.
    pub const EACCES: Errno = Errno(13);
    /// Bad address.
    pub const EFAULT: Errno = Errno(14);
    /// Device or resource busy (swapon of a device already on).
    pub const EBUSY: Errno = Errno(16);
    /// File exists (IPC key exists with IPC_EXCL).
    pub const EEXIST: Errno = Errno(17);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(22);
    /// Too many open files (the fd table is full).
    pub const EMFILE: Errno = Errno(24);
    /// File too large.
    pub const EFBIG: Errno = Errno(27);
    /// No space left (too many shm segments).
    pub const ENOSPC: Errno = Errno(28);
    /// File name too long.
    pub const ENAMETOOLONG: Errno = Errno(36);
    /// Identifier removed.
    pub const EIDRM: Errno = Errno(43);
    /// Value too large for the data type (an mmap offset past what a page index holds).
    pub const EOVERFLOW: Errno = Errno(75);

    /// The symbolic name.
    pub const fn name(self) -> &'static str {
        match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            9 => "EBADF",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            22 => "EINVAL",
            24 => "EMFILE",
            27 => "EFBIG",
            28 => "ENOSPC",
            36 => "ENAMETOOLONG",
            43 => "EIDRM",
            75 => "EOVERFLOW",
            _ => "E?",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())
    }
}

/// A signal delivered to a user task by a fault.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Signal {
    /// Segmentation violation: no mapping, or against its protection.
    Sigsegv,
    /// Bus error: the mapping exists but its page cannot be provided.
    Sigbus,
    /// Killed (by the OOM killer).
    Sigkill,
}

impl Signal {
    /// The i386 signal number.
    pub const fn number(self) -> i32 {
        match self {
            Signal::Sigsegv => 11,
            Signal::Sigbus => 7,
            Signal::Sigkill => 9,
        }
    }
    /// The symbolic name.
    pub const fn name(self) -> &'static str {
        match self {
            Signal::Sigsegv => "SIGSEGV",
            Signal::Sigbus => "SIGBUS",
            Signal::Sigkill => "SIGKILL",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn i386_values() {
        assert_eq!(Errno::ENOMEM.0, 12);
        assert_eq!(Errno::EINVAL.0, 22);
        assert_eq!(Errno::EFAULT.0, 14);
        assert_eq!(Errno::EEXIST.0, 17);
        assert_eq!(Errno::EIDRM.0, 43);
        assert_eq!(Signal::Sigsegv.number(), 11);
        assert_eq!(Signal::Sigbus.number(), 7);
    }
}
