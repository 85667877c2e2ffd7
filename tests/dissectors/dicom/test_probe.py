"""The three-way probe on the first bytes of a direction, on any port."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissectors.base import NEED_MORE, NO_MATCH, ProbeResult, Verdict
from dissectors.dicom import probe

from . import vectors as v
from .framing import COMMAND_LAST, DATA_LAST, pdata, pdv

MATCH_RQ = ProbeResult(Verdict.MATCH, "associate-rq")
MATCH_AC = ProbeResult(Verdict.MATCH, "associate-ac")
MATCH_MIDSTREAM = ProbeResult(Verdict.MATCH, "mid-stream")

# An HTTP request line.
HTTP = b"GET /wado?requestType=WADO HTTP/1.1\r\nHost: pacs\r\n\r\n"
# The start of a TLS 1.2 ClientHello record: handshake 0x16, version 0x0303, length 0x00c4,
# ClientHello 0x01, length 0x0000c0, client version 0x0303, then random bytes.
TLS_CLIENT_HELLO = v.h(
    "16030100c4010000c00303"
    "5b2f6c1a9e0d4c3b8a7f6e5d4c3b2a19"
    "08f7e6d5c4b3a2918f7e6d5c4b3a2918"
    "20"
    "00" * 40
)
# 96 bytes from a fixed pseudo-random source (os.urandom once, pasted).
RANDOM = v.h(
    "9c1f3a77e05b2d6148aa0c93f4e1b87d2259c0ee13a4f6d87b90c5e21f3d6a48"
    "e7b1c2d3a4f50617283940516273849506a7b8c9daebfc0d1e2f30415263748f"
    "5a6b7c8d9eafb0c1d2e3f405162738495a6b7c8d9eafb0c1d2e3f40516273849"
)
# 0x01 0x00 then 80 bytes of 0xff: PDU length 0xffffffff -> NO_MATCH.
RQ_THEN_GARBAGE = b"\x01\x00" + b"\xff" * 80
# 0x01 0x00, length 0xcd, version 2 (bit 0 clear), then DCMTK's remaining bytes.
RQ_VERSION_2 = v.RQ_ECHO[:6] + b"\x00\x02" + v.RQ_ECHO[8:]
# DCMTK's RQ with a BEL (0x07) as the second character of the called AE title.
RQ_AE_NONPRINTABLE = v.RQ_ECHO[:11] + b"\x07" + v.RQ_ECHO[12:]
# DCMTK's RQ whose byte 74 (the first item type) is 0x20 instead of 0x10.
RQ_BYTE_74 = v.RQ_ECHO[:74] + b"\x20" + v.RQ_ECHO[75:]
# DCMTK's RQ with the PDU header's reserved byte 1 set (no real peer tests it).
RQ_RESERVED = b"\x01\xa5" + v.RQ_ECHO[2:]
# P-DATA-TF holding a last data set fragment (control 0x02): not a command start.
PDATA_DATA_SET = pdata(pdv(1, DATA_LAST, v.h("10001000100000005359") + b"NTHETIC^CANARY"))
# P-DATA-TF holding the C-ECHO command on an even context id (2).
PDATA_EVEN_CONTEXT = pdata(pdv(2, COMMAND_LAST, v.ECHO_RQ_COMMAND))
# P-DATA-TF holding a command whose group length (0x39) disagrees with the PDV length.
PDATA_GROUP_LENGTH_LIES = v.PDATA_ECHO_RQ[:20] + b"\x39" + v.PDATA_ECHO_RQ[21:]


def test_rq_matches() -> None:
    assert probe(v.RQ_ECHO) == MATCH_RQ
    assert probe(v.RQ_STORE) == MATCH_RQ
    assert probe(memoryview(v.RQ_ECHO)) == MATCH_RQ


def test_ac_matches() -> None:
    assert probe(v.AC_ECHO) == MATCH_AC
    assert probe(v.AC_STORE) == MATCH_AC


def test_pdata_command_matches_mid_stream() -> None:
    assert probe(v.PDATA_ECHO_RQ) == MATCH_MIDSTREAM
    assert probe(v.PDATA_ECHO_RSP) == MATCH_MIDSTREAM
    assert probe(v.PDATA_ECHO_RQ[:24]) == MATCH_MIDSTREAM


def test_first_segment_alone_needs_more() -> None:
    assert probe(v.PDATA_ECHO_RQ_SEG1) == NEED_MORE


@pytest.mark.parametrize(("data", "needed"), [(v.RQ_ECHO, 75), (v.AC_ECHO, 75)])
def test_associate_prefixes_need_more(data: bytes, needed: int) -> None:
    # The probe looks at the first item type at offset 74: 75 bytes decide.
    for n in range(needed):
        assert probe(data[:n]) == NEED_MORE, n
    assert probe(data[:needed]).verdict is Verdict.MATCH


def test_pdata_prefixes_need_more() -> None:
    for n in range(24):
        assert probe(v.PDATA_ECHO_RQ[:n]) == NEED_MORE, n


@pytest.mark.parametrize(
    "data",
    [
        HTTP,
        TLS_CLIENT_HELLO,
        RANDOM,
        RQ_THEN_GARBAGE,
        RQ_VERSION_2,
        RQ_AE_NONPRINTABLE,
        RQ_BYTE_74,
        PDATA_DATA_SET,
        PDATA_EVEN_CONTEXT,
        PDATA_GROUP_LENGTH_LIES,
        v.RJ_CALLED_AE,
        v.RELEASE_RQ,
        v.ABORT_USER,
        v.RQ_LENGTH_64,
        b"\x01\x00" + bytes(8),  # PDU length 0
    ],
    ids=["http", "tls", "random", "0100-garbage", "version-2", "ae-bel", "byte74",
         "pdata-data-set", "pdata-even-ctx", "pdata-group-length", "rj",
         "release", "abort", "rq-length-64", "rq-length-0"],
)  # fmt: skip
def test_no_match(data: bytes) -> None:
    assert probe(data) == NO_MATCH


def test_bad_ae_title_decided_early() -> None:
    # The bad AE character sits at offset 11: a 12-byte prefix is already NO_MATCH.
    assert probe(RQ_AE_NONPRINTABLE[:12]) == NO_MATCH
    assert probe(RQ_AE_NONPRINTABLE[:11]) == NEED_MORE


def test_reserved_header_byte_is_not_tested() -> None:
    # pynetdicom (dul.py) reads byte 1 and drops it; DCMTK (dulfsm.cc readPDUHeadTCP) keeps
    # it and never tests it: an association whose PDUs set it is still an association.
    assert probe(RQ_RESERVED) == MATCH_RQ
    assert probe(b"\x02\xff" + v.AC_ECHO[2:]) == MATCH_AC
    assert probe(b"\x04\x80" + v.PDATA_ECHO_RQ[2:]) == MATCH_MIDSTREAM
    for data in (RQ_RESERVED, v.PDATA_ECHO_RQ):
        assert probe(data[:2]) == NEED_MORE
        assert probe(data[:9]) == NEED_MORE


@pytest.mark.parametrize("version", [0x0003, 0x0101, 0xFF01, 0xFFFF])
def test_version_tested_by_bit_0_only(version: int) -> None:
    # DCMTK (dulparse.cc parseAssociate) rejects only a version without bit 0, as PS3.8
    # 9.3.2 asks ("a receiver ... shall not test any other bits").
    data = v.RQ_ECHO[:6] + struct.pack(">H", version) + v.RQ_ECHO[8:]
    assert probe(data) == MATCH_RQ


def test_pdu_length_decided_at_three_bytes() -> None:
    # An RQ/AC of at most 1 MiB has 0 in the length's first byte; a P-DATA-TF of at most
    # 64 MiB has at most 4 there.
    assert probe(b"\x01\x00\x01") == NO_MATCH
    assert probe(b"\x02\x07\x00") == NEED_MORE
    assert probe(b"\x04\x00\x05") == NO_MATCH
    assert probe(b"\x04\x10\x04") == NEED_MORE


def test_nul_padded_ae_title_still_matches() -> None:
    # AE titles padded with NUL instead of spaces (seen from some toolkits).
    data = bytearray(v.RQ_ECHO)
    data[18:26] = bytes(8)
    assert probe(bytes(data)) == MATCH_RQ


def test_pdata_non_last_command_fragment_matches() -> None:
    # A first command fragment (control 0x01) may be shorter than the group length says.
    data = pdata(pdv(1, 0x01, v.ECHO_RQ_COMMAND[:30]))
    assert probe(data) == MATCH_MIDSTREAM


def test_pdata_command_too_large_no_match() -> None:
    # Group length 0x00100000 (1 MiB), above the 64 KiB command cap.
    data = pdata(pdv(1, 0x01, v.h("0000000004000000") + struct.pack("<I", 1 << 20) + bytes(8)))
    assert probe(data) == NO_MATCH


# ---- Hypothesis: random bytes essentially never match ------------------------------------


def documented_associate(data: bytes) -> bool:
    """PS3.8 RQ/AC start as documented: header, length 68..1 MiB, version, AEs, item 0x10."""
    if len(data) < 75 or data[0] not in (1, 2):  # byte 1 is reserved, not tested
        return False
    (length,) = struct.unpack_from(">I", data, 2)
    (version,) = struct.unpack_from(">H", data, 6)
    printable = all(b == 0 or 0x20 <= b < 0x7F for b in data[10:42])
    return 68 < length <= 1 << 20 and version & 1 == 1 and printable and data[74] == 0x10


def documented_pdata_command(data: bytes) -> bool:
    """P-DATA framing with a first PDV that starts a command set at (0000,0000) UL."""
    if len(data) < 24 or data[0] != 4:  # byte 1 is reserved, not tested
        return False
    length, pdv_length, ctx, control = struct.unpack_from(">IIBB", data, 2)
    group, element, el_length = struct.unpack_from("<HHI", data, 12)
    return (
        length >= 12
        and pdv_length + 4 <= length
        and ctx % 2 == 1
        and control & 1 == 1
        and (group, element, el_length) == (0, 0, 4)
    )


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(first=st.sampled_from([0x01, 0x02, 0x04]), rest=st.binary(min_size=0, max_size=200))
def test_random_bytes_do_not_match(first: int, rest: bytes) -> None:
    data = bytes([first]) + rest
    result = probe(data)
    if result.verdict is Verdict.MATCH:
        assert documented_associate(data) or documented_pdata_command(data)


@settings(max_examples=2000, deadline=None)
@given(first=st.sampled_from([0x01, 0x02]), rest=st.binary(min_size=0, max_size=200))
def test_random_bytes_after_a_real_header_do_not_match(first: int, rest: bytes) -> None:
    # The first 10 bytes of DCMTK's RQ (type, length 0xcd, version 1), then random bytes:
    # a MATCH needs 32 printable AE bytes and 0x10 at offset 74, by chance ~2^-100.
    data = bytes([first]) + v.RQ_ECHO[1:10] + rest
    result = probe(data)
    if result.verdict is Verdict.MATCH:
        assert documented_associate(data)
    if len(data) >= 75 and not documented_associate(data):
        assert result == NO_MATCH


@settings(max_examples=500, deadline=None)
@given(data=st.binary(min_size=0, max_size=200))
def test_probe_total(data: bytes) -> None:
    # Any input gets one of the three answers, with evidence only on MATCH.
    result = probe(data)
    assert result.verdict in (Verdict.MATCH, Verdict.NEED_MORE, Verdict.NO_MATCH)
    assert (result.detected_by != "") == (result.verdict is Verdict.MATCH)
    if data and data[0] not in (1, 2, 4):
        assert result == NO_MATCH


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(0, 300))
def test_prefix_of_a_match_never_no_match(cut: int) -> None:
    # NEED_MORE must not turn into NO_MATCH as bytes arrive for a real association.
    for data in (v.RQ_ECHO, v.AC_ECHO, v.RQ_STORE, v.PDATA_ECHO_RQ, v.PDATA_ECHO_RSP):
        assert probe(data[:cut]) != NO_MATCH
