"""Variable items and user-information sub-items (PS3.8 9.3, annex D; PS3.7 annex D)."""

from __future__ import annotations

import pytest

from dissectors.dicom import DEFAULT_LIMITS, Limits, Reason, parse_pdu
from dissectors.dicom.extneg import ApplicationInformation
from dissectors.dicom.items import (
    AsynchronousOperationsWindow,
    ItemProblems,
    PresentationContextAC,
    PresentationContextRQ,
    RawItem,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
    iter_items,
    parse_presentation_context_ac,
    parse_presentation_context_rq,
    parse_user_information,
)
from dissectors.dicom.pdu import AssociateRQ

from . import vectors as v
from .framing import associate, user_info


def sub_items(
    *subs: bytes, limits: Limits = DEFAULT_LIMITS
) -> tuple[UserInformation, list[Reason]]:
    """Decode the value of a 0x50 item holding ``subs``; return it and the anomaly reasons."""
    buf = b"".join(subs)
    problems = ItemProblems()
    return parse_user_information(buf, 0, len(buf), limits, problems), problems.reasons


def value_of(item: bytes) -> tuple[bytes, int, int]:
    """An item's bytes, its value offset and its value length (as the header says)."""
    return item, 4, int.from_bytes(item[2:4], "big")


# ---- each sub-item: decoded value -----------------------------------------------------


@pytest.mark.parametrize(
    ("sub", "expected"),
    [
        (v.SUB_51, UserInformation(max_pdu_length=16384)),
        (v.SUB_52, UserInformation(implementation_class_uid="1.2.276.0.7230010.3.0.3.6.7")),
        (v.SUB_53, UserInformation(async_operations_window=AsynchronousOperationsWindow(5, 3))),
        (v.SUB_54, UserInformation(role_selections=(RoleSelection(v.CT_IMAGE_STORAGE, 1, 1),))),
        (v.SUB_55, UserInformation(implementation_version_name="OFFIS_DCMTK_367")),
        (
            v.SUB_56,
            UserInformation(
                extended_negotiations=(
                    SOPClassExtendedNegotiation(
                        "1.2.840.10008.5.1.4.1.2.1.1",
                        ApplicationInformation(
                            "query",
                            3,
                            (
                                ("relational_queries", 1),
                                ("date_time_matching", 1),
                                ("fuzzy_semantic_matching", 1),
                            ),
                        ),
                    ),
                )
            ),
        ),
        (
            v.SUB_57,
            UserInformation(
                common_extended_negotiations=(
                    SOPClassCommonExtendedNegotiation(
                        "1.2.840.10008.5.1.4.1.1.88.22",
                        "1.2.840.10008.4.2",
                        ("1.2.840.10008.5.1.4.1.1.88.11",),
                    ),
                )
            ),
        ),
        (
            v.SUB_58_USERNAME,
            UserInformation(user_identity=UserIdentityRQ(1, False, "alice", 5, False)),
        ),
        (
            v.SUB_58_PASSCODE,
            UserInformation(user_identity=UserIdentityRQ(2, True, "alice", 5, True)),
        ),
        (
            v.SUB_58_KERBEROS,
            UserInformation(user_identity=UserIdentityRQ(3, False, None, 17, False)),
        ),
        (v.SUB_58_SAML, UserInformation(user_identity=UserIdentityRQ(4, False, None, 17, False))),
        (v.SUB_58_JWT, UserInformation(user_identity=UserIdentityRQ(5, False, None, 24, False))),
        (v.SUB_59, UserInformation(user_identity_response=UserIdentityAC(15))),
    ],
    ids=[
        "51", "52", "53", "54", "55", "56", "57", "58-1", "58-2", "58-3", "58-4", "58-5", "59",
    ],
)  # fmt: skip
def test_sub_item_decodes(sub: bytes, expected: UserInformation) -> None:
    decoded, reasons = sub_items(sub)
    assert decoded == expected
    assert reasons == []


# ---- each sub-item: truncated and over-parent variants -----------------------------------

