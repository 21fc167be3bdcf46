//! GPU telemetry samples: what each GPU was doing, and for whom, over time.
//!
//! The server's poll loop records one row per GPU per poll ([`Store::record_samples`], one
//! transaction per poll), naming the workload holding the GPU. A GPU shared by several workloads gets
//! one row per holder at the same instant (with the same readings and each holder's milli); a GPU
//! nobody holds gets one row with no workload.
//!
//! Rollup: the server's hourly maintenance calls [`Store::roll_up_samples`], which replaces the raw
//! samples older than an hour by one row per (minute, GPU, holder) in `gpu_sample_minutes`: the
//! count of samples, the sum of their utilisation readings and how many there were (so a mean over
//! any mix of raw and rolled rows is the mean of the raw samples), the peak memory, the most milli
//! held, and the mean power and temperature. The row's time is its first sample's, so it falls in
//! the same minute-aligned bucket and the same run as the samples it stands for. Reads see both
//! tables. A 30-day window reads about 30 times fewer rows than its raw samples. Old rows are
//! removed by [`Store::prune_samples`].

use crate::error::Result;
use crate::model::{UnixMillis, WorkloadId};
use crate::store::Store;
use rusqlite::types::Value;
use rusqlite::{Row, params};
use serde::{Deserialize, Serialize};

/// Schema version 2: the `gpu_samples` and `gpu_sample_minutes` tables, and the `events_running`
/// index over the transitions into and out of `running` that cost accounting reads for a window
/// ([`crate::Store::running_transitions`]).
pub(crate) const MIGRATION: &str = r#"
CREATE TABLE gpu_samples (
    at                INTEGER NOT NULL,
    gpu_uuid          TEXT    NOT NULL,
    workload_id       INTEGER,
    held_milli        INTEGER CHECK (held_milli IS NULL OR held_milli BETWEEN 0 AND 1000),
    utilization_pct   REAL,
    memory_used_bytes INTEGER,
    power_watts       REAL,
    temperature_c     REAL
) STRICT;
CREATE INDEX gpu_samples_at ON gpu_samples (at);
CREATE INDEX gpu_samples_workload ON gpu_samples (workload_id, at) WHERE workload_id IS NOT NULL;
CREATE TABLE gpu_sample_minutes (
    at                  INTEGER NOT NULL,
    gpu_uuid            TEXT    NOT NULL,
    workload_id         INTEGER,
    held_milli          INTEGER CHECK (held_milli IS NULL OR held_milli BETWEEN 0 AND 1000),
    samples             INTEGER NOT NULL CHECK (samples > 0),
    utilization_samples INTEGER NOT NULL CHECK (utilization_samples >= 0),
    utilization_sum     REAL,
    memory_used_bytes   INTEGER,
    power_watts         REAL,
    temperature_c       REAL
) STRICT;
CREATE INDEX gpu_sample_minutes_at ON gpu_sample_minutes (at);
CREATE INDEX gpu_sample_minutes_workload ON gpu_sample_minutes (workload_id, at)
    WHERE workload_id IS NOT NULL;
-- Within one workload_id its entries are in rowid (seq) order. The WHERE clause must stay the same,
-- term for term, as the query in Store::running_transitions for SQLite to use it.
CREATE INDEX events_running ON events (workload_id)
    WHERE action = 'transition' AND (from_state = 'running' OR to_state = 'running');
"#;

/// The rollup's granularity: one minute.
pub const ROLLUP_MS: i64 = 60_000;

/// How long samples are kept by default (35 days, so a 30-day window is always covered).
pub const SAMPLE_RETENTION_MS: i64 = 35 * 24 * 3_600_000;

/// One reading of one GPU, and who held it then.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuSample {
    /// When it was read.
    pub at: UnixMillis,
    /// The GPU's UUID.
    pub gpu_uuid: String,
    /// The workload holding the GPU (or a share of it), if any.
    pub workload: Option<WorkloadId>,
    /// Milli of the GPU that workload holds (1000 = all of it), when held.
    pub held_milli: Option<u32>,
    /// GPU utilisation, percent.
    pub utilization_pct: Option<f64>,
    /// GPU memory in use, bytes (of the whole GPU, whoever uses it).
    pub memory_used_bytes: Option<u64>,
    /// Power draw, watts.
    pub power_watts: Option<f64>,
    /// Temperature, degrees Celsius.
    pub temperature_c: Option<f64>,
}

