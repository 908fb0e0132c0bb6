//! Progress bars (indicatif) on stderr for every command that can run longer than a second:
//! one bar per run that ticks with the simulated operations (so a one-step run moves too),
//! or one bar over the cells, seeds or parts of a command. Drawn only when stderr is a
//! terminal and neither `--quiet` nor `--json` is given; cleared before the report.

use highpte_workload::runner::{RunOptions, StepReport};
use highpte_workload::WorkloadSpec;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::rc::Rc;
use std::time::Duration;

/// True if progress should be drawn.
pub fn enabled(quiet: bool, json: bool) -> bool {
    !quiet && !json && std::io::stderr().is_terminal()
}

/// How often a bar redraws its elapsed time while nothing else changes.
const TICK: Duration = Duration::from_millis(200);

/// A set of bars, or nothing when progress is off.
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

    fn add(&self, len: u64, template: &str, label: &str) -> Option<ProgressBar> {
        let m = self.multi.as_ref()?;
        let pb = m.add(ProgressBar::new(len));
        pb.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_prefix(label.to_string());
        pb.enable_steady_tick(TICK);
        Some(pb)
    }

    /// A bar for one run of `spec` labelled `label`: steps done, and the operations so far.
    pub fn bar(&self, spec: &WorkloadSpec, label: &str) -> Option<ProgressBar> {
        let steps = spec.processes.steps().len().max(1) as u64;
        self.add(
            steps,
            "{prefix:>24} [{bar:30}] {pos}/{len} steps {msg} ({elapsed})",
            label,
        )
    }

    /// A bar over `len` items of some kind (`cells`, `seeds`, `parts`), labelled `label`.
    pub fn items(&self, len: u64, what: &str, label: &str) -> Option<ProgressBar> {
        self.add(
            len,
            &format!("{{prefix:>24}} [{{bar:30}}] {{pos}}/{{len}} {what} {{msg}} ({{elapsed}})"),
            label,
        )
    }

    /// Remove every bar from the terminal (before the report is printed).
    pub fn clear(&self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

/// Make `opts` advance `bar`: its position after every step, its message with the
/// operations started as they go.
pub fn attach(opts: &mut RunOptions, bar: Option<ProgressBar>) {
    let Some(pb) = bar else { return };
    let ops_bar = pb.clone();
    opts.on_operation = Some(Rc::new(move |n: u64| {
        // A message per 64 operations is plenty for a bar redrawn 5 times a second.
        if n % 64 == 1 {
            ops_bar.set_message(format!("{n} operations"));
        }
    }));
    opts.on_step = Some(Rc::new(move |s: &StepReport| {
        pb.set_position(s.step as u64 + 1);
        pb.set_message(format!(
            "{} processes, LowFree {:.0} MB",
            s.processes,
            s.meminfo.low_free as f64 / 1024.0
        ));
    }));
}
