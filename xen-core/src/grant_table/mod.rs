//! Grant tables, version 1: how a domain lets another map or copy one of its
//! frames, as Xen 4.17 keeps them (xen/common/grant_table.c,
//! xen/arch/x86/pv/grant_table.c, public/grant_table.h).
//!
//! **What it owns.** Per domain, a [`GrantTable`]: its shared frames (the
//! `grant_entry_v1` array the domain writes, growing up to
//! `max_grant_frames`), the *active* entries (Xen's `active_grant_entry`:
//! pin counts, the grantee, the frame) and the *maptrack* (Xen's
//! `grant_mapping`: one handle per mapping this domain made of someone's
//! grant, up to `max_maptrack_frames` pages of 256). The decisions and status
//! codes of `map_grant_ref`, `unmap_grant_ref` and `copy`, and the frame-table
//! references a grant holds:
//!
//! - A pin of a grant (a mapping or a copy in progress) sets `GTF_reading`
//!   (and `GTF_writing` for a writable one) in the granter's shared entry; the
//!   last read / write pin clears them. A granter ends access only while they
//!   are clear, so a frame stays granted while it is mapped.
//! - A host mapping holds a general reference on the frame, plus a writable
//!   type reference when writable: exactly what an ordinary L1 entry holds,
//!   and the grant PTE (marked with `ptval::GNTTAB`) is what holds them. A
//!   device mapping holds the same, kept by its maptrack entry. So a granted,
//!   mapped frame stays allocated to its owner until the last mapping goes,
//!   even if the owner gives it back (`decrease_reservation` then only drops
//!   the allocation reference, as Xen's `guest_remove_page`).
//! - The shared frames belong to the domain (as Xen's
//!   `share_xen_page_with_guest(.., SHARE_rw)`): owned by it, with a general
//!   and a writable type reference of the table's, and no allocation
//!   reference, so the domain can map them writable, never as a page table,
//!   and cannot give them back.
//!
//! **What it trusts.** The frame table, and the glue's [`GrantEnv`] (memory,
//! page allocation, TLB flushes) and [`SharedEntries`] (atomic access to the
//! granter's shared entries). Nothing the guests wrote: grant references,
//! handles, flags, offsets and lengths are all checked, and the shared
//! entries are read once and updated with bounded compare-and-swap loops.
//!
//! **Deliberate deviations** are listed in docs/abi-deviations.md ("Grant
//! tables").

use hypercall_abi::errno::Errno;
use hypercall_abi::grant_table::{
    GntStatus, GNTMAP_CONTAINS_PTE, GNTMAP_DEVICE_MAP, GNTMAP_HOST_MAP, GNTMAP_READONLY,
    GNTTAB_CACHE_CLEAN, GNTTAB_CACHE_INVAL, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY,
    GTF_SUB_PAGE, GTF_TYPE_MASK, GTF_WRITING,
};

use crate::mm::frame_table::{DomId, FrameTable, Owner, PagePut, PageType};
use crate::mm::ptval::{self, GrantPteAt, PtContext, PtMemory};
use crate::mm::Mfn;

#[cfg(test)]
mod tests;

/// Xen's default `gnttab_max_frames`: most shared frames per domain.
pub const MAX_GRANT_FRAMES: u32 = 64;
/// Xen's default `gnttab_max_maptrack_frames`: most maptrack pages.
pub const MAX_MAPTRACK_FRAMES: u32 = 1024;
/// Shared frames a table starts with (`INITIAL_NR_GRANT_FRAMES`).
pub const INITIAL_NR_GRANT_FRAMES: u32 = 1;
/// v1 entries per shared frame (8 bytes each).
pub const ENTRIES_PER_FRAME: u32 = 512;
/// Maptrack entries per page (Xen's 16-byte `grant_mapping`).
pub const MAPTRACK_PER_PAGE: u32 = 256;
/// Active entries per bookkeeping page (two 8-byte words each).
const ACTIVE_PER_PAGE: u32 = 256;
/// Bookkeeping pages of active entries per shared frame.
const ACTIVE_PAGES_PER_FRAME: u32 = ENTRIES_PER_FRAME / ACTIVE_PER_PAGE;

/// Pin counts (Xen's `GNTPIN_*`): writable host, read-only host, writable
/// device, read-only device mappings, 8 bits each.
pub const GNTPIN_HSTW_INC: u32 = 1;
/// Read-only host mapping.
pub const GNTPIN_HSTR_INC: u32 = 1 << 8;
/// Writable device mapping.
pub const GNTPIN_DEVW_INC: u32 = 1 << 16;
/// Read-only device mapping.
pub const GNTPIN_DEVR_INC: u32 = 1 << 24;
const GNTPIN_HSTW_MASK: u32 = 0xff;
const GNTPIN_DEVW_MASK: u32 = 0xff << 16;
const WRITERS: u32 = GNTPIN_HSTW_MASK | GNTPIN_DEVW_MASK;
/// A pin count about to overflow (Xen refuses at bit 7 of any count).
const PIN_OVERFLOW: u32 = 0x8080_8080;
/// End of the maptrack free list.
const MAPTRACK_TAIL: u32 = u32::MAX;
/// Compare-and-swap attempts on a shared entry before giving up (Xen's 5).
const CMPXCHG_TRIES: u32 = 5;

/// A 4 KiB page of hypervisor memory for bookkeeping.
pub type Page = [u64; 512];

/// What the grant-table logic needs from the hypervisor, on top of the
/// page-table memory of the domain making the call.
pub trait GrantEnv: PtMemory {
    /// A zeroed bookkeeping page, or `None` when memory is short.
    fn alloc_page(&mut self) -> Option<&'static mut Page>;
    /// A bookkeeping page whose contents the caller never reads before it
    /// writes them (maptrack pages), so it need not be cleared.
    fn alloc_page_uncleared(&mut self) -> Option<&'static mut Page> {
        self.alloc_page()
    }
    /// Gives back a page [`GrantEnv::alloc_page`] handed out.
    fn free_page(&mut self, page: &'static mut Page);
    /// A zeroed free machine frame for a shared grant frame (not yet in the
    /// frame table), or `None`.
    fn alloc_frame(&mut self) -> Option<Mfn>;
    /// Gives back a frame from [`GrantEnv::alloc_frame`] that was never
    /// entered in the frame table.
    fn free_frame(&mut self, mfn: Mfn);
    /// Flushes every TLB of the domain making the call (after removing grant
    /// mappings, before their references go).
    fn flush_tlbs(&mut self);
    /// Copies `len` bytes from `src` at `src_off` to `dst` at `dst_off`
    /// (both in bounds; the frames are referenced).
    fn copy(&mut self, src: Mfn, src_off: u16, dst: Mfn, dst_off: u16, len: u16);
    /// Granter `rd`'s frame `mfn` may have been written through a grant (a
    /// writable mapping went, or a copy wrote it): Xen's
    /// `gnttab_mark_dirty`, for the granter's log-dirty mode.
    fn mark_dirty(&mut self, _rd: u16, _mfn: Mfn) {}
}

