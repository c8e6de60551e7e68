//! Whole hash maps read with `BPF_MAP_LOOKUP_BATCH` (Linux 5.6+): one
//! bpf(2) call for up to a chunk of entries, where iterating takes two per
//! entry (next key, then lookup). A 3 s recording at 999 Hz of a program
//! with deep stacks made ~2 600 bpf calls to drain its maps. Keys are
//! removed with `BPF_MAP_DELETE_BATCH` likewise (a fork-heavy command has
//! ~1 500 exited children a second to forget).
//!
//! aya 0.14 has no batch operations, so the call is made here by hand; a
//! kernel without them for the map is reported as `Ok(false)`, and the
//! caller iterates (or deletes one by one) instead.

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd, BorrowedFd},
};

use aya::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// bpf(2) with `attr`, a `union bpf_attr` prefix; the raw result.
///
/// # Safety
/// `T` must mirror the kernel's members for `cmd`, and every pointer in
/// `attr` must be valid for what the kernel reads or writes through it.
unsafe fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> libc::c_long {
    // SAFETY: `attr` is live and writable for `size_of::<T>()` bytes; the
    // rest is the caller's promise.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            size_of::<T>() as libc::c_uint,
        )
    }
}

/// Every entry of the hash map `fd`, `chunk` entries (or more, for a bucket
/// that holds more) per call, each call's handed to `visit` (keys and values
/// side by side) rather than collected: a map of large values (thousands of
/// stacks of 1 KiB) is never copied whole. `K` and `V` must have the map's
/// key and value sizes (the caller checks). `Ok(false)`: the first call
/// failed (no batch operations for this map or kernel, or refused) and
/// nothing was visited, so iterate instead.
///
/// Entries added or removed while reading may or may not be seen, as with
/// iteration; none is seen twice.
///
/// # Safety
/// `fd` must be a hash map whose key and value sizes are `K`'s and `V`'s
/// (aya's typed `HashMap::try_from` checks them): the kernel writes that
/// many bytes per entry into buffers sized for `K` and `V`.
pub(crate) unsafe fn for_each_chunk<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    chunk: usize,
    mut visit: impl FnMut(&[K], &[V]),
) -> io::Result<bool> {
    let mut chunk = chunk.max(1);
    // Zeroed rather than uninitialized: on some errors the kernel leaves
    // `count` as it was without writing anything.
    // SAFETY: all-zero bytes are a valid value of a `Pod` type.
    let zero_key: K = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let zero_value: V = unsafe { std::mem::zeroed() };
    let mut keys: Vec<K> = Vec::new();
    let mut values: Vec<V> = Vec::new();
    // The position to go on from: a bucket index for hash maps (4 bytes;
    // 8 leave room for any map type's token).
    let mut token_in = [0u8; 8];
    let mut token_out = [0u8; 8];
    let mut first = true;
    loop {
        keys.resize(chunk, zero_key);
        values.resize(chunk, zero_value);
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { token_in.as_ptr() as u64 },
            out_batch: token_out.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `BatchAttr` is the kernel's `batch` member; the kernel
        // writes at most `count` keys and values of the map's sizes, which
        // are `K`'s and `V`'s (checked by the caller), into buffers that
        // hold `chunk` of each, and a 4-byte token into `token_out`.
        let ret = unsafe { sys_bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) };
        let error = (ret < 0).then(io::Error::last_os_error);
        let errno = error.as_ref().and_then(io::Error::raw_os_error);
        // `count` says what was copied on success and at the end (ENOENT)
        // only; other errors may leave it untouched.
        let filled = match errno {
            None | Some(libc::ENOENT) => (attr.count as usize).min(chunk),
            Some(_) => 0,
        };
        visit(&keys[..filled], &values[..filled]);
        match errno {
            None => {
                token_in = token_out;
                first = false;
            }
            // Past the last bucket (the entries of this call are in).
            Some(libc::ENOENT) => return Ok(true),
            // One bucket holds more entries than a chunk.
            Some(libc::ENOSPC) if chunk < 1 << 20 => chunk *= 2,
            Some(_) if first => return Ok(false),
            Some(_) => return Err(error.expect("an error")),
        }
    }
}

