//! Guest RAM as named RAM blocks over vm-memory.
//!
//! A [`GuestRam`] is a [`GuestMemoryMmap`] with an [`AtomicBitmap`] dirty log per region, plus a
//! QEMU-style block name per region (`pc.ram`, `pc.bios`, …). Regions are RAM blocks in
//! migration order; a block's `used_length` is its region's size and offsets in the stream are
//! offsets inside the region.
//!
//! Dirty tracking: vm-memory marks a page dirty in the region's bitmap on every write done through
//! the `GuestMemory`/`Bytes` API (`write_slice`, `write_obj`, `store`, …), i.e. by the VMM or a
//! software guest. A KVM guest writes memory directly; its dirty pages come from KVM's dirty log
//! (`KVM_GET_DIRTY_LOG`), which this crate does not read yet.

use vm_memory::bitmap::AtomicBitmap;
use vm_memory::{
    GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap,
};

use crate::error::{MigrationError, Result};

/// The guest memory type: mmap-backed regions with an atomic dirty bitmap.
pub type GuestMem = GuestMemoryMmap<AtomicBitmap>;

/// Target page size of every block (x86).
pub const PAGE_SIZE: u64 = 4096;

/// Guest memory whose regions are named RAM blocks.
///
/// ```
/// use vm_memory::{Bytes, GuestAddress};
/// use vmstate_migration::GuestRam;
///
/// let ram = GuestRam::new(&[("pc.ram", 0, 1 << 20), ("pc.bios", 0xfff0_0000, 64 << 10)]).unwrap();
/// ram.memory().write_obj(7u32, GuestAddress(0x1000)).unwrap();
/// assert_eq!(ram.blocks()[0], ("pc.ram".to_owned(), 1 << 20));
/// ```
#[derive(Debug, Clone)]
pub struct GuestRam {
    mem: GuestMem,
    names: Vec<String>,
}

impl GuestRam {
    /// Anonymous memory with one region per `(name, guest address, size)`.
    ///
    /// # Errors
    /// [`MigrationError::Memory`] for an empty, unaligned, overlapping or duplicate block, a name
    /// longer than 255 bytes, or an mmap failure.
    pub fn new(blocks: &[(&str, u64, usize)]) -> Result<Self> {
        let mut names: Vec<String> = Vec::with_capacity(blocks.len());
        for (name, addr, size) in blocks {
            if name.is_empty() || name.len() > 255 || names.iter().any(|n| n == name) {
                return Err(MigrationError::Memory(format!(
                    "block name `{name}` is empty, longer than 255 bytes or used twice"
                )));
            }
            if *size == 0 || (*size as u64) % PAGE_SIZE != 0 || addr % PAGE_SIZE != 0 {
                return Err(MigrationError::Memory(format!(
                    "block `{name}` must be a non-empty whole number of {PAGE_SIZE}-byte pages at a page-aligned address"
                )));
            }
            names.push((*name).to_owned());
        }
        let ranges: Vec<(GuestAddress, usize)> = blocks
            .iter()
            .map(|(_, a, s)| (GuestAddress(*a), *s))
            .collect();
        // GuestMemoryMmap sorts regions by address; keep the names in that order.
        let mut order: Vec<usize> = (0..blocks.len()).collect();
        order.sort_by_key(|&i| blocks[i].1);
        let names = order.into_iter().map(|i| names[i].clone()).collect();
        let mem = GuestMem::from_ranges(&ranges)
            .map_err(|e| MigrationError::Memory(format!("cannot map guest memory: {e}")))?;
        let ram = GuestRam::from_parts(mem, names)?;
        ram.advise_hugepages();
        Ok(ram)
    }

    /// Lets transparent huge pages back every block of at least 2 MiB (`madvise(MADV_HUGEPAGE)`)
    /// where the host offers them (THP mode `always` or `madvise`), as QEMU does for guest RAM:
    /// one fault per 2 MiB instead of 512, and fewer TLB misses when pages are copied to or from
    /// the kernel. [`new`](Self::new) does it for the memory it maps; memory given to
    /// [`from_parts`](Self::from_parts) is left as its owner mapped it. Returns whether it was
    /// applied to every such block.
    pub fn advise_hugepages(&self) -> bool {
        if !thp_advisable() {
            return false;
        }
        let mut all = true;
        for r in self.mem.iter().filter(|r| r.len() >= 2 << 20) {
            if let Ok(s) = r.get_slice(vm_memory::MemoryRegionAddress(0), r.len() as usize) {
                all &= crate::sys::advise_hugepages(s.ptr_guard().as_ptr() as usize, s.len());
            }
        }
        all
    }

