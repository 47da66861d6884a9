//! The `xl` back-end interface: [`XlBackend`], the operations `xl` needs
//! from the machine (what libxl gives the real `xl`), and the plain data
//! types they exchange. The front end ([`super::run`]) only ever talks to the
//! machine through this trait, so the host tests drive every command with an
//! in-memory fake and Dom0 implements it on top of real hypercalls and
//! xenstore.
//!
//! Methods with a default body are optional: the default says
//! [`XlError::NotImplemented`] (or derives the answer from other methods).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::cpumap::CpuMap;
use crate::xlcfg::{DiskSpec, VifSpec};

/// Why a back-end operation failed. [`XlError::rc`] gives the libxl error
/// code `xl` prints in its `(rc=N)` messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XlError {
    /// No domain with that id (libxl `ERROR_DOMAIN_NOTFOUND`).
    NoSuchDomain,
    /// The guest has no PV control interface (`ERROR_NOPARAVIRT`).
    NoParavirt,
    /// Oxen does not do this (yet) (`ERROR_NI`).
    NotImplemented,
    /// A bad argument (`ERROR_INVAL`).
    Invalid,
    /// Something else went wrong (`ERROR_FAIL`).
    Failed,
    /// A hypercall failed with this (negative) Xen errno (`ERROR_FAIL`).
    Xen(i32),
    /// A failure with a message for the user (`ERROR_FAIL`).
    Message(String),
}

impl XlError {
    /// The libxl error code (libxl_types.idl `libxl_error`).
    pub fn rc(&self) -> i32 {
        match self {
            XlError::NoSuchDomain => -21,
            XlError::NoParavirt => -10,
            XlError::NotImplemented => -4,
            XlError::Invalid => -6,
            XlError::Failed | XlError::Xen(_) | XlError::Message(_) => -3,
        }
    }

    /// A detail worth appending to `xl`'s own error line, if any.
    pub fn detail(&self) -> Option<Detail<'_>> {
        match self {
            XlError::Xen(_) | XlError::Message(_) | XlError::NotImplemented => Some(Detail(self)),
            _ => None,
        }
    }
}

/// The detail of an [`XlError`] (see [`XlError::detail`]).
pub struct Detail<'a>(&'a XlError);

impl fmt::Display for Detail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.0, f)
    }
}

impl fmt::Display for XlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XlError::NoSuchDomain => f.write_str("no such domain"),
            XlError::NoParavirt => f.write_str("PV control interface not available"),
            XlError::NotImplemented => f.write_str("not implemented by Oxen"),
            XlError::Invalid => f.write_str("invalid argument"),
            XlError::Failed => f.write_str("failed"),
            XlError::Xen(e) => write!(f, "Xen error {e}"),
            XlError::Message(m) => f.write_str(m),
        }
    }
}

/// Result of a back-end operation.
pub type XlResult<T> = Result<T, XlError>;

/// Why a domain shut down (Xen's `SHUTDOWN_*` codes, `xl list`'s letters
/// `-rscwS`).
pub mod shutdown_reason {
    /// `SHUTDOWN_poweroff`.
    pub const POWEROFF: u8 = 0;
    /// `SHUTDOWN_reboot`.
    pub const REBOOT: u8 = 1;
    /// `SHUTDOWN_suspend`.
    pub const SUSPEND: u8 = 2;
    /// `SHUTDOWN_crash`.
    pub const CRASH: u8 = 3;
    /// `SHUTDOWN_watchdog`.
    pub const WATCHDOG: u8 = 4;
    /// `SHUTDOWN_soft_reset`.
    pub const SOFT_RESET: u8 = 5;
}

