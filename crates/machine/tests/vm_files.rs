//! Files and the page cache: read/write round trips, a file bigger than RAM (page-cache
//! reclaim and writeback), shared and private file mappings, msync, SIGBUS past the end,
//! unlink while mapped, the errno of every refused call. Each test runs on a lowmem and a
//! highpte configuration of both paging modes and ends with the invariants holding and
//! every page back (MemFree at its boot value, no page cache left).

mod vm_common;
use highpte_arch::{MemoryVariant, PagingMode};
use highpte_kernel::fs::{
    O_APPEND, O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, SEEK_CUR, SEEK_END, SEEK_SET,
};
use highpte_kernel::mm::filemap::{MS_ASYNC, MS_INVALIDATE, MS_SYNC};
use highpte_kernel::mm::{MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE};
use highpte_kernel::{BlockDev, Counter, Errno, PteStrategy, Signal};
use highpte_machine::{System, User};
use vm_common::*;

const RW: u32 = PROT_READ | PROT_WRITE;

/// A lowmem and a highpte configuration of each paging mode, with RAM small enough that a
/// file bigger than RAM stays affordable (960 MB leaves 64 MB of high memory).
const FILE_CONFIGS: [(MemoryVariant, u64); 4] = [
    (MemoryVariant::NoHighmem, 128 * MB),
    (MemoryVariant::Highmem64g, 960 * MB),
    (MemoryVariant::Highmem4gHighpte, 960 * MB),
    (MemoryVariant::Highmem64gHighpte, 960 * MB),
];

/// The byte at offset `off` of test file `salt`.
fn byte_at(off: u64, salt: u8) -> u8 {
    let x = off.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (off >> 13);
    (x >> 24) as u8 ^ salt ^ 0x5a
}

fn fill(buf: &mut [u8], off: u64, salt: u8) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = byte_at(off + i as u64, salt);
    }
}

