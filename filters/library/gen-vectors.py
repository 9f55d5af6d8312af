#!/usr/bin/env python3
"""Writes the conformance vectors spec/filter-vectors/<filter>.txt.

Every frame and every expected output is computed here from its parts
(MACs, VLAN tags, IP headers), never written by hand. Run from anywhere:

    python3 filters/library/gen-vectors.py

Grammar of the files (spec/filter-abi.md section 8):

    # comment
    filter NAME                              once, first non-comment line
    config STRING | config -                 starts a group (fresh instance)
    case NAME DIRECTION HEX -> drop|pass|HEX
"""

import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "spec", "filter-vectors")

BCAST = "ff:ff:ff:ff:ff:ff"
A = "02:00:00:00:00:01"
B = "02:00:00:00:00:02"
C = "02:00:00:00:00:03"


def mac(s):
    return bytes(int(x, 16) for x in s.split(":"))


def tag(tpid, vid, pcp=0, dei=0):
    return struct.pack("!HH", tpid, (pcp << 13) | (dei << 12) | vid)


def eth(dst, src, ethertype, payload=b"", tags=b""):
    return mac(dst) + mac(src) + tags + struct.pack("!H", ethertype) + payload


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ipv4(proto, payload, ttl=64, src="192.0.2.1", dst="192.0.2.2"):
    a = bytes(int(x) for x in src.split("."))
    b = bytes(int(x) for x in dst.split("."))
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, ttl, proto, 0, a, b)
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + payload


def ipv6(next_header, payload, hop_limit=64):
    src = bytes.fromhex("20010db8000000000000000000000001")
    dst = bytes.fromhex("20010db8000000000000000000000002")
    return struct.pack("!IHBB", 6 << 28, len(payload), next_header, hop_limit) + src + dst + payload


# Upper-layer headers. Only the ICMP checksum is filled in: the filters do
# not look at checksums.
ICMP_ECHO = bytes.fromhex("0800f7fd00010001")  # echo request, id 1, seq 1
TCP_SYN = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
UDP = struct.pack("!HHHH", 40000, 53, 8, 0)
ICMP6_ECHO = bytes.fromhex("8000000000010001")
# Hop-by-hop options (next header 58, length 0 = 8 bytes, router alert + PadN)
HBH_TO_ICMP6 = bytes([58, 0, 5, 2, 0, 0, 1, 0])
MLD_REPORT = bytes.fromhex("8f00000000000000")

ARP_REQ = bytes.fromhex("0001080006040001") + mac(A) + bytes([192, 0, 2, 1]) + bytes(6) + bytes([192, 0, 2, 2])


def frames():
    f = {}
    f["arp"] = eth(BCAST, A, 0x0806, ARP_REQ)
    f["ipv4_icmp"] = eth(B, A, 0x0800, ipv4(1, ICMP_ECHO))
    f["ipv4_tcp"] = eth(B, A, 0x0800, ipv4(6, TCP_SYN))
    f["ipv4_udp"] = eth(B, A, 0x0800, ipv4(17, UDP))
    f["ipv6_icmp6"] = eth(B, A, 0x86DD, ipv6(58, ICMP6_ECHO))
    f["ipv6_tcp"] = eth(B, A, 0x86DD, ipv6(6, TCP_SYN))
    f["ipv6_udp"] = eth(B, A, 0x86DD, ipv6(17, UDP))
    f["ipv6_mld_hbh"] = eth("33:33:00:00:00:16", A, 0x86DD, ipv6(0, HBH_TO_ICMP6 + MLD_REPORT, hop_limit=1))
    f["vlan_ipv4_icmp"] = eth(B, A, 0x0800, ipv4(1, ICMP_ECHO), tags=tag(0x8100, 10))
    f["vlan_ipv4_tcp"] = eth(B, A, 0x0800, ipv4(6, TCP_SYN), tags=tag(0x8100, 10))
    f["vlan_arp"] = eth(BCAST, A, 0x0806, ARP_REQ, tags=tag(0x8100, 10))
    f["qinq_ipv4_icmp"] = eth(B, A, 0x0800, ipv4(1, ICMP_ECHO), tags=tag(0x88A8, 100) + tag(0x8100, 10))
    # An IPv4 EtherType with only 19 bytes of header: no protocol.
    f["ipv4_truncated"] = eth(B, A, 0x0800, ipv4(6, b"")[:19])
    f["lldp"] = eth("01:80:c2:00:00:0e", A, 0x88CC, bytes.fromhex("020704020000000001"))
    f["header_only"] = eth(B, A, 0x88B5)
    return f


