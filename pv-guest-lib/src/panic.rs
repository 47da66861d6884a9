//! The panic handler (feature `panic-handler`, bare-metal builds only):
//! prints the panic on the console and shuts the domain down with
//! `SHUTDOWN_crash`.
//!
//! It writes without the console lock (the panic may have happened while
//! printing) and goes straight to the shutdown if a second panic happens
//! while reporting the first.

#![forbid(unsafe_code)]

use core::fmt::Write;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::console::Console;

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    if !PANICKING.swap(true, Ordering::SeqCst) {
        let mut c = Console;
        let _ = match info.location() {
            Some(l) => writeln!(
                c,
                "PANIC at {}:{}:{}: {}",
                l.file(),
                l.line(),
                l.column(),
                info.message()
            ),
            None => writeln!(c, "PANIC: {}", info.message()),
        };
    }
    crate::xen::crash()
}
