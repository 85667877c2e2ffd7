"""Whole PDUs through parse_pdu (PS3.8 9.3): real vectors, truncated and wrong-length ones."""

from __future__ import annotations

import pytest

from dissectors.dicom import DicomError, Reason, parse_pdu
from dissectors.dicom.constants import PDUType
from dissectors.dicom.items import (
    PresentationContextAC,
    PresentationContextRQ,
    RawItem,
    UserInformation,
)
from dissectors.dicom.pdu import (
    AAbort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    PresentationDataValue,
    ReleaseRP,
    ReleaseRQ,
)

from . import vectors as v
from .framing import associate

# No presentation context or no user information item left after the damage (PS3.8 9.3.2).
MISSING = Reason.MISSING_ITEM

DCMTK_USER_INFO = UserInformation(
    max_pdu_length=16384,
    implementation_class_uid="1.2.276.0.7230010.3.0.3.6.7",
    implementation_version_name="OFFIS_DCMTK_367",
)


def reason_of(data: bytes) -> Reason:
    with pytest.raises(DicomError) as info:
        parse_pdu(data)
    return info.value.reason


def test_associate_rq_dcmtk() -> None:
    pdu, size = parse_pdu(v.RQ_ECHO)
    assert size == len(v.RQ_ECHO) == 0xCD + 6
    assert pdu == AssociateRQ(
        protocol_version=1,
        called_ae_title="STORESCP",
        calling_ae_title="ECHOSCU",
        application_context_name="1.2.840.10008.3.1.1.1",
        presentation_contexts=(
            PresentationContextRQ(1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),
        ),
        user_information=DCMTK_USER_INFO,
    )


def test_associate_ac_dcmtk() -> None:
    pdu, size = parse_pdu(v.AC_ECHO)
    assert size == 0xB8 + 6
    assert pdu == AssociateAC(
        protocol_version=1,
        called_ae_title="STORESCP",
        calling_ae_title="ECHOSCU",
        application_context_name="1.2.840.10008.3.1.1.1",
        presentation_contexts=(PresentationContextAC(1, 0, "1.2.840.10008.1.2"),),
        user_information=DCMTK_USER_INFO,
    )
    assert pdu.presentation_contexts[0].result_name == "acceptance"


