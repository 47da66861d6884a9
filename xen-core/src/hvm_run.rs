//! Running HVM vCPUs: the glue between the scheduler's HVM loop, the SVM
//! backend (`arch::x86_64::svm_vcpu`) and the vendor-neutral exit handler
//! (`xen_core::hvm::exit`) with its platform devices.
//!
//! **Owns**: an HVM domain's runtime ([`Runtime`]: platform devices,
//! CPUID and MSR policies, the device model's ioreq page and ports), each
//! HVM vCPU's state ([`HvmVcpuState`]), one round of a vCPU on this CPU
//! ([`run_once`]: inject what is pending, VMRUN, handle the exit, carry out
//! the platform's actions), the ioreq protocol with Dom0's device model
//! (Xen's legacy default ioreq server: one `ioreq_t` slot per vCPU in the
//! page at `HVM_PARAM_IOREQ_PFN`, an event channel per vCPU), and the HVM
//! context records (`XEN_DOMCTL_{get,set}hvmcontext`).
//! **Trusts**: the scheduler to run a vCPU on one CPU at a time and to
//! keep its domain until it is switched away; nothing from the guest or
//! the device model: a slot answered with garbage completes the access
//! with that value, a device model that never answers leaves only that
//! guest waiting.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::arch::x86_64::svm_vcpu::{Guest, GuestRam, SvmVcpu};
use crate::domain::{find, DomId, Domain, RunState, DOMAINS};
use hypercall_abi::errno::Errno;
use hypercall_abi::hvm::{HvmParam, Ioreq, IoreqState, HVM_NR_PARAMS};
use hypercall_abi::hvm_save::{self, code, HvmHwCpu, HvmHwLapic, HvmSaveHeader, HVM_FILE_MAGIC};
use hypercall_abi::sched::ShutdownReason;
use xen_core::evtchn::Event;
use xen_core::hvm::cpuid::{HvmCpuidConfig, HvmCpuidPolicy};
use xen_core::hvm::exit::{self as hx, ExitOutcome, Injection, Policies};
use xen_core::hvm::msr::MsrPolicy;
use xen_core::hvm::msr::{MsrState, MTRR_SAVE_LEN};
use xen_core::hvm::platform::{Action, Actions, Platform, PlatformConfig};
use xen_core::hvm::vacpi::PMTIMER_SAVE_LEN;
use xen_core::hvm::vioapic::IOAPIC_SAVE_LEN;
use xen_core::hvm::vlapic::{LapicHidden, VLapic, LAPIC_REGS_LEN};
use xen_core::hvm::vpic::PIC_SAVE_LEN;
use xen_core::hvm::vpit::PIT_SAVE_LEN;
use xen_core::hvm::vrtc::RTC_SAVE_LEN;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// An HVM domain's devices and policies, made when its first vCPU gets a
/// context.
pub struct Runtime {
    /// PIC, PIT, RTC, IOAPIC, ACPI PM, LAPICs.
    pub platform: Platform,
    /// What CPUID says.
    pub cpuid: HvmCpuidPolicy,
    /// Which MSRs exist.
    pub msr: MsrPolicy,
    /// Per vCPU: the guest's event channel for its ioreqs (the device
    /// model binds to it), once the ioreq page is set.
    pub ioreq_ports: Vec<u32>,
}

/// One HVM vCPU: the hardware state and the emulation state.
pub struct HvmVcpuState {
    /// VMCB and registers.
    pub svm: SvmVcpu,
    /// Ioreq in flight, MTRRs, the MMIO replay log.
    pub emu: hx::HvmVcpu,
    /// Its event-channel upcall vector
    /// (`HVMOP_set_evtchn_upcall_vector`), if set.
    pub upcall_vector: Option<u8>,
}

/// `HVM_PARAM_*` values a domain has (Xen keeps them per domain).
pub type Params = [u64; HVM_NR_PARAMS as usize];

/// CPUID leaf 1 ECX.XSAVE and OSXSAVE, AVX: hidden (the FPU is switched
/// with FXSAVE, so only x87/SSE state survives a switch).
const LEAF1_ECX_HIDDEN: u32 = (1 << 26) | (1 << 27) | (1 << 28);
/// CPUID leaf 7 ECX: 5-level paging.
const LEAF7_ECX_LA57: u32 = 1 << 16;
/// CPUID leaf 7 EBX: AVX2, AVX-512 family.
const LEAF7_EBX_HIDDEN: u32 = (1 << 5) | 0xffff_0000;

/// The host CPUID an HVM policy is computed from.
fn hvm_host_cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    let r = crate::arch::x86_64::instr::cpuid(leaf, sub);
    let mut l = [r.eax, r.ebx, r.ecx, r.edx];
    match leaf {
        1 => l[2] &= !LEAF1_ECX_HIDDEN,
        7 if sub == 0 => {
            l[1] &= !LEAF7_EBX_HIDDEN;
            // LA57: the emulator walks 4-level tables only.
            l[2] &= !LEAF7_ECX_LA57;
        }
        0xd => l = [0; 4],
        _ => {}
    }
    l
}

fn hvm_cpuid_config(d: &Domain) -> HvmCpuidConfig {
    HvmCpuidConfig {
        vcpus: d.vcpus.len() as u32,
        domid: d.domid,
        ..Default::default()
    }
}

/// The CPUID policy an HVM domain gets by default.
pub fn default_cpuid(d: &Domain) -> HvmCpuidPolicy {
    HvmCpuidPolicy::from_host(hvm_host_cpuid, hvm_cpuid_config(d))
}

/// The domain's CPUID policy now: its runtime's, or (before the first
/// unpause) the one its runtime will get.
pub fn current_cpuid_serialised(d: &Domain) -> xen_core::cpuid_level::Entries {
    if let Some(rt) = d.hvm.as_ref().and_then(|h| h.rt.as_ref()) {
        return rt.cpuid.serialise();
    }
    HvmCpuidPolicy::from_host_levelled(hvm_host_cpuid, hvm_cpuid_config(d), &d.cpuid_levelling)
        .serialise()
}

fn make_runtime(d: &Domain) -> Runtime {
    let vcpus = d.vcpus.len();
    let cpuid =
        HvmCpuidPolicy::from_host_levelled(hvm_host_cpuid, hvm_cpuid_config(d), &d.cpuid_levelling);
    let msr = MsrPolicy::from_cpuid(&cpuid, 0, 0);
    let ram = d.tot_pages * 4096;
    let platform = Platform::new(
        PlatformConfig {
            vcpus,
            wall_secs: crate::time::wallclock_secs(),
            ram_below_4g: ram.min(0xf000_0000),
            ram_above_4g: ram.saturating_sub(0xf000_0000),
            lapic: xen_core::hvm::vlapic::LapicConfig {
                tsc_hz: crate::time::tsc_hz(),
                tsc_deadline: cpuid.has(1, 2, 24),
                ..Default::default()
            },
            pm: Default::default(),
            emulation: d
                .hvm
                .as_ref()
                .map_or(PlatformConfig::EMU_HVM, |h| h.emulation),
        },
        crate::time::now_ns(),
    );
    Runtime {
        platform,
        cpuid,
        msr,
        ioreq_ports: Vec::new(),
    }
}

