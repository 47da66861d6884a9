//! `sched_op` (yield, block, poll, shutdown with reason, shutdown_code,
//! remote_shutdown) and `set_timer_op`.

use super::{Call, Outcome};
use crate::domain::{copy_from_guest, domain_shutdown, read_guest};
use hypercall_abi::errno::Errno;
use hypercall_abi::sched::{
    SchedOp, SchedPoll, SchedRemoteShutdown, SchedShutdown, ShutdownReason,
};

/// Most ports one SCHEDOP_poll may wait on (Xen allows up to 128 but polls
/// one in practice; a bigger count is -EINVAL here and there).
const MAX_POLL_PORTS: u32 = 8;

#[inline(never)]
pub fn sched_op(c: &mut Call) -> Outcome {
    let [cmd, arg, ..] = c.args();
    // Xen's `cmd` is an `int`.
    let Some(op) = SchedOp::from_raw(u64::from(cmd as u32)) else {
        return Outcome::from(Err(Errno::ENOSYS));
    };
    match op {
        SchedOp::Yield => {
            crate::sched::yield_current();
            Outcome::Ret(0)
        }
        SchedOp::Block => {
            // Xen's vcpu_block_enable_events: unmask, then block unless an
            // event is already waiting.
            let v = c.vcpu();
            crate::pv::enable_events(v);
            if !crate::pv::events_pending(v) {
                crate::sched::block_current(v);
            }
            Outcome::Ret(0)
        }
        SchedOp::Poll => Outcome::from(poll(c, arg)),
        SchedOp::Shutdown => {
            let r = read_guest::<SchedShutdown>(c.cr3, arg)
                .and_then(|s| ShutdownReason::from_raw(u64::from(s.reason)).ok_or(Errno::EINVAL));
            match r {
                Ok(reason) => {
                    domain_shutdown(c.dom, reason);
                    crate::sched::yield_current();
                    Outcome::Ret(0)
                }
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
                let reason = ShutdownReason::from_raw(u64::from(s.reason)).ok_or(Errno::EINVAL)?;
                if s.domain_id == c.dom.domid {
                    return Err(Errno::EINVAL);
                }
                let d = c.others.get(s.domain_id).ok_or(Errno::ESRCH)?;
                if d.shutdown.is_none() && !d.dying {
                    domain_shutdown(d, reason);
                }
                Ok(0)
            });
            Outcome::from(r)
        }
        // The watchdog and pin override are not provided yet.
        SchedOp::Watchdog | SchedOp::PinOverride => Outcome::from(Err(Errno::ENOSYS)),
    }
}

/// SCHEDOP_poll: block until one of the ports is pending or the timeout.
fn poll(c: &mut Call, arg: u64) -> Result<i64, Errno> {
    let p: SchedPoll = read_guest(c.cr3, arg)?;
    if p.nr_ports > MAX_POLL_PORTS {
        return Err(Errno::EINVAL);
    }
    let mut ports = heapless::Vec::<u32, 8>::new();
    let mut raw = [0u8; 4 * MAX_POLL_PORTS as usize];
    let n = p.nr_ports as usize;
    copy_from_guest(c.cr3, p.ports, &mut raw[..n * 4])?;
    // As Xen's do_poll: an upcall the vCPU can take now ends the poll at
    // once; then each port in turn: invalid → -EINVAL, pending → done.
    if crate::event::local_events_need_delivery(c.dom, c.vcpu as u32) {
        return Ok(0);
    }
    for chunk in raw[..n * 4].chunks_exact(4) {
        let port = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        if !crate::event::port_valid(c.dom, port) {
            return Err(Errno::EINVAL);
        }
        if crate::event::port_pending(c.dom, port) {
            return Ok(0);
        }
        let _ = ports.push(port);
    }
    let now = crate::time::now_ns();
    let v = c.vcpu();
    if p.timeout != 0 && p.timeout <= now {
        return Ok(0);
    }
    v.poll_ports = ports;
    v.poll_deadline = (p.timeout != 0).then_some(p.timeout);
    crate::sched::block_current(v);
    Ok(0)
}

/// `set_timer_op(timeout)`: arm (absolute system time, ns) or cancel (0)
/// the vCPU's one-shot timer; a deadline already due raises `VIRQ_TIMER`
/// at once, as Xen's timer softirq does before it returns to the guest
/// (`xen_core::timer_op`).
pub fn set_timer_op(c: &mut Call) -> Result<i64, Errno> {
    let [timeout, ..] = c.args();
    let arm = xen_core::timer_op::set_timer_op(timeout, crate::time::now_ns());
    apply_singleshot(c, arm);
    Ok(0)
}

/// Sets the calling vCPU's one-shot timer as `arm` says.
pub fn apply_singleshot(c: &mut Call, arm: xen_core::timer_op::Arm) {
    use xen_core::timer_op::Arm;
    c.vcpu().singleshot = match arm {
        Arm::At(t) => Some(t),
        Arm::Cancel | Arm::FireNow => None,
    };
    if arm == Arm::FireNow {
        crate::event::send_virq(c.dom, c.vcpu as u32, hypercall_abi::xen::Virq::Timer);
    }
}
