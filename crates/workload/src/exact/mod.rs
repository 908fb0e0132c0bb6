//! The exact layer of workload files: system calls with their raw i386 arguments, results
//! bound to names (`as`), expected outcomes (`expect`), memory accesses at any address and
//! `/proc` views. It sits beside the convenient layer (named regions, `touch` patterns, data
//! stamps): an op table is exact when its op exists only here (`load`, `store`, `proc`,
//! `shmctl`, the file descriptor calls), when it has a key only this layer uses (`addr`,
//! `len`, `flags`, `as`, ...), or when `expect` is its only such key and it is a valid exact
//! op ([`is_exact`]); a convenient op may carry `expect` too, judged by the same
//! `expect::judge`. Format: `workloads/README.md`, "The exact layer".

pub mod call;
pub mod check;
pub(crate) mod expect;
pub mod proc_view;
pub(crate) mod run;
pub mod value;

pub use call::{Call, ProcWhat};
pub use proc_view::{ProcRecord, ProcSnapshot};
pub use value::{Bits, Expect, Expr};

use serde::de::{self, Deserialize};
use serde::{Serialize, Serializer};

/// One op of the exact layer: the call, the name its result is bound to, and what it is
/// expected to do.
#[derive(Debug, Clone)]
pub struct ExactOp {
    /// The call and its arguments.
    pub call: Call,
    /// `as`: the name the returned value is bound to (an address, a segment id, a pid ...).
    pub bind: Option<String>,
    /// `expect`: the outcome the op must have; without it a failure ends the process as in
    /// the convenient layer.
    pub expect: Option<Expect>,
    /// Where the op is written (`FILE:LINE:COLUMN`), for reports; empty if not from a file.
    pub at: String,
}

impl PartialEq for ExactOp {
    /// Equal ops are equal wherever they are written.
    fn eq(&self, o: &Self) -> bool {
        self.call == o.call && self.bind == o.bind && self.expect == o.expect
    }
}

/// Built-in names every process has: the start of the heap, the current break, the top of
/// the stack area, `TASK_SIZE` and `PAGE_SIZE`.
pub const BUILTIN_NAMES: &[&str] = &["heap_start", "brk", "stack_top", "TASK_SIZE", "PAGE_SIZE"];

/// Keys of the convenient layer's ops that the exact layer does not take: a table mixing them
/// with `expect` or `as` gets a message that says how to write it.
const CONVENIENT_KEYS: &[&str] = &[
    "region", "name", "shared", "fixed_at", "populate", "grow", "readonly", "create", "children",
    "file", "stamp", "may_move",
];

/// The expectation of a convenient op: what it must do, and where it is written.
#[derive(Debug, Clone)]
pub struct OpExpect {
    /// `expect`: the outcome the op must have.
    pub expect: Expect,
    /// Where the op is written (`FILE:LINE:COLUMN`), for reports; empty if not from a file.
    pub at: String,
}

impl PartialEq for OpExpect {
    /// Equal expectations are equal wherever they are written.
    fn eq(&self, o: &Self) -> bool {
        self.expect == o.expect
    }
}

/// True if the op table `v` belongs to the exact layer: its op exists only there, it has a
/// key only that layer uses (`addr`, `len`, `as` ...), or it has `expect` and is a valid
/// exact op. That last rule keeps a table valid in both layers exact: `{ op = "wait", expect
/// = "ECHILD" }` is one `wait(2)` that must fail with `ECHILD`, not the convenient `wait` that
/// loops until no child is left. Any other table with `expect` is a convenient op with an
/// expectation (`{ op = "touch", region = "r", expect = "SIGSEGV" }`).
pub fn is_exact(v: &toml::Value) -> bool {
    v.as_table().is_some_and(is_exact_table)
}

/// [`is_exact`] of a table.
pub(crate) fn is_exact_table(t: &toml::Table) -> bool {
    let op = t.get("op").and_then(|o| o.as_str()).unwrap_or("");
    if call::EXACT_ONLY_OPS.contains(&op) || call::EXACT_KEYS.iter().any(|k| t.contains_key(*k)) {
        return true;
    }
    t.contains_key("expect") && ExactOp::from_value(toml::Value::Table(t.clone())).is_ok()
}