// ---- Context records -------------------------------------------------------------

/// `XEN_DOMCTL_sethvmcontext`: loads the records of `buf` (header, CPU
/// records, each LAPIC as its `LAPIC` and `LAPIC_REGS` pair, the PIC pair,
/// the IOAPIC, the PIT, the RTC, the PM timer, each vCPU's MTRRs, end) into
/// a paused HVM domain. Other record types are refused (`-EOPNOTSUPP`: the
/// IRQ wires, HPET, Viridian, the MSR records are not restored yet); a
/// malformed buffer, a bad header, a MTRR record with reserved bits, a
/// LAPIC without its registers or with another vCPU's APIC ID, one PIC
/// without the other, an IOAPIC elsewhere than 0xfec00000, a PIT channel
/// no 8254 has is `-EINVAL`; nothing changes unless the whole buffer is
/// good.
pub fn set_context(d: &mut Domain, buf: &[u8]) -> Result<(), Errno> {
    let Some(hvm) = d.hvm.as_ref() else {
        return Err(Errno::EINVAL);
    };
    if d.pause_count == 0 {
        return Err(Errno::EINVAL);
    }
    let recs = hvm_save::records(buf).map_err(|_| Errno::EINVAL)?;
    let mut header = false;
    let mut cpus: Vec<(usize, HvmHwCpu)> = Vec::new();
    let mut hidden: Vec<(usize, HvmHwLapic)> = Vec::new();
    let mut pages: Vec<(usize, &[u8])> = Vec::new();
    let mut pics: [Option<[u8; PIC_SAVE_LEN]>; 2] = [None, None];
    let mut ioapic: Option<[u8; IOAPIC_SAVE_LEN]> = None;
    let mut pit: Option<[u8; PIT_SAVE_LEN]> = None;
    let mut rtc: Option<[u8; RTC_SAVE_LEN]> = None;
    let mut pm: Option<[u8; PMTIMER_SAVE_LEN]> = None;
    let mut mtrrs: Vec<(usize, MsrState, u64)> = Vec::new();
    let phys_bits = hvm.rt.as_ref().map_or(36, |rt| rt.msr.phys_addr_bits);
    for r in recs {
        let id = usize::from(r.desc.instance);
        match r.desc.typecode {
            code::PIC => {
                let slot = pics.get_mut(id).ok_or(Errno::EINVAL)?;
                let b: [u8; PIC_SAVE_LEN] = r.data.try_into().map_err(|_| Errno::EINVAL)?;
                if slot.replace(b).is_some() {
                    return Err(Errno::EINVAL);
                }
            }
            code::IOAPIC => once(&mut ioapic, id, r.data)?,
            code::PIT => once(&mut pit, id, r.data)?,
            code::RTC => once(&mut rtc, id, r.data)?,
            code::PMTIMER => once(&mut pm, id, r.data)?,
            code::MTRR => {
                let b: [u8; MTRR_SAVE_LEN] = r.data.try_into().map_err(|_| Errno::EINVAL)?;
                let (m, pat) = MsrState::load(&b, phys_bits).ok_or(Errno::EINVAL)?;
                if id >= d.vcpus.len() || mtrrs.iter().any(|(i, ..)| *i == id) {
                    return Err(Errno::EINVAL);
                }
                mtrrs.push((id, m, pat));
            }
            code::LAPIC => {
                let l = HvmHwLapic::read_from_bytes(r.data).map_err(|_| Errno::EINVAL)?;
                if id >= d.vcpus.len() || hidden.iter().any(|(i, _)| *i == id) {
                    return Err(Errno::EINVAL);
                }
                hidden.push((id, l));
            }
            code::LAPIC_REGS => {
                if r.data.len() != hvm_save::HVM_HW_LAPIC_REGS_SIZE
                    || id >= d.vcpus.len()
                    || pages.iter().any(|(i, _)| *i == id)
                {
                    return Err(Errno::EINVAL);
                }
                pages.push((id, r.data));
            }
            code::HEADER => {
                let h = HvmSaveHeader::read_from_bytes(r.data).map_err(|_| Errno::EINVAL)?;
                if h.magic != HVM_FILE_MAGIC || h.version != hvm_save::HVM_FILE_VERSION {
                    return Err(Errno::EINVAL);
                }
                header = true;
            }
            code::CPU => {
                let c = HvmHwCpu::read_from_bytes(r.data).map_err(|_| Errno::EINVAL)?;
                let id = usize::from(r.desc.instance);
                if id >= d.vcpus.len() || cpus.iter().any(|(i, _)| *i == id) {
                    return Err(Errno::EINVAL);
                }
                cpus.push((id, c));
            }
            _ => return Err(Errno::EOPNOTSUPP),
        }
    }
    if !header {
        return Err(Errno::EINVAL);
    }
    // Each LAPIC comes as its two records, as Xen saves them.
    let mut lapics: Vec<SavedLapic> = Vec::new();
    for (id, h) in &hidden {
        let Some((_, page)) = pages.iter().find(|(i, _)| i == id) else {
            return Err(Errno::EINVAL);
        };
        let mut regs = Box::new([0u8; LAPIC_REGS_LEN]);
        regs.copy_from_slice(page);
        lapics.push(SavedLapic {
            vcpu: *id,
            hidden: LapicHidden {
                apic_base_msr: h.apic_base_msr,
                disabled: h.disabled,
                timer_divisor: h.timer_divisor,
                tdt_msr: h.tdt_msr,
            },
            regs,
        });
    }
    if pages.len() != lapics.len() {
        return Err(Errno::EINVAL);
    }
    // The PIC comes as its pair, or not at all.
    let pic = match pics {
        [None, None] => None,
        [Some(m), Some(s)] => Some((m, s)),
        _ => return Err(Errno::EINVAL),
    };
    let platform =
        (pic.is_some() || ioapic.is_some() || pit.is_some() || rtc.is_some() || pm.is_some())
            .then_some(SavedPlatform {
                pic,
                ioapic,
                pit,
                rtc,
                pm,
            });
    // MTRRs go with a vCPU that has (or gets here) a CPU context.
    for (id, ..) in &mtrrs {
        if d.vcpus[*id].hvm.is_none() && !cpus.iter().any(|(i, _)| i == id) {
            return Err(Errno::EINVAL);
        }
    }
    if let Some(p) = &platform {
        let mut probe = xen_core::hvm::vpic::VPic::new();
        let mut probe_io = xen_core::hvm::vioapic::VIoApic::new(0);
        let mut probe_pit = xen_core::hvm::vpit::VPit::new();
        let ok = p.pic.is_none_or(|(m, s)| probe.restore(&m, &s))
            && p.ioapic.is_none_or(|b| probe_io.restore(&b))
            && p.pit.is_none_or(|b| probe_pit.restore(&b, 0));
        if !ok {
            return Err(Errno::EINVAL);
        }
    }
    // Check them against the vCPUs' APIC IDs before changing anything.
    let now = crate::time::now_ns();
    for l in &lapics {
        // The APIC ID the domain's LAPIC of that vCPU has (2 × its id).
        let id = xen_core::hvm::cpuid::HvmCpuidPolicy::apic_id(l.vcpu as u32);
        let mut probe = VLapic::new(id, l.vcpu == 0, Default::default());
        probe
            .restore(&l.hidden, &l.regs, now, 0)
            .map_err(|_| Errno::EINVAL)?;
    }
    let ncr3 = hvm.p2m.ncr3();
    for (id, c) in &cpus {
        let v = &mut d.vcpus[*id];
        match v.hvm.as_mut() {
            Some(s) => {
                // A vCPU asleep in HLT keeps its wake-up (a new context
                // does not cancel the timer it sleeps on).
                let wake = s.svm.wake_at;
                s.svm.set_context(c);
                s.svm.wake_at = wake;
            }
            None => {
                let svm = SvmVcpu::new(c, ncr3).ok_or(Errno::ENOMEM)?;
                v.hvm = Some(Box::new(HvmVcpuState {
                    svm,
                    emu: hx::HvmVcpu::default(),
                    upcall_vector: None,
                }));
            }
        }
        // The FXSAVE image, unless it is empty (then FNINIT state).
        v.fpu_valid = c.fpu_regs[..2] != [0, 0];
        if v.fpu_valid {
            v.fpu.0.copy_from_slice(&c.fpu_regs);
        }
    }
    apply_lapics(d, lapics);
    if let Some(p) = platform {
        apply_platform(d, p);
    }
    for (id, m, pat) in mtrrs {
        if let Some(s) = d.vcpus[id].hvm.as_mut() {
            s.emu.msrs = m;
            s.svm.set_pat(pat);
        }
    }
    Ok(())
}

