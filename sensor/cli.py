"""The ``dicom-sensor`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

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


def _progress_bar(enabled: bool, total: int) -> tuple[object | None, object]:
    """A tqdm bar over bytes read when stderr is a terminal; else nothing."""
    if not enabled or total <= 0 or not sys.stderr.isatty():
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, desc="reading", leave=False, file=sys.stderr)
    return bar, bar


def run_read(
    paths: Sequence[str],
    associations: str | None,
    events: str | None,
    metrics: str | None,
    progress: bool = True,
    summary: bool = True,
) -> int:
    """Read captures and write the requested outputs; the exit code."""
    from dissectors.registry import load_dissectors

    from .capture import CaptureError, OfflineCapture
    from .jsonl import JsonLines
    from .pipeline import Pipeline
    from .summary import write_summary

    if paths.count("-") > 1:
        return _fail("standard input ('-') can be given only once")
    try:
        captures = [OfflineCapture(path) for path in paths]
    except CaptureError as exc:
        return _fail(str(exc))
    sinks: dict[str, JsonLines] = {}
    try:
        if associations:
            sinks["associations"] = JsonLines(associations)
        if events:
            sinks["events"] = JsonLines(events)
        if metrics and metrics != "-":
            Path(metrics).touch()
    except OSError as exc:
        for sink in sinks.values():
            sink.close()
        return _fail(f"cannot write output: {exc.strerror}: {exc.filename}")
    pipeline = Pipeline(
        load_dissectors(), associations=sinks.get("associations"), events=sinks.get("events")
    )
    started = time.monotonic()
    total = sum(3 * c.size for c in captures)
    bar, _ = _progress_bar(progress, total)
    done = 0
    try:
        for capture in captures:
            last = 0

            def advance(position: int) -> None:
                nonlocal last
                if bar is not None and position >= last:
                    bar.update(position - last)  # type: ignore[attr-defined]
                    last = position
                elif bar is not None:
                    last = position

            try:
                pipeline.read(capture, advance if bar is not None else None)
            except CaptureError as exc:
                return _fail(str(exc))
            done += capture.size
        pipeline.finish()
    except KeyboardInterrupt:
        pipeline.finish()
        print("dicom-sensor: interrupted; open associations flushed", file=sys.stderr)
    finally:
        if bar is not None:
            bar.close()  # type: ignore[attr-defined]
        for sink in sinks.values():
            sink.close()
    elapsed = time.monotonic() - started
    if metrics:
        from .metrics import exposition

        text = exposition(pipeline)
        if metrics == "-":
            sys.stdout.buffer.write(text)
            sys.stdout.flush()
        else:
            tmp = f"{metrics}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(text)
            os.replace(tmp, metrics)
    if summary:
        outputs = {k: v for k, v in (("associations", associations), ("events", events),
                                     ("metrics", metrics)) if v}  # fmt: skip
        write_summary(pipeline, elapsed, sys.stderr, outputs)
    return EXIT_OK


def _cmd_read(args: argparse.Namespace) -> int:
    return run_read(
        args.files,
        args.associations,
        args.events,
        args.metrics,
        progress=not args.no_progress,
        summary=not args.quiet,
    )


def bundled_captures() -> list[Path]:
    """The real-peer captures under pcaps/ in a source checkout."""
    root = Path(__file__).resolve().parent.parent / "pcaps"
    return sorted(root.glob("*/capture.pcap*"))


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
    return run_read(
        [str(p) for p in captures],
        str(out / "associations.jsonl"),
        str(out / "events.jsonl"),
        str(out / "metrics.prom"),
        progress=False,
    )


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
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    p.set_defaults(func=_cmd_read)

    p = sub.add_parser("dissectors", help="list the installed protocol dissectors")
    p.set_defaults(func=_cmd_dissectors)

    p = sub.add_parser("demo", help="read the bundled captures with the default config")
    p.add_argument("--out", default="out", help="folder for the outputs (default: out)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