/// The v1 shared entries of a granting domain, which its vCPUs may change
/// at any moment: reads are single loads, updates atomic.
pub trait SharedEntries {
    /// `flags | domid << 16` of entry `gref` (one 32-bit load).
    fn header(&self, gref: u32) -> u32;
    /// The `frame` field of entry `gref`.
    fn frame(&self, gref: u32) -> u32;
    /// Compare-and-swap of the header; returns the value found.
    fn cmpxchg_header(&mut self, gref: u32, old: u32, new: u32) -> u32;
    /// Atomically clears `mask` in the entry's flags.
    fn clear_flags(&mut self, gref: u32, mask: u16);
    /// The whole 8-byte entry (for `swap_grant_ref`).
    fn entry(&self, gref: u32) -> u64;
    /// Stores the whole 8-byte entry (for `swap_grant_ref`).
    fn set_entry(&mut self, gref: u32, e: u64);
}

/// A domain's grant table: the granting side ([`ActiveTable`]) and the
/// mapping side ([`Maptrack`]), separate so a self-grant borrows both.
pub struct GrantTable {
    /// Shared frames and active entries.
    pub active: ActiveTable,
    /// This domain's mappings of grants.
    pub maptrack: Maptrack,
}

/// The table could not grow: beyond its limit, or out of memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrowError;

/// Limits a domain's table was created with, out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadLimits;

impl GrantTable {
    /// A table with Xen's default limits.
    pub const fn new() -> Self {
        GrantTable {
            active: ActiveTable::new(MAX_GRANT_FRAMES),
            maptrack: Maptrack::new(MAX_MAPTRACK_FRAMES),
        }
    }

    /// A table with the given limits (`XEN_DOMCTL_createdomain`'s
    /// `max_grant_frames` / `max_maptrack_frames`); Xen's `grant_table_init`
    /// refuses (-EINVAL) fewer than 1 or more than the defaults' frames.
    pub const fn with_limits(max_grant_frames: u32, max_maptrack: u32) -> Result<Self, BadLimits> {
        if max_grant_frames < INITIAL_NR_GRANT_FRAMES
            || max_grant_frames > MAX_GRANT_FRAMES
            || max_maptrack > MAX_MAPTRACK_FRAMES
        {
            return Err(BadLimits);
        }
        Ok(GrantTable {
            active: ActiveTable::new(max_grant_frames),
            maptrack: Maptrack::new(max_maptrack),
        })
    }
}

impl GrantTable {
    /// The table `XEN_DOMCTL_createdomain` asks for (Xen 4.17's
    /// `grant_table_init`): a negative limit means the default; `Err` is
    /// the domctl's `-EINVAL`.
    pub fn for_createdomain(
        max_grant_frames: i32,
        max_maptrack_frames: i32,
    ) -> Result<Self, BadLimits> {
        let frames = u32::try_from(max_grant_frames).unwrap_or(MAX_GRANT_FRAMES);
        let maptrack = u32::try_from(max_maptrack_frames).unwrap_or(MAX_MAPTRACK_FRAMES);
        Self::with_limits(frames, maptrack)
    }
}

impl Default for GrantTable {
    fn default() -> Self {
        Self::new()
    }
}

/// One active entry (Xen's `active_grant_entry`), unpacked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Active {
    /// Pin counts (`GNTPIN_*`).
    pub pin: u32,
    /// The domain the grant is pinned for.
    pub domid: u16,
    /// The frame pinned.
    pub mfn: Mfn,
}

/// The granting side of a table: shared frames and active entries.
pub struct ActiveTable {
    max_frames: u32,
    nr_frames: u32,
    frames: [Mfn; MAX_GRANT_FRAMES as usize],
    pages: [Option<&'static mut Page>; (MAX_GRANT_FRAMES * ACTIVE_PAGES_PER_FRAME) as usize],
}

impl ActiveTable {
    const fn new(max_frames: u32) -> Self {
        ActiveTable {
            max_frames,
            nr_frames: 0,
            frames: [Mfn(0); MAX_GRANT_FRAMES as usize],
            pages: [const { None }; (MAX_GRANT_FRAMES * ACTIVE_PAGES_PER_FRAME) as usize],
        }
    }

    /// Shared frames as `query_size` reports them (a table has
    /// [`INITIAL_NR_GRANT_FRAMES`] from the start; they are allocated at
    /// first use).
    pub fn nr_frames(&self) -> u32 {
        self.nr_frames.max(INITIAL_NR_GRANT_FRAMES)
    }

    /// Shared frames allocated so far.
    pub fn allocated_frames(&self) -> &[Mfn] {
        &self.frames[..self.nr_frames as usize]
    }

    /// The domain's `max_grant_frames`.
    pub fn max_frames(&self) -> u32 {
        self.max_frames
    }

    /// Number of grant references (`nr_grant_entries`).
    pub fn nr_entries(&self) -> u32 {
        self.nr_frames() * ENTRIES_PER_FRAME
    }

    /// Entry `gref` (all zero where not allocated yet).
    pub fn get(&self, gref: u32) -> Active {
        let (p, i) = (
            (gref / ACTIVE_PER_PAGE) as usize,
            (gref % ACTIVE_PER_PAGE) as usize,
        );
        match self.pages.get(p) {
            Some(Some(page)) => Active {
                pin: page[2 * i] as u32,
                domid: (page[2 * i] >> 32) as u16,
                mfn: Mfn(page[2 * i + 1]),
            },
            _ => Active::default(),
        }
    }

    fn set(&mut self, gref: u32, a: Active) {
        let (p, i) = (
            (gref / ACTIVE_PER_PAGE) as usize,
            (gref % ACTIVE_PER_PAGE) as usize,
        );
        if let Some(Some(page)) = self.pages.get_mut(p) {
            page[2 * i] = u64::from(a.pin) | u64::from(a.domid) << 32;
            page[2 * i + 1] = a.mfn.0;
        }
    }

    /// Number of entries with a pin (a domain with any cannot go yet).
    pub fn pinned(&self) -> u32 {
        (0..self.nr_frames * ENTRIES_PER_FRAME)
            .filter(|&r| self.get(r).pin != 0)
            .count() as u32
    }

    /// Grows the shared table to `want` frames (at least
    /// [`INITIAL_NR_GRANT_FRAMES`]; Xen's `gnttab_grow_table`): new frames are
    /// zeroed and given to `owner` as described in the module comment. On
    /// failure nothing changed.
    pub fn grow<E: GrantEnv + ?Sized>(
        &mut self,
        env: &mut E,
        ft: &mut FrameTable<'_>,
        owner: DomId,
        want: u32,
    ) -> Result<(), GrowError> {
        let want = want.max(INITIAL_NR_GRANT_FRAMES);
        if want > self.max_frames {
            return Err(GrowError);
        }
        let start = self.nr_frames;
        while self.nr_frames < want {
            if self.add_frame(env, ft, owner).is_err() {
                while self.nr_frames > start {
                    self.remove_last_frame(env, ft);
                }
                return Err(GrowError);
            }
        }
        Ok(())
    }