/// Boot, run `body` as one process, check invariants inside, and leaks after.
fn run_checked<M: PagingMode>(
    v: MemoryVariant,
    ram: u64,
    cpus: u32,
    what: &str,
    body: impl FnOnce(&mut User<'_, M>) -> i32 + 'static,
) -> System<M> {
    let mut sys = boot::<M>(v, ram, cpus);
    let b = quiesce(&mut sys);
    let code = run_process(&mut sys, body);
    assert_eq!(code, 0, "{v} {what}: the process failed");
    let k = sys.kernel();
    assert_eq!(k.fs_inodes(), 0, "{v} {what}: inodes left");
    assert_no_leak(&mut sys, &b, &format!("{v} {what}"));
    let q = quiesce(&mut sys);
    assert_eq!(q.mi.cached, 0, "{v} {what}: page cache left");
    assert_eq!(q.mi.dirty, 0, "{v} {what}: dirty pages left");
    sys
}

fn each_config(what: &str, f: fn(MemoryVariant, u64, &str)) {
    for (v, ram) in FILE_CONFIGS {
        f(v, ram, what);
    }
}

fn round_trips<M: PagingMode>(v: MemoryVariant, ram: u64, what: &str) {
    // (offset, length): inside a page, across one boundary, many pages, unaligned both ends
    const CASES: [(u64, usize); 8] = [
        (0, 1),
        (0, 4096),
        (4095, 2),
        (100, 10_000),
        (8190, 4100),
        (12_345, 65_536),
        (3 * 4096, 3 * 4096),
        (1 << 20, 777),
    ];
    run_checked::<M>(v, ram, 1, what, |u| {
        for (n, &(off, len)) in CASES.iter().enumerate() {
            let name = format!("rt{n}");
            let fd = u.open(&name, O_CREAT | O_RDWR | O_EXCL).unwrap();
            assert_eq!(u.lseek(fd, off as i64, SEEK_SET), Ok(off));
            let mut data = vec![0u8; len];
            fill(&mut data, off, n as u8);
            assert_eq!(u.write(fd, &data), Ok(len), "case {n}");
            assert_eq!(u.lseek(fd, 0, SEEK_CUR), Ok(off + len as u64));
            assert_eq!(u.lseek(fd, 0, SEEK_END), Ok(off + len as u64), "size");
            // the hole before the data reads as zeros, the data as written, then EOF
            assert_eq!(u.lseek(fd, 0, SEEK_SET), Ok(0));
            let mut back = vec![0xffu8; off as usize + len + 100];
            assert_eq!(u.read(fd, &mut back), Ok(off as usize + len), "case {n}");
            assert!(
                back[..off as usize].iter().all(|&b| b == 0),
                "case {n}: hole"
            );
            assert_eq!(
                &back[off as usize..off as usize + len],
                &data[..],
                "case {n}"
            );
            assert_eq!(u.read(fd, &mut back), Ok(0), "case {n}: EOF");
            // after fsync, the data survives the page cache being dropped (close + reopen
            // keeps the cache; reading it again through another descriptor)
            u.fsync(fd).unwrap();
            let fd2 = u.open(&name, O_RDONLY).unwrap();
            assert_eq!(u.lseek(fd2, off as i64, SEEK_SET), Ok(off));
            let mut again = vec![0u8; len];
            assert_eq!(u.read(fd2, &mut again), Ok(len));
            assert_eq!(again, data, "case {n}: second descriptor");
            u.close(fd2).unwrap();
            u.close(fd).unwrap();
        }
        let k = u.kernel();
        assert!(k.counters().get(Counter::FsPagesWritten) > 0);
        assert!(mi(u).cached > 0);
        // O_APPEND and O_TRUNC
        let fd = u.open("rt0", O_WRONLY | O_APPEND).unwrap();
        assert_eq!(u.write(fd, b"xyz"), Ok(3));
        u.close(fd).unwrap();
        let fd = u.open("rt0", O_RDONLY).unwrap();
        let mut b4 = [0u8; 8];
        assert_eq!(u.read(fd, &mut b4), Ok(4));
        assert_eq!(&b4[1..4], b"xyz");
        u.close(fd).unwrap();
        let fd = u.open("rt0", O_RDWR | O_TRUNC).unwrap();
        assert_eq!(u.lseek(fd, 0, SEEK_END), Ok(0));
        u.close(fd).unwrap();
        inv(u, "round trips");
        for n in 0..CASES.len() {
            u.unlink(&format!("rt{n}")).unwrap();
        }
        assert_eq!(mi(u).cached, 0, "unlinked closed files keep no page");
        0
    });
}

#[test]
fn read_write_round_trips_across_page_boundaries() {
    each_config("round trips", |v, ram, what| {
        dispatch!(v, round_trips(v, ram, what))
    });
}

fn bigger_than_ram<M: PagingMode>(v: MemoryVariant, ram: u64, what: &str) {
    let size = ram + 64 * MB;
    let sys = run_checked::<M>(v, ram, 1, what, move |u| {
        let fd = u.open("big", O_CREAT | O_RDWR).unwrap();
        let chunk = 64 * 1024usize;
        let mut buf = vec![0u8; chunk];
        let mut off = 0u64;
        while off < size {
            fill(&mut buf, off, 7);
            assert_eq!(u.write(fd, &buf), Ok(chunk), "write at {off:#x}");
            off += chunk as u64;
        }
        let m = mi(u);
        assert!(
            m.cached < ram / 1024,
            "Cached {} kB cannot exceed RAM",
            m.cached
        );
        assert_eq!(u.lseek(fd, 0, SEEK_SET), Ok(0));
        let mut off = 0u64;
        let mut want = vec![0u8; chunk];
        while off < size {
            assert_eq!(u.read(fd, &mut buf), Ok(chunk), "read at {off:#x}");
            fill(&mut want, off, 7);
            if buf != want {
                let i = buf.iter().zip(&want).position(|(a, b)| a != b).unwrap();
                panic!(
                    "byte {:#x} of the file is {:#x}, not {:#x}",
                    off + i as u64,
                    buf[i],
                    want[i]
                );
            }
            off += chunk as u64;
        }
        inv(u, "big file");
        u.close(fd).unwrap();
        u.unlink("big").unwrap();
        0
    });
    let k = sys.kernel();
    let written = k.counters().get(Counter::FsPagesWritten);
    let read = k.counters().get(Counter::FsPagesRead);
    let stolen = k.counters().get(Counter::PageCacheSteal);
    println!(
        "{v}: {} MB file on {} MB RAM: {written} pages written, {read} read, {stolen} page-cache pages reclaimed",
        size / MB,
        ram / MB
    );
    assert!(
        written >= (size - ram) / 4096,
        "{v}: only {written} pages written"
    );
    assert!(
        read >= (size - ram) / 4096,
        "{v}: only {read} pages read back"
    );
    assert!(stolen > 0);
}

#[test]
fn file_bigger_than_ram_reads_back_every_byte() {
    each_config("bigger than RAM", |v, ram, what| {
        dispatch!(v, bigger_than_ram(v, ram, what))
    });
}

fn shared_mapping<M: PagingMode>(v: MemoryVariant, ram: u64, what: &str) {
    run_checked::<M>(v, ram, 2, what, |u| {
        let fd = u.open("shared", O_CREAT | O_RDWR).unwrap();
        let mut data = vec![0u8; 4 * 4096];
        fill(&mut data, 0, 1);
        assert_eq!(u.write(fd, &data), Ok(data.len()));
        let a = u.mmap_file(0, 4 * 4096, RW, MAP_SHARED, fd, 0).unwrap();
        // write() before the mapping is seen through it
        let w = u32::from_le_bytes(data[4096 + 8..4096 + 12].try_into().unwrap());
        assert_eq!(u.load_u32(a + PAGE + 8).unwrap(), w);
        // a store through the mapping is seen by read()
        u.store_u32(a + 2 * PAGE + 16, 0xfeed_f00d).unwrap();
        let mut b = [0u8; 4];
        assert_eq!(u.lseek(fd, 2 * 4096 + 16, SEEK_SET), Ok(2 * 4096 + 16));
        assert_eq!(u.read(fd, &mut b), Ok(4));
        assert_eq!(u32::from_le_bytes(b), 0xfeed_f00d);
        inv(u, "shared mapping");
        // another process maps the file by name and sees it, then writes
        let child = u
            .fork("other", false, |c| {
                let fd = c.open("shared", O_RDWR).unwrap();
                let m = c.mmap_file(0, 4 * 4096, RW, MAP_SHARED, fd, 0).unwrap();
                if c.load_u32(m + 2 * PAGE + 16).unwrap() != 0xfeed_f00d {
                    return 1;
                }
                c.store_u32(m + 3 * PAGE, 0x0bad_cafe).unwrap();
                // the inherited mapping is the same pages too
                c.store_u32(m + 3 * PAGE + 4, 0x1234_5678).unwrap();
                c.munmap(m, 4 * 4096).unwrap();
                c.close(fd).unwrap();
                0
            })
            .unwrap();
        assert_eq!(u.wait().unwrap(), (child, 0));
        assert_eq!(u.load_u32(a + 3 * PAGE).unwrap(), 0x0bad_cafe);
        assert_eq!(u.load_u32(a + 3 * PAGE + 4).unwrap(), 0x1234_5678);
        assert_eq!(u.lseek(fd, 3 * 4096, SEEK_SET), Ok(3 * 4096));
        assert_eq!(u.read(fd, &mut b), Ok(4));
        assert_eq!(u32::from_le_bytes(b), 0x0bad_cafe);
        // a forked child inherits the mapping: the same page-cache pages
        let child = u
            .fork("inherit", false, move |c| {
                c.store_u32(a + 8, 0x7777_7777).unwrap();
                0
            })
            .unwrap();
        assert_eq!(u.wait().unwrap(), (child, 0));
        assert_eq!(u.load_u32(a + 8).unwrap(), 0x7777_7777);
        inv(u, "after the other processes");
        u.munmap(a, 4 * 4096).unwrap();
        // the dirty ptes reached the pages at unmap
        assert!(
            mi(u).dirty > 0,
            "munmap of written shared pages leaves them dirty"
        );
        u.fsync(fd).unwrap();
        assert_eq!(mi(u).dirty, 0);
        u.close(fd).unwrap();
        u.unlink("shared").unwrap();
        0
    });
}

#[test]
fn shared_mapping_is_seen_by_read_and_by_another_process() {
    each_config("shared mapping", |v, ram, what| {
        dispatch!(v, shared_mapping(v, ram, what))
    });
}

fn private_mapping<M: PagingMode>(v: MemoryVariant, ram: u64, what: &str) {
    run_checked::<M>(v, ram, 2, what, |u| {
        let fd = u.open("private", O_CREAT | O_RDWR).unwrap();
        let mut data = vec![0u8; 4 * 4096];
        fill(&mut data, 0, 2);
        u.write(fd, &data).unwrap();
        u.fsync(fd).unwrap();
        assert_eq!(mi(u).dirty, 0);
        let word = |i: usize| u32::from_le_bytes(data[i..i + 4].try_into().unwrap());
        let p = u.mmap_file(0, 4 * 4096, RW, MAP_PRIVATE, fd, 0).unwrap();
        let s = u
            .mmap_file(0, 4 * 4096, PROT_READ, MAP_SHARED, fd, 0)
            .unwrap();
        assert_eq!(u.load_u32(p).unwrap(), word(0));
        // the read maps the page-cache page itself
        assert_eq!(
            pfn_of(u, p),
            pfn_of(u, s).or_else(|| {
                u.load_u32(s).unwrap();
                pfn_of(u, s)
            })
        );
        // a write copies: the file and the shared mapping keep the old data
        u.store_u32(p, 0xdead_beef).unwrap();
        assert_ne!(pfn_of(u, p), pfn_of(u, s));
        assert_eq!(u.load_u32(s).unwrap(), word(0));
        let mut b = [0u8; 4];
        u.lseek(fd, 0, SEEK_SET).unwrap();
        u.read(fd, &mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b), word(0));
        // an untouched private page still shows the file: a write() to the file is seen
        u.load_u32(p + PAGE).unwrap();
        u.lseek(fd, 4096, SEEK_SET).unwrap();
        u.write(fd, &0x5151_5151u32.to_le_bytes()).unwrap();
        assert_eq!(u.load_u32(p + PAGE).unwrap(), 0x5151_5151);
        // a write to a never-touched private page copies at once
        u.store_u32(p + 3 * PAGE, 3).unwrap();
        assert_eq!(u.load_u32(s + 3 * PAGE).unwrap(), word(3 * 4096));
        inv(u, "private mapping");
        // a forked child's copy is its own too
        let child = u
            .fork("cow", false, move |c| {
                c.store_u32(p, 0x0c0c_0c0c).unwrap();
                c.store_u32(p + 2 * PAGE, 0x2222).unwrap();
                i32::from(c.load_u32(p + 3 * PAGE).unwrap() != 3)
            })
            .unwrap();
        assert_eq!(u.wait().unwrap(), (child, 0));
        assert_eq!(u.load_u32(p).unwrap(), 0xdead_beef);
        assert_eq!(u.load_u32(p + 2 * PAGE).unwrap(), word(2 * 4096));
        assert_eq!(u.load_u32(s + 2 * PAGE).unwrap(), word(2 * 4096));
        inv(u, "after the child");
        // a private mapping of a read-only descriptor may be written (copy on write)
        let ro = u.open("private", O_RDONLY).unwrap();
        let q = u.mmap_file(0, 4096, RW, MAP_PRIVATE, ro, 4096).unwrap();
        u.store_u32(q + 4, 9).unwrap();
        assert_eq!(u.load_u32(q).unwrap(), 0x5151_5151);
        u.munmap(q, 4096).unwrap();
        u.close(ro).unwrap();
        u.munmap(p, 4 * 4096).unwrap();
        u.munmap(s, 4 * 4096).unwrap();
        assert_eq!(mi(u).dirty, 4, "only write() dirtied the file (1 page)");
        u.close(fd).unwrap();
        u.unlink("private").unwrap();
        0
    });
}

