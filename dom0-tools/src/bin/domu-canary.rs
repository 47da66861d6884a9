//! The canary guest of the hostile fuzzing test (issue 8): fills
//! [`PAGES`] pages with a pattern, checksums them, and from then on, every
//! ~100 ms, recomputes the checksum and prints a heartbeat line:
//!
//! ```text
//! domu-canary: heartbeat <n> checksum <hex>
//! ```
//!
//! Its Dom0 (`dom0-fuzz`) reads the lines from its console: the counter
//! must keep advancing while the fuzzer runs beside it, and the checksum
//! must never change. It runs until it is destroyed.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use dom0_tools::hostile::Rng;
    use pv_guest_lib::{frame, println, runtime, time, StartInfo};

    pv_guest_lib::entry!(main);

    /// Pages of pattern.
    const PAGES: u64 = 64;
    /// The pattern's seed.
    const SEED: u64 = 0xca4a_7e57;
    /// Heartbeat period.
    const PERIOD_NS: u64 = 100_000_000;

    /// FNV-1a over the words of the pages at `va`.
    fn checksum(va: u64) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for i in 0..PAGES * 512 {
            // SAFETY: `va` is the start of PAGES frames allocated to us
            // and direct-mapped (alloc_frames); i < PAGES * 512 words.
            let w = unsafe { ((va + i * 8) as *const u64).read_volatile() };
            h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }

    fn main(_si: &'static StartInfo) -> ! {
        println!("domu-canary: {PAGES} pages of pattern, a heartbeat every 100 ms");
        if runtime::init().is_err() {
            println!("domu-canary: ERROR: runtime init");
            pv_guest_lib::xen::crash();
        }
        let Ok(pages) = frame::alloc_frames(PAGES, 1) else {
            println!("domu-canary: ERROR: no frames");
            pv_guest_lib::xen::crash();
        };
        let mut r = Rng::new(SEED);
        for i in 0..PAGES * 512 {
            let v = r.next_u64();
            // SAFETY: as in `checksum`, and the frames are writable.
            unsafe { ((pages.va + i * 8) as *mut u64).write_volatile(v) };
        }
        let mut n: u64 = 0;
        let mut next = time::now_ns();
        loop {
            n += 1;
            println!(
                "domu-canary: heartbeat {n} checksum {:016x}",
                checksum(pages.va)
            );
            next += PERIOD_NS;
            let now = time::now_ns();
            if next > now {
                time::sleep_ns(next - now);
            } else {
                next = now;
            }
        }
    }
}
