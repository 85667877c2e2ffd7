"""Variable items and user-information sub-items of A-ASSOCIATE-RQ/AC (PS3.8 9.3, annex D)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .constants import (
    USER_IDENTITY_NAMES,
    ItemType,
    PresentationContextResult,
    UserInfoType,
)
from .errors import Reason
from .extneg import ApplicationInformation, decode_application_information
from .limits import Limits
from .memo import Memo
from .text import UID_MEMO, short_text, uid_memo

ITEM_HEADER = struct.Struct(">BxH")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U16_U16 = struct.Struct(">HH")


@dataclass(frozen=True, slots=True)
class RawItem:
    """An item or sub-item of a type the standard does not define, kept undecoded.

    ``data`` is cut to the limit's ``max_unknown_bytes``; ``length`` is the real length.
    """

    item_type: int
    length: int
    data: bytes


@dataclass(frozen=True, slots=True)
class PresentationContextRQ:
    """Presentation Context Item, A-ASSOCIATE-RQ (PS3.8 9.3.2.2).

    ======  ====  ===========================
    offset  size  field
    ======  ====  ===========================
    0       1     item type 0x20
    2       2     item length
    4       1     presentation context id (odd)
    8       -     abstract syntax (0x30), transfer syntaxes (0x40)
    ======  ====  ===========================
    """

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PresentationContextAC:
    """Presentation Context Item, A-ASSOCIATE-AC (PS3.8 9.3.3.2).

    ======  ====  ===========================
    offset  size  field
    ======  ====  ===========================
    0       1     item type 0x21
    2       2     item length
    4       1     presentation context id
    6       1     result/reason (0 acceptance .. 4)
    8       -     one transfer syntax sub-item (0x40)
    ======  ====  ===========================
    """

    context_id: int
    result: int
    transfer_syntax: str | None

    @property
    def result_name(self) -> str:
        """The result as a lower-case name."""
        try:
            return PresentationContextResult(self.result).name.lower().replace("_", "-")
        except ValueError:
            return f"unknown-{self.result}"


@dataclass(frozen=True, slots=True)
class AsynchronousOperationsWindow:
    """Asynchronous Operations Window Sub-Item 0x53 (PS3.7 D.3.3.3).

    Offsets: 4 max operations invoked (2), 6 max operations performed (2).
    """

    max_operations_invoked: int
    max_operations_performed: int


@dataclass(frozen=True, slots=True)
class RoleSelection:
    """SCP/SCU Role Selection Sub-Item 0x54 (PS3.7 D.3.3.4).

    Offsets: 4 UID length (2), 6 SOP class UID, then SCU role (1), SCP role (1).
    """

    sop_class_uid: str
    scu_role: int
    scp_role: int


@dataclass(frozen=True, slots=True)
class SOPClassExtendedNegotiation:
    """SOP Class Extended Negotiation Sub-Item 0x56 (PS3.7 D.3.3.5).

    Offsets: 4 UID length (2), 6 SOP class UID, then service class application
    information (the rest), decoded by the SOP class's PS3.4 layout where it has one
    (``extneg.py``); for other SOP classes only its length is kept.
    """

    sop_class_uid: str
    application_information: ApplicationInformation

    @property
    def application_information_length(self) -> int:
        """Length of the service class application information field."""
        return self.application_information.length


@dataclass(frozen=True, slots=True)
class SOPClassCommonExtendedNegotiation:
    """SOP Class Common Extended Negotiation Sub-Item 0x57 (PS3.7 D.3.3.6).

    Offsets: 4 SOP class UID length (2) + UID, service class UID length (2) + UID,
    related general SOP class identification length (2), then (length (2) + UID)*.
    """

    sop_class_uid: str
    service_class_uid: str
    related_general_sop_class_uids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UserIdentityRQ:
    """User Identity Sub-Item 0x58, A-ASSOCIATE-RQ (PS3.7 D.3.3.7.1).

    ======  ====  ======================================
    offset  size  field
    ======  ====  ======================================
    4       1     user identity type (1..5)
    5       1     positive response requested
    6       2     primary field length
    8       n     primary field (username, ticket, assertion, token)
    8+n     2     secondary field length
    10+n    m     secondary field (passcode, type 2 only)
    ======  ====  ======================================

    Only the username of types 1 and 2 is kept; the passcode, and the primary field
    of Kerberos, SAML and JWT identities, are never kept: only their presence and length.
    """

    identity_type: int
    positive_response_requested: bool
    username: str | None
    primary_field_length: int
    passcode_present: bool

    @property
    def type_name(self) -> str:
        """The identity type as a lower-case name."""
        return USER_IDENTITY_NAMES.get(self.identity_type, f"unknown-{self.identity_type}")


@dataclass(frozen=True, slots=True)
class UserIdentityAC:
    """User Identity Sub-Item 0x59, A-ASSOCIATE-AC (PS3.7 D.3.3.7.2).

    Offsets: 4 server response length (2), 6 server response. Only the length is kept.
    """

    server_response_length: int


@dataclass(frozen=True, slots=True)
class UserInformation:
    """User Information Item 0x50 (PS3.8 9.3.2.3) with its decoded sub-items."""

    max_pdu_length: int | None = None
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    async_operations_window: AsynchronousOperationsWindow | None = None
    role_selections: tuple[RoleSelection, ...] = ()
    extended_negotiations: tuple[SOPClassExtendedNegotiation, ...] = ()
    common_extended_negotiations: tuple[SOPClassCommonExtendedNegotiation, ...] = ()
    user_identity: UserIdentityRQ | None = None
    user_identity_response: UserIdentityAC | None = None
    unknown: tuple[RawItem, ...] = ()


class ItemProblems:
    """Collects anomaly reasons met while decoding items (kept in order, no duplicates)."""

    __slots__ = ("reasons", "unknown_items")

    def __init__(self) -> None:
        self.reasons: list[Reason] = []
        self.unknown_items = 0

    def add(self, reason: Reason) -> None:
        """Note a reason once."""
        if reason not in self.reasons:
            self.reasons.append(reason)


def iter_items(
    buf: bytes, start: int, end: int, limit: int, problems: ItemProblems
) -> list[tuple[int, int, int]]:
    """Split ``buf[start:end]`` into (type, value offset, value length) triples.

    Stops at the first item that does not fit (bad-length or truncated) or past ``limit``.
    """
    out: list[tuple[int, int, int]] = []
    pos = start
    while pos < end:
        if end - pos < 4:
            problems.add(Reason.TRUNCATED)
            break
        item_type, length = ITEM_HEADER.unpack_from(buf, pos)
        if buf[pos + 1]:
            # Sent as 00H, not tested (PS3.7 D.3.3, PS3.8 9.3): decoded all the same.
            problems.add(Reason.RESERVED_BITS)
        if pos + 4 + length > end:
            problems.add(Reason.BAD_LENGTH)
            break
        if len(out) >= limit:
            problems.add(Reason.TOO_MANY)
            break
        out.append((item_type, pos + 4, length))
        pos += 4 + length
    return out


def _uid_value(buf: bytes, off: int, length: int, problems: ItemProblems) -> str:
    value, ok = uid_memo(buf[off : off + length])
    if not ok:
        problems.add(Reason.BAD_VALUE)
    return value


def _raw(item_type: int, buf: bytes, off: int, length: int, limits: Limits) -> RawItem:
    return RawItem(item_type, length, bytes(buf[off : off + min(length, limits.max_unknown_bytes)]))


# Storage SCUs propose the same transfer syntaxes for most of their contexts, so a context
# after the first usually ends in a run of 0x40 sub-items seen before. Only runs that
# decoded without any anomaly are kept, keyed by their raw bytes.
TRANSFER_RUNS: Memo[tuple[str, ...]] = Memo(max_entries=512, max_key_bytes=2048)
_ABSTRACT = int(ItemType.ABSTRACT_SYNTAX)
_TRANSFER = int(ItemType.TRANSFER_SYNTAX)


def _report(problems: ItemProblems, framing: Reason | None, later: list[Reason]) -> None:
    """Add the framing reason, then the value reasons met before it: the order of iter_items."""
    # Items are split and decoded in one pass, but reported as when the split came first
    # (framing reasons, then value reasons), so the anomalies and their order stay the same.
    if framing is not None:
        problems.add(framing)
    for reason in later:
        problems.add(reason)


def parse_presentation_context_rq(
    buf: bytes, off: int, length: int, limits: Limits, problems: ItemProblems
) -> PresentationContextRQ | None:
    """Decode a 0x20 item's value; None when it is too short to hold a context id."""
    if length < 4:
        problems.add(Reason.BAD_LENGTH)
        return None
    context_id = buf[off]
    if context_id % 2 == 0:
        problems.add(Reason.BAD_VALUE)
    # Bytes 6-8 are reserved (PS3.8 Table 9-14) but not checked: DCMTK sends FFH in byte 7
    # of every context it proposes (the AC's result position), so a flag there would mark
    # most associations of the most common toolkit and say nothing.
    pos, end = off + 4, off + length
    unpack, uid_get = ITEM_HEADER.unpack_from, UID_MEMO.get
    if end - pos >= 4:
        # The usual shape: the abstract syntax, then transfer syntaxes already seen in
        # that order, byte for byte, and all well formed (only such runs are remembered).
        sub_type, sub_len = unpack(buf, pos)
        run = pos + 4 + sub_len
        if sub_type == _ABSTRACT and run < end and not buf[pos + 1]:
            known = TRANSFER_RUNS.get(buf[run:end])
            if known is not None and len(known) <= limits.max_transfer_syntaxes:
                raw = buf[pos + 4 : run]
                abstract, ok = uid_get(raw) or uid_memo(raw)
                if not ok:
                    problems.add(Reason.BAD_VALUE)
                return PresentationContextRQ(context_id, abstract, known)
    abstract = ""
    transfers: list[str] = []
    seen_abstract = False
    run_start = -1
    framing: Reason | None = None
    later: list[Reason] = []
    left = limits.max_transfer_syntaxes + 1
    while pos < end:
        if end - pos < 4:
            framing = Reason.TRUNCATED
            break
        sub_type, sub_len = unpack(buf, pos)
        value = pos + 4
        pos = value + sub_len
        if pos > end:
            framing = Reason.BAD_LENGTH
            break
        if not left:
            framing = Reason.TOO_MANY
            break
        left -= 1
        if buf[value - 3]:
            later.append(Reason.RESERVED_BITS)  # the sub-item's reserved byte
        if sub_type == _TRANSFER:
            raw = buf[value:pos]
            name, ok = uid_get(raw) or uid_memo(raw)
            transfers.append(name)
            if not ok:
                later.append(Reason.BAD_VALUE)
        elif sub_type == _ABSTRACT:
            if seen_abstract:
                later.append(Reason.BAD_VALUE)
            elif value == off + 8:
                # The abstract syntax came first: what follows it may be a run to remember.
                run_start = pos
            seen_abstract = True
            raw = buf[value:pos]
            abstract, ok = uid_get(raw) or uid_memo(raw)
            if not ok:
                later.append(Reason.BAD_VALUE)
        else:
            later.append(Reason.UNKNOWN_ITEM)
            problems.unknown_items += 1
    if framing is not None or later:
        _report(problems, framing, later)
    elif run_start >= 0 and transfers:
        TRANSFER_RUNS.put(buf[run_start:end], tuple(transfers))
    if not seen_abstract or not transfers:
        problems.add(Reason.BAD_VALUE)
    return PresentationContextRQ(context_id, abstract, tuple(transfers))


