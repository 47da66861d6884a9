//! Finding the ACPI tables: the RSDP from the boot loader (the Multiboot2
//! ACPI tag's copy, or `hvm_start_info.rsdp_paddr`), else by scanning the
//! EBDA's first KiB and 0xE0000–0xFFFFF; then the XSDT (or RSDT), the MADT,
//! the FADT and the `\_S5` of the DSDT (or of an SSDT). Parsing is
//! [`crate::acpi`]'s; this module only reads memory, through
//! [`super::phys`]. A bad RSDP from the boot loader is a failure, not a
//! reason to scan: it is what a hypervisor's builder is tested on.

use super::boot::Boot;
use super::phys;
use crate::acpi::{self, Fadt, Madt, Rsdp};
use crate::bootinfo::{self, Protocol};
use crate::report::Why;
use crate::why;

/// Where the BIOS data area keeps the EBDA's segment.
const BDA_EBDA_SEGMENT: u64 = 0x40e;
/// The BIOS read-only area scanned for the RSDP.
const BIOS_AREA: (u64, usize) = (0xe0000, 0x20000);
/// The most tables the root table may list that are looked at.
const MAX_ROOT_ENTRIES: usize = 64;

/// What the kernels learn from ACPI.
pub struct Platform {
    pub rsdp_address: u64,
    /// Where the RSDP came from.
    pub rsdp_source: &'static str,
    pub rsdp: Rsdp,
    pub madt: Madt,
    pub fadt: Fadt,
    /// SLP_TYPa for S5 and the table it came from ("DSDT" or "SSDT"),
    /// if one of them has a static `\_S5` package.
    pub s5_slp_typ: Option<(u8, &'static str)>,
    /// Why the boot loader's RSDP was not used, if it was not.
    pub boot_info_note: Option<Why>,
}

/// The RSDP the boot loader gave, if any.
fn rsdp_from_boot(boot: &Boot) -> Result<Option<(u64, &'static str)>, Why> {
    match boot.protocol {
        Some(Protocol::Pvh) => {
            let info = phys::bytes(boot.info, bootinfo::HVM_START_INFO_LEN)?;
            Ok(bootinfo::hvm_rsdp(info)?.map(|a| (a, "hvm_start_info.rsdp_paddr")))
        }
        Some(Protocol::Multiboot2) => {
            let size = bootinfo::mb2_total_size(phys::bytes(boot.info, 8)?)?;
            let info = phys::bytes(boot.info, size)?;
            Ok(bootinfo::mb2_rsdp(info)?
                .map(|(off, _)| (boot.info + off as u64, "the Multiboot2 ACPI tag")))
        }
        _ => Ok(None),
    }
}

/// Scans the EBDA's first KiB, then the BIOS area.
fn scan_bios() -> Option<u64> {
    let ebda = phys::bytes(BDA_EBDA_SEGMENT, 2)
        .ok()
        .map(|b| u64::from(u16::from_le_bytes([b[0], b[1]])) << 4)
        .filter(|&a| (0x80000..0xa0000).contains(&a));
    let areas = [ebda.map(|a| (a, 1024)), Some(BIOS_AREA)];
    areas.into_iter().flatten().find_map(|(base, len)| {
        let area = phys::bytes(base, len).ok()?;
        acpi::scan_for_rsdp(area).map(|off| base + off as u64)
    })
}

/// A whole table at `pa`, validated (length, checksum, signature).
fn table(pa: u64, want: Option<&[u8; 4]>) -> Result<&'static [u8], Why> {
    let head = phys::bytes(pa, acpi::SDT_HEADER_LEN)?;
    let len = acpi::table_len(head)?;
    acpi::check_table(phys::bytes(pa, len)?, want)
}

/// Finds and reads the tables.
pub fn discover(boot: &Boot) -> Result<Platform, Why> {
    let (from_boot, note) = match rsdp_from_boot(boot) {
        Ok(r) => (r, None),
        Err(e) => (None, Some(e)),
    };
    let (rsdp_address, rsdp_source) = match from_boot {
        Some(r) => r,
        None => (
            scan_bios().ok_or_else(|| why!("no RSDP from the boot loader or in the BIOS areas"))?,
            "a scan of the BIOS areas",
        ),
    };
    let v1 = phys::bytes(rsdp_address, acpi::RSDP_V1_LEN)?;
    let head = if v1[15] >= 2 {
        // Revision 2+: the length is at offset 20 of the 36-byte form.
        let v2 = phys::bytes(rsdp_address, acpi::RSDP_V2_LEN)?;
        phys::bytes(rsdp_address, acpi::rsdp_len(v2).max(acpi::RSDP_V2_LEN))?
    } else {
        v1
    };
    let rsdp = acpi::parse_rsdp(head).map_err(|e| why!("RSDP at {rsdp_address:#x}: {e}"))?;
    let (root_pa, entry) = rsdp.root();
    let root_sig = if entry == 8 { b"XSDT" } else { b"RSDT" };
    let root =
        table(root_pa, Some(root_sig)).map_err(|e| why!("root table at {root_pa:#x}: {e}"))?;

    let mut madt = None;
    let mut fadt = None;
    let mut s5_in_ssdt = None;
    for pa in acpi::root_entries(root, entry).take(MAX_ROOT_ENTRIES) {
        let Ok(head) = phys::bytes(pa, 4) else {
            continue;
        };
        match head {
            b"APIC" if madt.is_none() => {
                let t = table(pa, Some(b"APIC")).map_err(|e| why!("MADT at {pa:#x}: {e}"))?;
                madt = Some(acpi::parse_madt(t).map_err(|e| why!("MADT at {pa:#x}: {e}"))?);
            }
            b"FACP" if fadt.is_none() => {
                let t = table(pa, Some(b"FACP")).map_err(|e| why!("FADT at {pa:#x}: {e}"))?;
                fadt = Some(acpi::parse_fadt(t).map_err(|e| why!("FADT at {pa:#x}: {e}"))?);
            }
            // Some firmware (SeaBIOS's own tables) declares \_S5 in an SSDT.
            b"SSDT" if s5_in_ssdt.is_none() => {
                if let Ok(t) = table(pa, Some(b"SSDT")) {
                    s5_in_ssdt = acpi::s5_slp_typ(&t[acpi::SDT_HEADER_LEN..]);
                }
            }
            _ => {}
        }
    }
    let madt = madt.ok_or_else(|| why!("the root table lists no MADT"))?;
    let fadt = fadt.ok_or_else(|| why!("the root table lists no FADT"))?;
    let dsdt =
        table(fadt.dsdt, Some(b"DSDT")).map_err(|e| why!("DSDT at {:#x}: {e}", fadt.dsdt))?;
    let s5_slp_typ = acpi::s5_slp_typ(&dsdt[acpi::SDT_HEADER_LEN..])
        .map(|t| (t, "DSDT"))
        .or(s5_in_ssdt.map(|t| (t, "SSDT")));
    Ok(Platform {
        rsdp_address,
        rsdp_source,
        rsdp,
        madt,
        fadt,
        s5_slp_typ,
        boot_info_note: note,
    })
}
