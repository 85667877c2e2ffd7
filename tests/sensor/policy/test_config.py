"""The YAML config: valid files load to the right values; every error names file:line and field."""

from __future__ import annotations

import ipaddress
import re
import textwrap
from pathlib import Path

import pytest

from sensor.policy.catalogue import RULES, RULES_BY_ID, Severity
from sensor.policy.config import (
    AllowEntry,
    Config,
    ConfigError,
    default_config,
    describe,
    load_config,
)
from sensor.policy.zones import Trust


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "zones.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


HOSPITAL = """
    # A typical hospital.
    zones:
      radiology:
        description: modality VLAN
        cidrs: [10.10.0.0/16, "fd00:10::/32"]
        radiology: true
        trust: internal
      pacs:
        cidrs:
          - 10.20.0.0/24
        radiology: yes
        trust: dmz
      office:
        cidrs: [10.30.0.0/16]
      guest:
        cidrs: [10.50.0.0/16]
        trust: external
    default_zone:
      name: internet
      trust: external
    rules:
      ae-brute-force:
        threshold: 3
        window: 30
        severity: critical
      bulk-outbound:
        bytes_per_association: 50_000_000
      dicom-on-tls-port:
        enabled: false
      radiology-boundary:
        allow:
          - source_zone: office
            destination_zone: pacs
            called_ae: PACS
          - calling_ae: " WS1 "
            sop_class: 1.2.840.10008.5.1.4.1.2.2.1
          - move_destination: ARCHIVE
    alerts:
      fold_window: 120
      syslog:
        host: siem.example.org
        port: 6514
        protocol: tcp
        facility: local4
    baseline:
      state_file: /var/lib/dicom-sensor/baseline.json
"""


def test_valid_config_loads(tmp_path: Path) -> None:
    config = load(tmp_path, HOSPITAL)
    assert config.source == str(tmp_path / "zones.yaml")
    zones = {z.name: z for z in config.zones.zones}
    assert list(zones) == ["radiology", "pacs", "office", "guest"]
    assert zones["radiology"].networks == (
        ipaddress.ip_network("10.10.0.0/16"),
        ipaddress.ip_network("fd00:10::/32"),
    )
    assert (zones["radiology"].trust, zones["radiology"].radiology) == (Trust.INTERNAL, True)
    assert (zones["pacs"].trust, zones["pacs"].radiology) == (Trust.DMZ, True)
    assert (zones["office"].trust, zones["office"].radiology) == (Trust.INTERNAL, False)
    assert zones["guest"].trust is Trust.EXTERNAL
    assert config.zones.default.name == "internet"
    assert config.zones.default.trust is Trust.EXTERNAL
    assert config.zones.has_radiology
    assert config.notes == ()

    assert set(config.rules) == {r.id for r in RULES}
    brute = config.rules["ae-brute-force"]
    assert brute.params == {"threshold": 3, "window": 30}
    assert brute.severity is Severity.CRITICAL and brute.enabled
    bulk = config.rules["bulk-outbound"].params
    assert bulk["bytes_per_association"] == 50_000_000
    assert bulk["bytes_per_window"] == RULES_BY_ID["bulk-outbound"].params["bytes_per_window"]
    assert not config.rules["dicom-on-tls-port"].enabled
    assert config.rules["radiology-boundary"].allow == (
        AllowEntry(source_zone="office", destination_zone="pacs", called_ae="PACS"),
        AllowEntry(calling_ae="WS1", sop_class="1.2.840.10008.5.1.4.1.2.2.1"),
        AllowEntry(move_destination="ARCHIVE"),
    )
    # Rules the file does not mention keep their defaults.
    sweep = config.rules["association-sweep"]
    spec = RULES_BY_ID["association-sweep"]
    assert (sweep.enabled, sweep.severity, sweep.params, sweep.allow) == (
        True,
        spec.severity,
        spec.params,
        (),
    )
    assert config.fold_window == 120
    assert config.syslog is not None
    assert (config.syslog.host, config.syslog.port, config.syslog.protocol) == (
        "siem.example.org",
        6514,
        "tcp",
    )
    assert config.syslog.facility == 20  # local4
    assert config.state_file == "/var/lib/dicom-sensor/baseline.json"


