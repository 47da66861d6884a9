//! The `start_info` page, parsed into a safe, owned [`StartInfo`].
//!
//! Xen (for Dom0) or the toolstack (for other domains) writes `struct
//! start_info` and hands its virtual address to the kernel in `rsi`. The boot
//! code copies it once into a [`StartInfo`]: plain values, the command line as
//! `&str`, flags with names. Nothing here trusts the page: every field is
//! taken as it is and checked by whoever uses it ([`StartInfo::magic_ok`],
//! [`StartInfo::ramdisk`], [`mod@crate::layout`]).

#![forbid(unsafe_code)]

use core::fmt;

use crate::abi::xen::{
    StartInfo as RawStartInfo, MAX_GUEST_CMDLINE, SIF_INITDOMAIN, SIF_MOD_START_PFN,
    SIF_MULTIBOOT_MOD, SIF_PM_MASK, SIF_PRIVILEGED, SIF_VIRT_P2M_4TOOLS, START_INFO_MAGIC_LEN,
    START_INFO_MAGIC_PREFIX,
};
use crate::layout::PAGE_SIZE;
use crate::util::c_str;

/// `start_info.flags` (`SIF_*`).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct SifFlags(pub u32);

/// Every named flag with the name [`SifFlags`] displays.
const SIF_NAMES: &[(u32, &str)] = &[
    (SIF_PRIVILEGED, "privileged"),
    (SIF_INITDOMAIN, "initdomain"),
    (SIF_MULTIBOOT_MOD, "multiboot_mod"),
    (SIF_MOD_START_PFN, "mod_start_pfn"),
    (SIF_VIRT_P2M_4TOOLS, "virt_p2m_4tools"),
];

impl SifFlags {
    /// `SIF_PRIVILEGED`: the domain is privileged.
    pub const fn privileged(self) -> bool {
        self.0 & SIF_PRIVILEGED != 0
    }
    /// `SIF_INITDOMAIN`: this is the initial domain (Dom0).
    pub const fn initdomain(self) -> bool {
        self.0 & SIF_INITDOMAIN != 0
    }
    /// `SIF_MULTIBOOT_MOD`: `mod_start` points at a multiboot module list.
    pub const fn multiboot_mod(self) -> bool {
        self.0 & SIF_MULTIBOOT_MOD != 0
    }
    /// `SIF_MOD_START_PFN`: `mod_start` is a PFN, not a virtual address.
    pub const fn mod_start_pfn(self) -> bool {
        self.0 & SIF_MOD_START_PFN != 0
    }
    /// `SIF_VIRT_P2M_4TOOLS`.
    pub const fn virt_p2m_4tools(self) -> bool {
        self.0 & SIF_VIRT_P2M_4TOOLS != 0
    }
    /// The power-management bits (`SIF_PM_MASK`), shifted down.
    pub const fn pm(self) -> u32 {
        (self.0 & SIF_PM_MASK) >> SIF_PM_MASK.trailing_zeros()
    }
}

/// `privileged|initdomain`; `none` for 0; unknown bits as `0x...`.
impl fmt::Display for SifFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("none");
        }
        let mut rest = self.0;
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            let r = if first { Ok(()) } else { f.write_str("|") };
            first = false;
            r
        };
        for &(bit, name) in SIF_NAMES {
            if rest & bit != 0 {
                sep(f)?;
                f.write_str(name)?;
                rest &= !bit;
            }
        }
        if rest != 0 {
            sep(f)?;
            write!(f, "{rest:#x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SifFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SifFlags({:#x}: {})", self.0, self)
    }
}

/// The `start_info.console` union, read the way the flags say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleInfo {
    /// Dom0 (`SIF_INITDOMAIN`): where `dom0_vga_console_info` sits in the page.
    Dom0 {
        /// Byte offset from the start of start_info.
        info_off: u32,
        /// Its size.
        info_size: u32,
    },
    /// Other domains: the PV console ring.
    DomU {
        /// Machine frame of the console ring page.
        mfn: u64,
        /// Its event channel.
        evtchn: u32,
    },
}

/// A copy of the `start_info` page, with safe accessors.
///
/// The numeric fields are public and named as in Xen's `struct start_info`
/// (`shared_info` is a machine address, `pt_base`, `mfn_list` and `mod_start`
/// are virtual addresses, `store_mfn` a machine frame).
#[derive(Clone)]
pub struct StartInfo {
    /// Virtual address the page was found at (`rsi` at entry).
    pub va: u64,
    magic: [u8; START_INFO_MAGIC_LEN],
    /// Pages allocated to the domain.
    pub nr_pages: u64,
    /// Machine address of the shared info page.
    pub shared_info: u64,
    /// `SIF_*` flags.
    pub flags: SifFlags,
    /// Machine frame of the xenstore ring (domU).
    pub store_mfn: u64,
    /// Event channel of the xenstore ring (domU).
    pub store_evtchn: u32,
    /// The console union.
    pub console: ConsoleInfo,
    /// Virtual address of the bootstrap L4 page table.
    pub pt_base: u64,
    /// Number of bootstrap page-table frames (mapped read-only from `pt_base` on).
    pub nr_pt_frames: u64,
    /// Virtual address of the p2m list (`nr_pages` machine frame numbers).
    pub mfn_list: u64,
    /// Virtual address of the ramdisk (a PFN with `SIF_MOD_START_PFN`).
    pub mod_start: u64,
    /// Ramdisk length in bytes.
    pub mod_len: u64,
    /// First p2m frame for tools (`SIF_VIRT_P2M_4TOOLS`).
    pub first_p2m_pfn: u64,
    /// Number of p2m frames for tools.
    pub nr_p2m_frames: u64,
    cmd_line: [u8; MAX_GUEST_CMDLINE],
}

