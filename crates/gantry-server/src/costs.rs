//! Cost accounting for the standalone server: the store's workloads, audit log and telemetry
//! history turned into usage intervals for `gantry_cost::analyse` and the findings.
//!
//! - **Every attempt**: a workload's runs are read from its audit log, each from its transition to
//!   `running` to its transition out of it (or `now` while it runs), so a retried or preempted and
//!   requeued workload is charged exactly the time each attempt held its GPUs.
//! - **Which GPUs**: the last run's come from the stored assignment; an earlier run's from the
//!   telemetry samples that named the workload as holder during that run (with the milli held); with
//!   neither, the spec's request on the machine's GPU model when it has one model, else model
//!   `unknown` (reported, not priced).
//! - **Utilisation**: each (run, GPU) interval is cut at fixed sample buckets (one minute, longer for
//!   long windows, see [`bucket_ms`]); a piece is charged as idle when the mean utilisation of the
//!   samples taken in its bucket while the workload held that GPU is under the threshold, and a piece
//!   with no sample is never idle. Finished workloads get idle cost too.
//! - The pool is `on-demand` (a standalone machine is not spot capacity).

use crate::api::AppState;
use crate::db::DbError;
use crate::schedule::Machine;
use gantry_cost::{GpuFraction, Pool, Usage};
use gantry_gpu::GpuSnapshot;
use gantry_store::{
    AssignedGpu, Event, ListQuery, Order, SampleBucket, SampleQuery, Store, UnixMillis, Workload,
    WorkloadId, WorkloadState,
};

/// The cost types this module's functions take and give, for callers that do not depend on
/// `gantry_cost` themselves (`gantry bench costs`).
pub use gantry_cost::{Analysis, Catalogue, GroupBy, Window, analyse};
use std::collections::{BTreeMap, BTreeSet};

/// The shortest sample bucket: one minute.
pub const MIN_BUCKET_MS: i64 = 60_000;

/// The sample bucket for a window: one minute, or for longer windows the window over 10,000
/// rounded to the nearest whole minute (a 30-day window reads 10,800 buckets of 4 minutes per GPU
/// and holder). Whole minutes, so samples rolled up into minutes fall in the buckets of the raw
/// samples they stand for (see `gantry_store`'s samples module).
pub fn bucket_ms(window: Window) -> i64 {
    let span = (window.to_ms - window.from_ms) / 10_000;
    ((span + MIN_BUCKET_MS / 2) / MIN_BUCKET_MS * MIN_BUCKET_MS).max(MIN_BUCKET_MS)
}

/// The `window` (default `7d`, ending at `now`) and `idle_threshold` (default 30 %) query parameters
/// of the cost routes, checked: the window's text, its span, and the threshold.
pub(crate) fn window_params(
    window: Option<String>,
    idle_threshold: Option<f64>,
    now: UnixMillis,
) -> Result<(String, Window, f64), crate::error::ApiError> {
    use crate::error::ApiError;
    let text = window.unwrap_or_else(|| "7d".to_string());
    let secs = gantry_core::spec::Duration(text.clone())
        .seconds()
        .map_err(|e| ApiError::invalid("window", format!("{text:?}: {e}")))?;
    if secs == 0 {
        return Err(ApiError::invalid(
            "window",
            "must be longer than zero (e.g. 7d)",
        ));
    }
    let idle_threshold = idle_threshold.unwrap_or(30.0);
    if !(0.0..=100.0).contains(&idle_threshold) {
        return Err(ApiError::invalid(
            "idle_threshold",
            "must be a percentage between 0 and 100",
        ));
    }
    let from_ms = now.saturating_sub(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX));
    Ok((
        text,
        Window {
            from_ms,
            to_ms: now,
        },
        idle_threshold,
    ))
}

/// The GPU fraction one assigned GPU holds: MIG compute slices of 7, a milli-share, or the whole GPU.
pub fn fraction_of(gpu: &AssignedGpu) -> GpuFraction {
    if let Some(mig) = &gpu.mig {
        let slices: u32 = mig
            .profile
            .split_once('g')
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or(7);
        return GpuFraction::mig_slices(slices);
    }
    match gpu.milli {
        Some(m) => GpuFraction::milli(m),
        None => GpuFraction::whole(),
    }
}

