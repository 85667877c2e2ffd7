"""capture --workers N behaves as one sensor: the same alerts as `read`, whatever N.

Every capture under pcaps/zones (real peers in network namespaces; sweep and
bulk-outbound were made for this test) is replayed with tcpreplay onto a veth pair, where
`capture --workers 1` and `capture --workers 2` listen at once. Each must raise the alerts
`read` raises on the same file: the same rule ids and the same number of findings (the
counts of a rule's events summed: a folded event counts the repeats since its detected
one). The fanout hash spreads a sweep's, a brute force's and a bulk transfer's connections
over the workers; only a policy run once, on every worker's inputs in time order, counts
them whole.

Timing: tcpreplay sends at a fixed 1000 packets/s, so it rewrites every gap between
packets. The largest capture (bulk-outbound, ~2,600 packets) then lasts under 3 s, the
originals at most 7 s; every detector window of these configs is 60 s or more (brute
force 60 s, sweep 300 s, bulk 3600 s, folding 300 s) and the default learning period is
a day, so a window holds the same findings at either timing. Replaying with the original
timing (--multiplier 1) would work as well and take longer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from .liveplay import ROOT, LiveRun, replay_to_each

ZONES = ROOT / "pcaps" / "zones"
SCENARIOS = sorted(p.parent.name for p in ZONES.glob("*/capture.pcap"))
PPS = 1000
# Captures of many connections (12 and 22): the fanout hash cannot put them all on one worker
# but with odds of 1 in 2^11 and 2^21.
SPREAD = {"sweep", "brute-force"}


def findings(events: list[dict[str, Any]]) -> Counter[str]:
    """Findings by rule id: alert events' counts summed."""
    out: Counter[str] = Counter()
    for event in events:
        if event["event"]["kind"] == "alert":
            out[event["rule"]["id"]] += event["dicom"]["alert"]["count"]
    return out


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_new_scenarios_are_here() -> None:
    assert {"sweep", "bulk-outbound"} <= set(SCENARIOS), SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_workers_raise_what_read_raises(
    scenario: str, veth: tuple[str, str], tmp_path: Path
) -> None:
    folder = ZONES / scenario
    config = str(folder / "config.yaml")
    offline = tmp_path / "read.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "sensor.cli", "read", str(folder / "capture.pcap"), "-c", config,
         "--events", str(offline)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    expected = findings(read_events(offline))
    sensors = []
    for n in (1, 2):
        events = tmp_path / f"events-{n}.jsonl"
        args = ["-c", config, "--events", str(events), "--workers", str(n)]
        sensors.append((tmp_path / f"records-{n}.jsonl", args))
    runs: list[LiveRun] = replay_to_each(veth, [folder / "capture.pcap"], PPS, sensors)
    for n, run in zip((1, 2), runs, strict=True):
        assert run.stopped["dropped_kernel"] == 0, run.stopped
        got = findings(read_events(tmp_path / f"events-{n}.jsonl"))
        assert got == expected, f"--workers {n}: {dict(got)} != read's {dict(expected)}"
    two = runs[1]
    if scenario in SPREAD:
        # Both workers had a share (else the test proves nothing about spreading).
        assert all(n > 0 for n in two.stopped["inspected_per_worker"]), two.stopped
    # Lifecycle lines of the workers carry their number.
    started = [json.loads(x) for x in two.stderr.splitlines() if '"worker.started"' in x]
    assert sorted(s["worker"] for s in started) == [0, 1]


def interfaces_of_alerts(path: Path) -> Counter[tuple[str, str | None]]:
    """Findings by (rule id, observer.ingress.interface.name or None)."""
    out: Counter[tuple[str, str | None]] = Counter()
    for event in read_events(path):
        if event["event"]["kind"] == "alert":
            name = event["observer"].get("ingress", {}).get("interface", {}).get("name")
            out[(event["rule"]["id"], name)] += event["dicom"]["alert"]["count"]
    return out


def test_alerts_name_the_interface_their_packets_came_in_on(
    veth: tuple[str, str], other_veth: tuple[str, str], tmp_path: Path
) -> None:
    """On two interfaces, an alert the parent writes names the interface of the packet
    whose input decided it, as one process does (--workers 1, the reference); what timers
    decide (folded repeats flushed at the stop) names none in both. On one interface every
    alert names it."""
    folder = ZONES / "perimeter"
    config = str(folder / "config.yaml")
    # (name, workers, on both interfaces): one process is the reference
    setups = (("one", 1, True), ("two", 2, True), ("alone", 2, False))
    sensors = []
    for name, workers, both in setups:
        args = [
            "-c",
            config,
            "--events",
            str(tmp_path / f"{name}.jsonl"),
            "--workers",
            str(workers),
        ]
        if both:
            args += ["-i", other_veth[0]]
        sensors.append((tmp_path / f"records-{name}.jsonl", args))
    runs = replay_to_each(veth, [folder / "capture.pcap"], PPS, sensors)
    assert all(run.stopped["dropped_kernel"] == 0 for run in runs)
    one, two, alone = (
        interfaces_of_alerts(tmp_path / f"{n}.jsonl") for n in ("one", "two", "alone")
    )
    assert {name for _, name in one} >= {veth[0]}, one
    assert other_veth[0] not in {name for _, name in one}
    assert two == one
    assert {name for _, name in alone} == {veth[0]}, alone
    assert sum(alone.values()) == sum(one.values())
    # Records, which the workers write, name it too.
    assert {r["observer"]["ingress"]["interface"]["name"] for r in runs[1].records} == {veth[0]}
