"""A storage SCU's A-ASSOCIATE-RQ with 128 presentation contexts, and its AC.

The expected values and anomalies below are what the decoder produced before the
one-pass decode and its memos (commit d94c434), written down; each case runs with the
memos empty and again after the clean PDUs filled them, so a remembered UID or
transfer-syntax run can never change a result.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from dissectors.dicom import Reason, parse_pdu
from dissectors.dicom.items import (
    TRANSFER_RUNS,
    PresentationContextAC,
    PresentationContextRQ,
    UserInformation,
)
from dissectors.dicom.pdu import AssociateAC, AssociateRQ
from dissectors.dicom.text import UID_MEMO

from . import vectors as v
from .framing import (
    context_ac,
    context_rq,
    item,
    storage_ac,
    storage_contexts_ac,
    storage_contexts_rq,
    storage_rq,
)

TS = tuple(t.encode() for t in v.STORAGE_TRANSFER_SYNTAXES)
EXPLICIT_LE = "1.2.840.10008.1.2.1"
PYNETDICOM_USER_INFO = UserInformation(
    max_pdu_length=16382,
    implementation_class_uid="1.2.826.0.1.3680043.9.3811.3.0.4",
    implementation_version_name="PYNETDICOM_304",
)
# Context 129 (index 64) is the one the malformed variants change.
AT = 64
ID = 2 * AT + 1
SOP = v.STORAGE_SOP_CLASSES[AT].encode()  # 1.2.840.10008.5.1.4.1.1.67

RQ_CONTEXTS = tuple(
    PresentationContextRQ(2 * i + 1, sop, v.STORAGE_TRANSFER_SYNTAXES)
    for i, sop in enumerate(v.STORAGE_SOP_CLASSES)
)
AC_CONTEXTS = tuple(
    PresentationContextAC(2 * i + 1, 3, None)
    if i % 4 == 3
    else PresentationContextAC(2 * i + 1, 0, EXPLICIT_LE)
    for i in range(128)
)


@pytest.fixture(params=["memos-empty", "memos-warm"])
def memos(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run a case with empty memos, then with memos filled by the clean RQ and AC."""
    UID_MEMO.clear()
    TRANSFER_RUNS.clear()
    if request.param == "memos-warm":
        parse_pdu(storage_rq())
        parse_pdu(storage_ac())
    yield


def rq_with(index: int, *replacement: bytes) -> bytes:
    """The 128-context RQ with context ``index`` replaced by the given items."""
    contexts = storage_contexts_rq()
    contexts[index : index + 1] = replacement
    return storage_rq(contexts)


def ac_with(index: int, *replacement: bytes) -> bytes:
    """The 128-context AC with answer ``index`` replaced by the given items."""
    contexts = storage_contexts_ac()
    contexts[index : index + 1] = replacement
    return storage_ac(contexts)


def decode_rq(data: bytes) -> AssociateRQ:
    """The whole of ``data`` as one A-ASSOCIATE-RQ."""
    pdu, used = parse_pdu(data)
    assert used == len(data) and isinstance(pdu, AssociateRQ)
    return pdu


def decode_ac(data: bytes) -> AssociateAC:
    """The whole of ``data`` as one A-ASSOCIATE-AC."""
    pdu, used = parse_pdu(data)
    assert used == len(data) and isinstance(pdu, AssociateAC)
    return pdu


