"""The set of services and connections the reader follows, and the BPF filter admitting them."""

from __future__ import annotations

from collections import OrderedDict

from .bpf import ETHERNET, Term, all_tcp_filter, vlan_wrapped
from .decode import Segment

FlowKey4 = tuple[str, int, str, int]


def flow_key(seg: Segment) -> FlowKey4:
    """Both ends of a segment's connection, lower (ip, port) first."""
    a = (seg.src, seg.sport)
    b = (seg.dst, seg.dport)
    return (*a, *b) if a <= b else (*b, *a)


class TermSet:
    """Followed DICOM services (ip, port) and single connections; rebuilds the filter on change.

    Past ``max_terms`` the filter admits all of TCP (libpcap compiles in time quadratic in
    the expression) and Python applies the same head test to what the filter used to drop.
    """

    def __init__(self, linktype: int, max_terms: int, max_services: int = 32) -> None:
        self.linktype = linktype
        self.max_terms = max_terms
        self.max_services = max_services
        self.services: OrderedDict[tuple[str, int], None] = OrderedDict()
        self.flows: dict[FlowKey4, int | None] = {}  # connection -> its VLAN id
        self.tagged = False
        self.fallback = False
        self._installed: str | None = None

    def __bool__(self) -> bool:
        return bool(self.services or self.flows)

    def covers(self, seg: Segment) -> bool:
        """Whether the segment belongs to a followed service or connection."""
        services = self.services
        if services and ((seg.dst, seg.dport) in services or (seg.src, seg.sport) in services):
            return True
        return bool(self.flows) and flow_key(seg) in self.flows

    def add_service(self, ip: str, port: int) -> None:
        """Follow every connection to an acceptor's (ip, port)."""
        key = (ip, port)
        if key in self.services:
            self.services.move_to_end(key)
            return
        self.services[key] = None
        if len(self.services) > self.max_services:
            self.services.popitem(last=False)

    def add_flow(self, key: FlowKey4, vlan: int | None) -> None:
        """Follow one connection."""
        self.flows[key] = vlan

    def expression(self) -> str:
        """The second pass's filter: the followed services and connections."""
        terms = {Term(ip, port) for ip, port in self.services}
        terms |= {Term(a, pa, b, pb) for a, pa, b, pb in self.flows}
        if len(terms) > self.max_terms:
            self.fallback = True
            return all_tcp_filter(self.linktype)
        self.fallback = False
        inner = "tcp and (" + " or ".join(sorted(t.expression() for t in terms)) + ")"
        return vlan_wrapped(inner) if self.tagged and self.linktype == ETHERNET else inner

    def opening(self) -> str:
        """The filter a reader is opened with; later installs compare against it."""
        self._installed = self.expression()
        return self._installed