    fn add_frame<E: GrantEnv + ?Sized>(
        &mut self,
        env: &mut E,
        ft: &mut FrameTable<'_>,
        owner: DomId,
    ) -> Result<(), GrowError> {
        let n = self.nr_frames as usize;
        let first_page = n * ACTIVE_PAGES_PER_FRAME as usize;
        for k in 0..ACTIVE_PAGES_PER_FRAME as usize {
            if self.pages[first_page + k].is_none() {
                match env.alloc_page() {
                    Some(p) => self.pages[first_page + k] = Some(p),
                    None => {
                        self.free_active_pages(env, n);
                        return Err(GrowError);
                    }
                }
            }
        }
        let Some(mfn) = env.alloc_frame() else {
            self.free_active_pages(env, n);
            return Err(GrowError);
        };
        let o = Owner::Domain(owner);
        // share_xen_page_with_guest: owned, no allocation reference, a
        // general and a writable type reference held by the table.
        let shared = ft.assign(mfn, o).is_ok()
            && ft.get_page(mfn, o).is_ok()
            && ft.release(mfn) == Ok(PagePut::InUse)
            && ft.get_page_type(mfn, PageType::Writable).is_ok();
        if !shared {
            log::error!("grant table: cannot share {mfn:?} with {owner}");
            if ft.info(mfn).is_ok_and(|i| i.count() == 0) {
                env.free_frame(mfn);
            }
            self.free_active_pages(env, n);
            return Err(GrowError);
        }
        self.frames[n] = mfn;
        self.nr_frames += 1;
        Ok(())
    }

    fn free_active_pages<E: GrantEnv + ?Sized>(&mut self, env: &mut E, frame: usize) {
        let first = frame * ACTIVE_PAGES_PER_FRAME as usize;
        for k in 0..ACTIVE_PAGES_PER_FRAME as usize {
            if let Some(p) = self.pages[first + k].take() {
                env.free_page(p);
            }
        }
    }

    fn remove_last_frame<E: GrantEnv + ?Sized>(&mut self, env: &mut E, ft: &mut FrameTable<'_>) {
        let n = (self.nr_frames - 1) as usize;
        let mfn = self.frames[n];
        match ft.put_page_type(mfn).and_then(|_| ft.put_page(mfn)) {
            Ok(PagePut::Freed) => env.frame_freed(mfn),
            Ok(PagePut::InUse) => {}
            Err(e) => log::error!("grant table: releasing a shared frame: {e}"),
        }
        self.free_active_pages(env, n);
        self.nr_frames -= 1;
    }

    /// The machine frame of shared frame `idx`, growing the table to hold
    /// it if allowed (Xen's `gnttab_get_shared_frame_mfn`, for
    /// `XENMAPSPACE_grant_table`); `None` (-EINVAL) beyond the limit.
    pub fn frame_for_index<E: GrantEnv + ?Sized>(
        &mut self,
        env: &mut E,
        ft: &mut FrameTable<'_>,
        owner: DomId,
        idx: u64,
    ) -> Option<Mfn> {
        if idx >= u64::from(self.nr_frames) {
            let want = u32::try_from(idx.checked_add(1)?).ok()?;
            if want <= self.max_frames {
                let _ = self.grow(env, ft, owner, want);
            }
            if idx >= u64::from(self.nr_frames) {
                return None;
            }
        }
        Some(self.frames[idx as usize])
    }

    /// Releases the shared frames and bookkeeping of a dying domain (Xen's
    /// `grant_table_destroy`): only once no entry is pinned (other domains'
    /// mappings of its grants keep the table; call again after they go).
    pub fn destroy<E: GrantEnv + ?Sized>(
        &mut self,
        env: &mut E,
        ft: &mut FrameTable<'_>,
    ) -> Result<(), u32> {
        let pinned = self.pinned();
        if pinned != 0 {
            return Err(pinned);
        }
        while self.nr_frames > 0 {
            self.remove_last_frame(env, ft);
        }
        Ok(())
    }
}

/// One maptrack entry (Xen's `grant_mapping`), unpacked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mapping {
    /// The grant reference mapped.
    pub gref: u32,
    /// `GNTMAP_*` flags still in force (0: free handle).
    pub flags: u16,
    /// The granting domain.
    pub domid: u16,
    /// Machine address of the grant PTE of a host mapping (0: none).
    pub pte: u64,
}

/// The mapping side of a table: handles of this domain's grant mappings.
///
/// Handles are given out as Xen's `get_maptrack_handle` gives them: never
/// used ones in order first, then freed ones, oldest first (Xen threads
/// every new page's handles onto its free list and puts freed handles at
/// the tail). Handles from `fresh` up to the limit were never used and
/// read as free whatever their page holds, so a new page needs neither
/// clearing nor threading: the pages come and go with the mappings (see
/// [`Maptrack::shrink_if_unused`]), and that must cost next to nothing.
pub struct Maptrack {
    max_pages: u32,
    nr_pages: u32,
    pages: [Option<&'static mut Page>; MAX_MAPTRACK_FRAMES as usize],
    /// First handle never given out since the pages were allocated.
    fresh: u32,
    free_head: u32,
    free_tail: u32,
    in_use: u32,
}

impl Maptrack {
    const fn new(max_pages: u32) -> Self {
        Maptrack {
            max_pages,
            nr_pages: 0,
            pages: [const { None }; MAX_MAPTRACK_FRAMES as usize],
            fresh: 0,
            free_head: MAPTRACK_TAIL,
            free_tail: MAPTRACK_TAIL,
            in_use: 0,
        }
    }

    /// Handles that exist (Xen's `maptrack_limit`).
    pub fn limit(&self) -> u32 {
        self.nr_pages * MAPTRACK_PER_PAGE
    }

    /// Handles in use.
    pub fn in_use(&self) -> u32 {
        self.in_use
    }

    /// Entry `handle` (zero beyond the limit and for never used handles).
    pub fn get(&self, handle: u32) -> Mapping {
        if handle >= self.fresh {
            return Mapping::default();
        }
        let (p, i) = (
            (handle / MAPTRACK_PER_PAGE) as usize,
            (handle % MAPTRACK_PER_PAGE) as usize,
        );
        match self.pages.get(p) {
            Some(Some(page)) => Mapping {
                gref: page[2 * i] as u32,
                flags: (page[2 * i] >> 32) as u16,
                domid: (page[2 * i] >> 48) as u16,
                pte: page[2 * i + 1],
            },
            _ => Mapping::default(),
        }
    }

