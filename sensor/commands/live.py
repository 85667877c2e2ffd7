"""The live capture loop shared by one process and by each worker: signals, ticks, outputs."""

from __future__ import annotations

import argparse
import json
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from ..capture.errors import CaptureError
from ..capture.live import LiveSource
from ..outputs.files import write_file

TICK_SECONDS = 1.0
INVENTORY_SECONDS = 60.0
DRAIN_LIMIT = 4096  # packets taken from one interface before looking at the others


_QUIET = [False]  # capture -q: only warnings and errors
_WORKER: list[int | None] = [None]  # capture --workers: this process's worker number


def set_quiet(quiet: bool) -> None:
    """With ``quiet``, :func:`log` drops info lines."""
    _QUIET[0] = quiet


def set_worker(index: int) -> None:
    """Every lifecycle line of this process says which worker wrote it."""
    _WORKER[0] = index


def log(event: str, **fields: Any) -> None:
    """One JSON line about the sensor's own lifecycle on stderr (journald picks it up)."""
    level = fields.pop("level", "info")
    if level == "info" and _QUIET[0]:
        return
    record: dict[str, Any] = {"ts": round(time.time(), 6), "level": level, "event": event}
    if _WORKER[0] is not None:
        record["worker"] = _WORKER[0]
    record.update(fields)
    # One write per line: workers share stderr, and print() writes the newline apart.
    sys.stderr.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stderr.flush()


class Signals:
    """What the signal handlers asked for; the main loop acts on it."""

    def __init__(self) -> None:
        self.stop = False
        self.reload = False

    def install(self) -> None:
        def stop(signum: int, _: object) -> None:
            self.stop = True

        def hup(signum: int, _: object) -> None:
            self.reload = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)


def open_sinks(args: argparse.Namespace) -> dict[str, Any]:
    """The line outputs, opened for appending (OSError if one cannot be; none is left open).

    The same outputs ``read`` writes: association records, events as ECS or Suricata EVE,
    Zeek's dicom.log as TSV or JSON; each rotates by size or age and reopens on SIGHUP.
    """
    from ..outputs.eve import EveLines
    from ..outputs.jsonl import JsonLines
    from ..outputs.zeek import ZeekLog

    rotation: dict[str, Any] = {
        "append": True,
        "rotate_bytes": int(args.rotate_mb * (1 << 20)) if args.rotate_mb else 0,
        "rotate_seconds": args.rotate_seconds or 0.0,
    }
    sinks: dict[str, Any] = {}
    try:
        if args.associations:
            sinks["associations"] = JsonLines(args.associations, **rotation)
        if args.events:
            eve = getattr(args, "events_format", "ecs") == "eve"
            sinks["events"] = (EveLines if eve else JsonLines)(args.events, **rotation)
        if getattr(args, "zeek_log", None):
            sinks["zeek"] = ZeekLog(args.zeek_log, args.zeek_format, **rotation)
    except OSError:
        for sink in sinks.values():
            sink.close()
        raise
    return sinks


def attach_sinks(pipeline: Any, sinks: dict[str, Any]) -> None:
    """Outputs the Pipeline's constructor does not take (the Zeek log) join its records."""
    if "zeek" in sinks:
        pipeline.record_sinks.append(sinks["zeek"].write)
        sinks["zeek"].watch(pipeline.counters.output_failures, report_to_log)


def no_output_warning(args: argparse.Namespace, config: Any) -> str | None:
    """Why a capture with no output at all is worth a warning (None when it has one)."""
    names = (
        "associations",
        "events",
        "zeek_log",
        "inventory",
        "inventory_csv",
        "metrics",
        "metrics_listen",
        "alert_pcap",
    )
    if any(getattr(args, n, None) for n in names) or config.syslog is not None:
        return None
    return (
        "no output: give --associations, --events, --inventory, --metrics or "
        "--metrics-listen (or alerts.syslog in the config); only this log is written"
    )


def log_warnings(pipeline: Any, args: argparse.Namespace, config: Any) -> None:
    """What capture says at its start about a reset baseline or a missing output."""
    if pipeline.policy.baseline.load_error:
        log("baseline.reset", level="warning", reason=pipeline.policy.baseline.load_error)
    nothing = no_output_warning(args, config)
    if nothing is not None:
        log("capture.no-output", level="warning", reason=nothing)


def metrics_url(args: argparse.Namespace) -> str | None:
    """Where /metrics is served, with the scheme TLS gives it."""
    if not args.metrics_listen:
        return None
    scheme = "https" if args.tls_cert else "http"
    return f"{scheme}://{args.metrics_listen}/metrics"


def report_to_log(message: str) -> None:
    """An output the sensor could not deliver, as a lifecycle log line."""
    log("output.failed", level="error", reason=message)


def totals(sources: list[LiveSource]) -> tuple[int, int, int]:
    """(received, kernel drops, interface drops) summed over the sources."""
    stats = [s.stats() for s in sources]
    return sum(s[0] for s in stats), sum(s[1] for s in stats), sum(s[2] for s in stats)


