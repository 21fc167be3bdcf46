//! `gantry costs`: what GPU time cost over a window, per queue, owner, workload or GPU model, and
//! how much of it was idle (`GET /api/costs/analysis`). A table for people, `--json` for scripts.

use crate::client::{Client, Connection, query};
use clap::Args;
use serde_json::Value;

/// Options of `gantry costs`.
#[derive(Args, Debug)]
pub struct CostsArgs {
    /// Group by `queue`, `owner`, `workload` or `model`.
    #[arg(long = "by", default_value = "queue", value_parser = ["queue", "owner", "workload", "model"])]
    by: String,
    /// How far back from now: `1h`, `24h`, `7d`, `30d`, ...
    #[arg(long, default_value = "7d")]
    window: String,
    /// GPU utilisation (%) under which allocated time counts as idle.
    #[arg(long, default_value_t = 30.0)]
    idle_threshold: f64,
    /// Print the server's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Connection,
}

/// Runs `gantry costs`.
pub fn run(a: CostsArgs) -> anyhow::Result<()> {
    let q = query(&[
        ("window", Some(a.window.clone())),
        ("group_by", Some(a.by.clone())),
        ("idle_threshold", Some(a.idle_threshold.to_string())),
    ]);
    let v = Client::from(&a.conn).get(&format!("/api/costs/analysis{q}"))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print!("{}", table(&v));
    Ok(())
}

/// The analysis as a table: one row per group, then the total.
fn table(v: &Value) -> String {
    let currency = v["currency"].as_str().unwrap_or("");
    let text = |x: &Value| x.as_str().unwrap_or("-").to_string();
    let mut out = format!(
        "Cost over the last {} (idle = GPU utilisation under {}%), in {currency}\n\n",
        v["window"].as_str().unwrap_or("?"),
        v["idle_threshold"].as_f64().unwrap_or(0.0)
    );
    out.push_str(&format!(
        "{:<24} {:>12} {:>12} {:>10}\n",
        v["group_by"].as_str().unwrap_or("group").to_uppercase(),
        "COST",
        "IDLE",
        "GPU-HOURS"
    ));
    for g in v["groups"].as_array().into_iter().flatten() {
        let unpriced = g["unpriced_gpu_hours"].as_f64().unwrap_or(0.0);
        let note = if unpriced > 0.0 {
            format!("  ({unpriced:.2} GPU-h unpriced)")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{:<24} {:>12} {:>12} {:>10.2}{note}\n",
            text(&g["key"]),
            text(&g["cost"]),
            text(&g["idle_cost"]),
            g["gpu_hours"].as_f64().unwrap_or(0.0)
        ));
    }
    out.push_str(&format!(
        "{:<24} {:>12} {:>12} {:>10.2}\n",
        "TOTAL",
        text(&v["total"]),
        text(&v["idle_total"]),
        v["gpu_hours"].as_f64().unwrap_or(0.0)
    ));
    let unknown: Vec<&str> = v["unknown_models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !unknown.is_empty() {
        out.push_str(&format!(
            "\nNo price for: {} (not in the total; add them with `gantry serve --prices FILE`)\n",
            unknown.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_groups_total_and_unknown_models() {
        let v = serde_json::json!({
            "window": "7d", "group_by": "queue", "currency": "USD", "idle_threshold": 30.0,
            "total": "3.00", "idle_total": "1.00", "gpu_hours": 2.5,
            "groups": [
                {"key": "research", "cost": "3.00", "idle_cost": "1.00", "gpu_hours": 1.5, "unpriced_gpu_hours": 0.0},
                {"key": "lab", "cost": null, "idle_cost": null, "gpu_hours": 1.0, "unpriced_gpu_hours": 1.0}
            ],
            "unknown_models": ["B999-1TB"], "unpriced": []
        });
        let t = table(&v);
        assert!(
            t.starts_with("Cost over the last 7d (idle = GPU utilisation under 30%), in USD\n"),
            "{t}"
        );
        assert!(t.contains("QUEUE"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("research") && l.contains("3.00") && l.contains("1.50")),
            "{t}"
        );
        assert!(
            t.lines()
                .any(|l| l.starts_with("lab") && l.contains("unpriced")),
            "{t}"
        );
        assert!(
            t.lines()
                .any(|l| l.starts_with("TOTAL") && l.contains("3.00")),
            "{t}"
        );
        assert!(t.contains("No price for: B999-1TB"), "{t}");
    }
}
