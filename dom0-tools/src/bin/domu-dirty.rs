//! A guest (domU) kernel for the PV log-dirty test (`pv-logdirty`): it
//! writes a counter into the first word of 16 pages of its own memory,
//! round after round, forever (Dom0 destroys it).
//!
//! It tells Dom0 where everything is through the tail of its shared_info
//! page (past `struct shared_info`, [`dom0_tools::pvtest::dirty`]): the
//! pfn of the first written page (the 16 are consecutive), the pfn and
//! mfn of a 17th page it never writes, the mfn of the L1 table mapping
//! them, and its round counter. When Dom0 writes
//! [`CMD_REMAP`](dom0_tools::pvtest::dirty::CMD_REMAP) into the command
//! word it rewrites the mapping of the 17th page (writable, with
//! `update_va_mapping`) and acknowledges it.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicU64, Ordering};

    use dom0_tools::pvtest::dirty;
    use pv_guest_lib::mm::{Pte, PteFlags};
    use pv_guest_lib::{frame, mmu, println, shared, StartInfo};

    pv_guest_lib::entry!(kmain);

    /// The pages it writes, and the spare one after them.
    #[repr(C, align(4096))]
    struct Pages([[u64; 512]; dirty::PAGES as usize + 1]);

    static mut PAGES: Pages = Pages([[0; 512]; dirty::PAGES as usize + 1]);

    fn kmain(si: &'static StartInfo) -> ! {
        let Ok(view) = shared::map(si.shared_info) else {
            println!("domu-dirty: cannot map shared_info");
            loop {
                core::hint::spin_loop();
            }
        };
        let base = view as *const _ as u64;
        let word = |i: usize| {
            // SAFETY: the words `dirty::*` name lie in the last 256 bytes of
            // our shared_info page, past every field of struct shared_info;
            // 8-aligned, accessed only as atomics.
            unsafe { &*((base + dirty::OFFSET + 8 * i as u64) as *const AtomicU64) }
        };
        let pages = core::ptr::addr_of_mut!(PAGES) as *mut [u64; 512];
        let va0 = pages as u64;
        let spare_va = va0 + dirty::PAGES * 4096;
        let layout = pv_guest_lib::boot::layout();
        let pfn0 = layout.and_then(|l| l.va_to_pfn(va0)).unwrap_or(u64::MAX);
        let spare_pfn = pfn0 + dirty::PAGES;
        let spare_mfn = frame::pfn_to_mfn(spare_pfn).unwrap_or(u64::MAX);
        let _ = frame::init();
        let l1 = frame::with_pt(|b| pv_guest_lib::mm::find_l1(b, frame::kernel_l4(), va0))
            .ok()
            .flatten()
            .unwrap_or(u64::MAX);
        word(dirty::L1_INDEX).store(pv_guest_lib::mm::index(va0, 1) as u64, Ordering::Release);
        word(dirty::FIRST_PFN).store(pfn0, Ordering::Release);
        word(dirty::SPARE_PFN).store(spare_pfn, Ordering::Release);
        word(dirty::SPARE_MFN).store(spare_mfn, Ordering::Release);
        word(dirty::L1_MFN).store(l1, Ordering::Release);
        word(dirty::MAGIC).store(dirty::MAGIC_VALUE, Ordering::Release);
        println!(
            "domu-dirty: writing {} pages from pfn {pfn0:#x} (L1 mfn {l1:#x})",
            dirty::PAGES
        );
        let mut n: u64 = 0;
        loop {
            n = n.wrapping_add(1);
            for p in 0..dirty::PAGES as usize {
                // SAFETY: page `p` of PAGES, ours alone; a volatile store
                // so every round really writes every page.
                unsafe { core::ptr::addr_of_mut!((*pages.add(p))[0]).write_volatile(n) };
            }
            word(dirty::COUNTER).store(n, Ordering::Release);
            let cmd = word(dirty::CMD).load(Ordering::Acquire);
            if cmd == dirty::CMD_REMAP && word(dirty::ACK).load(Ordering::Acquire) != cmd {
                let pte = Pte::new(spare_mfn, PteFlags::KERNEL_RW);
                let r = mmu::update_va_mapping(spare_va, pte.0, mmu::Flush::InvlpgLocal);
                word(dirty::ACK).store(if r.is_ok() { cmd } else { u64::MAX }, Ordering::Release);
            }
            core::hint::spin_loop();
        }
    }
}
