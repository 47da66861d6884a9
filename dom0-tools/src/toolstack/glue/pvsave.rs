//! `xl save` of PV guests on the metal, the Xen way: the guest is asked
//! to suspend through xenstore (`control/shutdown` = "suspend"), the
//! toolstack waits (serving every guest meanwhile) until the hypervisor
//! reports it shut down with `SHUTDOWN_suspend`, then writes the image
//! with [`crate::migration::pv::save_pv`] (its frames read through
//! read-only foreign mappings: a suspended guest's page tables cannot be
//! mapped writable), and destroys the guest, or (`-c`, `-p`, or a failed
//! save) resumes it as libxc's `xc_domain_resume` does: vCPU 0's return
//! value set to 1 ("cancelled") with `setvcpucontext`, then
//! `XEN_DOMCTL_resumedomain`.

use super::saverestore::{sr_fail, XEN_VERSION};
use super::*;
use crate::migration::image::{self, SrError};
use crate::migration::{pv, savefile};
use crate::xl::backend::AfterSave;
use hypercall_abi::arch_x86::VGCF_ONLINE;

/// How long a guest gets to suspend.
const SUSPEND_TIMEOUT_NS: u64 = 30_000_000_000;
/// `SHUTDOWN_suspend`.
pub(super) const SHUTDOWN_SUSPEND: u32 = 2;
/// Frames mapped at once while reading.
const READ_BATCH: usize = 256;

fn hc(what: &str, e: impl fmt::Display) -> SrError {
    SrError::Domain(format!("{what}: {e}"))
}

/// A suspended PV guest, read through read-only foreign mappings.
pub(super) struct SavePv {
    pub(super) domid: u16,
}

impl pv::PvSaveSide for SavePv {
    fn max_pages(&mut self) -> Result<u64, SrError> {
        Ok(xc::domain_info(self.domid)
            .map_err(|e| hc("getdomaininfo", e))?
            .max_pages)
    }

    fn shared_info(&mut self) -> Result<Vec<u8>, SrError> {
        let frame = xc::domain_info(self.domid)
            .map_err(|e| hc("getdomaininfo", e))?
            .shared_info_frame;
        let mut b = alloc::vec![0u8; 4096];
        self.read_frames(&[frame], &mut b)?;
        Ok(b)
    }

    fn read_frames(&mut self, mfns: &[u64], out: &mut [u8]) -> Result<(), SrError> {
        for (frames, bytes) in mfns
            .chunks(READ_BATCH)
            .zip(out.chunks_mut(READ_BATCH * 4096))
        {
            let map = ForeignMap::new_readonly(self.domid, frames)
                .map_err(|e| hc("mapping the guest's frames (read-only)", e))?;
            for (i, o) in bytes.chunks_exact_mut(4096).enumerate() {
                if !map.read_page(i as u64, o) {
                    return Err(SrError::Domain(String::from("a guest frame did not map")));
                }
            }
        }
        Ok(())
    }

    fn frame_types(&mut self, mfns: &mut [u64]) -> Result<(), SrError> {
        for chunk in mfns.chunks_mut(1024) {
            xc::page_types(self.domid, chunk).map_err(|e| hc("XEN_DOMCTL_getpageframeinfo3", e))?;
        }
        Ok(())
    }

    fn nr_vcpus(&mut self) -> Result<u32, SrError> {
        Ok(xc::domain_info(self.domid)
            .map_err(|e| hc("getdomaininfo", e))?
            .max_vcpu_id
            + 1)
    }

    fn vcpu_context(
        &mut self,
        id: u32,
    ) -> Result<Option<hypercall_abi::arch_x86::VcpuGuestContext>, SrError> {
        let ctx = get_context(self.domid, id).map_err(|e| hc("getvcpucontext", e))?;
        Ok((ctx.flags & VGCF_ONLINE != 0).then_some(ctx))
    }
}