@pytest.mark.parametrize(
    ("text", "default_name", "trust", "radiology"),
    [
        ("zones: {}\n", "external", Trust.EXTERNAL, False),
        ("default_zone: {trust: internal}\n", "unzoned", Trust.INTERNAL, False),
        ("default_zone: {name: lan, trust: dmz}\n", "lan", Trust.DMZ, False),
        ("default_zone: {name: lab, radiology: true}\n", "lab", Trust.EXTERNAL, True),
    ],
)
def test_default_zone(
    tmp_path: Path, text: str, default_name: str, trust: Trust, radiology: bool
) -> None:
    config = load(tmp_path, text)
    d = config.zones.default
    assert (d.name, d.trust, d.radiology, d.networks) == (default_name, trust, radiology, ())
    assert config.zones.lookup("198.51.100.1") is d


def test_minimal_configs(tmp_path: Path) -> None:
    config = load(tmp_path, "rules: {}\n")
    assert config.zones.zones == ()
    assert config.fold_window == 300 and config.syslog is None and config.state_file is None
    assert all(r.enabled for r in config.rules.values())
    syslog = load(tmp_path, "alerts: {syslog: {host: 127.0.0.1}}\n").syslog
    assert syslog is not None and (syslog.port, syslog.protocol, syslog.facility) == (
        514,
        "udp",
        16,
    )


def test_default_config() -> None:
    config = default_config()
    assert config.source == "embedded default"
    assert not config.zones.has_radiology
    assert config.zones.default.trust is Trust.EXTERNAL
    assert all(r.enabled and not r.allow for r in config.rules.values())
    assert {r.id: r.params for r in config.rules.values()} == {r.id: r.params for r in RULES}


