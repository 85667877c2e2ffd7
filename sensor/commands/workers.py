"""Several capture workers in one PACKET_FANOUT group; the parent writes and merges.

Each worker opens every interface and joins the same fanout group with
PACKET_FANOUT_HASH, so the kernel hands both directions of a connection to one worker.
Workers decode, follow and police their share; their association records and events
come to the parent, the only writer of the output files, with a snapshot of their
counters every second. The parent serves and writes the merged metrics and inventory.

Detectors that count across connections (brute force, sweeps, bulk per window, the
learned baseline) run per worker: the fanout hash includes ports, so their counts are
per worker share, and only the first worker keeps the baseline state file.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import multiprocessing
import os
import queue as queue_module
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

from ..capture.errors import CaptureError
from ..capture.live import LiveSource, drop_privileges
from ..capture.prefilter import PrefilterStats
from ..counters import SensorCounters
from ..flow.stream import ReassemblyStats
from ..flow.table import EngineStats
from ..policy.inventory import Inventory, Node
from .live import (
    INVENTORY_SECONDS,
    Signals,
    live_loop,
    log,
    metrics_url,
    open_sinks,
    report_to_log,
    totals,
    write_state,
)

SNAPSHOT_SECONDS = 1.0
STOP_GRACE_SECONDS = 20.0


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


def _merge_node(into: Inventory, node: Node) -> None:
    mine = into.node(node.ip, node.zone, node.first_seen)
    if mine is None:
        return
    mine.last_seen = max(mine.last_seen, node.last_seen)
    for name in (
        "ports",
        "scp_ae_titles",
        "scu_ae_titles",
        "implementation_class_uids",
        "implementation_version_names",
        "vendors",
        "sop_classes",
    ):
        getattr(mine, name).update(getattr(node, name))
    mine.associations_as_scu += node.associations_as_scu
    mine.associations_as_scp += node.associations_as_scp


class Merged:
    """What the metrics collector and the inventory writers read, summed over workers."""

    def __init__(self, policy_config: Any, dissectors: tuple[Any, ...]) -> None:
        self.policy_config = policy_config
        self.dissectors = dissectors
        self.counters = SensorCounters()
        self.engine = argparse.Namespace(stats=EngineStats())
        self.policy = argparse.Namespace(inventory=Inventory())
        self.followed = argparse.Namespace(stats=PrefilterStats())
        self.active_associations = 0
        self.drops = {"kernel": 0, "interface": 0}
        # Writes the parent's own output files could not take (workers write no files).
        self.file_failures: Counter[str] = Counter()

    def update(self, snapshots: dict[int, dict[str, Any]]) -> None:
        """Recompute the sums from each worker's latest snapshot."""
        counters, stats, inventory, prefilter = (
            SensorCounters(),
            EngineStats(stream=ReassemblyStats()),
            Inventory(),
            PrefilterStats(),
        )
        active, drops = 0, {"kernel": 0, "interface": 0}
        for snap in snapshots.values():
            _add(counters, snap["counters"])
            _add(stats, snap["stats"])
            _add(prefilter, snap["prefilter"])
            for node in snap["nodes"]:
                _merge_node(inventory, node)
            active += snap["active"]
            for key in drops:
                drops[key] += snap["drops"].get(key, 0)
        counters.output_failures.update(self.file_failures)
        self.counters, self.engine.stats, self.policy.inventory = counters, stats, inventory
        self.followed.stats = prefilter
        self.active_associations = active
        self.drops.update(drops)


def _snapshot(pipeline: Any, drops: dict[str, int]) -> dict[str, Any]:
    return {
        "counters": pipeline.counters,
        "stats": pipeline.engine.stats,
        "prefilter": pipeline.followed.stats,
        "nodes": list(pipeline.policy.inventory.nodes.values()),
        "active": pipeline.active_associations,
        "drops": dict(drops),
    }


