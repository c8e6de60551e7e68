//! The pages themselves (xtask's `man` feature): clap_mangen over the
//! profiler's command line.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;

#[allow(dead_code)]
#[path = "../../../profiler/src/cli.rs"]
mod cli;

/// Where the pages go without `--out-dir`: `man/` in the cargo target
/// directory.
fn default_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("xtask/ has a parent")
                .join("target")
        });
    target.join("man")
}

pub fn run(out_dir: Option<PathBuf>) -> Result<()> {
    let dir = out_dir.unwrap_or_else(default_dir);
    for page in write_pages(&dir)? {
        println!("{}", page.display());
    }
    Ok(())
}

/// Writes every page into `dir` (created if missing); returns their paths,
/// the main page first.
pub fn write_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut command = cli::Cli::command().disable_help_subcommand(true);
    command.build();
    // Every page's footer names the profiler and its version (a
    // subcommand's would name only itself).
    let source = format!("profiler {}", command.get_version().unwrap_or_default());
    let mut written = Vec::new();
    write_page(&command, &source, dir, &mut written)?;
    Ok(written)
}

/// The page of `command`, then those of its subcommands.
fn write_page(
    command: &clap::Command,
    source: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    let man = clap_mangen::Man::new(command.clone()).source(source);
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    temp.write_all(&page)
        .with_context(|| format!("writing {}", path.display()))?;
    temp.persist(&path)
        .with_context(|| format!("renaming the new {} into place", path.display()))?;
    written.push(path);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_page(sub, source, dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_for_the_profiler_and_each_subcommand() {
        let tmp = tempfile::tempdir().unwrap();
        let pages = write_pages(tmp.path()).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for name in [
            "profiler.1",
            "profiler-record.1",
            "profiler-agent.1",
            "profiler-report.1",
            "profiler-upload.1",
            "profiler-completions.1",
        ] {
            assert!(names.iter().any(|n| n == name), "no {name} in {names:?}");
        }
        let main = std::fs::read_to_string(tmp.path().join("profiler.1")).unwrap();
        assert!(main.starts_with(".ie"), "not roff: {main:.80}");
        assert!(main.contains(".TH profiler 1"), "{main:.200}");
        assert!(
            main.contains("record"),
            "the main page does not name record"
        );
        let record = std::fs::read_to_string(tmp.path().join("profiler-record.1")).unwrap();
        assert!(
            record.contains("\\-\\-upload"),
            "record's page lacks --upload"
        );
        let footer = format!("\"profiler {}\"", env!("CARGO_PKG_VERSION"));
        assert!(record.contains(&footer), "{record:.200}");
        // Only the pages are left: no temporary file.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), names.len());
    }
}
