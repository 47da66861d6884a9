//! Event channels: Xen's `EVTCHNOP_*` state machine and the 2-level event
//! ABI, as plain logic the host can test (`common/event_channel.c` and
//! `common/event_2l.c` of Xen 4.17, semantics and error codes included).
//!
//! Owns:
//! * [`EvtchnTable`] — one domain's ports (free, reserved port 0, unbound,
//!   interdomain, VIRQ, IPI, PIRQ), their notify vCPUs, the
//!   per-vCPU VIRQ bindings, the domain's port limit (`max_evtchn_port`)
//!   and dying flag, and every `EVTCHNOP_*` operation on them, including
//!   the two-table ones (bind_interdomain, close of an interdomain port,
//!   reset) which take the peer domain's table explicitly, or `None` for
//!   loopback.
//! * [`two_level`] — setting, clearing and unmasking pending events in the
//!   shared_info bitmaps and vcpu_info selectors, in Xen's order, through
//!   the [`EventWords`] trait.
//! * [`virq_is_global`] — which VIRQs are per-domain and which per-vCPU.
//!
//! Trusts: the glue (hypercall dispatch) to copy argument structs in and
//! out, resolve `DOMID_SELF` and domain ids (`-ESRCH`), check privilege for
//! operations on another domain (`alloc_unbound`/`status`/`reset` with
//! `dom != DOMID_SELF`), hold the locks of every table it passes (both, in
//! a fixed order, for two-table operations), hand in the right domain's
//! [`EventWords`], and act on the returned [`Event`]s and [`Notify`]s
//! (raise, kick the vCPU, wake pollers). Everything guest-supplied (ports,
//! vCPU numbers, VIRQ numbers, domain ids) is validated here and answered
//! with Xen's error code; nothing in this module panics on guest input.
//!
//! Trusts nothing in shared memory: the guest may flip pending, mask and
//! selector bits at any time, so they are only ever touched through
//! [`EventWords`]' single atomic operations and never cached.
//!
//! Port validity is Xen's: a port is valid once its 64-port bucket has been
//! allocated (the first bucket at creation, then one more each time every
//! valid port is in use), so `status`/`close`/`send`/`unmask` of a port
//! beyond the allocated buckets get `-EINVAL`, while a never-used port
//! inside one is simply closed.
//!
//! Deliberate differences from Xen 4.17:
//! * No Xen-consumer channels (`alloc_unbound_xen_event_channel`), no FIFO
//!   ABI. `bind_pirq` only allocates the port: the PIRQ checks and the
//!   IRQ side live in `crate::irq` and the hypervisor's `hwirq` glue.
//!
//! Written by hand (Decision 8): this is Xen's own state machine with Xen's
//! error codes, over fixed-size inline storage usable under a spinlock in
//! interrupt context; no crate models it.

pub mod table;
pub mod two_level;

#[cfg(test)]
mod tests;

pub use table::{
    virq_is_global, Event, EvtchnTable, PortState, DEFAULT_PORTS, DEFAULT_VCPUS, EVTCHNS_PER_BUCKET,
};
pub use two_level::{clear_pending, set_pending, unmask, EventWords, Notify};
