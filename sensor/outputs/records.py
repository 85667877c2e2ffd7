"""The association record: one JSON object per DICOM association, ECS names where ECS has them."""

from __future__ import annotations

from collections import Counter
from typing import Any

from dissectors.base import Summarized
from dissectors.dicom.association import AssociationState, DicomSession
from dissectors.dicom.constants import status_class
from dissectors.dicom.dimse import DimseCommand
from dissectors.dicom.items import UserInformation
from dissectors.dicom.names import uid_name
from dissectors.dicom.vendors import vendor_for

from ..flow.endpoints import endpoints, generic_endpoints
from ..flow.table import FlowInfo
from ..timefmt import iso


def _implementation(ui: UserInformation | None) -> dict[str, Any] | None:
    if ui is None:
        return None
    out: dict[str, Any] = {}
    if ui.implementation_class_uid:
        out["class_uid"] = ui.implementation_class_uid
    if ui.implementation_version_name:
        out["version_name"] = ui.implementation_version_name
    vendor = vendor_for(ui.implementation_class_uid)
    if vendor:
        out["vendor"] = vendor
    return out or None


def _presentation_contexts(state: AssociationState) -> list[dict[str, Any]]:
    answers = {}
    if state.accept is not None:
        answers = {pc.context_id: pc for pc in state.accept.presentation_contexts}
    out = []
    if state.request is not None:
        for pc in state.request.presentation_contexts:
            item: dict[str, Any] = {
                "id": pc.context_id,
                "abstract_syntax": pc.abstract_syntax,
                "abstract_syntax_name": uid_name(pc.abstract_syntax),
                "transfer_syntaxes": list(pc.transfer_syntaxes),
            }
            answer = answers.get(pc.context_id)
            if answer is not None:
                item["result"] = answer.result_name
                if answer.result == 0:
                    item["accepted_transfer_syntax"] = answer.transfer_syntax
                    item["accepted_transfer_syntax_name"] = (
                        uid_name(answer.transfer_syntax) if answer.transfer_syntax else None
                    )
            elif state.reject is not None:
                item["result"] = "association-rejected"
            out.append(item)
    return out


def _user_identity(state: AssociationState) -> dict[str, Any] | None:
    ui = state.request.user_information if state.request is not None else None
    if ui is None or ui.user_identity is None:
        return None
    ident = ui.user_identity
    out: dict[str, Any] = {
        "type": ident.identity_type,
        "type_name": ident.type_name,
        "passcode_present": ident.passcode_present,
        "positive_response_requested": ident.positive_response_requested,
    }
    if ident.username is not None:
        out["username"] = ident.username
    ac_ui = state.accept.user_information if state.accept is not None else None
    if ident.positive_response_requested:
        out["server_response"] = ac_ui is not None and ac_ui.user_identity_response is not None
    return out


def _extended_negotiations(
    rq_ui: UserInformation | None, ac_ui: UserInformation | None
) -> list[dict[str, Any]]:
    """SOP class extended negotiation (0x56) of both sides, application information decoded."""
    out = []
    for side, ui in (("requestor", rq_ui), ("acceptor", ac_ui)):
        for ext in ui.extended_negotiations if ui else ():
            info = ext.application_information
            item: dict[str, Any] = {
                "side": side,
                "sop_class_uid": ext.sop_class_uid,
                "service": info.service,
                "length": info.length,
            }
            item.update(info.fields)
            out.append(item)
    return out


def envelope(
    info: FlowInfo, first: float, last: float, protocol: str, dataset: str
) -> dict[str, Any]:
    """What every record has: ECS time and event fields, and the network."""
    network: dict[str, Any] = {"transport": "tcp", "protocol": protocol}
    if info.vlan is not None:
        network["vlan"] = {"id": info.vlan}
    return {
        "@timestamp": iso(last),
        "event": {
            "kind": "event",
            "category": ["network"],
            "type": ["connection", "protocol"],
            "dataset": dataset,
            "start": iso(first),
            "end": iso(last),
            "duration": round((last - first) * 1e9),
        },
        "network": network,
    }


