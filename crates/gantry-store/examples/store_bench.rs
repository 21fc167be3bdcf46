//! Store micro-benchmark: durable submits per second (one by one and batched), batched transitions,
//! and `list` / `get` latency with many workloads stored.
//!
//! `cargo run --release -p gantry-store --example store_bench -- [--rows N] [--dir DIR]`
//! (defaults: 100,000 rows, a temporary directory). Put `--dir` on the disk the server would use:
//! the figures are bounded by how fast that disk syncs.

use gantry_core::spec::WorkloadSpec;
use gantry_store::{
    ListQuery, NewWorkload, Order, Store, Transition, TransitionRequest, WorkloadId, WorkloadState,
};
use std::time::{Duration, Instant};

/// A small deterministic generator (splitmix64), so every run reads the same pages.
struct Mix(u64);

impl Mix {
    /// The next number.
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const OWNERS: [&str; 8] = ["ana", "ben", "chen", "dara", "eli", "fay", "gus", "hana"];
const QUEUES: [&str; 4] = ["research", "prod", "batch", "interactive"];

/// Submission number `i`.
fn submission(i: u64) -> NewWorkload {
    let queue = QUEUES[(i % 4) as usize];
    let spec: WorkloadSpec = serde_json::from_value(serde_json::json!({
        "name": format!("job-{i}"),
        "kind": "training",
        "queue": queue,
        "resources": {"cpu": "8", "memory": "64Gi", "gpu": {"count": 1 + i % 4}},
        "run": {"command": ["python", "train.py"], "args": ["--seed", i.to_string()]}
    }))
    .expect("valid spec");
    let mut n = NewWorkload::from_spec(spec, OWNERS[(i % 8) as usize], 100 * (i % 3) as i64);
    n.idempotency_key = Some(format!("key-{i}"));
    n
}

/// p50 and p99 of `samples`, in microseconds.
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i].as_secs_f64() * 1e6
    };
    (at(0.50), at(0.99))
}

