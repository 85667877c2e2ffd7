"""The seven Upper Layer PDUs (PS3.8 section 9.3) and their decoders."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .constants import (
    ABORT_REASON_NAMES,
    ABORT_SOURCE_NAMES,
    REJECT_REASONS,
    REJECT_RESULT_NAMES,
    REJECT_SOURCE_NAMES,
    ItemType,
    PDUType,
)
from .errors import DicomError, Reason
from .items import (
    ITEM_HEADER,
    ItemProblems,
    PresentationContextAC,
    PresentationContextRQ,
    RawItem,
    UserInformation,
    parse_presentation_context_ac,
    parse_presentation_context_rq,
    parse_user_information,
)
from .limits import DEFAULT_LIMITS, Limits
from .text import ae_title, uid_memo

PDU_HEADER = struct.Struct(">BxI")
PDV_HEADER = struct.Struct(">IBB")
_ASSOC_FIXED = struct.Struct(">HH16s16s")
_FOUR = struct.Struct(">BBBB")
ASSOCIATE_FIXED_LENGTH = 68


@dataclass(frozen=True, slots=True)
class AssociateRQ:
    """A-ASSOCIATE-RQ PDU (PS3.8 9.3.2).

    ======  ====  ==================================
    offset  size  field
    ======  ====  ==================================
    0       1     PDU type 0x01
    2       4     PDU length
    6       2     protocol version (bit 0 set)
    10      16    called AE title
    26      16    calling AE title
    42      32    reserved
    74      -     variable items (0x10, 0x20, 0x50)
    ======  ====  ==================================

    ``anomalies`` lists what was malformed in the items; decoding keeps what it could.
    """

    protocol_version: int
    called_ae_title: str
    calling_ae_title: str
    application_context_name: str | None
    presentation_contexts: tuple[PresentationContextRQ, ...]
    user_information: UserInformation | None
    unknown_items: tuple[RawItem, ...] = ()
    anomalies: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True)
class AssociateAC:
    """A-ASSOCIATE-AC PDU (PS3.8 9.3.3); same offsets as A-ASSOCIATE-RQ, type 0x02.

    The AE title fields echo the request and are not to be tested (PS3.8 9.3.3).
    """

    protocol_version: int
    called_ae_title: str
    calling_ae_title: str
    application_context_name: str | None
    presentation_contexts: tuple[PresentationContextAC, ...]
    user_information: UserInformation | None
    unknown_items: tuple[RawItem, ...] = ()
    anomalies: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True)
class AssociateRJ:
    """A-ASSOCIATE-RJ PDU (PS3.8 9.3.4).

    Offsets: 0 type 0x03, 2 length (4), 6 reserved, 7 result, 8 source, 9 reason/diag.
    """

    result: int
    source: int
    reason: int

    @property
    def result_name(self) -> str:
        """Rejected-permanent or rejected-transient."""
        return REJECT_RESULT_NAMES.get(self.result, f"unknown-{self.result}")

    @property
    def source_name(self) -> str:
        """Who rejected: the service user or a provider layer."""
        return REJECT_SOURCE_NAMES.get(self.source, f"unknown-{self.source}")

    @property
    def reason_name(self) -> str:
        """The reason, whose meaning depends on the source."""
        return REJECT_REASONS.get(self.source, {}).get(self.reason, f"unknown-{self.reason}")


@dataclass(frozen=True, slots=True)
class PresentationDataValue:
    """One PDV item header of a P-DATA-TF PDU (PS3.8 9.3.5.1); its value is never kept.

    Offsets: 0 item length (4, counts what follows), 4 presentation context id,
    5 message control header (bit 0 command, bit 1 last fragment).
    """

    context_id: int
    is_command: bool
    is_last: bool
    length: int


@dataclass(frozen=True, slots=True)
class PDataTF:
    """P-DATA-TF PDU (PS3.8 9.3.5): a type 0x04 header followed by PDV items."""

    pdvs: tuple[PresentationDataValue, ...]
    anomalies: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True)
class ReleaseRQ:
    """A-RELEASE-RQ PDU (PS3.8 9.3.6): type 0x05, length 4, four reserved bytes."""


@dataclass(frozen=True, slots=True)
class ReleaseRP:
    """A-RELEASE-RP PDU (PS3.8 9.3.7): type 0x06, length 4, four reserved bytes."""


@dataclass(frozen=True, slots=True)
class AAbort:
    """A-ABORT PDU (PS3.8 9.3.8).

    Offsets: 0 type 0x07, 2 length (4), 6 reserved, 7 reserved, 8 source, 9 reason/diag.
    """

    source: int
    reason: int

    @property
    def source_name(self) -> str:
        """Service user or service provider."""
        return ABORT_SOURCE_NAMES.get(self.source, f"unknown-{self.source}")

    @property
    def reason_name(self) -> str:
        """The provider's reason; not significant when the user aborted."""
        return ABORT_REASON_NAMES.get(self.reason, f"unknown-{self.reason}")


