//! The store itself: a tree of nodes keyed by absolute path, each with a
//! value, a permission list, its children's names and a generation count,
//! plus per-domain entry counts (for the entries quota), path syntax
//! checks and the permission rules.
//!
//! Nodes are kept in a `BTreeMap<String, Node>`; the tree structure is the
//! parent's `children` list, as in C xenstored, so `XS_DIRECTORY` never
//! scans the map. [`Store::check`] verifies the two agree.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use pv_guest_lib::xenbus::wire::{Access, Perm, XsErr, XENSTORE_ABS_PATH_MAX};

/// A domain id.
pub type DomId = u16;

/// One node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Its value (arbitrary bytes, usually ASCII).
    pub value: Vec<u8>,
    /// Permissions: `perms[0]` is the owner and the default for everyone
    /// not listed. Never empty.
    pub perms: Vec<Perm>,
    /// The names of its children, in creation order.
    pub children: Vec<String>,
    /// Generation: changes whenever the node is written (value, perms or
    /// children); used for transaction conflicts and `XS_DIRECTORY_PART`.
    pub gen: u64,
}

impl Node {
    /// A childless node.
    pub fn new(value: Vec<u8>, perms: Vec<Perm>) -> Node {
        Node {
            value,
            perms,
            children: Vec::new(),
            gen: 0,
        }
    }

    /// The owning domain.
    pub fn owner(&self) -> DomId {
        self.perms.first().map_or(0, |p| p.domid)
    }
}

/// The committed tree.
#[derive(Clone, Debug)]
pub struct Store {
    nodes: BTreeMap<String, Node>,
    entries: BTreeMap<DomId, usize>,
    next_gen: u64,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// A store holding only `/` (owned by Dom0, no access for others).
    pub fn new() -> Store {
        let mut s = Store {
            nodes: BTreeMap::new(),
            entries: BTreeMap::new(),
            next_gen: 1,
        };
        s.insert("/", Node::new(Vec::new(), vec![Perm::new(0, Access::None)]));
        s
    }

    /// The node at `path`.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never: `/` always exists.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Nodes owned by `domid`.
    pub fn entries(&self, domid: DomId) -> usize {
        self.entries.get(&domid).copied().unwrap_or(0)
    }

    /// Every path, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// Stores `node` at `path` with a fresh generation (does not touch the
    /// parent's children list: callers do).
    pub fn insert(&mut self, path: &str, mut node: Node) {
        node.gen = self.next_gen;
        self.next_gen += 1;
        let owner = node.owner();
        if let Some(old) = self.nodes.insert(String::from(path), node) {
            self.dec(old.owner());
        }
        *self.entries.entry(owner).or_insert(0) += 1;
    }

    /// Removes the node at `path` alone (not its children).
    pub fn remove(&mut self, path: &str) -> Option<Node> {
        let old = self.nodes.remove(path)?;
        self.dec(old.owner());
        Some(old)
    }

    /// Forgets domain `domid` in every node's permissions (what oxenstored
    /// does when a domain dies, part of XSA-322): its ACL entries go, and
    /// nodes it owned pass to Dom0 (keeping their default access), so a
    /// later domain reusing the id inherits nothing. Changed nodes get a
    /// fresh generation (open transactions that read them must retry).
    /// Returns how many nodes changed.
    pub fn revoke_domain(&mut self, domid: DomId) -> usize {
        let mut changed = 0;
        let mut moved = 0;
        for node in self.nodes.values_mut() {
            let before = node.perms.len();
            let mut first = true;
            node.perms.retain(|p| {
                let keep = first || p.domid != domid;
                first = false;
                keep
            });
            let mut touched = node.perms.len() != before;
            if let Some(owner) = node.perms.first_mut() {
                if owner.domid == domid {
                    owner.domid = 0;
                    moved += 1;
                    touched = true;
                }
            }
            if touched {
                node.gen = self.next_gen;
                self.next_gen += 1;
                changed += 1;
            }
        }
        if moved > 0 {
            self.entries.remove(&domid);
            *self.entries.entry(0).or_insert(0) += moved;
        }
        changed
    }

    fn dec(&mut self, domid: DomId) {
        if let Some(n) = self.entries.get_mut(&domid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.entries.remove(&domid);
            }
        }
    }

    /// Consistency check (`XS_CONTROL check`): every node but `/` is listed
    /// by its parent, every listed child exists, entry counts add up.
    pub fn check(&self) -> bool {
        let mut counts: BTreeMap<DomId, usize> = BTreeMap::new();
        for (path, node) in &self.nodes {
            *counts.entry(node.owner()).or_insert(0) += 1;
            if node.perms.is_empty() {
                return false;
            }
            for c in &node.children {
                if !self.nodes.contains_key(&join(path, c)) {
                    return false;
                }
            }
            if let Some(parent) = parent(path) {
                let listed = self
                    .nodes
                    .get(parent)
                    .is_some_and(|p| p.children.iter().any(|c| c == basename(path)));
                if !listed {
                    return false;
                }
            }
        }
        counts == self.entries && self.nodes.contains_key("/")
    }
}

/// `path`'s parent (`None` for `/`).
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// The last component of `path`.
pub fn basename(path: &str) -> &str {
    path.rfind('/').map_or(path, |i| &path[i + 1..])
}

/// `dir/name`.
pub fn join(dir: &str, name: &str) -> String {
    let mut s = String::from(dir);
    if !s.ends_with('/') {
        s.push('/');
    }
    s.push_str(name);
    s
}

