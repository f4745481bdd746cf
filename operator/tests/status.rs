//! The pure status computation: conditions, transition times, per-component replicas, the
//! Redis state and the endpoint. The clock is frozen: every test passes a fixed `now`.

mod support;

use highpress_operator::crd::{CounterCluster, CounterClusterStatus};
use highpress_operator::reconcile::conditions::{
    DEGRADED, PROGRESSING, READY, REASON_ALL_COMPONENTS_READY, REASON_APPLY_FAILED,
    REASON_AS_EXPECTED, REASON_COMPONENTS_NOT_READY, REASON_INVALID_SPEC, REASON_PAUSED,
    REASON_ROLLING_OUT, REASON_ROLLOUT_COMPLETE, STATUS_FALSE, STATUS_TRUE, STATUS_UNKNOWN,
};
use highpress_operator::reconcile::replication::Replication;
use highpress_operator::reconcile::status::{
    ComponentReadiness, Observed, RedisObserved, compute_status,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use support::{CounterClusterFixture, cluster};

/// 2025-01-01T00:00:00Z, the first reconcile.
fn t0() -> Time {
    Time(Timestamp::from_second(1_735_689_600).expect("a valid timestamp"))
}

/// One minute after [`t0`].
fn t1() -> Time {
    Time(Timestamp::from_second(1_735_689_660).expect("a valid timestamp"))
}

fn generation(mut cc: CounterCluster, generation: i64) -> CounterCluster {
    cc.metadata.generation = Some(generation);
    cc
}

fn ready(desired: i32) -> ComponentReadiness {
    ComponentReadiness {
        desired,
        ready: desired,
    }
}

fn all_ready() -> Observed {
    Observed {
        gateway: ready(2),
        counter: ready(3),
        redis: RedisObserved::Managed(ready(1)),
        invalid_spec: None,
        apply_error: None,
        skipped: Vec::new(),
        certificates: None,
        cert_manager_issuer: None,
        tls_components: Vec::new(),
        rolled_out: true,
    }
}

fn counter_not_ready() -> Observed {
    Observed {
        counter: ComponentReadiness {
            desired: 3,
            ready: 2,
        },
        ..all_ready()
    }
}

fn condition<'a>(status: &'a CounterClusterStatus, type_: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", status.conditions))
}

/// (status, reason) of a condition.
fn state<'a>(status: &'a CounterClusterStatus, type_: &str) -> (&'a str, &'a str) {
    let c = condition(status, type_);
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn all_components_ready_gives_ready_true_and_nothing_progressing_or_degraded() {
    let cc = generation(cluster(), 3);
    let status = compute_status(&cc, &all_ready(), None, t0());

    let types: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, [READY, PROGRESSING, DEGRADED]);
    assert_eq!(
        state(&status, READY),
        (STATUS_TRUE, REASON_ALL_COMPONENTS_READY)
    );
    assert_eq!(
        state(&status, PROGRESSING),
        (STATUS_FALSE, REASON_ROLLOUT_COMPLETE)
    );
    assert_eq!(state(&status, DEGRADED), (STATUS_FALSE, REASON_AS_EXPECTED));
    for c in &status.conditions {
        assert_eq!(c.last_transition_time, t0(), "{}", c.type_);
    }

    let gateway = status.gateway.as_ref().expect("gateway status");
    assert_eq!(
        (
            gateway.replicas,
            gateway.ready_replicas,
            gateway.ready.as_str()
        ),
        (2, 2, "2/2")
    );
    let counter = status.counter.as_ref().expect("counter status");
    assert_eq!(
        (
            counter.replicas,
            counter.ready_replicas,
            counter.ready.as_str()
        ),
        (3, 3, "3/3")
    );
    assert_eq!(status.redis.as_ref().expect("redis status").state, "Ready");
    assert_eq!(
        status.endpoint.as_deref(),
        Some("http://likes-gateway.apps.svc:8080")
    );
}

#[test]
fn counter_not_ready_gives_ready_false_naming_the_counter() {
    let cc = generation(cluster(), 1);
    let status = compute_status(&cc, &counter_not_ready(), None, t0());

    assert_eq!(
        state(&status, READY),
        (STATUS_FALSE, REASON_COMPONENTS_NOT_READY)
    );
    let ready_message = &condition(&status, READY).message;
    assert_eq!(ready_message, "not ready: counter (2/3 ready)");
    assert!(!ready_message.contains("gateway"), "{ready_message}");
    assert_eq!(
        state(&status, PROGRESSING),
        (STATUS_TRUE, REASON_ROLLING_OUT)
    );
    assert_eq!(
        condition(&status, PROGRESSING).message,
        "waiting for counter (2/3 ready)"
    );
    assert_eq!(state(&status, DEGRADED), (STATUS_FALSE, REASON_AS_EXPECTED));
    assert_eq!(
        status.counter.as_ref().expect("counter status").ready,
        "2/3"
    );
}

