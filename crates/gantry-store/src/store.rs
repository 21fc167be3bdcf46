//! The store: opening the database, workloads and the audit log.

use crate::error::{Error, Result};
use crate::model::{
    Assignment, Event, ListQuery, MAX_PAGE_LIMIT, NewWorkload, Order, Page, StateQueueCount,
    Transition, TransitionRequest, UnixMillis, Workload, WorkloadId, WorkloadState, actions,
};
use crate::schema;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a writer waits for another connection's write transaction before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest idempotency key accepted.
const MAX_KEY_LEN: usize = 256;

/// Columns of a workload row, in the order [`read_workload`] reads them.
const WORKLOAD_COLUMNS: &str = "id, name, owner, queue, priority, state, spec, assignment, attempts, \
     exit_code, reason, submitted_at, started_at, finished_at, updated_at, idempotency_key";

/// Columns of an event row, in the order [`read_event`] reads them.
const EVENT_COLUMNS: &str =
    "seq, workload_id, subject, actor, action, from_state, to_state, reason, at";

/// The filter and order of [`Store::running_transitions`] (ids `?1..=?2`).
const RUNNING_TRANSITIONS: &str = "workload_id BETWEEN ?1 AND ?2 AND action = 'transition' \
     AND (from_state = 'running' OR to_state = 'running') ORDER BY workload_id, seq";

