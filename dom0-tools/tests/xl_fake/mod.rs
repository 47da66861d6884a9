//! An in-memory `XlBackend` for the `xl` tests: a host with Dom0 and two
//! guests, every call logged, and failures injectable per operation.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::string::String;
use std::vec::Vec;

use dom0_tools::xl::backend::*;
use dom0_tools::xl::cpumap::CpuMap;
use dom0_tools::xl::{self, XlError, XlResult};
use dom0_tools::xlcfg::{DiskSpec, MacGenerator, VifSpec};

pub const NR_CPUS: u32 = 4;

pub struct Fake {
    pub domains: Vec<DomainInfo>,
    pub configs: BTreeMap<u32, DomainConfig>,
    pub vcpus: BTreeMap<u32, Vec<VcpuInfo>>,
    pub credit: BTreeMap<u32, CreditDomain>,
    pub pool: CreditPool,
    pub pools: Vec<CpuPoolInfo>,
    pub xen_console: String,
    pub uptime: BTreeMap<u32, u64>,
    pub wallclock: u64,
    pub log: Vec<String>,
    /// Operation name → the error it returns.
    pub fail: BTreeMap<&'static str, XlError>,
    pub next_domid: u32,
    pub no_pv: Vec<u32>,
    pub samples: Vec<TopSample>,
    pub top_frames_left: u32,
    /// Each domain's virtual block devices.
    pub disks: BTreeMap<u32, Vec<BlockInfo>>,
    /// Each domain's virtual network interfaces.
    pub nics: BTreeMap<u32, Vec<NicInfo>>,
    /// MACs for vifs attached without one.
    pub macs: MacGenerator,
}

pub fn block(domid: u32, devid: u32, state: i32, evtch: i32, rref: i32) -> BlockInfo {
    BlockInfo {
        devid,
        backend_id: 0,
        frontend_id: domid,
        state,
        evtch,
        rref,
        backend: format!("/local/domain/0/backend/vbd/{domid}/{devid}"),
    }
}

pub fn nic(
    domid: u32,
    devid: u32,
    mac: [u8; 6],
    state: i32,
    evtch: i32,
    tx: i32,
    rx: i32,
) -> NicInfo {
    NicInfo {
        devid,
        backend_id: 0,
        frontend_id: domid,
        mac,
        state,
        evtch,
        rref_tx: tx,
        rref_rx: rx,
        backend: format!("/local/domain/0/backend/vif/{domid}/{devid}"),
    }
}

pub fn dom(domid: u32, name: &str, mem_mb: u64, vcpus: u32, cpu_ns: u64) -> DomainInfo {
    DomainInfo {
        domid,
        name: name.into(),
        uuid: [domid as u8; 16],
        current_memkb: mem_mb * 1024,
        outstanding_memkb: 0,
        max_memkb: mem_mb * 1024,
        vcpu_count: vcpus,
        vcpu_online: vcpus,
        running: false,
        blocked: true,
        paused: false,
        shutdown: false,
        shutdown_reason: 0,
        dying: false,
        cpu_time_ns: cpu_ns,
        cpupool: 0,
        never_stop: false,
        ssidref: 0,
    }
}

fn vcpu(id: u32, cpu: u32, time_ns: u64, running: bool) -> VcpuInfo {
    VcpuInfo {
        vcpuid: id,
        cpu,
        online: true,
        blocked: !running,
        running,
        vcpu_time_ns: time_ns,
        hard: CpuMap::all(NR_CPUS as usize),
        soft: CpuMap::all(NR_CPUS as usize),
    }
}

