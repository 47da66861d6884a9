//! The boot pool: page-aligned memory inside the xen-core image for the
//! things needed before the frame allocator exists (page tables, per-CPU
//! stack blocks, GDTs).
//!
//! A bump allocator over a static region in .bss; nothing is ever freed.

use spin::Mutex;

const POOL_BYTES: usize = 8 << 20;

#[repr(C, align(65536))]
struct PoolMem([u8; POOL_BYTES]);

static mut POOL_MEM: PoolMem = PoolMem([0; POOL_BYTES]);
static NEXT: Mutex<usize> = Mutex::new(0);

/// Allocates `bytes` (rounded up to 4 KiB) aligned to `align` (a power of
/// two, at least 4096). The memory is zeroed (it is .bss). Returns the
/// virtual address, or None when the pool is exhausted.
pub fn alloc(bytes: usize, align: usize) -> Option<u64> {
    let base = core::ptr::addr_of!(POOL_MEM) as usize;
    let mut next = NEXT.lock();
    let start = (base + *next).next_multiple_of(align.max(4096)) - base;
    let end = start.checked_add(bytes.next_multiple_of(4096))?;
    if end > POOL_BYTES {
        return None;
    }
    *next = end;
    Some((base + start) as u64)
}

/// Allocates one zeroed page.
pub fn alloc_page() -> Option<u64> {
    alloc(4096, 4096)
}
