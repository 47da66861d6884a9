//! xl.cfg, the domain configuration files of Xen's `xl` toolstack, for
//! Oxen's `xl create`.
//!
//! What it owns: reading a config the way Xen's libxlu reads it (same
//! grammar, same values, same error messages), applying `key=value`
//! overrides from the command line the way `xl create` does, and turning
//! the result into a typed [`DomainConfig`] with xl's defaults and checks.
//!
//! - `lexer`: libxlu's flex scanner, quirks included;
//! - [`parser`]: libxlu's bison grammar as its LALR(1) automaton, the
//!   settings store and the libxlu-format [`ParseError`]s;
//! - [`value`]: [`Config`], [`Value`] and the typed getters;
//! - [`cpus`]: CPU lists (`"0-3,^2"`);
//! - [`cpuid`]: `cpuid=`, CPU feature levelling (libxl and xend forms);
//! - [`disk`]: disk specs (`'phy:/dev/vg/g,xvda,w'`) and vdev numbers;
//! - [`vif`]: vif specs (`'bridge=xenbr0,mac=...'`) and MAC addresses;
//! - [`domain`]: [`DomainConfig`] and the [`Warning`]s for ignored keys.
//!
//! ```text
//! # /etc/xen/guest.cfg
//! name    = "guest"
//! type    = "pv"
//! kernel  = "/boot/vmlinuz"; ramdisk = "/boot/initrd.img"
//! root    = "/dev/xvda1 ro"
//! extra   = "console=hvc0"
//! memory  = 512
//! vcpus   = 2
//! disk    = [ 'phy:/dev/vg0/guest,xvda,w', ]
//! vif     = [ 'bridge=xenbr0' ]
//! on_crash = "preserve"
//! ```
//!
//! Written by hand rather than with a crate: no parser crate reproduces
//! libxlu's exact grammar and messages, and the whole is a few hundred lines
//! of `no_std` + `alloc` code, tested on the host.

#![forbid(unsafe_code)]

pub mod cpuid;
pub mod cpus;
pub mod disk;
pub mod domain;
mod lexer;
pub mod parser;
pub mod value;
pub mod vif;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub use cpuid::{ApplyError, CpuidDelta, CpuidError};
pub use cpus::{parse_cpu_list, CpuSet};
pub use disk::{
    parse_disk_spec, parse_disk_spec_parts, vdev_to_devid, DiskError, DiskFormat, DiskSpec,
};
pub use domain::{
    Action, DeviceError, DeviceErrorKind, DomainConfig, DomainError, DomainType, VcpuAffinity,
    Warning, WarningKind,
};
pub use parser::{ParseError, ParseErrors};
pub use value::{Config, Op, Setting, Value, ValueError, ValueErrorKind};
pub use vif::{generate_mac, parse_vif_spec, Mac, MacGenerator, VifError, VifSpec};

/// Why a config was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// Syntax or lexical errors (every one found, in order).
    Parse(ParseErrors),
    /// A setting of the wrong kind (a list for a string, not a number, ...).
    Value(ValueError),
    /// A setting with a bad value, or a missing one.
    Domain(DomainError),
    /// A bad `disk` or `vif` entry.
    Device(DeviceError),
}

impl From<ValueError> for Error {
    fn from(e: ValueError) -> Self {
        Error::Value(e)
    }
}

impl From<ParseErrors> for Error {
    fn from(e: ParseErrors) -> Self {
        Error::Parse(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Parse(e) => e.fmt(f),
            Error::Value(e) => e.fmt(f),
            Error::Domain(e) => e.fmt(f),
            Error::Device(e) => e.fmt(f),
        }
    }
}

/// Parses config text; `file_name` is the name errors carry.
pub fn parse_config(file_name: &str, text: &str) -> Result<Config, ParseErrors> {
    parser::parse(file_name, text)
}

/// The text `xl create` parses for a config file and its command-line
/// overrides: the overrides, one per line, after the file and a newline, so
/// they win over the file's settings (and an error in one is reported with
/// a line number past the file's end, as xl does).
pub fn with_overrides(text: &str, overrides: &[&str]) -> String {
    let mut all = String::from(text);
    if !overrides.is_empty() {
        all.push('\n');
        for o in overrides {
            all.push_str(o);
            all.push('\n');
        }
        all.push('\n');
    }
    all
}

/// Sorts `xl create`'s positional arguments as xl does: one containing
/// `=` is an override (`memory=512`), the first other one is the config
/// file, and a second other one is a usage error (returned).
pub fn split_create_args<'a>(args: &[&'a str]) -> Result<(Option<&'a str>, Vec<&'a str>), &'a str> {
    let mut file = None;
    let mut overrides = Vec::new();
    for &a in args {
        if a.contains('=') {
            overrides.push(a);
        } else if file.is_none() {
            file = Some(a);
        } else {
            return Err(a);
        }
    }
    Ok((file, overrides))
}

/// Reads a domain config as `xl create FILE KEY=VALUE...` does: parses the
/// file with the overrides applied after it, then builds the
/// [`DomainConfig`]. Returns it with the warnings for ignored keys.
pub fn load(
    file_name: &str,
    text: &str,
    overrides: &[&str],
) -> Result<(DomainConfig, Vec<Warning>), Error> {
    let cfg = parse_config(file_name, &with_overrides(text, overrides))?;
    DomainConfig::from_config(&cfg)
}

