"""Real MLLP captures (pcaps/hl7-*/): our messages equal expected.json and tshark's decode.

expected.json comes from the listener's own log (python-hl7's parse of each message it
received and each ACK it sent), so it is an oracle independent of this dissector. tshark
4.0's HL7 dissector is the second oracle (differential): per connection and direction, the
message type and trigger event it shows (``hl7.message.type``, ``hl7.event.type``) and the
MSH and MSA segments it splits out (``hl7.segment``), whose fields the test reads with a
plain ``str.split`` (an independent, naive reading of MSH-3..12 and MSA-1..2).

Normalisations:

N1  Components of MSH-3..6 are shown joined with ``^`` whatever MSH-2 says (our dissector
    does this; the expected builder and the tshark reader here do the same).
N2  tshark's ``hl7.segment`` values keep their CR; it is stripped. tshark leaves out a last
    segment that has no CR before the end block (mllp_send sends those): only MSH and MSA
    are read here, and they always end with CR in these captures.
N3  tshark needs ``-d tcp.port==P,hl7`` for ports other than 2575: the server port of each
    connection our side found is passed.

The PHI canaries listed in expected.json (in PID, NK1 and OBX) are in the captures and must
appear in nothing our dissector produced. tshark's segments other than MSH and MSA are
dropped as soon as they are read and never printed.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dissectors.base import Direction, bpf_head_of
from dissectors.hl7 import HL7, HL7Message

from .capture import Decoded, decode, read_connections

PCAPS = Path(__file__).resolve().parents[3] / "pcaps"
CASES = sorted(p.name for p in PCAPS.glob("hl7-*") if list(p.glob("*.pcap")))
FIELDS = (
    "message_type", "trigger_event", "message_structure", "message_control_id", "processing_id",
    "version_id", "sending_application", "sending_facility", "receiving_application",
    "receiving_facility", "ack_code", "acknowledged_control_id",
)  # fmt: skip


def _capture(case: str) -> Path:
    return next(iter(sorted((PCAPS / case).glob("*.pcap"))))


@functools.cache
def ours(case: str) -> list[Decoded]:
    out = []
    for conn in read_connections(_capture(case)):
        decoded = decode(conn)
        assert decoded is not None, f"{case}: the probe did not match {conn.client}->{conn.server}"
        out.append(decoded)
    return out


def expected(case: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((PCAPS / case / "expected.json").read_text())
    return doc


def _view(decoded: Decoded) -> list[dict[str, Any]]:
    return [
        {
            "direction": decoded.side(e.direction),
            **{f: getattr(e, f) for f in FIELDS},
            "ack_code": None if e.ack_code is None else e.ack_code.value,
        }
        for e in decoded.events
        if isinstance(e, HL7Message)
    ]


def test_cases_found() -> None:
    assert {"hl7-mllp", "hl7-two-listeners", "hl7-2575"} <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_messages_equal_expected(case: str) -> None:
    exp = expected(case)["connections"]
    decoded = ours(case)
    assert len(decoded) == len(exp)
    for d, e in zip(decoded, exp, strict=True):
        assert d.connection.server[1] == e["server_port"]
        assert d.connection.client[1] == e["client_port"]
        assert _view(d) == e["messages"], f"{case} port {e['server_port']}"


@pytest.mark.parametrize("case", CASES)
def test_clean_capture_has_no_anomalies(case: str) -> None:
    for d in ours(case):
        assert [e for e in d.events + d.close_events if not isinstance(e, HL7Message)] == []
        assert d.session.summary()["hl7"]["anomalies"] == {}


@pytest.mark.parametrize("case", CASES)
def test_originator_and_summary(case: str) -> None:
    for d, e in zip(ours(case), expected(case)["connections"], strict=True):
        s = d.session
        client = s.originator()
        assert client is not None and d.side(client) == "client"
        summary = s.summary()["hl7"]
        msgs = e["messages"]
        kinds: dict[str, int] = {}
        acks: dict[str, int] = {}
        for m in msgs:
            kind = m["message_type"] + ("^" + m["trigger_event"] if m["trigger_event"] else "")
            kinds[kind] = kinds.get(kind, 0) + 1
            if m["ack_code"]:
                acks[m["ack_code"]] = acks.get(m["ack_code"], 0) + 1
        assert summary["messages"] == kinds
        assert summary["acks"] == acks
        first = next(m for m in msgs if m["direction"] == "client")
        for f in ("sending_application", "sending_facility", "receiving_application",
                  "receiving_facility"):  # fmt: skip
            assert summary[f] == first[f]
        requests = [m["message_control_id"] for m in msgs if m["direction"] == "client"]
        assert summary["control_ids"] == requests[:8]
        assert summary["versions"] == list(dict.fromkeys(m["version_id"] for m in msgs))
        sent = {"client": 0, "server": 0}
        for chunk in d.connection.chunks:
            sent["client" if chunk.src == d.connection.client else "server"] += len(chunk.data)
        assert summary["bytes"] == sent
        json.dumps(summary)  # JSON-ready


@pytest.mark.parametrize("case", CASES)
def test_phi_canaries_appear_nowhere(case: str) -> None:
    canaries = expected(case)["canaries"]
    raw = _capture(case).read_bytes()
    # The canaries are really in the capture (in PID / OBX), so their absence below means something.
    assert any(c.encode() in raw for c in canaries)
    for d in ours(case):
        texts = (
            repr(d.events) + repr(d.close_events) + repr(d.session)
            + json.dumps(d.session.summary()) + repr(vars_of(d.session))
        )  # fmt: skip
        leaked = [c for c in canaries if c in texts]
        assert leaked == [], f"PHI canaries in our output: {leaked}"


def vars_of(obj: object) -> dict[str, Any]:
    """Every attribute of the session, slots included, for the canary check."""
    return {k: getattr(obj, k) for k in dir(obj) if not k.startswith("__")}


# --------------------------------------------------------------------------------------
# tshark differential
# --------------------------------------------------------------------------------------


def _tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        pytest.fail("tshark is not installed: this differential test needs Wireshark's tshark")
    return path


ROUTING = (
    ("sending_application", 3),
    ("sending_facility", 4),
    ("receiving_application", 5),
    ("receiving_facility", 6),
)


def _msh_view(msh: str, msa: str | None) -> dict[str, Any]:
    """A naive reading of an MSH (and MSA) segment: split on MSH-1, components on MSH-2[0]."""
    sep, comp = msh[3], msh[4]
    f = msh.split(sep)  # f[1] is MSH-2, so MSH-n is f[n - 1]

    def field(n: int) -> str:
        return f[n - 1] if n - 1 < len(f) else ""

    kind = [*field(9).split(comp), "", ""]
    view = {
        "message_type": kind[0],
        "trigger_event": kind[1],
        "message_structure": kind[2],
        "message_control_id": field(10),
        "processing_id": field(11).split(comp)[0],
        "version_id": field(12).split(comp)[0],
        **{name: field(n).replace(comp, "^") for name, n in ROUTING},  # N1
        "ack_code": None,
        "acknowledged_control_id": None,
    }
    if msa is not None:
        a = [*msa.split(sep), "", ""]
        view["ack_code"], view["acknowledged_control_id"] = a[1], a[2]
    return view


@functools.cache
def tshark_view(case: str) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """Per connection (client port, server port): tshark's messages in order."""
    decoded = ours(case)
    ports = sorted({d.connection.server[1] for d in decoded})
    cmd = [_tshark(), "-r", str(_capture(case))]
    for p in ports:
        cmd += ["-d", f"tcp.port=={p},hl7"]  # N3
    cmd += ["-Y", "hl7", "-T", "json"]
    for f in ("tcp.srcport", "tcp.dstport", "hl7.message.type", "hl7.event.type", "hl7.segment"):
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    conns: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for packet in json.loads(out):
        layers = packet["_source"]["layers"]
        src, dst = int(layers["tcp.srcport"][0]), int(layers["tcp.dstport"][0])
        server = src in ports
        key = (dst, src) if server else (src, dst)
        types, events = layers["hl7.message.type"], layers.get("hl7.event.type", [])
        # Keep only MSH and MSA segments (N2); split them per message at each MSH.
        messages: list[list[str]] = []
        for seg in layers["hl7.segment"]:
            seg = seg.rstrip("\r")
            if seg.startswith("MSH"):
                messages.append([seg])
            elif seg.startswith("MSA") and messages and len(messages[-1]) == 1:
                messages[-1].append(seg)
        del layers
        assert len(messages) == len(types)
        for i, segs in enumerate(messages):
            view = _msh_view(segs[0], segs[1] if len(segs) > 1 else None)
            view["tshark_type"] = types[i]
            view["tshark_event"] = events[i] if i < len(events) else ""
            view["direction"] = "server" if server else "client"
            conns.setdefault(key, []).append(view)
    return conns


