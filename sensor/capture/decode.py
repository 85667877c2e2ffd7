"""L2-L4 decoding of one captured frame into a TCP segment, or a drop reason."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

import dpkt
import dpkt.ethernet
import dpkt.ip
import dpkt.ip6
import dpkt.loopback
import dpkt.sll
import dpkt.sll2
import dpkt.tcp


class DropReason(StrEnum):
    """Why a frame yields no segment; the value doubles as a metric label."""

    UNSUPPORTED_LINKTYPE = "unsupported-linktype"
    BAD_LINK_HEADER = "bad-link-header"
    NOT_IP = "not-ip"
    BAD_IP_HEADER = "bad-ip-header"
    IP_FRAGMENT = "ip-fragment"
    NOT_TCP = "not-tcp"
    BAD_TCP_HEADER = "bad-tcp-header"
    TRUNCATED = "truncated"


class LinkType(IntEnum):
    """The pcap LINKTYPE_* values this module decodes."""

    NULL = 0
    ETHERNET = 1
    RAW_BSD = 12
    RAW_OPENBSD = 14
    RAW = 101
    LOOP = 108
    LINUX_SLL = 113
    IPV4 = 228
    IPV6 = 229
    LINUX_SLL2 = 276


@dataclass(frozen=True, slots=True)
class Segment:
    """One decoded TCP segment; ``truncated_by`` counts payload bytes the snaplen cut off."""

    ts: float
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes
    vlan: int | None = None
    truncated_by: int = 0


Decoded = Segment | DropReason
Decoder = Callable[[float, bytes], Decoded]

TH_FIN = dpkt.tcp.TH_FIN
TH_SYN = dpkt.tcp.TH_SYN
TH_RST = dpkt.tcp.TH_RST
TH_ACK = dpkt.tcp.TH_ACK

_ETH_IP = dpkt.ethernet.ETH_TYPE_IP
_ETH_IP6 = dpkt.ethernet.ETH_TYPE_IP6
_VLAN_TYPES = frozenset(
    (
        dpkt.ethernet.ETH_TYPE_8021Q,
        dpkt.ethernet.ETH_TYPE_8021AD,
        dpkt.ethernet.ETH_TYPE_QINQ1,
        dpkt.ethernet.ETH_TYPE_QINQ2,
    )
)
# A tag stack deeper than this is not a real network; stop rather than loop.
_MAX_VLAN_TAGS = 8
_VLAN_TAG = struct.Struct(">HH")
_FAMILY_BE = struct.Struct(">I")
_FAMILY_LE = struct.Struct("<I")
# BSD AF_INET is 2 everywhere; AF_INET6 is 24 (NetBSD, OpenBSD), 28 (FreeBSD), 30 (Darwin).
_AF_INET = 2
_AF_INET6 = frozenset((24, 28, 30))
_IP_PROTO_TCP = dpkt.ip.IP_PROTO_TCP
_IP_PROTO_FRAGMENT = dpkt.ip.IP_PROTO_FRAGMENT
_IP4_FRAG_MASK = dpkt.ip.IP_MF | dpkt.ip.IP_OFFMASK
_TCP_HDR_LEN = 20
_IP6_HDR_LEN = 40
# dpkt signals malformed headers with these; anything else from a header parser is also input.
_PARSE_ERRORS = (dpkt.UnpackError, struct.error, IndexError, ValueError, KeyError, TypeError)

_IPv4 = dpkt.ip.IP
_IPv6 = dpkt.ip6.IP6
_TCP = dpkt.tcp.TCP
_inet_ntoa = socket.inet_ntoa


def _ntop6(packed: bytes) -> str:
    """IPv6 address text."""
    return socket.inet_ntop(socket.AF_INET6, packed)


def _tcp_error(raw: bytes, expected: int | None) -> DropReason:
    """Why dpkt made no TCP header of ``raw``; ``expected`` is the length IP declares."""
    declared_longer = expected is not None and expected > len(raw)
    if len(raw) < _TCP_HDR_LEN:
        return DropReason.TRUNCATED if declared_longer else DropReason.BAD_TCP_HEADER
    return DropReason.BAD_TCP_HEADER


def _segment(
    ts: float, src: str, dst: str, tcp: Any, expected: int | None, vlan: int | None
) -> Decoded:
    """A Segment from a parsed TCP header, checking its data offset against what was captured."""
    captured = len(tcp)
    hdr_len = tcp.off << 2
    if hdr_len > captured:
        # The header claims options that are not there: cut by the snaplen, or simply wrong.
        if expected is not None and hdr_len <= expected:
            return DropReason.TRUNCATED
        return DropReason.BAD_TCP_HEADER
    missing = expected - captured if expected is not None and expected > captured else 0
    return Segment(
        ts,
        src,
        dst,
        tcp.sport,
        tcp.dport,
        tcp.seq,
        tcp.ack,
        tcp.flags,
        bytes(tcp.data),
        vlan,
        missing,
    )


def _from_ip4(ts: float, ip: Any, vlan: int | None) -> Decoded:
    """The TCP segment inside a parsed IPv4 packet."""
    if ip.v != 4:
        return DropReason.BAD_IP_HEADER
    hdr_len = ip.hl << 2
    if ip.len and ip.len < hdr_len:
        return DropReason.BAD_IP_HEADER
    if len(ip.opts) < hdr_len - 20:
        return DropReason.TRUNCATED if ip.len >= hdr_len else DropReason.BAD_IP_HEADER
    if ip._flags_offset & _IP4_FRAG_MASK:
        return DropReason.IP_FRAGMENT
    if ip.p != _IP_PROTO_TCP:
        return DropReason.NOT_TCP
    # A zero total length is what TCP segmentation offload leaves: take what was captured.
    expected = ip.len - hdr_len if ip.len else None
    tcp = ip.data
    if not isinstance(tcp, _TCP):
        return _tcp_error(tcp, expected)
    return _segment(ts, _inet_ntoa(ip.src), _inet_ntoa(ip.dst), tcp, expected, vlan)


def _from_ip6(ts: float, ip: Any, vlan: int | None) -> Decoded:
    """The TCP segment inside a parsed IPv6 packet (extension headers walked by dpkt)."""
    if ip.v != 6:
        return DropReason.BAD_IP_HEADER
    frag = ip.extension_hdrs.get(_IP_PROTO_FRAGMENT)
    # An atomic fragment (offset 0, no more fragments) carries a whole datagram.
    if frag is not None and (frag.frag_off or frag.m_flag):
        return DropReason.IP_FRAGMENT
    if getattr(ip, "p", None) != _IP_PROTO_TCP:
        return DropReason.NOT_TCP
    expected: int | None = None
    if ip.plen:
        expected = ip.plen - sum(ext.length for ext in ip.all_extension_headers)
    tcp = ip.data
    if not isinstance(tcp, _TCP):
        return _tcp_error(tcp, expected)
    return _segment(ts, _ntop6(ip.src), _ntop6(ip.dst), tcp, expected, vlan)


def _ip4_error(raw: bytes) -> DropReason:
    """Why dpkt could not parse ``raw`` as IPv4."""
    if len(raw) < 20:
        return DropReason.TRUNCATED
    return DropReason.BAD_IP_HEADER


def _ip6_error(raw: bytes) -> DropReason:
    """Why dpkt could not parse ``raw`` as IPv6 (a short or overlong extension header)."""
    if len(raw) < _IP6_HDR_LEN:
        return DropReason.TRUNCATED
    plen = (raw[4] << 8) | raw[5]
    if plen and len(raw) < _IP6_HDR_LEN + plen:
        return DropReason.TRUNCATED
    return DropReason.BAD_IP_HEADER


def _from_raw4(ts: float, raw: bytes, vlan: int | None) -> Decoded:
    """Parse ``raw`` as IPv4 and take its TCP segment."""
    try:
        ip = _IPv4(raw)
    except _PARSE_ERRORS:
        return _ip4_error(raw)
    return _from_ip4(ts, ip, vlan)


def _from_raw6(ts: float, raw: bytes, vlan: int | None) -> Decoded:
    """Parse ``raw`` as IPv6 and take its TCP segment."""
    try:
        ip = _IPv6(raw)
    except _PARSE_ERRORS:
        return _ip6_error(raw)
    return _from_ip6(ts, ip, vlan)


def _from_l3(ts: float, ethertype: int, l3: Any, vlan: int | None) -> Decoded:
    """Dispatch what a link layer carried: a parsed IP packet, or bytes dpkt left alone."""
    if isinstance(l3, _IPv4):
        return _from_ip4(ts, l3, vlan)
    if isinstance(l3, _IPv6):
        return _from_ip6(ts, l3, vlan)
    if not isinstance(l3, bytes):
        return DropReason.NOT_IP
    # dpkt leaves bytes when a child failed to parse or for tag stacks it does not follow.
    depth = 0
    while ethertype in _VLAN_TYPES:
        if len(l3) < _VLAN_TAG.size:
            return DropReason.TRUNCATED
        depth += 1
        if depth > _MAX_VLAN_TAGS:
            return DropReason.BAD_LINK_HEADER
        tci, ethertype = _VLAN_TAG.unpack_from(l3)
        if vlan is None:
            vlan = tci & 0x0FFF
        l3 = l3[_VLAN_TAG.size :]
    if ethertype == _ETH_IP:
        return _from_raw4(ts, l3, vlan)
    if ethertype == _ETH_IP6:
        return _from_raw6(ts, l3, vlan)
    return DropReason.NOT_IP


def _decode_ethernet(ts: float, frame: bytes) -> Decoded:
    """LINKTYPE_ETHERNET, with 802.1Q, 802.1ad and QinQ tag stacks."""
    try:
        eth = dpkt.ethernet.Ethernet(frame)
    except dpkt.NeedData:
        return DropReason.TRUNCATED
    except _PARSE_ERRORS:
        return DropReason.BAD_LINK_HEADER
    tags = getattr(eth, "vlan_tags", None)
    if not tags:
        return _from_l3(ts, eth.type, eth.data, None)
    # dpkt keeps only the innermost tags of deep stacks, so read the outermost id ourselves;
    # an ISL header (no TPID at offset 12) is the exception.
    vlan = _VLAN_TAG.unpack_from(frame, 14)[0] & 4095 if eth.type in _VLAN_TYPES else tags[0].id
    # The last tag's type says what follows (ISL tags have none).
    return _from_l3(ts, getattr(tags[-1], "type", eth.type), eth.data, vlan)


_IP4_TCP = struct.Struct("!xxHxxHxBxx4s4sHHIIH")  # IPv4 header (no options), TCP to its flags
_IP6_TCP = struct.Struct("!4xHBx16s16sHHIIH")  # IPv6 header, TCP to its flags
_TAGGED = struct.Struct("!HHH")  # TPID, TCI, inner ethertype
_ETHERTYPE = struct.Struct("!H")


def _fast_ethernet(ts: float, frame: bytes) -> Segment | None:
    """The common frame without dpkt objects, or None for anything dpkt must look at.

    Untagged or single-tagged Ethernet, IPv4 without options and not fragmented, or IPv6
    without extension headers, carrying a TCP header that was captured whole. Anything
    else (and every malformed frame) goes through dpkt, which also names the drop reason.
    """
    n = len(frame)
    if n < 54:
        return None
    (ethertype,) = _ETHERTYPE.unpack_from(frame, 12)
    vlan = None
    off = 14
    if ethertype in _VLAN_TYPES:
        _, tci, ethertype = _TAGGED.unpack_from(frame, 12)
        vlan = tci & 0x0FFF
        off = 18
    if ethertype == _ETH_IP:
        if n < off + 40 or frame[off] != 0x45:
            return None
        total, frag, proto, src, dst, sport, dport, seq, ack, offflags = _IP4_TCP.unpack_from(
            frame, off
        )
        if frag & _IP4_FRAG_MASK or proto != _IP_PROTO_TCP or total < 40:
            return None
        tcp_at = off + 20
        end = off + total
        src_text, dst_text = _inet_ntoa(src), _inet_ntoa(dst)
    elif ethertype == _ETH_IP6:
        if n < off + 60 or frame[off] >> 4 != 6:
            return None
        plen, nxt, src, dst, sport, dport, seq, ack, offflags = _IP6_TCP.unpack_from(frame, off)
        if nxt != _IP_PROTO_TCP or plen < 20:
            return None
        tcp_at = off + 40
        end = tcp_at + plen
        src_text, dst_text = _ntop6(src), _ntop6(dst)
    else:
        return None
    data_at = tcp_at + ((offflags >> 12) << 2)
    if data_at < tcp_at + 20 or data_at > min(end, n):
        return None
    if end <= n:
        return Segment(ts, src_text, dst_text, sport, dport, seq, ack, offflags & 0x1FF,
                       frame[data_at:end], vlan)  # fmt: skip
    return Segment(ts, src_text, dst_text, sport, dport, seq, ack, offflags & 0x1FF,
                   frame[data_at:], vlan, end - n)  # fmt: skip


def _decode_ethernet_fast(ts: float, frame: bytes) -> Decoded:
    """LINKTYPE_ETHERNET: the struct fast path, else dpkt."""
    seg = _fast_ethernet(ts, frame)
    return seg if seg is not None else _decode_ethernet(ts, frame)


def _cooked(header: Any, ts: float, frame: bytes) -> Decoded:
    """A Linux cooked capture header (SLL or SLL2), then what its ethertype says."""
    try:
        sll = header(frame)
    except dpkt.NeedData:
        return DropReason.TRUNCATED
    except _PARSE_ERRORS:
        return DropReason.BAD_LINK_HEADER
    return _from_l3(ts, sll.ethtype, sll.data, None)


def _decode_sll(ts: float, frame: bytes) -> Decoded:
    """LINKTYPE_LINUX_SLL: a 16-byte cooked header ending in the ethertype."""
    return _cooked(dpkt.sll.SLL, ts, frame)


def _decode_sll2(ts: float, frame: bytes) -> Decoded:
    """LINKTYPE_LINUX_SLL2: a 20-byte cooked header starting with the ethertype."""
    return _cooked(dpkt.sll2.SLL2, ts, frame)


def _decode_raw(ts: float, frame: bytes) -> Decoded:
    """LINKTYPE_RAW (and DLT 12/14): an IP packet, version in the first nibble."""
    if not frame:
        return DropReason.TRUNCATED
    version = frame[0] >> 4
    if version == 4:
        return _from_raw4(ts, frame, None)
    if version == 6:
        return _from_raw6(ts, frame, None)
    return DropReason.NOT_IP


def _decode_ipv4(ts: float, frame: bytes) -> Decoded:
    """LINKTYPE_IPV4: an IPv4 packet."""
    return _from_raw4(ts, frame, None)


def _decode_ipv6(ts: float, frame: bytes) -> Decoded:
    """LINKTYPE_IPV6: an IPv6 packet."""
    return _from_raw6(ts, frame, None)


def _decode_loopback(ts: float, frame: bytes) -> Decoded:
    """LINKTYPE_NULL (host-order family) and LINKTYPE_LOOP (network-order family)."""
    if len(frame) < 4:
        return DropReason.TRUNCATED
    try:
        # dpkt accepts the family in either byte order, which covers both link types.
        lo = dpkt.loopback.Loopback(frame)
    except _PARSE_ERRORS:
        return _loopback_error(frame)
    if lo.family == _AF_INET:
        return _from_l3(ts, _ETH_IP, lo.data, None)
    if lo.family in _AF_INET6:
        return _from_l3(ts, _ETH_IP6, lo.data, None)
    return DropReason.NOT_IP


def _loopback_error(frame: bytes) -> DropReason:
    """Why dpkt's loopback decoding (which parses IP eagerly) failed."""
    # Families are small numbers, so the smaller reading is the right byte order.
    family = min(_FAMILY_BE.unpack_from(frame)[0], _FAMILY_LE.unpack_from(frame)[0])
    if family == _AF_INET:
        return _ip4_error(frame[4:])
    if family in _AF_INET6:
        return _ip6_error(frame[4:])
    return DropReason.NOT_IP


def _unsupported(ts: float, frame: bytes) -> Decoded:
    """Any link type not listed in LinkType."""
    return DropReason.UNSUPPORTED_LINKTYPE


_DECODERS: dict[int, Decoder] = {
    LinkType.NULL: _decode_loopback,
    LinkType.ETHERNET: _decode_ethernet_fast,
    LinkType.RAW_BSD: _decode_raw,
    LinkType.RAW_OPENBSD: _decode_raw,
    LinkType.RAW: _decode_raw,
    LinkType.LOOP: _decode_loopback,
    LinkType.LINUX_SLL: _decode_sll,
    LinkType.IPV4: _decode_ipv4,
    LinkType.IPV6: _decode_ipv6,
    LinkType.LINUX_SLL2: _decode_sll2,
}

SUPPORTED_LINKTYPES = frozenset(_DECODERS)


def decoder_for(linktype: int) -> Decoder:
    """The frame decoder for a pcap link type; unknown types decode every frame to a drop."""
    return _DECODERS.get(linktype, _unsupported)
