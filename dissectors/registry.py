"""Dissectors installed through the ``dicom_sensor.dissectors`` entry-point group."""

from __future__ import annotations

from importlib.metadata import entry_points

from .base import Dissector

GROUP = "dicom_sensor.dissectors"


def load_dissectors(names: list[str] | None = None) -> list[Dissector]:
    """Every installed dissector (or only those named), DICOM first, the rest by name."""
    found: dict[str, Dissector] = {}
    for ep in entry_points(group=GROUP):
        if names is not None and ep.name not in names:
            continue
        obj = ep.load()
        if isinstance(obj, Dissector):
            found[ep.name] = obj
    if "dicom" not in found and (names is None or "dicom" in names):
        # Running from a source tree that was not installed: DICOM is always there.
        from .dicom.plugin import DICOM

        found["dicom"] = DICOM
    order = sorted(found, key=lambda name: (name != "dicom", name))
    return [found[name] for name in order]
