"""Alert events (ECS JSON) from findings, with repeats folded per (rule, source, destination)."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..timefmt import iso
from .catalogue import REMEDIATIONS, RULES_BY_ID
from .findings import Finding

MAX_FOLDS = 65536
SOURCE_KEYED = frozenset({"association-sweep", "ae-brute-force"})


def alert_event(finding: Finding, count: int = 1, action: str = "detected",
                last_ts: float | None = None) -> dict[str, Any]:  # fmt: skip
    """The ECS alert for a finding; ``count`` is how many findings the event stands for
    (a folded event: the repeats since the key's `detected` event)."""
    rule = finding.rule
    spec = RULES_BY_ID[rule.id]
    remedy = REMEDIATIONS[rule.id]
    v = finding.view
    end = last_ts if last_ts is not None else finding.ts
    network: dict[str, Any] = {"transport": "tcp", "protocol": finding.protocol}
    if v.vlan is not None:
        network["vlan"] = {"id": v.vlan}
    dicom: dict[str, Any] = {
        "association": {"start": iso(v.first_ts)},
        "alert": {
            "count": count,
            "severity": rule.severity.value,
            "signature_id": spec.sid,
            "remediation": remedy.text,
        },
    }
    if finding.protocol == "dicom":
        dicom["calling_ae_title"] = v.calling_ae
        dicom["called_ae_title"] = v.called_ae
        dicom.update(finding.fields)
    return {
        "@timestamp": iso(end),
        "event": {
            "kind": "alert",
            "category": ["network", "intrusion_detection"],
            "type": ["info"],
            "dataset": "dicom.alert",
            "action": action,
            "severity": rule.severity.ecs,
            "start": iso(finding.ts),
            "end": iso(end),
        },
        "rule": {
            "id": rule.id,
            "name": spec.name,
            "category": spec.category,
            "description": spec.description,
            "reference": remedy.reference,
            "ruleset": "dicom-sensor",
        },
        "source": {"ip": v.requestor_ip, "port": v.requestor_port, "zone": v.requestor_zone.name},
        "destination": {"ip": v.acceptor_ip, "port": v.acceptor_port, "zone": v.acceptor_zone.name},
        "network": network,
        "dicom": dicom,
        **({} if finding.protocol == "dicom" else {finding.protocol: finding.fields}),
        "message": _message(finding.message, count, action),
    }


def _message(message: str, count: int, action: str) -> str:
    """The finding's sentence; a folded event says how many more times it happened."""
    if action != "folded":
        return message
    return f"{message} ({count} more time{'' if count == 1 else 's'})"


@dataclass(slots=True)
class _Fold:
    first: Finding
    opened: float
    last_ts: float
    repeats: int = 0


class AlertFolder:
    """Emit a finding at once; fold its repeats within ``window`` into one later event."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._open: OrderedDict[tuple[str, str, str], _Fold] = OrderedDict()

    def offer(self, finding: Finding) -> list[dict[str, Any]]:
        """Events to write now for this finding (none when it folds into an open alert)."""
        out = self.expire(finding.ts)
        # Sweeps and brute force go to many destinations: one alert per source.
        target = "" if finding.rule.id in SOURCE_KEYED else finding.view.acceptor_ip
        key = (finding.rule.id, finding.view.requestor_ip, target)
        fold = self._open.get(key)
        if fold is not None:
            fold.repeats += 1
            fold.last_ts = max(fold.last_ts, finding.ts)
            return out
        if len(self._open) >= MAX_FOLDS:
            _, oldest = self._open.popitem(last=False)
            out.extend(self._close(oldest))
        # The fold outlives the association: it keeps the finding without the parsed
        # A-ASSOCIATE-RQ (up to 128 presentation contexts, tens of KB), which no event uses.
        kept = finding
        if finding.view.request is not None:
            kept = dataclasses.replace(
                finding, view=dataclasses.replace(finding.view, request=None)
            )
        self._open[key] = _Fold(kept, finding.ts, finding.ts)
        out.append(alert_event(finding))
        return out

    def expire(self, now: float) -> list[dict[str, Any]]:
        """Close folds whose window has passed; their repeat counts come out as events."""
        out: list[dict[str, Any]] = []
        while self._open:
            key, fold = next(iter(self._open.items()))
            if fold.opened + self.window > now:
                break
            del self._open[key]
            out.extend(self._close(fold))
        return out

    def flush(self) -> list[dict[str, Any]]:
        """Close every fold (end of capture, shutdown)."""
        out: list[dict[str, Any]] = []
        for fold in self._open.values():
            out.extend(self._close(fold))
        self._open.clear()
        return out

    @staticmethod
    def _close(fold: _Fold) -> list[dict[str, Any]]:
        # The first finding was its own `detected` event: the folded one counts only the
        # repeats, so counts summed over events equal the findings counted in the metrics.
        if not fold.repeats:
            return []
        return [alert_event(fold.first, fold.repeats, "folded", fold.last_ts)]
