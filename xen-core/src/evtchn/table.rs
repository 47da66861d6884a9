//! A domain's event channel table (Xen's `struct evtchn` array plus the
//! per-domain / per-vCPU event state of `struct domain` and `struct vcpu`)
//! and the `EVTCHNOP_*` state machine over it (Xen's
//! `common/event_channel.c`).

use super::two_level::{self, EventWords, Notify};
use hypercall_abi::errno::Errno;
use hypercall_abi::event_channel::{EvtchnStat, EvtchnStatus, EVTCHN_2L_NR_CHANNELS};
use hypercall_abi::xen::{Virq, DOMID_SELF, NR_VIRQS, XEN_LEGACY_MAX_VCPUS};
use hypercall_abi::DomId;

/// Default port capacity of a table: the 2-level ABI's 4096 ports.
pub const DEFAULT_PORTS: usize = EVTCHN_2L_NR_CHANNELS as usize;

/// Default vCPU capacity of a table: the vCPUs whose `vcpu_info` lives in
/// shared_info (`XEN_LEGACY_MAX_VCPUS`).
pub const DEFAULT_VCPUS: usize = XEN_LEGACY_MAX_VCPUS;

/// Ports per bucket of Xen's channel storage (`EVTCHNS_PER_BUCKET`: a page
/// of 64-byte `struct evtchn`s). A port is valid once its bucket has been
/// allocated: a fresh domain has the first bucket, and `get_free_port`
/// adds one whenever every valid port is in use.
pub const EVTCHNS_PER_BUCKET: u32 = 64;

const NR_VIRQS_USIZE: usize = NR_VIRQS as usize;

/// Xen's `virq_is_global`: VIRQs bound once per domain (on vCPU 0, then
/// movable with `EVTCHNOP_bind_vcpu`) as opposed to once per vCPU.
///
/// Per-vCPU: `VIRQ_TIMER`, `VIRQ_DEBUG`, `VIRQ_XENOPROF`, `VIRQ_XENPMU`.
/// Everything else below `NR_VIRQS` is global, including the unnamed
/// numbers (5, 14, 15) and, on x86, all of `VIRQ_ARCH_0..7`.
pub const fn virq_is_global(virq: u32) -> bool {
    !(virq == Virq::Timer.raw()
        || virq == Virq::Debug.raw()
        || virq == Virq::Xenoprof.raw()
        || virq == Virq::Xenpmu.raw())
}

/// The state of one port (Xen's `ECS_*` plus the `u` union of `struct
/// evtchn`).
///
/// `repr(u8)` with `Free` as tag 0 makes an all-zero `PortState` a valid
/// `Free` (see [`EvtchnTable::init`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PortState {
    /// Not in use (`ECS_FREE`).
    Free = 0,
    /// Never allocatable: port 0 (`ECS_RESERVED`).
    Reserved,
    /// Allocated by `EVTCHNOP_alloc_unbound`, waiting for `remote_dom` to
    /// bind it (`ECS_UNBOUND`).
    Unbound {
        /// The domain allowed to bind it.
        remote_dom: DomId,
    },
    /// Connected to `remote_port` of `remote_dom` (`ECS_INTERDOMAIN`);
    /// `remote_dom` may be this domain (loopback).
    Interdomain {
        /// The other end's domain.
        remote_dom: DomId,
        /// The other end's port.
        remote_port: u32,
    },
    /// Bound to a physical IRQ (`ECS_PIRQ`, `EVTCHNOP_bind_pirq`).
    Pirq {
        /// The PIRQ.
        pirq: u32,
    },
    /// Bound to VIRQ `virq` (`ECS_VIRQ`) in the `virq_to_evtchn` slot of
    /// vCPU `vcpu` (0 for global VIRQs, whose notified vCPU can move).
    Virq {
        /// The VIRQ number (below `NR_VIRQS`).
        virq: u32,
        /// The vCPU whose binding this is.
        vcpu: u32,
    },
    /// An IPI port (`ECS_IPI`), delivered to its notify vCPU.
    Ipi,
}

