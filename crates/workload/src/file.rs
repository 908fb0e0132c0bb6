//! Reading workload files: TOML text to a validated [`WorkloadSpec`], or a [`WorkloadError`]
//! naming the file, line and column, what was expected, and how to fix it.
//!
//! Errors come in three kinds ([`ErrorKind`]): TOML syntax, a value of the wrong shape (an
//! unknown key, a wrong type, an unknown name), and a value that parsed but is impossible (see
//! [`WorkloadSpec::validate`]). For the last two the position is that of the offending key or
//! value, found by parsing the document a second time into a tree of spans.
//!
//! Nothing here panics, whatever the input.

mod hint;

use crate::spec::{display_path, PathSeg, WorkloadSpec};
use hint::{hint_for, humanize};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// The exit status the `highpte` command uses for bad input, including every [`WorkloadError`].
pub const EXIT_BAD_INPUT: i32 = 2;

/// What kind of mistake a [`WorkloadError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The file could not be read (missing, unreadable, not UTF-8). No position.
    Io,
    /// The text is not valid TOML.
    Syntax,
    /// Valid TOML, but a key is unknown, missing, or has a value of the wrong type or name.
    Shape,
    /// Every key is known and well-typed, but a value is impossible (0 processes, a mapping
    /// larger than the user address space, more RAM than the configuration can address, a
    /// region used before it is defined, ...).
    Invalid,
}

/// A workload file that cannot be used. `Display`s as
/// `FILE:LINE:COL: error: MESSAGE` and, on the next line, `  hint: HINT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct WorkloadError {
    /// The file name as given (or `<builtin NAME>`).
    pub file: String,
    /// 1-based line of the offending text; 0 if there is no position ([`ErrorKind::Io`]).
    pub line: usize,
    /// 1-based column (in characters) of the offending text; 0 if there is no position.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
    /// How to fix it.
    pub hint: String,
    /// The kind of mistake.
    pub kind: ErrorKind,
}

impl WorkloadError {
    /// The exit status for this error: always [`EXIT_BAD_INPUT`] (2).
    pub fn exit_code(&self) -> i32 {
        EXIT_BAD_INPUT
    }

    fn render(&self) -> String {
        let msg = one_line(&self.message);
        let hint = one_line(&self.hint);
        if self.line == 0 {
            format!("{}: error: {}\n  hint: {}", self.file, msg, hint)
        } else {
            format!(
                "{}:{}:{}: error: {}\n  hint: {}",
                self.file, self.line, self.column, msg, hint
            )
        }
    }
}

fn one_line(s: &str) -> String {
    s.trim().replace('\n', "; ")
}

/// Reads and validates the workload file at `path`.
pub fn load_workload(path: &Path) -> Result<WorkloadSpec, WorkloadError> {
    let file = path.display().to_string();
    match crate::limits::read_workload_file(path) {
        Err((message, hint)) => Err(WorkloadError {
            file,
            line: 0,
            column: 0,
            message,
            hint,
            kind: ErrorKind::Io,
        }),
        Ok(bytes) => match String::from_utf8(bytes) {
            Err(e) => {
                let (line, column) = line_col_bytes(e.as_bytes(), e.utf8_error().valid_up_to());
                Err(WorkloadError {
                    file,
                    line,
                    column,
                    message: "the file is not UTF-8 text".to_string(),
                    hint: "workload files are TOML, which must be UTF-8; save it as UTF-8"
                        .to_string(),
                    kind: ErrorKind::Syntax,
                })
            }
            Ok(text) => parse_workload(&text, &file),
        },
    }
}

