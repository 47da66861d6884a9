//! Xen 4.17 itself, for the side-by-side benchmarks (`scripts/bench
//! --only xen`) and the ABI test that boots the same PV kernel as Dom0 of
//! both hypervisors (`pv_bench_runs_as_dom0_of_xen_4_17` in
//! `tests/tests/boot.rs`).
//!
//! The hypervisor is Debian's: [`fetch`] runs `apt-get download
//! xen-hypervisor-4.17-amd64` into `target/xen-4.17/` (git-ignored, never
//! committed), unpacks it with `dpkg-deb -x` and gunzips
//! `/boot/xen-4.17-amd64.gz`, a 32-bit ELF with a Multiboot1 header, which
//! QEMU's `-kernel` loads directly; the Dom0 kernel is its `-initrd` (the
//! first Multiboot module). Later calls reuse the cache. `OXEN_XEN=FILE`
//! uses a Xen binary of your own instead.
//!
//! Xen halts the machine when its hardware domain powers off (`Hardware
//! Dom0 halted: halting machine`), so [`boot`] stops QEMU itself once Xen
//! says Dom0 is gone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::images::workspace_root;
use crate::qemu::{Echo, Found, Qemu, RunResult};

/// Debian's package.
pub const PACKAGE: &str = "xen-hypervisor-4.17-amd64";
/// The cache under the workspace.
pub const CACHE_DIR: &str = "target/xen-4.17";
/// The hypervisor inside the package.
pub const PACKAGE_BINARY: &str = "boot/xen-4.17-amd64.gz";
/// Xen's command line: the serial console, Dom0's memory (the same as
/// Oxen is given in the benchmarks), every message, and Xen's own
/// timestamps (seconds since it started).
pub const CMDLINE: &str = "console=com1 com1=115200,8n1 dom0_mem=256M,max:256M \
                           loglvl=all guest_loglvl=all console_timestamps=boot";
/// What Xen prints when its hardware domain has gone: powered off, shut
/// down (reboot), crashed; or Xen itself panicked.
pub const DOM0_GONE: &[&str] = &[
    "Hardware Dom0 halted",
    "Hardware Dom0 shutdown",
    "Hardware Dom0 crashed",
    "Panic on CPU",
];
/// The power-off line (what pv-bench's `SHUTDOWN_poweroff` gives).
pub const HALTED: &str = "Hardware Dom0 halted: halting machine";
/// Xen's line just before it starts Dom0.
pub const FREED_INIT: &str = "Freed ";

/// A usable Xen.
#[derive(Clone, Debug)]
pub struct Xen {
    /// The (gunzipped) hypervisor, an ELF32 with a Multiboot1 header.
    pub binary: PathBuf,
    /// The package version (or where the binary came from).
    pub version: String,
}

static FETCH: Mutex<()> = Mutex::new(());

/// The cache directory.
pub fn cache_dir() -> PathBuf {
    workspace_root().join(CACHE_DIR)
}

/// Xen 4.17 from the cache, or fetched and unpacked into it first
/// (`progress`: say so on stderr, it takes a few seconds). The error is
/// one line saying why there is no Xen.
pub fn fetch(progress: bool) -> Result<Xen, String> {
    if let Ok(p) = std::env::var("OXEN_XEN") {
        let binary = PathBuf::from(&p);
        if !binary.is_file() {
            return Err(format!("OXEN_XEN={p}: no such file"));
        }
        return Ok(Xen {
            binary,
            version: format!("OXEN_XEN={p}"),
        });
    }
    let _one = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let dir = cache_dir();
    let binary = dir.join("xen");
    let version_file = dir.join("VERSION");
    if binary.is_file() {
        if let Ok(v) = std::fs::read_to_string(&version_file) {
            return Ok(Xen {
                binary,
                version: v.trim().to_string(),
            });
        }
    }
    let say = |m: &str| {
        if progress {
            eprintln!("oxen-tests: {m}");
        }
    };
    // Per process: a test and scripts/bench may fetch at the same time
    // (the binary itself lands with a rename).
    let download = dir.join(format!("download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&download);
    std::fs::create_dir_all(&download).map_err(|e| format!("{}: {e}", download.display()))?;
    say(&format!(
        "fetching Xen 4.17: apt-get download {PACKAGE} (into {})",
        download.display()
    ));
    let out = Command::new("apt-get")
        .args(["download", "-q", PACKAGE])
        .current_dir(&download)
        .output()
        .map_err(|e| format!("cannot run apt-get download {PACKAGE}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let why = err
            .lines()
            .filter(|l| l.starts_with("E:"))
            .collect::<Vec<_>>()
            .join(" ");
        return Err(format!(
            "apt-get download {PACKAGE} failed ({}): {}",
            out.status,
            if why.is_empty() { err.trim() } else { &why }
        ));
    }
    let deb = std::fs::read_dir(&download)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("apt-get download {PACKAGE} left no .deb file"))?;
    let version = run_ok(
        Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&deb)
            .arg("Version"),
    )?;
    let root = download.join("root");
    say(&format!(
        "unpacking {} (dpkg-deb -x) and gunzipping /{PACKAGE_BINARY}",
        deb.file_name().unwrap_or_default().to_string_lossy()
    ));
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    let gz = root.join(PACKAGE_BINARY);
    if !gz.is_file() {
        return Err(format!("{PACKAGE} has no /{PACKAGE_BINARY}"));
    }
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(&gz)
        .output()
        .map_err(|e| format!("cannot run gzip: {e}"))?;
    if !out.status.success() || !is_elf32(&out.stdout) {
        return Err(format!(
            "gzip -dc {} did not give a 32-bit ELF ({})",
            gz.display(),
            out.status
        ));
    }
    let tmp = download.join("xen");
    std::fs::write(&tmp, &out.stdout).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let version = format!("{PACKAGE} {}", version.trim());
    std::fs::write(&version_file, format!("{version}\n")).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &binary).map_err(|e| format!("{}: {e}", binary.display()))?;
    let _ = std::fs::remove_dir_all(&download);
    say(&format!(
        "Xen ready: {} ({version})",
        binary
            .strip_prefix(workspace_root())
            .unwrap_or(&binary)
            .display()
    ));
    Ok(Xen { binary, version })
}