impl PortState {
    /// Xen's `evtchn_usable` for guest-bound channels: events can be raised
    /// and unmasked only on ports past `ECS_RESERVED`.
    const fn usable(self) -> bool {
        !matches!(self, PortState::Free | PortState::Reserved)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Channel {
    state: PortState,
    notify_vcpu: u32,
    /// Xen-attached (Xen's `xen_consumer`): a port the hypervisor itself
    /// uses in this domain's table, such as an HVM vCPU's ioreq port to
    /// the device model. The guest cannot close or move it
    /// ([`EvtchnTable::guest_close`], [`EvtchnTable::bind_vcpu`],
    /// [`EvtchnTable::guest_reset`]); tear-down closes it like any other.
    xen: bool,
}

impl Channel {
    const FREE: Channel = Channel {
        state: PortState::Free,
        notify_vcpu: 0,
        xen: false,
    };
}

/// An event to raise: set `port` pending in domain `dom` (through that
/// domain's table, [`EvtchnTable::raise`], which knows the notify vCPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Domain owning the port.
    pub dom: DomId,
    /// The port.
    pub port: u32,
}

/// One domain's event channel table: up to `N` ports (at most the 2-level
/// ABI's 4096 are used) and VIRQ bindings for up to `V` vCPUs.
///
/// All storage is inline (`N` × 16 bytes plus `V` × 96 bytes): no
/// allocation, and `new` is `const`. A table too big for the stack (the
/// default one is about 67 KiB) can be built in place: every field is valid
/// when all its bytes are zero (integers, `bool`, and [`PortState`], whose
/// tag 0 is `Free`), so zeroed heap memory is a valid, empty table that
/// [`EvtchnTable::init`] then turns into `new(domid, nr_vcpus)`.
#[derive(Clone, Debug)]
pub struct EvtchnTable<const N: usize = DEFAULT_PORTS, const V: usize = DEFAULT_VCPUS> {
    domid: DomId,
    nr_vcpus: u32,
    max_evtchn_port: u32,
    dying: bool,
    /// Xen's `d->valid_evtchns`: ports below this are valid (allocated
    /// buckets); a multiple of [`EVTCHNS_PER_BUCKET`] capped at `CAPACITY`.
    valid: u32,
    chans: [Channel; N],
    virq_to_evtchn: [[u32; NR_VIRQS_USIZE]; V],
}

impl<const N: usize, const V: usize> EvtchnTable<N, V> {
    /// Ports addressable in this table: `min(N, EVTCHN_2L_NR_CHANNELS)`.
    /// Ports at or above this are never valid (`-EINVAL`); below it, a port
    /// is valid once its 64-port bucket is in use, as in Xen.
    pub const CAPACITY: u32 = if N < DEFAULT_PORTS {
        N as u32
    } else {
        EVTCHN_2L_NR_CHANNELS
    };

    /// Valid ports of a fresh table: the first bucket (Xen's `evtchn_init`).
    const FIRST_BUCKET: u32 = if Self::CAPACITY < EVTCHNS_PER_BUCKET {
        Self::CAPACITY
    } else {
        EVTCHNS_PER_BUCKET
    };

    /// A table for domain `domid` with `nr_vcpus` vCPUs (clamped to `V`):
    /// every port free except the reserved port 0, no VIRQ bound, the first
    /// bucket of 64 ports valid, and the port limit at the table's capacity
    /// (`max_evtchn_port = CAPACITY - 1`).
    pub const fn new(domid: DomId, nr_vcpus: u32) -> Self {
        let mut chans = [Channel::FREE; N];
        if N > 0 {
            chans[0].state = PortState::Reserved;
        }
        EvtchnTable {
            domid,
            nr_vcpus: clamp_vcpus::<V>(nr_vcpus),
            max_evtchn_port: Self::CAPACITY.saturating_sub(1),
            dying: false,
            valid: Self::FIRST_BUCKET,
            chans,
            virq_to_evtchn: [[0; NR_VIRQS_USIZE]; V],
        }
    }

