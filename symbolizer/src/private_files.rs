//! Root-only cache files under /run, shared by the kernel-symbol cache
//! ([`crate::kallsyms`]) and the uncompressed debug copies
//! ([`crate::debug_cache`]): a directory only we may enter, and files
//! written whole (temporary, then renamed) without following links.

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::Path,
};

/// A directory we own that no one else can enter, created if missing;
/// `None` if it is anything else (a link, someone else's, open to others).
pub(crate) fn private_dir(dir: &Path) -> Option<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(_) => return None,
    }
    let meta = fs::symlink_metadata(dir).ok()?;
    // SAFETY: geteuid has no preconditions.
    let ours = meta.uid() == unsafe { libc::geteuid() };
    let private = meta.permissions().mode() & 0o077 == 0;
    (meta.file_type().is_dir() && ours && private).then_some(())
}

/// Writes `bytes` to a temporary file next to `path` (root-only, not
/// following a link), then renames it there.
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    let written = file.write_all(bytes);
    drop(file);
    match written {
        Ok(()) => fs::rename(&tmp, path),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}
