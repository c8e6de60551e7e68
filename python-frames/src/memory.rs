//! Reading another process's memory, through `/proc/PID/mem`.
//!
//! The open file stays bound to the process's address space, so a pid
//! reused after the process exits cannot be read by mistake: once the
//! address space is gone, reads return nothing and become
//! [`ReadError::ProcessGone`]. An unmapped address gives `EIO`, which is a
//! [`ReadError::Fault`] (the process lives; that read failed).

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;

use crate::error::ReadError;

/// Another process's memory, opened for reading.
#[derive(Debug)]
pub struct ProcessMemory {
    pid: u32,
    mem: File,
}

impl ProcessMemory {
    /// Opens process `pid`'s memory (needs ptrace access to it: root, or
    /// the same user with `kernel.yama.ptrace_scope` 0).
    pub fn open(pid: u32) -> Result<Self, ReadError> {
        match File::open(format!("/proc/{pid}/mem")) {
            Ok(mem) => Ok(Self { pid, mem }),
            Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
                Err(ReadError::ProcessGone { pid })
            }
            Err(source) => Err(ReadError::Open { pid, source }),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Fills `buf` with the bytes at `address`.
    pub fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let mut done = 0;
        while done < buf.len() {
            let at = address.wrapping_add(done as u64);
            match self.mem.read_at(&mut buf[done..], at) {
                // The kernel reads nothing (rather than failing) once the
                // address space is gone.
                Ok(0) => return Err(ReadError::ProcessGone { pid: self.pid }),
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // EIO: not mapped; EINVAL: an offset beyond i64 (not a user address).
                Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) => {
                    return Err(self.fault(at, buf.len() - done));
                }
                Err(source) => {
                    return Err(ReadError::Io {
                        pid: self.pid,
                        address: at,
                        len: buf.len() - done,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// `N` bytes at `address`.
    pub fn read_array<const N: usize>(&self, address: u64) -> Result<[u8; N], ReadError> {
        let mut buf = [0; N];
        self.read(address, &mut buf)?;
        Ok(buf)
    }

    /// `len` bytes at `address`.
    pub fn read_vec(&self, address: u64, len: usize) -> Result<Vec<u8>, ReadError> {
        let mut buf = vec![0; len];
        self.read(address, &mut buf)?;
        Ok(buf)
    }

    /// A native-endian `u64` (a pointer) at `address`.
    pub fn read_u64(&self, address: u64) -> Result<u64, ReadError> {
        self.read_array(address).map(u64::from_ne_bytes)
    }

    fn fault(&self, address: u64, len: usize) -> ReadError {
        ReadError::Fault {
            pid: self.pid,
            address,
            len,
        }
    }
}
