"""PHI canary: patient data and identity secrets from real peers never leave the sensor.

``pcaps/phi-canary`` (real pynetdicom peers on loopback, see its README) carries unique canary
strings in C-FIND query keys and matches, a C-STORE data set, a passcode, a Kerberos ticket,
a SAML assertion and a JWT. The other canary captures of pcaps/ are read too. Every output
of every run (association records, events, inventory JSON and CSV, metrics, the baseline
state file, stdout, stderr) is searched for every canary, as text, hex and base64, and
nothing may be found; that includes deliberately broken runs: a capture cut inside the data
set, one whose PDUs are mangled around the canaries (resynchronisation scans over them),
one whose identity sub-item has an unknown type (kept as an unknown item), standard input,
and a run that fails on an unwritable output.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import (
    PCAPS,
    RELEASE_RP,
    RELEASE_RQ,
    Run,
    associate_ac,
    associate_rq,
    dicom_conversation,
    pdu,
    pdv,
    read_pcap,
    run_sensor,
    write_pcap,
)

CASE = PCAPS / "phi-canary"
CAPTURE = CASE / "capture.pcap"
OTHER_CANARY_CAPTURES = [
    PCAPS / "pynetdicom-user-identity" / "capture.pcap",
    PCAPS / "zones" / "credentials-move-query" / "capture.pcap",
]
JWT_SUBJECT = "CANARY-JWT-SUB-72aa"


def canaries() -> dict[str, str]:
    found = json.loads((CASE / "canaries.json").read_text())["canaries"]
    found["jwt_subject"] = JWT_SUBJECT
    found["jwt_header"] = found["jwt"].split(".")[0]
    found["jwt_payload"] = found["jwt"].split(".")[1]
    found["user_identity_passcode_7f3a"] = "CANARY-PASSCODE-7f3a"
    found["zones_passcode"] = "CANARY-ZONES-PASS"
    # Distinctive cores, in case a canary were cut or re-cased on its way out.
    for core in (
        "STORENAME",
        "STOREPID",
        "QUERYNAME",
        "QUERYPID",
        "MATCHNAME",
        "MATCHPID",
        "COMMENT-61b0",
        "PASSCODE-",
        "KERBEROS-TICKET",
        "SAML-ASSERTION",
        "saml:Assertion",
    ):
        found[f"core:{core}"] = core  # fmt: skip
    return found


CANARIES = canaries()


def forms(value: str) -> Iterator[tuple[str, str]]:
    """The canary as text (any case), hex and base64, as an output could carry it."""
    raw = value.encode()
    yield "text", value.lower()
    yield "hex", raw.hex()
    yield "HEX", raw.hex().upper()
    if len(raw) >= 12:
        yield "base64", base64.b64encode(raw).decode()[:-4]


def hits(run: Run, extra: dict[str, str] | None = None) -> list[str]:
    """Every (output, canary, form) found."""
    outputs = run.all_outputs()
    outputs.update(extra or {})
    found = []
    for where, text in outputs.items():
        lowered = text.lower()
        for name, value in CANARIES.items():
            for form, needle in forms(value):
                haystack = lowered if form == "text" else text
                if needle and needle in haystack:
                    found.append(f"{name} ({form}) in {where}")
    return found


def config_with_baseline(tmp_path: Path) -> Path:
    cfg = tmp_path / "zones.yaml"
    cfg.write_text(f"baseline:\n  state_file: {tmp_path / 'baseline.json'}\n")
    return cfg


def test_canaries_are_in_the_capture() -> None:
    data = CAPTURE.read_bytes()
    for name, value in CANARIES.items():
        if name in ("jwt_subject", "zones_passcode", "user_identity_passcode_7f3a"):
            continue
        assert value.encode() in data, name
    assert b"CANARY-PASSCODE-7f3a" in OTHER_CANARY_CAPTURES[0].read_bytes()


def test_no_canary_in_any_output(tmp_path: Path) -> None:
    cfg = config_with_baseline(tmp_path)
    run = run_sensor([CAPTURE, *OTHER_CANARY_CAPTURES], tmp_path / "out",
                     extra=["--config", str(cfg), "--update-baseline"])  # fmt: skip
    assert run.rc == 0, run.stderr
    records = run.records()
    assert len(records) >= 5
    # The sensor did see what there was to see, without the values.
    types = {r["dicom"].get("user_identity", {}).get("type") for r in records}
    assert {2, 3, 4, 5} <= types
    assert any(r["dicom"]["dimse"].get("C-FIND-RSP") == 3 for r in records)
    assert any(r["dicom"]["user_identity"].get("passcode_present") for r in records
               if "user_identity" in r["dicom"])  # fmt: skip
    baseline = tmp_path / "baseline.json"
    assert baseline.exists()
    assert hits(run, {"baseline.json": baseline.read_text()}) == []


def test_no_canary_from_standard_input_to_standard_output(tmp_path: Path) -> None:
    run = run_sensor(["-"], tmp_path / "out", outputs=False, stdin=CAPTURE.read_bytes(),
                     extra=["--associations", "-", "--events", "-", "--metrics", "-",
                            "--inventory", "-", "--inventory-csv", "-"])  # fmt: skip
    assert run.rc == 0, run.stderr
    assert '"dicom.association"' in run.stdout
    assert hits(run) == []


def test_no_canary_when_the_capture_is_cut_inside_the_data_set(tmp_path: Path) -> None:
    data = CAPTURE.read_bytes()
    at = data.index(CANARIES["patient_name_store"].encode()) + 6
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:at])
    run = run_sensor([cut], tmp_path / "out")
    assert run.rc == 0, run.stderr
    assert "capture cut off" in run.stderr
    assert hits(run) == []


def _payload_offset(frame: bytes) -> int:
    ihl = (frame[14] & 0x0F) * 4
    return 14 + ihl + (frame[14 + ihl + 12] >> 4) * 4


def _mangled(tmp_path: Path, how: str) -> Path:
    _, recs = read_pcap(CAPTURE)
    needles = [v.encode() for k, v in CANARIES.items() if not k.startswith("core:")]
    out = []
    for ts, frame in recs:
        if any(n in frame for n in needles):
            b = bytearray(frame)
            start = _payload_offset(frame)
            if how == "pdu-type" and len(b) > start:
                b[start] = 0x09  # no such PDU type: lost sync, resync scans the rest
            elif how == "pdv-length" and len(b) > start + 10:
                struct.pack_into(">I", b, start + 6, 0xFFFFFF00)  # first PDV length lies
            elif how == "identity-type":
                at = bytes(b).find(b"\x58\x00", start)
                if at >= 0:
                    b[at] = 0x5F  # the identity sub-item becomes an unknown sub-item
            elif how == "identity-kind":
                at = bytes(b).find(b"\x58\x00", start)
                if at >= 0:
                    b[at + 4] = 9  # an identity type no standard defines
            frame = bytes(b)
        out.append((ts, frame))
    return write_pcap(tmp_path / f"mangled-{how}.pcap", out)


@pytest.mark.parametrize("how", ["pdu-type", "pdv-length", "identity-type", "identity-kind"])
def test_no_canary_from_mangled_pdus(tmp_path: Path, how: str) -> None:
    run = run_sensor([_mangled(tmp_path, how)], tmp_path / "out")
    assert run.rc == 0, run.stderr
    assert hits(run) == []


def test_no_canary_in_the_error_of_a_failed_run(tmp_path: Path) -> None:
    unwritable = str(tmp_path / "missing-dir" / "a.jsonl")
    run = run_sensor(
        [CAPTURE], tmp_path / "out", outputs=False, extra=["--associations", unwritable]
    )
    assert run.rc == 2
    assert len(run.stderr.splitlines()) == 1
    assert hits(run) == []


def test_the_search_finds_a_planted_canary(tmp_path: Path) -> None:
    # The detector itself: a canary planted as text, hex or base64 is found.
    out = tmp_path / "out"
    out.mkdir()
    passcode = CANARIES["passcode"]
    (out / "a.jsonl").write_text(json.dumps({"x": passcode.lower()}))
    (out / "b.txt").write_text(passcode.encode().hex())
    (out / "c.txt").write_text(base64.b64encode(CANARIES["saml"].encode()).decode())
    run = Run(0, "", "", 0.0, 0.0, out)
    found = hits(run)
    assert any(f.startswith("passcode (text) in a.jsonl") for f in found)
    assert any(f.startswith("passcode (hex) in b.txt") for f in found)
    assert any(f.startswith("saml (base64) in c.txt") for f in found)


# -- DIMSE failure details: the Error Comment (0000,0902) by length only -------------------

ERROR_COMMENT_CANARY = "CANARY-ERRCOMMENT-5d1e^PATIENT"


def _element(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0, tag, len(value)) + value


def _failed_store_rsp() -> bytes:
    """C-STORE-RSP, status 0xA900, Offending Element (0010,0010), Error ID 0x0107 and an
    Error Comment holding the canary, in one P-DATA-TF on context 1."""
    body = b"".join([
        _element(0x0002, b"1.2.840.10008.5.1.4.1.1.2\x00"),
        _element(0x0100, struct.pack("<H", 0x8001)),
        _element(0x0120, struct.pack("<H", 7)),
        _element(0x0800, struct.pack("<H", 0x0101)),
        _element(0x0900, struct.pack("<H", 0xA900)),
        _element(0x0901, struct.pack("<HH", 0x0010, 0x0010)),
        _element(0x0902, ERROR_COMMENT_CANARY.encode()),
        _element(0x0903, struct.pack("<H", 0x0107)),
    ])  # fmt: skip
    cmd = _element(0x0000, struct.pack("<I", len(body))) + body
    return pdu(0x04, pdv(1, 0x03, cmd))


@pytest.mark.parametrize("cut", [False, True], ids=["whole", "cut-in-comment"])
def test_error_comment_never_leaves(tmp_path: Path, cut: bool) -> None:
    rsp = _failed_store_rsp()
    if cut:
        # The connection ends inside the Error Comment: a truncated P-DATA, same privacy.
        rsp = rsp[: rsp.index(b"ERRCOMMENT") + 4]
    records = dicom_conversation(
        [associate_rq(), RELEASE_RQ], [associate_ac(), rsp + (b"" if cut else RELEASE_RP)]
    )
    capture = write_pcap(tmp_path / "error-comment.pcap", records)
    assert ERROR_COMMENT_CANARY.encode() in capture.read_bytes() or cut
    run = run_sensor([capture], tmp_path / "out")
    assert run.rc == 0, run.stderr
    [record] = run.records()
    if not cut:
        [failure] = record["dicom"]["failures"]
        assert failure == {
            "command": "C-STORE-RSP",
            "message_id_being_responded_to": 7,
            "status": "0xA900",
            "status_class": "failure",
            "error_id": 0x0107,
            "offending_elements": ["(0010,0010)"],
            "error_comment": {"present": True, "length": len(ERROR_COMMENT_CANARY)},
        }
    for where, text in run.all_outputs().items():
        for core in (ERROR_COMMENT_CANARY, "ERRCOMMENT", "5d1e^PATIENT"):
            for form, needle in forms(core):
                haystack = text.lower() if form == "text" else text
                assert needle not in haystack, f"{core} ({form}) in {where}"


def _alert_pcaps(directory: Path) -> dict[str, str]:
    """Every alert pcap's bytes as text (latin-1 keeps each byte), for the same search."""
    return {f"alert-pcap/{p.name}": p.read_bytes().decode("latin-1")
            for p in sorted(directory.glob("*.pcap"))}  # fmt: skip


