//! The typed domain configuration `xl create` builds from a parsed config,
//! following `xl`'s `parse_config_data` for the keys Oxen honours.
//!
//! What it owns: [`DomainConfig`] and its parts ([`DomainType`],
//! [`Action`], [`VcpuAffinity`]), xl's defaults and checks for those keys,
//! and the [`Warning`]s for keys Oxen ignores. Device lists (`disk`, `vif`)
//! are parsed by [`super::disk`] and [`super::vif`]; a bad entry is a
//! [`DeviceError`] naming the file, the setting's line and the entry.
//!
//! Defaults and rules, as xl and libxl apply them:
//!
//! - `name` is required; `type` is `pv`, `pvh` or `hvm` (xl accepts any
//!   prefix: `type="h"` is HVM), default `pv`; the deprecated
//!   `builder="hvm"|"generic"` must not contradict `type`.
//! - `memory` and `maxmem` are MiB. Either defaults to the other; with
//!   neither, both are 32 (libxl's default). `maxmem < memory` is refused.
//! - `vcpus` defaults to 1, `maxvcpus` to `vcpus`; `maxvcpus < vcpus` is
//!   refused.
//! - `cpus` is a CPU list string for every vCPU, or a list of them, one per
//!   vCPU (items past `maxvcpus` ignored).
//! - `cmdline` wins over `root` and `extra` (with a warning); otherwise the
//!   command line is `root=ROOT EXTRA`, `root=ROOT` or `EXTRA`.
//! - `on_poweroff`/`on_reboot`/`on_crash` default to destroy/restart/destroy.
//! - PV and PVH domains need a `kernel` (Oxen has no bootloader support).
//!
//! Where xl only warns about a malformed value and ignores it, Oxen
//! refuses the config: every error names the file and the setting's line.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::cpuid::CpuidDelta;
use super::cpus::{parse_cpu_list, CpuSet};
use super::disk::{parse_disk_spec, DiskError, DiskSpec};
use super::value::{Config, ValueError};
use super::vif::{parse_vif_spec, VifError, VifSpec};
use super::Error;

/// The largest `vcpus`/`maxvcpus` accepted.
pub const MAX_VCPUS: i64 = 4096;

/// The largest `memory`/`maxmem` accepted, in MiB (so that KiB and bytes
/// still fit in 64 bits).
pub const MAX_MEMORY_MIB: i64 = i64::MAX >> 20;

/// libxl's memory default when neither `memory` nor `maxmem` is given (MiB).
pub const DEFAULT_MEMORY_MIB: u64 = 32;

/// The kind of guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainType {
    /// Paravirtualised.
    Pv,
    /// PVH: HVM container, PV boot, no device model.
    Pvh,
    /// Fully virtualised, with a device model.
    Hvm,
}

impl DomainType {
    /// xl's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            DomainType::Pv => "pv",
            DomainType::Pvh => "pvh",
            DomainType::Hvm => "hvm",
        }
    }
}

/// What to do when a domain shuts down for a given reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Destroy the domain.
    Destroy,
    /// Destroy it and start a new one with the same config.
    Restart,
    /// Rename the old domain and start a new one.
    RenameRestart,
    /// Leave it as it is (for inspection).
    Preserve,
    /// Dump its core, then destroy it.
    CoredumpDestroy,
    /// Dump its core, then restart it.
    CoredumpRestart,
    /// Reset it softly (kexec-style).
    SoftReset,
}

impl Action {
    /// Every action, by xl's name.
    pub const ALL: [(&'static str, Action); 7] = [
        ("destroy", Action::Destroy),
        ("restart", Action::Restart),
        ("rename-restart", Action::RenameRestart),
        ("preserve", Action::Preserve),
        ("coredump-destroy", Action::CoredumpDestroy),
        ("coredump-restart", Action::CoredumpRestart),
        ("soft-reset", Action::SoftReset),
    ];

    /// The action xl names `name` (exact match).
    pub fn from_name(name: &str) -> Option<Action> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|&(_, a)| a)
    }

    /// xl's name for it.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("destroy", |&(n, _)| n)
    }
}

/// vCPU hard affinity (`cpus=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VcpuAffinity {
    /// One CPU list for every vCPU (`cpus = "0-3"`).
    All(CpuSet),
    /// One CPU list per vCPU, in order (`cpus = ["0", "1"]`); vCPUs past the
    /// end are unconstrained.
    PerVcpu(Vec<CpuSet>),
}

