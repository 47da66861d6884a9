//! Launching QEMU and talking to the guest's serial console.
//!
//! [`Qemu`] is a builder for one `qemu-system-x86_64` invocation; `spawn`
//! starts it with stdin/stdout/stderr piped and returns a [`Machine`].  A
//! reader thread collects the serial console (QEMU's `-serial stdio`) as it
//! arrives, optionally echoing it live; [`Machine::wait_for`] waits for a
//! substring to appear, [`Machine::send_line`] types a line, and
//! [`Machine::wait_exit`] waits for QEMU to exit (killing it on timeout) and
//! returns a [`RunResult`] with the full log and the decoded [`Exit`].
//!
//! At most [`max_qemus`] machines run at once per process (a global
//! semaphore; `OXEN_MAX_QEMUS` overrides the default of 2): TCG is CPU-bound
//! and this project's machines have 2 cores.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::bundle::Module;
use crate::exit::Exit;

/// What a user's Enter key sends on a serial terminal; the batch driver sends
/// the same, so Dom0's shell sees exactly what an interactive user types.
pub const ENTER: &str = "\r";

/// Defaults for the QEMU command line (the contract in DESIGN.md / the README).
pub const DEFAULT_MACHINE: &str = "q35";
/// `-cpu max` minus SMAP: QEMU 7.2's SMAP emulation breaks ring-3 `iretq`
/// paths (DESIGN.md, "Facts about these machines").
pub const DEFAULT_CPU: &str = "max,-smap";
pub const DEFAULT_MEM: &str = "512M";
pub const DEFAULT_SMP: u32 = 2;
pub const DEFAULT_ACCEL: &str = "tcg";
/// TCG with every vCPU on one host thread, for boots that run HVM guests
/// under AMD-V beside other busy CPUs. QEMU 7.2's multi-threaded TCG
/// (the default with `-smp` > 1) has a data race on the first CPU's
/// `hflags2`: any other vCPU that restores x87 state (`fxrstor`, `xrstor`,
/// `frstor`, `fldenv`: `cpu_set_fpus` calls `cpu_clear_ignne`, which does
/// `first_cpu->env.hflags2 &= ~HF2_IGNNE_MASK` from its own thread) can
/// write back a stale copy of CPU 0's flags. When CPU 0 has just left an
/// SVM guest, the stale copy turns nested paging back on in host mode:
/// CPU 0 then walks the hypervisor's own addresses through the guest's
/// nested tables and triple-faults (the machine resets, no crash dump).
/// Found by `dom0-hvmfuzz` (issue 8) and pinned down with a QEMU built
/// from Debian's 7.2 source with a print in the page walker:
/// `ptw_idx=MMU_NESTED_IDX` with `HF_GUEST_MASK` clear.
pub const SINGLE_THREAD_TCG: &str = "tcg,thread=single";
/// The hypervisor command line when none is given.
pub const DEFAULT_APPEND: &str = "loglvl=info";

/// The QEMU binary: `$OXEN_QEMU` or `qemu-system-x86_64` from `PATH`.
pub fn qemu_binary() -> String {
    std::env::var("OXEN_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".to_string())
}

// ---------------------------------------------------------------------------
// Global limit on concurrently running QEMUs.

struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
}

fn slots() -> &'static Slots {
    static SLOTS: OnceLock<Slots> = OnceLock::new();
    SLOTS.get_or_init(|| Slots {
        used: Mutex::new(0),
        freed: Condvar::new(),
    })
}

/// How many QEMUs may run at once in this process.
pub fn max_qemus() -> usize {
    std::env::var("OXEN_MAX_QEMUS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(2)
}

/// A held slot; dropping it lets the next QEMU start.
#[derive(Debug)]
pub struct SlotGuard(());

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let s = slots();
        *s.used.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        s.freed.notify_one();
    }
}

/// Waits for a free slot.  Anything that runs QEMU outside [`Qemu::spawn`]
/// (e.g. a test that runs `oxen-run`) should hold one too.
pub fn qemu_slot() -> SlotGuard {
    let s = slots();
    let max = max_qemus();
    let mut used = s.used.lock().unwrap_or_else(|e| e.into_inner());
    while *used >= max {
        used = s.freed.wait(used).unwrap_or_else(|e| e.into_inner());
    }
    *used += 1;
    SlotGuard(())
}

