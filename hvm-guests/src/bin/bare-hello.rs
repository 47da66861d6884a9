//! bare-hello: a kernel written for bare metal that checks the machine a
//! PC operating system relies on, and reports on COM1.
//!
//! It knows nothing of Oxen or Xen: it boots from QEMU's PVH entry or
//! from Multiboot2, and checks, in this order: CPUID; that paging is on
//! (one frame written and read through two mappings); the ACPI tables
//! (RSDP, XSDT/RSDT, MADT, FADT, DSDT `\_S5`); port I/O (the PIT's
//! channel 0 counts, the CMOS/RTC's seconds advance); MMIO (the local
//! APIC's ID and version, the IOAPIC's version through IOREGSEL/IOWIN);
//! LAPIC timer interrupts (periodic, at least 10 ticks, each EOI'd); and
//! SMP (the MADT's second CPU started with INIT/SIPI/SIPI reports in).
//! Then it prints the verdict and powers off through ACPI S5.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_op_in_unsafe_fn)]
// `Why` carries its message inline (no allocator: 168 bytes), and only the
// cold failure paths return it.
#![allow(clippy::result_large_err)]

/// The host build is an empty stub: the kernel exists only for
/// `x86_64-unknown-none`.
#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::Ordering;
    use hvm_guests::metal::boot::Boot;
    use hvm_guests::metal::firmware::{self, Platform};
    use hvm_guests::metal::ioapic::{self, IoApic};
    use hvm_guests::metal::serial::Console;
    use hvm_guests::metal::{cmos, cpu, idt, lapic, memmap, paging, pit, power, smp};
    use hvm_guests::{println, why, Report, Why};

    hvm_guests::entry!(main);

    /// The LAPIC timer's setting: divide by 16 and this count make 1 ms
    /// on a 1 GHz APIC clock (QEMU's, Xen's), 10 ms on a 100 MHz one.
    const TIMER_INITIAL_COUNT: u32 = 62_500;
    /// Ticks the timer check wants, and how long it waits for them.
    const TIMER_TICKS: u32 = 10;
    const TIMER_TIMEOUT_MS: u64 = 2_000;
    /// The CMOS check's wait between its two readings.
    const CMOS_WAIT_US: u64 = 1_100_000;

    fn main(boot: Boot) -> ! {
        println!("bare: bare-hello: a kernel written for bare metal (it knows no hypervisor)");
        let mut r = Report::new();
        let out = &mut Console;

        r.check(out, "cpuid", check_cpuid());
        r.check(out, "paging", check_paging());
        let platform = match firmware::discover(&boot) {
            Ok(p) => {
                report_acpi(&p);
                r.check(out, "acpi", Ok(()));
                Some(p)
            }
            Err(e) => {
                r.fail(out, "acpi", e);
                None
            }
        };
        power::set_s5_from(platform.as_ref());
        r.check(out, "port i/o (pit)", check_pit());
        r.check(out, "port i/o (cmos rtc)", check_cmos());
        r.check(out, "mmio (lapic)", check_lapic(platform.as_ref()));
        r.check(out, "mmio (ioapic)", check_ioapic(platform.as_ref()));
        r.check(out, "lapic timer", check_timer());
        match smp_target(platform.as_ref()) {
            Ok(Some(id)) => r.check(out, "smp", check_smp(&boot, id)),
            Ok(None) => r.skip(out, "smp", why!("the MADT lists only one CPU")),
            Err(e) => r.fail(out, "smp", e),
        }
        r.finish(out);
        let (port, typ) = power::s5();
        println!("bare: powering off (ACPI S5: PM1a_CNT {port:#x}, SLP_TYP {typ})");
        power::power_off()
    }

    fn check_cpuid() -> Result<(), Why> {
        let l0 = cpu::cpuid(0, 0);
        let mut vendor = [0u8; 12];
        vendor[..4].copy_from_slice(&l0.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&l0.edx.to_le_bytes());
        vendor[8..].copy_from_slice(&l0.ecx.to_le_bytes());
        let vendor_str = core::str::from_utf8(&vendor).unwrap_or("(not UTF-8)");
        let l1 = cpu::cpuid(1, 0);
        let base_family = (l1.eax >> 8) & 0xf;
        let family = if base_family == 0xf {
            base_family + ((l1.eax >> 20) & 0xff)
        } else {
            base_family
        };
        let mut model = (l1.eax >> 4) & 0xf;
        if base_family == 0x6 || base_family == 0xf {
            model |= ((l1.eax >> 16) & 0xf) << 4;
        }
        let stepping = l1.eax & 0xf;
        let max_ext = cpu::cpuid(0x8000_0000, 0).eax;
        let ext1 = cpu::cpuid(0x8000_0001, 0);
        println!(
            "bare: cpuid vendor={vendor_str} max_leaf={:#x} max_ext_leaf={max_ext:#x} family={family:#x} model={model:#x} stepping={stepping} initial_apic_id={}",
            l0.eax,
            l1.ebx >> 24
        );
        // The feature words, for the cpuid= (levelling) tests.
        println!(
            "bare: cpuid features: leaf1 ecx={:#010x} edx={:#010x} sse4_2={}",
            l1.ecx,
            l1.edx,
            (l1.ecx >> 20) & 1
        );
        if !vendor.iter().all(u8::is_ascii_graphic) {
            return Err(why!("vendor string {vendor:02x?} is not printable"));
        }
        if l0.eax < 1 {
            return Err(why!("max leaf {:#x}: no leaf 1", l0.eax));
        }
        if max_ext < 0x8000_0001 {
            return Err(why!("max extended leaf {max_ext:#x}"));
        }
        const LEAF1_EDX_APIC: u32 = 1 << 9;
        const EXT1_EDX_LM: u32 = 1 << 29;
        if l1.edx & LEAF1_EDX_APIC == 0 {
            return Err(why!("leaf 1 edx {:#x} has no APIC bit", l1.edx));
        }
        if ext1.edx & EXT1_EDX_LM == 0 {
            return Err(why!(
                "leaf 0x80000001 edx {:#x} has no long mode bit, yet we run in it",
                ext1.edx
            ));
        }
        Ok(())
    }

    fn check_paging() -> Result<(), Why> {
        let s = paging::state();
        println!(
            "bare: paging on (cr0={:#x}, cr3={:#x}, cr4={:#x}, efer={:#x}); a second mapping of one frame at {:#x}",
            s.cr0,
            s.cr3,
            s.cr4,
            s.efer,
            paging::ALIAS_VA
        );
        paging::alias_probe()
    }

    fn report_acpi(p: &Platform) {
        if let Some(note) = &p.boot_info_note {
            println!("bare: acpi: the boot loader's information was not usable ({note})");
        }
        let (root, entry) = p.rsdp.root();
        println!(
            "bare: acpi: RSDP at {:#x} (from {}), revision {}, {} at {root:#x}",
            p.rsdp_address,
            p.rsdp_source,
            p.rsdp.revision,
            if entry == 8 { "XSDT" } else { "RSDT" }
        );
        hvm_guests::print!(
            "bare: acpi: MADT: {} CPUs enabled (APIC IDs",
            p.madt.cpus().len()
        );
        for id in p.madt.cpus() {
            hvm_guests::print!(" {id}");
        }
        println!(
            "), {} disabled, local APIC at {:#x}",
            p.madt.cpus_disabled, p.madt.lapic_address
        );
        for a in p.madt.ioapics() {
            println!(
                "bare: acpi: MADT: IOAPIC ID {} at {:#x}, GSI base {}",
                a.id, a.address, a.gsi_base
            );
        }
        match p.fadt.pm1a_cnt {
            Some(port) => println!(
                "bare: acpi: FADT: PM1a_CNT at port {port:#x}, DSDT at {:#x}",
                p.fadt.dsdt
            ),
            None => println!("bare: acpi: FADT: no PM1a_CNT, DSDT at {:#x}", p.fadt.dsdt),
        }
        match p.s5_slp_typ {
            Some((t, table)) => println!("bare: acpi: {table}: \\_S5 SLP_TYPa {t}"),
            None => println!("bare: acpi: no static \\_S5 package in the DSDT or an SSDT"),
        }
    }

    fn check_pit() -> Result<(), Why> {
        pit::init();
        let first = pit::read();
        let mut last = first;
        for _ in 0..100_000 {
            last = pit::read();
            if last != first {
                break;
            }
            cpu::pause();
        }
        println!("bare: pit: channel 0 (mode 2, 65536) read {first:#06x}, then {last:#06x}");
        if last == first {
            return Err(why!("channel 0 stays at {first:#06x}"));
        }
        Ok(())
    }

    fn check_cmos() -> Result<(), Why> {
        let s1 = cmos::seconds()?;
        pit::delay_us(CMOS_WAIT_US);
        let s2 = cmos::seconds()?;
        let advanced = (s2 + 60 - s1) % 60;
        println!(
            "bare: cmos: RTC seconds {s1}, then {s2} about {} ms later",
            CMOS_WAIT_US / 1000
        );
        if !(1..=3).contains(&advanced) {
            return Err(why!(
                "the seconds advanced by {advanced} in {} ms",
                CMOS_WAIT_US / 1000
            ));
        }
        Ok(())
    }

    fn check_lapic(p: Option<&Platform>) -> Result<(), Why> {
        let Some(base) = lapic::base() else {
            return Err(why!("the local APIC could not be set up (see above)"));
        };
        let msr = cpu::rdmsr(lapic::IA32_APIC_BASE);
        let id_reg = lapic::read(lapic::REG_ID);
        let ver_reg = lapic::read(lapic::REG_VERSION);
        let version = ver_reg & 0xff;
        let lvt_entries = ((ver_reg >> 16) & 0xff) + 1;
        let cpuid_id = cpu::cpuid(1, 0).ebx >> 24;
        println!(
            "bare: lapic: IA32_APIC_BASE {msr:#x} (base {:#x}), ID register {id_reg:#x} (APIC ID {}), version register {ver_reg:#x} (version {version:#x}, {lvt_entries} LVT entries)",
            lapic::msr_base(),
            id_reg >> 24
        );
        if msr & lapic::APIC_BASE_ENABLE == 0 {
            return Err(why!("the APIC is disabled in IA32_APIC_BASE {msr:#x}"));
        }
        if let Some(p) = p {
            if p.madt.lapic_address != base {
                return Err(why!(
                    "the MADT puts the local APIC at {:#x}, IA32_APIC_BASE at {base:#x}",
                    p.madt.lapic_address
                ));
            }
        }
        if msr & lapic::APIC_BASE_BSP == 0 {
            return Err(why!(
                "IA32_APIC_BASE {msr:#x} does not mark the boot CPU as BSP"
            ));
        }
        if id_reg >> 24 != cpuid_id {
            return Err(why!(
                "APIC ID {} differs from CPUID's initial APIC ID {cpuid_id}",
                id_reg >> 24
            ));
        }
        if !(0x10..=0x15).contains(&version) {
            return Err(why!("version {version:#x} is not an integrated xAPIC's"));
        }
        if lvt_entries < 4 {
            return Err(why!("only {lvt_entries} LVT entries"));
        }
        Ok(())
    }

    fn check_ioapic(p: Option<&Platform>) -> Result<(), Why> {
        let p = p.ok_or_else(|| why!("no MADT to say where the IOAPIC is"))?;
        let a = p
            .madt
            .ioapics()
            .first()
            .ok_or_else(|| why!("the MADT lists no IOAPIC"))?;
        let io = IoApic::new(u64::from(a.address))?;
        let id_reg = io.read(ioapic::REG_ID);
        let ver_reg = io.read(ioapic::REG_VERSION);
        let version = ver_reg & 0xff;
        let pins = ((ver_reg >> 16) & 0xff) + 1;
        println!(
            "bare: ioapic: at {:#x}: ID register {id_reg:#x} (ID {}; the MADT says {}), version register {ver_reg:#x} (version {version:#x}, {pins} pins)",
            a.address,
            (id_reg >> 24) & 0xf,
            a.id
        );
        if ver_reg == u32::MAX {
            return Err(why!(
                "IOWIN reads all ones: nothing answers at {:#x}",
                a.address
            ));
        }
        if !(0x11..=0x20).contains(&version) {
            return Err(why!("version {version:#x} is not an IOAPIC's (0x11-0x20)"));
        }
        if pins < 16 {
            return Err(why!(
                "only {pins} redirection entries (the ISA IRQs need 16)"
            ));
        }
        Ok(())
    }

    fn check_timer() -> Result<(), Why> {
        if lapic::base().is_none() {
            return Err(why!("no usable local APIC"));
        }
        idt::TICKS.store(0, Ordering::SeqCst);
        lapic::write(lapic::REG_TIMER_DIVIDE, lapic::TIMER_DIVIDE_16);
        lapic::write(
            lapic::REG_LVT_TIMER,
            lapic::LVT_TIMER_PERIODIC | u32::from(idt::TIMER_VECTOR),
        );
        lapic::write(lapic::REG_TIMER_INITIAL, TIMER_INITIAL_COUNT);
        let current = lapic::read(lapic::REG_TIMER_CURRENT);
        cpu::sti();
        let (_, us) = pit::wait_until(TIMER_TIMEOUT_MS, || {
            idt::TICKS.load(Ordering::SeqCst) >= TIMER_TICKS
        });
        cpu::cli();
        lapic::write(
            lapic::REG_LVT_TIMER,
            lapic::LVT_MASKED | u32::from(idt::TIMER_VECTOR),
        );
        lapic::write(lapic::REG_TIMER_INITIAL, 0);
        let ticks = idt::TICKS.load(Ordering::SeqCst);
        println!(
            "bare: lapic timer: periodic, vector {:#x}, divide 16, initial count {TIMER_INITIAL_COUNT} (current {current} after arming): {ticks} interrupts in {us} us",
            idt::TIMER_VECTOR
        );
        if ticks < TIMER_TICKS {
            return Err(why!(
                "{ticks} interrupts in {us} us, want {TIMER_TICKS} (every one EOI'd)"
            ));
        }
        Ok(())
    }

    /// The APIC ID of the CPU to start: the MADT's first enabled CPU that
    /// is not this one; `None` if it lists only this one.
    fn smp_target(p: Option<&Platform>) -> Result<Option<u32>, Why> {
        let p = p.ok_or_else(|| why!("no MADT to list the CPUs"))?;
        let bsp = lapic::id();
        let cpus = p.madt.cpus();
        if !cpus.contains(&bsp) {
            return Err(why!("the MADT does not list this CPU (APIC ID {bsp})"));
        }
        println!(
            "bare: smp: {} CPUs in the MADT, this one is APIC ID {bsp}",
            cpus.len()
        );
        Ok(cpus.iter().copied().find(|&id| id != bsp))
    }

    fn check_smp(boot: &Boot, target: u32) -> Result<(), Why> {
        match memmap::is_ram(boot, smp::TRAMPOLINE, 4096)? {
            Some(true) => println!(
                "bare: smp: the trampoline page {:#x} is RAM in the boot loader's memory map",
                smp::TRAMPOLINE
            ),
            Some(false) => {
                return Err(why!(
                    "the trampoline page {:#x} is not RAM in the boot loader's memory map",
                    smp::TRAMPOLINE
                ))
            }
            None => println!(
                "bare: smp: no memory map from the boot loader; assuming {:#x} is RAM",
                smp::TRAMPOLINE
            ),
        }
        println!(
            "bare: smp: starting APIC ID {target}: INIT, SIPI, SIPI (vector {:#x})",
            smp::TRAMPOLINE >> 12
        );
        let seen = smp::start_ap(target)?;
        if seen != target {
            return Err(why!(
                "started APIC ID {target}, the AP reads APIC ID {seen}"
            ));
        }
        Ok(())
    }
}
