//! `cargo xtask man [--out-dir DIR]`: the profiler's man pages, made with
//! clap_mangen from its command line: `profiler.1`, and `profiler-NAME.1`
//! for each subcommand (`profiler-record.1`, ...). Each page is written to
//! a temporary file in the directory, then renamed over the old one.
//!
//! The command line is the binary's own `profiler/src/cli.rs`, compiled in
//! here (it is not part of the profiler library), so the pages always say
//! what the binary parses. That needs the profiler library, which xtask
//! builds only with its `man` feature (so that `build-ebpf` and the others
//! work while the library does not build): without it, `man` runs
//! `cargo run -p xtask --features man -- man ...`.

#[cfg(not(feature = "man"))]
pub fn run(out_dir: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    use anyhow::{Context, bail};
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.current_dir(crate::ebpf::workspace_root()).args([
        "run",
        "--quiet",
        "--package",
        "xtask",
        "--features",
        "man",
        "--",
        "man",
    ]);
    if let Some(dir) = out_dir {
        command.arg("--out-dir").arg(dir);
    }
    let status = command
        .status()
        .context("running cargo run -p xtask --features man")?;
    if !status.success() {
        bail!("cargo xtask man failed ({status})");
    }
    Ok(())
}

#[cfg(feature = "man")]
pub use pages::run;

#[cfg(feature = "man")]
mod pages;
