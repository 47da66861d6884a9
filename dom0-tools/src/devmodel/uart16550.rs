//! A 16550A UART (National Semiconductor PC16550D), as an HVM guest finds
//! one at COM1 (ports 0x3f8..0x400, ISA IRQ 4).
//!
//! **Owns**: the UART's registers, its 16-byte receive FIFO and its
//! interrupt line. Transmitted bytes go straight to a caller-provided
//! [`ByteSink`] (the guest's `xl console` backlog), so the transmitter is
//! always empty: LSR.THRE and LSR.TEMT always read 1. Received bytes are
//! pushed in by the caller ([`Uart16550::receive`]), which keeps what does
//! not fit (flow control instead of overruns).
//! **Trusts**: nothing; every register value a guest writes is accepted
//! and masked to the bits the chip has.
//!
//! Interrupts follow the datasheet's priority (receiver line status,
//! received data, transmitter empty, modem status). The THRE interrupt is
//! raised when ETBEI is enabled or a byte is written, and cleared by
//! reading IIR while it is the one reported (or by disabling ETBEI), as on
//! the chip and in QEMU. Received-data is reported whenever the FIFO
//! holds data (no trigger levels or character timeouts: nothing here
//! keeps time). [`Uart16550::irq_asserted`] is the level of the PC's IRQ
//! line: the chip's INTR gated by MCR.OUT2, and disconnected in loopback
//! mode (the OUT2 pin is forced inactive there), as on PC hardware.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::IoDevice;

/// COM1's base port.
pub const COM1_BASE: u16 = 0x3f8;
/// COM1's ISA IRQ.
pub const COM1_IRQ: u8 = 4;
/// Ports a 16550 decodes.
pub const NR_PORTS: u16 = 8;
/// Receive FIFO depth of the 16550A.
pub const FIFO_LEN: usize = 16;
/// The clock the divisor divides, as baud × 16 (1.8432 MHz / 16).
pub const BASE_BAUD: u32 = 115_200;

/// Register offsets (PC16550D datasheet, Table II).
pub mod reg {
    /// DLAB=0: receiver buffer (read), transmitter holding (write).
    pub const RBR_THR: u8 = 0;
    /// DLAB=0: interrupt enable.
    pub const IER: u8 = 1;
    /// DLAB=1: divisor latch, low byte (at `RBR_THR`).
    pub const DLL: u8 = 0;
    /// DLAB=1: divisor latch, high byte (at `IER`).
    pub const DLM: u8 = 1;
    /// Interrupt identification (read), FIFO control (write).
    pub const IIR_FCR: u8 = 2;
    /// Line control.
    pub const LCR: u8 = 3;
    /// Modem control.
    pub const MCR: u8 = 4;
    /// Line status.
    pub const LSR: u8 = 5;
    /// Modem status.
    pub const MSR: u8 = 6;
    /// Scratch.
    pub const SCR: u8 = 7;
}

/// IER bits.
pub mod ier {
    /// Received data available.
    pub const ERBFI: u8 = 1 << 0;
    /// Transmitter holding register empty.
    pub const ETBEI: u8 = 1 << 1;
    /// Receiver line status.
    pub const ELSI: u8 = 1 << 2;
    /// Modem status.
    pub const EDSSI: u8 = 1 << 3;
    /// The bits the register has.
    pub const MASK: u8 = 0x0f;
}

/// IIR values.
pub mod iir {
    /// No interrupt pending.
    pub const NO_INT: u8 = 0x01;
    /// Modem status.
    pub const MSI: u8 = 0x00;
    /// Transmitter holding register empty.
    pub const THRI: u8 = 0x02;
    /// Received data available.
    pub const RDI: u8 = 0x04;
    /// Receiver line status.
    pub const RLSI: u8 = 0x06;
    /// Bits 6-7: FIFOs enabled (FCR bit 0).
    pub const FIFO_ENABLED: u8 = 0xc0;
}

/// FCR bits.
pub mod fcr {
    /// Enable both FIFOs.
    pub const ENABLE: u8 = 1 << 0;
    /// Clear the receive FIFO.
    pub const CLEAR_RCVR: u8 = 1 << 1;
    /// Clear the transmit FIFO.
    pub const CLEAR_XMIT: u8 = 1 << 2;
    /// Receive trigger level.
    pub const TRIGGER_MASK: u8 = 0xc0;
}

