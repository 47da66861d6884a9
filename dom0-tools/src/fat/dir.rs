//! Directory entries: 8.3 short entries and the VFAT long-name entries
//! before them (spec sections 6 and 7). [`Parser`] is fed raw 32-byte
//! entries in disk order and yields files with their long names
//! assembled and checked against the short entry's checksum; anything
//! malformed falls back to the short name.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// Attribute bits (spec section 6).
pub(super) const ATTR_VOLUME_ID: u8 = 0x08;
pub(super) const ATTR_DIRECTORY: u8 = 0x10;
/// Long-name entries have exactly these low six attribute bits.
pub(super) const ATTR_LONG_NAME: u8 = 0x0F;
pub(super) const ATTR_LONG_NAME_MASK: u8 = 0x3F;
/// First byte of a free entry, and of the end of the directory.
pub(super) const FREE: u8 = 0xE5;
pub(super) const END: u8 = 0x00;
/// A name starting with byte 0xE5 is stored with 0x05.
pub(super) const KANJI_E5: u8 = 0x05;
/// Windows NT's case bits in byte 12: base name / extension in lower case.
const NT_LOWER_BASE: u8 = 0x08;
const NT_LOWER_EXT: u8 = 0x10;
/// Long-name entry ordinals: the last (first on disk) has 0x40; at most
/// 20 entries of 13 UTF-16 units make a 255-character name.
pub(super) const LAST_LONG: u8 = 0x40;
const ORD_MASK: u8 = 0x1F;
const MAX_LONG_ENTRIES: u8 = 20;
pub(super) const CHARS_PER_ENTRY: usize = 13;
/// Where an entry's 13 UTF-16 units sit.
pub(super) const LONG_CHAR_OFFSETS: [usize; CHARS_PER_ENTRY] =
    [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];

/// One file or directory of a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Raw {
    /// The long name if there is a valid one, else the short name.
    pub name: String,
    /// The 8.3 name as shown (`NAME.EXT`, with NT lower-case bits applied).
    pub short: String,
    pub attr: u8,
    pub cluster: u32,
    pub size: u32,
    /// `.` or `..`.
    pub dot: bool,
}

/// What one entry meant.
pub(super) enum Step {
    /// The end-of-directory marker: stop reading.
    End,
    /// A long-name part, a free slot or a volume label.
    Skip,
    Entry(Raw),
}

/// Long-name assembly state between entries.
#[derive(Default)]
pub(super) struct Parser {
    units: Vec<u16>,
    /// The ordinal the next long entry must have; 0 when complete.
    next: u8,
    sum: u8,
    active: bool,
}

/// The checksum of an 11-byte short name that long entries carry (spec
/// section 7.2).
pub(super) fn checksum(short: &[u8]) -> u8 {
    short
        .iter()
        .fold(0u8, |s, &b| (s >> 1).wrapping_add(s << 7).wrapping_add(b))
}

fn short_part(bytes: &[u8], lower: bool) -> String {
    let end = bytes.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    bytes[..end]
        .iter()
        .map(|&b| {
            // Bytes are in an OEM code page; ASCII is exact, the rest is
            // shown as Latin-1.
            let c = char::from(b);
            if lower {
                c.to_ascii_lowercase()
            } else {
                c
            }
        })
        .collect()
}

/// The short name as shown: `NAME.EXT` or `NAME`.
fn short_name(e: &[u8]) -> String {
    let mut raw = [0u8; 11];
    raw.copy_from_slice(&e[..11]);
    if raw[0] == KANJI_E5 {
        raw[0] = FREE;
    }
    let mut s = short_part(&raw[..8], e[12] & NT_LOWER_BASE != 0);
    let ext = short_part(&raw[8..], e[12] & NT_LOWER_EXT != 0);
    if !ext.is_empty() {
        s.push('.');
        s.push_str(&ext);
    }
    s
}

impl Parser {
    fn reset(&mut self) {
        self.active = false;
        self.units.clear();
        self.next = 0;
    }

    fn long_entry(&mut self, e: &[u8]) {
        let ord = e[0] & ORD_MASK;
        if ord == 0 || ord > MAX_LONG_ENTRIES {
            self.reset();
            return;
        }
        if e[0] & LAST_LONG != 0 {
            self.reset();
            self.active = true;
            self.units = vec![0xFFFF; usize::from(ord) * CHARS_PER_ENTRY];
            self.sum = e[13];
        } else if !self.active || ord != self.next || e[13] != self.sum {
            self.reset();
            return;
        }
        let at = usize::from(ord - 1) * CHARS_PER_ENTRY;
        for (i, &off) in LONG_CHAR_OFFSETS.iter().enumerate() {
            self.units[at + i] = u16::from_le_bytes([e[off], e[off + 1]]);
        }
        self.next = ord - 1;
    }

    fn long_name(&self, short: &[u8]) -> Option<String> {
        if !self.active || self.next != 0 || checksum(short) != self.sum {
            return None;
        }
        let len = self
            .units
            .iter()
            .position(|&u| u == 0)
            .unwrap_or(self.units.len());
        let name: String = char::decode_utf16(self.units[..len].iter().copied())
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect();
        (!name.is_empty()).then_some(name)
    }

    /// Takes the next 32-byte entry; `fat32` says whether the high half
    /// of the first cluster is meaningful.
    pub(super) fn feed(&mut self, e: &[u8], fat32: bool) -> Step {
        if e.len() < 32 || e[0] == END {
            return Step::End;
        }
        if e[0] == FREE {
            self.reset();
            return Step::Skip;
        }
        let attr = e[11];
        if attr & ATTR_LONG_NAME_MASK == ATTR_LONG_NAME {
            self.long_entry(e);
            return Step::Skip;
        }
        if attr & ATTR_VOLUME_ID != 0 {
            self.reset();
            return Step::Skip;
        }
        let short = short_name(e);
        let name = self.long_name(&e[..11]).unwrap_or_else(|| short.clone());
        self.reset();
        let lo = u32::from(u16::from_le_bytes([e[26], e[27]]));
        let hi = if fat32 {
            u32::from(u16::from_le_bytes([e[20], e[21]]))
        } else {
            0
        };
        Step::Entry(Raw {
            dot: &e[..11] == b".          " || &e[..11] == b"..         ",
            name,
            short,
            attr,
            cluster: (hi << 16) | lo,
            size: u32::from_le_bytes([e[28], e[29], e[30], e[31]]),
        })
    }
}
