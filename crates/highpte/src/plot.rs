//! Every plot of the command, with one stack (plotters): step reports (LowFree against
//! processes), sweeps, and the bench report's line plots; SVG, or PNG when the file name ends
//! in `.png`. Text is laid out with a TrueType font (DejaVu Sans from the system).

use crate::report::{js, ju};
use plotters::prelude::*;
use serde_json::Value;
use std::path::Path;

/// Check a plot path before any simulation, so that a bad one costs nothing: it must end in
/// `.svg` or `.png`, its directory must exist and take a new file, and the font the plots
/// lay out their text with must be there.
pub fn check_path(path: &Path) -> Result<(), crate::workload_args::InputError> {
    use crate::workload_args::InputError;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(ext.as_deref(), Some("svg" | "png")) {
        return Err(InputError(format!(
            "--plot {}: plots are written as SVG or PNG, chosen by the file name: end it in .svg or .png",
            path.display()
        )));
    }
    let existed = path.exists();
    if path.is_dir() {
        return Err(InputError(format!(
            "--plot {}: this is a directory; give a file name ending in .svg or .png",
            path.display()
        )));
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| {
            InputError(format!(
                "--plot {}: cannot write the plot there ({e}); check that the directory exists and is writable",
                path.display()
            ))
        })?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    register_font().map_err(|e| InputError(format!("--plot {}: {e}", path.display())))
}

/// Plot LowFree (MB) against processes for each run (a run's JSON object,
/// [`crate::cmd_run::report_json`]), one series per run.
pub fn steps_plot(path: &Path, title: &str, runs: &[&Value]) -> anyhow::Result<()> {
    let png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    register_font()?;
    let series: Vec<StepSeries> = runs.iter().map(|r| StepSeries::of(r)).collect();
    let max_x = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .max()
        .unwrap_or(1)
        .max(1);
    let max_y = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0f64 / 1024.0, f64::max);
    let size = (900, 560);
    if png {
        let root = BitMapBackend::new(path, size).into_drawing_area();
        draw_steps(&root, title, &series, max_x, max_y)
            .map_err(|e| anyhow::anyhow!("plot {}: {e}", path.display()))
    } else {
        let root = SVGBackend::new(path, size).into_drawing_area();
        draw_steps(&root, title, &series, max_x, max_y)
            .map_err(|e| anyhow::anyhow!("plot {}: {e}", path.display()))
    }
}

/// One run as a plot sees it: label, (processes, LowFree MB) from boot on, and where the
/// first failure was.
struct StepSeries {
    label: String,
    points: Vec<(u32, f64)>,
    failure: Option<(u32, f64)>,
}

impl StepSeries {
    fn of(r: &Value) -> Self {
        let mbs = |kb: u64| kb as f64 / 1024.0;
        let steps = r["steps"].as_array().cloned().unwrap_or_default();
        let points: Vec<(u32, f64)> = std::iter::once((0u32, mbs(ju(r, &["boot", "LowFree"]))))
            .chain(steps.iter().map(|s| {
                (
                    ju(s, &["processes"]) as u32,
                    mbs(ju(s, &["meminfo", "LowFree"])),
                )
            }))
            .collect();
        let f = &r["first_failure"];
        let failure = f.is_object().then(|| {
            // steps are numbered from 1
            let step = ju(f, &["step"]).saturating_sub(1) as usize;
            let x = steps.get(step).map_or(0, |s| ju(s, &["processes"]) as u32);
            (x, mbs(ju(f, &["LowFree"])))
        });
        Self {
            label: format!("{} ({})", js(r, "config"), js(r, "strategy")),
            points,
            failure,
        }
    }
}

/// Fonts the PNG backend can use (the SVG backend leaves text to the viewer).
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Register DejaVu Sans as plotters' sans-serif font (once).
pub fn register_font() -> anyhow::Result<()> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        for p in FONT_PATHS {
            if let Ok(bytes) = std::fs::read(p) {
                let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, leaked).is_ok() {
                    return true;
                }
            }
        }
        false
    });
    if ok {
        Ok(())
    } else {
        anyhow::bail!("plots need a TrueType font to lay out their text (DejaVu Sans, looked in {}); install Debian's fonts-dejavu-core", FONT_PATHS.join(", "))
    }
}

