//! Scheduled faults for simulated GPUs: the `--simulate-faults` grammar.
//!
//! Grammar (whitespace around entries is ignored; fault names and units are case-insensitive):
//!
//! ```text
//! spec   := entry ( "," entry )*
//! entry  := INDEX ":" FAULT [ "@" TIME ]
//! INDEX  := the GPU's index (0-based, in --simulate-gpus order)
//! FAULT  := "xid=" CODE          an XID error (e.g. 79: fallen off the bus; 48: double-bit ECC)
//!         | "ecc=" COUNT         COUNT uncorrectable ECC errors (volatile and aggregate), COUNT >= 1
//!         | "temp=" CELSIUS      the GPU reads this temperature (thermal slowdown at or above its
//!                                slowdown threshold)
//!         | "lost"               the GPU falls off the bus
//! TIME   := a number of seconds after the server started, with an optional unit:
//!           "ms", "s" (default) or "m"; default 0s
//! ```
//!
//! Example: `1:xid=79@5s,2:temp=95@0s,3:ecc=2@10s`. A fault applies from its time on, for as long as
//! the server runs; the simulated telemetry stays a pure function of (seed, time, allocations,
//! faults), so the GPU health rules ([`crate::health`]) judge it exactly as they judge real NVML data.
//! Times count from each start of the server: after a restart a GPU reads healthy again until its
//! fault's time (which closes its open health incidents); `@0s` is a GPU that stays broken.
//! Errors name the entry and the problem, e.g.
//! `invalid --simulate-faults entry "1:xid=abc@5s": XID code "abc" is not a whole number`.

use crate::error::GpuError;

/// What a scheduled fault does to a simulated GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Records an XID error with this code.
    Xid(u64),
    /// Adds this many uncorrectable ECC errors.
    EccUncorrectable(u64),
    /// Sets the GPU's temperature (C).
    Temperature(i32),
    /// The GPU falls off the bus.
    Lost,
}

/// One fault of a `--simulate-faults` spec: what happens to which GPU, and when.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScheduledFault {
    /// The GPU's index.
    pub index: u32,
    /// What happens.
    pub kind: FaultKind,
    /// Seconds after start from which the fault applies.
    pub at_s: f64,
}

fn bad(token: &str, problem: impl Into<String>) -> GpuError {
    GpuError::FaultSpec {
        token: token.to_string(),
        problem: problem.into(),
    }
}

/// Parses a `--simulate-faults` spec (grammar in the module documentation) for `gpu_count` GPUs.
pub fn parse_faults(spec: &str, gpu_count: usize) -> Result<Vec<ScheduledFault>, GpuError> {
    if spec.trim().is_empty() {
        return Err(bad(
            spec,
            "empty spec; expected e.g. 1:xid=79@5s,2:temp=95@0s",
        ));
    }
    spec.split(',')
        .map(|e| parse_entry(e.trim(), gpu_count))
        .collect()
}

fn parse_entry(entry: &str, gpu_count: usize) -> Result<ScheduledFault, GpuError> {
    if entry.is_empty() {
        return Err(bad(
            entry,
            "empty entry (two commas in a row, or a comma at an end)",
        ));
    }
    let Some((index, rest)) = entry.split_once(':') else {
        return Err(bad(entry, "expected INDEX:FAULT[@TIME], e.g. 1:xid=79@5s"));
    };
    let index: u32 = index.trim().parse().map_err(|_| {
        bad(
            entry,
            format!("GPU index {:?} is not a whole number", index.trim()),
        )
    })?;
    if index as usize >= gpu_count {
        return Err(bad(
            entry,
            format!("no GPU {index} ({gpu_count} simulated, indices from 0)"),
        ));
    }
    let (fault, at) = match rest.split_once('@') {
        Some((f, t)) => (f.trim(), Some(t.trim())),
        None => (rest.trim(), None),
    };
    let kind = parse_kind(entry, fault)?;
    let at_s = match at {
        Some(t) => parse_time(entry, t)?,
        None => 0.0,
    };
    Ok(ScheduledFault { index, kind, at_s })
}

fn parse_kind(entry: &str, fault: &str) -> Result<FaultKind, GpuError> {
    const KNOWN: &str = "known: xid=CODE, ecc=COUNT, temp=CELSIUS, lost";
    if fault.eq_ignore_ascii_case("lost") {
        return Ok(FaultKind::Lost);
    }
    let Some((name, value)) = fault.split_once('=') else {
        return Err(bad(entry, format!("unknown fault {fault:?} ({KNOWN})")));
    };
    let value = value.trim();
    match name.trim().to_ascii_lowercase().as_str() {
        "xid" => value
            .parse()
            .map(FaultKind::Xid)
            .map_err(|_| bad(entry, format!("XID code {value:?} is not a whole number"))),
        "ecc" => match value.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(FaultKind::EccUncorrectable(n)),
            Ok(_) => Err(bad(entry, "ECC error count must be at least 1")),
            Err(_) => Err(bad(
                entry,
                format!("ECC error count {value:?} is not a whole number"),
            )),
        },
        "temp" => match value.parse::<i32>() {
            Ok(c) if (-50..=200).contains(&c) => Ok(FaultKind::Temperature(c)),
            _ => Err(bad(
                entry,
                format!("temperature {value:?} must be whole degrees C between -50 and 200"),
            )),
        },
        other => Err(bad(entry, format!("unknown fault {other:?} ({KNOWN})"))),
    }
}