/// LCR bits.
pub mod lcr {
    /// Divisor latch access.
    pub const DLAB: u8 = 1 << 7;
}

/// MCR bits.
pub mod mcr {
    /// Data terminal ready.
    pub const DTR: u8 = 1 << 0;
    /// Request to send.
    pub const RTS: u8 = 1 << 1;
    /// Output 1.
    pub const OUT1: u8 = 1 << 2;
    /// Output 2 (gates the IRQ line on a PC).
    pub const OUT2: u8 = 1 << 3;
    /// Loopback (diagnostic) mode.
    pub const LOOP: u8 = 1 << 4;
    /// The bits the register has.
    pub const MASK: u8 = 0x1f;
}

/// LSR bits.
pub mod lsr {
    /// Data ready.
    pub const DR: u8 = 1 << 0;
    /// Overrun error.
    pub const OE: u8 = 1 << 1;
    /// Transmitter holding register empty.
    pub const THRE: u8 = 1 << 5;
    /// Transmitter empty.
    pub const TEMT: u8 = 1 << 6;
}

/// MSR bits.
pub mod msr {
    /// Delta CTS.
    pub const DCTS: u8 = 1 << 0;
    /// Delta DSR.
    pub const DDSR: u8 = 1 << 1;
    /// Trailing edge of RI.
    pub const TERI: u8 = 1 << 2;
    /// Delta DCD.
    pub const DDCD: u8 = 1 << 3;
    /// Clear to send.
    pub const CTS: u8 = 1 << 4;
    /// Data set ready.
    pub const DSR: u8 = 1 << 5;
    /// Ring indicator.
    pub const RI: u8 = 1 << 6;
    /// Data carrier detect.
    pub const DCD: u8 = 1 << 7;
    /// The delta bits.
    pub const DELTAS: u8 = 0x0f;
}

/// Where transmitted bytes go.
pub trait ByteSink {
    /// Takes one byte the guest wrote to THR.
    fn put(&mut self, byte: u8);
}

impl ByteSink for Vec<u8> {
    fn put(&mut self, byte: u8) {
        self.push(byte);
    }
}

impl<S: ByteSink + ?Sized> ByteSink for &mut S {
    fn put(&mut self, byte: u8) {
        (**self).put(byte);
    }
}

/// One 16550A.
#[derive(Debug)]
pub struct Uart16550<S> {
    sink: S,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    fcr: u8,
    divisor: u16,
    /// Error bits of LSR (cleared by reading it).
    lsr_errors: u8,
    /// MSR delta bits (cleared by reading it).
    msr_deltas: u8,
    thr_pending: bool,
    rx: VecDeque<u8>,
}

impl<S: ByteSink> Uart16550<S> {
    /// A UART in its reset state, transmitting into `sink`. The divisor
    /// starts at 12 (9600 baud), as QEMU's.
    pub fn new(sink: S) -> Self {
        Uart16550 {
            sink,
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            fcr: 0,
            divisor: 12,
            lsr_errors: 0,
            msr_deltas: 0,
            thr_pending: false,
            rx: VecDeque::with_capacity(FIFO_LEN),
        }
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The sink, mutably (to drain what it collected).
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// The divisor latch (DLM:DLL).
    pub fn divisor(&self) -> u16 {
        self.divisor
    }

    /// The baud rate the divisor selects (0 for divisor 0).
    pub fn baud(&self) -> u32 {
        BASE_BAUD.checked_div(u32::from(self.divisor)).unwrap_or(0)
    }

    /// The line control register (word length, stop bits, parity).
    pub fn line_control(&self) -> u8 {
        self.lcr
    }

    fn fifo_enabled(&self) -> bool {
        self.fcr & fcr::ENABLE != 0
    }

    fn loopback(&self) -> bool {
        self.mcr & mcr::LOOP != 0
    }

    /// Bytes the receiver holds at most: the FIFO, or the one RBR.
    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled() {
            FIFO_LEN
        } else {
            1
        }
    }

    /// Room for received bytes now (0 in loopback: the serial input is
    /// disconnected there).
    pub fn rx_room(&self) -> usize {
        if self.loopback() {
            0
        } else {
            self.rx_capacity().saturating_sub(self.rx.len())
        }
    }

