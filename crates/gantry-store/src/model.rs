//! The store's plain data types: workloads, their states and assignments, events, list queries.

use crate::error::{Error, Result};
use gantry_core::spec::WorkloadSpec;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A point in time: milliseconds since the Unix epoch (always an input, never read from a clock here).
pub type UnixMillis = i64;

/// Most workloads one [`Store::list`](crate::Store::list) page may hold.
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// Audit actions the store writes itself (callers may record others with [`Store::record`](crate::Store::record)).
pub mod actions {
    /// A workload was submitted.
    pub const SUBMITTED: &str = "submitted";
    /// A workload changed state.
    pub const TRANSITION: &str = "transition";
    /// A finished workload was deleted.
    pub const DELETED: &str = "deleted";
    /// A queue was created or replaced.
    pub const QUEUE_PUT: &str = "queue.put";
    /// A queue was deleted.
    pub const QUEUE_DELETE: &str = "queue.delete";
    /// A setting was changed.
    pub const SETTING_SET: &str = "setting.set";
    /// A token was created.
    pub const TOKEN_CREATE: &str = "token.create";
    /// A token was revoked.
    pub const TOKEN_REVOKE: &str = "token.revoke";
}

/// A workload's id: the SQLite rowid, written `wl-<n>` (strictly increasing, never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkloadId(i64);

impl WorkloadId {
    /// Prefix of the text form.
    pub const PREFIX: &'static str = "wl-";

    /// The id of rowid `n`, if `n` is positive.
    pub fn from_raw(n: i64) -> Option<WorkloadId> {
        (n > 0).then_some(WorkloadId(n))
    }

    /// The rowid.
    pub fn raw(self) -> i64 {
        self.0
    }
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.0)
    }
}

impl FromStr for WorkloadId {
    type Err = Error;

    /// Parses `wl-<n>`: n a positive decimal without sign or leading zeros, so each id has one spelling.
    fn from_str(s: &str) -> Result<WorkloadId> {
        let bad = || Error::invalid("id", format!("{s:?} is not a workload id (wl-<number>)"));
        let digits = s.strip_prefix(Self::PREFIX).ok_or_else(bad)?;
        if digits.is_empty()
            || digits.starts_with('0')
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        digits
            .parse::<i64>()
            .ok()
            .and_then(WorkloadId::from_raw)
            .ok_or_else(bad)
    }
}

impl Serialize for WorkloadId {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WorkloadId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<WorkloadId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a workload is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadState {
    /// Submitted, waiting for admission.
    Pending,
    /// Admitted by its queue, waiting for placement.
    Admitted,
    /// Placed: has an assignment, not yet started.
    Scheduled,
    /// Its processes run.
    Running,
    /// Finished with success.
    Succeeded,
    /// Finished with failure (may be retried: back to pending).
    Failed,
    /// Cancelled by a user.
    Cancelled,
    /// Evicted for higher-priority work (may be requeued).
    Preempted,
    /// Its processes were not found after a restart (may be retried).
    Lost,
}

impl WorkloadState {
    /// Every state, in lifecycle order.
    pub const ALL: [WorkloadState; 9] = [
        WorkloadState::Pending,
        WorkloadState::Admitted,
        WorkloadState::Scheduled,
        WorkloadState::Running,
        WorkloadState::Succeeded,
        WorkloadState::Failed,
        WorkloadState::Cancelled,
        WorkloadState::Preempted,
        WorkloadState::Lost,
    ];

