#!/usr/bin/env python3
"""Writes the hand-made seed inputs of fuzz/corpus/ (docs/fuzzing.md).

Seeds taken from elsewhere are copied by hand: xl.cfg files from
dom0-tools/tests/xlcfg-corpus/ and dom0-tools/etc/xen/; a PV kernel, a
context buffer and save images dumped by the crates' own test builders
(see docs/fuzzing.md).  `--shrink-pv-image FILE` turns a PV save image
into a small seed (ordinary pages other than start_info, the rings and the p2m sent as
XALLOC, without data).
"""
import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- xenstore -------------------------------------------------------------
XS = dict(DIRECTORY=1, READ=2, GET_PERMS=3, WATCH=4, UNWATCH=5, TX_START=6,
          TX_END=7, INTRODUCE=8, RELEASE=9, GET_DOMAIN_PATH=10, WRITE=11,
          MKDIR=12, RM=13, SET_PERMS=14, IS_INTRODUCED=17, RESUME=18,
          SET_TARGET=19, RESET_WATCHES=21, DIRECTORY_PART=22)


def xs_msg(ty, payload, req=1, tx=0):
    return struct.pack("<IIII", XS[ty], req, tx, len(payload)) + payload


def z(*parts):
    return b"".join(p + b"\0" for p in parts)


