//! The ioreq server's dispatcher: answers one Xen `ioreq_t`
//! (`public/hvm/ioreq.h`) the hypervisor forwarded from an HVM guest's
//! vCPU, as QEMU's `handle_ioreq` (`cpu_ioreq_pio`, `cpu_ioreq_move`,
//! `cpu_ioreq_config`) does.
//!
//! **Owns**: the guest's port map and its devices: COM1
//! ([`Uart16550`], ports 0x3f8..0x400, IRQ 4) and a PCI host bridge
//! ([`PciHost`]: configuration mechanism #1 at 0xcf8/0xcfc, with only the
//! host bridge itself at 00:00.0), plus [`Stats`] of what the guest probed
//! that nobody decodes (reads all ones, writes are dropped, as an empty
//! ISA bus or an unclaimed MMIO address).
//! **Trusts**: nothing in a request: the state, type, size (1, 2, 4, 8;
//! at most 4 for port I/O), the repeat count (1..=[`MAX_REPS`]) and every
//! address range (port, MMIO and the `data_is_ptr` buffer, walked up or
//! down as `df` says) are checked before any device is touched; guest
//! memory is reached only through the fallible [`GuestMemory`].
//!
//! A rep request (`data_is_ptr`) moves `count` items of `size` bytes
//! between the device and guest memory at `data`, item `i` at
//! `data ± i * size` (`-` when `df` is set); for MMIO (`IOREQ_TYPE_COPY`)
//! the device address walks the same way, the port of a PIO request does
//! not. Without `data_is_ptr` the value travels in `data` (a rep MMIO
//! write without a pointer, as `rep stos`, writes it `count` times).

use alloc::collections::BTreeMap;

use hypercall_abi::hvm::{Ioreq, IoreqState, IoreqType, IOREQ_READ};

use super::uart16550::{self, ByteSink, Uart16550};
use super::IoDevice;
pub use super::{GuestMemory, MemoryFault};
use crate::pci::{self, Bdf, ConfigSpace};

/// Most items of one rep request (Xen's emulator caps a rep batch at
/// 4096 items as well).
pub const MAX_REPS: u32 = 4096;
/// Distinct unclaimed MMIO pages counted one by one; further pages only
/// add to [`Stats::unclaimed_mmio_other`] (a guest may touch any number).
pub const MAX_TRACKED_MMIO_PAGES: usize = 64;
/// The port space's size.
const PORT_SPACE: u64 = 0x1_0000;

/// Why a request was refused (nothing was emulated, except for
/// [`IoreqError::Memory`], which stops a rep request part-way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoreqError {
    /// `state` is not `STATE_IOREQ_READY`/`INPROCESS`.
    NotReady {
        /// The state found.
        state: u8,
    },
    /// Unknown `type`.
    BadType {
        /// The type found.
        ty: u8,
    },
    /// Size not 1, 2, 4 or 8 (or 8 for port I/O or PCI config space).
    BadSize {
        /// The size found.
        size: u32,
    },
    /// Count 0, above [`MAX_REPS`], or not 1 where only 1 makes sense.
    BadCount {
        /// The count found.
        count: u32,
    },
    /// An address range wraps or leaves its space (ports above 0xffff).
    BadAddress {
        /// The first address of the range.
        addr: u64,
    },
    /// Guest memory failed during a rep request; `done` items were moved.
    Memory {
        /// The fault.
        fault: MemoryFault,
        /// Items completed before it.
        done: u32,
    },
}

impl core::fmt::Display for IoreqError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::NotReady { state } => write!(f, "ioreq in state {state}, not ready"),
            Self::BadType { ty } => write!(f, "unknown ioreq type {ty}"),
            Self::BadSize { size } => write!(f, "bad ioreq size {size}"),
            Self::BadCount { count } => write!(f, "bad ioreq count {count}"),
            Self::BadAddress { addr } => write!(f, "ioreq address range at {addr:#x} wraps"),
            Self::Memory { fault, done } => write!(
                f,
                "guest memory at {:#x} unreachable after {done} items",
                fault.gpa
            ),
        }
    }
}

/// All ones in the low `size` bytes.
const fn ones(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

/// `count` items of `size` bytes from `base`, upward or (df) downward.
#[derive(Clone, Copy, Debug)]
struct Span {
    base: u64,
    size: u64,
    down: bool,
}

impl Span {
    /// Checks that every item lies in `[0, limit)` without wrapping.
    fn new(base: u64, size: u8, count: u32, down: bool, limit: u64) -> Result<Span, IoreqError> {
        let size = u64::from(size);
        let bad = IoreqError::BadAddress { addr: base };
        let total = u64::from(count - 1).checked_mul(size).ok_or(bad)?;
        let (lo, hi) = if down {
            (base.checked_sub(total).ok_or(bad)?, base.checked_add(size))
        } else {
            (
                base,
                base.checked_add(total).and_then(|e| e.checked_add(size)),
            )
        };
        match hi {
            Some(hi) if hi <= limit && lo < hi => Ok(Span { base, size, down }),
            _ => Err(bad),
        }
    }

    /// Item `i` (checked by `new` for `i < count`).
    fn at(&self, i: u32) -> u64 {
        let step = u64::from(i) * self.size;
        if self.down {
            self.base - step
        } else {
            self.base + step
        }
    }
}

/// The vendor:device of 00:00.0: Intel's 440FX host bridge, what QEMU
/// and Xen's HVM guests have there.
pub const HOST_BRIDGE_VENDOR: u16 = 0x8086;
/// See [`HOST_BRIDGE_VENDOR`].
pub const HOST_BRIDGE_DEVICE: u16 = 0x1237;
/// CONFIG_ADDRESS.
pub const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
/// CONFIG_DATA (0xcfc..0xd00).
pub const PCI_CONFIG_DATA: u16 = 0xcfc;
/// The PIIX reset control register, a byte port inside CONFIG_ADDRESS
/// (the FADT's reset register, `builder::acpi::Platform::HVM_DEFAULT`).
pub const RESET_CONTROL: u16 = 0xcf9;
/// CONFIG_ADDRESS: enable.
const CF8_ENABLE: u32 = 1 << 31;
/// CONFIG_ADDRESS: the writable bits (enable, bus, device, function,
/// dword register).
const CF8_MASK: u32 = 0x80ff_fffc;
/// Reset control: reset the CPU (bit 2), as PIIX's RCR.
const RCR_RST_CPU: u8 = 1 << 2;

/// A PCI host bridge with configuration mechanism #1 and a bus on which
/// the only function is the bridge itself, 00:00.0 (440FX ids, class
/// 06/00/00 "host bridge", revision 2, header type 0, no BARs, no
/// capabilities; its configuration space is read-only and reads 0 beyond
/// the ids). Every other bus/device/function reads all ones ("no
/// device") and ignores writes. A byte write to 0xcf9 with RST_CPU set is
/// a reset request ([`PciHost::reset_requested`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PciHost {
    cf8: u32,
    rcr: u8,
    reset_requested: bool,
}

