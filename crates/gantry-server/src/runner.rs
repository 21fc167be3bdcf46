//! The live loop: place pending work on this machine's GPUs, run it, record what happens.
//!
//! One task owns the decisions. It wakes on a submission, a cancel, an exit or every second, and
//! then (1) records exits (batched into one store transaction), (2) re-queues failed attempts whose
//! retry delay has passed, (3) places pending work (`schedule::plan`), marks it scheduled, starts
//! the processes and marks them running. Every state change is a compare-and-set in the store with
//! its event, so a crash at any point leaves a state that `reconcile` at the next start resolves:
//! scheduled but never started goes back to pending; running is found again (pid record), finished
//! (exit record) or lost (retried if its policy allows).

use crate::admission::Quotas;
use crate::db::Db;
use crate::preempt::{self, Holder, Preemption, Preemptor, Situation};
use crate::schedule::{self, Decision, Machine, Taken, Work};
use gantry_core::Policy;
use gantry_core::model::GpuModels;
use gantry_core::spec::QueueSpec;
use gantry_exec::{Backoff, Exit, Launch, Reconciled, RunAs, Running};
use gantry_store::{
    AssignedGpu, Assignment, ListQuery, Order, ReplicaAssignment, Transition, TransitionRequest,
    UnixMillis, Workload, WorkloadId, WorkloadState,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, mpsc};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as UnixMillis)
}

/// The actor name the loop writes into the audit log.
pub const SCHEDULER: &str = "scheduler";

/// How the reason of a failed start begins (such failures are not retried).
pub const COULD_NOT_START: &str = "could not start";

/// Settings of the loop.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Where logs and pid records go.
    pub log_dir: PathBuf,
    /// Unprivileged user to run workloads as (when the server is root).
    pub run_as: Option<RunAs>,
    /// Grace between SIGTERM and SIGKILL on cancel and timeout.
    pub grace: Duration,
    /// Retry backoff.
    pub backoff: Backoff,
    /// How often finished workloads are checked against their `ttlAfterFinished`.
    pub ttl_sweep: Duration,
    /// Whether and when higher-priority work may stop lower-priority work.
    pub preemption: preempt::Rules,
}

/// A process the loop watches: started by us, or found again after a restart.
enum Handle {
    Started(Arc<Running>),
    Adopted(Arc<gantry_exec::Adopted>),
}

impl Handle {
    fn cancel(&self, grace: Duration) {
        match self {
            Handle::Started(r) => r.cancel(grace),
            Handle::Adopted(a) => {
                let a = a.clone();
                tokio::spawn(async move { a.stop(grace, Duration::from_millis(100), false).await });
            }
        }
    }
}

enum Event {
    Exited(WorkloadId, u32, Exit),
    Requeue(WorkloadId),
}

/// A running workload being stopped to make room for another.
#[derive(Debug, Clone, Copy)]
struct Stopping {
    /// The workload it makes room for (raw id).
    preemptor: i64,
    /// When it is gone at the latest (signal time + grace), ms.
    gone_by: UnixMillis,
}

/// Why a pending workload waits, for `status` and `explain`.
pub type Waiting = HashMap<WorkloadId, String>;

