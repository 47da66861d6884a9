//! The virtual 8259A PIC pair: master at ports 0x20/0x21, slave at
//! 0xa0/0xa1 cascaded on the master's IRQ2, and the edge/level control
//! registers (ELCR) at 0x4d0/0x4d1.
//!
//! **Owns**: both chips' registers (IRR/ISR/IMR, the ICW sequence, OCW2/OCW3
//! state, rotation) and the input-line levels the caller reports.
//! **Trusts**: nothing: every byte written is guest-controlled; unknown
//! commands are ignored as the chip does.
//!
//! **Follows** the Intel 8259A datasheet (ICW1–ICW4, OCW1–OCW3), with the
//! behaviour details of Xen's `xen/arch/x86/hvm/vpic.c` and QEMU's
//! `hw/intc/i8259.c`: ICW1 forgets edges but keeps level-triggered IRR bits,
//! edge inputs latch on a rising edge, level inputs follow the line, the
//! ELCR masks are 0xf8 (master: IRQ0–2 are edge only) and 0xde (slave: IRQ8
//! and IRQ13 are edge only), and an INTA with nothing pending returns the
//! spurious IRQ7 (or IRQ15) vector. As in Xen, the cascade input (master
//! IRQ2) follows the slave's output like a level input.

/// Master command/status port (ICW1, OCW2, OCW3; IRR/ISR/poll).
pub const MASTER_CMD: u16 = 0x20;
/// Master data port (ICW2–4, OCW1 = IMR).
pub const MASTER_DATA: u16 = 0x21;
/// Slave command/status port.
pub const SLAVE_CMD: u16 = 0xa0;
/// Slave data port.
pub const SLAVE_DATA: u16 = 0xa1;
/// ELCR for IRQ0–7 (PIIX/ICH "edge/level control register").
pub const ELCR_MASTER: u16 = 0x4d0;
/// ELCR for IRQ8–15.
pub const ELCR_SLAVE: u16 = 0x4d1;

/// The master input the slave's INT output is wired to.
const CASCADE_IRQ: u8 = 2;

// ICW1 bits (8259A datasheet, "Initialization Command Words").
const ICW1_IC4: u8 = 0x01;
const ICW1_SNGL: u8 = 0x02;
const ICW1_INIT: u8 = 0x10;
// ICW4 bits.
const ICW4_AEOI: u8 = 0x02;
const ICW4_SFNM: u8 = 0x10;
// OCW3 bits.
const OCW3_SELECT: u8 = 0x08;
const OCW3_POLL: u8 = 0x04;
const OCW3_RR: u8 = 0x02;
const OCW3_RIS: u8 = 0x01;
const OCW3_ESMM: u8 = 0x40;
const OCW3_SMM: u8 = 0x20;

/// Where the chip is in its initialization sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InitState {
    Ready,
    Icw2,
    Icw3,
    Icw4,
}

/// One 8259A.
#[derive(Clone, Debug)]
pub struct Pic8259 {
    irr: u8,
    isr: u8,
    imr: u8,
    elcr: u8,
    elcr_mask: u8,
    /// Input line levels as last reported (edge detection and level IRR).
    lines: u8,
    /// ICW2's vector base (bits 7:3).
    base: u8,
    /// Rotation: the IRQ with the lowest priority is `priority_add - 1`.
    priority_add: u8,
    read_isr: bool,
    poll: bool,
    special_mask: bool,
    init: InitState,
    icw4_needed: bool,
    single: bool,
    auto_eoi: bool,
    rotate_on_auto_eoi: bool,
    special_fully_nested: bool,
    is_master: bool,
}

/// Bytes of Xen's `struct hvm_hw_vpic` (save record `PIC`, instance 0 the
/// master, 1 the slave).
pub const PIC_SAVE_LEN: usize = 8;

