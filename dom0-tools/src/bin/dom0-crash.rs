//! A test Dom0 that page-faults with no trap handler registered.
//!
//! It prints one line, clears its (empty) virtual IDT to be sure, and reads
//! an unmapped address. Xen's answer — and xen-core's — is to crash the
//! domain (`domain crash: d0v0` on the console, Dom0 shutdown reason
//! crash). Should the read return, it prints a failing verdict and powers
//! off, so the harness sees the wrong exit code.

#![cfg_attr(target_os = "none", no_std, no_main)]

/// The host build has nothing to run.
#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use dom0_tools::fault::{read_u64, UNMAPPED_LOW};
    use pv_guest_lib::{println, xen, StartInfo, Verdict};

    pv_guest_lib::entry!(crash_main);

    fn crash_main(_si: &'static StartInfo) -> ! {
        println!(
            "dom0-crash: reading unmapped address {UNMAPPED_LOW:#x} with no trap handler: the hypervisor must crash this domain"
        );
        let mut v = Verdict::new();
        if let Err(e) = xen::clear_trap_table() {
            v.error(format_args!("set_trap_table(NULL) failed: {e}"));
        }
        // SAFETY: nothing is mapped at UNMAPPED_LOW; the read faults.
        let value = unsafe { read_u64(UNMAPPED_LOW) };
        v.fail(format_args!(
            "reading {UNMAPPED_LOW:#x} returned {value:#x}: the hypervisor did not crash the domain"
        ));
        v.finish()
    }
}