PDU = AssociateRQ | AssociateAC | AssociateRJ | PDataTF | ReleaseRQ | ReleaseRP | AAbort


class _AssociateParts:
    """What an RQ and an AC share, decoded once."""

    __slots__ = (
        "ac",
        "anomalies",
        "app_context",
        "called",
        "calling",
        "rq",
        "unknown",
        "user_info",
        "version",
    )

    def __init__(self) -> None:
        self.version = 0
        self.called = ""
        self.calling = ""
        self.app_context: str | None = None
        self.rq: list[PresentationContextRQ] = []
        self.ac: list[PresentationContextAC] = []
        self.user_info: UserInformation | None = None
        self.unknown: list[RawItem] = []
        self.anomalies: tuple[Reason, ...] = ()


def _associate(
    body: bytes, is_request: bool, limits: Limits, items: bool = True, extra: Reason | None = None
) -> _AssociateParts:
    """Decode the body (what follows the 6-byte header) of an RQ or AC."""
    if len(body) < ASSOCIATE_FIXED_LENGTH:
        # The whole PDU is here (parse_pdu checks that): its length field is too small.
        raise DicomError(Reason.BAD_LENGTH, "associate PDU shorter than its fixed part")
    if type(body) is not bytes:
        body = bytes(body)  # UIDs are memoized by their raw bytes, which must be hashable
    parts = _AssociateParts()
    version, reserved, called_raw, calling_raw = _ASSOC_FIXED.unpack_from(body, 0)
    problems = ItemProblems()
    if reserved or (is_request and body[36:ASSOCIATE_FIXED_LENGTH].count(0) != 32):
        # Sent as zeros, not tested (PS3.8 Tables 9-11, 9-17); the AC's 32 bytes echo the
        # RQ's and its AE title fields are not tested either: only its 2 bytes are checked.
        problems.add(Reason.RESERVED_BITS)
    parts.version = version
    parts.called, ok1 = ae_title(called_raw)
    parts.calling, ok2 = ae_title(calling_raw)
    if not (ok1 and ok2) or not version & 1:
        problems.add(Reason.BAD_VALUE)
    if is_request and not (parts.called and parts.calling):
        # An AE title of spaces only shall not be used (PS3.8 Table 9-11, PS3.5 6.2). The
        # AC's titles echo the request and are not tested (PS3.8 Table 9-17).
        problems.add(Reason.EMPTY_VALUE)
    if items:
        # Items are split and decoded in one pass; their own reasons are merged after the
        # framing reason, the order they had when the split came first.
        inner = ItemProblems()
        framing = _items(body, is_request, limits, parts, inner)
        if framing is not None:
            problems.add(framing)
        for reason in inner.reasons:
            problems.add(reason)
        if parts.app_context is None:
            problems.add(Reason.BAD_VALUE)
        if framing is None and (
            not (parts.rq if is_request else parts.ac) or parts.user_info is None
        ):
            # An RQ or AC holds one or more presentation contexts and one user information
            # item (PS3.8 9.3.2, 9.3.3); when the items were cut short, that says it already.
            problems.add(Reason.MISSING_ITEM)
    if extra is not None:
        problems.add(extra)
    parts.anomalies = tuple(problems.reasons)
    return parts


