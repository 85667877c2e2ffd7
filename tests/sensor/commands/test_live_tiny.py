"""Live: heads cut into 1-7 byte segments are found as offline (veth, tcpreplay, one worker)."""

from __future__ import annotations

from pathlib import Path

import pcapy

from ..capture.test_tiny_segments import _key, _records
from ..capture.tiny import recut, remap_ports
from ..liveplay import replay

ROOT = Path(__file__).resolve().parents[3]
OFF_DICOM = {104: 8104, 11112: 8112}
CASES = ["dcmtk-find-move-get", "pynetdicom-user-identity", "derived-vlan"]


def test_live_tiny_segments_give_the_same_associations(
    veth: tuple[str, str], tmp_path: Path
) -> None:
    cuts = []
    expected: list[str] = []
    for i, case in enumerate(CASES):
        original = ROOT / "pcaps" / case / "capture.pcap"
        cut = tmp_path / f"{i}.pcap"
        recut(original, cut, seed=i + 1)
        cuts.append(cut)
        expected += _records(str(original))
    run = replay(veth, cuts, 2000, tmp_path / "a.jsonl")
    got = sorted(_key(r) for r in run.records if "dicom" in r)
    assert got == sorted(expected), run.stderr[-2000:]


def test_ports_prefilter_keeps_ignored_tcp_out_of_python(
    veth: tuple[str, str], tmp_path: Path
) -> None:
    """--prefilter ports: the store to 11112 is whole; the non-DICOM bulk never reaches Python."""
    store = ROOT / "pcaps" / "dcmtk-store-11112" / "capture.pcap"
    other = tmp_path / "other.pcap"  # non-DICOM conversations moved off the DICOM ports
    remap_ports(ROOT / "pcaps" / "derived-not-dicom" / "capture.pcap", other, OFF_DICOM)
    expected = _records(str(store))
    metrics = tmp_path / "m.prom"
    run = replay(veth, [other, store], 2000, tmp_path / "a.jsonl",
                 "--prefilter", "ports", "--metrics", str(metrics))  # fmt: skip
    assert sorted(_key(r) for r in run.records if "dicom" in r) == expected
    text = metrics.read_text()
    inspected = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("dicom_sensor_inspected_packets_total")
    )
    sent = _count(store) + _count(other)
    # Only the store and the few segments that look like heads reach Python.
    assert _count(store) <= inspected <= _count(store) + 10, (inspected, sent)


def _count(capture: Path) -> int:
    reader = pcapy.open_offline(str(capture))
    n = 0
    while reader.next()[0] is not None:
        n += 1
    return n
