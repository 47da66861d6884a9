//! The PV page-table hypercalls: `mmu_update`, `update_va_mapping` and
//! `mmuext_op`, as Xen 4.17's xen/arch/x86/pv/mm.c and mm.c answer them.
//!
//! The rules live in `xen_core::mm::ptval` (pure, host-tested); this module
//! copies the requests in, resolves the caller's view (`foreigndom`, the L1
//! a virtual address resolves to), runs them through `pv_mm::with_pt`, and
//! does the flushes and base-pointer loads the guest asked for.
//!
//! Long batches are split like Xen's: after [`BATCH`] requests the call
//! becomes a continuation (the guest re-executes the hypercall with the
//! remaining requests and `MMU_UPDATE_PREEMPTED` in the count), so the
//! hypervisor never spends unbounded time with interrupts off.

use super::{Call, Outcome};
use crate::arch::x86_64::{flush, instr};
use crate::domain::{copy_from_guest, copy_to_guest, read_guest};
use crate::pv_mm::{self, with_pt, DirectMapPt};
use hypercall_abi::errno::Errno;
use hypercall_abi::hypercall::Hypercall;
use hypercall_abi::xen::{
    MmuUpdate, MmuUpdateCmd, MmuextCmd, MmuextOp, DOMID_IO, DOMID_SELF, UVMF_ALL,
    UVMF_FLUSHTYPE_MASK, UVMF_INVLPG, UVMF_TLB_FLUSH,
};
use xen_core::guest_walk::is_canonical;
use xen_core::mm::frame_table::{FrameTable, PageFlags, PageType};
use xen_core::mm::ptval::{self, PtContext, PtError};
use xen_core::mm::Mfn;
use zerocopy::IntoBytes;

/// Xen's internal `MMU_UPDATE_PREEMPTED`: set in the count of a continued
/// `mmu_update` / `mmuext_op`, whose `pdone` then holds the work done so far.
const MMU_UPDATE_PREEMPTED: u64 = 1 << 31;
/// Requests handled per hypercall entry before continuing.
const BATCH: u64 = 1024;
/// Size of `struct mmu_update` and `struct mmuext_op` in guest memory.
const MMU_UPDATE_SIZE: u64 = 16;
const MMUEXT_OP_SIZE: u64 = 24;
/// Most LDT entries (Xen's check in `MMUEXT_SET_LDT`).
const MAX_LDT_ENTS: u64 = 8192;
/// First address of the hypervisor's range in every PV address space.
const HYPERVISOR_VIRT_START: u64 = 0xffff_8000_0000_0000;
/// End of the hypervisor's range.
const HYPERVISOR_VIRT_END: u64 = 0xffff_8800_0000_0000;

/// Whether a guest may name `va` (Xen's `__addr_ok`: canonical and outside
/// the hypervisor's range).
fn guest_addr_ok(va: u64) -> bool {
    is_canonical(va) && !(HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END).contains(&va)
}

/// Xen's `get_pg_owner` and its XSM check: `DOMID_SELF` is the caller
/// itself; the caller's own id is refused ("cannot specify itself as
/// foreign domain") as is an unknown domain (`-ESRCH`); `DOMID_IO` is
/// the owner of I/O memory (`mmu_update` only; `mmuext_op` refuses it);
/// `DOMID_XEN` is not offered (`-ESRCH`, Xen's answer for DOMID_XEN);
/// another domain needs privilege (`-EPERM`). Returns the domain whose
/// frames the new L1 entries map.
fn pg_owner(c: &Call, foreigndom: u64) -> Result<u16, Errno> {
    let dom = foreigndom as u16;
    if dom == DOMID_SELF {
        return Ok(c.dom.domid);
    }
    if dom == DOMID_IO {
        // Offered to everyone, as Xen's `get_pg_owner`: mapping I/O memory
        // then needs the caller's own I/O memory permission (ptval's
        // `IoMem`, the hardware domain's only), RAM is never DOMID_IO's.
        return Ok(DOMID_IO);
    }
    if dom == c.dom.domid || !c.others.iter().any(|d| d.domid == dom) {
        return Err(Errno::ESRCH);
    }
    if !c.dom.is_privileged {
        return Err(Errno::EPERM);
    }
    Ok(dom)
}

fn pt_err(c: &Call, what: &str, e: PtError) -> Errno {
    log::debug!("d{}: {what}: {e}", c.dom.domid);
    e.errno()
}

