"""What the rules look at: one association's identity, zones and negotiated content."""

from __future__ import annotations

from dataclasses import dataclass

from dissectors.dicom.association import DicomSession
from dissectors.dicom.pdu import AssociateRQ

from ..flow.endpoints import endpoints
from ..flow.table import FlowInfo
from .zones import Trust, Zone, ZoneMap


@dataclass(frozen=True, slots=True)
class AssociationView:
    """An association as the policy sees it at one moment."""

    requestor_ip: str
    requestor_port: int
    acceptor_ip: str
    acceptor_port: int
    requestor_zone: Zone
    acceptor_zone: Zone
    calling_ae: str | None
    called_ae: str | None
    request: AssociateRQ | None
    first_ts: float
    vlan: int | None

    @property
    def abstract_syntaxes(self) -> tuple[str, ...]:
        """The SOP classes the requestor proposed (built only when a rule asks)."""
        if self.request is None:
            return ()
        return tuple(pc.abstract_syntax for pc in self.request.presentation_contexts)

    @property
    def inbound(self) -> bool:
        """External requestor, acceptor inside."""
        return (
            self.requestor_zone.trust is Trust.EXTERNAL
            and self.acceptor_zone.trust is not Trust.EXTERNAL
        )

    @property
    def outbound(self) -> bool:
        """Requestor inside, external acceptor."""
        return (
            self.requestor_zone.trust is not Trust.EXTERNAL
            and self.acceptor_zone.trust is Trust.EXTERNAL
        )


def view_of(info: FlowInfo, session: DicomSession, zones: ZoneMap) -> AssociationView:
    """Build the view from the flow's identity and the session's state."""
    state = session.state
    (req_ip, req_port), (acc_ip, acc_port), _ = endpoints(info, state)
    pdu = state.request if state.request is not None else state.accept
    return AssociationView(
        req_ip,
        req_port,
        acc_ip,
        acc_port,
        zones.lookup(req_ip),
        zones.lookup(acc_ip),
        pdu.calling_ae_title if pdu is not None else None,
        pdu.called_ae_title if pdu is not None else None,
        state.request,
        state.first_ts if state.first_ts is not None else info.first_ts,
        info.vlan,
    )
