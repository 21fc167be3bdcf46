//! A dependency-free SVG line chart, for unallocated-GPU curves.

use std::fmt::Write;

/// One named line of a chart.
pub struct Series<'a> {
    /// Legend label.
    pub label: &'a str,
    /// Points (x, y), x increasing.
    pub points: Vec<(f64, f64)>,
}

const COLORS: [&str; 12] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders series as an SVG line chart over the x range `x_range`, with axis labels and a legend.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    x_range: (f64, f64),
    series: &[Series<'_>],
) -> String {
    let (w, h) = (720.0, 440.0);
    let (left, right, top, bottom) = (64.0, 160.0, 36.0, 48.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let (x0, x1) = x_range;
    let in_range = |x: f64| x >= x0 && x <= x1;
    let ys = series
        .iter()
        .flat_map(|s| s.points.iter().filter(|p| in_range(p.0)).map(|p| p.1));
    let y_max = ys.fold(0.0f64, f64::max);
    let y_top = if y_max <= 0.0 {
        1.0
    } else {
        nice_ceiling(y_max)
    };
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| top + ph - y / y_top * ph;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{}</text>"#,
        left + pw / 2.0,
        escape(title)
    );
    for i in 0..=5 {
        let y = y_top * f64::from(i) / 5.0;
        let py = sy(y);
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{y:.1}</text>"##,
            left + pw,
            left - 6.0,
            py + 4.0
        );
    }
    let mut x = (x0 / 5.0).ceil() * 5.0;
    while x <= x1 {
        let px = sx(x);
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{top}" x2="{px:.1}" y2="{:.1}" stroke="#eee"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{x}</text>"##,
            top + ph,
            top + ph + 16.0
        );
        x += 5.0;
    }
    let _ = writeln!(
        out,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        left + pw / 2.0,
        h - 10.0,
        escape(x_label)
    );
    let _ = writeln!(
        out,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
        top + ph / 2.0,
        top + ph / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|p| in_range(p.0) && p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        let ly = top + 14.0 + 18.0 * i as f64;
        let lx = left + pw + 12.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            escape(s.label)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn nice_ceiling(v: f64) -> f64 {
    let mag = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * mag >= v {
            return step * mag;
        }
    }
    10.0 * mag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_one_polyline_per_series_and_escapes_labels() {
        let svg = line_chart(
            "t",
            "x",
            "y",
            (75.0, 130.0),
            &[
                Series {
                    label: "a<b",
                    points: vec![(75.0, 1.0), (100.0, 5.0)],
                },
                Series {
                    label: "c",
                    points: vec![(80.0, 2.0), (200.0, 9.0)],
                },
            ],
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a&lt;b"));
        assert!(svg.starts_with("<svg"));
    }

    #[test]
    fn nice_ceiling_rounds_up() {
        assert_eq!(nice_ceiling(7.3), 10.0);
        assert_eq!(nice_ceiling(13.0), 20.0);
        assert_eq!(nice_ceiling(0.22), 0.25);
    }
}