ALL_SUBS = {
    "51": (v.SUB_51, v.SUB_51_OVER),
    "52": (v.SUB_52, v.SUB_52_OVER),
    "53": (v.SUB_53, v.SUB_53_OVER),
    "54": (v.SUB_54, v.SUB_54_OVER),
    "55": (v.SUB_55, v.SUB_55_OVER),
    "56": (v.SUB_56, v.SUB_56_OVER),
    "57": (v.SUB_57, v.SUB_57_OVER),
    "58-1": (v.SUB_58_USERNAME, v.SUB_58_USERNAME_OVER),
    "58-2": (v.SUB_58_PASSCODE, v.SUB_58_PASSCODE_OVER),
    "58-3": (v.SUB_58_KERBEROS, v.SUB_58_KERBEROS_OVER),
    "58-4": (v.SUB_58_SAML, v.SUB_58_SAML_OVER),
    "58-5": (v.SUB_58_JWT, v.SUB_58_JWT_OVER),
    "59": (v.SUB_59, v.SUB_59_OVER),
    "unknown": (v.SUB_UNKNOWN, v.SUB_UNKNOWN_OVER),
}


@pytest.mark.parametrize("name", list(ALL_SUBS))
def test_sub_item_truncated_header(name: str) -> None:
    # DCMTK's 0x51 first, then the sub-item cut after 3 bytes of its 4-byte header.
    good, _ = ALL_SUBS[name]
    decoded, reasons = sub_items(v.SUB_51, good[:3])
    assert reasons == [Reason.TRUNCATED]
    assert decoded == UserInformation(max_pdu_length=16384)


@pytest.mark.parametrize("name", list(ALL_SUBS))
def test_sub_item_truncated_value(name: str) -> None:
    # The parent ends one byte before the sub-item's value does.
    good, _ = ALL_SUBS[name]
    decoded, reasons = sub_items(v.SUB_51, good[:-1])
    assert reasons == [Reason.BAD_LENGTH]
    assert decoded == UserInformation(max_pdu_length=16384)


@pytest.mark.parametrize("name", list(ALL_SUBS))
def test_sub_item_longer_than_parent(name: str) -> None:
    _, over = ALL_SUBS[name]
    decoded, reasons = sub_items(v.SUB_51, over)
    assert reasons == [Reason.BAD_LENGTH]
    assert decoded == UserInformation(max_pdu_length=16384)


@pytest.mark.parametrize(
    ("sub", "reasons", "expected"),
    [
        (v.SUB_51_LENGTH_2, [Reason.BAD_LENGTH], UserInformation()),
        (v.SUB_52_BAD_UID, [Reason.BAD_VALUE], UserInformation(implementation_class_uid="1.2.X")),
        (v.SUB_53_LENGTH_2, [Reason.BAD_LENGTH], UserInformation()),
        (v.SUB_54_UID_LENGTH_WRONG, [Reason.BAD_LENGTH], UserInformation()),
        (
            v.SUB_55_TOO_LONG,
            [Reason.BAD_VALUE],
            UserInformation(implementation_version_name="OFFIS_DCMTK_367XY"),
        ),
        (v.SUB_56_UID_LENGTH_WRONG, [Reason.BAD_LENGTH], UserInformation()),
        (
            v.SUB_57_RELATED_LENGTH_WRONG,
            [Reason.BAD_LENGTH],
            UserInformation(
                common_extended_negotiations=(
                    SOPClassCommonExtendedNegotiation(
                        "1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.4.2", ()
                    ),
                )
            ),
        ),
        (
            v.SUB_58_TYPE_6,
            [Reason.BAD_VALUE],
            UserInformation(user_identity=UserIdentityRQ(6, False, None, 1, False)),
        ),
        (v.SUB_59_LENGTH_WRONG, [Reason.BAD_LENGTH], UserInformation()),
    ],
    ids=["51-len2", "52-uid", "53-len2", "54-uid-len", "55-17-chars", "56-uid-len",
         "57-related-len", "58-type6", "59-resp-len"],
)  # fmt: skip
def test_sub_item_inner_lengths(
    sub: bytes, reasons: list[Reason], expected: UserInformation
) -> None:
    decoded, got = sub_items(sub)
    assert got == reasons
    assert decoded == expected


def test_user_identity_type_name() -> None:
    decoded, _ = sub_items(v.SUB_58_TYPE_6)
    assert decoded.user_identity is not None
    assert decoded.user_identity.type_name == "unknown-6"
    decoded, _ = sub_items(v.SUB_58_JWT)
    assert decoded.user_identity is not None
    assert decoded.user_identity.type_name == "jwt"


# ---- secrets: never kept ------------------------------------------------------------------