#[test]
fn private_mapping_copies_on_write() {
    each_config("private mapping", |v, ram, what| {
        dispatch!(v, private_mapping(v, ram, what))
    });
}

fn msync_case<M: PagingMode>(v: MemoryVariant, ram: u64, what: &str) {
    let mut sys = boot::<M>(v, ram, 1);
    let b = quiesce(&mut sys);
    let code = run_process(&mut sys, |u| {
        let fd = u.open("synced", O_CREAT | O_RDWR).unwrap();
        u.ftruncate(fd, 3 * 4096).unwrap();
        let a = u.mmap_file(0, 3 * 4096, RW, MAP_SHARED, fd, 0).unwrap();
        u.store_u32(a + PAGE + 40, 0xabcd_0123).unwrap();
        u.store_u32(a + 2 * PAGE, 0x2468_ace0).unwrap();
        let k = u.kernel();
        assert_eq!(k.fs_block_of("synced", 1), None, "nothing written yet");
        assert_eq!(mi(u).dirty, 0, "the dirty bits are still in the ptes");
        // MS_ASYNC moves the dirty bits to the pages, writes nothing
        u.msync(a, 3 * 4096, MS_ASYNC).unwrap();
        assert_eq!(mi(u).dirty, 8);
        assert_eq!(k.fs_block_of("synced", 1), None);
        // a store after the sync dirties the pte again (the TLB was flushed)
        u.store_u32(a + 2 * PAGE + 4, 0x1357_9bdf).unwrap();
        // errors
        assert_eq!(u.msync(a + 1, 4096, MS_SYNC), Err(Errno::EINVAL));
        assert_eq!(u.msync(a, 4096, MS_SYNC | MS_ASYNC), Err(Errno::EINVAL));
        assert_eq!(u.msync(a, 4096, 0x40), Err(Errno::EINVAL));
        assert_eq!(u.msync(a, 4 * 4096, MS_SYNC), Err(Errno::ENOMEM));
        assert_eq!(u.msync(a, 0, MS_SYNC), Ok(()));
        // MS_SYNC (the failed call above synced the mapped part already)
        u.msync(a, 3 * 4096, MS_SYNC | MS_INVALIDATE).unwrap();
        assert_eq!(mi(u).dirty, 0);
        assert!(k.fs_block_of("synced", 1).is_some());
        assert!(k.fs_block_of("synced", 2).is_some());
        assert_eq!(
            k.fs_block_of("synced", 0),
            None,
            "a clean hole stays a hole"
        );
        inv(u, "msync");
        u.munmap(a, 3 * 4096).unwrap();
        u.close(fd).unwrap();
        0
    });
    assert_eq!(code, 0, "{v} {what}");
    // the disk blocks hold what was stored through the mapping
    let k = sys.kernel();
    let b1 = k.fs_block_of("synced", 1).unwrap();
    let b2 = k.fs_block_of("synced", 2).unwrap();
    let d1 = sys.machine.disk_block(BlockDev::Disk, b1).unwrap();
    let d2 = sys.machine.disk_block(BlockDev::Disk, b2).unwrap();
    assert_eq!(
        u32::from_le_bytes(d1[40..44].try_into().unwrap()),
        0xabcd_0123
    );
    assert_eq!(
        u32::from_le_bytes(d2[0..4].try_into().unwrap()),
        0x2468_ace0
    );
    assert_eq!(
        u32::from_le_bytes(d2[4..8].try_into().unwrap()),
        0x1357_9bdf
    );
    let code = run_process(&mut sys, |u| {
        u.unlink("synced").unwrap();
        0
    });
    assert_eq!(code, 0);
    assert_eq!(
        sys.machine.disk_block(BlockDev::Disk, b1).unwrap(),
        [0u8; 4096],
        "blocks discarded"
    );
    assert_no_leak(&mut sys, &b, &format!("{v} {what}"));
}