/// Which samples to read: a window `[from, to)`, optionally one GPU or one workload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SampleQuery {
    /// Window start (inclusive).
    pub from: UnixMillis,
    /// Window end (exclusive).
    pub to: UnixMillis,
    /// Only this GPU.
    pub gpu_uuid: Option<String>,
    /// Only this workload.
    pub workload: Option<WorkloadId>,
}

/// The samples of one (GPU, holder) in one fixed time bucket, aggregated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SampleBucket {
    /// Bucket start: a multiple of the bucket length.
    pub start: UnixMillis,
    /// The GPU's UUID.
    pub gpu_uuid: String,
    /// The holder, if any.
    pub workload: Option<WorkloadId>,
    /// The most milli the holder held in the bucket.
    pub held_milli: Option<u32>,
    /// Mean utilisation of the samples that had one, percent.
    pub mean_utilization_pct: Option<f64>,
    /// Largest memory in use, bytes.
    pub max_memory_used_bytes: Option<u64>,
    /// Samples in the bucket.
    pub count: u64,
}

const SAMPLE_COLUMNS: &str = "at, gpu_uuid, workload_id, held_milli, utilization_pct, \
     memory_used_bytes, power_watts, temperature_c";

/// A rolled-up minute read as one sample: its mean utilisation, peak memory, mean power and
/// temperature.
const MINUTE_COLUMNS: &str = "at, gpu_uuid, workload_id, held_milli, \
     utilization_sum / utilization_samples, memory_used_bytes, power_watts, temperature_c";

fn read_sample(r: &Row<'_>) -> Result<GpuSample> {
    let workload: Option<i64> = r.get(2)?;
    let held: Option<i64> = r.get(3)?;
    let memory: Option<i64> = r.get(5)?;
    Ok(GpuSample {
        at: r.get(0)?,
        gpu_uuid: r.get(1)?,
        workload: workload.and_then(WorkloadId::from_raw),
        held_milli: held.and_then(|m| u32::try_from(m).ok()),
        utilization_pct: r.get(4)?,
        memory_used_bytes: memory.and_then(|m| u64::try_from(m).ok()),
        power_watts: r.get(6)?,
        temperature_c: r.get(7)?,
    })
}

