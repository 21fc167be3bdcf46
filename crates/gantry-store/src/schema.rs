//! Schema migrations: a numbered list, each applied once in its own transaction and recorded in
//! `PRAGMA user_version` (which SQLite keeps in the database header and changes transactionally).
//!
//! Add a migration by appending to [`MIGRATIONS`]; never edit one that has shipped.

use crate::error::{Error, Result};
use rusqlite::{Connection, TransactionBehavior};

/// The migrations, in order: `MIGRATIONS[i]` brings the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[V1, crate::samples::MIGRATION, crate::budgets::MIGRATION];

/// The schema version this binary writes (the number of migrations).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Version 1: workloads, events (append-only), queues, settings, tokens.
const V1: &str = r#"
CREATE TABLE workloads (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT    NOT NULL,
    owner           TEXT    NOT NULL,
    queue           TEXT    NOT NULL,
    priority        INTEGER NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'admitted', 'scheduled', 'running',
                        'succeeded', 'failed', 'cancelled', 'preempted', 'lost')),
    spec            TEXT    NOT NULL CHECK (json_valid(spec)),
    assignment      TEXT    CHECK (assignment IS NULL OR json_valid(assignment)),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    exit_code       INTEGER,
    reason          TEXT,
    submitted_at    INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    updated_at      INTEGER NOT NULL,
    idempotency_key TEXT
) STRICT;
-- A key identifies one submission of one owner.
CREATE UNIQUE INDEX workloads_idempotency ON workloads (owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Listing: each filter combination has an index whose equality columns are followed by the rowid,
-- so a page is a range scan in id order (no sort), whatever the table's size.
CREATE INDEX workloads_state ON workloads (state);
CREATE INDEX workloads_queue ON workloads (queue);
CREATE INDEX workloads_owner ON workloads (owner);
CREATE INDEX workloads_queue_state ON workloads (queue, state);
CREATE INDEX workloads_owner_state ON workloads (owner, state);

-- The audit log. No foreign key to workloads: the log outlives deleted workloads.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    workload_id INTEGER,
    subject     TEXT,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    from_state  TEXT,
    to_state    TEXT,
    reason      TEXT,
    at          INTEGER NOT NULL
) STRICT;
CREATE INDEX events_workload ON events (workload_id) WHERE workload_id IS NOT NULL;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: UPDATE refused');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: DELETE refused');
END;

CREATE TABLE queues (
    name            TEXT PRIMARY KEY NOT NULL,
    cohort          TEXT,
    weight          REAL NOT NULL CHECK (weight > 0),
    guaranteed      TEXT NOT NULL CHECK (json_valid(guaranteed)),
    borrowing_limit TEXT CHECK (borrowing_limit IS NULL OR json_valid(borrowing_limit)),
    budget          REAL CHECK (budget IS NULL OR budget >= 0)
) STRICT;

CREATE TABLE settings (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    role       TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'submitter', 'viewer')),
    hash       BLOB    NOT NULL CHECK (length(hash) = 32),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;
"#;

/// The database's schema version (`PRAGMA user_version`).
pub(crate) fn version(conn: &Connection) -> Result<i64> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Brings the database up to `migrations.len()`: each missing migration in its own `IMMEDIATE`
/// transaction that re-reads the version first, so concurrent openers apply each migration once.
/// A database newer than `migrations` is refused with [`Error::SchemaTooNew`].
pub(crate) fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<i64> {
    let supported = migrations.len() as i64;
    loop {
        let found = version(conn)?;
        if found > supported {
            return Err(Error::SchemaTooNew { found, supported });
        }
        if found == supported {
            return Ok(found);
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = version(&tx)?;
        if current != found {
            continue; // another process migrated meanwhile; look again
        }
        let next = current + 1;
        let sql = usize::try_from(current)
            .ok()
            .and_then(|i| migrations.get(i))
            .ok_or(Error::SchemaTooNew {
                found: current,
                supported,
            })?;
        tx.execute_batch(sql)
            .and_then(|()| tx.pragma_update(None, "user_version", next))
            .and_then(|()| tx.commit())
            .map_err(|source| Error::Migration {
                version: next,
                source,
            })?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("m.db")).unwrap();
        (dir, conn)
    }

    fn tables(conn: &Connection) -> Vec<String> {
        let mut st = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn applies_each_migration_once_and_records_the_version() {
        let (_dir, mut conn) = conn();
        let v2 = "CREATE TABLE extra (x INTEGER) STRICT;";
        assert_eq!(migrate(&mut conn, &[V1]).unwrap(), 1);
        // Idempotent: a second run applies nothing (CREATE TABLE again would fail).
        assert_eq!(migrate(&mut conn, &[V1]).unwrap(), 1);
        // A new binary applies only the new migration.
        assert_eq!(migrate(&mut conn, &[V1, v2]).unwrap(), 2);
        assert!(tables(&conn).contains(&"extra".to_string()));
        assert_eq!(migrate(&mut conn, &[V1, v2]).unwrap(), 2);
        // The old binary refuses the newer database.
        match migrate(&mut conn, &[V1]) {
            Err(Error::SchemaTooNew {
                found: 2,
                supported: 1,
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failing_migration_changes_nothing() {
        let (_dir, mut conn) = conn();
        migrate(&mut conn, &[V1]).unwrap();
        let broken = "CREATE TABLE half (x INTEGER); SELECT no_such_function();";
        match migrate(&mut conn, &[V1, broken]) {
            Err(Error::Migration { version: 2, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(version(&conn).unwrap(), 1);
        assert!(!tables(&conn).contains(&"half".to_string()));
    }
}
