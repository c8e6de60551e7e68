//! Finding the tools the harness compares, and installing the missing ones
//! when root: Debian's `linux-perf` and `bpftrace`, clang for the workloads,
//! and `cargo install inferno` for perf's flame-graph pipeline.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::tools;

/// `(command, Debian package)`.
const APT: [(&str, &str); 3] = [
    ("perf", "linux-perf"),
    ("bpftrace", "bpftrace"),
    ("clang", "clang"),
];

/// The inferno binaries perf's pipeline needs.
pub const INFERNO: [&str; 2] = ["inferno-collapse-perf", "inferno-flamegraph"];

/// Installs what is missing (unless `install` is false) and fails with
/// what to install when that is not possible.
pub fn ensure(install: bool) -> Result<()> {
    let missing: Vec<&str> = APT
        .iter()
        .filter(|(cmd, _)| !tools::has_command(cmd))
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        if !install || !tools::is_root() {
            bail!(
                "missing tools: install them with apt-get install -y {}",
                missing.join(" ")
            );
        }
        tools::apt_install(&missing)?;
    }
    if INFERNO.iter().any(|b| cargo_bin(b).is_none()) {
        if !install {
            bail!("inferno is missing: cargo install inferno --locked");
        }
        eprintln!("bench-overhead: installing inferno (cargo install inferno --locked)");
        let status = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["install", "inferno", "--locked"])
            .status()
            .context("running cargo install inferno")?;
        if !status.success() {
            bail!("cargo install inferno --locked failed ({status})");
        }
    }
    Ok(())
}

/// A binary on PATH, or in cargo's bin directory (where `cargo install`
/// puts it, which is not always on PATH under sudo).
pub fn cargo_bin(name: &str) -> Option<PathBuf> {
    if let Some(path) = which(name) {
        return Some(path);
    }
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
    let path = home.join("bin").join(name);
    path.is_file().then_some(path)
}

/// The full path of a command on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
