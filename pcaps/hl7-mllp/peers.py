"""Real MLLP peers for the HL7 captures, built on python-hl7 (hl7.mllp, hl7.parse).

    python peers.py listen LOG PORT...          # MLLP listener(s): ACK every message
    python peers.py send LOG PORT MESSAGE...    # one connection, one message after another
    python peers.py write FILE MESSAGE...       # messages as a file for `mllp_send --loose`
    python peers.py expected LOG OUT            # expected.json from the listener's log

The listener parses each message with python-hl7 and answers with python-hl7's own
``Message.create_ack`` (code AA unless ACK_PLAN says otherwise); it logs, as JSON lines, the
MSH routing fields of what it received and of the ACK it sent (never PID/OBX content). That
log, not the sensor's dissector, is the source of expected.json.

ALL PATIENT DATA HERE IS SYNTHETIC. PID and OBX carry canary strings (CANARY-MRN-551,
CANARYPID^ALPHA, CANARY-OBX-RESULT, ...) that a sensor must never output.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import hl7
from hl7.mllp import open_hl7_connection, start_hl7_server

TS = "20250102030405"
CANARIES = [
    "CANARY-MRN-551", "CANARYPID", "CANARY STREET", "CANARYNK1", "CANARY-OBX-RESULT",
    "CANARY-DOB",
]  # fmt: skip

# Synthetic messages: segments joined with CR by _message(). The first character after MSH
# is the field separator; the next four are the encoding characters.
MESSAGES: dict[str, list[str]] = {
    "adt_a01": [
        rf"MSH|^~\&|ADT-SENDER|SYNTH-HOSP|EMPI|SYNTH-HOSP|{TS}||ADT^A01^ADT_A01|MSG-ADT-0001|P|2.5.1",
        f"EVN|A01|{TS}",
        "PID|1||CANARY-MRN-551^^^SYNTH-HOSP^MR||CANARYPID^ALPHA||19700101|F|||1 CANARY STREET^^SYNTHCITY",
        "NK1|1|CANARYNK1^BRAVO|SPO",
        "PV1|1|I|WARD^101^A",
    ],
    "orm_o01": [
        rf"MSH|^~\&|ORDER-ENTRY|SYNTH-HOSP|RIS|SYNTH-RAD|{TS}||ORM^O01^ORM_O01|MSG-ORM-0002|P|2.3.1",
        "PID|1||CANARY-MRN-551^^^SYNTH-HOSP^MR||CANARYPID^ALPHA",
        "ORC|NW|ORD-0002",
        "OBR|1|ORD-0002||CTHEAD^CT HEAD",
    ],
    "oru_r01": [
        rf"MSH|^~\&|LAB|SYNTH-LAB|EHR|SYNTH-HOSP|{TS}||ORU^R01^ORU_R01|MSG-ORU-0003|P|2.5.1",
        "PID|1||CANARY-MRN-551^^^SYNTH-HOSP^MR||CANARYPID^ALPHA",
        "OBR|1||RES-0003|GLU^GLUCOSE",
        "OBX|1|TX|GLU^GLUCOSE||CANARY-OBX-RESULT||||||F",
    ],
    "adt_a08": [
        rf"MSH|^~\&|ADT-SENDER|SYNTH-HOSP|BILLING|SYNTH-FIN|{TS}||ADT^A08^ADT_A01|MSG-ADT-0101|T|2.4",
        f"EVN|A08|{TS}",
        "PID|1||CANARY-MRN-551^^^SYNTH-HOSP^MR||CANARYPID^ALPHA||CANARY-DOB",
        "PV1|1|O",
    ],
    "adt_a03": [
        rf"MSH|^~\&|ADT-SENDER|SYNTH-HOSP|BILLING|SYNTH-FIN|{TS}||ADT^A03^ADT_A03|MSG-ADT-0102|T|2.4",
        f"EVN|A03|{TS}",
        "PID|1||CANARY-MRN-551^^^SYNTH-HOSP^MR||CANARYPID^ALPHA",
    ],
    # Custom separators: field '#', component '$' (MSH-1 and MSH-2 say so).
    "oru_r01_custom": [
        rf"MSH#$~\&#LAB$1.2.840.99999.1$ISO#SYNTH-LAB#EHR#SYNTH-HOSP#{TS}##ORU$R01$ORU_R01#MSG-ORU-0103#P#2.5.1",
        "PID#1##CANARY-MRN-551$$$SYNTH-HOSP$MR##CANARYPID$ALPHA",
        "OBX#1#TX#GLU$GLUCOSE##CANARY-OBX-RESULT######F",
    ],
    "adt_a04": [
        rf"MSH|^~\&|REG|SYNTH-CLINIC|EMPI|SYNTH-HOSP|{TS}||ADT^A04|MSG-ADT-0201|P|2.3",
        f"EVN|A04|{TS}",
        "PID|1||CANARY-MRN-551||CANARYPID^ALPHA",
    ],
    "oru_r01_v23": [
        rf"MSH|^~\&|LAB|SYNTH-LAB|EHR|SYNTH-HOSP|{TS}||ORU^R01|MSG-ORU-0202|P|2.3",
        "PID|1||CANARY-MRN-551||CANARYPID^ALPHA",
        "OBX|1|TX|GLU^GLUCOSE||CANARY-OBX-RESULT||||||F",
    ],
}

# What the listener answers, by the control id it acknowledges (default AA).
ACK_PLAN = {"MSG-ORU-0003": "AE", "MSG-ORU-0103": "AR", "MSG-ORU-0202": "CA"}


def _message(name: str) -> str:
    return "\r".join(MESSAGES[name]) + "\r"


def _routing(msg: hl7.Message) -> dict[str, Any]:
    """MSH (and MSA) routing fields of a python-hl7 message, components joined with ^."""
    msh = msg.segment("MSH")
    comp = str(msh(2))[0]

    def f(n: int) -> str:
        return str(msh(n)).replace(comp, "^")

    kind = str(msh(9)).split(comp)
    kind += [""] * (3 - len(kind))
    out: dict[str, Any] = {
        "message_type": kind[0],
        "trigger_event": kind[1],
        "message_structure": kind[2],
        "message_control_id": f(10),
        "processing_id": f(11).split("^")[0],
        "version_id": f(12).split("^")[0],
        "sending_application": f(3),
        "sending_facility": f(4),
        "receiving_application": f(5),
        "receiving_facility": f(6),
        "ack_code": None,
        "acknowledged_control_id": None,
    }
    try:
        msa = msg.segment("MSA")
    except KeyError:
        return out
    out["ack_code"] = str(msa(1))
    out["acknowledged_control_id"] = str(msa(2))
    return out


def _log(path: str, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


async def _listen(log: str, ports: list[int]) -> None:
    connections = 0

    def handler(port: int) -> Any:
        async def handle(reader: Any, writer: Any) -> None:
            nonlocal connections
            connections += 1
            conn = connections
            client_port = writer.get_extra_info("peername")[1]
            try:
                while True:
                    msg = await reader.readmessage()
                    seen = _routing(msg)
                    code = ACK_PLAN.get(seen["message_control_id"], "AA")
                    ack = msg.create_ack(code, message_id="ACK-" + seen["message_control_id"])
                    _log(log, {"event": "received", "conn": conn, "server_port": port,
                               "client_port": client_port, **seen})  # fmt: skip
                    writer.writemessage(ack)
                    await writer.drain()
                    _log(log, {"event": "ack-sent", "conn": conn, "server_port": port,
                               "client_port": client_port, **_routing(ack)})  # fmt: skip
            except asyncio.IncompleteReadError:
                pass  # the client closed the connection
            finally:
                writer.close()

        return handle

    servers = [await start_hl7_server(handler(p), "127.0.0.1", p) for p in ports]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("listening", *ports, flush=True)
    await stop.wait()
    for s in servers:
        s.close()
        await s.wait_closed()


async def _send(log: str, port: int, names: list[str]) -> None:
    reader, writer = await open_hl7_connection("127.0.0.1", port)
    try:
        for name in names:
            writer.writemessage(hl7.parse(_message(name)))
            await writer.drain()
            ack = await asyncio.wait_for(reader.readmessage(), 10)
            _log(log, {"event": "ack-received", "port": port, "sent": name, **_routing(ack)})
    finally:
        writer.close()
        await writer.wait_closed()


def _expected(log: str, out: str) -> None:
    """Connections in the order they were accepted, each with its messages in order."""
    conns: dict[int, dict[str, Any]] = {}
    for line in Path(log).read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        conn = conns.setdefault(rec["conn"], {"server_port": rec["server_port"],
                                              "client_port": rec["client_port"], "messages": []})  # fmt: skip
        direction = "client" if rec["event"] == "received" else "server"
        fields = {k: v for k, v in rec.items() if k not in ("event", "conn", "server_port", "client_port")}
        conn["messages"].append({"direction": direction, **fields})
    doc = {
        "source": "listener log (python-hl7 parse of each message received and ACK sent)",
        "canaries": CANARIES,
        "connections": [conns[k] for k in sorted(conns)],
    }
    Path(out).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str]) -> None:
    cmd, *rest = argv
    if cmd == "listen":
        asyncio.run(_listen(rest[0], [int(p) for p in rest[1:]]))
    elif cmd == "send":
        asyncio.run(_send(rest[0], int(rest[1]), rest[2:]))
    elif cmd == "write":
        # mllp_send --loose splits on 'MSH|^~\&|' and turns newlines into CR.
        Path(rest[0]).write_text("\n".join("\n".join(MESSAGES[n]) for n in rest[1:]) + "\n")
    elif cmd == "expected":
        _expected(rest[0], rest[1])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv[1:])
