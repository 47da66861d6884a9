//! Putting an Oxen boot together: the hypervisor, its command line, Dom0's
//! kernel and command line, and Dom0's ramdisk, delivered either through
//! QEMU's PVH loader (one `-initrd` holding an Oxen module bundle) or through
//! a GRUB ISO (Multiboot2 `module2` lines).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bundle::Module;
use crate::cpio::CpioWriter;
use crate::qemu::{Media, Qemu, DEFAULT_APPEND};

/// The contents of `/etc/oxen-release` in Dom0's ramdisk.
pub fn release_line() -> String {
    format!("Oxen {}", env!("CARGO_PKG_VERSION"))
}

/// Path of the release file inside the ramdisk.
pub const RELEASE_FILE: &str = "/etc/oxen-release";

/// Where Dom0's ramdisk carries the example guest's `xl` config ...
pub const HELLO_CFG_PATH: &str = "/etc/xen/hello.cfg";
/// ... and the example guest's kernel (pv-guest-lib's `examples/hello`).
pub const HELLO_KERNEL_PATH: &str = "/boot/hello";
/// The example guest's config (dom0-tools/etc/xen/hello.cfg).
pub const HELLO_CFG: &str = include_str!("../../dom0-tools/etc/xen/hello.cfg");
/// The image shipped at [`HELLO_KERNEL_PATH`].
pub const HELLO_KERNEL_IMAGE: &str = "examples/hello";

/// A file to put into Dom0's ramdisk: its path there and its bytes.
pub type RamdiskFile = (String, Vec<u8>);

/// The files every Dom0 ramdisk carries besides the release file: the
/// example guest's config and, if it has been built, its kernel.
pub fn standard_files(images: &crate::images::Images) -> Vec<RamdiskFile> {
    let mut v = vec![(HELLO_CFG_PATH.to_string(), HELLO_CFG.as_bytes().to_vec())];
    if let Ok(k) = std::fs::read(images.dir.join(HELLO_KERNEL_IMAGE)) {
        v.push((HELLO_KERNEL_PATH.to_string(), k));
    }
    v
}

/// The files a test kernel's ramdisk carries (see
/// [`crate::images::KERNEL_FILES`]): `(path, image)` pairs read from
/// `images`.
pub fn kernel_files(
    images: &crate::images::Images,
    files: &[(&str, &str)],
) -> Result<Vec<RamdiskFile>, String> {
    files
        .iter()
        .map(|(path, image)| {
            let p = images.get(image)?;
            let data = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok((path.to_string(), data))
        })
        .collect()
}

/// Builds Dom0's ramdisk: `/etc/oxen-release`, the [`standard_files`],
/// and each of `adds`: an xl config (`*.cfg`) as `/etc/xen/<basename>`,
/// anything else (a guest kernel) as `/boot/<basename>` (mode 0755 if
/// executable on the host, else 0644).
pub fn dom0_ramdisk(adds: &[PathBuf]) -> Result<Vec<u8>, String> {
    dom0_ramdisk_with(adds, &standard_files(&crate::images::Images::locate()))
}

/// [`dom0_ramdisk`] with `files` (path, bytes) instead of the standard
/// ones.
pub fn dom0_ramdisk_with(adds: &[PathBuf], files: &[RamdiskFile]) -> Result<Vec<u8>, String> {
    let mut w = CpioWriter::new();
    w.add_file(
        RELEASE_FILE,
        0o644,
        format!("{}\n", release_line()).as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    for (path, data) in files {
        let perm = if path.starts_with("/boot/") {
            0o755
        } else {
            0o644
        };
        w.add_file(path, perm, data)
            .map_err(|e| format!("{path}: {e}"))?;
    }
    for p in adds {
        let data = std::fs::read(p).map_err(|e| format!("--add {}: {e}", p.display()))?;
        let base = p
            .file_name()
            .and_then(|b| b.to_str())
            .ok_or_else(|| format!("--add {}: no usable file name", p.display()))?;
        let perm = executable_perm(p);
        w.add_file(&add_path(base), perm, &data)
            .map_err(|e| format!("--add {}: {e}", p.display()))?;
    }
    Ok(w.finish())
}

/// Where `--add` puts a file called `base` in Dom0's ramdisk: xl configs
/// in /etc/xen (where `xl create NAME.cfg` looks), the rest in /boot.
pub fn add_path(base: &str) -> String {
    if base.ends_with(".cfg") {
        format!("/etc/xen/{base}")
    } else {
        format!("/boot/{base}")
    }
}

#[cfg(unix)]
fn executable_perm(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(p) {
        Ok(m) if m.permissions().mode() & 0o111 != 0 => 0o755,
        _ => 0o644,
    }
}

#[cfg(not(unix))]
fn executable_perm(_: &Path) -> u32 {
    0o644
}

/// Which firmware path boots the hypervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootPath {
    /// QEMU `-kernel` (PVH entry note).
    Pvh,
    /// GRUB ISO (Multiboot2 header).
    Grub,
}

