//! Host tests for the event channel table and the 2-level machinery.

use super::*;
use core::cell::RefCell;
use hypercall_abi::errno::Errno;
use hypercall_abi::event_channel::{EvtchnStat, EvtchnStatus};
use hypercall_abi::xen::{SharedInfo, Virq, DOMID_SELF, NR_VIRQS};
use hypercall_abi::DomId;

/// A domain's shared_info as plain memory, playing both Xen's and the
/// guest's part.
struct Shared(RefCell<SharedInfo>);

impl Shared {
    fn new() -> Self {
        Shared(RefCell::new(SharedInfo::default()))
    }
    fn pending(&self, port: u32) -> bool {
        self.0.borrow().evtchn_pending[(port / 64) as usize] & (1 << (port % 64)) != 0
    }
    fn masked(&self, port: u32) -> bool {
        self.0.borrow().evtchn_mask[(port / 64) as usize] & (1 << (port % 64)) != 0
    }
    fn sel(&self, vcpu: u32) -> u64 {
        self.0.borrow().vcpu_info[vcpu as usize].evtchn_pending_sel
    }
    fn upcall(&self, vcpu: u32) -> bool {
        self.0.borrow().vcpu_info[vcpu as usize].evtchn_upcall_pending != 0
    }
    /// Guest: set/clear a mask bit.
    fn mask(&self, port: u32, on: bool) {
        let w = &mut self.0.borrow_mut().evtchn_mask[(port / 64) as usize];
        if on {
            *w |= 1 << (port % 64);
        } else {
            *w &= !(1 << (port % 64));
        }
    }
    /// Guest: consume everything (clear pending, selectors, upcall flags).
    fn ack_all(&self) {
        let mut s = self.0.borrow_mut();
        s.evtchn_pending = [0; 64];
        for v in s.vcpu_info.iter_mut() {
            v.evtchn_pending_sel = 0;
            v.evtchn_upcall_pending = 0;
        }
    }
    fn set_upcall_mask(&self, vcpu: u32, m: u8) {
        self.0.borrow_mut().vcpu_info[vcpu as usize].evtchn_upcall_mask = m;
    }
    fn set_upcall_pending_flag(&self, vcpu: u32) {
        self.0.borrow_mut().vcpu_info[vcpu as usize].evtchn_upcall_pending = 1;
    }
    fn set_sel_bit(&self, vcpu: u32, word: u32) {
        self.0.borrow_mut().vcpu_info[vcpu as usize].evtchn_pending_sel |= 1 << word;
    }
    fn set_pending_bit(&self, port: u32) {
        self.0.borrow_mut().evtchn_pending[(port / 64) as usize] |= 1 << (port % 64);
    }
    fn untouched(&self) -> bool {
        *self.0.borrow() == SharedInfo::default()
    }
}

impl EventWords for Shared {
    fn test_and_set_pending(&self, port: u32) -> bool {
        let old = self.pending(port);
        self.set_pending_bit(port);
        old
    }
    fn test_pending(&self, port: u32) -> bool {
        self.pending(port)
    }
    fn clear_pending(&self, port: u32) {
        self.0.borrow_mut().evtchn_pending[(port / 64) as usize] &= !(1 << (port % 64));
    }
    fn is_masked(&self, port: u32) -> bool {
        self.masked(port)
    }
    fn test_and_clear_mask(&self, port: u32) -> bool {
        let old = self.masked(port);
        self.mask(port, false);
        old
    }
    fn test_and_set_sel(&self, vcpu: u32, word: u32) -> bool {
        let old = self.sel(vcpu) & (1 << word) != 0;
        self.set_sel_bit(vcpu, word);
        old
    }
    fn set_upcall_pending(&self, vcpu: u32) -> bool {
        let old = self.upcall(vcpu);
        self.set_upcall_pending_flag(vcpu);
        old
    }
    fn upcall_masked(&self, vcpu: u32) -> bool {
        self.0.borrow().vcpu_info[vcpu as usize].evtchn_upcall_mask != 0
    }
}

type Table = EvtchnTable<64, 4>;
type Big = EvtchnTable;

const D0: DomId = 0;
const D1: DomId = 1;
const D2: DomId = 2;

fn status_of<const N: usize, const V: usize>(t: &EvtchnTable<N, V>, port: u32) -> EvtchnStatus {
    let mut st = EvtchnStatus {
        port,
        ..Default::default()
    };
    t.status(&mut st).expect("status");
    st
}

/// Every interdomain end points back at its peer, and the VIRQ slots and
/// VIRQ ports agree.
fn check_invariants<const N: usize, const V: usize>(tables: &[&EvtchnTable<N, V>]) {
    for t in tables {
        for port in
            EvtchnTable::<N, V>::CAPACITY.min(t.valid_ports())..EvtchnTable::<N, V>::CAPACITY
        {
            assert_eq!(t.state(port), None, "port {port} beyond the valid buckets");
        }
        for port in 0..EvtchnTable::<N, V>::CAPACITY.min(t.valid_ports()) {
            match t.state(port).unwrap() {
                PortState::Reserved => assert_eq!(port, 0),
                PortState::Interdomain {
                    remote_dom,
                    remote_port,
                } => {
                    let peer = tables
                        .iter()
                        .find(|p| p.domid() == remote_dom)
                        .expect("peer table");
                    assert_eq!(
                        peer.state(remote_port),
                        Some(PortState::Interdomain {
                            remote_dom: t.domid(),
                            remote_port: port
                        }),
                        "dom {} port {port}",
                        t.domid()
                    );
                }
                PortState::Virq { virq, vcpu } => {
                    assert_eq!(t.virq_port(vcpu, virq), Some(port));
                    if virq_is_global(virq) {
                        assert_eq!(vcpu, 0);
                    } else {
                        assert_eq!(t.notify_vcpu(port), Some(vcpu));
                    }
                }
                PortState::Ipi => assert!(t.notify_vcpu(port).unwrap() < t.nr_vcpus()),
                _ => {}
            }
            if port == 0 {
                assert_eq!(t.state(0), Some(PortState::Reserved));
            }
        }
        for vcpu in 0..V as u32 {
            for virq in 0..NR_VIRQS {
                if let Some(p) = t.virq_port(vcpu, virq) {
                    assert_eq!(t.state(p), Some(PortState::Virq { virq, vcpu }));
                }
            }
        }
    }
}

// --- virq_is_global / constants -------------------------------------------

#[test]
fn evtchn_virq_globality_matches_xen() {
    for v in [Virq::Timer, Virq::Debug, Virq::Xenoprof, Virq::Xenpmu] {
        assert!(!virq_is_global(v.raw()), "{v}");
        assert!(v.is_per_vcpu());
    }
    for v in [
        Virq::Console,
        Virq::DomExc,
        Virq::Tbuf,
        Virq::Debugger,
        Virq::ConRing,
        Virq::PcpuState,
        Virq::MemEvent,
        Virq::Argo,
        Virq::Enomem,
        Virq::MCA,
        Virq::Arch7,
    ] {
        assert!(virq_is_global(v.raw()), "{v}");
        assert!(!v.is_per_vcpu());
    }
    // Unnamed numbers below NR_VIRQS are global, as in Xen.
    for v in [5, 14, 15] {
        assert!(virq_is_global(v));
    }
}

#[test]
fn evtchn_capacity_and_defaults() {
    assert_eq!(Big::CAPACITY, 4096);
    assert_eq!(DEFAULT_PORTS, 4096);
    assert_eq!(Table::CAPACITY, 64);
    assert_eq!(EvtchnTable::<5000, 1>::CAPACITY, 4096);
    let t = Big::new(D1, 2);
    assert_eq!(t.max_evtchn_port(), 4095);
    assert_eq!(t.domid(), D1);
    assert_eq!(t.nr_vcpus(), 2);
    assert_eq!(t.active_ports(), 0);
    // vCPU count clamped to the table's V.
    assert_eq!(Table::new(D1, 100).nr_vcpus(), 4);
    // A const table (e.g. a static).
    static T: EvtchnTable<16, 2> = EvtchnTable::new(7, 1);
    assert_eq!(T.state(0), Some(PortState::Reserved));
    assert_eq!(T.state(1), Some(PortState::Free));
}

// --- port 0, validity ------------------------------------------------------

