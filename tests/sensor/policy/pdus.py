"""Real PDUs for the policy tests: the shared vectors, plus pynetdicom 3.0.4's encoders.

Where a test needs AE titles, presentation contexts or a reject reason that no vector in
``tests/dissectors/dicom/vectors.py`` carries, the PDU is encoded here by pynetdicom's
``pdu`` classes from an ``A_ASSOCIATE`` primitive (as that file's pynetdicom vectors were),
never by hand. Everything else comes from the shared vectors and framing helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    UserIdentityNegotiation,
)
from pynetdicom.presentation import PresentationContext

from tests.dissectors.dicom import framing as f
from tests.dissectors.dicom import vectors as v

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
VERIFICATION = "1.2.840.10008.1.1"
PYNETDICOM_UID = "1.2.826.0.1.3680043.9.3811.3.0.4"
PYNETDICOM_VERSION = "PYNETDICOM_304"
# What nmap's dicom-ping / dicom-brute send (they impersonate DCMTK 3.6.2).
NMAP_UID = "1.2.276.0.7230010.3.0.3.6.2"
NMAP_VERSION = "OFFIS_DCMTK_362"


def _user_information(uid: str, version: str | None) -> list[Any]:
    ml = MaximumLengthNotification()
    ml.maximum_length_received = 16382
    ic = ImplementationClassUIDNotification()
    ic.implementation_class_uid = uid
    items: list[Any] = [ml, ic]
    if version is not None:
        iv = ImplementationVersionNameNotification()
        iv.implementation_version_name = version
        items.append(iv)
    return items


def _contexts(syntaxes: Sequence[str], result: int | None = None) -> list[PresentationContext]:
    out = []
    for index, syntax in enumerate(syntaxes):
        pc = PresentationContext()
        pc.context_id = 2 * index + 1
        pc.abstract_syntax = syntax
        pc.transfer_syntax = [IMPLICIT_LE]
        if result is not None:
            pc.result = result
        out.append(pc)
    return out


def rq(
    calling: str,
    called: str,
    syntaxes: Sequence[str] = (VERIFICATION,),
    *,
    uid: str = PYNETDICOM_UID,
    version: str | None = PYNETDICOM_VERSION,
    identity: tuple[int, bytes, bytes] | None = None,
) -> bytes:
    """An A-ASSOCIATE-RQ: context ids 1, 3, 5... one per abstract syntax, Implicit VR LE.

    ``identity`` is (user identity type, primary field, secondary field) for sub-item 0x58.
    """
    primitive = A_ASSOCIATE()
    primitive.application_context_name = APPLICATION_CONTEXT
    primitive.calling_ae_title = calling
    primitive.called_ae_title = called
    primitive.presentation_context_definition_list = _contexts(syntaxes)
    info = _user_information(uid, version)
    if identity is not None:
        ui = UserIdentityNegotiation()
        ui.user_identity_type = identity[0]
        ui.primary_field = identity[1]
        if identity[2]:
            ui.secondary_field = identity[2]
        info.append(ui)
    primitive.user_information = info
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def ac(calling: str, called: str, syntaxes: Sequence[str] = (VERIFICATION,)) -> bytes:
    """The A-ASSOCIATE-AC answering ``rq(calling, called, syntaxes)``: every context accepted."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = APPLICATION_CONTEXT
    primitive.calling_ae_title = calling
    primitive.called_ae_title = called
    primitive.presentation_context_definition_results_list = _contexts(syntaxes, result=0)
    primitive.user_information = _user_information(PYNETDICOM_UID, PYNETDICOM_VERSION)
    pdu = A_ASSOCIATE_AC()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def rj(result: int, source: int, reason: int) -> bytes:
    """An A-ASSOCIATE-RJ (PS3.8 9.3.4)."""
    primitive = A_ASSOCIATE()
    primitive.result = result
    primitive.result_source = source
    primitive.diagnostic = reason
    pdu = A_ASSOCIATE_RJ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def command(command_set: bytes, context_id: int = 1) -> bytes:
    """A P-DATA-TF carrying one whole DIMSE command set (a vector from ``vectors``)."""
    return f.pdata(f.pdv(context_id, f.COMMAND_LAST, command_set))


def identity_rq(sub_item_58: bytes) -> bytes:
    """DCMTK's echo RQ ("ECHOSCU" -> "STORESCP") with a user identity sub-item added."""
    return f.associate(
        0x01, v.ITEM_10, v.ITEM_20, f.user_info(v.SUB_51, v.SUB_52, v.SUB_55, sub_item_58)
    )
