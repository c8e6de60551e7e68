//! Builds `profiler-ebpf` for bpfel-unknown-none and stores the object at
//! `profiler/ebpf/profiler.bpf.o`, where the profiler embeds it. The object is
//! committed so that building the profiler needs stable Rust alone; `--check`
//! rebuilds it and fails when the committed copy is stale.
//!
//! The sources are copied to a fixed staging directory and built there, with
//! that path remapped: a path dependency's location and the rustflags both feed
//! the crate hashes in symbol names, so building in place would make the
//! bytes depend on where the checkout lives.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::tools;

pub const OBJECT: &str = "profiler/ebpf/profiler.bpf.o";
const TARGET: &str = "bpfel-unknown-none";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn rustflags(root: &Path) -> Result<String> {
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    let sysroot = tools::output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let flags = [
        "--cfg=bpf_target_arch=\"x86_64\"".to_string(),
        "-Cdebuginfo=2".to_string(),
        "-Clink-arg=--btf".to_string(),
        format!("--remap-path-prefix={}=/profiler", root.display()),
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
        format!("--remap-path-prefix={}=/rustc", sysroot.trim()),
    ];
    Ok(flags.join("\x1f"))
}

/// Where the eBPF crates are built; fixed so the object does not depend on the checkout path.
fn staging_dir() -> PathBuf {
    PathBuf::from("/tmp/profiler-ebpf-build")
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Copies the two crates the object is built from (sources and manifests, not targets).
fn stage(root: &Path) -> Result<PathBuf> {
    let stage = staging_dir();
    for (krate, files) in [
        ("profiler-ebpf", &["Cargo.toml", "Cargo.lock"][..]),
        ("profiler-common", &["Cargo.toml"][..]),
    ] {
        let dir = stage.join(krate);
        let _ = fs::remove_dir_all(dir.join("src"));
        fs::create_dir_all(&dir)?;
        for file in files {
            fs::copy(root.join(krate).join(file), dir.join(file))
                .with_context(|| format!("copying {krate}/{file}"))?;
        }
        copy_tree(&root.join(krate).join("src"), &dir.join("src"))?;
    }
    Ok(stage)
}

fn compile(root: &Path) -> Result<PathBuf> {
    tools::require_ebpf_toolchain()?;
    let stage = stage(root)?;
    let crate_dir = stage.join("profiler-ebpf");
    let status = Command::new("cargo")
        .current_dir(&crate_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags(&stage)?)
        .env("PATH", tools::path_with_llvm())
        .args([
            "+nightly",
            "build",
            "--release",
            "--bins",
            "--target",
            TARGET,
        ])
        .args(["-Z", "build-std=core"])
        .status()
        .context("running cargo +nightly build for profiler-ebpf")?;
    if !status.success() {
        bail!("building profiler-ebpf failed ({status})");
    }
    Ok(crate_dir
        .join("target")
        .join(TARGET)
        .join("release")
        .join("profiler-ebpf"))
}

pub fn build(check: bool) -> Result<()> {
    let root = workspace_root();
    let built = compile(&root)?;
    let committed = root.join(OBJECT);
    let new = fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    if check {
        let old = fs::read(&committed)
            .with_context(|| format!("reading the committed object {}", committed.display()))?;
        if old != new {
            bail!(
                "{} is stale: it differs from a fresh build of profiler-ebpf ({} vs {} bytes). \
                 Run `cargo xtask build-ebpf` and commit the result.",
                OBJECT,
                old.len(),
                new.len()
            );
        }
        println!("{OBJECT} matches a fresh build ({} bytes)", new.len());
        return Ok(());
    }
    fs::create_dir_all(committed.parent().unwrap())?;
    let tmp = committed.with_extension("o.tmp");
    fs::write(&tmp, &new)?;
    fs::rename(&tmp, &committed)?;
    println!("wrote {OBJECT} ({} bytes)", new.len());
    Ok(())
}
