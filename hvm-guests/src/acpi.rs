//! ACPI tables as byte slices: the RSDP, the RSDT/XSDT, the MADT, the FADT
//! and the `\_S5` package in the DSDT (ACPI 6.5 §5.2 and §7.4.2).
//!
//! Trusts nothing it reads: every length, offset and checksum is checked,
//! and a bad table is an `Err` with a reason (a FAILED line), never a
//! panic or a loop. Written by hand rather than with the `acpi` crate
//! because that crate's MADT walk trusts entry lengths (a zero length
//! loops forever, an overlong one underflows), and a kernel whose job is
//! to judge a hypervisor's tables must survive bad ones; it needs only
//! three tables, and all of this is plain slice code tested on the host.

use crate::report::Why;
use crate::why;

/// The RSDP's signature (§5.2.5.3).
pub const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// Size of an ACPI 1.0 RSDP.
pub const RSDP_V1_LEN: usize = 20;
/// Size of an ACPI 2.0+ RSDP.
pub const RSDP_V2_LEN: usize = 36;
/// Size of a system description table's header (§5.2.6).
pub const SDT_HEADER_LEN: usize = 36;
/// The largest table this kernel believes in.
pub const MAX_TABLE_LEN: usize = 1 << 20;

/// The CPUs and IOAPICs a MADT may list that this kernel keeps.
pub const MAX_CPUS: usize = 64;
pub const MAX_IOAPICS: usize = 8;

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Whether the bytes sum to zero (mod 256), as every ACPI checksum wants.
pub fn checksum_ok(b: &[u8]) -> bool {
    b.iter().fold(0u8, |s, &x| s.wrapping_add(x)) == 0
}

/// A validated RSDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rsdp {
    pub revision: u8,
    pub rsdt: u32,
    /// The XSDT's address (revision 2 and later, when not zero).
    pub xsdt: Option<u64>,
}

impl Rsdp {
    /// The root table to use, and its entry size: the XSDT when there is
    /// one, else the RSDT.
    pub fn root(&self) -> (u64, usize) {
        match self.xsdt {
            Some(x) => (x, 8),
            None => (u64::from(self.rsdt), 4),
        }
    }
}

/// How many bytes an RSDP whose first [`RSDP_V2_LEN`] (or at least
/// [`RSDP_V1_LEN`]) bytes are `head` occupies: its `length` field for
/// revision 2+, else 20. At most 4 KiB.
pub fn rsdp_len(head: &[u8]) -> usize {
    match (head.get(15), u32_at(head, 20)) {
        (Some(&rev), Some(len)) if rev >= 2 => (len as usize).clamp(RSDP_V1_LEN, 4096),
        _ => RSDP_V1_LEN,
    }
}

/// Validates an RSDP (`b` holds [`rsdp_len`] bytes of it).
pub fn parse_rsdp(b: &[u8]) -> Result<Rsdp, Why> {
    let v1 = b
        .get(..RSDP_V1_LEN)
        .ok_or_else(|| why!("RSDP shorter than 20 bytes"))?;
    if &v1[..8] != RSDP_SIGNATURE {
        return Err(why!("no \"RSD PTR \" signature"));
    }
    if !checksum_ok(v1) {
        return Err(why!("RSDP checksum is wrong"));
    }
    let revision = v1[15];
    let rsdt = u32_at(v1, 16).unwrap_or(0);
    let mut xsdt = None;
    if revision >= 2 {
        let len = u32_at(b, 20).ok_or_else(|| why!("RSDP v2 cut short"))? as usize;
        if len < RSDP_V2_LEN {
            return Err(why!("RSDP revision {revision} with length {len}"));
        }
        let all = b
            .get(..len)
            .ok_or_else(|| why!("RSDP length {len} past what was read"))?;
        if !checksum_ok(all) {
            return Err(why!("RSDP extended checksum is wrong"));
        }
        xsdt = u64_at(all, 24).filter(|&x| x != 0);
    }
    if rsdt == 0 && xsdt.is_none() {
        return Err(why!("RSDP points at no RSDT and no XSDT"));
    }
    Ok(Rsdp {
        revision,
        rsdt,
        xsdt,
    })
}