    /// Makes this table exactly what [`EvtchnTable::new`]`(domid, nr_vcpus)`
    /// returns, in place (for tables built in zeroed heap memory rather
    /// than on the stack; see the type's documentation).
    pub fn init(&mut self, domid: DomId, nr_vcpus: u32) {
        self.domid = domid;
        self.nr_vcpus = clamp_vcpus::<V>(nr_vcpus);
        self.max_evtchn_port = Self::CAPACITY.saturating_sub(1);
        self.dying = false;
        self.valid = Self::FIRST_BUCKET;
        self.chans.fill(Channel::FREE);
        if let Some(c) = self.chans.first_mut() {
            c.state = PortState::Reserved;
        }
        for v in self.virq_to_evtchn.iter_mut() {
            v.fill(0);
        }
    }

    /// The domain this table belongs to.
    pub const fn domid(&self) -> DomId {
        self.domid
    }

    /// The domain's vCPU count (vCPU ids `0..nr_vcpus` exist).
    pub const fn nr_vcpus(&self) -> u32 {
        self.nr_vcpus
    }

    /// Sets the domain's vCPU count (clamped to `V`). Lowering it does not
    /// unbind anything already bound to the vCPUs that go away.
    pub fn set_nr_vcpus(&mut self, nr_vcpus: u32) {
        self.nr_vcpus = clamp_vcpus::<V>(nr_vcpus);
    }

    /// Xen's `d->max_evtchn_port`: the highest port number that may be
    /// allocated.
    pub const fn max_evtchn_port(&self) -> u32 {
        self.max_evtchn_port
    }

    /// Sets the highest allocatable port (`XEN_DOMCTL_set_max_evtchn`, the
    /// toolstack's `event_channels`). As in Xen, ports already bound above
    /// the new limit stay bound; only new allocations are limited. Values
    /// at or beyond the capacity simply mean "no limit but the capacity".
    pub fn set_max_evtchn_port(&mut self, max_port: u32) {
        self.max_evtchn_port = max_port;
    }

    /// Marks the domain dying (Xen's `d->is_dying`): every later allocation
    /// fails with `-EINVAL`. Tear-down then closes everything with
    /// [`EvtchnTable::reset`].
    pub fn set_dying(&mut self) {
        self.dying = true;
    }

    /// Xen's `port_is_valid`: whether `port` is inside an allocated bucket
    /// (bound or not; port 0 is valid but reserved). Ports become valid 64
    /// at a time as allocation needs them and stay valid.
    pub const fn port_is_valid(&self, port: u32) -> bool {
        port < self.valid && port < Self::CAPACITY
    }

    /// Xen's `d->valid_evtchns`: the number of valid ports (ports
    /// `0..valid_ports()` are valid).
    pub const fn valid_ports(&self) -> u32 {
        self.valid
    }

    /// `port`'s state, or `None` if the port is invalid.
    pub fn state(&self, port: u32) -> Option<PortState> {
        self.chan(port).map(|c| c.state)
    }

    /// The vCPU `port` notifies, or `None` if the port is invalid.
    pub fn notify_vcpu(&self, port: u32) -> Option<u32> {
        self.chan(port).map(|c| c.notify_vcpu)
    }

    /// Number of ports in use (neither free nor reserved).
    pub fn active_ports(&self) -> usize {
        self.chans.iter().filter(|c| c.state.usable()).count()
    }

    /// The other domain whose table [`EvtchnTable::close`] needs for
    /// `port`: `Some(dom)` if `port` is interdomain-bound to a *different*
    /// domain, `None` otherwise (including loopback channels).
    pub fn peer_domain(&self, port: u32) -> Option<DomId> {
        match self.state(port)? {
            PortState::Interdomain { remote_dom, .. } if remote_dom != self.domid => {
                Some(remote_dom)
            }
            _ => None,
        }
    }

    /// The port VIRQ `virq` is bound to for `vcpu` (Xen's
    /// `v->virq_to_evtchn[virq]`; global VIRQs live in vCPU 0's slot), if
    /// any.
    pub fn virq_port(&self, vcpu: u32, virq: u32) -> Option<u32> {
        let slot = self
            .virq_to_evtchn
            .get(usize_of(vcpu))?
            .get(usize_of(virq))?;
        (*slot != 0).then_some(*slot)
    }

    // --- operations ---------------------------------------------------

