//! The ioreq server's side of Xen's shared ioreq page (`public/hvm/ioreq.h`,
//! the legacy default server QEMU runs): one 32-byte [`Ioreq`] slot per
//! vCPU in the page whose guest frame is `HVM_PARAM_IOREQ_PFN`, and one
//! event channel per vCPU whose guest-side port the hypervisor puts in the
//! slot's `vp_eport`.
//!
//! The protocol, per slot (as QEMU's `cpu_get_ioreq`/`cpu_handle_ioreq`):
//! 1. the hypervisor fills the slot, stores `state = STATE_IOREQ_READY`
//!    last and notifies `vp_eport`; the vCPU waits;
//! 2. Dom0 reads `state` (acquire), copies the request, stores
//!    `STATE_IOREQ_INPROCESS`, answers it with [`DeviceModel::handle`];
//! 3. Dom0 writes `data`, then (release) `state = STATE_IORESP_READY`
//!    last, and notifies its end of the vCPU's event channel;
//! 4. the hypervisor consumes the answer and sets the slot back to
//!    `STATE_IOREQ_NONE`.
//!
//! **Owns**: which slots have a bound event channel ([`IoreqServer`]) and
//! the order of the accesses to the page ([`IoreqServer::serve`]).
//! **Trusts**: nothing in the page: a slot's contents are copied once and
//! checked by [`DeviceModel::handle`]; a request it refuses is still
//! answered (all ones for a read), so a vCPU never waits forever on a
//! malformed request, and the refusal is counted.
//!
//! Pure, host-tested; the metal glue maps the page and binds the ports.

use alloc::vec::Vec;
use core::sync::atomic::{fence, Ordering};

use hypercall_abi::hvm::{Ioreq, IoreqState, IOREQ_READ};
use hypercall_abi::XEN_PAGE_SIZE;

use super::ioreq::{DeviceModel, IoreqError};
use super::uart16550::ByteSink;
use super::GuestMemory;

/// Size of one slot.
pub const SLOT_SIZE: usize = core::mem::size_of::<Ioreq>();
/// Slots in the page.
pub const NR_SLOTS: usize = XEN_PAGE_SIZE / SLOT_SIZE;
/// Offset of `data` in a slot.
const DATA_OFF: usize = 8;
/// Offset of `vp_eport` in a slot.
const EPORT_OFF: usize = 24;
/// Offset of the byte holding `state:4, data_is_ptr:1, dir:1, df:1`.
const BITS_OFF: usize = 30;

/// The shared ioreq page, accessed with volatile loads and stores (the
/// hypervisor writes it concurrently).
pub struct RawIopage {
    base: *mut u8,
}

impl RawIopage {
    /// The page at `base`.
    ///
    /// # Safety
    /// `base` must point to a page-sized, page-aligned, writable mapping
    /// that outlives the returned value.
    pub unsafe fn new(base: *mut u8) -> RawIopage {
        RawIopage { base }
    }

    fn at(&self, slot: usize, off: usize) -> *mut u8 {
        assert!(slot < NR_SLOTS && off < SLOT_SIZE);
        // In bounds of the page by the assertion.
        self.base.wrapping_add(slot * SLOT_SIZE + off)
    }

    /// The slot's state nibble.
    pub fn state(&self, slot: usize) -> u8 {
        // SAFETY: in the page (`at` checks), which `new`'s caller keeps
        // mapped; a byte is always aligned.
        let b = unsafe { core::ptr::read_volatile(self.at(slot, BITS_OFF)) };
        fence(Ordering::Acquire);
        b & 0x0f
    }

    /// The slot's `vp_eport`.
    pub fn vp_eport(&self, slot: usize) -> u32 {
        // SAFETY: in the page, 4-byte aligned (slots are 32 bytes, the
        // field at 24).
        unsafe { core::ptr::read_volatile(self.at(slot, EPORT_OFF) as *const u32) }
    }

    /// A copy of the whole slot.
    pub fn load(&self, slot: usize) -> Ioreq {
        let mut r = Ioreq::default();
        let dst = zerocopy::IntoBytes::as_mut_bytes(&mut r);
        for (i, b) in dst.iter_mut().enumerate() {
            // SAFETY: in the page (i < SLOT_SIZE, checked by `at`).
            *b = unsafe { core::ptr::read_volatile(self.at(slot, i)) };
        }
        r
    }

    /// Stores `data`.
    pub fn store_data(&self, slot: usize, data: u64) {
        // SAFETY: in the page, 8-byte aligned.
        unsafe { core::ptr::write_volatile(self.at(slot, DATA_OFF) as *mut u64, data) }
    }

