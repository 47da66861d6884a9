//! `sched_op`: yield, block, shutdown (with reason), shutdown_code, poll and
//! remote shutdown.

use super::{Call, Outcome, Then};
use crate::arch::x86_64::entry::TrapFrame;
use crate::domain::{domain_shutdown, read_guest};
use hypercall_abi::errno::Errno;
use hypercall_abi::sched::{SchedOp, SchedRemoteShutdown, SchedShutdown, ShutdownReason};

pub fn sched_op(c: &mut Call, _frame: &mut TrapFrame) -> Outcome {
    let [cmd, arg, ..] = c.args;
    // Xen's `cmd` is an `int`.
    let Some(op) = SchedOp::from_raw(u64::from(cmd as u32)) else {
        return Outcome::from(Err(Errno::ENOSYS));
    };
    match op {
        SchedOp::Yield => Outcome::from(Ok(0)),
        SchedOp::Block => Outcome {
            ret: 0,
            then: Then::Block,
        },
        SchedOp::Shutdown => {
            let r = read_guest::<SchedShutdown>(c.cr3, arg)
                .and_then(|s| ShutdownReason::from_raw(u64::from(s.reason)).ok_or(Errno::EINVAL));
            match r {
                Ok(reason) => domain_shutdown(c.dom, reason),
                Err(e) => Outcome::from(Err(e)),
            }
        }
        SchedOp::ShutdownCode => {
            let r = read_guest::<SchedShutdown>(c.cr3, arg).and_then(|s| {
                ShutdownReason::from_raw(u64::from(s.reason)).ok_or(Errno::EINVAL)?;
                c.dom.shutdown_code = Some(s.reason);
                Ok(0)
            });
            Outcome::from(r)
        }
        SchedOp::RemoteShutdown => {
            let r = read_guest::<SchedRemoteShutdown>(c.cr3, arg).and_then(|s| {
                if !c.dom.is_privileged {
                    return Err(Errno::EPERM);
                }
                ShutdownReason::from_raw(u64::from(s.reason)).ok_or(Errno::EINVAL)?;
                // Only Dom0 exists until the toolstack creates domains.
                if s.domain_id == c.dom.domid {
                    return Err(Errno::EINVAL);
                }
                Err(Errno::ESRCH)
            });
            Outcome::from(r)
        }
        // Polling needs event channels; the watchdog and pin override are
        // not provided yet.
        SchedOp::Poll | SchedOp::Watchdog | SchedOp::PinOverride => {
            Outcome::from(Err(Errno::ENOSYS))
        }
    }
}
