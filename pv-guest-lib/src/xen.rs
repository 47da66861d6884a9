//! Typed hypercall wrappers: console_io, xen_version, sched_op, vcpu_op,
//! the calls that register entry points (set_callbacks, callback_op,
//! set_trap_table, stack_switch), and the I/O privilege sub-ops of
//! physdev_op.
//!
//! Every wrapper returns `Result<_, Errno>` with Xen's error untouched.
//! Wrappers that only pass buffers the hypervisor reads or fills are safe
//! (the buffer is a Rust reference of the right size); wrappers that install
//! code addresses or stacks are `unsafe fn`, because a wrong address makes
//! the next event, trap or kernel entry jump or push anywhere.

use crate::abi::arch_x86::TrapInfo;
use crate::abi::callback::{CallbackOp, CallbackRegister, CallbackType, CallbackUnregister};
use crate::abi::hypercall::Hypercall;
use crate::abi::sched::{SchedOp, SchedPoll, SchedRemoteShutdown, SchedShutdown, ShutdownReason};
use crate::abi::vcpu::VcpuOp;
use crate::abi::version::{
    XenCapabilitiesInfo, XenChangesetInfo, XenCommandline, XenCompileInfo, XenDomainHandleBuf,
    XenExtraversion, XenFeatureInfo, XenPlatformParameters, XenVersionOp, XEN_VERSION_MAJOR_SHIFT,
    XEN_VERSION_MINOR_MASK,
};
use crate::abi::xen::ConsoleIoOp;
use crate::error::{check, Errno};
use crate::hypercall::{hypercall1, hypercall2, hypercall3};
use zerocopy::{FromBytes, IntoBytes};

/// Largest count one console_io call takes: Xen's count is an `unsigned
/// int` and reads refuse counts that look negative as an `int`.
const CONSOLE_IO_MAX: usize = i32::MAX as usize;

fn ptr<T: ?Sized>(r: &T) -> u64 {
    r as *const T as *const u8 as u64
}

fn ptr_mut<T: ?Sized>(r: &mut T) -> u64 {
    r as *mut T as *mut u8 as u64
}

// ---------------------------------------------------------------------------
// console_io
// ---------------------------------------------------------------------------

/// `CONSOLEIO_write`: writes `buf` to the hypervisor console (Dom0 only on
/// Xen). Long buffers are split into several calls. Returns 0.
pub fn console_write(buf: &[u8]) -> Result<u64, Errno> {
    for chunk in buf.chunks(CONSOLE_IO_MAX) {
        // SAFETY: Xen only reads `chunk.len()` bytes from `chunk`, which is valid.
        check(unsafe {
            hypercall3(
                Hypercall::ConsoleIo,
                ConsoleIoOp::Write as u64,
                chunk.len() as u64,
                ptr(chunk),
            )
        })?;
    }
    Ok(0)
}

/// `CONSOLEIO_read`: copies pending console input into `buf` (Dom0 only);
/// returns the number of bytes read (0 if nothing is pending).
pub fn console_read(buf: &mut [u8]) -> Result<usize, Errno> {
    let len = buf.len().min(CONSOLE_IO_MAX);
    // SAFETY: Xen writes at most `len` bytes into `buf`, which is valid for them.
    let n = check(unsafe {
        hypercall3(
            Hypercall::ConsoleIo,
            ConsoleIoOp::Read as u64,
            len as u64,
            ptr_mut(buf),
        )
    })?;
    // Never trust the count beyond what we asked for.
    Ok((n as usize).min(len))
}

// ---------------------------------------------------------------------------
// xen_version
// ---------------------------------------------------------------------------

/// A `XENVER_version` result: `major << 16 | minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenVersion(pub u32);

impl XenVersion {
    /// Major version (4 for Xen 4.17).
    pub const fn major(self) -> u32 {
        self.0 >> XEN_VERSION_MAJOR_SHIFT
    }
    /// Minor version (17 for Xen 4.17).
    pub const fn minor(self) -> u32 {
        self.0 & XEN_VERSION_MINOR_MASK
    }
}

