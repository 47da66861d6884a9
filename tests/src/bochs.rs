//! Running Oxen under Bochs: the Intel VT-x (VMX with EPT) path.
//!
//! QEMU 7.2's TCG emulates SVM but not VMX; Debian's Bochs 2.7 emulates VMX
//! with EPT and unrestricted guest in CPU models such as
//! `corei7_haswell_4770`, so the VMX backend is tested under Bochs, booting
//! the same GRUB ISO as QEMU's Multiboot2 path ([`crate::boot::make_iso`]).
//!
//! How one run works ([`Bochs::spawn`]):
//! * A `bochsrc` is written into the run's work dir: the CPU model and count,
//!   memory, the ISO as an ATAPI CD-ROM, the log file, and COM1 as a TCP
//!   client (`mode=socket-client`) connecting to a listener the harness
//!   opened on 127.0.0.1 (an ephemeral port: runs never collide).  The socket
//!   carries the serial console both ways, so [`BochsMachine::send_line`]
//!   types into Dom0's shell exactly as under QEMU (`scripts/run --vmx
//!   --batch` works).
//! * Debian's Bochs has its debugger compiled in and stops before the first
//!   instruction: `-rc` gives it a file holding `c` (continue).
//! * Display: Debian ships only the `term` (curses) and `rfb` (VNC) GUIs, no
//!   `nogui`.  With the debugger compiled in, `term` draws on a pseudo-terminal
//!   of its own (it opens `/dev/ptmx` and prints "Bochs connected to screen
//!   /dev/pts/N"), never on Bochs's stdout, so it needs no terminal and no
//!   display and puts no escape sequences into our output.  It only needs
//!   `TERM` to name a terminal ncurses knows (`vt100` is set).  The harness
//!   opens that pty's other end and drains it, so Bochs can never block on a
//!   full pty buffer.  (`rfb` would listen on TCP port 5900+ instead.)
//! * GRUB clears the screen on its serial terminal: escape sequences are
//!   dropped from the console text (and from what is echoed).
//!
//! How a run ends.  Bochs has no `isa-debug-exit`, so its exit status says
//! nothing about the guest (it exits 1 on every panic, including a clean
//! power-off).  What does end Bochs cleanly: xen-core's
//! `power_off` (xen-core/src/arch/x86_64/power.rs) writes SLP_TYP|SLP_EN to
//! the ACPI PM1a control port, Bochs's PIIX4 ACPI takes that as "soft power
//! off" and quits.  A fatal hypervisor error only halts (`cli; hlt`), and a
//! triple fault is made a Bochs panic (`reset_on_triple_fault=0`) instead of
//! a reset.  The outcome ([`Exit`], as under QEMU) is read from the console
//! and Bochs's log ([`outcome`]):
//! * `... powering off machine (SHUTDOWN_<reason>)` → `Exit::Dom0(reason)`;
//! * `Panic on CPU` / `System halted.` without that → `Exit::HypervisorFatal`;
//! * Bochs's "ACPI control: soft power off" with no reason printed (a log
//!   level that hides it) → Dom0 powered off;
//! * Bochs's triple-fault panic → `Exit::Reset`;
//! * Bochs stopped for any other reason → `Exit::QemuFailed(status)`, with
//!   Bochs's own message in [`RunResult::stderr`].
//!
//! Once the console shows a stop line, Bochs gets [`STOP_GRACE`] to quit by
//! itself on a power-off (it does) and is killed after that; a fatal halt
//! never ends Bochs, and it is killed [`HALT_GRACE`] after `System halted.`.  Bochs ignores SIGTERM while its term GUI runs: it is
//! always stopped with SIGKILL.
//!
//! Bochs and QEMU share the harness's machine slots
//! ([`crate::qemu::qemu_slot`]), and only one Bochs runs at a time per
//! process ([`bochs_turn`]): Bochs is single-threaded and CPU-bound, and two
//! of them on this project's 2-core machines slow each other past their
//! timeouts.
//!
//! Environment: `OXEN_BOCHS` (the Bochs binary, default `bochs`),
//! `OXEN_BOCHS_CPU` (the CPU model), `OXEN_ECHO` as for QEMU.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::batch::{self, BatchOutcome};
use crate::boot::{make_iso, OxenBoot};
use crate::check::Verdict;
use crate::exit::{Exit, ShutdownReason};
use crate::qemu::{qemu_slot, shell_quote, Echo, Found, RunResult, SlotGuard, WaitError, ENTER};

