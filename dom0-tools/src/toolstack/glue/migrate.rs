//! `xl migrate` and `xl migrate-receive` on the metal: an HVM or PV guest
//! moved live to another Oxen host's Dom0 over TCP (Dom0's own stack,
//! [`super::super::ip`]). A PV guest's last round begins with its
//! suspend (`control/shutdown`), as libxc's does; where the hypervisor
//! refuses log-dirty mode it is suspended for the whole transfer.
//!
//! Xen's `xl migrate` runs `xl migrate-receive` on the target through ssh
//! and talks to it over the ssh pipe; Oxen has no ssh, so the target's
//! administrator runs `xl migrate-receive` (it listens on
//! [`MIGRATE_PORT`], xend's old relocation port) and the source connects
//! to it. The conversation is xl's, byte for byte:
//!
//! 1. target: the banner ("xl migration receiver ready, ...");
//! 2. source: the image, live ([`image::save_hvm_live`]): every frame
//!    while the guest runs, rounds of dirtied frames, then the guest is
//!    paused and the rest follows;
//! 3. target: "domain received, ready to unpause" once the domain is
//!    built (paused);
//! 4. source: "domain is yours, you are cleared to unpause";
//! 5. target: unpauses it and answers "my copy unpause results are as
//!    follows" and one byte, 0 for success.
//!
//! Only after 5 does the source destroy its copy. If anything fails
//! before (the target dies, refuses the image, the connection drops),
//! the source turns log-dirty mode off and unpauses its guest, which runs
//! on; the target destroys whatever it had built.

use super::pvsave::{pv_restore_body, SavePv, SHUTDOWN_SUSPEND};
use super::saverestore::{restore_body, SaveHvm, XEN_VERSION};
use super::*;
use crate::migration::image::{self, HvmSaveSide, LiveHvm, Precopy, Sink, SrError};
use crate::migration::pv;
use crate::toolstack::ip::TcpConn;
use hypercall_abi::domctl::ShadowOp;
use hypercall_abi::hvm::HvmParam;

/// The port `xl migrate-receive` listens on (xend's relocation port).
pub const MIGRATE_PORT: u16 = 8002;
/// xl's `migrate_receiver_banner`.
const BANNER: &[u8] = b"xl migration receiver ready, send binary domain data.\n";
/// xl's `migrate_receiver_ready`.
const READY: &[u8] = b"domain received, ready to unpause";
/// xl's `migrate_permission_to_go`.
const GO: &[u8] = b"domain is yours, you are cleared to unpause";
/// xl's `migrate_report`, followed by one status byte.
const REPORT: &[u8] = b"my copy unpause results are as follows";
/// How long either side waits for the other to say or send anything.
const TALK_NS: u64 = 30_000_000_000;
/// How long the source keeps trying to reach a target that is not yet
/// listening.
const CONNECT_NS: u64 = 30_000_000_000;
/// How long `xl migrate-receive` waits for a source.
const ACCEPT_NS: u64 = 600_000_000_000;
/// Bytes of the image buffered per send.
const SEND_CHUNK: usize = 256 << 10;

/// An image going down a connection, [`SEND_CHUNK`] bytes at a time.
struct TcpSink<'t> {
    ts: &'t mut Toolstack,
    conn: &'t TcpConn,
    buf: Vec<u8>,
}

impl TcpSink<'_> {
    fn flush(&mut self) -> Result<(), SrError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self.ts.tcp_send_all(self.conn, &self.buf, TALK_NS);
        self.buf.clear();
        r.map_err(|e| SrError::Io(format!("sending to the target: {e}")))
    }
}

impl Sink for TcpSink<'_> {
    fn put(&mut self, mut b: &[u8]) -> Result<(), SrError> {
        while !b.is_empty() {
            let n = (SEND_CHUNK - self.buf.len()).min(b.len());
            self.buf.extend_from_slice(&b[..n]);
            b = &b[n..];
            if self.buf.len() == SEND_CHUNK {
                self.flush()?;
            }
        }
        Ok(())
    }
}

