//! PCI for Dom0: configuration-space decoding, enumeration, BAR sizing and
//! the capability list (pure logic over a [`ConfigSpace`], tested on the
//! host against a fake bus), plus the metal glue (`metal`, target only): configuration
//! access through CONFIG_ADDRESS/CONFIG_DATA (0xcf8/0xcfc) or ECAM mapped
//! with `mmu_update` and `DOMID_IO`, and device memory (BARs) mapped the
//! same way.
//!
//! Written here rather than taken from `virtio-drivers`' `PciRoot`: that
//! one knows bus numbers and virtio, not bridges, MSI-X tables or class
//! names, and Dom0 needs those for every device it owns. [`VirtioCam`]
//! hands any [`ConfigSpace`] to `virtio-drivers`' PCI transport.
//!
//! Every value read from a device is treated as untrusted: capability
//! walks are bounded and checked, BAR decodes never overflow, and absent
//! functions (all ones) are skipped.

use alloc::vec::Vec;
use core::fmt;

#[cfg(target_os = "none")]
pub mod metal;

/// Bus, device, function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// Bus 0..=255.
    pub bus: u8,
    /// Device 0..=31.
    pub dev: u8,
    /// Function 0..=7.
    pub func: u8,
}

impl Bdf {
    /// A BDF (device and function are masked to their widths).
    pub const fn new(bus: u8, dev: u8, func: u8) -> Bdf {
        Bdf {
            bus,
            dev: dev & 31,
            func: func & 7,
        }
    }

    /// `dev << 3 | func`, as Xen's `devfn`.
    pub const fn devfn(self) -> u8 {
        (self.dev << 3) | self.func
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.dev, self.func)
    }
}

/// Dword access to configuration space. `off` is a byte offset, a
/// multiple of 4, below 4096 (below 256 for the legacy mechanism, where
/// higher offsets read as all ones and writes are dropped).
pub trait ConfigSpace {
    /// Reads the dword at `off`.
    fn read32(&self, bdf: Bdf, off: u16) -> u32;
    /// Writes the dword at `off`.
    fn write32(&mut self, bdf: Bdf, off: u16, v: u32);

    /// Reads the 16 bits at `off` (2-aligned).
    fn read16(&self, bdf: Bdf, off: u16) -> u16 {
        (self.read32(bdf, off & !3) >> ((off & 2) * 8)) as u16
    }
    /// Reads the byte at `off`.
    fn read8(&self, bdf: Bdf, off: u16) -> u8 {
        (self.read32(bdf, off & !3) >> ((off & 3) * 8)) as u8
    }
    /// Writes the 16 bits at `off` (read-modify-write of the dword; fine
    /// for the command register and capability control words).
    fn write16(&mut self, bdf: Bdf, off: u16, v: u16) {
        let sh = (off & 2) * 8;
        let old = self.read32(bdf, off & !3);
        let new = (old & !(0xffff << sh)) | (u32::from(v) << sh);
        self.write32(bdf, off & !3, new);
    }
}

/// Registers of the common header.
pub mod reg {
    /// Vendor (low 16) and device (high 16).
    pub const ID: u16 = 0x00;
    /// Command (low 16), status (high 16).
    pub const COMMAND: u16 = 0x04;
    /// Revision, prog-if, subclass, class.
    pub const CLASS: u16 = 0x08;
    /// Cache line, latency, header type, BIST.
    pub const HEADER: u16 = 0x0c;
    /// BAR 0 (type 0 headers have six, bridges two).
    pub const BAR0: u16 = 0x10;
    /// Bridges: primary, secondary, subordinate bus numbers.
    pub const BUS_NUMBERS: u16 = 0x18;
    /// Subsystem vendor and id (type 0).
    pub const SUBSYSTEM: u16 = 0x2c;
    /// Capabilities pointer.
    pub const CAP_PTR: u16 = 0x34;
    /// Interrupt line, pin.
    pub const INTERRUPT: u16 = 0x3c;

    /// Command: I/O space decoding.
    pub const CMD_IO: u16 = 1 << 0;
    /// Command: memory space decoding.
    pub const CMD_MEMORY: u16 = 1 << 1;
    /// Command: bus mastering (DMA).
    pub const CMD_MASTER: u16 = 1 << 2;
    /// Command: INTx disabled.
    pub const CMD_INTX_DISABLE: u16 = 1 << 10;
    /// Status: the capability list is valid.
    pub const STATUS_CAP_LIST: u16 = 1 << 4;
}

