"""move-unknown-destination decided after the C-MOVE-RQ: each branch of the decision.

Real sessions fed real PDU bytes through the harness: a C-MOVE association (Move
Destination "STORESCP", from the office to the PACS), then the sub-association the PACS
opens, its final C-MOVE-RSP, or nothing, with ``PolicyEngine.tick``/``flush`` as the
pipeline drives them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sensor.policy.catalogue import Severity
from sensor.policy.config import ConfigError
from sensor.policy.moves import PendingMoves
from tests.dissectors.dicom import vectors as v

from . import pdus as p
from .harness import EXT, MODALITY, OFFICE, OFFICE2, PACS, PACS_B, T0, Association, Net, hospital
from .test_rules import SCP, SCU, echo_as, move

RULE = "move-unknown-destination"
DEST = "STORESCP"  # the Move Destination of v.C_MOVE_RQ
_STATUS_PENDING = b"\x00\x00\x00\x09\x02\x00\x00\x00\x00\xff"


def move_rsp(status: int) -> bytes:
    """v.C_MOVE_RSP (responding to message 5) with another status: the final response."""
    rsp = v.C_MOVE_RSP.replace(_STATUS_PENDING, _STATUS_PENDING[:8] + status.to_bytes(2, "little"))
    assert rsp != v.C_MOVE_RSP
    return p.command(rsp, 1)


def start_move(net: Net, ts: float = T0) -> Association:
    """OFFICE ("WS") asks PACS to move a study to STORESCP; nothing decided yet."""
    assoc = net.run(OFFICE, PACS, move("WS"), ts=ts)
    assert net.of(RULE) == []
    assert net.engine.pending(assoc.session)
    return assoc


def sub_association(net: Net, src: str, dst: str, ts: float, calling: str = "PACS") -> None:
    """The C-MOVE SCP's sub-association to the destination, answered (A-ASSOCIATE-AC)."""
    net.run(src, dst, echo_as(calling, DEST), ts=ts)


def only(net: Net) -> tuple[str, object]:
    (pair,) = net.of(RULE)
    return pair


def test_destination_answering_from_an_internal_zone_is_known(tmp_path: Path) -> None:
    net = Net(hospital(tmp_path))
    assoc = start_move(net)
    sub_association(net, PACS, MODALITY, T0 + 0.065)  # 65 ms later, radiology answers
    assert not net.engine.pending(assoc.session)
    net.tick(T0 + 120)
    net.finish()
    assert net.of(RULE) == []
    assert net.engine.move_decisions == {"answered-internal": 1}


def test_destination_answering_from_an_external_zone_is_exfiltration(tmp_path: Path) -> None:
    net = Net(hospital(tmp_path))
    assoc = start_move(net)
    sub_association(net, PACS, EXT, T0 + 1)
    trigger, finding = only(net)
    assert trigger == "AssociationAccepted"
    assert finding.rule.severity is Severity.HIGH
    assert finding.session is assoc.session  # about the C-MOVE association, for --alert-pcap
    assert (finding.view.requestor_ip, finding.view.acceptor_ip) == (OFFICE, PACS)
    move = finding.fields["move"]
    assert move["reason"] == "answered-external"
    assert move["destination"] == DEST
    assert move["requested"] == "2023-11-14T22:13:20.030000Z"  # the C-MOVE-RQ, not the AC
    assert finding.ts > T0 + 1  # the event time is the decision
    assert move["sub_association"]["destination"] == {"ip": EXT, "port": 104, "zone": "external"}
    assert move["sub_association"]["calling_ae_title"] == "PACS"
    net.finish()
    assert len(net.of(RULE)) == 1


def test_multi_homed_scp_is_matched_by_its_ae_title(tmp_path: Path) -> None:
    """The SCP sends from another address (PACS_B) but calls with its own AE title."""
    net = Net(hospital(tmp_path))
    start_move(net)
    sub_association(net, OFFICE2, EXT, T0 + 1, calling="OTHER")  # neither address nor title
    assert net.of(RULE) == []
    sub_association(net, PACS_B, EXT, T0 + 2, calling="PACS")
    _, finding = only(net)
    assert finding.fields["move"]["sub_association"]["source"]["ip"] == PACS_B


def test_refused_move_a801(tmp_path: Path) -> None:
    net = Net(hospital(tmp_path))
    assoc = start_move(net)
    assoc.feed([(SCP, move_rsp(0xA801))])
    trigger, finding = only(net)
    assert trigger == "DimseMessage"
    assert finding.rule.severity is Severity.MEDIUM  # nothing moved
    assert finding.fields["move"]["reason"] == "refused"
    assert finding.fields["move"]["status"] == "0xA801"
    assert "0xA801" in finding.message


def test_pending_responses_do_not_decide_and_success_without_answer_does(tmp_path: Path) -> None:
    net = Net(hospital(tmp_path))
    assoc = start_move(net)
    assoc.feed([(SCP, p.command(v.C_MOVE_RSP, 1))])  # 0xFF00: sub-operations go on
    assert net.engine.pending(assoc.session)
    assoc.feed([(SCP, move_rsp(0x0000))])
    _, finding = only(net)
    assert finding.fields["move"]["reason"] == "no-answer"
    assert finding.rule.severity is Severity.HIGH  # the images may have gone unseen


