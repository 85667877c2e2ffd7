"""Metric values after reading known captures, read back through a private registry."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from dissectors.registry import load_dissectors
from sensor.capture.offline import OfflineCapture
from sensor.outputs.metrics import exposition, registry_for
from sensor.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[3]


def _read(*cases: str) -> Pipeline:
    pipeline = Pipeline(load_dissectors())
    for case in cases:
        pipeline.read(OfflineCapture(str(ROOT / "pcaps" / case / "capture.pcap")))
    pipeline.finish()
    return pipeline


def _expected(case: str) -> list[dict[str, object]]:
    data: list[dict[str, object]] = json.loads(
        (ROOT / "pcaps" / case / "expected.json").read_text()
    )
    return data


@pytest.mark.parametrize(
    "case", ["dcmtk-find-move-get", "abort-by-acceptor", "dcmtk-reject-called-ae"]
)
def test_association_and_dimse_counts_equal_expected(case: str) -> None:
    registry = registry_for(_read(case))
    expected = _expected(case)
    by_outcome = Counter((e["result"], e["end"]) for e in expected)
    for (result, end), n in by_outcome.items():
        labels = {
            "result": result,
            "end": end,
            "source_zone": "internal",
            "destination_zone": "internal",
        }
        assert registry.get_sample_value("dicom_associations_total", labels) == n
    total = sum(
        v
        for m in registry.collect()
        if m.name == "dicom_associations"
        for s in m.samples
        if s.name == "dicom_associations_total"
        for v in [s.value]
    )
    assert total == len(expected)
    requests = {"source_zone": "internal", "destination_zone": "internal"}
    assert registry.get_sample_value("dicom_association_requests_total", requests) == len(expected)
    dimse: Counter[str] = Counter()
    for e in expected:
        dimse.update(e["dimse"])  # type: ignore[arg-type]
    for name, n in dimse.items():
        got = sum(
            s.value
            for m in registry.collect()
            if m.name == "dicom_dimse_messages"
            for s in m.samples
            if s.labels["command"] == name
        )
        assert got == n, name


def test_status_classes_of_find_responses() -> None:
    registry = registry_for(_read("dcmtk-find-move-get"))
    statuses: Counter[str] = Counter()
    for e in _expected("dcmtk-find-move-get"):
        for code, n in e["dimse_status"].get("C-FIND-RSP", {}).items():  # type: ignore[attr-defined]
            statuses["pending" if code == "0xFF00" else "success"] += n
    for status_class, n in statuses.items():
        labels = {"command": "C-FIND-RSP", "status_class": status_class}
        assert registry.get_sample_value("dicom_dimse_messages_total", labels) == n


def test_health_counters_match_the_file() -> None:
    pipeline = _read("dcmtk-echo-104")
    registry = registry_for(pipeline)
    capture = ROOT / "pcaps/dcmtk-echo-104/capture.pcap"
    packets = int(
        subprocess.run(
            ["tshark", "-r", str(capture), "-T", "fields", "-e", "frame.number"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
    )
    assert registry.get_sample_value("dicom_sensor_packets_total") == packets
    assert registry.get_sample_value("dicom_sensor_flows_total") == 1
    assert registry.get_sample_value("dicom_sensor_flows_active") == 0
    assert registry.get_sample_value("dicom_associations_active") == 0
    assert registry.get_sample_value("dicom_nodes") == 2
    assert registry.get_sample_value("dicom_sensor_reassembly_gaps_total") == 0
    assert (
        registry.get_sample_value("dicom_sensor_capture_file_bytes_total") == capture.stat().st_size
    )


def test_alerts_counted_by_rule_and_severity() -> None:
    registry = registry_for(_read("pynetdicom-user-identity", "dcmtk-echo-104"))
    assert (
        registry.get_sample_value(
            "dicom_alerts_total", {"rule": "cleartext-credentials", "severity": "medium"}
        )
        == 1
    )
    # DCMTK's echoscu with its default AE titles: a scanner-probe at info, not medium
    assert (
        registry.get_sample_value(
            "dicom_alerts_total", {"rule": "scanner-probe", "severity": "info"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "dicom_alerts_total", {"rule": "scanner-probe", "severity": "medium"}
        )
        == 0
    )
    assert (
        registry.get_sample_value(
            "dicom_alerts_total", {"rule": "perimeter-inbound", "severity": "high"}
        )
        == 0
    )


def test_label_sets_start_at_zero_and_stay_bounded() -> None:
    text = exposition(Pipeline(load_dissectors())).decode()
    assert 'dicom_anomalies_total{reason="bad-length"} 0.0' in text
    # Labels come from closed sets and zone names only: no address, port or AE title.
    pipeline = _read("dcmtk-find-move-get", "pynetdicom-ipv6")
    text = exposition(pipeline).decode()
    for forbidden in ("10.10.0.", "fd00:", "PACS", "FINDSCU", "40123", "1.2.840"):
        assert forbidden not in text


def test_exposition_passes_promtool(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    path.write_bytes(exposition(_read("dcmtk-find-move-get")))
    result = subprocess.run(
        ["promtool", "check", "metrics"], stdin=path.open("rb"), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case", ["dcmtk-find-move-get", "dcmtk-echo-104"])
def test_retransmissions_equal_tsharks_count(case: str) -> None:
    capture = ROOT / "pcaps" / case / "capture.pcap"
    shown = subprocess.run(
        ["tshark", "-r", str(capture), "-Y", "tcp.analysis.retransmission"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    registry = registry_for(_read(case))
    labels = {"reason": "retransmission"}
    assert registry.get_sample_value("dicom_sensor_stream_anomalies_total", labels) == len(shown)


def test_retransmissions_and_overlaps_of_the_derived_case_are_counted() -> None:
    # Exact and overlapping retransmissions, nothing lost (tshark files one overlap as a
    # retransmission, so only the presence of each kind is compared here).
    registry = registry_for(_read("derived-reordered-retransmitted"))
    for reason, positive in (("retransmission", True), ("overlap", True), ("gap", False)):
        value = registry.get_sample_value("dicom_sensor_stream_anomalies_total", {"reason": reason})
        assert (value or 0) > 0 if positive else value == 0, reason


def test_capture_drops_are_per_interface_and_only_ours_are_the_sensors() -> None:
    """ps_drop (our socket) is the sensor's loss; ps_ifdrop (the interface's) is said apart."""
    drops = {"span0": {"kernel": 3, "interface": 49}, "span1": {"kernel": 0, "interface": 0}}
    text = exposition(Pipeline(load_dissectors()), drops).decode()
    assert 'dicom_sensor_capture_dropped_packets_total{interface="span0"} 3.0' in text
    assert 'dicom_sensor_capture_dropped_packets_total{interface="span1"} 0.0' in text
    assert 'dicom_sensor_interface_dropped_packets_total{interface="span0"} 49.0' in text
    offline = exposition(Pipeline(load_dissectors())).decode()
    assert "dicom_sensor_capture_dropped_packets_total{" not in offline
