//! Test data and statistics.

use std::time::Duration;

/// A 1 KiB record of arbitrary bytes, the same for the same seed.
pub fn record(seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The `p` quantile (0 to 1) of sorted, non-empty samples.
///
/// # Panics
///
/// When `sorted` is empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A duration in microseconds.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_1_kib_and_depend_on_the_seed() {
        assert_eq!(record(1).len(), 1024);
        assert_eq!(record(1), record(1));
        assert_ne!(record(1), record(2));
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=101).map(Duration::from_micros).collect();
        assert_eq!(percentile(&sorted, 0.0), Duration::from_micros(1));
        assert_eq!(percentile(&sorted, 0.5), Duration::from_micros(51));
        assert_eq!(percentile(&sorted, 0.99), Duration::from_micros(100));
        assert_eq!(percentile(&sorted, 1.0), Duration::from_micros(101));
        assert_eq!(micros(Duration::from_micros(51)), 51.0);
    }
}
