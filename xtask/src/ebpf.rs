//! Builds `profiler-ebpf` for bpfel-unknown-none and stores the object at
//! `profiler/ebpf/profiler.bpf.o`, where the profiler embeds it. The object is
//! committed so that building the profiler needs stable Rust alone.
//!
//! Beside it, `profiler.bpf.o.meta` records a hash of the sources it was built
//! from and the toolchain that built it. `--check` fails when the sources hash
//! differs (the object is stale), and rebuilds: with the same toolchain the
//! bytes must match; with another one (the pinned nightly could not be
//! installed) it says so and only the sources hash is compared.
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
use sha2::{Digest, Sha256};

use crate::tools;

pub const OBJECT: &str = "profiler/ebpf/profiler.bpf.o";
pub const META: &str = "profiler/ebpf/profiler.bpf.o.meta";
const TARGET: &str = "bpfel-unknown-none";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn rustflags(root: &Path, toolchain: &str) -> Result<String> {
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    let sysroot = tools::output(
        Command::new("rustc")
            .arg(format!("+{toolchain}"))
            .args(["--print", "sysroot"]),
    )?;
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

fn compile(root: &Path, toolchain: &str) -> Result<PathBuf> {
    let stage = stage(root)?;
    let crate_dir = stage.join("profiler-ebpf");
    let status = Command::new("cargo")
        .current_dir(&crate_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        // The object is taken from the staging directory's own target
        // directory; a CARGO_TARGET_DIR set for the host build would send
        // it elsewhere and leave a stale object to be copied.
        .env_remove("CARGO_TARGET_DIR")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags(&stage, toolchain)?)
        .env("PATH", tools::path_with_llvm())
        .args([
            &format!("+{toolchain}"),
            "build",
            "--release",
            "--bins",
            "--target",
            TARGET,
        ])
        .args(["-Z", "build-std=core"])
        .status()
        .with_context(|| format!("running cargo +{toolchain} build for profiler-ebpf"))?;
    if !status.success() {
        bail!("building profiler-ebpf failed ({status})");
    }
    let linked = crate_dir
        .join("target")
        .join(TARGET)
        .join("release")
        .join("profiler-ebpf");
    strip_debug(&linked)
}

fn objcopy() -> PathBuf {
    Path::new(tools::LLVM_DIR).join("bin/llvm-objcopy")
}

/// `llvm-objcopy --version`'s LLVM line (`Debian LLVM version 22.1.8`).
fn objcopy_version() -> Result<String> {
    let text = tools::output(Command::new(objcopy()).arg("--version"))?;
    Ok(text
        .lines()
        .find(|l| l.contains("LLVM version"))
        .unwrap_or(text.lines().next().unwrap_or_default())
        .trim()
        .to_string())
}

/// The object without its DWARF sections (beside it, `.stripped`). The
/// DWARF is only there for bpf-linker to make BTF from (`--btf`); `.BTF`
/// and `.BTF.ext` stay. aya parses every section's relocations at load,
/// and `.rel.debug_info` alone held ~8 800: stripping took the object
/// from 504 to 95 KB and ~0.3 ms off every recording.
fn strip_debug(linked: &Path) -> Result<PathBuf> {
    let stripped = linked.with_extension("stripped");
    let objcopy = objcopy();
    let status = Command::new(&objcopy)
        .arg("--strip-debug")
        .arg(linked)
        .arg(&stripped)
        .status()
        .with_context(|| {
            format!(
                "running {}; `cargo xtask install-ebpf-toolchain` installs it",
                objcopy.display()
            )
        })?;
    if !status.success() {
        bail!("{} --strip-debug failed ({status})", objcopy.display());
    }
    Ok(stripped)
}

/// The files the object is built from, relative to the workspace root, sorted.
fn source_files(root: &Path) -> Result<Vec<PathBuf>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in fs::read_dir(root.join(dir))? {
            let entry = entry?;
            let rel = dir.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                walk(root, &rel, out)?;
            } else {
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut files = vec![
        PathBuf::from("profiler-ebpf/Cargo.toml"),
        PathBuf::from("profiler-ebpf/Cargo.lock"),
        PathBuf::from("profiler-common/Cargo.toml"),
    ];
    walk(root, Path::new("profiler-ebpf/src"), &mut files)?;
    walk(root, Path::new("profiler-common/src"), &mut files)?;
    files.sort();
    Ok(files)
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sources_hash(root: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    for file in source_files(root)? {
        let bytes =
            fs::read(root.join(&file)).with_context(|| format!("reading {}", file.display()))?;
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// What `profiler.bpf.o.meta` records, one `key value` per line.
#[derive(Debug, PartialEq, Eq)]
struct Meta {
    sources: String,
    toolchain: String,
    rustc: String,
    bpf_linker: String,
    /// The LLVM of the llvm-objcopy that stripped the object.
    objcopy: String,
    object: String,
}

impl Meta {
    fn render(&self) -> String {
        format!(
            "sources-sha256 {}\ntoolchain {}\nrustc {}\nbpf-linker {}\nllvm-objcopy {}\nobject-sha256 {}\n",
            self.sources, self.toolchain, self.rustc, self.bpf_linker, self.objcopy, self.object
        )
    }

    fn parse(text: &str) -> Option<Meta> {
        let get = |key: &str| {
            text.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|v| v.strip_prefix(' '))
                    .map(str::to_string)
            })
        };
        Some(Meta {
            sources: get("sources-sha256")?,
            toolchain: get("toolchain")?,
            rustc: get("rustc")?,
            bpf_linker: get("bpf-linker")?,
            objcopy: get("llvm-objcopy")?,
            object: get("object-sha256")?,
        })
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data)?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// Holds an exclusive lock on the staging directory: every checkout (worktrees included) stages
/// into the same fixed path, so two builds at once would mix each other's sources.
fn lock_staging() -> Result<fs::File> {
    let path = staging_dir().with_extension("lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    if file.try_lock().is_err() {
        eprintln!(
            "waiting for another build-ebpf to finish (lock {})",
            path.display()
        );
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
    }
    Ok(file)
}

pub fn build(check: bool) -> Result<()> {
    let root = workspace_root();
    let toolchain = tools::ebpf_toolchain()?;
    let _staging = lock_staging()?;
    let built = compile(&root, &toolchain)?;
    let new = fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    let meta = Meta {
        sources: sources_hash(&root)?,
        rustc: tools::output(Command::new("rustc").arg(format!("+{toolchain}")).arg("-V"))?
            .trim()
            .to_string(),
        bpf_linker: tools::output(Command::new("bpf-linker").arg("--version"))?
            .trim()
            .to_string(),
        objcopy: objcopy_version()?,
        toolchain,
        object: sha256_hex(&new),
    };
    let committed = root.join(OBJECT);
    if check {
        return check_committed(&root, &meta, &new);
    }
    fs::create_dir_all(committed.parent().unwrap())?;
    write_atomic(&committed, &new)?;
    write_atomic(&root.join(META), meta.render().as_bytes())?;
    println!("wrote {OBJECT} ({} bytes) and {META}", new.len());
    Ok(())
}

fn check_committed(root: &Path, fresh: &Meta, new: &[u8]) -> Result<()> {
    let old = fs::read(root.join(OBJECT))
        .with_context(|| format!("reading the committed object {OBJECT}"))?;
    let text = fs::read_to_string(root.join(META)).with_context(|| format!("reading {META}"))?;
    let recorded = Meta::parse(&text).with_context(|| format!("{META} is malformed"))?;
    let fix = "Run `cargo xtask build-ebpf` and commit both files.";
    if sha256_hex(&old) != recorded.object {
        bail!(
            "{OBJECT} does not match the hash in {META}: one was changed without the other. {fix}"
        );
    }
    if fresh.sources != recorded.sources {
        bail!("{OBJECT} is stale: the eBPF sources changed since it was built. {fix}");
    }
    let same_tools = (
        &fresh.toolchain,
        &fresh.rustc,
        &fresh.bpf_linker,
        &fresh.objcopy,
    ) == (
        &recorded.toolchain,
        &recorded.rustc,
        &recorded.bpf_linker,
        &recorded.objcopy,
    );
    if !same_tools {
        println!(
            "note: built with {} / {} / {} / {}, the committed object with {} / {} / {} / {}: \
             bytes not compared; the sources match",
            fresh.toolchain,
            fresh.rustc,
            fresh.bpf_linker,
            fresh.objcopy,
            recorded.toolchain,
            recorded.rustc,
            recorded.bpf_linker,
            recorded.objcopy
        );
        return Ok(());
    }
    if old != new {
        bail!(
            "{OBJECT} differs from a fresh build of the same sources with the same toolchain \
             ({} vs {} bytes): the build is not reproducible, or the object was built from \
             uncommitted changes. {fix}",
            old.len(),
            new.len()
        );
    }
    println!(
        "{OBJECT} matches a fresh build ({} bytes, {})",
        new.len(),
        fresh.rustc
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips() {
        let meta = Meta {
            sources: "ab".into(),
            toolchain: "nightly-2026-05-20".into(),
            rustc: "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)".into(),
            bpf_linker: "bpf-linker 0.13.0".into(),
            objcopy: "Debian LLVM version 22.1.8".into(),
            object: "cd".into(),
        };
        assert_eq!(Meta::parse(&meta.render()), Some(meta));
        assert_eq!(Meta::parse("sources-sha256 ab\n"), None);
    }
}
