"""The workers' parent judges policy inputs in time order across workers (PolicyInbox).

Inputs here are real: PolicyOutbox collects them while a worker-mode Pipeline reads a
pcaps/zones capture; the parent side must find what one Pipeline reading it finds.
"""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import dpkt
import pytest

from dissectors.registry import load_dissectors
from sensor.capture.offline import OfflineCapture
from sensor.pipeline import Pipeline, PolicyInbox, PolicyOutbox
from sensor.policy.config import load_config
from tests.sensor.capture.test_fastpath import imaging_capture

ROOT = Path(__file__).resolve().parents[2]
ZONES = ROOT / "pcaps" / "zones"
SCENARIOS = sorted(p.parent.name for p in ZONES.glob("*/capture.pcap"))
BRUTE = ZONES / "brute-force"
# pcaps/evasion: the differing overlapping copies (stream-evasion) and the C-MOVE they steer
EVASION = sorted(
    f"evasion/{p.parent.name}" for p in (ROOT / "pcaps" / "evasion").glob("*/capture.pcap")
)


class Judged(Pipeline):
    """A judging pipeline that notes the order of what it judged."""

    def __init__(self, config: Any) -> None:
        super().__init__(load_dissectors(), policy_config=config)
        self.seen: list[float] = []

    def judge_event(self, key: int, info: Any, session: Any, event: Any) -> None:
        self.seen.append(event.ts)
        super().judge_event(key, info, session, event)


def outbox_inputs(folder: Path) -> list[tuple[Any, ...]]:
    """The inputs a worker reading the whole capture would send."""
    worker = Pipeline(load_dissectors(), policy_config=load_config(str(folder / "config.yaml")))
    outbox = PolicyOutbox()
    worker.remote_policy(outbox)
    worker.read(OfflineCapture(str(folder / "capture.pcap")))
    worker.finish()
    return outbox.take(outbox.clock)[1]


class Dealer:
    """Deals sessions to several outboxes, as a fanout deals connections to workers."""

    def __init__(self, n: int) -> None:
        self.outboxes = [PolicyOutbox() for _ in range(n)]
        self.seen: dict[int, int] = {}

    @property
    def zones(self) -> Any:
        return self.outboxes[0].zones

    @zones.setter
    def zones(self, zones: Any) -> None:
        for box in self.outboxes:
            box.zones = zones

    def _box(self, key: int) -> PolicyOutbox:
        return self.outboxes[self.seen.setdefault(key, len(self.seen) % len(self.outboxes))]

    def event(self, key: int, *args: Any) -> None:
        self._box(key).event(key, *args)

    def close(self, key: int, *args: Any) -> None:
        self._box(key).close(key, *args)

    def generic(self, key: int, *args: Any) -> None:
        self._box(key).generic(key, *args)

    def tls(self, seg: Any) -> None:
        self.outboxes[0].tls(seg)

    def passed(self, ts: float) -> None:
        for box in self.outboxes:
            box.passed(ts)


def dealt_inputs(folder: Path, n: int) -> list[list[tuple[Any, ...]]]:
    """What n workers would send, each having followed every n-th association."""
    worker = Pipeline(load_dissectors(), policy_config=load_config(str(folder / "config.yaml")))
    dealer = Dealer(n)
    worker.remote_policy(dealer)  # type: ignore[arg-type]
    worker.read(OfflineCapture(str(folder / "capture.pcap")))
    worker.finish()
    return [box.take(box.clock)[1] for box in dealer.outboxes]


def alerts(pipeline: Pipeline) -> Counter[str]:
    return Counter({rule: n for (rule, _), n in pipeline.counters.alerts.items()})


@pytest.mark.parametrize("scenario", SCENARIOS + EVASION)
def test_a_worker_judges_nothing_and_the_parent_finds_what_read_finds(scenario: str) -> None:
    """Sent as a worker sends them (pickled), the inputs give the same findings, inventory
    and baseline as judging in the reading process (C-MOVE destinations and decisions, user
    identities, rejections, byte counts, differing overlaps and all)."""
    folder = ZONES / scenario if scenario in SCENARIOS else ROOT / "pcaps" / scenario
    config = load_config(str(folder / "config.yaml"))
    inputs = pickle.loads(pickle.dumps(outbox_inputs(folder)))
    reference = Pipeline(load_dissectors(), policy_config=config)
    reference.read(OfflineCapture(str(folder / "capture.pcap")))
    reference.finish()
    judge = Judged(config)
    inbox = PolicyInbox(judge, 1)
    inbox.receive(0, float("inf"), inputs)
    judge.finish()
    assert alerts(judge) == alerts(reference)
    assert sum(reference.counters.alerts.values()) or scenario == "normal-workflow"
    assert judge.counters.move_decisions == reference.counters.move_decisions
    assert judge.policy.inventory.nodes == reference.policy.inventory.nodes
    assert not inbox.sessions  # every association's close came, its copy is gone


