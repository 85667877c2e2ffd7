"""deploy/: Prometheus, Alertmanager and Grafana files checked by the real tools.

- promtool checks both scrape configs and the rules, and runs the rules' unit tests;
- amtool checks the Alertmanager config and where its routes send each kind of alert;
- every PromQL expression of the Grafana dashboard is parsed by promtool (as recording
  rules), and every metric the rules and the dashboard name is one the sensor exports;
- end to end: a real Prometheus server scrapes a running sensor that read a
  perimeter-crossing capture, evaluates deploy/'s rules, and reports the alert firing.

Everything listens on 127.0.0.1 only. promtool and prometheus come from the Debian package
``prometheus`` (``make system-deps``), amtool from ``prometheus-alertmanager``.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dpkt
import pytest
import yaml

from dissectors.registry import load_dissectors
from sensor.capture.offline import OfflineCapture
from sensor.flow.stream import StreamAnomaly
from sensor.outputs.metrics import ANOMALY_REASONS, exposition
from sensor.pipeline import Pipeline
from sensor.policy.catalogue import RULES
from sensor.policy.moves import MoveReason

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROM = DEPLOY / "prometheus"
RULES_FILE = PROM / "rules" / "dicom-sensor.rules.yml"
RULES_TEST = PROM / "tests" / "dicom-sensor.rules.test.yml"
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
DASHBOARD = DEPLOY / "grafana" / "dicom-sensor.json"
ECHO_CAPTURE = ROOT / "pcaps" / "dcmtk-echo-104" / "capture.pcap"
SYSTEMD_UNIT = DEPLOY / "systemd" / "dicom-sensor@.service"

EXTERNAL_REQUESTOR = "198.51.100.7"  # TEST-NET-2: "public-looking", in no configured zone


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install the Debian package {package} (make system-deps)")
    return path


def _run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=60, check=False
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------ promtool


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-fleet.yml"])
def test_promtool_check_config(config: str) -> None:
    output = _ok(_run(_tool("promtool", "prometheus"), "check", "config", PROM / config))
    assert "1 rule files found" in output  # the rules are found relative to the config


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-fleet.yml"])
def test_scrape_configs_label_every_target_with_a_sensor(config: str) -> None:
    (job,) = [j for j in _load(PROM / config)["scrape_configs"] if j["job_name"] == "dicom-sensor"]
    groups = job["static_configs"]
    sensors = [group["labels"]["sensor"] for group in groups]
    assert all(sensors)
    assert len(set(sensors)) == len(sensors)
    for group in groups:
        assert group["labels"].get("idle_after", "15m") in {"5m", "15m", "1h", "never"}


def test_file_sd_targets_example_is_valid(tmp_path: Path) -> None:
    targets = PROM / "targets" / "dicom-sensors.example.yml"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "scrape_configs": [
                    {"job_name": "dicom-sensor", "file_sd_configs": [{"files": [str(targets)]}]}
                ]
            }
        )
    )
    _ok(_run(_tool("promtool", "prometheus"), "check", "config", config))
    assert all(group["labels"]["sensor"] for group in _load(targets))


def test_promtool_check_rules() -> None:
    output = _ok(_run(_tool("promtool", "prometheus"), "check", "rules", RULES_FILE))
    assert "SUCCESS" in output


def test_promtool_test_rules() -> None:
    output = _ok(_run(_tool("promtool", "prometheus"), "test", "rules", RULES_TEST))
    assert "SUCCESS" in output


def _alerting_rules() -> list[dict[str, Any]]:
    groups = _load(RULES_FILE)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for case in _load(RULES_TEST)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = {rule["alert"] for rule in _alerting_rules()}
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - silent == set(), "alerts never tested not firing"
    assert firing | silent <= alerts, "tests of alerts that do not exist"


def test_every_alert_has_severity_kind_and_annotations() -> None:
    for rule in _alerting_rules():
        labels = rule.get("labels", {})
        assert labels.get("kind") in {"dicom-finding", "sensor-health"}, rule["alert"]
        # Findings keep the severity label of dicom_alerts_total (the sensor's config).
        if labels["kind"] == "sensor-health":
            assert labels["severity"] in {"info", "low", "medium", "high", "critical"}
        else:
            assert "dicom_alerts" in rule["expr"] and "severity" not in labels
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
        assert "$labels.sensor" in rule["annotations"]["summary"], rule["alert"]
        assert "for" in rule, rule["alert"]


def test_annotations_name_the_event_field_that_holds_the_rule_slug() -> None:
    """The `rule` label is the slug: in the events it is rule.id (rule.name is the sentence)."""
    from sensor.policy.catalogue import RULES_BY_ID

    for rule in _alerting_rules():
        text = " ".join(rule["annotations"].values())
        assert "rule.name=" not in text, rule["alert"]
        for slug in re.findall(r"rule\.id=([a-z0-9-]+)", text):
            assert slug in RULES_BY_ID, (rule["alert"], slug)


def test_rule_tests_cover_the_whole_catalogue() -> None:
    """The "every rule" unit test feeds each catalogue rule once, at its default severity."""
    (case,) = [c for c in _load(RULES_TEST)["tests"] if "every rule" in c["name"]]
    fed = {
        (m.group(1), m.group(2))
        for s in case["input_series"]
        for m in [re.search(r'rule="([^"]+)",severity="([^"]+)"', s["series"])]
        if m
    }
    assert fed == {(r.id, r.severity.value) for r in RULES}


# ------------------------------------------------------------------------ metric names


@pytest.fixture(scope="module")
def exported_names() -> set[str]:
    """Sample names the sensor exports (read one capture through a private registry)."""
    pipeline = Pipeline(load_dissectors())
    pipeline.read(OfflineCapture(str(ECHO_CAPTURE)))
    pipeline.finish()
    text = exposition(pipeline).decode()
    return {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def _recorded() -> set[str]:
    return {r["record"] for g in _load(RULES_FILE)["groups"] for r in g["rules"] if "record" in r}


def _metric_names(promql: str) -> set[str]:
    """The sensor's metric names and recording rule names a PromQL text refers to."""
    return set(re.findall(r"\b(?:dicom_\w+|\w+:\w+:\w+)", promql))


