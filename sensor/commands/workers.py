"""Several capture workers in one PACKET_FANOUT group; one policy in the parent.

Each worker opens every interface and joins, on each, the interface's fanout group with
PACKET_FANOUT_HASH, so the kernel hands both directions of a connection to one worker (a
fanout group spans one interface: the kernel refuses a second one).
Workers decode, reassemble and follow their share of the associations; their records
and anomaly events come to the parent, the only writer of the output files, with a
snapshot of their counters every second.

The fanout hash includes ports, so the connections of one sweep, brute force or bulk
transfer land on different workers. Workers therefore judge nothing: what the policy
reads of each session event (the association's identity, PDUs, byte counts and the
event, time-stamped) goes to the parent with a watermark, the time before which that
worker will send nothing more. The parent merges the workers' inputs in time order,
judging an input only once every worker has passed its time (an idle worker advances its
watermark every select timeout), and runs the one policy engine, learned baseline,
inventory and alert folder, with the decisions made late (a C-MOVE and its
sub-association, which may be on two workers): findings do not depend on the number of
workers.

With ``--alert-pcap`` the packets stay in the worker that follows the association, while
the parent judges: the parent sends each worker, on a queue of its own, the verdicts about
its sessions and the time it has judged up to (at most every ``JUDGED_SECONDS``, only
when it has advanced). A worker holds an ended association's buffer until that judged time
passes its end, writes the pcaps, and sends their index lines to the parent, the one
writer of ``index.jsonl``. At the end the parent makes its last decisions once every
worker has sent its last input, then tells the workers to finish their pcaps.

Each worker writes to the parent on a pipe of its own (``Outgoing``), whose end the parent
reads once the worker has ended. A worker whose pipe ends before its last message died
(killed, crashed): the parent judges the inputs it sent, forgets its sessions, sends it
nothing more, and counts what died with it (``SensorCounters.lost_with_workers``). The
kernel hands its share of the traffic to the others; the parent goes on, and exits with
``EXIT_WORKER_LOST``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import multiprocessing
import os
import queue as queue_module
import selectors
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

from ..capture.errors import CaptureError
from ..capture.live import LiveSource, drop_privileges, free_fanout_group
from ..capture.prefilter import PrefilterStats
from ..counters import SensorCounters
from ..flow.stream import ReassemblyStats
from ..flow.table import EngineStats
from .live import (
    INVENTORY_SECONDS,
    Signals,
    alert_pcap_log,
    attach_sinks,
    interface_drops,
    live_loop,
    log,
    log_warnings,
    metrics_url,
    open_sinks,
    reload_config,
    report_to_log,
    set_worker,
    stopped_drops,
    totals,
    write_state,
)

SNAPSHOT_SECONDS = 1.0
STOP_GRACE_SECONDS = 20.0
WATERMARK_SECONDS = 0.1  # an idle worker tells the parent time passed at most this often
JUDGED_SECONDS = 0.2  # the parent tells the workers its judged time at most this often
FINAL_WAIT_SECONDS = 10.0  # a worker waits this long for the parent's last verdicts
EXIT_WORKER_LOST = 3  # capture --workers: a worker died (worker.lost); the others' work is out


class QueueSink:
    """A JSON-lines-shaped sink that hands each object to the parent."""

    def __init__(self, queue: Any, kind: str) -> None:
        self.queue = queue
        self.kind = kind
        self.count = 0

    def write(self, obj: dict[str, Any]) -> None:
        """Send one record or event."""
        self.queue.put((self.kind, obj))
        self.count += 1

    def reopen(self) -> None:
        """Nothing to reopen: the parent owns the files."""

    def close(self) -> None:
        """Nothing to close."""


class Outgoing:
    """A worker's messages to the parent, on a pipe of its own, written by a thread.

    The capture loop never waits for the parent (as with a multiprocessing queue), and
    no other process writes to the pipe: a worker that dies, even in the middle of a
    message, can wedge no other worker's messages nor leave the parent waiting for the
    rest of one; the parent reads what it sent, then the end of the pipe.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._items: deque[Any] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._send, name="to-parent", daemon=True)
        self._thread.start()

    def put(self, obj: Any) -> None:
        """Send ``obj`` to the parent (pickled by the sending thread)."""
        with self._ready:
            if self._closed:
                return  # the parent is gone
            self._items.append(obj)
            self._ready.notify()

    def _send(self) -> None:
        items, ready = self._items, self._ready
        while True:
            with ready:
                while not items and not self._closed:
                    ready.wait()
                if not items:
                    return
            while items:  # a deque's append and popleft need no lock
                try:
                    self.conn.send(items.popleft())
                except OSError:  # the parent is gone: nothing to send to
                    with ready:
                        self._closed = True
                        items.clear()
                    return

    def close(self) -> None:
        """Send what is left, then close the pipe (the parent reads its end)."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join()
        self.conn.close()


def _add(total: Any, part: Any) -> None:
    """Add a dataclass of counters into another of the same type."""
    for f in dataclasses.fields(total):
        mine, theirs = getattr(total, f.name), getattr(part, f.name)
        if isinstance(mine, Counter):
            mine.update(theirs)
        elif isinstance(mine, dict):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value
        elif dataclasses.is_dataclass(mine):
            _add(mine, theirs)
        elif f.name.endswith("_ts"):
            setattr(total, f.name, max(mine, theirs))
        elif isinstance(mine, int | float):
            setattr(total, f.name, mine + theirs)


def _pcap_totals() -> Any:
    from ..outputs.alertpcap import AlertPcapStats

    return argparse.Namespace(stats=AlertPcapStats(), held_bytes=0)


class Merged:
    """What the metrics collector and the inventory writers read: workers summed, one policy.

    ``judge`` is the parent's pipeline: its inventory and its alert counts are the sensor's.
    """

    def __init__(self, judge: Any, dissectors: tuple[Any, ...]) -> None:
        self.judge = judge
        self.dissectors = dissectors
        self.counters = SensorCounters()
        self.engine = argparse.Namespace(stats=EngineStats())
        self.policy = judge.policy
        self.followed = argparse.Namespace(stats=PrefilterStats())
        self.active_associations = 0
        self.drops: dict[str, dict[str, int]] = {}
        # Writes the parent's own outputs could not take (workers write no files).
        self.file_failures: Counter[str] = judge.counters.output_failures
        # --alert-pcap: the workers' pcaps summed (the metrics read it as live_pcaps)
        self.live_pcaps: Any = None

    @property
    def policy_config(self) -> Any:
        """The config in force (the parent's, reloaded on SIGHUP)."""
        return self.judge.policy_config

    def update(self, snapshots: dict[int, dict[str, Any]]) -> None:
        """Recompute the sums from each worker's latest snapshot."""
        counters, stats, prefilter = (
            SensorCounters(),
            EngineStats(stream=ReassemblyStats()),
            PrefilterStats(),
        )
        active = 0
        drops: dict[str, dict[str, int]] = {}
        pcaps = _pcap_totals()
        for snap in snapshots.values():
            if snap.get("pcaps") is not None:
                pcap_stats, held = snap["pcaps"]
                _add(pcaps.stats, pcap_stats)
                pcaps.held_bytes += held
            _add(counters, snap["counters"])
            _add(stats, snap["stats"])
            _add(prefilter, snap["prefilter"])
            active += snap["active"]
            for interface, theirs in snap["drops"].items():
                mine = drops.setdefault(interface, {"kernel": 0, "interface": 0})
                # Each worker's socket drops its own packets; the interface's count is
                # the same whole-interface figure in every worker.
                mine["kernel"] += theirs["kernel"]
                mine["interface"] = max(mine["interface"], theirs["interface"])
        judged = self.judge.counters
        counters.alerts.update(judged.alerts)
        counters.move_decisions.update(judged.move_decisions)
        counters.policy_inputs_unordered = judged.policy_inputs_unordered
        counters.workers_lost = judged.workers_lost
        counters.lost_with_workers.update(judged.lost_with_workers)
        counters.output_failures.update(self.file_failures)
        counters.last_packet_ts = max(counters.last_packet_ts, judged.last_packet_ts)
        self.counters, self.engine.stats = counters, stats
        self.followed.stats = prefilter
        self.active_associations = active
        self.drops.clear()
        self.drops.update(drops)
        self.policy = self.judge.policy
        if self.live_pcaps is not None:
            self.live_pcaps = pcaps


def _snapshot(pipeline: Any, drops: dict[str, dict[str, int]], verdicts: int) -> dict[str, Any]:
    live = pipeline.live_pcaps
    return {
        "pcaps": None if live is None else (live.stats, live.held_bytes),
        "verdicts": verdicts,  # --alert-pcap: the parent's verdicts received
        "counters": pipeline.counters,
        "stats": pipeline.engine.stats,
        "prefilter": pipeline.followed.stats,
        "active": pipeline.active_associations,
        "drops": drops,
    }


def _worker(
    index: int,
    args: argparse.Namespace,
    config: Any,
    groups: list[int],
    pipes: list[tuple[Connection, Connection]],
    back: Any,
) -> None:
    """One worker's whole life; it reports on its pipe (``pipes[index]``: the parent's end,
    its own) and writes no file but its alert pcaps; ``back`` brings the parent's verdicts
    about its sessions."""
    for n, (theirs, mine) in enumerate(pipes):
        theirs.close()
        if n != index:
            mine.close()  # another worker's: its end must come when that worker ends
    out = Outgoing(pipes[index][1])
    try:
        _work(index, args, config, groups, out, back)
    finally:
        out.close()


def _work(
    index: int,
    args: argparse.Namespace,
    config: Any,
    groups: list[int],
    parent: Outgoing,
    back: Any,
) -> None:
    from dissectors.registry import load_dissectors

    from ..pipeline import Pipeline, PolicyOutbox, apply_verdicts
    from .options import alert_pcap_limits

    set_worker(index)
    signals = Signals()
    signals.install()
    try:
        sources = [
            LiveSource.open(
                interface,
                args.snaplen,
                not args.no_promisc,
                args.buffer_mb,
                args.bpf,
                fanout_group=group,
            )
            for interface, group in zip(args.interface, groups, strict=True)
        ]
        if args.user:
            drop_privileges(args.user)
    except CaptureError as exc:
        parent.put(("error", index, str(exc)))
        parent.put(("done", index, None))
        return
    # The parent keeps the baseline and sends the alerts; a worker only decodes and follows.
    config = dataclasses.replace(config, state_file=None, syslog=None)
    pipeline = Pipeline(
        load_dissectors(),
        associations=QueueSink(parent, "record"),
        events=QueueSink(parent, "event"),
        policy_config=config,
    )
    pipeline.keep_baseline = False
    pipeline.report = report_to_log
    outbox = PolicyOutbox()
    pipeline.remote_policy(outbox)
    live = None
    if getattr(args, "alert_pcap", None):
        # Each worker keeps its own associations' packets and writes their pcaps when the
        # parent's verdict comes; the parent writes the index.
        live = pipeline.keep_alert_packets(args.alert_pcap, alert_pcap_limits(args))
        live.judged = float("-inf")
        live.order = lambda: outbox.clock
        live.index_sink = lambda entries: parent.put(("pcap-index", index, entries))
    final = [False]
    received = [0]  # verdicts

    def verdicts(wait: float = 0.0) -> None:
        """Apply what the parent sent back (waiting up to ``wait`` for the first)."""
        while True:
            try:
                message = back.get(timeout=wait) if wait else back.get_nowait()
            except queue_module.Empty:
                return
            wait = 0.0
            if message is None:
                final[0] = True
                return
            judged, items = message
            received[0] += len(items)
            if live is not None:
                apply_verdicts(live, items)
                live.judged_to(judged)

    drops: dict[str, dict[str, int]] = {}
    quiet = argparse.Namespace(
        **{**vars(args), "inventory": None, "inventory_csv": None, "metrics": None}
    )
    sent = [0.0]

    def report() -> None:
        pipeline.counters.policy_inputs_coalesced = outbox.coalesced
        parent.put(("snapshot", index, _snapshot(pipeline, drops, received[0])))

    def send(idle_since: float | None) -> None:
        if live is not None:
            verdicts()
        if idle_since is not None:
            outbox.passed(idle_since)  # no packet was waiting: time has passed for this worker
        if outbox.inputs or outbox.clock - sent[0] >= WATERMARK_SECONDS:
            watermark, inputs = outbox.take(outbox.clock)
            sent[0] = watermark
            parent.put(("policy", index, (watermark, inputs)))

    log("worker.started", interfaces=args.interface, pid=os.getpid())
    live_loop(pipeline, sources, signals, drops, quiet, {}, on_tick=report, on_read=send)
    pipeline.finish(live_pcaps=False)
    _, inputs = outbox.take(outbox.clock)
    parent.put(("policy", index, (float("inf"), inputs)))
    if live is not None:
        # The parent's last verdicts come once every worker has sent its last input.
        give_up = time.monotonic() + FINAL_WAIT_SECONDS
        while not final[0] and time.monotonic() < give_up:
            verdicts(wait=0.2)
        if not final[0]:
            log("worker.verdicts_late", level="warning", waited=FINAL_WAIT_SECONDS)
        live.finish()
    pipeline.counters.packets = totals(sources)[0]
    drops.update(interface_drops(sources))
    report()
    log("worker.stopped", packets=pipeline.counters.packets, drops=drops)
    parent.put(("done", index, None))


def run_workers(args: argparse.Namespace, config: Any, fail: Callable[[str], int]) -> int:
    """The parent: start the workers, judge and write what they send, stop them on a signal."""
    from dissectors.registry import load_dissectors

    from ..outputs import jsonl, metrics, serve, syslog  # noqa: F401  (before any privilege drop)
    from ..outputs.livepcap import append_index
    from ..outputs.serve import ListenError, serve_metrics
    from ..pipeline import PcapVerdicts, Pipeline, PolicyInbox

    ctx = multiprocessing.get_context("fork")
    pipes = [ctx.Pipe(duplex=False) for _ in range(args.workers)]
    backs = [ctx.Queue() for _ in range(args.workers)]
    groups = fanout_groups(args.interface)
    # Workers are forked while this process may still open the interfaces.
    workers = [
        ctx.Process(target=_worker, args=(i, args, config, groups, pipes, backs[i]), daemon=True)
        for i in range(args.workers)
    ]
    for proc in workers:
        proc.start()
    for _, theirs in pipes:
        theirs.close()  # a worker's pipe ends when the worker does
    from_workers = FromWorkers([conn for conn, _ in pipes])

    def abort(message: str) -> int:
        for proc in workers:
            proc.terminate()
        return fail(message)

    try:
        if args.user:
            drop_privileges(args.user)
    except CaptureError as exc:
        return abort(str(exc))
    if args.no_root and os.geteuid() == 0:
        return abort("--no-root: still running as root; give --user")
    try:
        sinks = open_sinks(args)
    except OSError as exc:
        return abort(f"cannot write output: {exc.strerror}: {exc.filename}")
    dissectors = tuple(load_dissectors())
    judge = Pipeline(
        dissectors,
        associations=sinks.get("associations"),
        events=sinks.get("events"),
        policy_config=config,
    )
    judge.report = report_to_log
    attach_sinks(judge, sinks)
    # observer.ingress.interface.name of the alerts: each input's, from its worker; what
    # timers decide names the only interface, or none (as in one process).
    judge.pivots.interface = args.interface[0] if len(args.interface) == 1 else None
    inbox = PolicyInbox(judge, args.workers, timers_interface=judge.pivots.interface)
    merged = Merged(judge, dissectors)
    pcap_verdicts: PcapVerdicts | None = None
    if args.alert_pcap:
        pcap_verdicts = judge.verdicts = PcapVerdicts(args.workers)
        merged.live_pcaps = _pcap_totals()
    told = [float("-inf"), 0.0]  # the judged time last sent to the workers, and when
    verdicts_sent = [0] * args.workers
    index_failing = [False]

    def tell_workers(final: bool = False) -> None:
        """Send each worker its verdicts and the judged time (when either is new)."""
        if pcap_verdicts is None:
            return
        low = min(inbox.watermarks)
        now = time.monotonic()
        pending = any(pcap_verdicts.out)
        if not (final or pending or (low > told[0] and now - told[1] >= JUDGED_SECONDS)):
            return
        judged = low if low != float("inf") else judge.last_ts
        for i, back in enumerate(backs):
            if i in done:
                # It has finished: nothing queues for it (lost() counts a dead one's).
                pcap_verdicts.take(i)
                continue
            items = pcap_verdicts.take(i)
            verdicts_sent[i] += len(items)
            back.put((judged, items))
            if final:
                back.put(None)
        told[0], told[1] = low, now

    def write_index(entries: list[dict[str, Any]]) -> None:
        try:
            append_index(Path(args.alert_pcap), entries)
        except OSError as exc:
            merged.file_failures["files"] += 1
            if not index_failing[0]:
                report_to_log(f"--alert-pcap {args.alert_pcap}: {exc.strerror or exc}")
            index_failing[0] = True
        else:
            index_failing[0] = False

    finished = [False]
    done: set[int] = set()
    lost: list[int] = []

    def lose(i: int) -> None:
        """A worker died before its last input: judge what it sent, count what it took."""
        snap = snapshots.get(i)
        associations = max(snap["active"] if snap else 0, inbox.lost(i))
        verdicts = 0
        if pcap_verdicts is not None:
            # Sent and not yet seen applied in its last snapshot, or never sent.
            applied = snap["verdicts"] if snap else 0
            verdicts = verdicts_sent[i] - applied + len(pcap_verdicts.take(i))
        backs[i].cancel_join_thread()  # what it did not read must not hold up our exit
        if snap is not None:
            snap["active"] = 0  # its associations are followed by no one now
            if snap["pcaps"] is not None:
                snap["pcaps"] = (snap["pcaps"][0], 0)
        counters = judge.counters
        counters.workers_lost += 1
        counters.lost_with_workers["associations"] += associations
        counters.lost_with_workers["alert-verdicts"] += verdicts
        done.add(i)
        lost.append(i)
        merged.update(snapshots)
        workers[i].join(timeout=1)  # its pipe has ended: it is gone or going
        log(
            "worker.lost",
            level="error",
            worker=i,
            exitcode=workers[i].exitcode,
            associations=associations,
            **({"alert_verdicts": verdicts} if pcap_verdicts is not None else {}),
        )

    def finish_judging() -> None:
        """Every worker has sent its last input: the last decisions, then the workers'
        pcaps can be finished."""
        finished[0] = True
        judge.finish()
        tell_workers(final=True)

    for sink in sinks.values():
        sink.watch(merged.file_failures, report_to_log)
    if args.metrics_listen:
        try:
            serve_metrics(
                cast(Any, merged), args.metrics_listen, args.tls_cert, args.tls_key, merged.drops
            )
        except ListenError as exc:
            return abort(str(exc))
    signals = Signals()
    signals.install()
    log(
        "capture.started",
        interfaces=args.interface,
        workers=args.workers,
        fanout_groups=groups,
        uid=os.getuid(),
        config=config.source,
        metrics=args.metrics_listen,
        metrics_url=metrics_url(args),
        notes=list(config.notes),
    )
    log_warnings(judge, args, config)
    snapshots: dict[int, dict[str, Any]] = {}
    errors: list[str] = []
    stop_sent_at: float | None = None
    next_state = time.monotonic() + INVENTORY_SECONDS

    def handle(index: int, message: tuple[Any, ...]) -> None:
        """One message of worker ``index``."""
        kind, payload = message[0], message[-1]
        if kind == "policy":
            watermark, inputs = payload
            inbox.receive(index, watermark, inputs)
        elif kind == "record" and "associations" in sinks:
            judge.write_record(payload)
        elif kind == "event" and "events" in sinks:
            sinks["events"].write(payload)
        elif kind == "pcap-index":
            write_index(payload)
        elif kind == "snapshot":
            snapshots[index] = payload
            merged.update(snapshots)
        elif kind == "error":
            errors.append(payload)
            signals.stop = True
        elif kind == "done":
            done.add(index)
            inbox.done(index)

    def tell(signum: int) -> None:
        for proc in workers:
            # Never a reaped worker's pid: it may be another process's by now.
            if proc.exitcode is None:
                with contextlib.suppress(ProcessLookupError, TypeError):
                    os.kill(proc.pid, signum)  # type: ignore[arg-type]

    while len(done) < len(workers):
        if signals.stop and stop_sent_at is None:
            stop_sent_at = time.monotonic()
            tell(signal.SIGTERM)
        if signals.reload:
            signals.reload = False
            reload_config(judge, args, sinks)
            tell(signal.SIGHUP)
        if stop_sent_at is not None and time.monotonic() - stop_sent_at > STOP_GRACE_SECONDS:
            break
        for index, message in from_workers.receive(0.2):
            if message is None:
                # Its pipe ended: everything it sent has been read.
                if index not in done:
                    lose(index)  # died without saying so (killed, crashed)
                continue
            handle(index, message)
        if not finished[0] and min(inbox.watermarks) == float("inf"):
            finish_judging()
        else:
            tell_workers()
        if time.monotonic() >= next_state:
            next_state = time.monotonic() + INVENTORY_SECONDS
            write_state(merged, args, merged.drops)
            judge.save_baseline()
    for i, proc in enumerate(workers):
        if i not in done:
            # Not finished STOP_GRACE_SECONDS after the stop (wedged): ended, and lost.
            proc.terminate()
            lose(i)
    for proc in workers:
        proc.join(timeout=2)
    for back in backs:
        back.cancel_join_thread()  # the workers are gone: nothing left there is read
    from_workers.close()
    if not finished[0]:
        judge.finish()
    merged.update(snapshots)
    for sink in sinks.values():
        sink.close()
    if errors:
        return fail(errors[0])
    write_state(merged, args, merged.drops)
    log(
        "capture.stopped",
        workers=args.workers,
        inspected_per_worker=[
            int(snapshots[i]["stats"].packets) if i in snapshots else 0 for i in range(len(workers))
        ],
        packets=merged.counters.packets,
        **stopped_drops(merged.drops),
        associations=sum(merged.counters.associations.values()),
        policy_inputs=inbox.judged,
        policy_inputs_waiting_peak=inbox.waiting_peak,
        policy_inputs_unordered=judge.counters.policy_inputs_unordered,
        **alert_pcap_log(merged.live_pcaps),
        **lost_log(judge.counters, lost),
    )
    return EXIT_WORKER_LOST if lost else 0


def lost_log(counters: SensorCounters, lost: list[int]) -> dict[str, Any]:
    """capture.stopped fields when a worker died: which, and what died with them."""
    if not lost:
        return {}
    return {
        "workers_lost": counters.workers_lost,
        "lost_workers": sorted(lost),
        "lost_with_workers": dict(counters.lost_with_workers),
    }


def fanout_groups(interfaces: list[str]) -> list[int]:
    """A PACKET_FANOUT group id for each interface: one the kernel says is free, or (an
    older kernel) one from our process id."""
    try:
        return [free_fanout_group(interface) for interface in interfaces]
    except OSError:
        base = os.getpid()
        return [(base + n) & 0xFFFF for n in range(len(interfaces))]


class FromWorkers:
    """The parent's ends of the workers' pipes, watched by one selector."""

    def __init__(self, conns: list[Connection]) -> None:
        self.selector = selectors.DefaultSelector()
        for index, conn in enumerate(conns):
            self.selector.register(conn, selectors.EVENT_READ, index)

    def receive(self, timeout: float) -> list[tuple[int, tuple[Any, ...] | None]]:
        """A message of each worker that has one within ``timeout``: (worker, message), or
        (worker, None) at the end of its pipe, which is then no longer read."""
        out: list[tuple[int, tuple[Any, ...] | None]] = []
        for key, _ in self.selector.select(timeout):
            conn = cast(Connection, key.fileobj)
            try:
                out.append((key.data, conn.recv()))
            except (EOFError, OSError):
                self.selector.unregister(conn)
                conn.close()
                out.append((key.data, None))
        return out

    def close(self) -> None:
        """Close the pipes still open."""
        for key in list(self.selector.get_map().values()):
            cast(Connection, key.fileobj).close()
        self.selector.close()