    /// `EVTCHNOP_alloc_unbound` in this (the target `dom`'s) table: a fresh
    /// port that `remote_dom` may bind. `remote_dom == DOMID_SELF` means the
    /// *calling* domain `caller` (as in Xen, not necessarily this table's
    /// domain). The glue resolves `dom`, refuses a missing domain with
    /// `-ESRCH` and an unprivileged caller naming another domain with
    /// `-EPERM` before calling.
    ///
    /// Errors: `-EINVAL` if the domain is dying, `-ENOSPC` if no port is
    /// free up to `max_evtchn_port`.
    pub fn alloc_unbound(&mut self, caller: DomId, remote_dom: DomId) -> Result<u32, Errno> {
        let port = self.get_free_port()?;
        let remote_dom = if remote_dom == DOMID_SELF {
            caller
        } else {
            remote_dom
        };
        self.set_state(port, PortState::Unbound { remote_dom });
        Ok(port)
    }

    /// `EVTCHNOP_bind_interdomain`: connects a fresh port of `local` (the
    /// caller's table) to `remote_port`, an unbound port of the remote
    /// domain that names `local`'s domain as its `remote_dom`.
    ///
    /// `remote` is the remote domain's table, or `None` when the remote
    /// domain is the caller itself (loopback: both ends in `local`). The
    /// glue resolves `DOMID_SELF`, fails a missing domain with `-ESRCH`,
    /// and holds both tables' locks.
    ///
    /// As Xen does, the new local port is conservatively raised at once
    /// (notifications sent to the unbound remote port were dropped), through
    /// `local_words`; the returned [`Notify`] says whether to kick the
    /// local domain's vCPU 0.
    ///
    /// Errors, in Xen's order: `-EINVAL` (local domain dying) or `-ENOSPC`
    /// (no free local port); then `-EINVAL` if `remote_port` is outside the
    /// remote table, not unbound, or unbound for another domain.
    pub fn bind_interdomain<W: EventWords + ?Sized>(
        local: &mut Self,
        remote: Option<&mut Self>,
        remote_port: u32,
        local_words: &W,
    ) -> Result<(u32, Notify), Errno> {
        let lport = local.get_free_port()?;
        let ldom = local.domid;
        let accepts = |t: &Self| {
            matches!(t.state(remote_port),
                Some(PortState::Unbound { remote_dom }) if remote_dom == ldom)
        };
        match remote {
            None => {
                if !accepts(local) {
                    return Err(Errno::EINVAL);
                }
                local.set_state(
                    remote_port,
                    PortState::Interdomain {
                        remote_dom: ldom,
                        remote_port: lport,
                    },
                );
                local.set_state(
                    lport,
                    PortState::Interdomain {
                        remote_dom: ldom,
                        remote_port,
                    },
                );
            }
            Some(r) => {
                if !accepts(r) {
                    return Err(Errno::EINVAL);
                }
                r.set_state(
                    remote_port,
                    PortState::Interdomain {
                        remote_dom: ldom,
                        remote_port: lport,
                    },
                );
                local.set_state(
                    lport,
                    PortState::Interdomain {
                        remote_dom: r.domid,
                        remote_port,
                    },
                );
            }
        }
        let notify = local.raise(local_words, lport);
        Ok((lport, notify))
    }

    /// `EVTCHNOP_bind_virq`: binds VIRQ `virq` on `vcpu` to a fresh port
    /// notifying `vcpu`.
    ///
    /// Errors, in Xen's order: `-EINVAL` if `virq >= NR_VIRQS`; `-EINVAL`
    /// for a global VIRQ on a vCPU other than 0; `-ENOENT` if `vcpu` does
    /// not exist; `-EEXIST` if that VIRQ is already bound on that vCPU (for
    /// a global VIRQ: at all); then the allocation errors (`-EINVAL` dying,
    /// `-ENOSPC`).
    pub fn bind_virq(&mut self, virq: u32, vcpu: u32) -> Result<u32, Errno> {
        if virq >= NR_VIRQS {
            return Err(Errno::EINVAL);
        }
        if virq_is_global(virq) && vcpu != 0 {
            return Err(Errno::EINVAL);
        }
        self.check_vcpu(vcpu)?;
        if self.virq_port(vcpu, virq).is_some() {
            return Err(Errno::EEXIST);
        }
        let port = self.get_free_port()?;
        self.set_state(port, PortState::Virq { virq, vcpu });
        self.set_notify(port, vcpu);
        self.set_virq_slot(vcpu, virq, port);
        Ok(port)
    }

