//! The hypervisor console (`console_io`): `print!`/`println!`, a `log`
//! backend, and line input with echo and editing.
//!
//! Output is formatted into a small buffer and written with as few
//! `CONSOLEIO_write` calls as possible, under a lock so that lines from
//! different contexts do not interleave. Input polls `CONSOLEIO_read`
//! (privileged domains only), yielding the CPU while nothing is there.

#![forbid(unsafe_code)]

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, Ordering};

use crate::line::{Feed, LineEditor};
use crate::xen;

/// Size of the formatting buffer behind `print!`.
pub const PRINT_BUFFER: usize = 256;

/// Serialises console output.
static LOCK: spin::Mutex<()> = spin::Mutex::new(());
/// The vCPU holding [`LOCK`] ([`NO_OWNER`] if none).
static OWNER: AtomicU32 = AtomicU32::new(NO_OWNER);
const NO_OWNER: u32 = u32::MAX;

/// Writes bytes straight to the console, unbuffered and unlocked (errors
/// are dropped: there is nowhere else to report them). An ordinary domain
/// writes to its PV console ring ([`crate::console_ring`]): Xen refuses
/// `CONSOLEIO_write` from domUs.
pub fn write_bytes(bytes: &[u8]) {
    match crate::console_ring::active() {
        Some(r) => crate::console_ring::write(&r, bytes),
        None => {
            let _ = xen::console_write(bytes);
        }
    }
}

/// An unlocked, unbuffered console writer: `core::fmt::Write` over
/// `CONSOLEIO_write`. Use it where taking the lock could deadlock (panic
/// handlers); everywhere else prefer [`print!`](crate::print).
#[derive(Clone, Copy, Debug, Default)]
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(r) = crate::console_ring::active() {
            crate::console_ring::write(&r, s.as_bytes());
            return Ok(());
        }
        xen::console_write(s.as_bytes())
            .map(|_| ())
            .map_err(|_| fmt::Error)
    }
}

/// A `fmt::Write` that collects output in `N` bytes and hands full buffers
/// (and the rest, on [`BufWriter::flush`]) to `sink`.
pub struct BufWriter<const N: usize, F: FnMut(&[u8])> {
    buf: [u8; N],
    len: usize,
    sink: F,
}

impl<const N: usize, F: FnMut(&[u8])> BufWriter<N, F> {
    /// An empty buffer in front of `sink`.
    pub fn new(sink: F) -> Self {
        BufWriter {
            buf: [0; N],
            len: 0,
            sink,
        }
    }