/// The PIC pair and IOAPIC from a context (records `PIC` 0 and 1, `IOAPIC`).
pub struct SavedPlatform {
    /// Master and slave.
    pub pic: Option<([u8; PIC_SAVE_LEN], [u8; PIC_SAVE_LEN])>,
    /// `hvm_hw_vioapic`.
    pub ioapic: Option<[u8; IOAPIC_SAVE_LEN]>,
    /// `hvm_hw_pit`.
    pub pit: Option<[u8; PIT_SAVE_LEN]>,
    /// `hvm_hw_rtc`.
    pub rtc: Option<[u8; RTC_SAVE_LEN]>,
    /// `hvm_hw_pmtimer`.
    pub pm: Option<[u8; PMTIMER_SAVE_LEN]>,
}

/// Loads them into the domain's devices, or keeps them for when the
/// devices are made. Checked by `set_context` already.
fn apply_platform(d: &mut Domain, p: SavedPlatform) {
    let Some(hvm) = d.hvm.as_mut() else { return };
    match hvm.rt.as_mut() {
        Some(rt) => {
            if let Some((m, s)) = &p.pic {
                rt.platform.restore_pic(m, s);
            }
            if let Some(b) = &p.ioapic {
                rt.platform.restore_ioapic(b);
            }
            let now = crate::time::now_ns();
            if let Some(b) = &p.pit {
                rt.platform.restore_pit(b, now);
            }
            if let Some(b) = &p.rtc {
                rt.platform
                    .restore_rtc(b, now, crate::time::wallclock_secs() as i64);
            }
            if let Some(b) = &p.pm {
                rt.platform.restore_pmtimer(b, now);
            }
        }
        None => {
            let prev = hvm.pending_platform.take();
            let prev = prev.as_deref();
            hvm.pending_platform = Some(Box::new(SavedPlatform {
                pic: p.pic.or(prev.and_then(|x| x.pic)),
                pit: p.pit.or(prev.and_then(|x| x.pit)),
                rtc: p.rtc.or(prev.and_then(|x| x.rtc)),
                pm: p.pm.or(prev.and_then(|x| x.pm)),
                ioapic: p.ioapic.or(prev.and_then(|x| x.ioapic)),
            }));
        }
    }
}

fn hw_lapic(h: &LapicHidden) -> HvmHwLapic {
    HvmHwLapic {
        apic_base_msr: h.apic_base_msr,
        disabled: h.disabled,
        timer_divisor: h.timer_divisor,
        tdt_msr: h.tdt_msr,
    }
}

