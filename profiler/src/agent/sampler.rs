//! The sampler thread: owns the tracer, the process snapshots and the
//! symbolizer; polls process announcements, rescans dynamic targets, and at
//! every window boundary drains the kernel maps (without pausing them),
//! symbolizes, stores one profile per process and puts it in the upload
//! spool. Nothing here waits on the network: the delivery task is told a
//! window is spooled and does the pushing.
//!
//! It runs on its own OS thread so that symbolizing a big window never
//! delays the async side (signals, `/metrics`, uploads).

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use aya::maps::{MapData, RingBuf};
use symbolizer::Symbolizer;

use crate::agent::config::AgentConfig;
use crate::agent::metrics::{Metrics, SelfUsage};
use crate::agent::pyroscope::Upload;
use crate::agent::spool::Spool;
use crate::agent::store::Store;
use crate::agent::targets::Selection;
use crate::agent::window;
use crate::process_events::ProcessEvents;
use crate::processes::{ProcessTable, Resolver, SETTLE_AFTER};
use crate::tracer::{Tracer, TracerError, TracerOptions};
use crate::{aggregate::AggregateOptions, follow::follow_walker, python::Pythons, unwind::Tables};

/// How often the thread wakes between boundaries (process events, settle).
const POLL: Duration = Duration::from_millis(100);
/// How often exited processes leave the kernel's targets.
const PRUNE: Duration = Duration::from_millis(250);
/// How often dynamic targets (comm regex, cgroup) are looked for again.
const RESCAN: Duration = Duration::from_secs(1);
/// Names the symbolization cache may hold before it is emptied.
pub const MAX_SYMBOL_CACHE: usize = 500_000;
/// Windows a file may go without a lookup before blazesym lets go of it.
const FILE_IDLE_WINDOWS: u64 = 3;

/// Messages to the sampler thread.
#[derive(Debug)]
pub enum Control {
    /// Flush the current window and stop.
    Stop,
    /// New settings (SIGHUP); those that need the eBPF programs reloaded
    /// (frequency) wait for a restart, and say so.
    Reload(Box<AgentConfig>),
}

/// What the sampler did, for the exit log.
#[derive(Clone, Copy, Debug, Default)]
pub struct SamplerSummary {
    pub windows: u64,
    pub profiles: u64,
}

struct Sampler {
    config: AgentConfig,
    selection: Selection,
    /// Dynamic targets added to the kernel's map.
    targeted: BTreeSet<u32>,
    tracer: Tracer,
    ring: Option<RingBuf<MapData>>,
    /// The kernel's fork/exec/mmap records, when they could be opened.
    process_events: Option<ProcessEvents>,
    processes: ProcessTable,
    symbolizer: Symbolizer,
    store: Store,
    spool: Option<Arc<Spool>>,
    metrics: Arc<Metrics>,
    /// Told each time a window is spooled.
    spooled: Arc<tokio::sync::Notify>,
    window_start: SystemTime,
    summary: SamplerSummary,
    /// The unwind tables, kept in step with `processes`.
    unwind: Option<Tables>,
    /// The Python interpreters, kept in step with `processes` too.
    pythons: Option<Pythons>,
}

/// The tracer options the agent uses.
pub fn tracer_options(config: &AgentConfig, selection: &Selection) -> TracerOptions {
    TracerOptions {
        on_cpu: true,
        off_cpu: config.off_cpu,
        min_block_ns: config.min_block.as_nanos().min(u64::MAX as u128) as u64,
        frequency_hz: config.frequency_hz,
        targets: selection.tracer_targets(),
        follow_forks: selection.follow_forks(),
        windowed: true,
        unwind: config.unwind,
        // The config checked the size.
        unwind_rows: crate::unwind::rows_in(config.unwind_memory)
            .unwrap_or(profiler_common::UNWIND_ROWS_DEFAULT),
        python: config.python,
        ..TracerOptions::default()
    }
}