    fn set(&mut self, handle: u32, m: Mapping) {
        if handle >= self.fresh {
            return;
        }
        let (p, i) = (
            (handle / MAPTRACK_PER_PAGE) as usize,
            (handle % MAPTRACK_PER_PAGE) as usize,
        );
        if let Some(Some(page)) = self.pages.get_mut(p) {
            page[2 * i] = u64::from(m.gref) | u64::from(m.flags) << 32 | u64::from(m.domid) << 48;
            page[2 * i + 1] = m.pte;
        }
    }

    /// A free handle (Xen's `get_maptrack_handle`), adding a page of them if
    /// none is free and the limit allows; `None` when exhausted.
    fn take<E: GrantEnv + ?Sized>(&mut self, env: &mut E) -> Option<u32> {
        let h = if self.fresh < self.limit() {
            self.fresh += 1;
            self.fresh - 1
        } else if self.free_head != MAPTRACK_TAIL {
            let h = self.free_head;
            let next = self.get(h).gref;
            self.free_head = next;
            if next == MAPTRACK_TAIL {
                self.free_tail = MAPTRACK_TAIL;
            }
            h
        } else {
            if self.nr_pages >= self.max_pages {
                return None;
            }
            // Not cleared: its handles are fresh, read as free until used.
            let page = env.alloc_page_uncleared()?;
            self.pages[self.nr_pages as usize] = Some(page);
            self.nr_pages += 1;
            self.fresh += 1;
            self.fresh - 1
        };
        // A free handle's entry: nothing in force.
        self.set(h, Mapping::default());
        self.in_use += 1;
        Some(h)
    }

    /// Appends `h` to the free list (Xen's `put_maptrack_handle`: freed
    /// handles go to the tail).
    fn push_free(&mut self, h: u32) {
        self.set(
            h,
            Mapping {
                gref: MAPTRACK_TAIL,
                ..Mapping::default()
            },
        );
        if self.free_tail == MAPTRACK_TAIL {
            self.free_head = h;
        } else {
            let mut t = self.get(self.free_tail);
            t.gref = h;
            self.set(self.free_tail, t);
        }
        self.free_tail = h;
    }

    fn put(&mut self, h: u32) {
        self.push_free(h);
        self.in_use = self.in_use.saturating_sub(1);
    }

    /// Handles of every mapping in force.
    pub fn mappings(&self) -> impl Iterator<Item = (u32, Mapping)> + '_ {
        (0..self.fresh)
            .map(|h| (h, self.get(h)))
            .filter(|(_, m)| m.flags & (GNTMAP_DEVICE_MAP | GNTMAP_HOST_MAP) as u16 != 0)
    }

    /// Gives the maptrack pages back once no mapping uses them (a
    /// back-end domain that stopped mapping, e.g. Dom0 after the last
    /// guest's disks and vifs went, holds no frames for it). Xen keeps
    /// them until the domain dies; freeing them early changes nothing a
    /// guest can see: no handle is live, and the next map allocates again
    /// (cheaply: a page of fresh handles needs no preparation).
    pub fn shrink_if_unused<E: GrantEnv + ?Sized>(&mut self, env: &mut E) {
        if self.in_use == 0 && self.nr_pages > 0 {
            self.destroy(env);
        }
    }

    /// Frees the maptrack pages (the domain is gone; every mapping was
    /// released with [`release_mapping`]).
    pub fn destroy<E: GrantEnv + ?Sized>(&mut self, env: &mut E) {
        for p in self.pages[..self.nr_pages as usize].iter_mut() {
            if let Some(page) = p.take() {
                env.free_page(page);
            }
        }
        self.nr_pages = 0;
        self.fresh = 0;
        self.free_head = MAPTRACK_TAIL;
        self.free_tail = MAPTRACK_TAIL;
        self.in_use = 0;
    }
}

/// The status of one operation (`GNTST_*`).
pub type Status = GntStatus;

/// A `map_grant_ref` request, after the domain lookup.
#[derive(Clone, Copy, Debug)]
pub struct MapRequest {
    /// `host_addr`.
    pub host_addr: u64,
    /// `GNTMAP_*` flags.
    pub flags: u32,
    /// The grant reference.
    pub gref: u32,
}

/// A successful map: the handle and the bus address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapped {
    /// Maptrack handle for the unmap.
    pub handle: u32,
    /// `dev_bus_addr`: the frame's machine address.
    pub dev_bus_addr: u64,
}

/// The first check of `map_grant_ref`, before the domain lookup: neither
/// device nor host map asked for is `GNTST_bad_gntref`.
pub fn map_flags_ok(flags: u32) -> Result<(), Status> {
    if flags & (GNTMAP_DEVICE_MAP | GNTMAP_HOST_MAP) == 0 {
        return Err(GntStatus::BadGntref);
    }
    Ok(())
}

/// The mapping domain: who it is, its page tables, its maptrack.
pub struct Local<'a> {
    /// Its page-table validation context (its id is the grantee id).
    pub ctx: &'a PtContext,
    /// Its current L4, for linear host addresses.
    pub l4: Mfn,
    /// Its maptrack.
    pub maptrack: &'a mut Maptrack,
}

/// The granting domain: its id, active entries and shared entries.
pub struct Remote<'a, S: SharedEntries + ?Sized> {
    /// Its id.
    pub domid: DomId,
    /// Its active entries.
    pub active: &'a mut ActiveTable,
    /// Its shared entries.
    pub shared: &'a mut S,
    /// Its p2m, if it is translated (HVM, PVH): the frame numbers in its
    /// grant entries (and in copies naming its frames) are guest frames,
    /// looked up here (Xen's `get_paged_frame`); a PV domain's are
    /// machine frames.
    pub p2m: Option<&'a dyn Fn(u64) -> Option<u64>>,
}

fn owner_of(d: DomId) -> Owner {
    Owner::Domain(d)
}

/// `_set_status_v1`: checks the entry (if not pinned yet) and sets
/// `GTF_reading` (and `GTF_writing` unless `readonly`).
fn set_status<S: SharedEntries + ?Sized>(
    shared: &mut S,
    gref: u32,
    pinned: bool,
    readonly: bool,
    mapping: bool,
    ldom: u16,
) -> Result<(), Status> {
    let mask = GTF_TYPE_MASK | if mapping { GTF_SUB_PAGE } else { 0 };
    let mut cur = shared.header(gref);
    for _ in 0..CMPXCHG_TRIES {
        let (flags, domid) = (cur as u16, (cur >> 16) as u16);
        if !pinned && (flags & mask != GTF_PERMIT_ACCESS || domid != ldom) {
            return Err(GntStatus::GeneralError);
        }
        let mut new = flags | GTF_READING;
        if !readonly {
            new |= GTF_WRITING;
            if flags & GTF_READONLY != 0 {
                return Err(GntStatus::GeneralError);
            }
        }
        let new = u32::from(new) | (cur & 0xffff_0000);
        let prev = shared.cmpxchg_header(gref, cur, new);
        if prev == cur {
            return Ok(());
        }
        cur = prev;
    }
    Err(GntStatus::GeneralError)
}

