"""The console script's plumbing."""

from __future__ import annotations

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
