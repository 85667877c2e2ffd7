"""Zone policy on real-peer captures across network namespaces (pcaps/zones/), and config errors.

Each scenario folder holds a capture made by DCMTK, pynetdicom and nmap peers in namespaces
that stand for hospital zones, the zone config for that address plan, and
expected_alerts.json, written by pcaps/zones/generate.sh from the scenario's specification
and the peers' logs (never from the sensor's output). The sensor must raise exactly those
alerts: no more, no fewer, with the right fold counts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ZONES = ROOT / "pcaps" / "zones"
SCENARIOS = sorted(p.parent.name for p in ZONES.glob("*/capture.pcap"))
CANARY = "CANARY-ZONES-PASS"
EXAMPLE = ROOT / "deploy" / "zones.example.yaml"
EXPECTED_SCENARIOS = ["brute-force", "bulk-outbound", "credentials-move-query", "normal-workflow",
                      "perimeter", "shadow-pacs", "sweep"]  # fmt: skip

AlertKey = tuple[str, str, str, str, int]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as an operator runs it, in a child process (exit code, stdout, stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "sensor.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Run:
    """One `read` of a scenario capture with every output switched on."""

    def __init__(self, scenario: str, out: Path, config: Path | None = None) -> None:
        folder = ZONES / scenario
        self.scenario = scenario
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.paths = {
            "associations": out / "associations.jsonl",
            "events": out / "events.jsonl",
            "metrics": out / "metrics.prom",
            "inventory": out / "inventory.json",
            "inventory-csv": out / "inventory.csv",
        }
        args = ["read", str(folder / "capture.pcap")]
        args += ["--config", str(config if config is not None else folder / "config.yaml")]
        for name, path in self.paths.items():
            args += [f"--{name}", str(path)]
        self.proc = run_cli(*args)
        self.events = [json.loads(line) for line in self.text("events").splitlines()]
        self.alerts = [e for e in self.events if e["event"]["kind"] == "alert"]
        self.records = [json.loads(line) for line in self.text("associations").splitlines()]

    def text(self, name: str) -> str:
        path = self.paths[name]
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def keys(self) -> list[AlertKey]:
        return sorted(alert_key(a) for a in self.alerts)


def alert_key(alert: dict[str, Any]) -> AlertKey:
    return (
        alert["rule"]["id"],
        alert["source"]["ip"],
        alert["destination"]["ip"],
        alert["event"]["action"],
        alert["dicom"]["alert"]["count"],
    )


def expected(scenario: str) -> list[AlertKey]:
    rows = json.loads((ZONES / scenario / "expected_alerts.json").read_text(encoding="utf-8"))
    return sorted(
        (r["rule_id"], r["source_ip"], r["destination_ip"], r["action"], r["count"]) for r in rows
    )


_RUNS: dict[str, Run] = {}


@pytest.fixture
def scenario_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The scenario's read, done once per test session."""
    scenario = request.param
    if scenario not in _RUNS:
        _RUNS[scenario] = Run(scenario, tmp_path_factory.mktemp(f"zones-{scenario}"))
    run = _RUNS[scenario]
    assert run.proc.returncode == 0, run.proc.stderr
    return run


def test_every_scenario_is_here() -> None:
    # a missing folder must fail, not shrink the parametrized tests silently
    assert SCENARIOS == EXPECTED_SCENARIOS
    for scenario in SCENARIOS:
        folder = ZONES / scenario
        for name in ("capture.pcap", "config.yaml", "README.md", "expected_alerts.json"):
            assert (folder / name).is_file(), f"{scenario}/{name}"


@pytest.mark.parametrize("scenario_run", SCENARIOS, indirect=True)
def test_alerts_are_exactly_the_expected_ones(scenario_run: Run) -> None:
    assert scenario_run.keys() == expected(scenario_run.scenario)


@pytest.mark.parametrize("scenario_run", ["normal-workflow"], indirect=True)
def test_normal_workflow_raises_no_alert(scenario_run: Run) -> None:
    assert scenario_run.alerts == []
    # ... although it is a real workflow: 7 associations, stores, finds, moves and their
    # sub-associations, ward <-> PACS included (allow-listed)
    assert len(scenario_run.records) == 7
    dimse: Counter[str] = Counter()
    for record in scenario_run.records:
        dimse.update(record["dicom"]["dimse"])
    assert dimse["C-STORE-RQ"] == 6 and dimse["C-FIND-RQ"] == 2 and dimse["C-MOVE-RQ"] == 2


@pytest.mark.parametrize("scenario_run", SCENARIOS, indirect=True)
def test_folded_alert_follows_its_detection(scenario_run: Run) -> None:
    detected: dict[tuple[str, str, str], dict[str, Any]] = {}
    for alert in scenario_run.alerts:  # file order = emission order
        key = (alert["rule"]["id"], alert["source"]["ip"], alert["destination"]["ip"])
        count = alert["dicom"]["alert"]["count"]
        if alert["event"]["action"] == "detected":
            assert count == 1
            assert key not in detected, f"{key} detected twice within the fold window"
            detected[key] = alert
        else:
            assert alert["event"]["action"] == "folded"
            assert key in detected, f"folded {key} without its detected event before it"
            assert count >= 1  # the repeats since the detected event
            plural = "" if count == 1 else "s"
            assert alert["message"].endswith(f"({count} more time{plural})")
            assert alert["event"]["start"] == detected[key]["event"]["start"]
            assert alert["event"]["end"] >= alert["event"]["start"]


