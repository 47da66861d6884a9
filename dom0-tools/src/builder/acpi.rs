//! The ACPI tables of an HVM or PVH guest, as bytes the domain builder
//! copies into guest memory (Oxen boots these guests without firmware, so
//! the builder plays hvmloader's / libxl's `libacpi` part).
//!
//! **Owns**: the layout and contents of RSDP (v2), XSDT, RSDT, MADT, FADT
//! (revision 6), FACS and a minimal DSDT (`\_S5` and one `ACPI0007`
//! processor device per vCPU under `\_SB`), and every checksum.
//! **Trusts**: nothing; [`AcpiConfig`] is checked ([`AcpiError`]).
//!
//! **Follows** Xen 4.17's `tools/libacpi` (`build.c`, `static_tables.c`):
//! LAPIC id = 2 × vCPU id (`LAPIC_ID`), MADT overrides ISA IRQ 0 → GSI 2,
//! SCI on IRQ 9, OEM id `Xen`/`HVM`, creator `HVML`; the PM1 block ports
//! come from `public/hvm/ioreq.h` (`ACPI_PM1A_EVT_BLK_ADDRESS_V0` =
//! 0x1f40, `_V1` = 0xb000, the one libacpi's FADT uses). A PVH guest gets
//! what libxl gives it: a hardware-reduced FADT with no PM blocks, no SCI,
//! no legacy devices, and an IOAPIC only when asked.
//!
//! Differences from libacpi (none guest-visible beyond the tables'
//! contents): no SSDTs (S3/S4, PCI hotplug, laptop/slate), no HPET, WAET,
//! SRAT or SLIT tables; processors are `Device (Cxxx) { _HID "ACPI0007" }`
//! rather than the deprecated `Processor ()` objects, and the MADT carries
//! only the IRQ 0 and IRQ 9 overrides (the guests have no PCI INTx).
//!
//! Written by hand: the `acpi` crate parses tables but does not write them;
//! the tests parse our output with it.

use alloc::vec;
use alloc::vec::Vec;

/// Most vCPUs an HVM guest has (Xen's `HVM_MAX_VCPUS`); their LAPIC ids
/// (2 × id, at most 254) all fit the MADT's xAPIC entry.
pub const MAX_VCPUS: u32 = 128;

/// The local APIC's default base (Intel SDM vol. 3 §10.4.1).
pub const LAPIC_ADDRESS: u32 = 0xfee0_0000;

/// The IOAPIC's default base.
pub const IOAPIC_ADDRESS: u32 = 0xfec0_0000;

/// The IOAPIC id Xen's HVM guests see (hvmloader's `IOAPIC_ID`).
pub const IOAPIC_ID: u8 = 1;

/// The SCI's ISA IRQ (libacpi's FADT `sci_int`).
pub const SCI_IRQ: u8 = 9;

/// The LAPIC id of vCPU `vcpu`, as Xen assigns it (`LAPIC_ID(v)`).
pub const fn lapic_id(vcpu: u32) -> u32 {
    vcpu * 2
}

/// An IOAPIC to list in the MADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApicConfig {
    /// Its APIC id.
    pub id: u8,
    /// Its MMIO base.
    pub address: u32,
    /// The first GSI it serves.
    pub gsi_base: u32,
}

impl Default for IoApicConfig {
    fn default() -> Self {
        IoApicConfig {
            id: IOAPIC_ID,
            address: IOAPIC_ADDRESS,
            gsi_base: 0,
        }
    }
}

/// Where the fixed-hardware ACPI registers are (I/O ports) and the `\_S5`
/// sleep type the PM1 control register takes for "soft off".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmPorts {
    /// PM1a event block (4 bytes: status, enable).
    pub pm1a_evt: u16,
    /// PM1a control block (2 bytes).
    pub pm1a_cnt: u16,
    /// The PM timer (4 bytes), if emulated.
    pub pm_tmr: Option<u16>,
    /// GPE0 block and its length in bytes, if any.
    pub gpe0: Option<(u16, u8)>,
    /// SLP_TYP for S5 (bits 10..13 of PM1_CNT).
    pub s5_slp_typ: u8,
}

impl PmPorts {
    /// `HVM_PARAM_ACPI_IOPORTS_LOCATION` 0: Xen's traditional ports
    /// (`ACPI_*_ADDRESS_V0`), S5 = 7 (`ACPI_SLP_TYP_S5_V0`).
    pub const XEN_V0: PmPorts = PmPorts {
        pm1a_evt: 0x1f40,
        pm1a_cnt: 0x1f44,
        pm_tmr: Some(0x1f48),
        gpe0: Some((0x1f68, 8)),
        s5_slp_typ: 7,
    };
    /// Location 1, the one libacpi's FADT uses (QEMU's PIIX4 PM ports,
    /// `ACPI_*_ADDRESS_V1`), S5 = 0 (`ACPI_SLP_TYP_S5_V1`).
    pub const XEN_V1: PmPorts = PmPorts {
        pm1a_evt: 0xb000,
        pm1a_cnt: 0xb004,
        pm_tmr: Some(0xb008),
        gpe0: Some((0xafe0, 4)),
        s5_slp_typ: 0,
    };
}

/// What kind of platform the guest has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// HVM: 8259 PIC, PIT, RTC/CMOS, fixed ACPI hardware at `pm`, SCI on
    /// IRQ 9.
    Hvm {
        /// The PM register block.
        pm: PmPorts,
        /// An 8042 keyboard controller is there (`IAPC_BOOT_ARCH` bit 1).
        i8042: bool,
        /// The FADT's reset register: an I/O port and the value to write
        /// (QEMU's PIIX: 0xcf9, 6).
        reset: Option<(u16, u8)>,
    },
    /// PVH: hardware-reduced ACPI, no legacy devices.
    Pvh,
}

