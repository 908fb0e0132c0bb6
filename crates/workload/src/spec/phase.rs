//! A phase as written in files: each op table may carry an `expect`. An exact op keeps its
//! expectation inside [`crate::exact::ExactOp`]; a convenient op's goes to
//! [`Phase::expects`], beside the op, so that every `match` on [`Op`] sees the op itself.

use super::{one, Op, Phase, RunBy};
use crate::exact::{Expect, OpExpect};
use serde::de::{self, Deserializer};
use serde::ser::{self, Serializer};
use serde::{Deserialize, Serialize};

/// The `[[phases]]` table as written.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PhaseFile {
    name: String,
    #[serde(default)]
    run_by: RunBy,
    #[serde(default = "one")]
    repeat: u32,
    ops: Vec<WrittenOp>,
}

/// One op table: the op and, for a convenient op, its `expect`.
#[derive(Clone)]
struct WrittenOp {
    op: Op,
    expect: Option<Expect>,
}

impl From<PhaseFile> for Phase {
    fn from(f: PhaseFile) -> Self {
        let (ops, expects) = f
            .ops
            .into_iter()
            .map(|w| {
                let e = w.expect.map(|expect| OpExpect {
                    expect,
                    at: String::new(),
                });
                (w.op, e)
            })
            .unzip();
        Phase {
            name: f.name,
            run_by: f.run_by,
            repeat: f.repeat,
            ops,
            expects,
        }
    }
}

impl From<Phase> for PhaseFile {
    fn from(p: Phase) -> Self {
        let expects = p.expects;
        let ops = p
            .ops
            .into_iter()
            .enumerate()
            .map(|(j, op)| WrittenOp {
                op,
                expect: expects
                    .get(j)
                    .and_then(Option::as_ref)
                    .map(|e| e.expect.clone()),
            })
            .collect();
        PhaseFile {
            name: p.name,
            run_by: p.run_by,
            repeat: p.repeat,
            ops,
        }
    }
}

/// Reads one op table of a phase: a table of the exact layer (see
/// [`crate::exact::is_exact`]) keeps its `expect` inside the op; any other table with
/// `expect` is a convenient op with an expectation.
pub(crate) fn read_op_table(v: toml::Value) -> Result<(Op, Option<Expect>), toml::de::Error> {
    // `Op::deserialize` is the derived (convenient-only) one: go through the trait
    match v {
        toml::Value::Table(mut t) if !crate::exact::is_exact_table(&t) => {
            let expect = t.remove("expect").map(Expect::deserialize).transpose()?;
            let op = <Op as Deserialize>::deserialize(toml::Value::Table(t))?;
            Ok((op, expect))
        }
        v => Ok((<Op as Deserialize>::deserialize(v)?, None)),
    }
}

impl<'de> Deserialize<'de> for WrittenOp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = toml::Value::deserialize(d)?;
        let (op, expect) = read_op_table(v).map_err(|e| de::Error::custom(e.message()))?;
        Ok(WrittenOp { op, expect })
    }
}

impl Serialize for WrittenOp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some(expect) = &self.expect else {
            return self.op.serialize(s);
        };
        let mut v = toml::Value::try_from(&self.op).map_err(ser::Error::custom)?;
        if let toml::Value::Table(t) = &mut v {
            let e = toml::Value::try_from(expect).map_err(ser::Error::custom)?;
            t.insert("expect".to_string(), e);
        }
        v.serialize(s)
    }
}