    /// Stores the bits byte (`state` and the flags), after every earlier
    /// store (release).
    pub fn store_bits(&self, slot: usize, bits: u8) {
        fence(Ordering::Release);
        // SAFETY: in the page; a byte.
        unsafe { core::ptr::write_volatile(self.at(slot, BITS_OFF), bits) }
    }

    /// Stores a whole slot (tests: the hypervisor's side), `bits` last.
    pub fn store(&self, slot: usize, r: &Ioreq) {
        let src = zerocopy::IntoBytes::as_bytes(r);
        for (i, &b) in src.iter().enumerate() {
            if i != BITS_OFF {
                // SAFETY: in the page.
                unsafe { core::ptr::write_volatile(self.at(slot, i), b) }
            }
        }
        self.store_bits(slot, r.bits);
    }
}

/// What the server has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Requests answered (refused ones included).
    pub answered: u64,
    /// Requests the device model refused (answered with all ones).
    pub refused: u64,
    /// The last refusal.
    pub last_error: Option<IoreqError>,
}

/// A port to bind, or rebind: the vCPU's slot and the guest's port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bind {
    /// The slot (vCPU).
    pub slot: usize,
    /// `vp_eport`: the guest's unbound port whose remote end is Dom0.
    pub remote: u32,
    /// Dom0's port bound to the old `vp_eport`, to close first.
    pub old_local: Option<u32>,
}

/// Dom0's side of one HVM guest's ioreq page: the event channel bound
/// for each vCPU's slot.
#[derive(Clone, Debug)]
pub struct IoreqServer {
    /// Per slot: (guest port, Dom0's port).
    ports: Vec<Option<(u32, u32)>>,
    stats: ServerStats,
}

impl IoreqServer {
    /// A server for `vcpus` vCPUs (at most [`NR_SLOTS`]).
    pub fn new(vcpus: u32) -> IoreqServer {
        let n = (vcpus as usize).clamp(1, NR_SLOTS);
        IoreqServer {
            ports: alloc::vec![None; n],
            stats: ServerStats::default(),
        }
    }

    /// Slots served.
    pub fn slots(&self) -> usize {
        self.ports.len()
    }