    /// Hands whatever is buffered to the sink.
    pub fn flush(&mut self) {
        if self.len > 0 {
            (self.sink)(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl<const N: usize, F: FnMut(&[u8])> Write for BufWriter<N, F> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut bytes = s.as_bytes();
        while !bytes.is_empty() {
            if self.len == N {
                self.flush();
            }
            let n = bytes.len().min(N - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }
}

/// Backend of [`print!`](crate::print) and [`println!`](crate::println).
#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    // Events are masked while the lock is held, so an event handler on
    // this vCPU cannot spin on it; a trap taken while printing (the lock's
    // owner is this vCPU) prints without it rather than deadlock.
    let _irq = crate::events::IrqGuard::new();
    let me = crate::percpu::current_vcpu();
    let guard = if OWNER.load(Ordering::Acquire) == me {
        None
    } else {
        let g = LOCK.lock();
        OWNER.store(me, Ordering::Release);
        Some(g)
    };
    let mut w = BufWriter::<PRINT_BUFFER, _>::new(write_bytes);
    let _ = w.write_fmt(args);
    w.flush();
    if guard.is_some() {
        OWNER.store(NO_OWNER, Ordering::Release);
    }
}

/// Prints to the hypervisor console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints a line to the hypervisor console.
#[macro_export]
macro_rules! println {
    () => { $crate::console::_print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

// ---------------------------------------------------------------------------
// log backend
// ---------------------------------------------------------------------------

struct ConsoleLogger;

static LOGGER: ConsoleLogger = ConsoleLogger;

impl log::Log for ConsoleLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            _print(format_args!(
                "[{:<5} {}] {}\n",
                record.level(),
                record.target(),
                record.args()
            ));
        }
    }

    fn flush(&self) {}
}

/// Makes `log::info!` and friends print on the console, up to `level`.
/// Fails only if another logger was installed first.
pub fn init_logger(level: log::LevelFilter) -> Result<(), log::SetLoggerError> {
    log::set_logger(&LOGGER)?;
    log::set_max_level(level);
    Ok(())
}

// ---------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------

/// Reads whatever input is pending into `buf` without waiting; 0 if none.
pub fn try_read(buf: &mut [u8]) -> Result<usize, crate::Errno> {
    match crate::console_ring::active() {
        Some(r) => Ok(crate::console_ring::read(&r, buf)),
        None => xen::console_read(buf),
    }
}

/// Waits for input and returns the next byte. Polls `CONSOLEIO_read`,
/// yielding the CPU between polls. Fails if the hypervisor refuses to read
/// (e.g. `-EPERM` for an unprivileged domain).
pub fn read_byte() -> Result<u8, crate::Errno> {
    let mut b = [0u8; 1];
    loop {
        if try_read(&mut b)? == 1 {
            return Ok(b[0]);
        }
        let _ = xen::sched_yield();
    }
}

/// Reads one line into `ed`, echoing and editing as [`crate::line`]
/// describes, and returns it (without the line ending). Input is read one
/// byte per call, so nothing typed after the line ending is lost.
pub fn read_line<const N: usize>(ed: &mut LineEditor<N>) -> Result<&str, crate::Errno> {
    ed.clear();
    loop {
        let b = read_byte()?;
        let fed = ed.feed(b, &mut |e| write_bytes(e));
        if fed == Feed::Line {
            return Ok(ed.line());
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[test]
    fn buf_writer_batches_and_flushes() {
        let mut calls: Vec<Vec<u8>> = Vec::new();
        {
            let mut w = BufWriter::<4, _>::new(|b: &[u8]| calls.push(b.to_vec()));
            let tail = "cdefghij";
            write!(w, "ab{tail}").unwrap();
            w.flush();
            w.flush();
        }
        assert_eq!(calls, [b"abcd".to_vec(), b"efgh".to_vec(), b"ij".to_vec()]);
    }

    #[test]
    fn print_goes_to_console_io_write() {
        use crate::hypercall::mock;
        use std::cell::RefCell;
        use std::rc::Rc;
        let out = Rc::new(RefCell::new(Vec::new()));
        let o = out.clone();
        let _g = mock::install(move |_, a| {
            o.borrow_mut().extend_from_slice(&mock::read(a[2], a[1]));
            0
        });
        crate::println!("x = {}", 42);
        crate::print!("{}", "y");
        assert_eq!(&out.borrow()[..], b"x = 42\ny");
    }

    #[test]
    fn read_line_polls_echoes_and_edits() {
        use crate::abi::hypercall::Hypercall;
        use crate::abi::xen::ConsoleIoOp;
        use crate::hypercall::mock;
        use std::cell::RefCell;
        use std::rc::Rc;
        let input: Rc<RefCell<Vec<&'static [u8]>>> = Rc::new(RefCell::new(std::vec![
            b"",
            b"ecx\x7fho",
            b"",
            b" hi\r\nnext"
        ]));
        let echoed = Rc::new(RefCell::new(Vec::new()));
        let (i, e) = (input.clone(), echoed.clone());
        let _g = mock::install(move |nr, a| {
            if nr == Hypercall::SchedOp as u64 {
                return 0;
            }
            if a[0] == ConsoleIoOp::Write as u64 {
                e.borrow_mut().extend_from_slice(&mock::read(a[2], a[1]));
                return 0;
            }
            let mut q = i.borrow_mut();
            if q.first().is_some_and(|c| c.is_empty()) {
                q.remove(0);
                return 0; // nothing pending this time
            }
            let cur: &'static [u8] = q[0];
            let take = (a[1] as usize).min(cur.len());
            let chunk = &cur[..take];
            q[0] = &cur[take..];
            mock::write(a[2], chunk);
            chunk.len() as i64
        });
        let mut ed = LineEditor::<32>::new();
        assert_eq!(read_line(&mut ed).unwrap(), "echo hi");
        assert_eq!(&echoed.borrow()[..], b"ecx\x08 \x08ho hi\n");
        // Nothing after the line ending was consumed.
        assert_eq!(input.borrow().concat(), b"\nnext");
    }
}
