//! Charts drawn as SVG with `plotters`: time series with deploy markers and threshold lines, and a
//! live histogram over its training baseline. Pure functions of their input, so the dashboard's
//! refresh cost is measurable without a window and the same SVG reaches every front end.

use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// How a value is shown on an axis and in a tooltip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// 0..100.
    Percent,
    /// 0..1 shown as a percentage.
    Ratio,
    Bytes,
    BytesPerSecond,
    Seconds,
    PerSecond,
    Plain,
}

impl Unit {
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::Percent => format!("{v:.0}%"),
            Unit::Ratio => {
                if v != 0.0 && v.abs() < 0.1 {
                    format!("{:.1}%", v * 100.0)
                } else {
                    format!("{:.0}%", v * 100.0)
                }
            }
            Unit::Bytes => bytes(v, ""),
            Unit::BytesPerSecond => bytes(v, "/s"),
            Unit::Seconds => {
                if v.abs() >= 1.0 {
                    format!("{v:.1} s")
                } else if v.abs() >= 1e-3 {
                    format!("{:.0} ms", v * 1e3)
                } else {
                    format!("{:.0} µs", v * 1e6)
                }
            }
            Unit::PerSecond => format!("{}/s", plain(v)),
            Unit::Plain => plain(v),
        }
    }
}

fn plain(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else if a >= 0.01 {
        format!("{v:.2}")
    } else {
        format!("{v:.1e}")
    }
}

fn bytes(v: f64, suffix: &str) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = v;
    let mut i = 0;
    while x.abs() >= 1024.0 && i + 1 < UNITS.len() {
        x /= 1024.0;
        i += 1;
    }
    if i == 0 || x.abs() >= 100.0 {
        format!("{x:.0} {}{suffix}", UNITS[i])
    } else {
        format!("{x:.1} {}{suffix}", UNITS[i])
    }
}

