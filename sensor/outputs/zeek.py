"""A Zeek-style ``dicom.log`` from association records: Zeek's ASCII (TSV) and JSON flavours.

One line per association, written when its record is written. ``orig`` is the
association requestor and ``resp`` the acceptor (nearly always the TCP client and
server). The TSV flavour carries the ``#separator`` ... ``#types`` header and the
``#close`` footer that ``zeek-cut`` reads, and escapes values as Zeek's ASCII writer
does. See docs/fields-zeek.md.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from .identity import endpoints_of, zeek_uid
from .jsonl import JsonLines

PATH = "dicom"
DATASET = "dicom.association"  # the records this log is made of
SEPARATOR = "\t"
SET_SEPARATOR = ","
EMPTY_FIELD = "(empty)"
UNSET_FIELD = "-"

# (name, Zeek type) in log order: Zeek's connection identity first, as in every Zeek log.
FIELDS: tuple[tuple[str, str], ...] = (
    ("ts", "time"),
    ("uid", "string"),
    ("id.orig_h", "addr"),
    ("id.orig_p", "port"),
    ("id.resp_h", "addr"),
    ("id.resp_p", "port"),
    ("duration", "interval"),
    ("calling_ae", "string"),
    ("called_ae", "string"),
    ("result", "string"),
    ("end", "string"),
    ("reject_reason", "string"),
    ("abort_source", "string"),
    ("abort_by", "string"),
    ("release_by", "string"),
    ("detected_by", "string"),
    ("contexts", "set[string]"),
    ("impl_orig", "string"),
    ("impl_resp", "string"),
    ("version_orig", "string"),
    ("version_resp", "string"),
    ("vendor_orig", "string"),
    ("vendor_resp", "string"),
    ("user_identity_type", "string"),
    ("username", "string"),
    ("passcode_present", "bool"),
    ("dimse", "set[string]"),
    ("statuses", "set[string]"),
    ("move_destinations", "set[string]"),
    ("pdata_bytes_orig", "count"),
    ("pdata_bytes_resp", "count"),
    ("data_sets", "count"),
    ("anomalies", "set[string]"),
    ("gaps", "count"),
    ("vlan", "int"),
    ("community_id", "string"),
)
TYPES = dict(FIELDS)


def _epoch(iso_z: str) -> float:
    return datetime.fromisoformat(iso_z.replace("Z", "+00:00")).timestamp()


def _counted(counts: dict[str, int]) -> list[str]:
    """``{"C-STORE-RQ": 3}`` as Zeek set elements: ``["C-STORE-RQ:3"]``."""
    return [f"{name}:{n}" for name, n in sorted(counts.items())]


def zeek_row(record: dict[str, Any]) -> dict[str, Any]:
    """The dicom.log row for an association record: field name to value (None = unset)."""
    src_ip, src_port, dst_ip, dst_port = endpoints_of(record)
    event = record["event"]
    dicom = record["dicom"]
    assoc = dicom["association"]
    reject = dicom.get("reject") or {}
    abort = dicom.get("abort") or {}
    impl = dicom.get("implementation") or {}
    orig, resp = impl.get("requestor") or {}, impl.get("acceptor") or {}
    ident = dicom.get("user_identity")
    contexts = {
        pc.get("abstract_syntax_name") or pc["abstract_syntax"]
        for pc in dicom.get("presentation_contexts", ())
    }
    by_dir = dicom["pdata"]["bytes_by_direction"]
    vlan = record["network"].get("vlan")
    return {
        "ts": _epoch(event["start"]),
        "uid": zeek_uid(src_ip, src_port, dst_ip, dst_port, event["start"]),
        "id.orig_h": src_ip,
        "id.orig_p": src_port,
        "id.resp_h": dst_ip,
        "id.resp_p": dst_port,
        "duration": event["duration"] / 1e9,
        "calling_ae": dicom.get("calling_ae_title"),
        "called_ae": dicom.get("called_ae_title"),
        "result": assoc.get("result"),
        "end": assoc.get("end"),
        "reject_reason": reject.get("reason_name"),
        "abort_source": abort.get("source_name"),
        "abort_by": abort.get("by"),
        "release_by": assoc.get("release_requested_by"),
        "detected_by": dicom.get("detected_by"),
        "contexts": sorted(contexts),
        "impl_orig": orig.get("class_uid"),
        "impl_resp": resp.get("class_uid"),
        "version_orig": orig.get("version_name"),
        "version_resp": resp.get("version_name"),
        "vendor_orig": orig.get("vendor"),
        "vendor_resp": resp.get("vendor"),
        "user_identity_type": ident["type_name"] if ident else None,
        "username": ident.get("username") if ident else None,
        "passcode_present": ident["passcode_present"] if ident else None,
        "dimse": _counted(dicom.get("dimse", {})),
        "statuses": _counted(dicom.get("dimse_status", {})),
        "move_destinations": sorted(set(dicom.get("move_destinations", ()))),
        "pdata_bytes_orig": by_dir["requestor"],
        "pdata_bytes_resp": by_dir["acceptor"],
        "data_sets": dicom["pdata"]["data_sets"],
        "anomalies": list(dicom.get("anomalies", ())),
        "gaps": dicom.get("gaps", 0),
        "vlan": vlan["id"] if vlan else None,
        "community_id": record["network"].get("community_id"),
    }


# -- the ASCII (TSV) flavour ----------------------------------------------------------


def escape(text: str, in_set: bool = False) -> str:
    r"""A string as Zeek's ASCII writer puts it in a field.

    Control characters (tab, newline, ...), DEL, the backslash and every byte of a
    non-ASCII character become ``\xNN``; inside a set the set separator does too. A
    value that reads like the unset or empty marker gets its first character escaped.
    """
    out = []
    for ch in text:
        code = ord(ch)
        if code < 0x20 or code == 0x7F or ch == "\\" or (in_set and ch == SET_SEPARATOR):
            out.append(f"\\x{code:02x}")
        elif code > 0x7F:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8"))
        else:
            out.append(ch)
    escaped = "".join(out)
    if escaped in (UNSET_FIELD, EMPTY_FIELD):
        escaped = f"\\x{ord(escaped[0]):02x}{escaped[1:]}"
    return escaped


def tsv_value(value: Any, zeek_type: str) -> str:
    """One field's text in the TSV flavour."""
    if value is None:
        return UNSET_FIELD
    if zeek_type in ("time", "interval"):
        return f"{value:.6f}"
    if zeek_type == "bool":
        return "T" if value else "F"
    if zeek_type.startswith("set["):
        if not value:
            return EMPTY_FIELD
        return SET_SEPARATOR.join(escape(str(v), in_set=True) for v in value)
    if zeek_type in ("count", "int", "port"):
        return str(int(value))
    text = str(value)
    return escape(text) if text else EMPTY_FIELD


