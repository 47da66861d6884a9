//! bare-fuzz: a kernel written for bare metal that throws random port
//! I/O, MMIO, MSR accesses, CPUID leaves, malformed instruction streams
//! aimed at MMIO and raw hypercalls at whatever runs it, survives every
//! exception that earns it (the IDT resumes after the operation, see
//! `metal::trap`) and says how each class was answered: the hostile HVM
//! guest of issue 8.
//!
//! Command line (Multiboot2's, xl.cfg's `extra =`): `seed=S count=N`
//! (defaults [`Config::DEFAULT_SEED`], [`Config::DEFAULT_COUNT`]); the
//! same seed replays the same operations; `trace=N` says each one from
//! number N on before making it, and every 1000th before that (`bare-fuzz: op N ...` on Xen's debug port 0xe9, which the
//! hypervisor prints at once: to find the one that hangs or worse). The generators and the rules
//! that keep an operation from killing the guest the way real hardware
//! would (reset ports, INIT to itself, hypercalls that give away its RAM)
//! are `hvm_guests::fuzz`'s. Output:
//!
//! ```text
//! fuzz: seed <S>
//! fuzz: class <class>: <N> calls; <answer>=<count> ...
//! fuzz: total <N> calls in <ms> ms
//! ```
//!
//! then ACPI S5. One vCPU; interrupts stay off throughout. The first
//! `fuzz::PREAMBLE` operations, whatever the seed, close its event channel
//! ports and reset them (`fuzz::preamble`): the ports the hypervisor
//! reaches the device model through must survive that.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_op_in_unsafe_fn)]

