//! `event_channel_op` (hypercall 32) and the old `event_channel_op_compat`
//! (hypercall 16): Xen's `EVTCHNOP_*` on the caller's event channel table
//! (`xen_core::evtchn`, which validates every port, vCPU and VIRQ and
//! answers with Xen's error codes), with the notifications acted on by
//! `crate::event`.
//!
//! Argument structs are copied in whole (`-EFAULT` if unreadable) and, for
//! the operations that answer something, copied back whole after success
//! (`-EFAULT` if unwritable; the operation stays done, as in Xen).
//!
//! Other domains are reached through `Call::others`: a missing one is
//! `-ESRCH`; naming another domain as the owner of a port (alloc_unbound,
//! status, reset) needs privilege (`-EPERM`, Xen's XSM default); binding
//! to another domain's unbound port needs only that the port names the
//! caller.
//!
//! The FIFO ABI is not provided: `EVTCHNOP_init_control` fails with
//! `-ENOSYS` (Linux then stays on the 2-level ABI), and `expand_array` /
//! `set_priority` answer what Xen answers to a domain still on the 2-level
//! ABI (`-EOPNOTSUPP`; `-EINVAL` for a bad port, else `-ENOSYS`).

use super::Call;
use crate::domain::{read_guest, write_guest};
use crate::event;
use hypercall_abi::errno::Errno;
use hypercall_abi::event_channel::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindPirq, EvtchnBindVcpu,
    EvtchnBindVirq, EvtchnClose, EvtchnExpandArray, EvtchnInitControl, EvtchnOp, EvtchnOpCompat,
    EvtchnReset, EvtchnSend, EvtchnSetPriority, EvtchnStatus, EvtchnUnmask,
};
use hypercall_abi::xen::DOMID_SELF;
use hypercall_abi::DomId;
use xen_core::evtchn::EvtchnTable;

/// Offset of the per-command union in `struct evtchn_op` (after `cmd`).
const COMPAT_UNION_OFFSET: u64 = 4;

/// `HYPERVISOR_event_channel_op(cmd, arg)`.
pub fn event_channel_op(c: &mut Call) -> Result<i64, Errno> {
    let [cmd, arg, ..] = c.args();
    // Xen's `cmd` is an `int`.
    op(c, cmd as u32, arg)
}

/// `HYPERVISOR_event_channel_op_compat(struct evtchn_op *)`: the command
/// and its struct in one block; only the pre-FIFO commands, as in Xen.
pub fn event_channel_op_compat(c: &mut Call) -> Result<i64, Errno> {
    let [arg, ..] = c.args();
    let o: EvtchnOpCompat = read_guest(c.cr3, arg)?;
    match EvtchnOp::from_raw(u64::from(o.cmd)).ok_or(Errno::ENOSYS)? {
        EvtchnOp::BindInterdomain
        | EvtchnOp::AllocUnbound
        | EvtchnOp::BindVirq
        | EvtchnOp::BindPirq
        | EvtchnOp::BindIpi
        | EvtchnOp::BindVcpu
        | EvtchnOp::Status
        | EvtchnOp::Reset
        | EvtchnOp::Close
        | EvtchnOp::Send
        | EvtchnOp::Unmask => op(c, o.cmd, arg.wrapping_add(COMPAT_UNION_OFFSET)),
        EvtchnOp::InitControl | EvtchnOp::ExpandArray | EvtchnOp::SetPriority => Err(Errno::ENOSYS),
    }
}

/// Xen's `rcu_lock_domain_by_any_id` plus its XSM_TARGET check: `None`
/// for the caller itself, `Some(id)` for another domain that exists and
/// that the caller may act on.
fn resolve(c: &Call, dom: DomId) -> Result<Option<DomId>, Errno> {
    if dom == DOMID_SELF || dom == c.dom.domid {
        return Ok(None);
    }
    if !c.others.iter().any(|d| d.domid == dom) {
        return Err(Errno::ESRCH);
    }
    if !c.dom.is_privileged {
        return Err(Errno::EPERM);
    }
    Ok(Some(dom))
}

/// Closes every port of `d` (domain destruction): the far ends of its
/// interdomain channels become unbound ports for it, as in Xen.
pub fn teardown(d: &mut crate::domain::Domain, others: &mut super::Others) {
    d.evtchn.set_dying();
    crate::hwirq::release_domain(d.domid);
    loop {
        let (t, words) = event::table_and_words(d);
        let Some((port, peer)) = t.reset(&words) else {
            break;
        };
        let closed = match others.get(peer) {
            Some(p) => EvtchnTable::close(t, Some(&mut p.evtchn), port, &words),
            None => Err(Errno::ESRCH),
        };
        if closed.is_err() {
            log::error!("d{}: cannot close port {port} to d{peer}", d.domid);
            break;
        }
    }
}