/// `getvcpucontext`, again while the hypervisor says -EAGAIN (a stopped
/// vCPU still leaving its CPU).
fn get_context(
    domid: u16,
    id: u32,
) -> Result<hypercall_abi::arch_x86::VcpuGuestContext, pv_guest_lib::Errno> {
    let mut tries = 0;
    loop {
        match xc::get_vcpu_context(domid, id) {
            Err(e) if e.is(hypercall_abi::errno::Errno::EAGAIN) && tries < 1000 => {
                tries += 1;
                let _ = xen::sched_yield();
            }
            r => return r,
        }
    }
}

impl Toolstack {
    /// Asks PV guest `id` to suspend and waits until it has (serving the
    /// other guests meanwhile). On a timeout the request is withdrawn and
    /// the guest runs on.
    pub(super) fn suspend_pv(&mut self, id: u16, name: &str) -> XlResult<()> {
        let node = Self::dom_path(id, "control/shutdown");
        self.xs
            .write(&node, b"suspend")
            .map_err(|e| fail("xenstore write", format_args!("{e:?}")))?;
        self.flush_xs();
        let deadline = time::now_ns().saturating_add(SUSPEND_TIMEOUT_NS);
        loop {
            let progress = self.service();
            let info = xc::domain_info(id).map_err(|_| {
                XlError::Message(format!("xl save: {name} vanished while suspending"))
            })?;
            if info.is_shutdown() {
                let r = info.shutdown_reason();
                if r == SHUTDOWN_SUSPEND {
                    return Ok(());
                }
                return Err(XlError::Message(format!(
                    "xl save: {name} shut down ({}) instead of suspending",
                    xc::shutdown_reason_name(r)
                )));
            }
            if time::now_ns() >= deadline {
                let acked = self.xs.read(&node).map(|v| v.is_empty()).unwrap_or(false);
                let _ = self.xs.write(&node, b"");
                self.flush_xs();
                return Err(XlError::Message(format!(
                    "xl save: {name} did not suspend within {} s ({}); it runs on",
                    SUSPEND_TIMEOUT_NS / 1_000_000_000,
                    if acked {
                        "it acknowledged the request"
                    } else {
                        "it did not acknowledge control/shutdown: no PV suspend support?"
                    }
                )));
            }
            if !progress {
                self.idle();
            }
        }
    }

    /// libxc's `xc_domain_resume` fast path: vCPU 0 returns 1 from its
    /// suspend ("cancelled") and the domain runs on.
    pub(super) fn resume_pv(&mut self, id: u16) -> XlResult<()> {
        let mut ctx = get_context(id, 0).map_err(|e| sr_fail("getvcpucontext", e))?;
        ctx.user_regs.rax = 1;
        // -EAGAIN while the suspended vCPU is still leaving its CPU.
        let mut tries = 0;
        loop {
            match xc::set_vcpu_context(id, 0, &ctx) {
                Ok(()) => break,
                Err(e) if e.is(hypercall_abi::errno::Errno::EAGAIN) && tries < 1000 => {
                    tries += 1;
                    let _ = xen::sched_yield();
                }
                Err(e) => return Err(sr_fail("setvcpucontext", e)),
            }
        }
        xc::resume_domain(id).map_err(|e| sr_fail("XEN_DOMCTL_resumedomain", e))?;
        if let Some(g) = self.guests.get_mut(&id) {
            // Its suspend was taken as "ignore" by the reaper: watch it again.
            g.settled = false;
        }
        Ok(())
    }