impl Pic8259 {
    /// Xen's `struct hvm_hw_vpic`: irr, imr, isr, irq_base, init_state
    /// (bits 0-1: the ICW the next data write sets, minus one; bit 2
    /// ICW1.IC4; bit 3 ICW1.SNGL; 0 when no initialisation is under way)
    /// and priority_add in one byte, the mode bits (readsel_isr, poll,
    /// auto_eoi, rotate_on_auto_eoi, special_fully_nested_mode,
    /// special_mask_mode, is_master from bit 0 up), elcr, int_output.
    pub fn save(&self) -> [u8; PIC_SAVE_LEN] {
        let step = match self.init {
            InitState::Ready => 0,
            InitState::Icw2 => 1,
            InitState::Icw3 => 2,
            InitState::Icw4 => 3,
        };
        let init = if step == 0 {
            0
        } else {
            step | u8::from(self.icw4_needed) << 2 | u8::from(self.single) << 3
        };
        let flags = [
            self.read_isr,
            self.poll,
            self.auto_eoi,
            self.rotate_on_auto_eoi,
            self.special_fully_nested,
            self.special_mask,
            self.is_master,
        ]
        .iter()
        .enumerate()
        .fold(0u8, |f, (i, &b)| f | u8::from(b) << i);
        [
            self.irr,
            self.imr,
            self.isr,
            self.base,
            init | (self.priority_add & 7) << 4,
            flags,
            self.elcr,
            u8::from(self.irr & !self.imr & !self.isr != 0),
        ]
    }

    /// Loads a saved chip; `false` (nothing changed) if it says it is the
    /// other chip of the pair, or has bits Xen never sets.
    fn restore(&mut self, b: &[u8; PIC_SAVE_LEN]) -> bool {
        let init = b[4] & 0xf;
        let master = b[5] & (1 << 6) != 0;
        if master != self.is_master || b[4] >> 4 > 7 || b[5] & 0x80 != 0 || b[3] & 7 != 0 {
            return false;
        }
        self.irr = b[0];
        self.imr = b[1];
        self.isr = b[2];
        self.base = b[3];
        self.init = match init & 3 {
            _ if init == 0 => InitState::Ready,
            1 => InitState::Icw2,
            2 => InitState::Icw3,
            _ => InitState::Icw4,
        };
        self.icw4_needed = init & 4 != 0;
        self.single = init & 8 != 0;
        self.priority_add = b[4] >> 4;
        let bit = |i: u8| b[5] & (1 << i) != 0;
        self.read_isr = bit(0);
        self.poll = bit(1);
        self.auto_eoi = bit(2);
        self.rotate_on_auto_eoi = bit(3);
        self.special_fully_nested = bit(4);
        self.special_mask = bit(5);
        self.elcr = b[6] & self.elcr_mask;
        // Line levels are the devices' to report again.
        self.lines = 0;
        true
    }

    fn new(is_master: bool) -> Self {
        Self {
            irr: 0,
            isr: 0,
            imr: 0,
            elcr: 0,
            elcr_mask: if is_master { 0xf8 } else { 0xde },
            lines: 0,
            base: 0,
            priority_add: 0,
            read_isr: false,
            poll: false,
            special_mask: false,
            init: InitState::Ready,
            icw4_needed: false,
            single: false,
            auto_eoi: false,
            rotate_on_auto_eoi: false,
            special_fully_nested: false,
            is_master,
        }
    }

    /// Interrupt request register.
    pub fn irr(&self) -> u8 {
        self.irr
    }
    /// In-service register.
    pub fn isr(&self) -> u8 {
        self.isr
    }
    /// Interrupt mask register (OCW1).
    pub fn imr(&self) -> u8 {
        self.imr
    }
    /// Vector base programmed by ICW2.
    pub fn base(&self) -> u8 {
        self.base
    }
    /// Edge/level control register.
    pub fn elcr(&self) -> u8 {
        self.elcr
    }

    /// Priority (0 = highest) of the best bit of `mask` under the current
    /// rotation, or 8 when `mask` is empty.
    fn priority(&self, mask: u8) -> u8 {
        if mask == 0 {
            return 8;
        }
        let mut p = 0;
        while p < 8 && mask & (1 << ((p + self.priority_add) & 7)) == 0 {
            p += 1;
        }
        p
    }

    /// The IRQ (0–7) this chip would present on INT, if any.
    fn highest_irq(&self) -> Option<u8> {
        let p = self.priority(self.irr & !self.imr);
        if p == 8 {
            return None;
        }
        let mut in_service = self.isr;
        if self.special_mask {
            in_service &= !self.imr;
        }
        if self.special_fully_nested && self.is_master {
            // A slave request may nest over an in-service slave request.
            in_service &= !(1 << CASCADE_IRQ);
        }
        if p < self.priority(in_service) {
            Some((p + self.priority_add) & 7)
        } else {
            None
        }
    }