/// The loop's shared state: the API reads it and pokes it.
pub struct Runner {
    db: Db,
    config: RunnerConfig,
    machine: Mutex<Machine>,
    policy: Mutex<Policy>,
    handles: Mutex<HashMap<WorkloadId, Handle>>,
    cancelling: Mutex<std::collections::HashSet<WorkloadId>>,
    waiting: Mutex<Waiting>,
    wake: Notify,
    events: mpsc::UnboundedSender<Event>,
    inbox: Mutex<Option<mpsc::UnboundedReceiver<Event>>>,
    /// Observed queue waits (seconds) and cycle times, drained by the metrics task.
    observations: Mutex<(Vec<f64>, Vec<f64>)>,
    /// Queues over budget with a hard cap, with the waiting reason (set by the alert loop).
    capped: Mutex<HashMap<String, String>>,
    /// The declared queues (empty = every queue unlimited).
    queues: Mutex<Vec<QueueSpec>>,
    /// Workloads being stopped for preemption, by raw id.
    preempting: Mutex<HashMap<i64, Stopping>>,
    /// Preemptions completed since the last [`Runner::take_preemptions`].
    preemptions: std::sync::atomic::AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-updated in a way that
    // matters more than stopping the server, so recover the guard.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Runner {
    /// A runner over `db` for `machine`, placing with `policy`.
    pub fn new(db: Db, machine: Machine, policy: Policy, config: RunnerConfig) -> Arc<Runner> {
        let (tx, rx) = mpsc::unbounded_channel();
        Arc::new(Runner {
            db,
            config,
            machine: Mutex::new(machine),
            policy: Mutex::new(policy),
            handles: Mutex::new(HashMap::new()),
            cancelling: Mutex::new(Default::default()),
            waiting: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            events: tx,
            inbox: Mutex::new(Some(rx)),
            observations: Mutex::new((Vec::new(), Vec::new())),
            capped: Mutex::new(HashMap::new()),
            queues: Mutex::new(Vec::new()),
            preempting: Mutex::new(HashMap::new()),
            preemptions: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Where workload logs are.
    pub fn log_dir(&self) -> &std::path::Path {
        &self.config.log_dir
    }

    /// Asks the loop to run a cycle soon.
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// The active strategy.
    pub fn policy(&self) -> Policy {
        *lock(&self.policy)
    }

    /// Sets the active strategy (the caller stores it).
    pub fn set_policy(&self, policy: Policy) {
        *lock(&self.policy) = policy;
        self.poke();
    }

    /// The machine as the scheduler sees it.
    pub fn machine(&self) -> Machine {
        lock(&self.machine).clone()
    }

    /// Marks GPUs healthy or not (from telemetry).
    pub fn set_health(&self, healthy: &HashMap<String, bool>) {
        let mut m = lock(&self.machine);
        let mut changed = false;
        for s in &mut m.slots {
            if let Some(&h) = healthy.get(&s.uuid)
                && s.healthy != h
            {
                s.healthy = h;
                changed = true;
            }
        }
        drop(m);
        if changed {
            self.poke();
        }
    }

    /// Sets the queues whose pending work is not admitted (over budget, hard cap), each with the
    /// waiting reason; running work is not stopped.
    pub fn set_capped(&self, capped: HashMap<String, String>) {
        let changed = {
            let mut current = lock(&self.capped);
            let changed = *current != capped;
            *current = capped;
            changed
        };
        if changed {
            self.poke();
        }
    }

    /// The queues whose new work is held (over budget, hard cap), with the waiting reason.
    pub fn capped(&self) -> HashMap<String, String> {
        lock(&self.capped).clone()
    }

    /// Why `id` is still pending, if the loop has tried to place it.
    pub fn waiting_reason(&self, id: WorkloadId) -> Option<String> {
        lock(&self.waiting).get(&id).cloned()
    }

    /// Stops a running workload (SIGTERM, grace, SIGKILL); false if it is not running here.
    pub fn cancel_running(&self, id: WorkloadId) -> bool {
        let handles = lock(&self.handles);
        match handles.get(&id) {
            Some(h) => {
                lock(&self.cancelling).insert(id);
                h.cancel(self.config.grace);
                true
            }
            None => false,
        }
    }

    /// The declared queues.
    pub fn queues(&self) -> Vec<QueueSpec> {
        lock(&self.queues).clone()
    }

    /// Replaces the declared queues (from the store) and runs a cycle soon.
    pub fn set_queues(&self, queues: Vec<QueueSpec>) {
        *lock(&self.queues) = queues;
        self.poke();
    }

    /// Running workloads being preempted (raw id), with the time each is gone at the latest.
    pub fn stopping(&self) -> HashMap<i64, UnixMillis> {
        lock(&self.preempting)
            .iter()
            .map(|(v, s)| (*v, s.gone_by))
            .collect()
    }

    /// Takes the number of workloads preempted (stopped and requeued) since the last call.
    pub fn take_preemptions(&self) -> u64 {
        self.preemptions
            .swap(0, std::sync::atomic::Ordering::Relaxed)
    }

    /// Takes the queue waits and cycle durations observed since the last call.
    pub fn take_observations(&self) -> (Vec<f64>, Vec<f64>) {
        std::mem::take(&mut *lock(&self.observations))
    }

    /// Runs the loop forever: reconcile, then cycles.
    pub async fn run(self: Arc<Self>) {
        let Some(mut inbox) = lock(&self.inbox).take() else {
            return;
        };
        if let Err(e) = self.reconcile().await {
            tracing::error!(error = %e, "reconcile after restart failed");
        }
        let mut last_sweep = std::time::Instant::now();
        loop {
            if last_sweep.elapsed() >= self.config.ttl_sweep {
                last_sweep = std::time::Instant::now();
                if let Err(e) = self.sweep_expired().await {
                    tracing::error!(error = %e, "TTL sweep failed");
                }
            }
            let mut events = Vec::new();
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                Some(e) = inbox.recv() => events.push(e),
            }
            while let Ok(e) = inbox.try_recv() {
                events.push(e);
            }
            let started = std::time::Instant::now();
            if let Err(e) = self.cycle(events).await {
                tracing::error!(error = %e, "scheduling cycle failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            lock(&self.observations)
                .1
                .push(started.elapsed().as_secs_f64());
        }
    }

    /// Deletes finished workloads whose `ttlAfterFinished` has passed, with their logs; returns how many.
    ///
    /// A failed workload that still has a retry coming is kept. The audit events stay (the store keeps
    /// them), so the history of a deleted workload remains readable in the audit log.
    pub async fn sweep_expired(self: &Arc<Self>) -> Result<usize, crate::db::DbError> {
        let now = now_ms();
        let expired = self
            .db
            .read(move |s| {
                let mut out = Vec::new();
                for state in WorkloadState::ALL.into_iter().filter(|st| st.is_finished()) {
                    let mut q = ListQuery {
                        state: Some(state),
                        limit: 1000,
                        order: Order::OldestFirst,
                        ..ListQuery::default()
                    };
                    loop {
                        let page = s.list(&q)?;
                        out.extend(
                            page.items
                                .into_iter()
                                .filter(|w| ttl_expired(w, now))
                                .map(|w| w.id),
                        );
                        match page.next {
                            Some(next) => q.after = Some(next),
                            None => break,
                        }
                    }
                }
                Ok(out)
            })
            .await?;
        if expired.is_empty() {
            return Ok(0);
        }
        let ids = expired.clone();
        let deleted = self
            .db
            .write(move |s| {
                let mut done = Vec::new();
                for id in ids {
                    // Another writer may have changed it meanwhile (a retry): skip those.
                    if s.delete_finished(id, SCHEDULER, now).is_ok() {
                        done.push(id);
                    }
                }
                Ok(done)
            })
            .await?;
        let log_dir = self.config.log_dir.clone();
        let names: Vec<String> = deleted.iter().map(|id| id.to_string()).collect();
        let count = deleted.len();
        let _ = tokio::task::spawn_blocking(move || {
            for id in names {
                if let Err(e) = gantry_exec::cleanup(&log_dir, &id) {
                    tracing::warn!(workload = %id, error = %e, "could not remove logs after TTL");
                }
            }
        })
        .await;
        Ok(count)
    }

    async fn cycle(self: &Arc<Self>, events: Vec<Event>) -> Result<(), crate::db::DbError> {
        self.record_events(events).await?;
        self.place().await
    }

    async fn record_events(self: &Arc<Self>, events: Vec<Event>) -> Result<(), crate::db::DbError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut requests = Vec::new();
        let mut retry_later = Vec::new();
        for e in events {
            match e {
                Event::Exited(id, attempt, exit) => {
                    lock(&self.handles).remove(&id);
                    let preempted_for = lock(&self.preempting)
                        .remove(&id.raw())
                        .map(|s| s.preemptor);
                    let cancelled_by_user = lock(&self.cancelling).remove(&id);
                    let preempted = preempted_for.filter(|_| !cancelled_by_user);
                    // Stopped to make room: requeued, not failed (no retry is used up), whatever its
                    // exit status (a workload that checkpoints on SIGTERM may exit 0).
                    let (to, reason) = match preempted {
                        Some(by) => (WorkloadState::Preempted, format!("preempted by wl-{by}")),
                        None => exit_outcome(&exit, cancelled_by_user || exit.cancelled),
                    };
                    let mut change = Transition::to(to).reason(reason);
                    if let Some(code) = exit.code {
                        change = change.exit_code(code);
                    }
                    requests.push(TransitionRequest {
                        id,
                        from: WorkloadState::Running,
                        change,
                    });
                    if preempted.is_some() {
                        requests.push(TransitionRequest {
                            id,
                            from: WorkloadState::Preempted,
                            change: Transition::to(WorkloadState::Pending)
                                .reason("requeued after preemption"),
                        });
                        self.preemptions
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    if to == WorkloadState::Failed {
                        retry_later.push((id, attempt, exit));
                    }
                }
                Event::Requeue(id) => requests.push(TransitionRequest {
                    id,
                    from: WorkloadState::Failed,
                    change: Transition::to(WorkloadState::Pending).reason("retry"),
                }),
            }
        }
        let now = now_ms();
        let results = self
            .db
            .write(move |s| s.transition_many(&requests, SCHEDULER, now))
            .await?;
        let by_id: HashMap<WorkloadId, Workload> =
            results.into_iter().flatten().map(|w| (w.id, w)).collect();
        for (id, attempt, exit) in retry_later {
            let Some(w) = by_id.get(&id) else { continue };
            let retries = u32::try_from(w.spec.retries).unwrap_or(0);
            if let Some(delay) = gantry_exec::next_attempt(
                retries,
                attempt,
                &exit,
                &self.config.backoff,
                id.raw() as u64,
            ) {
                let tx = self.events.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(Event::Requeue(id));
                });
            }
        }
        Ok(())
    }

    async fn place(self: &Arc<Self>) -> Result<(), crate::db::DbError> {
        let pending = self
            .db
            .read(|s| {
                let mut out = Vec::new();
                let mut q = ListQuery {
                    state: Some(WorkloadState::Pending),
                    limit: 1000,
                    order: Order::OldestFirst,
                    ..ListQuery::default()
                };
                loop {
                    let page = s.list(&q)?;
                    out.extend(page.items);
                    match page.next {
                        Some(next) if out.len() < 20_000 => q.after = Some(next),
                        _ => break,
                    }
                }
                Ok(out)
            })
            .await?;
        if pending.is_empty() {
            lock(&self.waiting).clear();
            return Ok(());
        }
        let running = self.db.read(|s| s.running()).await?;
        let machine = self.machine();
        let models = machine.models();
        let running_work: Vec<(Work, Vec<Taken>)> = running
            .iter()
            .filter_map(|w| Some((work_of(w, &models).ok()?, taken_of(w, &machine))))
            .collect();
        let capped = lock(&self.capped).clone();
        let mut unplaceable: Vec<(WorkloadId, String)> = pending
            .iter()
            .filter_map(|w| Some((w.id, capped.get(&w.queue)?.clone())))
            .collect();
        let pending_work: Vec<Work> = pending
            .iter()
            .filter(|w| !capped.contains_key(&w.queue))
            .filter_map(|w| match work_of(w, &models) {
                Ok(work) => Some(work),
                Err(why) => {
                    unplaceable.push((w.id, why));
                    None
                }
            })
            .collect();
        let held: Vec<Work> = running_work.iter().map(|(w, _)| w.clone()).collect();
        let mut quotas = Quotas::new(&self.queues(), &machine, &held);
        let decisions = schedule::plan(
            &machine,
            &running_work,
            &pending_work,
            self.policy(),
            &mut quotas,
            now_ms(),
        );
        let by_id: HashMap<i64, &Workload> = pending.iter().map(|w| (w.id.raw(), w)).collect();
        let mut waiting = Waiting::new();
        let mut to_schedule = Vec::new();
        let mut blocked = Vec::new();
        // Work after the reservation's head does not preempt: room it made could go to the head's
        // reserved GPUs only, and it would be held there anyway.
        let mut past_head = false;
        for (raw, decision) in decisions {
            let Some(w) = by_id.get(&raw) else { continue };
            match decision {
                Decision::Place(taken) => to_schedule.push(((*w).clone(), taken)),
                Decision::Wait(why) if past_head => {
                    waiting.insert(w.id, why);
                }
                Decision::Wait(why) => blocked.push((*w, why)),
                Decision::Reserved(why) => {
                    past_head = true;
                    blocked.push((*w, why));
                }
                // Over its queue's quota, or held for the head-of-line reservation (it fits): no
                // preemption for either.
                Decision::Refused(why) | Decision::Held(why) => {
                    waiting.insert(w.id, why);
                }
            }
        }
        let holders = self.holders(&running, &to_schedule, &machine, &quotas);
        let work_by_id: HashMap<i64, &Work> = pending_work.iter().map(|p| (p.id, p)).collect();
        // A shape, priority and queue that preemption could not help once this cycle gets the same
        // answer until a preemption changes what runs.
        let mut unhelped: HashMap<(i64, String, String), String> = HashMap::new();
        for (w, why) in blocked {
            let Some(work) = work_by_id.get(&w.id.raw()) else {
                waiting.insert(w.id, why);
                continue;
            };
            let key = (work.priority, work.queue.clone(), format!("{:?}", work.pod));
            if let Some(part) = unhelped.get(&key) {
                waiting.insert(w.id, format!("{why}; preemption: {part}"));
                continue;
            }
            let within_guarantee = quotas.within_guarantee(work);
            let who = Preemptor {
                work,
                within_guarantee,
            };
            let (reason, decision) = self.preempt_for(who, &why, &holders, &machine);
            match decision {
                Some(Preemption::No(part)) => {
                    unhelped.insert(key, part);
                }
                Some(Preemption::Evict(_)) => unhelped.clear(),
                _ => {}
            }
            waiting.insert(w.id, reason);
        }
        for (id, why) in &unplaceable {
            waiting.insert(*id, why.clone());
        }
        *lock(&self.waiting) = waiting;
        if to_schedule.is_empty() {
            return Ok(());
        }
        let requests: Vec<TransitionRequest> = to_schedule
            .iter()
            .map(|(w, taken)| TransitionRequest {
                id: w.id,
                from: WorkloadState::Pending,
                change: Transition::to(WorkloadState::Scheduled)
                    .assignment(assignment_of(taken, &machine)),
            })
            .collect();
        let now = now_ms();
        let scheduled = self
            .db
            .write(move |s| s.transition_many(&requests, SCHEDULER, now))
            .await?;
        let mut starts = Vec::new();
        for ((w, taken), result) in to_schedule.into_iter().zip(scheduled) {
            if result.is_err() {
                // Cancelled (or changed) between the read and the write: leave it.
                continue;
            }
            let attempt = w.attempts + 1;
            let outcome = self.start(&w, attempt, &taken, &machine);
            starts.push((w, attempt, outcome));
        }
        let now = now_ms();
        let mut requests = Vec::new();
        let mut waits = Vec::new();
        for (w, _attempt, outcome) in &starts {
            match outcome {
                Ok(_) => {
                    requests.push(TransitionRequest {
                        id: w.id,
                        from: WorkloadState::Scheduled,
                        change: Transition::to(WorkloadState::Running),
                    });
                    waits.push(((now - w.submitted_at).max(0)) as f64 / 1000.0);
                }
                Err(why) => requests.push(TransitionRequest {
                    id: w.id,
                    from: WorkloadState::Scheduled,
                    change: Transition::to(WorkloadState::Failed)
                        .reason(format!("{COULD_NOT_START}: {why}")),
                }),
            }
        }
        self.db
            .write(move |s| s.transition_many(&requests, SCHEDULER, now))
            .await?;
        lock(&self.observations).0.extend(waits);
        for (w, attempt, outcome) in starts {
            if let Ok(running) = outcome {
                self.watch(w.id, attempt, Handle::Started(Arc::new(running)));
            }
        }
        Ok(())
    }

    /// What runs now, as preemption sees it: the running workloads and those placed this cycle.
    fn holders(
        &self,
        running: &[Workload],
        placed: &[(Workload, Vec<Taken>)],
        machine: &Machine,
        quotas: &Quotas,
    ) -> Vec<Holder> {
        let models = machine.models();
        let now = now_ms();
        // Victims that are no longer running are no longer being stopped.
        lock(&self.preempting).retain(|v, _| running.iter().any(|w| w.id.raw() == *v));
        running
            .iter()
            .map(|w| {
                (
                    w,
                    taken_of(w, machine),
                    w.started_at.unwrap_or(w.updated_at),
                )
            })
            .chain(placed.iter().map(|(w, t)| (w, t.clone(), now)))
            .filter_map(|(w, taken, started_at)| {
                Some(Holder {
                    work: work_of(w, &models).ok()?,
                    taken,
                    preemptible: w.spec.preemptible,
                    started_at,
                    borrowed: quotas.borrowing(&w.queue),
                })
            })
            .collect()
    }

    /// Preemption for `work`, which waits because of `why`: stops victims if that lets it fit, and
    /// returns the waiting reason with what preemption does (or why it cannot help).
    fn preempt_for(
        &self,
        who: Preemptor<'_>,
        why: &str,
        holders: &[Holder],
        machine: &Machine,
    ) -> (String, Option<Preemption>) {
        let work = who.work;
        let lower = holders.iter().any(|h| {
            h.work.priority < work.priority
                || (who.within_guarantee && h.borrowed && h.work.queue != work.queue)
        });
        let mut stopping = lock(&self.preempting);
        let awaited = stopping.values().any(|s| s.preemptor == work.id);
        if !lower && !awaited {
            return (why.to_string(), None);
        }
        let victim_of: HashMap<i64, i64> =
            stopping.iter().map(|(v, s)| (*v, s.preemptor)).collect();
        let now = now_ms();
        let situation = Situation {
            machine,
            holders,
            stopping: &victim_of,
            policy: self.policy(),
            now_ms: now,
            rules: self.config.preemption,
        };
        let decision = preempt::decide(&situation, who);
        if let Preemption::Evict(victims) = &decision {
            let handles = lock(&self.handles);
            for v in victims {
                let Some(id) = WorkloadId::from_raw(*v) else {
                    continue;
                };
                if let Some(h) = handles.get(&id) {
                    tracing::info!(victim = %id, preemptor = work.id, "preempting");
                    let grace = i64::try_from(self.config.grace.as_millis()).unwrap_or(i64::MAX);
                    stopping.insert(
                        *v,
                        Stopping {
                            preemptor: work.id,
                            gone_by: now.saturating_add(grace),
                        },
                    );
                    h.cancel(self.config.grace);
                }
            }
        }
        let reason = format!(
            "{why}; preemption: {}",
            decision.describe(self.config.grace.as_secs())
        );
        (reason, Some(decision))
    }

    fn start(
        &self,
        w: &Workload,
        attempt: u32,
        taken: &[Taken],
        machine: &Machine,
    ) -> Result<Running, String> {
        let mut launch =
            Launch::from_spec(&w.spec, w.id.to_string(), attempt, &self.config.log_dir)
                .map_err(|e| e.to_string())?;
        launch.gpus = taken
            .iter()
            .filter_map(|t| machine.slots.get(t.slot))
            .map(|s| gantry_exec::AssignedGpu {
                index: s.index,
                uuid: s.uuid.clone(),
            })
            .collect();
        launch.run_as = self.config.run_as;
        launch.grace = self.config.grace;
        gantry_exec::start(&launch).map_err(|e| e.to_string())
    }

    fn watch(self: &Arc<Self>, id: WorkloadId, attempt: u32, handle: Handle) {
        let tx = self.events.clone();
        let waiter = match &handle {
            Handle::Started(r) => {
                let r = r.clone();
                tokio::spawn(async move {
                    let exit = r.wait().await.unwrap_or_else(|_| unknown_exit());
                    let _ = tx.send(Event::Exited(id, attempt, exit));
                })
            }
            Handle::Adopted(a) => {
                let a = a.clone();
                tokio::spawn(async move {
                    let exit = a
                        .wait(Duration::from_millis(200))
                        .await
                        .unwrap_or_else(|_| unknown_exit());
                    let _ = tx.send(Event::Exited(id, attempt, exit));
                })
            }
        };
        drop(waiter);
        lock(&self.handles).insert(id, handle);
    }

    /// After a restart: resolves every workload the store believes scheduled or running, and
    /// re-arms the retries of failed work whose backoff the previous server did not see end.
    pub async fn reconcile(self: &Arc<Self>) -> Result<(), crate::db::DbError> {
        let believed = self.db.read(|s| s.running()).await?;
        let ids: Vec<String> = believed.iter().map(|w| w.id.to_string()).collect();
        let log_dir = self.config.log_dir.clone();
        let found = tokio::task::spawn_blocking(move || gantry_exec::reconcile(&log_dir, &ids))
            .await
            .unwrap_or_default();
        let found: HashMap<String, Reconciled> = found.into_iter().collect();
        let mut requests = Vec::new();
        let mut lost = Vec::new();
        let mut exits = Vec::new();
        for w in &believed {
            let outcome = found.get(&w.id.to_string());
            // A scheduled workload whose process had started (its pid record is of the attempt
            // this placement began) is resolved like a running one: first marked running.
            let started_here = match outcome {
                Some(Reconciled::Found(a)) => a.attempt == w.attempts + 1,
                Some(Reconciled::Finished { attempt, .. }) => *attempt == w.attempts + 1,
                Some(Reconciled::Lost {
                    attempt: Some(a), ..
                }) => *a == w.attempts + 1,
                _ => false,
            };
            let from = if w.state == WorkloadState::Scheduled {
                if !started_here {
                    self.discard_unstarted(w);
                    requests.push(TransitionRequest {
                        id: w.id,
                        from: WorkloadState::Scheduled,
                        change: Transition::to(WorkloadState::Pending)
                            .reason("server restarted before it started"),
                    });
                    continue;
                }
                requests.push(TransitionRequest {
                    id: w.id,
                    from: WorkloadState::Scheduled,
                    change: Transition::to(WorkloadState::Running)
                        .reason("started before the server restarted"),
                });
                WorkloadState::Running
            } else {
                w.state
            };
            let attempts = if w.state == WorkloadState::Scheduled {
                w.attempts + 1
            } else {
                w.attempts
            };
            match outcome {
                Some(Reconciled::Found(adopted)) => {
                    tracing::info!(workload = %w.id, pid = adopted.record.pid, "found running again");
                    let adopted = Arc::new(adopted.clone());
                    self.rearm_timeout(w, &adopted);
                    self.watch(w.id, adopted.attempt, Handle::Adopted(adopted));
                }
                Some(Reconciled::Finished { attempt, exit, .. }) => {
                    exits.push(Event::Exited(w.id, *attempt, exit.clone()));
                }
                Some(Reconciled::Lost { reason, .. }) => {
                    requests.push(TransitionRequest {
                        id: w.id,
                        from,
                        change: Transition::to(WorkloadState::Lost)
                            .reason(format!("lost across a restart: {reason}")),
                    });
                    lost.push((w, attempts));
                }
                None => {
                    requests.push(TransitionRequest {
                        id: w.id,
                        from,
                        change: Transition::to(WorkloadState::Lost)
                            .reason("lost across a restart: no record"),
                    });
                    lost.push((w, attempts));
                }
            }
        }
        // Lost work is retried when its policy allows another attempt.
        for (w, attempts) in &lost {
            let retries = u32::try_from(w.spec.retries).unwrap_or(0);
            if *attempts <= retries {
                requests.push(TransitionRequest {
                    id: w.id,
                    from: WorkloadState::Lost,
                    change: Transition::to(WorkloadState::Pending).reason("retry after loss"),
                });
            }
        }
        let now = now_ms();
        if !requests.is_empty() {
            self.db
                .write(move |s| s.transition_many(&requests, SCHEDULER, now))
                .await?;
        }
        for e in exits {
            let _ = self.events.send(e);
        }
        self.rearm_retries(now).await?;
        self.poke();
        Ok(())
    }

    /// Removes the log files of an attempt that was placed but never started (no pid record), so
    /// that the attempt number is free for the next placement.
    fn discard_unstarted(&self, w: &Workload) {
        let Ok(paths) =
            gantry_exec::AttemptPaths::new(&self.config.log_dir, &w.id.to_string(), w.attempts + 1)
        else {
            return;
        };
        if !paths.pid.exists() && !paths.exit.exists() {
            let _ = std::fs::remove_file(&paths.stdout);
            let _ = std::fs::remove_file(&paths.stderr);
        }
    }

    /// Stops a child found again after a restart when what is left of its timeout has passed.
    fn rearm_timeout(&self, w: &Workload, adopted: &Arc<gantry_exec::Adopted>) {
        let Some(timeout) = w
            .spec
            .timeout
            .as_ref()
            .and_then(|t| t.seconds().ok())
            .map(Duration::from_secs)
        else {
            return;
        };
        let left = timeout.saturating_sub(adopted.elapsed(SystemTime::now()));
        let (adopted, grace) = (adopted.clone(), self.config.grace);
        tokio::spawn(async move {
            tokio::time::sleep(left).await;
            adopted.stop(grace, Duration::from_millis(100), true).await;
        });
    }

    /// Schedules the retry of every failed workload that has attempts left: the previous server
    /// kept the backoff timer in memory only.
    async fn rearm_retries(&self, now: UnixMillis) -> Result<(), crate::db::DbError> {
        let failed = self
            .db
            .read(|s| {
                let mut out = Vec::new();
                let mut q = ListQuery {
                    state: Some(WorkloadState::Failed),
                    limit: 1000,
                    order: Order::OldestFirst,
                    ..ListQuery::default()
                };
                loop {
                    let page = s.list(&q)?;
                    out.extend(page.items.into_iter().filter(|w| {
                        w.spec.retries > 0
                            && !w
                                .reason
                                .as_deref()
                                .is_some_and(|r| r.starts_with(COULD_NOT_START))
                    }));
                    match page.next {
                        Some(next) => q.after = Some(next),
                        None => break,
                    }
                }
                Ok(out)
            })
            .await?;
        for w in failed {
            let exit = Exit {
                code: w.exit_code,
                signal: None,
                timed_out: w.reason.as_deref() == Some("timeout"),
                cancelled: false,
                duration: Duration::ZERO,
            };
            let retries = u32::try_from(w.spec.retries).unwrap_or(0);
            let Some(delay) = gantry_exec::next_attempt(
                retries,
                w.attempts,
                &exit,
                &self.config.backoff,
                w.id.raw() as u64,
            ) else {
                continue;
            };
            let waited = u64::try_from(now - w.finished_at.unwrap_or(now)).unwrap_or(0);
            let left = delay.saturating_sub(Duration::from_millis(waited));
            let (tx, id) = (self.events.clone(), w.id);
            tokio::spawn(async move {
                tokio::time::sleep(left).await;
                let _ = tx.send(Event::Requeue(id));
            });
        }
        Ok(())
    }
}

/// Whether `w` finished more than its `ttlAfterFinished` before `now` (and has no retry coming).
fn ttl_expired(w: &Workload, now: UnixMillis) -> bool {
    let Some(ttl) = w
        .spec
        .ttl_after_finished
        .as_ref()
        .and_then(|d| d.seconds().ok())
    else {
        return false;
    };
    let Some(finished) = w.finished_at else {
        return false;
    };
    let retry_coming = w.state == WorkloadState::Failed
        && u32::try_from(w.spec.retries).unwrap_or(0) >= w.attempts
        && w.reason
            .as_deref()
            .is_some_and(|r| !r.starts_with("could not start"));
    !retry_coming && now.saturating_sub(finished) >= (ttl as i64).saturating_mul(1000)
}

fn unknown_exit() -> Exit {
    Exit {
        code: None,
        signal: None,
        timed_out: false,
        cancelled: false,
        duration: Duration::ZERO,
    }
}

fn exit_outcome(exit: &Exit, cancelled: bool) -> (WorkloadState, String) {
    if cancelled {
        (WorkloadState::Cancelled, "cancelled".into())
    } else if exit.success() {
        (WorkloadState::Succeeded, "exit 0".into())
    } else if exit.timed_out {
        (WorkloadState::Failed, "timeout".into())
    } else if let Some(code) = exit.code {
        (WorkloadState::Failed, format!("exit {code}"))
    } else if let Some(sig) = exit.signal {
        (WorkloadState::Failed, format!("killed by signal {sig}"))
    } else {
        (WorkloadState::Failed, "exit unknown".into())
    }
}

/// A stored workload as the scheduler's `Work` (its spec turned into an engine pod).
pub fn work_of(w: &Workload, models: &GpuModels) -> Result<Work, String> {
    let pod = w.spec.pod(models).map_err(|errors| {
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    Ok(Work {
        id: w.id.raw(),
        priority: w.priority,
        submitted_at: w.submitted_at,
        queue: w.queue.clone(),
        limit_ms: limit_ms(w),
        started_at: w
            .started_at
            .filter(|_| matches!(w.state, WorkloadState::Scheduled | WorkloadState::Running)),
        pod,
    })
}

/// The time limit of `w` in ms, if it has one.
pub fn limit_ms(w: &Workload) -> Option<i64> {
    let secs = w.spec.timeout.as_ref()?.seconds().ok()?;
    Some(
        i64::try_from(secs)
            .unwrap_or(i64::MAX / 2)
            .saturating_mul(1000),
    )
}

/// The GPUs of `machine` that `w`'s assignment holds.
pub fn taken_of(w: &Workload, machine: &Machine) -> Vec<Taken> {
    let Some(a) = &w.assignment else {
        return Vec::new();
    };
    a.replicas
        .iter()
        .flat_map(|r| r.gpus.iter())
        .filter_map(|g| {
            let slot = machine.slots.iter().position(|s| {
                g.uuid.as_deref() == Some(s.uuid.as_str())
                    || (g.uuid.is_none() && s.index == g.index)
            })?;
            Some(Taken {
                slot,
                milli: g.milli.unwrap_or(1000),
            })
        })
        .collect()
}

fn assignment_of(taken: &[Taken], machine: &Machine) -> Assignment {
    Assignment {
        replicas: vec![ReplicaAssignment {
            node: machine.name.clone(),
            gpus: taken
                .iter()
                .filter_map(|t| {
                    let s = machine.slots.get(t.slot)?;
                    Some(AssignedGpu {
                        index: s.index,
                        uuid: Some(s.uuid.clone()),
                        milli: (t.milli < 1000).then_some(t.milli),
                        mig: None,
                    })
                })
                .collect(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::spec::WorkloadSpec;

    fn finished(state: WorkloadState, ttl: Option<&str>, finished_at: i64) -> Workload {
        let mut spec: WorkloadSpec =
            serde_json::from_value(serde_json::json!({"name": "w", "run": {"command": ["true"]}}))
                .unwrap_or_else(|e| panic!("{e}"));
        spec.ttl_after_finished = ttl.map(|t| gantry_core::spec::Duration(t.to_string()));
        Workload {
            id: WorkloadId::from_raw(1).unwrap_or_else(|| panic!("id")),
            name: "w".into(),
            owner: "o".into(),
            queue: "default".into(),
            priority: 0,
            state,
            spec,
            assignment: None,
            attempts: 1,
            exit_code: Some(0),
            reason: Some("exit 0".into()),
            submitted_at: 0,
            started_at: Some(0),
            finished_at: Some(finished_at),
            updated_at: finished_at,
            idempotency_key: None,
        }
    }

    #[test]
    fn ttl_counts_from_the_finish() {
        let w = finished(WorkloadState::Succeeded, Some("1m"), 10_000);
        assert!(!ttl_expired(&w, 10_000 + 59_999));
        assert!(ttl_expired(&w, 10_000 + 60_000));
        // No TTL: kept forever.
        assert!(!ttl_expired(
            &finished(WorkloadState::Succeeded, None, 0),
            i64::MAX
        ));
    }

    #[test]
    fn a_failure_with_a_retry_coming_is_kept() {
        let mut w = finished(WorkloadState::Failed, Some("1s"), 0);
        w.spec.retries = 2;
        w.reason = Some("exit 1".into());
        assert!(!ttl_expired(&w, 1_000_000));
        // Out of retries: it goes.
        w.attempts = 3;
        assert!(ttl_expired(&w, 1_000_000));
    }
}