@pytest.mark.parametrize("case", CASES)
def test_tshark_differential(case: str) -> None:
    theirs = tshark_view(case)
    decoded = {(d.connection.client[1], d.connection.server[1]): d for d in ours(case)}
    assert theirs.keys() == decoded.keys(), "tshark and we see HL7 on different connections"
    for key, d in decoded.items():
        mine = _view(d)
        tsh = theirs[key]
        assert len(mine) == len(tsh), f"{key}: number of messages"
        for a, b in zip(mine, tsh, strict=True):
            # tshark's own type/event fields, then the naive MSH/MSA reading of its segments.
            assert (a["message_type"], a["trigger_event"]) == (b["tshark_type"], b["tshark_event"])
            assert a == {k: v for k, v in b.items() if not k.startswith("tshark_")}
        assert [m["direction"] for m in mine] == [m["direction"] for m in tsh]


def test_originator_is_the_connecting_side() -> None:
    for case in CASES:
        for d in ours(case):
            assert d.endpoint(Direction.ORIGIN) == d.connection.client


# --------------------------------------------------------------------------------------
# The BPF head test: libpcap admits exactly the segments that start a message
# --------------------------------------------------------------------------------------

# IPv4 TCP payload byte K and payload length, as the sensor's BPF builder writes them.
_P4 = "tcp[((tcp[12:1] & 0xf0) >> 2) + {k}{w}]"
_L4 = "(ip[2:2] - ((ip[0:1] & 0x0f) << 2) - ((tcp[12:1] & 0xf0) >> 2))"


def _bpf_heads() -> str:
    def byte_at(k: int, width: int) -> str:
        return _P4.format(k=k, w="" if width == 1 else f":{width}")

    head = bpf_head_of(HL7, byte_at, _L4)
    assert head is not None
    return f"ip and tcp and {head}"


def _tcpdump_count(path: Path, expression: str) -> int:
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        pytest.fail("tcpdump is not installed: the BPF test needs it to compile and run filters")
    out = subprocess.run(
        [tcpdump, "-n", "-r", str(path), expression],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return len(out.stdout.splitlines())


@pytest.mark.parametrize("case", CASES)
def test_bpf_head_admits_every_message_start(case: str) -> None:
    messages = sum(len(c["messages"]) for c in expected(case)["connections"])
    # Every message here starts its own segment, and no other segment starts with <VT>MSH.
    assert _tcpdump_count(_capture(case), _bpf_heads()) == messages


def test_bpf_head_admits_no_dicom_segment() -> None:
    dicom = sorted(PCAPS.glob("*/capture.pcap"))
    assert dicom
    for path in dicom[:4]:
        assert _tcpdump_count(path, _bpf_heads()) == 0, path.parent.name