/// One domain, as `libxl_dominfo` describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainInfo {
    /// Domain id.
    pub domid: u32,
    /// Name (xenstore `/local/domain/N/name`; empty if it has none).
    pub name: String,
    /// UUID (the domain handle).
    pub uuid: [u8; 16],
    /// Current memory, KiB.
    pub current_memkb: u64,
    /// Outstanding claims, KiB.
    pub outstanding_memkb: u64,
    /// Maximum memory, KiB (`u64::MAX` = no limit).
    pub max_memkb: u64,
    /// Number of vCPUs (highest vCPU id + 1).
    pub vcpu_count: u32,
    /// Number of vCPUs online.
    pub vcpu_online: u32,
    /// A vCPU is running.
    pub running: bool,
    /// All vCPUs are blocked.
    pub blocked: bool,
    /// Paused by the toolstack.
    pub paused: bool,
    /// Shut down (see `shutdown_reason`).
    pub shutdown: bool,
    /// The `SHUTDOWN_*` code, meaningful when `shutdown`.
    pub shutdown_reason: u8,
    /// Being destroyed.
    pub dying: bool,
    /// Total CPU time, ns.
    pub cpu_time_ns: u64,
    /// The cpupool it is in.
    pub cpupool: u32,
    /// Never shut down by `shutdown -a` (e.g. driver domains).
    pub never_stop: bool,
    /// XSM security id.
    pub ssidref: u32,
}

/// The host, as `libxl_physinfo` describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PhysInfo {
    /// Online CPUs.
    pub nr_cpus: u32,
    /// Highest CPU id.
    pub max_cpu_id: u32,
    /// NUMA nodes.
    pub nr_nodes: u32,
    /// Cores per socket.
    pub cores_per_socket: u32,
    /// Threads per core.
    pub threads_per_core: u32,
    /// CPU clock, kHz.
    pub cpu_khz: u32,
    /// `hw_caps` words.
    pub hw_cap: [u32; 8],
    /// Virtualisation capabilities.
    pub caps: VirtCaps,
    /// Total memory, pages.
    pub total_pages: u64,
    /// Free memory, pages.
    pub free_pages: u64,
    /// Pages freed by sharing.
    pub sharing_freed_pages: u64,
    /// Frames used by sharing.
    pub sharing_used_frames: u64,
    /// Outstanding claims, pages.
    pub outstanding_pages: u64,
    /// CPUs in no cpupool.
    pub free_cpus: u32,
}

/// `xl info`'s `virt_caps` flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtCaps {
    /// PV guests.
    pub pv: bool,
    /// HVM guests.
    pub hvm: bool,
    /// Device pass-through.
    pub directio: bool,
    /// Hardware-assisted paging.
    pub hap: bool,
    /// Shadow paging.
    pub shadow: bool,
    /// IOMMU shares HAP page tables.
    pub iommu_hap_pt_share: bool,
    /// Processor trace.
    pub vmtrace: bool,
    /// Virtual PMU.
    pub vpmu: bool,
    /// Grant table v1.
    pub gnttab_v1: bool,
    /// Grant table v2.
    pub gnttab_v2: bool,
}

impl VirtCaps {
    /// From `XEN_SYSCTL_physinfo`'s `capabilities` (`XEN_SYSCTL_PHYSCAP_*`),
    /// plus grant table v1, which every Xen has (libxl reports it from
    /// the version, not from a flag).
    pub fn from_physcap(c: u32) -> Self {
        use hypercall_abi::sysctl::*;
        let has = |f: u32| c & f != 0;
        VirtCaps {
            pv: has(XEN_SYSCTL_PHYSCAP_PV),
            hvm: has(XEN_SYSCTL_PHYSCAP_HVM),
            directio: has(XEN_SYSCTL_PHYSCAP_DIRECTIO),
            hap: has(XEN_SYSCTL_PHYSCAP_HAP),
            shadow: has(XEN_SYSCTL_PHYSCAP_SHADOW),
            iommu_hap_pt_share: has(XEN_SYSCTL_PHYSCAP_IOMMU_HAP_PT_SHARE),
            vmtrace: has(XEN_SYSCTL_PHYSCAP_VMTRACE),
            vpmu: has(XEN_SYSCTL_PHYSCAP_VPMU),
            gnttab_v1: true,
            gnttab_v2: has(XEN_SYSCTL_PHYSCAP_GNTTAB_V2),
        }
    }
}

#[cfg(test)]
mod virt_caps_tests {
    use super::VirtCaps;
    use hypercall_abi::sysctl::*;

