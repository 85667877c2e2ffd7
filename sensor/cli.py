"""The ``dicom-sensor`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from . import __version__

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


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """What ``read`` writes and how it behaves."""

    associations: str | None = None
    events: str | None = None
    metrics: str | None = None
    inventory: str | None = None
    inventory_csv: str | None = None
    config: str | None = None
    progress: bool = True
    summary: bool = True
    metrics_listen: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    hold: bool = False
    events_format: str = "ecs"
    zeek_log: str | None = None
    zeek_format: str = "tsv"


def _write_file(path: str, write: Callable[[TextIO], object]) -> None:
    """Write a whole output atomically (``-`` is standard output)."""
    if path == "-":
        write(sys.stdout)
        sys.stdout.flush()
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        write(fh)
    os.replace(tmp, path)


def run_read(paths: Sequence[str], opts: ReadOptions) -> int:
    """Read captures and write the requested outputs; the exit code."""
    from dissectors.registry import load_dissectors

    from .capture import CaptureError, OfflineCapture
    from .config import ConfigError, default_config, load_config
    from .jsonl import JsonLines
    from .pipeline import Pipeline
    from .summary import write_summary

    try:
        config = load_config(opts.config) if opts.config else default_config()
    except ConfigError as exc:
        return _fail(str(exc))
    if list(paths).count("-") > 1:
        return _fail("standard input ('-') can be given only once")
    try:
        captures = [OfflineCapture(path) for path in paths]
    except CaptureError as exc:
        return _fail(str(exc))
    sinks: dict[str, JsonLines] = {}
    try:
        if opts.associations:
            sinks["associations"] = JsonLines(opts.associations)
        if opts.events:
            from .outputs.eve import EveLines

            sink_class = EveLines if opts.events_format == "eve" else JsonLines
            sinks["events"] = sink_class(opts.events)
        if opts.zeek_log:
            from .outputs.zeek import ZeekLog

            sinks["zeek"] = ZeekLog(opts.zeek_log, opts.zeek_format)
        for path in (opts.metrics, opts.inventory, opts.inventory_csv):
            if path and path != "-":
                Path(path).touch()
    except OSError as exc:
        for sink in sinks.values():
            sink.close()
        return _fail(f"cannot write output: {exc.strerror}: {exc.filename}")
    pipeline = Pipeline(
        load_dissectors(),
        associations=sinks.get("associations"),
        events=sinks.get("events"),
        policy_config=config,
    )
    if "zeek" in sinks:
        pipeline.record_sinks.append(sinks["zeek"].write)
    if opts.metrics_listen:
        from .serve import ListenError, serve_metrics

        try:
            serve_metrics(pipeline, opts.metrics_listen, opts.tls_cert, opts.tls_key)
        except ListenError as exc:
            for sink in sinks.values():
                sink.close()
            return _fail(str(exc))
    if pipeline.policy.baseline.load_error:
        print(f"dicom-sensor: {pipeline.policy.baseline.load_error}", file=sys.stderr)
    started = time.monotonic()
    bar = None
    if opts.progress and sys.stderr.isatty():
        from tqdm import tqdm

        total = sum(2 * c.size for c in captures)
        bar = tqdm(total=total, unit="B", unit_scale=True, desc="reading", leave=False)
    failure = None
    try:
        for capture in captures:
            done = [0]

            def advance(position: int, done: list[int] = done) -> None:
                if bar is not None and position > done[0]:
                    bar.update(position - done[0])
                done[0] = position if position > done[0] else 0

            try:
                pipeline.read(capture, advance if bar is not None else None)
            except CaptureError as exc:
                failure = str(exc)
                break
    except KeyboardInterrupt:
        print("dicom-sensor: interrupted; flushing open associations", file=sys.stderr)
    finally:
        pipeline.finish()
        if bar is not None:
            bar.close()
        for sink in sinks.values():
            sink.close()
    if failure is not None:
        return _fail(failure)
    elapsed = time.monotonic() - started
    if opts.metrics:
        from .metrics import exposition

        text = exposition(pipeline).decode()
        _write_file(opts.metrics, lambda fh: fh.write(text))
    if opts.inventory:
        _write_file(opts.inventory, pipeline.policy.inventory.write_json)
    if opts.inventory_csv:
        _write_file(opts.inventory_csv, pipeline.policy.inventory.write_csv)
    if opts.summary:
        outputs = {
            "associations": opts.associations,
            "events": opts.events,
            "metrics": opts.metrics,
            "inventory": opts.inventory,
            "inventory (CSV)": opts.inventory_csv,
            "Zeek dicom.log": opts.zeek_log,
        }
        write_summary(pipeline, elapsed, sys.stderr, {k: v for k, v in outputs.items() if v})
    if opts.hold and opts.metrics_listen:
        _hold(opts.metrics_listen)
    return EXIT_OK


def _hold(listen: str) -> None:
    """Keep serving /metrics after the read until SIGTERM or SIGINT."""
    import signal
    import threading

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(
        f"dicom-sensor: serving metrics on http://{listen}/metrics until stopped", file=sys.stderr
    )
    stop.wait()


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
    )
    return run_read(args.files, opts)


def _cmd_check_config(args: argparse.Namespace) -> int:
    from .config import ConfigError, default_config, describe, load_config

    try:
        config = load_config(args.file) if args.file else default_config()
    except ConfigError as exc:
        return _fail(str(exc))
    print("\n".join(describe(config)))
    return EXIT_OK


def bundled_captures() -> list[Path]:
    """The real-peer captures under pcaps/ in a source checkout."""
    root = Path(__file__).resolve().parent.parent / "pcaps"
    return sorted({*root.glob("**/*.pcap"), *root.glob("**/*.pcapng")})


def _cmd_demo(args: argparse.Namespace) -> int:
    captures = bundled_captures()
    if not captures:
        return _fail("no bundled captures found under pcaps/ (run from a source checkout)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"dicom-sensor demo: reading {len(captures)} bundled captures from pcaps/ "
        "with the embedded default config",
        file=sys.stderr,
    )
    opts = ReadOptions(
        associations=str(out / "associations.jsonl"),
        events=str(out / "events.jsonl"),
        metrics=str(out / "metrics.prom"),
        inventory=str(out / "inventory.json"),
        inventory_csv=str(out / "inventory.csv"),
        progress=False,
    )
    return run_read([str(p) for p in captures], opts)


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
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    p.set_defaults(func=_cmd_read)

    from .live import add_capture_parser

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