def stopped_drops(drops: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The drop fields of the capture.stopped line: per interface and summed."""
    return {
        "dropped_kernel": sum(d["kernel"] for d in drops.values()),
        "dropped_interface": sum(d["interface"] for d in drops.values()),
        "drops": drops,
    }


def interface_drops(sources: list[LiveSource]) -> dict[str, dict[str, int]]:
    """Per interface: ``kernel``, what our socket lost (ps_drop: the sensor's drops), and
    ``interface``, what the interface itself dropped (ps_ifdrop: every reader's loss,
    frames the stack had no handler for among them; not the sensor's)."""
    out: dict[str, dict[str, int]] = {}
    for source in sources:
        _, kernel, interface = source.stats()
        out[source.interface] = {"kernel": kernel, "interface": interface}
    return out


_FILES_FAILING: set[str] = set()  # whole-file outputs in an outage, logged once each


def write_state(pipeline: Any, args: argparse.Namespace, drops: dict[str, dict[str, int]]) -> None:
    """Inventory and metrics files, replaced atomically; a failure is counted, logged once."""
    from ..outputs.metrics import exposition

    outputs: list[tuple[str | None, Callable[[Any], object]]] = [
        (args.inventory, pipeline.policy.inventory.write_json),
        (args.inventory_csv, pipeline.policy.inventory.write_csv),
        (args.metrics, lambda fh: fh.write(exposition(pipeline, drops).decode())),
    ]
    for path, write in outputs:
        if not path:
            continue
        try:
            write_file(path, write)
        except OSError as exc:
            # The workers' parent keeps its own count: its counters are rebuilt from snapshots.
            failures = getattr(pipeline, "file_failures", None)
            if failures is None:
                failures = pipeline.counters.output_failures
            failures["files"] += 1
            if path not in _FILES_FAILING:
                _FILES_FAILING.add(path)
                report_to_log(f"{path}: {exc.strerror or exc}")
        else:
            _FILES_FAILING.discard(path)


def live_loop(
    pipeline: Any,
    sources: list[LiveSource],
    signals: Signals,
    drops: dict[str, dict[str, int]],
    args: argparse.Namespace,
    sinks: dict[str, Any],
    on_tick: Callable[[], None] | None = None,
    on_read: Callable[[float | None], None] | None = None,
) -> None:
    """Read every interface until a stop signal; timers run on wall-clock time.

    ``on_read`` is called after each look at the interfaces, with the time the look began
    if every interface was empty then (None if one had packets).
    """
    if getattr(args, "prefilter", "all") == "ports":
        # The kernel admits heads, tiny payloads and the followed ports, reinstalled on change.
        ports = frozenset(getattr(args, "dicom_port", None) or ())
        pipeline.follow_live([(s.linktype, s.install_filter) for s in sources], ports)
    else:
        pipeline.follow_all()
    pipeline.compile_live()
    by_fd = {s.fd: s for s in sources}
    # observer.ingress.interface.name: the interface of the packet that produced a record
    # (with several interfaces, records that timers produce name none).
    pipeline.pivots.interface = sources[0].interface if len(sources) == 1 else None
    fds = list(by_fd)
    next_tick = time.time() + TICK_SECONDS
    next_state = time.time() + INVENTORY_SECONDS
    while not signals.stop:
        looked = time.time()
        try:
            ready, _, _ = select.select(fds, [], [], 0.2)
        except InterruptedError:
            ready = []
        for fd in ready:
            source = by_fd[fd]
            if len(sources) > 1:
                pipeline.pivots.interface = source.interface
            if pipeline.live_pcaps is not None:
                pipeline.live_pcaps.linktype = source.linktype
            try:
                pipeline.feed(pipeline.live_packets(source, DRAIN_LIMIT), source.decode)
                pipeline.reinstall_if_due()
            except CaptureError as exc:
                log("capture.error", level="error", interface=source.interface, reason=str(exc))
                signals.stop = True
        now = time.time()
        if now >= next_tick:
            next_tick = now + TICK_SECONDS
            if len(sources) > 1:
                pipeline.pivots.interface = None
            pipeline.tick(now)
            pipeline.counters.packets = totals(sources)[0]
            pipeline.counters.last_packet_ts = pipeline.last_ts
            drops.update(interface_drops(sources))
            if on_tick is not None:
                on_tick()
        if now >= next_state:
            next_state = now + INVENTORY_SECONDS
            write_state(pipeline, args, drops)
            pipeline.save_baseline()
        if signals.reload:
            signals.reload = False
            reload_config(pipeline, args, sinks)
        if on_read is not None:
            on_read(None if ready else looked)


def reload_config(pipeline: Any, args: argparse.Namespace, sinks: dict[str, Any]) -> None:
    """SIGHUP: reopen outputs (logrotate) and reload the config; a bad one keeps the old."""
    from ..policy.config import ConfigError, load_config

    for sink in sinks.values():
        sink.reopen()
    if not args.config:
        log("config.reloaded", config="embedded default")
        return
    try:
        config = load_config(args.config, getattr(args, "state_dir", None))
    except ConfigError as exc:
        log("config.rejected", level="error", reason=str(exc), kept=pipeline.policy_config.source)
        return
    pipeline.reconfigure(config)
    log("config.reloaded", config=config.source, notes=list(config.notes))


def alert_pcap_log(live: Any) -> dict[str, Any]:
    """capture.stopped fields on --alert-pcap: files written and the bounds that bit."""
    if live is None:
        return {}
    limited = {bound: n for bound, n in live.stats.limited.items() if n}
    return {"alert_pcap_files": live.stats.files, "alert_pcap_limited": limited}
