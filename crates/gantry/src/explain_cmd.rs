//! `gantry explain ID`: why a workload waits and when it will start, or where it runs and why
//! there (`GET /api/workloads/{id}/explain`). The server's summary for people, `--json` for scripts.

use crate::client::{Client, Connection};
use clap::Args;
use serde_json::Value;

/// Options of `gantry explain`.
#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Workload id (`wl-<n>`).
    id: String,
    /// Print the server's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Connection,
}

/// Runs `gantry explain ID`.
pub fn run(a: ExplainArgs) -> anyhow::Result<()> {
    let v = Client::from(&a.conn).get(&format!("/api/workloads/{}/explain", a.id))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", summary(&v));
    }
    Ok(())
}

/// The text printed for people: the server's summary.
fn summary(v: &Value) -> String {
    match v["summary"].as_str() {
        Some(s) => s.trim_end().to_string(),
        None => format!(
            "{} is {} (the server sent no summary)",
            v["id"].as_str().unwrap_or("?"),
            v["state"].as_str().unwrap_or("?")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prints_the_servers_summary() {
        let v = json!({"id": "wl-1", "state": "pending", "summary": "wl-1 (w) is pending\nPosition: 1st\n"});
        assert_eq!(summary(&v), "wl-1 (w) is pending\nPosition: 1st");
        assert_eq!(
            summary(&json!({"id": "wl-2", "state": "running"})),
            "wl-2 is running (the server sent no summary)"
        );
    }
}
