//! `console_io`: a domain's direct line to the hypervisor console (Xen lets
//! Dom0 use it; others get -EPERM).

use super::Call;
use crate::domain::{copy_from_guest, copy_to_guest};
use hypercall_abi::errno::Errno;
use hypercall_abi::xen::ConsoleIoOp;

/// Bytes copied per chunk of a write.
const CHUNK: usize = 128;

#[inline(never)]
pub fn console_io(c: &mut Call) -> Result<i64, Errno> {
    if !c.dom.is_privileged {
        return Err(Errno::EPERM);
    }
    let [cmd, count, buffer, ..] = c.args();
    // Xen takes the count as an `unsigned int`.
    let count = count as u32;
    // Xen's `cmd` is an `int`.
    match ConsoleIoOp::from_raw(u64::from(cmd as u32)).ok_or(Errno::ENOSYS)? {
        ConsoleIoOp::Write => {
            let mut kbuf = [0u8; CHUNK];
            let mut off = 0u64;
            while off < u64::from(count) {
                let n = (u64::from(count) - off).min(CHUNK as u64) as usize;
                copy_from_guest(c.cr3, buffer.wrapping_add(off), &mut kbuf[..n])?;
                if !c.dom.console_written {
                    c.dom.console_written = true;
                    let us = crate::time::now_us();
                    log::info!(
                        "Dom0 first console line after {}.{:03} ms (TSC)",
                        us / 1000,
                        us % 1000
                    );
                }
                crate::console::guest_write(
                    c.dom.domid,
                    c.dom.is_privileged,
                    &kbuf[..n],
                    &mut c.dom.console_at_line_start,
                );
                off += n as u64;
            }
            Ok(0)
        }
        ConsoleIoOp::Read => {
            // The result is a byte count or -errno: counts that would look
            // negative are refused, as Xen does.
            if count > i32::MAX as u32 {
                return Err(Errno::E2BIG);
            }
            let mut kbuf = [0u8; CHUNK];
            let want = (count as usize).min(CHUNK);
            let n = crate::console::read_input(&mut kbuf[..want]);
            copy_to_guest(c.cr3, buffer, &kbuf[..n])?;
            Ok(n as i64)
        }
    }
}
