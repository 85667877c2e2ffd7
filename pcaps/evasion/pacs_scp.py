"""The victim PACS of the evasion captures: a real pynetdicom 3.0.4 SCP.

Verification, Study Root Q/R FIND and MOVE, and CT Image Storage as SCP; it performs C-MOVE
sub-associations itself (CT Image Storage as SCU) to the destinations it knows. It logs one
line per request it ACTED on, so generate.sh can tell from the SCP's own log what the
attacker's bytes made it do:

    ECHO msg=<id>
    FIND msg=<id> level=<level> matches=<n>
    MOVE msg=<id> dest=<ae> known=<yes|no> subops=<n>
    STORE msg=<id> sop_class=<uid> bytes=<n>
    ASSOC-AC calling=<ae> called=<ae> / RELEASED / ABORTED

All data is synthetic (made by mkdata.py); nothing is stored on disk.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--aet", default="PACS")
p.add_argument("--image", required=True, help="the synthetic CT the PACS holds")
p.add_argument("--dest", action="append", default=[], help="AE=host:port a C-MOVE may target")
p.add_argument("--log", required=True)
a = p.parse_args()

out = open(a.log, "a", buffering=1, encoding="ascii")  # noqa: SIM115 (lives as long as the SCP)
logging.basicConfig(stream=sys.stderr, level=logging.INFO)
IMAGE = dcmread(a.image)
DESTS = {d.split("=")[0]: (d.split("=")[1].split(":")[0], int(d.split(":")[1])) for d in a.dest}


def note(line: str) -> None:
    out.write(line + "\n")


def on_accepted(event: evt.Event) -> None:
    rq = event.assoc.requestor
    note(f"ASSOC-AC calling={rq.ae_title} called={rq.primitive.called_ae_title}")


def on_released(event: evt.Event) -> None:
    note("RELEASED")


def on_aborted(event: evt.Event) -> None:
    note("ABORTED")


def on_echo(event: evt.Event) -> int:
    note(f"ECHO msg={event.request.MessageID}")
    return 0x0000


def _match(identifier: Dataset) -> list[Dataset]:
    """The one study the PACS holds matches any study-level query (keys are not checked)."""
    if getattr(identifier, "QueryRetrieveLevel", "") != "STUDY":
        return []
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = IMAGE.StudyInstanceUID
    ds.PatientName = IMAGE.PatientName
    ds.PatientID = IMAGE.PatientID
    return [ds]


def on_find(event: evt.Event):  # type: ignore[no-untyped-def]
    identifier = event.identifier
    matches = _match(identifier)
    note(
        f"FIND msg={event.request.MessageID} level={identifier.QueryRetrieveLevel} "
        f"matches={len(matches)}"
    )
    for ds in matches:
        yield 0xFF00, ds


def on_move(event: evt.Event):  # type: ignore[no-untyped-def]
    dest = event.move_destination
    dest = dest.decode() if isinstance(dest, bytes) else str(dest)
    dest = dest.strip()
    known = dest in DESTS
    matches = [IMAGE] if _match(event.identifier) else []
    note(
        f"MOVE msg={event.request.MessageID} dest={dest} known={'yes' if known else 'no'} "
        f"subops={len(matches) if known else 0}"
    )
    if not known:
        yield None, None  # 0xA801: move destination unknown
        return
    yield DESTS[dest][0], DESTS[dest][1]
    yield len(matches)
    for ds in matches:
        yield 0xFF00, ds


def on_store(event: evt.Event) -> int:
    note(
        f"STORE msg={event.request.MessageID} sop_class={event.request.AffectedSOPClassUID} "
        f"bytes={len(event.request.DataSet.getvalue())}"
    )
    return 0x0000


ae = AE(ae_title=a.aet)
ae.add_supported_context(Verification)
ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
ae.add_supported_context(CTImageStorage)
ae.add_requested_context(CTImageStorage)  # the C-MOVE sub-association
ae.maximum_pdu_size = 16384
handlers = [
    (evt.EVT_ACCEPTED, on_accepted),
    (evt.EVT_RELEASED, on_released),
    (evt.EVT_ABORTED, on_aborted),
    (evt.EVT_C_ECHO, on_echo),
    (evt.EVT_C_FIND, on_find),
    (evt.EVT_C_MOVE, on_move),
    (evt.EVT_C_STORE, on_store),
]
Path(a.log).touch()
note("READY")
ae.start_server(("0.0.0.0", a.port), block=True, evt_handlers=handlers)