impl Fake {
    pub fn new() -> Fake {
        let mut d0 = dom(0, "Domain-0", 462, 2, 12_300_000_000);
        d0.running = true;
        d0.blocked = false;
        d0.max_memkb = u64::MAX;
        let guest = dom(1, "guest", 256, 1, 1_500_000_000);
        let mut web = dom(3, "web", 128, 2, 0);
        web.paused = true;
        web.blocked = false;
        let mut vcpus = BTreeMap::new();
        vcpus.insert(
            0,
            vec![
                vcpu(0, 0, 8_200_000_000, true),
                vcpu(1, 1, 4_100_000_000, false),
            ],
        );
        vcpus.insert(1, vec![vcpu(0, 2, 1_500_000_000, false)]);
        let mut off = vcpu(1, 0, 0, false);
        off.online = false;
        vcpus.insert(3, vec![vcpu(0, 3, 0, false), off]);
        let mut credit = BTreeMap::new();
        for id in [0, 1, 3] {
            credit.insert(
                id,
                CreditDomain {
                    weight: 256,
                    cap: 0,
                },
            );
        }
        let mut uptime = BTreeMap::new();
        uptime.insert(0, 3723);
        uptime.insert(1, 90061);
        uptime.insert(3, 2 * 86400 + 59);
        let mut configs = BTreeMap::new();
        configs.insert(
            1,
            DomainConfig {
                guest_type: "pv".into(),
                name: "guest".into(),
                uuid: [1; 16],
                max_vcpus: 1,
                avail_vcpus: vec![0],
                max_memkb: 262144,
                target_memkb: 262144,
                weight: None,
                cap: None,
                kernel: Some("/boot/guest".into()),
                ramdisk: None,
                cmdline: Some("console=hvc0 \"quoted\"".into()),
                disks: vec![DiskConfig {
                    backend_domid: 0,
                    pdev_path: "/disk.img".into(),
                    vdev: "xvda".into(),
                    format: "raw".into(),
                    readwrite: true,
                }],
                nics: vec![NicConfig {
                    backend_domid: 0,
                    devid: 0,
                    mac: [0x00, 0x16, 0x3e, 0x01, 0x02, 0x03],
                    bridge: "xenbr0".into(),
                }],
                on_poweroff: "destroy".into(),
                on_reboot: "restart".into(),
                on_crash: "destroy".into(),
            },
        );
        Fake {
            domains: vec![guest, d0, web],
            configs,
            vcpus,
            credit,
            pool: CreditPool {
                tslice_ms: 30,
                ratelimit_us: 1000,
                migration_delay_us: 0,
            },
            pools: vec![CpuPoolInfo {
                poolid: 0,
                name: "Pool-0".into(),
                sched: "credit".into(),
            }],
            xen_console: "(XEN) Xen version 4.17.0\n(XEN) Oxen\n".into(),
            uptime,
            wallclock: 19675 * 86400 + 13 * 3600 + 5 * 60 + 9,
            log: Vec::new(),
            fail: BTreeMap::new(),
            next_domid: 4,
            no_pv: Vec::new(),
            samples: Vec::new(),
            top_frames_left: 0,
            disks: [(1, vec![block(1, 51712, 4, 10, 8)])].into_iter().collect(),
            nics: [(
                1,
                vec![nic(
                    1,
                    0,
                    [0x00, 0x16, 0x3e, 0x01, 0x02, 0x03],
                    4,
                    11,
                    768,
                    769,
                )],
            )]
            .into_iter()
            .collect(),
            macs: MacGenerator::new(0x0123_4567),
        }
    }

    fn op(&mut self, name: &'static str, what: String) -> XlResult<()> {
        self.log.push(what);
        match self.fail.get(name) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn find(&mut self, domid: u32) -> XlResult<&mut DomainInfo> {
        self.domains
            .iter_mut()
            .find(|d| d.domid == domid)
            .ok_or(XlError::NoSuchDomain)
    }

    pub fn get(&self, domid: u32) -> Option<&DomainInfo> {
        self.domains.iter().find(|d| d.domid == domid)
    }
}

impl XlBackend for Fake {
    fn list_domains(&mut self) -> XlResult<Vec<DomainInfo>> {
        self.op("list_domains", String::new())?;
        self.log.pop();
        Ok(self.domains.clone())
    }

    fn domain_config(&mut self, domid: u32) -> XlResult<DomainConfig> {
        self.configs.get(&domid).cloned().ok_or(XlError::Failed)
    }

    fn physinfo(&mut self) -> XlResult<PhysInfo> {
        self.op("physinfo", String::new())?;
        self.log.pop();
        Ok(PhysInfo {
            nr_cpus: NR_CPUS,
            max_cpu_id: NR_CPUS - 1,
            nr_nodes: 1,
            cores_per_socket: 4,
            threads_per_core: 1,
            cpu_khz: 2_893_012,
            hw_cap: [
                0x178bfbff, 0xf6d8320b, 0x2c100800, 0x00000123, 0x0000000f, 0x219c07ab, 0,
                0x00000100,
            ],
            caps: VirtCaps {
                pv: true,
                hvm: true,
                hap: true,
                shadow: true,
                gnttab_v1: true,
                ..VirtCaps::default()
            },
            total_pages: 2 * 262144,
            free_pages: 262144 + 256,
            sharing_freed_pages: 0,
            sharing_used_frames: 0,
            outstanding_pages: 0,
            free_cpus: 0,
        })
    }

