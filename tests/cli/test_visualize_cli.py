"""``ctxpose visualize``: every mode has an example, mistakes are one red line with exit 1 (no traceback), the
output folder is printed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ctxpose.cli.app import app
from tests.cli.in_process import run_in_process
from tests.unit.viz_fixtures import POSE, write_processed

runner = CliRunner()


def run_main(*args: str) -> subprocess.CompletedProcess:
    return run_in_process("visualize", *args)


@pytest.mark.parametrize("mode", ["dataset", "predictions", "model", "run"])
def test_every_mode_has_an_example(mode: str) -> None:
    r = runner.invoke(app, ["visualize", mode, "--help"])
    assert r.exit_code == 0 and "Example:" in r.output and f"ctxpose visualize {mode}" in r.output


@pytest.mark.slow  # starts a Python process
def test_a_mistake_is_one_red_line_and_exit_1(tmp_path: Path) -> None:
    r = run_main("dataset", str(tmp_path / "missing"), "--out", str(tmp_path / "viz"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"error: {tmp_path / 'missing'}: processed dataset folder not found"
    assert not (tmp_path / "viz").exists()  # nothing written for a failed input


@pytest.mark.parametrize("args, message", [
    (["predictions", "{tmp}/eval"], "no such file or folder"),
    (["run", "{tmp}/run"], "run folder not found"),
    (["dataset", "{tmp}", "--size", "10"], "--size 10: expected at least 64 px"),
    (["predictions", "{tmp}", "--up", "w"], "--up w: up axis"),
])
def test_mistakes_are_ctxpose_errors(args: list[str], message: str, tmp_path: Path) -> None:
    from ctxpose.errors import CtxposeError

    r = runner.invoke(app, ["visualize", *(a.format(tmp=tmp_path) for a in args)])
    assert r.exit_code != 0 and isinstance(r.exception, CtxposeError) and message in str(r.exception)
    assert sorted(tmp_path.iterdir()) == []  # no output folder for a failed input


def test_dataset_and_predictions_print_the_output_folder(tmp_path: Path) -> None:
    processed = write_processed(tmp_path / "p", [POSE, POSE])
    out = tmp_path / "viz"
    r = runner.invoke(app, ["visualize", "dataset", str(processed), "--frames", "0:10", "--out", str(out), "--gif",
                            str(tmp_path / "a.gif"), "--size", "128"])
    assert r.exit_code == 0, r.output
    assert f"to {out}" in r.output.replace("\n", "") and (tmp_path / "a.gif").is_file()
    assert sorted(p.name for p in out.iterdir())[:2] == ["S9_Walking-1_54138969_000000.png",
                                                         "S9_Walking-1_54138969_000005.png"]
    np.savez(tmp_path / "predictions.npz", index=np.arange(2), keypoints_3d=np.stack([POSE] * 2),
             keypoints_3d_gt=np.stack([POSE] * 2) + 10.0)
    r = runner.invoke(app, ["visualize", "predictions", str(tmp_path / "predictions.npz"), "--index", "1",
                            "--worst", "0", "--size", "128", "--video", str(tmp_path / "v.mp4")])
    assert r.exit_code == 0, r.output
    assert "no crops:" in r.output and "all" in r.output and (tmp_path / "viz" / "samples" / "000001.png").is_file()
    assert (tmp_path / "v.mp4").stat().st_size > 0
    r = runner.invoke(app, ["visualize", "predictions", str(tmp_path / "predictions.npz"), "--index", "1,x"])
    assert r.exit_code != 0 and "--index 1,x: expected comma-separated integers" in str(r.exception)