    /// `xl save` of a PV guest (called by `save_domain`).
    pub(super) fn save_pv_domain(
        &mut self,
        id: u16,
        file: &str,
        config: Option<&str>,
        after: AfterSave,
        out: &mut dyn fmt::Write,
    ) -> XlResult<()> {
        let g = self.guests.get(&id).ok_or_else(|| {
            XlError::Message(format!("domain {id}: not a guest this toolstack started"))
        })?;
        let name = g.name.clone();
        let text = self.image_config(id, config)?;
        let (vol, disk, inner) = self.save_file(file)?;
        let _ = writeln!(
            out,
            "Saving to {file} new xl format (info {:#x}/0x0/{})",
            savefile::XL_FLAG_STREAM_V2,
            4 + text.len()
        );
        self.suspend_pv(id, &name)?;
        let _ = writeln!(out, "xc: info: Saving domain {id}, type x86 PV");
        let t0 = time::now_ns();
        let info = xc::domain_info(id).map_err(|e| sr_fail("xl save", e))?;
        // Every frame with its pfn entry, the p2m's pages, the records
        // around them: an upper bound, trimmed at the end.
        let estimate =
            info.max_pages.max(info.tot_pages) * (4096 + 16) + text.len() as u64 + (2 << 20);
        let config = text.as_bytes();
        let r = self.write_image_file(&vol, &disk, inner, estimate, out, |sink, progress| {
            pv::save_pv(
                &mut SavePv { domid: id },
                sink,
                config,
                XEN_VERSION,
                progress,
            )
        });
        let stats = match r {
            Ok(s) => s,
            Err(e) => {
                // The guest runs on, as after `-c`.
                let _ = self.resume_pv(id);
                return Err(e);
            }
        };
        let ns = time::now_ns().saturating_sub(t0);
        let _ = writeln!(
            out,
            "xc: info: Saved {} frames, {} KiB in {} ms",
            stats.pages,
            stats.bytes / 1024,
            ns / 1_000_000,
        );
        match after {
            AfterSave::Destroy => self.destroy_guest(id),
            AfterSave::Run => self.resume_pv(id),
            AfterSave::Pause => {
                xc::pause(id).map_err(xen_err)?;
                self.resume_pv(id)
            }
        }
    }
}

/// A new, paused PV domain being filled from an image.
struct RestorePv {
    domid: u16,
}

impl pv::PvRestoreSide for RestorePv {
    fn populate(&mut self, pfns: &[u64]) -> Result<Vec<u64>, SrError> {
        let mut out = Vec::with_capacity(pfns.len());
        for chunk in pfns.chunks(512) {
            let mut list = chunk.to_vec();
            let n = xc::populate_physmap(self.domid, &mut list)
                .map_err(|e| hc("populate_physmap", e))?;
            if n != chunk.len() {
                return Err(SrError::Domain(String::from(
                    "populate_physmap: out of memory (or over the config's memory)",
                )));
            }
            out.extend_from_slice(&list);
        }
        Ok(out)
    }

    fn write_frames(&mut self, mfns: &[u64], data: &[u8]) -> Result<(), SrError> {
        for (frames, bytes) in mfns.chunks(READ_BATCH).zip(data.chunks(READ_BATCH * 4096)) {
            let mut map = ForeignMap::new(self.domid, frames)
                .map_err(|e| hc("mapping the new domain's frames", e))?;
            for (i, b) in bytes.chunks_exact(4096).enumerate() {
                let p = map
                    .page(i as u64)
                    .ok_or_else(|| SrError::Domain(String::from("a new frame did not map")))?;
                p.copy_from_slice(b);
            }
        }
        Ok(())
    }

    fn read_frame(&mut self, mfn: u64) -> Result<Vec<u8>, SrError> {
        let map = ForeignMap::new_readonly(self.domid, &[mfn])
            .map_err(|e| hc("mapping a new frame", e))?;
        let mut p = alloc::vec![0u8; 4096];
        if !map.read_page(0, &mut p) {
            return Err(SrError::Domain(String::from("a new frame did not map")));
        }
        Ok(p)
    }

    fn pin(&mut self, mfn: u64, level: u8) -> Result<(), SrError> {
        xc::pin_table(self.domid, level, mfn)
            .map_err(|e| hc(&format!("pinning L{level} table {mfn:#x}"), e))
    }

    fn update_shared_info(&mut self, f: &mut dyn FnMut(&mut [u8])) -> Result<u64, SrError> {
        let frame = xc::domain_info(self.domid)
            .map_err(|e| hc("getdomaininfo", e))?
            .shared_info_frame;
        let mut map =
            ForeignMap::new(self.domid, &[frame]).map_err(|e| hc("mapping shared info", e))?;
        let p = map
            .page(0)
            .ok_or_else(|| SrError::Domain(String::from("shared info did not map")))?;
        f(&mut p[..]);
        Ok(frame << 12)
    }

