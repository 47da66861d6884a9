//! Physical interrupts handed to domains: the bookkeeping of Xen's
//! `xen/arch/x86/irq.c` (`irq_desc`, `pirq` ↔ `irq` maps, vector
//! allocation, `map_domain_pirq`/`unmap_domain_pirq`,
//! `pirq_guest_bind`/`pirq_guest_unbind`/`pirq_guest_eoi`,
//! `__do_IRQ_guest`) and `physdev.c` (`allocate_and_map_gsi_pirq`,
//! `allocate_and_map_msi_pirq`, `allocate_pirq`, `get_free_pirq`).
//!
//! **Owns**: which IRQ exists (one per GSI, numbered as the GSI; one per
//! mapped MSI/MSI-X entry, numbered from the first number past the GSIs),
//! its interrupt vector on the CPU, the domain and PIRQ it is mapped to,
//! the event channel port bound to it, and whether it waits for the
//! domain's `PHYSDEVOP_eoi` (a level-triggered GSI stays masked at the
//! IO-APIC from its delivery to that EOI: Xen's `ACKTYPE_UNMASK`; edge
//! GSIs and MSIs are acknowledged at once, Xen's `ACKTYPE_NONE`).
//!
//! **Trusts**: nothing a guest hands over: every PIRQ, GSI and index is
//! range-checked here and refused with Xen's error code. The glue
//! (`hwirq` in the hypervisor binary) programs the IO-APIC and MSI
//! registers this table tells it about, and checks privilege (only the
//! hardware domain maps PIRQs).
//!
//! Written by hand: a few hundred fixed slots with no allocation (the
//! table is consulted from interrupt context); no crate models Xen's PIRQ
//! semantics.

use hypercall_abi::errno::Errno;

/// IRQ numbers: GSIs first, then MSIs.
pub const NR_IRQS: usize = 256;
/// First vector handed to a device interrupt (below: exceptions and the
/// legacy PIC's parked vectors).
pub const FIRST_VECTOR: u8 = 0x30;
/// Last vector handed to a device interrupt (above: the hypervisor's own
/// timer, IPI and spurious vectors).
pub const LAST_VECTOR: u8 = 0xdf;
/// PIRQs of the hardware domain (Xen gives it `nr_irqs_gsi` plus room for
/// MSIs; 256 is what Xen computes on a small machine).
pub const HWDOM_NR_PIRQS: u32 = 256;
/// PIRQs of any other PV domain (Xen's `nr_static_irqs + extra_domU_irqs`).
pub const DOMU_NR_PIRQS: u32 = 32;
/// First PIRQ `get_free_pirq` hands out for a GSI (Xen skips the 16 ISA
/// IRQs, whose PIRQ is their GSI).
const FIRST_FREE_GSI_PIRQ: u32 = 16;

/// Where an IRQ comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// An IO-APIC pin.
    Gsi {
        /// Global system interrupt number.
        gsi: u32,
        /// Level triggered (else edge).
        level: bool,
        /// Active low (else high).
        active_low: bool,
    },
    /// A PCI device's MSI (one vector) or one MSI-X table entry.
    Msi {
        /// PCI bus.
        bus: u8,
        /// Device and function (`dev << 3 | fn`).
        devfn: u8,
        /// MSI-X table entry (0 for MSI).
        entry: u16,
        /// MSI-X (else MSI).
        msix: bool,
    },
}

impl Source {
    /// Whether delivery leaves the source masked until the domain's EOI.
    pub const fn needs_unmask_on_eoi(&self) -> bool {
        matches!(self, Source::Gsi { level: true, .. })
    }
}

/// One IRQ mapped to a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irq {
    /// Its source.
    pub source: Source,
    /// Its CPU vector.
    pub vector: u8,
    /// The domain it is mapped to.
    pub domid: u16,
    /// Its PIRQ in that domain.
    pub pirq: u32,
    /// The event channel bound to it (`EVTCHNOP_bind_pirq`); 0 if none.
    pub port: u32,
    /// Delivered and masked, waiting for `PHYSDEVOP_eoi`.
    pub in_flight: bool,
}

/// What `map_*` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapped {
    /// The IRQ number.
    pub irq: usize,
    /// The PIRQ (the one asked for, or the one allocated).
    pub pirq: u32,
    /// False if the IRQ was already mapped like this (nothing changed).
    pub new: bool,
}

/// An interrupt to deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The IRQ.
    pub irq: usize,
    /// Mask the source now (level GSI, or nothing bound to take it).
    pub mask: bool,
    /// Domain and port to raise, if bound.
    pub target: Option<(u16, u32)>,
}

