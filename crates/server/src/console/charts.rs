//! Charts as inline SVG and HTML, drawn on the server from integers: bar sizes are computed with
//! integer arithmetic from fen or record counts (no floats near money).

use suanli_domain::money::Fen;

use super::format::{cny, esc, per_mille, percent};

/// Height of the plot area in SVG units.
const PLOT_HEIGHT: i64 = 160;
/// Width of one column slot and of its bar, in SVG units.
const SLOT_WIDTH: i64 = 40;
const BAR_WIDTH: i64 = 26;
/// Room on the left for the axis label, and below for the column labels.
const LEFT: i64 = 8;
const TOP: i64 = 22;
const BOTTOM: i64 = 24;

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

/// Stacked columns; each segment's height is value × plot height ÷ the tallest column.
pub fn columns(title: &str, unit: Unit, columns: &[Column]) -> String {
    let max = columns
        .iter()
        .map(|c| c.segments.iter().map(|s| s.value.max(0)).sum::<i64>())
        .max()
        .unwrap_or(0);
    let n = i64::try_from(columns.len()).unwrap_or(0).max(1);
    let width = LEFT + n * SLOT_WIDTH + 8;
    let height = TOP + PLOT_HEIGHT + BOTTOM;
    let base = TOP + PLOT_HEIGHT;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{t}\" preserveAspectRatio=\"xMinYMin meet\"><title>{t}</title>",
        t = esc(title)
    );
    svg += &format!(
        "<text class=\"axis\" x=\"{LEFT}\" y=\"14\">{}</text><line class=\"axis\" x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\"/>",
        esc(&show(unit, max)),
        width - 4
    );
    for (i, c) in columns.iter().enumerate() {
        let x = LEFT + i64::try_from(i).unwrap_or(0) * SLOT_WIDTH + (SLOT_WIDTH - BAR_WIDTH) / 2;
        let mut y = base;
        for s in &c.segments {
            let h = if max > 0 {
                (i128::from(s.value.max(0)) * i128::from(PLOT_HEIGHT) / i128::from(max)) as i64
            } else {
                0
            };
            if h == 0 && s.value <= 0 {
                continue;
            }
            let h = h.max(1);
            y -= h;
            svg += &format!(
                "<rect class=\"{}\" x=\"{x}\" y=\"{y}\" width=\"{BAR_WIDTH}\" height=\"{h}\"><title>{} {}: {}</title></rect>",
                s.class,
                esc(&c.label),
                esc(&s.label),
                esc(&show(unit, s.value))
            );
        }
        svg += &format!(
            "<text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x + BAR_WIDTH / 2,
            base + 16,
            esc(&c.label)
        );
    }
    svg += "</svg>";
    svg
}

/// A horizontal progress bar of `whole`: the segments side by side, widths in tenths of a
/// percent (integer), the rest empty.
pub fn progress(whole: Fen, segments: &[(Fen, &'static str, String)]) -> String {
    let mut html = String::from("<div class=\"progress\" role=\"img\">");
    let mut used = 0;
    for (value, class, label) in segments {
        let w = per_mille(*value, whole).min(1000 - used);
        used += w;
        if w > 0 {
            html += &format!(
                "<span class=\"{class}\" style=\"width:{}\" title=\"{}: {}\"></span>",
                percent(w),
                esc(label),
                esc(&cny(*value))
            );
        }
    }
    html += "</div>";
    html
}

/// The legend of a chart: a coloured swatch and a label per class.
pub fn legend(items: &[(&'static str, &str)]) -> String {
    let mut html = String::from("<ul class=\"legend\">");
    for (class, label) in items {
        html += &format!("<li><i class=\"{class}\"></i>{}</li>", esc(label));
    }
    html += "</ul>";
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    // Heights are proportional by integer arithmetic: the tallest column fills the plot.
    #[test]
    fn columns_scale_to_the_tallest() {
        let svg = columns(
            "t",
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
        assert!(svg.contains("¥2.00"), "{svg}");
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