/// A domain's configuration, as `xl create` would build it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainConfig {
    /// `name`.
    pub name: String,
    /// `type` (or the deprecated `builder`).
    pub domain_type: DomainType,
    /// `kernel`: path of the kernel image.
    pub kernel: Option<String>,
    /// `ramdisk`: path of the initial ramdisk.
    pub ramdisk: Option<String>,
    /// The kernel command line (`cmdline`, or `root` and `extra`).
    pub cmdline: Option<String>,
    /// `memory`: initial memory, MiB.
    pub memory_mib: u64,
    /// `maxmem`: maximum memory, MiB.
    pub maxmem_mib: u64,
    /// `vcpus`: vCPUs online at boot.
    pub vcpus: u32,
    /// `maxvcpus`: vCPUs the domain may ever have.
    pub max_vcpus: u32,
    /// `cpus`: hard affinity; `None` = any CPU.
    pub cpus: Option<VcpuAffinity>,
    /// `cpu_weight`: credit scheduler weight; `None` = the scheduler's default.
    pub cpu_weight: Option<u32>,
    /// `cap`: credit scheduler cap, percent of one CPU; `None` = no cap.
    pub cap: Option<u32>,
    /// `on_poweroff`.
    pub on_poweroff: Action,
    /// `on_reboot`.
    pub on_reboot: Action,
    /// `on_crash`.
    pub on_crash: Action,
    /// `uuid`; `None` = generate one.
    pub uuid: Option<[u8; 16]>,
    /// `disk`: the disks, in order.
    pub disk: Vec<DiskSpec>,
    /// `vif`: the network interfaces, in order (devid = index unless the
    /// spec says `devid=`).
    pub vif: Vec<VifSpec>,
    /// `cpuid`: the CPU feature levelling (libxl's string or xend's list
    /// form); `None` = the default policy.
    pub cpuid: Option<CpuidDelta>,
}

/// What was wrong with one `disk` or `vif` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceErrorKind {
    /// A disk spec (libxlu's messages).
    Disk(DiskError),
    /// A vif spec (xl's messages).
    Vif(VifError),
    /// Two entries of the list are the same device.
    Duplicate(String),
}

/// A bad `disk` or `vif` entry: names the file, the setting's line and
/// the entry (0-based) of its list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceError {
    /// The config's file name.
    pub file: String,
    /// The line of the `disk`/`vif` setting.
    pub line: u32,
    /// `disk` or `vif`.
    pub key: &'static str,
    /// Which entry of the list.
    pub index: usize,
    /// What is wrong.
    pub kind: DeviceErrorKind,
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match &self.kind {
            DeviceErrorKind::Disk(e) => format!("{e}"),
            DeviceErrorKind::Vif(e) => format!("{e}"),
            DeviceErrorKind::Duplicate(m) => m.clone(),
        };
        for (i, l) in text.split('\n').enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}:{}: {l}", self.file, self.line)?;
        }
        Ok(())
    }
}

/// A config problem that is not a syntax error: names the file and, when
/// it concerns one setting, its line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainError {
    /// The config's file name.
    pub file: String,
    /// The offending setting's line, if one setting is to blame.
    pub line: Option<u32>,
    /// xl's message.
    pub message: String,
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file, l, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Something in a config that Oxen ignores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The config's file name.
    pub file: String,
    /// The line of the setting concerned.
    pub line: u32,
    /// What is ignored.
    pub kind: WarningKind,
}

/// What a [`Warning`] is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WarningKind {
    /// A key neither Oxen nor xl knows (a typo?).
    UnknownKey(String),
    /// An xl.cfg key that Oxen does not implement.
    Unsupported(String),
    /// `root`/`extra` given along with `cmdline`, which wins.
    RootExtraIgnored,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = format!("({}:{})", self.file, self.line);
        match &self.kind {
            WarningKind::UnknownKey(k) => write!(f, "Warning: ignoring unknown key \"{k}\" {at}"),
            WarningKind::Unsupported(k) => {
                write!(f, "Warning: ignoring \"{k}\" {at}: not supported by Oxen")
            }
            WarningKind::RootExtraIgnored => write!(
                f,
                "Warning: ignoring root= and extra= in favour of cmdline= {at}"
            ),
        }
    }
}

