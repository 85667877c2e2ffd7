"""SOP Class Extended Negotiation (0x56): service-class application information by PS3.4 layout.

Each vector is a whole 0x56 sub-item: type 0x56, reserved, length (2, BE), SOP class UID
length (2, BE), the UID, then the application information bytes the comment names.
"""

from __future__ import annotations

import struct

import pytest
from pynetdicom.tests import encoded_pdu_items as pn

from dissectors.dicom import DEFAULT_LIMITS
from dissectors.dicom.errors import Reason
from dissectors.dicom.extneg import decode_application_information, service_of
from dissectors.dicom.items import ItemProblems, UserInformation, parse_user_information

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
PATIENT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
WORKLIST = "1.2.840.10008.5.1.4.31"
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"


def sub56(uid: str, info: bytes) -> bytes:
    """A 0x56 sub-item for ``uid`` carrying ``info``."""
    value = struct.pack(">H", len(uid)) + uid.encode() + info
    return struct.pack(">BxH", 0x56, len(value)) + value


def decode(sub: bytes) -> tuple[UserInformation, list[Reason]]:
    problems = ItemProblems()
    ui = parse_user_information(sub, 0, len(sub), DEFAULT_LIMITS, problems)
    return ui, problems.reasons


def fields(sub: bytes) -> tuple[str | None, int, dict[str, int], list[Reason]]:
    ui, reasons = decode(sub)
    (ext,) = ui.extended_negotiations
    info = ext.application_information
    return info.service, info.length, dict(info.fields), reasons


def test_service_of_each_layout() -> None:
    assert service_of(CT_STORAGE) == "storage"
    assert service_of("1.2.840.10008.5.1.4.1.1.4") == "storage"  # MR Image Storage
    assert service_of(STUDY_FIND) == "query"
    assert service_of("1.2.840.10008.5.1.4.1.2.1.1") == "query"  # patient root FIND
    assert service_of(PATIENT_MOVE) == "retrieve"
    assert service_of(STUDY_GET) == "retrieve"
    assert service_of("1.2.840.10008.5.1.4.1.2.4.2") == "retrieve"  # composite instance root
    assert service_of(WORKLIST) == "worklist"
    assert service_of(STORAGE_COMMITMENT) is None  # PS3.4 J defines no such field
    assert service_of("1.2.840.10008.1.1") is None  # Verification
    # Under the storage arc but not a registered storage SOP class: no layout assumed.
    assert service_of("1.2.840.10008.5.1.4.1.1.999999") is None


def test_storage_six_bytes() -> None:
    # level 2 SCP, digital signature level 3, may coerce (PS3.4 Table B.3-1).
    assert fields(sub56(CT_STORAGE, b"\x02\x00\x03\x00\x01\x00")) == (
        "storage",
        6,
        {"level_of_support": 2, "level_of_digital_signature_support": 3, "element_coercion": 1},
        [],
    )


def test_storage_scu_only() -> None:
    # 3: SCU only; signature unspecified; 2: N/A, SCU only.
    assert fields(sub56(CT_STORAGE, b"\x03\x00\x00\x00\x02\x00"))[2] == {
        "level_of_support": 3,
        "level_of_digital_signature_support": 0,
        "element_coercion": 2,
    }


def test_storage_truncated_keeps_what_was_sent() -> None:
    # Only the level of support and its reserved byte: 2 bytes of 6.
    assert fields(sub56(CT_STORAGE, b"\x01\x00")) == (
        "storage",
        2,
        {"level_of_support": 1},
        [Reason.BAD_LENGTH],
    )


def test_storage_too_long() -> None:
    service, length, named, reasons = fields(sub56(CT_STORAGE, b"\x02\x00\x00\x00\x00\x00\x09"))
    assert (service, length) == ("storage", 7)
    assert named["level_of_support"] == 2
    assert reasons == [Reason.BAD_LENGTH]


def test_storage_values_outside_the_set() -> None:
    # Level of support 7, coercion 3: neither is defined.
    assert fields(sub56(CT_STORAGE, b"\x07\x00\x00\x00\x03\x00"))[3] == [Reason.BAD_VALUE]


def test_storage_reserved_byte_set() -> None:
    assert fields(sub56(CT_STORAGE, b"\x02\x00\x00\x80\x00\x00"))[3] == [Reason.RESERVED_BITS]


