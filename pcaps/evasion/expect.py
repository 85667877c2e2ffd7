"""Write expected_records.json and expected_alerts.json of one evasion scenario.

From the scenario's specification (below) and the peers' own logs, never from the sensor:

* attacker.log: each request the attacker sent and every response status it received;
* pacs.log (pynetdicom SCP): what the victim acted on (ECHO/FIND/MOVE/STORE lines, the
  move destination and how many sub-operations it started);
* exfil.log / archive.log (DCMTK storescp, -d): the C-STOREs each received.

usage: expect.py SCENARIO WORKDIR OUTDIR
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

EXT, PACS, ARCHIVE, EXFIL = "198.51.100.20", "10.30.0.5", "10.30.0.6", "203.0.113.7"
PACS_PORT, ARCHIVE_PORT, EXFIL_PORT = 11112, 104, 11112
FIND = "1.2.840.10008.5.1.4.1.2.2.1"


def status_class(status: int) -> str:
    """PS3.7 C: the class of a status, as the record names it."""
    if status == 0x0000:
        return "success"
    if status in (0xFF00, 0xFF01):
        return "pending"
    if status == 0xFE00:
        return "cancel"
    if status == 0x0001 or status & 0xF000 == 0xB000:
        return "warning"
    return "failure"


def attacker_connections(log: str) -> list[dict[str, Any]]:
    """Per connection the attacker opened: requests sent and statuses received."""
    conns: list[dict[str, Any]] = []
    for line in log.splitlines():
        m = re.match(r"connection (\S+):(\d+) -> (\S+):(\d+)", line)
        if m:
            conns.append({"dst": m.group(3), "port": int(m.group(4)),
                          "dimse": Counter(), "status": Counter()})  # fmt: skip
            continue
        m = re.match(r"sent (C-[A-Z]+) command", line)
        if m:
            conns[-1]["dimse"][f"{m.group(1)}-RQ"] += 1
            continue
        m = re.match(r"(C-[A-Z]+) statuses (.*)", line)
        if m:
            statuses = [int(s, 16) for s in m.group(2).split()]
            conns[-1]["dimse"][f"{m.group(1)}-RSP"] += len(statuses)
            conns[-1]["status"].update(status_class(s) for s in statuses)
    return conns


def record(
    src: str,
    dst: str,
    port: int,
    calling: str,
    called: str,
    dimse: Counter[str],
    status: Counter[str],
    anomalies: list[str],
    **extra: Any,
) -> dict[str, Any]:
    return {
        "source_ip": src,
        "destination_ip": dst,
        "destination_port": port,
        "calling_ae_title": calling,
        "called_ae_title": called,
        "result": "accepted",
        "end": "released",
        "dimse": dict(sorted(dimse.items())),
        "dimse_status": dict(sorted(status.items())),
        "anomalies": sorted(anomalies),
        **extra,
    }


def sub_association(subops: int, stores_received: int) -> dict[str, Any]:
    """The C-MOVE sub-association: the PACS C-STOREs each match to EXFIL (DCMTK storescp)."""
    assert subops == stores_received, (subops, stores_received)
    return record(PACS, EXFIL, EXFIL_PORT, "PACS", "EXFIL",
                  Counter({"C-STORE-RQ": subops, "C-STORE-RSP": subops}),
                  Counter({"success": subops}), [])  # fmt: skip


def alert(rule: str, src: str, dst: str, findings: int) -> list[dict[str, Any]]:
    """The alert events of ``findings`` findings of one (rule, source, destination)."""
    out = [{"rule_id": rule, "source_ip": src, "destination_ip": dst, "action": "detected",
            "count": 1}]  # fmt: skip
    if findings > 1:
        out.append({**out[0], "action": "folded", "count": findings - 1})
    return out


def main() -> None:
    scenario, work, outdir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    conns = attacker_connections((work / "attacker.log").read_text())
    pacs = (work / "pacs.log").read_text()
    exfil_path = work / "exfil.log"
    exfil_stores = exfil_path.read_text().count("Received Store Request") if exfil_path.exists() else 0
    moves = [int(m) for m in re.findall(r"^MOVE .* subops=(\d+)$", pacs, re.M)]
    records: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    to_pacs = [c for c in conns if c["dst"] == PACS]
    if scenario == "reserved-bits":
        (a,) = to_pacs
        (to_archive,) = [c for c in conns if c["dst"] == ARCHIVE]
        # pynetdicom acted on every command whose control byte had bits 2-7 set:
        for verb in ("ECHO", "FIND", "MOVE", "STORE"):
            assert re.search(rf"^{verb} msg=", pacs, re.M), f"the PACS never acted on {verb}"
        (subops,) = moves
        records.append(record(EXT, PACS, PACS_PORT, "EVIL-SCU", "PACS", a["dimse"], a["status"],
                              ["reserved-bits"], move_destinations=["EXFIL"]))  # fmt: skip
        records.append(sub_association(subops, exfil_stores))
        archive = (work / "archive.log").read_text()
        # DCMTK storescp acted on both as well (its -d log names each request).
        assert "Received Echo Request" in archive and "Received Store Request" in archive
        records.append(record(EXT, ARCHIVE, ARCHIVE_PORT, "EVIL-SCU", "ARCHIVE",
                              to_archive["dimse"], to_archive["status"],
                              ["reserved-bits"]))  # fmt: skip
        alerts += alert("perimeter-inbound", EXT, PACS, 1)
        alerts += alert("perimeter-inbound", EXT, ARCHIVE, 1)
        alerts += alert("query-retrieve-untrusted", EXT, PACS, 2)  # the C-FIND and the C-MOVE
        alerts += alert("move-unknown-destination", EXT, PACS, 1)
        alerts += alert("perimeter-outbound", PACS, EXFIL, 1)
        alerts += alert("bulk-outbound", PACS, EXFIL, 1)
    elif scenario == "split-header":
        assert len(to_pacs) == 6
        assert len(re.findall(r"^FIND msg=", pacs, re.M)) == 6
        for c in to_pacs:
            records.append(record(EXT, PACS, PACS_PORT, "EVIL-SCU", "PACS", c["dimse"],
                                  c["status"], []))  # fmt: skip
        alerts += alert("perimeter-inbound", EXT, PACS, 6)
        alerts += alert("query-retrieve-untrusted", EXT, PACS, 6)
    elif scenario in ("overlap-held", "overlap-retransmit"):
        (a,) = to_pacs
        # The PACS acted on the first copy: it moved to EXFIL, not to the decoy.
        assert re.search(r"^MOVE msg=1 dest=EXFIL known=yes", pacs, re.M), pacs
        (subops,) = moves
        ext_neg = {"side": "requestor", "sop_class_uid": FIND, "service": "query", "length": 4,
                   "relational_queries": 1, "date_time_matching": 1,
                   "fuzzy_semantic_matching": 0, "timezone_query_adjustment": 0}  # fmt: skip
        records.append(record(EXT, PACS, PACS_PORT, "EVIL-SCU", "PACS", a["dimse"], a["status"],
                              ["overlap-mismatch"], move_destinations=["EXFIL"],
                              extended_negotiations=[ext_neg]))  # fmt: skip
        records.append(sub_association(subops, exfil_stores))
        alerts += alert("perimeter-inbound", EXT, PACS, 1)
        alerts += alert("query-retrieve-untrusted", EXT, PACS, 1)
        alerts += alert("move-unknown-destination", EXT, PACS, 1)
        alerts += alert("stream-evasion", EXT, PACS, 1)
        alerts += alert("perimeter-outbound", PACS, EXFIL, 1)
        alerts += alert("bulk-outbound", PACS, EXFIL, 1)
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "expected_records.json").write_text(json.dumps(records, indent=2) + "\n")
    alerts.sort(key=lambda x: (x["rule_id"], x["source_ip"], x["destination_ip"], x["action"]))
    (outdir / "expected_alerts.json").write_text(json.dumps(alerts, indent=2) + "\n")


if __name__ == "__main__":
    main()