#[test]
fn evtchn_port0_reserved_never_allocated() {
    let w = Shared::new();
    let mut t = Table::new(D1, 1);
    assert_eq!(t.state(0), Some(PortState::Reserved));
    let st = status_of(&t, 0);
    assert_eq!(st.status, EvtchnStat::Closed.raw());
    assert_eq!(st.vcpu, 0);
    assert_eq!(Table::close(&mut t, None, 0, &w), Err(Errno::EINVAL));
    assert_eq!(t.send(0), Err(Errno::EINVAL));
    assert_eq!(t.bind_vcpu(0, 0), Err(Errno::EINVAL));
    // Unmasking the reserved port leaves its mask bit alone.
    w.mask(0, true);
    assert_eq!(t.unmask(&w, 0), Ok(Notify::Nothing));
    assert!(w.masked(0));
    assert_eq!(t.alloc_unbound(D1, D0), Ok(1));
    assert_eq!(t.bind_ipi(0), Ok(2));
    assert_eq!(t.state(0), Some(PortState::Reserved));
}

#[test]
fn evtchn_ports_beyond_table_are_einval() {
    let w = Shared::new();
    let mut t = Table::new(D1, 1);
    let mut big = Big::new(D2, 1);
    for port in [64, 65, 4095, 4096, u32::MAX] {
        assert_eq!(t.state(port), None);
        assert!(!t.port_is_valid(port));
        let mut st = EvtchnStatus {
            port,
            ..Default::default()
        };
        assert_eq!(t.status(&mut st), Err(Errno::EINVAL));
        assert_eq!(Table::close(&mut t, None, port, &w), Err(Errno::EINVAL));
        assert_eq!(t.send(port), Err(Errno::EINVAL));
        assert_eq!(t.unmask(&w, port), Err(Errno::EINVAL));
        assert_eq!(t.bind_vcpu(port, 0), Err(Errno::EINVAL));
        assert_eq!(t.raise(&w, port), Notify::Nothing);
        assert_eq!(t.peer_domain(port), None);
        assert_eq!(
            Table::bind_interdomain(&mut t, None, port, &w),
            Err(Errno::EINVAL)
        );
    }
    for port in [4096, u32::MAX] {
        let mut st = EvtchnStatus {
            port,
            ..Default::default()
        };
        assert_eq!(big.status(&mut st), Err(Errno::EINVAL));
        assert_eq!(Big::close(&mut big, None, port, &w), Err(Errno::EINVAL));
        assert_eq!(big.send(port), Err(Errno::EINVAL));
        assert_eq!(big.unmask(&w, port), Err(Errno::EINVAL));
    }
    // Only the first bucket is valid in a fresh table.
    assert!(big.port_is_valid(63));
    assert!(!big.port_is_valid(64));
    assert!(!big.port_is_valid(4095));
    assert!(w.untouched());
}

#[test]
fn evtchn_ports_become_valid_a_bucket_at_a_time() {
    let w = Shared::new();
    let mut t = Big::new(D1, 1);
    assert_eq!(t.valid_ports(), EVTCHNS_PER_BUCKET);
    // Xen: a port in a bucket never allocated is -EINVAL for every op.
    let mut st = EvtchnStatus {
        port: 4000,
        ..Default::default()
    };
    assert_eq!(t.status(&mut st), Err(Errno::EINVAL));
    assert_eq!(t.send(4000), Err(Errno::EINVAL));
    assert_eq!(t.unmask(&w, 4000), Err(Errno::EINVAL));
    assert_eq!(Big::close(&mut t, None, 4000, &w), Err(Errno::EINVAL));
    assert_eq!(t.bind_vcpu(64, 0), Err(Errno::EINVAL));
    for expect in 1..64 {
        assert_eq!(t.bind_ipi(0), Ok(expect));
    }
    assert_eq!(t.valid_ports(), 64);
    // The 64th allocation opens the second bucket.
    assert_eq!(t.bind_ipi(0), Ok(64));
    assert_eq!(t.valid_ports(), 128);
    assert_eq!(t.state(127), Some(PortState::Free));
    assert_eq!(status_of(&t, 127).status, EvtchnStat::Closed.raw());
    assert_eq!(t.state(128), None);
    // Freed ports are reused before another bucket is opened; buckets
    // never go away (not even on reset).
    assert_eq!(Big::close(&mut t, None, 5, &w), Ok(()));
    assert_eq!(t.alloc_unbound(D1, D0), Ok(5));
    assert_eq!(t.reset(&w), None);
    assert_eq!(t.valid_ports(), 128);
    assert_eq!(t.active_ports(), 0);
    check_invariants(&[&t]);
}

#[test]
fn evtchn_bucket_stays_valid_when_the_bind_fails() {
    // Xen's get_free_port allocates the bucket before bind_interdomain
    // looks at the remote port.
    let w = Shared::new();
    let mut t = Big::new(D1, 1);
    for _ in 1..64 {
        t.bind_ipi(0).unwrap();
    }
    assert_eq!(
        Big::bind_interdomain(&mut t, None, 1, &w),
        Err(Errno::EINVAL)
    );
    assert_eq!(t.valid_ports(), 128);
    assert_eq!(t.state(64), Some(PortState::Free));
}

#[test]
fn evtchn_bucket_growth_respects_max_evtchn_port() {
    let mut t = Big::new(D1, 1);
    t.set_max_evtchn_port(70);
    for expect in 1..=70 {
        assert_eq!(t.alloc_unbound(D1, D0), Ok(expect));
    }
    assert_eq!(t.alloc_unbound(D1, D0), Err(Errno::ENOSPC));
    assert_eq!(t.valid_ports(), 128);
    // A small table's only bucket is the whole table.
    let s = EvtchnTable::<16, 1>::new(D1, 1);
    assert_eq!(s.valid_ports(), 16);
    assert!(s.port_is_valid(15));
    assert!(!s.port_is_valid(16));
}

#[test]
fn evtchn_init_in_zeroed_memory_equals_new() {
    // SAFETY: the table documents that all-zero bytes are a valid table
    // (PortState is repr(u8) with Free = 0; every other field is an
    // integer, a bool or an array of them).
    let mut z: std::boxed::Box<Big> = unsafe { std::boxed::Box::new_zeroed().assume_init() };
    assert_eq!(z.state(1), None);
    z.init(D2, 3);
    let n = Big::new(D2, 3);
    assert_eq!(z.domid(), D2);
    assert_eq!(z.nr_vcpus(), 3);
    assert_eq!(z.max_evtchn_port(), n.max_evtchn_port());
    assert_eq!(z.valid_ports(), n.valid_ports());
    for port in 0..Big::CAPACITY {
        assert_eq!(z.state(port), n.state(port));
        assert_eq!(z.notify_vcpu(port), n.notify_vcpu(port));
    }
    // init also wipes a used table.
    let w = Shared::new();
    let p = z.bind_virq(Virq::Timer.raw(), 1).unwrap();
    z.set_dying();
    z.init(D2, 3);
    assert_eq!(z.state(p), Some(PortState::Free));
    assert_eq!(z.virq_port(1, Virq::Timer.raw()), None);
    assert_eq!(z.bind_ipi(0), Ok(1));
    assert!(w.untouched());
}

#[test]
fn evtchn_never_used_port_is_closed() {
    let w = Shared::new();
    let mut t = Table::new(D1, 1);
    let st = status_of(&t, 63);
    assert_eq!(st.status, EvtchnStat::Closed.raw());
    assert_eq!(Table::close(&mut t, None, 63, &w), Err(Errno::EINVAL));
    assert_eq!(t.send(63), Err(Errno::EINVAL));
    assert_eq!(t.unmask(&w, 63), Ok(Notify::Nothing));
}

// --- alloc_unbound ---------------------------------------------------------

#[test]
fn evtchn_alloc_unbound_success_and_self() {
    let mut t = Table::new(D1, 2);
    let p = t.alloc_unbound(D1, D0).unwrap();
    assert_eq!(p, 1);
    assert_eq!(t.state(p), Some(PortState::Unbound { remote_dom: D0 }));
    let st = status_of(&t, p);
    assert_eq!(st.status, EvtchnStat::Unbound.raw());
    assert_eq!(st.unbound_dom(), D0);
    assert_eq!(st.vcpu, 0);
    // DOMID_SELF names the caller.
    let q = t.alloc_unbound(D1, DOMID_SELF).unwrap();
    assert_eq!(q, 2);
    assert_eq!(t.state(q), Some(PortState::Unbound { remote_dom: D1 }));
    // ... the caller, not the table's domain (dom0 allocating in domU 1).
    let r = t.alloc_unbound(D0, DOMID_SELF).unwrap();
    assert_eq!(t.state(r), Some(PortState::Unbound { remote_dom: D0 }));
    // Any remote domid is recorded as given (Xen does not check it).
    let s = t.alloc_unbound(D1, 0x7000).unwrap();
    assert_eq!(t.state(s), Some(PortState::Unbound { remote_dom: 0x7000 }));
    assert_eq!(t.active_ports(), 4);
}

