//! A CPU-bound guest (domU) kernel for scheduler tests: says so on its
//! console ring, then spins on its one vCPU forever (Dom0 destroys it).

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use pv_guest_lib::{println, StartInfo};

    pv_guest_lib::entry!(kmain);

    fn kmain(si: &'static StartInfo) -> ! {
        println!("domu-spin: spinning ({} pages)", si.nr_pages);
        let mut n: u64 = 0;
        loop {
            n = n.wrapping_add(1);
            core::hint::black_box(n);
            core::hint::spin_loop();
        }
    }
}
