//! A CPU-bound guest (domU) kernel for scheduler tests: says so on its
//! console ring, then spins on its one vCPU forever (Dom0 destroys it).
//!
//! It counts its loop iterations into the last 8 bytes of its shared_info
//! page ([`dom0_tools::pvtest::SPIN_COUNTER_OFFSET`], past every field of
//! `struct shared_info`), where Dom0 reads them through a foreign mapping:
//! work done is the CPU time the guest really got, whatever the emulator's
//! host thread went through meanwhile.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use dom0_tools::pvtest::SPIN_COUNTER_OFFSET;
    use pv_guest_lib::{println, shared, StartInfo};

    pv_guest_lib::entry!(kmain);

    fn kmain(si: &'static StartInfo) -> ! {
        println!("domu-spin: spinning ({} pages)", si.nr_pages);
        let counter = shared::map(si.shared_info)
            .ok()
            .map(|v| (v as *const _ as u64 + SPIN_COUNTER_OFFSET) as *mut u64);
        let mut n: u64 = 0;
        loop {
            n = n.wrapping_add(1);
            if n.is_multiple_of(1024) {
                if let Some(p) = counter {
                    // SAFETY: the last 8 bytes of our shared_info page: no
                    // field of struct shared_info (3136 bytes) is there.
                    unsafe { p.write_volatile(n) };
                }
            }
            core::hint::black_box(n);
            core::hint::spin_loop();
        }
    }
}