def test_rules_name_only_exported_or_recorded_metrics(exported_names: set[str]) -> None:
    known = exported_names | _recorded()
    for group in _load(RULES_FILE)["groups"]:
        for rule in group["rules"]:
            texts = [rule["expr"], *rule.get("annotations", {}).values()]
            for text in texts:
                assert _metric_names(text) <= known, text


# ------------------------------------------------------------------------ Grafana

# Values for Grafana's variables, only for parsing: every one must be replaced.
GRAFANA_VARIABLES = {
    "sensor": "imaging-core",
    "__rate_interval": "1m",
    "__interval": "30s",
    "__range": "6h",
    "__range_s": "21600",
    "__range_ms": "21600000",
}


def _substitute(expr: str) -> str:
    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in GRAFANA_VARIABLES, f"unknown Grafana variable ${name} in {expr}"
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) for every panel target and every annotation query."""
    found = [
        (f"panel {p['id']} {p['title']!r} target {t['refId']}", t["expr"])
        for p in _panels(dashboard["panels"])
        for t in p.get("targets", [])
    ]
    found += [
        (f"annotation {a['name']!r}", a["expr"])
        for a in dashboard["annotations"]["list"]
        if "expr" in a
    ]
    return found


def test_dashboard_structure(dashboard: dict[str, Any]) -> None:
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["sensor"]["includeAll"] and variables["sensor"]["allValue"] == ".*"
    ids = [p["id"] for p in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    titles = " | ".join(p["title"] for p in _panels(dashboard["panels"])).lower()
    for wanted in ("zone pair", "by rule", "dimse", "top 10", "packets per second",
                   "capture drops", "flows active", "reassembly gaps", "anomalies",
                   "last packet age"):  # fmt: skip
        assert wanted in titles


def test_dashboard_exprs_all_filter_by_sensor(dashboard: dict[str, Any]) -> None:
    for where, expr in _dashboard_exprs(dashboard):
        assert 'sensor=~"$sensor"' in expr, where


def test_dashboard_exprs_parse_with_promtool(dashboard: dict[str, Any], tmp_path: Path) -> None:
    exprs = _dashboard_exprs(dashboard)
    assert len(exprs) >= 25
    rules = [
        {"record": f"dashboard:expr_{i}:check", "expr": _substitute(expr)}
        for i, (_, expr) in enumerate(exprs)
    ]
    rules_file = tmp_path / "dashboard-exprs.rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _run(_tool("promtool", "prometheus"), "check", "rules", rules_file)
    listing = "\n".join(f"expr_{i}: {where}: {expr}" for i, (where, expr) in enumerate(exprs))
    assert result.returncode == 0, result.stdout + result.stderr + "\n" + listing
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


FINDINGS_PANELS = ("Findings (range)", "Findings by rule and severity (range)")


def _panel_rules(
    dashboard: dict[str, Any], titles: tuple[str, ...], name: str, tmp_path: Path
) -> Path:
    """A rules file recording each titled panel's first expression as ``dashboard:NAME_i``
    (sensor tap-1, a 1 h range), for promtool to run on recorded series."""
    panels = {p["title"]: p for p in _panels(dashboard["panels"])}
    variables = {**GRAFANA_VARIABLES, "__range": "1h", "sensor": "tap-1"}

    def substitute(expr: str) -> str:
        return re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], expr)

    rules = [
        {"record": f"dashboard:{name}_{i}", "expr": substitute(panels[title]["targets"][0]["expr"])}
        for i, title in enumerate(titles)
    ]
    rules_file = tmp_path / f"{name}.rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": name, "rules": rules}]}))
    return rules_file


def test_findings_panels_count_what_a_sensor_had_at_its_first_scrape(
    dashboard: dict[str, Any], tmp_path: Path
) -> None:
    """The panels' own expressions as recording rules, run by promtool on recorded series.

    A sensor scraped for the first time with 5 findings already counted (an offline read
    with --hold, findings in the first seconds of a capture) must show them: a bare
    increase() gives 0 there while the alerts fire.
    """
    rules_file = _panel_rules(dashboard, FINDINGS_PANELS, "panel", tmp_path)
    born = 'dicom_alerts_total{sensor="tap-1",rule="ae-brute-force",severity="high"}'
    rising = 'dicom_alerts_total{sensor="tap-1",rule="perimeter-inbound",severity="high"}'
    older = 'dicom_alerts_total{sensor="tap-1",rule="new-node",severity="low"}'
    tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # first scraped at 40m with 5 findings already counted
                    {"series": born, "values": "_x40 5x60"},
                    # scraped from the start, 3 findings between 50m and 52m
                    {"series": rising, "values": "0x50 1 2 3x50"},
                    # 7 findings, all before the range (30m..90m): not counted
                    {"series": older, "values": "7x100"},
                ],
                "promql_expr_test": [
                    {
                        "expr": "dashboard:panel_0",
                        "eval_time": "90m",
                        "exp_samples": [{"labels": "dashboard:panel_0", "value": 8}],
                    },
                    {
                        "expr": "dashboard:panel_1",
                        "eval_time": "90m",
                        "exp_samples": [
                            {"labels": 'dashboard:panel_1{rule="ae-brute-force",'
                                       'severity="high"}', "value": 5},
                            {"labels": 'dashboard:panel_1{rule="perimeter-inbound",'
                                       'severity="high"}', "value": 3},
                        ],
                    },
                ],
            }
        ],
    }  # fmt: skip
    test_file = tmp_path / "panels.test.yml"
    test_file.write_text(yaml.safe_dump(tests))
    result = _run(_tool("promtool", "prometheus"), "test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_names_only_exported_or_recorded_metrics(
    dashboard: dict[str, Any], exported_names: set[str]
) -> None:
    known = exported_names | _recorded()
    for where, expr in _dashboard_exprs(dashboard):
        assert _metric_names(expr) <= known, where
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert _metric_names(variable["definition"]) <= known


# ------------------------------------------------------------------------ Alertmanager


def _amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        pytest.skip(
            "amtool not found: it comes with the Debian package prometheus-alertmanager, "
            "which `make system-deps` does not install"
        )
    return path


def test_amtool_check_config() -> None:
    output = _ok(_run(_amtool(), "check-config", ALERTMANAGER))
    assert "SUCCESS" in output


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        ("alertname=DicomPerimeterCrossing kind=dicom-finding severity=high", "soc-pager"),
        ("alertname=DicomSensorFinding kind=dicom-finding severity=critical", "soc-pager"),
        ("alertname=DicomSensorFinding kind=dicom-finding severity=medium", "soc-tickets"),
        ("alertname=DicomSensorFinding kind=dicom-finding severity=low", "soc-tickets"),
        ("alertname=DicomSensorDown kind=sensor-health severity=high",
         "sensor-health-pager,soc-tickets"),
        ("alertname=DicomSensorCaptureDrops kind=sensor-health severity=medium", "sensor-health"),
    ],
)  # fmt: skip
def test_alertmanager_routes(labels: str, receivers: str) -> None:
    result = _run(
        _amtool(), "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels.split()
    )
    assert result.stdout.strip() == receivers, result.stdout + result.stderr


# ------------------------------------------------------------------------ systemd


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not found (Debian package systemd)")
    # verify insists that ExecStart's program exists: point it at a stand-in.
    stub = tmp_path / "dicom-sensor"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "dicom-sensor@eth1.service"
    unit.write_text(
        SYSTEMD_UNIT.read_text().replace("/opt/dicom-sensor/bin/dicom-sensor", str(stub))
    )
    result = _run(analyze, "verify", unit)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dicom-sensor" not in result.stderr, result.stderr  # no warning about our unit
    text = SYSTEMD_UNIT.read_text()
    assert "CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN\n" in text
    assert "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN\n" in text
    assert re.search(r"^User=(?!root)\S+$", text, re.M)


def _unit_commands(text: str) -> dict[str, list[str]]:
    """ExecStartPre and ExecStart of the unit, continuation lines joined, split into words."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return {m[1]: m[2].split() for m in re.finditer(r"^(ExecStart(?:Pre)?)=(.*)$", joined, re.M)}


