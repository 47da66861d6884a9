//! PCI on the metal: configuration access through CONFIG_ADDRESS /
//! CONFIG_DATA (0xcf8/0xcfc, under `PHYSDEVOP_set_iopl`) or ECAM, and device
//! memory (ECAM, BARs) mapped uncached with `mmu_update` and `foreigndom =
//! DOMID_IO`, as Linux's `xen_remap` / `ioremap` do in a PV Dom0.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{Bdf, ConfigSpace};
use hypercall_abi::errno::Errno as AbiErrno;
use hypercall_abi::xen::{MmuUpdate, DOMID_IO};
use pv_guest_lib::{frame, mm, mmu, Errno};

fn outl(port: u16, v: u32) {
    // SAFETY: port I/O; the hypervisor grants Dom0 these ports (IOPL 1) and
    // refuses the rest with #GP.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nostack)) };
}

fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as `outl`.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") v, options(nostack)) };
    v
}

/// Configuration mechanism #1 (ports 0xcf8/0xcfc): 256 bytes per
/// function. Offsets above 255 read all ones; writes there are dropped.
#[derive(Clone, Copy, Debug)]
pub struct PortConfig(());

impl PortConfig {
    /// Raises Dom0's I/O privilege (`PHYSDEVOP_set_iopl(1)`) so the ports
    /// can be used.
    pub fn new() -> Result<PortConfig, Errno> {
        pv_guest_lib::xen::physdev_set_iopl(1)?;
        Ok(PortConfig(()))
    }

    fn address(bdf: Bdf, off: u16) -> u32 {
        0x8000_0000
            | u32::from(bdf.bus) << 16
            | u32::from(bdf.dev) << 11
            | u32::from(bdf.func) << 8
            | u32::from(off & 0xfc)
    }
}

impl ConfigSpace for PortConfig {
    fn read32(&self, bdf: Bdf, off: u16) -> u32 {
        if off > 0xfc {
            return 0xffff_ffff;
        }
        let _irq = pv_guest_lib::events::IrqGuard::new();
        outl(0xcf8, Self::address(bdf, off));
        inl(0xcfc)
    }

    fn write32(&mut self, bdf: Bdf, off: u16, v: u32) {
        if off > 0xfc {
            return;
        }
        let _irq = pv_guest_lib::events::IrqGuard::new();
        outl(0xcf8, Self::address(bdf, off));
        outl(0xcfc, v);
    }
}

// ---- Device memory ----------------------------------------------------------

/// Where device memory is mapped: L4 slot 504 (the foreign-mapping
/// window is slot 500, netback's rings 502).
pub const IO_WINDOW: u64 = 0xFFFF_FC00_0000_0000;
/// Pages in the window (1 GiB of address space).
pub const IO_WINDOW_PAGES: u64 = 1 << 18;
/// P, RW, PWT, PCD: uncached.
const PTE_UC_RW: u64 = 1 | 2 | 8 | 16;
/// NX.
const PTE_NX: u64 = 1 << 63;

static NEXT_PAGE: AtomicU64 = AtomicU64::new(0);

