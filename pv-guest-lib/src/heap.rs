//! The kernel heap (feature `alloc`): a `#[global_allocator]` over frames
//! from [`crate::frame`], so `alloc::boxed::Box`, `Vec` and friends work.
//!
//! The allocator is `linked_list_allocator`'s first-fit heap (a well-kept
//! crate; no need for our own) behind a spin lock, taken with events masked
//! so an event handler on the same vCPU can never find it held. Still,
//! handlers should not allocate. Until [`init`] runs every allocation fails
//! (and a failed allocation panics).

#[cfg(target_os = "none")]
mod imp {
    use core::alloc::{GlobalAlloc, Layout};

    pub struct Heap(pub linked_list_allocator::LockedHeap);

    // SAFETY: delegates to LockedHeap (a correct GlobalAlloc), only adding
    // event masking around each call.
    unsafe impl GlobalAlloc for Heap {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _irq = crate::events::IrqGuard::new();
            // SAFETY: forwarded contract.
            unsafe { self.0.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            let _irq = crate::events::IrqGuard::new();
            // SAFETY: forwarded contract.
            unsafe { self.0.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    pub static HEAP: Heap = Heap(linked_list_allocator::LockedHeap::empty());

    pub fn give(start: u64, size: usize) {
        let _irq = crate::events::IrqGuard::new();
        let mut h = HEAP.0.lock();
        if h.size() == 0 {
            // SAFETY: `start..start+size` is fresh, direct-mapped, writable
            // memory from the frame allocator, given to the heap for good.
            unsafe { h.init(start as *mut u8, size) };
        } else {
            // SAFETY: as above; `extend` needs the memory right after the
            // heap, which `init` checks before calling.
            unsafe { h.extend(size) };
        }
    }

    pub fn stats() -> (usize, usize) {
        let h = HEAP.0.lock();
        (h.used(), h.free())
    }

    pub fn top() -> u64 {
        HEAP.0.lock().top() as u64
    }
}

#[cfg(not(target_os = "none"))]
mod imp {
    pub fn give(_start: u64, _size: usize) {}
    pub fn stats() -> (usize, usize) {
        (0, 0)
    }
    pub fn top() -> u64 {
        0
    }
}

/// Gives the heap `pages` more pages (contiguous frames). The first call
/// sets the heap up.
pub fn init(pages: u64) -> Result<(), crate::mm::PtError> {
    let f = crate::frame::alloc_frames(pages, 1)?;
    let size = (pages * crate::layout::PAGE_SIZE) as usize;
    if imp::stats() != (0, 0) && imp::top() != f.va {
        // Not adjacent to the current heap: keep the frames, say so.
        return Err(crate::mm::PtError::NoMemory);
    }
    imp::give(f.va, size);
    Ok(())
}

/// `(used, free)` bytes.
pub fn stats() -> (usize, usize) {
    imp::stats()
}
