//! The continuous profiling agent (`profiler agent`). Building blocks, each
//! usable and testable without root: the configuration ([`config`]), the
//! local store of windows ([`store`]), the on-disk upload spool ([`spool`]),
//! the Pyroscope ingest client ([`pyroscope`]) and the loop that empties the
//! spool into it ([`deliver`]), the choice of processes ([`targets`]), a
//! window into per-process profiles ([`window`]) and the metrics
//! ([`metrics`]). Put together by the sampler thread ([`sampler`]), the
//! `/metrics` listener ([`metrics_server`]) and [`run`].

pub mod config;
pub mod deliver;
pub mod metrics;
pub mod metrics_server;
pub mod pyroscope;
pub mod run;
pub mod sampler;
pub mod spool;
pub mod store;
pub mod targets;
pub mod window;
