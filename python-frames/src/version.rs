//! A CPython version: from the `Py_Version` constant (3.11+), or from a
//! file name (`python3.10`, `libpython3.9.so.1.0`) when there is none.

use std::fmt;

/// The versions whose frames this crate (and the kernel side) can read.
pub const SUPPORTED: &str = "3.11, 3.12, 3.13";

/// A CPython version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    /// `PY_VERSION_HEX` (e.g. `0x030c01f0` for 3.12.1), when the file's
    /// `Py_Version` gave it; `None` when the version came from the file name.
    pub hex: Option<u32>,
}

impl Version {
    /// The version `PY_VERSION_HEX` `hex` stands for.
    pub fn from_hex(hex: u32) -> Self {
        Self {
            major: (hex >> 24) as u8,
            minor: (hex >> 16) as u8,
            hex: Some(hex),
        }
    }

    /// The version in a file name such as `python3.11`, `libpython3.12.so.1.0`
    /// or `libpython3.13t.so`: the first `python` followed by `X.Y`.
    pub fn from_file_name(name: &str) -> Option<Self> {
        name.match_indices("python").find_map(|(at, word)| {
            let rest = &name[at + word.len()..];
            let (major, rest) = leading_number(rest)?;
            let (minor, _) = leading_number(rest.strip_prefix('.')?)?;
            Some(Self {
                major,
                minor,
                hex: None,
            })
        })
    }

    /// `PY_VERSION_HEX >> 16`, as the kernel's `Offsets::version` holds it.
    pub fn major_minor(&self) -> u16 {
        (u16::from(self.major) << 8) | u16::from(self.minor)
    }

    /// Whether this crate has a layout for this version.
    pub fn is_supported(&self) -> bool {
        self.major == 3 && (11..=13).contains(&self.minor)
    }
}

/// The decimal number at the start of `text` (at most 3 digits) and what follows.
fn leading_number(text: &str) -> Option<(u8, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 3 {
        return None;
    }
    Some((text[..digits].parse().ok()?, &text[digits..]))
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        let Some(hex) = self.hex else {
            return Ok(());
        };
        write!(f, ".{}", (hex >> 8) & 0xff)?;
        let serial = hex & 0xf;
        match (hex >> 4) & 0xf {
            0xa => write!(f, "a{serial}"),
            0xb => write!(f, "b{serial}"),
            0xc => write!(f, "rc{serial}"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_hex() {
        let v = Version::from_hex(0x030c01f0);
        assert_eq!((v.major, v.minor, v.major_minor()), (3, 12, 0x030c));
        assert_eq!(v.to_string(), "3.12.1");
        assert_eq!(Version::from_hex(0x030e00a3).to_string(), "3.14.0a3");
        assert_eq!(Version::from_hex(0x030d00c1).to_string(), "3.13.0rc1");
    }

    #[test]
    fn from_file_name() {
        let parse = |name| Version::from_file_name(name).map(|v| (v.major, v.minor));
        assert_eq!(parse("python3.11"), Some((3, 11)));
        assert_eq!(parse("libpython3.12.so.1.0"), Some((3, 12)));
        assert_eq!(parse("libpython3.13t.so"), Some((3, 13)));
        assert_eq!(parse("python3.9d"), Some((3, 9)));
        assert_eq!(parse("python3"), None);
        assert_eq!(parse("libpython3.so"), None);
        assert_eq!(parse("mypython-tool"), None);
        assert_eq!(
            Version::from_file_name("python3.10").unwrap().to_string(),
            "3.10"
        );
    }

    #[test]
    fn supported() {
        assert!(Version::from_hex(0x030b07f0).is_supported());
        assert!(Version::from_hex(0x030d00f0).is_supported());
        assert!(!Version::from_hex(0x030a0df0).is_supported());
        assert!(!Version::from_hex(0x030e00f0).is_supported());
    }
}