/// The default CPU model: Haswell, with VMX, EPT and unrestricted guest.
pub const DEFAULT_CPU_MODEL: &str = "corei7_haswell_4770";
/// CPUs (`cpu: count=`).  Bochs runs every CPU in one host thread, so each
/// one more makes a boot slower; one is the default.
pub const DEFAULT_CPUS: u32 = 1;
/// Guest RAM in MiB.
pub const DEFAULT_MEGS: u32 = 512;
/// Instructions per emulated second.  With `clock: sync=none` guest time is
/// derived from it (the TSC runs at about this many Hz), not from the host
/// clock: a loaded host slows a run down but does not change what the guest
/// measures.
pub const DEFAULT_IPS: u64 = 200_000_000;
/// Bochs's BIOS (Debian `bochsbios`) and VGA BIOS (`vgabios`, linked from
/// the `bochs` package).
pub const BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
pub const VGA_BIOS: &str = "/usr/share/bochs/VGABIOS-lgpl-latest";
/// How long Bochs may take to quit by itself after the console shows that
/// the machine stops.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a halted machine (a fatal error) may still print.
pub const HALT_GRACE: Duration = Duration::from_millis(500);
/// How long Bochs may take to start and connect its serial port.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What to install when Bochs is missing.
pub const INSTALL_HINT: &str = "install it with: apt-get install bochs bochsbios vgabios bochs-term (scripts/run and scripts/test install them)";

/// The console line xen-core logs when Dom0's shutdown stops the machine
/// (`domain_shutdown`), followed by Xen's `SHUTDOWN_*` name in parentheses.
pub const POWER_OFF_LINE: &str = "powering off machine (";
/// xen-core's last line before it halts, on power-off and on fatal errors.
pub const HALTED_LINE: &str = "(XEN) System halted.";
/// xen-core's panic banner.
pub const PANIC_LINE: &str = "Panic on CPU";
/// Bochs's log message when the guest enters ACPI S5.
pub const BOCHS_POWER_OFF: &str = "ACPI control: soft power off";
/// Bochs's log message for a triple fault (with `reset_on_triple_fault=0`).
pub const BOCHS_TRIPLE_FAULT: &str = "exception with no resolution";

/// The Bochs binary: `$OXEN_BOCHS` or `bochs` (Debian's wrapper around
/// `bochs-bin`) from `PATH`.
pub fn bochs_binary() -> String {
    std::env::var("OXEN_BOCHS").unwrap_or_else(|_| "bochs".to_string())
}

/// The CPU model: `$OXEN_BOCHS_CPU` or [`DEFAULT_CPU_MODEL`].
pub fn default_cpu_model() -> String {
    std::env::var("OXEN_BOCHS_CPU")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_CPU_MODEL.to_string())
}

fn echo_from_env() -> Echo {
    match std::env::var("OXEN_ECHO").as_deref() {
        Ok("1") | Ok("stderr") => Echo::Stderr,
        Ok("stdout") => Echo::Stdout,
        _ => Echo::Quiet,
    }
}

/// Why Bochs could not be started.
#[derive(Debug)]
pub enum BochsError {
    /// Bochs (or a file it needs from its Debian packages) is not installed.
    NotInstalled(String),
    /// A file to boot does not exist.
    MissingFile(PathBuf),
    /// Bochs started but stopped (or hung) before connecting its serial port.
    NoStart(String),
    Io(String, io::Error),
}

impl fmt::Display for BochsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BochsError::NotInstalled(what) => {
                write!(f, "{what} is not installed: {INSTALL_HINT}")
            }
            BochsError::MissingFile(p) => write!(f, "{} does not exist", p.display()),
            BochsError::NoStart(why) => write!(f, "Bochs did not start: {why}"),
            BochsError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for BochsError {}