fn op(c: &mut Call, cmd: u32, arg: u64) -> Result<i64, Errno> {
    let cr3 = c.cr3;
    let Some(op) = EvtchnOp::from_raw(u64::from(cmd)) else {
        return Err(Errno::ENOSYS);
    };
    match op {
        EvtchnOp::AllocUnbound => {
            let mut a: EvtchnAllocUnbound = read_guest(cr3, arg)?;
            let me = c.dom.domid;
            a.port = match resolve(c, a.dom)? {
                None => c.dom.evtchn.alloc_unbound(me, a.remote_dom)?,
                Some(id) => {
                    let d = c.others.get(id).ok_or(Errno::ESRCH)?;
                    d.evtchn.alloc_unbound(me, a.remote_dom)?
                }
            };
            write_guest(cr3, arg, &a)?;
        }
        EvtchnOp::BindInterdomain => {
            let mut b: EvtchnBindInterdomain = read_guest(cr3, arg)?;
            let remote = if b.remote_dom == DOMID_SELF || b.remote_dom == c.dom.domid {
                None
            } else {
                Some(c.others.get(b.remote_dom).ok_or(Errno::ESRCH)?)
            };
            let (t, words) = event::table_and_words(c.dom);
            let (port, n) = EvtchnTable::bind_interdomain(
                t,
                remote.map(|r| &mut *r.evtchn),
                b.remote_port,
                &words,
            )?;
            event::notify(c.dom, port, n);
            b.local_port = port;
            write_guest(cr3, arg, &b)?;
        }
        EvtchnOp::BindVirq => {
            let mut b: EvtchnBindVirq = read_guest(cr3, arg)?;
            b.port = c.dom.evtchn.bind_virq(b.virq, b.vcpu)?;
            write_guest(cr3, arg, &b)?;
        }
        EvtchnOp::BindPirq => {
            let mut b: EvtchnBindPirq = read_guest(cr3, arg)?;
            let me = c.dom.domid;
            crate::hwirq::check_bind(me, b.pirq, crate::hwirq::nr_pirqs(c.dom.is_privileged))?;
            b.port = c.dom.evtchn.bind_pirq(b.pirq, b.flags)?;
            crate::hwirq::bind(me, b.pirq, b.port);
            write_guest(cr3, arg, &b)?;
        }
        EvtchnOp::BindIpi => {
            let mut b: EvtchnBindIpi = read_guest(cr3, arg)?;
            b.port = c.dom.evtchn.bind_ipi(b.vcpu)?;
            write_guest(cr3, arg, &b)?;
        }
        EvtchnOp::BindVcpu => {
            let b: EvtchnBindVcpu = read_guest(cr3, arg)?;
            c.dom.evtchn.bind_vcpu(b.port, b.vcpu)?;
        }
        EvtchnOp::Close => {
            let a: EvtchnClose = read_guest(cr3, arg)?;
            let me = c.dom.domid;
            let peer = c.dom.evtchn.peer_domain(a.port).filter(|&p| p != me);
            let remote = peer.and_then(|p| c.others.get(p));
            let pirq = c.dom.evtchn.pirq_of(a.port);
            let (t, words) = event::table_and_words(c.dom);
            EvtchnTable::guest_close(t, remote.map(|r| &mut *r.evtchn), a.port, &words)?;
            if let Some(p) = pirq {
                crate::hwirq::unbind(me, p);
            }
        }
        EvtchnOp::Send => {
            let a: EvtchnSend = read_guest(cr3, arg)?;
            if let Some(ev) = c.dom.evtchn.send(a.port)? {
                if ev.dom == c.dom.domid {
                    event::raise(c.dom, ev.port);
                } else if let Some(d) = c.others.get(ev.dom) {
                    event::raise(d, ev.port);
                }
            }
        }
        EvtchnOp::Status => {
            let mut s: EvtchnStatus = read_guest(cr3, arg)?;
            match resolve(c, s.dom)? {
                None => c.dom.evtchn.status(&mut s)?,
                Some(id) => c
                    .others
                    .get(id)
                    .ok_or(Errno::ESRCH)?
                    .evtchn
                    .status(&mut s)?,
            }
            write_guest(cr3, arg, &s)?;
        }
        EvtchnOp::Unmask => {
            let a: EvtchnUnmask = read_guest(cr3, arg)?;
            let (t, words) = event::table_and_words(c.dom);
            let n = t.unmask(&words, a.port)?;
            event::notify(c.dom, a.port, n);
        }
        EvtchnOp::Reset => {
            let a: EvtchnReset = read_guest(cr3, arg)?;
            match resolve(c, a.dom)? {
                None => {
                    // PIRQ ports close with the rest.
                    crate::hwirq::unbind_domain(c.dom.domid);
                    loop {
                        let (t, words) = event::table_and_words(c.dom);
                        let Some((port, peer)) = t.guest_reset(&words) else {
                            break;
                        };
                        let remote = c.others.get(peer).ok_or(Errno::ESRCH)?;
                        EvtchnTable::close(t, Some(&mut remote.evtchn), port, &words)?;
                    }
                }
                Some(id) => {
                    // Xen resets another domain's channels only while it
                    // is paused.
                    let d = c.others.get(id).ok_or(Errno::ESRCH)?;
                    if d.pause_count == 0 {
                        return Err(Errno::EINVAL);
                    }
                    let me = &mut *c.dom;
                    crate::hwirq::unbind_domain(id);
                    loop {
                        let (t, words) = event::table_and_words(d);
                        let Some((port, peer)) = t.guest_reset(&words) else {
                            break;
                        };
                        if peer != me.domid {
                            return Err(Errno::ESRCH);
                        }
                        EvtchnTable::close(t, Some(&mut me.evtchn), port, &words)?;
                    }
                }
            }
        }
        EvtchnOp::InitControl => {
            let _: EvtchnInitControl = read_guest(cr3, arg)?;
            return Err(Errno::ENOSYS);
        }
        EvtchnOp::ExpandArray => {
            let _: EvtchnExpandArray = read_guest(cr3, arg)?;
            return Err(Errno::EOPNOTSUPP);
        }
        EvtchnOp::SetPriority => {
            let a: EvtchnSetPriority = read_guest(cr3, arg)?;
            if !c.dom.evtchn.port_is_valid(a.port) {
                return Err(Errno::EINVAL);
            }
            return Err(Errno::ENOSYS);
        }
    }
    Ok(0)
}
