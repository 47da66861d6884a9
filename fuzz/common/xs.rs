//! Shared by the xenstore targets: a daemon with two guests' homes, and a
//! snapshot of everything a guest must not be able to change.

use std::collections::BTreeMap;

use dom0_tools::xenstore::layout::DomainInfo;
use dom0_tools::xenstore::{DomId, MemHost, Quotas, Xenstored};
use pv_guest_lib::xenbus::wire::Perm;

pub type Xs = Xenstored<MemHost>;

pub fn info(domid: DomId, uuid: &str, mfn: u64) -> DomainInfo<'_> {
    DomainInfo {
        domid,
        name: "guest",
        uuid,
        vcpus: 1,
        max_vcpus: 2,
        target_kb: 65536,
        max_kb: 65536,
        store_mfn: mfn,
        store_port: 10,
        console: None,
    }
}

pub fn daemon() -> Xs {
    let mut xs = Xenstored::new(MemHost::default(), Quotas::default());
    xs.init_dom0("Domain-0").expect("Dom0's nodes");
    xs
}

/// Value and permissions of every node outside `domid`'s home.
pub fn outside(xs: &Xs, domid: DomId) -> BTreeMap<String, (Vec<u8>, Vec<Perm>)> {
    let home = format!("/local/domain/{domid}");
    let below = format!("{home}/");
    xs.store()
        .paths()
        .filter(|p| *p != home && !p.starts_with(&below))
        .map(|p| {
            let n = xs.store().get(p).expect("listed node");
            (p.to_string(), (n.value.clone(), n.perms.clone()))
        })
        .collect()
}
