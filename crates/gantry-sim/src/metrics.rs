//! The openb fragmentation metric: unallocated GPU % as a function of arrived GPU demand %.
//!
//! As the published analysis computes it: after each arrival, arrived % = demand tried so far over
//! capacity, rounded half to even; allocation % rounded to 2 decimals; per integer arrived % X the
//! mean allocation of the points at X (or, if none, at X-1..X+1), rounded to 2 decimals.

use std::collections::BTreeMap;

/// One point of a run: cumulative GPU demand tried so far and GPU milli allocated, after an arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrivalPoint {
    /// Sum of GPU demand (milli) of every pod tried so far, failed ones included.
    pub arrived_milli: u64,
    /// GPU milli allocated in the cluster after this arrival.
    pub allocated_milli: u64,
}

fn pct(milli: u64, capacity_milli: u64) -> f64 {
    // (milli / GPUs) / 10, the published order of operations.
    (milli as f64 / (capacity_milli as f64 / 1000.0)) / 10.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round_ties_even() / 100.0
}

/// Arrived % of a point, rounded half to even.
pub fn arrived_pct(arrived_milli: u64, capacity_milli: u64) -> i64 {
    pct(arrived_milli, capacity_milli).round_ties_even() as i64
}

/// Unallocated GPU % at every integer arrived % from 0 to the last one reached.
pub fn unallocated_curve(points: &[ArrivalPoint], capacity_milli: u64) -> BTreeMap<u32, f64> {
    let mut buckets: BTreeMap<i64, (f64, u32)> = BTreeMap::new();
    for p in points {
        let e = buckets
            .entry(arrived_pct(p.arrived_milli, capacity_milli))
            .or_insert((0.0, 0));
        e.0 += round2(pct(p.allocated_milli, capacity_milli));
        e.1 += 1;
    }
    let last = buckets.keys().next_back().copied().unwrap_or(0).max(0);
    let mut curve = BTreeMap::new();
    for x in 0..=last {
        let (sum, n) = match buckets.get(&x) {
            Some(&b) => b,
            None => buckets
                .range(x - 1..=x + 1)
                .fold((0.0, 0), |(s, n), (_, &(bs, bn))| (s + bs, n + bn)),
        };
        if n > 0 {
            curve.insert(x as u32, 100.0 - round2(sum / f64::from(n)));
        }
    }
    curve
}

/// Mean and sample standard deviation of a list of values.
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Median of a list of values.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(arrived_milli: u64, allocated_milli: u64) -> ArrivalPoint {
        ArrivalPoint {
            arrived_milli,
            allocated_milli,
        }
    }

    #[test]
    fn arrived_pct_rounds_half_to_even() {
        assert_eq!(arrived_pct(0, 1_000_000), 0);
        assert_eq!(arrived_pct(14_900, 1_000_000), 1);
        assert_eq!(arrived_pct(15_000, 1_000_000), 2); // 1.5 -> 2
        assert_eq!(arrived_pct(25_000, 1_000_000), 2); // 2.5 -> 2
        assert_eq!(arrived_pct(1_000_000, 1_000_000), 100);
    }

    #[test]
    fn curve_averages_a_bucket_and_falls_back_to_neighbours() {
        let cap = 100_000;
        // Bucket 100 has two points (90 % and 92 % allocated); bucket 102 has one; 101 is empty.
        let pts = [pt(99_600, 90_000), pt(100_400, 92_000), pt(102_000, 95_000)];
        let c = unallocated_curve(&pts, cap);
        assert!((c[&100] - 9.0).abs() < 1e-9, "{c:?}");
        assert!((c[&102] - 5.0).abs() < 1e-9);
        // 101 takes the points of 100..=102: mean(90, 92, 95) = 92.333 -> 92.33 -> 7.67.
        assert!((c[&101] - 7.67).abs() < 1e-9);
        assert!(!c.contains_key(&98));
    }

    #[test]
    fn mean_sd_and_median() {
        let (m, sd) = mean_sd(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m - 2.5).abs() < 1e-12);
        assert!((sd - 1.290_994_448_735_805_6).abs() < 1e-12);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
