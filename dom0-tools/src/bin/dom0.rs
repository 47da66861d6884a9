//! Oxen's Domain 0 kernel.
//!
//! Boots as a PV kernel, says what it was handed (start_info, ramdisk),
//! checks it against the PV ABI, lists the ramdisk and then runs a small
//! shell on the hypervisor console (`help` lists the commands). `poweroff`
//! prints the XTF-style verdict (`VERDICT: SUCCESS` only if every startup
//! check passed and no command failed) and shuts the machine down.

#![cfg_attr(target_os = "none", no_std, no_main)]

/// The host build has nothing to run: Dom0 is a bare-metal kernel.
#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use dom0_tools::ramdisk::{Archive, Entry, Kind};
    use dom0_tools::shell::{self, dom0_verdict, Command, EchoWords, Size, HELP, PROMPT};
    use dom0_tools::toolstack::Toolstack;
    use hypercall_abi::errno::Errno as AbiErrno;
    use hypercall_abi::version::{XenFeature, XEN_VERSION};
    use pv_guest_lib::layout::PAGE_SIZE;
    use pv_guest_lib::util::c_str;
    use pv_guest_lib::{console, print, println, xen, LineEditor, StartInfo};

    pv_guest_lib::entry!(dom0_main);

    /// The release file the ramdisk carries.
    const RELEASE_FILE: &str = "/etc/oxen-release";
    /// Highest secondary vCPU id the startup check asks about.
    const MAX_VCPU_PROBE: u32 = 128;
    /// Longest command line the shell reads.
    const LINE_MAX: usize = 256;
    /// How long `tcp-recv` waits for its connection.
    const TCP_RECV_ACCEPT_NS: u64 = 120_000_000_000;

    struct Dom0 {
        si: &'static StartInfo,
        ramdisk: Option<Archive<'static>>,
        failed_checks: u32,
        first_failed_check: Option<&'static str>,
        failed_commands: u32,
        /// The toolstack (`xl`) and the back ends, once events run.
        toolstack: Option<Toolstack>,
    }

    /// Heap pages added for the toolstack (the domain builder parses a
    /// copy of each guest kernel).
    const TOOLSTACK_HEAP_PAGES: u64 = 4096;

    /// `fmt::Write` onto the console, for `xl`'s output.
    struct Out;

    impl core::fmt::Write for Out {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            print!("{s}");
            Ok(())
        }
    }

    fn dom0_main(si: &'static StartInfo) -> ! {
        println!(
            "Dom0: Oxen Dom0 {} (pv-guest-lib)",
            env!("CARGO_PKG_VERSION")
        );
        if console::init_logger(log::LevelFilter::Info).is_err() {
            println!("Dom0: a logger was already installed");
        }
        let ramdisk = pv_guest_lib::ramdisk().map(Archive::new);
        let mut d = Dom0 {
            si,
            ramdisk,
            failed_checks: 0,
            first_failed_check: None,
            failed_commands: 0,
            toolstack: None,
        };
        d.summary();
        d.startup_checks();
        d.list_ramdisk_files();
        d.show_release();
        d.start_toolstack();
        d.shell()
    }

    impl Dom0 {
        fn summary(&self) {
            let si = self.si;
            let domid = if si.flags.initdomain() {
                "0"
            } else {
                "unknown (not the initial domain)"
            };
            println!(
                "Dom0: domid {domid}, nr_pages {} ({}), flags {}",
                si.nr_pages,
                Size(si.memory_bytes()),
                si.flags
            );
            println!(
                "Dom0: start_info at {:#x}, shared_info at maddr {:#x}, page tables at {:#x} ({} frames)",
                si.va, si.shared_info, si.pt_base, si.nr_pt_frames
            );
            println!(
                "Dom0: start_info magic \"{}\", p2m list at {:#x}",
                si.magic(),
                si.mfn_list
            );
            match si.ramdisk() {
                Some((va, len)) => println!("Dom0: ramdisk at VA {va:#x}, {len} bytes"),
                None => println!(
                    "Dom0: no ramdisk (mod_start {:#x}, mod_len {})",
                    si.mod_start, si.mod_len
                ),
            }
            println!("Dom0: command line \"{}\"", si.cmd_line());
            if let Some(l) = pv_guest_lib::layout() {
                println!(
                    "Dom0: bootstrap region {:#x}..{:#x}, free pages {:#x}..{:#x} ({})",
                    l.virt_base,
                    l.mapped_end,
                    l.free_start,
                    l.free_end,
                    Size(l.free_end - l.free_start)
                );
            }
        }

        fn pass(&mut self, name: &'static str) {
            println!("Dom0: check {name}: ok");
        }

        fn fail(&mut self, name: &'static str, why: core::fmt::Arguments<'_>) {
            println!("Dom0: check {name}: FAILED ({why})");
            self.failed_checks += 1;
            self.first_failed_check.get_or_insert(name);
        }

        fn startup_checks(&mut self) {
            let si = self.si;
            if si.magic_ok() {
                self.pass("magic");
            } else {
                self.fail("magic", format_args!("magic \"{}\"", si.magic()));
            }
            if si.is_dom0() {
                self.pass("flags");
            } else {
                self.fail(
                    "flags",
                    format_args!("flags {}, want privileged|initdomain", si.flags),
                );
            }
            if si.nr_pages > 0 {
                self.pass("nr_pages");
            } else {
                self.fail("nr_pages", format_args!("nr_pages is 0"));
            }
            match pv_guest_lib::hypercall::verify_hypercall_page() {
                Ok(()) => self.pass("hypercall_page"),
                Err(slot) => self.fail(
                    "hypercall_page",
                    format_args!("slot {slot} is not Xen's stub"),
                ),
            }
            match (si.ramdisk(), self.ramdisk.map(|a| a.validate())) {
                (None, _) => self.fail("ramdisk", format_args!("start_info names no ramdisk")),
                (Some(_), None) => self.fail(
                    "ramdisk",
                    format_args!("the ramdisk is not inside the bootstrap region"),
                ),
                (Some(_), Some(Ok(_))) => self.pass("ramdisk"),
                (Some(_), Some(Err(e))) => {
                    self.fail("ramdisk", format_args!("not a cpio newc archive: {e}"))
                }
            }
            match xen::version() {
                Ok(v) if v.0 == XEN_VERSION => self.pass("xen_version"),
                Ok(v) => self.fail(
                    "xen_version",
                    format_args!("hypervisor reports {v}, want 4.17"),
                ),
                Err(e) => self.fail("xen_version", format_args!("xen_version failed: {e}")),
            }
            match xen::vcpu_is_up(0) {
                Ok(true) => self.pass("vcpu0_up"),
                Ok(false) => self.fail("vcpu0_up", format_args!("is_up(0) says vCPU 0 is down")),
                Err(e) => self.fail("vcpu0_up", format_args!("is_up(0) failed: {e}")),
            }
            self.check_secondary_vcpus();
            self.check_memory();
        }

        /// vCPUs other than 0 exist down (until Dom0 brings them up) or
        /// not at all (-ENOENT ends the list).
        fn check_secondary_vcpus(&mut self) {
            let mut down = 0u32;
            for id in 1..MAX_VCPU_PROBE {
                match xen::vcpu_is_up(id) {
                    Ok(false) => down += 1,
                    Err(e) if e == AbiErrno::ENOENT => break,
                    Ok(true) => {
                        self.fail(
                            "vcpus",
                            format_args!("vCPU {id} is up before Dom0 started it"),
                        );
                        return;
                    }
                    Err(e) => {
                        self.fail("vcpus", format_args!("is_up({id}) failed: {e}"));
                        return;
                    }
                }
            }
            println!("Dom0: {} vCPU(s): 1 up, {down} down", down + 1);
            self.pass("vcpus");
        }

        /// The bootstrap padding must be mapped and writable: take a page
        /// from the allocator, write and read it back.
        fn check_memory(&mut self) {
            let Some(p) = pv_guest_lib::page_alloc::alloc_page() else {
                self.fail(
                    "memory",
                    format_args!("no free page in the bootstrap padding"),
                );
                return;
            };
            for (i, b) in p.iter_mut().enumerate() {
                *b = i as u8;
            }
            if p.iter().enumerate().all(|(i, &b)| b == i as u8) {
                self.pass("memory");
            } else {
                self.fail(
                    "memory",
                    format_args!("a free page does not hold what was written"),
                );
            }
        }

        fn list_ramdisk_files(&self) {
            let Some(a) = self.ramdisk else { return };
            for e in a.files() {
                println!("Dom0: ramdisk file /{} ({} bytes)", e.path(), e.data.len());
            }
        }

        fn show_release(&self) {
            match self.ramdisk.and_then(|a| a.find(RELEASE_FILE)) {
                Some(e) if e.kind() == Kind::File => {
                    let text = pv_guest_lib::util::utf8_prefix(e.data);
                    for line in text.lines() {
                        println!("Dom0: {RELEASE_FILE}: {line}");
                    }
                }
                _ => println!("Dom0: {RELEASE_FILE}: missing"),
            }
        }

        /// Events, the frame allocator and the heap, then the toolstack.
        fn start_toolstack(&mut self) {
            match pv_guest_lib::runtime::init() {
                Ok(_) => {}
                Err(e) => {
                    println!("Dom0: no toolstack: runtime init failed ({e})");
                    return;
                }
            }
            if let Err(e) = pv_guest_lib::heap::init(TOOLSTACK_HEAP_PAGES) {
                println!("Dom0: no toolstack: heap ({e})");
                return;
            }
            self.toolstack = Some(Toolstack::new(self.ramdisk));
        }

        /// Reads one line, serving guests (xenstore, consoles, shutdowns)
        /// while waiting for input.
        fn read_line<'e>(
            &mut self,
            ed: &'e mut LineEditor<LINE_MAX>,
        ) -> Result<&'e str, pv_guest_lib::Errno> {
            ed.clear();
            // Guests are served between commands even when the next one is
            // already typed (a script creating fifty guests must not starve
            // the first ones' xenstore requests).
            if let Some(t) = self.toolstack.as_mut() {
                t.service();
            }
            loop {
                let mut b = [0u8; 1];
                if console::try_read(&mut b)? == 1 {
                    if ed.feed(b[0], &mut |e| console::write_bytes(e))
                        == pv_guest_lib::line::Feed::Line
                    {
                        return Ok(ed.line());
                    }
                    continue;
                }
                match self.toolstack.as_mut() {
                    Some(t) => {
                        if !t.service() {
                            t.idle();
                        }
                    }
                    None => {
                        let _ = xen::sched_yield();
                    }
                }
            }
        }

        fn shell(&mut self) -> ! {
            let mut ed = LineEditor::<LINE_MAX>::new();
            loop {
                print!("{PROMPT}");
                let line = match self.read_line(&mut ed) {
                    Ok(l) => l,
                    Err(e) => {
                        println!();
                        println!("dom0: cannot read the console ({e}); powering off");
                        self.failed_commands += 1;
                        self.poweroff();
                    }
                };
                let ok = self.run(Command::parse(line));
                if !ok {
                    self.failed_commands += 1;
                }
            }
        }

        /// Runs one command; false if it failed.
        fn run(&mut self, cmd: Command<'_>) -> bool {
            match cmd {
                Command::Empty | Command::True => true,
                Command::False => false,
                Command::Help => {
                    println!("Commands:");
                    for (usage, what) in HELP {
                        println!("  {usage:<16} {what}");
                    }
                    true
                }
                Command::Info => {
                    self.summary();
                    let (used, free) = pv_guest_lib::heap::stats();
                    println!(
                        "Dom0: heap {} used, {} free",
                        Size(used as u64),
                        Size(free as u64)
                    );
                    true
                }
                Command::Ls("") => self.ls(),
                Command::Ls(path) => {
                    match self
                        .toolstack
                        .as_ref()
                        .and_then(|t| t.ls_volume(path, &mut Out))
                    {
                        Some(Ok(())) => true,
                        Some(Err(e)) => {
                            println!("ls: {e}");
                            false
                        }
                        None => {
                            println!("ls: {path}: only the ramdisk (ls) and /mnt/DISK are listed");
                            false
                        }
                    }
                }
                Command::Cat(args) => self.cat(args),
                Command::Echo(args) => {
                    println!("{}", EchoWords(args));
                    true
                }
                Command::Version => version(),
                Command::Crash => {
                    println!(
                        "dom0: reading unmapped address {:#x} on purpose: the hypervisor must crash Dom0",
                        dom0_tools::fault::UNMAPPED_LOW
                    );
                    // SAFETY: nothing at all is mapped there (guest user
                    // space is empty); the read faults.
                    let v = unsafe { dom0_tools::fault::read_u64(dom0_tools::fault::UNMAPPED_LOW) };
                    println!("dom0: crash: the read returned {v:#x} instead of faulting");
                    false
                }
                Command::Poweroff => self.poweroff(),
                Command::Sleep(arg) => match dom0_tools::shell::sleep_ns(arg) {
                    Some(ns) => {
                        let end = pv_guest_lib::time::now_ns().saturating_add(ns);
                        while pv_guest_lib::time::now_ns() < end {
                            match self.toolstack.as_mut() {
                                Some(t) => {
                                    if !t.service() {
                                        t.idle();
                                    }
                                }
                                None => {
                                    let _ = xen::sched_yield();
                                }
                            }
                        }
                        true
                    }
                    None => {
                        println!("sleep: invalid time interval '{arg}'");
                        false
                    }
                },
                Command::Xl(line) => match self.toolstack.as_mut() {
                    Some(t) => dom0_tools::xl::run_line(line, t, &mut Out) == 0,
                    None => {
                        println!("xl: the toolstack is not running");
                        false
                    }
                },
                Command::Lsblk => match self.toolstack.as_ref() {
                    Some(t) => {
                        t.lsblk(&mut Out);
                        true
                    }
                    None => {
                        println!("lsblk: the toolstack is not running");
                        false
                    }
                },
                Command::DiskBench(disk) => match self.toolstack.as_mut() {
                    Some(t) => match t.disk_bench(disk, &mut Out) {
                        Ok(()) => true,
                        Err(e) => {
                            println!("disk-bench: {e}");
                            false
                        }
                    },
                    None => {
                        println!("disk-bench: the toolstack is not running");
                        false
                    }
                },
                Command::Ip(args) => {
                    match (args.split_whitespace().next(), self.toolstack.as_ref()) {
                        (Some("addr" | "a" | "address") | None, Some(t)) => t.ip_addr(&mut Out),
                        (Some(other), Some(_)) => {
                            println!("ip: unknown command \"{other}\" (only `ip addr`)");
                            false
                        }
                        (_, None) => {
                            println!("ip: the toolstack is not running");
                            false
                        }
                    }
                }
                Command::Ping(args) => match (shell::ping_args(args), self.toolstack.as_mut()) {
                    (Ok((host, count)), Some(t)) => t.ping(host, count),
                    (Err(e), _) => {
                        println!("ping: {e}");
                        false
                    }
                    (_, None) => {
                        println!("ping: the toolstack is not running");
                        false
                    }
                },
                Command::TcpRecv(args) => {
                    match (shell::tcp_recv_args(args), self.toolstack.as_mut()) {
                        (Ok(port), Some(t)) => t.tcp_recv_cmd(port, TCP_RECV_ACCEPT_NS),
                        (Err(e), _) => {
                            println!("tcp-recv: {e}");
                            false
                        }
                        (_, None) => {
                            println!("tcp-recv: the toolstack is not running");
                            false
                        }
                    }
                }
                Command::TcpSend(args) => {
                    match (shell::tcp_send_args(args), self.toolstack.as_mut()) {
                        (Ok((host, port, size)), Some(t)) => t.tcp_send_cmd(host, port, size),
                        (Err(e), _) => {
                            println!("tcp-send: {e}");
                            false
                        }
                        (_, None) => {
                            println!("tcp-send: the toolstack is not running");
                            false
                        }
                    }
                }
                Command::Unknown(word) => {
                    println!("dom0: unknown command: {word}");
                    false
                }
            }
        }

        fn ls(&self) -> bool {
            let Some(a) = self.ramdisk else {
                println!("ls: no ramdisk");
                return false;
            };
            for e in a.entries() {
                match e {
                    Ok(e) => print_ls_line(&e),
                    Err(err) => {
                        println!("ls: {err}");
                        return false;
                    }
                }
            }
            true
        }

        fn cat(&self, args: &str) -> bool {
            if args.is_empty() {
                println!("cat: missing file operand");
                return false;
            }
            let Some(a) = self.ramdisk else {
                println!("cat: no ramdisk");
                return false;
            };
            let mut ok = true;
            for name in args.split_whitespace() {
                match a.find(name) {
                    Some(e) if e.kind() == Kind::Dir => {
                        println!("cat: {name}: Is a directory");
                        ok = false;
                    }
                    Some(e) => {
                        console::write_bytes(e.data);
                        if !e.data.is_empty() && !e.data.ends_with(b"\n") {
                            println!();
                        }
                    }
                    None => {
                        println!("cat: {name}: No such file or directory");
                        ok = false;
                    }
                }
            }
            ok
        }

        fn poweroff(&self) -> ! {
            let v = dom0_verdict(
                self.failed_checks,
                self.first_failed_check,
                self.failed_commands,
            );
            v.finish()
        }
    }

    fn print_ls_line(e: &Entry<'_>) {
        let t = match e.kind() {
            Kind::File => '-',
            Kind::Dir => 'd',
            Kind::Symlink => 'l',
            Kind::Other => '?',
        };
        let mut perm = [b'-'; 9];
        for (i, c) in b"rwxrwxrwx".iter().enumerate() {
            if e.perm() & (1 << (8 - i)) != 0 {
                perm[i] = *c;
            }
        }
        let perm = core::str::from_utf8(&perm).unwrap_or("?????????");
        let size = e.data.len();
        match e.kind() {
            Kind::Symlink => println!(
                "{t}{perm} {size:>10} /{} -> {}",
                e.path(),
                pv_guest_lib::util::utf8_prefix(e.data)
            ),
            Kind::Dir => println!("{t}{perm} {size:>10} /{}/", e.path()),
            _ => println!("{t}{perm} {size:>10} /{}", e.path()),
        }
    }

    /// `version`: everything xen_version tells; fails if a sub-op Xen 4.17
    /// always answers fails.
    fn version() -> bool {
        let mut ok = true;
        let fail = |what: &str, e: pv_guest_lib::Errno| {
            println!("version: {what}: {e}");
        };
        match (xen::version(), xen::extraversion()) {
            (Ok(v), Ok(x)) => println!(
                "Xen version {v}{} (XENVER_version {:#x})",
                c_str(&x.bytes),
                v.0
            ),
            (Err(e), _) => {
                fail("XENVER_version", e);
                ok = false;
            }
            (_, Err(e)) => {
                fail("XENVER_extraversion", e);
                ok = false;
            }
        }
        match xen::capabilities() {
            Ok(c) => println!("capabilities: {}", c_str(&c.bytes)),
            Err(e) => {
                fail("XENVER_capabilities", e);
                ok = false;
            }
        }
        match xen::changeset() {
            Ok(c) => println!("changeset: {}", c_str(&c.bytes)),
            Err(e) => {
                fail("XENVER_changeset", e);
                ok = false;
            }
        }
        match xen::platform_parameters() {
            Ok(p) => println!("platform parameters: virt_start {:#x}", p.virt_start),
            Err(e) => {
                fail("XENVER_platform_parameters", e);
                ok = false;
            }
        }
        match xen::pagesize() {
            Ok(p) if p == PAGE_SIZE => println!("pagesize: {p}"),
            Ok(p) => {
                println!("pagesize: {p} (expected {PAGE_SIZE})");
                ok = false;
            }
            Err(e) => {
                fail("XENVER_pagesize", e);
                ok = false;
            }
        }
        match xen::get_features(0) {
            Ok(bits) => {
                print!("features (submap 0): {bits:#010x}:");
                for f in XenFeature::ALL {
                    if f.submap_idx() == 0 && bits & f.submap_bit() != 0 {
                        print!(" {}", f.name().trim_start_matches("XENFEAT_"));
                    }
                }
                println!();
            }
            Err(e) => {
                fail("XENVER_get_features", e);
                ok = false;
            }
        }
        // Informational: not every hypervisor answers these.
        if let Ok(ci) = xen::compile_info() {
            println!(
                "compiled by {}@{} with {} on {}",
                c_str(&ci.compile_by),
                c_str(&ci.compile_domain),
                c_str(&ci.compiler),
                c_str(&ci.compile_date)
            );
        }
        if let Ok(cl) = xen::commandline() {
            println!("hypervisor command line: \"{}\"", c_str(&cl.bytes));
        }
        ok
    }
}