/// Whether `child` is `parent` or below it (xenstore.txt's "child").
pub fn is_child(child: &str, parent: &str) -> bool {
    child == parent
        || parent == "/" && child.starts_with('/')
        || child.len() > parent.len()
            && child.starts_with(parent)
            && child.as_bytes()[parent.len()] == b'/'
}

/// `/local/domain/<domid>`.
pub fn domain_path(domid: DomId) -> String {
    let mut s = String::from("/local/domain/");
    pv_guest_lib::xenbus::wire::push_decimal(&mut s, domid.into());
    s
}

/// Checks an absolute path's syntax: starts with `/`, only
/// alphanumerics and `-/_@`, no `//`, no trailing `/` (but `/`), at most
/// `XENSTORE_ABS_PATH_MAX` bytes, and at most `rel_max` bytes below
/// `/local/domain/<id>/` for paths there.
pub fn valid_path(path: &str, rel_max: usize) -> Result<(), XsErr> {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') || b.len() > XENSTORE_ABS_PATH_MAX {
        return Err(XsErr::EINVAL);
    }
    if path.contains("//") || (b.len() > 1 && b.ends_with(b"/")) {
        return Err(XsErr::EINVAL);
    }
    if !b
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || b"-/_@".contains(&c))
    {
        return Err(XsErr::EINVAL);
    }
    if let Some(rest) = path.strip_prefix("/local/domain/") {
        if let Some(i) = rest.find('/') {
            if rest.len() - i - 1 > rel_max {
                return Err(XsErr::EINVAL);
            }
        }
    }
    Ok(())
}

/// What a connection may do with a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rights {
    /// May read.
    pub read: bool,
    /// May write.
    pub write: bool,
    /// Owns it (may change its permissions).
    pub owner: bool,
}

/// The rights of domain `domid` (privileged: Dom0; `target`: the domain it
/// serves as device model for, set by `XS_SET_TARGET`) over a node with
/// `perms`: Dom0 and the owner (or the owner's target holder) get
/// everything; otherwise the entry naming `domid` (or its target), else the
/// default in `perms[0]`.
pub fn rights(perms: &[Perm], domid: DomId, privileged: bool, target: Option<DomId>) -> Rights {
    const ALL: Rights = Rights {
        read: true,
        write: true,
        owner: true,
    };
    let Some(first) = perms.first() else {
        return if privileged {
            ALL
        } else {
            Rights {
                read: false,
                write: false,
                owner: false,
            }
        };
    };
    if privileged || first.domid == domid || target == Some(first.domid) {
        return ALL;
    }
    let access = perms[1..]
        .iter()
        .find(|p| p.domid == domid)
        .or_else(|| target.and_then(|t| perms[1..].iter().find(|p| p.domid == t)))
        .map_or(first.access, |p| p.access);
    Rights {
        read: access.can_read(),
        write: access.can_write(),
        owner: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parent("/"), None);
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(basename("/a/b"), "b");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert!(is_child("/a/b", "/a"));
        assert!(is_child("/a", "/a"));
        assert!(is_child("/a", "/"));
        assert!(!is_child("/ab", "/a"));
        assert!(!is_child("@releaseDomain", "/"));
        assert!(is_child("@releaseDomain", "@releaseDomain"));
        assert_eq!(domain_path(7), "/local/domain/7");
    }

    #[test]
    fn syntax() {
        assert!(valid_path("/", 2048).is_ok());
        assert!(valid_path("/a-b/c_d/@x/9", 2048).is_ok());
        for bad in ["", "a", "/a/", "/a//b", "/a b", "/a\u{e9}", "/a.b"] {
            assert_eq!(valid_path(bad, 2048), Err(XsErr::EINVAL), "{bad}");
        }
        let long = alloc::format!("/{}", "x".repeat(3072));
        assert_eq!(valid_path(&long, 2048), Err(XsErr::EINVAL));
        let rel = alloc::format!("/local/domain/1/{}", "x".repeat(2049));
        assert_eq!(valid_path(&rel, 2048), Err(XsErr::EINVAL));
        let rel = alloc::format!("/local/domain/1/{}", "x".repeat(2048));
        assert!(valid_path(&rel, 2048).is_ok());
    }

    #[test]
    fn rights_rules() {
        let p = [
            Perm::new(1, Access::None),
            Perm::new(2, Access::Read),
            Perm::new(3, Access::Both),
        ];
        assert!(rights(&p, 1, false, None).owner);
        assert!(rights(&p, 0, true, None).write);
        let r2 = rights(&p, 2, false, None);
        assert!(r2.read && !r2.write && !r2.owner);
        assert!(rights(&p, 3, false, None).write);
        assert!(!rights(&p, 4, false, None).read);
        assert!(rights(&p, 9, false, Some(1)).owner);
        assert!(rights(&p, 9, false, Some(2)).read);
        let open = [Perm::new(0, Access::Read)];
        assert!(rights(&open, 5, false, None).read);
        assert!(!rights(&[], 5, false, None).read);
    }

    #[test]
    fn store_counts() {
        let mut s = Store::new();
        assert!(s.check());
        s.insert(
            "/a",
            Node::new(b"x".to_vec(), vec![Perm::new(3, Access::None)]),
        );
        assert!(!s.check()); // not listed by the parent
        let mut root = s.get("/").unwrap().clone();
        root.children.push("a".into());
        s.insert("/", root);
        assert!(s.check());
        assert_eq!(s.entries(3), 1);
        s.remove("/a");
        assert_eq!(s.entries(3), 0);
    }
}
