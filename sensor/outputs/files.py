"""Whole-file outputs (inventory, metrics text), replaced atomically, created 0640."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TextIO

# Outputs name hosts, AE titles and what they did: confidential (SECURITY.md), so owner
# read-write and group read at most, whatever the umask lets through.
FILE_MODE = 0o640


def open_output(path: str, append: bool = False) -> TextIO:
    """Open an output file for text, line-buffered, created with mode 0640."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    return open(fd, "a" if append else "w", encoding="utf-8", buffering=1, newline="")


def write_file(path: str, write: Callable[[TextIO], object]) -> None:
    """Write a whole output atomically (``-`` is standard output)."""
    if path == "-":
        write(sys.stdout)
        sys.stdout.flush()
        return
    tmp = f"{path}.tmp"
    try:
        with open_output(tmp) as fh:
            write(fh)
        os.replace(tmp, path)
    except OSError:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
