//! Finding and installing the external tools the build and the tests use.

use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};

pub const LLVM_DIR: &str = "/usr/lib/llvm-22";
/// The nightly that builds the eBPF object: the one these machines ship as
/// `nightly`, pinned by date so that a rustup update cannot change the bytes.
pub const PINNED_NIGHTLY: &str = "nightly-2026-05-20";
/// Pinned so that every machine links the eBPF object the same way.
pub const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

pub fn has_command(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

pub fn path_with_llvm() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    format!("{LLVM_DIR}/bin:{path}")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Installs Debian packages that are missing; does nothing when all are there.
pub fn apt_install(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg")
                .args(["-s", p])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {missing:?}: install them (apt-get install -y {})",
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq"])
        .args(&missing))
}

/// Installs py-spy (the Python tests compare with it) with `python3 -m pip`
/// unless a `py-spy` runs already; fails, saying how to install it by hand,
/// when pip cannot or when pip's scripts directory then has no `py-spy`.
pub fn pip_install_py_spy() -> Result<()> {
    // Run, not looked up: pyenv leaves a shim behind that no longer runs.
    if output(Command::new("py-spy").arg("--version")).is_ok() {
        return Ok(());
    }
    let scripts = output(Command::new("python3").args([
        "-c",
        "import sysconfig; print(sysconfig.get_path('scripts'))",
    ]))
    .context("finding python3 (to pip-install py-spy): install python3 and python3-pip")?;
    let py_spy = Path::new(scripts.trim()).join("py-spy");
    if py_spy.is_file() {
        return Ok(());
    }
    eprintln!("xtask: installing py-spy (python3 -m pip install py-spy)");
    run(Command::new("python3").args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "py-spy",
    ]))
    .context("python3 -m pip install py-spy failed: install py-spy by hand")?;
    if !py_spy.is_file() {
        bail!(
            "python3 -m pip install py-spy succeeded but {} is missing: install py-spy by hand",
            py_spy.display()
        );
    }
    Ok(())
}

fn rustc_version(toolchain: &str) -> Option<String> {
    output(Command::new("rustc").arg(format!("+{toolchain}")).arg("-V"))
        .ok()
        .map(|v| v.trim().to_string())
}

/// The toolchain to build the eBPF object with: the pinned nightly if
/// installed, else `nightly` (a note says the bytes may then differ).
pub fn ebpf_toolchain() -> Result<String> {
    require_ebpf_toolchain()?;
    if rustc_version(PINNED_NIGHTLY).is_some() {
        return Ok(PINNED_NIGHTLY.to_string());
    }
    if let Some(version) = rustc_version("nightly") {
        eprintln!("xtask: {PINNED_NIGHTLY} is not installed; building with nightly ({version})");
        return Ok("nightly".to_string());
    }
    bail!("no nightly toolchain: run `cargo xtask install-ebpf-toolchain` first")
}

pub fn install_ebpf_toolchain() -> Result<()> {
    // Never `rustup update` the machine's nightly: install the pinned one beside it.
    let toolchain = if rustc_version(PINNED_NIGHTLY).is_some()
        || run(Command::new("rustup").args([
            "toolchain",
            "install",
            PINNED_NIGHTLY,
            "--profile",
            "minimal",
        ]))
        .is_ok()
    {
        PINNED_NIGHTLY
    } else if rustc_version("nightly").is_some() {
        eprintln!(
            "xtask: cannot install {PINNED_NIGHTLY}; the machine's nightly will build the object"
        );
        "nightly"
    } else {
        bail!("no nightly toolchain and {PINNED_NIGHTLY} cannot be installed");
    };
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", toolchain]))?;
    apt_install(&[
        "llvm-22-dev",
        "libpolly-22-dev",
        "zlib1g-dev",
        "libzstd-dev",
    ])?;
    let installed = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if installed.contains(BPF_LINKER_VERSION) {
        return Ok(());
    }
    run(Command::new("cargo")
        .env("LLVM_PREFIX", LLVM_DIR)
        .env("PATH", path_with_llvm())
        .args([
            "install",
            "--locked",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
        ])
        .args(["--no-default-features", "--features", "llvm-22"]))
}

pub fn require_ebpf_toolchain() -> Result<()> {
    if !has_command("bpf-linker") || !Path::new(LLVM_DIR).exists() {
        bail!("bpf-linker or LLVM 22 is missing: run `cargo xtask install-ebpf-toolchain` first");
    }
    Ok(())
}
