"""Suricata EVE JSON from the sensor's ECS alert and anomaly events.

Follows the EVE format of Suricata's user guide ("Eve JSON Format"): the common
section (``timestamp``, ``flow_id``, ``event_type``, the 5-tuple, ``proto``,
``app_proto``), then ``alert`` for alerts and ``anomaly`` for anomalies, plus a
``dicom`` object with what Suricata has no field for. See docs/fields-eve.md.
"""

from __future__ import annotations

from typing import Any

from .identity import endpoints_of, flow_id
from .jsonl import JsonLines

GID = 1
REV = 1
APP_PROTO = "dicom"  # unless the event's network.protocol names another dissector

# Suricata's severity runs from 1 (high) to 3 (low), as classification.config has it.
SEVERITY = {"critical": 1, "high": 1, "medium": 2, "low": 3, "info": 3}


def suricata_timestamp(iso_z: str) -> str:
    """``2026-11-24T23:22:33.326217Z`` as Suricata writes it: ``...33.326217+0000``."""
    if iso_z.endswith("Z"):
        return iso_z[:-1] + "+0000"
    if len(iso_z) > 6 and iso_z[-6] in "+-" and iso_z[-3] == ":":
        return iso_z[:-3] + iso_z[-2:]
    return iso_z


def _app_proto(event: dict[str, Any]) -> str:
    return str(event.get("network", {}).get("protocol") or APP_PROTO)


def _common(event: dict[str, Any], event_type: str) -> dict[str, Any]:
    """The common section every EVE record starts with."""
    src_ip, src_port, dst_ip, dst_port = endpoints_of(event)
    start = event["dicom"]["association"]["start"]
    out: dict[str, Any] = {
        "timestamp": suricata_timestamp(event["@timestamp"]),
        "flow_id": flow_id(src_ip, src_port, dst_ip, dst_port, start),
        "event_type": event_type,
    }
    vlan = event.get("network", {}).get("vlan")
    if vlan is not None:
        out["vlan"] = [vlan["id"]]
    out.update(
        {
            "src_ip": src_ip,
            "src_port": src_port,
            "dest_ip": dst_ip,
            "dest_port": dst_port,
            "proto": "TCP",
        }
    )
    network = event.get("network", {})
    if network.get("community_id"):
        out["community_id"] = network["community_id"]
    out["app_proto"] = _app_proto(event)
    observer = event.get("observer") or {}
    if observer.get("name"):
        out["host"] = observer["name"]  # Suricata's sensor-name
    interface = observer.get("ingress", {}).get("interface", {}).get("name")
    if interface:
        out["in_iface"] = interface
    return out


def _dicom_identity(event: dict[str, Any]) -> dict[str, Any]:
    dicom = event["dicom"]
    return {
        "calling_ae_title": dicom.get("calling_ae_title"),
        "called_ae_title": dicom.get("called_ae_title"),
        "association_start": suricata_timestamp(dicom["association"]["start"]),
    }


def eve_alert(event: dict[str, Any]) -> dict[str, Any]:
    """An ECS alert (``event.kind`` = ``alert``) as an EVE ``alert`` record."""
    rule = event["rule"]
    dicom = event["dicom"]
    ours = dicom["alert"]
    out = _common(event, "alert")
    out["alert"] = {
        "action": "allowed",  # a passive sensor never blocks
        "gid": GID,
        "signature_id": ours["signature_id"],
        "rev": REV,
        "signature": rule["name"],
        "category": rule["category"],
        "severity": SEVERITY[ours["severity"]],
    }
    extra = _dicom_identity(event)
    extra.update(
        {
            "src_zone": event["source"].get("zone"),
            "dest_zone": event["destination"].get("zone"),
            "rule_id": rule["id"],
            "severity": ours["severity"],
            "count": ours["count"],
            "action": event["event"]["action"],
            "first_seen": suricata_timestamp(event["event"]["start"]),
            "message": event.get("message"),
            "remediation": ours.get("remediation"),
            "reference": rule.get("reference"),
        }
    )
    # What the finding added (outcome, destinations, thresholds, ...), minus what is above;
    # another protocol's finding keeps its facts under its own name, as EVE does.
    app_proto = out["app_proto"]
    facts = dicom if app_proto == APP_PROTO else event.get(app_proto) or {}
    for key, value in facts.items():
        if key not in ("calling_ae_title", "called_ae_title", "association", "alert"):
            extra.setdefault(key, value)
    out[app_proto] = {k: v for k, v in extra.items() if v is not None}
    return out


def eve_anomaly(event: dict[str, Any]) -> dict[str, Any]:
    """An ECS anomaly (``event.dataset`` = ``dicom.anomaly``) as an EVE ``anomaly`` record.

    Parser errors are app-layer anomalies found by the protocol parser; a gap is lost
    TCP data, which Suricata reports as the stream event ``stream.reassembly_seq_gap``; an
    overlap whose copies differed is ``stream.reassembly_overlap_different_data``.
    """
    dicom = event["dicom"]
    ours = dicom["anomaly"]
    reason = ours["reason"]
    out = _common(event, "anomaly")
    if reason == "gap":
        out["anomaly"] = {"type": "stream", "event": "stream.reassembly_seq_gap"}
    elif reason == "overlap-mismatch":
        # Suricata's name for the same finding (STREAM_REASSEMBLY_OVERLAP_DIFFERENT_DATA).
        out["anomaly"] = {"type": "stream", "event": "stream.reassembly_overlap_different_data"}
    else:
        out["anomaly"] = {
            "type": "applayer",
            "event": reason.upper().replace("-", "_"),
            "layer": "proto_parser",
        }
    extra = _dicom_identity(event)
    extra.update({"reason": reason, "detail": ours["detail"], "sent_by": ours["sent_by"]})
    out["dicom"] = {k: v for k, v in extra.items() if v is not None}
    return out


def to_eve(event: dict[str, Any]) -> dict[str, Any] | None:
    """The EVE record for an ECS alert or anomaly event; None for anything else."""
    kind = event.get("event", {}).get("kind")
    if kind == "alert":
        return eve_alert(event)
    if event.get("event", {}).get("dataset") == "dicom.anomaly":
        return eve_anomaly(event)
    return None


class EveLines(JsonLines):
    """A JSON lines sink that writes the EVE form of each event it is given."""

    def write(self, obj: dict[str, Any]) -> None:
        """Write the event's EVE record (events with no EVE form are left out)."""
        eve = to_eve(obj)
        if eve is not None:
            super().write(eve)