/// Maps the machine range `[maddr, maddr + len)` (device memory, not
/// RAM) uncached and returns the address of `maddr`. The mapping lives
/// for good (device memory stays mapped while Dom0 owns the device);
/// the hypervisor refuses RAM (`-EBUSY`) and its own devices (`-EPERM`).
pub fn map_io(maddr: u64, len: u64) -> Result<u64, Errno> {
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    let first = maddr & !0xfff;
    let end = maddr
        .checked_add(len)
        .and_then(|e| e.checked_add(0xfff))
        .ok_or(Errno::EINVAL)?
        & !0xfff;
    let pages = (end - first) / 4096;
    let at = NEXT_PAGE.fetch_add(pages, Ordering::AcqRel);
    if at + pages > IO_WINDOW_PAGES {
        return Err(Errno::from_abi(AbiErrno::ENOMEM));
    }
    let va0 = IO_WINDOW + at * 4096;
    let l4 = frame::kernel_l4();
    // One batch per L1 table (64 entries at a time).
    let mut batch: heapless::Vec<MmuUpdate, 64> = heapless::Vec::new();
    let flush = |b: &mut heapless::Vec<MmuUpdate, 64>| -> Result<(), Errno> {
        let r = if b.is_empty() {
            Ok(())
        } else {
            mmu::mmu_update_foreign(b, DOMID_IO)
                .map(|_| ())
                .map_err(|e| e.errno)
        };
        b.clear();
        r
    };
    let mut cur = (u64::MAX, 0u64);
    for i in 0..pages {
        let va = va0 + i * 4096;
        if cur.0 != va >> 21 {
            flush(&mut batch)?;
            let l1 = frame::with_pt(|b| mm::ensure_l1(b, l4, va))
                .map_err(|_| Errno::from_abi(AbiErrno::ENOMEM))?;
            cur = (va >> 21, l1);
        }
        let _ = batch.push(MmuUpdate {
            ptr: mm::entry_maddr(cur.1, mm::index(va, 1)),
            val: (first + i * 4096) | PTE_UC_RW | PTE_NX,
        });
        if batch.is_full() {
            flush(&mut batch)?;
        }
    }
    flush(&mut batch)?;
    Ok(va0 + (maddr & 0xfff))
}

/// The q35 host bridge (vendor in the low half).
pub const Q35_HOST_BRIDGE: u32 = 0x29c0_8086;

/// The ECAM base the q35 host bridge's PCIEXBAR (0x60) names, if it is a
/// q35 and the window is enabled.
pub fn q35_ecam_base(cs: &impl ConfigSpace) -> Option<u64> {
    let host = Bdf::new(0, 0, 0);
    if cs.read32(host, 0) != Q35_HOST_BRIDGE {
        return None;
    }
    let lo = cs.read32(host, 0x60);
    let hi = cs.read32(host, 0x64);
    (lo & 1 == 1).then(|| (u64::from(hi) << 32) | u64::from(lo & 0xf000_0000))
}

/// ECAM: 4 KiB of configuration space per function, buses
/// `first..first + count` mapped (1 MiB each); other buses read all ones.
#[derive(Clone, Copy, Debug)]
pub struct Ecam {
    va: u64,
    first: u8,
    count: u16,
}

impl Ecam {
    /// Maps `count` buses of the ECAM window at `base` from bus `first`.
    pub fn new(base: u64, first: u8, count: u16) -> Result<Ecam, Errno> {
        if count == 0 || u16::from(first) + count > 256 {
            return Err(Errno::EINVAL);
        }
        let va = map_io(base + (u64::from(first) << 20), u64::from(count) << 20)?;
        Ok(Ecam { va, first, count })
    }

    fn addr(&self, bdf: Bdf, off: u16) -> Option<u64> {
        let rel = u16::from(bdf.bus).checked_sub(u16::from(self.first))?;
        (rel < self.count && off < 4096).then(|| {
            self.va
                + (u64::from(rel) << 20)
                + (u64::from(bdf.dev) << 15)
                + (u64::from(bdf.func) << 12)
                + u64::from(off & !3)
        })
    }
}

impl ConfigSpace for Ecam {
    fn read32(&self, bdf: Bdf, off: u16) -> u32 {
        match self.addr(bdf, off) {
            // SAFETY: `addr` is inside the ECAM window mapped in `new`.
            Some(a) => unsafe { core::ptr::read_volatile(a as *const u32) },
            None => 0xffff_ffff,
        }
    }

    fn write32(&mut self, bdf: Bdf, off: u16, v: u32) {
        if let Some(a) = self.addr(bdf, off) {
            // SAFETY: as in `read32`.
            unsafe { core::ptr::write_volatile(a as *mut u32, v) };
        }
    }
}
