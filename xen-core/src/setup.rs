//! The boot sequence (Xen's `__start_xen`): console, boot information,
//! memory, CPUs, time, then Dom0.

use crate::arch::x86_64::{acpi, apic, instr, paging, power, smp, traps};
use crate::time;

static CMDLINE: spin::Once<heapless::String<1024>> = spin::Once::new();

/// The hypervisor's command line.
pub fn boot_cmdline() -> &'static str {
    CMDLINE.get().map(|s| s.as_str()).unwrap_or("")
}

fn cpu_brand() -> heapless::String<48> {
    let mut s = heapless::String::new();
    if instr::cpuid(0x8000_0000, 0).eax >= 0x8000_0004 {
        for leaf in 0x8000_0002..=0x8000_0004u32 {
            let r = instr::cpuid(leaf, 0);
            for w in [r.eax, r.ebx, r.ecx, r.edx] {
                for b in w.to_le_bytes() {
                    if b != 0 {
                        let _ = s.push(b as char);
                    }
                }
            }
        }
    }
    s
}

fn cpu_vendor() -> heapless::String<12> {
    let r = instr::cpuid(0, 0);
    let mut s = heapless::String::new();
    for w in [r.ebx, r.edx, r.ecx] {
        for b in w.to_le_bytes() {
            let _ = s.push(b as char);
        }
    }
    s
}

/// Runs the boot sequence on the BSP.
pub fn start(protocol: u32, _info_paddr: u32) -> ! {
    crate::console::init();
    let hz = time::calibrate_tsc();
    crate::console::init_log(log::LevelFilter::Info);
    let _ = protocol;
    crate::println!(
        "(XEN) Oxen {} (Xen 4.17 ABI) x86_64 -- a Xen-compatible hypervisor in Rust",
        env!("CARGO_PKG_VERSION")
    );
    log::info!("CPU: {} {}", cpu_vendor(), cpu_brand().trim());
    log::info!("TSC: {}.{:03} MHz", hz / 1_000_000, (hz / 1000) % 1000);
    crate::arch::x86_64::pic::disable();
    traps::init_idt();
    paging::init(&[(0, 512 << 20)], true);
    smp::init_bsp(0);
    apic::init_bsp();
    let bsp = apic::id();
    let info = acpi::probe(None, bsp);
    match &info {
        Ok(i) => {
            if let Some((port, typ)) = i.s5 {
                power::set_acpi_s5(port, typ);
            }
            smp::start_aps(&i.apic_ids, bsp);
        }
        Err(e) => log::warn!("ACPI: {e:?}; running on the boot CPU only"),
    }
    log::info!("CPU0 online (APIC ID {bsp})");
    apic::start_timer();
    log::info!("{} CPUs online", smp::cpus_online());
    instr::sti();
    time::udelay(50_000);
    log::info!("timer ticks on CPU0: {}", crate::arch::x86_64::percpu::this_cpu().timer_ticks.load(core::sync::atomic::Ordering::Relaxed));
    power::power_off(0);
}
