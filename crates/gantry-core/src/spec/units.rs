//! Quantities written as text in spec files: CPU and GPU amounts in thousandths, memory sizes, durations.
//!
//! Each type keeps the text as written (so a file round-trips unchanged) and parses it on demand; the
//! validators report a malformed or negative value against the field's path instead of failing the
//! whole file at the first bad value.
//!
//! - [`MilliQuantity`]: `"4"`, `4`, `0.5`, `"2.25"` (whole units with up to three decimals) or `"500m"`
//!   (thousandths). Used for CPU cores and GPU quota; stored as milli (`"500m"` = 500, `"4"` = 4000).
//! - [`MemoryQuantity`]: Kubernetes-style sizes with a unit: `"512Mi"`, `"16Gi"`, `"1.5Ti"` (binary) or
//!   `"500M"`, `"2G"` (decimal, `k M G T P`). A bare number is refused (bytes or MiB would be a guess), except
//!   `0`. Stored as MiB, rounded up (`"1G"` = 954 MiB).
//! - [`Duration`]: whole numbers with a unit, concatenated: `"90s"`, `"30m"`, `"2h"`, `"1d"`, `"1h30m"`
//!   (`s`, `m`, `h`, `d`, `w`). `"0"` is zero. Stored as seconds.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Why a quantity's text could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Nothing was written.
    #[error("is empty")]
    Empty,
    /// A minus sign: these quantities are never negative.
    #[error("must not be negative (got {0:?})")]
    Negative(String),
    /// A plain number where a unit is needed.
    #[error("{0:?} has no unit; {1}")]
    MissingUnit(String, &'static str),
    /// More precision than the unit allows.
    #[error("{0:?} is finer than {1}")]
    TooPrecise(String, &'static str),
    /// The value does not fit in 64 bits.
    #[error("{0:?} is too large")]
    TooLarge(String),
    /// Not a quantity of this kind at all.
    #[error("{0:?} is not valid; {1}")]
    Malformed(String, &'static str),
}

/// How to write a CPU/GPU amount.
const MILLI_HINT: &str = "write whole units (\"4\", 0.5) or thousandths (\"500m\")";
/// How to write a memory size.
const MEMORY_HINT: &str = "write a size with a unit, such as \"512Mi\", \"16Gi\" or \"2G\"";
/// How to write a duration.
const DURATION_HINT: &str =
    "write a number with a unit, such as \"90s\", \"30m\", \"2h\", \"1d\" or \"1h30m\"";

/// Splits a decimal number "12.345" into (integer digits, fraction digits); None if it is not one.
fn split_decimal(s: &str) -> Option<(&str, &str)> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    if s.ends_with('.') || s.starts_with('.') && frac.is_empty() {
        return None;
    }
    Some((int, frac))
}

/// The integer value of ASCII digits (empty = 0), or None on overflow.
fn digits_value(s: &str) -> Option<u128> {
    s.bytes().try_fold(0u128, |acc, b| {
        acc.checked_mul(10)?.checked_add(u128::from(b - b'0'))
    })
}

/// `int.frac * scale`, exactly when possible; returns (value rounded down, whether a remainder was dropped).
fn scaled(int: &str, frac: &str, scale: u128) -> Option<(u128, bool)> {
    let int = digits_value(int)?;
    let frac_digits = u32::try_from(frac.len()).ok()?;
    let denom = 10u128.checked_pow(frac_digits)?;
    let frac = digits_value(frac)?;
    let whole = int.checked_mul(scale)?;
    let part = frac.checked_mul(scale)?;
    Some((whole.checked_add(part / denom)?, part % denom != 0))
}

/// Parses a CPU/GPU amount into thousandths: `"4"` = 4000, `"0.5"` = 500, `"250m"` = 250.
pub fn parse_milli(text: &str) -> Result<u64, UnitError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(UnitError::Empty);
    }
    if s.starts_with('-') {
        return Err(UnitError::Negative(s.to_string()));
    }
    let (number, scale) = match s.strip_suffix('m') {
        Some(n) => (n, 1u128),
        None => (s, 1000u128),
    };
    let Some((int, frac)) = split_decimal(number) else {
        return Err(UnitError::Malformed(s.to_string(), MILLI_HINT));
    };
    let Some((value, remainder)) = scaled(int, frac, scale) else {
        return Err(UnitError::TooLarge(s.to_string()));
    };
    if remainder {
        return Err(UnitError::TooPrecise(s.to_string(), "a thousandth (1m)"));
    }
    u64::try_from(value).map_err(|_| UnitError::TooLarge(s.to_string()))
}

