//! Micro-batching on the gRPC hop. Increments bound for one counter endpoint wait in a bounded
//! queue; a sender task takes everything queued whenever an in-flight slot is free (smart
//! batching, no timer) and sends it as one `IncrementBatch` call. Each caller gets its own
//! outcome; a transport failure fails the whole call and is reported to the endpoint's breaker.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::Code;
use tonic::transport::Channel;

use super::breaker::Breaker;
use crate::counter::{Acknowledged, CounterError};
use crate::grpc::counter_error_from_code;
use crate::grpc::pb::{self, counter_service_client::CounterServiceClient, increment_outcome};
use crate::metrics::METRICS;
use crate::telemetry;
use opentelemetry::trace::SpanContext;
use tracing::{Instrument, Span};

struct Pending {
    request: pb::IncrementRequest,
    reply: oneshot::Sender<Result<Acknowledged, CounterError>>,
    /// The HTTP request span this increment belongs to, when tracing is enabled.
    trace: Option<SpanContext>,
}

/// Most span links on one batch call's span.
const MAX_BATCH_LINKS: usize = 128;

/// The queue of increments for one endpoint.
pub struct IncrementBatcher {
    queue: mpsc::Sender<Pending>,
}

/// Whether a failed call says the endpoint is unhealthy (as opposed to a per-request answer).
pub fn is_transport_failure(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal
    )
}

impl IncrementBatcher {
    /// Starts the sender task; it ends when the batcher is dropped and the queue is drained.
    pub fn start(
        endpoint: Arc<str>,
        clients: Arc<[CounterServiceClient<Channel>]>,
        breaker: Arc<Breaker>,
        deadline: Duration,
        max_batch: usize,
        max_in_flight: usize,
        queue_capacity: usize,
    ) -> Self {
        let (tx, rx) = mpsc::channel(queue_capacity);
        tokio::spawn(send_batches(
            endpoint,
            rx,
            clients,
            breaker,
            deadline,
            max_batch,
            max_in_flight,
        ));
        Self { queue: tx }
    }

    /// Queues one increment; `trace` is its request's span, the parent or a link of the call.
    pub async fn increment(
        &self,
        request: pb::IncrementRequest,
        trace: Option<SpanContext>,
    ) -> Result<Acknowledged, CounterError> {
        let (reply, answer) = oneshot::channel();
        match self.queue.try_send(Pending {
            request,
            reply,
            trace,
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return Err(CounterError::Overloaded),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(CounterError::Unavailable),
        }
        answer.await.unwrap_or(Err(CounterError::Unavailable))
    }
}

async fn send_batches(
    endpoint: Arc<str>,
    mut queue: mpsc::Receiver<Pending>,
    clients: Arc<[CounterServiceClient<Channel>]>,
    breaker: Arc<Breaker>,
    deadline: Duration,
    max_batch: usize,
    max_in_flight: usize,
) {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let mut next_client = 0usize;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::with_capacity(max_batch.min(64));
        if queue.recv_many(&mut batch, max_batch).await == 0 {
            return;
        }
        let mut client = clients[next_client % clients.len()].clone();
        next_client = next_client.wrapping_add(1);
        let breaker = breaker.clone();
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let _slot = slot;
            METRICS.gateway_batch_size.observe(batch.len() as f64);
            let span = batch_span(&endpoint, &batch);
            let (requests, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|p| (p.request, p.reply)).unzip();
            let mut call = tonic::Request::new(pb::IncrementBatchRequest { items: requests });
            call.set_timeout(deadline);
            if crate::telemetry::enabled() {
                crate::telemetry::inject_grpc(&span, call.metadata_mut());
            }
            let answer = tokio::time::timeout(deadline, client.increment_batch(call))
                .instrument(span.clone())
                .await;
            super::record_call(&span, &endpoint, "IncrementBatch", &answer);
            let result = match answer {
                Ok(Ok(response)) => Ok(response.into_inner().outcomes),
                Ok(Err(status)) => Err(status.code()),
                Err(_) => Err(Code::DeadlineExceeded),
            };
            match result {
                Ok(outcomes) if outcomes.len() == replies.len() => {
                    breaker.record_success();
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let value = match outcome.result {
                            Some(increment_outcome::Result::CurrentValue(v)) => Ok(Acknowledged {
                                current_value: v,
                                counted: !outcome.not_counted,
                                replayed: outcome.replayed,
                            }),
                            Some(increment_outcome::Result::Error(e)) => {
                                Err(counter_error_from_code(Code::from(e.code)))
                            }
                            None => Err(CounterError::Internal),
                        };
                        let _ = reply.send(value);
                    }
                }
                Ok(_) => {
                    tracing::error!("counter answered a batch with the wrong number of outcomes");
                    for reply in replies {
                        let _ = reply.send(Err(CounterError::Internal));
                    }
                }
                Err(code) => {
                    // A call that failed in transit was not acknowledged: 503, never 500.
                    let error = if is_transport_failure(code) {
                        breaker.record_failure();
                        CounterError::Unavailable
                    } else {
                        counter_error_from_code(code)
                    };
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        });
    }
}

/// The `grpc.client` span of one batch call: a child of the first sampled request it carries,
/// linked to every other distinct request span in it.
fn batch_span(endpoint: &str, batch: &[Pending]) -> Span {
    let span = super::client_span("IncrementBatch", endpoint);
    if span.is_none() {
        return span;
    }
    telemetry::adopt(
        &span,
        batch.iter().filter_map(|p| p.trace.as_ref()),
        MAX_BATCH_LINKS,
    );
    span
}
