//! File I/O through the command: a workload that writes a file bigger than RAM and reads it
//! back (written back, dropped and read in again, every stamp checked), shares a file between
//! processes through shared and private mappings and read(), and ends with no page cache left;
//! the page-cache columns of the step table; a read past the end of a file reported as the
//! process's failure.

mod cli_common;
use cli_common::*;

const FILES: &str = r#"
name = "files"
[machine]
config = "4g-highpte"
ram = "1G"
cpus = 2
[processes]
count = 2
[[phases]]
name = "write"
run_by = "first"
ops = [
    { op = "file_write", file = "big", size = "1280M" },
    { op = "file_write", file = "shared", size = "4M" },
]
[[phases]]
name = "share"
run_by = "all"
ops = [
    { op = "mmap_file", name = "m", file = "shared" },
    { op = "touch", region = "m", write = true, pattern = "random", count = 300 },
    { op = "msync", region = "m" },
    { op = "file_read", file = "shared" },
    { op = "mmap_file", name = "p", file = "shared", shared = false },
    { op = "touch", region = "p", write = true, pattern = "random", count = 100 },
    { op = "touch", region = "p" },
    { op = "file_read", file = "shared" },
    { op = "file_write", file = "own-{p}", size = "1M" },
    { op = "fsync", file = "own-{p}" },
    { op = "file_read", file = "own-{p}" },
]
[[phases]]
name = "read back"
run_by = "first"
ops = [
    { op = "file_read", file = "big" },
    { op = "unlink", file = "big" },
]
"#;

#[test]
fn a_file_bigger_than_ram_is_written_back_and_read_again_with_every_stamp() {
    let dir = tmp_dir("files");
    let f = write_file(&dir, "files.toml", FILES);
    let v = json_of(&["run", &f, "--json", "--quiet"]);
    assert_eq!(v["check_failures"].as_array().unwrap().len(), 0, "{v}");
    assert!(v["first_failure"].is_null(), "{v}");
    let c = &v["counters"];
    // pages of the big file
    let big = 1280u64 << 8;
    // the file does not fit: what reclaim took to make room was written back first, and the
    // read-back found those pages on the disk (about 106,000 pages each way with this build: the
    // high-memory cache turns over while the low-memory part of the cache stays)
    let written = c["fs_pages_written"].as_u64().unwrap();
    let read = c["fs_pages_read"].as_u64().unwrap();
    assert!(written >= big - (1 << 18), "written {written}: {c}");
    assert!(read >= big - (1 << 18), "read {read}: {c}");
    assert!(
        c["pgsteal_pagecache"].as_u64().unwrap() >= big - (1 << 18),
        "{c}"
    );
    // read() and write() copy through kmap where the page-cache page is in high memory (128M
    // of this machine's 1G)
    assert!(c["kmap"].as_u64().unwrap() > 32_768, "{c}");
    // shared and private mappings of the file faulted pages of it in
    assert!(c["faults_file"].as_u64().unwrap() > 0, "{c}");
    // every file removed at the end, its page cache with it; nothing leaked
    assert_eq!(v["meminfo_end"]["Cached"], 0, "{v}");
    assert_eq!(v["meminfo_end"]["Dirty"], 0, "{v}");
    // one step: big + shared + 2 x own (256 pages each) + 2 x (1024 + 1024) shared pages read
    let s = &v["steps"][0];
    assert_eq!(s["file_reads"], big + 2 * 256 + 2 * 2 * 1024, "{s}");
    assert!(s["disk_reads"].as_u64().unwrap() >= read - 10, "{s}");
}

#[test]
fn the_step_table_shows_the_page_cache_and_a_read_past_the_end_fails_the_process() {
    let dir = tmp_dir("files-table");
    let text = r#"
name = "short"
[machine]
config = "nohighmem"
ram = "64M"
cpus = 1
[processes]
count = 1
[[phases]]
name = "w"
ops = [
    { op = "file_write", file = "f", size = "1M" },
    { op = "file_read", file = "f" },
    { op = "file_read", file = "f", offset = "1M", size = "4K" },
]
"#;
    let f = write_file(&dir, "short.toml", text);
    let out = stdout_of(&["run", &f, "--quiet"]);
    assert!(out.contains("Cached"), "{out}");
    assert!(out.contains("read() hits"), "{out}");
    // 256 pages read, all from the page cache
    assert!(out.contains("100.0%"), "{out}");
    let v = json_of(&["run", &f, "--json", "--quiet"]);
    let ff = &v["first_failure"];
    assert_eq!(ff["call"], "file_read", "{v}");
    assert!(
        ff["errno_or_signal"]
            .as_str()
            .unwrap()
            .contains("past its end (256 pages)"),
        "{ff}"
    );
    assert_eq!(v["check_failures"].as_array().unwrap().len(), 0, "{v}");
}
