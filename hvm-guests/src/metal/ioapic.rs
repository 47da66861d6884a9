//! An IOAPIC's registers, reached indirectly: the register number goes to
//! IOREGSEL (offset 0x00), its value comes from IOWIN (offset 0x10)
//! (82093AA data sheet §3.1). Only read here.

use super::cpu::{mmio_read32, mmio_write32};
use super::phys::IDENTITY_LIMIT;
use crate::report::Why;
use crate::why;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
pub const REG_ID: u32 = 0x00;
pub const REG_VERSION: u32 = 0x01;

/// An IOAPIC at a physical address the MADT gave.
pub struct IoApic {
    base: u64,
}

impl IoApic {
    /// Checks that the address can be an IOAPIC's (aligned, in the 1:1 map).
    pub fn new(base: u64) -> Result<Self, Why> {
        if base == 0 || !base.is_multiple_of(16) || base + 0x20 > IDENTITY_LIMIT {
            return Err(why!("IOAPIC address {base:#x} is unusable"));
        }
        Ok(IoApic { base })
    }

    pub fn read(&self, reg: u32) -> u32 {
        // SAFETY: `new` checked the base is aligned and mapped; IOREGSEL and
        // IOWIN are the IOAPIC's two registers, and selecting a register has
        // no other effect.
        unsafe {
            mmio_write32(self.base + IOREGSEL, reg);
            mmio_read32(self.base + IOWIN)
        }
    }
}