F = frames()


class Vectors:
    def __init__(self, name, comment):
        self.name = name
        self.lines = ["# " + l if l else "#" for l in comment.strip().splitlines()]
        self.lines.append("filter " + name)

    def config(self, text, comment=None):
        if comment:
            self.lines.append("#")
            self.lines.append("# " + comment)
        self.lines.append("config " + (text if text else "-"))

    def case(self, name, direction, frame, expect):
        assert direction in ("ingress", "egress")
        assert len(frame) >= 14
        if isinstance(expect, (bytes, bytearray)):
            assert len(expect) >= 14
            # An output equal to the input is written "pass".
            expect = "pass" if bytes(expect) == bytes(frame) else expect.hex()
        assert expect == "drop" or expect == "pass" or all(c in "0123456789abcdef" for c in expect)
        self.lines.append("case %s %s %s -> %s" % (name, direction, frame.hex(), expect))

    def write(self):
        path = os.path.join(OUT, self.name + ".txt")
        with open(path, "w") as fh:
            fh.write("\n".join(self.lines) + "\n")


# Reference models of the rewriting filters, used to compute expected bytes.
def push_vlan(frame, tpid, tci):
    return frame[:12] + struct.pack("!HH", tpid, tci) + frame[12:]


def pop_vlan(frame):
    assert frame[12:14] in (b"\x81\x00", b"\x88\xa8")
    return frame[:12] + frame[16:]


def set_vid(frame, vid):
    tci = struct.unpack("!H", frame[14:16])[0]
    return frame[:14] + struct.pack("!H", (tci & 0xF000) | vid) + frame[16:]


def with_src(frame, src):
    return frame[:6] + src + frame[12:]


def ethertype_vectors():
    v = Vectors(
        "ethertype",
        """
Conformance vectors for filters/library/ethertype (generated by
filters/library/gen-vectors.py: do not edit by hand).
""",
    )
    v.config("drop=0x0806", "drop ARP, tagged or not; everything else passes")
    v.case("arp_dropped", "ingress", F["arp"], "drop")
    v.case("arp_dropped_egress", "egress", F["arp"], "drop")
    v.case("vlan_arp_dropped", "ingress", F["vlan_arp"], "drop")
    v.case("ipv4_tcp_passes", "ingress", F["ipv4_tcp"], "pass")
    v.case("ipv6_passes", "egress", F["ipv6_icmp6"], "pass")
    v.case("header_only_passes", "ingress", F["header_only"], "pass")

    v.config("drop_ipproto=1+58", "drop ICMP and ICMPv6 by IP protocol, through VLAN tags and IPv6 extension headers")
    v.case("ipv4_icmp_dropped", "ingress", F["ipv4_icmp"], "drop")
    v.case("ipv4_tcp_passes", "ingress", F["ipv4_tcp"], "pass")
    v.case("ipv4_udp_passes", "egress", F["ipv4_udp"], "pass")
    v.case("ipv6_icmp6_dropped", "ingress", F["ipv6_icmp6"], "drop")
    v.case("ipv6_tcp_passes", "ingress", F["ipv6_tcp"], "pass")
    v.case("ipv6_hop_by_hop_icmp6_dropped", "ingress", F["ipv6_mld_hbh"], "drop")
    v.case("vlan_ipv4_icmp_dropped", "ingress", F["vlan_ipv4_icmp"], "drop")
    v.case("vlan_ipv4_tcp_passes", "ingress", F["vlan_ipv4_tcp"], "pass")
    v.case("qinq_ipv4_icmp_dropped", "egress", F["qinq_ipv4_icmp"], "drop")
    v.case("arp_passes", "ingress", F["arp"], "pass")
    v.case("ipv4_truncated_passes", "ingress", F["ipv4_truncated"], "pass")

    v.config("allow=0x0800+0x0806", "allow list: only IPv4 and ARP (after VLAN tags)")
    v.case("ipv4_passes", "ingress", F["ipv4_tcp"], "pass")
    v.case("arp_passes", "ingress", F["arp"], "pass")
    v.case("vlan_ipv4_passes", "ingress", F["vlan_ipv4_icmp"], "pass")
    v.case("ipv6_dropped", "ingress", F["ipv6_tcp"], "drop")
    v.case("lldp_dropped", "egress", F["lldp"], "drop")

    v.config("allow_ipproto=6+17", "IP allow list: only TCP and UDP; non-IP frames are not affected")
    v.case("ipv4_tcp_passes", "ingress", F["ipv4_tcp"], "pass")
    v.case("ipv4_udp_passes", "ingress", F["ipv4_udp"], "pass")
    v.case("ipv4_icmp_dropped", "ingress", F["ipv4_icmp"], "drop")
    v.case("ipv6_udp_passes", "ingress", F["ipv6_udp"], "pass")
    v.case("ipv6_icmp6_dropped", "ingress", F["ipv6_icmp6"], "drop")
    v.case("arp_passes", "ingress", F["arp"], "pass")
    v.case("ipv4_truncated_dropped", "ingress", F["ipv4_truncated"], "drop")

    v.config("drop=0x86dd,direction=ingress", "scope: only ingress")
    v.case("ipv6_ingress_dropped", "ingress", F["ipv6_tcp"], "drop")
    v.case("ipv6_egress_passes", "egress", F["ipv6_tcp"], "pass")

    v.config("allow=0x0800+0x86dd,drop_ipproto=1", "both kinds of list")
    v.case("ipv4_icmp_dropped", "ingress", F["ipv4_icmp"], "drop")
    v.case("ipv4_tcp_passes", "ingress", F["ipv4_tcp"], "pass")
    v.case("ipv6_icmp6_passes", "ingress", F["ipv6_icmp6"], "pass")
    v.case("arp_dropped", "ingress", F["arp"], "drop")
    return v


