"""Suricata's EVE JSON field list, as explicit checks.

No Suricata package is available here (Debian 12 as configured ships none, and PyPI
has no EVE schema), so EVE records are checked against the fields Suricata documents
in its user guide ("Eve JSON Format": common section, event types alert and anomaly),
with the JSON types given for them in the schema of Suricata's source tree
(``etc/schema.json``: timestamp pattern, integer ids and ports, ``vlan`` as an array,
the closed key sets of ``alert`` and ``anomaly``). The one key Suricata itself would not
write is the app-layer object named after ``app_proto`` (``dicom``), which is how every
app-layer protocol adds its own fields to an EVE record.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+[+\-]\d+$")

# The common section (names and JSON types) that an EVE record of an app-layer flow has.
COMMON: dict[str, type | tuple[type, ...]] = {
    "timestamp": str,
    "flow_id": int,
    "parent_id": int,
    "pcap_cnt": int,
    "pcap_filename": str,
    "event_type": str,
    "vlan": list,
    "in_iface": str,
    "src_ip": str,
    "src_port": int,
    "dest_ip": str,
    "dest_port": int,
    "proto": str,
    "app_proto": str,
    "tx_id": int,
    "community_id": str,
    "host": str,  # the sensor-name of suricata.yaml, when set
}
REQUIRED = ("timestamp", "event_type")
EVENT_TYPES = ("alert", "anomaly")

ALERT_FIELDS: dict[str, type] = {
    "action": str,
    "gid": int,
    "signature_id": int,
    "rev": int,
    "signature": str,
    "category": str,
    "severity": int,
}
ALERT_OPTIONAL = ("rule", "xff", "metadata", "source", "target")
ALERT_ACTIONS = ("allowed", "blocked")

ANOMALY_FIELDS = ("type", "event", "code", "layer", "app_proto")
ANOMALY_TYPES = ("decode", "stream", "applayer", "unknown")
APPLAYER_LAYERS = ("proto_parser", "proto_detect", "parser")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def problems(obj: dict[str, Any], app_proto: str = "dicom") -> list[str]:
    """Every way ``obj`` departs from Suricata's documented EVE fields (empty when none)."""
    out: list[str] = []
    for key in REQUIRED:
        if key not in obj:
            out.append(f"missing {key}")
    for key, value in obj.items():
        if key in COMMON:
            want = COMMON[key]
            ok = _is_int(value) if want is int else isinstance(value, want)
            if not ok:
                out.append(f"{key}: {value!r} is not {want}")
        elif key not in (*EVENT_TYPES, app_proto):
            out.append(f"unknown top-level key {key!r}")
    if "timestamp" in obj and not TIMESTAMP.match(str(obj["timestamp"])):
        out.append(f"timestamp {obj['timestamp']!r} is not Suricata's format")
    for key in ("src_ip", "dest_ip"):
        if key in obj:
            try:
                ipaddress.ip_address(obj[key])
            except ValueError:
                out.append(f"{key} {obj[key]!r} is not an address")
    for key in ("src_port", "dest_port"):
        if _is_int(obj.get(key)) and not 0 <= obj[key] <= 65535:
            out.append(f"{key} {obj[key]} out of range")
    if _is_int(obj.get("flow_id")) and not 0 < obj["flow_id"] < 2**53:
        out.append("flow_id is not a positive JSON-safe integer")
    if "vlan" in obj and not all(_is_int(v) for v in obj["vlan"]):
        out.append("vlan is not an array of integers")
    if "proto" in obj and obj["proto"] not in ("TCP", "UDP", "ICMP", "IPV6-ICMP", "SCTP"):
        out.append(f"proto {obj['proto']!r}")
    event_type = obj.get("event_type")
    if event_type not in EVENT_TYPES:
        out.append(f"event_type {event_type!r} is not one this sensor writes")
    elif event_type not in obj:
        out.append(f"event_type {event_type} without its {event_type} object")
    for other in EVENT_TYPES:
        if other != event_type and other in obj:
            out.append(f"{other} object in an {event_type} record")
    if isinstance(obj.get("alert"), dict):
        out += _alert_problems(obj["alert"])
    if isinstance(obj.get("anomaly"), dict):
        out += _anomaly_problems(obj["anomaly"])
    if app_proto in obj and not isinstance(obj[app_proto], dict):
        out.append(f"{app_proto} is not an object")
    return out


def _alert_problems(alert: dict[str, Any]) -> list[str]:
    out = []
    for key, want in ALERT_FIELDS.items():
        if key not in alert:
            out.append(f"alert.{key} missing")
        elif not (_is_int(alert[key]) if want is int else isinstance(alert[key], want)):
            out.append(f"alert.{key}: {alert[key]!r} is not {want}")
    for key in alert:
        if key not in ALERT_FIELDS and key not in ALERT_OPTIONAL:
            out.append(f"unknown key alert.{key}")
    if alert.get("action") not in ALERT_ACTIONS:
        out.append(f"alert.action {alert.get('action')!r}")
    if alert.get("severity") not in (1, 2, 3, 4):
        out.append(f"alert.severity {alert.get('severity')!r}")
    return out


def _anomaly_problems(anomaly: dict[str, Any]) -> list[str]:
    out = []
    for key, value in anomaly.items():
        if key not in ANOMALY_FIELDS:
            out.append(f"unknown key anomaly.{key}")
        elif not isinstance(value, str):
            out.append(f"anomaly.{key} is not a string")
    kind = anomaly.get("type")
    if kind not in ANOMALY_TYPES:
        out.append(f"anomaly.type {kind!r}")
    if not anomaly.get("event"):
        out.append("anomaly.event missing")
    event = str(anomaly.get("event", ""))
    if kind == "decode" and not event.startswith("decoder."):
        out.append("decode events are named decoder.*")
    if kind == "stream" and not event.startswith("stream."):
        out.append("stream events are named stream.*")
    if kind == "applayer" and anomaly.get("layer") not in APPLAYER_LAYERS:
        out.append(f"anomaly.layer {anomaly.get('layer')!r}")
    if kind != "applayer" and "layer" in anomaly:
        out.append("anomaly.layer outside applayer anomalies")
    if ("code" in anomaly) != (kind == "unknown"):
        out.append("anomaly.code goes with type unknown only")
    return out
