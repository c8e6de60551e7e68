//! `profiler agent`: loads the configuration, opens the store and the
//! upload spool, starts the sampler thread, the delivery task and the
//! `/metrics` listener, then waits for signals: SIGINT/SIGTERM flush the
//! current window (stored and spooled), try to push what is spooled for a
//! few seconds, and return; SIGHUP reads the configuration again.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};

use crate::agent::config::{AgentConfig, AgentOverrides, ConfigError};
use crate::agent::deliver::deliver;
use crate::agent::metrics::Metrics;
use crate::agent::metrics_server::{self, ListenError};
use crate::agent::pyroscope::{ClientError, ClientOptions, PyroscopeClient};
use crate::agent::sampler::{self, Control};
use crate::agent::spool::{Spool, SpoolError};
use crate::agent::store::{Store, StoreError};
use crate::tracer::TracerError;

/// How long the agent keeps pushing spooled windows after a stop signal;
/// what is left stays in the spool for the next start.
pub const FINAL_DELIVERY: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Tracer(#[from] TracerError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("cannot set up signal handling: {source}")]
    Signals { source: std::io::Error },
}

/// How the agent ended.
#[derive(Clone, Copy, Debug, Default)]
pub struct AgentSummary {
    pub windows: u64,
    pub profiles: u64,
    /// Windows still in the spool at exit (pushed at the next start).
    pub spooled: usize,
}

/// Where the agent's settings come from; read again on SIGHUP.
#[derive(Clone, Debug, Default)]
pub struct AgentArgs {
    pub config_path: Option<PathBuf>,
    pub overrides: AgentOverrides,
}

impl AgentArgs {
    pub fn load(&self) -> Result<AgentConfig, ConfigError> {
        AgentConfig::load(self.config_path.as_deref(), &self.overrides)
    }
}

fn client_for(config: &AgentConfig) -> Result<Option<PyroscopeClient>, AgentError> {
    match &config.pyroscope {
        None => Ok(None),
        Some(p) => Ok(Some(PyroscopeClient::new(ClientOptions::from_config(p)?)?)),
    }
}

pub async fn run(args: AgentArgs) -> Result<AgentSummary, AgentError> {
    let config = args.load()?;
    let store = Store::open(&config.data_dir)?;
    let spool = match &config.pyroscope {
        Some(p) => Some(Arc::new(Spool::open(
            config.spool_dir(),
            p.spool_max_bytes,
        )?)),
        None => None,
    };
    let client = client_for(&config)?;
    let metrics = Arc::new(Metrics::default());
    let listener = metrics_server::bind(config.metrics.listen).await?;
    let signals = |kind| signal(kind).map_err(|source| AgentError::Signals { source });
    let (mut sigint, mut sigterm, mut sighup) = (
        signals(SignalKind::interrupt())?,
        signals(SignalKind::terminate())?,
        signals(SignalKind::hangup())?,
    );
    tracing::info!(
        data_dir = %config.data_dir.display(),
        pyroscope = config.pyroscope.as_ref().map(|p| p.url.as_str()).unwrap_or("(none)"),
        metrics = %config.metrics.listen,
        "agent starting"
    );
    let server = tokio::spawn(metrics_server::serve(listener, metrics.clone()));

    let spooled = Arc::new(Notify::new());
    let (control, sampler) = sampler::start(
        config.clone(),
        store,
        spool.clone(),
        metrics.clone(),
        spooled.clone(),
    )?;
    let (client_tx, client_rx) = watch::channel(client);
    let (stop_tx, stop_rx) = watch::channel(false);
    let delivery = spool.clone().map(|spool| {
        tokio::spawn(delivery_loop(
            spool,
            client_rx,
            spooled.clone(),
            metrics.clone(),
            config
                .pyroscope
                .as_ref()
                .map(|p| (p.backoff_initial, p.backoff_max)),
            stop_rx,
        ))
    });

    let mut current = config;
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => {
                match args.load() {
                    Ok(new) => {
                        if new.data_dir != current.data_dir || new.metrics != current.metrics
                            || new.pyroscope.is_some() != current.pyroscope.is_some()
                        {
                            tracing::warn!("changes of data_dir, metrics.listen or turning Pyroscope on or off take effect when the agent restarts");
                        }
                        if new.pyroscope != current.pyroscope && spool.is_some() {
                            match client_for(&new) {
                                Ok(Some(client)) => { let _ = client_tx.send(Some(client)); }
                                Ok(None) => {}
                                Err(e) => tracing::error!(error = %e, "new Pyroscope settings not used"),
                            }
                        }
                        let _ = control.send(Control::Reload(Box::new(new.clone())));
                        current = new;
                    }
                    Err(e) => tracing::error!(error = %e, "configuration not reloaded; keeping the current one"),
                }
            }
        }
    }
    tracing::info!("stopping: flushing the current window");
    let _ = control.send(Control::Stop);
    let summary = tokio::task::spawn_blocking(move || sampler.join())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let _ = stop_tx.send(true);
    if let Some(delivery) = delivery {
        let _ = delivery.await;
    }
    server.abort();
    let spooled = spool.as_ref().map_or(0, |s| s.len());
    tracing::info!(
        windows = summary.windows,
        profiles = summary.profiles,
        still_spooled = spooled,
        "agent stopped"
    );
    Ok(AgentSummary {
        windows: summary.windows,
        profiles: summary.profiles,
        spooled,
    })
}

