"""Prometheus metrics built at scrape time from the sensor's counters (no per-packet cost).

Label values come only from closed sets (results, ends, commands, status classes, reasons,
rule ids, severities) and from the zone names of the config, so cardinality is bounded
whatever the traffic. Every known label set is exported from the start, at zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from itertools import product
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from dissectors.base import CloseReason
from dissectors.dicom.constants import COMMAND_NAMES, StatusClass
from dissectors.dicom.errors import Reason

from .. import __version__
from ..capture.decode import DropReason
from ..counters import LOST_WITH_WORKERS, OUTPUTS
from ..flow.stream import StreamAnomaly
from ..flow.table import EngineAnomaly
from ..policy.catalogue import RULES
from ..policy.moves import MoveReason
from .alertpcap import Bound

RESULTS = ("accepted", "rejected", "no-response")
ENDS = ("released", "aborted", *(r.value for r in CloseReason))
STATUS_CLASSES = (*(c.label for c in StatusClass), "none")
DIRECTIONS = ("requestor", "acceptor")
ANOMALY_REASONS = (
    *(r.value for r in Reason),
    *(a.value for a in EngineAnomaly),
    StreamAnomaly.OVERLAP_MISMATCH.value,  # in a followed association (flow/stream.py)
)

STATE_TABLES = (
    "inventory-nodes",
    "inventory-values",
    "baseline-nodes",
    "baseline-values",
    "followed-services",
)


def state_limited(p: Any) -> dict[str, int]:
    """How often each per-address table's bound bit (label: a ``STATE_TABLES`` value)."""
    inventory = p.policy.inventory
    baseline = getattr(p.policy, "baseline", None)
    return {
        "inventory-nodes": inventory.overflow,
        "inventory-values": inventory.values_overflow,
        "baseline-nodes": baseline.limited_nodes if baseline is not None else 0,
        "baseline-values": baseline.limited_values if baseline is not None else 0,
        "followed-services": p.followed.stats.services_forgotten,
    }


Family = InfoMetricFamily | CounterMetricFamily | GaugeMetricFamily


def _counter(
    name: str,
    doc: str,
    labels: tuple[str, ...],
    known: Iterable[tuple[str, ...]],
    values: Mapping[Any, int | float],
) -> CounterMetricFamily:
    """A counter family with every known label set (zero unless counted) plus any others seen."""
    family = CounterMetricFamily(name, doc, labels=list(labels))
    seen = set()
    for key in known:
        seen.add(key)
        family.add_metric(list(key), values.get(key if len(key) > 1 else key[0], 0))
    for key, value in values.items():
        tup = key if isinstance(key, tuple) else (key,)
        if tup not in seen:
            family.add_metric([str(k) for k in tup], value)
    return family


def _single(
    kind: type[CounterMetricFamily] | type[GaugeMetricFamily], name: str, doc: str, value: float
) -> CounterMetricFamily | GaugeMetricFamily:
    family = kind(name, doc)
    family.add_metric([], value)
    return family


