//! What the store holds before any client talks to it, and the nodes the
//! domain builder and `xl` write for a domain, laid out and permissioned as
//! libxl does (`docs/misc/xenstore-paths.markdown`):
//!
//! ```text
//! /local/domain/<id>            n0 r<id>  (Dom0 owns; the domain reads)
//!   name, domid, vm, memory/{static-max,target}, cpu/<n>/availability,
//!   store/{ring-ref,port}, control/platform-feature-*
//!   control/shutdown, control/feature-*, control/sysrq, data, drivers,
//!   feature, attr, error, device/suspend/event-channel
//!                               n<id>     (the domain owns: it writes them)
//!   console/{ring-ref,port,limit,type,output,backend-id}
//!                               n<id> r0  (front-end: the back-end reads)
//! /vm/<uuid>/{uuid,name}        n0 r<id>
//! /libxl/<id>/type              n0
//! ```
//!
//! Also Dom0's direct (privileged, in-process) accessors on [`Xenstored`],
//! which the helpers here and Dom0's own code use; their watch events go to
//! the watching connections as usual.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use pv_guest_lib::xenbus::wire::{
    decimal, join_strings, split_strings, Access, MsgType, Perm, XsErr,
};

use super::store::{domain_path, Node, Store};
use super::{op, Caller, ConnId, DomId, Host, View, Xenstored};

/// The directories every toolstack expects: `/tool/xenstored` (as C
/// xenstored creates it), `/local/domain`, `/vm`, `/libxl`. Owned by Dom0,
/// readable by nobody else.
pub fn init_store(store: &mut Store) {
    let none = vec![Perm::new(0, Access::None)];
    for path in [
        "/tool",
        "/tool/xenstored",
        "/local",
        "/local/domain",
        "/vm",
        "/libxl",
    ] {
        if store.get(path).is_some() {
            continue;
        }
        let parent = super::store::parent(path).unwrap_or("/");
        if let Some(mut p) = store.get(parent).cloned() {
            p.children.push(String::from(super::store::basename(path)));
            store.insert(parent, p);
        }
        store.insert(path, Node::new(Vec::new(), none.clone()));
    }
}

/// The console front-end of a PV domain (its ring page and event channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsoleInfo {
    /// Machine frame of the console ring (`start_info.console.domU.mfn`).
    pub ring_ref: u64,
    /// The domain's console event channel.
    pub port: u32,
    /// The back-end's domain.
    pub backend_domid: DomId,
}

/// What the domain builder knows about a new domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainInfo<'a> {
    /// Its id.
    pub domid: DomId,
    /// Its name (`xl list`).
    pub name: &'a str,
    /// Its UUID, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub uuid: &'a str,
    /// vCPUs online at boot.
    pub vcpus: u32,
    /// vCPUs it may bring up (`maxvcpus`).
    pub max_vcpus: u32,
    /// Balloon target, KiB.
    pub target_kb: u64,
    /// Maximum memory, KiB.
    pub max_kb: u64,
    /// Machine frame of the xenstore ring page.
    pub store_mfn: u64,
    /// The domain's xenstore event channel.
    pub store_port: u32,
    /// Its console, if it has one.
    pub console: Option<ConsoleInfo>,
}

impl<H: Host> Xenstored<H> {
    /// Runs a store operation as Dom0 outside any transaction, firing
    /// watches.
    fn dom0_op(&mut self, ty: MsgType, path: &str, rest: &[u8]) -> Result<Vec<u8>, XsErr> {
        let (path, _) = self.canonical(0, path, false)?;
        let caller = Caller {
            domid: 0,
            privileged: true,
            target: None,
        };
        let quotas = self.quotas;
        let mut view = View {
            store: &mut self.store,
            tx: None,
            changes: Vec::new(),
        };
        let r = op(&mut view, caller, &quotas, ty, &path, rest);
        let changes = core::mem::take(&mut view.changes);
        let mut after = Vec::new();
        for ch in &changes {
            self.fire(ch, &mut after);
        }
        for (to, bytes) in after {
            self.queue(to, bytes, false);
        }
        r
    }

    /// Reads `path` (as Dom0).
    pub fn read(&mut self, path: &str) -> Result<Vec<u8>, XsErr> {
        self.dom0_op(MsgType::Read, path, b"")
    }

    /// Writes `path` (as Dom0), creating parents.
    pub fn write(&mut self, path: &str, value: &[u8]) -> Result<(), XsErr> {
        self.dom0_op(MsgType::Write, path, value).map(drop)
    }

    /// Makes sure `path` exists (as Dom0).
    pub fn mkdir(&mut self, path: &str) -> Result<(), XsErr> {
        self.dom0_op(MsgType::Mkdir, path, b"").map(drop)
    }

    /// Removes `path` and its children (as Dom0).
    pub fn rm(&mut self, path: &str) -> Result<(), XsErr> {
        self.dom0_op(MsgType::Rm, path, b"").map(drop)
    }

    /// The children of `path` (as Dom0).
    pub fn directory(&mut self, path: &str) -> Result<Vec<String>, XsErr> {
        let r = self.dom0_op(MsgType::Directory, path, b"")?;
        Ok(split_strings(&r)
            .unwrap_or_default()
            .into_iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect())
    }

