"""Live capture on a TAP or span port: `dicom-sensor capture -i IFACE`."""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pcapy

from .bpf import all_tcp_filter
from .capture import CaptureError
from .decode import Segment, decoder_for

EXIT_OK = 0
EXIT_FAIL = 2
TICK_SECONDS = 1.0
INVENTORY_SECONDS = 60.0
DRAIN_LIMIT = 4096  # packets taken from one interface before looking at the others


# pcap_activate()'s negative results (pcap/pcap.h), as pcapy-ng returns them.
_ACTIVATE_ERRORS = {
    -1: "capture error",
    -5: "no such device",
    -8: "permission denied (run as root, or grant the program CAP_NET_RAW and CAP_NET_ADMIN)",
    -9: "interface is not up",
    -6: "monitor mode not supported",
    -11: "promiscuous mode not permitted",
}


def log(event: str, **fields: Any) -> None:
    """One JSON line about the sensor's own lifecycle on stderr (journald picks it up)."""
    record = {"ts": round(time.time(), 6), "level": fields.pop("level", "info"), "event": event}
    record.update(fields)
    print(json.dumps(record, separators=(",", ":")), file=sys.stderr, flush=True)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclass(slots=True)
class LiveSource:
    """One interface opened with libpcap, non-blocking, its filter in the kernel."""

    interface: str
    handle: Any
    linktype: int
    decode: Callable[[float, bytes], Any]
    fd: int
    stats_base: tuple[int, int, int] = field(default=(0, 0, 0))

    @classmethod
    def open(
        cls,
        interface: str,
        snaplen: int,
        promisc: bool,
        buffer_mb: int,
        user_filter: str | None,
        fanout_group: int | None = None,
    ) -> LiveSource:
        """Open, activate and filter the interface; CaptureError with one line on failure."""
        try:
            handle = pcapy.create(interface)
            handle.set_snaplen(snaplen)
            handle.set_promisc(1 if promisc else 0)
            handle.set_timeout(100)
            handle.set_buffer_size(buffer_mb << 20)
            status = handle.activate()
        except pcapy.PcapError as exc:
            text = _one_line(exc)
            lower = text.lower()
            if "no such device" in lower or "doesn't exist" in lower:
                raise CaptureError(f"interface {interface}: no such device") from None
            if "permission" in lower or "not permitted" in lower:
                raise CaptureError(
                    f"interface {interface}: permission denied (run as root, or grant the "
                    "program CAP_NET_RAW and CAP_NET_ADMIN)"
                ) from None
            raise CaptureError(f"interface {interface}: {text}") from None
        if isinstance(status, int) and status < 0:
            raise CaptureError(
                f"interface {interface}: {_ACTIVATE_ERRORS.get(status, f'error {status}')}"
            )
        linktype = handle.datalink()
        expr = all_tcp_filter(linktype)
        if user_filter:
            expr = f"({user_filter}) and ({expr})"
        try:
            handle.setfilter(expr)
        except pcapy.PcapError as exc:
            raise CaptureError(f"BPF filter does not compile: {_one_line(exc)}") from None
        if fanout_group is not None:
            try:
                handle.set_fanout(fanout_group, pcapy.PACKET_FANOUT_HASH)
            except (pcapy.PcapError, OSError) as exc:
                raise CaptureError(f"interface {interface}: fanout: {_one_line(exc)}") from None
        handle.setnonblock(1)
        return cls(interface, handle, linktype, decoder_for(linktype), handle.getfd())

    def stats(self) -> tuple[int, int, int]:
        """(received, dropped by the kernel, dropped by the interface) since opening."""
        try:
            received, dropped, ifdropped = self.handle.stats()
        except pcapy.PcapError:
            return self.stats_base
        self.stats_base = (int(received), int(dropped), int(ifdropped))
        return self.stats_base


def drop_privileges(user: str) -> None:
    """Become ``user`` (and its group) for good, once the captures are open."""
    import grp
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise CaptureError(f"--user {user}: no such user") from None
    if os.getuid() == entry.pw_uid:
        return
    try:
        groups = [g.gr_gid for g in grp.getgrall() if user in g.gr_mem]
        os.setgroups(groups)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except PermissionError:
        raise CaptureError(f"--user {user}: cannot switch user (not running as root)") from None


class _Signals:
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