/// Every IRQ handed to a domain.
pub struct IrqTable {
    irqs: [Option<Irq>; NR_IRQS],
    nr_gsis: u32,
}

impl IrqTable {
    /// A table for a machine with `nr_gsis` GSIs (capped so that MSIs
    /// keep at least a quarter of the IRQ numbers).
    pub const fn new(nr_gsis: u32) -> Self {
        let cap = (NR_IRQS as u32) * 3 / 4;
        IrqTable {
            irqs: [None; NR_IRQS],
            nr_gsis: if nr_gsis > cap { cap } else { nr_gsis },
        }
    }

    /// Number of GSIs (Xen's `nr_irqs_gsi`).
    pub const fn nr_gsis(&self) -> u32 {
        self.nr_gsis
    }

    /// IRQ `irq`, if mapped.
    pub fn get(&self, irq: usize) -> Option<&Irq> {
        self.irqs.get(irq)?.as_ref()
    }

    /// The IRQ `domid`'s `pirq` is mapped to.
    pub fn lookup(&self, domid: u16, pirq: u32) -> Option<(usize, Irq)> {
        self.irqs.iter().enumerate().find_map(|(i, s)| {
            s.filter(|q| q.domid == domid && q.pirq == pirq)
                .map(|q| (i, q))
        })
    }

    fn pirq_used(&self, domid: u16, pirq: u32) -> bool {
        self.lookup(domid, pirq).is_some()
    }

    /// Xen's `get_free_pirq`: GSIs search upwards from 16 below the GSI
    /// count, everything else downwards from the top.
    fn free_pirq(&self, domid: u16, gsi: bool, nr_pirqs: u32) -> Result<u32, Errno> {
        if gsi {
            if let Some(p) = (FIRST_FREE_GSI_PIRQ..self.nr_gsis.min(nr_pirqs))
                .find(|&p| !self.pirq_used(domid, p))
            {
                return Ok(p);
            }
        }
        (self.nr_gsis..nr_pirqs)
            .rev()
            .find(|&p| !self.pirq_used(domid, p))
            .ok_or(Errno::ENOSPC)
    }

    fn free_vector(&self) -> Result<u8, Errno> {
        (FIRST_VECTOR..=LAST_VECTOR)
            .find(|&v| !self.irqs.iter().flatten().any(|q| q.vector == v))
            .ok_or(Errno::ENOSPC)
    }

    /// The PIRQ a new mapping takes: `want` if it is >= 0 (it must be
    /// below `nr_pirqs` and free), else a free one.
    fn pick_pirq(&self, domid: u16, want: i32, gsi: bool, nr_pirqs: u32) -> Result<u32, Errno> {
        if want < 0 {
            return self.free_pirq(domid, gsi, nr_pirqs);
        }
        let p = want as u32;
        if p >= nr_pirqs {
            return Err(Errno::EINVAL);
        }
        if self.pirq_used(domid, p) {
            return Err(Errno::EBUSY);
        }
        Ok(p)
    }

    /// `PHYSDEVOP_map_pirq` with `MAP_PIRQ_TYPE_GSI` (`index` = `gsi`):
    /// IRQ `gsi` becomes `domid`'s PIRQ `want` (or a free one if `want`
    /// is negative). Mapping it again the same way changes nothing.
    ///
    /// Errors (Xen's): `-EINVAL` for a GSI outside the machine's (or 0,
    /// which Xen never maps) or a PIRQ at or above `nr_pirqs`; `-EEXIST`
    /// if the GSI is mapped to another of the domain's PIRQs; `-EBUSY` if
    /// it is another domain's or the PIRQ is taken; `-ENOSPC` when no PIRQ
    /// or vector is left.
    pub fn map_gsi(
        &mut self,
        domid: u16,
        gsi: i32,
        want: i32,
        nr_pirqs: u32,
        level: bool,
        active_low: bool,
    ) -> Result<Mapped, Errno> {
        if gsi <= 0 || gsi as u32 >= self.nr_gsis {
            return Err(Errno::EINVAL);
        }
        let irq = gsi as usize;
        if let Some(q) = self.irqs[irq] {
            if q.domid != domid {
                return Err(Errno::EBUSY);
            }
            if want >= 0 && want as u32 != q.pirq {
                return Err(Errno::EEXIST);
            }
            return Ok(Mapped {
                irq,
                pirq: q.pirq,
                new: false,
            });
        }
        let pirq = self.pick_pirq(domid, want, true, nr_pirqs)?;
        let vector = self.free_vector()?;
        self.irqs[irq] = Some(Irq {
            source: Source::Gsi {
                gsi: gsi as u32,
                level,
                active_low,
            },
            vector,
            domid,
            pirq,
            port: 0,
            in_flight: false,
        });
        Ok(Mapped {
            irq,
            pirq,
            new: true,
        })
    }