def test_query_one_to_seven_bytes() -> None:
    names = [
        "relational_queries",
        "date_time_matching",
        "fuzzy_semantic_matching",
        "timezone_query_adjustment",
        "enhanced_multi_frame_image_conversion",
        "empty_value_matching",
        "multiple_value_matching",
    ]
    for n in range(1, 8):
        info = bytes([1, 0, 1, 0, 1, 0, 1][:n])
        service, length, named, reasons = fields(sub56(STUDY_FIND, info))
        assert (service, length, reasons) == ("query", n, [])
        assert named == dict(zip(names[:n], info, strict=True))


def test_query_empty_and_too_long() -> None:
    assert fields(sub56(STUDY_FIND, b"")) == ("query", 0, {}, [Reason.BAD_LENGTH])
    _, length, named, reasons = fields(sub56(STUDY_FIND, b"\x01" * 8))
    assert (length, len(named), reasons) == (8, 7, [Reason.BAD_LENGTH])


def test_query_flag_outside_zero_one() -> None:
    _, _, named, reasons = fields(sub56(STUDY_FIND, b"\x01\x02"))
    assert named == {"relational_queries": 1, "date_time_matching": 2}
    assert reasons == [Reason.BAD_VALUE]


def test_retrieve_one_or_two_bytes() -> None:
    assert fields(sub56(PATIENT_MOVE, b"\x01")) == (
        "retrieve",
        1,
        {"relational_retrieval": 1},
        [],
    )
    assert fields(sub56(STUDY_GET, b"\x00\x01"))[2] == {
        "relational_retrieval": 0,
        "enhanced_multi_frame_image_conversion": 1,
    }
    # Three bytes: the C-FIND layout sent on a C-MOVE class.
    assert fields(sub56(PATIENT_MOVE, b"\x01\x01\x01"))[3] == [Reason.BAD_LENGTH]


def test_worklist_four_bytes() -> None:
    assert fields(sub56(WORKLIST, b"\x01\x01\x00\x01")) == (
        "worklist",
        4,
        {
            "relational_queries": 1,
            "date_time_matching": 1,
            "fuzzy_semantic_matching": 0,
            "timezone_query_adjustment": 1,
        },
        [],
    )
    assert fields(sub56(WORKLIST, b"\x01\x01\x00\x01\x01"))[3] == [Reason.BAD_LENGTH]


def test_other_sop_class_keeps_length_only() -> None:
    # Storage Commitment defines no application information: 5 bytes, kept as a length.
    assert fields(sub56(STORAGE_COMMITMENT, b"\x01\x02\x03\x04\x05")) == (None, 5, {}, [])


def test_sub_item_cut_inside_the_uid() -> None:
    # UID length 0x19 but the sub-item holds only 4 bytes after it: the sub-item is dropped.
    sub = b"\x56\x00\x00\x06\x00\x19" + b"1.2."
    ui, reasons = decode(sub)
    assert ui.extended_negotiations == ()
    assert reasons == [Reason.BAD_LENGTH]


def test_sub_item_length_past_its_parent() -> None:
    # The 0x56 says 0x40 bytes follow; the user information item ends sooner.
    sub = sub56(CT_STORAGE, b"\x02\x00\x03\x00\x01\x00")
    cut = sub[:2] + b"\x00\x40" + sub[4:]
    ui, reasons = decode(cut)
    assert ui.extended_negotiations == ()
    assert reasons == [Reason.BAD_LENGTH]


def test_pynetdicom_vector_by_pynetdicom_comment() -> None:
    """pynetdicom's own vector: CT Image Storage, application information 02 00 03 00 01 00."""
    assert fields(pn.extended_negotiation) == (
        "storage",
        6,
        {"level_of_support": 2, "level_of_digital_signature_support": 3, "element_coercion": 1},
        [],
    )


def test_decode_is_total() -> None:
    """Any bytes on any layout decode without raising, every byte accounted for."""
    for uid in (CT_STORAGE, STUDY_FIND, PATIENT_MOVE, WORKLIST, STORAGE_COMMITMENT):
        for n in range(0, 10):
            for fill in (0x00, 0x01, 0xFF):
                info = decode_application_information(uid, bytes([fill]) * n)
                assert info.length == n


@pytest.mark.parametrize("uid", [CT_STORAGE, STUDY_FIND])
def test_same_info_in_ac(uid: str) -> None:
    """The AC carries the same sub-item layout (PS3.7 D.3.3.5.2); the decoder is side-free."""
    sub = sub56(uid, b"\x01\x00\x00\x00\x00\x00" if uid == CT_STORAGE else b"\x01")
    assert fields(sub)[3] == []
