"""pynetdicom peers for pcaps/pynetdicom-128-contexts (run by pcaps/generate.sh).

    python pynetdicom_128.py scp HOST PORT   # Verification + every storage SOP class
    python pynetdicom_128.py scu HOST PORT   # 128 presentation contexts, one C-ECHO, release

128 is the most presentation contexts an A-ASSOCIATE-RQ can carry (odd context ids 1-255):
the richest request a real peer sends, the unit of bench/live_flood.py's address flood.
"""

from __future__ import annotations

import sys

from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]


def scp(host: str, port: int) -> None:
    ae = AE(ae_title="ARCHIVE")
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax)
    handlers = [(evt.EVT_C_ECHO, lambda event: 0)]
    ae.start_server((host, port), block=True, evt_handlers=handlers)


def scu(host: str, port: int) -> int:
    ae = AE(ae_title="MODALITY128")
    ae.add_requested_context(Verification)
    for context in AllStoragePresentationContexts[:127]:
        ae.add_requested_context(context.abstract_syntax)
    assoc = ae.associate(host, port, ae_title="ARCHIVE")
    if not assoc.is_established:
        return 1
    status = assoc.send_c_echo()
    assoc.release()
    print(f"accepted contexts {len(assoc.accepted_contexts)} echo status {status.Status:#06x}")
    return 0 if status and status.Status == 0 else 1


if __name__ == "__main__":
    if sys.argv[1] == "scp":
        scp(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(scu(sys.argv[2], int(sys.argv[3])))