#[test]
fn msync_writes_the_disk_blocks() {
    each_config("msync", |v, ram, what| {
        dispatch!(v, msync_case(v, ram, what))
    });
}

fn sigbus<M: PagingMode>(v: MemoryVariant, ram: u64, what: &str) {
    run_checked::<M>(v, ram, 1, what, |u| {
        let fd = u.open("short", O_CREAT | O_RDWR).unwrap();
        let mut data = vec![0u8; 4096 + 100];
        fill(&mut data, 0, 3);
        u.write(fd, &data).unwrap();
        let a = u.mmap_file(0, 4 * 4096, RW, MAP_SHARED, fd, 0).unwrap();
        let p = u.mmap_file(0, 4 * 4096, RW, MAP_PRIVATE, fd, 0).unwrap();
        // the last page is partly in the file: mapped, zeros past the end
        assert_eq!(
            u.load_u32(a + PAGE + 96).unwrap(),
            u32::from_le_bytes(data[4096 + 96..4096 + 100].try_into().unwrap())
        );
        assert_eq!(u.load_u32(a + PAGE + 100).unwrap(), 0);
        assert_eq!(u.load_u32(a + 2 * PAGE), Err(Signal::Sigbus));
        assert_eq!(u.store_u32(a + 3 * PAGE, 1), Err(Signal::Sigbus));
        assert_eq!(u.store_u32(p + 2 * PAGE, 1), Err(Signal::Sigbus));
        u.store_u32(p + PAGE, 1).unwrap();
        // shrinking the file unmaps what is past the end, private copies too
        u.ftruncate(fd, 100).unwrap();
        assert_eq!(u.load_u32(a + PAGE), Err(Signal::Sigbus));
        assert_eq!(u.load_u32(p + PAGE), Err(Signal::Sigbus));
        assert_eq!(
            u.load_u32(a + 96).unwrap(),
            u32::from_le_bytes(data[96..100].try_into().unwrap())
        );
        // growing it again: the new part reads as zeros, the old tail too
        u.ftruncate(fd, 3 * 4096).unwrap();
        assert_eq!(u.load_u32(a + 100).unwrap(), 0);
        assert_eq!(u.load_u32(a + PAGE + 96).unwrap(), 0);
        assert_eq!(u.load_u32(a + 2 * PAGE + 8).unwrap(), 0);
        assert_eq!(u.load_u32(a + 3 * PAGE), Err(Signal::Sigbus));
        inv(u, "sigbus");
        let k = u.kernel();
        assert!(k.counters().get(Counter::FaultsSigbus) >= 6);
        u.munmap(a, 4 * 4096).unwrap();
        u.munmap(p, 4 * 4096).unwrap();
        u.close(fd).unwrap();
        u.unlink("short").unwrap();
        0
    });
}