def macallow_vectors():
    v = Vectors(
        "macallow",
        """
Conformance vectors for filters/library/macallow (generated by
filters/library/gen-vectors.py: do not edit by hand).
""",
    )
    v.config("allow=02:00:00:00:00:01+02:00:00:00:00:02", "two allowed source MACs, both directions")
    v.case("src_a_passes", "ingress", eth(B, A, 0x0800, ipv4(6, TCP_SYN)), "pass")
    v.case("src_b_passes", "egress", eth(A, B, 0x0800, ipv4(6, TCP_SYN)), "pass")
    v.case("src_c_dropped", "ingress", eth(A, C, 0x0800, ipv4(6, TCP_SYN)), "drop")
    v.case("src_c_dropped_egress", "egress", eth(BCAST, C, 0x0806, ARP_REQ), "drop")
    v.case("dst_listed_src_not_dropped", "ingress", eth(A, "02:00:00:00:00:99", 0x88B5), "drop")
    v.case("tagged_src_a_passes", "ingress", eth(B, A, 0x0800, ipv4(1, ICMP_ECHO), tags=tag(0x8100, 10)), "pass")

    v.config("allow=02:00:00:00:00:01,direction=ingress", "only ingress is checked")
    v.case("src_c_ingress_dropped", "ingress", eth(A, C, 0x88B5), "drop")
    v.case("src_c_egress_passes", "egress", eth(A, C, 0x88B5), "pass")
    v.case("src_a_ingress_passes", "ingress", eth(C, A, 0x88B5), "pass")

    v.config("allow=020000000003+02-00-00-00-00-02,direction=egress", "other MAC spellings; only egress is checked")
    v.case("src_c_egress_passes", "egress", eth(A, C, 0x88B5), "pass")
    v.case("src_b_egress_passes", "egress", eth(A, B, 0x88B5), "pass")
    v.case("src_a_egress_dropped", "egress", eth(C, A, 0x88B5), "drop")
    v.case("src_a_ingress_passes", "ingress", eth(C, A, 0x88B5), "pass")
    return v


