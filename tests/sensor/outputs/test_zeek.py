"""``--zeek-log``: a Zeek-style dicom.log in Zeek's TSV and JSON flavours."""

from __future__ import annotations

import copy
import json
import re
import shutil
import struct
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dpkt
import pytest

from sensor.cli import main
from sensor.outputs.identity import zeek_uid
from sensor.outputs.zeek import (
    EMPTY_FIELD,
    FIELDS,
    UNSET_FIELD,
    ZeekLog,
    escape,
    json_object,
    tsv_header,
    tsv_line,
    tsv_value,
    zeek_row,
)
from tests.dissectors.dicom import framing as f
from tests.dissectors.dicom import vectors as v

from . import zeeklog
from .helpers import PCAPS, ROOT, SCENARIOS, json_lines, read, scenario

DOC = ROOT / "docs" / "fields-zeek.md"
ZEEK_CUT = shutil.which("zeek-cut") or shutil.which("bro-cut")  # bro-cut: Debian's bro-aux
OPEN_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}$")
CAPTURES = [
    *(f"zones/{name}" for name in SCENARIOS),
    "dcmtk-find-move-get",
    "dcmtk-reject-called-ae",
    "abort-by-requestor",
    "derived-gap",
    "derived-vlan",
    "pynetdicom-user-identity",
    "pynetdicom-ipv6",
]


def _zeek_cut(text: str, *args: str) -> list[list[str]]:
    """The rows ``zeek-cut ARGS`` prints for the log ``text``, split at tabs."""
    if ZEEK_CUT is None:
        raise AssertionError("no zeek-cut")
    done = subprocess.run(
        [ZEEK_CUT, *args], input=text, capture_output=True, text=True, check=True, timeout=30
    )
    return [line.split("\t") for line in done.stdout.splitlines()]


def _capture(name: str) -> tuple[Path, Path | None]:
    if name.startswith("zones/"):
        return scenario(name.split("/", 1)[1])
    return next((PCAPS / name).glob("capture.pcap*")), None


def _read_logs(name: str, out: Path) -> tuple[list[dict[str, Any]], str, list[dict[str, Any]]]:
    """(association records, dicom.log TSV text, dicom.log JSON objects) of one capture."""
    capture, config = _capture(name)
    out.mkdir(parents=True, exist_ok=True)
    read(
        capture,
        "--associations",
        str(out / "assoc.jsonl"),
        "--zeek-log",
        str(out / "dicom.log"),
        config=config,
    )
    read(capture, "--zeek-log", str(out / "dicom.json"), "--zeek-format", "json", config=config)
    return (
        json_lines(out / "assoc.jsonl"),
        (out / "dicom.log").read_text(encoding="utf-8"),
        json_lines(out / "dicom.json"),
    )


@pytest.mark.parametrize("name", CAPTURES)
def test_tsv_log_has_zeeks_layout_and_the_records(name: str, tmp_path: Path) -> None:
    records, text, _ = _read_logs(name, tmp_path)
    assert records
    log = zeeklog.parse(text)
    assert text.splitlines()[0] == "#separator \\x09"
    assert log.header_order == list(zeeklog.HEADER_ORDER)
    assert (log.separator, log.header["set_separator"]) == ("\t", ",")
    assert (log.header["empty_field"], log.header["unset_field"]) == ("(empty)", "-")
    assert log.header["path"] == "dicom"
    assert OPEN_STAMP.match(log.header["open"])
    assert log.close is not None and OPEN_STAMP.match(log.close)
    assert log.fields == [name for name, _ in FIELDS]
    assert log.types == [zeek_type for _, zeek_type in FIELDS]
    assert len(log.rows) == len(records)
    for raw, record in zip(log.records(), records, strict=True):
        row = {k: log.typed(k, text) for k, text in raw.items()}
        src, dst, dicom = record["source"], record["destination"], record["dicom"]
        assert (row["id.orig_h"], row["id.orig_p"]) == (src["ip"], src["port"])
        assert (row["id.resp_h"], row["id.resp_p"]) == (dst["ip"], dst["port"])
        start = datetime.fromisoformat(record["event"]["start"]).timestamp()
        assert row["ts"] == pytest.approx(start, abs=1e-6)
        assert row["duration"] == pytest.approx(record["event"]["duration"] / 1e9, abs=1e-6)
        assert row["uid"] == zeek_uid(
            src["ip"], src["port"], dst["ip"], dst["port"], record["event"]["start"]
        )
        assert re.fullmatch(r"C[0-9A-Za-z]{17}", row["uid"])
        assert row["calling_ae"] == dicom["calling_ae_title"]
        assert row["called_ae"] == dicom["called_ae_title"]
        assert row["result"] == dicom["association"]["result"]
        assert row["end"] == dicom["association"]["end"]
        assert row["reject_reason"] == dicom.get("reject", {}).get("reason_name")
        assert row["abort_by"] == dicom.get("abort", {}).get("by")
        assert row["dimse"] == [f"{k}:{n}" for k, n in dicom["dimse"].items()]
        assert row["statuses"] == [f"{k}:{n}" for k, n in dicom["dimse_status"].items()]
        assert row["move_destinations"] == sorted(dicom.get("move_destinations", []))
        assert row["pdata_bytes_orig"] == dicom["pdata"]["bytes_by_direction"]["requestor"]
        assert row["pdata_bytes_resp"] == dicom["pdata"]["bytes_by_direction"]["acceptor"]
        assert row["anomalies"] == dicom.get("anomalies", [])
        assert row["vlan"] == record["network"].get("vlan", {}).get("id")
        names = {
            pc["abstract_syntax_name"] or pc["abstract_syntax"]
            for pc in dicom.get("presentation_contexts", [])
        }
        assert set(row["contexts"]) == names
        ident = dicom.get("user_identity")
        assert row["passcode_present"] == (ident["passcode_present"] if ident else None)
        assert row["username"] == (ident.get("username") if ident else None)