/// Turns the current call into a continuation: the guest re-executes the
/// `syscall` of its hypercall page with `args`.
fn continuation(c: &mut Call, nr: Hypercall, args: [u64; 4]) -> Outcome {
    let f = &mut *c.frame;
    f.rip = f.rip.wrapping_sub(2);
    f.rax = u64::from(nr.raw());
    f.rdi = args[0];
    f.rsi = args[1];
    f.rdx = args[2];
    f.r10 = args[3];
    Outcome::NoRet
}

/// Requests copied in per chunk.
const CHUNK: usize = 32;

/// A guest array of requests, copied in `CHUNK` elements at a time (one
/// page walk per chunk rather than per request). A chunk that cannot be
/// copied whole falls back to single elements, so a bad element fails
/// exactly where Xen's one-by-one copy would.
struct GuestArray<T> {
    base: u64,
    start: u64,
    len: u64,
    buf: [T; CHUNK],
}

impl<T: zerocopy::FromBytes + zerocopy::IntoBytes + Copy> GuestArray<T> {
    fn new(base: u64) -> Self {
        GuestArray {
            base,
            start: 0,
            len: 0,
            buf: [T::new_zeroed(); CHUNK],
        }
    }

    /// Forgets the copied chunk.
    fn invalidate(&mut self) {
        self.len = 0;
    }

    /// Element `i` of `count`.
    fn get(&mut self, cr3: u64, i: u64, count: u64) -> Result<T, Errno> {
        let size = core::mem::size_of::<T>() as u64;
        if i < self.start || i >= self.start + self.len {
            let n = (count - i).min(CHUNK as u64);
            let bytes = self.buf[..n as usize].as_mut_bytes();
            self.start = i;
            self.len = match copy_from_guest(cr3, self.base.wrapping_add(i * size), bytes) {
                Ok(()) => n,
                Err(_) => 0,
            };
            if self.len == 0 {
                return read_guest(cr3, self.base.wrapping_add(i * size));
            }
        }
        Ok(self.buf[(i - self.start) as usize])
    }
}

/// `HYPERVISOR_mmu_update(reqs, count, pdone, foreigndom)`.
#[inline(never)]
pub fn mmu_update(c: &mut Call) -> Outcome {
    let [reqs, count, pdone, foreigndom, _] = c.args();
    let mut count = count & 0xffff_ffff;
    let mut done = 0u32;
    if count & MMU_UPDATE_PREEMPTED != 0 {
        count &= !MMU_UPDATE_PREEMPTED;
        if pdone != 0 {
            let mut raw = [0u8; 4];
            if copy_from_guest(c.cr3, pdone, &mut raw).is_ok() {
                done = u32::from_le_bytes(raw);
            }
        }
    }
    let pg = match pg_owner(c, foreigndom) {
        Ok(p) => p,
        Err(e) => return Outcome::Ret(e.to_ret()),
    };
    let domid = c.dom.domid;
    let mut reqs_in = GuestArray::<MmuUpdate>::new(reqs);
    let mut i = 0u64;
    let mut rc: Result<(), Errno> = Ok(());
    while i < count {
        if i == BATCH {
            let next = [
                reqs.wrapping_add(i * MMU_UPDATE_SIZE),
                (count - i) | MMU_UPDATE_PREEMPTED,
                pdone,
                foreigndom,
            ];
            write_done(c, pdone, done + i as u32);
            return continuation(c, Hypercall::MmuUpdate, next);
        }
        let req: MmuUpdate = match reqs_in.get(c.cr3, i, count) {
            Ok(r) => r,
            Err(e) => {
                rc = Err(e);
                break;
            }
        };
        if let Err(e) = one_update(c, domid, pg, &req) {
            rc = Err(e);
            break;
        }
        i += 1;
    }
    write_done(c, pdone, done + i as u32);
    Outcome::Ret(rc.map_or_else(Errno::to_ret, |()| 0))
}

fn write_done(c: &Call, pdone: u64, done: u32) {
    if pdone != 0 {
        // Xen ignores a failure to report the count.
        let _ = copy_to_guest(c.cr3, pdone, &done.to_le_bytes());
    }
}

