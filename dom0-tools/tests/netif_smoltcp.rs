//! Two guests on the bridge running smoltcp over netfront (pv-guest-lib's
//! `smoltcp` feature), served by netback through the real xenstored: they
//! ping each other (ICMP echo, after ARP) and one fetches a page from a
//! tiny HTTP server on the other over TCP.

mod netif_common;

use netif_common::*;
use pv_guest_lib::netfront::smol::smoltcp;
use pv_guest_lib::netfront::Netfront;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::{icmp, tcp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr};

struct Guest {
    nf: Netfront<GuestHost>,
    iface: Interface,
    sockets: SocketSet<'static>,
    _xb: Xb,
}

fn guest(w: &mut World, domid: u16) -> Guest {
    let mut xb = w.add_guest(domid, mac(domid as u8));
    let mut nf = w.netfront(&mut xb, domid);
    let cfg = Config::new(EthernetAddress(nf.mac()).into());
    let mut iface = Interface::new(cfg, &mut nf, Instant::from_millis(0));
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(10, 0, 0, domid as u8), 24))
            .unwrap();
    });
    Guest {
        nf,
        iface,
        sockets: SocketSet::new(Vec::new()),
        _xb: xb,
    }
}

impl Guest {
    fn poll(&mut self, ms: i64) {
        self.iface
            .poll(Instant::from_millis(ms), &mut self.nf, &mut self.sockets);
    }
}

/// Runs both stacks and the back end until `done` or 20 simulated seconds.
fn run(
    w: &mut World,
    a: &mut Guest,
    b: &mut Guest,
    mut done: impl FnMut(&mut Guest, &mut Guest) -> bool,
) -> i64 {
    for step in 0..2000 {
        let t = step * 10;
        a.poll(t);
        w.pump();
        b.poll(t);
        w.pump();
        if done(a, b) {
            return t;
        }
    }
    panic!("timed out");
}

fn icmp_socket() -> icmp::Socket<'static> {
    icmp::Socket::new(
        icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]),
        icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]),
    )
}

#[test]
fn guests_ping_each_other() {
    let mut w = World::new();
    let mut a = guest(&mut w, 1);
    let mut b = guest(&mut w, 2);
    let ha: SocketHandle = a.sockets.add(icmp_socket());
    let hb: SocketHandle = b.sockets.add(icmp_socket());
    a.sockets
        .get_mut::<icmp::Socket>(ha)
        .bind(icmp::Endpoint::Ident(0xa1))
        .unwrap();
    b.sockets
        .get_mut::<icmp::Socket>(hb)
        .bind(icmp::Endpoint::Ident(0xb2))
        .unwrap();
    let caps = ChecksumCapabilities::default();

    for (from, to_ip, h, ident) in [(1u8, 2u8, ha, 0xa1u16), (2, 1, hb, 0xb2)] {
        for seq in 0..3u16 {
            let payload = format!("ping {from}->{to_ip} #{seq}");
            let g = if from == 1 { &mut a } else { &mut b };
            let req = Icmpv4Repr::EchoRequest {
                ident,
                seq_no: seq,
                data: payload.as_bytes(),
            };
            let s = g.sockets.get_mut::<icmp::Socket>(h);
            let buf = s
                .send(req.buffer_len(), IpAddress::v4(10, 0, 0, to_ip))
                .unwrap();
            req.emit(&mut Icmpv4Packet::new_unchecked(buf), &caps);
            let mut reply = None;
            run(&mut w, &mut a, &mut b, |a, b| {
                let g = if from == 1 { a } else { b };
                let s = g.sockets.get_mut::<icmp::Socket>(h);
                if s.can_recv() {
                    let (data, src) = s.recv().unwrap();
                    let p = Icmpv4Packet::new_checked(data).unwrap();
                    if let Icmpv4Repr::EchoReply {
                        ident: i,
                        seq_no,
                        data,
                    } = Icmpv4Repr::parse(&p, &caps).unwrap()
                    {
                        reply = Some((src, i, seq_no, data.to_vec()));
                    }
                }
                reply.is_some()
            });
            assert_eq!(
                reply,
                Some((
                    IpAddress::v4(10, 0, 0, to_ip),
                    ident,
                    seq,
                    payload.into_bytes()
                ))
            );
        }
    }
    // Through the bridge, once learned, unicast only.
    let st = w.nb.bridge("xenbr0").unwrap().stats();
    assert!(st.forwarded >= 10, "{st:?}");
    assert_eq!(a.nf.stats().rx_errors + b.nf.stats().rx_errors, 0);
}