@pytest.mark.parametrize("name", CAPTURES)
def test_json_flavour_matches_tsv(name: str, tmp_path: Path) -> None:
    _, text, objects = _read_logs(name, tmp_path)
    log = zeeklog.parse(text)
    assert len(objects) == len(log.rows)
    for obj, raw in zip(objects, log.records(), strict=True):
        assert isinstance(obj["ts"], float)
        assert list(obj) == [k for k, _ in FIELDS if k in obj]  # Zeek's field order
        from_tsv = {k: log.typed(k, t) for k, t in raw.items()}
        assert obj == {k: val for k, val in from_tsv.items() if val is not None}
    for line in (tmp_path / "dicom.json").read_text(encoding="utf-8").splitlines():
        assert not line.startswith("#")


@pytest.mark.skipif(ZEEK_CUT is None, reason="neither zeek-cut nor bro-cut is installed")
@pytest.mark.parametrize("name", ["zones/credentials-move-query", "derived-vlan"])
def test_zeek_cut_reads_dicom_log(name: str, tmp_path: Path) -> None:
    _, text, _ = _read_logs(name, tmp_path)
    log = zeeklog.parse(text)
    columns = ["uid", "id.orig_h", "id.resp_p", "calling_ae", "called_ae", "dimse", "vlan", "ts"]
    assert _zeek_cut(text, *columns) == log.cut(*columns)
    # -U: zeek-cut found the time column by its #types entry and converted it.
    want = [
        [datetime.fromtimestamp(float(ts), tz=UTC).strftime("%Y-%m-%d %H:%M:%S"), uid]
        for ts, uid in log.cut("ts", "uid")
    ]
    assert _zeek_cut(text, "-U", "%Y-%m-%d %H:%M:%S", "ts", "uid") == want
    # -n: every column but the named ones.
    assert _zeek_cut(text, "-n", "ts") == log.cut(*log.fields[1:])


# -- escaping -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "in_set", "text"),
    [
        ("PACS", False, "PACS"),
        ("a\tb", False, "a\\x09b"),
        ("line\nbreak\r", False, "line\\x0abreak\\x0d"),
        ("nul\x00del\x7f", False, "nul\\x00del\\x7f"),
        ("back\\slash", False, "back\\x5cslash"),
        ("a,b", False, "a,b"),
        ("a,b", True, "a\\x2cb"),
        ("é", False, "\\xc3\\xa9"),
        ("放射", False, "\\xe6\\x94\\xbe\\xe5\\xb0\\x84"),
        ("-", False, "\\x2d"),
        ("--", False, "--"),
        ("(empty)", False, "\\x28empty)"),
        ("(empty)", True, "\\x28empty)"),
        ("-", True, "\\x2d"),
    ],
)
def test_escape(value: str, in_set: bool, text: str) -> None:
    assert escape(value, in_set) == text
    assert zeeklog.unescape(text) == value