impl PciHost {
    /// CONFIG_ADDRESS as last written.
    pub fn config_address(&self) -> u32 {
        self.cf8
    }

    /// The guest asked for a reset through 0xcf9.
    pub fn reset_requested(&self) -> bool {
        self.reset_requested
    }

    /// Takes the reset request (it is acted on once).
    pub fn take_reset_request(&mut self) -> bool {
        core::mem::take(&mut self.reset_requested)
    }

    /// Byte `reg` (0..=255) of `bdf`'s configuration space.
    fn config_byte(bdf: Bdf, reg: u16) -> u8 {
        if bdf != Bdf::new(0, 0, 0) || reg > 0xff {
            return 0xff;
        }
        let [vl, vh] = HOST_BRIDGE_VENDOR.to_le_bytes();
        let [dl, dh] = HOST_BRIDGE_DEVICE.to_le_bytes();
        match reg {
            0x00 => vl,
            0x01 => vh,
            0x02 => dl,
            0x03 => dh,
            0x08 => 0x02, // revision
            0x0b => 0x06, // class: bridge (subclass 0: host, prog-if 0)
            _ => 0,
        }
    }

    /// `size` bytes of configuration space at `reg` (bytes beyond 255
    /// read all ones).
    pub fn config_read(&self, bdf: Bdf, reg: u16, size: u8) -> u64 {
        (0..u16::from(size)).fold(0, |v, i| {
            v | u64::from(Self::config_byte(bdf, reg.saturating_add(i))) << (8 * i)
        })
    }

    /// Writes to configuration space: nothing here is writable.
    pub fn config_write(&mut self, _bdf: Bdf, _reg: u16, _size: u8, _value: u64) {}

    /// The function CONFIG_ADDRESS selects and the register for
    /// CONFIG_DATA byte `byte` (0..4), if enabled.
    fn selected(&self, byte: u64) -> Option<(Bdf, u16)> {
        if self.cf8 & CF8_ENABLE == 0 {
            return None;
        }
        let bdf = Bdf::new(
            (self.cf8 >> 16) as u8,
            ((self.cf8 >> 11) & 0x1f) as u8,
            ((self.cf8 >> 8) & 7) as u8,
        );
        Some((bdf, (self.cf8 & 0xfc) as u16 + byte as u16))
    }
}

/// `sbdf << 32 | reg`, the address of an `IOREQ_TYPE_PCI_CONFIG` request.
fn decode_pci_config_addr(addr: u64) -> Option<(Bdf, u16)> {
    let sbdf = (addr >> 32) as u32;
    let reg = (addr & 0xffff_ffff) as u32;
    if sbdf >> 16 != 0 {
        return None; // segment != 0: nothing there
    }
    let bdf = Bdf::new(
        (sbdf >> 8) as u8,
        ((sbdf >> 3) & 0x1f) as u8,
        (sbdf & 7) as u8,
    );
    u16::try_from(reg).ok().map(|r| (bdf, r))
}

impl IoDevice for PciHost {
    /// Offsets from 0xcf8: 0..4 CONFIG_ADDRESS (dword only; a byte at 1
    /// is the reset control register), 4..8 CONFIG_DATA.
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        match (offset, size) {
            (0, 4) => u64::from(self.cf8),
            (1, 1) => u64::from(self.rcr),
            (4..=7, _) => match self.selected(offset - 4) {
                Some((bdf, reg)) => self.config_read(bdf, reg, size),
                None => ones(size),
            },
            _ => ones(size),
        }
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        match (offset, size) {
            (0, 4) => self.cf8 = value as u32 & CF8_MASK,
            (1, 1) => {
                self.rcr = value as u8 & 0x0e;
                if value as u8 & RCR_RST_CPU != 0 {
                    self.reset_requested = true;
                }
            }
            (4..=7, _) => {
                if let Some((bdf, reg)) = self.selected(offset - 4) {
                    self.config_write(bdf, reg, size, value);
                }
            }
            _ => {}
        }
    }

    fn max_access(&self) -> u8 {
        4
    }
}

/// Lets [`pci::enumerate`] walk the emulated bus (what the guest sees).
impl ConfigSpace for PciHost {
    fn read32(&self, bdf: Bdf, off: u16) -> u32 {
        self.config_read(bdf, off, 4) as u32
    }

    fn write32(&mut self, bdf: Bdf, off: u16, v: u32) {
        self.config_write(bdf, off, 4, u64::from(v));
    }
}

/// The PM1a control register of the guest's ACPI fixed hardware (2
/// bytes at [`PM1A_CNT`], the FADT's `PM1a_CNT_BLK` for
/// `builder::acpi::PmPorts::XEN_V1`, QEMU's PIIX4 PM block, which the
/// device model serves in a Xen system). SCI_EN always reads set (the
/// guest is in ACPI mode from the start: the FADT has no SMI command
/// port); writing SLP_EN with SLP_TYP = [`S5_SLP_TYP`] is a power-off
/// request ([`DeviceModel::power_request`]), another SLP_TYP (a sleep
/// state Oxen does not offer) is ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pm1Control {
    value: u16,
    poweroff: bool,
}

