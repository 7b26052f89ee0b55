"""Every command's --help explains itself: an example, choices listed, no placeholders that look like values, and
it comes quickly (nothing heavy is imported before a command runs)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from ctxpose.cli.app import app

runner = CliRunner()


def _commands(group, path=()):
    """(path, click command) for the app, every group and every command, depth first."""
    yield path, group
    for name, command in getattr(group, "commands", {}).items():
        yield from _commands(command, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def test_every_command_is_reached() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"train", "eval", "demo", "config check", "preprocess h36m", "preprocess 3dhp", "synthesize h36m",
            "synthesize 3dhp", "export-3dhp", "fetch-weights", "visualize dataset", "visualize run"} <= names


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=lambda c: " ".join(c) if isinstance(c, tuple) else "")
def test_help_has_an_example_lists_choices_and_no_value_placeholders(path, command) -> None:
    r = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    text = r.output
    assert "Example" in text, f"{' '.join(path) or 'ctxpose'}: no example in --help"
    for bad in ("<bool>", "<str>", "<list[str]>", "<int>", "<float>", "BOOLEAN"):
        assert bad not in text, f"{' '.join(path)}: {bad} in --help"
    for param in getattr(command, "params", []):
        if type(param.type).__name__ == "Choice":  # typer may carry its own copy of click
            for choice in param.type.choices:
                assert str(getattr(choice, "value", choice)) in text, (path, param.name, choice)


def test_help_and_version_are_fast_and_light() -> None:
    """No torch, OpenCV, h5py or matplotlib before a command runs (torch alone costs seconds and 200 MB; numpy, a
    tenth of a second, is allowed: the skeleton names listed by --help live beside numpy code)."""
    code = ("import sys; sys.argv = ['ctxpose', '--help']\n"
            "from ctxpose.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('torch', 'cv2', 'h5py', 'matplotlib', 'tensorboard') if m in sys.modules)\n"
            "print('HEAVY', heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in r.stdout, r.stdout[-500:] + r.stderr[-2000:]
