"""DIMSE command sets (PS3.7 section 9.3, annex E): group 0000, implicit VR little endian."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from .constants import (
    COMMAND_NAMES,
    NO_DATA_SET,
    PRIORITY_NAMES,
    RESPONSE_BIT,
    CommandTag,
    StatusClass,
    status_class,
)
from .errors import DicomError, Reason
from .text import ae_title, uid

_ELEMENT = struct.Struct("<HHI")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")

_UID_TAGS = {
    CommandTag.AFFECTED_SOP_CLASS_UID: "affected_sop_class_uid",
    CommandTag.REQUESTED_SOP_CLASS_UID: "requested_sop_class_uid",
    CommandTag.AFFECTED_SOP_INSTANCE_UID: "affected_sop_instance_uid",
    CommandTag.REQUESTED_SOP_INSTANCE_UID: "requested_sop_instance_uid",
}
_US_TAGS = {
    CommandTag.COMMAND_FIELD: "command_field",
    CommandTag.MESSAGE_ID: "message_id",
    CommandTag.MESSAGE_ID_BEING_RESPONDED_TO: "message_id_being_responded_to",
    CommandTag.PRIORITY: "priority",
    CommandTag.COMMAND_DATA_SET_TYPE: "command_data_set_type",
    CommandTag.STATUS: "status",
    CommandTag.NUMBER_OF_REMAINING_SUBOPERATIONS: "remaining_suboperations",
    CommandTag.NUMBER_OF_COMPLETED_SUBOPERATIONS: "completed_suboperations",
    CommandTag.NUMBER_OF_FAILED_SUBOPERATIONS: "failed_suboperations",
    CommandTag.NUMBER_OF_WARNING_SUBOPERATIONS: "warning_suboperations",
    CommandTag.MOVE_ORIGINATOR_MESSAGE_ID: "move_originator_message_id",
    CommandTag.EVENT_TYPE_ID: "event_type_id",
    CommandTag.ACTION_TYPE_ID: "action_type_id",
    CommandTag.ERROR_ID: "error_id",
}
# Attribute Tag (AT) lists: 4 bytes a value, group then element, each little endian.
_AT_TAGS = {
    CommandTag.OFFENDING_ELEMENT: "offending_elements",
    CommandTag.ATTRIBUTE_IDENTIFIER_LIST: "attribute_identifiers",
}
_AT = struct.Struct("<HH")
MAX_TAGS = 64  # tags kept of one AT list; an N-GET may name many, a failure a few
_AE_TAGS = {
    CommandTag.MOVE_DESTINATION: "move_destination",
    CommandTag.MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE: "move_originator_ae_title",
}


@dataclass(frozen=True, slots=True)
class DimseCommand:
    """A decoded DIMSE command set (PS3.7 annex E).

    Each element: group (2, LE) = 0x0000, element (2, LE), value length (4, LE), value.
    Failure details (PS3.7 C.4): Error ID (0000,0903), Offending Element (0000,0901) and
    Attribute Identifier List (0000,1005) as tags ``group << 16 | element``. The Error
    Comment (0000,0902) is free text that may name a patient: only its length is kept
    (``error_comment_length``, None when absent), never its text.
    """

    command_field: int
    message_id: int | None = None
    message_id_being_responded_to: int | None = None
    affected_sop_class_uid: str | None = None
    requested_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    requested_sop_instance_uid: str | None = None
    priority: int | None = None
    command_data_set_type: int | None = None
    status: int | None = None
    move_destination: str | None = None
    remaining_suboperations: int | None = None
    completed_suboperations: int | None = None
    failed_suboperations: int | None = None
    warning_suboperations: int | None = None
    move_originator_ae_title: str | None = None
    move_originator_message_id: int | None = None
    event_type_id: int | None = None
    action_type_id: int | None = None
    error_id: int | None = None
    offending_elements: tuple[int, ...] = ()
    attribute_identifiers: tuple[int, ...] = ()
    error_comment_length: int | None = None
    anomalies: tuple[Reason, ...] = ()

    @property
    def name(self) -> str:
        """The message name, e.g. ``C-STORE-RQ``; unknown values as hex."""
        return COMMAND_NAMES.get(self.command_field, f"UNKNOWN-0x{self.command_field:04X}")

    @property
    def is_response(self) -> bool:
        """Whether this is a response (bit 15 of the command field set)."""
        return bool(self.command_field & RESPONSE_BIT)

    @property
    def has_data_set(self) -> bool:
        """Whether a data set follows (Command Data Set Type other than 0x0101)."""
        return self.command_data_set_type is not None and self.command_data_set_type != NO_DATA_SET

    @property
    def status_class(self) -> StatusClass | None:
        """The class of the status, for responses that carry one."""
        return None if self.status is None else status_class(self.status)

    @property
    def sop_class_uid(self) -> str | None:
        """Affected SOP class, else requested SOP class."""
        return self.affected_sop_class_uid or self.requested_sop_class_uid

    @property
    def has_failure_details(self) -> bool:
        """Whether the command carries any of the failure detail elements."""
        return (
            self.error_id is not None
            or bool(self.offending_elements)
            or bool(self.attribute_identifiers)
            or self.error_comment_length is not None
        )

    @property
    def priority_name(self) -> str | None:
        """Medium, high or low."""
        return None if self.priority is None else PRIORITY_NAMES.get(self.priority, "unknown")


def _note(problems: list[Reason], reason: Reason) -> None:
    if reason not in problems:
        problems.append(reason)


def _odd_us(
    buf: bytes,
    pos: int,
    length: int,
    name: str,
    values: dict[str, int | str],
    problems: list[Reason],
) -> None:
    """A US element that is not one 2-byte value: keep the first value, as receivers do.

    pydicom (so pynetdicom) and Wireshark read a multi-valued US as its values and act on
    the first; a C-MOVE-RSP with two remaining-sub-operations values must keep its status.
    """
    if length >= 2:
        values[name] = _U16.unpack_from(buf, pos)[0]
    if length >= 4:
        _note(problems, Reason.EXTRA_VALUES)
    if length & 1 or length == 0:
        if length < 2 and name == "command_field":
            raise DicomError(Reason.BAD_LENGTH, "command field")
        _note(problems, Reason.BAD_LENGTH)


def parse_command(data: bytes | bytearray | memoryview) -> DimseCommand:
    """Decode a complete command set (all its command fragments joined)."""
    buf = bytes(data)
    pos, end = 0, len(buf)
    values: dict[str, int | str] = {}
    tags: list[tuple[str, tuple[int, ...]]] = []
    problems: list[Reason] = []
    while pos < end:
        if end - pos < 8:
            raise DicomError(Reason.TRUNCATED, "command element header")
        group, element, length = _ELEMENT.unpack_from(buf, pos)
        pos += 8
        if group != 0x0000:
            raise DicomError(Reason.BAD_COMMAND, "element outside group 0000")
        if length > end - pos:
            raise DicomError(Reason.BAD_LENGTH, "command element length")
        if element in _US_TAGS:
            if length == 2:
                values[_US_TAGS[element]] = _U16.unpack_from(buf, pos)[0]
            else:
                _odd_us(buf, pos, length, _US_TAGS[element], values, problems)
        elif element in _UID_TAGS:
            text, ok = uid(buf[pos : pos + length])
            if not ok and Reason.BAD_VALUE not in problems:
                problems.append(Reason.BAD_VALUE)
            values[_UID_TAGS[element]] = text
        elif element in _AE_TAGS:
            text, ok = ae_title(buf[pos : pos + length])
            if (not ok or length > 16) and Reason.BAD_VALUE not in problems:
                problems.append(Reason.BAD_VALUE)
            if not text:
                # Spaces only shall not be used for an AE title (PS3.5 6.2).
                _note(problems, Reason.EMPTY_VALUE)
            values[_AE_TAGS[element]] = text
        elif element in _AT_TAGS:
            if length % 4:
                _note(problems, Reason.BAD_LENGTH)
            count = length // 4
            if count > MAX_TAGS:
                _note(problems, Reason.TOO_MANY)
                count = MAX_TAGS
            at_values = (_AT.unpack_from(buf, pos + 4 * i) for i in range(count))
            tags.append((_AT_TAGS[element], tuple(g << 16 | e for g, e in at_values)))
        elif element == CommandTag.ERROR_COMMENT:
            # Free text (it may name a patient): its presence and length, never the text.
            values["error_comment_length"] = length
        elif element == CommandTag.COMMAND_GROUP_LENGTH:
            if length != 4:
                raise DicomError(Reason.BAD_LENGTH, "command group length")
            if _U32.unpack_from(buf, pos)[0] != end - pos - 4:
                problems.append(Reason.BAD_LENGTH)
        pos += length
    command_field = values.pop("command_field", None)
    if not isinstance(command_field, int):
        raise DicomError(Reason.BAD_COMMAND, "no command field")
    fields: dict[str, Any] = {**values, **dict(tags)}
    return DimseCommand(command_field, anomalies=tuple(problems), **fields)
