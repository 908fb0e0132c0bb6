//! Cost files: a TOML table of overrides on a built-in cost model
//! ([`CostModel::from_toml_str`], [`CostModel::from_file`]) and the errors that point at the
//! line and column at fault.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::CostModel;
use crate::text::line_col;

impl CostModel {
    /// Parses a cost file: an optional `base = "<name>"` (default `pentium4-xeon-2002`) and any
    /// subset of the fields, each overriding the base's value.
    ///
    /// Unknown keys, wrong types (fields are non-negative integers), unknown base names,
    /// `clock_hz = 0` and TOML syntax errors are reported with a 1-based line and column and a
    /// hint on how to fix them.
    pub fn from_toml_str(s: &str) -> Result<CostModel, CostModelError> {
        let overrides: Overrides =
            toml::from_str(s).map_err(|e| CostModelError::from_toml(s, &e))?;
        let mut model = match &overrides.base {
            None => CostModel::default(),
            Some(base) => CostModel::named(base.get_ref()).ok_or_else(|| {
                CostModelError::invalid(
                    s,
                    Some(base.span()),
                    format!("unknown base `{}`", base.get_ref()),
                    format!(
                        "use one of {}",
                        Self::NAMES
                            .iter()
                            .map(|n| format!("\"{n}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?,
        };
        if let Some(hz) = &overrides.clock_hz {
            if *hz.get_ref() == 0 {
                return Err(CostModelError::invalid(
                    s,
                    Some(hz.span()),
                    "`clock_hz` must not be 0".to_string(),
                    "give the simulated clock in cycles per second, e.g. `clock_hz = 2_000_000_000`"
                        .to_string(),
                ));
            }
        }
        overrides.apply(&mut model);
        Ok(model)
    }

    /// Reads and parses the cost file at `path` like [`CostModel::from_toml_str`]; errors name
    /// the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<CostModel, CostModelError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| CostModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text).map_err(|e| e.in_file(path))
    }
}

/// Declares the cost-file override struct with one optional, spanned value per field, and its
/// application to a base model. The exhaustive destructuring in `apply` makes forgetting a
/// [`CostModel`] field here a compile error.
macro_rules! overrides {
    ($($field:ident),* $(,)?) => {
        /// A parsed cost file: the base name and the fields it sets.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Overrides {
            base: Option<Spanned<String>>,
            $($field: Option<Spanned<u64>>,)*
        }

        impl Overrides {
            fn apply(self, model: &mut CostModel) {
                let CostModel { $($field),* } = model;
                $(if let Some(v) = self.$field {
                    *$field = v.into_inner();
                })*
            }
        }
    };
}

overrides!(
    mem_access,
    tlb_miss_per_level,
    invlpg,
    cr3_load,
    tlb_flush_full,
    ipi_send,
    ipi_receive,
    page_zero_per_byte_x100,
    page_copy_per_byte_x100,
    spin_lock_uncontended,
    spin_lock_per_spin,
    spin_unlock,
    syscall_entry_exit,
    fault_entry_exit,
    context_switch,
    kmap_atomic_pte_write,
    preempt_toggle,
    atomic_op,
    timer_tick,
    clock_hz,
);

/// An error reading or parsing a cost file.
#[derive(Debug)]
pub enum CostModelError {
    /// The file's contents are not a valid cost model.
    Invalid {
        /// The file, when parsed through [`CostModel::from_file`].
        file: Option<PathBuf>,
        /// 1-based line of the offending text, when known.
        line: Option<usize>,
        /// 1-based column (in characters) of the offending text, when known.
        column: Option<usize>,
        /// What is wrong (names the key or value at fault).
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl CostModelError {
    /// An [`CostModelError::Invalid`] at `span` (a byte range of `text`).
    fn invalid(text: &str, span: Option<Range<usize>>, message: String, hint: String) -> Self {
        let (line, column) = match span.map(|r| line_col(text, r.start)) {
            Some((l, c)) => (Some(l), Some(c)),
            None => (None, None),
        };
        CostModelError::Invalid {
            file: None,
            line,
            column,
            message,
            hint,
        }
    }

    /// Converts a toml deserialization error, choosing a hint from its kind.
    fn from_toml(text: &str, e: &toml::de::Error) -> Self {
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let hint = if message.starts_with("unknown field") {
            "remove the key or correct its spelling (the fields are described in \
             docs/cost-model.md)"
                .to_string()
        } else if message.starts_with("invalid type") || message.starts_with("invalid value") {
            "`base` is a string; every other value is a non-negative integer number of cycles, \
             e.g. `invlpg = 400`"
                .to_string()
        } else {
            "correct the TOML syntax at this position (one `key = value` per line, no tables)"
                .to_string()
        };
        Self::invalid(text, e.span(), message, hint)
    }

    /// Attaches the file name to an [`CostModelError::Invalid`].
    fn in_file(self, path: &Path) -> Self {
        match self {
            CostModelError::Invalid {
                line,
                column,
                message,
                hint,
                ..
            } => CostModelError::Invalid {
                file: Some(path.to_path_buf()),
                line,
                column,
                message,
                hint,
            },
            other => other,
        }
    }
}

impl fmt::Display for CostModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CostModelError::Invalid {
                file,
                line,
                column,
                message,
                hint,
            } => {
                f.write_str("invalid cost model")?;
                if let Some(file) = file {
                    write!(f, " in {}", file.display())?;
                }
                if let (Some(line), Some(column)) = (line, column) {
                    write!(f, " at line {line}, column {column}")?;
                }
                write!(f, ": {message}; to fix: {hint}")
            }
            CostModelError::Io { path, source } => {
                write!(
                    f,
                    "cannot read cost model file {}: {source}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for CostModelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CostModelError::Io { source, .. } => Some(source),
            CostModelError::Invalid { .. } => None,
        }
    }
}
