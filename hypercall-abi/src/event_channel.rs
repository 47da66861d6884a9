//! `__HYPERVISOR_event_channel_op` (`public/event_channel.h`): allocating,
//! binding, closing and signalling event channels, their argument structs,
//! status codes, and the FIFO event-channel ABI constants.

use crate::{union_read, union_write, DomId, EvtchnPort, XenPfn};
use zerocopy::IntoBytes;

abi_enum! {
    /// `__HYPERVISOR_event_channel_op` commands (`EVTCHNOP_*`); call is
    /// `event_channel_op(cmd, arg)` with `arg` the struct named per command.
    pub enum EvtchnOp: u32, raw u64 {
        /// Connect to a remote domain's unbound port; [`EvtchnBindInterdomain`].
        BindInterdomain = 0 => "EVTCHNOP_bind_interdomain",
        /// Bind a VIRQ on a vCPU; [`EvtchnBindVirq`].
        BindVirq = 1 => "EVTCHNOP_bind_virq",
        /// Bind a physical IRQ; [`EvtchnBindPirq`].
        BindPirq = 2 => "EVTCHNOP_bind_pirq",
        /// Close a port; [`EvtchnClose`].
        Close = 3 => "EVTCHNOP_close",
        /// Signal the remote end; [`EvtchnSend`].
        Send = 4 => "EVTCHNOP_send",
        /// Query a port; [`EvtchnStatus`].
        Status = 5 => "EVTCHNOP_status",
        /// Allocate a port for a remote domain to bind; [`EvtchnAllocUnbound`].
        AllocUnbound = 6 => "EVTCHNOP_alloc_unbound",
        /// Allocate an IPI port on a vCPU; [`EvtchnBindIpi`].
        BindIpi = 7 => "EVTCHNOP_bind_ipi",
        /// Change the notified vCPU; [`EvtchnBindVcpu`].
        BindVcpu = 8 => "EVTCHNOP_bind_vcpu",
        /// Unmask a port (and re-raise if pending); [`EvtchnUnmask`].
        Unmask = 9 => "EVTCHNOP_unmask",
        /// Close all of a domain's ports; [`EvtchnReset`].
        Reset = 10 => "EVTCHNOP_reset",
        /// Switch to the FIFO ABI for a vCPU; [`EvtchnInitControl`].
        InitControl = 11 => "EVTCHNOP_init_control",
        /// Add an event-array page (FIFO ABI); [`EvtchnExpandArray`].
        ExpandArray = 12 => "EVTCHNOP_expand_array",
        /// Set a port's FIFO priority; [`EvtchnSetPriority`].
        SetPriority = 13 => "EVTCHNOP_set_priority",
    }
}

abi_enum! {
    /// Port states reported in [`EvtchnStatus::status`] (`EVTCHNSTAT_*`).
    pub enum EvtchnStat: u32, raw u64 {
        /// Port is free.
        Closed = 0 => "EVTCHNSTAT_closed",
        /// Allocated, waiting for the remote domain to bind.
        Unbound = 1 => "EVTCHNSTAT_unbound",
        /// Connected to a remote domain's port.
        Interdomain = 2 => "EVTCHNSTAT_interdomain",
        /// Bound to a physical IRQ.
        Pirq = 3 => "EVTCHNSTAT_pirq",
        /// Bound to a VIRQ.
        Virq = 4 => "EVTCHNSTAT_virq",
        /// Bound for IPIs.
        Ipi = 5 => "EVTCHNSTAT_ipi",
    }
}

/// `evtchn_bind_pirq.flags`: the PIRQ may be shared with other domains.
pub const BIND_PIRQ_WILL_SHARE: u32 = 1 << 0;

/// Number of ports in the 2-level ABI (64 × 64).
pub const EVTCHN_2L_NR_CHANNELS: u32 = 4096;

abi_struct! {
    /// `EVTCHNOP_alloc_unbound`: the caller sets `dom` and `remote_dom`; Xen
    /// returns the new `port`.
    pub struct EvtchnAllocUnbound {
        /// Domain in which to allocate (usually `DOMID_SELF`).
        pub dom: DomId,
        /// Domain allowed to bind the port.
        pub remote_dom: DomId,
        /// Allocated port (output).
        pub port: EvtchnPort,
    }
}