    /// `PHYSDEVOP_map_pirq` with `MAP_PIRQ_TYPE_MSI` and `index` -1: a new
    /// IRQ for `source` (an [`Source::Msi`]) as `domid`'s PIRQ `want` (or a
    /// free one).
    ///
    /// Errors: `-EINVAL` for a non-MSI source or a PIRQ at or above
    /// `nr_pirqs`; `-EEXIST` if that MSI (entry) is already mapped;
    /// `-EBUSY` if the PIRQ is taken; `-ENOSPC` when no IRQ, PIRQ or
    /// vector is left.
    pub fn map_msi(
        &mut self,
        domid: u16,
        want: i32,
        nr_pirqs: u32,
        source: Source,
    ) -> Result<Mapped, Errno> {
        if !matches!(source, Source::Msi { .. }) {
            return Err(Errno::EINVAL);
        }
        if self.irqs.iter().flatten().any(|q| q.source == source) {
            return Err(Errno::EEXIST);
        }
        let pirq = self.pick_pirq(domid, want, false, nr_pirqs)?;
        let irq = (self.nr_gsis as usize..NR_IRQS)
            .find(|&i| self.irqs[i].is_none())
            .ok_or(Errno::ENOSPC)?;
        let vector = self.free_vector()?;
        self.irqs[irq] = Some(Irq {
            source,
            vector,
            domid,
            pirq,
            port: 0,
            in_flight: false,
        });
        Ok(Mapped {
            irq,
            pirq,
            new: true,
        })
    }

    /// `PHYSDEVOP_unmap_pirq`: removes `domid`'s `pirq` (unbinding it
    /// first if an event channel is still bound, as Xen's forced unbind)
    /// and returns what it was. `-EINVAL` if it is not mapped.
    pub fn unmap(&mut self, domid: u16, pirq: u32) -> Result<(usize, Irq), Errno> {
        let (irq, q) = self.lookup(domid, pirq).ok_or(Errno::EINVAL)?;
        self.irqs[irq] = None;
        Ok((irq, q))
    }

    /// `EVTCHNOP_bind_pirq`'s checks (`evtchn_bind_pirq`,
    /// `pirq_guest_bind`): `-EINVAL` if `pirq >= nr_pirqs`, `-EPERM` if it
    /// is not mapped to `domid` (Xen's `pirq_access_permitted`),
    /// `-EEXIST` if an event channel is already bound to it.
    pub fn check_bind(&self, domid: u16, pirq: u32, nr_pirqs: u32) -> Result<usize, Errno> {
        if pirq >= nr_pirqs {
            return Err(Errno::EINVAL);
        }
        let (irq, q) = self.lookup(domid, pirq).ok_or(Errno::EPERM)?;
        if q.port != 0 {
            return Err(Errno::EEXIST);
        }
        Ok(irq)
    }

    /// Binds `port` to `domid`'s `pirq` (after [`Self::check_bind`] and
    /// the port's allocation); returns the IRQ to unmask.
    pub fn bind(&mut self, domid: u16, pirq: u32, port: u32) -> Option<usize> {
        let (irq, _) = self.lookup(domid, pirq)?;
        let q = self.irqs[irq].as_mut()?;
        q.port = port;
        q.in_flight = false;
        Some(irq)
    }

    /// The event channel bound to `domid`'s `pirq` was closed
    /// (`pirq_guest_unbind`): returns the IRQ to mask.
    pub fn unbind(&mut self, domid: u16, pirq: u32) -> Option<usize> {
        let (irq, _) = self.lookup(domid, pirq)?;
        let q = self.irqs[irq].as_mut()?;
        q.port = 0;
        q.in_flight = false;
        Some(irq)
    }

    /// The IRQ whose vector is `vector`.
    pub fn irq_of_vector(&self, vector: u8) -> Option<usize> {
        self.irqs
            .iter()
            .position(|s| s.is_some_and(|q| q.vector == vector))
    }