fn one_update(c: &Call, domid: u16, pg: u16, req: &MmuUpdate) -> Result<(), Errno> {
    // Xen takes the command from the low 3 bits (sizeof(l1_pgentry_t) - 1).
    let cmd = req.ptr & 7;
    let mfn = Mfn(req.ptr >> 12);
    let index = ((req.ptr & 0xfff) >> 3) as usize;
    match MmuUpdateCmd::from_raw(cmd) {
        Some(
            MmuUpdateCmd::NormalPtUpdate
            | MmuUpdateCmd::PtUpdatePreserveAd
            | MmuUpdateCmd::PtUpdateNoTranslate,
        ) => {
            let preserve = cmd == u64::from(MmuUpdateCmd::PtUpdatePreserveAd.raw());
            // A translated (HVM) pg_owner: the frame in a new L1 entry is
            // its guest frame (Xen's mod_l1_entry), unless the caller said
            // MMU_PT_UPDATE_NO_TRANSLATE.
            let hvm = (pg != domid && cmd != u64::from(MmuUpdateCmd::PtUpdateNoTranslate.raw()))
                .then(|| c.others.iter().find(|d| d.domid == pg))
                .flatten()
                .and_then(|d| d.hvm.as_ref());
            pv_mm::with_pt_foreign(domid, pg, |ctx, ft, mem| {
                let mut val = req.val;
                if let Some(hvm) = hvm {
                    let live_l1 = ft.info(mfn).is_ok_and(|i| {
                        i.page_type() == PageType::L1
                            && i.type_count() > 0
                            && i.flags().contains(PageFlags::VALIDATED)
                    });
                    if live_l1 {
                        // Unpopulated: -EINVAL, as Xen when
                        // get_page_from_gfn finds no page.
                        let lookup = |gfn| crate::hvm_glue::lookup(hvm, gfn).map(|m| m.0);
                        let Some(v) = xen_core::hvm_dom::translate_l1e(val, lookup) else {
                            log::debug!("d{domid}: mmu_update: d{pg} gfn not populated");
                            return Err(None);
                        };
                        val = v;
                    }
                }
                ptval::mod_entry(ctx, ft, mem, mfn, index, val, preserve).map_err(Some)
            })
            .map_err(|e| match e {
                Some(e) => pt_err(c, "mmu_update", e),
                None => Errno::EINVAL,
            })
        }
        Some(MmuUpdateCmd::MachphysUpdate) => {
            let owned = with_pt(domid, |ctx, ft, _| {
                ft.info(mfn)
                    .is_ok_and(|i| i.owner() == ctx.owner() && i.count() > 0)
            });
            if !owned {
                return Err(Errno::EINVAL);
            }
            crate::memory::set_m2p(mfn, req.val);
            crate::log_dirty::mark_pv_pfn(domid, req.val);
            Ok(())
        }
        None => Err(Errno::ENOSYS),
    }
}

/// The L1 table and index that map `va` in the address space rooted at
/// `l4` (Xen's `guest_map_l1e`), if every upper level is present.
fn l1_of(mem: &DirectMapPt, ctx: &PtContext, l4: Mfn, va: u64) -> Option<(Mfn, usize)> {
    use xen_core::mm::ptval::PtMemory;
    let mut table = l4;
    for shift in [39u32, 30, 21] {
        let e = mem.read_pte(table, ((va >> shift) & 511) as usize);
        // Present, and no superpage (PV tables never hold one).
        if e & 1 == 0 || e & (1 << 7) != 0 {
            return None;
        }
        table = Mfn((e & 0x000f_ffff_ffff_f000) >> 12);
        if table.0 > ctx.max_mfn {
            return None;
        }
    }
    Some((table, ((va >> 12) & 511) as usize))
}

/// `HYPERVISOR_update_va_mapping(va, val, flags)`.
pub fn update_va_mapping(c: &mut Call) -> Result<i64, Errno> {
    let [va, val, flags, ..] = c.args();
    if !guest_addr_ok(va) {
        return Err(Errno::EINVAL);
    }
    let domid = c.dom.domid;
    let l4 = Mfn(c.dom.vcpus[c.vcpu].guest_table >> 12);
    with_pt(domid, |ctx, ft, mem| {
        let (l1, index) = l1_of(mem, ctx, l4, va).ok_or(Errno::EINVAL)?;
        let info = ft.info(l1).map_err(|_| Errno::EINVAL)?;
        if info.page_type() != PageType::L1 || info.type_count() == 0 {
            return Err(Errno::EINVAL);
        }
        ptval::mod_entry(ctx, ft, mem, l1, index, val, false)
            .map_err(|e| pt_err(c, "update_va_mapping", e))
    })?;
    let target = flags & !UVMF_FLUSHTYPE_MASK;
    if target != 0 && target != UVMF_ALL {
        // UVMF_MULTI: a pointer to a vCPU bitmap, which must be readable.
        let mut mask = [0u8; 8];
        copy_from_guest(c.cr3, target, &mut mask)?;
    }
    match (flags & UVMF_FLUSHTYPE_MASK, target) {
        (UVMF_TLB_FLUSH, 0) => flush::local(),
        (UVMF_INVLPG, 0) => flush::local_one(va),
        (UVMF_TLB_FLUSH | UVMF_INVLPG, _) => flush::domain(domid),
        _ => {}
    }
    Ok(0)
}