    fn version_info(&mut self) -> XlResult<VersionInfo> {
        Ok(VersionInfo {
            major: 4,
            minor: 17,
            extra: ".0".into(),
            capabilities: "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_64".into(),
            scheduler: "credit".into(),
            pagesize: 4096,
            virt_start: 0xffff800000000000,
            changeset: "oxen".into(),
            commandline: "dom0_mem=512M".into(),
            compiler: "rustc 1.95.0".into(),
            compile_by: "oxen".into(),
            compile_domain: "localdomain".into(),
            compile_date: "Sun Dec  6 00:00:00 UTC 2026".into(),
            build_id: "0123abcd".into(),
        })
    }

    fn uname(&mut self) -> XlResult<Uname> {
        Ok(Uname {
            host: "oxen".into(),
            release: "0.1.0".into(),
            version: "#1".into(),
            machine: "x86_64".into(),
        })
    }

    fn create(&mut self, req: &CreateRequest, out: &mut dyn fmt::Write) -> XlResult<Option<u32>> {
        self.op("create", format!("create {:?}", req))?;
        let file = req.config_file.clone().unwrap_or_default();
        if file == "missing.cfg" {
            return Err(XlError::Message(
                "Failed to read config file: missing.cfg: No such file or directory".into(),
            ));
        }
        let mut name = file
            .trim_end_matches(".cfg")
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        for kv in &req.extra_config {
            if let Some(v) = kv.strip_prefix("name=") {
                name = v.trim_matches('"').into();
            }
        }
        if req.dry_run {
            writeln!(out, "{{\"c_info\": {{\"name\": \"{name}\"}}}}").unwrap();
            return Ok(None);
        }
        let id = self.next_domid;
        self.next_domid += 1;
        let mut d = dom(id, &name, 128, 1, 0);
        d.paused = req.paused;
        self.domains.push(d);
        Ok(Some(id))
    }

    fn destroy(&mut self, domid: u32) -> XlResult<()> {
        self.op("destroy", format!("destroy {domid}"))?;
        self.find(domid)?;
        self.domains.retain(|d| d.domid != domid);
        Ok(())
    }

    fn save(
        &mut self,
        domid: u32,
        file: &str,
        config: Option<&str>,
        after: AfterSave,
        out: &mut dyn fmt::Write,
    ) -> XlResult<()> {
        self.op("save", format!("save {domid} {file} {config:?} {after:?}"))?;
        self.find(domid)?;
        let _ = writeln!(out, "Saving to {file} new xl format (info 0x2/0x0/1)");
        if after == AfterSave::Destroy {
            self.domains.retain(|d| d.domid != domid);
        }
        Ok(())
    }

    fn migrate(
        &mut self,
        domid: u32,
        target: &str,
        config: Option<&str>,
        paused: bool,
        _out: &mut dyn fmt::Write,
    ) -> XlResult<()> {
        self.op("migrate", format!("migrate {domid} {target} {config:?} paused={paused}"))?;
        self.find(domid)?;
        self.domains.retain(|d| d.domid != domid);
        Ok(())
    }

    fn migrate_receive(&mut self, paused: bool, _out: &mut dyn fmt::Write) -> XlResult<u32> {
        self.op("migrate-receive", format!("migrate-receive paused={paused}"))?;
        Ok(self.next_domid)
    }

    fn restore(
        &mut self,
        file: &str,
        config: Option<&str>,
        paused: bool,
        _out: &mut dyn fmt::Write,
    ) -> XlResult<u32> {
        self.op(
            "restore",
            format!("restore {file} {config:?} paused={paused}"),
        )?;
        Ok(self.next_domid)
    }

    fn shutdown(&mut self, domid: u32) -> XlResult<()> {
        self.op("shutdown", format!("shutdown {domid}"))?;
        if self.no_pv.contains(&domid) {
            return Err(XlError::NoParavirt);
        }
        self.find(domid)?;
        Ok(())
    }

    fn reboot(&mut self, domid: u32) -> XlResult<()> {
        self.op("reboot", format!("reboot {domid}"))?;
        if self.no_pv.contains(&domid) {
            return Err(XlError::NoParavirt);
        }
        self.find(domid)?;
        Ok(())
    }