    fn set_vcpu_context(
        &mut self,
        id: u32,
        ctx: &hypercall_abi::arch_x86::VcpuGuestContext,
    ) -> Result<(), SrError> {
        xc::set_vcpu_context(self.domid, id, ctx)
            .map_err(|e| hc(&format!("setvcpucontext of vCPU {id}"), e))
    }
}

/// A PV image's config, parsed.
pub(super) struct PvConfig {
    cfg_file: String,
    text: String,
    cfg: DomainConfig,
}

/// Frames of room a restored PV domain gets beyond its config's memory.
const RESTORE_SLACK_KIB: u64 = 256;

impl Toolstack {
    /// The config a restore uses (`config`, or the image's) if it is a
    /// `type = "pv"` guest's; `None` for anything else (or a config that
    /// does not parse: the HVM path reports that).
    pub(super) fn pv_restore_config(&self, saved: &[u8], config: Option<&str>) -> Option<PvConfig> {
        let (cfg_file, text) = match config {
            Some(c) => {
                let (p, t) = self.config(c).ok()?;
                (p, String::from_utf8_lossy(t).into_owned())
            }
            None => (
                String::from("<saved>"),
                String::from_utf8(saved.to_vec()).ok()?,
            ),
        };
        let (cfg, _) = xlcfg::load(&cfg_file, &text, &[]).ok()?;
        (cfg.domain_type == DomainType::Pv).then_some(PvConfig {
            cfg_file,
            text,
            cfg,
        })
    }

    /// `xl restore` of a PV image, after its config (`c`): a new domain,
    /// the image into it, then xenstore, the console, disks and vifs as
    /// `xl create` wires them, and unpaused unless `paused`. Any failure
    /// destroys the new domain: a bad image creates nothing.
    pub(super) fn restore_pv_domain<S: image::Source + ?Sized>(
        &mut self,
        what: &str,
        c: PvConfig,
        paused: bool,
        src: &mut S,
        out: &mut dyn fmt::Write,
    ) -> XlResult<u32> {
        let mut r = self.pv_restore_begin(c, out)?;
        let body = pv_restore_body(src, &mut r, out);
        self.pv_restore_end(what, r, body, paused, out)
    }

    /// A PV restore's first step: the config checked and the new, empty
    /// domain with its store and console ports.
    pub(super) fn pv_restore_begin(
        &mut self,
        c: PvConfig,
        out: &mut dyn fmt::Write,
    ) -> XlResult<PvRestoring> {
        let PvConfig {
            cfg_file,
            text,
            cfg,
        } = c;
        let _ = writeln!(out, "Parsing config from {cfg_file}");
        if self.guests.values().any(|g| g.name == cfg.name) || cfg.name == "Domain-0" {
            return Err(XlError::Message(format!(
                "Domain with name {} already exists.",
                cfg.name
            )));
        }
        let domid = xc::create_domain(&xc::CreateParams {
            max_vcpus: cfg.max_vcpus.max(1),
            ..xc::CreateParams::default()
        })
        .map_err(|e| sr_fail("creating the domain", e))?;
        let _ = writeln!(out, "xc: info: Restoring domain {domid}, type x86 PV");
        let ports = (|| -> Result<(u32, u32), SrError> {
            let mem_kib = cfg.maxmem_mib.max(cfg.memory_mib) * 1024;
            xc::set_max_mem(domid, mem_kib + RESTORE_SLACK_KIB).map_err(|e| hc("max_mem", e))?;
            let console_port =
                xc::evtchn_alloc_unbound(domid, 0).map_err(|e| hc("alloc_unbound (console)", e))?;
            let store_port = xc::evtchn_alloc_unbound(domid, 0)
                .map_err(|e| hc("alloc_unbound (xenstore)", e))?;
            Ok((console_port, store_port))
        })();
        match ports {
            Ok((console_port, store_port)) => Ok(PvRestoring {
                domid,
                max_pages: (cfg.maxmem_mib.max(cfg.memory_mib) * 1024 + RESTORE_SLACK_KIB) / 4
                    + pv::P2M_SLACK,
                console_port,
                store_port,
                cfg_file,
                text,
                cfg,
                t0: time::now_ns(),
            }),
            Err(e) => {
                let _ = xc::destroy(domid);
                Err(sr_fail(
                    &format!("restore failed, domain {domid} destroyed"),
                    e,
                ))
            }
        }
    }