/// Parses and validates workload TOML `text`; `file_name` is used in errors only.
pub fn parse_workload(text: &str, file_name: &str) -> Result<WorkloadSpec, WorkloadError> {
    match toml::from_str::<WorkloadSpec>(text) {
        Ok(mut spec) => match spec.validate() {
            Ok(()) => {
                crate::exact::place_ops(&mut spec, text, file_name);
                Ok(spec)
            }
            Err(problems) => {
                let tree = toml::from_str::<Spanned<Node>>(text).ok();
                // `validate` never returns an empty list, but do not rely on it.
                let Some(p) = problems.into_iter().next() else {
                    return Ok(spec);
                };
                let offset = tree.as_ref().map_or(0, |t| locate_path(t, &p.path));
                let (line, column) = line_col(text, offset);
                Err(WorkloadError {
                    file: file_name.to_string(),
                    line,
                    column,
                    message: format!("{}: {}", display_path(&p.path), p.message),
                    hint: p.hint,
                    kind: ErrorKind::Invalid,
                })
            }
        },
        Err(e) => Err(shape_or_syntax_error(text, file_name, &e)),
    }
}

fn shape_or_syntax_error(text: &str, file: &str, e: &toml::de::Error) -> WorkloadError {
    let span = e.span().unwrap_or(0..0);
    let raw = e.message().to_string();
    let value = match text.parse::<toml::Table>() {
        Ok(v) => v,
        Err(se) => {
            // Not TOML at all: report the parser's own words.
            let span = se.span().or(e.span()).unwrap_or(0..0);
            let (line, column) = line_col(text, span.start);
            return WorkloadError {
                file: file.to_string(),
                line,
                column,
                message: format!("invalid TOML: {}", se.message()),
                hint: "check the TOML syntax here: strings need quotes (ram = \"32G\"), tables are [name], arrays of tables [[phases]], one key = value per line, each key once".to_string(),
                kind: ErrorKind::Syntax,
            };
        }
    };
    let found = match toml::from_str::<Spanned<Node>>(text) {
        Ok(tree) => refine(&tree, &toml::Value::Table(value), &span, &raw),
        // Valid TOML the span tree cannot walk (a date-time somewhere): use the error's span.
        Err(_) => Found {
            offset: span.start,
            path: Vec::new(),
            message: raw.clone(),
        },
    };
    let (line, column) = line_col(text, found.offset);
    let where_ = display_path(&found.path);
    let mut message = humanize(&found.message);
    if let Some(range) = crate::limits::key_range(&found.path) {
        message = message.replace("a whole number from 0 to 4294967295", range);
    }
    let message = if where_.is_empty() {
        message
    } else {
        format!("{where_}: {message}")
    };
    WorkloadError {
        file: file.to_string(),
        line,
        column,
        message,
        hint: hint_for(&found.message, &found.path),
        kind: ErrorKind::Shape,
    }
}

// ---------------------------------------------------------------------------------------------
// A tree of spans, to find keys and values by path or by content
// ---------------------------------------------------------------------------------------------

