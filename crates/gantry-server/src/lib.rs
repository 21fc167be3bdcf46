//! `gantry serve`: the standalone GPU scheduler for one machine.
//!
//! The HTTP API (axum), bearer-token auth with roles, Prometheus metrics, and the live loop that
//! admits, places and runs workloads through the engine, the store and the executor.

pub mod admission;
pub mod alerts;
pub mod api;
pub mod auth;
pub mod backfill;
pub mod budgets;
pub mod costs;
pub mod dashboard;
pub mod db;
pub mod error;
pub mod explain;
pub mod findings;
pub mod jobmap;
pub mod metrics;
pub mod preempt;
pub mod queues;
pub mod runner;
pub mod schedule;
pub mod serve;
pub mod strict;