@pytest.mark.parametrize("scenario_run", ["brute-force"], indirect=True)
def test_brute_force_fold_count_is_rejections_minus_threshold(
    scenario_run: Run,
) -> None:
    rejected = [
        r
        for r in scenario_run.records
        if r["dicom"]["association"]["result"] == "rejected"
        and (r["dicom"].get("reject") or {}).get("reason") == 7
    ]
    assert len(rejected) >= 20
    threshold = 5  # the default; config.yaml does not change it
    brute = [a for a in scenario_run.alerts if a["rule"]["id"] == "ae-brute-force"]
    assert [a["event"]["action"] for a in brute] == ["detected", "folded"]
    # findings = rejections - threshold + 1; the first is the detected event
    assert brute[1]["dicom"]["alert"]["count"] == len(rejected) - threshold
    probes = [a for a in scenario_run.alerts if a["rule"]["id"] == "perimeter-inbound-probe"]
    assert probes[-1]["dicom"]["alert"]["count"] == len(rejected) - 1
    scanner = [a for a in scenario_run.alerts if a["rule"]["id"] == "scanner-probe"]
    if scanner:  # nmap was installed when the capture was made
        assert scanner[0]["dicom"]["scanner"] == {"nmap_fingerprint": True}


@pytest.mark.parametrize("scenario_run", SCENARIOS, indirect=True)
def test_alerts_carry_zones_and_association_identity(scenario_run: Run) -> None:
    config_zones = set(re.findall(r"^  ([a-z-]+):", _zones_block(scenario_run), re.M))
    config_zones.add("internet")  # the default zone's name
    for alert in scenario_run.alerts:
        assert alert["source"]["zone"] in config_zones
        assert alert["destination"]["zone"] in config_zones
        assert alert["source"]["port"] and alert["destination"]["port"]
        assert alert["dicom"]["calling_ae_title"] and alert["dicom"]["called_ae_title"]
        assert alert["message"]


def _zones_block(run: Run) -> str:
    text = (ZONES / run.scenario / "config.yaml").read_text(encoding="utf-8")
    return text.split("zones:", 1)[1].split("default_zone:", 1)[0]


@pytest.mark.parametrize("scenario_run", ["shadow-pacs"], indirect=True)
def test_shadow_pacs_is_in_the_inventory(scenario_run: Run) -> None:
    nodes = {n["ip"]: n for n in json.loads(scenario_run.text("inventory"))}
    office = nodes["10.50.0.31"]
    assert office["zone"] == "office"
    assert office["roles"] == ["SCP"]
    assert office["ae_titles"]["scp"] == ["OFFICEPACS"]
    assert office["ports"] == [11112]


@pytest.mark.parametrize("scenario_run", SCENARIOS, indirect=True)
def test_passcode_canary_appears_in_no_output(scenario_run: Run) -> None:
    outputs = {name: scenario_run.text(name) for name in scenario_run.paths}
    outputs["stdout"] = scenario_run.proc.stdout
    outputs["stderr"] = scenario_run.proc.stderr
    for name, text in outputs.items():
        assert CANARY not in text, f"passcode canary in {name}"
    for path in scenario_run.out.iterdir():
        assert CANARY.encode() not in path.read_bytes(), path.name


def test_canary_is_in_the_credentials_capture() -> None:
    # otherwise the no-leak test above proves nothing
    assert CANARY.encode() in (ZONES / "credentials-move-query" / "capture.pcap").read_bytes()


@pytest.mark.parametrize("scenario_run", ["credentials-move-query"], indirect=True)
def test_credentials_alert_says_a_passcode_was_sent_never_which(scenario_run: Run) -> None:
    (cred,) = [a for a in scenario_run.alerts if a["rule"]["id"] == "cleartext-credentials"]
    assert cred["dicom"]["user_identity"] == {
        "type": 2,
        "type_name": "username-and-passcode",
        "passcode_present": True,
    }
    assert "synth_ward_user" not in json.dumps(cred)  # not even the username
    assert cred["source"]["zone"] == "ward" and cred["destination"]["zone"] == "pacs"


# ---------------------------------------------------------------- the learned baseline


def _config_with_rules(tmp_path: Path, extra: str) -> Path:
    base = (ZONES / "normal-workflow" / "config.yaml").read_text(encoding="utf-8")
    head, tail = base.split("alerts:", 1)
    path = tmp_path / "config.yaml"
    path.write_text(f"{head}{extra}alerts:{tail}", encoding="utf-8")
    assert run_cli("check-config", str(path)).returncode == 0
    return path


