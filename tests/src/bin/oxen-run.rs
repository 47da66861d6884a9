//! `oxen-run`: the logic behind `scripts/run`.
//!
//! Boots Oxen (xen-core + Dom0 + Dom0's ramdisk) under QEMU, either on the
//! terminal (interactive) or driven from standard input (`--batch`).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use oxen_tests::batch;
use oxen_tests::boot::{dom0_ramdisk, BootPath, OxenBoot, Payload};
use oxen_tests::images::{self, Images};
use oxen_tests::qemu::{self, Echo};
use oxen_tests::Exit;

const USAGE: &str = "\
Usage: scripts/run [OPTIONS]

Boots Oxen (xen-core with its Dom0) under QEMU and lands at Dom0's `dom0# `
prompt on this terminal (quit with Ctrl-A X).

Options:
  --batch            Read Dom0 shell commands from standard input, one per line
                     (blank lines and lines starting with # are skipped), type
                     each after the prompt, then `poweroff`. Prints the console.
                     Exits 0 only if Dom0 powered off and its last VERDICT line
                     says SUCCESS; otherwise prints why and exits 1.
  --dom0 FILE        Boot FILE as Dom0 instead of the built `dom0` (a path, or
                     the name of a built test kernel such as dom0-hostile).
  --dom0-append STR  Dom0's command line (boot module 1's command line).
  --add FILE         Put FILE into Dom0's ramdisk (repeatable): an xl config
                     (*.cfg) as /etc/xen/<name>, anything else (a guest
                     kernel) as /boot/<name>.
  --disk FILE        Give the machine a virtio disk backed by FILE (repeatable;
                     Dom0 names them /dev/vda, /dev/vdb, ... in order). A raw
                     image, or qcow2 (detected from its header). Guests get
                     it with disk = [ \"phy:/dev/vda,xvda,w\" ], or a raw image
                     file on its FAT file system with
                     disk = [ \"/mnt/vda/guest.img,raw,xvda,rw\" ].
  --net SPEC         The machine's virtio NIC, the uplink of the guests'
                     bridge: \"user\" (the default: QEMU user networking,
                     10.0.2.0/24), \"user,hostfwd=tcp:127.0.0.1:8080-10.0.2.15:80\"
                     (any options of QEMU's -netdev user), or \"none\".
  --append STR       The hypervisor's command line (default \"loglvl=info\").
  --smp N            Number of CPUs (default 2).
  --mem SIZE         Memory, as QEMU's -m takes it (default 512M).
  --cpu MODEL        QEMU CPU model (default \"max,-smap\").
  --accel tcg|kvm    QEMU accelerator (default tcg; kvm needs real VT-x/SVM).
  --grub             Boot through a GRUB ISO (Multiboot2) instead of QEMU's
                     PVH loader (-kernel).
  --timeout SECS     Batch mode: fail if the run takes longer (default 300).
  --no-build         Use the images already built instead of building them.
  --vmx              Run under Bochs with a VT-x CPU model (not yet supported).
  -h, --help         Show this help.

Environment: OXEN_QEMU (QEMU binary), OXEN_SKIP_BUILD=1, OXEN_IMAGES=DIR.
";

#[derive(Debug, Clone, PartialEq)]
struct Options {
    batch: bool,
    dom0: Option<String>,
    dom0_append: String,
    adds: Vec<PathBuf>,
    append: String,
    smp: u32,
    mem: String,
    cpu: String,
    accel: String,
    grub: bool,
    timeout: Duration,
    build: bool,
    disks: Vec<PathBuf>,
    /// `-netdev user` options, or None for no NIC.
    net: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            batch: false,
            dom0: None,
            dom0_append: String::new(),
            adds: Vec::new(),
            append: qemu::DEFAULT_APPEND.into(),
            smp: qemu::DEFAULT_SMP,
            mem: qemu::DEFAULT_MEM.into(),
            cpu: qemu::DEFAULT_CPU.into(),
            accel: qemu::DEFAULT_ACCEL.into(),
            grub: false,
            timeout: Duration::from_secs(300),
            build: true,
            disks: Vec::new(),
            net: Some(String::new()),
        }
    }
}

#[derive(Debug, PartialEq)]
enum Parsed {
    Run(Box<Options>),
    Help,
}

fn parse_args(args: &[String]) -> Result<Parsed, String> {
    let mut o = Options::default();
    let mut timeout_given = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        // Accept both `--opt value` and `--opt=value`.
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            match inline.clone().or_else(|| it.next().cloned()) {
                Some(v) => Ok(v),
                None => Err(format!("{name} needs {what}")),
            }
        };
        match name {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--batch" => o.batch = true,
            "--grub" => o.grub = true,
            "--no-build" => o.build = false,
            "--vmx" => {
                return Err(
                    "--vmx is not yet supported: running under Bochs with a VT-x CPU model \
                            needs the HVM issue (the VMX backend) to land first"
                        .into(),
                )
            }
            "--dom0" => o.dom0 = Some(value("a FILE")?),
            "--dom0-append" => o.dom0_append = value("a command line")?,
            "--add" => o.adds.push(PathBuf::from(value("a FILE")?)),
            "--append" => o.append = value("a command line")?,
            "--disk" => o.disks.push(PathBuf::from(value("a FILE")?)),
            "--net" => {
                let v = value("a SPEC (user[,OPTIONS] or none)")?;
                o.net = match v.as_str() {
                    "none" => None,
                    "user" => Some(String::new()),
                    _ => match v.strip_prefix("user,") {
                        Some(opts) if !opts.is_empty() => Some(opts.to_string()),
                        _ => {
                            return Err(format!("--net {v:?}: expected none, user or user,OPTIONS"))
                        }
                    },
                };
            }
            "--smp" => {
                let v = value("a number of CPUs")?;
                o.smp = v
                    .parse()
                    .ok()
                    .filter(|&n| (1..=255).contains(&n))
                    .ok_or_else(|| format!("--smp {v:?}: expected a number from 1 to 255"))?;
            }
            "--mem" => {
                o.mem = value("a SIZE")?;
                if o.mem.is_empty() {
                    return Err("--mem needs a SIZE such as 512M".into());
                }
            }
            "--cpu" => o.cpu = value("a CPU MODEL")?,
            "--accel" => {
                o.accel = value("tcg or kvm")?;
                if o.accel != "tcg" && o.accel != "kvm" {
                    return Err(format!("--accel {:?}: expected tcg or kvm", o.accel));
                }
            }
            "--timeout" => {
                let v = value("SECS")?;
                let s: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| {
                        format!("--timeout {v:?}: expected a positive number of seconds")
                    })?;
                o.timeout = Duration::from_secs_f64(s);
                timeout_given = true;
            }
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    if timeout_given && !o.batch {
        return Err("--timeout only applies with --batch".into());
    }
    Ok(Parsed::Run(Box::new(o)))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_args(&args) {
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(o)) => *o,
        Err(e) => {
            eprintln!("oxen-run: error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("oxen-run: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn resolve_dom0(images: &Images, dom0: &Option<String>) -> Result<PathBuf, String> {
    match dom0 {
        None => images.dom0(),
        Some(f) => {
            let p = Path::new(f);
            if p.is_file() {
                Ok(p.to_path_buf())
            } else if !f.contains('/') && images.dir.join(f).is_file() {
                Ok(images.dir.join(f))
            } else {
                Err(format!(
                    "--dom0 {f}: no such file (nor a built image of that name in {})",
                    images.dir.display()
                ))
            }
        }
    }
}

fn run(o: &Options) -> Result<ExitCode, String> {
    for a in &o.adds {
        if !a.is_file() {
            return Err(format!("--add {}: no such file", a.display()));
        }
    }
    for d in &o.disks {
        if !d.is_file() {
            return Err(format!(
                "--disk {}: no such file (make one with: qemu-img create -f raw {} 1G)",
                d.display(),
                d.display()
            ));
        }
    }
    let images = if o.build {
        images::build_images()?.clone()
    } else {
        Images::locate()
    };
    let hypervisor = images.hypervisor()?;
    let dom0 = resolve_dom0(&images, &o.dom0)?;
    let boot = OxenBoot {
        path: if o.grub {
            BootPath::Grub
        } else {
            BootPath::Pvh
        },
        hypervisor,
        append: o.append.clone(),
        dom0: Some(Payload::File(dom0.clone())),
        dom0_cmdline: o.dom0_append.clone(),
        ramdisk: Some(Payload::Bytes(dom0_ramdisk(&o.adds)?)),
    };
    let name = format!("oxen-run-{}", std::process::id());
    let work =
        images::work_dir(&name).map_err(|e| format!("cannot make a scratch directory: {e}"))?;
    let result = (|| {
        let q = boot
            .qemu(&name, &work)?
            .cpu(o.cpu.clone())
            .smp(o.smp)
            .mem(o.mem.clone())
            .accel(o.accel.clone());
        let q = machine_devices(q, o)?;
        let what = format!(
            "{} with Dom0 {}, {} CPU(s), {} RAM, -cpu {}, {}",
            boot.path,
            dom0.display(),
            o.smp,
            o.mem,
            o.cpu,
            o.accel.to_uppercase()
        );
        if o.batch {
            batch_mode(q, o, &what)
        } else {
            interactive(q, &what)
        }
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// The machine's disks and NIC (`--disk`, `--net`).
fn machine_devices(mut q: qemu::Qemu, o: &Options) -> Result<qemu::Qemu, String> {
    for (n, d) in o.disks.iter().enumerate() {
        let mut head = [0u8; 4];
        let format = match std::fs::File::open(d).and_then(|mut f| {
            use std::io::Read;
            f.read_exact(&mut head)
        }) {
            Ok(()) if head == *b"QFI\xfb" => "qcow2",
            _ => "raw",
        };
        let path = d.display().to_string();
        if path.contains(',') {
            return Err(format!(
                "--disk {path}: a path with a comma cannot be given to QEMU"
            ));
        }
        q = q
            .arg("-drive")
            .arg(format!("file={path},if=none,id=disk{n},format={format}"))
            .arg("-device")
            .arg(format!("virtio-blk-pci,drive=disk{n}"));
    }
    if let Some(opts) = &o.net {
        let netdev = if opts.is_empty() {
            "user,id=net0".to_string()
        } else {
            format!("user,id=net0,{opts}")
        };
        q = q
            .arg("-netdev")
            .arg(netdev)
            .arg("-device")
            .arg("virtio-net-pci,netdev=net0");
    }
    Ok(q)
}

fn interactive(q: qemu::Qemu, what: &str) -> Result<ExitCode, String> {
    let mut cmd = q.interactive_command().map_err(|e| e.to_string())?;
    eprintln!("oxen-run: booting Oxen: {what}; quit with Ctrl-A X (Ctrl-A C: QEMU monitor)");
    let status = cmd.status().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            qemu::QemuError::NotInstalled(q.binary.clone()).to_string()
        } else {
            format!("cannot start {}: {e}", q.binary)
        }
    })?;
    let exit = Exit::from_exit_status(status, false);
    match exit {
        Exit::Reset => {
            eprintln!("\noxen-run: QEMU exited (quit from the console, or the machine reset)");
            Ok(ExitCode::SUCCESS)
        }
        Exit::POWEROFF => {
            eprintln!("\noxen-run: {exit}");
            Ok(ExitCode::SUCCESS)
        }
        e => {
            eprintln!("\noxen-run: the machine stopped: {e} (QEMU exit status {status})");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn batch_mode(q: qemu::Qemu, o: &Options, what: &str) -> Result<ExitCode, String> {
    let mut input = String::new();
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("oxen-run: --batch: reading Dom0 commands from the terminal until Ctrl-D");
    }
    stdin
        .lock()
        .read_to_string(&mut input)
        .map_err(|e| format!("reading standard input: {e}"))?;
    let commands = batch::commands_from(&input);
    eprintln!(
        "oxen-run: batch: booting Oxen: {what}; {} command(s) then `{}`; timeout {:.0?}",
        commands.len(),
        batch::POWEROFF,
        o.timeout
    );
    let machine = q.echo(Echo::Stdout).spawn().map_err(|e| e.to_string())?;
    let out = batch::run(machine, &commands, o.timeout);
    let _ = std::io::stdout().flush();
    if !out.result.log.ends_with('\n') {
        println!();
    }
    if !out.result.stderr.trim().is_empty() {
        eprintln!("oxen-run: QEMU said:\n{}", out.result.stderr.trim_end());
    }
    if out.ok {
        eprintln!(
            "oxen-run: OK: {} ({} command(s), {:.1?})",
            out.why, out.sent, out.result.elapsed
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("oxen-run: FAILED: {}", out.why);
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Parsed, String> {
        parse_args(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults() {
        let Parsed::Run(o) = p(&[]).unwrap() else {
            panic!()
        };
        assert_eq!(*o, Options::default());
        assert_eq!(o.append, "loglvl=info");
        assert_eq!(
            (o.smp, o.mem.as_str(), o.accel.as_str()),
            (2, "512M", "tcg")
        );
    }

    #[test]
    fn all_flags() {
        let Parsed::Run(o) = p(&[
            "--batch",
            "--dom0",
            "k.elf",
            "--add",
            "a",
            "--add=b",
            "--append",
            "loglvl=all x=1",
            "--smp=4",
            "--mem",
            "1G",
            "--cpu",
            "qemu64,+svm",
            "--accel",
            "kvm",
            "--grub",
            "--timeout",
            "30",
            "--no-build",
            "--dom0-append",
            "debug",
            "--disk",
            "a.img",
            "--disk=b.qcow2",
            "--net",
            "user,hostfwd=tcp:127.0.0.1:8080-10.0.2.15:80",
        ])
        .unwrap() else {
            panic!()
        };
        assert!(o.batch && o.grub && !o.build);
        assert_eq!(o.dom0.as_deref(), Some("k.elf"));
        assert_eq!(o.adds, [PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(o.append, "loglvl=all x=1");
        assert_eq!(o.smp, 4);
        assert_eq!(o.mem, "1G");
        assert_eq!(o.cpu, "qemu64,+svm");
        assert_eq!(o.accel, "kvm");
        assert_eq!(o.timeout, Duration::from_secs(30));
        assert_eq!(o.dom0_append, "debug");
        assert_eq!(o.disks, [PathBuf::from("a.img"), PathBuf::from("b.qcow2")]);
        assert_eq!(
            o.net.as_deref(),
            Some("hostfwd=tcp:127.0.0.1:8080-10.0.2.15:80")
        );
        let Parsed::Run(o) = p(&["--net", "none"]).unwrap() else {
            panic!()
        };
        assert_eq!(o.net, None);
    }

    #[test]
    fn errors_are_clear() {
        assert_eq!(p(&["-h"]).unwrap(), Parsed::Help);
        assert_eq!(p(&["--batch", "--help"]).unwrap(), Parsed::Help);
        assert!(p(&["--vmx"])
            .unwrap_err()
            .contains("not yet supported: running under Bochs"));
        assert!(p(&["--vmx"]).unwrap_err().contains("needs the HVM issue"));
        assert!(p(&["--smp", "0"]).unwrap_err().contains("--smp"));
        assert!(p(&["--smp"]).unwrap_err().contains("--smp needs"));
        assert!(p(&["--accel", "hax"]).unwrap_err().contains("tcg or kvm"));
        assert!(p(&["--timeout", "-1", "--batch"])
            .unwrap_err()
            .contains("--timeout"));
        assert!(p(&["--timeout", "5"])
            .unwrap_err()
            .contains("only applies with --batch"));
        assert!(p(&["--net", "tap"])
            .unwrap_err()
            .contains("expected none, user"));
        assert!(p(&["--disk"]).unwrap_err().contains("--disk needs"));
        assert!(p(&["--frobnicate"]).unwrap_err().contains("unknown option"));
    }
}