/// PM1a_CNT's port.
pub const PM1A_CNT: u16 = 0xb004;
/// `\_S5`'s SLP_TYP in the DSDT (`ACPI_SLP_TYP_S5_V1`).
pub const S5_SLP_TYP: u16 = 0;
/// PM1_CNT.SCI_EN.
const PM1_SCI_EN: u16 = 1 << 0;
/// PM1_CNT.SLP_TYP (bits 10..13).
const PM1_SLP_TYP_SHIFT: u16 = 10;
/// PM1_CNT.SLP_EN (write-only).
const PM1_SLP_EN: u16 = 1 << 13;

impl IoDevice for Pm1Control {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        let v = u64::from(self.value | PM1_SCI_EN);
        (v >> (8 * offset.min(2))) & ones(size)
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        let mut v = u64::from(self.value);
        for i in 0..u64::from(size) {
            let at = offset + i;
            if at < 2 {
                v = (v & !(0xff << (8 * at))) | (((value >> (8 * i)) & 0xff) << (8 * at));
            }
        }
        let v = v as u16;
        if v & PM1_SLP_EN != 0 && (v >> PM1_SLP_TYP_SHIFT) & 7 == S5_SLP_TYP {
            self.poweroff = true;
        }
        self.value = v & !PM1_SLP_EN;
    }

    fn max_access(&self) -> u8 {
        2
    }
}

/// What the guest asked of the machine through its devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerRequest {
    /// ACPI S5 (PM1a_CNT): power off.
    Poweroff,
    /// Reset control (0xcf9): reboot.
    Reboot,
}

/// What the device model has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests answered.
    pub requests: u64,
    /// Port I/O requests (a rep request counts once).
    pub pio: u64,
    /// MMIO (`IOREQ_TYPE_COPY`) requests.
    pub mmio: u64,
    /// `IOREQ_TYPE_PCI_CONFIG` requests.
    pub pci_config: u64,
    /// Requests refused as malformed.
    pub refused: u64,
    /// Accesses to ports no device decodes, by first port.
    pub unclaimed_ports: BTreeMap<u16, u64>,
    /// Accesses to MMIO no device decodes, by guest frame (the first
    /// [`MAX_TRACKED_MMIO_PAGES`] frames).
    pub unclaimed_mmio: BTreeMap<u64, u64>,
    /// Unclaimed MMIO accesses to further frames.
    pub unclaimed_mmio_other: u64,
}

impl Stats {
    /// Accesses to `port` that nobody decoded.
    pub fn unclaimed_port(&self, port: u16) -> u64 {
        self.unclaimed_ports.get(&port).copied().unwrap_or(0)
    }

    fn count_mmio(&mut self, gpa: u64) {
        let gfn = gpa >> 12;
        if let Some(n) = self.unclaimed_mmio.get_mut(&gfn) {
            *n += 1;
        } else if self.unclaimed_mmio.len() < MAX_TRACKED_MMIO_PAGES {
            self.unclaimed_mmio.insert(gfn, 1);
        } else {
            self.unclaimed_mmio_other += 1;
        }
    }
}

/// The device model of one HVM guest: its devices and what it has seen.
#[derive(Debug)]
pub struct DeviceModel<S> {
    /// COM1.
    pub com1: Uart16550<S>,
    /// The PCI host bridge.
    pub pci: PciHost,
    /// ACPI PM1a control (S5 power-off).
    pub pm1: Pm1Control,
    stats: Stats,
}

/// Which device decodes a port, and the range it decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortDev {
    Com1,
    Pci,
    Pm1,
}

/// The port map: (first port, number of ports, device).
const PORT_MAP: [(u16, u16, PortDev); 3] = [
    (uart16550::COM1_BASE, uart16550::NR_PORTS, PortDev::Com1),
    (PCI_CONFIG_ADDRESS, 8, PortDev::Pci),
    (PM1A_CNT, 2, PortDev::Pm1),
];

fn port_owner(port: u64) -> Option<(u64, u64, PortDev)> {
    PORT_MAP
        .iter()
        .map(|&(b, n, d)| (u64::from(b), u64::from(n), d))
        .find(|&(b, n, _)| port >= b && port < b + n)
}

impl<S: ByteSink> DeviceModel<S> {
    /// A fresh device model whose COM1 output goes to `console`.
    pub fn new(console: S) -> Self {
        DeviceModel {
            com1: Uart16550::new(console),
            pci: PciHost::default(),
            pm1: Pm1Control::default(),
            stats: Stats::default(),
        }
    }

    /// What it has seen.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// What the guest asked for since the last call (each request is
    /// returned once): ACPI S5 power-off wins over a reset.
    pub fn power_request(&mut self) -> Option<PowerRequest> {
        let off = core::mem::take(&mut self.pm1.poweroff);
        let reset = self.pci.take_reset_request();
        if off {
            Some(PowerRequest::Poweroff)
        } else if reset {
            Some(PowerRequest::Reboot)
        } else {
            None
        }
    }

    /// The ISA IRQ lines the devices drive, bit N for IRQ N (for
    /// `XEN_DMOP_set_isa_irq_level`).
    pub fn isa_irq_levels(&self) -> u16 {
        if self.com1.irq_asserted() {
            1 << uart16550::COM1_IRQ
        } else {
            0
        }
    }

    fn device(&mut self, d: PortDev) -> &mut dyn IoDevice {
        match d {
            PortDev::Com1 => &mut self.com1,
            PortDev::Pci => &mut self.pci,
            PortDev::Pm1 => &mut self.pm1,
        }
    }

    /// One port access (checked: `port + size <= 0x10000`); `write` is the
    /// value for a write, the result is the value read.
    fn port_io(&mut self, port: u64, size: u8, write: Option<u64>) -> u64 {
        if let Some((base, n, d)) = port_owner(port) {
            let dev = self.device(d);
            if size <= dev.max_access() && port + u64::from(size) <= base + n {
                let off = port - base;
                return match write {
                    Some(v) => {
                        dev.write(off, size, v & ones(size));
                        0
                    }
                    None => dev.read(off, size) & ones(size),
                };
            }
        }
        let claimed = (0..u64::from(size)).any(|i| port_owner(port + i).is_some());
        if !claimed {
            *self.stats.unclaimed_ports.entry(port as u16).or_insert(0) += 1;
            return ones(size);
        }
        // Wider than a device takes, or straddling devices: byte by byte.
        let mut v = 0;
        for i in 0..u64::from(size) {
            let b = self.port_io(port + i, 1, write.map(|w| (w >> (8 * i)) & 0xff));
            v |= (b & 0xff) << (8 * i);
        }
        v
    }