impl fmt::Display for BootPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BootPath::Pvh => "PVH (qemu -kernel)",
            BootPath::Grub => "Multiboot2 (GRUB ISO)",
        })
    }
}

/// A boot module's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    File(PathBuf),
    Bytes(Vec<u8>),
}

impl Payload {
    fn read(&self) -> Result<Vec<u8>, String> {
        match self {
            Payload::File(p) => std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())),
            Payload::Bytes(b) => Ok(b.clone()),
        }
    }
}

/// Everything that makes up one Oxen boot.
#[derive(Debug, Clone)]
pub struct OxenBoot {
    pub path: BootPath,
    pub hypervisor: PathBuf,
    /// The hypervisor's command line.
    pub append: String,
    /// Module 1; `None` boots with no modules at all.
    pub dom0: Option<Payload>,
    /// Module 1's command line: Dom0's command line.
    pub dom0_cmdline: String,
    /// Module 2; `None` leaves it out.
    pub ramdisk: Option<Payload>,
}

impl OxenBoot {
    /// PVH, default command line, the given Dom0 and the default ramdisk.
    pub fn new(hypervisor: impl Into<PathBuf>, dom0: impl Into<PathBuf>) -> Result<Self, String> {
        Ok(Self {
            path: BootPath::Pvh,
            hypervisor: hypervisor.into(),
            append: DEFAULT_APPEND.into(),
            dom0: Some(Payload::File(dom0.into())),
            dom0_cmdline: String::new(),
            ramdisk: Some(Payload::Bytes(dom0_ramdisk(&[])?)),
        })
    }

    /// The boot modules, in order, with their command lines.
    pub fn modules(&self) -> Result<Vec<Module>, String> {
        let mut m = Vec::new();
        if let Some(d) = &self.dom0 {
            m.push(Module::new(d.read()?, self.dom0_cmdline.clone()));
            if let Some(r) = &self.ramdisk {
                m.push(Module::new(r.read()?, ""));
            }
        }
        Ok(m)
    }

    /// Writes what QEMU needs into `work` (a bundle or an ISO) and returns
    /// a [`Qemu`] (contract defaults) that boots it.
    pub fn qemu(&self, name: &str, work: &Path) -> Result<Qemu, String> {
        if !self.hypervisor.is_file() {
            return Err(format!(
                "hypervisor image {} does not exist",
                self.hypervisor.display()
            ));
        }
        let q = Qemu::new(name);
        match self.path {
            BootPath::Pvh => {
                let mods = self.modules()?;
                let mut q = q.kernel(&self.hypervisor).append(self.append.clone());
                if !mods.is_empty() {
                    q = q.modules(&mods, work.join("modules.oxenmods"))?;
                }
                Ok(q)
            }
            BootPath::Grub => {
                let iso = make_iso(work, self)?;
                Ok(q.media(Media::Cdrom(iso)))
            }
        }
    }
}

/// The grub.cfg for a boot.
pub fn grub_cfg(boot: &OxenBoot) -> String {
    let mut s = String::from(
        "set timeout=0\n\
         set default=0\n\
         serial --unit=0 --speed=115200\n\
         terminal_input serial\n\
         terminal_output serial\n\
         menuentry \"Oxen\" {\n",
    );
    s.push_str(&format!("    multiboot2 /boot/xen-core {}\n", boot.append).replace(" \n", "\n"));
    if boot.dom0.is_some() {
        s.push_str(&format!("    module2 /boot/dom0 {}\n", boot.dom0_cmdline).replace(" \n", "\n"));
        if boot.ramdisk.is_some() {
            s.push_str("    module2 /boot/dom0-ramdisk.cpio\n");
        }
    }
    s.push_str("    boot\n}\n");
    s
}

fn check_grub_word(what: &str, s: &str) -> Result<(), String> {
    if s.chars().any(|c| {
        matches!(
            c,
            '\n' | '\r' | '"' | '\'' | '\\' | '$' | ';' | '{' | '}' | '#'
        )
    }) {
        return Err(format!(
            "{what} {s:?} has characters grub.cfg would interpret"
        ));
    }
    Ok(())
}