/// The keys [`DomainConfig::from_config`] reads.
pub const HONOURED_KEYS: &[&str] = &[
    "name",
    "type",
    "builder",
    "kernel",
    "ramdisk",
    "cmdline",
    "root",
    "extra",
    "memory",
    "maxmem",
    "vcpus",
    "maxvcpus",
    "cpus",
    "cpu_weight",
    "cap",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "uuid",
    "disk",
    "vif",
    "cpuid",
];

/// xl.cfg keys Oxen does not (yet) implement: warned about as such rather
/// than as unknown.
pub const XL_ONLY_KEYS: &[&str] = &[
    "acpi",
    "acpi_firmware",
    "acpi_laptop_slate",
    "acpi_s3",
    "acpi_s4",
    "altp2m",
    "altp2mhvm",
    "apic",
    "bios",
    "bios_path_override",
    "boot",
    "bootloader",
    "bootloader_args",
    "channel",
    "claim_mode",
    "cpus_soft",
    "device_model_args",
    "device_model_args_hvm",
    "device_model_args_pv",
    "device_model_override",
    "device_model_stubdomain_override",
    "device_model_stubdomain_seclabel",
    "device_model_user",
    "device_model_version",
    "device_tree",
    "display",
    "dm_restrict",
    "driver_domain",
    "dtdev",
    "e820_host",
    "extratime",
    "firmware",
    "firmware_override",
    "gfx_passthru",
    "gic_version",
    "hap",
    "hpet",
    "iomem",
    "ioports",
    "irqs",
    "keymap",
    "latency",
    "localtime",
    "max_event_channels",
    "max_grant_frames",
    "max_grant_version",
    "max_maptrack_frames",
    "mca_caps",
    "mmio_hole",
    "ms_vm_genid",
    "nestedhvm",
    "nographic",
    "nomigrate",
    "nx",
    "on_soft_reset",
    "on_watchdog",
    "oos",
    "opengl",
    "p9",
    "pae",
    "passthrough",
    "pci",
    "pci_msitranslate",
    "pci_permissive",
    "pci_power_mgmt",
    "pci_seize",
    "period",
    "pool",
    "pvcalls",
    "pvshim",
    "pvshim_cmdline",
    "pvshim_extra",
    "pvshim_path",
    "rdm",
    "rdm_mem_boundary",
    "rtc_timeoffset",
    "sdl",
    "seclabel",
    "init_seclabel",
    "serial",
    "shadow_memory",
    "slice",
    "smbios_firmware",
    "soundhw",
    "spice",
    "spice_clipboard_sharing",
    "spice_image_compression",
    "spice_streaming_video",
    "spiceagent_mouse",
    "spicedisable_ticketing",
    "spicehost",
    "spicepasswd",
    "spiceport",
    "spicetls_port",
    "spiceusbredirection",
    "spicevdagent",
    "stdvga",
    "stubdomain_kernel",
    "stubdomain_memory",
    "stubdomain_ramdisk",
    "tee",
    "timer_mode",
    "tsc_mode",
    "usb",
    "usbctrl",
    "usbdev",
    "usbdevice",
    "vcpu_hard_affinity",
    "vdispl",
    "vendor_device",
    "vfb",
    "vga",
    "videoram",
    "viridian",
    "vkb",
    "vmtrace_buf_kb",
    "vnc",
    "vncdisplay",
    "vnclisten",
    "vncpasswd",
    "vncunused",
    "vncviewer",
    "vnuma",
    "vpmu",
    "vpt_align",
    "vsnd",
    "vtpm",
    "vuart",
    "xauthority",
    "xen_platform_pci",
    "xend_suspend_evtchn_compat",
];

/// xl's `strncmp(buf, word, strlen(buf)) == 0`: `buf` is a prefix of `word`.
fn xl_prefix(buf: &str, word: &str) -> bool {
    word.starts_with(buf)
}

/// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut i = 0;
    while i < 36 {
        if matches!(i, 8 | 13 | 18 | 23) {
            if b[i] != b'-' {
                return None;
            }
            i += 1;
            continue;
        }
        let hi = (b[i] as char).to_digit(16)?;
        let lo = (b[i + 1] as char).to_digit(16)?;
        out[n] = (hi * 16 + lo) as u8;
        n += 1;
        i += 2;
    }
    Some(out)
}

struct Ctx<'a> {
    cfg: &'a Config,
}