SECRETS = [
    (v.SUB_58_PASSCODE, "SYNTHETIC-PASSCODE"),
    (v.SUB_58_PASSCODE_OVER, "SYNTHETIC-PASSCODE"),
    (v.SUB_58_PASSCODE_PRIMARY_WRONG, "SYNTHETIC-PASSCODE"),
    (v.SUB_58_KERBEROS, "KRB5-TICKET"),
    (v.SUB_58_SAML, "saml:Assertion"),
    (v.SUB_58_JWT, "eyJhbGciOiJub25lIn0"),
    (v.SUB_59, "SERVER-RESPONSE"),
]


@pytest.mark.parametrize(("sub", "secret"), SECRETS)
def test_secrets_never_kept(sub: bytes, secret: str) -> None:
    decoded, _ = sub_items(sub)
    assert secret not in repr(decoded)
    assert secret not in str(decoded)
    # The same inside a whole A-ASSOCIATE-RQ.
    pdu, _ = parse_pdu(associate(0x01, v.ITEM_10, v.ITEM_20, user_info(v.SUB_51, sub)))
    assert secret not in repr(pdu)


def test_passcode_primary_wrong_length() -> None:
    decoded, reasons = sub_items(v.SUB_58_PASSCODE_PRIMARY_WRONG)
    assert reasons == [Reason.BAD_LENGTH]
    assert decoded.user_identity is not None
    assert decoded.user_identity.username == "alice?"


def test_username_cleaned_of_control_characters() -> None:
    # 0x58 type 1 with username "bob\x1b[2J" (an ANSI escape): controls become "?".
    decoded, reasons = sub_items(v.h("5800000d01000007626f621b5b324a0000"))
    assert reasons == []
    assert decoded.user_identity is not None
    assert decoded.user_identity.username == "bob?[2J"


# ---- unknown sub-items: kept raw, counted, never fatal --------------------------------------


def test_unknown_sub_item_kept_raw() -> None:
    decoded, reasons = sub_items(v.SUB_51, v.SUB_UNKNOWN, v.SUB_55)
    assert reasons == [Reason.UNKNOWN_ITEM]
    assert decoded == UserInformation(
        max_pdu_length=16384,
        implementation_version_name="OFFIS_DCMTK_367",
        unknown=(RawItem(0x77, 3, b"\x99\xaa\xbb"),),
    )


def test_unknown_sub_items_bounded() -> None:
    # 40 unknown sub-items of 300 bytes: 16 kept (max_unknown_kept), each cut to 256 bytes.
    big = v.h("7f00012c") + bytes(300)
    decoded, reasons = sub_items(*([big] * 40), v.SUB_51)
    assert reasons == [Reason.UNKNOWN_ITEM]
    assert len(decoded.unknown) == DEFAULT_LIMITS.max_unknown_kept
    assert all(r == RawItem(0x7F, 300, bytes(256)) for r in decoded.unknown)
    assert decoded.max_pdu_length == 16384


def test_unknown_item_kept_raw_and_bounded() -> None:
    big = v.h("6100012c") + bytes(range(256)) + bytes(44)
    pdu, _ = parse_pdu(associate(0x01, v.ITEM_10, v.ITEM_UNKNOWN, big, v.ITEM_20, v.ITEM_50))
    assert isinstance(pdu, AssociateRQ)
    assert pdu.unknown_items == (
        RawItem(0x60, 4, b"\x01\x02\x03\x04"),
        RawItem(0x61, 300, bytes(range(256))),
    )
    assert pdu.anomalies == (Reason.UNKNOWN_ITEM,)
    assert len(pdu.presentation_contexts) == 1


def test_zero_length_sub_items_repeated() -> None:
    # 300 empty 0x51 sub-items: each bad-length; the walk stops at max_sub_items (256).
    decoded, reasons = sub_items(*([v.h("51000000")] * 300))
    assert set(reasons) == {Reason.BAD_LENGTH, Reason.TOO_MANY}
    assert decoded == UserInformation()


def test_later_sub_item_wins_but_roles_accumulate() -> None:
    decoded, _ = sub_items(v.SUB_54, v.SUB_54, v.SUB_56)
    assert len(decoded.role_selections) == 2
    assert len(decoded.extended_negotiations) == 1


# ---- presentation context items, decoded directly ------------------------------------------


