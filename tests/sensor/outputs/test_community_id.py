"""Community ID: the published test vectors, and tshark's own value on every bundled capture."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import communityid
import pytest

from sensor.cli import main
from sensor.outputs.community import community_id

HERE = Path(__file__).resolve().parent / "community_id"
ROOT = Path(__file__).resolve().parents[3]
# Every bundled capture but the one made to hold no DICOM at all (nothing to compare there).
CAPTURES = sorted(
    {*ROOT.glob("pcaps/**/*.pcap"), *ROOT.glob("pcaps/**/*.pcapng")}
    - {ROOT / "pcaps" / "derived-not-dicom" / "capture.pcap"}
)
SEEDS = {"baseline_deflt.json": 0, "baseline_seed1.json": 1}


def _rows(name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads((HERE / name).read_text())
    return rows


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_tcp_rows_of_the_spec_baseline(name: str) -> None:
    tcp = [r for r in _rows(name) if r["proto"] == 6]
    assert len(tcp) == 4
    for row in tcp:
        got = community_id(row["saddr"], row["sport"], row["daddr"], row["dport"], SEEDS[name])
        assert got == row["communityid"], row


def test_tcp_rows_of_the_spec_tables() -> None:
    for row in _rows("tables.json"):
        got = community_id(row["saddr"], row["sport"], row["daddr"], row["dport"], row["seed"])
        assert got == row["communityid"], row


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_the_package_agrees_with_every_row(name: str) -> None:
    """The dependency itself implements the published spec (ICMP, UDP, SCTP, RSVP too)."""
    algo = communityid.CommunityID(SEEDS[name])
    for row in _rows(name):
        flow = communityid.FlowTuple(
            row["proto"], row["saddr"], row["daddr"], row["sport"], row["dport"]
        )
        assert algo.calc(flow) == row["communityid"], row


def _tshark_ids(capture: Path, seed: int) -> dict[tuple[str, int, str, int], str]:
    """(src ip, src port, dst ip, dst port) -> tshark's Community ID, both directions."""
    out = subprocess.run(
        ["tshark", "-r", str(capture), "-n", "--enable-protocol", "communityid",
         "-o", f"communityid.seed:{seed}", "-Y", "tcp", "-T", "fields", "-E", "occurrence=f",
         "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport",
         "-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport", "-e", "communityid"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    # 2: a capture cut off mid-packet (derived-cut-mid-packet), read up to the cut.
    assert out.returncode in (0, 2), out.stderr
    ids: dict[tuple[str, int, str, int], str] = {}
    for line in out.stdout.splitlines():
        ip4s, ip6s, sport, ip4d, ip6d, dport, cid = line.split("\t")
        if not cid:
            continue
        ids[(ip4s or ip6s, int(sport), ip4d or ip6d, int(dport))] = cid
    return ids


def _records(capture: Path, tmp_path: Path, config: Path | None = None) -> list[dict[str, Any]]:
    out = tmp_path / f"{capture.parent.name}-{capture.stem}.jsonl"
    args = ["read", str(capture), "--associations", str(out), "-q"]
    if config is not None:
        args += ["--config", str(config)]
    assert main(args) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


@needs_tshark
@pytest.mark.parametrize("capture", CAPTURES, ids=[str(c.relative_to(ROOT)) for c in CAPTURES])
def test_records_carry_tsharks_community_id(capture: Path, tmp_path: Path) -> None:
    records = _records(capture, tmp_path)
    assert records
    theirs = _tshark_ids(capture, 0)
    for record in records:
        src, dst = record["source"], record["destination"]
        key = (src["ip"], src["port"], dst["ip"], dst["port"])
        back = (dst["ip"], dst["port"], src["ip"], src["port"])
        expected = theirs.get(key) or theirs.get(back)
        assert expected is not None, key
        assert record["network"]["community_id"] == expected


@needs_tshark
def test_a_configured_seed_matches_tshark(tmp_path: Path) -> None:
    config = tmp_path / "seed.yaml"
    config.write_text("community_id:\n  seed: 4242\n")
    capture = ROOT / "pcaps/dcmtk-find-move-get/capture.pcap"
    records = _records(capture, tmp_path, config)
    theirs = _tshark_ids(capture, 4242)
    assert records
    for record in records:
        src, dst = record["source"], record["destination"]
        key = (src["ip"], src["port"], dst["ip"], dst["port"])
        assert record["network"]["community_id"] == theirs[key]
        assert record["network"]["community_id"] != community_id(*key[:2], *key[2:])
