//! The counter side of the gRPC API: validates each call with the same rules as the REST
//! contract and runs it on a [`CounterBackend`] (the local engine). A batch's items are queued
//! together, so they share one coalesced flush, and each gets its own outcome.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::pb::counter_service_server::CounterService;
use super::pb::{self, increment_outcome};
use super::{status_from_counter, status_from_invalid};
use crate::counter::{Acknowledged, CounterBackend};
use crate::domain::policy::CounterPolicies;
use crate::domain::rules::{self as validate, Limits};
use crate::domain::{CounterKey, Period};

pub struct CounterGrpcService<B> {
    backend: Arc<B>,
    limits: Limits,
    policies: Arc<CounterPolicies>,
}

impl<B> CounterGrpcService<B> {
    pub fn new(backend: Arc<B>, limits: Limits, policies: Arc<CounterPolicies>) -> Self {
        Self {
            backend,
            limits,
            policies,
        }
    }
}

fn counter_key(id: Option<&pb::CounterId>) -> Result<CounterKey, Status> {
    let id = id.ok_or_else(|| Status::invalid_argument("counter: required"))?;
    validate::resource_id("resource_id", &id.resource_id).map_err(|e| status_from_invalid(&e))?;
    validate::counter_type("counter_type", &id.counter_type)
        .map_err(|e| status_from_invalid(&e))?;
    Ok(CounterKey::new(&id.counter_type, &id.resource_id))
}

/// The request's `user_id`; proto3 has no absent string, so empty means none was given.
fn user_id(req: &pb::IncrementRequest) -> Option<&str> {
    Some(req.user_id.as_str()).filter(|u| !u.is_empty())
}

impl<B: CounterBackend> CounterGrpcService<B> {
    fn validated_increment(&self, req: &pb::IncrementRequest) -> Result<CounterKey, Status> {
        let key = counter_key(req.counter.as_ref())?;
        validate::user_id(key.counter_type(), user_id(req), &self.policies)
            .map_err(|e| status_from_invalid(&e))?;
        validate::increment(
            key.counter_type(),
            req.increment,
            &self.limits,
            &self.policies,
        )
        .map_err(|e| status_from_invalid(&e))?;
        if !req.idempotency_key.is_empty() {
            validate::idempotency_key(req.idempotency_key.as_bytes())
                .map_err(|e| status_from_invalid(&e))?;
        }
        Ok(key)
    }

    async fn apply(&self, req: &pb::IncrementRequest) -> Result<Acknowledged, Status> {
        let key = self.validated_increment(req)?;
        let idempotency_key = Some(req.idempotency_key.as_str()).filter(|k| !k.is_empty());
        self.backend
            .increment(key, req.increment, user_id(req), idempotency_key)
            .await
            .map_err(|e| status_from_counter(&e))
    }
}

#[tonic::async_trait]
impl<B: CounterBackend> CounterService for CounterGrpcService<B> {
    async fn increment(
        &self,
        request: Request<pb::IncrementRequest>,
    ) -> Result<Response<pb::IncrementResponse>, Status> {
        let ack = self.apply(request.get_ref()).await?;
        Ok(Response::new(pb::IncrementResponse {
            current_value: ack.current_value,
            not_counted: !ack.counted,
            replayed: ack.replayed,
        }))
    }

    async fn increment_batch(
        &self,
        request: Request<pb::IncrementBatchRequest>,
    ) -> Result<Response<pb::IncrementBatchResponse>, Status> {
        let items = request.into_inner().items;
        validate::increment_batch("items", items.len()).map_err(|e| status_from_invalid(&e))?;
        let results = futures::future::join_all(items.iter().map(|item| self.apply(item))).await;
        let outcomes = results
            .into_iter()
            .map(|r| match r {
                Ok(ack) => pb::IncrementOutcome {
                    result: Some(increment_outcome::Result::CurrentValue(ack.current_value)),
                    not_counted: !ack.counted,
                    replayed: ack.replayed,
                },
                Err(s) => pb::IncrementOutcome {
                    result: Some(increment_outcome::Result::Error(pb::ItemError {
                        code: s.code() as i32,
                        message: s.message().to_string(),
                    })),
                    not_counted: false,
                    replayed: false,
                },
            })
            .collect();
        Ok(Response::new(pb::IncrementBatchResponse { outcomes }))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let key = counter_key(request.get_ref().counter.as_ref())?;
        let current_value = self
            .backend
            .get(key)
            .await
            .map_err(|e| status_from_counter(&e))?;
        Ok(Response::new(pb::GetResponse { current_value }))
    }

    async fn batch_get(
        &self,
        request: Request<pb::BatchGetRequest>,
    ) -> Result<Response<pb::BatchGetResponse>, Status> {
        let counters = &request.get_ref().counters;
        validate::batch_queries("counters", counters.len(), &self.limits)
            .map_err(|e| status_from_invalid(&e))?;
        let keys = counters
            .iter()
            .map(|id| counter_key(Some(id)))
            .collect::<Result<Vec<_>, _>>()?;
        let values = self
            .backend
            .get_many(keys)
            .await
            .map_err(|e| status_from_counter(&e))?;
        Ok(Response::new(pb::BatchGetResponse { values }))
    }

    async fn reset(
        &self,
        request: Request<pb::ResetRequest>,
    ) -> Result<Response<pb::ResetResponse>, Status> {
        let key = counter_key(request.get_ref().counter.as_ref())?;
        let outcome = self
            .backend
            .reset(key)
            .await
            .map_err(|e| status_from_counter(&e))?;
        Ok(Response::new(pb::ResetResponse {
            previous_value: outcome.previous_value,
        }))
    }

    async fn leaderboard(
        &self,
        request: Request<pb::LeaderboardRequest>,
    ) -> Result<Response<pb::LeaderboardResponse>, Status> {
        let req = request.get_ref();
        validate::counter_type("counter_type", &req.counter_type)
            .map_err(|e| status_from_invalid(&e))?;
        let period = period_from_pb(req.period)?;
        let limit = validate::leaderboard_limit("limit", req.limit.into())
            .map_err(|e| status_from_invalid(&e))?;
        let entries = self
            .backend
            .leaderboard(&req.counter_type, period, limit)
            .await
            .map_err(|e| status_from_counter(&e))?;
        Ok(Response::new(pb::LeaderboardResponse {
            entries: entries
                .into_iter()
                .map(|e| pb::RankedEntry {
                    resource_id: e.resource_id,
                    count: e.count,
                })
                .collect(),
        }))
    }
}

fn period_from_pb(value: i32) -> Result<Period, Status> {
    match pb::Period::try_from(value) {
        Ok(pb::Period::Hour) => Ok(Period::Hour),
        Ok(pb::Period::Day) | Ok(pb::Period::Unspecified) => Ok(Period::Day),
        Ok(pb::Period::Week) => Ok(Period::Week),
        Ok(pb::Period::All) => Ok(Period::All),
        Err(_) => Err(Status::invalid_argument("period: unknown value")),
    }
}