impl core::fmt::Display for XenVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}", self.major(), self.minor())
    }
}

fn xen_version_into<T: IntoBytes + FromBytes>(op: XenVersionOp) -> Result<T, Errno> {
    let mut out = T::new_zeroed();
    // SAFETY: Xen writes at most `size_of::<T>()` bytes (the ABI size of
    // this sub-op's buffer) into `out`; every byte pattern is a valid `T`.
    check(unsafe {
        hypercall2(
            Hypercall::XenVersion,
            op as u64,
            ptr_mut(out.as_mut_bytes()),
        )
    })?;
    Ok(out)
}

/// `XENVER_version`.
pub fn version() -> Result<XenVersion, Errno> {
    // SAFETY: XENVER_version ignores its argument.
    let v = check(unsafe { hypercall2(Hypercall::XenVersion, XenVersionOp::Version as u64, 0) })?;
    Ok(XenVersion(v as u32))
}

/// `XENVER_extraversion` (e.g. ".0-oxen"; read it with [`crate::util::c_str`]).
pub fn extraversion() -> Result<XenExtraversion, Errno> {
    xen_version_into(XenVersionOp::Extraversion)
}

/// `XENVER_compile_info`.
pub fn compile_info() -> Result<XenCompileInfo, Errno> {
    xen_version_into(XenVersionOp::CompileInfo)
}

/// `XENVER_capabilities` (e.g. "xen-3.0-x86_64 hvm-3.0-x86_32 ...").
pub fn capabilities() -> Result<XenCapabilitiesInfo, Errno> {
    xen_version_into(XenVersionOp::Capabilities)
}

/// `XENVER_changeset`.
pub fn changeset() -> Result<XenChangesetInfo, Errno> {
    xen_version_into(XenVersionOp::Changeset)
}

/// `XENVER_platform_parameters` (`virt_start`: where the hypervisor hole begins).
pub fn platform_parameters() -> Result<XenPlatformParameters, Errno> {
    xen_version_into(XenVersionOp::PlatformParameters)
}

/// `XENVER_get_features`: the 32 feature bits of submap `submap_idx`
/// (test with `XenFeature::submap_bit`).
pub fn get_features(submap_idx: u32) -> Result<u32, Errno> {
    let mut fi = XenFeatureInfo {
        submap_idx,
        submap: 0,
    };
    // SAFETY: Xen reads and writes the 8-byte `xen_feature_info` in `fi`.
    check(unsafe {
        hypercall2(
            Hypercall::XenVersion,
            XenVersionOp::GetFeatures as u64,
            ptr_mut(&mut fi),
        )
    })?;
    Ok(fi.submap)
}

/// `XENVER_pagesize`.
pub fn pagesize() -> Result<u64, Errno> {
    // SAFETY: XENVER_pagesize ignores its argument.
    check(unsafe { hypercall2(Hypercall::XenVersion, XenVersionOp::Pagesize as u64, 0) })
}

/// `XENVER_guest_handle`: the domain's 16-byte handle (UUID).
pub fn guest_handle() -> Result<XenDomainHandleBuf, Errno> {
    xen_version_into(XenVersionOp::GuestHandle)
}

/// `XENVER_commandline`: the hypervisor's command line (privileged only).
pub fn commandline() -> Result<XenCommandline, Errno> {
    xen_version_into(XenVersionOp::Commandline)
}

/// `XENVER_build_id`: `buf` holds a 4-byte length header followed by room
/// for the id. Returns the id bytes (inside `buf`).
pub fn build_id(buf: &mut [u8]) -> Result<&[u8], Errno> {
    const HEADER: usize = core::mem::size_of::<u32>();
    if buf.len() <= HEADER {
        return Err(Errno::EINVAL);
    }
    let room = u32::try_from(buf.len() - HEADER).unwrap_or(u32::MAX);
    buf[..HEADER].copy_from_slice(&room.to_ne_bytes());
    // SAFETY: Xen reads the header and writes at most `room` bytes after it,
    // all inside `buf`.
    let n = check(unsafe {
        hypercall2(
            Hypercall::XenVersion,
            XenVersionOp::BuildId as u64,
            ptr_mut(buf),
        )
    })?;
    let n = (n as usize).min(room as usize);
    Ok(&buf[HEADER..HEADER + n])
}

