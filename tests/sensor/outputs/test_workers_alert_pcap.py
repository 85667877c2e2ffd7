"""capture --workers --alert-pcap, in one process: workers keep packets, the parent judges.

Two worker pipelines each follow their share of a zones capture's connections (split by
connection, as the fanout hash does) and keep the packets; a parent pipeline judges their
merged policy inputs and its verdicts go back (PcapVerdicts -> LiveAlertPcaps.verdict).
Without tcpreplay the packets keep their times, so the pcaps must be named exactly as
the offline ``read --alert-pcap`` names them, with the same rules. The live version on a
veth is tests/sensor/commands/test_live_alert_pcap.py.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest

from dissectors.registry import load_dissectors
from sensor.capture.bpf import all_tcp_filter
from sensor.capture.decode import Segment
from sensor.capture.offline import OfflineCapture, ReadResult
from sensor.cli import main
from sensor.outputs.alertpcap import AlertPcapLimits, Bound
from sensor.outputs.livepcap import LiveAlertPcaps, key4
from sensor.pipeline import PcapVerdicts, Pipeline, PolicyInbox, PolicyOutbox, apply_verdicts
from sensor.policy.config import load_config

ROOT = Path(__file__).resolve().parents[3]
ZONES = ROOT / "pcaps" / "zones"
CASES = ["perimeter", "credentials-move-query", "brute-force"]


class Split:
    """Two workers and their parent, fed one capture."""

    def __init__(self, case: str, out: Path, limits: AlertPcapLimits | None = None) -> None:
        self.config = load_config(ZONES / case / "config.yaml")
        capture = OfflineCapture(str(ZONES / case / "capture.pcap"))
        self.decode = capture.decoder()
        self.packets = list(capture.packets(all_tcp_filter(capture.linktype), ReadResult()))
        self.index: list[dict[str, Any]] = []
        self.workers: list[tuple[Pipeline, PolicyOutbox, LiveAlertPcaps]] = []
        for _ in range(2):
            pipeline = Pipeline(load_dissectors(), policy_config=self.config)
            outbox = PolicyOutbox()
            pipeline.remote_policy(outbox)
            pipeline.follow_all()
            live = pipeline.keep_alert_packets(str(out), limits)
            live.linktype = capture.linktype
            live.judged = float("-inf")
            live.order = lambda box=outbox: box.clock  # type: ignore[misc]
            live.index_sink = self.index.extend
            self.workers.append((pipeline, outbox, live))
        self.judge = Pipeline(load_dissectors(), policy_config=self.config)
        self.verdicts = PcapVerdicts(2)
        self.judge.verdicts = self.verdicts
        self.inbox = PolicyInbox(self.judge, 2)

    def feed(self) -> None:
        """Every packet to the worker of its connection; then end of input."""
        spread = [0, 0]
        for ts, data, wire in self.packets:
            seg = self.decode(ts, data)
            w = zlib.crc32(repr(key4(seg)).encode()) % 2 if isinstance(seg, Segment) else 0
            spread[w] += 1
            self.workers[w][0].feed([(ts, data, wire)], self.decode)
        assert all(spread), spread  # both workers follow connections
        for pipeline, _, _ in self.workers:
            pipeline.finish(live_pcaps=False)

    def judge_all(self) -> None:
        """The parent judges every worker's inputs and makes its last decisions."""
        for i, (_, outbox, _) in enumerate(self.workers):
            _, inputs = outbox.take(outbox.clock)
            self.inbox.receive(i, float("inf"), inputs)
        self.judge.finish()
        # The parent's judged time: live, idle workers' watermarks follow the clock.
        self.judged = max(pipeline.last_ts for pipeline, _, _ in self.workers)

    def send_back(self) -> None:
        """Each worker takes its verdicts, then the judged time, and finishes its pcaps."""
        for i, (_, _, live) in enumerate(self.workers):
            apply_verdicts(live, self.verdicts.take(i))
            live.judged_to(self.judged)
            assert live.held_bytes >= 0
            live.finish()


def _offline(case: str, tmp_path: Path) -> dict[str, list[str]]:
    out = tmp_path / "offline"
    capture, config = ZONES / case / "capture.pcap", ZONES / case / "config.yaml"
    assert main(["read", str(capture), "-c", str(config), "--alert-pcap", str(out), "-q"]) == 0
    return {e["file"]: e["rules"] for e in map(json.loads, (out / "index.jsonl").open())}


@pytest.mark.parametrize("case", CASES)
def test_verdicts_from_the_parent_write_what_read_writes(case: str, tmp_path: Path) -> None:
    expected = _offline(case, tmp_path)
    assert expected
    out = tmp_path / "live"
    split = Split(case, out)
    split.feed()
    split.judge_all()
    split.send_back()
    assert {e["file"]: e["rules"] for e in split.index} == expected
    assert sorted(p.name for p in out.glob("*.pcap")) == sorted(expected)
    assert not (out / "index.jsonl").exists()  # the workers' parent writes the index
    assert sum(live.stats.files for _, _, live in split.workers) == len(expected)
    for _, _, live in split.workers:
        assert live.held_bytes == 0


def test_judged_time_releases_ended_associations(tmp_path: Path) -> None:
    # brute-force: every association has ended when the input does; once the parent says
    # it has judged past their ends, their buffers go (a verdict after that finds nothing).
    split = Split("brute-force", tmp_path / "live")
    split.feed()
    held = sum(live.held_bytes for _, _, live in split.workers)
    assert held > 0  # ended associations wait for the parent's verdict
    split.judge_all()
    for i, (_, _, live) in enumerate(split.workers):
        live.judged_to(split.judged)
        assert live.held_bytes == 0
        apply_verdicts(live, split.verdicts.take(i))
        live.finish()
    assert split.index == []
    assert not list((tmp_path / "live").glob("*.pcap"))


def test_associations_waiting_for_a_verdict_are_bounded(tmp_path: Path) -> None:
    split = Split("brute-force", tmp_path / "live", AlertPcapLimits(max_held=2))
    split.feed()
    limited = sum(live.stats.limited[Bound.HELD] for _, _, live in split.workers)
    ended = sum(p.sessions_closed for p, _, _ in split.workers)
    assert limited == ended - 4  # two held per worker, the oldest dropped first
    split.judge_all()
    split.send_back()
    # The newest associations kept their packets and became pcaps.
    assert 0 < len(split.index) <= 4
