"""A malformed-capture corpus: each case builds its file in tmp_path and runs the CLI.

Every case runs ``python -m sensor.cli read`` in a subprocess with a timeout and its peak
RSS measured (``wait4``). A case passes when the sensor exits 0 and counts what was wrong
(``dicom_anomalies_total``, ``dicom_sensor_decode_drops_total`` or a record's
``dicom.anomalies``), or, for a file that cannot be read at all, exits 2 with exactly one
line on stderr. Never a traceback, a hang or unbounded memory.
"""

from __future__ import annotations

import struct
from pathlib import Path

import dpkt
import pytest

from .helpers import (
    APP_CONTEXT,
    PCAPS,
    RELEASE_RP,
    RELEASE_RQ,
    VERIFICATION,
    Run,
    associate_ac,
    associate_rq,
    counted_trouble,
    dicom_conversation,
    echo_rq_command,
    eth,
    ip6,
    item,
    metric_sum,
    pcap_bytes,
    pcapng_block,
    pcapng_epb,
    pcapng_idb,
    pcapng_shb,
    pdu,
    pdv,
    presentation_context,
    read_pcap,
    run_sensor,
    user_information,
    write_pcap,
)

TIMEOUT = 60.0
MAX_SECONDS = 30.0
MAX_RSS_MB = 200.0
CMD = echo_rq_command()


def echo_conversation() -> list[tuple[float, bytes]]:
    """A well-formed C-ECHO association, 16 frames: frame 3 carries the A-ASSOCIATE-RQ."""
    return dicom_conversation(
        [associate_rq(), pdu(0x04, pdv(1, 3, CMD)), RELEASE_RQ],
        [associate_ac(), b"", RELEASE_RP],
    )


def sensor(tmp_path: Path, capture: Path) -> Run:
    run = run_sensor([capture], tmp_path / "out", timeout=TIMEOUT)
    assert not run.timed_out, f"no exit after {TIMEOUT} s"
    assert "Traceback" not in run.stderr, run.stderr
    assert run.seconds < MAX_SECONDS
    assert run.peak_rss_mb < MAX_RSS_MB, f"peak RSS {run.peak_rss_mb:.0f} MB"
    return run


def assert_counted(run: Run, *expected: str) -> dict[str, float]:
    """Exit 0 and at least one counted anomaly; with ``expected``, one of those names."""
    assert run.rc == 0, run.stderr
    trouble = counted_trouble(run)
    assert trouble, f"nothing counted; stderr: {run.stderr}"
    if expected:
        assert any(name in trouble for name in expected), trouble
    return trouble


def assert_unreadable(run: Run) -> None:
    """Exit 2 with exactly one line on stderr, naming the program."""
    assert run.rc == 2, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("dicom-sensor: ")


def conversation_with(pdus: list[bytes], answers: list[bytes] | None = None) -> list:
    return dicom_conversation(pdus, answers if answers is not None else [associate_ac()])


def write(tmp_path: Path, records: list, name: str = "case.pcap", **kw: int) -> Path:
    return write_pcap(tmp_path / name, records, **kw)


# -- the file itself -----------------------------------------------------------------------


def test_header_only_is_an_empty_capture(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcap"
    path.write_bytes(pcap_bytes([]))
    run = sensor(tmp_path, path)
    # A complete global header and no packets is a valid, empty capture: nothing to count.
    assert run.rc == 0, run.stderr
    assert run.records() == []
    assert metric_sum(run.metrics(), "dicom_sensor_packets_total") == 0


def test_global_header_cut_short_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcap"
    path.write_bytes(pcap_bytes(echo_conversation())[:10])
    assert_unreadable(sensor(tmp_path, path))


def _assert_cut_counted(run: Run) -> None:
    assert run.rc == 0, run.stderr
    assert "capture cut off" in run.stderr
    # The cut must also be visible to monitoring, not only in the human summary.
    cut = sum(
        value
        for (name, _), value in run.metrics().items()
        if "cut" in name and name.endswith("_total")
    )
    assert cut >= 1, "a capture cut off is counted (Pipeline.counters) but never exported"


def test_truncated_mid_record(tmp_path: Path) -> None:
    data = pcap_bytes(echo_conversation())
    path = tmp_path / "mid-record.pcap"
    path.write_bytes(data[: len(data) - 30])
    run = sensor(tmp_path, path)
    _assert_cut_counted(run)
    assert len(run.records()) == 1  # everything up to the cut is still reported


def test_truncated_mid_record_header(tmp_path: Path) -> None:
    data = pcap_bytes(echo_conversation())
    path = tmp_path / "mid-header.pcap"
    path.write_bytes(data[: 24 + 8])
    _assert_cut_counted(sensor(tmp_path, path))


def test_bad_pcap_magic(tmp_path: Path) -> None:
    path = tmp_path / "magic.pcap"
    path.write_bytes(b"\xde\xad\xbe\xef" + pcap_bytes(echo_conversation())[4:])
    assert_unreadable(sensor(tmp_path, path))


def test_bad_pcapng_section_header(tmp_path: Path) -> None:
    shb = pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x11223344, 1, 0, -1))  # bad byte order
    path = tmp_path / "bad-shb.pcapng"
    path.write_bytes(shb + pcapng_idb() + pcapng_epb(1.0, echo_conversation()[0][1]))
    assert_unreadable(sensor(tmp_path, path))