impl ExactOp {
    /// Reads an exact op from its table.
    pub fn from_value(v: toml::Value) -> Result<Self, toml::de::Error> {
        let toml::Value::Table(mut t) = v else {
            return Err(de::Error::custom(
                "invalid type: expected an op table such as { op = \"load\", addr = \"buf\" }",
            ));
        };
        let bind = match t.remove("as") {
            None => None,
            Some(toml::Value::String(s)) if value::is_name(&s) && !BUILTIN_NAMES.contains(&s.as_str()) => Some(s),
            Some(toml::Value::String(s)) => {
                return Err(de::Error::custom(format!(
                    "invalid value: as = \"{s}\", expected a name: a letter or _, then letters, digits, _ or . (not a built-in name: {})",
                    BUILTIN_NAMES.join(", ")
                )))
            }
            Some(other) => {
                return Err(de::Error::custom(format!(
                    "invalid type: {} `{other}`, expected a name in quotes for `as`",
                    other.type_str()
                )))
            }
        };
        let expect = t.remove("expect").map(Expect::deserialize).transpose()?;
        let call = Call::deserialize(toml::Value::Table(t)).map_err(|e| {
            let field = e
                .message()
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
                .filter(|f| CONVENIENT_KEYS.contains(f))
                .map(str::to_string);
            match field {
                Some(k) => de::Error::custom(format!(
                    "unknown field `{k}`: with as or another exact key this op is in the exact layer, which takes addresses and lengths, not region names; write it with addr and len, e.g. {{ op = \"touch\", addr = \"heap\", len = \"64M\", expect = \"SIGSEGV\" }}"
                )),
                None => e,
            }
        })?;
        Ok(ExactOp {
            call,
            bind,
            expect,
            at: String::new(),
        })
    }
}

#[derive(Serialize)]
struct Written<'a> {
    #[serde(flatten)]
    call: &'a Call,
    #[serde(rename = "as", skip_serializing_if = "Option::is_none")]
    bind: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expect: &'a Option<Expect>,
}

impl Serialize for ExactOp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Written {
            call: &self.call,
            bind: &self.bind,
            expect: &self.expect,
        }
        .serialize(s)
    }
}

/// Writes into every exact op of `spec`, and every convenient op's expectation, where it
/// stands in `text` (`FILE:LINE:COLUMN`), for the messages of unmet expectations.
pub(crate) fn place_ops(spec: &mut crate::spec::WorkloadSpec, text: &str, file_name: &str) {
    use crate::file::{line_col, locate_path, Node};
    use crate::spec::{Op, PathSeg};
    let expects = spec
        .phases
        .iter()
        .any(|p| p.expects.iter().any(Option::is_some));
    if !spec.uses_exact_layer() && !expects {
        return;
    }
    let tree = toml::from_str::<toml::Spanned<Node>>(text).ok();
    for (i, ph) in spec.phases.iter_mut().enumerate() {
        for (j, op) in ph.ops.iter_mut().enumerate() {
            let at = match (op, ph.expects.get_mut(j).and_then(Option::as_mut)) {
                (Op::Exact(e), _) => &mut e.at,
                (_, Some(x)) => &mut x.at,
                _ => continue,
            };
            let path = [
                PathSeg::Key("phases".into()),
                PathSeg::Index(i),
                PathSeg::Key("ops".into()),
                PathSeg::Index(j),
            ];
            let offset = tree.as_ref().map_or(0, |t| locate_path(t, &path));
            let (line, column) = line_col(text, offset);
            *at = format!("{file_name}:{line}:{column}");
        }
    }
}

impl crate::spec::WorkloadSpec {
    /// True if any op belongs to the exact layer (the report then carries `/proc` views).
    pub fn uses_exact_layer(&self) -> bool {
        self.phases
            .iter()
            .any(|p| p.ops.iter().any(|o| matches!(o, crate::spec::Op::Exact(_))))
    }
}
