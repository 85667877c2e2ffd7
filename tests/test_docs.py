"""Every metric, anomaly reason and config key the sensor knows is in the docs.

The lists come from the code (the exposition of a fresh pipeline, the reason enums, the
config's field tuples and the rule catalogue), so a new name without documentation fails.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dissectors.dicom.errors import Reason as DicomReason
from dissectors.hl7.errors import Reason as HL7Reason
from dissectors.registry import load_dissectors
from sensor.flow.table import EngineAnomaly
from sensor.outputs.metrics import exposition
from sensor.pipeline import Pipeline
from sensor.policy import config
from sensor.policy.catalogue import RULES

ROOT = Path(__file__).resolve().parents[1]
DEPLOY_README = (ROOT / "deploy" / "README.md").read_text(encoding="utf-8")
FIELDS_ECS = (ROOT / "docs" / "fields-ecs.md").read_text(encoding="utf-8")
EXAMPLE = (ROOT / "deploy" / "zones.example.yaml").read_text(encoding="utf-8")


def _metric_names() -> list[str]:
    text = exposition(Pipeline(load_dissectors())).decode()
    return sorted(set(re.findall(r"^# TYPE (\S+) ", text, re.M)))


@pytest.mark.parametrize("name", _metric_names())
def test_every_metric_is_in_the_metric_table(name: str) -> None:
    assert f"`{name}`" in DEPLOY_README, f"{name} is missing from deploy/README.md's table"


@pytest.mark.parametrize(
    "reason", sorted({r.value for r in (*DicomReason, *HL7Reason, *EngineAnomaly)})
)
def test_every_anomaly_reason_is_in_the_field_reference(reason: str) -> None:
    assert f"`{reason}`" in FIELDS_ECS, f"{reason} is missing from docs/fields-ecs.md"


def _config_keys() -> list[str]:
    keys = [
        *config.TOP_FIELDS,
        *config.ZONE_FIELDS,
        *config.DEFAULT_ZONE_FIELDS,
        *config.RULE_FIELDS,
        *config.ALLOW_FIELDS,
        *config.ALERTS_FIELDS,
        *config.SYSLOG_FIELDS,
        *config.BASELINE_FIELDS,
    ]
    for rule in RULES:
        keys += [rule.id, *rule.params]
    return sorted(set(keys))


@pytest.mark.parametrize("key", _config_keys())
def test_every_config_key_is_in_the_example_config(key: str) -> None:
    """The commented sample names every key (as a key, or in a comment that explains it)."""
    assert re.search(rf"(^|[\s#(]){re.escape(key)}\b", EXAMPLE, re.M), (
        f"{key} is missing from deploy/zones.example.yaml"
    )