def test_short_learning_period_reports_nodes_first_seen_later(tmp_path: Path) -> None:
    # normal-workflow runs in three phases 2 s apart: with a 1 s learning period for every
    # baseline rule, RADWS and WARDVIEW are new nodes, and the ports their movescu listens
    # on are new ports of nodes known (as requestors) a moment before.
    config = _config_with_rules(
        tmp_path,
        "  new-node: {learning_period: 1}\n"
        "  new-ae-title: {learning_period: 1}\n"
        "  new-port: {learning_period: 1}\n",
    )
    run = Run("normal-workflow", tmp_path / "out", config)
    assert run.proc.returncode == 0, run.proc.stderr
    assert run.keys() == sorted(
        [
            ("new-node", "10.20.0.12", "10.30.0.5", "detected", 1),
            ("new-node", "10.40.0.21", "10.30.0.5", "detected", 1),
            ("new-port", "10.30.0.5", "10.20.0.12", "detected", 1),
            ("new-port", "10.30.0.5", "10.40.0.21", "detected", 1),
        ]
    )


def test_each_baseline_rule_honours_its_own_learning_period(tmp_path: Path) -> None:
    # new nodes reported after 1 s, but new ports only after a day: the ports the
    # movescu listeners open must not be reported within the first day.
    config = _config_with_rules(
        tmp_path,
        "  new-node: {learning_period: 1}\n"
        "  new-ae-title: {learning_period: 86400}\n"
        "  new-port: {learning_period: 86400}\n",
    )
    run = Run("normal-workflow", tmp_path / "out", config)
    assert run.proc.returncode == 0, run.proc.stderr
    assert run.keys() == sorted(
        [
            ("new-node", "10.20.0.12", "10.30.0.5", "detected", 1),
            ("new-node", "10.40.0.21", "10.30.0.5", "detected", 1),
        ]
    )


# ---------------------------------------------------------------- config files


def test_check_config_accepts_the_example() -> None:
    proc = run_cli("check-config", str(EXAMPLE))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    table = proc.stdout
    for zone in ("radiology", "pacs", "wards", "office", "guest-wifi", "vpn-teleradiology"):
        assert re.search(rf"^  {re.escape(zone)} ", table, re.M), zone
    assert "2001:db8:20::/48" in table and "10.20.0.0/16" in table
    # the rules the example configures with allow lists are on, with their entries
    assert re.search(r"^  on  radiology-boundary .*2 allow entries", table, re.M)
    assert re.search(r"^  on  perimeter-inbound .*1 allow entries", table, re.M)
    assert "note:" not in table  # it declares radiology zones: every rule is active


def test_example_zone_lookup_by_longest_prefix() -> None:
    from sensor.policy.config import load_config

    zones = load_config(EXAMPLE).zones
    assert zones.lookup("10.30.0.5").name == "pacs"
    assert zones.lookup("10.30.0.50").name == "vna"  # the /32 inside the PACS /24
    assert zones.lookup("2001:db8:40::21").name == "wards"
    assert zones.lookup("10.60.1.2").trust.value == "external"
    assert zones.lookup("198.51.100.10").name == "internet"


BROKEN: list[tuple[str, str, int | None, str]] = [
    # (id, file content, line the error must name, a fragment of the message)
    ("bad-cidr", "zones:\n  pacs:\n    cidrs:\n      - 10.30.0.0/33\n", 4, "10.30.0.0/33"),
    (
        "unknown-trust",
        "zones:\n  pacs:\n    cidrs: [10.30.0.0/24]\n    radiology: true\n    trust: semi\n",
        5,
        "semi",
    ),
    (
        "unknown-rule",
        "zones:\n  pacs:\n    cidrs: [10.30.0.0/24]\nrules:\n  perimeter-inbund:\n"
        "    enabled: false\n",
        5,
        "perimeter-inbund",
    ),
    (
        "allow-unknown-zone",
        "zones:\n  pacs:\n    cidrs: [10.30.0.0/24]\n    radiology: true\nrules:\n"
        "  radiology-boundary:\n    allow:\n      - source_zone: wards\n"
        "        destination_zone: pacs\n",
        8,
        "wards",
    ),
    (
        "yaml-syntax",
        "zones:\n  pacs:\n    cidrs: [10.30.0.0/24]\n    trust: dmz: internal\n",
        4,
        "YAML",
    ),
    ("missing-file", "", None, "no such file"),
]


@pytest.mark.parametrize("command", ["check-config", "read"])
@pytest.mark.parametrize(
    ("content", "line", "fragment"),
    [case[1:] for case in BROKEN],
    ids=[case[0] for case in BROKEN],
)
def test_broken_config_is_one_line_naming_file_and_line(
    tmp_path: Path, command: str, content: str, line: int | None, fragment: str
) -> None:
    path = tmp_path / "zones.yaml"
    if line is not None:
        path.write_text(content, encoding="utf-8")
    if command == "check-config":
        proc = run_cli("check-config", str(path))
    else:
        capture = ZONES / "perimeter" / "capture.pcap"
        proc = run_cli("read", str(capture), "--config", str(path), "-q")
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert proc.stderr.endswith("\n")
    message = lines[0]
    if line is None:
        assert f"{path}:" in message
    else:
        assert f"{path}:{line}:" in message
    assert fragment in message