    /// Feeds bytes typed at the console to the receiver; returns how many
    /// it took (the caller keeps the rest for later).
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.rx_room());
        self.rx.extend(&bytes[..n]);
        n
    }

    /// The modem status lines: wired to MCR in loopback, otherwise a
    /// connected terminal (CTS, DSR, DCD), as QEMU's.
    fn msr_lines(mcr_value: u8) -> u8 {
        if mcr_value & mcr::LOOP != 0 {
            let mut v = 0;
            if mcr_value & mcr::RTS != 0 {
                v |= msr::CTS;
            }
            if mcr_value & mcr::DTR != 0 {
                v |= msr::DSR;
            }
            if mcr_value & mcr::OUT1 != 0 {
                v |= msr::RI;
            }
            if mcr_value & mcr::OUT2 != 0 {
                v |= msr::DCD;
            }
            v
        } else {
            msr::CTS | msr::DSR | msr::DCD
        }
    }

    fn lsr(&self) -> u8 {
        let mut v = lsr::THRE | lsr::TEMT | self.lsr_errors;
        if !self.rx.is_empty() {
            v |= lsr::DR;
        }
        v
    }

    /// The highest-priority pending interrupt's IIR id, if any.
    fn pending(&self) -> Option<u8> {
        if self.ier & ier::ELSI != 0 && self.lsr_errors != 0 {
            Some(iir::RLSI)
        } else if self.ier & ier::ERBFI != 0 && !self.rx.is_empty() {
            Some(iir::RDI)
        } else if self.ier & ier::ETBEI != 0 && self.thr_pending {
            Some(iir::THRI)
        } else if self.ier & ier::EDSSI != 0 && self.msr_deltas != 0 {
            Some(iir::MSI)
        } else {
            None
        }
    }

    /// The level of the IRQ line: an interrupt is pending, MCR.OUT2 is
    /// set and the UART is not in loopback.
    pub fn irq_asserted(&self) -> bool {
        self.pending().is_some() && self.mcr & mcr::OUT2 != 0 && !self.loopback()
    }

    /// A guest read of register `r` (0..8; others read 0xff).
    pub fn read_reg(&mut self, r: u8) -> u8 {
        let dlab = self.lcr & lcr::DLAB != 0;
        match r {
            reg::DLL if dlab => self.divisor as u8,
            reg::DLM if dlab => (self.divisor >> 8) as u8,
            reg::RBR_THR => self.rx.pop_front().unwrap_or(0),
            reg::IER => self.ier,
            reg::IIR_FCR => {
                let fifo = if self.fifo_enabled() {
                    iir::FIFO_ENABLED
                } else {
                    0
                };
                match self.pending() {
                    Some(id) => {
                        if id == iir::THRI {
                            self.thr_pending = false;
                        }
                        id | fifo
                    }
                    None => iir::NO_INT | fifo,
                }
            }
            reg::LCR => self.lcr,
            reg::MCR => self.mcr,
            reg::LSR => {
                let v = self.lsr();
                self.lsr_errors = 0;
                v
            }
            reg::MSR => {
                let v = Self::msr_lines(self.mcr) | self.msr_deltas;
                self.msr_deltas = 0;
                v
            }
            reg::SCR => self.scr,
            _ => 0xff,
        }
    }

    /// A guest write of `v` to register `r` (0..8; others are ignored).
    pub fn write_reg(&mut self, r: u8, v: u8) {
        let dlab = self.lcr & lcr::DLAB != 0;
        match r {
            reg::DLL if dlab => self.divisor = (self.divisor & 0xff00) | u16::from(v),
            reg::DLM if dlab => self.divisor = (self.divisor & 0x00ff) | (u16::from(v) << 8),
            reg::RBR_THR => {
                if self.loopback() {
                    if self.rx.len() < self.rx_capacity() {
                        self.rx.push_back(v);
                    } else {
                        self.lsr_errors |= lsr::OE;
                    }
                } else {
                    self.sink.put(v);
                }
                // Sent at once: the holding register is empty again.
                self.thr_pending = true;
            }
            reg::IER => {
                let changed = (self.ier ^ v) & ier::ETBEI;
                self.ier = v & ier::MASK;
                if changed != 0 {
                    // THR is always empty: enabling ETBEI raises THRE.
                    self.thr_pending = self.ier & ier::ETBEI != 0;
                }
            }
            reg::IIR_FCR => {
                if (self.fcr ^ v) & fcr::ENABLE != 0 {
                    // Changing FCR0 resets both FIFOs.
                    self.rx.clear();
                }
                if v & fcr::CLEAR_RCVR != 0 {
                    self.rx.clear();
                }
                self.fcr = v & (fcr::ENABLE | fcr::TRIGGER_MASK);
            }
            reg::LCR => self.lcr = v,
            reg::MCR => {
                let new = v & mcr::MASK;
                let (old_lines, new_lines) = (Self::msr_lines(self.mcr), Self::msr_lines(new));
                let changed = old_lines ^ new_lines;
                if changed & msr::CTS != 0 {
                    self.msr_deltas |= msr::DCTS;
                }
                if changed & msr::DSR != 0 {
                    self.msr_deltas |= msr::DDSR;
                }
                if old_lines & msr::RI != 0 && new_lines & msr::RI == 0 {
                    self.msr_deltas |= msr::TERI;
                }
                if changed & msr::DCD != 0 {
                    self.msr_deltas |= msr::DDCD;
                }
                self.mcr = new;
            }
            reg::SCR => self.scr = v,
            // LSR and MSR are read-only (factory test writes ignored).
            _ => {}
        }
    }
}