def build_record(info: FlowInfo, session: DicomSession) -> dict[str, Any]:
    """The association record for a finished (or still open) association."""
    state = session.state
    (src_ip, src_port), (dst_ip, dst_port), req_dir = endpoints(info, state)
    acc_dir = req_dir.other
    first = state.first_ts if state.first_ts is not None else info.first_ts
    last = max(state.last_ts or info.last_ts, info.last_ts)
    rq = state.request
    dicom: dict[str, Any] = {
        "calling_ae_title": rq.calling_ae_title if rq else None,
        "called_ae_title": rq.called_ae_title if rq else None,
        "association": {"result": state.result, "end": state.end},
        "detected_by": state.detected_by,
    }
    if rq is None and state.accept is not None:
        # The request was not captured; the accept echoes both AE titles.
        dicom["calling_ae_title"] = state.accept.calling_ae_title
        dicom["called_ae_title"] = state.accept.called_ae_title
    if state.reject is not None:
        rj = state.reject
        dicom["reject"] = {
            "result": rj.result,
            "result_name": rj.result_name,
            "source": rj.source,
            "source_name": rj.source_name,
            "reason": rj.reason,
            "reason_name": rj.reason_name,
        }
    if state.abort is not None:
        ab = state.abort
        dicom["abort"] = {
            "source": ab.source,
            "source_name": ab.source_name,
            "reason": ab.reason,
            "reason_name": ab.reason_name,
            "by": "requestor" if state.abort_by == req_dir else "acceptor",
        }
    if state.release_requested_by is not None:
        dicom["association"]["release_requested_by"] = (
            "requestor" if state.release_requested_by == req_dir else "acceptor"
        )
    contexts = _presentation_contexts(state)
    if contexts:
        dicom["presentation_contexts"] = contexts
    rq_ui = rq.user_information if rq else None
    ac_ui = state.accept.user_information if state.accept else None
    implementation = {}
    for side, ui in (("requestor", rq_ui), ("acceptor", ac_ui)):
        impl = _implementation(ui)
        if impl:
            implementation[side] = impl
    if implementation:
        dicom["implementation"] = implementation
    max_pdu = {}
    for side, ui in (("requestor", rq_ui), ("acceptor", ac_ui)):
        if ui is not None and ui.max_pdu_length is not None:
            max_pdu[side] = ui.max_pdu_length
    if max_pdu:
        dicom["max_pdu_length"] = max_pdu
    identity = _user_identity(state)
    if identity:
        dicom["user_identity"] = identity
    roles = [
        {"sop_class_uid": r.sop_class_uid, "scu_role": r.scu_role, "scp_role": r.scp_role}
        for r in (rq_ui.role_selections if rq_ui else ())
    ]
    if roles:
        dicom["role_selections"] = roles
    extended = _extended_negotiations(rq_ui, ac_ui)
    if extended:
        dicom["extended_negotiations"] = extended
    dicom["dimse"] = dict(sorted(state.dimse.items()))
    dicom["dimse_status"] = dict(sorted(state.dimse_status.items()))
    if state.move_destinations:
        dicom["move_destinations"] = list(state.move_destinations)
    if state.sop_classes:
        dicom["sop_classes"] = sorted(state.sop_classes)
    if state.failures:
        dicom["failures"] = [_failure(c) for c in state.failures]
        dicom["failure_count"] = state.failure_count
    req_c, acc_c = state.counters[req_dir], state.counters[acc_dir]
    dicom["pdata"] = {
        "pdus": req_c.pdata_pdus + acc_c.pdata_pdus,
        "bytes": req_c.pdata_bytes + acc_c.pdata_bytes,
        "bytes_by_direction": {"requestor": req_c.pdata_bytes, "acceptor": acc_c.pdata_bytes},
        "data_sets": req_c.data_sets + acc_c.data_sets,
        "data_set_bytes": req_c.data_set_bytes + acc_c.data_set_bytes,
    }
    anomalies = state.anomalies
    if info.overlap_mismatches:
        # The stream layer's finding (flow/stream.py): copies of the same bytes differed.
        anomalies = anomalies + Counter({"overlap-mismatch": info.overlap_mismatches})
    if anomalies:
        dicom["anomalies"] = sorted(anomalies)
        dicom["anomaly_counts"] = dict(sorted(anomalies.items()))
    if state.gaps:
        dicom["gaps"] = state.gaps
        dicom["missing_bytes"] = req_c.missing_bytes + acc_c.missing_bytes
    return {
        **envelope(info, first, last, "dicom", "dicom.association"),
        "source": {"ip": src_ip, "port": src_port},
        "destination": {"ip": dst_ip, "port": dst_port},
        "dicom": dicom,
    }


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _failure(command: DimseCommand) -> dict[str, Any]:
    """A failed or warning response and its details; the Error Comment by length only."""
    out: dict[str, Any] = {"command": command.name}
    if command.message_id_being_responded_to is not None:
        out["message_id_being_responded_to"] = command.message_id_being_responded_to
    if command.status is not None:
        out["status"] = f"0x{command.status:04X}"
        out["status_class"] = status_class(command.status).label
    if command.error_id is not None:
        out["error_id"] = command.error_id
    if command.offending_elements:
        out["offending_elements"] = [_tag(t) for t in command.offending_elements]
    if command.attribute_identifiers:
        out["attribute_identifiers"] = [_tag(t) for t in command.attribute_identifiers]
    if command.error_comment_length is not None:
        out["error_comment"] = {"present": True, "length": command.error_comment_length}
    return out


def build_generic_record(
    info: FlowInfo, session: Summarized, end: str, first_ts: float | None = None
) -> dict[str, Any]:
    """The record of a connection handled by a non-DICOM dissector (its summary under its name)."""
    summary = session.summary()
    protocol = next(iter(summary), "unknown")
    (src_ip, src_port), (dst_ip, dst_port) = generic_endpoints(info, session.originator())
    first = first_ts if first_ts is not None else info.first_ts
    last = info.last_ts
    return {
        **envelope(info, first, last, protocol, f"{protocol}.connection"),
        "source": {"ip": src_ip, "port": src_port},
        "destination": {"ip": dst_ip, "port": dst_port},
        "connection": {"end": end},
        **summary,
    }
