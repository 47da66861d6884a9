//! The machine-memory glue: the global frame allocator and frame table
//! (`xen_core::mm`), the hypervisor heap, and the machine-to-phys table (M2P)
//! that Xen maps read-only into every PV guest at MACH2PHYS_VIRT_START.

use crate::arch::x86_64::paging::{self, phys_to_virt};
use crate::arch::x86_64::pool;
use spin::Mutex;
use xen_core::mm::frame_alloc::{self, FrameAllocator};
use xen_core::mm::frame_table::{FrameTable, PageInfo};
use xen_core::mm::memmap::MemMap;
use xen_core::mm::{Mfn, PAGE_SIZE};

/// The frame allocator (set up once at boot).
pub static FRAMES: Mutex<Option<FrameAllocator<'static>>> = Mutex::new(None);
/// The frame table (set up once at boot).
pub static FRAME_TABLE: Mutex<Option<FrameTable<'static>>> = Mutex::new(None);

/// M2P entries for frames no domain owns (Xen's INVALID_M2P_ENTRY).
pub const INVALID_M2P_ENTRY: u64 = !0;
/// Heap size given to `alloc`.
const HEAP_BYTES: u64 = 8 << 20;

static M2P: spin::Once<(u64, u64)> = spin::Once::new();
static M2P_BASE: spin::Once<(Mfn, u64)> = spin::Once::new();
static MAX_MFN: spin::Once<u64> = spin::Once::new();

/// The highest machine frame number (XENMEM_maximum_ram_page).
pub fn max_mfn() -> u64 {
    MAX_MFN.get().copied().unwrap_or(0)
}

/// The M2P table's first frame and its length in frames.
pub fn m2p_frames() -> (Mfn, u64) {
    M2P_BASE.get().copied().unwrap_or((Mfn(0), 0))
}

/// Builds the allocator, frame table, heap and M2P over `map` (RAM still
/// free). Returns (total RAM frames, free frames) for the boot report.
pub fn init(map: &MemMap) -> (u64, u64) {
    let nr_frames = map.ram_end() / PAGE_SIZE;
    let words = frame_alloc::storage_words(nr_frames);
    let va = pool::alloc(words * 8, 4096).expect("boot pool too small for the frame bitmaps");
    // SAFETY: fresh pool memory of `words` u64s, ours forever.
    let storage = unsafe { core::slice::from_raw_parts_mut(va as *mut u64, words) };
    let mut fa =
        FrameAllocator::from_memmap(storage, map).expect("frame allocator over the RAM map");
    let total = fa.total_frames();

    // The frame table: one PageInfo per frame up to the end of RAM.
    let ft_bytes = nr_frames * core::mem::size_of::<PageInfo>() as u64;
    let ft_frames = ft_bytes.div_ceil(PAGE_SIZE);
    let ft = fa
        .alloc_contig(ft_frames, 1)
        .expect("memory for the frame table");
    let ft_ptr = phys_to_virt(ft.maddr()) as *mut PageInfo;
    for i in 0..nr_frames as usize {
        // SAFETY: the frame table frames were just allocated for us and are
        // mapped by the direct map; i < nr_frames fits the allocation.
        unsafe { ft_ptr.add(i).write(PageInfo::FREE) };
    }
    // SAFETY: initialised above; the memory is ours forever.
    let pages = unsafe { core::slice::from_raw_parts_mut(ft_ptr, nr_frames as usize) };
    let table = FrameTable::new(pages);

    let heap = fa
        .alloc_contig(HEAP_BYTES / PAGE_SIZE, 1)
        .expect("memory for the heap");
    // SAFETY: freshly allocated frames, direct-mapped, used by nothing else.
    unsafe { crate::heap::init(phys_to_virt(heap.maddr()), HEAP_BYTES as usize) };

    // The M2P: 8 bytes per machine frame, all invalid to start with.
    let m2p_frames = (nr_frames * 8).div_ceil(PAGE_SIZE);
    let m2p = fa
        .alloc_contig(m2p_frames, 1)
        .expect("memory for the M2P table");
    let m2p_va = phys_to_virt(m2p.maddr()) as *mut u64;
    for i in 0..(m2p_frames * PAGE_SIZE / 8) as usize {
        // SAFETY: the M2P frames were just allocated and are direct-mapped.
        unsafe { m2p_va.add(i).write(INVALID_M2P_ENTRY) };
    }
    paging::map_m2p(m2p.maddr(), m2p_frames * PAGE_SIZE);
    M2P.call_once(|| (m2p_va as u64, nr_frames));
    M2P_BASE.call_once(|| (m2p, m2p_frames));
    MAX_MFN.call_once(|| nr_frames.saturating_sub(1));

    let free = fa.free_frames();
    *FRAME_TABLE.lock() = Some(table);
    *FRAMES.lock() = Some(fa);
    (total, free)
}

