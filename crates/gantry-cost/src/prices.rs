//! The price catalogue: a price per GPU-hour per GPU model and pool, each with its source and date.
//!
//! A (model, pool) may be listed several times with different dates: its price history. An entry's
//! `date` is the day (00:00 UTC) it takes effect; at any instant the latest entry not after it
//! applies, and the earliest entry also covers any time before its date (so a file with one entry
//! per model prices all of time, as before price histories existed).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The catalogue shipped with Gantry: public list prices as of each entry's date.
pub const DEFAULT_PRICES_YAML: &str = include_str!("../prices.yaml");

/// Micro-units (millionths of the currency unit) per unit.
pub const MICROS: u64 = 1_000_000;

/// How the capacity is bought.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pool {
    OnDemand,
    Spot,
    Reserved,
}

impl Pool {
    pub fn as_str(self) -> &'static str {
        match self {
            Pool::OnDemand => "on-demand",
            Pool::Spot => "spot",
            Pool::Reserved => "reserved",
        }
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One price: micro-units of `currency` per GPU-hour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Price {
    pub micros_per_gpu_hour: u64,
    pub currency: String,
    pub source: String,
    pub date: String,
    /// `date` at 00:00 UTC, Unix milliseconds: when this price takes effect.
    pub effective_from_ms: i64,
}

/// No price for this model (or for this model in this pool): reported, never priced at zero.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no price for GPU model `{model}` in pool `{pool}`")]
pub struct UnknownModel {
    pub model: String,
    pub pool: Pool,
}

/// A prices file that cannot be used; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("cannot read prices file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("malformed prices file: {0}")]
    Malformed(String),
    #[error("invalid prices file: field `{field}`: {message}")]
    Invalid { field: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    prices: Vec<EntrySpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntrySpec {
    model: String,
    pool: Pool,
    per_gpu_hour: f64,
    source: String,
    date: String,
    #[serde(default)]
    currency: Option<String>,
}

/// Prices per (model key, pool), all in one currency; each (model, pool) has its price history,
/// oldest first (at least one entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalogue {
    currency: String,
    prices: BTreeMap<(String, Pool), Vec<Price>>,
}

impl Default for Catalogue {
    /// The shipped defaults (`prices.yaml`).
    fn default() -> Self {
        Catalogue::from_yaml(DEFAULT_PRICES_YAML).expect("the embedded prices.yaml is valid")
    }
}

impl Catalogue {
    /// Parses a complete catalogue from YAML (no defaults underneath).
    pub fn from_yaml(text: &str) -> Result<Catalogue, CatalogueError> {
        let spec: FileSpec = serde_saphyr::from_str(text).map_err(|e| {
            use serde_saphyr::MessageFormatter as _;
            let message = serde_saphyr::DefaultMessageFormatter.format_message(e.without_snippet());
            let place = e
                .location()
                .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
                .unwrap_or_default();
            CatalogueError::Malformed(format!("{message}{place}"))
        })?;
        let currency = spec.currency.unwrap_or_else(|| "USD".to_string());
        if !is_currency_code(&currency) {
            return Err(invalid(
                "currency",
                "must be a three-letter ISO 4217 code such as USD",
            ));
        }
        let mut prices: BTreeMap<(String, Pool), Vec<Price>> = BTreeMap::new();
        for (i, entry) in spec.prices.into_iter().enumerate() {
            let field = |name: &str| format!("prices[{i}].{name}");
            if entry.model.trim().is_empty() {
                return Err(invalid(&field("model"), "must not be empty"));
            }
            if !entry.per_gpu_hour.is_finite() || entry.per_gpu_hour < 0.0 {
                return Err(invalid(
                    &field("per_gpu_hour"),
                    "must be a non-negative number",
                ));
            }
            if entry.per_gpu_hour > 1.0e6 {
                return Err(invalid(
                    &field("per_gpu_hour"),
                    "is implausibly large (over 1,000,000 per GPU-hour)",
                ));
            }
            if entry.source.trim().is_empty() {
                return Err(invalid(
                    &field("source"),
                    "must name where the price came from",
                ));
            }
            let Some(effective_from_ms) = date_ms(&entry.date) else {
                return Err(invalid(&field("date"), "must be a date written YYYY-MM-DD"));
            };
            if let Some(c) = &entry.currency
                && *c != currency
            {
                return Err(invalid(
                    &field("currency"),
                    &format!("is {c} but the catalogue's currency is {currency}"),
                ));
            }
            let key = (entry.model.clone(), entry.pool);
            let history = prices.entry(key).or_default();
            if history.iter().any(|p| p.date == entry.date) {
                return Err(invalid(
                    &field("date"),
                    &format!(
                        "`{}` in pool `{}` is listed twice for {}",
                        entry.model, entry.pool, entry.date
                    ),
                ));
            }
            let micros = (entry.per_gpu_hour * MICROS as f64).round() as u64;
            history.push(Price {
                micros_per_gpu_hour: micros,
                currency: currency.clone(),
                source: entry.source,
                date: entry.date,
                effective_from_ms,
            });
            history.sort_by_key(|p| p.effective_from_ms);
        }
        Ok(Catalogue { currency, prices })
    }