def _worker(index: int, args: argparse.Namespace, config: Any, group: int, queue: Any) -> None:
    """One worker's whole life; it reports through ``queue`` and never writes files."""
    from dissectors.registry import load_dissectors

    from ..pipeline import Pipeline
    from .options import alert_pcap_limits

    signals = Signals()
    signals.install()
    try:
        sources = [
            LiveSource.open(
                i, args.snaplen, not args.no_promisc, args.buffer_mb, args.bpf, fanout_group=group
            )
            for i in args.interface
        ]
        if args.user:
            drop_privileges(args.user)
    except CaptureError as exc:
        queue.put(("error", index, str(exc)))
        queue.put(("done", index, None))
        return
    if index != 0 and config.state_file is not None:
        config = dataclasses.replace(config, state_file=None)
    pipeline = Pipeline(
        load_dissectors(),
        associations=QueueSink(queue, "record"),
        events=QueueSink(queue, "event"),
        policy_config=config,
    )
    pipeline.report = report_to_log
    if getattr(args, "alert_pcap", None):
        # Each worker keeps its own associations' packets and writes their pcaps itself.
        pipeline.keep_alert_packets(args.alert_pcap, alert_pcap_limits(args))
    drops = {"kernel": 0, "interface": 0}
    quiet = argparse.Namespace(
        **{**vars(args), "inventory": None, "inventory_csv": None, "metrics": None}
    )

    def report() -> None:
        queue.put(("snapshot", index, _snapshot(pipeline, drops)))

    live_loop(pipeline, sources, signals, drops, quiet, {}, on_tick=report)
    pipeline.finish()
    received, kernel, interface = totals(sources)
    pipeline.counters.packets = received
    drops.update(kernel=kernel, interface=interface)
    report()
    queue.put(("done", index, None))


def run_workers(args: argparse.Namespace, config: Any, fail: Callable[[str], int]) -> int:
    """The parent: start the workers, write what they send, merge, stop them on a signal."""
    from dissectors.registry import load_dissectors

    from ..outputs import jsonl, metrics, serve, syslog  # noqa: F401  (before any privilege drop)
    from ..outputs.serve import ListenError, serve_metrics

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    group = os.getpid() & 0xFFFF
    merged = Merged(config, tuple(load_dissectors()))
    # Workers are forked while this process may still open the interfaces.
    workers = [
        ctx.Process(target=_worker, args=(i, args, config, group, queue), daemon=True)
        for i in range(args.workers)
    ]
    for proc in workers:
        proc.start()

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
        fanout_group=group,
        uid=os.getuid(),
        config=config.source,
        metrics=args.metrics_listen,
        metrics_url=metrics_url(args),
    )
    snapshots: dict[int, dict[str, Any]] = {}
    done: set[int] = set()
    errors: list[str] = []
    stop_sent_at: float | None = None
    next_state = time.monotonic() + INVENTORY_SECONDS
    while len(done) < len(workers):
        if signals.stop and stop_sent_at is None:
            stop_sent_at = time.monotonic()
            for proc in workers:
                with contextlib.suppress(ProcessLookupError, TypeError):
                    os.kill(proc.pid, signal.SIGTERM)  # type: ignore[arg-type]
        if signals.reload:
            signals.reload = False
            for sink in sinks.values():
                sink.reopen()
            for proc in workers:
                with contextlib.suppress(ProcessLookupError, TypeError):
                    os.kill(proc.pid, signal.SIGHUP)  # type: ignore[arg-type]
        if stop_sent_at is not None and time.monotonic() - stop_sent_at > STOP_GRACE_SECONDS:
            break
        if not any(p.is_alive() for p in workers) and queue.empty():
            break
        try:
            kind, index, payload = _receive(queue)
        except queue_module.Empty:
            continue
        if kind == "record" and "associations" in sinks:
            sinks["associations"].write(payload)
        elif kind == "event" and "events" in sinks:
            sinks["events"].write(payload)
        elif kind == "snapshot":
            snapshots[index] = payload
            merged.update(snapshots)
        elif kind == "error":
            errors.append(payload)
            signals.stop = True
        elif kind == "done":
            done.add(index)
        if time.monotonic() >= next_state:
            next_state = time.monotonic() + INVENTORY_SECONDS
            write_state(merged, args, merged.drops)
    for proc in workers:
        proc.join(timeout=2)
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
        dropped_kernel=merged.drops["kernel"],
        dropped_interface=merged.drops["interface"],
        associations=sum(merged.counters.associations.values()),
    )
    return 0


def _receive(queue: Any) -> tuple[str, int, Any]:
    message = queue.get(timeout=0.2)
    if message[0] in ("record", "event"):
        return message[0], -1, message[1]
    kind, index, payload = message
    return kind, index, payload
