"""`dicom-sensor read` over every real-peer capture, against the case's expected.json.

expected.json was derived from tshark's decode and the peers' own logs (see pcaps/README.md),
so these tests compare our records with an independent oracle, not with our own output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sensor.cli import main

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted(p.parent for p in ROOT.glob("pcaps/*/capture.pcap"))


def read_records(
    capture: Path, tmp_path: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run the CLI and return (association records, events)."""
    assoc = tmp_path / "assoc.jsonl"
    events = tmp_path / "events.jsonl"
    rc = main(["read", str(capture), "--associations", str(assoc), "--events", str(events), "-q"])
    assert rc == 0
    records = [json.loads(line) for line in assoc.read_text().splitlines()]
    evs = [json.loads(line) for line in events.read_text().splitlines()]
    return records, evs


def _key(rec: dict[str, Any]) -> tuple[str, str, int, str, str]:
    dimse = json.dumps(rec["dimse"], sort_keys=True)
    return (
        rec["calling_ae_title"],
        rec["called_ae_title"],
        rec["acceptor_port"],
        rec["result"],
        dimse,
    )


def _ours(record: dict[str, Any]) -> dict[str, Any]:
    dicom = record["dicom"]
    abort = dicom.get("abort")
    reject = dicom.get("reject")
    identity = dicom.get("user_identity")
    return {
        "calling_ae_title": dicom["calling_ae_title"],
        "called_ae_title": dicom["called_ae_title"],
        "acceptor_port": record["destination"]["port"],
        "requestor_ip": record["source"]["ip"],
        "acceptor_ip": record["destination"]["ip"],
        "result": dicom["association"]["result"],
        "end": dicom["association"]["end"],
        "abort_by": abort["by"] if abort else None,
        "reject": {k: reject[k] for k in ("result", "source", "reason")} if reject else None,
        "dimse": dicom["dimse"],
        "user_identity": (
            {k: identity.get(k) for k in ("type", "username", "passcode_present")}
            if identity
            else None
        ),
    }


def _theirs(exp: dict[str, Any]) -> dict[str, Any]:
    return {
        k: exp.get(k)
        for k in (
            "calling_ae_title", "called_ae_title", "acceptor_port", "requestor_ip", "acceptor_ip",
            "result", "end", "abort_by", "reject", "dimse", "user_identity",
        )
    }  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_records_match_expected(case: Path, tmp_path: Path) -> None:
    records, _ = read_records(case / "capture.pcap", tmp_path)
    expected = json.loads((case / "expected.json").read_text())
    ours = sorted((_ours(r) for r in records), key=_key)
    theirs = sorted((_theirs(e) for e in expected), key=_key)
    assert ours == theirs


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_records_are_complete(case: Path, tmp_path: Path) -> None:
    records, _ = read_records(case / "capture.pcap", tmp_path)
    expected = {(_key(_theirs(e))): e for e in json.loads((case / "expected.json").read_text())}
    for record in records:
        dicom = record["dicom"]
        exp = expected[_key(_ours(record))]
        assert record["event"]["dataset"] == "dicom.association"
        assert record["network"]["transport"] == "tcp"
        assert dicom["detected_by"] == "associate-rq"
        assert record["event"]["start"] <= record["event"]["end"]
        impl = exp.get("implementation") or {}
        for side in ("requestor", "acceptor"):
            if side in impl and dicom["association"]["result"] == "accepted":
                assert dicom["implementation"][side]["class_uid"] == impl[side]["class_uid"]
                assert dicom["implementation"][side]["version_name"] == impl[side]["version"]
        contexts = exp.get("presentation_contexts")
        if contexts:
            assert len(dicom["presentation_contexts"]) == contexts["proposed"]
            accepted = [
                pc for pc in dicom["presentation_contexts"] if pc.get("result") == "acceptance"
            ]
            assert len(accepted) == contexts["accepted"]
        statuses = exp.get("dimse_status") or {}
        for name, by_status in statuses.items():
            assert dicom["dimse"][name] == sum(by_status.values())


def test_killed_transfer_is_flagged_truncated(tmp_path: Path) -> None:
    records, events = read_records(ROOT / "pcaps/killed-mid-transfer/capture.pcap", tmp_path)
    assert all("truncated" in r["dicom"].get("anomalies", []) for r in records)
    assert {e["dicom"]["anomaly"]["reason"] for e in events} == {"truncated"}
    assert all(e["dicom"]["anomaly"]["sent_by"] == "requestor" for e in events)


def test_passcode_never_leaves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = ROOT / "pcaps/pynetdicom-user-identity/capture.pcap"
    assert b"CANARY-PASSCODE-7f3a" in capture.read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    rc = main(["read", str(capture), "--associations", str(out / "a"), "--events", str(out / "e"),
               "--metrics", str(out / "m")])  # fmt: skip
    assert rc == 0
    captured = capsys.readouterr()
    for text in [p.read_text() for p in out.iterdir()] + [captured.out, captured.err]:
        assert "CANARY-PASSCODE" not in text