def test_no_canary_in_the_alert_pcaps(tmp_path: Path) -> None:
    pcaps = tmp_path / "alert-pcaps"
    run = run_sensor([CAPTURE, *OTHER_CANARY_CAPTURES], tmp_path / "out",
                     extra=["--alert-pcap", str(pcaps)])  # fmt: skip
    assert run.rc == 0, run.stderr
    written = _alert_pcaps(pcaps)
    # The canary capture's five associations all alert (credentials in clear), and so on.
    assert len(written) >= 7
    raw = "".join(written.values())
    assert "CANARYSCU" in raw  # the A-ASSOCIATE-RQ is kept: AE titles, not secrets
    assert hits(run, written) == []


@pytest.mark.parametrize("how", ["pdu-type", "pdv-length", "identity-type", "identity-kind"])
def test_no_canary_in_the_alert_pcaps_of_mangled_pdus(tmp_path: Path, how: str) -> None:
    pcaps = tmp_path / "alert-pcaps"
    run = run_sensor([_mangled(tmp_path, how)], tmp_path / "out",
                     extra=["--alert-pcap", str(pcaps)])  # fmt: skip
    assert run.rc == 0, run.stderr
    assert hits(run, _alert_pcaps(pcaps)) == []


def test_no_canary_in_the_alert_pcaps_from_standard_input(tmp_path: Path) -> None:
    # Standard input is read once: the packets are kept as they pass (as live), redacted at
    # once by the same code; the pcaps must hold no more than the offline ones.
    pcaps = tmp_path / "alert-pcaps"
    run = run_sensor(["-"], tmp_path / "out", stdin=CAPTURE.read_bytes(),
                     extra=["--alert-pcap", str(pcaps)])  # fmt: skip
    assert run.rc == 0, run.stderr
    written = _alert_pcaps(pcaps)
    assert len(written) >= 5
    assert "CANARYSCU" in "".join(written.values())
    assert hits(run, written) == []