    #[test]
    fn physinfo_capabilities_become_virt_caps() {
        let c = VirtCaps::from_physcap(XEN_SYSCTL_PHYSCAP_PV);
        assert!(c.pv && !c.hvm && !c.hap && c.gnttab_v1);
        let c = VirtCaps::from_physcap(
            XEN_SYSCTL_PHYSCAP_PV | XEN_SYSCTL_PHYSCAP_HVM | XEN_SYSCTL_PHYSCAP_HAP,
        );
        assert!(c.pv && c.hvm && c.hap && !c.shadow && !c.directio);
    }
}

/// The hypervisor, as `libxl_version_info` describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionInfo {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Extra version (e.g. `.0`).
    pub extra: String,
    /// `xen_caps` (e.g. `xen-3.0-x86_64 hvm-3.0-x86_64`).
    pub capabilities: String,
    /// The scheduler (`credit`, `credit2`, ...).
    pub scheduler: String,
    /// Page size, bytes.
    pub pagesize: u32,
    /// `platform_params` virt_start.
    pub virt_start: u64,
    /// Changeset.
    pub changeset: String,
    /// The hypervisor's command line.
    pub commandline: String,
    /// Compiler.
    pub compiler: String,
    /// Compiled by.
    pub compile_by: String,
    /// Compile domain.
    pub compile_domain: String,
    /// Compile date.
    pub compile_date: String,
    /// Build id (hex).
    pub build_id: String,
}

/// What `uname` says about Dom0 (`xl info`'s first four lines).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uname {
    /// Node name.
    pub host: String,
    /// Kernel release.
    pub release: String,
    /// Kernel version.
    pub version: String,
    /// Machine.
    pub machine: String,
}

/// One vCPU, as `libxl_vcpuinfo` describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VcpuInfo {
    /// vCPU id.
    pub vcpuid: u32,
    /// The physical CPU it is on.
    pub cpu: u32,
    /// Online.
    pub online: bool,
    /// Blocked.
    pub blocked: bool,
    /// Running.
    pub running: bool,
    /// CPU time, ns.
    pub vcpu_time_ns: u64,
    /// Hard affinity.
    pub hard: CpuMap,
    /// Soft affinity.
    pub soft: CpuMap,
}

/// Where one CPU sits (`libxl_cputopology`), for `xl info -n`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTopology {
    /// Core id.
    pub core: u32,
    /// Socket id.
    pub socket: u32,
    /// NUMA node.
    pub node: u32,
}

/// One NUMA node (`libxl_numainfo`), for `xl info -n`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NumaNode {
    /// Memory, bytes.
    pub size: u64,
    /// Free memory, bytes.
    pub free: u64,
    /// Distances to every node.
    pub dists: Vec<u32>,
}

/// What `xl save` does with the domain once its image is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterSave {
    /// Destroy it (the default).
    Destroy,
    /// `-c`: leave it running.
    Run,
    /// `-p`: leave it paused.
    Pause,
}

/// What `xl create` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateRequest {
    /// The config file (`None`: none given).
    pub config_file: Option<String>,
    /// `key=value` overrides from the command line, in order; they are
    /// appended to the config file, as `xl` does.
    pub extra_config: Vec<String>,
    /// `-p`: leave the domain paused.
    pub paused: bool,
    /// `-c`: the console will be attached after creation.
    pub console: bool,
    /// `-q`: quiet.
    pub quiet: bool,
    /// `-n` or global `-N`: parse and print the configuration only.
    pub dry_run: bool,
    /// `-d`: print the parsed configuration too.
    pub debug: bool,
}

/// A console kind (`xl console -t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleType {
    /// The domain's primary console (no `-t`).
    Primary,
    /// `-t pv`.
    Pv,
    /// `-t serial`.
    Serial,
    /// `-t vuart`.
    Vuart,
}

/// An ACPI trigger (`shutdown -F` / `reboot -F`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Power button.
    Power,
    /// Reset.
    Reset,
}

/// How a domain `wait_for_domain` waited for went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainGone {
    /// It shut down with this `SHUTDOWN_*` reason.
    Shutdown(u8),
    /// It was destroyed.
    Destroyed,
}

/// The credit scheduler's per-domain parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditDomain {
    /// Weight (1..65535, default 256).
    pub weight: u32,
    /// Cap in percent of one CPU (0 = none).
    pub cap: u32,
}

