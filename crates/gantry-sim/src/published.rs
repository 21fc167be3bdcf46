//! Published openb results: unallocated GPU % at 100 % arrival, mean over seeds 42..51.
//!
//! Source: Weng et al., "Beware of Fragmentation: Scheduling GPU-Sharing Workloads with Fragmentation
//! Gradient Descent", USENIX ATC '23, artifact `hkust-adsl/kubernetes-scheduler-simulator`
//! (`experiments/analysis/expected_results`).

/// The published policies, in the table's column order.
pub const PUBLISHED_POLICIES: [&str; 6] = [
    "random",
    "dotprod",
    "gpuclustering",
    "gpupacking",
    "bestfit",
    "fgd",
];

/// (trace, values in `PUBLISHED_POLICIES` order).
pub const PUBLISHED_AT_100: [(&str, [f64; 6]); 12] = [
    ("default", [13.70, 9.38, 8.35, 8.22, 7.14, 4.77]),
    ("cpu050", [10.98, 6.97, 6.48, 6.54, 6.44, 5.00]),
    ("cpu100", [12.57, 8.27, 7.58, 7.50, 6.74, 4.79]),
    ("cpu200", [16.97, 12.55, 10.33, 10.02, 7.85, 5.18]),
    ("gpushare40", [15.14, 10.70, 10.24, 10.23, 8.56, 6.04]),
    ("gpushare60", [17.19, 13.18, 13.10, 12.85, 10.94, 8.75]),
    ("gpushare80", [19.38, 15.86, 15.50, 15.35, 13.34, 10.92]),
    ("gpuspec10", [13.74, 9.83, 8.04, 7.76, 6.90, 5.34]),
    ("gpuspec20", [14.10, 11.71, 10.89, 10.72, 11.54, 5.34]),
    ("multigpu20", [13.08, 8.15, 6.66, 6.50, 6.27, 4.47]),
    ("multigpu30", [13.37, 6.89, 5.45, 5.30, 5.43, 3.64]),
    ("multigpu40", [14.62, 5.96, 4.65, 4.41, 4.90, 3.09]),
];

/// The published value for a trace and policy, if there is one.
pub fn published_at_100(trace: &str, policy: &str) -> Option<f64> {
    let col = PUBLISHED_POLICIES.iter().position(|p| *p == policy)?;
    PUBLISHED_AT_100
        .iter()
        .find(|(t, _)| *t == trace)
        .map(|(_, v)| v[col])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup() {
        assert_eq!(published_at_100("default", "fgd"), Some(4.77));
        assert_eq!(published_at_100("multigpu40", "random"), Some(14.62));
        assert_eq!(published_at_100("default", "gantry"), None);
    }
}
