//! Leader election through a `coordination.k8s.io/v1` Lease, so that two operator replicas are
//! safe: only the holder reconciles.
//!
//! Contract:
//! - [`decide`] is pure: given the Lease as read (or its absence), this replica's identity and
//!   the time, it says whether to create the Lease, renew it, take it over (the holder let it
//!   expire) or wait.
//! - [`LeaderElector::try_acquire_or_renew`] performs one step with optimistic concurrency: a
//!   `get`, then a `create` or an `update` carrying the read `resourceVersion`, so two replicas
//!   racing for an expired Lease cannot both win.
//! - A leader renews every [`LeaseTiming::renew_period`]. If it cannot renew for
//!   [`LeaseTiming::renew_deadline`], or finds another holder, it has lost the Lease and must
//!   stop reconciling at once; the process then exits so that it restarts as a standby. The
//!   deadline is shorter than the Lease's duration, so the old leader stops before a new one can
//!   take over.
//! - On graceful shutdown the leader releases the Lease (clears the holder), so a standby takes
//!   over without waiting for it to expire.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;

/// Durations of the election.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    /// How long a Lease stays valid after its last renewal.
    pub lease_duration: Duration,
    /// How long a leader keeps reconciling without a successful renewal.
    pub renew_deadline: Duration,
    /// How often a leader renews.
    pub renew_period: Duration,
    /// How often a standby retries.
    pub retry_period: Duration,
}

impl Default for LeaseTiming {
    /// The client-go defaults: 15 s Lease, 10 s deadline, 2 s retries.
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            renew_period: Duration::from_secs(2),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do with the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No Lease exists: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Its holder let it expire or released it: take it over.
    TakeOver,
    /// Someone else holds a valid Lease.
    Wait {
        /// The current holder.
        holder: String,
    },
}

/// Decides what `identity` does with `lease` at `now`.
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    let expired = match spec.renew_time.or(spec.acquire_time) {
        Some(MicroTime(renewed)) => renewed.saturating_add(duration).is_ok_and(|end| end < now),
        None => true,
    };
    if expired {
        Decision::TakeOver
    } else {
        Decision::Wait { holder }
    }
}

/// One replica's side of the election.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: LeaseTiming,
}

impl LeaderElector {
    /// An elector for the Lease `name` in `api`'s namespace.
    pub fn new(api: Api<Lease>, name: String, identity: String, timing: LeaseTiming) -> Self {
        Self {
            api,
            name,
            identity,
            timing,
        }
    }

    /// This replica's identity (its pod name).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The election's durations.
    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    /// One election step; `true` when this replica holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let current = self.api.get_opt(&self.name).await?;
        let now = Timestamp::now();
        let decision = decide(current.as_ref(), &self.identity, now);
        let result = match decision {
            Decision::Wait { holder } => {
                tracing::debug!(lease = %self.name, %holder, "the Lease is held by another replica");
                return Ok(false);
            }
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(now, now, 0)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Decision::Renew | Decision::TakeOver => {
                let mut lease = current.unwrap_or_default();
                let previous = lease.spec.clone().unwrap_or_default();
                let transitions = previous.lease_transitions.unwrap_or(0);
                lease.spec = Some(if decision == Decision::Renew {
                    let acquired = previous.acquire_time.map_or(now, |t| t.0);
                    self.spec(acquired, now, transitions)
                } else {
                    self.spec(now, now, transitions + 1)
                });
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            // Another replica wrote first (resourceVersion mismatch or a racing create).
            Err(kube::Error::Api(status)) if status.is_conflict() || status.is_already_exists() => {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Gives the Lease up if this replica holds it, so a standby need not wait for it to expire.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }

    fn spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_secs_ago: i64, duration: i32) -> Lease {
        let now = Timestamp::now();
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(now - SignedDuration::from_secs(renewed_secs_ago))),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn absent_lease_is_created() {
        assert_eq!(decide(None, "a", Timestamp::now()), Decision::Create);
    }

    #[test]
    fn own_lease_is_renewed_even_when_expired() {
        let now = Timestamp::now();
        assert_eq!(
            decide(Some(&lease(Some("a"), 1, 15)), "a", now),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&lease(Some("a"), 60, 15)), "a", now),
            Decision::Renew
        );
    }

    #[test]
    fn valid_lease_of_another_holder_is_respected() {
        let decision = decide(Some(&lease(Some("b"), 5, 15)), "a", Timestamp::now());
        assert_eq!(
            decision,
            Decision::Wait {
                holder: "b".to_owned()
            }
        );
    }

    #[test]
    fn expired_or_released_lease_is_taken_over() {
        let now = Timestamp::now();
        assert_eq!(
            decide(Some(&lease(Some("b"), 16, 15)), "a", now),
            Decision::TakeOver
        );
        assert_eq!(
            decide(Some(&lease(None, 0, 15)), "a", now),
            Decision::TakeOver
        );
        assert_eq!(
            decide(Some(&lease(Some(""), 0, 15)), "a", now),
            Decision::TakeOver
        );
    }
}
