//! The `xl` commands themselves (xl_vmcontrol.c, xl_info.c, xl_vcpu.c,
//! xl_mem.c, xl_sched.c, xl_console.c, xl_misc.c, xl_block.c, xl_nic.c):
//! each parses its options,
//! resolves domains, calls the back end and prints through [`super::format`],
//! returning the exit status.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

use super::backend::{
    AfterSave, ConsoleType, CreateRequest, CreditPool, DomainGone, DomainInfo, Trigger, XlBackend,
    XlError,
};
use super::cmdtable;
use super::cpumap::{parse_cpurange, CpuMap};
use super::format;
use super::getopt::{getopt, Exit, LongOpt, Parsed};
use super::parse::{parse_int, parse_mem_size_kb, parse_u32, DomainQualifier};
use crate::xlcfg::disk::{parse_disk_spec_parts, vdev_to_devid, DiskError};
use crate::xlcfg::vif::{parse_mac, parse_vif_args};

const EXIT_SUCCESS: i32 = 0;
const EXIT_FAILURE: i32 = 1;

/// One command's context.
pub(super) struct Ctx<'b> {
    pub be: &'b mut dyn XlBackend,
    pub out: &'b mut dyn Write,
    /// Global `-N`.
    pub dryrun: bool,
}

/// Early exit with a status (its output already written).
type Res<T> = Result<T, i32>;