/// The offset of the first valid ACPI 1.0 RSDP (signature and checksum) on
/// a 16-byte boundary of `area` (§5.2.5.1: the EBDA's first KiB, then
/// 0xE0000–0xFFFFF).
pub fn scan_for_rsdp(area: &[u8]) -> Option<usize> {
    (0..area.len().saturating_sub(RSDP_V1_LEN - 1))
        .step_by(16)
        .find(|&off| {
            let b = &area[off..off + RSDP_V1_LEN];
            &b[..8] == RSDP_SIGNATURE && checksum_ok(b)
        })
}

/// The `length` of a table whose header is `head` (≥ 8 bytes), if sane.
pub fn table_len(head: &[u8]) -> Result<usize, Why> {
    let len = u32_at(head, 4).ok_or_else(|| why!("table header cut short"))? as usize;
    if !(SDT_HEADER_LEN..=MAX_TABLE_LEN).contains(&len) {
        return Err(why!(
            "table {} has length {len}",
            sig_str(head.get(..4).unwrap_or(b"????"))
        ));
    }
    Ok(len)
}

/// A signature for messages.
pub fn sig_str(sig: &[u8]) -> &str {
    match core::str::from_utf8(sig) {
        Ok(s) if sig.iter().all(|c| c.is_ascii_graphic()) => s,
        _ => "????",
    }
}

/// Validates a whole table (`b` is exactly `length` bytes): length and
/// checksum, and its signature if `want` is given.
pub fn check_table<'a>(b: &'a [u8], want: Option<&[u8; 4]>) -> Result<&'a [u8], Why> {
    let len = table_len(b)?;
    let t = b
        .get(..len)
        .ok_or_else(|| why!("table shorter than its length {len}"))?;
    let sig = &t[..4];
    if let Some(w) = want {
        if sig != w {
            return Err(why!("expected {}, found {}", sig_str(w), sig_str(sig)));
        }
    }
    if !checksum_ok(t) {
        return Err(why!("{} checksum is wrong", sig_str(sig)));
    }
    Ok(t)
}

/// The table addresses in a validated RSDT (`entry` 4) or XSDT (8).
pub fn root_entries(root: &[u8], entry: usize) -> impl Iterator<Item = u64> + '_ {
    root.get(SDT_HEADER_LEN..)
        .unwrap_or(&[])
        .chunks_exact(entry)
        .map(move |c| {
            if entry == 8 {
                u64_at(c, 0).unwrap_or(0)
            } else {
                u64::from(u32_at(c, 0).unwrap_or(0))
            }
        })
}

/// An IOAPIC the MADT lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoApic {
    pub id: u8,
    pub address: u32,
    pub gsi_base: u32,
}

/// What this kernel needs from the MADT (§5.2.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Madt {
    /// The local APIC's physical address (the override entry's, if any).
    pub lapic_address: u64,
    /// APIC IDs of the CPUs marked enabled, in table order.
    cpus: [u32; MAX_CPUS],
    ncpus: usize,
    /// Enabled CPUs past [`MAX_CPUS`].
    pub cpus_dropped: usize,
    /// CPUs listed but neither enabled nor online-capable, or only
    /// online-capable (they may not be started).
    pub cpus_disabled: usize,
    ioapics: [IoApic; MAX_IOAPICS],
    nioapics: usize,
}

impl Madt {
    pub fn cpus(&self) -> &[u32] {
        &self.cpus[..self.ncpus]
    }

    pub fn ioapics(&self) -> &[IoApic] {
        &self.ioapics[..self.nioapics]
    }
}

/// MADT entry types used here.
const MADT_LOCAL_APIC: u8 = 0;
const MADT_IO_APIC: u8 = 1;
const MADT_LAPIC_ADDRESS_OVERRIDE: u8 = 5;
const MADT_LOCAL_X2APIC: u8 = 9;
/// Local APIC flags: Enabled (bit 0).
const LAPIC_ENABLED: u32 = 1;
/// Where the MADT's entries start (header, local APIC address, flags).
const MADT_ENTRIES: usize = 44;