impl Store {
    /// Stores a batch of samples (one poll) in one transaction; returns how many were stored.
    pub fn record_samples(&mut self, samples: &[GpuSample]) -> Result<usize> {
        if samples.is_empty() {
            return Ok(0);
        }
        let tx = self.write()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO gpu_samples (at, gpu_uuid, workload_id, held_milli, utilization_pct, \
                 memory_used_bytes, power_watts, temperature_c) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for s in samples {
                st.execute(params![
                    s.at,
                    s.gpu_uuid,
                    s.workload.map(WorkloadId::raw),
                    s.held_milli.map(|m| i64::from(m.min(1000))),
                    s.utilization_pct.filter(|v| v.is_finite()),
                    s.memory_used_bytes
                        .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
                    s.power_watts.filter(|v| v.is_finite()),
                    s.temperature_c.filter(|v| v.is_finite()),
                ])?;
            }
        }
        tx.commit()?;
        Ok(samples.len())
    }

    /// The samples matching `q`, by time then GPU. Older than the rollup, a sample is one row per
    /// (minute, GPU, holder) at its first sample's time, with the minute's mean utilisation, power
    /// and temperature and its peak memory.
    pub fn samples(&self, q: &SampleQuery) -> Result<Vec<GpuSample>> {
        let (filter, args) = sample_filter(q);
        let (raw, minutes) = if q.workload.is_some() {
            ("gpu_samples_workload", "gpu_sample_minutes_workload")
        } else {
            ("gpu_samples_at", "gpu_sample_minutes_at")
        };
        let sql = format!(
            "SELECT {SAMPLE_COLUMNS} FROM gpu_samples INDEXED BY {raw} WHERE {filter} \
             UNION ALL SELECT {MINUTE_COLUMNS} FROM gpu_sample_minutes INDEXED BY {minutes} \
             WHERE {filter} ORDER BY 1, 2, 3"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        st.query_and_then(rusqlite::params_from_iter(args), read_sample)?
            .collect()
    }

    /// The samples matching `q` aggregated per (bucket of `bucket_ms`, GPU, holder), by bucket then
    /// GPU: the mean utilisation and the peak memory of each. Reads a long window without holding
    /// every sample in memory. With `bucket_ms` a whole number of minutes, rolled-up and raw
    /// samples give the same buckets (see the module documentation).
    pub fn sample_buckets(&self, q: &SampleQuery, bucket_ms: i64) -> Result<Vec<SampleBucket>> {
        let bucket = bucket_ms.max(1);
        let (filter, mut args) = sample_filter(q);
        args.push(Value::Integer(bucket));
        let n = args.len();
        let sql = format!(
            "SELECT (at / ?{n}) * ?{n} AS b, gpu_uuid, workload_id, sum(u) / sum(un), max(mem), \
             sum(c), max(held) FROM (\
             SELECT at, gpu_uuid, workload_id, utilization_pct AS u, \
             utilization_pct IS NOT NULL AS un, memory_used_bytes AS mem, 1 AS c, \
             held_milli AS held FROM gpu_samples INDEXED BY gpu_samples_at WHERE {filter} \
             UNION ALL SELECT at, gpu_uuid, workload_id, utilization_sum, utilization_samples, \
             memory_used_bytes, samples, held_milli FROM gpu_sample_minutes \
             INDEXED BY gpu_sample_minutes_at WHERE {filter}) \
             GROUP BY b, gpu_uuid, workload_id ORDER BY b, gpu_uuid, workload_id"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        st.query_and_then(rusqlite::params_from_iter(args), |r| {
            let workload: Option<i64> = r.get(2)?;
            let memory: Option<i64> = r.get(4)?;
            let count: i64 = r.get(5)?;
            let held: Option<i64> = r.get(6)?;
            Ok(SampleBucket {
                start: r.get(0)?,
                gpu_uuid: r.get(1)?,
                workload: workload.and_then(WorkloadId::from_raw),
                held_milli: held.and_then(|m| u32::try_from(m).ok()),
                mean_utilization_pct: r.get(3)?,
                max_memory_used_bytes: memory.and_then(|m| u64::try_from(m).ok()),
                count: u64::try_from(count).unwrap_or(0),
            })
        })?
        .collect()
    }

    /// The peak GPU memory in use (bytes) seen while each workload held a GPU in `[from, to)`, by
    /// workload. On a shared GPU this is the whole GPU's memory in use: an upper bound.
    pub fn peak_memory(&self, from: UnixMillis, to: UnixMillis) -> Result<Vec<(WorkloadId, u64)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT workload_id, max(mem) FROM (\
             SELECT workload_id, memory_used_bytes AS mem FROM gpu_samples \
             INDEXED BY gpu_samples_at WHERE at >= ?1 AND at < ?2 AND workload_id IS NOT NULL \
             AND memory_used_bytes IS NOT NULL \
             UNION ALL SELECT workload_id, memory_used_bytes FROM gpu_sample_minutes \
             INDEXED BY gpu_sample_minutes_at WHERE at >= ?1 AND at < ?2 \
             AND workload_id IS NOT NULL AND memory_used_bytes IS NOT NULL) \
             GROUP BY workload_id ORDER BY workload_id",
        )?;
        let rows = st.query_map(params![from, to], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, peak) = row?;
            if let (Some(id), Ok(peak)) = (WorkloadId::from_raw(id), u64::try_from(peak)) {
                out.push((id, peak));
            }
        }
        Ok(out)
    }

    /// Deletes the samples taken before `before`, raw and rolled up; returns how many rows.
    pub fn prune_samples(&mut self, before: UnixMillis) -> Result<usize> {
        let tx = self.write()?;
        let n = tx.execute("DELETE FROM gpu_samples WHERE at < ?1", [before])?
            + tx.execute("DELETE FROM gpu_sample_minutes WHERE at < ?1", [before])?;
        tx.commit()?;
        Ok(n)
    }

    /// Rolls the raw samples of the whole minutes before `before` up into one row per (minute, GPU,
    /// holder) (see the module documentation), in one transaction; returns how many raw samples
    /// were rolled up. Running it again rolls up only what was recorded since.
    pub fn roll_up_samples(&mut self, before: UnixMillis) -> Result<usize> {
        let cutoff = before.div_euclid(ROLLUP_MS) * ROLLUP_MS;
        let tx = self.write()?;
        tx.execute(
            "INSERT INTO gpu_sample_minutes (at, gpu_uuid, workload_id, held_milli, samples, \
             utilization_samples, utilization_sum, memory_used_bytes, power_watts, temperature_c) \
             SELECT min(at), gpu_uuid, workload_id, max(held_milli), count(*), \
             count(utilization_pct), sum(utilization_pct), max(memory_used_bytes), \
             avg(power_watts), avg(temperature_c) FROM gpu_samples INDEXED BY gpu_samples_at \
             WHERE at < ?1 GROUP BY (at - (at % ?2)), gpu_uuid, workload_id \
             ORDER BY min(at), gpu_uuid, workload_id",
            params![cutoff, ROLLUP_MS],
        )?;
        let n = tx.execute("DELETE FROM gpu_samples WHERE at < ?1", [cutoff])?;
        tx.commit()?;
        Ok(n)
    }
}

