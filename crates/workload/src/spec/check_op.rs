//! Checks of each op's own values (sizes, offsets, counts, file names), before names are
//! followed through the phases.

use super::{with, Checker, Op, PathSeg, Pattern, Size, MAX_FILE, MAX_PROCESSES, USER_SPACE};
use highpte_arch::size::DisplaySize;
use highpte_arch::PAGE_SIZE;

pub(super) fn check_range(
    len: Option<u64>,
    offset: Size,
    size: Option<Size>,
    p: &[PathSeg],
    c: &mut Checker,
) {
    if !offset.0.is_multiple_of(PAGE_SIZE) {
        c.push(
            with(p, "offset"),
            format!(
                "offset = {} is not page-aligned; expected a multiple of 4K",
                offset.0
            ),
            "use an offset such as \"4K\" or \"1M\"",
        );
        return;
    }
    if let Some(s) = size {
        if s.0 == 0 {
            c.push(
                with(p, "size"),
                "size = 0; expected at least 1 byte",
                "remove size to cover the rest of the region",
            );
            return;
        }
    }
    let Some(len) = len else { return };
    let len = len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    if offset.0 >= len {
        c.push(
            with(p, "offset"),
            format!(
                "offset {} is past the end of the region ({})",
                offset,
                DisplaySize(len)
            ),
            "use an offset inside the region",
        );
    } else if let Some(s) = size {
        if s.0 > len - offset.0 {
            c.push(
                with(p, "size"),
                format!(
                    "offset {} + size {} runs past the end of the region ({})",
                    offset,
                    s,
                    DisplaySize(len)
                ),
                "shrink size, or remove it to cover the rest of the region",
            );
        }
    }
}

fn check_map_size(size: Size, p: &[PathSeg], what: &str, c: &mut Checker) {
    if size.0 == 0 {
        c.push(
            with(p, "size"),
            format!("{what} size = 0; expected 1 byte to 3G"),
            "use a size such as \"64M\"",
        );
    } else if size.0 > USER_SPACE {
        c.push(
            with(p, "size"),
            format!(
                "{what} size = \"{size}\" is larger than the 3G user address space (0xC0000000 bytes)"
            ),
            "a process can map at most 3G (the kernel owns the top 1G); use a smaller size, or several processes",
        );
    }
}

pub(super) fn file_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty file name")
    } else if name.len() > 255 {
        Some("the file name is longer than 255 bytes (NAME_MAX)")
    } else if name.contains(['/', '\0']) {
        Some("the file name contains '/' or a NUL byte; the file system is one flat directory")
    } else {
        None
    }
}

fn check_file_name(name: &str, p: &[PathSeg], c: &mut Checker) {
    if let Some(m) = file_name_problem(name) {
        c.push(
            with(p, "file"),
            m,
            "use a short name such as file = \"data\"",
        );
    }
}

fn check_file_range(offset: Size, size: Option<Size>, p: &[PathSeg], c: &mut Checker) {
    if !offset.0.is_multiple_of(PAGE_SIZE) {
        c.push(
            with(p, "offset"),
            format!(
                "offset = {} is not page-aligned; expected a multiple of 4K",
                offset.0
            ),
            "use an offset such as \"4K\" or \"1M\"",
        );
    }
    if size == Some(Size(0)) {
        c.push(
            with(p, "size"),
            "size = 0; expected at least 1 byte",
            "use a size such as \"64M\"",
        );
    }
    let end = offset.0.saturating_add(size.map_or(0, |s| s.0));
    if end > MAX_FILE {
        c.push(
            with(p, if size.is_some() { "size" } else { "offset" }),
            format!(
                "the range ends at {} bytes, past the largest file (1T)",
                end
            ),
            "keep offset + size at most \"1T\"",
        );
    }
}

fn check_count_pattern(count: Option<u64>, pattern: Pattern, p: &[PathSeg], c: &mut Checker) {
    if count == Some(0) {
        c.push(
            with(p, "count"),
            "count = 0; expected at least 1 access",
            "remove count for one access per page",
        );
    }
    match pattern {
        Pattern::Strided { stride } if stride.0 == 0 => c.push(
            with(p, "pattern"),
            "strided pattern with stride = 0; expected at least 1 byte",
            "use e.g. pattern = { kind = \"strided\", stride = \"8K\" }",
        ),
        Pattern::HotCold {
            hot_fraction,
            hot_weight,
        } => {
            if !(hot_fraction > 0.0 && hot_fraction <= 1.0) {
                c.push(
                            with(p, "pattern"),
                            format!("hot_fraction = {hot_fraction} is out of range; expected more than 0 and at most 1"),
                            "use e.g. hot_fraction = 0.1 (10% of the pages are hot)",
                        );
            }
            if !(0.0..=1.0).contains(&hot_weight) {
                c.push(
                            with(p, "pattern"),
                            format!("hot_weight = {hot_weight} is out of range; expected a probability from 0 to 1"),
                            "use e.g. hot_weight = 0.9 (90% of the accesses go to the hot pages)",
                        );
            }
        }
        _ => {}
    }
}