@pytest.mark.parametrize("total", [7, 0x7FFFFF00], ids=["length-7", "length-2GiB"])
def test_bad_pcapng_packet_block(tmp_path: Path, total: int) -> None:
    recs = echo_conversation()
    blocks = [pcapng_epb(ts, frame) for ts, frame in recs]
    blocks[5] = pcapng_epb(recs[5][0], recs[5][1], total=total)
    path = tmp_path / "bad-block.pcapng"
    path.write_bytes(pcapng_shb() + pcapng_idb() + b"".join(blocks))
    _assert_cut_counted(sensor(tmp_path, path))


@pytest.mark.parametrize("linktype", [147, 105], ids=["dlt147-user0", "dlt105-802.11"])
def test_odd_link_type(tmp_path: Path, linktype: int) -> None:
    # Ethernet frames labelled with a link type the sensor does not decode: the file is
    # readable, so the right outcome is exit 0 with every frame counted as a drop.
    path = write(tmp_path, echo_conversation(), linktype=linktype)
    run = sensor(tmp_path, path)
    assert run.rc == 0, f"exit {run.rc}: {run.stderr.strip()}"
    assert_counted(run, "drop:unsupported-linktype")


def test_snaplen_60_on_a_real_capture(tmp_path: Path) -> None:
    _, recs = read_pcap(PCAPS / "dcmtk-find-move-get/capture.pcap")
    path = write(tmp_path, [(ts, b[:60], len(b)) for ts, b in recs], snaplen=60)
    run = sensor(tmp_path, path)
    # No TCP header fits in 60 bytes (14 + 20 + 32 with timestamps): every frame was cut.
    assert_counted(run, "drop:truncated")


def test_snaplen_100_on_a_real_capture(tmp_path: Path) -> None:
    _, recs = read_pcap(PCAPS / "dcmtk-find-move-get/capture.pcap")
    path = write(tmp_path, [(ts, b[:100], len(b)) for ts, b in recs], snaplen=100)
    run = sensor(tmp_path, path)
    assert_counted(run, "anomaly:gap", "drop:truncated")
    assert len(run.records()) == 5  # PDU heads still visible: the associations are found


# -- PDUs and items ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("rq-4GiB", lambda: associate_rq(length=0xFFFFFFF0)),
        ("pdata-4GiB", lambda: pdu(0x04, pdv(1, 3, CMD), length=0xFFFFFFFF)),
        ("pdata-just-under-cap", lambda: pdu(0x04, pdv(1, 3, CMD), length=0x03FFFFFF)),
        ("release-4GiB", lambda: pdu(0x05, bytes(4), length=0xFFFFFFFF)),
        ("abort-4GiB", lambda: pdu(0x07, bytes(4), length=0xFFFFFFFE)),
    ],
)
def test_pdu_length_near_4gib(tmp_path: Path, name: str, make: object) -> None:
    pdus = [make()] if name.startswith("rq") else [associate_rq(), make()]  # type: ignore[operator]
    run = sensor(tmp_path, write(tmp_path, conversation_with(pdus)))
    assert_counted(run)


def test_item_longer_than_its_pdu(tmp_path: Path) -> None:
    pc = item(0x20, bytes((1, 0, 0, 0)) + item(0x30, VERIFICATION), length=60000)
    rq = associate_rq(APP_CONTEXT + pc + user_information())
    assert_counted(sensor(tmp_path, write(tmp_path, conversation_with([rq]))), "anomaly:bad-length")