/// Everything the accounting reads for a window, loaded in one go.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Workloads that may have run in the window (submitters: their own).
    pub workloads: Vec<Workload>,
    /// The transitions into and out of `running` of each of them, oldest first: all of their
    /// audit log that [`runs_of`] reads (absent: none).
    pub events: BTreeMap<WorkloadId, Vec<Event>>,
    /// Telemetry aggregated per (bucket, GPU, holder).
    pub buckets: Vec<SampleBucket>,
    /// Peak GPU memory per workload in the window, bytes.
    pub peak_memory: BTreeMap<WorkloadId, u64>,
    /// For runs the stored assignment does not describe (earlier attempts): the samples naming the
    /// workload as holder during them, as (time, GPU UUID, milli held).
    pub holders: BTreeMap<WorkloadId, Vec<(i64, String, u32)>>,
    /// The bucket length of `buckets`.
    pub bucket_ms: i64,
}

/// Reads the [`History`] of `window` from `s` (only `owner`'s workloads when given): what
/// [`load_history`] runs on the server's reader connection.
pub fn history_of(
    s: &Store,
    owner: Option<&str>,
    window: Window,
) -> Result<History, gantry_store::Error> {
    let bucket = bucket_ms(window);
    let mut workloads = Vec::new();
    let mut after = None;
    loop {
        let page = s.list(&ListQuery {
            owner: owner.map(str::to_string),
            limit: gantry_store::MAX_PAGE_LIMIT,
            after,
            order: Order::OldestFirst,
            ..ListQuery::default()
        })?;
        workloads.extend(page.items.into_iter().filter(|w| may_have_run(w, window)));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let events = running_transitions_of(s, &workloads)?;
    let mut holders: BTreeMap<WorkloadId, Vec<(i64, String, u32)>> = BTreeMap::new();
    for w in &workloads {
        let log = events.get(&w.id).map_or(&[][..], Vec::as_slice);
        let runs = runs_of(w, log, window.to_ms);
        for (i, &(start, end)) in runs.iter().enumerate() {
            let described =
                i + 1 == runs.len() && w.started_at == Some(start) && w.assignment.is_some();
            if described || end <= window.from_ms || start >= window.to_ms {
                continue;
            }
            let seen = s.samples(&SampleQuery {
                from: start,
                to: end,
                gpu_uuid: None,
                workload: Some(w.id),
            })?;
            holders.entry(w.id).or_default().extend(
                seen.into_iter()
                    .map(|x| (x.at, x.gpu_uuid, x.held_milli.unwrap_or(1000))),
            );
        }
    }
    let buckets = s.sample_buckets(
        &SampleQuery {
            from: window.from_ms,
            to: window.to_ms,
            ..SampleQuery::default()
        },
        bucket,
    )?;
    // The same as `Store::peak_memory` over the window, without reading the samples again.
    let mut peak_memory: BTreeMap<WorkloadId, u64> = BTreeMap::new();
    for b in &buckets {
        if let (Some(id), Some(m)) = (b.workload, b.max_memory_used_bytes) {
            let peak = peak_memory.entry(id).or_default();
            *peak = (*peak).max(m);
        }
    }
    Ok(History {
        workloads,
        events,
        buckets,
        peak_memory,
        holders,
        bucket_ms: bucket,
    })
}

/// The widest gap between two workload ids that one query of [`running_transitions_of`] spans:
/// a wider one (a long-running workload submitted long before the rest of the window) starts
/// another query, so the read stays close to the window's own events.
const MAX_ID_GAP: i64 = 4096;

/// The transitions into and out of `running` of `workloads` (all that [`runs_of`] reads), by
/// workload, oldest first: one range query per run of ids no more than [`MAX_ID_GAP`] apart,
/// instead of one query per workload.
pub fn running_transitions_of(
    s: &Store,
    workloads: &[Workload],
) -> Result<BTreeMap<WorkloadId, Vec<Event>>, gantry_store::Error> {
    running_transitions_within(s, workloads, MAX_ID_GAP)
}

/// [`running_transitions_of`] with ranges spanning gaps of at most `max_gap` ids.
fn running_transitions_within(
    s: &Store,
    workloads: &[Workload],
    max_gap: i64,
) -> Result<BTreeMap<WorkloadId, Vec<Event>>, gantry_store::Error> {
    let ids: BTreeSet<WorkloadId> = workloads.iter().map(|w| w.id).collect();
    let mut events: BTreeMap<WorkloadId, Vec<Event>> = BTreeMap::new();
    let mut ranges: Vec<(WorkloadId, WorkloadId)> = Vec::new();
    for &id in &ids {
        match ranges.last_mut() {
            Some((_, last)) if id.raw() - last.raw() <= max_gap => *last = id,
            _ => ranges.push((id, id)),
        }
    }
    for (first, last) in ranges {
        for e in s.running_transitions(first, last)? {
            // Ids in the range but not in `workloads` (another owner's, never started) are skipped.
            if let Some(id) = e.workload.filter(|id| ids.contains(id)) {
                events.entry(id).or_default().push(e);
            }
        }
    }
    Ok(events)
}

/// The usage of `window` read from `s` (see the module documentation): [`history_of`] then
/// [`usage_of_history`]. The server's cost analysis and budget check both come through here.
pub fn usage_of_store(
    s: &Store,
    machine: &Machine,
    owner: Option<&str>,
    window: Window,
) -> Result<Vec<Usage>, gantry_store::Error> {
    let history = history_of(s, owner, window)?;
    Ok(usage_of_history(&history, machine, window))
}

/// Loads the [`History`] of `window` (only `owner`'s workloads when given).
pub async fn load_history(
    state: &AppState,
    owner: Option<String>,
    window: Window,
) -> Result<History, DbError> {
    state
        .db
        .read(move |s| history_of(s, owner.as_deref(), window))
        .await
}

/// Loads the window's history and turns it into usage (see the module documentation), on the
/// store's reader thread.
pub async fn load_usage(
    state: &AppState,
    owner: Option<String>,
    window: Window,
) -> Result<Vec<Usage>, DbError> {
    let machine = state.runner.machine();
    state
        .db
        .read(move |s| usage_of_store(s, &machine, owner.as_deref(), window))
        .await
}

/// False only for a workload that cannot have held a GPU in the window: never started, or finished
/// before it began.
fn may_have_run(w: &Workload, window: Window) -> bool {
    w.attempts > 0
        && !(w.state.is_finished() && w.finished_at.is_some_and(|f| f < window.from_ms))
        && w.submitted_at < window.to_ms
}

/// The runs of `w` from its audit log: `[entered running, left running)`, the last one ending at
/// `now` while it runs. Without events (an old database), its last run from its timestamps.
pub fn runs_of(w: &Workload, events: &[Event], now: UnixMillis) -> Vec<(i64, i64)> {
    let mut runs = Vec::new();
    let mut open: Option<i64> = None;
    for e in events {
        if e.action != gantry_store::actions::TRANSITION {
            continue;
        }
        if e.from_state == Some(WorkloadState::Running)
            && let Some(start) = open.take()
        {
            runs.push((start, e.at));
        }
        if e.to_state == Some(WorkloadState::Running) {
            open = Some(e.at);
        }
    }
    if let Some(start) = open
        && w.state == WorkloadState::Running
    {
        runs.push((start, now));
    }
    if runs.is_empty()
        && let Some(start) = w.started_at
    {
        let end = if w.state == WorkloadState::Running {
            Some(now)
        } else {
            w.finished_at
        };
        runs.extend(end.map(|e| (start, e)));
    }
    runs.retain(|(a, b)| b > a);
    runs
}

/// One GPU a run held: its UUID (empty when unknown), model and fraction.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldGpu {
    /// UUID, or empty.
    pub uuid: String,
    /// Model key.
    pub model: String,
    /// Fraction held.
    pub fraction: GpuFraction,
}