/// Builds a GRUB ISO for `boot` in `work` with `grub-mkrescue` and returns its path.
pub fn make_iso(work: &Path, boot: &OxenBoot) -> Result<PathBuf, String> {
    check_grub_word("hypervisor command line", &boot.append)?;
    check_grub_word("Dom0 command line", &boot.dom0_cmdline)?;
    let root = work.join("iso-root");
    let bootdir = root.join("boot");
    let grubdir = bootdir.join("grub");
    std::fs::create_dir_all(&grubdir).map_err(|e| format!("{}: {e}", grubdir.display()))?;
    let write = |name: &str, data: &[u8]| {
        let p = bootdir.join(name);
        std::fs::write(&p, data).map_err(|e| format!("{}: {e}", p.display()))
    };
    write("xen-core", &Payload::File(boot.hypervisor.clone()).read()?)?;
    if let Some(d) = &boot.dom0 {
        write("dom0", &d.read()?)?;
    }
    if let Some(r) = &boot.ramdisk {
        write("dom0-ramdisk.cpio", &r.read()?)?;
    }
    std::fs::write(grubdir.join("grub.cfg"), grub_cfg(boot)).map_err(|e| e.to_string())?;
    let iso = work.join("oxen.iso");
    let out = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&iso)
        .arg(&root)
        .output()
        .map_err(|e| {
            format!("cannot run grub-mkrescue ({e}): install grub-common, grub-pc-bin, xorriso and mtools")
        })?;
    if !out.status.success() || !iso.is_file() {
        return Err(format!(
            "grub-mkrescue failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(iso)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio;

    #[test]
    fn ramdisk_holds_release_and_adds() {
        let dir = std::env::temp_dir().join(format!("oxen-ramdisk-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("guest.cfg");
        std::fs::write(&f, "name = \"g\"\n").unwrap();
        let a = dom0_ramdisk_with(std::slice::from_ref(&f), &[]).unwrap();
        let e = cpio::parse(&a).unwrap();
        let names: Vec<&str> = e.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["etc", "etc/oxen-release", "etc/xen", "etc/xen/guest.cfg"]
        );
        assert_eq!(
            e[1].data,
            format!("Oxen {}\n", env!("CARGO_PKG_VERSION")).as_bytes()
        );
        assert_eq!(e[3].data, b"name = \"g\"\n");
        assert_eq!(add_path("guest"), "/boot/guest");
        assert!(dom0_ramdisk(&[dir.join("missing")])
            .unwrap_err()
            .contains("missing"));
        // Two adds with one basename collide.
        let g = dir.join("sub");
        std::fs::create_dir_all(&g).unwrap();
        std::fs::write(g.join("guest.cfg"), "x").unwrap();
        assert!(dom0_ramdisk(&[f.clone(), g.join("guest.cfg")]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ramdisk_carries_the_example_guest_config() {
        let a = dom0_ramdisk(&[]).unwrap();
        let e = cpio::parse(&a).unwrap();
        let cfg = e
            .iter()
            .find(|e| e.name == "etc/xen/hello.cfg")
            .expect("etc/xen/hello.cfg in the ramdisk");
        let text = std::str::from_utf8(&cfg.data).unwrap();
        assert!(text.contains("kernel = \"/boot/hello\""), "{text}");
        assert!(text.contains("name = \"hello\""), "{text}");
        // Extra files land where they are asked to, executable under /boot.
        let a = dom0_ramdisk_with(&[], &[("/boot/g".into(), b"elf".to_vec())]).unwrap();
        let e = cpio::parse(&a).unwrap();
        let g = e.iter().find(|e| e.name == "boot/g").unwrap();
        assert_eq!(g.data, b"elf");
    }

    #[test]
    fn grub_cfg_follows_the_contract() {
        let b = OxenBoot {
            path: BootPath::Grub,
            hypervisor: "x".into(),
            append: "loglvl=info".into(),
            dom0: Some(Payload::Bytes(vec![])),
            dom0_cmdline: "".into(),
            ramdisk: Some(Payload::Bytes(vec![])),
        };
        let c = grub_cfg(&b);
        assert!(c.starts_with("set timeout=0\n"));
        assert!(c.contains(
            "serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\n"
        ));
        assert!(c.contains("    multiboot2 /boot/xen-core loglvl=info\n"));
        assert!(c.contains("    module2 /boot/dom0\n"));
        assert!(c.contains("    module2 /boot/dom0-ramdisk.cpio\n"));
        let b2 = OxenBoot {
            dom0: None,
            ..b.clone()
        };
        assert!(!grub_cfg(&b2).contains("module2"));
        assert!(check_grub_word("x", "loglvl=all console=com1").is_ok());
        assert!(check_grub_word("x", "a; reboot").is_err());
    }

    #[test]
    fn modules_are_dom0_then_ramdisk() {
        let b = OxenBoot {
            path: BootPath::Pvh,
            hypervisor: "x".into(),
            append: String::new(),
            dom0: Some(Payload::Bytes(b"kernel".to_vec())),
            dom0_cmdline: "debug".into(),
            ramdisk: Some(Payload::Bytes(b"rd".to_vec())),
        };
        let m = b.modules().unwrap();
        assert_eq!(
            m,
            vec![
                Module::new(b"kernel".to_vec(), "debug"),
                Module::new(b"rd".to_vec(), "")
            ]
        );
        assert!(OxenBoot { dom0: None, ..b }.modules().unwrap().is_empty());
    }
}