/// Times `runs` calls of `f`, printing p50/p99.
fn time(label: &str, runs: usize, mut f: impl FnMut(usize)) {
    let mut samples: Vec<Duration> = (0..runs)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed()
        })
        .collect();
    let (p50, p99) = percentiles(&mut samples);
    println!("  {label:<48} p50 {p50:>9.1} us   p99 {p99:>9.1} us   ({runs} runs)");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rows: u64 = 100_000;
    let mut dir: Option<std::path::PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rows" => rows = args.next().ok_or("--rows N")?.parse()?,
            "--dir" => dir = Some(args.next().ok_or("--dir DIR")?.into()),
            // `cargo bench`-style flags are accepted and ignored.
            _ if a.starts_with("--") => {}
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    let tmp = match &dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let path = tmp.path().join("bench.db");
    let mut store = Store::open(&path)?;
    println!("database: {}", path.display());
    let mut now = 1_700_000_000_000i64;
    let mut next = 0u64;

    // 1. Durable submits, one transaction (one sync) each.
    let singles = 2_000.min(rows);
    let mut lat = Vec::with_capacity(singles as usize);
    let t = Instant::now();
    for _ in 0..singles {
        let s = Instant::now();
        store.submit(&submission(next), "bench", now)?;
        lat.push(s.elapsed());
        next += 1;
        now += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    let (p50, p99) = percentiles(&mut lat);
    println!(
        "submit (one per transaction): {:>8.0} /s   p50 {p50:.0} us  p99 {p99:.0} us  ({singles} submits)",
        singles as f64 / secs
    );

    // 2. Durable submits in batches of 100 (group commit), up to `rows`.
    let t = Instant::now();
    let start = next;
    while next < rows {
        let batch: Vec<NewWorkload> = (next..(next + 100).min(rows)).map(submission).collect();
        store.submit_batch(&batch, "bench", now)?;
        next += batch.len() as u64;
        now += 1;
    }
    let n = next - start;
    if n > 0 {
        println!(
            "submit_batch (100 per transaction): {:>8.0} /s  ({n} submits)",
            n as f64 / t.elapsed().as_secs_f64()
        );
    }

    // 3. Move 30 % along the lifecycle in batches of 500 (one sync per batch): a realistic mix of states.
    let mut mix = Mix(42);
    let targets = [
        WorkloadState::Scheduled,
        WorkloadState::Running,
        WorkloadState::Succeeded,
    ];
    let mut reqs = Vec::new();
    let t = Instant::now();
    let mut moved = 0usize;
    for raw in 1..=rows as i64 {
        if mix.below(10) >= 3 {
            continue;
        }
        let id = WorkloadId::from_raw(raw).ok_or("id")?;
        let depth = 1 + mix.below(3) as usize;
        let mut from = WorkloadState::Pending;
        for &to in &targets[..depth] {
            reqs.push(TransitionRequest {
                id,
                from,
                change: Transition::to(to),
            });
            from = to;
        }
        if reqs.len() >= 500 {
            moved += reqs.len();
            store.transition_many(&std::mem::take(&mut reqs), "bench", now)?;
            now += 1;
        }
    }
    moved += reqs.len();
    store.transition_many(&reqs, "bench", now)?;
    println!(
        "transition_many (500 per transaction): {:>8.0} /s  ({moved} transitions)",
        moved as f64 / t.elapsed().as_secs_f64()
    );
    let file_mb = std::fs::metadata(&path)?.len() as f64 / 1e6;
    println!("{rows} workloads stored; database file {file_mb:.1} MB (plus WAL)");

    // 4. Reads.
    println!("list, 100 per page, {rows} workloads:");
    let q = |f: &dyn Fn(&mut ListQuery)| {
        let mut q = ListQuery::default();
        f(&mut q);
        q
    };
    let runs = 1_000;
    let rowsi = rows as i64;
    time("first page, no filter", runs, |_| {
        store.list(&ListQuery::default()).expect("list");
    });
    let mut m = Mix(7);
    time("random page (cursor), no filter", runs, |_| {
        let after = WorkloadId::from_raw(1 + m.below(rows) as i64);
        store.list(&q(&|q| q.after = after)).expect("list");
    });
    time("state = running, first page", runs, |_| {
        store
            .list(&q(&|q| q.state = Some(WorkloadState::Running)))
            .expect("list");
    });
    time("queue = prod, first page", runs, |_| {
        store
            .list(&q(&|q| q.queue = Some("prod".into())))
            .expect("list");
    });
    let mut m = Mix(8);
    time("queue = prod & state = pending, random page", runs, |_| {
        let after = WorkloadId::from_raw(1 + m.below(rows) as i64);
        store
            .list(&q(&|q| {
                q.queue = Some("prod".into());
                q.state = Some(WorkloadState::Pending);
                q.after = after;
                q.order = Order::OldestFirst;
            }))
            .expect("list");
    });
    time("owner = chen & state = succeeded, first page", runs, |_| {
        store
            .list(&q(&|q| {
                q.owner = Some("chen".into());
                q.state = Some(WorkloadState::Succeeded);
            }))
            .expect("list");
    });
    time(
        "owner & queue & state (none match), empty page",
        runs,
        |_| {
            store
                .list(&q(&|q| {
                    q.owner = Some("ana".into());
                    q.queue = Some("prod".into());
                    q.state = Some(WorkloadState::Lost);
                }))
                .expect("list");
        },
    );
    let mut m = Mix(9);
    time("get(id), random", 10_000, |_| {
        let id = WorkloadId::from_raw(1 + m.below(rows) as i64).expect("id");
        store.get(id).expect("get");
    });
    time("counts_by_state_and_queue", 50, |_| {
        store.counts_by_state_and_queue().expect("counts");
    });
    time(
        &format!("running() (all scheduled + running of {rowsi})"),
        20,
        |_| {
            store.running().expect("running");
        },
    );
    Ok(())
}