/// The host build is an empty stub: the kernel exists only for
/// `x86_64-unknown-none`.
#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicBool, Ordering};

    use hvm_guests::bootinfo::{self, Protocol};
    use hvm_guests::fuzz::{
        self, errno_answer, vector_answer, Class, Config, MsrCtx, Rng, Tally, IOAPIC, OK, SKIPPED,
        STRAY,
    };
    use hvm_guests::metal::boot::Boot;
    use hvm_guests::metal::trap::{self, Regs, NO_FAULT};
    use hvm_guests::metal::{cpu, firmware, memmap, paging, phys, pic, pit, power, serial, tsc};
    use hvm_guests::println;

    hvm_guests::entry!(main);

    /// How long the TSC is timed against the PIT.
    const CALIBRATE_US: u64 = 20_000;
    /// Progress lines per run.
    const PROGRESS_STEPS: u64 = 4;

    /// Page-aligned memory the kernel only touches through raw pointers
    /// (the hypercall scratch page, the streams' stack and code).
    #[repr(C, align(4096))]
    struct Area<const N: usize>(UnsafeCell<[u8; N]>);

    // SAFETY: one CPU; the areas are only reached through raw pointers by
    // this kernel and the code it runs.
    unsafe impl<const N: usize> Sync for Area<N> {}

    impl<const N: usize> Area<N> {
        const fn new() -> Self {
            Area(UnsafeCell::new([0; N]))
        }
        fn addr(&self) -> u64 {
            // 1:1 map: the address is the physical address.
            self.0.get() as u64
        }
    }

    /// The instruction streams' stack (RSP starts in its middle: a
    /// stream may move it by a byte's worth either way).
    static STACK: Area<16384> = Area::new();
    /// The instruction stream, then `int3`s.
    static CODE: Area<4096> = Area::new();

    /// `trace=1`.
    static TRACE: AtomicBool = AtomicBool::new(false);

    /// Xen's debug port: the hypervisor prints each line on its own
    /// console at once (`(dN) ...`), so a trace survives the machine.
    struct DebugCon;

    impl core::fmt::Write for DebugCon {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for b in s.bytes() {
                cpu::outb(0xe9, b);
            }
            Ok(())
        }
    }

    macro_rules! trace {
        ($($t:tt)*) => {
            if TRACE.load(Ordering::Relaxed) {
                use core::fmt::Write as _;
                let _ = writeln!(DebugCon, $($t)*);
            }
        };
    }

    fn main(boot: Boot) -> ! {
        power::set_s5_from(firmware::discover(&boot).ok().as_ref());
        let cfg = Config::parse(cmdline(&boot));
        println!("bare: bare-fuzz: {} operations", cfg.count);
        // Hypercalls write at the top of RAM (see `fuzz::SCRATCH_LEN`).
        let scratch = match memmap::ram_top_below_4g(&boot) {
            Ok(Some(top)) if top >= 4 << 20 => top - fuzz::SCRATCH_LEN,
            r => {
                println!("bare-fuzz: FAILED: no RAM top to put scratch memory at ({r:?})");
                power::power_off()
            }
        };
        if let Err(e) = paging::unmap_low_mib() {
            println!("bare-fuzz: FAILED: cannot unmap the first MiB: {e}");
            power::power_off()
        }
        let mhz = tsc_mhz().max(1);
        let (pm1a_cnt, _) = power::s5();
        println!("fuzz: seed {}", cfg.seed);
        cpu::cli();
        let mut rng = Rng::new(cfg.seed);
        let mut tally = Tally::new();
        let step = (cfg.count / PROGRESS_STEPS).max(1);
        let t0 = tsc::begin();
        for i in 0..cfg.count {
            if i > 0 && i % step == 0 {
                restore_console();
                println!("bare-fuzz: {i} of {} done", cfg.count);
            }
            if i < fuzz::PREAMBLE {
                let (h, words) = fuzz::preamble(i, scratch);
                trace!("bare-fuzz: op {i} {h:x?} {words:x?}");
                // SAFETY: the scratch area (see `hypercall`).
                unsafe { (scratch as *mut [u64; 2]).write_volatile(words) };
                // SAFETY: event channel operations on its own ports only.
                let answer = match unsafe { trap::hypercall(h.nr, h.args, false) } {
                    Ok(ret) => errno_answer(ret),
                    Err(v) => vector_answer(v),
                };
                tally.record(Class::Hypercall, answer);
                continue;
            }
            let class = Class::random(&mut rng);
            if let Some(from) = cfg.trace {
                TRACE.store(i >= from || i % 1000 == 0, Ordering::Relaxed);
            }
            trace!("bare-fuzz: op {i} {}", class.name());
            TRACE.store(cfg.trace.is_some_and(|from| i >= from), Ordering::Relaxed);
            let answer = match class {
                Class::Io => io(&mut rng, pm1a_cnt),
                Class::Mmio => mmio(&mut rng),
                Class::Msr => msr(&mut rng, scratch),
                Class::Cpuid => {
                    let (leaf, sub) = fuzz::gen_cpuid(&mut rng);
                    trace!("bare-fuzz: cpuid {leaf:#x} {sub:#x}");
                    trap::cpuid(leaf, sub).map_or_else(vector_answer, |_| OK)
                }
                Class::Insn => insn(&mut rng),
                Class::Hypercall => hypercall(&mut rng, scratch),
            };
            tally.record(class, answer);
        }
        let cycles = tsc::end::<false>().wrapping_sub(t0);
        restore_console();
        // Ends whatever the fuzzing wrote to COM1 itself.
        println!();
        for c in Class::ALL {
            println!("{}", tally.line(c));
        }
        println!(
            "fuzz: total {} calls in {} ms",
            tally.total(),
            cycles / mhz / 1000
        );
        if trap::nmis() > 0 {
            println!("bare-fuzz: {} NMIs taken on the way", trap::nmis());
        }
        println!("bare: powering off (ACPI S5)");
        power::power_off()
    }

    /// The devices the kernel itself uses, as it set them up at boot
    /// (the fuzzing reprograms them at will).
    fn restore_console() {
        serial::init();
        pic::remap_and_mask();
        pit::init();
    }

    /// The Multiboot2 command line, if any.
    fn cmdline(boot: &Boot) -> Option<&'static [u8]> {
        if boot.protocol != Some(Protocol::Multiboot2) {
            return None;
        }
        let size = phys::bytes(boot.info, 8)
            .and_then(bootinfo::mb2_total_size)
            .ok()?;
        let info = phys::bytes(boot.info, size).ok()?;
        bootinfo::mb2_cmdline(info).ok().flatten()
    }

    /// The TSC's rate in MHz against the PIT.
    fn tsc_mhz() -> u64 {
        let t0 = tsc::begin();
        pit::delay_us(CALIBRATE_US);
        let t1 = tsc::end::<false>();
        t1.wrapping_sub(t0) / CALIBRATE_US
    }

    fn io(rng: &mut Rng, pm1a_cnt: u16) -> &'static str {
        let op = fuzz::gen_port(rng);
        trace!("bare-fuzz: {op:x?}");
        if !op.write {
            return trap::port_in(op.port, op.size).map_or_else(vector_answer, |_| OK);
        }
        if fuzz::port_write_skipped(op.port, op.size, pm1a_cnt) {
            return SKIPPED;
        }
        // SAFETY: the reset and power-off ports are skipped above; this
        // guest has no device that could write memory.
        unsafe { trap::port_out(op.port, op.size, op.value) }.map_or_else(vector_answer, |_| OK)
    }

    fn mmio(rng: &mut Rng) -> &'static str {
        let op = fuzz::gen_mmio(rng);
        trace!("bare-fuzz: {op:x?}");
        if !op.write {
            // SAFETY: the generator only names device pages and holes.
            return unsafe { trap::mmio_read(op.addr, op.size) }.map_or_else(vector_answer, |_| OK);
        }
        let mut value = op.value;
        if op.ioapic_window {
            // SAFETY: IOREGSEL, a device register.
            match unsafe { trap::mmio_read(IOAPIC, 4) } {
                Ok(sel) => value = fuzz::sanitize_iowin(sel as u32, value),
                Err(v) => return vector_answer(v),
            }
        }
        // SAFETY: device pages and holes only; writes that could send INIT
        // or route an interrupt as INIT were made harmless by the
        // generator.
        unsafe { trap::mmio_write(op.addr, op.size, value) }.map_or_else(vector_answer, |_| OK)
    }

    fn msr(rng: &mut Rng, scratch: u64) -> &'static str {
        let op = fuzz::gen_msr(rng);
        trace!("bare-fuzz: {op:x?}");
        if !op.write {
            return trap::rdmsr(op.index).map_or_else(vector_answer, |_| OK);
        }
        let ctx = MsrCtx {
            efer: cpu::rdmsr(fuzz::MSR_EFER),
            scratch_gfn: scratch >> 12,
        };
        let Some(mut value) = fuzz::sanitize_msr(&op, &ctx) else {
            return SKIPPED;
        };
        if op.index == fuzz::MSR_TSC {
            value = tsc::begin().wrapping_add(value);
        }
        let old = if op.restore {
            trap::rdmsr(op.index).ok()
        } else {
            None
        };
        // SAFETY: sanitized: long mode, the APIC's address and the TSC's
        // pace are kept; the hypercall page lands in scratch memory; the
        // MSRs the kernel relies on otherwise are written back below.
        let r = unsafe { trap::wrmsr(op.index, value) };
        if let Some(old) = old {
            // SAFETY: the value it had.
            let _ = unsafe { trap::wrmsr(op.index, old) };
        }
        r.map_or_else(vector_answer, |_| OK)
    }

    fn hypercall(rng: &mut Rng, scratch: u64) -> &'static str {
        let h = fuzz::gen_hypercall(rng, scratch);
        trace!("bare-fuzz: {h:x?}");
        if h.skipped {
            return SKIPPED;
        }
        const WORDS: usize = (fuzz::SCRATCH_LEN / 8) as usize;
        // SAFETY: the scratch area is RAM at the top of the memory map,
        // far above the kernel image, and nothing else uses it.
        let words = unsafe { core::slice::from_raw_parts_mut(scratch as *mut u64, WORDS) };
        fuzz::scratch_words(rng, scratch, words);
        // SAFETY: sub-operations that give away or remap guest memory,
        // stop vCPUs or shut the domain down are never made; every
        // pointer is into the scratch area, a device page, unmapped or
        // non-canonical, and what runs past the scratch area runs off RAM.
        match unsafe { trap::hypercall(h.nr, h.args, h.vmcall) } {
            Ok(ret) => errno_answer(ret),
            Err(v) => vector_answer(v),
        }
    }

    fn insn(rng: &mut Rng) -> &'static str {
        let target = fuzz::gen_stream_target(rng);
        let s = fuzz::gen_stream(rng, target);
        trace!("bare-fuzz: stream at {target:#x}: {:02x?}", s.as_bytes());
        if target & !0xfff == IOAPIC {
            // The window then reaches the ID, version or arbitration
            // register, never a redirection entry.
            let sel = rng.below(3);
            // SAFETY: IOREGSEL, a device register.
            if let Err(v) = unsafe { trap::mmio_write(IOAPIC, 4, sel) } {
                return vector_answer(v);
            }
        }
        let code = CODE.addr();
        let mut bytes = [0xccu8; 64];
        bytes[..s.len].copy_from_slice(s.as_bytes());
        // SAFETY: the code page is this kernel's, not running now.
        unsafe { (code as *mut [u8; 64]).write_volatile(bytes) };
        let mut regs: Regs = [target; 16];
        regs[usize::from(fuzz::REG_COUNT)] = rng.below(16);
        regs[usize::from(fuzz::REG_RSP)] = STACK.addr() + 8192;
        // SAFETY: `fuzz::gen_stream`'s operands reach only `target`'s
        // device page (and the next), or the scratch stack; it loads no
        // state the kernel runs on and transfers no control; int3s follow.
        let (vector, rip) = unsafe { trap::exec(&regs, code) };
        match vector {
            3 if rip == code + s.len as u64 + 1 => OK,
            3 | NO_FAULT => STRAY,
            v => vector_answer(v),
        }
    }
}
