"""The human summary printed on stderr at the end of a read."""

from __future__ import annotations

from collections import Counter
from typing import Any, TextIO


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counter.most_common()) or "none"


def write_summary(pipeline: Any, elapsed: float, out: TextIO, outputs: dict[str, str]) -> None:
    """Associations by result and end, top talkers, anomalies, throughput, where outputs went."""
    c = pipeline.counters
    stats = pipeline.engine.stats
    rate = c.packets / elapsed if elapsed > 0 else 0.0
    files = "file" if pipeline.files == 1 else "files"
    print(
        f"dicom-sensor: read {pipeline.files} {files}, {c.packets:,} packets "
        f"({stats.packets:,} inspected) in {elapsed:.2f} s, {rate:,.0f} packets/s",
        file=out,
    )
    results = pipeline.results()
    ends: Counter[str] = Counter()
    for (_, end, _, _), n in c.associations.items():
        ends[end] += n
    total = sum(results.values())
    print(f"associations: {total} ({_counts(results)}); ended: {_counts(ends)}", file=out)
    if pipeline.talkers:
        print("top talkers (requestor -> acceptor:port, associations, P-DATA bytes):", file=out)
        top = sorted(
            pipeline.talkers.items(), key=lambda kv: (-kv[1].pdata_bytes, -kv[1].associations)
        )
        for (src, dst, port), talker in top[:10]:
            volume = _human_bytes(talker.pdata_bytes)
            print(f"  {src} -> {dst}:{port}  {talker.associations}  {volume}", file=out)
    other: Counter[str] = Counter()
    for (protocol, _, _), n in c.plugin_connections.items():
        other[protocol] += n
    for protocol, n in sorted(other.items()):
        messages = c.plugin_events.get((protocol, "message"), 0)
        print(f"{protocol}: {n} connections, {messages} messages", file=out)
    dimse: Counter[str] = Counter()
    for (name, _), n in c.dimse.items():
        dimse[name] += n
    if dimse:
        print(f"DIMSE: {_counts(dimse)}", file=out)
    print(f"anomalies: {_counts(c.anomalies)}", file=out)
    alerts: Counter[str] = Counter()
    for (rule, severity), n in c.alerts.items():
        alerts[f"{rule} [{severity}]"] += n
    print(f"alerts: {_counts(alerts)}", file=out)
    nodes = pipeline.policy.inventory.nodes
    if nodes:
        print(f"DICOM nodes seen: {len(nodes)}", file=out)
    print(f"config: {pipeline.policy_config.source}", file=out)
    for note in pipeline.policy_config.notes:
        print(f"note: {note}", file=out)
    limited = c.move_decisions.get("limit", 0)
    if limited:
        print(
            f"C-MOVEs decided early (more than 8,192 awaiting their destination): {limited}",
            file=out,
        )
    uncompared = stats.stream.uncompared_bytes
    if uncompared or stats.stream.unacked_dropped_bytes:
        cfg = pipeline.engine.config
        keep = (
            f"{_human_bytes(cfg.reassembly_max_unacked_bytes)} kept per direction, "
            f"{_human_bytes(cfg.reassembly_max_unacked_total)} in all"
        )
        print(
            f"retransmitted bytes not compared with the decoded copy: {uncompared:,}; "
            f"delivered bytes let go unacknowledged ({keep}): "
            f"{stats.stream.unacked_dropped_bytes:,}",
            file=out,
        )
    evicted = stats.evicted
    if evicted:
        print(f"flows evicted to stay within limits: {evicted}", file=out)
    pf = pipeline.followed.stats
    print(
        f"followed: {pf.services} DICOM services, {pf.connections} single connections, "
        f"{pf.ports} prefilter ports",
        file=out,
    )
    if pf.late_flows:
        print(
            f"live flows on a port admitted only at their head (start lost): {pf.late_flows}",
            file=out,
        )
    from .metrics import state_limited

    bitten = {k: v for k, v in state_limited(pipeline).items() if v}
    if bitten:
        said = ", ".join(f"{k} {v}" for k, v in bitten.items())
        print(f"state bounds that bit (associations still recorded): {said}", file=out)
    if pf.tiny_heads:
        print(f"connections followed from a 1-9 byte first payload: {pf.tiny_heads}", file=out)
    for pcaps in (getattr(pipeline, "alert_pcaps", None), getattr(pipeline, "live_pcaps", None)):
        limited = {k: v for k, v in pcaps.stats.limited.items() if v} if pcaps else {}
        if limited:
            said = ", ".join(f"{k} {v}" for k, v in sorted(limited.items()))
            print(f"alert pcap bounds that bit (packets left out): {said}", file=out)
    for note in pipeline.notes:
        print(f"note: {note}", file=out)
    for cut in pipeline.cut_offs:
        print(f"capture cut off, read up to the cut: {cut}", file=out)
    for what, where in outputs.items():
        print(f"{what}: {where}", file=out)
