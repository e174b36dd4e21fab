//! Charts drawn on the server from integers: bar sizes are computed with integer arithmetic from
//! fen or record counts (no floats near money). This module computes the geometry; templates
//! (`templates/chart_*.html`) draw it as inline SVG and HTML, escaping every label.

use askama::Template;
use suanli_domain::money::Fen;

use super::format::{cny, per_mille, percent};
use super::view::Markup;

/// Height of the plot area in SVG units.
const PLOT_HEIGHT: i64 = 160;
/// Width of one column slot and of its bar, in SVG units.
const SLOT_WIDTH: i64 = 40;
const BAR_WIDTH: i64 = 26;
/// Room on the left for the value axis's labels, above for its name, and below for the column
/// labels and the name of the axis under them.
const LEFT: i64 = 72;
const TOP: i64 = 28;
const BOTTOM: i64 = 36;
/// Gridlines above the base line, evenly spaced up to the tallest column.
const GRIDLINES: i64 = 4;

/// One segment of a stacked column: its value and its CSS class (which sets the colour).
pub struct Segment {
    pub value: i64,
    pub class: &'static str,
    pub label: String,
}

/// One column: its label under the axis and its segments, bottom first.
pub struct Column {
    pub label: String,
    pub segments: Vec<Segment>,
}

/// How column values are written in the axis label and tooltips.
#[derive(Clone, Copy)]
pub enum Unit {
    Fen,
    Records,
}

fn show(unit: Unit, value: i64) -> String {
    match unit {
        Unit::Fen => cny(Fen(value)),
        Unit::Records => value.to_string(),
    }
}

/// One drawn bar segment, in SVG units, with its tooltip.
pub struct Bar {
    pub class: &'static str,
    pub x: i64,
    pub y: i64,
    pub height: i64,
    pub tip: String,
}

/// A column's label under the axis.
pub struct Tick {
    pub x: i64,
    pub text: String,
}

/// A gridline across the plot at `y`, labelled with its value on the value axis.
pub struct Gridline {
    pub y: i64,
    pub text: String,
}

/// One column's values as the chart's table gives them, for screen readers and for anyone who
/// wants the figures.
pub struct Row {
    pub label: String,
    pub values: Vec<String>,
}

/// The names of a chart's axes: under the columns, and of the values.
pub struct Axes<'a> {
    pub x: &'a str,
    pub y: &'a str,
}

/// Stacked columns, ready to draw.
#[derive(Template)]
#[template(path = "chart_columns.html")]
pub struct Columns {
    pub title: String,
    pub width: i64,
    pub height: i64,
    /// The y of the axis line.
    pub base: i64,
    /// The y of the column labels.
    pub label_y: i64,
    /// The axes' names, and where the name under the columns goes.
    pub x_name: String,
    pub y_name: String,
    pub x_name_y: i64,
    pub gridlines: Vec<Gridline>,
    /// The table beside the chart: a column per series.
    pub series: Vec<String>,
    pub rows: Vec<Row>,
    pub left: i64,
    /// Where the axis line ends.
    pub axis_end: i64,
    pub bar_width: i64,
    pub bars: Vec<Bar>,
    pub ticks: Vec<Tick>,
}

/// Stacked columns; each segment's height is value × plot height ÷ the tallest column. Named
/// axes, gridlines with their values, each segment's value on hover, and a table of the
/// figures beside it.
pub fn columns(title: &str, axes: Axes, unit: Unit, columns: &[Column]) -> Markup {
    Markup::render(&geometry(title, axes, unit, columns))
}

/// A gridline's value on the value axis: money without `.00` when it is whole yuan.
fn tick(unit: Unit, value: i64) -> String {
    match unit {
        Unit::Fen => {
            let text = cny(Fen(value));
            text.strip_suffix(".00").map_or(text.clone(), str::to_owned)
        }
        Unit::Records => value.to_string(),
    }
}

fn geometry(title: &str, axes: Axes, unit: Unit, columns: &[Column]) -> Columns {
    let max = columns
        .iter()
        .map(|c| c.segments.iter().map(|s| s.value.max(0)).sum::<i64>())
        .max()
        .unwrap_or(0);
    let n = i64::try_from(columns.len()).unwrap_or(0).max(1);
    let width = LEFT + n * SLOT_WIDTH + 8;
    let base = TOP + PLOT_HEIGHT;
    let mut bars = Vec::new();
    let mut ticks = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        let x = LEFT + i64::try_from(i).unwrap_or(0) * SLOT_WIDTH + (SLOT_WIDTH - BAR_WIDTH) / 2;
        let mut y = base;
        for s in &c.segments {
            let h = if max > 0 {
                i64::try_from(
                    i128::from(s.value.max(0)) * i128::from(PLOT_HEIGHT) / i128::from(max),
                )
                .unwrap_or(PLOT_HEIGHT)
            } else {
                0
            };
            if h == 0 && s.value <= 0 {
                continue;
            }
            let h = h.max(1);
            y -= h;
            bars.push(Bar {
                class: s.class,
                x,
                y,
                height: h,
                tip: format!("{} {}: {}", c.label, s.label, show(unit, s.value)),
            });
        }
        ticks.push(Tick {
            x: x + BAR_WIDTH / 2,
            text: c.label.clone(),
        });
    }
    // Gridlines at quarters of the tallest column (integer arithmetic); only the base line
    // when there is nothing to show.
    let steps = if max > 0 { GRIDLINES } else { 0 };
    // Each gridline sits at its labelled value, so a count's gridline (a whole number) is
    // exactly where its value is.
    let gridlines = (0..=steps)
        .map(|k| {
            let value = i64::try_from(i128::from(max) * i128::from(k) / i128::from(GRIDLINES))
                .unwrap_or(max);
            let y = if max > 0 {
                base - i64::try_from(i128::from(value) * i128::from(PLOT_HEIGHT) / i128::from(max))
                    .unwrap_or(PLOT_HEIGHT)
            } else {
                base
            };
            Gridline {
                y,
                text: tick(unit, value),
            }
        })
        .collect();
    let series = columns
        .first()
        .map(|c| c.segments.iter().map(|s| s.label.clone()).collect())
        .unwrap_or_default();
    let rows = columns
        .iter()
        .map(|c| Row {
            label: c.label.clone(),
            values: c.segments.iter().map(|s| show(unit, s.value)).collect(),
        })
        .collect();
    Columns {
        title: title.to_owned(),
        width,
        height: TOP + PLOT_HEIGHT + BOTTOM,
        base,
        label_y: base + 16,
        x_name: axes.x.to_owned(),
        y_name: axes.y.to_owned(),
        x_name_y: base + BOTTOM - 4,
        gridlines,
        series,
        rows,
        left: LEFT,
        axis_end: width - 4,
        bar_width: BAR_WIDTH,
        bars,
        ticks,
    }
}

