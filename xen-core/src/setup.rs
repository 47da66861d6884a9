//! The boot sequence (Xen's `__start_xen`): console, boot information,
//! memory, CPUs, time, then Dom0.

use crate::arch::x86_64::boot::{BOOT_PROTOCOL_MULTIBOOT2, BOOT_PROTOCOL_PVH};
use crate::arch::x86_64::paging::{self, phys_to_virt};
use crate::arch::x86_64::{acpi, apic, instr, pic, power, smp, traps};
use crate::time;
use xen_core::boot_info::{BootInfo, PhysRead, PhysReadError, MULTIBOOT2_BOOTLOADER_MAGIC};
use xen_core::cmdline::{CmdLine, LogLevel};
use xen_core::mm::memmap::{E820Type, MemMap};

/// Longest hypervisor command line kept.
const CMDLINE_MAX: usize = 1024;
/// Physical memory the bootstrap page tables identity-map.
const IDENTITY_LIMIT: u64 = 4 << 30;
/// The first MiB stays with firmware and the AP trampoline.
const LOW_MEMORY_END: u64 = 1 << 20;
/// Firmware-reserved ranges below 4 GiB smaller than this get direct-mapped
/// too (ACPI tables often live in "reserved" memory).
const SMALL_RESERVED: u64 = 64 << 20;

static CMDLINE: spin::Once<heapless::String<CMDLINE_MAX>> = spin::Once::new();

extern "C" {
    static __image_phys_start: u8;
    static __image_phys_end: u8;
}

/// The hypervisor's command line.
pub fn boot_cmdline() -> &'static str {
    CMDLINE.get().map(|s| s.as_str()).unwrap_or("")
}

/// Physical memory reader for the boot-info parsers: through the identity
/// map before the switch to our own tables, through the direct map after.
pub struct PhysAccess {
    base: u64,
    limit: u64,
}

impl PhysRead for PhysAccess {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), PhysReadError> {
        let err = PhysReadError {
            paddr,
            len: buf.len(),
        };
        let end = paddr.checked_add(buf.len() as u64).ok_or(err)?;
        if end > self.limit {
            return Err(err);
        }
        // SAFETY: [paddr, end) lies below `limit`, which the current page
        // tables map at `base + paddr` (boot identity map or direct map).
        unsafe {
            core::ptr::copy_nonoverlapping(
                (self.base + paddr) as *const u8,
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        Ok(())
    }
}

fn fatal(args: core::fmt::Arguments) -> ! {
    log::error!("{args}");
    crate::println!("(XEN) ****************************************");
    crate::println!("(XEN) Panic on CPU 0: {args}");
    crate::println!("(XEN) ****************************************");
    power::halt_fatal();
}

fn cpu_brand() -> heapless::String<48> {
    let mut s = heapless::String::new();
    if instr::cpuid(0x8000_0000, 0).eax >= 0x8000_0004 {
        for leaf in 0x8000_0002..=0x8000_0004u32 {
            let r = instr::cpuid(leaf, 0);
            for b in [r.eax, r.ebx, r.ecx, r.edx]
                .iter()
                .flat_map(|w| w.to_le_bytes())
            {
                if b != 0 {
                    let _ = s.push(b as char);
                }
            }
        }
    }
    s
}

fn cpu_vendor() -> heapless::String<12> {
    let r = instr::cpuid(0, 0);
    let mut s = heapless::String::new();
    for b in [r.ebx, r.edx, r.ecx].iter().flat_map(|w| w.to_le_bytes()) {
        let _ = s.push(b as char);
    }
    s
}

fn log_filter(l: LogLevel) -> log::LevelFilter {
    match l {
        LogLevel::None => log::LevelFilter::Off,
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warning => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::All => log::LevelFilter::Trace,
    }
}

fn image_range() -> (u64, u64) {
    // SAFETY: linker-script symbols (physical addresses of the image).
    unsafe {
        (
            &__image_phys_start as *const u8 as u64,
            &__image_phys_end as *const u8 as u64,
        )
    }
}

/// Runs the boot sequence on the BSP.
pub fn start(protocol: u32, info_paddr: u32) -> ! {
    crate::console::init();
    let tsc_hz = time::calibrate_tsc();
    crate::console::init_log(log::LevelFilter::Info);
    pic::disable();
    traps::init_idt();
    smp::init_bsp(0);
    // The exception fixups behind rdmsr_safe/wrmsr_safe, which guest MSR
    // emulation relies on.
    if !instr::exception_fixup_selftest() {
        fatal(format_args!("exception fixups do not work"));
    }
    if !instr::guest_copy_selftest() {
        fatal(format_args!("the guest copy routine copies wrongly"));
    }

    // Boot information, read through the identity map.
    let low = PhysAccess {
        base: 0,
        limit: IDENTITY_LIMIT,
    };
    let parsed = match protocol {
        BOOT_PROTOCOL_PVH => BootInfo::from_pvh(&low, u64::from(info_paddr)),
        BOOT_PROTOCOL_MULTIBOOT2 => {
            BootInfo::from_multiboot2(&low, MULTIBOOT2_BOOTLOADER_MAGIC, u64::from(info_paddr))
        }
        // BOOT_PROTOCOL_UNKNOWN: entered through Multiboot2 without its magic.
        _ => BootInfo::from_multiboot2(&low, 0, u64::from(info_paddr)),
    };
    let mut bi = match parsed {
        Ok(b) => b,
        Err(e) => fatal(format_args!("cannot read the boot information: {e}")),
    };
    let mut line = heapless::String::<CMDLINE_MAX>::new();
    if let Some(c) = bi.cmdline {
        let mut buf = [0u8; CMDLINE_MAX];
        if let Ok(bytes) = c.read_into(&low, &mut buf) {
            for &b in bytes {
                let _ = line.push(if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '?'
                });
            }
        }
    }
    let cmdline = CmdLine::parse(CMDLINE.call_once(|| line).as_str());
    crate::console::init_log(log_filter(cmdline.loglvl.unwrap_or(LogLevel::Info)));

