//! The smallest PV kernel: print, ask the hypervisor its version, power off.
//!
//! ```text
//! cargo build --release --target x86_64-unknown-none -p pv-guest-lib --example hello
//! scripts/run --batch --dom0 target/x86_64-unknown-none/release/examples/hello </dev/null
//! ```
//!
//! The host build (`cargo test`) is an empty stub.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use pv_guest_lib::{println, xen, StartInfo, Verdict};

    pv_guest_lib::entry!(kmain);

    fn kmain(si: &'static StartInfo) -> ! {
        println!(
            "hello from a PV kernel: {} pages, cmdline \"{}\"",
            si.nr_pages,
            si.cmd_line()
        );
        let mut v = Verdict::new();
        match xen::version() {
            Ok(ver) => println!("running on Xen {ver}"),
            Err(e) => v.fail(format_args!("xen_version: {e}")),
        }
        v.finish() // prints "VERDICT: ..." and powers off
    }
}
