"""``ctxpose synthesize 3dhp``, ``preprocess 3dhp`` and ``export-3dhp`` through the real command line."""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from ctxpose.cli.app import app
from ctxpose.data.mpi_inf_3dhp.dataset import MPIInf3DHPDataset
from tests.cli.in_process import run_in_process

runner = CliRunner()


def test_help_shows_examples():
    for args in (["synthesize", "3dhp"], ["preprocess", "3dhp"], ["export-3dhp"]):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, result.output
        assert "Example" in result.output and f"ctxpose {' '.join(args)}" in result.output


def test_synthesize_preprocess_export(tmp_path):
    result = runner.invoke(app, ["synthesize", "3dhp", str(tmp_path / "raw"), "--sequences", "TS2,TS6", "--frames",
                                 "9", "--size", "128"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "proc"
    result = runner.invoke(app, ["preprocess", "3dhp", str(tmp_path / "raw"), str(out), "--image-size", "32",
                                 "--margin", "0.2"])
    assert result.exit_code == 0, result.output
    assert "TS2" in result.output and "absent" in result.output  # TS1 etc. are not in this download
    report = json.loads((out / "preprocess_report.json").read_text())
    assert [d["key"] for d in report["done"]] == ["TS2", "TS6"] and report["done"][0]["residual_px"]["max"] < 1e-6
    ds = MPIInf3DHPDataset(out)
    ids = ds.sample_ids()
    np.savez(tmp_path / "predictions.npz", keypoints_3d=ds.ground_truth(), **ids,
             subject_names=np.array(ds.subject_names))
    mat = tmp_path / "inference_data.mat"
    result = runner.invoke(app, ["export-3dhp", str(tmp_path / "predictions.npz"), "--out", str(mat), "--data",
                                 str(out), "--joint-groups", "14"])
    assert result.exit_code == 0, result.output
    assert "joint groups 14" in result.output and "no predictions for TS1, TS3, TS4, TS5" in result.output
    with h5py.File(mat, "r") as f:
        assert sorted(f) == ["TS2", "TS6"] and f["TS2"].shape == (len(ds.sequence[ds.sequence == "TS2"]), 1, 17, 3)
    metrics = json.loads((tmp_path / "inference_data_metrics.json").read_text())
    assert metrics["joint_groups"] == "14" and metrics["overall"]["pck"]["Total"] == 100.0
    rows = list(csv.reader((tmp_path / "mpii_3dhp_evaluation_sequencewise.csv").open()))
    assert [r[0] for r in rows[2:4]] == ["TestSeq2", "TestSeq6"]
    result = runner.invoke(app, ["export-3dhp", str(tmp_path / "predictions.npz"), "--out", str(mat), "--data",
                                 str(out), "--ground-truth", "annot3_nonstandard"])
    assert result.exit_code == 0 and "NON-STANDARD" in result.output


@pytest.mark.slow
def test_user_errors_are_one_line_and_exit_1(tmp_path):
    run = run_in_process("export-3dhp", str(tmp_path), "--joint-groups", "16")
    assert run.returncode == 2 and "'16' is not one of '17', '14'" in run.stderr  # a choice: a usage error
    for args in (["export-3dhp", str(tmp_path / "missing.npz")],
                 ["preprocess", "3dhp", str(tmp_path), str(tmp_path / "o")],
                 ["synthesize", "3dhp", str(tmp_path / "s"), "--sequences", "TS9"]):
        run = run_in_process(*args)
        assert run.returncode == 1, (args, run.stderr)
        assert run.stderr.strip().startswith("error:") and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert "Traceback" not in run.stderr
