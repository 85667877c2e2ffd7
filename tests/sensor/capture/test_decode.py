"""Frames of every supported link type, built with dpkt, decoded to segments or drop reasons."""

from __future__ import annotations

import socket
import struct

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensor.capture.decode import (
    SUPPORTED_LINKTYPES,
    TH_ACK,
    TH_SYN,
    DropReason,
    LinkType,
    Segment,
    decoder_for,
)

SRC4 = socket.inet_aton("10.0.0.1")
DST4 = socket.inet_aton("10.0.0.2")
SRC6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1")
DST6 = socket.inet_pton(socket.AF_INET6, "2001:db8::2")
MAC = b"\x02\x00\x00\x00\x00\x01"
PAYLOAD = b"\x01\x00\x00\x00\x00\xcd"  # the first six bytes of an A-ASSOCIATE-RQ


def tcp(payload: bytes = PAYLOAD, flags: int = TH_ACK, seq: int = 1000, ack: int = 7) -> bytes:
    """A TCP segment from port 40000 to port 104."""
    return bytes(dpkt.tcp.TCP(sport=40000, dport=104, seq=seq, ack=ack, flags=flags, data=payload))


def ip4(segment: bytes, proto: int = dpkt.ip.IP_PROTO_TCP, off: int = 0) -> bytes:
    """An IPv4 packet 10.0.0.1 -> 10.0.0.2 carrying ``segment``."""
    packet = dpkt.ip.IP(src=SRC4, dst=DST4, p=proto, data=segment)
    packet._flags_offset = off
    return bytes(packet)


def ip6(segment: bytes, nxt: int = dpkt.ip.IP_PROTO_TCP, ext: bytes = b"") -> bytes:
    """An IPv6 packet 2001:db8::1 -> 2001:db8::2, optionally behind raw extension headers."""
    header = struct.pack(">IHBB", 6 << 28, len(ext) + len(segment), nxt, 64)
    return header + SRC6 + DST6 + ext + segment


def ether(l3: bytes, ethertype: int = 0x0800, tags: tuple[tuple[int, int], ...] = ()) -> bytes:
    """An Ethernet frame; ``tags`` are (TPID, VLAN id) pairs, outermost first."""
    out = MAC + MAC
    for tpid, vid in tags:
        out += struct.pack(">HH", tpid, vid)
    return out + struct.pack(">H", ethertype) + l3


def decode(linktype: int, frame: bytes) -> Segment | DropReason:
    """Decode one frame at ts 1.5."""
    return decoder_for(linktype)(1.5, frame)


def test_ethernet_ipv4() -> None:
    seg = decode(LinkType.ETHERNET, ether(ip4(tcp(flags=TH_SYN | TH_ACK, seq=5, ack=9))))
    assert seg == Segment(1.5, "10.0.0.1", "10.0.0.2", 40000, 104, 5, 9, 0x12, PAYLOAD)


def test_ethernet_ipv6() -> None:
    seg = decode(LinkType.ETHERNET, ether(ip6(tcp()), 0x86DD))
    assert isinstance(seg, Segment)
    assert (seg.src, seg.dst, seg.payload) == ("2001:db8::1", "2001:db8::2", PAYLOAD)


def test_ethernet_padding_is_not_payload() -> None:
    # An empty ACK padded to the 60-byte Ethernet minimum: the padding is not stream data.
    frame = ether(ip4(tcp(b"")))
    seg = decode(LinkType.ETHERNET, frame + b"\x00" * (60 - len(frame)))
    assert isinstance(seg, Segment)
    assert seg.payload == b""
    assert seg.truncated_by == 0


@pytest.mark.parametrize(
    ("tags", "vlan"),
    [
        (((0x8100, 100),), 100),  # 802.1Q
        (((0x88A8, 10), (0x8100, 20)), 10),  # 802.1ad service tag over a customer tag
        (((0x8100, 30), (0x8100, 40)), 30),  # legacy QinQ with two 802.1Q tags
        (((0x9100, 50), (0x8100, 60)), 50),  # pre-standard QinQ TPID
        (((0x88A8, 1), (0x8100, 2), (0x8100, 3)), 1),  # three deep: past dpkt's two tags
        (((0x88A8, 7), (0x88A8, 8)), 7),  # a stack dpkt stops following after one tag
        (((0x8100, 0x2000 | 5),), 5),  # priority bits are not part of the id
    ],
)
def test_vlan_stacks_report_the_outermost_id(tags: tuple[tuple[int, int], ...], vlan: int) -> None:
    seg = decode(LinkType.ETHERNET, ether(ip4(tcp()), tags=tags))
    assert isinstance(seg, Segment)
    assert seg.vlan == vlan
    assert seg.payload == PAYLOAD


