//! The gateway's counter backend: routes every key to the counter endpoint that owns it
//! (rendezvous hashing over the healthy endpoints whose circuit is not open), micro-batches
//! increments per endpoint, splits batch reads per owner and merges them back in order.
//!
//! Increments are never retried on another endpoint once sent: a call that failed in transit
//! may have been applied, and a retry could count it twice. They fail with 503; the breaker
//! then moves the endpoint's keys to the next endpoint in rendezvous order.
//!
//! Every call is counted per endpoint and method (`highpress_gateway_endpoint_calls_total`,
//! `..._errors_total`); when tracing is enabled it runs in a `grpc.client` span whose W3C trace
//! context travels to the counter in the call's metadata. Reads and resets carry the REST
//! caller's name too (`api.auth`); batched increments mix callers, so they carry none.

pub mod batcher;
pub mod breaker;
pub mod discovery;
pub mod rendezvous;
pub mod tls;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint as ChannelEndpoint};

use crate::api::auth::current_caller;
use crate::config::Config;
use crate::counter::{Acknowledged, CounterBackend, CounterError, ResetOutcome};
use crate::domain::{CounterKey, Period, RankedEntry};
use crate::grpc::pb::{self, counter_service_client::CounterServiceClient};
use crate::grpc::{CALLER_METADATA, counter_error_from_code, period_to_pb};
use crate::metrics::METRICS;
use crate::telemetry;
use crate::tls::ClientTls;
use batcher::{IncrementBatcher, is_transport_failure};
use breaker::Breaker;
use rendezvous::{KeyHash, NodeHash};
use tls::TlsConnector;
use tracing::{Instrument, Span};

/// One counter endpoint: its connection pool, breaker, health and increment batcher.
pub struct CounterEndpoint {
    pub name: String,
    hash: NodeHash,
    clients: Arc<[CounterServiceClient<Channel>]>,
    next_client: AtomicUsize,
    pub breaker: Arc<Breaker>,
    batcher: IncrementBatcher,
    healthy: AtomicBool,
    /// `highpress_gateway_endpoint_up{endpoint}`.
    up_gauge: prometheus::IntGauge,
    channel_for_health: Channel,
}

impl CounterEndpoint {
    /// Prepares connections to `name` (`host:port`) without waiting for them.
    /// With `tls`, over mutual TLS (`grpc.tls`).
    pub fn connect(
        name: &str,
        config: &Config,
        tls: Option<&Arc<ClientTls>>,
    ) -> Result<Self, tonic::transport::Error> {
        let deadline = config.grpc.deadline;
        let channel = || -> Result<Channel, tonic::transport::Error> {
            let endpoint = ChannelEndpoint::from_shared(format!("http://{name}"))?
                .connect_timeout(deadline)
                .http2_keep_alive_interval(config.grpc.counter_service.keep_alive)
                .keep_alive_while_idle(true)
                .tcp_nodelay(true);
            Ok(match tls {
                None => endpoint.connect_lazy(),
                Some(tls) => endpoint.connect_with_connector_lazy(TlsConnector::new(
                    tls.clone(),
                    &config.grpc.tls.server_name,
                )),
            })
        };
        let channels = (0..config.grpc.counter_service.pool_size)
            .map(|_| channel())
            .collect::<Result<Vec<_>, _>>()?;
        let channel_for_health = channels[0].clone();
        let clients: Arc<[CounterServiceClient<Channel>]> = channels
            .into_iter()
            .map(CounterServiceClient::new)
            .collect();
        let breaker = Arc::new(Breaker::for_endpoint(config.breaker.clone(), name));
        let batcher = IncrementBatcher::start(
            Arc::from(name),
            clients.clone(),
            breaker.clone(),
            deadline,
            config.gateway.max_batch,
            config.gateway.max_in_flight,
            config.gateway.queue_capacity,
        );
        Ok(Self {
            name: name.to_string(),
            hash: NodeHash::of(name),
            clients,
            next_client: AtomicUsize::new(0),
            breaker,
            batcher,
            healthy: AtomicBool::new(false),
            up_gauge: METRICS.endpoint_up.with_label_values(&[name]),
            channel_for_health,
        })
    }

    fn client(&self) -> CounterServiceClient<Channel> {
        let i = self.next_client.fetch_add(1, Ordering::Relaxed);
        self.clients[i % self.clients.len()].clone()
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Routable: reported healthy, and its circuit lets calls through.
    fn is_usable(&self) -> bool {
        self.is_healthy() && self.breaker.is_available()
    }
}

/// The current counter endpoints, replaced as a whole when discovery changes them.
#[derive(Default)]
pub struct EndpointSet {
    current: RwLock<Arc<Vec<Arc<CounterEndpoint>>>>,
    /// Mutual TLS to the counters (`grpc.tls`), for every endpoint.
    tls: Option<Arc<ClientTls>>,
    /// Whether the health loop has checked a non-empty set once. Until then the gateway is not
    /// ready: routing on the first answers alone would send the keys of a counter whose check
    /// is still in flight to another one, and move them back a moment later.
    swept: AtomicBool,
}

impl EndpointSet {
    /// An empty set whose endpoints are reached over mutual TLS.
    pub fn with_tls(tls: Arc<ClientTls>) -> Self {
        Self {
            tls: Some(tls),
            ..Self::default()
        }
    }