/// Records `m2p[mfn] = pfn`.
pub fn set_m2p(mfn: Mfn, pfn: u64) {
    if let Some(&(va, nr)) = M2P.get() {
        if mfn.0 < nr {
            // SAFETY: `mfn` indexes inside the M2P allocated at boot.
            unsafe { (va as *mut u64).add(mfn.0 as usize).write(pfn) };
        }
    }
}

/// `m2p[mfn]`, if `mfn` is inside the M2P.
pub fn m2p(mfn: Mfn) -> Option<u64> {
    let &(va, nr) = M2P.get()?;
    // SAFETY: `mfn` indexes inside the M2P allocated at boot.
    (mfn.0 < nr).then(|| unsafe { (va as *const u64).add(mfn.0 as usize).read() })
}

/// Frames of RAM the allocator manages (free or not).
pub fn total_frames() -> u64 {
    FRAMES.lock().as_ref().map_or(0, |f| f.total_frames())
}

/// Frames free right now.
pub fn free_frames() -> u64 {
    FRAMES.lock().as_ref().map_or(0, |f| f.free_frames())
}

/// `N` frames from the allocator, all or none (a partial allocation is
/// given back).
pub fn alloc_frames<const N: usize>() -> Option<[Mfn; N]> {
    let mut fa = FRAMES.lock();
    let fa = fa.as_mut()?;
    let mut out = [Mfn(0); N];
    for i in 0..N {
        match fa.alloc() {
            Ok(m) => out[i] = m,
            Err(_) => {
                for m in &out[..i] {
                    let _ = fa.free(*m);
                }
                return None;
            }
        }
    }
    Some(out)
}

/// Gives frames from [`alloc_frames`] back.
pub fn free_frame_list(frames: &[Mfn]) {
    if let Some(fa) = FRAMES.lock().as_mut() {
        for m in frames {
            let _ = fa.free(*m);
        }
    }
}

/// A page of machine memory as a byte slice through the direct map.
///
/// # Safety
/// The caller must own `mfn` (allocated to it, not shared with a running
/// guest in a way that races) for the lifetime of the slice.
pub unsafe fn frame_bytes(mfn: Mfn) -> &'static mut [u8] {
    // SAFETY: per the contract; the direct map covers all RAM.
    unsafe {
        core::slice::from_raw_parts_mut(phys_to_virt(mfn.maddr()) as *mut u8, PAGE_SIZE as usize)
    }
}

/// Zeroes a frame.
pub fn clear_frame(mfn: Mfn) {
    // SAFETY: callers pass frames they just allocated.
    unsafe { frame_bytes(mfn) }.fill(0);
}

/// Zeroes `len` bytes at `va` (64-byte aligned, a multiple of 64) with
/// 16-byte SSE stores, which emulators run several times faster than
/// `rep stosq`. xmm0 is saved and restored around the loop, so a guest's
/// vector state is never disturbed.
///
/// # Safety
/// `[va, va + len)` must be mapped, writable memory owned by the caller.
pub unsafe fn zero_bytes(va: u64, len: u64) {
    use crate::arch::x86_64::instr;
    let ts = instr::read_cr0() & instr::CR0_TS != 0;
    instr::clts();
    let mut save = [0u8; 16];
    // SAFETY: per the contract the range is ours; CR4.OSFXSR is set on every
    // CPU (smp::cpu_init) so SSE instructions are enabled; xmm0 is saved to
    // `save` first and restored last.
    unsafe {
        core::arch::asm!(
            "movdqu [{save}], xmm0",
            "pxor xmm0, xmm0",
            "2:",
            "test {n}, {n}",
            "jz 3f",
            "movdqa [{p}], xmm0",
            "movdqa [{p} + 16], xmm0",
            "movdqa [{p} + 32], xmm0",
            "movdqa [{p} + 48], xmm0",
            "add {p}, 64",
            "dec {n}",
            "jmp 2b",
            "3:",
            "movdqu xmm0, [{save}]",
            save = in(reg) save.as_mut_ptr(),
            p = inout(reg) va => _,
            n = inout(reg) len / 64 => _,
            options(nostack)
        )
    };
    if ts {
        instr::stts();
    }
}
