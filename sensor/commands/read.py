"""`dicom-sensor read` and `demo`: captures from files or standard input, outputs at the end."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..outputs.files import write_file

EXIT_OK = 0
EXIT_USAGE = 2  # bad arguments, a missing or unreadable capture, a bad config


def fail(message: str) -> int:
    """One line on stderr; the usage exit code."""
    print(f"dicom-sensor: {message}", file=sys.stderr)
    return EXIT_USAGE


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
    alert_pcap: str | None = None
    alert_pcap_max_files: int = 1000
    alert_pcap_max_association_kb: int = 4096
    alert_pcap_max_total_mb: int = 256
    alert_pcap_max_buffer_mb: int = 32
    state_dir: str | None = None
    update_baseline: bool = False  # save the learned baseline (read leaves it alone)
    syslog: bool = False  # send alerts to the config's collector (read does not)
    bpf: str | None = None


def run_read(paths: Sequence[str], opts: ReadOptions) -> int:
    """Read captures and write the requested outputs; the exit code."""
    from dissectors.registry import load_dissectors

    from ..capture.errors import CaptureError
    from ..capture.offline import OfflineCapture
    from ..outputs.jsonl import JsonLines
    from ..outputs.summary import write_summary
    from ..pipeline import Pipeline
    from ..policy.config import ConfigError, default_config, load_config

    try:
        config = load_config(opts.config, opts.state_dir) if opts.config else default_config()
    except ConfigError as exc:
        return fail(str(exc))
    if opts.syslog and config.syslog is None:
        return fail("--syslog: the config names no alerts.syslog collector")
    if opts.update_baseline and config.state_file is None:
        return fail("--update-baseline: the config names no baseline.state_file")
    if not opts.syslog:
        # Months-old events must not reach a SIEM stamped with today's date unless asked.
        config = dataclasses.replace(config, syslog=None)
    if list(paths).count("-") > 1:
        return fail("standard input ('-') can be given only once")
    try:
        captures = [OfflineCapture(path, opts.bpf) for path in paths]
    except CaptureError as exc:
        return fail(str(exc))
    sinks: dict[str, JsonLines] = {}
    try:
        if opts.associations:
            sinks["associations"] = JsonLines(opts.associations)
        if opts.events:
            from ..outputs.eve import EveLines

            sink_class = EveLines if opts.events_format == "eve" else JsonLines
            sinks["events"] = sink_class(opts.events)
        if opts.zeek_log:
            from ..outputs.zeek import ZeekLog

            sinks["zeek"] = ZeekLog(opts.zeek_log, opts.zeek_format)
        for path in (opts.metrics, opts.inventory, opts.inventory_csv):
            if path and path != "-":
                _check_writable(path)  # written at the end: fail now, and leave nothing
    except OSError as exc:
        for sink in sinks.values():
            sink.close()
        return fail(f"cannot write output: {exc.strerror}: {exc.filename}")
    pipeline = Pipeline(
        load_dissectors(),
        associations=sinks.get("associations"),
        events=sinks.get("events"),
        policy_config=config,
    )
    pipeline.keep_baseline = opts.update_baseline
    if "zeek" in sinks:
        pipeline.record_sinks.append(sinks["zeek"].write)
        sinks["zeek"].watch(pipeline.counters.output_failures, pipeline.report)
    if opts.alert_pcap:
        from ..outputs.alertpcap import AlertPcapLimits, AlertPcaps

        limits = AlertPcapLimits(
            max(1, opts.alert_pcap_max_files),
            max(1, opts.alert_pcap_max_association_kb) << 10,
            max(1, opts.alert_pcap_max_total_mb) << 20,
            max(1, opts.alert_pcap_max_buffer_mb) << 20,
        )
        pipeline.alert_pcaps = AlertPcaps(opts.alert_pcap, limits)
        if any(capture.is_stdin for capture in captures):
            # Standard input is read once: its packets are kept as they pass, as live.
            pipeline.keep_alert_packets(opts.alert_pcap, limits).index_now = False
    if opts.metrics_listen:
        from ..outputs.serve import ListenError, serve_metrics

        try:
            serve_metrics(pipeline, opts.metrics_listen, opts.tls_cert, opts.tls_key)
        except ListenError as exc:
            for sink in sinks.values():
                sink.close()
            return fail(str(exc))
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
        return fail(failure)
    if pipeline.alert_pcaps is not None:
        try:
            _write_alert_pcaps(pipeline, captures)
        except (OSError, CaptureError) as exc:
            return fail(f"--alert-pcap: {exc}")
    elapsed = time.monotonic() - started
    try:
        if opts.metrics:
            from ..outputs.metrics import exposition

            text = exposition(pipeline).decode()
            write_file(opts.metrics, lambda fh: fh.write(text))
        if opts.inventory:
            write_file(opts.inventory, pipeline.policy.inventory.write_json)
        if opts.inventory_csv:
            write_file(opts.inventory_csv, pipeline.policy.inventory.write_csv)
    except OSError as exc:
        return fail(f"cannot write output: {exc.strerror}: {exc.filename}")
    if pipeline.counters.packets == 0:
        print("dicom-sensor: the captures held no packets", file=sys.stderr)
    if opts.summary:
        outputs = {
            "associations": opts.associations,
            "events": opts.events,
            "metrics": opts.metrics,
            "inventory": opts.inventory,
            "inventory (CSV)": opts.inventory_csv,
            "Zeek dicom.log": opts.zeek_log,
            "alert pcaps": opts.alert_pcap,
        }
        write_summary(pipeline, elapsed, sys.stderr, {k: v for k, v in outputs.items() if v})
    if opts.hold and opts.metrics_listen:
        _hold(opts.metrics_listen, "https" if opts.tls_cert else "http")
    return EXIT_OK


def _write_alert_pcaps(pipeline: Any, captures: Sequence[Any]) -> None:
    """A further pass over each file for the alerting associations; then write their pcaps."""
    from ..capture.bpf import all_tcp_filter
    from ..capture.decode import SUPPORTED_LINKTYPES, decoder_for
    from ..capture.offline import OfflineCapture, ReadResult

    pcaps = pipeline.alert_pcaps
    if pcaps:
        for capture in captures:
            if capture.is_stdin:
                continue  # its packets were kept as they passed (livepcap.py)
            again = OfflineCapture(capture.path)
            linktype = again.linktype
            bpf = all_tcp_filter(linktype) if linktype in SUPPORTED_LINKTYPES else None
            pcaps.feed(again.packets(bpf, ReadResult()), decoder_for(linktype), linktype)
    pcaps.write()
    if pipeline.live_pcaps is not None:
        pipeline.live_pcaps.write_index()


def _check_writable(path: str) -> None:
    """OSError unless ``path`` could be written (replaced) by this user; creates nothing."""
    import errno
    import os

    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise OSError(errno.EISDIR, "Is a directory", path)
    if not os.path.isdir(directory):
        raise OSError(errno.ENOENT, "No such file or directory", path)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OSError(errno.EACCES, "Permission denied", path)


def _hold(listen: str, scheme: str) -> None:
    """Keep serving /metrics after the read until SIGTERM or SIGINT."""
    import signal
    import threading

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(
        f"dicom-sensor: serving metrics on {scheme}://{listen}/metrics until stopped",
        file=sys.stderr,
    )
    stop.wait()


def bundled_captures() -> list[Path]:
    """The real-peer captures under pcaps/ in a source checkout."""
    root = Path(__file__).resolve().parents[2] / "pcaps"
    return sorted({*root.glob("**/*.pcap"), *root.glob("**/*.pcapng")})


def run_demo(out_dir: str) -> int:
    captures = bundled_captures()
    if not captures:
        return fail("no bundled captures found under pcaps/ (run from a source checkout)")
    out = Path(out_dir)
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
