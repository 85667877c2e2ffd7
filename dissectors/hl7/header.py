"""MSH and MSA: the only HL7 v2 segments the dissector reads (HL7 v2.x chapter 2).

Every other segment (PID, NK1, PV1, OBR, OBX, ...) holds or may hold patient data: the
session skips them without keeping a byte. Of MSH and MSA only the fields below are read;
MSH-7 (date/time), MSH-8 (security) and MSA-3 onwards (free text) are never decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import SEPARATOR_CHARS, AckCode
from .errors import HL7Error, Reason
from .limits import DEFAULT_LIMITS, Limits

_CONTROL = {i: "?" for i in (*range(0x20), 0x7F)}
_ACK_CODES = {code.value.encode(): code for code in AckCode}
_CARET = ord("^")


def text(raw: bytes, max_chars: int) -> str:
    """A field value as printable text: UTF-8 (invalid bytes replaced), no control chars, capped."""
    return raw[: max_chars * 4].decode("utf-8", "replace").translate(_CONTROL).strip()[:max_chars]


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """MSH, Message Header segment: routing and type fields only.

    ======  ======================  ===========================================
    field   name                    kept as
    ======  ======================  ===========================================
    MSH-1   Field Separator         ``field_separator``
    MSH-2   Encoding Characters     ``encoding_characters``
    MSH-3   Sending Application     ``sending_application`` (components by ^)
    MSH-4   Sending Facility        ``sending_facility``
    MSH-5   Receiving Application   ``receiving_application``
    MSH-6   Receiving Facility      ``receiving_facility``
    MSH-9   Message Type            ``message_type``, ``trigger_event``,
                                    ``message_structure`` (components 1-3)
    MSH-10  Message Control ID      ``message_control_id``
    MSH-11  Processing ID           ``processing_id`` (component 1: P, T, D)
    MSH-12  Version ID              ``version_id`` (component 1, e.g. 2.5.1)
    ======  ======================  ===========================================

    HL7 v2.x section 2.14.9. Absent fields are empty strings.
    """

    field_separator: str
    encoding_characters: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_type: str
    trigger_event: str
    message_structure: str
    message_control_id: str
    processing_id: str
    version_id: str

    @property
    def kind(self) -> str:
        """``TYPE^TRIGGER`` (``ADT^A01``), or ``TYPE`` alone when there is no trigger event."""
        return (
            f"{self.message_type}^{self.trigger_event}" if self.trigger_event else self.message_type
        )


@dataclass(frozen=True, slots=True)
class Acknowledgment:
    """MSA, Message Acknowledgment segment: MSA-1 and MSA-2 only.

    ======  ============================  ======================================
    field   name                          kept as
    ======  ============================  ======================================
    MSA-1   Acknowledgment Code           ``ack_code`` (Table 0008)
    MSA-2   Message Control ID            ``acknowledged_control_id``
    ======  ============================  ======================================

    HL7 v2.x section 2.14.8. MSA-3 (text message) and beyond are never read.
    """

    ack_code: AckCode
    acknowledged_control_id: str


def encoding_ok(sep: int, enc: bytes | memoryview) -> bool:
    """Whether MSH-2 looks like encoding characters: 2 to 5 distinct punctuation chars."""
    return (
        2 <= len(enc) <= 5
        and all(c in SEPARATOR_CHARS and c != sep for c in enc)
        and len(set(enc)) == len(enc)
    )


def parse_msh(segment: bytes, limits: Limits = DEFAULT_LIMITS) -> MessageHeader:
    """Decode an MSH segment (without its terminator); raise HL7Error(BAD_MSH) if malformed."""
    if segment[:3] != b"MSH":
        raise HL7Error(Reason.BAD_MSH, "frame does not start with an MSH segment")
    if len(segment) < 4:
        raise HL7Error(Reason.BAD_MSH, "MSH-1 field separator is missing")
    sep = segment[3]
    if sep not in SEPARATOR_CHARS:
        raise HL7Error(Reason.BAD_MSH, "MSH-1 field separator is not a punctuation character")
    # fields[0] is "MSH", fields[1] is MSH-2, fields[k] is MSH-(k+1); fields[12] is the rest.
    fields = segment.split(bytes((sep,)), 12)
    enc = fields[1]
    if not encoding_ok(sep, enc):
        raise HL7Error(Reason.BAD_MSH, "MSH-2 encoding characters are not valid")
    comp = enc[0]
    cap = limits.max_field_chars

    def field(number: int) -> bytes:
        return fields[number - 1] if number - 1 < min(len(fields), 12) else b""

    def hd(number: int) -> str:
        # Hierarchic designator: components shown with the standard ^ whatever MSH-2 says.
        raw = field(number)
        return text(raw if comp == _CARET else raw.replace(bytes((comp,)), b"^"), cap)

    def components(number: int, count: int) -> list[str]:
        parts = field(number).split(bytes((comp,)), count)
        return [text(p, cap) for p in parts[:count]] + [""] * (count - len(parts[:count]))

    message_type, trigger_event, structure = components(9, 3)
    if not message_type:
        raise HL7Error(Reason.BAD_MSH, "MSH-9 message type is missing")
    return MessageHeader(
        field_separator=chr(sep),
        encoding_characters=enc.decode("ascii"),
        sending_application=hd(3),
        sending_facility=hd(4),
        receiving_application=hd(5),
        receiving_facility=hd(6),
        message_type=message_type,
        trigger_event=trigger_event,
        message_structure=structure,
        message_control_id=text(field(10), cap),
        processing_id=components(11, 1)[0],
        version_id=components(12, 1)[0],
    )


def parse_msa(
    segment: bytes, sep: int, comp: int, limits: Limits = DEFAULT_LIMITS
) -> Acknowledgment:
    """Decode an MSA segment's first two fields; raise HL7Error(BAD_MSA) if MSA-1 is unknown."""
    fields = segment.split(bytes((sep,)), 3)
    if len(fields) < 2 or fields[0] != b"MSA":
        raise HL7Error(Reason.BAD_MSA, "not an MSA segment")
    code = _ACK_CODES.get(fields[1].split(bytes((comp,)), 1)[0].strip())
    if code is None:
        raise HL7Error(Reason.BAD_MSA, "MSA-1 acknowledgment code is not in table 0008")
    control = fields[2] if len(fields) > 2 else b""
    return Acknowledgment(code, text(control, limits.max_field_chars))