    fn send_trigger(&mut self, domid: u32, trigger: Trigger) -> XlResult<()> {
        self.op("send_trigger", format!("trigger {domid} {trigger:?}"))
    }

    fn wait_for_domain(&mut self, domid: u32) -> XlResult<DomainGone> {
        self.op("wait", format!("wait {domid}"))?;
        self.find(domid)?;
        self.domains.retain(|d| d.domid != domid);
        Ok(if domid == 3 {
            DomainGone::Destroyed
        } else {
            DomainGone::Shutdown(shutdown_reason::POWEROFF)
        })
    }

    fn pause(&mut self, domid: u32) -> XlResult<()> {
        self.op("pause", format!("pause {domid}"))?;
        self.find(domid)?.paused = true;
        Ok(())
    }

    fn unpause(&mut self, domid: u32) -> XlResult<()> {
        self.op("unpause", format!("unpause {domid}"))?;
        self.find(domid)?.paused = false;
        Ok(())
    }

    fn console(&mut self, domid: u32, kind: ConsoleType, num: u32) -> XlResult<()> {
        self.op("console", format!("console {domid} {kind:?} {num}"))
    }

    fn read_xen_console(&mut self, clear: bool) -> XlResult<String> {
        self.op("dmesg", format!("dmesg clear={clear}"))?;
        let s = self.xen_console.clone();
        if clear {
            self.xen_console.clear();
        }
        Ok(s)
    }

    fn send_debug_keys(&mut self, keys: &str) -> XlResult<()> {
        self.op("debug_keys", format!("debug-keys {keys}"))
    }

    fn set_memory_target(&mut self, domid: u32, kb: u64) -> XlResult<()> {
        self.op("mem_set", format!("mem-set {domid} {kb}"))?;
        self.find(domid)?.current_memkb = kb;
        Ok(())
    }

    fn set_memory_max(&mut self, domid: u32, kb: u64) -> XlResult<()> {
        self.op("mem_max", format!("mem-max {domid} {kb}"))?;
        self.find(domid)?.max_memkb = kb;
        Ok(())
    }

    fn set_vcpus_online(&mut self, domid: u32, count: u32) -> XlResult<()> {
        self.op("vcpu_set", format!("vcpu-set {domid} {count}"))?;
        self.find(domid)?.vcpu_online = count;
        Ok(())
    }

    fn list_vcpus(&mut self, domid: u32) -> XlResult<Vec<VcpuInfo>> {
        self.vcpus.get(&domid).cloned().ok_or(XlError::NoSuchDomain)
    }

    fn set_vcpu_affinity(
        &mut self,
        domid: u32,
        vcpu: Option<u32>,
        hard: Option<&CpuMap>,
        soft: Option<&CpuMap>,
        force: bool,
    ) -> XlResult<()> {
        let show = |m: Option<&CpuMap>| match m {
            Some(m) => format!("{:?}", m.cpus().collect::<Vec<_>>()),
            None => "-".into(),
        };
        self.op(
            "vcpu_pin",
            format!(
                "vcpu-pin {domid} {vcpu:?} {} {} force={force}",
                show(hard),
                show(soft)
            ),
        )
    }

    fn sched_credit_get(&mut self, domid: u32) -> XlResult<CreditDomain> {
        self.credit
            .get(&domid)
            .copied()
            .ok_or(XlError::NoSuchDomain)
    }

    fn sched_credit_set(
        &mut self,
        domid: u32,
        weight: Option<u32>,
        cap: Option<u32>,
    ) -> XlResult<()> {
        self.op(
            "sched_set",
            format!("sched-credit {domid} {weight:?} {cap:?}"),
        )?;
        let c = self.credit.get_mut(&domid).ok_or(XlError::NoSuchDomain)?;
        if let Some(w) = weight {
            c.weight = w;
        }
        if let Some(cap) = cap {
            c.cap = cap;
        }
        Ok(())
    }

    fn sched_credit_pool_get(&mut self, _poolid: u32) -> XlResult<CreditPool> {
        Ok(self.pool)
    }

    fn sched_credit_pool_set(&mut self, poolid: u32, params: &CreditPool) -> XlResult<()> {
        self.op("pool_set", format!("pool-set {poolid} {params:?}"))?;
        self.pool = *params;
        Ok(())
    }

    fn list_cpupools(&mut self) -> XlResult<Vec<CpuPoolInfo>> {
        Ok(self.pools.clone())
    }