/// The source side of a live migration: the guest being sent and the
/// connection it goes down.
struct Outgoing<'t> {
    sink: TcpSink<'t>,
    frames: SaveHvm,
    /// When the guest was paused for the last round.
    paused_at: Option<u64>,
    emulator: Vec<u8>,
}

impl Outgoing<'_> {
    fn flush(&mut self) -> Result<(), SrError> {
        self.sink.flush()
    }
}

impl Sink for Outgoing<'_> {
    fn put(&mut self, b: &[u8]) -> Result<(), SrError> {
        self.sink.put(b)
    }
}

impl HvmSaveSide for Outgoing<'_> {
    fn max_gpfn(&mut self) -> Result<u64, SrError> {
        self.frames.max_gpfn()
    }
    fn page_types(&mut self, gfns: &mut [u64]) -> Result<(), SrError> {
        self.frames.page_types(gfns)
    }
    fn read_pages(&mut self, gfns: &[u64], out: &mut [u8]) -> Result<(), SrError> {
        self.frames.read_pages(gfns, out)
    }
    fn skip(&self, gfn: u64) -> bool {
        self.frames.skip(gfn)
    }
    fn hvm_context(&mut self) -> Result<Vec<u8>, SrError> {
        self.frames.hvm_context()
    }
    fn hvm_params(&mut self) -> Result<Vec<(u64, u64)>, SrError> {
        self.frames.hvm_params()
    }
    fn emulator_state(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.emulator)
    }
    fn cpu_policy(&mut self) -> Result<Vec<(u32, u32, [u32; 4])>, SrError> {
        self.frames.cpu_policy()
    }
}

impl LiveHvm for Outgoing<'_> {
    fn log_dirty_on(&mut self) -> Result<(), SrError> {
        xc::shadow_op(self.frames.domid, ShadowOp::EnableLogdirty, &mut [])
            .map(|_| ())
            .map_err(|e| SrError::Domain(format!("XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY: {e}")))
    }

    fn clean(&mut self, bitmap: &mut [u8]) -> Result<(), SrError> {
        xc::shadow_op(self.frames.domid, ShadowOp::Clean, bitmap)
            .map(|_| ())
            .map_err(|e| SrError::Domain(format!("XEN_DOMCTL_SHADOW_OP_CLEAN: {e}")))
    }

    fn suspend(&mut self) -> Result<(), SrError> {
        // What is buffered goes first: the pause should last no longer
        // than the last round needs.
        self.flush()?;
        let id = self.frames.domid;
        xc::pause(id).map_err(|e| SrError::Domain(format!("pausing the guest: {e}")))?;
        self.paused_at = Some(time::now_ns());
        self.emulator = self
            .sink
            .ts
            .guests
            .get(&id)
            .and_then(|g| g.hvm.as_ref())
            .map(|io| io.save_state())
            .unwrap_or_default();
        Ok(())
    }
}

/// The source side of a live PV migration: the guest, in log-dirty mode,
/// and the connection it goes down.
struct OutgoingPv<'t> {
    sink: TcpSink<'t>,
    frames: SavePv,
    name: String,
    /// When the guest stopped for the last round.
    suspended_at: Option<u64>,
}

impl Sink for OutgoingPv<'_> {
    fn put(&mut self, b: &[u8]) -> Result<(), SrError> {
        self.sink.put(b)
    }
}

impl pv::PvSaveSide for OutgoingPv<'_> {
    fn shared_info(&mut self) -> Result<Vec<u8>, SrError> {
        self.frames.shared_info()
    }
    fn max_pages(&mut self) -> Result<u64, SrError> {
        self.frames.max_pages()
    }
    fn read_frames(&mut self, mfns: &[u64], out: &mut [u8]) -> Result<(), SrError> {
        self.frames.read_frames(mfns, out)
    }
    fn frame_types(&mut self, mfns: &mut [u64]) -> Result<(), SrError> {
        self.frames.frame_types(mfns)
    }
    fn nr_vcpus(&mut self) -> Result<u32, SrError> {
        self.frames.nr_vcpus()
    }
    fn vcpu_context(
        &mut self,
        id: u32,
    ) -> Result<Option<hypercall_abi::arch_x86::VcpuGuestContext>, SrError> {
        self.frames.vcpu_context(id)
    }
}