/// Starts sampling now (errors such as missing privileges come back here),
/// then hands the tracer to a new thread.
pub fn start(
    config: AgentConfig,
    store: Store,
    spool: Option<Arc<Spool>>,
    metrics: Arc<Metrics>,
    spooled: Arc<tokio::sync::Notify>,
) -> Result<(mpsc::Sender<Control>, JoinHandle<SamplerSummary>), TracerError> {
    let selection = Selection::new(&config.targets);
    let options = tracer_options(&config, &selection);
    metrics
        .counts_map_capacity
        .store(options.counts_map_entries.into(), Ordering::Relaxed);
    metrics
        .stacks_map_capacity
        .store(options.stack_map_entries.into(), Ordering::Relaxed);
    metrics
        .window_seconds
        .store(config.window.as_secs(), Ordering::Relaxed);
    // Opened before sampling starts, so that no mapping of a sampled
    // process is made before the records begin.
    let process_events = match aya::util::online_cpus() {
        Ok(cpus) => ProcessEvents::open(&cpus)
            .map_err(
                |e| tracing::warn!(error = %e, "no process records; processes are read from /proc"),
            )
            .ok(),
        Err(_) => None,
    };
    let mut processes = ProcessTable::default();
    if process_events.is_some() {
        processes.follow_records(!matches!(selection, Selection::Pids(_)));
    }
    let mut tracer = Tracer::start(options)?;
    let ring = tracer.take_events();
    let unwind = Tables::of(&mut tracer);
    let pythons = Pythons::of(&mut tracer);
    if unwind.is_some() {
        processes.track_changes();
    }
    let targeted = match &selection {
        Selection::Matching { .. } => selection.scan(),
        _ => BTreeSet::new(),
    };
    if let crate::tracer::Targets::Pids(pids) = selection.tracer_targets() {
        for pid in pids {
            processes.capture(pid);
        }
    }
    let (sender, receiver) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("sampler".into())
        .spawn(move || {
            // Made here: blazesym's symbolizer may not move between threads.
            let sampler = Sampler {
                config,
                selection,
                targeted,
                tracer,
                ring,
                process_events,
                processes,
                symbolizer: Symbolizer::new(),
                store,
                spool,
                metrics,
                spooled,
                window_start: SystemTime::now(),
                summary: SamplerSummary::default(),
                unwind,
                pythons,
            };
            sampler.run(receiver)
        })
        .expect("spawning the sampler thread");
    Ok((sender, handle))
}