    fn uptime_secs(&mut self, domid: u32) -> XlResult<u64> {
        self.uptime
            .get(&domid)
            .copied()
            .ok_or(XlError::NoSuchDomain)
    }

    fn wallclock_secs(&mut self) -> XlResult<u64> {
        Ok(self.wallclock)
    }

    fn monotonic_ns(&mut self) -> XlResult<u64> {
        Ok(0)
    }

    fn top_sample(&mut self) -> XlResult<TopSample> {
        if self.samples.is_empty() {
            return Err(XlError::Failed);
        }
        Ok(self.samples.remove(0))
    }

    fn block_attach(&mut self, domid: u32, disk: &DiskSpec) -> XlResult<()> {
        self.op(
            "block_attach",
            format!(
                "block-attach {domid} {} {} {:?} {} {}",
                disk.vdev,
                disk.devid,
                disk.target,
                disk.format.as_str(),
                disk.mode()
            ),
        )?;
        self.find(domid)?;
        let list = self.disks.entry(domid).or_default();
        if list.iter().any(|b| b.devid == disk.devid) {
            return Err(XlError::Failed);
        }
        list.push(block(domid, disk.devid, 1, -1, -1));
        Ok(())
    }

    fn block_list(&mut self, domid: u32) -> XlResult<Vec<BlockInfo>> {
        self.op("block_list", String::new())?;
        self.log.pop();
        self.find(domid)?;
        Ok(self.disks.get(&domid).cloned().unwrap_or_default())
    }

    fn block_detach(&mut self, domid: u32, devid: u32, force: bool) -> XlResult<()> {
        self.op(
            "block_detach",
            format!("block-detach {domid} {devid} force={force}"),
        )?;
        let list = self.disks.get_mut(&domid).ok_or(XlError::Invalid)?;
        let n = list.len();
        list.retain(|b| b.devid != devid);
        if list.len() == n {
            return Err(XlError::Invalid);
        }
        Ok(())
    }

    fn network_attach(&mut self, domid: u32, spec: &VifSpec) -> XlResult<()> {
        self.op(
            "network_attach",
            format!(
                "network-attach {domid} devid={:?} mac={:?} bridge={}",
                spec.devid,
                spec.mac,
                spec.bridge_or_default()
            ),
        )?;
        self.find(domid)?;
        let mac = spec.mac_or_generate(&mut self.macs);
        let list = self.nics.entry(domid).or_default();
        let devid = match spec.devid {
            Some(d) => d,
            None => list.iter().map(|n| n.devid + 1).max().unwrap_or(0),
        };
        if list.iter().any(|n| n.devid == devid) {
            return Err(XlError::Failed);
        }
        list.push(nic(domid, devid, mac, 1, -1, -1, -1));
        Ok(())
    }

    fn network_list(&mut self, domid: u32) -> XlResult<Vec<NicInfo>> {
        self.op("network_list", String::new())?;
        self.log.pop();
        self.find(domid)?;
        Ok(self.nics.get(&domid).cloned().unwrap_or_default())
    }

    fn network_detach(&mut self, domid: u32, devid: u32) -> XlResult<()> {
        self.op("network_detach", format!("network-detach {domid} {devid}"))?;
        let list = self.nics.get_mut(&domid).ok_or(XlError::Invalid)?;
        let n = list.len();
        list.retain(|x| x.devid != devid);
        if list.len() == n {
            return Err(XlError::Invalid);
        }
        Ok(())
    }

    fn top_wait(&mut self, delay_secs: u32) -> XlResult<bool> {
        self.log.push(format!("top-wait {delay_secs}"));
        if self.top_frames_left == 0 {
            return Ok(false);
        }
        self.top_frames_left -= 1;
        Ok(true)
    }
}

/// Runs `xl` with a command line (split on spaces) against `fake`; returns
/// the status and everything printed.
pub fn xl_on(fake: &mut Fake, line: &str) -> (i32, String) {
    let args: Vec<&str> = line.split_whitespace().collect();
    xl_args(fake, &args)
}

pub fn xl_args(fake: &mut Fake, args: &[&str]) -> (i32, String) {
    let mut out = String::new();
    let rc = xl::run(args, fake, &mut out);
    (rc, out)
}

/// Runs `xl` against a fresh fake.
pub fn xl(line: &str) -> (i32, String) {
    xl_on(&mut Fake::new(), line)
}