def test_vlan_ipv6() -> None:
    seg = decode(LinkType.ETHERNET, ether(ip6(tcp()), 0x86DD, tags=((0x8100, 12),)))
    assert isinstance(seg, Segment)
    assert (seg.vlan, seg.src) == (12, "2001:db8::1")


def test_vlan_tag_cut_short_is_truncated() -> None:
    frame = MAC + MAC + b"\x81\x00\x00\x64\x81\x00\x00"
    assert decode(LinkType.ETHERNET, frame) is DropReason.TRUNCATED


def test_linux_sll() -> None:
    frame = bytes(dpkt.sll.SLL(ethtype=0x0800, data=ip4(tcp())))
    seg = decode(LinkType.LINUX_SLL, frame)
    assert isinstance(seg, Segment)
    assert (seg.src, seg.sport, seg.payload) == ("10.0.0.1", 40000, PAYLOAD)


def test_linux_sll_ipv6() -> None:
    frame = bytes(dpkt.sll.SLL(ethtype=0x86DD, data=ip6(tcp())))
    seg = decode(LinkType.LINUX_SLL, frame)
    assert isinstance(seg, Segment)
    assert seg.dst == "2001:db8::2"


@pytest.mark.parametrize(("ethtype", "l3"), [(0x0800, ip4(tcp())), (0x86DD, ip6(tcp()))])
def test_linux_sll2(ethtype: int, l3: bytes) -> None:
    frame = bytes(dpkt.sll2.SLL2(ethtype=ethtype, intindex=3, data=l3))
    assert len(frame) == 20 + len(l3)  # the SLL2 header is 20 bytes
    seg = decode(LinkType.LINUX_SLL2, frame)
    assert isinstance(seg, Segment)
    assert seg.payload == PAYLOAD


def test_sll_arp_is_not_ip() -> None:
    frame = bytes(dpkt.sll.SLL(ethtype=0x0806, data=b"\x00" * 28))
    assert decode(LinkType.LINUX_SLL, frame) is DropReason.NOT_IP


@pytest.mark.parametrize("linktype", [LinkType.RAW, LinkType.RAW_BSD, LinkType.RAW_OPENBSD])
@pytest.mark.parametrize("l3", [ip4(tcp()), ip6(tcp())])
def test_raw_ip(linktype: int, l3: bytes) -> None:
    seg = decode(linktype, l3)
    assert isinstance(seg, Segment)
    assert seg.payload == PAYLOAD


def test_raw_with_another_version_is_not_ip() -> None:
    assert decode(LinkType.RAW, b"\x50" + ip4(tcp())[1:]) is DropReason.NOT_IP
    assert decode(LinkType.RAW, b"") is DropReason.TRUNCATED


def test_linktype_ipv4_and_ipv6() -> None:
    assert isinstance(decode(LinkType.IPV4, ip4(tcp())), Segment)
    assert isinstance(decode(LinkType.IPV6, ip6(tcp())), Segment)
    # LINKTYPE_IPV4 promises IPv4: an IPv6 packet there has a bad IP header.
    assert decode(LinkType.IPV4, ip6(tcp())) is DropReason.BAD_IP_HEADER


@pytest.mark.parametrize(
    ("family", "l3"),
    [
        (struct.pack("<I", 2), ip4(tcp())),  # AF_INET, little-endian host
        (struct.pack(">I", 2), ip4(tcp())),  # AF_INET, big-endian host
        (struct.pack("<I", 24), ip6(tcp())),  # AF_INET6 on NetBSD/OpenBSD
        (struct.pack("<I", 28), ip6(tcp())),  # AF_INET6 on FreeBSD
        (struct.pack(">I", 30), ip6(tcp())),  # AF_INET6 on Darwin, big-endian host
    ],
)
def test_null_loopback(family: bytes, l3: bytes) -> None:
    seg = decode(LinkType.NULL, family + l3)
    assert isinstance(seg, Segment)
    assert seg.payload == PAYLOAD