/// Deletes `keys` from the hash map `fd` (keys of the map's key size; the
/// caller checks), in one call where the kernel can. A key already gone is
/// skipped. `Ok(false)`: the first call failed and nothing was deleted
/// (no batch operations for this map or kernel), so delete one by one.
///
/// # Safety
/// `fd` must be a map whose key size is `K`'s: the kernel reads that many
/// bytes per key from `keys`.
pub(crate) unsafe fn delete_all<K: Pod>(fd: BorrowedFd<'_>, keys: &[K]) -> io::Result<bool> {
    let mut rest = keys;
    let mut first = true;
    while !rest.is_empty() {
        let mut attr = BatchAttr {
            keys: rest.as_ptr() as u64,
            count: rest.len().min(u32::MAX as usize) as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let asked = attr.count as usize;
        // SAFETY: `BatchAttr` is the kernel's `batch` member; the kernel
        // reads `count` keys of the map's size (`K`'s, checked by the
        // caller) from `rest`, which holds at least that many.
        let ret = unsafe { sys_bpf(BPF_MAP_DELETE_BATCH, &mut attr) };
        if ret == 0 {
            rest = &rest[asked..];
            first = false;
            continue;
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            // The key at `count` was not there (its process's entry went
            // meanwhile); those before it are deleted.
            Some(libc::ENOENT) => {
                let done = (attr.count as usize).min(asked - 1);
                rest = &rest[done + 1..];
                first = false;
            }
            _ if first => return Ok(false),
            _ => return Err(error),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hash map of ours, filled, read back whole in chunks smaller than
    /// it; a chunk of one shows that full buckets are retried larger.
    #[test]
    fn reads_every_entry_of_a_hash_map_once_and_deletes_keys_in_batches() {
        if !crate::test_support::root_or_skip("creating a BPF map") {
            return;
        }
        let mut hash = aya::maps::HashMap::<aya::maps::MapData, u64, u64>::create(4096, 0)
            .expect("create a hash map");
        let wanted: Vec<(u64, u64)> = (0..3000u64).map(|k| (k * 7919, k ^ 0x5555)).collect();
        for (key, value) in &wanted {
            hash.insert(key, value, 0)
                .expect("insert into the hash map");
        }
        let map = aya::maps::IterableMap::map(&hash).fd();
        for chunk in [1, 97, 4096] {
            use std::os::fd::AsFd;
            let mut got = Vec::new();
            // SAFETY: the map was created with 8-byte keys and values.
            let batched = unsafe {
                for_each_chunk(map.as_fd(), chunk, |keys: &[u64], values: &[u64]| {
                    got.extend(keys.iter().copied().zip(values.iter().copied()))
                })
            }
            .unwrap();
            assert!(batched, "this kernel batches hash maps");
            got.sort_unstable();
            let mut want = wanted.clone();
            want.sort_unstable();
            assert_eq!(got, want, "chunk {chunk}");
        }
        // Every other key deleted, with one missing key among them (skipped),
        // leaves the rest.
        use std::os::fd::AsFd;
        let mut doomed: Vec<u64> = wanted.iter().map(|&(k, _)| k).step_by(2).collect();
        doomed.insert(doomed.len() / 2, u64::MAX);
        // SAFETY: as above.
        let deleted = unsafe { delete_all(map.as_fd(), &doomed) }.unwrap();
        assert!(deleted, "this kernel batches deletes");
        let mut left = Vec::new();
        // SAFETY: as above.
        unsafe {
            for_each_chunk(map.as_fd(), 512, |keys: &[u64], _: &[u64]| {
                left.extend_from_slice(keys)
            })
        }
        .unwrap();
        left.sort_unstable();
        let mut want: Vec<u64> = wanted.iter().map(|&(k, _)| k).skip(1).step_by(2).collect();
        want.sort_unstable();
        assert_eq!(left, want);
    }
}