/// Checks that Bochs and the files it needs from Debian's packages are there.
pub fn check_installed(binary: &str) -> Result<(), BochsError> {
    let found = if binary.contains('/') {
        Path::new(binary).is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(binary).is_file()))
    };
    if !found {
        return Err(BochsError::NotInstalled(format!("Bochs ({binary})")));
    }
    for (f, pkg) in [(BIOS, "bochsbios"), (VGA_BIOS, "vgabios")] {
        if !Path::new(f).exists() {
            return Err(BochsError::NotInstalled(format!("{f} (Debian {pkg})")));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// One Bochs at a time.

struct Turn {
    busy: Mutex<bool>,
    freed: Condvar,
}

fn turn() -> &'static Turn {
    static TURN: OnceLock<Turn> = OnceLock::new();
    TURN.get_or_init(|| Turn {
        busy: Mutex::new(false),
        freed: Condvar::new(),
    })
}

/// A held turn; dropping it lets the next Bochs start.
#[derive(Debug)]
pub struct BochsTurn(());

impl Drop for BochsTurn {
    fn drop(&mut self) {
        let t = turn();
        *t.busy.lock().unwrap_or_else(|e| e.into_inner()) = false;
        t.freed.notify_one();
    }
}

/// Waits until no other Bochs of this process runs.
pub fn bochs_turn() -> BochsTurn {
    let t = turn();
    let mut busy = t.busy.lock().unwrap_or_else(|e| e.into_inner());
    while *busy {
        busy = t.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
    }
    *busy = true;
    BochsTurn(())
}

// ---------------------------------------------------------------------------
// The builder.

/// One Bochs run.
#[derive(Debug, Clone)]
pub struct Bochs {
    /// Labels the run's log.
    pub name: String,
    pub binary: String,
    pub cpu_model: String,
    pub cpus: u32,
    pub megs: u32,
    pub ips: u64,
    /// The GRUB ISO to boot.
    pub iso: PathBuf,
    /// Where the bochsrc, the `-rc` file and `bochs.log` go.
    pub work: PathBuf,
    pub echo: Echo,
}

impl Bochs {
    /// A run of `iso` with the defaults; its files go into `work`.
    pub fn new(name: impl Into<String>, iso: impl Into<PathBuf>, work: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            binary: bochs_binary(),
            cpu_model: default_cpu_model(),
            cpus: DEFAULT_CPUS,
            megs: DEFAULT_MEGS,
            ips: DEFAULT_IPS,
            iso: iso.into(),
            work: work.into(),
            echo: echo_from_env(),
        }
    }

    pub fn cpus(mut self, n: u32) -> Self {
        self.cpus = n;
        self
    }

    pub fn megs(mut self, megs: u32) -> Self {
        self.megs = megs;
        self
    }

    pub fn cpu_model(mut self, model: impl Into<String>) -> Self {
        self.cpu_model = model.into();
        self
    }

    pub fn echo(mut self, echo: Echo) -> Self {
        self.echo = echo;
        self
    }

    pub fn bochsrc_path(&self) -> PathBuf {
        self.work.join("bochsrc")
    }

    pub fn log_path(&self) -> PathBuf {
        self.work.join("bochs.log")
    }

    fn rc_path(&self) -> PathBuf {
        self.work.join("bochs-debugger.rc")
    }

    /// The bochsrc, with COM1 connecting to `127.0.0.1:port`.
    pub fn bochsrc(&self, port: u16) -> String {
        format!(
            "# Written by oxen-tests (tests/src/bochs.rs) for one run.\n\
             megs: {megs}\n\
             cpu: model={model}, count={cpus}, ips={ips}, reset_on_triple_fault=0\n\
             romimage: file={BIOS}\n\
             vgaromimage: file={VGA_BIOS}\n\
             ata0-master: type=cdrom, path=\"{iso}\", status=inserted\n\
             boot: cdrom\n\
             com1: enabled=1, mode=socket-client, dev=127.0.0.1:{port}\n\
             display_library: term, options=\"hideIPS\"\n\
             sound: driver=dummy\n\
             speaker: enabled=0\n\
             log: \"{log}\"\n\
             panic: action=fatal\n\
             error: action=report\n\
             clock: sync=none, time0=local\n",
            megs = self.megs,
            model = self.cpu_model,
            cpus = self.cpus,
            ips = self.ips,
            iso = self.iso.display(),
            log = self.log_path().display(),
        )
    }

    /// The command line, shell-quoted, for logs.
    pub fn command_line(&self) -> String {
        [
            self.binary.clone(),
            "-q".into(),
            "-f".into(),
            self.bochsrc_path().display().to_string(),
            "-rc".into(),
            self.rc_path().display().to_string(),
        ]
        .iter()
        .map(|s| shell_quote(s))
        .collect::<Vec<_>>()
        .join(" ")
    }

    /// Starts Bochs (after waiting for a free machine slot) and waits until
    /// its serial port is connected.
    pub fn spawn(self) -> Result<BochsMachine, BochsError> {
        check_installed(&self.binary)?;
        if !self.iso.is_file() {
            return Err(BochsError::MissingFile(self.iso.clone()));
        }
        for p in [
            self.iso.display().to_string(),
            self.log_path().display().to_string(),
        ] {
            if p.contains('"') || p.contains('\n') {
                return Err(BochsError::NoStart(format!(
                    "the path {p:?} cannot be written into a bochsrc"
                )));
            }
        }
        let io_err = |what: &str, e| BochsError::Io(what.to_string(), e);
        std::fs::create_dir_all(&self.work).map_err(|e| io_err("creating the work dir", e))?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| io_err("listening for Bochs's COM1", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| io_err("listening for Bochs's COM1", e))?
            .port();
        std::fs::write(self.bochsrc_path(), self.bochsrc(port))
            .map_err(|e| io_err("writing the bochsrc", e))?;
        std::fs::write(self.rc_path(), "c\n").map_err(|e| io_err("writing the -rc file", e))?;
        let _ = std::fs::remove_file(self.log_path());

        let turn = bochs_turn();
        let slot = qemu_slot();
        let mut child = Command::new(&self.binary)
            .args(["-q", "-f"])
            .arg(self.bochsrc_path())
            .arg("-rc")
            .arg(self.rc_path())
            .current_dir(&self.work)
            // The term GUI's curses needs a terminal type it knows; it draws
            // on a pty of its own, never on our stdout.
            .env("TERM", "vt100")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    BochsError::NotInstalled(format!("Bochs ({})", self.binary))
                } else {
                    io_err(&format!("cannot start {}", self.binary), e)
                }
            })?;
        let started = Instant::now();
        let output = Arc::new(Stream::new());
        let mut threads = Vec::new();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let o = Arc::clone(&output);
            threads.push(thread::spawn(move || o.pump_bochs_output(pipe)));
        }

        // Bochs connects COM1 while it sets up its devices.
        listener
            .set_nonblocking(true)
            .map_err(|e| io_err("listening for Bochs's COM1", e))?;
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(io_err("accepting Bochs's COM1 connection", e));
                }
            }
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            if exited || started.elapsed() > CONNECT_TIMEOUT {
                if !exited {
                    let _ = child.kill();
                }
                let status = child.wait().ok();
                thread::sleep(Duration::from_millis(100));
                return Err(BochsError::NoStart(format!(
                    "{} ({}); it said:\n{}{}",
                    if exited {
                        "it exited before connecting its serial port"
                    } else {
                        "its serial port did not connect"
                    },
                    status.map_or("killed".to_string(), |s| s.to_string()),
                    bochs_messages(&output.text()),
                    log_panics(&self.log_path())
                )));
            }
            thread::sleep(Duration::from_millis(20));
        };
        stream
            .set_nonblocking(false)
            .map_err(|e| io_err("COM1 socket", e))?;
        let _ = stream.set_nodelay(true);
        let input = stream.try_clone().map_err(|e| io_err("COM1 socket", e))?;
        let console = Arc::new(Stream::new());
        let c2 = Arc::clone(&console);
        let echo = self.echo;
        threads.push(thread::spawn(move || c2.pump_console(stream, echo)));

        Ok(BochsMachine {
            command: self.command_line(),
            log_path: self.log_path(),
            name: self.name,
            child,
            input: Some(input),
            console,
            output,
            threads,
            cursor: 0,
            started,
            _slot: slot,
            _turn: turn,
        })
    }
}