# (yaml, line, field, fragment of the problem). The message must be "FILE:LINE: FIELD: ...".
ERRORS = [
    pytest.param(
        """
        zones:
          lab:
            cidrs: [10.0.0.0/8, 10.300.0.0/16]
        """,
        3, "zones.lab.cidrs", "'10.300.0.0/16' is not an IPv4 or IPv6 CIDR", id="bad-cidr",
    ),
    pytest.param(
        """
        zones:
          lab:
            cidrs:
              - fd00::/8
              - "fd00::g/64"
        """,
        5, "zones.lab.cidrs", "'fd00::g/64'", id="bad-ipv6-cidr",
    ),
    pytest.param(
        """
        zones:
          lab:
            cidrs: [10.0.0.0/8]
            trust: trusted
        """,
        4, "zones.lab.trust", "'trusted' is not one of internal, dmz, external", id="unknown-trust",
    ),
    pytest.param(
        """
        default_zone:
          trust: public
        """,
        2, "default_zone.trust", "'public'", id="unknown-default-trust",
    ),
    pytest.param(
        """
        rules:
          perimeter-inbound: {enabled: true}
          shadow-pacs:
            enabled: false
        """,
        3, "rules.shadow-pacs", "unknown rule", id="unknown-rule-id",
    ),
    pytest.param(
        """
        zones:
          lab:
            cidrs: [10.0.0.0/8]
            colour: blue
        """,
        4, "zones.lab.colour", "unknown field", id="unknown-zone-field",
    ),
    pytest.param(
        """
        zones: {}
        alert:
          fold_window: 60
        """,
        2, "config.alert", "unknown field", id="unknown-top-field",
    ),
    pytest.param(
        """
        rules:
          ae-brute-force:
            treshold: 3
        """,
        3, "rules.ae-brute-force.treshold", "unknown field", id="unknown-rule-field",
    ),
    pytest.param(
        """
        rules:
          scanner-probe:
            threshold: 3
        """,
        3, "rules.scanner-probe.threshold", "unknown field", id="param-of-another-rule",
    ),
    pytest.param(
        """
        zones:
          office: {cidrs: [10.30.0.0/16]}
        rules:
          perimeter-inbound:
            allow:
              - source_zone: office
                destination_zone: ofice
        """,
        7, "rules.perimeter-inbound.allow[0].destination_zone", "no zone named 'ofice'",
        id="allow-unknown-zone",
    ),
    pytest.param(
        """
        rules:
          perimeter-inbound:
            allow:
              - calling_ae: WS1
              - calling_ae: WS2
                direction: in
        """,
        6, "rules.perimeter-inbound.allow[1].direction", "unknown field",
        id="allow-unknown-field",
    ),
    pytest.param(
        """
        rules:
          perimeter-outbound:
            allow:
              - {}
        """,
        4, "rules.perimeter-outbound.allow[0]", "empty allow entry", id="empty-allow-entry",
    ),
    pytest.param(
        """
        rules:
          perimeter-outbound:
            allow:
              - calling_ae: WS1
              -
        """,
        5, "rules.perimeter-outbound.allow[1]", "expected a mapping", id="null-allow-entry",
    ),
    pytest.param(
        """
        rules:
          ae-brute-force:
            threshold: 0
        """,
        3, "rules.ae-brute-force.threshold", "must be at least 1", id="zero-threshold",
    ),
    pytest.param(
        """
        rules:
          association-sweep:
            hosts: -5
        """,
        3, "rules.association-sweep.hosts", "must be at least 1", id="negative-threshold",
    ),
    pytest.param(
        """
        rules:
          bulk-outbound:
            window: 0
        """,
        3, "rules.bulk-outbound.window", "must be at least 1", id="zero-window",
    ),
    pytest.param(
        """
        alerts:
          fold_window: -1
        """,
        2, "alerts.fold_window", "must be at least 0", id="negative-fold-window",
    ),
    pytest.param(
        """
        rules:
          ae-brute-force:
            threshold: lots
        """,
        3, "rules.ae-brute-force.threshold", "expected a number, not 'lots'", id="threshold-text",
    ),
    pytest.param(
        """
        rules:
          ae-brute-force:
            threshold: nan
        """,
        3, "rules.ae-brute-force.threshold", "", id="threshold-nan",
    ),
    pytest.param(
        """
        rules:
          association-sweep:
            hosts: inf
        """,
        3, "rules.association-sweep.hosts", "", id="threshold-inf",
    ),
    pytest.param(
        """
        rules:
          bulk-outbound:
            bytes_per_window: 1e999
        """,
        3, "rules.bulk-outbound.bytes_per_window", "", id="threshold-overflow",
    ),
    pytest.param(
        """
        rules:
          ae-brute-force:
            threshold: [3]
        """,
        3, "rules.ae-brute-force.threshold", "expected a single value", id="threshold-list",
    ),
    pytest.param(
        """
        zones:
          lab:
            cidrs: 10.0.0.0/8
        """,
        3, "zones.lab.cidrs", "expected a list", id="cidrs-not-list",
    ),
    pytest.param(
        """
        zones:
          - name: lab
            cidrs: [10.0.0.0/8]
        """,
        2, "zones", "expected a mapping", id="zones-list",
    ),
    pytest.param(
        """
        zones:
          lab:
            cidrs: [10.0.0.0/8]
            radiology: maybe
        """,
        4, "zones.lab.radiology", "expected true or false, not 'maybe'", id="radiology-not-bool",
    ),
    pytest.param(
        """
        zones:
          lab:
            radiology: true
        """,
        3, "zones.lab", "missing field 'cidrs'", id="missing-cidrs",
    ),
    pytest.param(
        """
        rules:
          perimeter-inbound:
            enabled: sometimes
        """,
        3, "rules.perimeter-inbound.enabled", "expected true or false", id="enabled-not-bool",
    ),
    pytest.param(
        """
        rules:
          perimeter-inbound:
            severity: urgent
        """,
        3, "rules.perimeter-inbound.severity", "'urgent' is not one of", id="unknown-severity",
    ),
    pytest.param(
        """
        rules:
          perimeter-inbound:
            allow:
              - calling_ae: [WS1, WS2]
        """,
        4, "rules.perimeter-inbound.allow[0].calling_ae", "expected a single value",
        id="allow-value-list",
    ),
    pytest.param(
        """
        alerts:
          syslog:
            host: siem
            port: 70000
        """,
        4, "alerts.syslog.port", "at most 65535", id="syslog-port",
    ),
    pytest.param(
        """
        alerts:
          syslog:
            host: siem
            protocol: http
        """,
        4, "alerts.syslog.protocol", "'http' is not one of udp, tcp", id="syslog-protocol",
    ),
    pytest.param(
        """
        zones:
          lab:
            cidrs: [10.0.0.0/8]
          office:
            cidrs: [10.30.0.0/16]
          lab:
            cidrs: [10.1.0.0/16]
        """,
        6, "zones.lab", "given twice", id="duplicate-zone",
    ),
    pytest.param(
        """
        rules:
          ae-brute-force:
            threshold: 3
            threshold: 4
        """,
        4, "rules.ae-brute-force.threshold", "given twice", id="duplicate-field",
    ),
    pytest.param(
        """
        - zones
        """,
        1, "config", "expected a mapping", id="top-level-list",
    ),
    pytest.param(
        """
        zones:
          pacs:
            cidrs: [10.30.0.0/24]
          vna:
            cidrs: [10.30.0.0/24]
        """,
        5, "zones.vna.cidrs", "10.30.0.0/24 is already in zone 'pacs'", id="cidr-in-two-zones",
    ),
    pytest.param(
        """
        zones:
          pacs:
            cidrs: [10.30.0.0/24, "fd00::/8", 10.30.0.0/24]
        """,
        3, "zones.pacs.cidrs", "10.30.0.0/24 given twice", id="cidr-twice-in-a-zone",
    ),
    pytest.param(
        """
        zones:
          pacs:
            cidrs: []
        """,
        3, "zones.pacs.cidrs", "empty", id="empty-cidrs",
    ),
    pytest.param(
        """
        zones:
          pacs:
            cidrs: [10.30.0.1/16]
        """,
        3, "zones.pacs.cidrs", "'10.30.0.1/16' has host bits set (did you mean 10.30.0.0/16?)",
        id="host-bits",
    ),
    pytest.param(
        """
        zones:
          pacs:
            cidrs: ["fd00::1/64"]
        """,
        3, "zones.pacs.cidrs", "host bits set (did you mean fd00::/64?)", id="host-bits-v6",
    ),
    pytest.param(
        """
        zones:
          pacs:
            cidrs: [10.30.0.0/24]
        default_zone:
          name: pacs
        """,
        5, "default_zone.name", "'pacs' is a declared zone", id="default-zone-named-like-a-zone",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "where", "problem"), ERRORS)