/// Parses a validated MADT.
pub fn parse_madt(t: &[u8]) -> Result<Madt, Why> {
    let lapic = u32_at(t, 36).ok_or_else(|| why!("MADT shorter than 44 bytes"))?;
    if t.len() < MADT_ENTRIES {
        return Err(why!("MADT shorter than 44 bytes"));
    }
    let mut m = Madt {
        lapic_address: u64::from(lapic),
        cpus: [0; MAX_CPUS],
        ncpus: 0,
        cpus_dropped: 0,
        cpus_disabled: 0,
        ioapics: [IoApic::default(); MAX_IOAPICS],
        nioapics: 0,
    };
    let mut off = MADT_ENTRIES;
    while off < t.len() {
        let (ty, len) = match (t.get(off), t.get(off + 1)) {
            (Some(&ty), Some(&len)) => (ty, usize::from(len)),
            _ => return Err(why!("MADT entry header cut short at offset {off}")),
        };
        if len < 2 || off + len > t.len() {
            return Err(why!(
                "MADT entry type {ty} at offset {off} has length {len} (table {})",
                t.len()
            ));
        }
        let e = &t[off..off + len];
        let short = || why!("MADT entry type {ty} at offset {off} too short ({len})");
        match ty {
            MADT_LOCAL_APIC | MADT_LOCAL_X2APIC => {
                let (id, flags) = if ty == MADT_LOCAL_APIC {
                    (
                        u32::from(*e.get(3).ok_or_else(short)?),
                        u32_at(e, 4).ok_or_else(short)?,
                    )
                } else {
                    (
                        u32_at(e, 4).ok_or_else(short)?,
                        u32_at(e, 8).ok_or_else(short)?,
                    )
                };
                if flags & LAPIC_ENABLED == 0 {
                    m.cpus_disabled += 1;
                } else if m.cpus().contains(&id) {
                    return Err(why!("MADT lists APIC ID {id} twice"));
                } else if m.ncpus < MAX_CPUS {
                    m.cpus[m.ncpus] = id;
                    m.ncpus += 1;
                } else {
                    m.cpus_dropped += 1;
                }
            }
            MADT_IO_APIC => {
                let a = IoApic {
                    id: *e.get(2).ok_or_else(short)?,
                    address: u32_at(e, 4).ok_or_else(short)?,
                    gsi_base: u32_at(e, 8).ok_or_else(short)?,
                };
                if m.nioapics < MAX_IOAPICS {
                    m.ioapics[m.nioapics] = a;
                    m.nioapics += 1;
                }
            }
            MADT_LAPIC_ADDRESS_OVERRIDE => {
                m.lapic_address = u64_at(e, 4).ok_or_else(short)?;
            }
            _ => {}
        }
        off += len;
    }
    Ok(m)
}

/// What this kernel needs from the FADT (§5.2.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fadt {
    /// The DSDT's address (X_DSDT when set, else DSDT).
    pub dsdt: u64,
    /// PM1a control block's I/O port (X_PM1a_CNT_BLK when it is in
    /// system I/O space, else PM1a_CNT_BLK); `None` if it has none.
    pub pm1a_cnt: Option<u16>,
}

/// FADT field offsets (ACPI 6.5 Table 5.9).
const FADT_DSDT: usize = 40;
const FADT_PM1A_CNT_BLK: usize = 64;
const FADT_X_DSDT: usize = 140;
const FADT_X_PM1A_CNT_BLK: usize = 172;
/// Generic Address Structure: address space 1 is system I/O (§5.2.3.2).
const GAS_SYSTEM_IO: u8 = 1;

