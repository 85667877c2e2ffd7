"""`dicom-sensor capture -i IFACE`: live capture on a TAP or span port."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from ..capture.errors import CaptureError
from ..capture.live import LiveSource, drop_privileges
from .live import (
    Signals,
    alert_pcap_log,
    attach_sinks,
    interface_drops,
    live_loop,
    log,
    log_warnings,
    metrics_url,
    open_sinks,
    report_to_log,
    set_quiet,
    stopped_drops,
    totals,
    write_state,
)
from .options import add_alert_pcap_group, add_format_options, alert_pcap_limits

EXIT_OK = 0
EXIT_FAIL = 2


def run_capture(args: argparse.Namespace) -> int:
    """The capture subcommand; the exit code."""
    from dissectors.registry import load_dissectors

    from ..pipeline import Pipeline
    from ..policy.config import ConfigError, default_config, load_config

    def fail(message: str) -> int:
        print(f"dicom-sensor: {message}", file=sys.stderr)
        return EXIT_FAIL

    try:
        config = load_config(args.config, args.state_dir) if args.config else default_config()
    except ConfigError as exc:
        return fail(str(exc))
    interfaces: list[str] = args.interface
    set_quiet(args.quiet)
    # Everything imported later must be imported while we can still read it: an
    # unprivileged user may not be able to read the interpreter's library.
    from ..outputs import files, jsonl, metrics, serve, syslog  # noqa: F401

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
        sinks = open_sinks(args)
    except OSError as exc:
        return fail(f"cannot write output: {exc.strerror}: {exc.filename}")
    pipeline = Pipeline(
        load_dissectors(),
        associations=sinks.get("associations"),
        events=sinks.get("events"),
        policy_config=config,
    )
    pipeline.report = report_to_log
    attach_sinks(pipeline, sinks)
    if args.alert_pcap:
        pipeline.keep_alert_packets(args.alert_pcap, alert_pcap_limits(args))
    drops: dict[str, dict[str, int]] = {}
    if args.metrics_listen:
        from ..outputs.serve import ListenError, serve_metrics

        try:
            serve_metrics(pipeline, args.metrics_listen, args.tls_cert, args.tls_key, drops)
        except ListenError as exc:
            return fail(str(exc))
    signals = Signals()
    signals.install()
    log(
        "capture.started",
        interfaces=interfaces,
        uid=os.getuid(),
        config=config.source,
        metrics=args.metrics_listen,
        metrics_url=metrics_url(args),
        notes=list(config.notes),
    )
    log_warnings(pipeline, args, config)
    live_loop(pipeline, sources, signals, drops, args, sinks)
    pipeline.finish()
    for sink in sinks.values():
        sink.close()
    pipeline.counters.packets = totals(sources)[0]
    drops.update(interface_drops(sources))
    write_state(pipeline, args, drops)
    log(
        "capture.stopped",
        packets=pipeline.counters.packets,
        **stopped_drops(drops),
        associations=sum(pipeline.counters.associations.values()),
        **alert_pcap_log(pipeline.live_pcaps),
        **state_log(pipeline),
    )
    return EXIT_OK


def state_log(pipeline: Any) -> dict[str, Any]:
    """capture.stopped field naming the per-address state bounds that bit, if any did."""
    from ..outputs.metrics import state_limited

    bitten = {table: n for table, n in state_limited(pipeline).items() if n}
    return {"state_limited": bitten} if bitten else {}


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


def add_capture_parser(sub: Any, add_metrics_endpoint: Callable[[Any], Any]) -> None:
    """Register `capture` with the CLI's subparsers."""
    p = sub.add_parser(
        "capture",
        help="capture live from one or more interfaces (TAP, span)",
        description="Capture live from one or more interfaces (TAP, span port).",
    )
    g = p.add_argument_group("input")
    g.add_argument(
        "-i",
        "--interface",
        action="append",
        required=True,
        metavar="IFACE",
        help="interface to capture on (repeat for several)",
    )
    g.add_argument("-c", "--config", metavar="FILE", help="zone and rule config (YAML)")
    g.add_argument(
        "--state-dir",
        metavar="DIR",
        help="where a relative baseline.state_file lies (the unit passes its StateDirectory)",
    )
    g = p.add_argument_group("outputs")
    g.add_argument("--associations", metavar="PATH", help="association records, JSON lines")
    g.add_argument("--events", metavar="PATH", help="alert and anomaly events, JSON lines")
    add_format_options(g)
    g.add_argument("--inventory", metavar="PATH", help="DICOM nodes, JSON (rewritten every minute)")
    g.add_argument("--inventory-csv", metavar="PATH", help="DICOM nodes, CSV")
    g.add_argument("--metrics", metavar="PATH", help="Prometheus text file, rewritten every minute")
    g.add_argument(
        "--rotate-mb",
        type=float,
        default=0,
        metavar="MIB",
        help="rotate the line outputs (records, events, dicom.log) at this size",
    )
    g.add_argument(
        "--rotate-seconds",
        type=float,
        default=0,
        metavar="SECONDS",
        help="rotate the line outputs at this age",
    )
    g.add_argument("-q", "--quiet", action="store_true", help="log only warnings and errors")
    add_metrics_endpoint(p)
    add_alert_pcap_group(p)
    g = p.add_argument_group("capture")
    g.add_argument(
        "--snaplen",
        type=int,
        default=65535,
        metavar="BYTES",
        help="bytes kept per packet (default 65535)",
    )
    g.add_argument(
        "--buffer-mb",
        type=int,
        default=64,
        metavar="MIB",
        help="kernel capture buffer in MiB (default 64)",
    )
    g.add_argument(
        "--no-promisc", action="store_true", help="do not put the interface in promiscuous mode"
    )
    g.add_argument("--bpf", metavar="FILTER", help="extra BPF filter, ANDed with 'tcp'")
    g.add_argument(
        "--prefilter",
        choices=("all", "ports"),
        default="all",
        help="kernel filter: all of TCP (default); or heads, tiny payloads and the followed "
        "ports, reinstalled as services appear (less CPU on a span port; a service off "
        "--dicom-port loses packets around each reinstall, see README)",
    )
    g.add_argument(
        "--dicom-port",
        type=int,
        action="append",
        default=[],
        metavar="PORT",
        help="a port admitted from the start besides 104, 11112 and 4242 (repeat for several)",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="capture processes sharing the interfaces in a PACKET_FANOUT group",
    )
    g = p.add_argument_group("privileges")
    g.add_argument("--user", metavar="NAME", help="drop to this user once the capture is open")
    g.add_argument(
        "--no-root", action="store_true", help="refuse to write outputs or serve metrics as root"
    )
    p.set_defaults(func=run_capture, subparser=p)