impl OxenBoot {
    /// Builds the GRUB ISO for this boot in `work` ([`make_iso`]; the boot
    /// path is always GRUB's, whatever `self.path` says) and returns a
    /// [`Bochs`] run of it with the defaults.
    pub fn bochs(&self, name: &str, work: &Path) -> Result<Bochs, String> {
        if !self.hypervisor.is_file() {
            return Err(format!(
                "hypervisor image {} does not exist",
                self.hypervisor.display()
            ));
        }
        let iso = make_iso(work, self)?;
        Ok(Bochs::new(name, iso, work))
    }
}

// ---------------------------------------------------------------------------
// Collected output.

/// Bytes from Bochs, plus an EOF flag.
struct Stream {
    state: Mutex<StreamState>,
    changed: Condvar,
    /// Bochs's stdout or stderr found the term GUI's pty (drained once).
    pty_found: AtomicBool,
}

#[derive(Default)]
struct StreamState {
    bytes: Vec<u8>,
    eof: bool,
}

impl Stream {
    fn new() -> Self {
        Self {
            state: Mutex::new(StreamState::default()),
            changed: Condvar::new(),
            pty_found: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, bytes: &[u8]) {
        self.lock().bytes.extend_from_slice(bytes);
        self.changed.notify_all();
    }

    fn close(&self) {
        self.lock().eof = true;
        self.changed.notify_all();
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock().bytes).into_owned()
    }

