"""A pcapng whose interfaces have different link types (mergecap of SLL and Ethernet).

libpcap refuses the second interface, so the file used to read as 0 packets, exit 0,
"capture cut off". Every interface must be read, each frame with its own link type.
"""

from __future__ import annotations

import json
from pathlib import Path

import dpkt
from dpkt import pcapng

from sensor.capture.offline import OfflineCapture, ReadResult
from sensor.cli import main

ROOT = Path(__file__).resolve().parents[3]
SLL = ROOT / "pcaps" / "derived-sll" / "capture.pcap"  # STORESCU -> STORESCP, link type 113
ETHERNET = ROOT / "pcaps" / "dcmtk-echo-104" / "capture.pcap"  # ECHOSCU -> 104, link type 1


def merged(path: Path) -> int:
    """Write both captures into one pcapng, one interface each, in time order (as mergecap)."""
    packets = []
    for iface, source in enumerate((SLL, ETHERNET)):
        with source.open("rb") as fh:
            reader = dpkt.pcap.Reader(fh)
            linktype = reader.datalink()
            packets += [(ts, iface, bytes(buf)) for ts, buf in reader]
        if iface == 0:
            first = linktype
        else:
            second = linktype
    assert (first, second) == (113, 1)
    packets.sort()
    blocks = [bytes(pcapng.SectionHeaderBlockLE())]
    blocks += [bytes(pcapng.InterfaceDescriptionBlockLE(linktype=t, snaplen=65535))
               for t in (first, second)]  # fmt: skip
    for ts, iface, buf in packets:
        micro = round(ts * 1e6)
        blocks.append(bytes(pcapng.EnhancedPacketBlockLE(
            iface_id=iface, ts_high=micro >> 32, ts_low=micro & 0xFFFFFFFF, pkt_data=buf,
        )))  # fmt: skip
    path.write_bytes(b"".join(blocks))
    return len(packets)


def test_every_interface_is_read(tmp_path: Path) -> None:
    capture = tmp_path / "mixed.pcapng"
    total = merged(capture)
    source = OfflineCapture(str(capture))
    assert source.mixed and sorted(set(source.linktypes)) == [1, 113]
    result = ReadResult()
    assert sum(1 for _ in source.packets(None, result)) == total
    assert result.cut_off is None


def test_read_finds_the_associations_of_both_interfaces(tmp_path: Path) -> None:
    capture = tmp_path / "mixed.pcapng"
    total = merged(capture)
    assoc, metrics = tmp_path / "assoc.jsonl", tmp_path / "metrics.prom"
    rc = main(["read", str(capture), "--associations", str(assoc), "--metrics", str(metrics),
               "-q"])  # fmt: skip
    assert rc == 0
    records = [json.loads(line) for line in assoc.read_text().splitlines()]
    calling = sorted(r["dicom"]["calling_ae_title"] for r in records)
    assert calling == ["ECHOSCU", "STORESCU"]
    text = metrics.read_text()
    assert f"dicom_sensor_packets_total {float(total)}" in text
    assert "dicom_sensor_captures_cut_off_total 0.0" in text


def test_user_bpf_applies_per_link_type(tmp_path: Path) -> None:
    capture = tmp_path / "mixed.pcapng"
    merged(capture)
    assoc = tmp_path / "assoc.jsonl"
    rc = main(["read", str(capture), "--bpf", "port 104", "--associations", str(assoc), "-q"])
    assert rc == 0
    records = [json.loads(line) for line in assoc.read_text().splitlines()]
    assert [r["dicom"]["calling_ae_title"] for r in records] == ["ECHOSCU"]