    /// Like [`new`](Self::new), with every page populated (faulted in) right away: for a
    /// destination created before the source connects, so the migration does not pay one page
    /// fault per 4 KiB page while it runs. See [`populate`](Self::populate).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn new_populated(blocks: &[(&str, u64, usize)]) -> Result<Self> {
        let ram = GuestRam::new(blocks)?;
        ram.populate()?;
        Ok(ram)
    }

    /// Populates every page of every block with `madvise(MADV_POPULATE_WRITE)` (content
    /// unchanged) or, where the kernel lacks it, by writing one zero byte to it (fresh anonymous
    /// memory reads as zero, so contents do not change), then clears the dirty log. Meant for
    /// memory that is about to be overwritten anyway (a migration destination, before the source
    /// connects): a non-zero byte at a page start would be zeroed.
    ///
    /// # Errors
    /// [`MigrationError::Memory`] when a page cannot be written.
    pub fn populate(&self) -> Result<()> {
        use vm_memory::Bytes;
        for r in self.mem.iter() {
            let slice = r
                .get_slice(vm_memory::MemoryRegionAddress(0), r.len() as usize)
                .map_err(|e| MigrationError::Memory(e.to_string()))?;
            // The kernel populates without touching the content where it can (Linux 5.14+).
            if crate::sys::populate_write(slice.ptr_guard().as_ptr() as usize, slice.len()) {
                continue;
            }
            let mut off = 0usize;
            while off < slice.len() {
                slice
                    .store(0u8, off, std::sync::atomic::Ordering::Relaxed)
                    .map_err(|e| MigrationError::Memory(e.to_string()))?;
                off += PAGE_SIZE as usize;
            }
        }
        self.clear_dirty();
        Ok(())
    }

    /// Wraps existing guest memory (e.g. a VMM's, also registered with KVM); `names[i]` names
    /// the `i`-th region in guest address order.
    ///
    /// # Errors
    /// [`MigrationError::Memory`] when the number of names differs from the number of regions,
    /// a name is empty, longer than 255 bytes or repeated, a region is not a whole number of
    /// pages, or its dirty bitmap does not have one bit per 4 KiB page.
    pub fn from_parts(mem: GuestMem, names: Vec<String>) -> Result<Self> {
        if names.len() != mem.num_regions() {
            return Err(MigrationError::Memory(format!(
                "{} block names for {} regions",
                names.len(),
                mem.num_regions()
            )));
        }
        for (i, (name, r)) in names.iter().zip(mem.iter()).enumerate() {
            if name.is_empty() || name.len() > 255 || names[..i].contains(name) {
                return Err(MigrationError::Memory(format!(
                    "block name `{name}` is empty, longer than 255 bytes or used twice"
                )));
            }
            if r.len() % PAGE_SIZE != 0 {
                return Err(MigrationError::Memory(format!(
                    "block `{name}` is not a whole number of {PAGE_SIZE}-byte pages"
                )));
            }
            // The dirty log must have one bit per target page (vm-memory sizes it by the host
            // page size).
            let bits = crate::ram::bitmap_of(r).len() as u64;
            if bits != r.len() / PAGE_SIZE {
                return Err(MigrationError::Memory(format!(
                    "the dirty bitmap of block `{name}` has {bits} bits for {} pages of {PAGE_SIZE} bytes (host page size differs)",
                    r.len() / PAGE_SIZE
                )));
            }
        }
        Ok(GuestRam { mem, names })
    }

    /// The vm-memory view, for reads and (dirty-tracked) writes.
    #[must_use]
    pub fn memory(&self) -> &GuestMem {
        &self.mem
    }

    /// `(name, used_length)` of every block, in migration order (guest address order).
    #[must_use]
    pub fn blocks(&self) -> Vec<(String, u64)> {
        self.names
            .iter()
            .zip(self.mem.iter())
            .map(|(n, r)| (n.clone(), r.len()))
            .collect()
    }

    /// Total bytes of all blocks.
    #[must_use]
    pub fn total_bytes(&self) -> u64 {
        self.mem.iter().map(GuestMemoryRegion::len).sum()
    }

    /// The regions with their names, in migration order.
    pub(crate) fn named_regions(
        &self,
    ) -> impl Iterator<Item = (&str, &GuestRegionMmap<AtomicBitmap>)> {
        self.names.iter().map(String::as_str).zip(self.mem.iter())
    }

    /// The names of the blocks, in migration order.
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// Starts faulting every block in on a background thread (with transparent huge pages where
    /// [`advise_hugepages`](Self::advise_hugepages) applied), for a destination that wants its
    /// memory populated while a receive runs rather than before it ([`populate`](Self::populate)).
    /// The [`RamLoader`](crate::RamLoader) does not start one: on a 2-core host, a cold 1 GiB
    /// receive with huge pages took 0.218 / 0.245 s (min / median of 40) with the receiving
    /// thread taking its own faults, against 0.252 / 0.287 s with this thread competing for the
    /// cores (docs/benchmarks.md). Content is never changed (`MADV_POPULATE_WRITE`). The thread works in 8 MiB steps from the start of
    /// each block (where the pages of a pass arrive first) and stops at the next step once the
    /// returned handle is dropped; it keeps its own reference to the mappings, so it never
    /// touches unmapped memory. Does nothing where the kernel lacks `MADV_POPULATE_WRITE`.
    #[must_use]
    pub fn prefault_in_background(&self) -> Prefault {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let mem = self.mem.clone();
        let spawned = std::thread::Builder::new()
            .name("ram-prefault".into())
            .spawn(move || {
                for r in mem.iter() {
                    let Ok(whole) =
                        r.get_slice(vm_memory::MemoryRegionAddress(0), r.len() as usize)
                    else {
                        continue;
                    };
                    let guard = whole.ptr_guard();
                    let base = guard.as_ptr() as usize;
                    let len = whole.len();
                    let mut off = 0;
                    while off < len {
                        if flag.load(std::sync::atomic::Ordering::Relaxed) {
                            return;
                        }
                        let n = (len - off).min(PREFAULT_STEP);
                        if !crate::sys::populate_write(base + off, n) {
                            return;
                        }
                        off += n;
                    }
                }
            })
            .is_ok();
        Prefault { stop, spawned }
    }

    /// Clears every dirty bit (the start of dirty tracking for a migration).
    pub fn clear_dirty(&self) {
        for r in self.mem.iter() {
            crate::ram::bitmap_of(r).reset();
        }
    }

    /// Reads and resets the vm-memory dirty log: one bitmap per block (migration order), bit
    /// `i % 64` of word `i / 64` set when page `i` of the block was written since the last call.
    #[must_use]
    pub fn take_dirty(&self) -> Vec<Vec<u64>> {
        self.mem
            .iter()
            .map(|r| crate::ram::bitmap_of(r).get_and_reset())
            .collect()
    }

    /// Number of pages currently marked dirty.
    #[must_use]
    pub fn dirty_pages(&self) -> u64 {
        self.mem
            .iter()
            .map(|r| {
                let bm = crate::ram::bitmap_of(r);
                (0..bm.len()).filter(|&i| bm.is_bit_set(i)).count() as u64
            })
            .sum()
    }

    /// Copies every block's content (for tests and checks): `(name, bytes)`.
    ///
    /// # Errors
    /// [`MigrationError::Memory`] when a region cannot be read.
    pub fn snapshot(&self) -> Result<Vec<(String, Vec<u8>)>> {
        use vm_memory::{Bytes, MemoryRegionAddress};
        self.named_regions()
            .map(|(n, r)| {
                let len = usize::try_from(r.len())
                    .map_err(|_| MigrationError::Memory("block too large".into()))?;
                let mut buf = vec![0; len];
                r.read_slice(&mut buf, MemoryRegionAddress(0))
                    .map_err(|e| MigrationError::Memory(e.to_string()))?;
                Ok((n.to_owned(), buf))
            })
            .collect()
    }
}

