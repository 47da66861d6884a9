//! Host tests of the grant-table logic: a small machine (frame table, page
//! tables in a `Vec`), two domains, and shared entries in plain memory.

use super::*;
use crate::mm::frame_table::PageInfo;
use crate::mm::pte::PteFlags;
use crate::mm::ptval::{self, GNTTAB};
use hypercall_abi::grant_table::GNTMAP_APPLICATION_MAP;
use std::boxed::Box;
use std::vec;
use std::vec::Vec;

const N: u64 = 160;
const D1: DomId = DomId(1);
const D2: DomId = DomId(2);
/// D1 owns 1..64, D2 64..100; 100.. are free for alloc_frame.
const FIRST_FREE: u64 = 100;
const L4: Mfn = Mfn(1);
const L3: Mfn = Mfn(2);
const L2: Mfn = Mfn(3);
const L1: Mfn = Mfn(4);
/// A frame of D1's it grants.
const DATA: Mfn = Mfn(10);
/// A frame of D2's.
const DATA2: Mfn = Mfn(70);
/// Linear address mapped through L1 index 5.
const VA: u64 = 0x5000;
const RO: u32 = GNTMAP_READONLY;
const HOST: u32 = GNTMAP_HOST_MAP;
const DEV: u32 = GNTMAP_DEVICE_MAP;

struct Mem {
    t: Vec<[u64; 512]>,
    freed: Vec<Mfn>,
    next_frame: u64,
    pages_out: i64,
    flushes: u32,
    dropped: Vec<u64>,
    no_pages: bool,
    /// `mark_dirty` calls: (granter, frame).
    dirty: Vec<(u16, Mfn)>,
}

impl PtMemory for Mem {
    fn read_pte(&self, table: Mfn, index: usize) -> u64 {
        self.t[table.0 as usize][index]
    }
    fn write_pte(&mut self, table: Mfn, index: usize, val: u64) {
        self.t[table.0 as usize][index] = val;
    }
    fn swap_pte(&mut self, table: Mfn, index: usize, val: u64) -> u64 {
        let old = self.read_pte(table, index);
        self.write_pte(table, index, val);
        old
    }
    fn flush_before_type_change(&mut self, _mfn: Mfn) {
        self.flushes += 1;
    }
    fn frame_freed(&mut self, mfn: Mfn) {
        self.freed.push(mfn);
    }
    fn grant_pte_dropped(&mut self, entry: u64) {
        self.dropped.push(entry);
    }
}

impl GrantEnv for Mem {
    fn mark_dirty(&mut self, rd: u16, mfn: Mfn) {
        self.dirty.push((rd, mfn));
    }

    fn alloc_page(&mut self) -> Option<&'static mut Page> {
        if self.no_pages {
            return None;
        }
        self.pages_out += 1;
        Some(Box::leak(Box::new([0u64; 512])))
    }
    /// Garbage, as a frame straight from the allocator may hold.
    fn alloc_page_uncleared(&mut self) -> Option<&'static mut Page> {
        let p = self.alloc_page()?;
        p.fill(0xdead_beef_dead_beef);
        Some(p)
    }
    fn free_page(&mut self, _page: &'static mut Page) {
        self.pages_out -= 1;
    }
    fn alloc_frame(&mut self) -> Option<Mfn> {
        if self.next_frame >= N {
            return None;
        }
        self.next_frame += 1;
        Some(Mfn(self.next_frame - 1))
    }
    fn free_frame(&mut self, mfn: Mfn) {
        self.freed.push(mfn);
    }
    fn flush_tlbs(&mut self) {
        self.flushes += 1;
    }
    fn copy(&mut self, src: Mfn, src_off: u16, dst: Mfn, dst_off: u16, len: u16) {
        let sb: Vec<u8> = self.t[src.0 as usize]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        let mut db: Vec<u8> = self.t[dst.0 as usize]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        let (s, d, l) = (src_off as usize, dst_off as usize, len as usize);
        db[d..d + l].copy_from_slice(&sb[s..s + l]);
        for (i, c) in db.chunks(8).enumerate() {
            self.t[dst.0 as usize][i] = u64::from_le_bytes(c.try_into().unwrap());
        }
    }
}

/// Shared v1 entries in plain memory; `race` makes the next cmpxchgs fail
/// as if the guest had changed the entry.
#[derive(Default)]
struct Shared {
    e: Vec<u64>,
    race: u32,
}

impl Shared {
    fn new() -> Self {
        Shared {
            e: vec![0; 4096],
            race: 0,
        }
    }
    fn grant(&mut self, gref: u32, flags: u16, domid: DomId, frame: Mfn) {
        self.e[gref as usize] =
            u64::from(flags) | u64::from(domid.0) << 16 | (frame.0 & 0xffff_ffff) << 32;
    }
    fn flags(&self, gref: u32) -> u16 {
        self.e[gref as usize] as u16
    }
    /// The guest's end of access: succeeds only while no GTF_reading/writing.
    fn end_access(&mut self, gref: u32) -> bool {
        let f = self.flags(gref);
        if f & (GTF_READING | GTF_WRITING) != 0 {
            return false;
        }
        self.e[gref as usize] &= !0xffff;
        true
    }
}

impl SharedEntries for Shared {
    fn header(&self, gref: u32) -> u32 {
        self.e.get(gref as usize).map_or(0, |&e| e as u32)
    }
    fn frame(&self, gref: u32) -> u32 {
        self.e.get(gref as usize).map_or(0, |&e| (e >> 32) as u32)
    }
    fn cmpxchg_header(&mut self, gref: u32, old: u32, new: u32) -> u32 {
        if self.race > 0 {
            // The guest changed a harmless bit (GTF_PWT) just before.
            self.race -= 1;
            self.e[gref as usize] ^= 1 << 5;
            return self.header(gref);
        }
        let cur = self.header(gref);
        if cur == old {
            let e = &mut self.e[gref as usize];
            *e = (*e & !0xffff_ffff) | u64::from(new);
        }
        cur
    }
    fn clear_flags(&mut self, gref: u32, mask: u16) {
        if let Some(e) = self.e.get_mut(gref as usize) {
            *e &= !u64::from(mask);
        }
    }
    fn entry(&self, gref: u32) -> u64 {
        self.e[gref as usize]
    }
    fn set_entry(&mut self, gref: u32, e: u64) {
        self.e[gref as usize] = e;
    }
}

struct World {
    ft: FrameTable<'static>,
    mem: Mem,
    /// The granter's p2m, if it is translated.
    p2m: Option<&'static dyn Fn(u64) -> Option<u64>>,
}

fn ctx(d: DomId) -> PtContext {
    PtContext {
        domid: d,
        pg_owner: d,
        xen_l4_slots: &[0; 16],
        max_mfn: N - 1,
        iomem: &ptval::IoMem::NONE,
    }
}

impl World {
    fn new() -> Self {
        let pages = Box::leak(vec![PageInfo::FREE; N as usize].into_boxed_slice());
        let mut ft = FrameTable::new(pages);
        for m in 1..64 {
            ft.assign(Mfn(m), Owner::Domain(D1)).unwrap();
        }
        for m in 64..FIRST_FREE {
            ft.assign(Mfn(m), Owner::Domain(D2)).unwrap();
        }
        let mut mem = Mem {
            t: vec![[0; 512]; N as usize],
            freed: Vec::new(),
            next_frame: FIRST_FREE,
            pages_out: 0,
            flushes: 0,
            dropped: Vec::new(),
            no_pages: false,
            dirty: Vec::new(),
        };
        mem.t[L4.0 as usize][0] = L3.maddr() | 7;
        mem.t[L3.0 as usize][0] = L2.maddr() | 7;
        mem.t[L2.0 as usize][0] = L1.maddr() | 7;
        let mut w = World { ft, mem, p2m: None };
        w.with(|ft, mem| ptval::pin(&ctx(D1), ft, mem, L4, 4).unwrap());
        w
    }

