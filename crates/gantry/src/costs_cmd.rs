//! `gantry costs`: what GPU time cost over a window, per queue, owner, workload or GPU model, and
//! how much of it was idle (`GET /api/costs/analysis`); `gantry costs findings`: what to change
//! (`GET /api/costs/findings`). A table for people, `--json` for scripts.

use crate::client::{Client, Connection, query};
use clap::{Args, Subcommand};
use serde_json::Value;

/// Options of `gantry costs`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CostsArgs {
    #[command(subcommand)]
    command: Option<CostsCommand>,
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

/// Subcommands of `gantry costs`.
#[derive(Subcommand, Debug)]
enum CostsCommand {
    /// Underused GPUs, right-sizing advice (checked by replaying the window in the simulator) and
    /// spot-tolerant work on on-demand capacity, each with its saving per month.
    Findings(FindingsArgs),
}

/// Options of `gantry costs findings`.
#[derive(Args, Debug)]
struct FindingsArgs {
    /// How far back from now: `24h`, `7d`, `30d`, ...
    #[arg(long, default_value = "7d")]
    window: String,
    /// GPU utilisation (%) under which a GPU counts as underused.
    #[arg(long, default_value_t = 30.0)]
    idle_threshold: f64,
    /// Print the server's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Connection,
}

/// Runs `gantry costs` (or `gantry costs findings`).
pub fn run(a: CostsArgs) -> anyhow::Result<()> {
    if let Some(CostsCommand::Findings(f)) = a.command {
        return run_findings(f);
    }
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
    print!("{}", table(&v, SERVE_PRICES));
    Ok(())
}

fn run_findings(a: FindingsArgs) -> anyhow::Result<()> {
    let q = query(&[
        ("window", Some(a.window.clone())),
        ("idle_threshold", Some(a.idle_threshold.to_string())),
    ]);
    let v = Client::from(&a.conn).get(&format!("/api/costs/findings{q}"))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print!("{}", findings_text(&v));
    Ok(())
}

/// The findings for people: three sections, each saying when it found nothing.
fn findings_text(v: &Value) -> String {
    let currency = v["currency"].as_str().unwrap_or("");
    let text = |x: &Value| x.as_str().unwrap_or("-").to_string();
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let threshold = v["idleThreshold"].as_f64().unwrap_or(0.0);
    let mut out = format!(
        "Findings over the last {} (amounts in {currency}; per month = the window scaled to 30 days)\n",
        v["window"].as_str().unwrap_or("?")
    );
    out.push_str(&format!("\nGPUs under {threshold}% utilisation:\n"));
    let gpus = list("underusedGpus");
    if gpus.is_empty() {
        out.push_str("  none\n");
    } else {
        out.push_str(&format!(
            "  {:<28} {:<12} {:>6} {:>9} {:>10} {:>12}\n",
            "GPU", "MODEL", "UTIL%", "GPU-HOURS", "IDLE COST", "WASTE/MONTH"
        ));
        for g in &gpus {
            out.push_str(&format!(
                "  {:<28} {:<12} {:>6.1} {:>9.2} {:>10} {:>12}\n",
                text(&g["gpu"]),
                text(&g["model"]),
                g["meanUtilization"].as_f64().unwrap_or(0.0),
                g["allocatedHours"].as_f64().unwrap_or(0.0),
                text(&g["idleCost"]),
                text(&g["monthlyWaste"])
            ));
        }
    }
    out.push_str("\nRight-sizing (checked by replaying the window in the simulator):\n");
    let advice = list("rightSizing");
    if advice.is_empty() {
        out.push_str("  none\n");
    }
    for a in &advice {
        let ids: Vec<String> = a["workloads"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        out.push_str(&format!(
            "  {} -> {}: {}\n    workloads: {}\n",
            text(&a["from"]),
            text(&a["to"]),
            text(&a["message"]),
            ids.join(", ")
        ));
    }
    out.push_str("\nSpot-tolerant work on on-demand capacity:\n");
    let spot = list("spotCandidates");
    if spot.is_empty() {
        out.push_str("  none\n");
    } else {
        out.push_str(&format!(
            "  {:<12} {:<16} {:>10} {:>10} {:>14}\n",
            "WORKLOAD", "QUEUE", "ON-DEMAND", "AT SPOT", "SAVING/MONTH"
        ));
        for s in &spot {
            out.push_str(&format!(
                "  {:<12} {:<16} {:>10} {:>10} {:>14}\n",
                text(&s["workload"]),
                text(&s["queue"]),
                text(&s["onDemandCost"]),
                text(&s["spotCost"]),
                text(&s["savingPerMonth"])
            ));
        }
    }
    out
}

/// Where the standalone server's prices are set.
const SERVE_PRICES: &str = "with `gantry serve --prices FILE`";

/// The analysis as a table: one row per group, then the total; `add_prices` says where prices go.
pub(crate) fn table(v: &Value, add_prices: &str) -> String {
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
            "\nNo price for: {} (not in the total; add them {add_prices})\n",
            unknown.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_text_has_every_section() {
        let v = serde_json::json!({
            "window": "7d", "currency": "USD", "idleThreshold": 30.0,
            "underusedGpus": [{"gpu": "GPU-1", "model": "H100-80GB", "meanUtilization": 12.5,
                               "allocatedHours": 10.0, "idleCost": "70.00", "monthlyWaste": "300.00"}],
            "rightSizing": [{"workloads": ["wl-1", "wl-2"], "from": "H100-80GB: 1 whole GPU", "to": "3g.40gb",
                             "savingPerMonth": "96.00", "replay": {"gpusBefore": 2, "gpusAfter": 1, "gpusFreed": 1},
                             "message": "moving these 2 jobs to 3g.40gb frees 1 H100-80GB GPU at peak"}],
            "spotCandidates": []
        });
        let t = findings_text(&v);
        assert!(t.contains("GPUs under 30% utilisation"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.contains("GPU-1") && l.contains("300.00")),
            "{t}"
        );
        assert!(t.contains("frees 1 H100-80GB GPU"), "{t}");
        assert!(t.contains("workloads: wl-1, wl-2"), "{t}");
        assert!(
            t.ends_with("Spot-tolerant work on on-demand capacity:\n  none\n"),
            "{t}"
        );
    }

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
        let t = table(&v, SERVE_PRICES);
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
