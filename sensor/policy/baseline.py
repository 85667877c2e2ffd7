"""The learned baseline of DICOM nodes, AE titles and ports, kept across restarts."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TextIO

from .smallset import SmallSet

MAX_NODES = 20_000
MAX_PER_NODE = 256


class Novelty(StrEnum):
    """What the baseline had not seen."""

    NODE = "new-node"
    AE_TITLE = "new-ae-title"
    PORT = "new-port"


@dataclass(slots=True)
class _Node:
    ae_titles: SmallSet[str] = field(default_factory=SmallSet)
    ports: SmallSet[int] = field(default_factory=SmallSet)


class Baseline:
    """Nodes seen during learning are normal; after it, new ones are reported once and learned.

    Bounded: ``MAX_NODES`` nodes, ``MAX_PER_NODE`` AE titles and ports each; what a bound
    turns away is counted in ``limited`` (nodes, values), exported in
    ``dicom_sensor_state_limited_total``.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.started: float | None = None
        self._nodes: dict[str, _Node] = {}
        self.limited_nodes = 0  # observations of nodes beyond MAX_NODES
        self.limited_values = 0  # AE titles or ports beyond MAX_PER_NODE
        self.load_error: str | None = None
        self.save_failures = 0
        self._failing = False
        if path is not None and os.path.exists(path):
            self._load(path)

    def _load(self, path: str) -> None:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            started = data["started"]
            nodes = data["nodes"]
            self.started = float(started) if started is not None else None
            for ip, node in list(nodes.items())[:MAX_NODES]:
                self._nodes[str(ip)] = _Node(
                    SmallSet(str(a) for a in node.get("ae_titles", [])[:MAX_PER_NODE]),
                    SmallSet(int(p) for p in node.get("ports", [])[:MAX_PER_NODE]),
                )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # A broken state file must not stop the sensor: learn again, and say so.
            self._nodes = {}
            self.started = None
            self.load_error = f"{path}: unreadable baseline, learning again ({type(exc).__name__})"

    def age(self, now: float) -> float:
        """Seconds since the baseline started learning (it starts at the first observation)."""
        if self.started is None:
            self.started = now
        return now - self.started

    def observe(self, now: float, ip: str, ae_title: str | None, port: int | None) -> list[Novelty]:
        """Learn what a node showed; return what the baseline did not know before.

        A new node is reported as such, not also as a new AE title and a new port.
        """
        self.age(now)
        node = self._nodes.get(ip)
        found: list[Novelty] = []
        if node is None:
            if len(self._nodes) >= MAX_NODES:
                self.limited_nodes += 1
                return []
            node = self._nodes[sys.intern(ip)] = _Node()
            found.append(Novelty.NODE)
        new_node = bool(found)
        if ae_title and ae_title not in node.ae_titles:
            if len(node.ae_titles) < MAX_PER_NODE:
                node.ae_titles.add(sys.intern(ae_title))
                if not new_node:
                    found.append(Novelty.AE_TITLE)
            else:
                self.limited_values += 1
        if port is not None and port not in node.ports:
            if len(node.ports) < MAX_PER_NODE:
                node.ports.add(port)
                if not new_node:
                    found.append(Novelty.PORT)
            else:
                self.limited_values += 1
        return found

    def knows_ae_title(self, ae_title: str, counts: Callable[[str], bool] | None = None) -> bool:
        """Whether any node in the baseline used this AE title (of those whose address
        ``counts``, when given)."""
        return any(
            ae_title in node.ae_titles and (counts is None or counts(ip))
            for ip, node in self._nodes.items()
        )

    def save(self) -> str | None:
        """Write the state file atomically (no-op without one); never raises.

        A failed save is counted in ``save_failures``; the first failure of an outage
        returns one line saying why (the caller logs it), later ones return None until a
        save succeeds again.
        """
        if self.path is None:
            return None
        directory = os.path.dirname(os.path.abspath(self.path))
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=".baseline-", dir=directory)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                self._write(fh)
            os.replace(tmp, self.path)
        except OSError as exc:
            self.save_failures += 1
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            if self._failing:
                return None
            self._failing = True
            return f"{self.path}: cannot save the baseline: {exc.strerror or exc}"
        self._failing = False
        return None

    def _write(self, fh: TextIO) -> None:
        """The state as JSON, node by node (a whole document of 20,000 nodes costs MBs)."""
        fh.write('{\n "nodes": {')
        for i, ip in enumerate(sorted(self._nodes)):
            n = self._nodes[ip]
            node = {"ae_titles": sorted(n.ae_titles), "ports": sorted(n.ports)}
            text = json.dumps(node, indent=1, sort_keys=True).replace("\n", "\n  ")
            fh.write(f"{',' if i else ''}\n  {json.dumps(ip)}: {text}")
        fh.write("\n }" if self._nodes else "}")
        fh.write(f',\n "started": {json.dumps(self.started)},\n "version": 1\n}}')


def state_file_problem(path: str) -> str | None:
    """Why the running user could not keep a baseline in ``path``, or None if it can.

    The file is replaced atomically, so its directory must be writable too.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"{path}: is a directory"
    if not os.path.isdir(directory):
        return f"{path}: directory {directory} does not exist"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"{path}: directory {directory} is not writable by this user"
    if os.path.exists(path) and not os.access(path, os.R_OK):
        return f"{path}: not readable by this user"
    return None
