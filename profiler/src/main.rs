//! The `profiler` binary: parses the command line, runs the library, prints
//! the end-of-run summary, and turns errors into a message and a non-zero exit.

mod cli;
mod end_summary;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        cli::Command::Record(args) => {
            let config = args.into_config()?;
            let report = runtime.block_on(profiler::record::record(config))?;
            eprint!("{}", end_summary::render(&report));
            Ok(())
        }
    }
}

/// Each mapped file of a profiled process is held open until symbolization;
/// a system-wide recording can need more than the default soft limit of 1024.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
