//! Kubernetes resource quantities (`500m`, `2`, `16Gi`, `1e3`, `128974848`) as numbers.

/// The quantity's value in base units (cores, bytes), or `None` when it is not a quantity.
pub fn parse(text: &str) -> Option<f64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    let v = n * factor;
    (v.is_finite() && v >= 0.0).then_some(v)
}

/// Milli-units (CPU milli-cores, or a count times 1000), rounded up.
pub fn cpu_milli(text: &str) -> Option<u64> {
    parse(text).map(|v| (v * 1000.0 - 1e-6).ceil().max(0.0) as u64)
}

/// MiB, rounded up (a request).
pub fn memory_mib(text: &str) -> Option<u64> {
    parse(text).map(|v| (v / (1024.0 * 1024.0) - 1e-9).ceil().max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(cpu_milli("500m"), Some(500));
        assert_eq!(cpu_milli("2"), Some(2000));
        assert_eq!(cpu_milli("1.5"), Some(1500));
        assert_eq!(memory_mib("16Gi"), Some(16384));
        assert_eq!(memory_mib("1G"), Some(954));
        assert_eq!(memory_mib("1048576"), Some(1));
        assert_eq!(cpu_milli("1e3"), Some(1_000_000));
        assert_eq!(cpu_milli("abc"), None);
        assert_eq!(cpu_milli("-1"), None);
    }
}