// ---------------------------------------------------------------------------
// The builder.

/// What QEMU boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Media {
    /// `-kernel` through QEMU's PVH loader, with an optional `-initrd`.
    Pvh {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
    },
    /// `-cdrom ISO -boot d` (a GRUB ISO: the Multiboot2 path).
    Cdrom(PathBuf),
}

/// Where the serial console goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// Only collected.
    Quiet,
    /// Collected and copied to the harness's stdout as it arrives.
    Stdout,
    /// Collected and copied to the harness's stderr as it arrives.
    Stderr,
}

/// One QEMU invocation.
#[derive(Debug, Clone)]
pub struct Qemu {
    pub name: String,
    pub binary: String,
    pub machine: String,
    pub cpu: String,
    pub smp: u32,
    pub mem: String,
    pub accel: String,
    pub append: Option<String>,
    pub media: Option<Media>,
    pub extra: Vec<String>,
    pub echo: Echo,
}

impl Default for Qemu {
    fn default() -> Self {
        Self::new("qemu")
    }
}

impl Qemu {
    /// A machine with the contract's defaults; `name` labels its log.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            binary: qemu_binary(),
            machine: DEFAULT_MACHINE.into(),
            cpu: DEFAULT_CPU.into(),
            smp: DEFAULT_SMP,
            mem: DEFAULT_MEM.into(),
            accel: DEFAULT_ACCEL.into(),
            append: None,
            media: None,
            extra: Vec::new(),
            echo: echo_from_env(),
        }
    }

    pub fn kernel(mut self, kernel: impl Into<PathBuf>) -> Self {
        let initrd = match self.media.take() {
            Some(Media::Pvh { initrd, .. }) => initrd,
            _ => None,
        };
        self.media = Some(Media::Pvh {
            kernel: kernel.into(),
            initrd,
        });
        self
    }

    /// Sets `-initrd` (PVH only; call after [`Qemu::kernel`]).
    pub fn initrd(mut self, initrd: impl Into<PathBuf>) -> Self {
        if let Some(Media::Pvh { initrd: i, .. }) = &mut self.media {
            *i = Some(initrd.into());
        } else {
            panic!("Qemu::initrd needs Qemu::kernel first");
        }
        self
    }

    /// Packs `modules` into an Oxen module bundle written to `bundle` and
    /// passes that as `-initrd` (PVH only; call after [`Qemu::kernel`]).
    pub fn modules(self, modules: &[Module], bundle: impl Into<PathBuf>) -> Result<Self, String> {
        let path = bundle.into();
        let bytes = crate::bundle::write(modules).map_err(|e| e.to_string())?;
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(self.initrd(path))
    }

    pub fn iso(mut self, iso: impl Into<PathBuf>) -> Self {
        self.media = Some(Media::Cdrom(iso.into()));
        self
    }

    pub fn media(mut self, media: Media) -> Self {
        self.media = Some(media);
        self
    }

    pub fn cpu(mut self, cpu: impl Into<String>) -> Self {
        self.cpu = cpu.into();
        self
    }

    pub fn smp(mut self, smp: u32) -> Self {
        self.smp = smp;
        self
    }

    pub fn mem(mut self, mem: impl Into<String>) -> Self {
        self.mem = mem.into();
        self
    }

    pub fn accel(mut self, accel: impl Into<String>) -> Self {
        self.accel = accel.into();
        self
    }

    /// The hypervisor command line (`-append`; PVH only — with GRUB it is in grub.cfg).
    pub fn append(mut self, append: impl Into<String>) -> Self {
        self.append = Some(append.into());
        self
    }

    /// One more raw QEMU argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra.push(arg.into());
        self
    }

    pub fn echo(mut self, echo: Echo) -> Self {
        self.echo = echo;
        self
    }

    /// The argument list.  `interactive` multiplexes the monitor onto the
    /// terminal (`-serial mon:stdio`, Ctrl-A X quits) instead of `-serial
    /// stdio -monitor none`.
    pub fn args(&self, interactive: bool) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-machine".into(),
            self.machine.clone(),
            "-cpu".into(),
            self.cpu.clone(),
            "-m".into(),
            self.mem.clone(),
            "-smp".into(),
            self.smp.to_string(),
            "-accel".into(),
            self.accel.clone(),
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
            "-device".into(),
            "isa-debug-exit,iobase=0xf4,iosize=0x04".into(),
        ];
        if interactive {
            a.extend(["-serial".into(), "mon:stdio".into()]);
        } else {
            a.extend([
                "-serial".into(),
                "stdio".into(),
                "-monitor".into(),
                "none".into(),
            ]);
        }
        match &self.media {
            Some(Media::Pvh { kernel, initrd }) => {
                a.push("-kernel".into());
                a.push(kernel.display().to_string());
                if let Some(append) = &self.append {
                    a.push("-append".into());
                    a.push(append.clone());
                }
                if let Some(initrd) = initrd {
                    a.push("-initrd".into());
                    a.push(initrd.display().to_string());
                }
            }
            Some(Media::Cdrom(iso)) => {
                a.extend([
                    "-cdrom".into(),
                    iso.display().to_string(),
                    "-boot".into(),
                    "d".into(),
                ]);
            }
            None => {}
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// The command line, shell-quoted, for logs and for copy-paste.
    pub fn command_line(&self, interactive: bool) -> String {
        std::iter::once(self.binary.clone())
            .chain(self.args(interactive))
            .map(|s| shell_quote(&s))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn check_media(&self) -> Result<(), QemuError> {
        let files: Vec<&Path> = match &self.media {
            Some(Media::Pvh { kernel, initrd }) => std::iter::once(kernel.as_path())
                .chain(initrd.as_deref())
                .collect(),
            Some(Media::Cdrom(iso)) => vec![iso.as_path()],
            None => vec![],
        };
        for f in files {
            if !f.is_file() {
                return Err(QemuError::MissingFile(f.to_path_buf()));
            }
        }
        Ok(())
    }

    /// A [`Command`] for an interactive session on the caller's terminal.
    pub fn interactive_command(&self) -> Result<Command, QemuError> {
        self.check_media()?;
        let mut c = Command::new(&self.binary);
        c.args(self.args(true));
        Ok(c)
    }

    /// Starts QEMU with the console piped (waits for a free slot first).
    pub fn spawn(self) -> Result<Machine, QemuError> {
        self.check_media()?;
        let slot = qemu_slot();
        let mut child = Command::new(&self.binary)
            .args(self.args(false))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| QemuError::spawn(&self.binary, e))?;
        let started = Instant::now();
        let console = Arc::new(Stream::new());
        let stderr = Arc::new(Stream::new());
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let c2 = Arc::clone(&console);
        let echo = self.echo;
        let out_thread = thread::spawn(move || c2.pump(out, echo));
        let e2 = Arc::clone(&stderr);
        let err_thread = thread::spawn(move || e2.pump(err, Echo::Quiet));
        let stdin = child.stdin.take();
        Ok(Machine {
            command: self.command_line(false),
            name: self.name,
            child,
            stdin,
            console,
            stderr,
            threads: vec![out_thread, err_thread],
            cursor: 0,
            started,
            _slot: slot,
        })
    }
}