#[test]
fn evtchn_exhaustion_is_enospc() {
    let mut t = EvtchnTable::<8, 1>::new(D1, 1);
    for expect in 1..8 {
        assert_eq!(t.alloc_unbound(D1, D0), Ok(expect));
    }
    assert_eq!(t.alloc_unbound(D1, D0), Err(Errno::ENOSPC));
    assert_eq!(t.bind_ipi(0), Err(Errno::ENOSPC));
    assert_eq!(t.bind_virq(Virq::Timer.raw(), 0), Err(Errno::ENOSPC));
    // A freed port is reused, lowest first.
    let w = Shared::new();
    EvtchnTable::close(&mut t, None, 5, &w).unwrap();
    EvtchnTable::close(&mut t, None, 3, &w).unwrap();
    assert_eq!(t.bind_ipi(0), Ok(3));
    assert_eq!(t.bind_ipi(0), Ok(5));
    assert_eq!(t.bind_ipi(0), Err(Errno::ENOSPC));
}

#[test]
fn evtchn_full_2l_table_exhausts_at_4095_ports() {
    let mut t = Big::new(D1, 1);
    for expect in 1..4096 {
        assert_eq!(t.alloc_unbound(D1, D0), Ok(expect));
    }
    assert_eq!(t.alloc_unbound(D1, D0), Err(Errno::ENOSPC));
    assert_eq!(t.active_ports(), 4095);
}

#[test]
fn evtchn_max_evtchn_port_limits_allocation() {
    let w = Shared::new();
    let mut t = Table::new(D1, 1);
    t.set_max_evtchn_port(3);
    assert_eq!(t.max_evtchn_port(), 3);
    assert_eq!(t.alloc_unbound(D1, D0), Ok(1));
    assert_eq!(t.bind_ipi(0), Ok(2));
    assert_eq!(t.bind_virq(Virq::Console.raw(), 0), Ok(3));
    assert_eq!(t.alloc_unbound(D1, D0), Err(Errno::ENOSPC));
    // Ports above the limit are still valid (just not allocatable).
    assert_eq!(status_of(&t, 10).status, EvtchnStat::Closed.raw());
    // Lowering below bound ports keeps them bound.
    t.set_max_evtchn_port(1);
    assert_eq!(t.state(3), Some(PortState::Virq { virq: 2, vcpu: 0 }));
    Table::close(&mut t, None, 2, &w).unwrap();
    assert_eq!(t.bind_ipi(0), Err(Errno::ENOSPC));
    // Raising it beyond the capacity just means "the capacity".
    t.set_max_evtchn_port(u32::MAX);
    assert_eq!(t.bind_ipi(0), Ok(2));
    for _ in 4..64 {
        t.bind_ipi(0).unwrap();
    }
    assert_eq!(t.bind_ipi(0), Err(Errno::ENOSPC));
    // max port 0: nothing allocatable at all.
    let mut z = Table::new(D1, 1);
    z.set_max_evtchn_port(0);
    assert_eq!(z.alloc_unbound(D1, D0), Err(Errno::ENOSPC));
}

#[test]
fn evtchn_dying_domain_allocates_nothing() {
    let w = Shared::new();
    let mut t = Table::new(D1, 2);
    let mut r = Table::new(D2, 1);
    let rp = r.alloc_unbound(D2, D1).unwrap();
    let ipi = t.bind_ipi(0).unwrap();
    t.set_dying();
    assert_eq!(t.alloc_unbound(D1, D0), Err(Errno::EINVAL));
    assert_eq!(t.bind_ipi(0), Err(Errno::EINVAL));
    assert_eq!(t.bind_virq(0, 0), Err(Errno::EINVAL));
    assert_eq!(
        Table::bind_interdomain(&mut t, Some(&mut r), rp, &w),
        Err(Errno::EINVAL)
    );
    // Vcpu / EEXIST checks still come first.
    assert_eq!(t.bind_ipi(9), Err(Errno::ENOENT));
    // Existing ports still work and close.
    assert_eq!(t.send(ipi), Ok(Some(Event { dom: D1, port: ipi })));
    assert_eq!(Table::close(&mut t, None, ipi, &w), Ok(()));
    assert_eq!(r.state(rp), Some(PortState::Unbound { remote_dom: D1 }));
}

// --- bind_interdomain --------------------------------------------------------

#[test]
fn evtchn_bind_interdomain_two_domains() {
    let (wa, wb) = (Shared::new(), Shared::new());
    let mut a = Table::new(D1, 2);
    let mut b = Table::new(D2, 2);
    // Backend B offers a port to A; A binds it.
    let bp = b.alloc_unbound(D2, D1).unwrap();
    b.bind_vcpu(bp, 1).unwrap();
    let (ap, n) = Table::bind_interdomain(&mut a, Some(&mut b), bp, &wa).unwrap();
    assert_eq!(ap, 1);
    assert_eq!(
        a.state(ap),
        Some(PortState::Interdomain {
            remote_dom: D2,
            remote_port: bp
        })
    );
    assert_eq!(
        b.state(bp),
        Some(PortState::Interdomain {
            remote_dom: D1,
            remote_port: ap
        })
    );
    // The new local port is raised at once, on vCPU 0.
    assert_eq!(n, Notify::Upcall);
    assert!(wa.pending(ap));
    assert_eq!(wa.sel(0), 1);
    assert!(wa.upcall(0));
    assert!(wb.untouched());
    // The remote end keeps its notify vCPU.
    assert_eq!(b.notify_vcpu(bp), Some(1));
    assert_eq!(a.notify_vcpu(ap), Some(0));
    let st = status_of(&a, ap);
    assert_eq!(st.status, EvtchnStat::Interdomain.raw());
    assert_eq!((st.u.dom, st.u.port, st.vcpu), (D2, bp, 0));
    let st = status_of(&b, bp);
    assert_eq!((st.u.dom, st.u.port, st.vcpu), (D1, ap, 1));
    assert_eq!(a.peer_domain(ap), Some(D2));
    assert_eq!(b.peer_domain(bp), Some(D1));
    check_invariants(&[&a, &b]);
}

#[test]
fn evtchn_bind_interdomain_errors() {
    let w = Shared::new();
    let mut a = Table::new(D1, 1);
    let mut b = Table::new(D2, 1);
    let mut c = Table::new(3, 1);
    // Remote port invalid, free, reserved.
    for rp in [0, 5, 64, u32::MAX] {
        assert_eq!(
            Table::bind_interdomain(&mut a, Some(&mut b), rp, &w),
            Err(Errno::EINVAL)
        );
    }
    // Unbound, but for another domain.
    let for_c = b.alloc_unbound(D2, 3).unwrap();
    assert_eq!(
        Table::bind_interdomain(&mut a, Some(&mut b), for_c, &w),
        Err(Errno::EINVAL)
    );
    // Not unbound at all (IPI, VIRQ).
    let ipi = b.bind_ipi(0).unwrap();
    let virq = b.bind_virq(Virq::Console.raw(), 0).unwrap();
    for rp in [ipi, virq] {
        assert_eq!(
            Table::bind_interdomain(&mut a, Some(&mut b), rp, &w),
            Err(Errno::EINVAL)
        );
    }
    // Already bound: a second bind of the same remote port fails.
    let for_a = b.alloc_unbound(D2, D1).unwrap();
    let (ap, _) = Table::bind_interdomain(&mut a, Some(&mut b), for_a, &w).unwrap();
    assert_eq!(
        Table::bind_interdomain(&mut a, Some(&mut b), for_a, &w),
        Err(Errno::EINVAL)
    );
    // ... by anyone.
    assert_eq!(
        Table::bind_interdomain(&mut c, Some(&mut b), for_a, &w),
        Err(Errno::EINVAL)
    );
    // A's own unbound port named as if remote (loopback) for another domain.
    let a_for_d2 = a.alloc_unbound(D1, D2).unwrap();
    assert_eq!(
        Table::bind_interdomain(&mut a, None, a_for_d2, &w),
        Err(Errno::EINVAL)
    );
    // Failures leave both tables as they were (no local port consumed).
    assert_eq!(a.active_ports(), 2);
    assert_eq!(a.state(ap + 2), Some(PortState::Free));
    // C binds its own offer fine.
    let (cp, _) = Table::bind_interdomain(&mut c, Some(&mut b), for_c, &w).unwrap();
    assert_eq!(cp, 1);
    check_invariants(&[&a, &b, &c]);
}