    /// INTA for `irq` on this chip.
    fn intack(&mut self, irq: u8) {
        let bit = 1u8 << (irq & 7);
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.priority_add = (irq + 1) & 7;
            }
        } else {
            self.isr |= bit;
        }
        // Edge: the latched request is consumed. Level: IRR follows the line.
        if self.elcr & bit == 0 {
            self.irr &= !bit;
        }
    }

    fn set_line(&mut self, irq: u8, level: bool) {
        let bit = 1u8 << (irq & 7);
        if self.elcr & bit != 0 {
            if level {
                self.irr |= bit;
                self.lines |= bit;
            } else {
                self.irr &= !bit;
                self.lines &= !bit;
            }
        } else if level {
            if self.lines & bit == 0 {
                self.irr |= bit;
            }
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
    }

    fn init_reset(&mut self) {
        // Edge-sense logic is cleared; level-triggered requests stay.
        self.irr &= self.elcr;
        self.lines &= self.elcr;
        self.isr = 0;
        self.imr = 0;
        self.priority_add = 0;
        self.read_isr = false;
        self.poll = false;
        self.special_mask = false;
        self.auto_eoi = false;
        self.rotate_on_auto_eoi = false;
        self.special_fully_nested = false;
        self.icw4_needed = false;
        self.single = false;
        self.base = 0;
        self.init = InitState::Ready;
    }

    fn write_cmd(&mut self, val: u8) {
        if val & ICW1_INIT != 0 {
            // ICW1. LTIM (bit 3) is ignored: the ELCR decides, as on PIIX.
            self.init_reset();
            self.init = InitState::Icw2;
            self.icw4_needed = val & ICW1_IC4 != 0;
            self.single = val & ICW1_SNGL != 0;
        } else if val & OCW3_SELECT != 0 {
            if val & OCW3_POLL != 0 {
                self.poll = true;
            }
            if val & OCW3_RR != 0 {
                self.read_isr = val & OCW3_RIS != 0;
            }
            if val & OCW3_ESMM != 0 {
                self.special_mask = val & OCW3_SMM != 0;
            }
        } else {
            // OCW2: R, SL, EOI in bits 7:5, level in 2:0.
            let level = val & 7;
            match val >> 5 {
                0 => self.rotate_on_auto_eoi = false,
                4 => self.rotate_on_auto_eoi = true,
                cmd @ (1 | 5) => {
                    // Non-specific EOI (5: and rotate).
                    let p = self.priority(self.isr);
                    if p != 8 {
                        let irq = (p + self.priority_add) & 7;
                        self.isr &= !(1 << irq);
                        if cmd == 5 {
                            self.priority_add = (irq + 1) & 7;
                        }
                    }
                }
                3 => self.isr &= !(1 << level),
                6 => self.priority_add = (level + 1) & 7,
                7 => {
                    self.isr &= !(1 << level);
                    self.priority_add = (level + 1) & 7;
                }
                _ => {} // 2: no operation.
            }
        }
    }

    fn write_data(&mut self, val: u8) {
        match self.init {
            InitState::Ready => self.imr = val,
            InitState::Icw2 => {
                self.base = val & 0xf8;
                self.init = match (self.single, self.icw4_needed) {
                    (false, _) => InitState::Icw3,
                    (true, true) => InitState::Icw4,
                    (true, false) => InitState::Ready,
                };
            }
            InitState::Icw3 => {
                // Cascade wiring is fixed (slave on IRQ2); nothing to store.
                self.init = if self.icw4_needed {
                    InitState::Icw4
                } else {
                    InitState::Ready
                };
            }
            InitState::Icw4 => {
                self.auto_eoi = val & ICW4_AEOI != 0;
                self.special_fully_nested = val & ICW4_SFNM != 0;
                self.init = InitState::Ready;
            }
        }
    }
}

/// The master/slave pair.
#[derive(Clone, Debug)]
pub struct VPic {
    /// `[master, slave]`.
    chips: [Pic8259; 2],
}