/// Capability ids.
pub mod cap {
    /// Power management.
    pub const PM: u8 = 0x01;
    /// MSI.
    pub const MSI: u8 = 0x05;
    /// Vendor specific (virtio's structures).
    pub const VENDOR: u8 = 0x09;
    /// PCI Express.
    pub const EXP: u8 = 0x10;
    /// MSI-X.
    pub const MSIX: u8 = 0x11;
}

/// One function found on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Where it is.
    pub bdf: Bdf,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Class code.
    pub class: u8,
    /// Subclass.
    pub subclass: u8,
    /// Programming interface.
    pub prog_if: u8,
    /// Revision.
    pub revision: u8,
    /// Header type (0 device, 1 PCI-PCI bridge, 2 CardBus), without the
    /// multi-function bit.
    pub header_type: u8,
    /// The multi-function bit of the header type.
    pub multifunction: bool,
    /// Subsystem vendor and id (type 0 headers; 0 otherwise).
    pub subsystem: (u16, u16),
    /// Interrupt pin (1 = INTA .. 4 = INTD, 0 none) and line (what the
    /// firmware wrote).
    pub interrupt: (u8, u8),
}

impl Function {
    /// What the class code says, in lspci's words.
    pub fn class_name(&self) -> &'static str {
        class_name(self.class, self.subclass)
    }

    /// A PCI-PCI bridge.
    pub fn is_bridge(&self) -> bool {
        self.header_type == 1
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} [{:02x}{:02x}]: {:04x}:{:04x} (rev {:02x})",
            self.bdf,
            self.class_name(),
            self.class,
            self.subclass,
            self.vendor,
            self.device,
            self.revision
        )
    }
}

/// lspci's name for a class and subclass (the common ones).
pub fn class_name(class: u8, subclass: u8) -> &'static str {
    match (class, subclass) {
        (0x01, 0x00) => "SCSI storage controller",
        (0x01, 0x01) => "IDE interface",
        (0x01, 0x06) => "SATA controller",
        (0x01, 0x08) => "Non-Volatile memory controller",
        (0x01, _) => "Mass storage controller",
        (0x02, 0x00) => "Ethernet controller",
        (0x02, _) => "Network controller",
        (0x03, 0x00) => "VGA compatible controller",
        (0x03, _) => "Display controller",
        (0x04, _) => "Multimedia controller",
        (0x05, _) => "Memory controller",
        (0x06, 0x00) => "Host bridge",
        (0x06, 0x01) => "ISA bridge",
        (0x06, 0x04) => "PCI bridge",
        (0x06, _) => "Bridge",
        (0x07, _) => "Communication controller",
        (0x08, _) => "System peripheral",
        (0x0c, 0x03) => "USB controller",
        (0x0c, 0x05) => "SMBus",
        (0x0c, _) => "Serial bus controller",
        (0x00, _) => "Non-VGA unclassified device",
        (0xff, _) => "Unassigned class",
        _ => "Device",
    }
}

/// Reads function `bdf`'s header, if something is there.
pub fn probe<C: ConfigSpace + ?Sized>(cs: &C, bdf: Bdf) -> Option<Function> {
    let id = cs.read32(bdf, reg::ID);
    let vendor = id as u16;
    if vendor == 0xffff || vendor == 0 {
        return None;
    }
    let class = cs.read32(bdf, reg::CLASS);
    let header = cs.read8(bdf, reg::HEADER + 2);
    let header_type = header & 0x7f;
    let sub = if header_type == 0 {
        let s = cs.read32(bdf, reg::SUBSYSTEM);
        (s as u16, (s >> 16) as u16)
    } else {
        (0, 0)
    };
    let irq = cs.read32(bdf, reg::INTERRUPT);
    Some(Function {
        bdf,
        vendor,
        device: (id >> 16) as u16,
        class: (class >> 24) as u8,
        subclass: (class >> 16) as u8,
        prog_if: (class >> 8) as u8,
        revision: class as u8,
        header_type,
        multifunction: header & 0x80 != 0,
        subsystem: sub,
        interrupt: ((irq >> 8) as u8, irq as u8),
    })
}

