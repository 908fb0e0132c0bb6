//! Page traces of real programs (PGT1, described in docs/traces.md): a streaming reader and
//! writer, one pass that summarises a trace, the fold into the i386 user space, and the
//! converter from valgrind lackey output.

pub mod fold;
pub mod lackey;
pub mod reader;
pub mod record;
pub mod scan;
pub mod spool;
pub mod writer;

pub use fold::{Fold, TASK_SIZE_PAGE};
pub use reader::{open_trace, TraceError, TraceErrorKind, TraceReader};
pub use record::{AccessKind, Record};
pub use scan::{scan_trace, PageSet, TraceInfo};
pub use spool::{scan_and_spool, Spool};
pub use writer::TraceWriter;

/// True if `name` looks like a trace (`.pgt` or `.pgt.zst`) rather than a workload file.
pub fn is_trace_path(name: &str) -> bool {
    name.ends_with(".pgt") || name.ends_with(".pgt.zst")
}

/// The workload `highpte replay TRACE --instances N` runs (and `run`/`compare`/`sweep` run
/// when given a trace instead of a workload), on the default machine. Each instance replays
/// the trace once and then stays alive, so that the step reports hold every instance's memory
/// and page tables. With `forked` false, the instances are `instances` top-level processes,
/// each mapping the program itself (like an exec); with `forked` true, one parent runs the
/// exec part of the trace (initial regions mapped, text loaded) and forks the instances, which
/// share the text copy-on-write.
pub fn replay_workload(
    trace: &str,
    instances: u32,
    forked: bool,
) -> Result<crate::WorkloadSpec, String> {
    let base = std::path::Path::new(trace)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| trace.to_string());
    let name = toml_string(&format!("replay {base}"));
    let path = toml_string(trace);
    let text = if forked {
        format!(
            "name = {name}\ndescription = {desc}\n[processes]\ncount = 1\n[[phases]]\nname = \"exec\"\nrun_by = \"first\"\nops = [{{ op = \"replay\", trace = {path}, part = \"exec\" }}, {{ op = \"fork\", children = {instances}, child_phase = \"instance\" }}, {{ op = \"pause\" }}]\n[[phases]]\nname = \"instance\"\nrun_by = \"children\"\nops = [{{ op = \"replay\", trace = {path}, part = \"after_exec\" }}, {{ op = \"pause\" }}]\n",
            desc = toml_string(&format!(
                "{instances} instance(s) of the page trace {trace}, forked from one parent that loaded the text, each replayed once and kept alive"
            )),
        )
    } else {
        format!(
            "name = {name}\ndescription = {desc}\n[processes]\ncount = {instances}\n[[phases]]\nname = \"replay\"\nrun_by = \"each_new\"\nops = [{{ op = \"replay\", trace = {path} }}, {{ op = \"pause\" }}]\n",
            desc = toml_string(&format!(
                "{instances} instance(s) of the page trace {trace}, each replayed once and kept alive"
            )),
        )
    };
    crate::parse_workload(&text, "(replay)").map_err(|e| e.to_string())
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