/// Parses a validated FADT.
pub fn parse_fadt(t: &[u8]) -> Result<Fadt, Why> {
    let dsdt32 = u32_at(t, FADT_DSDT).ok_or_else(|| why!("FADT shorter than 44 bytes"))?;
    let pm1a32 =
        u32_at(t, FADT_PM1A_CNT_BLK).ok_or_else(|| why!("FADT has no PM1a_CNT_BLK field"))?;
    let dsdt = u64_at(t, FADT_X_DSDT)
        .filter(|&x| x != 0)
        .unwrap_or(u64::from(dsdt32));
    let x_pm1a = match (
        t.get(FADT_X_PM1A_CNT_BLK),
        u64_at(t, FADT_X_PM1A_CNT_BLK + 4),
    ) {
        (Some(&GAS_SYSTEM_IO), Some(a)) if a != 0 => u16::try_from(a).ok(),
        _ => None,
    };
    let pm1a_cnt = x_pm1a.or_else(|| u16::try_from(pm1a32).ok().filter(|&p| p != 0));
    Ok(Fadt { dsdt, pm1a_cnt })
}

/// AML opcodes used to read `Name(_S5, Package() {SLP_TYPa, ...})`
/// (ACPI 6.5 §20.2).
const AML_NAME_OP: u8 = 0x08;
const AML_ROOT_CHAR: u8 = b'\\';
const AML_PACKAGE_OP: u8 = 0x12;
const AML_ZERO_OP: u8 = 0x00;
const AML_ONE_OP: u8 = 0x01;
const AML_BYTE_PREFIX: u8 = 0x0a;
const AML_WORD_PREFIX: u8 = 0x0b;
const AML_DWORD_PREFIX: u8 = 0x0c;