/// The default database: `$XDG_DATA_HOME/gantry/gantry.db`, else `$HOME/.local/share/gantry/gantry.db`.
pub fn default_path() -> Result<PathBuf> {
    default_path_from(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
}

/// [`default_path`] from given values of `XDG_DATA_HOME` and `HOME` (empty or relative ones are ignored,
/// as the XDG base directory specification asks).
pub fn default_path_from(
    xdg_data_home: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf> {
    let usable = |v: Option<OsString>| {
        v.map(PathBuf::from)
            .filter(|p| !p.as_os_str().is_empty() && p.is_absolute())
    };
    let data = usable(xdg_data_home)
        .or_else(|| usable(home).map(|h| h.join(".local").join("share")))
        .ok_or(Error::NoDataDir)?;
    Ok(data.join("gantry").join("gantry.db"))
}

/// The durable store: one SQLite connection (see the crate documentation).
pub struct Store {
    /// The connection.
    pub(crate) conn: Connection,
    /// The database file.
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating it and its directory if needed) and migrates the database at `path`.
    ///
    /// Settings: WAL journal (readers never block the writer), `synchronous=FULL`, a busy timeout of
    /// [`BUSY_TIMEOUT`], foreign keys on. Why FULL and not NORMAL: under WAL, NORMAL syncs the log only
    /// at checkpoints, so a committed transaction survives a process crash but may be lost on power
    /// failure or an OS crash; FULL syncs the log at every commit, so when a mutation returns it is on
    /// stable storage and a submission may be acknowledged. Batch submissions to share one sync.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut conn = Connection::open(&path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Switching a new file to WAL while another process creates it too can answer "database is
        // locked" at once, without SQLite's busy handler: retry that for up to the busy timeout.
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(5);
        loop {
            match Self::prepare(&mut conn, &path) {
                Ok(()) => break,
                Err(Error::Sqlite(e))
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Store { conn, path })
    }

    /// WAL, durability settings and migrations on a fresh connection.
    fn prepare(conn: &mut Connection, path: &Path) -> Result<()> {
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::NotWal {
                path: path.to_path_buf(),
                mode,
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        schema::migrate(conn, schema::MIGRATIONS)?;
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        schema::version(&self.conn)
    }

    /// Runs `PRAGMA integrity_check`; an error lists what it found.
    pub fn integrity_check(&self) -> Result<()> {
        let mut st = self.conn.prepare("PRAGMA integrity_check")?;
        let lines: Vec<String> = st
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if lines == ["ok"] {
            Ok(())
        } else {
            Err(Error::Integrity(lines.join("; ")))
        }
    }

    /// Starts a write transaction that takes the write lock at once (waiting up to the busy timeout).
    pub(crate) fn write(&mut self) -> Result<Transaction<'_>> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    /// Stores a new workload (state pending) and its `submitted` event, durably, in one transaction.
    ///
    /// With an idempotency key already used by the same owner, returns the workload that key created
    /// and writes nothing, if the submission is the same (name, queue, priority, spec); a different
    /// submission under a used key is [`Error::IdempotencyMismatch`].
    pub fn submit(&mut self, new: &NewWorkload, actor: &str, now: UnixMillis) -> Result<Workload> {
        let tx = self.write()?;
        let w = submit_in(&tx, new, actor, now)?;
        tx.commit()?;
        Ok(w)
    }

    /// [`Store::submit`] for many workloads in one transaction (one sync to disk for all of them); all
    /// are stored or none.
    pub fn submit_batch(
        &mut self,
        batch: &[NewWorkload],
        actor: &str,
        now: UnixMillis,
    ) -> Result<Vec<Workload>> {
        let tx = self.write()?;
        let out = batch
            .iter()
            .map(|new| submit_in(&tx, new, actor, now))
            .collect::<Result<Vec<_>>>()?;
        tx.commit()?;
        Ok(out)
    }

    /// The workload `id`, if stored.
    pub fn get(&self, id: WorkloadId) -> Result<Option<Workload>> {
        get_in(&self.conn, id)
    }

    /// The workload `owner` submitted with idempotency key `key`, if any.
    pub fn get_by_key(&self, owner: &str, key: &str) -> Result<Option<Workload>> {
        let sql = format!(
            "SELECT {WORKLOAD_COLUMNS} FROM workloads WHERE owner = ?1 AND idempotency_key = ?2"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut rows = st.query(params![owner, key])?;
        rows.next()?.map(read_workload).transpose()
    }

    /// One page of workloads matching `q`'s filters, in id order.
    ///
    /// Each filter combination reads an index whose trailing column is the id (`INDEXED BY`, so the
    /// plan does not depend on statistics), so a page costs `O(limit + log n)`.
    pub fn list(&self, q: &ListQuery) -> Result<Page> {
        if q.limit == 0 || q.limit > MAX_PAGE_LIMIT {
            return Err(Error::invalid(
                "limit",
                format!("{} is not in 1..={MAX_PAGE_LIMIT}", q.limit),
            ));
        }
        let index = match (q.state.is_some(), q.queue.is_some(), q.owner.is_some()) {
            (true, _, true) => " INDEXED BY workloads_owner_state",
            (true, true, false) => " INDEXED BY workloads_queue_state",
            (false, _, true) => " INDEXED BY workloads_owner",
            (false, true, false) => " INDEXED BY workloads_queue",
            (true, false, false) => " INDEXED BY workloads_state",
            (false, false, false) => "",
        };
        let mut sql = format!("SELECT {WORKLOAD_COLUMNS} FROM workloads{index} WHERE 1");
        let mut args: Vec<Value> = Vec::new();
        if let Some(s) = q.state {
            sql.push_str(" AND state = ?");
            args.push(Value::Text(s.as_str().to_string()));
        }
        if let Some(queue) = &q.queue {
            sql.push_str(" AND queue = ?");
            args.push(Value::Text(queue.clone()));
        }
        if let Some(owner) = &q.owner {
            sql.push_str(" AND owner = ?");
            args.push(Value::Text(owner.clone()));
        }
        let (cmp, dir) = match q.order {
            Order::NewestFirst => ("<", "DESC"),
            Order::OldestFirst => (">", "ASC"),
        };
        if let Some(after) = q.after {
            sql.push_str(&format!(" AND id {cmp} ?"));
            args.push(Value::Integer(after.raw()));
        }
        sql.push_str(&format!(" ORDER BY id {dir} LIMIT ?"));
        args.push(Value::Integer(i64::from(q.limit) + 1));
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut items = st
            .query_and_then(rusqlite::params_from_iter(args), read_workload)?
            .collect::<Result<Vec<_>>>()?;
        let more = items.len() > q.limit as usize;
        items.truncate(q.limit as usize);
        let next = if more {
            items.last().map(|w| w.id)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Moves workload `id` from `from` to `change.to` if it is in `from` (compare-and-set), with its
    /// event, in one transaction. Otherwise [`Error::Conflict`] (another state),
    /// [`Error::IllegalTransition`] (see [`WorkloadState::can_become`]) or [`Error::NotFound`].
    ///
    /// Entering running counts an attempt and sets `started_at`; entering a finished state sets
    /// `finished_at`; going back to pending clears the assignment, exit code and run times. The reason
    /// replaces the previous one; an assignment or exit code is kept unless a new one is given.
    pub fn transition(
        &mut self,
        id: WorkloadId,
        from: WorkloadState,
        change: Transition,
        actor: &str,
        now: UnixMillis,
    ) -> Result<Workload> {
        let tx = self.write()?;
        let w = transition_in(&tx, id, from, &change, actor, now)?;
        tx.commit()?;
        Ok(w)
    }

    /// Many compare-and-set transitions in one transaction (one sync to disk). Each request's own
    /// outcome (the workload, or its conflict, illegal transition or not-found error) is in the returned
    /// list, in order; the successful ones are committed. A database failure fails the whole batch.
    pub fn transition_many(
        &mut self,
        requests: &[TransitionRequest],
        actor: &str,
        now: UnixMillis,
    ) -> Result<Vec<Result<Workload>>> {
        let tx = self.write()?;
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            match transition_in(&tx, r.id, r.from, &r.change, actor, now) {
                Err(Error::Sqlite(e)) => return Err(Error::Sqlite(e)),
                other => out.push(other),
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Deletes a finished workload (for its TTL) and records a `deleted` event; its events stay.
    pub fn delete_finished(&mut self, id: WorkloadId, actor: &str, now: UnixMillis) -> Result<()> {
        let tx = self.write()?;
        let w = get_in(&tx, id)?.ok_or_else(|| not_found(id))?;
        if !w.state.is_finished() {
            return Err(Error::NotFinished { id, state: w.state });
        }
        tx.execute("DELETE FROM workloads WHERE id = ?1", [id.raw()])?;
        insert_event(
            &tx,
            &EventRow {
                workload: Some(id),
                actor,
                action: actions::DELETED,
                from: Some(w.state),
                ..EventRow::default()
            },
            now,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Workloads holding devices (scheduled or running), oldest first: what a restarted server must
    /// find again or mark lost.
    pub fn running(&self) -> Result<Vec<Workload>> {
        let sql = format!(
            "SELECT {WORKLOAD_COLUMNS} FROM workloads INDEXED BY workloads_state \
             WHERE state IN ('scheduled', 'running') ORDER BY id"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        st.query_and_then([], read_workload)?.collect()
    }

    /// How many workloads each queue has in each state (only non-zero counts), by queue then state.
    pub fn counts_by_state_and_queue(&self) -> Result<Vec<StateQueueCount>> {
        let mut st = self.conn.prepare_cached(
            "SELECT queue, state, count(*) FROM workloads INDEXED BY workloads_queue_state \
             GROUP BY queue, state",
        )?;
        let mut out = st
            .query_and_then([], |r| {
                let count: i64 = r.get(2)?;
                Ok(StateQueueCount {
                    queue: r.get(0)?,
                    state: parse_state(&r.get::<_, String>(1)?)?,
                    count: u64::try_from(count).unwrap_or(0),
                })
            })?
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| (&a.queue, a.state).cmp(&(&b.queue, b.state)));
        Ok(out)
    }

    /// The events of workload `id`, oldest first.
    pub fn events(&self, id: WorkloadId) -> Result<Vec<Event>> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE workload_id = ?1 ORDER BY seq");
        let mut st = self.conn.prepare_cached(&sql)?;
        st.query_and_then([id.raw()], read_event)?.collect()
    }

    /// The `transition` events into or out of `running` of the workloads with ids in
    /// `first..=last`, by workload then oldest first: one range scan of the `events_running` index.
    pub fn running_transitions(&self, first: WorkloadId, last: WorkloadId) -> Result<Vec<Event>> {
        // The literals match the partial index's WHERE clause term for term, so SQLite uses it.
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE {RUNNING_TRANSITIONS}");
        let mut st = self.conn.prepare_cached(&sql)?;
        st.query_and_then([first.raw(), last.raw()], read_event)?
            .collect()
    }

    /// Up to `limit` events of the whole audit log after position `after` (0 = from the start).
    pub fn audit_log(&self, after: i64, limit: u32) -> Result<Vec<Event>> {
        let sql =
            format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2");
        let mut st = self.conn.prepare_cached(&sql)?;
        st.query_and_then(params![after, i64::from(limit)], read_event)?
            .collect()
    }

    /// Appends an audit event that concerns no workload (e.g. a refused request); returns it.
    pub fn record(
        &mut self,
        actor: &str,
        action: &str,
        subject: Option<&str>,
        reason: Option<&str>,
        now: UnixMillis,
    ) -> Result<Event> {
        let tx = self.write()?;
        let row = EventRow {
            actor,
            action,
            subject,
            reason,
            ..EventRow::default()
        };
        let seq = insert_event(&tx, &row, now)?;
        tx.commit()?;
        Ok(row.into_event(seq, now))
    }
}

/// An event to append.
#[derive(Default)]
pub(crate) struct EventRow<'a> {
    /// The workload.
    pub workload: Option<WorkloadId>,
    /// Another subject.
    pub subject: Option<&'a str>,
    /// Who.
    pub actor: &'a str,
    /// What.
    pub action: &'a str,
    /// State before.
    pub from: Option<WorkloadState>,
    /// State after.
    pub to: Option<WorkloadState>,
    /// Why.
    pub reason: Option<&'a str>,
}

impl EventRow<'_> {
    /// The stored event.
    fn into_event(self, seq: i64, at: UnixMillis) -> Event {
        Event {
            seq,
            workload: self.workload,
            subject: self.subject.map(str::to_string),
            actor: self.actor.to_string(),
            action: self.action.to_string(),
            from_state: self.from,
            to_state: self.to,
            reason: self.reason.map(str::to_string),
            at,
        }
    }
}

/// Appends `e` at time `at`; returns its sequence number.
pub(crate) fn insert_event(conn: &Connection, e: &EventRow<'_>, at: UnixMillis) -> Result<i64> {
    let mut st = conn.prepare_cached(
        "INSERT INTO events (workload_id, subject, actor, action, from_state, to_state, reason, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    st.execute(params![
        e.workload.map(WorkloadId::raw),
        e.subject,
        e.actor,
        e.action,
        e.from.map(WorkloadState::as_str),
        e.to.map(WorkloadState::as_str),
        e.reason,
        at
    ])?;
    Ok(conn.last_insert_rowid())
}

/// A not-found error for workload `id`.
fn not_found(id: WorkloadId) -> Error {
    Error::NotFound {
        what: "workload",
        id: id.to_string(),
    }
}

/// Encodes `v` as JSON text.
fn to_json<T: serde::Serialize>(what: &'static str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|source| Error::Encode { what, source })
}

/// Parses a stored state name.
fn parse_state(s: &str) -> Result<WorkloadState> {
    s.parse()
        .map_err(|_| Error::Corrupt(format!("unknown workload state {s:?}")))
}

/// [`Store::get`] inside a transaction or on the connection.
fn get_in(conn: &Connection, id: WorkloadId) -> Result<Option<Workload>> {
    let sql = format!("SELECT {WORKLOAD_COLUMNS} FROM workloads WHERE id = ?1");
    let mut st = conn.prepare_cached(&sql)?;
    let mut rows = st.query([id.raw()])?;
    rows.next()?.map(read_workload).transpose()
}

/// [`Store::submit`] inside a transaction.
fn submit_in(tx: &Connection, new: &NewWorkload, actor: &str, now: UnixMillis) -> Result<Workload> {
    for (field, v) in [
        ("name", &new.name),
        ("owner", &new.owner),
        ("queue", &new.queue),
    ] {
        if v.is_empty() {
            return Err(Error::invalid(field, "must not be empty"));
        }
    }
    let spec = to_json("spec", &new.spec)?;
    if let Some(key) = &new.idempotency_key {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(Error::invalid(
                "idempotencyKey",
                format!("must be 1 to {MAX_KEY_LEN} bytes"),
            ));
        }
        let mut st = tx.prepare_cached(
            "SELECT id, name, queue, priority, spec FROM workloads \
             WHERE owner = ?1 AND idempotency_key = ?2",
        )?;
        let found = st
            .query_row(params![new.owner, key], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .optional()?;
        if let Some((raw, name, queue, priority, stored_spec)) = found {
            let existing = WorkloadId::from_raw(raw)
                .ok_or_else(|| Error::Corrupt(format!("workload id {raw}")))?;
            if name != new.name
                || queue != new.queue
                || priority != new.priority
                || stored_spec != spec
            {
                return Err(Error::IdempotencyMismatch {
                    key: key.clone(),
                    existing,
                });
            }
            return get_in(tx, existing)?.ok_or_else(|| not_found(existing));
        }
    }
    let mut st = tx.prepare_cached(
        "INSERT INTO workloads (name, owner, queue, priority, state, spec, submitted_at, updated_at, \
         idempotency_key) VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?6, ?7)",
    )?;
    st.execute(params![
        new.name,
        new.owner,
        new.queue,
        new.priority,
        spec,
        now,
        new.idempotency_key
    ])?;
    let raw = tx.last_insert_rowid();
    let id = WorkloadId::from_raw(raw).ok_or_else(|| Error::Corrupt(format!("rowid {raw}")))?;
    insert_event(
        tx,
        &EventRow {
            workload: Some(id),
            actor,
            action: actions::SUBMITTED,
            to: Some(WorkloadState::Pending),
            ..EventRow::default()
        },
        now,
    )?;
    Ok(Workload {
        id,
        name: new.name.clone(),
        owner: new.owner.clone(),
        queue: new.queue.clone(),
        priority: new.priority,
        state: WorkloadState::Pending,
        spec: new.spec.clone(),
        assignment: None,
        attempts: 0,
        exit_code: None,
        reason: None,
        submitted_at: now,
        started_at: None,
        finished_at: None,
        updated_at: now,
        idempotency_key: new.idempotency_key.clone(),
    })
}

/// [`Store::transition`] inside a transaction.
fn transition_in(
    tx: &Connection,
    id: WorkloadId,
    from: WorkloadState,
    change: &Transition,
    actor: &str,
    now: UnixMillis,
) -> Result<Workload> {
    let mut w = get_in(tx, id)?.ok_or_else(|| not_found(id))?;
    if w.state != from {
        return Err(Error::Conflict {
            id,
            expected: from,
            actual: w.state,
        });
    }
    let to = change.to;
    if !from.can_become(to) {
        return Err(Error::IllegalTransition { id, from, to });
    }
    w.state = to;
    w.reason.clone_from(&change.reason);
    w.updated_at = now;
    if let Some(a) = &change.assignment {
        w.assignment = Some(a.clone());
    }
    if let Some(c) = change.exit_code {
        w.exit_code = Some(c);
    }
    match to {
        WorkloadState::Pending => {
            w.assignment = None;
            w.exit_code = None;
            w.started_at = None;
            w.finished_at = None;
        }
        WorkloadState::Running => {
            w.attempts = w.attempts.saturating_add(1);
            w.started_at = Some(now);
        }
        s if s.is_finished() => w.finished_at = Some(now),
        _ => {}
    }
    let assignment = w
        .assignment
        .as_ref()
        .map(|a: &Assignment| to_json("assignment", a))
        .transpose()?;
    let mut st = tx.prepare_cached(
        "UPDATE workloads SET state = ?3, reason = ?4, assignment = ?5, exit_code = ?6, \
         attempts = ?7, started_at = ?8, finished_at = ?9, updated_at = ?10 \
         WHERE id = ?1 AND state = ?2",
    )?;
    let changed = st.execute(params![
        id.raw(),
        from.as_str(),
        to.as_str(),
        w.reason,
        assignment,
        w.exit_code,
        i64::from(w.attempts),
        w.started_at,
        w.finished_at,
        now
    ])?;
    if changed != 1 {
        // Unreachable inside an IMMEDIATE transaction; kept as the compare-and-set guard itself.
        return Err(Error::Conflict {
            id,
            expected: from,
            actual: get_in(tx, id)?.map_or(from, |w| w.state),
        });
    }
    insert_event(
        tx,
        &EventRow {
            workload: Some(id),
            actor,
            action: actions::TRANSITION,
            from: Some(from),
            to: Some(to),
            reason: change.reason.as_deref(),
            ..EventRow::default()
        },
        now,
    )?;
    Ok(w)
}

/// Reads a row selected with [`WORKLOAD_COLUMNS`].
fn read_workload(r: &Row<'_>) -> Result<Workload> {
    let raw: i64 = r.get(0)?;
    let id =
        WorkloadId::from_raw(raw).ok_or_else(|| Error::Corrupt(format!("workload id {raw}")))?;
    let corrupt =
        |what: &str, e: &dyn std::fmt::Display| Error::Corrupt(format!("{id} {what}: {e}"));
    let spec: String = r.get(6)?;
    let assignment: Option<String> = r.get(7)?;
    let attempts: i64 = r.get(8)?;
    let exit_code: Option<i64> = r.get(9)?;
    Ok(Workload {
        id,
        name: r.get(1)?,
        owner: r.get(2)?,
        queue: r.get(3)?,
        priority: r.get(4)?,
        state: parse_state(&r.get::<_, String>(5)?)?,
        spec: serde_json::from_str(&spec).map_err(|e| corrupt("spec", &e))?,
        assignment: assignment
            .map(|a| serde_json::from_str(&a))
            .transpose()
            .map_err(|e| corrupt("assignment", &e))?,
        attempts: u32::try_from(attempts).map_err(|e| corrupt("attempts", &e))?,
        exit_code: exit_code
            .map(i32::try_from)
            .transpose()
            .map_err(|e| corrupt("exit code", &e))?,
        reason: r.get(10)?,
        submitted_at: r.get(11)?,
        started_at: r.get(12)?,
        finished_at: r.get(13)?,
        updated_at: r.get(14)?,
        idempotency_key: r.get(15)?,
    })
}

/// Reads a row selected with [`EVENT_COLUMNS`].
fn read_event(r: &Row<'_>) -> Result<Event> {
    let state = |i: usize| -> Result<Option<WorkloadState>> {
        r.get::<_, Option<String>>(i)?
            .map(|s| parse_state(&s))
            .transpose()
    };
    let workload: Option<i64> = r.get(1)?;
    Ok(Event {
        seq: r.get(0)?,
        workload: workload.and_then(WorkloadId::from_raw),
        subject: r.get(2)?,
        actor: r.get(3)?,
        action: r.get(4)?,
        from_state: state(5)?,
        to_state: state(6)?,
        reason: r.get(7)?,
        at: r.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_settings_are_durable() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().join("s.db")).unwrap();
        let get = |p: &str| -> i64 { s.conn.pragma_query_value(None, p, |r| r.get(0)).unwrap() };
        assert_eq!(get("synchronous"), 2, "FULL");
        assert_eq!(get("foreign_keys"), 1);
        assert_eq!(get("busy_timeout"), 10_000);
        let mode: String = s
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn running_transitions_reads_only_runs_of_the_range_from_the_index() {
        use gantry_core::spec::WorkloadSpec;
        use {Transition as T, WorkloadState as S};
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path().join("s.db")).unwrap();
        let spec: WorkloadSpec = serde_json::from_value(serde_json::json!({
            "name": "t", "kind": "training", "queue": "q",
            "resources": {"cpu": "1", "memory": "1Gi", "gpu": {"count": 1}},
            "run": {"command": ["true"]}
        }))
        .unwrap();
        let new = NewWorkload::from_spec(spec, "alice", 100);
        let ids: Vec<WorkloadId> = (0..3)
            .map(|i| s.submit(&new, "alice", i).unwrap().id)
            .collect();
        let steps = [
            (S::Pending, S::Scheduled),
            (S::Scheduled, S::Running),
            (S::Running, S::Failed),
            (S::Failed, S::Pending),
            (S::Pending, S::Scheduled),
            (S::Scheduled, S::Running),
            (S::Running, S::Succeeded),
        ];
        for (n, (from, to)) in steps.into_iter().enumerate() {
            for (k, &id) in [ids[0], ids[2]].iter().enumerate() {
                let at = 100 * n as i64 + k as i64;
                s.transition(id, from, T::to(to), "executor", at).unwrap();
            }
        }
        let got = s.running_transitions(ids[0], ids[1]).unwrap();
        let seen: Vec<_> = got
            .iter()
            .map(|e| (e.workload, e.from_state, e.to_state, e.at))
            .collect();
        let w = Some(ids[0]);
        assert_eq!(
            seen,
            vec![
                (w, Some(S::Scheduled), Some(S::Running), 100),
                (w, Some(S::Running), Some(S::Failed), 200),
                (w, Some(S::Scheduled), Some(S::Running), 500),
                (w, Some(S::Running), Some(S::Succeeded), 600),
            ]
        );
        assert_eq!(s.running_transitions(ids[1], ids[2]).unwrap().len(), 4);
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT {EVENT_COLUMNS} FROM events WHERE {RUNNING_TRANSITIONS}"
        );
        let mut st = s.conn.prepare(&sql).unwrap();
        let plan: Vec<String> = st
            .query_map([1, 2], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let plan = plan.join("; ");
        assert!(plan.contains("USING INDEX events_running"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
    }
}
