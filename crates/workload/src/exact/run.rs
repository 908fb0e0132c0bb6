//! Running exact ops: resolve the argument expressions, make the call, and judge the outcome
//! against `expect`.

use super::call::Call;
use super::expect::{judge, word, Judged, Outcome};
use super::proc_view::{ProcRecord, ProcSnapshot};
use super::ExactOp;
use crate::runner::{
    check_fail, fail, forget_stamps, fork_child, move_stamps, pick_page, Ctl, PCtx, PhaseEnd,
};
use crate::spec::WorkloadSpec;
use highpte_arch::PagingMode;
use highpte_kernel::mm::shm::IPC_RMID;
use highpte_kernel::mm::START_BRK;
use highpte_kernel::Errno;
use highpte_machine::User;
use std::cell::RefCell;
use std::rc::Rc;

fn from<T>(r: Result<T, Errno>, v: impl FnOnce(T) -> Option<u32>) -> Outcome {
    match r {
        Ok(x) => Outcome::Value(v(x)),
        Err(e) => Outcome::Errno(e.0),
    }
}

/// Runs one exact op of process `pc`.
pub(crate) fn run_exact<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    spec: &Rc<WorkloadSpec>,
    e: &ExactOp,
    ctl: &Rc<RefCell<Ctl>>,
) -> PhaseEnd {
    let label = format!("{} at {}", e.call.kind(), e.at);
    let mut args = Vec::new();
    for (key, x) in e.call.exprs() {
        match word(u, pc, x) {
            Ok(v) => args.push(v),
            Err(name) => {
                let msg = format!(
                    "{}: {} {key} = \"{x}\": name \"{name}\" is not bound (the op that binds it failed or has not run in this process)",
                    e.at,
                    e.call.kind()
                );
                check_fail(ctl, msg.clone());
                fail(u, pc, ctl, &label, "unbound name".to_string());
                return PhaseEnd::Failed;
            }
        }
    }
    let desc = describe(&e.call, &args);
    let outcome = match call(u, pc, spec, ctl, e, &args) {
        Step::Outcome(o) => o,
        Step::End(end) => return end,
    };
    let judged = Judged {
        at: &e.at,
        desc: &desc,
        kind: e.call.kind(),
    };
    if judge(u, pc, ctl, &judged, &outcome, e.expect.as_ref()) != PhaseEnd::Done {
        return PhaseEnd::Failed;
    }
    if let (Some(name), Outcome::Value(v)) = (&e.bind, outcome) {
        pc.names.insert(name.clone(), v.unwrap_or(0));
    }
    PhaseEnd::Done
}

/// The call with its arguments as the kernel saw them.
fn describe(c: &Call, a: &[u32]) -> String {
    let x = |i: usize| a.get(i).map_or_else(String::new, |v| format!("{v:#x}"));
    match c {
        Call::Mmap { prot, flags, .. } => format!(
            "mmap(addr={}, len={}, prot={prot}, flags={flags}, fd={}, offset={})",
            x(0),
            x(1),
            a.get(2).map_or(0, |v| *v as i32),
            x(3)
        ),
        Call::Mprotect { prot, .. } => {
            format!("mprotect(addr={}, len={}, prot={prot})", x(0), x(1))
        }
        Call::Mremap { flags, .. } => format!(
            "mremap(addr={}, old_len={}, new_len={}, flags={flags}, new_addr={})",
            x(0),
            x(1),
            x(2),
            x(3)
        ),
        Call::Shmget { flags, .. } => {
            format!("shmget(key={}, size={}, shmflg={flags})", x(0), x(1))
        }
        Call::Shmat { flags, .. } => {
            format!("shmat(shmid={}, addr={}, shmflg={flags})", x(0), x(1))
        }
        Call::Shmctl { cmd, .. } => format!("shmctl(shmid={}, cmd={cmd})", x(0)),
        Call::Fork { child_phase, .. } => format!("fork() running phase \"{child_phase}\""),
        Call::Touch { write, .. } => format!(
            "touch(addr={}, len={}, {})",
            x(0),
            x(1),
            if *write { "write" } else { "read" }
        ),
        Call::Proc { what } => format!("proc({what:?})"),
        Call::Open { path, flags } => format!("open(\"{path}\", {flags})"),
        Call::Unlink { path } => format!("unlink(\"{path}\")"),
        Call::Lseek { whence, .. } => {
            format!("lseek(fd={}, offset={}, whence={whence})", x(0), x(1))
        }
        Call::Msync { flags, .. } => format!("msync(addr={}, len={}, flags={flags})", x(0), x(1)),
        other => {
            let keys: Vec<String> = other
                .exprs()
                .iter()
                .zip(a)
                .map(|((k, _), v)| format!("{k}={v:#x}"))
                .collect();
            format!("{}({})", other.kind(), keys.join(", "))
        }
    }
}

