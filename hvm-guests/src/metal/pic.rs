//! The 8259A pair: remapped to vectors 0x20–0x2f (away from the CPU's
//! exceptions, where the BIOS leaves the master) and fully masked. The
//! kernels use the local APIC; the PIC only must stay quiet.

use super::cpu::outb;

const MASTER_CMD: u16 = 0x20;
const MASTER_DATA: u16 = 0x21;
const SLAVE_CMD: u16 = 0xa0;
const SLAVE_DATA: u16 = 0xa1;
/// ICW1: initialisation, ICW4 needed (8259A data sheet).
const ICW1_INIT_ICW4: u8 = 0x11;
/// ICW4: 8086 mode.
const ICW4_8086: u8 = 0x01;
/// Where the remapped IRQs land.
pub const MASTER_BASE: u8 = 0x20;
pub const SLAVE_BASE: u8 = 0x28;

/// Remaps both PICs and masks every IRQ.
pub fn remap_and_mask() {
    outb(MASTER_CMD, ICW1_INIT_ICW4);
    outb(SLAVE_CMD, ICW1_INIT_ICW4);
    outb(MASTER_DATA, MASTER_BASE);
    outb(SLAVE_DATA, SLAVE_BASE);
    outb(MASTER_DATA, 1 << 2); // the slave is on IRQ2
    outb(SLAVE_DATA, 2); // its cascade identity
    outb(MASTER_DATA, ICW4_8086);
    outb(SLAVE_DATA, ICW4_8086);
    outb(MASTER_DATA, 0xff);
    outb(SLAVE_DATA, 0xff);
}
