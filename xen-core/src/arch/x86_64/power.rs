//! Stopping the machine: power-off through ACPI S5 and, under QEMU, through
//! the `isa-debug-exit` device so a test harness reads the verdict from
//! QEMU's exit status ((code << 1) | 1).

use super::instr::{cli, hlt, outl, outw};
use spin::Once;

/// The `isa-debug-exit` port the harness configures (`iobase=0xf4`).
const DEBUG_EXIT_PORT: u16 = 0xf4;
/// PM1 control: SLP_EN, and where SLP_TYP sits (ACPI 6.5 §4.8.3.2.1).
const PM1_SLP_EN: u16 = 1 << 13;
const PM1_SLP_TYP_SHIFT: u16 = 10;

/// Codes written to `isa-debug-exit`. Dom0 shutdowns use Xen's shutdown
/// reason (poweroff 0, reboot 1, suspend 2, crash 3, watchdog 4, soft_reset 5).
pub mod exit_code {
    /// xen-core stopped on a fatal error of its own (boot failure, fault).
    pub const HYPERVISOR_FATAL: u32 = 0x10;
}

static S5: Once<(u16, u16)> = Once::new();

/// Records the ACPI PM1a control port and S5 sleep type found at boot.
pub fn set_acpi_s5(port: u16, slp_typ: u16) {
    S5.call_once(|| (port, slp_typ));
}

/// Powers the machine off, telling QEMU `code` first.
pub fn power_off(code: u32) -> ! {
    outl(DEBUG_EXIT_PORT, code);
    if let Some(&(port, typ)) = S5.get() {
        outw(port, (typ << PM1_SLP_TYP_SHIFT) | PM1_SLP_EN);
    }
    crate::println!("(XEN) System halted.");
    loop {
        cli();
        hlt();
    }
}

/// Stops after a fatal hypervisor error: no power-off dance, just a clean halt
/// (and the fatal code for a harness).
pub fn halt_fatal() -> ! {
    outl(DEBUG_EXIT_PORT, exit_code::HYPERVISOR_FATAL);
    crate::println!("(XEN) System halted.");
    loop {
        cli();
        hlt();
    }
}