/// The credit scheduler's per-pool parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditPool {
    /// Time slice, ms.
    pub tslice_ms: u32,
    /// Rate limit, µs.
    pub ratelimit_us: u32,
    /// vCPU migration delay, µs.
    pub migration_delay_us: u32,
}

/// One cpupool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuPoolInfo {
    /// Pool id.
    pub poolid: u32,
    /// Pool name (`Pool-0` for the first).
    pub name: String,
    /// Its scheduler (`credit`, `credit2`, ...).
    pub sched: String,
}

/// A domain's configuration, for `xl list -l` (a subset of
/// `libxl_domain_config`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainConfig {
    /// `pv`, `pvh` or `hvm`.
    pub guest_type: String,
    /// Name.
    pub name: String,
    /// UUID.
    pub uuid: [u8; 16],
    /// `max_vcpus`.
    pub max_vcpus: u32,
    /// Online vCPUs (ids).
    pub avail_vcpus: Vec<u32>,
    /// `max_memkb`.
    pub max_memkb: u64,
    /// `target_memkb`.
    pub target_memkb: u64,
    /// Scheduler weight, if set.
    pub weight: Option<u32>,
    /// Scheduler cap, if set.
    pub cap: Option<u32>,
    /// Kernel path.
    pub kernel: Option<String>,
    /// Ramdisk path.
    pub ramdisk: Option<String>,
    /// Kernel command line.
    pub cmdline: Option<String>,
    /// Disks.
    pub disks: Vec<DiskConfig>,
    /// Network interfaces.
    pub nics: Vec<NicConfig>,
    /// `on_poweroff` action (`destroy`, `restart`, `preserve`, ...).
    pub on_poweroff: String,
    /// `on_reboot` action.
    pub on_reboot: String,
    /// `on_crash` action.
    pub on_crash: String,
}

/// One disk of a [`DomainConfig`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskConfig {
    /// Backend domain.
    pub backend_domid: u32,
    /// Backing file or device.
    pub pdev_path: String,
    /// Virtual device (`xvda`).
    pub vdev: String,
    /// Format (`raw`).
    pub format: String,
    /// Writable.
    pub readwrite: bool,
}

/// One network interface of a [`DomainConfig`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NicConfig {
    /// Backend domain.
    pub backend_domid: u32,
    /// Device id.
    pub devid: u32,
    /// MAC address.
    pub mac: [u8; 6],
    /// Bridge.
    pub bridge: String,
}

impl From<&DiskSpec> for DiskConfig {
    /// The `xl list -l` view of a disk (back end in Dom0).
    fn from(d: &DiskSpec) -> DiskConfig {
        DiskConfig {
            backend_domid: 0,
            pdev_path: d.target.clone().unwrap_or_default(),
            vdev: d.vdev.clone(),
            format: String::from(d.format.as_str()),
            readwrite: d.readwrite,
        }
    }
}

/// One virtual block device of a domain, as `libxl_diskinfo` describes it
/// (`xl block-list`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockInfo {
    /// The device number (`xl block-list`'s `Vdev` column: `51712` for
    /// `xvda`).
    pub devid: u32,
    /// The back-end domain.
    pub backend_id: u32,
    /// The front-end domain (the `handle` column).
    pub frontend_id: u32,
    /// The back end's `XenbusState` (1 initialising .. 4 connected .. 6 closed).
    pub state: i32,
    /// The front end's event channel (`-1`: none yet).
    pub evtch: i32,
    /// The front end's ring grant reference (`-1`: none yet).
    pub rref: i32,
    /// The back end's xenstore path.
    pub backend: String,
}

/// One virtual network interface of a domain, as `libxl_nicinfo` and
/// `libxl_device_nic` describe it (`xl network-list`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NicInfo {
    /// The device id (`Idx` and `handle` columns).
    pub devid: u32,
    /// The back-end domain.
    pub backend_id: u32,
    /// The front-end domain.
    pub frontend_id: u32,
    /// Its MAC.
    pub mac: [u8; 6],
    /// The back end's `XenbusState`.
    pub state: i32,
    /// The front end's event channel (`-1`: none yet).
    pub evtch: i32,
    /// The transmit ring's grant reference (`-1`: none yet).
    pub rref_tx: i32,
    /// The receive ring's grant reference (`-1`: none yet).
    pub rref_rx: i32,
    /// The back end's xenstore path.
    pub backend: String,
}

