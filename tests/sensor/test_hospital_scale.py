"""`dicom-sensor read` at hospital scale: over 1,000 DICOM services, over 1,500 associations.

The capture is made at test time by ``bench/generate.py --imaging`` (never committed): copies
of the real-peer sessions of ``pcaps/`` at new addresses and ports, every copy's acceptor a
service of its own, mostly short associations (echo, query/retrieve, rejects, aborts) and a few
C-STORE associations, with some background traffic. Its truth file lists every association;
the sensor must report exactly those, reading the file (two passes) and reading standard input
(one pass).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .liveplay import replay

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))
generate = importlib.import_module("generate")  # bench/generate.py, the benchmark's generator

SERVICES = 1000
ASSOCIATIONS = 1500

# requestor ip, port, acceptor ip, port, calling AE, called AE, result, end
Row = tuple[str, int, str, int, str | None, str | None, str | None, str | None]


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The generated capture and its truth."""
    path = tmp_path_factory.mktemp("hospital") / "imaging.pcap"
    rc = generate.main(
        ["--imaging", "--seed", "11", "--packets", "80000", "--dicom-fraction", "0.8",
         "--services", str(SERVICES), "--associations", str(ASSOCIATIONS), "--out", str(path)]
    )  # fmt: skip
    assert rc == 0
    truth: dict[str, Any] = json.loads(Path(f"{path}.truth.json").read_text())
    assert truth["services"] >= SERVICES
    assert truth["association_count"] >= ASSOCIATIONS
    services = {(a["acceptor_ip"], a["acceptor_port"]) for a in truth["associations"]}
    assert len(services) == truth["services"]
    return path, truth


def truth_rows(truth: dict[str, Any]) -> set[Row]:
    return {
        (a["requestor_ip"], a["requestor_port"], a["acceptor_ip"], a["acceptor_port"],
         a["calling_ae_title"], a["called_ae_title"], a["result"], a["end"])
        for a in truth["associations"]
    }  # fmt: skip


def record_rows(records: list[dict[str, Any]]) -> set[Row]:
    rows: set[Row] = set()
    for r in records:
        d = r["dicom"]
        rows.add(
            (r["source"]["ip"], r["source"]["port"], r["destination"]["ip"],
             r["destination"]["port"], d.get("calling_ae_title"), d.get("called_ae_title"),
             d["association"].get("result"), d["association"].get("end"))
        )  # fmt: skip
    return rows


def read(source: Path, tmp_path: Path, stdin: bool) -> list[dict[str, Any]]:
    """Run ``python -m sensor.cli read`` on the capture (or on standard input)."""
    out = tmp_path / "assoc.jsonl"
    cmd = [sys.executable, "-m", "sensor.cli", "read", "-" if stdin else str(source),
           "--associations", str(out), "-q", "--no-progress"]  # fmt: skip
    with source.open("rb") as fh:
        proc = subprocess.run(
            cmd, cwd=ROOT, stdin=fh if stdin else subprocess.DEVNULL, capture_output=True
        )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def check(records: list[dict[str, Any]], truth: dict[str, Any]) -> None:
    want, got = truth_rows(truth), record_rows(records)
    missing, extra = sorted(want - got), sorted(got - want)
    assert not missing and not extra, (
        f"{len(want & got)} of {len(want)} associations of {truth['services']} services "
        f"reported exactly ({len(records)} records); {len(missing)} missing or different, "
        f"e.g. {missing[:3]}; {len(extra)} not in the truth, e.g. {extra[:3]}"
    )
    assert len(records) == len(want)


def test_file_read_reports_every_association(
    capture: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    path, truth = capture
    check(read(path, tmp_path, stdin=False), truth)


def test_stdin_read_reports_every_association(
    capture: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    path, truth = capture
    check(read(path, tmp_path, stdin=True), truth)


def test_live_capture_reports_every_association(
    capture: tuple[Path, dict[str, Any]], tmp_path: Path, veth: tuple[str, str]
) -> None:
    """The same capture replayed onto a veth of our own at a fixed modest rate."""
    path, truth = capture
    run = replay(veth, [path], 8000, tmp_path / "live.jsonl")
    assert run.stopped["dropped_kernel"] == 0, run.stopped
    check(run.records, truth)
