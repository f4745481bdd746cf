//! The managed Redis password and its rotation (`redis.managed.passwordGeneration`): which
//! generation's Secret each pod reads, which generations Redis accepts, and when a rotation
//! moves on to its next step.
//!
//! Contract: a rotation from generation `p` to `g` goes through three steps
//! ([`RotationPhase`]), each starting only once the previous one has rolled out to every Redis
//! pod, sentinel and counter pod:
//! 1. `AcceptBoth`: Redis and the sentinels accept `p` and `g`; every client still uses `p`.
//! 2. `UseNew`: every client (counters, replicas' `masterauth`, sentinels' `auth-pass`, the
//!    exporter) uses `g`; Redis and the sentinels still accept both.
//! 3. `DropOld`: Redis and the sentinels accept only `g`.
//!
//! So at every moment of every rolling update, each client's password is one its server
//! accepts: a pod of the old template and one of the new never disagree. Redis accepts two
//! passwords through its ACL (`user default on >p >g`), so the service itself needs no second
//! password. The steps are recorded in `status.redis.passwordRotation`; a rotation under way is
//! finished before a newer `passwordGeneration` starts another.

use crate::crd::{CounterCluster, PasswordRotation, RotationPhase};

use super::redis::redis_base_secret_name;

/// The passwords the pods use now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordPlan {
    /// The generation every client authenticates with.
    pub client: i32,
    /// Another generation Redis and the sentinels accept too, during a rotation.
    pub also_accepted: Option<i32>,
}

/// The generation every pod used alone when the status was last written.
pub fn current_generation(cc: &CounterCluster) -> i32 {
    cc.status
        .as_ref()
        .and_then(|s| s.redis.as_ref())
        .and_then(|r| r.password_generation)
        .unwrap_or(0)
}

fn recorded_rotation(cc: &CounterCluster) -> Option<&PasswordRotation> {
    cc.status
        .as_ref()
        .and_then(|s| s.redis.as_ref())
        .and_then(|r| r.password_rotation.as_ref())
}

/// The rotation this reconcile applies: the one recorded, or a new one starting at
/// `AcceptBoth` when the spec asks for another generation than the current one.
pub fn rotation(cc: &CounterCluster) -> Option<PasswordRotation> {
    if let Some(recorded) = recorded_rotation(cc) {
        return Some(recorded.clone());
    }
    let (current, wanted) = (
        current_generation(cc),
        cc.spec.redis.managed.password_generation,
    );
    (wanted != current).then_some(PasswordRotation {
        from: current,
        to: wanted,
        phase: RotationPhase::AcceptBoth,
    })
}

/// The passwords of the step under way.
pub fn password_plan(cc: &CounterCluster) -> PasswordPlan {
    match rotation(cc) {
        None => PasswordPlan {
            client: current_generation(cc),
            also_accepted: None,
        },
        Some(PasswordRotation { from, to, phase }) => match phase {
            RotationPhase::AcceptBoth => PasswordPlan {
                client: from,
                also_accepted: Some(to),
            },
            RotationPhase::UseNew => PasswordPlan {
                client: to,
                also_accepted: Some(from),
            },
            RotationPhase::DropOld => PasswordPlan {
                client: to,
                also_accepted: None,
            },
        },
    }
}

/// The Secret holding generation `generation`'s password: `<name>-redis-auth-<uid8>` for 0,
/// `<name>-redis-auth-<uid8>-<generation>` after.
pub fn password_secret_name(cc: &CounterCluster, generation: i32) -> String {
    let base = redis_base_secret_name(cc);
    if generation == 0 {
        base
    } else {
        format!("{base}-{generation}")
    }
}