impl StartInfo {
    /// Copies a raw `start_info` found at virtual address `va`.
    pub fn from_raw(raw: &RawStartInfo, va: u64) -> StartInfo {
        let flags = SifFlags(raw.flags);
        let console = if flags.initdomain() {
            let c = raw.console.dom0();
            ConsoleInfo::Dom0 {
                info_off: c.info_off,
                info_size: c.info_size,
            }
        } else {
            let c = raw.console.dom_u();
            ConsoleInfo::DomU {
                mfn: c.mfn,
                evtchn: c.evtchn,
            }
        };
        StartInfo {
            va,
            magic: raw.magic,
            nr_pages: raw.nr_pages,
            shared_info: raw.shared_info,
            flags,
            store_mfn: raw.store_mfn,
            store_evtchn: raw.store_evtchn,
            console,
            pt_base: raw.pt_base,
            nr_pt_frames: raw.nr_pt_frames,
            mfn_list: raw.mfn_list,
            mod_start: raw.mod_start,
            mod_len: raw.mod_len,
            first_p2m_pfn: raw.first_p2m_pfn,
            nr_p2m_frames: raw.nr_p2m_frames,
            cmd_line: raw.cmd_line,
        }
    }

    /// Parses the first `size_of::<start_info>()` bytes of `bytes`; `None` if
    /// there are fewer.
    pub fn from_bytes(bytes: &[u8], va: u64) -> Option<StartInfo> {
        use zerocopy::FromBytes;
        let (raw, _) = RawStartInfo::read_from_prefix(bytes).ok()?;
        Some(StartInfo::from_raw(&raw, va))
    }

    /// The magic string up to its first NUL (`"xen-3.0-x86_64"`).
    pub fn magic(&self) -> &str {
        c_str(&self.magic)
    }

    /// True if the magic starts with `"xen-3.0-x86_64"` (Xen may append more).
    pub fn magic_ok(&self) -> bool {
        self.magic.starts_with(START_INFO_MAGIC_PREFIX)
    }

    /// The command line up to its first NUL (and up to its first byte that
    /// is not UTF-8).
    pub fn cmd_line(&self) -> &str {
        c_str(&self.cmd_line)
    }

    /// The raw command line bytes up to the first NUL.
    pub fn cmd_line_bytes(&self) -> &[u8] {
        let n = self
            .cmd_line
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.cmd_line.len());
        &self.cmd_line[..n]
    }

    /// True for a privileged initial domain (both `SIF_PRIVILEGED` and `SIF_INITDOMAIN`).
    pub fn is_dom0(&self) -> bool {
        self.flags.privileged() && self.flags.initdomain()
    }

    /// The domain's memory in bytes (`nr_pages` pages; saturating).
    pub fn memory_bytes(&self) -> u64 {
        self.nr_pages.saturating_mul(PAGE_SIZE)
    }

    /// One past the last bootstrap page-table frame (virtual; saturating).
    pub fn pt_end(&self) -> u64 {
        self.pt_base
            .saturating_add(self.nr_pt_frames.saturating_mul(PAGE_SIZE))
    }

    /// One past the p2m list's last entry (virtual; saturating).
    pub fn mfn_list_end(&self) -> u64 {
        self.mfn_list
            .saturating_add(self.nr_pages.saturating_mul(8))
    }

    /// The ramdisk as `(virtual address, length)`, if there is one and
    /// `mod_start` is a plain virtual address (no `SIF_MOD_START_PFN`, no
    /// `SIF_MULTIBOOT_MOD`, no wrap-around). This kernel does not announce
    /// `XEN_ELFNOTE_MOD_START_PFN`, so a correct builder maps the ramdisk in
    /// the bootstrap region and passes its virtual address.
    pub fn ramdisk(&self) -> Option<(u64, u64)> {
        if self.mod_start == 0 || self.mod_len == 0 {
            return None;
        }
        if self.flags.mod_start_pfn() || self.flags.multiboot_mod() {
            return None;
        }
        self.mod_start.checked_add(self.mod_len)?;
        Some((self.mod_start, self.mod_len))
    }
}