def test_associate_rq_pynetdicom_keeps_no_passcode() -> None:
    pdu, _ = parse_pdu(v.RQ_STORE)
    assert isinstance(pdu, AssociateRQ)
    assert pdu.anomalies == ()
    assert (pdu.called_ae_title, pdu.calling_ae_title) == ("PACS", "MODALITY")
    assert pdu.presentation_contexts == (
        PresentationContextRQ(1, v.CT_IMAGE_STORAGE, ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")),
        PresentationContextRQ(3, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),
    )
    ui = pdu.user_information
    assert ui is not None
    assert ui.max_pdu_length == 16382
    assert ui.implementation_class_uid == "1.2.826.0.1.3680043.9.3811.3.0.4"
    assert ui.implementation_version_name == "PYNETDICOM_304"
    assert ui.async_operations_window is not None
    assert ui.role_selections[0].sop_class_uid == v.CT_IMAGE_STORAGE
    assert (ui.role_selections[0].scu_role, ui.role_selections[0].scp_role) == (1, 0)
    identity = ui.user_identity
    assert identity is not None
    assert (identity.type_name, identity.username, identity.passcode_present) == (
        "username-and-passcode",
        "alice",
        True,
    )
    assert v.PASSCODE.decode() not in repr(pdu)
    assert "PASSCODE" not in repr(pdu)


def test_associate_ac_pynetdicom() -> None:
    pdu, _ = parse_pdu(v.AC_STORE)
    assert isinstance(pdu, AssociateAC)
    assert pdu.anomalies == ()
    assert pdu.presentation_contexts == (
        PresentationContextAC(1, 0, "1.2.840.10008.1.2"),
        PresentationContextAC(3, 3, "1.2.840.10008.1.2"),
    )
    assert pdu.presentation_contexts[1].result_name == "abstract-syntax-not-supported"
    assert pdu.user_information is not None
    assert pdu.user_information.user_identity_response is not None
    assert pdu.user_information.user_identity_response.server_response_length == 2


@pytest.mark.parametrize(
    ("data", "expected", "names"),
    [
        (v.RJ_CALLED_AE, AssociateRJ(1, 1, 7), ("rejected-permanent", "service-user",
                                                "called-ae-title-not-recognized")),
        (v.RJ_CONGESTION, AssociateRJ(2, 3, 1), ("rejected-transient",
                                                 "service-provider-presentation",
                                                 "temporary-congestion")),
    ],
)  # fmt: skip
def test_associate_rj(data: bytes, expected: AssociateRJ, names: tuple[str, str, str]) -> None:
    pdu, size = parse_pdu(data)
    assert (pdu, size) == (expected, 10)
    assert isinstance(pdu, AssociateRJ)
    assert (pdu.result_name, pdu.source_name, pdu.reason_name) == names


def test_pdata_echo_rq_and_rsp() -> None:
    # PDV length 0x46 counts context id and control: a 68-byte command fragment.
    assert parse_pdu(v.PDATA_ECHO_RQ) == (
        PDataTF((PresentationDataValue(1, True, True, 68),)),
        80,
    )
    assert parse_pdu(v.PDATA_ECHO_RSP) == (
        PDataTF((PresentationDataValue(1, True, True, 78),)),
        90,
    )


def test_pdata_several_pdvs() -> None:
    # Two PDVs: a 3-byte data set fragment on context 1 (not last), then a 1-byte last one.
    data = v.h("040000000010000000050100aabbcc000000030102dd")
    assert parse_pdu(data)[0] == PDataTF(
        (PresentationDataValue(1, False, False, 3), PresentationDataValue(1, False, True, 1))
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (v.RELEASE_RQ, ReleaseRQ()),
        (v.RELEASE_RP, ReleaseRP()),
        (v.ABORT_USER, AAbort(0, 0)),
        (v.ABORT_PROVIDER, AAbort(2, 2)),
    ],
)
def test_release_and_abort(data: bytes, expected: object) -> None:
    assert parse_pdu(data) == (expected, 10)


def test_abort_names() -> None:
    pdu, _ = parse_pdu(v.ABORT_PROVIDER)
    assert isinstance(pdu, AAbort)
    assert (pdu.source_name, pdu.reason_name) == ("service-provider", "unexpected-pdu")


def test_parse_pdu_leaves_what_follows() -> None:
    pdu, size = parse_pdu(v.RELEASE_RQ + v.RELEASE_RP)
    assert (pdu, size) == (ReleaseRQ(), 10)


@pytest.mark.parametrize(
    "data",
    [
        v.RQ_ECHO[:-1],  # one byte short of the RQ
        v.RQ_ECHO[:5],  # inside the PDU header
        v.AC_ECHO[:100],
        v.RJ_TRUNCATED,
        v.RELEASE_RQ_TRUNCATED,
        v.RELEASE_RP_TRUNCATED,
        v.ABORT_TRUNCATED,
        v.PDATA_TRUNCATED,
        v.PDATA_ECHO_RSP[:-1],
        v.PDATA_PDV_HEADER_CUT,
        b"",
    ],
)
def test_truncated(data: bytes) -> None:
    assert reason_of(data) is Reason.TRUNCATED


@pytest.mark.parametrize(
    "data",
    [
        v.RJ_LENGTH_5,
        v.RJ_LENGTH_3,
        v.RELEASE_RQ_LENGTH_8,
        v.RELEASE_RP_LENGTH_0,
        v.ABORT_LENGTH_6,
        v.PDATA_PDV_TOO_LONG,
        v.PDATA_EMPTY,
    ],
)
def test_wrong_length(data: bytes) -> None:
    assert reason_of(data) is Reason.BAD_LENGTH


