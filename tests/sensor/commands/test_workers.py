"""capture --workers 2: a PACKET_FANOUT group on a veth, records and metrics merged."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

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


def _wait_for(check: Any, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def found(events: list[dict[str, Any]]) -> dict[str, int]:
    """Findings by rule in EVE alerts (a folded alert's count is its repeats)."""
    counts: dict[str, int] = {}
    for e in events:
        if e["event_type"] == "alert":
            rule = e["dicom"]["rule_id"]
            counts[rule] = counts.get(rule, 0) + e["dicom"]["count"]
    return counts


def test_workers_keep_one_baseline_and_write_every_output_reopened_on_sighup(
    veth: tuple[str, str], tmp_path: Path
) -> None:
    """Zeek's dicom.log and EVE events from capture --workers 2, moved away and reopened on
    SIGHUP (logrotate); the parent keeps the one baseline, learned from both workers."""
    zones = ROOT / "pcaps" / "zones"
    state = tmp_path / "baseline.json"
    config = tmp_path / "config.yaml"
    config.write_text(
        (zones / "sweep" / "config.yaml").read_text() + f"baseline:\n  state_file: {state}\n"
    )
    out = {n: tmp_path / n for n in ("a.jsonl", "eve.json", "dicom.log", "log")}
    cmd = [sys.executable, "-m", "sensor.cli", "capture", "-i", veth[0], "--workers", "2",
           "-c", str(config), "--associations", str(out["a.jsonl"]),
           "--events", str(out["eve.json"]), "--events-format", "eve",
           "--zeek-log", str(out["dicom.log"])]  # fmt: skip
    with out["log"].open("w") as log:
        sensor = subprocess.Popen(cmd, cwd=ROOT, stderr=log, text=True)
    try:
        time.sleep(2.0)

        def play(scenario: str, records: int) -> None:
            capture = zones / scenario / "capture.pcap"
            subprocess.run(["tcpreplay", "-q", f"--intf1={veth[1]}", "--pps=1000", str(capture)],
                           check=True, capture_output=True)  # fmt: skip
            _wait_for(lambda: len(_lines(out["a.jsonl"])) >= records, f"{records} records")

        play("sweep", 12)
        # Alerts follow the records by up to a watermark's time: the parent judges an input
        # once both workers have passed it.
        _wait_for(lambda: "association-sweep" in out["eve.json"].read_text(), "the sweep alert")
        for name in ("eve.json", "dicom.log"):
            out[name].rename(f"{out[name]}.1")
        sensor.send_signal(signal.SIGHUP)
        reloaded = lambda: [  # noqa: E731
            json.loads(x) for x in _lines(out["log"]) if '"config.reloaded"' in x
        ]
        _wait_for(lambda: len(reloaded()) == 3, "the parent and both workers to reload")
        play("perimeter", 16)
        time.sleep(1.0)  # the parent judges what the workers' watermarks let through
    finally:
        sensor.send_signal(signal.SIGTERM)
        sensor.wait(timeout=30)
    assert sensor.returncode == 0, out["log"].read_text()[-2000:]
    # config.reloaded: once by the parent (no worker field), once by each worker, numbered.
    assert sorted(str(r.get("worker")) for r in reloaded()) == ["0", "1", "None"]
    # Zeek: each file is a whole Zeek log, header to footer; 12 sweep rows, then 4 perimeter.
    old, new = _lines(Path(f"{out['dicom.log']}.1")), _lines(out["dicom.log"])
    for lines, rows in ((old, 12), (new, 4)):
        assert lines[0].startswith("#separator") and lines[-1].startswith("#close"), lines
        assert len([x for x in lines if not x.startswith("#")]) == rows
    # EVE: the sweep's first alert before the reopen, the perimeter's after.
    before = [json.loads(x) for x in _lines(Path(f"{out['eve.json']}.1"))]
    after = [json.loads(x) for x in _lines(out["eve.json"])]
    # (The sweep's 2 later findings fold into one event written when the capture stops.)
    assert found(before) == {"association-sweep": 1}
    assert found(after) == {"association-sweep": 2, "perimeter-inbound": 2,
                            "perimeter-inbound-probe": 1, "perimeter-outbound": 1}  # fmt: skip
    # One baseline, kept by the parent: the PACS's six ports, learned from both workers.
    [stopped] = [json.loads(x) for x in _lines(out["log"]) if '"capture.stopped"' in x]
    assert all(n > 0 for n in stopped["inspected_per_worker"]), stopped
    nodes = json.loads(state.read_text())["nodes"]
    assert sorted(nodes["10.30.0.5"]["ports"]) == [104, 1104, 4242, 5104, 8104, 11112]
    assert sorted(nodes["10.20.0.11"]["ports"]) == [104, 1104, 4242, 5104, 8104, 11112]
    assert "198.51.100.10" in nodes and "10.20.0.12" in nodes