/// One line: `(unix seconds, value)`; `None` leaves a gap (no data that minute).
#[derive(Clone, Debug)]
pub struct Line {
    pub label: String,
    pub points: Vec<(i64, Option<f64>)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MarkerKind {
    Deploy,
    Rollback,
    Failed,
}

/// A vertical line at a deploy or rollback.
#[derive(Clone, Debug)]
pub struct Marker {
    pub t: i64,
    pub label: String,
    pub kind: MarkerKind,
}

#[derive(Clone, Debug)]
pub struct TimeChart {
    pub title: String,
    pub unit: Unit,
    pub from: i64,
    pub to: i64,
    /// Added to unix seconds before the time labels are drawn (the viewer's UTC offset).
    pub utc_offset_s: i64,
    pub lines: Vec<Line>,
    pub markers: Vec<Marker>,
    /// A horizontal alert line and its label.
    pub threshold: Option<(f64, String)>,
    /// Lowest upper bound of the y axis (e.g. 100 for percentages, so a flat 2 % does not fill it).
    pub y_floor: f64,
}

pub const WIDTH: u32 = 560;
pub const HEIGHT: u32 = 240;

const PALETTE: [RGBColor; 4] = [
    RGBColor(0x25, 0x63, 0xeb),
    RGBColor(0xd9, 0x77, 0x06),
    RGBColor(0x7c, 0x3a, 0xed),
    RGBColor(0x05, 0x96, 0x69),
];
const GRID: RGBColor = RGBColor(0xe5, 0xe7, 0xeb);
const AXIS: RGBColor = RGBColor(0x4b, 0x55, 0x63);
const ALERT: RGBColor = RGBColor(0xdc, 0x26, 0x26);
const BASELINE: RGBColor = RGBColor(0x9c, 0xa3, 0xaf);

fn marker_color(k: MarkerKind) -> RGBColor {
    match k {
        MarkerKind::Deploy => RGBColor(0x05, 0x96, 0x69),
        MarkerKind::Rollback => RGBColor(0xd9, 0x77, 0x06),
        MarkerKind::Failed => ALERT,
    }
}

/// `HH:MM` of a unix time shifted by the viewer's offset.
fn clock(t: i64) -> String {
    let s = t.rem_euclid(86_400);
    format!("{:02}:{:02}", s / 3600, (s % 3600) / 60)
}

/// Round clock times for the x axis (every 5 min, 15 min, 1 h... so at most 6 fit), as unix seconds.
fn time_ticks(from: i64, to: i64, offset: i64) -> Vec<f64> {
    const STEPS: [i64; 9] = [60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600];
    let span = (to - from).max(60);
    let step = STEPS.into_iter().find(|s| span / s <= 6).unwrap_or(86_400);
    let first = (from + offset).div_euclid(step) * step + step - offset;
    (0..)
        .map(|i| first + i * step)
        .take_while(|t| *t <= to)
        .map(|t| t as f64)
        .collect()
}

fn draw_err<E: std::fmt::Debug>(e: E) -> String {
    format!("drawing the chart: {e:?}")
}

/// The chart as an SVG document.
pub fn time_chart_svg(c: &TimeChart) -> Result<String, String> {
    let mut svg = String::with_capacity(32 * 1024);
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw_time_chart(&root, c).map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

fn draw_time_chart(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    c: &TimeChart,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let (from, to) = (c.from as f64, (c.to.max(c.from + 60)) as f64);
    let mut y_max = c.y_floor;
    let mut y_min: f64 = 0.0;
    for l in &c.lines {
        for v in l.points.iter().filter_map(|p| p.1) {
            if v.is_finite() {
                y_max = y_max.max(v);
                y_min = y_min.min(v);
            }
        }
    }
    if let Some((t, _)) = c.threshold {
        y_max = y_max.max(t * 1.15);
    }
    if y_max <= y_min {
        y_max = y_min + 1.0;
    }
    y_max *= 1.08;

    let offset = c.utc_offset_s;
    let unit = c.unit;
    let mut chart = ChartBuilder::on(root)
        .margin(8)
        .margin_right(16)
        .x_label_area_size(22)
        .y_label_area_size(62)
        .build_cartesian_2d(from..to, y_min..y_max)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID)
        .axis_style(AXIS)
        .label_style(("sans-serif", 12).into_font().color(&AXIS))
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(5)
        .y_label_formatter(&|y| unit.format(*y))
        .draw()?;
    // Time labels on round local clock times (plotters' own ticks would fall on round seconds).
    let label_style = ("sans-serif", 12)
        .into_font()
        .color(&AXIS)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for t in time_ticks(c.from, c.to, offset) {
        chart.draw_series(std::iter::once(PathElement::new(
            [(t, y_min), (t, y_max)],
            ShapeStyle::from(GRID).stroke_width(1),
        )))?;
        let (px, py) = chart.backend_coord(&(t, y_min));
        root.draw(&Text::new(
            clock(t as i64 + offset),
            (px, py + 5),
            label_style.clone(),
        ))?;
    }

    if let Some((t, label)) = &c.threshold {
        let style = ShapeStyle::from(ALERT).stroke_width(1);
        chart.draw_series(DashedLineSeries::new([(from, *t), (to, *t)], 6, 4, style))?;
        chart.draw_series(std::iter::once(Text::new(
            label.clone(),
            (from + (to - from) * 0.01, *t),
            ("sans-serif", 11).into_font().color(&ALERT),
        )))?;
    }

    for m in &c.markers {
        let x = m.t as f64;
        if x < from || x > to {
            continue;
        }
        let color = marker_color(m.kind);
        chart.draw_series(DashedLineSeries::new(
            [(x, y_min), (x, y_max)],
            4,
            3,
            ShapeStyle::from(color).stroke_width(1),
        ))?;
        chart.draw_series(std::iter::once(Text::new(
            m.label.clone(),
            (x, y_max),
            ("sans-serif", 11).into_font().color(&color),
        )))?;
    }

    for (i, l) in c.lines.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let style = ShapeStyle::from(color).stroke_width(2);
        let mut first = true;
        for segment in segments(&l.points) {
            let series = chart.draw_series(LineSeries::new(segment, style))?;
            if first {
                series
                    .label(l.label.clone())
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], style));
                first = false;
            }
        }
    }
    if c.lines.len() > 1 || c.lines.iter().any(|l| !l.label.is_empty()) {
        draw_legend(&mut chart)?;
    }
    Ok(())
}

/// The series labels, top right, in the charts' one style.
fn draw_legend<'a, 'b: 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, CT>,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(GRID)
        .label_font(("sans-serif", 11).into_font().color(&AXIS))
        .draw()
}