/// The WHERE clause and its arguments for `q`.
fn sample_filter(q: &SampleQuery) -> (String, Vec<Value>) {
    let mut sql = "at >= ?1 AND at < ?2".to_string();
    let mut args = vec![Value::Integer(q.from), Value::Integer(q.to)];
    if let Some(gpu) = &q.gpu_uuid {
        args.push(Value::Text(gpu.clone()));
        sql.push_str(&format!(" AND gpu_uuid = ?{}", args.len()));
    }
    if let Some(w) = q.workload {
        args.push(Value::Integer(w.raw()));
        sql.push_str(&format!(" AND workload_id = ?{}", args.len()));
    }
    (sql, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().join("s.db")).unwrap();
        (dir, s)
    }

    fn sample(at: i64, gpu: &str, workload: Option<i64>, util: f64, mem: u64) -> GpuSample {
        GpuSample {
            at,
            gpu_uuid: gpu.into(),
            workload: workload.and_then(WorkloadId::from_raw),
            held_milli: workload.map(|_| 1000),
            utilization_pct: Some(util),
            memory_used_bytes: Some(mem),
            power_watts: Some(100.0),
            temperature_c: Some(40.0),
        }
    }

    #[test]
    fn a_batch_is_recorded_and_read_back_by_window_gpu_and_workload() {
        let (_d, mut s) = store();
        let batch = vec![
            sample(1_000, "GPU-a", Some(1), 90.0, 10),
            sample(1_000, "GPU-b", None, 0.0, 0),
            sample(3_000, "GPU-a", Some(1), 80.0, 30),
            sample(3_000, "GPU-b", Some(2), 10.0, 20),
            sample(5_000, "GPU-a", Some(1), 70.0, 20),
        ];
        assert_eq!(s.record_samples(&batch).unwrap(), 5);
        assert_eq!(s.record_samples(&[]).unwrap(), 0);
        let all = s
            .samples(&SampleQuery {
                from: 0,
                to: 10_000,
                ..SampleQuery::default()
            })
            .unwrap();
        assert_eq!(all, batch);
        let a = s
            .samples(&SampleQuery {
                from: 2_000,
                to: 5_000,
                gpu_uuid: Some("GPU-a".into()),
                workload: None,
            })
            .unwrap();
        assert_eq!(a, vec![batch[2].clone()]);
        let w2 = s
            .samples(&SampleQuery {
                from: 0,
                to: 10_000,
                gpu_uuid: None,
                workload: WorkloadId::from_raw(2),
            })
            .unwrap();
        assert_eq!(w2, vec![batch[3].clone()]);
        let peaks = s.peak_memory(0, 10_000).unwrap();
        let id = |n| WorkloadId::from_raw(n).unwrap();
        assert_eq!(peaks, vec![(id(1), 30), (id(2), 20)]);
        // The window is half-open: the 5 s sample is outside [0, 5000).
        assert_eq!(s.peak_memory(0, 3_000).unwrap(), vec![(id(1), 10)]);
    }

    #[test]
    fn buckets_average_utilisation_and_keep_the_peak_memory() {
        let (_d, mut s) = store();
        s.record_samples(&[
            sample(60_000, "GPU-a", Some(1), 10.0, 5),
            sample(62_000, "GPU-a", Some(1), 20.0, 9),
            sample(121_000, "GPU-a", Some(1), 90.0, 7),
        ])
        .unwrap();
        let b = s
            .sample_buckets(
                &SampleQuery {
                    from: 0,
                    to: 200_000,
                    ..SampleQuery::default()
                },
                60_000,
            )
            .unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(
            (
                b[0].start,
                b[0].mean_utilization_pct,
                b[0].max_memory_used_bytes,
                b[0].count
            ),
            (60_000, Some(15.0), Some(9), 2)
        );
        assert_eq!((b[1].start, b[1].count), (120_000, 1));
    }

    #[test]
    fn a_rollup_keeps_the_buckets_peaks_and_holders_of_the_raw_samples() {
        let (_d, mut s) = store();
        let mut raw = Vec::new();
        // Three minutes of a GPU shared by workloads 1 and 2, then free; one reading missing.
        for i in 0..90 {
            let at = 60_000 + 1_000 + i * 2_000;
            let mut a = sample(
                at,
                "GPU-a",
                Some(1),
                f64::from(i as u8 % 7) * 2.5,
                100 + i as u64,
            );
            a.held_milli = Some(500);
            let mut b = sample(at, "GPU-a", Some(2), 40.0, 7);
            b.held_milli = Some(500);
            if i == 3 {
                b.utilization_pct = None;
            }
            raw.push(a);
            raw.push(b);
            raw.push(sample(at, "GPU-b", None, 0.5, 0));
        }
        s.record_samples(&raw).unwrap();
        let all = SampleQuery {
            from: 0,
            to: 1_000_000,
            ..SampleQuery::default()
        };
        let before: Vec<_> = [60_000, 120_000]
            .iter()
            .map(|&b| s.sample_buckets(&all, b).unwrap())
            .collect();
        let peaks = s.peak_memory(0, 1_000_000).unwrap();
        // Roll up everything before 3 min 30 s: the minutes starting at 1 and 2 min, not the third.
        assert_eq!(s.roll_up_samples(210_000).unwrap(), 60 * 3);
        assert_eq!(s.roll_up_samples(210_000).unwrap(), 0);
        let after: Vec<_> = [60_000, 120_000]
            .iter()
            .map(|&b| s.sample_buckets(&all, b).unwrap())
            .collect();
        assert_eq!(after, before);
        assert_eq!(before[0].len(), 9);
        assert_eq!(before[0][0].count, 30);
        assert_eq!(s.peak_memory(0, 1_000_000).unwrap(), peaks);
        // One row per (minute, GPU, holder) at its first sample's time, then the raw third minute.
        let held = s
            .samples(&SampleQuery {
                workload: WorkloadId::from_raw(1),
                ..all.clone()
            })
            .unwrap();
        assert_eq!(held.len(), 2 + 30);
        assert_eq!((held[0].at, held[0].held_milli), (61_000, Some(500)));
        assert_eq!(held[1].at, 121_000);
        assert_eq!(held[2].at, 181_000);
        assert_eq!(held[0].memory_used_bytes, Some(129));
        // Pruning removes rolled-up rows too.
        assert_eq!(s.prune_samples(180_000).unwrap(), 6);
        assert_eq!(s.samples(&all).unwrap().len(), 90);
    }

    #[test]
    fn pruning_removes_only_older_samples() {
        let (_d, mut s) = store();
        s.record_samples(&[
            sample(1, "GPU-a", None, 0.0, 0),
            sample(2, "GPU-a", None, 0.0, 0),
            sample(3, "GPU-a", None, 0.0, 0),
        ])
        .unwrap();
        assert_eq!(s.prune_samples(3).unwrap(), 2);
        let left = s
            .samples(&SampleQuery {
                from: 0,
                to: 10,
                ..SampleQuery::default()
            })
            .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].at, 3);
    }
}
