//! Summaries of repeated measurements: the median (robust against the
//! one run a noisy neighbour spoiled) and the spread (min–max), so a reader
//! sees how much to trust a ratio.

use serde::Serialize;

/// Nearest-rank percentile `p` (0–100) of `values`, which it sorts.
/// NaN for no values.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// Median of repetitions; the mean of the middle two for an even count.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Mean of the middle half of `values` (the interquartile mean); NaN for
/// no values.
///
/// For many samples of a quantity near the resolution of the clock that
/// took them: this machine's clock advances in steps of about 10 ns, so
/// every single sample, and thus their median, is a whole number of steps,
/// and two programs 5 ns apart could show the same median or medians a
/// step apart. The samples start at random phases of a step, so the mean
/// resolves below it; taking only the middle half keeps the median's
/// indifference to the outliers at both ends (an interrupt, a cold cache).
pub fn interquartile_mean(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let quarter = v.len() / 4;
    let middle = &v[quarter..v.len() - quarter];
    if middle.is_empty() {
        return f64::NAN;
    }
    middle.iter().sum::<f64>() / middle.len() as f64
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Summary {
    pub fn of(values: &[f64]) -> Summary {
        Summary {
            median: median(values),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            n: values.len(),
        }
    }
}

/// A number with three significant digits, without scientific notation
/// for the magnitudes we report.
pub fn fmt3(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 50.0), 50.0);
        assert_eq!(percentile(&mut v, 99.0), 99.0);
        assert_eq!(percentile(&mut v, 100.0), 100.0);
        assert_eq!(percentile(&mut [7.0], 99.0), 7.0);
        assert_eq!(interquartile_mean(&[100.0, 1.0, 2.0, 3.0]), 2.5);
        // Steps of 10 around a true value between them: the median is a
        // step, the mean of the middle half falls between the steps.
        let steps = [70.0, 60.0, 70.0, 60.0, 500.0, 70.0, 60.0, 70.0];
        assert_eq!(median(&steps), 70.0);
        assert_eq!(interquartile_mean(&steps), 67.5);
        assert!(interquartile_mean(&[]).is_nan());
        let s = Summary::of(&[2.0, 5.0, 3.0]);
        assert_eq!((s.median, s.min, s.max, s.n), (3.0, 2.0, 5.0, 3));
    }

    #[test]
    fn three_significant_digits() {
        assert_eq!(fmt3(12345.6), "12346");
        assert_eq!(fmt3(23.456), "23.5");
        assert_eq!(fmt3(1.234), "1.23");
        assert_eq!(fmt3(0.01234), "0.012");
        assert_eq!(fmt3(f64::NAN), "—");
    }
}