    /// An interrupt arrived on `vector` (Xen's `do_IRQ` →
    /// `__do_IRQ_guest`): who gets it and whether the source must be
    /// masked. `None` if no IRQ has the vector.
    pub fn interrupt(&mut self, vector: u8) -> Option<Delivery> {
        let irq = self.irq_of_vector(vector)?;
        let q = self.irqs[irq].as_mut()?;
        if q.port == 0 {
            return Some(Delivery {
                irq,
                mask: true,
                target: None,
            });
        }
        let mask = q.source.needs_unmask_on_eoi();
        if mask {
            q.in_flight = true;
        }
        Some(Delivery {
            irq,
            mask,
            target: Some((q.domid, q.port)),
        })
    }

    /// `PHYSDEVOP_eoi` (`pirq_guest_eoi`): `-EINVAL` if `pirq >= nr_pirqs`
    /// or not mapped to `domid`; otherwise the IRQ to unmask, if it was
    /// waiting for this EOI.
    pub fn eoi(&mut self, domid: u16, pirq: u32, nr_pirqs: u32) -> Result<Option<usize>, Errno> {
        if pirq >= nr_pirqs {
            return Err(Errno::EINVAL);
        }
        let (irq, _) = self.lookup(domid, pirq).ok_or(Errno::EINVAL)?;
        let Some(q) = self.irqs[irq].as_mut() else {
            return Err(Errno::EINVAL);
        };
        if q.in_flight && q.port != 0 {
            q.in_flight = false;
            return Ok(Some(irq));
        }
        Ok(None)
    }

    /// Every event channel of `domid` was closed (`EVTCHNOP_reset`): its
    /// IRQs stay mapped but unbound; `f` gets each one that was bound, so
    /// the glue can mask it.
    pub fn unbind_domain(&mut self, domid: u16, mut f: impl FnMut(usize, Irq)) {
        for (i, s) in self.irqs.iter_mut().enumerate() {
            if let Some(q) = s.as_mut().filter(|q| q.domid == domid && q.port != 0) {
                q.port = 0;
                q.in_flight = false;
                f(i, *q);
            }
        }
    }