@pytest.mark.parametrize(
    ("family", "l3"), [(struct.pack(">I", 2), ip4(tcp())), (struct.pack(">I", 24), ip6(tcp()))]
)
def test_openbsd_loop(family: bytes, l3: bytes) -> None:
    seg = decode(LinkType.LOOP, family + l3)
    assert isinstance(seg, Segment)
    assert seg.payload == PAYLOAD


def test_loopback_errors() -> None:
    assert decode(LinkType.NULL, b"\x02\x00") is DropReason.TRUNCATED
    # AF_INET with a cut IPv4 header: dpkt raises from inside its loopback class.
    assert decode(LinkType.NULL, struct.pack("<I", 2) + ip4(tcp())[:10]) is DropReason.TRUNCATED
    assert decode(LinkType.LOOP, struct.pack(">I", 24) + ip6(tcp())[:30]) is DropReason.TRUNCATED
    # AF_APPLETALK (16) is not IP.
    assert decode(LinkType.NULL, struct.pack("<I", 16) + b"\x00" * 40) is DropReason.NOT_IP


def test_ipv6_extension_headers_are_walked() -> None:
    # Hop-by-hop (next: destination options), destination options (next: TCP), each 8 bytes
    # with a PadN option filling them.
    hop = bytes([60, 0, 1, 4, 0, 0, 0, 0])
    dst = bytes([6, 0, 1, 4, 0, 0, 0, 0])
    seg = decode(LinkType.RAW, ip6(tcp(), nxt=0, ext=hop + dst))
    assert isinstance(seg, Segment)
    assert seg.payload == PAYLOAD
    assert seg.truncated_by == 0


def test_ipv6_extension_header_cut_short_is_truncated() -> None:
    hop = bytes([6, 0, 1, 4, 0, 0, 0, 0])
    frame = ip6(tcp(), nxt=0, ext=hop)
    assert decode(LinkType.RAW, frame[:44]) is DropReason.TRUNCATED


def test_ipv4_fragments() -> None:
    more_fragments = ip4(tcp(), off=dpkt.ip.IP_MF)
    later_fragment = ip4(b"\x00" * 16, off=185)  # offset 185 * 8 bytes
    dont_fragment = ip4(tcp(), off=dpkt.ip.IP_DF)
    assert decode(LinkType.RAW, more_fragments) is DropReason.IP_FRAGMENT
    assert decode(LinkType.RAW, later_fragment) is DropReason.IP_FRAGMENT
    assert isinstance(decode(LinkType.RAW, dont_fragment), Segment)


def test_ipv6_fragments() -> None:
    def frag(offset: int, more: bool) -> bytes:
        # Fragment header: next header TCP, reserved, offset << 3 | M, identification.
        return struct.pack(">BBHI", 6, 0, (offset << 3) | int(more), 0xABCD)

    assert decode(LinkType.RAW, ip6(tcp(), 44, frag(0, True))) is DropReason.IP_FRAGMENT
    assert decode(LinkType.RAW, ip6(b"\x00" * 16, 44, frag(10, False))) is DropReason.IP_FRAGMENT
    # An atomic fragment (offset 0, no more) carries a whole datagram.
    assert isinstance(decode(LinkType.RAW, ip6(tcp(), 44, frag(0, False))), Segment)


def test_not_tcp() -> None:
    udp = bytes(dpkt.udp.UDP(sport=1, dport=2, data=b"x"))
    assert decode(LinkType.RAW, ip4(udp, proto=dpkt.ip.IP_PROTO_UDP)) is DropReason.NOT_TCP
    assert decode(LinkType.RAW, ip6(udp, nxt=dpkt.ip.IP_PROTO_UDP)) is DropReason.NOT_TCP
    # ESP hides the transport: not TCP as far as we can tell.
    assert decode(LinkType.RAW, ip6(b"\x00" * 24, nxt=50)) is DropReason.NOT_TCP