/// Parses a memory size into MiB, rounding up: `"16Gi"` = 16384, `"512Ki"` = 1, `"1G"` = 954.
pub fn parse_mib(text: &str) -> Result<u64, UnitError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(UnitError::Empty);
    }
    if s.starts_with('-') {
        return Err(UnitError::Negative(s.to_string()));
    }
    const UNITS: [(&str, u128); 10] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
    ];
    let unit = UNITS.iter().find(|(u, _)| s.ends_with(u));
    let Some(&(suffix, bytes_per_unit)) = unit else {
        return match split_decimal(s) {
            Some((int, frac)) if digits_value(int) == Some(0) && digits_value(frac) == Some(0) => {
                Ok(0)
            }
            Some(_) => Err(UnitError::MissingUnit(s.to_string(), MEMORY_HINT)),
            None => Err(UnitError::Malformed(s.to_string(), MEMORY_HINT)),
        };
    };
    let number = &s[..s.len() - suffix.len()];
    let Some((int, frac)) = split_decimal(number) else {
        return Err(UnitError::Malformed(s.to_string(), MEMORY_HINT));
    };
    let Some((bytes, remainder)) = scaled(int, frac, bytes_per_unit) else {
        return Err(UnitError::TooLarge(s.to_string()));
    };
    let bytes = bytes + u128::from(remainder);
    let mib = bytes.div_ceil(1 << 20);
    u64::try_from(mib).map_err(|_| UnitError::TooLarge(s.to_string()))
}

/// Parses a duration into seconds: `"90s"` = 90, `"30m"` = 1800, `"1h30m"` = 5400, `"1d"` = 86400.
pub fn parse_duration_secs(text: &str) -> Result<u64, UnitError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(UnitError::Empty);
    }
    if s.starts_with('-') {
        return Err(UnitError::Negative(s.to_string()));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return if s.bytes().all(|b| b == b'0') {
            Ok(0)
        } else {
            Err(UnitError::MissingUnit(s.to_string(), DURATION_HINT))
        };
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut last_unit = u64::MAX;
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            '.' => {
                return Err(UnitError::TooPrecise(
                    s.to_string(),
                    "whole units (use 90m, not 1.5h)",
                ));
            }
            _ => return Err(UnitError::Malformed(s.to_string(), DURATION_HINT)),
        };
        // Units must be written largest first, each once: "1h30m", not "30m1h" or "1h1h".
        if number.is_empty() || unit >= last_unit {
            return Err(UnitError::Malformed(s.to_string(), DURATION_HINT));
        }
        last_unit = unit;
        let n: u64 = number
            .parse()
            .map_err(|_| UnitError::TooLarge(s.to_string()))?;
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(|| UnitError::TooLarge(s.to_string()))?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(UnitError::Malformed(s.to_string(), DURATION_HINT));
    }
    Ok(total)
}

/// Accepts a YAML/JSON string or number and keeps it as text.
struct TextOrNumber;

impl Visitor<'_> for TextOrNumber {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// Defines a quantity newtype kept as text, with its serde (and schema) impls.
macro_rules! text_quantity {
    ($(#[$doc:meta])* $name:ident, $schema_desc:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub struct $name(#[doc = "The text as written."] pub String);

        impl $name {
            /// The text as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(TextOrNumber).map($name)
            }
        }

        #[cfg(feature = "schema")]
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "description": $schema_desc,
                    "type": ["string", "number"]
                })
            }
        }
    };
}