abi_struct! {
    /// `EVTCHNOP_bind_interdomain`: the caller sets `remote_dom`/`remote_port`;
    /// Xen returns `local_port`.
    pub struct EvtchnBindInterdomain {
        /// Remote domain.
        pub remote_dom: DomId,
        /// Implicit C padding; zero.
        pub _pad2: u16,
        /// Remote (unbound) port.
        pub remote_port: EvtchnPort,
        /// Local port (output).
        pub local_port: EvtchnPort,
    }
}

abi_struct! {
    /// `EVTCHNOP_bind_virq`: caller sets `virq`/`vcpu`, Xen returns `port`.
    pub struct EvtchnBindVirq {
        /// A [`crate::xen::Virq`].
        pub virq: u32,
        /// vCPU to notify.
        pub vcpu: u32,
        /// Port (output).
        pub port: EvtchnPort,
    }
}

abi_struct! {
    /// `EVTCHNOP_bind_pirq`: caller sets `pirq`/`flags`, Xen returns `port`.
    pub struct EvtchnBindPirq {
        /// Physical IRQ.
        pub pirq: u32,
        /// `BIND_PIRQ__*` flags.
        pub flags: u32,
        /// Port (output).
        pub port: EvtchnPort,
    }
}

abi_struct! {
    /// `EVTCHNOP_bind_ipi`: caller sets `vcpu`, Xen returns `port`.
    pub struct EvtchnBindIpi {
        /// vCPU to notify.
        pub vcpu: u32,
        /// Port (output).
        pub port: EvtchnPort,
    }
}

abi_struct! {
    /// `EVTCHNOP_close`.
    pub struct EvtchnClose {
        /// Port to close.
        pub port: EvtchnPort,
    }
}

abi_struct! {
    /// `EVTCHNOP_send`.
    pub struct EvtchnSend {
        /// Local port whose remote end is notified.
        pub port: EvtchnPort,
    }
}

abi_struct! {
    /// `evtchn_status.u.interdomain` (the largest member of the `u` union).
    pub struct EvtchnStatusInterdomain {
        /// Remote domain (also `u.unbound.dom`).
        pub dom: DomId,
        /// Implicit C padding.
        pub _pad2: u16,
        /// Remote port.
        pub port: EvtchnPort,
    }
}

abi_struct! {
    /// `EVTCHNOP_status`: caller sets `dom`/`port`; Xen fills the rest.
    /// The C union `u` is stored as its largest member (`interdomain`); use the
    /// accessors for the other members.
    pub struct EvtchnStatus {
        /// Domain to query.
        pub dom: DomId,
        /// Implicit C padding; zero.
        pub _pad2: u16,
        /// Port to query.
        pub port: EvtchnPort,
        /// An [`EvtchnStat`] (output).
        pub status: u32,
        /// vCPU notified (output).
        pub vcpu: u32,
        /// Union `u` (output): `unbound.dom`, `interdomain`, `pirq` or `virq`.
        pub u: EvtchnStatusInterdomain,
    }
}

impl EvtchnStatus {
    /// `u.unbound.dom`: the domain allowed to bind an unbound port.
    pub const fn unbound_dom(&self) -> DomId {
        self.u.dom
    }
    /// `u.pirq` (first 4 bytes of the union).
    pub fn pirq(&self) -> u32 {
        union_read(self.u.as_bytes())
    }
    /// `u.virq` (first 4 bytes of the union).
    pub fn virq(&self) -> u32 {
        self.pirq()
    }
    /// Sets the first 4 bytes of the union (`u.pirq` / `u.virq`), zeroing the rest.
    pub fn set_irq(&mut self, v: u32) {
        union_write(self.u.as_mut_bytes(), &v)
    }
}

abi_struct! {
    /// `EVTCHNOP_bind_vcpu`.
    pub struct EvtchnBindVcpu {
        /// Port to re-target.
        pub port: EvtchnPort,
        /// New vCPU.
        pub vcpu: u32,
    }
}

abi_struct! {
    /// `EVTCHNOP_unmask`.
    pub struct EvtchnUnmask {
        /// Port to unmask.
        pub port: EvtchnPort,
    }
}

abi_struct! {
    /// `EVTCHNOP_reset`.
    pub struct EvtchnReset {
        /// Domain whose ports are closed.
        pub dom: DomId,
    }
}