#[test]
fn evtchn_bind_interdomain_local_full_is_enospc_first() {
    let w = Shared::new();
    let mut a = EvtchnTable::<4, 1>::new(D1, 1);
    let mut b = EvtchnTable::<4, 1>::new(D2, 1);
    for _ in 1..4 {
        a.bind_ipi(0).unwrap();
    }
    let bp = b.alloc_unbound(D2, D1).unwrap();
    // Local allocation is checked before the remote port, as in Xen.
    assert_eq!(
        EvtchnTable::bind_interdomain(&mut a, Some(&mut b), 99, &w),
        Err(Errno::ENOSPC)
    );
    assert_eq!(
        EvtchnTable::bind_interdomain(&mut a, Some(&mut b), bp, &w),
        Err(Errno::ENOSPC)
    );
    assert_eq!(b.state(bp), Some(PortState::Unbound { remote_dom: D1 }));
}

#[test]
fn evtchn_loopback_bind_send_close() {
    let w = Shared::new();
    let mut t = Table::new(D1, 2);
    let offer = t.alloc_unbound(D1, DOMID_SELF).unwrap();
    let (lp, n) = Table::bind_interdomain(&mut t, None, offer, &w).unwrap();
    assert_ne!(lp, offer);
    assert_eq!(n, Notify::Upcall);
    assert!(w.pending(lp));
    assert_eq!(
        t.state(lp),
        Some(PortState::Interdomain {
            remote_dom: D1,
            remote_port: offer
        })
    );
    assert_eq!(
        t.state(offer),
        Some(PortState::Interdomain {
            remote_dom: D1,
            remote_port: lp
        })
    );
    assert_eq!(t.peer_domain(lp), None);
    check_invariants(&[&t]);
    // Each end signals the other.
    w.ack_all();
    let ev = t.send(lp).unwrap().unwrap();
    assert_eq!(
        ev,
        Event {
            dom: D1,
            port: offer
        }
    );
    assert_eq!(t.raise(&w, ev.port), Notify::Upcall);
    assert!(w.pending(offer) && !w.pending(lp));
    let ev = t.send(offer).unwrap().unwrap();
    assert_eq!(ev, Event { dom: D1, port: lp });
    // A loopback close needs no other table; passing one is refused.
    let mut other = Table::new(D2, 1);
    assert_eq!(
        Table::close(&mut t, Some(&mut other), lp, &w),
        Err(Errno::EINVAL)
    );
    assert_eq!(Table::close(&mut t, None, lp, &w), Ok(()));
    assert_eq!(t.state(lp), Some(PortState::Free));
    assert_eq!(t.state(offer), Some(PortState::Unbound { remote_dom: D1 }));
    // The freed end can be re-bound to the offer.
    let (lp2, _) = Table::bind_interdomain(&mut t, None, offer, &w).unwrap();
    assert_eq!(lp2, lp);
    check_invariants(&[&t]);
    // Close from the other end too.
    assert_eq!(Table::close(&mut t, None, offer, &w), Ok(()));
    assert_eq!(t.state(lp), Some(PortState::Unbound { remote_dom: D1 }));
    check_invariants(&[&t]);
}

// --- send / raise --------------------------------------------------------------

#[test]
fn evtchn_send_interdomain_both_directions() {
    let (wa, wb) = (Shared::new(), Shared::new());
    let mut a = Table::new(D1, 2);
    let mut b = Table::new(D2, 2);
    let bp = b.alloc_unbound(D2, D1).unwrap();
    b.bind_vcpu(bp, 1).unwrap();
    let (ap, _) = Table::bind_interdomain(&mut a, Some(&mut b), bp, &wa).unwrap();
    wa.ack_all();
    // A → B: raise on B's table with B's words, to B's vCPU 1.
    let ev = a.send(ap).unwrap().unwrap();
    assert_eq!(ev, Event { dom: D2, port: bp });
    assert_eq!(b.raise(&wb, ev.port), Notify::Upcall);
    assert!(wb.pending(bp));
    assert_eq!(wb.sel(1), 1);
    assert!(wb.upcall(1) && !wb.upcall(0));
    assert!(wa.untouched());
    // Again, still pending: nothing to do.
    assert_eq!(b.raise(&wb, bp), Notify::Nothing);
    // B → A.
    let ev = b.send(bp).unwrap().unwrap();
    assert_eq!(ev, Event { dom: D1, port: ap });
    assert_eq!(a.raise(&wa, ev.port), Notify::Upcall);
    assert!(wa.pending(ap) && wa.upcall(0));
}

#[test]
fn evtchn_send_by_state() {
    let w = Shared::new();
    let mut t = Table::new(D1, 2);
    let unbound = t.alloc_unbound(D1, D0).unwrap();
    let ipi = t.bind_ipi(1).unwrap();
    let timer = t.bind_virq(Virq::Timer.raw(), 0).unwrap();
    let con = t.bind_virq(Virq::Console.raw(), 0).unwrap();
    // Unbound: silently dropped (Xen returns 0).
    assert_eq!(t.send(unbound), Ok(None));
    // IPI: the port itself, to its vCPU.
    let ev = t.send(ipi).unwrap().unwrap();
    assert_eq!(ev, Event { dom: D1, port: ipi });
    assert_eq!(t.raise(&w, ev.port), Notify::Upcall);
    assert!(w.upcall(1) && !w.upcall(0));
    // VIRQ ports cannot be sent on; free ports neither.
    assert_eq!(t.send(timer), Err(Errno::EINVAL));
    assert_eq!(t.send(con), Err(Errno::EINVAL));
    assert_eq!(t.send(20), Err(Errno::EINVAL));
}

#[test]
fn evtchn_raise_on_closed_port_is_nothing() {
    let w = Shared::new();
    let mut t = Table::new(D1, 1);
    let ipi = t.bind_ipi(0).unwrap();
    let ev = t.send(ipi).unwrap().unwrap();
    Table::close(&mut t, None, ipi, &w).unwrap();
    assert_eq!(t.raise(&w, ev.port), Notify::Nothing);
    assert_eq!(t.raise(&w, 0), Notify::Nothing);
    assert!(w.untouched());
}

// --- bind_virq / send_virq -----------------------------------------------------

#[test]
fn evtchn_bind_virq_per_vcpu_and_global() {
    let mut t = Table::new(D1, 3);
    let t0 = t.bind_virq(Virq::Timer.raw(), 0).unwrap();
    let t1 = t.bind_virq(Virq::Timer.raw(), 1).unwrap();
    assert_ne!(t0, t1);
    assert_eq!(t.notify_vcpu(t1), Some(1));
    assert_eq!(
        t.state(t1),
        Some(PortState::Virq {
            virq: Virq::Timer.raw(),
            vcpu: 1
        })
    );
    let st = status_of(&t, t1);
    assert_eq!(st.status, EvtchnStat::Virq.raw());
    assert_eq!(st.virq(), Virq::Timer.raw());
    assert_eq!(st.vcpu, 1);
    // Same virq twice on one vCPU.
    assert_eq!(t.bind_virq(Virq::Timer.raw(), 0), Err(Errno::EEXIST));
    assert_eq!(t.bind_virq(Virq::Timer.raw(), 1), Err(Errno::EEXIST));
    // Other per-vCPU virqs.
    for v in [Virq::Debug, Virq::Xenoprof, Virq::Xenpmu] {
        t.bind_virq(v.raw(), 2).unwrap();
    }
    // Global: vCPU 0 only, once.
    let con = t.bind_virq(Virq::Console.raw(), 0).unwrap();
    assert_eq!(t.bind_virq(Virq::Console.raw(), 0), Err(Errno::EEXIST));
    assert_eq!(t.bind_virq(Virq::DomExc.raw(), 1), Err(Errno::EINVAL));
    assert_eq!(t.virq_port(0, Virq::Console.raw()), Some(con));
    // Unnamed virq numbers bind like global ones.
    assert!(t.bind_virq(5, 0).is_ok());
    assert_eq!(t.bind_virq(14, 2), Err(Errno::EINVAL));
    check_invariants(&[&t]);
}

#[test]
fn evtchn_bind_virq_errors_in_xen_order() {
    let mut t = EvtchnTable::<3, 2>::new(D1, 2);
    // virq out of range.
    for v in [NR_VIRQS, 100, u32::MAX] {
        assert_eq!(t.bind_virq(v, 0), Err(Errno::EINVAL));
    }
    // Global on vCPU != 0 is EINVAL even for a nonexistent vCPU.
    assert_eq!(t.bind_virq(Virq::Console.raw(), 7), Err(Errno::EINVAL));
    assert_eq!(
        t.bind_virq(Virq::Console.raw(), u32::MAX),
        Err(Errno::EINVAL)
    );
    // Per-vCPU on a nonexistent vCPU: ENOENT.
    assert_eq!(t.bind_virq(Virq::Timer.raw(), 2), Err(Errno::ENOENT));
    assert_eq!(t.bind_virq(Virq::Timer.raw(), u32::MAX), Err(Errno::ENOENT));
    // EEXIST is reported before ENOSPC.
    t.bind_virq(Virq::Timer.raw(), 0).unwrap();
    t.bind_virq(Virq::Timer.raw(), 1).unwrap();
    assert_eq!(t.bind_virq(Virq::Timer.raw(), 0), Err(Errno::EEXIST));
    assert_eq!(t.bind_virq(Virq::Debug.raw(), 0), Err(Errno::ENOSPC));
}