def vlan_vectors():
    v = Vectors(
        "vlan",
        """
Conformance vectors for filters/library/vlan (generated by
filters/library/gen-vectors.py: do not edit by hand).
""",
    )
    ip = F["ipv4_tcp"]
    arp = F["arp"]
    t5 = push_vlan(ip, 0x8100, 5)
    t100_pcp3 = push_vlan(ip, 0x8100, (3 << 13) | 100)
    t100 = push_vlan(ip, 0x8100, 100)
    t200 = push_vlan(ip, 0x8100, 200)
    qinq = push_vlan(push_vlan(ip, 0x8100, 10), 0x88A8, 100)

    v.config("mode=tag,vid=100", "tag untagged frames with VID 100; tagged frames pass unchanged")
    v.case("ipv4_tagged", "ingress", ip, push_vlan(ip, 0x8100, 100))
    v.case("arp_tagged", "egress", arp, push_vlan(arp, 0x8100, 100))
    v.case("header_only_tagged", "ingress", F["header_only"], push_vlan(F["header_only"], 0x8100, 100))
    v.case("already_tagged_unchanged", "ingress", t5, "pass")
    v.case("qinq_unchanged", "ingress", qinq, "pass")

    v.config("mode=tag,vid=4094,pcp=5", "tag with a priority")
    v.case("ipv4_tagged_pcp5", "ingress", ip, push_vlan(ip, 0x8100, (5 << 13) | 4094))

    v.config("mode=untag", "pop the outer tag, whatever its VID")
    v.case("vid100_untagged", "egress", t100, ip)
    v.case("vid5_untagged", "egress", t5, ip)
    v.case("qinq_outer_popped", "egress", qinq, pop_vlan(qinq))
    v.case("untagged_unchanged", "egress", ip, "pass")

    v.config("mode=untag,vid=100", "pop only tags with VID 100")
    v.case("vid100_untagged", "ingress", t100_pcp3, ip)
    v.case("vid200_unchanged", "ingress", t200, "pass")
    v.case("untagged_unchanged", "ingress", arp, "pass")

    v.config("mode=retag,from=100,to=200", "rewrite VID 100 to 200, keeping PCP and DEI")
    v.case("vid100_retagged", "ingress", t100, set_vid(t100, 200))
    v.case("vid100_pcp3_retagged", "egress", t100_pcp3, set_vid(t100_pcp3, 200))
    v.case("dei_kept", "ingress", push_vlan(ip, 0x8100, (1 << 12) | 100), push_vlan(ip, 0x8100, (1 << 12) | 200))
    v.case("vid5_unchanged", "ingress", t5, "pass")
    v.case("untagged_unchanged", "ingress", ip, "pass")
    v.case("qinq_outer_vid100_retagged", "ingress", qinq, set_vid(qinq, 200))

    v.config("mode=tag,vid=10,direction=egress", "tag on egress only")
    v.case("ingress_unchanged", "ingress", ip, "pass")
    v.case("egress_tagged", "egress", ip, push_vlan(ip, 0x8100, 10))
    return v


def pass_vectors():
    v = Vectors(
        "pass",
        """
Conformance vectors for filters/library/pass (generated by
filters/library/gen-vectors.py: do not edit by hand).
""",
    )
    v.config("", "no configuration; every frame passes unchanged")
    for name in ("arp", "ipv4_icmp", "ipv6_tcp", "vlan_ipv4_tcp", "header_only"):
        v.case(name, "ingress", F[name], "pass")
    v.case("ipv4_udp_egress", "egress", F["ipv4_udp"], "pass")
    return v


def rewrite_vectors():
    v = Vectors(
        "rewrite",
        """
Conformance vectors for filters/library/rewrite (generated by
filters/library/gen-vectors.py: do not edit by hand).
The source MAC's locally-administered bit (0x02 of the first octet) is set.
""",
    )
    v.config("", "no configuration")
    global_src = eth(B, "00:11:22:33:44:55", 0x0800, ipv4(6, TCP_SYN))
    v.case("global_src_rewritten", "ingress", global_src, with_src(global_src, mac("02:11:22:33:44:55")))
    multicast_src = eth(B, "01:00:5e:00:00:01", 0x88B5)
    v.case("multicast_src_rewritten", "egress", multicast_src, with_src(multicast_src, mac("03:00:5e:00:00:01")))
    v.case("local_src_unchanged", "ingress", F["ipv4_icmp"], "pass")
    dst_global = eth("00:11:22:33:44:55", "a8:00:00:00:00:01", 0x0806, ARP_REQ)
    v.case("dst_untouched", "ingress", dst_global, with_src(dst_global, mac("aa:00:00:00:00:01")))
    return v


