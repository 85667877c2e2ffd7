"""What the sensor follows, exactly, and the small BPF superset that admits it.

Python keeps the exact set: every DICOM service (acceptor address and port) seen to answer
or be asked, and single connections found mid-stream or opened with a tiny first segment.
Offline the set has no size limit (the second pass must see every service the first found);
live, where it would grow with every address for as long as the sensor runs, it keeps the
most recent ``LIVE_MAX_SERVICES`` services, each one it forgets counted. libpcap or the
kernel gets a superset whose size does not grow with the number of services: heads
(segments that may start an association), payloads of 1 to 9 bytes (a head cut into
pieces), and the TCP ports the followed services listen on, merged into at most
``max_terms`` port ranges when they are many.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from .bpf import ETHERNET, vlan_wrapped
from .decode import Segment

FlowKey4 = tuple[str, int, str, int]

# Linux hands out client ports from 32768 up, Windows from 49152: a mid-stream connection
# between a port below this and one above it is a client talking to the lower port.
EPHEMERAL_LOW = 32768
LIVE_MAX_SERVICES = 65_536  # live: the oldest service is forgotten beyond this (counted)
MAX_TERMS = 24  # libpcap's optimiser is quadratic in the terms: 24 compile in about 30 ms


def port_ranges(ports: list[int], max_terms: int) -> list[tuple[int, int]]:
    """Sorted ports as at most ``max_terms`` ranges: the widest gaps between them split.

    The filter may admit more than the followed ports (Python keeps the exact set), so
    nearby ports share a range and the filter's size stays bounded whatever their number.
    """
    if len(ports) <= max_terms:
        return [(p, p) for p in ports]
    gaps = sorted(range(1, len(ports)), key=lambda i: ports[i] - ports[i - 1], reverse=True)
    cuts = sorted(gaps[: max_terms - 1])
    out, start = [], 0
    for cut in [*cuts, len(ports)]:
        out.append((ports[start], ports[cut - 1]))
        start = cut
    return out


def flow_key(seg: Segment) -> FlowKey4:
    """Both ends of a segment's connection, lower (ip, port) first."""
    a = (seg.src, seg.sport)
    b = (seg.dst, seg.dport)
    return (*a, *b) if a <= b else (*b, *a)


def service_ports(key: FlowKey4) -> tuple[int, ...]:
    """The port(s) of a connection that the filter must admit to see all of it."""
    low, high = sorted((key[1], key[3]))
    if low < EPHEMERAL_LOW <= high:
        return (low,)
    return (low, high) if low != high else (low,)


@dataclass(slots=True)
class PrefilterStats:
    """How the prefilter has done; exported as dicom_sensor_prefilter_* metrics."""

    installs: int = 0  # filters compiled and installed
    tiny_heads: int = 0  # connections followed because a 1-9 byte payload may start a head
    late_flows: int = 0  # live: flows whose port the kernel filter admitted only at their head
    services: int = 0  # gauges, kept current by Followed
    connections: int = 0
    ports: int = 0
    services_forgotten: int = 0  # live: services dropped, oldest first, beyond max_services


class Followed:
    """The services and connections being followed, and the filter that admits them."""

    def __init__(self, heads: str, max_terms: int = MAX_TERMS) -> None:
        self.heads = heads
        self.max_terms = max_terms
        # An insertion-ordered set: live, the oldest go first beyond ``max_services``.
        self.services: dict[tuple[str, int], None] = {}
        self.max_services: int | None = None
        self.flows: dict[FlowKey4, int | None] = {}  # connection -> its VLAN id
        self._flow_ports: dict[FlowKey4, tuple[int, ...]] = {}  # the ports a flow added
        self._ports: dict[int, int] = {}  # port -> how many services and flows use it
        self.tagged = False
        # Ports admitted before any head names them (live: the usual DICOM ports, so the
        # first association to a service there loses nothing while its filter is reinstalled).
        self.base_ports: frozenset[int] = frozenset()
        self.stats = PrefilterStats()

    def __len__(self) -> int:
        return len(self.services) + len(self.flows)

    @property
    def ports(self) -> list[int]:
        """The TCP ports the filter admits beyond heads and tiny payloads."""
        return sorted(self.base_ports.union(self._ports))

    def covers(self, seg: Segment) -> bool:
        """Whether the segment belongs to a followed service or connection."""
        services = self.services
        if (seg.dst, seg.dport) in services or (seg.src, seg.sport) in services:
            return True
        return bool(self.flows) and flow_key(seg) in self.flows

    def add_service(self, ip: str, port: int) -> None:
        """Follow every connection to an acceptor's (ip, port)."""
        key = (ip, port)
        if key not in self.services:
            key = (sys.intern(ip), port)  # the address's one string (inventory, zones)
            limit = self.max_services
            if limit is not None and len(self.services) >= limit:
                # Its ongoing connections stay in the flow table; its next association is
                # followed again from its head (its handshake is not seen; see README).
                old_ip, old_port = next(iter(self.services))
                del self.services[(old_ip, old_port)]
                self._release_port(old_port)
                self.stats.services_forgotten += 1
            self.services[key] = None
            self._ports[port] = self._ports.get(port, 0) + 1
            self._gauges()

    def _release_port(self, port: int) -> None:
        left = self._ports[port] - 1
        if left:
            self._ports[port] = left
        else:
            del self._ports[port]

    def add_flow(self, key: FlowKey4, vlan: int | None) -> None:
        """Follow one connection."""
        if key not in self.flows:
            self.flows[key] = vlan
            # A connection on a port already admitted holds that port; else the ports that
            # admit it. Each is counted, so a port stays while any flow needs it.
            admitted = self.base_ports.union(self._ports)
            held = tuple({p for p in (key[1], key[3]) if p in admitted}) or service_ports(key)
            self._flow_ports[key] = held
            for port in held:
                self._ports[port] = self._ports.get(port, 0) + 1
            self._gauges()

    def drop_flow(self, key: FlowKey4) -> None:
        """Stop following one connection (it ended, or it is not DICOM after all)."""
        if key in self.flows:
            del self.flows[key]
            for port in self._flow_ports.pop(key, ()):
                self._release_port(port)
            self._gauges()

    def _gauges(self) -> None:
        stats = self.stats
        stats.services = len(self.services)
        stats.connections = len(self.flows)
        stats.ports = len(self._ports)

    def first_pass(self, linktype: int) -> str:
        """Heads and tiny payloads only, under any VLAN tags: a file's first pass."""
        return self._wrap(linktype, f"({self.heads})", True)

    def expression(self, linktype: int, any_tags: bool = False) -> str:
        """Heads, tiny payloads and the followed ports (as at most ``max_terms`` ranges).

        ``any_tags``: look under VLAN tags even if no tagged head was seen yet (one pass).
        """
        ports = self.ports
        if not ports:
            return self._wrap(linktype, f"({self.heads})", any_tags)
        # `tcp port` covers IPv4 and IPv6. Ports come first: a heads test that loads a
        # payload byte past the end of a short packet ends the whole program with "reject".
        listed = " or ".join(
            f"tcp port {lo}" if lo == hi else f"tcp portrange {lo}-{hi}"
            for lo, hi in port_ranges(ports, self.max_terms)
        )
        return self._wrap(linktype, f"{listed} or ({self.heads})", any_tags)

    def installed(self) -> None:
        """Count a filter compiled and installed."""
        self.stats.installs += 1

    def _wrap(self, linktype: int, inner: str, any_tags: bool) -> str:
        tags = any_tags or self.tagged
        return vlan_wrapped(inner) if tags and linktype == ETHERNET else inner