impl fmt::Debug for StartInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartInfo")
            .field("va", &format_args!("{:#x}", self.va))
            .field("magic", &self.magic())
            .field("nr_pages", &self.nr_pages)
            .field("shared_info", &format_args!("{:#x}", self.shared_info))
            .field("flags", &self.flags)
            .field("console", &self.console)
            .field("pt_base", &format_args!("{:#x}", self.pt_base))
            .field("nr_pt_frames", &self.nr_pt_frames)
            .field("mfn_list", &format_args!("{:#x}", self.mfn_list))
            .field("mod_start", &format_args!("{:#x}", self.mod_start))
            .field("mod_len", &self.mod_len)
            .field("cmd_line", &self.cmd_line())
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::abi::xen::{StartInfoConsole, StartInfoConsoleDom0};
    use std::format;
    use zerocopy::{FromZeros, IntoBytes};

    /// A Dom0-like start_info as Xen's builder writes it.
    pub(crate) fn sample_raw() -> RawStartInfo {
        let mut r = RawStartInfo::new_zeroed();
        r.magic[..15].copy_from_slice(b"xen-3.0-x86_64p");
        r.nr_pages = 0x8000;
        r.shared_info = 0x1234_5000;
        r.flags = SIF_PRIVILEGED | SIF_INITDOMAIN;
        r.console = StartInfoConsole::from_dom0(StartInfoConsoleDom0 {
            info_off: 0x4b8,
            info_size: 0x40,
        });
        r.mod_start = 0xffff_ffff_8010_0000;
        r.mod_len = 0x1200;
        r.mfn_list = 0xffff_ffff_8010_2000;
        r.pt_base = 0xffff_ffff_8014_3000;
        r.nr_pt_frames = 6;
        r.cmd_line[..11].copy_from_slice(b"console=hvc");
        r
    }

    #[test]
    fn parses_a_dom0_start_info() {
        let si = StartInfo::from_raw(&sample_raw(), 0xffff_ffff_8014_2000);
        assert!(si.magic_ok());
        assert_eq!(si.magic(), "xen-3.0-x86_64p");
        assert!(si.is_dom0());
        assert_eq!(format!("{}", si.flags), "privileged|initdomain");
        assert_eq!(si.cmd_line(), "console=hvc");
        assert_eq!(
            si.console,
            ConsoleInfo::Dom0 {
                info_off: 0x4b8,
                info_size: 0x40
            }
        );
        assert_eq!(si.ramdisk(), Some((0xffff_ffff_8010_0000, 0x1200)));
        assert_eq!(si.pt_end(), 0xffff_ffff_8014_9000);
        assert_eq!(si.memory_bytes(), 128 << 20);
    }

    #[test]
    fn from_bytes_needs_a_whole_page_struct() {
        let raw = sample_raw();
        let bytes = raw.as_bytes();
        assert!(StartInfo::from_bytes(bytes, 0).is_some());
        assert!(StartInfo::from_bytes(&bytes[..bytes.len() - 1], 0).is_none());
    }

    #[test]
    fn hostile_values_do_not_panic() {
        let mut r = sample_raw();
        r.magic = [0xff; START_INFO_MAGIC_LEN];
        r.cmd_line = [0xc3; MAX_GUEST_CMDLINE]; // invalid UTF-8, no NUL
        r.nr_pages = u64::MAX;
        r.pt_base = u64::MAX - 10;
        r.nr_pt_frames = u64::MAX;
        r.mfn_list = u64::MAX;
        r.mod_start = u64::MAX;
        r.mod_len = 2;
        r.flags = u32::MAX;
        let si = StartInfo::from_raw(&r, 0);
        assert!(!si.magic_ok());
        assert_eq!(si.magic(), "");
        assert_eq!(si.cmd_line(), "");
        assert_eq!(si.cmd_line_bytes().len(), MAX_GUEST_CMDLINE);
        assert_eq!(si.memory_bytes(), u64::MAX);
        assert_eq!(si.pt_end(), u64::MAX);
        assert_eq!(si.mfn_list_end(), u64::MAX);
        assert_eq!(si.ramdisk(), None);
        let shown = format!("{}", si.flags);
        assert!(shown.starts_with("privileged|initdomain|"), "{shown}");
        let _ = format!("{si:?}");
    }

    #[test]
    fn ramdisk_absent_or_by_pfn_is_none() {
        let mut r = sample_raw();
        r.mod_len = 0;
        assert_eq!(StartInfo::from_raw(&r, 0).ramdisk(), None);
        let mut r = sample_raw();
        r.flags |= SIF_MOD_START_PFN;
        assert_eq!(StartInfo::from_raw(&r, 0).ramdisk(), None);
    }

    #[test]
    fn domu_console_union() {
        let mut r = sample_raw();
        r.flags = 0;
        r.console.raw = [0x55, 7];
        let si = StartInfo::from_raw(&r, 0);
        assert_eq!(
            si.console,
            ConsoleInfo::DomU {
                mfn: 0x55,
                evtchn: 7
            }
        );
        assert_eq!(format!("{}", si.flags), "none");
    }
}
