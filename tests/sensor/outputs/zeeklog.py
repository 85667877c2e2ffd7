"""An independent reader of Zeek's ASCII log format: what ``zeek-cut`` relies on.

It reads the header block (``#separator`` first, with its ``\\xNN`` escape, then
``#set_separator``, ``#empty_field``, ``#unset_field``, ``#path``, ``#open``,
``#fields``, ``#types``), the rows, and the ``#close`` footer; ``cut`` selects columns by
name as ``zeek-cut`` does, and ``typed`` turns a field back into a Python value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

HEADER_ORDER = (
    "separator",
    "set_separator",
    "empty_field",
    "unset_field",
    "path",
    "open",
    "fields",
    "types",
)
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def unescape(text: str) -> str:
    """Undo Zeek's ``\\xNN`` escapes (bytes, so multi-byte UTF-8 comes back whole)."""
    raw = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(text):
        raw += text[pos : m.start()].encode("utf-8")
        raw.append(int(m.group(1), 16))
        pos = m.end()
    raw += text[pos:].encode("utf-8")
    return raw.decode("utf-8")


@dataclass
class ZeekLog:
    """A parsed ASCII log: header values, field names and types, raw rows, footer."""

    header: dict[str, str] = field(default_factory=dict)
    header_order: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    close: str | None = None

    @property
    def separator(self) -> str:
        return self.header["separator"]

    def records(self) -> list[dict[str, str]]:
        """Rows as field name to raw (still escaped) text."""
        return [dict(zip(self.fields, row, strict=True)) for row in self.rows]

    def cut(self, *columns: str) -> list[list[str]]:
        """The named columns of every row, raw, as ``zeek-cut COLUMNS`` prints them."""
        index = [self.fields.index(c) for c in columns]
        return [[row[i] for i in index] for row in self.rows]

    def typed(self, name: str, raw: str) -> Any:
        """One field's value: None when unset, lists for sets, numbers, bools, strings."""
        zeek_type = self.types[self.fields.index(name)]
        if raw == self.header["unset_field"]:
            return None
        if zeek_type.startswith(("set[", "vector[")):
            if raw == self.header["empty_field"]:
                return []
            return [unescape(v) for v in raw.split(self.header["set_separator"])]
        if zeek_type in ("time", "interval", "double"):
            return float(raw)
        if zeek_type in ("count", "int", "port"):
            return int(raw)
        if zeek_type == "bool":
            if raw not in ("T", "F"):
                raise ValueError(f"bool {raw!r}")
            return raw == "T"
        if raw == self.header["empty_field"]:
            return ""
        return unescape(raw)


def parse(text: str) -> ZeekLog:
    """Parse a whole log; raises ValueError where the format is broken."""
    log = ZeekLog()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or not lines[0].startswith("#separator "):
        raise ValueError("the first line must be '#separator <sep>'")
    log.header["separator"] = unescape(lines[0].split(" ", 1)[1])
    log.header_order.append("separator")
    sep = log.separator
    for line in lines[1:]:
        if line.startswith("#close"):
            if log.close is not None:
                raise ValueError("two #close lines")
            log.close = line.split(sep, 1)[1]
            continue
        if log.close is not None:
            raise ValueError("a line after #close")
        if line.startswith("#"):
            if log.rows:
                raise ValueError("a header line after the rows")
            key, _, value = line[1:].partition(sep)
            log.header[key] = value
            log.header_order.append(key)
            if key == "fields":
                log.fields = value.split(sep)
            elif key == "types":
                log.types = value.split(sep)
            continue
        row = line.split(sep)
        if len(row) != len(log.fields):
            raise ValueError(f"{len(row)} columns, {len(log.fields)} fields: {line!r}")
        log.rows.append(row)
    if len(log.types) != len(log.fields):
        raise ValueError("#fields and #types differ in length")
    return log
