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
            let mut report = runtime.block_on(profiler::record::record(config))?;
            eprint!("{}", end_summary::render(&report));
            profiler::phases::mark("summary");
            let upload = report.upload.take();
            // The process exits now (as `exit_after` told `record`): the
            // profile's thousands of small allocations are left to it.
            std::mem::forget(report);
            match upload {
                Some(Ok(pushed)) => {
                    eprintln!("uploaded to Pyroscope at {} as {}", pushed.url, pushed.name);
                    Ok(())
                }
                Some(Err(err)) => Err(err.into()),
                None => Ok(()),
            }
        }
        cli::Command::Completions(args) => {
            let mut command = <cli::Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut command, "profiler", &mut script);
            // `profiler completions bash | head` is no error.
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                result => Ok(result?),
            }
        }
        cli::Command::Upload(args) => {
            let upload = args.into_config()?;
            runtime.block_on(profiler::upload::upload_files(
                &upload,
                |path, push, _attempts| {
                    eprintln!(
                        "uploaded {} to Pyroscope at {} as {}",
                        path.display(),
                        upload.config.pyroscope.url,
                        push.ingest_name()
                    );
                },
            ))?;
            Ok(())
        }
        cli::Command::Agent(args) => {
            init_logging();
            let settings = args.into_settings()?;
            // The sampler has its own thread; the runtime serves signals,
            // /metrics and uploads.
            runtime.block_on(profiler::agent::run::run(settings))?;
            Ok(())
        }
        cli::Command::Report(args) => {
            let summary = profiler::report::report(&args.into_config())?;
            let written: Vec<String> = summary
                .outputs
                .iter()
                .map(|o| o.path.display().to_string())
                .collect();
            eprintln!(
                "merged {} window(s) of {} process(es), {} samples; wrote {}",
                summary.windows,
                summary.pids.len(),
                summary.samples,
                written.join(", ")
            );
            for (path, why) in &summary.skipped {
                eprintln!("skipped damaged window {}: {why}", path.display());
            }
            if summary.frequencies.len() > 1 {
                eprintln!(
                    "note: the windows were sampled at different frequencies ({:?} Hz)",
                    summary.frequencies
                );
            }
            Ok(())
        }
    }
}

/// `tracing` logs on stderr, filtered by `RUST_LOG` (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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