def test_presentation_context_rq_direct() -> None:
    problems = ItemProblems()
    buf, off, length = value_of(v.ITEM_20)
    got = parse_presentation_context_rq(buf, off, length, DEFAULT_LIMITS, problems)
    assert got == PresentationContextRQ(1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",))
    assert problems.reasons == []


def test_presentation_context_rq_many_transfer_syntaxes() -> None:
    # One abstract syntax and 100 transfer syntaxes: 64 kept, too-many.
    value = v.h("01000000") + v.SUB_30 + v.SUB_40 * 100
    problems = ItemProblems()
    got = parse_presentation_context_rq(value, 0, len(value), DEFAULT_LIMITS, problems)
    assert got is not None
    assert len(got.transfer_syntaxes) == DEFAULT_LIMITS.max_transfer_syntaxes
    assert problems.reasons == [Reason.TOO_MANY]


def test_presentation_context_rq_unknown_sub_item() -> None:
    value = v.h("01000000") + v.SUB_30 + v.SUB_UNKNOWN + v.SUB_40
    problems = ItemProblems()
    got = parse_presentation_context_rq(value, 0, len(value), DEFAULT_LIMITS, problems)
    assert got == PresentationContextRQ(1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",))
    assert problems.reasons == [Reason.UNKNOWN_ITEM]


def test_presentation_context_ac_direct() -> None:
    problems = ItemProblems()
    buf, off, length = value_of(v.ITEM_21)
    got = parse_presentation_context_ac(buf, off, length, DEFAULT_LIMITS, problems)
    assert got == PresentationContextAC(1, 0, "1.2.840.10008.1.2")
    assert problems.reasons == []


def test_presentation_context_ac_two_transfer_syntaxes() -> None:
    # PS3.8 9.3.3.2: exactly one transfer syntax sub-item in an AC context.
    value = v.h("01000000") + v.SUB_40 + v.SUB_40
    problems = ItemProblems()
    got = parse_presentation_context_ac(value, 0, len(value), DEFAULT_LIMITS, problems)
    assert got == PresentationContextAC(1, 0, "1.2.840.10008.1.2")
    assert problems.reasons == [Reason.BAD_VALUE]


def test_presentation_context_result_names() -> None:
    assert PresentationContextAC(1, 4, None).result_name == "transfer-syntaxes-not-supported"
    assert PresentationContextAC(1, 9, None).result_name == "unknown-9"


# ---- iter_items ---------------------------------------------------------------------------


def test_iter_items_offsets() -> None:
    buf = v.ITEM_10 + v.ITEM_20 + v.ITEM_50
    problems = ItemProblems()
    assert iter_items(buf, 0, len(buf), 10, problems) == [
        (0x10, 4, 21),
        (0x20, 29, 46),
        (0x50, 79, 58),
    ]
    assert problems.reasons == []


def test_iter_items_limit() -> None:
    buf = v.h("00000000") * 20
    problems = ItemProblems()
    assert len(iter_items(buf, 0, len(buf), 5, problems)) == 5
    assert problems.reasons == [Reason.TOO_MANY]


def test_item_problems_deduplicated() -> None:
    problems = ItemProblems()
    for reason in (Reason.BAD_VALUE, Reason.TRUNCATED, Reason.BAD_VALUE):
        problems.add(reason)
    assert problems.reasons == [Reason.BAD_VALUE, Reason.TRUNCATED]


# ---- cross-check of the pynetdicom vectors against scapy.contrib.dicom ---------------------


def test_vectors_agree_with_scapy() -> None:
    dicom = pytest.importorskip("scapy.contrib.dicom")
    built = {
        "53": dicom.DICOMVariableItem()
        / dicom.DICOMAsyncOperationsWindow(max_ops_invoked=5, max_ops_performed=3),
        "54": dicom.DICOMVariableItem()
        / dicom.DICOMSCPSCURoleSelection(
            sop_class_uid=v.CT_IMAGE_STORAGE.encode(), scu_role=1, scp_role=1
        ),
        "56": dicom.DICOMVariableItem()
        / dicom.DICOMSOPClassExtendedNegotiation(
            sop_class_uid=b"1.2.840.10008.5.1.4.1.2.1.1",
            service_class_application_information=b"\x01\x01\x01",
        ),
        "58": dicom.DICOMVariableItem()
        / dicom.DICOMUserIdentity(
            user_identity_type=2,
            positive_response_requested=1,
            primary_field=b"alice",
            secondary_field=v.PASSCODE,
        ),
        "59": dicom.DICOMVariableItem()
        / dicom.DICOMUserIdentityResponse(server_response=b"SERVER-RESPONSE"),
    }
    ours = {
        "53": v.SUB_53,
        "54": v.SUB_54,
        "56": v.SUB_56,
        "58": v.SUB_58_PASSCODE,
        "59": v.SUB_59,
    }
    assert {k: bytes(p) for k, p in built.items()} == ours