text_quantity!(
    /// CPU cores or GPUs in thousandths, written `"4"`, `0.5` or `"500m"`; see [`parse_milli`].
    MilliQuantity,
    "Whole units with up to three decimals (\"4\", 0.5) or thousandths (\"500m\")."
);
text_quantity!(
    /// A memory size with a unit, such as `"16Gi"` or `"500M"`; see [`parse_mib`].
    MemoryQuantity,
    "A size with a unit: Ki, Mi, Gi, Ti, Pi (binary) or k, M, G, T, P (decimal), e.g. \"16Gi\"."
);
text_quantity!(
    /// A duration such as `"30m"`, `"2h"`, `"1d"` or `"1h30m"`; see [`parse_duration_secs`].
    Duration,
    "Whole numbers with units s, m, h, d, w, largest first: \"90s\", \"30m\", \"2h\", \"1d\", \"1h30m\"."
);

impl MilliQuantity {
    /// The amount in thousandths.
    pub fn milli(&self) -> Result<u64, UnitError> {
        parse_milli(&self.0)
    }

    /// A quantity of `milli` thousandths, written in whole units when exact (`4000` -> `"4"`).
    pub fn from_milli(milli: u64) -> Self {
        match milli % 1000 {
            0 => MilliQuantity((milli / 1000).to_string()),
            _ => MilliQuantity(format!("{milli}m")),
        }
    }
}

impl MemoryQuantity {
    /// The size in MiB, rounded up.
    pub fn mib(&self) -> Result<u64, UnitError> {
        parse_mib(&self.0)
    }

    /// A size of `mib` MiB, written in Gi when exact (`16384` -> `"16Gi"`).
    pub fn from_mib(mib: u64) -> Self {
        match (mib, mib % 1024) {
            (1.., 0) => MemoryQuantity(format!("{}Gi", mib / 1024)),
            _ => MemoryQuantity(format!("{mib}Mi")),
        }
    }
}

impl Duration {
    /// The duration in seconds.
    pub fn seconds(&self) -> Result<u64, UnitError> {
        parse_duration_secs(&self.0)
    }