def run_capture(args: argparse.Namespace) -> int:
    """The capture subcommand; the exit code."""
    from dissectors.registry import load_dissectors

    from .config import ConfigError, default_config, load_config
    from .pipeline import Pipeline

    def fail(message: str) -> int:
        print(f"dicom-sensor: {message}", file=sys.stderr)
        return EXIT_FAIL

    try:
        config = load_config(args.config) if args.config else default_config()
    except ConfigError as exc:
        return fail(str(exc))
    interfaces: list[str] = args.interface
    # Everything imported later must be imported while we can still read it: an
    # unprivileged user may not be able to read the interpreter's library.
    from . import cli, metrics, serve  # noqa: F401
    from . import syslog as _syslog  # noqa: F401

    "".encode("idna")  # getaddrinfo needs the codec later
    if args.workers > 1:
        return _run_workers(args, config, fail)
    try:
        sources = [
            LiveSource.open(i, args.snaplen, not args.no_promisc, args.buffer_mb, args.bpf)
            for i in interfaces
        ]
        if args.user:
            drop_privileges(args.user)
    except CaptureError as exc:
        return fail(str(exc))
    if args.no_root and os.geteuid() == 0:
        return fail("--no-root: still running as root after opening the capture; give --user")
    try:
        sinks = _open_sinks(args)
    except OSError as exc:
        return fail(f"cannot write output: {exc.strerror}: {exc.filename}")
    pipeline = Pipeline(
        load_dissectors(),
        associations=sinks.get("associations"),
        events=sinks.get("events"),
        policy_config=config,
    )
    drops = {"kernel": 0, "interface": 0}
    if args.metrics_listen:
        from .serve import ListenError, serve_metrics

        try:
            serve_metrics(pipeline, args.metrics_listen, args.tls_cert, args.tls_key, drops)
        except ListenError as exc:
            return fail(str(exc))
    signals = _Signals()
    signals.install()
    log(
        "capture.started",
        interfaces=interfaces,
        uid=os.getuid(),
        config=config.source,
        metrics=args.metrics_listen,
        notes=list(config.notes),
    )
    if pipeline.policy.baseline.load_error:
        log("baseline.reset", level="warning", reason=pipeline.policy.baseline.load_error)
    _loop(pipeline, sources, signals, drops, args, sinks)
    pipeline.finish()
    for sink in sinks.values():
        sink.close()
    received, kernel, interface = _totals(sources)
    pipeline.counters.packets = received
    drops.update(kernel=kernel, interface=interface)
    _write_state(pipeline, args, drops)
    log(
        "capture.stopped",
        packets=received,
        dropped_kernel=kernel,
        dropped_interface=interface,
        associations=sum(pipeline.counters.associations.values()),
    )
    return EXIT_OK