/// A call's result, or the end of the process's phase (fork failure, pause, exit).
enum Step {
    Outcome(Outcome),
    End(PhaseEnd),
}

fn page_span(addr: u32, len: u32) -> (u32, u32) {
    let start = addr & !0xfff;
    let end = (u64::from(addr) + u64::from(len)).div_ceil(4096) * 4096;
    (
        start,
        ((end - u64::from(start)).min(u64::from(u32::MAX) & !0xfff)) as u32,
    )
}

/// Bytes of one host buffer for `read` and `write`: larger requests go in pieces.
const IO_CHUNK: u32 = 1 << 20;

fn call<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    spec: &Rc<WorkloadSpec>,
    ctl: &Rc<RefCell<Ctl>>,
    e: &ExactOp,
    a: &[u32],
) -> Step {
    let arg = |i: usize| a.get(i).copied().unwrap_or(0);
    let o = match &e.call {
        Call::Mmap { prot, flags, .. } => vm_mmap(u, pc, a, prot.0, flags.0),
        Call::Munmap { .. } => vm_munmap(u, pc, a),
        Call::Mprotect { prot, .. } => {
            from(u.mprotect(arg(0), u64::from(arg(1)), prot.0), |_| None)
        }
        Call::Mremap { flags, .. } => vm_mremap(u, pc, a, flags.0),
        Call::Brk { .. } => vm_brk(u, pc, arg(0)),
        Call::Shmget { flags, .. } => {
            from(u.shmget(arg(0) as i32, u64::from(arg(1)), flags.0), Some)
        }
        Call::Shmat { flags, .. } => from(u.shmat(arg(0), arg(1), flags.0), Some),
        Call::Shmdt { .. } => from(u.shmdt(arg(0)), |_| None),
        Call::Shmctl { cmd, .. } => {
            if cmd.0 == IPC_RMID {
                from(u.shm_rmid(arg(0)), |_| None)
            } else {
                // the simulated kernel implements IPC_RMID only (see workloads/README.md)
                Outcome::Errno(Errno::EINVAL.0)
            }
        }
        Call::Fork {
            child_phase,
            wait_done,
        } => {
            let Some(phase) = spec.phases.iter().find(|p| &p.name == child_phase).cloned() else {
                fail(u, pc, ctl, "fork", format!("no phase '{child_phase}'"));
                return Step::End(PhaseEnd::Failed);
            };
            let r = fork_child(u, pc, spec, ctl, phase);
            if let (Ok(pid), true) = (&r, wait_done) {
                crate::runner::process::wait_child_done(u, ctl, *pid);
            }
            from(r, |pid| Some(pid.0))
        }
        Call::Wait {} => from(u.wait(), |(pid, _)| Some(pid.0)),
        Call::Pause {} => return Step::End(PhaseEnd::Pause),
        Call::Exit {} => return Step::End(PhaseEnd::Exit),
        Call::Load { .. } => match u.load_u32(arg(0)) {
            Ok(v) => Outcome::Value(Some(v)),
            Err(s) => Outcome::Signal(s),
        },
        Call::Store { .. } => match u.store_u32(arg(0), arg(1)) {
            Ok(()) => Outcome::Value(None),
            Err(s) => Outcome::Signal(s),
        },
        Call::Touch {
            write,
            pattern,
            count,
            ..
        } => touch(u, pc, arg(0), arg(1), *write, *pattern, *count),
        Call::Proc { what } => {
            let snapshot = ProcSnapshot::take(u.kernel(), u.handle(), u.pid(), pc.label.clone());
            u.handle().return_to_user();
            ctl.borrow_mut().proc_records.push(ProcRecord {
                at: e.at.clone(),
                what: match what {
                    super::ProcWhat::Maps => "maps",
                    super::ProcWhat::Status => "status",
                },
                snapshot,
            });
            Outcome::Value(None)
        }
        Call::Open { path, flags } => from(u.open(path, flags.0), |fd| Some(fd as u32)),
        Call::Close { .. } => from(u.close(arg(0) as i32), |_| None),
        Call::Write { .. } => io(arg(1), |n| u.write(arg(0) as i32, &vec![0xa5; n])),
        Call::Read { .. } => io(arg(1), |n| u.read(arg(0) as i32, &mut vec![0; n])),
        Call::Lseek { whence, .. } => from(
            u.lseek(arg(0) as i32, i64::from(arg(1) as i32), whence.0),
            |o| Some(o as u32),
        ),
        Call::Ftruncate { .. } => {
            from(u.ftruncate(arg(0) as i32, i64::from(arg(1) as i32)), |_| {
                None
            })
        }
        Call::Fsync { .. } => from(u.fsync(arg(0) as i32), |_| None),
        Call::Unlink { path } => from(u.unlink(path), |_| None),
        Call::Msync { flags, .. } => from(u.msync(arg(0), u64::from(arg(1)), flags.0), |_| None),
    };
    Step::Outcome(o)
}