fn run_ok(c: &mut Command) -> Result<String, String> {
    let out = c.output().map_err(|e| format!("{c:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{c:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An ELF32 file (what QEMU's Multiboot1 loader takes).
pub fn is_elf32(b: &[u8]) -> bool {
    b.len() > 52 && b.starts_with(b"\x7fELF") && b[4] == 1
}

/// The QEMU invocation booting `xen` with `dom0` as Dom0: QEMU's
/// Multiboot1 loader (`-kernel xen -append CMDLINE -initrd DOM0`).
pub fn qemu(xen: &Xen, dom0: &Path, name: &str) -> Qemu {
    Qemu::new(name)
        .kernel(&xen.binary)
        .initrd(dom0)
        .append(CMDLINE)
}

/// A boot of Xen.
#[derive(Debug)]
pub struct XenRun {
    /// The console and how QEMU ended (killed by the harness once Xen said
    /// Dom0 was gone: that is how a Xen machine "powers off" here).
    pub result: RunResult,
    /// The line of [`DOM0_GONE`] that ended it, if any.
    pub ended: Option<String>,
    /// When Dom0's first console line (`first_line`) arrived, since QEMU
    /// started (the host's clock).
    pub first_line: Option<Duration>,
}

impl XenRun {
    /// Dom0 powered off (Xen halted the machine).
    pub fn powered_off(&self) -> bool {
        self.ended.as_deref().is_some_and(|l| l.contains(HALTED))
    }
}

/// Boots `q` (a [`qemu`] machine), notes when `first_line` appears, waits
/// up to `timeout` for Xen to say Dom0 is gone, then stops QEMU.
pub fn boot(
    q: Qemu,
    first_line: &str,
    timeout: Duration,
    echo: Option<Echo>,
) -> Result<XenRun, String> {
    let q = match echo {
        Some(e) => q.echo(e),
        None => q,
    };
    let mut m = q.spawn().map_err(|e| e.to_string())?;
    let mut first = None;
    let mut ended = None;
    let mut patterns = vec![first_line];
    patterns.extend_from_slice(DOM0_GONE);
    while let Ok(Found { index, line, at }) =
        m.wait_for_any(&patterns, timeout.saturating_sub(m.elapsed()))
    {
        if index == 0 && first.is_none() {
            first = Some(at);
            patterns[0] = "\u{0}never\u{0}";
            continue;
        }
        if index > 0 {
            ended = Some(line);
            break;
        }
    }
    // Let the last lines drain, then stop the halted machine.
    std::thread::sleep(Duration::from_millis(300));
    let result = m.kill();
    // The match may have caught the line half printed: take it whole.
    let ended = ended.map(|l| {
        result
            .log
            .lines()
            .find(|w| DOM0_GONE.iter().any(|p| w.contains(p)))
            .map_or(l, str::to_string)
    });
    Ok(XenRun {
        result,
        ended,
        first_line: first,
    })
}

/// Xen's own timestamp (seconds since it started, `console_timestamps=boot`)
/// of its last line before `first_line`: when it handed over to Dom0.
pub fn handover_secs(log: &str, first_line: &str) -> Option<f64> {
    let mut last = None;
    for l in log.lines() {
        if l.contains(first_line) {
            return last;
        }
        if let Some(t) = timestamp(l) {
            last = Some(t);
        }
    }
    None
}

/// `(XEN) [    1.234567] ...` → 1.234567.
pub fn timestamp(line: &str) -> Option<f64> {
    let rest = line.strip_prefix("(XEN) [")?;
    let (num, _) = rest.split_once(']')?;
    num.trim().parse().ok().filter(|v: &f64| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_handover() {
        let log = "(XEN) Xen version 4.17.7\n\
                   (XEN) [0000000043dd704c] Platform timer is 100.000MHz HPET\n\
                   (XEN) [    0.876944] mcheck_poll: started.\n\
                   (XEN) [    0.919980] Freed 656kB init memory\n\
                   pv-bench: PV microbenchmarks\n\
                   (XEN) [    1.033629] Hardware Dom0 halted: halting machine\n";
        assert_eq!(timestamp("(XEN) [    0.919980] Freed"), Some(0.91998));
        assert_eq!(timestamp("(XEN) [0000000043dd704c] Platform"), None);
        assert_eq!(timestamp("pv-bench: x"), None);
        assert_eq!(handover_secs(log, "pv-bench: PV"), Some(0.91998));
        assert_eq!(handover_secs(log, "not there"), None);
    }

    #[test]
    fn elf32_is_recognised() {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 1;
        assert!(is_elf32(&b));
        b[4] = 2;
        assert!(!is_elf32(&b));
        assert!(!is_elf32(b"\x1f\x8b gzip"));
    }
}