impl Ctx<'_> {
    pub(super) fn dispatch(&mut self, name: &str, argv: &[&str]) -> i32 {
        let r = match name {
            "create" => self.create(argv),
            "list" => self.list(argv),
            "destroy" => self.destroy(argv),
            "shutdown" => self.shutdown_or_reboot(false, argv),
            "reboot" => self.shutdown_or_reboot(true, argv),
            "pause" => self.pause(true, argv),
            "unpause" => self.pause(false, argv),
            "console" => self.console(argv),
            "save" => self.save(argv),
            "restore" => self.restore(argv),
            "migrate" => self.migrate(argv),
            "migrate-receive" => self.migrate_receive(argv),
            "mem-max" => self.mem(true, argv),
            "mem-set" => self.mem(false, argv),
            "vcpu-list" => self.vcpu_list(argv),
            "vcpu-pin" => self.vcpu_pin(argv),
            "vcpu-set" => self.vcpu_set(argv),
            "info" => self.info(argv),
            "sched-credit" => self.sched_credit(argv),
            "domid" => self.domid(argv),
            "domname" => self.domname(argv),
            "debug-keys" => self.debug_keys(argv),
            "dmesg" => self.dmesg(argv),
            "top" => self.top(argv),
            "uptime" => self.uptime(argv),
            "block-attach" => self.block_attach(argv),
            "block-list" => self.block_list(argv),
            "block-detach" => self.block_detach(argv),
            "network-attach" => self.network_attach(argv),
            "network-list" => self.network_list(argv),
            "network-detach" => self.network_detach(argv),
            _ => {
                let _ = writeln!(self.out, "command not implemented");
                Err(EXIT_FAILURE)
            }
        };
        match r {
            Ok(()) => EXIT_SUCCESS,
            Err(code) => code,
        }
    }

    /// Writes one line (ignoring a failing writer: there is nowhere to
    /// report that).
    fn line(&mut self, args: fmt::Arguments<'_>) {
        let _ = self.out.write_fmt(args);
        let _ = self.out.write_str("\n");
    }

    /// Reports a failed back-end call: a back-end message as it is, else
    /// `xl`'s line (with `rc=N` filled in) and any detail; returns
    /// `EXIT_FAILURE`.
    fn fail(&mut self, e: &XlError, xl_line: fmt::Arguments<'_>) -> i32 {
        match e {
            XlError::Message(m) => {
                let _ = writeln!(self.out, "{m}");
            }
            _ => {
                let _ = self.out.write_fmt(xl_line);
                if let Some(d) = e.detail() {
                    let _ = write!(self.out, ": {d}");
                }
                let _ = self.out.write_str("\n");
            }
        }
        EXIT_FAILURE
    }

    fn not_exist(&mut self, what: &str) -> i32 {
        self.line(format_args!("Error: Domain '{what}' does not exist."));
        EXIT_FAILURE
    }

    fn opts<'a>(
        &mut self,
        argv: &[&'a str],
        shorts: &str,
        longs: &[LongOpt],
        cmd: &str,
        reqargs: usize,
    ) -> Res<Parsed<'a>> {
        getopt(argv, shorts, longs, cmd, reqargs, self.out).map_err(|Exit(c)| c)
    }

    fn domains(&mut self) -> Res<Vec<DomainInfo>> {
        match self.be.list_domains() {
            Ok(mut v) => {
                v.sort_by_key(|d| d.domid);
                Ok(v)
            }
            Err(e) => Err(self.fail(&e, format_args!("libxl_list_domain failed."))),
        }
    }

    /// Resolves a domain argument (xl_utils.c `find_domain`).
    fn find_domain(&mut self, s: &str) -> Res<DomainInfo> {
        let doms = self.domains()?;
        let found = match DomainQualifier::parse(s) {
            DomainQualifier::Id(id) => doms.into_iter().find(|d| d.domid == id),
            DomainQualifier::Name(n) => doms.into_iter().find(|d| d.name == n),
        };
        found.ok_or_else(|| self.not_exist(s))
    }

    /// Maps a back-end failure on domain `arg` to `xl`'s line.
    fn dom_fail(&mut self, arg: &str, e: &XlError, xl_line: fmt::Arguments<'_>) -> i32 {
        if *e == XlError::NoSuchDomain {
            self.not_exist(arg)
        } else {
            self.fail(e, xl_line)
        }
    }

    fn help_fail(&mut self, cmd: &str, code: i32) -> i32 {
        let _ = cmdtable::help(self.out, Some(cmd));
        code
    }

    // ---- xl_vmcontrol.c ----

    fn create(&mut self, argv: &[&str]) -> Res<()> {
        let mut filename: Option<&str> = None;
        let mut argv = argv;
        if let Some(first) = argv.first() {
            if !first.starts_with('-') && !first.contains('=') {
                filename = Some(first);
                argv = &argv[1..];
            }
        }
        const LONGS: &[LongOpt] = &[
            ("dryrun", false, 'n'),
            ("quiet", false, 'q'),
            ("defconfig", true, 'f'),
            ("vncviewer", false, 'V'),
            ("vncviewer-autopass", false, 'A'),
        ];
        let p = self.opts(argv, "Fnqf:pcdeVA", LONGS, "create", 0)?;
        if let Some(f) = p.value('f') {
            filename = Some(f);
        }
        let mut extra = Vec::new();
        for a in &p.args {
            if a.contains('=') {
                extra.push(String::from(*a));
            } else if filename.is_none() {
                filename = Some(a);
            } else {
                return Err(self.help_fail("create", 2));
            }
        }
        let req = CreateRequest {
            config_file: filename.map(String::from),
            extra_config: extra,
            paused: p.has('p'),
            console: p.has('c'),
            quiet: p.has('q'),
            dry_run: self.dryrun || p.has('n'),
            debug: p.has('d'),
        };
        let Some(file) = filename else {
            self.line(format_args!(
                "Config file not specified and none in save file"
            ));
            return Err(EXIT_FAILURE);
        };
        if !req.quiet {
            self.line(format_args!("Parsing config from {file}"));
        }
        let domid = match self.be.create(&req, self.out) {
            Ok(d) => d,
            Err(e) => return Err(self.fail(&e, format_args!("create failed (rc={})", e.rc()))),
        };
        if let (Some(domid), true) = (domid, req.console) {
            if let Err(e) = self.be.console(domid, ConsoleType::Primary, 0) {
                self.fail(&e, format_args!("Unable to attach console"));
            }
        }
        Ok(())
    }

    fn destroy(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "f", &[], "destroy", 1)?;
        let d = self.find_domain(p.args[0])?;
        if d.domid == 0 && !p.has('f') {
            let _ = write!(
                self.out,
                "Not destroying domain 0; use -f to force.\n\
                 This can only be done when using a disaggregated \
                 hardware domain and toolstack.\n\n"
            );
            return Err(EXIT_FAILURE);
        }
        self.be.destroy(d.domid).map_err(|e| {
            self.dom_fail(
                p.args[0],
                &e,
                format_args!("destroy failed (rc={})", e.rc()),
            )
        })
    }

    fn shutdown_or_reboot(&mut self, reboot: bool, argv: &[&str]) -> Res<()> {
        let what = if reboot { "reboot" } else { "shutdown" };
        const LONGS: &[LongOpt] = &[("all", false, 'a'), ("wait", false, 'w')];
        let p = self.opts(argv, "awF", LONGS, what, 0)?;
        let (all, wait, fallback) = (p.has('a'), p.has('w'), p.has('F'));
        if p.args.is_empty() && !all {
            let _ = write!(self.out, "You must specify -a or a domain id.\n\n");
            return Err(EXIT_FAILURE);
        }
        let targets: Vec<(u32, String)> = if all {
            self.domains()?
                .into_iter()
                .filter(|d| d.domid != 0 && !d.never_stop)
                .map(|d| (d.domid, String::new()))
                .collect()
        } else {
            let d = self.find_domain(p.args[0])?;
            alloc::vec![(d.domid, String::from(p.args[0]))]
        };
        for (domid, arg) in &targets {
            let domid = *domid;
            let r = if reboot {
                self.line(format_args!("Rebooting domain {domid}"));
                self.be.reboot(domid)
            } else {
                self.line(format_args!("Shutting down domain {domid}"));
                self.be.shutdown(domid)
            };
            let r = match r {
                Err(XlError::NoParavirt) => {
                    let (event, button) = if reboot {
                        ("reboot", "reset")
                    } else {
                        ("shutdown", "power")
                    };
                    if fallback {
                        self.line(format_args!(
                            "PV control interface not available: sending ACPI {button} {}event.",
                            if reboot { "" } else { "button " }
                        ));
                        let t = if reboot {
                            Trigger::Reset
                        } else {
                            Trigger::Power
                        };
                        self.be.send_trigger(domid, t)
                    } else {
                        self.line(format_args!(
                            "PV control interface not available: external graceful {event} not possible."
                        ));
                        self.line(format_args!(
                            "Use \"-F\" to fallback to ACPI {button} event."
                        ));
                        Err(XlError::NoParavirt)
                    }
                }
                r => r,
            };
            if let Err(e) = r {
                let shown = if arg.is_empty() {
                    alloc::format!("{domid}")
                } else {
                    arg.clone()
                };
                return Err(self.dom_fail(
                    &shown,
                    &e,
                    format_args!("{what} failed (rc={})", e.rc()),
                ));
            }
        }
        if wait {
            self.line(format_args!("Waiting for {} domains", targets.len()));
            for (domid, _) in &targets {
                match self.be.wait_for_domain(*domid) {
                    Ok(DomainGone::Destroyed) | Err(XlError::NoSuchDomain) => {
                        self.line(format_args!("Domain {domid} has been destroyed"))
                    }
                    Ok(DomainGone::Shutdown(r)) => self.line(format_args!(
                        "Domain {domid} has been shut down, reason code {r}"
                    )),
                    Err(e) => {
                        return Err(self.fail(
                            &e,
                            format_args!("Failed to get event, quitting (rc={})", e.rc()),
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    // ---- xl_saverestore.c ----

    fn save(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "cpD", &[], "save", 2)?;
        if p.args.len() > 3 {
            return Err(self.help_fail("save", 2));
        }
        let d = self.find_domain(p.args[0])?;
        let file = p.args[1];
        let config = p.args.get(2).copied();
        let after = if p.has('c') {
            AfterSave::Run
        } else if p.has('p') {
            AfterSave::Pause
        } else {
            AfterSave::Destroy
        };
        match self.be.save(d.domid, file, config, after, self.out) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(
                &e,
                format_args!("Failed to save domain, resuming domain (rc={})", e.rc()),
            )),
        }
    }

    fn restore(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "pdeV", &[], "restore", 1)?;
        let (config, file) = match p.args.len() {
            1 => (None, p.args[0]),
            2 => (Some(p.args[0]), p.args[1]),
            _ => return Err(self.help_fail("restore", 2)),
        };
        match self.be.restore(file, config, p.has('p'), self.out) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail(&e, format_args!("cannot (re-)build domain: {}", e.rc()))),
        }
    }

    fn migrate(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "C:s:epD", &[], "migrate", 2)?;
        if p.args.len() > 2 {
            return Err(self.help_fail("migrate", 2));
        }
        if p.value('s').is_some() {
            self.line(format_args!(
                "xl migrate: -s: Oxen has no ssh; run `xl migrate-receive` on the target instead"
            ));
            return Err(EXIT_FAILURE);
        }
        let d = self.find_domain(p.args[0])?;
        match self
            .be
            .migrate(d.domid, p.args[1], p.value('C'), p.has('p'), self.out)
        {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(&e, format_args!("migration failed (rc={})", e.rc()))),
        }
    }

    fn migrate_receive(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "Fedp", &[], "migrate-receive", 0)?;
        if !p.args.is_empty() {
            return Err(self.help_fail("migrate-receive", 2));
        }
        match self.be.migrate_receive(p.has('p'), self.out) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail(&e, format_args!("migration target: failed (rc={})", e.rc()))),
        }
    }

    fn pause(&mut self, pause: bool, argv: &[&str]) -> Res<()> {
        let what = if pause { "pause" } else { "unpause" };
        let p = self.opts(argv, "", &[], what, 1)?;
        let d = self.find_domain(p.args[0])?;
        let r = if pause {
            self.be.pause(d.domid)
        } else {
            self.be.unpause(d.domid)
        };
        r.map_err(|e| {
            self.dom_fail(
                p.args[0],
                &e,
                format_args!("libxl_domain_{what} failed (rc={})", e.rc()),
            )
        })
    }

    // ---- xl_console.c ----

    fn console(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "n:t:", &[], "console", 1)?;
        let mut kind = ConsoleType::Primary;
        let mut num = 0;
        for (o, v) in &p.opts {
            let v = v.unwrap_or("");
            match o {
                't' => {
                    kind = match v {
                        "pv" => ConsoleType::Pv,
                        "serial" => ConsoleType::Serial,
                        "vuart" => ConsoleType::Vuart,
                        _ => {
                            self.line(format_args!(
                                "console type supported are: pv, serial, vuart"
                            ));
                            return Err(EXIT_FAILURE);
                        }
                    }
                }
                'n' => num = parse_u32(v).unwrap_or(0),
                _ => {}
            }
        }
        let d = self.find_domain(p.args[0])?;
        self.be
            .console(d.domid, kind, num)
            .map_err(|e| self.dom_fail(p.args[0], &e, format_args!("Unable to attach console")))
    }

    // ---- xl_info.c ----

    fn list(&mut self, argv: &[&str]) -> Res<()> {
        const LONGS: &[LongOpt] = &[
            ("long", false, 'l'),
            ("verbose", false, 'v'),
            ("context", false, 'Z'),
            ("cpupool", false, 'c'),
            ("numa", false, 'n'),
        ];
        let p = self.opts(argv, "lvhZcn", LONGS, "list", 0)?;
        let doms = match p.args.len() {
            0 => self.domains()?,
            1 => alloc::vec![self.find_domain(p.args[0])?],
            _ => return Err(self.help_fail("list", EXIT_FAILURE)),
        };
        if p.has('l') {
            let mut entries = Vec::new();
            for d in &doms {
                if let Ok(c) = self.be.domain_config(d.domid) {
                    entries.push((d.domid, c));
                }
            }
            let _ = format::list_long(self.out, &entries);
            return Ok(());
        }
        let o = format::ListOpts {
            verbose: p.has('v'),
            context: p.has('Z'),
            cpupool: p.has('c'),
            numa: p.has('n'),
        };
        let pools = if o.cpupool {
            self.be.list_cpupools().unwrap_or_default()
        } else {
            Vec::new()
        };
        let _ = format::list_header(self.out, &o);
        for d in &doms {
            let pool = pools
                .iter()
                .find(|c| c.poolid == d.cpupool)
                .map_or("", |c| c.name.as_str());
            let _ = format::list_row(self.out, d, &o, pool);
        }
        Ok(())
    }

    fn info(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "n", &[("numa", false, 'n')], "info", 0)?;
        let filter = if p.has('n') {
            None
        } else {
            p.args.first().copied()
        };
        let u = match self.be.uname() {
            Ok(u) => u,
            Err(e) => return Err(self.fail(&e, format_args!("uname failed."))),
        };
        let ph = match self.be.physinfo() {
            Ok(x) => x,
            Err(e) => return Err(self.fail(&e, format_args!("libxl_physinfo failed."))),
        };
        let v = match self.be.version_info() {
            Ok(x) => x,
            Err(e) => return Err(self.fail(&e, format_args!("libxl_get_version_info failed."))),
        };
        let numa = if p.has('n') {
            let cpus = match self.be.cpu_topology() {
                Ok(x) => x,
                Err(e) => return Err(self.fail(&e, format_args!("libxl_get_cpu_topology failed."))),
            };
            let nodes = match self.be.numa_info() {
                Ok(x) => x,
                Err(e) => return Err(self.fail(&e, format_args!("libxl_get_numainfo failed."))),
            };
            Some((cpus, nodes))
        } else {
            None
        };
        let numa = numa
            .as_ref()
            .map(|(cpus, nodes)| format::Numa { cpus, nodes });
        let _ = format::info(self.out, &u, &ph, &v, filter, numa.as_ref());
        Ok(())
    }

    fn domid(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "", &[], "domid", 1)?;
        let name = p.args[0];
        let doms = self.domains()?;
        match doms.iter().find(|d| d.name == name) {
            Some(d) => {
                self.line(format_args!("{}", d.domid));
                Ok(())
            }
            None => {
                self.line(format_args!(
                    "Can't get domid of domain name '{name}', maybe this domain does not exist."
                ));
                Err(EXIT_FAILURE)
            }
        }
    }

    fn domname(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "", &[], "domname", 1)?;
        let Some(id) = parse_u32(p.args[0]) else {
            let _ = write!(self.out, "Invalid domain id.\n\n");
            return Err(EXIT_FAILURE);
        };
        let doms = self.domains()?;
        match doms.iter().find(|d| d.domid == id) {
            Some(d) => {
                let name = d.name.clone();
                self.line(format_args!("{name}"));
                Ok(())
            }
            None => {
                self.line(format_args!(
                    "Can't get domain name of domain id '{id}', maybe this domain does not exist."
                ));
                Err(EXIT_FAILURE)
            }
        }
    }

    fn uptime(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "s", &[], "uptime", 0)?;
        let short = p.has('s');
        let doms = if p.args.is_empty() {
            self.domains()?
        } else {
            let mut v = Vec::new();
            for a in &p.args {
                v.push(self.find_domain(a)?);
            }
            v
        };
        let now = if short {
            match self.be.wallclock_secs() {
                Ok(n) => n,
                Err(e) => return Err(self.fail(&e, format_args!("Get localtime error"))),
            }
        } else {
            0
        };
        if !short {
            let _ = format::uptime_header(self.out);
        }
        for d in &doms {
            match self.be.uptime_secs(d.domid) {
                Ok(up) => {
                    let _ = format::uptime_row(self.out, &d.name, d.domid, up, short, now);
                }
                // xl skips domains whose start time it cannot read, except
                // Dom0, where it gives up.
                Err(e) if d.domid == 0 => {
                    return Err(self.fail(&e, format_args!("Can not get Dom0 uptime.")))
                }
                Err(_) => {}
            }
        }
        Ok(())
    }

    fn dmesg(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "c", &[("clear", false, 'c')], "dmesg", 0)?;
        match self.be.read_xen_console(p.has('c')) {
            Ok(s) => {
                let _ = self.out.write_str(&s);
                Ok(())
            }
            Err(e) => Err(self.fail(&e, format_args!("libxl_xen_console_read_start failed."))),
        }
    }

    fn debug_keys(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "", &[], "debug-keys", 1)?;
        let keys = p.args[0];
        self.be
            .send_debug_keys(keys)
            .map_err(|e| self.fail(&e, format_args!("cannot send debug keys: {keys}")))
    }

    fn top(&mut self, argv: &[&str]) -> Res<()> {
        // xl runs xentop; these are xentop's -d, -i and -b.
        let p = self.opts(argv, "d:i:b", &[], "top", 0)?;
        let mut delay = 3;
        let mut iterations = 0;
        for (o, v) in &p.opts {
            let n = v.and_then(parse_u32);
            match (o, n) {
                ('d', Some(n)) if n > 0 => delay = n,
                ('i', Some(n)) => iterations = n,
                ('d' | 'i', _) => {
                    self.line(format_args!(
                        "Invalid value for -{o}: '{}'.",
                        v.unwrap_or("")
                    ));
                    return Err(EXIT_FAILURE);
                }
                _ => {}
            }
        }
        let o = format::TopOpts { batch: p.has('b') };
        let mut prev = None;
        let mut n = 0u32;
        loop {
            let cur = match self.be.top_sample() {
                Ok(s) => s,
                Err(e) => {
                    return Err(self.fail(
                        &e,
                        format_args!("Failed to retrieve statistics from libxenstat"),
                    ))
                }
            };
            let _ = format::top_frame(self.out, prev.as_ref(), &cur, &o);
            n = n.saturating_add(1);
            if iterations != 0 && n >= iterations {
                return Ok(());
            }
            match self.be.top_wait(delay) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => return Err(self.fail(&e, format_args!("xentop failed."))),
            }
            prev = Some(cur);
        }
    }

    // ---- xl_mem.c ----

    fn mem(&mut self, max: bool, argv: &[&str]) -> Res<()> {
        let cmd = if max { "mem-max" } else { "mem-set" };
        let p = self.opts(argv, "", &[], cmd, 2)?;
        let d = self.find_domain(p.args[0])?;
        let mem = p.args[1];
        let Some(kb) = parse_mem_size_kb(mem) else {
            self.line(format_args!("invalid memory size: {mem}"));
            return Err(EXIT_FAILURE);
        };
        let r = if max {
            self.be.set_memory_max(d.domid, kb)
        } else {
            self.be.set_memory_target(d.domid, kb)
        };
        let which = if max { "static" } else { "dynamic" };
        r.map_err(|e| {
            self.dom_fail(
                p.args[0],
                &e,
                format_args!("cannot set domid {} {which} max memory to : {mem}", d.domid),
            )
        })
    }

    // ---- xl_vcpu.c ----

    fn vcpu_list(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "", &[], "vcpu-list", 0)?;
        let phys = match self.be.physinfo() {
            Ok(x) => x,
            Err(e) => return Err(self.fail(&e, format_args!("libxl_physinfo failed."))),
        };
        let doms = if p.args.is_empty() {
            self.domains()?
        } else {
            let mut v = Vec::new();
            for a in &p.args {
                v.push(self.find_domain(a)?);
            }
            v
        };
        let _ = format::vcpu_list_header(self.out);
        for d in &doms {
            // xl skips a domain whose vCPUs it cannot list.
            if let Ok(vcpus) = self.be.list_vcpus(d.domid) {
                for v in &vcpus {
                    let _ =
                        format::vcpu_list_row(self.out, &d.name, d.domid, v, phys.nr_cpus as usize);
                }
            }
        }
        Ok(())
    }

    fn vcpu_pin(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "f", &[("force", false, 'f')], "vcpu-pin", 3)?;
        let force = p.has('f');
        let d = self.find_domain(p.args[0])?;
        let (vcpu_s, hard_s) = (p.args[1], p.args[2]);
        let soft_s = p.args.get(3).copied();
        let vcpu = match parse_int(vcpu_s) {
            Some(n) if n >= 0 => match u32::try_from(n) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.line(format_args!("Error: Invalid argument {vcpu_s} as VCPU."));
                    return Err(EXIT_FAILURE);
                }
            },
            _ if vcpu_s == "all" => {
                if force {
                    self.line(format_args!(
                        "Error: --force and 'all' as VCPU not allowed."
                    ));
                    return Err(EXIT_FAILURE);
                }
                None
            }
            _ => {
                self.line(format_args!("Error: Invalid argument {vcpu_s} as VCPU."));
                return Err(EXIT_FAILURE);
            }
        };
        let phys = match self.be.physinfo() {
            Ok(x) => x,
            Err(e) => return Err(self.fail(&e, format_args!("libxl_physinfo failed."))),
        };
        let size = phys.max_cpu_id as usize + 1;
        let hard = match hard_s {
            "-" => None,
            s => Some(self.cpurange(s, size)?),
        };
        let soft = match soft_s {
            None | Some("-") => None,
            Some(s) => Some(self.cpurange(s, size)?),
        };
        if self.dryrun {
            let nb = phys.nr_cpus as usize;
            let _ = self.out.write_str("cpumap: ");
            match &hard {
                Some(h) => {
                    let _ = write!(self.out, "{}", h.display(nb));
                }
                None => {
                    let _ = self.out.write_str("-");
                }
            }
            if let Some(s) = &soft {
                let _ = write!(self.out, " {}", s.display(nb));
            }
            let _ = self.out.write_str("\n");
            return Ok(());
        }
        let r = self
            .be
            .set_vcpu_affinity(d.domid, vcpu, hard.as_ref(), soft.as_ref(), force);
        r.map_err(|e| match vcpu {
            Some(v) => self.dom_fail(
                p.args[0],
                &e,
                format_args!("Could not set affinity for vcpu `{v}'."),
            ),
            None => self.dom_fail(p.args[0], &e, format_args!("Could not set affinity.")),
        })
    }

    fn cpurange(&mut self, s: &str, size: usize) -> Res<CpuMap> {
        let be = &mut *self.be;
        let r = parse_cpurange(s, size, &mut |node| be.node_cpus(node).ok());
        match r {
            Ok(m) => Ok(m),
            Err(e) => {
                let _ = writeln!(self.out, "{e}");
                Err(EXIT_FAILURE)
            }
        }
    }

    fn vcpu_set(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "i", &[("ignore-host", false, 'i')], "vcpu-set", 2)?;
        let d = self.find_domain(p.args[0])?;
        let Some(n) = parse_u32(p.args[1]) else {
            self.line(format_args!("Error: Invalid argument."));
            return Err(EXIT_FAILURE);
        };
        if !p.has('i') {
            let host = match self.be.physinfo() {
                Ok(x) => x.max_cpu_id.saturating_add(1),
                Err(e) => return Err(self.fail(&e, format_args!("libxl_physinfo failed."))),
            };
            if n > d.vcpu_online && n > host {
                self.line(format_args!(
                    "You are overcommmitting! You have {host} physical CPUs and want {n} vCPUs! \
                     Aborting, use --ignore-host to continue"
                ));
                return Err(EXIT_FAILURE);
            }
        }
        match self.be.set_vcpus_online(d.domid, n) {
            Ok(()) => Ok(()),
            Err(XlError::NoSuchDomain) => {
                self.line(format_args!("Domain {} does not exist.", d.domid));
                Err(EXIT_FAILURE)
            }
            Err(e) => Err(self.fail(
                &e,
                format_args!(
                    "libxl_set_vcpuonline failed domid={} max_vcpus={n}, rc: {}",
                    d.domid,
                    e.rc()
                ),
            )),
        }
    }

    // ---- xl_sched.c ----

    fn sched_credit(&mut self, argv: &[&str]) -> Res<()> {
        const LONGS: &[LongOpt] = &[
            ("domain", true, 'd'),
            ("weight", true, 'w'),
            ("cap", true, 'c'),
            ("schedparam", false, 's'),
            ("tslice_ms", true, 't'),
            ("ratelimit_us", true, 'r'),
            ("migration_delay_us", true, 'm'),
            ("cpupool", true, 'p'),
        ];
        let p = self.opts(argv, "d:w:c:p:t:r:m:s", LONGS, "sched-credit", 0)?;
        let mut num = |c: char| -> Res<Option<u32>> {
            match p.value(c) {
                None => Ok(None),
                Some(v) => match parse_u32(v) {
                    Some(n) => Ok(Some(n)),
                    None => {
                        let _ = writeln!(self.out, "Invalid value for -{c}: '{v}'.");
                        Err(EXIT_FAILURE)
                    }
                },
            }
        };
        let (weight, cap) = (num('w')?, num('c')?);
        let (tslice, ratelimit, delay) = (num('t')?, num('r')?, num('m')?);
        let dom = p.value('d');
        let cpupool = p.value('p');
        let opt_s = p.has('s');
        let (opt_w, opt_c) = (weight.is_some(), cap.is_some());
        if (cpupool.is_some() || opt_s) && (dom.is_some() || opt_w || opt_c) {
            self.line(format_args!(
                "Specifying a cpupool or schedparam is not allowed with domain options."
            ));
            return Err(EXIT_FAILURE);
        }
        if dom.is_none() && (opt_w || opt_c) {
            self.line(format_args!("Must specify a domain."));
            return Err(EXIT_FAILURE);
        }
        if !opt_s && (tslice.is_some() || ratelimit.is_some() || delay.is_some()) {
            self.line(format_args!(
                "Must specify schedparam to set schedule parameter values."
            ));
            return Err(EXIT_FAILURE);
        }
        let pools = match self.be.list_cpupools() {
            Ok(p) => p,
            Err(e) => return Err(self.fail(&e, format_args!("error getting cpupool info"))),
        };
        let pool = match cpupool {
            None => None,
            Some(q) => {
                let found = match parse_u32(q) {
                    Some(id) => pools.iter().find(|p| p.poolid == id),
                    None => pools.iter().find(|p| p.name == q),
                };
                match found {
                    Some(p) => Some(p.clone()),
                    None => {
                        self.line(format_args!("unknown cpupool '{q}'"));
                        return Err(EXIT_FAILURE);
                    }
                }
            }
        };
        if opt_s {
            let (poolid, name) = match &pool {
                Some(p) => (p.poolid, p.name.clone()),
                None => (
                    0,
                    pools
                        .iter()
                        .find(|p| p.poolid == 0)
                        .map_or_else(|| String::from("Pool-0"), |p| p.name.clone()),
                ),
            };
            if tslice.is_none() && ratelimit.is_none() && delay.is_none() {
                let params = self.be.sched_credit_pool_get(poolid).ok();
                let _ = format::sched_credit_pool(self.out, &name, params.as_ref());
                return Ok(());
            }
            let cur = match self.be.sched_credit_pool_get(poolid) {
                Ok(c) => c,
                Err(e) => {
                    return Err(self.fail(&e, format_args!("libxl_sched_credit_params_get failed.")))
                }
            };
            let new = CreditPool {
                tslice_ms: tslice.unwrap_or(cur.tslice_ms),
                ratelimit_us: ratelimit.unwrap_or(cur.ratelimit_us),
                migration_delay_us: delay.unwrap_or(cur.migration_delay_us),
            };
            return self
                .be
                .sched_credit_pool_set(poolid, &new)
                .map_err(|e| self.fail(&e, format_args!("libxl_sched_credit_params_set failed.")));
        }
        match dom {
            None => {
                let doms = self.domains()?;
                for pl in pools.iter().filter(|p| p.sched == "credit") {
                    if let Some(want) = &pool {
                        if want.poolid != pl.poolid {
                            continue;
                        }
                    }
                    let params = self.be.sched_credit_pool_get(pl.poolid).ok();
                    let _ = format::sched_credit_pool(self.out, &pl.name, params.as_ref());
                    let _ = format::sched_credit_header(self.out);
                    for d in doms.iter().filter(|d| d.cpupool == pl.poolid) {
                        match self.be.sched_credit_get(d.domid) {
                            Ok(c) => {
                                let _ = format::sched_credit_row(self.out, &d.name, d.domid, &c);
                            }
                            Err(e) => {
                                return Err(self.fail(
                                    &e,
                                    format_args!("libxl_domain_sched_params_get failed."),
                                ))
                            }
                        }
                    }
                }
                Ok(())
            }
            Some(arg) => {
                let d = self.find_domain(arg)?;
                if !opt_w && !opt_c {
                    let _ = format::sched_credit_header(self.out);
                    return match self.be.sched_credit_get(d.domid) {
                        Ok(c) => {
                            let _ = format::sched_credit_row(self.out, &d.name, d.domid, &c);
                            Ok(())
                        }
                        Err(e) => Err(self.dom_fail(
                            arg,
                            &e,
                            format_args!("libxl_domain_sched_params_get failed."),
                        )),
                    };
                }
                self.be.sched_credit_set(d.domid, weight, cap).map_err(|e| {
                    self.dom_fail(
                        arg,
                        &e,
                        format_args!("libxl_domain_sched_params_set failed."),
                    )
                })
            }
        }
    }
    // ---- xl_block.c ----

    fn block_attach(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "", &[], "block-attach", 2)?;
        let d = self.find_domain(p.args[0])?;
        let disk = match parse_disk_spec_parts(&p.args[1..]) {
            Ok(disk) => disk,
            Err(DiskError::Syntax(errs)) => {
                // libxlu reports against the config source "command line".
                for e in &errs {
                    self.line(format_args!("command line: {e}"));
                }
                return Err(EXIT_FAILURE);
            }
            Err(e @ DiskError::BadVdev(_)) => {
                // libxl refuses the vdev when it adds the disk.
                self.line(format_args!("{e}"));
                self.line(format_args!("libxl_device_disk_add failed."));
                return Err(EXIT_FAILURE);
            }
        };
        if self.dryrun {
            let _ = self.out.write_str("disk: ");
            let _ = format::disk_json(&disk).write(self.out, 0);
            let _ = self.out.write_str("\n\n"); // libxl ends its JSON with a newline; xl adds one
            return Ok(());
        }
        self.be.block_attach(d.domid, &disk).map_err(|e| {
            self.dom_fail(p.args[0], &e, format_args!("libxl_device_disk_add failed."))
        })
    }

    fn block_list(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "", &[], "block-list", 1)?;
        let _ = format::block_list_header(self.out);
        for a in &p.args {
            // xl complains about a bad domain and goes on with the next.
            let Ok(d) = self.find_domain(a) else {
                continue;
            };
            // A domain whose disks cannot be listed is skipped, as in xl.
            if let Ok(disks) = self.be.block_list(d.domid) {
                for b in &disks {
                    let _ = format::block_list_row(self.out, b);
                }
            }
        }
        Ok(())
    }

    fn block_detach(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "f", &[("force", false, 'f')], "block-detach", 2)?;
        let force = p.has('f');
        let d = self.find_domain(p.args[0])?;
        let vdev = p.args[1];
        let not_connected = |c: &mut Self| {
            c.line(format_args!("Error: Device {vdev} not connected."));
            EXIT_FAILURE
        };
        // libxl_vdev_to_device_disk: the vdev's number, then the device.
        let Some(devid) = vdev_to_devid(vdev) else {
            return Err(not_connected(self));
        };
        match self.be.block_list(d.domid) {
            Ok(disks) if !disks.iter().any(|b| b.devid == devid) => {
                return Err(not_connected(self))
            }
            Err(XlError::NoSuchDomain) => return Err(self.not_exist(p.args[0])),
            // Listed, or the back end cannot list: let the detach decide.
            _ => {}
        }
        let what = if force { "destroy" } else { "safe_remove" };
        self.be.block_detach(d.domid, devid, force).map_err(|e| {
            self.dom_fail(
                p.args[0],
                &e,
                format_args!("libxl_device_disk_{what} failed."),
            )
        })
    }

    // ---- xl_nic.c ----

    fn network_attach(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "", &[], "network-attach", 1)?;
        let d = self.find_domain(p.args[0])?;
        let nic = match parse_vif_args(&p.args[1..]) {
            Ok(n) => n,
            Err(e) if e.has_source_prefix() => {
                self.line(format_args!("command line: {e}"));
                return Err(EXIT_FAILURE);
            }
            Err(e) => {
                self.line(format_args!("{e}"));
                return Err(EXIT_FAILURE);
            }
        };
        if self.dryrun {
            let _ = self.out.write_str("vif: ");
            let _ = format::nic_json(&nic).write(self.out, 0);
            let _ = self.out.write_str("\n\n");
            return Ok(());
        }
        self.be
            .network_attach(d.domid, &nic)
            .map_err(|e| self.dom_fail(p.args[0], &e, format_args!("libxl_device_nic_add failed.")))
    }

    fn network_list(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "", &[], "network-list", 1)?;
        let _ = format::network_list_header(self.out);
        for a in &p.args {
            // xl's find_domain gives up at a bad domain.
            let d = self.find_domain(a)?;
            if let Ok(nics) = self.be.network_list(d.domid) {
                for n in &nics {
                    let _ = format::network_list_row(self.out, n);
                }
            }
        }
        Ok(())
    }

    fn network_detach(&mut self, argv: &[&str]) -> Res<()> {
        let p = self.opts(argv, "", &[], "network-detach", 2)?;
        let d = self.find_domain(p.args[0])?;
        let which = p.args[1];
        let unknown = |c: &mut Self| {
            c.line(format_args!("Unknown device {which}."));
            EXIT_FAILURE
        };
        let listed = match self.be.network_list(d.domid) {
            Ok(l) => Some(l),
            Err(XlError::NoSuchDomain) => return Err(self.not_exist(p.args[0])),
            Err(_) => None,
        };
        let devid = if which.contains(':') {
            // libxl_mac_to_device_nic: a MAC, looked up among the vifs.
            let mac = parse_mac(which);
            match (mac, &listed) {
                (Some(m), Some(l)) => match l.iter().find(|n| n.mac == m) {
                    Some(n) => n.devid,
                    None => return Err(unknown(self)),
                },
                _ => return Err(unknown(self)),
            }
        } else {
            // libxl_devid_to_device_nic(atoi(...)).
            let id = atoi(which);
            let Ok(id) = u32::try_from(id) else {
                return Err(unknown(self));
            };
            if listed.is_some_and(|l| !l.iter().any(|n| n.devid == id)) {
                return Err(unknown(self));
            }
            id
        };
        self.be
            .network_detach(d.domid, devid)
            .map_err(|e| self.dom_fail(p.args[0], &e, format_args!("libxl_device_nic_del failed.")))
    }
}

/// C's `atoi` (leading white space, a sign, digits; 0 if none).
fn atoi(s: &str) -> i64 {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut v: i64 = 0;
    for b in t.bytes().take_while(u8::is_ascii_digit) {
        v = v.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg {
        -v
    } else {
        v
    }
}