    crate::println!(
        "(XEN) Oxen {} (Xen 4.17 ABI) x86_64 -- a Xen-compatible hypervisor in Rust",
        env!("CARGO_PKG_VERSION")
    );
    log::info!("Command line: {}", boot_cmdline());
    for u in cmdline.unknown() {
        log::warn!("unknown command-line option '{u}' ignored");
    }
    for e in cmdline.errors() {
        log::warn!("command line: {e}");
    }
    log::info!("Boot protocol: {:?}", bi.protocol);
    log::info!("CPU: {} {}", cpu_vendor(), cpu_brand().trim());
    log::info!(
        "TSC: {}.{:03} MHz (calibrated against the PIT)",
        tsc_hz / 1_000_000,
        (tsc_hz / 1000) % 1000
    );
    match time::init_wallclock() {
        Some(secs) => log::info!("Wallclock: {secs} s since the epoch (CMOS RTC)"),
        None => log::warn!("CMOS RTC unreadable: wallclock starts at the epoch"),
    }

    // Memory map.
    let Some(raw) = bi.memory_map() else {
        fatal(format_args!("the boot loader gave no memory map"));
    };
    let mut map = match MemMap::<128>::from_raw(raw) {
        Ok(m) => m,
        Err(e) => fatal(format_args!("bad memory map: {e}")),
    };
    log::info!("Physical RAM map:");
    for e in raw {
        log::info!(
            " {:016x} - {:016x} ({:?})",
            e.addr,
            e.addr.saturating_add(e.size),
            e.e820_type()
        );
    }
    // Everything the direct map covers: RAM, ACPI memory, small firmware
    // ranges below 4 GiB (where ACPI tables may sit).
    let mut direct: heapless::Vec<(u64, u64), 160> = heapless::Vec::new();
    for r in map.ranges() {
        let _ = direct.push((r.start, r.end));
    }
    for e in raw {
        let end = e.addr.saturating_add(e.size);
        let keep = match e.e820_type() {
            E820Type::AcpiReclaimable | E820Type::AcpiNvs => true,
            E820Type::Reserved => end <= IDENTITY_LIMIT && e.size <= SMALL_RESERVED,
            _ => false,
        };
        if keep {
            let _ = direct.push((e.addr & !0xfff, end.next_multiple_of(0x1000)));
        }
    }
    let _ = direct.push((0, LOW_MEMORY_END));
    paging::init(&direct, instr::cpuid(0x8000_0001, 0).edx & (1 << 20) != 0);
    crate::domain::set_max_maddr(map.ram_end());
    match paging::audit_wx() {
        (n, 0) => {
            log::info!("W^X: {n} hypervisor mappings checked, none both writable and executable")
        }
        (n, bad) => {
            log::error!("W^X: {bad} of {n} hypervisor mappings are writable and executable")
        }
    }