def test_user_information_longer_than_its_pdu(tmp_path: Path) -> None:
    ui = item(0x50, item(0x51, struct.pack(">I", 16384)), length=0xFFFF)
    rq = associate_rq(APP_CONTEXT + presentation_context() + ui)
    assert_counted(sensor(tmp_path, write(tmp_path, conversation_with([rq]))), "anomaly:bad-length")


def test_zero_length_items_in_a_loop(tmp_path: Path) -> None:
    rq = associate_rq(APP_CONTEXT + presentation_context() + item(0x52, b"") * 5000)
    run = sensor(tmp_path, write(tmp_path, conversation_with([rq])))
    assert_counted(run, "anomaly:too-many")


def test_zero_length_sub_items_in_a_loop(tmp_path: Path) -> None:
    rq = associate_rq(
        APP_CONTEXT + presentation_context() + user_information(item(0x52, b"") * 10000)
    )
    run = sensor(tmp_path, write(tmp_path, conversation_with([rq])))
    assert_counted(run, "anomaly:too-many")


def test_10000_presentation_contexts(tmp_path: Path) -> None:
    # 500 KB of full contexts: over the associate PDU cap, only the fixed part is decoded.
    pcs = b"".join(presentation_context((2 * i + 1) & 0xFF) for i in range(10000))
    rq = associate_rq(APP_CONTEXT + pcs + user_information())
    run = sensor(tmp_path, write(tmp_path, conversation_with([rq])))
    assert_counted(run, "anomaly:too-large")
    assert run.records()[0]["dicom"]["calling_ae_title"] == "HOSTILE-SCU"


def test_10000_empty_presentation_contexts(tmp_path: Path) -> None:
    # 80 KB: under the cap, so the item walk itself meets the context limit.
    pcs = b"".join(item(0x20, bytes(((2 * i + 1) & 0xFF, 0, 0, 0))) for i in range(10000))
    rq = associate_rq(APP_CONTEXT + pcs + user_information())
    run = sensor(tmp_path, write(tmp_path, conversation_with([rq])))
    assert_counted(run, "anomaly:too-many")
    assert len(run.records()[0]["dicom"].get("presentation_contexts", [])) <= 128


def test_sub_items_nested_past_reason(tmp_path: Path) -> None:
    ui = item(0x51, struct.pack(">I", 16384))
    for _ in range(8000):  # user information inside user information, 8000 deep
        ui = item(0x50, ui)
    rq = associate_rq(APP_CONTEXT + presentation_context() + ui)
    assert_counted(sensor(tmp_path, write(tmp_path, conversation_with([rq]))))


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("pdv-longer-than-pdu", pdv(1, 3, CMD, length=len(CMD) + 500)),
        ("pdv-length-1", pdv(1, 3, CMD, length=1) + CMD),
        ("pdv-length-4GiB", pdv(1, 3, CMD, length=0xFFFFFFFF)),
        ("pdv-second-overruns", pdv(1, 1, CMD[:20]) + pdv(1, 3, CMD[20:], length=9999)),
    ],
)
def test_pdata_with_lying_pdv_lengths(tmp_path: Path, name: str, body: bytes) -> None:
    run = sensor(tmp_path, write(tmp_path, conversation_with([associate_rq(), pdu(0x04, body)])))
    assert_counted(run, "anomaly:bad-length")


def test_zero_length_pdvs_in_a_loop(tmp_path: Path) -> None:
    # 5000 empty command fragments, then the real command: framing holds, the command decodes.
    body = pdv(1, 1, b"") * 5000 + pdv(1, 3, CMD)
    run = sensor(tmp_path, write(tmp_path, conversation_with([associate_rq(), pdu(0x04, body)])))
    assert run.rc == 0
    assert run.records()[0]["dicom"]["dimse"] == {"C-ECHO-RQ": 1}


# -- IP and TCP ----------------------------------------------------------------------------


def _fragments4(frame: bytes, size: int) -> list[bytes]:
    ip = dpkt.ethernet.Ethernet(frame).data
    raw = bytes(ip.data)
    out = []
    for off in range(0, len(raw), size):
        frag = dpkt.ip.IP(
            src=ip.src, dst=ip.dst, p=6, ttl=64, id=0x1234, data=raw[off : off + size]
        )
        frag.mf = 1 if off + size < len(raw) else 0
        frag.offset = off >> 3
        out.append(eth(frag))
    return out