/// The GTF bits to clear once a pin of the given kind went.
fn clear_after_unpin(pin: u32, readonly: bool) -> u16 {
    let mut clear = 0;
    if !readonly && pin & WRITERS == 0 {
        clear |= GTF_WRITING;
    }
    if pin == 0 {
        clear |= GTF_READING;
    }
    clear
}

/// `get_paged_frame`: a general reference on the frame behind `gfn` (the
/// machine frame itself for a PV granter, its p2m's entry for a
/// translated one), which the granter must own: an unpopulated gfn, or
/// one backed by a frame it does not own (its grant or shared-info
/// frames), is `GNTST_bad_page`.
fn get_granted_frame(
    ft: &mut FrameTable<'_>,
    rd: DomId,
    p2m: Option<&dyn Fn(u64) -> Option<u64>>,
    gfn: u64,
) -> Result<Mfn, Status> {
    let mfn = match p2m {
        Some(lookup) => Mfn(lookup(gfn).ok_or(GntStatus::BadPage)?),
        None => Mfn(gfn),
    };
    ft.get_page(mfn, owner_of(rd))
        .map_err(|_| GntStatus::BadPage)?;
    Ok(mfn)
}

fn put_page<E: GrantEnv + ?Sized>(env: &mut E, ft: &mut FrameTable<'_>, mfn: Mfn) {
    match ft.put_page(mfn) {
        Ok(PagePut::Freed) => env.frame_freed(mfn),
        Ok(PagePut::InUse) => {}
        Err(e) => log::error!("grant table: put of an unheld reference: {e}"),
    }
}

fn put_type<E: GrantEnv + ?Sized>(_env: &mut E, ft: &mut FrameTable<'_>, mfn: Mfn) {
    if let Err(e) = ft.put_page_type(mfn) {
        log::error!("grant table: put of an unheld type reference: {e}");
    }
}

/// Takes a writable type reference on `mfn` (the caller holds a general
/// one), flushing first if it changes type.
fn get_writable<E: GrantEnv + ?Sized>(env: &mut E, ft: &mut FrameTable<'_>, mfn: Mfn) -> bool {
    if let Ok(info) = ft.info(mfn) {
        if info.type_count() == 0
            && info.page_type() != PageType::Writable
            && info.page_type() != PageType::None
        {
            env.flush_before_type_change(mfn);
        }
    }
    ft.get_page_type(mfn, PageType::Writable).is_ok()
}

fn pin_inc(flags: u32) -> u32 {
    let ro = flags & GNTMAP_READONLY != 0;
    let mut inc = 0;
    if flags & GNTMAP_DEVICE_MAP != 0 {
        inc += if ro { GNTPIN_DEVR_INC } else { GNTPIN_DEVW_INC };
    }
    if flags & GNTMAP_HOST_MAP != 0 {
        inc += if ro { GNTPIN_HSTR_INC } else { GNTPIN_HSTW_INC };
    }
    inc
}

/// `GNTTABOP_map_grant_ref` for one request, after [`map_flags_ok`] and
/// the domain lookup (Xen's `map_grant_ref`).
pub fn map_grant_ref<E: GrantEnv + ?Sized, S: SharedEntries + ?Sized>(
    env: &mut E,
    ft: &mut FrameTable<'_>,
    ld: &mut Local<'_>,
    rd: &mut Remote<'_, S>,
    req: &MapRequest,
) -> Result<Mapped, Status> {
    map_flags_ok(req.flags)?;
    let handle = ld.maptrack.take(env).ok_or(GntStatus::NoDeviceSpace)?;
    let r = map_with_handle(env, ft, ld, rd, req, handle);
    if r.is_err() {
        ld.maptrack.put(handle);
        ld.maptrack.shrink_if_unused(env);
    }
    r
}

fn map_with_handle<E: GrantEnv + ?Sized, S: SharedEntries + ?Sized>(
    env: &mut E,
    ft: &mut FrameTable<'_>,
    ld: &mut Local<'_>,
    rd: &mut Remote<'_, S>,
    req: &MapRequest,
    handle: u32,
) -> Result<Mapped, Status> {
    let gref = req.gref;
    let ro = req.flags & GNTMAP_READONLY != 0;
    let ldom = ld.ctx.domid.0;
    if gref >= rd.active.nr_entries() {
        return Err(GntStatus::BadGntref);
    }
    let mut act = rd.active.get(gref);
    if act.pin != 0 && (act.domid != ldom || act.pin & PIN_OVERFLOW != 0) {
        return Err(GntStatus::GeneralError);
    }
    // A reference on the frame: from get_paged_frame on the first pin,
    // else page_get_owner_and_reference.
    let mut refcnt = 0u32;
    let mut typecnt = 0u32;
    if act.pin == 0 || (!ro && act.pin & WRITERS == 0) {
        set_status(rd.shared, gref, act.pin != 0, ro, true, ldom)?;
        if act.pin == 0 {
            let gfn = u64::from(rd.shared.frame(gref));
            match get_granted_frame(ft, rd.domid, rd.p2m, gfn) {
                Ok(mfn) => {
                    refcnt = 1;
                    act = Active {
                        pin: 0,
                        domid: ldom,
                        mfn,
                    };
                }
                Err(st) => {
                    let clear = clear_after_unpin(act.pin, ro);
                    rd.shared.clear_flags(gref, clear);
                    return Err(st);
                }
            }
        }
    }
    act.pin += pin_inc(req.flags);
    rd.active.set(gref, act);
    let mfn = act.mfn;

    let undo = |env: &mut E, ft: &mut FrameTable<'_>, rd: &mut Remote<'_, S>, t: u32, r: u32| {
        for _ in 0..t {
            put_type(env, ft, mfn);
        }
        for _ in 0..r {
            put_page(env, ft, mfn);
        }
        let mut a = rd.active.get(gref);
        a.pin -= a.pin.min(pin_inc(req.flags));
        rd.active.set(gref, a);
        rd.shared.clear_flags(gref, clear_after_unpin(a.pin, ro));
    };

    if refcnt == 0 {
        // Already pinned: the owner must still be the granter.
        if ft.get_page(mfn, owner_of(rd.domid)).is_err() {
            undo(env, ft, rd, 0, 0);
            return Err(GntStatus::GeneralError);
        }
        refcnt = 1;
    }
    let dev = req.flags & GNTMAP_DEVICE_MAP != 0;
    let host = req.flags & GNTMAP_HOST_MAP != 0;
    if dev && !ro {
        if !get_writable(env, ft, mfn) {
            undo(env, ft, rd, typecnt, refcnt);
            return Err(GntStatus::GeneralError);
        }
        typecnt += 1;
    }
    let mut pte_at = 0u64;
    if host {
        if dev {
            if ft.get_page(mfn, owner_of(rd.domid)).is_err() {
                undo(env, ft, rd, typecnt, refcnt);
                return Err(GntStatus::GeneralError);
            }
            refcnt += 1;
        }
        if !ro {
            if !get_writable(env, ft, mfn) {
                undo(env, ft, rd, typecnt, refcnt);
                return Err(GntStatus::GeneralError);
            }
            typecnt += 1;
        }
        let at = pte_place(ld.l4, req.host_addr, req.flags);
        let pte = ptval::grant_pte(mfn, req.flags);
        match ptval::install_grant_pte(ld.ctx, ft, env, at, pte) {
            Some((l1, index)) => pte_at = l1.maddr() + index as u64 * 8,
            None => {
                undo(env, ft, rd, typecnt, refcnt);
                return Err(GntStatus::GeneralError);
            }
        }
    }
    ld.maptrack.set(
        handle,
        Mapping {
            gref,
            flags: (req.flags & 0x1f) as u16,
            domid: rd.domid.0,
            pte: pte_at,
        },
    );
    Ok(Mapped {
        handle,
        dev_bus_addr: mfn.maddr(),
    })
}