/// A record that comes once per domain (instance 0) of exactly `N` bytes,
/// into `slot`; a second one, another instance or another length is
/// `-EINVAL`.
fn once<const N: usize>(
    slot: &mut Option<[u8; N]>,
    instance: usize,
    data: &[u8],
) -> Result<(), Errno> {
    let b: [u8; N] = data.try_into().map_err(|_| Errno::EINVAL)?;
    if instance != 0 || slot.replace(b).is_some() {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// A LAPIC's saved state (records `LAPIC` and `LAPIC_REGS`).
pub struct SavedLapic {
    /// Its vCPU.
    pub vcpu: usize,
    /// `hvm_hw_lapic`.
    pub hidden: LapicHidden,
    /// `hvm_hw_lapic_regs`.
    pub regs: Box<[u8; LAPIC_REGS_LEN]>,
}

/// The guest TSC of vCPU `idx` now.
fn guest_tsc(d: &Domain, idx: usize) -> u64 {
    let off = d
        .vcpus
        .get(idx)
        .and_then(|v| v.hvm.as_ref())
        .map_or(0, |s| s.svm.tsc_offset());
    crate::arch::x86_64::instr::rdtsc().wrapping_add(off)
}

/// Loads saved LAPICs into the domain's devices, or keeps them for when
/// the devices are made (the first unpause).
fn apply_lapics(d: &mut Domain, lapics: Vec<SavedLapic>) {
    if lapics.is_empty() {
        return;
    }
    let now = crate::time::now_ns();
    let tscs: Vec<u64> = (0..d.vcpus.len()).map(|i| guest_tsc(d, i)).collect();
    let Some(hvm) = d.hvm.as_mut() else { return };
    match hvm.rt.as_mut() {
        Some(rt) => {
            for l in &lapics {
                if let Some(a) = rt.platform.lapic_mut(l.vcpu) {
                    // Checked against the same APIC ID by `set_context`.
                    let _ = a.restore(&l.hidden, &l.regs, now, tscs[l.vcpu]);
                }
            }
            // Its timer may be due sooner now: a vCPU asleep in HLT looks
            // again (the next round sets its wake-up from the devices).
            for l in &lapics {
                if let Some(s) = d.vcpus.get_mut(l.vcpu).and_then(|v| v.hvm.as_mut()) {
                    if s.svm.wake_at.is_none_or(|w| w > now) {
                        s.svm.wake_at = Some(now);
                    }
                }
            }
        }
        None => {
            hvm.pending_lapics
                .retain(|p| !lapics.iter().any(|l| l.vcpu == p.vcpu));
            hvm.pending_lapics.extend(lapics);
        }
    }
}

/// `XEN_DOMCTL_gethvmcontext`: the header, a CPU record per vCPU that has
/// a context, the end record, into `out`; the bytes needed (with an empty
/// `out`, just the size).
pub fn get_context(d: &Domain, out: &mut [u8]) -> Result<usize, Errno> {
    if d.hvm.is_none() {
        return Err(Errno::EINVAL);
    }
    let cpus: Vec<(u16, HvmHwCpu)> = d
        .vcpus
        .iter()
        .filter_map(|v| {
            let s = v.hvm.as_ref()?;
            let mut c = s.svm.context();
            if v.fpu_valid {
                c.fpu_regs.copy_from_slice(&v.fpu.0);
            }
            Some((v.id as u16, c))
        })
        .collect();
    // The LAPICs: the devices' own, or what waits to be loaded into them.
    let now = crate::time::now_ns();
    let lapics: Vec<(u16, HvmHwLapic, Box<[u8; LAPIC_REGS_LEN]>)> = match d.hvm.as_ref() {
        Some(h) => match h.rt.as_ref() {
            Some(rt) => (0..d.vcpus.len())
                .filter_map(|i| {
                    let (hd, regs) = rt.platform.lapic(i)?.save(now);
                    Some((i as u16, hw_lapic(&hd), Box::new(regs)))
                })
                .collect(),
            None => h
                .pending_lapics
                .iter()
                .map(|l| (l.vcpu as u16, hw_lapic(&l.hidden), l.regs.clone()))
                .collect(),
        },
        None => Vec::new(),
    };
    // The PIC pair, the IOAPIC, the PIT and the RTC, once the devices
    // exist.
    let host = crate::time::wallclock_secs() as i64;
    let platform = d.hvm.as_ref().and_then(|h| h.rt.as_ref()).map(|rt| {
        let p = rt.platform.pic();
        (
            p.master().save(),
            p.slave().save(),
            rt.platform.ioapic().save(),
            rt.platform.pit().save(now),
            rt.platform.rtc().save(now, host),
            rt.platform.acpi().save(now),
        )
    });
    // Each vCPU's MTRRs and PAT.
    let mtrrs: Vec<(u16, [u8; MTRR_SAVE_LEN])> = d
        .vcpus
        .iter()
        .filter_map(|v| {
            let s = v.hvm.as_ref()?;
            Some((v.id as u16, s.emu.msrs.save(s.svm.pat())))
        })
        .collect();
    let desc = core::mem::size_of::<hvm_save::HvmSaveDescriptor>();
    let need = desc * (2 + cpus.len() + 2 * lapics.len())
        + core::mem::size_of::<HvmSaveHeader>()
        + cpus.len() * hvm_save::HVM_HW_CPU_SIZE
        + lapics.len() * (core::mem::size_of::<HvmHwLapic>() + LAPIC_REGS_LEN)
        + platform.map_or(0, |_| {
            6 * desc
                + 2 * PIC_SAVE_LEN
                + IOAPIC_SAVE_LEN
                + PIT_SAVE_LEN
                + RTC_SAVE_LEN
                + PMTIMER_SAVE_LEN
        })
        + mtrrs.len() * (desc + MTRR_SAVE_LEN);
    if out.is_empty() {
        return Ok(need);
    }
    if out.len() < need {
        return Err(Errno::ENOSPC);
    }
    let r = crate::arch::x86_64::instr::cpuid(1, 0);
    let h = HvmSaveHeader {
        magic: HVM_FILE_MAGIC,
        version: hvm_save::HVM_FILE_VERSION,
        changeset: 0,
        cpuid: r.eax,
        gtsc_khz: (crate::time::tsc_hz() / 1000) as u32,
    };
    let mut pos =
        hvm_save::put_record(out, 0, code::HEADER, 0, h.as_bytes()).ok_or(Errno::ENOSPC)?;
    for (id, c) in &cpus {
        pos += hvm_save::put_record(out, pos, code::CPU, *id, c.as_bytes()).ok_or(Errno::ENOSPC)?;
    }
    for (id, h, regs) in &lapics {
        pos +=
            hvm_save::put_record(out, pos, code::LAPIC, *id, h.as_bytes()).ok_or(Errno::ENOSPC)?;
        pos += hvm_save::put_record(out, pos, code::LAPIC_REGS, *id, &regs[..])
            .ok_or(Errno::ENOSPC)?;
    }
    for (id, b) in &mtrrs {
        pos += hvm_save::put_record(out, pos, code::MTRR, *id, b).ok_or(Errno::ENOSPC)?;
    }
    if let Some((m, s, io, pit, rtc, pm)) = &platform {
        for (i, chip) in [m, s].into_iter().enumerate() {
            pos +=
                hvm_save::put_record(out, pos, code::PIC, i as u16, chip).ok_or(Errno::ENOSPC)?;
        }
        pos += hvm_save::put_record(out, pos, code::IOAPIC, 0, &io[..]).ok_or(Errno::ENOSPC)?;
        pos += hvm_save::put_record(out, pos, code::PIT, 0, pit).ok_or(Errno::ENOSPC)?;
        pos += hvm_save::put_record(out, pos, code::RTC, 0, rtc).ok_or(Errno::ENOSPC)?;
        pos += hvm_save::put_record(out, pos, code::PMTIMER, 0, pm).ok_or(Errno::ENOSPC)?;
    }
    pos += hvm_save::put_record(out, pos, code::END, 0, &[]).ok_or(Errno::ENOSPC)?;
    Ok(pos)
}

/// `XEN_DOMCTL_unpausedomain` of an HVM domain: its runtime and, the first
/// time, vCPU 0 up (the others wait for INIT/SIPI); the ioreq ports.
/// `-EINVAL` if vCPU 0 has no context yet.
pub fn prepare_unpause(d: &mut Domain) -> Result<(), Errno> {
    if d.vcpus.first().is_none_or(|v| v.hvm.is_none()) {
        return Err(Errno::EINVAL);
    }
    let first = d.hvm.as_ref().is_some_and(|h| h.rt.is_none());
    if first {
        let rt = make_runtime(d);
        let pending = d.hvm.as_mut().map(|h| {
            h.rt = Some(Box::new(rt));
            (
                core::mem::take(&mut h.pending_lapics),
                h.pending_platform.take(),
            )
        });
        if let Some((lapics, platform)) = pending {
            apply_lapics(d, lapics);
            if let Some(p) = platform {
                apply_platform(d, *p);
            }
        }
        let ports = setup_ioreq_ports(d);
        crate::log_dirty::flush_noted(d);
        ports?;
        crate::sched::vcpu_up(d, 0);
    }
    Ok(())
}

// ---- The ioreq page ---------------------------------------------------------------

/// Bytes per slot.
const SLOT: u64 = core::mem::size_of::<Ioreq>() as u64;
/// Offset of the state byte in a slot.
const STATE_OFF: u64 = core::mem::offset_of!(Ioreq, bits) as u64;

fn ioreq_gfn(d: &Domain) -> Option<u64> {
    let g = d.hvm.as_ref()?.params[HvmParam::IoreqPfn as usize];
    (g != 0).then_some(g)
}

/// An unbound, Xen-attached port per vCPU for the device model
/// (`HVM_PARAM_DM_DOMAIN`), published in its slot's `vp_eport`.
fn setup_ioreq_ports(d: &mut Domain) -> Result<(), Errno> {
    let Some(gfn) = ioreq_gfn(d) else {
        return Ok(());
    };
    let domid = d.domid;
    let dm = d
        .hvm
        .as_ref()
        .map_or(0, |h| h.params[HvmParam::DmDomain as usize]) as DomId;
    let mut ports = Vec::with_capacity(d.vcpus.len());
    for _ in 0..d.vcpus.len() {
        let port = d.evtchn.alloc_unbound(domid, dm)?;
        // Xen-attached, as Xen's ioreq server ports: a guest that closed,
        // reset or moved it would leave its vCPU waiting for an answer
        // that can never be signalled (found by bare-fuzz).
        d.evtchn.set_xen_attached(port)?;
        ports.push(port);
    }
    let Some(hvm) = d.hvm.as_ref() else {
        return Err(Errno::EINVAL);
    };
    let ram = GuestRam { p2m: &hvm.p2m };
    for (i, p) in ports.iter().enumerate() {
        let slot = Ioreq {
            vp_eport: *p,
            ..Ioreq::new_zeroed()
        };
        ram.write((gfn << 12) + i as u64 * SLOT, slot.as_bytes())
            .ok_or(Errno::EINVAL)?;
    }
    if let Some(rt) = d.hvm.as_mut().and_then(|h| h.rt.as_mut()) {
        rt.ioreq_ports = ports;
    }
    Ok(())
}

/// Publishes `req` in vCPU `id`'s slot (state READY last) and notifies
/// the device model; false if there is no ioreq page.
fn publish(d: &mut Domain, id: usize, mut req: Ioreq, out: &mut Option<Event>) -> bool {
    let Some(gfn) = ioreq_gfn(d) else {
        return false;
    };
    let Some(port) = d
        .hvm
        .as_ref()
        .and_then(|h| h.rt.as_ref())
        .and_then(|rt| rt.ioreq_ports.get(id).copied())
    else {
        return false;
    };
    let Some(hvm) = d.hvm.as_ref() else {
        return false;
    };
    let ram = GuestRam { p2m: &hvm.p2m };
    let at = (gfn << 12) + id as u64 * SLOT;
    req.vp_eport = port;
    let ready = (req.bits & !0x0f) | IoreqState::IoreqReady.raw();
    req.bits &= !0x0f;
    if ram.write(at, req.as_bytes()).is_none() || ram.write(at + STATE_OFF, &[ready]).is_none() {
        return false;
    }
    // Our own stale notification must not look like the answer.
    let (_, words) = crate::event::table_and_words(d);
    xen_core::evtchn::two_level::clear_pending(&words, port);
    *out = d.evtchn.send(port).ok().flatten();
    true
}

/// The device model's answer in vCPU `id`'s slot, if it is there (the
/// slot goes back to NONE).
fn take_answer(d: &mut Domain, id: usize) -> Option<u64> {
    let gfn = ioreq_gfn(d)?;
    let hvm = d.hvm.as_ref()?;
    let ram = GuestRam { p2m: &hvm.p2m };
    let at = (gfn << 12) + id as u64 * SLOT;
    let mut st = [0u8; 1];
    ram.read(at + STATE_OFF, &mut st)?;
    if st[0] & 0x0f != IoreqState::IorespReady.raw() {
        return None;
    }
    let mut data = [0u8; 8];
    ram.read(at + core::mem::offset_of!(Ioreq, data) as u64, &mut data)?;
    ram.write(at + STATE_OFF, &[st[0] & !0x0f])?;
    Some(u64::from_le_bytes(data))
}

// ---- Running ----------------------------------------------------------------------

/// What the scheduler's HVM loop does after a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Run the vCPU again (after letting host interrupts in).
    Again,
    /// The vCPU cannot run now (blocked, down, waiting, its domain gone):
    /// reschedule.
    Reschedule,
}

/// One round of HVM vCPU `id` of `domid`, current on this CPU: interrupts
/// in, VMRUN, the exit handled. Interrupts off; takes `DOMAINS` before and
/// after the VMRUN, not across it.
pub fn run_once(domid: DomId, id: u32) -> After {
    let mut out = None;
    let (svm, after) = {
        let mut doms = DOMAINS.lock();
        let r = prepare(&mut doms, domid, id, &mut out);
        deliver(&mut doms, out.take());
        r
    };
    let Some(svm) = svm else {
        return after;
    };
    // SAFETY: `svm` points into the boxed state of a vCPU that is current
    // on this CPU: the box is freed only when its domain is destroyed,
    // which waits until no CPU has one of its vCPUs current, and this CPU
    // keeps it current until the round is over; no other CPU runs it
    // (one CPU per vCPU), and DOMAINS is not held, but nothing else
    // touches a running vCPU's VMCB or registers (other CPUs only flag it
    // and kick this CPU).
    let ran = unsafe { (*svm).svm.run() };
    let mut doms = DOMAINS.lock();
    let after = handle_exit(&mut doms, domid, id, ran, &mut out);
    deliver(&mut doms, out);
    after
}

/// Raises the device model's side of an ioreq notification.
fn deliver(doms: &mut [Domain], ev: Option<Event>) {
    if let Some(ev) = ev {
        if let Some(p) = find(doms, ev.dom) {
            crate::event::raise(p, ev.port);
        }
    }
}

/// Before a VMRUN: the device model's answer, time, interrupts. The vCPU
/// state to run, or why not.
fn prepare(
    doms: &mut [Domain],
    domid: DomId,
    id: u32,
    out: &mut Option<Event>,
) -> (Option<*mut HvmVcpuState>, After) {
    let now = crate::time::now_ns();
    let Some(d) = find(doms, domid) else {
        return (None, After::Reschedule);
    };
    if d.shutdown.is_some() || d.dying {
        return (None, After::Reschedule);
    }
    let idx = id as usize;
    // An ioreq outstanding: answered yet?
    if d.vcpus[idx]
        .hvm
        .as_ref()
        .is_some_and(|s| s.emu.waiting_for_ioreq())
    {
        match take_answer(d, idx) {
            Some(data) => {
                let outcome = with_guest(d, idx, now, |g, emu, plat, _pol, acts| {
                    hx::complete_ioreq(data, g, emu, plat, now, acts)
                });
                let after = finish(d, idx, outcome, out);
                // The answer's slot and any guest memory the completion
                // wrote are dirty.
                crate::log_dirty::flush_noted(d);
                if after == After::Reschedule {
                    return (None, After::Reschedule);
                }
            }
            None => {
                wait_for_answer(d, idx);
                return (None, After::Reschedule);
            }
        }
    }
    let mut acts = Actions::new();
    // Event channels: an upcall pending and unmasked raises the callback
    // vector (HVM_PARAM_CALLBACK_IRQ of type vector), as Xen's
    // hvm_assert_evtchn_irq.
    let vector = d.vcpus[idx]
        .hvm
        .as_ref()
        .and_then(|s| s.upcall_vector)
        .or_else(|| upcall_vector(d));
    let upcall = vector.filter(|_| crate::event::local_events_need_delivery(d, id));
    let p = {
        let Some((hvm, v)) = split(d, idx) else {
            return (None, After::Reschedule);
        };
        let Some(rt) = hvm.rt.as_mut() else {
            return (None, After::Reschedule);
        };
        if let Some(vec) = upcall {
            rt.platform.raise_lapic_vector(idx, vec, &mut acts);
        }
        let next = rt.platform.advance(now, &mut acts);
        let s = &mut v.svm;
        s.wake_at = next;
        if !s.event_pending() {
            let can_intr = s.can_take_interrupt();
            // V_IRQ stays set only while a window is wanted: left set
            // without the VINTR intercept, the CPU would deliver the
            // virtual interrupt itself.
            match hx::pending_injection(&mut rt.platform, idx, true, can_intr) {
                Injection::Nmi => {
                    s.want_interrupt_window(false);
                    s.inject_nmi();
                }
                Injection::Vector(vec) => {
                    s.want_interrupt_window(false);
                    s.inject_interrupt(vec);
                }
                Injection::InterruptWindow => s.want_interrupt_window(true),
                Injection::NmiWindow | Injection::Nothing => s.want_interrupt_window(false),
            }
        }
        let p: *mut HvmVcpuState = &mut **v;
        p
    };
    carry_out(d, acts);
    if d.shutdown.is_some() || d.vcpus[idx].state != RunState::Running(this_cpu()) {
        return (None, After::Reschedule);
    }
    (Some(p), After::Again)
}

/// The event-channel callback vector (`HVM_PARAM_CALLBACK_IRQ` with
/// type `HVM_PARAM_CALLBACK_TYPE_VECTOR`), if the guest set one.
fn upcall_vector(d: &Domain) -> Option<u8> {
    use hypercall_abi::hvm::{
        HVM_PARAM_CALLBACK_IRQ_TYPE_MASK, HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT,
        HVM_PARAM_CALLBACK_TYPE_VECTOR,
    };
    let v = d.hvm.as_ref()?.params[HvmParam::CallbackIrq as usize];
    let ty = (v & HVM_PARAM_CALLBACK_IRQ_TYPE_MASK) >> HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT;
    (ty == HVM_PARAM_CALLBACK_TYPE_VECTOR && v & 0xff >= 16).then_some(v as u8)
}

fn this_cpu() -> u32 {
    crate::arch::x86_64::percpu::this_cpu().cpu
}

/// After a VMRUN: the exit.
fn handle_exit(
    doms: &mut [Domain],
    domid: DomId,
    id: u32,
    ran: Result<(), ()>,
    out: &mut Option<Event>,
) -> After {
    let now = crate::time::now_ns();
    let Some(d) = find(doms, domid) else {
        return After::Reschedule;
    };
    if ran.is_err() {
        crate::println!("(XEN) d{domid}v{id}: cannot run HVM vCPUs on this CPU");
        crate::domain::domain_shutdown(d, ShutdownReason::Crash);
        return After::Reschedule;
    }
    let idx = id as usize;
    let Some(exit) = d.vcpus[idx].hvm.as_ref().map(|s| s.svm.exit()) else {
        return After::Reschedule;
    };
    let Some(exit) = exit else {
        // An SVM instruction, MONITOR/MWAIT or XSETBV: #UD.
        if let Some(s) = d.vcpus[idx].hvm.as_mut() {
            s.svm.inject_ud();
        }
        return After::Again;
    };
    if matches!(exit, hx::Exit::Intr | hx::Exit::Nmi) {
        // The host's own interrupt: taken when the loop lets it in.
        return After::Again;
    }
    if let hx::Exit::Npf {
        gpa, write: true, ..
    } = exit
    {
        if crate::log_dirty::write_fault(d, gpa >> 12) {
            // A log-dirty frame, now dirty and writable: write again.
            return After::Again;
        }
    }
    if let hx::Exit::Npf {
        gpa, write, fetch, ..
    } = exit
    {
        if npf_is_stale(d, gpa >> 12, write, fetch) {
            // The p2m changed between the fault and now (another CPU
            // ended log-dirty mode, or another vCPU's fault on the same
            // frame made it writable first): the access is allowed now,
            // so the guest just tries again, as Xen's
            // `hvm_hap_nested_page_fault` does.
            return After::Again;
        }
    }
    let outcome = with_guest(d, idx, now, |g, emu, plat, pol, acts| {
        hx::handle(exit, g, emu, plat, pol, now, acts)
    });
    // Guest memory the emulation wrote is dirty.
    crate::log_dirty::flush_noted(d);
    if let Some(ExitOutcome::Hypercall { insn_len }) = outcome {
        return hypercall(doms, domid, idx, insn_len);
    }
    let Some(d) = find(doms, domid) else {
        return After::Reschedule;
    };
    let after = finish(d, idx, outcome, out);
    // An ioreq published into the domain's ioreq page is a write to it.
    crate::log_dirty::flush_noted(d);
    after
}

/// Whether a nested page fault at `gfn` is stale: the p2m now maps RAM
/// there with the rights the access needed.
fn npf_is_stale(d: &mut Domain, gfn: u64, write: bool, fetch: bool) -> bool {
    use xen_core::hvm::p2m::{P2mPerms, P2mType};
    let Some(hvm) = d.hvm.as_mut() else {
        return false;
    };
    let entry = crate::hvm_glue::with_p2m(&mut hvm.p2m, |p2m, mem| p2m.lookup(mem, gfn));
    entry.is_some_and(|e| {
        let need = if write {
            P2mPerms::W
        } else if fetch {
            P2mPerms::X
        } else {
            P2mPerms::R
        };
        matches!(e.kind, P2mType::Ram | P2mType::RamLogDirty) && e.perms.contains(need)
    })
}

/// A hypercall from vCPU `idx` of `domid` (VMMCALL): the guest's
/// registers into a frame, the call made through its own page tables,
/// the result (or a continuation's registers) back.
fn hypercall(doms: &mut [Domain], domid: DomId, idx: usize, insn_len: u8) -> After {
    use crate::arch::x86_64::entry::TrapFrame;
    use crate::hypercall::Outcome;
    let Some(me) = doms.iter().position(|d| d.domid == domid) else {
        return After::Reschedule;
    };
    let prepared = {
        let d = &mut doms[me];
        let ncr3 = d.hvm.as_ref().map(|h| h.p2m.ncr3());
        match (d.vcpus.get(idx).and_then(|v| v.hvm.as_ref()), ncr3) {
            (Some(s), Some(ncr3)) => {
                let long = s.svm.long_mode();
                let g = &s.svm.gprs;
                let w = |v: u64| if long { v } else { v & 0xffff_ffff };
                let mut f = TrapFrame::default();
                if long {
                    (f.rdi, f.rsi, f.rdx, f.r10, f.r8) = (g.rdi, g.rsi, g.rdx, g.r[2], g.r[0]);
                } else {
                    (f.rdi, f.rsi, f.rdx, f.r10, f.r8) =
                        (w(g.rbx), w(g.rcx), w(g.rdx), w(g.rsi), w(g.rdi));
                }
                f.rax = w(s.svm.rax());
                Some((long, s.svm.cpl(), s.svm.paging_regs(), ncr3, f))
            }
            _ => None,
        }
    };
    let Some((long, cpl, regs, ncr3, mut frame)) = prepared else {
        return After::Reschedule;
    };
    let out = if cpl != 0 {
        // Xen: hypercalls from guest user mode fail.
        Outcome::Ret(Errno::EPERM.to_ret())
    } else {
        crate::domain::set_hvm_space(Some((regs, ncr3)));
        let o = crate::hypercall::dispatch_hvm(doms, me, idx, &mut frame);
        crate::domain::set_hvm_space(None);
        o
    };
    let d = &mut doms[me];
    // What the call wrote into the guest's memory is dirty.
    crate::log_dirty::flush_noted(d);
    let Some(s) = d.vcpus.get_mut(idx).and_then(|v| v.hvm.as_mut()) else {
        return After::Reschedule;
    };
    let w = |v: u64| if long { v } else { v & 0xffff_ffff };
    match out {
        Outcome::Ret(v) => {
            s.svm.set_rax(w(v as u64));
            let rip = s.svm.rip().wrapping_add(u64::from(insn_len));
            s.svm.set_rip(w(rip));
        }
        Outcome::NoRet => {
            // A continuation: the call again, with its arguments moved on.
            s.svm.set_rax(frame.rax);
            let g = &mut s.svm.gprs;
            if long {
                (g.rdi, g.rsi, g.rdx, g.r[2], g.r[0]) =
                    (frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8);
            } else {
                (g.rbx, g.rcx, g.rdx, g.rsi, g.rdi) =
                    (frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8);
            }
        }
        Outcome::Crash(why) => {
            crate::println!("(XEN) domain crash: d{domid}v{idx}: {why}");
            crate::domain::domain_shutdown(d, ShutdownReason::Crash);
            return After::Reschedule;
        }
    }
    if d.shutdown.is_some() || d.vcpus[idx].state != RunState::Running(this_cpu()) {
        return After::Reschedule;
    }
    After::Again
}

/// The domain's HVM state and vCPU `idx`'s, borrowed together.
fn split(
    d: &mut Domain,
    idx: usize,
) -> Option<(&mut crate::hvm_glue::Hvm, &mut Box<HvmVcpuState>)> {
    let hvm = d.hvm.as_mut()?;
    let v = d.vcpus.get_mut(idx)?.hvm.as_mut()?;
    Some((hvm, v))
}

/// Runs `f` with the vendor-neutral view of vCPU `idx`, then carries out
/// the actions it produced. `None` if the vCPU or runtime is gone.
fn with_guest(
    d: &mut Domain,
    idx: usize,
    _now: u64,
    f: impl FnOnce(
        &mut Guest<'_>,
        &mut hx::HvmVcpu,
        &mut Platform,
        &Policies<'_>,
        &mut Actions,
    ) -> ExitOutcome,
) -> Option<ExitOutcome> {
    let mut acts = Actions::new();
    let outcome = {
        let (hvm, v) = split(d, idx)?;
        let crate::hvm_glue::Hvm { p2m, rt, .. } = hvm;
        let rt = rt.as_mut()?;
        let Runtime {
            platform,
            cpuid,
            msr,
            ..
        } = &mut **rt;
        let pol = Policies { cpuid, msr };
        let HvmVcpuState { svm, emu, .. } = &mut **v;
        let mut g = Guest {
            v: svm,
            id: idx,
            ram: GuestRam { p2m },
        };
        f(&mut g, emu, platform, &pol, &mut acts)
    };
    carry_out(d, acts);
    Some(outcome)
}

/// Acts on an exit's outcome.
fn finish(
    d: &mut Domain,
    idx: usize,
    outcome: Option<ExitOutcome>,
    out: &mut Option<Event>,
) -> After {
    let Some(outcome) = outcome else {
        return After::Reschedule;
    };
    let domid = d.domid;
    match outcome {
        ExitOutcome::Resume => After::Again,
        ExitOutcome::Block => {
            // Nothing pending (the handler checked): sleep until a Kick or
            // the platform's next deadline (vtimer wakes it).
            let pending = d
                .hvm
                .as_ref()
                .and_then(|h| h.rt.as_ref())
                .is_some_and(|rt| rt.platform.pending_interrupt(idx).is_some())
                || ((upcall_vector(d).is_some()
                    || d.vcpus[idx]
                        .hvm
                        .as_ref()
                        .is_some_and(|s| s.upcall_vector.is_some()))
                    && crate::event::local_events_need_delivery(d, idx as u32));
            if pending {
                return After::Again;
            }
            if let Some(v) = d.vcpus.get_mut(idx) {
                crate::sched::block_current(v);
            }
            After::Reschedule
        }
        ExitOutcome::Down => {
            crate::sched::vcpu_down(d, idx as u32);
            After::Reschedule
        }
        ExitOutcome::WaitIoreq(req) => {
            if publish(d, idx, req, out) {
                wait_for_answer(d, idx);
                return After::Reschedule;
            }
            // No device model: reads see all ones, writes vanish.
            let o = with_guest(d, idx, 0, |g, emu, plat, _pol, acts| {
                hx::complete_ioreq(u64::MAX, g, emu, plat, crate::time::now_ns(), acts)
            });
            finish(d, idx, o, out)
        }
        // Made by `hypercall` before `finish` is reached.
        ExitOutcome::Hypercall { .. } => After::Again,
        ExitOutcome::PowerOff => {
            crate::domain::domain_shutdown(d, ShutdownReason::Poweroff);
            After::Reschedule
        }
        ExitOutcome::Reset => {
            crate::domain::domain_shutdown(d, ShutdownReason::Reboot);
            After::Reschedule
        }
        ExitOutcome::Crash(why) => {
            let rip = d.vcpus[idx].hvm.as_ref().map_or(0, |s| s.svm.rip());
            let code = d.vcpus[idx].hvm.as_ref().map_or(0, |s| s.svm.exit_code());
            crate::println!(
                "(XEN) domain crash: d{domid}v{idx}: {why} (exit {code:#x}, rip {rip:#x})"
            );
            crate::domain::domain_shutdown(d, ShutdownReason::Crash);
            After::Reschedule
        }
    }
}

/// Blocks vCPU `idx` until its ioreq port is notified.
fn wait_for_answer(d: &mut Domain, idx: usize) {
    let port = d
        .hvm
        .as_ref()
        .and_then(|h| h.rt.as_ref())
        .and_then(|rt| rt.ioreq_ports.get(idx).copied());
    let Some(v) = d.vcpus.get_mut(idx) else {
        return;
    };
    v.poll_ports.clear();
    if let Some(p) = port {
        let _ = v.poll_ports.push(p);
    }
    crate::sched::block_current(v);
    // The answer may have come before the block: check once more.
    if let Some(p) = port {
        let (_, words) = crate::event::table_and_words(d);
        if xen_core::evtchn::two_level::is_pending(&words, p) {
            crate::sched::wake(d, idx as u32);
        }
    }
}

/// Carries out the platform's actions for domain `d`.
fn carry_out(d: &mut Domain, acts: Actions) {
    for a in acts.iter().copied() {
        match a {
            Action::Kick(i) => kick(d, i),
            Action::Init(i) => {
                if let Some(s) = d.vcpus.get_mut(i).and_then(|v| v.hvm.as_mut()) {
                    s.svm.init_state();
                    s.emu = hx::HvmVcpu::default();
                }
                if d.vcpus.get(i).is_some_and(|v| v.state != RunState::Down) {
                    crate::sched::vcpu_down(d, i as u32);
                }
            }
            Action::Sipi { vcpu, vector } => {
                let ncr3 = d.hvm.as_ref().map(|h| h.p2m.ncr3());
                let Some(v) = d.vcpus.get_mut(vcpu) else {
                    continue;
                };
                match (v.hvm.as_mut(), ncr3) {
                    (Some(s), _) => s.svm.sipi(vector),
                    (None, Some(ncr3)) => {
                        let Some(mut svm) = SvmVcpu::new(&HvmHwCpu::default(), ncr3) else {
                            continue;
                        };
                        svm.sipi(vector);
                        v.hvm = Some(Box::new(HvmVcpuState {
                            svm,
                            emu: hx::HvmVcpu::default(),
                            upcall_vector: None,
                        }));
                    }
                    _ => continue,
                }
                v.fpu_valid = false;
                crate::sched::vcpu_up(d, vcpu as u32);
            }
            Action::PowerOff => crate::domain::domain_shutdown(d, ShutdownReason::Poweroff),
            Action::Reset => crate::domain::domain_shutdown(d, ShutdownReason::Reboot),
            Action::DebugOut(b) => {
                // A line at a time (Xen's hvm_print_line buffers one too),
                // so that other CPUs' output does not cut into it.
                let Some(h) = d.hvm.as_mut() else { continue };
                h.debug_line.push(b);
                if b == b'\n' || h.debug_line.len() >= DEBUG_LINE_MAX {
                    let line = core::mem::take(&mut h.debug_line);
                    crate::console::guest_write(
                        d.domid,
                        false,
                        &line,
                        &mut d.console_at_line_start,
                    );
                }
            }
        }
    }
}

/// Bytes of a debug-port line before it is printed without its newline.
const DEBUG_LINE_MAX: usize = 120;

/// A vCPU has an interrupt: wake it if it sleeps in HLT, make it exit if
/// it runs elsewhere.
fn kick(d: &mut Domain, i: usize) {
    let Some(v) = d.vcpus.get(i) else {
        return;
    };
    let waiting_io = v.hvm.as_ref().is_some_and(|s| s.emu.waiting_for_ioreq());
    match v.state {
        RunState::Blocked if !waiting_io => crate::sched::wake(d, i as u32),
        RunState::Running(cpu) => crate::sched::kick(cpu as usize),
        _ => {}
    }
}

/// Wakes HVM vCPUs whose platform timer is due (CPU 0's tick).
pub fn wake_expired(d: &mut Domain, now: u64) {
    for i in 0..d.vcpus.len() {
        let due = {
            let v = &d.vcpus[i];
            v.state == RunState::Blocked
                && v.hvm.as_ref().is_some_and(|s| {
                    !s.emu.waiting_for_ioreq() && s.svm.wake_at.is_some_and(|t| t <= now)
                })
        };
        if due {
            crate::sched::wake(d, i as u32);
        }
    }
}

/// `HVMOP_set_param` from the toolstack on domain `d`.
pub fn set_param(d: &mut Domain, index: u32, value: u64) -> Result<(), Errno> {
    let hvm = d.hvm.as_mut().ok_or(Errno::EINVAL)?;
    let p = HvmParam::from_raw(u64::from(index)).ok_or(Errno::EINVAL)?;
    match p {
        // Fixed once the domain ran.
        HvmParam::IoreqPfn | HvmParam::DmDomain if hvm.rt.is_some() => return Err(Errno::EBUSY),
        HvmParam::BufioreqPfn | HvmParam::BufioreqEvtchn => return Err(Errno::EOPNOTSUPP),
        _ => {}
    }
    let slot = hvm.params.get_mut(index as usize).ok_or(Errno::EINVAL)?;
    *slot = value;
    Ok(())
}

/// `HVMOP_get_param`.
pub fn get_param(d: &Domain, index: u32) -> Result<u64, Errno> {
    let hvm = d.hvm.as_ref().ok_or(Errno::EINVAL)?;
    hvm.params.get(index as usize).copied().ok_or(Errno::EINVAL)
}

/// `HVMOP_set_evtchn_upcall_vector`: vCPU `vcpu`'s own upcall vector
/// (16..=255).
pub fn set_upcall_vector(d: &mut Domain, vcpu: u32, vector: u8) -> Result<(), Errno> {
    if vector < 16 {
        return Err(Errno::EINVAL);
    }
    let s = d
        .vcpus
        .get_mut(vcpu as usize)
        .ok_or(Errno::ENOENT)?
        .hvm
        .as_mut()
        .ok_or(Errno::EINVAL)?;
    s.upcall_vector = Some(vector);
    Ok(())
}

/// `XEN_DMOP_set_isa_irq_level`: the device model drives ISA IRQ `irq`
/// of `d` (PIC and IOAPIC, as the platform routes it); a vCPU that gets
/// the interrupt is woken.
pub fn set_isa_irq_level(d: &mut Domain, irq: u8, level: bool) {
    let mut acts = Actions::new();
    let Some(rt) = d.hvm.as_mut().and_then(|h| h.rt.as_mut()) else {
        return;
    };
    rt.platform.set_isa_irq_level(irq, level, &mut acts);
    carry_out(d, acts);
}