def test_empty_unset_and_typed_values() -> None:
    assert tsv_value(None, "string") == UNSET_FIELD
    assert tsv_value("", "string") == EMPTY_FIELD
    assert tsv_value([], "set[string]") == EMPTY_FIELD
    assert tsv_value(None, "set[string]") == UNSET_FIELD
    assert tsv_value(["-"], "set[string]") == "\\x2d"
    assert tsv_value(True, "bool") == "T"
    assert tsv_value(False, "bool") == "F"
    assert tsv_value(1.5, "time") == "1.500000"
    assert tsv_value(104, "port") == "104"


HOSTILE_USER = "evil\tuser\nname,é\\-"


def _a_record(tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "assoc.jsonl"
    read(PCAPS / "pynetdicom-user-identity" / "capture.pcap", "--associations", str(out))
    return json_lines(out)[0]


def _hostile(record: dict[str, Any]) -> dict[str, Any]:
    bad = copy.deepcopy(record)
    bad["dicom"]["user_identity"]["username"] = HOSTILE_USER
    bad["dicom"]["calling_ae_title"] = "-"
    bad["dicom"]["called_ae_title"] = ""
    bad["dicom"]["move_destinations"] = ["A,B", "TAB\tAE", "(empty)"]
    return bad


def test_hostile_values_stay_in_their_column(tmp_path: Path) -> None:
    row = zeek_row(_hostile(_a_record(tmp_path)))
    line = tsv_line(row)
    assert "\n" not in line
    assert len(line.split("\t")) == len(FIELDS)
    text = "\n".join(tsv_header(0.0)) + "\n" + line + "\n#close\t1970-01-01-00-00-00\n"
    log = zeeklog.parse(text)
    (raw,) = log.records()
    assert log.typed("username", raw["username"]) == HOSTILE_USER
    assert raw["calling_ae"] == "\\x2d"
    assert log.typed("calling_ae", raw["calling_ae"]) == "-"
    assert raw["called_ae"] == "(empty)"
    assert log.typed("called_ae", raw["called_ae"]) == ""
    assert sorted(log.typed("move_destinations", raw["move_destinations"])) == sorted(
        ["A,B", "TAB\tAE", "(empty)"]
    )
    assert json_object(row)["username"] == HOSTILE_USER
    if ZEEK_CUT is not None:
        cut = _zeek_cut(text, "username", "calling_ae", "called_ae")
        assert cut == [[escape(HOSTILE_USER), "\\x2d", "(empty)"]]


def _frames(rq: bytes) -> list[bytes]:
    """Ethernet frames of one association: handshake, RQ, AC, release, FIN."""
    client, server, cport, sport = "10.10.0.1", "10.10.0.2", 40123, 104

    def frame(
        src: str, dst: str, sp: int, dp: int, seq: int, ack: int, flags: int, data: bytes = b""
    ) -> bytes:
        tcp = dpkt.tcp.TCP(sport=sp, dport=dp, seq=seq, ack=ack, flags=flags, win=65535, data=data)
        ip = dpkt.ip.IP(
            src=bytes(map(int, src.split("."))),
            dst=bytes(map(int, dst.split("."))),
            p=dpkt.ip.IP_PROTO_TCP,
            ttl=64,
            data=tcp,
        )
        eth = dpkt.ethernet.Ethernet(
            src=b"\x02" * 6, dst=b"\x04" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip
        )
        return bytes(eth)

    syn, ack, psh, fin = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_PUSH, dpkt.tcp.TH_FIN
    c, s = 1000, 5000
    out = [
        frame(client, server, cport, sport, c, 0, syn),
        frame(server, client, sport, cport, s, c + 1, syn | ack),
    ]
    c, s = c + 1, s + 1
    out.append(frame(client, server, cport, sport, c, s, ack))
    for from_client, data in (
        (True, rq),
        (False, v.AC_ECHO),
        (True, v.RELEASE_RQ),
        (False, v.RELEASE_RP),
    ):
        if from_client:
            out.append(frame(client, server, cport, sport, c, s, psh | ack, data))
            c += len(data)
        else:
            out.append(frame(server, client, sport, cport, s, c, psh | ack, data))
            s += len(data)
    out.append(frame(client, server, cport, sport, c, s, fin | ack))
    out.append(frame(server, client, sport, cport, s, c + 1, fin | ack))
    out.append(frame(client, server, cport, sport, c + 1, s + 1, ack))
    return out


def _rq_with_username(username: bytes) -> bytes:
    """DCMTK's echo A-ASSOCIATE-RQ with a type 1 user identity (username only) added."""
    items = v.RQ_ECHO[74:]
    pos, kept = 0, []
    while pos < len(items):
        item_type, length = items[pos], struct.unpack_from(">H", items, pos + 2)[0]
        if item_type != 0x50:
            kept.append(items[pos : pos + 4 + length])
        pos += 4 + length
    identity = f.item(0x58, struct.pack(">BBH", 1, 0, len(username)) + username + b"\x00\x00")
    ui = f.user_info(f.item(0x51, struct.pack(">I", 16384)), identity)
    return f.associate(1, *kept, ui)


def test_hostile_username_from_the_wire(tmp_path: Path) -> None:
    """A username with a tab, comma, backslash, non-ASCII and a lone '-' part, off the wire."""
    username = "rad\tiology,é\\ -".encode()
    pcap = tmp_path / "hostile.pcap"
    with pcap.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB)
        for i, buf in enumerate(_frames(_rq_with_username(username))):
            writer.writepkt(buf, ts=1_700_000_000 + i / 1000)
    log_path = tmp_path / "dicom.log"
    read(pcap, "--zeek-log", str(log_path), "--associations", str(tmp_path / "a.jsonl"))
    (record,) = json_lines(tmp_path / "a.jsonl")
    seen = record["dicom"]["user_identity"]["username"]
    assert seen == "rad?iology,é\\ -"  # the dissector already made the tab a '?'
    text = log_path.read_text(encoding="utf-8")
    log = zeeklog.parse(text)
    (raw,) = log.records()
    assert raw["username"] == "rad?iology,\\xc3\\xa9\\x5c -"
    assert log.typed("username", raw["username"]) == seen
    if ZEEK_CUT is not None:
        assert _zeek_cut(text, "username") == [[raw["username"]]]


