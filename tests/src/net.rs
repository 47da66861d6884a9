//! The machine's NIC (`oxen-run --net`): QEMU user networking, or a
//! virtual Ethernet between two QEMUs over UDP on loopback (QEMU 7.2's
//! `-netdev dgram`), which is how the two-host tests wire two Oxen
//! machines together.

use std::fmt;

/// What is behind the machine's virtio-net NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetSpec {
    /// QEMU user networking (10.0.2.0/24, DHCP and gateway at 10.0.2.2)
    /// with these extra `-netdev user` options (may be empty).
    User(String),
    /// A point-to-point Ethernet: frames go as UDP datagrams from
    /// 127.0.0.1:`local` to 127.0.0.1:`remote`. Two machines with
    /// swapped ports share one wire; neither needs to start first.
    Dgram {
        /// This machine's UDP port.
        local: u16,
        /// The other machine's.
        remote: u16,
    },
}

impl NetSpec {
    /// Parses `--net`'s value: `user`, `user,OPTIONS`,
    /// `dgram:LOCALPORT:REMOTEPORT`, or `none` (→ `None`).
    pub fn parse(v: &str) -> Result<Option<NetSpec>, String> {
        if v == "none" {
            return Ok(None);
        }
        if v == "user" {
            return Ok(Some(NetSpec::User(String::new())));
        }
        if let Some(opts) = v.strip_prefix("user,").filter(|o| !o.is_empty()) {
            return Ok(Some(NetSpec::User(opts.to_string())));
        }
        if let Some(ports) = v.strip_prefix("dgram:") {
            let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0);
            return match ports.split_once(':') {
                Some((l, r)) => match (port(l), port(r)) {
                    (Some(local), Some(remote)) if local != remote => {
                        Ok(Some(NetSpec::Dgram { local, remote }))
                    }
                    _ => Err(format!(
                        "--net {v:?}: expected dgram:LOCALPORT:REMOTEPORT, two different UDP ports"
                    )),
                },
                None => Err(format!("--net {v:?}: expected dgram:LOCALPORT:REMOTEPORT")),
            };
        }
        Err(format!(
            "--net {v:?}: expected none, user, user,OPTIONS or dgram:LOCALPORT:REMOTEPORT"
        ))
    }

    /// The NIC's MAC: QEMU's default for user networking; for a dgram
    /// wire one derived from the local port, so the two ends differ.
    pub fn mac(&self) -> String {
        match self {
            NetSpec::User(_) => "52:54:00:12:34:56".into(),
            NetSpec::Dgram { local, .. } => {
                format!("52:54:00:4f:{:02x}:{:02x}", local >> 8, local & 0xff)
            }
        }
    }

    /// QEMU's arguments for the NIC (`-netdev ... -device virtio-net-pci`).
    pub fn qemu_args(&self) -> Vec<String> {
        let netdev = match self {
            NetSpec::User(o) if o.is_empty() => "user,id=net0".to_string(),
            NetSpec::User(o) => format!("user,id=net0,{o}"),
            NetSpec::Dgram { local, remote } => format!(
                "dgram,id=net0,local.type=inet,local.host=127.0.0.1,local.port={local},\
                 remote.type=inet,remote.host=127.0.0.1,remote.port={remote}"
            ),
        };
        vec![
            "-netdev".into(),
            netdev,
            "-device".into(),
            format!("virtio-net-pci,netdev=net0,mac={}", self.mac()),
        ]
    }
}

impl fmt::Display for NetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetSpec::User(o) if o.is_empty() => f.write_str("user"),
            NetSpec::User(o) => write!(f, "user,{o}"),
            NetSpec::Dgram { local, remote } => write!(f, "dgram:{local}:{remote}"),
        }
    }
}

/// Two UDP ports on 127.0.0.1 free now, for a [`NetSpec::Dgram`] wire
/// (the sockets are closed again before QEMU binds them; another process
/// grabbing one in between is unlikely, and fails loudly in QEMU).
pub fn free_udp_ports() -> (u16, u16) {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
    let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
    let pa = a.local_addr().expect("its address").port();
    let pb = b.local_addr().expect("its address").port();
    (pa, pb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(NetSpec::parse("none"), Ok(None));
        assert_eq!(
            NetSpec::parse("user"),
            Ok(Some(NetSpec::User(String::new())))
        );
        assert_eq!(
            NetSpec::parse("user,hostfwd=tcp::1-:2"),
            Ok(Some(NetSpec::User("hostfwd=tcp::1-:2".into())))
        );
        assert_eq!(
            NetSpec::parse("dgram:4000:4001"),
            Ok(Some(NetSpec::Dgram {
                local: 4000,
                remote: 4001
            }))
        );
        for bad in [
            "dgram:",
            "dgram:1",
            "dgram:1:1",
            "dgram:0:2",
            "dgram:x:2",
            "tap",
            "user,",
        ] {
            assert!(NetSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dgram_wires_two_machines() {
        let a = NetSpec::Dgram {
            local: 0x1234,
            remote: 0x1235,
        };
        assert_eq!(a.mac(), "52:54:00:4f:12:34");
        let args = a.qemu_args();
        assert_eq!(args[0], "-netdev");
        assert_eq!(
            args[1],
            "dgram,id=net0,local.type=inet,local.host=127.0.0.1,local.port=4660,\
             remote.type=inet,remote.host=127.0.0.1,remote.port=4661"
        );
        assert_eq!(args[3], "virtio-net-pci,netdev=net0,mac=52:54:00:4f:12:34");
        assert_eq!(NetSpec::User(String::new()).qemu_args()[1], "user,id=net0");
    }
}
