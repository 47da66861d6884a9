//! COM1, a 16550 UART at I/O port 0x3f8, driven the ordinary way: 115200
//! baud 8N1 with FIFOs, and LSR.THRE polled before every byte. All console
//! output goes here, under one lock shared by both CPUs.

use super::cpu::{inb, outb};
use core::fmt::{self, Write};
use spin::Mutex;

/// COM1's base port.
pub const COM1: u16 = 0x3f8;

// Register offsets (PC16550D data sheet, Table II).
const THR: u16 = 0; // transmit holding (DLAB = 0)
const DLL: u16 = 0; // divisor latch low (DLAB = 1)
const IER: u16 = 1; // interrupt enable (DLAB = 0)
const DLM: u16 = 1; // divisor latch high (DLAB = 1)
const FCR: u16 = 2; // FIFO control
const LCR: u16 = 3; // line control
const MCR: u16 = 4; // modem control
const LSR: u16 = 5; // line status

const LCR_DLAB: u8 = 0x80;
const LCR_8N1: u8 = 0x03;
/// FIFO enable, clear both FIFOs, 14-byte trigger.
const FCR_ENABLE_CLEAR: u8 = 0xc7;
/// DTR, RTS, OUT2.
const MCR_DTR_RTS_OUT2: u8 = 0x0b;
/// Transmit holding register empty.
const LSR_THRE: u8 = 0x20;
/// 115200 baud from the 1.8432 MHz clock.
const DIVISOR_115200: u16 = 1;
/// Polls of LSR before a byte is sent anyway (a missing or stuck UART must
/// not hang the kernel).
const THRE_POLLS: u32 = 1_000_000;

pub struct Serial {
    base: u16,
}

impl Serial {
    pub const fn new(base: u16) -> Self {
        Serial { base }
    }

    pub fn init(&mut self) {
        let b = self.base;
        outb(b + IER, 0);
        outb(b + LCR, LCR_DLAB);
        outb(b + DLL, DIVISOR_115200 as u8);
        outb(b + DLM, (DIVISOR_115200 >> 8) as u8);
        outb(b + LCR, LCR_8N1);
        outb(b + FCR, FCR_ENABLE_CLEAR);
        outb(b + MCR, MCR_DTR_RTS_OUT2);
    }

    pub fn put(&mut self, byte: u8) {
        for _ in 0..THRE_POLLS {
            if inb(self.base + LSR) & LSR_THRE != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        outb(self.base + THR, byte);
    }
}

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}

pub static COM1_PORT: Mutex<Serial> = Mutex::new(Serial::new(COM1));

pub fn init() {
    COM1_PORT.lock().init();
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let _ = COM1_PORT.lock().write_fmt(args);
}

/// Prints from a fault handler: takes the console even if the interrupted
/// code held its lock (it will never run again).
pub fn emergency(args: fmt::Arguments<'_>) {
    if COM1_PORT.is_locked() {
        // SAFETY: the holder was interrupted by a fatal fault on this or
        // another CPU and the machine stops after this message; a garbled
        // line is the worst outcome.
        unsafe { COM1_PORT.force_unlock() };
    }
    _print(args);
}

/// A `fmt::Write` for [`crate::Report`]: each write takes the lock.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        COM1_PORT.lock().write_str(s)
    }

    fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> fmt::Result {
        COM1_PORT.lock().write_fmt(args)
    }
}

#[macro_export]
macro_rules! print {
    ($($t:tt)*) => { $crate::metal::serial::_print(format_args!($($t)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($t:tt)*) => { $crate::metal::serial::_print(format_args!("{}\n", format_args!($($t)*))) };
}
