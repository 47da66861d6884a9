//! bare-count: a kernel written for bare metal that counts and keeps
//! checking its memory until it is stopped: the guest the save/restore
//! and migration tests move around.
//!
//! It knows nothing of Oxen or Xen. It fills [`REGION_LEN`] bytes of RAM
//! from [`REGION_BASE`] with [`hvm_guests::pattern`] pages, then, every
//! [`TICK_US`] of PIT time, checks every page, prints on COM1
//!
//! `bare-count: count N pages ok K/P sum S`
//!
//! (N counts up from 1 and never restarts; S is an FNV-1a of the region)
//! and rewrites one page at a new generation, so its memory keeps
//! changing; `busy=N` on its command line (Multiboot2's, xl.cfg's
//! `extra =`) makes it rewrite N pages a tick instead, and, between
//! ticks, keep rewriting pages rather than wait (the busy guest of the
//! migration benchmark); `busy=0` makes it rewrite nothing, so S stays
//! the same from the first count on (the canary beside a hostile guest).
//! A page that fails its check is reported as
//! `bare-count: count N FAILED page X word Y`. If the region is not RAM it
//! says so and powers off.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_op_in_unsafe_fn)]

/// The host build is an empty stub: the kernel exists only for
/// `x86_64-unknown-none`.
#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use hvm_guests::bootinfo::{self, Protocol};
    use hvm_guests::metal::boot::Boot;
    use hvm_guests::metal::{firmware, memmap, phys, pit, power};
    use hvm_guests::pattern::{self, WORDS};
    use hvm_guests::println;

    hvm_guests::entry!(main);

    /// The region's first byte: above the kernel image and its tables.
    const REGION_BASE: u64 = 8 << 20;
    /// The region's size.
    const REGION_LEN: u64 = 8 << 20;
    const PAGES: u64 = REGION_LEN / 4096;
    /// Time between two counts.
    const TICK_US: u64 = 200_000;

    fn main(boot: Boot) -> ! {
        println!("bare: bare-count: counts and checks its memory until it is stopped");
        power::set_s5_from(firmware::discover(&boot).ok().as_ref());
        match memmap::is_ram(&boot, REGION_BASE, REGION_LEN) {
            Ok(Some(true)) | Ok(None) => {}
            Ok(Some(false)) | Err(_) => {
                println!(
                    "bare-count: FAILED: {REGION_BASE:#x}+{REGION_LEN:#x} is not RAM (give the guest 32 MiB or more)"
                );
                power::power_off();
            }
        }
        // SAFETY: the region is RAM (the boot loader's memory map), mapped
        // 1:1 by the boot code, outside the kernel image and its stack,
        // and this kernel (one CPU) touches it only through this slice.
        let region: &mut [[u64; WORDS]] = unsafe {
            core::slice::from_raw_parts_mut(REGION_BASE as *mut [u64; WORDS], PAGES as usize)
        };
        for (n, p) in region.iter_mut().enumerate() {
            pattern::fill(p, n as u64, 0);
        }
        let busy = busy_pages(&boot);
        println!("bare-count: {PAGES} pages filled; rewriting {busy} a tick");
        let mut count: u64 = 0;
        let mut next = 0usize;
        loop {
            count += 1;
            let mut sum = pattern::FNV_START;
            let mut ok = 0u64;
            let mut first_bad = None;
            for (n, p) in region.iter().enumerate() {
                match pattern::check(p, n as u64) {
                    None => ok += 1,
                    Some(w) => {
                        first_bad.get_or_insert((n, w));
                    }
                }
                sum = pattern::fnv(sum, p);
            }
            println!("bare-count: count {count} pages ok {ok}/{PAGES} sum {sum:016x}");
            if let Some((n, w)) = first_bad {
                println!("bare-count: count {count} FAILED page {n} word {w}");
            }
            if busy == 0 {
                pit::delay_us(TICK_US);
            } else if busy == 1 {
                let page = (count % PAGES) as usize;
                pattern::fill(&mut region[page], page as u64, count);
                pit::delay_us(TICK_US);
            } else {
                // Busy: rewrite pages for the whole tick, at least `busy`.
                let mut deadline = pit::Deadline::after_us(TICK_US);
                let mut done = 0u64;
                while done < busy || !deadline.expired() {
                    pattern::fill(&mut region[next], next as u64, count);
                    next = (next + 1) % PAGES as usize;
                    done += 1;
                }
            }
        }
    }

    /// `busy=N` from the Multiboot2 command line (1 without one; 0: keep
    /// still).
    fn busy_pages(boot: &Boot) -> u64 {
        if boot.protocol != Some(Protocol::Multiboot2) {
            return 1;
        }
        let Ok(size) = phys::bytes(boot.info, 8).and_then(bootinfo::mb2_total_size) else {
            return 1;
        };
        phys::bytes(boot.info, size)
            .ok()
            .and_then(|info| bootinfo::mb2_cmdline(info).ok().flatten())
            .and_then(|c| bootinfo::cmdline_value(c, "busy"))
            .and_then(|v| v.parse().ok())
            .map_or(1, |n: u64| n.min(PAGES))
    }
}
