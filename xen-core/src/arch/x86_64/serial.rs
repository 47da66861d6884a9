//! The 16550 UART on COM1: xen-core's console hardware.
//!
//! Owns ports 0x3f8..0x3ff. Polled transmit and receive; no interrupts yet.

use super::instr::{inb, outb};

/// COM1's base I/O port.
pub const COM1: u16 = 0x3f8;

// Register offsets from the base (16550 datasheet).
const DATA: u16 = 0;
const INT_ENABLE: u16 = 1;
const FIFO_CTRL: u16 = 2;
const LINE_CTRL: u16 = 3;
const MODEM_CTRL: u16 = 4;
const LINE_STATUS: u16 = 5;
const LSR_DATA_READY: u8 = 1 << 0;
const LSR_THR_EMPTY: u8 = 1 << 5;
const LCR_DLAB: u8 = 1 << 7;
const LCR_8N1: u8 = 0x03;
/// 115200 baud: divisor 1 of the 1.8432 MHz / 16 clock.
const DIVISOR_115200: u8 = 1;

/// A polled 16550 UART.
pub struct Uart {
    base: u16,
}

impl Uart {
    /// The UART at `base`, not yet initialised.
    pub const fn new(base: u16) -> Self {
        Uart { base }
    }

    /// Programs 115200 8N1 with FIFOs on.
    pub fn init(&self) {
        outb(self.base + INT_ENABLE, 0);
        outb(self.base + LINE_CTRL, LCR_DLAB);
        outb(self.base + DATA, DIVISOR_115200);
        outb(self.base + INT_ENABLE, 0);
        outb(self.base + LINE_CTRL, LCR_8N1);
        outb(self.base + FIFO_CTRL, 0xc7);
        outb(self.base + MODEM_CTRL, 0x03);
    }

    /// Sends one byte, waiting for the transmitter.
    pub fn put(&self, b: u8) {
        let mut spins = 0u32;
        while inb(self.base + LINE_STATUS) & LSR_THR_EMPTY == 0 && spins < 100_000 {
            spins += 1;
            core::hint::spin_loop();
        }
        outb(self.base + DATA, b);
    }

    /// Receives one byte if one is waiting.
    pub fn try_get(&self) -> Option<u8> {
        if inb(self.base + LINE_STATUS) & LSR_DATA_READY != 0 {
            Some(inb(self.base + DATA))
        } else {
            None
        }
    }
}
