#!/usr/bin/env python3
"""Real pynetdicom peers on 127.0.0.1 exchanging canary-laden data (run by generate.sh).

The SCP (AE CANARYSCP) answers Verification, CT Image Storage and Patient Root C-FIND; its
C-FIND matches carry canary patient names and IDs. The SCU opens five associations:

1. user identity type 2 (username + passcode canary), C-FIND with canary query keys,
   C-STORE of a CT object whose patient name, ID, birth date and comments are canaries;
2. type 3 (Kerberos service ticket: a canary blob), C-ECHO;
3. type 4 (SAML assertion: a canary blob), C-ECHO;
4. type 5 (JSON Web Token: a canary JWT), C-ECHO;
5. type 2 again with a passcode canary, C-ECHO, then an A-ABORT from the requestor.

Each association has its own calling AE title. Writes canaries.json (every canary sent)
and expected.json (the associations, from this script's own plan and the peers' answers,
in the format of pcaps/README.md) into OUTDIR.

Usage: peers.py PORT OUTDIR  (the capture is made around it by generate.sh)
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.pdu_primitives import UserIdentityNegotiation
from pynetdicom.sop_class import (
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    Verification,
)

CANARIES = {
    "patient_name_store": "CANARY^STORENAME^4f1e",
    "patient_id_store": "CANARY-STOREPID-a83c",
    "patient_comment_store": "CANARY-COMMENT-61b0",
    "patient_name_query": "CANARY^QUERYNAME^3a9f",
    "patient_id_query": "CANARY-QUERYPID-8b2e",
    "patient_name_match": "CANARY^MATCHNAME^d27a",
    "patient_id_match": "CANARY-MATCHPID-0c55",
    "passcode": "CANARY-PASSCODE-91d4",
    "passcode_abort": "CANARY-PASSCODE-ab07",
    "kerberos": "CANARY-KERBEROS-TICKET-5d3c",
    "saml": "CANARY-SAML-ASSERTION-e6f9",
}
# Inside the JWT's base64url payload; the token's own text is the canary checked for.
JWT_SUBJECT = "CANARY-JWT-SUB-72aa"


def _jwt() -> bytes:
    def b64(obj: dict[str, object]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=")

    head = b64({"alg": "HS256", "typ": "JWT"})
    body = b64({"sub": JWT_SUBJECT, "iss": "synthetic-idp", "exp": 1893456000})
    return head + b"." + body + b"." + base64.urlsafe_b64encode(b"CANARY-JWT-SIG").rstrip(b"=")


# The JWT as it crosses the wire (base64url): its text is a canary too.
JWT = _jwt()


def _identity(kind: int, primary: bytes, secondary: bytes | None = None) -> UserIdentityNegotiation:
    ui = UserIdentityNegotiation()
    ui.user_identity_type = kind
    ui.primary_field = primary
    if secondary is not None:
        ui.secondary_field = secondary
    ui.positive_response_requested = False
    return ui


def ct_object() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["phi-canary-ct"])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["phi-canary-study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["phi-canary-series"])
    ds.PatientName = CANARIES["patient_name_store"]
    ds.PatientID = CANARIES["patient_id_store"]
    ds.PatientBirthDate = "19000101"
    ds.PatientComments = CANARIES["patient_comment_store"]
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(128)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def serve(port: int) -> object:
    ae = AE(ae_title="CANARYSCP")
    for ctx in (Verification, CTImageStorage, PatientRootQueryRetrieveInformationModelFind):
        ae.add_supported_context(ctx, [ImplicitVRLittleEndian, ExplicitVRLittleEndian])

    def on_find(event: evt.Event) -> object:
        for n in range(2):
            ident = Dataset()
            ident.QueryRetrieveLevel = "PATIENT"
            ident.PatientName = f"{CANARIES['patient_name_match']}{n}"
            ident.PatientID = f"{CANARIES['patient_id_match']}{n}"
            yield 0xFF00, ident

    def on_store(event: evt.Event) -> int:
        return 0x0000

    def on_user_id(event: evt.Event) -> tuple[bool, None]:
        return True, None

    handlers = [(evt.EVT_C_FIND, on_find), (evt.EVT_C_STORE, on_store),
                (evt.EVT_USER_ID, on_user_id)]  # fmt: skip
    return ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)


def client(port: int) -> None:
    ae = AE(ae_title="CANARYSCU")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, ImplicitVRLittleEndian)
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)

    def assoc(calling: str, ident: UserIdentityNegotiation) -> Any:
        ae.ae_title = calling
        a = ae.associate("127.0.0.1", port, ae_title="CANARYSCP", ext_neg=[ident])
        if not a.is_established:
            sys.exit("peers.py: association not established")
        return a

    a = assoc("CANARYSCU", _identity(2, b"synth_user", CANARIES["passcode"].encode()))
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientName = CANARIES["patient_name_query"]
    query.PatientID = CANARIES["patient_id_query"]
    matches = [s for s, i in a.send_c_find(query, PatientRootQueryRetrieveInformationModelFind)
               if s and s.Status == 0xFF00]  # fmt: skip
    if len(matches) != 2:
        sys.exit(f"peers.py: expected 2 C-FIND matches, got {len(matches)}")
    status = a.send_c_store(ct_object())
    if status.Status != 0:
        sys.exit(f"peers.py: C-STORE status {status.Status:#06x}")
    a.release()
    for calling, kind, primary in IDENTITIES:
        a = assoc(calling, _identity(kind, primary))
        if a.send_c_echo().Status != 0:
            sys.exit("peers.py: C-ECHO failed")
        a.release()
    a = assoc("CANARYABORT", _identity(2, b"synth_user", CANARIES["passcode_abort"].encode()))
    if a.send_c_echo().Status != 0:
        sys.exit("peers.py: C-ECHO failed")
    a.abort()


IDENTITIES = (
    ("CANARYKRB", 3, CANARIES["kerberos"].encode() + bytes(range(32))),
    ("CANARYSAML", 4, b"<saml:Assertion>" + CANARIES["saml"].encode() + b"</saml:Assertion>"),
    ("CANARYJWT", 5, JWT),
)
IMPLEMENTATION = {"class_uid": "1.2.826.0.1.3680043.9.3811.3.0.4", "version": "PYNETDICOM_304"}


def expected(port: int) -> list[dict[str, Any]]:
    """The associations this script makes, in TCP stream order (pcaps/README.md format)."""

    def one(calling: str, end: str, dimse: dict[str, int], ident: dict[str, Any],
            abort_by: str | None = None) -> dict[str, Any]:  # fmt: skip
        return {
            "requestor_port_is_ephemeral": True,
            "acceptor_port": port,
            "calling_ae_title": calling,
            "called_ae_title": "CANARYSCP",
            "result": "accepted",
            "end": end,
            "abort_by": abort_by,
            "reject": None,
            "dimse": dimse,
            "user_identity": ident,
            "ip_version": 4,
            "requestor_ip": "127.0.0.1",
            "acceptor_ip": "127.0.0.1",
            "implementation": {"requestor": IMPLEMENTATION, "acceptor": IMPLEMENTATION},
        }

    type2 = {"type": 2, "username": "synth_user", "passcode_present": True}
    echo = {"C-ECHO-RQ": 1, "C-ECHO-RSP": 1}
    find_store = {"C-FIND-RQ": 1, "C-FIND-RSP": 3, "C-STORE-RQ": 1, "C-STORE-RSP": 1}
    out = [one("CANARYSCU", "released", find_store, type2)]
    for calling, kind, _ in IDENTITIES:
        out.append(one(calling, "released", echo,
                       {"type": kind, "username": None, "passcode_present": False}))  # fmt: skip
    out.append(one("CANARYABORT", "aborted", echo, type2, "requestor"))
    return out


def main() -> int:
    port, outdir = int(sys.argv[1]), Path(sys.argv[2])
    server = serve(port)
    try:
        client(port)
        time.sleep(0.5)
    finally:
        server.shutdown()  # type: ignore[attr-defined]
    for t in threading.enumerate():
        if t is not threading.current_thread():
            t.join(timeout=2)
    canaries = {"canaries": {**CANARIES, "jwt": JWT.decode()}}
    (outdir / "canaries.json").write_text(json.dumps(canaries, indent=2) + "\n")
    (outdir / "expected.json").write_text(json.dumps(expected(port), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