def _open_sinks(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON lines outputs, opened for appending (OSError if one cannot be)."""
    from .jsonl import JsonLines

    rotate_bytes = int(args.rotate_mb * (1 << 20)) if args.rotate_mb else 0
    sinks: dict[str, Any] = {}
    for name in ("associations", "events"):
        path = getattr(args, name)
        if path:
            sinks[name] = JsonLines(
                path,
                append=True,
                rotate_bytes=rotate_bytes,
                rotate_seconds=args.rotate_seconds or 0.0,
            )
    return sinks


def _run_workers(args: argparse.Namespace, config: Any, fail: Callable[[str], int]) -> int:
    """--workers N: check the interfaces here (one clear error), then hand over."""
    from .workers import run_workers

    try:
        for interface in args.interface:
            probe = LiveSource.open(interface, args.snaplen, not args.no_promisc, 1, args.bpf)
            probe.handle.close()
    except CaptureError as exc:
        return fail(str(exc))
    return run_workers(args, config, fail)


def _totals(sources: list[LiveSource]) -> tuple[int, int, int]:
    stats = [s.stats() for s in sources]
    return sum(s[0] for s in stats), sum(s[1] for s in stats), sum(s[2] for s in stats)


def _write_state(pipeline: Any, args: argparse.Namespace, drops: dict[str, int]) -> None:
    """Inventory and metrics files, replaced atomically."""
    from .cli import _write_file

    try:
        if args.inventory:
            _write_file(args.inventory, pipeline.policy.inventory.write_json)
        if args.inventory_csv:
            _write_file(args.inventory_csv, pipeline.policy.inventory.write_csv)
        if args.metrics:
            from .metrics import exposition

            text = exposition(pipeline, drops).decode()
            _write_file(args.metrics, lambda fh: fh.write(text))
    except OSError as exc:
        log("output.failed", level="error", reason=f"{exc.strerror}: {exc.filename}")


def _loop(
    pipeline: Any,
    sources: list[LiveSource],
    signals: _Signals,
    drops: dict[str, int],
    args: argparse.Namespace,
    sinks: dict[str, Any],
    on_tick: Callable[[], None] | None = None,
) -> None:
    """Read every interface until a stop signal; timers run on wall-clock time."""
    engine = pipeline.engine
    stats = engine.stats
    process = engine.process
    by_fd = {s.fd: s for s in sources}
    fds = list(by_fd)
    next_tick = time.time() + TICK_SECONDS
    next_state = time.time() + INVENTORY_SECONDS
    while not signals.stop:
        try:
            ready, _, _ = select.select(fds, [], [], 0.2)
        except InterruptedError:
            ready = []
        for fd in ready:
            source = by_fd[fd]
            decode = source.decode
            nxt = source.handle.next
            for _ in range(DRAIN_LIMIT):
                try:
                    header, data = nxt()
                except pcapy.PcapError as exc:
                    log(
                        "capture.error",
                        level="error",
                        interface=source.interface,
                        reason=_one_line(exc),
                    )
                    signals.stop = True
                    break
                if header is None:
                    break
                sec, usec = header.getts()
                ts = sec + usec * 1e-6
                seg = decode(ts, data)
                if seg.__class__ is Segment:
                    if seg.payload.startswith(b"\x16\x03"):
                        pipeline.tls_hello(seg)
                    process(seg)
                else:
                    stats.packets += 1
                    stats.drop(seg)
                pipeline.last_ts = ts
        now = time.time()
        if now >= next_tick:
            next_tick = now + TICK_SECONDS
            pipeline.tick(now)
            received, kernel, interface = _totals(sources)
            pipeline.counters.packets = received
            pipeline.counters.last_packet_ts = pipeline.last_ts
            drops["kernel"] = kernel
            drops["interface"] = interface
            if on_tick is not None:
                on_tick()
        if now >= next_state:
            next_state = now + INVENTORY_SECONDS
            _write_state(pipeline, args, drops)
            pipeline.policy.baseline.save()
        if signals.reload:
            signals.reload = False
            _reload(pipeline, args, sinks)


def _reload(pipeline: Any, args: argparse.Namespace, sinks: dict[str, Any]) -> None:
    """SIGHUP: reopen outputs (logrotate) and reload the config; a bad one keeps the old."""
    from .config import ConfigError, load_config

    for sink in sinks.values():
        sink.reopen()
    if not args.config:
        log("config.reloaded", config="embedded default")
        return
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log("config.rejected", level="error", reason=str(exc), kept=pipeline.policy_config.source)
        return
    pipeline.reconfigure(config)
    log("config.reloaded", config=config.source, notes=list(config.notes))


def add_capture_parser(sub: Any) -> None:
    """Register `capture` with the CLI's subparsers."""
    p = sub.add_parser("capture", help="capture live from one or more interfaces (TAP, span)")
    p.add_argument(
        "-i",
        "--interface",
        action="append",
        required=True,
        metavar="IFACE",
        help="interface to capture on (repeat for several)",
    )
    p.add_argument("-c", "--config", metavar="FILE", help="zone and rule config (YAML)")
    p.add_argument("--associations", metavar="PATH", help="association records, JSON lines")
    p.add_argument("--events", metavar="PATH", help="alert and anomaly events, JSON lines")
    p.add_argument("--inventory", metavar="PATH", help="DICOM nodes, JSON (rewritten every minute)")
    p.add_argument("--inventory-csv", metavar="PATH", help="DICOM nodes, CSV")
    p.add_argument("--metrics", metavar="PATH", help="Prometheus text file, rewritten every minute")
    p.add_argument(
        "--metrics-listen", metavar="HOST:PORT", help="serve /metrics (e.g. 127.0.0.1:9464)"
    )
    p.add_argument(
        "--tls-cert", metavar="FILE", help="serve /metrics over TLS with this certificate"
    )
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key")
    p.add_argument(
        "--snaplen", type=int, default=65535, help="bytes kept per packet (default 65535)"
    )
    p.add_argument(
        "--buffer-mb", type=int, default=64, help="kernel capture buffer in MiB (default 64)"
    )
    p.add_argument(
        "--no-promisc", action="store_true", help="do not put the interface in promiscuous mode"
    )
    p.add_argument("--bpf", metavar="FILTER", help="extra BPF filter, ANDed with 'tcp'")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="capture processes sharing the interfaces in a PACKET_FANOUT group",
    )
    p.add_argument("--user", metavar="NAME", help="drop to this user once the capture is open")
    p.add_argument(
        "--no-root", action="store_true", help="refuse to write outputs or serve metrics as root"
    )
    p.add_argument(
        "--rotate-mb", type=float, default=0, help="rotate JSON lines files at this size"
    )
    p.add_argument(
        "--rotate-seconds", type=float, default=0, help="rotate JSON lines files at this age"
    )
    p.set_defaults(func=run_capture)
