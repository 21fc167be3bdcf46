//! The store's behaviour on real database files.

use gantry_core::spec::{Quota, WorkloadSpec};
use gantry_store::{
    AssignedGpu, Assignment, Error, ListQuery, MigSlice, NewWorkload, Order, Queue,
    ReplicaAssignment, Role, SCHEMA_VERSION, Store, Transition, TransitionRequest, WorkloadId,
    WorkloadState, actions, default_path_from,
};
use std::collections::BTreeSet;

/// A spec with a name, a queue and two GPUs.
fn spec(name: &str, queue: &str) -> WorkloadSpec {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "kind": "training",
        "queue": queue,
        "resources": {"cpu": "4", "memory": "16Gi", "gpu": {"count": 2, "models": ["H100-80GB"]}},
        "timeout": "2h",
        "run": {"command": ["python", "train.py"], "env": {"EPOCHS": "3"}}
    }))
    .unwrap()
}

/// A submission of `spec(name, queue)` by `owner`.
fn new(name: &str, owner: &str, queue: &str) -> NewWorkload {
    NewWorkload::from_spec(spec(name, queue), owner, 100)
}

/// A fresh store in a temporary directory.
fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("sub/dir/gantry.db")).unwrap();
    (dir, s)
}

/// A two-GPU assignment on node `n1`.
fn assignment() -> Assignment {
    Assignment {
        replicas: vec![ReplicaAssignment {
            node: "n1".into(),
            gpus: vec![
                AssignedGpu {
                    index: 0,
                    uuid: Some("GPU-aaaa".into()),
                    ..AssignedGpu::default()
                },
                AssignedGpu {
                    index: 1,
                    uuid: Some("GPU-bbbb".into()),
                    milli: Some(500),
                    mig: Some(MigSlice {
                        profile: "3g.40gb".into(),
                        start: 4,
                        uuid: Some("MIG-cccc".into()),
                    }),
                },
            ],
        }],
    }
}

#[test]
fn opens_in_wal_mode_with_the_current_schema() {
    let (dir, s) = store();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    s.integrity_check().unwrap();
    drop(s);
    let conn = rusqlite::Connection::open(dir.path().join("sub/dir/gantry.db")).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal", "WAL is recorded in the file itself");
}

