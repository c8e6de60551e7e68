//! A process's file-backed mappings, as `/proc/PID/maps` lists them, and
//! how to open the file behind one.

use std::fs::File;
use std::io::ErrorKind;
use std::path::PathBuf;

use crate::error::InspectError;

/// One file-backed mapping of a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// Runtime address range `[start, end)`.
    pub start: u64,
    pub end: u64,
    /// Offset in the file of the byte mapped at `start`.
    pub file_offset: u64,
    /// The file's path, as `/proc/PID/maps` shows it.
    pub path: String,
}

impl Region {
    /// The file-backed mappings of process `pid` (pathname starting with
    /// `/`, non-zero inode), in address order.
    pub fn read_all(pid: u32) -> Result<Vec<Region>, InspectError> {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|source| {
            if source.kind() == ErrorKind::NotFound || source.raw_os_error() == Some(libc::ESRCH) {
                InspectError::ProcessGone { pid }
            } else {
                InspectError::Maps { pid, source }
            }
        })?;
        Ok(maps.lines().filter_map(Region::parse).collect())
    }

    /// A `/proc/PID/maps` line, if it maps a file.
    pub fn parse(line: &str) -> Option<Region> {
        // start-end perms offset dev inode [path]; the path may contain spaces.
        let mut fields = line.splitn(6, ' ');
        let (start, end) = fields.next()?.split_once('-')?;
        let _perms = fields.next()?;
        let offset = fields.next()?;
        let _dev = fields.next()?;
        let inode = fields.next()?;
        let path = fields.next()?.trim_start();
        if inode == "0" || !path.starts_with('/') {
            return None;
        }
        Some(Region {
            start: u64::from_str_radix(start, 16).ok()?,
            end: u64::from_str_radix(end, 16).ok()?,
            file_offset: u64::from_str_radix(offset, 16).ok()?,
            path: path.to_owned(),
        })
    }

    /// The file name (last path component).
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// Opens the mapped file of process `pid`: through
    /// `/proc/PID/map_files/START-END` (the very file mapped, even if it was
    /// replaced or deleted since, and inside the process's mount namespace),
    /// else through `/proc/PID/root/PATH`. Never by the bare path.
    pub fn open(&self, pid: u32) -> Result<File, InspectError> {
        let mapped = format!("/proc/{pid}/map_files/{:x}-{:x}", self.start, self.end);
        if let Ok(file) = File::open(mapped) {
            return Ok(file);
        }
        let rooted = PathBuf::from(format!("/proc/{pid}/root{}", self.path));
        match File::open(&rooted) {
            Ok(file) => Ok(file),
            Err(_) if !std::fs::exists(format!("/proc/{pid}")).unwrap_or(true) => {
                Err(InspectError::ProcessGone { pid })
            }
            Err(source) => Err(InspectError::Open {
                pid,
                path: rooted,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        let line = "7f1cd2e00000-7f1cd2e28000 r--p 00001000 fe:01 1234      /usr/lib/lib python.so";
        assert_eq!(
            Region::parse(line),
            Some(Region {
                start: 0x7f1cd2e00000,
                end: 0x7f1cd2e28000,
                file_offset: 0x1000,
                path: "/usr/lib/lib python.so".into(),
            })
        );
        assert_eq!(Region::parse(line).unwrap().file_name(), "lib python.so");
        assert_eq!(
            Region::parse("7ffd1000-7ffd2000 rw-p 00000000 00:00 0    [stack]"),
            None
        );
        assert_eq!(
            Region::parse("7ffd1000-7ffd2000 rw-p 00000000 00:00 0 "),
            None
        );
        assert_eq!(Region::parse("garbage"), None);
    }
}