    /// A PV restore's last step: the domain wired as `xl create` wires
    /// one and unpaused unless `paused`; or, if the image could not be
    /// read (`body`), destroyed.
    pub(super) fn pv_restore_end(
        &mut self,
        what: &str,
        p: PvRestoring,
        body: Result<pv::Restored, SrError>,
        paused: bool,
        out: &mut dyn fmt::Write,
    ) -> XlResult<u32> {
        let PvRestoring {
            domid,
            max_pages: _,
            console_port,
            store_port,
            cfg_file,
            text,
            cfg,
            t0,
        } = p;
        let r = match body {
            Ok(v) => v,
            Err(e) => {
                let _ = xc::destroy(domid);
                return Err(sr_fail(
                    &format!("{what}: restore failed, domain {domid} destroyed"),
                    e,
                ));
            }
        };
        let ns = time::now_ns().saturating_sub(t0);
        let _ = writeln!(
            out,
            "xc: info: Restored {} frames in {} ms",
            r.pages,
            ns / 1_000_000
        );
        let shared_info_frame = xc::domain_info(domid).map_or(0, |i| i.shared_info_frame);
        let built = Built {
            domid,
            nr_pages: r.max_pfn,
            console_mfn: r.console_mfn,
            console_port,
            store_mfn: r.store_mfn,
            store_port,
            l4_mfn: 0,
            entry: 0,
            shared_info_frame,
        };
        match self.finish_start(&cfg, &built, paused) {
            Ok((uuid, console_map, console_port)) => {
                let name = cfg.name.clone();
                self.guests.insert(
                    domid,
                    Box::new(Guest {
                        name,
                        cfg,
                        source: Source {
                            file: cfg_file,
                            text,
                            overrides: Vec::new(),
                        },
                        uuid,
                        console: DomConsole::new(domid),
                        console_map: Some(console_map),
                        console_port: Some(console_port),
                        hvm: None,
                        started_ns: time::now_ns(),
                        settled: false,
                    }),
                );
                let _ = writeln!(out, "xc: info: Restore successful");
                Ok(u32::from(domid))
            }
            Err(e) => {
                self.net.forget(&mut self.xs, domid);
                let _ = self.xs.release(domid);
                let _ = xc::destroy(domid);
                Err(e)
            }
        }
    }
}

/// A PV restore under way: the new domain, its ports, its config.
pub(super) struct PvRestoring {
    domid: u16,
    /// The most frames the image may claim (the config's memory).
    max_pages: u64,
    console_port: u32,
    store_port: u32,
    cfg_file: String,
    text: String,
    cfg: DomainConfig,
    t0: u64,
}

/// A PV restore's middle step: the image's records into the new domain,
/// progress every 16 MiB.
pub(super) fn pv_restore_body<S: image::Source + ?Sized>(
    src: &mut S,
    r: &mut PvRestoring,
    out: &mut dyn fmt::Write,
) -> Result<pv::Restored, SrError> {
    let mut side = RestorePv { domid: r.domid };
    let mut shown = 0u64;
    pv::restore_pv(
        src,
        &mut side,
        pv::Ports {
            store_evtchn: r.store_port,
            console_evtchn: r.console_port,
        },
        r.max_pages,
        &mut |pages| {
            if pages >> 12 > shown >> 12 {
                shown = pages;
                let _ = writeln!(out, "xc: Frames restored: {pages}");
            }
        },
    )
}
