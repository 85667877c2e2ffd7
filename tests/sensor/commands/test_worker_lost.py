"""capture --workers: a worker that dies is counted, with what it took with it.

Real traffic (the heads of four pcaps/zones captures, cut so that associations are still
open) is replayed onto a veth where `capture --workers 2 --alert-pcap` listens; one worker
is killed with SIGKILL, then the parent is stopped with SIGTERM. The parent must log
worker.lost, exit with status 3 without a traceback, and count the associations the dead
worker was following: with the ones the surviving worker closes at the stop
(capture-ended), they are every association open at the cuts, as `read` finds them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dissectors.registry import load_dissectors
from sensor.capture.offline import OfflineCapture
from sensor.pipeline import Pipeline
from sensor.policy.config import load_config

ROOT = Path(__file__).resolve().parents[3]
ZONES = ROOT / "pcaps" / "zones"
# capture: packets kept from its start (each leaves 1 or 2 associations open)
CONFIG = ZONES / "perimeter" / "config.yaml"  # the same in every scenario folder
CUTS = {"normal-workflow": 120, "sweep": 40, "perimeter": 40, "brute-force": 40}


def cut(scenario: str, packets: int, out: Path) -> Path:
    subprocess.run(
        ["tcpdump", "-r", str(ZONES / scenario / "capture.pcap"), "-c", str(packets),
         "-w", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


def open_at_the_end(capture: Path) -> int:
    """Associations `read` closes as capture-ended: still open where the capture stops."""
    pipeline = Pipeline(load_dissectors(), policy_config=load_config(str(CONFIG)))
    pipeline.read(OfflineCapture(str(capture)))
    pipeline.finish()
    return sum(
        n for (_, end, _, _), n in pipeline.counters.associations.items() if end == "capture-ended"
    )


def lines(path: Path, event: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if f'"{event}"' in x]


def wait_for(path: Path, event: str, n: int, seconds: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = lines(path, event)
        if len(found) >= n:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {n} {event} within {seconds}s:\n{path.read_text()[-2000:]}")


def test_a_killed_worker_is_counted_with_its_open_associations(
    veth: tuple[str, str], tmp_path: Path
) -> None:
    captures = [cut(s, n, tmp_path / f"{s}.pcap") for s, n in CUTS.items()]
    expected_open = sum(open_at_the_end(c) for c in captures)
    assert expected_open >= 4
    records, metrics, log = tmp_path / "a.jsonl", tmp_path / "m.prom", tmp_path / "stderr"
    with log.open("w") as err:
        sensor = subprocess.Popen(
            [sys.executable, "-m", "sensor.cli", "capture", "-i", veth[0], "--workers", "2",
             "-c", str(CONFIG), "--associations", str(records),
             "--metrics", str(metrics), "--alert-pcap", str(tmp_path / "pcaps")],
            cwd=ROOT, stderr=err,
        )  # fmt: skip
    try:
        started = wait_for(log, "worker.started", 2, 20)
        subprocess.run(
            ["tcpreplay", "-q", f"--intf1={veth[1]}", "--pps=1000", *map(str, captures)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        time.sleep(1.5)  # every worker has sent a snapshot since
        victim = next(s for s in started if s["worker"] == 0)
        os.kill(victim["pid"], signal.SIGKILL)
        [lost] = wait_for(log, "worker.lost", 1, 10)
    finally:
        sensor.send_signal(signal.SIGTERM)
        sensor.wait(timeout=60)
    stderr = log.read_text()
    assert sensor.returncode == 3, stderr[-2000:]
    assert "Traceback" not in stderr
    assert lost["worker"] == 0 and lost["exitcode"] == -signal.SIGKILL and lost["level"] == "error"
    [stopped] = lines(log, "capture.stopped")
    assert stopped["workers_lost"] == 1 and stopped["lost_workers"] == [0], stopped
    taken = stopped["lost_with_workers"]
    assert taken["associations"] == lost["associations"]
    assert taken["alert-verdicts"] == lost["alert_verdicts"] >= 0
    ended = [json.loads(x) for x in records.read_text().splitlines()]
    closed_at_stop = sum(1 for r in ended if r["dicom"]["association"]["end"] == "capture-ended")
    assert closed_at_stop + taken["associations"] == expected_open, (closed_at_stop, taken)
    text = metrics.read_text()
    assert "dicom_sensor_workers_lost_total 1.0" in text
    assert (
        f'dicom_sensor_lost_with_workers_total{{what="associations"}} {taken["associations"]}.0'
        in text
    )
