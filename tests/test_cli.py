"""The console script's plumbing."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sensor.cli import main


def test_dissectors_lists_dicom_first(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dissectors"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.split("\t")[0] == "dicom"


def test_unknown_subcommand_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2


# -- operator-grade: never write an input, validate every option value (issue 15) -------

ROOT = Path(__file__).resolve().parents[1]
ECHO = ROOT / "pcaps" / "dcmtk-echo-104" / "capture.pcap"
PERIMETER = ROOT / "pcaps" / "zones" / "perimeter"


def one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI: exit 2 and exactly one line on stderr, prefixed."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("dicom-sensor: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("option", ["--associations", "--events", "--zeek-log", "--metrics",
                                    "--inventory", "--inventory-csv"])  # fmt: skip
def test_an_input_capture_named_as_an_output_is_refused_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    capture = tmp_path / "x.pcap"
    capture.write_bytes(ECHO.read_bytes())
    before = capture.read_bytes()
    # the same file by another name too: a relative path through a symlinked folder
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    for name in (str(capture), str(link / "x.pcap")):
        line = one_line(capsys, ["read", str(capture), option, name])
        assert "input" in line and "overwritten" in line
        assert capture.read_bytes() == before


def test_the_config_named_as_an_output_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "zones.yaml"
    config.write_text("zones: {}\n")
    line = one_line(capsys, ["read", str(ECHO), "-c", str(config), "--events", str(config)])
    assert "--config" in line
    assert config.read_text() == "zones: {}\n"


def test_one_path_for_two_outputs_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    line = one_line(capsys, ["read", str(ECHO), "--associations", str(out), "--events", str(out)])
    assert "--associations and --events name the same file" in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["read", str(ECHO), "--tls-cert", "c.pem", "--metrics-listen", "127.0.0.1:0"],
         "--tls-cert and --tls-key go together"),
        (["read", str(ECHO), "--tls-key", "k.pem", "--metrics-listen", "127.0.0.1:0"],
         "--tls-cert and --tls-key go together"),
        (["read", str(ECHO), "--hold"], "--hold keeps serving /metrics"),
        (["capture", "-i", "lo", "--tls-cert", "c.pem"], "--tls-cert and --tls-key"),
        (["capture", "-i", "lo", "--workers", "0"], "--workers 0: must be at least 1"),
        (["capture", "-i", "lo", "--workers", "-2"], "--workers -2: must be at least 1"),
        (["capture", "-i", "lo", "--snaplen", "0"], "--snaplen 0: must be"),
        (["capture", "-i", "lo", "--snaplen", "-5"], "--snaplen -5: must be"),
        (["capture", "-i", "lo", "--snaplen", "40"], "--snaplen 40: must be"),
        (["capture", "-i", "lo", "--buffer-mb", "0"], "--buffer-mb 0: must be at least 1"),
        (["capture", "-i", "lo", "-i", "lo"], "-i lo: interface given twice"),
        (["capture", "-i", "lo", "--dicom-port", "70000"], "--dicom-port 70000"),
        (["capture", "-i", "lo", "--rotate-mb", "-1"], "--rotate-mb -1"),
        (["capture", "-i", "lo", "--bpf", "vlan 20 and host 10.1.1.1"], "--bpf: 'vlan' shifts"),
        (["read", str(ECHO), "--bpf", "not vlan"], "--bpf: 'vlan' shifts"),
        (["capture", "-i", "lo", "--bpf", "udp port 53"], "admits no TCP segment"),
        (["read", str(ECHO), "--bpf", "icmp"], "admits no TCP segment"),
        (["read", str(ECHO), "--bpf", "tcp and and"], "BPF filter does not compile"),
    ],
)  # fmt: skip
def test_bad_option_values_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    assert says in one_line(capsys, argv)


def test_a_usage_error_in_a_subcommand_shows_its_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["read", str(ECHO), "--no-such-option"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: dicom-sensor read ")
    assert "unrecognized arguments: --no-such-option" in err


@pytest.mark.parametrize(
    ("command", "groups"),
    [
        ("read", ["input", "outputs", "metrics endpoint", "display"]),
        ("capture", ["input", "outputs", "metrics endpoint", "capture", "privileges"]),
    ],
)
def test_help_groups_the_options(
    capsys: pytest.CaptureFixture[str], command: str, groups: list[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    headings = re.findall(r"^(\S[^:\n]*):$", out, re.M)
    assert [h for h in headings if h in groups] == groups
    assert "ROTATE_MB" not in out and "BUFFER_MB" not in out


def test_an_empty_capture_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    line = one_line(capsys, ["read", str(empty)])
    assert line == f"dicom-sensor: {empty}: empty file (0 bytes), not a capture"


def test_quiet_read_of_no_packets_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header_only = tmp_path / "header.pcap"
    header_only.write_bytes(ECHO.read_bytes()[:24])
    assert main(["read", str(header_only), "-q"]) == 0
    assert capsys.readouterr().err == "dicom-sensor: the captures held no packets\n"


def test_outputs_are_created_0640(tmp_path: Path) -> None:
    names = ["associations", "events", "zeek-log", "metrics", "inventory", "inventory-csv"]
    argv = ["read", str(ECHO), "-q"]
    for name in names:
        argv += [f"--{name}", str(tmp_path / name)]
    old = os.umask(0o022)
    try:
        assert main(argv) == 0
    finally:
        os.umask(old)
    for name in names:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name


def test_associations_on_a_pipe_are_line_buffered() -> None:
    """Each record reaches the pipe when written, not when the sensor exits."""
    code = (
        "import sys, sensor.outputs.jsonl as j\n"
        "s = j.JsonLines('-')\n"
        "s.write({'a': 1})\n"
        "sys.stderr.write('written\\n'); sys.stderr.flush()\n"
        "sys.stdin.readline()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
    assert proc.stderr is not None and proc.stdout is not None and proc.stdin is not None
    assert proc.stderr.readline() == b"written\n"
    assert proc.stdout.readline() == b'{"a":1}\n'  # while the writer still runs
    proc.stdin.close()
    proc.wait(timeout=10)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_never_crashes_the_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every write to /dev/full fails with ENOSPC: said once, counted, the rest written."""
    metrics, events = tmp_path / "metrics.prom", tmp_path / "events.jsonl"
    argv = [
        "read",
        str(ROOT / "pcaps" / "dcmtk-find-move-get" / "capture.pcap"),
        "-q",
        "--associations",
        "/dev/full",
        "--events",
        str(events),
        "--metrics",
        str(metrics),
    ]
    assert main(argv) == 0  # fmt: skip
    said = capsys.readouterr().err.strip().splitlines()
    assert said == ["dicom-sensor: /dev/full: No space left on device; lines are lost, counted"]
    failed = re.search(r'dicom_sensor_output_failures_total\{output="files"\} (\S+)',
                       metrics.read_text())  # fmt: skip
    assert failed and float(failed[1]) >= 1


