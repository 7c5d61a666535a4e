//! Line charts as hand-written SVG: a few hundred bytes of markup instead of
//! a plotting crate and its build time.

use std::fmt::Write as _;

pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
/// Room for the title and, below it, the legend in one row.
const TOP: f64 = 60.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// A chart with linear axes from 0 to a round number above the data's
/// maximum.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    chart(title, x_label, y_label, series, XAxis::Linear)
}

/// The same with a logarithmic x axis from the decade at or below the
/// smallest x to the decade at or above the largest: for growth curves over
/// orders of magnitude (1, 100, 10,000 services), which a linear axis would
/// crowd into its left edge. x values must be positive.
pub fn log_x_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    chart(title, x_label, y_label, series, XAxis::Log10)
}

#[derive(Clone, Copy)]
enum XAxis {
    Linear,
    Log10,
}

fn chart(title: &str, x_label: &str, y_label: &str, series: &[Series], axis: XAxis) -> String {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let y_max = nice_ceil(all().map(|p| p.1).fold(0.0, f64::max));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    // Where each x value goes as a fraction of the plot's width, and the
    // x ticks.
    let (fraction, x_ticks): (Box<dyn Fn(f64) -> f64>, Vec<f64>) = match axis {
        XAxis::Linear => {
            let x_max = nice_ceil(all().map(|p| p.0).fold(0.0, f64::max));
            (
                Box::new(move |x| x / x_max),
                (0..=5).map(|i| x_max * f64::from(i) / 5.0).collect(),
            )
        }
        XAxis::Log10 => {
            let decade = |x: f64| x.max(f64::MIN_POSITIVE).log10();
            let lo = all().map(|p| decade(p.0)).fold(f64::INFINITY, f64::min);
            let hi = all().map(|p| decade(p.0)).fold(f64::NEG_INFINITY, f64::max);
            let (lo, hi) = if lo.is_finite() {
                (lo.floor(), hi.ceil())
            } else {
                (0.0, 1.0)
            };
            let hi = if hi > lo { hi } else { lo + 1.0 };
            (
                Box::new(move |x| (decade(x) - lo) / (hi - lo)),
                (lo as i32..=hi as i32).map(|e| 10f64.powi(e)).collect(),
            )
        }
    };
    let sx = |x: f64| LEFT + fraction(x) * plot_w;
    let sy = |y: f64| TOP + plot_h - y / y_max * plot_h;

    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        WIDTH / 2.0,
        escape(title)
    );
    for fx in x_ticks {
        let _ = writeln!(
            svg,
            "<line x1=\"{x}\" y1=\"{TOP}\" x2=\"{x}\" y2=\"{b}\" stroke=\"#ddd\"/>\
             <text x=\"{x}\" y=\"{ty}\" text-anchor=\"middle\">{lx}</text>",
            x = sx(fx),
            b = TOP + plot_h,
            ty = TOP + plot_h + 18.0,
            lx = tick(fx),
        );
    }
    for i in 0..=5 {
        let fy = y_max * f64::from(i) / 5.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{r}\" y2=\"{y}\" stroke=\"#ddd\"/>\
             <text x=\"{tx}\" y=\"{y4}\" text-anchor=\"end\">{ly}</text>",
            y = sy(fy),
            r = LEFT + plot_w,
            tx = LEFT - 6.0,
            y4 = sy(fy) + 4.0,
            ly = tick(fy),
        );
    }
    let _ = write!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" \
         stroke=\"#333\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n\
         <text x=\"18\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {})\">{}</text>\n",
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0,
        escape(x_label),
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    // The legend sits in one row above the plot, where it hides no line.
    let mut legend_x = LEFT;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n\
             <rect x=\"{legend_x}\" y=\"38\" width=\"14\" height=\"4\" fill=\"{color}\"/>\
             <text x=\"{}\" y=\"44\">{}</text>\n",
            points.join(" "),
            legend_x + 20.0,
            escape(&s.name)
        );
        // About 7 px per character at 12 px sans-serif.
        legend_x += 40.0 + 7.0 * s.name.chars().count() as f64;
    }
    svg.push_str("</svg>\n");
    svg
}

/// The empirical CDF of `values` as chart points (value, fraction ≤ value).
pub fn cdf(values: &[f64]) -> Vec<(f64, f64)> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    v.iter()
        .enumerate()
        .map(|(i, &x)| (x, (i + 1) as f64 / n))
        .collect()
}

/// The smallest of 1, 2, 2.5, 5 times a power of ten that is ≥ `x`.
fn nice_ceil(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&v| v >= x * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude)
}

fn tick(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e9 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axis_ends() {
        assert_eq!(nice_ceil(0.0), 1.0);
        assert_eq!(nice_ceil(7.3), 10.0);
        assert_eq!(nice_ceil(180.0), 200.0);
        assert_eq!(nice_ceil(2.2), 2.5);
        assert_eq!(nice_ceil(1000.0), 1000.0);
    }

    #[test]
    fn chart_has_one_line_per_series() {
        let svg = line_chart(
            "t",
            "x",
            "y",
            &[
                Series {
                    name: "a<b".into(),
                    points: cdf(&[3.0, 1.0, 2.0]),
                },
                Series {
                    name: "c".into(),
                    points: vec![(0.0, 0.0), (1.0, 5.0)],
                },
            ],
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a&lt;b"));
        assert!(svg.ends_with("</svg>\n"));
    }

    #[test]
    fn log_x_axis_has_a_tick_per_decade() {
        let svg = log_x_chart(
            "t",
            "x",
            "y",
            &[Series {
                name: "a".into(),
                points: vec![(1.0, 5.0), (100.0, 4.0), (10_000.0, 3.0)],
            }],
        );
        for label in [">1<", ">10<", ">100<", ">1000<", ">10000<"] {
            assert!(svg.contains(label), "{label}");
        }
        // 1 at the left edge, 10,000 at the right one.
        assert!(svg.contains(&format!("points=\"{LEFT:.1},")));
        assert!(svg.contains(&format!("{:.1},", WIDTH - RIGHT)));
    }
}
