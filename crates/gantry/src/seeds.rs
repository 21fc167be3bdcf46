//! Parsing of seed lists and policy lists given on the command line.

use anyhow::{Context, bail};
use gantry_core::Policy;

/// Parses `42-51`, `42,43,50` or `42` into a list of seeds.
pub fn parse_seeds(text: &str) -> anyhow::Result<Vec<u64>> {
    let mut seeds = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: u64 = a
                .trim()
                .parse()
                .with_context(|| format!("--seeds: {a:?} is not a seed"))?;
            let b: u64 = b
                .trim()
                .parse()
                .with_context(|| format!("--seeds: {b:?} is not a seed"))?;
            if b < a {
                bail!("--seeds: range {part:?} runs backwards");
            }
            if b - a > 10_000 {
                bail!("--seeds: range {part:?} is longer than 10,000 seeds");
            }
            seeds.extend(a..=b);
        } else {
            seeds.push(
                part.parse()
                    .with_context(|| format!("--seeds: {part:?} is not a seed"))?,
            );
        }
    }
    if seeds.is_empty() {
        bail!("--seeds: no seed given");
    }
    Ok(seeds)
}

/// Parses `fgd,bestfit` (or `all`, or `published`) into policies.
pub fn parse_policies(text: &str) -> anyhow::Result<Vec<Policy>> {
    let mut out = Vec::new();
    for name in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match name {
            "all" => out.extend(gantry_core::policies::POLICIES.iter().map(|p| p.policy)),
            "published" => out.extend(
                gantry_core::policies::POLICIES
                    .iter()
                    .filter(|p| p.published)
                    .map(|p| p.policy),
            ),
            _ => out.push(Policy::from_name(name).context("--policy")?),
        }
    }
    if out.is_empty() {
        bail!("--policy: no policy given");
    }
    let mut seen = Vec::new();
    out.retain(|p| {
        let new = !seen.contains(p);
        seen.push(*p);
        new
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_ranges_and_lists() {
        assert_eq!(parse_seeds("42-45").unwrap(), vec![42, 43, 44, 45]);
        assert_eq!(parse_seeds("1,3-4").unwrap(), vec![1, 3, 4]);
        assert!(
            parse_seeds("5-1")
                .unwrap_err()
                .to_string()
                .contains("backwards")
        );
        assert!(parse_seeds("x").is_err());
        assert!(parse_seeds("").is_err());
    }

    #[test]
    fn policies_by_name_and_group() {
        assert_eq!(
            parse_policies("fgd,bestfit").unwrap(),
            vec![Policy::Fgd, Policy::BestFitPublished]
        );
        assert_eq!(parse_policies("published").unwrap().len(), 6);
        assert_eq!(parse_policies("fgd,fgd").unwrap(), vec![Policy::Fgd]);
        assert!(parse_policies("nope").is_err());
    }
}
