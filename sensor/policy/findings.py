"""A rule's verdict on an association, before folding and formatting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import AllowEntry, RuleConfig
from .view import AssociationView


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule firing on one association at one moment."""

    rule: RuleConfig
    view: AssociationView
    ts: float
    message: str
    fields: dict[str, Any] = field(default_factory=dict)  # extra context, never PHI
    protocol: str = "dicom"  # the namespace of ``fields`` and of the protocol facts
    # The session the finding is about when it is not the one whose event decided it (a
    # C-MOVE decided at its sub-association, or later): where --alert-pcap looks.
    session: object | None = field(default=None, compare=False, repr=False)


def allowed(rule: RuleConfig, view: AssociationView, sop_class: str | None = None,
            move_destination: str | None = None) -> bool:  # fmt: skip
    """Whether an allow entry of the rule covers this association."""
    return any(_matches(entry, view, sop_class, move_destination) for entry in rule.allow)


def _matches(
    entry: AllowEntry, view: AssociationView, sop_class: str | None, move_destination: str | None
) -> bool:
    if entry.source_zone is not None and entry.source_zone != view.requestor_zone.name:
        return False
    if entry.destination_zone is not None and entry.destination_zone != view.acceptor_zone.name:
        return False
    if entry.calling_ae is not None and entry.calling_ae != view.calling_ae:
        return False
    if entry.called_ae is not None and entry.called_ae != view.called_ae:
        return False
    if entry.move_destination is not None and entry.move_destination != move_destination:
        return False
    if entry.sop_class is not None:
        # A DIMSE-level finding names its SOP class; an association-level one has the
        # proposed abstract syntaxes.
        classes = {sop_class} if sop_class is not None else set(view.abstract_syntaxes)
        if entry.sop_class not in classes:
            return False
    return True