    /// The serial console: escape sequences dropped, `\r` dropped from what
    /// is kept (not from what is echoed).
    fn pump_console(&self, mut from: TcpStream, echo: Echo) {
        let mut filter = EscapeFilter::default();
        let mut buf = [0u8; 4096];
        let mut clean = Vec::with_capacity(4096);
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            clean.clear();
            filter.feed(&buf[..n], &mut clean);
            match echo {
                Echo::Quiet => {}
                Echo::Stdout => {
                    let mut o = io::stdout().lock();
                    let _ = o.write_all(&clean);
                    let _ = o.flush();
                }
                Echo::Stderr => {
                    let mut o = io::stderr().lock();
                    let _ = o.write_all(&clean);
                    let _ = o.flush();
                }
            }
            clean.retain(|&b| b != b'\r');
            self.push(&clean);
        }
        self.close();
    }

    /// Bochs's stdout or stderr; when it names the term GUI's pty, that is
    /// drained.
    fn pump_bochs_output(&self, mut from: Box<dyn Read + Send>) {
        let mut buf = [0u8; 4096];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            self.push(&buf[..n]);
            if !self.pty_found.load(Ordering::Acquire) {
                if let Some(pty) = screen_pty(&self.text()) {
                    if !self.pty_found.swap(true, Ordering::AcqRel) {
                        drain_pty(&pty);
                    }
                }
            }
        }
    }
}

/// The pty Bochs's term GUI draws on: `Bochs connected to screen "/dev/pts/N"`.
fn screen_pty(output: &str) -> Option<String> {
    let rest = &output[output.find("connected to screen \"")? + 21..];
    let name = &rest[..rest.find('"')?];
    name.starts_with("/dev/").then(|| name.to_string())
}

/// Reads and discards what Bochs's term GUI draws (best effort), so that it
/// never blocks on a full pty.
fn drain_pty(pty: &str) {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NOCTTY: never make it our controlling terminal.
        opts.custom_flags(0o400);
    }
    if let Ok(mut f) = opts.open(pty) {
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while matches!(f.read(&mut buf), Ok(n) if n > 0) {}
        });
    }
}

/// Drops ANSI/VT100 escape sequences (GRUB's screen clearing and cursor
/// moves) from a byte stream, across reads.
#[derive(Debug, Default)]
pub struct EscapeFilter {
    state: EscState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum EscState {
    #[default]
    Text,
    /// After ESC.
    Esc,
    /// Inside a CSI sequence (ESC `[` ... final byte).
    Csi,
}

impl EscapeFilter {
    /// Appends the bytes of `input` that are not part of an escape sequence.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.state = match (self.state, b) {
                (EscState::Text, 0x1b) => EscState::Esc,
                (EscState::Text, _) => {
                    out.push(b);
                    EscState::Text
                }
                (EscState::Esc, b'[') => EscState::Csi,
                // ESC and one more byte (e.g. ESC 7, ESC c).
                (EscState::Esc, _) => EscState::Text,
                // Parameter and intermediate bytes; a final byte ends it.
                (EscState::Csi, 0x20..=0x3f) => EscState::Csi,
                (EscState::Csi, _) => EscState::Text,
            };
        }
    }
}

