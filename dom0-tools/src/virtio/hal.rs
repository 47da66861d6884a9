//! `virtio_drivers::Hal` for a PV Dom0 (see the module above).

use core::ptr::NonNull;

use super::{machine_contiguous, maddr_of, page_span, PAGE};
use pv_guest_lib::frame::{self, Frame};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

/// Tries to find a machine-contiguous run before giving up.
const DMA_TRIES: usize = 4;

/// Allocates `pages` zeroed frames, contiguous in Dom0's direct map and
/// in machine memory. The first frame is returned.
pub fn alloc_dma(pages: u64) -> Option<Frame> {
    for _ in 0..DMA_TRIES {
        let f = frame::alloc_frames(pages, 1).ok()?;
        if machine_contiguous((0..pages).map(|i| frame::pfn_to_mfn(f.pfn + i).unwrap_or(u64::MAX)))
        {
            return Some(f);
        }
        // Keep the run out of the way (it goes on the free list page by
        // page) and try the next one.
        free_dma(f, pages);
    }
    None
}

/// Gives back a run from [`alloc_dma`].
pub fn free_dma(f: Frame, pages: u64) {
    for i in 0..pages {
        if let (Some(mfn), Some(va)) = (frame::pfn_to_mfn(f.pfn + i), frame::direct_va(f.pfn + i)) {
            frame::free_frame(Frame {
                pfn: f.pfn + i,
                mfn,
                va,
            });
        }
    }
}

/// The machine frame behind kernel address `va`: the direct map through
/// the P2M, anything else through the page tables.
pub fn va_to_mfn(va: u64) -> Option<u64> {
    if let Some(pfn) = frame::direct_pfn(va) {
        return frame::pfn_to_mfn(pfn);
    }
    // A frontend's page blkback reads and writes in place.
    if let Some(mfn) = crate::netback::metal::window_mfn(va) {
        return Some(mfn);
    }
    let pte = frame::lookup_kernel(va & !(PAGE - 1)).ok()?;
    pte.present().then(|| pte.mfn())
}

/// A buffer shared through a bounce run.
#[derive(Clone, Copy)]
struct Bounce {
    maddr: u64,
    first: Frame,
    pages: u64,
}

/// Bounce runs in flight (a virtqueue has at most a few hundred buffers
/// out; the table is checked before a bounce is made).
static BOUNCES: spin::Mutex<heapless::Vec<Bounce, 256>> = spin::Mutex::new(heapless::Vec::new());

/// The PV Dom0 HAL.
#[derive(Debug)]
pub struct Dom0Hal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned, direct-mapped frames
// owned by nobody else until `dma_dealloc`; `mmio_phys_to_virt` returns a
// fresh uncached mapping of the device range; `share` returns the machine
// address of memory that stays valid (the buffer itself or a bounce run
// kept until `unshare`).
unsafe impl Hal for Dom0Hal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match alloc_dma(pages as u64) {
            Some(f) => (
                f.mfn * PAGE,
                NonNull::new(f.va as *mut u8).unwrap_or(NonNull::dangling()),
            ),
            // The crate turns a zero address into `Error::DmaError`.
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let Some(pfn) = frame::direct_pfn(vaddr.as_ptr() as u64) else {
            return -1;
        };
        free_dma(
            Frame {
                pfn,
                mfn: paddr / PAGE,
                va: vaddr.as_ptr() as u64,
            },
            pages as u64,
        );
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        match crate::pci::metal::map_io(paddr, size as u64) {
            Ok(va) => NonNull::new(va as *mut u8).expect("mapped"),
            Err(e) => panic!("virtio: cannot map device memory {paddr:#x}+{size:#x}: {e}"),
        }
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let va = buffer.as_ptr() as *mut u8 as u64;
        let len = buffer.len() as u64;
        let Some((first, n)) = page_span(va, len) else {
            return 0;
        };
        let mfns = (0..n).map(|i| va_to_mfn(first + i * PAGE).unwrap_or(u64::MAX));
        if machine_contiguous(mfns) {
            if let Some(m) = va_to_mfn(first) {
                return maddr_of(m, va);
            }
        }
        // Bounce: a machine-contiguous run holding a copy.
        BOUNCED.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        let pages = len.div_ceil(PAGE);
        let Some(b) = alloc_dma(pages) else {
            panic!("virtio: no memory to bounce a {len}-byte buffer");
        };
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller's buffer is valid for `len` bytes; the
            // bounce run is `pages * PAGE >= len` bytes, ours alone.
            unsafe {
                core::ptr::copy_nonoverlapping(va as *const u8, b.va as *mut u8, len as usize)
            };
        }
        let rec = Bounce {
            maddr: b.mfn * PAGE,
            first: b,
            pages,
        };
        if BOUNCES.lock().push(rec).is_err() {
            panic!("virtio: too many bounced buffers in flight");
        }
        rec.maddr
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let rec = {
            let mut t = BOUNCES.lock();
            let Some(i) = t.iter().position(|b| b.maddr == paddr) else {
                return; // shared in place
            };
            t.swap_remove(i)
        };
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: as in `share`: both ranges valid for the buffer's
            // length, the bounce run no longer used by the device.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    rec.first.va as *const u8,
                    buffer.as_ptr() as *mut u8,
                    buffer.len(),
                )
            };
        }
        free_dma(rec.first, rec.pages);
    }
}

/// Buffers bounced so far (each costs an allocation and a copy; a
/// machine-contiguous buffer, e.g. a [`DmaBuf`], never is).
pub fn bounced() -> u64 {
    BOUNCED.load(core::sync::atomic::Ordering::Relaxed)
}

static BOUNCED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Bounce runs in flight now (for tests and leak checks).
pub fn bounces_in_flight() -> usize {
    BOUNCES.lock().len()
}

/// A zeroed buffer in machine-contiguous memory ([`alloc_dma`]): the
/// device reads and writes it in place (the HAL's `share` finds it
/// contiguous and does not bounce). Freed on drop.
pub struct DmaBuf {
    first: Frame,
    pages: u64,
    len: usize,
}

impl DmaBuf {
    /// `len` bytes (rounded up to whole pages), or `None` if no
    /// machine-contiguous run was found.
    pub fn new(len: usize) -> Option<DmaBuf> {
        let pages = (len as u64).div_ceil(PAGE).max(1);
        let first = alloc_dma(pages)?;
        Some(DmaBuf { first, pages, len })
    }

    /// The bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `alloc_dma` gave us `pages` zeroed frames, contiguous in
        // the direct map from `first.va`, owned by this buffer alone until
        // `drop` frees them; `len <= pages * PAGE`; the borrow of `self`
        // keeps anyone else from reaching them meanwhile.
        unsafe { core::slice::from_raw_parts_mut(self.first.va as *mut u8, self.len) }
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        free_dma(self.first, self.pages);
    }
}

impl crate::blkback::IoBuf for DmaBuf {
    fn bytes(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
    fn as_any(&mut self) -> &mut dyn core::any::Any {
        self
    }
}
