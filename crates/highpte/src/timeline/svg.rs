//! `--timeline-plot`: a window of the timeline as a swimlane picture (plotters, SVG or PNG by
//! the file name): one lane per CPU (the running task, with its system call, fault or spin
//! nested below it), per kmap_atomic slot and pkmap entry in use, and per task that waited;
//! TLB-flush IPIs as arrows. The slices are kept in memory, so a picture holds at most
//! [`MAX_SLICES`] of them: give a window (`--timeline-window`) for a long run.

use super::model::{Args, Out, Track};
use super::Kind;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// The most slices one picture keeps.
pub const MAX_SLICES: usize = 20_000;

#[derive(Clone, Debug)]
struct Slice {
    start: u64,
    end: u64,
    depth: u32,
    name: String,
    kind: Kind,
}

#[derive(Clone, Debug, Default)]
struct Lane {
    name: String,
    slices: Vec<Slice>,
    open: Vec<Slice>,
}

/// The slices of a window, lane by lane.
pub struct Lanes {
    per_us: f64,
    lanes: BTreeMap<Track, Lane>,
    arrows: Vec<(Track, u64, Track, u64)>,
    count: usize,
    first: Option<u64>,
    last: u64,
}

/// Check a picture's path before the run: `.svg` or `.png`, writable, and the font there.
pub fn check_path(path: &Path) -> anyhow::Result<()> {
    crate::plot::check_path(path)
        .map_err(|e| anyhow::anyhow!("{}", e.0.replace("--plot", "--timeline-plot")))
}

impl Lanes {
    /// Empty lanes; timestamps at `clock_hz`. `_cap` is the file cap (the picture's is
    /// [`MAX_SLICES`]).
    pub fn new(clock_hz: u64, _cap: u64) -> Self {
        Self {
            per_us: clock_hz as f64 / 1e6,
            lanes: BTreeMap::new(),
            arrows: Vec::new(),
            count: 0,
            first: None,
            last: 0,
        }
    }

    /// Convert at `clock_hz`.
    pub fn set_clock(&mut self, clock_hz: u64) {
        self.per_us = clock_hz as f64 / 1e6;
    }

    fn seen(&mut self, ts: u64) {
        self.first = Some(self.first.map_or(ts, |f| f.min(ts)));
        self.last = self.last.max(ts);
    }

    /// Draw the picture; a note if it was cut at [`MAX_SLICES`].
    pub fn draw(&self, path: &Path) -> anyhow::Result<Option<String>> {
        crate::plot::register_font()?;
        let lanes: Vec<(&Track, &Lane)> = self
            .lanes
            .iter()
            .filter(|(t, l)| {
                !matches!(t, Track::Task(_)) || l.slices.iter().any(|s| s.kind == Kind::Wait)
            })
            .collect();
        let size = (1200u32, 70 + 24 * lanes.len().max(1) as u32);
        let png = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("png"));
        let fail = |e: String| anyhow::anyhow!("--timeline-plot {}: {e}", path.display());
        if png {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            self.paint(&root, &lanes, size)
                .map_err(|e| fail(e.to_string()))?;
        } else {
            let root = SVGBackend::new(path, size).into_drawing_area();
            self.paint(&root, &lanes, size)
                .map_err(|e| fail(e.to_string()))?;
        }
        Ok((self.count >= MAX_SLICES).then(|| {
            format!(
                "--timeline-plot {}: the picture keeps the first {MAX_SLICES} slices of the window; give a narrower --timeline-window to see all of it",
                path.display()
            )
        }))
    }

    fn paint<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, plotters::coord::Shift>,
        lanes: &[(&Track, &Lane)],
        size: (u32, u32),
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let (left, right, top) = (190i32, 20i32, 40i32);
        let t0 = self.first.unwrap_or(0);
        let t1 = self.last.max(t0 + 1);
        let width = f64::from(size.0 as i32 - left - right);
        let x = |ts: u64| left + ((ts.saturating_sub(t0)) as f64 / (t1 - t0) as f64 * width) as i32;
        let lane_h = 24i32;
        let y_of: BTreeMap<Track, i32> = lanes
            .iter()
            .enumerate()
            .map(|(i, (t, _))| (**t, top + i as i32 * lane_h))
            .collect();
        let font = ("sans-serif", 13).into_font();
        let small = ("sans-serif", 10).into_font();
        let us = |ts: u64| (ts - t0) as f64 / self.per_us;
        root.draw(&Text::new(
            format!(
                "simulated time {:.1} µs to {:.1} µs (cycle {t0} + µs below)",
                t0 as f64 / self.per_us,
                t1 as f64 / self.per_us
            ),
            (left, 10),
            font.clone(),
        ))?;
        for (track, lane) in lanes {
            let y = y_of[*track];
            root.draw(&Text::new(lane.name.clone(), (8, y + 5), font.clone()))?;
            root.draw(&PathElement::new(
                vec![
                    (left, y + lane_h - 1),
                    (size.0 as i32 - right, y + lane_h - 1),
                ],
                RGBColor(230, 230, 230),
            ))?;
            let task_lane = matches!(track, Track::Task(_));
            // outer slices first: an inner one ends (and is stored) before its parent
            let mut slices: Vec<&Slice> = lane.slices.iter().collect();
            slices.sort_by_key(|s| (s.depth, s.start));
            for s in slices {
                if task_lane && s.kind != Kind::Wait {
                    continue;
                }
                // waits on a task lane sit inside system calls the lane does not draw
                let inset = if task_lane {
                    0
                } else {
                    (s.depth.min(3) as i32) * 5
                };
                let (x0, x1) = (x(s.start), x(s.end).max(x(s.start) + 1));
                let color = color_of(s);
                root.draw(&Rectangle::new(
                    [(x0, y + 2 + inset), (x1, y + lane_h - 3)],
                    color.filled(),
                ))?;
                if x1 - x0 > 8 * s.name.len().min(24) as i32 && inset == 0 {
                    let label: String = s.name.chars().take(24).collect();
                    root.draw(&Text::new(label, (x0 + 3, y + 6), small.clone()))?;
                }
            }
        }
        for (from, a, to, b) in &self.arrows {
            if let (Some(ya), Some(yb)) = (y_of.get(from), y_of.get(to)) {
                root.draw(&PathElement::new(
                    vec![(x(*a), ya + lane_h / 2), (x(*b), yb + lane_h / 2)],
                    BLACK.stroke_width(1),
                ))?;
                root.draw(&Circle::new((x(*b), yb + lane_h / 2), 3, BLACK.filled()))?;
            }
        }
        let axis_y = top + lanes.len() as i32 * lane_h + 4;
        for i in 0..=5u64 {
            let ts = t0 + (t1 - t0) * i / 5;
            root.draw(&Text::new(
                format!("{:.1} µs", us(ts)),
                (x(ts) - 15, axis_y + 4),
                small.clone(),
            ))?;
        }
        root.present()
    }
}

