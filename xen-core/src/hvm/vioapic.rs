//! The virtual IOAPIC: 24 pins behind IOREGSEL/IOWIN at 0xfec00000.
//!
//! **Owns**: the ID, the redirection table, the pins' asserted levels and
//! remote IRR. **Trusts**: nothing from the guest (any offset, any value:
//! read-only bits keep their value, reserved bits read as zero); the
//! caller for pin levels (already polarity-adjusted, as Xen's
//! `hvm_ioapic_assert`) and for routing the [`Delivery`] requests it gets.
//!
//! **Follows** the Intel 82093AA datasheet (IOREGSEL at +0x00, IOWIN at
//! +0x10; ID, version 0x11 with 23 as the highest redirection entry,
//! arbitration ID; RTE bits) and Xen's `xen/arch/x86/hvm/vioapic.c`: an
//! edge while masked is lost; a level pin is delivered while asserted,
//! unmasked and with remote IRR clear, and sets remote IRR; an EOI
//! broadcast for a vector clears remote IRR of level pins with that vector
//! and redelivers those still asserted; switching a pin to edge clears its
//! remote IRR.

use super::vlapic::DeliveryMode;

/// The IOAPIC's guest-physical base.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Pins.
pub const PINS: usize = 24;
/// IOREGSEL's offset.
pub const IOREGSEL: u64 = 0x00;
/// IOWIN's offset.
pub const IOWIN: u64 = 0x10;

const REG_ID: u32 = 0x00;
const REG_VERSION: u32 = 0x01;
const REG_ARB: u32 = 0x02;
const REG_RTE0: u32 = 0x10;
/// Version 0x11 (82093AA), highest redirection entry 23.
const VERSION: u32 = 0x11 | ((PINS as u32 - 1) << 16);
const ID_MASK: u32 = 0x0f00_0000;

// Redirection-table entry bits (82093AA §3.2.4).
const RTE_VECTOR: u64 = 0xff;
const RTE_DELMODE_SHIFT: u32 = 8;
const RTE_DEST_LOGICAL: u64 = 1 << 11;
const RTE_DELIVS: u64 = 1 << 12;
const RTE_POLARITY_LOW: u64 = 1 << 13;
const RTE_REMOTE_IRR: u64 = 1 << 14;
const RTE_LEVEL: u64 = 1 << 15;
const RTE_MASKED: u64 = 1 << 16;
const RTE_DEST_SHIFT: u32 = 56;
/// Bits the guest writes: vector, delivery mode, dest mode, polarity,
/// trigger, mask, destination.
const RTE_WRITABLE: u64 = RTE_VECTOR
    | 7 << RTE_DELMODE_SHIFT
    | RTE_DEST_LOGICAL
    | RTE_POLARITY_LOW
    | RTE_LEVEL
    | RTE_MASKED
    | 0xff << RTE_DEST_SHIFT;

/// An interrupt message for the caller to route to local APICs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The pin it came from.
    pub pin: u8,
    /// Vector.
    pub vector: u8,
    /// Delivery mode (fixed, lowest priority, NMI, INIT, ExtINT, …).
    pub mode: DeliveryMode,
    /// Logical (true) or physical destination mode.
    pub logical: bool,
    /// Destination field (APIC ID, or logical MDA).
    pub dest: u8,
    /// Level-triggered (the LAPIC sets TMR and broadcasts the EOI).
    pub level: bool,
}

/// Up to one delivery per pin, from one operation.
#[derive(Clone, Copy, Debug)]
pub struct Deliveries {
    items: [Option<Delivery>; PINS],
    len: usize,
}

impl Deliveries {
    const fn none() -> Self {
        Self {
            items: [None; PINS],
            len: 0,
        }
    }

    fn push(&mut self, d: Delivery) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = Some(d);
            self.len += 1;
        }
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The deliveries, in pin order.
    pub fn iter(&self) -> impl Iterator<Item = &Delivery> {
        self.items.iter().flatten()
    }
}

/// The IOAPIC.
#[derive(Clone, Debug)]
pub struct VIoApic {
    id: u32,
    ioregsel: u32,
    rte: [u64; PINS],
    /// Pin levels as the caller last reported them (bit per pin).
    lines: u32,
}

/// Pins in Xen's `struct hvm_hw_vioapic` (`VIOAPIC_NUM_PINS`).
pub const SAVE_PINS: usize = 48;
/// Bytes of `struct hvm_hw_vioapic` (save record `IOAPIC`): base address,
/// IOREGSEL, ID, 48 redirection entries.
pub const IOAPIC_SAVE_LEN: usize = 16 + 8 * SAVE_PINS;

