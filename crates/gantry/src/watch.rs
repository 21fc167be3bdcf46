//! `gantry watch`: a live terminal view of the server: GPUs with utilisation bars, the queue, running
//! work. Refreshes every second; `q` or Esc quits. Fits 80x24.

use crate::client::{Client, Connection};
use clap::Args;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Options of `gantry watch`.
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    #[command(flatten)]
    conn: Connection,
}

/// What one refresh shows.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// `GET /api/gpu/resources`.
    pub gpus: Value,
    /// Pending workloads, oldest first.
    pub pending: Value,
    /// Running workloads.
    pub running: Value,
    /// The active strategy.
    pub strategy: String,
    /// The last error talking to the server, if any.
    pub error: Option<String>,
}

fn fetch(client: &Client) -> Snapshot {
    let get = |p: &str| client.get(p);
    match (
        get("/api/gpu/resources"),
        get("/api/workloads?state=pending&order=oldest&limit=50"),
        get("/api/workloads?state=running&limit=50"),
        get("/api/scheduler/strategy"),
    ) {
        (Ok(gpus), Ok(pending), Ok(running), Ok(strategy)) => Snapshot {
            gpus,
            pending,
            running,
            strategy: strategy["strategy"].as_str().unwrap_or("").to_string(),
            error: None,
        },
        (a, b, c, d) => Snapshot {
            error: [a.err(), b.err(), c.err(), d.err()]
                .into_iter()
                .flatten()
                .next()
                .map(|e| e.to_string()),
            ..Snapshot::default()
        },
    }
}

fn bar(pct: f64, width: usize) -> String {
    let filled = ((pct / 100.0) * width as f64)
        .round()
        .clamp(0.0, width as f64) as usize;
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

fn items(v: &Value) -> &[Value] {
    v["items"].as_array().map_or(&[], Vec::as_slice)
}

/// Draws one snapshot (also used by the test with ratatui's test backend).
pub fn draw(frame: &mut Frame, s: &Snapshot) {
    let area = frame.area();
    let gpus = s.gpus["gpus"].as_array().map_or(&[][..], Vec::as_slice);
    let [top, mid, bottom] = Layout::vertical([
        Constraint::Length(gpus.len().clamp(1, 8) as u16 + 2),
        Constraint::Fill(1),
        Constraint::Fill(1),
    ])
    .areas(area);
    let title = format!(
        " GPUs ({}) · strategy {} · q quits ",
        gpus.len(),
        s.strategy
    );
    let mut lines: Vec<Line> = Vec::new();
    if let Some(e) = &s.error {
        lines.push(Line::from(Span::styled(
            e.clone(),
            Style::default().fg(Color::Red),
        )));
    }
    let bar_width = (area.width as usize).saturating_sub(48).clamp(5, 30);
    for g in gpus {
        let util = g["utilization"].as_f64().unwrap_or(0.0);
        let holders: Vec<String> = g["allocations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| h["workload"].as_str().unwrap_or("").to_string())
            .collect();
        let healthy = g["health"].as_str() == Some("ok");
        lines.push(Line::from(vec![
            Span::raw(format!(
                "{:>2} {:<10} ",
                g["index"],
                g["model"].as_str().unwrap_or("")
            )),
            Span::styled(
                bar(util, bar_width),
                Style::default().fg(if healthy { Color::Green } else { Color::Red }),
            ),
            Span::raw(format!(
                " {util:>3.0}% {:>3}C ",
                g["temperatureC"].as_f64().unwrap_or(0.0)
            )),
            Span::styled(
                holders.join(","),
                Style::default().add_modifier(Modifier::BOLD),
            ),
        ]));
    }
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(title)),
        top,
    );
    let row = |w: &Value, tail: String| {
        Line::from(format!(
            "{:<8} {:<18} {:<10} {:<9} {}",
            w["id"].as_str().unwrap_or(""),
            w["name"].as_str().unwrap_or(""),
            w["owner"].as_str().unwrap_or(""),
            w["queue"].as_str().unwrap_or(""),
            tail
        ))
    };
    let pending: Vec<Line> = items(&s.pending)
        .iter()
        .enumerate()
        .map(|(i, w)| {
            row(
                w,
                format!("#{} {}", i + 1, w["reason"].as_str().unwrap_or("")),
            )
        })
        .collect();
    frame.render_widget(
        Paragraph::new(pending).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" Queue ({}) ", items(&s.pending).len())),
        ),
        mid,
    );
    let running: Vec<Line> = items(&s.running)
        .iter()
        .map(|w| {
            let gpus: Vec<&str> = w["gpus"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            row(
                w,
                gpus.iter()
                    .map(|g| g.split(':').next().unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(","),
            )
        })
        .collect();
    frame.render_widget(
        Paragraph::new(running).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" Running ({}) ", items(&s.running).len())),
        ),
        bottom,
    );
}

/// Runs `gantry watch` until `q`, Esc or Ctrl-C.
pub fn run(args: WatchArgs) -> anyhow::Result<()> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
    let client = Client::from(&args.conn);
    let interval = Duration::from_secs_f64(args.interval.clamp(0.2, 60.0));
    let mut terminal = ratatui::init();
    let result = (|| -> anyhow::Result<()> {
        let mut snap = fetch(&client);
        let mut last = Instant::now();
        loop {
            terminal.draw(|f| draw(f, &snap))?;
            if event::poll(Duration::from_millis(100))?
                && let Event::Key(k) = event::read()?
                && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc)
                    || (k.code == KeyCode::Char('c')
                        && k.modifiers.contains(KeyModifiers::CONTROL)))
            {
                return Ok(());
            }
            if last.elapsed() >= interval {
                snap = fetch(&client);
                last = Instant::now();
            }
        }
    })();
    ratatui::restore();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use serde_json::json;

    #[test]
    fn fits_80x24_and_shows_gpus_queue_and_running() {
        let snap = Snapshot {
            gpus: json!({"gpus": [
                {"index": 0, "model": "H100-80GB", "utilization": 97.0, "temperatureC": 61.0, "health": "ok",
                 "allocations": [{"workload": "wl-3", "milli": 1000}]},
                {"index": 1, "model": "H100-80GB", "utilization": 0.0, "temperatureC": 34.0, "health": "failed: xid 79",
                 "allocations": []}
            ]}),
            pending: json!({"items": [{"id": "wl-9", "name": "big-train", "owner": "alice", "queue": "research",
                                       "reason": "waiting: 0/1 nodes can take the pod"}]}),
            running: json!({"items": [{"id": "wl-3", "name": "infer", "owner": "bob", "queue": "prod",
                                       "gpus": ["0:GPU-aaa"]}]}),
            strategy: "gantry".into(),
            error: None,
        };
        let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap_or_else(|e| panic!("{e}"));
        t.draw(|f| draw(f, &snap)).unwrap_or_else(|e| panic!("{e}"));
        let text: String = t
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        for needle in [
            "GPUs (2)",
            "strategy gantry",
            "H100-80GB",
            "97%",
            "wl-3",
            "Queue (1)",
            "#1",
            "big-train",
            "Running (1)",
            "infer",
        ] {
            assert!(text.contains(needle), "missing {needle:?}");
        }
    }
}