def parse_presentation_context_ac(
    buf: bytes, off: int, length: int, limits: Limits, problems: ItemProblems
) -> PresentationContextAC | None:
    """Decode a 0x21 item's value; None when it is too short."""
    if length < 4:
        problems.add(Reason.BAD_LENGTH)
        return None
    context_id = buf[off]
    result = buf[off + 2]
    if result > 4:
        problems.add(Reason.BAD_VALUE)
    if buf[off + 1] or buf[off + 3]:
        problems.add(Reason.RESERVED_BITS)  # PS3.8 Table 9-18: sent as 00H, not tested
    pos, end = off + 4, off + length
    unpack = ITEM_HEADER.unpack_from
    if end - pos >= 4 and limits.max_transfer_syntaxes:
        sub_type, sub_len = unpack(buf, pos)
        if sub_type == _TRANSFER and pos + 4 + sub_len == end and not buf[pos + 1]:
            # The usual shape: exactly one transfer syntax sub-item filling the context.
            if not sub_len:
                return PresentationContextAC(context_id, result, None)
            raw = buf[pos + 4 : end]
            name, ok = UID_MEMO.get(raw) or uid_memo(raw)
            if not ok:
                problems.add(Reason.BAD_VALUE)
            return PresentationContextAC(context_id, result, name or None)
    transfer: str | None = None
    framing: Reason | None = None
    later: list[Reason] = []
    left = limits.max_transfer_syntaxes
    while pos < end:
        if end - pos < 4:
            framing = Reason.TRUNCATED
            break
        sub_type, sub_len = unpack(buf, pos)
        value = pos + 4
        pos = value + sub_len
        if pos > end:
            framing = Reason.BAD_LENGTH
            break
        if not left:
            framing = Reason.TOO_MANY
            break
        left -= 1
        if buf[value - 3]:
            later.append(Reason.RESERVED_BITS)  # the sub-item's reserved byte
        if sub_type == _TRANSFER and transfer is None:
            # PS3.8: the transfer syntax is not significant unless the context was accepted.
            transfer = ""
            if sub_len:
                raw = buf[value:pos]
                transfer, ok = UID_MEMO.get(raw) or uid_memo(raw)
                if not ok:
                    later.append(Reason.BAD_VALUE)
        else:
            reason = Reason.UNKNOWN_ITEM if sub_type != _TRANSFER else Reason.BAD_VALUE
            later.append(reason)
    if framing is not None or later:
        _report(problems, framing, later)
    return PresentationContextAC(context_id, result, transfer or None)