/// `HYPERVISOR_mmuext_op(ops, count, pdone, foreigndom)`.
#[inline(never)]
pub fn mmuext_op(c: &mut Call) -> Outcome {
    let [ops, count, pdone, foreigndom, _] = c.args();
    let mut count = count & 0xffff_ffff;
    let mut done = 0u32;
    if count & MMU_UPDATE_PREEMPTED != 0 {
        count &= !MMU_UPDATE_PREEMPTED;
        if pdone != 0 {
            let mut raw = [0u8; 4];
            if copy_from_guest(c.cr3, pdone, &mut raw).is_ok() {
                done = u32::from_le_bytes(raw);
            }
        }
    }
    let pg = match pg_owner(c, foreigndom) {
        Ok(DOMID_IO) => return Outcome::Ret(Errno::ESRCH.to_ret()),
        Ok(p) => p,
        Err(e) => return Outcome::Ret(e.to_ret()),
    };
    let mut ops_in = GuestArray::<MmuextOp>::new(ops);
    let mut i = 0u64;
    let mut rc: Result<(), Errno> = Ok(());
    while i < count {
        if i == BATCH {
            let next = [
                ops.wrapping_add(i * MMUEXT_OP_SIZE),
                (count - i) | MMU_UPDATE_PREEMPTED,
                pdone,
                foreigndom,
            ];
            write_done(c, pdone, done + i as u32);
            return continuation(c, Hypercall::MmuextOp, next);
        }
        let op: MmuextOp = match ops_in.get(c.cr3, i, count) {
            Ok(o) => o,
            Err(e) => {
                rc = Err(e);
                break;
            }
        };
        let cr3 = c.cr3;
        if let Err(e) = one_ext(c, pg, &op) {
            rc = Err(e);
            break;
        }
        if c.cr3 != cr3 {
            // A new base pointer: read the rest through it.
            ops_in.invalidate();
        }
        i += 1;
    }
    write_done(c, pdone, done + i as u32);
    Outcome::Ret(rc.map_or_else(Errno::to_ret, |()| 0))
}