    /// The defaults with an operator's file merged over them, per (model, pool): a (model, pool) the
    /// file lists gets the file's price history in place of the defaults'; the others keep theirs. A
    /// file in another currency than the defaults replaces them entirely (prices in two currencies
    /// cannot be summed).
    pub fn with_overrides(text: &str) -> Result<Catalogue, CatalogueError> {
        let over = Catalogue::from_yaml(text)?;
        let mut base = Catalogue::default();
        if over.currency != base.currency {
            return Ok(over);
        }
        base.prices.extend(over.prices);
        Ok(base)
    }

    /// Reads an operator's prices file and merges it over the defaults ([`Catalogue::with_overrides`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Catalogue, CatalogueError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| CatalogueError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Catalogue::with_overrides(&text)
    }

    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// The current (latest) price of one GPU-hour of `model` bought in `pool`.
    pub fn price(&self, model: &str, pool: Pool) -> Result<&Price, UnknownModel> {
        self.history(model, pool)?
            .last()
            .ok_or_else(|| unknown(model, pool))
    }

    /// The price in force at `at_ms`: the latest entry not after it (the earliest entry before its
    /// own date).
    pub fn price_at(&self, model: &str, pool: Pool, at_ms: i64) -> Result<&Price, UnknownModel> {
        let history = self.history(model, pool)?;
        let after = history.partition_point(|p| p.effective_from_ms <= at_ms);
        history
            .get(after.saturating_sub(1))
            .ok_or_else(|| unknown(model, pool))
    }

    /// `[start, end)` cut at the price changes of (`model`, `pool`): each piece with its price, in
    /// time order, covering the interval exactly.
    pub fn pieces(
        &self,
        model: &str,
        pool: Pool,
        start: i64,
        end: i64,
    ) -> Result<Vec<(i64, i64, &Price)>, UnknownModel> {
        let history = self.history(model, pool)?;
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            let price = self.price_at(model, pool, at)?;
            let next = history
                .iter()
                .map(|p| p.effective_from_ms)
                .find(|&t| t > at)
                .map_or(end, |t| t.min(end));
            out.push((at, next, price));
            at = next;
        }
        Ok(out)
    }

    /// The price history of (`model`, `pool`), oldest first.
    pub fn history(&self, model: &str, pool: Pool) -> Result<&[Price], UnknownModel> {
        self.prices
            .get(&(model.to_string(), pool))
            .map(Vec::as_slice)
            .ok_or_else(|| unknown(model, pool))
    }

    /// The current entry of every (model, pool), in (model, pool) order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, Pool, &Price)> {
        self.prices
            .iter()
            .filter_map(|((m, p), history)| history.last().map(|price| (m.as_str(), *p, price)))
    }
}

fn unknown(model: &str, pool: Pool) -> UnknownModel {
    UnknownModel {
        model: model.to_string(),
        pool,
    }
}