def test_validation_error_names_file_line_and_field(
    tmp_path: Path, text: str, line: int, where: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert message.startswith(f"{path}:{line}: {where}: "), message
    assert problem in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("zones:\n  lab:\n    cidrs: [10.0.0.0/8\n  office: {}\n", 4),  # unclosed flow list
        ("zones:\n  lab: {cidrs: [10.0.0.0/8]}\n   bad: indent\n", 3),
        ("rules:\n\tae-brute-force: {}\n", 2),  # a tab
    ],
)
def test_yaml_syntax_error_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "zones.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert re.match(rf"{re.escape(str(path))}:{line}: not valid YAML: \S", message), message
    assert "\n" not in message


def test_missing_file_names_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: no such file$"):
        load_config(path)


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_empty_file_is_an_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: empty config$"):
        load_config(path)


def test_unreadable_file_names_file(tmp_path: Path) -> None:
    path = tmp_path / "zones.yaml"
    path.write_bytes(b"zones: {}\n\xff\xfe\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: not a text"):
        load_config(path)


@pytest.mark.parametrize("data", [b"\x7fELF\x02\x01\x01\x00" + bytes(64), b"\xd4\xc3\xb2\xa1" * 8])
def test_binary_file_is_one_clear_line(tmp_path: Path, data: bytes) -> None:
    """A capture or a program given as --config: no codec error, no YAML error."""
    path = tmp_path / "zones.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value) == (
        f"{path}: not a text (UTF-8) YAML file; is it a capture or a program?"
    )


def test_relative_state_file_lies_in_the_state_dir(tmp_path: Path) -> None:
    path = write(tmp_path, "baseline:\n  state_file: baseline.json\n")
    assert load_config(path, "/var/lib/dicom-sensor/ens1f1").state_file == (
        "/var/lib/dicom-sensor/ens1f1/baseline.json"
    )
    absolute = write(tmp_path, "baseline:\n  state_file: /srv/b.json\n")
    assert load_config(absolute, "/var/lib/x").state_file == "/srv/b.json"


