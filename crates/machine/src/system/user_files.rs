//! The file system calls of a process's user side ([`User`]): open, read, write, lseek,
//! ftruncate, fsync, unlink, close, and file mappings (`mmap` of a file, `msync`).

use super::User;
use highpte_arch::PagingMode;
use highpte_kernel::Errno;

impl<M: PagingMode> User<'_, M> {
    /// `mmap` of the open file `fd` from byte `offset` (`MAP_SHARED` or `MAP_PRIVATE`,
    /// without `MAP_ANONYMOUS`).
    pub fn mmap_file(
        &mut self,
        addr: u32,
        len: u64,
        prot: u32,
        flags: u32,
        fd: i32,
        offset: u64,
    ) -> Result<u32, Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_mmap", |cx| {
            self.k
                .sys_mmap(cx, self.pid, addr, len, prot, flags, fd, offset)
        });
        self.ret();
        r
    }
    /// `msync(addr, len, flags)`.
    pub fn msync(&mut self, addr: u32, len: u64, flags: u32) -> Result<(), Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_msync", |cx| {
            self.k.sys_msync(cx, self.pid, addr, len, flags)
        });
        self.ret();
        r
    }
    /// `open(name, flags)`: a file descriptor.
    pub fn open(&mut self, name: &str, flags: u32) -> Result<i32, Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_open", |cx| self.k.sys_open(cx, self.pid, name, flags));
        self.ret();
        r
    }
    /// `close(fd)`.
    pub fn close(&mut self, fd: i32) -> Result<(), Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_close", |cx| self.k.sys_close(cx, self.pid, fd));
        self.ret();
        r
    }
    /// `read(fd, buf)`: bytes read. The buffer is host memory: `copy_to_user` is modelled as
    /// a copy out of the simulated machine.
    pub fn read(&mut self, fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_read", |cx| self.k.sys_read(cx, self.pid, fd, buf));
        self.ret();
        r
    }
    /// `write(fd, buf)`: bytes written (from a host buffer, see [`User::read`]).
    pub fn write(&mut self, fd: i32, buf: &[u8]) -> Result<usize, Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_write", |cx| self.k.sys_write(cx, self.pid, fd, buf));
        self.ret();
        r
    }
    /// `lseek(fd, offset, whence)`: the new offset.
    pub fn lseek(&mut self, fd: i32, offset: i64, whence: u32) -> Result<u64, Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_lseek", |cx| {
            self.k.sys_lseek(cx, self.pid, fd, offset, whence)
        });
        self.ret();
        r
    }
    /// `ftruncate(fd, length)`.
    pub fn ftruncate(&mut self, fd: i32, length: i64) -> Result<(), Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_ftruncate", |cx| {
            self.k.sys_ftruncate(cx, self.pid, fd, length)
        });
        self.ret();
        r
    }
    /// `fsync(fd)`.
    pub fn fsync(&mut self, fd: i32) -> Result<(), Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_fsync", |cx| self.k.sys_fsync(cx, self.pid, fd));
        self.ret();
        r
    }
    /// `unlink(name)`.
    pub fn unlink(&mut self, name: &str) -> Result<(), Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_unlink", |cx| self.k.sys_unlink(cx, name));
        self.ret();
        r
    }
}