impl pv::LivePv for OutgoingPv<'_> {
    fn log_dirty_on(&mut self) -> Result<(), SrError> {
        // `send_pv_domain` turned it on already (to choose live or not).
        Ok(())
    }

    fn clean(&mut self, bitmap: &mut [u8]) -> Result<(), SrError> {
        xc::shadow_op(self.frames.domid, ShadowOp::Clean, bitmap)
            .map(|_| ())
            .map_err(|e| SrError::Domain(format!("XEN_DOMCTL_SHADOW_OP_CLEAN: {e}")))
    }

    fn suspend(&mut self) -> Result<(), SrError> {
        self.sink.flush()?;
        let t = time::now_ns();
        self.sink
            .ts
            .suspend_pv(self.frames.domid, &self.name)
            .map_err(|e| SrError::Domain(format!("{e}")))?;
        // The guest stopped serving when it began to suspend.
        self.suspended_at = Some(t);
        Ok(())
    }
}

/// xl's progress for a live save: one line per round once it is sent
/// (round 0 is the last, with the guest `stopped`).
fn report_round(
    out: &mut dyn fmt::Write,
    last: &mut u32,
    stopped: &str,
    round: u32,
    sent: u64,
    n: u64,
) {
    if sent == n && round != *last {
        *last = round;
        if round == 0 {
            let _ = writeln!(out, "xc: info: {stopped}: {n} frames in the last round");
        } else {
            let _ = writeln!(out, "xc: info: Round {round}: {n} frames");
        }
    }
}

/// The sender's last words after a live migration begun at `t0`, the
/// guest `stopped` (paused, suspended) at `stopped_at`.
fn report_live(
    out: &mut dyn fmt::Write,
    stats: &image::LiveStats,
    stopped: &str,
    t0: u64,
    stopped_at: Option<u64>,
) {
    let now = time::now_ns();
    let down = stopped_at.map_or(0, |p| now.saturating_sub(p));
    let _ = writeln!(
        out,
        "migration sender: Target reports successful startup.\n\
         xc: info: {} rounds live ({:?} frames), {} frames {stopped}, {} KiB sent in {} ms; downtime {} ms",
        stats.rounds.len(),
        stats.rounds,
        stats.last,
        stats.bytes / 1024,
        now.saturating_sub(t0) / 1_000_000,
        down / 1_000_000
    );
    let _ = writeln!(out, "Migration successful.");
}

/// Bytes the target drains from the connection ahead of the restore.
const RECV_AHEAD: usize = 4 << 20;

/// The target side: the image read from the connection. Each read also
/// drains whatever else has arrived (up to [`RECV_AHEAD`]) into `ahead`,
/// so the connection's window stays open while the restore works on a
/// record (Dom0's stack sends no zero-window probes: a window that closed
/// while Dom0 was busy would otherwise reopen only when the source's
/// retransmission timer fires).
struct Incoming<'t> {
    ts: &'t mut Toolstack,
    conn: &'t TcpConn,
    ahead: &'t mut alloc::collections::VecDeque<u8>,
}

impl Incoming<'_> {
    fn drain(&mut self) -> Result<(), SrError> {
        let mut chunk = [0u8; 16 << 10];
        while self.ahead.len() + chunk.len() <= RECV_AHEAD {
            let n = self
                .ts
                .tcp_recv_some(self.conn, &mut chunk)
                .map_err(|e| SrError::Io(format!("receiving from the source: {e}")))?;
            if n == 0 {
                break;
            }
            self.ahead.extend(&chunk[..n]);
        }
        Ok(())
    }
}

impl image::Source for Incoming<'_> {
    fn take(&mut self, b: &mut [u8]) -> Result<(), SrError> {
        let from_ahead = self.ahead.len().min(b.len());
        for (d, s) in b[..from_ahead]
            .iter_mut()
            .zip(self.ahead.drain(..from_ahead))
        {
            *d = s;
        }
        if from_ahead < b.len() {
            self.ts
                .tcp_recv_exact(self.conn, &mut b[from_ahead..], TALK_NS)
                .map_err(|e| SrError::Io(format!("receiving from the source: {e}")))?;
        }
        self.drain()
    }
}

