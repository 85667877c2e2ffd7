"""What lets an analyst move from a record to other tools: Community ID, zones, observer.

Every record and event goes through :meth:`Pivots.enrich` on its way to the sinks. It
adds ``network.community_id`` (the key Zeek's conn.log and Suricata's flow records
share), the zones of both ends, ``observer.*`` (which sensor, and live which interface,
saw it), ``ecs.version``, ``related.ip`` and, last, a deterministic ``event.id``: a hash
of everything else in the object, so the same input read by the same sensor gives the
same ids.
"""

from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import dataclass, field
from typing import Any

from ..policy.config import Config
from ..policy.zones import ZoneMap
from .community import community_id

ECS_VERSION = "8.11.0"  # every ECS field the sensor writes is defined in this release
PRODUCT = "dicom-sensor"


def event_id(obj: dict[str, Any]) -> str:
    """32 hex digits of a BLAKE2b hash of the object without its own ``event.id``."""
    event = obj.get("event")
    if isinstance(event, dict) and "id" in event:
        obj = {**obj, "event": {k: v for k, v in event.items() if k != "id"}}
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


@dataclass(slots=True)
class Pivots:
    """Adds the pivot fields to records and events (see docs/fields-ecs.md)."""

    zones: ZoneMap
    seed: int = 0
    observer_name: str | None = None
    hostname: str = field(default_factory=socket.gethostname)
    interface: str | None = None  # live: the interface the triggering packet came in on

    @classmethod
    def from_config(cls, config: Config, interface: str | None = None) -> Pivots:
        """Pivots with the config's zones, Community ID seed and observer name."""
        return cls(config.zones, config.community_id_seed, config.observer_name,
                   interface=interface)  # fmt: skip

    def community_id(self, src_ip: str, src_port: int, dst_ip: str, dst_port: int) -> str:
        """The Community ID of a TCP flow with this sensor's seed."""
        return community_id(src_ip, src_port, dst_ip, dst_port, self.seed)

    def enrich(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Add the pivot fields in place; returns the object."""
        src, dst = obj.get("source"), obj.get("destination")
        ips: list[str] = []
        if isinstance(src, dict) and isinstance(dst, dict):
            for end in (src, dst):
                if "ip" in end and "zone" not in end:
                    end["zone"] = self.zones.lookup(end["ip"]).name
                if end.get("ip") is not None and end["ip"] not in ips:
                    ips.append(end["ip"])
            network = obj.setdefault("network", {})
            if (
                network.get("transport", "tcp") == "tcp"
                and src.get("ip") is not None
                and dst.get("ip") is not None
                and src.get("port") is not None
                and dst.get("port") is not None
            ):
                network["community_id"] = self.community_id(
                    src["ip"], src["port"], dst["ip"], dst["port"]
                )
        observer: dict[str, Any] = {
            "name": self.observer_name or self.hostname,
            "hostname": self.hostname,
            "type": "sensor",
            "product": PRODUCT,
        }
        if self.interface is not None:
            observer["ingress"] = {"interface": {"name": self.interface}}
        obj["observer"] = observer
        obj["ecs"] = {"version": ECS_VERSION}
        if ips:
            obj["related"] = {"ip": ips}
        event = obj.get("event")
        if isinstance(event, dict):
            event["id"] = event_id(obj)
        return obj