/// The machine's model of a GPU (by UUID, else index).
fn model_of(machine: &Machine, uuid: Option<&str>, index: Option<u32>) -> Option<String> {
    machine
        .slots
        .iter()
        .find(|s| uuid == Some(s.uuid.as_str()))
        .or_else(|| {
            machine
                .slots
                .iter()
                .find(|s| uuid.is_none() && Some(s.index) == index)
        })
        .map(|s| s.model.clone())
}

/// The GPUs run `[start, end)` of `w` held (see the module documentation).
fn gpus_of_run(
    w: &Workload,
    run: (i64, i64),
    is_last: bool,
    holders: &[(i64, String, u32)],
    machine: &Machine,
) -> Vec<HeldGpu> {
    if is_last && let Some(a) = &w.assignment {
        let gpus: Vec<HeldGpu> = a
            .replicas
            .iter()
            .flat_map(|r| r.gpus.iter())
            .map(|g| {
                let slot = machine
                    .slots
                    .iter()
                    .find(|s| g.uuid.as_deref() == Some(s.uuid.as_str()))
                    .or_else(|| machine.slots.iter().find(|s| s.index == g.index));
                HeldGpu {
                    uuid: g
                        .uuid
                        .clone()
                        .or_else(|| slot.map(|s| s.uuid.clone()))
                        .unwrap_or_default(),
                    model: slot.map_or_else(|| "unknown".to_string(), |s| s.model.clone()),
                    fraction: fraction_of(g),
                }
            })
            .collect();
        if !gpus.is_empty() {
            return gpus;
        }
    }
    let mut held: BTreeMap<&str, u32> = BTreeMap::new();
    for (at, uuid, milli) in holders {
        if *at >= run.0 && *at < run.1 {
            let m = held.entry(uuid).or_default();
            *m = (*m).max(*milli);
        }
    }
    let seen: Vec<HeldGpu> = held
        .into_iter()
        .map(|(uuid, milli)| HeldGpu {
            uuid: uuid.to_string(),
            model: model_of(machine, Some(uuid), None).unwrap_or_else(|| "unknown".into()),
            fraction: if milli >= 1000 {
                GpuFraction::whole()
            } else {
                GpuFraction::milli(milli)
            },
        })
        .collect();
    if !seen.is_empty() {
        return seen;
    }
    let models: BTreeSet<&str> = machine.slots.iter().map(|s| s.model.as_str()).collect();
    let model = if models.len() == 1 {
        models.iter().next().map_or("unknown", |m| m).to_string()
    } else {
        "unknown".to_string()
    };
    let gpu = w.spec.resources.gpu.as_ref();
    let (count, fraction) = match gpu {
        Some(g) if g.share.is_some() => (
            1,
            GpuFraction::milli(u32::try_from(g.share.unwrap_or(1000)).unwrap_or(1000)),
        ),
        Some(g) if g.mig.is_some() => (1, fraction_of(&mig_gpu(g.mig.as_deref()))),
        Some(g) => (g.count.unwrap_or(1).max(1), GpuFraction::whole()),
        None => (0, GpuFraction::whole()),
    };
    let replicas = w.spec.replicas.max(1);
    (0..count * replicas)
        .map(|_| HeldGpu {
            uuid: String::new(),
            model: model.clone(),
            fraction,
        })
        .collect()
}

