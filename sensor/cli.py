"""The ``dicom-sensor`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .commands.capture import add_capture_parser
from .commands.options import add_alert_pcap_group, add_format_options, check_options
from .commands.read import ReadOptions, run_demo, run_read

EXIT_OK = 0
EXIT_USAGE = 2  # bad arguments, a missing or unreadable capture, a bad config


def _fail(message: str) -> int:
    print(f"dicom-sensor: {message}", file=sys.stderr)
    return EXIT_USAGE


def _cmd_dissectors(_: argparse.Namespace) -> int:
    from dissectors.registry import load_dissectors

    for dissector in load_dissectors():
        print(f"{dissector.name}\t{type(dissector).__module__}.{type(dissector).__qualname__}")
    return EXIT_OK


def _cmd_read(args: argparse.Namespace) -> int:
    opts = ReadOptions(
        associations=args.associations,
        events=args.events,
        metrics=args.metrics,
        inventory=args.inventory,
        inventory_csv=args.inventory_csv,
        config=args.config,
        progress=not args.no_progress,
        summary=not args.quiet,
        metrics_listen=args.metrics_listen,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        hold=args.hold,
        events_format=args.events_format,
        zeek_log=args.zeek_log,
        zeek_format=args.zeek_format,
        alert_pcap=args.alert_pcap,
        alert_pcap_max_files=args.alert_pcap_max_files,
        alert_pcap_max_association_kb=args.alert_pcap_max_association_kb,
        alert_pcap_max_total_mb=args.alert_pcap_max_total_mb,
        alert_pcap_max_buffer_mb=args.alert_pcap_max_buffer_mb,
        state_dir=args.state_dir,
        update_baseline=args.update_baseline,
        syslog=args.syslog,
        bpf=args.bpf,
    )
    return run_read(args.files, opts)


def _cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(args.out)


def _cmd_check_config(args: argparse.Namespace) -> int:
    from .policy.baseline import state_file_problem
    from .policy.config import ConfigError, default_config, describe, load_config

    try:
        config = load_config(args.file, args.state_dir) if args.file else default_config()
    except ConfigError as exc:
        return _fail(str(exc))
    if config.state_file is not None:
        problem = state_file_problem(config.state_file)
        if problem is not None:
            return _fail(f"{config.source}: baseline.state_file: {problem}")
    print("\n".join(describe(config)))
    return EXIT_OK


def _add_metrics_endpoint(p: argparse.ArgumentParser) -> Any:
    g = p.add_argument_group("metrics endpoint")
    g.add_argument(
        "--metrics-listen", metavar="HOST:PORT", help="serve /metrics (e.g. 127.0.0.1:9464)"
    )
    g.add_argument(
        "--tls-cert", metavar="FILE", help="serve /metrics over TLS with this PEM certificate"
    )
    g.add_argument("--tls-key", metavar="FILE", help="the certificate's PEM private key")
    return g


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="dicom-sensor", description="Passive monitor for DICOM networks."
    )
    parser.add_argument("--version", action="version", version=f"dicom-sensor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "read",
        help="read pcap/pcapng captures (or - for stdin) offline",
        description="Read pcap/pcapng captures (or - for standard input) offline.",
    )
    g = p.add_argument_group("input")
    g.add_argument("files", nargs="+", metavar="FILE", help="capture files; - reads standard input")
    g.add_argument("-c", "--config", metavar="FILE", help="zone and rule config (YAML)")
    g.add_argument("--bpf", metavar="FILTER", help="read only the packets this BPF filter admits")
    g.add_argument("--state-dir", metavar="DIR", help="where a relative baseline.state_file lies")
    g = p.add_argument_group("outputs")
    g.add_argument(
        "--associations", metavar="PATH", help="association records, JSON lines (- = stdout)"
    )
    g.add_argument(
        "--events", metavar="PATH", help="alert and anomaly events, JSON lines (- = stdout)"
    )
    add_format_options(g)
    g.add_argument(
        "--metrics", metavar="PATH", help="Prometheus text exposition written at the end"
    )
    g.add_argument("--inventory", metavar="PATH", help="DICOM nodes seen, as JSON")
    g.add_argument("--inventory-csv", metavar="PATH", help="DICOM nodes seen, as CSV")
    g.add_argument(
        "--update-baseline",
        action="store_true",
        help="save what was learned into the config's baseline.state_file (off by default)",
    )
    g.add_argument(
        "--syslog",
        action="store_true",
        help="send alerts to the config's alerts.syslog collector (off by default)",
    )
    g = _add_metrics_endpoint(p)
    g.add_argument(
        "--hold",
        action="store_true",
        help="with --metrics-listen: keep serving after the read until SIGTERM/SIGINT",
    )
    add_alert_pcap_group(p)
    g = p.add_argument_group("display")
    g.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    g.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    p.set_defaults(func=_cmd_read, subparser=p)

    add_capture_parser(sub, _add_metrics_endpoint)

    p = sub.add_parser(
        "check-config",
        help="validate a config file and print its zone table",
        description="Validate a config file and print its zone table and rules.",
    )
    p.add_argument("file", nargs="?", help="the YAML config (default: the embedded default)")
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="where a relative baseline.state_file lies (as for capture)",
    )
    p.set_defaults(func=_cmd_check_config, subparser=p)

    p = sub.add_parser("dissectors", help="list the installed protocol dissectors")
    p.set_defaults(func=_cmd_dissectors, subparser=p)

    p = sub.add_parser("demo", help="read the bundled captures with the default config")
    p.add_argument(
        "--out", metavar="DIR", default="out", help="folder for the outputs (default: out)"
    )
    p.set_defaults(func=_cmd_demo, subparser=p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args, extra = build_parser().parse_known_args(argv)
    if extra:
        # The subcommand's usage, not the top level's, for an option it does not know.
        args.subparser.error(f"unrecognized arguments: {' '.join(extra)}")
    problem = check_options(args)
    if problem is not None:
        return _fail(problem)
    try:
        result: int = args.func(args)
    except BrokenPipeError:
        # Output piped into `head` and the like: not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return result


if __name__ == "__main__":
    sys.exit(main())
