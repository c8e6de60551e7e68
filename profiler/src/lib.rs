//! The profiler library: everything `profiler record` does, in layers that can
//! be used and tested apart: the eBPF tracer (load, attach, drain), the process
//! manager (captures maps of processes while they live), aggregation and
//! symbolization into a [`profile::Profile`], the outputs, and pushing
//! profiles to Pyroscope ([`upload`]).

pub mod agent;
pub mod aggregate;
pub mod follow;
pub mod output;
pub mod phases;
mod pid_alive;
pub mod process_events;
pub mod processes;
pub mod profile;
pub mod python;
pub mod raw;
pub mod record;
pub mod report;
pub mod summary;
#[cfg(test)]
mod test_support;
pub mod threads;
mod ticker;
pub mod tracer;
pub mod unwind;
pub mod upload;