def xenstore():
    session = [
        xs_msg("WRITE", z(b"data/x") + b"hello", 1),
        xs_msg("READ", z(b"data/x"), 2),
        xs_msg("MKDIR", z(b"device/vbd/51712"), 3),
        xs_msg("DIRECTORY", z(b"device"), 4),
        xs_msg("WATCH", z(b"data", b"tok"), 5),
        xs_msg("WRITE", z(b"data/y") + b"1", 6),
        xs_msg("TX_START", b"\0", 7),
        xs_msg("WRITE", z(b"data/t") + b"in tx", 8, 1),
        xs_msg("TX_END", z(b"T"), 9, 1),
        xs_msg("GET_PERMS", z(b"data/x"), 10),
        xs_msg("SET_PERMS", z(b"data/x", b"b1", b"r2"), 11),
        xs_msg("DIRECTORY_PART", z(b"device/vbd", b"0"), 12),
        xs_msg("GET_DOMAIN_PATH", z(b"1"), 13),
        xs_msg("UNWATCH", z(b"data", b"tok"), 14),
        xs_msg("RM", z(b"data"), 15),
        xs_msg("WRITE", z(b"/local/domain/2/x") + b"evil", 16),
        xs_msg("READ", z(b"/local/domain/2/name"), 17),
        xs_msg("IS_INTRODUCED", z(b"2"), 18),
        xs_msg("RESET_WATCHES", b"", 19),
    ]
    put("xenstore_wire", "session", b"".join(session))
    put("xenstore_wire", "one-write", xs_msg("WRITE", z(b"a") + b"v"))
    put("xenstore_wire", "transaction", b"".join([
        xs_msg("TX_START", b"\0", 1),
        xs_msg("MKDIR", z(b"tx/a"), 2, 1),
        xs_msg("WRITE", z(b"tx/a/b") + b"v", 3, 1),
        xs_msg("TX_END", z(b"F"), 4, 1),
    ]))

    # xenstore_ring: op 6 = one well-formed request (type, len/2, payload);
    # 3 = poll; 4 = read replies; 0 = raw bytes; 5 = set an index.
    def req(ty, payload):
        if len(payload) % 2:
            payload += b"\0"
        return bytes([6, XS[ty], len(payload) // 2]) + payload

    prog = b"".join([
        req("WRITE", z(b"data/x") + b"v"), bytes([3, 4]),
        req("READ", z(b"data/x")), bytes([3, 4]),
        req("WATCH", z(b"data", b"t")), bytes([3, 4]),
        req("TX_START", b"\0"), bytes([3, 4]),
        req("DIRECTORY", z(b"/local/domain/3")), bytes([3, 4, 7]),
    ])
    put("xenstore_ring", "requests", prog)
    raw = xs_msg("WRITE", z(b"data/y") + b"12345678")
    n = len(raw) // 4
    put("xenstore_ring", "raw-bytes", bytes([0, n]) + raw[:4 * n] + bytes([3, 4]))
    # Bad indexes: req_prod far ahead, then a reconnect request.
    put("xenstore_ring", "bad-index", bytes([5 | (1 << 3)]) + struct.pack("<I", 5000)
        + bytes([3, 5 | (4 << 3)]) + struct.pack("<I", 1) + bytes([3]) + req("GET_DOMAIN_PATH", z(b"3")) + bytes([3, 4]))


# ---- blkif ----------------------------------------------------------------
def blk_req(op, segs, sector=0, rid=1, handle=0):
    s = b"".join(struct.pack("<IBBH", g, f, l, 0) for g, f, l in segs)
    s = s.ljust(11 * 8, b"\0")
    return struct.pack("<BBHIQQ", op, len(segs), handle, 0, rid, sector) + s


def blk_discard(sector, n, rid=9):
    return struct.pack("<BBHIQQQ", 5, 0, 0, 0, rid, sector, n).ljust(112, b"\0")


def blk_indirect(op, nsegs, grefs, sector=0, rid=7):
    g = list(grefs) + [0] * (8 - len(grefs))
    return struct.pack("<BBHIQQHH8II", 6, op, nsegs, 0, rid, sector, 0, 0, *g, 0).ljust(112, b"\0")


def blkif():
    # Fill: indirect descriptor pages hold (gref, first, last) entries.
    fill = b"".join(struct.pack("<IBBH", g % 6, 0, 7, 0) for g in range(32))
    reqs = [
        blk_req(0, [(0, 0, 7)], 0, 1),
        blk_req(1, [(1, 0, 7), (2, 0, 3)], 8, 2),
        blk_req(3, [], 0, 3),
        blk_discard(16, 8),
        blk_req(0, [(6, 0, 7)], 4, 5),
        blk_indirect(0, 4, [3], 0, 7),
    ]
    flags = 2 | 4 | 8  # flush, discard, indirect
    put("blkif", "mixed", bytes([flags]) + fill + b"".join(reqs))
    put("blkif", "mixed-batch-persistent", bytes([flags | 16 | 32]) + fill + b"".join(reqs))
    put("blkif", "readonly-write", bytes([1]) + fill + blk_req(1, [(0, 0, 7)], 0, 1))
    put("blkif", "bad-sectors", bytes([0]) + fill + blk_req(0, [(0, 7, 0)], 0, 1)
        + blk_req(0, [(0, 0, 7)], 63, 2) + blk_req(4, [], 0, 3))


# ---- netif ----------------------------------------------------------------
def netif():
    def tx_slot(i, gref, off, flags, rid, size):
        return bytes([0]) + struct.pack("<H", 12 * i) + bytes([12]) + struct.pack("<IHHHH", gref, off, flags, rid, size)

    def rx_slot(i, rid, gref):
        return bytes([1]) + struct.pack("<H", 8 * i) + bytes([8]) + struct.pack("<HHI", rid, 0, gref)

    one = tx_slot(0, 0, 0, 0, 1, 60) + bytes([2, 1, 4])
    put("netif", "tx-one", bytes([0]) + one)
    more = (tx_slot(0, 1, 100, 4 | 1, 1, 200) + tx_slot(1, 2, 0, 0, 2, 140)
            + bytes([2, 2, 4]))
    put("netif", "tx-fragments-csum", bytes([1]) + more)
    extra = (tx_slot(0, 0, 0, 8, 1, 80) + bytes([0]) + struct.pack("<H", 12) + bytes([12])
             + bytes([2, 0]) + b"\0" * 10 + bytes([2, 2, 4]))
    put("netif", "tx-extra", bytes([0]) + extra)
    rx = (rx_slot(0, 5, 0) + rx_slot(1, 6, 6) + rx_slot(2, 7, 1) + bytes([3, 3])
          + bytes([6]) + struct.pack("<H", 100) + bytes([7])
          + bytes([6]) + struct.pack("<H", 5000) + bytes([7]))
    put("netif", "rx", bytes([1]) + rx)
    put("netif", "tx-overflow", bytes([0, 2, 0xff]) + struct.pack("<H", 0x10) + bytes([4, 4, 6, 0x40, 0]))


# ---- MMIO / privileged instructions ---------------------------------------
def hvm_mmio():
    # mode byte: bits 0-1 mode (0: 16, 1: 32, 2: 64), bits 2-3 register
    # class (2: within RAM and MMIO), bit 5: MMIO reads pending.
    seed = struct.pack("<Q", 0x0000_0000_0001_0010)
    insns = {
        "mov-load": b"\x8b\x00", "mov-store": b"\x89\x08", "mov64-load": b"\x48\x8b\x00",
        "mov-imm": b"\xc7\x00\x78\x56\x34\x12", "movzx": b"\x0f\xb6\x00", "movzxw": b"\x0f\xb7\x00",
        "movsxd": b"\x48\x63\x00", "add": b"\x03\x00", "and-imm": b"\x83\x20\x0f",
        "test": b"\x85\x00", "xchg": b"\x87\x00", "bt": b"\x0f\xa3\x08", "bts-imm": b"\x0f\xba\x28\x05",
        "rep-movs": b"\xf3\xa5", "rep-stos": b"\xf3\xab", "lods": b"\xac",
        "moffs": b"\xa1\x10\x00\x01\x00\x00\x00\x00\x00", "rip-rel": b"\x8b\x05\x00\xf0\x00\x00",
        "sib": b"\x8b\x04\x88", "fs-override": b"\x64\x8b\x00", "lock-or": b"\xf0\x09\x00",
        "pv-mov-cr3": b"\x0f\x20\xd8", "pv-rdmsr": b"\x0f\x32", "pv-wrmsr": b"\x0f\x30",
        "pv-in": b"\xe4\x70", "pv-out-dx": b"\xee", "pv-forced-cpuid": b"\x0f\x0b\x78\x65\x6e\x0f\xa2",
        "pv-int80": b"\xcd\x80", "pv-clts": b"\x0f\x06", "pv-xsetbv": b"\x0f\x01\xd1",
        "pv-rep-outsb": b"\xf3\x6e", "pv-mov-dr7": b"\x0f\x23\xf8",
    }
    for name, b in insns.items():
        put("hvm_mmio", name, bytes([2 | 2 << 2]) + seed + b)
    put("hvm_mmio", "mov-load-pending", bytes([2 | 2 << 2 | 1 << 5]) + seed + b"\x8b\x00")
    put("hvm_mmio", "rep-movs-pending", bytes([2 | 2 << 2 | 1 << 5]) + seed + b"\xf3\xa5")
    put("hvm_mmio", "real-mode-bx", bytes([0 | 0 << 2]) + seed + b"\x8b\x07")
    put("hvm_mmio", "prot32-addr16", bytes([1 | 2 << 2]) + seed + b"\x67\x8b\x00")
    put("hvm_mmio", "page-cross", bytes([2 | 1 << 2]) + seed + b"\x48\x89\x08")


def shrink_pv_image(path):
    b = open(path, "rb").read()
    out = bytearray()
    optlen = struct.unpack_from("<I", b, 44)[0]
    pos = 48 + optlen + 16
    out += b[:pos]

    def rec(p):
        ty, ln = struct.unpack_from("<II", b, p)
        padded = (ln + 7) & ~7
        return ty, b[p + 8:p + 8 + ln], p + 8 + padded

    def emit(ty, body):
        out.extend(struct.pack("<II", ty, len(body)) + body + b"\0" * (-len(body) % 8))

    while pos < len(b):
        ty, body, pos = rec(pos)
        emit(ty, body)
        if ty == 0:
            break
        if ty != 1:  # LIBXC_CONTEXT: the libxc stream follows
            continue
        out += b[pos:pos + 40]
        pos += 40
        while True:
            ty, body, pos = rec(pos)
            if ty == 1:  # PAGE_DATA
                count = struct.unpack_from("<I", body, 0)[0]
                ents = list(struct.unpack_from("<%dQ" % count, body, 8))
                data = body[8 + 8 * count:]
                new_ents, new_data, k = [], [], 0
                for e in ents:
                    t, pfn = e >> 60, e & ((1 << 52) - 1)
                    has = t in (0, 1, 2, 3, 4, 9, 10, 11, 12)
                    page = data[k * 4096:(k + 1) * 4096] if has else None
                    k += has
                    if t == 0 and pfn not in (1, 2, 3, 10, 11, 12, 13):
                        new_ents.append((0xe << 60) | pfn)
                        continue
                    new_ents.append(e)
                    if has:
                        new_data.append(page)
                body = struct.pack("<II", count, 0) + struct.pack("<%dQ" % count, *new_ents) + b"".join(new_data)
            emit(ty, body)
            if ty == 0:
                break
    return bytes(out)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--shrink-pv-image":
        sys.stdout.buffer.write(shrink_pv_image(sys.argv[2]))
        sys.exit(0)
    xenstore()
    blkif()
    netif()
    hvm_mmio()