// ---------------------------------------------------------------------------
// sched_op
// ---------------------------------------------------------------------------

/// `SCHEDOP_yield`: gives the CPU to someone else, if anyone wants it.
pub fn sched_yield() -> Result<u64, Errno> {
    // SAFETY: SCHEDOP_yield ignores its argument.
    check(unsafe { hypercall2(Hypercall::SchedOp, SchedOp::Yield as u64, 0) })
}

/// `SCHEDOP_block`: sleeps until an event is pending (and unmasks events).
pub fn sched_block() -> Result<u64, Errno> {
    // SAFETY: SCHEDOP_block ignores its argument.
    check(unsafe { hypercall2(Hypercall::SchedOp, SchedOp::Block as u64, 0) })
}

/// `SCHEDOP_poll`: sleeps until one of `ports` is pending, an upcall is
/// pending with events unmasked, or system time reaches `timeout` (ns; 0:
/// no timeout). Returns at once if one of them already holds.
pub fn sched_poll(ports: &[u32], timeout: u64) -> Result<u64, Errno> {
    let arg = SchedPoll {
        ports: ports.as_ptr() as u64,
        nr_ports: u32::try_from(ports.len()).unwrap_or(u32::MAX),
        _pad12: 0,
        timeout,
    };
    // SAFETY: Xen reads `arg` and `nr_ports` ports from `ports`, both live
    // for the call.
    check(unsafe { hypercall2(Hypercall::SchedOp, SchedOp::Poll as u64, ptr(&arg)) })
}

/// `SCHEDOP_shutdown`: shuts the domain down. Returns only on failure (or,
/// for `Suspend`, after resuming).
pub fn sched_shutdown(reason: ShutdownReason) -> Result<u64, Errno> {
    let arg = SchedShutdown {
        reason: reason as u32,
    };
    // SAFETY: Xen reads the 4-byte `sched_shutdown` in `arg`.
    check(unsafe { hypercall2(Hypercall::SchedOp, SchedOp::Shutdown as u64, ptr(&arg)) })
}

/// `SCHEDOP_shutdown_code`: records the reason a later shutdown will report.
pub fn sched_shutdown_code(reason: ShutdownReason) -> Result<u64, Errno> {
    let arg = SchedShutdown {
        reason: reason as u32,
    };
    // SAFETY: Xen reads the 4-byte `sched_shutdown` in `arg`.
    check(unsafe { hypercall2(Hypercall::SchedOp, SchedOp::ShutdownCode as u64, ptr(&arg)) })
}

/// `SCHEDOP_shutdown` with `SHUTDOWN_suspend` and, in `rdx` (the
/// hypercall's third argument, Xen's `HYPERVISOR_suspend(srec)`), the
/// machine frame of the `start_info` page the toolstack rewrites on
/// restore. Returns when the domain runs again: `1` if the suspend was
/// cancelled (the same domain runs on, `xl save -c`, a failed save), `0`
/// in a new domain after a restore.
pub fn sched_suspend(start_info_mfn: u64) -> Result<u64, Errno> {
    let arg = SchedShutdown {
        reason: ShutdownReason::Suspend as u32,
    };
    // SAFETY: Xen reads the 4-byte `sched_shutdown` in `arg`; the third
    // argument is a number, not a pointer Xen follows.
    check(unsafe {
        hypercall3(
            Hypercall::SchedOp,
            SchedOp::Shutdown as u64,
            ptr(&arg),
            start_info_mfn,
        )
    })
}