impl Default for VPic {
    fn default() -> Self {
        Self::new()
    }
}

impl VPic {
    /// Both chips as after reset: nothing masked, vector base 0, every input
    /// edge-triggered.
    pub fn new() -> Self {
        Self {
            chips: [Pic8259::new(true), Pic8259::new(false)],
        }
    }

    /// Loads the saved chips (master, slave); `false` (nothing changed) if
    /// either is refused.
    pub fn restore(&mut self, master: &[u8; PIC_SAVE_LEN], slave: &[u8; PIC_SAVE_LEN]) -> bool {
        let mut new = self.clone();
        if !(new.chips[0].restore(master) && new.chips[1].restore(slave)) {
            return false;
        }
        *self = new;
        true
    }

    /// The master chip.
    pub fn master(&self) -> &Pic8259 {
        &self.chips[0]
    }
    /// The slave chip.
    pub fn slave(&self) -> &Pic8259 {
        &self.chips[1]
    }

    /// Whether this device decodes `port`.
    pub fn handles(port: u16) -> bool {
        matches!(
            port,
            MASTER_CMD | MASTER_DATA | SLAVE_CMD | SLAVE_DATA | ELCR_MASTER | ELCR_SLAVE
        )
    }

    /// Propagates the slave's INT output to the master's IRQ2 request. As
    /// Xen's vpic, the cascade acts as a level input, so a slave request
    /// that went away leaves no stale edge behind (no spurious IRQ15).
    fn update_cascade(&mut self) {
        let bit = 1u8 << CASCADE_IRQ;
        let out = self.chips[1].highest_irq().is_some();
        let m = &mut self.chips[0];
        if out {
            m.irr |= bit;
            m.lines |= bit;
        } else {
            m.irr &= !bit;
            m.lines &= !bit;
        }
    }

    /// An input line changed: `irq` 0–15 (others are ignored), `level`
    /// true = asserted. Edge-triggered inputs latch on a rising edge.
    pub fn set_irq(&mut self, irq: u8, level: bool) {
        if irq >= 16 {
            return;
        }
        let chip = usize::from(irq >> 3);
        self.chips[chip].set_line(irq & 7, level);
        self.update_cascade();
    }

    /// A guest `out` of one byte. Ports this device does not decode are
    /// ignored.
    pub fn write(&mut self, port: u16, val: u8) {
        match port {
            MASTER_CMD => self.chips[0].write_cmd(val),
            MASTER_DATA => self.chips[0].write_data(val),
            SLAVE_CMD => self.chips[1].write_cmd(val),
            SLAVE_DATA => self.chips[1].write_data(val),
            ELCR_MASTER | ELCR_SLAVE => {
                let c = &mut self.chips[usize::from(port & 1)];
                c.elcr = val & c.elcr_mask;
                // An input switched to level takes its IRR from the line.
                let lvl = c.elcr;
                c.irr = (c.irr & !lvl) | (c.lines & lvl);
            }
            _ => return,
        }
        self.update_cascade();
    }

    /// A guest `in` of one byte; 0xff for ports this device does not decode.
    pub fn read(&mut self, port: u16) -> u8 {
        let chip = match port {
            MASTER_CMD | MASTER_DATA => 0,
            SLAVE_CMD | SLAVE_DATA => 1,
            ELCR_MASTER => return self.chips[0].elcr,
            ELCR_SLAVE => return self.chips[1].elcr,
            _ => return 0xff,
        };
        let c = &mut self.chips[chip];
        if c.poll {
            // Poll mode: the read is an INTA for this chip.
            c.poll = false;
            let v = match c.highest_irq() {
                Some(irq) => {
                    c.intack(irq);
                    0x80 | irq
                }
                None => 0,
            };
            self.update_cascade();
            return v;
        }
        if port & 1 == 0 {
            if c.read_isr {
                c.isr
            } else {
                c.irr
            }
        } else {
            c.imr
        }
    }

    /// Whether INTR (the master's INT output) is asserted.
    pub fn has_interrupt(&self) -> bool {
        self.chips[0].highest_irq().is_some()
    }