fn echo_from_env() -> Echo {
    match std::env::var("OXEN_ECHO").as_deref() {
        Ok("1") | Ok("stderr") => Echo::Stderr,
        Ok("stdout") => Echo::Stdout,
        _ => Echo::Quiet,
    }
}

/// Quotes `s` for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=.,/:+@%".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Why QEMU could not be started.
#[derive(Debug)]
pub enum QemuError {
    /// The QEMU binary is not installed (or `OXEN_QEMU` points nowhere).
    NotInstalled(String),
    /// A file QEMU was told to boot does not exist.
    MissingFile(PathBuf),
    Io(String, io::Error),
}

impl QemuError {
    fn spawn(binary: &str, e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::NotFound {
            QemuError::NotInstalled(binary.to_string())
        } else {
            QemuError::Io(format!("cannot start {binary}"), e)
        }
    }
}

impl fmt::Display for QemuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QemuError::NotInstalled(b) => write!(
                f,
                "{b} is not installed (Debian: apt-get install qemu-system-x86; scripts/run installs it)"
            ),
            QemuError::MissingFile(p) => write!(f, "{} does not exist", p.display()),
            QemuError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for QemuError {}

// ---------------------------------------------------------------------------
// Collected output.

/// Bytes from one of QEMU's output pipes, with `\r` dropped, plus an EOF flag.
struct Stream {
    state: Mutex<StreamState>,
    changed: Condvar,
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
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pump(&self, mut from: impl Read, echo: Echo) {
        let mut buf = [0u8; 4096];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let chunk = &buf[..n];
            match echo {
                Echo::Quiet => {}
                Echo::Stdout => {
                    let mut o = io::stdout().lock();
                    let _ = o.write_all(chunk);
                    let _ = o.flush();
                }
                Echo::Stderr => {
                    let mut o = io::stderr().lock();
                    let _ = o.write_all(chunk);
                    let _ = o.flush();
                }
            }
            let mut st = self.lock();
            st.bytes
                .extend(chunk.iter().copied().filter(|&b| b != b'\r'));
            drop(st);
            self.changed.notify_all();
        }
        self.lock().eof = true;
        self.changed.notify_all();
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock().bytes).into_owned()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The full line of `bytes` around byte offset `at`.
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

