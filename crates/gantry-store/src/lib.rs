//! Gantry's durable store for the standalone server: one SQLite file in WAL mode.
//!
//! - **Workloads** ([`Workload`]): the spec as JSON text of [`WorkloadSpec`](gantry_core::spec::WorkloadSpec),
//!   the lifecycle state, the assignment, attempts, exit code and timestamps. Ids are the SQLite rowid
//!   (`AUTOINCREMENT`: strictly increasing, never reused) with the prefix `wl-`, see [`WorkloadId`].
//! - **Events** ([`Event`]): the append-only audit log (who, what, when, why). Triggers refuse every
//!   `UPDATE` and `DELETE` on the table.
//! - **Queues** ([`Queue`]), **settings** (the active strategy) and **tokens** ([`TokenInfo`], stored as
//!   SHA-256 hashes of their secrets).
//! - **GPU samples** ([`GpuSample`]): telemetry history, one row per GPU (and holder) per poll, kept
//!   [`SAMPLE_RETENTION_MS`] (written in batches, not audited: they are measurements, not decisions).
//!
//! Every mutation takes the time `now` (milliseconds since the Unix epoch, [`UnixMillis`]) and the
//! `actor` as inputs and writes its audit event in the same transaction. A mutation returns only after
//! its transaction is durable (`synchronous=FULL`, see [`Store::open`]). Schema changes are numbered
//! migrations recorded in `PRAGMA user_version` ([`SCHEMA_VERSION`]).
//!
//! A [`Store`] is one connection: `Send` but not `Sync`. A server puts it behind a mutex or on its own
//! thread; several stores (threads or processes) may open the same file, writers take turns.

#![warn(missing_docs)]

mod budgets;
mod error;
mod model;
mod queues;
mod samples;
mod schema;
mod store;
mod tokens;

pub use budgets::{
    ALERTS_ACTOR, Alert, AlertWithDeliveries, Budget, DEFAULT_THRESHOLDS, Delivery, DueDelivery,
    NewAlert, Webhook, WebhookFormat, budget_actions,
};
pub use error::{Error, Result};
pub use model::{
    AssignedGpu, Assignment, Event, ListQuery, MAX_PAGE_LIMIT, MigSlice, NewWorkload, Order, Page,
    ReplicaAssignment, StateQueueCount, Transition, TransitionRequest, UnixMillis, Workload,
    WorkloadId, WorkloadState, actions,
};
pub use queues::{Queue, STRATEGY_KEY};
pub use samples::{GpuSample, SAMPLE_RETENTION_MS, SampleBucket, SampleQuery};
pub use schema::SCHEMA_VERSION;
pub use store::{BUSY_TIMEOUT, Store, default_path, default_path_from};
pub use tokens::{NewToken, Role, TOKEN_PREFIX, TokenInfo, random_secret};

/// A store moves between threads (it is one connection: `Send`, not `Sync`).
#[cfg(test)]
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Store>();
};
