//! `gantry budget`, `gantry webhook` and `gantry alerts`: monthly budgets per queue, the webhooks
//! alerts are posted to, and the alerts raised (`/api/budgets`, `/api/webhooks`, `/api/alerts`).

use crate::client::{Client, Connection, query};
use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::time::Duration;

/// `gantry budget ...`.
#[derive(Subcommand, Debug)]
pub enum BudgetCommand {
    /// Set a queue's monthly budget: `gantry budget set ml --monthly 500 [--thresholds 50,80,100] [--hard-cap]`.
    Set(BudgetSetArgs),
    /// List budgets with this month's spend.
    List(ListArgs),
    /// Delete a queue's budget.
    Delete(NameArgs),
}

/// `gantry webhook ...`.
#[derive(Subcommand, Debug)]
pub enum WebhookCommand {
    /// Add a webhook: `gantry webhook add chat https://hooks.slack.com/... --format slack`.
    Add(WebhookAddArgs),
    /// List webhooks (URLs in full for admins only).
    List(ListArgs),
    /// Remove a webhook and its pending deliveries.
    Remove(NameArgs),
}

/// Options of `gantry budget set`.
#[derive(Args, Debug)]
pub struct BudgetSetArgs {
    /// The queue.
    queue: String,
    /// Spending limit per calendar month (UTC) in the price catalogue's currency.
    #[arg(long)]
    monthly: f64,
    /// Alert thresholds, percent of the budget, comma separated and increasing.
    #[arg(long, value_delimiter = ',', default_values_t = [50u32, 80, 100])]
    thresholds: Vec<u32>,
    /// Stop admitting new work from the queue once it is over budget (running work continues).
    #[arg(long)]
    hard_cap: bool,
    #[command(flatten)]
    conn: Connection,
}

/// Options of the `list` subcommands.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print the server's JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) conn: Connection,
}

/// A queue or webhook name.
#[derive(Args, Debug)]
pub struct NameArgs {
    /// The name.
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) conn: Connection,
}

/// Options of `gantry webhook add`.
#[derive(Args, Debug)]
pub struct WebhookAddArgs {
    /// Unique name.
    name: String,
    /// `http://` or `https://` URL.
    url: String,
    /// Message format.
    #[arg(long, value_parser = ["slack", "teams", "json"], default_value = "json")]
    format: String,
    #[command(flatten)]
    conn: Connection,
}

/// Options of `gantry alerts`.
#[derive(Args, Debug)]
pub struct AlertsArgs {
    /// How many, newest first.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print the server's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Connection,
}

/// Percent-encodes a path segment.
pub(crate) fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// DELETE `path`; an error names the server's reason.
pub(crate) fn delete(conn: &Connection, path: &str) -> anyhow::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut req = agent.delete(format!("{}{path}", conn.server.trim_end_matches('/')));
    if let Some(t) = &conn.token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let mut resp = req.call().map_err(|e| {
        anyhow!(
            "cannot reach the gantry server at {}: {e} (start it with `gantry serve`, or set --server / GANTRY_SERVER)",
            conn.server
        )
    })?;
    let status = resp.status().as_u16();
    if status < 400 {
        return Ok(());
    }
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let e = &v["error"];
    let msg = e["message"].as_str().unwrap_or(text.trim());
    bail!("{status} {}: {msg}", e["code"].as_str().unwrap_or("error"))
}

