//! The command line (clap derive), converted into the library's plain config
//! structs; nothing here does any work.

use std::{ffi::OsString, path::PathBuf, time::Duration};

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use profiler::{
    output::Format,
    profile::ProfileKind,
    record::{OutputSpec, RecordConfig, RecordTarget},
};

#[derive(Parser, Debug)]
#[command(
    name = "profiler",
    version,
    about = "A CPU profiler for Linux on eBPF: flame graphs, folded stacks and pprof"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Sample stacks of processes (or the whole system) and write a flame graph, folded stacks or pprof.
    Record(RecordArgs),
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    profiler record -p 1234 -o flame.svg\n  \
    profiler record -p 1234,5678 -d 30s -o flame.svg -o profile.pb.gz\n  \
    profiler record -a -F 999 -d 10 -o system.folded\n  \
    profiler record -o out.pb.gz -- ./my-program args\n  \
    profiler record --mode off-cpu -p 1234 -d 10 -o waits.svg\n  \
    profiler record --mode wall -o wall.pb.gz -- ./my-server")]
pub struct RecordArgs {
    /// What to profile: on-CPU samples (cpu), time blocked or waiting for a CPU (off-cpu), or both in one profile in nanoseconds (wall).
    #[arg(long = "mode", value_enum, default_value_t = Mode::Cpu)]
    pub mode: Mode,
    /// Same as --mode off-cpu.
    #[arg(long = "off-cpu", conflicts_with = "mode")]
    pub off_cpu: bool,
    /// Off-CPU intervals shorter than this are counted but left out of the profile (e.g. 1us, 50us, 1ms) [default: 1us for off-cpu, 0 for wall so that it adds up].
    #[arg(long = "min-block", value_parser = parse_min_block)]
    pub min_block: Option<Duration>,
    /// Processes to profile (comma-separated or repeated); their children are followed.
    #[arg(
        short = 'p',
        long = "pid",
        value_delimiter = ',',
        conflicts_with = "all"
    )]
    pub pids: Vec<u32>,
    /// Profile every process on the system.
    #[arg(short = 'a', long = "all-cpus")]
    pub all: bool,
    /// Samples per second per CPU.
    #[arg(short = 'F', long = "frequency", default_value_t = 99)]
    pub frequency: u64,
    /// How long to record (e.g. 10, 10s, 500ms, 2m); default: until Ctrl-C or the targets exit.
    #[arg(short = 'd', long = "duration", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Output file; repeat for several. Format from the extension: .svg, .folded/.txt, .pb.gz/.pprof.
    #[arg(short = 'o', long = "output", required = true)]
    pub outputs: Vec<PathBuf>,
    /// Output format for every -o file, overriding the extension: svg, folded or pprof.
    #[arg(long = "format")]
    pub format: Option<Format>,
    /// Flame graph title (default: what was profiled).
    #[arg(long = "title")]
    pub title: Option<String>,
    /// No live status line while recording.
    #[arg(long = "no-status")]
    pub no_status: bool,
    /// Unique stacks the kernel can hold; raise it when the summary reports the stack map full.
    #[arg(long = "stack-map-size", default_value_t = 16384, value_parser = clap::value_parser!(u32).range(256..=1_048_576))]
    pub stack_map_size: u32,
    /// The command to run and profile, after `--`.
    #[arg(last = true)]
    pub command: Vec<OsString>,
}

/// `--mode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Cpu,
    OffCpu,
    Wall,
}

fn parse_min_block(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 0, 1us, 50us, 1ms)"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed = match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Ok(Duration::from_secs_f64(secs)),
        Ok(_) => Err("must be greater than zero".to_string()),
        Err(_) => humantime::parse_duration(text).map_err(|e| e.to_string()),
    };
    match parsed {
        Ok(d) if d.is_zero() => Err("must be greater than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (examples: 10, 10s, 500ms, 2m)")),
    }
}

