//! The hypervisor console: COM1 output, the `log` backend, the console
//! history ring (for `xl dmesg` later) and buffered serial input for Dom0.
//!
//! Owns the UART. Trusts nothing it prints: guest bytes are filtered to
//! printable ASCII before they reach the terminal.

use crate::arch::x86_64::serial::{Uart, COM1};
use core::fmt::{self, Write};
use spin::Mutex;
use xen_core::console_switch::{InputSwitch, Route};

/// Bytes kept of console history.
const HISTORY_BYTES: usize = 64 * 1024;
/// Bytes of serial input buffered for Dom0's `console_io` read.
const INPUT_BYTES: usize = 1024;
/// Debug keys buffered until CPU 0's tick handles them.
const KEY_BYTES: usize = 16;

struct Console {
    uart: Uart,
    history: [u8; HISTORY_BYTES],
    /// Bytes ever written to `history` (Xen's `conringp`); the ring holds
    /// the last HISTORY_BYTES of them.
    history_len: usize,
    /// Where `xl dmesg -c` last cleared (Xen's `conringc`).
    history_cleared: usize,
    input: [u8; INPUT_BYTES],
    input_head: usize,
    input_len: usize,
    at_line_start: bool,
    /// Who has the serial input (triple CTRL-a switches).
    switch: InputSwitch,
    /// Debug keys typed while the hypervisor had the input.
    keys: [u8; KEY_BYTES],
    keys_len: usize,
}

static CONSOLE: Mutex<Console> = Mutex::new(Console {
    uart: Uart::new(COM1),
    history: [0; HISTORY_BYTES],
    history_len: 0,
    history_cleared: 0,
    input: [0; INPUT_BYTES],
    input_head: 0,
    input_len: 0,
    at_line_start: true,
    switch: InputSwitch::new(),
    keys: [0; KEY_BYTES],
    keys_len: 0,
});

impl Console {
    fn raw_byte(&mut self, b: u8) {
        if b == b'\n' {
            self.uart.put(b'\r');
        }
        self.uart.put(b);
        self.history[self.history_len % HISTORY_BYTES] = b;
        self.history_len = self.history_len.wrapping_add(1);
        self.at_line_start = b == b'\n';
    }

    fn poll_input(&mut self) {
        while let Some(b) = self.uart.try_get() {
            let mut sw = self.switch;
            sw.feed(b, &mut |r| self.route(r));
            self.switch = sw;
        }
    }

    fn route(&mut self, r: Route) {
        match r {
            Route::Guest(b) => {
                if self.input_len < INPUT_BYTES {
                    let tail = (self.input_head + self.input_len) % INPUT_BYTES;
                    self.input[tail] = b;
                    self.input_len += 1;
                }
            }
            Route::Xen(k) => {
                if self.keys_len < KEY_BYTES {
                    self.keys[self.keys_len] = k;
                    self.keys_len += 1;
                }
            }
            Route::Switched(to_xen) => {
                let who = if to_xen { "Xen" } else { "DOM0" };
                if !self.at_line_start {
                    let _ = self.write_str("\n");
                }
                let _ = writeln!(
                    self,
                    "(XEN) *** Serial input to {who} (type 'CTRL-a' three times to switch input)"
                );
            }
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            self.raw_byte(b);
        }
        Ok(())
    }
}

/// Sets up COM1.
/// XEN_SYSCTL_readconsole: up to `max` bytes of console history, read
/// from `*index` if `incremental`, else from the last clear; sets `*index`
/// to where the next incremental read starts. `clear` forgets everything
/// up to now (`xl dmesg -c`). The bytes are copied out under the console
/// lock and handed to the guest after it is dropped (a guest copy takes
/// the frame table's lock, which may be held by a CPU that is logging).
pub fn read_history(
    index: &mut u32,
    incremental: bool,
    clear: bool,
    max: usize,
) -> alloc::vec::Vec<u8> {
    with_console(|c| {
        let end = c.history_len;
        let oldest = end.saturating_sub(HISTORY_BYTES).max(c.history_cleared);
        let mut start = if incremental {
            // Indexes are the low 32 bits of the byte count, as Xen's.
            let base = end & !0xffff_ffff;
            let want = base | *index as usize;
            let want = if want > end {
                want.saturating_sub(1 << 32)
            } else {
                want
            };
            want.max(oldest)
        } else {
            oldest
        };
        if end - start > max {
            start = end - max;
        }
        let out: alloc::vec::Vec<u8> = (start..end).map(|i| c.history[i % HISTORY_BYTES]).collect();
        *index = end as u32;
        if clear {
            c.history_cleared = end;
        }
        out
    })
}