    // The modules: split a bundle, then keep them out of the allocator.
    let phys = PhysAccess {
        base: phys_to_virt(0),
        limit: map.ram_end().max(IDENTITY_LIMIT),
    };
    match bi.expand_bundle(&phys) {
        Ok(true) => log::info!("Boot modules came in an Oxen module bundle"),
        Ok(false) => {}
        Err(e) => log::error!("bad module bundle: {e}"),
    }
    let (img_start, img_end) = image_range();
    let mut reserve = |s: u64, e: u64| {
        if let Err(err) = map.reserve(s, e) {
            log::warn!("cannot reserve {s:#x}-{e:#x}: {err}");
        }
    };
    reserve(0, LOW_MEMORY_END);
    reserve(img_start, img_end);
    for m in bi.modules() {
        reserve(m.start & !0xfff, (m.start + m.len).next_multiple_of(0x1000));
    }
    for r in bi.info_ranges() {
        reserve(r.start & !0xfff, r.end.next_multiple_of(0x1000));
    }
    let (total, free) = crate::memory::init(&map);
    log::info!(
        "Memory: {} MiB RAM, {} MiB free after the hypervisor ({} KiB image, {} KiB heap free)",
        total * 4 / 1024,
        free * 4 / 1024,
        (img_end - img_start) / 1024,
        crate::heap::free_bytes() / 1024
    );

    // The hardware floor scripts/bench compares the PV paths with (before
    // the other CPUs, the timer and any guest exist).
    crate::arch::x86_64::syscall_floor::measure_and_log();
    // Hardware virtualization: what the CPU offers, and SVM's world switch
    // tried once on a tiny guest.
    crate::arch::x86_64::svm::probe_and_selftest();

    crate::sched::configure(&cmdline.sched);

    // CPUs.
    apic::init_bsp();
    let bsp = apic::id();
    smp::set_bsp_apic_id(bsp);
    match acpi::probe(bi.rsdp, bsp) {
        Ok(info) => {
            if let Some((port, typ)) = info.s5 {
                power::set_acpi_s5(port, typ);
            }
            if let Some(port) = info.pm_timer_port {
                crate::pv_emul::set_pm_timer_port(port);
            }
            crate::hwirq::init(&info.ioapics, &info.isa_overrides, info.ecam);
            log::info!(
                "ACPI: {} CPU(s) in the MADT",
                info.apic_ids.len() + info.cpus_skipped
            );
            if info.cpus_skipped > 0 {
                log::warn!(
                    "only {} CPUs supported; {} not started",
                    info.apic_ids.len(),
                    info.cpus_skipped
                );
            }
            log::info!("CPU0 online (APIC ID {bsp})");
            smp::start_aps(&info.apic_ids, bsp);
        }
        Err(e) => {
            log::warn!("ACPI tables unusable ({e:?}): running on the boot CPU only");
            log::info!("CPU0 online (APIC ID {bsp})");
        }
    }
    apic::start_timer();
    log::info!("Brought up {} CPUs", smp::cpus_online());
    if cmdline.selftest == Some(xen_core::cmdline::SelfTest::Fault) {
        log::warn!("selftest=fault: touching an unmapped address on purpose");
        // SAFETY: deliberately unsound: the read faults (page 0 is never
        // mapped in xen-core's tables) and the fault handler stops the machine.
        unsafe { core::ptr::read_volatile(core::ptr::null::<u64>().wrapping_add(0x10)) };
    }

    crate::dom0::build_and_start(&bi, &phys, &cmdline)
}