/// Bytes populated per `madvise` call of the prefault thread (its stop granularity).
const PREFAULT_STEP: usize = 8 << 20;

/// Whether `madvise(MADV_HUGEPAGE)` gives transparent huge pages here (THP mode `always` or
/// `madvise`, not `never`).
fn thp_advisable() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|s| s.contains("[always]") || s.contains("[madvise]"))
}

/// The handle of [`GuestRam::prefault_in_background`]: dropping it stops the thread at its next
/// step (without waiting for it, so a receive's critical path never waits on a page fault).
#[derive(Debug)]
pub struct Prefault {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    spawned: bool,
}

impl Prefault {
    /// Whether a thread was started.
    #[must_use]
    pub fn started(&self) -> bool {
        self.spawned
    }
}

impl Drop for Prefault {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_parts_checks_names() {
        let ram = GuestRam::new(&[("a", 0, 0x1000), ("b", 0x10000, 0x2000)]).unwrap();
        let mem = ram.memory().clone();
        assert!(GuestRam::from_parts(mem.clone(), vec!["x".into()]).is_err());
        assert!(GuestRam::from_parts(mem.clone(), vec!["x".into(), "x".into()]).is_err());
        let r = GuestRam::from_parts(mem, vec!["x".into(), "y".into()]).unwrap();
        assert_eq!(
            r.blocks(),
            [("x".to_owned(), 0x1000), ("y".to_owned(), 0x2000)]
        );
        assert!(GuestRam::new(&[("a", 0, 0x800)]).is_err());
        assert!(GuestRam::new(&[("a", 0, 0x1000), ("a", 0x1000, 0x1000)]).is_err());
    }
}