    /// One MMIO access: nothing decodes MMIO in Dom0 yet.
    fn mmio(&mut self, gpa: u64, size: u8, _write: Option<u64>) -> u64 {
        self.stats.count_mmio(gpa);
        ones(size)
    }

    /// Answers `req`: the response to write back (the read data in `data`
    /// unless `data_is_ptr`, state `STATE_IORESP_READY`), or why it was
    /// refused.
    pub fn handle(&mut self, req: &Ioreq, mem: &mut dyn GuestMemory) -> Result<Ioreq, IoreqError> {
        let r = self.dispatch(req, mem);
        match r {
            Ok(_) => self.stats.requests += 1,
            Err(_) => self.stats.refused += 1,
        }
        r
    }

    fn dispatch(&mut self, req: &Ioreq, mem: &mut dyn GuestMemory) -> Result<Ioreq, IoreqError> {
        let state = req.state();
        if state != IoreqState::IoreqReady.raw() && state != IoreqState::IoreqInprocess.raw() {
            return Err(IoreqError::NotReady { state });
        }
        let ty = IoreqType::from_raw(u64::from(req.r#type))
            .ok_or(IoreqError::BadType { ty: req.r#type })?;
        let mut resp = *req;
        resp.set_state(IoreqState::IorespReady.raw());
        if matches!(ty, IoreqType::Timeoffset | IoreqType::Invalidate) {
            // No RTC offset to keep and no mapcache to drop.
            return Ok(resp);
        }
        let size = match req.size {
            1 | 2 | 4 | 8 => req.size as u8,
            size => return Err(IoreqError::BadSize { size }),
        };
        let count = req.count;
        if count == 0 || count > MAX_REPS {
            return Err(IoreqError::BadCount { count });
        }
        let read = req.dir() == IOREQ_READ;
        let ptr = req.data_is_ptr();
        let data = if ptr {
            Some(Span::new(req.data, size, count, req.df(), u64::MAX)?)
        } else {
            None
        };
        match ty {
            IoreqType::Pio => {
                self.stats.pio += 1;
                if size == 8 {
                    return Err(IoreqError::BadSize { size: req.size });
                }
                if !ptr && count != 1 {
                    return Err(IoreqError::BadCount { count });
                }
                // The port is the same for every item.
                Span::new(req.addr, size, 1, false, PORT_SPACE)?;
                let port = req.addr;
                match data {
                    None if read => resp.data = self.port_io(port, size, None),
                    None => {
                        self.port_io(port, size, Some(req.data));
                    }
                    Some(buf) => {
                        for i in 0..count {
                            let at = buf.at(i);
                            let fail = |fault| IoreqError::Memory { fault, done: i };
                            if read {
                                let v = self.port_io(port, size, None);
                                mem.write(at, &v.to_le_bytes()[..size.into()])
                                    .map_err(fail)?;
                            } else {
                                let v = read_item(mem, at, size).map_err(fail)?;
                                self.port_io(port, size, Some(v));
                            }
                        }
                    }
                }
            }
            IoreqType::Copy => {
                self.stats.mmio += 1;
                let dev = Span::new(req.addr, size, count, req.df(), u64::MAX)?;
                for i in 0..count {
                    let fail = |fault| IoreqError::Memory { fault, done: i };
                    match (data, read) {
                        (None, true) => resp.data = self.mmio(dev.at(i), size, None),
                        (None, false) => {
                            self.mmio(dev.at(i), size, Some(req.data & ones(size)));
                        }
                        (Some(buf), true) => {
                            let v = self.mmio(dev.at(i), size, None);
                            mem.write(buf.at(i), &v.to_le_bytes()[..size.into()])
                                .map_err(fail)?;
                        }
                        (Some(buf), false) => {
                            let v = read_item(mem, buf.at(i), size).map_err(fail)?;
                            self.mmio(dev.at(i), size, Some(v));
                        }
                    }
                }
            }
            IoreqType::PciConfig => {
                self.stats.pci_config += 1;
                if size == 8 {
                    return Err(IoreqError::BadSize { size: req.size });
                }
                if ptr || count != 1 {
                    return Err(IoreqError::BadCount { count });
                }
                let target = decode_pci_config_addr(req.addr);
                match target {
                    Some((bdf, reg)) if read => resp.data = self.pci.config_read(bdf, reg, size),
                    Some((bdf, reg)) => self.pci.config_write(bdf, reg, size, req.data),
                    None if read => resp.data = ones(size),
                    None => {}
                }
            }
            IoreqType::Timeoffset | IoreqType::Invalidate => {}
        }
        Ok(resp)
    }
}

fn read_item(mem: &mut dyn GuestMemory, gpa: u64, size: u8) -> Result<u64, MemoryFault> {
    let mut b = [0u8; 8];
    mem.read(gpa, &mut b[..size.into()])?;
    Ok(u64::from_le_bytes(b))
}

/// The bus the guest sees through [`PciHost`], enumerated as Dom0's own
/// PCI code would (for logs and tests).
pub fn visible_functions(host: &PciHost) -> alloc::vec::Vec<pci::Function> {
    pci::enumerate(host)
}

/// The device model's state in a save image ("emulator context"): a tag,
/// a version, then COM1, the PCI host's CONFIG_ADDRESS and 0xcf9, PM1a_CNT.
const STATE_TAG: &[u8; 4] = b"OXDM";
/// The version of that layout.
const STATE_VERSION: u8 = 1;

impl<S: ByteSink> DeviceModel<S> {
    /// The devices' state, for `xl save` (Xen's `EMULATOR_CONTEXT`).
    pub fn save_state(&self) -> alloc::vec::Vec<u8> {
        let mut out = alloc::vec::Vec::with_capacity(40);
        out.extend_from_slice(STATE_TAG);
        out.push(STATE_VERSION);
        self.com1.save(&mut out);
        out.extend_from_slice(&self.pci.cf8.to_le_bytes());
        out.push(self.pci.rcr);
        out.extend_from_slice(&self.pm1.value.to_le_bytes());
        out
    }

    /// Loads what [`Self::save_state`] wrote (`xl restore`); a malformed
    /// or foreign state is refused with what is wrong, and leaves the
    /// devices as they were.
    pub fn load_state(&mut self, b: &[u8]) -> Result<(), &'static str> {
        if b.get(..4) != Some(&STATE_TAG[..]) {
            return Err("not an Oxen device model state");
        }
        if b.get(4) != Some(&STATE_VERSION) {
            return Err("device model state of an unknown version");
        }
        let before = self.com1.save_to_vec();
        let used = self.com1.load(&b[5..]).ok_or("COM1's state is malformed")?;
        let rest = &b[5 + used..];
        if rest.len() != 7 {
            let _ = self.com1.load(&before);
            return Err("device model state has the wrong length");
        }
        self.pci.cf8 = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        self.pci.rcr = rest[4];
        self.pm1.value = u16::from_le_bytes([rest[5], rest[6]]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn device_model_state_survives_save_and_load_and_bad_states_are_refused() {
        let mut a = DeviceModel::new(alloc::vec::Vec::new());
        a.com1.receive(b"hi");
        a.pci.cf8 = 0x8000_0010;
        a.pm1.value = 0x1234;
        let st = a.save_state();
        let mut b = DeviceModel::new(alloc::vec::Vec::new());
        b.load_state(&st).unwrap();
        assert_eq!(b.save_state(), st);
        assert_eq!(b.pci.config_address(), 0x8000_0010);
        let fresh = DeviceModel::new(alloc::vec::Vec::new()).save_state();
        let mut c = DeviceModel::new(alloc::vec::Vec::new());
        for bad in [&st[..3], &st[..st.len() - 1], b"OXDM\x09rest"] {
            assert!(c.load_state(bad).is_err());
            assert_eq!(c.save_state(), fresh, "a refused state changes nothing");
        }
        let mut too_many = st.clone();
        too_many[5 + 10] = 200;
        assert!(c.load_state(&too_many).is_err());
        assert_eq!(c.save_state(), fresh);
    }

    use super::*;
    use crate::devmodel::testmem::{Ram, Rng};
    use crate::devmodel::uart16550::{ier, lsr, mcr, reg};
    use hypercall_abi::hvm::{IOREQ_BITS_DATA_IS_PTR, IOREQ_BITS_DF, IOREQ_BITS_DIR};
    use std::vec;
    use std::vec::Vec;

    #[derive(Clone, Copy)]
    struct Req {
        ty: IoreqType,
        read: bool,
        addr: u64,
        data: u64,
        size: u32,
        count: u32,
        ptr: bool,
        df: bool,
    }

    impl Req {
        fn pio(read: bool, port: u16, size: u32, data: u64) -> Req {
            Req {
                ty: IoreqType::Pio,
                read,
                addr: u64::from(port),
                data,
                size,
                count: 1,
                ptr: false,
                df: false,
            }
        }

        fn build(self) -> Ioreq {
            let mut bits = IoreqState::IoreqReady.raw();
            if self.ptr {
                bits |= IOREQ_BITS_DATA_IS_PTR;
            }
            if self.read {
                bits |= IOREQ_BITS_DIR;
            }
            if self.df {
                bits |= IOREQ_BITS_DF;
            }
            Ioreq {
                addr: self.addr,
                data: self.data,
                count: self.count,
                size: self.size,
                vp_eport: 7,
                _pad0: 0,
                bits,
                r#type: self.ty.raw(),
            }
        }
    }

    fn dm() -> DeviceModel<Vec<u8>> {
        DeviceModel::new(Vec::new())
    }

    fn no_mem() -> Ram {
        Ram::new(0, 0)
    }

    fn inb(d: &mut DeviceModel<Vec<u8>>, port: u16, size: u32) -> u64 {
        let r = d
            .handle(&Req::pio(true, port, size, 0).build(), &mut no_mem())
            .unwrap();
        assert_eq!(r.state(), IoreqState::IorespReady.raw());
        r.data
    }

    fn outb(d: &mut DeviceModel<Vec<u8>>, port: u16, size: u32, v: u64) {
        let r = d
            .handle(&Req::pio(false, port, size, v).build(), &mut no_mem())
            .unwrap();
        assert_eq!(r.state(), IoreqState::IorespReady.raw());
    }

    #[test]
    fn uart_through_ioreqs() {
        let mut d = dm();
        let com1 = uart16550::COM1_BASE;
        outb(&mut d, com1 + u16::from(reg::LCR), 1, 0x03);
        outb(&mut d, com1 + u16::from(reg::MCR), 1, u64::from(mcr::OUT2));
        for &b in b"ok\n" {
            assert_ne!(
                inb(&mut d, com1 + u16::from(reg::LSR), 1) & u64::from(lsr::THRE),
                0
            );
            outb(&mut d, com1, 1, u64::from(b));
        }
        assert_eq!(d.com1.sink(), b"ok\n");
        // IRQ 4 follows the UART.
        assert_eq!(d.isa_irq_levels(), 0);
        outb(&mut d, com1 + u16::from(reg::IER), 1, u64::from(ier::ETBEI));
        assert_eq!(d.isa_irq_levels(), 1 << 4);
        assert_eq!(inb(&mut d, com1 + u16::from(reg::IIR_FCR), 1), 0x02);
        assert_eq!(d.isa_irq_levels(), 0);
        assert_eq!(d.stats().pio, 10);
        assert!(d.stats().unclaimed_ports.is_empty());
    }

    #[test]
    fn wide_port_access_to_the_uart_is_split_into_bytes() {
        let mut d = dm();
        // outw to SCR-1 (MSR, SCR): the low byte goes to MSR (ignored),
        // the high byte to SCR.
        outb(&mut d, 0x3fe, 2, 0xa500);
        assert_eq!(inb(&mut d, 0x3ff, 1), 0xa5);
        // A word at 0x3ff straddles COM1's end: SCR, then nothing (0xff).
        assert_eq!(inb(&mut d, 0x3ff, 2), 0xffa5);
        assert_eq!(d.stats().unclaimed_port(0x400), 1);
        assert_eq!(d.stats().unclaimed_ports.len(), 1);
    }

    #[test]
    fn unclaimed_ports_read_all_ones_and_are_counted() {
        let mut d = dm();
        assert_eq!(inb(&mut d, 0x80, 1), 0xff);
        assert_eq!(inb(&mut d, 0x2f8, 2), 0xffff);
        assert_eq!(inb(&mut d, 0x2f8, 4), 0xffff_ffff);
        outb(&mut d, 0x80, 1, 0x12);
        assert_eq!(d.stats().unclaimed_port(0x80), 2);
        assert_eq!(d.stats().unclaimed_port(0x2f8), 2);
        assert_eq!(d.stats().unclaimed_port(0x3f8), 0);
    }

    fn cf8(bus: u32, dev: u32, func: u32, reg: u32) -> u64 {
        u64::from(0x8000_0000 | bus << 16 | dev << 11 | func << 8 | reg)
    }

    #[test]
    fn pci_mechanism_one_shows_only_the_host_bridge() {
        let mut d = dm();
        outb(&mut d, 0xcf8, 4, cf8(0, 0, 0, 0));
        assert_eq!(inb(&mut d, 0xcf8, 4), cf8(0, 0, 0, 0));
        assert_eq!(inb(&mut d, 0xcfc, 4), 0x1237_8086);
        assert_eq!(inb(&mut d, 0xcfc, 2), 0x8086);
        assert_eq!(inb(&mut d, 0xcfe, 2), 0x1237);
        assert_eq!(inb(&mut d, 0xcfd, 1), 0x80);
        outb(&mut d, 0xcf8, 4, cf8(0, 0, 0, 8));
        assert_eq!(inb(&mut d, 0xcfc, 4), 0x0600_0002);
        // Read-only: writes change nothing.
        outb(&mut d, 0xcf8, 4, cf8(0, 0, 0, 0));
        outb(&mut d, 0xcfc, 4, 0);
        assert_eq!(inb(&mut d, 0xcfc, 4), 0x1237_8086);
        // Every other function: no device.
        for (b, dv, f) in [(0, 1, 0), (0, 0, 1), (0, 31, 7), (1, 0, 0), (255, 3, 2)] {
            outb(&mut d, 0xcf8, 4, cf8(b, dv, f, 0));
            assert_eq!(inb(&mut d, 0xcfc, 4), 0xffff_ffff, "{b}:{dv}.{f}");
            assert_eq!(inb(&mut d, 0xcfe, 2), 0xffff);
        }
        // Enable bit clear: all ones even for 00:00.0.
        outb(&mut d, 0xcf8, 4, 0);
        assert_eq!(inb(&mut d, 0xcfc, 4), 0xffff_ffff);
        // Reserved bits of CONFIG_ADDRESS read 0.
        outb(&mut d, 0xcf8, 4, 0xffff_ffff);
        assert_eq!(inb(&mut d, 0xcf8, 4), 0x80ff_fffc);
        // Dom0's own enumerator finds exactly one function.
        let found = visible_functions(&d.pci);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].bdf, Bdf::new(0, 0, 0));
        assert_eq!((found[0].vendor, found[0].device), (0x8086, 0x1237));
        assert!(d.stats().unclaimed_ports.is_empty());
    }

    #[test]
    fn reset_control_register() {
        let mut d = dm();
        outb(&mut d, 0xcf9, 1, 0x02);
        assert!(!d.pci.reset_requested());
        assert_eq!(inb(&mut d, 0xcf9, 1), 0x02);
        outb(&mut d, 0xcf9, 1, 0x06);
        assert!(d.pci.reset_requested());
        // Byte writes elsewhere in CONFIG_ADDRESS do not latch it.
        outb(&mut d, 0xcf8, 1, 0x80);
        assert_eq!(d.pci.config_address(), 0);
    }

    #[test]
    fn acpi_s5_and_the_reset_register_are_power_requests_taken_once() {
        let mut d = dm();
        assert_eq!(d.power_request(), None);
        assert_eq!(inb(&mut d, PM1A_CNT, 2) & 1, 1, "SCI_EN reads set");
        // A sleep type other than S5 (S3 = 1 << 10) is ignored.
        outb(&mut d, PM1A_CNT, 2, (1 << 10) | (1 << 13));
        assert_eq!(d.power_request(), None);
        assert_eq!(inb(&mut d, PM1A_CNT, 2) & (1 << 13), 0, "SLP_EN reads 0");
        // SLP_TYP = S5 (0), SLP_EN, as a 16-bit write and as two bytes.
        outb(&mut d, PM1A_CNT, 2, 1 << 13);
        assert_eq!(d.power_request(), Some(PowerRequest::Poweroff));
        assert_eq!(d.power_request(), None);
        outb(&mut d, PM1A_CNT, 1, 0);
        outb(&mut d, PM1A_CNT + 1, 1, 0x20);
        assert_eq!(d.power_request(), Some(PowerRequest::Poweroff));
        outb(&mut d, 0xcf9, 1, 0x06);
        assert_eq!(d.power_request(), Some(PowerRequest::Reboot));
        assert_eq!(d.power_request(), None);
        assert!(d.stats().unclaimed_ports.is_empty());
    }

    #[test]
    fn pci_config_ioreq_type() {
        let mut d = dm();
        let mut q = Req::pio(true, 0, 4, 0);
        q.ty = IoreqType::PciConfig;
        q.addr = 0; // 0000:00:00.0, register 0
        assert_eq!(
            d.handle(&q.build(), &mut no_mem()).unwrap().data,
            0x1237_8086
        );
        q.addr = 0x08u64 << 32; // 00:01.0, register 0
        assert_eq!(
            d.handle(&q.build(), &mut no_mem()).unwrap().data,
            0xffff_ffff
        );
        q.addr = 1u64 << 48; // segment 1
        assert_eq!(
            d.handle(&q.build(), &mut no_mem()).unwrap().data,
            0xffff_ffff
        );
        q.addr = 0x2;
        q.size = 2;
        assert_eq!(d.handle(&q.build(), &mut no_mem()).unwrap().data, 0x1237);
        q.size = 8;
        assert!(matches!(
            d.handle(&q.build(), &mut no_mem()),
            Err(IoreqError::BadSize { size: 8 })
        ));
        assert_eq!(d.stats().pci_config, 5);
    }

    #[test]
    fn rep_outsb_reads_guest_memory_upward() {
        let mut d = dm();
        let mut ram = Ram::new(0x1000, 0x1000);
        ram.bytes[0x10..0x15].copy_from_slice(b"hello");
        let mut q = Req::pio(false, 0x3f8, 1, 0x1010);
        q.ptr = true;
        q.count = 5;
        let r = d.handle(&q.build(), &mut ram).unwrap();
        assert_eq!(r.state(), IoreqState::IorespReady.raw());
        assert_eq!(r.data, 0x1010, "a pointer stays a pointer");
        assert_eq!(d.com1.sink(), b"hello");
    }

    #[test]
    fn rep_outsb_with_df_walks_down() {
        let mut d = dm();
        let mut ram = Ram::new(0x1000, 0x1000);
        ram.bytes[0x10..0x15].copy_from_slice(b"olleh");
        let mut q = Req::pio(false, 0x3f8, 1, 0x1014);
        q.ptr = true;
        q.df = true;
        q.count = 5;
        d.handle(&q.build(), &mut ram).unwrap();
        assert_eq!(d.com1.sink(), b"hello");
    }

    #[test]
    fn rep_insw_writes_guest_memory() {
        let mut d = dm();
        let mut ram = Ram::new(0, 0x100);
        ram.bytes.fill(0x11);
        // Two words from an unclaimed port, backwards from 0x12.
        let mut q = Req::pio(true, 0x1f0, 2, 0x12);
        q.ptr = true;
        q.df = true;
        q.count = 2;
        d.handle(&q.build(), &mut ram).unwrap();
        assert_eq!(
            &ram.bytes[0x0f..0x15],
            &[0x11, 0xff, 0xff, 0xff, 0xff, 0x11]
        );
        assert_eq!(d.stats().unclaimed_port(0x1f0), 2);
    }

    #[test]
    fn mmio_unclaimed_reads_ones_and_counts_pages() {
        let mut d = dm();
        let mut q = Req::pio(true, 0, 4, 0);
        q.ty = IoreqType::Copy;
        q.addr = 0xfed0_0000;
        assert_eq!(
            d.handle(&q.build(), &mut no_mem()).unwrap().data,
            0xffff_ffff
        );
        q.size = 8;
        assert_eq!(d.handle(&q.build(), &mut no_mem()).unwrap().data, u64::MAX);
        q.read = false;
        d.handle(&q.build(), &mut no_mem()).unwrap();
        assert_eq!(d.stats().unclaimed_mmio.get(&0xfed00), Some(&3));
        // rep movsd from MMIO into RAM.
        let mut ram = Ram::new(0, 0x100);
        let mut q = Req::pio(true, 0, 4, 0x20);
        q.ty = IoreqType::Copy;
        q.addr = 0xe000_0ff8;
        q.ptr = true;
        q.count = 4; // crosses into the next page
        d.handle(&q.build(), &mut ram).unwrap();
        assert_eq!(&ram.bytes[0x20..0x30], &[0xff; 16]);
        assert_eq!(d.stats().unclaimed_mmio.get(&0xe0000), Some(&2));
        assert_eq!(d.stats().unclaimed_mmio.get(&0xe0001), Some(&2));
        assert_eq!(d.stats().mmio, 4);
        // Many distinct pages: only the first ones are tracked.
        for p in 0..200u64 {
            let mut q = Req::pio(true, 0, 1, 0);
            q.ty = IoreqType::Copy;
            q.addr = 0x1_0000_0000 + (p << 12);
            d.handle(&q.build(), &mut no_mem()).unwrap();
        }
        assert_eq!(d.stats().unclaimed_mmio.len(), MAX_TRACKED_MMIO_PAGES);
        assert!(d.stats().unclaimed_mmio_other > 0);
    }

    #[test]
    fn malformed_requests_are_refused() {
        let mut d = dm();
        let mut m = no_mem();
        let ok = Req::pio(true, 0x3f8, 1, 0);
        let cases: Vec<(Req, IoreqError)> = vec![
            (
                {
                    let mut q = ok;
                    q.size = 3;
                    q
                },
                IoreqError::BadSize { size: 3 },
            ),
            (
                {
                    let mut q = ok;
                    q.size = 0;
                    q
                },
                IoreqError::BadSize { size: 0 },
            ),
            (
                {
                    let mut q = ok;
                    q.size = 16;
                    q
                },
                IoreqError::BadSize { size: 16 },
            ),
            (
                {
                    let mut q = ok;
                    q.size = 8;
                    q
                },
                IoreqError::BadSize { size: 8 },
            ),
            (
                {
                    let mut q = ok;
                    q.count = 0;
                    q
                },
                IoreqError::BadCount { count: 0 },
            ),
            (
                {
                    let mut q = ok;
                    q.count = 2;
                    q
                },
                IoreqError::BadCount { count: 2 },
            ),
            (
                {
                    let mut q = ok;
                    q.ptr = true;
                    q.count = MAX_REPS + 1;
                    q
                },
                IoreqError::BadCount {
                    count: MAX_REPS + 1,
                },
            ),
            (
                {
                    let mut q = ok;
                    q.count = u32::MAX;
                    q.ptr = true;
                    q
                },
                IoreqError::BadCount { count: u32::MAX },
            ),
            (
                {
                    let mut q = ok;
                    q.addr = 0x1_0000;
                    q
                },
                IoreqError::BadAddress { addr: 0x1_0000 },
            ),
            (
                {
                    let mut q = ok;
                    q.addr = 0xffff;
                    q.size = 2;
                    q
                },
                IoreqError::BadAddress { addr: 0xffff },
            ),
            (
                {
                    let mut q = ok;
                    q.ptr = true;
                    q.count = 4;
                    q.data = u64::MAX - 2;
                    q
                },
                IoreqError::BadAddress { addr: u64::MAX - 2 },
            ),
            (
                {
                    let mut q = ok;
                    q.ptr = true;
                    q.df = true;
                    q.count = 4;
                    q.data = 2;
                    q
                },
                IoreqError::BadAddress { addr: 2 },
            ),
            (
                {
                    let mut q = ok;
                    q.ty = IoreqType::Copy;
                    q.addr = u64::MAX - 7;
                    q.size = 8;
                    q.count = 2;
                    q
                },
                IoreqError::BadAddress { addr: u64::MAX - 7 },
            ),
            (
                {
                    let mut q = ok;
                    q.ty = IoreqType::Copy;
                    q.addr = 4;
                    q.size = 4;
                    q.count = 3;
                    q.df = true;
                    q
                },
                IoreqError::BadAddress { addr: 4 },
            ),
        ];
        for (i, (q, want)) in cases.iter().enumerate() {
            assert_eq!(d.handle(&q.build(), &mut m), Err(*want), "case {i}");
        }
        // Bad type and state.
        let mut r = ok.build();
        r.r#type = 3;
        assert_eq!(d.handle(&r, &mut m), Err(IoreqError::BadType { ty: 3 }));
        let mut r = ok.build();
        r.set_state(IoreqState::IorespReady.raw());
        assert_eq!(d.handle(&r, &mut m), Err(IoreqError::NotReady { state: 3 }));
        let mut r = ok.build();
        r.set_state(IoreqState::IoreqNone.raw());
        assert!(d.handle(&r, &mut m).is_err());
        // Nothing reached a device.
        assert_eq!(d.stats().requests, 0);
        assert_eq!(d.stats().refused, cases.len() as u64 + 3);
        assert!(d.stats().unclaimed_ports.is_empty());
        // The guest's bytes went nowhere.
        assert!(d.com1.sink().is_empty());
    }

    #[test]
    fn guest_memory_fault_stops_a_rep_with_progress() {
        let mut d = dm();
        let mut ram = Ram::new(0x1000, 4);
        ram.bytes.copy_from_slice(b"abcd");
        let mut q = Req::pio(false, 0x3f8, 1, 0x1002);
        q.ptr = true;
        q.count = 4;
        let e = d.handle(&q.build(), &mut ram).unwrap_err();
        assert_eq!(
            e,
            IoreqError::Memory {
                fault: MemoryFault { gpa: 0x1004 },
                done: 2
            }
        );
        assert_eq!(d.com1.sink(), b"cd");
    }

    #[test]
    fn timeoffset_and_invalidate_are_acknowledged() {
        let mut d = dm();
        for ty in [IoreqType::Timeoffset, IoreqType::Invalidate] {
            let mut q = Req::pio(false, 0, 0, 1234);
            q.ty = ty;
            let r = d.handle(&q.build(), &mut no_mem()).unwrap();
            assert_eq!(r.state(), IoreqState::IorespReady.raw());
            assert_eq!(r.data, 1234);
        }
    }

    /// Arbitrary requests (any type, size, count, flags, address) are
    /// answered or refused, never a panic, and a refused one changes
    /// nothing a guest can see.
    #[test]
    fn arbitrary_requests_never_panic() {
        let mut d = dm();
        let mut ram = Ram::new(0x1000, 0x2000);
        let mut st = Rng(0x9e37_79b9_7f4a_7c15);
        let pick = |st: &mut Rng, xs: &[u64]| xs[(st.next() % xs.len() as u64) as usize];
        for _ in 0..20_000 {
            let addr = pick(
                &mut st,
                &[
                    0x3f8,
                    0x3fd,
                    0xcf8,
                    0xcfc,
                    0xcfe,
                    0xffff,
                    0xfffe,
                    0x1000,
                    u64::MAX - 3,
                ],
            ) ^ (st.next() % 4);
            let addr = if st.next().is_multiple_of(4) {
                st.next()
            } else {
                addr
            };
            let data = if st.next().is_multiple_of(2) {
                0x1000 + st.next() % 0x2000
            } else {
                st.next()
            };
            let q = Ioreq {
                addr,
                data,
                count: pick(&mut st, &[0, 1, 1, 2, 7, 4096, 4097, u64::from(u32::MAX)]) as u32,
                size: pick(&mut st, &[0, 1, 2, 3, 4, 5, 8, 16, u64::from(u32::MAX)]) as u32,
                vp_eport: 0,
                _pad0: 0,
                bits: (st.next() as u8 & 0xf0) | pick(&mut st, &[1, 1, 1, 2, 0, 3, 15]) as u8,
                r#type: (st.next() % 10) as u8,
            };
            let before = d.stats().clone();
            match d.handle(&q, &mut ram) {
                Ok(r) => assert_eq!(r.state(), IoreqState::IorespReady.raw()),
                Err(IoreqError::Memory { .. }) => {}
                Err(_) => {
                    let after = d.stats();
                    assert_eq!(after.unclaimed_ports, before.unclaimed_ports);
                    assert_eq!(after.unclaimed_mmio, before.unclaimed_mmio);
                }
            }
        }
        assert!(d.stats().requests > 1000, "{:?}", d.stats().requests);
        assert!(d.stats().refused > 1000);
    }

    #[test]
    fn response_keeps_the_request_fields() {
        let mut d = dm();
        let q = Req::pio(true, 0x3fd, 1, 0xdead).build();
        let r = d.handle(&q, &mut no_mem()).unwrap();
        assert_eq!((r.addr, r.size, r.count, r.vp_eport), (0x3fd, 1, 1, 7));
        assert_eq!(r.data, 0x60, "LSR: THRE|TEMT");
        assert_eq!(r.dir(), IOREQ_READ);
        assert_eq!(r.r#type, IoreqType::Pio.raw());
    }
}
