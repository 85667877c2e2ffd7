"""One service reached both untagged and under an 802.1Q tag, in one capture."""

from __future__ import annotations

import json
from pathlib import Path

import dpkt

from sensor.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _frames(path: Path) -> list[tuple[float, bytes]]:
    with open(path, "rb") as fh:
        return list(dpkt.pcap.Reader(fh))


def test_tagged_flows_to_a_service_first_seen_untagged(tmp_path: Path) -> None:
    untagged = _frames(ROOT / "pcaps/dcmtk-find-move-get/capture.pcap")
    tagged = _frames(ROOT / "pcaps/derived-vlan/capture.pcap")  # the same, under VLAN 120
    shift = untagged[-1][0] - tagged[0][0] + 10.0
    merged = tmp_path / "mixed.pcap"
    with open(merged, "wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        for ts, buf in untagged + [(ts + shift, buf) for ts, buf in tagged]:
            writer.writepkt(buf, ts=ts)
    records = tmp_path / "a.jsonl"
    assert main(["read", str(merged), "--associations", str(records), "-q"]) == 0
    recs = [json.loads(line) for line in records.read_text().splitlines()]
    vlans = sorted(str(r["network"].get("vlan", {}).get("id")) for r in recs)
    assert vlans == ["120"] * 5 + ["None"] * 5
    assert all(r["dicom"]["association"]["end"] == "released" for r in recs)
