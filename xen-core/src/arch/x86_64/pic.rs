//! The legacy 8259 PIC pair: remapped away from the exception vectors and
//! fully masked, since xen-core takes its interrupts through the local APIC.
//! (The BIOS leaves the master at vector 8, where the PIT's IRQ 0 would look
//! like a double fault.)

use super::instr::outb;

const MASTER_CMD: u16 = 0x20;
const MASTER_DATA: u16 = 0x21;
const SLAVE_CMD: u16 = 0xa0;
const SLAVE_DATA: u16 = 0xa1;
/// ICW1: initialise, ICW4 needed.
const ICW1_INIT: u8 = 0x11;
/// ICW4: 8086 mode.
const ICW4_8086: u8 = 0x01;
/// Vectors the PICs are moved to (unused: everything is masked).
const MASTER_BASE: u8 = 0x20;
const SLAVE_BASE: u8 = 0x28;

/// Remaps both PICs to vectors 0x20..0x2f and masks every line.
pub fn disable() {
    outb(MASTER_CMD, ICW1_INIT);
    outb(SLAVE_CMD, ICW1_INIT);
    outb(MASTER_DATA, MASTER_BASE);
    outb(SLAVE_DATA, SLAVE_BASE);
    outb(MASTER_DATA, 4); // ICW3: slave on IRQ 2
    outb(SLAVE_DATA, 2); // ICW3: cascade identity
    outb(MASTER_DATA, ICW4_8086);
    outb(SLAVE_DATA, ICW4_8086);
    outb(MASTER_DATA, 0xff);
    outb(SLAVE_DATA, 0xff);
}