/// Every function reachable from bus 0, through PCI-PCI bridges (their
/// secondary buses, each visited once), in bus/device/function order per
/// bus. Functions 1-7 are probed only where function 0 says it is
/// multi-function.
pub fn enumerate<C: ConfigSpace + ?Sized>(cs: &C) -> Vec<Function> {
    let mut out = Vec::new();
    let mut seen = [false; 256];
    let mut buses = Vec::from([0u8]);
    seen[0] = true;
    while let Some(bus) = buses.pop() {
        for dev in 0..32 {
            let Some(f0) = probe(cs, Bdf::new(bus, dev, 0)) else {
                continue;
            };
            let nfunc = if f0.multifunction { 8 } else { 1 };
            for func in 0..nfunc {
                let f = if func == 0 {
                    Some(f0)
                } else {
                    probe(cs, Bdf::new(bus, dev, func))
                };
                let Some(f) = f else { continue };
                if f.is_bridge() {
                    let secondary = cs.read8(f.bdf, reg::BUS_NUMBERS + 1);
                    if secondary != 0 && !seen[usize::from(secondary)] {
                        seen[usize::from(secondary)] = true;
                        buses.push(secondary);
                    }
                }
                out.push(f);
            }
        }
    }
    out.sort_by_key(|f| f.bdf);
    out
}

/// A decoded base address register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar {
    /// Memory space.
    Memory {
        /// Bus address (what the device decodes; machine address on x86).
        addr: u64,
        /// Size in bytes (a power of two).
        size: u64,
        /// A 64-bit BAR (it takes the next slot too).
        is64: bool,
        /// Prefetchable.
        prefetchable: bool,
    },
    /// I/O space.
    Io {
        /// First port.
        port: u32,
        /// Ports.
        size: u32,
    },
}

impl Bar {
    /// Memory BAR: its address and size.
    pub fn memory(&self) -> Option<(u64, u64)> {
        match *self {
            Bar::Memory { addr, size, .. } => Some((addr, size)),
            Bar::Io { .. } => None,
        }
    }
}

/// Decodes a BAR from its original value(s) and what reads back after
/// writing all ones (`mask`, `mask_hi` for 64-bit BARs). `None` for an
/// unimplemented BAR.
pub fn decode_bar(orig: u32, orig_hi: u32, mask: u32, mask_hi: u32) -> Option<Bar> {
    if orig & 1 == 1 {
        let m = mask & !3;
        // I/O BARs decode at most 16 bits of address on x86.
        let m16 = m | 0xffff_0000;
        if m == 0 {
            return None;
        }
        let size = (!m16).wrapping_add(1);
        return Some(Bar::Io {
            port: orig & !3 & 0xffff,
            size,
        });
    }
    let is64 = (orig >> 1) & 3 == 2;
    let full_mask = if is64 {
        (u64::from(mask_hi) << 32) | u64::from(mask & !0xf)
    } else {
        0xffff_ffff_0000_0000 | u64::from(mask & !0xf)
    };
    if full_mask == 0xffff_ffff_0000_0000 || full_mask == 0 {
        return None;
    }
    let size = (!full_mask).wrapping_add(1);
    if size == 0 {
        return None;
    }
    let addr = if is64 {
        (u64::from(orig_hi) << 32) | u64::from(orig & !0xf)
    } else {
        u64::from(orig & !0xf)
    };
    Some(Bar::Memory {
        addr,
        size,
        is64,
        prefetchable: orig & 8 != 0,
    })
}

/// Number of BAR slots of a header type.
pub fn bar_slots(header_type: u8) -> u8 {
    match header_type {
        0 => 6,
        1 => 2,
        _ => 0,
    }
}

