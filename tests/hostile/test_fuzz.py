"""The short fuzzing run of the test suite (under a minute); ``bench/fuzz.py`` is the long one.

Seeds come from the captures in pcaps/: every TCP connection as a DicomSession program, and
the capture files themselves for the pipeline. The harness and its invariants live in
``bench/fuzz.py`` so that the long run and this one check the same things.
"""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import ROOT


def _load_fuzz() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_fuzz", ROOT / "bench" / "fuzz.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_fuzz"] = module
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz()
PROGRAMS = [p for path in fuzz.capture_files() for p in fuzz.pdu_programs(path)]


def test_seeds_cover_the_real_captures() -> None:
    assert len(PROGRAMS) >= 40
    assert {d for d, _ in PROGRAMS} >= {"associate-rq"}
    assert len(fuzz.pcap_seeds()) >= 20


@st.composite
def programs(draw: st.DrawFn) -> bytes:
    """A real connection's bytes re-chunked at random, with gaps and corruptions mixed in."""
    detected, ops = draw(st.sampled_from(PROGRAMS))
    if draw(st.booleans()):
        detected = draw(st.sampled_from(fuzz.DETECTED_BY))
    start = draw(st.integers(0, max(0, len(ops) - 1)))
    rng = random.Random(draw(st.integers(0, 2**32)))
    out = []
    for kind, direction, arg in ops[start:]:
        if kind == "gap":
            out.append(("gap", direction, rng.choice((arg, arg, None, 0, 1 << 31))))
            continue
        if rng.random() < 0.03:
            out.append(("gap", direction, rng.choice((None, 0, 1, 6, len(arg), 1 << 31))))
        data = bytearray(arg)
        if data and rng.random() < 0.1:
            data[rng.randrange(len(data))] = rng.randrange(256)
        pos = 0
        while pos < len(data):
            step = rng.choice((1, 2, 5, 6, 7, 64, 1000, len(data)))
            out.append(("feed", direction, bytes(data[pos : pos + step])))
            pos += step
    return fuzz.encode_program(detected, out)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(program=programs())
def test_real_streams_rechunked_and_damaged_never_raise(program: bytes) -> None:
    fuzz.run_session_program(program)


@settings(max_examples=300, deadline=None)
@given(program=st.binary(max_size=600))
def test_arbitrary_programs_never_raise(program: bytes) -> None:
    fuzz.run_session_program(program)


def _no_new_findings(report: object, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(f"\n{report.line()}")  # type: ignore[attr-defined]
        for note, hits in report.known.items():  # type: ignore[attr-defined]
            print(f"  known ({hits} hits): {note}")
    assert report.executions > 0  # type: ignore[attr-defined]
    assert not report.findings, report.findings  # type: ignore[attr-defined]


def test_session_mutation_loop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = fuzz.random_fuzz("session", 6.0, tmp_path, seed=1, log=lambda _: None)
    _no_new_findings(report, capsys)


def test_pipeline_mutation_loop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Mutated real captures through OfflineCapture and Pipeline: records flipped, cut,
    # duplicated, reordered, dropped; link types, snaplens and length fields lying.
    report = fuzz.random_fuzz("pipeline", 12.0, tmp_path, seed=1, log=lambda _: None)
    _no_new_findings(report, capsys)


@pytest.mark.skipif(not fuzz.have_atheris(), reason="atheris is not installed")
def test_atheris_short_run(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fuzz.py"), "--seconds", "10", "--engine",
         "atheris", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )  # fmt: skip
    summary = [line for line in proc.stdout.splitlines() if "executions" in line]
    assert summary, proc.stdout + proc.stderr[-2000:]
    assert "0 distinct findings" in summary[-1], proc.stdout
