"""Running ``dicom-sensor read`` in-process for the output tests, and the captures they use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sensor.cli import main

ROOT = Path(__file__).resolve().parents[3]
PCAPS = ROOT / "pcaps"
ZONES = PCAPS / "zones"
SCENARIOS = sorted(p.parent.name for p in ZONES.glob("*/capture.pcap"))


def read(capture: Path, *args: str, config: Path | None = None) -> None:
    """``dicom-sensor read CAPTURE ARGS`` with no progress bar and no summary; must exit 0."""
    argv = ["read", str(capture), "-q", "--no-progress", *args]
    if config is not None:
        argv += ["-c", str(config)]
    code = main(argv)
    if code != 0:
        raise AssertionError(f"dicom-sensor {' '.join(argv)} exited {code}")


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSON lines file; every line must be one JSON object."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        obj = json.loads(line)
        if not isinstance(obj, dict):
            raise AssertionError(f"not a JSON object: {line!r}")
        out.append(obj)
    return out


def scenario(name: str) -> tuple[Path, Path]:
    """(capture, config) of a pcaps/zones scenario."""
    return ZONES / name / "capture.pcap", ZONES / name / "config.yaml"