#[test]
fn sigbus_past_the_end_of_the_file() {
    each_config("sigbus", |v, ram, what| dispatch!(v, sigbus(v, ram, what)));
}

fn unlink_mapped<M: PagingMode>(v: MemoryVariant, ram: u64, what: &str) {
    run_checked::<M>(v, ram, 1, what, |u| {
        let fd = u.open("doomed", O_CREAT | O_RDWR).unwrap();
        u.ftruncate(fd, 8 * 4096).unwrap();
        let a = u.mmap_file(0, 8 * 4096, RW, MAP_SHARED, fd, 0).unwrap();
        for i in 0..8 {
            u.store_u32(a + i * PAGE, stamp(i, 5)).unwrap();
        }
        u.close(fd).unwrap();
        u.unlink("doomed").unwrap();
        assert_eq!(u.open("doomed", O_RDONLY), Err(Errno::ENOENT));
        assert_eq!(u.kernel().fs_inodes(), 1, "the mapping keeps the file");
        // a new file of the same name is another file
        let fd = u.open("doomed", O_CREAT | O_EXCL | O_RDWR).unwrap();
        assert_eq!(u.lseek(fd, 0, SEEK_END), Ok(0));
        u.close(fd).unwrap();
        u.unlink("doomed").unwrap();
        for i in 0..8 {
            assert_eq!(u.load_u32(a + i * PAGE).unwrap(), stamp(i, 5));
        }
        assert_eq!(mi(u).cached, 8 * 4);
        inv(u, "unlinked while mapped");
        // the last unmap frees the file and its pages
        u.munmap(a, 4 * 4096).unwrap();
        assert_eq!(u.kernel().fs_inodes(), 1);
        u.munmap(a + 4 * PAGE, 4 * 4096).unwrap();
        assert_eq!(u.kernel().fs_inodes(), 0);
        assert_eq!(mi(u).cached, 0);
        assert_eq!(mi(u).dirty, 0);
        // the same with an exit instead of munmap: a child holds the only mapping
        let fd = u.open("doomed2", O_CREAT | O_RDWR).unwrap();
        u.write(fd, &[1u8; 5000]).unwrap();
        let child = u
            .fork("holder", false, |c| {
                let fd = c.open("doomed2", O_RDONLY).unwrap();
                let m = c.mmap_file(0, 8192, PROT_READ, MAP_SHARED, fd, 0).unwrap();
                c.close(fd).unwrap();
                c.unlink("doomed2").unwrap();
                i32::from(c.load_u32(m + 4096).unwrap() != 0x0101_0101)
            })
            .unwrap();
        // the parent's descriptor was inherited by the child too: close ours afterwards
        assert_eq!(u.wait().unwrap(), (child, 0));
        assert_eq!(u.kernel().fs_inodes(), 1, "our descriptor keeps it");
        u.close(fd).unwrap();
        assert_eq!(u.kernel().fs_inodes(), 0);
        0
    });
}

#[test]
fn unlink_while_mapped_keeps_the_file_until_the_last_user() {
    each_config("unlink mapped", |v, ram, what| {
        dispatch!(v, unlink_mapped(v, ram, what))
    });
}

