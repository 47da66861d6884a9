//! `__HYPERVISOR_sysctl`: the toolstack's view of the whole machine
//! (Dom0 only): physinfo, the list of domains, the hypervisor's console
//! history (`xl dmesg`) and the scheduler — Xen 4.17's `do_sysctl`.

use super::Call;
use crate::domain::{copy_to_guest, read_guest, write_guest};
use hypercall_abi::domctl::SchedulerId;
use hypercall_abi::errno::Errno;
use hypercall_abi::sysctl::*;
use zerocopy::{FromZeros, IntoBytes};

/// `HYPERVISOR_sysctl(struct xen_sysctl *)`.
#[inline(never)]
pub fn sysctl(c: &mut Call) -> Result<i64, Errno> {
    let arg = c.args()[0];
    let mut op: XenSysctl = read_guest(c.cr3, arg)?;
    if op.interface_version != XEN_SYSCTL_INTERFACE_VERSION {
        return Err(Errno::EACCES);
    }
    if !c.dom.is_privileged {
        return Err(Errno::EPERM);
    }
    let cmd = SysctlCmd::from_raw(u64::from(op.cmd)).ok_or(Errno::ENOSYS)?;
    match cmd {
        SysctlCmd::Readconsole => {
            let mut r: XenSysctlReadconsole = op.payload();
            let mut index = r.index;
            let bytes = crate::console::read_history(
                &mut index,
                r.incremental != 0,
                r.clear != 0,
                r.count as usize,
            );
            copy_to_guest(c.cr3, r.buffer, &bytes)?;
            r.count = bytes.len() as u32;
            r.index = index;
            op.set_payload(&r);
        }
        SysctlCmd::DebugKeys => {
            // Xen's `handle_keypress` for each key; here they are queued
            // and handled at the next event delivery (the keyhandlers
            // need every domain, which this call holds split). At most a
            // buffer's worth: the rest are dropped, as typed ones would be.
            let k: XenSysctlDebugKeys = op.payload();
            let n = (k.nr_keys as usize).min(crate::console::KEYS);
            let mut keys = [0u8; crate::console::KEYS];
            if n > 0 {
                crate::domain::copy_from_guest(c.cr3, k.keys, &mut keys[..n])?;
            }
            crate::console::queue_keys(&keys[..n]);
        }
        SysctlCmd::Physinfo => {
            let mut p = XenSysctlPhysinfo::new_zeroed();
            let cpus = crate::arch::x86_64::smp::cpus_online();
            p.threads_per_core = 1;
            p.cores_per_socket = cpus;
            p.nr_cpus = cpus;
            p.max_cpu_id = cpus.saturating_sub(1);
            p.nr_nodes = 1;
            p.max_node_id = 0;
            p.cpu_khz = (crate::time::tsc_hz() / 1000) as u32;
            // HVM guests with nested paging once SVM passed its boot
            // self-test (Xen's `hvm_enabled` and `hvm_hap_supported()`).
            p.capabilities = XEN_SYSCTL_PHYSCAP_PV
                | if crate::arch::x86_64::svm::hap_available() {
                    XEN_SYSCTL_PHYSCAP_HVM | XEN_SYSCTL_PHYSCAP_HAP
                } else {
                    0
                };
            p.total_pages = crate::memory::total_frames();
            p.free_pages = crate::memory::free_frames();
            p.max_mfn = crate::memory::max_mfn();
            op.set_payload(&p);
        }
        SysctlCmd::SchedId => {
            op.set_payload(&XenSysctlSchedId {
                sched_id: SchedulerId::Credit as u32,
            });
        }
        SysctlCmd::Getdomaininfolist => {
            let mut l: XenSysctlGetdomaininfolist = op.payload();
            let mut all: alloc::vec::Vec<&crate::domain::Domain> = core::iter::once(&*c.dom)
                .chain(c.others.iter())
                .filter(|d| d.domid >= l.first_domain)
                .collect();
            all.sort_by_key(|d| d.domid);
            let infos: alloc::vec::Vec<_> = all
                .iter()
                .take(l.max_domains as usize)
                .map(|d| super::domctl::domain_info(d))
                .collect();
            let size = core::mem::size_of::<hypercall_abi::domctl::XenDomctlGetdomaininfo>();
            for (i, info) in infos.iter().enumerate() {
                copy_to_guest(c.cr3, l.buffer + (i * size) as u64, info.as_bytes())?;
            }
            l.num_domains = infos.len() as u32;
            op.set_payload(&l);
        }
        SysctlCmd::SchedulerOp => {
            let mut s: XenSysctlSchedulerOp = op.payload();
            if s.cpupool_id != 0 {
                return Err(Errno::ESRCH);
            }
            if s.sched_id != SchedulerId::Credit as u32 {
                return Err(Errno::EINVAL);
            }
            match s.cmd {
                XEN_SYSCTL_SCHEDOP_PUTINFO => {
                    let p = s.sched_credit();
                    crate::sched::set_global_params(xen_core::credit::GlobalParams {
                        tslice_ms: p.tslice_ms,
                        ratelimit_us: p.ratelimit_us,
                        vcpu_migr_delay_us: p.vcpu_migr_delay_us,
                    })?;
                }
                XEN_SYSCTL_SCHEDOP_GETINFO => {
                    let g = crate::sched::global_params();
                    s.set_sched_credit(&XenSysctlCreditSchedule {
                        tslice_ms: g.tslice_ms,
                        ratelimit_us: g.ratelimit_us,
                        vcpu_migr_delay_us: g.vcpu_migr_delay_us,
                    });
                }
                _ => return Err(Errno::EINVAL),
            }
            op.set_payload(&s);
        }
        _ => return Err(Errno::ENOSYS),
    }
    write_guest(c.cr3, arg, &op)?;
    Ok(0)
}
