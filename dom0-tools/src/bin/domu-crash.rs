//! A guest (domU) kernel that crashes on purpose, for the toolstack's
//! `on_crash` tests: says it is up on its console ring, runs for a moment
//! (so a restart loop does not hog the machine), then reports a crash
//! with `SCHEDOP_shutdown(SHUTDOWN_crash)`, as a kernel panic does.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use pv_guest_lib::{println, time, xen, StartInfo};

    pv_guest_lib::entry!(kmain);

    /// How long it runs before crashing.
    const UP_NS: u64 = 300_000_000;

    fn kmain(si: &'static StartInfo) -> ! {
        println!(
            "domu-crash: up ({} pages), crashing in {} ms",
            si.nr_pages,
            UP_NS / 1_000_000
        );
        if pv_guest_lib::runtime::init().is_ok() {
            time::sleep_ns(UP_NS);
        }
        println!("domu-crash: crashing now");
        xen::crash()
    }
}
