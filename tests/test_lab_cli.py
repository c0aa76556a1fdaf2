"""`registry-lab lab` passes its options to JupyterLab; `make lab ARGS=...` reaches it."""

from __future__ import annotations

from pathlib import Path

from registry_lib import cli

ROOT = Path(__file__).resolve().parents[1]


def test_lab_passes_jupyter_options_through(monkeypatch):
    calls = []
    monkeypatch.setattr(cli.subprocess, "run", lambda *a, **k: None)
    monkeypatch.setattr(cli.subprocess, "call", lambda argv, **k: calls.append(argv) or 0)
    assert cli.main(["lab", "--port", "8890", "--no-browser", "--ServerApp.token=abc"]) == 0
    argv = calls[0]
    assert argv[1:4] == ["-m", "jupyter", "lab"]
    assert argv[-4:] == ["--port", "8890", "--no-browser", "--ServerApp.token=abc"]


def test_other_commands_still_refuse_unknown_options(capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        cli.main(["keygen", "--no-such-option"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_make_lab_forwards_args():
    makefile = (ROOT / "Makefile").read_text()
    assert "registry-lab lab $(ARGS)" in makefile
