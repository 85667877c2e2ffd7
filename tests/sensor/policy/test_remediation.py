"""Every rule carries a one-sentence remediation and a reference to docs/remediation.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sensor.policy.alerts import alert_event
from sensor.policy.catalogue import REMEDIATION_DOC, REMEDIATIONS, RULES, RuleSpec
from sensor.policy.config import default_config
from sensor.policy.findings import Finding
from sensor.policy.view import AssociationView

ROOT = Path(__file__).resolve().parents[3]


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings: lower case, punctuation dropped, spaces to '-'."""
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_every_rule_has_a_remediation() -> None:
    assert set(REMEDIATIONS) == {rule.id for rule in RULES}
    for rule_id, remedy in REMEDIATIONS.items():
        text = remedy.text
        assert text[0].isupper() and text.endswith("."), rule_id
        assert text.count(". ") == 0, f"{rule_id}: one sentence"
        assert 40 <= len(text) <= 160, rule_id


def test_every_reference_names_a_section_that_exists() -> None:
    doc = ROOT / REMEDIATION_DOC
    anchors = _anchors(doc.read_text("utf-8"))
    for rule_id, remedy in REMEDIATIONS.items():
        path, _, anchor = remedy.reference.partition("#")
        assert path == REMEDIATION_DOC
        assert anchor in anchors, (rule_id, anchor)
        # The section says which rules it answers.
        section = doc.read_text("utf-8").split("\n## ")[1:]
        bodies = {
            re.sub(r"[^\w\- ]", "", s.splitlines()[0].lower()).replace(" ", "-"): s for s in section
        }
        assert f"`{rule_id}`" in bodies[anchor], (rule_id, anchor)


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_alert_events_carry_it(rule: RuleSpec) -> None:
    config = default_config()
    rule_id = rule.id
    zone = config.zones.lookup("10.0.0.1")
    view = AssociationView("10.0.0.1", 40000, "10.0.0.2", 104, zone, zone, "A", "B", None,
                           1.0, None)  # fmt: skip
    finding = Finding(config.rules[rule_id], view, 2.0, "message", {}, rule.protocol)
    event = alert_event(finding)
    assert event["dicom"]["alert"]["remediation"] == REMEDIATIONS[rule_id].text
    assert event["rule"]["reference"] == REMEDIATIONS[rule_id].reference
