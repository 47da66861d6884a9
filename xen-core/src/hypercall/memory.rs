//! `memory_op` for PV domains: reservation sizes, giving pages back and
//! asking for more (within the domain's limit), the pseudo-physical memory
//! map, and where the machine-to-phys table lives.
//!
//! PV domains are not auto-translated: the "gmfn" a guest passes is a
//! machine frame number, checked against the frame table's owner.

use super::Call;
use crate::domain::{copy_from_guest, copy_to_guest, read_guest, write_guest};
use crate::memory::{self, FRAMES, FRAME_TABLE};
use hypercall_abi::errno::Errno;
use hypercall_abi::memory::{
    memop_cmd, MemoryOp, XenMachphysMfnList, XenMemoryMap, XenMemoryReservation,
};
use hypercall_abi::xen::DOMID_SELF;
use xen_core::mm::frame_table::{DomId as FtDomId, Owner, PageFlags, PagePut};
use xen_core::mm::ptval::{self, PtMemory};
use xen_core::mm::Mfn;

/// E820 "usable RAM".
const E820_RAM: u32 = 1;
/// Frames per M2P extent reported by machphys_mfn_list (2 MiB).
const M2P_EXTENT_FRAMES: u64 = 512;
/// Largest extent order a PV guest may ask for here (Xen allows more for
/// privileged domains; Oxen hands out single pages).
const MAX_ORDER: u32 = 0;

pub fn memory_op(c: &mut Call) -> Result<i64, Errno> {
    let [cmd, arg, ..] = c.args;
    let (op, start_extent) = memop_cmd(cmd);
    match op.ok_or(Errno::ENOSYS)? {
        MemoryOp::MaximumRamPage => Ok(memory::max_mfn() as i64),
        MemoryOp::CurrentReservation | MemoryOp::MaximumReservation => {
            let mut raw = [0u8; 2];
            copy_from_guest(c.cr3, arg, &mut raw)?;
            let domid = u16::from_le_bytes(raw);
            if domid != DOMID_SELF && domid != c.dom.domid {
                // Other domains arrive with the toolstack.
                return Err(Errno::ESRCH);
            }
            Ok(if op == Some(MemoryOp::CurrentReservation) {
                c.dom.tot_pages
            } else {
                c.dom.max_pages
            } as i64)
        }
        MemoryOp::DecreaseReservation => {
            let r: XenMemoryReservation = read_guest(c.cr3, arg)?;
            check_reservation(c, &r)?;
            let mut done = start_extent;
            while done < r.nr_extents {
                let mut raw = [0u8; 8];
                copy_from_guest(c.cr3, r.extent_start.wrapping_add(done * 8), &mut raw)?;
                if !release_frame(c, Mfn(u64::from_le_bytes(raw))) {
                    break;
                }
                done += 1;
            }
            Ok(done as i64)
        }
        MemoryOp::IncreaseReservation => {
            let r: XenMemoryReservation = read_guest(c.cr3, arg)?;
            check_reservation(c, &r)?;
            let mut done = start_extent;
            while done < r.nr_extents && c.dom.tot_pages < c.dom.max_pages {
                let Some(mfn) = FRAMES.lock().as_mut().and_then(|fa| fa.alloc().ok()) else {
                    break;
                };
                memory::clear_frame(mfn);
                if r.extent_start != 0 {
                    if let Err(e) = copy_to_guest(
                        c.cr3,
                        r.extent_start.wrapping_add(done * 8),
                        &mfn.0.to_le_bytes(),
                    ) {
                        let _ = FRAMES.lock().as_mut().map(|fa| fa.free(mfn));
                        return if done == 0 { Err(e) } else { Ok(done as i64) };
                    }
                }
                if let Some(ft) = FRAME_TABLE.lock().as_mut() {
                    let _ = ft.assign(mfn, Owner::Domain(FtDomId(c.dom.domid)));
                }
                c.dom.tot_pages += 1;
                done += 1;
            }
            Ok(done as i64)
        }
        MemoryOp::MemoryMap => {
            // The pseudo-physical map of a PV domain: its pages from 0.
            let mut m: XenMemoryMap = read_guest(c.cr3, arg)?;
            if m.nr_entries < 1 {
                return Err(Errno::EINVAL);
            }
            let mut e = [0u8; 20];
            e[8..16].copy_from_slice(&(c.dom.tot_pages * 4096).to_le_bytes());
            e[16..20].copy_from_slice(&E820_RAM.to_le_bytes());
            copy_to_guest(c.cr3, m.buffer, &e)?;
            m.nr_entries = 1;
            write_guest(c.cr3, arg, &m)?;
            Ok(0)
        }
        MemoryOp::MachphysMfnList => {
            let mut l: XenMachphysMfnList = read_guest(c.cr3, arg)?;
            let (base, frames) = memory::m2p_frames();
            let extents = frames.div_ceil(M2P_EXTENT_FRAMES);
            let n = extents.min(u64::from(l.max_extents));
            for i in 0..n {
                let mfn = base.0 + i * M2P_EXTENT_FRAMES;
                copy_to_guest(
                    c.cr3,
                    l.extent_start.wrapping_add(i * 8),
                    &mfn.to_le_bytes(),
                )?;
            }
            l.nr_extents = n as u32;
            write_guest(c.cr3, arg, &l)?;
            Ok(0)
        }
        MemoryOp::AddToPhysmap => super::grant_table::add_to_physmap(c),
        _ => Err(Errno::ENOSYS),
    }
}

fn check_reservation(c: &Call, r: &XenMemoryReservation) -> Result<(), Errno> {
    if r.domid != DOMID_SELF && r.domid != c.dom.domid {
        return Err(Errno::ESRCH);
    }
    if r.extent_order > MAX_ORDER {
        return Err(Errno::EPERM);
    }
    Ok(())
}

/// Gives one frame back (Xen's guest_remove_page): unpins it if pinned and
/// drops the domain's allocation reference. The frame goes back to the
/// allocator when its last reference (a mapping, a page-table entry, a base
/// pointer) goes. The shared_info page cannot be given back.
fn release_frame(c: &mut Call, mfn: Mfn) -> bool {
    if mfn.maddr() == c.dom.shared_info_maddr {
        return false;
    }
    let ok = crate::pv_mm::with_pt(c.dom.domid, |ctx, ft, mem| {
        let Ok(info) = ft.info(mfn) else { return false };
        if info.owner() != ctx.owner() || !info.flags().contains(PageFlags::ALLOCATED) {
            return false;
        }
        if info.flags().contains(PageFlags::PINNED) && ptval::unpin(ctx, ft, mem, mfn).is_err() {
            return false;
        }
        match ft.release(mfn) {
            Ok(PagePut::Freed) => {
                mem.frame_freed(mfn);
                true
            }
            Ok(PagePut::InUse) => true,
            Err(_) => false,
        }
    });
    if ok {
        c.dom.tot_pages -= 1;
    }
    ok
}