def test_storage_rq_is_what_pynetdicom_sends() -> None:
    presentation = pytest.importorskip("pynetdicom.presentation")
    pdu_mod = pytest.importorskip("pynetdicom.pdu")
    primitives = pytest.importorskip("pynetdicom.pdu_primitives")
    transport = pytest.importorskip("pynetdicom.transport")
    primitive = primitives.A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = "STORESCU"
    primitive.called_ae_title = "ANY-SCP"
    primitive.calling_presentation_address = transport.AddressInformation("127.0.0.1", 1)
    primitive.called_presentation_address = transport.AddressInformation("127.0.0.1", 2)
    contexts = []
    for i, sop in enumerate(v.STORAGE_SOP_CLASSES):
        context = presentation.build_context(sop, list(v.STORAGE_TRANSFER_SYNTAXES))
        context.context_id = 2 * i + 1
        contexts.append(context)
    primitive.presentation_context_definition_list = contexts
    max_length = primitives.MaximumLengthNotification()
    max_length.maximum_length_received = 16382
    class_uid = primitives.ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = "1.2.826.0.1.3680043.9.3811.3.0.4"
    version = primitives.ImplementationVersionNameNotification()
    version.implementation_version_name = "PYNETDICOM_304"
    primitive.user_information = [max_length, class_uid, version]
    encoded = pdu_mod.A_ASSOCIATE_RQ()
    encoded.from_primitive(primitive)
    assert encoded.encode() == storage_rq()


@pytest.mark.usefixtures("memos")
def test_storage_rq_decodes_as_before() -> None:
    pdu = decode_rq(storage_rq())
    assert pdu == AssociateRQ(
        protocol_version=1,
        called_ae_title="ANY-SCP",
        calling_ae_title="STORESCU",
        application_context_name="1.2.840.10008.3.1.1.1",
        presentation_contexts=RQ_CONTEXTS,
        user_information=PYNETDICOM_USER_INFO,
        unknown_items=(),
        anomalies=(),
    )
    assert len(pdu.presentation_contexts) == 128


@pytest.mark.usefixtures("memos")
def test_storage_ac_decodes_as_before() -> None:
    assert decode_ac(storage_ac()) == AssociateAC(
        protocol_version=1,
        called_ae_title="ANY-SCP",
        calling_ae_title="STORESCU",
        application_context_name="1.2.840.10008.3.1.1.1",
        presentation_contexts=AC_CONTEXTS,
        user_information=PYNETDICOM_USER_INFO,
        unknown_items=(),
        anomalies=(),
    )


BAD_VALUE, BAD_LENGTH, TRUNCATED = Reason.BAD_VALUE, Reason.BAD_LENGTH, Reason.TRUNCATED
TOO_MANY, UNKNOWN_ITEM = Reason.TOO_MANY, Reason.UNKNOWN_ITEM


def cut(data: bytes, n: int) -> bytes:
    """The PDU's first ``n`` body bytes, its length field saying so."""
    body = data[6 : 6 + n]
    return struct.pack(">BxI", data[0], len(body)) + body


def over(one: bytes) -> bytes:
    """An item or sub-item whose length field claims one byte more than it holds."""
    return one[:2] + (int.from_bytes(one[2:4], "big") + 1).to_bytes(2, "big") + one[4:]


def last_sub_item_over(context: bytes) -> bytes:
    """A context whose last 0x40 sub-item claims one byte more than is left in it."""
    at = context.rindex(b"\x40\x00\x00")
    return context[:at] + over(context[at:])


def context_of(*sub_items: bytes) -> bytes:
    """A 0x20 item for context 129 holding the given sub-items in the given order."""
    return item(0x20, bytes((ID, 0, 0, 0)) + b"".join(sub_items))


def with_pc(
    contexts: tuple[PresentationContextRQ, ...], index: int, *new: PresentationContextRQ
) -> tuple[PresentationContextRQ, ...]:
    """``contexts`` with the one at ``index`` replaced by ``new``."""
    return contexts[:index] + new + contexts[index + 1 :]


def pc(abstract: str, *transfers: str, context_id: int = ID) -> PresentationContextRQ:
    """A decoded context at the position the variants change (id 129 unless told)."""
    return PresentationContextRQ(context_id, abstract, transfers)


SOP_TEXT = v.STORAGE_SOP_CLASSES[AT]
TEXT = v.STORAGE_TRANSFER_SYNTAXES
START_100 = 68 + len(v.ITEM_10) + sum(len(c) for c in storage_contexts_rq()[:100])
UI = PYNETDICOM_USER_INFO

