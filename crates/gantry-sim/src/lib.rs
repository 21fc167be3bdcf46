//! Trace replay for Gantry's engine: openb readers, the published protocol, metrics and reports.

pub mod bound;
pub mod grid;
pub mod metrics;
pub mod openb;
pub mod plan;
pub mod protocol;
pub mod published;
pub mod report;
pub mod run;
pub mod scenario;
pub mod scenario_bench;
pub mod svg;
pub mod synthetic;