fn mig_gpu(profile: Option<&str>) -> AssignedGpu {
    AssignedGpu {
        mig: profile.map(|p| gantry_store::MigSlice {
            profile: p.to_string(),
            start: 0,
            uuid: None,
        }),
        ..AssignedGpu::default()
    }
}

/// Usage intervals of every run of every workload in `history`, each (run, GPU) cut at the sample
/// buckets with the mean utilisation of its bucket (see the module documentation).
pub fn usage_of_history(history: &History, machine: &Machine, window: Window) -> Vec<Usage> {
    let bucket = history.bucket_ms.max(1);
    // (workload, gpu, bucket) -> utilisation.
    let mut util: BTreeMap<(WorkloadId, &str, i64), f64> = BTreeMap::new();
    for b in &history.buckets {
        let Some(id) = b.workload else { continue };
        if let Some(u) = b.mean_utilization_pct {
            util.insert((id, &b.gpu_uuid, b.start), u);
        }
    }
    let mut out = Vec::new();
    for w in &history.workloads {
        let events = history.events.get(&w.id).map_or(&[][..], Vec::as_slice);
        let runs = runs_of(w, events, window.to_ms);
        for (i, &run) in runs.iter().enumerate() {
            let (start, end) = (run.0.max(window.from_ms), run.1.min(window.to_ms));
            if end <= start {
                continue;
            }
            let is_last = i + 1 == runs.len() && w.started_at == Some(run.0);
            let holders = history.holders.get(&w.id).map_or(&[][..], Vec::as_slice);
            for gpu in gpus_of_run(w, run, is_last, holders, machine) {
                let mut at = start;
                while at < end {
                    let b = at.div_euclid(bucket) * bucket;
                    let next = (b + bucket).min(end);
                    out.push(Usage {
                        workload: w.id.to_string(),
                        owner: w.owner.clone(),
                        queue: w.queue.clone(),
                        model: gpu.model.clone(),
                        gpu: gpu.uuid.clone(),
                        pool: Pool::OnDemand,
                        gpu_fraction: gpu.fraction,
                        start_ms: at,
                        end_ms: next,
                        mean_utilization: util.get(&(w.id, gpu.uuid.as_str(), b)).copied(),
                    });
                    at = next;
                }
            }
        }
    }
    merge_adjacent(out)
}

/// Joins consecutive pieces of one (workload, GPU) with the same utilisation figure, so long runs
/// without telemetry stay one interval.
fn merge_adjacent(pieces: Vec<Usage>) -> Vec<Usage> {
    let mut out: Vec<Usage> = Vec::with_capacity(pieces.len());
    for p in pieces {
        if let Some(last) = out.last_mut()
            && last.workload == p.workload
            && last.gpu == p.gpu
            && last.model == p.model
            && last.gpu_fraction == p.gpu_fraction
            && last.end_ms == p.start_ms
            && last.mean_utilization.is_none()
            && p.mean_utilization.is_none()
        {
            last.end_ms = p.end_ms;
            continue;
        }
        out.push(p);
    }
    out
}

/// How often the poll loop rolls samples older than [`ROLLUP_AFTER_MS`] up into minutes and prunes
/// those older than [`gantry_store::SAMPLE_RETENTION_MS`].
pub const PRUNE_EVERY_MS: i64 = 3_600_000;