def test_not_ip() -> None:
    arp = ether(b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\x00" * 20, 0x0806)
    assert decode(LinkType.ETHERNET, arp) is DropReason.NOT_IP


def test_bad_ip_headers() -> None:
    packet = bytearray(ip4(tcp()))
    packet[0] = 0x44  # header length 4 words: less than the fixed header
    assert decode(LinkType.RAW, bytes(packet)) is DropReason.BAD_IP_HEADER
    packet = bytearray(ip4(tcp()))
    packet[2:4] = (10).to_bytes(2, "big")  # total length shorter than the header
    assert decode(LinkType.RAW, bytes(packet)) is DropReason.BAD_IP_HEADER


@pytest.mark.parametrize("offset_words", [0, 4])
def test_tcp_data_offset_below_five(offset_words: int) -> None:
    segment = bytearray(tcp())
    segment[12] = offset_words << 4
    assert decode(LinkType.RAW, ip4(bytes(segment))) is DropReason.BAD_TCP_HEADER


def test_tcp_data_offset_beyond_the_packet() -> None:
    segment = bytearray(tcp(b""))
    segment[12] = 15 << 4  # 60 bytes of header in a 20-byte segment that IP says is whole
    assert decode(LinkType.RAW, ip4(bytes(segment))) is DropReason.BAD_TCP_HEADER
    assert decode(LinkType.RAW, ip6(bytes(segment))) is DropReason.BAD_TCP_HEADER


def test_tcp_shorter_than_its_fixed_header() -> None:
    # IP says the whole segment is 12 bytes: not a TCP header at all.
    assert decode(LinkType.RAW, ip4(tcp()[:12])) is DropReason.BAD_TCP_HEADER


def test_snaplen_cut_in_the_payload_keeps_what_was_captured() -> None:
    payload = bytes(range(100))
    frame = ether(ip4(tcp(payload)))
    seg = decode(LinkType.ETHERNET, frame[: 14 + 20 + 20 + 30])
    assert isinstance(seg, Segment)
    assert seg.payload == payload[:30]
    assert seg.truncated_by == 70


def test_snaplen_cut_in_ipv6_payload() -> None:
    payload = bytes(range(64))
    frame = ip6(tcp(payload))
    seg = decode(LinkType.RAW, frame[: 40 + 20 + 10])
    assert isinstance(seg, Segment)
    assert (seg.payload, seg.truncated_by) == (payload[:10], 54)


def test_snaplen_cut_in_the_tcp_options_is_truncated() -> None:
    segment = bytearray(tcp(b"x" * 40))
    segment[12] = 10 << 4  # 40 bytes of header (20 of options), of which we keep 25
    frame = ip4(bytes(segment))
    assert decode(LinkType.RAW, frame[: 20 + 25]) is DropReason.TRUNCATED


@pytest.mark.parametrize("keep", [0, 10, 14, 20, 30, 40])
def test_snaplen_cut_before_the_tcp_header_ends_is_truncated(keep: int) -> None:
    assert decode(LinkType.ETHERNET, ether(ip4(tcp()))[:keep]) is DropReason.TRUNCATED


def test_unsupported_linktype() -> None:
    assert decode(147, ether(ip4(tcp()))) is DropReason.UNSUPPORTED_LINKTYPE
    assert 147 not in SUPPORTED_LINKTYPES
    assert {0, 1, 12, 14, 101, 108, 113, 228, 229, 276} == set(SUPPORTED_LINKTYPES)


@given(st.sampled_from(sorted(SUPPORTED_LINKTYPES)), st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(linktype: int, frame: bytes) -> None:
    assert isinstance(decode(linktype, frame), Segment | DropReason)


FRAMES = [
    (LinkType.ETHERNET, ether(ip4(tcp()), tags=((0x88A8, 1), (0x8100, 2)))),
    (LinkType.ETHERNET, ether(ip6(tcp(), nxt=0, ext=bytes([6, 0, 1, 4, 0, 0, 0, 0])), 0x86DD)),
    (LinkType.LINUX_SLL2, bytes(dpkt.sll2.SLL2(ethtype=0x0800, data=ip4(tcp())))),
    (LinkType.NULL, struct.pack("<I", 2) + ip4(tcp())),
]


@given(
    st.sampled_from(FRAMES),
    st.integers(0, 120),
    st.lists(st.tuples(st.integers(0, 119), st.integers(0, 255)), max_size=6),
)
def test_damaged_frames_never_raise(
    sample: tuple[int, bytes], keep: int, flips: list[tuple[int, int]]
) -> None:
    linktype, frame = sample
    damaged = bytearray(frame[:keep])
    for at, value in flips:
        if at < len(damaged):
            damaged[at] = value
    result = decode(linktype, bytes(damaged))
    assert isinstance(result, Segment | DropReason)
    if isinstance(result, Segment):
        assert result.truncated_by >= 0
