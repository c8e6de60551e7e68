//! The profiler binary to measure: `--profiler-bin`, or `cargo build
//! --release -p profiler` in the workspace (so it follows CARGO_TARGET_DIR),
//! and the cargo target directory, where the results go.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The target directory cargo uses for this workspace (`cargo metadata`).
pub fn target_dir(workspace: &Path) -> Result<PathBuf> {
    let out = cargo()
        .current_dir(workspace)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    target_dir_of(&out.stdout)
}

fn target_dir_of(metadata: &[u8]) -> Result<PathBuf> {
    let value: serde_json::Value = serde_json::from_slice(metadata)?;
    let dir = value["target_directory"]
        .as_str()
        .context("no target_directory in cargo metadata")?;
    Ok(PathBuf::from(dir))
}

/// `explicit`, checked, or the release build of the workspace's profiler.
pub fn profiler(workspace: &Path, explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(bin) = explicit {
        if !bin.is_file() {
            bail!("--profiler-bin {} does not exist", bin.display());
        }
        return Ok(bin.canonicalize()?);
    }
    eprintln!("bench-overhead: cargo build --release -p profiler");
    let status = cargo()
        .current_dir(workspace)
        .args(["build", "--release", "-p", "profiler"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!(
            "cargo build --release -p profiler failed ({status}); fix the build or pass \
             --profiler-bin PATH"
        );
    }
    Ok(target_dir(workspace)?.join("release/profiler"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_target_directory() {
        let meta = br#"{"packages":[],"target_directory":"/tmp/t","version":1}"#;
        assert_eq!(target_dir_of(meta).unwrap(), PathBuf::from("/tmp/t"));
        assert!(target_dir_of(br#"{"version":1}"#).is_err());
    }
}
