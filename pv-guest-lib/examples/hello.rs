//! The smallest PV kernel that behaves like a Xen guest: it prints its
//! greeting, asks the hypervisor its version and then
//!
//! - as Dom0 (the initial domain: nobody to ask it anything) powers off;
//! - as an ordinary domain (`xl create`) connects to xenstore, says which
//!   domain it is, and waits for the toolstack: `xl shutdown` powers it
//!   off, `xl reboot` reboots it (the toolstack builds it again), `xl
//!   destroy` just ends it. It acknowledges each request in
//!   `control/shutdown` as Linux does, so `xl shutdown -w` returns when it
//!   is gone.
//!
//! ```text
//! cargo build --release --target x86_64-unknown-none -p pv-guest-lib --example hello
//! scripts/run --batch --dom0 target/x86_64-unknown-none/release/examples/hello </dev/null
//! ```
//!
//! Dom0's ramdisk carries it as `/boot/hello` with `/etc/xen/hello.cfg`:
//!
//! ```text
//! dom0# xl create /etc/xen/hello.cfg
//! dom0# xl console hello          (Ctrl-] to leave)
//! dom0# xl reboot hello
//! dom0# xl shutdown hello
//! ```
//!
//! On its console (the PV console ring; Dom0's is the hypervisor's):
//!
//! ```text
//! hello from a PV kernel: 4096 pages, cmdline "hello from xl"
//! running on Xen 4.17
//! Hello from Oxen! I am domain 1 ("hello").
//! hello: waiting for xl shutdown / xl reboot (control/shutdown)
//! hello: shutdown request 'poweroff', bye
//! VERDICT: SUCCESS
//! ```
//!
//! Without a xenstore daemon answering (a bare builder test), it says so
//! and powers off. The host build (`cargo test`) is an empty stub.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use pv_guest_lib::abi::sched::ShutdownReason;
    use pv_guest_lib::domu::{self, ShutdownWatcher};
    use pv_guest_lib::xenbus::{XsError, NO_TX};
    use pv_guest_lib::{console, println, runtime, util, xen, StartInfo, Verdict};

    pv_guest_lib::entry!(kmain);

    /// How long to wait for xenstored's first answer before concluding
    /// that nobody serves our ring, when the ring page says nobody took it
    /// on (no `server_features`: a bare builder test, or an old daemon).
    const UNSERVED_REPLY_NS: u64 = 3_000_000_000;

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
        let hv = match xen::extraversion() {
            Ok(x) if util::c_str(&x.bytes).contains("oxen") => "Oxen",
            _ => "Xen",
        };
        if !domu::is_domu(si) {
            println!("Hello from {hv}! I am the initial domain (Dom0).");
            v.finish() // prints "VERDICT: ..." and powers off
        }
        if let Err(e) = runtime::init() {
            v.error(format_args!("runtime::init: {e}"));
            v.finish()
        }
        let _ = console::init_logger(log::LevelFilter::Info);
        let mut xs = match domu::connect(si) {
            Ok(xs) => xs,
            Err(e) => {
                println!("Hello from {hv}! No xenstore ({e}): powering off.");
                v.finish()
            }
        };
        if xs.transport().server_features() == 0 {
            xs.transport().set_timeout_ns(UNSERVED_REPLY_NS);
        }
        let domid = match xs.read_string(NO_TX, "domid") {
            Err(XsError::NoReply) => {
                println!("Hello from {hv}! xenstore does not answer: powering off.");
                v.finish()
            }
            r => r.unwrap_or_else(|_| "?".into()),
        };
        xs.transport()
            .set_timeout_ns(pv_guest_lib::xenbus::metal::DEFAULT_TIMEOUT_NS);
        match xs.read_string(NO_TX, "name") {
            Ok(name) => println!("Hello from {hv}! I am domain {domid} (\"{name}\")."),
            Err(_) => println!("Hello from {hv}! I am domain {domid}."),
        }
        let mut watcher = match ShutdownWatcher::start(&mut xs) {
            Ok(w) => w,
            Err(e) => {
                v.error(format_args!("watching control/shutdown: {e}"));
                v.finish()
            }
        };
        println!("hello: waiting for xl shutdown / xl reboot (control/shutdown)");
        match watcher.wait_for_shutdown(&mut xs) {
            Ok(s) => {
                println!("hello: shutdown request '{}', bye", s.value);
                println!("{}", v.line());
                xen::shutdown(s.reason)
            }
            Err(e) => {
                v.error(format_args!("lost xenstore: {e}"));
                println!("{}", v.line());
                xen::shutdown(ShutdownReason::Crash)
            }
        }
    }
}
