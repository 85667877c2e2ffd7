"""Differential test: our decoder against pynetdicom 3.0.4 on pynetdicom's own encoded vectors.

pynetdicom's wheel ships the byte vectors its own test suite decodes
(``pynetdicom/tests/encoded_pdu_items.py``, ``encoded_dimse_msg.py``,
``encoded_dimse_n_msg.py``). Every ``bytes`` constant in those modules is found by
introspection, so a vector added or renamed upstream cannot be skipped silently: each is
classified by its framing (first byte and length fields) and the test fails on any vector it
cannot classify, and on any change in the number of vectors of each class.

Each vector is decoded by both sides and reduced to the same plain dict:

* PDUs (first byte 0x01-0x07, length field = size - 6): ``pynetdicom.pdu`` classes against
  ``dissectors.dicom.pdu.parse_pdu``. AE titles, protocol version, application context,
  presentation contexts (RQ: id, abstract syntax, transfer syntaxes; AC: id, result,
  transfer syntax), user information sub-items (max PDU length, implementation class UID and
  version name, asynchronous operations window, role selections, SOP class extended and
  common extended negotiation, user identity), RJ result/source/reason, abort source/reason,
  P-DATA PDV context ids and message control flags, and the DIMSE command each P-DATA holds.
* Items (first byte an item type, item length = size - 4): ``pynetdicom.pdu_items`` classes
  against our item decoders; an item our decoder only reads inside a PDU is wrapped in the
  smallest legal container (named in ``_wrap``), and only the wrapped item is compared.
* A PDV item (4-byte length = size - 4, then the context id) and PDV values (a message control
  header byte 0-3, then a fragment): pynetdicom's ``DIMSEMessage.decode_msg`` on a P-DATA
  primitive against our ``parse_pdata`` and ``parse_command``. Command fragments are
  compared element by element (command field, message ids, SOP class/instance UIDs, priority,
  data set type, status, move destination and originator, sub-operation counts, event and
  action type ids, error id, offending elements, attribute identifier list, error comment
  presence). Data set fragments: their kind and last flag only, since our decoder never
  decodes data set content (it may hold PHI; PS3.8 E.2 makes the fragment's kind and
  position all the Upper Layer says about it).

Secrets: the user identity passcode and token fields are compared by length only; the
passcode's text is asserted absent from everything our decoder returned.

Every difference that remains is listed in ``EXPECTED_DIFFERENCES`` with the part of the
standard that justifies it; every anomaly our decoder reports is listed in
``EXPECTED_ANOMALIES`` with the same. A listed difference or anomaly that no longer occurs
fails the test too, so the lists stay exact.
"""

from __future__ import annotations

import importlib
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pynetdicom
import pytest
from pynetdicom import pdu as pn_pdu
from pynetdicom import pdu_items as pn_items
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.pdu_primitives import P_DATA

from dissectors.dicom.dimse import DimseCommand, parse_command
from dissectors.dicom.errors import DicomError
from dissectors.dicom.items import ItemProblems, UserInformation, parse_user_information
from dissectors.dicom.limits import DEFAULT_LIMITS
from dissectors.dicom.pdu import (
    AAbort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
    parse_pdata,
    parse_pdu,
)

MODULES = ("encoded_pdu_items", "encoded_dimse_msg", "encoded_dimse_n_msg")
PDU_TYPES = range(0x01, 0x08)
ITEM_TYPES = {
    0x10,
    0x20,
    0x21,
    0x30,
    0x40,
    0x50,
    0x51,
    0x52,
    0x53,
    0x54,
    0x55,
    0x56,
    0x57,
    0x58,
    0x59,
}
_U32 = struct.Struct(">I")
_ITEM = struct.Struct(">BxH")


@dataclass(frozen=True)
class Vector:
    """One bytes constant of a pynetdicom test module, with the framing it was found to have."""

    module: str
    name: str
    data: bytes
    kind: str  # "pdu", "item", "pdv-item" or "pdv-value"

    @property
    def id(self) -> str:
        return f"{self.module}.{self.name}"