#[test]
fn a_guest_fetches_a_page_over_tcp() {
    let mut w = World::new();
    let mut client = guest(&mut w, 1);
    let mut server = guest(&mut w, 2);
    let sock = || {
        tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 8192]),
            tcp::SocketBuffer::new(vec![0; 8192]),
        )
    };
    let hs = server.sockets.add(sock());
    server
        .sockets
        .get_mut::<tcp::Socket>(hs)
        .listen(80)
        .unwrap();
    let hc = client.sockets.add(sock());
    {
        let s = client.sockets.get_mut::<tcp::Socket>(hc);
        s.connect(
            client.iface.context(),
            (IpAddress::v4(10, 0, 0, 2), 80),
            49152,
        )
        .unwrap();
    }
    // A body bigger than one frame.
    let body: String = (0..300)
        .map(|i| format!("line {i} from the guest\n"))
        .collect();
    let mut sent_req = false;
    let mut answered = 0usize;
    let mut got = Vec::new();
    run(&mut w, &mut client, &mut server, |c, s| {
        let cs = c.sockets.get_mut::<tcp::Socket>(hc);
        if cs.may_send() && !sent_req {
            cs.send_slice(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            sent_req = true;
        }
        while cs.can_recv() {
            cs.recv(|d| {
                got.extend_from_slice(d);
                (d.len(), ())
            })
            .unwrap();
        }
        let ss = s.sockets.get_mut::<tcp::Socket>(hs);
        if ss.can_recv() {
            ss.recv(|d| (d.len(), ())).unwrap();
            let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            ss.send_slice(head.as_bytes()).unwrap();
            answered = 1;
        }
        if answered > 0 && answered <= body.len() && ss.can_send() {
            let n = ss.send_slice(&body.as_bytes()[answered - 1..]).unwrap();
            answered += n;
            if answered > body.len() {
                ss.close();
            }
        }
        !cs.may_recv() && sent_req && !got.is_empty()
    });
    let text = String::from_utf8(got).unwrap();
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
    assert!(text.ends_with(&body));
    assert_eq!(w.nb.stats(1, 0).unwrap().tx_errors, 0);
    assert_eq!(w.nb.stats(2, 0).unwrap().tx_errors, 0);
}

/// netback's checksum completion (for `NETTXF_csum_blank` frames, as
/// Linux guests send) produces what smoltcp accepts, for UDP and TCP.
#[test]
fn netback_completes_blank_checksums_as_smoltcp_checks_them() {
    use dom0_tools::netback::csum::complete;
    use smoltcp::wire::{EthernetFrame, IpProtocol, Ipv4Address, Ipv4Packet, TcpPacket, UdpPacket};
    let (src, dst) = (Ipv4Address::new(10, 0, 0, 1), Ipv4Address::new(10, 0, 0, 2));
    for (proto, l4len) in [
        (IpProtocol::Udp, 8 + 33),
        (IpProtocol::Tcp, 20 + 100),
        (IpProtocol::Udp, 8),
    ] {
        let total = 14 + 20 + l4len;
        let mut f = vec![0u8; total];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
            ip.set_version(4);
            ip.set_header_len(20);
            ip.set_total_len((20 + l4len) as u16);
            ip.set_hop_limit(64);
            ip.set_next_header(proto);
            ip.set_src_addr(src);
            ip.set_dst_addr(dst);
            ip.fill_checksum();
        }
        for (i, b) in f[14 + 20..].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        if proto == IpProtocol::Udp {
            f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&(l4len as u16).to_be_bytes());
        } else {
            f[14 + 20 + 12] = 5 << 4; // data offset
        }
        assert!(complete(&mut f));
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        let ok = if proto == IpProtocol::Udp {
            UdpPacket::new_checked(ip.payload())
                .unwrap()
                .verify_checksum(&src.into(), &dst.into())
        } else {
            TcpPacket::new_checked(ip.payload())
                .unwrap()
                .verify_checksum(&src.into(), &dst.into())
        };
        assert!(ok, "{proto}");
    }
}