    /// Records that every endpoint of a non-empty set has been checked once.
    pub fn mark_swept(&self) {
        self.swept.store(true, Ordering::Relaxed);
    }

    fn is_swept(&self) -> bool {
        self.swept.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> Arc<Vec<Arc<CounterEndpoint>>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes `names` the endpoint set, keeping the endpoints (and connections) that stay.
    pub fn update(&self, names: &[String], config: &Config) {
        let old = self.snapshot();
        let mut next = Vec::with_capacity(names.len());
        for name in names {
            if let Some(existing) = old.iter().find(|e| &e.name == name) {
                next.push(existing.clone());
                continue;
            }
            match CounterEndpoint::connect(name, config, self.tls.as_ref()) {
                Ok(e) => {
                    tracing::info!(endpoint = %name, "counter endpoint added");
                    next.push(Arc::new(e));
                }
                Err(e) => tracing::error!(endpoint = %name, error = %e, "invalid counter endpoint"),
            }
        }
        for gone in old.iter().filter(|e| !names.contains(&e.name)) {
            tracing::info!(endpoint = %gone.name, "counter endpoint removed");
            METRICS.forget_endpoint(&gone.name);
        }
        METRICS.gateway_endpoints.set(next.len() as i64);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
    }
}

/// The counter backend of `highpress gateway`.
pub struct GatewayBackend {
    endpoints: Arc<EndpointSet>,
    deadline: Duration,
}

impl GatewayBackend {
    pub fn new(endpoints: Arc<EndpointSet>, config: &Config) -> Self {
        Self {
            endpoints,
            deadline: config.grpc.deadline,
        }
    }

    /// Usable endpoints in rendezvous order for `key`: the owner first.
    fn route(&self, key: &str) -> Vec<Arc<CounterEndpoint>> {
        let all = self.endpoints.snapshot();
        let usable: Vec<&Arc<CounterEndpoint>> = all.iter().filter(|e| e.is_usable()).collect();
        let hashes: Vec<NodeHash> = usable.iter().map(|e| e.hash).collect();
        rendezvous::ranking(&hashes, KeyHash::of(key))
            .into_iter()
            .map(|i| usable[i].clone())
            .collect()
    }

    /// A call with the deadline, carrying the current (client) span's trace context and the
    /// REST caller's name (`api.auth`) as [`CALLER_METADATA`].
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.deadline);
        if telemetry::enabled() {
            telemetry::inject_grpc(&Span::current(), request.metadata_mut());
        }
        if let Some(caller) = current_caller()
            && let Ok(value) = caller.parse()
        {
            request.metadata_mut().insert(CALLER_METADATA, value);
        }
        request
    }

    /// Runs a read on the owner, and on the next endpoint if the owner fails in transit.
    async fn read<T, F, Fut>(
        &self,
        method: &'static str,
        key: &str,
        call: F,
    ) -> Result<T, CounterError>
    where
        F: Fn(CounterServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        for endpoint in self.route(key).into_iter().take(2) {
            if !endpoint.breaker.allow() {
                continue;
            }
            let span = client_span(method, &endpoint.name);
            let pending = {
                let _entered = span.enter();
                call(endpoint.client())
            };
            let answer = tokio::time::timeout(self.deadline, pending)
                .instrument(span.clone())
                .await;
            record_call(&span, &endpoint.name, method, &answer);
            match answer {
                Ok(Ok(response)) => {
                    endpoint.breaker.record_success();
                    return Ok(response.into_inner());
                }
                Ok(Err(status)) if !is_transport_failure(status.code()) => {
                    endpoint.breaker.record_success();
                    return Err(counter_error_from_code(status.code()));
                }
                Ok(Err(_)) | Err(_) => endpoint.breaker.record_failure(),
            }
        }
        Err(CounterError::Unavailable)
    }
}

/// A `grpc.client` span for one call to `endpoint`, or none when tracing is off.
pub(crate) fn client_span(method: &'static str, endpoint: &str) -> Span {
    if !telemetry::enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "grpc.client",
        otel.name = %format!("highpress.counter.v1.CounterService/{method}"),
        otel.kind = "client",
        rpc.system = "grpc",
        rpc.method = method,
        server.address = endpoint,
        rpc.grpc.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    span
}

