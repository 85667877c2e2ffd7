"""The plug-in seam (base.py, plugin.py) and the small helpers: text, vendors, names."""

from __future__ import annotations

import pytest

from dissectors.base import (
    NEED_MORE,
    NO_MATCH,
    CloseReason,
    Direction,
    Dissector,
    ProbeResult,
    Session,
    Verdict,
    first_match,
)
from dissectors.dicom import DICOM, DicomDissector, DicomSession, Limits
from dissectors.dicom.events import DimseMessage
from dissectors.dicom.names import uid_name
from dissectors.dicom.text import ae_title, short_text, uid
from dissectors.dicom.vendors import vendor_for

from . import vectors as v
from .framing import PEER, Feeder


class _NeverDissector:
    """A stand-in that always says NO_MATCH, or NEED_MORE when told to."""

    name = "never"

    def __init__(self, verdict: ProbeResult = NO_MATCH) -> None:
        self.verdict = verdict

    def probe(self, data: bytes | memoryview) -> ProbeResult:
        return self.verdict

    def new_session(self, detected_by: str) -> Session:
        raise NotImplementedError


def test_dicom_is_a_dissector_and_makes_sessions() -> None:
    assert isinstance(DICOM, Dissector)
    assert DICOM.name == "dicom"
    session = DICOM.new_session("associate-rq")
    assert isinstance(session, DicomSession)
    assert isinstance(session, Session)
    assert session.state.detected_by == "associate-rq"


def test_dissector_passes_its_limits() -> None:
    limits = Limits(max_presentation_contexts=1)
    session = DicomDissector(limits=limits).new_session("associate-rq")
    assert session.limits is limits


def test_first_match() -> None:
    never = _NeverDissector()
    assert first_match([never, DICOM], v.RQ_ECHO) == (
        DICOM,
        ProbeResult(Verdict.MATCH, "associate-rq"),
    )
    assert first_match([never, DICOM], v.RQ_ECHO[:20]) == (None, NEED_MORE)
    assert first_match([never, DICOM], b"GET / HTTP/1.1\r\n") == (None, NO_MATCH)
    assert first_match([_NeverDissector(NEED_MORE)], b"x") == (None, NEED_MORE)
    assert first_match([], b"x") == (None, NO_MATCH)


def test_probe_then_session_mid_stream() -> None:
    # What the sensor does: probe the first bytes, open a session with the evidence.
    found, result = first_match([DICOM], v.PDATA_ECHO_RQ)
    assert found is DICOM
    assert result == ProbeResult(Verdict.MATCH, "mid-stream")
    session = DICOM.new_session(result.detected_by)
    feeder = Feeder(session)
    events = feeder.feed(Direction.ORIGIN, v.PDATA_ECHO_RQ)
    assert [e.command.name for e in events if isinstance(e, DimseMessage)] == ["C-ECHO-RQ"]
    feeder.feed(PEER, v.PDATA_ECHO_RSP)
    assert session.state.requestor is Direction.ORIGIN


def test_direction_other() -> None:
    assert Direction.ORIGIN.other is Direction.PEER
    assert Direction.PEER.other is Direction.ORIGIN


def test_close_reasons_are_the_end_names() -> None:
    session = DICOM.new_session("associate-rq")
    assert session.close(CloseReason.EVICTED, 1.0)[-1].end == "evicted"


# ---- text ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"ECHOSCU         ", ("ECHOSCU", True)),
        (b"  ANY-SCP\x00\x00\x00\x00\x00\x00\x00", ("ANY-SCP", True)),
        (b"", ("", True)),
        (b"EVIL\x07\x1b[0m", ("EVIL??[0m", False)),
        (b"\xff\xfe", ("??", False)),
    ],
)
def test_ae_title(raw: bytes, expected: tuple[str, bool]) -> None:
    assert ae_title(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"1.2.840.10008.1.1\x00", ("1.2.840.10008.1.1", True)),
        (b"1.2.840.10008.1.2 ", ("1.2.840.10008.1.2", True)),
        (b"", ("", False)),
        (b"1." * 32 + b"1", ("1." * 32, False)),  # 65 characters
        (b"1.2.abc", ("1.2.abc", False)),
        (b"1.2\x01", ("1.2?", False)),
    ],
)
def test_uid(raw: bytes, expected: tuple[str, bool]) -> None:
    assert uid(raw) == expected


def test_uid_of_64_characters_is_fine() -> None:
    text = "1." * 31 + "12"
    assert len(text) == 64
    assert uid(text.encode()) == (text, True)


def test_short_text() -> None:
    assert short_text(b"OFFIS_DCMTK_367") == ("OFFIS_DCMTK_367", True)
    assert short_text(b"BAD\x00NAME") == ("BAD?NAME", False)


# ---- vendors and names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("class_uid", "vendor"),
    [
        ("1.2.276.0.7230010.3.0.3.6.7", "DCMTK"),
        ("1.2.826.0.1.3680043.9.3811.3.0.4", "pynetdicom"),
        ("1.2.826.0.1.3680043.8.641.1", "Orthanc"),
        ("1.2.840.113619.6.94", "GE Healthcare"),
        ("1.3.12.2.1107.5.2", "Siemens Healthineers"),
        ("1.2.826.0.1.3680043.10.854", "dcmjs-dimse"),
        ("1.3.6.1.4.1.30071.8", "fo-dicom"),
        ("1.2.826.0.1.3680043.2.135.1066.101", "Conquest"),
        ("1.2.826.0.1.3680043.2.1143.107.104.103.115.2.8.4", "GDCM"),
        ("1.2.40.0.13.1.3", "dcm4che"),
        ("1.2.826.0.1.3680043.9.5560.3", "Odil"),
        ("1.2.3.4", None),
        ("", None),
        (None, None),
    ],
)
def test_vendor_for(class_uid: str | None, vendor: str | None) -> None:
    assert vendor_for(class_uid) == vendor


def test_vendor_table_size() -> None:
    from dissectors.dicom.vendors import _ROOTS

    assert len(_ROOTS) >= 25
    assert len({root for root, _ in _ROOTS}) == len(_ROOTS)


def test_vendor_root_is_a_whole_component() -> None:
    # "1.2.276.0.72300101" is not under DCMTK's root "1.2.276.0.7230010.3.".
    assert vendor_for("1.2.276.0.72300101.3.1") is None


def test_uid_name() -> None:
    assert uid_name("1.2.840.10008.1.1") == "Verification SOP Class"
    assert uid_name("1.2.840.10008.1.2") == "Implicit VR Little Endian"
    assert uid_name("1.2.3.4.5") is None