impl Ctx<'_> {
    fn err(&self, key: Option<&str>, message: String) -> Error {
        Error::Domain(DomainError {
            file: self.cfg.file().to_owned(),
            line: key.and_then(|k| self.cfg.line_of(k)),
            message,
        })
    }

    fn string(&self, key: &str) -> Result<Option<String>, ValueError> {
        Ok(self.cfg.get_string(key)?.map(str::to_owned))
    }

    fn long(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, ValueError> {
        self.cfg.get_bounded_long(key, min, max)
    }

    fn action(&self, key: &str, default: Action) -> Result<Action, Error> {
        match self.cfg.get_string(key)? {
            None => Ok(default),
            Some(s) => Action::from_name(s).ok_or_else(|| {
                self.err(Some(key), format!("Unknown {key} action \"{s}\" specified"))
            }),
        }
    }

    fn domain_type(&self) -> Result<DomainType, Error> {
        let mut ty = None;
        if let Some(buf) = self.cfg.get_string("type")? {
            ty = Some(if xl_prefix(buf, "hvm") {
                DomainType::Hvm
            } else if xl_prefix(buf, "pv") {
                DomainType::Pv
            } else if xl_prefix(buf, "pvh") {
                DomainType::Pvh
            } else {
                return Err(self.err(Some("type"), format!("Invalid domain type {buf}.")));
            });
        }
        if let Some(buf) = self.cfg.get_string("builder")? {
            let b = if xl_prefix(buf, "hvm") {
                DomainType::Hvm
            } else if xl_prefix(buf, "generic") {
                DomainType::Pv
            } else {
                return Err(self.err(Some("builder"), format!("Invalid domain type {buf}.")));
            };
            if ty.is_some_and(|t| t != b) {
                return Err(self.err(
                    Some("builder"),
                    String::from("Contradicting \"builder\" and \"type\" options specified."),
                ));
            }
            ty = Some(b);
        }
        Ok(ty.unwrap_or(DomainType::Pv))
    }

    fn cpus(&self, max_vcpus: u32) -> Result<Option<VcpuAffinity>, Error> {
        let Some(setting) = self.cfg.get("cpus") else {
            return Ok(None);
        };
        let parse = |s: &str| {
            parse_cpu_list(s).map_err(|m| self.err(Some("cpus"), format!("cpus=\"{s}\": {m}")))
        };
        match setting.value.as_str() {
            Some(s) => Ok(Some(VcpuAffinity::All(parse(s)?))),
            None => {
                let items = self.cfg.get_string_list("cpus")?.unwrap_or_default();
                let mut sets = Vec::new();
                for s in items.into_iter().take(max_vcpus as usize) {
                    sets.push(parse(s)?);
                }
                Ok(Some(VcpuAffinity::PerVcpu(sets)))
            }
        }
    }

    /// `cpuid`: a string is libxl's form (`"host,aes=0"`), a list xend's
    /// (`["0x1:ecx=xxxx..."]`).
    fn cpuid(&self) -> Result<Option<CpuidDelta>, Error> {
        let Some(setting) = self.cfg.get("cpuid") else {
            return Ok(None);
        };
        let r = match setting.value.as_str() {
            Some(s) => CpuidDelta::parse_libxl(s),
            None => {
                let items = self.cfg.get_string_list("cpuid")?.unwrap_or_default();
                CpuidDelta::parse_xend(&items)
            }
        };
        r.map(Some)
            .map_err(|e| self.err(Some("cpuid"), format!("{e}")))
    }

    fn device_err(&self, key: &'static str, index: usize, kind: DeviceErrorKind) -> Error {
        Error::Device(DeviceError {
            file: self.cfg.file().to_owned(),
            line: self.cfg.line_of(key).unwrap_or(0),
            key,
            index,
            kind,
        })
    }

    /// `disk`: every entry parsed; two entries for one device refused.
    fn disks(&self) -> Result<Vec<DiskSpec>, Error> {
        let items = self.cfg.get_string_list("disk")?.unwrap_or_default();
        let mut out: Vec<DiskSpec> = Vec::new();
        for (i, s) in items.into_iter().enumerate() {
            let d = parse_disk_spec(s)
                .map_err(|e| self.device_err("disk", i, DeviceErrorKind::Disk(e)))?;
            if let Some(old) = out.iter().find(|o| o.devid == d.devid) {
                let m = format!(
                    "disks `{}' and `{}' are the same virtual device ({})",
                    old.vdev, d.vdev, d.devid
                );
                return Err(self.device_err("disk", i, DeviceErrorKind::Duplicate(m)));
            }
            out.push(d);
        }
        Ok(out)
    }

    /// `vif`: every entry parsed (devid = index unless given); two entries
    /// with one devid refused.
    fn vifs(&self) -> Result<Vec<VifSpec>, Error> {
        let items = self.cfg.get_string_list("vif")?.unwrap_or_default();
        let mut out: Vec<VifSpec> = Vec::new();
        for (i, s) in items.into_iter().enumerate() {
            let v = parse_vif_spec(s, i as u32)
                .map_err(|e| self.device_err("vif", i, DeviceErrorKind::Vif(e)))?;
            if out.iter().any(|o| o.devid == v.devid) {
                let m = format!("two vifs with devid {}", v.devid.unwrap_or(0));
                return Err(self.device_err("vif", i, DeviceErrorKind::Duplicate(m)));
            }
            out.push(v);
        }
        Ok(out)
    }

    fn warnings(&self, out: &mut Vec<Warning>) {
        for key in self.cfg.keys() {
            if HONOURED_KEYS.contains(&key) {
                continue;
            }
            let kind = if XL_ONLY_KEYS.contains(&key) {
                WarningKind::Unsupported(key.to_owned())
            } else {
                WarningKind::UnknownKey(key.to_owned())
            };
            out.push(Warning {
                file: self.cfg.file().to_owned(),
                line: self.cfg.line_of(key).unwrap_or(0),
                kind,
            });
        }
    }
}