fn pte_place(l4: Mfn, host_addr: u64, flags: u32) -> GrantPteAt {
    if flags & GNTMAP_CONTAINS_PTE != 0 {
        GrantPteAt::Pte { maddr: host_addr }
    } else {
        GrantPteAt::Linear { l4, va: host_addr }
    }
}

/// An unmap request (`gnttab_unmap_grant_ref`).
#[derive(Clone, Copy, Debug)]
pub struct UnmapRequest {
    /// Host address given at map time (0: leave the host mapping).
    pub host_addr: u64,
    /// Bus address (0: leave the device mapping).
    pub dev_bus_addr: u64,
    /// The handle.
    pub handle: u32,
    /// `GNTTABOP_unmap_and_replace`: the linear address whose mapping moves
    /// into the grant's slot (0: none, a plain unmap).
    pub new_addr: u64,
}

/// What an unmap removed, to complete after the TLB flush.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unmapped {
    /// `GNTMAP_host_map` / `GNTMAP_device_map` removed, with
    /// `GNTMAP_readonly` if the mapping was read-only (Xen's `op->done`).
    pub done: u16,
    /// The granting domain.
    pub rd: u16,
    /// Its grant reference.
    pub gref: u32,
    /// The frame.
    pub mfn: Mfn,
    /// Whether a TLB may still hold a translation the unmap removed (the
    /// caller flushes before [`unmap_complete`] if any does): false when
    /// no PTE went, or the one that went was never used.
    pub needs_flush: bool,
}

/// The first half of an unmap (Xen's `unmap_common`): checks the handle
/// and addresses and removes the grant PTE. `Err(None)` means the granting
/// domain is gone ([`unmap_lookup`] said so): Xen crashes the caller.
pub fn unmap_lookup(maptrack: &Maptrack, handle: u32) -> Result<Mapping, Status> {
    if handle >= maptrack.limit() {
        return Err(GntStatus::BadHandle);
    }
    let m = maptrack.get(handle);
    if m.flags & (GNTMAP_DEVICE_MAP | GNTMAP_HOST_MAP) as u16 == 0 {
        return Err(GntStatus::BadHandle);
    }
    Ok(m)
}

/// `unmap_common` after [`unmap_lookup`] and finding the granter: removes
/// what the request names; the references and pins go in
/// [`unmap_complete`], after the caller flushed TLBs.
pub fn unmap_grant_ref<E: GrantEnv + ?Sized>(
    env: &mut E,
    ft: &mut FrameTable<'_>,
    ld: &mut Local<'_>,
    ractive: &ActiveTable,
    req: &UnmapRequest,
) -> Result<Unmapped, Status> {
    let mut m = unmap_lookup(ld.maptrack, req.handle)?;
    if m.gref >= ractive.nr_entries() {
        return Err(GntStatus::BadHandle);
    }
    let act = ractive.get(m.gref);
    let mut out = Unmapped {
        done: 0,
        rd: m.domid,
        gref: m.gref,
        mfn: act.mfn,
        needs_flush: false,
    };
    if req.dev_bus_addr != 0 && req.dev_bus_addr != act.mfn.maddr() {
        return Err(GntStatus::GeneralError);
    }
    let ro = m.flags & GNTMAP_READONLY as u16;
    if req.host_addr != 0 && m.flags & GNTMAP_HOST_MAP as u16 != 0 {
        let at = pte_place(ld.l4, req.host_addr, u32::from(m.flags));
        let writable = ro == 0;
        let stolen = if req.new_addr == 0 {
            0
        } else {
            // Replacing works on linear addresses only.
            if m.flags & GNTMAP_CONTAINS_PTE as u16 != 0 {
                return Err(GntStatus::GeneralError);
            }
            ptval::steal_pte(ld.ctx, ft, env, ld.l4, req.new_addr).ok_or(GntStatus::GeneralError)?
        };
        let replaced = ptval::replace_grant_pte(ld.ctx, ft, env, at, act.mfn, writable, stolen);
        let Some((l1, index, accessed)) = replaced else {
            // Still ours: the stolen mapping goes (Xen's put_page_from_l1e).
            ptval::put_l1_mapping(ld.ctx, ft, env, stolen);
            return Err(GntStatus::GeneralError);
        };
        let cleared = l1.maddr() + index as u64 * 8;
        if cleared != m.pte {
            // The same frame granted twice and mapped at two places: the
            // PTE removed is the other mapping's; swap the records.
            swap_pte_owner(ld.maptrack, req.handle, m.pte, cleared);
        }
        m.flags &= !(GNTMAP_HOST_MAP as u16);
        m.pte = 0;
        out.done |= GNTMAP_HOST_MAP as u16 | ro;
        // A replaced mapping's new address had a translation of its own.
        out.needs_flush = accessed || req.new_addr != 0;
    }
    if req.dev_bus_addr != 0 && m.flags & GNTMAP_DEVICE_MAP as u16 != 0 {
        m.flags &= !(GNTMAP_DEVICE_MAP as u16);
        out.done |= GNTMAP_DEVICE_MAP as u16 | ro;
    }
    if m.flags & (GNTMAP_DEVICE_MAP | GNTMAP_HOST_MAP) as u16 == 0 {
        ld.maptrack.put(req.handle);
        ld.maptrack.shrink_if_unused(env);
    } else {
        ld.maptrack.set(req.handle, m);
    }
    Ok(out)
}

