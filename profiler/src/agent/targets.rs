//! Which processes the agent profiles: every one (system-wide), fixed PIDs,
//! or those whose command name matches a regular expression or that live in
//! a cgroup (and its descendants). The last two are found by scanning
//! `/proc` or the cgroup's `cgroup.procs` files again every second; the
//! kernel samples only the tgids in its `TARGETS` map.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use regex::Regex;

use crate::agent::config::Targets as ConfigTargets;
use crate::tracer::Targets;

/// The selection, compiled.
#[derive(Clone, Debug)]
pub enum Selection {
    All,
    Pids(Vec<u32>),
    /// Processes matching every filter given.
    Matching {
        comm: Option<Regex>,
        cgroup: Option<PathBuf>,
        pids: Vec<u32>,
    },
}

impl Selection {
    pub fn new(targets: &ConfigTargets) -> Selection {
        if targets.is_system_wide() {
            return Selection::All;
        }
        if targets.comm_regex.is_none() && targets.cgroup.is_none() {
            return Selection::Pids(targets.pids.clone());
        }
        Selection::Matching {
            comm: targets.comm_regex(),
            cgroup: targets.cgroup.clone(),
            pids: targets.pids.clone(),
        }
    }

    /// What the tracer starts with.
    pub fn tracer_targets(&self) -> Targets {
        match self {
            Selection::All => Targets::All,
            Selection::Pids(pids) => Targets::Pids(pids.clone()),
            Selection::Matching { .. } => Targets::Pids(self.scan().into_iter().collect()),
        }
    }

    /// Whether children forked by a target are profiled too: yes for PIDs
    /// (a server's workers) and cgroups (children stay in the cgroup); no
    /// for a command-name filter (a child that execs something else would
    /// not match).
    pub fn follow_forks(&self) -> bool {
        match self {
            Selection::Matching { comm, .. } => comm.is_none(),
            _ => true,
        }
    }

    /// Whether the selection changes as processes come and go.
    pub fn is_dynamic(&self) -> bool {
        matches!(self, Selection::Matching { .. })
    }

    /// The processes matching now (empty for `All` and `Pids`).
    pub fn scan(&self) -> BTreeSet<u32> {
        let Selection::Matching { comm, cgroup, pids } = self else {
            return BTreeSet::new();
        };
        let candidates: BTreeSet<u32> = match cgroup {
            Some(dir) => cgroup_processes(dir),
            None => crate::threads::all_processes().into_iter().collect(),
        };
        let self_pid = std::process::id();
        candidates
            .into_iter()
            .filter(|&pid| pid != self_pid)
            .filter(|pid| pids.is_empty() || pids.contains(pid))
            .filter(|pid| match comm {
                None => true,
                Some(re) => std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| re.is_match(c.trim_end_matches('\n'))),
            })
            .collect()
    }
}

/// The processes of a cgroup (v2) directory and of its descendants.
pub fn cgroup_processes(dir: &Path) -> BTreeSet<u32> {
    let mut pids = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_wide_pids_and_filters() {
        assert!(matches!(
            Selection::new(&ConfigTargets::default()),
            Selection::All
        ));
        let pids = Selection::new(&ConfigTargets {
            pids: vec![1, 2],
            ..ConfigTargets::default()
        });
        assert!(matches!(&pids, Selection::Pids(p) if p == &[1, 2]));
        assert!(pids.follow_forks() && !pids.is_dynamic());
        let by_comm = Selection::new(&ConfigTargets {
            comm_regex: Some("^cargo$|^profiler-".into()),
            ..ConfigTargets::default()
        });
        assert!(by_comm.is_dynamic() && !by_comm.follow_forks());
        // This test process is excluded (the agent never profiles itself),
        // but its parent cargo matches when run under cargo.
        assert!(!by_comm.scan().contains(&std::process::id()));
    }

    #[test]
    fn reads_cgroup_processes_recursively() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.procs"), "10\n11\n").unwrap();
        std::fs::create_dir(dir.path().join("child")).unwrap();
        std::fs::write(dir.path().join("child/cgroup.procs"), "12\n").unwrap();
        assert_eq!(cgroup_processes(dir.path()), BTreeSet::from([10, 11, 12]));
    }
}
