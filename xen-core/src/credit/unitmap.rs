//! Which vCPU each scheduling unit is: the glue's map between the credit
//! scheduler's [`UnitId`]s and (domain, vCPU) pairs.
//!
//! Owns the assignment of unit ids (lowest free first). Trusts nothing:
//! vCPU numbers above 65535 and reserved domain ids are refused, lookups of
//! unknown ids give `None`. Lookups walk the table (`N` entries, 256 in the
//! hypervisor): cheap next to a context switch, and no allocation.

use super::UnitId;
use hypercall_abi::errno::Errno;
use hypercall_abi::xen::DOMID_FIRST_RESERVED;
use hypercall_abi::DomId;

const FREE: u32 = u32::MAX;

/// Unit id ↔ (domain, vCPU), for up to `N` units.
pub struct UnitMap<const N: usize> {
    owner: [u32; N],
}

const fn pack(domid: DomId, vcpu: u32) -> u32 {
    ((domid as u32) << 16) | vcpu
}

impl<const N: usize> Default for UnitMap<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> UnitMap<N> {
    /// An empty map.
    pub const fn new() -> Self {
        const { assert!(N >= 1 && N < u16::MAX as usize, "N must be 1..65535") };
        Self { owner: [FREE; N] }
    }

    /// The unit of vCPU `vcpu` of `domid`, if it has one.
    pub fn find(&self, domid: DomId, vcpu: u32) -> Option<UnitId> {
        if vcpu > 0xffff || domid >= DOMID_FIRST_RESERVED {
            return None;
        }
        let key = pack(domid, vcpu);
        self.owner
            .iter()
            .position(|&o| o == key)
            .map(|i| UnitId(i as u16))
    }

    /// Gives vCPU `vcpu` of `domid` a unit id (its existing one if it has
    /// one). `EINVAL` for a vCPU number above 65535 or a reserved domid,
    /// `ENOSPC` when all `N` ids are taken.
    pub fn alloc(&mut self, domid: DomId, vcpu: u32) -> Result<UnitId, Errno> {
        if vcpu > 0xffff || domid >= DOMID_FIRST_RESERVED {
            return Err(Errno::EINVAL);
        }
        if let Some(u) = self.find(domid, vcpu) {
            return Ok(u);
        }
        let i = self
            .owner
            .iter()
            .position(|&o| o == FREE)
            .ok_or(Errno::ENOSPC)?;
        self.owner[i] = pack(domid, vcpu);
        Ok(UnitId(i as u16))
    }

    /// The (domain, vCPU) of `unit`, if it is assigned.
    pub fn owner(&self, unit: UnitId) -> Option<(DomId, u32)> {
        match self.owner.get(usize::from(unit.0)) {
            Some(&o) if o != FREE => Some(((o >> 16) as DomId, o & 0xffff)),
            _ => None,
        }
    }

    /// Frees `unit`'s id (nothing if it is not assigned).
    pub fn free(&mut self, unit: UnitId) {
        if let Some(o) = self.owner.get_mut(usize::from(unit.0)) {
            *o = FREE;
        }
    }

    /// The units of `domid`, lowest id first.
    pub fn units_of(&self, domid: DomId) -> impl Iterator<Item = (UnitId, u32)> + '_ {
        self.owner.iter().enumerate().filter_map(move |(i, &o)| {
            (o != FREE && (o >> 16) as DomId == domid).then_some((UnitId(i as u16), o & 0xffff))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn alloc_find_owner_free() {
        let mut m = UnitMap::<4>::new();
        let a = m.alloc(0, 0).unwrap();
        let b = m.alloc(0, 1).unwrap();
        let c = m.alloc(7, 0).unwrap();
        assert_eq!((a, b, c), (UnitId(0), UnitId(1), UnitId(2)));
        assert_eq!(m.alloc(0, 1), Ok(b), "existing id is reused");
        assert_eq!(m.find(7, 0), Some(c));
        assert_eq!(m.find(7, 1), None);
        assert_eq!(m.owner(b), Some((0, 1)));
        assert_eq!(m.owner(UnitId(3)), None);
        assert_eq!(m.owner(UnitId(999)), None);
        m.free(a);
        m.free(UnitId(999));
        assert_eq!(m.owner(a), None);
        assert_eq!(m.alloc(9, 3), Ok(a), "lowest free id first");
        let units: Vec<_> = m.units_of(0).collect();
        assert_eq!(units, [(b, 1)]);
    }

    #[test]
    fn refuses_bad_input_and_full_table() {
        let mut m = UnitMap::<2>::new();
        assert_eq!(m.alloc(0, 0x1_0000), Err(Errno::EINVAL));
        assert_eq!(m.alloc(DOMID_FIRST_RESERVED, 0), Err(Errno::EINVAL));
        assert_eq!(m.find(0, u32::MAX), None);
        m.alloc(1, 0).unwrap();
        m.alloc(1, 0xffff).unwrap();
        assert_eq!(m.alloc(2, 0), Err(Errno::ENOSPC));
        assert_eq!(m.owner(UnitId(1)), Some((1, 0xffff)));
        // Domain 0x7fef's vCPU 0xffff does not alias anything.
        assert_eq!(m.find(0x7fef, 0xffff), None);
    }
}
