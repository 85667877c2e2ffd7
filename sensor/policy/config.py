"""The sensor's YAML config: zones, rules and alert settings, validated with file:line errors."""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .catalogue import RULES, RULES_BY_ID, Severity
from .zones import DEFAULT_EXTERNAL, DEFAULT_INTERNAL, IPNetwork, Trust, Zone, ZoneMap


class ConfigError(Exception):
    """A config that cannot be used; the message names the file, line and field."""


@dataclass(frozen=True, slots=True)
class AllowEntry:
    """An exception to a rule; every field it sets must match (None matches anything)."""

    source_zone: str | None = None
    destination_zone: str | None = None
    calling_ae: str | None = None
    called_ae: str | None = None
    sop_class: str | None = None
    move_destination: str | None = None


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """A rule as configured."""

    id: str
    enabled: bool
    severity: Severity
    allow: tuple[AllowEntry, ...]
    params: dict[str, float]


@dataclass(frozen=True, slots=True)
class SyslogConfig:
    """Where RFC 5424 alerts go."""

    host: str
    port: int
    protocol: str  # udp or tcp
    facility: int


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the policy needs."""

    zones: ZoneMap
    rules: dict[str, RuleConfig]
    fold_window: float = 300.0
    state_file: str | None = None
    syslog: SyslogConfig | None = None
    source: str = "embedded default"
    notes: tuple[str, ...] = field(default=())
    observer_name: str | None = None  # None: the host name
    community_id_seed: int = 0


MAX_SEED = 0xFFFF  # Community ID seeds are 16-bit
# Every key a config may hold, by where it goes (docs and deploy/zones.example.yaml name
# each one: tests/test_docs.py checks).
TOP_FIELDS = ("zones", "default_zone", "rules", "alerts", "baseline", "observer", "community_id")
ZONE_FIELDS = ("cidrs", "radiology", "clinical", "trust", "description")
DEFAULT_ZONE_FIELDS = ("name", "trust", "radiology")
RULE_FIELDS = ("enabled", "severity", "allow")  # and each rule's own parameters
ALLOW_FIELDS = ("source_zone", "destination_zone", "calling_ae", "called_ae", "sop_class",
                "move_destination")  # fmt: skip
ALERTS_FIELDS = ("fold_window", "syslog")
SYSLOG_FIELDS = ("host", "port", "protocol", "facility")
BASELINE_FIELDS = ("state_file",)

_FACILITIES = {f"local{i}": 16 + i for i in range(8)} | {"user": 1, "daemon": 3, "auth": 4}


class _Reader:
    """Walks the YAML node tree, turning it into values or a ConfigError with a line number."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, node: Node | None, where: str, message: str) -> ConfigError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return ConfigError(f"{self.path}{line}: {where}: {message}")

    def mapping(self, node: Node, where: str) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            raise self.fail(node, where, "expected a mapping")
        out: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            name = self.scalar(key, where)
            if name in out:
                raise self.fail(key, f"{where}.{name}", "given twice")
            out[name] = (key, value)
        return out

    def sequence(self, node: Node, where: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            raise self.fail(node, where, "expected a list")
        return list(node.value)

    def scalar(self, node: Node, where: str) -> str:
        if not isinstance(node, ScalarNode):
            raise self.fail(node, where, "expected a single value")
        return str(node.value)

    def boolean(self, node: Node, where: str) -> bool:
        text = self.scalar(node, where).lower()
        if text in ("true", "yes", "on"):
            return True
        if text in ("false", "no", "off"):
            return False
        raise self.fail(node, where, f"expected true or false, not {text!r}")

    def number(self, node: Node, where: str, minimum: float = 0) -> float:
        text = self.scalar(node, where).replace("_", "")
        try:
            value = float(text)
        except ValueError:
            raise self.fail(node, where, f"expected a number, not {text!r}") from None
        if not math.isfinite(value):
            raise self.fail(node, where, f"expected a finite number, not {text!r}")
        if value < minimum:
            raise self.fail(node, where, f"must be at least {minimum:g}")
        return value

    def choice(self, node: Node, where: str, options: list[str]) -> str:
        text = self.scalar(node, where)
        if text not in options:
            raise self.fail(node, where, f"{text!r} is not one of {', '.join(options)}")
        return text

    def unknown(self, keys: dict[str, tuple[Node, Node]], allowed: set[str], where: str) -> None:
        for name, (key, _) in keys.items():
            if name not in allowed:
                raise self.fail(
                    key, f"{where}.{name}", f"unknown field (known: {', '.join(sorted(allowed))})"
                )


def _zone(r: _Reader, name: str, node: Node, seen: dict[IPNetwork, str]) -> Zone:
    """One zone; ``seen`` maps every CIDR of the zones before it to its zone's name."""
    where = f"zones.{name}"
    fields = r.mapping(node, where)
    r.unknown(fields, set(ZONE_FIELDS), where)
    if "cidrs" not in fields:
        raise r.fail(node, where, "missing field 'cidrs'")
    networks: list[IPNetwork] = []
    items = r.sequence(fields["cidrs"][1], f"{where}.cidrs")
    if not items:
        raise r.fail(fields["cidrs"][1], f"{where}.cidrs", "empty: a zone needs at least one CIDR")
    for item in items:
        text = r.scalar(item, f"{where}.cidrs").strip()
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise r.fail(item, f"{where}.cidrs", f"{text!r} is not an IPv4 or IPv6 CIDR") from None
        if network.network_address != ipaddress.ip_address(text.split("/")[0]):
            raise r.fail(
                item, f"{where}.cidrs", f"{text!r} has host bits set (did you mean {network}?)"
            )
        if network in seen:
            other = seen[network]
            raise r.fail(
                item,
                f"{where}.cidrs",
                f"{network} is already in zone {other!r}"
                if other != name
                else f"{network} given twice",
            )
        seen[network] = name
        networks.append(network)
    radiology = (
        r.boolean(fields["radiology"][1], f"{where}.radiology") if "radiology" in fields else False
    )
    trust = Trust.INTERNAL
    if "trust" in fields:
        trust = Trust(r.choice(fields["trust"][1], f"{where}.trust", [t.value for t in Trust]))
    clinical = (
        r.boolean(fields["clinical"][1], f"{where}.clinical") if "clinical" in fields else False
    )
    return Zone(name, trust, radiology, tuple(networks), clinical)


def _allow(r: _Reader, node: Node, where: str, zone_names: set[str]) -> AllowEntry:
    fields = r.mapping(node, where)
    r.unknown(fields, set(ALLOW_FIELDS), where)
    if not fields:
        raise r.fail(
            node, where, "an empty allow entry would allow everything; name at least one field"
        )
    values = {
        name: r.scalar(value, f"{where}.{name}").strip() for name, (_, value) in fields.items()
    }
    for name in ("source_zone", "destination_zone"):
        if name in values and values[name] not in zone_names:
            raise r.fail(fields[name][1], f"{where}.{name}", f"no zone named {values[name]!r}")
    return AllowEntry(**values)


# Rule parameters with an upper bound: a C-MOVE's sub-association comes while the move runs,
# and an undecided move is held in memory until then.
PARAM_MAXIMUM = {"decide_within": 3600.0}


def _rule(r: _Reader, rule_id: str, node: Node, zone_names: set[str]) -> RuleConfig:
    where = f"rules.{rule_id}"
    spec = RULES_BY_ID[rule_id]
    fields = r.mapping(node, where)
    r.unknown(fields, {*RULE_FIELDS, *spec.params}, where)
    enabled = r.boolean(fields["enabled"][1], f"{where}.enabled") if "enabled" in fields else True
    severity = spec.severity
    if "severity" in fields:
        severity = Severity(
            r.choice(fields["severity"][1], f"{where}.severity", [s.value for s in Severity])
        )
    allow: list[AllowEntry] = []
    if "allow" in fields:
        for i, item in enumerate(r.sequence(fields["allow"][1], f"{where}.allow")):
            allow.append(_allow(r, item, f"{where}.allow[{i}]", zone_names))
    params = dict(spec.params)
    for name in spec.params:
        if name in fields:
            params[name] = r.number(fields[name][1], f"{where}.{name}", minimum=1)
            if name in PARAM_MAXIMUM and params[name] > PARAM_MAXIMUM[name]:
                raise r.fail(
                    fields[name][1], f"{where}.{name}", f"must be at most {PARAM_MAXIMUM[name]:g}"
                )
    return RuleConfig(rule_id, enabled, severity, tuple(allow), params)


def default_rules() -> dict[str, RuleConfig]:
    """Every rule on, with its default severity and parameters."""
    return {s.id: RuleConfig(s.id, True, s.severity, (), dict(s.params)) for s in RULES}


def default_config() -> Config:
    """The embedded default: private, loopback and link-local ranges internal, the rest external."""
    zones = ZoneMap((DEFAULT_INTERNAL,), DEFAULT_EXTERNAL)
    return Config(zones=zones, rules=default_rules(), notes=_notes(zones))


def _notes(zones: ZoneMap) -> tuple[str, ...]:
    if zones.has_radiology:
        return ()
    return ("no radiology zone declared: the non-radiology-association and radiology-boundary "
            "rules are off",)  # fmt: skip


def load_config(path: str | Path, state_dir: str | None = None) -> Config:
    """Read and validate a config file.

    A relative ``baseline.state_file`` lies in ``state_dir`` (``--state-dir``; the systemd
    unit passes its per-instance StateDirectory), or in the current directory without one.
    """
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{name}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = "\0"
    if "\0" in text:
        raise ConfigError(f"{name}: not a text (UTF-8) YAML file; is it a capture or a program?")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{name}{line}: not valid YAML: {problem}") from None
    r = _Reader(name)
    if root is None:
        raise ConfigError(f"{name}: empty config")
    top = r.mapping(root, "config")
    r.unknown(top, set(TOP_FIELDS), "config")
    zones: list[Zone] = []
    seen: dict[IPNetwork, str] = {}
    if "zones" in top:
        for zone_name, (_, node) in r.mapping(top["zones"][1], "zones").items():
            zones.append(_zone(r, zone_name, node, seen))
    default = DEFAULT_EXTERNAL
    if "default_zone" in top:
        node = top["default_zone"][1]
        fields = r.mapping(node, "default_zone")
        r.unknown(fields, set(DEFAULT_ZONE_FIELDS), "default_zone")
        dz_name = (
            r.scalar(fields["name"][1], "default_zone.name") if "name" in fields else "unzoned"
        )
        trust = Trust.EXTERNAL
        if "trust" in fields:
            trust = Trust(
                r.choice(fields["trust"][1], "default_zone.trust", [t.value for t in Trust])
            )
        radiology = (
            r.boolean(fields["radiology"][1], "default_zone.radiology")
            if "radiology" in fields
            else False
        )
        if dz_name in {z.name for z in zones}:
            raise r.fail(
                fields["name"][1],
                "default_zone.name",
                f"{dz_name!r} is a declared zone; the default zone holds every address in no "
                "zone and needs a name of its own",
            )
        default = Zone(dz_name, trust, radiology, ())
    zone_names = {z.name for z in zones} | {default.name}
    rules = default_rules()
    if "rules" in top:
        for rule_id, (key, node) in r.mapping(top["rules"][1], "rules").items():
            if rule_id not in RULES_BY_ID:
                raise r.fail(
                    key, f"rules.{rule_id}", f"unknown rule (known: {', '.join(RULES_BY_ID)})"
                )
            rules[rule_id] = _rule(r, rule_id, node, zone_names)
    fold_window = 300.0
    syslog = None
    if "alerts" in top:
        fields = r.mapping(top["alerts"][1], "alerts")
        r.unknown(fields, set(ALERTS_FIELDS), "alerts")
        if "fold_window" in fields:
            fold_window = r.number(fields["fold_window"][1], "alerts.fold_window")
        if "syslog" in fields:
            syslog = _syslog(r, fields["syslog"][1])
    state_file = None
    if "baseline" in top:
        fields = r.mapping(top["baseline"][1], "baseline")
        r.unknown(fields, set(BASELINE_FIELDS), "baseline")
        if "state_file" in fields:
            state_file = r.scalar(fields["state_file"][1], "baseline.state_file").strip()
            if not state_file:
                raise r.fail(fields["state_file"][1], "baseline.state_file", "empty path")
            if state_dir is not None and not os.path.isabs(state_file):
                state_file = os.path.join(state_dir, state_file)
    observer_name = None
    if "observer" in top:
        fields = r.mapping(top["observer"][1], "observer")
        r.unknown(fields, {"name"}, "observer")
        if "name" in fields:
            observer_name = r.scalar(fields["name"][1], "observer.name").strip() or None
    seed = 0
    if "community_id" in top:
        fields = r.mapping(top["community_id"][1], "community_id")
        r.unknown(fields, {"seed"}, "community_id")
        if "seed" in fields:
            node = fields["seed"][1]
            value = r.number(node, "community_id.seed")
            if value != int(value) or value > MAX_SEED:
                raise r.fail(node, "community_id.seed", f"must be an integer 0-{MAX_SEED}")
            seed = int(value)
    zone_map = ZoneMap(tuple(zones), default)
    return Config(
        zone_map,
        rules,
        fold_window,
        state_file,
        syslog,
        name,
        _notes(zone_map),
        observer_name,
        seed,
    )


def _syslog(r: _Reader, node: Node) -> SyslogConfig:
    fields = r.mapping(node, "alerts.syslog")
    r.unknown(fields, set(SYSLOG_FIELDS), "alerts.syslog")
    if "host" not in fields:
        raise r.fail(node, "alerts.syslog", "missing field 'host'")
    host = r.scalar(fields["host"][1], "alerts.syslog.host")
    port = int(r.number(fields["port"][1], "alerts.syslog.port", 1)) if "port" in fields else 514
    if port > 65535:
        raise r.fail(fields["port"][1], "alerts.syslog.port", "must be at most 65535")
    protocol = "udp"
    if "protocol" in fields:
        protocol = r.choice(fields["protocol"][1], "alerts.syslog.protocol", ["udp", "tcp"])
    facility = 16
    if "facility" in fields:
        facility = _FACILITIES[
            r.choice(fields["facility"][1], "alerts.syslog.facility", list(_FACILITIES))
        ]
    return SyslogConfig(host, port, protocol, facility)


def _flags(zone: Zone) -> str:
    """Trust, radiology and clinical columns of the zone table (radiology counts as clinical)."""
    radiology = "yes" if zone.radiology else "no"
    clinical = "yes" if zone.clinical else "no"
    return f"{zone.trust.value:<8}  {radiology:<9}  {clinical:<8}"


def describe(config: Config) -> list[str]:
    """The zone table and rule switches, as check-config prints them."""
    lines = [f"config: {config.source}", "zones (longest prefix wins):"]
    width = max([len(z.name) for z in config.zones.zones] + [len(config.zones.default.name), 4])
    lines.append(f"  {'zone':<{width}}  trust     radiology  clinical  networks")
    for zone in config.zones.zones:
        nets = ", ".join(str(n) for n in zone.networks)
        lines.append(f"  {zone.name:<{width}}  {_flags(zone)}  {nets}")
    d = config.zones.default
    lines.append(f"  {d.name:<{width}}  {_flags(d)}  (every other address)")
    lines.append(f"alerts: fold_window={config.fold_window:g} s")
    syslog = config.syslog
    if syslog is not None:
        facility = next(k for k, v in _FACILITIES.items() if v == syslog.facility)
        lines.append(
            f"syslog: {syslog.protocol}://{syslog.host}:{syslog.port} facility {facility} "
            "(capture; read only with --syslog)"
        )
    else:
        lines.append("syslog: off")
    if config.state_file is not None:
        lines.append(
            f"baseline: state_file: {config.state_file} (read updates it only with "
            "--update-baseline)"
        )
    else:
        lines.append("baseline: in memory only (no state_file)")
    lines.append("rules:")
    radiology_rules = ("non-radiology-association", "radiology-boundary")
    for rule in config.rules.values():
        params = ", ".join(f"{k}={v:,.0f}" for k, v in rule.params.items())
        effective = rule.enabled and (config.zones.has_radiology or rule.id not in radiology_rules)
        state = "on " if effective else "off"
        sep = ", " if params else ""
        allow = f"{sep}{len(rule.allow)} allow entries" if rule.allow else ""
        lines.append(f"  {state} {rule.id:<26} {rule.severity.value:<8} {params}{allow}".rstrip())
    lines.extend(f"note: {n}" for n in config.notes)
    return lines
