//! Room in the kernel's rows array: each loaded file's table takes one
//! contiguous run (the kernel binary-searches it), given first-fit from the
//! free runs, which merge with their neighbours when a file is evicted.

use std::collections::BTreeMap;

/// Free runs of the rows array.
#[derive(Debug)]
pub struct RowAllocator {
    /// Free runs, start -> length; never two adjacent.
    free: BTreeMap<u32, u32>,
    capacity: u32,
}

impl RowAllocator {
    pub fn new(capacity: u32) -> Self {
        let mut free = BTreeMap::new();
        if capacity > 0 {
            free.insert(0, capacity);
        }
        RowAllocator { free, capacity }
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Rows not given out.
    #[cfg(test)]
    pub fn free_rows(&self) -> u64 {
        self.free.values().map(|&len| len as u64).sum()
    }

    /// The first run of `len` rows that is free, taken; `None` if there is none.
    pub fn alloc(&mut self, len: u32) -> Option<u32> {
        if len == 0 {
            return None;
        }
        let (&start, &run) = self.free.iter().find(|&(_, &run)| run >= len)?;
        self.free.remove(&start);
        if run > len {
            self.free.insert(start + len, run - len);
        }
        Some(start)
    }

    /// Gives back the run `[start, start + len)`.
    pub fn release(&mut self, start: u32, len: u32) {
        if len == 0 {
            return;
        }
        let mut start = start;
        let mut len = len;
        if let Some((&before, &before_len)) = self.free.range(..start).next_back()
            && before + before_len == start
        {
            self.free.remove(&before);
            start = before;
            len += before_len;
        }
        if let Some(&after_len) = self.free.get(&(start + len)) {
            self.free.remove(&(start + len));
            len += after_len;
        }
        self.free.insert(start, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_first_fit_and_merges_released_runs() {
        let mut rows = RowAllocator::new(100);
        let a = rows.alloc(30).unwrap();
        let b = rows.alloc(30).unwrap();
        let c = rows.alloc(30).unwrap();
        assert_eq!((a, b, c), (0, 30, 60));
        assert_eq!(rows.alloc(20), None, "only 10 rows are left");
        rows.release(b, 30);
        assert_eq!(rows.alloc(40), None, "30 + 10 free, not adjacent");
        rows.release(a, 30);
        // 0..60 merged: a run of 40 fits at the start.
        assert_eq!(rows.alloc(40), Some(0));
        rows.release(0, 40);
        rows.release(c, 30);
        assert_eq!(rows.free_rows(), 100);
        assert_eq!(
            rows.alloc(100),
            Some(0),
            "everything merged back into one run"
        );
    }
}