def _fragments6(frame: bytes, size: int) -> list[bytes]:
    raw = bytes(dpkt.ethernet.Ethernet(frame).data.data)
    out = []
    for off in range(0, len(raw), size):
        chunk = raw[off : off + size]
        more = 1 if off + size < len(raw) else 0
        fh = struct.pack(">BBHI", 6, 0, off | more, 0x1234)  # next header TCP
        hdr = struct.pack(">IHBB", 0x60000000, len(fh) + len(chunk), 44, 64)
        out.append(eth(hdr + ip6("fd00::1") + ip6("fd00::2") + fh + chunk, 0x86DD))
    return out


def test_ipv4_fragments_inside_a_followed_association(tmp_path: Path) -> None:
    recs = echo_conversation()
    ts = recs[5][0]  # the P-DATA segment, after the RQ started the flow
    out = recs[:5] + [(ts, f) for f in _fragments4(recs[5][1], 64)] + recs[6:]
    run = sensor(tmp_path, write(tmp_path, out))
    assert_counted(run, "drop:ip-fragment")


@pytest.mark.parametrize("size", [8, 64], ids=["8-byte", "64-byte"])
def test_ipv4_fragmented_associate_rq_alone(tmp_path: Path, size: int) -> None:
    # An A-ASSOCIATE-RQ sent only as IPv4 fragments: the sensor does not reassemble IP,
    # but it must at least count what it could not look at (an evasion otherwise).
    recs = echo_conversation()
    out = [(recs[3][0], f) for f in _fragments4(recs[3][1], size)]
    assert_counted(sensor(tmp_path, write(tmp_path, out)), "drop:ip-fragment")


def test_ipv6_fragmented_associate_rq_alone(tmp_path: Path) -> None:
    recs = echo_conversation()
    out = [(recs[3][0], f) for f in _fragments6(recs[3][1], 64)]
    assert_counted(sensor(tmp_path, write(tmp_path, out)), "drop:ip-fragment")


def _tcp_offset(frame: bytes, off: int) -> bytes:
    b = bytearray(frame)
    b[14 + 20 + 12] = (off << 4) | (b[14 + 20 + 12] & 0x0F)
    return bytes(b)


@pytest.mark.parametrize("off", [0, 1, 4, 15])
def test_tcp_bogus_data_offset_inside_a_followed_association(tmp_path: Path, off: int) -> None:
    recs = echo_conversation()
    # Frames after the A-ASSOCIATE-AC carry a data offset below 5 words or past the frame.
    out = recs[:7] + [(ts, _tcp_offset(f, off)) for ts, f in recs[7:]]
    run = sensor(tmp_path, write(tmp_path, out))
    assert_counted(run, "drop:bad-tcp-header", "drop:truncated")


def _ip_total_length(frame: bytes, total: int) -> bytes:
    b = bytearray(frame)
    struct.pack_into(">H", b, 14 + 2, total)
    return bytes(b)


@pytest.mark.parametrize("first", [3, 0], ids=["from-the-rq", "every-frame"])
def test_ip_total_length_lies_64k(tmp_path: Path, first: int) -> None:
    # The frames are captured whole (caplen == wire length) yet IP claims 65535 bytes: a lie,
    # not a snaplen cut. From the SYN on, it must still be counted somewhere.
    recs = echo_conversation()
    out = recs[:first] + [(ts, _ip_total_length(f, 0xFFFF)) for ts, f in recs[first:]]
    run = sensor(tmp_path, write(tmp_path, out))
    assert_counted(run, "drop:bad-ip-header")


def test_ipv6_payload_length_lies_64k(tmp_path: Path) -> None:
    recs = echo_conversation()
    out = []
    for ts, frame in recs:
        ip = dpkt.ethernet.Ethernet(frame).data
        tcp = bytes(ip.data)
        hdr = struct.pack(">IHBB", 0x60000000, 0xFFFF, 6, 64) + ip6("fd00::1") + ip6("fd00::2")
        if ip.src[-1] == 2:
            hdr = struct.pack(">IHBB", 0x60000000, 0xFFFF, 6, 64) + ip6("fd00::2") + ip6("fd00::1")
        out.append((ts, eth(hdr + tcp, 0x86DD)))
    run = sensor(tmp_path, write(tmp_path, out))
    assert_counted(run, "drop:bad-ip-header")