#[test]
fn evtchn_close_virq_unbinds_and_rebinds() {
    let w = Shared::new();
    let mut t = Table::new(D1, 2);
    let p = t.bind_virq(Virq::Timer.raw(), 1).unwrap();
    let c = t.bind_virq(Virq::Console.raw(), 0).unwrap();
    t.bind_vcpu(c, 1).unwrap();
    Table::close(&mut t, None, p, &w).unwrap();
    Table::close(&mut t, None, c, &w).unwrap();
    assert_eq!(t.virq_port(1, Virq::Timer.raw()), None);
    assert_eq!(t.virq_port(0, Virq::Console.raw()), None);
    assert_eq!(t.send_virq(1, Virq::Timer), None);
    assert_eq!(t.send_virq(0, Virq::Console), None);
    assert_eq!(t.bind_virq(Virq::Timer.raw(), 1), Ok(p));
    assert_eq!(t.bind_virq(Virq::Console.raw(), 0), Ok(c));
    // Notify vCPU was reset by the close.
    assert_eq!(t.notify_vcpu(c), Some(0));
    check_invariants(&[&t]);
}

#[test]
fn evtchn_send_virq_lookup_and_delivery() {
    let w = Shared::new();
    let mut t = Table::new(D1, 3);
    assert_eq!(t.send_virq(0, Virq::Timer), None);
    let t1 = t.bind_virq(Virq::Timer.raw(), 1).unwrap();
    assert_eq!(t.send_virq(0, Virq::Timer), None);
    assert_eq!(t.send_virq(2, Virq::Timer), None);
    assert_eq!(t.send_virq(99, Virq::Timer), None);
    let ev = t.send_virq(1, Virq::Timer).unwrap();
    assert_eq!(ev, Event { dom: D1, port: t1 });
    assert_eq!(t.raise(&w, ev.port), Notify::Upcall);
    assert!(w.upcall(1) && !w.upcall(0));
    // Global virq: the vCPU argument is ignored, the notify vCPU is used.
    let con = t.bind_virq(Virq::Console.raw(), 0).unwrap();
    t.bind_vcpu(con, 2).unwrap();
    let ev = t.send_virq(1, Virq::Console).unwrap();
    assert_eq!(ev.port, con);
    assert_eq!(t.send_virq(0, Virq::Console), Some(ev));
    w.ack_all();
    assert_eq!(t.raise(&w, con), Notify::Upcall);
    assert!(w.upcall(2) && !w.upcall(0) && !w.upcall(1));
    assert_eq!(w.sel(2), 1 << (con / 64));
}

// --- bind_ipi ---------------------------------------------------------------------

#[test]
fn evtchn_bind_ipi() {
    let mut t = Table::new(D1, 2);
    let p = t.bind_ipi(1).unwrap();
    assert_eq!(t.state(p), Some(PortState::Ipi));
    let st = status_of(&t, p);
    assert_eq!(st.status, EvtchnStat::Ipi.raw());
    assert_eq!(st.vcpu, 1);
    assert_eq!(t.bind_ipi(2), Err(Errno::ENOENT));
    assert_eq!(t.bind_ipi(u32::MAX), Err(Errno::ENOENT));
    // Several IPI ports per vCPU are fine.
    assert!(t.bind_ipi(1).is_ok());
    // set_nr_vcpus changes what exists.
    t.set_nr_vcpus(3);
    assert!(t.bind_ipi(2).is_ok());
    t.set_nr_vcpus(1);
    assert_eq!(t.bind_ipi(1), Err(Errno::ENOENT));
}

#[test]
fn evtchn_bind_pirq_binds_a_port() {
    let mut t = Table::new(D0, 1);
    let p = t.bind_pirq(8, 0).unwrap();
    assert_eq!(t.pirq_of(p), Some(8));
    assert_eq!(t.state(p), Some(PortState::Pirq { pirq: 8 }));
    assert_eq!(t.notify_vcpu(p), Some(0));
    assert_eq!(t.pirq_of(0), None);
    assert_eq!(t.active_ports(), 1);
    // Sends on a PIRQ port are refused, as in Xen.
    assert_eq!(t.send(p), Err(Errno::EINVAL));
}

// --- bind_vcpu ---------------------------------------------------------------------

#[test]
fn evtchn_bind_vcpu_rules() {
    let (wa, wb) = (Shared::new(), Shared::new());
    let mut t = Table::new(D1, 3);
    let mut r = Table::new(D2, 1);
    let unbound = t.alloc_unbound(D1, D0).unwrap();
    let offer = r.alloc_unbound(D2, D1).unwrap();
    let (inter, _) = Table::bind_interdomain(&mut t, Some(&mut r), offer, &wa).unwrap();
    let global = t.bind_virq(Virq::DomExc.raw(), 0).unwrap();
    let timer = t.bind_virq(Virq::Timer.raw(), 1).unwrap();
    let ipi = t.bind_ipi(0).unwrap();
    // Allowed: unbound, interdomain, global virq.
    for p in [unbound, inter, global] {
        assert_eq!(t.bind_vcpu(p, 2), Ok(()));
        assert_eq!(t.notify_vcpu(p), Some(2));
        assert_eq!(status_of(&t, p).vcpu, 2);
    }
    // The global virq keeps its binding in vCPU 0's slot.
    assert_eq!(t.virq_port(0, Virq::DomExc.raw()), Some(global));
    // Refused: per-vCPU virq, IPI, free, reserved, invalid.
    assert_eq!(t.bind_vcpu(timer, 0), Err(Errno::EINVAL));
    assert_eq!(t.bind_vcpu(timer, 1), Err(Errno::EINVAL));
    assert_eq!(t.bind_vcpu(ipi, 1), Err(Errno::EINVAL));
    assert_eq!(t.bind_vcpu(40, 1), Err(Errno::EINVAL));
    assert_eq!(t.bind_vcpu(0, 1), Err(Errno::EINVAL));
    assert_eq!(t.bind_vcpu(64, 1), Err(Errno::EINVAL));
    assert_eq!(t.notify_vcpu(timer), Some(1));
    assert_eq!(t.notify_vcpu(ipi), Some(0));
    // A nonexistent vCPU is ENOENT, checked before the port.
    assert_eq!(t.bind_vcpu(unbound, 3), Err(Errno::ENOENT));
    assert_eq!(t.bind_vcpu(64, 3), Err(Errno::ENOENT));
    assert_eq!(t.bind_vcpu(timer, u32::MAX), Err(Errno::ENOENT));
    // Events on a moved interdomain port go to the new vCPU.
    wa.ack_all();
    let ev = r.send(offer).unwrap().unwrap();
    assert_eq!(t.raise(&wa, ev.port), Notify::Upcall);
    assert!(wa.upcall(2) && !wa.upcall(0));
    assert!(wb.untouched());
    check_invariants(&[&t, &r]);
}

// --- close ------------------------------------------------------------------------

#[test]
fn evtchn_close_interdomain_resets_remote_both_directions() {
    let (wa, wb) = (Shared::new(), Shared::new());
    let mut a = Table::new(D1, 1);
    let mut b = Table::new(D2, 2);
    let bp = b.alloc_unbound(D2, D1).unwrap();
    b.bind_vcpu(bp, 1).unwrap();
    let (ap, _) = Table::bind_interdomain(&mut a, Some(&mut b), bp, &wa).unwrap();
    assert!(wa.pending(ap));
    // A closes its end: A's port is freed (pending cleared), B's goes back
    // to unbound for A, keeping its vCPU.
    assert_eq!(a.peer_domain(ap), Some(D2));
    assert_eq!(Table::close(&mut a, Some(&mut b), ap, &wa), Ok(()));
    assert_eq!(a.state(ap), Some(PortState::Free));
    assert!(!wa.pending(ap));
    assert_eq!(b.state(bp), Some(PortState::Unbound { remote_dom: D1 }));
    assert_eq!(b.notify_vcpu(bp), Some(1));
    // B's sends are now dropped.
    assert_eq!(b.send(bp), Ok(None));
    // A re-binds the same offer.
    let (ap2, _) = Table::bind_interdomain(&mut a, Some(&mut b), bp, &wa).unwrap();
    assert_eq!(ap2, ap);
    // Now B closes its end: A's becomes unbound for B.
    wb.set_pending_bit(bp);
    assert_eq!(b.peer_domain(bp), Some(D1));
    assert_eq!(Table::close(&mut b, Some(&mut a), bp, &wb), Ok(()));
    assert_eq!(b.state(bp), Some(PortState::Free));
    assert_eq!(b.notify_vcpu(bp), Some(0));
    assert!(!wb.pending(bp));
    assert_eq!(a.state(ap), Some(PortState::Unbound { remote_dom: D2 }));
    // ... which B may bind back from its side.
    let (bp2, _) = Table::bind_interdomain(&mut b, Some(&mut a), ap, &wb).unwrap();
    assert_eq!(
        a.state(ap),
        Some(PortState::Interdomain {
            remote_dom: D2,
            remote_port: bp2
        })
    );
    check_invariants(&[&a, &b]);
}

