//! `gantry queue`: queues with guaranteed quotas, cohorts with borrowing limits and fair-share
//! weights (`/api/queues`).

use crate::budget_cmd::{ListArgs, NameArgs, delete, pretty, segment};
use crate::client::{Client, Connection};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

/// `gantry queue ...`.
#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// Create or replace a queue: `gantry queue set research --gpus 4 [--cohort lab --borrow-gpus 2] [--weight 2]`.
    Set(QueueSetArgs),
    /// List queues with their quotas, what they use, and their fair-share standing.
    List(ListArgs),
    /// Delete a queue (refused while it has unfinished work).
    Delete(NameArgs),
}

/// Options of `gantry queue set`.
#[derive(Args, Debug)]
pub struct QueueSetArgs {
    /// The queue (lower-case letters, digits, '-' and '.').
    name: String,
    /// Guaranteed GPUs (fractions allowed: 2.5).
    #[arg(long)]
    gpus: Option<String>,
    /// Guaranteed CPU cores (`16`, `500m`).
    #[arg(long)]
    cpu: Option<String>,
    /// Guaranteed memory (`64Gi`).
    #[arg(long)]
    memory: Option<String>,
    /// The cohort it lends unused quota to and borrows from.
    #[arg(long)]
    cohort: Option<String>,
    /// Most GPUs it may borrow beyond its guarantee (needs --cohort; absent = unlimited).
    #[arg(long)]
    borrow_gpus: Option<String>,
    /// Most CPU it may borrow (needs --cohort).
    #[arg(long)]
    borrow_cpu: Option<String>,
    /// Most memory it may borrow (needs --cohort).
    #[arg(long)]
    borrow_memory: Option<String>,
    /// Fair-share weight, more than 0 (default 1): a queue of weight 2 counts its use as half.
    #[arg(long)]
    weight: Option<f64>,
    #[command(flatten)]
    conn: Connection,
}

/// A quota object from the given amounts (None when none is given).
fn quota(gpus: &Option<String>, cpu: &Option<String>, memory: &Option<String>) -> Option<Value> {
    let mut m = Map::new();
    for (k, v) in [("gpus", gpus), ("cpu", cpu), ("memory", memory)] {
        if let Some(v) = v {
            m.insert(k.into(), Value::String(v.clone()));
        }
    }
    (!m.is_empty()).then_some(Value::Object(m))
}

/// The request body of `gantry queue set`.
fn body(a: &QueueSetArgs) -> Value {
    let mut b = json!({});
    if let Some(g) = quota(&a.gpus, &a.cpu, &a.memory) {
        b["guaranteed"] = g;
    }
    if let Some(l) = quota(&a.borrow_gpus, &a.borrow_cpu, &a.borrow_memory) {
        b["borrowingLimit"] = l;
    }
    if let Some(c) = &a.cohort {
        b["cohort"] = json!(c);
    }
    if let Some(w) = a.weight {
        b["weight"] = json!(w);
    }
    b
}

/// Runs `gantry queue ...`.
pub fn queue(cmd: QueueCommand) -> anyhow::Result<()> {
    match cmd {
        QueueCommand::Set(a) => {
            let v = Client::from(&a.conn).send(
                "PUT",
                &format!("/api/queues/{}", segment(&a.name)),
                "application/json",
                &body(&a).to_string(),
                None,
            )?;
            print!("{}", table(&[v]));
            Ok(())
        }
        QueueCommand::List(a) => {
            let v = Client::from(&a.conn).get("/api/queues")?;
            if a.json {
                return pretty(&v);
            }
            print!(
                "{}",
                table(v.as_array().map(Vec::as_slice).unwrap_or_default())
            );
            Ok(())
        }
        QueueCommand::Delete(a) => {
            delete(&a.conn, &format!("/api/queues/{}", segment(&a.name)))?;
            println!("deleted queue {}", a.name);
            Ok(())
        }
    }
}

/// `gpus=4 cpu=16` from a quota object; `-` when empty.
fn amounts(q: &Value) -> String {
    let parts: Vec<String> = ["gpus", "cpu", "memory"]
        .iter()
        .filter_map(|k| {
            let v = q.get(*k)?;
            Some(match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

fn table(rows: &[Value]) -> String {
    if rows.is_empty() {
        return "no queues (every queue is unlimited; declare one with `gantry queue set NAME --gpus N`)\n"
            .into();
    }
    let mut out = format!(
        "{:<16} {:<18} {:<10} {:>6} {:<18} {:>8} {:>6} {:>7} {:>7}\n",
        "QUEUE",
        "GUARANTEED",
        "COHORT",
        "WEIGHT",
        "BORROW LIMIT",
        "GPUS",
        "SHARE",
        "RUNNING",
        "PENDING"
    );
    for q in rows {
        let name = q["name"].as_str().unwrap_or("?");
        let declared = q["declared"].as_bool().unwrap_or(false);
        let guaranteed = if declared {
            amounts(&q["guaranteed"])
        } else {
            "(unlimited)".into()
        };
        let limit = match &q["borrowingLimit"] {
            Value::Null if q["cohort"].is_string() => "unlimited".to_string(),
            Value::Null => "-".to_string(),
            l => amounts(l),
        };
        out.push_str(&format!(
            "{:<16} {:<18} {:<10} {:>6} {:<18} {:>8} {:>6.2} {:>7} {:>7}\n",
            name,
            guaranteed,
            q["cohort"].as_str().unwrap_or("-"),
            q["weight"].as_f64().unwrap_or(1.0),
            limit,
            q["used"]["gpus"].as_f64().unwrap_or(0.0),
            q["share"].as_f64().unwrap_or(0.0),
            q["running"].as_u64().unwrap_or(0),
            q["pending"].as_u64().unwrap_or(0),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_only_what_was_given() {
        let a = QueueSetArgs {
            name: "research".into(),
            gpus: Some("4".into()),
            cpu: None,
            memory: Some("64Gi".into()),
            cohort: Some("lab".into()),
            borrow_gpus: Some("2".into()),
            borrow_cpu: None,
            borrow_memory: None,
            weight: None,
            conn: Connection {
                server: String::new(),
                token: None,
            },
        };
        assert_eq!(
            body(&a),
            json!({"guaranteed": {"gpus": "4", "memory": "64Gi"}, "cohort": "lab",
                   "borrowingLimit": {"gpus": "2"}})
        );
    }

    #[test]
    fn rows_show_quotas_usage_and_standing() {
        let rows = [
            json!({"name": "research", "declared": true, "guaranteed": {"gpus": "4"}, "cohort": "lab",
                   "weight": 2.0, "borrowingLimit": null, "used": {"gpus": 1.5}, "share": 0.09375,
                   "running": 2, "pending": 3}),
            json!({"name": "adhoc", "declared": false, "guaranteed": {}, "weight": 1.0,
                   "used": {"gpus": 0.0}, "share": 0.0, "running": 0, "pending": 1}),
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[1].starts_with("research         gpus=4             lab"),
            "{t}"
        );
        assert!(
            lines[1].contains("unlimited") && lines[1].contains("1.5"),
            "{t}"
        );
        assert!(lines[2].contains("(unlimited)"), "{t}");
        assert!(table(&[]).starts_with("no queues"));
    }
}
