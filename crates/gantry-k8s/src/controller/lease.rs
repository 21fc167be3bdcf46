//! Leader election through a `coordination.k8s.io/v1` Lease: only the holder reconciles.
//!
//! The holder renews every [`RENEW_EVERY`]; a Lease not renewed for [`LEASE_DURATION`] may be taken
//! over. Every write carries the `resourceVersion` read just before, so two candidates racing for the
//! same Lease cannot both win: the loser's write is refused with 409 Conflict and it is not leader.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};
use std::time::Duration;

/// How long a Lease stays valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews (and a candidate retries).
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// A Lease-based lock held by one identity at a time.
#[derive(Clone)]
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
}

/// Whether the 409 Conflict (or AlreadyExists) answer of a write means "someone else won".
fn lost_race(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict() || s.is_already_exists())
}

impl LeaseLock {
    /// A lock on Lease `namespace/name` for `identity` (usually the Pod name).
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        LeaseLock {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
        }
    }

    /// Acquires or renews the Lease now; `Ok(true)` when this identity holds it afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        self.try_acquire_or_renew_at(Timestamp::now()).await
    }

    /// [`try_acquire_or_renew`](Self::try_acquire_or_renew) at time `now`.
    pub async fn try_acquire_or_renew_at(&self, now: Timestamp) -> Result<bool, kube::Error> {
        let duration_secs = LEASE_DURATION.as_secs() as i32;
        let Some(current) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if lost_race(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().unwrap_or("");
        let mine = holder == self.identity;
        if !mine && !holder.is_empty() {
            let held_for = SignedDuration::from_secs(
                spec.lease_duration_seconds
                    .map_or(LEASE_DURATION.as_secs() as i64, i64::from),
            );
            let renewed = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0);
            if renewed.is_some_and(|t| t + held_for > now) {
                return Ok(false);
            }
        }
        let mut next = current;
        let s = next.spec.get_or_insert_with(LeaseSpec::default);
        if !mine {
            s.holder_identity = Some(self.identity.clone());
            s.acquire_time = Some(MicroTime(now));
            s.lease_transitions = Some(s.lease_transitions.unwrap_or(0) + 1);
        }
        s.lease_duration_seconds = Some(duration_secs);
        s.renew_time = Some(MicroTime(now));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if lost_race(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
