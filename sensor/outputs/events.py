"""Event objects (JSON lines) for anomalies; the policy adds alerts in the same shape."""

from __future__ import annotations

from typing import Any

from dissectors.dicom.association import DicomSession
from dissectors.dicom.events import Anomaly, GapDetected

from ..flow.endpoints import endpoints
from ..flow.stream import OverlapMismatch, StreamAnomaly
from ..flow.table import FlowInfo
from ..timefmt import iso


def association_identity(info: FlowInfo, session: DicomSession) -> dict[str, Any]:
    """The fields that let an analyst find the association in the capture."""
    state = session.state
    (src_ip, src_port), (dst_ip, dst_port), _ = endpoints(info, state)
    rq = state.request
    ae_source = rq if rq is not None else state.accept
    out: dict[str, Any] = {
        "source": {"ip": src_ip, "port": src_port},
        "destination": {"ip": dst_ip, "port": dst_port},
        "network": {"transport": "tcp", "protocol": "dicom"},
        "dicom": {
            "calling_ae_title": ae_source.calling_ae_title if ae_source else None,
            "called_ae_title": ae_source.called_ae_title if ae_source else None,
            "detected_by": state.detected_by,
            "association": {
                "start": iso(state.first_ts if state.first_ts is not None else info.first_ts)
            },
        },
    }
    if info.vlan is not None:
        out["network"]["vlan"] = {"id": info.vlan}
    return out


def anomaly_event(
    info: FlowInfo, session: DicomSession, event: Anomaly | GapDetected | OverlapMismatch
) -> dict[str, Any]:
    """An anomaly or gap as an ECS event (``event.kind`` = ``event``, never payload content)."""
    out = association_identity(info, session)
    _, _, requestor = endpoints(info, session.state)
    sent_by = "requestor" if event.direction == requestor else "acceptor"
    if isinstance(event, GapDetected):
        reason = "gap"
        detail = (
            f"{event.missing} bytes lost"
            if event.missing is not None
            else "an unknown number of bytes lost"
        )
        detail += "; framing kept" if event.resynchronised else "; resynchronising at the next PDU"
    elif isinstance(event, OverlapMismatch):
        reason = StreamAnomaly.OVERLAP_MISMATCH.value
        detail = (
            f"overlapping TCP segments carried different bytes ({event.count} here); "
            "the first copy was decoded"
        )
    else:
        reason = event.reason.value
        detail = event.detail
    out["@timestamp"] = iso(event.ts)
    out["event"] = {
        "kind": "event",
        "category": ["network"],
        "type": ["info"],
        "dataset": "dicom.anomaly",
        "action": reason,
        "start": out["dicom"]["association"]["start"],
        "end": iso(event.ts),
    }
    out["dicom"]["anomaly"] = {"reason": reason, "detail": detail, "sent_by": sent_by}
    out["message"] = f"DICOM anomaly ({reason}) in data sent by the {sent_by}: {detail}"
    return out