def classify(module: str, data: bytes) -> str | None:
    """The framing of a vector, from its first byte and length fields; None if unknown.

    The DIMSE modules hold PDV values only: a message control header byte (0-3, PS3.8 E.2),
    then a command or data set fragment. In the PDU module: a PDU is a type 0x01-0x07 with
    reserved byte 0; RJ, release and abort PDUs are exactly 10 bytes with length 4 (PS3.8
    9.3.4-9.3.8), RQ, AC and P-DATA at least a header (their length field is compared by
    decoding, so a vector whose length field is wrong is still a PDU). An item has an item
    type and an item length equal to its size less 4; a PDV item a 4-byte length equal to
    its size less 4 (PS3.8 9.3.5.1); anything else starting 0-3 is a PDV value.
    """
    if module != "encoded_pdu_items":
        return "pdv-value" if data and data[0] <= 3 else None
    kinds = []
    if len(data) >= 6 and data[0] in PDU_TYPES and data[1] == 0:
        declared = _U32.unpack_from(data, 2)[0]
        if data[0] in (1, 2, 4) or (len(data) == 10 and declared == 4):
            kinds.append("pdu")
    if (
        len(data) >= 4
        and data[0] in ITEM_TYPES
        and data[1] == 0
        and _ITEM.unpack_from(data, 0)[1] == len(data) - 4
    ):
        kinds.append("item")
    if len(data) >= 6 and _U32.unpack_from(data, 0)[0] == len(data) - 4:
        kinds.append("pdv-item")
    if not kinds and data and data[0] <= 3:
        kinds.append("pdv-value")
    return kinds[0] if len(kinds) == 1 else None


def discover() -> list[Vector]:
    """Every bytes constant of the three modules, classified; unclassifiable ones fail."""
    out = []
    for module in MODULES:
        mod = importlib.import_module(f"pynetdicom.tests.{module}")
        for name, value in vars(mod).items():
            if not isinstance(value, bytes):
                continue
            kind = classify(module, value)
            assert kind is not None, f"{module}.{name}: framing not recognised"
            out.append(Vector(module, name, value, kind))
    return out


VECTORS = discover()
BY_ID = {v.id: v for v in VECTORS}


def test_pynetdicom_version_and_vector_census() -> None:
    """The pin holds and every vector is accounted for, by module and framing."""
    assert pynetdicom.__version__ == "3.0.4"
    census = Counter((v.module, v.kind) for v in VECTORS)
    assert census == {
        ("encoded_pdu_items", "pdu"): 20,
        ("encoded_pdu_items", "item"): 21,
        ("encoded_pdu_items", "pdv-item"): 1,
        ("encoded_pdu_items", "pdv-value"): 1,
        ("encoded_dimse_msg", "pdv-value"): 20,
        ("encoded_dimse_n_msg", "pdv-value"): 23,
    }
    assert len(VECTORS) == 86


# ---------------------------------------------------------------- normalised views: theirs


def _s(value: Any) -> Any:
    """pynetdicom's UID / str values as plain str (pydicom strips a UID's NUL pad)."""
    return None if value is None else str(value)


def _pn_user_info(ui: Any) -> dict[str, Any]:
    out = _empty_user_info()
    for item in ui.user_data:
        out.update(_pn_sub_item(item, out))
    return out


def _pn_sub_item(item: Any, acc: dict[str, Any]) -> dict[str, Any]:
    """One user information sub-item of pynetdicom's, as the keys it sets."""
    if isinstance(item, pn_items.AsynchronousOperationsWindowSubItem):
        return {
            "async_operations_window": (
                item.max_operations_invoked,
                item.max_operations_performed,
            )
        }
    if isinstance(item, pn_items.SCP_SCU_RoleSelectionSubItem):
        return {
            "role_selections": [
                *acc["role_selections"],
                (_s(item.sop_class_uid), item.scu_role, item.scp_role),
            ]
        }
    if isinstance(item, pn_items.SOPClassExtendedNegotiationSubItem):
        app = item.service_class_application_information or b""
        return {
            "extended_negotiations": [
                *acc["extended_negotiations"],
                (_s(item.sop_class_uid), len(app)),
            ]
        }
    if isinstance(item, pn_items.SOPClassCommonExtendedNegotiationSubItem):
        related = tuple(_s(u) for u in item.related_general_sop_class_identification)
        entry = (_s(item.sop_class_uid), _s(item.service_class_uid), related)
        return {"common_extended_negotiations": [*acc["common_extended_negotiations"], entry]}
    if isinstance(item, pn_items.UserIdentitySubItemRQ):
        primary = item.primary or b""
        username = primary.decode() if item.user_identity_type in (1, 2) else None
        return {
            "user_identity": (
                item.user_identity_type,
                bool(item.positive_response_requested),
                username,
                len(primary),
                item.user_identity_type == 2 and bool(item.secondary),
            )
        }
    if isinstance(item, pn_items.UserIdentitySubItemAC):
        return {"user_identity_response": len(item.server_response or b"")}
    if isinstance(item, pn_items.MaximumLengthSubItem):
        return {"max_pdu_length": item.maximum_length_received}
    if isinstance(item, pn_items.ImplementationClassUIDSubItem):
        return {"implementation_class_uid": _s(item.implementation_class_uid)}
    if isinstance(item, pn_items.ImplementationVersionNameSubItem):
        return {"implementation_version_name": _s(item.implementation_version_name)}
    raise AssertionError(f"pynetdicom sub-item {type(item).__name__} not normalised")