/// A slice's colour: by kind, and for run slices by the task's name.
fn color_of(s: &Slice) -> RGBColor {
    match s.kind {
        Kind::Sched => {
            let h = s
                .name
                .bytes()
                .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
            let palette = [
                RGBColor(120, 170, 220),
                RGBColor(140, 200, 140),
                RGBColor(200, 170, 230),
                RGBColor(230, 190, 120),
                RGBColor(150, 210, 210),
                RGBColor(220, 160, 170),
            ];
            palette[(h % palette.len() as u32) as usize]
        }
        Kind::Syscall => RGBColor(240, 140, 40),
        Kind::Fault => RGBColor(215, 60, 50),
        Kind::Kmap => RGBColor(30, 140, 130),
        Kind::Pkmap => RGBColor(130, 70, 170),
        Kind::Wait if s.name.starts_with("spin") => RGBColor(230, 200, 30),
        Kind::Wait => RGBColor(150, 150, 150),
        Kind::Ipi => RGBColor(40, 40, 40),
        Kind::Memory => RGBColor(100, 100, 100),
    }
}

impl Out for Lanes {
    fn track(&mut self, track: Track, name: &str) {
        self.lanes.entry(track).or_default().name = name.to_string();
    }

    fn begin(&mut self, track: Track, ts: u64, name: &str, kind: Kind, _args: &Args) {
        self.seen(ts);
        let lane = self.lanes.entry(track).or_default();
        let depth = lane.open.len() as u32;
        lane.open.push(Slice {
            start: ts,
            end: ts,
            depth,
            name: name.to_string(),
            kind,
        });
    }

    fn end(&mut self, track: Track, ts: u64, _args: &Args) {
        self.seen(ts);
        let lane = self.lanes.entry(track).or_default();
        if let Some(mut s) = lane.open.pop() {
            s.end = ts;
            lane.slices.push(s);
            self.count += 1;
        }
    }

    fn instant(&mut self, _: Track, ts: u64, _: &'static str, _: Kind, _: &Args) {
        self.seen(ts);
    }

    fn complete(&mut self, track: Track, ts: u64, dur: u64, name: &str, kind: Kind, _: &Args) {
        self.seen(ts + dur);
        let lane = self.lanes.entry(track).or_default();
        let depth = lane.open.len() as u32;
        lane.slices.push(Slice {
            start: ts,
            end: ts + dur,
            depth,
            name: name.to_string(),
            kind,
        });
        self.count += 1;
    }

    fn flow(&mut self, _id: u64, from: (Track, u64), to: (Track, u64)) {
        self.arrows.push((from.0, from.1, to.0, to.1));
    }

    fn counter(&mut self, _: &'static str, _: u64, _: u64) {}

    fn full(&self) -> bool {
        self.count >= MAX_SLICES
    }
}
