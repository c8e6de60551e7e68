//! Emptying the upload spool into Pyroscope, oldest window first.
//!
//! A window is removed from the spool only once the server took it, or
//! refused it for good (a bad request: sending it again would never work).
//! When the server cannot be reached, or refuses the agent itself (bad
//! credentials, a redirect), delivery stops with that window still first
//! in the spool, so the order holds when it is tried again.
//!
//! Spool reads and writes are small synchronous file operations; callers
//! on a busy runtime may run this on a blocking-friendly task.

use crate::agent::pyroscope::{PushError, PyroscopeClient, Upload};
use crate::agent::spool::{Spool, SpoolError};

/// What one [`deliver`] pass did.
#[derive(Debug, Default)]
pub struct DeliveryReport {
    /// Windows the server took.
    pub delivered: u64,
    /// Windows the server refused for good, removed from the spool.
    pub rejected: u64,
    /// Spool items that could not be decoded (damaged), removed.
    pub damaged: u64,
    /// Why delivery stopped before the spool was empty; the window it was
    /// on is still first in the spool.
    pub stopped: Option<PushError>,
    /// The last refusal, to report.
    pub last_rejection: Option<PushError>,
}

/// Pushes spooled windows, oldest first, until the spool is empty or a push
/// fails in a way that calls for trying again later.
pub async fn deliver(
    spool: &Spool,
    client: &PyroscopeClient,
) -> Result<DeliveryReport, SpoolError> {
    let mut report = DeliveryReport::default();
    while let Some((id, bytes)) = spool.peek_oldest()? {
        let upload = match Upload::decode(&bytes) {
            Ok(upload) => upload,
            Err(_) => {
                spool.ack(id)?;
                report.damaged += 1;
                continue;
            }
        };
        match client.push(&upload).await {
            Ok(_attempts) => {
                spool.ack(id)?;
                report.delivered += 1;
            }
            Err(error) if error.is_about_the_profile() => {
                spool.ack(id)?;
                report.rejected += 1;
                report.last_rejection = Some(error);
            }
            Err(error) => {
                report.stopped = Some(error);
                break;
            }
        }
    }
    Ok(report)
}