/// `YYYY-MM-DD` at 00:00 UTC in Unix milliseconds; `None` if not such a date.
fn date_ms(text: &str) -> Option<i64> {
    if !is_date(text) {
        return None;
    }
    let y: i64 = text[0..4].parse().ok()?;
    let m: i64 = text[5..7].parse().ok()?;
    let d: i64 = text[8..10].parse().ok()?;
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if d > days_in_month[(m - 1) as usize] {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn invalid(field: &str, message: &str) -> CatalogueError {
    CatalogueError::Invalid {
        field: field.to_string(),
        message: message.to_string(),
    }
}

fn is_currency_code(text: &str) -> bool {
    text.len() == 3 && text.bytes().all(|b| b.is_ascii_uppercase())
}

fn is_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && matches!(text[5..7].parse::<u8>(), Ok(1..=12))
        && matches!(text[8..10].parse::<u8>(), Ok(1..=31))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cover_the_common_data_centre_gpus_in_every_pool() {
        let c = Catalogue::default();
        assert_eq!(c.currency(), "USD");
        for model in [
            "H100-80GB",
            "H200-141GB",
            "A100-40GB",
            "A100-80GB",
            "L40S-48GB",
            "L4-24GB",
            "A10-24GB",
            "T4-16GB",
            "V100-16GB",
            "V100-32GB",
        ] {
            for pool in [Pool::OnDemand, Pool::Spot, Pool::Reserved] {
                let p = c.price(model, pool).unwrap();
                assert!(p.micros_per_gpu_hour > 0, "{model} {pool}");
                assert!(!p.source.is_empty() && is_date(&p.date), "{model} {pool}");
            }
        }
    }

    #[test]
    fn unknown_models_are_reported_not_priced_at_zero() {
        let err = Catalogue::default()
            .price("B200-192GB", Pool::OnDemand)
            .unwrap_err();
        assert_eq!(err.model, "B200-192GB");
        assert!(err.to_string().contains("B200-192GB"));
    }

    #[test]
    fn an_override_changes_one_model_only() {
        let text = "prices:\n  - model: T4-16GB\n    pool: on-demand\n    per_gpu_hour: 0.35\n    source: our contract\n    date: 2026-01-01\n";
        let merged = Catalogue::with_overrides(text).unwrap();
        let defaults = Catalogue::default();
        assert_eq!(
            merged
                .price("T4-16GB", Pool::OnDemand)
                .unwrap()
                .micros_per_gpu_hour,
            350_000
        );
        assert_eq!(
            merged.price("T4-16GB", Pool::OnDemand).unwrap().source,
            "our contract"
        );
        let changed: Vec<_> = merged
            .entries()
            .zip(defaults.entries())
            .filter(|(a, b)| a != b)
            .map(|(a, _)| (a.0.to_string(), a.1))
            .collect();
        assert_eq!(changed, vec![("T4-16GB".to_string(), Pool::OnDemand)]);
        assert_eq!(merged.entries().count(), defaults.entries().count());
    }

    #[test]
    fn load_reads_a_file_and_reports_a_missing_one() {
        let dir = std::env::temp_dir().join(format!("gantry-cost-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("prices.yaml");
        std::fs::write(&path, "prices:\n  - {model: X1-8GB, pool: spot, per_gpu_hour: 1, source: s, date: 2026-02-03}\n").unwrap();
        let c = Catalogue::load(&path).unwrap();
        assert_eq!(
            c.price("X1-8GB", Pool::Spot).unwrap().micros_per_gpu_hour,
            MICROS
        );
        assert!(c.price("H100-80GB", Pool::OnDemand).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            Catalogue::load(&path),
            Err(CatalogueError::Read { .. })
        ));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "prices:\n  - {model: A, pool: spot, per_gpu_hour: -1, source: s, date: 2026-01-01}\n",
                "prices[0].per_gpu_hour",
            ),
            (
                "prices:\n  - {model: A, pool: spot, per_gpu_hour: 1, source: s, date: yesterday}\n",
                "prices[0].date",
            ),
            (
                "prices:\n  - {model: A, pool: spot, per_gpu_hour: 1, source: s, date: 2026-02-30}\n",
                "prices[0].date",
            ),
            (
                "prices:\n  - {model: A, pool: spot, per_gpu_hour: 1, source: '', date: 2026-01-01}\n",
                "prices[0].source",
            ),
            ("currency: dollars\n", "currency"),
            (
                "prices:\n  - {model: A, pool: spot, per_gpu_hour: 1, source: s, date: 2026-01-01}\n  - {model: A, pool: spot, per_gpu_hour: 2, source: s, date: 2026-01-01}\n",
                "prices[1].date",
            ),
            (
                "prices:\n  - {model: A, pool: spot, per_gpu_hour: 1, source: s, date: 2026-01-01, currency: EUR}\n",
                "prices[0].currency",
            ),
        ];
        for (text, field) in cases {
            let err = Catalogue::from_yaml(text).unwrap_err().to_string();
            assert!(err.contains(&format!("`{field}`")), "{err}");
        }
        for (text, word) in [
            (
                "prices:\n  - {model: A, pool: spot, per_gpu_hour: 1, source: s}\n",
                "date",
            ),
            (
                "prices:\n  - {model: A, pool: spot, prise: 1, source: s, date: 2026-01-01}\n",
                "prise",
            ),
            (
                "prices:\n  - {model: A, pool: cheap, per_gpu_hour: 1, source: s, date: 2026-01-01}\n",
                "cheap",
            ),
        ] {
            let err = Catalogue::from_yaml(text).unwrap_err().to_string();
            assert!(err.contains(word), "{err}");
        }
    }

    #[test]
    fn a_file_in_another_currency_replaces_the_defaults() {
        let text = "currency: EUR\nprices:\n  - {model: T4-16GB, pool: on-demand, per_gpu_hour: 0.5, source: s, date: 2026-01-01}\n";
        let c = Catalogue::with_overrides(text).unwrap();
        assert_eq!(c.currency(), "EUR");
        assert!(c.price("H100-80GB", Pool::OnDemand).is_err());
    }

    #[test]
    fn dates_are_utc_midnights() {
        assert_eq!(date_ms("1970-01-01"), Some(0));
        assert_eq!(date_ms("2026-03-01"), Some(1_772_323_200_000));
        assert_eq!(date_ms("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(date_ms("2023-02-29"), None);
    }

    #[test]
    fn a_price_history_applies_the_latest_entry_not_after_the_instant() {
        let text = "prices:\n  - {model: A, pool: on-demand, per_gpu_hour: 3, source: s, date: 2026-03-01}\n  - {model: A, pool: on-demand, per_gpu_hour: 2, source: s, date: 2026-01-01}\n";
        let c = Catalogue::from_yaml(text).unwrap();
        let march = date_ms("2026-03-01").unwrap();
        let at = |t: i64| {
            c.price_at("A", Pool::OnDemand, t)
                .unwrap()
                .micros_per_gpu_hour
        };
        assert_eq!(
            at(0),
            2 * MICROS,
            "the earliest entry covers the time before it"
        );
        assert_eq!(at(march - 1), 2 * MICROS);
        assert_eq!(at(march), 3 * MICROS);
        assert_eq!(
            c.price("A", Pool::OnDemand).unwrap().micros_per_gpu_hour,
            3 * MICROS
        );
        let pieces: Vec<(i64, i64, u64)> = c
            .pieces("A", Pool::OnDemand, march - 10, march + 5)
            .unwrap()
            .into_iter()
            .map(|(a, b, p)| (a, b, p.micros_per_gpu_hour))
            .collect();
        assert_eq!(
            pieces,
            vec![
                (march - 10, march, 2 * MICROS),
                (march, march + 5, 3 * MICROS)
            ]
        );
        // An override's history replaces the defaults' for that (model, pool) only.
        let over = Catalogue::with_overrides(
            "prices:\n  - {model: T4-16GB, pool: on-demand, per_gpu_hour: 0.1, source: s, date: 2026-01-01}\n  - {model: T4-16GB, pool: on-demand, per_gpu_hour: 0.2, source: s, date: 2026-06-01}\n",
        )
        .unwrap();
        assert_eq!(over.history("T4-16GB", Pool::OnDemand).unwrap().len(), 2);
        assert_eq!(
            over.price_at("T4-16GB", Pool::OnDemand, 0)
                .unwrap()
                .micros_per_gpu_hour,
            100_000
        );
    }
}