/// Reports an empty region name under key `k`.
fn check_name(name: &str, k: &str, p: &[PathSeg], c: &mut Checker) {
    if name.trim().is_empty() {
        c.push(
            with(p, k),
            "empty region name",
            "name the region, e.g. name = \"heap\"",
        );
    }
}

/// The values of one op that need no other op to judge.
pub(super) fn check_op_values(op: &Op, p: &[PathSeg], c: &mut Checker) {
    if check_vm_op_values(op, p, c) || check_file_op_values(op, p, c) {
        return;
    }
    match op {
        Op::Fork { children, .. } => {
            if *children == 0 {
                c.push(
                    with(p, "children"),
                    "children = 0; expected at least 1",
                    "use children = 1 or more",
                );
            } else if *children > MAX_PROCESSES {
                c.push(
                    with(p, "children"),
                    format!(
                        "children = {children} is more than the {MAX_PROCESSES} pids Linux 2.5 has"
                    ),
                    "fork fewer children",
                );
            }
        }
        Op::Random { ops, mix, max_size } => {
            if *ops == 0 {
                c.push(
                    with(p, "ops"),
                    "ops = 0; expected at least 1 random operation",
                    "use e.g. ops = 2000",
                );
            }
            if mix.total() == 0 {
                c.push(
                    with(p, "mix"),
                    "every weight of the mix is 0; expected at least one above 0",
                    "remove mix to use the default weights",
                );
            }
            if max_size.0 < PAGE_SIZE || max_size.0 > USER_SPACE {
                c.push(
                    with(p, "max_size"),
                    format!("max_size = \"{max_size}\" is out of range; expected 4K to 3G"),
                    "use e.g. max_size = \"1M\"",
                );
            }
        }
        Op::Replay { trace, .. } if trace.trim().is_empty() => {
            c.push(
                with(p, "trace"),
                "empty trace path",
                "give the path of a .pgt or .pgt.zst file, e.g. trace = \"sqlite.pgt.zst\"",
            );
        }
        _ => {}
    }
}

/// The memory-mapping ops (mmap, mremap, shm, brk, touch); false for any other op.
fn check_vm_op_values(op: &Op, p: &[PathSeg], c: &mut Checker) -> bool {
    match op {
        Op::Mmap {
            name,
            size,
            fixed_at,
            ..
        } => {
            check_name(name, "name", p, c);
            check_map_size(*size, p, "mmap", c);
            if let Some(a) = *fixed_at {
                let a = u64::from(a);
                if !a.is_multiple_of(PAGE_SIZE) {
                    c.push(
                        with(p, "fixed_at"),
                        format!("fixed_at = {a:#x} is not page-aligned"),
                        "use a multiple of 0x1000, e.g. fixed_at = 0x40000000",
                    );
                } else if a == 0 || a.saturating_add(size.0) > USER_SPACE {
                    c.push(
                        with(p, "fixed_at"),
                        format!(
                            "fixed_at = {a:#x} with size \"{size}\" does not fit in user space (0x1000 to 0xC0000000)"
                        ),
                        "choose an address so that fixed_at + size <= 0xC0000000, or remove fixed_at",
                    );
                }
            }
        }
        Op::Mremap { size, .. } => check_map_size(*size, p, "mremap", c),
        Op::Shmget { size, .. } => check_map_size(*size, p, "shmget", c),
        Op::Shmat { name, .. } => check_name(name, "name", p, c),
        Op::Brk { grow } => {
            if grow.0.unsigned_abs() > USER_SPACE {
                c.push(
                    with(p, "grow"),
                    format!("brk grow = \"{grow}\" is larger than the 3G user address space"),
                    "use a smaller change, e.g. grow = \"1M\" or \"-512K\"",
                );
            }
        }
        Op::Touch { count, pattern, .. } => check_count_pattern(*count, *pattern, p, c),
        _ => return false,
    }
    true
}

/// The file ops; false for any other op.
fn check_file_op_values(op: &Op, p: &[PathSeg], c: &mut Checker) -> bool {
    match op {
        Op::FileWrite {
            file,
            size,
            offset,
            count,
            pattern,
        } => {
            check_file_name(file, p, c);
            check_file_range(*offset, Some(*size), p, c);
            check_count_pattern(*count, *pattern, p, c);
        }
        Op::FileRead {
            file,
            offset,
            size,
            count,
            pattern,
        } => {
            check_file_name(file, p, c);
            check_file_range(*offset, *size, p, c);
            check_count_pattern(*count, *pattern, p, c);
        }
        Op::MmapFile {
            name,
            file,
            offset,
            size,
            ..
        } => {
            check_name(name, "name", p, c);
            check_file_name(file, p, c);
            check_file_range(*offset, None, p, c);
            if let Some(s) = size {
                check_map_size(*s, p, "mmap_file", c);
            }
        }
        Op::Fsync { file } | Op::Unlink { file } => check_file_name(file, p, c),
        _ => return false,
    }
    true
}
