//! highpress: a high-throughput counting service. One binary, three modes: `standalone` (REST
//! and engine in one process), `counter` (the engine behind gRPC) and `gateway` (REST, routing
//! keys to counters). The crate is laid out by responsibility:
//!
//! - [`domain`]: counter keys and periods, the field rules and limits, per-type policies (imports
//!   nothing else of the crate);
//! - [`config`]: the typed configuration, file plus `HIGHPRESS_*` environment;
//! - [`api`]: the REST contract (handlers, errors) over any counter backend;
//! - [`counter`]: the engine: group commit, read cache, leaderboards, store health;
//! - [`store`]: the store trait, key encoding, and the memory and Redis stores;
//! - [`events`]: counter events to Kafka (schema, bounded hand-off queue, producer);
//! - [`grpc`]: the gateway-to-counter gRPC contract and the counter-side service;
//! - [`gateway`]: discovery, rendezvous routing, circuit breaking and micro-batching;
//! - [`metrics`]: Prometheus metrics;
//! - [`telemetry`]: logs and OpenTelemetry traces;
//! - [`profiling`]: the `/debug/pprof/*` CPU and heap profiles;
//! - [`tls`]: rustls configurations from PEM files, reloaded when they change (REST, gRPC);
//! - [`reload`]: the loop that makes a value again when its files change (API tokens, TLS);
//! - [`migrate`]: `migrate-keys`, copying HighGoPress's Redis keys to highpress's layout;
//! - [`server`]: process lifecycle and graceful shutdown.

pub mod api;
pub mod config;
pub mod counter;
pub mod domain;
pub mod events;
pub mod gateway;
pub mod grpc;
pub mod metrics;
pub mod migrate;
pub mod profiling;
pub mod reload;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