/// `SCHEDOP_remote_shutdown` (privileged): shuts domain `domid` down with
/// `reason`.
pub fn remote_shutdown(domid: u16, reason: ShutdownReason) -> Result<u64, Errno> {
    let arg = SchedRemoteShutdown {
        domain_id: domid,
        _pad2: 0,
        reason: reason as u32,
    };
    // SAFETY: Xen reads the 8-byte `sched_remote_shutdown` in `arg`.
    check(unsafe {
        hypercall2(
            Hypercall::SchedOp,
            SchedOp::RemoteShutdown as u64,
            ptr(&arg),
        )
    })
}

/// Shuts down with `reason` and never returns: if the hypervisor refuses,
/// it retries, yielding in between.
pub fn shutdown(reason: ShutdownReason) -> ! {
    loop {
        let _ = sched_shutdown(reason);
        let _ = sched_yield();
        core::hint::spin_loop();
    }
}

/// `SHUTDOWN_poweroff`, for good.
pub fn poweroff() -> ! {
    shutdown(ShutdownReason::Poweroff)
}

/// `SHUTDOWN_crash`, for good.
pub fn crash() -> ! {
    shutdown(ShutdownReason::Crash)
}

// ---------------------------------------------------------------------------
// vcpu_op
// ---------------------------------------------------------------------------

/// `VCPUOP_is_up`: whether vCPU `vcpu` is running.
pub fn vcpu_is_up(vcpu: u32) -> Result<bool, Errno> {
    // SAFETY: VCPUOP_is_up ignores its buffer argument.
    check(unsafe { hypercall3(Hypercall::VcpuOp, VcpuOp::IsUp as u64, u64::from(vcpu), 0) })
        .map(|v| v != 0)
}

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

/// `set_callbacks(event, failsafe, syscall)`: the legacy way to register the
/// event upcall, failsafe and 64-bit syscall entry points.
///
/// # Safety
/// Each non-zero address must be the entry of a handler written for the
/// bounce frame Xen builds for that callback (see the ABI README).
pub unsafe fn set_callbacks(event: u64, failsafe: u64, syscall: u64) -> Result<u64, Errno> {
    // SAFETY: the caller vouches for the addresses; no memory is passed.
    check(unsafe { hypercall3(Hypercall::SetCallbacks, event, failsafe, syscall) })
}

/// `CALLBACKOP_register`.
///
/// # Safety
/// As [`set_callbacks`]: `address` must be a suitable handler.
pub unsafe fn callback_register(ty: CallbackType, address: u64, flags: u16) -> Result<u64, Errno> {
    let arg = CallbackRegister {
        r#type: ty as u16,
        flags,
        _pad4: 0,
        address,
    };
    // SAFETY: Xen reads the 16-byte `callback_register` in `arg`; the caller
    // vouches for the handler.
    unsafe { callback_register_raw(&arg) }
}

/// `CALLBACKOP_register` with a caller-built argument (any type number).
///
/// # Safety
/// As [`set_callbacks`]: the address must be a suitable handler.
pub unsafe fn callback_register_raw(arg: &CallbackRegister) -> Result<u64, Errno> {
    // SAFETY: Xen reads the 16-byte `callback_register`; the caller vouches
    // for the handler.
    check(unsafe { hypercall2(Hypercall::CallbackOp, CallbackOp::Register as u64, ptr(arg)) })
}

/// `CALLBACKOP_unregister`: removes a callback (Xen only allows NMI).
pub fn callback_unregister(ty: CallbackType) -> Result<u64, Errno> {
    let arg = CallbackUnregister {
        r#type: ty as u16,
        _unused: 0,
    };
    // SAFETY: Xen reads the 4-byte `callback_unregister`; removing a
    // handler cannot make anything jump to a bad address.
    check(unsafe {
        hypercall2(
            Hypercall::CallbackOp,
            CallbackOp::Unregister as u64,
            ptr(&arg),
        )
    })
}

/// `set_trap_table`: installs virtual IDT entries. `table` must end with an
/// entry whose `address` is 0 (Xen reads until it finds one); anything else
/// is refused with `-EINVAL` before calling.
///
/// # Safety
/// Every entry's address must be a handler for Xen's exception bounce frame.
pub unsafe fn set_trap_table(table: &[TrapInfo]) -> Result<u64, Errno> {
    match table.last() {
        Some(t) if t.address == 0 => {}
        _ => return Err(Errno::EINVAL),
    }
    // SAFETY: Xen reads entries up to the terminating one, all inside
    // `table`; the caller vouches for the handlers.
    check(unsafe { hypercall1(Hypercall::SetTrapTable, ptr(table)) })
}