    /// The vector an INTA cycle would deliver now, or `None` when INTR is not
    /// asserted. Does not change state.
    pub fn pending_vector(&self) -> Option<u8> {
        let irq = self.chips[0].highest_irq()?;
        if irq == CASCADE_IRQ {
            let s = &self.chips[1];
            let irq2 = s.highest_irq().unwrap_or(7);
            Some(s.base | irq2)
        } else {
            Some(self.chips[0].base | irq)
        }
    }

    /// INTA: the CPU takes the interrupt. Returns the vector (the slave's
    /// spurious IRQ15 vector if the slave's request went away), or `None`
    /// when INTR is not asserted (hardware would return the master's IRQ7
    /// vector; see [`VPic::spurious_vector`]).
    pub fn ack(&mut self) -> Option<u8> {
        let irq = self.chips[0].highest_irq()?;
        let vector = if irq == CASCADE_IRQ {
            let s = &mut self.chips[1];
            let irq2 = match s.highest_irq() {
                Some(i) => {
                    s.intack(i);
                    i
                }
                None => 7,
            };
            s.base | irq2
        } else {
            self.chips[0].base | irq
        };
        self.chips[0].intack(irq);
        self.update_cascade();
        Some(vector)
    }

    /// The master's IRQ7 vector, what an INTA without a request returns.
    pub fn spurious_vector(&self) -> u8 {
        self.chips[0].base | 7
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's `init_8259A(auto_eoi = 0)` (arch/x86/kernel/i8259.c).
    fn linux_init(p: &mut VPic, auto_eoi: bool) {
        p.write(0x21, 0xff); // mask all of 8259A-1
        p.write(0xa1, 0xff); // mask all of 8259A-2
        p.write(0x20, 0x11); // ICW1: edge, cascade, ICW4
        p.write(0x21, 0x30); // ICW2: vectors 0x30-0x37
        p.write(0x21, 1 << 2); // ICW3: slave on IR2
        p.write(0x21, if auto_eoi { 0x03 } else { 0x01 }); // ICW4
        p.write(0xa0, 0x11);
        p.write(0xa1, 0x38);
        p.write(0xa1, 2); // slave id
        p.write(0xa1, 0x01);
        p.write(0x21, 0xff);
        p.write(0xa1, 0xff);
    }

    #[test]
    fn save_and_restore_keep_both_chips() {
        let mut p = VPic::new();
        linux_init(&mut p, true);
        p.write(0x21, 0xfa);
        p.write(0x4d0, 0x20); // ELCR: IRQ5 level
        p.set_irq(0, true);
        assert_eq!(p.ack(), Some(0x30)); // auto-EOI: not in service
        p.write(0x20, 0x0b); // OCW3: read ISR
                             // A second initialisation half done on the slave.
        p.write(0xa0, 0x11);
        let (m, s) = (p.master().save(), p.slave().save());
        assert_eq!(m[3], 0x30);
        assert_eq!(m[5] & (1 << 6), 1 << 6, "is_master");
        assert_eq!(m[5] & 0b101, 0b101, "readsel_isr and auto_eoi");
        assert_eq!(s[4] & 0xf, 1 | 4, "next write sets ICW2, ICW4 wanted");
        let mut q = VPic::new();
        assert!(q.restore(&m, &s));
        assert_eq!((q.master().save(), q.slave().save()), (m, s));
        assert_eq!(q.read(0x21), 0xfa);
        // The slave's initialisation carries on where it was.
        q.write(0xa1, 0x70);
        assert_eq!(q.slave().base(), 0x70);
        // The chips the wrong way round: refused, nothing changed.
        let mut r = VPic::new();
        assert!(!r.restore(&s, &m));
        assert_eq!(r.master().save(), VPic::new().master().save());
    }

    #[test]
    fn linux_init_then_timer_irq() {
        let mut p = VPic::new();
        linux_init(&mut p, false);
        assert_eq!(p.master().base(), 0x30);
        assert_eq!(p.slave().base(), 0x38);
        assert_eq!(p.read(0x21), 0xff);
        p.set_irq(0, true);
        assert_eq!(p.pending_vector(), None, "masked");
        // Unmask IRQ0 and the cascade.
        p.write(0x21, 0xfa);
        assert_eq!(p.pending_vector(), Some(0x30));
        assert_eq!(p.ack(), Some(0x30));
        assert_eq!(p.master().isr(), 1);
        assert_eq!(p.pending_vector(), None);
        p.set_irq(0, false);
        // Non-specific EOI.
        p.write(0x20, 0x20);
        assert_eq!(p.master().isr(), 0);
        // Next edge.
        p.set_irq(0, true);
        assert_eq!(p.ack(), Some(0x30));
        // Specific EOI for IRQ0 (Linux's mask_and_ack_8259A: 0x60 + irq).
        p.write(0x20, 0x60);
        assert_eq!(p.master().isr(), 0);
    }

    #[test]
    fn slave_cascade_and_eoi_both() {
        let mut p = VPic::new();
        linux_init(&mut p, false);
        p.write(0x21, 0xfb);
        p.write(0xa1, 0xfe); // RTC IRQ8
        p.set_irq(8, true);
        assert_eq!(p.pending_vector(), Some(0x38));
        assert_eq!(p.ack(), Some(0x38));
        assert_eq!(p.slave().isr(), 1);
        assert_eq!(p.master().isr(), 4);
        // Linux: specific EOI to slave, then to master IR2.
        p.write(0xa0, 0x60);
        p.write(0x20, 0x62);
        assert_eq!(p.slave().isr(), 0);
        assert_eq!(p.master().isr(), 0);
    }

    #[test]
    fn priority_and_nesting() {
        let mut p = VPic::new();
        linux_init(&mut p, false);
        p.write(0x21, 0x00);
        p.write(0xa1, 0x00);
        p.set_irq(4, true);
        p.set_irq(1, true);
        assert_eq!(p.ack(), Some(0x31), "IRQ1 beats IRQ4");
        // IRQ4 is lower priority than in-service IRQ1: not presented.
        assert_eq!(p.pending_vector(), None);
        // IRQ0 is higher: nests.
        p.set_irq(0, true);
        assert_eq!(p.ack(), Some(0x30));
        assert_eq!(p.master().isr(), 0b11);
        // Non-specific EOI ends the highest in service (IRQ0).
        p.write(0x20, 0x20);
        assert_eq!(p.master().isr(), 0b10);
        p.write(0x20, 0x20);
        assert_eq!(p.ack(), Some(0x34));
        // Slave IRQ (via IR2) beats IRQ3 but not IRQ1.
        p.write(0x20, 0x20);
        p.set_irq(3, true);
        p.set_irq(12, true);
        assert_eq!(p.ack(), Some(0x3c));
        assert_eq!(p.pending_vector(), None, "IRQ3 below in-service IR2");
    }

    #[test]
    fn rotation_and_specific_priority() {
        let mut p = VPic::new();
        linux_init(&mut p, false);
        p.write(0x21, 0x00);
        // Set priority: IRQ5 lowest, so IRQ6 highest.
        p.write(0x20, 0xc0 | 5);
        p.set_irq(1, true);
        p.set_irq(6, true);
        assert_eq!(p.ack(), Some(0x36));
        // Rotate on non-specific EOI: IRQ6 becomes lowest, IRQ7 highest.
        p.write(0x20, 0xa0);
        assert_eq!(p.master().isr(), 0);
        p.set_irq(6, false);
        p.set_irq(6, true);
        assert_eq!(p.ack(), Some(0x31), "IRQ1 beats IRQ6 now");
    }

    #[test]
    fn auto_eoi_leaves_isr_clear() {
        let mut p = VPic::new();
        linux_init(&mut p, true);
        p.write(0x21, 0);
        p.set_irq(3, true);
        assert_eq!(p.ack(), Some(0x33));
        assert_eq!(p.master().isr(), 0);
        // Rotate in auto-EOI mode set.
        p.write(0x20, 0x80);
        p.set_irq(0, true);
        p.set_irq(1, true);
        assert_eq!(p.ack(), Some(0x30));
        assert_eq!(p.ack(), Some(0x31));
    }

    #[test]
    fn level_triggered_via_elcr() {
        let mut p = VPic::new();
        linux_init(&mut p, false);
        p.write(0x21, 0xfb);
        p.write(0xa1, 0x00);
        p.write(0x4d1, 0xff);
        assert_eq!(p.read(0x4d1), 0xde, "IRQ8 and IRQ13 stay edge");
        p.write(0x4d0, 0xff);
        assert_eq!(p.read(0x4d0), 0xf8);
        p.set_irq(11, true);
        assert_eq!(p.ack(), Some(0x3b));
        assert_eq!(p.slave().irr() & 0x08, 0x08, "level IRR stays");
        p.write(0xa0, 0x20);
        p.write(0x20, 0x20);
        // Still asserted: presented again.
        assert_eq!(p.pending_vector(), Some(0x3b));
        p.set_irq(11, false);
        assert_eq!(p.pending_vector(), None);
        // Edge input ignores a held level.
        p.set_irq(9, true);
        p.write(0x4d1, 0x00);
        assert_eq!(p.ack(), Some(0x39));
        p.write(0xa0, 0x20);
        p.write(0x20, 0x20);
        assert_eq!(p.pending_vector(), None, "edge consumed");
    }

    #[test]
    fn read_irr_isr_and_poll() {
        let mut p = VPic::new();
        linux_init(&mut p, false);
        p.write(0x21, 0xff);
        p.set_irq(5, true);
        p.write(0x20, 0x0a); // OCW3: read IRR
        assert_eq!(p.read(0x20), 0x20);
        p.write(0x20, 0x0b); // read ISR
        assert_eq!(p.read(0x20), 0);
        // Poll: masked, so nothing.
        p.write(0x20, 0x0c);
        assert_eq!(p.read(0x20), 0);
        p.write(0x21, 0xdf);
        p.write(0x20, 0x0c);
        assert_eq!(p.read(0x20), 0x85);
        assert_eq!(p.read(0x20), 0x20, "back to ISR reads");
        // Special mask mode lets lower-priority requests through.
        p.set_irq(7, true);
        p.write(0x21, 0x5f);
        assert_eq!(p.pending_vector(), None);
        p.write(0x21, 0x3f); // mask IRQ5 (in service), unmask 7
        p.write(0x20, 0x68); // OCW3: set special mask
        assert_eq!(p.pending_vector(), Some(0x37));
    }

    #[test]
    fn spurious_slave_and_icw1_reset() {
        let mut p = VPic::new();
        linux_init(&mut p, false);
        p.write(0x21, 0);
        p.write(0xa1, 0);
        assert_eq!(p.ack(), None);
        assert_eq!(p.spurious_vector(), 0x37);
        p.set_irq(10, true);
        p.set_irq(0, true);
        p.set_irq(0, false);
        // ICW1 forgets edge requests and the mask.
        p.write(0x20, 0x11);
        assert_eq!(p.master().irr() & 1, 0);
        assert_eq!(p.master().imr(), 0);
        p.write(0x21, 0x20);
        p.write(0x21, 4);
        p.write(0x21, 1);
        assert_eq!(p.master().base(), 0x20);
        // The slave kept its request: it still comes through the cascade.
        assert_eq!(p.pending_vector(), Some(0x3a));
    }

    #[test]
    fn single_mode_skips_icw3() {
        let mut p = VPic::new();
        p.write(0x20, 0x13); // single, ICW4
        p.write(0x21, 0x08);
        p.write(0x21, 0x01); // ICW4, not ICW3
        p.write(0x21, 0xfe); // OCW1
        assert_eq!(p.master().imr(), 0xfe);
        p.set_irq(0, true);
        assert_eq!(p.ack(), Some(0x08));
    }

    #[test]
    fn random_io_never_panics() {
        let mut seed = 0x1234_5678_9abc_def1u64;
        let mut rnd = || {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let ports = [0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, 0x22, 0x0];
        for _ in 0..50 {
            let mut p = VPic::new();
            for _ in 0..2000 {
                let r = rnd();
                let port = ports[(r % 8) as usize];
                match (r >> 8) % 5 {
                    0 | 1 => p.write(port, (r >> 16) as u8),
                    2 => {
                        p.read(port);
                    }
                    3 => p.set_irq((r >> 16) as u8 % 20, r & (1 << 40) != 0),
                    _ => {
                        let v = p.pending_vector();
                        let a = p.ack();
                        assert_eq!(v, a);
                    }
                }
                assert_eq!(p.pending_vector().is_some(), p.has_interrupt());
            }
        }
    }
}
