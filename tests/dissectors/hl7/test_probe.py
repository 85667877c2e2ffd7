"""The MLLP probe: MATCH on <VT>MSH + separator + encoding characters, NEED_MORE on prefixes."""

from __future__ import annotations

import pytest

from dissectors.base import Verdict
from dissectors.hl7 import HL7, frame_start, probe

from . import vectors as v

MATCH, NEED_MORE, NO_MATCH = Verdict.MATCH, Verdict.NEED_MORE, Verdict.NO_MATCH


@pytest.mark.parametrize(
    "data",
    [
        v.ADT_A01,  # a whole frame
        b"\x0bMSH|^~\\&|",  # just enough: VT, MSH, '|', 4 encoding chars, '|'
        b"\x0bMSH|^~\\&#|",  # 5 encoding characters (v2.7 truncation character)
        b"\x0bMSH|^~|",  # 2 encoding characters
        b"\x0bMSH#$*\\@#ORDERS",  # custom separators
        v.ORM_CUSTOM,
        v.ACK_AA,
    ],
)
def test_match(data: bytes) -> None:
    result = probe(data)
    assert result.verdict is MATCH
    assert result.detected_by == "mllp"
    assert probe(memoryview(data)).verdict is MATCH


def test_every_short_prefix_needs_more() -> None:
    # b"", b"\x0b", b"\x0bM", ... up to b"\x0bMSH|^~\\&": each could still become a match.
    head = b"\x0bMSH|^~\\&|"
    for i in range(len(head)):
        assert probe(head[:i]).verdict is NEED_MORE, head[:i]
    assert probe(head).verdict is MATCH


@pytest.mark.parametrize(
    "data",
    [
        v.HTTP_GET,
        v.DICOM_RQ,  # DICOM A-ASSOCIATE-RQ
        v.BARE_MSH,  # HL7 without MLLP framing
        v.VT_MSH_LETTER,  # MSH-1 is a letter
        b"\x0bMSH ^~\\& ",  # MSH-1 is a space
        b"\x0bMSH|^^\\&|",  # repeated encoding character
        b"\x0bMSH|^|",  # one encoding character only
        b"\x0bMSH||",  # no encoding characters
        b"\x0bMSH|^~\\&#!|",  # six encoding characters
        b"\x0bMSH|^~\\&A|",  # a letter among the encoding characters
        b"\x0bMSH|^~\r",  # a CR inside MSH-2
        b"\x0bMSA|AA|",  # a frame starting with another segment
        b"\x0bmsh|^~\\&|",  # lower case
        b"\x0b\x0bMSH|^~\\&|",  # two start blocks
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS ClientHello
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"\x00" * 16,
    ],
)
def test_no_match(data: bytes) -> None:
    assert probe(data).verdict is NO_MATCH


def test_no_match_is_decided_within_a_fixed_number_of_bytes() -> None:
    # Eleven bytes always suffice: VT MSH sep, up to 5 encoding characters, sep.
    assert probe(b"\x0bMSH|^~\\&#!").verdict is NO_MATCH
    assert probe(b"\x0bMSH|^~\\&#").verdict is NEED_MORE


def test_frame_start_at_an_offset() -> None:
    data = b"junk" + v.ADT_A01
    assert frame_start(data, 4) is True
    assert frame_start(data, 0) is False
    assert frame_start(b"xx\x0bMSH|^", 2) is None


def test_plugin_probe_is_the_same() -> None:
    assert HL7.probe(v.ADT_A01) == probe(v.ADT_A01)
    assert HL7.probe(v.HTTP_GET).verdict is NO_MATCH