def _pn_context_rq(item: Any) -> dict[str, Any]:
    return {
        "id": item.context_id,
        "abstract_syntax": _s(item.abstract_syntax),
        "transfer_syntaxes": [_s(t) for t in item.transfer_syntax],
    }


def _pn_context_ac(item: Any) -> dict[str, Any]:
    return {
        "id": item.context_id,
        "result": item.result,
        "transfer_syntax": _s(item.transfer_syntax) or None,
    }


PN_COMMAND_FIELDS = {
    "CommandField": "command_field",
    "MessageID": "message_id",
    "MessageIDBeingRespondedTo": "message_id_being_responded_to",
    "AffectedSOPClassUID": "affected_sop_class_uid",
    "RequestedSOPClassUID": "requested_sop_class_uid",
    "AffectedSOPInstanceUID": "affected_sop_instance_uid",
    "RequestedSOPInstanceUID": "requested_sop_instance_uid",
    "Priority": "priority",
    "CommandDataSetType": "command_data_set_type",
    "Status": "status",
    "MoveDestination": "move_destination",
    "NumberOfRemainingSuboperations": "remaining_suboperations",
    "NumberOfCompletedSuboperations": "completed_suboperations",
    "NumberOfFailedSuboperations": "failed_suboperations",
    "NumberOfWarningSuboperations": "warning_suboperations",
    "MoveOriginatorApplicationEntityTitle": "move_originator_ae_title",
    "MoveOriginatorMessageID": "move_originator_message_id",
    "EventTypeID": "event_type_id",
    "ActionTypeID": "action_type_id",
    "ErrorID": "error_id",
    "OffendingElement": "offending_elements",
    "AttributeIdentifierList": "attribute_identifiers",
    "ErrorComment": "error_comment_present",
}


def _pn_value(keyword: str, value: Any) -> Any:
    if keyword in ("OffendingElement", "AttributeIdentifierList"):
        values = value if isinstance(value, list | tuple) or hasattr(value, "__iter__") else [value]
        return [int(v) for v in values]
    if keyword == "ErrorComment":
        return True
    if hasattr(value, "__iter__") and not isinstance(value, str | bytes):
        return [int(v) if isinstance(v, int) else _s(v) for v in value]
    if isinstance(value, int):
        return int(value)
    return _s(value).strip() if value is not None else None


