//! The store behind the server: one writer thread that batches submissions, and a reader.
//!
//! SQLite allows one writer at a time and, with `synchronous=FULL`, each commit waits for the disk.
//! So every write goes through one thread; submissions that arrive while a commit is in progress are
//! committed together in the next transaction (group commit), and each is acknowledged only after
//! the commit that holds it returned. Reads use a second connection (WAL: readers do not block the
//! writer) behind a mutex, on tokio's blocking pool.

use gantry_store::{NewWorkload, Store, UnixMillis, Workload};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// A store failure, or the writer thread having stopped.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] gantry_store::Error),
    /// The writer thread is gone (the server is stopping).
    #[error("the store's writer has stopped")]
    Stopped,
    /// The writer thread could not be started.
    #[error("cannot start the store's writer thread: {0}")]
    Spawn(std::io::Error),
}

type Job = Box<dyn FnOnce(&mut Store) + Send>;

enum Command {
    Submit {
        new: Box<NewWorkload>,
        actor: String,
        now: UnixMillis,
        reply: oneshot::Sender<Result<Submitted, gantry_store::Error>>,
    },
    Run(Job),
}

/// A stored submission.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The workload.
    pub workload: Workload,
    /// False when its idempotency key had already stored it (this is a repeat).
    pub created: bool,
}

/// Handle to the store: cheap to clone.
#[derive(Clone)]
pub struct Db {
    writer: std::sync::mpsc::Sender<Command>,
    reader: Arc<Mutex<Store>>,
}

/// Most submissions committed in one transaction.
const MAX_BATCH: usize = 512;

impl Db {
    /// Opens (creating and migrating) the database at `path` and starts the writer thread.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let mut store = Store::open(path)?;
        let reader = Store::open(path)?;
        let (tx, rx) = std::sync::mpsc::channel::<Command>();
        std::thread::Builder::new()
            .name("gantry-store-writer".into())
            .spawn(move || writer_loop(&mut store, rx))
            .map_err(DbError::Spawn)?;
        Ok(Db {
            writer: tx,
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// Stores a submission durably; returns once it is committed, saying whether it is new.
    pub async fn submit(
        &self,
        new: NewWorkload,
        actor: &str,
        now: UnixMillis,
    ) -> Result<Submitted, DbError> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Command::Submit {
                new: Box::new(new),
                actor: actor.to_string(),
                now,
                reply,
            })
            .map_err(|_| DbError::Stopped)?;
        Ok(rx.await.map_err(|_| DbError::Stopped)??)
    }

    /// Runs `f` on the writer connection and returns its result.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, gantry_store::Error> + Send + 'static,
    ) -> Result<T, DbError> {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |s| {
            let _ = reply.send(f(s));
        });
        self.writer
            .send(Command::Run(job))
            .map_err(|_| DbError::Stopped)?;
        Ok(rx.await.map_err(|_| DbError::Stopped)??)
    }

    /// Runs `f` on the reader connection, off the async threads.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, gantry_store::Error> + Send + 'static,
    ) -> Result<T, DbError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let store = reader.lock().map_err(|_| DbError::Stopped)?;
            Ok(f(&store)?)
        })
        .await
        .map_err(|_| DbError::Stopped)?
    }
}

fn writer_loop(store: &mut Store, rx: std::sync::mpsc::Receiver<Command>) {
    while let Ok(first) = rx.recv() {
        let mut submits = Vec::new();
        let mut jobs = Vec::new();
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Submit {
                    new,
                    actor,
                    now,
                    reply,
                } => submits.push((*new, actor, now, reply)),
                Command::Run(job) => jobs.push(job),
            }
            if submits.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        commit_submissions(store, submits);
        for job in jobs {
            job(store);
        }
    }
}

type PendingSubmit = (
    NewWorkload,
    String,
    UnixMillis,
    oneshot::Sender<Result<Submitted, gantry_store::Error>>,
);

/// Whether storing `new` now creates a workload (false: its idempotency key already has one).
/// Exact here: only the writer thread stores submissions.
fn is_new(store: &Store, new: &NewWorkload) -> bool {
    match &new.idempotency_key {
        Some(key) => !matches!(store.get_by_key(&new.owner, key), Ok(Some(_))),
        None => true,
    }
}

fn commit_submissions(store: &mut Store, submits: Vec<PendingSubmit>) {
    if submits.is_empty() {
        return;
    }
    // One transaction for the batch when every submission has the same actor and time; otherwise,
    // or when the batch fails as a whole (one bad submission), one transaction each.
    let same = submits
        .windows(2)
        .all(|w| w[0].1 == w[1].1 && w[0].2 == w[1].2);
    if same && submits.len() > 1 {
        // Within the batch, only the first use of a key creates a workload.
        let mut keys = std::collections::HashSet::new();
        let created: Vec<bool> = submits
            .iter()
            .map(|(new, ..)| match &new.idempotency_key {
                Some(k) => keys.insert((new.owner.clone(), k.clone())) && is_new(store, new),
                None => true,
            })
            .collect();
        let batch: Vec<NewWorkload> = submits.iter().map(|s| s.0.clone()).collect();
        if let Ok(stored) = store.submit_batch(&batch, &submits[0].1, submits[0].2) {
            for ((workload, s), created) in stored.into_iter().zip(submits).zip(created) {
                let _ = s.3.send(Ok(Submitted { workload, created }));
            }
            return;
        }
    }
    for (new, actor, now, reply) in submits {
        let created = is_new(store, &new);
        let result = store
            .submit(&new, &actor, now)
            .map(|workload| Submitted { workload, created });
        let _ = reply.send(result);
    }
}
