//! The continuous profiling agent's building blocks, each usable and
//! testable without root: the configuration ([`config`]), the local store of
//! windows ([`store`]), the on-disk upload spool ([`spool`]), the Pyroscope
//! ingest client ([`pyroscope`]) and the loop that empties the spool into it
//! ([`deliver`]).

pub mod config;
pub mod deliver;
pub mod pyroscope;
pub mod spool;
pub mod store;