/// SLP_TYPa for S5 from the DSDT's AML (`aml` is the whole table or its
/// body): finds `Name(_S5_, Package(){...})` and reads its first element.
/// Only that static form is understood (no `Method(_S5)`), which is what
/// QEMU's, SeaBIOS's and Xen's tables use.
pub fn s5_slp_typ(aml: &[u8]) -> Option<u8> {
    let mut from = 0;
    while let Some(pos) = aml
        .get(from..)?
        .windows(4)
        .position(|w| w == b"_S5_")
        .map(|p| p + from)
    {
        from = pos + 1;
        let named = match pos.checked_sub(1).and_then(|i| aml.get(i)) {
            Some(&AML_NAME_OP) => true,
            Some(&AML_ROOT_CHAR) => pos >= 2 && aml.get(pos - 2) == Some(&AML_NAME_OP),
            _ => false,
        };
        if !named {
            continue;
        }
        let mut i = pos + 4;
        if aml.get(i) != Some(&AML_PACKAGE_OP) {
            continue;
        }
        i += 1;
        // PkgLength: bits 7:6 of the lead byte count the bytes that follow.
        let lead = *aml.get(i)?;
        i += 1 + usize::from(lead >> 6);
        i += 1; // NumElements
        let v = match *aml.get(i)? {
            AML_ZERO_OP => 0,
            AML_ONE_OP => 1,
            AML_BYTE_PREFIX => *aml.get(i + 1)?,
            AML_WORD_PREFIX => u8::try_from(u16_at(aml, i + 1)?).ok()?,
            AML_DWORD_PREFIX => u8::try_from(u32_at(aml, i + 1)?).ok()?,
            _ => continue,
        };
        return Some(v);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix_checksum(t: &mut [u8], at: usize) {
        t[at] = 0;
        let s = t.iter().fold(0u8, |s, &x| s.wrapping_add(x));
        t[at] = 0u8.wrapping_sub(s);
    }

    fn table(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; SDT_HEADER_LEN];
        t[..4].copy_from_slice(sig);
        t.extend_from_slice(body);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        t[8] = 1;
        fix_checksum(&mut t, 9);
        t
    }

    fn rsdp_v2(xsdt: u64) -> Vec<u8> {
        let mut r = vec![0u8; 36];
        r[..8].copy_from_slice(RSDP_SIGNATURE);
        r[15] = 2;
        r[16..20].copy_from_slice(&0x1000u32.to_le_bytes());
        r[20..24].copy_from_slice(&36u32.to_le_bytes());
        r[24..32].copy_from_slice(&xsdt.to_le_bytes());
        let s = r[..20].iter().fold(0u8, |s, &x| s.wrapping_add(x));
        r[8] = 0u8.wrapping_sub(s);
        fix_checksum(&mut r, 32);
        r
    }

    #[test]
    fn rsdp_v2_is_validated() {
        let r = rsdp_v2(0x2000);
        assert_eq!(rsdp_len(&r), 36);
        let p = parse_rsdp(&r).unwrap();
        assert_eq!(p.root(), (0x2000, 8));
        let mut bad = r.clone();
        bad[30] ^= 1;
        assert!(parse_rsdp(&bad).unwrap_err().as_str().contains("extended"));
        let mut bad = r.clone();
        bad[0] = b'X';
        assert!(parse_rsdp(&bad).is_err());
        assert!(parse_rsdp(&r[..10]).is_err());
        // Revision 0: the RSDT only.
        let mut v1 = r[..20].to_vec();
        v1[15] = 0;
        fix_checksum(&mut v1, 8);
        assert_eq!(rsdp_len(&v1), 20);
        assert_eq!(parse_rsdp(&v1).unwrap().root(), (0x1000, 4));
    }

    #[test]
    fn scan_finds_aligned_rsdp_only() {
        let r = rsdp_v2(0x2000);
        let mut area = vec![0u8; 256];
        area[40..76].copy_from_slice(&r); // not 16-aligned
        assert_eq!(scan_for_rsdp(&area), None);
        area[64..100].copy_from_slice(&r);
        assert_eq!(scan_for_rsdp(&area), Some(64));
        assert_eq!(scan_for_rsdp(&area[..70]), None);
        assert_eq!(scan_for_rsdp(&[]), None);
    }

    #[test]
    fn tables_are_checked() {
        let t = table(b"APIC", &[0; 8]);
        assert!(check_table(&t, Some(b"APIC")).is_ok());
        assert!(check_table(&t, Some(b"FACP")).is_err());
        let mut bad = t.clone();
        bad[40] = 1;
        assert!(check_table(&bad, None).is_err());
        assert!(check_table(&t[..30], None).is_err());
        let mut huge = t.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(check_table(&huge, None).is_err());
        let mut x = table(
            b"XSDT",
            &[0x10, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 1, 0, 0, 0],
        );
        assert_eq!(
            root_entries(&x, 8).collect::<Vec<_>>(),
            [0x10, 0x1_0000_0020]
        );
        x.truncate(SDT_HEADER_LEN + 12);
        assert_eq!(root_entries(&x, 8).count(), 1);
        assert_eq!(root_entries(&x, 4).count(), 3);
    }

    fn madt(entries: &[&[u8]]) -> Vec<u8> {
        let mut body = vec![0u8; 8];
        body[..4].copy_from_slice(&0xfee0_0000u32.to_le_bytes());
        for e in entries {
            body.extend_from_slice(e);
        }
        table(b"APIC", &body)
    }

    #[test]
    fn madt_cpus_and_ioapics() {
        let t = madt(&[
            &[0, 8, 0, 0, 1, 0, 0, 0],
            &[0, 8, 1, 1, 1, 0, 0, 0],
            &[0, 8, 2, 5, 0, 0, 0, 0],                          // disabled
            &[1, 12, 7, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0],       // IOAPIC
            &[9, 16, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0], // x2APIC 9
            &[4, 6, 0xff, 0, 0, 1],                             // LAPIC NMI, ignored
        ]);
        let m = parse_madt(&t).unwrap();
        assert_eq!(m.cpus(), &[0, 1, 9]);
        assert_eq!(m.cpus_disabled, 1);
        assert_eq!(m.lapic_address, 0xfee0_0000);
        assert_eq!(
            m.ioapics(),
            &[IoApic {
                id: 7,
                address: 0xfec0_0000,
                gsi_base: 0
            }]
        );
    }

    #[test]
    fn malformed_madts_fail_without_looping() {
        for bad in [
            madt(&[&[0, 0, 0, 0, 1, 0, 0, 0]]),  // zero length
            madt(&[&[0, 1]]),                    // length 1
            madt(&[&[0, 40, 0, 0, 1, 0, 0, 0]]), // past the end
            madt(&[&[0, 4, 0, 0]]),              // too short for its type
            madt(&[&[1, 3, 0]]),
            madt(&[&[0, 8, 0, 3, 1, 0, 0, 0], &[0, 8, 1, 3, 1, 0, 0, 0]]), // twice
            madt(&[&[0]]),                                                 // header cut short
        ] {
            assert!(parse_madt(&bad).is_err(), "{bad:?}");
        }
        assert!(parse_madt(&table(b"APIC", &[0; 4])).is_err());
        let none = parse_madt(&madt(&[])).unwrap();
        assert!(none.cpus().is_empty() && none.ioapics().is_empty());
    }

    #[test]
    fn fadt_fields() {
        let mut body = vec![0u8; 244 - SDT_HEADER_LEN];
        let at = |o: usize| o - SDT_HEADER_LEN;
        body[at(40)..at(44)].copy_from_slice(&0x1234u32.to_le_bytes());
        body[at(64)..at(68)].copy_from_slice(&0x604u32.to_le_bytes());
        let f = parse_fadt(&table(b"FACP", &body)).unwrap();
        assert_eq!(
            f,
            Fadt {
                dsdt: 0x1234,
                pm1a_cnt: Some(0x604)
            }
        );
        body[at(140)..at(148)].copy_from_slice(&0x5678u64.to_le_bytes());
        body[at(172)] = 1;
        body[at(176)..at(184)].copy_from_slice(&0xb004u64.to_le_bytes());
        let f = parse_fadt(&table(b"FACP", &body)).unwrap();
        assert_eq!((f.dsdt, f.pm1a_cnt), (0x5678, Some(0xb004)));
        // An ACPI 1.0 FADT (116 bytes) has no X_ fields.
        let f = parse_fadt(&table(b"FACP", &body[..at(116)])).unwrap();
        assert_eq!((f.dsdt, f.pm1a_cnt), (0x1234, Some(0x604)));
        assert!(parse_fadt(&table(b"FACP", &body[..at(60)])).is_err());
        body[at(64)..at(68)].copy_from_slice(&0u32.to_le_bytes());
        body[at(172)] = 0;
        assert_eq!(parse_fadt(&table(b"FACP", &body)).unwrap().pm1a_cnt, None);
    }

    #[test]
    fn s5_forms() {
        // QEMU: Name (_S5, Package (0x04) { Zero, Zero, Zero, Zero })
        let qemu = [0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0, 0, 0, 0];
        assert_eq!(s5_slp_typ(&qemu), Some(0));
        // Root-prefixed, byte-prefixed values: Package { 0x05, 0x05, ... }
        let bytes = [
            1, 2, 0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x0a, 0x04, 0x0a, 5, 0x0a, 5, 0, 0,
        ];
        assert_eq!(s5_slp_typ(&bytes), Some(5));
        // A two-byte PkgLength, OneOp.
        let two = [
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x40, 0x01, 0x02, 0x01, 0x01,
        ];
        assert_eq!(s5_slp_typ(&two), Some(1));
        // A method, a reference, truncated tables: no answer, no panic.
        assert_eq!(s5_slp_typ(&[0x14, b'_', b'S', b'5', b'_', 0x00]), None);
        assert_eq!(s5_slp_typ(&[b'_', b'S', b'5', b'_', 0x12, 0x06]), None);
        assert_eq!(s5_slp_typ(&qemu[..8]), None);
        assert_eq!(s5_slp_typ(&qemu[..5]), None);
        assert_eq!(s5_slp_typ(&[]), None);
        // A false hit first, the real one after.
        let mut two_hits = vec![0x70, b'_', b'S', b'5', b'_'];
        two_hits.extend_from_slice(&bytes);
        assert_eq!(s5_slp_typ(&two_hits), Some(5));
    }
}
