"""Whole-file outputs (inventory, metrics text), replaced atomically."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TextIO


def write_file(path: str, write: Callable[[TextIO], object]) -> None:
    """Write a whole output atomically (``-`` is standard output)."""
    if path == "-":
        write(sys.stdout)
        sys.stdout.flush()
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        write(fh)
    os.replace(tmp, path)