impl VIoApic {
    /// Xen's `struct hvm_hw_vioapic`: the pins past this IOAPIC's read as
    /// masked, the ID unshifted.
    pub fn save(&self) -> [u8; IOAPIC_SAVE_LEN] {
        let mut b = [0u8; IOAPIC_SAVE_LEN];
        b[0..8].copy_from_slice(&IOAPIC_BASE.to_le_bytes());
        b[8..12].copy_from_slice(&self.ioregsel.to_le_bytes());
        b[12..16].copy_from_slice(&(self.id >> 24).to_le_bytes());
        for (i, e) in b[16..].chunks_exact_mut(8).enumerate() {
            let v = self.rte.get(i).copied().unwrap_or(RTE_MASKED);
            e.copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Loads saved state; `false` (nothing changed) for another base
    /// address, or an unmasked pin this IOAPIC does not have. Line levels
    /// are the devices' to report again.
    pub fn restore(&mut self, b: &[u8; IOAPIC_SAVE_LEN]) -> bool {
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if u64_at(0) != IOAPIC_BASE {
            return false;
        }
        let rtes: [u64; SAVE_PINS] = core::array::from_fn(|i| u64_at(16 + 8 * i));
        if rtes[PINS..].iter().any(|e| e & RTE_MASKED == 0) {
            return false;
        }
        self.ioregsel = u32_at(8) & 0xff;
        self.id = (u32_at(12) << 24) & ID_MASK;
        for (slot, e) in self.rte.iter_mut().zip(rtes) {
            *slot = e & (RTE_WRITABLE | RTE_DELIVS | RTE_REMOTE_IRR);
        }
        self.lines = 0;
        true
    }

    /// An IOAPIC with `id` (0–15) after reset: every pin masked.
    pub fn new(id: u8) -> Self {
        Self {
            id: (u32::from(id) << 24) & ID_MASK,
            ioregsel: 0,
            rte: [RTE_MASKED; PINS],
            lines: 0,
        }
    }

    /// Pin `pin`'s redirection entry (0 for pins that don't exist).
    pub fn rte(&self, pin: usize) -> u64 {
        self.rte.get(pin).copied().unwrap_or(0)
    }

    fn delivery(&self, pin: usize) -> Delivery {
        let e = self.rte[pin];
        Delivery {
            pin: pin as u8,
            vector: (e & RTE_VECTOR) as u8,
            mode: DeliveryMode::from_bits((e >> RTE_DELMODE_SHIFT) as u8),
            logical: e & RTE_DEST_LOGICAL != 0,
            dest: (e >> RTE_DEST_SHIFT) as u8,
            level: e & RTE_LEVEL != 0,
        }
    }

    /// A level pin that is asserted, unmasked and not awaiting an EOI is
    /// delivered (and now awaits one).
    fn try_level(&mut self, pin: usize, out: &mut Deliveries) {
        let e = self.rte[pin];
        if e & RTE_LEVEL != 0
            && e & RTE_MASKED == 0
            && e & RTE_REMOTE_IRR == 0
            && self.lines & (1 << pin) != 0
        {
            self.rte[pin] |= RTE_REMOTE_IRR;
            out.push(self.delivery(pin));
        }
    }

    /// Pin `pin` is now asserted (`true`) or not. Pins ≥ 24 are ignored.
    pub fn set_irq(&mut self, pin: usize, asserted: bool) -> Deliveries {
        let mut out = Deliveries::none();
        if pin >= PINS {
            return out;
        }
        let bit = 1u32 << pin;
        let was = self.lines & bit != 0;
        if asserted {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
        let e = self.rte[pin];
        if e & RTE_LEVEL != 0 {
            self.try_level(pin, &mut out);
        } else if asserted && !was && e & RTE_MASKED == 0 {
            out.push(self.delivery(pin));
        }
        out
    }

    /// A pulse (assert then deassert), as ISA edge sources raise.
    pub fn pulse(&mut self, pin: usize) -> Deliveries {
        let out = self.set_irq(pin, true);
        self.set_irq(pin, false);
        out
    }

    /// An EOI for `vector` broadcast from a local APIC: clears remote IRR
    /// of the level pins with that vector and redelivers those still
    /// asserted.
    pub fn eoi(&mut self, vector: u8) -> Deliveries {
        let mut out = Deliveries::none();
        for pin in 0..PINS {
            let e = self.rte[pin];
            if (e & RTE_VECTOR) as u8 != vector || e & RTE_REMOTE_IRR == 0 {
                continue;
            }
            self.rte[pin] &= !RTE_REMOTE_IRR;
            self.try_level(pin, &mut out);
        }
        out
    }

    fn read_reg(&self) -> u32 {
        match self.ioregsel {
            REG_ID => self.id,
            REG_VERSION => VERSION,
            REG_ARB => self.id,
            r if (REG_RTE0..REG_RTE0 + 2 * PINS as u32).contains(&r) => {
                let pin = ((r - REG_RTE0) / 2) as usize;
                let e = self.rte[pin];
                if r & 1 == 0 {
                    e as u32
                } else {
                    (e >> 32) as u32
                }
            }
            _ => 0,
        }
    }

    fn write_reg(&mut self, val: u32) -> Deliveries {
        let mut out = Deliveries::none();
        match self.ioregsel {
            REG_ID => self.id = val & ID_MASK,
            r if (REG_RTE0..REG_RTE0 + 2 * PINS as u32).contains(&r) => {
                let pin = ((r - REG_RTE0) / 2) as usize;
                let old = self.rte[pin];
                let merged = if r & 1 == 0 {
                    (old & !0xffff_ffff) | u64::from(val)
                } else {
                    (old & 0xffff_ffff) | u64::from(val) << 32
                };
                let mut new = (merged & RTE_WRITABLE) | (old & (RTE_REMOTE_IRR | RTE_DELIVS));
                if new & RTE_LEVEL == 0 {
                    new &= !RTE_REMOTE_IRR;
                }
                self.rte[pin] = new;
                // Unmasking an asserted level pin delivers it.
                self.try_level(pin, &mut out);
            }
            _ => {} // Version, arbitration and absent registers are read-only.
        }
        out
    }

    /// A guest 32-bit MMIO read at `offset` within the IOAPIC page.
    pub fn mmio_read(&self, offset: u64) -> u32 {
        match offset {
            IOREGSEL => self.ioregsel,
            IOWIN => self.read_reg(),
            _ => 0,
        }
    }

    /// A guest 32-bit MMIO write at `offset` within the IOAPIC page.
    pub fn mmio_write(&mut self, offset: u64, val: u32) -> Deliveries {
        match offset {
            IOREGSEL => {
                self.ioregsel = val & 0xff;
                Deliveries::none()
            }
            IOWIN => self.write_reg(val),
            _ => Deliveries::none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wr(a: &mut VIoApic, reg: u32, val: u32) -> Deliveries {
        a.mmio_write(IOREGSEL, reg);
        a.mmio_write(IOWIN, val)
    }

    fn rd(a: &mut VIoApic, reg: u32) -> u32 {
        a.mmio_write(IOREGSEL, reg);
        a.mmio_read(IOWIN)
    }

    #[test]
    fn save_and_restore_carry_the_redirection_table() {
        let mut a = VIoApic::new(3);
        wr(&mut a, 0x15, 0x0100_0000);
        wr(&mut a, 0x14, 0x0000_a030); // vector 0x30, level, active low
        let s = a.save();
        assert_eq!(&s[0..8], &0xfec0_0000u64.to_le_bytes());
        assert_eq!(&s[12..16], &3u32.to_le_bytes(), "the ID unshifted");
        assert_eq!(&s[16 + 8 * 30..16 + 8 * 31], &(1u64 << 16).to_le_bytes());
        let mut b = VIoApic::new(0);
        assert!(b.restore(&s));
        assert_eq!(b.save(), s);
        assert_eq!(rd(&mut b, 0x14), 0xa030);
        assert_eq!(rd(&mut b, 0x15), 0x0100_0000);
        assert_eq!(rd(&mut b, 0), 0x0300_0000);
        // Elsewhere, or an unmasked pin past the 24 it has: refused.
        let before = b.save();
        let mut moved = s;
        moved[1] = 1;
        assert!(!b.restore(&moved));
        let mut pin40 = s;
        pin40[16 + 8 * 40 + 2] = 0;
        assert!(!b.restore(&pin40));
        assert_eq!(b.save(), before, "nothing changed");
    }

    #[test]
    fn ids_and_version() {
        let mut a = VIoApic::new(2);
        assert_eq!(rd(&mut a, 0), 0x0200_0000);
        assert_eq!(rd(&mut a, 1), 0x0017_0011);
        assert_eq!((rd(&mut a, 1) >> 16) & 0xff, 23);
        wr(&mut a, 0, 0xffff_ffff);
        assert_eq!(rd(&mut a, 0), 0x0f00_0000);
        wr(&mut a, 1, 0);
        assert_eq!(rd(&mut a, 1), 0x0017_0011);
        assert_eq!(rd(&mut a, 2), 0x0f00_0000);
        assert_eq!(rd(&mut a, 0x40), 0);
        assert_eq!(a.mmio_read(IOREGSEL), 0x40);
    }

    /// Linux's `setup_IO_APIC`/`ioapic_write_entry`: mask, write high then
    /// low; legacy IRQs edge/active-high, PCI level/active-low.
    #[test]
    fn linux_setup_and_edge_delivery() {
        let mut a = VIoApic::new(0);
        for pin in 0..24u32 {
            assert_eq!(
                rd(&mut a, 0x10 + 2 * pin) & (1 << 16),
                1 << 16,
                "masked at reset"
            );
        }
        // Timer pin 2, vector 0x30, physical dest APIC 0, fixed, edge.
        wr(&mut a, 0x15, 0x0000_0000);
        wr(&mut a, 0x14, 0x0000_0030);
        let d = a.pulse(2);
        assert_eq!(d.len(), 1);
        let x = *d.iter().next().unwrap();
        assert_eq!(
            x,
            Delivery {
                pin: 2,
                vector: 0x30,
                mode: DeliveryMode::Fixed,
                logical: false,
                dest: 0,
                level: false
            }
        );
        // Held level on an edge pin: one delivery.
        assert_eq!(a.set_irq(2, true).len(), 1);
        assert_eq!(a.set_irq(2, true).len(), 0);
        a.set_irq(2, false);
        // Masked: the edge is lost, and unmasking doesn't bring it back.
        wr(&mut a, 0x14, 0x0001_0030);
        assert!(a.pulse(2).is_empty());
        assert!(wr(&mut a, 0x14, 0x30).is_empty());
        // Logical, lowest priority, dest 0x0f.
        wr(&mut a, 0x13, 0x0f00_0000);
        wr(&mut a, 0x12, 0x0000_0931);
        let x = *a.pulse(1).iter().next().unwrap();
        assert!(x.logical);
        assert_eq!(
            (x.mode, x.dest, x.vector),
            (DeliveryMode::LowestPriority, 0x0f, 0x31)
        );
        // Reserved high bits read back as zero.
        wr(&mut a, 0x13, 0xffff_ffff);
        assert_eq!(rd(&mut a, 0x13), 0xff00_0000);
    }

    #[test]
    fn level_remote_irr_and_eoi() {
        let mut a = VIoApic::new(0);
        // PCI pin 16: vector 0x41, level, active low, masked first.
        wr(&mut a, 0x30, 0x0001_a041);
        assert!(a.set_irq(16, true).is_empty(), "masked");
        // Unmasking an asserted level pin delivers.
        let d = wr(&mut a, 0x30, 0x0000_a041);
        assert_eq!(d.len(), 1);
        assert!(d.iter().next().unwrap().level);
        assert_ne!(rd(&mut a, 0x30) & (1 << 14), 0, "remote IRR");
        // Remote IRR is read-only.
        wr(&mut a, 0x30, 0x0000_a041 & !(1 << 14));
        assert_ne!(rd(&mut a, 0x30) & (1 << 14), 0);
        // Still asserted: no second delivery before EOI.
        assert!(a.set_irq(16, true).is_empty());
        // EOI for another vector: nothing.
        assert!(a.eoi(0x42).is_empty());
        // EOI while still asserted: redelivered.
        assert_eq!(a.eoi(0x41).len(), 1);
        // Deasserted, then EOI: remote IRR clears, nothing delivered.
        a.set_irq(16, false);
        assert!(a.eoi(0x41).is_empty());
        assert_eq!(rd(&mut a, 0x30) & (1 << 14), 0);
        // Two pins sharing a vector both redeliver.
        wr(&mut a, 0x32, 0x0000_a041);
        assert_eq!(a.set_irq(16, true).len(), 1);
        assert_eq!(a.set_irq(17, true).len(), 1);
        let d = a.eoi(0x41);
        assert_eq!(d.len(), 2);
        // Switching to edge clears remote IRR.
        wr(&mut a, 0x32, 0x0000_2041);
        assert_eq!(rd(&mut a, 0x32) & (1 << 14), 0);
    }

    #[test]
    fn random_mmio_never_panics() {
        let mut seed = 0x0123_4567_89ab_cdefu64;
        let mut rnd = || {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        for _ in 0..50 {
            let mut a = VIoApic::new(rnd() as u8);
            for _ in 0..3000 {
                let r = rnd();
                let off = [0u64, 0x10, 0x20, 0x40, 0xffc, u64::MAX][((r >> 8) % 6) as usize];
                match r % 6 {
                    0 => {
                        a.mmio_write(IOREGSEL, (r >> 16) as u32 % 0x50);
                    }
                    1 | 2 => {
                        a.mmio_write(off, (r >> 32) as u32);
                    }
                    3 => {
                        a.mmio_read(off);
                    }
                    4 => {
                        a.set_irq((r >> 16) as usize % 30, r & (1 << 40) != 0);
                    }
                    _ => {
                        a.eoi((r >> 16) as u8);
                    }
                }
            }
        }
    }
}