@pytest.mark.parametrize("pdu_type", [0x01, 0x02])
def test_associate_shorter_than_68_is_bad_length(pdu_type: int) -> None:
    # The whole PDU is present; its length (64) cannot hold the 68-byte fixed part.
    # That is a wrong length, as the session itself reports it, not a truncation.
    data = bytes([pdu_type]) + v.RQ_LENGTH_64[1:]
    assert len(data) == 6 + 64
    assert reason_of(data) is Reason.BAD_LENGTH


def test_bad_type() -> None:
    # A control header with reserved bits set decodes (test_leniency.py); a type cannot.
    assert reason_of(v.UNKNOWN_PDU_TYPE) is Reason.BAD_TYPE
    assert reason_of(v.h("00000000000400000000")) is Reason.BAD_TYPE


def test_error_carries_reason_and_is_value_error() -> None:
    with pytest.raises(ValueError, match="bad-length"):
        parse_pdu(v.RJ_LENGTH_5)


def test_pdu_type_labels() -> None:
    assert PDUType.A_ASSOCIATE_RQ.label == "A-ASSOCIATE-RQ"
    assert PDUType.P_DATA_TF.label == "P-DATA-TF"


# ---- items inside an RQ or AC: anomalies, never fatal -----------------------------------


@pytest.mark.parametrize(
    ("items", "anomalies"),
    [
        ((v.ITEM_10, v.ITEM_20, v.ITEM_50), ()),
        ((v.ITEM_10_TRUNCATED,), (Reason.TRUNCATED, Reason.BAD_VALUE)),
        ((v.ITEM_10_OVER,), (Reason.BAD_LENGTH, Reason.BAD_VALUE)),
        ((v.ITEM_10, v.ITEM_20_TRUNCATED), (Reason.TRUNCATED,)),
        ((v.ITEM_10, v.ITEM_20_OVER), (Reason.BAD_LENGTH,)),
        ((v.ITEM_10, v.ITEM_20_SHORT), (Reason.BAD_LENGTH, Reason.MISSING_ITEM)),
        (
            (v.ITEM_10, v.ITEM_20_SUB_40_OVER),
            (Reason.BAD_LENGTH, Reason.BAD_VALUE, MISSING),
        ),
        (
            (v.ITEM_10, v.ITEM_20_SUB_30_TRUNCATED),
            (Reason.TRUNCATED, Reason.BAD_VALUE, MISSING),
        ),
        ((v.ITEM_10, v.ITEM_20_EVEN_ID), (Reason.BAD_VALUE, Reason.MISSING_ITEM)),
        ((v.ITEM_10, v.ITEM_20, v.ITEM_50_TRUNCATED), (Reason.TRUNCATED,)),
        ((v.ITEM_10, v.ITEM_20, v.ITEM_50_OVER), (Reason.BAD_LENGTH,)),
        ((v.ITEM_10, v.ITEM_UNKNOWN), (Reason.UNKNOWN_ITEM, Reason.MISSING_ITEM)),
        ((v.ITEM_10, v.ITEM_UNKNOWN_TRUNCATED), (Reason.TRUNCATED,)),
        ((v.ITEM_10, v.ITEM_UNKNOWN_OVER), (Reason.BAD_LENGTH,)),
        (
            (v.ITEM_10, v.ITEM_10),
            (Reason.BAD_VALUE, Reason.MISSING_ITEM),
        ),  # two app contexts, nothing else
        (
            (v.ITEM_10, v.ITEM_50, v.ITEM_50),
            (Reason.BAD_VALUE, Reason.MISSING_ITEM),
        ),  # two 0x50, no 0x20
    ],
)
def test_rq_item_anomalies(items: tuple[bytes, ...], anomalies: tuple[Reason, ...]) -> None:
    pdu, _ = parse_pdu(associate(0x01, *items))
    assert isinstance(pdu, AssociateRQ)
    assert pdu.anomalies == anomalies
    assert (pdu.called_ae_title, pdu.calling_ae_title) == ("STORESCP", "ECHOSCU")


