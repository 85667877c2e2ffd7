"""Every DICOM node seen: how a hospital finds its shadow DICOM servers."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, TextIO

from dissectors.dicom.names import uid_name

from ..timefmt import iso
from .smallset import SmallSet

MAX_NODES = 20_000
MAX_ITEMS = 256


@dataclass(slots=True)
class Node:
    """One host that spoke DICOM."""

    ip: str
    zone: str
    first_seen: float
    last_seen: float
    ports: SmallSet[int] = field(default_factory=SmallSet)  # where it accepted associations
    # called AE titles it answered to
    scp_ae_titles: SmallSet[str] = field(default_factory=SmallSet)
    scu_ae_titles: SmallSet[str] = field(default_factory=SmallSet)  # calling AE titles it used
    implementation_class_uids: SmallSet[str] = field(default_factory=SmallSet)
    implementation_version_names: SmallSet[str] = field(default_factory=SmallSet)
    vendors: SmallSet[str] = field(default_factory=SmallSet)
    sop_classes: SmallSet[str] = field(default_factory=SmallSet)
    associations_as_scu: int = 0
    associations_as_scp: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The node as JSON-ready data."""
        roles = [
            r
            for r, n in (("SCU", self.associations_as_scu), ("SCP", self.associations_as_scp))
            if n
        ]
        return {
            "ip": self.ip,
            "zone": self.zone,
            "roles": roles,
            "ports": sorted(self.ports),
            "ae_titles": {"scp": sorted(self.scp_ae_titles), "scu": sorted(self.scu_ae_titles)},
            "implementation": {
                "class_uids": sorted(self.implementation_class_uids),
                "version_names": sorted(self.implementation_version_names),
                "vendors": sorted(self.vendors),
            },
            "sop_classes": [{"uid": u, "name": uid_name(u)} for u in sorted(self.sop_classes)],
            "associations": {
                "as_scu": self.associations_as_scu,
                "as_scp": self.associations_as_scp,
            },
            "first_seen": iso(self.first_seen),
            "last_seen": iso(self.last_seen),
        }


class Inventory:
    """DICOM nodes by IP address, bounded.

    ``overflow`` counts what the node bound turned away (associations of nodes beyond
    ``MAX_NODES``) and ``values_overflow`` the values beyond ``MAX_ITEMS`` of one field; both
    are exported in ``dicom_sensor_state_limited_total``. The association is still recorded.
    """

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.overflow = 0
        self.values_overflow = 0

    def _add(self, items: SmallSet[Any], value: Any) -> None:
        if value is None or value == "" or value in items:
            return
        if len(items) >= MAX_ITEMS:
            self.values_overflow += 1
            return
        # AE titles, UIDs and version names repeat across nodes: one string each.
        items.add(sys.intern(value) if isinstance(value, str) else value)

    def node(self, ip: str, zone: str, ts: float) -> Node | None:
        """The node for ``ip``, created on first sight (None when the inventory is full)."""
        node = self.nodes.get(ip)
        if node is None:
            if len(self.nodes) >= MAX_NODES:
                self.overflow += 1
                return None
            ip = sys.intern(ip)  # one string per address across the sensor's tables
            node = self.nodes[ip] = Node(ip, zone, ts, ts)
        node.first_seen = min(node.first_seen, ts)
        node.last_seen = max(node.last_seen, ts)
        return node

    def serves(self, ip: str, port: int) -> bool:
        """Whether a DICOM node accepted associations on this port."""
        node = self.nodes.get(ip)
        return node is not None and port in node.ports

    def knows_scp_ae_title(self, ae_title: str, except_zones: Collection[str] = ()) -> bool:
        """Whether a node answered to this AE title in an accepted association.

        Calling AE titles do not count: anyone can call with any title, so using one
        first must not make a C-MOVE destination look known. Nodes in ``except_zones`` (the
        external ones, for a C-MOVE destination) do not count either.
        """
        return any(
            ae_title in n.scp_ae_titles and n.zone not in except_zones for n in self.nodes.values()
        )

    def requestor(
        self,
        ip: str,
        zone: str,
        ts: float,
        ae: str | None,
        impl: tuple[str | None, str | None, str | None],
    ) -> None:
        """Note a requestor (SCU side) of an association."""
        node = self.node(ip, zone, ts)
        if node is None:
            return
        node.associations_as_scu += 1
        self._add(node.scu_ae_titles, ae)
        self._implementation(node, impl)

    def acceptor(
        self,
        ip: str,
        zone: str,
        ts: float,
        port: int,
        ae: str | None,
        impl: tuple[str | None, str | None, str | None],
    ) -> None:
        """Note an acceptor (SCP side) that answered an association."""
        node = self.node(ip, zone, ts)
        if node is None:
            return
        node.associations_as_scp += 1
        self._add(node.ports, port)
        self._add(node.scp_ae_titles, ae)
        self._implementation(node, impl)

    def sop_class(self, ip: str, sop_class: str | None) -> None:
        """A SOP class a node used in a DIMSE message."""
        node = self.nodes.get(ip)
        if node is not None:
            self._add(node.sop_classes, sop_class)

    def _implementation(self, node: Node, impl: tuple[str | None, str | None, str | None]) -> None:
        uid, version, vendor = impl
        self._add(node.implementation_class_uids, uid)
        self._add(node.implementation_version_names, version)
        self._add(node.vendors, vendor)

    def write_json(self, fh: TextIO) -> None:
        """All nodes as one JSON document (a list, sorted by address).

        Written node by node: a document of 20,000 nodes built whole would cost tens of MB
        for a moment, every minute of a live capture.
        """
        fh.write("[")
        for i, ip in enumerate(sorted(self.nodes)):
            text = json.dumps(self.nodes[ip].as_dict(), indent=1).replace("\n", "\n ")
            fh.write(("\n " if i == 0 else ",\n ") + text)
        fh.write("\n]\n" if self.nodes else "]\n")

    def write_csv(self, fh: TextIO) -> None:
        """All nodes as CSV, one row per node, multi-valued fields joined with spaces."""
        writer = csv.writer(fh)
        writer.writerow(["ip", "zone", "roles", "ports", "scp_ae_titles", "scu_ae_titles",
                         "implementation_class_uids", "implementation_version_names", "vendors",
                         "sop_classes", "sop_class_names", "associations_as_scu",
                         "associations_as_scp", "first_seen", "last_seen"])  # fmt: skip
        for ip in sorted(self.nodes):
            n = self.nodes[ip]
            d = n.as_dict()
            writer.writerow([
                n.ip, n.zone, " ".join(d["roles"]), " ".join(map(str, d["ports"])),
                " ".join(d["ae_titles"]["scp"]), " ".join(d["ae_titles"]["scu"]),
                " ".join(d["implementation"]["class_uids"]),
                " ".join(d["implementation"]["version_names"]),
                ";".join(d["implementation"]["vendors"]),
                " ".join(c["uid"] for c in d["sop_classes"]),
                ";".join(c["name"] or "" for c in d["sop_classes"]),
                n.associations_as_scu, n.associations_as_scp, d["first_seen"], d["last_seen"],
            ])  # fmt: skip
