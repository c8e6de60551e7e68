//! Build and test helpers: `cargo xtask build-ebpf [--check]`, `cargo xtask test`,
//! `cargo xtask install-ebpf-toolchain`, `cargo xtask bench-overhead`,
//! `cargo xtask man [--out-dir DIR]`.

mod ebpf;
mod man;
mod overhead;
mod test;
mod tools;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build and test helpers for the profiler workspace")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the eBPF object and store it where the profiler embeds it.
    BuildEbpf {
        /// Build, compare with the committed object, and fail if they differ.
        #[arg(long)]
        check: bool,
    },
    /// Install what building the eBPF object needs: rust-src for nightly, LLVM, bpf-linker.
    InstallEbpfToolchain,
    /// Install the test tools if missing (clang, go) and run every test in the workspace.
    Test {
        /// Extra arguments passed to `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Measure the profiler's overhead side by side with perf and bpftrace
    /// (installs them if missing; needs root).
    BenchOverhead(overhead::Args),
    /// Write the profiler's man pages (profiler.1 and one per subcommand); builds xtask
    /// again with its `man` feature, which needs the profiler library.
    Man {
        /// Where to write them [default: man/ in the cargo target directory].
        #[arg(long = "out-dir")]
        out_dir: Option<std::path::PathBuf>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::BuildEbpf { check } => ebpf::build(check),
        Command::InstallEbpfToolchain => tools::install_ebpf_toolchain(),
        Command::Test { args } => test::run(&args),
        Command::BenchOverhead(args) => overhead::run(&args),
        Command::Man { out_dir } => man::run(out_dir),
    }
}