impl RecordArgs {
    pub fn into_config(self) -> Result<RecordConfig> {
        let target = match (self.pids.is_empty(), self.all, self.command.is_empty()) {
            (false, false, true) => RecordTarget::Pids(self.pids),
            (true, true, true) => RecordTarget::All,
            (true, false, false) => RecordTarget::Command(self.command),
            (true, false, true) => {
                bail!("nothing to profile: give -p PID, -a, or a command after --")
            }
            _ => bail!("give only one of -p PID, -a, or a command after --"),
        };
        let outputs = self
            .outputs
            .into_iter()
            .map(|path| {
                let format = match self.format {
                    Some(format) => format,
                    None => Format::from_path(&path)?,
                };
                Ok(OutputSpec { path, format })
            })
            .collect::<Result<Vec<_>>>()?;
        let mode = match (self.off_cpu, self.mode) {
            (true, _) | (_, Mode::OffCpu) => ProfileKind::OffCpu,
            (_, Mode::Cpu) => ProfileKind::Cpu,
            (_, Mode::Wall) => ProfileKind::Wall,
        };
        let min_block = self.min_block.unwrap_or(match mode {
            ProfileKind::OffCpu => Duration::from_micros(1),
            _ => Duration::ZERO,
        });
        let mut config = RecordConfig {
            target,
            mode,
            min_block,
            frequency_hz: self.frequency,
            duration: self.duration,
            outputs,
            live_status: !self.no_status,
            stack_map_entries: self.stack_map_size,
            ..RecordConfig::default()
        };
        config.output_options.svg.title = self.title;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<RecordConfig> {
        let cli = Cli::try_parse_from(args)?;
        let Command::Record(record) = cli.command;
        record.into_config()
    }

    #[test]
    fn pids_frequency_duration_and_outputs() {
        let config = parse(&[
            "profiler", "record", "-p", "1,2", "-p", "3", "-F", "999", "-d", "1.5", "-o", "a.svg",
            "-o", "b.pb.gz",
        ])
        .unwrap();
        assert_eq!(config.target, RecordTarget::Pids(vec![1, 2, 3]));
        assert_eq!(config.frequency_hz, 999);
        assert_eq!(config.duration, Some(Duration::from_millis(1500)));
        assert_eq!(config.outputs[0].format, Format::Svg);
        assert_eq!(config.outputs[1].format, Format::Pprof);
    }

    #[test]
    fn command_after_double_dash_and_durations_with_units() {
        let config = parse(&[
            "profiler", "record", "-d", "500ms", "-o", "x.folded", "--", "./prog", "-v", "arg",
        ])
        .unwrap();
        assert_eq!(
            config.target,
            RecordTarget::Command(vec!["./prog".into(), "-v".into(), "arg".into()])
        );
        assert_eq!(config.duration, Some(Duration::from_millis(500)));
        assert_eq!(config.outputs[0].format, Format::Folded);
    }

    #[test]
    fn rejects_bad_combinations_and_values() {
        assert!(
            parse(&["profiler", "record", "-o", "x.svg"])
                .unwrap_err()
                .to_string()
                .contains("nothing to profile")
        );
        assert!(parse(&["profiler", "record", "-p", "1", "-o", "x.svg", "--", "ls"]).is_err());
        assert!(parse(&["profiler", "record", "-p", "1", "-a", "-o", "x.svg"]).is_err());
        assert!(parse(&["profiler", "record", "-p", "1", "-o", "x.png"]).is_err());
        assert!(parse(&["profiler", "record", "-p", "1", "-d", "0", "-o", "x.svg"]).is_err());
        assert!(parse(&["profiler", "record", "-p", "1", "-d", "soon", "-o", "x.svg"]).is_err());
        let config = parse(&[
            "profiler", "record", "-a", "--format", "folded", "-o", "x.png",
        ])
        .unwrap();
        assert_eq!(config.outputs[0].format, Format::Folded);
    }

    #[test]
    fn modes_and_min_block() {
        let config = parse(&["profiler", "record", "-a", "-o", "x.svg"]).unwrap();
        assert_eq!(
            (config.mode, config.min_block),
            (ProfileKind::Cpu, Duration::ZERO)
        );
        let config = parse(&["profiler", "record", "-a", "--off-cpu", "-o", "x.svg"]).unwrap();
        assert_eq!(
            (config.mode, config.min_block),
            (ProfileKind::OffCpu, Duration::from_micros(1))
        );
        let config = parse(&[
            "profiler",
            "record",
            "-a",
            "--mode",
            "off-cpu",
            "--min-block",
            "50us",
            "-o",
            "x.svg",
        ])
        .unwrap();
        assert_eq!(
            (config.mode, config.min_block),
            (ProfileKind::OffCpu, Duration::from_micros(50))
        );
        let config = parse(&["profiler", "record", "-a", "--mode", "wall", "-o", "x.svg"]).unwrap();
        assert_eq!(
            (config.mode, config.min_block),
            (ProfileKind::Wall, Duration::ZERO)
        );
        assert!(parse(&["profiler", "record", "-a", "--mode", "io", "-o", "x.svg"]).is_err());
        assert!(
            parse(&[
                "profiler",
                "record",
                "-a",
                "--min-block",
                "fast",
                "-o",
                "x.svg"
            ])
            .is_err()
        );
        assert!(
            parse(&[
                "profiler",
                "record",
                "-a",
                "--mode",
                "wall",
                "--off-cpu",
                "-o",
                "x.svg"
            ])
            .is_err()
        );
    }
}
