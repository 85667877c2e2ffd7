"""The node inventory names each SOP class it lists (PS3.6 table A-1), in JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from sensor.cli import main
from sensor.policy.inventory import Inventory

ROOT = Path(__file__).resolve().parents[3]


def test_read_inventory_names_sop_classes(tmp_path: Path) -> None:
    # DCMTK findscu, movescu and getscu against dcmqrscp: the study root query/retrieve
    # models, and the CT images the C-MOVE and C-GET sub-operations stored.
    nodes_json, nodes_csv = tmp_path / "nodes.json", tmp_path / "nodes.csv"
    capture = ROOT / "pcaps/dcmtk-find-move-get/capture.pcap"
    rc = main(["read", str(capture), "--inventory", str(nodes_json),
               "--inventory-csv", str(nodes_csv), "-q"])  # fmt: skip
    assert rc == 0
    nodes = json.loads(nodes_json.read_text())
    named = {c["uid"]: c["name"] for n in nodes for c in n["sop_classes"]}
    assert (
        named["1.2.840.10008.5.1.4.1.2.2.1"] == "Study Root Query/Retrieve Information Model - FIND"
    )
    assert (
        named["1.2.840.10008.5.1.4.1.2.2.2"] == "Study Root Query/Retrieve Information Model - MOVE"
    )
    assert named["1.2.840.10008.5.1.4.1.1.2"] == "CT Image Storage"
    rows = list(csv.DictReader(io.StringIO(nodes_csv.read_text())))
    assert len(rows) == len(nodes)
    for row, node in zip(rows, nodes, strict=True):
        uids = row["sop_classes"].split()
        names = row["sop_class_names"].split(";") if row["sop_class_names"] else []
        assert uids == [c["uid"] for c in node["sop_classes"]]
        assert names == [c["name"] for c in node["sop_classes"]]


def test_private_sop_class_has_no_name() -> None:
    inventory = Inventory()
    inventory.acceptor("10.0.0.1", "internal", 1.0, 104, "PACS", (None, None, None))
    inventory.sop_class("10.0.0.1", "1.2.276.0.7230010.3.999.1")  # a private UID
    inventory.sop_class("10.0.0.1", "1.2.840.10008.1.1")
    out = io.StringIO()
    inventory.write_json(out)
    (node,) = json.loads(out.getvalue())
    assert node["sop_classes"] == [
        {"uid": "1.2.276.0.7230010.3.999.1", "name": None},
        {"uid": "1.2.840.10008.1.1", "name": "Verification SOP Class"},
    ]
    out = io.StringIO()
    inventory.write_csv(out)
    (row,) = csv.DictReader(io.StringIO(out.getvalue()))
    assert row["sop_class_names"] == ";Verification SOP Class"