    /// The stored and displayed name (`pending`, `running`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadState::Pending => "pending",
            WorkloadState::Admitted => "admitted",
            WorkloadState::Scheduled => "scheduled",
            WorkloadState::Running => "running",
            WorkloadState::Succeeded => "succeeded",
            WorkloadState::Failed => "failed",
            WorkloadState::Cancelled => "cancelled",
            WorkloadState::Preempted => "preempted",
            WorkloadState::Lost => "lost",
        }
    }

    /// True when no process runs or will run without a new transition to pending.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            WorkloadState::Succeeded
                | WorkloadState::Failed
                | WorkloadState::Cancelled
                | WorkloadState::Preempted
                | WorkloadState::Lost
        )
    }

    /// True when the workload holds devices (scheduled or running).
    pub fn holds_devices(self) -> bool {
        matches!(self, WorkloadState::Scheduled | WorkloadState::Running)
    }

    /// Whether the lifecycle allows `self -> to`.
    ///
    /// Forward: pending -> admitted -> scheduled -> running -> succeeded | failed | cancelled |
    /// preempted | lost (pending may also go straight to scheduled). Back to pending: from admitted and
    /// scheduled (unplaced, requeued) and from failed, preempted and lost (retry, requeue). Any
    /// unfinished state may become cancelled or failed; scheduled may also become preempted or lost;
    /// preempted and lost may be cancelled, lost may be failed. Succeeded and cancelled are final.
    pub fn can_become(self, to: WorkloadState) -> bool {
        use WorkloadState::*;
        match self {
            Pending => matches!(to, Admitted | Scheduled | Cancelled | Failed),
            Admitted => matches!(to, Pending | Scheduled | Cancelled | Failed),
            Scheduled => matches!(
                to,
                Pending | Running | Cancelled | Failed | Preempted | Lost
            ),
            Running => matches!(to, Succeeded | Failed | Cancelled | Preempted | Lost),
            Failed => matches!(to, Pending),
            Preempted => matches!(to, Pending | Cancelled),
            Lost => matches!(to, Pending | Failed | Cancelled),
            Succeeded | Cancelled => false,
        }
    }
}

impl fmt::Display for WorkloadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WorkloadState {
    type Err = Error;

    /// Parses a state name as [`WorkloadState::as_str`] writes it.
    fn from_str(s: &str) -> Result<WorkloadState> {
        WorkloadState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = WorkloadState::ALL.iter().map(|s| s.as_str()).collect();
                Error::invalid(
                    "state",
                    format!("{s:?} is not a state ({})", names.join(", ")),
                )
            })
    }
}

/// Where a workload's replicas were placed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Assignment {
    /// One entry per placed replica, in replica order.
    pub replicas: Vec<ReplicaAssignment>,
}

/// Where one replica was placed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplicaAssignment {
    /// Node name.
    pub node: String,
    /// GPUs it uses (empty for CPU-only work).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<AssignedGpu>,
}

/// One GPU (or a share or MIG slice of it) given to a replica.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AssignedGpu {
    /// GPU index on the node.
    pub index: u32,
    /// GPU UUID (`GPU-...`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Milli of the GPU for a share; absent = the whole GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milli: Option<u32>,
    /// The MIG instance, for MIG demands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig: Option<MigSlice>,
}

/// A MIG instance on a GPU.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MigSlice {
    /// Profile, e.g. `3g.40gb`.
    pub profile: String,
    /// First memory slice of the instance.
    pub start: u8,
    /// MIG device UUID (`MIG-...`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

/// What a caller submits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewWorkload {
    /// Name (usually the spec's).
    pub name: String,
    /// Who submitted it (the token's name, or a user name).
    pub owner: String,
    /// Queue it is charged to.
    pub queue: String,
    /// Priority value, resolved from the spec's priority class.
    pub priority: i64,
    /// The spec.
    pub spec: WorkloadSpec,
    /// A client-chosen key: a retried submission with the same owner and key returns the first workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl NewWorkload {
    /// A submission of `spec` by `owner`: name from the spec, queue from the spec or `default`.
    pub fn from_spec(spec: WorkloadSpec, owner: &str, priority: i64) -> NewWorkload {
        NewWorkload {
            name: spec.name.clone(),
            owner: owner.to_string(),
            queue: spec.queue.clone().unwrap_or_else(|| "default".to_string()),
            priority,
            spec,
            idempotency_key: None,
        }
    }

    /// The same submission with an idempotency key.
    pub fn with_key(mut self, key: impl Into<String>) -> NewWorkload {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// A stored workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// Id (`wl-<n>`).
    pub id: WorkloadId,
    /// Name.
    pub name: String,
    /// Who submitted it.
    pub owner: String,
    /// Queue it is charged to.
    pub queue: String,
    /// Priority value.
    pub priority: i64,
    /// Lifecycle state.
    pub state: WorkloadState,
    /// The spec, as submitted.
    pub spec: WorkloadSpec,
    /// Where it was placed (set when scheduled; kept after it finishes, cleared back at pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<Assignment>,
    /// Times it has started running.
    pub attempts: u32,
    /// Exit code of the last run, when it ended with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Reason given with the last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was submitted.
    pub submitted_at: UnixMillis,
    /// When its current or last run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<UnixMillis>,
    /// When it finished (entered a finished state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<UnixMillis>,
    /// When it last changed.
    pub updated_at: UnixMillis,
    /// The submission's idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// A state change to apply with compare-and-set: the target state and what comes with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The new state.
    pub to: WorkloadState,
    /// Why (kept on the workload and in the event).
    pub reason: Option<String>,
    /// The placement (for scheduled or running; absent = keep the current one).
    pub assignment: Option<Assignment>,
    /// The exit code (for finished states; absent = keep the current one).
    pub exit_code: Option<i32>,
}