/// Bochs's own messages: its stdout and stderr without the start-up
/// chatter (its banner and the timestamped info lines).
pub fn bochs_messages(output: &str) -> String {
    let mut s = String::new();
    for l in output.lines() {
        let t = l.trim();
        let stamped = t.len() > 12 && t.as_bytes()[..11].iter().all(u8::is_ascii_digit);
        if t.is_empty()
            || (stamped && t.as_bytes()[11] == b'i')
            || t.starts_with("Bochs x86 Emulator")
            || t.starts_with("Built from")
            || t.starts_with("Timestamp:")
            || t.starts_with("Next at t=")
            // The debugger's first look at each CPU (the reset vector).
            || (t.starts_with('(') && t.contains("f000:fff0"))
            || t.starts_with("Bochs connected to screen")
            || t.chars().all(|c| c == '=')
        {
            continue;
        }
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// The panic lines of a Bochs log (what stopped Bochs), for reports.
fn log_panics(log: &Path) -> String {
    let text = std::fs::read(log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let panics: Vec<&str> = text.lines().filter(|l| l.contains(">>PANIC<<")).collect();
    if panics.is_empty() {
        String::new()
    } else {
        format!("{} says:\n{}\n", log.display(), panics.join("\n"))
    }
}

/// How a Bochs run ended, read from the serial console `log` and Bochs's
/// own log (`bochs_log`); `None` if neither says the machine stopped.
pub fn outcome(log: &str, bochs_log: &str) -> Option<Exit> {
    if let Some(l) = log.lines().find(|l| l.contains(POWER_OFF_LINE)) {
        let at = l.find(POWER_OFF_LINE).unwrap_or(0) + POWER_OFF_LINE.len();
        let name = l[at..].split(')').next().unwrap_or("");
        let reason = ShutdownReason::ALL.into_iter().find(|r| {
            hypercall_name(*r) == name || name.strip_prefix("SHUTDOWN_") == Some(hypercall_name(*r))
        });
        return Some(match reason {
            Some(r) => Exit::Dom0(r),
            None => Exit::UnknownCode(u32::MAX),
        });
    }
    if log.contains(PANIC_LINE) || log.contains(HALTED_LINE) {
        return Some(Exit::HypervisorFatal);
    }
    if bochs_log.contains(BOCHS_POWER_OFF) {
        return Some(Exit::POWEROFF);
    }
    if bochs_log.contains(BOCHS_TRIPLE_FAULT) {
        return Some(Exit::Reset);
    }
    None
}

/// Xen's name for a shutdown reason without its `SHUTDOWN_` prefix.
fn hypercall_name(r: ShutdownReason) -> &'static str {
    match r {
        ShutdownReason::Poweroff => "poweroff",
        ShutdownReason::Reboot => "reboot",
        ShutdownReason::Suspend => "suspend",
        ShutdownReason::Crash => "crash",
        ShutdownReason::Watchdog => "watchdog",
        ShutdownReason::SoftReset => "soft_reset",
    }
}

/// Whether the console shows that xen-core is stopping the machine.
fn stopping(log: &[u8]) -> bool {
    [POWER_OFF_LINE, HALTED_LINE]
        .iter()
        .any(|p| find(log, p.as_bytes()).is_some())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn line_around(bytes: &[u8], at: usize) -> String {
    let start = bytes[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let end = bytes[at..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| at + p);
    String::from_utf8_lossy(&bytes[start..end]).into_owned()
}

// ---------------------------------------------------------------------------
// A running Bochs.

/// A running Bochs, with the same console API as [`crate::qemu::Machine`].
/// Dropping it kills Bochs.
pub struct BochsMachine {
    pub name: String,
    command: String,
    log_path: PathBuf,
    child: Child,
    /// The COM1 socket's writing side.
    input: Option<TcpStream>,
    console: Arc<Stream>,
    /// Bochs's stdout and stderr.
    output: Arc<Stream>,
    threads: Vec<JoinHandle<()>>,
    cursor: usize,
    started: Instant,
    _slot: SlotGuard,
    _turn: BochsTurn,
}

impl BochsMachine {
    /// The shell-quoted Bochs command line.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Time since Bochs started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The console so far.
    pub fn log(&self) -> String {
        self.console.text()
    }

    /// Waits until `pattern` appears in console output newer than the last
    /// match, and returns the line holding it.
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<Found, WaitError> {
        self.wait_for_any(&[pattern], timeout)
    }

    /// Waits for the earliest of several patterns.
    pub fn wait_for_any(
        &mut self,
        patterns: &[&str],
        timeout: Duration,
    ) -> Result<Found, WaitError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.console.lock();
        loop {
            let hay = &st.bytes[self.cursor..];
            let best = patterns
                .iter()
                .enumerate()
                .filter_map(|(i, p)| find(hay, p.as_bytes()).map(|pos| (pos, i, p.len())))
                .min();
            if let Some((pos, index, len)) = best {
                let abs = self.cursor + pos;
                self.cursor = abs + len;
                return Ok(Found {
                    index,
                    line: line_around(&st.bytes, abs),
                    at: self.started.elapsed(),
                });
            }
            let patterns = || patterns.iter().map(|s| s.to_string()).collect();
            // A stopping machine (power-off, fatal halt) prints nothing more.
            if st.eof || stopping(&st.bytes) {
                return Err(WaitError::Exited {
                    patterns: patterns(),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitError::Timeout {
                    patterns: patterns(),
                    waited: timeout,
                });
            }
            // Wake up now and then: a halted machine sends no more bytes.
            let nap = (deadline - now).min(Duration::from_millis(200));
            st = self
                .console
                .changed
                .wait_timeout(st, nap)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Types `line` and Enter on the serial console.
    pub fn send_line(&mut self, line: &str) -> io::Result<()> {
        self.send_raw(format!("{line}{ENTER}").as_bytes())
    }

    /// Writes raw bytes to the serial console.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let s = self
            .input
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "console input closed"))?;
        s.write_all(bytes)?;
        s.flush()
    }

    /// A second handle on the console's writing side (for a terminal proxy).
    pub fn console_writer(&self) -> io::Result<TcpStream> {
        match &self.input {
            Some(s) => s.try_clone(),
            None => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "console input closed",
            )),
        }
    }

    /// Whether Bochs has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Whether the console shows xen-core stopping the machine (power-off
    /// or a fatal halt): [`BochsMachine::wait_exit`] then ends the run.
    pub fn is_stopping(&self) -> bool {
        stopping(&self.console.lock().bytes)
    }

    /// Waits up to `timeout` for the machine to stop.  Once the console
    /// shows a stop line, Bochs gets [`STOP_GRACE`] to quit by itself and is
    /// killed after that; without one it is killed at `timeout` (a timed-out
    /// run).  Never hangs.
    pub fn wait_exit(self, timeout: Duration) -> RunResult {
        self.finish(timeout, timeout)
    }

    /// Kills Bochs now and returns what it printed: a run killed after its
    /// timeout (the time it ran), unless the console already showed the
    /// machine stopping.
    pub fn kill(self) -> RunResult {
        let ran = self.started.elapsed();
        self.finish(Duration::ZERO, ran)
    }

    /// [`BochsMachine::wait_exit`] with `wait`, recording `timeout` as the
    /// run's limit.
    fn finish(mut self, wait: Duration, timeout: Duration) -> RunResult {
        let deadline = Instant::now() + wait;
        let mut grace: Option<Instant> = None;
        let mut timed_out = false;
        let status: Option<ExitStatus> = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) => {}
                Err(_) => break None,
            }
            let now = Instant::now();
            if grace.is_none() {
                let st = self.console.lock();
                if stopping(&st.bytes) {
                    // A power-off ends Bochs by itself; a fatal halt never
                    // does, and has nothing more to say.
                    let powering_off = find(&st.bytes, POWER_OFF_LINE.as_bytes()).is_some();
                    grace = Some(now + if powering_off { STOP_GRACE } else { HALT_GRACE });
                }
            }
            match grace {
                Some(g) if now >= g => break None,
                None if now >= deadline => {
                    timed_out = true;
                    break None;
                }
                _ => thread::sleep(Duration::from_millis(20)),
            }
        };
        let status = match status {
            Some(s) => Some(s),
            None => {
                // SIGKILL: Bochs's term GUI ignores SIGTERM.
                let _ = self.child.kill();
                let _ = self.child.wait();
                None
            }
        };
        let elapsed = self.started.elapsed();
        self.input = None;
        let drain_deadline = Instant::now() + Duration::from_secs(5);
        for t in self.threads.drain(..) {
            while !t.is_finished() && Instant::now() < drain_deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        let log = self.console.text();
        let bochs_log = std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let mut stderr = bochs_messages(&self.output.text());
        stderr.push_str(&log_panics(&self.log_path));
        let exit = match (timed_out, outcome(&log, &bochs_log), status) {
            (true, _, _) => Exit::TimedOut,
            (false, Some(e), _) => e,
            (false, None, Some(s)) => match s.code() {
                Some(c) => Exit::QemuFailed(c),
                None => Exit::from_exit_status(s, true),
            },
            (false, None, None) => Exit::QemuFailed(-1),
        };
        RunResult {
            name: self.name.clone(),
            command: self.command.clone(),
            log,
            stderr,
            exit,
            timed_out,
            elapsed,
            timeout,
        }
    }
}