impl<S: ByteSink> IoDevice for Uart16550<S> {
    fn read(&mut self, offset: u64, _size: u8) -> u64 {
        match u8::try_from(offset) {
            Ok(r) if r < NR_PORTS as u8 => u64::from(self.read_reg(r)),
            _ => 0xff,
        }
    }

    fn write(&mut self, offset: u64, _size: u8, value: u64) {
        if let Ok(r) = u8::try_from(offset) {
            self.write_reg(r, value as u8);
        }
    }

    fn max_access(&self) -> u8 {
        1
    }
}

/// Bytes of a UART's saved state without its receive FIFO.
pub const STATE_FIXED: usize = 11;

impl<S: ByteSink> Uart16550<S> {
    /// The registers and the receive FIFO as bytes (the device model's
    /// part of a save image): IER, LCR, MCR, SCR, FCR, the divisor (LE),
    /// the LSR error and MSR delta bits, THRE pending, the FIFO's length
    /// and bytes.
    pub fn save(&self, out: &mut alloc::vec::Vec<u8>) {
        out.extend_from_slice(&[self.ier, self.lcr, self.mcr, self.scr, self.fcr]);
        out.extend_from_slice(&self.divisor.to_le_bytes());
        out.extend_from_slice(&[
            self.lsr_errors,
            self.msr_deltas,
            u8::from(self.thr_pending),
            self.rx.len() as u8,
        ]);
        out.extend(self.rx.iter());
    }

    /// [`Self::save`] into a new vector.
    pub fn save_to_vec(&self) -> alloc::vec::Vec<u8> {
        let mut v = alloc::vec::Vec::new();
        self.save(&mut v);
        v
    }