/// Any TOML value, with the spans of every key and value inside it.
#[derive(Debug)]
pub(crate) enum Node {
    Table(Vec<(Spanned<String>, Spanned<Node>)>),
    Array(Vec<Spanned<Node>>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Other,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any TOML value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
                Ok(i64::try_from(v).map_or(Node::Other, Node::Int))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
                Ok(Node::Str(v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Node::Array(v))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = a.next_key::<Spanned<String>>()? {
                    if k.get_ref().starts_with("$__toml_private") {
                        // A date-time: keep it as an opaque leaf.
                        let _ = a.next_value::<de::IgnoredAny>()?;
                        return Ok(Node::Other);
                    }
                    let x = a.next_value()?;
                    v.push((k, x));
                }
                Ok(Node::Table(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Byte offset of the key (or value) at `path`; the nearest enclosing one found if part of the
/// path is not in the file (a default value).
pub(crate) fn locate_path(root: &Spanned<Node>, path: &[PathSeg]) -> usize {
    let mut node = root;
    let mut offset = 0;
    for seg in path {
        match (node.get_ref(), seg) {
            (Node::Table(entries), PathSeg::Key(k)) => {
                match entries.iter().find(|(key, _)| key.get_ref() == k) {
                    Some((key, value)) => {
                        offset = key.span().start;
                        node = value;
                    }
                    None => return offset,
                }
            }
            (Node::Array(items), PathSeg::Index(i)) => match items.get(*i) {
                Some(item) => {
                    offset = item.span().start;
                    node = item;
                }
                None => return offset,
            },
            _ => return offset,
        }
    }
    offset
}

/// Where a serde error points, after refinement, and the message to report.
struct Found {
    offset: usize,
    path: Vec<PathSeg>,
    message: String,
}

/// The node whose value span is exactly `span` (the innermost), with its path; or the key with
/// that span, with the path of that key.
fn find_span<'a>(
    node: &'a Spanned<Node>,
    span: &Range<usize>,
    path: &mut Vec<PathSeg>,
    best: &mut Option<(&'a Spanned<Node>, Vec<PathSeg>, bool)>,
) {
    if node.span() == *span {
        *best = Some((node, path.clone(), false));
    }
    match node.get_ref() {
        Node::Table(entries) => {
            for (k, v) in entries {
                path.push(PathSeg::Key(k.get_ref().clone()));
                if k.span() == *span {
                    *best = Some((v, path.clone(), true));
                }
                find_span(v, span, path, best);
                path.pop();
            }
        }
        Node::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(PathSeg::Index(i));
                find_span(v, span, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Depth-first search below `node` for the first key named `name`.
fn find_key(node: &Spanned<Node>, name: &str, path: &mut Vec<PathSeg>) -> Option<usize> {
    match node.get_ref() {
        Node::Table(entries) => {
            for (k, _) in entries {
                if k.get_ref() == name {
                    path.push(PathSeg::Key(k.get_ref().clone()));
                    return Some(k.span().start);
                }
            }
            for (k, v) in entries {
                path.push(PathSeg::Key(k.get_ref().clone()));
                if let Some(o) = find_key(v, name, path) {
                    return Some(o);
                }
                path.pop();
            }
            None
        }
        Node::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(PathSeg::Index(i));
                if let Some(o) = find_key(v, name, path) {
                    return Some(o);
                }
                path.pop();
            }
            None
        }
        _ => None,
    }
}

/// How serde names a leaf value in its messages (`string "x"`, ``integer `5` ``...), and the
/// bare form used by unknown-variant messages (`` `x` ``).
fn leaf_forms(n: &Node) -> Vec<String> {
    match n {
        Node::Str(s) => vec![format!("string {s:?}"), format!("`{s}`")],
        Node::Int(i) => vec![format!("integer `{i}`")],
        Node::Float(f) => vec![format!("floating point `{f}`")],
        Node::Bool(b) => vec![format!("boolean `{b}`")],
        Node::Table(_) => vec!["invalid type: map".to_string()],
        Node::Array(_) => vec!["invalid type: sequence".to_string()],
        Node::Other => Vec::new(),
    }
}

/// Depth-first search below `node` (itself excluded) for the first value the message quotes.
fn find_leaf(node: &Spanned<Node>, msg: &str, path: &mut Vec<PathSeg>) -> Option<usize> {
    let children: Vec<(PathSeg, &Spanned<Node>)> = match node.get_ref() {
        Node::Table(entries) => entries
            .iter()
            .map(|(k, v)| (PathSeg::Key(k.get_ref().clone()), v))
            .collect(),
        Node::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (PathSeg::Index(i), v))
            .collect(),
        _ => return None,
    };
    // Leaves of this table first (the tag and the fields of an op), then deeper.
    for (seg, v) in &children {
        if leaf_forms(v.get_ref())
            .iter()
            .any(|f| msg.contains(f.as_str()))
        {
            path.push(seg.clone());
            return Some(v.span().start);
        }
    }
    for (seg, v) in children {
        path.push(seg);
        if let Some(o) = find_leaf(v, msg, path) {
            return Some(o);
        }
        path.pop();
    }
    None
}

pub(super) fn backticked(msg: &str, after: &str) -> Option<String> {
    let rest = &msg[msg.find(after)? + after.len()..];
    let rest = rest.strip_prefix('`')?;
    Some(rest[..rest.find('`')?].to_string())
}

/// The plain value at `path` (to re-deserialize one element of an array on its own).
fn value_at<'a>(root: &'a toml::Value, path: &[PathSeg]) -> Option<&'a toml::Value> {
    let mut v = root;
    for seg in path {
        v = match (v, seg) {
            (toml::Value::Table(t), PathSeg::Key(k)) => t.get(k)?,
            (toml::Value::Array(a), PathSeg::Index(i)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

/// The first element of the array at `path` that does not deserialize on its own, with its
/// error message, if the array is one of ops or of phases.
fn failing_element(root: &toml::Value, path: &[PathSeg]) -> Option<(usize, String)> {
    let toml::Value::Array(items) = value_at(root, path)? else {
        return None;
    };
    let kind = match path.last() {
        Some(PathSeg::Key(k)) => k.as_str(),
        _ => return None,
    };
    items.iter().enumerate().find_map(|(i, v)| {
        let err = match kind {
            // as a phase reads it: either layer, and a convenient op's expect
            "ops" => crate::spec::read_op_table(v.clone()).err(),
            "phases" => crate::spec::Phase::deserialize(v.clone()).err(),
            _ => None,
        };
        err.map(|e| (i, e.message().to_string()))
    })
}

fn refine(tree: &Spanned<Node>, root: &toml::Value, span: &Range<usize>, msg: &str) -> Found {
    let mut best = None;
    find_span(tree, span, &mut Vec::new(), &mut best);
    let mut msg = msg.to_string();
    let Some((mut node, mut path, is_key)) = best else {
        return Found {
            offset: span.start,
            path: Vec::new(),
            message: msg,
        };
    };
    if is_key {
        return Found {
            offset: span.start,
            path,
            message: msg,
        };
    }
    // An error somewhere in an array of ops or phases: find the element at fault. Its own error
    // is the more precise one (a `missing field` names the op table, not the array).
    while let (Node::Array(items), Some((i, m))) = (node.get_ref(), failing_element(root, &path)) {
        let Some(item) = items.get(i) else { break };
        node = item;
        path.push(PathSeg::Index(i));
        msg = m;
        if let Node::Table(entries) = item.get_ref() {
            // A phase whose `ops` array is at fault: go on into it.
            if let Some((_, ops)) = entries.iter().find(|(k, _)| k.get_ref() == "ops") {
                if failing_element(
                    root,
                    &[path.clone(), vec![PathSeg::Key("ops".into())]].concat(),
                )
                .is_some()
                {
                    node = ops;
                    path.push(PathSeg::Key("ops".into()));
                }
            }
        }
    }
    let start = node.span().start;
    if let Some(field) = backticked(&msg, "unknown field ") {
        let mut p = path.clone();
        if let Some(offset) = find_key(node, &field, &mut p) {
            return Found {
                offset,
                path: p,
                message: msg,
            };
        }
    }
    if msg.starts_with("missing field") {
        return Found {
            offset: start,
            path,
            message: msg,
        };
    }
    let mut p = path.clone();
    if let Some(offset) = find_leaf(node, &msg, &mut p) {
        return Found {
            offset,
            path: p,
            message: msg,
        };
    }
    Found {
        offset: start,
        path,
        message: msg,
    }
}

// ---------------------------------------------------------------------------------------------
// Messages and hints
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Positions
// ---------------------------------------------------------------------------------------------

pub use highpte_machine::text::line_col;

fn line_col_bytes(bytes: &[u8], offset: usize) -> (usize, usize) {
    let valid = &bytes[..offset.min(bytes.len())];
    let text = String::from_utf8_lossy(valid);
    line_col(&text, text.len())
}
