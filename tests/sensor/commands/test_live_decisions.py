"""capture on a veth: a C-MOVE still undecided at SIGTERM is decided, never lost.

The real credentials-move-query capture with the PACS's final C-MOVE-RSP status rewritten
in place from 0xA801 to pending (same length): its C-MOVE association is released with the
move undecided, and the sensor is stopped 2 s later, well inside ``decide_within`` (30 s).
One process, and two workers (each worker flushes its own decisions at SIGTERM).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.sensor.liveplay import replay

ROOT = Path(__file__).resolve().parents[3]
SCENARIO = ROOT / "pcaps/zones/credentials-move-query"
A801 = b"\x00\x00\x00\x09\x02\x00\x00\x00\x01\xa8"  # (0000,0900) = 0xA801
PENDING = b"\x00\x00\x00\x09\x02\x00\x00\x00\x00\xff"  # (0000,0900) = 0xFF00


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one-process", "two-workers"])
def test_sigterm_decides_a_pending_move(
    veth: tuple[str, str], tmp_path: Path, workers: list[str]
) -> None:
    data = (SCENARIO / "capture.pcap").read_bytes()
    assert data.count(A801) == 1
    capture = tmp_path / "pending.pcap"
    capture.write_bytes(data.replace(A801, PENDING))
    events = tmp_path / "e.jsonl"
    args = ["--events", str(events), "--config", str(SCENARIO / "config.yaml"), *workers]
    run = replay(veth, [capture], 1000, tmp_path / "a.jsonl", *args)
    moves = [r for r in run.records if r["dicom"].get("move_destinations") == ["EXFIL"]]
    assert [r["dicom"]["association"]["end"] for r in moves] == ["released"]
    alerts = [json.loads(line) for line in events.read_text().splitlines()]
    (alert,) = [a for a in alerts if a.get("rule", {}).get("id") == "move-unknown-destination"]
    assert alert["dicom"]["move"]["reason"] == "capture-ended"
    assert alert["dicom"]["move"]["destination"] == "EXFIL"
    assert alert["dicom"]["move"]["requested"] < alert["@timestamp"]