    /// Removes every IRQ of `domid` (domain destruction), calling `f` on
    /// each so the glue can mask it.
    pub fn release_domain(&mut self, domid: u16, mut f: impl FnMut(usize, Irq)) {
        for (i, s) in self.irqs.iter_mut().enumerate() {
            if let Some(q) = s.filter(|q| q.domid == domid) {
                *s = None;
                f(i, q);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const D0: u16 = 0;
    const N: u32 = HWDOM_NR_PIRQS;

    fn msi(entry: u16) -> Source {
        Source::Msi {
            bus: 0,
            devfn: 3 << 3,
            entry,
            msix: true,
        }
    }

    #[test]
    fn gsi_map_is_idempotent_and_checked() {
        let mut t = IrqTable::new(24);
        assert_eq!(t.map_gsi(D0, 0, 0, N, false, false), Err(Errno::EINVAL));
        assert_eq!(t.map_gsi(D0, 24, 24, N, false, false), Err(Errno::EINVAL));
        assert_eq!(t.map_gsi(D0, -1, 1, N, false, false), Err(Errno::EINVAL));
        let m = t.map_gsi(D0, 8, 8, N, false, false).unwrap();
        assert_eq!((m.irq, m.pirq, m.new), (8, 8, true));
        let again = t.map_gsi(D0, 8, -1, N, false, false).unwrap();
        assert_eq!((again.pirq, again.new), (8, false));
        assert_eq!(t.map_gsi(D0, 8, 9, N, false, false), Err(Errno::EEXIST));
        assert_eq!(t.map_gsi(1, 8, 8, N, false, false), Err(Errno::EBUSY));
        // PIRQ 8 taken by GSI 8: GSI 9 cannot have it.
        assert_eq!(t.map_gsi(D0, 9, 8, N, true, true), Err(Errno::EBUSY));
        assert_eq!(
            t.map_gsi(D0, 9, N as i32, N, true, true),
            Err(Errno::EINVAL)
        );
        // A free PIRQ for a GSI: from 16 up.
        let m = t.map_gsi(D0, 9, -1, N, true, true).unwrap();
        assert_eq!(m.pirq, 16);
        assert_ne!(t.get(8).unwrap().vector, t.get(9).unwrap().vector);
    }

    #[test]
    fn msi_gets_irq_past_gsis_and_pirq_from_top() {
        let mut t = IrqTable::new(24);
        let m = t.map_msi(D0, -1, N, msi(0)).unwrap();
        assert_eq!((m.irq, m.pirq), (24, N - 1));
        let m2 = t.map_msi(D0, -1, N, msi(1)).unwrap();
        assert_eq!((m2.irq, m2.pirq), (25, N - 2));
        assert_eq!(t.map_msi(D0, -1, N, msi(0)), Err(Errno::EEXIST));
        assert_eq!(
            t.map_msi(
                D0,
                -1,
                N,
                Source::Gsi {
                    gsi: 3,
                    level: false,
                    active_low: false
                }
            ),
            Err(Errno::EINVAL)
        );
        let m3 = t.map_msi(D0, 100, N, msi(2)).unwrap();
        assert_eq!(m3.pirq, 100);
        assert_eq!(t.unmap(D0, 100).unwrap().0, m3.irq);
        assert_eq!(t.unmap(D0, 100), Err(Errno::EINVAL));
    }

    #[test]
    fn vectors_run_out_with_enospc() {
        let mut t = IrqTable::new(0);
        let n = usize::from(LAST_VECTOR - FIRST_VECTOR) + 1;
        for i in 0..n {
            t.map_msi(D0, -1, N, msi(i as u16)).unwrap();
        }
        assert_eq!(t.map_msi(D0, -1, N, msi(999)), Err(Errno::ENOSPC));
    }

    #[test]
    fn bind_deliver_eoi_level() {
        let mut t = IrqTable::new(24);
        assert_eq!(t.check_bind(D0, 20, N), Err(Errno::EPERM));
        assert_eq!(t.check_bind(D0, N, N), Err(Errno::EINVAL));
        let m = t.map_gsi(D0, 20, 20, N, true, true).unwrap();
        let v = t.get(m.irq).unwrap().vector;
        // Unbound: masked, delivered nowhere.
        assert_eq!(
            t.interrupt(v),
            Some(Delivery {
                irq: 20,
                mask: true,
                target: None
            })
        );
        assert_eq!(t.check_bind(D0, 20, N), Ok(20));
        assert_eq!(t.bind(D0, 20, 5), Some(20));
        assert_eq!(t.check_bind(D0, 20, N), Err(Errno::EEXIST));
        assert_eq!(
            t.interrupt(v),
            Some(Delivery {
                irq: 20,
                mask: true,
                target: Some((D0, 5))
            })
        );
        assert_eq!(t.eoi(D0, 20, N), Ok(Some(20)));
        assert_eq!(t.eoi(D0, 20, N), Ok(None));
        assert_eq!(t.eoi(D0, 21, N), Err(Errno::EINVAL));
        assert_eq!(t.eoi(D0, N, N), Err(Errno::EINVAL));
        assert_eq!(t.interrupt(0xee), None);
        assert_eq!(t.unbind(D0, 20), Some(20));
        assert_eq!(t.check_bind(D0, 20, N), Ok(20));
    }

    #[test]
    fn edge_and_msi_need_no_unmask() {
        let mut t = IrqTable::new(24);
        t.map_gsi(D0, 8, 8, N, false, false).unwrap();
        t.bind(D0, 8, 3);
        let v = t.get(8).unwrap().vector;
        let d = t.interrupt(v).unwrap();
        assert!(!d.mask);
        assert_eq!(d.target, Some((D0, 3)));
        assert_eq!(t.eoi(D0, 8, N), Ok(None));
    }

    #[test]
    fn unbind_domain_keeps_mappings() {
        let mut t = IrqTable::new(24);
        t.map_gsi(D0, 8, 8, N, false, false).unwrap();
        t.map_gsi(D0, 9, 9, N, true, true).unwrap();
        t.bind(D0, 8, 3);
        let mut seen = Vec::new();
        t.unbind_domain(D0, |i, _| seen.push(i));
        assert_eq!(seen, [8]);
        assert_eq!(t.check_bind(D0, 8, N), Ok(8));
        assert_eq!(t.check_bind(D0, 9, N), Ok(9));
    }

    #[test]
    fn release_domain_frees_everything() {
        let mut t = IrqTable::new(24);
        t.map_gsi(D0, 8, 8, N, false, false).unwrap();
        t.map_msi(D0, -1, N, msi(0)).unwrap();
        t.map_gsi(1, 9, 9, N, false, false).unwrap();
        let mut n = 0;
        t.release_domain(D0, |_, _| n += 1);
        assert_eq!(n, 2);
        assert!(t.lookup(D0, 8).is_none());
        assert!(t.lookup(1, 9).is_some());
    }
}