# name: (the RQ, its presentation contexts, user information and anomalies as d94c434
# decoded them). Context 129 (index 64) is the one changed unless the name says otherwise.
RQ_CASES: dict[
    str, tuple[bytes, tuple[PresentationContextRQ, ...], UserInformation | None, tuple[Reason, ...]]
] = {
    # "1.2.840.10008.5.1.4.1.1.67X": kept as sent, bad-value.
    "abstract-bad-char": (
        rq_with(AT, context_rq(ID, SOP + b"X", *TS)),
        with_pc(RQ_CONTEXTS, AT, pc(SOP_TEXT + "X", *TEXT)),
        UI,
        (BAD_VALUE,),
    ),
    # A transfer syntax "1.2.840.10008.1.2.1.9X" in a run otherwise seen before.
    "transfer-bad-char": (
        rq_with(AT, context_rq(ID, SOP, TS[0], TS[1], b"1.2.840.10008.1.2.1.9X", TS[3])),
        with_pc(RQ_CONTEXTS, AT, pc(SOP_TEXT, TEXT[0], TEXT[1], "1.2.840.10008.1.2.1.9X", TEXT[3])),
        UI,
        (BAD_VALUE,),
    ),
    # Trailing NUL (DCMTK's even-length padding), two NULs, spaces either side: lenient.
    "nul-padded": (
        rq_with(AT, context_rq(ID, SOP + b"\x00", *(t + b"\x00" for t in TS))),
        RQ_CONTEXTS,
        UI,
        (),
    ),
    "two-nuls": (
        rq_with(AT, context_rq(ID, SOP + b"\x00\x00", *(t + b"\x00\x00" for t in TS))),
        RQ_CONTEXTS,
        UI,
        (),
    ),
    "space-padded": (
        rq_with(AT, context_rq(ID, b" " + SOP + b" ", *(b" " + t + b" " for t in TS))),
        RQ_CONTEXTS,
        UI,
        (),
    ),
    # A NUL inside a UID is shown as "?": bad-value.
    "embedded-nul": (
        rq_with(AT, context_rq(ID, SOP, b"1.2.840\x0010008.1.2", *TS[1:])),
        with_pc(RQ_CONTEXTS, AT, pc(SOP_TEXT, "1.2.840?10008.1.2", *TEXT[1:])),
        UI,
        (BAD_VALUE,),
    ),
    # 65 characters: cut to 64, bad-value.
    "abstract-65-chars": (
        rq_with(AT, context_rq(ID, b"1." + b"2" * 63, *TS)),
        with_pc(RQ_CONTEXTS, AT, pc("1." + "2" * 62, *TEXT)),
        UI,
        (BAD_VALUE,),
    ),
    "empty-transfer": (
        rq_with(AT, context_rq(ID, SOP, b"", *TS[1:])),
        with_pc(RQ_CONTEXTS, AT, pc(SOP_TEXT, "", *TEXT[1:])),
        UI,
        (BAD_VALUE,),
    ),
    # Context 129's length takes the first byte of context 131: one byte left over inside
    # 129 (truncated), then a misread header stops the PDU's items (bad-length). The
    # PDU-level reason comes first: items were split before they were decoded.
    "context-over-by-one": (
        rq_with(AT, over(context_rq(ID, SOP, *TS))),
        RQ_CONTEXTS[: AT + 1],
        None,
        (BAD_LENGTH, TRUNCATED),
    ),
    # The last 0x40 claims a byte more than its context holds: three transfer syntaxes.
    "sub-item-over-parent": (
        rq_with(AT, last_sub_item_over(context_rq(ID, SOP, *TS))),
        with_pc(RQ_CONTEXTS, AT, pc(SOP_TEXT, *TEXT[:3])),
        UI,
        (BAD_LENGTH,),
    ),
    # Both in one context: its framing reason before its value reason.
    "bad-uid-then-framing-same-context": (
        rq_with(AT, last_sub_item_over(context_rq(ID, SOP + b"X", *TS))),
        with_pc(RQ_CONTEXTS, AT, pc(SOP_TEXT + "X", *TEXT[:3])),
        UI,
        (BAD_LENGTH, BAD_VALUE),
    ),
    # A bad UID in context 21, the framing problem in context 129: in wire order.
    "bad-uid-then-framing-later-context": (
        rq_with(AT, last_sub_item_over(context_rq(ID, SOP, *TS))).replace(
            v.STORAGE_SOP_CLASSES[10].encode() + b"@",
            v.STORAGE_SOP_CLASSES[10].encode()[:-1] + b"X@",
            1,
        ),
        with_pc(
            with_pc(RQ_CONTEXTS, AT, pc(SOP_TEXT, *TEXT[:3])),
            10,
            pc(v.STORAGE_SOP_CLASSES[10][:-1] + "X", *TEXT, context_id=21),
        ),
        UI,
        (BAD_VALUE, BAD_LENGTH),
    ),
    # Context 129 twice: 128 kept (the last one dropped), too-many.
    "129-contexts": (
        rq_with(AT, context_rq(ID, SOP, *TS), context_rq(ID, SOP, *TS)),
        RQ_CONTEXTS[: AT + 1] + RQ_CONTEXTS[AT:-1],
        UI,
        (TOO_MANY,),
    ),
    # 65 transfer syntaxes (the four, repeated): 64 kept, too-many.
    "65-transfer-syntaxes": (
        rq_with(AT, context_rq(ID, SOP, *(TS * 17)[:65])),
        with_pc(RQ_CONTEXTS, AT, pc(SOP_TEXT, *(TEXT * 16))),
        UI,
        (TOO_MANY,),
    ),
    "even-id": (
        rq_with(AT, context_rq(ID + 1, SOP, *TS)),
        with_pc(RQ_CONTEXTS, AT, pc(SOP_TEXT, *TEXT, context_id=ID + 1)),
        UI,
        (BAD_VALUE,),
    ),
    # 0x30, 0x40, an undefined 0x77, 0x40: the 0x77 skipped, unknown-item.
    "unknown-sub-item": (
        rq_with(
            AT,
            context_of(item(0x30, SOP), item(0x40, TS[0]), item(0x77, b"\x99"), item(0x40, TS[1])),
        ),
        with_pc(RQ_CONTEXTS, AT, pc(SOP_TEXT, *TEXT[:2])),
        UI,
        (UNKNOWN_ITEM,),
    ),
    # Sub-items in another order than PS3.8's: decoded, no anomaly.
    "transfers-before-abstract": (
        rq_with(
            AT,
            context_of(*(item(0x40, t) for t in TS), item(0x30, SOP)),
        ),
        RQ_CONTEXTS,
        UI,
        (),
    ),
    "two-abstracts": (
        rq_with(
            AT,
            context_of(item(0x30, SOP), item(0x30, SOP), item(0x40, TS[0])),
        ),
        with_pc(RQ_CONTEXTS, AT, pc(SOP_TEXT, TEXT[0])),
        UI,
        (BAD_VALUE,),
    ),
    "no-transfer": (
        rq_with(AT, context_of(item(0x30, SOP))),
        with_pc(RQ_CONTEXTS, AT, pc(SOP_TEXT)),
        UI,
        (BAD_VALUE,),
    ),
    # A 0x20 of length 2: dropped, bad-length.
    "context-too-short": (
        rq_with(AT, item(0x20, bytes((ID, 0)))),
        with_pc(RQ_CONTEXTS, AT),
        UI,
        (BAD_LENGTH,),
    ),
    # The PDU ends 3 bytes into context 201's header (truncated) or 30 bytes into its
    # value (bad-length): 100 contexts, no user information.
    "cut-in-item-header": (
        cut(storage_rq(), START_100 + 3),
        RQ_CONTEXTS[:100],
        None,
        (TRUNCATED,),
    ),
    "cut-in-item-value": (
        cut(storage_rq(), START_100 + 30),
        RQ_CONTEXTS[:100],
        None,
        (BAD_LENGTH,),
    ),
}