/// `set_trap_table(NULL)`: removes every virtual IDT entry.
pub fn clear_trap_table() -> Result<u64, Errno> {
    // SAFETY: a NULL table clears the IDT; nothing is read.
    check(unsafe { hypercall1(Hypercall::SetTrapTable, 0) })
}

/// `stack_switch(ss, sp)`: the kernel stack Xen switches to when it enters
/// the guest kernel from guest user mode.
///
/// # Safety
/// `sp` must be the top of a stack that stays valid and unused otherwise.
pub unsafe fn stack_switch(ss: u16, sp: u64) -> Result<u64, Errno> {
    // SAFETY: no memory is passed; the caller vouches for the stack.
    check(unsafe { hypercall2(Hypercall::StackSwitch, u64::from(ss), sp) })
}

/// `set_segment_base(which, base)`: sets the FS base, the user or kernel
/// GS base, or loads the user GS selector.
///
/// # Safety
/// Code that addresses memory through the changed segment (thread-local
/// storage) must expect the new base.
pub unsafe fn set_segment_base(
    which: crate::abi::arch_x86::SegBase,
    base: u64,
) -> Result<u64, Errno> {
    // SAFETY: no memory is passed; the caller vouches for the segment use.
    check(unsafe { hypercall2(Hypercall::SetSegmentBase, which as u64, base) })
}

// ---------------------------------------------------------------------------
// physdev_op: I/O privilege
// ---------------------------------------------------------------------------

/// `PHYSDEVOP_set_iopl`: the calling vCPU's virtual I/O privilege level
/// (0..=3). With IOPL 1 or more the guest kernel may use `in`/`out`
/// (emulated by Xen on the ports the domain may access) and `cli`/`sti`
/// (no-ops).
pub fn physdev_set_iopl(iopl: u32) -> Result<u64, Errno> {
    let arg = crate::abi::physdev::PhysdevSetIopl { iopl };
    // SAFETY: Xen reads the argument struct; nothing is installed.
    check(unsafe {
        hypercall2(
            Hypercall::PhysdevOp,
            u64::from(crate::abi::physdev::PhysdevOp::SetIopl.raw()),
            ptr(&arg),
        )
    })
}