fn one_ext(c: &mut Call, pg: u16, op: &MmuextOp) -> Result<(), Errno> {
    let domid = c.dom.domid;
    let cmd = MmuextCmd::from_raw(u64::from(op.cmd)).ok_or(Errno::ENOSYS)?;
    let mfn = Mfn(op.arg1);
    let pg_is_hvm = pg != domid && c.others.iter().any(|d| d.domid == pg && d.is_hvm());
    match cmd {
        MmuextCmd::PinL1Table
        | MmuextCmd::PinL2Table
        | MmuextCmd::PinL3Table
        | MmuextCmd::PinL4Table
        | MmuextCmd::UnpinTable
            if pg_is_hvm =>
        {
            // An HVM domain's frames are never PV page tables: Xen skips
            // (pins and unpins succeed doing nothing) when
            // paging_mode_refcounts(pg_owner).
            Ok(())
        }
        MmuextCmd::PinL1Table
        | MmuextCmd::PinL2Table
        | MmuextCmd::PinL3Table
        | MmuextCmd::PinL4Table => {
            // Pins act on pg_owner's tables (the toolstack pins a guest's
            // L4 while building it).
            let level = (op.cmd + 1) as u8;
            with_pt(pg, |ctx, ft, mem| ptval::pin(ctx, ft, mem, mfn, level))
                .map_err(|e| pt_err(c, "pin", e))
        }
        MmuextCmd::UnpinTable => with_pt(pg, |ctx, ft, mem| ptval::unpin(ctx, ft, mem, mfn))
            .map_err(|e| pt_err(c, "unpin", e)),
        MmuextCmd::NewBaseptr => {
            let v = &c.dom.vcpus[c.vcpu];
            let old = Mfn(v.guest_table >> 12);
            with_pt(domid, |ctx, ft, mem| {
                ptval::new_baseptr(ctx, ft, mem, Some(old), Some(mfn))
            })
            .map_err(|e| pt_err(c, "new_baseptr", e))?;
            let v = &mut c.dom.vcpus[c.vcpu];
            v.guest_table = mfn.maddr();
            // Hypercalls come from guest kernel mode: load it now, and read
            // the rest of the batch through it, as the CPU would.
            pv_mm::load_cr3(v.guest_table);
            c.cr3 = mfn.maddr();
            Ok(())
        }
        MmuextCmd::NewUserBaseptr => {
            let v = &c.dom.vcpus[c.vcpu];
            let old = (v.guest_table_user != 0).then_some(Mfn(v.guest_table_user >> 12));
            let new = (mfn.0 != 0).then_some(mfn);
            with_pt(domid, |ctx, ft, mem| {
                ptval::new_baseptr(ctx, ft, mem, old, new)
            })
            .map_err(|e| pt_err(c, "new_user_baseptr", e))?;
            c.dom.vcpus[c.vcpu].guest_table_user = new.map_or(0, Mfn::maddr);
            Ok(())
        }
        MmuextCmd::TlbFlushLocal => {
            flush::local();
            Ok(())
        }
        MmuextCmd::InvlpgLocal => {
            if guest_addr_ok(op.linear_addr()) {
                flush::local_one(op.linear_addr());
            }
            Ok(())
        }
        MmuextCmd::TlbFlushMulti | MmuextCmd::InvlpgMulti => {
            let mut mask = [0u8; 8];
            copy_from_guest(c.cr3, op.vcpumask(), &mut mask)?;
            flush::domain(domid);
            Ok(())
        }
        MmuextCmd::TlbFlushAll | MmuextCmd::InvlpgAll => {
            flush::domain(domid);
            Ok(())
        }
        MmuextCmd::FlushCache | MmuextCmd::FlushCacheGlobal => {
            // Xen: only domains with I/O capabilities (cache_flush_permitted).
            if !c.dom.is_privileged {
                return Err(Errno::EACCES);
            }
            instr::wbinvd();
            Ok(())
        }
        MmuextCmd::SetLdt => {
            let (base, ents) = (op.linear_addr(), u64::from(op.nr_ents()));
            if ents > MAX_LDT_ENTS
                || base & 0xfff != 0
                || (ents != 0 && !(guest_addr_ok(base) && guest_addr_ok(base + ents * 8 - 1)))
            {
                return Err(Errno::EINVAL);
            }
            crate::pv::set_ldt(c.dom, c.vcpu, base, ents)
        }
        MmuextCmd::ClearPage => with_pt(domid, |ctx, ft, mem| {
            let _writable = WritableRef::take(ft, ctx, mfn)?;
            crate::memory::clear_frame(mfn);
            mem.written(mfn);
            Ok(())
        }),
        MmuextCmd::CopyPage => with_pt(domid, |ctx, ft, mem| {
            let src = Mfn(op.src_mfn());
            ft.get_page(src, ctx.owner()).map_err(|_| Errno::EINVAL)?;
            let r = WritableRef::take(ft, ctx, mfn).map(|_w| {
                // SAFETY: `src` is referenced and owned by the caller, and
                // `mfn` holds a writable type reference (so it is no page
                // table or descriptor page): both are ordinary RAM frames
                // of the domain, direct-mapped; copy() tolerates overlap.
                unsafe {
                    core::ptr::copy(
                        crate::arch::x86_64::paging::phys_to_virt(src.maddr()) as *const u8,
                        crate::arch::x86_64::paging::phys_to_virt(mfn.maddr()) as *mut u8,
                        4096,
                    )
                }
            });
            let _ = ft.put_page(src);
            if r.is_ok() {
                mem.written(mfn);
            }
            r
        }),
        MmuextCmd::MarkSuper | MmuextCmd::UnmarkSuper => Err(Errno::EOPNOTSUPP),
    }
}

/// A general and a writable type reference on one of the domain's frames,
/// held while xen-core writes it (Xen's `get_page_and_type(page, d,
/// PGT_writable_page)` around CLEAR_PAGE/COPY_PAGE). Dropped by `put`.
struct WritableRef;

impl WritableRef {
    fn take<'a>(
        ft: &'a mut FrameTable<'static>,
        ctx: &PtContext,
        mfn: Mfn,
    ) -> Result<WritableGuard<'a>, Errno> {
        ft.get_page_and_type(mfn, ctx.owner(), PageType::Writable)
            .map_err(|_| Errno::EINVAL)?;
        Ok(WritableGuard { ft, mfn })
    }
}

struct WritableGuard<'a> {
    ft: &'a mut FrameTable<'static>,
    mfn: Mfn,
}

impl Drop for WritableGuard<'_> {
    fn drop(&mut self) {
        let _ = self.ft.put_page_and_type(self.mfn);
    }
}