#[test]
fn reopening_is_idempotent_and_a_newer_schema_is_refused() {
    let (dir, mut s) = store();
    let path = dir.path().join("sub/dir/gantry.db");
    let w = s.submit(&new("a", "alice", "default"), "alice", 1).unwrap();
    drop(s);
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(s.get(w.id).unwrap().unwrap(), w);
    drop(s);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(err, Error::SchemaTooNew { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn default_path_follows_xdg_then_home() {
    let p = default_path_from(Some("/data".into()), Some("/home/u".into())).unwrap();
    assert_eq!(p, std::path::Path::new("/data/gantry/gantry.db"));
    let p = default_path_from(Some("relative".into()), Some("/home/u".into())).unwrap();
    assert_eq!(
        p,
        std::path::Path::new("/home/u/.local/share/gantry/gantry.db")
    );
    let p = default_path_from(Some("".into()), Some("/home/u".into())).unwrap();
    assert_eq!(
        p,
        std::path::Path::new("/home/u/.local/share/gantry/gantry.db")
    );
    assert!(matches!(
        default_path_from(None, None),
        Err(Error::NoDataDir)
    ));
}

#[test]
fn submit_get_and_events_round_trip() {
    let (_dir, mut s) = store();
    let w = s
        .submit(&new("train", "alice", "research"), "alice", 1_000)
        .unwrap();
    assert_eq!(w.id.to_string(), "wl-1");
    assert_eq!(w.state, WorkloadState::Pending);
    assert_eq!(w.queue, "research");
    assert_eq!(w.submitted_at, 1_000);
    assert_eq!(s.get(w.id).unwrap().unwrap(), w);
    assert_eq!(s.get(WorkloadId::from_raw(99).unwrap()).unwrap(), None);
    let w2 = s.submit(&new("b", "bob", "default"), "bob", 1_001).unwrap();
    assert!(w2.id > w.id);

    let w = s
        .transition(
            w.id,
            WorkloadState::Pending,
            Transition::to(WorkloadState::Scheduled)
                .reason("placed on n1")
                .assignment(assignment()),
            "scheduler",
            2_000,
        )
        .unwrap();
    assert_eq!(w.assignment, Some(assignment()));
    let w = s
        .transition(
            w.id,
            WorkloadState::Scheduled,
            Transition::to(WorkloadState::Running),
            "executor",
            3_000,
        )
        .unwrap();
    assert_eq!((w.attempts, w.started_at), (1, Some(3_000)));
    let w = s
        .transition(
            w.id,
            WorkloadState::Running,
            Transition::to(WorkloadState::Failed)
                .exit_code(3)
                .reason("exit 3"),
            "executor",
            4_000,
        )
        .unwrap();
    assert_eq!((w.exit_code, w.finished_at), (Some(3), Some(4_000)));
    assert_eq!(w.assignment, Some(assignment()), "kept for the record");
    assert_eq!(s.get(w.id).unwrap().unwrap(), w);

    // Retry: back to pending clears the run.
    let w = s
        .transition(
            w.id,
            WorkloadState::Failed,
            Transition::to(WorkloadState::Pending).reason("retry 1 of 2"),
            "executor",
            5_000,
        )
        .unwrap();
    assert_eq!(
        (
            w.assignment.clone(),
            w.exit_code,
            w.started_at,
            w.finished_at,
            w.attempts
        ),
        (None, None, None, None, 1)
    );
    assert_eq!(s.get(w.id).unwrap().unwrap(), w);

    let ev = s.events(w.id).unwrap();
    let steps: Vec<_> = ev
        .iter()
        .map(|e| {
            (
                e.action.as_str(),
                e.from_state,
                e.to_state,
                e.actor.as_str(),
                e.at,
            )
        })
        .collect();
    use WorkloadState::*;
    assert_eq!(
        steps,
        vec![
            (actions::SUBMITTED, None, Some(Pending), "alice", 1_000),
            (
                actions::TRANSITION,
                Some(Pending),
                Some(Scheduled),
                "scheduler",
                2_000
            ),
            (
                actions::TRANSITION,
                Some(Scheduled),
                Some(Running),
                "executor",
                3_000
            ),
            (
                actions::TRANSITION,
                Some(Running),
                Some(Failed),
                "executor",
                4_000
            ),
            (
                actions::TRANSITION,
                Some(Failed),
                Some(Pending),
                "executor",
                5_000
            ),
        ]
    );
    assert_eq!(ev[3].reason.as_deref(), Some("exit 3"));
    assert!(ev.iter().all(|e| e.workload == Some(w.id)));
    assert_eq!(s.audit_log(0, 100).unwrap().len(), 6);
    let after_first = s.audit_log(ev[0].seq, 100).unwrap();
    assert_eq!(after_first.len(), 5);
    assert_eq!(
        after_first[0].workload,
        Some(w2.id),
        "wl-2's submission came second"
    );
    assert_eq!(s.audit_log(ev[0].seq, 2).unwrap().len(), 2);

    // JSON of the stored workload keeps the spec's camelCase form.
    let json = serde_json::to_value(s.get(w.id).unwrap().unwrap()).unwrap();
    assert_eq!(json["id"], "wl-1");
    assert_eq!(json["spec"]["resources"]["gpu"]["count"], 2);
    assert_eq!(json["submittedAt"], 1_000);
}

#[test]
fn transition_is_compare_and_set() {
    let (_dir, mut s) = store();
    let w = s.submit(&new("a", "alice", "q"), "alice", 1).unwrap();
    s.transition(
        w.id,
        WorkloadState::Pending,
        Transition::to(WorkloadState::Admitted),
        "sched",
        2,
    )
    .unwrap();
    // A second writer that still believes it is pending loses, and nothing changes.
    let err = s
        .transition(
            w.id,
            WorkloadState::Pending,
            Transition::to(WorkloadState::Cancelled),
            "bob",
            3,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict { id, expected: WorkloadState::Pending, actual: WorkloadState::Admitted } if id == w.id
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "workload wl-1 is admitted, not pending");
    assert_eq!(s.get(w.id).unwrap().unwrap().state, WorkloadState::Admitted);
    assert_eq!(s.events(w.id).unwrap().len(), 2);

    // Lifecycle rules.
    let err = s
        .transition(
            w.id,
            WorkloadState::Admitted,
            Transition::to(WorkloadState::Succeeded),
            "x",
            4,
        )
        .unwrap_err();
    assert!(matches!(err, Error::IllegalTransition { .. }), "{err:?}");
    // Unknown id.
    let missing = WorkloadId::from_raw(1000).unwrap();
    let err = s
        .transition(
            missing,
            WorkloadState::Pending,
            Transition::to(WorkloadState::Admitted),
            "x",
            4,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                what: "workload",
                ..
            }
        ),
        "{err:?}"
    );

    // Batch: per-item outcomes, successes committed.
    let b = s.submit(&new("b", "alice", "q"), "alice", 5).unwrap();
    let out = s
        .transition_many(
            &[
                TransitionRequest {
                    id: w.id,
                    from: WorkloadState::Admitted,
                    change: Transition::to(WorkloadState::Scheduled).assignment(assignment()),
                },
                TransitionRequest {
                    id: b.id,
                    from: WorkloadState::Running,
                    change: Transition::to(WorkloadState::Succeeded),
                },
                TransitionRequest {
                    id: b.id,
                    from: WorkloadState::Pending,
                    change: Transition::to(WorkloadState::Cancelled).reason("user"),
                },
            ],
            "sched",
            6,
        )
        .unwrap();
    assert_eq!(out[0].as_ref().unwrap().state, WorkloadState::Scheduled);
    assert!(matches!(out[1], Err(Error::Conflict { .. })));
    assert_eq!(out[2].as_ref().unwrap().state, WorkloadState::Cancelled);
    assert_eq!(s.get(b.id).unwrap().unwrap().finished_at, Some(6));
    let running: Vec<_> = s.running().unwrap().into_iter().map(|w| w.id).collect();
    assert_eq!(running, vec![w.id]);
}

#[test]
fn submit_is_idempotent_by_owner_and_key() {
    let (_dir, mut s) = store();
    let first = s
        .submit(&new("a", "alice", "q").with_key("k1"), "alice", 1)
        .unwrap();
    let again = s
        .submit(&new("a", "alice", "q").with_key("k1"), "alice", 2)
        .unwrap();
    assert_eq!(again, first, "same workload, same submission time");
    assert_eq!(s.events(first.id).unwrap().len(), 1, "one submitted event");
    assert_eq!(s.get_by_key("alice", "k1").unwrap().unwrap(), first);
    // The same key from another owner is another submission.
    let bob = s
        .submit(&new("a", "bob", "q").with_key("k1"), "bob", 3)
        .unwrap();
    assert_ne!(bob.id, first.id);
    // A different submission under a used key is refused.
    let err = s
        .submit(&new("other", "alice", "q").with_key("k1"), "alice", 4)
        .unwrap_err();
    assert!(
        matches!(&err, Error::IdempotencyMismatch { existing, .. } if *existing == first.id),
        "{err:?}"
    );
    // In one batch, a repeated key yields the same workload.
    let out = s
        .submit_batch(
            &[
                new("c", "carol", "q").with_key("x"),
                new("c", "carol", "q").with_key("x"),
                new("d", "carol", "q"),
            ],
            "carol",
            5,
        )
        .unwrap();
    assert_eq!(out[0], out[1]);
    assert_ne!(out[0].id, out[2].id);
    // A failing batch stores nothing.
    let before = s.audit_log(0, 1000).unwrap().len();
    let err = s
        .submit_batch(&[new("e", "dave", "q"), new("", "dave", "q")], "dave", 6)
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { field: "name", .. }),
        "{err:?}"
    );
    assert_eq!(s.audit_log(0, 1000).unwrap().len(), before);
    let page = s
        .list(&ListQuery {
            owner: Some("dave".into()),
            ..ListQuery::default()
        })
        .unwrap();
    assert!(page.items.is_empty());
    // Bad keys.
    assert!(
        s.submit(&new("a", "alice", "q").with_key(""), "alice", 7)
            .is_err()
    );
    assert!(
        s.submit(
            &new("a", "alice", "q").with_key("k".repeat(257)),
            "alice",
            7
        )
        .is_err()
    );
}