    fn with<R>(&mut self, f: impl FnOnce(&mut FrameTable<'static>, &mut Mem) -> R) -> R {
        f(&mut self.ft, &mut self.mem)
    }

    fn info(&self, m: Mfn) -> PageInfo {
        self.ft.info(m).unwrap()
    }

    fn pte(&self, index: usize) -> u64 {
        self.mem.t[L1.0 as usize][index]
    }

    /// Map `gref` of `rd` (whose entries are `sh`, table `rt`) for D1.
    #[allow(clippy::too_many_arguments)]
    fn map(
        &mut self,
        lt: &mut Maptrack,
        rd: DomId,
        rt: &mut ActiveTable,
        sh: &mut Shared,
        gref: u32,
        flags: u32,
        host_addr: u64,
    ) -> Result<Mapped, Status> {
        let c = ctx(D1);
        let p2m = self.p2m;
        self.with(|ft, mem| {
            let mut l = Local {
                ctx: &c,
                l4: L4,
                maptrack: lt,
            };
            let mut r = Remote {
                domid: rd,
                active: rt,
                shared: sh,
                p2m,
            };
            map_grant_ref(
                mem,
                ft,
                &mut l,
                &mut r,
                &MapRequest {
                    host_addr,
                    flags,
                    gref,
                },
            )
        })
    }

    fn unmap(
        &mut self,
        lt: &mut Maptrack,
        rt: &mut ActiveTable,
        sh: &mut Shared,
        handle: u32,
        host_addr: u64,
        dev_bus_addr: u64,
    ) -> Result<(), Status> {
        let c = ctx(D1);
        self.with(|ft, mem| {
            let mut l = Local {
                ctx: &c,
                l4: L4,
                maptrack: lt,
            };
            let u = unmap_grant_ref(
                mem,
                ft,
                &mut l,
                rt,
                &UnmapRequest {
                    host_addr,
                    dev_bus_addr,
                    handle,
                    new_addr: 0,
                },
            )?;
            if u.needs_flush {
                mem.flush_tlbs();
            }
            unmap_complete(mem, ft, rt, sh, &u);
            Ok(())
        })
    }
}

fn counts(w: &World, m: Mfn) -> (u32, u32) {
    let i = w.info(m);
    (i.count(), i.type_count())
}

fn table(w: &mut World, d: DomId) -> GrantTable {
    let mut g = GrantTable::new();
    w.with(|ft, mem| g.active.grow(mem, ft, d, 1).unwrap());
    g
}

#[test]
fn shared_frames_belong_to_the_domain_and_stay_writable_only() {
    let mut w = World::new();
    let mut g = GrantTable::new();
    assert_eq!(g.active.nr_frames(), 1);
    assert!(g.active.allocated_frames().is_empty());
    w.with(|ft, mem| g.active.grow(mem, ft, D1, 3).unwrap());
    assert_eq!(g.active.nr_frames(), 3);
    assert_eq!(g.active.nr_entries(), 3 * 512);
    let f = g.active.allocated_frames()[0];
    let i = w.info(f);
    assert_eq!(i.owner(), Owner::Domain(D1));
    assert_eq!((i.count(), i.type_count()), (1, 1));
    assert_eq!(i.page_type(), PageType::Writable);
    assert!(!i
        .flags()
        .contains(crate::mm::frame_table::PageFlags::ALLOCATED));
    let c = ctx(D1);
    w.with(|ft, mem| {
        // Mappable writable by its domain, never a page table, never given back.
        ptval::get_l1_mapping(&c, ft, mem, f.maddr() | 3).unwrap();
        ptval::put_l1_mapping(&c, ft, mem, f.maddr() | 3);
        assert!(ptval::pin(&c, ft, mem, f, 1).is_err());
        assert!(ft.release(f).is_err());
    });
    // Beyond the limit: refused, nothing changes.
    w.with(|ft, mem| assert!(g.active.grow(mem, ft, D1, 65).is_err()));
    assert_eq!(g.active.nr_frames(), 3);
    // Out of bookkeeping memory: refused, nothing leaks.
    w.mem.no_pages = true;
    w.with(|ft, mem| assert!(g.active.grow(mem, ft, D1, 4).is_err()));
    w.mem.no_pages = false;
    assert_eq!(g.active.nr_frames(), 3);
    assert_eq!(w.mem.pages_out, 6);
    // XENMAPSPACE_grant_table: index 5 grows the table to 6 frames.
    let m = w.with(|ft, mem| g.active.frame_for_index(mem, ft, D1, 5));
    assert_eq!(m, Some(g.active.allocated_frames()[5]));
    assert_eq!(
        w.with(|ft, mem| g.active.frame_for_index(mem, ft, D1, 64)),
        None
    );
    assert_eq!(
        w.with(|ft, mem| g.active.frame_for_index(mem, ft, D1, u64::MAX)),
        None
    );
    let frames: Vec<Mfn> = g.active.allocated_frames().to_vec();
    w.with(|ft, mem| g.active.destroy(mem, ft).unwrap());
    for f in frames {
        assert_eq!(w.info(f), PageInfo::FREE);
        assert!(w.mem.freed.contains(&f));
    }
    assert_eq!(w.mem.pages_out, 0);
}

#[test]
fn limits() {
    assert!(GrantTable::with_limits(0, 10).is_err());
    assert!(GrantTable::with_limits(65, 10).is_err());
    assert!(GrantTable::with_limits(64, 1025).is_err());
    let g = GrantTable::with_limits(4, 0).unwrap();
    assert_eq!(g.active.max_frames(), 4);
    let g = GrantTable::for_createdomain(-1, -1).unwrap();
    assert_eq!(g.active.max_frames(), 64);
    assert!(GrantTable::for_createdomain(0, -1).is_err());
    assert!(GrantTable::for_createdomain(65, -1).is_err());
    assert!(GrantTable::for_createdomain(32, 1025).is_err());
    assert!(GrantTable::for_createdomain(32, 0).is_ok());
}

#[test]
fn host_map_readwrite_and_unmap() {
    let mut w = World::new();
    let mut g = table(&mut w, D1);
    let mut sh = Shared::new();
    sh.grant(8, GTF_PERMIT_ACCESS, D1, DATA);
    let before = counts(&w, DATA);
    let GrantTable { active, maptrack } = &mut g;
    let m = w.map(maptrack, D1, active, &mut sh, 8, HOST, VA).unwrap();
    assert_eq!(m.handle, 0);
    assert_eq!(m.dev_bus_addr, DATA.maddr());
    assert_eq!(sh.flags(8), GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING);
    assert_eq!(w.pte(5), ptval::grant_pte(DATA, HOST));
    assert_ne!(w.pte(5) & GNTTAB, 0);
    assert_eq!(counts(&w, DATA), (before.0 + 1, before.1 + 1));
    assert_eq!(active.get(8).pin, GNTPIN_HSTW_INC);
    // Revocation while mapped fails: the granter's end of access sees busy.
    assert!(!sh.end_access(8));
    // Unmap at the wrong address: general error, nothing changes.
    assert_eq!(
        w.unmap(maptrack, active, &mut sh, m.handle, VA + 0x1000, 0),
        Err(GntStatus::GeneralError)
    );
    assert_eq!(w.pte(5), ptval::grant_pte(DATA, HOST));
    let pages = w.mem.pages_out;
    assert_eq!(maptrack.limit(), MAPTRACK_PER_PAGE);
    assert!(w.mem.dirty.is_empty(), "not dirty while still mapped");
    w.unmap(maptrack, active, &mut sh, m.handle, VA, 0).unwrap();
    assert_eq!(w.pte(5), 0);
    assert_eq!(counts(&w, DATA), before);
    // A writable mapping went: the granter's frame may have been written
    // (Xen's gnttab_mark_dirty).
    assert_eq!(w.mem.dirty, [(D1.0, DATA)]);
    // The last mapping gone, the maptrack page goes back.
    assert_eq!((maptrack.in_use(), maptrack.limit()), (0, 0));
    assert_eq!(w.mem.pages_out, pages - 1);
    assert_eq!(sh.flags(8), GTF_PERMIT_ACCESS);
    assert_eq!(active.get(8).pin, 0);
    // Double unmap.
    assert_eq!(
        w.unmap(maptrack, active, &mut sh, m.handle, VA, 0),
        Err(GntStatus::BadHandle)
    );
    assert_eq!(
        w.unmap(maptrack, active, &mut sh, 1 << 20, VA, 0),
        Err(GntStatus::BadHandle)
    );
    assert!(sh.end_access(8));
    assert!(w.mem.dropped.is_empty());
}

#[test]
fn a_translated_granters_entries_name_guest_frames_looked_up_in_its_p2m() {
    // D2 is an HVM/PVH guest: gfn 0x1000 is its frame DATA2, gfn 0x1001
    // is D1's frame (as if a foreign page sat there), gfn 0x1002 is not
    // populated.
    let mut w = World::new();
    w.p2m = Some(&|gfn| match gfn {
        0x1000 => Some(DATA2.0),
        0x1001 => Some(DATA.0),
        _ => None,
    });
    let mut g = table(&mut w, D2);
    let mut sh = Shared::new();
    sh.grant(3, GTF_PERMIT_ACCESS, D1, Mfn(0x1000));
    sh.grant(4, GTF_PERMIT_ACCESS, D1, Mfn(0x1001));
    sh.grant(5, GTF_PERMIT_ACCESS, D1, Mfn(0x1002));
    let before = counts(&w, DATA2);
    let GrantTable { active, maptrack } = &mut g;
    let m = w.map(maptrack, D2, active, &mut sh, 3, HOST, VA).unwrap();
    assert_eq!(m.dev_bus_addr, DATA2.maddr());
    assert_eq!(w.pte(5), ptval::grant_pte(DATA2, HOST));
    assert_eq!(counts(&w, DATA2), (before.0 + 1, before.1 + 1));
    // A frame the granter does not own, and a hole: bad page, and the
    // entries' status bits are put back.
    for gref in [4, 5] {
        assert_eq!(
            w.map(maptrack, D2, active, &mut sh, gref, HOST, VA + 0x1000),
            Err(GntStatus::BadPage)
        );
        assert_eq!(sh.flags(gref), GTF_PERMIT_ACCESS);
    }
    w.unmap(maptrack, active, &mut sh, m.handle, VA, 0).unwrap();
    assert_eq!(counts(&w, DATA2), before);
    assert!(sh.end_access(3));
}

#[test]
fn readonly_grants_and_mappings() {
    let mut w = World::new();
    let mut g = table(&mut w, D1);
    let mut sh = Shared::new();
    sh.grant(3, GTF_PERMIT_ACCESS | GTF_READONLY, D1, DATA);
    let before = counts(&w, DATA);
    let GrantTable { active, maptrack } = &mut g;
    // A read-only grant mapped writable.
    assert_eq!(
        w.map(maptrack, D1, active, &mut sh, 3, HOST, VA),
        Err(GntStatus::GeneralError)
    );
    assert_eq!(maptrack.in_use(), 0);
    assert_eq!(sh.flags(3), GTF_PERMIT_ACCESS | GTF_READONLY);
    assert_eq!(w.pte(5), 0);
    let m = w
        .map(
            maptrack,
            D1,
            active,
            &mut sh,
            3,
            HOST | RO | GNTMAP_APPLICATION_MAP,
            VA,
        )
        .unwrap();
    assert_eq!(sh.flags(3), GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING);
    let pte = w.pte(5);
    assert_eq!(pte & 2, 0, "read-only");
    assert_ne!(pte & 4, 0, "user");
    assert_eq!(counts(&w, DATA), (before.0 + 1, before.1));
    // A second, writable mapping is still refused while the first stands.
    assert_eq!(
        w.map(maptrack, D1, active, &mut sh, 3, DEV, 0),
        Err(GntStatus::GeneralError)
    );
    // Unmap with the right address but expecting writable: the PTE is RO,
    // the maptrack says RO: fine.
    w.unmap(maptrack, active, &mut sh, m.handle, VA, 0).unwrap();
    assert_eq!(counts(&w, DATA), before);
    assert_eq!(sh.flags(3), GTF_PERMIT_ACCESS | GTF_READONLY);
    assert!(
        w.mem.dirty.is_empty(),
        "a read-only mapping dirties nothing"
    );
}

#[test]
fn bad_refs_domids_and_entries() {
    let mut w = World::new();
    let mut g = table(&mut w, D1);
    let mut sh = Shared::new();
    let GrantTable { active, maptrack } = &mut g;
    assert_eq!(map_flags_ok(RO), Err(GntStatus::BadGntref));
    assert_eq!(
        w.map(maptrack, D1, active, &mut sh, 0, RO, VA),
        Err(GntStatus::BadGntref)
    );
    assert_eq!(
        w.map(maptrack, D1, active, &mut sh, 512, HOST, VA),
        Err(GntStatus::BadGntref)
    );
    assert_eq!(
        w.map(maptrack, D1, active, &mut sh, u32::MAX, HOST, VA),
        Err(GntStatus::BadGntref)
    );
    // Invalid entry; an entry for another domain; a sub-page flag; accept
    // transfer instead of permit access.
    assert_eq!(
        w.map(maptrack, D1, active, &mut sh, 1, HOST, VA),
        Err(GntStatus::GeneralError)
    );
    sh.grant(2, GTF_PERMIT_ACCESS, D2, DATA);
    assert_eq!(
        w.map(maptrack, D1, active, &mut sh, 2, DEV | RO, 0),
        Err(GntStatus::GeneralError)
    );
    sh.grant(4, GTF_PERMIT_ACCESS | GTF_SUB_PAGE, D1, DATA);
    assert_eq!(
        w.map(maptrack, D1, active, &mut sh, 4, DEV | RO, 0),
        Err(GntStatus::GeneralError)
    );
    sh.grant(5, 2, D1, DATA);
    assert_eq!(
        w.map(maptrack, D1, active, &mut sh, 5, DEV | RO, 0),
        Err(GntStatus::GeneralError)
    );
    // A frame the granter does not own (D2's, or free, or beyond RAM).
    for f in [DATA2, Mfn(150), Mfn(1 << 30)] {
        sh.grant(6, GTF_PERMIT_ACCESS, D1, f);
        assert_eq!(
            w.map(maptrack, D1, active, &mut sh, 6, DEV | RO, 0),
            Err(GntStatus::BadPage)
        );
        assert_eq!(sh.flags(6), GTF_PERMIT_ACCESS, "flags cleared again");
    }
    assert_eq!(maptrack.in_use(), 0);
    assert_eq!(active.pinned(), 0);
}

#[test]
fn host_addresses_that_are_no_place_for_a_mapping() {
    let mut w = World::new();
    let mut g = table(&mut w, D1);
    let mut sh = Shared::new();
    sh.grant(8, GTF_PERMIT_ACCESS, D1, DATA);
    let before = counts(&w, DATA);
    let GrantTable { active, maptrack } = &mut g;
    let cpte = GNTMAP_CONTAINS_PTE;
    for (addr, flags) in [
        (0x4000_0000, HOST),             // L2 entry not present
        (0xffff_8000_0000_0000, HOST),   // hypervisor range
        (0x0000_8000_0000_0000, HOST),   // non-canonical
        (L1.maddr() + 3, HOST | cpte),   // misaligned PTE address
        (DATA.maddr() + 8, HOST | cpte), // not a page table
        (L2.maddr() + 8, HOST | cpte),   // an L2
        (DATA2.maddr(), HOST | cpte),    // someone else's frame
        (1 << 60, HOST | cpte),          // beyond RAM
    ] {
        assert_eq!(
            w.map(maptrack, D1, active, &mut sh, 8, flags, addr),
            Err(GntStatus::GeneralError),
            "{addr:#x}"
        );
        assert_eq!(counts(&w, DATA), before);
        assert_eq!(sh.flags(8), GTF_PERMIT_ACCESS);
    }
    // GNTMAP_contains_pte at L1 entry 7.
    let m = w
        .map(
            maptrack,
            D1,
            active,
            &mut sh,
            8,
            HOST | cpte,
            L1.maddr() + 56,
        )
        .unwrap();
    assert_eq!(w.pte(7), ptval::grant_pte(DATA, HOST | cpte));
    assert_eq!(
        w.unmap(maptrack, active, &mut sh, m.handle, VA, 0),
        Err(GntStatus::GeneralError)
    );
    w.unmap(maptrack, active, &mut sh, m.handle, L1.maddr() + 56, 0)
        .unwrap();
    assert_eq!(counts(&w, DATA), before);
}

#[test]
fn device_maps_hold_references_and_check_the_bus_address() {
    let mut w = World::new();
    let mut g = table(&mut w, D1);
    let mut sh = Shared::new();
    sh.grant(9, GTF_PERMIT_ACCESS, D1, DATA);
    let before = counts(&w, DATA);
    let GrantTable { active, maptrack } = &mut g;
    let m = w
        .map(maptrack, D1, active, &mut sh, 9, DEV | HOST, VA)
        .unwrap();
    assert_eq!(counts(&w, DATA), (before.0 + 2, before.1 + 2));
    assert_eq!(active.get(9).pin, GNTPIN_DEVW_INC | GNTPIN_HSTW_INC);
    // The frame cannot become a page table while mapped writable.
    let c = ctx(D1);
    assert!(w.with(|ft, mem| ptval::pin(&c, ft, mem, DATA, 1)).is_err());
    assert_eq!(
        w.unmap(maptrack, active, &mut sh, m.handle, 0, DATA.maddr() + 4096),
        Err(GntStatus::GeneralError)
    );
    // Host part only; then with nothing named nothing happens (okay).
    w.unmap(maptrack, active, &mut sh, m.handle, VA, 0).unwrap();
    assert_eq!(counts(&w, DATA), (before.0 + 1, before.1 + 1));
    assert_eq!(sh.flags(9), GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING);
    w.unmap(maptrack, active, &mut sh, m.handle, 0, 0).unwrap();
    assert_eq!(maptrack.in_use(), 1);
    w.unmap(maptrack, active, &mut sh, m.handle, 0, DATA.maddr())
        .unwrap();
    assert_eq!(maptrack.in_use(), 0);
    assert_eq!(counts(&w, DATA), before);
    assert_eq!(sh.flags(9), GTF_PERMIT_ACCESS);
}

#[test]
fn revocation_while_mapped_keeps_the_flags_and_the_frame() {
    let mut w = World::new();
    let mut g = table(&mut w, D1);
    let mut sh = Shared::new();
    sh.grant(8, GTF_PERMIT_ACCESS, D1, DATA);
    let GrantTable { active, maptrack } = &mut g;
    let m1 = w
        .map(maptrack, D1, active, &mut sh, 8, DEV | RO, 0)
        .unwrap();
    assert!(!sh.end_access(8));
    // The granter overwrites its entry anyway: the pinned grant stands and
    // the same grantee may map it again (Xen checks the entry only when
    // it is not pinned).
    sh.e[8] = 0;
    let m2 = w
        .map(maptrack, D1, active, &mut sh, 8, DEV | RO, 0)
        .unwrap();
    w.unmap(maptrack, active, &mut sh, m2.handle, 0, DATA.maddr())
        .unwrap();
    // The granter gives the frame back while it is mapped: it stays
    // allocated to it until the last mapping goes.
    let c = ctx(D1);
    w.with(|ft, _| assert_eq!(ft.release(DATA), Ok(PagePut::InUse)));
    assert_eq!(w.info(DATA).owner(), Owner::Domain(D1));
    let _ = c;
    w.unmap(maptrack, active, &mut sh, m1.handle, 0, DATA.maddr())
        .unwrap();
    assert_eq!(w.info(DATA), PageInfo::FREE);
    assert!(w.mem.freed.contains(&DATA));
    // Now the entry (if granted again) names a frame it no longer owns.
    sh.grant(8, GTF_PERMIT_ACCESS, D1, DATA);
    assert_eq!(
        w.map(maptrack, D1, active, &mut sh, 8, DEV | RO, 0),
        Err(GntStatus::BadPage)
    );
}

#[test]
fn cross_domain_map_and_wrong_grantee() {
    let mut w = World::new();
    let mut g1 = table(&mut w, D1);
    let mut g2 = table(&mut w, D2);
    let mut sh2 = Shared::new();
    sh2.grant(8, GTF_PERMIT_ACCESS, D1, DATA2);
    let before = counts(&w, DATA2);
    let m = w
        .map(&mut g1.maptrack, D2, &mut g2.active, &mut sh2, 8, HOST, VA)
        .unwrap();
    assert_eq!(counts(&w, DATA2), (before.0 + 1, before.1 + 1));
    assert_eq!(g1.maptrack.get(m.handle).domid, D2.0);
    // The granter cannot free its table while a grant is pinned.
    assert_eq!(w.with(|ft, mem| g2.active.destroy(mem, ft)), Err(1));
    w.unmap(&mut g1.maptrack, &mut g2.active, &mut sh2, m.handle, VA, 0)
        .unwrap();
    assert_eq!(counts(&w, DATA2), before);
    // D2 granted to D1: a map as someone else (the pin records D1)...
    sh2.grant(9, GTF_PERMIT_ACCESS, D2, DATA2);
    assert_eq!(
        w.map(
            &mut g1.maptrack,
            D2,
            &mut g2.active,
            &mut sh2,
            9,
            DEV | RO,
            0
        ),
        Err(GntStatus::GeneralError)
    );
    w.with(|ft, mem| g2.active.destroy(mem, ft)).unwrap();
}

#[test]
fn maptrack_exhaustion_and_pin_overflow() {
    let mut w = World::new();
    let mut g = GrantTable::with_limits(1, 1).unwrap();
    w.with(|ft, mem| g.active.grow(mem, ft, D1, 1).unwrap());
    let mut sh = Shared::new();
    for r in 0..512 {
        sh.grant(r, GTF_PERMIT_ACCESS, D1, DATA);
    }
    let GrantTable { active, maptrack } = &mut g;
    // 128 read-only device pins of one grant; the 129th would overflow.
    for _ in 0..128 {
        w.map(maptrack, D1, active, &mut sh, 0, DEV | RO, 0)
            .unwrap();
    }
    assert_eq!(
        w.map(maptrack, D1, active, &mut sh, 0, DEV | RO, 0),
        Err(GntStatus::GeneralError)
    );
    for r in 1..=128 {
        w.map(maptrack, D1, active, &mut sh, r, DEV | RO, 0)
            .unwrap();
    }
    assert_eq!(maptrack.in_use(), 256);
    assert_eq!(
        w.map(maptrack, D1, active, &mut sh, 200, DEV | RO, 0),
        Err(GntStatus::NoDeviceSpace)
    );
    // Bad refs too (the handle comes first, as in Xen).
    assert_eq!(
        w.map(maptrack, D1, active, &mut sh, 9999, DEV | RO, 0),
        Err(GntStatus::NoDeviceSpace)
    );
    // Freed handles are reused.
    w.unmap(maptrack, active, &mut sh, 17, 0, DATA.maddr())
        .unwrap();
    let m = w
        .map(maptrack, D1, active, &mut sh, 200, DEV | RO, 0)
        .unwrap();
    assert_eq!(m.handle, 17);
    // Release everything (teardown): every reference goes.
    let c = ctx(D1);
    let handles: Vec<u32> = maptrack.mappings().map(|(h, _)| h).collect();
    assert_eq!(handles.len(), 256);
    for h in handles {
        w.with(|ft, mem| release_mapping(mem, ft, &c, maptrack, h, Some((&mut *active, &mut sh))));
    }
    assert_eq!(active.pinned(), 0);
    assert_eq!(counts(&w, DATA), (1, 0));
    assert!(sh.flags(0) & (GTF_READING | GTF_WRITING) == 0);
    w.with(|_, mem| maptrack.destroy(mem));
}

#[test]
fn implicit_unmaps_are_reported_and_keep_the_balance() {
    let mut w = World::new();
    let mut g = table(&mut w, D1);
    let mut sh = Shared::new();
    sh.grant(8, GTF_PERMIT_ACCESS, D1, DATA);
    let before = counts(&w, DATA);
    let c = ctx(D1);
    let GrantTable { active, maptrack } = &mut g;
    // A guest cannot write a GNTTAB entry itself.
    let forged = DATA.maddr() | 3 | GNTTAB;
    assert!(w
        .with(|ft, mem| ptval::mod_entry(&c, ft, mem, L1, 6, forged, false))
        .is_err());
    // Rewriting a grant PTE with the same frame and flags but no GNTTAB
    // (the fast path for an ordinary entry) is an implicit unmap.
    let m = w.map(maptrack, D1, active, &mut sh, 8, HOST, VA).unwrap();
    let same = w.pte(5) & !GNTTAB;
    w.with(|ft, mem| ptval::mod_entry(&c, ft, mem, L1, 5, same, false))
        .unwrap();
    assert_eq!(w.mem.dropped.len(), 1);
    // Zap it: the ordinary mapping's references go, the balance holds.
    w.with(|ft, mem| ptval::mod_entry(&c, ft, mem, L1, 5, 0, false))
        .unwrap();
    assert_eq!(counts(&w, DATA), before);
    // The unmap no longer finds the PTE; teardown unpins without a second
    // drop of the references.
    assert_eq!(
        w.unmap(maptrack, active, &mut sh, m.handle, VA, 0),
        Err(GntStatus::GeneralError)
    );
    w.with(|ft, mem| {
        release_mapping(
            mem,
            ft,
            &c,
            maptrack,
            m.handle,
            Some((&mut *active, &mut sh)),
        )
    });
    assert_eq!(counts(&w, DATA), before);
    assert_eq!(sh.flags(8), GTF_PERMIT_ACCESS);
    // A grant mapping over a grant mapping reports the first one.
    let a = w
        .map(maptrack, D1, active, &mut sh, 8, HOST | RO, VA)
        .unwrap();
    let b = w
        .map(maptrack, D1, active, &mut sh, 8, HOST | RO, VA)
        .unwrap();
    assert_eq!(w.mem.dropped.len(), 2);
    assert_eq!(counts(&w, DATA), (before.0 + 1, before.1));
    // Unmapping a's handle at VA removes b's PTE (the same frame): the
    // records follow, so b's teardown does not drop anything twice.
    w.unmap(maptrack, active, &mut sh, a.handle, VA, 0).unwrap();
    assert_eq!(counts(&w, DATA), before);
    w.with(|ft, mem| {
        release_mapping(
            mem,
            ft,
            &c,
            maptrack,
            b.handle,
            Some((&mut *active, &mut sh)),
        )
    });
    assert_eq!(counts(&w, DATA), before);
    assert_eq!(active.pinned(), 0);
    // Unpinning the L1 with a grant PTE in it reports it too.
    let _m = w.map(maptrack, D1, active, &mut sh, 8, HOST, VA).unwrap();
    w.with(|ft, mem| ptval::unpin(&c, ft, mem, L4)).unwrap();
    assert_eq!(w.mem.dropped.len(), 3);
    assert_eq!(counts(&w, DATA), before);
}

#[test]
fn teardown_removes_live_grant_ptes() {
    let mut w = World::new();
    let mut g = table(&mut w, D1);
    let mut sh = Shared::new();
    sh.grant(8, GTF_PERMIT_ACCESS, D1, DATA);
    let before = counts(&w, DATA);
    let c = ctx(D1);
    let GrantTable { active, maptrack } = &mut g;
    let m = w
        .map(maptrack, D1, active, &mut sh, 8, HOST | DEV, VA)
        .unwrap();
    let flushes = w.mem.flushes;
    w.with(|ft, mem| {
        release_mapping(
            mem,
            ft,
            &c,
            maptrack,
            m.handle,
            Some((&mut *active, &mut sh)),
        )
    });
    assert!(w.mem.flushes > flushes);
    assert_eq!(w.pte(5), 0);
    assert_eq!(counts(&w, DATA), before);
    assert_eq!(sh.flags(8), GTF_PERMIT_ACCESS);
    assert!(w.mem.dropped.is_empty());
    // A granter that is gone: the entry is just forgotten.
    let m = w
        .map(maptrack, D1, active, &mut sh, 8, DEV | RO, 0)
        .unwrap();
    w.with(|ft, mem| release_mapping::<_, Shared>(mem, ft, &c, maptrack, m.handle, None));
    assert_eq!(maptrack.in_use(), 0);
}

#[test]
fn racing_guests() {
    let mut w = World::new();
    let mut g = table(&mut w, D1);
    let mut sh = Shared::new();
    sh.grant(8, GTF_PERMIT_ACCESS, D1, DATA);
    let GrantTable { active, maptrack } = &mut g;
    sh.race = 4;
    let m = w
        .map(maptrack, D1, active, &mut sh, 8, DEV | RO, 0)
        .unwrap();
    w.unmap(maptrack, active, &mut sh, m.handle, 0, DATA.maddr())
        .unwrap();
    sh.race = 5;
    assert_eq!(
        w.map(maptrack, D1, active, &mut sh, 8, DEV | RO, 0),
        Err(GntStatus::GeneralError)
    );
    assert_eq!(maptrack.in_use(), 0);
}

fn side(u: u64, is_gref: bool, offset: u16) -> CopySide {
    CopySide { u, is_gref, offset }
}

#[test]
fn copies() {
    let mut w = World::new();
    let mut g1 = table(&mut w, D1);
    let mut g2 = table(&mut w, D2);
    let mut sh1 = Shared::new();
    let mut sh2 = Shared::new();
    sh2.grant(4, GTF_PERMIT_ACCESS | GTF_READONLY, D1, DATA2);
    sh2.grant(5, GTF_PERMIT_ACCESS, D1, Mfn(71));
    w.mem.t[DATA2.0 as usize][1] = 0x1122_3344_5566_7788;
    let c2 = counts(&w, DATA2);
    let c1 = counts(&w, DATA);
    let copy = |w: &mut World,
                g1: &mut GrantTable,
                g2: &mut GrantTable,
                sh1: &mut Shared,
                sh2: &mut Shared,
                s: CopySide,
                d: CopySide,
                len: u16,
                two: bool| {
        w.with(|ft, mem| {
            let mut r1 = Remote {
                domid: D1,
                active: &mut g1.active,
                shared: sh1,
                p2m: None,
            };
            let mut r2 = Remote {
                domid: D2,
                active: &mut g2.active,
                shared: sh2,
                p2m: None,
            };
            let doms = if two {
                CopyDomains::Two(&mut r2, &mut r1)
            } else {
                CopyDomains::Same(&mut r2)
            };
            copy_one(mem, ft, D1, doms, &s, &d, len)
        })
    };
    // D2's grant 4 (read-only) into D1's own frame.
    copy(
        &mut w,
        &mut g1,
        &mut g2,
        &mut sh1,
        &mut sh2,
        side(4, true, 8),
        side(DATA.0, false, 16),
        8,
        true,
    )
    .unwrap();
    assert_eq!(w.mem.t[DATA.0 as usize][2], 0x1122_3344_5566_7788);
    // The destination (D1's frame) was written; the source was not.
    assert_eq!(w.mem.dirty, [(D1.0, DATA)]);
    assert_eq!(counts(&w, DATA2), c2);
    assert_eq!(counts(&w, DATA), c1);
    assert_eq!(sh2.flags(4), GTF_PERMIT_ACCESS | GTF_READONLY);
    // Into a read-only grant: refused.
    assert_eq!(
        copy(
            &mut w,
            &mut g1,
            &mut g2,
            &mut sh1,
            &mut sh2,
            side(DATA.0, false, 0),
            side(4, true, 0),
            8,
            false
        ),
        Err(GntStatus::BadPage)
    );
    assert_eq!(
        copy(
            &mut w,
            &mut g1,
            &mut g2,
            &mut sh1,
            &mut sh2,
            side(5, true, 0),
            side(4, true, 0),
            8,
            false
        ),
        Err(GntStatus::GeneralError)
    );
    // Bounds.
    assert_eq!(
        copy(
            &mut w,
            &mut g1,
            &mut g2,
            &mut sh1,
            &mut sh2,
            side(4, true, 4090),
            side(DATA.0, false, 0),
            8,
            true
        ),
        Err(GntStatus::BadCopyArg)
    );
    assert_eq!(
        copy(
            &mut w,
            &mut g1,
            &mut g2,
            &mut sh1,
            &mut sh2,
            side(4, true, 0),
            side(DATA.0, false, 4095),
            2,
            true
        ),
        Err(GntStatus::BadCopyArg)
    );
    copy(
        &mut w,
        &mut g1,
        &mut g2,
        &mut sh1,
        &mut sh2,
        side(4, true, 0),
        side(DATA.0, false, 0),
        4096,
        true,
    )
    .unwrap();
    copy(
        &mut w,
        &mut g1,
        &mut g2,
        &mut sh1,
        &mut sh2,
        side(4, true, 0),
        side(DATA.0, false, 0),
        0,
        true,
    )
    .unwrap();
    // Bad refs, frames the domain does not own.
    assert_eq!(
        copy(
            &mut w,
            &mut g1,
            &mut g2,
            &mut sh1,
            &mut sh2,
            side(512, true, 0),
            side(DATA.0, false, 0),
            8,
            true
        ),
        Err(GntStatus::BadGntref)
    );
    assert_eq!(
        copy(
            &mut w,
            &mut g1,
            &mut g2,
            &mut sh1,
            &mut sh2,
            side(4, true, 0),
            side(DATA2.0, false, 0),
            8,
            true
        ),
        Err(GntStatus::BadPage)
    );
    assert_eq!(
        copy(
            &mut w,
            &mut g1,
            &mut g2,
            &mut sh1,
            &mut sh2,
            side(9, true, 0),
            side(DATA.0, false, 0),
            8,
            true
        ),
        Err(GntStatus::GeneralError)
    );
    // Writable grant 5 between two of D2's grants.
    copy(
        &mut w,
        &mut g1,
        &mut g2,
        &mut sh1,
        &mut sh2,
        side(4, true, 8),
        side(5, true, 0),
        8,
        false,
    )
    .unwrap();
    assert_eq!(w.mem.t[71][0], 0x1122_3344_5566_7788);
    assert_eq!(sh2.flags(5), GTF_PERMIT_ACCESS);
    assert_eq!(counts(&w, DATA2), c2);
    assert_eq!(g2.active.pinned(), 0);
    // The destination cannot be a page table.
    assert_eq!(
        copy(
            &mut w,
            &mut g1,
            &mut g2,
            &mut sh1,
            &mut sh2,
            side(4, true, 0),
            side(L1.0, false, 0),
            8,
            true
        ),
        Err(GntStatus::GeneralError)
    );
    assert_eq!(g2.active.pinned(), 0);
    assert_eq!(counts(&w, DATA2), c2);
}

#[test]
fn swaps() {
    let mut w = World::new();
    let mut g = table(&mut w, D1);
    let mut sh = Shared::new();
    sh.grant(8, GTF_PERMIT_ACCESS, D1, DATA);
    sh.grant(9, GTF_PERMIT_ACCESS | GTF_READONLY, D2, DATA2);
    let (e8, e9) = (sh.e[8], sh.e[9]);
    swap_grant_ref(&g.active, &mut sh, 8, 9).unwrap();
    assert_eq!((sh.e[8], sh.e[9]), (e9, e8));
    swap_grant_ref(&g.active, &mut sh, 8, 8).unwrap();
    assert_eq!(
        swap_grant_ref(&g.active, &mut sh, 8, 512),
        Err(GntStatus::BadGntref)
    );
    let GrantTable { active, maptrack } = &mut g;
    let m = w
        .map(maptrack, D1, active, &mut sh, 9, DEV | RO, 0)
        .unwrap();
    assert_eq!(
        swap_grant_ref(active, &mut sh, 8, 9),
        Err(GntStatus::Eagain)
    );
    w.unmap(maptrack, active, &mut sh, m.handle, 0, DATA.maddr())
        .unwrap();
    swap_grant_ref(active, &mut sh, 8, 9).unwrap();
}

#[test]
fn cache_flush_arguments() {
    use hypercall_abi::grant_table::{
        GNTTAB_CACHE_CLEAN, GNTTAB_CACHE_INVAL, GNTTAB_CACHE_SOURCE_GREF,
    };
    let both = GNTTAB_CACHE_CLEAN | GNTTAB_CACHE_INVAL;
    assert_eq!(cache_flush_check(0, 4096, both), Ok(CacheFlush::Clean));
    assert_eq!(
        cache_flush_check(8, 8, GNTTAB_CACHE_CLEAN),
        Ok(CacheFlush::Clean)
    );
    assert_eq!(cache_flush_check(0, 0, both), Ok(CacheFlush::Nothing));
    assert_eq!(cache_flush_check(0, 8, 0), Ok(CacheFlush::Nothing));
    assert_eq!(cache_flush_check(4096, 0, both), Err(Errno::EINVAL));
    assert_eq!(cache_flush_check(0, 4097, both), Err(Errno::EINVAL));
    assert_eq!(cache_flush_check(4000, 100, both), Err(Errno::EINVAL));
    assert_eq!(cache_flush_check(0, 8, 4), Err(Errno::EINVAL));
    assert_eq!(
        cache_flush_check(0, 8, GNTTAB_CACHE_CLEAN | GNTTAB_CACHE_SOURCE_GREF),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        cache_flush_check(0, 8, GNTTAB_CACHE_INVAL),
        Err(Errno::EOPNOTSUPP)
    );
    // A pinned grant of the frame for the caller.
    let mut w = World::new();
    let mut g = table(&mut w, D2);
    let mut sh = Shared::new();
    sh.grant(8, GTF_PERMIT_ACCESS, D1, DATA2);
    assert!(!grant_map_exists(&g.active, D1, DATA2));
    let mut lt = GrantTable::new();
    let m = w
        .map(&mut lt.maptrack, D2, &mut g.active, &mut sh, 8, DEV | RO, 0)
        .unwrap();
    assert!(grant_map_exists(&g.active, D1, DATA2));
    assert!(!grant_map_exists(&g.active, D2, DATA2));
    assert!(!grant_map_exists(&g.active, D1, DATA));
    w.unmap(
        &mut lt.maptrack,
        &mut g.active,
        &mut sh,
        m.handle,
        0,
        DATA2.maddr(),
    )
    .unwrap();
    assert!(!grant_map_exists(&g.active, D1, DATA2));
}

#[test]
fn unmap_and_replace_moves_a_mapping_into_the_slot() {
    let mut w = World::new();
    let mut g = table(&mut w, D1);
    let mut sh = Shared::new();
    sh.grant(8, GTF_PERMIT_ACCESS, D1, DATA);
    let c = ctx(D1);
    let before = counts(&w, DATA);
    let other = Mfn(20);
    let other_before = counts(&w, other);
    // An ordinary mapping at L1 index 6 (VA + 0x1000).
    w.with(|ft, mem| ptval::mod_entry(&c, ft, mem, L1, 6, other.maddr() | 3, false))
        .unwrap();
    let GrantTable { active, maptrack } = &mut g;
    let m = w.map(maptrack, D1, active, &mut sh, 8, HOST, VA).unwrap();
    let replace = |w: &mut World,
                   maptrack: &mut Maptrack,
                   active: &mut ActiveTable,
                   sh: &mut Shared,
                   new_addr: u64| {
        w.with(|ft, mem| {
            let mut l = Local {
                ctx: &c,
                l4: L4,
                maptrack,
            };
            let req = UnmapRequest {
                host_addr: VA,
                dev_bus_addr: 0,
                handle: m.handle,
                new_addr,
            };
            let u = unmap_grant_ref(mem, ft, &mut l, active, &req)?;
            unmap_complete(mem, ft, active, sh, &u);
            Ok::<(), Status>(())
        })
    };
    // A new address with nothing mapped: refused, the grant stays.
    assert_eq!(
        replace(&mut w, maptrack, active, &mut sh, 0x4000_0000),
        Err(GntStatus::GeneralError)
    );
    assert_eq!(w.pte(5), ptval::grant_pte(DATA, HOST));
    replace(&mut w, maptrack, active, &mut sh, VA + 0x1000).unwrap();
    assert_eq!(w.pte(6), 0);
    assert_eq!((w.pte(5) & 0x000f_ffff_ffff_f000) >> 12, other.0);
    assert_eq!(counts(&w, DATA), before);
    assert_eq!(counts(&w, other), (other_before.0 + 1, other_before.1 + 1));
    assert_eq!(sh.flags(8), GTF_PERMIT_ACCESS);
    assert!(w.mem.dropped.is_empty());
}

/// Handles come in Xen's order (never used ones first, then freed ones,
/// oldest first) from pages that were never cleared, and a handle not yet
/// given out reads as free whatever its page held.
#[test]
fn maptrack_handles_come_in_xens_order_from_uncleared_pages() {
    let mut w = World::new();
    let mut g = table(&mut w, D1);
    let mut sh = Shared::new();
    for gref in 1..=4 {
        sh.grant(gref, GTF_PERMIT_ACCESS, D1, DATA);
    }
    let pages = w.mem.pages_out;
    let GrantTable { active, maptrack } = &mut g;
    let m: Vec<_> = (1..=3)
        .map(|gref| {
            let va = VA + 0x1000 * u64::from(gref - 1);
            w.map(maptrack, D1, active, &mut sh, gref, HOST, va)
                .unwrap()
        })
        .collect();
    assert_eq!(m.iter().map(|m| m.handle).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(
        maptrack.mappings().count(),
        3,
        "garbage beyond them is free"
    );
    assert_eq!(maptrack.get(3), Mapping::default());
    w.unmap(maptrack, active, &mut sh, 1, VA + 0x1000, 0)
        .unwrap();
    // Handle 1 is freed, but the never used handle 3 comes first, as Xen's
    // list has it (its free list holds the new page's handles ahead of
    // the freed one).
    let next = w
        .map(maptrack, D1, active, &mut sh, 4, HOST, VA + 0x1000)
        .unwrap();
    assert_eq!(next.handle, 3);
    assert_eq!(maptrack.in_use(), 3);
    for (h, va) in [(0, VA), (2, VA + 0x2000), (3, VA + 0x1000)] {
        w.unmap(maptrack, active, &mut sh, h, va, 0).unwrap();
    }
    assert_eq!((maptrack.in_use(), maptrack.limit()), (0, 0));
    assert_eq!(w.mem.pages_out, pages, "the maptrack page went back");
}

/// An unmap flushes TLBs only if the grant PTE it removed was used: a CPU
/// sets the accessed flag before it caches a translation, so one removed
/// without it left nothing to flush (Xen's "avoid TLB flush if grant
/// mapped page was not accessed"); with it, the flush comes before the
/// references go.
#[test]
fn unmap_flushes_only_for_a_pte_that_was_used() {
    let mut w = World::new();
    let mut g = table(&mut w, D1);
    let mut sh = Shared::new();
    sh.grant(8, GTF_PERMIT_ACCESS, D1, DATA);
    let before = counts(&w, DATA);
    let GrantTable { active, maptrack } = &mut g;
    let m = w.map(maptrack, D1, active, &mut sh, 8, HOST, VA).unwrap();
    let flushes = w.mem.flushes;
    w.unmap(maptrack, active, &mut sh, m.handle, VA, 0).unwrap();
    assert_eq!(w.mem.flushes, flushes, "never used: no flush");
    assert_eq!(counts(&w, DATA), before);
    // Mapped again, and used this time: the CPU set A (and D) in it.
    let m = w.map(maptrack, D1, active, &mut sh, 8, HOST, VA).unwrap();
    w.mem.t[L1.0 as usize][5] |= PteFlags::ACCESSED.bits() | PteFlags::DIRTY.bits();
    let flushes = w.mem.flushes;
    w.unmap(maptrack, active, &mut sh, m.handle, VA, 0).unwrap();
    assert_eq!(w.mem.flushes, flushes + 1, "used: one flush");
    assert_eq!(w.pte(5), 0);
    assert_eq!(counts(&w, DATA), before);
}

// --- Xen security advisories (docs/xsa.md) ---------------------------------

/// XSA-224, "grant table operations mishandle reference counts"
/// (CVE-2017-10920, bug 1: "a GNTMAP_device_map and GNTMAP_host_map
/// mapping, when followed by only a GNTMAP_host_map unmapping"; bug 2,
/// CVE-2017-10921: "does not ensure sufficient type counts" for such a
/// mapping). Xen dropped the device part's references with the host part,
/// so the frame could become a page table while still mapped writable for
/// a device. Oxen must drop exactly the host part's references on a
/// host-only unmap, keep the device part's (and GTF_reading/writing),
/// do nothing on a repeated host-only unmap (Xen's answer: okay), and
/// balance everything once the device part goes.
#[test]
fn xsa_224_host_only_unmap_of_a_device_and_host_mapping() {
    let mut w = World::new();
    let mut g = table(&mut w, D1);
    let mut sh = Shared::new();
    sh.grant(9, GTF_PERMIT_ACCESS, D1, DATA);
    let before = counts(&w, DATA);
    let GrantTable { active, maptrack } = &mut g;
    let m = w
        .map(maptrack, D1, active, &mut sh, 9, DEV | HOST, VA)
        .unwrap();
    assert_eq!(counts(&w, DATA), (before.0 + 2, before.1 + 2));
    // The host part only.
    w.unmap(maptrack, active, &mut sh, m.handle, VA, 0).unwrap();
    assert_eq!(w.pte(5), 0);
    assert_eq!(counts(&w, DATA), (before.0 + 1, before.1 + 1));
    assert_eq!(active.get(9).pin, GNTPIN_DEVW_INC);
    assert_eq!(sh.flags(9), GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING);
    // Bug 2: the device part still holds its writable type reference, so
    // the frame cannot turn into a page table.
    let c = ctx(D1);
    assert!(w.with(|ft, mem| ptval::pin(&c, ft, mem, DATA, 1)).is_err());
    assert_eq!(w.info(DATA).page_type(), PageType::Writable);
    // Unmapping the host part again is a no-op (Xen's unmap_common only
    // acts on host_addr while the handle still has GNTMAP_host_map): okay,
    // and the device part's references stay.
    w.unmap(maptrack, active, &mut sh, m.handle, VA, 0).unwrap();
    assert_eq!(counts(&w, DATA), (before.0 + 1, before.1 + 1));
    assert_eq!(active.get(9).pin, GNTPIN_DEVW_INC);
    // The device part: everything back.
    w.unmap(maptrack, active, &mut sh, m.handle, 0, DATA.maddr())
        .unwrap();
    assert_eq!(counts(&w, DATA), before);
    assert_eq!(sh.flags(9), GTF_PERMIT_ACCESS);
    assert_eq!(maptrack.in_use(), 0);
    assert_eq!(
        w.unmap(maptrack, active, &mut sh, m.handle, 0, DATA.maddr()),
        Err(GntStatus::BadHandle)
    );
    assert!(sh.end_access(9));
}

/// XSA-230, "grant_table: possibly premature clearing of GTF_writing /
/// GTF_reading" (CVE-2017-12855): after a grant copy Xen cleared
/// GTF_writing looking only at host pins, so a grant still mapped writable
/// for a device looked free to its granter, which could reuse the frame
/// while the grantee still wrote it. Oxen must keep GTF_reading and
/// GTF_writing while any mapping (host or device) remains, across copies
/// from and into the grant, and clear them when the last one goes.
#[test]
fn xsa_230_copy_keeps_flags_of_a_device_mapped_grant() {
    let mut w = World::new();
    let mut g1 = table(&mut w, D1);
    let mut g2 = table(&mut w, D2);
    let mut sh1 = Shared::new();
    let mut sh2 = Shared::new();
    sh2.grant(5, GTF_PERMIT_ACCESS, D1, DATA2);
    let c1 = counts(&w, DATA);
    let c2 = counts(&w, DATA2);
    // D1 maps D2's grant 5 writable for a device only.
    let m = {
        let GrantTable { maptrack, .. } = &mut g1;
        w.map(maptrack, D2, &mut g2.active, &mut sh2, 5, DEV, 0)
            .unwrap()
    };
    let busy = GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING;
    assert_eq!(sh2.flags(5), busy);
    // D1 copies into the grant and out of it.
    fn copy(
        w: &mut World,
        g1: &mut GrantTable,
        g2: &mut GrantTable,
        sh1: &mut Shared,
        sh2: &mut Shared,
        into: bool,
    ) -> Result<(), Status> {
        w.with(|ft, mem| {
            let mut r1 = Remote {
                domid: D1,
                active: &mut g1.active,
                shared: sh1,
                p2m: None,
            };
            let mut r2 = Remote {
                domid: D2,
                active: &mut g2.active,
                shared: sh2,
                p2m: None,
            };
            if into {
                let doms = CopyDomains::Two(&mut r1, &mut r2);
                copy_one(
                    mem,
                    ft,
                    D1,
                    doms,
                    &side(DATA.0, false, 0),
                    &side(5, true, 8),
                    8,
                )
            } else {
                let doms = CopyDomains::Two(&mut r2, &mut r1);
                copy_one(
                    mem,
                    ft,
                    D1,
                    doms,
                    &side(5, true, 8),
                    &side(DATA.0, false, 0),
                    8,
                )
            }
        })
    }
    copy(&mut w, &mut g1, &mut g2, &mut sh1, &mut sh2, true).unwrap();
    assert_eq!(sh2.flags(5), busy, "still mapped for the device");
    copy(&mut w, &mut g1, &mut g2, &mut sh1, &mut sh2, false).unwrap();
    assert_eq!(sh2.flags(5), busy, "still mapped for the device");
    assert!(!sh2.end_access(5));
    // The granter's frame holds the device mapping's references only.
    assert_eq!(counts(&w, DATA2), (c2.0 + 1, c2.1 + 1));
    assert_eq!(counts(&w, DATA), c1);
    // Unmapped: flags clear, the granter may end access.
    {
        let GrantTable { maptrack, .. } = &mut g1;
        w.unmap(
            maptrack,
            &mut g2.active,
            &mut sh2,
            m.handle,
            0,
            DATA2.maddr(),
        )
        .unwrap();
    }
    assert_eq!(sh2.flags(5), GTF_PERMIT_ACCESS);
    assert_eq!(counts(&w, DATA2), c2);
    // A copy on an unmapped grant leaves it unpinned.
    copy(&mut w, &mut g1, &mut g2, &mut sh1, &mut sh2, true).unwrap();
    assert_eq!(sh2.flags(5), GTF_PERMIT_ACCESS);
    assert!(sh2.end_access(5));
}