/// Another host mapping recorded at `cleared` takes over `ours` (the PTE
/// an unmap by address removed was that one's).
fn swap_pte_owner(mt: &mut Maptrack, handle: u32, ours: u64, cleared: u64) {
    let other = (0..mt.limit()).find(|&h| {
        let m = mt.get(h);
        h != handle && m.flags & GNTMAP_HOST_MAP as u16 != 0 && m.pte == cleared
    });
    if let Some(h) = other {
        let mut m = mt.get(h);
        m.pte = ours;
        mt.set(h, m);
    }
}

/// The second half of an unmap (Xen's `unmap_common_complete`), after the
/// TLB flush: drops the references and pins, clears the granter's GTF bits.
pub fn unmap_complete<E: GrantEnv + ?Sized, S: SharedEntries + ?Sized>(
    env: &mut E,
    ft: &mut FrameTable<'_>,
    ractive: &mut ActiveTable,
    shared: &mut S,
    u: &Unmapped,
) {
    complete(env, ft, ractive, shared, u, true);
}

fn complete<E: GrantEnv + ?Sized, S: SharedEntries + ?Sized>(
    env: &mut E,
    ft: &mut FrameTable<'_>,
    ractive: &mut ActiveTable,
    shared: &mut S,
    u: &Unmapped,
    host_refs: bool,
) {
    if u.done == 0 {
        return;
    }
    let ro = u.done & GNTMAP_READONLY as u16 != 0;
    if !ro {
        env.mark_dirty(u.rd, u.mfn);
    }
    let mut act = ractive.get(u.gref);
    if u.done & GNTMAP_DEVICE_MAP as u16 != 0 {
        if !ro {
            put_type(env, ft, u.mfn);
        }
        put_page(env, ft, u.mfn);
        act.pin -= act
            .pin
            .min(if ro { GNTPIN_DEVR_INC } else { GNTPIN_DEVW_INC });
    }
    if u.done & GNTMAP_HOST_MAP as u16 != 0 {
        if host_refs {
            if !ro {
                put_type(env, ft, u.mfn);
            }
            put_page(env, ft, u.mfn);
        }
        act.pin -= act
            .pin
            .min(if ro { GNTPIN_HSTR_INC } else { GNTPIN_HSTW_INC });
    }
    ractive.set(u.gref, act);
    shared.clear_flags(u.gref, clear_after_unpin(act.pin, ro));
}

/// Releases mapping `handle` of a dying domain (Xen's
/// `gnttab_release_mappings`, and for host mappings the clearing of its
/// page tables): removes the grant PTE if it is still there (with its
/// references; if it went another way its references went with it), drops
/// a device mapping's references, and unpins. The caller resolved the
/// granter; if it is gone, pass `None` and the entry is just forgotten.
pub fn release_mapping<E: GrantEnv + ?Sized, S: SharedEntries + ?Sized>(
    env: &mut E,
    ft: &mut FrameTable<'_>,
    ctx: &PtContext,
    maptrack: &mut Maptrack,
    handle: u32,
    remote: Option<(&mut ActiveTable, &mut S)>,
) {
    let Ok(m) = unmap_lookup(maptrack, handle) else {
        return;
    };
    maptrack.put(handle);
    let Some((ractive, shared)) = remote else {
        return;
    };
    if m.gref >= ractive.nr_entries() {
        return;
    }
    let mfn = ractive.get(m.gref).mfn;
    let ro = m.flags & GNTMAP_READONLY as u16;
    let mut done = Unmapped {
        done: 0,
        rd: m.domid,
        gref: m.gref,
        mfn,
        needs_flush: true,
    };
    if m.flags & GNTMAP_DEVICE_MAP as u16 != 0 {
        done.done |= GNTMAP_DEVICE_MAP as u16 | ro;
    }
    let mut pte_refs_gone = false;
    if m.flags & GNTMAP_HOST_MAP as u16 != 0 {
        let (l1, index) = (Mfn(m.pte >> 12), ((m.pte & 0xfff) >> 3) as usize);
        if m.pte != 0 && ptval::zap_grant_pte(ctx, ft, env, l1, index, mfn).is_some() {
            env.flush_tlbs();
        } else {
            pte_refs_gone = true;
        }
        done.done |= GNTMAP_HOST_MAP as u16 | ro;
    }
    complete(env, ft, ractive, shared, &done, !pte_refs_gone);
}

/// One side of a copy (`gnttab_copy_ptr`), after the domain lookup.
#[derive(Clone, Copy, Debug)]
pub struct CopySide {
    /// Grant reference (with `GNTCOPY_*_gref`) or frame number.
    pub u: u64,
    /// Whether `u` is a grant reference.
    pub is_gref: bool,
    /// Offset in the frame.
    pub offset: u16,
}

/// A frame claimed for one side of a copy.
struct Claimed {
    mfn: Mfn,
    gref: Option<u32>,
    writable: bool,
}

/// `acquire_grant_for_copy` (v1): pins `gref` of the granter for the
/// caller `ldom` and takes a general reference on its frame.
fn acquire_for_copy<S: SharedEntries + ?Sized>(
    ft: &mut FrameTable<'_>,
    rd: &mut Remote<'_, S>,
    gref: u32,
    ldom: u16,
    readonly: bool,
) -> Result<Mfn, Status> {
    if gref >= rd.active.nr_entries() {
        return Err(GntStatus::BadGntref);
    }
    let mut act = rd.active.get(gref);
    if act.pin != 0 && (act.domid != ldom || act.pin & PIN_OVERFLOW != 0) {
        return Err(GntStatus::GeneralError);
    }
    let old_pin = act.pin;
    if old_pin == 0 || (!readonly && old_pin & WRITERS == 0) {
        set_status(rd.shared, gref, old_pin != 0, readonly, false, ldom)?;
        let gfn = u64::from(rd.shared.frame(gref));
        match get_granted_frame(ft, rd.domid, rd.p2m, gfn) {
            Ok(mfn) => {
                if old_pin == 0 {
                    act = Active {
                        pin: 0,
                        domid: ldom,
                        mfn,
                    };
                } else if mfn != act.mfn {
                    // Xen keeps the pinned frame; the reference is on the
                    // frame it took (the active one differs only if the
                    // granter rewrote a pinned entry).
                    let _ = ft.put_page(mfn);
                    if ft.get_page(act.mfn, owner_of(rd.domid)).is_err() {
                        rd.shared
                            .clear_flags(gref, clear_after_unpin(old_pin, readonly));
                        return Err(GntStatus::BadDomain);
                    }
                }
            }
            Err(st) => {
                rd.shared
                    .clear_flags(gref, clear_after_unpin(old_pin, readonly));
                return Err(st);
            }
        }
    } else if ft.get_page(act.mfn, owner_of(rd.domid)).is_err() {
        return Err(GntStatus::BadDomain);
    }
    act.pin += if readonly {
        GNTPIN_HSTR_INC
    } else {
        GNTPIN_HSTW_INC
    };
    rd.active.set(gref, act);
    Ok(act.mfn)
}