/// Raw samples older than this (an hour) are rolled up into one row per minute, GPU and holder.
pub const ROLLUP_AFTER_MS: i64 = 3_600_000;

/// When samples were last pruned (0: not yet in this process).
static LAST_PRUNE_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// One poll's samples: a row per GPU per holder (a GPU nobody holds: one row with no workload).
pub fn samples_of(
    running: &[Workload],
    snapshots: &[GpuSnapshot],
    now: UnixMillis,
) -> Vec<gantry_store::GpuSample> {
    let mut out = Vec::with_capacity(snapshots.len());
    for s in snapshots {
        let t = &s.telemetry;
        let reading = |workload: Option<WorkloadId>, held: Option<u32>| gantry_store::GpuSample {
            at: now,
            gpu_uuid: s.device.uuid.clone(),
            workload,
            held_milli: held,
            utilization_pct: t.utilization_gpu_pct.map(f64::from),
            memory_used_bytes: t.memory_used_mib.map(|m| m.saturating_mul(1024 * 1024)),
            power_watts: t.power_draw_w,
            temperature_c: t.temperature_c.map(f64::from),
        };
        let mut holders: BTreeMap<WorkloadId, u32> = BTreeMap::new();
        for w in running {
            for g in w
                .assignment
                .iter()
                .flat_map(|a| a.replicas.iter().flat_map(|r| r.gpus.iter()))
            {
                let same = match &g.uuid {
                    Some(u) => *u == s.device.uuid,
                    None => g.index == s.device.index,
                };
                if same {
                    let milli = if g.mig.is_some() {
                        fraction_of(g).parts() / 7
                    } else {
                        g.milli.unwrap_or(1000)
                    };
                    *holders.entry(w.id).or_default() += milli;
                }
            }
        }
        if holders.is_empty() {
            out.push(reading(None, None));
        }
        for (id, milli) in holders {
            out.push(reading(Some(id), Some(milli.min(1000))));
        }
    }
    out
}