    /// The permissions of `path`.
    pub fn get_perms(&mut self, path: &str) -> Result<Vec<Perm>, XsErr> {
        let r = self.dom0_op(MsgType::GetPerms, path, b"")?;
        Ok(split_strings(&r)
            .unwrap_or_default()
            .into_iter()
            .filter_map(Perm::parse)
            .collect())
    }

    /// Sets the permissions of `path` (as Dom0).
    pub fn set_perms(&mut self, path: &str, perms: &[Perm]) -> Result<(), XsErr> {
        let strs: Vec<String> = perms.iter().map(|p| p.to_wire()).collect();
        let refs: Vec<&[u8]> = strs.iter().map(|s| s.as_bytes()).collect();
        self.dom0_op(MsgType::SetPerms, path, &join_strings(&refs))
            .map(drop)
    }

    /// Creates `path` with `perms` (libxl's `mknod`: empty value).
    pub fn mknod(&mut self, path: &str, perms: &[Perm]) -> Result<(), XsErr> {
        self.write(path, b"")?;
        self.set_perms(path, perms)
    }

    /// Writes Dom0's own entries: `/local/domain/0/{domid,name}`.
    pub fn init_dom0(&mut self, name: &str) -> Result<(), XsErr> {
        self.write("/local/domain/0/domid", b"0")?;
        self.write("/local/domain/0/name", name.as_bytes())
    }

    /// Writes a new domain's nodes, as libxl's `domain_make` and
    /// `build_post` do, then introduces it (its ring at `store_mfn`).
    /// Returns its connection.
    pub fn create_domain(&mut self, info: &DomainInfo<'_>) -> Result<ConnId, XsErr> {
        self.create_domain_dirs(info)?;
        self.introduce(info.domid, info.store_mfn, info.store_port)
    }

    /// Writes a new domain's nodes (see the module documentation).
    pub fn create_domain_dirs(&mut self, info: &DomainInfo<'_>) -> Result<(), XsErr> {
        let id = info.domid;
        if id == 0 || id >= super::DOMID_FIRST_RESERVED {
            return Err(XsErr::EINVAL);
        }
        let dom = domain_path(id);
        let vm = alloc::format!("/vm/{}", info.uuid);
        let ro = [Perm::new(0, Access::None), Perm::new(id, Access::Read)];
        let rw = [Perm::new(id, Access::None)];
        let at = |p: &str| alloc::format!("{dom}/{p}");

        let _ = self.rm(&dom);
        self.mknod(&dom, &ro)?;
        let _ = self.rm(&vm);
        self.mknod(&vm, &ro)?;
        self.write(&alloc::format!("{vm}/uuid"), info.uuid.as_bytes())?;
        self.write(&alloc::format!("{vm}/name"), info.name.as_bytes())?;
        self.write(&at("vm"), vm.as_bytes())?;
        self.write(&at("name"), info.name.as_bytes())?;
        self.write(&at("domid"), decimal(id.into()).as_bytes())?;
        for d in ["cpu", "memory", "device", "control"] {
            self.mknod(&at(d), &ro)?;
        }
        for d in [
            "control/shutdown",
            "control/feature-poweroff",
            "control/feature-reboot",
            "control/feature-suspend",
            "control/sysrq",
            "device/suspend/event-channel",
            "data",
            "drivers",
            "feature",
            "attr",
            "error",
        ] {
            self.mknod(&at(d), &rw)?;
        }
        self.write(&at("control/platform-feature-multiprocessor-suspend"), b"1")?;
        self.write(&at("control/platform-feature-xs_reset_watches"), b"1")?;
        self.write(&at("memory/static-max"), decimal(info.max_kb).as_bytes())?;
        self.write(&at("memory/target"), decimal(info.target_kb).as_bytes())?;
        for n in 0..info.max_vcpus.max(info.vcpus) {
            let state: &[u8] = if n < info.vcpus {
                b"online"
            } else {
                b"offline"
            };
            self.write(&alloc::format!("{dom}/cpu/{n}/availability"), state)?;
        }
        self.write(&at("store/ring-ref"), decimal(info.store_mfn).as_bytes())?;
        self.write(
            &at("store/port"),
            decimal(info.store_port.into()).as_bytes(),
        )?;
        if let Some(c) = info.console {
            let fe = [
                Perm::new(id, Access::None),
                Perm::new(c.backend_domid, Access::Read),
            ];
            self.mknod(&at("console"), &fe)?;
            self.write(&at("console/ring-ref"), decimal(c.ring_ref).as_bytes())?;
            self.write(&at("console/port"), decimal(c.port.into()).as_bytes())?;
            self.write(&at("console/limit"), b"1048576")?;
            self.write(&at("console/type"), b"xenconsoled")?;
            self.write(&at("console/output"), b"pty")?;
            self.write(
                &at("console/backend-id"),
                decimal(c.backend_domid.into()).as_bytes(),
            )?;
        }
        self.write(&alloc::format!("/libxl/{id}/type"), b"pv")?;
        Ok(())
    }

    /// Removes a destroyed domain's nodes (`/local/domain/<id>`,
    /// `/vm/<uuid>`, `/libxl/<id>`).
    pub fn destroy_domain_dirs(&mut self, domid: DomId, uuid: &str) -> Result<(), XsErr> {
        self.rm(&domain_path(domid))?;
        self.rm(&alloc::format!("/vm/{uuid}"))?;
        self.rm(&alloc::format!("/libxl/{domid}"))
    }
}