def test_every_path_the_unit_and_example_config_write_is_writable_in_the_sandbox() -> None:
    """ProtectSystem=strict leaves only the unit's State- and LogsDirectory writable."""
    from sensor.policy.config import load_config

    text = SYSTEMD_UNIT.read_text()
    assert "ProtectSystem=strict" in text
    assert "ReadWritePaths=" not in text
    iface = "eth1"
    dirs = {
        "%S": re.search(r"^StateDirectory=(\S+)$", text, re.M)[1],  # type: ignore[index]
        "%L": re.search(r"^LogsDirectory=(\S+)$", text, re.M)[1],  # type: ignore[index]
    }
    roots = {"%S": "/var/lib", "%L": "/var/log"}
    writable = [f"{roots[k]}/{v.replace('%i', iface)}" for k, v in dirs.items()]

    def expand(word: str) -> str:
        for spec, root in roots.items():
            word = word.replace(spec, root)
        return word.replace("%i", iface)

    commands = _unit_commands(text)
    for name in ("ExecStartPre", "ExecStart"):
        words = commands[name]
        assert "--state-dir" in words, name
        state_dir = expand(words[words.index("--state-dir") + 1])
        assert state_dir == writable[0], name
    words = commands["ExecStart"]
    for option in ("--events", "--associations", "--inventory", "--inventory-csv", "--metrics"):
        if option in words:
            path = expand(words[words.index(option) + 1])
            assert any(path.startswith(d + "/") for d in writable), (option, path)
    config = load_config(DEPLOY / "zones.example.yaml", state_dir)
    assert config.state_file is not None
    assert any(config.state_file.startswith(d + "/") for d in writable), config.state_file