pub fn init() {
    CONSOLE.lock().uart.init();
}

/// Runs `f` with the console locked. If another CPU died holding the lock
/// (we are printing a crash dump), take it anyway after a while: a garbled
/// line beats a silent hang.
fn with_console<R>(f: impl FnOnce(&mut Console) -> R) -> R {
    for _ in 0..10_000_000u32 {
        if let Some(mut c) = CONSOLE.try_lock() {
            return f(&mut c);
        }
        core::hint::spin_loop();
    }
    // SAFETY: only reached when the lock holder is presumed dead (a fatal
    // path on another CPU); forcing the lock risks interleaved output, not
    // memory unsafety of the console state, whose indexes stay in bounds.
    unsafe { CONSOLE.force_unlock() };
    f(&mut CONSOLE.lock())
}

/// Prints hypervisor text as is.
pub fn print_fmt(args: fmt::Arguments) {
    with_console(|c| {
        let _ = c.write_fmt(args);
    });
}

/// Prints bytes a guest wrote. The hardware domain's bytes go out as they
/// are (Xen does the same: Dom0 owns the console); any other domain's lines
/// are prefixed with `(d<domid>) ` and non-printable bytes become '?'.
pub fn guest_write(domid: u16, hardware_domain: bool, bytes: &[u8], at_line_start: &mut bool) {
    with_console(|c| {
        for &b in bytes {
            if hardware_domain {
                c.raw_byte(b);
                continue;
            }
            if *at_line_start && b != b'\n' {
                let _ = write!(c, "(d{domid}) ");
                *at_line_start = false;
            }
            match b {
                b'\n' => {
                    c.raw_byte(b'\n');
                    *at_line_start = true;
                }
                b'\r' => {}
                b'\t' | 0x20..=0x7e => c.raw_byte(b),
                _ => c.raw_byte(b'?'),
            }
        }
    });
}

/// Moves serial input that arrived into the buffer, from CPU 0's tick;
/// true if new bytes were buffered (the caller raises Dom0's
/// `VIRQ_CONSOLE`, as Xen's `serial_rx` does). Skips the poll if another
/// CPU is printing: the next tick picks the bytes up.
pub fn poll_input() -> bool {
    let Some(mut c) = CONSOLE.try_lock() else {
        return false;
    };
    let before = c.input_len;
    c.poll_input();
    c.input_len != before
}

/// Takes the debug keys typed since the last call.
pub fn take_keys(out: &mut [u8; KEY_BYTES]) -> usize {
    with_console(|c| {
        let n = c.keys_len;
        out[..n].copy_from_slice(&c.keys[..n]);
        c.keys_len = 0;
        n
    })
}

/// Queues debug keys from the toolstack (`XEN_SYSCTL_debug_keys`), as if
/// typed after CTRL-A: handled with the next event delivery. Returns how
/// many fit (the rest are dropped, as keys typed into a full buffer).
pub fn queue_keys(keys: &[u8]) -> usize {
    with_console(|c| {
        let n = keys.len().min(KEY_BYTES - c.keys_len);
        let at = c.keys_len;
        c.keys[at..at + n].copy_from_slice(&keys[..n]);
        c.keys_len += n;
        n
    })
}

/// Size of the debug-key buffer [`take_keys`] fills.
pub const KEYS: usize = KEY_BYTES;

/// Takes up to `buf.len()` bytes of buffered serial input.
pub fn read_input(buf: &mut [u8]) -> usize {
    with_console(|c| {
        c.poll_input();
        let n = buf.len().min(c.input_len);
        for slot in buf.iter_mut().take(n) {
            *slot = c.input[c.input_head];
            c.input_head = (c.input_head + 1) % INPUT_BYTES;
        }
        c.input_len -= n;
        n
    })
}

/// `print!` for the hypervisor console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print_fmt(format_args!($($arg)*)) };
}

/// `println!` for the hypervisor console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::print_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

struct XenLogger;

static LOGGER: XenLogger = XenLogger;

impl log::Log for XenLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let us = crate::time::now_us();
        let tag = match r.level() {
            log::Level::Error => "*** ",
            log::Level::Warn => "WARNING: ",
            _ => "",
        };
        print_fmt(format_args!(
            "(XEN) [{:4}.{:06}] {}{}\n",
            us / 1_000_000,
            us % 1_000_000,
            tag,
            r.args()
        ));
    }

    fn flush(&self) {}
}

/// Installs the `log` backend at `level`.
pub fn init_log(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
