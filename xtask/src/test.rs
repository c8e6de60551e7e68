//! `cargo xtask test`: installs the tools the integration tests use when they
//! are missing (clang builds the test workloads with frame pointers, go's pprof
//! reads our pprof output), then runs every test in the workspace.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{ebpf::workspace_root, tools};

pub fn run(args: &[String]) -> Result<()> {
    if tools::is_root() {
        tools::apt_install(&["clang", "golang-go"])?;
    } else {
        eprintln!("xtask: not root: the integration tests that need root will skip and say so");
    }
    let status = Command::new("cargo")
        .current_dir(workspace_root())
        .args(["test", "--workspace"])
        .args(args)
        .status()?;
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    Ok(())
}