    /// `EVTCHNOP_bind_ipi`: a fresh IPI port notifying `vcpu`.
    ///
    /// Errors: `-ENOENT` if `vcpu` does not exist, then the allocation
    /// errors (`-EINVAL` dying, `-ENOSPC`).
    pub fn bind_ipi(&mut self, vcpu: u32) -> Result<u32, Errno> {
        self.check_vcpu(vcpu)?;
        let port = self.get_free_port()?;
        self.set_state(port, PortState::Ipi);
        self.set_notify(port, vcpu);
        Ok(port)
    }

    /// `EVTCHNOP_bind_pirq` (`evtchn_bind_pirq`): a fresh port bound to
    /// `pirq`, notifying vCPU 0. The caller has already made the PIRQ
    /// checks, in Xen's order (`-EINVAL` for a PIRQ past the domain's,
    /// `-EPERM` for one not mapped to it, `-EEXIST` if a port is bound to
    /// it already); what is left are the allocation errors (`-EINVAL`
    /// dying, `-ENOSPC`). `flags` (`BIND_PIRQ__WILL_SHARE`) changes
    /// nothing here: sharing is the IRQ's business.
    pub fn bind_pirq(&mut self, pirq: u32, _flags: u32) -> Result<u32, Errno> {
        let port = self.get_free_port()?;
        self.set_state(port, PortState::Pirq { pirq });
        self.set_notify(port, 0);
        Ok(port)
    }

    /// The PIRQ `port` is bound to, if it is a PIRQ port.
    pub fn pirq_of(&self, port: u32) -> Option<u32> {
        match self.state(port)? {
            PortState::Pirq { pirq } => Some(pirq),
            _ => None,
        }
    }

    /// `EVTCHNOP_bind_vcpu`: makes `port` notify `vcpu` from now on.
    ///
    /// Allowed for unbound, interdomain, PIRQ and *global* VIRQ ports.
    /// Errors, in Xen's order: `-ENOENT` if `vcpu` does not exist; `-EINVAL`
    /// if `port` is invalid; `-EINVAL` for free, reserved, IPI and per-vCPU
    /// VIRQ ports.
    pub fn bind_vcpu(&mut self, port: u32, vcpu: u32) -> Result<(), Errno> {
        self.check_vcpu(vcpu)?;
        let state = self.state(port).ok_or(Errno::EINVAL)?;
        // Xen: "Guest cannot re-bind a Xen-attached event channel."
        if self.is_xen_attached(port) {
            return Err(Errno::EINVAL);
        }
        match state {
            PortState::Virq { virq, .. } if !virq_is_global(virq) => Err(Errno::EINVAL),
            PortState::Virq { .. }
            | PortState::Unbound { .. }
            | PortState::Interdomain { .. }
            | PortState::Pirq { .. } => {
                self.set_notify(port, vcpu);
                Ok(())
            }
            PortState::Free | PortState::Reserved | PortState::Ipi => Err(Errno::EINVAL),
        }
    }

    /// `EVTCHNOP_close` of `port` in `local` (Xen's `evtchn_close`).
    ///
    /// The port is freed: its pending bit is cleared through `words`
    /// (`local`'s event words), its notify vCPU reset to 0, a VIRQ binding
    /// dropped. Closing one end of an interdomain channel turns the other
    /// end back into an unbound port for `local`'s domain, as Xen does; for
    /// that the caller passes the other domain's table as `remote` (see
    /// [`EvtchnTable::peer_domain`]), or `None` for every other port,
    /// including loopback channels whose two ends are both in `local`.
    ///
    /// Errors: `-EINVAL` if `port` is invalid, free or reserved; `-EINVAL`
    /// (nothing changed) if `port` is interdomain and `remote` is not the
    /// table of its peer domain — Xen's answer when the peer changed under
    /// it.
    pub fn close<W: EventWords + ?Sized>(
        local: &mut Self,
        remote: Option<&mut Self>,
        port: u32,
        words: &W,
    ) -> Result<(), Errno> {
        let state = local.state(port).ok_or(Errno::EINVAL)?;
        match state {
            PortState::Free | PortState::Reserved => return Err(Errno::EINVAL),
            PortState::Unbound { .. } | PortState::Ipi | PortState::Pirq { .. } => {}
            PortState::Virq { virq, vcpu } => {
                if local.virq_port(vcpu, virq) == Some(port) {
                    local.set_virq_slot(vcpu, virq, 0);
                }
            }
            PortState::Interdomain {
                remote_dom,
                remote_port,
            } => {
                let ldom = local.domid;
                if remote_dom == ldom {
                    if remote.is_some() {
                        return Err(Errno::EINVAL);
                    }
                    local.peer_closed(remote_port, ldom, port);
                } else {
                    match remote {
                        Some(r) if r.domid == remote_dom => r.peer_closed(remote_port, ldom, port),
                        _ => return Err(Errno::EINVAL),
                    }
                }
            }
        }
        local.free(port, words);
        Ok(())
    }