_APPLICATION_CONTEXT = int(ItemType.APPLICATION_CONTEXT)
_CONTEXT_RQ = int(ItemType.PRESENTATION_CONTEXT_RQ)
_CONTEXT_AC = int(ItemType.PRESENTATION_CONTEXT_AC)
_USER_INFORMATION = int(ItemType.USER_INFORMATION)


def _items(
    body: bytes, is_request: bool, limits: Limits, parts: _AssociateParts, problems: ItemProblems
) -> Reason | None:
    """Decode the variable items into ``parts``; return the reason the split stopped early."""
    rq_type = _CONTEXT_RQ if is_request else -1
    ac_type = -1 if is_request else _CONTEXT_AC
    max_contexts = limits.max_presentation_contexts
    rqs, acs = parts.rq, parts.ac
    left = limits.max_items
    pos, end = ASSOCIATE_FIXED_LENGTH, len(body)
    unpack = ITEM_HEADER.unpack_from
    while pos < end:
        if end - pos < 4:
            return Reason.TRUNCATED
        item_type, length = unpack(body, pos)
        if body[pos + 1]:
            problems.add(Reason.RESERVED_BITS)  # an item header's reserved byte (PS3.8 9.3)
        off = pos + 4
        pos = off + length
        if pos > end:
            return Reason.BAD_LENGTH
        if not left:
            return Reason.TOO_MANY
        left -= 1
        if item_type == rq_type:
            if len(rqs) >= max_contexts:
                problems.add(Reason.TOO_MANY)
                continue
            rq = parse_presentation_context_rq(body, off, length, limits, problems)
            if rq is not None:
                rqs.append(rq)
        elif item_type == ac_type:
            if len(acs) >= max_contexts:
                problems.add(Reason.TOO_MANY)
                continue
            ac = parse_presentation_context_ac(body, off, length, limits, problems)
            if ac is not None:
                acs.append(ac)
        elif item_type == _APPLICATION_CONTEXT:
            if parts.app_context is not None:
                problems.add(Reason.BAD_VALUE)
            parts.app_context, ok = uid_memo(body[off:pos])
            if not ok:
                problems.add(Reason.BAD_VALUE)
        elif item_type == _USER_INFORMATION:
            if parts.user_info is not None:
                problems.add(Reason.BAD_VALUE)
            parts.user_info = parse_user_information(body, off, length, limits, problems)
        else:
            problems.add(Reason.UNKNOWN_ITEM)
            problems.unknown_items += 1
            if len(parts.unknown) < limits.max_unknown_kept:
                cut = min(length, limits.max_unknown_bytes)
                parts.unknown.append(RawItem(item_type, length, body[off : off + cut]))
    return None


def parse_associate_rq(
    body: bytes, limits: Limits = DEFAULT_LIMITS, items: bool = True, extra: Reason | None = None
) -> AssociateRQ:
    """Decode an A-ASSOCIATE-RQ body (the bytes after the PDU header)."""
    p = _associate(body, True, limits, items, extra)
    return AssociateRQ(
        p.version, p.called, p.calling, p.app_context, tuple(p.rq), p.user_info,
        tuple(p.unknown), p.anomalies,
    )  # fmt: skip


