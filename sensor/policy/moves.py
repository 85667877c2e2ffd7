"""C-MOVEs waiting for their sub-association or final response before the policy decides.

A C-MOVE-RQ names a destination AE title; the C-MOVE SCP then opens a sub-association to
the address it has configured for that title and sends the images there. Whether the
destination is known can only be said once that sub-association is answered (or refused),
or the final C-MOVE-RSP comes, or ``decide_within`` seconds have passed: this module holds
the requests in between, bounded, and says which one a sub-association belongs to.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from itertools import count
from typing import TypeVar

from .view import AssociationView

K = TypeVar("K", str, int)
MAX_PENDING = 8192  # C-MOVEs awaiting a decision; beyond it the oldest is decided at once


class MoveReason(StrEnum):
    """Why a pending C-MOVE was decided the way it was (``dicom.move.reason``)."""

    ANSWERED_INTERNAL = "answered-internal"  # known: no finding
    KNOWN = "known"  # no answer seen, but a node inside answers to that title: no finding
    ANSWERED_EXTERNAL = "answered-external"
    REJECTED = "rejected"
    REFUSED = "refused"
    FAILED = "failed"
    NO_ANSWER = "no-answer"
    CAPTURE_ENDED = "capture-ended"
    LIMIT = "limit"


@dataclass(slots=True)
class PendingMove:
    """One C-MOVE-RQ whose destination has not been decided yet."""

    session: object  # the C-MOVE association's session (kept alive, so its id stays unique)
    view: AssociationView  # the C-MOVE association, as the finding reports it
    destination: str
    message_id: int | None
    sop_class: str | None
    requested: float  # packet time of the C-MOVE-RQ
    deadline: float
    seq: int
    sub: object | None = None  # the matched sub-association's session
    sub_view: AssociationView | None = None
    done: bool = False

    @property
    def scp_ip(self) -> str:
        """The C-MOVE SCP: the acceptor of the C-MOVE association."""
        return self.view.acceptor_ip

    @property
    def scp_ae(self) -> str | None:
        """The AE title the C-MOVE SCP answered to (it calls with it in sub-associations)."""
        return self.view.called_ae


def _unlist(index: dict[K, list[PendingMove]], key: K, entry: PendingMove) -> None:
    entries = index[key]
    entries.remove(entry)
    if not entries:
        del index[key]


class PendingMoves:
    """Pending C-MOVEs, indexed by destination, by C-MOVE session and by sub-association."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self.max_pending = max_pending
        self.limited = 0  # decided early because the table was full
        self._seq = count()
        self._heap: list[tuple[float, int, PendingMove]] = []
        self._order: dict[int, PendingMove] = {}  # seq -> entry, oldest first
        self._by_dest: dict[str, list[PendingMove]] = {}
        self._by_session: dict[int, list[PendingMove]] = {}
        self._by_sub: dict[int, PendingMove] = {}

    def __len__(self) -> int:
        return len(self._order)

    def add(
        self,
        session: object,
        view: AssociationView,
        destination: str,
        message_id: int | None,
        sop_class: str | None,
        ts: float,
        within: float,
    ) -> PendingMove | None:
        """Hold a C-MOVE-RQ; returns the oldest entry when the table was full (decide it now)."""
        evicted = None
        if len(self._order) >= self.max_pending:
            evicted = next(iter(self._order.values()))
            self.remove(evicted)
            self.limited += 1
        seq = next(self._seq)
        entry = PendingMove(session, view, destination, message_id, sop_class, ts, ts + within, seq)
        self._order[seq] = entry
        self._by_dest.setdefault(destination, []).append(entry)
        self._by_session.setdefault(id(session), []).append(entry)
        heapq.heappush(self._heap, (entry.deadline, seq, entry))
        return evicted

    def remove(self, entry: PendingMove) -> None:
        """The entry is decided: forget it everywhere (its heap slot is skipped lazily)."""
        if entry.done:
            return
        entry.done = True
        del self._order[entry.seq]
        _unlist(self._by_dest, entry.destination, entry)
        _unlist(self._by_session, id(entry.session), entry)
        if entry.sub is not None:
            self._by_sub.pop(id(entry.sub), None)
        if not self._order:
            self._heap.clear()

    def due(self, now: float) -> Iterator[PendingMove]:
        """Entries whose window has passed by ``now``, oldest deadline first."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, entry = heapq.heappop(heap)
            if not entry.done:
                yield entry

    def all(self) -> list[PendingMove]:
        """Every pending entry, oldest request first."""
        return list(self._order.values())

    def of_session(self, session: object) -> list[PendingMove]:
        """The pending C-MOVEs sent on this association."""
        return list(self._by_session.get(id(session), ()))

    def has_session(self, session: object) -> bool:
        """Whether a C-MOVE of this association is still undecided."""
        return id(session) in self._by_session

    def of_sub(self, session: object) -> PendingMove | None:
        """The pending C-MOVE this sub-association was matched to, if any."""
        return self._by_sub.get(id(session))

    def match(self, session: object, sub: AssociationView, ts: float) -> PendingMove | None:
        """Match a new association to the pending C-MOVE it is the sub-association of.

        It must call the move destination as its called AE title, start within the move's
        window, and come from the C-MOVE SCP: from the address the C-MOVE reached, or
        (a multi-homed SCP sends from another address) calling with the AE title the SCP
        answered to. Of several candidates the one matching on both counts wins, then one
        without a sub-association yet, then the oldest request (an SCP works through its
        moves in order). A move whose sub-association went unanswered (it would have been
        decided otherwise) takes the SCP's next attempt.
        """
        if sub.called_ae is None:
            return None
        candidates = self._by_dest.get(sub.called_ae)
        if not candidates:
            return None
        best: PendingMove | None = None
        best_score = 0
        for entry in candidates:
            if entry.sub is session or entry.session is session:
                continue
            if not entry.requested <= ts <= entry.deadline:
                continue
            score = (4 if sub.requestor_ip == entry.scp_ip else 0) + (
                2 if sub.calling_ae is not None and sub.calling_ae == entry.scp_ae else 0
            )
            if score and entry.sub is None:
                score += 1
            if score > best_score:
                best, best_score = entry, score
        if best is not None:
            if best.sub is not None:
                self._by_sub.pop(id(best.sub), None)
            best.sub = session
            best.sub_view = sub
            self._by_sub[id(session)] = best
        return best