def ratelimit_vectors():
    v = Vectors(
        "ratelimit",
        """
Conformance vectors for filters/library/ratelimit (generated by
filters/library/gen-vectors.py: do not edit by hand).
Cases of a group run in order on one instance. rate=1 refills one frame per
second, so the drops assume the cases of a group run within a second.
""",
    )
    fa = eth(B, A, 0x0800, ipv4(17, UDP))
    fb = eth(A, B, 0x0800, ipv4(17, UDP))
    v.config("rate=1,burst=2", "bucket of 2 per source MAC")
    v.case("a1_passes", "ingress", fa, "pass")
    v.case("a2_passes", "ingress", fa, "pass")
    v.case("a3_dropped", "ingress", fa, "drop")
    v.case("b1_passes", "ingress", fb, "pass")
    v.case("b2_passes", "egress", fb, "pass")
    v.case("b3_dropped", "egress", fb, "drop")
    v.case("a4_dropped", "egress", fa, "drop")

    v.config("rate=1,burst=1,direction=ingress", "bucket of 1, ingress only")
    v.case("a1_passes", "ingress", fa, "pass")
    v.case("a2_dropped", "ingress", fa, "drop")
    v.case("a_egress_passes", "egress", fa, "pass")
    v.case("a_egress_passes_again", "egress", fa, "pass")
    v.case("b1_passes", "ingress", fb, "pass")
    return v


def logger_vectors():
    v = Vectors(
        "logger",
        """
Conformance vectors for filters/library/logger (generated by
filters/library/gen-vectors.py: do not edit by hand).
The logger never changes or drops a frame.
""",
    )
    v.config("", "defaults: log every frame at level info")
    for name in ("arp", "ipv4_icmp", "vlan_ipv4_tcp", "qinq_ipv4_icmp", "ipv6_mld_hbh", "header_only"):
        v.case(name, "ingress", F[name], "pass")
    v.case("ipv6_tcp_egress", "egress", F["ipv6_tcp"], "pass")
    v.config("sample=2,level=debug", "every second frame, at level debug")
    v.case("first", "ingress", F["arp"], "pass")
    v.case("second", "ingress", F["ipv4_tcp"], "pass")
    v.case("third", "egress", F["ipv6_udp"], "pass")
    return v


def capture_vectors():
    v = Vectors(
        "capture",
        """
Conformance vectors for filters/library/capture (generated by
filters/library/gen-vectors.py: do not edit by hand).
The capture filter never changes or drops a frame.
""",
    )
    v.config("", "defaults: capture every frame")
    for name in ("arp", "ipv4_tcp", "vlan_ipv4_icmp", "header_only"):
        v.case(name, "ingress", F[name], "pass")
    v.case("ipv6_udp_egress", "egress", F["ipv6_udp"], "pass")
    v.config("sample=3,direction=egress", "one egress frame in three")
    v.case("first", "egress", F["arp"], "pass")
    v.case("ingress_not_counted", "ingress", F["ipv4_tcp"], "pass")
    v.case("second", "egress", F["ipv4_tcp"], "pass")
    v.case("third", "egress", F["ipv4_udp"], "pass")
    v.case("fourth", "egress", F["ipv6_udp"], "pass")
    return v


def selfcheck():
    # The helpers against hand-checked facts.
    h = ipv4(6, b"")
    assert checksum(h) == 0
    assert F["arp"].hex().startswith("ffffffffffff0200000000010806")
    assert tag(0x8100, 100, pcp=5).hex() == "8100a064"
    t = push_vlan(F["ipv4_tcp"], 0x8100, 100)
    assert t[12:18].hex() == "810000640800" and pop_vlan(t) == F["ipv4_tcp"]
    assert set_vid(push_vlan(F["ipv4_tcp"], 0x8100, (7 << 13) | 100), 200)[14:16].hex() == "e0c8"
    assert checksum(ICMP_ECHO) == 0


def main():
    selfcheck()
    os.makedirs(OUT, exist_ok=True)
    for v in (
        ethertype_vectors(),
        macallow_vectors(),
        vlan_vectors(),
        pass_vectors(),
        rewrite_vectors(),
        ratelimit_vectors(),
        logger_vectors(),
        capture_vectors(),
    ):
        v.write()
        print("wrote", os.path.normpath(os.path.join(OUT, v.name + ".txt")))


if __name__ == "__main__":
    main()
