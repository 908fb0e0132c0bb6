//! Words for error messages: serde's type names in plain words, "did you mean" suggestions
//! and a hint per key.

use super::backticked;
use crate::spec::PathSeg;

/// Replaces Rust type names in serde's "expected ..." with words.
pub(super) fn humanize(msg: &str) -> String {
    let mut m = msg.trim().replace(
        ", there are no fields",
        "; this op takes no keys besides `op`",
    );
    for (ty, words) in [
        ("u32", "a whole number from 0 to 4294967295"),
        ("u64", "a whole number, 0 or more"),
        ("i32", "a whole number from -2147483648 to 2147483647"),
        ("i64", "a whole number"),
        ("f64", "a number"),
        ("a sequence", "an array"),
        ("a map", "a table"),
    ] {
        let from = format!("expected {ty}");
        if m.ends_with(&from) {
            m.truncate(m.len() - from.len());
            m.push_str("expected ");
            m.push_str(words);
        }
    }
    m
}

/// The names listed after "expected one of" (or "expected"), backticked.
fn expected_names(msg: &str) -> Vec<String> {
    let Some(pos) = msg.find("expected") else {
        return Vec::new();
    };
    msg[pos..]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn did_you_mean(word: &str, msg: &str) -> Option<String> {
    if word.len() > 64 {
        return None;
    }
    expected_names(msg)
        .into_iter()
        // an adjacent transposition counts as one edit (optimal string alignment)
        .map(|n| (strsim::osa_distance(word, &n), n))
        .filter(|(d, n)| *d <= (n.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn key_hint(key: &str) -> Option<&'static str> {
    Some(match key {
        "name" | "region" | "child_phase" | "description" => "this is a string in quotes, e.g. name = \"heap\"",
        "config" => "config is one of \"nohighmem\", \"4g\", \"4g-highpte\", \"64g\", \"64g-highpte\"",
        "ram" => "ram is a size such as \"32G\" (16M to 64G)",
        "cpus" => "cpus is a whole number from 1 to 32, e.g. cpus = 4",
        "preempt" | "debug" | "shared" | "populate" | "may_move" | "create" | "readonly"
        | "write" | "stamp" => "this is true or false, without quotes",
        "strategy" => "strategy is one of \"lowmem\", \"atomic\", \"persistent\"",
        "pt_alloc" => "pt_alloc is one of \"pool\", \"quicklist\", \"buddy\"",
        "kernel" => "kernel is one of \"2.5\", \"linux-6.1\"",
        "seed" => "seed is a whole number, e.g. seed = 42",
        "count" => "count is a whole number without quotes, e.g. count = 100",
        "ramp" => "ramp is a table: ramp = { start = 100, step = 100 }",
        "start" | "step" | "repeat" | "children" | "ops" => "this is a whole number without quotes",
        "run_by" => "run_by is one of \"first\", \"all\", \"each_new\", \"children\"",
        "size" | "offset" | "stride" | "max_size" => "sizes are strings with a K, M or G suffix such as \"64M\", or whole numbers of bytes",
        "grow" => "grow is a signed size such as \"1M\" or \"-512K\"",
        "prot" => "prot is \"none\" or letters r, w, x such as \"r\", \"rw\", \"rwx\" in convenient ops; PROT_ names such as \"PROT_READ|PROT_WRITE\" (or an integer) in exact ops",
        "key" => "key is a whole number (the SysV IPC key), e.g. key = 1",
        "fixed_at" => "fixed_at is a page-aligned address such as 0x40000000",
        "pattern" => "pattern is \"sequential\", \"random\", { kind = \"strided\", stride = \"8K\" } or { kind = \"hot_cold\", hot_fraction = 0.1, hot_weight = 0.9 }",
        "hot_fraction" | "hot_weight" => "this is a number from 0 to 1, e.g. 0.1",
        "op" => "op is one of mmap, munmap, mprotect, mremap, brk, shmget, shmat, shmdt, shm_rmid, touch, fork, wait, pause, exit, random, file_write, file_read, mmap_file, msync, fsync, unlink; or, in the exact layer, load, store, proc, shmctl, open, close, read, write, lseek, ftruncate",
        "mix" => "mix is a table of whole-number weights, e.g. mix = { mmap = 10, read = 30 }",
        "addr" | "len" | "old_len" | "new_len" | "new_addr" | "fd" | "shmid" | "value" => "an argument is an integer, a size such as \"4K\", a name bound with as, or a name plus or minus a size such as \"buf+4K\"",
        "flags" | "cmd" | "whence" => "flags are an integer, names joined by | such as \"MAP_PRIVATE|MAP_ANONYMOUS\", or an array of names",
        "expect" => "expect is \"ok\", an errno name such as \"EINVAL\", a signal such as \"SIGSEGV\", or { value = ... }",
        "as" => "as is a name in quotes, e.g. as = \"buf\"",
        "phases" => "phases is an array of tables: [[phases]] then name = ..., ops = [ ... ]",
        "machine" => "machine is a table: [machine] then config = ..., ram = ...",
        "processes" => "processes is a table: [processes] then count = ...",
        _ => return None,
    })
}

pub(super) fn hint_for(msg: &str, path: &[PathSeg]) -> String {
    let last_key = path.iter().rev().find_map(|s| match s {
        PathSeg::Key(k) => Some(k.as_str()),
        PathSeg::Index(_) => None,
    });
    if let Some(field) = backticked(msg, "unknown field ") {
        return match did_you_mean(&field, msg) {
            Some(n) => format!("did you mean `{n}`? (keys are case-sensitive; see workloads/README.md)"),
            None => format!("remove `{field}`; the keys this table takes are listed above and in workloads/README.md"),
        };
    }
    if let Some(v) = backticked(msg, "unknown variant ") {
        return match did_you_mean(&v, msg) {
            Some(n) => format!("did you mean \"{n}\"?"),
            None => "use one of the names listed above".to_string(),
        };
    }
    if let Some(field) = backticked(msg, "missing field ") {
        return match key_hint(&field) {
            Some(h) => format!("add `{field}` to this table; {h}"),
            None => format!("add `{field}` to this table (see workloads/README.md)"),
        };
    }
    match last_key.and_then(key_hint) {
        Some(h) => h.to_string(),
        None => "see workloads/README.md for the keys and types of workload files".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let m = "unknown field `procesess`, expected one of `name`, `description`, `machine`, `processes`, `phases`";
        assert_eq!(did_you_mean("procesess", m).as_deref(), Some("processes"));
        assert_eq!(did_you_mean("zzzzzzzzzz", m), None);
        // a transposed pair is one edit
        assert_eq!(
            did_you_mean(
                "tuoch",
                "unknown variant `tuoch`, expected one of `touch`, `mmap`"
            )
            .as_deref(),
            Some("touch")
        );
    }

    #[test]
    fn humanized_types() {
        assert_eq!(
            humanize("invalid type: string \"four\", expected u32"),
            "invalid type: string \"four\", expected a whole number from 0 to 4294967295"
        );
    }
}
