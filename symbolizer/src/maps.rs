//! Parsing `/proc/PID/maps` lines.

use std::sync::Arc;

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub readable: bool,
    pub executable: bool,
    pub file_offset: u64,
    pub dev: (u32, u32),
    pub inode: u64,
    /// The path column: a file path, a pseudo-name such as `[vdso]`, or empty.
    pub path: Arc<str>,
}

impl MapEntry {
    /// A mapping of a file on disk (anonymous and pseudo mappings have inode 0).
    pub fn is_file(&self) -> bool {
        self.inode != 0 && self.path.starts_with('/')
    }

    /// The path without the ` (deleted)` the kernel appends for unlinked files.
    pub fn file_path(&self) -> &str {
        self.path.strip_suffix(" (deleted)").unwrap_or(&self.path)
    }
}

/// Parses one line; `None` for a line that is not in the kernel's format.
pub fn parse_line(line: &str) -> Option<MapEntry> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let offset = fields.next()?;
    let dev = fields.next()?;
    let inode = fields.next()?;
    let path = Arc::from(fields.next().unwrap_or("").trim_start());
    let (start, end) = range.split_once('-')?;
    let (major, minor) = dev.split_once(':')?;
    let perms = perms.as_bytes();
    if perms.len() < 4 {
        return None;
    }
    Some(MapEntry {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        readable: perms[0] == b'r',
        executable: perms[2] == b'x',
        file_offset: u64::from_str_radix(offset, 16).ok()?,
        dev: (
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        ),
        inode: inode.parse().ok()?,
        path,
    })
}

/// Parses a whole maps file, skipping lines that do not parse.
pub fn parse(text: &str) -> Vec<MapEntry> {
    text.lines().filter_map(parse_line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_anonymous_and_deleted_mappings() {
        let text = "\
55d0c0a00000-55d0c0a21000 r-xp 00002000 fe:01 1234567                    /usr/bin/my prog
7ffd1c3f0000-7ffd1c411000 rw-p 00000000 00:00 0                          [stack]
7f0000000000-7f0000001000 r-xp 00001000 08:02 42 /tmp/lib.so (deleted)
7f0000002000-7f0000003000 rw-p 00000000 00:00 0
garbage";
        let maps = parse(text);
        assert_eq!(maps.len(), 4);
        assert_eq!(maps[0].start, 0x55d0c0a00000);
        assert_eq!(maps[0].end, 0x55d0c0a21000);
        assert!(maps[0].executable && maps[0].readable);
        assert_eq!(maps[0].file_offset, 0x2000);
        assert_eq!(maps[0].dev, (0xfe, 1));
        assert_eq!(maps[0].inode, 1234567);
        assert_eq!(&*maps[0].path, "/usr/bin/my prog");
        assert!(maps[0].is_file());
        assert!(!maps[1].is_file() && !maps[1].executable);
        assert_eq!(maps[2].file_path(), "/tmp/lib.so");
        assert_eq!(&*maps[3].path, "");
        assert!(!maps[3].is_file());
    }
}