#[test]
fn every_component_short_of_replicas_is_named_in_order() {
    let cc = generation(cluster(), 1);
    let observed = Observed {
        gateway: ComponentReadiness {
            desired: 2,
            ready: 0,
        },
        redis: RedisObserved::Managed(ComponentReadiness {
            desired: 1,
            ready: 0,
        }),
        ..counter_not_ready()
    };
    let status = compute_status(&cc, &observed, None, t0());

    assert_eq!(
        condition(&status, READY).message,
        "not ready: gateway (0/2 ready), counter (2/3 ready), redis (0/1 ready)"
    );
    assert_eq!(
        status.redis.as_ref().expect("redis status").state,
        "NotReady"
    );
}

#[test]
fn transition_time_is_kept_while_a_condition_keeps_its_status() {
    let cc = generation(cluster(), 1);
    let first = compute_status(&cc, &counter_not_ready(), None, t0());
    let second = compute_status(&cc, &counter_not_ready(), Some(&first), t1());

    for type_ in [READY, PROGRESSING, DEGRADED] {
        assert_eq!(
            condition(&second, type_).last_transition_time,
            t0(),
            "{type_}"
        );
    }
}

#[test]
fn transition_time_moves_only_for_the_conditions_that_flip() {
    let cc = generation(cluster(), 1);
    let rolling = compute_status(&cc, &counter_not_ready(), None, t0());
    let done = compute_status(&cc, &all_ready(), Some(&rolling), t1());

    // Ready False -> True and Progressing True -> False flip; Degraded stays False.
    assert_eq!(
        state(&done, READY),
        (STATUS_TRUE, REASON_ALL_COMPONENTS_READY)
    );
    assert_eq!(condition(&done, READY).last_transition_time, t1());
    assert_eq!(condition(&done, PROGRESSING).last_transition_time, t1());
    assert_eq!(condition(&done, DEGRADED).last_transition_time, t0());
}

#[test]
fn a_changed_reason_with_the_same_status_keeps_the_transition_time() {
    let cc = generation(cluster(), 1);
    let not_ready = compute_status(&cc, &counter_not_ready(), None, t0());
    let observed = Observed {
        apply_error: Some("the server is unavailable".to_owned()),
        ..counter_not_ready()
    };
    let failed = compute_status(&cc, &observed, Some(&not_ready), t1());

    // Ready stays False (reason changes), Degraded flips to True.
    assert_eq!(state(&failed, READY), (STATUS_FALSE, REASON_APPLY_FAILED));
    assert_eq!(condition(&failed, READY).last_transition_time, t0());
    assert_eq!(condition(&failed, DEGRADED).last_transition_time, t1());
}

#[test]
fn invalid_spec_is_degraded_not_ready_and_not_progressing() {
    let cc = generation(cluster(), 4);
    let observed = Observed {
        invalid_spec: Some("gateway.service.port 8080 clashes with the metrics port".to_owned()),
        ..all_ready()
    };
    let status = compute_status(&cc, &observed, None, t0());

    assert_eq!(state(&status, DEGRADED), (STATUS_TRUE, REASON_INVALID_SPEC));
    assert_eq!(state(&status, READY), (STATUS_FALSE, REASON_INVALID_SPEC));
    assert_eq!(
        state(&status, PROGRESSING),
        (STATUS_FALSE, REASON_INVALID_SPEC)
    );
    assert_eq!(
        condition(&status, DEGRADED).message,
        "invalid spec: gateway.service.port 8080 clashes with the metrics port"
    );
}

#[test]
fn invalid_spec_wins_over_an_apply_error() {
    let cc = generation(cluster(), 4);
    let observed = Observed {
        invalid_spec: Some("bad".to_owned()),
        apply_error: Some("also bad".to_owned()),
        ..all_ready()
    };
    let status = compute_status(&cc, &observed, None, t0());
    assert_eq!(state(&status, DEGRADED), (STATUS_TRUE, REASON_INVALID_SPEC));
}

