//! bare-bench: a kernel written for bare metal that times, with the TSC,
//! the round trips an HVM guest pays for trapping instructions, and
//! reports them on COM1.
//!
//! It knows nothing of Oxen or Xen: it boots like bare-hello (QEMU's PVH
//! entry or Multiboot2), reads ACPI only to know how to power off, and
//! times, each [`ITERS`] times after [`WARMUP`] untimed runs:
//! * `hvm_floor_cycles`: nothing (the two TSC reads themselves);
//! * `hvm_cpuid_cycles`: `cpuid` leaf 0 (an HVM guest exits to the
//!   hypervisor, which answers from its CPUID policy);
//! * `hvm_pio_platform_cycles`: `in al, 0x61` (the PC/AT system control
//!   port, which the hypervisor's own platform emulates beside the PIT);
//! * `hvm_pio_dm_cycles`: `in al, dx` from 0x3fd, COM1's line status (the
//!   hypervisor forwards it as an ioreq to Dom0's device model and waits
//!   for the answer).
//!
//! On plain QEMU the same instructions go to QEMU's own emulation: that is
//! the reference the Oxen figures are set beside. Each figure is one line
//! `BENCH <name> <median> min=<min> n=<n>` (TSC cycles, the timing
//! overhead included: the floor says how much it is); then the kernel
//! powers off through ACPI S5. Before each `BENCH` line comes a
//! `bare: bench:` line with the spread (percentiles and maximum), and the
//! TSC's rate and resolution are printed first. Nothing here is judged: a figure is never
//! too big or too small.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_op_in_unsafe_fn)]

