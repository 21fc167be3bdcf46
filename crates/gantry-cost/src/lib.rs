//! Gantry's cost model, pure (no clock, no I/O beyond reading a prices file given by path).
//!
//! - [`prices`]: the price catalogue, per GPU model key (as `gantry_gpu::model_key` spells it) and
//!   pool, with shipped defaults (`prices.yaml`) that an operator's file overrides entry by entry.
//! - [`account`]: cost accounting over a window from usage intervals, exact in integer arithmetic
//!   and rounded to cents so that the displayed groups add up to the displayed total.

pub mod account;
pub mod prices;

pub use account::{
    AccountError, Analysis, GpuFraction, Group, GroupBy, Money, UnpricedUsage, Usage, Window,
    analyse,
};
pub use prices::{Catalogue, CatalogueError, Pool, Price, UnknownModel};