/// `release_grant_for_copy`: unpins (the reference is the caller's).
fn release_for_copy<S: SharedEntries + ?Sized>(rd: &mut Remote<'_, S>, gref: u32, readonly: bool) {
    let mut act = rd.active.get(gref);
    act.pin -= act.pin.min(if readonly {
        GNTPIN_HSTR_INC
    } else {
        GNTPIN_HSTW_INC
    });
    rd.active.set(gref, act);
    rd.shared
        .clear_flags(gref, clear_after_unpin(act.pin, readonly));
}

/// Claims one side of a copy (Xen's `gnttab_copy_claim_buf`).
fn claim<E: GrantEnv + ?Sized, S: SharedEntries + ?Sized>(
    env: &mut E,
    ft: &mut FrameTable<'_>,
    rd: &mut Remote<'_, S>,
    side: &CopySide,
    ldom: u16,
    writable: bool,
) -> Result<Claimed, Status> {
    let (mfn, gref) = if side.is_gref {
        let gref = side.u as u32;
        (acquire_for_copy(ft, rd, gref, ldom, !writable)?, Some(gref))
    } else {
        (get_granted_frame(ft, rd.domid, rd.p2m, side.u)?, None)
    };
    let c = Claimed {
        mfn,
        gref,
        writable,
    };
    if writable && !get_writable(env, ft, mfn) {
        unclaim(
            env,
            ft,
            rd,
            &Claimed {
                writable: false,
                ..c
            },
        );
        return Err(GntStatus::GeneralError);
    }
    Ok(c)
}

fn unclaim<E: GrantEnv + ?Sized, S: SharedEntries + ?Sized>(
    env: &mut E,
    ft: &mut FrameTable<'_>,
    rd: &mut Remote<'_, S>,
    c: &Claimed,
) {
    if let Some(gref) = c.gref {
        release_for_copy(rd, gref, !c.writable);
    }
    if c.writable {
        env.mark_dirty(rd.domid.0, c.mfn);
        put_type(env, ft, c.mfn);
    }
    put_page(env, ft, c.mfn);
}

/// A copy's two granters: the same domain twice is one [`Remote`] used
/// for both sides.
pub enum CopyDomains<'r, 'a, 'b, S: SharedEntries + ?Sized> {
    /// Source and destination in one domain.
    Same(&'r mut Remote<'a, S>),
    /// Different domains: source, destination.
    Two(&'r mut Remote<'a, S>, &'r mut Remote<'b, S>),
}

/// `GNTTABOP_copy` for one request, after the domain lookups (Xen's
/// `gnttab_copy_one` without the buffer reuse): claims the source
/// (read-only) and the destination (writable), checks the bounds, copies.
pub fn copy_one<E: GrantEnv + ?Sized, S: SharedEntries + ?Sized>(
    env: &mut E,
    ft: &mut FrameTable<'_>,
    ldom: DomId,
    doms: CopyDomains<'_, '_, '_, S>,
    src: &CopySide,
    dst: &CopySide,
    len: u16,
) -> Result<(), Status> {
    let (sd, mut dd) = match doms {
        CopyDomains::Same(r) => (r, None),
        CopyDomains::Two(a, b) => (a, Some(b)),
    };
    let s = claim(env, ft, sd, src, ldom.0, false)?;
    let dres = match dd {
        Some(ref mut d) => claim(env, ft, d, dst, ldom.0, true),
        None => claim(env, ft, sd, dst, ldom.0, true),
    };
    let d = match dres {
        Ok(d) => d,
        Err(st) => {
            unclaim(env, ft, sd, &s);
            return Err(st);
        }
    };
    let page = 4096u32;
    let r = if u32::from(src.offset) + u32::from(len) > page
        || u32::from(dst.offset) + u32::from(len) > page
    {
        Err(GntStatus::BadCopyArg)
    } else {
        env.copy(s.mfn, src.offset, d.mfn, dst.offset, len);
        Ok(())
    };
    match dd {
        Some(dr) => unclaim(env, ft, dr, &d),
        None => unclaim(env, ft, sd, &d),
    }
    unclaim(env, ft, sd, &s);
    r
}

/// `GNTTABOP_swap_grant_ref` on the caller's own table (Xen's
/// `swap_grant_ref`, v1): both references in range, neither pinned
/// (`GNTST_eagain` otherwise); the same reference twice is a no-op.
pub fn swap_grant_ref<S: SharedEntries + ?Sized>(
    active: &ActiveTable,
    shared: &mut S,
    a: u32,
    b: u32,
) -> Result<(), Status> {
    if a >= active.nr_entries() || b >= active.nr_entries() {
        return Err(GntStatus::BadGntref);
    }
    if a == b {
        return Ok(());
    }
    if active.get(a).pin != 0 || active.get(b).pin != 0 {
        return Err(GntStatus::Eagain);
    }
    let (ea, eb) = (shared.entry(a), shared.entry(b));
    shared.set_entry(a, eb);
    shared.set_entry(b, ea);
    Ok(())
}

/// What a `GNTTABOP_cache_flush` request asks for, once its arguments are
/// checked (Xen's `cache_flush` on x86).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheFlush {
    /// Nothing (no length or no operation).
    Nothing,
    /// Write back (and invalidate) `length` bytes at `offset` of the frame.
    Clean,
}

/// The argument checks of `GNTTABOP_cache_flush`: offset and length within
/// a page, only `GNTTAB_CACHE_CLEAN`/`INVAL` (so a grant reference as the
/// address, `GNTTAB_CACHE_SOURCE_GREF`, is `-EINVAL` too), and on x86 an
/// invalidation without clean is `-EOPNOTSUPP`.
pub fn cache_flush_check(offset: u16, length: u16, op: u32) -> Result<CacheFlush, Errno> {
    let (o, l) = (u32::from(offset), u32::from(length));
    if o >= 4096 || l > 4096 || o + l > 4096 || op & !(GNTTAB_CACHE_INVAL | GNTTAB_CACHE_CLEAN) != 0
    {
        return Err(Errno::EINVAL);
    }
    if length == 0 || op == 0 {
        return Ok(CacheFlush::Nothing);
    }
    if op == GNTTAB_CACHE_INVAL {
        return Err(Errno::EOPNOTSUPP);
    }
    Ok(CacheFlush::Clean)
}

/// Whether `ldom` has a grant of the owner's frame `mfn` pinned (Xen's
/// `grant_map_exists`), the condition for flushing a frame of another
/// domain.
pub fn grant_map_exists(active: &ActiveTable, ldom: DomId, mfn: Mfn) -> bool {
    (0..active.nr_entries()).any(|r| {
        let a = active.get(r);
        a.pin != 0 && a.domid == ldom.0 && a.mfn == mfn
    })
}
