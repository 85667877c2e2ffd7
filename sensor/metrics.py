"""Prometheus metrics built at scrape time from the sensor's counters (no per-packet cost)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from dissectors.dicom.constants import COMMAND_NAMES, StatusClass
from dissectors.dicom.errors import Reason

from . import __version__
from .decode import DropReason
from .pipeline import Pipeline

RESULTS = ("accepted", "rejected", "no-response")
ENDS = ("released", "aborted", "connection-closed", "timeout", "capture-ended", "evicted")
STATUS_CLASSES = (*(c.label for c in StatusClass), "none")
DIRECTIONS = ("requestor", "acceptor")


class SensorCollector(Collector):
    """Reads a pipeline's counters when scraped; every known label set starts at zero."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def collect(self) -> Iterator[InfoMetricFamily | CounterMetricFamily | GaugeMetricFamily]:
        """Build every metric family from the current counters."""
        p = self.pipeline
        c = p.counters
        stats = p.engine.stats

        info = InfoMetricFamily("dicom_sensor_build", "Version of the running sensor.")
        info.add_metric([], {"version": __version__})
        yield info

        packets = CounterMetricFamily(
            "dicom_sensor_packets", "Packets in the capture, all protocols."
        )
        packets.add_metric([], c.packets)
        yield packets

        inspected = CounterMetricFamily(
            "dicom_sensor_inspected_packets",
            "Packets that passed the BPF prefilter and reached Python.",
        )
        inspected.add_metric([], stats.packets)
        yield inspected

        payload = CounterMetricFamily(
            "dicom_sensor_inspected_payload_bytes", "TCP payload bytes of the inspected packets."
        )
        payload.add_metric([], stats.payload_bytes)
        yield payload

        drops = CounterMetricFamily(
            "dicom_sensor_decode_drops", "Inspected frames that yielded no TCP segment, by reason.",
            labels=["reason"],
        )  # fmt: skip
        for drop in DropReason:
            drops.add_metric([drop.value], stats.dropped.get(drop, 0))
        yield drops

        flows = CounterMetricFamily("dicom_sensor_flows", "TCP flows tracked.")
        flows.add_metric([], stats.flows_created)
        yield flows

        active = GaugeMetricFamily("dicom_sensor_flows_active", "TCP flows in the flow table now.")
        active.add_metric([], stats.flows_active)
        yield active

        closed = CounterMetricFamily(
            "dicom_sensor_flows_closed",
            "Flows removed from the table, by reason.",
            labels=["reason"],
        )
        for label in CloseReasonLabels:
            closed.add_metric([label], _closed(p, label))
        yield closed

        gaps = CounterMetricFamily(
            "dicom_sensor_reassembly_gaps", "Holes in reassembled TCP streams."
        )
        gaps.add_metric([], stats.stream.gaps)
        yield gaps

        requests = CounterMetricFamily("dicom_association_requests", "A-ASSOCIATE-RQ PDUs seen.")
        requests.add_metric([], c.association_requests)
        yield requests

        assoc = CounterMetricFamily(
            "dicom_associations", "Associations ended, by result and end.", labels=["result", "end"]
        )
        for result in RESULTS:
            for end in ENDS:
                assoc.add_metric([result, end], c.associations.get((result, end), 0))
        yield assoc

        active_assoc = GaugeMetricFamily(
            "dicom_associations_active", "Associations being followed."
        )
        active_assoc.add_metric([], p.active_associations)
        yield active_assoc

        dimse = CounterMetricFamily(
            "dicom_dimse_messages", "DIMSE messages, by command and status class.",
            labels=["command", "status_class"],
        )  # fmt: skip
        for name in COMMAND_NAMES.values():
            classes = STATUS_CLASSES if name.endswith("-RSP") else ("none",)
            for status in classes:
                dimse.add_metric([name, status], c.dimse.get((name, status), 0))
        for (name, status), n in c.dimse.items():
            if name not in COMMAND_NAMES.values():
                dimse.add_metric(["unknown", status], n)
        yield dimse

        pdata = CounterMetricFamily(
            "dicom_pdata_bytes",
            "P-DATA-TF bytes of ended associations, by sender.",
            labels=["direction"],
        )
        for direction in DIRECTIONS:
            pdata.add_metric([direction], c.pdata_bytes.get(direction, 0))
        yield pdata

        anomalies = CounterMetricFamily(
            "dicom_anomalies", "Malformed or unexpected DICOM input, by reason.", labels=["reason"]
        )
        for reason in Reason:
            anomalies.add_metric([reason.value], c.anomalies.get(reason.value, 0))
        yield anomalies

        last = GaugeMetricFamily(
            "dicom_sensor_last_packet_timestamp_seconds",
            "Capture time of the last packet inspected.",
        )
        last.add_metric([], c.last_packet_ts)
        yield last


CloseReasonLabels = ("connection-closed", "timeout", "capture-ended", "evicted")


def _closed(p: Pipeline, label: str) -> int:
    for reason, n in p.engine.stats.flows_closed.items():
        if reason.value == label:
            return n
    return 0


def registry_for(pipeline: Pipeline) -> CollectorRegistry:
    """A private registry holding only this pipeline's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SensorCollector(pipeline))
    return registry


def exposition(pipeline: Pipeline) -> bytes:
    """The Prometheus text exposition of the pipeline's metrics."""
    return generate_latest(registry_for(pipeline))