# -- describe(): what check-config prints ---------------------------------------------

RADIOLOGY_RULES = ("non-radiology-association", "radiology-boundary")


def rule_line(lines: list[str], rule_id: str) -> str:
    [line] = [x for x in lines if re.match(rf"  (on |off) {re.escape(rule_id)} ", x)]
    return line


def test_describe_embedded_default_says_radiology_rules_are_off() -> None:
    lines = describe(default_config())
    assert lines[0] == "config: embedded default"
    notes = [x for x in lines if x.startswith("note: ")]
    assert len(notes) == 1
    assert "no radiology zone" in notes[0]
    for rule_id in RADIOLOGY_RULES:
        assert rule_id in notes[0]
        assert rule_line(lines, rule_id).startswith("  off ")
    assert rule_line(lines, "perimeter-inbound").startswith("  on ")
    assert any("10.0.0.0/8" in x and "fc00::/7" in x and "internal" in x for x in lines)
    assert any(x.split()[:2] == ["external", "external"] for x in lines)


def test_describe_file_without_radiology_zone_says_so(tmp_path: Path) -> None:
    lines = describe(load(tmp_path, "zones:\n  lan: {cidrs: [10.0.0.0/8]}\n"))
    assert any(x.startswith("note: no radiology zone") for x in lines)
    for rule_id in RADIOLOGY_RULES:
        assert rule_line(lines, rule_id).startswith("  off ")


def test_describe_hospital(tmp_path: Path) -> None:
    lines = describe(load(tmp_path, HOSPITAL))
    assert not any(x.startswith("note:") for x in lines)
    for rule_id in RADIOLOGY_RULES:
        assert rule_line(lines, rule_id).startswith("  on ")
    assert rule_line(lines, "dicom-on-tls-port").startswith("  off ")
    assert "3 allow entries" in rule_line(lines, "radiology-boundary")
    brute = rule_line(lines, "ae-brute-force")
    assert "critical" in brute and "threshold=3" in brute and "window=30" in brute
    [pacs] = [x for x in lines if x.startswith("  pacs ")]
    assert pacs.split() == ["pacs", "dmz", "yes", "yes", "10.20.0.0/24"]
    [default] = [x for x in lines if x.startswith("  internet ")]
    assert "(every other address)" in default
    assert len([x for x in lines if re.match(r"  (on |off) ", x)]) == len(RULES)


def test_describe_shows_clinical_fold_window_syslog_and_state_file(tmp_path: Path) -> None:
    lines = describe(
        load(
            tmp_path,
            """
            zones:
              wards: {cidrs: [10.40.0.0/16], clinical: true}
              office: {cidrs: [10.50.0.0/16]}
            alerts:
              fold_window: 120
              syslog: {host: siem.example, port: 6514, protocol: tcp, facility: local4}
            baseline:
              state_file: /var/lib/dicom-sensor/b.json
            """,
        )
    )
    assert next(x for x in lines if x.startswith("  wards ")).split()[1:4] == [
        "internal", "no", "yes"]  # fmt: skip
    assert next(x for x in lines if x.startswith("  office ")).split()[1:4] == [
        "internal", "no", "no"]  # fmt: skip
    assert "alerts: fold_window=120 s" in lines
    assert any(x.startswith("syslog: tcp://siem.example:6514 facility local4") for x in lines)
    assert any(x.startswith("baseline: state_file: /var/lib/dicom-sensor/b.json") for x in lines)


def test_describe_radiology_only_in_default_zone(tmp_path: Path) -> None:
    """A default zone declared radiology: true is a radiology zone; the rules are on."""
    config = load(
        tmp_path,
        "zones:\n  office: {cidrs: [10.30.0.0/16]}\n"
        "default_zone: {name: modalities, trust: internal, radiology: true}\n",
    )
    lines = describe(config)
    assert not any(x.startswith("note:") for x in lines)
    for rule_id in RADIOLOGY_RULES:
        assert rule_line(lines, rule_id).startswith("  on ")
