"""capture --workers 2: a PACKET_FANOUT group on a veth, records and metrics merged."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CASES = ["dcmtk-find-move-get", "dcmtk-store-11112", "abort-by-acceptor", "derived-parallel"]
CAPTURES = [ROOT / "pcaps" / case / "capture.pcap" for case in CASES]
# Enough connections that the kernel's flow hash cannot put them all on one worker
# except by a vanishing chance (2 ** -16).
EXPECTED = [
    e for case in CASES for e in json.loads((ROOT / "pcaps" / case / "expected.json").read_text())
]
ABORTED = sum(1 for e in EXPECTED if e["end"] == "aborted")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_workers_share_the_traffic_and_merge(veth: tuple[str, str], tmp_path: Path) -> None:
    listen = f"127.0.0.1:{_free_port()}"
    out = {name: tmp_path / name for name in ("a.jsonl", "e.jsonl", "m.prom", "inv.json")}
    sensor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sensor.cli",
            "capture",
            "-i",
            veth[0],
            "--workers",
            "2",
            "--associations",
            str(out["a.jsonl"]),
            "--events",
            str(out["e.jsonl"]),
            "--metrics",
            str(out["m.prom"]),
            "--inventory",
            str(out["inv.json"]),
            "--metrics-listen",
            listen,
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2.0)
        subprocess.run(
            ["tcpreplay", "-q", f"--intf1={veth[1]}", "--pps=2000", *map(str, CAPTURES)],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline:
            time.sleep(1.0)
            with urllib.request.urlopen(f"http://{listen}/metrics", timeout=2) as resp:
                text = resp.read().decode()
            total = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("dicom_associations_total{")
            )
            if total >= len(EXPECTED):
                break
        assert 'end="aborted"' in text and total == len(EXPECTED), (total, text[-2000:])
    finally:
        sensor.send_signal(signal.SIGTERM)
        _, stderr = sensor.communicate(timeout=30)
    assert sensor.returncode == 0, stderr
    records = [json.loads(line) for line in out["a.jsonl"].read_text().splitlines()]
    assert len(records) == len(EXPECTED)
    assert [r["dicom"]["association"]["end"] for r in records].count("aborted") == ABORTED
    [stopped] = [json.loads(line) for line in stderr.splitlines() if '"capture.stopped"' in line]
    assert stopped["associations"] == len(EXPECTED)
    shares = stopped["inspected_per_worker"]
    assert len(shares) == 2 and all(n > 0 for n in shares), shares  # the kernel split the flows
    # The inventory merges the workers' nodes: every requestor and acceptor address.
    nodes = {n["ip"] for n in json.loads(out["inv.json"].read_text())}
    assert nodes == {r["source"]["ip"] for r in records} | {r["destination"]["ip"] for r in records}
    assert f"dicom_nodes {float(len(nodes))}" in out["m.prom"].read_text()


def test_workers_report_a_missing_interface_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sensor.cli", "capture", "-i", "nosuchif9", "--workers", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["dicom-sensor: interface nosuchif9: no such device"]