impl Platform {
    /// HVM as libacpi describes it: ports at location 1, no 8042, reset
    /// through 0xcf9.
    pub const HVM_DEFAULT: Platform = Platform::Hvm {
        pm: PmPorts::XEN_V1,
        i8042: false,
        reset: Some((0xcf9, 0x06)),
    };
}

/// What to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiConfig {
    /// vCPUs, 1..=[`MAX_VCPUS`].
    pub vcpus: u32,
    /// Guest-physical address the tables are copied to (16-byte aligned).
    pub base: u64,
    /// HVM or PVH.
    pub platform: Platform,
    /// The IOAPIC, if the guest has one.
    pub ioapic: Option<IoApicConfig>,
}

impl AcpiConfig {
    /// An HVM guest with Xen's IOAPIC.
    pub fn hvm(vcpus: u32, base: u64) -> Self {
        AcpiConfig {
            vcpus,
            base,
            platform: Platform::HVM_DEFAULT,
            ioapic: Some(IoApicConfig::default()),
        }
    }

    /// A PVH guest (no IOAPIC, as libxl).
    pub fn pvh(vcpus: u32, base: u64) -> Self {
        AcpiConfig {
            vcpus,
            base,
            platform: Platform::Pvh,
            ioapic: None,
        }
    }
}

/// Why the tables could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// No vCPUs, or more than [`MAX_VCPUS`].
    Vcpus(u32),
    /// `base` is not 16-byte aligned, or the tables would wrap.
    Base(u64),
}

/// Offsets of each table from [`AcpiConfig::base`], and the total size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// RSDP (36 bytes). It holds no pointer to itself, so its bytes may
    /// also be copied elsewhere (the BIOS area 0xe0000..0x100000).
    pub rsdp: usize,
    /// XSDT.
    pub xsdt: usize,
    /// RSDT (present only when every table is below 4 GiB).
    pub rsdt: Option<usize>,
    /// FADT.
    pub fadt: usize,
    /// MADT.
    pub madt: usize,
    /// FACS (64-byte aligned), HVM only.
    pub facs: Option<usize>,
    /// DSDT.
    pub dsdt: usize,
    /// Total length of the blob.
    pub size: usize,
}

impl Layout {
    /// The guest-physical address of the table at `offset`.
    pub fn gpa(&self, base: u64, offset: usize) -> u64 {
        base + offset as u64
    }
}

/// The built tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiTables {
    /// Where they go in the guest.
    pub base: u64,
    /// Each table's place.
    pub layout: Layout,
    /// The bytes to copy to `base`.
    pub bytes: Vec<u8>,
}

impl AcpiTables {
    /// The RSDP's guest-physical address (`hvm_start_info.rsdp_paddr`).
    pub fn rsdp_paddr(&self) -> u64 {
        self.base + self.layout.rsdp as u64
    }

    /// The RSDP's 36 bytes (to copy into the BIOS area as well, for an HVM
    /// guest that scans 0xe0000..0x100000 for it).
    pub fn rsdp_bytes(&self) -> &[u8] {
        &self.bytes[self.layout.rsdp..self.layout.rsdp + RSDP_LEN]
    }
}

const HEADER_LEN: usize = 36;
const RSDP_LEN: usize = 36;
const FADT_LEN: usize = 276;
const FACS_LEN: usize = 64;
const MADT_LAPIC_LEN: usize = 8;
const MADT_IOAPIC_LEN: usize = 12;
const MADT_ISO_LEN: usize = 10;

const OEM_ID: &[u8; 6] = b"Xen\0\0\0";
const OEM_TABLE_ID: &[u8; 8] = b"HVM\0\0\0\0\0";
const CREATOR_ID: &[u8; 4] = b"HVML";

/// FADT `Flags` (ACPI 6.5 §5.2.9, table 5.10).
mod fadt_flags {
    pub const WBINVD: u32 = 1 << 0;
    pub const PROC_C1: u32 = 1 << 2;
    pub const PWR_BUTTON: u32 = 1 << 4;
    pub const SLP_BUTTON: u32 = 1 << 5;
    pub const FIX_RTC: u32 = 1 << 6;
    pub const TMR_VAL_EXT: u32 = 1 << 8;
    pub const RESET_REG_SUP: u32 = 1 << 10;
    pub const USE_PLATFORM_CLOCK: u32 = 1 << 15;
    pub const HW_REDUCED_ACPI: u32 = 1 << 20;
}

/// FADT `IAPC_BOOT_ARCH` (ACPI 6.5 §5.2.9.3, table 5.11).
mod boot_arch {
    pub const LEGACY_DEVICES: u16 = 1 << 0;
    pub const I8042: u16 = 1 << 1;
    pub const VGA_NOT_PRESENT: u16 = 1 << 2;
    pub const CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;
}

/// MADT flags and entry types (ACPI 6.5 §5.2.12).
mod madt {
    pub const PCAT_COMPAT: u32 = 1;
    pub const TYPE_LAPIC: u8 = 0;
    pub const TYPE_IOAPIC: u8 = 1;
    pub const TYPE_ISO: u8 = 2;
    pub const LAPIC_ENABLED: u32 = 1;
    /// MPS INTI flags: polarity (bits 0-1) 01 = active high, 11 = active
    /// low; trigger (bits 2-3) 01 = edge, 11 = level; 0 = bus default.
    pub const INTI_ACTIVE_HIGH_LEVEL: u16 = 0b1101;
}