/// The host build is an empty stub: the kernel exists only for
/// `x86_64-unknown-none`.
#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use core::arch::asm;
    use hvm_guests::metal::boot::Boot;
    use hvm_guests::metal::serial::COM1;
    use hvm_guests::metal::{cpu, firmware, pit, power, tsc};
    use hvm_guests::println;
    use hvm_guests::stats::{self, percentile, BenchLine, Summary};

    hvm_guests::entry!(main);

    /// Timed round trips per figure.
    const ITERS: usize = 2000;
    /// Untimed round trips first (QEMU TCG translates the code, caches
    /// warm up, the device model's path is taken once).
    const WARMUP: usize = 200;
    /// The port the hypervisor's platform emulates: PC/AT port B (speaker
    /// gate, refresh toggle, PIT channel 2 output).
    const PORT_PLATFORM: u8 = 0x61;
    /// The port forwarded to Dom0's device model: COM1's line status.
    const PORT_DM: u16 = COM1 + 5;
    /// How long the TSC is set against the PIT, to say its rate.
    const CALIBRATE_US: u64 = 50_000;

    /// The figures, in the order printed.
    const FLOOR: &str = "hvm_floor_cycles";
    const CPUID: &str = "hvm_cpuid_cycles";
    const PIO_PLATFORM: &str = "hvm_pio_platform_cycles";
    const PIO_DM: &str = "hvm_pio_dm_cycles";

    fn main(boot: Boot) -> ! {
        println!(
            "bare: bare-bench: a kernel written for bare metal (it knows no hypervisor) times trapping instructions"
        );
        let platform = match firmware::discover(&boot) {
            Ok(p) => Some(p),
            Err(e) => {
                println!("bare: acpi: not usable ({e}); powering off the QEMU way");
                None
            }
        };
        power::set_s5_from(platform.as_ref());
        report_cpu();
        let rdtscp = tsc::has_rdtscp();
        println!(
            "bare: bench: TSC cycles per round trip, median and minimum of {ITERS} after {WARMUP} untimed; \
             timed between lfence;rdtsc;lfence and {}",
            if rdtscp { "rdtscp;lfence" } else { "lfence;rdtsc;lfence (no RDTSCP)" }
        );
        let mhz = tsc_mhz();
        println!(
            "bare: bench: TSC runs at about {mhz} MHz (against the PIT over {} ms)",
            CALIBRATE_US / 1000
        );
        report_resolution();
        if rdtscp {
            run_all::<true>();
        } else {
            run_all::<false>();
        }
        println!("bare: bench: done");
        let (port, typ) = power::s5();
        println!("bare: powering off (ACPI S5: PM1a_CNT {port:#x}, SLP_TYP {typ})");
        power::power_off()
    }

    /// Times every figure and prints its line as soon as it is measured.
    fn run_all<const RDTSCP: bool>() {
        // 16 KiB: on the 64 KiB boot stack (no allocator).
        let mut samples = [0u64; ITERS];
        let s = measure::<RDTSCP>(&mut samples, || {});
        report(FLOOR, s, &samples);
        let s = measure::<RDTSCP>(&mut samples, || {
            let _ = cpu::cpuid(0, 0);
        });
        report(CPUID, s, &samples);
        let s = measure::<RDTSCP>(&mut samples, || {
            let _ = in_imm_0x61();
        });
        report(PIO_PLATFORM, s, &samples);
        let s = measure::<RDTSCP>(&mut samples, || {
            let _ = cpu::inb(PORT_DM);
        });
        report(PIO_DM, s, &samples);
    }

    /// Prints one figure: its spread, then its `BENCH` line. `sorted`: the
    /// samples, sorted by [`stats::summarize`].
    fn report(name: &str, s: Option<Summary>, sorted: &[u64]) {
        let Some(summary) = s else {
            println!("BENCH {name} n/a (no samples)");
            return;
        };
        let p = |q| percentile(sorted, q).unwrap_or(0);
        println!(
            "bare: bench: {name} spread: p10={} p25={} p75={} p90={} p99={} max={}",
            p(10),
            p(25),
            p(75),
            p(90),
            p(99),
            p(100)
        );
        println!("{}", BenchLine { name, summary });
    }

    /// Says how finely the TSC counts here: the differences between
    /// back-to-back reads (on some hosts it advances in steps of tens of
    /// cycles, which bounds what the smallest figures can show).
    fn report_resolution() {
        let mut d = [0u64; 256];
        for x in d.iter_mut() {
            let a = tsc::begin();
            let b = tsc::begin();
            *x = b.wrapping_sub(a);
        }
        let nonzero = d.iter().filter(|&&v| v > 0).count();
        d.sort_unstable();
        println!(
            "bare: bench: TSC resolution: back-to-back reads differ by {} (median), {} (smallest nonzero), {} of {} nonzero",
            d[d.len() / 2],
            d.iter().copied().find(|&v| v > 0).unwrap_or(0),
            nonzero,
            d.len()
        );
    }

    /// `in al, 0x61`, the immediate form (as an OS reads port B).
    #[inline(always)]
    fn in_imm_0x61() -> u8 {
        let v: u8;
        // SAFETY: port input touches no memory; port 0x61 has no side
        // effect on a read.
        unsafe {
            asm!("in al, {p}", p = const PORT_PLATFORM, out("al") v, options(nomem, nostack, preserves_flags))
        };
        v
    }

    /// Runs `op` [`WARMUP`] times, then times it once per sample.
    #[inline(always)]
    fn measure<const RDTSCP: bool>(samples: &mut [u64], mut op: impl FnMut()) -> Option<Summary> {
        for _ in 0..WARMUP {
            op();
        }
        for s in samples.iter_mut() {
            let t0 = tsc::begin();
            op();
            let t1 = tsc::end::<RDTSCP>();
            *s = t1.wrapping_sub(t0);
        }
        stats::summarize(samples)
    }

    /// The TSC's rate: its ticks over [`CALIBRATE_US`] of the PIT.
    fn tsc_mhz() -> u64 {
        let t0 = tsc::begin();
        pit::delay_us(CALIBRATE_US);
        let t1 = tsc::end::<false>();
        t1.wrapping_sub(t0) / CALIBRATE_US
    }

    /// Says what CPU this is and whether it runs under a hypervisor (leaf 1
    /// ECX bit 31, the 0x40000000 leaf's signature): the two runs differ
    /// exactly there.
    fn report_cpu() {
        let l0 = cpu::cpuid(0, 0);
        let mut vendor = [0u8; 12];
        vendor[..4].copy_from_slice(&l0.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&l0.edx.to_le_bytes());
        vendor[8..].copy_from_slice(&l0.ecx.to_le_bytes());
        let l1 = cpu::cpuid(1, 0);
        const L1_ECX_HYPERVISOR: u32 = 1 << 31;
        let under = l1.ecx & L1_ECX_HYPERVISOR != 0;
        let mut sig = [0u8; 12];
        if under {
            let h = cpu::cpuid(0x4000_0000, 0);
            sig[..4].copy_from_slice(&h.ebx.to_le_bytes());
            sig[4..8].copy_from_slice(&h.ecx.to_le_bytes());
            sig[8..].copy_from_slice(&h.edx.to_le_bytes());
        }
        fn text(b: &[u8; 12]) -> Option<&str> {
            if b.iter().all(u8::is_ascii_graphic) {
                core::str::from_utf8(b).ok()
            } else {
                None
            }
        }
        println!(
            "bare: bench: cpu vendor={} leaf1_eax={:#x} hypervisor_bit={} hypervisor_signature={}",
            text(&vendor).unwrap_or("(not printable)"),
            l1.eax,
            u8::from(under),
            if under {
                text(&sig).unwrap_or("(not printable)")
            } else {
                "-"
            }
        );
    }
}
