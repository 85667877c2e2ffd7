"""BPF programs that let libpcap drop non-DICOM traffic before Python sees it.

*Heads* admits any TCP segment whose payload could start an association or carry a
DIMSE command PDU mid-stream, and any payload of 1-9 bytes (IPv4 and IPv6, untagged,
802.1Q and QinQ). prefilter.py adds the ports of what is followed.
"""

from __future__ import annotations

from collections.abc import Sequence

from dissectors.base import Dissector, bpf_head_of
from dissectors.dicom.plugin import DICOM

PLAIN_DICOM_PORTS = frozenset({104, 11112, 4242})
TINY_PAYLOAD = 9  # payloads up to this long may be a head cut into pieces: always admitted

# Byte K of the TCP payload, and the payload length, for IPv4 and for IPv6 without
# extension headers (libpcap cannot index past IPv6 extension headers).
_P4 = "tcp[((tcp[12:1] & 0xf0) >> 2) + {k}{w}]"
_L4 = "(ip[2:2] - ((ip[0:1] & 0x0f) << 2) - ((tcp[12:1] & 0xf0) >> 2))"
_P6 = "ip6[40 + ((ip6[52:1] & 0xf0) >> 2) + {k}{w}]"
_L6 = "(ip6[4:2] - ((ip6[52:1] & 0xf0) >> 2))"


def heads_expression(dissectors: Sequence[Dissector]) -> str:
    """Segments any installed dissector may start a flow with, IPv4 and IPv6.

    A dissector without a BPF test makes every TCP segment with payload a head. Payloads
    of 1 to ``TINY_PAYLOAD`` bytes are admitted too: fewer bytes than any head test reads,
    they may be the first piece of a head cut into tiny segments.
    """

    def clauses(payload: str, length: str) -> str:
        def byte_at(k: int, width: int) -> str:
            return payload.format(k=k, w="" if width == 1 else f":{width}")

        tests = [bpf_head_of(d, byte_at, length) for d in dissectors]
        if any(t is None for t in tests):
            return f"({length} > 0)"
        # A TLS ClientHello to a port where plain DICOM is expected (reported as info).
        ports = " or ".join(f"tcp dst port {p}" for p in sorted(PLAIN_DICOM_PORTS))
        tls = f"(({ports}) and {byte_at(0, 2)} = 0x1603 and {byte_at(5, 1)} = 1)"
        tiny = f"({length} > 0 and {length} <= {TINY_PAYLOAD})"
        return "(" + " or ".join([tiny, *(t for t in tests if t), tls]) + ")"

    # TCP in IP fragments carries no port to follow: let them through to be counted.
    fragments = "(ip and ip[9] = 6 and (ip[6:2] & 0x3fff) != 0) or (ip6 and ip6[6] = 44)"
    v4 = f"(ip and tcp and {clauses(_P4, _L4)})"
    v6 = f"(ip6 and ip6[6] = 6 and {clauses(_P6, _L6)})"
    # First: a later clause may load past the end of a short fragment, which ends the program.
    return f"({fragments} or {v4} or {v6})"


HEADS = heads_expression([DICOM])


def vlan_wrapped(inner: str) -> str:
    """Admit ``inner`` untagged, under one 802.1Q/802.1ad tag, or under two (QinQ).

    libpcap's ``vlan`` moves the offsets of everything that follows it in the whole
    expression, so nothing may be appended after a wrapped expression.
    """
    return f"({inner}) or (vlan and (({inner}) or (vlan and ({inner}))))"


ETHERNET = 1  # only Ethernet frames carry 802.1Q tags libpcap can step over


def all_tcp_filter(linktype: int) -> str:
    """Every TCP segment, tagged or not, for one-pass reading."""
    return vlan_wrapped("tcp") if linktype == ETHERNET else "tcp"


def user_filter_problem(expr: str) -> str | None:
    """Why a user's ``--bpf`` cannot be used with the sensor's TCP filters, if it cannot."""
    import pcapy

    from .errors import one_line

    try:
        pcapy.compile(1, 65535, f"tcp and ({expr})", 1, 0)  # 1: Ethernet
    except pcapy.PcapError as exc:
        if "rejects all packets" in str(exc):
            return f"--bpf {expr!r} admits no TCP segment: the sensor would see nothing"
        return f"BPF filter does not compile: {one_line(exc)}"
    return None