/// Sizes BAR `index` of `bdf` (decoding off meanwhile, as Linux does,
/// everything restored after). `None` for an unimplemented slot or the
/// upper half of a 64-bit BAR.
pub fn size_bar<C: ConfigSpace + ?Sized>(cs: &mut C, bdf: Bdf, index: u8) -> Option<Bar> {
    let off = reg::BAR0 + 4 * u16::from(index);
    let orig = cs.read32(bdf, off);
    let is64 = orig & 1 == 0 && (orig >> 1) & 3 == 2;
    if is64 && index >= 5 {
        return None;
    }
    let cmd = cs.read16(bdf, reg::COMMAND);
    let quiet = cmd & !(reg::CMD_IO | reg::CMD_MEMORY);
    if quiet != cmd {
        cs.write16(bdf, reg::COMMAND, quiet);
    }
    cs.write32(bdf, off, 0xffff_ffff);
    let mask = cs.read32(bdf, off);
    cs.write32(bdf, off, orig);
    let (orig_hi, mask_hi) = if is64 {
        let hi = cs.read32(bdf, off + 4);
        cs.write32(bdf, off + 4, 0xffff_ffff);
        let m = cs.read32(bdf, off + 4);
        cs.write32(bdf, off + 4, hi);
        (hi, m)
    } else {
        (0, 0)
    };
    if quiet != cmd {
        cs.write16(bdf, reg::COMMAND, cmd);
    }
    decode_bar(orig, orig_hi, mask, mask_hi)
}

/// Every BAR of function `f`, by slot (the upper slot of a 64-bit BAR is
/// `None`).
pub fn bars<C: ConfigSpace + ?Sized>(cs: &mut C, f: &Function) -> [Option<Bar>; 6] {
    let mut out = [None; 6];
    let mut i = 0;
    while i < bar_slots(f.header_type) {
        let b = size_bar(cs, f.bdf, i);
        out[usize::from(i)] = b;
        i += match b {
            Some(Bar::Memory { is64: true, .. }) => 2,
            _ => 1,
        };
    }
    out
}

/// The address a BAR holds now, without sizing it (memory BARs: 64 bits
/// where it is a 64-bit BAR). `None` for I/O BARs and bad slots.
pub fn bar_address<C: ConfigSpace + ?Sized>(cs: &C, bdf: Bdf, index: u8) -> Option<u64> {
    if index > 5 {
        return None;
    }
    let off = reg::BAR0 + 4 * u16::from(index);
    let lo = cs.read32(bdf, off);
    if lo & 1 == 1 {
        return None;
    }
    let mut a = u64::from(lo & !0xf);
    if (lo >> 1) & 3 == 2 {
        if index >= 5 {
            return None;
        }
        a |= u64::from(cs.read32(bdf, off + 4)) << 32;
    }
    Some(a)
}

/// A capability in the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Its id ([`cap`]).
    pub id: u8,
    /// Its offset in configuration space.
    pub offset: u8,
}

/// The most capabilities a list may hold (48 fit in 192 bytes): a longer
/// or looping list is cut there.
pub const MAX_CAPS: usize = 48;

/// The capability list, in order. Stops at a null pointer, a pointer into
/// the header (below 0x40), or after [`MAX_CAPS`] entries (a loop).
pub fn capabilities<C: ConfigSpace + ?Sized>(cs: &C, bdf: Bdf) -> Vec<Capability> {
    let mut out = Vec::new();
    let status = cs.read16(bdf, reg::COMMAND + 2);
    if status & reg::STATUS_CAP_LIST == 0 || status == 0xffff {
        return out;
    }
    let mut pos = cs.read8(bdf, reg::CAP_PTR) & 0xfc;
    while pos >= 0x40 && out.len() < MAX_CAPS {
        let h = cs.read32(bdf, u16::from(pos));
        out.push(Capability {
            id: h as u8,
            offset: pos,
        });
        pos = ((h >> 8) as u8) & 0xfc;
    }
    out
}

/// The first capability with id `id`.
pub fn find_capability<C: ConfigSpace + ?Sized>(cs: &C, bdf: Bdf, id: u8) -> Option<u8> {
    capabilities(cs, bdf)
        .into_iter()
        .find(|c| c.id == id)
        .map(|c| c.offset)
}

/// What an MSI-X capability says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msix {
    /// The capability's offset.
    pub cap: u8,
    /// Table entries.
    pub table_size: u16,
    /// The BAR holding the table, and the table's offset in it.
    pub table: (u8, u32),
    /// The BAR holding the pending-bit array, and its offset.
    pub pba: (u8, u32),
    /// MSI-X enabled.
    pub enabled: bool,
    /// The function mask is set.
    pub masked: bool,
}