def test_check_config_accepts_the_example_in_a_writable_state_dir(tmp_path: Path) -> None:
    result = _run(sys.executable, "-m", "sensor.cli", "check-config",
                  DEPLOY / "zones.example.yaml", "--state-dir", tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"state_file: {tmp_path}/baseline.json" in result.stdout
    gone = tmp_path / "not-created"
    result = _run(sys.executable, "-m", "sensor.cli", "check-config",
                  DEPLOY / "zones.example.yaml", "--state-dir", gone)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "baseline.state_file" in result.stderr


# ------------------------------------------------------------------------ end to end


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _external_requestor_capture(path: Path) -> None:
    """The DCMTK C-ECHO capture with the requestor moved to a public-looking address."""
    with ECHO_CAPTURE.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        frames = [(ts, dpkt.ethernet.Ethernet(buf)) for ts, buf in reader]
    syn = next(
        eth.data
        for _, eth in frames
        if isinstance(eth.data, dpkt.ip.IP)
        and isinstance(eth.data.data, dpkt.tcp.TCP)
        and eth.data.data.flags & dpkt.tcp.TH_SYN
        and not eth.data.data.flags & dpkt.tcp.TH_ACK
    )
    old, new = syn.src, socket.inet_aton(EXTERNAL_REQUESTOR)
    with path.open("wb") as f:
        writer = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, eth in frames:
            ip = eth.data
            if ip.src == old:
                ip.src = new
            if ip.dst == old:
                ip.dst = new
            ip.sum = 0  # dpkt recomputes zeroed IP and TCP checksums when packing
            ip.data.sum = 0
            writer.writepkt(bytes(eth), ts=ts)


def _http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _wait_http(url: str, deadline: float, proc: subprocess.Popen[bytes], what: str) -> None:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not answer {url}")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def test_end_to_end_prometheus_fires_perimeter_alert(tmp_path: Path) -> None:
    prometheus = _tool("prometheus", "prometheus")
    capture = tmp_path / "perimeter.pcap"
    _external_requestor_capture(capture)
    zones = tmp_path / "zones.yaml"
    zones.write_text(
        "zones:\n"
        "  radiology:\n"
        "    cidrs: [10.10.0.0/24]\n"
        "    radiology: true\n"
        "    trust: internal\n"
        "default_zone:\n"
        "  name: internet\n"
        "  trust: external\n"
    )
    sensor_port, prom_port = _free_port(), _free_port()
    # deploy/'s single-sensor config, sped up: scrape and evaluate every second.
    config = _load(PROM / "prometheus.yml")
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(RULES_FILE)]
    config.pop("alerting")
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "dicom-sensor"
    job["static_configs"][0]["targets"] = [f"127.0.0.1:{sensor_port}"]
    sensor_name = job["static_configs"][0]["labels"]["sensor"]
    prom_config = tmp_path / "prometheus.yml"
    prom_config.write_text(yaml.safe_dump(config))

    sensor_log = (tmp_path / "sensor.log").open("wb")
    prom_log = (tmp_path / "prometheus.log").open("wb")
    sensor = prom = None
    api = f"http://127.0.0.1:{prom_port}/api/v1"
    deadline = time.monotonic() + 60
    try:
        sensor = subprocess.Popen(
            [sys.executable, "-m", "sensor.cli", "read", str(capture), "--config", str(zones),
             "--metrics-listen", f"127.0.0.1:{sensor_port}", "--hold", "-q"],
            cwd=ROOT, stdout=sensor_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        # The sensor has read the whole capture before Prometheus is even started: the
        # first scrape already sees the finding (the rules' "new series" branch).
        _wait_http(f"http://127.0.0.1:{sensor_port}/metrics", deadline, sensor, "the sensor")
        prom = subprocess.Popen(
            [prometheus, f"--config.file={prom_config}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
            cwd=tmp_path, stdout=prom_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        _wait_http(f"http://127.0.0.1:{prom_port}/-/ready", deadline, prom, "prometheus")
        firing: list[dict[str, Any]] = []
        while not firing:
            assert time.monotonic() < deadline, (
                "no DicomPerimeterCrossing firing within 60 s; targets: "
                + json.dumps(_http_json(f"{api}/targets")["data"]["activeTargets"])
                + "\nprometheus log:\n"
                + (tmp_path / "prometheus.log").read_text(errors="replace")
            )
            assert sensor.poll() is None, "the sensor exited"
            time.sleep(0.5)
            alerts = _http_json(f"{api}/alerts")["data"]["alerts"]
            firing = [
                a
                for a in alerts
                if a["labels"]["alertname"] == "DicomPerimeterCrossing" and a["state"] == "firing"
            ]
        (alert,) = firing
        assert alert["labels"] == {
            "alertname": "DicomPerimeterCrossing",
            "job": "dicom-sensor",
            "instance": f"127.0.0.1:{sensor_port}",
            "sensor": sensor_name,
            "idle_after": "15m",
            "rule": "perimeter-inbound",
            "severity": "high",
            "kind": "dicom-finding",
        }
        assert float(alert["value"]) == 1
        description = alert["annotations"]["description"]
        assert "internet -> radiology (1)" in description, description
        assert f"seen by sensor {sensor_name}" in alert["annotations"]["summary"]
        # The sensor is up and scraped: no health alert.
        assert not [a for a in alerts if a["labels"].get("kind") == "sensor-health"]
        up = _http_json(f"{api}/query?query=up")["data"]["result"]
        assert [r["value"][1] for r in up] == ["1"]
    finally:
        _stop(prom)
        _stop(sensor)
        sensor_log.close()
        prom_log.close()


# ------------------------------------------------------------------------ reasons on the dashboard

EXPLAINED = {
    "Anomalies by reason (range)": ANOMALY_REASONS,
    "Stream anomalies by reason (range)": tuple(r.value for r in StreamAnomaly),
    "C-MOVE decisions by reason (range)": tuple(r.value for r in MoveReason),
}


@pytest.mark.parametrize("title", sorted(EXPLAINED))
def test_dashboard_explains_every_reason_of_its_closed_set(
    dashboard: dict[str, Any], title: str
) -> None:
    """Each reason the code can count has a value mapping saying what produces it."""
    (panel,) = [p for p in _panels(dashboard["panels"]) if p["title"] == title]
    (override,) = [
        o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == "reason"
    ]
    (mapping,) = [p["value"] for p in override["properties"] if p["id"] == "mappings"]
    options = mapping[0]["options"]
    assert set(options) == set(EXPLAINED[title])
    for reason, shown in options.items():
        assert shown["text"].startswith(f"{reason}: ") and len(shown["text"]) > len(reason) + 12


def test_reason_tables_count_new_reasons_from_a_first_scrape(
    dashboard: dict[str, Any], tmp_path: Path
) -> None:
    """The reason tables' own expressions, run by promtool on recorded series: a reason
    counted before the sensor's first scrape (reserved-bits) and one rising in the range
    (overlap-mismatch) both show; a move decision likewise."""
    titles = tuple(sorted(EXPLAINED))
    rules_file = _panel_rules(dashboard, titles, "reasons", tmp_path)
    index = {t: i for i, t in enumerate(titles)}
    anomalies = index["Anomalies by reason (range)"]
    stream = index["Stream anomalies by reason (range)"]
    moves = index["C-MOVE decisions by reason (range)"]
    tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": 'dicom_anomalies_total{sensor="tap-1",reason="reserved-bits"}',
                 "values": "_x40 4x60"},
                {"series": 'dicom_anomalies_total{sensor="tap-1",reason="overlap-mismatch"}',
                 "values": "0x50 1 3x50"},
                {"series": 'dicom_anomalies_total{sensor="tap-1",reason="bad-length"}',
                 "values": "0x100"},
                {"series": 'dicom_sensor_stream_anomalies_total{sensor="tap-1",'
                           'reason="overlap-mismatch"}', "values": "0x50 1 3x50"},
                {"series": 'dicom_move_decisions_total{sensor="tap-1",reason="refused"}',
                 "values": "0x60 1x40"},
            ],
            "promql_expr_test": [
                {"expr": f"dashboard:reasons_{anomalies}", "eval_time": "90m",
                 "exp_samples": [
                     {"labels": f'dashboard:reasons_{anomalies}{{reason="reserved-bits"}}',
                      "value": 4},
                     {"labels": f'dashboard:reasons_{anomalies}{{reason="overlap-mismatch"}}',
                      "value": 3}]},
                {"expr": f"dashboard:reasons_{stream}", "eval_time": "90m",
                 "exp_samples": [
                     {"labels": f'dashboard:reasons_{stream}{{reason="overlap-mismatch"}}',
                      "value": 3}]},
                {"expr": f"dashboard:reasons_{moves}", "eval_time": "90m",
                 "exp_samples": [
                     {"labels": f'dashboard:reasons_{moves}{{reason="refused"}}', "value": 1}]},
            ],
        }],
    }  # fmt: skip
    test_file = tmp_path / "reasons.test.yml"
    test_file.write_text(yaml.safe_dump(tests))
    result = _run(_tool("promtool", "prometheus"), "test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr
