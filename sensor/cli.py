"""The ``dicom-sensor`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import __version__
from .commands.capture import add_capture_parser
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
    )
    return run_read(args.files, opts)


def _cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(args.out)


def _cmd_check_config(args: argparse.Namespace) -> int:
    from .policy.config import ConfigError, default_config, describe, load_config

    try:
        config = load_config(args.file) if args.file else default_config()
    except ConfigError as exc:
        return _fail(str(exc))
    print("\n".join(describe(config)))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="dicom-sensor", description="Passive monitor for DICOM networks."
    )
    parser.add_argument("--version", action="version", version=f"dicom-sensor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("read", help="read pcap/pcapng captures (or - for stdin) offline")
    p.add_argument("files", nargs="+", metavar="FILE", help="capture files; - reads standard input")
    p.add_argument(
        "--associations", metavar="PATH", help="association records, JSON lines (- = stdout)"
    )
    p.add_argument(
        "--events", metavar="PATH", help="alert and anomaly events, JSON lines (- = stdout)"
    )
    p.add_argument(
        "--metrics", metavar="PATH", help="Prometheus text exposition written at the end"
    )
    p.add_argument("--inventory", metavar="PATH", help="DICOM nodes seen, as JSON")
    p.add_argument("--inventory-csv", metavar="PATH", help="DICOM nodes seen, as CSV")
    p.add_argument("-c", "--config", metavar="FILE", help="zone and rule config (YAML)")
    p.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve /metrics while reading (e.g. 127.0.0.1:9464)",
    )
    p.add_argument(
        "--tls-cert", metavar="FILE", help="serve /metrics over TLS with this certificate"
    )
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key")
    p.add_argument(
        "--hold",
        action="store_true",
        help="with --metrics-listen: keep serving after the read until SIGTERM/SIGINT",
    )
    p.add_argument(
        "--events-format",
        choices=("ecs", "eve"),
        default="ecs",
        help="--events as ECS JSON (default) or Suricata EVE JSON",
    )
    p.add_argument("--zeek-log", metavar="PATH", help="Zeek-style dicom.log (- = stdout)")
    p.add_argument(
        "--zeek-format",
        choices=("tsv", "json"),
        default="tsv",
        help="dicom.log as Zeek's TSV with headers (default) or Zeek's JSON",
    )
    p.add_argument(
        "--alert-pcap",
        metavar="DIR",
        help="write each alerting association's packets (data sets and secrets removed) to "
        "DIR, one pcap per association named by start time and Community ID, plus index.jsonl",
    )
    p.add_argument(
        "--alert-pcap-max-files", type=int, default=1000, metavar="N",
        help="at most N alert pcaps (default 1000)",
    )  # fmt: skip
    p.add_argument(
        "--alert-pcap-max-association-kb", type=int, default=4096, metavar="KB",
        help="at most KB KiB per alert pcap, the head of the association first (default 4096)",
    )  # fmt: skip
    p.add_argument(
        "--alert-pcap-max-total-mb", type=int, default=256, metavar="MB",
        help="at most MB MiB of alert pcaps in all (default 256)",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    p.set_defaults(func=_cmd_read)

    add_capture_parser(sub)

    p = sub.add_parser("check-config", help="validate a config file and print its zone table")
    p.add_argument("file", nargs="?", help="the YAML config (default: the embedded default)")
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("dissectors", help="list the installed protocol dissectors")
    p.set_defaults(func=_cmd_dissectors)

    p = sub.add_parser("demo", help="read the bundled captures with the default config")
    p.add_argument("--out", default="out", help="folder for the outputs (default: out)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except BrokenPipeError:
        # Output piped into `head` and the like: not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return result


if __name__ == "__main__":
    sys.exit(main())
