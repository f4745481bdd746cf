//! highpress: a high-throughput counting service. One binary, three modes (standalone now;
//! gateway and counter with the gRPC split). The crate is laid out by responsibility:
//!
//! - [`config`]: the typed configuration, file plus `HIGHPRESS_*` environment;
//! - [`api`]: the REST contract (handlers, validation, errors) over any counter backend;
//! - [`counter`]: the engine: group commit, read cache, leaderboards, store health;
//! - [`store`]: the store trait, key encoding, and the memory and Redis stores;
//! - [`metrics`]: Prometheus metrics;
//! - [`server`]: process lifecycle and graceful shutdown.

pub mod api;
pub mod config;
pub mod counter;
pub mod metrics;
pub mod server;
pub mod store;