/// One refused call and the errno Linux gives.
struct ErrCase<M: PagingMode> {
    what: &'static str,
    want: Errno,
    call: fn(&mut User<'_, M>, &Fds) -> Result<(), Errno>,
}

/// Descriptors the error cases use.
struct Fds {
    rdonly: i32,
    wronly: i32,
    rdwr: i32,
    map_ro: u32,
}

fn ok<T>(r: Result<T, Errno>) -> Result<(), Errno> {
    r.map(|_| ())
}

fn err_cases<M: PagingMode>() -> Vec<ErrCase<M>> {
    vec![
        ErrCase {
            what: "open of a missing file",
            want: Errno::ENOENT,
            call: |u, _| ok(u.open("missing", O_RDONLY)),
        },
        ErrCase {
            what: "open of an empty name",
            want: Errno::ENOENT,
            call: |u, _| ok(u.open("", O_RDWR | O_CREAT)),
        },
        ErrCase {
            what: "O_CREAT|O_EXCL of an existing file",
            want: Errno::EEXIST,
            call: |u, _| ok(u.open("errs", O_CREAT | O_EXCL | O_RDWR)),
        },
        ErrCase {
            what: "a name longer than NAME_MAX",
            want: Errno::ENAMETOOLONG,
            call: |u, _| ok(u.open(&"n".repeat(256), O_CREAT | O_RDWR)),
        },
        ErrCase {
            what: "read of a write-only descriptor",
            want: Errno::EBADF,
            call: |u, f| ok(u.read(f.wronly, &mut [0u8; 4])),
        },
        ErrCase {
            what: "write to a read-only descriptor",
            want: Errno::EBADF,
            call: |u, f| ok(u.write(f.rdonly, b"x")),
        },
        ErrCase {
            what: "read of a descriptor never opened",
            want: Errno::EBADF,
            call: |u, _| ok(u.read(77, &mut [0u8; 4])),
        },
        ErrCase {
            what: "write to a negative descriptor",
            want: Errno::EBADF,
            call: |u, _| ok(u.write(-1, b"x")),
        },
        ErrCase {
            what: "close of a descriptor never opened",
            want: Errno::EBADF,
            call: |u, _| u.close(99),
        },
        ErrCase {
            what: "lseek with a bad whence",
            want: Errno::EINVAL,
            call: |u, f| ok(u.lseek(f.rdwr, 0, 7)),
        },
        ErrCase {
            what: "lseek before the start",
            want: Errno::EINVAL,
            call: |u, f| ok(u.lseek(f.rdwr, -1, SEEK_SET)),
        },
        ErrCase {
            what: "lseek of a bad descriptor",
            want: Errno::EBADF,
            call: |u, _| ok(u.lseek(55, 0, SEEK_SET)),
        },
        ErrCase {
            what: "ftruncate of a read-only descriptor",
            want: Errno::EINVAL,
            call: |u, f| u.ftruncate(f.rdonly, 0),
        },
        ErrCase {
            what: "ftruncate to a negative length",
            want: Errno::EINVAL,
            call: |u, f| u.ftruncate(f.rdwr, -5),
        },
        ErrCase {
            what: "ftruncate of a bad descriptor",
            want: Errno::EBADF,
            call: |u, _| u.ftruncate(42, 0),
        },
        ErrCase {
            what: "fsync of a bad descriptor",
            want: Errno::EBADF,
            call: |u, _| u.fsync(42),
        },
        ErrCase {
            what: "unlink of a missing file",
            want: Errno::ENOENT,
            call: |u, _| u.unlink("missing"),
        },
        ErrCase {
            what: "shared writable mmap of a read-only descriptor",
            want: Errno::EACCES,
            call: |u, f| ok(u.mmap_file(0, 4096, RW, MAP_SHARED, f.rdonly, 0)),
        },
        ErrCase {
            what: "mmap of a write-only descriptor",
            want: Errno::EACCES,
            call: |u, f| ok(u.mmap_file(0, 4096, PROT_READ, MAP_SHARED, f.wronly, 0)),
        },
        ErrCase {
            what: "mmap of a bad descriptor",
            want: Errno::EBADF,
            call: |u, _| ok(u.mmap_file(0, 4096, PROT_READ, MAP_SHARED, 66, 0)),
        },
        ErrCase {
            what: "mmap of a file with length 0",
            want: Errno::EINVAL,
            call: |u, f| ok(u.mmap_file(0, 0, PROT_READ, MAP_SHARED, f.rdwr, 0)),
        },
        ErrCase {
            what: "mmap of a file at an unaligned offset",
            want: Errno::EINVAL,
            call: |u, f| ok(u.mmap_file(0, 4096, PROT_READ, MAP_SHARED, f.rdwr, 100)),
        },
        ErrCase {
            what: "mmap of a file without MAP_SHARED or MAP_PRIVATE",
            want: Errno::EINVAL,
            call: |u, f| ok(u.mmap_file(0, 4096, PROT_READ, 0, f.rdwr, 0)),
        },
        ErrCase {
            what: "mprotect(PROT_WRITE) of a shared mapping of a read-only descriptor",
            want: Errno::EACCES,
            call: |u, f| u.mprotect(f.map_ro, 4096, RW),
        },
    ]
}

fn errno_cases<M: PagingMode>(v: MemoryVariant, ram: u64, what: &str) {
    run_checked::<M>(v, ram, 1, what, |u| {
        let fd = u.open("errs", O_CREAT | O_RDWR).unwrap();
        u.write(fd, &[7u8; 5000]).unwrap();
        let fds = Fds {
            rdonly: u.open("errs", O_RDONLY).unwrap(),
            wronly: u.open("errs", O_WRONLY).unwrap(),
            rdwr: fd,
            map_ro: 0,
        };
        let map_ro = u
            .mmap_file(0, 8192, PROT_READ, MAP_SHARED, fds.rdonly, 0)
            .unwrap();
        let fds = Fds { map_ro, ..fds };
        for c in err_cases::<M>() {
            assert_eq!((c.call)(u, &fds), Err(c.want), "{}", c.what);
        }
        // descriptors: the lowest free one is reused; a fork copies the table and the
        // copies share the offset
        u.close(fds.wronly).unwrap();
        let again = u.open("errs", O_WRONLY).unwrap();
        assert_eq!(again, fds.wronly);
        assert_eq!(u.lseek(fd, 10, SEEK_SET), Ok(10));
        let child = u
            .fork("fds", false, move |c| {
                let mut b = [0u8; 2];
                if c.read(fd, &mut b) != Ok(2) || b != [7, 7] {
                    return 1;
                }
                // the child's copy survives our close of it elsewhere
                c.close(fd).unwrap();
                i32::from(c.read(fd, &mut b) != Err(Errno::EBADF))
            })
            .unwrap();
        assert_eq!(u.wait().unwrap(), (child, 0));
        assert_eq!(u.lseek(fd, 0, SEEK_CUR), Ok(12), "the offset is shared");
        u.munmap(map_ro, 8192).unwrap();
        inv(u, "errno cases");
        u.unlink("errs").unwrap();
        // the descriptors still work on the unlinked file
        assert_eq!(u.lseek(fds.rdonly, 0, SEEK_END), Ok(5000));
        for f in [fd, fds.rdonly, again] {
            u.close(f).unwrap();
        }
        0
    });
}

#[test]
fn every_refused_call_gives_linux_errno() {
    each_config("errno", |v, ram, what| {
        dispatch!(v, errno_cases(v, ram, what))
    });
}

/// Page cache in high memory competes with pte pages there: with highpte, filling the page
/// cache and then mapping lots of memory reclaims clean cache pages for the pte pages.
fn compete<M: PagingMode>(v: MemoryVariant, ram: u64, what: &str) {
    let sys = run_checked::<M>(v, ram, 1, what, move |u| {
        let fd = u.open("cache", O_CREAT | O_RDWR).unwrap();
        let buf = vec![3u8; 1 << 20];
        // fill most of RAM with file data, written back
        let n = (ram / MB) as usize;
        for _ in 0..n {
            if u.write(fd, &buf).is_err() {
                break;
            }
        }
        u.fsync(fd).unwrap();
        let before = mi(u).cached;
        assert!(before > ram / 1024 / 2, "Cached {before} kB");
        // anonymous memory needs the pages back: clean page cache goes first
        let len = ram / 2;
        let a = u
            .mmap(0, len, RW, MAP_PRIVATE | highpte_kernel::mm::MAP_ANONYMOUS)
            .unwrap();
        for i in 0..(len / 4096) as u32 {
            u.store_u32(a + i * PAGE, i).unwrap();
        }
        for i in (0..(len / 4096) as u32).step_by(97) {
            assert_eq!(u.load_u32(a + i * PAGE).unwrap(), i);
        }
        assert!(mi(u).cached < before);
        inv(u, "cache and anonymous memory");
        u.munmap(a, len).unwrap();
        u.close(fd).unwrap();
        u.unlink("cache").unwrap();
        0
    });
    assert!(sys.kernel().counters().get(Counter::PageCacheSteal) > 0);
}

#[test]
fn clean_page_cache_is_reclaimed_for_anonymous_memory() {
    each_config("compete", |v, ram, what| {
        dispatch!(v, compete(v, ram, what))
    });
}

#[test]
fn highpte_strategies_see_the_same_files() {
    // the persistent pte strategy shares the pkmap window with read()/write()
    for s in [PteStrategy::Atomic, PteStrategy::Persistent] {
        let v = MemoryVariant::Highmem4gHighpte;
        let mut sys = boot_with::<highpte_arch::TwoLevel>(v, 960 * MB, 2, |ko| {
            ko.strategy = s;
            ko.pkmap_entries = Some(16);
        });
        let b = quiesce(&mut sys);
        let code = run_process(&mut sys, |u| {
            let fd = u.open("pk", O_CREAT | O_RDWR).unwrap();
            let mut data = vec![0u8; 64 * 4096];
            fill(&mut data, 0, 9);
            u.write(fd, &data).unwrap();
            let a = u.mmap_file(0, 64 * 4096, RW, MAP_SHARED, fd, 0).unwrap();
            let _ = MAP_FIXED;
            for i in 0..64u32 {
                let off = (i * 4096 + 12) as usize;
                let w = u32::from_le_bytes(data[off..off + 4].try_into().unwrap());
                assert_eq!(u.load_u32(a + i * PAGE + 12).unwrap(), w);
            }
            u.lseek(fd, 0, SEEK_SET).unwrap();
            let mut back = vec![0u8; data.len()];
            assert_eq!(u.read(fd, &mut back), Ok(data.len()));
            assert_eq!(back, data);
            inv(u, "pkmap");
            u.munmap(a, 64 * 4096).unwrap();
            u.close(fd).unwrap();
            u.unlink("pk").unwrap();
            0
        });
        assert_eq!(code, 0, "{s}");
        assert!(
            sys.kernel().counters().get(Counter::Kmap) > 0,
            "{s}: read/write used kmap"
        );
        assert_no_leak(&mut sys, &b, &format!("{v} {s}"));
    }
}

/// A shared file mapping bigger than RAM, without swap: the page-table scan unmaps file pages
/// whose accessed bit is clear, the page-cache shrinker writes them back and frees them, and
/// every stamp stored through the mapping reads back (through the mapping and with read()).
fn mapping_bigger_than_ram<M: PagingMode>(v: MemoryVariant, ram: u64, what: &str) {
    let len = ram + 32 * MB;
    let sys = run_checked::<M>(v, ram, 1, what, move |u| {
        let fd = u.open("mapped", O_CREAT | O_RDWR).unwrap();
        u.ftruncate(fd, len as i64).unwrap();
        let n = (len / 4096) as u32;
        let a = u.mmap_file(0, len, RW, MAP_SHARED, fd, 0).unwrap();
        for i in 0..n {
            u.store_u32(a + i * PAGE + 8, stamp(i, 11)).unwrap();
        }
        for i in 0..n {
            assert_eq!(
                u.load_u32(a + i * PAGE + 8).unwrap(),
                stamp(i, 11),
                "page {i}"
            );
        }
        inv(u, "mapping bigger than RAM");
        u.munmap(a, len).unwrap();
        let mut b = [0u8; 4];
        for i in (0..n).step_by(1021) {
            u.lseek(fd, i as i64 * 4096 + 8, SEEK_SET).unwrap();
            u.read(fd, &mut b).unwrap();
            assert_eq!(u32::from_le_bytes(b), stamp(i, 11), "read page {i}");
        }
        u.close(fd).unwrap();
        u.unlink("mapped").unwrap();
        0
    });
    let k = sys.kernel();
    assert!(
        k.counters().get(Counter::PgUnmapped) > 0,
        "{v}: the scan unmapped no file page"
    );
    assert!(k.counters().get(Counter::FsPagesWritten) >= (len - ram) / 4096);
}

#[test]
fn shared_mapping_bigger_than_ram_is_written_back() {
    each_config("mapping bigger than RAM", |v, ram, what| {
        dispatch!(v, mapping_bigger_than_ram(v, ram, what))
    });
}

/// With swap: the copy-on-write copies of a private file mapping are anonymous pages, and
/// swap takes them when memory runs short; the file keeps its own data.
fn private_copies_swap<M: PagingMode>(v: MemoryVariant, ram: u64, what: &str) {
    let mut sys = boot_with::<M>(v, ram, 1, |ko| ko.swap_pages = 2 * ram / 4096);
    let b = quiesce(&mut sys);
    let len = ram + ram / 4;
    let code = run_process(&mut sys, move |u| {
        let fd = u.open("cow", O_CREAT | O_RDWR).unwrap();
        u.ftruncate(fd, len as i64).unwrap();
        let n = (len / 4096) as u32;
        let a = u.mmap_file(0, len, RW, MAP_PRIVATE, fd, 0).unwrap();
        for i in 0..n {
            u.store_u32(a + i * PAGE, stamp(i, 12)).unwrap();
        }
        for i in 0..n {
            assert_eq!(u.load_u32(a + i * PAGE).unwrap(), stamp(i, 12), "page {i}");
        }
        assert!(
            u.kernel().counters().get(Counter::Pswpout) > 0,
            "nothing swapped"
        );
        inv(u, "private copies swapped");
        u.munmap(a, len).unwrap();
        // the file itself was never written
        let mut buf = [0xffu8; 4096];
        u.lseek(fd, 4096 * 7, SEEK_SET).unwrap();
        assert_eq!(u.read(fd, &mut buf), Ok(4096));
        assert!(buf.iter().all(|&x| x == 0));
        u.close(fd).unwrap();
        u.unlink("cow").unwrap();
        0
    });
    assert_eq!(code, 0, "{v} {what}");
    assert_no_leak(&mut sys, &b, &format!("{v} {what}"));
    let q = quiesce(&mut sys);
    assert_eq!(q.mi.swap_free, q.mi.swap_total, "{v}: swap slots left");
    assert_eq!(q.mi.cached, 0);
}

#[test]
fn private_file_copies_are_swapped_like_anonymous_memory() {
    for (v, ram) in [FILE_CONFIGS[0], FILE_CONFIGS[3]] {
        dispatch!(v, private_copies_swap(v, ram, "private copies and swap"));
    }
}

/// The rmap design reclaims file pages too: a shared file mapping bigger than RAM, with its
/// ptes unmapped through their reverse-map chains (KM_PTE2), every stamp intact, no leak.
fn mapping_bigger_than_ram_rmap<M: PagingMode>(v: MemoryVariant, ram: u64, what: &str) {
    let mut sys = boot_with::<M>(v, ram, 2, |ko| {
        ko.swap_pages = ram / 4096;
        ko.reclaim = highpte_kernel::mm::reclaim::ReclaimKind::Rmap;
    });
    let b = quiesce(&mut sys);
    let len = ram + 32 * MB;
    let code = run_process(&mut sys, move |u| {
        let fd = u.open("rmapped", O_CREAT | O_RDWR).unwrap();
        u.ftruncate(fd, len as i64).unwrap();
        let n = (len / 4096) as u32;
        let a = u.mmap_file(0, len, RW, MAP_SHARED, fd, 0).unwrap();
        for i in 0..n {
            u.store_u32(a + i * PAGE + 8, stamp(i, 13)).unwrap();
        }
        for i in 0..n {
            assert_eq!(
                u.load_u32(a + i * PAGE + 8).unwrap(),
                stamp(i, 13),
                "page {i}"
            );
        }
        inv(u, "rmap mapping bigger than RAM");
        u.munmap(a, len).unwrap();
        u.close(fd).unwrap();
        u.unlink("rmapped").unwrap();
        0
    });
    assert_eq!(code, 0, "{v} {what}");
    let k = sys.kernel();
    assert!(
        k.counters().get(Counter::PgUnmapped) > 0,
        "{v}: rmap unmapped no file page"
    );
    assert!(k.counters().get(Counter::FsPagesWritten) >= (len - ram) / 4096);
    assert_no_leak(&mut sys, &b, &format!("{v} {what}"));
}

#[test]
fn rmap_reclaims_file_pages_through_their_chains() {
    for (v, ram) in [FILE_CONFIGS[0], FILE_CONFIGS[3]] {
        dispatch!(v, mapping_bigger_than_ram_rmap(v, ram, "rmap file mapping"));
    }
}