abi_struct! {
    /// `EVTCHNOP_init_control`: register a FIFO control block for a vCPU.
    pub struct EvtchnInitControl {
        /// GFN of the page holding the control block.
        pub control_gfn: XenPfn,
        /// Byte offset of the control block in that page.
        pub offset: u32,
        /// vCPU.
        pub vcpu: u32,
        /// Number of link bits in an event word (output).
        pub link_bits: u8,
        /// Padding; zero.
        pub _pad: [u8; 7],
    }
}

abi_struct! {
    /// `EVTCHNOP_expand_array`.
    pub struct EvtchnExpandArray {
        /// GFN of the new event-array page.
        pub array_gfn: XenPfn,
    }
}

abi_struct! {
    /// `EVTCHNOP_set_priority`.
    pub struct EvtchnSetPriority {
        /// Port.
        pub port: EvtchnPort,
        /// Priority (0 highest .. 15 lowest).
        pub priority: u32,
    }
}

/// Size of the `u` union in [`EvtchnOpCompat`] (largest member: `evtchn_status`).
pub const EVTCHN_OP_UNION_SIZE: usize = 24;

abi_struct! {
    /// Argument of the old `__HYPERVISOR_event_channel_op_compat`
    /// (`struct evtchn_op`): `cmd` followed by the per-command struct, stored as
    /// bytes (read with zerocopy, e.g. `EvtchnSend::read_from_prefix(&op.u)`).
    pub struct EvtchnOpCompat {
        /// An [`EvtchnOp`].
        pub cmd: u32,
        /// Union of the argument structs.
        pub u: [u8; EVTCHN_OP_UNION_SIZE],
    }
}

// FIFO ABI -----------------------------------------------------------------

/// FIFO event word bit: event is pending.
pub const EVTCHN_FIFO_PENDING: u32 = 31;
/// FIFO event word bit: event is masked.
pub const EVTCHN_FIFO_MASKED: u32 = 30;
/// FIFO event word bit: event is linked in a queue.
pub const EVTCHN_FIFO_LINKED: u32 = 29;
/// FIFO event word bit: event is being processed by Xen.
pub const EVTCHN_FIFO_BUSY: u32 = 28;
/// Number of link bits in a FIFO event word.
pub const EVTCHN_FIFO_LINK_BITS: u32 = 17;
/// Mask of the link field.
pub const EVTCHN_FIFO_LINK_MASK: u32 = (1 << EVTCHN_FIFO_LINK_BITS) - 1;
/// Number of ports in the FIFO ABI.
pub const EVTCHN_FIFO_NR_CHANNELS: u32 = 1 << EVTCHN_FIFO_LINK_BITS;
/// Highest FIFO priority.
pub const EVTCHN_FIFO_PRIORITY_MAX: u32 = 0;
/// Default FIFO priority.
pub const EVTCHN_FIFO_PRIORITY_DEFAULT: u32 = 7;
/// Lowest FIFO priority.
pub const EVTCHN_FIFO_PRIORITY_MIN: u32 = 15;
/// Number of FIFO priority queues.
pub const EVTCHN_FIFO_MAX_QUEUES: usize = (EVTCHN_FIFO_PRIORITY_MIN + 1) as usize;

abi_struct! {
    /// Per-vCPU FIFO control block (`struct evtchn_fifo_control_block`):
    /// Xen sets `ready` bits and queue heads, the guest consumes them.
    pub struct EvtchnFifoControlBlock {
        /// Bit N set: queue N has events.
        pub ready: u32,
        /// Reserved.
        pub _rsvd: u32,
        /// Head port of each priority queue.
        pub head: [u32; EVTCHN_FIFO_MAX_QUEUES],
    }
}

zeroed_default!(
    EvtchnAllocUnbound,
    EvtchnBindInterdomain,
    EvtchnBindVirq,
    EvtchnBindPirq,
    EvtchnBindIpi,
    EvtchnClose,
    EvtchnSend,
    EvtchnStatusInterdomain,
    EvtchnStatus,
    EvtchnBindVcpu,
    EvtchnUnmask,
    EvtchnReset,
    EvtchnInitControl,
    EvtchnExpandArray,
    EvtchnSetPriority,
    EvtchnOpCompat,
    EvtchnFifoControlBlock,
);