/// `PHYSDEVOP_set_iobitmap`: the calling vCPU's I/O bitmap (a set bit
/// denies the port) covering ports `0..nr_ports`, read by Xen at each
/// emulated `in`/`out` while the IOPL does not allow the access.
///
/// # Safety
/// Xen keeps reading `bitmap` (8 KiB of address space) until the next
/// call: it must stay valid and mapped that long.
pub unsafe fn physdev_set_iobitmap(bitmap: *const u8, nr_ports: u32) -> Result<u64, Errno> {
    let arg = crate::abi::physdev::PhysdevSetIobitmap {
        bitmap: bitmap as u64,
        nr_ports,
        _pad12: 0,
    };
    // SAFETY: Xen reads the argument struct; the caller vouches for the
    // bitmap's lifetime.
    check(unsafe {
        hypercall2(
            Hypercall::PhysdevOp,
            u64::from(crate::abi::physdev::PhysdevOp::SetIobitmap.raw()),
            ptr(&arg),
        )
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::abi::errno::Errno as AbiErrno;
    use crate::hypercall::mock;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::vec::Vec;
    use zerocopy::FromZeros;

    const CONSOLE_IO: u64 = Hypercall::ConsoleIo as u64;
    const XEN_VERSION: u64 = Hypercall::XenVersion as u64;

    #[test]
    fn console_write_passes_cmd_count_and_buffer() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s = seen.clone();
        let _g = mock::install(move |nr, a| {
            assert_eq!(nr, CONSOLE_IO);
            assert_eq!(a[0], ConsoleIoOp::Write as u64);
            s.borrow_mut().extend_from_slice(&mock::read(a[2], a[1]));
            0
        });
        assert_eq!(console_write(b"hello"), Ok(0));
        assert_eq!(&seen.borrow()[..], b"hello");
    }

    #[test]
    fn console_read_clamps_the_count_it_gets_back() {
        let _g = mock::install(|_, a| {
            assert_eq!(a[0], ConsoleIoOp::Read as u64);
            assert_eq!(a[1], 4);
            1_000_000 // a lying hypervisor
        });
        let mut buf = [0u8; 4];
        assert_eq!(console_read(&mut buf), Ok(4));
    }

    #[test]
    fn errors_come_back_untouched() {
        let _g = mock::install(|_, _| -9999);
        assert_eq!(console_write(b"x").unwrap_err().ret(), -9999);
        assert_eq!(version().unwrap_err().ret(), -9999);
        let _g = mock::install(|_, _| AbiErrno::EFAULT.to_ret());
        assert_eq!(extraversion().unwrap_err(), AbiErrno::EFAULT);
    }

    #[test]
    fn version_and_buffers() {
        let _g = mock::install(|nr, a| {
            assert_eq!(nr, XEN_VERSION);
            match XenVersionOp::from_raw(a[0]).unwrap() {
                XenVersionOp::Version => 0x4_0011,
                XenVersionOp::Extraversion => {
                    mock::write(a[1], b".0-oxen\0");
                    0
                }
                XenVersionOp::GetFeatures => {
                    let p = a[1] as *mut XenFeatureInfo;
                    // SAFETY: the wrapper passes a live XenFeatureInfo.
                    unsafe {
                        assert_eq!((*p).submap_idx, 0);
                        (*p).submap = 1 << 11;
                    }
                    0
                }
                XenVersionOp::Pagesize => 4096,
                _ => AbiErrno::ENOSYS.to_ret(),
            }
        });
        let v = version().unwrap();
        assert_eq!((v.major(), v.minor()), (4, 17));
        assert_eq!(std::format!("{v}"), "4.17");
        assert_eq!(
            crate::util::c_str(&extraversion().unwrap().bytes),
            ".0-oxen"
        );
        assert_eq!(get_features(0), Ok(1 << 11));
        assert_eq!(pagesize(), Ok(4096));
        assert_eq!(changeset().unwrap_err(), AbiErrno::ENOSYS);
    }

    #[test]
    fn trap_table_must_be_terminated() {
        let _g = mock::install(|_, _| 0);
        let mut t = TrapInfo::new_zeroed();
        t.address = 0x1234;
        // SAFETY: the mock does not install anything.
        assert_eq!(unsafe { set_trap_table(&[t]) }, Err(Errno::EINVAL));
        // SAFETY: as above.
        assert_eq!(unsafe { set_trap_table(&[]) }, Err(Errno::EINVAL));
        let terminated = [t, TrapInfo::new_zeroed()];
        // SAFETY: as above.
        assert_eq!(unsafe { set_trap_table(&terminated) }, Ok(0));
    }

    #[test]
    fn build_id_needs_room_and_clamps() {
        let _g = mock::install(|_, a| {
            // SAFETY: the wrapper passes its buffer, at least 5 bytes long.
            let len = unsafe { *(a[1] as *const u32) };
            assert_eq!(len, 4);
            99
        });
        let mut small = [0u8; 4];
        assert_eq!(build_id(&mut small).unwrap_err(), Errno::EINVAL);
        let mut buf = [0u8; 8];
        assert_eq!(build_id(&mut buf).unwrap().len(), 4);
    }

    #[test]
    fn vcpu_is_up_decodes() {
        let _g = mock::install(|_, a| {
            if a[1] == 0 {
                1
            } else {
                AbiErrno::ENOENT.to_ret()
            }
        });
        assert_eq!(vcpu_is_up(0), Ok(true));
        assert_eq!(vcpu_is_up(5), Err(Errno::ENOENT));
    }
}