/// Generic Address Structure address space id: system I/O.
const GAS_SYSTEM_IO: u8 = 1;

/// The RTC's century register in CMOS (libacpi's FADT `century`).
const RTC_CENTURY_INDEX: u8 = 0x32;

/// Latencies above 100/1000 µs: C2/C3 not supported.
const C2_UNSUPPORTED: u16 = 0x0fff;
const C3_UNSUPPORTED: u16 = 0x0fff;

fn align_up(v: usize, a: usize) -> usize {
    v.div_ceil(a) * a
}

fn madt_len(cfg: &AcpiConfig) -> usize {
    let mut len = HEADER_LEN + 8 + cfg.vcpus as usize * MADT_LAPIC_LEN;
    if cfg.ioapic.is_some() {
        len += MADT_IOAPIC_LEN;
        if matches!(cfg.platform, Platform::Hvm { .. }) {
            len += 2 * MADT_ISO_LEN;
        }
    }
    len
}

/// Where each table goes, for `cfg`.
pub fn plan_layout(cfg: &AcpiConfig) -> Result<Layout, AcpiError> {
    if cfg.vcpus == 0 || cfg.vcpus > MAX_VCPUS {
        return Err(AcpiError::Vcpus(cfg.vcpus));
    }
    if !cfg.base.is_multiple_of(16) {
        return Err(AcpiError::Base(cfg.base));
    }
    let hvm = matches!(cfg.platform, Platform::Hvm { .. });
    let rsdp = 0;
    let xsdt = align_up(rsdp + RSDP_LEN, 8);
    let xsdt_len = HEADER_LEN + 2 * 8;
    let rsdt_off = align_up(xsdt + xsdt_len, 8);
    let rsdt_len = HEADER_LEN + 2 * 4;
    let fadt = align_up(rsdt_off + rsdt_len, 16);
    let madt = align_up(fadt + FADT_LEN, 16);
    let mut next = madt + madt_len(cfg);
    let facs = if hvm {
        let f = align_up(next, 64);
        next = f + FACS_LEN;
        Some(f)
    } else {
        None
    };
    let dsdt = align_up(next, 16);
    let size = dsdt + dsdt_aml(cfg).len() + HEADER_LEN;
    let end = cfg
        .base
        .checked_add(size as u64)
        .ok_or(AcpiError::Base(cfg.base))?;
    let rsdt = (end <= 1 << 32).then_some(rsdt_off);
    Ok(Layout {
        rsdp,
        xsdt,
        rsdt,
        fadt,
        madt,
        facs,
        dsdt,
        size,
    })
}

/// Builds the tables for `cfg`.
pub fn build(cfg: &AcpiConfig) -> Result<AcpiTables, AcpiError> {
    let l = plan_layout(cfg)?;
    let gpa = |off: usize| cfg.base + off as u64;
    let mut b = vec![0u8; l.size];

    // DSDT.
    let aml = dsdt_aml(cfg);
    let dsdt = table(b"DSDT", 2, &aml);
    b[l.dsdt..l.dsdt + dsdt.len()].copy_from_slice(&dsdt);

    // FACS (ACPI 6.5 §5.2.10): no checksum.
    if let Some(f) = l.facs {
        b[f..f + 4].copy_from_slice(b"FACS");
        put32(&mut b, f + 4, FACS_LEN as u32);
        b[f + 32] = 2; // version
    }

    // MADT.
    let madt = table(b"APIC", 4, &madt_body(cfg));
    b[l.madt..l.madt + madt.len()].copy_from_slice(&madt);

    // FADT.
    let fadt = table(b"FACP", 6, &fadt_body(cfg, l.facs.map(gpa), gpa(l.dsdt)));
    b[l.fadt..l.fadt + fadt.len()].copy_from_slice(&fadt);

    // XSDT and RSDT: FADT, MADT.
    let mut x = Vec::new();
    x.extend_from_slice(&gpa(l.fadt).to_le_bytes());
    x.extend_from_slice(&gpa(l.madt).to_le_bytes());
    let xsdt = table(b"XSDT", 1, &x);
    b[l.xsdt..l.xsdt + xsdt.len()].copy_from_slice(&xsdt);
    if let Some(r) = l.rsdt {
        let mut e = Vec::new();
        e.extend_from_slice(&(gpa(l.fadt) as u32).to_le_bytes());
        e.extend_from_slice(&(gpa(l.madt) as u32).to_le_bytes());
        let rsdt = table(b"RSDT", 1, &e);
        b[r..r + rsdt.len()].copy_from_slice(&rsdt);
    }

    // RSDP (ACPI 6.5 §5.2.5.3).
    let r = l.rsdp;
    b[r..r + 8].copy_from_slice(b"RSD PTR ");
    b[r + 9..r + 15].copy_from_slice(OEM_ID);
    b[r + 15] = 2; // revision: ACPI 2.0+
    put32(&mut b, r + 16, l.rsdt.map_or(0, |o| gpa(o) as u32));
    put32(&mut b, r + 20, RSDP_LEN as u32);
    b[r + 24..r + 32].copy_from_slice(&gpa(l.xsdt).to_le_bytes());
    b[r + 8] = checksum(&b[r..r + 20]);
    b[r + 32] = checksum(&b[r..r + RSDP_LEN]);

    Ok(AcpiTables {
        base: cfg.base,
        layout: l,
        bytes: b,
    })
}

