//! `oxen-run`: the logic behind `scripts/run`.
//!
//! Boots Oxen (xen-core + Dom0 + Dom0's ramdisk) under QEMU, or with
//! `--vmx` under Bochs with an Intel VT-x CPU (`oxen_tests::bochs`), either
//! on the terminal (interactive) or driven from standard input (`--batch`).
//! Bochs's serial console is a socket: interactively, this program is the
//! terminal's end of it (raw mode; Ctrl-A X quits, as under QEMU).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use oxen_tests::batch;
use oxen_tests::bochs::{self, BochsMachine};
use oxen_tests::boot::{dom0_ramdisk, BootPath, OxenBoot, Payload};
use oxen_tests::images::{self, Images};
use oxen_tests::net::NetSpec;
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
  --shared-disk FILE As --disk, for a disk another machine uses too (QEMU's
                     image lock off): the storage both hosts of a migration
                     reach, as a SAN would be.
  --net SPEC         The machine's virtio NIC, the uplink of the guests'
                     bridge: \"user\" (the default: QEMU user networking,
                     10.0.2.0/24), \"user,hostfwd=tcp:127.0.0.1:8080-10.0.2.15:80\"
                     (any options of QEMU's -netdev user), \"none\", or
                     \"dgram:LOCALPORT:REMOTEPORT\": a virtual Ethernet to
                     another machine over UDP on 127.0.0.1 (give the other
                     one dgram:REMOTEPORT:LOCALPORT; either may start first;
                     the NIC's MAC is 52:54:00:4f: and the local port). Boot
                     each Dom0 with --dom0-append ip=ADDR/PREFIX so they
                     can talk (see docs/network.md).
  --append STR       The hypervisor's command line (default \"loglvl=info\").
  --smp N            Number of CPUs (default 2).
  --mem SIZE         Memory, as QEMU's -m takes it (default 512M).
  --cpu MODEL        QEMU CPU model (default \"max,-smap\").
  --accel tcg|tcg-single|kvm
                     QEMU accelerator (default tcg; kvm needs real VT-x/SVM).
                     tcg-single runs every CPU on one host thread: use it
                     for HVM guests with --smp 2 or more, where QEMU 7.2's
                     multi-threaded TCG can reset the machine (a race in
                     QEMU; see docs/hvm.md).
  --grub             Boot through a GRUB ISO (Multiboot2) instead of QEMU's
                     PVH loader (-kernel).
  --timeout SECS     Batch mode: fail if the run takes longer (default 300).
  --no-build         Use the images already built instead of building them.
  --vmx              Run under Bochs with an Intel VT-x CPU (VMX with EPT),
                     booting a GRUB ISO (Debian: apt-get install bochs
                     bochsbios vgabios bochs-term). --smp (default 1), --mem
                     and --cpu (a Bochs CPU model, default corei7_haswell_4770)
                     apply to Bochs; --disk, --net and --accel do not.
                     Interactive: quit with Ctrl-A X.
  -h, --help         Show this help.

Environment: OXEN_QEMU (QEMU binary), OXEN_BOCHS (Bochs binary),
OXEN_SKIP_BUILD=1, OXEN_IMAGES=DIR.
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
    /// Which of `disks` another machine uses too (`--shared-disk`).
    shared: Vec<usize>,
    /// The NIC, or None for none.
    net: Option<NetSpec>,
    /// Under Bochs with a VT-x CPU.
    vmx: bool,
    /// Which of --smp, --cpu, --accel, --net were given (their defaults
    /// are QEMU's; Bochs has its own or none).
    given: Given,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Given {
    smp: bool,
    cpu: bool,
    accel: bool,
    net: bool,
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
            shared: Vec::new(),
            net: Some(NetSpec::User(String::new())),
            vmx: false,
            given: Given::default(),
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
            "--vmx" => o.vmx = true,
            "--dom0" => o.dom0 = Some(value("a FILE")?),
            "--dom0-append" => o.dom0_append = value("a command line")?,
            "--add" => o.adds.push(PathBuf::from(value("a FILE")?)),
            "--append" => o.append = value("a command line")?,
            "--disk" => o.disks.push(PathBuf::from(value("a FILE")?)),
            "--shared-disk" => {
                o.disks.push(PathBuf::from(value("a FILE")?));
                o.shared.push(o.disks.len() - 1);
            }
            "--net" => {
                let v = value("a SPEC (user[,OPTIONS], dgram:LOCAL:REMOTE or none)")?;
                o.given.net = true;
                o.net = NetSpec::parse(&v)?;
            }
            "--smp" => {
                let v = value("a number of CPUs")?;
                o.given.smp = true;
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
            "--cpu" => {
                o.cpu = value("a CPU MODEL")?;
                o.given.cpu = true;
            }
            "--accel" => {
                o.accel = value("tcg, tcg-single or kvm")?;
                o.given.accel = true;
                if !["tcg", "tcg-single", "kvm"].contains(&o.accel.as_str()) {
                    return Err(format!(
                        "--accel {:?}: expected tcg, tcg-single or kvm",
                        o.accel
                    ));
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
    if o.vmx {
        check_vmx_options(&o)?;
    }
    Ok(Parsed::Run(Box::new(o)))
}

/// What `--vmx` (Bochs) cannot do.
fn check_vmx_options(o: &Options) -> Result<(), String> {
    if !o.disks.is_empty() {
        return Err(
            "--disk does not work with --vmx: Oxen's Bochs machine has no virtio disk".into(),
        );
    }
    if o.given.net && o.net.is_some() {
        return Err(
            "--net does not work with --vmx: Oxen's Bochs machine has no virtio NIC".into(),
        );
    }
    if o.given.accel {
        return Err("--accel does not work with --vmx: Bochs only emulates".into());
    }
    if o.given.cpu
        && (o.cpu.is_empty() || !o.cpu.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(format!(
            "--cpu {:?} with --vmx: expected a Bochs CPU model such as {} (bochs --help cpu lists them)",
            o.cpu,
            bochs::DEFAULT_CPU_MODEL
        ));
    }
    bochs_megs(&o.mem)?;
    Ok(())
}

/// `--mem` as Bochs's `megs`: "512", "512M", "1G".
fn bochs_megs(mem: &str) -> Result<u32, String> {
    let m = mem.trim();
    let (num, mult) = match m.char_indices().last() {
        Some((i, 'M' | 'm')) => (&m[..i], 1),
        Some((i, 'G' | 'g')) => (&m[..i], 1024),
        _ => (m, 1),
    };
    num.parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| (32..=65536).contains(&n))
        .ok_or_else(|| format!("--mem {mem:?} with --vmx: expected a size such as 512M or 1G"))
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
            } else if p.is_relative() && !f.contains("..") && images.dir.join(f).is_file() {
                // A built image by name: `dom0-hostile`, `examples/hello`.
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
    if o.vmx {
        // Before a build that may take minutes.
        bochs::check_installed(&bochs::bochs_binary()).map_err(|e| e.to_string())?;
    }
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
        path: if o.grub || o.vmx {
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
        if o.vmx {
            return run_bochs(&boot, o, &name, &work, &dom0);
        }
        let q = boot
            .qemu(&name, &work)?
            .cpu(o.cpu.clone())
            .smp(o.smp)
            .mem(o.mem.clone())
            .accel(qemu_accel(&o.accel));
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

/// QEMU's `-accel` value for `--accel` (`tcg-single`: TCG on one thread).
fn qemu_accel(accel: &str) -> String {
    match accel {
        "tcg-single" => qemu::SINGLE_THREAD_TCG.into(),
        a => a.into(),
    }
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
        // A disk two machines share (storage both hosts of a migration
        // reach): QEMU's image lock would keep the second one out.
        let lock = if o.shared.contains(&n) {
            ",file.locking=off"
        } else {
            ""
        };
        q = q
            .arg("-drive")
            .arg(format!(
                "file={path},if=none,id=disk{n},format={format}{lock}"
            ))
            .arg("-device")
            .arg(format!("virtio-blk-pci,drive=disk{n}"));
    }
    if let Some(net) = &o.net {
        for a in net.qemu_args() {
            q = q.arg(a);
        }
    }
    Ok(q)
}

/// `--vmx`: the same boot under Bochs.
fn run_bochs(
    boot: &OxenBoot,
    o: &Options,
    name: &str,
    work: &Path,
    dom0: &Path,
) -> Result<ExitCode, String> {
    eprintln!("oxen-run: making the GRUB ISO");
    let mut b = boot
        .bochs(name, work)?
        .cpus(if o.given.smp {
            o.smp
        } else {
            bochs::DEFAULT_CPUS
        })
        .megs(bochs_megs(&o.mem)?);
    if o.given.cpu {
        b = b.cpu_model(o.cpu.clone());
    }
    let what = format!(
        "{} under Bochs with Dom0 {}, {} CPU(s) {} (VT-x), {} MiB RAM",
        boot.path,
        dom0.display(),
        b.cpus,
        b.cpu_model,
        b.megs
    );
    if o.batch {
        let commands = read_batch_commands()?;
        eprintln!(
            "oxen-run: batch: booting Oxen: {what}; {} command(s) then `{}`; timeout {:.0?}",
            commands.len(),
            batch::POWEROFF,
            o.timeout
        );
        let m = b.echo(Echo::Stdout).spawn().map_err(|e| e.to_string())?;
        let out = bochs::run_batch(m, &commands, o.timeout);
        Ok(report_batch(&out))
    } else {
        let m = b.echo(Echo::Stdout).spawn().map_err(|e| e.to_string())?;
        eprintln!("oxen-run: booting Oxen: {what}; quit with Ctrl-A X");
        interactive_bochs(m)
    }
}

/// Sets the terminal raw for as long as it lives (`stty`), if standard
/// input is one.
struct RawTerminal(Option<String>);

impl RawTerminal {
    fn new() -> Self {
        if !std::io::stdin().is_terminal() {
            return Self(None);
        }
        let stty = |args: &[&str]| {
            std::process::Command::new("stty")
                .args(args)
                .stdin(std::process::Stdio::inherit())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let saved = stty(&["-g"]);
        if saved.is_some() {
            // Keys go to the guest as typed (Ctrl-C too); output keeps
            // turning \n into \r\n.
            stty(&["raw", "-echo", "opost", "onlcr"]);
        }
        Self(saved)
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = std::process::Command::new("stty")
                .arg(saved)
                .stdin(std::process::Stdio::inherit())
                .status();
        }
    }
}

/// The terminal's end of Bochs's serial socket: keys to the guest, Ctrl-A X
/// quits (Ctrl-A Ctrl-A sends a Ctrl-A).
fn interactive_bochs(m: BochsMachine) -> Result<ExitCode, String> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let mut to_guest = m
        .console_writer()
        .map_err(|e| format!("Bochs's serial socket: {e}"))?;
    let quit = Arc::new(AtomicBool::new(false));
    let raw = RawTerminal::new();
    {
        let quit = Arc::clone(&quit);
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 256];
            let mut ctrl_a = false;
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let mut out = Vec::with_capacity(n + 1);
                for &b in &buf[..n] {
                    if ctrl_a {
                        ctrl_a = false;
                        match b {
                            b'x' | b'X' => {
                                quit.store(true, Ordering::Release);
                                return;
                            }
                            0x01 => out.push(0x01),
                            _ => out.extend([0x01, b]),
                        }
                    } else if b == 0x01 {
                        ctrl_a = true;
                    } else {
                        out.push(b);
                    }
                }
                if to_guest.write_all(&out).is_err() {
                    return;
                }
            }
        });
    }
    let mut m = m;
    let result = loop {
        if quit.load(Ordering::Acquire) {
            break m.kill();
        }
        if m.has_exited() || m.is_stopping() {
            break m.wait_exit(bochs::STOP_GRACE + Duration::from_secs(1));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(raw);
    let _ = std::io::stdout().flush();
    if quit.load(Ordering::Acquire) {
        eprintln!("\r\noxen-run: quit (Ctrl-A X); Bochs stopped");
        return Ok(ExitCode::SUCCESS);
    }
    match result.exit {
        Exit::POWEROFF => {
            eprintln!("\noxen-run: {}", result.exit);
            Ok(ExitCode::SUCCESS)
        }
        e => {
            eprintln!("\noxen-run: the machine stopped: {e}");
            if !result.stderr.trim().is_empty() {
                eprintln!("oxen-run: Bochs said:\n{}", result.stderr.trim_end());
            }
            Ok(ExitCode::FAILURE)
        }
    }
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

/// Batch mode's commands, from standard input.
fn read_batch_commands() -> Result<Vec<String>, String> {
    let mut input = String::new();
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("oxen-run: --batch: reading Dom0 commands from the terminal until Ctrl-D");
    }
    stdin
        .lock()
        .read_to_string(&mut input)
        .map_err(|e| format!("reading standard input: {e}"))?;
    Ok(batch::commands_from(&input))
}

fn batch_mode(q: qemu::Qemu, o: &Options, what: &str) -> Result<ExitCode, String> {
    let commands = read_batch_commands()?;
    eprintln!(
        "oxen-run: batch: booting Oxen: {what}; {} command(s) then `{}`; timeout {:.0?}",
        commands.len(),
        batch::POWEROFF,
        o.timeout
    );
    let machine = q.echo(Echo::Stdout).spawn().map_err(|e| e.to_string())?;
    let out = batch::run(machine, &commands, o.timeout);
    Ok(report_batch(&out))
}

/// Prints how a batch run ended; its exit code.
fn report_batch(out: &batch::BatchOutcome) -> ExitCode {
    let _ = std::io::stdout().flush();
    if !out.result.log.ends_with('\n') {
        println!();
    }
    // Bochs always says why it quit (a clean power-off too): only worth
    // showing when the run failed.
    let bochs = out.result.command.contains("bochs");
    if !out.result.stderr.trim().is_empty() && (!bochs || !out.ok) {
        let who = if bochs { "Bochs" } else { "QEMU" };
        eprintln!("oxen-run: {who} said:\n{}", out.result.stderr.trim_end());
    }
    if out.ok {
        eprintln!(
            "oxen-run: OK: {} ({} command(s), {:.1?})",
            out.why, out.sent, out.result.elapsed
        );
        ExitCode::SUCCESS
    } else {
        eprintln!("oxen-run: FAILED: {}", out.why);
        ExitCode::FAILURE
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
        assert_eq!(qemu_accel("tcg-single"), "tcg,thread=single");
        assert_eq!(qemu_accel("kvm"), "kvm");
        assert_eq!(o.timeout, Duration::from_secs(30));
        assert_eq!(o.dom0_append, "debug");
        assert_eq!(o.disks, [PathBuf::from("a.img"), PathBuf::from("b.qcow2")]);
        assert_eq!(
            o.net,
            Some(NetSpec::User(
                "hostfwd=tcp:127.0.0.1:8080-10.0.2.15:80".into()
            ))
        );
        let Parsed::Run(o) = p(&["--net", "dgram:4000:4001"]).unwrap() else {
            panic!()
        };
        assert_eq!(
            o.net,
            Some(NetSpec::Dgram {
                local: 4000,
                remote: 4001
            })
        );
        let Parsed::Run(o) = p(&["--net", "none"]).unwrap() else {
            panic!()
        };
        assert_eq!(o.net, None);
    }

    #[test]
    fn vmx_options() {
        let Parsed::Run(o) = p(&["--vmx", "--batch", "--dom0", "examples/hello"]).unwrap() else {
            panic!()
        };
        assert!(o.vmx && o.batch);
        assert!(!o.given.smp && !o.given.cpu && !o.given.net);
        let Parsed::Run(o) = p(&[
            "--vmx",
            "--smp",
            "2",
            "--cpu",
            "corei7_skylake_x",
            "--mem",
            "1G",
            "--net",
            "none",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (o.smp, o.cpu.as_str(), o.net.clone()),
            (2, "corei7_skylake_x", None)
        );
        assert_eq!(bochs_megs(&o.mem), Ok(1024));
        assert_eq!(bochs_megs("512M"), Ok(512));
        assert_eq!(bochs_megs("256"), Ok(256));
        assert!(bochs_megs("1T").is_err());
    }

    #[test]
    fn errors_are_clear() {
        assert_eq!(p(&["-h"]).unwrap(), Parsed::Help);
        assert_eq!(p(&["--batch", "--help"]).unwrap(), Parsed::Help);
        assert!(p(&["--vmx", "--disk", "a.img"])
            .unwrap_err()
            .contains("--disk does not work with --vmx"));
        assert!(p(&["--vmx", "--net", "user"])
            .unwrap_err()
            .contains("--net does not work with --vmx"));
        assert!(p(&["--vmx", "--accel", "kvm"])
            .unwrap_err()
            .contains("--accel does not work with --vmx"));
        assert!(p(&["--vmx", "--cpu", "max,-smap"])
            .unwrap_err()
            .contains("expected a Bochs CPU model"));
        assert!(p(&["--vmx", "--mem", "lots"])
            .unwrap_err()
            .contains("expected a size such as 512M"));
        assert!(p(&["--smp", "0"]).unwrap_err().contains("--smp"));
        assert!(p(&["--smp"]).unwrap_err().contains("--smp needs"));
        assert!(p(&["--accel", "hax"])
            .unwrap_err()
            .contains("tcg-single or kvm"));
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