fn update_delivery_metrics(metrics: &Metrics, spool: &Spool, client: &PyroscopeClient) {
    let counters = client.counters();
    metrics
        .uploads_succeeded
        .store(counters.successes, Ordering::Relaxed);
    metrics
        .uploads_failed
        .store(counters.failures, Ordering::Relaxed);
    metrics
        .uploads_rejected
        .store(counters.rejected, Ordering::Relaxed);
    metrics
        .upload_retries
        .store(counters.retries, Ordering::Relaxed);
    metrics.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
    metrics
        .spool_items
        .store(spool.len() as u64, Ordering::Relaxed);
    metrics
        .spool_dropped
        .store(spool.dropped(), Ordering::Relaxed);
}

/// Empties the spool into Pyroscope whenever a window is spooled; after a
/// failed pass, waits (doubling from `backoff_initial` up to
/// `backoff_max`) before trying again. On stop, one last pass of at most
/// [`FINAL_DELIVERY`]. Never holds up the sampler: it only reads and
/// acknowledges spool files.
async fn delivery_loop(
    spool: Arc<Spool>,
    mut client: watch::Receiver<Option<PyroscopeClient>>,
    spooled: Arc<Notify>,
    metrics: Arc<Metrics>,
    backoff: Option<(Duration, Duration)>,
    mut stop: watch::Receiver<bool>,
) {
    let (initial, max) = backoff.unwrap_or((Duration::from_secs(1), Duration::from_secs(60)));
    let mut wait = initial;
    // Set when stopping: the in-flight pass and the last pass share it.
    let mut deadline = None;
    loop {
        let current = client.borrow_and_update().clone();
        let Some(current) = current else { return };
        let pass = {
            let in_flight = deliver(&spool, &current);
            tokio::pin!(in_flight);
            tokio::select! {
                report = &mut in_flight => Some(report),
                _ = stop.changed() => {
                    // A push may be on the wire: dropping it now could deliver
                    // that window twice (the server took it, the ack never
                    // happened). Let the pass finish, within the stop budget.
                    let at = tokio::time::Instant::now() + FINAL_DELIVERY;
                    deadline = Some(at);
                    let _ = tokio::time::timeout_at(at, &mut in_flight).await;
                    None
                }
            }
        };
        update_delivery_metrics(&metrics, &spool, &current);
        let failed = match pass {
            None => break,
            Some(Ok(report)) => {
                if report.delivered > 0 {
                    tracing::debug!(delivered = report.delivered, "windows pushed");
                }
                if let Some(e) = &report.last_rejection {
                    tracing::warn!(error = %e, rejected = report.rejected, "Pyroscope refused windows; they were dropped");
                }
                match report.stopped {
                    Some(e) => {
                        tracing::warn!(error = %e, spooled = spool.len(), retry_in = ?wait, "cannot push; windows wait in the spool");
                        true
                    }
                    None => false,
                }
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "cannot read the upload spool");
                true
            }
        };
        if failed {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => break,
                _ = client.changed() => {}
            }
            wait = (wait * 2).min(max);
        } else {
            wait = initial;
            tokio::select! {
                _ = spooled.notified() => {}
                _ = stop.changed() => break,
                _ = client.changed() => {}
            }
        }
    }
    // Stopping: the last window was spooled before `stop` was set.
    let current = client.borrow().clone();
    if let Some(current) = current {
        let at = deadline.unwrap_or_else(|| tokio::time::Instant::now() + FINAL_DELIVERY);
        match tokio::time::timeout_at(at, deliver(&spool, &current)).await {
            Ok(Ok(report)) if report.stopped.is_none() => {
                tracing::info!(delivered = report.delivered, "spool emptied");
            }
            _ => tracing::warn!(
                spooled = spool.len(),
                "not every window could be pushed before exit; they stay in the spool for the next start"
            ),
        }
        update_delivery_metrics(&metrics, &spool, &current);
    }
}