/// One sample of the whole machine, for `xl top` (what xenstat reads).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopSample {
    /// A monotonic clock, ns (CPU(%) = ΔCPU time / Δthis).
    pub now_ns: u64,
    /// Wall-clock time, seconds since the epoch (UTC), for the title.
    pub wallclock_secs: u64,
    /// Xen's version string (`4.17.0`).
    pub xen_version: String,
    /// Total memory, bytes.
    pub tot_mem: u64,
    /// Free memory, bytes.
    pub free_mem: u64,
    /// Online CPUs.
    pub num_cpus: u32,
    /// CPU clock, Hz.
    pub cpu_hz: u64,
    /// The domains.
    pub domains: Vec<DomainInfo>,
}

/// Everything `xl` needs from the machine. Domain ids are resolved by the
/// front end (numbers are ids, anything else a name looked up in
/// [`XlBackend::list_domains`]).
pub trait XlBackend {
    /// All domains, any order (the front end sorts by id).
    fn list_domains(&mut self) -> XlResult<Vec<DomainInfo>>;

    /// A domain's configuration (`xl list -l`); domains without one are
    /// left out of the list.
    fn domain_config(&mut self, _domid: u32) -> XlResult<DomainConfig> {
        Err(XlError::NotImplemented)
    }

    /// The host (`XEN_SYSCTL_physinfo`).
    fn physinfo(&mut self) -> XlResult<PhysInfo>;

    /// The hypervisor (`xen_version`, `XEN_SYSCTL_sched_id`).
    fn version_info(&mut self) -> XlResult<VersionInfo>;

    /// Dom0's `uname`.
    fn uname(&mut self) -> XlResult<Uname>;

    /// Creates a domain. The front end has already printed `Parsing
    /// config from FILE` (unless `req.quiet`) and attaches the console
    /// afterwards if `req.console`. The back end reads and parses the config file
    /// (plus `req.extra_config`), builds the domain and unpauses it unless
    /// `req.paused`; it may print parser messages and, for a dry run, the
    /// parsed configuration on `out`. Returns the new domain's id (`None`
    /// for a dry run).
    fn create(&mut self, req: &CreateRequest, out: &mut dyn fmt::Write) -> XlResult<Option<u32>>;

    /// Destroys a domain at once.
    fn destroy(&mut self, domid: u32) -> XlResult<()>;

    /// `xl save`: pauses the domain and writes its image to `file` (with
    /// `config`'s text instead of the domain's own config, if given),
    /// printing progress on `out`; then destroys the domain, or leaves it
    /// as `after` says.
    fn save(
        &mut self,
        domid: u32,
        file: &str,
        config: Option<&str>,
        after: AfterSave,
        out: &mut dyn fmt::Write,
    ) -> XlResult<()>;

    /// `xl migrate`: sends the running domain live to the Dom0 at
    /// `target` (`ADDR[:PORT]`, where `xl migrate-receive` waits, with
    /// `config`'s text instead of its own if given) and destroys it here
    /// once the target runs it; on any failure it runs on here.
    fn migrate(
        &mut self,
        domid: u32,
        target: &str,
        config: Option<&str>,
        paused: bool,
        out: &mut dyn fmt::Write,
    ) -> XlResult<()>;

    /// `xl migrate-receive`: waits for one domain migrated from another
    /// host, builds it and runs it (paused if `paused`). Returns its id.
    fn migrate_receive(&mut self, paused: bool, out: &mut dyn fmt::Write) -> XlResult<u32>;

    /// `xl restore`: a new domain from the image in `file` (its config
    /// from `config` if given, else from the image), unpaused unless
    /// `paused`, printing progress on `out`. Returns its id.
    fn restore(
        &mut self,
        file: &str,
        config: Option<&str>,
        paused: bool,
        out: &mut dyn fmt::Write,
    ) -> XlResult<u32>;