impl Drop for BochsMachine {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Batch mode.

/// `scripts/run --vmx --batch`: [`crate::batch::run`]'s protocol on a Bochs
/// machine.  Waits for `dom0# `, types each command and waits for the next
/// prompt, types `poweroff`, and judges as batch mode does: success only if
/// Dom0 powered off and the last `VERDICT:` says SUCCESS.  A test kernel
/// that shows no prompt is judged once it stops.
pub fn run_batch(
    mut machine: BochsMachine,
    commands: &[String],
    timeout: Duration,
) -> BatchOutcome {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let secs = |d: Duration| format!("{} s", d.as_secs_f64().round());
    let mut stuck: Option<String> = None;
    let mut sent = 0;
    let mut saw_prompt = false;
    match machine.wait_for(batch::PROMPT, left()) {
        Ok(_) => saw_prompt = true,
        Err(WaitError::Exited { .. }) => {}
        Err(WaitError::Timeout { .. }) => {
            stuck = Some(format!(
                "no {:?} prompt appeared within {}",
                batch::PROMPT,
                secs(timeout)
            ))
        }
    }
    if saw_prompt {
        for cmd in commands
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(batch::POWEROFF))
        {
            if machine.send_line(cmd).is_err() || cmd == batch::POWEROFF {
                break;
            }
            sent += 1;
            match machine.wait_for(batch::PROMPT, left()) {
                Ok(_) => {}
                Err(WaitError::Exited { .. }) => break,
                Err(WaitError::Timeout { .. }) => {
                    stuck = Some(format!(
                        "no {:?} prompt came back after {cmd:?} (whole run limited to {})",
                        batch::PROMPT,
                        secs(timeout)
                    ));
                    break;
                }
            }
        }
    }
    let result = if stuck.is_some() {
        machine.kill()
    } else {
        machine.wait_exit(left())
    };
    let verdict = result.verdict();
    let said = match &verdict {
        Some(v) => format!("last verdict: \"{v}\""),
        None => "no VERDICT line".to_string(),
    };
    let (ok, why) = match (&stuck, result.exit, &verdict) {
        (Some(s), ..) => (false, format!("{s}; killed after timeout; {said}")),
        (None, Exit::TimedOut, _) => (
            false,
            format!(
                "the machine did not stop within {}; killed after timeout; {said}",
                secs(result.timeout)
            ),
        ),
        (None, e, _) if e != Exit::POWEROFF => (false, format!("{e}; {said}")),
        (None, _, None) => (
            false,
            "Dom0 powered off without printing a VERDICT line".to_string(),
        ),
        (None, _, Some(Verdict::Failure(_))) => (false, format!("Dom0 powered off; {said}")),
        (None, _, Some(Verdict::Success)) => {
            (true, "Dom0 powered off; VERDICT: SUCCESS".to_string())
        }
    };
    BatchOutcome {
        result,
        sent,
        saw_prompt,
        verdict,
        ok,
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_dropped_across_reads() {
        let mut f = EscapeFilter::default();
        let mut out = Vec::new();
        f.feed(b"\x1b[H\x1b[J\x1b[1;1H  Booting `Oxen'\r\n\x1b[", &mut out);
        f.feed(b"0mok\x1b7!", &mut out);
        assert_eq!(out, b"  Booting `Oxen'\r\nok!");
    }

    #[test]
    fn outcome_from_the_lines() {
        let off = "(XEN) [   4.7] Hardware Dom0 halted: powering off machine (SHUTDOWN_poweroff)\n";
        assert_eq!(outcome(off, ""), Some(Exit::POWEROFF));
        let crash = "(XEN) [   1.0] Hardware Dom0 crashed: powering off machine (SHUTDOWN_crash)\n(XEN) System halted.\n";
        assert_eq!(outcome(crash, ""), Some(Exit::CRASH));
        let fatal = "(XEN) Panic on CPU 0: fatal trap page fault\n(XEN) System halted.\n";
        assert_eq!(outcome(fatal, ""), Some(Exit::HypervisorFatal));
        assert_eq!(
            outcome(
                "",
                "00942253135p[ACPI  ] >>PANIC<< ACPI control: soft power off"
            ),
            Some(Exit::POWEROFF)
        );
        assert_eq!(
            outcome(
                "",
                "p[CPU0  ] >>PANIC<< exception(): 3rd (13) exception with no resolution"
            ),
            Some(Exit::Reset)
        );
        assert_eq!(outcome("dom0# ", "nothing"), None);
        assert_eq!(
            outcome("powering off machine (SHUTDOWN_what)\n", ""),
            Some(Exit::UnknownCode(u32::MAX))
        );
    }

    #[test]
    fn bochsrc_has_vmx_cpu_socket_serial_and_no_gui() {
        let b = Bochs::new("t", "/x/oxen.iso", "/w").cpus(2);
        let rc = b.bochsrc(4321);
        assert!(
            rc.contains("cpu: model=corei7_haswell_4770, count=2,")
                || std::env::var_os("OXEN_BOCHS_CPU").is_some(),
            "{rc}"
        );
        assert!(rc.contains("reset_on_triple_fault=0"), "{rc}");
        assert!(rc.contains("com1: enabled=1, mode=socket-client, dev=127.0.0.1:4321\n"));
        assert!(rc.contains("ata0-master: type=cdrom, path=\"/x/oxen.iso\", status=inserted\n"));
        assert!(rc.contains("display_library: term"));
        assert!(rc.contains("log: \"/w/bochs.log\"\n"));
        assert_eq!(
            b.command_line(),
            "bochs -q -f /w/bochsrc -rc /w/bochs-debugger.rc"
                .replace("bochs ", &format!("{} ", bochs_binary()))
        );
    }

    #[test]
    fn screen_pty_and_messages() {
        let out = "00000000000i[      ] installing term module\n\nBochs connected to screen \"/dev/pts/3\"\n====\nBochs is exiting with the following message:\n[ACPI  ] ACPI control: soft power off\n";
        assert_eq!(screen_pty(out).as_deref(), Some("/dev/pts/3"));
        assert_eq!(screen_pty("nothing"), None);
        assert_eq!(
            bochs_messages(out),
            "Bochs is exiting with the following message:\n[ACPI  ] ACPI control: soft power off\n"
        );
    }

    #[test]
    fn a_missing_bochs_says_what_to_install() {
        let e = check_installed("/nonexistent/bochs")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("apt-get install bochs bochsbios vgabios bochs-term"),
            "{e}"
        );
    }
}
