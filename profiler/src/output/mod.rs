//! Writing a [`Profile`] to a file: a flame graph (SVG), folded stacks, or
//! pprof. The format comes from the file name or the `--format` flag, and the
//! file is replaced atomically, so a failed write never leaves a partial file.

pub mod folded;
pub mod pprof;
pub mod svg;
#[cfg(test)]
pub(crate) mod test_profile;

use std::fmt;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use svg::SvgOptions;

use crate::profile::Profile;

const EXTENSIONS: &str = ".svg, .folded, .txt, .pb.gz, .pprof or .pb";

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Interactive flame graph.
    Svg,
    /// Folded stacks (`frame;frame;frame COUNT`), for flamegraph.pl, inferno
    /// and speedscope.
    Folded,
    /// Gzip-compressed pprof protobuf, for `go tool pprof`.
    Pprof,
}

impl Format {
    /// The format a file name asks for: `.svg`; `.folded` or `.txt`;
    /// `.pb.gz`, `.pprof` or `.pb` (ignoring case).
    pub fn from_path(path: &Path) -> Result<Format, OutputError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        const TABLE: [(&str, Format); 6] = [
            (".svg", Format::Svg),
            (".folded", Format::Folded),
            (".txt", Format::Folded),
            (".pb.gz", Format::Pprof),
            (".pprof", Format::Pprof),
            (".pb", Format::Pprof),
        ];
        TABLE
            .iter()
            .find(|(ext, _)| name.len() > ext.len() && name.ends_with(ext))
            .map(|&(_, format)| format)
            .ok_or_else(|| OutputError::UnknownExtension {
                path: path.to_path_buf(),
            })
    }

    /// The name `--format` takes.
    pub fn name(self) -> &'static str {
        match self {
            Format::Svg => "svg",
            Format::Folded => "folded",
            Format::Pprof => "pprof",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses the `--format` flag: `svg`, `folded` or `pprof`.
impl FromStr for Format {
    type Err = OutputError;

    fn from_str(s: &str) -> Result<Format, OutputError> {
        match s.to_ascii_lowercase().as_str() {
            "svg" => Ok(Format::Svg),
            "folded" => Ok(Format::Folded),
            "pprof" => Ok(Format::Pprof),
            _ => Err(OutputError::UnknownFormat {
                name: s.to_string(),
            }),
        }
    }
}

/// One output file and its format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    pub path: PathBuf,
    pub format: Format,
}

/// The outputs `-o PATH` (repeated) and `--format` ask for: each path's
/// format is `format` if given, else its extension's.
pub fn specs(
    paths: impl IntoIterator<Item = PathBuf>,
    format: Option<Format>,
) -> Result<Vec<OutputSpec>, OutputError> {
    paths
        .into_iter()
        .map(|path| {
            let format = match format {
                Some(format) => format,
                None => Format::from_path(&path)?,
            };
            Ok(OutputSpec { path, format })
        })
        .collect()
}

/// Checks every destination (see [`check_destination`]).
pub fn check_destinations(outputs: &[OutputSpec]) -> Result<(), OutputError> {
    for output in outputs {
        check_destination(&output.path)?;
    }
    Ok(())
}

/// Writes `profile` to every output in turn (see [`write`]), making what
/// they share once; stops at the first that fails. Returns the paths
/// written.
pub fn write_all(
    profile: &Profile,
    outputs: &[OutputSpec],
    options: &OutputOptions,
) -> Result<Vec<PathBuf>, OutputError> {
    let shared = Shared::default();
    let mut written = Vec::with_capacity(outputs.len());
    for output in outputs {
        write_shared(profile, &output.path, output.format, options, &shared)?;
        written.push(output.path.clone());
    }
    Ok(written)
}

