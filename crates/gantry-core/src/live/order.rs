//! The order stage: which pending workload is considered next.
//!
//! Key, ascending: effective priority (descending), then the queue's dominant-resource share over its
//! weight (ascending: the queue furthest below its fair share first), then submission time, then id.
//!
//! Aging: a waiting workload's effective priority grows by `per_step` every `step_secs` of waiting, up
//! to one below the next higher priority class (and at most `max_boost`). Among equals it therefore
//! overtakes younger work and never starves behind a stream of its own class, yet never outranks a
//! higher class (which preemption relies on: victims are chosen by base priority).

use super::workload::WorkloadId;

/// How waiting raises effective priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgingRule {
    /// Seconds of waiting per step (0 disables aging).
    pub step_secs: u64,
    /// Priority added per step.
    pub per_step: i64,
    /// Largest total boost.
    pub max_boost: i64,
}

impl Default for AgingRule {
    fn default() -> Self {
        AgingRule {
            step_secs: 60,
            per_step: 1,
            max_boost: 1000,
        }
    }
}

/// Effective priority of a workload of `priority` that has waited `waited` seconds, when the next higher
/// class has value `next_above`.
pub fn effective_priority(
    priority: i64,
    next_above: Option<i64>,
    waited: u64,
    rule: AgingRule,
) -> i64 {
    if rule.step_secs == 0 {
        return priority;
    }
    let cap = next_above
        .map_or(rule.max_boost, |n| (n - priority - 1).max(0))
        .min(rule.max_boost);
    let steps = i64::try_from(waited / rule.step_secs).unwrap_or(i64::MAX);
    priority.saturating_add(steps.saturating_mul(rule.per_step).min(cap))
}

/// The smallest class value above `priority` among `classes` (sorted ascending).
pub fn next_class_above(classes: &[i64], priority: i64) -> Option<i64> {
    classes.iter().copied().find(|&c| c > priority)
}

/// A workload's place in the order; smaller goes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OrderKey {
    /// Minus the effective priority.
    pub neg_priority: i64,
    /// Queue share over weight, in millionths.
    pub share_ppm: u64,
    /// Submission time.
    pub submitted: u64,
    /// Workload id (last tie-break).
    pub id: WorkloadId,
}

/// The key of a workload.
pub fn order_key(effective: i64, share: f64, submitted: u64, id: WorkloadId) -> OrderKey {
    OrderKey {
        neg_priority: effective.saturating_neg(),
        share_ppm: (share.max(0.0) * 1e6) as u64,
        submitted,
        id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aging_grows_with_waiting_and_stops_below_the_next_class() {
        let rule = AgingRule::default();
        assert_eq!(effective_priority(100, Some(500), 0, rule), 100);
        assert_eq!(effective_priority(100, Some(500), 59, rule), 100);
        assert_eq!(effective_priority(100, Some(500), 120, rule), 102);
        assert_eq!(effective_priority(100, Some(101), 1_000_000, rule), 100);
        assert_eq!(effective_priority(1000, None, 1_000_000_000, rule), 2000);
        let off = AgingRule {
            step_secs: 0,
            ..rule
        };
        assert_eq!(effective_priority(100, Some(500), 1_000_000, off), 100);
        assert_eq!(next_class_above(&[100, 500, 1000], 500), Some(1000));
        assert_eq!(next_class_above(&[100, 500, 1000], 1000), None);
    }

    #[test]
    fn priority_then_share_then_age() {
        let high = order_key(1000, 0.9, 50, 3);
        let fair = order_key(100, 0.1, 90, 2);
        let greedy = order_key(100, 0.5, 10, 1);
        let older = order_key(100, 0.1, 10, 4);
        let mut keys = vec![greedy, fair, older, high];
        keys.sort();
        assert_eq!(keys, vec![high, older, fair, greedy]);
    }
}
