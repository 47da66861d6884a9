//! `xen_version`: who we are (Xen 4.17's numbers, Oxen's extraversion) and
//! which features a guest may rely on.

use super::Call;
use crate::domain::{copy_to_guest, write_guest};
use hypercall_abi::arch_x86::HYPERVISOR_VIRT_START;
use hypercall_abi::errno::Errno;
use hypercall_abi::version::*;
use zerocopy::FromZeros;

fn fill<const N: usize>(s: &str) -> [u8; N] {
    let mut b = [0u8; N];
    let n = s.len().min(N - 1);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    b
}

/// The features a domain gets in submap 0: for a translated (HVM/PVH)
/// one what Xen 4.17 gives it (`XENVER_get_features`): its page tables
/// are its own, its physmap translated, its `vcpu_time_info` kept for a
/// TSC it reads directly (the pvclock; Linux uses the PV clock and timer
/// only with this), events through a callback vector. No
/// `XENFEAT_hvm_pirqs`: an HVM guest has no emulated PCI devices whose
/// interrupts could become events.
fn features(privileged: bool, translated: bool) -> u32 {
    let mut f = 0;
    if privileged {
        f |= 1 << XenFeature::Dom0.raw();
    }
    if translated {
        for x in [
            XenFeature::WritablePageTables,
            XenFeature::AutoTranslatedPhysmap,
            XenFeature::HvmCallbackVector,
            XenFeature::HvmSafePvclock,
        ] {
            f |= 1 << x.raw();
        }
    }
    f
}

pub fn xen_version(c: &mut Call) -> Result<i64, Errno> {
    let [cmd, ..] = c.args();
    // Xen's `cmd` is an `int`.
    let op = XenVersionOp::from_raw(u64::from(cmd as u32)).ok_or(Errno::ENOSYS)?;
    match op {
        // The answers in rax (XENVER_version is the "null hypercall"
        // guests and benchmarks make): no buffer, no stack to set up.
        XenVersionOp::Version => Ok(i64::from(XEN_VERSION)),
        XenVersionOp::Pagesize => Ok(XEN_PAGESIZE as i64),
        op => xen_version_to_guest(c, op),
    }
}

/// The sub-ops that fill a guest buffer (their strings and structures
/// stay out of [`xen_version`]'s stack frame).
#[inline(never)]
fn xen_version_to_guest(c: &mut Call, op: XenVersionOp) -> Result<i64, Errno> {
    let [_, arg, ..] = c.args();
    match op {
        XenVersionOp::Version => Ok(i64::from(XEN_VERSION)),
        XenVersionOp::Pagesize => Ok(XEN_PAGESIZE as i64),
        XenVersionOp::Extraversion => {
            copy_to_guest(c.cr3, arg, &fill::<XEN_EXTRAVERSION_LEN>(XEN_EXTRAVERSION))?;
            Ok(0)
        }
        XenVersionOp::CompileInfo => {
            let mut ci = XenCompileInfo::new_zeroed();
            ci.compiler = fill(XEN_COMPILER);
            ci.compile_by = fill("oxen");
            ci.compile_domain = fill("oxen");
            ci.compile_date = fill(env!("CARGO_PKG_VERSION"));
            write_guest(c.cr3, arg, &ci)?;
            Ok(0)
        }
        XenVersionOp::Capabilities => {
            copy_to_guest(
                c.cr3,
                arg,
                &fill::<XEN_CAPABILITIES_INFO_LEN>(XEN_CAPABILITIES),
            )?;
            Ok(0)
        }
        XenVersionOp::Changeset => {
            copy_to_guest(c.cr3, arg, &fill::<XEN_CHANGESET_INFO_LEN>(XEN_CHANGESET))?;
            Ok(0)
        }
        XenVersionOp::PlatformParameters => {
            write_guest(
                c.cr3,
                arg,
                &XenPlatformParameters {
                    virt_start: HYPERVISOR_VIRT_START,
                },
            )?;
            Ok(0)
        }
        XenVersionOp::GetFeatures => {
            let mut fi: XenFeatureInfo = crate::domain::read_guest(c.cr3, arg)?;
            fi.submap = match fi.submap_idx {
                0 => features(c.dom.is_privileged, c.dom.is_hvm()),
                i if i < XENFEAT_NR_SUBMAPS => 0,
                _ => return Err(Errno::EINVAL),
            };
            write_guest(c.cr3, arg, &fi)?;
            Ok(0)
        }
        XenVersionOp::GuestHandle => {
            let h = c.dom.handle;
            copy_to_guest(c.cr3, arg, &h)?;
            Ok(0)
        }
        XenVersionOp::Commandline => {
            if !c.dom.is_privileged {
                return Err(Errno::EPERM);
            }
            copy_to_guest(
                c.cr3,
                arg,
                &fill::<XEN_COMMANDLINE_LEN>(crate::boot_cmdline()),
            )?;
            Ok(0)
        }
        // Oxen images carry no GNU build id yet.
        XenVersionOp::BuildId => Err(Errno::ENODATA),
    }
}
