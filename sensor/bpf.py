"""BPF programs that let libpcap drop non-DICOM traffic before Python sees it.

The filter has two parts. *Heads* admits any TCP segment whose payload could start
an association or carry a DIMSE command PDU mid-stream (IPv4 and IPv6, untagged,
802.1Q and QinQ). *Flows* admits every segment of the connections Python is
following. The reader recompiles the filter when that set changes, so a single pass
(standard input included) reads only candidate heads and the flows they started.
"""

from __future__ import annotations

from dataclasses import dataclass

# Byte K of the TCP payload, and the payload length, for IPv4 and for IPv6 without
# extension headers (libpcap cannot index past IPv6 extension headers).
_P4 = "tcp[((tcp[12:1] & 0xf0) >> 2) + {k}{w}]"
_L4 = "(ip[2:2] - ((ip[0:1] & 0x0f) << 2) - ((tcp[12:1] & 0xf0) >> 2))"
_P6 = "ip6[40 + ((ip6[52:1] & 0xf0) >> 2) + {k}{w}]"
_L6 = "(ip6[4:2] - ((ip6[52:1] & 0xf0) >> 2))"


def _heads(payload: str, length: str) -> str:
    def p(k: int, width: str = "") -> str:
        return payload.format(k=k, w=width)

    # A-ASSOCIATE-RQ/AC: type 1 or 2, reserved 0, protocol version 1 at offset 6.
    assoc = f"(({p(0, ':2')} = 0x0100 or {p(0, ':2')} = 0x0200) and {p(6, ':2')} = 0x0001)"
    # P-DATA-TF under 16 MiB whose first PDV is a command fragment on an odd context.
    pdata = f"({p(0, ':2')} = 0x0400 and {p(2)} = 0 and ({p(10)} & 1) = 1 and ({p(11)} & 0xfd) = 1)"
    # A PDU header split over tiny segments: too short to test more, let Python look.
    tiny = f"({length} > 0 and {length} < 12 and ({p(0)} = 1 or {p(0)} = 2 or {p(0)} = 4))"
    # Most payloads fail the first test, one load: a PDU type byte is 1 to 7.
    return f"(({p(0)} & 0xf8) = 0 and ({assoc} or {pdata} or {tiny}))"


HEADS = f"((ip and tcp and {_heads(_P4, _L4)}) or (ip6 and ip6[6] = 6 and {_heads(_P6, _L6)}))"


@dataclass(frozen=True, slots=True)
class Term:
    """Traffic to admit: one endpoint (a DICOM service), or one connection when both are set."""

    ip: str
    port: int
    peer_ip: str | None = None
    peer_port: int | None = None

    def expression(self) -> str:
        """The BPF expression for this term."""
        if self.peer_ip is None:
            return f"(host {self.ip} and port {self.port})"
        hosts = f"host {self.ip} and host {self.peer_ip}"
        return f"({hosts} and port {self.port} and port {self.peer_port})"


def vlan_wrapped(inner: str) -> str:
    """Admit ``inner`` untagged, under one 802.1Q/802.1ad tag, or under two (QinQ).

    libpcap's ``vlan`` moves the offsets of everything that follows it in the whole
    expression, so nothing may be appended after a wrapped expression.
    """
    return f"({inner}) or (vlan and (({inner}) or (vlan and ({inner}))))"


ETHERNET = 1  # only Ethernet frames carry 802.1Q tags libpcap can step over


def heads_filter(linktype: int) -> str:
    """The first-pass filter for a capture of this link type."""
    return vlan_wrapped(HEADS) if linktype == ETHERNET else HEADS


def all_tcp_filter(linktype: int) -> str:
    """Every TCP segment, tagged or not, for one-pass reading."""
    return vlan_wrapped("tcp") if linktype == ETHERNET else "tcp"
