"""Named zones of CIDRs with a role and a trust level; longest prefix wins."""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass
from enum import StrEnum

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Trust(StrEnum):
    """How far a zone is trusted."""

    INTERNAL = "internal"
    DMZ = "dmz"
    EXTERNAL = "external"


@dataclass(frozen=True, slots=True)
class Zone:
    """A named set of networks."""

    name: str
    trust: Trust
    radiology: bool
    networks: tuple[IPNetwork, ...]
    clinical_flag: bool = False  # wards, labs, HIS: where HL7 belongs (radiology counts too)

    @property
    def clinical(self) -> bool:
        """Whether clinical protocols belong here: a clinical or a radiology zone."""
        return self.clinical_flag or self.radiology


class ZoneMap:
    """Address to zone by longest prefix; addresses in no zone fall into ``default``."""

    def __init__(self, zones: tuple[Zone, ...], default: Zone, cache_size: int = 65536) -> None:
        self.zones = zones
        self.default = default
        self._cache: dict[str, Zone] = {}
        self._cache_size = cache_size
        # Per IP version: prefix lengths longest first, each with {network int: zone}.
        tables: dict[int, dict[int, dict[int, Zone]]] = {4: {}, 6: {}}
        for zone in zones:
            for net in zone.networks:
                by_len = tables[net.version].setdefault(net.prefixlen, {})
                by_len.setdefault(int(net.network_address), zone)
        self._tables = {
            version: sorted(by_len.items(), key=lambda kv: -kv[0])
            for version, by_len in tables.items()
        }

    @property
    def has_clinical(self) -> bool:
        """Whether any zone is clinical (or radiology)."""
        return self.default.clinical or any(zone.clinical for zone in self.zones)

    @property
    def has_radiology(self) -> bool:
        """Whether any zone is a radiology zone."""
        return self.default.radiology or any(zone.radiology for zone in self.zones)

    def lookup(self, address: str) -> Zone:
        """The zone of an IP address (text form)."""
        zone = self._cache.get(address)
        if zone is not None:
            return zone
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return self.default
        value = int(ip)
        bits = ip.max_prefixlen
        zone = self.default
        for prefixlen, nets in self._tables[ip.version]:
            hit = nets.get(value >> (bits - prefixlen) << (bits - prefixlen) if prefixlen else 0)
            if hit is not None:
                zone = hit
                break
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[sys.intern(address)] = zone
        return zone


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


DEFAULT_INTERNAL = Zone(
    "internal",
    Trust.INTERNAL,
    False,
    _nets(
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
        "fc00::/7", "::1/128", "fe80::/10",
    ),
)  # fmt: skip
DEFAULT_EXTERNAL = Zone("external", Trust.EXTERNAL, False, ())