#[test]
fn apply_error_is_degraded_with_the_error_in_the_message() {
    let cc = generation(cluster(), 2);
    let observed = Observed {
        apply_error: Some("Deployment likes-counter: 409 Conflict".to_owned()),
        ..all_ready()
    };
    let status = compute_status(&cc, &observed, None, t0());

    assert_eq!(state(&status, DEGRADED), (STATUS_TRUE, REASON_APPLY_FAILED));
    assert_eq!(state(&status, READY), (STATUS_FALSE, REASON_APPLY_FAILED));
    assert_eq!(
        state(&status, PROGRESSING),
        (STATUS_FALSE, REASON_APPLY_FAILED)
    );
    assert_eq!(
        condition(&status, DEGRADED).message,
        "applying objects failed: Deployment likes-counter: 409 Conflict"
    );
}

#[test]
fn paused_stops_progressing_and_keeps_the_other_conditions() {
    let cc = generation(cluster(), 5);
    let before = compute_status(&cc, &all_ready(), None, t0());

    let mut paused = generation(cluster(), 6);
    paused.spec.paused = true;
    // Even with a component down, a paused CounterCluster's Ready is left as it was.
    let status = compute_status(&paused, &counter_not_ready(), Some(&before), t1());

    let progressing = condition(&status, PROGRESSING);
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        (STATUS_FALSE, REASON_PAUSED)
    );
    assert_eq!(progressing.observed_generation, Some(6));
    // Progressing was already False: its transition time stays.
    assert_eq!(progressing.last_transition_time, t0());
    assert_eq!(condition(&status, READY), condition(&before, READY));
    assert_eq!(condition(&status, DEGRADED), condition(&before, DEGRADED));
    assert_eq!(condition(&status, READY).observed_generation, Some(5));
    assert_eq!(status.observed_generation, Some(6));
}

#[test]
fn paused_with_no_previous_status_reports_unknown() {
    let mut cc = generation(cluster(), 1);
    cc.spec.paused = true;
    let status = compute_status(&cc, &all_ready(), None, t0());

    assert_eq!(state(&status, READY), (STATUS_UNKNOWN, REASON_PAUSED));
    assert_eq!(state(&status, DEGRADED), (STATUS_UNKNOWN, REASON_PAUSED));
    assert_eq!(state(&status, PROGRESSING), (STATUS_FALSE, REASON_PAUSED));
}

#[test]
fn observed_generation_is_propagated_to_the_status_and_every_condition() {
    let cc = generation(cluster(), 7);
    let status = compute_status(&cc, &counter_not_ready(), None, t0());

    assert_eq!(status.observed_generation, Some(7));
    for c in &status.conditions {
        assert_eq!(c.observed_generation, Some(7), "{}", c.type_);
    }
}

#[test]
fn external_redis_is_reported_as_external_and_never_blocks_ready() {
    let cc = generation(
        cluster().with_external_redis("rediss://redis.example:6380", None, false),
        1,
    );
    let observed = Observed {
        redis: RedisObserved::External,
        ..all_ready()
    };
    let status = compute_status(&cc, &observed, None, t0());

    assert_eq!(
        status.redis.as_ref().expect("redis status").state,
        "External"
    );
    assert_eq!(
        state(&status, READY),
        (STATUS_TRUE, REASON_ALL_COMPONENTS_READY)
    );
}

#[test]
fn endpoint_uses_the_gateway_service_port_and_namespace() {
    let mut cc = generation(cluster(), 1);
    cc.spec.gateway.service.port = 9090;
    cc.metadata.namespace = Some("prod".to_owned());
    let status = compute_status(&cc, &all_ready(), None, t0());

    assert_eq!(
        status.endpoint.as_deref(),
        Some("http://likes-gateway.prod.svc:9090")
    );
}

#[test]
fn status_serializes_with_the_crd_field_names() {
    let cc = generation(cluster(), 2);
    let status = compute_status(&cc, &counter_not_ready(), None, t0());
    let json = serde_json::to_value(&status).expect("status serializes");

    assert_eq!(json["observedGeneration"], 2);
    assert_eq!(json["counter"]["readyReplicas"], 2);
    assert_eq!(json["counter"]["ready"], "2/3");
    assert_eq!(json["conditions"][0]["type"], "Ready");
    assert_eq!(
        json["conditions"][0]["lastTransitionTime"],
        "2025-01-01T00:00:00Z"
    );
    assert_eq!(json["conditions"][0]["observedGeneration"], 2);
}