    /// Asks a domain to power off (xenstore `control/shutdown` =
    /// `poweroff`); [`XlError::NoParavirt`] if it has no PV control.
    fn shutdown(&mut self, domid: u32) -> XlResult<()>;

    /// Asks a domain to reboot (`control/shutdown` = `reboot`).
    fn reboot(&mut self, domid: u32) -> XlResult<()>;

    /// Sends an ACPI trigger (HVM guests without PV drivers).
    fn send_trigger(&mut self, _domid: u32, _trigger: Trigger) -> XlResult<()> {
        Err(XlError::NotImplemented)
    }

    /// Waits until the domain has shut down or been destroyed.
    fn wait_for_domain(&mut self, domid: u32) -> XlResult<DomainGone>;

    /// Pauses a domain.
    fn pause(&mut self, domid: u32) -> XlResult<()>;

    /// Unpauses a domain.
    fn unpause(&mut self, domid: u32) -> XlResult<()>;

    /// Connects the terminal to a domain's console until the user detaches
    /// (`Ctrl-]`), then returns.
    fn console(&mut self, domid: u32, kind: ConsoleType, num: u32) -> XlResult<()>;

    /// The hypervisor's console ring (`XEN_SYSCTL_readconsole`), emptied
    /// afterwards if `clear`.
    fn read_xen_console(&mut self, clear: bool) -> XlResult<String>;

    /// Sends debug keys to Xen.
    fn send_debug_keys(&mut self, _keys: &str) -> XlResult<()> {
        Err(XlError::NotImplemented)
    }

    /// Sets the balloon target, KiB (`memory/target`, enforced).
    fn set_memory_target(&mut self, domid: u32, kb: u64) -> XlResult<()>;

    /// Sets the maximum reservation, KiB (`XEN_DOMCTL_max_mem`).
    fn set_memory_max(&mut self, domid: u32, kb: u64) -> XlResult<()>;

    /// Sets how many vCPUs are online (`cpu/N/availability`).
    fn set_vcpus_online(&mut self, domid: u32, count: u32) -> XlResult<()>;

    /// A domain's vCPUs.
    fn list_vcpus(&mut self, domid: u32) -> XlResult<Vec<VcpuInfo>>;

    /// Sets affinities of one vCPU (`None`: all of them); a `None` map is
    /// left as it is. `force` undoes a pinning override by the guest.
    fn set_vcpu_affinity(
        &mut self,
        domid: u32,
        vcpu: Option<u32>,
        hard: Option<&CpuMap>,
        soft: Option<&CpuMap>,
        force: bool,
    ) -> XlResult<()>;

    /// The CPUs of a NUMA node. Default: one node holding every CPU.
    fn node_cpus(&mut self, node: u32) -> XlResult<CpuMap> {
        if node != 0 {
            return Err(XlError::Invalid);
        }
        let p = self.physinfo()?;
        Ok(CpuMap::all(p.max_cpu_id as usize + 1))
    }

    /// Every CPU's core, socket and node (`xl info -n`). Default: derived
    /// from [`XlBackend::physinfo`]'s counts, all on node 0.
    fn cpu_topology(&mut self) -> XlResult<Vec<CpuTopology>> {
        let p = self.physinfo()?;
        let threads = p.threads_per_core.max(1);
        let cores = p.cores_per_socket.max(1);
        Ok((0..p.nr_cpus)
            .map(|cpu| CpuTopology {
                core: cpu / threads % cores,
                socket: cpu / threads / cores,
                node: 0,
            })
            .collect())
    }

    /// The NUMA nodes (`xl info -n`). Default: one node holding all of
    /// [`XlBackend::physinfo`]'s memory, distance 10 to itself.
    fn numa_info(&mut self) -> XlResult<Vec<NumaNode>> {
        let p = self.physinfo()?;
        let page = u64::from(self.version_info()?.pagesize.max(1));
        Ok(alloc::vec![NumaNode {
            size: p.total_pages.saturating_mul(page),
            free: p.free_pages.saturating_mul(page),
            dists: alloc::vec![10],
        }])
    }