#[test]
fn evtchn_close_interdomain_needs_the_peer_table() {
    let w = Shared::new();
    let mut a = Table::new(D1, 1);
    let mut b = Table::new(D2, 1);
    let mut c = Table::new(3, 1);
    let bp = b.alloc_unbound(D2, D1).unwrap();
    let (ap, _) = Table::bind_interdomain(&mut a, Some(&mut b), bp, &w).unwrap();
    // No table, or the wrong one: refused, nothing changed.
    assert_eq!(Table::close(&mut a, None, ap, &w), Err(Errno::EINVAL));
    assert_eq!(
        Table::close(&mut a, Some(&mut c), ap, &w),
        Err(Errno::EINVAL)
    );
    assert!(w.pending(ap));
    check_invariants(&[&a, &b]);
    // Non-interdomain ports ignore a table passed needlessly.
    let ipi = a.bind_ipi(0).unwrap();
    assert_eq!(Table::close(&mut a, Some(&mut c), ipi, &w), Ok(()));
    assert_eq!(c.active_ports(), 0);
}

#[test]
fn evtchn_close_errors_and_double_close() {
    let w = Shared::new();
    let mut t = Table::new(D1, 1);
    let p = t.alloc_unbound(D1, D0).unwrap();
    assert_eq!(Table::close(&mut t, None, p, &w), Ok(()));
    assert_eq!(Table::close(&mut t, None, p, &w), Err(Errno::EINVAL));
    assert_eq!(Table::close(&mut t, None, 0, &w), Err(Errno::EINVAL));
    assert_eq!(Table::close(&mut t, None, 64, &w), Err(Errno::EINVAL));
    // Closing an unbound port withdraws the offer.
    let mut a = Table::new(D0, 1);
    let offer = t.alloc_unbound(D1, D0).unwrap();
    Table::close(&mut t, None, offer, &w).unwrap();
    assert_eq!(
        Table::bind_interdomain(&mut a, Some(&mut t), offer, &w),
        Err(Errno::EINVAL)
    );
}

#[test]
fn evtchn_close_clears_pending_and_resets_vcpu() {
    let w = Shared::new();
    let mut t = Table::new(D1, 2);
    let p = t.alloc_unbound(D1, D0).unwrap();
    t.bind_vcpu(p, 1).unwrap();
    assert_eq!(t.raise(&w, p), Notify::Upcall);
    assert!(w.pending(p));
    w.mask(p, true);
    Table::close(&mut t, None, p, &w).unwrap();
    assert!(!w.pending(p));
    // The guest's mask bit is its own business: close leaves it.
    assert!(w.masked(p));
    let q = t.bind_ipi(0).unwrap();
    assert_eq!(q, p);
    let r = t.alloc_unbound(D1, D0).unwrap();
    assert_eq!(status_of(&t, r).vcpu, 0);
}

// --- status ------------------------------------------------------------------------

#[test]
fn evtchn_status_every_state() {
    let w = Shared::new();
    let mut t = Table::new(D1, 2);
    let unbound = t.alloc_unbound(D1, 9).unwrap();
    let offer = t.alloc_unbound(D1, D1).unwrap();
    let (inter, _) = Table::bind_interdomain(&mut t, None, offer, &w).unwrap();
    let virq = t.bind_virq(Virq::Debug.raw(), 1).unwrap();
    let ipi = t.bind_ipi(1).unwrap();
    let cases = [
        (0, EvtchnStat::Closed, 0),
        (20, EvtchnStat::Closed, 0),
        (unbound, EvtchnStat::Unbound, 0),
        (inter, EvtchnStat::Interdomain, 0),
        (virq, EvtchnStat::Virq, 1),
        (ipi, EvtchnStat::Ipi, 1),
    ];
    for (port, stat, vcpu) in cases {
        let st = status_of(&t, port);
        assert_eq!(st.status, stat.raw(), "port {port}");
        assert_eq!(st.vcpu, vcpu, "port {port}");
        assert_eq!(st.port, port);
    }
    assert_eq!(status_of(&t, unbound).unbound_dom(), 9);
    let st = status_of(&t, inter);
    assert_eq!((st.u.dom, st.u.port), (D1, offer));
    assert_eq!(status_of(&t, virq).virq(), Virq::Debug.raw());
    // The dom field the glue resolved is left as passed.
    let mut st = EvtchnStatus {
        dom: DOMID_SELF,
        port: ipi,
        ..Default::default()
    };
    t.status(&mut st).unwrap();
    assert_eq!(st.dom, DOMID_SELF);
}

// --- unmask / 2-level machinery --------------------------------------------------------

#[test]
fn evtchn_pending_while_masked_does_not_upcall() {
    let w = Shared::new();
    let mut t = Table::new(D1, 1);
    let p = t.bind_ipi(0).unwrap();
    w.mask(p, true);
    assert_eq!(t.raise(&w, p), Notify::Pending);
    assert!(w.pending(p));
    assert_eq!(w.sel(0), 0);
    assert!(!w.upcall(0));
    // Raised again while masked and pending: nothing.
    assert_eq!(t.raise(&w, p), Notify::Nothing);
    // Unmask: the selector and upcall follow.
    assert_eq!(t.unmask(&w, p), Ok(Notify::Upcall));
    assert!(!w.masked(p));
    assert_eq!(w.sel(0), 1 << (p / 64));
    assert!(w.upcall(0));
    // Unmasking an unmasked port does nothing.
    assert_eq!(t.unmask(&w, p), Ok(Notify::Nothing));
}

#[test]
fn evtchn_unmask_cases() {
    let w = Shared::new();
    let mut t = Table::new(D1, 2);
    let p = t.bind_ipi(1).unwrap();
    // Masked, not pending: mask cleared, nothing raised.
    w.mask(p, true);
    assert_eq!(t.unmask(&w, p), Ok(Notify::Nothing));
    assert!(!w.masked(p));
    assert!(w.untouched());
    // Masked and pending but selector already set: no new upcall.
    w.mask(p, true);
    w.set_pending_bit(p);
    w.set_sel_bit(1, p / 64);
    assert_eq!(t.unmask(&w, p), Ok(Notify::Nothing));
    assert!(!w.upcall(1));
    // Masked, pending, selector clear, upcall already pending: no kick.
    w.ack_all();
    w.mask(p, true);
    w.set_pending_bit(p);
    w.set_upcall_pending_flag(1);
    assert_eq!(t.unmask(&w, p), Ok(Notify::Nothing));
    assert_eq!(w.sel(1), 1 << (p / 64));
    // Re-raised on the port's notify vCPU (1), not vCPU 0.
    w.ack_all();
    w.mask(p, true);
    w.set_pending_bit(p);
    assert_eq!(t.unmask(&w, p), Ok(Notify::Upcall));
    assert!(w.upcall(1) && !w.upcall(0));
    // A free port's mask is not touched.
    w.mask(30, true);
    w.set_pending_bit(30);
    assert_eq!(t.unmask(&w, 30), Ok(Notify::Nothing));
    assert!(w.masked(30));
}

#[test]
fn evtchn_selector_bit_logic() {
    let w = Shared::new();
    let mut t = Big::new(D1, 1);
    let ports: std::vec::Vec<u32> = (0..70).map(|_| t.bind_ipi(0).unwrap()).collect();
    let (p1, p2, p64) = (ports[0], ports[1], ports[63]);
    assert_eq!((p1, p2, p64), (1, 2, 64));
    // First event in word 0: selector bit 0 and upcall.
    assert_eq!(t.raise(&w, p1), Notify::Upcall);
    assert_eq!(w.sel(0), 0b1);
    // Second port, same word: selector already set, only pollers.
    assert_eq!(t.raise(&w, p2), Notify::Pending);
    // Port 64 is in word 1: selector bit 1 newly set, but upcall already
    // pending, so no kick.
    assert_eq!(t.raise(&w, p64), Notify::Pending);
    assert_eq!(w.sel(0), 0b11);
    // Guest acks the upcall flag only; a new word raises it again.
    w.0.borrow_mut().vcpu_info[0].evtchn_upcall_pending = 0;
    w.0.borrow_mut().vcpu_info[0].evtchn_pending_sel = 0b01;
    let p65 = ports[64];
    assert_eq!(t.raise(&w, p65), Notify::Upcall);
    assert_eq!(w.sel(0), 0b11);
    // Highest 2-level port lands in word 63.
    assert_eq!(set_pending(&w, 4095, 0), Notify::Pending);
    assert_eq!(w.sel(0), 0b11 | (1 << 63));
}

