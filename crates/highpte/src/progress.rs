//! Progress bars (indicatif) for runs longer than a second: one bar per run, advanced after
//! every ramp step; hidden when stderr is not a terminal or with `--quiet`.

use highpte_workload::runner::{RunOptions, StepReport};
use highpte_workload::WorkloadSpec;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::rc::Rc;

/// True if progress should be drawn.
pub fn enabled(quiet: bool, json: bool) -> bool {
    !quiet && !json && std::io::stderr().is_terminal()
}

/// A set of bars (one per run), or nothing when progress is off.
pub struct Bars {
    multi: Option<MultiProgress>,
}

impl Bars {
    /// Bars drawn on stderr when `on`.
    pub fn new(on: bool) -> Self {
        Self {
            multi: on.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// A bar for one run of `spec` labelled `label`.
    pub fn bar(&self, spec: &WorkloadSpec, label: &str) -> Option<ProgressBar> {
        let m = self.multi.as_ref()?;
        let steps = spec.processes.steps().len().max(1) as u64;
        let pb = m.add(ProgressBar::new(steps));
        pb.set_style(
            ProgressStyle::with_template(
                "{prefix:>24} [{bar:30}] {pos}/{len} steps {msg} ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        pb.set_prefix(label.to_string());
        Some(pb)
    }
}

/// Make `opts` advance `bar` after every step.
pub fn attach(opts: &mut RunOptions, bar: Option<ProgressBar>) {
    if let Some(pb) = bar {
        opts.on_step = Some(Rc::new(move |s: &StepReport| {
            pb.set_position(s.step as u64 + 1);
            pb.set_message(format!(
                "{} processes, LowFree {:.0} MB",
                s.processes,
                s.meminfo.low_free as f64 / 1024.0
            ));
            if !s.failures.is_empty() {
                pb.finish_with_message(format!(
                    "stopped at {} processes: {} {}",
                    s.processes, s.failures[0].call, s.failures[0].errno_or_signal
                ));
            }
        }));
    }
}