# -- the baseline: never a crash, never updated by read unless asked ----------------------


def _config_with_state(tmp_path: Path, state_file: str) -> Path:
    text = (PERIMETER / "config.yaml").read_text()
    config = tmp_path / "zones.yaml"
    config.write_text(text + f"\nbaseline:\n  state_file: {state_file}\n")
    return config


def test_read_leaves_the_baseline_alone_unless_asked(tmp_path: Path) -> None:
    state = tmp_path / "baseline.json"
    config = _config_with_state(tmp_path, str(state))
    assert main(["read", str(PERIMETER / "capture.pcap"), "-c", str(config), "-q"]) == 0
    assert not state.exists()
    argv = ["read", str(PERIMETER / "capture.pcap"), "-c", str(config), "-q", "--update-baseline"]
    assert main(argv) == 0
    assert json.loads(state.read_text())["nodes"]


def test_update_baseline_without_a_state_file_is_an_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert "--update-baseline" in one_line(capsys, ["read", str(ECHO), "--update-baseline"])


def test_an_unwritable_baseline_never_crashes_the_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A state file in a directory that does not exist: no user can write it, root included.
    config = _config_with_state(tmp_path, str(tmp_path / "missing" / "baseline.json"))
    metrics, inventory = tmp_path / "metrics.prom", tmp_path / "nodes.json"
    argv = ["read", str(PERIMETER / "capture.pcap"), "-c", str(config), "--update-baseline",
            "--metrics", str(metrics), "--inventory", str(inventory), "-q"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    said = [line for line in err if "baseline" in line]
    assert len(said) == 1 and said[0].startswith("dicom-sensor: "), err
    assert 'dicom_sensor_output_failures_total{output="baseline"} 1.0' in metrics.read_text()
    assert json.loads(inventory.read_text())  # the other outputs were still written


def test_check_config_reports_an_unwritable_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config_with_state(tmp_path, str(tmp_path / "missing" / "baseline.json"))
    line = one_line(capsys, ["check-config", str(config)])
    assert "baseline.state_file" in line and "does not exist" in line


def test_a_relative_state_file_lies_in_the_state_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config_with_state(tmp_path, "baseline.json")
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    assert main(["check-config", str(config), "--state-dir", str(state_dir)]) == 0
    assert f"state_file: {state_dir / 'baseline.json'}" in capsys.readouterr().out
    argv = ["read", str(PERIMETER / "capture.pcap"), "-c", str(config), "-q",
            "--update-baseline", "--state-dir", str(state_dir)]  # fmt: skip
    assert main(argv) == 0
    assert (state_dir / "baseline.json").exists()


def test_a_binary_config_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_line(capsys, ["check-config", str(ECHO)])
    assert (
        line == f"dicom-sensor: {ECHO}: not a text (UTF-8) YAML file; is it a capture or a program?"
    )


def test_capture_with_no_output_at_all_is_warned() -> None:
    import argparse

    from sensor.commands.live import no_output_warning
    from sensor.policy.config import default_config

    args = argparse.Namespace(associations=None, events=None, inventory=None,
                              inventory_csv=None, metrics=None, metrics_listen=None)  # fmt: skip
    said = no_output_warning(args, default_config())
    assert said is not None and said.startswith("no output")
    args.metrics_listen = "127.0.0.1:9464"
    assert no_output_warning(args, default_config()) is None


def test_the_startup_line_names_https_when_tls() -> None:
    import argparse

    from sensor.commands.live import metrics_url

    args = argparse.Namespace(metrics_listen="127.0.0.1:9464", tls_cert=None)
    assert metrics_url(args) == "http://127.0.0.1:9464/metrics"
    args.tls_cert = "cert.pem"
    assert metrics_url(args) == "https://127.0.0.1:9464/metrics"


def test_a_live_baseline_that_cannot_be_saved_is_said_once_and_counted(tmp_path: Path) -> None:
    """capture saves every minute: an outage is one log line, every failed save counted."""
    from dissectors.registry import load_dissectors
    from sensor.pipeline import Pipeline
    from sensor.policy.config import load_config

    config = load_config(_config_with_state(tmp_path, str(tmp_path / "gone" / "b.json")))
    pipeline = Pipeline(load_dissectors(), policy_config=config)
    said: list[str] = []
    pipeline.report = said.append
    for _ in range(3):
        pipeline.save_baseline()
    assert len(said) == 1 and "cannot save the baseline" in said[0]
    assert pipeline.counters.output_failures["baseline"] == 3
    (tmp_path / "gone").mkdir()  # the directory comes back: saved, and a new outage is said
    pipeline.save_baseline()
    assert (tmp_path / "gone" / "b.json").exists()
    (tmp_path / "gone" / "b.json").unlink()
    (tmp_path / "gone").rmdir()
    pipeline.save_baseline()
    assert len(said) == 2


def test_packets_total_says_what_it_counts() -> None:
    from dissectors.registry import load_dissectors
    from sensor.outputs.metrics import exposition
    from sensor.pipeline import Pipeline

    text = exposition(Pipeline(load_dissectors())).decode()
    [help_line] = [
        x for x in text.splitlines() if x.startswith("# HELP dicom_sensor_packets_total")
    ]
    assert "all protocols" not in help_line
    assert "kernel filter admitted" in help_line and "every packet of the files" in help_line