#[test]
fn evtchn_upcall_mask_does_not_stop_upcall_pending() {
    let w = Shared::new();
    let mut t = Table::new(D1, 1);
    let p = t.bind_ipi(0).unwrap();
    w.set_upcall_mask(0, 1);
    assert!(w.upcall_masked(0));
    // Xen sets evtchn_upcall_pending (and kicks) whatever the guest's mask.
    assert_eq!(t.raise(&w, p), Notify::Upcall);
    assert!(w.upcall(0));
    assert!(w.pending(p));
    assert_eq!(w.sel(0), 1);
    assert!(Notify::Upcall.kick() && Notify::Upcall.wake_pollers());
    assert!(!Notify::Pending.kick() && Notify::Pending.wake_pollers());
    assert!(!Notify::Nothing.kick() && !Notify::Nothing.wake_pollers());
}

#[test]
fn evtchn_two_level_out_of_range_ports_untouched() {
    let w = Shared::new();
    for port in [4096, 5000, u32::MAX] {
        assert_eq!(set_pending(&w, port, 0), Notify::Nothing);
        assert_eq!(unmask(&w, port, 0), Notify::Nothing);
        clear_pending(&w, port);
        assert!(!two_level::is_pending(&w, port));
        assert!(two_level::is_masked(&w, port));
    }
    assert!(w.untouched());
    assert_eq!(two_level::sel_word(0), 0);
    assert_eq!(two_level::sel_word(63), 0);
    assert_eq!(two_level::sel_word(64), 1);
    assert_eq!(two_level::sel_word(4095), 63);
    // Through a reference, too.
    let r: &Shared = &w;
    assert_eq!(set_pending(&r, 7, 0), Notify::Upcall);
    assert!(two_level::is_pending(&w, 7));
    assert!(!two_level::is_masked(&w, 7));
}

// --- reset ------------------------------------------------------------------------------

#[test]
fn evtchn_reset_closes_everything() {
    let (wa, wb) = (Shared::new(), Shared::new());
    let mut a = Table::new(D1, 2);
    let mut b = Table::new(D2, 1);
    let unbound = a.alloc_unbound(D1, D0).unwrap();
    let ipi = a.bind_ipi(1).unwrap();
    let timer = a.bind_virq(Virq::Timer.raw(), 1).unwrap();
    let con = a.bind_virq(Virq::Console.raw(), 0).unwrap();
    let offer = a.alloc_unbound(D1, DOMID_SELF).unwrap();
    let (lo, _) = Table::bind_interdomain(&mut a, None, offer, &wa).unwrap();
    let bp1 = b.alloc_unbound(D2, D1).unwrap();
    let bp2 = b.alloc_unbound(D2, D1).unwrap();
    let (ap1, _) = Table::bind_interdomain(&mut a, Some(&mut b), bp1, &wa).unwrap();
    let (ap2, _) = Table::bind_interdomain(&mut a, Some(&mut b), bp2, &wa).unwrap();
    let b_ipi = b.bind_ipi(0).unwrap();
    for p in [unbound, ipi, timer, con] {
        wa.set_pending_bit(p);
    }
    // The glue's loop: close each port needing a peer with the peer table.
    let mut peers = std::vec::Vec::new();
    while let Some((port, dom)) = a.reset(&wa) {
        assert_eq!(dom, D2);
        peers.push(port);
        Table::close(&mut a, Some(&mut b), port, &wa).unwrap();
    }
    assert_eq!(peers, [ap1, ap2]);
    assert_eq!(a.active_ports(), 0);
    for p in 1..64 {
        assert_eq!(a.state(p), Some(PortState::Free));
        assert!(!wa.pending(p), "port {p}");
    }
    assert_eq!(a.state(0), Some(PortState::Reserved));
    let _ = lo;
    // The peer's ends are unbound offers for A again; B's own port stays.
    assert_eq!(b.state(bp1), Some(PortState::Unbound { remote_dom: D1 }));
    assert_eq!(b.state(bp2), Some(PortState::Unbound { remote_dom: D1 }));
    assert_eq!(b.state(b_ipi), Some(PortState::Ipi));
    assert!(wb.untouched());
    // VIRQs can be bound again; reset of an empty table is a no-op.
    assert!(a.bind_virq(Virq::Timer.raw(), 1).is_ok());
    assert!(a.bind_virq(Virq::Console.raw(), 0).is_ok());
    let _ = a.reset(&wa);
    assert_eq!(a.reset(&wa), None);
    check_invariants(&[&a, &b]);
}

#[test]
fn evtchn_domain_teardown_with_dying() {
    let (wa, wb) = (Shared::new(), Shared::new());
    let mut a = Table::new(D1, 1);
    let mut b = Table::new(D2, 1);
    let ap = a.alloc_unbound(D1, D2).unwrap();
    let (bp, _) = Table::bind_interdomain(&mut b, Some(&mut a), ap, &wb).unwrap();
    a.set_dying();
    while let Some((port, dom)) = a.reset(&wa) {
        assert_eq!((port, dom), (ap, D2));
        Table::close(&mut a, Some(&mut b), port, &wa).unwrap();
    }
    assert_eq!(a.active_ports(), 0);
    assert_eq!(b.state(bp), Some(PortState::Unbound { remote_dom: D1 }));
    assert_eq!(a.alloc_unbound(D1, D2), Err(Errno::EINVAL));
}

// --- a hostile guest: random operations never panic and keep invariants ----

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn pick(&mut self, n: u32) -> u32 {
        self.next() % n
    }
    /// Mostly plausible values, sometimes garbage.
    fn port(&mut self) -> u32 {
        match self.pick(10) {
            0 => self.next(),
            1 => 64 + self.pick(10),
            _ => self.pick(20),
        }
    }
    fn vcpu(&mut self) -> u32 {
        match self.pick(8) {
            0 => self.next(),
            _ => self.pick(4),
        }
    }
}

#[test]
fn evtchn_random_ops_keep_invariants() {
    type T = EvtchnTable<20, 4>;
    let words = [Shared::new(), Shared::new()];
    let mut tables = [T::new(D1, 3), T::new(D2, 2)];
    let mut rng = Lcg(0x5eed);
    // Successes per kind, so the walk is known to reach every state.
    let (mut inter, mut loopback, mut virqs, mut closes, mut raised) = (0, 0, 0, 0, 0);
    for step in 0..20_000 {
        let i = rng.pick(2) as usize;
        let j = 1 - i;
        let w = &words[i];
        let [t0, t1] = &mut tables;
        let (me, other) = if i == 0 { (t0, t1) } else { (t1, t0) };
        let other_dom = other.domid();
        match rng.pick(11) {
            0 => {
                let remote = match rng.pick(3) {
                    0 => DOMID_SELF,
                    1 => other_dom,
                    _ => rng.next() as u16,
                };
                let _ = me.alloc_unbound(me.domid(), remote);
            }
            1 => {
                let p = rng.port();
                if rng.pick(2) == 0 {
                    inter += u32::from(T::bind_interdomain(me, Some(other), p, w).is_ok());
                } else {
                    loopback += u32::from(T::bind_interdomain(me, None, p, w).is_ok());
                }
            }
            2 => {
                let virq = if rng.pick(4) == 0 {
                    rng.next()
                } else {
                    rng.pick(NR_VIRQS)
                };
                virqs += u32::from(me.bind_virq(virq, rng.vcpu()).is_ok());
            }
            3 => {
                let _ = me.bind_ipi(rng.vcpu());
            }
            4 => {
                let _ = me.bind_vcpu(rng.port(), rng.vcpu());
            }
            5 | 6 => {
                let p = rng.port();
                let r = match me.peer_domain(p) {
                    Some(d) if d == other_dom && rng.pick(10) != 0 => Some(&mut *other),
                    _ if rng.pick(10) == 0 => Some(&mut *other),
                    _ => None,
                };
                closes += u32::from(T::close(me, r, p, w).is_ok());
            }
            7 => {
                if let Ok(Some(ev)) = me.send(rng.port()) {
                    let k = if ev.dom == me.domid() { i } else { j };
                    let target = if ev.dom == me.domid() { &*me } else { &*other };
                    raised += u32::from(target.raise(&words[k], ev.port) != Notify::Nothing);
                }
            }
            8 => {
                let _ = me.unmask(w, rng.port());
                // The guest flips bits too.
                let p = rng.pick(20);
                w.mask(p, rng.pick(2) == 0);
                if rng.pick(3) == 0 {
                    w.ack_all();
                }
            }
            9 => {
                let mut st = EvtchnStatus {
                    port: rng.port(),
                    ..Default::default()
                };
                let _ = me.status(&mut st);
                let virq = Virq::from_raw(u64::from(rng.pick(NR_VIRQS)));
                if let Some(v) = virq {
                    if let Some(ev) = me.send_virq(rng.vcpu(), v) {
                        let _ = me.raise(w, ev.port);
                    }
                }
            }
            _ => {
                if rng.pick(50) == 0 {
                    while let Some((port, _)) = me.reset(w) {
                        T::close(me, Some(&mut *other), port, w).unwrap();
                    }
                    assert_eq!(me.active_ports(), 0);
                }
            }
        }
        if step % 97 == 0 {
            check_invariants(&[&tables[0], &tables[1]]);
        }
    }
    check_invariants(&[&tables[0], &tables[1]]);
    for n in [inter, loopback, virqs, closes, raised] {
        assert!(n > 20, "{inter} {loopback} {virqs} {closes} {raised}");
    }
}