/// Runs of consecutive points with a value; a single isolated point becomes a tiny segment so it
/// is still visible.
fn segments(points: &[(i64, Option<f64>)]) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    for (t, v) in points {
        match v {
            Some(v) if v.is_finite() => cur.push((*t as f64, *v)),
            _ => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    for s in &mut out {
        if s.len() == 1 {
            let (x, y) = s[0];
            s.push((x + 20.0, y));
        }
    }
    out
}

/// A live distribution over its training baseline, both as shares of their totals.
#[derive(Clone, Debug)]
pub struct Histogram {
    pub title: String,
    /// Closed bins' boundaries; `baseline` and `current` have `edges.len() + 1` slots (open bins at
    /// both ends, drawn half a neighbouring bin wide).
    pub edges: Vec<f64>,
    pub baseline: Vec<f64>,
    pub current: Vec<f64>,
    pub unit: Unit,
    pub threshold: Option<(f64, String)>,
}

pub fn histogram_svg(h: &Histogram) -> Result<String, String> {
    if h.edges.len() < 2
        || h.baseline.len() != h.edges.len() + 1
        || h.current.len() != h.edges.len() + 1
    {
        return Err(format!(
            "histogram `{}`: {} edges need {} slots, got baseline {} and current {}",
            h.title,
            h.edges.len(),
            h.edges.len() + 1,
            h.baseline.len(),
            h.current.len()
        ));
    }
    let mut svg = String::with_capacity(16 * 1024);
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw_histogram(&root, h).map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Slot boundaries with the open bins closed at half a neighbouring width.
fn slot_bounds(edges: &[f64]) -> Vec<(f64, f64)> {
    let n = edges.len();
    let first_w = (edges[1] - edges[0]) / 2.0;
    let last_w = (edges[n - 1] - edges[n - 2]) / 2.0;
    let mut b = vec![(edges[0] - first_w, edges[0])];
    b.extend(edges.windows(2).map(|w| (w[0], w[1])));
    b.push((edges[n - 1], edges[n - 1] + last_w));
    b
}

fn shares(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    counts
        .iter()
        .map(|c| if total > 0.0 { c / total } else { 0.0 })
        .collect()
}

fn draw_histogram(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    h: &Histogram,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let bounds = slot_bounds(&h.edges);
    let base = shares(&h.baseline);
    let cur = shares(&h.current);
    // Shares per unit of x (a density), so unequal bin widths compare fairly.
    let density = |s: &[f64]| -> Vec<f64> {
        s.iter()
            .zip(&bounds)
            .map(|(v, (lo, hi))| v / (hi - lo).max(f64::EPSILON))
            .collect()
    };
    let (bd, cd) = (density(&base), density(&cur));
    let y_max = bd
        .iter()
        .chain(&cd)
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        .max(f64::EPSILON)
        * 1.1;
    let (x_lo, x_hi) = (bounds[0].0, bounds[bounds.len() - 1].1);
    let unit = h.unit;
    let mut chart = ChartBuilder::on(root)
        .margin(8)
        .margin_right(16)
        .x_label_area_size(22)
        .y_label_area_size(20)
        .build_cartesian_2d(x_lo..x_hi, 0.0..y_max)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID)
        .axis_style(AXIS)
        .disable_y_mesh()
        .y_labels(0)
        .x_labels(6)
        .label_style(("sans-serif", 12).into_font().color(&AXIS))
        .x_label_formatter(&|x| unit.format(*x))
        .draw()?;
    chart
        .draw_series(bounds.iter().zip(&bd).map(|((lo, hi), d)| {
            Rectangle::new([(*lo, 0.0), (*hi, *d)], BASELINE.mix(0.35).filled())
        }))?
        .label("training")
        .legend(|(x, y)| {
            Rectangle::new([(x, y - 5), (x + 12, y + 5)], BASELINE.mix(0.35).filled())
        });
    let live = PALETTE[0];
    chart
        .draw_series(bounds.iter().zip(&cd).map(|((lo, hi), d)| {
            Rectangle::new(
                [(*lo, 0.0), (*hi, *d)],
                ShapeStyle::from(live).stroke_width(2),
            )
        }))?
        .label("live")
        .legend(move |(x, y)| {
            Rectangle::new(
                [(x, y - 5), (x + 12, y + 5)],
                ShapeStyle::from(live).stroke_width(2),
            )
        });
    if let Some((t, label)) = &h.threshold {
        if *t > x_lo && *t < x_hi {
            chart.draw_series(DashedLineSeries::new(
                [(*t, 0.0), (*t, y_max)],
                6,
                4,
                ShapeStyle::from(ALERT).stroke_width(1),
            ))?;
            chart.draw_series(std::iter::once(Text::new(
                label.clone(),
                (*t, y_max),
                ("sans-serif", 11).into_font().color(&ALERT),
            )))?;
        }
    }
    draw_legend(&mut chart)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// plotters writes each label on its own line between `<text …>` and `</text>`.
    fn has_text(svg: &str, label: &str) -> bool {
        svg.lines().any(|l| l.trim() == label)
    }

    fn chart(lines: Vec<Line>) -> TimeChart {
        TimeChart {
            title: "t".into(),
            unit: Unit::Percent,
            from: 0,
            to: 3600,
            utc_offset_s: 0,
            lines,
            markers: vec![Marker {
                t: 1800,
                label: "v2".into(),
                kind: MarkerKind::Deploy,
            }],
            threshold: Some((80.0, "alert 80%".into())),
            y_floor: 100.0,
        }
    }

    #[test]
    fn formats_units() {
        assert_eq!(Unit::Bytes.format(1536.0), "1.5 KiB");
        assert_eq!(
            Unit::Bytes.format(3.0 * 1024.0 * 1024.0 * 1024.0),
            "3.0 GiB"
        );
        assert_eq!(Unit::Seconds.format(0.000148), "148 µs");
        assert_eq!(Unit::Seconds.format(0.25), "250 ms");
        assert_eq!(Unit::Ratio.format(0.034), "3.4%");
        assert_eq!(Unit::Ratio.format(0.5), "50%");
        assert_eq!(Unit::PerSecond.format(12345.0), "12k/s");
        assert_eq!(clock(3600 * 25 + 61), "01:01");
    }

    #[test]
    fn time_ticks_fall_on_round_local_times() {
        // 15 minutes from 10:02:30 UTC, viewer at UTC+1: ticks at 11:05, 11:10, 11:15 local.
        let from = 10 * 3600 + 150;
        let t = time_ticks(from, from + 900, 3600);
        let labels: Vec<String> = t.iter().map(|x| clock(*x as i64 + 3600)).collect();
        assert_eq!(labels, vec!["11:05", "11:10", "11:15"]);
        let day: Vec<String> = time_ticks(0, 86_400, 0)
            .iter()
            .map(|x| clock(*x as i64))
            .collect();
        assert_eq!(
            day,
            vec!["06:00", "12:00", "18:00", "00:00"],
            "24 h: every 6 h"
        );
    }

    #[test]
    fn gaps_split_lines() {
        let s = segments(&[
            (0, Some(1.0)),
            (60, Some(2.0)),
            (120, None),
            (180, Some(3.0)),
            (240, Some(f64::NAN)),
        ]);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0], vec![(0.0, 1.0), (60.0, 2.0)]);
        assert_eq!(s[1], vec![(180.0, 3.0), (200.0, 3.0)]);
    }

    #[test]
    fn time_chart_draws_lines_markers_and_threshold() {
        let svg = time_chart_svg(&chart(vec![Line {
            label: "host".into(),
            points: (0..60).map(|i| (i * 60, Some(i as f64))).collect(),
        }]))
        .unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.contains("<polyline"), "no line drawn");
        assert!(has_text(&svg, "v2"), "no deploy marker label");
        assert!(has_text(&svg, "alert 80%"), "no threshold label");
        assert!(has_text(&svg, "host"), "no legend");
        assert!(
            has_text(&svg, "0%") && has_text(&svg, "00:30"),
            "no axis labels"
        );
    }

    #[test]
    fn empty_chart_still_draws_axes() {
        let svg = time_chart_svg(&chart(vec![])).unwrap();
        assert!(has_text(&svg, "00:30") && has_text(&svg, "00:10"), "{svg}");
    }

    #[test]
    fn histogram_checks_its_shape() {
        let h = Histogram {
            title: "x".into(),
            edges: vec![0.0, 1.0, 2.0],
            baseline: vec![0.0, 5.0, 5.0, 0.0],
            current: vec![1.0, 0.0, 9.0],
            unit: Unit::Plain,
            threshold: None,
        };
        let e = histogram_svg(&h).unwrap_err();
        assert!(e.contains("need 4 slots"), "{e}");
        let ok = Histogram {
            current: vec![1.0, 0.0, 9.0, 0.0],
            ..h
        };
        let svg = histogram_svg(&ok).unwrap();
        assert!(
            has_text(&svg, "training") && has_text(&svg, "live"),
            "{svg}"
        );
        assert_eq!(
            slot_bounds(&ok.edges),
            vec![(-0.5, 0.0), (0.0, 1.0), (1.0, 2.0), (2.0, 2.5)]
        );
    }
}