def _pn_command(ds: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for keyword, name in PN_COMMAND_FIELDS.items():
        if keyword in ds:
            out[name] = _pn_value(keyword, ds[keyword].value)
    return out


def _pn_pdv_value(data: bytes, context_id: int = 1) -> dict[str, Any]:
    """One PDV value decoded by pynetdicom's DIMSEMessage, the way its DUL hands it over."""
    msg = DIMSEMessage()
    primitive = P_DATA()
    primitive.presentation_data_value_list = [[context_id, data]]
    complete = msg.decode_msg(primitive)
    if msg.encoded_command_set.getvalue():
        is_last = msg.context_id is not None
        out: dict[str, Any] = {"kind": "command", "last": is_last}
        if is_last:
            out["command"] = _pn_command(msg.command_set)
        return out
    return {"kind": "data", "last": complete}


def theirs(vector: Vector) -> dict[str, Any]:
    """The vector as pynetdicom decodes it."""
    data = vector.data
    if vector.kind == "pdv-value":
        return _pn_pdv_value(data)
    if vector.kind == "pdv-item":
        item = pn_items.PresentationDataValueItem()
        item.decode(data)
        return {
            "context_id": item.presentation_context_id,
            **_pn_pdv_value(item.presentation_data_value, item.presentation_context_id),
        }
    if vector.kind == "item":
        return _pn_item(data)
    return _pn_pdu(data)


PN_ITEM_CLASSES = {
    0x10: pn_items.ApplicationContextItem,
    0x20: pn_items.PresentationContextItemRQ,
    0x21: pn_items.PresentationContextItemAC,
    0x30: pn_items.AbstractSyntaxSubItem,
    0x40: pn_items.TransferSyntaxSubItem,
    0x50: pn_items.UserInformationItem,
    0x51: pn_items.MaximumLengthSubItem,
    0x52: pn_items.ImplementationClassUIDSubItem,
    0x53: pn_items.AsynchronousOperationsWindowSubItem,
    0x54: pn_items.SCP_SCU_RoleSelectionSubItem,
    0x55: pn_items.ImplementationVersionNameSubItem,
    0x56: pn_items.SOPClassExtendedNegotiationSubItem,
    0x57: pn_items.SOPClassCommonExtendedNegotiationSubItem,
    0x58: pn_items.UserIdentitySubItemRQ,
    0x59: pn_items.UserIdentitySubItemAC,
}


def _empty_user_info() -> dict[str, Any]:
    return {
        "max_pdu_length": None,
        "implementation_class_uid": None,
        "implementation_version_name": None,
        "async_operations_window": None,
        "role_selections": [],
        "extended_negotiations": [],
        "common_extended_negotiations": [],
        "user_identity": None,
        "user_identity_response": None,
    }


def _pn_item(data: bytes) -> dict[str, Any]:
    item = PN_ITEM_CLASSES[data[0]]()
    item.decode(data)
    t = data[0]
    if t == 0x10:
        return {"application_context": _s(item.application_context_name) or None}
    if t == 0x20:
        return _pn_context_rq(item)
    if t == 0x21:
        return _pn_context_ac(item)
    if t == 0x30:
        return {"abstract_syntax": _s(item.abstract_syntax)}
    if t == 0x40:
        return {"transfer_syntax": _s(item.transfer_syntax)}
    if t == 0x50:
        return _pn_user_info(item)
    acc = _empty_user_info()
    acc.update(_pn_sub_item(item, acc))
    return acc


def _pn_pdu(data: bytes) -> dict[str, Any]:
    t = data[0]
    if t in (1, 2):
        pdu = (pn_pdu.A_ASSOCIATE_RQ if t == 1 else pn_pdu.A_ASSOCIATE_AC)()
        pdu.decode(data)
        if t == 1:
            called, calling = pdu.called_ae_title, pdu.calling_ae_title
            contexts = [_pn_context_rq(c) for c in pdu.presentation_context]
        else:
            called, calling = pdu.reserved_aet, pdu.reserved_aec
            contexts = [_pn_context_ac(c) for c in pdu.presentation_context]
        ui = pdu.user_information
        return {
            "pdu": t,
            "protocol_version": pdu.protocol_version,
            "called_ae_title": _s(called).strip(),
            "calling_ae_title": _s(calling).strip(),
            "application_context": _s(pdu.application_context_name),
            "contexts": contexts,
            "user_information": None if ui is None else _pn_user_info(ui),
        }
    if t == 3:
        pdu = pn_pdu.A_ASSOCIATE_RJ()
        pdu.decode(data)
        return {
            "pdu": t,
            "result": pdu.result,
            "source": pdu.source,
            "reason": pdu.reason_diagnostic,
        }
    if t == 4:
        pdu = pn_pdu.P_DATA_TF()
        pdu.decode(data)
        return {
            "pdu": t,
            "pdvs": [
                {
                    "context_id": p.presentation_context_id,
                    **_pn_pdv_value(p.presentation_data_value, p.presentation_context_id),
                }
                for p in pdu.presentation_data_value_items
            ],
        }
    if t in (5, 6):
        (pn_pdu.A_RELEASE_RQ if t == 5 else pn_pdu.A_RELEASE_RP)().decode(data)
        return {"pdu": t}
    pdu = pn_pdu.A_ABORT_RQ()
    pdu.decode(data)
    return {"pdu": t, "source": pdu.source, "reason": pdu.reason_diagnostic}


# ---------------------------------------------------------------- normalised views: ours


def _our_user_info(ui: UserInformation) -> dict[str, Any]:
    ident = ui.user_identity
    return {
        "max_pdu_length": ui.max_pdu_length,
        "implementation_class_uid": ui.implementation_class_uid,
        "implementation_version_name": ui.implementation_version_name,
        "async_operations_window": None
        if ui.async_operations_window is None
        else (
            ui.async_operations_window.max_operations_invoked,
            ui.async_operations_window.max_operations_performed,
        ),
        "role_selections": [(r.sop_class_uid, r.scu_role, r.scp_role) for r in ui.role_selections],
        "extended_negotiations": [
            (e.sop_class_uid, e.application_information_length) for e in ui.extended_negotiations
        ],
        "common_extended_negotiations": [
            (c.sop_class_uid, c.service_class_uid, c.related_general_sop_class_uids)
            for c in ui.common_extended_negotiations
        ],
        "user_identity": None
        if ident is None
        else (
            ident.identity_type,
            ident.positive_response_requested,
            ident.username,
            ident.primary_field_length,
            ident.passcode_present,
        ),
        "user_identity_response": None
        if ui.user_identity_response is None
        else ui.user_identity_response.server_response_length,
    }


def _our_command(cmd: DimseCommand) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in PN_COMMAND_FIELDS.values():
        if name == "error_comment_present":
            if cmd.error_comment_length is not None:
                out[name] = True
            continue
        value = getattr(cmd, name)
        if name in ("offending_elements", "attribute_identifiers"):
            if value:
                out[name] = list(value)
        elif value is not None:
            out[name] = value
    return out


def _our_pdv_values(pdata: PDataTF, body: bytes) -> tuple[list[dict[str, Any]], list[str]]:
    """Each PDV of a decoded P-DATA-TF, its command decoded when it is a last command fragment."""
    out, anomalies = [], [str(r) for r in pdata.anomalies]
    pos = 0
    for pdv in pdata.pdvs:
        value = body[pos + 6 : pos + 6 + pdv.length]
        entry: dict[str, Any] = {
            "context_id": pdv.context_id,
            "kind": "command" if pdv.is_command else "data",
            "last": pdv.is_last,
        }
        if pdv.is_command and pdv.is_last:
            cmd = parse_command(value)
            entry["command"] = _our_command(cmd)
            anomalies += [str(r) for r in cmd.anomalies]
        out.append(entry)
        pos += 6 + pdv.length
    return out, anomalies


# Fixed parts used to wrap an item our decoder reads only inside a PDU (PS3.8 9.3.2):
# protocol version 1, called "ANY-SCP", calling "ECHOSCU", 32 reserved bytes.
_FIXED = b"\x00\x01\x00\x00" + b"ANY-SCP".ljust(16) + b"ECHOSCU".ljust(16) + bytes(32)
_APP = b"\x10\x00\x00\x15" + b"1.2.840.10008.3.1.1.1"
_ABSTRACT = b"\x30\x00\x00\x11" + b"1.2.840.10008.1.1"
_TRANSFER = b"\x40\x00\x00\x11" + b"1.2.840.10008.1.2"
_CTX_RQ = b"\x20\x00\x00\x2e\x01\x00\x00\x00" + _ABSTRACT + _TRANSFER
_CTX_AC = b"\x21\x00\x00\x19\x01\x00\x00\x00" + _TRANSFER
_UI = b"\x50\x00\x00\x08" + b"\x51\x00\x00\x04\x00\x00\x40\x00"


def _pdu(pdu_type: int, body: bytes) -> bytes:
    return bytes([pdu_type, 0]) + _U32.pack(len(body)) + body


def _wrap(item: bytes) -> tuple[bytes, str]:
    """The smallest legal PDU holding ``item``, and which part of it the item became."""
    t = item[0]
    if t == 0x10:
        return _pdu(1, _FIXED + item + _CTX_RQ + _UI), "application_context"
    if t == 0x20:
        return _pdu(1, _FIXED + _APP + item + _UI), "context"
    if t == 0x21:
        return _pdu(2, _FIXED + _APP + item + _UI), "context"
    if t in (0x30, 0x40):
        inner = item + _TRANSFER if t == 0x30 else _ABSTRACT + item
        ctx = b"\x20\x00" + struct.pack(">H", 4 + len(inner)) + b"\x01\x00\x00\x00" + inner
        return _pdu(1, _FIXED + _APP + ctx + _UI), "context"
    return _pdu(1, _FIXED + _APP + _CTX_RQ + item), "user_information"


def ours(vector: Vector) -> tuple[dict[str, Any], list[str]]:
    """The vector as our decoder decodes it, and the anomalies it reported."""
    data = vector.data
    if vector.kind == "pdv-value":
        item = _U32.pack(len(data) + 1) + b"\x01" + data
        (entry,), anomalies = _our_pdv_values(parse_pdata(item), item)
        entry.pop("context_id")
        return entry, anomalies
    if vector.kind == "pdv-item":
        (entry,), anomalies = _our_pdv_values(parse_pdata(data), data)
        return entry, anomalies
    if vector.kind == "item":
        t = data[0]
        if 0x51 <= t <= 0x59:
            problems = ItemProblems()
            ui = parse_user_information(data, 0, len(data), DEFAULT_LIMITS, problems)
            return _our_user_info(ui), [str(r) for r in problems.reasons]
        whole, part = _wrap(data)
        decoded, anomalies = _our_pdu(whole)
        if part == "application_context":
            return {"application_context": decoded["application_context"]}, anomalies
        if part == "user_information":
            return decoded["user_information"], anomalies
        ctx = decoded["contexts"][0]
        if t == 0x30:
            return {"abstract_syntax": ctx["abstract_syntax"]}, anomalies
        if t == 0x40:
            return {"transfer_syntax": ctx["transfer_syntaxes"][0]}, anomalies
        return ctx, anomalies
    return _our_pdu(data)


def _our_pdu(data: bytes) -> tuple[dict[str, Any], list[str]]:
    pdu, size = parse_pdu(data)
    extra: dict[str, Any] = {}
    if size != len(data):
        # On the wire the PDU ends where its length field says (PS3.8 9.3.1): the rest
        # would start the next PDU.
        extra["bytes_after_pdu"] = len(data) - size
    if isinstance(pdu, AssociateRQ | AssociateAC):
        if isinstance(pdu, AssociateRQ):
            contexts = [
                {
                    "id": c.context_id,
                    "abstract_syntax": c.abstract_syntax,
                    "transfer_syntaxes": list(c.transfer_syntaxes),
                }
                for c in pdu.presentation_contexts
            ]
        else:
            contexts = [
                {"id": c.context_id, "result": c.result, "transfer_syntax": c.transfer_syntax}
                for c in pdu.presentation_contexts
            ]
        ui = pdu.user_information
        return {
            "pdu": data[0],
            "protocol_version": pdu.protocol_version,
            "called_ae_title": pdu.called_ae_title,
            "calling_ae_title": pdu.calling_ae_title,
            "application_context": pdu.application_context_name,
            "contexts": contexts,
            "user_information": None if ui is None else _our_user_info(ui),
            **extra,
        }, [str(r) for r in pdu.anomalies]
    if isinstance(pdu, AssociateRJ):
        return {"pdu": 3, "result": pdu.result, "source": pdu.source, "reason": pdu.reason}, []
    if isinstance(pdu, PDataTF):
        pdvs, anomalies = _our_pdv_values(pdu, data[6:])
        return {"pdu": 4, "pdvs": pdvs, **extra}, anomalies
    if isinstance(pdu, ReleaseRQ | ReleaseRP):
        return {"pdu": data[0]}, []
    assert isinstance(pdu, AAbort)
    return {"pdu": 7, "source": pdu.source, "reason": pdu.reason}, []


# ---------------------------------------------------------------- the comparison


def flatten(value: Any, path: str = "") -> dict[str, Any]:
    """Nested dicts and lists as {dotted path: leaf}, so differences name their field."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{path}.{k}" if path else k))
        return out
    if isinstance(value, list):
        out = {f"{path}#len": len(value)}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{path}[{i}]"))
        return out
    return {path: value}


def differences(vector: Vector) -> dict[str, tuple[Any, Any]]:
    """{field: (ours, theirs)} for every field where the two decoders disagree."""
    mine, _ = ours(vector)
    other = theirs(vector)
    a, b = flatten(mine), flatten(other)
    return {
        k: (a.get(k, "<absent>"), b.get(k, "<absent>"))
        for k in sorted(a.keys() | b.keys())
        if a.get(k, "<absent>") != b.get(k, "<absent>")
    }


# ---------------------------------------------------------------- what is expected to differ

# Vectors pynetdicom refuses (it raises while decoding or reading the field) and our decoder
# decodes, reporting the deviation: decode what a lenient peer accepts, flag what the
# standard forbids (design: leniency). {vector id: (text of their error, justification)}
EXPECTED_THEIR_ERRORS = {
    "encoded_pdu_items.a_associate_rq_called": (
        "must not consist entirely of spaces",
        "PS3.8 9.3.2 Table 9-11: an AE title of 16 spaces shall not be used; other peers "
        "(DCMTK with its default checks off) accept it, so we decode it and flag empty-value",
    ),
    "encoded_pdu_items.a_associate_rq_calling": (
        "must not consist entirely of spaces",
        "as a_associate_rq_called, for the calling AE title (PS3.8 Table 9-11)",
    ),
    "encoded_pdu_items.presentation_context_rq_utf8": (
        "Unable to decode",
        "PS3.5 9.1: a UID holds only digits and dots; ours keeps the context (masking the "
        "non-ASCII bytes as '?') and flags bad-value, so a rule still sees the context",
    ),
}

_MULTI = (
    "PS3.7 E.1 Table E.1-1: the sub-operation counts are US with VM 1; a second value is "
    "outside the standard. Ours keeps the first (what pydicom-based and Wireshark receivers "
    "act on) and flags extra-values; pydicom keeps the list"
)

# {vector id: {field: (ours, theirs, justification)}}
_AC_USER_LENGTH = (
    "PS3.8 9.3.3: the PDU length (184) counts the bytes that follow it; the vector has 198 "
    "(its 14-byte 0x59 sub-item is not counted). A receiver reads the PDU by its length "
    "field (pynetdicom's own DUL does, dul.py _read_pdu_data), so the user information "
    "item overruns the PDU: ours reports bad-length and keeps no user information, and the "
    "14 bytes would start the next PDU; pynetdicom's PDU.decode, given the bytes alone, "
    "ignores the length field"
)

EXPECTED_DIFFERENCES: dict[str, dict[str, tuple[Any, Any, str]]] = {
    "encoded_pdu_items.a_associate_ac_user": {
        "bytes_after_pdu": (14, "<absent>", _AC_USER_LENGTH),
        "user_information": (None, "<absent>", _AC_USER_LENGTH),
        **{
            f"user_information.{name}": ("<absent>", value, _AC_USER_LENGTH)
            for name, value in (
                ("async_operations_window", None),
                ("common_extended_negotiations#len", 0),
                ("extended_negotiations#len", 0),
                ("implementation_class_uid", "1.2.276.0.7230010.3.0.3.6.0"),
                ("implementation_version_name", "OFFIS_DCMTK_360"),
                ("max_pdu_length", 16384),
                ("role_selections#len", 0),
                ("user_identity", None),
                ("user_identity_response", 8),
            )
        },
    },
    "encoded_pdu_items.application_context_empty": {
        "application_context": (
            "",
            None,
            "PS3.8 9.3.2.1: the application context name is a UID of 1-64 characters; ours "
            "keeps what was sent (an empty value) and flags bad-value, theirs maps it to None",
        ),
    },
    "encoded_dimse_msg.c_move_rsp_cmd_with_dup": {
        **{
            f"command.{name}": (first, "<absent>", _MULTI)
            for name, first in (
                ("remaining_suboperations", 3),
                ("completed_suboperations", 1),
                ("failed_suboperations", 2),
                ("warning_suboperations", 4),
            )
        },
        **{
            f"command.{name}{suffix}": ("<absent>", value, _MULTI)
            for name, values in (
                ("remaining_suboperations", (3, 0)),
                ("completed_suboperations", (1, 0)),
                ("failed_suboperations", (2, 0)),
                ("warning_suboperations", (4, 0)),
            )
            for suffix, value in (("#len", 2), ("[0]", values[0]), ("[1]", values[1]))
        },
    },
}

# Every anomaly our decoder reports on a vector. {vector id: (reasons, justification)}
EXPECTED_ANOMALIES: dict[str, tuple[tuple[str, ...], str]] = {
    "encoded_pdu_items.a_associate_ac_user": (
        ("bad-length",),
        "PS3.8 9.3.3: the user information item runs past the PDU's declared length",
    ),
    "encoded_pdu_items.a_associate_rq_called": (
        ("empty-value",),
        "PS3.8 Table 9-11: a called AE title of spaces only shall not be used",
    ),
    "encoded_pdu_items.a_associate_rq_calling": (
        ("empty-value",),
        "PS3.8 Table 9-11: a calling AE title of spaces only shall not be used",
    ),
    "encoded_pdu_items.presentation_context_rq_utf8": (
        ("bad-value",),
        "PS3.5 9.1: the abstract syntax UID holds bytes other than digits and dots",
    ),
    "encoded_pdu_items.p_data_tf_rq": (
        ("bad-length",),
        "PS3.7 E.1: Command Group Length (0000,0000) says 58 bytes follow, 56 do",
    ),
    "encoded_pdu_items.application_context_empty": (
        ("bad-value",),
        "PS3.8 9.3.2.1: an application context name of zero length is no UID",
    ),
    "encoded_pdu_items.implementation_class_uid_empty": (
        ("bad-value",),
        "PS3.7 D.3.3.2.1: the implementation class UID is a UID (1-64 characters, PS3.5 9.1)",
    ),
    "encoded_pdu_items.implementation_version_name_empty": (
        ("empty-value",),
        "PS3.7 D.3.3.2.3: the implementation version name is 1 to 16 characters",
    ),
    "encoded_dimse_msg.c_move_rsp_cmd_with_dup": (
        ("bad-length", "extra-values"),
        "PS3.7 E.1: Command Group Length says 114 bytes follow, 138 do; four US elements "
        "of VM 1 carry two values each",
    ),
    "encoded_dimse_n_msg.n_set_rq_cmd_empty": (
        ("bad-value",),
        "PS3.7 10.3.3 Table 10.3-5: Requested SOP Class/Instance UID are mandatory UIDs; "
        "zero-length values are no UID (PS3.5 9.1)",
    ),
    "encoded_dimse_n_msg.n_create_rq_cmd_empty": (
        ("bad-value",),
        "PS3.7 10.3.5: an Affected SOP Instance UID sent with zero length is no UID (PS3.5 9.1)",
    ),
}

ALL_IDS = [v.id for v in VECTORS]


@pytest.mark.parametrize("vector_id", ALL_IDS)
def test_vector_decodes_as_pynetdicom_does(vector_id: str) -> None:
    """Field by field, both decoders agree except where listed (and justified) above."""
    vector = BY_ID[vector_id]
    mine, anomalies = ours(vector)
    expected_anomalies = EXPECTED_ANOMALIES.get(vector_id, ((), ""))[0]
    assert tuple(anomalies) == expected_anomalies
    if vector_id in EXPECTED_THEIR_ERRORS:
        text = EXPECTED_THEIR_ERRORS[vector_id][0]
        with pytest.raises(ValueError, match=text):
            theirs(vector)
        assert mine  # ours decoded it
        return
    expected = {k: v[:2] for k, v in EXPECTED_DIFFERENCES.get(vector_id, {}).items()}
    assert differences(vector) == expected


def test_expectations_name_real_vectors() -> None:
    """No expectation refers to a vector that does not exist (a stale entry would hide one)."""
    for table in (EXPECTED_THEIR_ERRORS, EXPECTED_DIFFERENCES, EXPECTED_ANOMALIES):
        assert set(table) <= set(BY_ID)
    for fields in EXPECTED_DIFFERENCES.values():
        for _ours, _theirs, why in fields.values():
            assert "PS3." in why
    for _reasons, why in EXPECTED_ANOMALIES.values():
        assert "PS3." in why
    for _text, why in EXPECTED_THEIR_ERRORS.values():
        assert "PS3." in why


def test_passcode_never_in_our_output() -> None:
    """The user identity passcode is compared by presence only and never kept by ours."""
    for vector in VECTORS:
        mine, _ = ours(vector)
        assert "p4ssw0rd" not in repr(mine)
    vector = BY_ID["encoded_pdu_items.user_identity_rq_user_pass"]
    assert ours(vector)[0]["user_identity"][4] is True


def test_reserved_bits_decoded_like_pynetdicom() -> None:
    """Each PDV value with bits 2-7 of its control header set decodes as pynetdicom decodes it.

    PS3.8 E.2: only bits 0 and 1 are meaningful and the rest are not tested by the receiver;
    pynetdicom tests only those two bits. Ours decodes the same command and flags
    reserved-bits.
    """
    for vector in VECTORS:
        if vector.kind != "pdv-value":
            continue
        for high in (0x04, 0x80, 0xFC):
            data = bytes([vector.data[0] | high]) + vector.data[1:]
            variant = Vector(vector.module, vector.name, data, "pdv-value")
            mine, anomalies = ours(variant)
            assert "reserved-bits" in anomalies
            plain, _ = ours(vector)
            assert mine == plain
            if vector.id not in EXPECTED_DIFFERENCES:
                assert flatten(mine) == flatten(theirs(variant))


def test_cut_vectors_fail_cleanly() -> None:
    """Every PDU vector cut short of its declared length raises DicomError, nothing else."""
    for vector in VECTORS:
        if vector.kind != "pdu":
            continue
        declared = _U32.unpack_from(vector.data, 2)[0]
        for cut in range(6 + declared):
            with pytest.raises(DicomError):
                parse_pdu(vector.data[:cut])