impl Transition {
    /// A transition to `state` with nothing else.
    pub fn to(state: WorkloadState) -> Transition {
        Transition {
            to: state,
            reason: None,
            assignment: None,
            exit_code: None,
        }
    }

    /// With a reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Transition {
        self.reason = Some(reason.into());
        self
    }

    /// With an assignment.
    pub fn assignment(mut self, assignment: Assignment) -> Transition {
        self.assignment = Some(assignment);
        self
    }

    /// With an exit code.
    pub fn exit_code(mut self, code: i32) -> Transition {
        self.exit_code = Some(code);
        self
    }
}

/// One compare-and-set transition of a batch ([`Store::transition_many`](crate::Store::transition_many)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitionRequest {
    /// The workload.
    pub id: WorkloadId,
    /// The state the caller believes it is in.
    pub from: WorkloadState,
    /// The change.
    pub change: Transition,
}

/// One audit-log entry. Never updated or deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Position in the log (strictly increasing).
    pub seq: i64,
    /// The workload it concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadId>,
    /// What else it concerns (queue name, setting key, token id), if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Who did it.
    pub actor: String,
    /// What was done (see [`actions`]).
    pub action: String,
    /// State before, for workload transitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_state: Option<WorkloadState>,
    /// State after, for workload transitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_state: Option<WorkloadState>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When.
    pub at: UnixMillis,
}

/// Listing order, by id (which is submission order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// Newest first (the default).
    #[default]
    NewestFirst,
    /// Oldest first.
    OldestFirst,
}

/// Which workloads to list, and which page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this state.
    pub state: Option<WorkloadState>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this owner.
    pub owner: Option<String>,
    /// Page size, 1..=[`MAX_PAGE_LIMIT`].
    pub limit: u32,
    /// Cursor: continue after this id (a previous page's `next`).
    pub after: Option<WorkloadId>,
    /// Order.
    pub order: Order,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            state: None,
            queue: None,
            owner: None,
            limit: 100,
            after: None,
            order: Order::NewestFirst,
        }
    }
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    /// The workloads.
    pub items: Vec<Workload>,
    /// Cursor for the next page (`ListQuery::after`); absent when this page is the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<WorkloadId>,
}

/// How many workloads one queue has in one state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateQueueCount {
    /// The state.
    pub state: WorkloadState,
    /// The queue.
    pub queue: String,
    /// How many.
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_one_spelling() {
        let id: WorkloadId = "wl-42".parse().unwrap();
        assert_eq!(id.raw(), 42);
        assert_eq!(id.to_string(), "wl-42");
        for bad in [
            "",
            "wl-",
            "wl-0",
            "wl-042",
            "wl--1",
            "wl-+1",
            "42",
            "WL-1",
            "wl-1x",
            "wl-99999999999999999999",
        ] {
            assert!(bad.parse::<WorkloadId>().is_err(), "{bad}");
        }
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"wl-42\"");
        assert_eq!(serde_json::from_str::<WorkloadId>("\"wl-42\"").unwrap(), id);
        assert!(serde_json::from_str::<WorkloadId>("42").is_err());
    }

    #[test]
    fn states_round_trip_and_finals_are_final() {
        for s in WorkloadState::ALL {
            assert_eq!(s.as_str().parse::<WorkloadState>().unwrap(), s);
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
            assert!(!s.can_become(s), "{s} -> {s}");
        }
        assert!("Running".parse::<WorkloadState>().is_err());
        for to in WorkloadState::ALL {
            assert!(!WorkloadState::Succeeded.can_become(to));
            assert!(!WorkloadState::Cancelled.can_become(to));
        }
        assert!(WorkloadState::Running.can_become(WorkloadState::Succeeded));
        assert!(WorkloadState::Failed.can_become(WorkloadState::Pending));
        assert!(!WorkloadState::Pending.can_become(WorkloadState::Running));
    }
}