/// The `vif = [ ... ]` line a saved or migrated guest's config ends
/// with, so that its NICs come back with the MACs they have now (libxl
/// records generated MACs in the domain's config; a guest whose MAC
/// changed under it would lose every peer's ARP entry for it). `text` is
/// the guest's config (overrides included); `live` its vifs now, as
/// (devid, MAC, bridge). Entries that name a MAC keep it; entries of
/// vifs detached since are dropped; vifs attached since are added.
/// `None` if the guest has no vif and the config names none.
pub fn pinned_vif_line(text: &str, live: &[(u32, [u8; 6], &str)]) -> Option<String> {
    use alloc::format;
    let raw: Vec<String> = parse_config("saved.cfg", text)
        .ok()
        .and_then(|c| {
            c.get_string_list("vif")
                .ok()
                .flatten()
                .map(|l| l.into_iter().map(String::from).collect())
        })
        .unwrap_or_default();
    if raw.is_empty() && live.is_empty() {
        return None;
    }
    let mut entries: Vec<String> = Vec::new();
    let mut seen: Vec<u32> = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let Ok(spec) = vif::parse_vif_spec(s, i as u32) else {
            continue;
        };
        let devid = spec.devid.unwrap_or(i as u32);
        let Some(&(_, mac, _)) = live.iter().find(|l| l.0 == devid) else {
            continue;
        };
        seen.push(devid);
        let mut e = s.clone();
        if spec.devid != Some(i as u32) || entries.len() != i {
            // Its index no longer says its devid.
            if !s.contains("devid=") {
                e = format!("devid={devid},{e}");
            }
        }
        if spec.mac.is_none() {
            e = format!("{e},mac={}", vif::Mac(mac));
        }
        entries.push(e);
    }
    for &(devid, mac, bridge) in live {
        if !seen.contains(&devid) {
            entries.push(format!(
                "devid={devid},mac={},bridge={bridge}",
                vif::Mac(mac)
            ));
        }
    }
    let quoted: Vec<String> = entries
        .iter()
        .map(|e| {
            if e.contains('\'') {
                format!("\"{e}\"")
            } else {
                format!("'{e}'")
            }
        })
        .collect();
    Some(format!("vif = [ {} ]", quoted.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn a_saved_config_pins_the_macs_its_vifs_have_now() {
        let mac = [0x00, 0x16, 0x3e, 0x01, 0x02, 0x03];
        let other = [0x00, 0x16, 0x3e, 0x0a, 0x0b, 0x0c];
        let text = "name = 'g'\nkernel = '/k'\nvif = [ 'bridge=xenbr0', 'mac=00:16:3e:0a:0b:0c,bridge=br1' ]\n";
        let line = pinned_vif_line(text, &[(0, mac, "xenbr0"), (1, other, "br1")]).unwrap();
        assert_eq!(
            line,
            "vif = [ 'bridge=xenbr0,mac=00:16:3e:01:02:03', 'mac=00:16:3e:0a:0b:0c,bridge=br1' ]"
        );
        // The config with the line after it reads back with those MACs.
        let (d, _) = load("g.cfg", text, &[line.as_str()]).unwrap();
        assert_eq!(d.vif.len(), 2);
        assert_eq!(d.vif[0].mac, Some(mac));
        assert_eq!(d.vif[1].mac, Some(other));
        assert_eq!(d.vif[1].bridge.as_deref(), Some("br1"));
        // vif 0 detached, vif 2 attached since.
        let line = pinned_vif_line(text, &[(1, other, "br1"), (2, mac, "xenbr0")]).unwrap();
        let (d, _) = load("g.cfg", text, &[line.as_str()]).unwrap();
        let got: Vec<_> = d.vif.iter().map(|v| (v.devid, v.mac)).collect();
        assert_eq!(got, vec![(Some(1), Some(other)), (Some(2), Some(mac))]);
        // No vif at all: nothing to add.
        assert_eq!(pinned_vif_line("name = 'g'\n", &[]), None);
        // Every vif gone: an empty list.
        let line = pinned_vif_line(text, &[]).unwrap();
        assert_eq!(line, "vif = [  ]");
        assert!(load("g.cfg", text, &[line.as_str()])
            .unwrap()
            .0
            .vif
            .is_empty());
    }

    #[test]
    fn overrides_win_and_are_numbered_after_the_file() {
        let text = "name = 'g'\nkernel = '/k'\nmemory = 128\n";
        let (d, w) = load("g.cfg", text, &["memory=256", "vcpus=2"]).unwrap();
        assert_eq!(d.memory_mib, 256);
        assert_eq!(d.vcpus, 2);
        assert!(w.is_empty());
        let e = load("g.cfg", text, &["memory=lots"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "g.cfg:5: config parsing error near `lots': syntax error, unexpected IDENT, expecting STRING or NUMBER or '['"
        );
        // A file without a final newline still ends before the overrides.
        let (d, _) = load("g.cfg", "name = 'g'\nkernel = '/k'", &["name='h'"]).unwrap();
        assert_eq!(d.name, "h");
    }

    #[test]
    fn create_args() {
        assert_eq!(
            split_create_args(&["g.cfg", "memory=512", "name='x y'"]),
            Ok((Some("g.cfg"), vec!["memory=512", "name='x y'"]))
        );
        assert_eq!(
            split_create_args(&["vcpus=2", "g.cfg"]),
            Ok((Some("g.cfg"), vec!["vcpus=2"]))
        );
        assert_eq!(split_create_args(&[]), Ok((None, vec![])));
        assert_eq!(split_create_args(&["a.cfg", "b.cfg"]), Err("b.cfg"));
    }

    #[test]
    fn error_kinds_display() {
        let e = load("g.cfg", "name = 'g'\nkernel = ['/k']\n", &[]).unwrap_err();
        assert!(matches!(e, Error::Value(_)));
        assert_eq!(
            e.to_string(),
            "g.cfg:2: parameter `kernel' is a list but should be a single value"
        );
    }
}