/// One part of a progress bar: its class, its CSS width and its tooltip.
pub struct Part {
    pub class: &'static str,
    pub width: String,
    pub tip: String,
}

#[derive(Template)]
#[template(path = "chart_progress.html")]
struct Progress {
    parts: Vec<Part>,
}

/// A horizontal progress bar of `whole`: the segments side by side, widths in tenths of a
/// percent (integer), the rest empty.
pub fn progress(whole: Fen, segments: &[(Fen, &'static str, String)]) -> Markup {
    let mut parts = Vec::new();
    let mut used = 0;
    for (value, class, label) in segments {
        let w = per_mille(*value, whole).min(1000 - used);
        used += w;
        if w > 0 {
            parts.push(Part {
                class,
                width: percent(w),
                tip: format!("{label}: {}", cny(*value)),
            });
        }
    }
    Markup::render(&Progress { parts })
}

#[derive(Template)]
#[template(path = "chart_legend.html")]
struct Legend<'a> {
    items: &'a [(&'static str, &'a str)],
}

/// The legend of a chart: a coloured swatch and a label per class.
pub fn legend(items: &[(&'static str, &str)]) -> Markup {
    Markup::render(&Legend { items })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Heights are proportional by integer arithmetic: the tallest column fills the plot.
    #[test]
    fn columns_scale_to_the_tallest() {
        let svg = columns(
            "t",
            Axes {
                x: "month",
                y: "CNY",
            },
            Unit::Fen,
            &[
                Column {
                    label: "1".into(),
                    segments: vec![Segment {
                        value: 50,
                        class: "paid",
                        label: "paid".into(),
                    }],
                },
                Column {
                    label: "2".into(),
                    segments: vec![Segment {
                        value: 200,
                        class: "paid",
                        label: "paid".into(),
                    }],
                },
            ],
        );
        assert!(svg.contains("height=\"40\""), "{svg}");
        assert!(svg.contains("height=\"160\""), "{svg}");
        assert!(
            svg.contains("<title>2 paid: ¥2.00</title>"),
            "a value on hover: {svg}"
        );
        // Gridlines at quarters of the tallest column, labelled on the value axis.
        for (y, text) in [
            (188, "¥0"),
            (148, "¥0.50"),
            (108, "¥1"),
            (68, "¥1.50"),
            (28, "¥2"),
        ] {
            assert!(
                svg.contains(&format!("<line class=\"grid\" x1=\"72\" y1=\"{y}\"")),
                "gridline at {y}: {svg}"
            );
            assert!(svg.contains(&format!(">{text}</text>")), "{text}: {svg}");
        }
        assert!(
            svg.contains(">month</text>") && svg.contains(">CNY</text>"),
            "{svg}"
        );
        // The table beside it.
        assert!(
            svg.contains("<tr><th scope=\"row\">2</th><td>¥2.00</td></tr>"),
            "{svg}"
        );
    }

    // A gridline's label is the value at its height: counts are whole, so the line moves to
    // the count rather than the count being rounded under a quarter's line.
    #[test]
    fn gridlines_sit_at_their_values() {
        let chart = geometry(
            "t",
            Axes {
                x: "day",
                y: "records",
            },
            Unit::Records,
            &[Column {
                label: "1".into(),
                segments: vec![Segment {
                    value: 10,
                    class: "accepted",
                    label: "accepted".into(),
                }],
            }],
        );
        let lines: Vec<(i64, &str)> = chart
            .gridlines
            .iter()
            .map(|g| (g.y, g.text.as_str()))
            .collect();
        assert_eq!(
            lines,
            [(188, "0"), (156, "2"), (108, "5"), (76, "7"), (28, "10")]
        );
    }

    #[test]
    fn progress_never_passes_the_whole() {
        let html = progress(
            Fen(100),
            &[
                (Fen(90), "paid", "paid".into()),
                (Fen(30), "pending", "pending".into()),
            ],
        );
        assert!(html.contains("width:90.0%"), "{html}");
        assert!(html.contains("width:10.0%"), "{html}");
    }
}