/// The byte that makes `bytes` sum to 0 mod 256 (with that byte counted as
/// 0 in `bytes`).
pub fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |s, &x| s.wrapping_add(x)))
}

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// A table: the standard header (ACPI 6.5 §5.2.6) followed by `body`, with
/// its checksum.
fn table(sig: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let len = HEADER_LEN + body.len();
    let mut t = vec![0u8; len];
    t[0..4].copy_from_slice(sig);
    put32(&mut t, 4, len as u32);
    t[8] = revision;
    t[10..16].copy_from_slice(OEM_ID);
    t[16..24].copy_from_slice(OEM_TABLE_ID);
    // OEM revision 0; creator id, creator revision 0.
    t[28..32].copy_from_slice(CREATOR_ID);
    t[HEADER_LEN..].copy_from_slice(body);
    t[9] = checksum(&t);
    t
}

fn madt_body(cfg: &AcpiConfig) -> Vec<u8> {
    let hvm = matches!(cfg.platform, Platform::Hvm { .. });
    let mut m = Vec::new();
    m.extend_from_slice(&LAPIC_ADDRESS.to_le_bytes());
    let flags = if hvm { madt::PCAT_COMPAT } else { 0 };
    m.extend_from_slice(&flags.to_le_bytes());
    for v in 0..cfg.vcpus {
        // Processor UID = vCPU id (the DSDT's `_UID`); LAPIC id fits u8
        // because vcpus <= MAX_VCPUS.
        m.extend_from_slice(&[madt::TYPE_LAPIC, MADT_LAPIC_LEN as u8, v as u8]);
        m.push(lapic_id(v) as u8);
        m.extend_from_slice(&madt::LAPIC_ENABLED.to_le_bytes());
    }
    if let Some(io) = cfg.ioapic {
        m.extend_from_slice(&[madt::TYPE_IOAPIC, MADT_IOAPIC_LEN as u8, io.id, 0]);
        m.extend_from_slice(&io.address.to_le_bytes());
        m.extend_from_slice(&io.gsi_base.to_le_bytes());
        if hvm {
            // ISA IRQ 0 (PIT) is wired to GSI 2; flags: bus default (edge,
            // high), as libacpi.
            let gsi = |irq: u32| io.gsi_base + irq;
            m.extend_from_slice(&[madt::TYPE_ISO, MADT_ISO_LEN as u8, 0, 0]);
            m.extend_from_slice(&gsi(2).to_le_bytes());
            m.extend_from_slice(&0u16.to_le_bytes());
            // The SCI: level-triggered, active high.
            m.extend_from_slice(&[madt::TYPE_ISO, MADT_ISO_LEN as u8, 0, SCI_IRQ]);
            m.extend_from_slice(&gsi(u32::from(SCI_IRQ)).to_le_bytes());
            m.extend_from_slice(&madt::INTI_ACTIVE_HIGH_LEVEL.to_le_bytes());
        }
    }
    m
}

/// A Generic Address Structure for `len` bytes of I/O ports at `port`.
fn gas_io(b: &mut [u8], off: usize, port: u16, len: u8, access_size: u8) {
    b[off] = GAS_SYSTEM_IO;
    b[off + 1] = len.saturating_mul(8);
    b[off + 2] = 0;
    b[off + 3] = access_size;
    put64(b, off + 4, u64::from(port));
}

/// The FADT after its header (offsets below are from the table's start,
/// as ACPI 6.5 table 5.9 lists them).
fn fadt_body(cfg: &AcpiConfig, facs: Option<u64>, dsdt: u64) -> Vec<u8> {
    let mut t = vec![0u8; FADT_LEN];
    if let Some(f) = facs {
        put32(&mut t, 36, f as u32); // FIRMWARE_CTRL
        put64(&mut t, 132, f); // X_FIRMWARE_CTRL
    }
    put32(&mut t, 40, dsdt as u32); // DSDT
    put64(&mut t, 140, dsdt); // X_DSDT
    match cfg.platform {
        Platform::Hvm { pm, i8042, reset } => {
            put16(&mut t, 46, u16::from(SCI_IRQ));
            // SMI_CMD = 0: the platform is always in ACPI mode.
            put32(&mut t, 56, u32::from(pm.pm1a_evt));
            put32(&mut t, 64, u32::from(pm.pm1a_cnt));
            t[88] = 4; // PM1_EVT_LEN
            t[89] = 2; // PM1_CNT_LEN
            gas_io(&mut t, 148, pm.pm1a_evt, 4, 0); // X_PM1a_EVT_BLK
            gas_io(&mut t, 172, pm.pm1a_cnt, 2, 0); // X_PM1a_CNT_BLK
            let mut flags = fadt_flags::WBINVD
                | fadt_flags::PROC_C1
                | fadt_flags::PWR_BUTTON
                | fadt_flags::SLP_BUTTON
                | fadt_flags::FIX_RTC;
            if let Some(tmr) = pm.pm_tmr {
                put32(&mut t, 76, u32::from(tmr));
                t[91] = 4; // PM_TMR_LEN
                gas_io(&mut t, 208, tmr, 4, 0); // X_PM_TMR_BLK
                flags |= fadt_flags::TMR_VAL_EXT | fadt_flags::USE_PLATFORM_CLOCK;
            }
            if let Some((gpe, len)) = pm.gpe0 {
                put32(&mut t, 80, u32::from(gpe));
                t[92] = len; // GPE0_BLK_LEN
                gas_io(&mut t, 220, gpe, len, 0); // X_GPE0_BLK
            }
            put16(&mut t, 96, C2_UNSUPPORTED);
            put16(&mut t, 98, C3_UNSUPPORTED);
            t[108] = RTC_CENTURY_INDEX;
            let mut arch = boot_arch::LEGACY_DEVICES | boot_arch::VGA_NOT_PRESENT;
            if i8042 {
                arch |= boot_arch::I8042;
            }
            put16(&mut t, 109, arch);
            if let Some((port, value)) = reset {
                gas_io(&mut t, 116, port, 1, 1); // RESET_REG, byte access
                t[128] = value;
                flags |= fadt_flags::RESET_REG_SUP;
            }
            put32(&mut t, 112, flags);
        }
        Platform::Pvh => {
            put16(
                &mut t,
                109,
                boot_arch::VGA_NOT_PRESENT | boot_arch::CMOS_RTC_NOT_PRESENT,
            );
            put32(
                &mut t,
                112,
                fadt_flags::HW_REDUCED_ACPI | fadt_flags::PWR_BUTTON | fadt_flags::SLP_BUTTON,
            );
        }
    }
    // FADT minor version (ACPI 6.0: 0).
    t[131] = 0;
    t.split_off(HEADER_LEN)
}

