//! Order statistics for the figures.

/// Median and 95th percentile of a sample (milliseconds or any unit).
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub median: f64,
    pub p95: f64,
}

impl Summary {
    pub fn of(values: &[f64]) -> Summary {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if sorted.is_empty() {
                return 0.0;
            }
            // Nearest rank: the smallest value with at least q of the sample at or below it.
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[rank - 1]
        };
        Summary { median: at(0.5), p95: at(0.95) }
    }
}