    /// The cpupools. Default: `Pool-0` (id 0) running the scheduler
    /// [`XlBackend::version_info`] names.
    fn list_cpupools(&mut self) -> XlResult<Vec<CpuPoolInfo>> {
        let v = self.version_info()?;
        Ok(alloc::vec![CpuPoolInfo {
            poolid: 0,
            name: String::from("Pool-0"),
            sched: v.scheduler,
        }])
    }

    /// A domain's credit parameters.
    fn sched_credit_get(&mut self, domid: u32) -> XlResult<CreditDomain>;

    /// Sets a domain's credit weight and/or cap.
    fn sched_credit_set(
        &mut self,
        domid: u32,
        weight: Option<u32>,
        cap: Option<u32>,
    ) -> XlResult<()>;

    /// A pool's credit parameters.
    fn sched_credit_pool_get(&mut self, poolid: u32) -> XlResult<CreditPool>;

    /// Sets a pool's credit parameters.
    fn sched_credit_pool_set(&mut self, poolid: u32, params: &CreditPool) -> XlResult<()>;

    /// How long a domain has been up, seconds.
    fn uptime_secs(&mut self, domid: u32) -> XlResult<u64>;

    /// Wall-clock time, seconds since the epoch (UTC).
    fn wallclock_secs(&mut self) -> XlResult<u64>;

    /// A monotonic clock, ns.
    fn monotonic_ns(&mut self) -> XlResult<u64>;

    /// One sample for `xl top`. Default: built from the other methods.
    fn top_sample(&mut self) -> XlResult<TopSample> {
        let now_ns = self.monotonic_ns()?;
        let wallclock_secs = self.wallclock_secs()?;
        let v = self.version_info()?;
        let p = self.physinfo()?;
        let mut domains = self.list_domains()?;
        domains.sort_by_key(|d| d.domid);
        let page = u64::from(v.pagesize.max(1));
        Ok(TopSample {
            now_ns,
            wallclock_secs,
            xen_version: alloc::format!("{}.{}{}", v.major, v.minor, v.extra),
            tot_mem: p.total_pages.saturating_mul(page),
            free_mem: p.free_pages.saturating_mul(page),
            num_cpus: p.nr_cpus,
            cpu_hz: u64::from(p.cpu_khz) * 1000,
            domains,
        })
    }

    /// Hot-plugs a disk into a running domain (`xl block-attach`;
    /// `libxl_device_disk_add`): writes its back-end and front-end
    /// directories and waits for the back end.
    fn block_attach(&mut self, _domid: u32, _disk: &DiskSpec) -> XlResult<()> {
        Err(XlError::NotImplemented)
    }

    /// A domain's virtual block devices (`xl block-list`).
    fn block_list(&mut self, _domid: u32) -> XlResult<Vec<BlockInfo>> {
        Err(XlError::NotImplemented)
    }

    /// Unplugs the disk with device number `devid` (`xl block-detach`):
    /// asks the guest to let go and waits for it, or with `force` tears
    /// the device down at once (`libxl_device_disk_destroy`).
    fn block_detach(&mut self, _domid: u32, _devid: u32, _force: bool) -> XlResult<()> {
        Err(XlError::NotImplemented)
    }

    /// Hot-plugs a network interface (`xl network-attach`;
    /// `libxl_device_nic_add`). A `None` devid means the next free one; a
    /// `None` MAC one with Xen's prefix ([`crate::xlcfg::MacGenerator`]).
    fn network_attach(&mut self, _domid: u32, _nic: &VifSpec) -> XlResult<()> {
        Err(XlError::NotImplemented)
    }

    /// A domain's virtual network interfaces (`xl network-list`).
    fn network_list(&mut self, _domid: u32) -> XlResult<Vec<NicInfo>> {
        Err(XlError::NotImplemented)
    }

    /// Unplugs the interface with id `devid` (`xl network-detach`).
    fn network_detach(&mut self, _domid: u32, _devid: u32) -> XlResult<()> {
        Err(XlError::NotImplemented)
    }

    /// Between two `xl top` frames: waits `delay_secs` (or for a key) and
    /// says whether to go on (`false` once the user pressed `q`). Default:
    /// stop after one frame.
    fn top_wait(&mut self, _delay_secs: u32) -> XlResult<bool> {
        Ok(false)
    }
}