pub(crate) fn pretty(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Runs `gantry budget ...`.
pub fn budget(cmd: BudgetCommand) -> anyhow::Result<()> {
    match cmd {
        BudgetCommand::Set(a) => {
            let body = json!({
                "monthly": a.monthly,
                "thresholds": a.thresholds,
                "hardCap": a.hard_cap,
            });
            let v = Client::from(&a.conn).send(
                "PUT",
                &format!("/api/budgets/{}", segment(&a.queue)),
                "application/json",
                &body.to_string(),
                None,
            )?;
            print!("{}", budget_table(&[v]));
            Ok(())
        }
        BudgetCommand::List(a) => {
            let v = Client::from(&a.conn).get("/api/budgets")?;
            if a.json {
                return pretty(&v);
            }
            print!(
                "{}",
                budget_table(v.as_array().map(Vec::as_slice).unwrap_or_default())
            );
            Ok(())
        }
        BudgetCommand::Delete(a) => {
            delete(&a.conn, &format!("/api/budgets/{}", segment(&a.name)))?;
            println!("budget of queue {} deleted", a.name);
            Ok(())
        }
    }
}

/// Budgets as a table.
fn budget_table(rows: &[Value]) -> String {
    if rows.is_empty() {
        return "no budgets (set one with `gantry budget set QUEUE --monthly AMOUNT`)\n".into();
    }
    let mut out = format!(
        "{:<20} {:>12} {:>12} {:>7} {:<14} {:<8} {}\n",
        "QUEUE", "MONTHLY", "SPENT", "USED", "THRESHOLDS", "HARD CAP", "STATE"
    );
    for b in rows {
        let thresholds: Vec<String> = b["thresholds"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t.to_string())
            .collect();
        let used = b["usedRatio"]
            .as_f64()
            .map_or("-".to_string(), |r| format!("{:.0}%", r * 100.0));
        let state = if b["capped"].as_bool() == Some(true) {
            "capped: new work waits"
        } else if b["over"].as_bool() == Some(true) {
            "over budget"
        } else {
            "ok"
        };
        out.push_str(&format!(
            "{:<20} {:>12} {:>12} {:>7} {:<14} {:<8} {state}\n",
            b["queue"].as_str().unwrap_or("?"),
            format!(
                "{} {}",
                b["monthly"].as_f64().unwrap_or(0.0),
                b["currency"].as_str().unwrap_or("")
            ),
            b["spent"].as_str().unwrap_or("-"),
            used,
            thresholds.join(","),
            if b["hardCap"].as_bool() == Some(true) {
                "on"
            } else {
                "off"
            },
        ));
    }
    out
}

/// Runs `gantry webhook ...`.
pub fn webhook(cmd: WebhookCommand) -> anyhow::Result<()> {
    match cmd {
        WebhookCommand::Add(a) => {
            let body = json!({"name": a.name, "url": a.url, "format": a.format});
            let v = Client::from(&a.conn).send(
                "POST",
                "/api/webhooks",
                "application/json",
                &body.to_string(),
                None,
            )?;
            println!(
                "webhook {} added ({})",
                v["name"].as_str().unwrap_or("?"),
                v["format"].as_str().unwrap_or("?")
            );
            Ok(())
        }
        WebhookCommand::List(a) => {
            let v = Client::from(&a.conn).get("/api/webhooks")?;
            if a.json {
                return pretty(&v);
            }
            let rows = v.as_array().map(Vec::as_slice).unwrap_or_default();
            if rows.is_empty() {
                println!(
                    "no webhooks (add one with `gantry webhook add NAME URL --format slack|teams|json`)"
                );
                return Ok(());
            }
            println!("{:<20} {:<7} URL", "NAME", "FORMAT");
            for w in rows {
                println!(
                    "{:<20} {:<7} {}",
                    w["name"].as_str().unwrap_or("?"),
                    w["format"].as_str().unwrap_or("?"),
                    w["url"].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
        WebhookCommand::Remove(a) => {
            delete(&a.conn, &format!("/api/webhooks/{}", segment(&a.name)))?;
            println!("webhook {} removed", a.name);
            Ok(())
        }
    }
}

/// Runs `gantry alerts`.
pub fn alerts(a: AlertsArgs) -> anyhow::Result<()> {
    let q = query(&[("limit", Some(a.limit.to_string()))]);
    let v = Client::from(&a.conn).get(&format!("/api/alerts{q}"))?;
    if a.json {
        return pretty(&v);
    }
    let rows = v.as_array().map(Vec::as_slice).unwrap_or_default();
    if rows.is_empty() {
        println!("no alerts");
        return Ok(());
    }
    for alert in rows {
        let deliveries: Vec<String> = alert["deliveries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                let mut s = format!(
                    "{}: {} after {} tr{}",
                    d["webhook"].as_str().unwrap_or("(removed)"),
                    d["state"].as_str().unwrap_or("?"),
                    d["attempts"].as_u64().unwrap_or(0),
                    if d["attempts"].as_u64() == Some(1) {
                        "y"
                    } else {
                        "ies"
                    }
                );
                if d["state"] != "delivered"
                    && let Some(e) = d["lastError"].as_str()
                {
                    s.push_str(&format!(" ({e})"));
                }
                s
            })
            .collect();
        println!(
            "[{}] {}\n    {}\n    {}",
            alert["kind"].as_str().unwrap_or("?"),
            alert["subject"].as_str().unwrap_or("?"),
            alert["message"].as_str().unwrap_or(""),
            if deliveries.is_empty() {
                "no webhooks".to_string()
            } else {
                deliveries.join("; ")
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("ml-team_1.a"), "ml-team_1.a");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn budget_rows_show_state() {
        let rows = [json!({
            "queue": "ml", "monthly": 500.0, "currency": "USD", "spent": "512.00",
            "usedRatio": 1.024, "thresholds": [50, 80, 100], "hardCap": true,
            "over": true, "capped": true
        })];
        let t = budget_table(&rows);
        assert!(t.contains("500 USD"), "{t}");
        assert!(t.contains("102%"), "{t}");
        assert!(t.contains("50,80,100"), "{t}");
        assert!(t.contains("capped: new work waits"), "{t}");
        assert!(budget_table(&[]).starts_with("no budgets"));
    }
}