fn parse_time(entry: &str, t: &str) -> Result<f64, GpuError> {
    let lower = t.to_ascii_lowercase();
    let (number, scale) = if let Some(n) = lower.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = lower.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = lower.strip_suffix('m') {
        (n, 60.0)
    } else {
        (lower.as_str(), 1.0)
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v * scale),
        _ => Err(bad(
            entry,
            format!("time {t:?} must be a number of seconds of at least 0, e.g. 5s, 500ms, 2m"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(spec: &str) -> String {
        match parse_faults(spec, 4) {
            Ok(v) => panic!("{spec:?} parsed as {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn valid_specs() {
        assert_eq!(
            parse_faults("1:xid=79@5s, 2:temp=95@0s,3:ecc=2@10s,0:lost", 4).unwrap(),
            vec![
                ScheduledFault {
                    index: 1,
                    kind: FaultKind::Xid(79),
                    at_s: 5.0
                },
                ScheduledFault {
                    index: 2,
                    kind: FaultKind::Temperature(95),
                    at_s: 0.0
                },
                ScheduledFault {
                    index: 3,
                    kind: FaultKind::EccUncorrectable(2),
                    at_s: 10.0
                },
                ScheduledFault {
                    index: 0,
                    kind: FaultKind::Lost,
                    at_s: 0.0
                },
            ]
        );
        let times: Vec<f64> = parse_faults("0:XID=48@1.5,0:LOST@500ms,0:Temp=-5@2M,0:ecc=1@3S", 1)
            .unwrap()
            .iter()
            .map(|f| f.at_s)
            .collect();
        assert_eq!(times, vec![1.5, 0.5, 120.0, 3.0]);
    }

    #[test]
    fn every_invalid_spec_names_entry_and_problem() {
        assert_eq!(
            err(" "),
            r#"invalid --simulate-faults entry " ": empty spec; expected e.g. 1:xid=79@5s,2:temp=95@0s"#
        );
        assert_eq!(
            err("1:lost,,2:lost"),
            r#"invalid --simulate-faults entry "": empty entry (two commas in a row, or a comma at an end)"#
        );
        assert_eq!(
            err("xid=79"),
            r#"invalid --simulate-faults entry "xid=79": expected INDEX:FAULT[@TIME], e.g. 1:xid=79@5s"#
        );
        assert_eq!(
            err("a:lost"),
            r#"invalid --simulate-faults entry "a:lost": GPU index "a" is not a whole number"#
        );
        assert_eq!(
            err("1:xid=abc@5s"),
            r#"invalid --simulate-faults entry "1:xid=abc@5s": XID code "abc" is not a whole number"#
        );
        assert_eq!(
            err("1:ecc=0"),
            r#"invalid --simulate-faults entry "1:ecc=0": ECC error count must be at least 1"#
        );
        assert_eq!(
            err("1:ecc=x"),
            r#"invalid --simulate-faults entry "1:ecc=x": ECC error count "x" is not a whole number"#
        );
        assert_eq!(
            err("1:temp=999"),
            r#"invalid --simulate-faults entry "1:temp=999": temperature "999" must be whole degrees C between -50 and 200"#
        );
        assert_eq!(
            err("1:melt=3"),
            r#"invalid --simulate-faults entry "1:melt=3": unknown fault "melt" (known: xid=CODE, ecc=COUNT, temp=CELSIUS, lost)"#
        );
        assert_eq!(
            err("1:boom"),
            r#"invalid --simulate-faults entry "1:boom": unknown fault "boom" (known: xid=CODE, ecc=COUNT, temp=CELSIUS, lost)"#
        );
        assert_eq!(
            err("1:lost@-1s"),
            r#"invalid --simulate-faults entry "1:lost@-1s": time "-1s" must be a number of seconds of at least 0, e.g. 5s, 500ms, 2m"#
        );
        assert_eq!(
            err("4:lost"),
            r#"invalid --simulate-faults entry "4:lost": no GPU 4 (4 simulated, indices from 0)"#
        );
        assert_eq!(
            err("1:lost@soon"),
            r#"invalid --simulate-faults entry "1:lost@soon": time "soon" must be a number of seconds of at least 0, e.g. 5s, 500ms, 2m"#
        );
    }
}