    /// Loads what [`Self::save`] wrote; returns the bytes used. Refuses
    /// (changing nothing) a short buffer, a flag that is not 0/1, or more
    /// received bytes than the FIFO holds.
    pub fn load(&mut self, b: &[u8]) -> Option<usize> {
        let fixed = b.get(..STATE_FIXED)?;
        let n = usize::from(fixed[10]);
        if fixed[9] > 1 || n > FIFO_LEN {
            return None;
        }
        let rx = b.get(STATE_FIXED..STATE_FIXED + n)?;
        self.ier = fixed[0] & 0x0f;
        self.lcr = fixed[1];
        self.mcr = fixed[2] & 0x1f;
        self.scr = fixed[3];
        self.fcr = fixed[4];
        self.divisor = u16::from_le_bytes([fixed[5], fixed[6]]);
        self.lsr_errors = fixed[7];
        self.msr_deltas = fixed[8];
        self.thr_pending = fixed[9] == 1;
        self.rx.clear();
        self.rx.extend(rx.iter().copied());
        Some(STATE_FIXED + n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn uart() -> Uart16550<Vec<u8>> {
        Uart16550::new(Vec::new())
    }

    /// What a bare-metal kernel's (and Linux's `early_serial_init`)
    /// serial setup does: interrupts off, 115200 8N1 through the divisor
    /// latch, FIFOs on and cleared, DTR|RTS|OUT2.
    fn guest_init(u: &mut Uart16550<Vec<u8>>) {
        u.write_reg(reg::IER, 0);
        u.write_reg(reg::LCR, lcr::DLAB);
        u.write_reg(reg::DLL, 1);
        u.write_reg(reg::DLM, 0);
        u.write_reg(reg::LCR, 0x03);
        u.write_reg(reg::IIR_FCR, 0xc7);
        u.write_reg(reg::MCR, mcr::DTR | mcr::RTS | mcr::OUT2);
    }

    /// Polled output as a kernel's `putc`: wait for THRE, write THR.
    fn puts(u: &mut Uart16550<Vec<u8>>, s: &[u8]) {
        for &b in s {
            let mut spins = 0;
            while u.read_reg(reg::LSR) & lsr::THRE == 0 {
                spins += 1;
                assert!(spins < 10, "THRE never set");
            }
            u.write_reg(reg::RBR_THR, b);
        }
    }

    #[test]
    fn init_then_print_reaches_the_sink() {
        let mut u = uart();
        guest_init(&mut u);
        assert_eq!(u.divisor(), 1);
        assert_eq!(u.baud(), 115_200);
        assert_eq!(u.line_control(), 0x03);
        puts(&mut u, b"hello from hvm\n");
        assert_eq!(u.sink(), b"hello from hvm\n");
        // FIFOs on: IIR bits 6-7, no interrupt (IER 0).
        assert_eq!(u.read_reg(reg::IIR_FCR), iir::FIFO_ENABLED | iir::NO_INT);
        assert!(!u.irq_asserted());
        let l = u.read_reg(reg::LSR);
        assert_eq!(l & (lsr::THRE | lsr::TEMT), lsr::THRE | lsr::TEMT);
        assert_eq!(l & lsr::DR, 0);
    }

    #[test]
    fn fifo_disabled_iir_has_no_fifo_bits() {
        let mut u = uart();
        assert_eq!(u.read_reg(reg::IIR_FCR), iir::NO_INT);
        u.write_reg(reg::IIR_FCR, fcr::ENABLE);
        assert_eq!(u.read_reg(reg::IIR_FCR), 0xc1);
        u.write_reg(reg::IIR_FCR, 0);
        assert_eq!(u.read_reg(reg::IIR_FCR), iir::NO_INT);
    }

    #[test]
    fn divisor_latch_reads_back_and_hides_thr_ier() {
        let mut u = uart();
        u.write_reg(reg::IER, 0x05);
        u.write_reg(reg::LCR, lcr::DLAB | 0x03);
        u.write_reg(reg::DLL, 0x34);
        u.write_reg(reg::DLM, 0x12);
        assert_eq!(u.read_reg(reg::DLL), 0x34);
        assert_eq!(u.read_reg(reg::DLM), 0x12);
        assert_eq!(u.divisor(), 0x1234);
        // Nothing went to the sink, IER untouched.
        assert!(u.sink().is_empty());
        u.write_reg(reg::LCR, 0x03);
        assert_eq!(u.read_reg(reg::IER), 0x05);
        assert_eq!(u.divisor(), 0x1234);
        assert_eq!(u.baud(), 115_200 / 0x1234);
    }

    #[test]
    fn scratch_register_holds_a_byte() {
        let mut u = uart();
        for v in [0x00, 0x55, 0xaa, 0xff] {
            u.write_reg(reg::SCR, v);
            assert_eq!(u.read_reg(reg::SCR), v);
        }
        // Unknown register offsets read as a floating bus.
        assert_eq!(u.read(8, 1), 0xff);
    }

    #[test]
    fn receive_sets_dr_and_reads_in_order() {
        let mut u = uart();
        guest_init(&mut u);
        assert_eq!(u.receive(b"ab"), 2);
        assert_ne!(u.read_reg(reg::LSR) & lsr::DR, 0);
        assert_eq!(u.read_reg(reg::RBR_THR), b'a');
        assert_eq!(u.read_reg(reg::RBR_THR), b'b');
        assert_eq!(u.read_reg(reg::LSR) & lsr::DR, 0);
        // Empty RBR reads 0.
        assert_eq!(u.read_reg(reg::RBR_THR), 0);
    }

    #[test]
    fn receive_takes_only_what_fits() {
        let mut u = uart();
        // FIFO off: one byte.
        assert_eq!(u.receive(b"xyz"), 1);
        assert_eq!(u.receive(b"yz"), 0);
        u.read_reg(reg::RBR_THR);
        u.write_reg(reg::IIR_FCR, fcr::ENABLE);
        let many = vec![b'q'; 40];
        assert_eq!(u.receive(&many), FIFO_LEN);
        assert_eq!(u.rx_room(), 0);
        // Clearing the receive FIFO empties it.
        u.write_reg(reg::IIR_FCR, fcr::ENABLE | fcr::CLEAR_RCVR);
        assert_eq!(u.read_reg(reg::LSR) & lsr::DR, 0);
        assert_eq!(u.rx_room(), FIFO_LEN);
        // No overrun is ever reported for host input.
        assert_eq!(u.read_reg(reg::LSR) & lsr::OE, 0);
    }

    #[test]
    fn loopback_echoes_and_wires_msr_to_mcr() {
        let mut u = uart();
        u.write_reg(reg::IIR_FCR, fcr::ENABLE);
        u.write_reg(reg::MCR, mcr::LOOP);
        // Lines went from the terminal's CTS|DSR|DCD to all off: deltas.
        let m = u.read_reg(reg::MSR);
        assert_eq!(m & 0xf0, 0);
        assert_eq!(m & msr::DELTAS, msr::DCTS | msr::DDSR | msr::DDCD);
        assert_eq!(u.read_reg(reg::MSR) & msr::DELTAS, 0, "read clears deltas");
        u.write_reg(
            reg::MCR,
            mcr::LOOP | mcr::RTS | mcr::DTR | mcr::OUT1 | mcr::OUT2,
        );
        let m = u.read_reg(reg::MSR);
        assert_eq!(m & 0xf0, msr::CTS | msr::DSR | msr::RI | msr::DCD);
        u.write_reg(reg::MCR, mcr::LOOP);
        assert_ne!(u.read_reg(reg::MSR) & msr::TERI, 0, "RI fell");
        // Transmitted bytes come back, not to the sink.
        u.write_reg(reg::RBR_THR, 0x5a);
        assert!(u.sink().is_empty());
        assert_ne!(u.read_reg(reg::LSR) & lsr::DR, 0);
        assert_eq!(u.read_reg(reg::RBR_THR), 0x5a);
        // Host input is not connected in loopback.
        assert_eq!(u.receive(b"z"), 0);
        // Overflowing the FIFO in loopback is an overrun, cleared by
        // reading LSR.
        for i in 0..=FIFO_LEN as u8 {
            u.write_reg(reg::RBR_THR, i);
        }
        assert_ne!(u.read_reg(reg::LSR) & lsr::OE, 0);
        assert_eq!(u.read_reg(reg::LSR) & lsr::OE, 0);
        // Leaving loopback: output goes to the sink again.
        u.write_reg(reg::MCR, 0);
        u.write_reg(reg::RBR_THR, b'!');
        assert_eq!(u.sink(), b"!");
        // Not in loopback: a connected terminal.
        assert_eq!(u.read_reg(reg::MSR) & 0xf0, msr::CTS | msr::DSR | msr::DCD);
    }

    #[test]
    fn thre_interrupt_raised_on_enable_cleared_by_iir_read() {
        let mut u = uart();
        guest_init(&mut u);
        assert!(!u.irq_asserted());
        u.write_reg(reg::IER, ier::ETBEI);
        assert!(u.irq_asserted());
        assert_eq!(u.read_reg(reg::IIR_FCR), iir::FIFO_ENABLED | iir::THRI);
        assert!(!u.irq_asserted(), "reading IIR clears THRE");
        assert_eq!(u.read_reg(reg::IIR_FCR), iir::FIFO_ENABLED | iir::NO_INT);
        // Writing a byte empties THR again at once: THRE interrupt.
        u.write_reg(reg::RBR_THR, b'x');
        assert!(u.irq_asserted());
        // Disabling ETBEI drops it.
        u.write_reg(reg::IER, 0);
        assert!(!u.irq_asserted());
        // Linux 8250's THRE test: enable, read IIR, disable, enable, read
        // IIR must show THRI again (else UART_BUG_THRE).
        u.write_reg(reg::IER, ier::ETBEI);
        assert_eq!(u.read_reg(reg::IIR_FCR) & 0x0f, iir::THRI);
        u.write_reg(reg::IER, 0);
        u.write_reg(reg::IER, ier::ETBEI);
        assert_eq!(u.read_reg(reg::IIR_FCR) & 0x0f, iir::THRI);
    }

    #[test]
    fn rx_interrupt_has_priority_and_follows_data() {
        let mut u = uart();
        guest_init(&mut u);
        u.write_reg(reg::IER, ier::ERBFI | ier::ETBEI);
        u.receive(b"k");
        assert!(u.irq_asserted());
        assert_eq!(u.read_reg(reg::IIR_FCR) & 0x0f, iir::RDI);
        // Reading IIR does not clear RDI: only reading the data does.
        assert_eq!(u.read_reg(reg::IIR_FCR) & 0x0f, iir::RDI);
        assert_eq!(u.read_reg(reg::RBR_THR), b'k');
        // Then THRE, still pending underneath.
        assert_eq!(u.read_reg(reg::IIR_FCR) & 0x0f, iir::THRI);
        assert!(!u.irq_asserted());
    }

    #[test]
    fn irq_line_gated_by_out2() {
        let mut u = uart();
        u.write_reg(reg::IER, ier::ERBFI);
        u.receive(b"k");
        // Pending in IIR, but OUT2 is clear: the PC's line stays low.
        assert!(!u.irq_asserted());
        u.write_reg(reg::MCR, mcr::OUT2);
        assert!(u.irq_asserted());
        u.write_reg(reg::MCR, mcr::OUT2 | mcr::LOOP);
        assert!(!u.irq_asserted(), "loopback disconnects the line");
    }

    #[test]
    fn modem_status_interrupt() {
        let mut u = uart();
        u.write_reg(reg::IER, ier::EDSSI);
        assert_eq!(u.read_reg(reg::IIR_FCR), iir::NO_INT);
        u.write_reg(reg::MCR, mcr::LOOP | mcr::RTS);
        assert_eq!(u.read_reg(reg::IIR_FCR), iir::MSI);
        u.read_reg(reg::MSR);
        assert_eq!(u.read_reg(reg::IIR_FCR), iir::NO_INT);
    }

    /// Any sequence of register accesses keeps the chip's invariants.
    #[test]
    fn arbitrary_register_traffic_keeps_invariants() {
        let mut u = uart();
        let mut rng = crate::devmodel::testmem::Rng(0x2545_f491_4f6c_dd1d);
        for i in 0..50_000u32 {
            let st = rng.next();
            let r = (st % 9) as u8;
            if st & (1 << 40) != 0 {
                u.write_reg(r, (st >> 16) as u8);
            } else {
                u.read_reg(r);
            }
            if i % 7 == 0 {
                u.receive(b"in");
            }
            assert!(u.rx.len() <= FIFO_LEN);
            assert_eq!(u.ier & !ier::MASK, 0);
            assert_eq!(u.mcr & !mcr::MASK, 0);
            let l = u.lsr();
            assert_eq!(l & (lsr::THRE | lsr::TEMT), lsr::THRE | lsr::TEMT);
            assert_eq!(l & lsr::DR != 0, !u.rx.is_empty());
            if u.irq_asserted() {
                assert!(u.mcr & mcr::OUT2 != 0 && u.mcr & mcr::LOOP == 0);
            }
        }
    }

    #[test]
    fn io_device_offsets() {
        let mut u = uart();
        u.write(u64::from(reg::SCR), 1, 0x1a5);
        assert_eq!(u.read(u64::from(reg::SCR), 1), 0xa5);
        assert_eq!(u.read(u64::MAX, 1), 0xff);
        u.write(u64::MAX, 1, 0);
        assert_eq!(u.max_access(), 1);
    }
}
