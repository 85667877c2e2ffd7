"""Live ``capture --alert-pcap``: the same associations as ``read --alert-pcap``, no PHI.

A zones capture (real DCMTK and pynetdicom peers, see pcaps/zones/README.md) is replayed by
tcpreplay onto a veth pair of our own while ``capture -i`` runs on the other end. Each live
alert pcap is read back through ``dicom-sensor read`` and must give the association the
offline ``read --alert-pcap`` of the same capture gives (tcpreplay stamps new times, so the
files are compared by what they decode to, not by name). The PHI canary captures are
replayed the same way and every live alert pcap is searched for every canary.

``capture --workers 2`` gives the same pcaps: the workers keep the packets, the parent
judges and sends its verdicts back, and alone writes ``index.jsonl``. brute-force's
``ae-brute-force`` is decided across connections (on different workers), so only in the
parent. About 40 s in all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from sensor.cli import main
from tests.hostile.test_phi_canary import CANARIES, CAPTURE, OTHER_CANARY_CAPTURES, forms
from tests.sensor.liveplay import replay

ROOT = Path(__file__).resolve().parents[3]
ZONES = ROOT / "pcaps" / "zones"

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root: veth and raw capture"
)


def _identity(record: dict[str, Any]) -> tuple[Any, ...]:
    dicom = record["dicom"]
    return (
        record["source"]["ip"],
        record["source"]["port"],
        record["destination"]["ip"],
        record["destination"]["port"],
        record["network"]["community_id"],
        dicom["calling_ae_title"],
        dicom["called_ae_title"],
        dicom["association"]["result"],
        json.dumps(dicom["dimse"], sort_keys=True),
        json.dumps(dicom.get("presentation_contexts"), sort_keys=True),
    )


def _read_back(directory: Path, tmp_path: Path) -> list[tuple[Any, ...]]:
    """Each alert pcap of ``directory`` read through the sensor: its association(s)."""
    out: list[tuple[Any, ...]] = []
    pcaps = sorted(directory.glob("*.pcap"))
    assert pcaps, f"no alert pcap in {directory}"
    for i, pcap in enumerate(pcaps):
        records = tmp_path / f"{directory.name}-{i}.jsonl"
        assert main(["read", str(pcap), "--associations", str(records), "-q"]) == 0
        lines = records.read_text().splitlines()
        assert len(lines) == 1, f"{pcap.name}: {len(lines)} associations"
        out.append(_identity(json.loads(lines[0])))
    return sorted(out)


def _compare_with_offline(
    veth: tuple[str, str], tmp_path: Path, case: str, *more: str
) -> dict[str, Any]:
    """Replay ``case`` to ``capture --alert-pcap`` (with ``more``) and compare the pcaps and
    the index with the offline ``read --alert-pcap``; returns capture.stopped."""
    capture, config = ZONES / case / "capture.pcap", ZONES / case / "config.yaml"
    offline = tmp_path / "offline"
    rc = main(["read", str(capture), "-c", str(config), "--alert-pcap", str(offline), "-q"])
    assert rc == 0
    live = tmp_path / "live"
    run = replay(veth, [capture], 400, tmp_path / "assoc.jsonl",
                 "-c", str(config), "--alert-pcap", str(live), *more)  # fmt: skip
    assert run.stopped["dropped_kernel"] == 0
    assert _read_back(live, tmp_path) == _read_back(offline, tmp_path)
    assert run.stopped["alert_pcap_files"] == len(list(offline.glob("*.pcap")))
    lines = (live / "index.jsonl").read_text().splitlines()
    index = [json.loads(line) for line in lines]  # each line whole: one writer
    assert sorted(e["file"] for e in index) == sorted(p.name for p in live.glob("*.pcap"))
    assert len({e["file"] for e in index}) == len(index)
    offline_rules = sorted(
        json.dumps(e["rules"]) for e in map(json.loads, (offline / "index.jsonl").open())
    )
    assert sorted(json.dumps(e["rules"]) for e in index) == offline_rules
    return run.stopped


@pytest.mark.parametrize("case", ["perimeter", "credentials-move-query"])
def test_live_alert_pcaps_read_back_as_offline(
    veth: tuple[str, str], tmp_path: Path, case: str
) -> None:
    _compare_with_offline(veth, tmp_path, case)


@pytest.mark.parametrize("case", ["perimeter", "credentials-move-query", "brute-force"])
def test_workers_alert_pcaps_read_back_as_offline(
    veth: tuple[str, str], tmp_path: Path, case: str
) -> None:
    metrics = tmp_path / "metrics.prom"
    stopped = _compare_with_offline(
        veth, tmp_path, case, "--workers", "2", "--metrics", str(metrics)
    )
    assert stopped["workers"] == 2
    assert all(n > 0 for n in stopped["inspected_per_worker"]), stopped
    # The workers' alert pcap counters are summed into the parent's metrics.
    files = len(list((tmp_path / "live").glob("*.pcap")))
    text = metrics.read_text()
    assert f"dicom_sensor_alert_pcap_files_total {files}.0" in text
    assert "dicom_sensor_alert_pcap_bytes_total 0.0" not in text
    assert "dicom_sensor_alert_pcap_buffer_bytes 0.0" in text  # all released at the end


def test_no_canary_in_live_alert_pcaps(veth: tuple[str, str], tmp_path: Path) -> None:
    live = tmp_path / "live"
    captures = [CAPTURE, *OTHER_CANARY_CAPTURES]
    run = replay(veth, captures, 400, tmp_path / "assoc.jsonl", "--alert-pcap", str(live))
    assert run.stopped["dropped_kernel"] == 0
    written = {p.name: p.read_bytes().decode("latin-1") for p in sorted(live.glob("*.pcap"))}
    # Every association of the canary capture alerts (credentials in clear), and so on.
    assert len(written) >= 7
    assert "CANARYSCU" in "".join(written.values())  # A-ASSOCIATE-RQs are kept
    found = []
    for where, text in written.items():
        for name, value in CANARIES.items():
            for form, needle in forms(value):
                haystack = text.lower() if form == "text" else text
                if needle and needle in haystack:
                    found.append(f"{name} ({form}) in {where}")
    assert found == []