/// `mmap`: a new mapping holds zero pages (or the file's), whatever the range held before,
/// so the stamps the convenient layer expects there go.
fn vm_mmap<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    a: &[u32],
    prot: u32,
    flags: u32,
) -> Outcome {
    let r = u.mmap_file(
        a[0],
        u64::from(a[1]),
        prot,
        flags,
        a[2] as i32,
        u64::from(a[3]),
    );
    if let Ok(addr) = r {
        let (s, l) = page_span(addr, a[1]);
        forget_stamps(pc, s, l);
    }
    from(r, Some)
}

/// `munmap`, forgetting the stamps of the range.
fn vm_munmap<M: PagingMode>(u: &mut User<'_, M>, pc: &mut PCtx, a: &[u32]) -> Outcome {
    let r = u.munmap(a[0], u64::from(a[1]));
    if r.is_ok() {
        let (s, l) = page_span(a[0], a[1]);
        forget_stamps(pc, s, l);
    }
    from(r, |_| None)
}

/// `mremap`: the stamps move with the pages; those past a smaller length go.
fn vm_mremap<M: PagingMode>(u: &mut User<'_, M>, pc: &mut PCtx, a: &[u32], flags: u32) -> Outcome {
    let r = u.mremap(a[0], u64::from(a[1]), u64::from(a[2]), flags, a[3]);
    if let Ok(na) = r {
        let (old, old_len) = page_span(a[0], a[1]);
        let new_len = page_span(0, a[2]).1;
        move_stamps(pc, old, na, old_len.min(new_len));
        if new_len < old_len {
            forget_stamps(pc, na + new_len, old_len - new_len);
        }
    }
    from(r, Some)
}

/// `brk`: never an error; the stamps of a heap that shrank go.
fn vm_brk<M: PagingMode>(u: &mut User<'_, M>, pc: &mut PCtx, want: u32) -> Outcome {
    let before = u
        .handle()
        .enter_kernel("brk_of", |cx| u.kernel().brk_of(cx, u.pid()))
        .unwrap_or(START_BRK);
    let got = u.brk(want);
    if got < before {
        let s = got.div_ceil(4096) * 4096;
        forget_stamps(pc, s, (before.div_ceil(4096) * 4096).saturating_sub(s));
    }
    Outcome::Value(Some(got))
}

/// User accesses to the pages of `[addr, addr + len)`, stopping at the first signal.
fn touch<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    addr: u32,
    len: u32,
    write: bool,
    pattern: crate::spec::Pattern,
    count: Option<u64>,
) -> Outcome {
    if len == 0 {
        return Outcome::Value(None);
    }
    let (start, span) = page_span(addr, len);
    let pages = span / 4096;
    let mut next = 0u32;
    for i in 0..count.unwrap_or(u64::from(pages)) {
        let page = start + pick_page(pc, pattern, i, pages, &mut next) * 4096;
        let r = if write {
            u.store_u32(page, page | 1)
        } else {
            u.load_u32(page).map(|_| ())
        };
        if let Err(s) = r {
            return Outcome::Signal(s);
        }
    }
    Outcome::Value(None)
}

/// `read` or `write` of `len` bytes in pieces of at most [`IO_CHUNK`]: the bytes moved, an
/// error only if the first piece fails.
fn io(len: u32, mut f: impl FnMut(usize) -> Result<usize, Errno>) -> Outcome {
    let mut done: u32 = 0;
    loop {
        let n = (len - done).min(IO_CHUNK);
        match f(n as usize) {
            Ok(got) => {
                done += got as u32;
                if got < n as usize || done == len {
                    return Outcome::Value(Some(done));
                }
            }
            Err(e) if done == 0 => return Outcome::Errno(e.0),
            Err(_) => return Outcome::Value(Some(done)),
        }
    }
}