impl Sampler {
    fn run(mut self, control: mpsc::Receiver<Control>) -> SamplerSummary {
        tracing::info!(
            frequency_hz = self.config.frequency_hz,
            window = ?self.config.window,
            targets = ?self.selection,
            "sampling"
        );
        let mut boundary = Instant::now() + self.config.window;
        let mut last_scan = Instant::now();
        let mut last_prune = Instant::now();
        loop {
            let wait = boundary.saturating_duration_since(Instant::now()).min(POLL);
            match control.recv_timeout(wait) {
                Ok(Control::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Ok(Control::Reload(config)) => self.reload(*config),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            self.poll_events(false);
            self.processes.settle(SETTLE_AFTER);
            if self.selection.follow_forks() && last_prune.elapsed() >= PRUNE {
                if let Err(e) = self.tracer.prune_targets() {
                    tracing::warn!(error = %e, "cannot remove exited processes from the targets");
                }
                last_prune = Instant::now();
            }
            if self.selection.is_dynamic() && last_scan.elapsed() >= RESCAN {
                self.rescan();
                last_scan = Instant::now();
            }
            if Instant::now() >= boundary {
                self.end_window();
                boundary += self.config.window;
                if boundary <= Instant::now() {
                    // A window took longer than a window: start afresh.
                    boundary = Instant::now() + self.config.window;
                }
            }
        }
        // The last, partial window: nothing is recorded after the stop, and
        // what was recorded before it is drained and stored.
        self.tracer.stop();
        self.poll_events(true);
        self.end_window();
        tracing::info!(
            windows = self.summary.windows,
            profiles = self.summary.profiles,
            "sampling stopped"
        );
        self.summary
    }

    fn reload(&mut self, config: AgentConfig) {
        if config.frequency_hz != self.config.frequency_hz {
            tracing::warn!(
                running = self.config.frequency_hz,
                configured = config.frequency_hz,
                "the sampling frequency changes only when the agent restarts"
            );
        }
        if (config.off_cpu, config.min_block) != (self.config.off_cpu, self.config.min_block) {
            tracing::warn!(
                running = self.config.off_cpu,
                configured = config.off_cpu,
                "off_cpu and min_block change only when the agent restarts"
            );
        }
        let targets_changed = config.targets != self.config.targets;
        if targets_changed {
            let selection = Selection::new(&config.targets);
            let fixed = |s: &Selection| matches!(s, Selection::All | Selection::Pids(_));
            if fixed(&selection) || fixed(&self.selection) {
                tracing::warn!(
                    "a change between system-wide, PIDs and filters takes effect when the agent restarts"
                );
            } else {
                self.selection = selection;
                self.rescan();
            }
        }
        let mut config = config;
        config.frequency_hz = self.config.frequency_hz;
        config.off_cpu = self.config.off_cpu;
        config.min_block = self.config.min_block;
        if !targets_changed || !self.selection.is_dynamic() {
            config.targets = self.config.targets.clone();
        }
        self.config = config;
        tracing::info!("configuration reloaded");
    }

    /// Announcements, then the kernel's process records (all of them when
    /// `everything`, at the stop).
    fn poll_events(&mut self, everything: bool) {
        self.processes
            .announced_until(crate::process_events::monotonic_ns());
        if let Some(ring) = self.ring.as_mut() {
            crate::record::watch::handle_events(ring, &mut self.processes);
        }
        let Some(events) = self.process_events.as_mut() else {
            self.sync_unwind();
            return;
        };
        if everything {
            events.disable();
        }
        let tracer = &self.tracer;
        let lost = self.processes.follow(events, everything, || {
            tracer.announcements_lost().unwrap_or(u64::MAX)
        });
        if lost > 0 {
            tracing::warn!(
                lost,
                "the kernel dropped process records; live processes are read from /proc again"
            );
        }
        self.metrics
            .process_records_lost
            .store(events.lost(), Ordering::Relaxed);
        self.metrics
            .processes_followed
            .store(self.processes.followed() as u64, Ordering::Relaxed);
        self.sync_unwind();
    }

    /// Brings the kernel's unwind tables and Python interpreters up to
    /// date with the processes held, and reads the Python code objects the
    /// kernel announced.
    fn sync_unwind(&mut self) {
        follow_walker(
            &mut self.processes,
            self.unwind.as_mut(),
            self.pythons.as_mut(),
        );
        if let Some(unwind) = self.unwind.as_ref() {
            self.metrics.set_unwind(&unwind.stats());
        }
        if let Some(pythons) = self.pythons.as_ref() {
            self.metrics.set_python(&pythons.stats());
        }
    }

    /// Adds newly matching processes to the kernel's targets and removes
    /// those that no longer match.
    fn rescan(&mut self) {
        let now = self.selection.scan();
        for &pid in now.difference(&self.targeted) {
            match self.tracer.add_target(pid) {
                Ok(()) => {
                    self.processes.capture(pid);
                    tracing::debug!(pid, "target added");
                }
                Err(e) => tracing::warn!(pid, error = %e, "cannot add a target"),
            }
        }
        for &pid in self.targeted.difference(&now) {
            // Gone already is fine: the exit removed it.
            let _ = self.tracer.remove_target(pid);
        }
        self.targeted = now;
    }

    fn end_window(&mut self) {
        let started = Instant::now();
        let end = SystemTime::now();
        let start = std::mem::replace(&mut self.window_start, end);
        let drain = match self.tracer.next_window() {
            Ok(drain) => drain,
            Err(e) => {
                tracing::error!(error = %e, "cannot drain the window; its samples stay for the next one");
                return;
            }
        };
        let metrics = self.metrics.clone();
        let m = &*metrics;
        m.kernel.set(&drain.stats);
        m.samples_between_windows
            .fetch_add(drain.late_samples, Ordering::Relaxed);
        m.off_cpu_between_windows
            .fetch_add(drain.late_off_cpu, Ordering::Relaxed);
        m.counts_map_entries
            .store(drain.counts_entries, Ordering::Relaxed);
        m.stacks_map_entries
            .store(drain.stacks_entries, Ordering::Relaxed);

        let mut samples = drain.samples;
        // Threads asleep since before the agent started: their stacks are
        // unknown, and one long sleep would outweigh a window's real waits.
        let hidden = crate::raw::hide_before_start(&mut samples);
        m.off_cpu_before_start_nanos
            .fetch_add(hidden.nanos, Ordering::Relaxed);
        let overflow = window::cap_stacks(&mut samples, self.config.max_stacks);
        m.stacks_over_cap
            .fetch_add(overflow.stacks, Ordering::Relaxed);
        m.samples_over_cap
            .fetch_add(overflow.samples, Ordering::Relaxed);
        if overflow.stacks > 0 {
            tracing::warn!(
                stacks = overflow.stacks,
                samples = overflow.samples,
                max_stacks = self.config.max_stacks,
                "more unique stacks than max_stacks in this window; the rest are folded into a marker stack"
            );
        }
        let pids: HashSet<u32> = samples.iter().map(|s| s.tgid).collect();
        for &pid in &pids {
            if self.processes.get(pid).is_none() {
                self.processes.capture(pid);
            }
        }
        self.processes.fill_before_exec();
        let before = self.symbolizer.stats();
        let profiles = window::build(
            samples,
            start,
            end,
            self.config.frequency_hz,
            &mut Resolver {
                symbolizer: &mut self.symbolizer,
                processes: &self.processes,
                pythons: self.pythons.as_mut(),
            },
            &AggregateOptions {
                interpreter_frames: self.config.interpreter_frames,
            },
        );
        let after = self.symbolizer.stats();
        m.symbol_cache_hits
            .fetch_add(after.cache_hits - before.cache_hits, Ordering::Relaxed);
        m.symbol_cache_misses
            .fetch_add(after.cache_misses - before.cache_misses, Ordering::Relaxed);
        m.last_window_stacks.store(
            profiles.iter().map(|p| p.unique_stacks as u64).sum(),
            Ordering::Relaxed,
        );

        let mut samples_written = 0;
        for profile in &profiles {
            self.write(profile);
            samples_written += profile.samples;
        }
        match self
            .store
            .enforce_retention(&self.config.retention, SystemTime::now())
        {
            Ok(removed) => {
                m.retention_removed
                    .fetch_add(removed.len() as u64, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "retention pass failed"),
        }
        if let Ok(bytes) = self.store.total_bytes() {
            m.store_bytes.store(bytes, Ordering::Relaxed);
        }

        // Bounded memory: exited processes go (unless sampled in this
        // window), then names of files nobody maps, then everything if the
        // cache is still over its bound; then the files blazesym holds.
        let evicted = self.processes.evict_exited(&pids);
        if let Some(pythons) = self.pythons.as_mut() {
            pythons.evict_exited();
        }
        if let Some(unwind) = self.unwind.as_mut() {
            unwind.prune(crate::pid_alive::process_exists);
        }
        m.processes_evicted
            .fetch_add(evicted as u64, Ordering::Relaxed);
        let live = self.processes.live_files();
        let dropped = self.symbolizer.evict(&live, MAX_SYMBOL_CACHE);
        m.symbol_cache_evicted.fetch_add(dropped, Ordering::Relaxed);
        self.release_memory();
        m.symbol_cache_entries
            .store(self.symbolizer.cache_len() as u64, Ordering::Relaxed);
        m.processes_cached
            .store(self.processes.len() as u64, Ordering::Relaxed);
        m.windows_written.fetch_add(1, Ordering::Relaxed);
        m.last_window_millis
            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.summary.windows += 1;
        tracing::info!(
            processes = profiles.len(),
            samples = samples_written,
            between_windows = drain.late_samples,
            took_ms = started.elapsed().as_millis() as u64,
            "window stored"
        );
    }

    /// Lets blazesym go of files idle for a few windows, and of all of them
    /// when the agent is over its memory target; then returns freed heap to
    /// the system (glibc keeps it otherwise, and RSS would not go down).
    fn release_memory(&mut self) {
        let m = &self.metrics;
        let mut released = self.symbolizer.release_idle_files(FILE_IDLE_WINDOWS);
        let rss = SelfUsage::read().rss_bytes;
        if rss > self.config.memory_target {
            released += self.symbolizer.release_idle_files(0);
            m.memory_target_releases.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                rss,
                target = self.config.memory_target,
                released,
                "over the memory target"
            );
        }
        self.symbolizer.next_window();
        if released > 0 {
            // SAFETY: malloc_trim has no preconditions.
            unsafe { libc::malloc_trim(0) };
        }
        m.symbol_files_released
            .fetch_add(released as u64, Ordering::Relaxed);
        m.symbol_files_held
            .store(self.symbolizer.files_held() as u64, Ordering::Relaxed);
    }

    fn write(&mut self, profile: &window::WindowProfile) {
        let m = &self.metrics;
        match self.store.write_encoded(&profile.key, &profile.pprof) {
            Ok(_) => {
                m.profiles_written.fetch_add(1, Ordering::Relaxed);
                self.summary.profiles += 1;
            }
            Err(e) => {
                m.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, pid = profile.key.pid, "cannot store a profile");
            }
        }
        let Some(spool) = &self.spool else { return };
        let upload = Upload::window(
            self.config.service_name_for(&profile.key.comm),
            &self.config.hostname,
            &profile.key,
            self.config.frequency_hz,
            profile.pprof.clone(),
        );
        match spool.push(&upload.encode()) {
            Ok(pushed) => {
                m.spool_pushed.fetch_add(1, Ordering::Relaxed);
                if !pushed.dropped.is_empty() {
                    tracing::warn!(
                        dropped = pushed.dropped.len(),
                        "upload spool full: oldest profiles dropped"
                    );
                }
                self.spooled.notify_one();
            }
            Err(e) => {
                m.spool_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "cannot spool a profile for upload");
            }
        }
        m.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
        m.spool_items.store(spool.len() as u64, Ordering::Relaxed);
        m.spool_dropped.store(spool.dropped(), Ordering::Relaxed);
    }
}