#[test]
fn replicated_redis_reports_ready_pods_and_sentinels_and_waits_for_both() {
    let mut cc = generation(cluster(), 1);
    cc.spec.redis.managed.replicas = 3;
    let observed = |redis: i32, sentinels: i32| Observed {
        redis: RedisObserved::Replicated {
            redis: ComponentReadiness {
                desired: 3,
                ready: redis,
            },
            sentinels: ComponentReadiness {
                desired: 3,
                ready: sentinels,
            },
            replication: Replication::Known {
                primary: "test-redis-0".to_owned(),
                in_sync: 2,
            },
        },
        ..all_ready()
    };

    let status = compute_status(&cc, &observed(3, 2), None, t0());
    let redis = status.redis.as_ref().expect("redis status");
    assert_eq!(redis.state, "NotReady");
    assert_eq!(
        (
            redis.replicas,
            redis.ready_replicas,
            redis.sentinels,
            redis.ready_sentinels
        ),
        (Some(3), Some(3), Some(3), Some(2))
    );
    assert_eq!(
        state(&status, READY),
        (STATUS_FALSE, REASON_COMPONENTS_NOT_READY)
    );
    assert_eq!(
        condition(&status, READY).message,
        "not ready: redis-sentinel (2/3 ready)"
    );
    let json = serde_json::to_value(&status).expect("status serializes");
    assert_eq!(json["redis"]["readySentinels"], 2);
    assert_eq!(json["redis"]["readyReplicas"], 3);

    let status = compute_status(&cc, &observed(2, 3), None, t0());
    assert_eq!(
        condition(&status, READY).message,
        "not ready: redis (2/3 ready)"
    );

    let status = compute_status(&cc, &observed(3, 3), None, t0());
    assert_eq!(status.redis.as_ref().expect("redis").state, "Ready");
    assert_eq!(
        state(&status, READY),
        (STATUS_TRUE, REASON_ALL_COMPONENTS_READY)
    );

    // A single Redis reports its state only, as it always has.
    let status = compute_status(&generation(cluster(), 1), &all_ready(), None, t0());
    let redis = status.redis.expect("redis");
    assert_eq!((redis.replicas, redis.sentinels), (None, None));
}

fn replicated(replication: Replication) -> Observed {
    Observed {
        redis: RedisObserved::Replicated {
            redis: ready(3),
            sentinels: ready(3),
            replication,
        },
        ..all_ready()
    }
}

#[test]
fn replicated_redis_reports_the_primary_and_its_in_sync_replicas() {
    let mut cc = generation(cluster(), 1);
    cc.spec.redis.managed.replicas = 3;
    let with_in_sync = |cc: &CounterCluster, in_sync: i32| {
        let primary = "test-redis-2".to_owned();
        let observed = replicated(Replication::Known { primary, in_sync });
        compute_status(cc, &observed, None, t0())
    };
    let status = with_in_sync(&cc, 2);
    let redis = status.redis.as_ref().expect("redis status");
    assert_eq!(
        (
            redis.state.as_str(),
            redis.primary.as_deref(),
            redis.in_sync_replicas,
            redis.message.as_deref()
        ),
        ("Ready", Some("test-redis-2"), Some(2), None)
    );
    let json = serde_json::to_value(&status).expect("status serializes");
    assert_eq!(json["redis"]["primary"], "test-redis-2");
    assert_eq!(json["redis"]["inSyncReplicas"], 2);

    // Below minReplicasAck (1 by default with three pods), every increment fails: NotReady.
    let status = with_in_sync(&cc, 0);
    let redis = status.redis.as_ref().expect("redis status");
    let why = "0 of 2 replicas in sync, fewer than minReplicasAck 1: increments are answered 503";
    assert_eq!(
        (redis.state.as_str(), redis.message.as_deref()),
        ("NotReady", Some(why))
    );
    assert_eq!(
        condition(&status, READY).message,
        format!("not ready: redis replication ({why})")
    );

    // With minReplicasAck 0 the same set is ready.
    cc.spec.redis.managed.min_replicas_ack = Some(0);
    let status = with_in_sync(&cc, 0);
    assert_eq!(
        state(&status, READY),
        (STATUS_TRUE, REASON_ALL_COMPONENTS_READY)
    );

    // An unknown primary is reported with its reason and leaves readiness to the pods: the
    // operator may be the one that cannot reach the sentinels.
    let status = compute_status(
        &cc,
        &replicated(Replication::Unknown("0 of 3 sentinels answered".to_owned())),
        None,
        t0(),
    );
    let redis = status.redis.as_ref().expect("redis status");
    assert_eq!(
        (
            redis.state.as_str(),
            redis.primary.as_deref(),
            redis.in_sync_replicas,
            redis.message.as_deref()
        ),
        (
            "Ready",
            None,
            None,
            Some("primary unknown: 0 of 3 sentinels answered")
        )
    );
}