/// Splits `HOST[:PORT]`.
fn host_port(target: &str) -> (&str, u16) {
    match target.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().unwrap_or(0)),
        None => (target, MIGRATE_PORT),
    }
}

fn fail(what: &str, e: impl fmt::Display) -> XlError {
    XlError::Message(format!("migration: {what}: {e}"))
}

impl Toolstack {
    /// Receives exactly `want` and checks it is `want` (one of xl's
    /// messages).
    fn expect(&mut self, c: &TcpConn, want: &[u8], what: &str) -> XlResult<()> {
        let mut got = alloc::vec![0u8; want.len()];
        self.tcp_recv_exact(c, &mut got, TALK_NS)
            .map_err(|e| fail(what, e))?;
        if got != want {
            return Err(fail(
                what,
                format_args!("the peer said {:?}", String::from_utf8_lossy(&got)),
            ));
        }
        Ok(())
    }

    /// `xl migrate DOMAIN HOST[:PORT]`.
    pub(super) fn migrate_domain(
        &mut self,
        domid: u32,
        target: &str,
        config: Option<&str>,
        paused: bool,
        out: &mut dyn fmt::Write,
    ) -> XlResult<()> {
        let id = self.exists(domid)?;
        let g = self
            .guests
            .get(&id)
            .filter(|_| id != 0)
            .ok_or_else(|| XlError::Message(format!("domain {domid} cannot be migrated")))?;
        let pv = g.hvm.is_none() && g.cfg.domain_type == DomainType::Pv;
        if g.hvm.is_none() && !pv {
            return Err(XlError::Message(format!(
                "xl migrate: {} is a {} guest: Oxen migrates type=\"hvm\" and \"pv\" guests",
                g.name,
                g.cfg.domain_type.as_str()
            )));
        }
        let name = g.name.clone();
        let text = self.image_config(id, config)?;
        let (host, port) = host_port(target);
        // The target may not listen yet: a refused connection is tried
        // again until CONNECT_NS have passed.
        let deadline = time::now_ns().saturating_add(CONNECT_NS);
        let conn = loop {
            match self.tcp_connect(host, port, TALK_NS) {
                Ok(c) => break c,
                Err(crate::ipconf::NetError::Refused) if time::now_ns() < deadline => {
                    let until = time::now_ns() + 500_000_000;
                    while time::now_ns() < until {
                        if !self.service() {
                            self.idle();
                        }
                    }
                }
                Err(e) => return Err(fail(&format!("connecting to {host}:{port}"), e)),
            }
        };
        let r = if pv {
            self.send_pv_domain(id, &name, &conn, text.as_bytes(), paused, out)
        } else {
            self.send_domain(id, &conn, text.as_bytes(), paused, out)
        };
        match r {
            Ok(()) => {
                let _ = self.tcp_close(conn, TALK_NS);
                self.destroy_guest(id)
            }
            Err(e) => {
                self.tcp_abort(conn);
                // The guest runs on here.
                if pv {
                    let _ = xc::shadow_op(id, ShadowOp::Off, &mut []);
                    let suspended = xc::domain_info(id)
                        .is_ok_and(|i| i.is_shutdown() && i.shutdown_reason() == SHUTDOWN_SUSPEND);
                    if suspended {
                        let _ = self.resume_pv(id);
                    }
                } else {
                    let _ = xc::shadow_op(id, ShadowOp::Off, &mut []);
                    let _ = xc::unpause(id);
                }
                let _ = writeln!(
                    out,
                    "migration sender: Target reported an error; domain resumed."
                );
                Err(e)
            }
        }
    }