def tsv_line(row: dict[str, Any]) -> str:
    """The row as one TSV line (no newline)."""
    return SEPARATOR.join(tsv_value(row.get(name), zeek_type) for name, zeek_type in FIELDS)


def _stamp(when: float) -> str:
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.localtime(when))


def tsv_header(opened: float) -> list[str]:
    """The header lines Zeek writes at the top of an ASCII log."""
    return [
        "#separator \\x09",
        f"#set_separator{SEPARATOR}{SET_SEPARATOR}",
        f"#empty_field{SEPARATOR}{EMPTY_FIELD}",
        f"#unset_field{SEPARATOR}{UNSET_FIELD}",
        f"#path{SEPARATOR}{PATH}",
        f"#open{SEPARATOR}{_stamp(opened)}",
        SEPARATOR.join(["#fields", *(name for name, _ in FIELDS)]),
        SEPARATOR.join(["#types", *(zeek_type for _, zeek_type in FIELDS)]),
    ]


def tsv_footer(closed: float) -> str:
    """The ``#close`` line Zeek writes when it closes a log."""
    return f"#close{SEPARATOR}{_stamp(closed)}"


# -- the JSON flavour -----------------------------------------------------------------


def json_object(row: dict[str, Any]) -> dict[str, Any]:
    """The row as Zeek's JSON writer has it: flat dotted names, unset fields left out."""
    out: dict[str, Any] = {}
    for name, zeek_type in FIELDS:
        value = row.get(name)
        if value is None:
            continue
        if zeek_type in ("time", "interval"):
            value = round(float(value), 6)
        out[name] = value
    return out


class ZeekLog(JsonLines):
    """dicom.log in the TSV (``tsv``) or JSON (``json``) flavour; ``-`` is standard output.

    Every file the TSV flavour opens empty (the first, or a new one after ``reopen`` for
    logrotate) starts with the header; ``close`` writes the ``#close`` footer.
    """

    def __init__(
        self,
        path: str,
        flavour: str = "tsv",
        append: bool = False,
        rotate_bytes: int = 0,
        rotate_seconds: float = 0.0,
    ) -> None:
        if flavour not in ("tsv", "json"):
            raise ValueError(f"unknown Zeek log flavour {flavour!r}")
        self.flavour = flavour
        super().__init__(path, append, rotate_bytes, rotate_seconds)
        if not self._owned:
            self._header()

    def _open(self, append: bool) -> None:
        super()._open(append)
        if self._size == 0:
            self._header()

    def _header(self) -> None:
        if self.flavour == "tsv":
            text = "\n".join(tsv_header(time.time())) + "\n"
            self._fh.write(text)
            self._size += len(text)

    def _ending(self) -> None:
        """A file rotated or moved away (logrotate) is closed as Zeek closes one: the footer."""
        if self.flavour == "tsv":
            self._fh.write(tsv_footer(time.time()) + "\n")

    def write(self, obj: dict[str, Any]) -> None:
        """Write one DICOM association record as one log line (other records are left out)."""
        if obj.get("event", {}).get("dataset") != DATASET:
            return
        row = zeek_row(obj)
        if self.flavour == "json":
            super().write(json_object(row))
            return
        self._put(tsv_line(row) + "\n")

    def close(self) -> None:
        """Write the ``#close`` footer (TSV), then flush and close."""
        if self.flavour == "tsv":
            count = self.count
            self._put(tsv_footer(time.time()) + "\n")
            self.count = count  # the footer is no record
        super().close()