// ---------------------------------------------------------------------------
// AML (ACPI 6.5 §20.2)
// ---------------------------------------------------------------------------

const AML_ZERO: u8 = 0x00;
const AML_ONE: u8 = 0x01;
const AML_BYTE_PREFIX: u8 = 0x0a;
const AML_WORD_PREFIX: u8 = 0x0b;
const AML_DWORD_PREFIX: u8 = 0x0c;
const AML_STRING_PREFIX: u8 = 0x0d;
const AML_NAME_OP: u8 = 0x08;
const AML_SCOPE_OP: u8 = 0x10;
const AML_PACKAGE_OP: u8 = 0x12;
const AML_EXT_OP_PREFIX: u8 = 0x5b;
const AML_DEVICE_OP: u8 = 0x82;
const AML_ROOT_CHAR: u8 = b'\\';

/// `PkgLength` for a body of `body` bytes: the encoded length counts
/// itself (§20.2.4).
fn aml_pkg(out: &mut Vec<u8>, body: &[u8]) {
    let mut n = 1;
    while n < 4 {
        let total = body.len() + n;
        let fits = match n {
            1 => total < 0x40,
            2 => total < 1 << 12,
            _ => total < 1 << 20,
        };
        if fits {
            break;
        }
        n += 1;
    }
    let total = body.len() + n;
    if n == 1 {
        out.push(total as u8);
    } else {
        out.push((((n - 1) as u8) << 6) | (total & 0xf) as u8);
        for i in 0..n - 1 {
            out.push((total >> (4 + 8 * i)) as u8);
        }
    }
    out.extend_from_slice(body);
}

