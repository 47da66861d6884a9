//! Every vCPU up, each says hello and pings vCPU 0 through an IPI port.
//!
//! ```text
//! cargo build --release --target x86_64-unknown-none -p pv-guest-lib --example smp
//! scripts/run --batch --smp 4 --dom0 target/x86_64-unknown-none/release/examples/smp </dev/null
//! ```

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicU32, Ordering};

    use pv_guest_lib::events::{self, Port};
    use pv_guest_lib::time::{self, NS_PER_MS};
    use pv_guest_lib::{percpu, println, runtime, smp, xen, StartInfo, Verdict};

    pv_guest_lib::entry!(kmain);

    static HELLO_PORT: AtomicU32 = AtomicU32::new(0);
    static HELLOS: AtomicU32 = AtomicU32::new(0);

    fn on_hello(_port: Port, _data: usize) {
        HELLOS.fetch_add(1, Ordering::SeqCst);
    }

    fn secondary(me: u32) -> ! {
        println!(
            "smp: hello from vCPU {me} (stack says {})",
            percpu::current_vcpu()
        );
        let _ = events::send(HELLO_PORT.load(Ordering::SeqCst));
        loop {
            let _ = xen::sched_block();
        }
    }

    fn kmain(_si: &'static StartInfo) -> ! {
        let mut v = Verdict::new();
        if let Err(e) = runtime::init() {
            v.fail(format_args!("runtime::init: {e}"));
            v.finish();
        }
        let n = smp::count();
        println!("smp: {n} vCPUs");
        match events::bind_ipi(0) {
            Ok(p) => {
                let _ = events::set_handler(p, on_hello, 0);
                HELLO_PORT.store(p, Ordering::SeqCst);
            }
            Err(e) => v.fail(format_args!("bind_ipi: {e}")),
        }
        for k in 1..n {
            if let Err(e) = smp::start(k, secondary) {
                v.fail(format_args!("starting vCPU {k}: {e}"));
            }
        }
        let deadline = time::now_ns() + 5_000 * NS_PER_MS;
        time::block_until(deadline, || HELLOS.load(Ordering::SeqCst) + 1 >= n);
        println!(
            "smp: {} of {} vCPUs said hello",
            HELLOS.load(Ordering::SeqCst),
            n - 1
        );
        v.check(
            HELLOS.load(Ordering::SeqCst) + 1 >= n,
            format_args!("missing hellos"),
        );
        v.finish()
    }
}