def parse_associate_ac(
    body: bytes, limits: Limits = DEFAULT_LIMITS, items: bool = True, extra: Reason | None = None
) -> AssociateAC:
    """Decode an A-ASSOCIATE-AC body."""
    p = _associate(body, False, limits, items, extra)
    return AssociateAC(
        p.version, p.called, p.calling, p.app_context, tuple(p.ac), p.user_info,
        tuple(p.unknown), p.anomalies,
    )  # fmt: skip


def parse_associate_fixed(pdu_type: int, head: bytes, limits: Limits = DEFAULT_LIMITS) -> PDU:
    """Decode only the fixed part of an RQ/AC whose items are too large to buffer."""
    fixed = head[:ASSOCIATE_FIXED_LENGTH]
    if pdu_type == PDUType.A_ASSOCIATE_RQ:
        return parse_associate_rq(fixed, limits, False, Reason.TOO_LARGE)
    return parse_associate_ac(fixed, limits, False, Reason.TOO_LARGE)


def _four(body: bytes, name: str) -> tuple[int, int, int, int]:
    if len(body) != 4:
        raise DicomError(Reason.BAD_LENGTH, f"{name} length {len(body)}")
    a, b, c, d = _FOUR.unpack_from(body, 0)
    return a, b, c, d


def parse_pdata(body: bytes) -> PDataTF:
    """Decode the PDV headers of a complete P-DATA-TF body."""
    pdvs: list[PresentationDataValue] = []
    anomalies: tuple[Reason, ...] = ()
    pos, end = 0, len(body)
    if end == 0:
        raise DicomError(Reason.BAD_LENGTH, "P-DATA-TF without PDV")
    while pos < end:
        if end - pos < 6:
            raise DicomError(Reason.TRUNCATED, "PDV header")
        length, context_id, control = PDV_HEADER.unpack_from(body, pos)
        if length < 2 or pos + 4 + length > end:
            raise DicomError(Reason.BAD_LENGTH, "PDV length")
        if control > 3 and not anomalies:
            # Bits 2-7 are reserved and not tested by receivers (PS3.8 E.2): decode them.
            anomalies = (Reason.RESERVED_BITS,)
        pdvs.append(
            PresentationDataValue(context_id, bool(control & 1), bool(control & 2), length - 2)
        )
        pos += 4 + length
    return PDataTF(tuple(pdvs), anomalies)


def parse_pdu(data: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[PDU, int]:
    """Decode one whole PDU at the start of ``data``; return it and its size on the wire."""
    if len(data) < 6:
        raise DicomError(Reason.TRUNCATED, "PDU header")
    pdu_type, length = PDU_HEADER.unpack_from(data, 0)
    if len(data) < 6 + length:
        raise DicomError(Reason.TRUNCATED, "PDU body")
    return parse_pdu_body(pdu_type, bytes(data[6 : 6 + length]), limits), 6 + length


def parse_pdu_body(pdu_type: int, body: bytes, limits: Limits = DEFAULT_LIMITS) -> PDU:
    """Decode a PDU body given its type."""
    if pdu_type == PDUType.A_ASSOCIATE_RQ:
        return parse_associate_rq(body, limits)
    if pdu_type == PDUType.A_ASSOCIATE_AC:
        return parse_associate_ac(body, limits)
    if pdu_type == PDUType.A_ASSOCIATE_RJ:
        _, result, source, reason = _four(body, "A-ASSOCIATE-RJ")
        return AssociateRJ(result, source, reason)
    if pdu_type == PDUType.P_DATA_TF:
        return parse_pdata(body)
    if pdu_type == PDUType.A_RELEASE_RQ:
        _four(body, "A-RELEASE-RQ")
        return ReleaseRQ()
    if pdu_type == PDUType.A_RELEASE_RP:
        _four(body, "A-RELEASE-RP")
        return ReleaseRP()
    if pdu_type == PDUType.A_ABORT:
        _, _, source, reason = _four(body, "A-ABORT")
        return AAbort(source, reason)
    raise DicomError(Reason.BAD_TYPE, f"PDU type 0x{pdu_type:02x}")
