//! Where call frame information comes from: an ELF file's `.eh_frame` and
//! `.debug_frame` sections, its loadable segments (to turn addresses into
//! file offsets), and a separate debug file found by build ID or
//! `.gnu_debuglink`.

use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSegment};

use crate::Error;

/// An executable loadable segment: addresses `[vaddr, vaddr + size)` sit at
/// file offset `address - bias`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment {
    vaddr: u64,
    size: u64,
    bias: u64,
}

/// The executable segments of the file the code comes from. Only code there
/// can run; an FDE elsewhere (a discarded section's, left at address 0,
/// which in a PIE is inside the first, read-only segment) would give rows
/// for bytes that are not code.
#[derive(Clone, Debug, Default)]
pub(crate) struct Segments(Vec<Segment>);

impl Segments {
    /// The `bias` (`p_vaddr - p_offset`) of the segment holding `vaddr`.
    pub(crate) fn bias_of(&self, vaddr: u64) -> Option<u64> {
        self.0
            .iter()
            .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.size)
            .map(|s| s.bias)
    }
}

/// One section of call frame information and the address it is loaded at
/// (`.eh_frame`'s pointers may be relative to it).
pub(crate) struct CfiSection<'data> {
    pub(crate) data: Cow<'data, [u8]>,
    pub(crate) address: u64,
}

/// What the table is built from, borrowed from the file's bytes (except a
/// compressed `.debug_frame`, inflated here).
pub(crate) struct ElfCfi<'data> {
    pub(crate) segments: Segments,
    pub(crate) text_address: u64,
    pub(crate) eh_frame: Option<CfiSection<'data>>,
    pub(crate) debug_frame: Option<CfiSection<'data>>,
}

pub(crate) fn parse(elf: &[u8]) -> Result<object::File<'_>, Error> {
    let file = object::File::parse(elf).map_err(|source| Error::Elf { source })?;
    if file.format() != object::BinaryFormat::Elf {
        return Err(Error::NotElf {
            format: format!("{:?}", file.format()),
        });
    }
    if file.architecture() != object::Architecture::X86_64 {
        return Err(Error::Architecture {
            architecture: format!("{:?}", file.architecture()),
        });
    }
    Ok(file)
}

impl<'data> ElfCfi<'data> {
    pub(crate) fn read(file: &object::File<'data>) -> Result<Self, Error> {
        let segments = Segments(
            file.segments()
                .filter(|s| match s.flags() {
                    object::SegmentFlags::Elf { p_flags } => p_flags & object::elf::PF_X != 0,
                    _ => false,
                })
                .filter_map(|s| {
                    let (offset, _) = s.file_range();
                    Some(Segment {
                        vaddr: s.address(),
                        size: s.size(),
                        bias: s.address().checked_sub(offset)?,
                    })
                })
                .collect(),
        );
        let text_address = file
            .section_by_name(".text")
            .map(|s| s.address())
            .unwrap_or(0);
        Ok(ElfCfi {
            segments,
            text_address,
            eh_frame: section(file, ".eh_frame")?,
            debug_frame: section(file, ".debug_frame")?,
        })
    }
}

/// A section's contents, or `None` when it is absent, empty or has no bytes
/// in this file (a separate debug file keeps `.eh_frame` as NOBITS).
fn section<'data>(
    file: &object::File<'data>,
    name: &'static str,
) -> Result<Option<CfiSection<'data>>, Error> {
    let Some(section) = file.section_by_name(name) else {
        return Ok(None);
    };
    if section.file_range().is_none() {
        return Ok(None);
    }
    let compressed = section.compressed_data().map_err(|source| Error::Section {
        section: name,
        source,
    })?;
    let data = match compressed.format {
        object::CompressionFormat::None => Cow::Borrowed(compressed.data),
        object::CompressionFormat::Zlib => {
            let mut out = Vec::with_capacity(compressed.uncompressed_size.min(1 << 30) as usize);
            flate2::read::ZlibDecoder::new(compressed.data)
                .read_to_end(&mut out)
                .map_err(|source| Error::Inflate {
                    section: name,
                    source,
                })?;
            Cow::Owned(out)
        }
        other => {
            return Err(Error::Compression {
                section: name,
                format: format!("{other:?}"),
            });
        }
    };
    if data.is_empty() {
        return Ok(None);
    }
    Ok(Some(CfiSection {
        data,
        address: section.address(),
    }))
}

/// The GNU build ID note of a parsed file.
pub(crate) fn build_id_of(file: &object::File<'_>) -> Option<Vec<u8>> {
    file.build_id().ok().flatten().map(<[u8]>::to_vec)
}

/// Where distributions install separate debug files.
pub(crate) const DEBUG_ROOT: &str = "/usr/lib/debug";

/// The separate debug file of the file at `path` (whose parsed contents are
/// `file`): by build ID under `debug_root/.build-id/`, then by
/// `.gnu_debuglink` next to it, in `.debug/` beside it, or under
/// `debug_root` + its directory, as gdb looks. A candidate with another
/// build ID than the file's belongs to another build and is passed over.
pub(crate) fn find_debug_file(
    path: &Path,
    file: &object::File<'_>,
    debug_root: &Path,
) -> Option<PathBuf> {
    let build_id = build_id_of(file);
    let matches = |candidate: &Path| -> bool {
        if !candidate.is_file() || same_file(candidate, path) {
            return false;
        }
        match &build_id {
            None => true,
            Some(id) => std::fs::read(candidate)
                .ok()
                .and_then(|data| {
                    object::File::parse(&*data)
                        .ok()
                        .map(|f| build_id_of(&f).is_none_or(|other| &other == id))
                })
                .unwrap_or(false),
        }
    };

    if let Some(id) = build_id.as_deref().filter(|id| id.len() >= 2) {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let candidate = debug_root
            .join(".build-id")
            .join(&hex[..2])
            .join(format!("{}.debug", &hex[2..]));
        if candidate.is_file() {
            return Some(candidate);
        }
    }

    let (name, _crc) = file.gnu_debuglink().ok().flatten()?;
    let name = Path::new(std::str::from_utf8(name).ok()?);
    let dir = path.parent()?;
    let canonical_dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let under_root = debug_root.join(canonical_dir.strip_prefix("/").unwrap_or(&canonical_dir));
    [
        dir.join(name),
        dir.join(".debug").join(name),
        under_root.join(name),
    ]
    .into_iter()
    .find(|c| matches(c))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