fn draw_steps<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    series: &[StepSeries],
    max_x: u32,
    max_y: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0u32..max_x + max_x / 20, 0f64..max_y * 1.08)?;
    chart
        .configure_mesh()
        .x_desc("processes")
        .y_desc("LowFree (MB)")
        .draw()?;
    let colors = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    for (i, s) in series.iter().enumerate() {
        let c = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(s.points.clone(), c.stroke_width(3)))?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
        chart.draw_series(s.points.iter().map(|p| Circle::new(*p, 4, c.filled())))?;
        if let Some(f) = s.failure {
            chart.draw_series(std::iter::once(Cross::new(f, 9, c.stroke_width(3))))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::MiddleRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// One series of a sweep: its label and `(x, LowFree in MB, processes failed)` per point.
pub struct SweepSeries {
    /// The legend label (the configuration).
    pub label: String,
    /// `(x, LowFree MB at the last step, processes failed)`, in x order.
    pub points: Vec<(f64, f64, f64)>,
}

/// Plot a sweep as two panels sharing the x axis (`x_desc`, with its unit): LowFree at the
/// last step (MB) on top, processes failed below; one series per configuration.
pub fn sweep_plot(
    path: &Path,
    title: &str,
    x_desc: &str,
    series: &[SweepSeries],
) -> anyhow::Result<()> {
    let xs = || series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let min_x = xs().fold(f64::INFINITY, f64::min);
    let max_x = xs().fold(f64::NEG_INFINITY, f64::max);
    let (min_x, max_x) = if min_x.is_finite() && max_x > min_x {
        let pad = (max_x - min_x) / 20.0;
        (min_x - pad, max_x + pad)
    } else if min_x.is_finite() {
        (min_x - 1.0, min_x + 1.0)
    } else {
        (0.0, 1.0)
    };
    let max_low = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let max_failed = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.2))
        .fold(1.0, f64::max);
    register_font()?;
    let png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let bounds = SweepBounds {
        min_x,
        max_x,
        max_low,
        max_failed,
    };
    let size = (900, 760);
    let fail = |e: String| anyhow::anyhow!("plot {}: {e}", path.display());
    if png {
        draw_sweep(
            &BitMapBackend::new(path, size).into_drawing_area(),
            title,
            x_desc,
            series,
            &bounds,
        )
        .map_err(|e| fail(e.to_string()))
    } else {
        draw_sweep(
            &SVGBackend::new(path, size).into_drawing_area(),
            title,
            x_desc,
            series,
            &bounds,
        )
        .map_err(|e| fail(e.to_string()))
    }
}

/// The axis ranges of a sweep plot.
struct SweepBounds {
    min_x: f64,
    max_x: f64,
    max_low: f64,
    max_failed: f64,
}

fn draw_sweep<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x_desc: &str,
    series: &[SweepSeries],
    b: &SweepBounds,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (min_x, max_x, max_low, max_failed) = (b.min_x, b.max_x, b.max_low, b.max_failed);
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let (top, bottom) = root.split_vertically(380);
    let colors = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    let panels: [(&DrawingArea<DB, plotters::coord::Shift>, &str, f64, usize); 2] = [
        (&top, "LowFree at the last step (MB)", max_low, 1),
        (&bottom, "processes failed", max_failed, 2),
    ];
    for (area, y_desc, max_y, which) in panels {
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(min_x..max_x, 0f64..max_y * 1.08)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()?;
        for (i, s) in series.iter().enumerate() {
            let c = colors[i % colors.len()];
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .map(|p| (p.0, if which == 1 { p.1 } else { p.2 }))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(3)))?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3))
                });
            chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, c.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::MiddleRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// One line of a [`lines`] plot: its label and `(x, y)` points.
pub struct Series {
    /// The legend label.
    pub label: String,
    /// The points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// A line plot of `series` (linear axes from 0) with a legend, as SVG (or PNG by extension):
/// the bench report's plots.
pub fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> anyhow::Result<()> {
    register_font()?;
    let all = || series.iter().flat_map(|s| s.points.iter());
    let max_x = all().map(|p| p.0).fold(1e-9, f64::max);
    let max_y = all().map(|p| p.1).fold(1e-9, f64::max);
    let png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let size = (900, 540);
    let fail = |e: String| anyhow::anyhow!("plot {}: {e}", path.display());
    if png {
        let root = BitMapBackend::new(path, size).into_drawing_area();
        draw_lines(&root, title, x_desc, y_desc, series, max_x, max_y)
            .map_err(|e| fail(e.to_string()))
    } else {
        let root = SVGBackend::new(path, size).into_drawing_area();
        draw_lines(&root, title, x_desc, y_desc, series, max_x, max_y)
            .map_err(|e| fail(e.to_string()))
    }
}

fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    max_x: f64,
    max_y: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..max_x * 1.05, 0f64..max_y * 1.08)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()?;
    let colors = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    for (i, s) in series.iter().enumerate() {
        let c = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(s.points.clone(), c.stroke_width(3)))?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
        chart.draw_series(s.points.iter().map(|p| Circle::new(*p, 4, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
