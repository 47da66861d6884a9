//! The hypervisor heap: `alloc` for xen-core, over a region of frames taken
//! from the frame allocator at boot (linked_list_allocator).

use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Hands `[va, va + size)` to the heap.
///
/// # Safety
/// The range must be mapped, writable, unused by anything else, forever.
pub unsafe fn init(va: u64, size: usize) {
    // SAFETY: per the contract.
    unsafe { HEAP.lock().init(va as *mut u8, size) };
}

/// Bytes free in the heap.
pub fn free_bytes() -> usize {
    HEAP.lock().free()
}