def test_rejected_sub_association(tmp_path: Path) -> None:
    net = Net(hospital(tmp_path))
    start_move(net)
    net.run(PACS, MODALITY, [(SCU, p.rq("PACS", DEST)), (SCP, p.rj(1, 1, 7))], ts=T0 + 1)
    trigger, finding = only(net)
    assert trigger == "AssociationRejected"
    assert finding.fields["move"]["reason"] == "rejected"
    assert finding.rule.severity is Severity.MEDIUM
    assert "rejected" in finding.message


def test_no_answer_is_decided_by_tick_at_the_deadline(tmp_path: Path) -> None:
    net = Net(hospital(tmp_path))
    assoc = start_move(net)
    assoc.close()  # the C-MOVE association may end first: the decision still comes
    assert net.tick(T0 + 29) == []
    [finding] = net.tick(T0 + 31)
    assert finding.fields["move"]["reason"] == "no-answer"
    assert finding.ts == pytest.approx(T0 + 0.03 + 30)  # dated at its deadline
    assert finding.rule.severity is Severity.HIGH
    # a sub-association after the window matches nothing and decides nothing
    sub_association(net, PACS, EXT, T0 + 40)
    net.finish()
    assert len(net.of(RULE)) == 1


def test_decide_within_is_configurable(tmp_path: Path) -> None:
    net = Net(hospital(tmp_path, {RULE: {"decide_within": 5}}))
    start_move(net)
    assert net.tick(T0 + 4) == []
    assert len(net.tick(T0 + 6)) == 1


def test_pending_at_flush_is_decided_with_what_is_known(tmp_path: Path) -> None:
    net = Net(hospital(tmp_path))
    start_move(net)
    net.run(PACS, EXT, [(SCU, p.rq("PACS", DEST))], ts=T0 + 1)  # requested, never answered
    assert net.of(RULE) == []
    net.finish()
    trigger, finding = only(net)
    assert trigger == "flush"
    assert finding.fields["move"]["reason"] == "capture-ended"
    assert finding.fields["move"]["sub_association"]["destination"]["ip"] == EXT
    assert net.finish() == []  # decided once


def test_known_destination_without_answer_stays_quiet(tmp_path: Path) -> None:
    """STORESCP answered as SCP on an internal node before: its sub-association went by a
    path the sensor does not see."""
    net = Net(hospital(tmp_path))
    net.run(MODALITY, PACS_B, echo_as("ECHOSCU", DEST), ts=T0 - 10)
    start_move(net)
    net.finish()
    assert net.of(RULE) == []
    assert net.engine.move_decisions["known"] == 1


def test_destination_known_only_from_an_external_zone_is_not_known(tmp_path: Path) -> None:
    net = Net(hospital(tmp_path))
    net.run(MODALITY, EXT, echo_as("ECHOSCU", DEST), ts=T0 - 10)  # EXT answered as STORESCP
    start_move(net)
    net.finish()
    assert len(net.of(RULE)) == 1


@pytest.mark.parametrize("value", ["0", "-1", "3601", "soon", ".nan"])
def test_decide_within_is_validated(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"rules\.move-unknown-destination\.decide_within"):
        hospital(tmp_path, {RULE: {"decide_within": value}})


def test_decide_within_accepts_a_number(tmp_path: Path) -> None:
    config = hospital(tmp_path, {RULE: {"decide_within": "120"}})
    assert config.rules[RULE].params["decide_within"] == 120


def test_pending_table_is_bounded_and_the_bite_counted(tmp_path: Path) -> None:
    """Beyond the cap the oldest pending C-MOVE is decided at once (reason limit)."""
    net = Net(hospital(tmp_path))
    net.engine.moves = PendingMoves(max_pending=2)
    first = start_move(net, T0)
    start_move(net, T0 + 1)
    assert net.of(RULE) == []
    net.run(OFFICE, PACS, move("WS"), ts=T0 + 2)  # table full: the first is decided now
    ((trigger, finding),) = net.of(RULE)
    assert trigger == "DimseMessage" and finding.session is first.session
    assert finding.fields["move"]["reason"] == "limit"
    assert net.engine.moves.limited == 1 and net.engine.move_decisions["limit"] == 1
    assert len(net.engine.moves) == 2


def test_a_retried_sub_association_takes_over_an_unanswered_one(tmp_path: Path) -> None:
    """The SCP's first attempt gets no answer; its second is answered from outside."""
    net = Net(hospital(tmp_path))
    start_move(net)
    net.run(PACS, MODALITY, [(SCU, p.rq("PACS", DEST))], ts=T0 + 1)  # never answered
    sub_association(net, PACS, EXT, T0 + 5)
    _, finding = only(net)
    assert finding.fields["move"]["reason"] == "answered-external"
    assert finding.fields["move"]["sub_association"]["destination"]["ip"] == EXT


def test_two_pending_moves_each_get_their_own_sub_association(tmp_path: Path) -> None:
    """Two C-MOVEs to STORESCP from two requestors: the first sub-association goes to the
    older move, the second to the other one, whatever zone answers."""
    net = Net(hospital(tmp_path))
    first = start_move(net, T0)
    second = net.run(OFFICE2, PACS, move("WS2"), ts=T0 + 1)
    sub_association(net, PACS, MODALITY, T0 + 2)  # internal: the first move is known
    assert not net.engine.pending(first.session) and net.engine.pending(second.session)
    sub_association(net, PACS, EXT, T0 + 3)
    _, finding = only(net)
    assert finding.session is second.session
    assert finding.view.requestor_ip == OFFICE2
