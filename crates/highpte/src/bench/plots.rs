//! SVG line plots for the bench report, written directly (text is left to the viewer, so no
//! font is needed at plot time).

use std::fmt::Write as _;
use std::path::Path;

/// One line: its label and `(x, y)` points.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

const COLORS: [&str; 6] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#000000",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" upper bound and tick step for an axis from 0 to `max`.
fn ticks(max: f64) -> (f64, f64) {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn label(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v.abs() >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A line plot of `series` (linear axes from 0) with a legend, as an SVG file.
pub fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> anyhow::Result<()> {
    let (w, h) = (900.0, 540.0);
    let (l, r, t, b) = (90.0, 30.0, 50.0, 60.0);
    let pw = w - l - r;
    let ph = h - t - b;
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (xmax, xstep) = ticks(all().map(|p| p.0).fold(0.0, f64::max));
    let (ymax, ystep) = ticks(all().map(|p| p.1).fold(0.0, f64::max));
    let sx = |x: f64| l + pw * x / xmax;
    let sy = |y: f64| t + ph - ph * y / ymax;
    let mut s = String::new();
    writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"#
    )?;
    writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#)?;
    writeln!(
        s,
        r#"<text x="{}" y="30" font-size="20" text-anchor="middle">{}</text>"#,
        w / 2.0,
        esc(title)
    )?;
    // grid and tick labels
    let mut v = 0.0;
    while v <= xmax + xstep / 2.0 {
        let x = sx(v);
        writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{t}" x2="{x:.1}" y2="{}" stroke="#e0e0e0"/>"##,
            t + ph
        )?;
        writeln!(
            s,
            r#"<text x="{x:.1}" y="{}" font-size="13" text-anchor="middle">{}</text>"#,
            t + ph + 18.0,
            label(v)
        )?;
        v += xstep;
    }
    let mut v = 0.0;
    while v <= ymax + ystep / 2.0 {
        let y = sy(v);
        writeln!(
            s,
            r##"<line x1="{l}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#e0e0e0"/>"##,
            l + pw
        )?;
        writeln!(
            s,
            r#"<text x="{}" y="{:.1}" font-size="13" text-anchor="end">{}</text>"#,
            l - 6.0,
            y + 4.0,
            label(v)
        )?;
        v += ystep;
    }
    writeln!(
        s,
        r#"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    )?;
    writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="15" text-anchor="middle">{}</text>"#,
        l + pw / 2.0,
        h - 15.0,
        esc(x_desc)
    )?;
    writeln!(
        s,
        r#"<text x="20" y="{}" font-size="15" text-anchor="middle" transform="rotate(-90 20 {})">{}</text>"#,
        t + ph / 2.0,
        t + ph / 2.0,
        esc(y_desc)
    )?;
    for (i, se) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let pts: Vec<String> = se
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.1)))
            .collect();
        writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="3"/>"#,
            pts.join(" ")
        )?;
        for p in &se.points {
            writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{c}"/>"#,
                sx(p.0),
                sy(p.1)
            )?;
        }
        let ly = t + 20.0 + 20.0 * i as f64;
        writeln!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="3"/>"#,
            l + 15.0,
            l + 40.0
        )?;
        writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="13">{}</text>"#,
            l + 46.0,
            ly + 4.0,
            esc(&se.label)
        )?;
    }
    writeln!(s, "</svg>")?;
    std::fs::write(path, s)?;
    Ok(())
}