    /// A duration of `secs` seconds, written in the largest exact units (`5400` -> `"1h30m"`).
    pub fn from_secs(secs: u64) -> Self {
        if secs == 0 {
            return Duration("0s".to_string());
        }
        let mut rest = secs;
        let mut out = String::new();
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if rest >= size {
                out.push_str(&format!("{}{unit}", rest / size));
                rest %= size;
            }
        }
        Duration(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milli_accepts_whole_decimal_and_milli_forms() {
        assert_eq!(parse_milli("4"), Ok(4000));
        assert_eq!(parse_milli("0.5"), Ok(500));
        assert_eq!(parse_milli("2.25"), Ok(2250));
        assert_eq!(parse_milli("500m"), Ok(500));
        assert_eq!(parse_milli(" 0 "), Ok(0));
        assert_eq!(parse_milli(".5"), Ok(500));
        assert_eq!(parse_milli("1.000"), Ok(1000));
    }

    #[test]
    fn milli_rejects_bad_text() {
        assert_eq!(parse_milli(""), Err(UnitError::Empty));
        assert!(matches!(parse_milli("-1"), Err(UnitError::Negative(_))));
        assert!(matches!(
            parse_milli("0.0005"),
            Err(UnitError::TooPrecise(..))
        ));
        assert!(matches!(
            parse_milli("1.5m"),
            Err(UnitError::TooPrecise(..))
        ));
        for bad in [
            "abc", "4 cores", "1e3", "4k", "m", ".", "5.", "1..2", "0x10",
        ] {
            assert!(
                matches!(parse_milli(bad), Err(UnitError::Malformed(..))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_milli("99999999999999999999"),
            Err(UnitError::TooLarge(_))
        ));
        assert!(matches!(
            parse_milli("999999999999999999999999999999999999999999"),
            Err(UnitError::TooLarge(_))
        ));
    }

    #[test]
    fn memory_accepts_binary_and_decimal_units() {
        assert_eq!(parse_mib("16Gi"), Ok(16 * 1024));
        assert_eq!(parse_mib("512Mi"), Ok(512));
        assert_eq!(parse_mib("1.5Gi"), Ok(1536));
        assert_eq!(parse_mib("1Ti"), Ok(1024 * 1024));
        assert_eq!(parse_mib("512Ki"), Ok(1), "rounded up");
        assert_eq!(parse_mib("1G"), Ok(954), "10^9 bytes, rounded up");
        assert_eq!(parse_mib("1M"), Ok(1));
        assert_eq!(parse_mib("2000k"), Ok(2));
        assert_eq!(parse_mib("0"), Ok(0));
        assert_eq!(parse_mib("0Gi"), Ok(0));
    }

    #[test]
    fn memory_rejects_bare_numbers_and_unknown_units() {
        assert!(matches!(parse_mib("1024"), Err(UnitError::MissingUnit(..))));
        assert!(matches!(parse_mib("-1Gi"), Err(UnitError::Negative(_))));
        for bad in ["16GB", "16 gb", "Gi", "1.Gi", "x1Gi", "16gi", "1e3Mi"] {
            assert!(
                matches!(parse_mib(bad), Err(UnitError::Malformed(..))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_mib("99999999999999999999999999Pi"),
            Err(UnitError::TooLarge(_))
        ));
    }

    #[test]
    fn durations_parse_units_and_compounds() {
        assert_eq!(parse_duration_secs("90s"), Ok(90));
        assert_eq!(parse_duration_secs("30m"), Ok(1800));
        assert_eq!(parse_duration_secs("2h"), Ok(7200));
        assert_eq!(parse_duration_secs("1d"), Ok(86_400));
        assert_eq!(parse_duration_secs("1w"), Ok(604_800));
        assert_eq!(parse_duration_secs("1h30m"), Ok(5400));
        assert_eq!(parse_duration_secs("1d2h3m4s"), Ok(93_784));
        assert_eq!(parse_duration_secs("0"), Ok(0));
        assert_eq!(parse_duration_secs("0s"), Ok(0));
    }

    #[test]
    fn durations_reject_bad_text() {
        assert_eq!(parse_duration_secs(" "), Err(UnitError::Empty));
        assert!(matches!(
            parse_duration_secs("30"),
            Err(UnitError::MissingUnit(..))
        ));
        assert!(matches!(
            parse_duration_secs("-5m"),
            Err(UnitError::Negative(_))
        ));
        assert!(matches!(
            parse_duration_secs("1.5h"),
            Err(UnitError::TooPrecise(..))
        ));
        for bad in ["h", "1x", "30m1h", "1h1h", "1h30", "one hour", "1 h"] {
            assert!(
                matches!(parse_duration_secs(bad), Err(UnitError::Malformed(..))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_duration_secs("99999999999999999999s"),
            Err(UnitError::TooLarge(_))
        ));
        assert!(matches!(
            parse_duration_secs("9999999999999999w"),
            Err(UnitError::TooLarge(_))
        ));
    }

    #[test]
    fn constructors_write_canonical_text_that_parses_back() {
        assert_eq!(MilliQuantity::from_milli(4000).as_str(), "4");
        assert_eq!(MilliQuantity::from_milli(250).as_str(), "250m");
        assert_eq!(MemoryQuantity::from_mib(16384).as_str(), "16Gi");
        assert_eq!(MemoryQuantity::from_mib(100).as_str(), "100Mi");
        assert_eq!(Duration::from_secs(5400).as_str(), "1h30m");
        assert_eq!(Duration::from_secs(0).as_str(), "0s");
        for m in [0, 1, 999, 1000, 123_456] {
            assert_eq!(MilliQuantity::from_milli(m).milli(), Ok(m));
        }
        for m in [0, 1, 1024, 3000, 1 << 20] {
            assert_eq!(MemoryQuantity::from_mib(m).mib(), Ok(m));
        }
        for s in [0, 1, 59, 3600, 93_784, 1_000_000] {
            assert_eq!(Duration::from_secs(s).seconds(), Ok(s));
        }
    }
}