/// The generation and rotation the status records after a reconcile that applied
/// [`rotation`]`(cc)`: the next step once this one has `rolled_out` everywhere, the end of
/// the rotation after `DropOld`.
pub fn next_password_state(
    cc: &CounterCluster,
    rolled_out: bool,
) -> (i32, Option<PasswordRotation>) {
    let Some(applied) = rotation(cc) else {
        return (current_generation(cc), None);
    };
    if !rolled_out {
        return (applied.from, Some(applied));
    }
    let next = |phase| {
        Some(PasswordRotation {
            phase,
            ..applied.clone()
        })
    };
    match applied.phase {
        RotationPhase::AcceptBoth => (applied.from, next(RotationPhase::UseNew)),
        RotationPhase::UseNew => (applied.from, next(RotationPhase::DropOld)),
        RotationPhase::DropOld => (applied.to, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CounterClusterSpec, CounterClusterStatus, RedisStatus};

    fn cluster(
        wanted: i32,
        current: Option<i32>,
        rotation: Option<PasswordRotation>,
    ) -> CounterCluster {
        let mut cc = CounterCluster::new("likes", CounterClusterSpec::default());
        cc.spec.redis.managed.password_generation = wanted;
        cc.status = Some(CounterClusterStatus {
            redis: Some(RedisStatus {
                password_generation: current,
                password_rotation: rotation,
                ..RedisStatus::default()
            }),
            ..CounterClusterStatus::default()
        });
        cc
    }

    fn step(phase: RotationPhase) -> Option<PasswordRotation> {
        Some(PasswordRotation {
            from: 0,
            to: 1,
            phase,
        })
    }

    #[test]
    fn without_a_rotation_every_pod_uses_the_current_generation_alone() {
        let cc = cluster(0, None, None);
        assert_eq!(
            password_plan(&cc),
            PasswordPlan {
                client: 0,
                also_accepted: None
            }
        );
        assert_eq!(next_password_state(&cc, true), (0, None));
        assert_eq!(password_secret_name(&cc, 0), "likes-redis-auth");
        assert_eq!(password_secret_name(&cc, 3), "likes-redis-auth-3");
    }

    #[test]
    fn a_rotation_goes_through_its_three_steps_each_once_rolled_out() {
        // A new generation asked for: Redis accepts both, clients keep the old one.
        let mut cc = cluster(1, Some(0), None);
        assert_eq!(
            password_plan(&cc),
            PasswordPlan {
                client: 0,
                also_accepted: Some(1)
            }
        );
        assert_eq!(
            next_password_state(&cc, false),
            (0, step(RotationPhase::AcceptBoth))
        );
        // Recorded, and until it has rolled out it stays.
        cc = cluster(1, Some(0), step(RotationPhase::AcceptBoth));
        assert_eq!(
            next_password_state(&cc, false),
            (0, step(RotationPhase::AcceptBoth))
        );
        assert_eq!(
            next_password_state(&cc, true),
            (0, step(RotationPhase::UseNew))
        );
        cc = cluster(1, Some(0), step(RotationPhase::UseNew));
        assert_eq!(
            password_plan(&cc),
            PasswordPlan {
                client: 1,
                also_accepted: Some(0)
            }
        );
        assert_eq!(
            next_password_state(&cc, true),
            (0, step(RotationPhase::DropOld))
        );
        cc = cluster(1, Some(0), step(RotationPhase::DropOld));
        assert_eq!(
            password_plan(&cc),
            PasswordPlan {
                client: 1,
                also_accepted: None
            }
        );
        assert_eq!(next_password_state(&cc, true), (1, None));
        cc = cluster(1, Some(1), None);
        assert_eq!(
            password_plan(&cc),
            PasswordPlan {
                client: 1,
                also_accepted: None
            }
        );
    }

    #[test]
    fn a_newer_generation_waits_for_the_rotation_under_way() {
        let cc = cluster(2, Some(0), step(RotationPhase::UseNew));
        assert_eq!(
            password_plan(&cc),
            PasswordPlan {
                client: 1,
                also_accepted: Some(0)
            }
        );
        let cc = cluster(2, Some(0), step(RotationPhase::DropOld));
        assert_eq!(next_password_state(&cc, true), (1, None));
        // The next reconcile starts 1 → 2.
        let cc = cluster(2, Some(1), None);
        assert_eq!(
            next_password_state(&cc, false),
            (
                1,
                Some(PasswordRotation {
                    from: 1,
                    to: 2,
                    phase: RotationPhase::AcceptBoth
                })
            )
        );
    }
}