/// Counts a call to `endpoint` and, if it failed, its error kind: `deadline` (our timeout or
/// DEADLINE_EXCEEDED), `transport` (the endpoint failed; the breaker counts it) or `rejected`
/// (the counter answered an error status). Its client `span` gets the gRPC code, and is marked
/// as an error when the call failed.
pub(crate) fn record_call<T>(
    span: &Span,
    endpoint: &str,
    method: &'static str,
    answer: &Result<Result<T, tonic::Status>, tokio::time::error::Elapsed>,
) {
    METRICS
        .gateway_calls
        .with_label_values(&[endpoint, method])
        .inc();
    let code = match answer {
        Ok(Ok(_)) => tonic::Code::Ok,
        Ok(Err(status)) => status.code(),
        Err(_) => tonic::Code::DeadlineExceeded,
    };
    span.record("rpc.grpc.status_code", code as i32);
    let kind = match answer {
        Ok(Ok(_)) => return,
        Err(_) => "deadline",
        Ok(Err(status)) if status.code() == tonic::Code::DeadlineExceeded => "deadline",
        Ok(Err(status)) if is_transport_failure(status.code()) => "transport",
        Ok(Err(_)) => "rejected",
    };
    telemetry::mark_error(span);
    METRICS
        .gateway_errors
        .with_label_values(&[endpoint, method, kind])
        .inc();
}

fn counter_id(key: &CounterKey) -> pb::CounterId {
    pb::CounterId {
        resource_id: key.resource_id().to_string(),
        counter_type: key.counter_type().to_string(),
    }
}

impl CounterBackend for GatewayBackend {
    async fn increment(
        &self,
        key: CounterKey,
        delta: i64,
        user_id: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<Acknowledged, CounterError> {
        let owner = self
            .route(key.as_str())
            .into_iter()
            .find(|e| e.breaker.allow())
            .ok_or(CounterError::Unavailable)?;
        let trace = telemetry::enabled().then(|| telemetry::span_context(&Span::current()));
        owner
            .batcher
            .increment(
                pb::IncrementRequest {
                    counter: Some(counter_id(&key)),
                    // proto3: empty means none.
                    user_id: user_id.unwrap_or_default().to_string(),
                    increment: delta,
                    idempotency_key: idempotency_key.unwrap_or_default().to_string(),
                },
                trace,
            )
            .await
    }

    /// On the owner, or on the next endpoint if the owner fails in transit: a reset is
    /// idempotent, so unlike an increment it may be retried.
    async fn reset(&self, key: CounterKey) -> Result<ResetOutcome, CounterError> {
        let id = counter_id(&key);
        let response = self
            .read("Reset", key.as_str(), |mut client| {
                let request = self.request(pb::ResetRequest {
                    counter: Some(id.clone()),
                });
                async move { client.reset(request).await }
            })
            .await?;
        Ok(ResetOutcome {
            previous_value: response.previous_value,
        })
    }

    async fn get(&self, key: CounterKey) -> Result<i64, CounterError> {
        let id = counter_id(&key);
        let response = self
            .read("Get", key.as_str(), |mut client| {
                let request = self.request(pb::GetRequest {
                    counter: Some(id.clone()),
                });
                async move { client.get(request).await }
            })
            .await?;
        Ok(response.current_value)
    }

    async fn get_many(&self, keys: Vec<CounterKey>) -> Result<Vec<i64>, CounterError> {
        // Group request positions by owner, one BatchGet per owner, then merge in order.
        let mut groups: Vec<(Arc<CounterEndpoint>, Vec<usize>)> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let owner = self
                .route(key.as_str())
                .into_iter()
                .next()
                .ok_or(CounterError::Unavailable)?;
            match groups.iter_mut().find(|(e, _)| Arc::ptr_eq(e, &owner)) {
                Some((_, positions)) => positions.push(i),
                None => groups.push((owner, vec![i])),
            }
        }
        let calls = groups.iter().map(|(_, positions)| {
            let counters: Vec<pb::CounterId> =
                positions.iter().map(|&i| counter_id(&keys[i])).collect();
            // Every key of a group has the same owner, so routing by the first key reaches it
            // (and the same fallback if it fails).
            let first_key = keys[positions[0]].as_str();
            self.read("BatchGet", first_key, move |mut client| {
                let request = self.request(pb::BatchGetRequest {
                    counters: counters.clone(),
                });
                async move { client.batch_get(request).await }
            })
        });
        let answers = futures::future::join_all(calls).await;
        let mut values = vec![0i64; keys.len()];
        for ((_, positions), answer) in groups.iter().zip(answers) {
            let answer = answer?;
            if answer.values.len() != positions.len() {
                return Err(CounterError::Internal);
            }
            for (&i, v) in positions.iter().zip(answer.values) {
                values[i] = v;
            }
        }
        Ok(values)
    }

    async fn leaderboard(
        &self,
        counter_type: &str,
        period: Period,
        limit: usize,
    ) -> Result<Vec<RankedEntry>, CounterError> {
        let response = self
            .read("Leaderboard", counter_type, |mut client| {
                let request = self.request(pb::LeaderboardRequest {
                    counter_type: counter_type.to_string(),
                    period: period_to_pb(period) as i32,
                    limit: limit as u32,
                });
                async move { client.leaderboard(request).await }
            })
            .await?;
        Ok(response
            .entries
            .into_iter()
            .map(|e| RankedEntry {
                resource_id: e.resource_id,
                count: e.count,
            })
            .collect())
    }

    fn is_ready(&self) -> bool {
        self.endpoints.is_swept() && self.endpoints.snapshot().iter().any(|e| e.is_usable())
    }
}