#[test]
fn concurrent_submits_with_one_key_store_one_workload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    Store::open(&path).unwrap();
    let ids: Vec<WorkloadId> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let path = &path;
                scope.spawn(move || {
                    let mut s = Store::open(path).unwrap();
                    (0..20)
                        .map(|i| {
                            s.submit(
                                &new("same", "alice", "q").with_key(format!("k{i}")),
                                "alice",
                                t,
                            )
                            .unwrap()
                            .id
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let distinct: BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 20, "one workload per key");
    let s = Store::open(&path).unwrap();
    let all = s
        .list(&ListQuery {
            limit: 1000,
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(all.items.len(), 20);
    assert_eq!(s.audit_log(0, 1000).unwrap().len(), 20);
}

#[test]
fn events_are_append_only() {
    let (dir, mut s) = store();
    let w = s.submit(&new("a", "alice", "q"), "alice", 1).unwrap();
    drop(s);
    let conn = rusqlite::Connection::open(dir.path().join("sub/dir/gantry.db")).unwrap();
    let upd = conn
        .execute("UPDATE events SET actor = 'mallory'", [])
        .unwrap_err();
    assert!(upd.to_string().contains("append-only"), "{upd}");
    let del = conn.execute("DELETE FROM events", []).unwrap_err();
    assert!(del.to_string().contains("append-only"), "{del}");
    drop(conn);
    let mut s = Store::open(dir.path().join("sub/dir/gantry.db")).unwrap();
    assert_eq!(s.events(w.id).unwrap()[0].actor, "alice");

    // Deleting a finished workload keeps its history.
    assert!(matches!(
        s.delete_finished(w.id, "ttl", 2),
        Err(Error::NotFinished { .. })
    ));
    s.transition(
        w.id,
        WorkloadState::Pending,
        Transition::to(WorkloadState::Cancelled),
        "alice",
        3,
    )
    .unwrap();
    s.delete_finished(w.id, "ttl", 4).unwrap();
    assert_eq!(s.get(w.id).unwrap(), None);
    let ev = s.events(w.id).unwrap();
    assert_eq!(ev.len(), 3);
    assert_eq!(ev[2].action, actions::DELETED);
    // Ids are never reused after a delete.
    let next = s.submit(&new("b", "alice", "q"), "alice", 5).unwrap();
    assert!(next.id > w.id);
}

#[test]
fn list_pages_through_filters_in_both_orders() {
    let (_dir, mut s) = store();
    let owners = ["alice", "bob", "carol"];
    let queues = ["research", "prod"];
    let batch: Vec<NewWorkload> = (0..300)
        .map(|i| new(&format!("w{i}"), owners[i % 3], queues[i % 2]))
        .collect();
    let ws = s.submit_batch(&batch, "seed", 1).unwrap();
    // Every 5th is running.
    let reqs: Vec<TransitionRequest> = ws
        .iter()
        .step_by(5)
        .flat_map(|w| {
            [
                TransitionRequest {
                    id: w.id,
                    from: WorkloadState::Pending,
                    change: Transition::to(WorkloadState::Scheduled),
                },
                TransitionRequest {
                    id: w.id,
                    from: WorkloadState::Scheduled,
                    change: Transition::to(WorkloadState::Running),
                },
            ]
        })
        .collect();
    assert!(
        s.transition_many(&reqs, "sched", 2)
            .unwrap()
            .iter()
            .all(Result::is_ok)
    );

    let states = [
        None,
        Some(WorkloadState::Running),
        Some(WorkloadState::Pending),
    ];
    let queue_f = [None, Some("prod")];
    let owner_f = [None, Some("bob")];
    for state in states {
        for queue in queue_f {
            for owner in owner_f {
                let expected: Vec<WorkloadId> = ws
                    .iter()
                    .enumerate()
                    .filter(|(i, w)| {
                        let st = if i % 5 == 0 {
                            WorkloadState::Running
                        } else {
                            WorkloadState::Pending
                        };
                        state.is_none_or(|s| s == st)
                            && queue.is_none_or(|q| q == w.queue)
                            && owner.is_none_or(|o| o == w.owner)
                    })
                    .map(|(_, w)| w.id)
                    .collect();
                for order in [Order::OldestFirst, Order::NewestFirst] {
                    let mut got = Vec::new();
                    let mut q = ListQuery {
                        state,
                        queue: queue.map(str::to_string),
                        owner: owner.map(str::to_string),
                        limit: 7,
                        after: None,
                        order,
                    };
                    loop {
                        let page = s.list(&q).unwrap();
                        assert!(page.items.len() <= 7);
                        got.extend(page.items.iter().map(|w| w.id));
                        match page.next {
                            Some(n) => q.after = Some(n),
                            None => break,
                        }
                    }
                    let mut want = expected.clone();
                    if order == Order::NewestFirst {
                        want.reverse();
                    }
                    assert_eq!(got, want, "{state:?} {queue:?} {owner:?} {order:?}");
                }
            }
        }
    }
    assert!(matches!(
        s.list(&ListQuery {
            limit: 0,
            ..ListQuery::default()
        }),
        Err(Error::Invalid { field: "limit", .. })
    ));
    let counts = s.counts_by_state_and_queue().unwrap();
    let total: u64 = counts.iter().map(|c| c.count).sum();
    assert_eq!(total, 300);
    let prod_running = counts
        .iter()
        .find(|c| c.queue == "prod" && c.state == WorkloadState::Running)
        .unwrap();
    assert_eq!(prod_running.count, 30); // i % 5 == 0 and i odd: 30 of 300
    assert_eq!(s.running().unwrap().len(), 60);
}

#[test]
fn list_queries_use_an_index_in_id_order() {
    let (dir, _s) = store();
    let conn = rusqlite::Connection::open(dir.path().join("sub/dir/gantry.db")).unwrap();
    let cases = [
        ("workloads_state", "state = 'pending'"),
        ("workloads_queue", "queue = 'q'"),
        ("workloads_owner", "owner = 'o'"),
        ("workloads_queue_state", "queue = 'q' AND state = 'pending'"),
        ("workloads_owner_state", "owner = 'o' AND state = 'pending'"),
        (
            "workloads_owner_state",
            "owner = 'o' AND queue = 'q' AND state = 'pending'",
        ),
    ];
    for (index, filter) in cases {
        for dir in ["ASC", "DESC"] {
            let sql = format!(
                "EXPLAIN QUERY PLAN SELECT * FROM workloads INDEXED BY {index} WHERE {filter} \
                 AND id < 1000 ORDER BY id {dir} LIMIT 10"
            );
            let mut st = conn.prepare(&sql).unwrap();
            let plan: Vec<String> = st
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join(" | ");
            assert!(plan.contains(index), "{sql}: {plan}");
            assert!(plan.contains("rowid<"), "{sql}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{sql}: {plan}");
        }
    }
}

#[test]
fn tokens_verify_until_revoked() {
    let (_dir, mut s) = store();
    let admin = s
        .create_token("root", Role::Admin, [7; 32], "bootstrap", 10)
        .unwrap();
    let viewer = s
        .create_token("dash", Role::Viewer, [9; 32], "root", 11)
        .unwrap();
    assert!(admin.secret.starts_with("gantry_1_0707"));
    assert!(!format!("{admin:?}").contains("0707"), "secret redacted");
    assert_eq!(
        s.verify_token(&admin.secret).unwrap(),
        Some(admin.info.clone())
    );
    assert_eq!(
        s.verify_token(&viewer.secret).unwrap(),
        Some(viewer.info.clone())
    );
    // Another token's id with this secret, a changed digit, garbage: no.
    let swapped = admin.secret.replacen("gantry_1_", "gantry_2_", 1);
    assert_eq!(s.verify_token(&swapped).unwrap(), None);
    let mut wrong = admin.secret.clone();
    wrong.pop();
    wrong.push('1');
    assert_eq!(s.verify_token(&wrong).unwrap(), None);
    for bad in ["", "Bearer x", "gantry_99_00", &admin.secret[..20]] {
        assert_eq!(s.verify_token(bad).unwrap(), None, "{bad}");
    }
    let unknown = admin.secret.replacen("gantry_1_", "gantry_77_", 1);
    assert_eq!(s.verify_token(&unknown).unwrap(), None);

    let revoked = s.revoke_token(admin.info.id, "root", 20).unwrap();
    assert_eq!(revoked.revoked_at, Some(20));
    assert_eq!(s.verify_token(&admin.secret).unwrap(), None);
    assert_eq!(
        s.revoke_token(admin.info.id, "root", 30)
            .unwrap()
            .revoked_at,
        Some(20),
        "first revocation time kept"
    );
    assert!(matches!(
        s.revoke_token(99, "root", 30),
        Err(Error::NotFound { what: "token", .. })
    ));
    let list = s.tokens().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].revoked_at, Some(20));
    assert_eq!(list[1].revoked_at, None);
    let actions: Vec<String> = s
        .audit_log(0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["token.create", "token.create", "token.revoke"]);
    // The stored hash is not the secret.
    let random = gantry_store::random_secret().unwrap();
    assert_ne!(random, [0; 32]);
}

#[test]
fn queues_and_settings_round_trip() {
    let (_dir, mut s) = store();
    let quota: Quota =
        serde_json::from_value(serde_json::json!({"gpus": 8, "cpu": "64", "memory": "512Gi"}))
            .unwrap();
    let mut q = Queue {
        name: "research".into(),
        cohort: Some("ml".into()),
        weight: 2.0,
        guaranteed: quota.clone(),
        borrowing_limit: Some(Quota::default()),
        budget: Some(1500.0),
    };
    s.put_queue(&q, "admin", 1).unwrap();
    assert_eq!(s.queue("research").unwrap().unwrap(), q);
    q.weight = 3.0;
    q.borrowing_limit = None;
    s.put_queue(&q, "admin", 2).unwrap();
    s.put_queue(
        &Queue::from_spec(q.to_spec(), None).tap_name("prod"),
        "admin",
        3,
    )
    .unwrap();
    let all = s.queues().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].name, "prod");
    assert_eq!(all[1], q);
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = s
            .put_queue(
                &Queue {
                    weight: bad,
                    ..q.clone()
                },
                "admin",
                4,
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Invalid {
                    field: "weight",
                    ..
                }
            ),
            "{bad}"
        );
    }
    assert!(
        s.put_queue(
            &Queue {
                budget: Some(-1.0),
                ..q.clone()
            },
            "admin",
            4
        )
        .is_err()
    );
    s.delete_queue("prod", "admin", 5).unwrap();
    assert!(matches!(
        s.delete_queue("prod", "admin", 6),
        Err(Error::NotFound { what: "queue", .. })
    ));
    assert_eq!(s.queue("prod").unwrap(), None);

    assert_eq!(s.strategy().unwrap(), None);
    s.set_strategy("gantry", "admin", 7).unwrap();
    s.set_strategy("fgd", "ops", 8).unwrap();
    assert_eq!(s.strategy().unwrap().as_deref(), Some("fgd"));
    s.set_setting("other", "x", "ops", 9).unwrap();
    assert_eq!(s.setting("other").unwrap().as_deref(), Some("x"));
    let log = s.audit_log(0, 100).unwrap();
    let last = &log[log.len() - 2];
    assert_eq!(
        (
            last.action.as_str(),
            last.subject.as_deref(),
            last.reason.as_deref(),
            last.actor.as_str()
        ),
        ("setting.set", Some("strategy"), Some("fgd"), "ops")
    );
    let ev = s
        .record(
            "api",
            "auth.denied",
            Some("/api/workloads"),
            Some("no token"),
            10,
        )
        .unwrap();
    assert_eq!(s.audit_log(ev.seq - 1, 10).unwrap(), vec![ev]);
}

/// Renames a queue, for brevity above.
trait TapName {
    /// The queue with another name.
    fn tap_name(self, name: &str) -> Self;
}

impl TapName for Queue {
    fn tap_name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }
}

/// Several processes (here threads, each with its own connection) creating the same new database at
/// once all open it: SQLite's immediate "database is locked" while one switches it to WAL is retried.
#[test]
fn concurrent_opens_of_a_new_database_all_succeed() {
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(format!("race-{round}.db"));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
        let opened: Vec<Result<i64, String>> = (0..6)
            .map(|_| {
                let (db, barrier) = (db.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let s = Store::open(&db).map_err(|e| e.to_string())?;
                    s.schema_version().map_err(|e| e.to_string())
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let version = Store::open(&db).unwrap().schema_version().unwrap();
        for r in opened {
            assert_eq!(r, Ok(version), "round {round}");
        }
    }
}