/// Options of the formats that have any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputOptions {
    pub svg: SvgOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "cannot tell which format to write {} in: name it with one of the extensions {EXTENSIONS}, \
         or choose the format with --format svg|folded|pprof",
        .path.display()
    )]
    UnknownExtension { path: PathBuf },
    #[error("unknown output format {name:?}: expected svg, folded or pprof")]
    UnknownFormat { name: String },
    #[error(
        "cannot write {}: directory {} does not exist; create it first or choose another output path",
        .path.display(), .dir.display()
    )]
    MissingDirectory { path: PathBuf, dir: PathBuf },
    #[error("cannot write {}: it is a directory; give a file name, such as {}", .path.display(), .path.join("profile.svg").display())]
    IsDirectory { path: PathBuf },
    #[error("cannot write {}: directory {} is not writable; choose another output path", .path.display(), .dir.display())]
    NotWritable { path: PathBuf, dir: PathBuf },
    #[error(
        "cannot write {}: cannot create a file in {}: {source}; check that the directory is writable",
        .path.display(), .dir.display()
    )]
    Create {
        path: PathBuf,
        dir: PathBuf,
        source: io::Error,
    },
    #[error("cannot write {}: {source}", .path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot write {}: cannot move the finished temporary file into place: {source}", .path.display())]
    Persist { path: PathBuf, source: io::Error },
    #[error("cannot draw the flame graph {}: {message}", .path.display())]
    Svg { path: PathBuf, message: String },
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Checks that a file can be written at `path` (a file name, in an existing,
/// writable directory), so that a recording can refuse a bad `-o` before it
/// starts rather than after. Returns the file name.
pub fn check_destination(path: &Path) -> Result<&std::ffi::OsStr, OutputError> {
    let is_directory = || OutputError::IsDirectory {
        path: path.to_path_buf(),
    };
    let file_name = path.file_name().ok_or_else(is_directory)?;
    if path.is_dir() {
        return Err(is_directory());
    }
    let dir = parent_dir(path);
    if !dir.is_dir() {
        return Err(OutputError::MissingDirectory {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
        });
    }
    let not_writable = || OutputError::NotWritable {
        path: path.to_path_buf(),
        dir: dir.to_path_buf(),
    };
    let c_dir =
        std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| not_writable())?;
    // SAFETY: a valid C string; access has no other preconditions.
    if unsafe { libc::access(c_dir.as_ptr(), libc::W_OK) } != 0 {
        return Err(not_writable());
    }
    Ok(file_name)
}

/// What the outputs of one profile have in common, made once for all of
/// them: its folded lines, which the SVG is drawn from and the folded output
/// is. (`record -o flame.svg -o stacks.folded` folded the profile twice.)
#[derive(Debug, Default)]
pub struct Shared {
    folded: std::cell::OnceCell<Vec<String>>,
}

impl Shared {
    fn folded_lines(&self, profile: &Profile) -> &[String] {
        self.folded.get_or_init(|| folded::folded_lines(profile))
    }
}

/// Writes `profile` to `path` in `format`.
///
/// The output goes to a temporary file in the same directory (named
/// `.<file name>.<random>.tmp`) that is renamed over `path` once complete, so
/// `path` is either left as it was or holds the whole output. The file gets
/// the permissions a newly created file would (0666 less the umask).
pub fn write(
    profile: &Profile,
    path: &Path,
    format: Format,
    options: &OutputOptions,
) -> Result<(), OutputError> {
    write_shared(profile, path, format, options, &Shared::default())
}