def test_brute_force_inputs_are_the_capture_s_associations() -> None:
    kinds = Counter(item[1] for item in outbox_inputs(BRUTE))
    assert kinds["close"] == 22 and kinds["associate"] == 22 + 21 + 1, kinds  # RQ each; RJ, AC


def test_inputs_wait_for_every_workers_watermark_and_merge_in_time_order() -> None:
    config = load_config(str(BRUTE / "config.yaml"))
    share = dealt_inputs(BRUTE, 2)
    inputs = [*share[0], *share[1]]
    judge = Judged(config)
    inbox = PolicyInbox(judge, 2)
    # Worker 0 sends everything; worker 1 has said nothing yet: nothing may be judged.
    inbox.receive(0, share[0][-1][0], share[0])
    assert inbox.judged == 0 and inbox.waiting() == len(share[0])
    # Worker 1 passes the middle of the capture: what both have passed is judged, in order.
    middle = share[1][len(share[1]) // 2][0]
    first_half = [i for i in share[1] if i[0] <= middle]
    inbox.receive(1, middle, first_half)
    assert 0 < inbox.judged < len(inputs)
    assert all(o <= middle for o in judge.seen)
    inbox.receive(1, float("inf"), [i for i in share[1] if i[0] > middle])
    # Worker 1 is done; its inputs after worker 0's last watermark wait for worker 0.
    assert all(o <= share[0][-1][0] for o in judge.seen)
    inbox.done(0)
    assert inbox.judged == len(inputs) and inbox.waiting() == 0
    assert judge.seen == sorted(judge.seen)
    judge.finish()
    # The brute force is counted whole although each worker saw about half of it.
    assert alerts(judge)["ae-brute-force"] == 17
    assert judge.counters.policy_inputs_unordered == 0


def test_a_worker_far_behind_does_not_hold_inputs_without_bound() -> None:
    config = load_config(str(BRUTE / "config.yaml"))
    inputs = outbox_inputs(BRUTE)
    judge = Judged(config)
    inbox = PolicyInbox(judge, 2, max_waiting=10)
    inbox.receive(0, inputs[-1][0], inputs)  # worker 1 never speaks
    assert inbox.waiting() == 10
    assert judge.counters.policy_inputs_unordered == len(inputs) - 10
    assert judge.seen == sorted(judge.seen)


def test_context_lists_beyond_the_workers_table_are_sent_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker names at most MAX_CONTEXT_LISTS presentation-context lists; the others go
    whole each time, and the parent rebuilds the same PDUs."""
    import sensor.pipeline

    folder = ZONES / "normal-workflow"
    config = load_config(str(folder / "config.yaml"))
    monkeypatch.setattr(sensor.pipeline, "MAX_CONTEXT_LISTS", 1)
    inputs = pickle.loads(pickle.dumps(outbox_inputs(folder)))
    judge = Judged(config)
    inbox = PolicyInbox(judge, 1)
    inbox.receive(0, float("inf"), inputs)
    judge.finish()
    reference = Pipeline(load_dissectors(), policy_config=config)
    reference.read(OfflineCapture(str(folder / "capture.pcap")))
    reference.finish()
    assert len(inbox.context_lists) == 1
    assert judge.policy.inventory.nodes == reference.policy.inventory.nodes


class OneWorker:
    """A worker reading ``path`` and its parent judging what it sent, beside one process
    (``reference``) reading it alone."""

    def __init__(self, path: Path, config: Any) -> None:
        self.worker = Pipeline(load_dissectors(), policy_config=config)
        self.outbox = PolicyOutbox()
        self.worker.remote_policy(self.outbox)
        self.worker.read(OfflineCapture(str(path)))
        self.worker.finish()
        self.inputs = pickle.loads(pickle.dumps(self.outbox.take(self.outbox.clock)[1]))
        self.reference = Pipeline(load_dissectors(), policy_config=config)
        self.reference.read(OfflineCapture(str(path)))
        self.reference.finish()
        self.judge = Judged(config)
        PolicyInbox(self.judge, 1).receive(0, float("inf"), self.inputs)
        self.judge.finish()


def test_messages_that_change_no_finding_stay_in_the_worker(tmp_path: Path) -> None:
    """An imaging VLAN's C-STOREs between internal hosts: only the first of each direction
    and SOP class of an association is sent; the parent still finds and inventories what
    read does (and every C-STORE of an association to an external zone is sent)."""
    path = imaging_capture(tmp_path, 5, 30000)
    config = load_config(str(ZONES / "bulk-outbound" / "config.yaml"))
    run = OneWorker(path, config)
    worker, outbox, inputs = run.worker, run.outbox, run.inputs
    judge, reference = run.judge, run.reference
    assert alerts(judge) == alerts(reference)
    assert judge.policy.inventory.nodes == reference.policy.inventory.nodes
    stores = sum(n for (name, _), n in worker.counters.dimse.items() if name.startswith("C-STORE"))
    sent = sum(1 for item in inputs if item[1] == "dimse")
    assert stores > 1000 and outbox.coalesced > stores // 2
    assert sent + outbox.coalesced == sum(worker.counters.dimse.values())


@pytest.mark.parametrize("scenario", ["bulk-outbound", "credentials-move-query"])
def test_every_message_of_an_association_with_an_external_end_is_sent(scenario: str) -> None:
    """Bulk windows sum bytes at each message, moves are decided on their responses."""
    folder = ZONES / scenario
    worker = Pipeline(load_dissectors(), policy_config=load_config(str(folder / "config.yaml")))
    outbox = PolicyOutbox()
    worker.remote_policy(outbox)
    worker.read(OfflineCapture(str(folder / "capture.pcap")))
    worker.finish()
    sent = sum(1 for item in outbox.take(outbox.clock)[1] if item[1] == "dimse")
    assert outbox.coalesced == 0 and sent == sum(worker.counters.dimse.values()) > 0


def _alerts_by_interface(folder: Path, inbox_timers: str | None = None) -> Counter[tuple[str, Any]]:
    """Alert events by (rule id, observer.ingress.interface.name), read on "span1": by one
    pipeline, or (``inbox_timers`` given) by a worker's and a parent's."""
    config = load_config(str(folder / "config.yaml"))
    reader = judge = Pipeline(load_dissectors(), policy_config=config)
    reader.pivots.interface = "span1"
    outbox = PolicyOutbox()
    if inbox_timers is not None:
        reader.remote_policy(outbox)
        judge = Pipeline(load_dissectors(), policy_config=config)
    got: list[dict[str, Any]] = []
    judge.alert_sinks.append(got.append)
    reader.read(OfflineCapture(str(folder / "capture.pcap")))
    reader.finish()
    if inbox_timers is not None:
        inputs = pickle.loads(pickle.dumps(outbox.take(outbox.clock)[1]))
        # The interface is said once, ahead of the first input.
        assert [i[3] for i in inputs if i[1] == "interface"] == ["span1"]
        assert inputs[0][1] == "interface"
        judge.pivots.interface = inbox_timers or None
        inbox = PolicyInbox(judge, 2, timers_interface=inbox_timers or None)
        inbox.receive(0, float("inf"), inputs)
        inbox.done(1)
        judge.finish()
    out: Counter[tuple[str, Any]] = Counter()
    for event in got:
        name = event["observer"].get("ingress", {}).get("interface", {}).get("name")
        out[(event["rule"]["id"], name)] += event["dicom"]["alert"]["count"]
    return out


def test_the_parent_s_alerts_name_the_interface_the_worker_said() -> None:
    """What inputs decide names the worker's interface; what timers decide (folded repeats
    flushed at the end) names the only interface, or none with several."""
    folder = ZONES / "perimeter"
    reference = _alerts_by_interface(folder)
    assert {name for _, name in reference} == {"span1"}
    # One interface: the parent names it on every alert, as one process does.
    assert _alerts_by_interface(folder, inbox_timers="span1") == reference
    # Several: the alerts inputs decide name the worker's, the timers' none.
    several = _alerts_by_interface(folder, inbox_timers="")
    assert {name for _, name in several} == {"span1", None}
    merged: Counter[str] = Counter()
    for (rule, _), n in several.items():
        merged[rule] += n
    assert merged == Counter({rule: n for (rule, _), n in reference.items()})


def _records(path: Path) -> list[tuple[float, bytes]]:
    with path.open("rb") as fh:
        pcapng = fh.read(4) == b"\x0a\x0d\x0d\x0a"
        fh.seek(0)
        reader = dpkt.pcapng.Reader(fh) if pcapng else dpkt.pcap.Reader(fh)
        return [(ts, bytes(buf)) for ts, buf in reader]


def test_messages_of_a_side_whose_node_may_come_later_are_sent(tmp_path: Path) -> None:
    """A C-STORE association seen mid-stream (no RQ or AC: neither end is in the inventory
    by it), and halfway through it the same two hosts' C-ECHO association, whose RQ and AC
    put both in the inventory: the C-STOREs' SOP class is the acceptor's from then on, in
    the parent as in one process (the worker sends every message of such a side)."""
    mid = _records(ROOT / "pcaps" / "derived-mid-association" / "capture.pcapng")
    echo = _records(ROOT / "pcaps" / "dcmtk-echo-104" / "capture.pcap")
    halfway = sorted(ts for ts, _ in mid)[len(mid) // 2]
    shift = halfway - echo[0][0] + 1e-6
    merged = sorted(mid + [(ts + shift, buf) for ts, buf in echo], key=lambda r: r[0])
    path = tmp_path / "mid-and-echo.pcap"
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=262144, linktype=1)
        for ts, buf in merged:
            writer.writepkt(buf, ts)
    config = load_config(str(ZONES / "normal-workflow" / "config.yaml"))
    run = OneWorker(path, config)
    judge, reference = run.judge, run.reference
    nodes = reference.policy.inventory.nodes
    assert len(nodes) == 2 and any(len(n.sop_classes) == 2 for n in nodes.values())
    assert judge.policy.inventory.nodes == nodes
    assert alerts(judge) == alerts(reference)