/// Why [`Machine::wait_for`] gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitError {
    /// Nothing matched within the time allowed.
    Timeout {
        patterns: Vec<String>,
        waited: Duration,
    },
    /// QEMU closed its console (exited) before anything matched.
    Exited { patterns: Vec<String> },
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::Timeout { patterns, waited } => {
                write!(
                    f,
                    "no console line with {} within {:.0?}",
                    alternatives(patterns),
                    waited
                )
            }
            WaitError::Exited { patterns } => {
                write!(
                    f,
                    "the machine stopped before a console line with {} appeared",
                    alternatives(patterns)
                )
            }
        }
    }
}

fn alternatives(p: &[String]) -> String {
    p.iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(" or ")
}

impl std::error::Error for WaitError {}

/// A match found by [`Machine::wait_for_any`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Which pattern matched.
    pub index: usize,
    /// The whole console line holding the match (possibly still incomplete).
    pub line: String,
    /// Time since QEMU started.
    pub at: Duration,
}

// ---------------------------------------------------------------------------
// A running machine.

/// A running QEMU.  Dropping it kills QEMU.
pub struct Machine {
    pub name: String,
    command: String,
    child: Child,
    stdin: Option<ChildStdin>,
    console: Arc<Stream>,
    stderr: Arc<Stream>,
    threads: Vec<JoinHandle<()>>,
    /// Console offset past the last match: each wait looks only at newer output.
    cursor: usize,
    started: Instant,
    _slot: SlotGuard,
}

impl Machine {
    /// The shell-quoted QEMU command line.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Time since QEMU started.
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
            if st.eof {
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
            st = self
                .console
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Types `line` and Enter ([`ENTER`]) on the serial console.
    pub fn send_line(&mut self, line: &str) -> io::Result<()> {
        self.send_raw(format!("{line}{ENTER}").as_bytes())
    }

    /// Writes raw bytes to the serial console.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "console input closed"))?;
        stdin.write_all(bytes)?;
        stdin.flush()
    }

    /// Whether QEMU has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits up to `timeout` for QEMU to exit; kills it after that.  Never
    /// hangs: the result says whether the run timed out.
    pub fn wait_exit(mut self, timeout: Duration) -> RunResult {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => break None,
            }
        };
        let timed_out = status.is_none();
        let status = match status {
            Some(s) => Some(s),
            None => {
                let _ = self.child.kill();
                self.child.wait().ok()
            }
        };
        let elapsed = self.started.elapsed();
        self.stdin = None;
        // QEMU's pipes close when it exits; give the readers a moment to
        // drain them, but never hang on a pipe some other process holds.
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
        let stderr = self.stderr.text();
        let exit = match status {
            _ if timed_out => Exit::TimedOut,
            Some(s) => {
                Exit::from_exit_status(s, log.trim().is_empty() && !stderr.trim().is_empty())
            }
            None => Exit::QemuFailed(-1),
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

    /// Kills QEMU now (if it still runs: the result then says "killed
    /// after timeout") and returns what it printed.
    pub fn kill(self) -> RunResult {
        self.wait_exit(Duration::ZERO)
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub name: String,
    /// The QEMU command line.
    pub command: String,
    /// Everything the guest printed on the serial console (`\r` removed).
    pub log: String,
    /// What QEMU itself printed on stderr.
    pub stderr: String,
    pub exit: Exit,
    /// The harness killed QEMU after `timeout`.
    pub timed_out: bool,
    pub elapsed: Duration,
    pub timeout: Duration,
}