class SensorCollector(Collector):
    """Reads a pipeline's counters when scraped."""

    def __init__(self, pipeline: Any, drops: Mapping[str, Mapping[str, int]] | None = None) -> None:
        self.pipeline = pipeline
        # live capture: {interface: {"kernel": n, "interface": n}}
        self.capture_drops = drops

    def collect(self) -> Iterator[Family]:
        """Build every metric family from the current counters."""
        p = self.pipeline
        c = p.counters
        stats = p.engine.stats
        zone_names = [z.name for z in p.policy_config.zones.zones] + [
            p.policy_config.zones.default.name
        ]
        pairs = list(product(zone_names, zone_names))

        info = InfoMetricFamily("dicom_sensor_build", "Version of the running sensor.")
        info.add_metric([], {"version": __version__})
        yield info

        # What the network did.
        yield _counter(
            "dicom_association_requests",
            "A-ASSOCIATE-RQ PDUs seen, by zone pair.",
            ("source_zone", "destination_zone"),
            pairs,
            c.association_requests,
        )
        yield _counter(
            "dicom_associations",
            "Associations ended, by result, end and zone pair.",
            ("result", "end", "source_zone", "destination_zone"),
            [(r, e, s, d) for r in RESULTS for e in ENDS for s, d in pairs],
            c.associations,
        )
        yield _single(
            GaugeMetricFamily,
            "dicom_associations_active",
            "Associations being followed now.",
            p.active_associations,
        )
        known_dimse = [
            (name, status)
            for name in COMMAND_NAMES.values()
            for status in (STATUS_CLASSES if name.endswith("-RSP") else ("none",))
        ]
        yield _counter(
            "dicom_dimse_messages",
            "DIMSE messages, by command and status class.",
            ("command", "status_class"),
            known_dimse,
            c.dimse,
        )
        yield _counter(
            "dicom_pdata_bytes",
            "P-DATA-TF bytes of ended associations, by zone pair and sender.",
            ("source_zone", "destination_zone", "direction"),
            [(s, d, x) for s, d in pairs for x in DIRECTIONS],
            c.pdata_bytes,
        )
        yield _counter(
            "dicom_alerts",
            "Alert findings (repeats included), by rule and severity.",
            ("rule", "severity"),
            [(r.id, p.policy_config.rules[r.id].severity.value) for r in RULES],
            c.alerts,
        )
        yield _counter(
            "dicom_move_decisions",
            "C-MOVE destinations decided after the C-MOVE-RQ (move-unknown-destination), "
            "by reason; answered-internal and known raise no alert.",
            ("reason",),
            [(r.value,) for r in MoveReason],
            c.move_decisions,
        )
        yield _counter(
            "dicom_anomalies",
            "Malformed or unexpected DICOM input, by reason.",
            ("reason",),
            [(r,) for r in ANOMALY_REASONS],
            {
                **c.anomalies,
                "tail-overflow": stats.tail_overflows,
                "dissector-error": stats.dissector_errors,
            },
        )
        protocols = [d.name for d in p.dissectors if d.name != "dicom"]
        yield _counter(
            "dicom_sensor_plugin_events",
            "Messages and anomalies of the other clinical protocols.",
            ("protocol", "kind"),
            [(n, k) for n in protocols for k in ("message", "anomaly")],
            c.plugin_events,
        )
        yield _counter(
            "dicom_sensor_plugin_connections",
            "Connections of the other clinical protocols ended, by zone pair.",
            ("protocol", "source_zone", "destination_zone"),
            [(n, s, d) for n in protocols for s, d in pairs],
            c.plugin_connections,
        )
        yield _single(
            GaugeMetricFamily,
            "dicom_nodes",
            "DICOM nodes in the inventory.",
            len(p.policy.inventory.nodes),
        )

        # The sensor's own health.
        yield _single(
            CounterMetricFamily,
            "dicom_sensor_packets",
            "Packets the capture delivered: offline every packet of the files read; live what "
            "the kernel filter admitted (TCP; less with --prefilter ports or --bpf).",
            c.packets,
        )
        yield _single(
            CounterMetricFamily,
            "dicom_sensor_capture_file_bytes",
            "Bytes of capture files read (offline).",
            c.capture_file_bytes,
        )
        yield _single(
            CounterMetricFamily,
            "dicom_sensor_inspected_packets",
            "Packets that passed the BPF prefilter and reached Python.",
            stats.packets,
        )
        yield _single(
            CounterMetricFamily,
            "dicom_sensor_inspected_payload_bytes",
            "TCP payload bytes of the inspected packets.",
            stats.payload_bytes,
        )
        drops = dict(self.capture_drops or {})
        yield _counter(
            "dicom_sensor_capture_dropped_packets",
            "Packets the sensor's capture sockets lost (the kernel's ps_drop), by interface.",
            ("interface",),
            (),
            {name: d.get("kernel", 0) for name, d in drops.items()},
        )
        yield _counter(
            "dicom_sensor_interface_dropped_packets",
            "Packets the interface itself dropped (ps_ifdrop; not the sensor's), by interface.",
            ("interface",),
            (),
            {name: d.get("interface", 0) for name, d in drops.items()},
        )
        yield _counter(
            "dicom_sensor_decode_drops",
            "Inspected frames that yielded no TCP segment, by reason.",
            ("reason",),
            [(d.value,) for d in DropReason],
            {d.value: n for d, n in stats.dropped.items()},
        )
        yield _single(
            CounterMetricFamily, "dicom_sensor_flows", "TCP flows tracked.", stats.flows_created
        )
        yield _single(
            GaugeMetricFamily,
            "dicom_sensor_flows_active",
            "TCP flows in the flow table now.",
            stats.flows_active,
        )
        yield _counter(
            "dicom_sensor_flows_closed",
            "Flows removed from the table, by reason.",
            ("reason",),
            [(r.value,) for r in CloseReason],
            {r.value: n for r, n in stats.flows_closed.items()},
        )
        yield _single(
            CounterMetricFamily,
            "dicom_sensor_fast_path_packets",
            "Inspected packets the compiled reader absorbed (data-set segments, pure ACKs), "
            "offline or live.",
            stats.fast_packets,
        )
        pf = p.followed.stats
        for kind, name, doc, value in (
            (
                GaugeMetricFamily,
                "dicom_sensor_followed_services",
                "DICOM services (acceptor address and port) followed (live: at most 65,536, "
                "the oldest forgotten first).",
                pf.services,
            ),
            (
                GaugeMetricFamily,
                "dicom_sensor_followed_connections",
                "Single connections followed (found mid-stream or from a tiny first segment).",
                pf.connections,
            ),
            (
                GaugeMetricFamily,
                "dicom_sensor_prefilter_ports",
                "TCP ports the BPF prefilter admits beyond heads and tiny payloads.",
                pf.ports,
            ),
            (
                CounterMetricFamily,
                "dicom_sensor_prefilter_installs",
                "BPF prefilters compiled and installed.",
                pf.installs,
            ),
            (
                CounterMetricFamily,
                "dicom_sensor_prefilter_late_flows",
                "Live flows on a port the kernel filter admitted only once their head was seen "
                "(packets before the new filter are lost; see --dicom-port, --prefilter all).",
                pf.late_flows,
            ),
            (
                CounterMetricFamily,
                "dicom_sensor_tiny_heads",
                "Connections followed because a 1-9 byte payload may start a head.",
                pf.tiny_heads,
            ),
        ):
            yield _single(kind, name, doc, value)
        yield _counter(
            "dicom_sensor_state_limited",
            "What a bound on the sensor's per-address state turned away, by table: nodes "
            "beyond the inventory's or baseline's 20,000, values beyond a node's 256, live "
            "services forgotten beyond 65,536 (every association is still recorded).",
            ("table",),
            [(t,) for t in STATE_TABLES],
            state_limited(p),
        )
        pcaps = getattr(self.pipeline, "alert_pcaps", None)
        live = getattr(self.pipeline, "live_pcaps", None)
        if live is not None:
            yield _single(
                GaugeMetricFamily,
                "dicom_sensor_alert_pcap_buffer_bytes",
                "Bytes held in memory for --alert-pcap by associations that have not alerted "
                "(live and standard input; bounded by --alert-pcap-max-buffer-mb).",
                live.held_bytes,
            )
            if pcaps is None:
                pcaps = live
        if pcaps is not None:
            yield _single(
                CounterMetricFamily,
                "dicom_sensor_alert_pcap_files",
                "Alert pcaps written (--alert-pcap), one per alerting association.",
                pcaps.stats.files,
            )
            yield _single(
                CounterMetricFamily,
                "dicom_sensor_alert_pcap_bytes",
                "Bytes of alert pcaps written, after data sets and secrets were removed.",
                pcaps.stats.bytes,
            )
            yield _counter(
                "dicom_sensor_alert_pcap_limited",
                "Packets (files for bound=files) left out of alert pcaps because a bound bit.",
                ("bound",),
                [(b,) for b in Bound.ALL],
                pcaps.stats.limited,
            )
        yield _single(
            CounterMetricFamily,
            "dicom_sensor_captures_cut_off",
            "Capture files that ended inside a packet record (read up to the cut).",
            c.captures_cut_off,
        )
        yield _single(
            CounterMetricFamily,
            "dicom_sensor_policy_inputs_unordered",
            "capture --workers: policy inputs judged before every worker had passed their "
            "time, because the parent held its cap of inputs (a worker lagging far behind).",
            c.policy_inputs_unordered,
        )
        yield _single(
            CounterMetricFamily,
            "dicom_sensor_policy_inputs_coalesced",
            "capture --workers: DIMSE messages the workers did not send the parent because "
            "they can change no finding (repeats of a SOP class on an internal association).",
            c.policy_inputs_coalesced,
        )
        yield _single(
            CounterMetricFamily,
            "dicom_sensor_workers_lost",
            "capture --workers: capture workers that died (killed, crashed) before sending "
            "their last input.",
            c.workers_lost,
        )
        yield _counter(
            "dicom_sensor_lost_with_workers",
            "capture --workers: what died with a worker: associations it was following "
            "(never recorded nor judged to their end), --alert-pcap verdicts not known to "
            "have reached it (their pcaps not written).",
            ("what",),
            [(w,) for w in LOST_WITH_WORKERS],
            c.lost_with_workers,
        )
        yield _single(
            CounterMetricFamily,
            "dicom_sensor_truncated_segments",
            "TCP segments cut by the capture's snaplen (their missing bytes become gaps).",
            stats.truncated_segments,
        )
        yield _counter(
            "dicom_sensor_stream_anomalies",
            "TCP stream trouble met while reassembling, by reason.",
            ("reason",),
            [(r.value,) for r in StreamAnomaly],
            {r.value: n for r, n in stats.stream.by_reason().items()},
        )
        yield _single(
            CounterMetricFamily,
            "dicom_sensor_reassembly_gaps",
            "Holes in reassembled TCP streams.",
            stats.stream.gaps,
        )
        yield _single(
            CounterMetricFamily,
            "dicom_sensor_reassembly_gap_bytes",
            "Bytes missing in those holes.",
            stats.stream.gap_bytes,
        )
        yield _single(
            CounterMetricFamily,
            "dicom_sensor_reassembly_unacked_dropped_bytes",
            "Delivered TCP bytes let go (or never kept) before the peer acknowledged them: "
            "the per-direction or the total cap of bytes kept to compare retransmissions "
            "with was reached.",
            stats.stream.unacked_dropped_bytes,
        )
        yield _single(
            GaugeMetricFamily,
            "dicom_sensor_reassembly_kept_bytes",
            "Memory taken now by delivered TCP bytes kept until acknowledged (bytes and the "
            "objects that hold them, over every flow).",
            stats.stream.kept_memory,
        )
        yield _single(
            CounterMetricFamily,
            "dicom_sensor_reassembly_uncompared_bytes",
            "Retransmitted bytes of already delivered TCP data that could not be compared with "
            "the copy decoded (let go at the cap, no ACK of the peer seen, or after a gap).",
            stats.stream.uncompared_bytes,
        )
        yield _counter(
            "dicom_sensor_output_failures",
            "Deliveries that failed, by output: baseline saves, syslog alerts (not sent, or "
            "dropped from a full queue), writes to output files (JSON lines, Zeek log, "
            "inventory, metrics).",
            ("output",),
            [(o,) for o in OUTPUTS],
            c.output_failures,
        )
        yield _single(
            GaugeMetricFamily,
            "dicom_sensor_last_packet_timestamp_seconds",
            "Capture time of the last packet inspected.",
            c.last_packet_ts,
        )


def registry_for(pipeline: Any, drops: Mapping[str, Any] | None = None) -> CollectorRegistry:
    """A private registry holding only this pipeline's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SensorCollector(pipeline, drops))
    return registry


def exposition(pipeline: Any, drops: Mapping[str, Any] | None = None) -> bytes:
    """The Prometheus text exposition of the pipeline's metrics."""
    return generate_latest(registry_for(pipeline, drops))


__all__ = ["SensorCollector", "exposition", "registry_for"]