    fn send_domain(
        &mut self,
        id: u16,
        conn: &TcpConn,
        config: &[u8],
        paused: bool,
        out: &mut dyn fmt::Write,
    ) -> XlResult<()> {
        self.expect(conn, BANNER, "waiting for the receiver's banner")?;
        let _ = writeln!(out, "migration target: Ready to receive domain.");
        let _ = writeln!(
            out,
            "Saving to migration stream new xl format (info 0x2/0x0/{})",
            4 + config.len()
        );
        let _ = writeln!(out, "xc: info: Saving domain {id}, type x86 HVM");
        let t0 = time::now_ns();
        let frames = SaveHvm {
            domid: id,
            ioreq_gfn: xc::hvm_get_param(id, HvmParam::IoreqPfn).ok(),
            emulator: Vec::new(),
        };
        let mut o = Outgoing {
            sink: TcpSink {
                ts: self,
                conn,
                buf: Vec::with_capacity(SEND_CHUNK),
            },
            frames,
            paused_at: None,
            emulator: Vec::new(),
        };
        let mut last_round = u32::MAX;
        let stats = image::save_hvm_live(
            &mut o,
            config,
            XEN_VERSION,
            Precopy::default(),
            &mut |round, sent, n| report_round(out, &mut last_round, "Paused", round, sent, n),
        )
        .and_then(|s| o.flush().map(|()| s));
        let paused_at = o.paused_at;
        let stats = stats.map_err(|e| fail("sending the domain", e))?;
        self.handover(conn, paused, out)?;
        report_live(out, &stats, "paused", t0, paused_at);
        Ok(())
    }

    /// The end of xl's conversation, once the image is sent: the target
    /// built the domain, gets permission to go, and reports its copy
    /// running.
    fn handover(&mut self, conn: &TcpConn, paused: bool, out: &mut dyn fmt::Write) -> XlResult<()> {
        let _ = writeln!(out, "migration sender: Target has acknowledged transfer.");
        self.expect(conn, READY, "waiting for the target to build the domain")?;
        if paused {
            let _ = writeln!(
                out,
                "migration sender: -p: the target decides (xl migrate-receive -p keeps it paused)"
            );
        }
        self.tcp_send_all(conn, GO, TALK_NS)
            .map_err(|e| fail("giving the target permission to go", e))?;
        self.expect(conn, REPORT, "waiting for the target's report")?;
        let mut status = [0u8; 1];
        self.tcp_recv_exact(conn, &mut status, TALK_NS)
            .map_err(|e| fail("waiting for the target's report", e))?;
        if status[0] != 0 {
            return Err(fail(
                "the target",
                format_args!("could not unpause its copy (status {})", status[0]),
            ));
        }
        Ok(())
    }

    /// `xl migrate` of a PV guest: without a PV log-dirty mode it is
    /// suspended (as for `xl save`) and its image sent whole; the guest is
    /// down for the whole transfer.
    fn send_pv_domain(
        &mut self,
        id: u16,
        name: &str,
        conn: &TcpConn,
        config: &[u8],
        paused: bool,
        out: &mut dyn fmt::Write,
    ) -> XlResult<()> {
        self.expect(conn, BANNER, "waiting for the receiver's banner")?;
        let _ = writeln!(out, "migration target: Ready to receive domain.");
        let _ = writeln!(
            out,
            "Saving to migration stream new xl format (info 0x2/0x0/{})",
            4 + config.len()
        );
        if let Err(e) = xc::shadow_op(id, ShadowOp::EnableLogdirty, &mut []) {
            let _ = writeln!(
                out,
                "xc: warning: log-dirty mode refused ({e}): {name} is suspended for the whole transfer"
            );
            return self.send_pv_suspended(id, name, conn, paused, config, out);
        }
        let _ = writeln!(out, "xc: info: Saving domain {id}, type x86 PV");
        let t0 = time::now_ns();
        let mut o = OutgoingPv {
            sink: TcpSink {
                ts: self,
                conn,
                buf: Vec::with_capacity(SEND_CHUNK),
            },
            frames: SavePv { domid: id },
            name: String::from(name),
            suspended_at: None,
        };
        let mut last_round = u32::MAX;
        let stats = pv::save_pv_live(
            &mut o,
            config,
            XEN_VERSION,
            Precopy::default(),
            &mut |round, sent, n| report_round(out, &mut last_round, "Suspended", round, sent, n),
        )
        .and_then(|s| o.sink.flush().map(|()| s));
        let suspended_at = o.suspended_at;
        let stats = stats.map_err(|e| fail("sending the domain", e))?;
        self.handover(conn, paused, out)?;
        report_live(out, &stats, "suspended", t0, suspended_at);
        Ok(())
    }

