//! Line plots as SVG (`plotters`): panels side by side, one line per run, as the paper's
//! Figure 2 draws the distance to the pretrained weights over training.

use std::path::Path;

use plotters::prelude::*;

/// One line of a panel.
#[derive(Clone, Debug)]
pub struct Series {
    /// The legend entry (the run).
    pub label: String,
    /// (step, value) points; non-finite values are left out.
    pub points: Vec<(f64, f64)>,
}

/// One chart.
#[derive(Clone, Debug)]
pub struct Panel {
    /// The chart's title, which says what is plotted.
    pub title: String,
    /// The lines.
    pub series: Vec<Series>,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// An axis range that shows every value: padded by 5%, and around a single value (or none) a
/// range wide enough for distinct tick labels.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if hi - lo <= 1e-9 * lo.abs().max(1.0) {
        let pad = if lo.abs() >= 1.0 { lo.abs() * 0.1 } else { 0.1 };
        (lo - pad, hi + pad)
    } else {
        let pad = (hi - lo) * 0.05;
        (lo - pad, hi + pad)
    }
}

/// A tick label with as many decimals as the axis's span needs for neighbouring ticks (about a
/// tenth of it apart) to read differently.
fn tick_label(value: f64, span: f64) -> String {
    let step = span / 10.0;
    let decimals = if step >= 1.0 || step <= 0.0 || !step.is_finite() {
        0
    } else {
        (-step.log10()).ceil().clamp(0.0, 6.0) as usize
    };
    format!("{value:.decimals$}")
}

/// Draws `panels` side by side into an SVG file at `path`.
pub fn write_svg(path: &Path, panels: &[Panel]) -> Result<(), String> {
    let width = 420 * panels.len().max(1) as u32;
    let root = SVGBackend::new(path, (width, 340)).into_drawing_area();
    let error = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| error(&e))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (panel, area) in panels.iter().zip(areas) {
        let points = || panel.series.iter().flat_map(|s| s.points.iter());
        let (x0, x1) = range(points().map(|p| p.0));
        let (y0, y1) = range(points().map(|p| p.1));
        let mut chart = ChartBuilder::on(&area)
            .caption(&panel.title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| error(&e))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .x_label_formatter(&|x| tick_label(*x, x1 - x0))
            .y_label_formatter(&|y| tick_label(*y, y1 - y0))
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| error(&e))?;
        for (i, series) in panel.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let finite = series
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite());
            // A line needs two points: a series of one is drawn as a marker.
            let lone = finite.clone().count() == 1;
            chart
                .draw_series(LineSeries::new(finite.clone(), color.stroke_width(2)))
                .map_err(|e| error(&e))?
                .label(series.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            if lone {
                chart
                    .draw_series(finite.map(|p| Circle::new(p, 4, color.filled())))
                    .map_err(|e| error(&e))?;
            }
        }
        // The legend goes in the right-hand corner that the lines cross least.
        let crowded = |top: bool| {
            points()
                .filter(|(x, y)| {
                    let (fx, fy) = ((x - x0) / (x1 - x0), (y - y0) / (y1 - y0));
                    fx > 0.55 && if top { fy > 0.6 } else { fy < 0.4 }
                })
                .count()
        };
        let corner = if crowded(true) <= crowded(false) {
            SeriesLabelPosition::UpperRight
        } else {
            SeriesLabelPosition::LowerRight
        };
        chart
            .configure_series_labels()
            .position(corner)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| error(&e))?;
    }
    root.present().map_err(|e| error(&e))
}

/// The median of the finite values (the mean of the two middle ones for an even count); `None`
/// when there are none. The strips' bars and the study's tables use this one definition.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some((v[(n - 1) / 2] + v[n / 2]) / 2.0)
}

/// One chart of values by category (an arm, say): every value a marker, the median a bar.
#[derive(Clone, Debug)]
pub struct Strip {
    /// The chart's title.
    pub title: String,
    /// The categories along the x axis, in order.
    pub categories: Vec<String>,
    /// Each category's values (one per seed); non-finite values are left out.
    pub values: Vec<Vec<f64>>,
}

/// Draws `strips` side by side into an SVG file at `path`, each with its own value axis.
pub fn write_strips_svg(path: &Path, strips: &[Strip]) -> Result<(), String> {
    let width = 360 * strips.len().max(1) as u32;
    let root = SVGBackend::new(path, (width, 340)).into_drawing_area();
    let error = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| error(&e))?;
    let areas = root.split_evenly((1, strips.len().max(1)));
    for (strip, area) in strips.iter().zip(areas) {
        let n = strip.categories.len().max(1);
        let (y0, y1) = range(strip.values.iter().flatten().copied());
        let mut chart = ChartBuilder::on(&area)
            .caption(&strip.title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, y0..y1)
            .map_err(|e| error(&e))?;
        let names = strip.categories.clone();
        chart
            .configure_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 0.05 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| tick_label(*y, y1 - y0))
            .disable_x_mesh()
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| error(&e))?;
        for (i, values) in strip.values.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
            // Seeds side by side within the category, so that equal values stay visible.
            let spread = |j: usize| {
                let k = finite.len().max(1) as f64;
                i as f64 + 0.3 * ((j as f64 + 0.5) / k - 0.5)
            };
            chart
                .draw_series(
                    finite
                        .iter()
                        .enumerate()
                        .map(|(j, &v)| Circle::new((spread(j), v), 4, color.filled())),
                )
                .map_err(|e| error(&e))?;
            if let Some(median) = median(finite.iter().copied()) {
                let x = i as f64;
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(x - 0.25, median), (x + 0.25, median)],
                        BLACK.stroke_width(2),
                    )))
                    .map_err(|e| error(&e))?;
            }
        }
    }
    root.present().map_err(|e| error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median([]), None);
    }

    #[test]
    fn a_single_value_gets_a_range_with_distinct_ticks() {
        let (lo, hi) = range([30.0].into_iter());
        assert!(lo < 30.0 && hi > 30.0);
        let labels: Vec<String> = (0..=10)
            .map(|i| tick_label(lo + (hi - lo) * i as f64 / 10.0, hi - lo))
            .collect();
        let mut distinct = labels.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), labels.len(), "{labels:?}");
        let (lo, hi) = range([0.65, 0.65].into_iter());
        assert!(lo < 0.65 && hi > 0.65 && hi - lo < 1.0);
        assert_eq!(range(std::iter::empty()), (0.0, 1.0));
    }

    #[test]
    fn one_point_series_and_one_value_strips_draw() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.svg");
        let panel = Panel {
            title: "dev".into(),
            series: vec![Series {
                label: "run".into(),
                points: vec![(30.0, 0.5)],
            }],
        };
        write_svg(&path, &[panel]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("<circle"), "no marker for a lone point");
        // The step axis around 30 reads 29, 30, 31 (not "30" at every tick).
        let texts: Vec<&str> = svg
            .split("</text>")
            .filter_map(|t| Some(t.rsplit_once('>')?.1.trim()))
            .collect();
        for tick in ["29.0", "30.0", "31.0"] {
            assert!(texts.contains(&tick), "no tick {tick} in {texts:?}");
        }
        let strip = Strip {
            title: "RTE".into(),
            categories: vec!["adamw".into(), "recadam".into()],
            values: vec![vec![0.6], vec![0.6, 0.7]],
        };
        write_strips_svg(&path, &[strip]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("recadam"));
    }
}