@pytest.mark.usefixtures("memos")
@pytest.mark.parametrize("name", sorted(RQ_CASES))
def test_malformed_rq_decodes_as_before(name: str) -> None:
    data, contexts, user_information, anomalies = RQ_CASES[name]
    pdu = decode_rq(data)
    assert pdu.presentation_contexts == contexts
    assert pdu.anomalies == anomalies
    assert pdu.user_information == user_information
    assert (pdu.called_ae_title, pdu.calling_ae_title) == ("ANY-SCP", "STORESCU")
    assert pdu.application_context_name == "1.2.840.10008.3.1.1.1"
    assert pdu.unknown_items == ()


def with_ac(index: int, *new: PresentationContextAC) -> tuple[PresentationContextAC, ...]:
    """``AC_CONTEXTS`` with the one at ``index`` replaced by ``new``."""
    return AC_CONTEXTS[:index] + new + AC_CONTEXTS[index + 1 :]


EXPLICIT = EXPLICIT_LE.encode()

# name: (the AC, its presentation contexts and anomalies as d94c434 decoded them).
AC_CASES: dict[str, tuple[bytes, tuple[PresentationContextAC, ...], tuple[Reason, ...]]] = {
    "result-5": (
        ac_with(AT, context_ac(ID, 5, EXPLICIT)),
        with_ac(AT, PresentationContextAC(ID, 5, EXPLICIT_LE)),
        (BAD_VALUE,),
    ),
    # Two 0x40 sub-items: the first kept, bad-value.
    "two-transfers": (
        ac_with(AT, item(0x21, bytes((ID, 0, 0, 0)) + item(0x40, EXPLICIT) + item(0x40, TS[0]))),
        AC_CONTEXTS,
        (BAD_VALUE,),
    ),
    "accepted-empty-transfer": (
        ac_with(AT, context_ac(ID, 0, b"")),
        with_ac(AT, PresentationContextAC(ID, 0, None)),
        (),
    ),
    "bad-uid-char": (
        ac_with(AT, context_ac(ID, 0, b"1.2.840.10008.1.2.X")),
        with_ac(AT, PresentationContextAC(ID, 0, "1.2.840.10008.1.2.X")),
        (BAD_VALUE,),
    ),
    "nul-padded": (ac_with(AT, context_ac(ID, 0, EXPLICIT + b"\x00")), AC_CONTEXTS, ()),
    "sub-item-over-parent": (
        ac_with(AT, last_sub_item_over(context_ac(ID, 0, EXPLICIT))),
        with_ac(AT, PresentationContextAC(ID, 0, None)),
        (BAD_LENGTH,),
    ),
    "unknown-sub-item": (
        ac_with(AT, item(0x21, bytes((ID, 0, 0, 0)) + item(0x77, b"\x99"))),
        with_ac(AT, PresentationContextAC(ID, 0, None)),
        (UNKNOWN_ITEM,),
    ),
    "129-contexts": (
        ac_with(AT, context_ac(ID, 0, EXPLICIT), context_ac(ID, 0, EXPLICIT)),
        AC_CONTEXTS[: AT + 1] + AC_CONTEXTS[AT:-1],
        (TOO_MANY,),
    ),
}


@pytest.mark.usefixtures("memos")
@pytest.mark.parametrize("name", sorted(AC_CASES))
def test_malformed_ac_decodes_as_before(name: str) -> None:
    data, contexts, anomalies = AC_CASES[name]
    pdu = decode_ac(data)
    assert pdu.presentation_contexts == contexts
    assert pdu.anomalies == anomalies
    assert pdu.user_information == PYNETDICOM_USER_INFO


def test_memos_stay_bounded() -> None:
    UID_MEMO.clear()
    flushes = UID_MEMO.flushes
    for n in range(UID_MEMO.max_entries + 10):
        parse_pdu(rq_with(AT, context_rq(ID, f"1.2.3.{n}".encode(), *TS)))
    assert len(UID_MEMO) <= UID_MEMO.max_entries
    assert UID_MEMO.flushes > flushes
    assert len(TRANSFER_RUNS) <= TRANSFER_RUNS.max_entries