    /// What it has done.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Slots whose `vp_eport` the hypervisor has set (or changed) since
    /// the last [`IoreqServer::bound`]: their ports are to be bound.
    pub fn to_bind(&self, page: &RawIopage) -> Vec<Bind> {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(slot, p)| {
                let remote = page.vp_eport(slot);
                match *p {
                    _ if remote == 0 => None,
                    Some((r, _)) if r == remote => None,
                    old => Some(Bind {
                        slot,
                        remote,
                        old_local: old.map(|(_, l)| l),
                    }),
                }
            })
            .collect()
    }

    /// Records that `local` is bound to the guest's `remote` for `slot`
    /// (`None`: binding failed; the slot is tried again later).
    pub fn bound(&mut self, slot: usize, remote: u32, local: Option<u32>) {
        if let Some(p) = self.ports.get_mut(slot) {
            *p = local.map(|l| (remote, l));
        }
    }

    /// Dom0's bound ports.
    pub fn local_ports(&self) -> impl Iterator<Item = u32> + '_ {
        self.ports.iter().flatten().map(|&(_, l)| l)
    }

    /// Forgets every port (the glue closes them); returns them.
    pub fn take_ports(&mut self) -> Vec<u32> {
        let v = self.local_ports().collect();
        self.ports.iter_mut().for_each(|p| *p = None);
        v
    }

    /// Answers every slot in `STATE_IOREQ_READY` with `dm` (guest memory
    /// through `mem`), and `notify`s the slot's bound port after each
    /// answer. Returns how many it answered.
    pub fn serve<S: ByteSink>(
        &mut self,
        page: &RawIopage,
        dm: &mut DeviceModel<S>,
        mem: &mut dyn GuestMemory,
        mut notify: impl FnMut(u32),
    ) -> usize {
        let mut n = 0;
        for slot in 0..self.ports.len() {
            if page.state(slot) != IoreqState::IoreqReady.raw() {
                continue;
            }
            let req = page.load(slot);
            if req.state() != IoreqState::IoreqReady.raw() {
                continue;
            }
            let mut inproc = req;
            inproc.set_state(IoreqState::IoreqInprocess.raw());
            page.store_bits(slot, inproc.bits);
            let resp = match dm.handle(&inproc, mem) {
                Ok(r) => r,
                Err(e) => {
                    self.stats.refused += 1;
                    self.stats.last_error = Some(e);
                    let mut r = req;
                    if !req.data_is_ptr() && req.dir() == IOREQ_READ {
                        r.data = u64::MAX;
                    }
                    r
                }
            };
            page.store_data(slot, resp.data);
            let mut done = req;
            done.set_state(IoreqState::IorespReady.raw());
            page.store_bits(slot, done.bits);
            self.stats.answered += 1;
            n += 1;
            if let Some(Some((_, local))) = self.ports.get(slot) {
                notify(*local);
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devmodel::testmem::Ram;
    use crate::devmodel::uart16550::COM1_BASE;
    use hypercall_abi::hvm::{IoreqType, IOREQ_BITS_DATA_IS_PTR, IOREQ_BITS_DIR};
    use std::boxed::Box;
    use std::vec;

    /// A page-aligned page of our own.
    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    fn page() -> (Box<Page>, RawIopage) {
        let mut p = Box::new(Page([0; 4096]));
        // SAFETY: the box outlives the RawIopage in every test (both are
        // returned together and dropped at the test's end, the page last
        // since it is declared first).
        let raw = unsafe { RawIopage::new(p.0.as_mut_ptr()) };
        (p, raw)
    }

    /// What the hypervisor does: fill a slot, state READY last.
    fn post(
        page: &RawIopage,
        slot: usize,
        addr: u64,
        data: u64,
        size: u32,
        read: bool,
        ty: IoreqType,
    ) {
        let mut r = Ioreq {
            addr,
            data,
            count: 1,
            size,
            vp_eport: page.vp_eport(slot),
            _pad0: 0,
            bits: if read { IOREQ_BITS_DIR } else { 0 },
            r#type: ty.raw(),
        };
        r.set_state(IoreqState::IoreqReady.raw());
        page.store(slot, &r);
    }

    fn set_eport(page: &RawIopage, slot: usize, port: u32) {
        let mut r = page.load(slot);
        r.vp_eport = port;
        page.store(slot, &r);
    }

    fn dm() -> DeviceModel<Vec<u8>> {
        DeviceModel::new(Vec::new())
    }

    #[test]
    fn ports_are_bound_once_the_hypervisor_names_them_and_rebound_when_they_change() {
        let (_p, page) = page();
        let mut s = IoreqServer::new(2);
        assert_eq!(s.to_bind(&page), vec![], "no vp_eport yet");
        set_eport(&page, 0, 5);
        assert_eq!(
            s.to_bind(&page),
            vec![Bind {
                slot: 0,
                remote: 5,
                old_local: None
            }]
        );
        s.bound(0, 5, Some(40));
        assert_eq!(s.to_bind(&page), vec![]);
        set_eport(&page, 1, 6);
        s.bound(1, 6, None);
        assert_eq!(s.to_bind(&page).len(), 1, "a failed bind is tried again");
        s.bound(1, 6, Some(41));
        set_eport(&page, 0, 9);
        assert_eq!(
            s.to_bind(&page),
            vec![Bind {
                slot: 0,
                remote: 9,
                old_local: Some(40)
            }]
        );
        s.bound(0, 9, Some(42));
        let mut ports: Vec<u32> = s.local_ports().collect();
        ports.sort();
        assert_eq!(ports, vec![41, 42]);
        assert_eq!(s.take_ports().len(), 2);
        assert_eq!(s.local_ports().count(), 0);
        // Slots beyond the vCPUs are never looked at.
        set_eport(&page, 5, 77);
        assert_eq!(s.to_bind(&page).len(), 2);
    }

    #[test]
    fn a_com1_write_and_an_lsr_read_are_answered_in_order_and_notified() {
        let (_p, page) = page();
        let mut s = IoreqServer::new(2);
        set_eport(&page, 0, 5);
        set_eport(&page, 1, 6);
        s.bound(0, 5, Some(40));
        s.bound(1, 6, Some(41));
        let mut dm = dm();
        let mut mem = Ram::new(0, 4096);
        post(
            &page,
            0,
            u64::from(COM1_BASE),
            u64::from(b'A'),
            1,
            false,
            IoreqType::Pio,
        );
        post(
            &page,
            1,
            u64::from(COM1_BASE) + 5,
            0,
            1,
            true,
            IoreqType::Pio,
        );
        let mut kicked = vec![];
        assert_eq!(s.serve(&page, &mut dm, &mut mem, |p| kicked.push(p)), 2);
        assert_eq!(kicked, vec![40, 41]);
        assert_eq!(dm.com1.sink(), b"A");
        for slot in 0..2 {
            assert_eq!(page.state(slot), IoreqState::IorespReady.raw());
        }
        let lsr = page.load(1);
        assert_eq!(lsr.data & 0x60, 0x60, "THR and transmitter empty");
        assert_eq!(lsr.dir(), IOREQ_READ, "the flags are kept");
        assert_eq!(page.load(0).vp_eport, 5, "vp_eport is left alone");
        // Nothing is answered twice: the hypervisor has not taken them.
        assert_eq!(s.serve(&page, &mut dm, &mut mem, |p| kicked.push(p)), 0);
        // The hypervisor consumes the answers.
        for slot in 0..2 {
            let mut r = page.load(slot);
            r.set_state(IoreqState::IoreqNone.raw());
            page.store(slot, &r);
        }
        assert_eq!(s.serve(&page, &mut dm, &mut mem, |_| {}), 0);
        assert_eq!(s.stats().answered, 2);
    }

    #[test]
    fn a_string_read_lands_in_guest_memory_through_the_pointer() {
        let (_p, page) = page();
        let mut s = IoreqServer::new(1);
        let mut dm = dm();
        let mut mem = Ram::new(0x1000, 4096);
        // rep insb from an unclaimed port into 0x1800, 4 bytes.
        let mut r = Ioreq {
            addr: 0x2f8,
            data: 0x1800,
            count: 4,
            size: 1,
            vp_eport: 0,
            _pad0: 0,
            bits: IOREQ_BITS_DIR | IOREQ_BITS_DATA_IS_PTR,
            r#type: IoreqType::Pio.raw(),
        };
        r.set_state(IoreqState::IoreqReady.raw());
        page.store(0, &r);
        assert_eq!(
            s.serve(&page, &mut dm, &mut mem, |_| panic!("no port bound")),
            1
        );
        let mut got = [0u8; 4];
        crate::devmodel::GuestMemory::read(&mut mem, 0x1800, &mut got).unwrap();
        assert_eq!(got, [0xff; 4]);
        assert_eq!(page.load(0).data, 0x1800, "the pointer stays");
        assert_eq!(page.state(0), IoreqState::IorespReady.raw());
    }

    #[test]
    fn a_malformed_request_is_still_answered_with_all_ones() {
        let (_p, page) = page();
        let mut s = IoreqServer::new(1);
        s.bound(0, 3, Some(30));
        let mut dm = dm();
        let mut mem = Ram::new(0, 4096);
        post(&page, 0, 0x3f8, 0x1234, 3, true, IoreqType::Pio);
        let mut kicked = 0;
        assert_eq!(s.serve(&page, &mut dm, &mut mem, |_| kicked += 1), 1);
        assert_eq!(kicked, 1);
        assert_eq!(page.state(0), IoreqState::IorespReady.raw());
        assert_eq!(page.load(0).data, u64::MAX);
        assert_eq!(s.stats().refused, 1);
        assert_eq!(s.stats().last_error, Some(IoreqError::BadSize { size: 3 }));
        // A slot in a state the hypervisor never uses for a request.
        let mut r = page.load(0);
        r.set_state(0xf);
        page.store(0, &r);
        assert_eq!(s.serve(&page, &mut dm, &mut mem, |_| {}), 0);
        assert_eq!(page.state(0), 0xf, "left alone");
    }

    #[test]
    fn random_slots_never_panic_and_ready_ones_always_get_an_answer() {
        let (_p, page) = page();
        let mut s = IoreqServer::new(NR_SLOTS as u32);
        let mut dm = dm();
        let mut mem = Ram::new(0, 64 * 1024);
        let mut rng = crate::devmodel::testmem::Rng(0x5eed_1234);
        for _ in 0..2000 {
            let slot = (rng.next() as usize) % NR_SLOTS;
            let mut r = Ioreq {
                addr: rng.next() % 0x1_0010,
                data: rng.next() % 0x1_1000,
                count: (rng.next() % 6) as u32,
                size: (rng.next() % 10) as u32,
                vp_eport: 0,
                _pad0: 0,
                bits: rng.next() as u8 & 0x70,
                r#type: (rng.next() % 10) as u8,
            };
            r.set_state(IoreqState::IoreqReady.raw());
            page.store(slot, &r);
            assert_eq!(s.serve(&page, &mut dm, &mut mem, |_| {}), 1);
            assert_eq!(page.state(slot), IoreqState::IorespReady.raw());
            let mut none = page.load(slot);
            none.set_state(0);
            page.store(slot, &none);
        }
        assert_eq!(s.stats().answered, 2000);
    }
}