@pytest.mark.parametrize(
    ("items", "anomalies"),
    [
        ((v.ITEM_10, v.ITEM_21, v.ITEM_50), ()),
        ((v.ITEM_10, v.ITEM_21_TRUNCATED), (Reason.TRUNCATED,)),
        ((v.ITEM_10, v.ITEM_21_OVER), (Reason.BAD_LENGTH,)),
        ((v.ITEM_10, v.ITEM_21_SHORT), (Reason.BAD_LENGTH, Reason.MISSING_ITEM)),
        ((v.ITEM_10, v.ITEM_21_RESULT_5), (Reason.BAD_VALUE, Reason.MISSING_ITEM)),
        (
            (v.ITEM_10, v.ITEM_20),
            (Reason.UNKNOWN_ITEM, Reason.MISSING_ITEM),
        ),  # an RQ context inside an AC
    ],
)
def test_ac_item_anomalies(items: tuple[bytes, ...], anomalies: tuple[Reason, ...]) -> None:
    pdu, _ = parse_pdu(associate(0x02, *items))
    assert isinstance(pdu, AssociateAC)
    assert pdu.anomalies == anomalies


def test_rq_items_decoded_around_damage() -> None:
    # The context and user information decode even though an unknown item sits between.
    pdu, _ = parse_pdu(associate(0x01, v.ITEM_10, v.ITEM_UNKNOWN, v.ITEM_20, v.ITEM_50))
    assert isinstance(pdu, AssociateRQ)
    assert pdu.unknown_items == (RawItem(0x60, 4, b"\x01\x02\x03\x04"),)
    assert pdu.presentation_contexts[0].abstract_syntax == "1.2.840.10008.1.1"
    assert pdu.user_information == DCMTK_USER_INFO


def test_rq_over_length_item_drops_it_only() -> None:
    pdu, _ = parse_pdu(associate(0x01, v.ITEM_10, v.ITEM_20_OVER))
    assert isinstance(pdu, AssociateRQ)
    assert pdu.application_context_name == "1.2.840.10008.3.1.1.1"
    assert pdu.presentation_contexts == ()


def test_rq_even_context_id_still_decoded() -> None:
    pdu, _ = parse_pdu(associate(0x01, v.ITEM_10, v.ITEM_20_EVEN_ID))
    assert isinstance(pdu, AssociateRQ)
    assert pdu.presentation_contexts[0].context_id == 2


def test_ac_rejected_context_has_no_transfer_syntax() -> None:
    pdu, _ = parse_pdu(associate(0x02, v.ITEM_10, v.ITEM_21_REJECTED, v.ITEM_50))
    assert isinstance(pdu, AssociateAC)
    assert pdu.anomalies == ()
    assert pdu.presentation_contexts == (PresentationContextAC(3, 3, None),)


def test_bad_fixed_part_values() -> None:
    # Protocol version 2 (bit 0 clear) and a BEL in the called AE title: bad-value.
    fixed = bytearray(v.ASSOCIATE_FIXED)
    fixed[0:2] = b"\x00\x02"
    fixed[5] = 0x07
    body = bytes(fixed) + v.ITEM_10
    data = b"\x01\x00" + len(body).to_bytes(4, "big") + body
    pdu, _ = parse_pdu(data)
    assert isinstance(pdu, AssociateRQ)
    assert pdu.anomalies == (Reason.BAD_VALUE, Reason.MISSING_ITEM)  # only 0x10 follows
    assert pdu.called_ae_title == "S?ORESCP"


def test_ae_titles_trimmed() -> None:
    # Leading and trailing spaces are not significant (PS3.5 AE VR).
    fixed = bytearray(v.ASSOCIATE_FIXED)
    fixed[4:20] = b"  PACS 1        "
    body = bytes(fixed) + v.ITEM_10
    pdu, _ = parse_pdu(b"\x01\x00" + len(body).to_bytes(4, "big") + body)
    assert isinstance(pdu, AssociateRQ)
    assert pdu.called_ae_title == "PACS 1"