/// Decodes function `bdf`'s MSI-X capability, if it has one (a BAR
/// indicator above 5 is refused).
pub fn msix<C: ConfigSpace + ?Sized>(cs: &C, bdf: Bdf) -> Option<Msix> {
    let c = find_capability(cs, bdf, cap::MSIX)?;
    let ctrl = cs.read16(bdf, u16::from(c) + 2);
    let t = cs.read32(bdf, u16::from(c) + 4);
    let p = cs.read32(bdf, u16::from(c) + 8);
    if t & 7 > 5 || p & 7 > 5 {
        return None;
    }
    Some(Msix {
        cap: c,
        table_size: (ctrl & 0x7ff) + 1,
        table: ((t & 7) as u8, t & !7),
        pba: ((p & 7) as u8, p & !7),
        enabled: ctrl & 0x8000 != 0,
        masked: ctrl & 0x4000 != 0,
    })
}

/// Turns memory decoding, I/O decoding and bus mastering on as asked
/// (never off), as Linux's `pci_enable_device` + `pci_set_master`.
pub fn enable<C: ConfigSpace + ?Sized>(cs: &mut C, bdf: Bdf, memory: bool, io: bool, master: bool) {
    let cmd = cs.read16(bdf, reg::COMMAND);
    let mut new = cmd;
    if memory {
        new |= reg::CMD_MEMORY;
    }
    if io {
        new |= reg::CMD_IO;
    }
    if master {
        new |= reg::CMD_MASTER;
    }
    if new != cmd {
        cs.write16(bdf, reg::COMMAND, new);
    }
}

/// A virtio vendor capability (virtio 1.x, 4.1.4: `virtio_pci_cap`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioCap {
    /// `cfg_type` (1 common, 2 notify, 3 ISR, 4 device, 5 PCI access).
    pub cfg_type: u8,
    /// BAR index.
    pub bar: u8,
    /// Offset in the BAR.
    pub offset: u32,
    /// Length.
    pub length: u32,
}

/// The virtio structures function `bdf` advertises.
pub fn virtio_caps<C: ConfigSpace + ?Sized>(cs: &C, bdf: Bdf) -> Vec<VirtioCap> {
    capabilities(cs, bdf)
        .into_iter()
        .filter(|c| c.id == cap::VENDOR && c.offset <= 0xf0)
        .filter_map(|c| {
            let o = u16::from(c.offset);
            let h = cs.read32(bdf, o);
            let cap_len = (h >> 16) as u8;
            if cap_len < 16 {
                return None;
            }
            let bar = cs.read8(bdf, o + 4);
            (bar <= 5).then(|| VirtioCap {
                cfg_type: (h >> 24) as u8,
                bar,
                offset: cs.read32(bdf, o + 8),
                length: cs.read32(bdf, o + 12),
            })
        })
        .collect()
}

/// Hands a [`ConfigSpace`] to `virtio-drivers`' PCI transport (its
/// `ConfigurationAccess`).
#[derive(Clone, Debug)]
pub struct VirtioCam<C>(pub C);

fn to_bdf(d: virtio_drivers::transport::pci::bus::DeviceFunction) -> Bdf {
    Bdf::new(d.bus, d.device, d.function)
}

/// The `DeviceFunction` of a BDF.
pub fn device_function(b: Bdf) -> virtio_drivers::transport::pci::bus::DeviceFunction {
    virtio_drivers::transport::pci::bus::DeviceFunction {
        bus: b.bus,
        device: b.dev,
        function: b.func,
    }
}

impl<C: ConfigSpace + Clone> virtio_drivers::transport::pci::bus::ConfigurationAccess
    for VirtioCam<C>
{
    fn read_word(
        &self,
        device_function: virtio_drivers::transport::pci::bus::DeviceFunction,
        register_offset: u8,
    ) -> u32 {
        self.0
            .read32(to_bdf(device_function), u16::from(register_offset & 0xfc))
    }

    fn write_word(
        &mut self,
        device_function: virtio_drivers::transport::pci::bus::DeviceFunction,
        register_offset: u8,
        data: u32,
    ) {
        self.0.write32(
            to_bdf(device_function),
            u16::from(register_offset & 0xfc),
            data,
        );
    }

    unsafe fn unsafe_clone(&self) -> Self {
        self.clone()
    }
}

#[cfg(test)]
mod tests;