/// As [`write`], taking what an earlier output of the same `profile` made
/// from `shared` (and leaving there what this one makes).
pub fn write_shared(
    profile: &Profile,
    path: &Path,
    format: Format,
    options: &OutputOptions,
    shared: &Shared,
) -> Result<(), OutputError> {
    let file_name = check_destination(path)?;
    let dir = parent_dir(path);
    if format == Format::Svg && profile.total_samples() == 0 {
        return Err(OutputError::Svg {
            path: path.to_path_buf(),
            message: "the profile has no samples, so there is nothing to draw (the target may have been idle \
                      or the profile too short); profile for longer, or write .folded or .pprof output"
                .to_string(),
        });
    }

    let prefix = format!(".{}.", file_name.to_string_lossy());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // tempfile's default is 0600; a profile is not a secret, and the
        // mode given here is reduced by the umask like File::create's.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut temp = builder
        .tempfile_in(dir)
        .map_err(|source| OutputError::Create {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
            source,
        })?;

    let write_error = |source: io::Error| {
        if format == Format::Svg && source.kind() == io::ErrorKind::InvalidData {
            OutputError::Svg {
                path: path.to_path_buf(),
                message: source.to_string(),
            }
        } else {
            OutputError::Write {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    {
        let mut writer = BufWriter::new(temp.as_file_mut());
        match format {
            Format::Svg => svg::write_svg_lines(
                profile,
                shared.folded_lines(profile),
                &options.svg,
                &mut writer,
            ),
            Format::Folded => folded::write_lines(shared.folded_lines(profile), &mut writer),
            Format::Pprof => pprof::write_pprof(profile, &mut writer),
        }
        .and_then(|()| writer.flush())
        .map_err(write_error)?;
    }
    // Flushed before the rename: errors that only show at writeback (quota,
    // NFS, delayed allocation) are reported rather than leaving a short file.
    temp.as_file().sync_all().map_err(write_error)?;
    // On error the temporary file is dropped, which deletes it.
    temp.persist(path).map_err(|e| OutputError::Persist {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_profile::demo_profile;

    /// Writes the demo profile with default options.
    fn write_demo(path: &Path, format: Format) -> Result<(), OutputError> {
        write(&demo_profile(), path, format, &OutputOptions::default())
    }

    /// Outputs written with one `Shared` are the same bytes as written
    /// alone; the folded lines the first made are what the second used.
    #[test]
    fn outputs_sharing_folded_lines_match_outputs_written_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let profile = demo_profile();
        let options = OutputOptions::default();
        let shared = Shared::default();
        assert!(shared.folded.get().is_none());
        for (name, format) in [("a.svg", Format::Svg), ("a.folded", Format::Folded)] {
            write_shared(&profile, &tmp.path().join(name), format, &options, &shared).unwrap();
            assert_eq!(
                shared.folded.get().map(Vec::len),
                Some(folded::folded_lines(&profile).len())
            );
        }
        for (name, format) in [("b.svg", Format::Svg), ("b.folded", Format::Folded)] {
            write(&profile, &tmp.path().join(name), format, &options).unwrap();
        }
        let read = |name: &str| std::fs::read(tmp.path().join(name)).unwrap();
        assert_eq!(read("a.svg"), read("b.svg"));
        assert_eq!(read("a.folded"), read("b.folded"));
        assert!(!read("a.folded").is_empty());
    }

    #[test]
    fn specs_from_extensions_or_the_format_flag_and_all_written() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = [tmp.path().join("a.svg"), tmp.path().join("b.pb.gz")];
        let outputs = specs(paths.clone(), None).unwrap();
        let formats: Vec<Format> = outputs.iter().map(|o| o.format).collect();
        assert_eq!(formats, [Format::Svg, Format::Pprof]);
        let forced = specs(paths.clone(), Some(Format::Folded)).unwrap();
        assert!(forced.iter().all(|o| o.format == Format::Folded));
        assert!(specs([PathBuf::from("x.png")], None).is_err());
        check_destinations(&outputs).unwrap();
        let written = write_all(&demo_profile(), &outputs, &OutputOptions::default()).unwrap();
        assert_eq!(written, paths);
        assert_eq!(entries(tmp.path()), ["a.svg", "b.pb.gz"]);
        let missing = specs([tmp.path().join("no/c.svg")], None).unwrap();
        assert!(matches!(
            check_destinations(&missing),
            Err(OutputError::MissingDirectory { .. })
        ));
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn format_from_every_extension() {
        for (name, format) in [
            ("flame.svg", Format::Svg),
            ("/tmp/x/FLAME.SVG", Format::Svg),
            ("stacks.folded", Format::Folded),
            ("stacks.txt", Format::Folded),
            ("cpu.pb.gz", Format::Pprof),
            ("cpu.pprof", Format::Pprof),
            ("cpu.pb", Format::Pprof),
            ("dir.svg/cpu.pb", Format::Pprof),
        ] {
            assert_eq!(
                Format::from_path(Path::new(name)).unwrap(),
                format,
                "{name}"
            );
        }
    }

    #[test]
    fn unknown_extension_is_an_error_naming_file_and_choices() {
        for name in ["out.png", "out", "out.gz", "svg", ".svg", "out.svgz", "/"] {
            let err = Format::from_path(Path::new(name)).unwrap_err();
            assert!(
                matches!(err, OutputError::UnknownExtension { .. }),
                "{name}: {err:?}"
            );
            let message = err.to_string();
            for part in [
                ".svg", ".folded", ".txt", ".pb.gz", ".pprof", ".pb", "--format",
            ] {
                assert!(message.contains(part), "{message}");
            }
        }
        let message = Format::from_path(Path::new("/tmp/out.png"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("/tmp/out.png"), "{message}");
    }

    #[test]
    fn format_flag() {
        assert_eq!("svg".parse::<Format>().unwrap(), Format::Svg);
        assert_eq!("folded".parse::<Format>().unwrap(), Format::Folded);
        assert_eq!("pprof".parse::<Format>().unwrap(), Format::Pprof);
        assert_eq!("PPROF".parse::<Format>().unwrap(), Format::Pprof);
        let err = "png".parse::<Format>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown output format \"png\": expected svg, folded or pprof"
        );
        for format in [Format::Svg, Format::Folded, Format::Pprof] {
            assert_eq!(format.to_string().parse::<Format>().unwrap(), format);
        }
    }

    #[test]
    fn write_into_missing_directory_fails_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("missing/flame.svg");
        let err = write_demo(&path, Format::Svg).unwrap_err();
        assert!(
            matches!(err, OutputError::MissingDirectory { .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "cannot write {}: directory {} does not exist; create it first or choose another output path",
                path.display(),
                tmp.path().join("missing").display()
            )
        );
        assert!(!path.exists());
        assert!(entries(tmp.path()).is_empty());
    }

    #[test]
    fn write_each_format_leaves_only_the_target() {
        let tmp = tempfile::tempdir().unwrap();
        let profile = demo_profile();
        for (name, format) in [
            ("flame.svg", Format::Svg),
            ("stacks.folded", Format::Folded),
            ("cpu.pb.gz", Format::Pprof),
        ] {
            let path = tmp.path().join(name);
            write(&profile, &path, format, &OutputOptions::default()).unwrap();
            let written = std::fs::read(&path).unwrap();
            let mut expected = Vec::new();
            match format {
                Format::Svg => {
                    svg::write_svg(&profile, &SvgOptions::default(), &mut expected).unwrap()
                }
                Format::Folded => folded::write_folded(&profile, &mut expected).unwrap(),
                Format::Pprof => {
                    // gzip output is not compared byte for byte; the message is.
                    assert_eq!(pprof::decode(&written).unwrap(), pprof::to_proto(&profile));
                    continue;
                }
            }
            assert_eq!(written, expected, "{name}");
        }
        assert_eq!(
            entries(tmp.path()),
            ["cpu.pb.gz", "flame.svg", "stacks.folded"]
        );
    }

    #[test]
    fn write_replaces_an_existing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("stacks.txt");
        std::fs::write(
            &path,
            "old contents that are longer than the new ones ".repeat(100),
        )
        .unwrap();
        write_demo(&path, Format::Folded).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            folded::folded_lines(&demo_profile()).join("\n") + "\n"
        );
        assert_eq!(entries(tmp.path()), ["stacks.txt"]);
    }

    #[test]
    fn failed_svg_keeps_the_old_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("flame.svg");
        std::fs::write(&path, "old").unwrap();
        let err = write(
            &Profile::default(),
            &path,
            Format::Svg,
            &OutputOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, OutputError::Svg { .. }), "{err:?}");
        assert!(err.to_string().contains("no samples"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(entries(tmp.path()), ["flame.svg"]);
    }

    #[test]
    fn write_to_a_directory_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out.svg");
        std::fs::create_dir(&dir).unwrap();
        let err = write_demo(&dir, Format::Svg).unwrap_err();
        assert!(matches!(err, OutputError::IsDirectory { .. }), "{err:?}");
        assert_eq!(entries(tmp.path()), ["out.svg"]);
        assert!(entries(&dir).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn written_file_has_the_mode_of_a_created_file() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("stacks.folded");
        write_demo(&path, Format::Folded).unwrap();
        let created = tmp.path().join("created");
        std::fs::File::create(&created).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), mode(&created));
    }
}