fn aml_int(out: &mut Vec<u8>, v: u32) {
    match v {
        0 => out.push(AML_ZERO),
        1 => out.push(AML_ONE),
        2..=0xff => out.extend_from_slice(&[AML_BYTE_PREFIX, v as u8]),
        0x100..=0xffff => {
            out.push(AML_WORD_PREFIX);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        _ => {
            out.push(AML_DWORD_PREFIX);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

fn hex_digit(v: u32) -> u8 {
    b"0123456789ABCDEF"[(v & 0xf) as usize]
}

/// The DSDT's AML: `Name (\_S5, Package (4) { typ, typ, 0, 0 })` when the
/// platform has a PM1 control block, and `Scope (\_SB) { Device (Cnnn) {
/// Name (_HID, "ACPI0007") Name (_UID, n) } ... }` with `n` the MADT's
/// processor UID.
fn dsdt_aml(cfg: &AcpiConfig) -> Vec<u8> {
    let mut aml = Vec::new();
    if let Platform::Hvm { pm, .. } = cfg.platform {
        aml.push(AML_NAME_OP);
        aml.push(AML_ROOT_CHAR);
        aml.extend_from_slice(b"_S5_");
        aml.push(AML_PACKAGE_OP);
        let mut pkg = vec![4u8]; // NumElements
        aml_int(&mut pkg, u32::from(pm.s5_slp_typ));
        aml_int(&mut pkg, u32::from(pm.s5_slp_typ));
        aml_int(&mut pkg, 0);
        aml_int(&mut pkg, 0);
        aml_pkg(&mut aml, &pkg);
    }
    let mut sb = Vec::new();
    sb.push(AML_ROOT_CHAR);
    sb.extend_from_slice(b"_SB_");
    for v in 0..cfg.vcpus {
        let mut dev = Vec::new();
        dev.extend_from_slice(&[b'C', hex_digit(v >> 8), hex_digit(v >> 4), hex_digit(v)]);
        dev.push(AML_NAME_OP);
        dev.extend_from_slice(b"_HID");
        dev.push(AML_STRING_PREFIX);
        dev.extend_from_slice(b"ACPI0007\0");
        dev.push(AML_NAME_OP);
        dev.extend_from_slice(b"_UID");
        aml_int(&mut dev, v);
        sb.extend_from_slice(&[AML_EXT_OP_PREFIX, AML_DEVICE_OP]);
        aml_pkg(&mut sb, &dev);
    }
    aml.push(AML_SCOPE_OP);
    aml_pkg(&mut aml, &sb);
    aml
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::acpi::fadt::Fadt;
    use ::acpi::madt::{Madt, MadtEntry};
    use ::acpi::{AcpiHandler, AcpiTable, AcpiTables as Parsed, PhysicalMapping};
    use core::ptr::NonNull;
    use std::format;
    use std::string::String;

    /// Guest memory for the `acpi` crate: the blob, leaked so that the
    /// pointers it hands out stay valid, at its guest-physical base.
    #[derive(Clone)]
    struct GuestMem {
        base: usize,
        bytes: &'static [u8],
    }

    impl AcpiHandler for GuestMem {
        unsafe fn map_physical_region<T>(
            &self,
            pa: usize,
            size: usize,
        ) -> PhysicalMapping<Self, T> {
            let off = pa.checked_sub(self.base).expect("below the tables");
            assert!(
                off + size <= self.bytes.len(),
                "past the tables: {pa:#x}+{size}"
            );
            let ptr = NonNull::from(&self.bytes[off]).cast::<T>();
            // SAFETY: `ptr` points at `size` bytes of a leaked, never
            // written buffer (checked above); every ACPI table type in the
            // `acpi` crate is `repr(C, packed)`, so alignment 1 is enough.
            unsafe { PhysicalMapping::new(pa, ptr, size, size, self.clone()) }
        }

        fn unmap_physical_region<T>(_: &PhysicalMapping<Self, T>) {}
    }

    fn parse(t: &AcpiTables) -> Parsed<GuestMem> {
        let mem = GuestMem {
            base: t.base as usize,
            bytes: std::boxed::Box::leak(t.bytes.clone().into_boxed_slice()),
        };
        // SAFETY: the handler maps only inside the leaked copy of the
        // tables (it asserts so); the RSDP is at `rsdp_paddr`.
        unsafe { Parsed::from_rsdp(mem, t.rsdp_paddr() as usize) }.expect("tables parse")
    }

    const BASE: u64 = 0xfc00_0000;

    struct MadtSummary {
        lapics: Vec<(u8, u8, u32)>,
        ioapics: Vec<(u8, u32, u32)>,
        isos: Vec<(u8, u32, u16)>,
        pcat: bool,
    }

    fn madt_summary(p: &Parsed<GuestMem>) -> MadtSummary {
        let madt = p.find_table::<Madt>().expect("MADT");
        let mut s = MadtSummary {
            lapics: Vec::new(),
            ioapics: Vec::new(),
            isos: Vec::new(),
            pcat: madt.get().supports_8259(),
        };
        for e in madt.get().entries() {
            match e {
                MadtEntry::LocalApic(l) => s.lapics.push((l.processor_id, l.apic_id, { l.flags })),
                MadtEntry::IoApic(io) => s.ioapics.push((io.io_apic_id, { io.io_apic_address }, {
                    io.global_system_interrupt_base
                })),
                MadtEntry::InterruptSourceOverride(o) => {
                    assert_eq!(o.bus, 0);
                    s.isos
                        .push((o.irq, { o.global_system_interrupt }, { o.flags }))
                }
                other => panic!("unexpected MADT entry {other:?}"),
            }
        }
        s
    }

    #[test]
    fn acpi_hvm_tables_parse() {
        let t = build(&AcpiConfig::hvm(4, BASE)).unwrap();
        let p = parse(&t);
        assert_eq!(t.rsdp_bytes()[15], 2, "RSDP revision");

        let m = madt_summary(&p);
        assert_eq!(
            m.lapics,
            [(0, 0, 1), (1, 2, 1), (2, 4, 1), (3, 6, 1)],
            "processor uid, LAPIC id 2*vcpu, enabled"
        );
        assert_eq!(m.ioapics, [(1, 0xfec0_0000, 0)]);
        assert_eq!(m.isos, [(0, 2, 0), (9, 9, 0b1101)]);
        assert!(m.pcat);

        let fadt = p.find_table::<Fadt>().unwrap();
        assert_eq!({ fadt.sci_interrupt }, 9);
        assert_eq!({ fadt.smi_cmd_port }, 0);
        assert_eq!(fadt.pm1a_event_block().unwrap().address, 0xb000);
        assert_eq!(fadt.pm1a_control_block().unwrap().address, 0xb004);
        assert_eq!(fadt.pm_timer_block().unwrap().unwrap().address, 0xb008);
        assert_eq!(fadt.gpe0_block().unwrap().unwrap().address, 0xafe0);
        let l = t.layout;
        assert_eq!(fadt.dsdt_address().unwrap() as u64, BASE + l.dsdt as u64);
        assert_eq!(
            fadt.facs_address().unwrap() as u64,
            BASE + l.facs.unwrap() as u64
        );
        assert!(!{ fadt.flags }.system_is_hw_reduced_acpi());
        assert!({ fadt.iapc_boot_arch }.legacy_devices_are_accessible());
        assert!(!{ fadt.iapc_boot_arch }.motherboard_implements_8042());
        assert!({ fadt.iapc_boot_arch }.dont_probe_vga());
        assert!({ fadt.flags }.supports_system_reset_via_fadt());
        assert!({ fadt.flags }.pm_timer_is_32_bit());
        let reset = fadt.reset_register().unwrap();
        assert_eq!(reset.address, 0xcf9);
        assert_eq!({ fadt.reset_value }, 6);
        assert_eq!({ fadt.century }, 0x32);
        assert_eq!(fadt.header().revision, 6);
        assert_eq!({ fadt.header().length }, FADT_LEN as u32);

        let dsdt = p.dsdt().unwrap();
        // The AML starts after the DSDT's header.
        assert_eq!(dsdt.address as u64, BASE + (l.dsdt + HEADER_LEN) as u64);
        assert_eq!(dsdt.length as usize + HEADER_LEN, l.size - l.dsdt);

        // FACS: signature, length, 64-byte aligned.
        let f = l.facs.unwrap();
        assert_eq!(&t.bytes[f..f + 4], b"FACS");
        assert_eq!((BASE + f as u64) % 64, 0);
        // Both the RSDT and XSDT list FADT and MADT.
        assert!(l.rsdt.is_some());
        assert_eq!(p.headers().count(), 2);
    }

    #[test]
    fn acpi_pvh_is_hardware_reduced() {
        let t = build(&AcpiConfig::pvh(2, BASE)).unwrap();
        let p = parse(&t);
        let m = madt_summary(&p);
        assert_eq!(m.lapics, [(0, 0, 1), (1, 2, 1)]);
        assert!(m.ioapics.is_empty() && m.isos.is_empty() && !m.pcat);
        let fadt = p.find_table::<Fadt>().unwrap();
        assert!({ fadt.flags }.system_is_hw_reduced_acpi());
        assert!(!{ fadt.iapc_boot_arch }.legacy_devices_are_accessible());
        assert_eq!({ fadt.sci_interrupt }, 0);
        assert_eq!(fadt.pm1a_event_block().unwrap().address, 0);
        assert!(fadt.pm_timer_block().unwrap().is_none());
        assert!(!{ fadt.flags }.supports_system_reset_via_fadt());
        assert!(t.layout.facs.is_none());
        assert!(fadt.facs_address().is_err(), "no FACS");
        assert!(!dsdt_of(&t).windows(4).any(|w| w == b"_S5_"));

        // An IOAPIC on request: listed, without ISA overrides.
        let mut cfg = AcpiConfig::pvh(2, BASE);
        cfg.ioapic = Some(IoApicConfig::default());
        let m = madt_summary(&parse(&build(&cfg).unwrap()));
        assert_eq!(m.ioapics, [(1, 0xfec0_0000, 0)]);
        assert!(m.isos.is_empty());
    }

    fn dsdt_of(t: &AcpiTables) -> &[u8] {
        &t.bytes[t.layout.dsdt..]
    }

    fn table_at(t: &AcpiTables, off: usize) -> &[u8] {
        let len = u32::from_le_bytes(t.bytes[off + 4..off + 8].try_into().unwrap()) as usize;
        &t.bytes[off..off + len]
    }

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |s, &x| s.wrapping_add(x))
    }

    #[test]
    fn acpi_checksums() {
        for cfg in [AcpiConfig::hvm(3, BASE), AcpiConfig::pvh(1, 0x10_0000)] {
            let t = build(&cfg).unwrap();
            let l = t.layout;
            let r = t.rsdp_bytes();
            assert_eq!(&r[..8], b"RSD PTR ");
            assert_eq!(sum(&r[..20]), 0, "RSDP v1 checksum");
            assert_eq!(sum(r), 0, "RSDP extended checksum");
            for off in [l.xsdt, l.rsdt.unwrap(), l.fadt, l.madt, l.dsdt] {
                let tb = table_at(&t, off);
                assert_eq!(sum(tb), 0, "{}", String::from_utf8_lossy(&tb[..4]));
            }
            assert_eq!(l.dsdt + table_at(&t, l.dsdt).len(), l.size);
            assert_eq!(t.bytes.len(), l.size);
            assert_eq!(plan_layout(&cfg).unwrap(), l);
        }
        assert_eq!(checksum(&[1, 2, 3]), 250);
        assert_eq!(checksum(&[]), 0);
    }

    #[test]
    fn acpi_above_4g_has_no_rsdt() {
        let t = build(&AcpiConfig::hvm(2, 0x1_0000_0000)).unwrap();
        assert!(t.layout.rsdt.is_none());
        assert_eq!(
            u32::from_le_bytes(t.rsdp_bytes()[16..20].try_into().unwrap()),
            0
        );
        let p = parse(&t);
        assert_eq!(madt_summary(&p).lapics.len(), 2);
        // Straddling 4 GiB: still no RSDT.
        let t = build(&AcpiConfig::hvm(2, 0xffff_ff00)).unwrap();
        assert!(t.layout.rsdt.is_none());
    }

    #[test]
    fn acpi_config_errors() {
        assert_eq!(build(&AcpiConfig::hvm(0, BASE)), Err(AcpiError::Vcpus(0)));
        assert_eq!(
            build(&AcpiConfig::pvh(129, BASE)),
            Err(AcpiError::Vcpus(129))
        );
        assert_eq!(
            build(&AcpiConfig::hvm(1, BASE + 8)),
            Err(AcpiError::Base(BASE + 8))
        );
        assert_eq!(
            build(&AcpiConfig::hvm(1, u64::MAX - 15)),
            Err(AcpiError::Base(u64::MAX - 15))
        );
    }

    #[test]
    fn acpi_all_vcpu_counts() {
        for n in 1..=MAX_VCPUS {
            for cfg in [AcpiConfig::hvm(n, BASE), AcpiConfig::pvh(n, 0x000f_0000)] {
                let t = build(&cfg).unwrap();
                let p = parse(&t);
                let m = madt_summary(&p);
                assert_eq!(m.lapics.len(), n as usize);
                for (i, &(uid, id, flags)) in m.lapics.iter().enumerate() {
                    assert_eq!(
                        (u32::from(uid), u32::from(id), flags),
                        (i as u32, lapic_id(i as u32), 1)
                    );
                }
                let dsdt = dsdt_of(&t);
                let hids = dsdt.windows(8).filter(|w| w == b"ACPI0007").count();
                assert_eq!(hids, n as usize);
                let last = format!("C{:03X}", n - 1);
                assert!(dsdt.windows(4).any(|w| w == last.as_bytes()));
                // The DSDT's AML fills the table exactly.
                let aml = &dsdt[HEADER_LEN..table_at(&t, t.layout.dsdt).len()];
                assert_eq!(aml_walk(aml), n as usize, "{n} vCPUs");
            }
        }
    }

    /// Reads a PkgLength at `a[0..]`: (length incl. itself, bytes of the
    /// encoding).
    fn pkg_len(a: &[u8]) -> (usize, usize) {
        let n = usize::from(a[0] >> 6);
        if n == 0 {
            return (usize::from(a[0] & 0x3f), 1);
        }
        let mut v = usize::from(a[0] & 0xf);
        for i in 0..n {
            v |= usize::from(a[1 + i]) << (4 + 8 * i);
        }
        (v, n + 1)
    }

    /// Walks the DSDT's top level (the shape `dsdt_aml` writes) checking
    /// every PkgLength; returns the number of devices in `\_SB`.
    fn aml_walk(aml: &[u8]) -> usize {
        let mut i = 0;
        let mut devices = 0;
        while i < aml.len() {
            match aml[i] {
                AML_NAME_OP => {
                    assert_eq!(&aml[i + 1..i + 6], b"\\_S5_");
                    assert_eq!(aml[i + 6], AML_PACKAGE_OP);
                    let (len, _) = pkg_len(&aml[i + 7..]);
                    i += 7 + len;
                }
                AML_SCOPE_OP => {
                    let (len, enc) = pkg_len(&aml[i + 1..]);
                    let body = &aml[i + 1 + enc..i + 1 + len];
                    assert_eq!(&body[..5], b"\\_SB_");
                    let mut j = 5;
                    while j < body.len() {
                        assert_eq!(&body[j..j + 2], &[AML_EXT_OP_PREFIX, AML_DEVICE_OP]);
                        let (dl, _) = pkg_len(&body[j + 2..]);
                        j += 2 + dl;
                        devices += 1;
                    }
                    assert_eq!(j, body.len(), "devices fill the scope");
                    i += 1 + len;
                }
                op => panic!("unexpected AML op {op:#x} at {i}"),
            }
        }
        assert_eq!(i, aml.len());
        devices
    }

    #[test]
    fn acpi_pkg_length_encoding() {
        for body_len in [0usize, 1, 62, 63, 64, 4000, 4094, 4095, 5000, 1 << 20] {
            let mut out = Vec::new();
            aml_pkg(&mut out, &vec![0u8; body_len]);
            let (len, enc) = pkg_len(&out);
            assert_eq!(len, out.len(), "body {body_len}");
            assert_eq!(len - enc, body_len);
        }
    }

    fn tool(name: &str) -> bool {
        std::process::Command::new(name)
            .arg("-v")
            .output()
            .map(|_| true)
            .unwrap_or(false)
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("oxen-acpi-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// `iasl -d` disassembles the DSDT; the listing compiles back.
    #[test]
    fn acpi_dsdt_iasl_roundtrip() {
        if !tool("iasl") {
            std::eprintln!("skipped: iasl not installed (apt-get install acpica-tools)");
            return;
        }
        let dir = scratch("iasl");
        let t = build(&AcpiConfig::hvm(3, BASE)).unwrap();
        let aml = dir.join("dsdt.aml");
        std::fs::write(&aml, table_at(&t, t.layout.dsdt)).unwrap();
        let out = std::process::Command::new("iasl")
            .arg("-d")
            .arg(&aml)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "iasl -d: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dsl = std::fs::read_to_string(dir.join("dsdt.dsl")).unwrap();
        assert!(dsl.contains("Name (\\_S5, Package (0x04)"), "{dsl}");
        assert_eq!(dsl.matches("\"ACPI0007\"").count(), 3, "{dsl}");
        assert!(dsl.contains("Device (C002)"), "{dsl}");
        // Compile the listing again: no errors.
        let out = std::process::Command::new("iasl")
            .args(["-p", "recompiled"])
            .arg(dir.join("dsdt.dsl"))
            .current_dir(&dir)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "iasl: {log}");
        assert!(log.contains("0 Errors"), "{log}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// ACPICA's interpreter (`acpiexec`) loads all tables and evaluates
    /// `\_S5` and a processor's `_UID`.
    #[test]
    fn acpi_acpiexec_evaluates() {
        if !tool("acpiexec") {
            std::eprintln!("skipped: acpiexec not installed (apt-get install acpica-tools)");
            return;
        }
        let dir = scratch("acpiexec");
        let mut cfg = AcpiConfig::hvm(2, BASE);
        cfg.platform = Platform::Hvm {
            pm: PmPorts::XEN_V0,
            i8042: true,
            reset: None,
        };
        let t = build(&cfg).unwrap();
        let dsdt = dir.join("dsdt.aml");
        std::fs::write(&dsdt, table_at(&t, t.layout.dsdt)).unwrap();
        let out = std::process::Command::new("acpiexec")
            .arg("-b")
            .arg("evaluate \\_S5; evaluate \\_SB.C001._UID; evaluate \\_SB.C000._HID")
            .arg(&dsdt)
            .current_dir(&dir)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "acpiexec: {log}");
        assert!(!log.contains("AE_"), "{log}");
        assert!(log.contains("[Package] Contains 4 Elements"), "{log}");
        assert!(
            log.contains("[Integer] = 0000000000000007"),
            "S5 type V0: {log}"
        );
        assert!(
            log.contains("[Integer] = 0000000000000001"),
            "C001._UID: {log}"
        );
        assert!(log.contains("\"ACPI0007\""), "{log}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
