"""Option values checked before anything is opened: one line and exit 2 for a bad one.

Nothing the sensor reads (a capture, the config, a TLS file) may be named as an output,
and no two outputs may share a file: either would destroy what is there.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

MIN_SNAPLEN = 96  # Ethernet + 802.1Q + IPv6 + TCP headers + the 12 bytes a head test reads
MAX_SNAPLEN = 262_144  # libpcap's MAXIMUM_SNAPLEN

# (option, attribute) of every file output, in the order the help lists them.
OUTPUTS = (
    ("--associations", "associations"),
    ("--events", "events"),
    ("--zeek-log", "zeek_log"),
    ("--metrics", "metrics"),
    ("--inventory", "inventory"),
    ("--inventory-csv", "inventory_csv"),
)


def _identity(path: str) -> tuple[str, object]:
    """What makes two paths the same file: (device, inode) if it exists, else the real path."""
    try:
        st = os.stat(path)
    except OSError:
        return ("path", os.path.realpath(path))
    return ("inode", (st.st_dev, st.st_ino))


def _inputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(what, path) of every file the command reads."""
    out = [(f"input {p}", p) for p in getattr(args, "files", None) or () if p != "-"]
    for option, attr in (("--config", "config"), ("--tls-cert", "tls_cert"),
                         ("--tls-key", "tls_key")):  # fmt: skip
        value = getattr(args, attr, None)
        if value:
            out.append((option, value))
    return out


def _check_paths(args: argparse.Namespace) -> str | None:
    inputs = {_identity(path): what for what, path in _inputs(args)}
    seen: dict[tuple[str, object], str] = {}
    for option, attr in OUTPUTS:
        path = getattr(args, attr, None)
        if not path or path == "-":
            continue  # several outputs may share standard output, one line each
        ident = _identity(path)
        if ident in inputs:
            return f"{option} {path}: is the sensor's {inputs[ident]}; it would be overwritten"
        if ident in seen:
            return f"{seen[ident]} and {option} name the same file {path}"
        seen[ident] = option
    return None


def add_alert_pcap_group(parser: argparse.ArgumentParser) -> None:
    """--alert-pcap and its bounds (read and capture)."""
    g = parser.add_argument_group("alert pcaps")
    g.add_argument(
        "--alert-pcap",
        metavar="DIR",
        help="write each alerting association's packets (data sets and secrets removed) to "
        "DIR, one pcap per association named by start time and Community ID, plus index.jsonl",
    )
    g.add_argument(
        "--alert-pcap-max-files", type=int, default=1000, metavar="N",
        help="at most N alert pcaps (default 1000)",
    )  # fmt: skip
    g.add_argument(
        "--alert-pcap-max-association-kb", type=int, default=4096, metavar="KB",
        help="at most KB KiB per alert pcap, the head of the association first (default 4096)",
    )  # fmt: skip
    g.add_argument(
        "--alert-pcap-max-total-mb", type=int, default=256, metavar="MB",
        help="at most MB MiB of alert pcaps in all (default 256)",
    )  # fmt: skip
    g.add_argument(
        "--alert-pcap-max-buffer-mb", type=int, default=32, metavar="MB",
        help="live and standard input: at most MB MiB of packets kept in memory for "
        "associations that have not alerted (default 32)",
    )  # fmt: skip


def alert_pcap_limits(args: argparse.Namespace) -> object:
    """The AlertPcapLimits the --alert-pcap-max-* options ask for."""
    from ..outputs.alertpcap import AlertPcapLimits

    return AlertPcapLimits(
        max_files=args.alert_pcap_max_files,
        max_association_bytes=args.alert_pcap_max_association_kb << 10,
        max_total_bytes=args.alert_pcap_max_total_mb << 20,
        max_buffer_bytes=args.alert_pcap_max_buffer_mb << 20,
    )


def check_options(args: argparse.Namespace) -> str | None:
    """The first problem with the option values, as one line; None if they are usable."""
    cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    if bool(cert) != bool(key):
        return "--tls-cert and --tls-key go together: give both or neither"
    if cert and not getattr(args, "metrics_listen", None):
        return "--tls-cert and --tls-key serve /metrics: give --metrics-listen too"
    if getattr(args, "hold", False) and not args.metrics_listen:
        return "--hold keeps serving /metrics: give --metrics-listen too"
    workers = getattr(args, "workers", None)
    if workers is not None and workers < 1:
        return f"--workers {workers}: must be at least 1"
    snaplen = getattr(args, "snaplen", None)
    if snaplen is not None and not MIN_SNAPLEN <= snaplen <= MAX_SNAPLEN:
        return (
            f"--snaplen {snaplen}: must be {MIN_SNAPLEN} to {MAX_SNAPLEN} bytes "
            "(less shows no TCP payload)"
        )
    buffer_mb = getattr(args, "buffer_mb", None)
    if buffer_mb is not None and buffer_mb < 1:
        return f"--buffer-mb {buffer_mb}: must be at least 1 MiB"
    for option, attr in (("--rotate-mb", "rotate_mb"), ("--rotate-seconds", "rotate_seconds")):
        value = getattr(args, attr, None)
        if value is not None and not value >= 0:
            return f"{option} {value:g}: must be 0 (off) or more"
    for option in ("files", "association_kb", "total_mb", "buffer_mb"):
        value = getattr(args, f"alert_pcap_max_{option}", None)
        if value is not None and value < 1:
            name = option.replace("_", "-")
            return f"--alert-pcap-max-{name} {value}: must be at least 1"
    for port in getattr(args, "dicom_port", None) or ():
        if not 0 < port < 65536:
            return f"--dicom-port {port}: must be 1 to 65535"
    bpf = getattr(args, "bpf", None)
    shifting = re.search(r"\b(vlan|mpls|pppoes|geneve)\b", bpf or "")
    if shifting:
        return (
            f"--bpf: {shifting[1]!r} shifts the packet offsets of the sensor's own filter, "
            "which already looks under 802.1Q and QinQ tags; leave it out"
        )
    if bpf:
        from ..capture.bpf import user_filter_problem

        problem = user_filter_problem(bpf)
        if problem is not None:
            return problem
    interfaces = getattr(args, "interface", None) or []
    for i, name in enumerate(interfaces):
        if name in interfaces[:i]:
            return f"-i {name}: interface given twice"
    return _check_paths(args)


def add_format_options(group: Any) -> None:
    """--events-format, --zeek-log and --zeek-format: the same for `read` and `capture`."""
    group.add_argument(
        "--events-format",
        choices=("ecs", "eve"),
        default="ecs",
        help="--events as ECS JSON (default) or Suricata EVE JSON",
    )
    group.add_argument("--zeek-log", metavar="PATH", help="Zeek-style dicom.log (- = stdout)")
    group.add_argument(
        "--zeek-format",
        choices=("tsv", "json"),
        default="tsv",
        help="dicom.log as Zeek's TSV with headers (default) or Zeek's JSON",
    )