def _prefixed(buf: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """A 2-byte length-prefixed field at ``pos``: (value offset, length) or None if it overruns."""
    if end - pos < 2:
        return None
    (n,) = _U16.unpack_from(buf, pos)
    if pos + 2 + n > end:
        return None
    return pos + 2, n


def _clean_username(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    return "".join(ch if ch.isprintable() else "?" for ch in text).strip()


def _user_identity_rq(
    buf: bytes, off: int, length: int, problems: ItemProblems
) -> UserIdentityRQ | None:
    end = off + length
    if length < 4:
        problems.add(Reason.BAD_LENGTH)
        return None
    identity_type = buf[off]
    positive = buf[off + 1] != 0
    primary = _prefixed(buf, off + 2, end)
    if primary is None:
        problems.add(Reason.BAD_LENGTH)
        return None
    p_off, p_len = primary
    secondary = _prefixed(buf, p_off + p_len, end)
    if secondary is None:
        problems.add(Reason.BAD_LENGTH)
        # A malformed length still means passcode bytes may have crossed the wire.
        s_len = max(0, end - (p_off + p_len) - 2)
    else:
        s_len = secondary[1]
        if secondary[0] + s_len != end:
            problems.add(Reason.BAD_LENGTH)
    if identity_type not in USER_IDENTITY_NAMES:
        problems.add(Reason.BAD_VALUE)
    username = None
    if identity_type in (1, 2):
        username = _clean_username(bytes(buf[p_off : p_off + p_len]))
    return UserIdentityRQ(
        identity_type=identity_type,
        positive_response_requested=positive,
        username=username,
        primary_field_length=p_len,
        passcode_present=identity_type == 2 and s_len > 0,
    )


def _common_extended(
    buf: bytes, off: int, length: int, limits: Limits, problems: ItemProblems
) -> SOPClassCommonExtendedNegotiation | None:
    end = off + length
    sop = _prefixed(buf, off, end)
    if sop is None:
        problems.add(Reason.BAD_LENGTH)
        return None
    service = _prefixed(buf, sop[0] + sop[1], end)
    if service is None:
        problems.add(Reason.BAD_LENGTH)
        return None
    related: list[str] = []
    pos = service[0] + service[1]
    block = _prefixed(buf, pos, end)
    if block is not None:
        r_pos, r_end = block[0], block[0] + block[1]
        while r_pos < r_end:
            one = _prefixed(buf, r_pos, r_end)
            if one is None:
                problems.add(Reason.BAD_LENGTH)
                break
            if len(related) >= limits.max_sub_items:
                problems.add(Reason.TOO_MANY)
                break
            related.append(_uid_value(buf, one[0], one[1], problems))
            r_pos = one[0] + one[1]
        if r_end != end:
            # The block must end the sub-item (PS3.7 D.3.3.6): the rest is unaccounted.
            problems.add(Reason.BAD_LENGTH)
    elif pos != end:
        problems.add(Reason.BAD_LENGTH)
    return SOPClassCommonExtendedNegotiation(
        _uid_value(buf, sop[0], sop[1], problems),
        _uid_value(buf, service[0], service[1], problems),
        tuple(related),
    )


def parse_user_information(
    buf: bytes, off: int, length: int, limits: Limits, problems: ItemProblems
) -> UserInformation:
    """Decode a 0x50 item's sub-items; anything malformed is noted in ``problems``."""
    fields: dict[str, object] = {}
    roles: list[RoleSelection] = []
    ext: list[SOPClassExtendedNegotiation] = []
    common: list[SOPClassCommonExtendedNegotiation] = []
    unknown: list[RawItem] = []
    for sub_type, s_off, s_len in iter_items(
        buf, off, off + length, limits.max_sub_items, problems
    ):
        if sub_type == UserInfoType.MAXIMUM_LENGTH:
            if s_len != 4:
                problems.add(Reason.BAD_LENGTH)
                continue
            fields["max_pdu_length"] = _U32.unpack_from(buf, s_off)[0]
        elif sub_type == UserInfoType.IMPLEMENTATION_CLASS_UID:
            fields["implementation_class_uid"] = _uid_value(buf, s_off, s_len, problems)
        elif sub_type == UserInfoType.IMPLEMENTATION_VERSION_NAME:
            name, ok = short_text(buf[s_off : s_off + s_len])
            if not ok or s_len > 16:
                problems.add(Reason.BAD_VALUE)
            if not name:
                # 1 to 16 characters (PS3.7 D.3.3.2.3): an empty name says nothing.
                problems.add(Reason.EMPTY_VALUE)
            fields["implementation_version_name"] = name[:64]
        elif sub_type == UserInfoType.ASYNCHRONOUS_OPERATIONS_WINDOW:
            if s_len != 4:
                problems.add(Reason.BAD_LENGTH)
                continue
            fields["async_operations_window"] = AsynchronousOperationsWindow(
                *_U16_U16.unpack_from(buf, s_off)
            )
        elif sub_type == UserInfoType.SCP_SCU_ROLE_SELECTION:
            field = _prefixed(buf, s_off, s_off + s_len)
            if field is None or field[0] + field[1] + 2 != s_off + s_len:
                problems.add(Reason.BAD_LENGTH)
                continue
            tail = field[0] + field[1]
            roles.append(
                RoleSelection(
                    _uid_value(buf, field[0], field[1], problems), buf[tail], buf[tail + 1]
                )
            )
        elif sub_type == UserInfoType.SOP_CLASS_EXTENDED_NEGOTIATION:
            field = _prefixed(buf, s_off, s_off + s_len)
            if field is None:
                problems.add(Reason.BAD_LENGTH)
                continue
            sop_class = _uid_value(buf, field[0], field[1], problems)
            info = decode_application_information(
                sop_class, bytes(buf[field[0] + field[1] : s_off + s_len])
            )
            for reason in info.anomalies:
                problems.add(reason)
            ext.append(SOPClassExtendedNegotiation(sop_class, info))
        elif sub_type == UserInfoType.SOP_CLASS_COMMON_EXTENDED_NEGOTIATION:
            item = _common_extended(buf, s_off, s_len, limits, problems)
            if item is not None:
                common.append(item)
        elif sub_type == UserInfoType.USER_IDENTITY_RQ:
            fields["user_identity"] = _user_identity_rq(buf, s_off, s_len, problems)
        elif sub_type == UserInfoType.USER_IDENTITY_AC:
            field = _prefixed(buf, s_off, s_off + s_len)
            if field is None or field[0] + field[1] != s_off + s_len:
                problems.add(Reason.BAD_LENGTH)
                continue
            fields["user_identity_response"] = UserIdentityAC(field[1])
        else:
            problems.add(Reason.UNKNOWN_ITEM)
            problems.unknown_items += 1
            if len(unknown) < limits.max_unknown_kept:
                unknown.append(_raw(sub_type, buf, s_off, s_len, limits))
    return UserInformation(
        role_selections=tuple(roles),
        extended_negotiations=tuple(ext),
        common_extended_negotiations=tuple(common),
        unknown=tuple(unknown),
        **fields,  # type: ignore[arg-type]
    )
