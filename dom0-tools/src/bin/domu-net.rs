//! A guest (domU) on the network: netfront with Dom0's netback, smoltcp
//! on top, doing what its command line (xl.cfg `extra=`) says:
//!
//! - `ip=A.B.C.D/N` its address (required), `gw=A.B.C.D` a default route;
//! - `ping=IP count=N [interval=MS]` ICMP echo, one request in flight,
//!   every reply printed, round-trip times summed up;
//! - `http=PORT` serves a page it writes itself (its domid, name and a
//!   request counter) until destroyed;
//! - `tcp-sink=PORT` receives one TCP stream and prints its throughput;
//!   `tcp-send=IP:PORT,bytes=N` sends N bytes and prints the throughput
//!   and, beside it, a memcpy of the same size in the guest (the floor);
//!   with both `tcp-send` and `ping`, the pings follow the transfer;
//! - `vif=N` uses device N (default 0); `hotplug` waits for it to appear
//!   (`xl network-attach`), and the guest closes the device when the
//!   backend asks (`xl network-detach`);
//! - `linger=S` keeps answering for S seconds once its own tasks are done
//!   (default 3), `serve` forever;
//! - `echo=PORT` serves "echo with counter" (each request line gets back
//!   `n=<requests so far>`) and accepts suspend (`xl save`/`xl migrate`),
//!   reconnecting netfront after a restore; `echo-client=IP:PORT` sends a
//!   request every 100 ms, checks the counter goes up by one and prints
//!   `net-client: N answers, longest pause M ms, resets R` every second.
//!
//! Every line starts with `domu-net: `; checks and the VERDICT go through
//! [`dom0_tools::pvtest::Checks`], then the guest powers off (unless it
//! serves). Figures are printed as `domu-net: BENCH name k=v ...` for
//! `scripts/bench`.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;
    use alloc::format;
    use alloc::string::String;
    use alloc::vec;
    use alloc::vec::Vec;

    use dom0_tools::pvtest::Checks;
    use pv_guest_lib::domu::{Outcome, ShutdownWatcher};
    use pv_guest_lib::grant::GrantTable;
    use pv_guest_lib::netfront::metal::MetalHost;
    use pv_guest_lib::netfront::smol::smoltcp;
    use pv_guest_lib::netfront::{gratuitous_arp, NetError, Netfront};
    use pv_guest_lib::suspend::Resumed;
    use pv_guest_lib::xenbus::NO_TX;
    use pv_guest_lib::{domu, events, println, runtime, time, xen, StartInfo};
    use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::socket::{icmp, tcp};
    use smoltcp::time::Instant;
    use smoltcp::wire::{
        EthernetAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, Ipv4Address,
    };

    pv_guest_lib::entry!(main);

    /// Where the grant table is mapped.
    const GT_VA: u64 = 0xffff_c000_0020_0000;
    /// Longest wait for the device to appear or connect, or for a peer.
    const PATIENCE_NS: u64 = 30_000_000_000;
    /// The echo payload (56 bytes, as ping's).
    const PING_DATA: &[u8; 56] = b"oxen domu-net echo request payload, 56 bytes long.......";
    /// TCP buffers.
    const TCP_BUF: usize = 64 * 1024;
    /// HTTP server sockets (one connection each at a time).
    const HTTP_SOCKETS: usize = 4;

    fn now() -> Instant {
        Instant::from_micros((time::now_ns() / 1000) as i64)
    }

    /// What the command line asked for.
    #[derive(Default)]
    struct Plan {
        ip: Option<(Ipv4Address, u8)>,
        gw: Option<Ipv4Address>,
        ping: Option<Ipv4Address>,
        count: u32,
        interval_ms: u64,
        http: Option<u16>,
        sink: Option<u16>,
        send: Option<(Ipv4Address, u16, usize)>,
        vif: u32,
        hotplug: bool,
        linger_s: u64,
        serve: bool,
        echo: Option<u16>,
        echo_client: Option<(Ipv4Address, u16)>,
    }

    fn parse(cmdline: &str) -> Result<Plan, String> {
        let mut p = Plan {
            count: 5,
            interval_ms: 200,
            linger_s: 3,
            ..Plan::default()
        };
        let ip4 = |v: &str| {
            v.parse::<Ipv4Address>()
                .map_err(|_| format!("{v:?}: not an IPv4 address"))
        };
        let num = |k: &str, v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{k}={v:?}: not a number"))
        };
        for tok in cmdline.split_whitespace() {
            let (k, v) = tok.split_once('=').unwrap_or((tok, ""));
            match k {
                "ip" => {
                    let (a, n) = v.split_once('/').unwrap_or((v, "24"));
                    let n = num(k, n)?;
                    if n > 32 {
                        return Err(format!("ip={v}: bad prefix"));
                    }
                    p.ip = Some((ip4(a)?, n as u8));
                }
                "gw" => p.gw = Some(ip4(v)?),
                "ping" => p.ping = Some(ip4(v)?),
                "count" => p.count = num(k, v)? as u32,
                "interval" => p.interval_ms = num(k, v)?,
                "http" => p.http = Some(num(k, v)? as u16),
                "tcp-sink" => p.sink = Some(num(k, v)? as u16),
                "tcp-send" => {
                    let mut parts = v.split(',');
                    let ep = parts.next().unwrap_or("");
                    let (a, port) = ep
                        .split_once(':')
                        .ok_or_else(|| format!("tcp-send={v}: want IP:PORT,bytes=N"))?;
                    let mut bytes = 1 << 20;
                    for kv in parts {
                        match kv.split_once('=') {
                            Some(("bytes", n)) => bytes = num("bytes", n)? as usize,
                            _ => return Err(format!("tcp-send: unknown {kv:?}")),
                        }
                    }
                    p.send = Some((ip4(a)?, num(k, port)? as u16, bytes));
                }
                "vif" => p.vif = num(k, v)? as u32,
                "hotplug" => p.hotplug = true,
                "linger" => p.linger_s = num(k, v)?,
                "serve" => p.serve = true,
                "echo" => p.echo = Some(num(k, v)? as u16),
                "echo-client" => {
                    let (a, port) = v
                        .split_once(':')
                        .ok_or_else(|| format!("echo-client={v}: want IP:PORT"))?;
                    p.echo_client = Some((ip4(a)?, num(k, port)? as u16));
                }
                _ => return Err(format!("unknown setting {tok:?}")),
            }
        }
        if p.ip.is_none() {
            return Err("no ip=A.B.C.D/N".into());
        }
        Ok(p)
    }

    fn bench_rate(bytes: usize, ns: u64) -> String {
        let mbit = bytes as f64 * 8.0 * 1000.0 / ns.max(1) as f64;
        format!("{mbit:.1}")
    }

    /// Copies `bytes` between two buffers in 64 KiB pieces, as the
    /// network path's floor: the cheapest way to move that much data.
    fn memcpy_ns(bytes: usize) -> u64 {
        let a = vec![0x5au8; 64 * 1024];
        let mut b = vec![0u8; 64 * 1024];
        let t0 = time::now_ns();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(a.len());
            b[..n].copy_from_slice(&a[..n]);
            core::hint::black_box(&mut b);
            left -= n;
        }
        time::now_ns() - t0
    }

    struct Ping {
        to: IpAddress,
        handle: SocketHandle,
        ident: u16,
        seq: u16,
        in_flight: Option<(u16, u64)>,
        last_sent: u64,
        rtts_us: Vec<u64>,
        sent: u32,
        began: Option<u64>,
        done: bool,
    }

    struct Sender {
        handle: SocketHandle,
        to: (IpAddress, u16),
        bytes: usize,
        sent: usize,
        started: Option<u64>,
        retry_at: u64,
        port: u16,
        done: bool,
    }

    struct Sink {
        handle: SocketHandle,
        got: usize,
        started: Option<u64>,
        done: bool,
    }

    struct Web {
        handles: Vec<SocketHandle>,
        port: u16,
        served: u32,
        domid: u16,
        name: String,
    }

    fn tcp_socket() -> tcp::Socket<'static> {
        tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; TCP_BUF]),
            tcp::SocketBuffer::new(vec![0; TCP_BUF]),
        )
    }

    fn main(si: &'static StartInfo) -> ! {
        let mut c = Checks::new("domu-net");
        if runtime::init().is_err() {
            c.error(format_args!("runtime init"));
            c.finish();
        }
        let plan = match parse(si.cmd_line()) {
            Ok(p) => p,
            Err(e) => {
                c.error(format_args!("command line {:?}: {e}", si.cmd_line()));
                c.finish();
            }
        };
        let mut xs = match domu::connect(si) {
            Ok(xs) => xs,
            Err(e) => {
                c.error(format_args!("connect to xenstore: {e:?}"));
                c.finish();
            }
        };
        let me = domu::identity(&mut xs);
        let domid = me.domid.unwrap_or(0);
        let mut gt = match GrantTable::setup(4, GT_VA) {
            Ok(gt) => {
                c.check("set up the grant table", true, format_args!("4 frames"));
                gt
            }
            Err(e) => {
                c.check("set up the grant table", false, format_args!("{e:?}"));
                c.finish();
            }
        };
        let dev = format!("device/vif/{}", plan.vif);
        if plan.hotplug {
            c.note(format_args!("waiting for {dev} (xl network-attach)"));
            let end = time::now_ns() + 4 * PATIENCE_NS;
            while xs.read(NO_TX, &format!("{dev}/backend")).is_err() {
                if time::now_ns() > end {
                    c.error(format_args!("{dev} never appeared"));
                    c.finish();
                }
                time::sleep_ns(50_000_000);
            }
            c.note(format_args!("{dev} appeared"));
        }
        let mut nf = match Netfront::init(&mut xs, MetalHost { gt: &mut gt }, plan.vif) {
            Ok(n) => {
                c.check("netfront finds its vif", true, format_args!("{dev}"));
                n
            }
            Err(e) => {
                c.check("netfront finds its vif", false, format_args!("{e:?}"));
                c.finish();
            }
        };
        let be_state = format!("{}/state", nf.backend_path());
        let _ = xs.watch(&be_state, "be");
        let end = time::now_ns() + PATIENCE_NS;
        let connected = loop {
            match nf.connect_step(&mut xs) {
                Ok(true) => break Ok(()),
                Ok(false) if time::now_ns() > end => break Err(String::from("timed out")),
                Ok(false) => {
                    let _ = xs.next_event();
                    time::sleep_ns(5_000_000);
                }
                Err(e) => break Err(format!("{e:?}")),
            }
        };
        let m = nf.mac();
        let mac = format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        );
        let detail = match &connected {
            Ok(()) => format!("vif {}, MAC {mac}", plan.vif),
            Err(e) => format!("vif {}: {e}", plan.vif),
        };
        if !c.check(
            "netfront connects to netback",
            connected.is_ok(),
            format_args!("{detail}"),
        ) {
            c.finish();
        }
        let _ = events::unmask(nf.port());

        let mut cfg = Config::new(EthernetAddress(m).into());
        cfg.random_seed = time::now_ns() ^ u64::from(domid) << 48;
        let mut iface = Interface::new(cfg, &mut nf, now());
        let (ip, prefix) = plan.ip.unwrap_or((Ipv4Address::new(0, 0, 0, 0), 0));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(ip), prefix));
        });
        if let Some(gw) = plan.gw {
            let _ = iface.routes_mut().add_default_ipv4_route(gw);
        }
        c.note(format_args!(
            "domain {domid} ({}) is {ip}/{prefix}{}",
            me.name.as_deref().unwrap_or("?"),
            plan.gw.map(|g| format!(" via {g}")).unwrap_or_default()
        ));
        let mut sockets = SocketSet::new(Vec::new());

        let mut ping = plan.ping.map(|to| {
            let h = sockets.add(icmp::Socket::new(
                icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]),
                icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]),
            ));
            let ident = 0x4f00 | (domid & 0xff);
            let _ = sockets
                .get_mut::<icmp::Socket>(h)
                .bind(icmp::Endpoint::Ident(ident));
            Ping {
                to: IpAddress::Ipv4(to),
                handle: h,
                ident,
                seq: 0,
                in_flight: None,
                last_sent: 0,
                rtts_us: Vec::new(),
                sent: 0,
                began: None,
                done: false,
            }
        });
        let mut sender = plan.send.map(|(ip, port, bytes)| Sender {
            handle: sockets.add(tcp_socket()),
            to: (IpAddress::Ipv4(ip), port),
            bytes,
            sent: 0,
            started: None,
            retry_at: 0,
            port: 49152,
            done: false,
        });
        let mut sink = plan.sink.map(|port| {
            let h = sockets.add(tcp_socket());
            let _ = sockets.get_mut::<tcp::Socket>(h).listen(port);
            Sink {
                handle: h,
                got: 0,
                started: None,
                done: false,
            }
        });
        let mut web = plan.http.map(|port| {
            let handles = (0..HTTP_SOCKETS)
                .map(|_| sockets.add(tcp_socket()))
                .collect();
            c.note(format_args!("serving http on port {port}"));
            Web {
                handles,
                port,
                served: 0,
                domid,
                name: me.name.clone().unwrap_or_default(),
            }
        });

        let mut echo = plan.echo.map(|port| {
            c.note(format_args!("serving echo with counter on port {port}"));
            Echo {
                handle: sockets.add(tcp_socket()),
                port,
                count: 0,
                line: Vec::new(),
            }
        });
        let mut client = plan.echo_client.map(|(ip, port)| EchoClient {
            handle: sockets.add(tcp_socket()),
            to: (IpAddress::Ipv4(ip), port),
            started: false,
            up: false,
            last_sent: 0,
            waiting: false,
            answers: 0,
            last_n: None,
            last_at: 0,
            longest_ns: 0,
            resets: 0,
            misses: 0,
            report_at: 0,
            line: Vec::new(),
            retry_at: 0,
        });
        let mut sw = if echo.is_some() {
            match ShutdownWatcher::start(&mut xs) {
                Ok(mut sw) => {
                    sw.accept_suspend(&mut xs);
                    Some(sw)
                }
                Err(e) => {
                    c.error(format_args!("watch control/shutdown: {e}"));
                    c.finish();
                }
            }
        } else {
            None
        };

        let started = time::now_ns();
        let mut finished_at: Option<u64> = None;
        let mut detached = false;
        loop {
            let gen = events::generation();
            let t = time::now_ns();
            iface.poll(now(), &mut nf, &mut sockets);
            // Pings wait for a TCP send to finish (the figures apart).
            if let Some(p) = ping
                .as_mut()
                .filter(|_| sender.as_ref().is_none_or(|s| s.done))
            {
                step_ping(&mut c, p, &mut sockets, &plan, t);
            }
            if let Some(s) = sender.as_mut() {
                step_send(&mut c, s, &mut sockets, &mut iface, t, started);
            }
            if let Some(s) = sink.as_mut() {
                step_sink(&mut c, s, &mut sockets, t, started);
            }
            if let Some(w) = web.as_mut() {
                step_web(&mut c, w, &mut sockets);
            }
            if let Some(e) = echo.as_mut() {
                step_echo(e, &mut sockets);
            }
            if let Some(cl) = client.as_mut() {
                step_client(cl, &mut sockets, &mut iface, t);
            }
            iface.poll(now(), &mut nf, &mut sockets);
            if let Some(w) = sw.as_mut() {
                match w.poll(&mut xs) {
                    Ok(Some(Outcome::Shutdown(s)))
                        if s.reason == hypercall_abi::sched::ShutdownReason::Suspend =>
                    {
                        let count = echo.as_ref().map_or(0, |e| e.count);
                        println!("domu-net: suspending at request {count}");
                        if let Err(e) = nf.host().gt.suspend() {
                            println!("domu-net: unmapping the grant table: {e:?}");
                        }
                        let r = pv_guest_lib::suspend::suspend(&mut xs);
                        if let Err(e) = nf.host().gt.resume() {
                            println!("domu-net: the grant table after the suspend: {e:?}");
                        }
                        match r {
                            Ok(Resumed::Restored { .. }) => {
                                println!("domu-net: resumed in a new domain at request {count}");
                                if let Ok(mut n) = ShutdownWatcher::start(&mut xs) {
                                    n.accept_suspend(&mut xs);
                                    *w = n;
                                }
                                reconnect(&mut nf, &mut xs, ip);
                            }
                            Ok(Resumed::Cancelled) => {
                                println!("domu-net: suspend cancelled at request {count}")
                            }
                            Err(e) => println!("domu-net: suspend failed: {e}"),
                        }
                    }
                    Ok(Some(Outcome::Shutdown(s))) => {
                        let _ = c.verdict();
                        xen::shutdown(s.reason)
                    }
                    _ => {}
                }
            }
            // The backend going away (xl network-detach) ends the device.
            while let Ok(Some(_)) = xs.next_event() {
                if let Err(NetError::BackendClosed) = nf.connect_step(&mut xs) {
                    let busy = nf.close(&mut xs).unwrap_or(usize::MAX);
                    c.check(
                        "the backend closed the vif (xl network-detach) and netfront let go",
                        busy == 0,
                        format_args!("{busy} grants still in use"),
                    );
                    detached = true;
                }
            }
            if detached {
                break;
            }
            let own_done = ping.as_ref().is_none_or(|p| p.done)
                && sender.as_ref().is_none_or(|s| s.done)
                && sink.as_ref().is_none_or(|s| s.done);
            if own_done && finished_at.is_none() {
                finished_at = Some(t);
            }
            let forever =
                plan.serve || plan.hotplug || web.is_some() || echo.is_some() || client.is_some();
            if let Some(f) = finished_at {
                if !forever && t > f + plan.linger_s * 1_000_000_000 {
                    break;
                }
            }
            let delay_ns = iface
                .poll_delay(now(), &sockets)
                .map_or(10_000_000, |d| d.total_micros() * 1000)
                .min(10_000_000);
            let wake = time::now_ns().saturating_add(delay_ns);
            time::block_until(wake, || events::generation() != gen);
        }
        let st = nf.stats();
        c.note(format_args!("netfront counters: {st:?}"));
        if detached {
            // The device is gone; stay up for xl to look at us.
            c.note(format_args!("vif {} detached; idle", plan.vif));
            loop {
                time::sleep_ns(1_000_000_000);
            }
        }
        c.finish()
    }

    struct Echo {
        handle: SocketHandle,
        port: u16,
        count: u64,
        line: Vec<u8>,
    }

    /// Answers each request line with `n=<requests so far>`.
    fn step_echo(e: &mut Echo, sockets: &mut SocketSet<'_>) {
        let s = sockets.get_mut::<tcp::Socket>(e.handle);
        if !s.is_open() {
            e.line.clear();
            let _ = s.listen(e.port);
            return;
        }
        if !s.may_recv() && s.may_send() {
            s.close();
        }
        let mut buf = [0u8; 256];
        while s.can_recv() {
            let Ok(n) = s.recv_slice(&mut buf) else { break };
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                if b != b'\n' {
                    if e.line.len() < 256 {
                        e.line.push(b);
                    }
                    continue;
                }
                e.line.clear();
                e.count += 1;
                let out = format!("n={}\n", e.count);
                let _ = s.send_slice(out.as_bytes());
                if e.count.is_multiple_of(10) {
                    println!("domu-net: server request {}", e.count);
                }
            }
        }
    }

    struct EchoClient {
        handle: SocketHandle,
        to: (IpAddress, u16),
        started: bool,
        up: bool,
        last_sent: u64,
        waiting: bool,
        answers: u64,
        last_n: Option<u64>,
        last_at: u64,
        longest_ns: u64,
        resets: u64,
        misses: u64,
        report_at: u64,
        line: Vec<u8>,
        retry_at: u64,
    }

    fn client_report(cl: &EchoClient) {
        println!(
            "net-client: {} answers, longest pause {} ms, resets {}, counter skips {}",
            cl.answers,
            cl.longest_ns / 1_000_000,
            cl.resets,
            cl.misses
        );
    }

    /// Sends a request every 100 ms, checks every answer's counter goes
    /// up by one, measures the longest gap between answers.
    fn step_client(
        cl: &mut EchoClient,
        sockets: &mut SocketSet<'_>,
        iface: &mut Interface,
        t: u64,
    ) {
        let s = sockets.get_mut::<tcp::Socket>(cl.handle);
        if !cl.started {
            if t < cl.retry_at {
                return;
            }
            let port = 49152 + (t / 1000 % 16000) as u16;
            if s.connect(iface.context(), cl.to, port).is_ok() {
                cl.started = true;
            }
            return;
        }
        if s.state() == tcp::State::Established && !cl.up {
            cl.up = true;
            cl.last_at = t;
            cl.report_at = t + 1_000_000_000;
            println!("net-client: connected to {}:{}", cl.to.0, cl.to.1);
        }
        if !s.is_open() || (cl.up && !s.may_recv()) {
            if cl.up {
                cl.resets += 1;
                println!(
                    "net-client: connection reset/closed ({:?}) after {} answers",
                    s.state(),
                    cl.answers
                );
                client_report(cl);
            }
            s.abort();
            cl.started = false;
            cl.up = false;
            cl.waiting = false;
            cl.retry_at = t + 1_000_000_000;
            return;
        }
        if !cl.up {
            return;
        }
        let mut buf = [0u8; 256];
        while s.can_recv() {
            let Ok(n) = s.recv_slice(&mut buf) else { break };
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                if b != b'\n' {
                    if cl.line.len() < 64 {
                        cl.line.push(b);
                    }
                    continue;
                }
                let v = core::str::from_utf8(&cl.line)
                    .ok()
                    .and_then(|l| l.strip_prefix("n="))
                    .and_then(|l| l.parse::<u64>().ok());
                cl.line.clear();
                cl.waiting = false;
                cl.answers += 1;
                let gap = t.saturating_sub(cl.last_at);
                cl.longest_ns = cl.longest_ns.max(gap);
                cl.last_at = t;
                match (cl.last_n, v) {
                    (Some(p), Some(n)) if n != p + 1 => {
                        cl.misses += 1;
                        println!("net-client: counter went from {p} to {n}");
                    }
                    (_, None) => {
                        cl.misses += 1;
                        println!("net-client: a bad answer");
                    }
                    _ => {}
                }
                if v.is_some() {
                    cl.last_n = v;
                }
            }
        }
        if !cl.waiting
            && t >= cl.last_sent + 100_000_000
            && s.can_send()
            && s.send_slice(b"req\n").is_ok()
        {
            cl.waiting = true;
            cl.last_sent = t;
        }
        if t >= cl.report_at {
            cl.report_at = t + 1_000_000_000;
            // A pause still going on counts too.
            cl.longest_ns = cl.longest_ns.max(t.saturating_sub(cl.last_at));
            client_report(cl);
        }
    }

    /// After a restore: netfront to the new host's netback, then a
    /// gratuitous ARP so its bridge learns where we are.
    fn reconnect(
        nf: &mut Netfront<MetalHost<'_>>,
        xs: &mut pv_guest_lib::xenbus::Xenbus<pv_guest_lib::xenbus::metal::StoreTransport>,
        ip: Ipv4Address,
    ) {
        let t0 = time::now_ns();
        if let Err(e) = nf.reconnect_after_restore(xs) {
            println!("domu-net: netfront reconnect failed: {e:?}");
            return;
        }
        let _ = xs.watch(&format!("{}/state", nf.backend_path()), "be");
        let end = t0 + PATIENCE_NS;
        loop {
            match nf.connect_step(xs) {
                Ok(true) => break,
                Ok(false) if time::now_ns() > end => {
                    println!("domu-net: netfront reconnect timed out");
                    return;
                }
                Ok(false) => {
                    let _ = xs.next_event();
                    time::sleep_ns(5_000_000);
                }
                Err(e) => {
                    println!("domu-net: netfront reconnect: {e:?}");
                    return;
                }
            }
        }
        let _ = events::unmask(nf.port());
        let arp = gratuitous_arp(nf.mac(), ip.octets());
        let _ = nf.send(&arp);
        println!(
            "domu-net: netfront reconnected to {} in {} ms, gratuitous ARP sent",
            nf.backend_path(),
            (time::now_ns() - t0) / 1_000_000
        );
    }

    fn step_ping(c: &mut Checks, p: &mut Ping, sockets: &mut SocketSet<'_>, plan: &Plan, t: u64) {
        if p.done {
            return;
        }
        let began = *p.began.get_or_insert(t);
        let caps = ChecksumCapabilities::default();
        let s = sockets.get_mut::<icmp::Socket>(p.handle);
        while s.can_recv() {
            let Ok((data, _src)) = s.recv() else { break };
            let Ok(pkt) = Icmpv4Packet::new_checked(data) else {
                continue;
            };
            if let Ok(Icmpv4Repr::EchoReply { ident, seq_no, .. }) = Icmpv4Repr::parse(&pkt, &caps)
            {
                if let Some((seq, at)) = p.in_flight {
                    if ident == p.ident && seq_no == seq {
                        let us = (time::now_ns() - at) / 1000;
                        p.rtts_us.push(us);
                        p.in_flight = None;
                        println!(
                            "domu-net: 64 bytes from {}: icmp_seq={seq} time={}.{:03} ms",
                            p.to,
                            us / 1000,
                            us % 1000
                        );
                    }
                }
            }
        }
        let got = p.rtts_us.len() as u32;
        let timed_out = t > began + PATIENCE_NS;
        if got >= plan.count || timed_out {
            p.done = true;
            let mut v = p.rtts_us.clone();
            v.sort_unstable();
            let (min, med, max) = match (v.first(), v.get(v.len() / 2), v.last()) {
                (Some(a), Some(b), Some(c)) => (*a, *b, *c),
                _ => (0, 0, 0),
            };
            c.check(
                &format!("echo replies from {}", p.to),
                got >= plan.count,
                format_args!(
                    "{got} of {} received, {} sent; rtt min/median/max = {min}/{med}/{max} us",
                    plan.count, p.sent
                ),
            );
            println!(
                "domu-net: BENCH ping_rtt count={got} min_us={min} median_us={med} max_us={max}"
            );
            return;
        }
        // One request in flight; a lost one is given up after a second.
        let lost = p.in_flight.is_some_and(|(_, at)| t > at + 1_000_000_000);
        let due = t >= p.last_sent + plan.interval_ms * 1_000_000;
        if (p.in_flight.is_none() || lost) && due && s.can_send() {
            p.seq = p.seq.wrapping_add(1);
            let req = Icmpv4Repr::EchoRequest {
                ident: p.ident,
                seq_no: p.seq,
                data: PING_DATA,
            };
            if let Ok(buf) = s.send(req.buffer_len(), p.to) {
                req.emit(&mut Icmpv4Packet::new_unchecked(buf), &caps);
                p.in_flight = Some((p.seq, t));
                p.last_sent = t;
                p.sent += 1;
            }
        }
    }

    fn step_send(
        c: &mut Checks,
        s: &mut Sender,
        sockets: &mut SocketSet<'_>,
        iface: &mut Interface,
        t: u64,
        started: u64,
    ) {
        if s.done {
            return;
        }
        let sock = sockets.get_mut::<tcp::Socket>(s.handle);
        if s.started.is_none() && !sock.is_open() && t >= s.retry_at {
            // (Re)connect: the sink may not listen yet.
            s.port = s.port.wrapping_add(1).max(49152);
            let _ = sock.connect(iface.context(), s.to, s.port);
            s.retry_at = t + 200_000_000;
        }
        if sock.state() == tcp::State::Established && s.started.is_none() {
            s.started = Some(t);
        }
        if let Some(t0) = s.started {
            while s.sent < s.bytes && sock.can_send() {
                let n = sock
                    .send(|buf| {
                        let n = buf.len().min(s.bytes - s.sent);
                        for (i, b) in buf[..n].iter_mut().enumerate() {
                            *b = (s.sent + i) as u8;
                        }
                        (n, n)
                    })
                    .unwrap_or(0);
                if n == 0 {
                    break;
                }
                s.sent += n;
            }
            if s.sent == s.bytes && sock.state() == tcp::State::Established {
                sock.close();
            }
            let acked = matches!(
                sock.state(),
                tcp::State::FinWait2 | tcp::State::TimeWait | tcp::State::Closed
            );
            if s.sent == s.bytes && acked {
                s.done = true;
                let ns = t - t0;
                c.check(
                    &format!("tcp-send: {} bytes to {}:{}", s.bytes, s.to.0, s.to.1),
                    true,
                    format_args!("{} ms, {} Mbit/s", ns / 1_000_000, bench_rate(s.bytes, ns)),
                );
                println!(
                    "domu-net: BENCH tcp_send bytes={} ns={ns} mbit_s={}",
                    s.bytes,
                    bench_rate(s.bytes, ns)
                );
                let m = memcpy_ns(s.bytes);
                println!(
                    "domu-net: BENCH memcpy bytes={} ns={m} mbit_s={}",
                    s.bytes,
                    bench_rate(s.bytes, m)
                );
                return;
            }
        }
        if t > started + 4 * PATIENCE_NS {
            s.done = true;
            c.check(
                "tcp-send",
                false,
                format_args!("timed out after {} of {} bytes", s.sent, s.bytes),
            );
        }
    }

    fn step_sink(c: &mut Checks, s: &mut Sink, sockets: &mut SocketSet<'_>, t: u64, started: u64) {
        if s.done {
            return;
        }
        let sock = sockets.get_mut::<tcp::Socket>(s.handle);
        while sock.can_recv() {
            if s.started.is_none() {
                s.started = Some(t);
            }
            let n = sock.recv(|d| (d.len(), d.len())).unwrap_or(0);
            if n == 0 {
                break;
            }
            s.got += n;
        }
        if s.started.is_some() && !sock.may_recv() && sock.state() != tcp::State::Listen {
            sock.close();
            s.done = true;
            let ns = t - s.started.unwrap_or(t);
            c.check(
                "tcp-sink: a stream arrived whole",
                s.got > 0,
                format_args!(
                    "{} bytes in {} ms, {} Mbit/s",
                    s.got,
                    ns / 1_000_000,
                    bench_rate(s.got, ns)
                ),
            );
            println!(
                "domu-net: BENCH tcp_sink bytes={} ns={ns} mbit_s={}",
                s.got,
                bench_rate(s.got, ns)
            );
        } else if t > started + 4 * PATIENCE_NS {
            s.done = true;
            c.check(
                "tcp-sink",
                false,
                format_args!("timed out with {} bytes", s.got),
            );
        }
    }

    fn step_web(c: &mut Checks, w: &mut Web, sockets: &mut SocketSet<'_>) {
        for &h in &w.handles {
            let sock = sockets.get_mut::<tcp::Socket>(h);
            if !sock.is_open() {
                let _ = sock.listen(w.port);
                continue;
            }
            if !sock.can_recv() {
                continue;
            }
            let mut req = Vec::new();
            let _ = sock.recv(|d| {
                req.extend_from_slice(d);
                (d.len(), ())
            });
            if req.is_empty() {
                continue;
            }
            w.served += 1;
            let body = format!(
                "Hello from Oxen guest {} (domain {}), served by smoltcp over netfront: request #{}\n",
                w.name, w.domid, w.served
            );
            let resp = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.send_slice(resp.as_bytes());
            sock.close();
            let from = sock
                .remote_endpoint()
                .map(|e| format!("{e}"))
                .unwrap_or_default();
            c.note(format_args!("http: request #{} from {from}", w.served));
        }
    }
}
