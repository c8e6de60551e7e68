//! Where a file's unwind rows come from: the cache of tables built before
//! (keyed by GNU build ID, under `/run/profiler/unwind`: kept across
//! recordings of one boot, root-only), else built from the file, through
//! the descriptor the symbolizer holds (the very file the process mapped,
//! even if it was replaced or deleted since).

use std::{
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    time::Instant,
};

use profiler_common::UnwindRow;
use symbolizer::ObjectFile;

use super::TableSource;

/// The cache's directory, under the symbolizer's root-only `/run/profiler`.
const CACHE_DIR: &str = "/run/profiler/unwind";

/// Tables built from the files, with the cache.
pub struct FileTables {
    cache: Option<PathBuf>,
    /// Counts for [`super::UnwindStats`].
    pub built: u64,
    pub cached: u64,
    pub build_ms: u64,
}

impl Default for FileTables {
    fn default() -> Self {
        FileTables::new(private_dir(Path::new(CACHE_DIR)))
    }
}

impl FileTables {
    /// `cache`: the directory of cached tables (`None`: no cache).
    pub fn new(cache: Option<PathBuf>) -> Self {
        FileTables {
            cache,
            built: 0,
            cached: 0,
            build_ms: 0,
        }
    }
}

/// `dir` (and its parent), created root-only if missing; `None` unless
/// both are directories owned by us that no one else may write.
fn private_dir(dir: &Path) -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    for path in [dir.parent()?, dir] {
        let _ = std::fs::DirBuilder::new().mode(0o700).create(path);
        let meta = std::fs::symlink_metadata(path).ok()?;
        if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o022 != 0 {
            return None;
        }
    }
    Some(dir.to_path_buf())
}

impl TableSource for FileTables {
    fn counts(&self) -> (u64, u64, u64) {
        (self.built, self.cached, self.build_ms)
    }

    fn table(&mut self, object: &ObjectFile) -> Option<Vec<UnwindRow>> {
        let key = object.build_id.as_deref();
        if let (Some(dir), Some(key)) = (&self.cache, key)
            && let Some(table) = unwind_tables::persist::load(dir, key)
        {
            self.cached += 1;
            return Some(table.rows);
        }
        let started = Instant::now();
        let table = unwind_tables::build_table_for_path(&object.fd_path()).ok();
        self.build_ms += started.elapsed().as_millis() as u64;
        let table = table?;
        self.built += 1;
        if let (Some(dir), Some(key)) = (&self.cache, key) {
            let _ = unwind_tables::persist::store(dir, key, &table);
        }
        Some(table.rows)
    }
}