// --- Xen security advisories (docs/xsa.md) ---------------------------------

/// XSA-338, "once valid event channels may not turn invalid"
/// (CVE-2020-25597): Xen's `evtchn_reset` lowered `valid_evtchns`, while
/// the rest of the code (other vCPUs, the peer domain, `port_is_valid`
/// without the lock) relies on a port, once valid, staying valid. Oxen
/// must keep every bucket valid across `EVTCHNOP_reset` and domain death:
/// the port reads back as closed (not `-EINVAL`), the peer's end turns
/// into an unbound offer it can still send on harmlessly, and the table is
/// usable again afterwards.
#[test]
fn xsa_338_ports_stay_valid_across_reset_and_death() {
    let (wa, wb) = (Shared::new(), Shared::new());
    let mut a = Big::new(D1, 1);
    let mut b = Big::new(D2, 1);
    // Fill A's first bucket so its interdomain port lands in the second.
    for _ in 1..64 {
        a.bind_ipi(0).unwrap();
    }
    let offer = b.alloc_unbound(D2, D1).unwrap();
    let (ap, _) = Big::bind_interdomain(&mut a, Some(&mut b), offer, &wa).unwrap();
    assert!(ap >= EVTCHNS_PER_BUCKET);
    assert_eq!(a.valid_ports(), 2 * EVTCHNS_PER_BUCKET);
    // EVTCHNOP_reset of A, with the glue's peer loop.
    while let Some((port, dom)) = a.reset(&wa) {
        assert_eq!((port, dom), (ap, D2));
        Big::close(&mut a, Some(&mut b), port, &wa).unwrap();
    }
    assert_eq!(a.active_ports(), 0);
    assert_eq!(a.valid_ports(), 2 * EVTCHNS_PER_BUCKET, "buckets stay");
    for p in 0..2 * EVTCHNS_PER_BUCKET {
        assert!(a.port_is_valid(p), "port {p} turned invalid");
    }
    assert_eq!(status_of(&a, ap).status, EvtchnStat::Closed.raw());
    assert_eq!(a.send(ap), Err(Errno::EINVAL), "closed, not a fault");
    // B's end is an offer to A again; sending on it reaches nobody.
    assert_eq!(b.state(offer), Some(PortState::Unbound { remote_dom: D1 }));
    assert_eq!(b.send(offer), Ok(None));
    assert!(!wa.pending(ap));
    // Death: still valid, every allocation refused with -EINVAL.
    a.set_dying();
    assert_eq!(a.alloc_unbound(D1, D0), Err(Errno::EINVAL));
    assert!(a.port_is_valid(ap));
    assert_eq!(status_of(&a, ap).status, EvtchnStat::Closed.raw());
    assert!(wb.untouched());
    check_invariants(&[&a, &b]);
}

/// XSA-221 (CVE-2017-10917: Xen "does not validate the port numbers of polled event channel
/// ports"). `SCHEDOP_poll` looked at the pending state of ports that were
/// never set up. Oxen's poll (hypercall/sched_op.rs) asks
/// `port_is_valid` first (`-EINVAL` otherwise), then the 2-level pending
/// bit: for every port number a guest can pass, both answers must be
/// defined, never touching storage that does not exist, and a valid but
/// never used port is simply not pending.
#[test]
fn xsa_221_poll_checks_are_defined_for_every_port() {
    let w = Shared::new();
    let mut t = Big::new(D1, 1);
    let ipi = t.bind_ipi(0).unwrap();
    w.set_pending_bit(ipi);
    let edges = [
        EVTCHNS_PER_BUCKET - 1,
        EVTCHNS_PER_BUCKET,
        Big::CAPACITY - 1,
        Big::CAPACITY,
        Big::CAPACITY + 1,
        1 << 31,
        u32::MAX,
    ];
    let poll = |t: &Big, port: u32| -> Result<bool, Errno> {
        if !t.port_is_valid(port) {
            return Err(Errno::EINVAL);
        }
        Ok(two_level::is_pending(&w, port))
    };
    for port in (0..=Big::CAPACITY + 8).chain(edges) {
        let want = if port >= EVTCHNS_PER_BUCKET {
            Err(Errno::EINVAL)
        } else {
            Ok(port == ipi)
        };
        assert_eq!(poll(&t, port), want, "port {port}");
    }
    // The free ports of a valid bucket: valid, free, not pending.
    for port in ipi + 1..EVTCHNS_PER_BUCKET {
        assert_eq!(t.state(port), Some(PortState::Free));
    }
    // Nothing was written by the checks.
    assert_eq!(t.active_ports(), 1);
    assert!(!w.masked(ipi));
}

/// An HVM vCPU's ioreq port is Xen-attached: the guest can neither
/// close it, nor reset it away, nor move it to another vCPU (Xen's
/// `consumer_is_xen` checks; bare-fuzz found a guest closing it and
/// hanging its vCPU on the next device model access). Its peer's side
/// and tear-down work as for any port.
#[test]
fn evtchn_xen_attached_ports_survive_the_guest() {
    let (wa, wb) = (Shared::new(), Shared::new());
    let mut a = Table::new(D1, 2);
    let mut dm = Table::new(D0, 1);
    let ioreq = a.alloc_unbound(D1, D0).unwrap();
    assert_eq!(a.set_xen_attached(ioreq), Ok(()));
    assert!(a.is_xen_attached(ioreq));
    assert_eq!(a.set_xen_attached(40), Err(Errno::EINVAL));
    assert_eq!(a.set_xen_attached(4000), Err(Errno::EINVAL));
    let mine = a.alloc_unbound(D1, D0).unwrap();
    assert!(!a.is_xen_attached(mine));
    // The device model binds it.
    let (dp, _) = Table::bind_interdomain(&mut dm, Some(&mut a), ioreq, &wb).unwrap();
    let bound = Some(PortState::Interdomain {
        remote_dom: D0,
        remote_port: dp,
    });
    assert_eq!(a.state(ioreq), bound);
    // The guest cannot close it, move it or reset it away ...
    assert_eq!(
        Table::guest_close(&mut a, Some(&mut dm), ioreq, &wa),
        Err(Errno::EINVAL)
    );
    assert_eq!(a.bind_vcpu(ioreq, 1), Err(Errno::EINVAL));
    assert_eq!(a.guest_reset(&wa), None);
    assert_eq!(a.state(ioreq), bound);
    assert_eq!(a.notify_vcpu(ioreq), Some(0));
    assert!(a.is_xen_attached(ioreq));
    // ... while its own ports go as before.
    assert_eq!(a.state(mine), Some(PortState::Free));
    let other = a.alloc_unbound(D1, D0).unwrap();
    assert_eq!(Table::guest_close(&mut a, None, other, &wa), Ok(()));
    // It still carries notifications to the device model.
    assert_eq!(a.send(ioreq), Ok(Some(Event { dom: D0, port: dp })));
    // Tear-down closes it; the freed port is an ordinary one again.
    assert_eq!(a.reset(&wa), Some((ioreq, D0)));
    assert_eq!(Table::close(&mut a, Some(&mut dm), ioreq, &wa), Ok(()));
    assert_eq!(a.reset(&wa), None);
    assert!(!a.is_xen_attached(ioreq));
    assert_eq!(dm.state(dp), Some(PortState::Unbound { remote_dom: D1 }));
    check_invariants(&[&a, &dm]);
}