impl DomainConfig {
    /// Builds the domain configuration from a parsed config, with the
    /// warnings for what it ignores.
    pub fn from_config(cfg: &Config) -> Result<(DomainConfig, Vec<Warning>), Error> {
        let c = Ctx { cfg };
        let mut warnings = Vec::new();

        let domain_type = c.domain_type()?;
        let Some(name) = c.string("name")? else {
            return Err(c.err(None, String::from("Domain name must be specified.")));
        };
        let uuid = match cfg.get_string("uuid")? {
            None => None,
            Some(s) => Some(
                parse_uuid(s)
                    .ok_or_else(|| c.err(Some("uuid"), format!("Failed to parse UUID: {s}")))?,
            ),
        };
        let cpu_weight = c.long("cpu_weight", 1, 65535)?.map(|l| l as u32);
        let cap = c.long("cap", 0, 65535)?.map(|l| l as u32);

        let memory = c.long("memory", 1, MAX_MEMORY_MIB)?.map(|l| l as u64);
        let maxmem = c.long("maxmem", 1, MAX_MEMORY_MIB)?.map(|l| l as u64);
        let (memory_mib, maxmem_mib) = match (memory, maxmem) {
            (Some(m), Some(x)) => (m, x),
            (Some(m), None) => (m, m),
            (None, Some(x)) => (x, x),
            (None, None) => (DEFAULT_MEMORY_MIB, DEFAULT_MEMORY_MIB),
        };
        if maxmem_mib < memory_mib {
            return Err(c.err(
                Some("maxmem"),
                format!("maxmem={maxmem_mib} is smaller than memory={memory_mib} (MiB)"),
            ));
        }

        let vcpus = c.long("vcpus", 1, MAX_VCPUS)?.unwrap_or(1) as u32;
        let max_vcpus = c
            .long("maxvcpus", 1, MAX_VCPUS)?
            .map_or(vcpus, |l| l as u32);
        if max_vcpus < vcpus {
            return Err(c.err(
                Some("maxvcpus"),
                format!("maxvcpus < vcpus ({max_vcpus} < {vcpus})"),
            ));
        }
        let cpus = c.cpus(max_vcpus)?;

        let on_poweroff = c.action("on_poweroff", Action::Destroy)?;
        let on_reboot = c.action("on_reboot", Action::Restart)?;
        let on_crash = c.action("on_crash", Action::Destroy)?;

        let kernel = c.string("kernel")?;
        let ramdisk = c.string("ramdisk")?;
        let given = c.string("cmdline")?;
        let root = c.string("root")?;
        let extra = c.string("extra")?;
        let cmdline = match (given, &root, &extra) {
            (Some(cmd), r, e) => {
                if r.is_some() || e.is_some() {
                    warnings.push(Warning {
                        file: cfg.file().to_owned(),
                        line: cfg.line_of("cmdline").unwrap_or(0),
                        kind: WarningKind::RootExtraIgnored,
                    });
                }
                Some(cmd)
            }
            (None, Some(r), Some(e)) => Some(format!("root={r} {e}")),
            (None, Some(r), None) => Some(format!("root={r}")),
            (None, None, Some(e)) => Some(e.clone()),
            (None, None, None) => None,
        };
        if domain_type != DomainType::Hvm && kernel.is_none() {
            let message = if cfg.get("bootloader").is_some() {
                String::from("bootloader is not supported by Oxen: specify a kernel")
            } else {
                String::from("Neither kernel nor bootloader specified")
            };
            return Err(c.err(cfg.get("bootloader").map(|_| "bootloader"), message));
        }

        let disk = c.disks()?;
        let vif = c.vifs()?;
        let cpuid = c.cpuid()?;

        c.warnings(&mut warnings);
        Ok((
            DomainConfig {
                name,
                domain_type,
                kernel,
                ramdisk,
                cmdline,
                memory_mib,
                maxmem_mib,
                vcpus,
                max_vcpus,
                cpus,
                cpu_weight,
                cap,
                on_poweroff,
                on_reboot,
                on_crash,
                uuid,
                disk,
                vif,
                cpuid,
            },
            warnings,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xlcfg::parse_config;
    use alloc::string::ToString;
    use alloc::vec;

    fn build(text: &str) -> Result<(DomainConfig, Vec<Warning>), String> {
        let cfg = parse_config("d.cfg", text).map_err(|e| e.to_string())?;
        DomainConfig::from_config(&cfg).map_err(|e| e.to_string())
    }

    fn dom(text: &str) -> DomainConfig {
        build(text).unwrap().0
    }

    const PV: &str = "name = 'g'\nkernel = '/k'\n";

    #[test]
    fn defaults() {
        let d = dom(PV);
        assert_eq!(d.name, "g");
        assert_eq!(d.domain_type, DomainType::Pv);
        assert_eq!((d.memory_mib, d.maxmem_mib), (32, 32));
        assert_eq!((d.vcpus, d.max_vcpus), (1, 1));
        assert_eq!(
            (d.on_poweroff, d.on_reboot, d.on_crash),
            (Action::Destroy, Action::Restart, Action::Destroy)
        );
        assert_eq!(d.cmdline, None);
        assert_eq!(d.cpus, None);
        assert!(d.disk.is_empty() && d.vif.is_empty());
    }

    #[test]
    fn memory_defaults_follow_each_other() {
        let d = dom(&format!("{PV}memory = 512\n"));
        assert_eq!((d.memory_mib, d.maxmem_mib), (512, 512));
        let d = dom(&format!("{PV}maxmem = 1024\n"));
        assert_eq!((d.memory_mib, d.maxmem_mib), (1024, 1024));
        let d = dom(&format!("{PV}memory = 512\nmaxmem = 0x400\n"));
        assert_eq!((d.memory_mib, d.maxmem_mib), (512, 1024));
        assert_eq!(
            build(&format!("{PV}memory = 512\nmaxmem = 256\n")).unwrap_err(),
            "d.cfg:4: maxmem=256 is smaller than memory=512 (MiB)"
        );
        assert_eq!(
            build(&format!("{PV}memory = 0\n")).unwrap_err(),
            "d.cfg:3: value `0' is smaller than minimum bound '1'"
        );
    }

    #[test]
    fn types() {
        assert_eq!(
            dom(&format!("{PV}type = 'pvh'\n")).domain_type,
            DomainType::Pvh
        );
        assert_eq!(dom("name='h'\ntype='hvm'\n").domain_type, DomainType::Hvm);
        assert_eq!(
            dom("name='h'\nbuilder='hvm'\n").domain_type,
            DomainType::Hvm
        );
        assert_eq!(
            dom(&format!("{PV}builder='generic'\n")).domain_type,
            DomainType::Pv
        );
        // xl's prefix match.
        assert_eq!(dom("name='h'\ntype='h'\n").domain_type, DomainType::Hvm);
        assert_eq!(
            build(&format!("{PV}type = 'xen'\n")).unwrap_err(),
            "d.cfg:3: Invalid domain type xen."
        );
        assert_eq!(
            build("name='h'\ntype='pv'\nbuilder='hvm'\nkernel='k'\n").unwrap_err(),
            "d.cfg:3: Contradicting \"builder\" and \"type\" options specified."
        );
    }

    #[test]
    fn cmdline_composition() {
        let d = dom(&format!(
            "{PV}root = '/dev/xvda1 ro'\nextra = 'console=hvc0'\n"
        ));
        assert_eq!(
            d.cmdline.as_deref(),
            Some("root=/dev/xvda1 ro console=hvc0")
        );
        let d = dom(&format!("{PV}root = '/dev/xvda1'\n"));
        assert_eq!(d.cmdline.as_deref(), Some("root=/dev/xvda1"));
        let d = dom(&format!("{PV}extra = 'quiet'\n"));
        assert_eq!(d.cmdline.as_deref(), Some("quiet"));
        let (d, w) = build(&format!("{PV}extra = 'quiet'\ncmdline = 'a b'\n")).unwrap();
        assert_eq!(d.cmdline.as_deref(), Some("a b"));
        assert_eq!(
            w[0].to_string(),
            "Warning: ignoring root= and extra= in favour of cmdline= (d.cfg:4)"
        );
    }

    #[test]
    fn vcpus_and_cpus() {
        let d = dom(&format!("{PV}vcpus = 2\nmaxvcpus = 4\ncpus = '0-3,^1'\n"));
        assert_eq!((d.vcpus, d.max_vcpus), (2, 4));
        assert_eq!(
            d.cpus,
            Some(VcpuAffinity::All(CpuSet::Only(
                [0, 2, 3].into_iter().collect()
            )))
        );
        let d = dom(&format!("{PV}vcpus = 2\ncpus = ['1', '2', '3']\n"));
        assert_eq!(
            d.cpus,
            Some(VcpuAffinity::PerVcpu(vec![
                CpuSet::Only([1].into_iter().collect()),
                CpuSet::Only([2].into_iter().collect()),
            ]))
        );
        assert_eq!(
            build(&format!("{PV}vcpus = 4\nmaxvcpus = 2\n")).unwrap_err(),
            "d.cfg:4: maxvcpus < vcpus (2 < 4)"
        );
        assert_eq!(
            build(&format!("{PV}cpus = '0,7-5'\n")).unwrap_err(),
            "d.cfg:3: cpus=\"0,7-5\": Invalid pcpu range: 7-5."
        );
    }

    #[test]
    fn actions() {
        let d = dom(&format!(
            "{PV}on_poweroff='preserve'\non_reboot='rename-restart'\non_crash='coredump-restart'\n"
        ));
        assert_eq!(d.on_poweroff, Action::Preserve);
        assert_eq!(d.on_reboot, Action::RenameRestart);
        assert_eq!(d.on_crash, Action::CoredumpRestart);
        for (name, a) in Action::ALL {
            assert_eq!(Action::from_name(name), Some(a));
            assert_eq!(a.as_str(), name);
        }
        assert_eq!(
            build(&format!("{PV}on_crash = 'explode'\n")).unwrap_err(),
            "d.cfg:3: Unknown on_crash action \"explode\" specified"
        );
    }

    #[test]
    fn required_and_checked() {
        assert_eq!(
            build("kernel = '/k'\n").unwrap_err(),
            "d.cfg: Domain name must be specified."
        );
        assert_eq!(
            build("name = 'g'\n").unwrap_err(),
            "d.cfg: Neither kernel nor bootloader specified"
        );
        assert_eq!(
            build("name = 'g'\nbootloader = 'pygrub'\n").unwrap_err(),
            "d.cfg:2: bootloader is not supported by Oxen: specify a kernel"
        );
        assert_eq!(
            build(&format!("{PV}uuid = 'nope'\n")).unwrap_err(),
            "d.cfg:3: Failed to parse UUID: nope"
        );
        let d = dom(&format!(
            "{PV}uuid = '00112233-4455-6677-8899-aabbccddeeff'\n"
        ));
        assert_eq!(
            d.uuid,
            Some([
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ])
        );
    }

    #[test]
    fn sched_params() {
        let d = dom(&format!("{PV}cpu_weight = 512\ncap = 50\n"));
        assert_eq!((d.cpu_weight, d.cap), (Some(512), Some(50)));
        assert_eq!(
            build(&format!("{PV}cpu_weight = 0\n")).unwrap_err(),
            "d.cfg:3: value `0' is smaller than minimum bound '1'"
        );
    }

    #[test]
    fn unknown_keys_warned() {
        let (_, w) = build(&format!("{PV}memroy = 5\nvfb = ['vnc=1']\nmemroy = 6\n")).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(
            w[0].to_string(),
            "Warning: ignoring unknown key \"memroy\" (d.cfg:5)"
        );
        assert_eq!(
            w[1].to_string(),
            "Warning: ignoring \"vfb\" (d.cfg:4): not supported by Oxen"
        );
    }

    #[test]
    fn device_lists_are_parsed() {
        let d = dom(&format!(
            "{PV}disk = ['phy:/dev/vg/g,xvda,w', 'file:/x.iso,xvdc:cdrom,r']\nvif = ['bridge=xenbr0', 'mac=00:16:3e:00:00:07']\n"
        ));
        assert_eq!(d.disk.len(), 2);
        assert_eq!(d.disk[0].target.as_deref(), Some("/dev/vg/g"));
        assert_eq!((d.disk[0].devid, d.disk[0].readwrite), (51712, true));
        assert_eq!((d.disk[1].vdev.as_str(), d.disk[1].cdrom), ("xvdc", true));
        assert_eq!(d.vif.len(), 2);
        assert_eq!(d.vif[0].bridge.as_deref(), Some("xenbr0"));
        assert_eq!((d.vif[0].devid, d.vif[1].devid), (Some(0), Some(1)));
        assert_eq!(d.vif[1].mac, Some([0, 0x16, 0x3e, 0, 0, 7]));
        assert_eq!(
            build(&format!("{PV}disk = 'phy:/dev/sda,xvda,w'\n")).unwrap_err(),
            "d.cfg:3: parameter `disk' is a single value but should be a list"
        );
    }

    #[test]
    fn bad_device_entries_name_file_line_and_entry() {
        let text = format!("{PV}disk = ['/a,raw,xvda,w',\n  '/b,raw,xvdb,rx']\n");
        let cfg = parse_config("d.cfg", &text).unwrap();
        let Err(Error::Device(e)) = DomainConfig::from_config(&cfg) else {
            panic!("expected a device error");
        };
        assert_eq!((e.key, e.index, e.line), ("disk", 1, 3));
        assert_eq!(
            e.to_string(),
            "d.cfg:3: config parsing error in disk specification: unknown value for access: near `rx' in `/b,raw,xvdb,rx'"
        );
        assert_eq!(
            build(&format!("{PV}disk = ['/a,raw,xvda,w', '/b,raw,d0p0,w']\n")).unwrap_err(),
            "d.cfg:3: disks `xvda' and `d0p0' are the same virtual device (51712)"
        );
        assert_eq!(
            build(&format!("{PV}vif = ['', 'devid=0']\n")).unwrap_err(),
            "d.cfg:3: two vifs with devid 0"
        );
        assert_eq!(
            build(&format!("{PV}vif = ['mac=00:16:3e']\n")).unwrap_err(),
            "d.cfg:3: Invalid parameter `mac'."
        );
    }

    #[test]
    fn cpuid_both_forms_and_errors_with_file_and_line() {
        assert_eq!(dom(PV).cpuid, None);
        let d = dom("name = 'g'\nkernel = '/k'\ncpuid = \"host,sse4_2=0\"\n");
        let c = d.cpuid.unwrap();
        assert_eq!(
            (c.entries[0].leaf, c.entries[0].regs[2].unwrap()[11]),
            (1, b'0')
        );
        let (d, w) = build(
            "name = 'g'\nkernel = '/k'\ncpuid = [ '0x80000001:edx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',\n '1:ecx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx0' ]\n",
        )
        .unwrap();
        assert!(w.is_empty(), "cpuid is honoured, not warned about: {w:?}");
        assert_eq!(d.cpuid.unwrap().entries.len(), 2);
        assert_eq!(
            build("name = 'g'\nkernel = '/k'\n\ncpuid = \"host,avx=maybe\"\n").unwrap_err(),
            "d.cfg:4: while parsing CPUID flag \"avx=maybe\": error #3: illegal CPUID value (must be: [0|1|x|k|s])"
        );
        assert_eq!(
            build("name = 'g'\nkernel = '/k'\ncpuid = [ '1:ecx=0' ]\n").unwrap_err(),
            "d.cfg:3: while parsing CPUID line \"1:ecx=0\": error #5: policy string must be exactly 32 characters long"
        );
        assert_eq!(
            build("name = 'g'\nkernel = '/k'\ncpuid = [ [ '1' ] ]\n").unwrap_err(),
            "d.cfg:3: item 0 of parameter `cpuid' is a list but should be a string"
        );
    }
}
