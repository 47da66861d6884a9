//! Timers and the async runtime: sleep, race a timeout, read the clocks.
//!
//! ```text
//! cargo build --release --target x86_64-unknown-none -p pv-guest-lib --example timers
//! scripts/run --batch --dom0 target/x86_64-unknown-none/release/examples/timers </dev/null
//! ```

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use pv_guest_lib::executor::{block_on, port_event, sleep, spawn, timeout};
    use pv_guest_lib::time::{self, NS_PER_MS};
    use pv_guest_lib::{println, runtime, StartInfo, Verdict};

    pv_guest_lib::entry!(kmain);

    fn kmain(_si: &'static StartInfo) -> ! {
        let mut v = Verdict::new();
        if let Err(e) = runtime::init() {
            v.fail(format_args!("runtime::init: {e}"));
            v.finish();
        }
        if let Some((sec, ns)) = time::wallclock() {
            println!(
                "timers: wallclock {sec}.{ns:09}, system time {} ms",
                time::now_ns() / NS_PER_MS
            );
        }
        spawn(async {
            for i in 1..=3 {
                sleep(30 * NS_PER_MS).await;
                println!("timers: background task tick {i}");
            }
        });
        let elapsed = block_on(async {
            let t = time::now_ns();
            sleep(100 * NS_PER_MS).await;
            time::now_ns() - t
        });
        println!("timers: slept {} ms", elapsed / NS_PER_MS);
        v.check(
            elapsed >= 100 * NS_PER_MS,
            format_args!("slept only {elapsed} ns"),
        );
        // Nothing will ever arrive on port 4000: the timeout wins.
        let r = block_on(timeout(20 * NS_PER_MS, port_event(4000)));
        println!("timers: waiting on a silent port: {r:?}");
        v.check(r.is_err(), format_args!("the timeout did not fire"));
        v.finish()
    }
}
