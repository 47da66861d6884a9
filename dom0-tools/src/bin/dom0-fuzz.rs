//! Test Dom0 of the hostile fuzzing guest (issue 8). Through the
//! toolstack ([`Toolstack`], what `xl` drives) it:
//!
//! 1. notes the hypervisor's free memory (`XEN_SYSCTL_physinfo`);
//! 2. creates the canary (`/boot/domu-canary`: a heartbeat line every
//!    ~100 ms with the checksum of its pattern pages);
//! 3. for each run, creates the fuzzer (`/boot/domu-fuzz`, 2 vCPUs,
//!    `extra="seed=S calls=N"`), watches the canary's heartbeat while the
//!    fuzzer runs, relays the fuzzer's `fuzz:` report lines onto its own
//!    console once it printed its total, destroys it, and checks that
//!    every frame came back, that the canary's heartbeat kept advancing
//!    and that its checksum is unchanged;
//! 4. checks that Dom0 is healthy (a new guest is created, comes up and
//!    is destroyed; xenstore answers), that the canary still beats, that
//!    the free memory is back exactly once the canary is gone too, that
//!    the hypervisor's console shows no domain crash or panic, and that
//!    no domain is left but Dom0.
//!
//! Its command line (Dom0's, from the boot loader) may set
//! `seed=S calls=N runs=R` (defaults: seed 1, 200000 calls, 1 run; run i
//! uses seed S + i): `scripts/bench --only hostile` runs millions. A
//! `trace` word makes the fuzzer print each random and grant call before
//! making it (the last five are relayed): to find the call behind a
//! failure.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;

    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;

    use dom0_tools::bench::has_line;
    use dom0_tools::pvtest::{Checks, ConsoleOut};
    use dom0_tools::ramdisk::Archive;
    use dom0_tools::toolstack::Toolstack;
    use dom0_tools::xc;
    use dom0_tools::xl::backend::CreateRequest;
    use dom0_tools::xl::XlBackend;
    use pv_guest_lib::{println, time, StartInfo};

    pv_guest_lib::entry!(main);

    /// Heap pages for the toolstack.
    const HEAP_PAGES: u64 = 4096;
    const HELLO_CFG: &str = "/etc/xen/hello.cfg";
    const FUZZ_KERNEL: &str = "/boot/domu-fuzz";
    const CANARY_KERNEL: &str = "/boot/domu-canary";
    /// How long a guest may take to be up.
    const UP_NS: u64 = 30_000_000_000;
    /// How long one fuzz run may take, per million calls (TCG).
    const RUN_NS_PER_MILLION: u64 = 600_000_000_000;
    /// The longest the canary may go without a heartbeat while the
    /// fuzzer runs.
    const MAX_GAP_NS: u64 = 10_000_000_000;
    /// How long freed memory may take to show (domain teardown).
    const SETTLE_NS: u64 = 5_000_000_000;

    struct Opts {
        seed: u64,
        calls: u64,
        runs: u64,
        /// The fuzzer prints each random call (debugging).
        trace: bool,
    }

    fn opts(si: &StartInfo) -> Opts {
        let mut o = Opts {
            seed: 1,
            calls: 200_000,
            runs: 1,
            trace: false,
        };
        for w in si.cmd_line().split_whitespace() {
            if w == "trace" {
                o.trace = true;
            }
            let (k, v) = w.split_once('=').unwrap_or((w, ""));
            let Ok(v) = v.parse::<u64>() else { continue };
            match k {
                "seed" => o.seed = v,
                "calls" => o.calls = v,
                "runs" => o.runs = v.max(1),
                _ => {}
            }
        }
        o
    }

    fn backlog_text(ts: &Toolstack, id: u32) -> String {
        let Some(b) = ts.console_backlog(id as u16) else {
            return String::new();
        };
        let (a, c) = b.as_slices();
        let mut v = Vec::with_capacity(a.len() + c.len());
        v.extend_from_slice(a);
        v.extend_from_slice(c);
        String::from_utf8_lossy(&v).into_owned()
    }

    /// The canary's last heartbeat: (counter, checksum).
    fn heartbeat(ts: &Toolstack, id: u32) -> Option<(u64, String)> {
        let text = backlog_text(ts, id);
        text.lines()
            .filter(|l| l.ends_with(|c: char| c.is_ascii_hexdigit()))
            .filter_map(|l| l.split("domu-canary: heartbeat ").nth(1))
            .filter_map(|r| {
                let (n, rest) = r.split_once(" checksum ")?;
                Some((n.parse().ok()?, String::from(rest.trim())))
            })
            .next_back()
    }

    fn domains() -> usize {
        let mut n = 0;
        let mut next = 0u16;
        let mut out = [xc::DomainInfo::default(); 8];
        while let Ok(got) = xc::domain_list(next, &mut out) {
            n += got;
            match out[..got].last() {
                Some(d) if got == out.len() => next = d.domid.saturating_add(1),
                _ => break,
            }
        }
        n
    }

    fn free_pages() -> u64 {
        xc::physinfo().map_or(0, |p| p.free_pages)
    }

    /// Waits (serving the back ends) until the free memory is `want`;
    /// returns what it is.
    fn settle_free(ts: &mut Toolstack, want: u64) -> u64 {
        ts.serve_until(SETTLE_NS, |_| free_pages() == want);
        free_pages()
    }

    fn create(ts: &mut Toolstack, extra: &[String]) -> Result<u32, String> {
        let req = CreateRequest {
            config_file: Some(String::from(HELLO_CFG)),
            extra_config: extra.to_vec(),
            quiet: true,
            ..CreateRequest::default()
        };
        match ts.create(&req, &mut ConsoleOut) {
            Ok(Some(id)) => Ok(id),
            r => Err(format!("{r:?}")),
        }
    }

    /// The hypervisor's console lines that tell of a crash: a domain
    /// crashed, a panic, a fatal trap, a failed assertion.
    fn crash_lines(index: &mut u32) -> Vec<String> {
        let mut text = String::new();
        loop {
            let mut buf = alloc::vec![0u8; 16384];
            match xc::read_console(index, &mut buf) {
                Ok(n) if n > 0 => text.push_str(&String::from_utf8_lossy(&buf[..n])),
                _ => break,
            }
        }
        // The hypervisor's own lines only (Dom0's, relayed guests' among
        // them, are in the same ring).
        text.lines()
            .filter(|l| l.starts_with("(XEN)"))
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                l.contains("domain crash")
                    || l.contains("panic")
                    || l.contains("fatal")
                    || l.contains("assertion")
            })
            .map(String::from)
            .collect()
    }

    /// What one fuzz run showed.
    struct Run {
        finished: bool,
        total: Option<u64>,
        classes: usize,
        beats: (u64, u64),
        max_gap_ns: u64,
        checksum: Option<String>,
        state: String,
    }

    fn fuzz_run(
        ts: &mut Toolstack,
        canary: u32,
        seed: u64,
        calls: u64,
        i: u64,
        trace: bool,
    ) -> Option<Run> {
        let extra = [
            format!("name=\"fuzz{i}\""),
            format!("kernel=\"{FUZZ_KERNEL}\""),
            String::from("memory=32"),
            String::from("vcpus=2"),
            format!(
                "extra=\"seed={seed} calls={calls}{}\"",
                if trace { " trace" } else { "" }
            ),
            // A crash (or any shutdown: the fuzzer never shuts down on
            // its own) is kept for its console to be read.
            String::from("on_crash=\"preserve\""),
            String::from("on_poweroff=\"preserve\""),
            String::from("on_reboot=\"preserve\""),
        ];
        let id = match create(ts, &extra) {
            Ok(id) => id,
            Err(e) => {
                println!("dom0-fuzz: xl create fuzz{i}: {e}");
                return None;
            }
        };
        let first = heartbeat(ts, canary).map_or(0, |h| h.0);
        let mut last = (first, time::now_ns());
        let mut max_gap = 0u64;
        let budget = RUN_NS_PER_MILLION * calls.div_ceil(1_000_000).max(1);
        let finished = ts.serve_until(budget, |ts| {
            let now = time::now_ns();
            if let Some((n, _)) = heartbeat(ts, canary) {
                if n != last.0 {
                    last = (n, now);
                }
            }
            max_gap = max_gap.max(now - last.1);
            let text = backlog_text(ts, id);
            // Its last line, not the report's total: the console back end
            // may not have taken the line after the total yet.
            text.contains("domu-fuzz: done")
                || text.contains("domu-fuzz: ERROR")
                || xc::domain_info(id as u16).map_or(true, |d| d.is_shutdown() || d.is_dying())
        });
        let text = backlog_text(ts, id);
        let finished = finished && text.contains("domu-fuzz: done");
        // Its report and whatever else it said (a panic message), not its
        // traced calls but the last few.
        let calls: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("domu-fuzz: call "))
            .collect();
        for l in text.lines().filter(|l| !l.starts_with("domu-fuzz: call ")) {
            println!("{l}");
        }
        for l in &calls[calls.len().saturating_sub(5)..] {
            println!("{l}");
        }
        let state = match xc::domain_info(id as u16) {
            Ok(d) if d.is_shutdown() => format!(
                "shut down ({})",
                xc::shutdown_reason_name(d.shutdown_reason())
            ),
            Ok(_) => String::from("running"),
            Err(e) => format!("gone ({e})"),
        };
        let total = text
            .lines()
            .filter_map(|l| l.strip_prefix("fuzz: total "))
            .filter_map(|r| r.split_whitespace().next()?.parse().ok())
            .next_back();
        let classes = text
            .lines()
            .filter(|l| l.starts_with("fuzz: class "))
            .count();
        let destroyed = ts.destroy(id);
        if let Err(e) = destroyed {
            println!("dom0-fuzz: xl destroy d{id}: {e}");
        }
        Some(Run {
            finished,
            total,
            classes,
            beats: (first, heartbeat(ts, canary).map_or(0, |h| h.0)),
            max_gap_ns: max_gap,
            checksum: heartbeat(ts, canary).map(|h| h.1),
            state,
        })
    }

    fn main(si: &'static StartInfo) -> ! {
        let o = opts(si);
        println!(
            "dom0-fuzz: {} fuzz run(s) of {} calls from seed {}, beside a canary",
            o.runs, o.calls, o.seed
        );
        let mut c = Checks::new("dom0-fuzz");
        if c.ok("runtime::init", pv_guest_lib::runtime::init().map(|_| ()))
            .is_none()
            || c.ok("heap", pv_guest_lib::heap::init(HEAP_PAGES)).is_none()
        {
            c.finish()
        }
        let ramdisk = pv_guest_lib::ramdisk().map(Archive::new);
        let has = |p: &str| ramdisk.and_then(|a| a.find(p)).is_some();
        if !c.check(
            "the fuzzer and the canary are in the ramdisk",
            has(FUZZ_KERNEL) && has(CANARY_KERNEL),
            format_args!("{FUZZ_KERNEL}, {CANARY_KERNEL}"),
        ) {
            c.finish()
        }
        let mut ts = Toolstack::new(ramdisk);
        let mut index = 0u32;
        let _ = crash_lines(&mut index);
        let base_free = free_pages();
        let canary = match create(
            &mut ts,
            &[
                String::from("name=\"canary\""),
                format!("kernel=\"{CANARY_KERNEL}\""),
                String::from("memory=16"),
            ],
        ) {
            Ok(id) => id,
            Err(e) => {
                c.error(format_args!("xl create canary: {e}"));
                c.finish()
            }
        };
        let up = ts.serve_until(UP_NS, |ts| heartbeat(ts, canary).is_some_and(|h| h.0 >= 2));
        let sum0 = heartbeat(&ts, canary).map(|h| h.1);
        if !c.check(
            "the canary is up",
            up,
            format_args!("d{canary}, checksum {sum0:?}"),
        ) {
            c.finish()
        }
        for i in 0..o.runs {
            let seed = o.seed + i;
            let free_before = free_pages();
            let Some(r) = fuzz_run(&mut ts, canary, seed, o.calls, i, o.trace) else {
                c.error(format_args!("run {i}: the fuzzer was not created"));
                continue;
            };
            c.check(
                "the fuzzer ran to its end and reported",
                r.finished,
                format_args!("seed {seed}, {}", r.state),
            );
            c.check(
                "the fuzzer made all its calls",
                r.total.is_some_and(|t| t >= o.calls),
                format_args!("seed {seed}: {:?} of {}", r.total, o.calls),
            );
            c.check(
                "the fuzzer reported every class",
                r.classes >= 4,
                format_args!("{} classes", r.classes),
            );
            c.check(
                "the canary's heartbeat advanced while the fuzzer ran",
                r.beats.1 > r.beats.0 && r.max_gap_ns < MAX_GAP_NS,
                format_args!(
                    "heartbeats {} to {}, longest gap {} ms",
                    r.beats.0,
                    r.beats.1,
                    r.max_gap_ns / 1_000_000
                ),
            );
            c.check(
                "the canary's checksum is unchanged",
                r.checksum.is_some() && r.checksum == sum0,
                format_args!("{:?}, {:?} before", r.checksum, sum0),
            );
            let after = settle_free(&mut ts, free_before);
            c.check(
                "destroying the fuzzer returned every frame",
                after == free_before,
                format_args!("{free_before} free pages before it, {after} after"),
            );
        }
        // Dom0 is healthy: xenstore answers, a new guest comes up.
        let nodes = ts.xenstore_paths().len();
        let healthy = match create(&mut ts, &[String::from("name=\"after\"")]) {
            Ok(id) => {
                let up = ts.serve_until(UP_NS, |ts| {
                    ts.console_backlog(id as u16)
                        .is_some_and(|b| has_line(b.as_slices()))
                });
                let gone = ts.destroy(id).is_ok();
                up && gone
            }
            Err(e) => {
                println!("dom0-fuzz: xl create after: {e}");
                false
            }
        };
        c.check(
            "Dom0 is healthy (a new guest was created, came up and was destroyed)",
            healthy && nodes > 0,
            format_args!("{nodes} xenstore nodes"),
        );
        let b0 = heartbeat(&ts, canary).map_or(0, |h| h.0);
        ts.serve_until(2_000_000_000, |ts| {
            heartbeat(ts, canary).is_some_and(|h| h.0 > b0 + 2)
        });
        let b1 = heartbeat(&ts, canary);
        c.check(
            "the canary's heartbeat still advances after the fuzzer",
            b1.as_ref().is_some_and(|h| h.0 > b0) && b1.as_ref().map(|h| &h.1) == sum0.as_ref(),
            format_args!("heartbeat {b0} to {:?}", b1.as_ref().map(|h| h.0)),
        );
        if let Err(e) = ts.destroy(canary) {
            println!("dom0-fuzz: xl destroy canary: {e}");
        }
        let end_free = settle_free(&mut ts, base_free);
        c.check(
            "the hypervisor's free memory is back exactly",
            end_free == base_free,
            format_args!("{base_free} pages before, {end_free} after"),
        );
        let crashes = crash_lines(&mut index);
        c.check(
            "the hypervisor printed no crash",
            crashes.is_empty(),
            format_args!(
                "{} lines: {:?}",
                crashes.len(),
                crashes.iter().take(4).collect::<Vec<_>>()
            ),
        );
        let n = domains();
        c.check(
            "no domain is left but Dom0",
            n == 1,
            format_args!("{n} domains"),
        );
        c.finish()
    }
}
