//! Powering off through ACPI S5: SLP_TYPa | SLP_EN written to the PM1a
//! control register (ACPI 6.5 §4.8.3.2.1, §16.1.7). If the machine is
//! still running after that, the CPU halts for good with interrupts off.
//!
//! When the firmware's tables do not say where PM1a_CNT is or what S5's
//! sleep type is, QEMU's values stand in (documented fallbacks, measured
//! with QEMU 7.2): PMBASE 0x600 puts PM1a_CNT at 0x604 on both q35 (ICH9)
//! and i440fx (PIIX4), and QEMU's `\_S5` is `Package {0, 0, 0, 0}` on both
//! (SLP_TYP 0).

use super::cpu::{halt_forever, outw};
use super::firmware::Platform;
use super::pit;
use core::sync::atomic::{AtomicU32, Ordering};

/// PM1 control: SLP_EN, and where SLP_TYP sits.
const SLP_EN: u16 = 1 << 13;
const SLP_TYP_SHIFT: u16 = 10;
const SLP_TYP_MASK: u16 = 0x7;

/// QEMU's PM1a_CNT on q35 and i440fx (PMBASE 0x600 + 4).
pub const QEMU_PM1A_CNT: u16 = 0x604;
/// QEMU's S5 sleep type on both machines.
pub const QEMU_S5_SLP_TYP: u8 = 0;

/// Where to write, as `port << 8 | slp_typ` (set once ACPI is read).
static S5: AtomicU32 = AtomicU32::new((QEMU_PM1A_CNT as u32) << 8);

/// Records the PM1a control port and S5 sleep type to use.
pub fn set_s5(port: u16, slp_typ: u8) {
    S5.store(u32::from(port) << 8 | u32::from(slp_typ), Ordering::Relaxed);
}

/// Records where S5 is from the firmware's tables (`None`: none were
/// found), else QEMU's values, and says on COM1 which it had to assume.
pub fn set_s5_from(p: Option<&Platform>) {
    let port = p.and_then(|p| p.fadt.pm1a_cnt);
    let typ = p.and_then(|p| p.s5_slp_typ).map(|(t, _)| t);
    if port.is_none() {
        crate::println!(
            "bare: power-off: ACPI gives no PM1a_CNT; using QEMU's ({QEMU_PM1A_CNT:#x})"
        );
    }
    if typ.is_none() {
        crate::println!(
            "bare: power-off: ACPI gives no static \\_S5; using QEMU's SLP_TYP ({QEMU_S5_SLP_TYP})"
        );
    }
    set_s5(
        port.unwrap_or(QEMU_PM1A_CNT),
        typ.unwrap_or(QEMU_S5_SLP_TYP),
    );
}

/// The recorded port and sleep type.
pub fn s5() -> (u16, u8) {
    let v = S5.load(Ordering::Relaxed);
    ((v >> 8) as u16, v as u8)
}

/// Enters S5; halts if that does not stop the machine within 100 ms.
pub fn power_off() -> ! {
    let (port, typ) = s5();
    outw(
        port,
        (u16::from(typ) & SLP_TYP_MASK) << SLP_TYP_SHIFT | SLP_EN,
    );
    pit::delay_us(100_000);
    crate::metal::serial::emergency(format_args!(
        "bare: still running after S5 (PM1a_CNT {port:#x}, SLP_TYP {typ}); halting\n"
    ));
    halt_forever()
}