    /// Marks `port` Xen-attached (see `Channel::xen`): Xen's
    /// `alloc_unbound_xen_event_channel`, for a port allocated just before
    /// with [`EvtchnTable::alloc_unbound`]. `-EINVAL` for a port not in use.
    pub fn set_xen_attached(&mut self, port: u32) -> Result<(), Errno> {
        match self.chans.get_mut(usize_of(port)) {
            Some(c) if port < self.valid && c.state.usable() => {
                c.xen = true;
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// Whether `port` is Xen-attached.
    pub fn is_xen_attached(&self, port: u32) -> bool {
        self.chan(port).is_some_and(|c| c.xen)
    }

    /// `EVTCHNOP_close` as a guest asks for it: as [`EvtchnTable::close`],
    /// but a Xen-attached port is refused with `-EINVAL` and stays as it
    /// is (Xen's `evtchn_close(d, port, guest = true)`: "Guest cannot
    /// close a Xen-attached event channel").
    pub fn guest_close<W: EventWords + ?Sized>(
        local: &mut Self,
        remote: Option<&mut Self>,
        port: u32,
        words: &W,
    ) -> Result<(), Errno> {
        if local.is_xen_attached(port) {
            return Err(Errno::EINVAL);
        }
        Self::close(local, remote, port, words)
    }

    /// `EVTCHNOP_reset` as a guest (or a privileged domain for a paused
    /// one) asks for it: as [`EvtchnTable::reset`], but Xen-attached ports
    /// are left alone (Xen's `evtchn_reset` closes with `guest = true`).
    pub fn guest_reset<W: EventWords + ?Sized>(&mut self, words: &W) -> Option<(u32, DomId)> {
        self.reset_ports(words, true)
    }

    /// `EVTCHNOP_reset` / domain tear-down: closes every port (from port 1
    /// up, as Xen's `evtchn_reset`).
    ///
    /// Ports whose other end is in another domain need that domain's table:
    /// the first such port stops the walk and is returned with its peer
    /// domain; the caller closes it with [`EvtchnTable::close`] passing the
    /// peer's table and calls `reset` again. `None` means every port is
    /// closed. (Like Xen's continuation, the walk simply resumes; closed
    /// ports stay closed.) The glue checks Xen's preconditions (the caller
    /// resets itself, or a privileged caller resets a paused domain:
    /// otherwise `-EINVAL`/`-EPERM`).
    pub fn reset<W: EventWords + ?Sized>(&mut self, words: &W) -> Option<(u32, DomId)> {
        self.reset_ports(words, false)
    }

    fn reset_ports<W: EventWords + ?Sized>(
        &mut self,
        words: &W,
        keep_xen: bool,
    ) -> Option<(u32, DomId)> {
        for port in 1..self.valid {
            if keep_xen && self.is_xen_attached(port) {
                continue;
            }
            match self.state(port) {
                None | Some(PortState::Free | PortState::Reserved) => {}
                Some(PortState::Interdomain { remote_dom, .. }) if remote_dom != self.domid => {
                    return Some((port, remote_dom));
                }
                Some(_) => {
                    // Cannot fail: the port is bound and needs no other table.
                    let _ = Self::close(self, None, port, words);
                }
            }
        }
        None
    }

    /// `EVTCHNOP_status`: fills `status` (`status.port` names the port;
    /// `status.dom` was resolved by the glue, which also does the privilege
    /// check and `-ESRCH`) with the port's `EVTCHNSTAT_*`, notify vCPU and
    /// union. Union bytes a state does not define are left as the caller
    /// passed them, except that a VIRQ/PIRQ number zeroes the rest of the
    /// union.
    ///
    /// Errors: `-EINVAL` if the port is invalid.
    pub fn status(&self, status: &mut EvtchnStatus) -> Result<(), Errno> {
        let chan = *self.chan(status.port).ok_or(Errno::EINVAL)?;
        let stat = match chan.state {
            PortState::Free | PortState::Reserved => EvtchnStat::Closed,
            PortState::Unbound { remote_dom } => {
                status.u.dom = remote_dom;
                EvtchnStat::Unbound
            }
            PortState::Interdomain {
                remote_dom,
                remote_port,
            } => {
                status.u.dom = remote_dom;
                status.u.port = remote_port;
                EvtchnStat::Interdomain
            }
            PortState::Pirq { pirq } => {
                status.set_irq(pirq);
                EvtchnStat::Pirq
            }
            PortState::Virq { virq, .. } => {
                status.set_irq(virq);
                EvtchnStat::Virq
            }
            PortState::Ipi => EvtchnStat::Ipi,
        };
        status.status = stat.raw();
        status.vcpu = chan.notify_vcpu;
        Ok(())
    }

    /// `EVTCHNOP_unmask` (Xen's `evtchn_unmask` → `evtchn_2l_unmask`):
    /// clears `port`'s mask bit and re-raises it on its notify vCPU if it
    /// is pending. A free or reserved port is left alone (Xen only unmasks
    /// usable channels). Returns whether that vCPU must be kicked.
    ///
    /// Errors: `-EINVAL` if the port is invalid.
    pub fn unmask<W: EventWords + ?Sized>(&self, words: &W, port: u32) -> Result<Notify, Errno> {
        let chan = self.chan(port).ok_or(Errno::EINVAL)?;
        if !chan.state.usable() {
            return Ok(Notify::Nothing);
        }
        Ok(two_level::unmask(words, port, chan.notify_vcpu))
    }

    /// `EVTCHNOP_send` on `port` (Xen's `evtchn_send`): which port to raise.
    ///
    /// Interdomain: the remote end (possibly in this domain, for loopback);
    /// IPI: the port itself; unbound: nothing (`Ok(None)`: Xen silently
    /// drops it). Raise the result with [`EvtchnTable::raise`] on the
    /// table of [`Event::dom`].
    ///
    /// Errors: `-EINVAL` if the port is invalid, free, reserved, VIRQ or
    /// PIRQ.
    pub fn send(&self, port: u32) -> Result<Option<Event>, Errno> {
        match self.state(port).ok_or(Errno::EINVAL)? {
            PortState::Interdomain {
                remote_dom,
                remote_port,
            } => Ok(Some(Event {
                dom: remote_dom,
                port: remote_port,
            })),
            PortState::Ipi => Ok(Some(Event {
                dom: self.domid,
                port,
            })),
            PortState::Unbound { .. } => Ok(None),
            PortState::Free
            | PortState::Reserved
            | PortState::Virq { .. }
            | PortState::Pirq { .. } => Err(Errno::EINVAL),
        }
    }

    /// The port to raise for VIRQ `virq` on `vcpu` (Xen's
    /// `send_guest_vcpu_virq` / `send_guest_global_virq`), or `None` if the
    /// domain has not bound it. For a global VIRQ `vcpu` is ignored: the
    /// binding is the domain's (vCPU 0's slot) and the event goes to the
    /// port's notify vCPU. Raise the result with [`EvtchnTable::raise`].
    pub fn send_virq(&self, vcpu: u32, virq: Virq) -> Option<Event> {
        let virq = virq.raw();
        let slot_vcpu = if virq_is_global(virq) { 0 } else { vcpu };
        let port = self.virq_port(slot_vcpu, virq)?;
        Some(Event {
            dom: self.domid,
            port,
        })
    }

    /// Xen's `evtchn_port_set_pending(d, chn->notify_vcpu_id, chn)`: marks
    /// this domain's `port` pending for its notify vCPU through `words`
    /// (this domain's event words). Does nothing for an invalid, free or
    /// reserved port (so a stale [`Event`] is harmless).
    pub fn raise<W: EventWords + ?Sized>(&self, words: &W, port: u32) -> Notify {
        self.raise_on(words, port).0
    }

    /// [`EvtchnTable::raise`], also giving the vCPU the port notifies (the
    /// one to kick), from the same look-up of the port.
    pub fn raise_on<W: EventWords + ?Sized>(&self, words: &W, port: u32) -> (Notify, u32) {
        match self.chan(port) {
            Some(c) if c.state.usable() => (
                two_level::set_pending(words, port, c.notify_vcpu),
                c.notify_vcpu,
            ),
            _ => (Notify::Nothing, 0),
        }
    }

    // --- internals ----------------------------------------------------

    fn chan(&self, port: u32) -> Option<&Channel> {
        if !self.port_is_valid(port) {
            return None;
        }
        self.chans.get(usize_of(port))
    }

    fn set_state(&mut self, port: u32, state: PortState) {
        if let Some(c) = self.chans.get_mut(usize_of(port)) {
            c.state = state;
        }
    }

    fn set_notify(&mut self, port: u32, vcpu: u32) {
        if let Some(c) = self.chans.get_mut(usize_of(port)) {
            c.notify_vcpu = vcpu;
        }
    }

    fn set_virq_slot(&mut self, vcpu: u32, virq: u32, port: u32) {
        if let Some(slot) = self
            .virq_to_evtchn
            .get_mut(usize_of(vcpu))
            .and_then(|v| v.get_mut(usize_of(virq)))
        {
            *slot = port;
        }
    }

    /// Xen's `get_free_port`: the lowest free port up to `max_evtchn_port`;
    /// when every valid port is taken, the first port of a new bucket
    /// (which makes the bucket's ports valid, as Xen's
    /// `evtchn_allocate_port` does, even if the caller then fails).
    fn get_free_port(&mut self) -> Result<u32, Errno> {
        if self.dying {
            return Err(Errno::EINVAL);
        }
        let limit = Self::CAPACITY.min(self.max_evtchn_port.saturating_add(1));
        if let Some(p) =
            (0..limit.min(self.valid)).find(|&p| matches!(self.state(p), Some(PortState::Free)))
        {
            return Ok(p);
        }
        if self.valid < limit {
            let port = self.valid;
            self.valid = Self::CAPACITY.min(self.valid.saturating_add(EVTCHNS_PER_BUCKET));
            return Ok(port);
        }
        Err(Errno::ENOSPC)
    }

    fn check_vcpu(&self, vcpu: u32) -> Result<(), Errno> {
        if vcpu < self.nr_vcpus {
            Ok(())
        } else {
            Err(Errno::ENOENT)
        }
    }

    /// Xen's `evtchn_free`: clear pending, back to free on vCPU 0.
    fn free<W: EventWords + ?Sized>(&mut self, port: u32, words: &W) {
        two_level::clear_pending(words, port);
        if let Some(c) = self.chans.get_mut(usize_of(port)) {
            *c = Channel::FREE;
        }
    }

    /// The other end of `port` (in `peer_dom`, port `peer_port`) was
    /// closed: `port` goes back to unbound for `peer_dom`. Only if it really
    /// is that channel's other end; anything else is left untouched.
    fn peer_closed(&mut self, port: u32, peer_dom: DomId, peer_port: u32) {
        let expected = PortState::Interdomain {
            remote_dom: peer_dom,
            remote_port: peer_port,
        };
        if self.state(port) == Some(expected) {
            self.set_state(
                port,
                PortState::Unbound {
                    remote_dom: peer_dom,
                },
            );
        }
    }
}

const fn clamp_vcpus<const V: usize>(nr_vcpus: u32) -> u32 {
    if (nr_vcpus as usize) < V {
        nr_vcpus
    } else {
        V as u32
    }
}

/// `u32` → `usize` index; saturates (to an index that is out of range) on
/// targets where it would not fit, which x86_64 is not.
fn usize_of(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}