# -- the sinks ------------------------------------------------------------------------


def test_reopened_log_starts_with_a_header(tmp_path: Path) -> None:
    """After logrotate moves dicom.log away, the reopened file is a whole Zeek log too."""
    record = _a_record(tmp_path)
    path = tmp_path / "dicom.log"
    sink = ZeekLog(str(path))
    sink.write(record)
    path.rename(tmp_path / "dicom.log.1")
    sink.reopen()
    sink.write(record)
    sink.close()
    for name in ("dicom.log.1", "dicom.log"):
        log = zeeklog.parse((tmp_path / name).read_text(encoding="utf-8"))
        assert len(log.rows) == 1
        assert log.fields == [n for n, _ in FIELDS]
    assert zeeklog.parse(path.read_text(encoding="utf-8")).close is not None


def test_other_records_are_left_out(tmp_path: Path) -> None:
    sink = ZeekLog(str(tmp_path / "dicom.log"), "json")
    sink.write({"event": {"dataset": "hl7.connection"}, "hl7": {}})
    sink.close()
    assert sink.count == 0
    assert (tmp_path / "dicom.log").read_text() == ""


def test_one_read_feeds_records_and_zeek_log_alike(tmp_path: Path) -> None:
    capture, config = scenario("perimeter")
    records, log = tmp_path / "a.jsonl", tmp_path / "dicom.log"
    argv = ["read", str(capture), "-c", str(config), "-q"]
    assert main([*argv, "--associations", str(records), "--zeek-log", str(log)]) == 0
    rows = zeeklog.parse(log.read_text()).rows
    assert len(rows) == len(json_lines(records)) > 0


def test_zeek_log_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    capture, config = scenario("perimeter")
    assert main(["read", str(capture), "-c", str(config), "-q", "--zeek-log", "-"]) == 0
    log = zeeklog.parse(capsys.readouterr().out)
    assert log.rows and log.close is not None


def test_fields_are_documented() -> None:
    """docs/fields-zeek.md lists every field with its type, in log order."""
    rows = re.findall(
        r"^\|\s*`([a-z_.]+)`\s*\|\s*`([a-z\[\]]+)`\s*\|", DOC.read_text("utf-8"), flags=re.MULTILINE
    )
    assert rows == list(FIELDS)


def test_unknown_zeek_format_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["read", "x.pcap", "--zeek-log", "x.log", "--zeek-format", "csv"])
    assert exc.value.code == 2


def test_row_is_json_serialisable(tmp_path: Path) -> None:
    json.dumps(json_object(zeek_row(_a_record(tmp_path))))
