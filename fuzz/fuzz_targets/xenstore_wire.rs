//! The xenstore wire protocol (pv-guest-lib `xenbus::wire`) and
//! xenstored's request handling (dom0-tools `xenstore`) for a guest's
//! connection.
//!
//! Input: a stream of messages (16-byte header, then up to `len` payload
//! bytes) from domain 1's connection. Checks: header and message encoding
//! round-trip, string lists and permission entries round-trip; every
//! well-formed request gets exactly one reply with its `req_id` and
//! `tx_id`, of its own type or `XS_ERROR` with a known error name; every
//! queued message decodes; nothing outside `/local/domain/1` changes (the
//! guest cannot touch another domain's nodes or the global ones), and the
//! store stays consistent (`Store::check`).
#![no_main]

#[path = "../common/xs.rs"]
mod xs;

use libfuzzer_sys::fuzz_target;
use pv_guest_lib::xenbus::wire::{
    join_strings, split_strings, Header, Message, MsgType, Perm, XsErr, HEADER_LEN,
    XENSTORE_PAYLOAD_MAX,
};

fn wire_round_trips(data: &[u8]) {
    if let Some(h) = Header::decode(data) {
        assert_eq!(&h.encode()[..], &data[..HEADER_LEN]);
        if let Some(m) = Message::decode(data) {
            assert_eq!(m.encode(), data);
            assert_eq!(m.header, h);
        }
    }
    if let Some(parts) = split_strings(data) {
        assert_eq!(join_strings(&parts), data, "split/join");
        for p in parts {
            if let Some(perm) = Perm::parse(p) {
                let w = perm.to_wire();
                assert_eq!(Perm::parse(w.as_bytes()), Some(perm), "perm {w}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    wire_round_trips(data);

    let mut xs = xs::daemon();
    xs.create_domain_dirs(&xs::info(1, "00000000-0000-0000-0000-000000000001", 1))
        .unwrap();
    xs.create_domain_dirs(&xs::info(2, "00000000-0000-0000-0000-000000000002", 2))
        .unwrap();
    let conn = xs.connect_local(1);
    let before = xs::outside(&xs, 1);

    let mut rest = data;
    let mut n = 0;
    while rest.len() >= HEADER_LEN && n < 64 {
        n += 1;
        let h = Header::decode(rest).unwrap();
        let take = HEADER_LEN + (h.len as usize).min(rest.len() - HEADER_LEN);
        let (msg, tail) = rest.split_at(take);
        rest = tail;
        xs.handle(conn, msg);
        let well_formed =
            msg.len() - HEADER_LEN == h.len as usize && h.len as usize <= XENSTORE_PAYLOAD_MAX;
        let mut replies = 0;
        while let Some(out) = xs.take_output(conn) {
            let m = Message::decode(&out).expect("queued message decodes");
            assert!(m.payload.len() <= XENSTORE_PAYLOAD_MAX, "oversized reply");
            if m.header.msg_type() == Some(MsgType::WatchEvent) {
                assert_eq!((m.header.req_id, m.header.tx_id), (0, 0));
                let parts = split_strings(&m.payload).expect("event strings");
                assert!(parts.len() >= 2, "event without path and token");
                continue;
            }
            replies += 1;
            if m.header.msg_type() == Some(MsgType::Error) {
                assert!(
                    XsErr::from_name(&m.payload).is_some(),
                    "unknown error {:?}",
                    String::from_utf8_lossy(&m.payload)
                );
            } else if well_formed {
                assert_eq!(m.header.ty, h.ty, "reply of another type");
            }
            if well_formed {
                assert_eq!(m.header.req_id, h.req_id, "reply for another request");
            }
        }
        if well_formed && xs.conn_info(conn).is_some() {
            assert_eq!(replies, 1, "a request got {replies} replies");
        }
        while xs.take_output(dom0_tools::xenstore::DOM0_CONN).is_some() {}
    }
    assert!(xs.store().check(), "store inconsistent");
    assert_eq!(
        xs::outside(&xs, 1),
        before,
        "a guest changed nodes outside its home"
    );
});
