//! Gantry's cost model, pure (no clock, no I/O beyond reading a prices file given by path).
//!
//! - [`prices`]: the price catalogue, per GPU model key (as `gantry_gpu::model_key` spells it) and
//!   pool, with shipped defaults (`prices.yaml`) that an operator's file overrides entry by entry.
//! - [`account`]: cost accounting over a window from usage intervals, exact in integer arithmetic
//!   and rounded to cents so that the displayed groups add up to the displayed total.
//! - [`findings`]: underused GPUs, right-sizing advice and spot candidates over a window.
//! - [`replay`]: right-sizing advice checked by replaying the window in the scenario simulator.

pub mod account;
pub mod findings;
pub mod prices;
pub mod replay;

pub use account::{
    AccountError, Analysis, GpuFraction, Group, GroupBy, Money, UnpricedUsage, Usage, Window,
    analyse,
};
pub use findings::{
    RightSizing, SpotCandidate, UnderusedGpu, WorkloadFacts, right_sizing, spot_candidates,
    underused_gpus,
};
pub use prices::{Catalogue, CatalogueError, Pool, Price, UnknownModel};
pub use replay::{ReplayGpus, ReplayOutcome, Request};