/// Records one poll's samples through the store's writer (one transaction), and about once an hour
/// rolls those older than [`ROLLUP_AFTER_MS`] up into minutes and prunes those older than the
/// retention. Failures are logged, never fatal to the poll loop.
pub async fn record_poll(state: &AppState, running: &[Workload], snapshots: &[GpuSnapshot]) {
    let now = crate::runner::now_ms();
    let samples = samples_of(running, snapshots, now);
    if let Err(e) = state.db.write(move |s| s.record_samples(&samples)).await {
        tracing::warn!(error = %e, "could not record GPU samples");
    }
    let last = LAST_PRUNE_MS.load(std::sync::atomic::Ordering::Relaxed);
    if now - last >= PRUNE_EVERY_MS {
        LAST_PRUNE_MS.store(now, std::sync::atomic::Ordering::Relaxed);
        match state
            .db
            .write(move |s| s.roll_up_samples(now - ROLLUP_AFTER_MS))
            .await
        {
            Ok(n) if n > 0 => tracing::debug!(rolled = n, "rolled GPU samples up into minutes"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not roll GPU samples up"),
        }
        let before = now - gantry_store::SAMPLE_RETENTION_MS;
        match state.db.write(move |s| s.prune_samples(before)).await {
            Ok(n) if n > 0 => tracing::info!(removed = n, "pruned old GPU samples"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not prune GPU samples"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_cost::{Catalogue, GroupBy, analyse};
    use gantry_store::{Assignment, MigSlice, ReplicaAssignment, actions};

    const M: i64 = 60_000;
    const H: i64 = 60 * M;

    #[test]
    fn fractions_of_whole_shares_and_mig() {
        let whole = AssignedGpu::default();
        let share = AssignedGpu {
            milli: Some(250),
            ..AssignedGpu::default()
        };
        let mig = AssignedGpu {
            mig: Some(MigSlice {
                profile: "3g.40gb".into(),
                start: 4,
                uuid: None,
            }),
            ..AssignedGpu::default()
        };
        assert_eq!(fraction_of(&whole), GpuFraction::whole());
        assert_eq!(fraction_of(&share), GpuFraction::milli(250));
        assert_eq!(fraction_of(&mig), GpuFraction::mig_slices(3));
    }

    fn machine() -> Machine {
        crate::schedule::test_machine(2, "H100-80GB", 8000, 65536)
    }

    fn workload(id: i64, state: WorkloadState, gpu: u32) -> Workload {
        let spec = serde_json::from_value(serde_json::json!({
            "name": "w", "resources": {"gpu": {"count": 1}}, "run": {"command": ["true"]}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        Workload {
            id: WorkloadId::from_raw(id).unwrap_or_else(|| panic!("id")),
            name: "w".into(),
            owner: "ann".into(),
            queue: "research".into(),
            priority: 0,
            state,
            spec,
            assignment: Some(Assignment {
                replicas: vec![ReplicaAssignment {
                    node: "box".into(),
                    gpus: vec![AssignedGpu {
                        index: gpu,
                        uuid: Some(format!("GPU-{gpu}")),
                        ..AssignedGpu::default()
                    }],
                }],
            }),
            attempts: 2,
            exit_code: None,
            reason: None,
            submitted_at: 0,
            started_at: None,
            finished_at: None,
            updated_at: 0,
            idempotency_key: None,
        }
    }

    fn transition(seq: i64, id: i64, from: WorkloadState, to: WorkloadState, at: i64) -> Event {
        Event {
            seq,
            workload: WorkloadId::from_raw(id),
            subject: None,
            actor: "scheduler".into(),
            action: actions::TRANSITION.into(),
            from_state: Some(from),
            to_state: Some(to),
            reason: None,
            at,
        }
    }

    fn bucket(start: i64, gpu: &str, id: i64, util: f64) -> SampleBucket {
        SampleBucket {
            start,
            gpu_uuid: gpu.into(),
            workload: WorkloadId::from_raw(id),
            held_milli: Some(1000),
            mean_utilization_pct: Some(util),
            max_memory_used_bytes: None,
            count: 30,
        }
    }

    fn catalogue() -> Catalogue {
        Catalogue::from_yaml(
            "prices:\n  - {model: H100-80GB, pool: on-demand, per_gpu_hour: 6.00, source: t, date: 1970-01-01}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A workload preempted 20 minutes into its first attempt on GPU-0, then run again for 30
    /// minutes on GPU-1 (where it is now): both attempts are charged, exactly the time held.
    #[test]
    fn a_preemption_mid_hour_charges_both_attempts_exactly() {
        use WorkloadState::*;
        let mut w = workload(1, Succeeded, 1);
        w.started_at = Some(H);
        w.finished_at = Some(H + 30 * M);
        let events = vec![
            transition(1, 1, Scheduled, Running, 10 * M),
            transition(2, 1, Running, Preempted, 30 * M),
            transition(3, 1, Preempted, Pending, 30 * M),
            transition(4, 1, Scheduled, Running, H),
            transition(5, 1, Running, Succeeded, H + 30 * M),
        ];
        assert_eq!(
            runs_of(&w, &events, 2 * H),
            vec![(10 * M, 30 * M), (H, H + 30 * M)]
        );
        let history = History {
            workloads: vec![w],
            events: BTreeMap::from([(WorkloadId::from_raw(1).unwrap_or_else(|| panic!()), events)]),
            // The first attempt's GPU is known only from the samples naming the holder.
            buckets: vec![
                bucket(10 * M, "GPU-0", 1, 90.0),
                bucket(20 * M, "GPU-0", 1, 90.0),
            ],
            holders: BTreeMap::from([(
                WorkloadId::from_raw(1).unwrap_or_else(|| panic!()),
                vec![
                    (12 * M, "GPU-0".to_string(), 1000),
                    (28 * M, "GPU-0".to_string(), 1000),
                ],
            )]),
            bucket_ms: 10 * M,
            ..History::default()
        };
        let window = Window {
            from_ms: 0,
            to_ms: 2 * H,
        };
        let usage = usage_of_history(&history, &machine(), window);
        let gpus: BTreeSet<&str> = usage.iter().map(|u| u.gpu.as_str()).collect();
        assert_eq!(gpus, BTreeSet::from(["GPU-0", "GPU-1"]));
        // 20 min + 30 min = 50 min at 6.00 per hour = 5.00.
        let a = analyse(&usage, window, &catalogue(), GroupBy::Workload, 30.0)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.total.to_string(), "5.00");
        assert_eq!(a.gpu_hours, 50.0 / 60.0);
    }

    /// A running workload idle in its first 20 minutes and busy afterwards: only the idle buckets
    /// are idle cost; a bucket with no sample is not.
    #[test]
    fn idle_is_counted_in_the_buckets_where_it_happened() {
        use WorkloadState::*;
        let mut w = workload(2, Running, 0);
        w.started_at = Some(0);
        let events = vec![transition(1, 2, Scheduled, Running, 0)];
        let history = History {
            workloads: vec![w],
            events: BTreeMap::from([(WorkloadId::from_raw(2).unwrap_or_else(|| panic!()), events)]),
            buckets: vec![
                bucket(0, "GPU-0", 2, 2.0),
                bucket(10 * M, "GPU-0", 2, 5.0),
                bucket(20 * M, "GPU-0", 2, 95.0),
                bucket(30 * M, "GPU-0", 2, 80.0),
                // 40..60: no sample
            ],
            bucket_ms: 10 * M,
            ..History::default()
        };
        let window = Window {
            from_ms: 0,
            to_ms: H,
        };
        let usage = usage_of_history(&history, &machine(), window);
        let a = analyse(&usage, window, &catalogue(), GroupBy::Queue, 30.0)
            .unwrap_or_else(|e| panic!("{e}"));
        // An hour at 6.00; 20 idle minutes = 2.00.
        assert_eq!(a.total.to_string(), "6.00");
        assert_eq!(a.idle_total.to_string(), "2.00");
        // The two sample-less buckets were merged into one interval.
        assert_eq!(usage.len(), 5);
    }

    fn assigned(gpu: u32, milli: Option<u32>) -> Assignment {
        Assignment {
            replicas: vec![ReplicaAssignment {
                node: "box".into(),
                gpus: vec![AssignedGpu {
                    index: gpu,
                    uuid: Some(format!("GPU-{gpu}")),
                    milli,
                    ..AssignedGpu::default()
                }],
            }],
        }
    }

    /// One line of an analysis: the group (or `total`), its cost and its idle cost.
    type Figure = (String, Option<String>, Option<String>);

    /// A hand-made history in a real store: A runs on GPU-0 (idle for its first 14.5 minutes), is
    /// preempted and runs again on GPU-1 (idle for 10 minutes); B holds half of GPU-0 for 40 idle
    /// minutes. Its cost and idle cost are the same, to the cent and per workload, before and after
    /// every sample is rolled up into minutes, over a 2-hour and a 30-day window.
    #[test]
    fn a_rolled_up_history_costs_the_same_as_the_raw_one() {
        use WorkloadState::*;
        use gantry_store::{GpuSample, NewWorkload, Transition};
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut s = Store::open(dir.path().join("s.db")).unwrap_or_else(|e| panic!("{e}"));
        let base = 40 * 24 * H;
        let now = base + 2 * H;
        let spec = |share: Option<u32>| {
            let gpu = match share {
                Some(m) => serde_json::json!({"count": 1, "share": m}),
                None => serde_json::json!({"count": 1}),
            };
            let spec = serde_json::from_value(serde_json::json!({
                "name": "w", "resources": {"gpu": gpu}, "run": {"command": ["true"]}
            }))
            .unwrap_or_else(|e| panic!("{e}"));
            NewWorkload::from_spec(spec, "ann", 0)
        };
        let ok = |r: gantry_store::Result<Workload>| r.unwrap_or_else(|e| panic!("{e}"));
        let a = ok(s.submit(&spec(None), "ann", base)).id;
        let b = ok(s.submit(&spec(Some(500)), "ann", base)).id;
        let (a1, a1_end, a2) = (base + 5 * M + 30_000, base + 50 * M, base + 70 * M);
        let (b1, b1_end) = (base + H, base + 100 * M);
        let to = |st| Transition::to(st);
        let mut go = |id, from, change, at| ok(s.transition(id, from, change, "t", at));
        go(a, Pending, to(Scheduled).assignment(assigned(0, None)), a1);
        go(a, Scheduled, to(Running), a1);
        go(a, Running, to(Preempted), a1_end);
        go(a, Preempted, to(Pending), a1_end);
        go(
            b,
            Pending,
            to(Scheduled).assignment(assigned(0, Some(500))),
            b1,
        );
        go(b, Scheduled, to(Running), b1);
        go(a, Pending, to(Scheduled).assignment(assigned(1, None)), a2);
        go(a, Scheduled, to(Running), a2);
        go(b, Running, to(Succeeded), b1_end);
        let sample = |at, gpu: &str, w: Option<WorkloadId>, milli, util| GpuSample {
            at,
            gpu_uuid: gpu.into(),
            workload: w,
            held_milli: w.map(|_| milli),
            utilization_pct: Some(util),
            memory_used_bytes: Some(1 << 30),
            power_watts: None,
            temperature_c: None,
        };
        let mut samples = Vec::new();
        for t in (base..now).step_by(2_000) {
            let mut gpu0 = Vec::new();
            if (a1..a1_end).contains(&t) {
                let util = if t < base + 20 * M { 5.0 } else { 90.0 };
                gpu0.push(sample(t, "GPU-0", Some(a), 1000, util));
            }
            if (b1..b1_end).contains(&t) {
                gpu0.push(sample(t, "GPU-0", Some(b), 500, 10.0));
            }
            if gpu0.is_empty() {
                gpu0.push(sample(t, "GPU-0", None, 0, 0.0));
            }
            samples.extend(gpu0);
            samples.push(if t >= a2 {
                let util = if (base + 90 * M..base + 100 * M).contains(&t) {
                    12.5
                } else {
                    50.0
                };
                sample(t, "GPU-1", Some(a), 1000, util)
            } else {
                sample(t, "GPU-1", None, 0, 0.0)
            });
        }
        s.record_samples(&samples).unwrap_or_else(|e| panic!("{e}"));
        let windows = [
            Window {
                from_ms: base,
                to_ms: now,
            },
            Window {
                from_ms: now - 30 * 24 * H,
                to_ms: now,
            },
        ];
        let figures = |s: &Store| -> Vec<Vec<Figure>> {
            windows
                .iter()
                .map(|&w| {
                    let usage =
                        usage_of_store(s, &machine(), None, w).unwrap_or_else(|e| panic!("{e}"));
                    let a = analyse(&usage, w, &catalogue(), GroupBy::Workload, 30.0)
                        .unwrap_or_else(|e| panic!("{e}"));
                    let mut rows = vec![(
                        "total".to_string(),
                        Some(a.total.to_string()),
                        Some(a.idle_total.to_string()),
                    )];
                    rows.extend(a.groups.into_iter().map(|g| {
                        (
                            g.key,
                            g.cost.map(|c| c.to_string()),
                            g.idle_cost.map(|c| c.to_string()),
                        )
                    }));
                    rows
                })
                .collect()
        };
        let raw = figures(&s);
        // A: 44.5 + 50 min, B: 40 min x 0.5 at 6.00/h; idle 14.5 + 10 min of A, all of B.
        let total = |f: &[Figure]| f[0].clone();
        assert_eq!(
            total(&raw[0]),
            ("total".into(), Some("11.45".into()), Some("4.45".into()))
        );
        assert_eq!(total(&raw[1]).1, Some("11.45".into()));
        let rolled = s.roll_up_samples(now).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rolled, samples.len());
        assert_eq!(figures(&s), raw);
    }

    /// The batched read gives each listed workload exactly the transitions `runs_of` reads from
    /// its own audit log, whether one range covers them all or each gap starts a new query, and
    /// nothing of an unlisted workload inside the range.
    #[test]
    fn batched_transitions_are_each_workloads_running_transitions() {
        use WorkloadState::*;
        use gantry_store::{NewWorkload, Transition};
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut s = Store::open(dir.path().join("s.db")).unwrap_or_else(|e| panic!("{e}"));
        let spec = serde_json::from_value(serde_json::json!({
            "name": "w", "resources": {"gpu": {"count": 1}}, "run": {"command": ["true"]}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let new = NewWorkload::from_spec(spec, "ann", 0);
        let ok = |r: gantry_store::Result<Workload>| r.unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<WorkloadId> = (0..4).map(|i| ok(s.submit(&new, "ann", i)).id).collect();
        let steps = [
            (Pending, Scheduled),
            (Scheduled, Running),
            (Running, Preempted),
            (Preempted, Pending),
            (Pending, Scheduled),
            (Scheduled, Running),
        ];
        for (n, (from, to)) in steps.into_iter().enumerate() {
            for (k, &id) in ids.iter().enumerate() {
                let at = 10 * n as i64 + k as i64;
                ok(s.transition(id, from, Transition::to(to), "t", at));
            }
        }
        let listed: Vec<Workload> = [ids[0], ids[1], ids[3]]
            .iter()
            .map(|&id| ok(s.get(id).map(|w| w.unwrap_or_else(|| panic!("{id}")))))
            .collect();
        let expected: BTreeMap<WorkloadId, Vec<Event>> = listed
            .iter()
            .map(|w| {
                let mut log = s.events(w.id).unwrap_or_else(|e| panic!("{e}"));
                log.retain(|e| {
                    e.action == gantry_store::actions::TRANSITION
                        && (e.from_state == Some(Running) || e.to_state == Some(Running))
                });
                (w.id, log)
            })
            .collect();
        assert!(expected.values().all(|log| log.len() == 3));
        for gap in [MAX_ID_GAP, 1] {
            let got =
                running_transitions_within(&s, &listed, gap).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got, expected, "gap {gap}");
        }
        let w = &listed[0];
        assert_eq!(runs_of(w, &expected[&w.id], 100), vec![(10, 20), (50, 100)]);
    }

    #[test]
    fn without_events_the_last_run_comes_from_the_timestamps() {
        let mut w = workload(3, WorkloadState::Failed, 0);
        w.started_at = Some(5);
        w.finished_at = Some(50);
        assert_eq!(runs_of(&w, &[], 100), vec![(5, 50)]);
        w.finished_at = None;
        assert!(runs_of(&w, &[], 100).is_empty());
    }
}
