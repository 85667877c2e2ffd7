"""Drive a PolicyEngine the way the pipeline does: real sessions, real PDU bytes, FlowInfo."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dissectors.dicom import DicomSession
from dissectors.dicom.probe import DETECTED_BY_RQ
from sensor.flow.table import FlowInfo
from sensor.policy.alerts import alert_event
from sensor.policy.config import Config, load_config
from sensor.policy.engine import PolicyEngine
from sensor.policy.findings import Finding
from tests.dissectors.dicom import framing as f
from tests.dissectors.dicom import vectors as v

T0 = 1_700_000_000.0

# Hosts, one or more per zone of HOSPITAL below.
MODALITY = "10.10.0.5"
PACS = "10.10.0.10"
PACS_B = "10.10.0.11"
PACS_C = "10.10.0.12"
PACS6 = "fd00:10::10"
OFFICE = "10.30.0.7"
OFFICE2 = "10.30.0.8"
WARD = "10.40.0.9"
GUEST = "10.50.0.20"
VPN = "10.60.0.3"
EXT = "203.0.113.50"
EXT2 = "198.51.100.7"
EXT6 = "2001:db8::50"

# A hospital: radiology VLAN (IPv4 and IPv6), office, wards, guest Wi-Fi (untrusted),
# teleradiology VPN (DMZ). Everything else falls into the default zone "external".
HOSPITAL: dict[str, Any] = {
    "zones": {
        "radiology": {"cidrs": ["10.10.0.0/16", "fd00:10::/32"], "radiology": True},
        "office": {"cidrs": ["10.30.0.0/16"]},
        "wards": {"cidrs": ["10.40.0.0/16"], "trust": "internal"},
        "guest-wifi": {"cidrs": ["10.50.0.0/16"], "trust": "external"},
        "vpn": {"cidrs": ["10.60.0.0/16"], "trust": "dmz"},
    },
    "rules": {
        "ae-brute-force": {"threshold": 3, "window": 60},
        "association-sweep": {"hosts": 3, "ports": 3, "window": 300},
        "bulk-outbound": {
            "bytes_per_association": 800,
            "bytes_per_window": 1_000_000,
            "window": 3600,
        },
        "new-node": {"learning_period": 100},
        "new-ae-title": {"learning_period": 100},
        "new-port": {"learning_period": 100},
    },
}

# Strings that must never reach an alert: data set content and user identity secrets.
SECRETS = (
    v.CANARY.decode(),
    "CANARY-ID1",
    v.PASSCODE.decode(),
    "eyJhbGciOiJub25lIn0",
    "KRB5-TICKET",
    "saml:Assertion",
)


def write_config(tmp_path: Path, data: dict[str, Any], name: str = "zones.yaml") -> Path:
    """Write ``data`` as a YAML config file and return its path."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def hospital(tmp_path: Path, rules: dict[str, dict[str, Any]] | None = None) -> Config:
    """HOSPITAL with per-rule overrides merged in, loaded through load_config."""
    data = json.loads(json.dumps(HOSPITAL))
    for rule_id, settings in (rules or {}).items():
        data["rules"].setdefault(rule_id, {}).update(settings)
    return load_config(write_config(tmp_path, data))


@dataclass
class Association:
    """One association as fed: its session, flow identity and what it triggered."""

    info: FlowInfo
    session: DicomSession
    feeder: f.Feeder
    net: Net
    ts: float
    findings: list[tuple[str, Finding]] = field(default_factory=list)

    def feed(self, segments: Sequence[f.Segment], step: float = 0.01) -> list[Finding]:
        """Feed more segments (one PDU-ish chunk each), passing every event to the engine."""
        pairs: list[tuple[str, Finding]] = []
        for direction, chunk in segments:
            self.ts += step
            self.net.now = max(self.net.now, self.ts)
            for event in self.feeder.feed(direction, chunk, self.ts):
                found = self.net.engine.on_event(self.info, self.session, event)
                pairs.extend((type(event).__name__, x) for x in found)
        self.findings.extend(pairs)
        self.net.record(pairs)
        return [x for _, x in pairs]

    def close(self) -> list[Finding]:
        """End the association the way the flow table does: on_close."""
        found = self.net.engine.on_close(self.info, self.session)
        pairs = [("close", x) for x in found]
        self.findings.extend(pairs)
        self.net.record(pairs)
        return found


class Net:
    """A PolicyEngine and every finding it produced, each checked for leaks as an alert."""

    def __init__(self, config: Config, engine: PolicyEngine | None = None) -> None:
        self.engine = engine if engine is not None else PolicyEngine(config)
        self.findings: list[tuple[str, Finding]] = []
        self._port = 40000
        self.now = T0  # the latest packet time fed

    def tick(self, now: float) -> list[Finding]:
        """Packet time ``now`` passes: decisions due by then (trigger "tick")."""
        found = self.engine.tick(now)
        self.record([("tick", x) for x in found])
        return found

    def finish(self) -> list[Finding]:
        """End of capture: every pending decision is made (trigger "flush")."""
        found = self.engine.flush(self.now)
        self.record([("flush", x) for x in found])
        return found

    def record(self, pairs: list[tuple[str, Finding]]) -> None:
        """Check each finding for leaks as an alert event, and keep it."""
        for _, finding in pairs:
            text = json.dumps(alert_event(finding))
            for secret in SECRETS:
                assert secret not in text, f"{finding.rule.id} leaked {secret!r}"
        self.findings.extend(pairs)

    def open(self, src: str, dst: str, port: int = 104, ts: float = T0) -> Association:
        """A new TCP connection src -> dst:port whose first bytes (ORIGIN) are the RQ."""
        self._port += 1
        info = FlowInfo(src, self._port, dst, port, None, ts, ts + 60, True, src, self._port)
        session = DicomSession(DETECTED_BY_RQ)
        return Association(info, session, f.Feeder(session), self, ts)

    def run(
        self,
        src: str,
        dst: str,
        segments: Sequence[f.Segment],
        port: int = 104,
        ts: float = T0,
        close: bool = False,
    ) -> Association:
        """Open, feed every segment, optionally close."""
        assoc = self.open(src, dst, port, ts)
        assoc.feed(segments)
        if close:
            assoc.close()
        return assoc

    def of(self, rule_id: str) -> list[tuple[str, Finding]]:
        """(trigger, finding) pairs of one rule; the trigger is the event class or "close"."""
        return [(t, x) for t, x in self.findings if x.rule.id == rule_id]

    def rule_ids(self) -> set[str]:
        """Every rule that fired."""
        return {x.rule.id for _, x in self.findings}
