//! Page traces of real programs (PGT1, described in docs/traces.md): a streaming reader and
//! writer, one pass that summarises a trace, the fold into the i386 user space, and the
//! converter from valgrind lackey output.

pub mod fold;
pub mod lackey;
pub mod reader;
pub mod record;
pub mod scan;
pub mod writer;

pub use fold::{Fold, TASK_SIZE_PAGE};
pub use reader::{open_trace, TraceError, TraceErrorKind, TraceReader};
pub use record::{AccessKind, Record};
pub use scan::{scan_trace, PageSet, TraceInfo};
pub use writer::TraceWriter;

/// True if `name` looks like a trace (`.pgt` or `.pgt.zst`) rather than a workload file.
pub fn is_trace_path(name: &str) -> bool {
    name.ends_with(".pgt") || name.ends_with(".pgt.zst")
}
