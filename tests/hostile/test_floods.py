"""Floods: 200,000 short TCP flows, and 200,000 A-ASSOCIATE-RQs, each with real associations.

The captures come from ``bench/flood.py`` (which also runs the 1,000,000-flow versions:
``python bench/flood.py --run``). Both are read at once, each by its own
``python -m sensor.cli read`` subprocess, so the module takes about as long as the slower
one (about 1.5 minutes on 2 cores). Peak RSS is the child's own (``wait4``).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .helpers import ROOT

FLOWS = 200_000
MAX_RSS_MB = 200.0
TIMEOUT = 300.0


def _load_flood() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_flood", ROOT / "bench" / "flood.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_flood"] = module
    spec.loader.exec_module(module)
    return module


flood = _load_flood()


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """(generation info, sensor result) per kind, both read concurrently."""
    work = tmp_path_factory.mktemp("flood")
    infos = {
        kind: flood.generate(kind, FLOWS, work / f"{kind}.pcap") for kind in ("syn", "associate")
    }
    results: dict[str, dict[str, Any]] = {}

    def read(kind: str) -> None:
        results[kind] = flood.read_with_sensor(work / f"{kind}.pcap", work / f"{kind}-out", TIMEOUT)

    threads = [threading.Thread(target=read, args=(kind,)) for kind in infos]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = {kind: (infos[kind], results[kind]) for kind in infos}
    for info, result in out.values():
        missing = flood.find_real(Path(result["associations_path"]), info["real_associations"])
        print(f"\n{flood.summarize(info, result, missing)}")
    return out


KINDS = ["syn", "associate"]


@pytest.mark.parametrize("kind", KINDS)
def test_flood_is_read_to_the_end(runs: dict[str, Any], kind: str) -> None:
    info, result = runs[kind]
    assert result["rc"] == 0, result["stderr"][-2000:]
    assert "Traceback" not in result["stderr"]
    assert result["metrics"]["dicom_sensor_packets_total"] == info["packets"]


@pytest.mark.parametrize("kind", KINDS)
def test_flood_evictions_are_counted(runs: dict[str, Any], kind: str) -> None:
    _, result = runs[kind]
    assert result["metrics"]["dicom_sensor_flows_closed_total{reason=evicted}"] > 0
    assert "flows evicted to stay within limits" in result["stderr"]


@pytest.mark.parametrize("kind", KINDS)
def test_flood_real_associations_still_reported(runs: dict[str, Any], kind: str) -> None:
    info, result = runs[kind]
    missing = flood.find_real(Path(result["associations_path"]), info["real_associations"])
    assert not missing, missing
    assert len(info["real_associations"]) == 15


@pytest.mark.parametrize("kind", KINDS)
def test_flood_peak_rss_bounded(runs: dict[str, Any], kind: str) -> None:
    _, result = runs[kind]
    assert result["peak_rss_mb"] <= MAX_RSS_MB, f"peak RSS {result['peak_rss_mb']:.0f} MB"
