"""MSH and MSA parsing: custom separators, component handling, caps, malformed segments."""

from __future__ import annotations

import pytest

from dissectors.hl7 import AckCode, HL7Error, Limits, Reason, parse_msa, parse_msh
from dissectors.hl7.header import text


def test_msh_standard() -> None:
    h = parse_msh(
        rb"MSH|^~\&|ADT-SENDER|SYNTH-HOSP|EMPI|SYNTH-HOSP|20250102||ADT^A01^ADT_A01|MSG-1|P|2.5.1"
    )
    assert h.field_separator == "|"
    assert h.encoding_characters == "^~\\&"
    assert (h.sending_application, h.sending_facility) == ("ADT-SENDER", "SYNTH-HOSP")
    assert (h.receiving_application, h.receiving_facility) == ("EMPI", "SYNTH-HOSP")
    assert (h.message_type, h.trigger_event, h.message_structure) == ("ADT", "A01", "ADT_A01")
    assert (h.message_control_id, h.processing_id, h.version_id) == ("MSG-1", "P", "2.5.1")
    assert h.kind == "ADT^A01"


def test_msh_custom_separators_and_hd_components() -> None:
    # Field '#', component '$': MSH-3 HD components are shown joined with '^'; MSH-11 and
    # MSH-12 keep their first component only (P of P$T, 2.4 of 2.4$DEU).
    h = parse_msh(rb"MSH#$*\@#LAB$1.2.3$ISO#FAC#EHR#HOSP#2025##ORU$R01#C-9#P$T#2.4$DEU#more#fields")
    assert h.field_separator == "#"
    assert h.sending_application == "LAB^1.2.3^ISO"
    assert (h.message_type, h.trigger_event, h.message_structure) == ("ORU", "R01", "")
    assert (h.processing_id, h.version_id) == ("P", "2.4")
    assert h.kind == "ORU^R01"


def test_msh_short_segment_gives_empty_fields() -> None:
    # Only up to MSH-9: control id, processing id and version are empty strings.
    h = parse_msh(rb"MSH|^~\&|A|B|C|D|2025||ACK")
    assert (h.message_type, h.trigger_event) == ("ACK", "")
    assert (h.message_control_id, h.processing_id, h.version_id) == ("", "", "")
    assert h.kind == "ACK"


def test_msh_never_reads_datetime_or_security() -> None:
    h = parse_msh(rb"MSH|^~\&|A|B|C|D|CANARY-DATETIME|CANARY-SECURITY|ADT^A01|X|P|2.5|CANARY-SEQ")
    assert "CANARY" not in repr(h)


def test_msh_values_are_sanitised_and_capped() -> None:
    # Control characters become '?', invalid UTF-8 is replaced, each value capped.
    h = parse_msh(b"MSH|^~\\&|A\x01B|\xff\xfe|C|D|2025||ADT^A01|" + b"9" * 500 + b"|P|2.5")
    assert h.sending_application == "A?B"
    assert h.sending_facility == "\ufffd\ufffd"
    assert h.message_control_id == "9" * 128
    short = parse_msh(rb"MSH|^~\&|ABCDEF||||||ADT^A01", Limits(max_field_chars=3))
    assert short.sending_application == "ABC"


def test_msh_utf8_facility() -> None:
    h = parse_msh("MSH|^~\\&|A|Klinik Köln|C|D|2025||ADT^A01|1|P|2.5".encode())
    assert h.sending_facility == "Klinik Köln"


@pytest.mark.parametrize(
    ("segment", "detail"),
    [
        (rb"PID|1||X", "frame does not start with an MSH segment"),
        (b"MSH", "MSH-1 field separator is missing"),
        (rb"MSHA^~\&A", "MSH-1 field separator is not a punctuation character"),
        (rb"MSH ^~\& ", "MSH-1 field separator is not a punctuation character"),
        (rb"MSH|^^\&|A|B|C|D|2025||ADT^A01", "MSH-2 encoding characters are not valid"),
        (rb"MSH|^|A|B|C|D|2025||ADT^A01", "MSH-2 encoding characters are not valid"),
        (rb"MSH|^~\&#!|A|B", "MSH-2 encoding characters are not valid"),
        (rb"MSH|^~|\&|A", "MSH-9 message type is missing"),
        (rb"MSH|^~\&|A|B|C|D|2025|||X|P|2.5", "MSH-9 message type is missing"),
        (rb"MSH|^~\&|A|B|C|D|2025||^A01|X", "MSH-9 message type is missing"),
    ],
)
def test_msh_malformed(segment: bytes, detail: str) -> None:
    with pytest.raises(HL7Error) as exc:
        parse_msh(segment)
    assert exc.value.reason is Reason.BAD_MSH
    assert exc.value.detail == detail


@pytest.mark.parametrize("code", list(AckCode))
def test_msa_every_table_0008_code(code: AckCode) -> None:
    # MSA|<code>|MSG-1|<free text never read>
    ack = parse_msa(b"MSA|" + code.value.encode() + b"|MSG-1|CANARY-MSA-TEXT", ord("|"), ord("^"))
    assert ack.ack_code is code
    assert ack.acknowledged_control_id == "MSG-1"
    assert "CANARY" not in repr(ack)


def test_msa_custom_separators_and_components() -> None:
    # MSA#AE$x#C-9: the code is MSA-1's first component.
    ack = parse_msa(b"MSA#AE$x#C-9", ord("#"), ord("$"))
    assert (ack.ack_code, ack.acknowledged_control_id) == (AckCode.AE, "C-9")


def test_msa_without_control_id() -> None:
    ack = parse_msa(b"MSA|CA", ord("|"), ord("^"))
    assert (ack.ack_code, ack.acknowledged_control_id) == (AckCode.CA, "")


@pytest.mark.parametrize(
    "segment", [b"MSA|XX|MSG-1", b"MSA||MSG-1", b"MSA", b"MSB|AA|1", b"MSA|aa|1"]
)
def test_msa_malformed(segment: bytes) -> None:
    with pytest.raises(HL7Error) as exc:
        parse_msa(segment, ord("|"), ord("^"))
    assert exc.value.reason is Reason.BAD_MSA


def test_text_helper() -> None:
    assert text(b"  padded  ", 10) == "padded"
    assert text(b"a\x7fb\r", 10) == "a?b?"
