//! Judging an op's outcome against its `expect`, for both layers: an exact op's call and a
//! convenient op (a named region, a `touch` pattern) come here with what they did, and an
//! unmet expectation is reported once, the same way, with the op's file:line.

use super::value::{errno_name, Expect, Expr};
use crate::runner::{check_fail, fail, Ctl, PCtx, PhaseEnd};
use highpte_arch::PagingMode;
use highpte_kernel::mm::{START_BRK, TASK_SIZE};
use highpte_kernel::Signal;
use highpte_machine::User;
use std::cell::RefCell;
use std::rc::Rc;

/// What an op did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It succeeded, returning a value (`None`: an op that returns only 0 or nothing).
    Value(Option<u32>),
    /// It failed with this error number.
    Errno(i32),
    /// An access got this signal.
    Signal(Signal),
    /// A mistake of the workload found while running it (a region that is gone): never what
    /// an `expect` asks for.
    Broken(String),
}

impl Outcome {
    /// As reports write it: the value in hex, `0 (ok)`, the errno or signal name.
    pub(crate) fn show(&self) -> String {
        match self {
            Outcome::Value(Some(v)) => format!("{v:#x}"),
            Outcome::Value(None) => "0 (ok)".to_string(),
            Outcome::Errno(n) => errno_name(*n),
            Outcome::Signal(s) => s.name().to_string(),
            Outcome::Broken(m) => m.clone(),
        }
    }
}

/// The value of `x` in process `pc` now, or the name that is not bound.
pub(crate) fn word<M: PagingMode>(u: &User<'_, M>, pc: &PCtx, x: &Expr) -> Result<u32, String> {
    let base = match x.name.as_deref() {
        None => 0,
        Some(n) => match pc.names.get(n) {
            Some(v) => *v,
            None => match pc.regions.get(n) {
                Some(r) => r.addr,
                None => match n {
                    "heap_start" => START_BRK,
                    "brk" => u
                        .handle()
                        .enter_kernel("brk_of", |cx| u.kernel().brk_of(cx, u.pid()))
                        .unwrap_or(START_BRK),
                    "stack_top" | "TASK_SIZE" => TASK_SIZE,
                    "PAGE_SIZE" => 4096,
                    _ => return Err(n.to_string()),
                },
            },
        },
    };
    Ok(x.word(base))
}

/// One op to judge: where it is written, the call as the kernel saw it, and the name its
/// failure is recorded under.
pub(crate) struct Judged<'a> {
    /// `FILE:LINE:COLUMN` of the op.
    pub at: &'a str,
    /// The op with its arguments (`mmap(addr=0x0, len=0x1000, ...)`, `touch(region="r", ...)`).
    pub desc: &'a str,
    /// The `op` name, for the failure record.
    pub kind: &'a str,
}

/// Judges `outcome` against `expect`. Without an expectation any failure ends the process, as
/// it always has; with one, a met expectation lets the process go on (for a signal, as if a
/// handler had caught it and skipped the access) and an unmet one is a failed check naming
/// the op, observed and expected. `PhaseEnd::Done` means go on.
pub(crate) fn judge<M: PagingMode>(
    u: &User<'_, M>,
    pc: &PCtx,
    ctl: &Rc<RefCell<Ctl>>,
    op: &Judged<'_>,
    outcome: &Outcome,
    expect: Option<&Expect>,
) -> PhaseEnd {
    if u.killed().is_some() {
        // killed during the op (the OOM killer): run_phase reports it
        return PhaseEnd::Done;
    }
    let label = format!("{} at {}", op.kind, op.at);
    let met = match expect {
        None => match outcome {
            Outcome::Value(_) => true,
            other => {
                fail(u, pc, ctl, &label, other.show());
                return PhaseEnd::Failed;
            }
        },
        Some(Expect::Ok) => matches!(outcome, Outcome::Value(_)),
        Some(Expect::Errno(n)) => *outcome == Outcome::Errno(*n),
        Some(Expect::Signal(s)) => matches!(outcome, Outcome::Signal(g) if g.name() == *s),
        Some(Expect::Value(x)) => match word(u, pc, x) {
            Ok(want) => {
                *outcome == Outcome::Value(Some(want))
                    || (want == 0 && *outcome == Outcome::Value(None))
            }
            Err(_) => false,
        },
    };
    if !met {
        let expected = match expect {
            Some(Expect::Value(x)) => match word(u, pc, x) {
                Ok(v) => format!("value {x} = {v:#x}"),
                Err(n) => format!("value {x} (name \"{n}\" is not bound)"),
            },
            Some(x) => x.to_string(),
            None => "ok".to_string(),
        };
        check_fail(
            ctl,
            format!(
                "{}: process {} (pid {}): {} = {}; expected {expected}",
                op.at,
                pc.label,
                u.pid(),
                op.desc,
                outcome.show()
            ),
        );
        fail(
            u,
            pc,
            ctl,
            &label,
            format!("{} (expected {expected})", outcome.show()),
        );
        return PhaseEnd::Failed;
    }
    if expect.is_some() {
        ctl.borrow_mut().expectations_met += 1;
    }
    PhaseEnd::Done
}