    /// A PV guest sent suspended for the whole transfer (no log-dirty).
    fn send_pv_suspended(
        &mut self,
        id: u16,
        name: &str,
        conn: &TcpConn,
        paused: bool,
        config: &[u8],
        out: &mut dyn fmt::Write,
    ) -> XlResult<()> {
        self.suspend_pv(id, name)?;
        let paused_at = time::now_ns();
        let _ = writeln!(out, "xc: info: Saving domain {id}, type x86 PV");
        let mut sink = TcpSink {
            ts: self,
            conn,
            buf: Vec::with_capacity(SEND_CHUNK),
        };
        let mut side = SavePv { domid: id };
        let stats = pv::save_pv(&mut side, &mut sink, config, XEN_VERSION, &mut |_, _| {})
            .and_then(|s| sink.flush().map(|()| s))
            .map_err(|e| fail("sending the domain", e))?;
        self.handover(conn, paused, out)?;
        let now = time::now_ns();
        let _ = writeln!(
            out,
            "migration sender: Target reports successful startup.\n\
             xc: info: {} frames, {} KiB sent while suspended; downtime {} ms",
            stats.pages,
            stats.bytes / 1024,
            now.saturating_sub(paused_at) / 1_000_000
        );
        let _ = writeln!(out, "Migration successful.");
        Ok(())
    }

    /// `xl migrate-receive`: waits for one incoming domain on
    /// [`MIGRATE_PORT`] and runs it.
    pub(super) fn migrate_receive_domain(
        &mut self,
        paused: bool,
        out: &mut dyn fmt::Write,
    ) -> XlResult<u32> {
        let _ = writeln!(out, "migration target: waiting on port {MIGRATE_PORT}");
        let conn = self
            .tcp_accept(MIGRATE_PORT, ACCEPT_NS)
            .map_err(|e| fail("waiting for a source", e))?;
        let r = self.receive_domain(&conn, paused, out);
        match &r {
            Ok(_) => {
                let _ = self.tcp_close(conn, TALK_NS);
            }
            Err(_) => self.tcp_abort(conn),
        }
        r
    }

    fn receive_domain(
        &mut self,
        conn: &TcpConn,
        paused: bool,
        out: &mut dyn fmt::Write,
    ) -> XlResult<u32> {
        self.tcp_send_all(conn, BANNER, TALK_NS)
            .map_err(|e| fail("greeting the source", e))?;
        let mut ahead = alloc::collections::VecDeque::new();
        let saved = image::read_config(&mut Incoming {
            ts: self,
            conn,
            ahead: &mut ahead,
        })
        .map_err(|e| fail("receiving the config", e))?;
        let domid = if let Some(c) = self.pv_restore_config(&saved, None) {
            let mut r = self.pv_restore_begin(c, out)?;
            let body = pv_restore_body(
                &mut Incoming {
                    ts: self,
                    conn,
                    ahead: &mut ahead,
                },
                &mut r,
                out,
            );
            self.pv_restore_end("migration stream", r, body, true, out)?
        } else {
            let mut r = self.restore_begin("migration stream", saved, None, out)?;
            let body = restore_body(
                &mut Incoming {
                    ts: self,
                    conn,
                    ahead: &mut ahead,
                },
                &mut r,
                out,
            );
            self.restore_end("migration stream", r, body, true, out)?
        };
        drop(ahead);
        let _ = writeln!(
            out,
            "migration target: Transfer complete, requesting permission to start domain."
        );
        let go = self
            .tcp_send_all(conn, READY, TALK_NS)
            .map_err(|e| fail("telling the source", e))
            .and_then(|()| self.expect(conn, GO, "waiting for permission to go"));
        if let Err(e) = go {
            let _ = self.destroy_guest(domid as u16);
            return Err(e);
        }
        let ok = paused || xc::unpause(domid as u16).is_ok();
        let mut report = REPORT.to_vec();
        report.push(u8::from(!ok));
        let _ = self.tcp_send_all(conn, &report, TALK_NS);
        if !ok {
            let _ = self.destroy_guest(domid as u16);
            return Err(fail("unpausing the domain", "failed"));
        }
        let _ = writeln!(out, "migration target: Domain started successfully.");
        Ok(domid)
    }
}
