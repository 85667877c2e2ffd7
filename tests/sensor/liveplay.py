"""Run `dicom-sensor capture` on one end of a veth while tcpreplay sends captures into the other."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LiveRun:
    """What the sensor wrote and logged."""

    records: list[dict[str, Any]]
    stderr: str
    stopped: dict[str, Any]


def replay(veth: tuple[str, str], captures: list[Path], pps: int, out: Path, *args: str) -> LiveRun:
    """Capture on veth[0] with records to ``out``, replay at ``pps`` onto veth[1], SIGTERM."""
    return replay_to_each(veth, captures, pps, [(out, list(args))])[0]


def replay_to_each(
    veth: tuple[str, str], captures: list[Path], pps: int, sensors: list[tuple[Path, list[str]]]
) -> list[LiveRun]:
    """Like :func:`replay`, with several sensors on veth[0] at once, each seeing every packet.

    ``sensors``: (records file, further arguments) of each; one replay serves them all.
    """
    cmd = [sys.executable, "-m", "sensor.cli", "capture", "-i", veth[0], "--associations"]
    procs = [
        subprocess.Popen([*cmd, str(out), *args], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        for out, args in sensors
    ]
    stderrs: list[str] = []
    try:
        time.sleep(2.0)
        subprocess.run(
            ["tcpreplay", "-q", f"--intf1={veth[1]}", f"--pps={pps}", *map(str, captures)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        time.sleep(2.0)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            stderrs.append(proc.communicate(timeout=60)[1])
    runs = []
    for proc, stderr, (out, _) in zip(procs, stderrs, sensors, strict=True):
        assert proc.returncode == 0, stderr[-2000:]
        [stopped] = [json.loads(x) for x in stderr.splitlines() if '"capture.stopped"' in x]
        records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        runs.append(LiveRun(records, stderr, stopped))
    return runs
