"""Heads cut into 1-7 byte TCP segments are found offline as the originals are (file and stdin)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pcapy
import pytest

from .tiny import recut

ROOT = Path(__file__).resolve().parents[3]
PCAPS = ROOT / "pcaps"


def _ethernet_cases() -> list[Path]:
    out = []
    for capture in sorted(PCAPS.glob("*/capture.pcap")):
        if pcapy.open_offline(str(capture)).datalink() == 1:
            out.append(capture)
    return out


CASES = _ethernet_cases()


def _key(record: dict[str, Any]) -> str:
    d = record["dicom"]
    return json.dumps(
        [
            record["source"]["ip"],
            record["source"]["port"],
            record["destination"]["ip"],
            record["destination"]["port"],
            d.get("calling_ae_title"),
            d.get("called_ae_title"),
            d["association"],
            d.get("dimse", {}),
        ],
        sort_keys=True,
    )


def _records(*args: str, stdin: Path | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "sensor.cli", "read", *args, "--associations", "-", "-q"]
    proc = subprocess.run(
        [*cmd, "--no-progress"],
        cwd=ROOT,
        input=stdin.read_bytes() if stdin is not None else None,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]
    return sorted(_key(r) for r in lines if "dicom" in r)


@pytest.mark.parametrize("capture", CASES, ids=[c.parent.name for c in CASES])
def test_tiny_segments_give_the_same_associations(capture: Path, tmp_path: Path) -> None:
    cut = tmp_path / "tiny.pcap"
    written = recut(capture, cut)
    original = _records(str(capture))
    assert written > 0
    assert _records(str(cut)) == original
    assert _records("-", stdin=cut) == original


def test_the_recut_really_is_tiny(tmp_path: Path) -> None:
    """The variant carries no TCP payload over 7 bytes, so a head never sits in one segment."""
    from sensor.capture.decode import Segment, decoder_for

    cut = tmp_path / "tiny.pcap"
    recut(PCAPS / "dcmtk-echo-104" / "capture.pcap", cut)
    reader = pcapy.open_offline(str(cut))
    decode = decoder_for(reader.datalink())
    sizes = []
    while True:
        header, data = reader.next()
        if header is None:
            break
        seg = decode(0.0, data)
        if isinstance(seg, Segment) and seg.payload:
            sizes.append(len(seg.payload))
    assert sizes and max(sizes) <= 7
